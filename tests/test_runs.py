"""Reading runs back: a run folder validated once into a RunRecord, and one-line errors for files that do not fit."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError

import pytest
from typer.testing import CliRunner

from toolkit.artifacts import Workspace
from toolkit.cli import app
from toolkit.config import TrainConfig
from toolkit.errors import ArtifactMissingError, ConfigError, DamagedArtifactError
from toolkit.runs import RunRecord, is_run_name, load_run, select_runs


def _run(ws: Workspace, run_id: str, config, result=None) -> None:
    folder = ws.root / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config), encoding="utf-8")
    if result is not None:
        (folder / "result.json").write_text(json.dumps(result), encoding="utf-8")


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace.at(tmp_path / "ws")


def test_a_run_folder_reads_into_a_frozen_record(ws):
    _run(ws, "markov-all-s0-abc", {"train": {"model": "markov", "dataset": "tiny", "gone_setting": 3}, "build": "b1"},
         {"status": "finished", "valid": {"ndcg@10": 0.5}})
    run = load_run(ws, "markov-all-s0-abc")
    assert isinstance(run, RunRecord) and run.id == "markov-all-s0-abc" and run.finished
    assert run.config == TrainConfig(model="markov", dataset="tiny")  # a setting since removed is ignored
    assert run.recorded == {"build": "b1"} and run.result["valid"]["ndcg@10"] == 0.5
    assert run.dir.path == ws.root / "runs" / "markov-all-s0-abc"
    with pytest.raises(FrozenInstanceError):
        run.id = "other"  # type: ignore[misc]


def test_a_run_without_a_result_or_with_a_failed_one_is_unfinished(ws):
    _run(ws, "pop-all-s0-a", {"train": {"model": "pop"}})
    _run(ws, "pop-all-s0-b", {"train": {"model": "pop"}}, {"status": "failed"})
    assert not load_run(ws, "pop-all-s0-a").finished and load_run(ws, "pop-all-s0-a").result is None
    assert not load_run(ws, "pop-all-s0-b").finished


@pytest.mark.parametrize("config,result,file,why", [
    ("{not json", None, "config.json", "JSONDecodeError"),
    ([1, 2], None, "config.json", "no 'train' settings"),
    ({"train": {"model": "nope"}}, None, "config.json", "--model nope"),
    ({"train": {"epochs": "ten"}}, None, "config.json", "--epochs ten"),
    ({"train": {"model": "pop"}}, ["finished"], "result.json", "holds a list"),
])
def test_a_run_file_that_does_not_fit_is_one_line_naming_it(ws, config, result, file, why):
    _run(ws, "pop-all-s0-x", config, result)
    with pytest.raises(DamagedArtifactError) as err:
        load_run(ws, "pop-all-s0-x")
    message = str(err.value)
    assert message.startswith(str(ws.root / "runs" / "pop-all-s0-x" / file) + ": ") and why in message
    assert "\n" not in message and "train it again" in message


def test_unknown_and_unfinished_runs_are_refused_with_the_fix(ws):
    with pytest.raises(ArtifactMissingError, match="unknown run 'nothing-here'.*toolkit runs"):
        load_run(ws, "nothing-here")
    _run(ws, "pop-all-s0-a", {"train": {"model": "pop", "dataset": "tiny"}})
    with pytest.raises(ConfigError, match="pop-all-s0-a did not finish.*--allow-unfinished"):
        select_runs(ws, ["pop-all-s0-a"], None, allow_unfinished=False)


def test_only_valid_names_are_runs():
    assert is_run_name("sasrec-all-s0-1a2b3c4d")
    assert not is_run_name("../escape") and not is_run_name(".tmp-x")


def test_report_of_a_damaged_run_is_one_line_and_exit_1(ws):
    _run(ws, "pop-all-s0-x", [1, 2])
    res = CliRunner().invoke(app, ["report", "pop-all-s0-x", "--workspace", str(ws.root)])
    assert res.exit_code == 1
    assert "config.json: cannot be read" in res.output and "Traceback" not in res.output
