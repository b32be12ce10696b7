"""What training reports while it runs, and the arithmetic of its time estimates.

``train`` sends a ``TrainProgress`` when a run starts (or resumes), after every step, after every
validated epoch, and when early stopping ends the run; a grid of runs (``toolkit study``,
``toolkit demo``) sends a ``GridProgress`` before each run.  They are plain records: how they are
shown (a live bar on a terminal, one line per epoch through a pipe) is the command line's business
(``toolkit/cli/progress.py``).  The library prints nothing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from toolkit.config import NEURAL, TrainConfig

# start: a fresh run; resumed: a run continued from its checkpoint; step: one optimiser step done;
# epoch: an epoch trained and validated; stopped: early stopping ended the run before its last epoch
PHASES = ("start", "resumed", "step", "epoch", "stopped")


@dataclass(frozen=True)
class TrainProgress:
    """One moment of a training run.  Epochs count from 0 here; the command line shows them from 1."""

    phase: str  # one of PHASES
    run: str  # the run id
    epoch: int  # the epoch this is about (start, resumed: the first one to train)
    epochs: int  # epochs configured; early stopping or max_steps may end the run sooner
    step: int  # optimiser steps done in the whole run, a resumed run's earlier ones included
    steps: int  # steps planned: epochs x batches, capped by max_steps
    batches: int  # batches (steps) per epoch
    patience: int  # the run stops once this many epochs in a row bring no better validation metric
    batch: int = 0  # step: batches done in this epoch
    rows_per_s: float | None = None  # step, epoch: train rows per second in this epoch
    eta_s: float | None = None  # seconds to the last planned step and its validation (None before a step)
    loss: float | None = None  # step: the batch's loss
    seconds: float | None = None  # epoch: seconds of its training steps, validation excluded
    losses: Mapping[str, float] = field(default_factory=dict)  # epoch: mean of each loss term ('next', ...)
    valid: Mapping[str, float] = field(default_factory=dict)  # epoch: validation metrics ('ndcg@10', ...)
    metric: str = "ndcg@10"  # the validation metric that picks the best epoch
    best: float | None = None  # the best value of ``metric`` so far
    best_epoch: int | None = None  # the epoch that reached it
    bad_epochs: int = 0  # epochs since the best one

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"progress phase {self.phase!r}: use one of {', '.join(PHASES)}")


@dataclass(frozen=True)
class GridProgress:
    """A run of a grid about to start: which one, and how long the grid has left."""

    index: int  # from 0
    total: int  # runs in the grid
    label: str  # what the run is: 'sasrec / contrastive, seed 1'
    run: str  # its run id
    reused: bool  # already finished earlier: nothing to train
    eta_s: float | None  # this run and the ones after it (``RunTimes.estimate``); None: no basis yet
    later_s: float | None  # the runs after this one alone, to add to this run's own ETA while it trains


def eta_s(steps_left: int, validations_left: int, step_s: float | None, valid_s: float | None) -> float | None:
    """Seconds to go: each step left at ``step_s`` (the mean step so far) and each validation left at
    ``valid_s`` (the mean validation so far; before the first one it counts 0, so the estimate is low
    during the first epoch).  None before any step has been timed."""
    if step_s is None:
        return None
    return max(0, steps_left) * step_s + max(0, validations_left) * (valid_s or 0.0)


class Pace:
    """Wall seconds per step and per validation, measured in this process as the run goes (a
    resumed run measures afresh).  Whatever happens between two marks (shuffling, checkpoints)
    counts toward the next one, so the estimate covers the whole wall time."""

    def __init__(self, steps: int, batches: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self.steps, self.batches, self.clock = steps, max(1, batches), clock
        self.last = clock()
        self.step_s = self.valid_s = 0.0
        self.n_steps = self.n_valid = 0

    def stepped(self) -> None:
        now = self.clock()
        self.step_s, self.n_steps, self.last = self.step_s + now - self.last, self.n_steps + 1, now

    def validated(self) -> None:
        now = self.clock()
        self.valid_s, self.n_valid, self.last = self.valid_s + now - self.last, self.n_valid + 1, now

    def eta_s(self, step: int, epoch: int, validated: bool) -> float | None:
        """Seconds until the last planned step is trained and validated, ``step`` steps into the run
        with ``epoch`` (from 0) validated already or not yet."""
        last_epochs = math.ceil(self.steps / self.batches)  # epochs that hold a planned step
        validations = last_epochs - epoch - (1 if validated else 0)
        return eta_s(self.steps - step, validations, self.step_s / self.n_steps if self.n_steps else None,
                     self.valid_s / self.n_valid if self.n_valid else None)


def family(cfg: TrainConfig) -> str:
    return "neural" if cfg.model in NEURAL else "count"


class RunTimes:
    """Seconds the runs of a grid took so far, by model, to estimate the runs left."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def add(self, cfg: TrainConfig, seconds: float) -> None:
        self.seconds.setdefault(cfg.model, []).append(seconds)
        self.seconds.setdefault(family(cfg), []).append(seconds)

    def estimate(self, cfgs: Iterable[TrainConfig]) -> float | None:
        """Seconds for ``cfgs``: each run at the mean of its model's runs so far, else of its family's
        (neural or count: a BERT4Rec run before the first one is timed like the SASRec runs); None
        while one of them has neither, since a count baseline says nothing of a neural run's time."""
        total = 0.0
        for cfg in cfgs:
            times = self.seconds.get(cfg.model) or self.seconds.get(family(cfg))
            if not times:
                return None
            total += sum(times) / len(times)
        return total

