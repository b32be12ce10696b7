"""The report's numbers on the differences: intervals over seeds and the paired bootstrap.

* per group, the mean over seeds and a 95 % t-interval across seeds (none with one seed);
* per group against a baseline group, a paired two-level bootstrap: the units the data is
  independent in (listeners or sessions, ``scoring.resampling_units``) are resampled with
  replacement, both groups on the same resample, and each group's seeds are resampled too, so
  seed luck widens the interval.

Pure functions of per-query outcomes (``evaluate.QueryResults``): nothing here reads a file.
"""

from __future__ import annotations

import math

import numpy as np

from toolkit import metrics
from toolkit.evaluate import QueryResults

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
