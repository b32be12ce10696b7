"""``toolkit report``: score finished runs on the test split and compare them honestly.

Read top to bottom: pick the runs (one dataset only: ``runs.select_runs``), score each one's best
checkpoint on every query of the test split against the whole catalogue (``toolkit/evaluate.py``,
the same path as validation), group runs that differ only by seed (``grouping``), and put numbers
on the differences (``statistics``):

* per group, the mean over seeds and a 95 % t-interval across seeds (none with one seed);
* per group against the baseline group, a paired two-level bootstrap: the units the data is
  independent in are resampled with replacement (both groups on the same resample, so the
  interval is that of the difference itself) and each group's seeds are resampled too, so seed
  luck widens it.  The units are listeners, each with all of their test sessions, when the log has
  listeners (one listener's sessions are alike, so resampling sessions would pretend there is
  more independent evidence than there is), else sessions.

Per-query outcomes are cached beside each run (``eval-<protocol>.npz``), so a second report, or a
study that adds runs, scores only what is new.  The result is a plain dictionary that
``render`` turns into Markdown, HTML or JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, fields
from datetime import datetime, timezone

import duckdb
import numpy as np
import torch

from toolkit import __version__, metrics, splits
from toolkit.artifacts import Workspace, atomic_path, read_manifest, read_metrics
from toolkit.config import NEURAL
from toolkit.data import load_split, train_counts
from toolkit.devices import pick_device
from toolkit.errors import ArtifactMissingError
from toolkit.evaluate import QueryResults, evaluate, query_mask, run_queries, summarize
from toolkit.identity import build_of
from toolkit.report.grouping import RunGroup, baseline_key, group_runs, second_baseline, shared_settings
from toolkit.report.protocol import Protocol
from toolkit.report.records import Comparison, Group, Report, Verdict
from toolkit.report.statistics import by_unit, paired_bootstrap, seed_interval, session_sums
from toolkit.runs import RunRecord, scorer_for, select_runs
from toolkit.scorers import KeepRateScorer

METRICS = ("hr@1", "hr@5", "hr@10", "hr@20", "ndcg@10", "ndcg@20", "mrr@10", "skip_hr@10", "skip_mrr@10",
           "delta_hr@10", "auc", "auc_seen", "coverage@10", "pop_pct@10", "overlap@10")
LOWER_IS_BETTER = ("skip_hr@10", "skip_mrr@10")
PRIMARY = "ndcg@10"  # the metric the verdict ranks groups by
# metrics with a paired bootstrap: (metric, which queries, per-query value)
PAIRED = ("ndcg@10", "hr@10", "mrr@10", "skip_hr@10", "auc", "auc_seen")
HR_CURVE_KS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100)
Progress = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# scoring


def score_run(ws: Workspace, run: RunRecord, protocol: Protocol, device: torch.device) -> QueryResults:
    """Per-query outcomes of one run, from the cache when its checkpoint has not changed."""
    cfg = run.config
    protocol = protocol.for_runs([cfg])
    ds = ws.dataset(cfg.dataset)
    manifest = read_manifest(ds).to_json()
    stamp = _checkpoint_stamp(run, manifest)
    cache = run.dir.path / f"eval-{protocol.cache_key()}.npz"
    if cache.exists():
        with np.load(cache) as z:
            if str(z["stamp"]) == stamp and all(fld.name in z.files for fld in fields(QueryResults)):
                return QueryResults(**{fld.name: z[fld.name] for fld in fields(QueryResults)})
    split = load_split(ds, protocol.split, cfg.history, cfg.successors, cfg.transitions > 0, cfg.window)
    if len(split) == 0:
        raise ArtifactMissingError(f"dataset {cfg.dataset} has an empty {protocol.split} split; prepare it with "
                                   "a larger --test-frac / --valid-frac")
    q = run_queries(scorer_for(ws, run, device), split, device, last_only=manifest["split_mode"] == "last",
                    n_items=manifest["items"], positions=protocol.positions, exclude_played=protocol.exclude_played)
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.savez(f, stamp=np.array(stamp), **{fld.name: getattr(q, fld.name) for fld in fields(QueryResults)})
    return q


def _checkpoint_stamp(run: RunRecord, manifest: dict) -> str:
    """What the cached outcomes depend on: the dataset content and the scored weights."""
    best = run.dir.best
    weights = f"{best.stat().st_size}-{best.stat().st_mtime_ns}" if best.exists() else "counts"
    # the input fingerprint alone for datasets that keep their first run ids (their build never
    # changes, and their caches stay valid); the whole build for the others
    data = build_of(manifest) if manifest.get("run_ids") == "build" else manifest["fingerprint"]
    return f"{data}-{weights}"


# ---------------------------------------------------------------------------------------------
# the report


def build_report(ws: Workspace, ids: list[str], protocol: Protocol, dataset: str | None = None,
                 device: str = "auto", progress: Progress | None = None) -> dict:
    """``assemble_report``'s record as its JSON form, the dictionary ``render``, the CLI and
    the study read."""
    return assemble_report(ws, ids, protocol, dataset, device, progress).to_dict()


def assemble_report(ws: Workspace, ids: list[str], protocol: Protocol, dataset: str | None = None,
                    device: str = "auto", progress: Progress | None = None) -> Report:
    """Score the runs and assemble the report (``records.Report``)."""
    say = progress or (lambda _msg: None)
    runs = select_runs(ws, ids, dataset, protocol.allow_unfinished)
    given = protocol
    protocol = protocol.for_runs([r.config for r in runs], [r.id for r in runs])
    name = runs[0].config.dataset
    ds = ws.dataset(name)
    manifest = read_manifest(ds).to_json()
    dev = pick_device(device)
    results: dict[str, QueryResults] = {}
    for i, run in enumerate(runs, 1):
        say(f"scoring {run.id} ({i}/{len(runs)}) on {protocol.split}")
        results[run.id] = score_run(ws, run, protocol, dev)
    popularity = metrics.popularity_percentile(train_counts(load_split(ds, "train"), manifest["items"]))
    groups = group_runs(runs)
    settings = shared_settings(runs)
    all_sessions = np.unique(np.concatenate([q.session for q in results.values()]))
    units, unit_name = resampling_units(ds, all_sessions, protocol.resample)
    summaries = {i: summarize(q, manifest["items"], popularity) for i, q in results.items()}
    baseline = baseline_key(protocol.baseline, groups)
    cold = cold_targets(ds, manifest, protocol, next(iter(results.values())))
    group_rows = [_group_row(group, results, summaries, manifest["items"], cold) for group in groups.values()]

    def paired(key: str, base_key: str, metric: str) -> Comparison:
        mine = [results[r.id] for r in groups[key].runs]
        base = [results[r.id] for r in groups[base_key].runs]
        pb = paired_bootstrap(by_unit(session_sums(mine, metric, all_sessions), units),
                              by_unit(session_sums(base, metric, all_sessions), units),
                              protocol.bootstrap, protocol.seed)
        return Comparison(group=key, baseline=base_key, metric=metric, unit=unit_name, diff=pb["diff"], lo=pb["lo"],
                          hi=pb["hi"], n_units=pb["n_sessions"], excludes_zero=bool(pb["lo"] > 0 or pb["hi"] < 0))

    comparisons = []
    baselines = [b for b in (baseline, second_baseline(groups, baseline)) if b is not None]
    for i, b in enumerate(baselines):
        say("paired bootstrap against " + b)
        # the main baseline against the second one is the second's row against the main one, negated
        comparisons += [paired(key, b, metric) for key in groups if key not in baselines[: i + 1]
                        for metric in PAIRED]
    verdict = _verdict(group_rows, paired)
    group_of = {run.id: group.key for group in groups.values() for run in group.runs}
    return Report(
        title=f"Skip-aware next-track recommendation: {name}",
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        toolkit_version=__version__,
        dataset={**_dataset_summary(ds, manifest), "track_skip_auc": track_skip_signal(ds, manifest, protocol, dev)},
        protocol={**{k: v for k, v in asdict(protocol).items() if k != "allow_unfinished"},
                  "baseline": baseline, "baselines": baselines, "catalogue": manifest["items"], "interval": 0.95,
                  "split_mode": manifest["split_mode"], "settings": settings, "resampled": unit_name,
                  "note": _protocol_note(protocol, manifest, settings) + _given_note(given, runs)},
        metrics=list(METRICS),
        lower_is_better=list(LOWER_IS_BETTER),
        groups=group_rows,
        comparisons=comparisons,
        verdict=verdict,
        runs=[_run_row(run, group_of[run.id], summaries[run.id]) for run in runs],
    )


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


def _verdict(groups: list[Group], paired: Callable[[str, str, str], Comparison]) -> Verdict | None:
    """The best group by the primary metric, its paired differences over the runner-up and over the
    best count baseline, and the best neural group against that count baseline (None: no group)."""
    ranked = sorted((g for g in groups if math.isfinite(g.mean(PRIMARY))), key=lambda g: g.mean(PRIMARY), reverse=True)
    if not ranked:
        return None
    best = ranked[0]
    runner_up = ranked[1] if len(ranked) > 1 else None
    count = next((g for g in ranked if g.model not in NEURAL), None)
    neural = next((g for g in ranked if g.model in NEURAL), None)

    def diff(a: Group | None, b: Group | None) -> Comparison | None:
        return paired(a.key, b.key, PRIMARY) if a is not None and b is not None and a is not b else None

    return Verdict(metric=PRIMARY, best=best.key, best_mean=best.mean(PRIMARY),
                   runner_up=runner_up.key if runner_up else None, vs_runner_up=diff(best, runner_up),
                   best_count=count.key if count else None, vs_best_count=diff(best, count),
                   best_neural=neural.key if neural else None, neural_vs_count=diff(neural, count))


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


def _group_row(group: RunGroup, results: dict, summaries: dict, n_items: int, cold: np.ndarray | None = None) -> Group:
    qs = [results[r.id] for r in group.runs]
    per_run = [summaries[r.id] for r in group.runs]
    pos_ranks = np.concatenate([q.rank[~q.skipped] for q in qs])
    skip_ranks = np.concatenate([q.rank[q.skipped] for q in qs])
    edges = [2**i for i in range(math.ceil(math.log2(n_items + 1)) + 1)]
    hist = {"edges": edges, "seeds": len(qs),  # counts are summed over the seeds' runs
            "pos": np.histogram(pos_ranks, bins=edges)[0].tolist(),
            "skip": np.histogram(skip_ranks, bins=edges)[0].tolist()}
    if cold is not None and all(len(q.rank) == len(cold) for q in qs):
        hist["pos_cold"] = np.histogram(np.concatenate([q.rank[~q.skipped & cold] for q in qs]), bins=edges)[0].tolist()
    cfg = group.config
    return Group(
        key=group.key, model=cfg.model, feedback=cfg.feedback, options=group.options,
        runs=[r.id for r in group.runs], seeds=[r.config.seed for r in group.runs],
        n_sessions=per_run[0]["n_sessions"], n_pos=per_run[0]["n_pos"], n_skip=per_run[0]["n_skip"],
        metrics={m: seed_interval([p.get(m, math.nan) for p in per_run]) for m in METRICS},
        hr_curve={"k": list(HR_CURVE_KS),
                  "hr": [float(np.mean([(q.rank[~q.skipped] <= k).mean() if (~q.skipped).any() else math.nan
                                        for q in qs])) for k in HR_CURVE_KS]},
        rank_hist=hist,
    )


def _run_row(run: RunRecord, group: str, test: dict) -> dict:
    res = run.result or {}
    cfg = run.config
    curve = []
    for row in read_metrics(run.dir):
        # the next-item term alone is comparable across groups; the others (contrastive, ...) apart
        curve.append({"epoch": row.get("epoch"), "loss_next": row.get("loss_next"),
                      "loss_other": {k[len("loss_"):]: v for k, v in row.items()
                                     if k.startswith("loss_") and k != "loss_next"},
                      "valid_ndcg@10": row.get("valid_ndcg@10")})
    return {"id": run.id, "group": group, "seed": cfg.seed, "neural": cfg.model in NEURAL,
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


def _given_note(given: Protocol, runs: list[RunRecord]) -> str:
    """What the report's own options changed of the protocol the runs recorded."""
    other = [r.id for r in runs if given.exclude_played is not None
             and r.config.exclude_played != given.exclude_played]
    if not other:
        return ""
    how = "without" if given.exclude_played else "with"
    return (f" The report ranks every run {how} the tracks already played in the session, although "
            f"{len(other)} of the runs were validated otherwise.")


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
