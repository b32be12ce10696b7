"""``toolkit report``: score finished runs on the test split and compare them honestly.

Read top to bottom: pick the runs (one dataset only), score each one's best checkpoint on every
query of the test split against the whole catalogue (``toolkit/evaluate.py``, the same path as
validation), group runs that differ only by seed, and put numbers on the differences:

* per group, the mean over seeds and a 95 % t-interval across seeds (none with one seed);
* per group against the baseline group, a paired two-level bootstrap: the units the data is
  independent in are resampled with replacement (both groups on the same resample, so the
  interval is that of the difference itself) and each group's seeds are resampled too, so seed
  luck widens it.  The units are listeners, each with all of their test sessions, when the log has
  listeners (one listener's sessions are alike, so resampling sessions would pretend there is
  more independent evidence than there is), else sessions.

Per-query outcomes are cached beside each run (``eval-<protocol>.npz``), so a second report, or a
study that adds runs, scores only what is new.  The result is a plain dictionary that
``toolkit/render.py`` turns into Markdown, HTML or JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone

import duckdb
import numpy as np
import torch

from toolkit import __version__, metrics, splits
from toolkit.artifacts import (
    Workspace,
    atomic_path,
    load_torch,
    read_json,
    read_manifest,
    read_metrics,
    run_dir,
)
from toolkit.config import NEURAL, RESAMPLE, SCORED_SPLITS, ModelConfig, TrainConfig
from toolkit.data import load_split, train_counts
from toolkit.errors import ArtifactMissingError, ConfigError
from toolkit.identity import BadNameError, StaleRunError, build_of, check_name, run_is_stale, stale_message
from toolkit.evaluate import POSITIONS, QueryResults, evaluate, query_mask, run_queries, summarize
from toolkit.model import SeqRec
from toolkit.scorers import KeepRateScorer, NeuralScorer
from toolkit.train import build_baseline, latest_dataset, pick_device

EVAL_VERSION = 2  # bump when the per-query outcomes change meaning (invalidates the caches)
METRICS = ("hr@1", "hr@5", "hr@10", "hr@20", "ndcg@10", "ndcg@20", "mrr@10", "skip_hr@10", "skip_mrr@10",
           "delta_hr@10", "auc", "auc_seen", "coverage@10", "pop_pct@10", "overlap@10")
LOWER_IS_BETTER = ("skip_hr@10", "skip_mrr@10")
PRIMARY = "ndcg@10"  # the metric the verdict ranks groups by
# metrics with a paired bootstrap: (metric, which queries, per-query value)
PAIRED = ("ndcg@10", "hr@10", "mrr@10", "skip_hr@10", "auc", "auc_seen")
HR_CURVE_KS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100)
# config fields that never change what a run is, so runs differing only in them form one group
NOT_GROUPING = {"seed", "dataset", "device", "compile", "negatives_on"}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Protocol:
    split: str = "test"  # the split scored: test (the report) or valid
    positions: str = "all"  # all: every position with a known next play; last: the last kept play per session
    exclude_played: bool = False  # remove tracks already played in the session from the ranking
    baseline: str | None = None  # group key to compare against; None: 'sasrec / all' when present
    bootstrap: int = 1000  # paired bootstrap replicates
    seed: int = 0  # bootstrap seed
    # what the bootstrap resamples: listeners (with all their sessions), sessions, or auto (listeners
    # when the log has them: more than one, and not one per session)
    resample: str = "auto"
    allow_unfinished: bool = False  # score an unfinished run's best checkpoint instead of refusing

    def __post_init__(self) -> None:
        if self.split not in SCORED_SPLITS:
            raise ConfigError(f"--split {self.split}: choose {' or '.join(SCORED_SPLITS)}")
        if self.positions not in POSITIONS:
            raise ConfigError(f"--positions {self.positions}: choose {' or '.join(POSITIONS)}")
        if self.bootstrap < 100:
            raise ConfigError(f"--bootstrap {self.bootstrap}: use at least 100 replicates")
        if self.resample not in RESAMPLE:
            raise ConfigError(f"--resample {self.resample}: choose {', '.join(RESAMPLE)}")

    def cache_key(self) -> str:
        return f"{self.split}-{self.positions}-{'excl' if self.exclude_played else 'incl'}-v{EVAL_VERSION}"


# ---------------------------------------------------------------------------------------------
# which runs


def select_runs(ws: Workspace, ids: list[str], dataset: str | None, allow_unfinished: bool) -> list[dict]:
    """The runs to report: the given ids, else every finished run of ``dataset`` (default: latest).

    Each entry is ``{"id", "dir", "config": TrainConfig, "result": dict | None}``.
    """
    if dataset is not None:
        ws.dataset(dataset)  # a dataset name, not a path, before anything is read
    if ids:
        chosen = [_load_run(ws, i) for i in ids]
    else:
        name = dataset or latest_dataset(ws)
        runs_root = ws.root / "runs"
        found = sorted(p.name for p in runs_root.iterdir()
                       if check_name_ok(p.name) and (p / "config.json").exists()) if runs_root.exists() else []
        mine = [r for r in (_load_run(ws, i) for i in found) if r["config"].dataset == name and r["finished"]]
        # runs of an earlier build of the dataset are not its runs any more: left out, and named if none is left
        chosen = [r for r in mine if not _is_stale(ws, r)]
        if not chosen:
            stale = f" ({len(mine)} stale: trained on an earlier build; retrain with `toolkit train --resume ID`)" \
                if mine else ""
            raise ArtifactMissingError(f"dataset {name}: no finished runs to report{stale}; train some with "
                                       f"`toolkit train --dataset {name}` (or `toolkit study`)")
    unfinished = [r["id"] for r in chosen if not r["finished"]]
    if unfinished and not allow_unfinished:
        raise ConfigError(f"run(s) {', '.join(unfinished)} did not finish; resume with `toolkit train --resume ID`, "
                          "or pass --allow-unfinished to score their best checkpoint so far")
    for r in chosen:
        if r["config"].model in NEURAL and not r["dir"].best.exists():
            raise ArtifactMissingError(f"run {r['id']} has no best checkpoint yet (it ended before its first "
                                       "evaluation); resume it with `toolkit train --resume ID`")
    names = sorted({r["config"].dataset for r in chosen})
    if len(names) > 1:
        raise ConfigError(f"the runs come from different datasets ({', '.join(names)}); report one dataset at a "
                          "time (pass --dataset NAME, or only that dataset's run ids)")
    if dataset and names[0] != dataset:
        raise ConfigError(f"the runs were trained on {names[0]}, not on --dataset {dataset}")
    for r in chosen:
        if _is_stale(ws, r):
            raise StaleRunError(stale_message(r["id"], names[0]))
    return chosen


def check_name_ok(text: str) -> bool:
    try:
        check_name(text, "run")
    except BadNameError:
        return False
    return True


def _is_stale(ws: Workspace, run: dict) -> bool:
    """Whether the run was trained on another build than its dataset's current one (``identity``)."""
    return run_is_stale(run["recorded"], read_manifest(ws.dataset(run["config"].dataset)).to_json())


def _load_run(ws: Workspace, run_id: str) -> dict:
    run = run_dir(ws, run_id)
    if not run.config.exists():
        raise ArtifactMissingError(f"unknown run {run_id!r} in {ws.root}; `toolkit runs` lists the runs")
    recorded = read_json(run.config)
    saved = recorded["train"]
    known = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in known})  # settings since removed are ignored
    result = read_json(run.result) if run.result.exists() else None
    finished = bool(result) and result.get("status") == "finished"
    return {"id": run_id, "dir": run, "config": cfg, "result": result, "finished": finished,
            "recorded": {k: v for k, v in recorded.items() if k != "train"}}


# ---------------------------------------------------------------------------------------------
# scoring


def scorer_for(ws: Workspace, run: dict, device: torch.device):
    """The ranking function of a run: its best checkpoint, or the baseline's counts."""
    cfg: TrainConfig = run["config"]
    ds = ws.dataset(cfg.dataset)
    manifest = read_manifest(ds)
    if cfg.model not in NEURAL:
        return build_baseline(ds, manifest, cfg)
    best = load_torch(run["dir"].best)
    model = SeqRec(ModelConfig(**best["model_config"])).to(device)
    model.load_state_dict(best["model"])
    model.eval()
    return NeuralScorer(model, "positives-only" in cfg.modes)


def score_run(ws: Workspace, run: dict, protocol: Protocol, device: torch.device) -> QueryResults:
    """Per-query outcomes of one run, from the cache when its checkpoint has not changed."""
    cfg: TrainConfig = run["config"]
    ds = ws.dataset(cfg.dataset)
    manifest = read_manifest(ds).to_json()
    stamp = _checkpoint_stamp(run, manifest)
    cache = run["dir"].path / f"eval-{protocol.cache_key()}.npz"
    if cache.exists():
        with np.load(cache) as z:
            if str(z["stamp"]) == stamp and all(fld.name in z.files for fld in fields(QueryResults)):
                return QueryResults(**{fld.name: z[fld.name] for fld in fields(QueryResults)})
    split = load_split(ds, protocol.split, cfg.history, cfg.successors)
    if len(split) == 0:
        raise ArtifactMissingError(f"dataset {cfg.dataset} has an empty {protocol.split} split; prepare it with "
                                   "a larger --test-frac / --valid-frac")
    q = run_queries(scorer_for(ws, run, device), split, device, last_only=manifest["split_mode"] == "last",
                    n_items=manifest["items"], positions=protocol.positions, exclude_played=protocol.exclude_played)
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.savez(f, stamp=np.array(stamp), **{fld.name: getattr(q, fld.name) for fld in fields(QueryResults)})
    return q


def _checkpoint_stamp(run: dict, manifest: dict) -> str:
    """What the cached outcomes depend on: the dataset content and the scored weights."""
    best = run["dir"].best
    weights = f"{best.stat().st_size}-{best.stat().st_mtime_ns}" if best.exists() else "counts"
    # the input fingerprint alone for datasets that keep their first run ids (their build never
    # changes, and their caches stay valid); the whole build for the others
    data = build_of(manifest) if manifest.get("run_ids") == "build" else manifest["fingerprint"]
    return f"{data}-{weights}"


# ---------------------------------------------------------------------------------------------
# grouping and statistics


def _options(cfg: TrainConfig) -> dict:
    """The settings that can matter for this kind of run (e.g. alpha only for contrastive ones)."""
    return {name: getattr(cfg, name) for name in _relevant_options(cfg)}


def _relevant_options(cfg: TrainConfig) -> list[str]:
    if cfg.model not in NEURAL:
        return ["history", "successors"] if cfg.model == "repeat" else []
    out = ["history", "successors", "target", "loss", "negatives", "sampler", "sampler_beta", "d_model", "n_layers", "n_heads", "dropout",
           "epochs", "batch_size", "lr", "weight_decay", "warmup_steps", "lr_schedule", "grad_clip", "patience",
           "max_steps", "valid_sessions", "repeat_head", "amp", "exclude_played"]
    if "contrastive" in cfg.modes:
        out += ["alpha", "tau", "context", "skip_negatives"]
    if "negative-target" in cfg.modes:
        out += ["neg_weight"]
    if cfg.model == "bert4rec":
        out += ["mask_prob"]
    return out


def group_identity(cfg: TrainConfig) -> str:
    """Runs with the same identity differ only by seed (or device): they are one group."""
    d = {k: v for k, v in asdict(cfg).items() if k not in NOT_GROUPING}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


# two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom (standard tables)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def seed_interval(values: list[float]) -> dict:
    """Mean and 95 % t-interval over seeds; the interval is NaN with fewer than two finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "values": list(values)}
    mean = float(v.mean())
    if v.size < 2:
        return {"mean": mean, "lo": math.nan, "hi": math.nan, "values": list(values)}
    t = _T975[v.size - 2] if v.size - 1 <= len(_T975) else 1.96
    half = t * float(v.std(ddof=1)) / math.sqrt(v.size)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "values": list(values)}


def per_query_values(q: QueryResults, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, kept) of a bootstrapped metric: one value per query, and which queries count."""
    if metric == "skip_hr@10":
        return metrics.hit_at_k(q.rank, 10), q.skipped
    if metric in ("auc", "auc_seen"):
        v = getattr(q, metric)
        return np.nan_to_num(v), ~q.skipped & np.isfinite(v)
    fn = {"ndcg@10": metrics.ndcg_at_k, "hr@10": metrics.hit_at_k, "mrr@10": metrics.mrr_at_k}[metric]
    return fn(q.rank, 10), ~q.skipped


def session_sums(results: list[QueryResults], metric: str, sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per run (row) and session of ``sessions`` (column): the metric summed over the session's
    queries, and the number of queries per session.  Every run of a group has the same queries."""
    total = np.zeros((len(results), len(sessions)))
    count = np.zeros(len(sessions))
    for r, q in enumerate(results):
        values, kept = per_query_values(q, metric)
        where = np.searchsorted(sessions, q.session[kept])
        total[r] = np.bincount(where, weights=values[kept], minlength=len(sessions))
        count = np.bincount(where, minlength=len(sessions)).astype(np.float64)  # equal for every run
    return total, count


def by_unit(sums: tuple[np.ndarray, np.ndarray], units: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``session_sums`` output with the session columns added up per resampling unit: ``units[i]``
    is the unit (listener code 0..U-1) of session column i; None keeps sessions as the units."""
    if units is None:
        return sums
    total, count = sums
    total = np.atleast_2d(total)
    n_units = int(units.max(initial=-1)) + 1
    out = np.stack([np.bincount(units, weights=row, minlength=n_units) for row in total])
    return out, np.bincount(units, weights=count, minlength=n_units)


def paired_bootstrap(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], replicates: int,
                     seed: int, level: float = 0.95) -> dict:
    """Difference of seed-averaged per-query means (a − b), with a two-level bootstrap interval.

    ``a`` and ``b`` are ``(sums, counts)`` from ``session_sums`` over the same sessions (or added up
    per listener by ``by_unit``; "sessions" below are then listeners): sums has one
    row per seed (a 1-D array is one seed).  Each replicate resamples the sessions with replacement
    (both groups on the same sessions: the pairing) and, independently for each group, its seeds
    with replacement; a group's value is the mean over its drawn seeds.  So the interval covers both
    which sessions were tested and which seeds were trained; with one seed per group it is the plain
    paired bootstrap over sessions.  Returns the point difference, the percentile interval and the
    number of sessions used.
    """
    (sa, na), (sb, nb) = a, b
    sa, sb = np.atleast_2d(sa), np.atleast_2d(sb)
    if not np.array_equal(na, nb):
        raise ValueError("paired groups must have the same queries per session")
    used = na > 0
    sa, sb, n = sa[:, used], sb[:, used], na[used]
    if n.sum() == 0:
        return {"diff": math.nan, "lo": math.nan, "hi": math.nan, "n_sessions": 0}
    diff = float(sa.mean(axis=0).sum() / n.sum() - sb.mean(axis=0).sum() / n.sum())
    rng = np.random.default_rng([seed, 11])
    reps = np.empty(replicates)
    step = max(1, 2**22 // max(len(n) * max(len(sa), len(sb)), 1))  # bounded memory
    for lo in range(0, replicates, step):
        k = min(step, replicates - lo)
        idx = rng.integers(0, len(n), size=(k, len(n)))
        denom = np.maximum(n[idx].sum(axis=1), 1)
        per_seed_a = sa[:, idx].sum(axis=2)  # (seeds, k): each seed scored on each session resample
        per_seed_b = sb[:, idx].sum(axis=2)
        pick_a = rng.integers(0, len(sa), size=(k, len(sa)))
        pick_b = rng.integers(0, len(sb), size=(k, len(sb)))
        cols = np.arange(k)[:, None]
        reps[lo : lo + k] = (per_seed_a[pick_a, cols].mean(axis=1) - per_seed_b[pick_b, cols].mean(axis=1)) / denom
    tail = (1 - level) / 2 * 100
    lo_v, hi_v = np.percentile(reps, [tail, 100 - tail])
    return {"diff": diff, "lo": float(lo_v), "hi": float(hi_v), "n_sessions": int(used.sum())}


# ---------------------------------------------------------------------------------------------
# the report


def build_report(ws: Workspace, ids: list[str], protocol: Protocol, dataset: str | None = None,
                 device: str = "auto", progress: Progress | None = None) -> dict:
    """Score the runs and assemble the report dictionary (see ``toolkit/render.py`` for its layout)."""
    say = progress or (lambda _msg: None)
    runs = select_runs(ws, ids, dataset, protocol.allow_unfinished)
    name = runs[0]["config"].dataset
    ds = ws.dataset(name)
    manifest = read_manifest(ds).to_json()
    dev = pick_device(device)
    results: dict[str, QueryResults] = {}
    for i, run in enumerate(runs, 1):
        say(f"scoring {run['id']} ({i}/{len(runs)}) on {protocol.split}")
        results[run["id"]] = score_run(ws, run, protocol, dev)
    popularity = metrics.popularity_percentile(train_counts(load_split(ds, "train"), manifest["items"]))
    groups = _groups(runs)
    settings = shared_settings(runs)
    all_sessions = np.unique(np.concatenate([q.session for q in results.values()]))
    units, unit_name = resampling_units(ds, all_sessions, protocol.resample)
    summaries = {i: summarize(q, manifest["items"], popularity) for i, q in results.items()}
    baseline = _baseline_key(protocol, groups)
    cold = cold_targets(ds, manifest, protocol, next(iter(results.values())))
    group_rows = [_group_row(key, members, results, summaries, manifest["items"], cold)
                  for key, members in groups.items()]

    def paired(key: str, base_key: str, metric: str) -> dict:
        mine = [results[r["id"]] for r in groups[key]]
        base = [results[r["id"]] for r in groups[base_key]]
        pb = paired_bootstrap(by_unit(session_sums(mine, metric, all_sessions), units),
                              by_unit(session_sums(base, metric, all_sessions), units),
                              protocol.bootstrap, protocol.seed)
        pb["n_units"] = pb.pop("n_sessions")
        return {"group": key, "baseline": base_key, "metric": metric, "unit": unit_name, **pb,
                "excludes_zero": bool(pb["lo"] > 0 or pb["hi"] < 0)}

    comparisons = []
    baselines = [b for b in (baseline, _second_baseline(groups, baseline)) if b is not None]
    for i, b in enumerate(baselines):
        say("paired bootstrap against " + b)
        # the main baseline against the second one is the second's row against the main one, negated
        comparisons += [paired(key, b, metric) for key in groups if key not in baselines[: i + 1]
                        for metric in PAIRED]
    verdict = _verdict(group_rows, paired)
    return {
        "title": f"Skip-aware next-track recommendation: {name}",
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "toolkit_version": __version__,
        "dataset": {**_dataset_summary(ds, manifest), "track_skip_auc": track_skip_signal(ds, manifest, protocol, dev)},
        "protocol": {**{k: v for k, v in asdict(protocol).items() if k != "allow_unfinished"},
                     "baseline": baseline, "baselines": baselines, "catalogue": manifest["items"], "interval": 0.95,
                     "split_mode": manifest["split_mode"], "settings": settings, "resampled": unit_name,
                     "note": _protocol_note(protocol, manifest, settings)},
        "metrics": list(METRICS),
        "lower_is_better": list(LOWER_IS_BETTER),
        "groups": group_rows,
        "comparisons": comparisons,
        "verdict": verdict,
        "runs": [_run_row(run, summaries[run["id"]]) for run in runs],
    }


def resampling_units(ds, sessions: np.ndarray, resample: str) -> tuple[np.ndarray | None, str]:
    """The bootstrap unit of each of ``sessions`` (sorted session ids): listener codes, or None for
    sessions; and the unit's name.  ``auto`` takes listeners when the log has them."""
    if resample == "sessions" or len(sessions) == 0:
        return None, "sessions"
    with duckdb.connect() as con:
        rows = con.execute("select session_idx, any_value(user_id) from read_parquet(?) group by session_idx",
                           [str(ds.events)]).fetchnumpy()
    order = np.argsort(rows["session_idx"])
    ids, users = rows["session_idx"][order], np.asarray(rows["any_value(user_id)"], dtype=object)[order]
    at = np.searchsorted(ids, sessions)
    if np.any(at >= len(ids)) or np.any(ids[np.minimum(at, len(ids) - 1)] != sessions):
        raise ArtifactMissingError(f"{ds.events}: does not hold every scored session; run `toolkit prep` again")
    _, units = np.unique(users[at].astype(str), return_inverse=True)
    n_units, all_users = int(units.max()) + 1, len(np.unique(users.astype(str)))
    if resample == "auto" and not (splits.users_known(all_users, len(ids)) and n_units > 1):
        return None, "sessions"
    return units.astype(np.int64), "listeners"


def _groups(runs: list[dict]) -> dict[str, list[dict]]:
    """Runs that differ only by seed, keyed ``model / feedback (options)``, where the options are
    the settings that differ between this report's groups of the same model (shared ones go in the
    protocol)."""
    by_identity: dict[str, list[dict]] = {}
    for run in runs:
        by_identity.setdefault(group_identity(run["config"]), []).append(run)
    opts = {i: _options(m[0]["config"]) for i, m in by_identity.items()}
    model_of = {i: m[0]["config"].model for i, m in by_identity.items()}
    varying = {(model_of[i], name) for i, o in opts.items() for name in o
               if len({json.dumps(p.get(name)) for j, p in opts.items()
                       if name in p and model_of[j] == model_of[i]}) > 1}
    out: dict[str, list[dict]] = {}
    for identity, members in sorted(by_identity.items(), key=lambda kv: _order(kv[1][0]["config"])):
        cfg = members[0]["config"]
        shown = {k: v for k, v in opts[identity].items() if (cfg.model, k) in varying}
        key = f"{cfg.model} / {cfg.feedback}" + (" (" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"
                                                 if shown else "")
        if key in out:  # same display key, other settings: keep them apart
            key = f"{key} [{identity[:6]}]"
        for run in members:
            run["group"], run["options"] = key, shown
        out[key] = sorted(members, key=lambda r: r["config"].seed)
    return out


def shared_settings(runs: list[dict]) -> dict:
    """Non-default settings every neural run of the report shares (shown once, in the protocol)."""
    neural = [_options(r["config"]) for r in runs if r["config"].model in NEURAL]
    if not neural:
        return {}
    default = TrainConfig()
    return {k: v for k, v in neural[0].items()
            if v != getattr(default, k) and all(k in o and o[k] == v for o in neural)}


def _order(cfg: TrainConfig) -> tuple:
    models = ("pop", "markov", "repeat", "sknn", "sasrec", "bert4rec", "gru4rec")
    return (models.index(cfg.model), cfg.feedback != "all", cfg.feedback != "positives-only", cfg.feedback,
            json.dumps(asdict(cfg), sort_keys=True))


def _baseline_key(protocol: Protocol, groups: dict) -> str | None:
    """The group named by --baseline (a unique prefix will do), else the one SASRec group trained on
    every play (failing that BERT4Rec, then GRU4Rec), when there is exactly one and something to
    compare it with."""
    if protocol.baseline is not None:
        hits = [k for k in groups if k == protocol.baseline] or [k for k in groups if k.startswith(protocol.baseline)]
        if len(hits) != 1:
            raise ConfigError(f"--baseline {protocol.baseline!r} matches {len(hits)} groups; choose one of: "
                              f"{'; '.join(groups)}")
        return hits[0]
    for model in ("sasrec", "bert4rec", "gru4rec"):
        hits = [k for k, m in groups.items() if m[0]["config"].model == model and m[0]["config"].feedback == "all"]
        if len(hits) == 1 and len(groups) > 1:
            return hits[0]
    return None


def _second_baseline(groups: dict, baseline: str | None) -> str | None:
    """SASRec trained without skipped plays, when the report has it beside another baseline: the
    skip-aware claims are only as good as their margin over it (the harder skip-blind baseline)."""
    hits = [k for k, m in groups.items()
            if m[0]["config"].model == "sasrec" and m[0]["config"].feedback == "positives-only"]
    return hits[0] if baseline is not None and len(hits) == 1 and hits[0] != baseline else None


def _verdict(groups: list[dict], paired: Callable[[str, str, str], dict]) -> dict | None:
    """The best group by the primary metric, its paired differences over the runner-up and over the
    best count baseline, and the best neural group against that count baseline (None: no group)."""
    def mean(g: dict) -> float:
        return g["metrics"][PRIMARY]["mean"]

    ranked = sorted((g for g in groups if math.isfinite(mean(g))), key=mean, reverse=True)
    if not ranked:
        return None
    best = ranked[0]
    count = next((g for g in ranked if g["model"] not in NEURAL), None)
    neural = next((g for g in ranked if g["model"] in NEURAL), None)

    def diff(a: dict | None, b: dict | None) -> dict | None:
        return paired(a["key"], b["key"], PRIMARY) if a is not None and b is not None and a is not b else None

    return {"metric": PRIMARY, "best": best["key"], "best_mean": mean(best),
            "runner_up": ranked[1]["key"] if len(ranked) > 1 else None,
            "vs_runner_up": diff(best, ranked[1] if len(ranked) > 1 else None),
            "best_count": count["key"] if count else None, "vs_best_count": diff(best, count),
            "best_neural": neural["key"] if neural else None, "neural_vs_count": diff(neural, count)}


def cold_targets(ds, manifest: dict, protocol: Protocol, q: QueryResults) -> np.ndarray | None:
    """bool (Q,): whether each query's next track never occurs in train (no model can rank it from
    data), in the query order of ``run_queries``; None when it cannot be matched to ``q``."""
    split = load_split(ds, protocol.split)
    mask = query_mask(split, protocol.positions, manifest["split_mode"] == "last")
    targets = np.asarray(split.next_item)[mask]  # row-major: the order run_queries scores them in
    if len(targets) != len(q.rank):
        return None
    with duckdb.connect() as con:
        train_plays = con.execute("select item_id, train_plays from read_parquet(?)", [str(ds.items)]).fetchnumpy()
    plays = np.zeros(manifest["items"] + 1, np.int64)
    plays[train_plays["item_id"]] = train_plays["train_plays"]
    return plays[targets] == 0


def _group_row(key: str, members: list[dict], results: dict, summaries: dict, n_items: int,
               cold: np.ndarray | None = None) -> dict:
    qs = [results[r["id"]] for r in members]
    per_run = [summaries[r["id"]] for r in members]
    pos_ranks = np.concatenate([q.rank[~q.skipped] for q in qs])
    skip_ranks = np.concatenate([q.rank[q.skipped] for q in qs])
    edges = [2**i for i in range(math.ceil(math.log2(n_items + 1)) + 1)]
    hist = {"edges": edges, "seeds": len(qs),  # counts are summed over the seeds' runs
            "pos": np.histogram(pos_ranks, bins=edges)[0].tolist(),
            "skip": np.histogram(skip_ranks, bins=edges)[0].tolist()}
    if cold is not None and all(len(q.rank) == len(cold) for q in qs):
        hist["pos_cold"] = np.histogram(np.concatenate([q.rank[~q.skipped & cold] for q in qs]), bins=edges)[0].tolist()
    cfg = members[0]["config"]
    return {
        "key": key, "model": cfg.model, "feedback": cfg.feedback, "options": members[0]["options"],
        "runs": [r["id"] for r in members], "seeds": [r["config"].seed for r in members],
        "n_sessions": per_run[0]["n_sessions"], "n_pos": per_run[0]["n_pos"], "n_skip": per_run[0]["n_skip"],
        "metrics": {m: seed_interval([p.get(m, math.nan) for p in per_run]) for m in METRICS},
        "hr_curve": {"k": list(HR_CURVE_KS),
                     "hr": [float(np.mean([(q.rank[~q.skipped] <= k).mean() if (~q.skipped).any() else math.nan
                                           for q in qs])) for k in HR_CURVE_KS]},
        "rank_hist": hist,
    }


def _run_row(run: dict, test: dict) -> dict:
    res = run["result"] or {}
    cfg: TrainConfig = run["config"]
    curve = []
    for row in read_metrics(run["dir"]):
        # the next-item term alone is comparable across groups; the others (contrastive, ...) apart
        curve.append({"epoch": row.get("epoch"), "loss_next": row.get("loss_next"),
                      "loss_other": {k[len("loss_"):]: v for k, v in row.items()
                                     if k.startswith("loss_") and k != "loss_next"},
                      "valid_ndcg@10": row.get("valid_ndcg@10")})
    return {"id": run["id"], "group": run["group"], "seed": cfg.seed, "neural": cfg.model in NEURAL,
            "status": res.get("status", "unfinished"), "epochs_done": res.get("epochs_done"),
            "epochs": cfg.epochs if cfg.model in NEURAL else None, "valid_sessions": cfg.valid_sessions,
            "best_epoch": res.get("best_epoch"), "wall_s": res.get("wall_s"), "curve": curve,
            "valid_ndcg@10": (res.get("valid") or {}).get("ndcg@10"),
            "test": test}


def track_skip_signal(ds, manifest: dict, protocol: Protocol, device: torch.device) -> float | None:
    """Within-session AUC, on the protocol's queries, of ranking tracks by their train keep rate
    (``scorers.KeepRateScorer``): 0.5 when a track's history says nothing about whether it is
    skipped. None for a dataset without skips."""
    if not manifest["skip_share"]:
        return None
    train_rows = load_split(ds, "train")
    auc = evaluate(KeepRateScorer(train_rows.seqs, train_rows.skips, manifest["items"]), load_split(ds, protocol.split),
                   manifest["items"], device, manifest["split_mode"] == "last", positions=protocol.positions)["auc"]
    return auc if math.isfinite(auc) else None


def _dataset_summary(ds, manifest: dict) -> dict:
    edges = [2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 1 << 40]
    with duckdb.connect() as con:
        lengths = con.execute("select count(*) as n from read_parquet(?) group by session_idx",
                              [str(ds.events)]).fetchnumpy()["n"]
    counts = np.histogram(np.asarray(lengths), bins=edges)[0].tolist()
    return {
        "name": manifest["name"], "format": manifest.get("format"), "rows_in": manifest["rows_in"],
        "rows_kept": manifest["rows_kept"], "dropped": manifest.get("rows_dropped", {}), "users": manifest["users"],
        "sessions": manifest["sessions"], "items": manifest["items"], "skip_share": manifest["skip_share"],
        "skip_rule": manifest.get("skip_rule"),
        "median_session_len": manifest.get("median_session_len"),
        "splits": {k: {"sessions": v["sessions"], "events": v["events"]} for k, v in manifest["splits"].items()},
        "session_lengths": {"edges": edges, "counts": counts},
        "cold_items": manifest.get("cold_items"), "cold_events": manifest.get("cold_events"),
        **split_summary(ds, manifest),
    }


def split_summary(ds, manifest: dict) -> dict:
    """The split used and why, what each split can measure, and the warnings a reader needs first
    (the diagnostics prep stored; recomputed from the events for a dataset prepared before they existed)."""
    diag = manifest.get("split_diagnostics") or splits.diagnostics(ds.events)
    mode = manifest["split_mode"]
    known = splits.users_known(manifest["users"], manifest["sessions"])
    return {"split_mode": mode, "split_reason": manifest.get("split_reason", mode), "split_diagnostics": diag,
            "split_warnings": splits.warnings(diag, mode, known), "listeners_known": known}


def _protocol_note(protocol: Protocol, manifest: dict, settings: dict) -> str:
    """What the protocol fields do not say by themselves."""
    parts = []
    if manifest["split_mode"] == "last":
        parts.append("The dataset uses leave-last-out: one query per session, its held-out last play (the same "
                     "sessions' earlier plays are in training, so this is easier than a temporal split).")
    elif protocol.positions == "last":
        parts.append("Only the last non-skipped play of each session is a query, so the skip metrics are empty.")
    else:
        parts.append("Positive metrics use queries whose next play was not skipped; skip metrics those whose next "
                     "play was skipped.")
    if protocol.exclude_played:
        parts.append("A next play that repeats a track of the session cannot be recommended and counts as a miss.")
    if settings:
        parts.append("Settings shared by the neural runs: " + ", ".join(f"{k}={v}" for k, v in settings.items()) + ".")
    return " ".join(parts)
