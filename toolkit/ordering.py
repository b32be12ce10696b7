"""Listening order: the usable plays of one bucket, as numpy columns, sorted the way the session
pass reads them; and the coder that numbers their users and tracks.

Public interface
    ``listening_order(columns)``: the columns of ``sql/play_stream.sql`` (as numpy, one array per
    column, users and tracks coded) sorted by (user, order time, source position, source row);
    columns a format leaves constant come back filled.
    ``Coder(table, what)``: the code (row of a dictionary) of each 64-bit id hash.
    ``LAST``: the position key ``play_stream.sql`` gives a play without a source position.

Why numpy and not SQL: logs nearly always list each listener's plays together and in time order,
so the sort is usually a check plus a copy of runs (see ``listening_order``); a window query or a
wide SQL sort per step cost several times a plain read-sort-write (see benchmarks/).
"""

from __future__ import annotations

import numpy as np

from kernels.lookup import EMPTY, build_index, look_up
from kernels.ordering import stable_places

LAST = np.iinfo(np.int64).max  # play_stream.sql's position_key of a play without a source position


def listening_order(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The plays (play_stream.sql columns as numpy, users and tracks already coded: ``user_code``,
    ``track_code``) sorted by (user code, order time, source position, source row).  Users are
    numbered by the rank of their id hash in the user dictionary, so a bucket's users are a range
    of codes.  Columns a format leaves constant may be absent; they come back filled (start = order
    time, hint and position -1).

    Logs usually list each user's plays together and in time order, so the stream is cut into
    runs of one user, the runs are ordered by user, and the full sort runs only when a run is out
    of time order or two runs of one user overlap.  A log in time order with users interleaved
    (runs of a play or two) is put together by one stable counting sort by user instead (each
    column scattered to its place), and checked.
    ``columns`` is consumed: each column is released as soon as its sorted copy exists.
    """
    codes = columns.pop("user_code")
    n = len(codes)
    change = codes[1:] != codes[:-1]  # where a run of one user's plays ends
    key_names = ["order_us", *(["position_key"] if "position_key" in columns else []), "src_row"]
    keys = [columns[name] for name in key_names]
    del columns["src_row"]  # a sort key only, not an output
    if n and (np.count_nonzero(change) + 1) * 64 > n:
        # short runs: a log in time order with users interleaved.  Each user's plays are then
        # usually in order already, and one stable sort by user (a counting sort on narrow codes)
        # puts them together; checking per run would cost more than that sort.
        by_play = codes
        del codes, change
        places = _stable_places(by_play)
        sorted_keys = [_placed(k, places) for k in keys]
        user = _placed(by_play, places)
        if _ascending([k[:-1] for k in sorted_keys], [k[1:] for k in sorted_keys], user[1:] == user[:-1]):
            done = dict(zip(key_names[:-1], sorted_keys))  # the output keys are placed already (not src_row)

            def take(col: np.ndarray, name: str = "") -> np.ndarray:
                return done.pop(name) if name in done else _placed(col, places)
        else:
            perm = np.lexsort((*keys[::-1], by_play))
            user = by_play[perm]

            def take(col: np.ndarray, name: str = "") -> np.ndarray:
                return col[perm]
        del sorted_keys, by_play
    else:
        heads = np.flatnonzero(np.r_[True, change]) if n else np.zeros(0, np.int64)
        run_user = codes[heads]
        lengths = np.diff(np.r_[heads, n])
        del codes, change
        runs = np.argsort(run_user, kind="stable")
        if _runs_in_order(keys, heads[runs], lengths[runs], run_user[runs]):
            take = _run_gather(heads[runs], lengths[runs])
            user = np.repeat(run_user[runs], lengths[runs])
        else:
            user = np.repeat(run_user, lengths)
            perm = np.lexsort((*keys[::-1], user))
            take, user = (lambda col, name="": col[perm]), user[perm]
    del keys
    out = {"user_code": user}
    for name in list(columns):
        out[name] = take(columns.pop(name), name)
    out.setdefault("start_us", out["order_us"])  # one array for both when they are the same times
    out.setdefault("hint", np.full(n, -1, np.int64))
    key = out.pop("position_key", None)
    out["position"] = np.where(key == LAST, -1, key) if key is not None else np.full(n, -1, np.int64)
    return out


def _stable_places(codes: np.ndarray) -> np.ndarray:
    """Where each of the int32 ``codes`` goes in their stable order: a counting sort when their range
    is narrow (a bucket's listeners are a range of codes, so the count table is at most one entry per
    listener of the bucket's), else the inverse of numpy's stable sort."""
    lo = int(codes.min(initial=0))
    span = int(codes.max(initial=0)) - lo
    if span <= max(len(codes), 2**16):
        return stable_places(codes, lo, span)
    places = np.empty(len(codes), np.int64)
    places[np.argsort(codes, kind="stable")] = np.arange(len(codes))
    return places


def _placed(col: np.ndarray, places: np.ndarray) -> np.ndarray:
    """``col`` scattered to ``places`` (``out[places[i]] = col[i]``): read in order, written to
    one running position per code, which is much kinder to the cache than a gather by the sorted
    indices when the codes are interleaved (see kernels/ordering.py)."""
    out = np.empty_like(col)
    out[places] = col
    return out


def _runs_in_order(keys: list[np.ndarray], starts: np.ndarray, lengths: np.ndarray, users: np.ndarray) -> bool:
    """Whether reading the runs (``starts``, ``lengths``, already ordered by their ``users``) one
    after the other lists each user's plays in ascending order of ``keys``: inside every run, and
    from the last play of a run to the first play of the next run of the same user."""
    n = len(keys[0])
    if n < 2:
        return True
    same_run = np.ones(n - 1, bool)  # stream pairs (i, i + 1) inside one run
    same_run[np.sort(starts)[1:] - 1] = False
    if not _ascending([k[:-1] for k in keys], [k[1:] for k in keys], same_run):
        return False
    tail, head = (starts + lengths - 1)[:-1], starts[1:]
    return _ascending([k[tail] for k in keys], [k[head] for k in keys], users[1:] == users[:-1])


def _ascending(before: list[np.ndarray], after: list[np.ndarray], where: np.ndarray) -> bool:
    """Whether ``before[i] < after[i]`` lexicographically over the key arrays wherever ``where``."""
    later = after[-1] > before[-1]
    for b, a in zip(before[-2::-1], after[-2::-1]):
        later = (a > b) | ((a == b) & later)
    return bool(np.all(later | ~where))


def _run_gather(starts: np.ndarray, lengths: np.ndarray):
    """A function copying a column's runs, in the given order, into one array: slice copies
    when runs are long (the usual case), else one fancy-index gather."""
    n = int(lengths.sum())
    if len(starts) * 64 > n:
        new_heads = np.r_[0, np.cumsum(lengths)[:-1]]
        perm = np.repeat(starts - new_heads, lengths) + np.arange(n)
        return lambda col, name="": col[perm]

    def copy(col: np.ndarray, name: str = "") -> np.ndarray:
        out, at = np.empty(n, col.dtype), 0
        for start, length in zip(starts.tolist(), lengths.tolist()):
            out[at : at + length] = col[start : start + length]
            at += length
        return out

    return copy


class Coder:
    """The code of each 64-bit id hash: its row in a dictionary's ``table`` (the hashes of the
    dictionary's keys), through a hash index built once (``kernels/lookup.py``), which also finds
    two keys sharing a hash.  A hash not in the table is a bug upstream (the dictionaries and the
    plays come from one log)."""

    def __init__(self, table: np.ndarray, what: str) -> None:
        self.what = what
        self._table = np.ascontiguousarray(table, np.uint64)
        self._slots, shared = build_index(self._table)
        if shared >= 0:
            raise RuntimeError(f"two distinct {what} ids share a 64-bit hash; please report this input")

    def __call__(self, hashes: np.ndarray) -> np.ndarray:
        """int32 (n,): the code of each of ``hashes``."""
        codes = look_up(self._table, self._slots, np.ascontiguousarray(hashes, np.uint64))
        if len(codes) and int(codes.min()) == EMPTY:
            raise RuntimeError(f"the plays and the {self.what} dictionary disagree; this is a bug, please report it")
        return codes
