"""The dataset assembled from buckets of listeners: three passes over the buckets, then one write.

Pass 1 labels each bucket's plays (sessions, skips, exact copies) and counts the plays of every
track, which the rare-track filter needs over the whole log; pass 2 filters and reduces each
bucket to one row per session (at once in pass 1 when no track can be rare); the whole log's sessions then get their windows (``sql/split.sql``)
and their place in the dataset's order (window, start, user); pass 3 puts each bucket's plays in
that order and counts what the items table and the manifest need.  The write walks the sessions in
dataset order, a chunk at a time: each chunk is a slice of every bucket (a bucket's sessions keep
their order in the merged order), so events.parquet streams out in row groups and the sequence
arrays are appended to .npy files whose headers already give their final shape.  Only per-session and per-track arrays
span the whole log.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable, Iterator

import duckdb
import numpy as np
import polars as pl
from polars.io.plugins import register_io_source

import kernels
from kernels.sessions import SOURCES
from toolkit import sessions
from toolkit.artifacts import ARRAYS, DatasetDir, atomic_path
from toolkit.buckets import Shelf
from toolkit.config import PrepConfig
from toolkit.manifest import SplitCounts
from toolkit.schema import IS_SKIP, ITEM, SESSION, SPLIT, SPLITS, USER
from toolkit.splits import SplitChoice


@dataclass(frozen=True)
class Assembled:
    """The whole log after the bucket passes: kept sessions in dataset order, counts per track."""

    bucket: np.ndarray  # int32[S], the bucket of each session (S: kept sessions, in dataset order)
    length: np.ndarray  # int64[S], its plays
    user_code: np.ndarray  # int32[S], its listener
    in_split: np.ndarray  # int32[3, S], its plays the arrays of each split hold (a prefix of the session)
    track_plays: np.ndarray  # int64[n_tracks], kept plays per track code
    track_skips: np.ndarray  # int64[n_tracks], of which skipped
    track_train: np.ndarray  # int64[n_tracks], of which in train
    split_plays: np.ndarray  # int64[3], plays per split
    split_skips: np.ndarray  # int64[3], skips per split
    sources: np.ndarray  # int64[len(SOURCES)], plays per skip rule
    first_us: int  # earliest order time of a kept play
    last_us: int  # latest
    dropped: dict[str, int]  # rows removed in the passes, by reason
    split_choice: SplitChoice  # the split used, and why


def assemble(con: duckdb.DuckDBPyConnection, stream_of: Callable[[int], dict[str, np.ndarray]], n_buckets: int,
             n_tracks: int, cfg: PrepConfig, shelf: Shelf) -> Assembled:
    """Run the three passes over ``n_buckets`` buckets (``stream_of(b)``: bucket ``b``'s plays in
    listening order, ``ordering.listening_order``'s columns plus ``track_code``).  Pass 3 leaves each
    bucket's plays in dataset order on ``shelf`` under "final" for ``write``."""
    dropped: dict[str, int] = {}
    track_plays = np.zeros(n_tracks, np.int64)
    tables = []

    def reduce(b: int, plays: dict[str, np.ndarray], counts: np.ndarray) -> None:
        kept, table, drops = sessions.filter_plays(plays, counts, cfg)
        _add(dropped, drops)
        shelf.put(b, "kept", kept)
        tables.append(table)

    # no track is rare at --min-item-plays 1 (the default), so a bucket's own counts do for the
    # filter and it is reduced at once; else the filter waits for the whole log's counts
    at_once = cfg.min_item_plays <= 1
    for b in range(n_buckets):
        plays, drops = sessions.label_plays(stream_of(b), cfg)
        _add(dropped, drops)
        counts = np.bincount(plays["track_code"][~plays["repeat"]], minlength=n_tracks)
        track_plays += counts
        if at_once:
            reduce(b, plays, counts)
        else:
            shelf.put(b, "labelled", plays)
        del plays
    for b in range(0 if at_once else n_buckets):
        reduce(b, shelf.take(b, "labelled"), track_plays)
    table = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
    per_bucket = np.array([len(t["length"]) for t in tables], np.int64)
    del tables
    rank, straddles, choice = sessions.split_sessions(con, table, cfg)
    dropped["straddles_split"] = int(table["length"][straddles].sum())
    keep = np.flatnonzero(~straddles)
    order = keep[sessions.final_order({k: v[keep] for k, v in table.items()}, rank[keep])]
    bucket = np.repeat(np.arange(n_buckets, dtype=np.int32), per_bucket)[order]
    length, lengths_all, rank = table["length"][order], table["length"], rank[order]
    counts = _order_buckets(shelf, n_buckets, order, bucket, per_bucket, lengths_all, rank, n_tracks, cfg)
    return Assembled(bucket=bucket, length=length, user_code=table["user_code"][order],
                     in_split=sessions.split_plays(length, rank, cfg.split), dropped=dropped, split_choice=choice,
                     **counts)


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


def _order_buckets(shelf: Shelf, n_buckets: int, order: np.ndarray, bucket: np.ndarray, per_bucket: np.ndarray,
                   lengths_all: np.ndarray, rank: np.ndarray, n_tracks: int, cfg: PrepConfig) -> dict:
    """Pass 3: each bucket's kept plays gathered into the dataset order of its sessions (sessions
    that straddle a window boundary left out), with the counts ``Assembled`` carries."""
    out = {"track_plays": np.zeros(n_tracks, np.int64), "track_skips": np.zeros(n_tracks, np.int64),
           "track_train": np.zeros(n_tracks, np.int64), "split_plays": np.zeros(len(SPLITS), np.int64),
           "split_skips": np.zeros(len(SPLITS), np.int64), "sources": np.zeros(len(SOURCES), np.int64),
           "first_us": np.iinfo(np.int64).max, "last_us": np.iinfo(np.int64).min}
    first_session = np.r_[0, np.cumsum(per_bucket)]
    for b in range(n_buckets):
        mine = np.flatnonzero(bucket == b)  # positions in dataset order of this bucket's sessions
        local = order[mine] - first_session[b]
        lengths = lengths_all[first_session[b]:first_session[b + 1]]
        starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
        take = _ranges(starts[local], lengths[local])
        kept = shelf.take(b, "kept")
        final = {k: kept[k][take] for k in ("track_code", "order_us", "played", "is_skip")}
        source = kept.pop("source")[take]
        del kept
        final["split"] = sessions.play_splits(lengths[local], rank[mine], cfg.split)
        track, skip, split = final["track_code"], final["is_skip"], final["split"]
        out["track_plays"] += np.bincount(track, minlength=n_tracks)
        out["track_skips"] += np.bincount(track, weights=skip, minlength=n_tracks).astype(np.int64)
        out["track_train"] += np.bincount(track[split == 0], minlength=n_tracks)
        out["split_plays"] += np.bincount(split, minlength=len(SPLITS))
        out["split_skips"] += np.bincount(split, weights=skip, minlength=len(SPLITS)).astype(np.int64)
        out["sources"] += np.bincount(source.astype(np.int64), minlength=len(SOURCES))
        if len(track):
            out["first_us"] = min(out["first_us"], int(final["order_us"].min()))
            out["last_us"] = max(out["last_us"], int(final["order_us"].max()))
        shelf.put(b, "final", final)
    return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """int64 indices of the ranges ``starts[i] : starts[i] + lengths[i]``, one after the other."""
    total = int(lengths.sum())
    heads = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
    return np.repeat(starts - heads, lengths) + np.arange(total, dtype=np.int64)


@dataclass(frozen=True)
class Chunk:
    """Sessions ``first:first + len(length)`` of the dataset order and their plays, in that order."""

    first: int  # session_idx of the first session
    length: np.ndarray  # int64[s], plays per session
    user_code: np.ndarray  # int32[s]
    in_split: np.ndarray  # int32[3, s]
    plays: dict[str, np.ndarray]  # track_code, order_us, played, is_skip, split: one entry per play


def chunks(asm: Assembled, shelf: Shelf, n_buckets: int, max_plays: int) -> Iterator[Chunk]:
    """The sessions in dataset order, about ``max_plays`` plays at a time (whole sessions, at least one)."""
    ends = np.cumsum(asm.length)
    cursor = np.zeros(n_buckets, np.int64)
    i = 0
    while i < len(asm.length):
        before = int(ends[i - 1]) if i else 0
        j = max(int(np.searchsorted(ends, before + max_plays, side="right")), i + 1)
        bk, ln = asm.bucket[i:j], asm.length[i:j]
        take = np.bincount(bk, weights=ln, minlength=n_buckets).astype(np.int64)
        used = np.flatnonzero(take)
        slices = [shelf.read(b, "final", cursor[b], cursor[b] + take[b]) for b in used]
        pieces = {k: np.concatenate([piece[k] for piece in slices]) for k in slices[0]}
        del slices
        cursor += take
        # the slices are concatenated in bucket order; a session's plays start after those of the
        # chunk's earlier sessions of its own bucket and of every lower bucket
        by_bucket = np.argsort(bk, kind="stable")
        src = np.empty(j - i, np.int64)
        src[by_bucket] = np.r_[0, np.cumsum(ln[by_bucket])[:-1]]
        gather = _ranges(src, ln)
        yield Chunk(first=i, length=ln, user_code=asm.user_code[i:j], in_split=asm.in_split[:, i:j],
                    plays={k: v[gather] for k, v in pieces.items()})
        i = j


@dataclass(frozen=True)
class Written:
    """What ``write`` counted on the way: the manifest's ``splits`` and the plays the split
    diagnostics need (``splits.tally``)."""

    splits: dict[str, SplitCounts]
    targets: np.ndarray  # int64[3], per split: kept plays after a session's first (what a query asks for)
    cold_targets: np.ndarray  # int64[3], of which the track has no train play


def write(ds: DatasetDir, asm: Assembled, shelf: Shelf, n_buckets: int, users: pl.Series, id_of_code: np.ndarray,
          cfg: PrepConfig, max_plays: int) -> Written:
    """events.parquet (row groups of 2^20 plays) and the sequence arrays, a chunk at a time."""
    rows = {code: int(((asm.in_split[code] + cfg.max_len - 1) // cfg.max_len).sum()) for code in range(len(SPLITS))}
    targets, cold = np.zeros(len(SPLITS), np.int64), np.zeros(len(SPLITS), np.int64)
    warm = asm.track_train > 0
    with ExitStack() as stack:
        arrays = {code: _open_arrays(stack, ds, split, rows[code], cfg.max_len) for code, split in enumerate(SPLITS)}
        at = dict.fromkeys(rows, 0)

        def frames(with_columns, predicate, n_rows, batch_size) -> Iterator[pl.DataFrame]:
            for chunk in chunks(asm, shelf, n_buckets, max_plays):
                frame, item = _events_frame(chunk, users, id_of_code)
                p = chunk.plays
                target = (frame["position"].to_numpy() > 0) & (p["is_skip"] == 0)
                targets[:] += np.bincount(p["split"][target], minlength=len(SPLITS))
                cold[:] += np.bincount(p["split"][target & ~warm[p["track_code"]]], minlength=len(SPLITS))
                for code in range(len(SPLITS)):
                    at[code] = _fill_rows(arrays[code], at[code], chunk, chunk.in_split[code], item, cfg.max_len)
                yield frame

        with atomic_path(ds.events) as tmp:
            # a streaming sink: its row groups do not depend on the chunks (byte-identical files
            # for any number of buckets), and it encodes columns in parallel as the eager writer does
            register_io_source(frames, schema=EVENTS_FRAME).sink_parquet(
                tmp, compression="zstd", row_group_size=1 << 20)
            if at != rows:
                raise RuntimeError(f"sequence rows written {at}, not the {rows} counted; this is a bug, please report it")
        for files in arrays.values():
            for fh in files.values():
                fh.close()  # before the renames of the ExitStack
    counts = {split: SplitCounts(sessions=int((asm.in_split[code] > 0).sum()), events=int(asm.split_plays[code]),
                                 rows=rows[code], skips=int(asm.split_skips[code])) for code, split in enumerate(SPLITS)}
    return Written(splits=counts, targets=targets, cold_targets=cold)


EVENTS_FRAME = {SPLIT: pl.String, SESSION: pl.Int64, "position": pl.Int32, USER: pl.String, ITEM: pl.Int32,
                "ts": pl.Datetime("us"), "played_ms": pl.Int64, IS_SKIP: pl.Int8}


def _events_frame(chunk: Chunk, users: pl.Series, id_of_code: np.ndarray) -> tuple[pl.DataFrame, np.ndarray]:
    """The chunk's rows of events.parquet, and the item id of each play."""
    p = chunk.plays
    n = len(p["split"])
    same = np.repeat(np.arange(len(chunk.length)), chunk.length)
    heads = np.r_[0, np.cumsum(chunk.length)[:-1]]
    position = (np.arange(n) - np.repeat(heads, chunk.length)).astype(np.int32)
    if np.any((same[1:] == same[:-1]) & (p["order_us"][1:] < p["order_us"][:-1])):
        raise RuntimeError("prepared events fail audits {'time runs backwards': 1}; this is a bug, please report it")
    item = id_of_code[p["track_code"]]
    frame = pl.DataFrame({
        SPLIT: pl.Series(SPLITS).gather(p["split"]), SESSION: same.astype(np.int64) + chunk.first, "position": position,
        USER: users.gather(np.repeat(chunk.user_code, chunk.length)), ITEM: item,
        "ts": pl.Series(p["order_us"]).cast(pl.Datetime("us")), "played_ms": pl.Series(p["played"]).replace(-1, None),
        IS_SKIP: p["is_skip"],
    }, schema=EVENTS_FRAME)
    return frame, item


def _open_arrays(stack: ExitStack, ds: DatasetDir, split: str, rows: int, max_len: int) -> dict:
    """The split's sequence array files, open for appending rows after a .npy header of their final
    shape (the header ``np.save`` writes); each is renamed into place when the write succeeds.
    Plain writes, not memory-maps, so written pages are the OS's cache, not this process's memory."""
    shapes = {"seqs": ((rows, max_len), np.int32), "skips": ((rows, max_len), np.int8),
              "next_item": ((rows, max_len), np.int32), "next_pos": ((rows, max_len), np.int32),
              "row_session": ((rows,), np.int64)}
    out = {}
    for name in ARRAYS:
        shape, dtype = shapes[name]
        fh = stack.enter_context(open(stack.enter_context(atomic_path(ds.array(split, name))), "wb"))
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(fh, header)
        out[name] = fh
    return out


def _fill_rows(files: dict, at: int, chunk: Chunk, in_split: np.ndarray, item: np.ndarray, max_len: int) -> int:
    """Append the rows of one split for the chunk's sessions (the first ``in_split`` plays of
    each), which start at row ``at``; return the next row."""
    mine = np.flatnonzero(in_split)
    if not len(mine):
        return at
    heads = np.r_[0, np.cumsum(chunk.length)[:-1]]
    take = _ranges(heads[mine], in_split[mine])
    offsets = np.r_[0, np.cumsum(in_split[mine])].astype(np.int64)
    seqs, fb, nxt, npos, row_session = kernels.build_sequences(
        np.ascontiguousarray(item[take]), np.ascontiguousarray(chunk.plays["is_skip"][take]), offsets, max_len)
    done = at + len(seqs)
    rows = {"seqs": seqs, "skips": fb, "next_item": nxt, "next_pos": npos,
            "row_session": (chunk.first + mine)[row_session].astype(np.int64)}
    for name in ARRAYS:
        rows[name].tofile(files[name])
    return done
