"""Training losses as pure tensor functions.

Conventions: ``PAD = 0`` marks "no target here"; every loss averages over the queries that have a
target and returns a 0-valued tensor that still carries a graph when there is none, so callers can
always ``backward()``. No function moves data to the host (no ``.item()``), so none forces a sync.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from toolkit import full_softmax
from toolkit.schema import PAD

_NEG_INF = float("-inf")


def _masked_mean(per_query: Tensor, keep: Tensor) -> Tensor:
    """Mean of ``per_query`` over ``keep``; 0 (with grad) when nothing is kept."""
    total = torch.where(keep, per_query, torch.zeros_like(per_query)).sum()
    return total / keep.sum().clamp(min=1)


def full_cross_entropy(scores: Tensor, targets: Tensor) -> Tensor:
    """Softmax cross-entropy over the whole catalogue.

    Parameters
    ----------
    scores : float (N, V) (or (..., V)), e.g. ``SeqRec.scores``; the PAD column may be -inf.
    targets : int64 (N,) (or (...)) in 0..V-1; PAD targets are ignored.

    Returns
    -------
    Scalar mean over non-PAD targets.
    """
    scores = scores.reshape(-1, scores.shape[-1])  # (N, V)
    targets = targets.reshape(-1)  # (N,)
    per_query = F.cross_entropy(scores, targets, ignore_index=PAD, reduction="none")  # (N,)
    return _masked_mean(per_query, targets != PAD)


def _candidate_logits(
    hidden: Tensor, item_emb: Tensor, targets: Tensor, negatives: Tensor
) -> tuple[Tensor, Tensor]:
    """Dot products with [target, negatives]: logits (N, 1 + K) and the candidate ids (N, 1 + K)."""
    candidates = torch.cat([targets.unsqueeze(1), negatives], dim=1)  # (N, 1 + K)
    cand_emb = item_emb[candidates]  # (N, 1 + K, D)
    logits = torch.einsum("nd,nkd->nk", hidden, cand_emb)  # (N, 1 + K)
    return logits, candidates


def _negative_ok(targets: Tensor, negatives: Tensor) -> Tensor:
    """bool (N, K): a negative counts unless it is PAD or equals the query's own target."""
    return (negatives != PAD) & (negatives != targets.unsqueeze(1))


def bce_negatives(hidden: Tensor, item_emb: Tensor, targets: Tensor, negatives: Tensor) -> Tensor:
    """Binary cross-entropy with K negatives (SASRec's loss for K = 1).

    Per query: ``-log sigmoid(s_target) - sum_k log(1 - sigmoid(s_k))`` over the valid negatives
    (a negative equal to the target, or PAD, is skipped); summing (not averaging) over k keeps the
    K = 1 case identical to SASRec.

    Parameters
    ----------
    hidden : float (N, D); item_emb : float (V, D); targets : int64 (N,), PAD ignored;
    negatives : int64 (N, K).

    Returns
    -------
    Scalar mean over non-PAD targets.
    """
    logits, _ = _candidate_logits(hidden, item_emb, targets, negatives)  # (N, 1 + K)
    pos_term = F.softplus(-logits[:, 0])  # (N,) = -log sigmoid(s_pos)
    neg_terms = F.softplus(logits[:, 1:])  # (N, K) = -log(1 - sigmoid(s_neg))
    neg_terms = neg_terms.masked_fill(~_negative_ok(targets, negatives), 0.0)
    return _masked_mean(pos_term + neg_terms.sum(dim=1), targets != PAD)


def contrastive_skip_terms(
    context: Tensor,
    item_emb: Tensor,
    seqs: Tensor,
    fb: Tensor,
    next_pos: Tensor,
    tau: float = 0.1,
    cosine: bool = True,
    seen_only: bool = False,
) -> tuple[Tensor, Tensor]:
    """Per-query InfoNCE terms of the skip-contrastive loss, and which queries count.

    Query (b, i) counts when ``seqs[b, i] != PAD``, ``next_pos[b, i] != PAD`` and row b has at
    least one skipped play whose track differs from that positive. A query without a negative
    would contribute exactly ``-log(f/f) = 0`` and no gradient; averaging it in would only dilute
    the loss by the batch's share of skip-free sessions (defect 2 of the reference code).

    Negatives are *positions*: a track skipped twice in a session counts twice. They come only
    from the query's own row (an explicit (B, T) mask broadcast over the row's queries) and
    include skips later in the session, as in the paper; with ``seen_only`` only the skips at or
    before the query's position, the ones its input holds.

    Parameters
    ----------
    context : float (B, T, D), c at each position: model output y_hat_i or input embedding e_{t_i}.
    item_emb : float (V, D), item table used for positives and negatives.
    seqs : int64 (B, T), left-padded with PAD. fb : int64 (B, T), 1 = skipped play.
    next_pos : int64 (B, T), next non-skipped track of the session, PAD where none.
    tau : temperature of ``f(x, c) = exp(cos(x, c) / tau)``.
    cosine : True for the paper's ``cos(x, c) / tau``; False for the plain dot product ``x . c``
        (tau unused), which with ``c = y_hat_i`` is the very score the ranking sorts by.
    seen_only : negatives only from key positions j <= i (rows are in time order).

    Returns
    -------
    per_query : float (B, T), ``-log(f(p, c) / (f(p, c) + sum_n f(n, c)))`` (0 where not counted).
    valid : bool (B, T), the queries that count.
    """
    unit = (lambda x: F.normalize(x, dim=-1)) if cosine else (lambda x: x)
    scale = 1.0 / tau if cosine else 1.0
    c = unit(context)  # (B, T, D)
    pos = unit(item_emb[next_pos])  # (B, T, D)
    cand = unit(item_emb[seqs])  # (B, T, D): every play of the row, key index j

    is_neg = (fb == 1) & (seqs != PAD)  # (B, T_key): skipped real plays of row b
    # (B, T_query, T_key): row b's skips, minus those equal to query i's positive
    neg_ok = is_neg.unsqueeze(1) & (seqs.unsqueeze(1) != next_pos.unsqueeze(2))
    if seen_only:
        T = seqs.shape[1]
        neg_ok = neg_ok & torch.ones(T, T, dtype=torch.bool, device=seqs.device).tril()  # key j <= query i

    pos_logit = (c * pos).sum(dim=-1) * scale  # (B, T)
    neg_logit = torch.einsum("bid,bjd->bij", c, cand) * scale  # (B, T, T), same row b only
    neg_logit = neg_logit.masked_fill(~neg_ok, _NEG_INF)  # padding / plays never in the denominator
    logits = torch.cat([pos_logit.unsqueeze(-1), neg_logit], dim=-1)  # (B, T, 1 + T)
    per_query = torch.logsumexp(logits, dim=-1) - pos_logit  # (B, T); pos column is never -inf

    valid = (seqs != PAD) & (next_pos != PAD) & neg_ok.any(dim=-1)  # (B, T)
    per_query = torch.where(valid, per_query, torch.zeros_like(per_query))
    return per_query, valid


def contrastive_skip_loss(
    context: Tensor,
    item_emb: Tensor,
    seqs: Tensor,
    fb: Tensor,
    next_pos: Tensor,
    tau: float = 0.1,
    cosine: bool = True,
    seen_only: bool = False,
) -> tuple[Tensor, Tensor]:
    """The paper's skip-contrastive InfoNCE loss, averaged over the queries that count.

    Shapes as in :func:`contrastive_skip_terms` (context (B, T, D), item_emb (V, D), seqs / fb /
    next_pos int64 (B, T)). Returns ``(loss, n_queries)``: the scalar mean over valid queries
    (0 with grad when there is none) and the int64 0-dim count of valid queries, left on the device
    so that callers decide when to synchronise (``int(n_queries)``).
    """
    per_query, valid = contrastive_skip_terms(context, item_emb, seqs, fb, next_pos, tau, cosine, seen_only)
    n_queries = valid.sum()
    return per_query.sum() / n_queries.clamp(min=1), n_queries


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x <= 0, stable at both ends (Maechler 2012)."""
    x = x.clamp(max=-1e-7)  # exp(0) = 1 would give log(0)
    near_zero = x > -math.log(2.0)
    return torch.where(near_zero, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def negative_target_loss(scores: Tensor, skipped_targets: Tensor) -> Tensor:
    """Unlikelihood term that pushes an observed skipped next track down.

    Per query: ``-log(1 - softmax(scores)[skipped])``, computed from the log-softmax with a stable
    ``log(1 - exp(.))``; probabilities are clamped just below 1.

    Parameters
    ----------
    scores : float (N, V) (or (..., V)); the PAD column may be -inf.
    skipped_targets : int64 (N,) (or (...)); the skipped track to push down, PAD where none.

    Returns
    -------
    Scalar mean over non-PAD skipped targets.
    """
    scores = scores.reshape(-1, scores.shape[-1])  # (N, V)
    skipped_targets = skipped_targets.reshape(-1)  # (N,)
    log_p = F.log_softmax(scores, dim=-1).gather(1, skipped_targets.unsqueeze(1)).squeeze(1)  # (N,)
    keep = skipped_targets != PAD
    # PAD rows gather the -inf PAD column; give them a harmless value before the non-linearity
    log_p = torch.where(keep, log_p, torch.full_like(log_p, -1.0))
    return _masked_mean(-_log1mexp(log_p), keep)


def negative_target_chunked(hidden: Tensor, table: Tensor, skipped_targets: Tensor, chunk: int,
                            n_scored: int | None = None) -> Tensor:
    """``negative_target_loss`` without the (N, V) scores: ``log p`` of the skipped track is minus its
    full-softmax cross-entropy, computed in catalogue chunks (``full_softmax.cross_entropy_terms``).

    Parameters
    ----------
    hidden : float (N, D); table : float32 (V', D), rows 0..n_scored-1 scored; skipped_targets : int64 (N,),
    PAD where none; chunk : catalogue columns scored at once.

    Returns
    -------
    Scalar mean over non-PAD skipped targets.
    """
    log_p = -full_softmax.cross_entropy_terms(hidden, table, skipped_targets, chunk, n_scored)  # (N,)
    keep = skipped_targets != PAD
    log_p = torch.where(keep, log_p, torch.full_like(log_p, -1.0))
    return _masked_mean(-_log1mexp(log_p), keep)


def row_negative_logits(hidden: Tensor, item_emb: Tensor, targets: Tensor, negatives: Tensor,
                        log_q: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Logits of each position's target and of its ROW's K negatives, without an (N, K, D) gather.

    Parameters
    ----------
    hidden : float (B, T, D); item_emb : float (V, D); targets : int64 (B, T), PAD = no target;
    negatives : int64 (B, K), shared by every position of a row; log_q : float (V,) or None, the log
        sampling probability of each item: each candidate's logit becomes ``s - log q`` (Yi et al.,
        RecSys 2019), which makes a sampled softmax unbiased in the limit for a non-uniform sampler.

    Returns
    -------
    logits : float (B, T, 1 + K), column 0 the target, -inf where a negative is PAD or the target.
    keep : bool (B, T), positions with a target.
    """
    pos = (hidden * item_emb[targets]).sum(-1, keepdim=True)  # (B, T, 1)
    neg = torch.einsum("btd,bkd->btk", hidden, item_emb[negatives])  # (B, T, K)
    if log_q is not None:
        pos = pos - log_q[targets].unsqueeze(-1)
        neg = neg - log_q[negatives].unsqueeze(1)
    ok = (negatives != PAD).unsqueeze(1) & (negatives.unsqueeze(1) != targets.unsqueeze(-1))  # (B, T, K)
    return torch.cat([pos, neg.masked_fill(~ok, _NEG_INF)], dim=-1), targets != PAD


def sampled_softmax_rows(hidden: Tensor, item_emb: Tensor, targets: Tensor, negatives: Tensor,
                         log_q: Tensor | None = None) -> Tensor:
    """Softmax over each position's target and its row's K negatives (B, K), logQ-corrected when ``log_q``
    is given; per query ``-log softmax(logits)[target]``, scalar mean over non-PAD targets."""
    logits, keep = row_negative_logits(hidden, item_emb, targets, negatives, log_q)
    per_query = torch.logsumexp(logits, dim=-1) - logits[..., 0]  # (B, T)
    return _masked_mean(per_query, keep)


def negative_target_rows(hidden: Tensor, item_emb: Tensor, skipped_targets: Tensor, negatives: Tensor) -> Tensor:
    """``negative_target_loss`` over a sampled candidate set, for catalogues too big to score whole: per
    query ``-log(1 - p)``, ``p = softmax([s_skipped, s_neg_1..K])[0]`` over its row's negatives (B, K);
    negatives equal to the skipped track, or PAD, are masked.  Scalar mean over non-PAD skipped targets."""
    logits, keep = row_negative_logits(hidden, item_emb, skipped_targets, negatives)
    log_p = logits[..., 0] - torch.logsumexp(logits, dim=-1)  # (B, T)
    log_p = torch.where(keep, log_p, torch.full_like(log_p, -1.0))
    return _masked_mean(-_log1mexp(log_p), keep)


def shared_negative_logits(hidden: Tensor, item_emb: Tensor, targets: Tensor, negatives: Tensor,
                           log_q: Tensor | None = None) -> Tensor:
    """Logits of each query's target and of K negatives shared by EVERY query (one (N, D) x (D, K) product).

    Parameters
    ----------
    hidden : float (N, D), prediction vectors; item_emb : float (V, D); targets : int64 (N,);
    negatives : int64 (K,), drawn once for the whole batch; log_q : float (V,) or None, subtracted
        from every candidate's logit (logQ correction, as in :func:`row_negative_logits`).

    Returns
    -------
    float (N, 1 + K): column 0 the target, then the negatives; -inf where a negative is the query's
    own target (an accidental hit would otherwise be pushed down as if it were wrong).
    """
    # one gather for targets and negatives: one full-table gradient buffer in backward, not two
    cand = item_emb[torch.cat([targets, negatives])]  # (N + K, D)
    pos_emb, neg_emb = cand[: len(targets)], cand[len(targets):]
    pos = (hidden * pos_emb).sum(-1, keepdim=True)  # (N, 1)
    neg = hidden @ neg_emb.T  # (N, K)
    if log_q is not None:
        pos = pos - log_q[targets].unsqueeze(1)
        neg = neg - log_q[negatives].unsqueeze(0)
    hit = negatives.unsqueeze(0) == targets.unsqueeze(1)  # (N, K)
    return torch.cat([pos, neg.masked_fill(hit, _NEG_INF)], dim=1)


def sampled_softmax_shared(hidden: Tensor, item_emb: Tensor, targets: Tensor, negatives: Tensor,
                           log_q: Tensor | None = None) -> Tensor:
    """Sampled softmax whose K negatives are shared by every query of the batch (Klenitskiy & Vasilev,
    RecSys 2023: a few thousand shared negatives come close to the full softmax at a fraction of its cost).

    Per query: ``logsumexp([s_t - log q_t, s_k - log q_k for k not the target]) - (s_t - log q_t)``.

    Parameters
    ----------
    hidden : float (..., D); targets : int64 (...), PAD = no target (ignored); item_emb : float (V, D);
    negatives : int64 (K,); log_q : float (V,) or None.

    Returns
    -------
    Scalar mean over non-PAD targets. Callers that drop the PAD positions first (``hidden[keep]``)
    also skip their share of the (N, K) product.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])  # (N, D)
    targets = targets.reshape(-1)  # (N,)
    logits = shared_negative_logits(hidden, item_emb, targets, negatives, log_q)  # (N, 1 + K)
    per_query = torch.logsumexp(logits, dim=1) - logits[:, 0]  # (N,); column 0 is never -inf
    return _masked_mean(per_query, targets != PAD)


def negative_target_shared(hidden: Tensor, item_emb: Tensor, skipped_targets: Tensor, negatives: Tensor) -> Tensor:
    """``negative_target_loss`` against the batch's shared negatives (K,): per query ``-log(1 - p)``,
    ``p = softmax([s_skipped, s_k for k not the skipped track])[0]``; shapes as in
    :func:`sampled_softmax_shared`. Scalar mean over non-PAD skipped targets."""
    hidden = hidden.reshape(-1, hidden.shape[-1])  # (N, D)
    skipped_targets = skipped_targets.reshape(-1)  # (N,)
    logits = shared_negative_logits(hidden, item_emb, skipped_targets, negatives)  # (N, 1 + K)
    log_p = logits[:, 0] - torch.logsumexp(logits, dim=1)  # (N,)
    keep = skipped_targets != PAD
    log_p = torch.where(keep, log_p, torch.full_like(log_p, -1.0))
    return _masked_mean(-_log1mexp(log_p), keep)


def shared_softmax_with_repeats(hidden: Tensor, item_emb: Tensor, targets: Tensor, negatives: Tensor,
                                log_q: Tensor | None, items: Tensor, weights: Tensor, available: Tensor,
                                negative_seen: Tensor, bonus) -> Tensor:
    """:func:`sampled_softmax_shared` for a model with a repeat head (``SeqRec.copy_terms``).

    The tracks the repeat head scores for a query (its plays so far, and the successors of its
    track) carry a term the shared negatives know nothing about, so they enter the softmax exactly,
    each once, as candidates of their own (no logQ: they are not sampled, and neither is a target
    among them); a shared negative that is one of them is masked, so nothing counts twice.

    Parameters
    ----------
    hidden : float (N, D); targets : int64 (N,), no PAD; negatives : int64 (K,); log_q : float (V,) or None;
    items, weights : (N, C), the tracks of the repeat head and their weights; available : bool (N, C),
    which of them the query may copy; negative_seen : bool (N, K), the negatives among the available
    items; bonus : ``SeqRec.repeat_bonus``.

    Returns
    -------
    Scalar mean over the queries.
    """
    C = items.shape[1]
    j = torch.arange(C, device=items.device)
    weights = weights * available
    logits = shared_negative_logits(hidden, item_emb, targets, negatives, log_q)  # (N, 1 + K)
    pos = logits[:, :1] + bonus(weights, items, targets.unsqueeze(1))  # (N, 1)
    if log_q is not None:
        # a target the query may copy is one of the exact candidates, not a sampled one: no logQ
        # (with it, a rare replayed track looked certain already and the repeat head learned little)
        copied = ((items == targets.unsqueeze(1)) & available).any(1, keepdim=True)  # (N, 1)
        pos = pos + torch.where(copied, log_q[targets].unsqueeze(1), torch.zeros_like(pos))
    neg = logits[:, 1:].masked_fill(negative_seen, _NEG_INF)
    # each available track once (its last entry), never the target itself
    same = items.unsqueeze(2) == items.unsqueeze(1)  # (N, C, C)
    later_copy = (same & available.unsqueeze(1) & (j.view(1, 1, -1) > j.view(1, -1, 1))).any(-1)  # (N, C)
    own = available & ~later_copy & (items != targets.unsqueeze(1))
    cand = (hidden.unsqueeze(1) * item_emb[items]).sum(-1) + bonus(weights, items, items)  # (N, C)
    cand = cand.masked_fill(~own, _NEG_INF)
    every = torch.cat([pos, neg, cand], dim=1)
    return (torch.logsumexp(every, dim=1) - pos[:, 0]).mean()


def negatives_seen(negatives: Tensor, seqs: Tensor, rows: Tensor, cols: Tensor, extra: Tensor | None = None) -> Tensor:
    """bool (N, K): which shared negatives (K,) a query at (rows, cols) of ``seqs`` (B, T) has played
    up to its column, or finds among its ``extra`` tracks (N, E; PAD is never a negative).  Per row
    (not per query, which would be an (N, K, T) comparison): the first column holding each negative."""
    T = seqs.shape[1]
    j = torch.arange(T, device=seqs.device)
    first = torch.where(negatives.view(1, -1, 1) == seqs.unsqueeze(1), j, T).amin(-1)  # (B, K)
    seen = first[rows] <= cols.unsqueeze(1)  # (N, K)
    if extra is not None:
        seen = seen | (negatives.view(1, -1, 1) == extra.unsqueeze(1)).any(-1)
    return seen
