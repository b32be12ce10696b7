"""A run's saved settings read back as its TrainConfig (``toolkit train --resume``)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from toolkit.artifacts import Workspace
from toolkit.config import TrainConfig
from toolkit.errors import ArtifactMissingError
from toolkit.config import saved_config
from toolkit.resume import resume_config


def test_saved_settings_come_back_as_the_config_they_were():
    cfg = TrainConfig(dataset="tiny", model="gru4rec", feedback="contrastive", seed=7, lr=0.01)
    assert saved_config(json.loads(json.dumps(asdict(cfg)))) == cfg


def test_a_removed_setting_is_ignored_and_a_new_one_takes_its_earlier_behaviour():
    saved = {"dataset": "tiny", "model": "sasrec", "seed": 3, "a_setting_since_removed": 1}
    # a run recorded before the repeat head existed trained without it, whatever today's default is
    assert saved_config(saved) == TrainConfig(dataset="tiny", model="sasrec", seed=3, repeat_head=False, successors=0)
    # the repeat baseline reads 10 successors by default now; one recorded before successors existed read none
    old_repeat = saved_config({"dataset": "tiny", "model": "repeat"})
    assert old_repeat.successors == 0 and TrainConfig(dataset="tiny", model="repeat").successors == 10


def test_resume_reads_the_runs_config_file(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    cfg = TrainConfig(dataset="tiny", model="pop", seed=2)
    folder = ws.root / "runs" / "pop-all-s2-00000000"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"train": asdict(cfg), "dataset_build": "x"}))
    assert resume_config(ws, folder.name) == cfg


def test_resuming_a_run_that_is_not_there_says_how_to_list_the_runs(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    with pytest.raises(ArtifactMissingError, match=r"run nope: not in .*runs; `toolkit runs` lists the runs"):
        resume_config(ws, "nope")
