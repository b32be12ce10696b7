"""From the sorted play stream to the prepared events: sessions, skip labels, filters, splits, ids.

The stream comes from ``toolkit/prep.py`` already in listening order, so everything here is
one numba pass (``kernels.sessions``) plus vectorised numpy over whole columns; only the split
of sessions into time windows goes back to SQL (``sql/split.sql``), on one row per session.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from kernels.sessions import PRECEDENCE, SOURCES, mark_duplicates, sessionize
from toolkit import splits, sql
from toolkit.config import PrepConfig
from toolkit.schema import SPLITS
from toolkit.splits import SplitChoice


@dataclass
class Events:
    """Kept plays in final order (session_idx, then position); all arrays have one entry per play."""

    split: np.ndarray  # int8 index into schema.SPLITS
    session_idx: np.ndarray  # int64, 0..n_sessions-1: train sessions first, then valid, then test
    position: np.ndarray  # int32, 0.. inside the session
    user_code: np.ndarray  # int32, index into the users table
    track_code: np.ndarray  # int32, index into the tracks table
    order_us: np.ndarray  # int64, the time plays are ordered by (epoch microseconds)
    played: np.ndarray  # int64 milliseconds, -1 where unknown
    is_skip: np.ndarray  # int8
    source: np.ndarray  # int8, the skip rule that decided (kernels.sessions.SOURCES)
    dropped: dict[str, int]  # rows removed here, by reason
    split_choice: SplitChoice  # the split used, and why


def build_events(con: duckdb.DuckDBPyConnection, stream: dict[str, np.ndarray], n_tracks: int, cfg: PrepConfig) -> Events:
    """Drop exact copies, sessionize, label and filter the sorted stream, split the sessions, order."""
    copy = mark_duplicates(stream["user_code"], stream["order_us"], stream["start_us"], stream["track_code"],
                           stream["played"], stream["position"])
    if copy.any():
        stream = {k: v[~copy] for k, v in stream.items()}
    session, _, is_skip, source, repeat = sessionize(
        stream["user_code"], stream["start_us"], stream["end_us"], stream["hint"], stream["track_code"],
        stream["flag"], stream["played"], stream["duration"], cfg.session_gap_s, cfg.skip_ms, cfg.skip_ratio,
        cfg.collapse_repeats,
    )
    for used in ("end_us", "hint", "flag", "duration", "position"):
        del stream[used]  # free them before the session arrays are gathered
    keep, dropped = _filters(session, stream["track_code"], repeat, n_tracks, cfg)
    dropped["exact_duplicate"] = int(copy.sum())
    kept = np.flatnonzero(keep)
    del keep, repeat
    # the split and the final order need only four columns of the kept plays; every column is
    # then gathered once, straight into its final order
    part = {"session": session[kept], **{k: stream[k][kept] for k in ("user_code", "start_us", "order_us")}}
    split, straddles, choice = _split(con, part, cfg)
    dropped["straddles_split"] = int(straddles.sum())
    if straddles.any():
        kept, split = kept[~straddles], split[~straddles]
        part = {k: v[~straddles] for k, v in part.items()}
    order, session_idx, position = _final_order(part, split)
    del part
    final = kept[order]
    del kept
    cols = {k: stream.pop(k)[final] for k in ("user_code", "track_code", "order_us", "played")}
    del stream
    return Events(split=split[order], session_idx=session_idx, position=position, dropped=dropped, split_choice=choice,
                  is_skip=is_skip[final], source=source[final], **cols)


def _filters(session: np.ndarray, track: np.ndarray, repeat: np.ndarray, n_tracks: int, cfg: PrepConfig):
    """Consecutive repeats, then rare tracks (plays counted after collapsing), then short sessions."""
    keep = ~repeat
    plays = np.bincount(track[keep], minlength=n_tracks)
    rare = keep & (plays[track] < cfg.min_item_plays)
    keep &= ~rare
    length = np.bincount(session[keep], minlength=int(session.max()) + 1 if len(session) else 0)
    short = keep & (length[session] < cfg.min_session_len)
    keep &= ~short
    dropped = {"repeat_collapsed": int(repeat.sum()), "rare_track": int(rare.sum()), "short_session": int(short.sum())}
    return keep, dropped


def session_bounds(session: np.ndarray) -> np.ndarray:
    """int64 (S + 1,): where each run of equal, consecutive session numbers starts (CSR offsets)."""
    if len(session) == 0:
        return np.zeros(1, np.int64)
    starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    return np.r_[starts, len(session)].astype(np.int64)


def _split(con: duckdb.DuckDBPyConnection, cols: dict, cfg: PrepConfig) -> tuple[np.ndarray, np.ndarray, SplitChoice]:
    """int8 split per play, which plays belong to sessions straddling a window boundary, and the
    split used (``auto`` resolved, with the reason)."""
    bounds = session_bounds(cols["session"])
    n_sessions = len(bounds) - 1
    first, last = bounds[:-1], bounds[1:] - 1
    lengths = np.diff(bounds)
    if cfg.split == "last":
        from_end = np.repeat(bounds[1:], lengths) - 1 - np.arange(len(cols["session"]))
        split = np.where(from_end == 0, 2, np.where(from_end == 1, 1, 0)).astype(np.int8)
        return split, np.zeros(len(split), bool), SplitChoice("last", "last: leave-last-out (no time order)", None)
    sessions = pl.DataFrame({
        "session": np.arange(n_sessions, dtype=np.int64),
        "user_code": cols["user_code"][first],
        "start_us": np.minimum.reduceat(cols["start_us"], first) if n_sessions else np.zeros(0, np.int64),
        "end_us": cols["order_us"][last],
    })
    con.register("sessions", sessions)
    try:
        if cfg.split == "auto":
            by_time, by_listener = _windows(con, cfg, False), _windows(con, cfg, True)
            choice = splits.choose(sessions["user_code"].to_numpy(), by_time[0], by_listener[0])
            code, straddles = by_listener if choice.mode == "listener" else by_time
        else:
            code, straddles = _windows(con, cfg, cfg.split == "listener")
            choice = SplitChoice(cfg.split, f"{cfg.split}: chosen with --split", None)
    finally:
        con.unregister("sessions")
    return np.repeat(code, lengths), np.repeat(straddles, lengths), choice


def _windows(con: duckdb.DuckDBPyConnection, cfg: PrepConfig, per_listener: bool) -> tuple[np.ndarray, np.ndarray]:
    """sql/split.sql over the registered sessions: int8 window and straddles flag per session."""
    res = sql.relation(con, "split", valid_frac=cfg.valid_frac, test_frac=cfg.test_frac,
                       per_listener=per_listener).pl().sort("session")
    code = res["window_split"].replace_strict({s: i for i, s in enumerate(SPLITS)}, return_dtype=pl.Int8).to_numpy()
    return code, res["straddles"].to_numpy()


def _final_order(cols: dict, split: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions ordered by (split, start, user, session); returns the play permutation, the new
    session_idx and positions of the permuted plays."""
    bounds = session_bounds(cols["session"])
    first, lengths = bounds[:-1], np.diff(bounds)
    split_rank = np.minimum.reduceat(split, first) if len(first) else np.zeros(0, np.int8)
    start = np.minimum.reduceat(cols["start_us"], first) if len(first) else np.zeros(0, np.int64)
    sess_order = np.lexsort((cols["session"][first], cols["user_code"][first], start, split_rank))
    new_lengths = lengths[sess_order]
    new_bounds = np.r_[0, np.cumsum(new_lengths)].astype(np.int64)
    within = np.arange(new_bounds[-1]) - np.repeat(new_bounds[:-1], new_lengths)
    order = np.repeat(first[sess_order], new_lengths) + within
    session_idx = np.repeat(np.arange(len(sess_order), dtype=np.int64), new_lengths)
    return order, session_idx, within.astype(np.int32)


def item_ids(track_code: np.ndarray, n_tracks: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense ids 1..n by play count (descending), ties by key (track codes are in key order).

    Returns the id of each play and the track code of each id (index 0 unused: PAD).
    """
    plays = np.bincount(track_code, minlength=n_tracks)
    present = np.flatnonzero(plays)
    ranked = present[np.lexsort((present, -plays[present]))]
    id_of_code = np.zeros(n_tracks, np.int32)
    id_of_code[ranked] = np.arange(1, len(ranked) + 1, dtype=np.int32)
    return id_of_code[track_code], np.r_[-1, ranked]


def skip_rule_counts(source: np.ndarray) -> dict[str, int]:
    """Plays per skip rule that decided them (rules that decided none left out), listed in the
    order the rules are tried."""
    counts = dict(zip(SOURCES, np.bincount(source.astype(np.int64), minlength=len(SOURCES)).tolist()))
    return {name: counts[name] for name in PRECEDENCE if counts[name]}
