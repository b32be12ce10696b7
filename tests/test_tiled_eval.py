"""Ranking in item tiles (toolkit/topk.py) gives what ranking the whole score block gives."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from toolkit import evaluate, metrics, topk
from toolkit.config import ModelConfig
from toolkit.data import SplitArrays
from toolkit.evaluate import run_queries
from toolkit.model import SeqRec
from toolkit.schema import PAD
from toolkit.scorers import NeuralScorer, PopScorer
from toolkit.topk import ItemTiles, best, item_tile, rank_in_tiles


def dense(tiles: ItemTiles, banned: torch.Tensor | None) -> torch.Tensor:
    """The whole (N, width) score block, written out independently of ``ItemTiles.tile``."""
    s = tiles.hidden @ tiles.table.T
    s[:, PAD] = float("-inf")
    if tiles.items is not None:
        s = s.scatter_add(1, tiles.items, tiles.weights)
    if banned is not None:
        s.scatter_(1, banned, float("-inf"))
    return s


def assert_same_top(scores: torch.Tensor, got: torch.Tensor, want: torch.Tensor) -> None:
    """The same scores in the same order, and the same tracks wherever the k-th score is not tied."""
    got_s, want_s = scores.gather(1, got), scores.gather(1, want)
    assert torch.equal(got_s, want_s)
    for row in range(len(scores)):
        kth = want_s[row, -1]
        assert set(got[row][got_s[row] > kth].tolist()) == set(want[row][want_s[row] > kth].tolist())
        if int((scores[row] == kth).sum()) == int((want_s[row] == kth).sum()):  # no tie across the boundary
            assert set(got[row].tolist()) == set(want[row].tolist())


def integer_tiles(seed: int, n: int, width: int, copies: bool) -> ItemTiles:
    """Small integer scores: exact in any order of arithmetic, and full of ties."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randint(-2, 3, (n, 3), generator=g).float()
    table = torch.randint(-2, 3, (width, 3), generator=g).float()
    if not copies:
        return ItemTiles(hidden, table)
    items = torch.randint(0, width, (n, 5), generator=g)
    return ItemTiles(hidden, table, items, torch.randint(0, 3, (n, 5), generator=g).float())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tile", [1, 7, 64, 10_000])
@pytest.mark.parametrize("copies,exclude", [(False, False), (True, False), (False, True), (True, True)])
def test_tiles_rank_and_top_like_the_whole_block(seed, tile, copies, exclude):
    n, width = 24, 157
    tiles = integer_tiles(seed, n, width, copies)
    g = torch.Generator().manual_seed(100 + seed)
    targets = torch.randint(1, width, (n,), generator=g)
    banned = torch.randint(0, width, (n, 4), generator=g) if exclude else None
    if exclude:
        banned[:3, 0] = targets[:3]  # a banned target ranks last
    listed = torch.randint(0, width, (n, 6), generator=g)
    scores = dense(tiles, banned)
    got = rank_in_tiles(tiles, targets, 10, tile, banned, listed)
    assert np.array_equal(got.rank.numpy(), metrics.rank_of_targets(scores, targets))
    assert_same_top(scores, got.top, torch.topk(scores, 10, dim=1).indices)
    assert torch.equal(got.top, best(scores, 10)[1])  # and ties go to the lower id, however the tiles cut
    assert torch.equal(got.listed, scores.gather(1, listed))
    if exclude:
        assert (got.rank[:3] == width - 1).all()


def test_a_target_score_off_by_a_bit_is_counted_again_from_its_tile():
    """``of`` must agree with the tiles bit for bit; where it does not, the tile's value wins."""

    @dataclass(frozen=True)
    class Off(ItemTiles):
        def of(self, items, block=1024):
            return super().of(items, block) + 0.5  # as if another kernel had rounded otherwise

    base = integer_tiles(0, 16, 90, copies=True)
    off = Off(base.hidden, base.table, base.items, base.weights)
    targets = torch.arange(1, 17)
    got = rank_in_tiles(off, targets, 10, 8)
    assert np.array_equal(got.rank.numpy(), metrics.rank_of_targets(dense(base, None), targets))


def test_best_breaks_ties_to_the_lower_id_by_hand():
    s = torch.tensor([[float("-inf"), 3.0, 1.0, 3.0, 3.0, 2.0], [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    v, i = best(s, 2)
    assert i.tolist() == [[1, 3], [1, 2]] and v.tolist() == [[3.0, 3.0], [1.0, 1.0]]
    assert best(s, 4)[1].tolist() == [[1, 3, 4, 5], [1, 2, 3, 4]]
    assert best(s, 9)[1].tolist() == [[1, 3, 4, 5, 2, 0], [1, 2, 3, 4, 5, 0]]  # k past the row: all of it


def test_item_tile_by_hand():
    assert item_tile(576, 1_000_001, 1 << 23) == 14_336  # 8,388,608 / 576 = 14,563, down to 14 x 1,024
    assert item_tile(100_000, 1_000_001, 1 << 23) == 1_024  # never below one aligned block
    assert item_tile(10, 5_000, 1 << 23) == 5_000  # never wider than the catalogue


def split(sessions: int, length: int, n_items: int, seed: int) -> SplitArrays:
    rng = np.random.default_rng(seed)
    seqs = rng.integers(1, n_items + 1, size=(sessions, length)).astype(np.int32)
    seqs[::5, 0] = seqs[::5, 2]  # some replays, for the repeat head and exclude_played
    seqs[::7, :3] = PAD  # short sessions
    skips = (rng.random((sessions, length)) < 0.3).astype(np.int8)
    nxt = np.zeros_like(seqs)
    nxt[:, :-1] = seqs[:, 1:]
    nxt[seqs == PAD] = PAD
    rs = np.arange(sessions, dtype=np.int64)
    return SplitArrays(seqs=seqs, skips=skips, next_item=nxt, next_pos=nxt.copy(), row_session=rs)


MODELS = {
    "sasrec": dict(),
    "repeat-head": dict(repeat_head=True),
    "bert4rec": dict(causal=False),
    "gru4rec": dict(encoder="gru"),
}


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("exclude_played", [False, True])
@pytest.mark.parametrize("hide", [False, True])
def test_run_queries_in_tiles_equals_the_chunks(monkeypatch, model, exclude_played, hide):
    torch.manual_seed(3)
    n_items = 300
    a = split(90, 8, n_items, seed=1)
    m = SeqRec(ModelConfig(n_items=n_items, max_len=8, d_model=16, n_heads=2, n_layers=1, dropout=0.0,
                           **MODELS[model])).eval()
    # small budgets: several chunks and several tiles even for this catalogue
    monkeypatch.setattr(evaluate, "SCORE_BUDGET", 8192)
    monkeypatch.setattr(topk, "TILE_ALIGN", 32)
    kw = dict(n_items=n_items, exclude_played=exclude_played)
    chunks = run_queries(NeuralScorer(m, hide), a, torch.device("cpu"), tiled=False, **kw)
    tiles = run_queries(NeuralScorer(m, hide), a, torch.device("cpu"), tiled=True, **kw)
    assert len(chunks.rank) > 300
    for field in ("rank", "top", "session", "skipped"):
        assert np.array_equal(getattr(tiles, field), getattr(chunks, field)), field
    for field in ("auc", "auc_seen"):
        assert np.array_equal(getattr(tiles, field), getattr(chunks, field), equal_nan=True), field


def test_tiles_are_taken_for_large_catalogues_and_scorers_that_have_them(monkeypatch):
    torch.manual_seed(0)
    n_items = 200
    a = split(20, 6, n_items, seed=2)
    m = SeqRec(ModelConfig(n_items=n_items, max_len=6, d_model=8, n_heads=2, n_layers=1, dropout=0.0)).eval()
    calls = []
    real = topk.rank_in_tiles
    monkeypatch.setattr(topk, "rank_in_tiles", lambda *args, **kw: calls.append(1) or real(*args, **kw))
    run_queries(NeuralScorer(m, False), a, torch.device("cpu"), n_items=n_items)
    assert not calls  # a small catalogue keeps today's chunks
    monkeypatch.setattr(evaluate, "TILED_FROM", n_items)
    tiled = run_queries(NeuralScorer(m, False), a, torch.device("cpu"), n_items=n_items)
    assert calls
    calls.clear()
    counts = np.r_[0, np.arange(n_items)].astype(np.int64)
    pop = run_queries(PopScorer(counts), a, torch.device("cpu"), n_items=n_items)
    assert not calls and len(pop.rank) == len(tiled.rank)  # dense baselines fall back to the chunks
