"""Count baselines scored by hand: most-popular, first-order transitions, session kNN and repeats."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from toolkit.artifacts import Workspace
from toolkit.cli import app
from toolkit.config import PrepConfig, TrainConfig
from toolkit.prep import prep
from toolkit.scorers import MarkovScorer, PopScorer, RepeatScorer, SessionKNNScorer
from toolkit.train import train

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


# three train sessions, oldest first; session 1 spans two rows.  Sets: s0 {1, 2, 4} (its 2 skipped),
# s1 {2, 4, 5}, s2 {1, 3, 6}.  Track 7 is never played.
KNN_SEQS = np.array([[0, 1, 4, 2], [0, 0, 2, 4], [0, 0, 0, 5], [3, 1, 6, 6]], np.int32)
KNN_SKIPS = np.array([[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.int8)
KNN_SESSIONS = np.array([0, 1, 1, 2], np.int64)
KNN_COUNTS = np.array([0, 2, 2, 1, 2, 1, 2, 0], np.int64)
KNN_POP = np.log1p(KNN_COUNTS) / (math.log(3) + 1)  # popularity squashed below 1


def knn_scores(query, col, k, m, fb=None, hide=False):
    scorer = SessionKNNScorer(KNN_SEQS, KNN_SKIPS, KNN_SESSIONS, KNN_COUNTS, hide, k=k, m=m)
    return scorer.scores(batch([query], fb and [fb]), torch.tensor([0]), torch.tensor([col]))[0].numpy()


@pytest.mark.parametrize("col,k,m,neighbour_scores", [
    # plays 1 (weight 1), 4 (weight 2): s0 = 1 + 2 = 3, s1 = 2, s2 = 1; neighbours s0 and s1
    (3, 2, 3, [3, 3 + 2, 0, 3 + 2, 2, 0, 0]),
    (3, 1, 3, [3, 3, 0, 3, 0, 0, 0]),  # s0 alone
    (3, 1, 2, [0, 2, 0, 2, 2, 0, 0]),  # the 2 most recent candidates are s1 and s2: s1 wins
    (3, 1, 1, [1, 0, 1, 0, 0, 1, 0]),  # the most recent candidate only: s2
    (2, 1, 3, [1, 0, 1, 0, 0, 1, 0]),  # play 1 alone: s0 and s2 tie at 1, the more recent (s2) wins
])
def test_session_knn_by_hand(col, k, m, neighbour_scores):
    s = knn_scores([0, 0, 1, 4], col, k, m)
    assert math.isinf(s[0]) and s[0] < 0
    assert np.allclose(s[1:], KNN_POP[1:] + np.array(neighbour_scores), atol=1e-6)


def test_session_knn_weighs_a_repeated_track_by_its_latest_play():
    # plays 4, 1, 4, 2 at positions 1..4: 1 weighs 2, 4 weighs 3 (not 1 + 3), 2 weighs 4
    # s0 {1, 2, 4} = 2 + 3 + 4 = 9, s1 {2, 4, 5} = 3 + 4 = 7, s2 {1, 3, 6} = 2; k = 2 keeps s0 and s1
    s = knn_scores([4, 1, 4, 2], 3, 2, 3)
    assert np.allclose(s[1:], KNN_POP[1:] + np.array([9, 9 + 7, 0, 9 + 7, 7, 0, 0]), atol=1e-6)


def test_session_knn_positives_only_hides_skips_in_train_and_query():
    # the query's skipped 2 takes no position: 1 weighs 1, 4 weighs 2; s0 loses its skipped 2
    s = knn_scores([0, 2, 1, 4], 3, 2, 3, fb=[0, 1, 0, 0], hide=True)
    assert np.allclose(s[1:], KNN_POP[1:] + np.array([3, 2, 0, 3 + 2, 2, 0, 0]), atol=1e-6)
    # read with the skip: 2 weighs 1, 1 weighs 2, 4 weighs 3; s0 = 6, s1 = 1 + 3 = 4, s2 = 2
    s = knn_scores([0, 2, 1, 4], 3, 2, 3, fb=[0, 1, 0, 0])
    assert np.allclose(s[1:], KNN_POP[1:] + np.array([6, 6 + 4, 0, 6 + 4, 4, 0, 0]), atol=1e-6)


def test_repeat_scores_the_sessions_plays_above_transitions_by_hand():
    # plays 2, 1, 2 at positions 1..3: 2 scores 1 + 3 = 4, 1 scores 2.  Below them, Markov after the
    # last play (2): 2->3 and 2->1 once each, plus popularity, divided by the query's best + 1
    scorer = RepeatScorer(MarkovScorer(SEQS, SKIPS, COUNTS, hide=False))
    s = scorer.scores(batch([[0, 2, 1, 2]]), torch.tensor([0]), torch.tensor([3]))[0].numpy()
    pop = np.log1p(COUNTS) / (math.log(4) + 1)
    back = pop + np.array([0, 1, 0, 1, 0])
    back = back / (back[1:].max() + 1)
    assert math.isinf(s[0]) and s[0] < 0
    assert np.allclose(s[1:], back[1:] + np.array([2, 4, 0, 0]), atol=1e-6)
    assert np.argsort(-s[1:]).tolist() == [1, 0, 2, 3]  # tracks 2, 1, 3, 4


def test_repeat_positives_only_never_offers_a_skipped_play_again():
    # the skipped 1 is hidden: only 2 (position 1) repeats; Markov reads the last kept play, 2
    scorer = RepeatScorer(MarkovScorer(SEQS, SKIPS, COUNTS, hide=True))
    s = scorer.scores(batch([[0, 0, 2, 1]], [[0, 0, 0, 1]]), torch.tensor([0]), torch.tensor([3]))[0].numpy()
    pop = np.log1p(COUNTS) / (math.log(4) + 1)
    back = pop + np.array([0, 1, 0, 0, 0])  # positives-only transitions after 2: 2->1 only
    back = back / (back[1:].max() + 1)
    assert np.allclose(s[1:], back[1:] + np.array([0, 1, 0, 0]), atol=1e-6)


def count_scorers(hide):
    markov = MarkovScorer(KNN_SEQS, KNN_SKIPS, KNN_COUNTS, hide)
    return [SessionKNNScorer(KNN_SEQS, KNN_SKIPS, KNN_SESSIONS, KNN_COUNTS, hide, k=2, m=2), RepeatScorer(markov)]


@pytest.mark.parametrize("hide", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_session_scorers_are_causal_and_rank_the_full_catalogue(hide, seed):
    rng = np.random.default_rng(seed)
    seqs = rng.integers(0, 8, size=(3, 5))
    fb = rng.integers(0, 2, size=(3, 5)) * (seqs != 0)
    rows, cols = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 2, 3, 4])
    for scorer in count_scorers(hide):
        s = scorer.scores(batch(seqs, fb), rows, cols)
        assert s.shape == (4, 8) and torch.isinf(s[:, 0]).all() and torch.isfinite(s[:, 1:]).all()
        for n in range(4):
            later = seqs.copy(), fb.copy()
            r, c = int(rows[n]), int(cols[n])
            later[0][r, c + 1 :] = rng.integers(1, 8, size=4 - c)
            later[1][r, c + 1 :] = 1 - later[1][r, c + 1 :]
            later[0][np.arange(3) != r] = rng.integers(0, 8, size=5)  # other rows are other sessions
            again = scorer.scores(batch(*later), rows[n : n + 1], cols[n : n + 1])
            assert torch.equal(again[0], s[n]), (type(scorer).__name__, n)


@pytest.fixture
def tiny_ws(tiny_logs, tmp_path):
    workspace = Workspace.at(tmp_path / "ws")
    prep([tiny_logs], workspace, PrepConfig(name="tiny", max_len=4))
    return workspace


@pytest.mark.parametrize("model", ["sknn", "repeat"])
@pytest.mark.parametrize("feedback", ["all", "positives-only"])
def test_session_baselines_train_end_to_end(tiny_ws, model, feedback):
    result = train(tiny_ws, TrainConfig(model=model, feedback=feedback))
    v = result.valid
    assert result.status == "finished" and v["n_pos"] == 1
    # one positive query in the tiny valid split: every ranking metric reads the same rank
    rank = round(1 / v["mrr@10"])
    assert v["mrr@10"] == pytest.approx(1 / rank) and v["ndcg@10"] == pytest.approx(1 / math.log2(rank + 1))
    assert [v[f"hr@{k}"] for k in (1, 5, 10, 20)] == [float(rank <= k) for k in (1, 5, 10, 20)]
    runner = CliRunner()
    out = runner.invoke(app, ["train", "--workspace", str(tiny_ws.root), "--model", model, "--feedback", feedback])
    assert out.exit_code == 0, out.output
    assert "already trained: reused" in out.output and f"valid NDCG@10 {v['ndcg@10']:.4f}" in out.output


def test_report_scores_the_session_baselines_on_test(tiny_ws):
    for model in ("markov", "repeat", "sknn"):
        train(tiny_ws, TrainConfig(model=model))
    out = CliRunner().invoke(app, ["report", "--workspace", str(tiny_ws.root), "--json"])
    assert out.exit_code == 0, out.output
    rep = json.loads(out.output)
    assert [g["model"] for g in rep["groups"]] == ["markov", "repeat", "sknn"]
    assert all("overlap@10" in g["metrics"] for g in rep["groups"])


def test_repeat_ranks_the_listeners_earlier_successors_above_replays():
    scorer = RepeatScorer(MarkovScorer(SEQS, SKIPS, COUNTS, hide=False))
    b = batch([[0, 2, 1, 2]])
    plain = scorer.scores(b, torch.tensor([0]), torch.tensor([3]))[0].numpy()
    b["succ"] = torch.zeros(1, 4, 2, dtype=torch.int64)
    b["succ"][0, 3] = torch.tensor([4, 3])  # before, 2 was followed by 4 (latest), then by 3
    s = scorer.scores(b, torch.tensor([0]), torch.tensor([3]))[0].numpy()
    unit = 4 * 5 // 2 + 1  # above any replay score of a 4-column row
    assert math.isinf(s[0]) and s[0] < 0
    assert np.allclose(s[1:], plain[1:] + np.array([0, 0, 1 * unit, 2 * unit]), atol=1e-4)
    assert np.argsort(-s[1:]).tolist() == [3, 2, 1, 0]  # 4, 3, then the replays 2 and 1


def test_repeat_ranks_the_windows_below_the_replays_and_above_the_transitions():
    markov = MarkovScorer(SEQS, SKIPS, COUNTS, hide=False)
    scorer = RepeatScorer(markov, window=1)
    b = batch([[0, 2, 1, 2]])
    b["succ"] = torch.zeros(1, 4, 2, dtype=torch.int64)
    b["succ"][0, 3] = torch.tensor([4, 3])  # before, 2 was followed by 4, and then came 3
    s = scorer.scores(b, torch.tensor([0]), torch.tensor([3]))[0].numpy()
    back = markov.scores(b, torch.tensor([0]), torch.tensor([3]))[0].numpy()
    back = back / (back[1:].max() + 1.0)  # the back-off, in [0, 1)
    tier = 1 * 2 // 2 * 1 + 1  # one unit above the largest window sum (K = 1, W = 1)
    unit = (4 * 5 // 2 + 1) * tier
    # replays 1 (position 2) and 2 (positions 1 + 3) in tiers, 3 from the window, 4 the successor
    assert np.allclose(s[1:], back[1:] + np.array([2 * tier, 4 * tier, 1, unit]), atol=1e-4)
    assert np.argsort(-s[1:]).tolist() == [3, 1, 0, 2]  # 4, 2, 1, then 3


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_the_rule_rank_start_orders_tracks_as_the_repeat_baseline_does(data):
    """The head's rule places (SeqRec, rule_rank) against RepeatScorer's tiers, on any row and successors:
    before training, with no dot products, the network ranks every track as the rule's integer tiers do."""
    from toolkit.config import ModelConfig
    from toolkit.model import SeqRec

    T, K, W = 5, 2, 1
    row = data.draw(st.lists(st.integers(0, 4), min_size=T, max_size=T), label="row")
    col = data.draw(st.integers(0, T - 1), label="col")
    succ_q = data.draw(st.lists(st.integers(0, 4), min_size=K + K * W, max_size=K + K * W), label="succ")
    b = batch([row])
    b["succ"] = torch.zeros(1, T, K + K * W, dtype=torch.int64)
    b["succ"][0, col] = torch.tensor(succ_q)
    rule = RepeatScorer(MarkovScorer(SEQS, SKIPS, COUNTS, hide=False), window=W)
    tiers = np.floor(rule.scores(b, torch.tensor([0]), torch.tensor([col]))[0, 1:].numpy())  # the back-off is < 1
    torch.manual_seed(0)
    model = SeqRec(ModelConfig(n_items=4, max_len=T, d_model=8, n_heads=2, n_layers=1, dropout=0.0,
                               repeat_head=True, successors=K, window=W, rule_rank=True)).eval()
    items, weights, available = model.copy_terms(torch.zeros(1, T, 8), b["seqs"], b["succ"], torch.tensor([0]),
                                                 torch.tensor([col]))
    net = model.scores_with_repeats(torch.zeros(1, 8), weights * available, items)[0, 1:].detach().numpy()
    assert (np.sign(net[:, None] - net[None, :]) == np.sign(tiers[:, None] - tiers[None, :])).all()


def _transitions_reference(seqs, skips, n_items, m, hide):
    """Counter over consecutive real plays of each row, sorted by (-count, track) per source."""
    from collections import Counter

    pairs = Counter()
    for row, sk in zip(seqs.tolist(), skips.tolist()):
        real = [t for t, s in zip(row, sk) if t != 0 and not (hide and s == 1)]
        pairs.update(zip(real, real[1:]))
    items = np.zeros((n_items + 1, m), np.int32)
    counts = np.zeros((n_items + 1, m), np.float32)
    for src in range(n_items + 1):
        best = sorted(((-c, dst) for (a, dst), c in pairs.items() if a == src))[:m]
        for j, (neg_c, dst) in enumerate(best):
            items[src, j], counts[src, j] = dst, -neg_c
    return items, counts


def test_top_transitions_by_hand():
    from toolkit.scorers import top_transitions

    items, counts, _, _ = top_transitions(SEQS, SKIPS, 4, 2, hide=False)
    # after 1: 2 twice, then 3 once; after 2: 1 and 3 once each (ties by id); 3 and 4: none
    assert items[1].tolist() == [2, 3] and counts[1].tolist() == [2.0, 1.0]
    assert items[2].tolist() == [1, 3] and counts[2].tolist() == [1.0, 1.0]
    assert items[3].tolist() == [0, 0] and counts[3].tolist() == [0.0, 0.0]
    hidden_items, hidden_counts, _, _ = top_transitions(SEQS, SKIPS, 4, 2, hide=True)
    assert hidden_items[2].tolist() == [1, 0] and hidden_counts[2].tolist() == [1.0, 0.0]  # 2 -> 3 was skipped


@pytest.mark.parametrize("hide", [False, True])
def test_top_transitions_match_a_counter_reference(hide):
    from hypothesis import given, settings, strategies as st

    from toolkit.scorers import top_transitions

    @settings(max_examples=60, deadline=None)
    @given(st.data())
    def check(data):
        n_items = data.draw(st.integers(1, 6))
        B, T = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 6))
        seqs = np.array(data.draw(st.lists(st.lists(st.integers(0, n_items), min_size=T, max_size=T),
                                           min_size=B, max_size=B)), np.int32)
        skips = np.array(data.draw(st.lists(st.lists(st.integers(0, 1), min_size=T, max_size=T),
                                            min_size=B, max_size=B)), np.int8)
        m = data.draw(st.integers(1, 4))
        users = np.array(data.draw(st.lists(st.integers(0, 2), min_size=B, max_size=B)), np.int64)
        got = top_transitions(seqs, skips, n_items, m, hide, users)
        want = _transitions_reference(seqs, skips, n_items, m, hide)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        # each listener's own counts, summed over listeners, are the counts of every transition
        from collections import Counter
        from toolkit.model import own_key
        own = Counter()
        for row, sk, u in zip(seqs.tolist(), skips.tolist(), users.tolist()):
            real = [t for t, x in zip(row, sk) if t != 0 and not (hide and x == 1)]
            own.update(own_key(u, a, b, n_items) for a, b in zip(real, real[1:]))
        assert got[2].tolist() == sorted(own) and got[3].tolist() == [own[k] for k in sorted(own)]

    check()


def test_every_scorer_meets_the_scorer_protocol():
    from toolkit.config import ModelConfig
    from toolkit.model import SeqRec
    from toolkit.scorers import KeepRateScorer, NeuralScorer, Scorer

    markov = MarkovScorer(SEQS, SKIPS, COUNTS, hide=False)
    made = [PopScorer(COUNTS), markov, RepeatScorer(markov), SessionKNNScorer(SEQS, SKIPS, np.arange(3), COUNTS, False),
            KeepRateScorer(SEQS, SKIPS, 4), NeuralScorer(SeqRec(ModelConfig(n_items=4, max_len=3, d_model=8)), False)]
    assert all(isinstance(s, Scorer) for s in made)
    assert not isinstance(object(), Scorer)
