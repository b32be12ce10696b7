"""Full-catalogue softmax cross-entropy that never holds the (positions, catalogue) scores at once.

The plain loss (``losses.full_cross_entropy(model.scores(hidden), targets)``) materialises an (N, V)
score matrix, and autograd keeps two more of its size for backward: at a million tracks and a few
thousand positions that is tens of GB. Here the catalogue is walked in column chunks with a running
log-sum-exp, and backward recomputes each chunk's scores instead of storing them (the idea of Cut
Cross-Entropy, Wijmans et al. 2024), so one step holds one (N, chunk) block of scores plus the usual
(V, D) gradient of the item table.

Conventions as in ``losses.py`` and ``SeqRec.scores``: the scores are ``hidden @ table[:V].T`` with
the PAD column at -inf; a PAD target means "no target here" and contributes 0 to the loss and its
gradient. The repeat head's sparse copy term (``SeqRec.copy_terms``: per query, weights on a few
track ids, summed per track as ``scatter_add`` does) is supported exactly: each chunk adds the
weights of the tracks it covers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from toolkit.schema import PAD

_NEG_INF = float("-inf")
SCORE_BYTES = 4  # the loss computes in float32 whatever the autocast dtype


def chunk_columns(n_positions: int, n_scored: int, memory_mb: float) -> int | None:
    """Catalogue columns per chunk so that one (n_positions, chunk) block of float32 scores fits in
    ``memory_mb`` MiB; None when the whole (n_positions, n_scored) matrix fits (the plain loss then)."""
    budget = int(memory_mb * 2**20) // SCORE_BYTES  # scores
    if n_positions * n_scored <= budget:
        return None
    return max(1, budget // max(1, n_positions))


def _chunk_scores(hidden: Tensor, table: Tensor, start: int, stop: int, items: Tensor | None,
                  weights: Tensor | None) -> Tensor:
    """float32 (N, stop - start): scores of catalogue columns start..stop-1, repeat term added."""
    scores = hidden @ table[start:stop].T  # (N, C)
    if items is not None:
        idx = items - start  # (N, R): column within the chunk
        inside = (idx >= 0) & (idx < stop - start)
        # every (query, entry) lands in exactly one chunk, so the sum matches one scatter_add over all columns
        scores.scatter_add_(1, idx.clamp(0, stop - start - 1), torch.where(inside, weights, 0.0))
    if start <= PAD < stop:
        scores[:, PAD - start] = _NEG_INF
    return scores


def _target_scores(hidden: Tensor, table: Tensor, targets: Tensor, items: Tensor | None,
                   weights: Tensor | None) -> Tensor:
    """float32 (N,): each query's score of its own target, repeat term included."""
    s = (hidden * table[targets]).sum(-1)  # (N,)
    if items is not None:
        s = s + (weights * (items == targets.unsqueeze(1))).sum(-1)
    return s


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Per-query ``logsumexp(scores) - scores[target]``, chunked over the catalogue both ways."""

    @staticmethod
    def forward(ctx, hidden, table, targets, items, weights, n_scored: int, chunk: int):
        with torch.autocast(hidden.device.type, enabled=False):
            h = hidden.float()
            w = None if weights is None else weights.float()
            lse = h.new_full((h.shape[0],), _NEG_INF)  # (N,)
            for start in range(0, n_scored, chunk):
                scores = _chunk_scores(h, table, start, min(start + chunk, n_scored), items, w)  # (N, C)
                top = scores.amax(1)  # (N,)
                # a chunk of only the PAD column has max -inf; shifting by it would give nan
                shift = torch.where(torch.isfinite(top), top, 0.0)
                chunk_lse = shift + scores.sub_(shift.unsqueeze(1)).exp_().sum(1).log()  # in place: one block
                lse = torch.logaddexp(lse, chunk_lse)
                del scores  # before the next block is computed, or two would be held at once
            keep = targets != PAD
            per_query = torch.where(keep, lse - _target_scores(h, table, targets, items, w), 0.0)
        ctx.save_for_backward(h, table, targets, items, w, lse)
        ctx.n_scored, ctx.chunk = n_scored, chunk
        ctx.dtypes = (hidden.dtype, None if weights is None else weights.dtype)
        return per_query

    @staticmethod
    def backward(ctx, grad_out):
        h, table, targets, items, w, lse = ctx.saved_tensors
        need_h, need_table, _, _, need_w, _, _ = ctx.needs_input_grad
        with torch.autocast(h.device.type, enabled=False):
            g = torch.where(targets != PAD, grad_out.float(), 0.0)  # (N,); padded positions get nothing
            grad_h = torch.zeros_like(h)
            grad_table = table.new_zeros(table.shape) if need_table else None  # contiguous: chunks write into it
            grad_w = torch.zeros_like(w) if w is not None else None
            for start in range(0, ctx.n_scored, ctx.chunk):
                stop = min(start + ctx.chunk, ctx.n_scored)
                # d lse / d score = softmax; the block becomes g * softmax in place
                p = _chunk_scores(h, table, start, stop, items, w).sub_(lse.unsqueeze(1)).exp_()  # (N, C)
                if grad_w is not None:
                    idx = items - start
                    inside = (idx >= 0) & (idx < stop - start)
                    grad_w += torch.where(inside, p.gather(1, idx.clamp(0, stop - start - 1)), 0.0)
                p.mul_(g.unsqueeze(1))
                grad_h.addmm_(p, table[start:stop])
                if grad_table is not None:
                    torch.mm(p.T, h, out=grad_table[start:stop])
                del p
            # the target's own score enters with a minus sign
            grad_h -= g.unsqueeze(1) * table[targets]
            if grad_table is not None:
                grad_table.index_add_(0, targets, -g.unsqueeze(1) * h)
            if grad_w is not None:
                grad_w = g.unsqueeze(1) * (grad_w - (items == targets.unsqueeze(1)).float())
        h_dtype, w_dtype = ctx.dtypes
        return (grad_h.to(h_dtype) if need_h else None, grad_table, None, None,
                grad_w.to(w_dtype) if need_w else None, None, None)


def cross_entropy_terms(hidden: Tensor, table: Tensor, targets: Tensor, chunk: int, n_scored: int | None = None,
                        items: Tensor | None = None, weights: Tensor | None = None) -> Tensor:
    """Per-query full-softmax cross-entropy, chunked over the catalogue.

    Parameters
    ----------
    hidden : float (N, D), prediction vectors.
    table : float32 (V', D), item table; rows 0..n_scored-1 are the catalogue (PAD, 1..n_items), rows
        past it (MASK) are never scored and get zero gradient. Passing the whole embedding weight
        rather than a slice spares backward one more catalogue-sized gradient copy.
    targets : int64 (N,) in 0..n_scored-1; PAD marks a position without a target.
    chunk : catalogue columns scored at once (``chunk_columns``); any value >= 1 gives the same loss.
    n_scored : catalogue size V including PAD; default ``len(table)``.
    items, weights : (N, R) or None, the repeat head's sparse term: ``weights[n, r]`` is added to the
        score of track ``items[n, r]`` (summed over repeats; mask unavailable entries to 0 first).

    Returns
    -------
    float32 (N,): ``logsumexp_v(s_nv) - s_n,target``, 0 at PAD targets, with gradients for hidden,
    table and weights.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 catalogue columns, got {chunk}")
    n_scored = table.shape[0] if n_scored is None else n_scored
    if (items is None) != (weights is None):
        raise ValueError("pass the repeat term's items and weights together, or neither")
    return _ChunkedCrossEntropy.apply(hidden, table, targets, items, weights, n_scored, chunk)


def cross_entropy(hidden: Tensor, table: Tensor, targets: Tensor, chunk: int, n_scored: int | None = None,
                  items: Tensor | None = None, weights: Tensor | None = None) -> Tensor:
    """Mean of :func:`cross_entropy_terms` over non-PAD targets (0 with grad when there is none): the
    same value and gradients as ``losses.full_cross_entropy`` on the materialised scores."""
    per_query = cross_entropy_terms(hidden, table, targets, chunk, n_scored, items, weights)
    return per_query.sum() / (targets != PAD).sum().clamp(min=1)
