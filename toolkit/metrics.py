"""Ranking metrics over the full catalogue, computed per query from ranks.

Every function is batch-independent: it returns one value per query (or, for coverage, one value
per set of lists), so callers average, bootstrap or aggregate across batches without any index
bookkeeping. Ranks are always taken over the whole catalogue, never a sampled candidate set:
sampled ranks inflate hit rates and can reorder models (Krichene & Rendle, KDD 2020).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from toolkit.schema import PAD


def rank_of_targets(scores: Tensor, targets: Tensor) -> np.ndarray:
    """1-based rank of each target among all items ``1..V-1`` (the PAD column is excluded).

    Ties are pessimistic: every other item scoring ``>=`` the target is ranked above it, so a
    model that scores everything equally gets rank V - 1, never 1.

    Parameters
    ----------
    scores : float (N, V) tensor, any device; column PAD is ignored.
    targets : int64 (N,) tensor in ``1..V-1``.

    Returns
    -------
    int64 (N,) numpy array of ranks in ``1..V-1``.
    """
    if scores.ndim != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(f"need scores (N, V) and targets (N,), got {tuple(scores.shape)} and "
                         f"{tuple(targets.shape)}")
    if bool((targets == PAD).any()) or bool((targets >= scores.shape[1]).any()):
        raise ValueError("targets must lie in 1..V-1; drop queries whose target is PAD first")
    with torch.no_grad():
        items = scores[:, PAD + 1 :]  # (N, V - 1)
        target_score = scores.gather(1, targets.unsqueeze(1))  # (N, 1)
        # counts the target itself once, which turns "number above" into a 1-based rank
        # int32 accumulation: several times faster than the default int64 sum of a bool matrix on CPU
        ranks = (items >= target_score).sum(dim=1, dtype=torch.int32)  # (N,)
    return ranks.cpu().numpy().astype(np.int64)


def _as_ranks(ranks: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(ranks, Tensor):
        ranks = ranks.detach().cpu().numpy()
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size and ranks.min() < 1:
        raise ValueError("ranks are 1-based")
    return ranks


def hit_at_k(ranks: np.ndarray | Tensor, k: int) -> np.ndarray:
    """float64 (N,): 1.0 where ``rank <= k``, else 0.0."""
    return (_as_ranks(ranks) <= k).astype(np.float64)


def ndcg_at_k(ranks: np.ndarray | Tensor, k: int) -> np.ndarray:
    """float64 (N,): ``1 / log2(rank + 1)`` where ``rank <= k``, else 0 (one relevant item)."""
    r = _as_ranks(ranks)
    return np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)


def mrr_at_k(ranks: np.ndarray | Tensor, k: int) -> np.ndarray:
    """float64 (N,): reciprocal rank ``1 / rank`` where ``rank <= k``, else 0."""
    r = _as_ranks(ranks)
    return np.where(r <= k, 1.0 / r, 0.0)


def coverage_at_k(topk_items: np.ndarray | Tensor, n_items: int) -> float:
    """Share of the catalogue ``1..n_items`` that appears in at least one top-k list.

    topk_items : int (N, k) item ids; PAD entries are ignored. Pool the lists of all batches (or
    take the union of per-batch sets) before calling, since coverage is not additive.
    """
    if isinstance(topk_items, Tensor):
        topk_items = topk_items.detach().cpu().numpy()
    seen = np.unique(np.asarray(topk_items).reshape(-1))
    seen = seen[(seen != PAD) & (seen >= 1) & (seen <= n_items)]
    return float(seen.size) / float(n_items)


def popularity_percentile(counts: np.ndarray) -> np.ndarray:
    """float64 (V,): for each track, the share (in %) of the catalogue ``1..V-1`` played at most as
    often in train; 100 = the most played track.  ``counts[PAD]`` is ignored and its entry is NaN."""
    c = np.asarray(counts, dtype=np.float64)
    real = np.sort(c[PAD + 1 :])
    out = 100.0 * np.searchsorted(real, c, side="right") / max(len(real), 1)
    out[PAD] = np.nan
    return out


def mean_top_popularity(topk_items: np.ndarray, percentile: np.ndarray) -> float:
    """Mean popularity percentile of the recommended tracks (PAD entries ignored), NaN if none."""
    items = np.asarray(topk_items).reshape(-1)
    items = items[items != PAD]
    return float(percentile[items].mean()) if items.size else float("nan")
