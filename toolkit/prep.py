"""``toolkit prep``: raw listening logs -> a prepared dataset in the workspace.

DuckDB runs the SQL steps (normalise, clean, sessionize, label skips, filter, split, ids) over
temporary tables that spill to the workspace's tmp/ past the memory limit; polars summarises; the
numba kernels build the sequence arrays.  Every input row ends up either in events.parquet or
counted under a named drop reason, and ``rows_in == rows_kept + sum(rows_dropped)`` is checked.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import platform
import shutil
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
from toolkit.schema import IS_SKIP, ITEM, SESSION, SPLIT, SPLITS, USER

Progress = Callable[[str], None]
FORMAT_VERSION = 1  # bump when the files prep writes change meaning
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
        rows_in, dropped = _run_sql(con, src, cfg, say)
        say("writing events")
        manifest = _write_dataset(con, ds, src, cfg, say)
    finally:
        con.close()
    manifest.update(_accounting(rows_in, dropped, manifest["rows_kept"]))
    manifest.update(
        name=name, format=src.format, files=len(src.files), fingerprint=fingerprint,
        config=asdict(cfg), versions=_versions(), format_version=FORMAT_VERSION, pipeline=pipeline_hash(),
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


def pipeline_hash() -> str:
    """sha256 of the code that decides what prep writes (SQL, readers, kernels, this module)."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    sources = sorted(sql.sql_dir().rglob("*.sql")) + [here / "prep.py", here / "readers.py"]
    sources += sorted(Path(kernels.__file__).resolve().parent.glob("*.py"))
    for path in sources:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _up_to_date(ds: DatasetDir, fingerprint: str, cfg: PrepConfig) -> dict | None:
    """The existing manifest when this exact input, config and code were already prepared."""
    if not ds.manifest.exists():
        return None
    old = read_json(ds.manifest)
    same = (
        old.get("fingerprint") == fingerprint
        and old.get("pipeline") == pipeline_hash()
        and old.get("config") == _json_roundtrip(asdict(cfg))
        and old.get("format_version") == FORMAT_VERSION
        and all(ds.array(s, a).exists() for s in SPLITS for a in ARRAYS)
        and ds.events.exists()
    )
    return {**old, "up_to_date": True} if same else None


def _json_roundtrip(value: dict) -> dict:
    import json

    return json.loads(json.dumps(value, default=str))


def _run_sql(con: duckdb.DuckDBPyConnection, src: readers.Source, cfg: PrepConfig, say: Progress):
    """Normalise -> clean -> sessionize -> label -> filter -> split; returns rows_in and drops."""
    params = {"ts_unit": readers.ts_unit(con)} if src.format == "generic" else {}
    try:
        sql.materialize(con, f"normalize_{src.format.replace('-', '_')}", "plays", **params)
    except duckdb.Error as exc:
        raise InputError(f"{src.files[0].shown}: cannot be read as {src.format} ({str(exc).splitlines()[0]})") from exc
    rows_in = sql.one(con, "select count(*) from plays")[0]
    if rows_in == 0:
        raise EmptyInputError(f"{src.files[0].shown}: holds no rows; check the file or the --format")
    _check_parseable(con, src)
    say("cleaning")
    max_ts = datetime.now() + timedelta(days=1)
    sql.materialize(
        con, "clean", "cleaned", drop_podcasts=not cfg.keep_podcasts, min_ts=datetime.fromisoformat(cfg.min_ts),
        max_ts=max_ts, max_played_ms=cfg.max_play_ms if cfg.max_play_ms is not None else 2**62,
    )
    con.execute("create or replace temp view kept as select * exclude (drop_reason) from cleaned where drop_reason is null")
    say("sessionizing")
    sql.relation(con, "sessionize", session_gap_s=cfg.session_gap_s).create_view("sessioned")
    sql.relation(con, "label_skips", skip_ms=cfg.skip_ms, skip_ratio=cfg.skip_ratio).create_view("labelled")
    sql.materialize(
        con, "filter_sessions", "filtered_all", collapse_repeats=cfg.collapse_repeats,
        min_item_plays=cfg.min_item_plays, min_session_len=cfg.min_session_len,
    )
    con.execute("create or replace temp view filtered as select * exclude (drop_reason) from filtered_all where drop_reason is null")
    say("splitting")
    sql.materialize(con, "split", "split_all", split_mode=cfg.split, valid_frac=cfg.valid_frac, test_frac=cfg.test_frac)
    con.execute("create or replace temp view final_plays as select * exclude (drop_reason) from split_all where drop_reason is null")
    dropped = {}
    for table in ("cleaned", "filtered_all", "split_all"):
        for reason, n in con.sql(f"select drop_reason, count(*) from {table} where drop_reason is not null group by 1").fetchall():
            dropped[reason] = dropped.get(reason, 0) + n
    return rows_in, dropped


def _check_parseable(con: duckdb.DuckDBPyConnection, src: readers.Source) -> None:
    """A column no row of which parses is a wrong mapping, not bad rows: say so and stop."""
    counts = sql.one(
        con,
        "select count(*) filter (where parse_error = 'ts'), count(*) filter (where ts is not null),"
        " count(*) filter (where parse_error = 'played_ms'), count(*) filter (where played_ms is not null),"
        " count(*) filter (where track_key is not null and track_key <> '') from plays"
    )
    bad_ts, good_ts, bad_played, good_played, good_track = counts
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


def _write_dataset(con: duckdb.DuckDBPyConnection, ds: DatasetDir, src: readers.Source, cfg: PrepConfig, say: Progress) -> dict:
    """items.parquet, events.parquet, the sequence arrays and the summary part of the manifest."""
    n_final = sql.one(con, "select count(*) from final_plays")[0]
    if n_final == 0:
        raise EmptyInputError(
            f"{src.files[0].shown}: every row was filtered away; loosen --min-session-len / --min-item-plays "
            "or check --session-gap"
        )
    ds.path.mkdir(parents=True, exist_ok=True)
    sql.materialize(con, "items", "items")
    sql.materialize(con, "events", "events")
    problems = {k: v for k, v in sql.run_checks(con).items() if v}
    if problems:
        raise RuntimeError(f"prepared events fail audits {problems}; this is a bug, please report it")
    _copy_parquet(con, "select * from items order by item_id", ds.items)
    _copy_parquet(con, "select * from events order by session_idx, position", ds.events)
    say("building sequences")
    n_items = sql.one(con, "select count(*) from items")[0]
    splits = _write_arrays(con, ds, cfg)
    summary = _summary(con, ds)
    skip_rule = dict(con.sql("select skip_source, count(*) from final_plays group by 1 order by 1").fetchall())
    cold = sql.one(
        con,
        "select count(*) filter (where i.train_plays = 0), count(*) filter (where e.split <> 'train' and i.train_plays = 0)"
        " from events e join items i using (item_id)"
    )
    return {
        **summary, "items": n_items, "splits": splits, "skip_rule": _skip_rule(cfg, src.format, skip_rule), "split_mode": cfg.split,
        "cold_items": sql.one(con, "select count(*) from items where train_plays = 0")[0],
        "cold_events": cold[1], "max_len": cfg.max_len,
    }


def _copy_parquet(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> None:
    with atomic_path(target) as tmp:
        con.sql(query).write_parquet(str(tmp), compression="zstd")


def _write_arrays(con: duckdb.DuckDBPyConnection, ds: DatasetDir, cfg: PrepConfig) -> dict:
    """Per split, CSR offsets over its sessions -> the kernels' left-padded arrays (.npy)."""
    cols = con.sql(f"select {SESSION}, {ITEM}, {IS_SKIP}, {SPLIT} = 'train' as tr, {SPLIT} = 'valid' as va, "
                   f"{SPLIT} = 'test' as te from events order by {SESSION}, position").fetchnumpy()
    session = np.asarray(cols[SESSION], dtype=np.int64)
    items = np.ascontiguousarray(cols[ITEM], dtype=np.int32)
    skips = np.ascontiguousarray(cols[IS_SKIP], dtype=np.int8)
    in_split = {"train": np.asarray(cols["tr"]), "valid": np.asarray(cols["va"]), "test": np.asarray(cols["te"])}
    out = {}
    for split in SPLITS:
        # Under split 'last' a valid / test row is the whole prefix ending in its held-out play,
        # so the arrays of a split hold its own plays and everything before them in the session.
        if cfg.split == "last":
            rank = {"train": 0, "valid": 1, "test": 2}[split]
            keep = in_split["train"] | (in_split["valid"] & (rank >= 1)) | (in_split["test"] & (rank >= 2))
            keep &= np.isin(session, np.unique(session[in_split[split]]))
        else:
            keep = in_split[split]
        s_items, s_skips, s_session = items[keep], skips[keep], session[keep]
        uniq, counts = np.unique(s_session, return_counts=True)
        offsets = np.zeros(len(uniq) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        seqs, fb, nxt, npos, row_session = kernels.build_sequences(
            np.ascontiguousarray(s_items), np.ascontiguousarray(s_skips), offsets, cfg.max_len
        )
        arrays = {"seqs": seqs, "skips": fb, "next_item": nxt, "next_pos": npos, "row_session": uniq[row_session]}
        for name in ARRAYS:
            write_array(ds.array(split, name), arrays[name])
        out[split] = {
            "sessions": int(len(uniq)), "events": int(in_split[split].sum()), "rows": int(len(seqs)),
            "skips": int(skips[in_split[split]].sum()),
        }
    return out


def _summary(con: duckdb.DuckDBPyConnection, ds: DatasetDir) -> dict:
    """Headline numbers, computed lazily with polars over the written events file."""
    ev = pl.scan_parquet(ds.events)
    per_session = ev.group_by(SESSION).agg(pl.len().alias("n"))
    head = ev.select(
        pl.len().alias("rows_kept"),
        pl.col(USER).n_unique().alias("users"),
        pl.col(SESSION).n_unique().alias("sessions"),
        pl.col(IS_SKIP).cast(pl.Float64).mean().alias("skip_share"),
        pl.col("ts").min().alias("first_play"),
        pl.col("ts").max().alias("last_play"),
    ).collect()
    lengths = per_session.select(
        pl.col("n").median().alias("median_session_len"), pl.col("n").mean().alias("mean_session_len"),
    ).collect()
    row = {**head.row(0, named=True), **lengths.row(0, named=True)}
    row["first_play"], row["last_play"] = str(row["first_play"]), str(row["last_play"])
    return row


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


def clean_tmp(ws: Workspace) -> None:
    """Remove unpacked archives and spill files (they are recreated when needed)."""
    shutil.rmtree(ws.tmp / "unzipped", ignore_errors=True)
