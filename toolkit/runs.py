"""A finished (or interrupted) run read back: which runs there are, their records, their models.

``train`` writes a run folder (``artifacts.RunDir``: config.json, result.json, best.pt); everything
that reads one back is here, so the report, ``recommend`` and the notebook API share one reader.
A run folder is read once into a ``RunRecord``; a file that does not fit names itself and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from toolkit.artifacts import RunDir, Workspace, damaged, list_datasets, load_torch, read_json, read_manifest, run_dir
from toolkit.config import NEURAL, ModelConfig, TrainConfig, saved_config
from toolkit.data import load_split, train_counts
from toolkit.errors import ArtifactMissingError, ConfigError, ToolkitError
from toolkit.identity import BadNameError, StaleRunError, check_name, run_is_stale, stale_message
from toolkit.manifest import Manifest
from toolkit.model import SeqRec
from toolkit.scorers import MarkovScorer, NeuralScorer, PopScorer, RepeatScorer, SessionKNNScorer

_TRAIN_FIELDS = frozenset(f.name for f in fields(TrainConfig))


@dataclass(frozen=True)
class RunRecord:
    """One run folder as read: its settings, its outcome (None until training ends) and what else
    config.json recorded beside the settings (the dataset build it was trained on, versions)."""

    id: str
    dir: RunDir
    config: TrainConfig
    result: dict | None  # result.json: status, valid metrics, best_epoch, epochs_done, wall_s
    recorded: dict  # config.json without the settings

    @property
    def finished(self) -> bool:
        return bool(self.result) and self.result.get("status") == "finished"


def load_run(ws: Workspace, run_id: str) -> RunRecord:
    """The run ``run_id`` of ``ws``, its config.json and result.json validated into a ``RunRecord``."""
    run = run_dir(ws, run_id)
    if not run.config.exists():
        raise ArtifactMissingError(f"unknown run {run_id!r} in {ws.root}; `toolkit runs` lists the runs")
    recorded = read_json(run.config)
    saved = recorded.get("train") if isinstance(recorded, dict) else None
    if not isinstance(saved, dict):
        raise damaged(run.config, ValueError("no 'train' settings"))
    try:
        cfg = saved_config(saved)
    except (TypeError, ValueError, ToolkitError) as exc:
        raise damaged(run.config, exc) from exc
    result = read_json(run.result) if run.result.exists() else None
    if result is not None and not isinstance(result, dict):
        raise damaged(run.result, ValueError(f"holds a {type(result).__name__}, not a run result"))
    return RunRecord(id=run_id, dir=run, config=cfg, result=result,
                     recorded={k: v for k, v in recorded.items() if k != "train"})


def is_run_name(text: str) -> bool:
    """Whether ``text`` can name a run folder (anything else under runs/ is not a run)."""
    try:
        check_name(text, "run")
    except BadNameError:
        return False
    return True


def is_stale(ws: Workspace, run: RunRecord) -> bool:
    """Whether the run was trained on another build than its dataset's current one (``identity``)."""
    return run_is_stale(run.recorded, read_manifest(ws.dataset(run.config.dataset)).to_json())


def latest_dataset(ws: Workspace) -> str:
    """The name of the most recently prepared dataset that reads back (the default of every command)."""
    rows = list_datasets(ws, damaged=True)
    if not rows:
        raise ArtifactMissingError(f"{ws.root}: no prepared dataset; run `toolkit prep LOGS` first")
    ready = [r for r in rows if r["status"] == "ready"]
    if not ready:  # "no dataset" would send the user to prep a new one; the old one only needs mending
        raise ArtifactMissingError(f"{rows[0]['path']}/manifest.json: does not parse, the dataset is damaged; run "
                                   f"`toolkit prep LOGS --name {rows[0]['name']}` again, or pass --dataset NAME")
    return ready[0]["name"]


def select_runs(ws: Workspace, ids: list[str], dataset: str | None, allow_unfinished: bool) -> list[RunRecord]:
    """The runs to report: the given ids, else every finished run of ``dataset`` (default: latest)."""
    if dataset is not None:
        ws.dataset(dataset)  # a dataset name, not a path, before anything is read
    if ids:
        chosen = [load_run(ws, i) for i in ids]
    else:
        name = dataset or latest_dataset(ws)
        runs_root = ws.root / "runs"
        found = sorted(p.name for p in runs_root.iterdir()
                       if is_run_name(p.name) and (p / "config.json").exists()) if runs_root.exists() else []
        mine = [r for r in (load_run(ws, i) for i in found) if r.config.dataset == name and r.finished]
        # runs of an earlier build of the dataset are not its runs any more: left out, and named if none is left
        chosen = [r for r in mine if not is_stale(ws, r)]
        if not chosen:
            stale = f" ({len(mine)} stale: trained on an earlier build; retrain with `toolkit train --resume ID`)" \
                if mine else ""
            raise ArtifactMissingError(f"dataset {name}: no finished runs to report{stale}; train some with "
                                       f"`toolkit train --dataset {name}` (or `toolkit study`)")
    unfinished = [r.id for r in chosen if not r.finished]
    if unfinished and not allow_unfinished:
        raise ConfigError(f"run(s) {', '.join(unfinished)} did not finish; resume with `toolkit train --resume ID`, "
                          "or pass --allow-unfinished to score their best checkpoint so far")
    for r in chosen:
        if r.config.model in NEURAL and not r.dir.best.exists():
            raise ArtifactMissingError(f"run {r.id} has no best checkpoint yet (it ended before its first "
                                       "evaluation); resume it with `toolkit train --resume ID`")
    names = sorted({r.config.dataset for r in chosen})
    if len(names) > 1:
        raise ConfigError(f"the runs come from different datasets ({', '.join(names)}); report one dataset at a "
                          "time (pass --dataset NAME, or only that dataset's run ids)")
    if dataset and names[0] != dataset:
        raise ConfigError(f"the runs were trained on {names[0]}, not on --dataset {dataset}")
    for r in chosen:
        if is_stale(ws, r):
            raise StaleRunError(stale_message(r.id, names[0]))
    return chosen


def build_baseline(ds, manifest: Manifest, cfg: TrainConfig):
    """Most-popular, transition, session-kNN or repeat scorer counted from the train rows."""
    tr = load_split(ds, "train")
    hide = "positives-only" in cfg.modes
    counts = train_counts(tr, manifest.items, hide_skips=hide)
    if cfg.model == "pop":
        return PopScorer(counts)
    if cfg.model == "sknn":
        return SessionKNNScorer(np.asarray(tr.seqs), np.asarray(tr.skips), np.asarray(tr.row_session), counts, hide)
    # the repeat baseline reads whatever the rows hold: with history, the listener's earlier plays too
    markov = MarkovScorer(np.asarray(tr.seqs), np.asarray(tr.skips), counts, hide)
    return RepeatScorer(markov, cfg.window) if cfg.model == "repeat" else markov


def scorer_for(ws: Workspace, run: RunRecord, device: torch.device):
    """The ranking function of a run: its best checkpoint, or the baseline's counts."""
    cfg = run.config
    ds = ws.dataset(cfg.dataset)
    manifest = read_manifest(ds)
    if cfg.model not in NEURAL:
        return build_baseline(ds, manifest, cfg)
    best = load_torch(run.dir.best)
    model = SeqRec(ModelConfig(**best["model_config"])).to(device)
    model.load_state_dict(best["model"])
    model.eval()
    return NeuralScorer(model, "positives-only" in cfg.modes)
