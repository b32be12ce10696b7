"""prep() on the tiny fixture: artifacts, row accounting, id and pad conventions, determinism."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from toolkit.artifacts import ARRAYS, Workspace, read_array, read_manifest
from toolkit.config import PrepConfig
from toolkit.errors import ConfigError
from toolkit.prep import PIPELINE, prep
from toolkit.schema import EVENTS_SCHEMA, ITEMS_SCHEMA, PAD, SPLITS

TESTS_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def prepared(tiny_logs, tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    manifest = prep([tiny_logs], ws, PrepConfig(max_len=4)).manifest
    return ws, ws.dataset(manifest.name), manifest


def test_every_row_is_kept_or_counted(prepared):
    _, ds, m = prepared
    assert m.rows_in == 41
    assert m.rows_in == m.rows_kept + sum(m.rows_dropped.values())
    # the fixture holds one exact duplicate, one single-play session (u3) and one single-play user (u5)
    assert m.rows_dropped == {"exact_duplicate": 1, "short_session": 2}
    assert pl.read_parquet(ds.events).height == m.rows_kept


def test_gap_exactly_at_threshold_stays_in_session(prepared):
    _, ds, _ = prepared
    ev = pl.read_parquet(ds.events).filter(pl.col("user_id") == "u1").sort("ts")
    first_day = ev.filter(pl.col("ts") < pl.datetime(2024, 1, 2))
    # u1 plays 7 tracks on day one; the pause before the 5th is exactly 1800 s
    assert first_day["session_idx"].n_unique() == 1
    assert first_day.height == 7


def test_equal_timestamps_keep_source_order(prepared):
    _, ds, _ = prepared
    ev = pl.read_parquet(ds.events)
    items = pl.read_parquet(ds.items)
    key = dict(zip(items["item_id"], items["track_key"]))
    u2 = ev.filter((pl.col("user_id") == "u2") & (pl.col("ts") >= pl.datetime(2024, 1, 2, 9)))
    u2 = u2.filter(pl.col("ts") < pl.datetime(2024, 1, 3)).sort("position")
    assert [key[i] for i in u2["item_id"]] == ["t1", "t6", "t7"]


def test_skip_labels_and_all_skip_session(prepared):
    _, ds, _ = prepared
    ev = pl.read_parquet(ds.events)
    assert ev.filter(pl.col("played_ms") < 30_000)["is_skip"].to_list() == [1] * ev.filter(pl.col("played_ms") < 30_000).height
    assert ev.filter(pl.col("played_ms") >= 30_000)["is_skip"].sum() == 0
    all_skip = ev.filter((pl.col("user_id") == "u2") & (pl.col("ts") < pl.datetime(2024, 1, 2, 8, 30)))
    assert all_skip.height == 3 and all_skip["is_skip"].sum() == 3


def _arrow_types(path) -> dict[str, str]:
    # polars writes large strings; the schema names the logical type
    return {f.name: str(f.type).replace("large_string", "string") for f in pq.read_schema(path)}


def test_schemas_and_ids(prepared):
    _, ds, m = prepared
    ev = pl.read_parquet(ds.events)
    items = pl.read_parquet(ds.items)
    assert _arrow_types(ds.events) == EVENTS_SCHEMA
    assert _arrow_types(ds.items) == ITEMS_SCHEMA
    assert items["item_id"].to_list() == list(range(1, m.items + 1))
    assert items["plays"].to_list() == sorted(items["plays"].to_list(), reverse=True)
    assert set(ev["item_id"].unique()) <= set(items["item_id"])


def test_time_split_never_leaks_the_future(prepared):
    _, ds, m = prepared
    ev = pl.read_parquet(ds.events)
    bounds = ev.group_by("split").agg(pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last"))
    b = {r["split"]: r for r in bounds.iter_rows(named=True)}
    assert b["train"]["last"] <= b["valid"]["first"] <= b["valid"]["last"] <= b["test"]["first"]
    assert sum(s.events for s in m.splits.values()) == m.rows_kept
    # sessions are never cut across splits
    assert ev.group_by("session_idx").agg(pl.col("split").n_unique())["split"].max() == 1


def test_sequence_arrays_follow_the_pad_conventions(prepared):
    _, ds, m = prepared
    ev = pl.read_parquet(ds.events)
    for split in SPLITS:
        seqs = read_array(ds.array(split, "seqs"))
        skips = read_array(ds.array(split, "skips"))
        nxt = read_array(ds.array(split, "next_item"))
        assert seqs.dtype == np.int32 and skips.dtype == np.int8 and seqs.shape[1] == 4
        assert np.all(skips[seqs == PAD] == 0)
        assert np.all(nxt[seqs == PAD] == PAD)
        # every play of the split appears exactly once across its windows
        assert int((seqs != PAD).sum()) == m.splits[split].events
        part = ev.filter(pl.col("split") == split)
        assert sorted(seqs[seqs != PAD].tolist()) == sorted(part["item_id"].to_list())


def test_rerun_is_identical_and_reuses_the_dataset(tiny_logs, tmp_path):
    a = Workspace.at(tmp_path / "a")
    b = Workspace.at(tmp_path / "b")
    ma = prep([tiny_logs], a, PrepConfig()).manifest
    prep([tiny_logs], b, PrepConfig())
    da, db = a.dataset(ma.name), b.dataset(ma.name)
    assert da.events.read_bytes() == db.events.read_bytes()
    assert da.items.read_bytes() == db.items.read_bytes()
    for split in SPLITS:
        for name in ARRAYS:
            assert da.array(split, name).read_bytes() == db.array(split, name).read_bytes()
    again = prep([tiny_logs], a, PrepConfig())
    assert again.up_to_date is True
    assert read_manifest(da) == again.manifest == ma


def test_leave_last_out_split(tiny_logs, tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    m = prep([tiny_logs], ws, PrepConfig(split="last", name="loo")).manifest
    ev = pl.read_parquet(ws.dataset("loo").events)
    last = ev.group_by("session_idx").agg(pl.col("split").sort_by("position").last())
    assert set(last["split"]) == {"test"}
    assert m.splits["test"].events == m.sessions
    assert m.split_mode == "last"


@pytest.mark.parametrize("bad", [dict(split="random"), dict(session_gap_s=0), dict(test_frac=0.0), dict(max_len=1)])
def test_contradictory_options_are_refused(bad):
    with pytest.raises(ConfigError):
        PrepConfig(**bad)


def test_file_order_breaks_ties_between_equal_timestamps_at_scale(tmp_path):
    """Spotify's account data has minute resolution, so many plays share an endTime: their order
    must be the files' order even when DuckDB reads the files with several threads."""
    import json

    export = tmp_path / "export" / "MyData"
    export.mkdir(parents=True)
    n_per_file = 30_000
    for f in range(2):
        rows = [{"endTime": f"2024-01-{1 + f:02d} 10:{(i // 600) % 60:02d}", "artistName": "A",
                 "trackName": f"{f}-{i:06d}", "msPlayed": 100} for i in range(n_per_file)]
        (export / f"StreamingHistory{f}.json").write_text(json.dumps(rows))
    ws = Workspace.at(tmp_path / "ws")
    prep([tmp_path / "export"], ws, PrepConfig(name="ties", split="last"))
    ds = ws.dataset("ties")
    ev = pl.read_parquet(ds.events).join(pl.read_parquet(ds.items), on="item_id").sort("session_idx", "position")
    titles = ev["title"].to_list()
    assert titles == sorted(titles)  # within each session the plays keep file order


# Digests of what prep writes for two fixed logs, by pipeline label.  When this fails, prep's output
# changed: if that was intended, give prep.PIPELINE a new value and record the new digests under it
# (every prepared dataset and trained run keyed by the old label is then rebuilt, as it must be);
# if not, the change that should only have been a refactor or a speed-up altered the data.
PINNED = {
    "550a322da11ab75b028853328fa560b514917923bbcaf757797aefa46a23b257": {
        "tiny_logs.csv": "991c7814051a903bcd7df69c04b4fea8f19d9f9559087c18ec9a0c833227fcc5",
        "pinned_log.parquet": "4c7d089a45c4d091fe8f8119243fbe1cebebf04636de5325380470b7eaccdcae",
    },
    # the two fixed logs choose the time split and have no end reasons, so their output is unchanged
    "2026-12-listener-split-reason-skips": {
        "tiny_logs.csv": "991c7814051a903bcd7df69c04b4fea8f19d9f9559087c18ec9a0c833227fcc5",
        "pinned_log.parquet": "4c7d089a45c4d091fe8f8119243fbe1cebebf04636de5325380470b7eaccdcae",
    },
    # one listener per export and Last.fm without skip labels: neither touches the two fixed logs
    "2026-12-one-listener-per-export": {
        "tiny_logs.csv": "991c7814051a903bcd7df69c04b4fea8f19d9f9559087c18ec9a0c833227fcc5",
        "pinned_log.parquet": "4c7d089a45c4d091fe8f8119243fbe1cebebf04636de5325380470b7eaccdcae",
    },
}


def _output_digest(ds) -> str:
    """sha256 over the content (not the file bytes, which carry writer versions) of every output."""
    h = hashlib.sha256()
    for path in (ds.events, ds.items):
        table = pq.read_table(path)
        h.update(json.dumps({c: table.column(c).to_pylist() for c in table.column_names}, default=str).encode())
    for split in SPLITS:
        for name in ARRAYS:
            arr = read_array(ds.array(split, name))
            h.update(f"{split}/{name}/{arr.dtype}/{arr.shape}".encode())
            h.update(np.ascontiguousarray(arr).tobytes())
    keys = ("rows_in", "rows_kept", "rows_dropped", "users", "sessions", "items", "skip_rule", "splits",
            "cold_items", "cold_events", "split_mode")
    manifest = json.loads(ds.manifest.read_text(encoding="utf-8"))  # as written
    h.update(json.dumps({k: manifest.get(k) for k in keys}, sort_keys=True, default=str).encode())
    return h.hexdigest()


@pytest.mark.parametrize("log", ["tiny_logs.csv", "pinned_log.parquet"])
def test_pipeline_label_pins_the_output(log, tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    prep([TESTS_DATA / log], ws, PrepConfig(name="pinned"))
    digest = _output_digest(ws.dataset("pinned"))
    assert PIPELINE in PINNED, f"prep.PIPELINE {PIPELINE} has no recorded digests: add them to PINNED"
    assert digest == PINNED[PIPELINE][log], (
        f"prep's output for tests/data/{log} changed ({digest}) but prep.PIPELINE did not: see PINNED")


def test_audits_read_the_written_file_in_its_order(prepared, tmp_path):
    """sql/checks over events.parquet as prep reads it back: clean as written, and a file with two
    plays of a session swapped is caught (positions must follow file order)."""
    import duckdb

    from toolkit import sql

    _, ds, _ = prepared
    frame = pl.read_parquet(ds.events)
    assert frame["session_idx"][0] == frame["session_idx"][1]
    swapped = pl.concat([frame[1:2], frame[0:1], frame[2:]])
    for path, findings in ((ds.events, 0), (tmp_path / "swapped.parquet", 1)):
        if findings:
            swapped.write_parquet(path)
        con = duckdb.connect()
        con.read_parquet(str(path), file_row_number=True).create_view("events")
        found = sql.run_checks(con)
        assert found["ordered_sessions"] == findings and found["valid_labels"] == 0
