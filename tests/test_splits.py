"""Which split fits the data (toolkit/splits.py), and prep choosing it on logs of both kinds."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from toolkit import splits
from toolkit.artifacts import Workspace
from toolkit.config import PrepConfig
from toolkit.manifest import Manifest
from toolkit.prep import prep


def test_unseen_share_counts_test_sessions_of_listeners_without_train():
    user = np.array([0, 0, 1, 1, 2, 2])
    window = np.array([0, 2, 1, 2, 2, 2])  # listener 1 has valid but no train, listener 2 only test
    assert splits.unseen_share(user, window) == pytest.approx(3 / 4)
    assert splits.unseen_share(user, np.zeros(6, np.int8)) == 0.0


def test_choose_takes_listener_only_when_the_global_cut_tests_unseen_listeners():
    user = np.repeat([0, 1], 10)
    # listener 1's export starts after listener 0's ends: a global cut tests listener 1 only
    late = np.array([0] * 10 + [1] * 4 + [2] * 6, np.int8)
    own = np.tile(np.array([0] * 8 + [1, 2], np.int8), 2)
    choice = splits.choose(user, late, own)
    assert choice.mode == "listener" and "100%" in choice.reason and choice.unseen_share_time == 1.0
    mixed = np.tile(np.array([0] * 8 + [1, 2], np.int8), 2)  # both listeners in every window
    assert splits.choose(user, mixed, own).mode == "time"
    assert splits.choose(np.zeros(20, np.int64), late, own).mode == "time"  # one listener
    assert splits.choose(np.arange(20), late, own).mode == "time"  # an id per session (MSSD): unknown
    assert splits.choose(user, late, np.zeros(20, np.int8)).mode == "time"  # nobody has a test of their own


def _diag(**test) -> dict:
    base = {"sessions": 500, "listeners": 20, "listeners_without_train": 0, "sessions_without_train": 0,
            "targets": 1000, "cold_targets": 100, "cold_share": 0.1, "hr_ceiling": 0.9}
    return {"train": {**base, "sessions": 4000}, "test": {**base, **test}}


def test_warnings_name_unseen_listeners_cold_targets_and_smoke_runs():
    assert splits.warnings(_diag(), "time", True) == []
    unseen = splits.warnings(_diag(listeners_without_train=3, sessions_without_train=250), "time", True)
    assert len(unseen) == 1 and "3 of the 20 test listeners have no training play (50% of test sessions)" in unseen[0]
    cold = splits.warnings(_diag(cold_share=0.69, hr_ceiling=0.31), "time", True)
    assert len(cold) == 1 and "HR@k is at most 0.31" in cold[0]
    smoke = splits.warnings(_diag(sessions=40, listeners=4), "time", True)
    assert len(smoke) == 1 and smoke[0].startswith("smoke run: 40 test sessions from 4 listeners")
    assert any("trends can leak across listeners" in w for w in splits.warnings(_diag(), "listener", True))
    # an id per session (MSSD): listener counts are session counts, so no warning about listeners
    assert splits.warnings(_diag(listeners_without_train=20, sessions_without_train=500), "time", False) == []


def _two_eras(path, sessions: tuple = (20, 20, 20, 10), offset_days: int = 400) -> None:
    """Each listener's plays cover their own year, one after the other (as personal exports do);
    the last listener's export is short, so a global cut would test them alone."""
    rows = []
    for u, n in enumerate(sessions):
        for s in range(n):
            start = datetime(2019, 1, 1, 10) + timedelta(days=u * offset_days + s, hours=u)
            for k in range(4):
                rows.append({"user": f"u{u}", "ts": start + timedelta(minutes=4 * k), "track": f"t{(s + k + u) % 9}",
                             "ms": 200_000 if k % 2 == 0 else 5_000})
    pl.DataFrame(rows).write_parquet(path)


def _prep(tmp_path, log, **options) -> Manifest:
    cols = ("user=user", "ts=ts", "track=track", "played_ms=ms")
    return prep([log], Workspace.at(tmp_path / "ws"), PrepConfig(format="generic", cols=cols, **options)).manifest


def test_prep_auto_splits_per_listener_when_exports_cover_different_years(tmp_path):
    log = tmp_path / "plays.parquet"
    _two_eras(log)
    m = _prep(tmp_path, log, name="eras")
    assert m.split_mode == "listener" and m.split_reason.startswith("listener:")
    test = m.split_diagnostics["test"]
    assert test["listeners"] == 4 and test["listeners_without_train"] == 0
    assert m.splits["test"].sessions == 2 + 2 + 2 + 1  # round(n * 0.1) of each listener's sessions
    assert any("trends can leak" in w for w in m.split_warnings)
    forced = _prep(tmp_path, log, name="eras-time", split="time")
    assert forced.split_mode == "time"
    t = forced.split_diagnostics["test"]
    assert t["listeners"] == 1 and t["listeners_without_train"] == 1  # the global cut tests the latest listener only
    assert t["sessions"] == 7
    assert any("have no training play" in w for w in forced.split_warnings)


def test_prep_auto_keeps_the_global_cut_when_listeners_overlap_in_time(tmp_path):
    log = tmp_path / "plays.parquet"
    _two_eras(log, offset_days=0)  # every listener plays on the same days
    m = _prep(tmp_path, log, name="together")
    assert m.split_mode == "time" and m.split_reason.startswith("time: listeners overlap")
    assert m.split_diagnostics["test"]["listeners_without_train"] == 0
