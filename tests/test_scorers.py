"""Count baselines scored by hand: most-popular and first-order transitions."""

from __future__ import annotations

import math

import numpy as np
import torch

from toolkit.scorers import MarkovScorer, PopScorer

# train rows: transitions 1->2 (twice), 2->3, 2->1, 1->3; plays: 1 x3, 2 x3, 3 x2
SEQS = np.array([[0, 1, 2], [1, 2, 3], [2, 1, 3]], np.int32)
SKIPS = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]], np.int8)
COUNTS = np.array([0, 3, 3, 2, 0], np.int64)  # track 4 never played


def batch(seqs, fb=None):
    seqs = torch.tensor(seqs, dtype=torch.int64)
    return {"seqs": seqs, "fb": torch.zeros_like(seqs) if fb is None else torch.tensor(fb, dtype=torch.int64)}


def test_popularity_scores_are_log_counts():
    s = PopScorer(COUNTS).scores(batch([[1, 2]]), torch.tensor([0]), torch.tensor([1]))
    assert math.isinf(s[0, 0]) and np.allclose(s[0, 1:].numpy(), [math.log(4), math.log(4), math.log(3), 0.0])


def test_transitions_by_hand_with_popularity_tie_break():
    scorer = MarkovScorer(SEQS, SKIPS, COUNTS, hide=False)
    # queries: after 1 (row 0 col 1), after 2 (row 0 col 2), and after 3 which has no outgoing transition
    s = scorer.scores(batch([[0, 1, 2], [0, 0, 3]]), torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2]))
    pop = np.log1p(COUNTS) / (math.log(4) + 1)
    assert np.allclose(s[0, 1:].numpy(), pop[1:] + np.array([0, 2, 1, 0]), atol=1e-6)
    assert np.allclose(s[1, 1:].numpy(), pop[1:] + np.array([1, 0, 1, 0]), atol=1e-6)
    assert np.allclose(s[2, 1:].numpy(), pop[1:], atol=1e-6)


def test_positives_only_transitions_skip_over_skipped_plays():
    # without the skipped 3 in row 1, its transition 2->3 disappears; 2->1 (row 2) stays
    scorer = MarkovScorer(SEQS, SKIPS, COUNTS, hide=True)
    s = scorer.scores(batch([[0, 1, 2]]), torch.tensor([0]), torch.tensor([2]))
    pop = np.log1p(COUNTS) / (math.log(4) + 1)
    assert np.allclose(s[0, 1:].numpy(), pop[1:] + np.array([1, 0, 0, 0]), atol=1e-6)
