"""Full-catalogue ranking in item tiles: the target's rank, a running top-k and a few listed scores.

``evaluate.run_queries`` ranks a chunk of queries on their whole (queries, catalogue) score block.
To keep that block small on a large catalogue it scores few queries at a time (8 at a million
tracks), so every pass reads the whole item table for a handful of queries.  Here many queries are
scored one tile of tracks at a time: each tile's scores are made, folded into

- the rank: per tile, how many tracks score at least the target's score (``metrics.rank_of_targets``'
  pessimistic tie rule; the PAD column never counts, the target itself once);
- the top-k: the tile's best (``best``: ties to the lower track id) merged with the top-k so far;
- the scores of a few listed tracks per query (the within-session AUC's), gathered where they fall;

and dropped.  The block (queries, tile) stays under a memory budget; nothing catalogue-wide per query
is held.  The target's score must be the very number its tile holds, or the target could count
itself zero or two times: it is computed up front as the tiles compute it (a matrix product, then the
copy terms in the same order), checked against its tile, and a query block where the two differ in
any bit (a BLAS kernel may round another shape differently) is counted again with the tile's value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from toolkit.schema import PAD

TILE_ALIGN = 1024  # tile widths are multiples of this: BLAS rounds such shapes as it rounds the whole row


@dataclass(frozen=True)
class ItemTiles:
    """The catalogue scores of N queries, made on demand for any range of tracks.

    ``score(n, i) = hidden[n] · table[i]`` (-inf for PAD), plus the repeat head's copy terms: the
    sum of ``weights[n, c]`` over the c with ``items[n, c] == i``, added in c order, as
    ``SeqRec.scores_with_repeats`` adds them.
    """

    hidden: Tensor  # float (N, D) the queries' prediction vectors
    table: Tensor  # float (width, D) item table, row PAD included
    items: Tensor | None = None  # int64 (N, C) tracks with a copy term, or None
    weights: Tensor | None = None  # float (N, C) their terms (0 where a track is not available)

    @property
    def width(self) -> int:
        return self.table.shape[0]

    def tile(self, lo: int, hi: int) -> Tensor:
        """float (N, hi - lo): the scores of tracks ``lo .. hi - 1``."""
        s = self.hidden @ self.table[lo:hi].T  # (N, t)
        if lo == PAD:
            s[:, 0] = float("-inf")
        if self.items is not None:
            inside = (self.items >= lo) & (self.items < hi)
            # entries outside the tile add 0.0 to its first column: exact, and keeps the c order
            s = s.scatter_add(1, torch.where(inside, self.items - lo, 0),
                              torch.where(inside, self.weights, 0.0).to(s.dtype))
        return s

    def of(self, items: Tensor, block: int = 1024) -> Tensor:
        """float (N,): the score of track ``items[n]`` for query n, computed as ``tile`` computes it."""
        out = []
        for lo in range(0, len(items), block):
            h, it = self.hidden[lo : lo + block], items[lo : lo + block]
            out.append((h @ self.table[it].T).diagonal())  # a product of the tiles' kind, not a row-wise dot
        s = torch.cat(out) if out else self.hidden.new_zeros(0)
        s = torch.where(items == PAD, float("-inf"), s)
        if self.items is not None:
            w = self.weights.to(s.dtype)
            for c in range(self.items.shape[1]):
                s = s + torch.where(self.items[:, c] == items, w[:, c], 0.0)
        return s


@dataclass(frozen=True)
class Ranking:
    rank: Tensor  # int64 (N,) 1-based rank of the target among tracks 1..width-1, ties pessimistic
    top: Tensor  # int64 (N, k) the k best-scored tracks, best first
    listed: Tensor  # float (N, M) the scores of the listed tracks


def item_tile(n_queries: int, width: int, budget: int) -> int:
    """Tracks per tile: ``budget`` scores at a time for ``n_queries`` queries, in whole
    ``TILE_ALIGN`` multiples (at least one), never wider than the catalogue."""
    per = max(TILE_ALIGN, budget // max(1, n_queries) // TILE_ALIGN * TILE_ALIGN)
    return min(per, width)


def rank_in_tiles(tiles: ItemTiles, targets: Tensor, k: int, tile: int, banned: Tensor | None = None,
                  listed: Tensor | None = None) -> Ranking:
    """Rank, top-k and listed scores of N queries, one tile of ``tile`` tracks at a time.

    Parameters
    ----------
    tiles : the queries' scores (``ItemTiles``).
    targets : int64 (N,) the next play of each query, in ``1..width-1``.
    k : length of the top lists.
    tile : tracks per tile (``item_tile``).
    banned : int64 (N, W) or None, tracks scored -inf for that query (PAD entries ignored): the
        ``exclude_played`` protocol; a banned target ranks last.
    listed : int64 (N, M) or None, tracks whose scores are returned (after banning).

    Returns
    -------
    ``Ranking``: the same ranks as ``metrics.rank_of_targets`` and the same top-k as ``best`` on
    the whole score block.
    """
    listed = targets.new_zeros((len(targets), 0)) if listed is None else listed
    with_target = torch.cat([targets.unsqueeze(1), listed], dim=1)
    target_s = tiles.of(targets)
    if banned is not None:
        target_s = torch.where((banned == targets.unsqueeze(1)).any(dim=1), float("-inf"), target_s)
    above, top, seen = _sweep(tiles, target_s, k, tile, banned, with_target)
    if not torch.equal(seen[:, 0], target_s):  # a bit of difference: count again against the tile's own value
        target_s = seen[:, 0]
        above = _sweep(tiles, target_s, k, tile, banned, with_target[:, :1])[0]
    # every tile counted the target itself (its score is target_s); the rank is 1-based: the two cancel
    return Ranking(rank=above, top=top, listed=seen[:, 1:])


def _sweep(tiles: ItemTiles, target_s: Tensor, k: int, tile: int, banned: Tensor | None,
           listed: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One pass over the catalogue: (tracks scoring >= target_s (N,), top-k ids (N, k), listed scores)."""
    N, width = len(target_s), tiles.width
    above = torch.zeros(N, dtype=torch.int64, device=target_s.device)
    top_s = torch.full((N, 0), float("-inf"), device=target_s.device)
    top_i = torch.zeros((N, 0), dtype=torch.int64, device=target_s.device)
    seen = torch.full(listed.shape, float("nan"), device=target_s.device)
    for lo in range(0, width, tile):
        hi = min(lo + tile, width)
        s = tiles.tile(lo, hi)  # (N, t)
        if banned is not None:
            inside = (banned >= lo) & (banned < hi) & (banned != PAD)
            r, c = inside.nonzero(as_tuple=True)
            s[r, banned[r, c] - lo] = float("-inf")
        first = 1 if lo == PAD else 0  # the PAD column is no track
        # int32 sums of the comparison, as rank_of_targets (several times faster than int64 on CPU)
        above += (s[:, first:] >= target_s.unsqueeze(1)).sum(dim=1, dtype=torch.int32)
        inside = (listed >= lo) & (listed < hi)
        seen = torch.where(inside, s.gather(1, torch.where(inside, listed - lo, 0)), seen)
        v, i = best(s, k)
        top_s, top_i = _by_score_then_id(torch.cat([top_s, v], dim=1), torch.cat([top_i, i + lo], dim=1), k)
    return above, top_i, seen


def best(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` best columns of each row of ``scores`` (N, V), best first, ties to the lower column:
    (values (N, k'), columns int64 (N, k')), k' = min(k, V).

    ``torch.topk`` picks among tied scores as its kernel happens to, which would make a top list
    depend on how the catalogue is cut into tiles (and on the device); with ties to the lower id it
    does not.  Only rows whose k-th and (k+1)-th scores tie are searched again, over their whole row.
    """
    k = min(k, scores.shape[1])
    v, i = torch.topk(scores, k=min(k + 1, scores.shape[1]), dim=1)
    if v.shape[1] > k:
        tied = (v[:, k - 1] == v[:, k]).nonzero().squeeze(1)
        v, i = v[:, :k], i[:, :k]
        if len(tied):
            sub, kth = scores[tied], v[tied, k - 1 :]  # (S, V), (S, 1)
            eq = sub == kth
            need = k - (sub > kth).sum(dim=1, keepdim=True)
            take = (sub > kth) | (eq & (eq.cumsum(dim=1) <= need))  # k columns per row, in column order
            cols = take.nonzero()[:, 1].view(len(tied), k)
            v, i = v.clone(), i.clone()
            v[tied], i[tied] = sub.gather(1, cols), cols
    return _by_score_then_id(v, i, k)


def _by_score_then_id(v: Tensor, i: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The first ``k`` of (values, ids) ordered by value descending, then id ascending."""
    by_id = torch.sort(i, dim=1, stable=True).indices
    v, i = v.gather(1, by_id), i.gather(1, by_id)
    by_value = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :k]
    return v.gather(1, by_value), i.gather(1, by_value)
