"""``toolkit demo``'s library side: its grid is fixed (so its runs keep their ids), and it reports
each step to ``progress`` in order.  The command end to end is in test_cli.py."""

from __future__ import annotations

from dataclasses import asdict

from toolkit.artifacts import Workspace
from toolkit.config import TrainConfig
from toolkit.demo import DemoConfig, LogWritten, Prepared, Stage, demo, demo_runs, log_path


def test_the_grid_is_the_two_count_baselines_and_three_small_sasrec_models():
    runs = dict(demo_runs(DemoConfig(epochs=3, seed=5)))
    assert list(runs) == ["pop / all", "markov / all", "sasrec / all", "sasrec / positives-only",
                          "sasrec / contrastive"]
    small = dict(dataset="demo", seed=5, d_model=32, n_layers=1, epochs=3, lr=3e-3, patience=3)
    assert runs["pop / all"] == TrainConfig(dataset="demo", model="pop", feedback="all", seed=5)
    assert runs["sasrec / positives-only"] == TrainConfig(model="sasrec", feedback="positives-only", **small)
    contrastive = asdict(runs["sasrec / contrastive"])
    assert (contrastive["alpha"], contrastive["context"], contrastive["d_model"]) == (0.1, "input", 32)


def test_epochs_zero_writes_and_prepares_the_log_and_trains_nothing(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    cfg = DemoConfig(plays=3000, users=20, epochs=0, seed=1)
    events = []
    result = demo(ws, cfg, events.append)
    kinds = [type(e).__name__ for e in events]
    assert kinds[:3] == ["Stage", "LogWritten", "Stage"] and kinds[-1] == "Prepared"
    assert events[0] == Stage("writing a synthetic listening log") and events[2] == Stage("starting")
    assert all(isinstance(e, str) for e in events[3:-1]) and len(events) > 4  # prep's own stages
    assert isinstance(events[1], LogWritten) and events[1].path == log_path(ws, cfg) and events[1].summary.rows == 3000
    assert isinstance(events[-1], Prepared) and events[-1].prepared.manifest.name == "demo"
    assert result.report is None and result.runs == [] and result.manifest.rows_in == 3000
    again = []
    demo(ws, cfg, again.append)  # the log is there: not written again
    assert not any(isinstance(e, LogWritten) for e in again)
