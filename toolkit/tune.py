"""``toolkit tune``: training settings chosen on validation, within a time budget.

Every trial is an ordinary ``toolkit train`` run (the study's settings, the searched ones over
them), so it is listed by ``toolkit runs``, reused when asked for again, and its validation
NDCG@10 is the one ``train`` recorded. Optuna's TPE sampler (Bergstra et al., NeurIPS 2011)
proposes each trial from the values of the trials before; it is used rather than a hand-written
random search because with a handful of trials a model of which settings did well finds better
ones sooner, and its ask-and-tell interface lets the toolkit keep its own training loop.

- The first trial is the study's defaults, so the search reports how far it moved from them.
- From the fifth trial on, a trial below the median of the earlier ones after the same epoch stops
  there (Optuna's median pruner); its run stays checkpointed for ``toolkit train`` to finish.
- A count baseline (``repeat`` and ``markov``, the ones the neural runs must beat) is scored on
  the same validation sessions, so the table shows the bar as well as the winner.
- Nothing here reads the test split: choosing settings on test would make every test number
  after it optimistic.
- Resuming: the sampler is seeded and each trial's value is read back from its run, so the same
  command asks for the same settings in the same order, reuses the finished runs (each charged at
  its recorded training time), takes the stopped trials from the record it wrote after each trial
  and continues where an interrupted search stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from toolkit.artifacts import Workspace, read_json, read_manifest, read_metrics, write_json
from toolkit.config import NEURAL, NO_REPEAT_HEAD, TrainConfig, frozen_skip_term
from toolkit.errors import ConfigError, DamagedArtifactError, TrainingDiverged
from toolkit.manifest import Manifest
from toolkit.progress import TrainProgress
from toolkit.runs import latest_dataset
from toolkit.study import SMALL
from toolkit.train import run_of, train

Progress = Callable[[TrainProgress | str], None]
METRIC = "ndcg@10"
BASELINES = ("repeat", "markov")
PRUNE_AFTER = 4  # complete trials before the pruner may stop one
REPEATS_IN_A_ROW = 20  # proposals that only repeat earlier trials before the space counts as exhausted


@dataclass(frozen=True)
class Dimension:
    """One searched setting: categorical ``choices``, or a range ``low``..``high`` (``log``: on a log
    scale; ``step``: a grid), and which runs it applies to."""

    name: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    needs: Callable[[TrainConfig], bool] = lambda cfg: True

    def suggest(self, trial):
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.name, self.low, self.high)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)


def _copies(cfg: TrainConfig) -> bool:
    return cfg.repeat_head


def _successors(cfg: TrainConfig) -> bool:
    return cfg.repeat_head and cfg.successors > 0


def _skip_term_trains_when_frozen(cfg: TrainConfig) -> bool:
    # with context=input a contrastive term compares only track vectors: frozen, it trains nothing
    return not frozen_skip_term(cfg.feedback, True, cfg.context, cfg.artists)


def _sampled(cfg: TrainConfig) -> bool:
    return cfg.loss in ("shared", "sampled", "auto")


# the settings that moved validation NDCG@10 in the sweeps of benchmarks/README.md, in ranges around
# the study's defaults (d 32, 2 layers, 2 epochs, lr 3e-3, dropout 0.1, 2,048 shared negatives)
SPACE = (
    Dimension("d_model", choices=(32, 64)),
    Dimension("n_layers", choices=(1, 2)),
    Dimension("epochs", low=1, high=4),
    Dimension("lr", low=1e-3, high=1e-2, log=True),
    Dimension("dropout", low=0.0, high=0.3, step=0.05),
    Dimension("batch_size", choices=(64, 128, 256)),
    Dimension("negatives", choices=(512, 1024, 2048, 4096), needs=_sampled),
    Dimension("transitions", choices=(0, 20), needs=_copies),
    Dimension("follow", choices=(False, True), needs=_successors),
    Dimension("successor_sum", choices=(False, True), needs=_successors),
    # the pair that let the network beat the count rule on personal exports (benchmarks/README.md,
    # "The rule's places and frozen track embeddings"); either alone gave nothing there, so the search
    # has to be able to try them together
    Dimension("rule_rank", choices=(False, True), needs=_copies),
    Dimension("freeze_items", choices=(False, True), needs=_skip_term_trains_when_frozen),
    Dimension("alpha", low=0.01, high=1.0, log=True, needs=lambda cfg: "contrastive" in cfg.modes),
)


@dataclass
class TuneConfig:
    dataset: str | None = None  # prepared dataset (default: the latest)
    budget_s: float = 1800.0  # training time the trials may take together
    trials: int | None = None  # at most this many trials (default: as many as the budget allows)
    model: str = "sasrec"
    feedback: str = "all"
    seed: int = 0  # the runs' seed, and the sampler's
    fixed: dict = field(default_factory=dict)  # settings over the study's, never searched

    def __post_init__(self) -> None:
        if self.model not in NEURAL:
            raise ConfigError(f"--model {self.model}: tune searches the settings of a neural model "
                              f"({', '.join(NEURAL)}); the count baselines have none")
        if not self.budget_s > 0:
            raise ConfigError(f"--budget {self.budget_s:g} s: give a positive time, e.g. 30m or 2h")
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"--trials {self.trials}: use at least 1")


@dataclass(frozen=True)
class Trial:
    number: int  # from 0; 0 is the study's defaults
    run: str
    params: dict  # the searched settings of this trial
    value: float  # validation NDCG@10 of the run's best epoch
    best_epoch: int
    epochs_done: int
    wall_s: float  # training time charged to the budget (the recorded one for a reused run)
    reused: bool
    repeat_of: int | None = None  # an earlier trial with the same settings (nothing trained)
    state: str = "complete"  # complete, pruned (stopped early by the pruner) or failed (the loss diverged)
    reports: dict = field(default_factory=dict)  # validation NDCG@10 after each epoch trained, by epoch


@dataclass(frozen=True)
class TuneResult:
    dataset: str
    model: str
    feedback: str
    seed: int
    budget_s: float
    spent_s: float
    stopped: str  # why no further trial started
    valid_sessions: int  # the validation sessions every trial and baseline was scored on
    trials: list[Trial]
    baselines: dict  # model -> {"run", "value"}
    base: dict  # the settings every trial shares and the search leaves alone (the study's, then --set)
    fixed: dict  # the settings given with --set
    path: str  # the record written under the workspace

    @property
    def best(self) -> Trial:
        """The complete trial with the best validation NDCG@10 (the earliest of equals)."""
        pool = [t for t in self.trials if t.state == "complete"] or self.trials
        return max(pool, key=lambda t: (t.value, -t.number))

    @property
    def default(self) -> Trial:
        return self.trials[0]

    def to_json(self) -> dict:
        out = asdict(self)
        out["best"] = self.best.number if self.trials else None
        return out


def base_settings(cfg: TuneConfig) -> dict:
    """What every trial shares before the search: the study's settings for the model, then ``fixed``."""
    settings = {**SMALL, **cfg.fixed}
    if cfg.model == "bert4rec":  # no 'before' for the repeat head to read (as in the study)
        settings.update(NO_REPEAT_HEAD)
    return settings


def base_config(ws: Workspace, cfg: TuneConfig) -> tuple[TrainConfig, Manifest]:
    """``base_settings`` as the run config of the dataset (default: the latest), and its manifest (read
    once: a one-line error for a missing or damaged dataset before any training, and every trial's run id)."""
    dataset = cfg.dataset or latest_dataset(ws)
    manifest = read_manifest(ws.dataset(dataset))
    return TrainConfig(dataset=dataset, model=cfg.model, feedback=cfg.feedback, seed=cfg.seed,
                       **base_settings(cfg)), manifest


def searched(base: TrainConfig, fixed: dict) -> tuple[Dimension, ...]:
    """The dimensions that apply to ``base`` and that ``fixed`` leaves open."""
    return tuple(d for d in SPACE if d.name not in fixed and d.needs(base))


def tune(ws: Workspace, cfg: TuneConfig, progress: Progress | None = None) -> TuneResult:
    """Train trials until the budget or ``cfg.trials`` is spent; write and return the record."""
    import optuna

    say = progress or (lambda _event: None)
    base, manifest = base_config(ws, cfg)
    space = searched(base, cfg.fixed)
    baselines = {}
    for model in BASELINES:  # seconds each; the same validation sessions as every trial
        # what the repeat head reads too: the rule the trials must beat reads the same past
        reads = {"successors": base.successors, "window": base.window} if model == "repeat" else {}
        ref = TrainConfig(dataset=base.dataset, model=model, seed=base.seed, history=base.history,
                          valid_sessions=base.valid_sessions, **reads)
        res = train(ws, ref)
        baselines[model] = {"run": res.id, "value": float(res.valid[METRIC]),
                            "sessions": int(res.valid.get("n_sessions", 0))}
    say("count baselines on the same validation sessions: "
        + ", ".join(f"{m} {b['value']:.4f}" for m, b in baselines.items()))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=4, multivariate=True)
    # a trial whose validation after an epoch is below the median of the earlier trials' after the same
    # epoch stops there: more trials in the budget, and the ones stopped are rarely the best
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER)
    search = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    search.enqueue_trial({d.name: getattr(base, d.name) for d in space})  # trial 0: the defaults
    path = record_path(ws, base)
    stopped_before = _stopped_trials(path)  # pruned or diverged trials of an earlier search, by run id
    trials: list[Trial] = []
    seen: dict[tuple, int] = {}
    spent, repeats, stopped = 0.0, 0, ""
    while True:
        if cfg.trials is not None and len(trials) >= cfg.trials:
            stopped = f"{cfg.trials} trial{'s' if cfg.trials != 1 else ''} done"
            break
        charged = [t.wall_s for t in trials if t.repeat_of is None]
        if spent >= cfg.budget_s or (charged and spent + sum(charged) / len(charged) > cfg.budget_s):
            stopped = "budget spent" if spent >= cfg.budget_s else "no time left for another trial"
            break
        if repeats >= REPEATS_IN_A_ROW:
            stopped = "the search proposed only settings already tried"
            break
        trial = search.ask()
        # floats to 3 significant digits: a trial's command line then names its run exactly
        params = {d.name: _round(d.suggest(trial)) for d in space}
        key = tuple(sorted(params.items()))
        if key in seen:  # nothing to train: the earlier trial's outcome again, at no cost
            earlier = trials[seen[key]]
            _tell(search, trial, earlier)
            trials.append(replace(earlier, number=len(trials), wall_s=0.0, reused=True, repeat_of=earlier.number))
            repeats += 1
            continue
        repeats = 0
        say(f"trial {len(trials) + 1}: " + ", ".join(f"{k}={show_setting(v)}" for k, v in params.items())
            + f" ({_minutes(max(cfg.budget_s - spent, 0))} of the budget left)")
        done = _run_trial(ws, manifest, replace(base, **params), trial, len(trials), params, stopped_before, say)
        _tell(search, trial, done)
        seen[key] = len(trials)
        trials.append(done)
        spent += done.wall_s
        # an interrupted search keeps its stops (pruned trials are not finished runs)
        write_json(path, _record(cfg, base, space, trials, baselines, spent, "", path).to_json())
        how = {"pruned": f", stopped after epoch {done.epochs_done}: below the median", "failed": ", diverged"}
        say(f"trial {len(trials)}: valid NDCG@10 {done.value:.4f} (best so far "
            f"{max(t.value for t in trials):.4f})" + how.get(done.state, "")
            + (", already trained: reused" if done.reused else ""))
    result = _record(cfg, base, space, trials, baselines, spent, stopped, path)
    write_json(path, result.to_json())
    return result


class _Pruned(Exception):
    """Raised from a trial's progress when the pruner stops it (the run stays checkpointed)."""


def _run_trial(ws: Workspace, manifest: Manifest, run_cfg: TrainConfig, trial, number: int, params: dict,
               stopped_before: dict, say: Progress) -> Trial:
    """Train one trial (or take its stop from an earlier search), reporting each epoch to the pruner."""
    run = run_of(ws, manifest, run_cfg)
    if run.id in stopped_before:  # stopped by an earlier search: the same stop, without training on
        return replace(Trial(**stopped_before[run.id]), number=number, reused=True)
    reports = {row["epoch"]: row[f"valid_{METRIC}"] for row in read_metrics(run)}
    for epoch, value in reports.items():  # a finished or resumed run's epochs, as a live run reports them
        trial.report(value, epoch)

    def watch(ev) -> None:
        say(ev)
        if isinstance(ev, TrainProgress) and ev.phase == "epoch" and ev.epoch not in reports:
            reports[ev.epoch] = ev.valid[METRIC]
            trial.report(ev.valid[METRIC], ev.epoch)
            if ev.epoch + 1 < ev.epochs and ev.bad_epochs < ev.patience and trial.should_prune():
                raise _Pruned()

    t0 = time.perf_counter()
    try:
        res = train(ws, run_cfg, watch)
    except (_Pruned, TrainingDiverged) as exc:
        state = "pruned" if isinstance(exc, _Pruned) else "failed"
        best = max(reports.values(), default=0.0) if state == "pruned" else 0.0
        return Trial(number=number, run=run.id, params=params, value=best,
                     best_epoch=max(reports, key=reports.get, default=0), epochs_done=len(reports),
                     wall_s=time.perf_counter() - t0, reused=False, state=state, reports=reports)
    value = float(res.valid[METRIC])
    return Trial(number=number, run=res.id, params=params, value=value if math.isfinite(value) else 0.0,
                 best_epoch=res.best_epoch, epochs_done=res.epochs_done,
                 wall_s=float(res.wall_s),  # recorded, so a resumed search charges a reused trial what it cost then
                 reused=res.reused, reports=reports)


def _tell(search, trial, done: Trial) -> None:
    from optuna.trial import TrialState

    if done.state == "complete":
        search.tell(trial, done.value)
    else:
        if done.repeat_of is not None or done.reused:  # a stop taken from before: its epochs, as they were
            for epoch, value in done.reports.items():
                trial.report(value, int(epoch))
        search.tell(trial, state=TrialState.PRUNED if done.state == "pruned" else TrialState.FAIL)


def _stopped_trials(path: Path) -> dict[str, dict]:
    """The pruned and diverged trials of the search recorded at ``path`` (none if absent or unreadable)."""
    try:
        data = read_json(path)
        return {t["run"]: {**t, "reports": {int(k): v for k, v in t["reports"].items()}}
                for t in data["trials"] if t.get("state") in ("pruned", "failed") and t.get("repeat_of") is None}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, DamagedArtifactError):
        return {}


def _record(cfg: TuneConfig, base: TrainConfig, space, trials: list[Trial], baselines: dict, spent: float,
            stopped: str, path: Path) -> TuneResult:
    """The search as it stands (written after each trial, and at the end with why it stopped)."""
    return TuneResult(dataset=base.dataset, model=base.model, feedback=base.feedback, seed=base.seed,
                      budget_s=cfg.budget_s, spent_s=spent, stopped=stopped,
                      valid_sessions=max((b["sessions"] for b in baselines.values()), default=0),
                      trials=list(trials), baselines=baselines, fixed=dict(cfg.fixed),
                      base={k: v for k, v in base_settings(cfg).items() if k not in {d.name for d in space}},
                      path=str(path))


def record_path(ws: Workspace, base: TrainConfig) -> Path:
    return ws.root / "tunes" / f"{base.dataset}-{base.model}-{base.feedback.replace('+', '_')}-s{base.seed}.json"


def command_for(result: TuneResult, trial: Trial, command: str = "train") -> str:
    """The ``toolkit train`` (or ``study``) command line with a trial's settings."""
    if command == "study":  # the study sets model, feedback and seed itself, over its own settings
        head = f"toolkit study --dataset {result.dataset}"
        plain = TrainConfig()
        settings = {**result.fixed, **{k: v for k, v in trial.params.items() if SMALL.get(k, getattr(plain, k)) != v}}
    else:
        head = f"toolkit train --dataset {result.dataset} --model {result.model} --feedback {result.feedback}"
        settings = {**result.base, **trial.params}
        if result.seed:
            head += f" --seed {result.seed}"
    return head + "".join(f" --set {k}={show_setting(v)}" for k, v in settings.items())


def _round(value):
    return float(f"{value:.3g}") if isinstance(value, float) else value


def show_setting(value) -> str:
    """A setting as ``--set`` reads it back (floats are already rounded to 3 significant digits)."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def parse_budget(text: str) -> float:
    """'90s', '30m', '2h', '1h30m' or plain seconds, as seconds; a one-line error otherwise."""
    import re

    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?(?:(\d+(?:\.\d+)?)s)?", t)
    if not t or parts is None or not any(parts.groups()):
        raise ConfigError(f"--budget {text}: give a time such as 30m, 2h, 1h30m or 600s")
    h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    return h * 3600 + m * 60 + s
