"""The listener's earlier plays as context for a query: successors and history columns.

Personal listening repeats itself across sessions: the same albums and playlists come back in the
same order.  A query may read what its listener did *before it* (any split: that is the past at
the query's time), never a later play.  Two views of that past:

- ``row_successors``: at each play, the last K tracks that followed the same track in the
  listener's earlier plays.  On the 47 Spotify account exports ranking them first lifts the
  ``repeat`` baseline from validation NDCG@10 0.087 to 0.199 (K = 10; benchmarks/README.md).
- ``row_history``: the listener's last plays before a row, as extra columns on its left
  (``SplitArrays.history`` of them); they are context, never queries or targets.

Both are computed from ``events.parquet`` in listener-time order and tested against plain-Python
references (tests/test_history.py).  Training and evaluation read successors through
``SuccessorLinks`` instead, a batch of rows at a time from links DuckDB builds once on disk, so a
split's (rows, positions, K) never sits in memory; ``row_successors`` is what they are tested against.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from toolkit import sql
from toolkit.artifacts import pid_alive
from toolkit.schema import ITEM, PAD, SESSION, TS, USER

SKIP = "is_skip"


class ListenerOrder:
    """A prepared dataset's plays in listener-time order, and where each session and listener begins."""

    def __init__(self, events: pl.DataFrame) -> None:
        """``events``: one row per kept play with session_idx, position, user_id, item_id, ts, is_skip."""
        ev = (events.select(SESSION, "position", USER, ITEM, TS, SKIP)
              .sort([USER, TS, SESSION, "position"], nulls_last=True))
        sess = ev[SESSION].to_numpy().astype(np.int64)
        user_null = ev[USER].is_null().to_numpy()
        user = ev[USER].fill_null("\x00").to_numpy()
        self.items = ev[ITEM].to_numpy().astype(np.int32)
        self.skips = ev[SKIP].to_numpy().astype(np.int8)
        n = len(ev)
        # (a session of no known listener is a block of its own: it reads its own earlier plays only)
        new_sess = np.r_[True, sess[1:] != sess[:-1]] if n else np.zeros(0, bool)
        block = (new_sess & user_null) | (np.r_[True, user[1:] != user[:-1]] if n else np.zeros(0, bool))
        self.block_start = np.maximum.accumulate(np.where(block, np.arange(n), 0)) if n else np.zeros(0, np.int64)
        # each block's first play; the named listeners' blocks come first (nulls sort last), by name,
        # so a listener's code (``row_listener``) is its rank among the names
        blocks = np.flatnonzero(block)
        self.n_blocks = len(blocks)  # listeners and sessions of no known listener: a code past them is no one's
        named = ~user_null[blocks]
        self.listener_names = [str(u) for u in user[blocks[named]]]
        self._listener_index = {u: i for i, u in enumerate(self.listener_names)}
        self._listener_bounds = np.r_[blocks, n][: int(named.sum()) + 1]
        first = np.flatnonzero(new_sess)
        self.sessions, at = np.unique(sess[first], return_index=True)
        if len(self.sessions) != len(first):
            raise ValueError("a session's plays are not contiguous in listener-time order")
        self.first = first[at]  # (S,) each session's first play
        self.lengths = np.diff(np.r_[first, n])[at]  # (S,)

    def listener_plays(self, name: str) -> tuple[slice, int] | None:
        """Where the named listener's plays lie in ``items`` / ``skips`` (oldest first), and the
        listener's code (``row_listener``); None for a name not in the log."""
        i = self._listener_index.get(name)
        if i is None:
            return None
        return slice(int(self._listener_bounds[i]), int(self._listener_bounds[i + 1])), i

    def row_starts(self, row_session: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """For rows ``width`` wide aligned at their session's end (``kernels.build_sequences``): the index
        of each row's first play in listener-time order, and how many plays the row holds."""
        rs = np.asarray(row_session, dtype=np.int64)
        last_row = np.r_[rs[1:] != rs[:-1], True] if len(rs) else np.zeros(0, bool)
        return _row_windows(self.sessions, self.first, self.lengths, rs, _rows_from_end(last_row), width)


def row_history(order: ListenerOrder, row_session: np.ndarray, width: int,
                length: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``length`` plays of each row's listener before the row's first column.

    ``order``: the dataset's plays in listener-time order (``ListenerOrder`` of ``events.parquet``,
    every split).  ``row_session``: int64 (R,) the session
    of each row of a split, rows of a session adjacent and in time order, each ``width`` columns
    wide and aligned at the session's end (``kernels.build_sequences``).  Returns ``(items int32 (R,
    length), skips int8 (R, length))``, left-padded with PAD / 0, oldest play first.

    The context of a session's first row is the listener's earlier sessions; that of a later row of a
    long session also holds the session's own earlier plays, so every query reads up to
    ``length + width`` plays of its past.  A session of no known listener (null user) reads its own
    earlier plays only.  Sessions of one listener never overlap in time (a session ends where the
    listener paused), so listener-time order keeps each session's plays together and in position order.
    """
    if length < 0:
        raise ValueError(f"history length must be >= 0, got {length}")
    rs = np.asarray(row_session, dtype=np.int64)
    if not len(order.items):
        return np.full((len(rs), length), PAD, np.int32), np.zeros((len(rs), length), np.int8)
    begin, _ = order.row_starts(rs, width)
    idx = begin[:, None] - length + np.arange(length)[None, :]  # (R, length)
    ok = idx >= order.block_start[begin][:, None]  # the same listener's plays only
    src = np.where(ok, idx, 0)
    return np.where(ok, order.items[src], PAD).astype(np.int32), np.where(ok, order.skips[src], 0).astype(np.int8)


def row_successors(order: ListenerOrder, row_session: np.ndarray, width: int, k: int, window: int = 0) -> np.ndarray:
    """int32 (R, width, k * (1 + window)): at each play of each row, the tracks that followed the same
    track in the listener's earlier plays, the latest first, PAD where fewer than ``k`` (or at padding);
    with ``window``, then the ``window`` plays after each of those successors (``play_successors``).

    "Earlier" is strictly before the play itself, and a window stops at the play, so every entry is a
    play at or before it: nothing later than the query enters.  Listeners return to albums and
    playlists in their order, so "what came after this track last time" is often what comes next; a
    model scores these tracks through its copy term (``SeqRec.successor_weights``), the count baseline
    ``repeat`` ranks them first.
    """
    if k < 0 or window < 0:
        raise ValueError(f"successors and window must be >= 0, got {k} and {window}")
    rs = np.asarray(row_session, dtype=np.int64)
    out = np.full((len(rs), width, k * (1 + window)), PAD, np.int32)
    if not len(rs) or not k or not len(order.items):
        return out
    succ = play_successors(order.items, order.block_start, k, window)
    begin, count = order.row_starts(rs, width)
    col = np.arange(width)[None, :]
    real = col >= width - count[:, None]  # (R, width): rows are left-padded
    ev_idx = begin[:, None] + col - (width - count[:, None])
    out[real] = succ[ev_idx[real]]
    return out


LINKS_PREFIX = "successor-links-"  # + the building process's id: a scratch folder of SuccessorLinks


class SuccessorLinks:
    """What ``row_successors`` gives, for any rows and any K, read a batch at a time.

    ``row_successors`` holds (R, L, K) int32 of a whole split and ``ListenerOrder`` the whole log's
    events: about 20 GB at 200M plays and K = 10.  Here DuckDB links every play of events.parquet to
    its listener's previous play of the same track and to the track that followed that play
    (``sql/successor_links.sql``, out of core); the links wait in two memory-mapped files (12 bytes
    a play, their names unlinked at once, so nothing is left behind), and a batch's K successors
    are read by following the links K - 1 times: the latest successor of a play is the track after
    its previous play of the track, the next one the track after the play before that, and so on.
    With ``window`` the links also hold each play's next play and its track (12 bytes a play more),
    which the windows after the successors walk along.
    """

    def __init__(self, events: Path, scratch: Path, memory_limit: str = "1GB", window: bool = False) -> None:
        """``scratch``: a folder inside the workspace for the link files and DuckDB's spill."""
        scratch.mkdir(parents=True, exist_ok=True)
        for old in scratch.glob(f"{LINKS_PREFIX}*"):  # left by a build that was killed (its process is gone)
            pid = old.name[len(LINKS_PREFIX):].split("-")[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{LINKS_PREFIX}{os.getpid()}-", dir=scratch))
        with duckdb.connect() as con:
            con.execute("set memory_limit = $m", {"m": memory_limit})
            con.execute("set temp_directory = $t", {"t": str(folder / "spill")})
            con.execute("set preserve_insertion_order = false")  # the rows are put in place by index
            sizes = con.execute("select session_idx, min(file_row_number) as first, count(*) as plays "
                                "from read_parquet($f, file_row_number = true) group by session_idx "
                                "order by session_idx", {"f": str(events)}).fetchnumpy()
            # a view cannot take a parameter: the path goes in as a quoted literal
            con.execute(f"create view events as select * from read_parquet('{_quoted(events)}', "
                        "file_row_number = true)")
            n = int(sizes["plays"].sum())
            self.prev = np.lib.format.open_memmap(folder / "prev.npy", "w+", np.int64, (n,))
            self.after = np.lib.format.open_memmap(folder / "after.npy", "w+", np.int32, (n,))
            self.window = window
            if window:
                self.next = np.lib.format.open_memmap(folder / "next.npy", "w+", np.int64, (n,))
                self.item = np.lib.format.open_memmap(folder / "item.npy", "w+", np.int32, (n,))
            for batch in sql.relation(con, "successor_links").to_arrow_reader(1 << 20):
                at = batch.column(0).to_numpy()
                self.prev[at] = batch.column(1).to_numpy()
                self.after[at] = batch.column(2).to_numpy()
                if window:
                    self.next[at] = batch.column(3).to_numpy()
                    self.item[at] = batch.column(4).to_numpy()
        for links in (self.prev, self.after, *((self.next, self.item) if window else ())):
            links.flush()
        shutil.rmtree(folder)  # the maps keep the pages; the names go now
        self.sessions = np.asarray(sizes["session_idx"], np.int64)
        self.first = np.asarray(sizes["first"], np.int64)
        self.lengths = np.asarray(sizes["plays"], np.int64)

    def rows(self, row_session: np.ndarray, idx: np.ndarray, width: int, k: int, window: int = 0) -> np.ndarray:
        """int32 (len(idx), width, k * (1 + window)): ``row_successors`` of the split's rows ``idx``
        (``row_session``: the whole split's, rows of a session adjacent, ``width`` columns aligned at
        the session's end)."""
        if window and not self.window:
            raise ValueError("these links were built without window=True; they cannot read windows")
        idx = np.asarray(idx, np.int64)
        rs = np.asarray(row_session[idx], np.int64)
        out = np.full((len(idx), width, k * (1 + window)), PAD, np.int32)
        if not len(idx) or not k:
            return out
        # rows of a session are adjacent and sorted by session: its last row is where the next session begins - 1
        from_end = np.searchsorted(row_session, rs, side="right") - 1 - idx
        begin, count = _row_windows(self.sessions, self.first, self.lengths, rs, from_end, width)
        col = np.arange(width)[None, :]
        real = col >= width - count[:, None]  # rows are left-padded
        at = (begin[:, None] + col - (width - count[:, None]))[real]  # each real column's play, then its earlier ones
        play = at
        for j in range(k):  # ``at``: the j-th play of the track back from each column's (j = 0: the play)
            ok = at >= 0
            found = np.zeros(len(at), np.int32)
            found[ok] = self.after[at[ok]]  # what followed the play before ``at``
            out[..., j][real] = found
            earlier = np.full(len(at), -1, np.int64)
            earlier[ok] = self.prev[at[ok]]
            if window:
                self._window(out[..., k + j * window:k + (j + 1) * window], real, earlier, play)
            at = earlier
        return out

    def _window(self, out: np.ndarray, real: np.ndarray, earlier: np.ndarray, play: np.ndarray) -> None:
        """Write into ``out`` (.., width, window), at the ``real`` columns, the tracks 2 .. window + 1
        plays after each play's ``earlier`` play of its track (-1: none), stopping at the ``play``
        itself: one step along the next-play links at a time, so nothing after the play is read."""
        node = earlier.copy()
        walking = node >= 0
        node[walking] = self.next[node[walking]]  # the successor's play (o = 1)
        for o in range(out.shape[-1]):
            walking &= (node >= 0) & (node != play)  # the play itself was reached: what follows is later
            nxt = np.full(len(node), -1, np.int64)
            nxt[walking] = self.next[node[walking]]
            walking &= nxt >= 0
            found = np.zeros(len(node), np.int32)
            found[walking] = self.item[nxt[walking]]
            out[..., o][real] = found
            node = nxt


def _row_windows(sessions: np.ndarray, first: np.ndarray, lengths: np.ndarray, rs: np.ndarray, from_end: np.ndarray,
                 width: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows ``width`` wide aligned at the end of their session ``rs`` (``kernels.build_sequences``),
    ``from_end`` rows of the same session after each: the index of each row's first play (``first``:
    each session's first play, ``sessions`` sorted, ``lengths`` their plays) and how many plays it holds."""
    where = np.searchsorted(sessions, rs)
    if len(rs) and ((where >= len(sessions)).any() or not np.array_equal(sessions[np.minimum(where, len(sessions) - 1)], rs)):
        raise ValueError("a row's session is not in the events")
    end = lengths[where] - from_end * width  # the k-th row from the last ends k * width earlier
    start = np.maximum(end - width, 0)
    return first[where] + start, end - start


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def play_successors(items: np.ndarray, block_start: np.ndarray, k: int, window: int = 0) -> np.ndarray:
    """int32 (n, k * (1 + window)): at each of ``n`` plays in listener-time order, the last ``k`` tracks
    that followed the same track earlier in the same block (listener), the latest first, PAD where
    fewer.  ``block_start`` (n,): the index of the first play of each play's block.

    With ``window``, entry ``k + j * window + (o - 2)`` is the track ``o`` plays after the j-th latest
    earlier play of the track (o = 2 .. window + 1; o = 1 is its successor), PAD where that would be
    after the play itself: what else of the album or playlist came around the track last times,
    which on the Spotify logs holds the next track where neither a successor nor a replay does."""
    n = len(items)
    # each play's previous play of the same track in the same block, -1 if none
    by = np.lexsort((np.arange(n), items, block_start))
    same = np.r_[False, (items[by][1:] == items[by][:-1]) & (block_start[by][1:] == block_start[by][:-1])]
    prev = np.full(n, -1, np.int64)
    prev[by[same]] = by[np.flatnonzero(same) - 1]
    succ = np.full((n, k * (1 + window)), PAD, np.int32)
    at = np.arange(n)
    p = prev.copy()
    for j in range(k):
        ok = p >= 0
        succ[ok, j] = items[p[ok] + 1]  # p < the play, so p + 1 is at or before it, same listener
        for o in range(2, window + 2):
            seen = ok & (p + o <= at)  # at or before the play: the same listener, never later
            succ[seen, k + j * window + o - 2] = items[p[seen] + o]
        p = np.where(ok, prev[np.maximum(p, 0)], -1)
    return succ


def prefix_context(past: np.ndarray, past_skips: np.ndarray, prefix: np.ndarray, prefix_skips: np.ndarray,
                   width: int, history: int, successors: int, window: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a model reads of a listener's past for a session prefix that comes after it (``recommend``).

    ``past``: int32 (P,) the listener's plays, oldest first (empty for an unknown listener), and
    ``past_skips`` int8 (P,); ``prefix``, ``prefix_skips`` (n,): the session so far, oldest first, n >= 1.
    The query row is the prefix's last ``min(n, width)`` plays, left-padded to ``width`` as
    ``kernels.build_sequences`` aligns a session.  Returns ``(history int32 (history,), its skips int8
    (history,), successors int32 (width, successors * (1 + window)))``: the ``history`` plays before the row's first
    column (the past, then the prefix's earlier plays; PAD-padded on the left), and at each column the
    tracks that followed its track before it, the latest first: what ``row_history`` and
    ``row_successors`` read for a session that follows the listener's plays."""
    log = np.concatenate([np.asarray(past, np.int32), np.asarray(prefix, np.int32)])
    log_skips = np.concatenate([np.asarray(past_skips, np.int8), np.asarray(prefix_skips, np.int8)])
    shown = min(len(prefix), width)
    start = len(log) - shown  # the row's first play
    hist = np.full(history, PAD, np.int32)
    hist_skips = np.zeros(history, np.int8)
    lo = max(start - history, 0)
    if history:
        hist[history - (start - lo):], hist_skips[history - (start - lo):] = log[lo:start], log_skips[lo:start]
    succ = np.full((width, successors * (1 + window)), PAD, np.int32)
    if successors:
        succ[width - shown:] = play_successors(log, np.zeros(len(log), np.int64), successors, window)[start:]
    return hist, hist_skips, succ


def row_listener(order: ListenerOrder, row_session: np.ndarray, width: int) -> np.ndarray:
    """int64 (R,): a code of each row's listener, the same in every split of the dataset (a session of
    no known listener has a code of its own): the rank of the listener's block in listener-time order."""
    rs = np.asarray(row_session, dtype=np.int64)
    if not len(rs) or not len(order.items):
        return np.zeros(len(rs), np.int64)
    begin, _ = order.row_starts(rs, width)
    return np.searchsorted(np.unique(order.block_start), order.block_start[begin]).astype(np.int64)


def _rows_from_end(last_row: np.ndarray) -> np.ndarray:
    """int64 (R,): how many rows of the same session come after each row (0 for a session's last)."""
    r = np.arange(len(last_row))
    next_last = np.minimum.accumulate(np.where(last_row, r, len(r))[::-1])[::-1]  # index of the session's last row
    return next_last - r
