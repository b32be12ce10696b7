"""``toolkit tune``: trials are ordinary runs, the first is the study's defaults, the budget is kept,
the search resumes by reusing its runs, and its printed command trains the best trial again."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit.artifacts import Workspace
from toolkit.cli import app
from toolkit.config import PrepConfig, TrainConfig
from toolkit.errors import ConfigError
from toolkit.prep import prep
from toolkit.study import SMALL
from toolkit.tune import SPACE, TuneConfig, base_config, parse_budget, searched, tune

runner = CliRunner()
# tiny trials: each trains two steps on the hand-written log
TINY = ["--set", "epochs=1", "--set", "d_model=16", "--set", "batch_size=4", "--set", "n_layers=1",
        "--set", "valid_sessions=0"]
TINY_FIXED = {"epochs": 1, "d_model": 16, "batch_size": 4, "n_layers": 1, "valid_sessions": 0}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def ws(tmp_path, tiny_logs) -> Workspace:
    w = Workspace.at(tmp_path / "ws")
    prep([tiny_logs], w, PrepConfig(name="tiny"))
    return w


def test_tune_trains_trials_from_the_defaults_and_resumes_by_reusing_them(ws):
    res = invoke("tune", "--workspace", ws.root, "--trials", 3, *TINY)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "count baselines on the same validation sessions: repeat" in text and "(defaults)" in text
    record = json.loads((ws.root / "tunes" / "tiny-sasrec-all-s0.json").read_text())
    assert len(record["trials"]) == 3 and set(record["baselines"]) == {"repeat", "markov"}
    first = record["trials"][0]["params"]
    # trial 0 is the study's settings for every searched dimension; the fixed ones are not searched
    assert first == {k: SMALL.get(k, getattr(TrainConfig(), k)) for k in first}
    assert not set(first) & set(TINY_FIXED) and "lr" in first and "follow" in first
    runs = sorted(p.name for p in (ws.root / "runs").iterdir())
    assert len(runs) == 3 + 2  # three trials (all different settings) and the two count baselines
    assert {t["run"] for t in record["trials"]} <= set(runs)

    # the same command with a larger cap: the first three are reused as they were, then the search goes on
    res = invoke("tune", "--workspace", ws.root, "--trials", 5, *TINY)
    assert res.exit_code == 0, res.output
    again = json.loads((ws.root / "tunes" / "tiny-sasrec-all-s0.json").read_text())
    assert [t["params"] for t in again["trials"][:3]] == [t["params"] for t in record["trials"]]
    assert [t["reused"] for t in again["trials"][:3]] == [True] * 3
    assert [t["wall_s"] for t in again["trials"][:3]] == [t["wall_s"] for t in record["trials"]]
    assert len(again["trials"]) == 5

    # the printed command trains the best trial's run again: the same id, reused
    line = next(ln for ln in res.output.splitlines() if ln.startswith("train it:"))
    argv = shlex.split(line.removeprefix("train it:"))[1:]  # drop the program name
    best = again["trials"][again["best"]]
    out = invoke(*argv, "--workspace", ws.root)
    assert out.exit_code == 0, out.output
    assert best["run"] in out.output and "already trained: reused" in out.output


@pytest.mark.parametrize("model", ["bert4rec", "gru4rec"])
def test_the_printed_command_trains_the_best_trial_of_any_model(ws, model):
    res = invoke("tune", "--workspace", ws.root, "--model", model, "--trials", 2, *TINY)
    assert res.exit_code == 0, res.output
    record = json.loads((ws.root / "tunes" / f"tiny-{model}-all-s0.json").read_text())
    line = next(ln for ln in res.output.splitlines() if ln.startswith("train it:"))
    out = invoke(*shlex.split(line.removeprefix("train it:"))[1:], "--workspace", ws.root)
    assert out.exit_code == 0, out.output
    assert record["trials"][record["best"]]["run"] in out.output and "already trained: reused" in out.output
    study_line = next(ln for ln in res.output.splitlines() if ln.startswith("study it:"))
    assert "--set d_model=16" in study_line and "--set lr=0.003 " not in study_line + " "  # the study's own lr


def test_the_budget_stops_the_search_before_a_trial_that_would_not_fit(ws, monkeypatch):
    import toolkit.tune as tune_module

    real_train = tune_module.train

    def slow_train(ws, cfg, progress=None):  # every neural run is recorded as 100 s of training
        res = real_train(ws, cfg, progress)
        return dataclasses.replace(res, wall_s=100.0) if cfg.model == "sasrec" else res

    monkeypatch.setattr(tune_module, "train", slow_train)
    result = tune(ws, TuneConfig(budget_s=150, fixed=TINY_FIXED))
    assert len(result.trials) == 1 and result.stopped == "no time left for another trial"
    assert result.spent_s == pytest.approx(100)
    result = tune(ws, TuneConfig(budget_s=250, fixed=TINY_FIXED))
    assert len(result.trials) == 2 and result.spent_s == pytest.approx(200)
    assert result.trials[0].reused and not result.trials[1].reused
    result = tune(ws, TuneConfig(budget_s=10, fixed=TINY_FIXED))  # the first trial always runs
    assert len(result.trials) == 1 and result.stopped == "budget spent"


def test_the_space_leaves_out_fixed_settings_and_those_a_model_does_not_read(ws):
    names = {d.name for d in searched(base_config(ws, TuneConfig(fixed={"d_model": 16}))[0], {"d_model": 16})}
    assert "d_model" not in names and {"lr", "transitions", "follow", "successor_sum", "rule_rank", "freeze_items"} <= names
    assert "alpha" not in names  # no contrastive term to weigh
    bert = {d.name for d in searched(base_config(ws, TuneConfig(model="bert4rec"))[0], {})}
    assert not bert & {"transitions", "follow", "successor_sum", "rule_rank"}  # no repeat head
    assert "freeze_items" in bert
    contrastive = {d.name for d in searched(base_config(ws, TuneConfig(feedback="contrastive"))[0], {})}
    assert "alpha" in contrastive and "freeze_items" not in contrastive  # frozen, its e_t term would train nothing
    output = {d.name for d in searched(base_config(ws, TuneConfig(feedback="contrastive", fixed={"context": "output"}))[0], {})}
    assert "freeze_items" in output
    assert len({d.name for d in SPACE}) == len(SPACE)
    for d in SPACE:  # every searched name is a training setting
        assert hasattr(TrainConfig(), d.name), d.name


@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("90s", 90),
                                           ("600", 600), ("1.5h", 5400), ("45min", 2700)])
def test_budgets_read_as_people_write_them(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("args, names, code", [
    (["--budget", "soon"], "--budget soon", 1),
    (["--budget", "0"], "--budget 0", 1),
    (["--model", "markov"], "'markov'", 2),  # not one of the choices: a usage error
    (["--trials", "0"], "--trials 0", 1),
    (["--set", "colour=blue"], "--set colour=blue", 1),
])
def test_bad_options_are_one_line_errors(ws, args, names, code):
    res = invoke("tune", "--workspace", ws.root, *args)
    assert res.exit_code == code
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and names in lines[0] and "Traceback" not in res.output, res.output


def test_a_missing_dataset_fails_before_any_training(tmp_path):
    res = invoke("tune", "--workspace", tmp_path / "empty", "--dataset", "nothing")
    assert res.exit_code == 1 and "nothing" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "empty" / "runs").exists() or not any((tmp_path / "empty" / "runs").iterdir())


def test_bad_config_values_raise_config_errors():
    with pytest.raises(ConfigError, match="--budget"):
        TuneConfig(budget_s=-1)
    with pytest.raises(ConfigError, match="--model pop"):
        TuneConfig(model="pop")


def test_the_python_verb_searches_as_the_command_does(ws):
    import toolkit

    search = toolkit.tune("tiny", workspace=ws.root, trials=2, **TINY_FIXED)
    assert len(search.trials) == 2 and search.default.params["lr"] == SMALL["lr"]
    assert search.best.value == max(t.value for t in search.trials) and "repeat" in search.baselines
    assert Path(search.path).is_file() and callable(toolkit.tune)
    with pytest.raises(ConfigError, match="did you mean d_model"):
        toolkit.tune("tiny", workspace=ws.root, d_modle=16)
    # a window fixed for the trials is read by the repeat baseline they are measured against too
    windowed = toolkit.tune("tiny", workspace=ws.root, trials=1, window=1, **TINY_FIXED)
    rule = json.loads((ws.root / "runs" / windowed.baselines["repeat"]["run"] / "config.json").read_text())["train"]
    assert rule["model"] == "repeat" and rule["window"] == 1 and rule["successors"] == windowed.base["successors"] > 0


def test_trials_below_the_median_are_pruned_and_a_resumed_search_repeats_the_same_stops(ws, monkeypatch):
    import toolkit.tune as tune_module
    from toolkit.artifacts import append_metrics, run_dir
    from toolkit.progress import TrainProgress
    from toolkit.run_result import TrainResult

    real_train = tune_module.train
    finished: dict[str, TrainResult] = {}
    trained: list[str] = []

    def fake_train(ws, cfg, progress=None):  # a neural run whose validation is its lr x 10 after every epoch
        if cfg.model != "sasrec":
            return real_train(ws, cfg, progress)
        run = tune_module.run_of(ws, tune_module.read_manifest(ws.dataset(cfg.dataset)), cfg)
        if run.id in finished:
            return dataclasses.replace(finished[run.id], reused=True)
        trained.append(run.id)
        run.path.mkdir(parents=True, exist_ok=True)
        done = len(tune_module.read_metrics(run))
        for epoch in range(done, cfg.epochs):
            append_metrics(run_dir(ws, run.id), {"epoch": epoch, "valid_ndcg@10": cfg.lr * 10})
            progress(TrainProgress(phase="epoch", run=run.id, epoch=epoch, epochs=cfg.epochs, step=epoch + 1,
                                   steps=cfg.epochs, batches=1, patience=cfg.patience, valid={"ndcg@10": cfg.lr * 10}))
        finished[run.id] = TrainResult(id=run.id, status="finished", dataset=cfg.dataset, model=cfg.model,
                                       feedback=cfg.feedback, seed=cfg.seed, epochs_done=cfg.epochs, best_epoch=0,
                                       valid={"ndcg@10": cfg.lr * 10}, wall_s=10.0, git_commit=None, path=str(run.path))
        return finished[run.id]

    monkeypatch.setattr(tune_module, "train", fake_train)
    cfg = TuneConfig(trials=12, fixed={**TINY_FIXED, "epochs": 3, "patience": 3})
    first = tune(ws, cfg)
    states = [t.state for t in first.trials]
    assert states[:tune_module.PRUNE_AFTER] == ["complete"] * tune_module.PRUNE_AFTER  # no median to compare yet
    pruned = [t for t in first.trials if t.state == "pruned"]
    assert pruned, states
    for t in pruned:  # stopped after its first epoch, below the median of the trials before it
        assert t.epochs_done == 1 and t.reports == {0: pytest.approx(t.params["lr"] * 10)}
        before = sorted(x.reports[0] for x in first.trials[:t.number] if x.state == "complete")
        assert t.value < before[len(before) // 2] + 1e-12
    assert first.best.state == "complete" and first.best.value == max(t.value for t in first.trials)
    # the same search again trains nothing: the same settings in the same order, the same stops
    trained.clear()
    again = tune(ws, cfg)
    assert trained == []
    assert [(t.params, t.state, t.value) for t in again.trials] == [(t.params, t.state, t.value) for t in first.trials]
    assert all(t.reused for t in again.trials)


def test_ctrl_c_keeps_the_finished_trials_and_says_how_to_go_on(ws, monkeypatch):
    import toolkit.tune as tune_module
    from toolkit.errors import RunInterrupted

    real_train, neural = tune_module.train, []

    def interrupted_train(ws, cfg, progress=None):  # Ctrl-C during the second neural trial
        if cfg.model == "sasrec":
            neural.append(cfg)
            if len(neural) == 2:
                raise RunInterrupted("sasrec-all-s0-00000000")
        return real_train(ws, cfg, progress)

    monkeypatch.setattr(tune_module, "train", interrupted_train)
    res = invoke("tune", "--workspace", ws.root, "--trials", 3, *TINY)
    assert res.exit_code == 130 and "run the same command again to continue" in " ".join(res.output.split())
    assert "Traceback" not in res.output
    record = json.loads((ws.root / "tunes" / "tiny-sasrec-all-s0.json").read_text())
    assert len(record["trials"]) == 1 and record["trials"][0]["state"] == "complete"
