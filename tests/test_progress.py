"""Training progress: the typed events, their ETA arithmetic, and how the command line shows them
(plain flushed lines through a pipe, a live bar on a terminal)."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from toolkit.artifacts import Workspace
from toolkit.cli import app
from toolkit.cli.progress import GridView, TrainView, duration, epoch_line, stop_line
from toolkit.config import PrepConfig, TrainConfig
from toolkit.prep import prep
from toolkit.progress import GridProgress, Pace, RunTimes, TrainProgress, eta_s
from toolkit.train import train

TINY = ["--d-model", "16", "--batch-size", "4", "--negatives", "3", "--n-layers", "1"]


@pytest.fixture
def ws(tiny_logs, tmp_path):
    workspace = Workspace.at(tmp_path / "ws")
    prep([tiny_logs], workspace, PrepConfig(name="tiny", max_len=4))
    return workspace


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------------------------------------
# the arithmetic


def test_eta_prices_steps_and_validations_at_their_means_so_far():
    assert eta_s(10, 2, step_s=0.5, valid_s=3.0) == 10 * 0.5 + 2 * 3.0
    assert eta_s(10, 2, step_s=0.5, valid_s=None) == 10 * 0.5  # no validation timed yet: counted as 0
    assert eta_s(10, 2, step_s=None, valid_s=3.0) is None  # no step timed: no basis
    assert eta_s(0, 0, step_s=0.5, valid_s=3.0) == 0.0


def test_pace_measures_steps_and_validations_with_its_clock():
    now = [100.0]
    pace = Pace(steps=12, batches=5, clock=lambda: now[0])  # 3 epochs: 5 + 5 + 2 planned steps
    assert pace.eta_s(0, 0, validated=False) is None
    for _ in range(5):
        now[0] += 2.0
        pace.stepped()
    # 7 steps left at 2 s; epochs 0, 1, 2 still to validate at 0 s (none timed yet)
    assert pace.eta_s(5, 0, validated=False) == pytest.approx(7 * 2.0)
    now[0] += 6.0
    pace.validated()
    # epoch 0 validated: 7 steps at 2 s and the validations of epochs 1 and 2 at 6 s
    assert pace.eta_s(5, 0, validated=True) == pytest.approx(7 * 2.0 + 2 * 6.0)
    now[0] += 4.0  # the first step after a validation also pays for the checkpoint: it counts as a step
    pace.stepped()
    assert pace.eta_s(6, 1, validated=False) == pytest.approx(6 * (14.0 / 6) + 2 * 6.0)
    assert pace.eta_s(12, 2, validated=True) == 0.0


def test_run_times_estimate_by_model_then_family_and_refuse_without_a_basis():
    times = RunTimes()
    pop, sasrec, bert = TrainConfig(model="pop"), TrainConfig(model="sasrec"), TrainConfig(model="bert4rec")
    assert times.estimate([]) == 0.0
    times.add(pop, 1.0)
    assert times.estimate([pop, pop]) == 2.0
    assert times.estimate([pop, sasrec]) is None  # a count baseline's time says nothing of a neural run's
    times.add(sasrec, 30.0)
    times.add(sasrec, 50.0)
    assert times.estimate([sasrec, pop]) == 40.0 + 1.0
    assert times.estimate([bert]) == 40.0  # no BERT4Rec timed yet: the neural runs' mean
    times.add(bert, 100.0)
    assert times.estimate([bert]) == 100.0
    assert times.estimate([TrainConfig(model="markov")]) == 1.0


def test_durations_read_naturally():
    assert [duration(s) for s in (None, float("nan"), 0.4, 45, 89.6, 90, 3599, 3600 * 3 + 5 * 60)] == \
        ["?", "?", "0 s", "45 s", "90 s", "2 min", "1 h 00 min", "3 h 05 min"]


def test_an_unknown_phase_is_refused():
    with pytest.raises(ValueError, match="step"):
        TrainProgress("steps", "r", epoch=0, epochs=1, step=0, steps=1, batches=1, patience=1)


# ---------------------------------------------------------------------------------------------
# what train() reports


def test_train_reports_typed_events_from_start_to_the_last_epoch(ws):
    events = []
    train(ws, TrainConfig(d_model=16, n_heads=2, n_layers=1, batch_size=4, negatives=3, epochs=2, patience=5),
          events.append)
    assert all(isinstance(e, TrainProgress) for e in events)
    assert events[0].phase == "start" and events[0].step == 0 and events[0].eta_s is None
    steps = [e for e in events if e.phase == "step"]
    epochs = [e for e in events if e.phase == "epoch"]
    per_epoch = events[0].batches
    assert events[0].steps == 2 * per_epoch and len(steps) == 2 * per_epoch
    assert [e.step for e in steps] == list(range(1, 2 * per_epoch + 1))
    assert [e.batch for e in steps] == list(range(1, per_epoch + 1)) * 2
    assert all(e.eta_s is not None and e.rows_per_s > 0 and e.loss > 0 for e in steps)
    assert [e.epoch for e in epochs] == [0, 1] and epochs[-1].eta_s == 0.0  # nothing left after the last
    assert {"ndcg@10", "hr@10", "skip_hr@10"} <= set(epochs[0].valid) and "next" in epochs[0].losses
    assert epochs[0].best == epochs[0].valid["ndcg@10"] and epochs[0].best_epoch == 0
    assert not any(e.phase == "stopped" for e in events)  # it ran every planned epoch


# ---------------------------------------------------------------------------------------------
# the command line, not a terminal: plain lines


def test_train_through_a_pipe_prints_a_line_per_epoch(ws):
    result = invoke("train", "--workspace", ws.root, "--epochs", "2", "--patience", "5", *TINY)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert re.match(r"training sasrec-all-s0-\w+: up to 2 epochs of (\d+) steps \((\d+) planned\)", lines[0]), lines[0]
    per_epoch = int(re.match(r".* of (\d+) steps", lines[0]).group(1))
    epoch = re.compile(r"epoch (\d)/2: step (\d+)/(\d+), ([\d,]+) rows/s, loss [\d.]+; valid NDCG@10 ([\d.]+), "
                       r"HR@10 [\d.]+, skip HR@10 [\d.na]+; best epoch \d; [\d.]+ s, ETA .+")
    found = [epoch.fullmatch(line) for line in lines if line.startswith("epoch ")]
    assert len(found) == 2 and all(found), lines
    assert [int(m.group(1)) for m in found] == [1, 2]
    assert [int(m.group(2)) for m in found] == [per_epoch, 2 * per_epoch]
    assert all(int(m.group(3)) == 2 * per_epoch and int(m.group(4).replace(",", "")) > 0 for m in found)
    assert "stopped after" not in result.output
    assert lines[-2].startswith("run sasrec-all-s0-") and "valid NDCG@10" in lines[-2]  # the end line, whole


def test_early_stopping_says_when_and_why(ws):
    # a learning rate far below float32's resolution of the weights: the model never changes, so no
    # epoch after the first validates better and patience 1 ends the run after the second
    result = invoke("train", "--workspace", ws.root, "--epochs", "5", "--patience", "1", "--lr", "1e-12", *TINY)
    assert result.exit_code == 0, result.output
    assert "stops early after 1 epoch without a better valid NDCG@10" in result.output.splitlines()[0]
    assert "stopped after epoch 2: no gain in 1 epoch; best epoch 1" in result.output
    assert "epoch 2/5:" in result.output and "epoch 3/5" not in result.output


def test_a_long_epoch_off_a_terminal_still_prints_a_heartbeat():
    console = Console(file=io.StringIO(), width=80)
    now = [0.0]
    view = TrainView(console, heartbeat_s=60, clock=lambda: now[0])
    base = dict(run="r", epoch=0, epochs=3, steps=300, batches=100, patience=2)
    with view:
        view(TrainProgress("start", step=0, **base))
        for step in range(1, 100):
            now[0] += 1.0
            view(TrainProgress("step", step=step, batch=step, rows_per_s=512.0, loss=3.5, eta_s=240.0, **base))
    lines = console.file.getvalue().splitlines()
    assert lines[1:] == ["epoch 1/3: step 60/300, 512 rows/s, loss 3.5000, ETA 4 min"]  # one per minute


def test_study_announces_each_run_with_the_time_left(ws, monkeypatch):
    from toolkit.grids import GRIDS

    monkeypatch.setitem(GRIDS, "core", [("pop", "all", {}), ("sasrec", "all", {})])
    args = ["study", "--dataset", "tiny", "--workspace", ws.root, "--seeds", "2", "--set", "epochs=1",
            "--set", "d_model=16", "--set", "batch_size=4", "--set", "negatives=3", "--set", "n_layers=1",
            "--set", "valid_sessions=0"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "run 1 of 3: pop / all\n" in out
    assert "run 2 of 3: sasrec / all, seed 0\n" in out  # no neural run timed yet: no ETA to give
    assert re.search(r"^run 3 of 3: sasrec / all, seed 1 \(ETA \d+ s\)$", out, re.M), out
    assert re.search(r"^  epoch 1/1: step \d+/\d+, [\d,]+ rows/s, .*valid NDCG@10 [\d.]+", out, re.M), out
    assert "scoring the test split" in out
    again = invoke(*args).output
    assert "run 1 of 3: pop / all: already trained, reused" in again
    assert "run 3 of 3: sasrec / all, seed 1: already trained, reused" in again and "epoch 1/1" not in again


# ---------------------------------------------------------------------------------------------
# on a terminal: the live bar


def _terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=160, color_system=None)


def test_on_a_terminal_the_bar_shows_steps_speed_eta_and_validation():
    console = _terminal()
    base = dict(run="r", epochs=4, steps=8, batches=2, patience=2)
    with TrainView(console) as view:
        view(TrainProgress("start", epoch=0, step=0, **base))
        view(TrainProgress("step", epoch=0, step=1, batch=1, rows_per_s=1234.0, loss=2.0, eta_s=95.0, **base))
        view.bar.refresh()
        shown = console.file.getvalue()
        assert "epoch 1/4" in shown and "step 1/8" in shown and "1,234 rows/s" in shown and "ETA 2 min" in shown
        epoch = TrainProgress("epoch", epoch=0, step=2, rows_per_s=1000.0, eta_s=60.0, seconds=1.0,
                              losses={"next": 2.0}, valid={"ndcg@10": 0.25}, best=0.25, best_epoch=0, **base)
        view(epoch)
        view.bar.refresh()
        assert "valid NDCG@10 0.2500, best epoch 1" in console.file.getvalue()
        view(TrainProgress("stopped", epoch=2, step=6, best=0.25, best_epoch=0, bad_epochs=2, **base))
    shown = console.file.getvalue()
    assert epoch_line(epoch) in shown  # the epoch's line stays above the bar
    assert "stopped after epoch 3: no gain in 2 epochs; best epoch 1" in shown


def test_on_a_terminal_a_grid_shows_the_run_and_its_training():
    console = _terminal()
    base = dict(run="r", epochs=1, steps=4, batches=4, patience=2)
    with GridView(console) as view:
        view(GridProgress(0, 2, "pop / all", "pop-all", False, None, None))
        view(GridProgress(1, 2, "sasrec / all, seed 0", "s", False, 120.0, 0.0))
        view(TrainProgress("step", epoch=0, step=1, batch=1, rows_per_s=10.0, eta_s=30.0, **base))
        view.bar.refresh()
        shown = console.file.getvalue()
        assert "run 2 of 2: sasrec / all, seed 0 (ETA 2 min)" in shown  # the line, from the runs so far
        assert "ETA 30 s" in shown  # the bar, from this run's own steps
        view("scoring the test split")
    assert "scoring the test split" in console.file.getvalue()


def test_stop_line_names_the_best_epoch():
    ev = TrainProgress("stopped", "r", epoch=3, epochs=10, step=40, steps=100, batches=10, patience=2,
                       best_epoch=1, bad_epochs=2)
    assert stop_line(ev) == "stopped after epoch 4: no gain in 2 epochs; best epoch 2"
