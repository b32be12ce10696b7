"""``toolkit demo``: the whole pipeline on a synthetic log, nothing to download.

Writes the log (once per size and seed), prepares it, trains the count baselines and small SASRec
models with and without skips, and reports them on the test split.  Like ``study``, the library
prints nothing: what happens is sent to ``progress`` as records (``Stage``, ``LogWritten``,
``Prepared``, prep's stage names, then the grid's ``GridProgress`` / ``TrainProgress``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from toolkit.artifacts import Workspace
from toolkit.config import PrepConfig, TrainConfig

if TYPE_CHECKING:
    from toolkit.manifest import Manifest
    from toolkit.prep import PrepResult
    from toolkit.synth import SynthSummary

DATASET = "demo"  # the prepared dataset's name, and the workspace folder of the log and the report


@dataclass(frozen=True)
class DemoConfig:
    plays: int = 200_000  # plays in the synthetic log
    users: int = 300  # listeners in the synthetic log
    epochs: int = 4  # epochs of each SASRec model; 0 prepares the log and trains nothing
    seed: int = 0  # the log's seed and every run's


@dataclass(frozen=True)
class Stage:
    """A step that sends no progress of its own (a prep's stages follow its ``Stage`` as plain text)."""

    text: str


@dataclass(frozen=True)
class LogWritten:
    """The synthetic log was written (it is written once; a later demo of the same size reuses it)."""

    path: Path
    summary: SynthSummary  # what toolkit.synth.synth wrote


@dataclass(frozen=True)
class Prepared:
    prepared: PrepResult  # what toolkit.prep.prep returned
    seconds: float


@dataclass(frozen=True)
class DemoResult:
    manifest: Manifest
    runs: list[str] = field(default_factory=list)  # run ids, in the order of ``demo_runs``
    report: dict | None = None  # None when nothing was trained (epochs 0)
    written: list[Path] = field(default_factory=list)  # the report's files


def log_path(ws: Workspace, cfg: DemoConfig) -> Path:
    return ws.root / DATASET / f"synthetic-{cfg.plays}-{cfg.users}-{cfg.seed}.parquet"


def demo_runs(cfg: DemoConfig) -> list[tuple[str, TrainConfig]]:
    """The demo's grid, labelled: two count baselines and SASRec without skips, with skips as
    positives only, and with the contrastive skip term; small models, so it runs in minutes on a CPU."""
    small = dict(d_model=32, n_layers=1, epochs=cfg.epochs, lr=3e-3, patience=cfg.epochs)
    grid = [("pop", "all", {}), ("markov", "all", {}), ("sasrec", "all", small),
            ("sasrec", "positives-only", small),
            ("sasrec", "contrastive", {**small, "alpha": 0.1, "context": "input"})]
    return [(f"{model} / {feedback}", TrainConfig(dataset=DATASET, model=model, feedback=feedback, seed=cfg.seed,
                                                  **extra))
            for model, feedback, extra in grid]


def demo(ws: Workspace, cfg: DemoConfig, progress: Callable[[Any], None] | None = None) -> DemoResult:
    """Write the log (unless it is there), prepare it, train ``demo_runs`` and report them."""
    from toolkit.prep import prep
    from toolkit.report.protocol import Protocol
    from toolkit.report.render import write_report
    from toolkit.report.scoring import build_report

    from toolkit.study import train_grid
    from toolkit.synth import SynthConfig, synth

    say = progress or (lambda _event: None)
    logs = log_path(ws, cfg)
    logs.parent.mkdir(parents=True, exist_ok=True)
    if not logs.exists():
        say(Stage("writing a synthetic listening log"))
        summary = synth(logs, SynthConfig(users=cfg.users, plays=cfg.plays, tracks=5_000, artists=500, seed=cfg.seed))
        say(LogWritten(logs, summary))
    started = time.perf_counter()
    say(Stage("starting"))
    prepared = prep([logs], ws, PrepConfig(name=DATASET), say)
    say(Prepared(prepared, time.perf_counter() - started))
    if cfg.epochs < 1:
        return DemoResult(prepared.manifest)
    ids, _ = train_grid(ws, demo_runs(cfg), say)
    say(Stage("scoring the test split"))
    rep = build_report(ws, ids, Protocol(bootstrap=500), DATASET)
    return DemoResult(prepared.manifest, ids, rep, write_report(rep, ws.root / DATASET / "report.html"))
