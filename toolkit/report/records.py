"""The report as typed records: what ``build_report`` assembles and what ``--json`` prints.

A ``Report`` holds its ``Group`` rows (one per group of runs that differ only by seed), its
``Comparison`` rows (paired differences against a baseline group) and its ``Verdict``.  The
sections that are read only to be shown (the dataset summary, the protocol, the runs with their
training curves) stay JSON objects.  ``to_dict`` is the JSON form, key for key what the report has
always printed; ``from_dict`` reads that form back and checks it once, so a report file that does
not fit fails on one line naming the file, not three modules later on a missing key.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from toolkit.artifacts import read_json
from toolkit.errors import InputError


@dataclass(frozen=True)
class Comparison:
    """One paired difference, ``group`` minus ``baseline`` on ``metric``, with its bootstrap interval."""

    group: str
    baseline: str
    metric: str
    unit: str  # what the bootstrap resampled: listeners or sessions
    diff: float
    lo: float
    hi: float
    n_units: int  # how many listeners or sessions it resampled
    excludes_zero: bool

    @property
    def key(self) -> tuple[str, str, str]:
        return self.group, self.baseline, self.metric


@dataclass(frozen=True)
class Group:
    """Runs that differ only by seed: every metric's mean and interval over the seeds, and what the
    plots draw (the HR@k curve, the histogram of ranks)."""

    key: str  # "model / feedback (options)": the name the tables, plots and comparisons use
    model: str
    feedback: str
    options: dict  # the settings that tell it from the report's other groups of its model
    runs: list[str]  # run ids, in seed order
    seeds: list[int]
    n_sessions: int
    n_pos: int  # queries whose next play was kept
    n_skip: int  # queries whose next play was skipped
    metrics: dict  # metric -> {"mean", "lo", "hi", "values"} (statistics.seed_interval)
    hr_curve: dict  # {"k": [...], "hr": [...]}
    rank_hist: dict  # {"edges", "seeds", "pos", "skip"[, "pos_cold"]}

    def mean(self, metric: str) -> float:
        return (self.metrics.get(metric) or {}).get("mean", math.nan)


@dataclass(frozen=True)
class Verdict:
    """The best group by the primary metric and the paired differences that say by how much."""

    metric: str
    best: str
    best_mean: float
    runner_up: str | None
    vs_runner_up: Comparison | None
    best_count: str | None
    vs_best_count: Comparison | None
    best_neural: str | None
    neural_vs_count: Comparison | None


@dataclass(frozen=True)
class Report:
    title: str
    generated: str  # "YYYY-MM-DD HH:MM UTC"
    toolkit_version: str
    dataset: dict  # the dataset summary: sizes, skip share, split and its diagnostics, session lengths
    protocol: dict  # Protocol's fields and what they came to: baselines, catalogue, resampled unit, note
    metrics: list[str]
    lower_is_better: list[str]
    groups: list[Group]
    comparisons: list[Comparison]
    verdict: Verdict | None
    runs: list[dict]  # one per run: id, group, seed, status, epochs, wall time, training curve, test metrics

    def to_dict(self) -> dict:
        """The JSON form (``toolkit report --json``), in the order the fields are declared."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data, source: str = "report") -> Report:
        """``data`` (a parsed report) as a Report; ``source`` names it in the one-line error."""
        try:
            verdict = data["verdict"]
            return cls(**{**_fields_of(cls, data),
                          "groups": [Group(**_fields_of(Group, g)) for g in data["groups"]],
                          "comparisons": [_comparison(c) for c in data["comparisons"]],
                          "verdict": None if verdict is None else Verdict(**{
                              **_fields_of(Verdict, verdict),
                              **{k: None if verdict[k] is None else _comparison(verdict[k])
                                 for k in ("vs_runner_up", "vs_best_count", "neural_vs_count")}})})
        except (KeyError, TypeError) as exc:
            what = f"lacks {exc}" if isinstance(exc, KeyError) else "is not a report's layout"
            raise InputError(f"{source}: {what}; write it again with `toolkit report --json` or `--out FILE.json`") \
                from exc


def _fields_of(cls, data: dict) -> dict:
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} is not an object")
    return {f.name: data[f.name] for f in fields(cls)}


def _comparison(data: dict) -> Comparison:
    return Comparison(**_fields_of(Comparison, data))


def read_report(path: Path) -> Report:
    """A report written as JSON (``toolkit report --json > FILE`` or ``--out FILE.json``), checked once."""
    return Report.from_dict(read_json(path), str(path))
