"""Hand-computed ranking metrics; batch independence; why sampled ranks are not used."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from toolkit.metrics import (
    coverage_at_k,
    hit_at_k,
    mrr_at_k,
    ndcg_at_k,
    rank_of_targets,
)

NINF = float("-inf")


def test_rank_of_targets_excludes_pad_and_ties_are_pessimistic():
    scores = torch.tensor(
        [
            [99.0, 0.1, 0.9, 0.5, 0.3],  # PAD column scores highest: must not count
            [NINF, 0.1, 0.9, 0.5, 0.3],
            [NINF, 0.5, 0.5, 0.5, 0.5],  # all tied: the worst rank, not the best
            [NINF, 0.2, 0.7, 0.7, 0.1],  # target tied with one other item
        ]
    )
    targets = torch.tensor([2, 4, 1, 3])
    assert rank_of_targets(scores, targets).tolist() == [1, 3, 4, 2]


def test_rank_of_targets_rejects_pad_targets():
    with pytest.raises(ValueError, match="PAD"):
        rank_of_targets(torch.zeros(2, 4), torch.tensor([1, 0]))


def test_hit_ndcg_mrr_hand_computed():
    ranks = np.array([1, 2, 5, 10, 11])
    assert hit_at_k(ranks, 10).tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert hit_at_k(ranks, 1).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    expected_ndcg = [1.0, 1 / math.log2(3), 1 / math.log2(6), 1 / math.log2(11), 0.0]
    assert ndcg_at_k(ranks, 10).tolist() == pytest.approx(expected_ndcg)
    assert ndcg_at_k(ranks, 4).tolist() == pytest.approx([1.0, 1 / math.log2(3), 0.0, 0.0, 0.0])
    assert mrr_at_k(ranks, 10).tolist() == pytest.approx([1.0, 1 / 2, 1 / 5, 1 / 10, 0.0])
    assert mrr_at_k(torch.tensor(ranks), 5).tolist() == pytest.approx([1.0, 1 / 2, 1 / 5, 0.0, 0.0])


def test_metrics_are_batch_independent():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(20, 31, generator=gen)
    scores[:, 0] = NINF
    targets = torch.randint(1, 31, (20,), generator=gen)
    full = rank_of_targets(scores, targets)
    for batch_size in (1, 7, 20):
        parts = [
            rank_of_targets(scores[i : i + batch_size], targets[i : i + batch_size])
            for i in range(0, 20, batch_size)
        ]
        ranks = np.concatenate(parts)
        assert np.array_equal(ranks, full)
        for metric in (hit_at_k, ndcg_at_k, mrr_at_k):
            per_batch = np.concatenate([metric(p, 10) for p in parts])
            assert np.array_equal(per_batch, metric(full, 10))


def test_sampled_candidate_rank_inflates_hit_rate():
    """Keep sampled metrics out: with 100 sampled negatives a target ranked 50th of 1000 looks
    like a top-10 hit, while its full-catalogue HR@10 is 0 (Krichene & Rendle, KDD 2020)."""
    n_items, n_queries = 1000, 64
    gen = torch.Generator().manual_seed(0)
    scores = torch.empty(n_queries, n_items + 1)
    targets = torch.empty(n_queries, dtype=torch.long)
    for q in range(n_queries):
        order = torch.randperm(n_items, generator=gen) + 1  # items from best to worst
        scores[q, order] = torch.arange(n_items, 0, -1, dtype=torch.float)
        targets[q] = order[49]  # full rank 50
    scores[:, 0] = NINF

    full_hr = hit_at_k(rank_of_targets(scores, targets), 10).mean()

    # the reference code's evaluation, inline: rank among the target + 100 random negatives
    sampled_ranks = []
    for q in range(n_queries):
        cand = torch.randperm(n_items, generator=gen)[:101] + 1
        cand = cand[cand != targets[q]][:100]
        sampled_ranks.append(1 + int((scores[q, cand] >= scores[q, targets[q]]).sum()))
    sampled_hr = hit_at_k(np.array(sampled_ranks), 10).mean()

    assert full_hr == 0.0
    assert sampled_hr > 0.8  # expected rank among 101 is about 1 + 100 * 49 / 999 = 5.9


def test_coverage_at_k():
    topk = torch.tensor([[1, 2, 3], [2, 3, 4], [0, 1, 2]])  # PAD ignored
    assert coverage_at_k(topk, 10) == pytest.approx(4 / 10)
    assert coverage_at_k(np.array([[5, 5]]), 5) == pytest.approx(1 / 5)
