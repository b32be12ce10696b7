"""Which files prep reads: Spotify exports recognised by their columns whatever their name, and
every file left out named with its reason (synthetic exports written in tmp_path)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from toolkit.artifacts import Workspace
from toolkit.config import PrepConfig
from toolkit.errors import EmptyInputError
from toolkit.manifest import Manifest
from toolkit.prep import prep

HISTORY = "Spotify Extended Streaming History"


def extended_rows(year: int, sessions: int = 6, plays: int = 4, reason_end: str = "trackdone",
                  skipped: bool | None = False) -> list[dict]:
    """Extended-history records: ``sessions`` evenings of ``plays`` back-to-back 3-minute plays."""
    rows = []
    for s in range(sessions):
        end = datetime(year, 3, 1, 20, tzinfo=timezone.utc) + timedelta(days=s)
        for p in range(plays):
            end += timedelta(minutes=3)
            rows.append({
                "ts": end.strftime("%Y-%m-%dT%H:%M:%SZ"), "platform": "android", "ms_played": 180_000,
                "master_metadata_track_name": f"Song {p}", "master_metadata_album_artist_name": "Nina",
                "spotify_track_uri": f"spotify:track:{p:022d}", "episode_name": None, "episode_show_name": None,
                "spotify_episode_uri": None, "reason_start": "trackdone", "reason_end": reason_end,
                "shuffle": False, "skipped": skipped,
            })
    return rows


def write_json(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    return path


def run(folder: Path, tmp_path: Path, **options) -> Manifest:
    return prep([folder], Workspace.at(tmp_path / "ws"), PrepConfig(name="t", **options)).manifest


def test_extended_history_under_any_name_is_read(tmp_path):
    export = tmp_path / "export"
    write_json(export / HISTORY / "Streaming_History_Audio_2023.json", extended_rows(2023))
    write_json(export / HISTORY / "songdata_0.json", extended_rows(2024))
    write_json(export / HISTORY / "14.json", extended_rows(2025))
    m = run(export, tmp_path)
    assert m.format == "spotify-extended" and m.files == 3 and m.files_skipped == []
    assert m.rows_in == 3 * 24


def test_odd_name_alone_is_recognised_by_its_columns(tmp_path):
    m = run(write_json(tmp_path / "history2.json", extended_rows(2024)), tmp_path, format="auto")
    assert m.format == "spotify-extended" and m.rows_in == 24


def test_resave_without_podcast_or_reason_columns_is_read(tmp_path):
    rows = [{k: v for k, v in r.items() if not k.startswith("episode") and k not in ("spotify_episode_uri",
                                                                                      "reason_end", "skipped")}
            for r in extended_rows(2024)]
    m = run(write_json(tmp_path / "all_time_Spotify.json", rows), tmp_path)
    assert m.format == "spotify-extended" and m.rows_in == 24
    assert m.skip_rule.plays_by_rule == {"played_ms": m.rows_kept}


def test_account_data_under_another_name_is_read_as_spotify(tmp_path):
    rows = [{"endTime": f"2021-03-0{d} 20:{m:02d}", "artistName": "Nina", "trackName": f"Song {m}",
             "msPlayed": 180_000} for d in range(1, 7) for m in range(0, 12, 3)]
    m = run(write_json(tmp_path / "my_history_2021.json", rows), tmp_path)
    assert m.format == "spotify" and m.rows_in == 24


def test_files_left_out_are_named_with_the_reason(tmp_path):
    export = tmp_path / "export"
    write_json(export / HISTORY / "Streaming_History_Audio_2023.json", extended_rows(2023))
    write_json(export / HISTORY / "Streaming_History_Video_2023.json", extended_rows(2023))
    write_json(export / HISTORY / "Userdata.json", [{"username": "x", "country": "SE"}])
    (export / "notes.csv").write_text("a,b\n1,2\n")
    (export / "broken.json").write_text("{not json")
    write_json(export / "StreamingHistory0.json", [{"endTime": "2021-03-01 20:00", "artistName": "Nina",
                                                    "trackName": "Song", "msPlayed": 1000}])
    m = run(export, tmp_path)
    assert m.files == 1
    why = {Path(s["file"]).name: s["reason"] for s in m.files_skipped}
    assert set(why) == {"Streaming_History_Video_2023.json", "Userdata.json", "notes.csv", "broken.json",
                        "StreamingHistory0.json"}
    assert "not music" in why["Streaming_History_Video_2023.json"]
    assert "username" in why["Userdata.json"] and "not spotify-extended" in why["Userdata.json"]
    assert why["StreamingHistory0.json"].startswith("spotify data")
    assert "not readable" in why["broken.json"]


def test_extended_csv_beside_json_is_reported_not_silently_dropped(tmp_path):
    export = tmp_path / "export"
    write_json(export / "Streaming_History_Audio_2023.json", extended_rows(2023))
    pl.DataFrame(extended_rows(2024)).write_csv(export / "history_2024.csv")
    m = run(export, tmp_path)
    assert m.files == 1
    [(name, reason)] = [(Path(s["file"]).name, s["reason"]) for s in m.files_skipped]
    assert name == "history_2024.csv" and "one file type per run" in reason


def test_nothing_readable_says_why(tmp_path):
    write_json(tmp_path / "export" / "Userdata.json", [{"username": "x"}])
    with pytest.raises(EmptyInputError, match="Userdata.json"):
        run(tmp_path / "export", tmp_path, format="spotify-extended")


def test_end_reason_labels_plays_where_the_flag_is_not_recorded(tmp_path):
    export = tmp_path / "export"
    # 2019: the flag says false on every play; fwdbtn ended them all, 3 minutes in
    write_json(export / "Streaming_History_Audio_2019.json", extended_rows(2019, reason_end="fwdbtn"))
    # 2023: the flag is recorded and wins over the reason
    write_json(export / "Streaming_History_Audio_2023.json",
               extended_rows(2023, reason_end="fwdbtn", skipped=False))
    m = run(export, tmp_path)
    rule = m.skip_rule
    assert rule.plays_by_rule == {"explicit": 24, "reason": 24}
    assert set(rule.rules) == {"explicit", "reason"}
    ev = pl.read_parquet(tmp_path / "ws" / "datasets" / "t" / "events.parquet")
    by_year = ev.group_by(pl.col("ts").dt.year()).agg(pl.col("is_skip").mean()).sort("ts")
    assert by_year["is_skip"].to_list() == [1.0, 0.0]
    # scored on the 24 recorded plays: the reason says skip, the flag says kept
    agreement = rule.agreement
    assert agreement["reason"]["plays"] == 24 and agreement["reason"]["agreement"] == 0.0
    assert agreement["played_ms"]["agreement"] == 1.0  # 3-minute plays are not short


def test_prep_command_prints_the_files_it_left_out(tmp_path):
    from typer.testing import CliRunner

    from toolkit.cli import app

    export = tmp_path / "export"
    write_json(export / "history2.json", extended_rows(2024))
    (export / "notes.csv").write_text("a,b\n1,2\n")
    result = CliRunner().invoke(app, ["prep", str(export), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    assert "1 file(s) not read: notes.csv (its columns (a, b) are not spotify-extended data)" in result.output


def test_normalised_plays_leave_duckdb_in_source_order(tmp_path):
    """The play stream must come out in the source's row order: the listening order's fast paths
    count on it (a time-ordered log sorted by listener with a counting sort, a grouped one copied
    run by run) and fall back to a full sort, far slower, when it does not.  A skip column's value
    list once became a hash join, whose output order is the threads', not the file's."""
    import numpy as np

    from toolkit import prep as prep_module, readers, sql

    n = 400_000
    log = tmp_path / "plays.parquet"
    pl.DataFrame({"user_id": [f"u{i % 97}" for i in range(n)], "ts": np.arange(n) * 1000,
                  "track_id": [f"t{i % 1009}" for i in range(n)], "played_ms": np.full(n, 60_000),
                  "skipped": ["true", "false", "yes", "0", "n"] * (n // 5)}).write_parquet(log, row_group_size=25_000)
    ws = Workspace.at(tmp_path / "ws")
    cfg = PrepConfig(threads=2)
    con = prep_module._connect(ws, cfg)
    src = readers.resolve(con, [log], "auto", {"ts": "ts"}, None, ws.unpacked)
    readers.register_raw(con, src)
    rel = sql.relation(con, "normalize_generic", ts_unit=readers.ts_unit(con))
    rows = np.concatenate([b.column(0).to_numpy() for b in rel.project("src_row").to_arrow_reader(1 << 16)])
    assert len(rows) == n and np.all(rows[1:] > rows[:-1])
