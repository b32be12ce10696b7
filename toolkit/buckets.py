"""The usable plays cut into buckets of listeners, so prep's memory follows ``--memory``, not the log.

Sessions never cross listeners, so every per-play step of prep (listening order, exact copies,
sessions, skip labels, filters) runs on one bucket at a time.  A bucket is a contiguous range of
user codes (users numbered by the rank of their id's hash, ``ordering.listening_order``), so the
buckets read in order list the plays in the same order as the whole log read at once: one bucket
or fifty give the same dataset.  The usable plays leave DuckDB once, batch by batch, and each
batch is spread over the buckets' files (``Spread``, in prep's work folder); a log that fits the
budget is one bucket, fetched straight into memory with nothing written.

Between passes a bucket's arrays wait on a ``Shelf``: in memory for a single bucket, else as raw
files beside the buckets.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from kernels.ordering import stable_places

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
    if not len(user_plays):  # no usable play: one empty bucket, so the passes run as for any log
        return np.zeros(2, np.int64)
    cap = max(1, budget // PLAY_BYTES)
    ends = np.cumsum(user_plays, dtype=np.int64)
    bounds, start = [0], 0
    while start < len(user_plays):
        before = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, before + cap, side="right")), start + 1)
        bounds.append(stop)
        start = stop
    return np.asarray(bounds, np.int64)


# Plays per chunk of the final write at most: one of events.parquet's row groups; larger chunks
# only hold more memory (the writer encodes a row group at a time anyway).  At two row groups the
# write added 0.9 GB to what prep held before it (50M plays, 3.9M sessions).
CHUNK_MAX = 1 << 20


def chunk_plays(budget: int) -> int:
    """Plays per chunk of the final write under a ``budget`` of bytes."""
    return max(1, min(CHUNK_MAX, budget // WRITE_PLAY_BYTES))


class Spread:
    """The usable plays, streamed once, appended to one file per bucket (raw column bytes, a block
    of every column per batch) and read back a bucket at a time, whole.

    Raw numbers rather than a partitioned parquet write through DuckDB: the rows are already
    narrow numbers leaving DuckDB batch by batch, so encoding and decoding parquet (measured: 23 s
    to write and 8 s to read back 20M plays in 3 buckets) buys nothing.  Files are written with
    plain writes, not memory-maps, so the pages are the OS's cache, not this process's memory.
    """

    def __init__(self, folder: Path, bounds: np.ndarray):
        self.folder = folder
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.edges = bounds[1:-1]  # the first user code of every bucket but the first
        self.blocks: list[list[int]] = [[] for _ in range(len(bounds) - 1)]
        self.dtypes: dict[str, np.dtype] = {}

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Append one batch of plays (numpy columns, ``user_code`` among them) to their buckets."""
        self.dtypes = self.dtypes or {k: v.dtype for k, v in batch.items()}
        bucket = np.searchsorted(self.edges, batch["user_code"], side="right")
        heads = np.r_[0, np.cumsum(np.bincount(bucket, minlength=len(self.blocks)))]
        if np.all(bucket[1:] >= bucket[:-1]):  # a log listing each user's plays together: in order already
            cols = {k: batch[k] for k in self.dtypes}
        else:  # a counting sort by bucket, each column scattered to its place (kernels/ordering.py)
            places = stable_places(bucket.astype(np.int32), 0, len(self.blocks) - 1)
            cols = {}
            for k in self.dtypes:
                cols[k] = np.empty_like(batch[k])
                cols[k][places] = batch[k]
        for b in np.flatnonzero(np.diff(heads)).tolist():
            with open(self._path(b), "ab") as fh:
                for col in cols.values():
                    col[heads[b]:heads[b + 1]].tofile(fh)
            self.blocks[b].append(int(heads[b + 1] - heads[b]))

    def take(self, bucket: int) -> dict[str, np.ndarray]:
        """Every play of one bucket as numpy columns; its file is deleted."""
        total = sum(self.blocks[bucket])
        out = {k: np.empty(total, dt) for k, dt in self.dtypes.items()}
        if not total:
            return out
        at = 0
        with open(self._path(bucket), "rb") as fh:
            for n in self.blocks[bucket]:
                for k in out:
                    fh.readinto(memoryview(out[k][at:at + n]).cast("B"))
                at += n
        self._path(bucket).unlink()
        return out

    def _path(self, bucket: int) -> Path:
        return self.folder / f"{bucket}.bin"


class Shelf:
    """Named arrays of each bucket kept between passes: in memory when ``folder`` is None (one
    bucket: nothing is written), else as raw files in ``folder``, read back whole or in slices
    with plain reads (no memory-maps, which would count the pages as this process's memory).

    On disk an int64 array whose values fit int32 (plays' lengths in ms, say) is stored as int32
    and widened when read back: a time-ordered prep at 200M plays writes and reads the shelf twice
    over, at a few hundred MB/s, so every byte a play saves there counts."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._held: dict[tuple[int, str], dict[str, np.ndarray]] = {}
        self._dtypes: dict[tuple[int, str], dict[str, tuple[np.dtype, np.dtype]]] = {}  # (given, stored)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)

    def put(self, bucket: int, stage: str, arrays: dict[str, np.ndarray]) -> None:
        if self.folder is None:
            self._held[bucket, stage] = arrays
            return
        self._dtypes[bucket, stage] = {}
        for name, arr in arrays.items():
            stored = _narrowed(arr)
            self._dtypes[bucket, stage][name] = (arr.dtype, stored.dtype)
            np.ascontiguousarray(stored).tofile(self._path(bucket, stage, name))

    def take(self, bucket: int, stage: str) -> dict[str, np.ndarray]:
        """The arrays put under (bucket, stage), handed over whole; the shelf lets go of them."""
        if self.folder is None:
            return self._held.pop((bucket, stage))
        out = {}
        for name, (given, stored) in self._dtypes.pop((bucket, stage)).items():
            out[name] = np.fromfile(self._path(bucket, stage, name), stored).astype(given, copy=False)
            self._path(bucket, stage, name).unlink()
        return out

    def read(self, bucket: int, stage: str, start: int, stop: int) -> dict[str, np.ndarray]:
        """Entries ``start:stop`` of the arrays put under (bucket, stage); they stay on the shelf."""
        if self.folder is None:
            return {k: v[start:stop] for k, v in self._held[bucket, stage].items()}
        return {name: np.fromfile(self._path(bucket, stage, name), stored, count=stop - start,
                                  offset=start * stored.itemsize).astype(given, copy=False)
                for name, (given, stored) in self._dtypes[bucket, stage].items()}

    def _path(self, bucket: int, stage: str, name: str) -> Path:
        return self.folder / f"{bucket}.{stage}.{name}.bin"


def _narrowed(arr: np.ndarray) -> np.ndarray:
    """``arr`` as int32 when it is int64 and every value fits, else as it is."""
    i32 = np.iinfo(np.int32)
    if arr.dtype == np.int64 and len(arr) and i32.min <= int(arr.min()) and int(arr.max()) <= i32.max:
        return arr.astype(np.int32)
    return arr
