"""The usable plays cut into buckets of listeners, so prep's memory follows ``--memory``, not the log.

Sessions never cross listeners, so every per-play step of prep (listening order, exact copies,
sessions, skip labels, filters) runs on one bucket at a time.  A bucket is a contiguous range of
user codes (users numbered by the rank of their id's hash, ``prep._listening_order``), so the
buckets read in order list the plays in the same order as the whole log read at once: one bucket
or fifty give the same dataset.  DuckDB writes the buckets in one scan, partitioned parquet under
the workspace's tmp/ (spilling under its own memory limit); a log that fits the budget is one
bucket, read straight from the query with nothing written.

Between passes a bucket's arrays wait on a ``Shelf``: in memory for a single bucket, else as .npy
files beside the buckets, read back memory-mapped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from toolkit import sql

# Peak bytes per play of a bucket's passes (the sorted stream, its sessions and the copies the
# filters take): prep at 10M plays in one bucket peaked at 1.78 GB.  A bucket holds at most
# budget / PLAY_BYTES plays.
PLAY_BYTES = 180
# Bytes per play of one chunk of the final write (the buckets' slices, the chunk in dataset order,
# its events frame and its rows of the sequence arrays).
WRITE_PLAY_BYTES = 400


def plan(user_plays: np.ndarray, budget: int) -> np.ndarray:
    """int64[n_buckets + 1]: bucket ``b`` holds the users with codes ``bounds[b]:bounds[b + 1]``.

    ``user_plays``: usable plays per user code.  Each bucket takes whole users in code order until
    the next would take it past ``budget // PLAY_BYTES`` plays; a user with more plays than that
    gets a bucket of their own (their sessions cannot be cut).
    """
    cap = max(1, budget // PLAY_BYTES)
    ends = np.cumsum(user_plays, dtype=np.int64)
    bounds, start = [0], 0
    while start < len(user_plays):
        before = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, before + cap, side="right")), start + 1)
        bounds.append(stop)
        start = stop
    return np.asarray(bounds, np.int64)


def chunk_plays(budget: int) -> int:
    """Plays per chunk of the final write under a ``budget`` of bytes."""
    return max(1, budget // WRITE_PLAY_BYTES)


def write_buckets(con: duckdb.DuckDBPyConnection, stream: duckdb.DuckDBPyRelation, user_hashes: np.ndarray,
                  bounds: np.ndarray, folder: Path) -> None:
    """``stream`` (play_stream.sql's columns) written as parquet under ``folder/bucket=<b>/``, one
    scan; ``user_hashes`` are the user dictionary's hashes in code order."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    bucket = np.repeat(np.arange(len(bounds) - 1, dtype=np.int32), np.diff(bounds))
    con.register("user_buckets", pl.DataFrame({"user_hash": user_hashes, "bucket": bucket}))
    stream.create_view("stream")
    try:
        sql.relation(con, "play_buckets").write_parquet(str(folder), partition_by=["bucket"])
    finally:
        con.execute("drop view stream")
        con.unregister("user_buckets")


def read_bucket(con: duckdb.DuckDBPyConnection, folder: Path, bucket: int) -> duckdb.DuckDBPyRelation:
    """The plays of one bucket written by ``write_buckets`` (the bucket column left out)."""
    return con.read_parquet(str(folder / f"bucket={bucket}" / "*.parquet"), hive_partitioning=False)


class Shelf:
    """Named arrays of each bucket kept between passes: in memory when ``folder`` is None (one
    bucket: nothing is written), else as .npy files in ``folder``."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._held: dict[tuple[int, str], dict[str, np.ndarray]] = {}
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)

    def put(self, bucket: int, stage: str, arrays: dict[str, np.ndarray]) -> None:
        if self.folder is None:
            self._held[bucket, stage] = arrays
            return
        for name, arr in arrays.items():
            np.save(self._path(bucket, stage, name), arr, allow_pickle=False)

    def take(self, bucket: int, stage: str) -> dict[str, np.ndarray]:
        """The arrays put under (bucket, stage), handed over whole; the shelf lets go of them."""
        if self.folder is None:
            return self._held.pop((bucket, stage))
        out = {}
        for path in sorted(self.folder.glob(f"{bucket}.{stage}.*.npy")):
            out[path.name.split(".")[2]] = np.load(path, allow_pickle=False)
            path.unlink()
        return out

    def view(self, bucket: int, stage: str) -> dict[str, np.ndarray]:
        """The arrays put under (bucket, stage), memory-mapped where they are on disk; kept."""
        if self.folder is None:
            return self._held[bucket, stage]
        return {path.name.split(".")[2]: np.load(path, mmap_mode="r", allow_pickle=False)
                for path in sorted(self.folder.glob(f"{bucket}.{stage}.*.npy"))}

    def _path(self, bucket: int, stage: str, name: str) -> Path:
        return self.folder / f"{bucket}.{stage}.{name}.npy"
