"""The evaluation path: hand-computed metrics on a tiny catalogue, and no dependence on batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
import reference
from toolkit import evaluate as ev
from toolkit.data import SplitArrays, next_skip_rows, with_history


class TableScorer:
    """Scores depend only on the current play: score[item] = table[current item, item]."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def scores(self, batch, rows, cols):
        out = self.table[batch["seqs"][rows, cols]].clone()
        out[:, 0] = float("-inf")
        return out


def split_arrays(seqs, skips, row_session):
    seqs = np.asarray(seqs, np.int32)
    skips = np.asarray(skips, np.int8)
    nxt = np.zeros_like(seqs)
    nxt[:, :-1] = seqs[:, 1:]
    nxt[seqs == 0] = 0
    npos = np.zeros_like(seqs)  # not used by the evaluation
    rs = np.asarray(row_session, np.int64)
    return SplitArrays(seqs=seqs, skips=skips, next_item=nxt, next_pos=npos, row_session=rs)


# catalogue of 4 tracks; after track i the scorer ranks: 1 -> [2, 3, 4, 1]; 2 -> [3, 1, 4, 2]; 3 -> [4, 3, 2, 1]
TABLE = torch.tensor([
    [0, 0, 0, 0, 0],
    [0, 1, 4, 3, 2],
    [0, 3, 1, 4, 2],
    [0, 1, 2, 3, 4],
    [0, 1, 1, 1, 1],
], dtype=torch.float32)


def test_metrics_by_hand():
    # one session 1 -> 2 -> 3 (skipped) -> 4 ; queries at positions 0, 1, 2
    a = split_arrays([[1, 2, 3, 4]], [[0, 0, 1, 0]], [0])
    q = ev.run_queries(TableScorer(TABLE), a, torch.device("cpu"), n_items=4)
    # query 0: next 2 (kept), rank 1; query 1: next 3 (skipped), rank 1; query 2: next 4 (kept), rank 1
    assert q.rank.tolist() == [1, 1, 1] and q.skipped.tolist() == [False, True, False]
    m = ev.summarize(q, 4)
    assert m["hr@1"] == 1.0 and m["skip_hr@10"] == 1.0 and m["delta_hr@10"] == 0.0
    # within-session AUC: the session's skipped track is 3; query 0 scores 2 (4) above 3 (3) -> 1;
    # query 2 (after 3) scores 4 (4) above 3 (3) -> 1
    assert m["auc"] == 1.0


def test_ranks_and_ndcg_by_hand():
    # session 2 -> 4 -> 1. After 2: scores 1:3, 2:1, 3:4, 4:2, so target 4 has 3 tracks scoring >= it: rank 3.
    # After 4 every track scores 1: ties count against the target, so track 1 ranks 4 (last).
    a = split_arrays([[2, 4, 1]], [[0, 0, 0]], [5])
    q = ev.run_queries(TableScorer(TABLE), a, torch.device("cpu"), n_items=4)
    assert q.rank.tolist() == [3, 4]
    m = ev.summarize(q, 4)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(4) + 1 / math.log2(5)) / 2)
    assert m["mrr@10"] == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert m["hr@1"] == 0.0 and m["hr@5"] == 1.0


@pytest.mark.parametrize("batch_rows", [1, 7, 512])
@pytest.mark.parametrize("budget", [5, 1 << 23])
@pytest.mark.parametrize("options", [{}, {"exclude_played": True}, {"positions": "last"}])
def test_results_do_not_depend_on_batching(batch_rows, budget, options, monkeypatch):
    rng = np.random.default_rng(0)
    n_items, rows, width = 30, 40, 6
    seqs = rng.integers(1, n_items + 1, size=(rows, width))
    seqs[rng.random((rows, width)) < 0.2] = 0
    seqs = np.sort(seqs, axis=1)  # padding first, like left-padded rows
    skips = (rng.random((rows, width)) < 0.3).astype(np.int8) * (seqs != 0)
    a = split_arrays(seqs, skips, np.repeat(np.arange(rows // 2), 2))
    table = torch.from_numpy(rng.random((n_items + 1, n_items + 1)).astype(np.float32))
    reference = ev.run_queries(TableScorer(table), a, torch.device("cpu"), batch_rows=rows, n_items=n_items, **options)
    monkeypatch.setattr(ev, "SCORE_BUDGET", budget)
    got = ev.run_queries(TableScorer(table), a, torch.device("cpu"), batch_rows=batch_rows, n_items=n_items,
                         **options)
    for field in ("rank", "skipped", "session", "top"):
        assert np.array_equal(getattr(got, field), getattr(reference, field))
    assert np.allclose(got.auc, reference.auc, equal_nan=True)
    assert np.allclose(got.auc_seen, reference.auc_seen, equal_nan=True)
    got_m, ref_m = ev.summarize(got, n_items), ev.summarize(reference, n_items)
    assert got_m.keys() == ref_m.keys()
    assert all(got_m[k] == ref_m[k] or (math.isnan(got_m[k]) and math.isnan(ref_m[k])) for k in got_m)


def test_a_session_subset_keeps_whole_sessions():
    a = split_arrays([[1, 2, 3], [2, 3, 4], [3, 4, 1], [4, 1, 2]], np.zeros((4, 3)), [0, 1, 2, 3])
    chosen = ev.session_subset(a, 2, seed=0)
    q = ev.run_queries(TableScorer(TABLE), a, torch.device("cpu"), n_items=4, sessions=chosen)
    assert set(q.session.tolist()) == set(chosen.tolist()) and len(q.rank) == 4
    assert ev.session_subset(a, 0, seed=0) is None


def test_last_positions_keep_one_query_per_session():
    # session 0: 1 -> 2 -> 3 (skipped) -> 4 -> 2 (skipped); its last non-skipped next play is 4 (query at col 2)
    # session 1: 3 -> 1; its only query is at col 0
    a = split_arrays([[1, 2, 3, 4, 2], [0, 0, 0, 3, 1]], [[0, 0, 1, 0, 1], [0, 0, 0, 0, 0]], [0, 1])
    mask = ev.query_mask(a, "last")
    assert np.argwhere(mask).tolist() == [[0, 2], [1, 3]]
    q = ev.run_queries(TableScorer(TABLE), a, torch.device("cpu"), n_items=4, positions="last")
    assert q.skipped.tolist() == [False, False] and q.session.tolist() == [0, 1]


def test_auc_counts_skipped_tracks_anywhere_in_the_session():
    # session 1 -> 4 (skipped) -> 2 -> 3 (skipped) -> 4... the query after 1 (target 4) is a skip query; the
    # query after 4 (target 2): table[4] scores every track 1, so 2 ties with skipped 3 (0.5) and skipped 4 (0.5)
    a = split_arrays([[1, 4, 2, 3]], [[0, 1, 0, 1]], [0])
    q = ev.run_queries(TableScorer(TABLE), a, torch.device("cpu"), n_items=4)
    assert q.skipped.tolist() == [True, False, True]
    assert math.isnan(q.auc[0]) and q.auc[1] == 0.5
    # after 1 with target 2, the later skip of 3 counts too: 2 (4) beats 3 (3) and 4 (2) -> 1.0
    b = split_arrays([[1, 2, 3, 4]], [[0, 0, 1, 1]], [0])
    assert ev.run_queries(TableScorer(TABLE), b, torch.device("cpu"), n_items=4).auc[0] == 1.0


def test_seen_auc_counts_only_the_skips_played_up_to_the_query():
    # session 2 (skipped) -> 1 -> 3 -> 4 (skipped); queries after 2 (target 1), after 1 (target 3), after 3 (skip)
    a = split_arrays([[2, 1, 3, 4]], [[1, 0, 0, 1]], [0])
    q = ev.run_queries(TableScorer(TABLE), a, torch.device("cpu"), n_items=4)
    assert q.skipped.tolist() == [False, False, True]
    # after 2: target 1 (3) vs skips 2 (1) and 4 (2) -> 1.0; seen skips {2} only -> 1.0
    # after 1: target 3 (3) vs skips 2 (4) and 4 (2) -> 0.5; seen skips {2}: 3 below 2 -> 0.0
    assert q.auc[:2].tolist() == [1.0, 0.5] and q.auc_seen[:2].tolist() == [1.0, 0.0]
    m = ev.summarize(q, 4)
    assert m["auc"] == 0.75 and m["auc_seen"] == 0.5
    # before any skip there is no seen pair (NaN); a skip in an earlier row of the session counts
    b = split_arrays([[1, 3], [2, 4]], [[0, 1], [0, 0]], [0, 0])
    q = ev.run_queries(TableScorer(TABLE), b, torch.device("cpu"), n_items=4)
    # queries: after 1 (target 3, skipped), after 2 (target 4): seen skips {3}: table[2] 4 (2) below 3 (4) -> 0
    assert q.skipped.tolist() == [True, False] and q.auc_seen[1] == 0.0
    c = split_arrays([[1, 2, 3]], [[0, 0, 1]], [0])
    assert math.isnan(ev.run_queries(TableScorer(TABLE), c, torch.device("cpu"), n_items=4).auc_seen[0])


def test_excluding_played_tracks_reaches_back_into_earlier_rows():
    # one session over two rows: [1, 2] then [3, 2]; the query after 3 targets 2, already played
    a = split_arrays([[1, 2], [3, 2]], [[0, 0], [0, 0]], [0, 0])
    a = SplitArrays(seqs=a.seqs, skips=a.skips, next_item=np.array([[2, 3], [2, 0]], np.int32),
                    next_pos=a.next_pos, row_session=a.row_session)
    plain = ev.run_queries(TableScorer(TABLE), a, torch.device("cpu"), n_items=4)
    # after 3 the table ranks 4, 3, 2, 1: target 2 is third; with 1, 2, 3 removed it ranks last (4) as a miss
    assert plain.rank.tolist() == [1, 1, 3]
    filtered = ev.run_queries(TableScorer(TABLE), a, torch.device("cpu"), n_items=4, exclude_played=True)
    assert filtered.rank.tolist()[2] == 4
    assert filtered.top[2][0] == 4  # the only unplayed track leads the list
    # the query after 1 (target 2, not played yet) keeps rank 1: only 1 is excluded there
    assert filtered.rank.tolist()[0] == 1


def test_popularity_percentile_by_hand():
    from toolkit.metrics import mean_top_popularity, popularity_percentile

    pct = popularity_percentile(np.array([0, 10, 5, 5, 0]))  # PAD, then tracks 1..4
    assert math.isnan(pct[0]) and pct[1:].tolist() == [100.0, 75.0, 75.0, 25.0]
    assert mean_top_popularity(np.array([[1, 4], [2, 0]]), pct) == (100 + 25 + 75) / 3


def test_keep_rate_yardstick_by_hand():
    from toolkit.scorers import KeepRateScorer

    # train: track 1 played 3 times, skipped twice; track 2 played twice, never skipped; 3 unseen
    train = split_arrays([[1, 2, 1], [2, 1, 0]], [[1, 0, 0], [0, 1, 0]], [0, 1])
    s = KeepRateScorer(train.seqs, train.skips, 3)
    overall = 1 - 2 / 5  # 3 of 5 train plays kept
    prior = KeepRateScorer.PRIOR_PLAYS
    expected = [(1 + prior * overall) / (3 + prior), (2 + prior * overall) / (2 + prior), overall]
    assert s.base[1:].tolist() == pytest.approx(expected, rel=1e-6)
    assert s.base[0] == float("-inf")
    # a session 3 -> 2 -> 1 (skipped) -> 3: queries with a kept next play compare it with track 1
    split = split_arrays([[3, 2, 1, 3]], [[0, 0, 1, 0]], [0])
    q = ev.run_queries(s, split, torch.device("cpu"), n_items=3)
    # next play 2 (rate 5/7) beats 1 (rate 4/8): 1; next play 3 (unseen: the overall .6) beats 1: 1
    assert q.auc[~q.skipped].tolist() == [1.0, 1.0]


# top-4 lists: A and B share a session (their common track 1 never counts), C and D have their own
OVERLAP_TOP = np.array([[1, 2, 3, 4], [1, 6, 7, 8], [1, 2, 5, 9], [9, 10, 11, 12]], np.int32)
OVERLAP_SESSION = np.array([0, 0, 1, 2])


def test_top_overlap_by_hand():
    # cross-session pairs: A-C {1, 2}, A-D {}, B-C {1}, B-D {}, C-D {9}
    expected = (2 / 4 + 0 + 1 / 4 + 0 + 1 / 4) / 5
    assert ev.top_overlap(OVERLAP_TOP, OVERLAP_SESSION) == pytest.approx(expected)


def test_top_overlap_extremes_and_padding():
    same = np.tile(np.arange(1, 11, dtype=np.int32), (6, 1))
    sessions = np.arange(6)
    assert ev.top_overlap(same, sessions) == 1.0
    assert ev.top_overlap(same, sessions, n_pairs=4) == 1.0  # sampled pairs too
    assert math.isnan(ev.top_overlap(same, np.zeros(6)))  # one session: no pair
    padded = np.array([[1, 0, 0], [1, 0, 0]], np.int32)  # PAD never counts as a shared track
    assert ev.top_overlap(padded, np.array([0, 1])) == pytest.approx(1 / 3)


def test_top_overlap_sample_is_fixed_and_cross_session():
    rng = np.random.default_rng(3)
    top = np.stack([rng.permutation(30)[:10] + 1 for _ in range(300)]).astype(np.int32)
    sessions = rng.integers(0, 40, size=300)
    a, b = ev.top_overlap(top, sessions, n_pairs=500), ev.top_overlap(top, sessions, n_pairs=500)
    assert a == b and abs(a - 10 / 30) < 0.05  # two random lists of 10 of 30 tracks share a third
    # 200 queries, 5 per session: a session's queries share their list, sessions share nothing, so
    # 19,900 pairs are sampled and any same-session pair drawn would lift the figure above 0
    own = (np.repeat(np.arange(40), 5)[:, None] * 10 + np.arange(1, 11)).astype(np.int32)
    assert ev.top_overlap(own, np.repeat(np.arange(40), 5), n_pairs=500) == 0.0


def test_summarize_reports_the_overlap_of_positive_queries_only():
    q = ev.QueryResults(session=np.r_[OVERLAP_SESSION, 3], skipped=np.array([False, False, False, False, True]),
                        rank=np.ones(5, np.int64), auc=np.full(5, np.nan),
                        top=np.r_[OVERLAP_TOP, [[1, 2, 3, 4]]], auc_seen=np.full(5, np.nan))
    # the skipped query's list (equal to A's) stays out
    assert ev.summarize(q, 12)["overlap@10"] == pytest.approx((2 / 4 + 0 + 1 / 4 + 0 + 1 / 4) / 5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=8), st.integers(2, 5), st.integers(0, 3), st.data())
def test_a_batchs_next_skip_is_the_splits_at_its_rows(lengths, max_len, history, data):
    """``next_skip_rows`` reads a batch's rows and the row after each; it must agree with the whole
    split's ``next_skip`` (history columns: 0) on any rows, across window and session edges."""
    n = sum(lengths)
    items = np.array(data.draw(st.lists(st.integers(1, 6), min_size=n, max_size=n)), np.int32)
    flags = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), np.int8)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    seqs, fb, nxt, npos, rs = kernels.build_sequences(items, flags, offsets, max_len)
    a = SplitArrays(seqs=seqs, skips=fb, next_item=nxt, next_pos=npos, row_session=rs.astype(np.int64))
    want = reference.next_skip(fb, a.row_session)
    if history:
        past = np.array(data.draw(st.lists(st.integers(1, 6), min_size=len(a) * history,
                                           max_size=len(a) * history)), np.int32).reshape(len(a), history)
        a = with_history(a, past, (past % 2).astype(np.int8))  # history skips that must not leak
        want = np.concatenate([np.zeros((len(a), history), np.int8), want], axis=1)
    idx = np.sort(np.array(data.draw(st.lists(st.integers(0, len(a) - 1), min_size=1, unique=True)), np.int64))
    assert np.array_equal(next_skip_rows(a, idx), want[idx])
