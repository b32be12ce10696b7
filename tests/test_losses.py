"""Hand-computed values for every loss in toolkit/losses.py on 2-4 row tensors."""

from __future__ import annotations

import math

import pytest
import torch

from toolkit.losses import (
    bce_negatives,
    contrastive_skip_loss,
    contrastive_skip_terms,
    full_cross_entropy,
    negative_target_loss,
    negative_target_rows,
    negative_target_shared,
    sampled_softmax_rows,
    sampled_softmax_shared,
)

TAU = 0.1


def lse(*xs: float) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _candidates(target: int, negatives: list[int]) -> list[int]:
    """The target, then each negative that is neither PAD nor the target itself."""
    return [target] + [k for k in negatives if k not in (0, target)]


def per_query_softmax(hidden, item_emb, targets, negatives, log_q=None) -> float:
    """Reference, one query at a time: mean over non-PAD targets of ``-log softmax`` of the target
    among its own negatives (N, K), each logit ``s - log q`` when ``log_q`` is given."""
    losses = []
    for h, t, negs in zip(hidden.tolist(), targets.tolist(), negatives.tolist()):
        if t == 0:
            continue
        logits = [sum(a * b for a, b in zip(h, item_emb[c].tolist())) - (float(log_q[c]) if log_q is not None else 0.0)
                  for c in _candidates(t, negs)]
        losses.append(lse(*logits) - logits[0])
    return sum(losses) / max(len(losses), 1)


def per_query_negative_target(hidden, item_emb, skipped, negatives) -> float:
    """Reference, one query at a time: mean over non-PAD skipped tracks of ``-log(1 - p)``, ``p`` the
    softmax probability of the skipped track among its own negatives (N, K)."""
    losses = []
    for h, t, negs in zip(hidden.tolist(), skipped.tolist(), negatives.tolist()):
        if t == 0:
            continue
        logits = [sum(a * b for a, b in zip(h, item_emb[c].tolist())) for c in _candidates(t, negs)]
        losses.append(-math.log1p(-math.exp(logits[0] - lse(*logits))))
    return sum(losses) / max(len(losses), 1)


# ---------------------------------------------------------------------------------------------
# full softmax cross-entropy
# ---------------------------------------------------------------------------------------------


def test_full_cross_entropy_ignores_pad_and_pad_column():
    ninf = float("-inf")
    scores = torch.tensor(
        [[ninf, 1.0, 2.0, 0.0], [ninf, 0.5, 0.5, 3.0], [ninf, 9.0, 9.0, 9.0]], requires_grad=True
    )
    targets = torch.tensor([2, 1, 0])  # third row has no target
    loss = full_cross_entropy(scores, targets)
    expected = ((lse(1.0, 2.0, 0.0) - 2.0) + (lse(0.5, 0.5, 3.0) - 0.5)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.isfinite(scores.grad).all()
    assert torch.all(scores.grad[2] == 0)


def test_full_cross_entropy_all_pad_is_zero_with_grad():
    scores = torch.randn(3, 5, requires_grad=True)
    loss = full_cross_entropy(scores, torch.zeros(3, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(scores.grad == 0)


def test_full_cross_entropy_accepts_btv():
    scores = torch.randn(2, 3, 6)
    targets = torch.tensor([[0, 1, 2], [3, 0, 5]])
    flat = full_cross_entropy(scores.reshape(6, 6), targets.reshape(6))
    assert full_cross_entropy(scores, targets).item() == pytest.approx(flat.item())


# ---------------------------------------------------------------------------------------------
# sampled softmax and BCE
# ---------------------------------------------------------------------------------------------

# item 1..4 embeddings in 2-d, row 0 is PAD
EMB = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 2.0]])
HID = torch.tensor([[1.0, 2.0], [0.5, -1.0], [3.0, 3.0]])
# dot products s[n][i] = HID[n] . EMB[i]
S = [[float(h @ e) for e in EMB] for h in HID]


def test_sampled_softmax_masks_negative_equal_to_target_and_pad():
    targets = torch.tensor([1, 2, 0])
    negatives = torch.tensor([[2, 1, 4], [3, 0, 2], [1, 2, 3]])  # row 0 has target 1 as negative
    loss = sampled_softmax_rows(HID.unsqueeze(1), EMB, targets.unsqueeze(1), negatives)  # one query per row
    row0 = lse(S[0][1], S[0][2], S[0][4]) - S[0][1]
    row1 = lse(S[1][2], S[1][3]) - S[1][2]  # PAD and the target itself dropped
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_sampled_softmax_log_q_correction():
    q = torch.tensor([1e-9, 0.1, 0.2, 0.3, 0.4])
    log_q = q.log()
    targets = torch.tensor([3, 4])
    negatives = torch.tensor([[1, 2], [1, 3]])
    loss = sampled_softmax_rows(HID[:2].unsqueeze(1), EMB, targets.unsqueeze(1), negatives, log_q=log_q)
    lq = [math.log(x) for x in q.tolist()]
    row0 = lse(S[0][3] - lq[3], S[0][1] - lq[1], S[0][2] - lq[2]) - (S[0][3] - lq[3])
    row1 = lse(S[1][4] - lq[4], S[1][1] - lq[1], S[1][3] - lq[3]) - (S[1][4] - lq[4])
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-5)


def test_bce_negatives_sums_valid_negatives():
    targets = torch.tensor([1, 3, 0])
    negatives = torch.tensor([[2, 1], [4, 2], [1, 2]])  # row 0's second negative is its target
    loss = bce_negatives(HID, EMB, targets, negatives)
    row0 = softplus(-S[0][1]) + softplus(S[0][2])
    row1 = softplus(-S[1][3]) + softplus(S[1][4]) + softplus(S[1][2])
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_sampled_losses_gradient_flows():
    hid = HID.clone().requires_grad_(True)
    emb = EMB.clone().requires_grad_(True)
    targets = torch.tensor([1, 2, 3])
    negatives = torch.tensor([[2, 3], [4, 1], [1, 2]])
    sampled = sampled_softmax_rows(hid.unsqueeze(1), emb, targets.unsqueeze(1), negatives)
    (sampled + bce_negatives(hid, emb, targets, negatives)).backward()
    assert hid.grad.abs().sum() > 0 and emb.grad.abs().sum() > 0
    assert torch.isfinite(hid.grad).all() and torch.isfinite(emb.grad).all()


# ---------------------------------------------------------------------------------------------
# contrastive skip loss
# ---------------------------------------------------------------------------------------------

# unit-ish item vectors at distinct angles: cos(item a, item b) = cos(angle_a - angle_b)
ANGLES = [0.0, 0.0, 0.4, 1.1, 1.9, 2.6, 0.9]  # index 0 is PAD (its vector is zeroed below)
ITEM_EMB = torch.tensor([[math.cos(a), math.sin(a)] for a in ANGLES]) * torch.tensor(
    [[0.0], [1.0], [2.0], [0.5], [1.5], [3.0], [1.0]]
)  # different norms, so the test also checks that the loss uses cosine similarity


def cos_items(a: int, b: int) -> float:
    return math.cos(ANGLES[a] - ANGLES[b])


def nce(c: int, p: int, negs: list[int]) -> float:
    """The paper's loss for context item c, positive p, negatives negs (context = e_c)."""
    fp = math.exp(cos_items(p, c) / TAU)
    return -math.log(fp / (fp + sum(math.exp(cos_items(n, c) / TAU) for n in negs)))


def run_terms(seqs, fb, next_pos):
    seqs, fb, next_pos = (torch.tensor(x) for x in (seqs, fb, next_pos))
    context = ITEM_EMB[seqs]  # context = input embedding e_{t_i}
    return contrastive_skip_terms(context, ITEM_EMB, seqs, fb, next_pos, tau=TAU)


def test_contrastive_hand_computed_and_mean_over_valid_queries():
    # row 0: plays 1 (skip) 2 3 (skip) 4; next positives 2 4 4 4 -
    # row 1: padding, then plays 5 6; no skip, so no query counts
    seqs = [[1, 2, 3, 4], [0, 0, 5, 6]]
    fb = [[1, 0, 1, 0], [0, 0, 0, 0]]
    next_pos = [[2, 4, 4, 0], [0, 0, 6, 0]]
    per_query, valid = run_terms(seqs, fb, next_pos)
    assert valid.tolist() == [[True, True, True, False], [False, False, False, False]]
    expected = [nce(1, 2, [1, 3]), nce(2, 4, [1, 3]), nce(3, 4, [1, 3])]
    assert per_query[0, :3].tolist() == pytest.approx(expected, rel=1e-5)

    t = [torch.tensor(x) for x in (seqs, fb, next_pos)]
    loss, n = contrastive_skip_loss(ITEM_EMB[t[0]], ITEM_EMB, *t, tau=TAU)
    assert int(n) == 3
    assert loss.item() == pytest.approx(sum(expected) / 3, rel=1e-5)  # not / 4, not / 8


def test_contrastive_negative_equal_to_positive_is_excluded():
    # item 2 is skipped at position 0 and played later: it must not be its own negative
    seqs = [[2, 1, 2, 3]]
    fb = [[1, 1, 0, 0]]
    next_pos = [[2, 2, 3, 0]]
    per_query, valid = run_terms(seqs, fb, next_pos)
    assert valid.tolist() == [[True, True, True, False]]
    expected = [nce(2, 2, [1]), nce(1, 2, [1]), nce(2, 3, [2, 1])]
    assert per_query[0, :3].tolist() == pytest.approx(expected, rel=1e-5)


def test_contrastive_negatives_never_come_from_another_row():
    # row 0 has no skip; row 1 has skips. Row 0's queries must not count, and changing row 1's
    # skipped tracks must not change anything in row 0.
    seqs = [[1, 2, 3], [4, 5, 6]]
    fb = [[0, 0, 0], [1, 1, 0]]
    next_pos = [[2, 3, 0], [6, 6, 0]]
    per_query, valid = run_terms(seqs, fb, next_pos)
    assert not valid[0].any()
    assert per_query[0].tolist() == [0.0, 0.0, 0.0]
    expected_row1 = [nce(4, 6, [4, 5]), nce(5, 6, [4, 5])]
    assert per_query[1, :2].tolist() == pytest.approx(expected_row1, rel=1e-5)

    # row 0 with a skip of its own: its per-query values use row 0's skip only
    fb2 = [[1, 0, 0], [1, 1, 0]]
    per_a, _ = run_terms(seqs, fb2, next_pos)
    per_b, _ = run_terms([[1, 2, 3], [5, 4, 6]], fb2, next_pos)  # row 1's skipped tracks changed
    assert per_a[0].tolist() == pytest.approx([nce(1, 2, [1]), nce(2, 3, [1]), 0.0], rel=1e-5)
    assert torch.equal(per_a[0], per_b[0])
    # and row 0 alone gives the same values as inside the batch
    per_alone, _ = run_terms(seqs[:1], fb2[:1], next_pos[:1])
    assert torch.allclose(per_alone[0], per_a[0])


def test_contrastive_padding_does_not_enter_denominator():
    seqs = [[1, 2, 3]]
    fb = [[1, 0, 0]]
    next_pos = [[2, 3, 0]]
    base, _ = run_terms(seqs, fb, next_pos)
    padded, valid = run_terms([[0, 0, 0, 1, 2, 3]], [[0, 0, 0, 1, 0, 0]], [[0, 0, 0, 2, 3, 0]])
    assert torch.allclose(padded[0, 3:], base[0], atol=1e-6)
    assert not valid[0, :3].any()
    # a zero vector in the denominator would add exp(0) = 1 per padding slot
    assert base[0, 0].item() == pytest.approx(nce(1, 2, [1]), rel=1e-5)


def test_contrastive_gradient_flows_and_empty_batch_is_zero():
    seqs = torch.tensor([[1, 2, 3, 4], [0, 5, 6, 1]])
    fb = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0]])
    next_pos = torch.tensor([[2, 4, 4, 0], [0, 6, 1, 0]])
    emb = ITEM_EMB.clone().requires_grad_(True)
    context = torch.randn(2, 4, 2, requires_grad=True)
    loss, n = contrastive_skip_loss(context, emb, seqs, fb, next_pos, tau=TAU)
    assert int(n) == 5
    loss.backward()
    assert torch.isfinite(emb.grad).all() and torch.isfinite(context.grad).all()
    assert context.grad[0, :3].abs().sum() > 0 and emb.grad.abs().sum() > 0
    assert torch.all(context.grad[0, 3] == 0) and torch.all(context.grad[1, 0] == 0)

    loss0, n0 = contrastive_skip_loss(context, emb, seqs, torch.zeros_like(fb), next_pos, tau=TAU)
    assert int(n0) == 0 and loss0.item() == 0.0
    loss0.backward()  # still differentiable


# ---------------------------------------------------------------------------------------------
# negative-target (unlikelihood) loss
# ---------------------------------------------------------------------------------------------


def test_negative_target_loss_hand_computed():
    ninf = float("-inf")
    scores = torch.tensor([[ninf, 1.0, 2.0, 0.0], [ninf, 0.0, 0.0, 0.0], [ninf, 1.0, 1.0, 1.0]],
                          requires_grad=True)
    skipped = torch.tensor([2, 3, 0])
    loss = negative_target_loss(scores, skipped)
    p0 = math.exp(2.0) / (math.exp(1.0) + math.exp(2.0) + math.exp(0.0))
    p1 = 1.0 / 3.0
    expected = (-math.log(1 - p0) - math.log(1 - p1)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.isfinite(scores.grad).all() and torch.all(scores.grad[2] == 0)
    assert scores.grad[0, 2] > 0  # descending the loss lowers the skipped track's score


def test_negative_target_loss_is_stable_when_skip_is_certain():
    scores = torch.tensor([[float("-inf"), 200.0, 0.0], [0.0, -200.0, 0.0]], requires_grad=True)
    loss = negative_target_loss(scores, torch.tensor([1, 1]))
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(scores.grad).all()
    # second row: p = e^-200 / (2 + e^-200) is tiny, so its term is ~0
    alone = negative_target_loss(scores[1:].detach(), torch.tensor([1]))
    assert alone.item() == pytest.approx(0.0, abs=1e-12)


def test_negative_target_rows_by_hand():
    # D = 1 so every logit is hidden * embedding; item 1 is the skipped track, items 2, 3 negatives
    item_emb = torch.tensor([[0.0], [2.0], [1.0], [-1.0]])
    hidden = torch.tensor([[1.0], [0.5]])
    skipped = torch.tensor([1, 0])  # 0 = PAD: no skipped track for the second query
    negatives = torch.tensor([[2, 3], [2, 3]])
    p = math.exp(2.0) / (math.exp(2.0) + math.exp(1.0) + math.exp(-1.0))
    expected = -math.log(1.0 - p)  # the PAD row is excluded from the mean
    got = negative_target_rows(hidden.unsqueeze(1), item_emb, skipped.unsqueeze(1), negatives)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # a negative equal to the skipped track is ignored
    same = negative_target_rows(hidden.unsqueeze(1), item_emb, skipped.unsqueeze(1), torch.tensor([[2, 1], [2, 3]]))
    p2 = math.exp(2.0) / (math.exp(2.0) + math.exp(1.0))
    assert same.item() == pytest.approx(-math.log(1.0 - p2), rel=1e-6)


def test_row_shared_negatives_equal_the_per_query_losses():
    """Sharing a row's negatives across its positions is only a faster layout, not another loss."""
    g = torch.Generator().manual_seed(0)
    B, T, D, V, K = 3, 4, 5, 9, 6
    hidden = torch.randn(B, T, D, generator=g)
    item_emb = torch.randn(V, D, generator=g)
    targets = torch.randint(1, V, (B, T), generator=g)
    targets[0, :2] = 0  # padding positions
    negatives = torch.randint(0, V, (B, K), generator=g)
    log_q = torch.log(torch.rand(V, generator=g) + 0.1)
    per_query_negs = negatives.unsqueeze(1).expand(B, T, K).reshape(-1, K)
    flat = hidden.reshape(-1, D), item_emb, targets.reshape(-1), per_query_negs
    assert sampled_softmax_rows(hidden, item_emb, targets, negatives, log_q).item() == pytest.approx(
        per_query_softmax(*flat, log_q=log_q), rel=1e-5)
    assert negative_target_rows(hidden, item_emb, targets, negatives).item() == pytest.approx(
        per_query_negative_target(*flat), rel=1e-5)


def test_contrastive_dot_product_context_uses_raw_scores_without_tau():
    # context "score": plain dot products (the ranking's scores), no normalisation and no temperature
    seqs = torch.tensor([[1, 2, 3, 4]])
    fb = torch.tensor([[1, 0, 1, 0]])
    next_pos = torch.tensor([[2, 4, 4, 0]])
    context = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 0.0]]])
    emb = ITEM_EMB
    per_query, valid = contrastive_skip_terms(context, emb, seqs, fb, next_pos, tau=TAU, cosine=False)

    def dot(c, item):
        return float((context[0, c] * emb[item]).sum())

    expected = []
    for i, p in enumerate([2, 4, 4]):
        logits = [dot(i, p), dot(i, 1), dot(i, 3)]
        expected.append(-logits[0] + math.log(sum(math.exp(x) for x in logits)))
    assert valid.tolist() == [[True, True, True, False]]
    assert per_query[0, :3].tolist() == pytest.approx(expected, rel=1e-5)


def test_contrastive_seen_only_keeps_the_skips_up_to_the_query():
    # plays 1 (skip) 2 3 (skip) 4: with seen_only, query 0 has skip 1, query 1 skip 1, query 2 skips 1 and 3
    seqs, fb, next_pos = [[1, 2, 3, 4]], [[1, 0, 1, 0]], [[2, 4, 4, 0]]
    t = [torch.tensor(x) for x in (seqs, fb, next_pos)]
    per_query, valid = contrastive_skip_terms(ITEM_EMB[t[0]], ITEM_EMB, *t, tau=TAU, seen_only=True)
    assert valid.tolist() == [[True, True, True, False]]
    expected = [nce(1, 2, [1]), nce(2, 4, [1]), nce(3, 4, [1, 3])]
    assert per_query[0, :3].tolist() == pytest.approx(expected, rel=1e-5)
    # a query before any skip has no negative and does not count
    t = [torch.tensor(x) for x in ([[2, 1, 3]], [[0, 1, 0]], [[3, 3, 0]])]
    _, valid = contrastive_skip_terms(ITEM_EMB[t[0]], ITEM_EMB, *t, tau=TAU, seen_only=True)
    assert valid.tolist() == [[False, True, False]]


# shared negatives: items 1 = (1, 0), 2 = (0, 1), 3 = (1, 1); row 0 is PAD
SHARED_EMB = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
SHARED_NEG = torch.tensor([2, 3])  # the same two negatives for every query


def test_shared_softmax_by_hand():
    hidden = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    targets = torch.tensor([1, 2])
    # query 0: s = (1 | 0, 1); query 1's target 2 is also negative 0, an accidental hit: s = (2 | -, 2)
    want = ((lse(1, 0, 1) - 1) + (lse(2, 2) - 2)) / 2
    got = sampled_softmax_shared(hidden, SHARED_EMB, targets, SHARED_NEG)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_shared_softmax_logq_by_hand():
    hidden = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    q = [0.0, 0.5, 0.25, 0.25]
    log_q = torch.log(torch.tensor([1e-12, *q[1:]]))
    lq = [0.0] + [math.log(x) for x in q[1:]]
    # every candidate, the target included, is lowered by its own log q
    want0 = lse(1 - lq[1], 0 - lq[2], 1 - lq[3]) - (1 - lq[1])
    want1 = lse(2 - lq[2], 2 - lq[3]) - (2 - lq[2])
    got = sampled_softmax_shared(hidden, SHARED_EMB, torch.tensor([1, 2]), SHARED_NEG, log_q)
    assert got.item() == pytest.approx((want0 + want1) / 2, rel=1e-6)


def test_shared_softmax_masks_every_accidental_hit():
    # all negatives are the target: only the target's own column is left, so -log(1) = 0
    got = sampled_softmax_shared(torch.tensor([[3.0, -1.0]]), SHARED_EMB, torch.tensor([3]), torch.tensor([3, 3]))
    assert got.item() == pytest.approx(0.0, abs=1e-7)
    # a repeated negative counts once per draw (i.i.d. draws, as logQ assumes): s = (1 | 1, 1)
    twice = sampled_softmax_shared(torch.tensor([[1.0, 0.0]]), SHARED_EMB, torch.tensor([1]), torch.tensor([3, 3]))
    assert twice.item() == pytest.approx(lse(1, 1, 1) - 1, rel=1e-6)


def test_shared_softmax_ignores_padding_positions_and_takes_any_shape():
    hidden = torch.tensor([[[1.0, 0.0], [5.0, -3.0]], [[7.0, 7.0], [0.0, 2.0]]])  # (B=2, T=2, D=2)
    targets = torch.tensor([[1, 0], [0, 2]])  # positions (0, 1) and (1, 0) are padding
    want = ((lse(1, 0, 1) - 1) + (lse(2, 2) - 2)) / 2
    hidden.requires_grad_(True)
    got = sampled_softmax_shared(hidden, SHARED_EMB, targets, SHARED_NEG)
    assert got.item() == pytest.approx(want, rel=1e-6)
    got.backward()
    assert hidden.grad[0, 1].abs().sum() == 0 and hidden.grad[1, 0].abs().sum() == 0
    empty = sampled_softmax_shared(hidden, SHARED_EMB, torch.zeros(2, 2, dtype=torch.long), SHARED_NEG)
    assert empty.item() == 0.0 and empty.requires_grad


def test_shared_losses_equal_the_per_query_ones_with_the_negatives_repeated():
    torch.manual_seed(0)
    emb, hidden = torch.randn(9, 4), torch.randn(5, 4)
    targets, negs = torch.tensor([1, 4, 0, 8, 4]), torch.tensor([4, 2, 7, 7, 1, 3])
    log_q = torch.log_softmax(torch.randn(9), dim=0)
    per_query = negs.expand(5, -1)
    assert sampled_softmax_shared(hidden, emb, targets, negs, log_q).item() == pytest.approx(
        per_query_softmax(hidden, emb, targets, per_query, log_q), rel=1e-5)
    assert negative_target_shared(hidden, emb, targets, negs).item() == pytest.approx(
        per_query_negative_target(hidden, emb, targets, per_query), rel=1e-5)


def test_negative_target_shared_by_hand():
    # skipped track 2 scores 0, negative 3 scores 1; negative 2 is the skipped track itself and is masked
    hidden = torch.tensor([[1.0, 0.0]])
    p = math.exp(0) / (math.exp(0) + math.exp(1))
    got = negative_target_shared(hidden, SHARED_EMB, torch.tensor([2]), SHARED_NEG)
    assert got.item() == pytest.approx(-math.log(1 - p), rel=1e-6)


def test_shared_softmax_with_repeats_matches_a_loop_over_the_candidates():
    from toolkit.losses import negatives_seen, shared_softmax_with_repeats

    torch.manual_seed(0)
    V, D = 12, 4
    emb, log_q = torch.randn(V, D), torch.log(torch.rand(V) + 0.1)
    seqs = torch.tensor([[0, 3, 5, 3, 9], [2, 2, 7, 4, 6]])
    rows, cols = torch.tensor([0, 0, 1, 1]), torch.tensor([3, 2, 1, 4])
    targets = torch.tensor([5, 3, 7, 2])  # query 0's target was played before it; so was query 3's
    negatives = torch.tensor([3, 8, 5, 11, 8, 10])  # 3 and 5 are plays of row 0; 8 is drawn twice
    # each query's successors: query 1 may copy 10 (also a negative) and 5 (a play too), query 2 its target 7
    succ = torch.tensor([[0, 0], [10, 5], [7, 0], [0, 0]])
    hidden = torch.randn(4, D)
    j = torch.arange(5)
    repeats = torch.where((j <= cols[:, None]) & (seqs[rows] != 0), torch.rand(4, 5) + 0.5, torch.zeros(4, 5))
    s_weights = torch.rand(4, 2) + 0.5
    items = torch.cat([seqs[rows], succ], 1)
    available = torch.cat([(j <= cols[:, None]) & (seqs[rows] != 0), succ != 0], 1)

    def bonus(w, items, cand):  # the model's rule: a candidate gets the weights of its entries
        return ((cand.unsqueeze(-1) == items.unsqueeze(1)) * w.unsqueeze(1)).sum(-1)

    seen = negatives_seen(negatives, seqs, rows, cols, succ)
    got = shared_softmax_with_repeats(hidden, emb, targets, negatives, log_q, items, torch.cat([repeats, s_weights], 1),
                                      available, seen, bonus)
    expected = []
    for n in range(4):
        row, c, t, h = seqs[rows[n]].tolist(), int(cols[n]), int(targets[n]), hidden[n]
        copyable = {row[k] for k in range(c + 1) if row[k] != 0} | {x for x in succ[n].tolist() if x}

        def extra(x):
            return (float(sum(repeats[n, k] for k in range(c + 1) if row[k] == x))
                    + float(sum(s_weights[n, k] for k in range(2) if int(succ[n, k]) == x)))

        pos = float(h @ emb[t]) - (0.0 if t in copyable else float(log_q[t])) + extra(t)  # a copy is not sampled
        logits = [pos]
        logits += [float(h @ emb[x]) - float(log_q[x]) for x in negatives.tolist() if x != t and x not in copyable]
        for x in sorted(copyable - {t}):  # every copyable track once, exactly, with its repeat term
            logits.append(float(h @ emb[x]) + extra(x))
        expected.append(lse(*logits) - pos)
    assert float(got) == pytest.approx(sum(expected) / 4, rel=1e-5)
