"""From the sorted play stream to the prepared events: sessions, skip labels, filters, splits, ids.

Sessions never cross listeners, so prep runs the per-play steps on one bucket of listeners at a
time (``toolkit/buckets.py``): the stream of a bucket comes from ``toolkit/prep.py`` already in
listening order, so each step is one numba pass (``kernels.sessions``) plus vectorised numpy over
whole columns.  What needs the whole log works on one row per session or per track: the split of
sessions into time windows (``sql/split.sql``), the dataset's session order and the item ids.
"""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl

from kernels.sessions import PRECEDENCE, SOURCES, mark_duplicates, sessionize
from toolkit import splits, sql
from toolkit.config import PrepConfig
from toolkit.schema import SPLITS
from toolkit.splits import SplitChoice


def label_plays(stream: dict[str, np.ndarray], cfg: PrepConfig) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """One bucket's sorted stream (``ordering.listening_order``): exact copies dropped, cut into
    sessions and labelled.  Returns the plays (``user_code``, ``track_code``, ``start_us``,
    ``order_us``, ``played``, ``session`` numbered 0.. in the bucket, ``is_skip``, ``source``,
    ``repeat``) and the rows dropped here by reason."""
    copy = mark_duplicates(stream["user_code"], stream["order_us"], stream["start_us"], stream["track_code"],
                           stream["played"], stream["position"])
    if copy.any():
        stream = {k: v[~copy] for k, v in stream.items()}
    session, _, is_skip, source, repeat = sessionize(
        stream["user_code"], stream["start_us"], stream["end_us"], stream["hint"], stream["track_code"],
        stream["flag"], stream["played"], stream["duration"], cfg.session_gap_s, cfg.skip_ms, cfg.skip_ratio,
        cfg.collapse_repeats,
    )
    plays = {k: stream[k] for k in ("user_code", "track_code", "start_us", "order_us", "played")}
    plays.update(session=session, is_skip=is_skip, source=source, repeat=repeat)
    return plays, {"exact_duplicate": int(copy.sum()), "repeat_collapsed": int(repeat.sum())}


def filter_plays(plays: dict[str, np.ndarray], track_plays: np.ndarray, cfg: PrepConfig):
    """Drop one bucket's repeats, rare tracks (``track_plays``: the whole log's plays per track
    after collapsing) and short sessions.

    Returns the kept plays (``track_code``, ``order_us``, ``played``, ``is_skip``, ``source``),
    one row per kept session (``user_code``, ``start_us`` its earliest start, ``end_us`` its
    last play's order time, ``length``) and the rows dropped by reason.
    """
    session, track = plays["session"], plays["track_code"]
    keep = ~plays["repeat"]
    rare = keep & (track_plays[track] < cfg.min_item_plays)
    keep &= ~rare
    length = np.bincount(session[keep], minlength=int(session.max()) + 1 if len(session) else 0)
    short = keep & (length[session] < cfg.min_session_len)
    keep &= ~short
    kept = np.flatnonzero(keep)
    bounds = session_bounds(session[kept])
    first, last = bounds[:-1], bounds[1:] - 1
    start = plays["start_us"][kept]
    table = {
        "user_code": plays["user_code"][kept][first],
        "start_us": np.minimum.reduceat(start, first) if len(first) else np.zeros(0, np.int64),
        "end_us": plays["order_us"][kept][last],
        "length": np.diff(bounds),
    }
    out = {k: plays[k][kept] for k in ("track_code", "order_us", "played", "is_skip", "source")}
    return out, table, {"rare_track": int(rare.sum()), "short_session": int(short.sum())}


def split_sessions(con: duckdb.DuckDBPyConnection, table: dict[str, np.ndarray], cfg: PrepConfig):
    """The window of every kept session of the whole log (``table``: ``filter_plays``' session
    rows of every bucket, in bucket order), which sessions straddle a window boundary, and the
    split used (``auto`` resolved, with the reason).

    Returns int8 ``rank`` per session (its window; under ``last``, the smallest split of its
    plays), bool ``straddles`` and the ``SplitChoice``.
    """
    n_sessions = len(table["length"])
    if cfg.split == "last":
        # a session's last play is test, the one before valid: its smallest split follows from its length
        rank = np.where(table["length"] >= 3, 0, np.where(table["length"] == 2, 1, 2)).astype(np.int8)
        return rank, np.zeros(n_sessions, bool), SplitChoice("last", "last: leave-last-out (no time order)", None)
    sessions = pl.DataFrame({
        "session": np.arange(n_sessions, dtype=np.int64), "user_code": table["user_code"],
        "start_us": table["start_us"], "end_us": table["end_us"],
    })
    con.register("sessions", sessions)
    try:
        if cfg.split == "auto":
            by_time, by_listener = _windows(con, cfg, False), _windows(con, cfg, True)
            choice = splits.choose(table["user_code"], by_time[0], by_listener[0])
            code, straddles = by_listener if choice.mode == "listener" else by_time
        else:
            code, straddles = _windows(con, cfg, cfg.split == "listener")
            choice = SplitChoice(cfg.split, f"{cfg.split}: chosen with --split", None)
    finally:
        con.unregister("sessions")
    return code, straddles, choice


def play_splits(lengths: np.ndarray, rank: np.ndarray, mode: str) -> np.ndarray:
    """int8 split of every play of sessions of these ``lengths`` (played in session order): the
    session's window, or under ``last`` test for its last play, valid for the one before."""
    if mode != "last":
        return np.repeat(rank, lengths)
    ends = np.cumsum(lengths)
    from_end = np.repeat(ends, lengths) - 1 - np.arange(int(ends[-1]) if len(ends) else 0)
    return np.where(from_end == 0, 2, np.where(from_end == 1, 1, 0)).astype(np.int8)


def split_plays(lengths: np.ndarray, rank: np.ndarray, mode: str) -> np.ndarray:
    """int32[3, n_sessions]: how many plays of each session the arrays of each split hold (a session's
    plays fit 32 bits; numpy sums them in 64).

    A session is in its own window's arrays; under ``last`` the arrays of a split hold each
    session with a play of that split, up to and including that play (the prefix it is scored on).
    """
    if mode != "last":
        return np.stack([np.where(rank == code, lengths, 0) for code in range(len(SPLITS))]).astype(np.int32)
    return np.stack([np.where(lengths >= 3, lengths - 2, 0), np.where(lengths >= 2, lengths - 1, 0),
                     lengths]).astype(np.int32)


def final_order(table: dict[str, np.ndarray], rank: np.ndarray) -> np.ndarray:
    """The sessions (rows of ``table``, numbered in bucket order as the tie-break) in the
    dataset's order: by window, start, user, then that number."""
    return np.lexsort((np.arange(len(rank)), table["user_code"], table["start_us"], rank))


def session_bounds(session: np.ndarray) -> np.ndarray:
    """int64 (S + 1,): where each run of equal, consecutive session numbers starts (CSR offsets)."""
    if len(session) == 0:
        return np.zeros(1, np.int64)
    starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    return np.r_[starts, len(session)].astype(np.int64)


def _windows(con: duckdb.DuckDBPyConnection, cfg: PrepConfig, per_listener: bool) -> tuple[np.ndarray, np.ndarray]:
    """sql/split.sql over the registered sessions: int8 window and straddles flag per session."""
    rel = sql.relation(con, "split", valid_frac=cfg.valid_frac, test_frac=cfg.test_frac, per_listener=per_listener)
    # the window as its int8 code, out of DuckDB, put in place by session number: a frame of 13M
    # split names sorted by session held 0.3 GB more at the peak of a 200M-play prep
    codes = " ".join(f"when '{name}' then {i}" for i, name in enumerate(SPLITS))
    res = rel.project(f"session, (case window_split {codes} end)::tinyint as code, straddles").fetchnumpy()
    n = len(res["session"])
    code, straddles = np.empty(n, np.int8), np.empty(n, bool)
    code[res["session"]], straddles[res["session"]] = res["code"], res["straddles"]
    return code, straddles


def item_ids(plays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense ids 1..n by play count (descending), ties by key (track codes are in key order).

    ``plays``: int64[n_tracks] kept plays per track code.  Returns the id of each track code (0
    for tracks without a kept play) and the track code of each id (index 0 unused: PAD).
    """
    present = np.flatnonzero(plays)
    ranked = present[np.lexsort((present, -plays[present]))]
    id_of_code = np.zeros(len(plays), np.int32)
    id_of_code[ranked] = np.arange(1, len(ranked) + 1, dtype=np.int32)
    return id_of_code, np.r_[-1, ranked]


def skip_rule_counts(plays: np.ndarray) -> dict[str, int]:
    """Plays per skip rule that decided them (``plays``: counts indexed by ``SOURCES`` code; rules
    that decided none left out), listed in the order the rules are tried."""
    counts = dict(zip(SOURCES, [int(n) for n in plays]))
    return {name: counts[name] for name in PRECEDENCE if counts[name]}
