"""Messy raw logs through ``toolkit prep``: it either accounts for every row or stops with one line.

Hypothesis writes generic CSV logs and Spotify JSON exports the way real ones go wrong: missing
values, unicode and control characters, quotes, commas and newlines inside fields, duplicate rows,
timestamps in mixed formats or out of range, negative or huge play times, extra columns in any
order, a byte-order mark, CRLF line ends, JSON arrays with non-object entries, truncated JSON.
The property, for every input: ``toolkit prep`` exits 0 and its manifest satisfies
``rows_in == rows_kept + sum(rows_dropped)`` with ``rows_in`` the number of data rows written, or it
exits 1 with a single line and no traceback.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st
from typer.testing import CliRunner

from toolkit.cli import app

runner = CliRunner()
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_prep(path: Path, ws: Path, *options: str):
    return runner.invoke(app, ["prep", str(path), "--name", "messy", "--workspace", str(ws), *options])


def check_outcome(result, ws: Path, rows_written: int | None) -> dict | None:
    """The property: accounted success, or a clean one-line failure (exit 1, no traceback, no bug)."""
    text = result.output
    assert "Traceback" not in text, text
    if currently_in_test_context():  # outcomes, for --hypothesis-show-statistics
        event("prep succeeded" if result.exit_code == 0 else f"refused: {text.strip()[-60:]}")
    if result.exit_code == 0:
        manifest = json.loads((ws / "datasets" / "messy" / "manifest.json").read_text())
        dropped = manifest["rows_dropped"]
        assert all(isinstance(n, int) and n >= 0 for n in dropped.values()), dropped
        assert manifest["rows_in"] == manifest["rows_kept"] + sum(dropped.values()), manifest
        if rows_written is not None:
            assert manifest["rows_in"] == rows_written, (manifest["rows_in"], rows_written, dropped)
        return manifest
    assert result.exit_code == 1, (result.exit_code, text, result.exception)
    line = text.strip()
    assert line, "failed without a message"
    assert len(line.splitlines()) == 1, text
    assert "this is a bug" not in line, line
    return None


# ---------------------------------------------------------------------------------------------
# value strategies

# text with the characters that break naive readers: separators, quotes, newlines, controls, unicode
NASTY = st.sampled_from([",", '"', "'", "\n", "\r\n", "\t", "\x00", "\x1f", "\x7f", "é", "ß", "日本", "🎵",
                         "\u200b", "\ufeff", "NULL", "null", "NaN", " ", "\\", ";", "|"])
PLAIN = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
NAME = st.lists(st.one_of(PLAIN, NASTY), max_size=3).map("".join)
MISSING = st.just("")

TIMESTAMPS = st.one_of(
    st.datetimes(min_value=__import__("datetime").datetime(2015, 1, 1),
                 max_value=__import__("datetime").datetime(2025, 1, 1)).map(lambda d: d.isoformat() + "Z"),
    st.datetimes(min_value=__import__("datetime").datetime(2015, 1, 1),
                 max_value=__import__("datetime").datetime(2025, 1, 1)).map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
    st.sampled_from(["1970-01-01T00:00:00Z", "1969-12-31 23:59:59", "2999-01-01T00:00:00Z", "9999-12-31 23:59:59",
                     "0001-01-01 00:00:00", "1704067200", "1704067200000", "01/02/2024 10:00", "yesterday",
                     "2024-02-30T10:00:00Z", "2024-01-01T25:00:00Z", "2024-01-01T10:00:00+05:30", "", "NaT",
                     "2024-13-01", "-1", "1e30"]),
    NAME,
)
PLAYED = st.one_of(
    st.integers(min_value=0, max_value=400_000).map(str),
    st.integers(min_value=-10**20, max_value=10**20).map(str),
    st.sampled_from(["", "-1", "0", "1.5", "NaN", "inf", "-inf", "1e300", "9223372036854775808", "long", "12,000"]),
)


def good_rows(n_users: int, n_plays: int):
    """Rows prep keeps: a few listeners with sessions of several plays a minute apart."""
    rows = []
    for u in range(n_users):
        for i in range(n_plays):
            rows.append({"user_id": f"u{u}", "ts": f"2024-03-0{1 + u % 9}T10:{i:02d}:00Z",
                         "track_id": f"t{(u + i) % 7}", "played_ms": str(60_000 + i)})
    return rows


MESSY_ROW = st.fixed_dictionaries({
    "user_id": st.one_of(MISSING, NAME, st.sampled_from(["u0", "u1"])),
    "ts": st.one_of(MISSING, TIMESTAMPS),
    "track_id": st.one_of(MISSING, NAME, st.sampled_from(["t1", "t2"])),
    "played_ms": st.one_of(MISSING, PLAYED),
})
EXTRA_COLUMNS = st.lists(st.sampled_from(["genre", "device", "Ünïcode col", "notes", "x,y", "country"]),
                         unique=True, max_size=3)


@st.composite
def csv_logs(draw):
    """(file bytes, data rows written) of a generic CSV log."""
    rows = good_rows(draw(st.integers(0, 3)), draw(st.integers(0, 6)))
    rows += draw(st.lists(MESSY_ROW, max_size=8))
    rows = draw(st.permutations(rows)) if rows else rows
    if rows and draw(st.booleans()):  # duplicate rows
        rows += draw(st.lists(st.sampled_from(rows), max_size=4))
    extras = draw(EXTRA_COLUMNS)
    for row in rows:
        for col in extras:
            row[col] = draw(st.one_of(MISSING, NAME))
    columns = draw(st.permutations(["user_id", "ts", "track_id", "played_ms", *extras]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator=draw(st.sampled_from(["\n", "\r\n"])),
                            quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])))
    writer.writeheader()
    writer.writerows(rows)
    text = buf.getvalue()
    bom = draw(st.booleans())
    return ("\ufeff" if bom else "") + text, len(rows)


# ---------------------------------------------------------------------------------------------
# properties


@SETTINGS
@given(log=csv_logs())
def test_messy_generic_csv_is_accounted_or_refused(log):
    text, rows = log
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plays.csv"
        path.write_text(text, encoding="utf-8", newline="")
        check_outcome(run_prep(path, Path(tmp) / "ws", "--format", "generic"), Path(tmp) / "ws", rows)


SPOTIFY_ROW = st.fixed_dictionaries({
    "endTime": st.one_of(st.none(), st.just(""), TIMESTAMPS,
                         st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M")), st.integers()),
    "artistName": st.one_of(st.none(), NAME),
    "trackName": st.one_of(st.none(), NAME),
    "msPlayed": st.one_of(st.none(), st.integers(min_value=-10**12, max_value=10**12), PLAYED),
}, optional={"extra": st.one_of(NAME, st.integers(), st.lists(st.integers(), max_size=2))})


def spotify_good(n: int) -> list[dict]:
    return [{"endTime": f"2024-03-01 10:{i:02d}", "artistName": "A", "trackName": f"T{i % 4}",
             "msPlayed": 60_000 + i} for i in range(n)]


@SETTINGS
@given(good=st.integers(0, 8), messy=st.lists(SPOTIFY_ROW, max_size=8), data=st.data())
def test_messy_spotify_json_objects_are_accounted_or_refused(good, messy, data):
    rows = data.draw(st.permutations(spotify_good(good) + messy))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "me" / "StreamingHistory0.json"
        path.parent.mkdir()
        path.write_text(json.dumps(rows, ensure_ascii=data.draw(st.booleans())), encoding="utf-8")
        check_outcome(run_prep(path, Path(tmp) / "ws"), Path(tmp) / "ws", len(rows))


NON_OBJECT = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                       st.booleans())


@SETTINGS
@given(good=st.integers(0, 8), junk=st.lists(NON_OBJECT, min_size=1, max_size=4), data=st.data())
def test_json_array_with_non_object_entries_is_accounted_or_refused(good, junk, data):
    rows = data.draw(st.permutations(spotify_good(good) + junk))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "me" / "StreamingHistory0.json"
        path.parent.mkdir()
        path.write_text(json.dumps(rows), encoding="utf-8")
        # how many input rows a non-object entry makes is the reader's business: check the identity only
        check_outcome(run_prep(path, Path(tmp) / "ws"), Path(tmp) / "ws", None)


@SETTINGS
@given(good=st.integers(1, 8), cut=st.floats(0.0, 0.999), data=st.data())
def test_truncated_json_is_refused_or_accounted(good, cut, data):
    text = json.dumps(spotify_good(good) + data.draw(st.lists(SPOTIFY_ROW, max_size=3)))
    text = text[: int(len(text) * cut)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "me" / "StreamingHistory0.json"
        path.parent.mkdir()
        path.write_text(text, encoding="utf-8")
        check_outcome(run_prep(path, Path(tmp) / "ws"), Path(tmp) / "ws", None)


def test_empty_and_header_only_files_are_refused(tmp_path):
    for i, (name, text) in enumerate([
        ("plays.csv", ""), ("plays.csv", "user_id,ts,track_id,played_ms\n"),
        ("plays.csv", "\ufeffuser_id,ts,track_id\r\n"), ("plays.csv", "\n\n\n"),
        ("StreamingHistory0.json", ""), ("StreamingHistory0.json", "[]"), ("StreamingHistory0.json", "{}"),
        ("StreamingHistory0.json", "[{}]"),
    ]):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        path = folder / name
        path.write_text(text, encoding="utf-8", newline="")
        for fmt in ("auto", "generic") if name.endswith(".csv") else ("auto", "spotify"):
            result = run_prep(path, tmp_path / f"ws{i}-{fmt}", "--format", fmt)
            assert result.exit_code == 1, (name, text, fmt, result.output)
            check_outcome(result, tmp_path / f"ws{i}-{fmt}", None)


EPOCHS = st.one_of(st.integers(1_500_000_000, 1_750_000_000), st.integers(1_500_000_000_000, 1_750_000_000_000),
                   st.sampled_from([0, -1, -10**12, 10**15, 10**18, 2**63 - 1, -(2**63)]),
                   st.floats(allow_nan=True, allow_infinity=True))


@SETTINGS
@given(good=st.integers(0, 8), epochs=st.lists(EPOCHS, max_size=6), data=st.data())
def test_numeric_epoch_times_in_range_or_not_are_accounted_or_refused(good, epochs, data):
    """A ts column of numbers only (epoch seconds or ms, read as a number column), some far out of range."""
    base = data.draw(st.sampled_from([1, 1000]))
    rows = [("u1", 1_709_280_000 * base + i * 60 * base, f"t{i % 3}", 60_000) for i in range(good)]
    rows += [(data.draw(st.sampled_from(["u1", "u2", ""])), e, "t1", data.draw(st.sampled_from(["", "-5", "10"])))
             for e in epochs]
    rows = data.draw(st.permutations(rows))
    as_json = data.draw(st.booleans())
    with tempfile.TemporaryDirectory() as tmp:
        if as_json:
            path = Path(tmp) / "plays.json"
            objs = [{"user_id": u, "ts": (None if isinstance(t, float) and t != t else t), "track_id": k,
                     "played_ms": p} for u, t, k, p in rows]
            path.write_text(json.dumps(objs, allow_nan=False, default=str) if all(
                not isinstance(o["ts"], float) or abs(o["ts"]) != float("inf") for o in objs) else
                json.dumps([{**o, "ts": str(o["ts"])} for o in objs]), encoding="utf-8")
        else:
            path = Path(tmp) / "plays.csv"
            path.write_text("user_id,ts,track_id,played_ms\n" + "".join(f"{u},{t},{k},{p}\n" for u, t, k, p in rows))
        check_outcome(run_prep(path, Path(tmp) / "ws", "--format", "generic"), Path(tmp) / "ws", len(rows))
