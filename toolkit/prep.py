"""``toolkit prep``: raw listening logs -> a prepared dataset in the workspace.

DuckDB reads and normalises the input, marks unusable rows, builds the user and track
dictionaries and sorts the usable plays once into listening order (``sql/``); one numba pass cuts
that stream into sessions and labels skips (``kernels/sessions.py``, ``toolkit/sessions.py``);
sessions go back to SQL for the train / valid / test windows; polars writes the parquet files and
the numba kernels build the sequence arrays.  Sorting once instead of running a window query per
step is what keeps prep near the cost of a plain read-sort-write (see benchmarks/).  Every input row ends up either in events.parquet or
counted under a named drop reason, and ``rows_in == rows_kept + sum(rows_dropped)`` is checked.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import platform
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import duckdb
import numpy as np
import polars as pl

import kernels
from toolkit import readers, sql
from toolkit.artifacts import (
    ARRAYS, DatasetDir, Workspace, atomic_path, read_json, record_dataset, safe_name, write_array, write_manifest,
)
from toolkit.config import PrepConfig
from toolkit.errors import EmptyInputError, InputError
from toolkit.schema import FORMAT_VERSION, IS_SKIP, ITEM, SESSION, SPLIT, SPLITS, USER
from toolkit.sessions import Events, build_events, item_ids, session_bounds, skip_rule_counts

Progress = Callable[[str], None]
UNTIMED_FORMATS = ("sequences",)  # formats whose order is known but whose time is not


def prep(logs: list[Path], ws: Workspace, cfg: PrepConfig, progress: Progress | None = None) -> dict:
    """Prepare a dataset from raw plays and return its manifest.

    Parameters
    ----------
    logs : files, globs, folders or zip archives of one format.
    ws : the workspace the dataset is written to (``datasets/<name>/``).
    cfg : every option of the stage; saved in the manifest.
    progress : called with a short stage name as each step starts.

    Example: ``toolkit prep my_spotify_data.zip --format auto``
    """
    say = progress or (lambda _stage: None)
    con = _connect(ws, cfg)
    try:
        say("reading")
        src = readers.resolve(con, list(logs), cfg.format, _cols(cfg), cfg.user, ws.tmp / "unzipped")
        if cfg.split == "auto":
            cfg = replace(cfg, split="last" if src.format in UNTIMED_FORMATS else "time")
        name = safe_name(cfg.name or _default_name(logs))
        ds = ws.dataset(name)
        fingerprint = _fingerprint(src)
        done = _up_to_date(ds, fingerprint, cfg)
        if done is not None:
            return done
        readers.register_raw(con, src)
        rows_in, dropped, stream, users, tracks = _read(con, src, cfg, say)
        say("sessionizing")
        ev = build_events(con, stream, len(tracks), cfg)
        del stream
        for reason, n in ev.dropped.items():
            if n:
                dropped[reason] = dropped.get(reason, 0) + n
        say("writing events")
        manifest = _write_dataset(con, ds, src, cfg, ev, users, tracks, say)
    finally:
        con.close()
    manifest.update(_accounting(rows_in, dropped, manifest["rows_kept"]))
    manifest.update(
        name=name, format=src.format, files=len(src.files), fingerprint=fingerprint,
        config=asdict(cfg), versions=_versions(), format_version=FORMAT_VERSION, pipeline=PIPELINE,
    )
    write_manifest(ds, manifest)
    record_dataset(ws, ds, manifest)
    return manifest


def _connect(ws: Workspace, cfg: PrepConfig) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute("set memory_limit = $m", {"m": cfg.memory_limit})
    con.execute("set temp_directory = $t", {"t": str(ws.tmp / "duckdb")})
    con.execute("set preserve_insertion_order = true")
    if cfg.threads:
        con.execute("set threads = $n", {"n": cfg.threads})
    return con


def _cols(cfg: PrepConfig) -> dict[str, str]:
    pairs = {}
    for item in cfg.cols:
        role, sep, column = item.partition("=")
        if not sep or not role or not column:
            raise InputError(f"--col {item!r}: write it as role=column, e.g. --col user=listener_id")
        pairs[role.strip()] = column.strip()
    return pairs


def _default_name(logs: list[Path]) -> str:
    first = Path(str(logs[0]).split("*")[0].rstrip("/")) if logs else Path("dataset")
    return first.stem if first.suffix else first.name


def _fingerprint(src: readers.Source) -> str:
    """sha256 over the content of every input file, in reading order."""
    h = hashlib.sha256()
    for f in src.files:
        h.update(f.shown.rsplit("/", 1)[-1].encode())
        with open(f.path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


# A label for what prep writes.  Prepared datasets are reused, and trained runs keyed, by the input
# fingerprint, the config and this label, so it must change whenever prep's output changes, and
# only then: speed-ups and refactors that write the same data keep every dataset and run.
# tests/test_prep.py pins a digest of the output of a fixed log to it and fails until both move.
# (Its first value is the sha256 of the prep code at the time labels replaced code hashes.)
PIPELINE = "550a322da11ab75b028853328fa560b514917923bbcaf757797aefa46a23b257"


def _up_to_date(ds: DatasetDir, fingerprint: str, cfg: PrepConfig) -> dict | None:
    """The existing manifest when this exact input, config and code were already prepared."""
    if not ds.manifest.exists():
        return None
    old = read_json(ds.manifest)
    same = (
        old.get("fingerprint") == fingerprint
        and old.get("pipeline") == PIPELINE
        and old.get("config") == _json_roundtrip(asdict(cfg))
        and old.get("format_version") == FORMAT_VERSION
        and all(ds.array(s, a).exists() for s in SPLITS for a in ARRAYS)
        and ds.events.exists()
    )
    return {**old, "up_to_date": True} if same else None


def _json_roundtrip(value: dict) -> dict:
    import json

    return json.loads(json.dumps(value, default=str))


def _read(con: duckdb.DuckDBPyConnection, src: readers.Source, cfg: PrepConfig, say: Progress):
    """Normalise and clean in SQL; return rows_in, drops, the sorted play stream and the dictionaries.

    The cleaned plays are materialised once (measured: cheaper than recomputing the normalising
    view for each of the three queries that read them: accounting, dictionaries, sorted stream).
    """
    params = {"ts_unit": readers.ts_unit(con)} if src.format == "generic" else {}
    sql.relation(con, f"normalize_{src.format.replace('-', '_')}", **params).create_view("plays")
    try:
        sql.materialize(
            con, "clean", "cleaned", drop_podcasts=not cfg.keep_podcasts, min_ts=datetime.fromisoformat(cfg.min_ts),
            max_ts=datetime.now() + timedelta(days=1),
            max_played_ms=cfg.max_play_ms if cfg.max_play_ms is not None else 2**62,
        )
    except duckdb.Error as exc:
        raise InputError(f"{src.files[0].shown}: cannot be read as {src.format} ({str(exc).splitlines()[0]})") from exc
    con.execute("create or replace temp view kept as select * exclude (drop_reason) from cleaned where drop_reason is null")
    per_reason = con.execute(
        "select drop_reason, count(*), count(*) filter (where parse_error = 'ts'),"
        " count(*) filter (where ts is not null), count(*) filter (where parse_error = 'played_ms'),"
        " count(*) filter (where played_ms is not null),"
        " count(*) filter (where track_key is not null and track_key <> '') from cleaned group by drop_reason"
    ).fetchall()
    con.execute("drop view plays")
    rows_in = sum(r[1] for r in per_reason)
    if rows_in == 0:
        raise EmptyInputError(f"{src.files[0].shown}: holds no rows; check the file or the --format")
    _check_parseable(src, *[sum(r[i] for r in per_reason) for i in range(2, 7)])
    dropped = {r[0]: r[1] for r in per_reason if r[0] is not None}
    n_kept = sum(r[1] for r in per_reason if r[0] is None)
    dicts = sql.relation(con, "dictionaries").pl()
    users = dicts.filter(pl.col("is_user")).sort("key_hash")
    tracks = dicts.filter(~pl.col("is_user")).sort("key").select(
        pl.col("key").alias("track_key"), "artist", "title", "key_hash")
    say("ordering plays")
    stream = _fetch_stream(sql.relation(con, "ordered_plays"), n_kept)
    stream["user_code"] = _user_codes(stream.pop("user_hash"), users["key_hash"].to_numpy())
    stream["track_code"] = _track_codes(stream.pop("track_hash"), tracks["key_hash"].to_numpy())
    con.execute("drop table cleaned")
    return rows_in, dropped, stream, users["key"], tracks.drop("key_hash")


def _user_codes(hashes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """int32 user code of each play: the stream is sorted by user hash and every user of the
    dictionary (sorted by hash) has plays, so the k-th run of equal hashes is user k."""
    if len(hashes) == 0:
        return np.zeros(0, np.int32)
    change = np.r_[True, hashes[1:] != hashes[:-1]]
    if change.sum() != len(table) or np.any(hashes[change] != table):
        raise RuntimeError("the sorted plays and the user dictionary disagree; this is a bug, please report it")
    return (np.cumsum(change) - 1).astype(np.int32)


def _track_codes(hashes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """int32 track code (the row of ``table``, which is in key order) of each play's track hash."""
    if len(np.unique(table)) != len(table):
        raise RuntimeError("two distinct track ids share a 64-bit hash; please report this input")
    codes = pl.Series(hashes).replace_strict(
        pl.Series(table), pl.Series(np.arange(len(table), dtype=np.int32)), return_dtype=pl.Int32
    )
    return codes.to_numpy()


def _fetch_stream(rel: duckdb.DuckDBPyRelation, n: int) -> dict[str, np.ndarray]:
    """Copy the sorted result batch by batch into preallocated arrays, so the whole result never
    exists twice (once as DuckDB's, once as ours)."""
    reader = rel.to_arrow_reader(1 << 20)
    out: dict[str, np.ndarray] = {}
    at = 0
    for batch in reader:
        if not out:
            out = {f.name: np.empty(n, dtype=f.type.to_pandas_dtype()) for f in batch.schema}
        for name, col in zip(batch.schema.names, batch.columns):
            out[name][at : at + len(batch)] = col.to_numpy(zero_copy_only=False)
        at += len(batch)
    if at != n:
        raise RuntimeError(f"the sorted stream has {at} plays, expected {n}; this is a bug, please report it")
    return out


def _check_parseable(src: readers.Source, bad_ts: int, good_ts: int, bad_played: int, good_played: int,
                     good_track: int) -> None:
    """A column no row of which parses is a wrong mapping, not bad rows: say so and stop."""
    shown = src.files[0].shown
    mapped = dict(src.mapping)
    if good_ts == 0:
        col = mapped.get("ts", "the time column")
        raise InputError(f"{shown}: no value of column {col!r} is a timestamp ({bad_ts} unparseable); "
                         "map the right column with --col ts=<column> (ISO text, epoch seconds or ms)")
    if bad_played and good_played == 0:
        col = mapped.get("played_ms", "the played-time column")
        raise InputError(f"{shown}: no value of column {col!r} is a number of milliseconds; "
                         "map the right column with --col played_ms=<column> or leave it out")
    if good_track == 0:
        raise InputError(f"{shown}: every track id is empty; map the right column with --col track=<column>")


def _write_dataset(con, ds: DatasetDir, src: readers.Source, cfg: PrepConfig, ev: Events, users: pl.Series,
                   tracks: pl.DataFrame, say: Progress) -> dict:
    """items.parquet, events.parquet, the sequence arrays and the summary part of the manifest."""
    if len(ev.session_idx) == 0:
        raise EmptyInputError(
            f"{src.files[0].shown}: every row was filtered away; loosen --min-session-len / --min-item-plays "
            "or check --session-gap"
        )
    ds.path.mkdir(parents=True, exist_ok=True)
    # the manifest is written last: without it a half-replaced dataset is never taken for whole
    ds.manifest.unlink(missing_ok=True)
    item, code_of_item = item_ids(ev.track_code, len(tracks))
    items = _items_frame(item, ev, code_of_item, tracks)
    _write_parquet(items, ds.items)
    with atomic_path(ds.events) as tmp:
        _write_events(tmp, ev, item, users)
        _audit(con, tmp, ev)
    say("building sequences")
    splits = _write_arrays(ds, cfg, ev, item)
    cold_item = items["train_plays"].to_numpy() == 0
    return {
        **_summary(ev), "items": len(items), "splits": splits, "split_mode": cfg.split,
        "skip_rule": _skip_rule(cfg, src.format, skip_rule_counts(ev.source)), "max_len": cfg.max_len,
        "cold_items": int(cold_item.sum()), "cold_events": int((cold_item[item - 1] & (ev.split != 0)).sum()),
    }


def _items_frame(item: np.ndarray, ev: Events, code_of_item: np.ndarray, tracks: pl.DataFrame) -> pl.DataFrame:
    n = len(code_of_item) - 1
    names = tracks[code_of_item[1:]]
    return pl.DataFrame({
        ITEM: np.arange(1, n + 1, dtype=np.int32), "track_key": names["track_key"], "artist": names["artist"],
        "title": names["title"], "plays": np.bincount(item, minlength=n + 1)[1:].astype(np.int64),
        "skips": np.bincount(item, weights=ev.is_skip, minlength=n + 1)[1:].astype(np.int64),
        "train_plays": np.bincount(item[ev.split == 0], minlength=n + 1)[1:].astype(np.int64),
    })


def _write_events(path: Path, ev: Events, item: np.ndarray, users: pl.Series, chunk: int = 2_000_000) -> None:
    """events.parquet, built and written a row group at a time so the text columns of all plays
    never sit in memory together."""
    import pyarrow.parquet as pq

    splits = pl.Series(SPLITS)
    writer = None
    try:
        for lo in range(0, len(item), chunk):
            part = slice(lo, lo + chunk)
            frame = pl.DataFrame({
                SPLIT: splits.gather(ev.split[part]), SESSION: ev.session_idx[part], "position": ev.position[part],
                USER: users.gather(ev.user_code[part]), ITEM: item[part],
                "ts": pl.Series(ev.order_us[part]).cast(pl.Datetime("us")),
                "played_ms": pl.Series(ev.played[part]).replace(-1, None), IS_SKIP: ev.is_skip[part],
            }).to_arrow()
            writer = writer or pq.ParquetWriter(path, frame.schema, compression="zstd")
            writer.write_table(frame)
    finally:
        if writer is not None:
            writer.close()


def _audit(con: duckdb.DuckDBPyConnection, events_file: Path, ev: Events) -> None:
    """Run sql/checks over the written events, and check time never runs backwards in a session."""
    con.read_parquet(str(events_file)).create_view("events")
    problems = {k: v for k, v in sql.run_checks(con).items() if v}
    same = ev.session_idx[1:] == ev.session_idx[:-1]
    if np.any(same & (ev.order_us[1:] < ev.order_us[:-1])):
        problems["time runs backwards"] = 1
    if problems:
        raise RuntimeError(f"prepared events fail audits {problems}; this is a bug, please report it")


def _write_parquet(frame: pl.DataFrame, target: Path) -> None:
    with atomic_path(target) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True)


def _write_arrays(ds: DatasetDir, cfg: PrepConfig, ev: Events, item: np.ndarray) -> dict:
    """Per split, CSR offsets over its sessions -> the kernels' left-padded arrays (.npy)."""
    out = {}
    for code, split in enumerate(SPLITS):
        mine = ev.split == code
        # Under split 'last' a valid / test row is the whole prefix ending in its held-out play,
        # so the arrays of a split hold its own plays and everything before them in the session.
        if cfg.split == "last":
            owners = np.zeros(int(ev.session_idx.max()) + 1, bool)
            owners[ev.session_idx[mine]] = True
            keep = (ev.split <= code) & owners[ev.session_idx]
        else:
            keep = mine
        session = ev.session_idx[keep]
        offsets = session_bounds(session)
        seqs, fb, nxt, npos, row_session = kernels.build_sequences(
            np.ascontiguousarray(item[keep]), np.ascontiguousarray(ev.is_skip[keep]), offsets, cfg.max_len
        )
        arrays = {"seqs": seqs, "skips": fb, "next_item": nxt, "next_pos": npos,
                  "row_session": session[offsets[:-1]][row_session]}
        for name in ARRAYS:
            write_array(ds.array(split, name), arrays[name])
        out[split] = {"sessions": len(offsets) - 1, "events": int(mine.sum()), "rows": len(seqs),
                      "skips": int(ev.is_skip[mine].sum())}
    return out


def _summary(ev: Events) -> dict:
    lengths = np.diff(session_bounds(ev.session_idx))
    first, last = (pl.Series([ev.order_us.min(), ev.order_us.max()]).cast(pl.Datetime("us")).to_list())
    return {
        "rows_kept": len(ev.session_idx), "users": int(len(np.unique(ev.user_code))), "sessions": len(lengths),
        "skip_share": float(ev.is_skip.mean()), "first_play": str(first), "last_play": str(last),
        "median_session_len": float(np.median(lengths)), "mean_session_len": float(lengths.mean()),
    }


def _skip_rule(cfg: PrepConfig, fmt: str, by_source: dict) -> dict:
    rules = {
        "explicit": "the source's own skip flag",
        "ratio": f"played_ms < {cfg.skip_ratio} x duration_ms",
        "played_ms": f"played_ms < {cfg.skip_ms}",
        "gap": f"pause to the next play of the session < {cfg.skip_ms} ms",
        "unknown": "last play of a session without played time: counted as not skipped",
    }
    if fmt in UNTIMED_FORMATS:
        return {"plays_by_rule": {"none": sum(by_source.values())}, "rules": {"none": "the format has no feedback"}}
    return {"plays_by_rule": by_source, "rules": {k: rules[k] for k in by_source}}


def _accounting(rows_in: int, dropped: dict, rows_kept: int) -> dict:
    total = sum(dropped.values())
    if rows_in != rows_kept + total:
        raise RuntimeError(f"row accounting broken: {rows_in} in, {rows_kept} kept, {total} dropped; please report it")
    return {"rows_in": rows_in, "rows_dropped": dict(sorted(dropped.items())), "rows_kept": rows_kept}


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("toolkit", "duckdb", "polars", "numba", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
