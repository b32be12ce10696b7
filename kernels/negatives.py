"""Sample negative items per row, uniformly or by popularity, never hitting the row's positives.

Ids follow ``kernels/conventions.py``: ``PAD = 0`` is never drawn, real items are ``1..n_items``.
Randomness comes only from ``seed``, which seeds numba's generator inside the kernel (numba's
generator is separate from NumPy's, so seeding from Python would not reach it).
"""

from __future__ import annotations

import math

import numpy as np

from kernels._jit import njit
from kernels.checks import check_array, check_positive_int
from kernels.conventions import PAD

_MAX_SEED = 2**32 - 1  # numba's np.random.seed takes a uint32
_MAX_ITEMS = 2**31 - 2  # ids are int32


def popularity_cdf(counts: np.ndarray, beta: float) -> np.ndarray:
    """Cumulative sampling distribution with ``p_i ∝ counts_i ** beta`` and ``p_PAD = 0``.

    Parameters
    ----------
    counts : int64[n_items + 1]
        Play counts per item id; ``counts[0]`` belongs to ``PAD`` and is ignored.
    beta : float
        Exponent, ``>= 0``: 1 samples by popularity, 0 uniformly (``0 ** 0 == 1``, so items with
        no plays are then drawn too), values in between flatten the popularity curve.

    Returns
    -------
    float64[n_items + 1]
        Non-decreasing, ``cdf[0] == 0.0`` and ``cdf[-1] == 1.0`` exactly; item ``i`` has
        probability ``cdf[i] - cdf[i - 1]``.
    """
    counts = check_array("counts", counts, np.int64, 1)
    if counts.shape[0] < 2:
        raise ValueError(f"counts must hold n_items + 1 >= 2 entries (counts[0] is PAD), got {counts.shape[0]}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.integer, np.floating)):
        raise TypeError(f"beta must be a float, got {type(beta).__name__}")
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be finite and >= 0, got {beta}")
    if counts.min() < 0:
        raise ValueError("counts must be >= 0")
    weights = counts.astype(np.float64) ** float(beta)
    weights[PAD] = 0.0
    cdf = np.cumsum(weights)
    total = cdf[-1]
    if not (math.isfinite(total) and total > 0):
        raise ValueError(f"total weight sum(counts[1:] ** beta) must be finite and > 0, got {total}")
    cdf /= total
    cdf[-1] = 1.0
    return cdf


def _check_ids(name: str, arr: np.ndarray, n_items: int) -> None:
    if arr.size and (arr.min() < PAD or arr.max() > n_items):
        raise ValueError(
            f"{name} must hold ids in {PAD}..{n_items} (PAD or an item), got range {arr.min()}..{arr.max()}"
        )


def _check_cdf(cdf: object, n_items: int) -> np.ndarray:
    cdf = check_array("cdf", cdf, np.float64, 1)
    if cdf.shape[0] != n_items + 1:
        raise ValueError(f"cdf must have n_items + 1 = {n_items + 1} entries, got {cdf.shape[0]}")
    if not np.isfinite(cdf).all():
        raise ValueError("cdf must be finite")
    if cdf[0] != 0.0:
        raise ValueError(f"cdf[0] must be 0.0 (PAD is never drawn), got {cdf[0]}")
    if (cdf[1:] < cdf[:-1]).any():
        raise ValueError("cdf must be non-decreasing; build it with popularity_cdf(counts, beta)")
    if cdf[-1] != 1.0:
        raise ValueError(f"cdf[-1] must be exactly 1.0, got {cdf[-1]!r}; build it with popularity_cdf(counts, beta)")
    return cdf


def _check_some_allowed(seqs: np.ndarray, exclude: np.ndarray, n_items: int) -> None:
    """Raise if a row excludes every item (only possible when a row is at least n_items wide)."""
    if seqs.shape[1] + exclude.shape[1] < n_items:
        return
    ids = np.sort(np.concatenate([seqs, exclude], axis=1), axis=1)
    first = ids != PAD
    first[:, 1:] &= ids[:, 1:] != ids[:, :-1]
    full = np.flatnonzero(first.sum(axis=1) >= n_items)
    if full.size:
        raise ValueError(
            f"row {full[0]} of seqs/exclude covers all {n_items} items, so no negative can be drawn; "
            "drop such rows or grow the catalogue"
        )


def sample_negatives(
    seqs: np.ndarray,
    n_items: int,
    k: int,
    seed: int,
    cdf: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Draw ``k`` negatives per row, with replacement, avoiding the row's positives.

    Parameters
    ----------
    seqs : int32[n_rows, L]
        Positives per row, left-padded with ``PAD``; none of them is drawn for that row.
    n_items : int
        Catalogue size; draws lie in ``1..n_items``.
    k : int
        Negatives per row, ``>= 1``.
    seed : int
        ``0 <= seed < 2**32``; the same seed gives the same draws.
    cdf : float64[n_items + 1], optional
        From ``popularity_cdf``; ``None`` samples uniformly.
    exclude : int32[n_rows, L2], optional
        More ids to avoid per row (e.g. targets); ``PAD`` entries are ignored.

    Returns
    -------
    int32[n_rows, k]
        Ids drawn from the distribution restricted to the row's allowed items.
    """
    seqs = check_array("seqs", seqs, np.int32, 2)
    n_items = check_positive_int("n_items", n_items)
    if n_items > _MAX_ITEMS:
        raise ValueError(f"n_items must fit int32 ids (<= {_MAX_ITEMS}), got {n_items}")
    k = check_positive_int("k", k)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed must be in 0..2**32 - 1, got {seed}")
    _check_ids("seqs", seqs, n_items)
    if exclude is None:
        exclude = np.zeros((seqs.shape[0], 0), dtype=np.int32)
    exclude = check_array("exclude", exclude, np.int32, 2)
    if exclude.shape[0] != seqs.shape[0]:
        raise ValueError(f"exclude must have one row per seqs row ({seqs.shape[0]}), got {exclude.shape[0]}")
    _check_ids("exclude", exclude, n_items)
    cdf = np.zeros(0, dtype=np.float64) if cdf is None else _check_cdf(cdf, n_items)
    _check_some_allowed(seqs, exclude, n_items)

    out = np.zeros((seqs.shape[0], k), dtype=np.int32)
    _sample_negatives_kernel(seqs, exclude, n_items, k, int(seed), cdf, out)
    return out


@njit
def _first_above(cum, lo, hi, u):
    """Smallest ``i`` in ``[lo, hi]`` with ``cum[i] > u``, for non-decreasing ``cum`` with ``cum[hi] > u``."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if cum[mid] > u:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit
def _draw_item(n_items, cdf):
    """One id in ``1..n_items``: uniform if ``cdf`` is empty, else the smallest ``i`` with ``cdf[i] > u``."""
    if cdf.shape[0] == 0:
        return np.random.randint(1, n_items + 1)
    # cdf[n_items] == 1.0 > u, so the answer is in [1, n_items]
    return _first_above(cdf, 1, n_items, np.random.random())


@njit
def _fill_from_allowed(mark, stamp, n_items, cdf, out_row, start, ids, cum):
    """Fill ``out_row[start:]`` by scanning for the allowed items and drawing among them directly.

    The draw follows the sampling distribution restricted to the allowed items, which is what
    rejection sampling yields too, so switching here does not bias the row. If no allowed item
    has popularity mass, the row falls back to uniform over the allowed items.
    """
    n = 0
    total = 0.0
    if cdf.shape[0] != 0:
        for i in range(1, n_items + 1):
            mass = cdf[i] - cdf[i - 1]
            if mark[i] != stamp and mass > 0.0:
                total += mass
                ids[n] = i
                cum[n] = total
                n += 1
    if n == 0:
        total = 0.0
        for i in range(1, n_items + 1):
            if mark[i] != stamp:
                total += 1.0
                ids[n] = i
                cum[n] = total
                n += 1
    # n >= 1 here: the wrapper rejects rows that exclude every item.
    for j in range(start, out_row.shape[0]):
        out_row[j] = ids[_first_above(cum, 0, n - 1, np.random.random() * total)]


@njit
def _sample_negatives_kernel(seqs, exclude, n_items, k, seed, cdf, out):
    """Rejection-sample ``out[r]`` for each row in order; rows that exhaust the budget scan instead.

    ``mark[i] == r + 1`` flags item ``i`` as excluded for row ``r``, so the marks never need clearing.
    Rows run sequentially (no prange) so one seed fixes every draw.
    """
    np.random.seed(seed)
    mark = np.zeros(n_items + 1, dtype=np.int64)
    ids = np.empty(n_items, dtype=np.int32)
    cum = np.empty(n_items, dtype=np.float64)
    # Enough for any row whose allowed mass is above ~1/8; below that, scanning is cheaper.
    budget = 8 * k + 64
    for r in range(seqs.shape[0]):
        stamp = r + 1
        for j in range(seqs.shape[1]):
            mark[seqs[r, j]] = stamp
        for j in range(exclude.shape[1]):
            mark[exclude[r, j]] = stamp
        filled = 0
        attempts = 0
        while filled < k and attempts < budget:
            attempts += 1
            item = _draw_item(n_items, cdf)
            if mark[item] != stamp:
                out[r, filled] = item
                filled += 1
        if filled < k:
            _fill_from_allowed(mark, stamp, n_items, cdf, out[r], filled, ids, cum)
