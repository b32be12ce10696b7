"""How the command line shows training progress (``toolkit train``, ``study``, ``demo``).

On a terminal: a live bar with the epoch, step / steps, rows/s, the ETA and the latest validation
NDCG@10 with the best epoch, and one line per epoch kept above it.  Anywhere else (a pipe, a log
file, CI) a bar would show nothing until the end, so the same facts come as plain lines, flushed
as they happen: one when a run starts, one per epoch, one when early stopping ends it, and a
heartbeat line during an epoch that runs longer than ``HEARTBEAT_S``.
"""

from __future__ import annotations

import math
import time
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from toolkit.progress import GridProgress, TrainProgress

HEARTBEAT_S = 60.0  # off a terminal: the longest silence within an epoch
METRICS = {"ndcg@10": "NDCG@10", "hr@10": "HR@10", "skip_hr@10": "skip HR@10"}  # shown, in this order


def duration(seconds: float | None) -> str:
    """'45 s', '12 min', '3 h 05 min'; '?' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{minutes} min" if not hours else f"{hours} h {minutes:02d} min"


def metric_name(key: str) -> str:
    return METRICS.get(key, key)


def start_line(ev: TrainProgress) -> str:
    if ev.phase == "resumed":
        return f"resuming at epoch {ev.epoch + 1}, step {ev.step} of {ev.steps:,}: run {ev.run}"
    early = (f"; stops early after {ev.patience} epoch{'s' if ev.patience != 1 else ''} without a better valid "
             f"{metric_name(ev.metric)}" if ev.patience < ev.epochs else "")  # else patience cannot end it sooner
    return (f"training {ev.run}: up to {ev.epochs} epoch{'s' if ev.epochs != 1 else ''} of {ev.batches:,} steps "
            f"({ev.steps:,} planned){early}")


def step_line(ev: TrainProgress) -> str:
    """Where an epoch is: the heartbeat off a terminal."""
    loss = f", loss {ev.loss:.4f}" if ev.loss is not None else ""
    return (f"epoch {ev.epoch + 1}/{ev.epochs}: step {ev.step:,}/{ev.steps:,}, {ev.rows_per_s or 0:,.0f} rows/s"
            f"{loss}, ETA {duration(ev.eta_s)}")


def epoch_line(ev: TrainProgress) -> str:
    """An epoch trained and validated: its steps, speed, loss, validation metrics and the best epoch."""
    loss = f", loss {sum(ev.losses.values()):.4f}" if ev.losses else ""
    valid = ", ".join(f"{name} {ev.valid[k]:.4f}" for k, name in METRICS.items() if k in ev.valid)
    best = f"; best epoch {ev.best_epoch + 1}" if ev.best_epoch is not None else ""
    return (f"epoch {ev.epoch + 1}/{ev.epochs}: step {ev.step:,}/{ev.steps:,}, {ev.rows_per_s or 0:,.0f} rows/s{loss}; "
            f"valid {valid}{best}; {ev.seconds or 0:.1f} s, ETA {duration(ev.eta_s)}")


def stop_line(ev: TrainProgress) -> str:
    best = f"; best epoch {ev.best_epoch + 1}" if ev.best_epoch is not None else ""
    return f"stopped after epoch {ev.epoch + 1}: no gain in {ev.bad_epochs} epoch{'s' if ev.bad_epochs != 1 else ''}{best}"


def run_line(ev: GridProgress) -> str:
    head = f"run {ev.index + 1} of {ev.total}: {ev.label}"
    if ev.reused:
        return f"{head}: already trained, reused"
    return head + (f" (ETA {duration(ev.eta_s)})" if ev.eta_s is not None else "")


def bar_info(ev: TrainProgress, valid: str) -> str:
    """The live bar's text after the bar: step / steps, rows/s, ETA, then the last validation."""
    speed = f"  {ev.rows_per_s:,.0f} rows/s" if ev.rows_per_s is not None else ""
    return f"step {ev.step:,}/{ev.steps:,}{speed}  ETA {duration(ev.eta_s)}{valid}"


def valid_info(ev: TrainProgress) -> str:
    if ev.metric not in ev.valid:
        return ""
    best = f", best epoch {ev.best_epoch + 1}" if ev.best_epoch is not None else ""
    return f"  valid {metric_name(ev.metric)} {ev.valid[ev.metric]:.4f}{best}"


def _bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), console=console)


class TrainView:
    """Shows one run's ``TrainProgress`` at a time; a context manager that owns the live bar on a
    terminal, unless it is handed one (``GridView``'s)."""

    def __init__(self, console: Console, indent: str = "", heartbeat_s: float = HEARTBEAT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.indent, self.heartbeat_s, self.clock = console, indent, heartbeat_s, clock
        self.live = console.is_terminal
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.owns_bar = False
        self.valid = ""  # the bar's last validation text
        self.last_line = clock()

    def __enter__(self) -> TrainView:
        if self.live and self.bar is None:
            self.attach(_bar(self.console))
            self.owns_bar = True
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.owns_bar and self.bar is not None:
            self.bar.stop()

    def attach(self, bar: Progress) -> None:
        self.bar = bar
        self.task = bar.add_task("training", total=None, info="", visible=False)

    def hide(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, visible=False)

    def say(self, text: str) -> None:
        self.console.print(self.indent + text, markup=False, highlight=False, soft_wrap=True)
        self.last_line = self.clock()

    def __call__(self, ev: TrainProgress) -> None:
        if ev.phase in ("start", "resumed"):
            self.valid = valid_info(ev) if ev.phase == "resumed" else ""
            self.say(start_line(ev))
        elif ev.phase == "epoch":
            self.valid = valid_info(ev)
            self.say(epoch_line(ev))
        elif ev.phase == "stopped":
            self.say(stop_line(ev))
        elif not self.live and self.clock() - self.last_line >= self.heartbeat_s:
            self.say(step_line(ev))
        if self.bar is not None:
            self.bar.update(self.task, description=f"{self.indent}epoch {ev.epoch + 1}/{ev.epochs}", total=ev.steps,
                            completed=ev.step, info=bar_info(ev, self.valid), visible=True)


class GridView:
    """Shows a grid of runs: 'run i of n: <label>' with the grid's ETA, each run's progress under
    it, and the stage after the runs (a plain ``str`` event)."""

    def __init__(self, console: Console, heartbeat_s: float = HEARTBEAT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.train = TrainView(console, "  ", heartbeat_s, clock)
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.run: GridProgress | None = None

    def __enter__(self) -> GridView:
        if self.console.is_terminal:
            self.bar = _bar(self.console)
            self.task = self.bar.add_task("runs", total=None, info="")
            self.train.attach(self.bar)
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, ev: GridProgress | TrainProgress | str) -> None:
        if isinstance(ev, TrainProgress):
            self.train(ev)
            if self.bar is not None and self.run is not None:
                left = (self.run.later_s + ev.eta_s) if self.run.later_s is not None and ev.eta_s is not None else None
                self.bar.update(self.task, info=f"ETA {duration(left)}" if left is not None else "")
            return
        self.train.hide()
        if isinstance(ev, GridProgress):
            self.run = ev
            self._say(run_line(ev))
            if self.bar is not None:
                self.bar.update(self.task, description=f"run {ev.index + 1} of {ev.total}: {ev.label}",
                                total=ev.total, completed=ev.index,
                                info=f"ETA {duration(ev.eta_s)}" if ev.eta_s is not None else "")
        else:  # the runs are done: the stage after them
            total = self.run.total if self.run is not None else None
            self.run = None
            self._say(ev)
            if self.bar is not None:
                self.bar.update(self.task, description=ev, completed=total, info="")

    def _say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        self.train.last_line = self.train.clock()
