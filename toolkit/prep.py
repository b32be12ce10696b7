"""``toolkit prep``: raw listening logs -> a prepared dataset in the workspace.

DuckDB reads and normalises the input, marks unusable rows, counts them and builds the user and
track dictionaries (``sql/``); the usable plays stream out as narrow numbers, whole or spread
over buckets of listeners when they would not fit ``--memory`` (``toolkit/buckets.py``).  Bucket by
bucket, numpy puts them in listening order (``toolkit/ordering.py``) and one numba pass cuts that
stream into sessions and labels skips (``kernels/sessions.py``, ``toolkit/sessions.py``); the
sessions of the whole log go back to SQL for the train / valid / test windows; polars writes the
parquet files and the numba kernels build the sequence arrays, a chunk of sessions at a time
(``toolkit/assemble.py``).
One ordering of narrow numbers instead of a window query (or a wide SQL sort) per step is what
keeps prep near the cost of a plain read-sort-write (see benchmarks/).  Every input row ends up
either in events.parquet or counted under a named drop reason, and
``rows_in == rows_kept + sum(rows_dropped)`` is checked.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import platform
import re
import shutil
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from toolkit import assemble, buckets, frames, ordering, readers, splits, sql
from toolkit.artifacts import (
    ARRAYS, TRASH_PREFIX, WORK_PREFIX, DatasetDir, Workspace, array_problem, atomic_path, dataset_lock,
    dead_work_folders, read_array, read_json, record_dataset, safe_name, settle_work_folder,
    write_manifest,
)
from toolkit.config import PrepConfig, memory_bytes
from toolkit.clean import drop_unpacked, reading_unpacked
from toolkit.errors import EmptyInputError, InputError, ToolkitError, disk_full, out_of_space
from toolkit.identity import BadNameError, DatasetExistsError, build_key, build_of, build_options
from toolkit.manifest import ArrayHeader, Manifest, SkipRule
from toolkit.schema import FORMAT_VERSION, ITEM, SPLITS
from toolkit.sessions import item_ids, skip_rule_counts

Progress = Callable[[str], None]
UNTIMED_FORMATS = ("sequences",)  # formats whose order is known but whose time is not


@dataclass(frozen=True)
class PrepResult:
    """What ``prep`` returns: the dataset's manifest, and what the caller should tell the user."""

    manifest: Manifest  # as written to manifest.json (or found there, when up to date)
    notes: tuple[str, ...] = ()  # e.g. a --name that had to change, or why a dataset was rebuilt
    up_to_date: bool = False  # reused as it was: prepared before from the same input and options

    @property
    def name(self) -> str:
        return self.manifest.name


def prep(logs: list[Path] | pa.Table, ws: Workspace, cfg: PrepConfig, progress: Progress | None = None,
         force: bool = False, keep_unpacked: bool = False) -> PrepResult:
    """Prepare a dataset from raw plays and return its manifest (``PrepResult``).

    Parameters
    ----------
    logs : files, globs, folders or zip archives of one format; or the plays as a pyarrow Table
        (``toolkit.frames``: read by its columns, named ``FRAME_NAME`` unless ``cfg.name`` says).
    ws : the workspace the dataset is written to (``datasets/<name>/``).
    cfg : every option of the stage; saved in the manifest.
    progress : called with a short stage name as each step starts.
    force : rebuild even when the dataset is up to date, and replace a dataset of this name that
        was prepared from other input or options (refused otherwise).
    keep_unpacked : keep the files unpacked from zip archives in ``tmp/`` (a later prep of the same
        archive reuses them); by default they are deleted once the dataset is prepared.

    The result carries ``notes`` (not saved): what the caller should tell the user, e.g. a --name
    that had to change, or why an existing dataset was rebuilt instead of reused.

    The dataset is built in ``datasets/.tmp-<name>-<pid>`` and swapped in whole, so an interrupted
    or failed rebuild leaves the previous version in place.  One prep of a name runs at a time
    (``datasets/.<name>.lock``): a second one waits a moment, then is refused naming the first.

    Example: ``toolkit prep my_spotify_data.zip --format auto``
    """
    table = logs if isinstance(logs, pa.Table) else None
    name, notes = dataset_name(cfg.name if table is None else cfg.name or FRAME_NAME, [] if table is not None else logs)
    ws.create()
    unpacked: list[Path] = []
    with dataset_lock(ws, name), reading_unpacked(ws):
        result = _prep(logs, ws, cfg, name, notes, progress or (lambda _stage: None), force, unpacked)
    if unpacked and not keep_unpacked and not drop_unpacked(ws, unpacked):
        result = replace(result, notes=(*result.notes, f"the unpacked archive stays in {ws.unpacked} (another prep is "
                                                       "reading unpacked files); `toolkit clean` deletes it later"))
    return result


def _prep(logs: list[Path] | pa.Table, ws: Workspace, cfg: PrepConfig, name: str, notes: list[str], say: Progress,
          force: bool, unpacked: list[Path]) -> PrepResult:
    """``prep`` with the dataset's lock held; the folders of archives it unpacks go into ``unpacked``."""
    ds = ws.dataset(name)
    _clean_work_folders(ws)
    con = _connect(ws, cfg)
    try:
        say("reading")
        if isinstance(logs, pa.Table):
            src = frames.resolve_frame(logs, cfg.format, _cols(cfg), cfg.user, frames.describe(logs))
        else:
            src = readers.resolve(con, list(logs), cfg.format, _cols(cfg), cfg.user, ws.unpacked)
            unpacked.extend(readers.unpacked_folders(src, ws.unpacked))
        notes.extend(src.notes)
        if cfg.split == "auto" and src.format in UNTIMED_FORMATS:
            cfg = replace(cfg, split="last")  # else the session pass picks time or listener (toolkit/splits.py)
        if src.format == "yambda" and cfg.skip_ratio is None:
            cfg = replace(cfg, skip_ratio=readers.YAMBDA_SKIP_RATIO)  # the format's own listen threshold
        fingerprint = _fingerprint(src)
        build = build_key(fingerprint, src.format, asdict(cfg), PIPELINE, FORMAT_VERSION)
        old, why = _existing(ds)
        if old is not None and not force and _other_build(old, fingerprint, src.format, cfg):
            raise DatasetExistsError(
                f"dataset {name} already exists, prepared from other input or options; pick another name with "
                f"--name, or replace it (and make its runs stale) with --force")
        if old is not None and why is None and not force and build_of(old.to_json()) == build:
            return PrepResult(old, tuple(notes), up_to_date=True)
        if old is not None or why:
            reason = "--force" if force else why or "made by another prep version"
            notes.append(f"rebuilt dataset {name} ({reason})")
        # the runs of a dataset keep their first ids while it is rebuilt into the same build (ids made
        # before builds existed); any other build names its runs by the build too (toolkit.identity)
        keep_ids = old is not None and (old.run_ids or "input") == "input" and build_of(old.to_json()) == build
        work = DatasetDir(ws.datasets / f"{WORK_PREFIX}{name}-{os.getpid()}")
        shutil.rmtree(work.path, ignore_errors=True)
        try:
            readers.register_raw(con, src, frames.relation(con, src) if src.frame is not None else None)
            rows_in, dropped, stream_of, bounds, users, n_tracks, agreement = _read(con, src, cfg, work.path, say)
            _release_arrow_pages()
            say("sessionizing")
            n_buckets = len(bounds) - 1
            shelf = buckets.Shelf(None if n_buckets == 1 else work.path / SHELF)
            asm = assemble.assemble(con, stream_of, n_buckets, n_tracks, cfg, shelf)
            del stream_of
            shutil.rmtree(work.path / BUCKETS, ignore_errors=True)
            for reason, n in asm.dropped.items():
                if n:
                    dropped[reason] = dropped.get(reason, 0) + n
            if len(asm.length) == 0:
                raise EmptyInputError(nothing_left(src.files[0].shown, rows_in, dropped))
            say("writing events")
            work.path.mkdir(parents=True, exist_ok=True)
            # the manifest is written last: without it a half-replaced dataset is never taken for whole
            work.manifest.unlink(missing_ok=True)
            id_of_code, items = _write_items(work, asm)
            _release_arrow_pages()
            summary = _write_dataset(con, work, src, cfg, asm, shelf, users, id_of_code, items, say)
            # the audits read the written events back through DuckDB: the whole log's session and
            # track arrays (13M sessions, 10M tracks: 0.8 GB) and a single bucket's plays held on
            # the shelf are not needed for them
            del asm, users, id_of_code, shelf
            _audit(con, work.events)
            shutil.rmtree(work.path / SHELF, ignore_errors=True)
            if n_buckets > 1:
                notes.append(f"prepared in {n_buckets} buckets of listeners to stay within --memory {cfg.memory}")
            if agreement is not None:
                summary["skip_rule"] = replace(summary["skip_rule"], agreement=agreement)
            accounting = _accounting(rows_in, dropped, summary.pop("rows_kept"))
            manifest = Manifest(
                **summary, **accounting,
                name=name, format=src.format, files=len(src.files), fingerprint=fingerprint, build=build,
                run_ids="input" if keep_ids else "build",
                files_skipped=[{"file": shown, "reason": why} for shown, why in src.skipped],
                reading=_reading(src),
                config=json.loads(json.dumps(asdict(cfg), default=str)),  # as read back: lists, not tuples
                versions=_versions(), format_version=FORMAT_VERSION, pipeline=PIPELINE,
                arrays=_array_headers(work),
            )
            write_manifest(work, manifest)
            _swap_in(work.path, ds.path)
        finally:
            shutil.rmtree(work.path, ignore_errors=True)
    finally:
        con.close()
    record_dataset(ws, ds, manifest)
    return PrepResult(manifest, tuple(notes))


FRAME_NAME = "dataframe"  # the dataset name of a table in memory, unless cfg.name says
BUCKETS = ".bucket-plays"  # in the work folder: the usable plays, partitioned by bucket of listeners
SHELF = ".bucket-arrays"  # in the work folder: each bucket's arrays between passes
TRACK_NAMES = ".track-names.arrow"  # in the work folder: key, artist and title by track code, until items.parquet
_GENERIC = re.compile(
    r"(my_?spotify_?data.*|my_?data|spotify.*(account|streaming).*|streaminghistory.*|streaming_history.*"
    r"|end_?(song|video|episode).*|data|dataset|export|history|listening_?history|input|raw"
    r"|part[-_]?\d*|\d*)", re.IGNORECASE)


def dataset_name(given: str | None, logs: list[Path]) -> tuple[str, list[str]]:
    """The dataset name (``--name``, else from the input path) and notes about it.

    A generic file name (``my_spotify_data.zip``, ``StreamingHistory0.json``, ``endsong_0.json``,
    ``data.csv``, ...) is prefixed with its folder's name, so two exports in two folders get two
    datasets.  A name with characters a folder name cannot have is changed and the change noted; a
    name with none left is an error.
    """
    raw = given if given is not None else _default_name(logs)
    name = safe_name(raw)
    if not name:
        what = f"--name {given!r}" if given is not None else f"the input name {raw!r}"
        raise BadNameError(f"{what}: nothing usable as a dataset name is left of it; pass --name with ASCII "
                           "letters, digits, '_', '.' or '-' (e.g. --name spotify)")
    notes = [f"--name {given!r} is not a usable folder name; the dataset is named {name}"] if (
        given is not None and name != given) else []
    return name, notes


def _default_name(logs: list[Path]) -> str:
    first = Path(str(logs[0]).split("*")[0].rstrip("/")) if logs else Path("dataset")
    stem = (first.stem if first.suffix else first.name).strip("_-. ")
    if _GENERIC.fullmatch(stem) or not safe_name(stem):
        parent = Path(os.path.abspath(first)).parent.name
        if parent and safe_name(parent):
            return f"{parent}-{stem}" if safe_name(stem) else parent
    return stem


def _existing(ds: DatasetDir) -> tuple[Manifest | None, str | None]:
    """The manifest of the dataset already at ``ds`` (None when there is none, or it does not parse or
    fit the record) and why the dataset cannot be reused as it is (None when it is whole)."""
    if not ds.manifest.exists():
        return None, "manifest.json is missing" if ds.path.exists() else None
    try:
        old = Manifest.from_json(read_json(ds.manifest), ds.manifest)
    except (ValueError, UnicodeDecodeError, OSError):  # DamagedArtifactError is a ValueError
        return None, "manifest.json does not parse"
    return old, _damage(ds, old)


def _damage(ds: DatasetDir, manifest: Manifest) -> str | None:
    """What is wrong with the files of a prepared dataset, checked against its manifest without
    reading the data: parquet footers and .npy headers and sizes; None when all is whole."""
    import pyarrow.parquet as pq

    for path, rows in ((ds.events, manifest.rows_kept), (ds.items, manifest.items)):
        try:
            got = pq.read_metadata(path).num_rows
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            return f"{path.name} is {'missing' if not path.exists() else f'unreadable ({type(exc).__name__})'}"
        if rows is not None and got != rows:
            return f"{path.name} has {got:,} rows, not the {rows:,} of its manifest"
    recorded = manifest.arrays or {}
    for split in SPLITS:
        for array in ARRAYS:
            path = ds.array(split, array)
            want = recorded.get(path.name)
            if want is not None:
                problem = array_problem(path, tuple(want["shape"]), want["dtype"])
            else:  # a manifest from before array headers were recorded: rows and width
                counts = manifest.splits.get(split)
                rows = counts.rows if counts is not None else None
                shape = (rows,) if array == "row_session" else (rows, manifest.max_len)
                problem = array_problem(path, shape)
            if problem:
                return problem
    return None


def _array_headers(ds: DatasetDir) -> dict[str, ArrayHeader]:
    out = {}
    for split in SPLITS:
        for array in ARRAYS:
            arr = read_array(ds.array(split, array))
            out[ds.array(split, array).name] = {"shape": list(arr.shape), "dtype": arr.dtype.str}
    return out


def _other_build(old: Manifest, fingerprint: str, fmt: str, cfg: PrepConfig) -> bool:
    """Whether ``old`` was prepared from other input or other options: not the same dataset,
    whatever the prep version."""
    return (old.fingerprint != fingerprint or old.format != fmt
            or build_options(old.config or {}) != build_options(asdict(cfg)))


def _swap_in(new: Path, target: Path) -> None:
    """Put the folder ``new`` at ``target``: the old version is renamed aside, the new one renamed
    in, the old one deleted.  Each step is one rename; ``_clean_work_folders`` finishes a swap cut
    short between the two."""
    trash = target.parent / f"{TRASH_PREFIX}{target.name}-{os.getpid()}"
    shutil.rmtree(trash, ignore_errors=True)
    if target.exists():
        os.replace(target, trash)
    os.replace(new, target)
    shutil.rmtree(trash, ignore_errors=True)


def _clean_work_folders(ws: Workspace) -> None:
    """Settle the work folders of preps that are no longer running (interrupted, killed, out of
    disk): deleted, or a previous version set aside by a swap that did not finish put back."""
    for folder in dead_work_folders(ws):
        settle_work_folder(folder)


def _connect(ws: Workspace, cfg: PrepConfig) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute("set memory_limit = $m", {"m": cfg.memory_limit})
    con.execute("set temp_directory = $t", {"t": str(ws.tmp / "duckdb")})
    con.execute("set preserve_insertion_order = true")
    # DuckDB may plan a list of values (a skip column's '1', 'true', 't', 'yes', 'y') as a hash join
    # against the list, whose output comes in the threads' order, not the file's.  The play stream must leave in
    # the source's order: the listening order's fast paths count on it, and fell back to a full sort
    # on every bucket of a time-ordered log (tests/test_readers.py)
    con.execute("set disabled_optimizers = 'in_clause'")
    # DuckDB's allocator returns freed pages in the background instead of keeping them for reuse:
    # 0.2 GB less held after the plays of 50M rows streamed out
    con.execute("set allocator_background_threads = true")
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


def _reading(src: readers.Source) -> dict:
    """How the input was read, beyond the files: the listeners exports became, and the notes."""
    return {"listeners": [{"listener": who, "export": export} for who, export in src.listeners],
            "feedback_files": [f.shown for f in src.feedback], "notes": list(src.notes)}


def _fingerprint(src: readers.Source) -> str:
    """sha256 over the content of every input file, in reading order (of a table: its values)."""
    if src.frame is not None:
        return frames.fingerprint(src.frame)
    h = hashlib.sha256()
    for f in src.inputs:
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
# 2026-12: --split auto may choose the per-listener split, and extended histories are labelled by
# their end reason where Spotify did not record its skip flag; both change datasets of real logs.
# 2026-12 (exports): several exports in one folder are several listeners, and Last.fm logs carry no
# skip labels (the short-gap rule labelled them before).
PIPELINE = "2026-12-one-listener-per-export"


def _read(con: duckdb.DuckDBPyConnection, src: readers.Source, cfg: PrepConfig, work: Path, say: Progress):
    """Normalise and clean in SQL; return rows_in, drops, the plays of each bucket of listeners
    (``stream_of(b)``: sorted, as numpy columns), the buckets' user-code bounds, the dictionaries
    and the skip rules' agreement with the source's flag (None where the source has no such pair).

    Three scans of the normalised plays: the row accounting, the dictionaries, and the usable
    plays as narrow numbers (``play_stream.sql``): fetched whole when they fit ``--memory`` (one
    bucket), else spread once over the buckets' files (``toolkit/buckets.py``), read a bucket at a time.
    numpy then puts each bucket into listening order.  (Measured on 20M plays: 3x cheaper than
    materialising the cleaned rows, strings and all, and sorting them in SQL.)
    """
    params = {"ts_unit": readers.ts_unit(con)} if src.format == "generic" else {}
    normalized = sql.relation(con, f"normalize_{src.format.replace('-', '_')}", **params)
    # the three scans below re-read the source: cheap for parquet, but text (JSON, CSV) is
    # parsed once into a table instead (measured 4x faster on the 148 files of Spotify exports)
    text = not readers.is_parquet(src)
    try:
        normalized.create("plays") if text else normalized.create_view("plays")
    except duckdb.Error as exc:
        raise _unreadable(src, exc) from exc
    sql.relation(
        con, "clean", drop_podcasts=not cfg.keep_podcasts, min_ts=datetime.fromisoformat(cfg.min_ts),
        max_ts=datetime.now() + timedelta(days=1),
        max_played_ms=cfg.max_play_ms if cfg.max_play_ms is not None else 2**62,
    ).create_view("cleaned")
    con.execute("create or replace temp view kept as select * exclude (drop_reason) from cleaned where drop_reason is null")
    try:
        per_reason = sql.relation(con, "row_accounting").fetchall()
        rows_in = sum(r[1] for r in per_reason)
        if rows_in == 0:
            raise EmptyInputError(f"{src.files[0].shown}: holds no rows; check the file or the --format")
        _check_parseable(src, *[sum(r[i] for r in per_reason) for i in range(2, 7)])
        dropped = {r[0]: r[1] for r in per_reason if r[0] is not None}
        # the rows are sorted below, so DuckDB may group in any order: at 10M tracks it then spills
        # less (49 s instead of 58 s at 200M plays)
        con.execute("set preserve_insertion_order = false")
        try:
            dicts = sql.relation(con, "dictionaries").pl()
        finally:
            con.execute("set preserve_insertion_order = true")
        agreement = _skip_agreement(con, cfg)
        users = dicts.filter(pl.col("is_user")).sort("key_hash")
        # one step at a time, each dropping what it read: chained, the whole dictionary, the tracks and
        # the sorted tracks were alive at once (three copies of a 10M-track catalogue's names)
        tracks = dicts.filter(~pl.col("is_user")).select(
            pl.col("key").alias("track_key"), "artist", "title", "key_hash")
        del dicts
        tracks = tracks.sort("track_key")
        track_table = tracks["key_hash"].to_numpy()
        n_tracks = len(tracks)
        # the track names wait on disk for items.parquet: held through the play stream and the
        # bucket passes they were 0.3 GB of a 10M-track catalogue's peak, for a gather at the end
        with atomic_path(work / TRACK_NAMES) as tmp:
            tracks.drop("key_hash").write_ipc(tmp)
        del tracks
        user_plays = users["plays"].to_numpy()
        bounds = buckets.plan(user_plays, int(memory_bytes(cfg.memory)))
        # users and tracks are numbered as they leave DuckDB: 4 bytes a play each instead of an
        # 8-byte hash through the buckets' files, and one index per dictionary, built once
        coders = {"user": ordering.Coder(users["key_hash"].to_numpy(), "user"),
                  "track": ordering.Coder(track_table, "track")}
        del track_table
        stream, end_rule = _play_stream(con, rows_in)
        if len(bounds) == 2:
            say("reading plays")
            columns = [_fetch_plays(stream, int(user_plays.sum()), coders)]
        else:
            say(f"spreading plays over {len(bounds) - 1} buckets of listeners")
            spread = buckets.Spread(work / BUCKETS, bounds)
            for batch in _batches(stream, coders):
                spread.add(batch)
    except duckdb.Error as exc:
        raise _unreadable(src, exc) from exc
    con.execute(f"drop view kept; drop view cleaned; drop {'table' if text else 'view'} plays")
    plays_in = np.add.reduceat(user_plays, bounds[:-1]) if len(user_plays) else np.zeros(1, np.int64)

    def stream_of(bucket: int) -> dict[str, np.ndarray]:
        if len(bounds) == 2:
            fetched = columns.pop()  # handed over whole, so the sort frees each column as it goes
        else:
            fetched = spread.take(bucket)
            if len(fetched["user_code"]) != plays_in[bucket]:
                raise RuntimeError(f"bucket {bucket} holds {len(fetched['user_code'])} plays, not the "
                                   f"{plays_in[bucket]} counted; this is a bug, please report it")
        stream = ordering.listening_order(fetched)
        for name in NARROW_STREAM:  # int32 on their way (``_play_stream``), int64 for the session pass
            stream[name] = stream[name].astype(np.int64, copy=False)
        if end_rule == "order":  # every play's order time is its end (Spotify: the end is what it records)
            stream["end_us"] = stream["order_us"]
        elif end_rule == "played":  # no play has an end: start + played time, as play_stream.sql estimates it
            stream["end_us"] = stream["order_us"] + 1000 * np.maximum(stream["played"], 0)
        return stream

    return rows_in, dropped, stream_of, bounds, users["key"], n_tracks, agreement


def _unreadable(src: readers.Source, exc: duckdb.Error) -> ToolkitError:
    if out_of_space(exc):  # DuckDB spilling to tmp/ on a full disk: not the input's fault
        quoted = re.search(r'"([^"]+)"', str(exc))
        return disk_full(quoted.group(1) if quoted else "DuckDB's spill files in the workspace's tmp/", exc)
    return InputError(f"{src.files[0].shown}: cannot be read as {src.format} ({str(exc).splitlines()[0]})")


# play_stream.sql columns that are constant when the source lacks a field: fetched only when
# some row has it (the sort and the session pass fill the constant in otherwise)
OPTIONAL_STREAM = {"start_us": "ts_end", "end_us": "ts_end", "hint": "session_hint", "position_key": "position_hint"}


# play_stream.sql columns that travel as int32 when every value fits (lengths in ms: 24 days fit)
NARROW_STREAM = {"played": "played_ms", "duration": "duration_ms"}


def _play_stream(con: duckdb.DuckDBPyConnection, rows: int) -> tuple[duckdb.DuckDBPyRelation, str | None]:
    """play_stream.sql with only the columns worth fetching (a format's constant-null fields cost
    one cheap scan to find), and how ``end_us`` follows from the others when it is not fetched:
    "order" (every play has a source end, which is its order time), "played" (none has: start +
    played time), None (fetched).  The plays leave DuckDB once, and where there are buckets they
    are written out and read back, so every column left out saves its bytes twice.  ``rows``: the
    source rows; below 2^31 the source row numbers travel as int32, and so do the lengths in ms
    where they fit (``NARROW_STREAM``)."""
    fields = sorted(set(OPTIONAL_STREAM.values()))
    ranges = [f"{agg}({field})" for field in NARROW_STREAM.values() for agg in ("min", "max")]
    counts = dict(zip(["rows", *fields, *ranges], sql.one(
        con, "select count(*), " + ", ".join([*(f"count({f})" for f in fields), *ranges]) + " from plays")))
    absent = {name for name, field in OPTIONAL_STREAM.items() if counts[field] == 0}
    end_rule = "played" if counts["ts_end"] == 0 else "order" if counts["ts_end"] == counts["rows"] else None
    if end_rule is None:
        absent.discard("end_us")
    narrow = {"src_row": "src_row::integer as src_row"} if rows < 2**31 else {}
    for name, field in NARROW_STREAM.items():  # -1 stands for a missing value
        if -1 <= (counts[f"min({field})"] or 0) and (counts[f"max({field})"] or 0) < 2**31:
            narrow[name] = f"{name}::integer as {name}"
    rel = sql.relation(con, "play_stream")
    return rel.project(", ".join(narrow.get(c, c) for c in rel.columns if c not in absent)), end_rule


def _batches(rel: duckdb.DuckDBPyRelation, coders: dict[str, ordering.Coder], batch_rows: int = 1 << 20):
    """The rows of ``play_stream.sql`` a batch at a time, as numpy columns (views of each batch's
    buffers), users and tracks coded (``_coded``)."""
    for batch in rel.to_arrow_reader(batch_rows):
        yield _coded({name: _values(col) for name, col in zip(batch.schema.names, batch.columns)}, coders)


def _coded(batch: dict[str, np.ndarray], coders: dict[str, ordering.Coder]) -> dict[str, np.ndarray]:
    """``batch`` with its user and track hashes replaced by their codes (``user_code``, ``track_code``)."""
    for what in ("user", "track"):
        batch[f"{what}_code"] = coders[what](batch.pop(f"{what}_hash"))
    return batch


def _fetch_plays(rel: duckdb.DuckDBPyRelation, n: int, coders: dict[str, ordering.Coder]) -> dict[str, np.ndarray]:
    """The ``n`` rows of ``play_stream.sql`` as numpy columns (users and tracks coded), copied
    batch by batch into arrays allocated once, so the whole result never exists twice (neither in
    DuckDB nor here)."""
    out: dict[str, np.ndarray] = {}
    at = 0
    for batch in _batches(rel, coders):
        rows = len(batch["user_code"])
        if not out:
            out = {name: np.empty(n, dtype=col.dtype) for name, col in batch.items()}
        if at + rows > n:
            raise RuntimeError(f"the usable plays number more than the {n} counted; this is a bug, please report it")
        for name, col in batch.items():
            out[name][at : at + rows] = col
        at += rows
    if at != n:
        raise RuntimeError(f"the usable plays number {at}, not the {n} counted; this is a bug, please report it")
    if not out:  # nothing usable: empty columns of the right types
        out = _coded({f.name: np.empty(0, f.type.to_pandas_dtype())
                      for f in rel.limit(0).to_arrow_table().schema}, coders)
    return out


def _values(col) -> np.ndarray:
    """The values of a null-free, fixed-width Arrow array as a numpy view of its buffer
    (pyarrow's ``to_numpy`` measured 10x slower on DuckDB's batches)."""
    if col.null_count:
        raise RuntimeError(f"play_stream.sql returned nulls in a {col.type} column; this is a bug, please report it")
    dtype = np.dtype(col.type.to_pandas_dtype())
    return np.frombuffer(col.buffers()[1], dtype=dtype, count=len(col), offset=col.offset * dtype.itemsize)


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


def _write_items(ds: DatasetDir, asm: assemble.Assembled) -> tuple[np.ndarray, dict]:
    """items.parquet, from the track names ``_read`` left in the work folder (deleted here);
    returns the item id of each track code and the manifest's item counts (``items``,
    ``cold_items``, ``cold_events``), so the frame can go before the events are written."""
    id_of_code, code_of_item = item_ids(asm.track_plays)
    items = _items_frame(asm, code_of_item, pl.read_ipc(ds.path / TRACK_NAMES))
    (ds.path / TRACK_NAMES).unlink()
    _write_parquet(items, ds.items)
    cold_item = items["train_plays"].to_numpy() == 0  # a track without train plays has none of its plays in train
    return id_of_code, {"items": len(items), "cold_items": int(cold_item.sum()),
                        "cold_events": int(items["plays"].to_numpy()[cold_item].sum())}


def _release_arrow_pages() -> None:
    """Hand the pages Arrow's allocator keeps for reuse back to the system.  Batches streamed out
    of DuckDB and frames converted through Arrow leave them behind: after spreading 50M plays over
    buckets it held 0.9 GB that no live array used, which counted in prep's peak from then on."""
    pa.default_memory_pool().release_unused()


def _write_dataset(con, ds: DatasetDir, src: readers.Source, cfg: PrepConfig, asm: assemble.Assembled,
                   shelf: buckets.Shelf, users: pl.Series, id_of_code: np.ndarray, items: dict,
                   say: Progress) -> dict:
    """events.parquet, the sequence arrays and the summary part of the manifest (its fields by
    name: ``rows_kept``, ``splits``, ``skip_rule``, ...); ``items``: ``_write_items``' counts."""
    say("writing events and sequences")
    n_buckets = int(asm.bucket.max()) + 1
    written = assemble.write(ds, asm, shelf, n_buckets, users, id_of_code, cfg,
                             buckets.chunk_plays(int(memory_bytes(cfg.memory))))
    summary = _summary(asm)
    # a session has a play of a split exactly where that split's arrays hold some of it (in every mode)
    diag = splits.tally(asm.in_split > 0, asm.user_code, len(users), written.targets, written.cold_targets)
    known = splits.users_known(summary["users"], summary["sessions"])
    return {
        **summary, **items, "splits": written.splits, "split_mode": asm.split_choice.mode,
        "split_reason": asm.split_choice.reason, "split_diagnostics": diag,
        "split_warnings": splits.warnings(diag, asm.split_choice.mode, known),
        "skip_rule": _skip_rule(cfg, src.format, skip_rule_counts(asm.sources), int(asm.split_skips.sum())),
        "max_len": cfg.max_len,
    }


def _items_frame(asm: assemble.Assembled, code_of_item: np.ndarray, tracks: pl.DataFrame) -> pl.DataFrame:
    n = len(code_of_item) - 1
    codes = code_of_item[1:]
    names = tracks[codes]
    return pl.DataFrame({
        ITEM: np.arange(1, n + 1, dtype=np.int32), "track_key": names["track_key"], "artist": names["artist"],
        "title": names["title"], "plays": asm.track_plays[codes], "skips": asm.track_skips[codes],
        "train_plays": asm.track_train[codes],
    })


def _audit(con: duckdb.DuckDBPyConnection, events_file: Path) -> None:
    """Run sql/checks over the written events (time running backwards inside a session is checked
    as the chunks are written, ``assemble._events_frame``)."""
    con.read_parquet(str(events_file), file_row_number=True).create_view("events")
    problems = {k: v for k, v in sql.run_checks(con).items() if v}
    if problems:
        raise RuntimeError(f"prepared events fail audits {problems}; this is a bug, please report it")


def _write_parquet(frame: pl.DataFrame, target: Path) -> None:
    with atomic_path(target) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True)


def _summary(asm: assemble.Assembled) -> dict:
    lengths = asm.length
    first, last = (pl.Series([asm.first_us, asm.last_us]).cast(pl.Datetime("us")).to_list())
    return {
        "rows_kept": int(lengths.sum()), "users": int(len(np.unique(asm.user_code))), "sessions": len(lengths),
        "skip_share": float(asm.split_skips.sum() / lengths.sum()), "first_play": str(first), "last_play": str(last),
        "median_session_len": float(np.median(lengths)), "mean_session_len": float(lengths.mean()),
    }


def _skip_agreement(con: duckdb.DuckDBPyConnection, cfg: PrepConfig) -> dict | None:
    """Each fallback skip rule scored against the source's flag where the source recorded it
    (sql/skip_rule_agreement.sql), for formats whose plays carry both; None for the others."""
    if "recorded_skip" not in con.table("kept").columns:
        return None
    rows = sql.relation(con, "skip_rule_agreement", skip_ms=cfg.skip_ms).pl().to_dicts()
    return {row.pop("rule"): row for row in rows}


def _skip_rule(cfg: PrepConfig, fmt: str, by_source: dict, skips: int) -> SkipRule:
    rules = {
        "explicit": "the source's own skip flag"
        + (" where Spotify recorded it (plays ending from 2022-10-01 on, or before 2016)"
           if fmt == "spotify-extended" else ""),
        "reason": "the source's end reason where its flag is not recorded (skip: fwdbtn, backbtn, endplay, "
                  "popup, appload; kept: trackdone, logout, remote, trackerror, unexpected-exit*)",
        "ratio": f"played_ms < {cfg.skip_ratio} x duration_ms",
        "played_ms": f"played_ms < {cfg.skip_ms}",
        "gap": f"pause to the next play of the session < {cfg.skip_ms} ms",
        "unknown": "last play of a session without played time: counted as not skipped",
    }
    if fmt in readers.NO_SKIP_SIGNAL:
        return SkipRule(plays_by_rule={"none": sum(by_source.values())}, rules={"none": readers.NO_SKIP_SIGNAL[fmt]})
    if fmt == "listenbrainz":  # every listen has the explicit flag: hated (1), else kept (0)
        counts = {k: v for k, v in (("explicit", skips), ("none", sum(by_source.values()) - skips)) if v}
        return SkipRule(plays_by_rule=counts, rules={k: LISTENBRAINZ_RULES[k] for k in counts})
    return SkipRule(plays_by_rule=by_source, rules={k: rules[k] for k in by_source})


LISTENBRAINZ_RULES = {
    "explicit": "the listener hated the recording (feedback score -1)",
    "none": "ListenBrainz records only plays of at least half a track (or 4 minutes): counted as not skipped",
}


# what changes each drop reason's count: the option, or what to check in the input
DROP_FIXES = {
    "null_user": "pass --user NAME for one listener's export, or map --col user=<column>",
    "unparseable_ts": "map the time column with --col ts=<column>",
    "null_ts": "map the time column with --col ts=<column>",
    "unparseable_played_ms": "map --col played_ms=<column> or leave it out",
    "negative_played_ms": "map --col played_ms=<column> or leave it out",
    "podcast": "--keep-podcasts",
    "null_track": "map the track column with --col track=<column>",
    "impossible_time": "times before 1990 or in the future: check the clock or the unit of --col ts",
    "overlong_play": "raise --max-play-ms or leave it out",
    "repeat_collapsed": "leave out --collapse-repeats",
    "rare_track": "lower --min-item-plays",
    "short_session": "lower --min-session-len or raise --session-gap",
    "exact_duplicate": "the log lists each play more than once: check the input files",
    "straddles_split": "use --split listener or last",
}


def nothing_left(shown: str, rows_in: int, dropped: dict, top: int = 3) -> str:
    """The message for an input every row of which was dropped: the biggest drop reasons, each with its
    count and the option that changes it (filters apply in turn: a fix may uncover the next reason)."""
    reasons = sorted(((n, r) for r, n in dropped.items() if n), key=lambda x: (-x[0], x[1]))[:top]
    parts = "; ".join(f"{r} {n:,} ({DROP_FIXES.get(r, 'check the input')})" for n, r in reasons)
    return f"{shown}: every row was filtered away ({rows_in:,} in): {parts}"


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
