"""The training settings a run was started with, read back from its folder: what ``toolkit train
--resume`` continues and what the report scores a run under."""

from __future__ import annotations

from toolkit.artifacts import Workspace, read_json, run_dir
from toolkit.config import TrainConfig, saved_config
from toolkit.errors import ArtifactMissingError


def resume_config(ws: Workspace, run_id: str) -> TrainConfig:
    """The config of run ``run_id`` of ``ws``, to train it again from its last checkpoint."""
    run = run_dir(ws, run_id)
    if not run.config.exists():
        raise ArtifactMissingError(f"run {run_id}: not in {ws.root / 'runs'}; `toolkit runs` lists the runs")
    return saved_config(read_json(run.config)["train"])
