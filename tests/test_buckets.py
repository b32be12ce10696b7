"""prep in buckets of listeners: the bucket plan, the shelf, and the property that matters: any
number of buckets writes byte for byte the dataset of one bucket."""

from __future__ import annotations

import csv
import hashlib
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from toolkit import buckets, splits
from toolkit.artifacts import Workspace
from toolkit.cli import app
from toolkit.config import PrepConfig
from toolkit.errors import ConfigError, ToolkitError
from toolkit.prep import prep

TESTS_DATA = Path(__file__).resolve().parent / "data"
# budgets for many buckets: below one play's bytes every listener gets a bucket of their own and
# every chunk of the write one session; at 4KB buckets hold ~20 plays and chunks ~10, so a chunk
# takes slices of several buckets
SMALL_BUDGETS = ("1B", "4KB")


def test_plan_fills_buckets_with_whole_users():
    cap = 10 * buckets.PLAY_BYTES  # 10 plays per bucket
    assert buckets.plan(np.array([4, 4, 4, 4]), cap).tolist() == [0, 2, 4]
    assert buckets.plan(np.array([4, 6, 1]), cap).tolist() == [0, 2, 3]  # exactly full, then the rest
    # a user with more plays than a bucket holds is a bucket alone; users are never split
    assert buckets.plan(np.array([3, 25, 3, 3]), cap).tolist() == [0, 1, 2, 4]
    assert buckets.plan(np.array([5, 5]), 10**12).tolist() == [0, 2]  # fits: one bucket
    assert buckets.plan(np.array([1, 1, 1]), 1).tolist() == [0, 1, 2, 3]
    assert buckets.plan(np.zeros(0, np.int64), 1).tolist() == [0, 0]  # nothing usable: one empty bucket


@pytest.mark.parametrize("memory", ["1GB", "1B"])
def test_a_log_without_usable_plays_is_refused_in_one_line(tmp_path, memory):
    log = tmp_path / "plays.csv"
    log.write_text("user_id,ts,track_id,played_ms\n,2024-01-01T00:00:00Z,t1,1000\n")
    with pytest.raises(ToolkitError, match="every row was filtered away"):
        prep([log], Workspace.at(tmp_path / "ws"), PrepConfig(memory=memory))


@pytest.mark.parametrize("on_disk", [False, True])
def test_shelf_hands_back_what_was_put(tmp_path, on_disk):
    shelf = buckets.Shelf(tmp_path / "shelf" if on_disk else None)
    # int64 columns narrow to int32 on disk when their values fit, and come back int64 either way
    arrays = {"track_code": np.arange(5, dtype=np.int32), "order_us": np.arange(5, dtype=np.int64) * 7,
              "wide": np.array([-1, 2**31, 0, 7, -2**31 - 1], np.int64), "narrow": np.array([-1, 2**31 - 1, 0, 7, -2**31])}
    shelf.put(3, "kept", arrays)
    if on_disk:
        assert (tmp_path / "shelf" / "3.kept.narrow.bin").stat().st_size == 5 * 4
        assert (tmp_path / "shelf" / "3.kept.wide.bin").stat().st_size == 5 * 8
    part = shelf.read(3, "kept", 1, 4)
    assert part["order_us"].tolist() == [7, 14, 21] and part["track_code"].dtype == np.int32
    assert part["wide"].tolist() == [2**31, 0, 7] and part["order_us"].dtype == np.int64
    back = shelf.take(3, "kept")
    assert set(back) == set(arrays) and back["track_code"].dtype == np.int32
    assert back["track_code"].tolist() == [0, 1, 2, 3, 4]
    for name in ("wide", "narrow", "order_us"):
        assert back[name].dtype == np.int64 and back[name].tolist() == arrays[name].tolist()
    with pytest.raises(KeyError):
        shelf.take(3, "kept")
    assert not on_disk or not list((tmp_path / "shelf").iterdir())


def test_spread_puts_every_play_in_its_users_bucket(tmp_path):
    spread = buckets.Spread(tmp_path / "spread", np.array([0, 2, 3, 5]))  # users {0, 1}, {2}, {3, 4}
    rng = np.random.default_rng(0)
    plays = []
    for start in (0, 7):  # two batches: a bucket's plays keep the stream's order across them
        users = rng.integers(0, 5, 7).astype(np.int32)
        row = np.arange(start, start + 7, dtype=np.int64)
        spread.add({"user_code": users, "src_row": row, "flag": (row % 3).astype(np.int8)})
        plays += list(zip(users.tolist(), row.tolist()))
    for b, members in enumerate(({0, 1}, {2}, {3, 4})):
        got = spread.take(b)
        want = [r for u, r in plays if u in members]
        assert got["src_row"].tolist() == want and got["flag"].tolist() == [r % 3 for r in want]
        assert set(got["user_code"].tolist()) <= members and got["flag"].dtype == np.int8
    assert not list((tmp_path / "spread").iterdir())


def _dataset_bytes(ws: Workspace, name: str) -> dict[str, str]:
    """sha256 of every file of a prepared dataset but the manifest (which records the options)."""
    folder = ws.dataset(name).path
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.name != "manifest.json"}


SUMMARY = ("rows_in", "rows_kept", "rows_dropped", "users", "sessions", "items", "splits", "skip_rule",
           "split_mode", "split_reason", "split_diagnostics", "split_warnings", "cold_items", "cold_events",
           "first_play", "last_play", "median_session_len", "mean_session_len", "skip_share", "fingerprint",
           "build", "arrays")


def _prep_both(log: Path, root: Path, **options) -> tuple[dict, tuple[str, ...]]:
    """prep of ``log`` in one bucket and in many (``SMALL_BUDGETS``): checks that every run wrote
    the same files and summary; returns the summary and the notes of the smallest budget."""
    out = []
    for memory in ("1GB", *SMALL_BUDGETS):
        ws = Workspace.at(root / memory)
        prepared = prep([log], ws, PrepConfig(name="b", memory=memory, **options))
        m = prepared.manifest
        # prep counts the split diagnostics as it writes; the query over the written events is the reference
        assert m.split_diagnostics == splits.diagnostics(ws.dataset("b").events)
        out.append((_dataset_bytes(ws, "b"), {k: getattr(m, k) for k in SUMMARY}, prepared.notes))
    one, one_m, one_notes = out[0]
    assert one_notes == ()
    for many, many_m, many_notes in out[1:]:
        assert "buckets of listeners" in many_notes[0]
        assert many == one
        assert many_m == one_m  # the build (dataset identity) included: --memory is not part of it
    return one_m, out[1][2]


@pytest.mark.parametrize("split", ["auto", "last", "listener"])
@pytest.mark.parametrize("log", ["tiny_logs.csv", "pinned_log.parquet"])
def test_buckets_write_the_dataset_of_one_bucket(log, split, tmp_path):
    m, notes = _prep_both(TESTS_DATA / log, tmp_path, split=split, max_len=4)
    assert int(notes[0].split()[2]) >= m["users"] > 1  # listeners whose plays were all dropped had buckets too


# Rows that give every drop reason of a generic log at least once (options below): the fixed
# part of each hypothesis log.
FIXED_ROWS = [
    ("", "2024-01-01T00:00:00Z", "t1", "100000"),  # null_user
    ("x1", "not a time", "t1", "100000"),  # unparseable_ts
    ("x1", "2024-01-01T00:00:00Z", "t1", "lots"),  # unparseable_played_ms
    ("x1", "", "t1", "100000"),  # null_ts
    ("x1", "2024-01-01T00:00:00Z", "", "100000"),  # null_track
    ("x1", "1980-01-01T00:00:00Z", "t1", "100000"),  # impossible_time
    ("x1", "2024-01-01T00:00:00Z", "t1", "-5"),  # negative_played_ms
    ("x1", "2024-01-01T00:00:00Z", "t1", "99999999"),  # overlong_play
    ("x2", "2024-01-01T00:00:00Z", "t2", "100000"),  # exact_duplicate (with the next)
    ("x2", "2024-01-01T00:00:00Z", "t2", "100000"),
    ("x2", "2024-01-01T00:05:00Z", "t2", "100000"),  # repeat_collapsed
    ("x2", "2024-01-01T00:10:00Z", "once", "100000"),  # rare_track
    ("x3", "2024-01-03T00:00:00Z", "t4", "100000"),  # short_session: one play (of a track that is not rare)
]
# one session from before every other play to after them: it is train and straddles the boundary
SPAN = [f"2023-12-31T{h:02d}:{m:02d}:00Z" for h in range(20, 24) for m in range(0, 60, 20)]
SPAN += [f"2024-01-{d:02d}T{h:02d}:{m:02d}:00Z" for d in range(1, 4) for h in range(24) for m in range(0, 60, 20)]
FIXED_ROWS += [("x0", ts, f"t{3 + i % 2}", "1000") for i, ts in enumerate(SPAN)]
# ten two-play sessions, so that valid and test hold sessions whatever hypothesis adds
FIXED_ROWS += [(f"y{k}", f"2024-01-{2 + k // 5:02d}T{10 + k:02d}:{m:02d}:00Z", t, "200000")
               for k in range(10) for m, t in ((0, "t4"), (5, "t5"))]
OPTIONS = dict(split="time", collapse_repeats=True, min_item_plays=2, min_session_len=2, max_play_ms=10_000_000,
               max_len=3)
PLAY = st.tuples(
    st.sampled_from([f"user{i:02d}" for i in range(12)]),  # users spread over 12 buckets
    st.integers(0, 3 * 24 * 60),  # minute of the three days: gaps from 0 to hours, ties included
    st.sampled_from(["t1", "t2", "t3", "t4", "t5", "t6"]),
    st.sampled_from([1_000, 29_999, 30_000, 200_000]),  # skips and plays by --skip-ms
)


@settings(max_examples=10, deadline=None)
@given(st.lists(PLAY, min_size=1, max_size=80), st.randoms(use_true_random=False))
def test_buckets_match_one_bucket_on_generated_logs(plays, rnd):
    rows = list(FIXED_ROWS)
    rows += [(u, f"2024-01-{1 + minute // 1440:02d}T{minute % 1440 // 60:02d}:{minute % 60:02d}:00Z", t, str(p))
             for u, minute, t, p in plays]
    rnd.shuffle(rows)  # listeners interleaved in the file, as in a service's log
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "plays.csv"
        with open(log, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["user_id", "ts", "track_id", "played_ms"])
            w.writerows(rows)
        m, _ = _prep_both(log, Path(tmp), **OPTIONS)
    assert set(m["rows_dropped"]) >= {
        "null_user", "unparseable_ts", "unparseable_played_ms", "null_ts", "null_track", "impossible_time",
        "negative_played_ms", "overlong_play", "exact_duplicate", "repeat_collapsed", "rare_track",
        "short_session", "straddles_split"}
    assert m["rows_in"] == len(rows) == m["rows_kept"] + sum(m["rows_dropped"].values())


def test_memory_budget_from_the_command_line(tmp_path):
    runner = CliRunner()
    ws = tmp_path / "ws"
    ok = runner.invoke(app, ["prep", str(TESTS_DATA / "tiny_logs.csv"), "--workspace", str(ws), "--name", "t",
                             "--memory", "1KB"])
    assert ok.exit_code == 0, ok.output
    assert "buckets of listeners" in ok.output
    bad = runner.invoke(app, ["prep", str(TESTS_DATA / "tiny_logs.csv"), "--workspace", str(ws), "--memory", "lots"])
    assert bad.exit_code == 1 and "--memory 'lots'" in bad.output and "Traceback" not in bad.output
    assert len(bad.output.strip().splitlines()) == 1


def test_memory_budget_must_be_a_size():
    with pytest.raises(ConfigError, match="--memory"):
        PrepConfig(memory="0GB")
