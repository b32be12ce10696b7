"""Which runs form one group (they differ only by seed), what the group is called, and which
group the others are compared against.

A group's key is ``model / feedback``, plus the settings that differ between the report's groups
of the same model, e.g. ``sasrec / all (d_model=64)``; settings every neural run shares are shown
once, in the protocol.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from toolkit.config import NEURAL, NOT_GROUPING, TrainConfig, group_labels
from toolkit.errors import ConfigError
from toolkit.runs import RunRecord

def options(cfg: TrainConfig) -> dict:
    """The settings that can matter for this kind of run (e.g. alpha only for contrastive ones)."""
    return {name: getattr(cfg, name) for name in relevant_options(cfg)}


def relevant_options(cfg: TrainConfig) -> list[str]:
    return group_labels(cfg)  # each setting declares whether it labels groups (toolkit/config.py)


def group_identity(cfg: TrainConfig) -> str:
    """Runs with the same identity differ only by seed (or device): they are one group."""
    d = {k: v for k, v in asdict(cfg).items() if k not in NOT_GROUPING}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class RunGroup:
    """Runs that differ only by seed, in seed order, and the options their key names."""

    key: str
    runs: tuple[RunRecord, ...]
    options: dict  # the settings that tell this group from the report's other groups of its model

    @property
    def config(self) -> TrainConfig:
        """The settings the group's runs share (all but the seed): its first run's."""
        return self.runs[0].config


def group_runs(runs: list[RunRecord]) -> dict[str, RunGroup]:
    """Runs that differ only by seed, keyed ``model / feedback (options)``, where the options are
    the settings that differ between this report's groups of the same model (shared ones go in the
    protocol)."""
    by_identity: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_identity.setdefault(group_identity(run.config), []).append(run)
    opts = {i: options(m[0].config) for i, m in by_identity.items()}
    model_of = {i: m[0].config.model for i, m in by_identity.items()}
    varying = {(model_of[i], name) for i, o in opts.items() for name in o
               if len({json.dumps(p.get(name)) for j, p in opts.items()
                       if name in p and model_of[j] == model_of[i]}) > 1}
    # a setting only some of a model's groups read (the skip term's context or alpha) is named where it
    # is not the default, even when one group alone has it: the protocol lists only what all share
    carried_by_all = {m: set.intersection(*(set(o) for i, o in opts.items() if model_of[i] == m))
                      for m in set(model_of.values())}
    default = TrainConfig()
    out: dict[str, RunGroup] = {}
    for identity, members in sorted(by_identity.items(), key=lambda kv: _order(kv[1][0].config)):
        cfg = members[0].config
        shown = {k: v for k, v in opts[identity].items() if (cfg.model, k) in varying
                 or (k not in carried_by_all[cfg.model] and v != getattr(default, k))}
        key = f"{cfg.model} / {cfg.feedback}" + (" (" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"
                                                 if shown else "")
        if key in out:  # same display key, other settings: keep them apart
            key = f"{key} [{identity[:6]}]"
        out[key] = RunGroup(key, tuple(sorted(members, key=lambda r: r.config.seed)), shown)
    return out


def shared_settings(runs: list[RunRecord]) -> dict:
    """Non-default settings every neural run of the report shares (shown once, in the protocol)."""
    neural = [options(r.config) for r in runs if r.config.model in NEURAL]
    if not neural:
        return {}
    default = TrainConfig()
    return {k: v for k, v in neural[0].items()
            if v != getattr(default, k) and all(k in o and o[k] == v for o in neural)}


def _order(cfg: TrainConfig) -> tuple:
    models = ("pop", "markov", "repeat", "sknn", "sasrec", "bert4rec", "gru4rec")
    return (models.index(cfg.model), cfg.feedback != "all", cfg.feedback != "positives-only", cfg.feedback,
            json.dumps(asdict(cfg), sort_keys=True))


def baseline_key(asked: str | None, groups: dict[str, RunGroup]) -> str | None:
    """The group named by --baseline (``asked``; a unique prefix will do), else the one SASRec group
    trained on every play (failing that BERT4Rec, then GRU4Rec), when there is exactly one and
    something to compare it with."""
    if asked is not None:
        hits = [k for k in groups if k == asked] or [k for k in groups if k.startswith(asked)]
        if len(hits) != 1:
            raise ConfigError(f"--baseline {asked!r} matches {len(hits)} groups; choose one of: "
                              f"{'; '.join(groups)}")
        return hits[0]
    for model in ("sasrec", "bert4rec", "gru4rec"):
        hits = [k for k, g in groups.items() if g.config.model == model and g.config.feedback == "all"]
        if len(hits) == 1 and len(groups) > 1:
            return hits[0]
    return None


def second_baseline(groups: dict[str, RunGroup], baseline: str | None) -> str | None:
    """SASRec trained without skipped plays, when the report has it beside another baseline: the
    skip-aware claims are only as good as their margin over it (the harder skip-blind baseline)."""
    hits = [k for k, g in groups.items() if g.config.model == "sasrec" and g.config.feedback == "positives-only"]
    return hits[0] if baseline is not None and len(hits) == 1 and hits[0] != baseline else None
