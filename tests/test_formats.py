"""Exports as people have them: ListenBrainz (official zip, unzipped folder, plain JSONL or JSON
array), Deezer DSG17, Last.fm CSV (with and without header) and the Last.fm-1K TSV.  Each is
recognised by --format auto from its columns or layout whatever its name, can be named
explicitly, labels skips by its documented rule (docs/formats.md) and accounts for every row
(synthetic files in tmp_path; the real samples in the last tests, skipped when absent)."""

from __future__ import annotations

import csv
import json
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from toolkit.artifacts import Workspace
from toolkit.cli import app
from toolkit.config import PrepConfig
from toolkit.errors import InputError
from toolkit.manifest import Manifest
from toolkit.prep import prep

START = datetime(2023, 11, 6, 20, tzinfo=timezone.utc)


def plays(sessions: int = 4, per: int = 5, gap_s: int = 200):
    """(session, position, start time) of ``sessions`` evenings of ``per`` plays ``gap_s`` apart."""
    for s in range(sessions):
        for k in range(per):
            yield s, k, START + timedelta(days=s, seconds=k * gap_s)


def run(path, tmp_path: Path, **options) -> Manifest:
    paths = path if isinstance(path, list) else [path]
    return prep(paths, Workspace.at(tmp_path / "ws"), PrepConfig(name="t", **options)).manifest


def events(tmp_path: Path) -> pl.DataFrame:
    return pl.read_parquet(tmp_path / "ws" / "datasets" / "t" / "events.parquet")


def accounted(m: Manifest | dict) -> bool:
    m = m if isinstance(m, dict) else m.to_json()  # the record, or manifest.json as read
    return m["rows_in"] == m["rows_kept"] + sum(m["rows_dropped"].values())


# --- ListenBrainz -------------------------------------------------------------------------------

def listen(at, k: int, mbid: bool = True, duration: bool = True) -> dict:
    info = {"recording_msid": f"msid-{k}", "submission_client": "test"}
    if duration:
        info["duration_ms"] = 210_000
    meta = {"artist_name": "Nina", "track_name": f"Song {k}", "release_name": "Album", "additional_info": info}
    if mbid:
        meta["mbid_mapping"] = {"recording_mbid": f"mbid-{k}", "artists": [{"artist_credit_name": "Nina"}]}
    return {"listened_at": int(at.timestamp()) if isinstance(at, datetime) else at, "inserted_at": 1,
            "recording_msid": f"msid-{k}", "track_metadata": meta}


def listens(**kw) -> list[dict]:
    return [listen(at, k, mbid=k != 3) for _, k, at in plays(**kw)]


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


FEEDBACK = [  # Song 1 hated (by recording mbid), Song 3 hated (by msid: it has no mbid), Song 2 loved,
    {"recording_mbid": "mbid-1", "recording_msid": None, "score": -1, "created": 100},  # Song 4 hated, then
    {"recording_mbid": None, "recording_msid": "msid-3", "score": -1, "created": 100},  # forgiven
    {"recording_mbid": "mbid-2", "recording_msid": None, "score": 1, "created": 100},
    {"recording_mbid": "mbid-4", "recording_msid": None, "score": -1, "created": 100},
    {"recording_mbid": "mbid-4", "recording_msid": None, "score": 0, "created": 200},
]


def listenbrainz_zip(path: Path, rows: list[dict] | None = None, feedback: list[dict] = FEEDBACK) -> Path:
    """The official export layout: user.json, feedback.jsonl, listens/<year>/<month>.jsonl."""
    rows = listens() if rows is None else rows
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("user.json", json.dumps({"user_id": 7, "username": "someone"}))
        zf.writestr("feedback.jsonl", jsonl(feedback))
        zf.writestr("listens/2023/11.jsonl", jsonl(rows[:10]))
        zf.writestr("listens/2023/12.jsonl", jsonl(rows[10:]))
    return path


def test_listenbrainz_export_zip_marks_hated_recordings_as_skips(tmp_path):
    m = run(listenbrainz_zip(tmp_path / "listenbrainz_someone_1700000000.zip"), tmp_path, format="auto")
    assert m.format == "listenbrainz" and m.files == 2 and m.rows_in == 20 and accounted(m)
    assert [Path(s["file"]).name for s in m.files_skipped] == ["listenbrainz_someone_1700000000.zip!user.json"]
    assert m.reading["feedback_files"][0].endswith("!feedback.jsonl")
    ev = events(tmp_path).join(pl.read_parquet(tmp_path / "ws" / "datasets" / "t" / "items.parquet"), on="item_id")
    skipped = set(ev.filter(pl.col("is_skip") == 1)["title"])
    assert skipped == {"Song 1", "Song 3"}  # hated; Song 4's hate was withdrawn, Song 2 loved
    assert m.skip_rule.plays_by_rule == {"explicit": 8, "none": 12}
    assert "hated" in m.skip_rule.rules["explicit"] and "half a track" in m.skip_rule.rules["none"]
    # the track is the MusicBrainz recording, else the MessyBrainz id of the submitted text
    keys = set(pl.read_parquet(tmp_path / "ws" / "datasets" / "t" / "items.parquet")["track_key"])
    assert keys == {"mbid-0", "mbid-1", "mbid-2", "msid-3", "mbid-4"}


def test_listenbrainz_unzipped_export_folder(tmp_path):
    export = tmp_path / "lb-export"
    (export / "listens" / "2023").mkdir(parents=True)
    (export / "listens" / "2023" / "11.jsonl").write_text(jsonl(listens()))
    (export / "feedback.jsonl").write_text(jsonl(FEEDBACK))
    (export / "user.json").write_text(json.dumps({"user_id": 7, "username": "someone"}))
    m = run(export, tmp_path)
    assert m.format == "listenbrainz" and m.skip_rule.plays_by_rule["explicit"] == 8
    assert set(events(tmp_path)["user_id"]) == {"lb-export"}


@pytest.mark.parametrize("shape", ["jsonl", "json-array"])
def test_listenbrainz_plain_listens_without_feedback(tmp_path, shape):
    path = tmp_path / "mine" / ("listens.jsonl" if shape == "jsonl" else "listens.json")
    path.parent.mkdir()
    rows = listens()
    path.write_text(jsonl(rows) if shape == "jsonl" else json.dumps(rows))
    m = run(path, tmp_path)
    assert m.format == "listenbrainz" and m.rows_in == 20
    assert m.skip_rule.plays_by_rule == {"none": m.rows_kept} and m.skip_share == 0


def test_listenbrainz_rows_that_cannot_be_used_are_counted(tmp_path):
    rows = listens()
    rows[0]["listened_at"] = "yesterday"
    rows[1]["track_metadata"] = {"artist_name": None, "track_name": None}
    del rows[1]["recording_msid"]
    rows[2]["listened_at"] = "2023-11-06T20:06:40Z"  # ISO text is read like the epoch seconds
    path = tmp_path / "x.jsonl"
    path.write_text(jsonl(rows))
    m = run(path, tmp_path)
    assert accounted(m) and m.rows_dropped["unparseable_ts"] == 1 and m.rows_dropped["null_track"] == 1


def test_listenbrainz_feedback_alone_is_a_clear_error(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "feedback.jsonl").write_text(jsonl(FEEDBACK))
    with pytest.raises(Exception, match="feedback without listens"):
        run(tmp_path / "in", tmp_path)


def test_two_listenbrainz_files_in_one_folder_are_two_listeners(tmp_path):
    folder = tmp_path / "family"
    folder.mkdir()
    (folder / "alice.jsonl").write_text(jsonl(listens()))
    (folder / "bob.jsonl").write_text(jsonl(listens(sessions=3)))
    m = run(folder, tmp_path)
    assert m.users == 2 and m.rows_in == 35 and set(events(tmp_path)["user_id"]) == {"alice", "bob"}
    assert "2 exports where one listener was expected (family)" in m.reading["notes"][0]


# --- Deezer DSG17 -------------------------------------------------------------------------------

DSG17 = ("genre_id", "ts_listen", "media_id", "album_id", "context_type", "release_date", "platform_name",
         "platform_family", "media_duration", "listen_type", "user_gender", "user_id", "artist_id", "user_age",
         "is_listened")


def deezer_rows() -> list[dict]:
    rows = []
    for user in (11, 12):
        for s, k, at in plays():
            rows.append({"genre_id": 7, "ts_listen": int(at.timestamp()), "media_id": 1000 + k, "album_id": 5,
                         "context_type": 0, "release_date": 20020101, "platform_name": 1, "platform_family": 0,
                         "media_duration": 200, "listen_type": 0, "user_gender": 0, "user_id": user,
                         "artist_id": 9, "user_age": 25, "is_listened": int(k != 2)})
    return rows


def write_csv(path: Path, rows: list[dict], header=True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if header:
            w.writeheader()
        w.writerows(rows)
    return path


def test_deezer_is_listened_zero_is_a_skip(tmp_path):
    rows = deezer_rows()
    rows[0]["ts_listen"] = 316179665  # 1980: DSG17 holds such impossible times
    rows[1]["media_id"] = ""
    m = run(write_csv(tmp_path / "train_sample.csv", rows), tmp_path)
    assert m.format == "deezer" and m.rows_in == 40 and accounted(m)
    assert m.rows_dropped["impossible_time"] == 1 and m.rows_dropped["null_track"] == 1
    assert m.skip_rule.plays_by_rule == {"explicit": m.rows_kept}
    ev = events(tmp_path).join(pl.read_parquet(tmp_path / "ws" / "datasets" / "t" / "items.parquet"), on="item_id")
    assert set(ev["user_id"]) == {"11", "12"} and ev["is_skip"].sum() > 0
    assert (ev["is_skip"] == (ev["track_key"] == "1002")).all()  # is_listened = 0 on media 1002 only


def test_deezer_without_is_listened_is_not_taken_for_deezer(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "is_listened"} for r in deezer_rows()]
    path = write_csv(tmp_path / "test.csv", rows)
    with pytest.raises(InputError, match="cannot recognise the format"):
        run(path, tmp_path)
    with pytest.raises(InputError, match="missing column.*is_listened"):
        run(path, tmp_path, format="deezer")


# --- Last.fm ------------------------------------------------------------------------------------

def scrobbles(style: str) -> list[list[str]]:
    out = []
    for _, k, at in plays():
        when = {"lastfm-to-csv": at.strftime("%d %b %Y %H:%M"), "iso": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "epoch": str(int(at.timestamp()))}[style]
        out.append([f"Artist, {k % 2}", "Album", f"Track {k}", when])  # a comma inside a quoted name
    return out


@pytest.mark.parametrize("style", ["lastfm-to-csv", "iso", "epoch"])
@pytest.mark.parametrize("header", [False, True])
def test_lastfm_csv_with_or_without_header(tmp_path, style, header):
    path = tmp_path / "alice" / "scrobbles.csv"
    path.parent.mkdir()
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(["artist", "album", "track", "date"])
        w.writerows(scrobbles(style))
    m = run(path, tmp_path)
    assert m.format == "lastfm-csv" and m.rows_in == 20 and m.rows_kept == 20
    assert m.skip_rule.plays_by_rule == {"none": 20} and m.skip_share == 0
    assert "half a track" in m.skip_rule.rules["none"]
    ev = events(tmp_path)
    assert set(ev["user_id"]) == {"alice"} and ev["ts"].min() == START.replace(tzinfo=None)


def test_lastfm_csv_bad_dates_are_counted(tmp_path):
    rows = scrobbles("lastfm-to-csv")
    rows[0][3] = "31 Foo 2021 22:10"
    rows[1][3] = ""
    path = tmp_path / "s.csv"
    path.write_text("".join(",".join(f'"{c}"' for c in r) + "\n" for r in rows))
    m = run(path, tmp_path, format="lastfm-csv")
    assert accounted(m) and m.rows_dropped["unparseable_ts"] == 1 and m.rows_dropped["null_ts"] == 1


def lastfm_1k(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"user_{u}\t{at.strftime('%Y-%m-%dT%H:%M:%SZ')}\t\tArtist\t{'t-%d' % k if k else ''}\tTrack {k}"
             for u in (1, 2) for _, k, at in plays(gap_s=20)]  # 20 s apart: the old gap rule called these skips
    path.write_text("\n".join(lines) + "\n")
    return path


def test_lastfm_1k_has_no_skip_labels(tmp_path):
    m = run(lastfm_1k(tmp_path / "userid-timestamp-artid-artname-traid-traname.tsv"), tmp_path)
    assert m.format == "lastfm" and m.users == 2 and m.skip_share == 0
    assert m.skip_rule.plays_by_rule == {"none": m.rows_kept} and accounted(m)


# --- recognition --------------------------------------------------------------------------------

def test_each_format_is_recognised_by_content_under_any_name(tmp_path):
    made = {
        "listenbrainz": lambda p: p.write_text(jsonl(listens())),
        "deezer": lambda p: write_csv(p, deezer_rows()),
        "lastfm-csv": lambda p: p.write_text("".join(",".join(r) + "\n" for r in scrobbles("iso")).replace(", ", " ")),
    }
    suffix = {"listenbrainz": ".jsonl", "deezer": ".csv", "lastfm-csv": ".csv"}
    for fmt, write in made.items():
        path = tmp_path / fmt / f"data{suffix[fmt]}"
        path.parent.mkdir()
        write(path)
        m = prep([path], Workspace.at(tmp_path / "ws"), PrepConfig(name=fmt.replace("-", "_"))).manifest
        assert m.format == fmt
        explicit = prep([path], Workspace.at(tmp_path / "ws"), PrepConfig(name=fmt.replace("-", "_"), format=fmt))
        assert explicit.manifest.rows_kept == m.rows_kept


def test_unrecognised_files_beside_an_export_are_listed_with_the_reason(tmp_path):
    folder = tmp_path / "export"
    write_csv(folder / "train.csv", deezer_rows())
    (folder / "notes.csv").write_text("a,b\n1,2\n")
    (folder / "broken.json").write_text("{not json")
    m = run(folder, tmp_path)
    why = {Path(s["file"]).name: s["reason"] for s in m.files_skipped}
    assert m.format == "deezer" and set(why) == {"notes.csv", "broken.json"}
    assert "not deezer data" in why["notes.csv"] and "not readable" in why["broken.json"]


def test_files_that_are_no_data_files_are_listed_too(tmp_path):
    folder = tmp_path / "export"
    (folder / "listens").mkdir(parents=True)
    (folder / "listens" / "2023.jsonl").write_text(jsonl(listens()))
    (folder / "listens" / "2022.jsonl.gz").write_bytes(b"\x1f\x8b")
    (folder / "ReadMe.pdf").write_bytes(b"%PDF")
    (folder / ".DS_Store").write_bytes(b"")  # hidden: the system's, not the export's
    archive = tmp_path / "lb.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("listens/2023/11.jsonl", jsonl(listens()))
        zf.writestr("ReadMeFirst.pdf", b"%PDF")
    for path, expected in ((folder, {"2022.jsonl.gz": "compressed (.gz)", "ReadMe.pdf": "not a data file (.pdf)"}),
                           (archive, {"lb.zip!ReadMeFirst.pdf": "not a data file (.pdf)"})):
        m = prep([path], Workspace.at(tmp_path / "ws"), PrepConfig(name=path.stem)).manifest
        why = {Path(s["file"]).name: s["reason"] for s in m.files_skipped}
        assert set(why) == set(expected) and all(why[k].startswith(v) for k, v in expected.items())


# --- end to end through the command line --------------------------------------------------------

@pytest.mark.parametrize("fmt", ["listenbrainz", "deezer", "lastfm-csv", "lastfm"])
def test_prep_command_on_each_format(tmp_path, fmt):
    if fmt == "listenbrainz":
        path = listenbrainz_zip(tmp_path / "lb.zip")
    elif fmt == "deezer":
        path = write_csv(tmp_path / "dsg17.csv", deezer_rows())
    elif fmt == "lastfm-csv":
        path = tmp_path / "scrobbles.csv"
        path.write_text("artist,album,track,date\n" + "".join(
            ",".join(f'"{c}"' for c in r) + "\n" for r in scrobbles("lastfm-to-csv")))
    else:
        path = lastfm_1k(tmp_path / "lastfm.tsv")
    ws = tmp_path / "ws"
    result = CliRunner().invoke(app, ["prep", str(path), "--name", "e2e", "--workspace", str(ws)])
    assert result.exit_code == 0, result.output
    assert f"dataset e2e ({fmt}," in " ".join(result.output.split())
    manifest = json.loads((ws / "datasets" / "e2e" / "manifest.json").read_text())
    assert manifest["format"] == fmt and accounted(manifest)
    assert (ws / "datasets" / "e2e" / "events.parquet").exists()
    # an explicit --format gives the same dataset
    again = CliRunner().invoke(app, ["prep", str(path), "--format", fmt, "--name", "e2e", "--workspace", str(ws)])
    assert again.exit_code == 0 and "already prepared" in " ".join(again.output.split())


# --- the real samples ---------------------------------------------------------------------------

def test_real_listenbrainz_listens(raw_data, tmp_path):
    folder = raw_data / "listenbrainz-samples" / "emomert-api-listens"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    m = run(folder, tmp_path)
    assert m.format == "listenbrainz" and m.rows_in == 1090 and accounted(m)
    assert [Path(s["file"]).name for s in m.files_skipped] == ["UPSTREAM_VERSIONS.tsv"]
    assert m.skip_rule.plays_by_rule == {"none": m.rows_kept}


def test_real_deezer_sample(raw_data, tmp_path):
    path = raw_data / "deezer-dsg17-sample" / "temporal_inconsistencies_sample.csv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    m = run(path, tmp_path, min_session_len=1)
    assert m.format == "deezer" and m.rows_in == 1000 and accounted(m)
    assert m.rows_dropped.get("impossible_time", 0) >= 33  # the 1970 / 1980 times of SOURCE.md


def test_real_lastfm_1k_sample(raw_data, tmp_path):
    path = raw_data / "lastfm-1k-sample" / "userid-timestamp-artid-artname-traid-traname.tsv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    m = run(path, tmp_path)
    assert m.format == "lastfm" and m.rows_in == 5000 and accounted(m)
    assert m.skip_share == 0 and m.skip_rule.plays_by_rule == {"none": m.rows_kept}


def test_report_says_skip_metrics_are_not_available_for_last_fm(tmp_path):
    """A log without skip labels trains as usual; its report says why there are no skip metrics."""
    path = tmp_path / "scrobbles.csv"
    rows = [[f"Artist {k % 3}", "Album", f"Track {(s + k) % 7}", at.strftime("%d %b %Y %H:%M")]
            for s, k, at in plays(sessions=30, per=6)]
    path.write_text("".join(",".join(r) + "\n" for r in rows))
    ws = tmp_path / "ws"
    assert CliRunner().invoke(app, ["prep", str(path), "--name", "fm", "--workspace", str(ws)]).exit_code == 0
    trained = CliRunner().invoke(app, ["train", "--dataset", "fm", "--model", "pop", "--workspace", str(ws)])
    assert trained.exit_code == 0, trained.output
    result = CliRunner().invoke(app, ["report", "--dataset", "fm", "--workspace", str(ws), "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Skip metrics are not available: Last.fm scrobbles only plays of at least half a track" in text


# --- Yambda ------------------------------------------------------------------------------------

def yambda_listens(users: int = 3, per: int = 12) -> pl.DataFrame:
    """Flat listens with Yambda's columns and types: relative seconds in steps of 5, every fourth
    listen played to 10 % (a skip at the 0.5 threshold), one listen with an unknown length."""
    rows = []
    for u in range(users):
        t = 39420 + u * 7
        for k in range(per):
            t += 200 if k % 6 else 90_000  # a new session every six listens
            rows.append({"uid": 100 + u, "timestamp": t // 5 * 5, "item_id": 8_000_000 + (u + k) % 7,
                         "is_organic": k % 2, "played_ratio_pct": 10 if k % 4 == 3 else 100,
                         "track_length_seconds": None if (u, k) == (0, 5) else 180})
    return pl.DataFrame(rows, schema={"uid": pl.UInt32, "timestamp": pl.UInt32, "item_id": pl.UInt32,
                                      "is_organic": pl.UInt8, "played_ratio_pct": pl.UInt16,
                                      "track_length_seconds": pl.UInt32})


def test_yambda_listens_skip_below_half_the_track(tmp_path):
    folder = tmp_path / "yambda"
    folder.mkdir()
    yambda_listens().write_parquet(folder / "listens.parquet")
    pl.DataFrame({"uid": [100], "timestamp": [44755], "item_id": [732449], "is_organic": [1]}).write_parquet(
        folder / "dislikes.parquet")
    m = run(folder, tmp_path)
    assert m.format == "yambda" and m.rows_in == 36 and accounted(m)
    assert m.config["skip_ratio"] == 0.5
    assert [f["file"].endswith("dislikes.parquet") and "not listens" in f["reason"] for f in m.files_skipped] == [True]
    assert m.skip_rule.rules["ratio"] == "played_ms < 0.5 x duration_ms"
    ev = events(tmp_path).join(pl.read_parquet(tmp_path / "ws" / "datasets" / "t" / "items.parquet"), on="item_id")
    assert set(ev["user_id"]) == {"100", "101", "102"}
    assert ev["ts"].min().year == 2000  # relative time placed from 2000-01-01
    # a skip exactly where a known length was played to 10 %
    skipped = ev.filter(pl.col("is_skip") == 1)
    assert len(skipped) > 0 and (skipped["played_ms"] == 18_000).all()


def test_yambda_multi_event_counts_likes_as_not_listens(tmp_path):
    listens = yambda_listens(users=1).with_columns(event_type=pl.lit("listen"))
    extra = listens.head(3).with_columns(event_type=pl.lit("like"), played_ratio_pct=pl.lit(None, pl.UInt16))
    path = tmp_path / "multi_event.parquet"
    pl.concat([listens, extra]).write_parquet(path)
    m = run(path, tmp_path, format="yambda", skip_ratio=0.2)
    assert m.format == "yambda" and m.rows_in == 15 and accounted(m)
    assert m.rows_dropped["not_a_listen"] == 3 and m.config["skip_ratio"] == 0.2
