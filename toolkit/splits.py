"""Which split fits the data, and what each split of a prepared dataset can measure.

Two temporal splits exist.  ``time`` cuts every session of the log at the same instants (right
for one service's log, where listeners overlap in time).  ``listener`` cuts each listener's own
sessions (their last ones are valid / test): personal exports each cover their own years, and a
global cut there puts whole late listeners in test, with no training play at all.  ``auto``
measures that: it picks ``listener`` when the global cut would take a large share of the test
sessions from listeners without a training session, and says why.

The diagnostics say what a split can measure: its listeners,
the ones never seen in train, and the share of targets whose track was never played in train
(no model learned anything about them, so HR@k is at most one minus that share).  Prep counts
them as it writes a dataset (``tally``); ``sql/split_diagnostics.sql`` counts the same over a dataset's
events (datasets prepared before prep recorded them, and the tests' reference).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import duckdb
import numpy as np

from toolkit import sql
from toolkit.schema import SPLITS

# auto: the global cut is unfit when at least this share of its test sessions belong to listeners
# with no training session (the 47 Spotify exports: 44 %; a service log with interleaved users: ~0)
UNSEEN_SHARE = 0.2
# below these a split is a smoke run, far too small for any conclusion
SMOKE_SESSIONS = 100
SMOKE_LISTENERS = 5
COLD_WARN = 0.5  # warn when more than this share of a split's targets are tracks never in train
UNSEEN_WARN = 0.05  # warn when at least this share of a split's sessions are of listeners never in train


class SplitDiagnostics(TypedDict):
    """What one split can measure (``diagnostics``): JSON-shaped, as it travels on into the manifest
    and the reports unchanged."""

    sessions: int
    listeners: int
    listeners_without_train: int  # listeners of the split with no play in train
    sessions_without_train: int  # their sessions
    targets: int  # next-play targets scored
    cold_targets: int  # targets whose track has no play in train
    cold_share: float  # cold_targets / targets (0 without targets)
    hr_ceiling: float  # 1 - cold_share: the most HR@k can reach


@dataclass(frozen=True)
class SplitChoice:
    mode: str  # time or listener
    reason: str  # one sentence a user can read
    unseen_share_time: float | None  # share of the global cut's test sessions from listeners without train


def unseen_share(user: np.ndarray, window: np.ndarray) -> float:
    """Share of test sessions (``window == 2``) whose listener has no train session (``window == 0``);
    one entry per session."""
    test = window == 2
    if not test.any():
        return 0.0
    seen = np.isin(user[test], np.unique(user[window == 0]))
    return float(1.0 - seen.mean())


def choose(user: np.ndarray, time_window: np.ndarray, listener_window: np.ndarray) -> SplitChoice:
    """The split ``auto`` picks, from each session's listener and its window under both splits."""
    n_users = len(np.unique(user))
    if n_users < 2 or n_users == len(user):
        why = "one listener" if n_users < 2 else "every session has its own id, so listeners are unknown"
        return SplitChoice("time", f"time: {why}; sessions are cut at the same instants", None)
    share = unseen_share(user, time_window)
    if share < UNSEEN_SHARE:
        return SplitChoice("time", f"time: listeners overlap in time (under a global cut {share:.0%} of test "
                                   f"sessions come from listeners with no training session)", share)
    if not (listener_window == 2).any():
        return SplitChoice("time", f"time: {share:.0%} of the global cut's test sessions come from listeners with no "
                                   "training session, but no listener has enough sessions for a test of their own",
                           share)
    return SplitChoice("listener", f"listener: under a global time cut {share:.0%} of test sessions would come from "
                                   "listeners with no training session (their exports cover other years), so each "
                                   "listener's own last sessions are valid / test", share)


def users_known(listeners: int, sessions: int) -> bool:
    """Whether the log has listeners at all (not one listener, not an id per session as in MSSD)."""
    return 1 < listeners < sessions


def diagnostics(events: Path, con: duckdb.DuckDBPyConnection | None = None) -> dict[str, SplitDiagnostics]:
    """Per split of a prepared dataset: sessions, listeners, listeners_without_train,
    sessions_without_train, targets, cold_targets, cold_share and hr_ceiling.

    ``con``: a connection to run on (prep passes its own, whose memory limit and spill folder
    bound the distinct counts; a fresh connection may take most of the machine's memory on a
    large log: 5.8 GB peak at 100M plays); None opens a fresh one."""
    with duckdb.connect() if con is None else _borrowed(con) as con:
        con.read_parquet(str(events)).create_view("events")
        rel = sql.relation(con, "split_diagnostics")
        rows = [dict(zip(rel.columns, r)) for r in rel.fetchall()]
    return {r.pop("split"): _with_shares({k: int(v) for k, v in r.items()}) for r in rows}


def _with_shares(counts: dict[str, int]) -> SplitDiagnostics:
    """One split's counts (every field of ``SplitDiagnostics`` but the shares) with its cold share and
    the HR@k ceiling it implies."""
    share = counts["cold_targets"] / counts["targets"] if counts["targets"] else 0.0
    return {**counts, "cold_share": share, "hr_ceiling": 1.0 - share}  # type: ignore[typeddict-item]


def tally(has: np.ndarray, user_code: np.ndarray, n_users: int, targets: np.ndarray,
          cold_targets: np.ndarray) -> dict[str, SplitDiagnostics]:
    """``diagnostics`` from what prep holds as it writes a dataset, without reading the events back.

    has : bool (3, S), whether session s has a play in each split (train, valid, test);
    user_code : int (S,), its listener (codes below ``n_users``); targets, cold_targets : int (3,),
    per split the kept plays after a session's first, and those of them whose track has no train play.
    Only splits with a session appear, as in the query.  (Prep counted these with
    sql/split_diagnostics.sql over the written events: 5 s at 20M plays, minutes at 100M.)
    """
    present = np.zeros((len(SPLITS), n_users), bool)
    for code in range(len(SPLITS)):
        present[code, user_code[has[code]]] = True
    trained = present[0]
    out: dict[str, SplitDiagnostics] = {}
    for code, name in enumerate(SPLITS):
        sessions = int(has[code].sum())
        if not sessions:
            continue
        out[name] = _with_shares({
            "sessions": sessions, "listeners": int(present[code].sum()),
            "listeners_without_train": int((present[code] & ~trained).sum()),
            "sessions_without_train": int((has[code] & ~trained[user_code]).sum()),
            "targets": int(targets[code]), "cold_targets": int(cold_targets[code])})
    return out


@contextmanager
def _borrowed(con: duckdb.DuckDBPyConnection):
    """A connection lent for one query: not closed afterwards."""
    yield con


def warnings(diag: Mapping[str, SplitDiagnostics], mode: str, known: bool, split: str = "test") -> list[str]:
    """What a user must know before reading the metrics of ``split``: empty when nothing is wrong.
    ``known``: whether the log has listeners (``users_known``); without them the listener counts of
    the diagnostics count sessions and say nothing."""
    d = diag.get(split)
    if d is None:
        return [f"the {split} split is empty"]
    out = []
    if known and d["sessions_without_train"] >= UNSEEN_WARN * max(d["sessions"], 1):
        out.append(f"{d['listeners_without_train']} of the {d['listeners']} {split} listeners have no training play "
                   f"({d['sessions_without_train'] / max(d['sessions'], 1):.0%} of {split} sessions): these measure "
                   "listeners the models never saw")
    if d["cold_share"] > COLD_WARN:
        out.append(f"{d['cold_share']:.0%} of {split} targets are tracks never played in train, so HR@k is at most "
                   f"{d['hr_ceiling']:.2f}")
    if d["sessions"] < SMOKE_SESSIONS or (known and d["listeners"] < SMOKE_LISTENERS):
        who = f" from {d['listeners']} listener{'s' if d['listeners'] != 1 else ''}" if known else ""
        many = d["sessions"] != 1
        out.append(f"smoke run: {d['sessions']} {split} session{'s' if many else ''}{who} {'are' if many else 'is'} "
                   "far too few for any conclusion")
    if mode == "listener":
        out.append("per-listener split: each listener's test follows their own training, but one listener's test "
                   "may precede another's training (trends can leak across listeners)")
    return out


def lines(diag: Mapping[str, SplitDiagnostics], known: bool) -> list[str]:
    """One line per split, for the terminal and the reports."""
    out = []
    for name in ("train", "valid", "test"):
        d = diag.get(name)
        if d is None:
            continue
        who = f", {d['listeners']:,} listeners" if known else ""
        if known and name != "train":
            who += f" ({d['listeners_without_train']:,} without training plays)"
        cold = f"; {d['cold_share']:.0%} of targets never in train (HR@k ≤ {d['hr_ceiling']:.2f})" if name != "train" else ""
        out.append(f"{name}: {d['sessions']:,} sessions{who}{cold}")
    return out
