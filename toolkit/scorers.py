"""Everything that ranks the catalogue for a query: the neural models and the count baselines.

A scorer answers ``scores(batch, rows, cols) -> float (N, n_items + 1)``: the catalogue scores of
the play after position ``(rows[n], cols[n])`` of the batch, given that position and everything
before it in the row (never after).  The PAD column is -inf.  One evaluation path serves all.
The neural scorer also answers ``tiles(batch, rows, cols) -> topk.ItemTiles``: the same scores a
range of tracks at a time, which large catalogues are ranked with (``toolkit/topk.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from toolkit.model import SeqRec, own_key
from toolkit.schema import PAD, mask_id
from toolkit.topk import ItemTiles

if TYPE_CHECKING:  # annotations only: scorers load without the data layer
    from toolkit.data import Batch


@runtime_checkable
class Scorer(Protocol):
    """What evaluation, the report and recommend ask of a model or a count baseline: the catalogue
    scores (N, n_items + 1) of the plays after positions (rows[n], cols[n]) of the batch, PAD -inf."""

    def scores(self, batch: Batch, rows: Tensor, cols: Tensor) -> Tensor: ...


def hide_skips(seqs: Tensor, fb: Tensor) -> tuple[Tensor, Tensor]:
    """Input of a positives-only model: skipped plays become padding, feedback is dropped."""
    return seqs.masked_fill(fb == 1, PAD), torch.zeros_like(fb)


def last_real_column(seqs: Tensor) -> Tensor:
    """(B, T) -> (B, T): for each column, the latest column <= it holding a real play (0 if none)."""
    T = seqs.shape[1]
    cols = torch.arange(T, device=seqs.device).expand_as(seqs)
    return torch.where(seqs != PAD, cols, torch.zeros_like(cols)).cummax(dim=1).values


class NeuralScorer:
    """SASRec / BERT4Rec, optionally reading the input without skips (positives-only)."""

    def __init__(self, model: SeqRec, hide: bool) -> None:
        self.model = model
        self.hide = hide
        self._hidden: tuple | None = None  # (batch seqs, encoder output) of the last batch

    def _encode(self, key: Tensor, seqs: Tensor, fb: Tensor) -> Tensor:
        # evaluation asks for a batch's queries in several chunks: encode each batch once
        if self._hidden is None or self._hidden[0] is not key:
            self._hidden = (key, self.model(seqs, fb))
        return self._hidden[1]

    @torch.no_grad()
    def scores(self, batch: Batch, rows: Tensor, cols: Tensor) -> Tensor:
        hidden, items, weights = self._queries(batch, rows, cols)
        if items is not None:
            return self.model.scores_with_repeats(hidden, weights, items)  # (N, V)
        return self.model.scores(hidden)  # (N, V)

    @torch.no_grad()
    def tiles(self, batch: Batch, rows: Tensor, cols: Tensor) -> ItemTiles:
        """The same scores as ``scores``, made a range of tracks at a time (``topk.rank_in_tiles``)."""
        hidden, items, weights = self._queries(batch, rows, cols)
        return ItemTiles(hidden, self.model.item_embeddings(), items, weights)

    def _queries(self, batch: Batch, rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """What scores the queries: prediction vectors (N, D), and the repeat head's tracks and
        weights (N, C) (None without the head)."""
        seqs, fb = batch["seqs"], batch["fb"]
        if self.hide:
            seqs, fb = hide_skips(seqs, fb)
        if self.model.cfg.causal:
            hidden = self._encode(batch["seqs"], seqs, fb)  # (B, T, D)
            # a positives-only model reads a skipped position's context from the last real play
            src = last_real_column(seqs)[rows, cols] if self.hide else cols
            if self.model.cfg.repeat_head:
                items, weights, available = self.model.copy_terms(hidden, seqs, batch.get("succ"), rows, src,
                                                                  users=batch.get("user"))
                return hidden[rows, src], items, weights * available
            return hidden[rows, src], None, None
        q_seqs, q_fb = cloze_queries(seqs[rows], fb[rows], cols, self.model.cfg.n_items)
        return self.model(q_seqs, q_fb)[:, -1], None, None  # (N, D)


def cloze_queries(seqs: Tensor, fb: Tensor, cols: Tensor, n_items: int) -> tuple[Tensor, Tensor]:
    """For a bidirectional model: row n keeps its plays up to ``cols[n]``, shifted so they end in
    column T-2, and MASK goes in column T-1 (its feedback is unknown, so 0).  (N, T) each."""
    N, T = seqs.shape
    j = torch.arange(T - 1, device=seqs.device).expand(N, T - 1)
    src = j + cols.unsqueeze(1) - (T - 2)  # (N, T-1) source column of each output column
    ok = src >= 0
    src = src.clamp(min=0)
    q = torch.where(ok, seqs.gather(1, src), torch.zeros_like(src))
    qf = torch.where(ok, fb.gather(1, src), torch.zeros_like(src))
    mask_col = torch.full((N, 1), mask_id(n_items), dtype=seqs.dtype, device=seqs.device)
    return torch.cat([q, mask_col], dim=1), torch.cat([qf, torch.zeros_like(mask_col)], dim=1)


class FixedScorer:
    """The same catalogue scores ``base`` (V,) for every query, whatever the session."""

    base: Tensor

    def scores(self, batch: Batch, rows: Tensor, cols: Tensor) -> Tensor:
        return self.base.to(rows.device).expand(len(rows), -1).clone()


class PopScorer(FixedScorer):
    """Most popular: the same ranking, by train plays, for every query."""

    def __init__(self, counts: np.ndarray) -> None:
        s = torch.log1p(torch.from_numpy(counts.astype(np.float64))).float()
        s[PAD] = float("-inf")
        self.base = s  # (V,)


class KeepRateScorer(FixedScorer):
    """Every track scored by how rarely it was skipped in train: its keep rate, pulled towards the
    overall keep rate by ``PRIOR_PLAYS`` pseudo-plays so that a track played once is not certain.

    Not a recommender (it ignores the session) but a yardstick: its within-session AUC says how
    far a track's own history tells whether it will be kept or skipped, the signal that a
    skip-aware model can learn from the track alone.
    """

    PRIOR_PLAYS = 5.0

    def __init__(self, seqs: np.ndarray, skips: np.ndarray, n_items: int) -> None:
        seqs, skips = np.asarray(seqs).ravel(), np.asarray(skips).ravel()
        real = seqs != PAD
        plays = np.bincount(seqs[real], minlength=n_items + 1).astype(np.float64)
        skipped = np.bincount(seqs[real], weights=skips[real].astype(np.float64), minlength=n_items + 1)
        overall = 1.0 - skipped.sum() / max(plays.sum(), 1.0)
        rate = (plays - skipped + self.PRIOR_PLAYS * overall) / (plays + self.PRIOR_PLAYS)
        self.base = torch.from_numpy(rate).float()
        self.base[PAD] = float("-inf")


class MarkovScorer:
    """First-order item-to-item transitions counted in the train rows, backed off to popularity.

    With ``hide`` the transitions skip over skipped plays (positives-only) and the query reads
    the last non-skipped play.
    """

    def __init__(self, seqs: np.ndarray, skips: np.ndarray, counts: np.ndarray, hide: bool) -> None:
        n = len(counts)
        s = np.where(skips == 1, PAD, seqs) if hide else np.asarray(seqs)
        prev, nxt, _ = _consecutive_pairs(s)
        key, weight = np.unique(prev.astype(np.int64) * n + nxt, return_counts=True)
        self.n = n
        self.indptr = np.searchsorted(key // n, np.arange(n + 1)).astype(np.int64)
        self.targets = torch.from_numpy((key % n).astype(np.int64))
        self.weights = torch.from_numpy(weight.astype(np.float32))
        self.pop = PopScorer(counts)
        self.hide = hide

    def scores(self, batch: Batch, rows: Tensor, cols: Tensor) -> Tensor:
        seqs, fb = batch["seqs"], batch["fb"]
        if self.hide:
            seqs, fb = hide_skips(seqs, fb)
        src = last_real_column(seqs)[rows, cols]
        last = seqs[rows, src].cpu().numpy()
        # popularity, squashed below 1, breaks ties among unseen transitions
        out = self.pop.scores(batch, rows, cols).cpu() / (self.pop.base[1:].max() + 1.0)
        # every query's transition list, flattened: query q owns entries indptr[last[q]]:indptr[last[q] + 1]
        lo = np.where(last != PAD, self.indptr[last], 0)
        owner, entry = _ranges(lo, np.where(last != PAD, self.indptr[last + 1], 0))
        entry = torch.from_numpy(entry)
        out.index_put_((torch.from_numpy(owner), self.targets[entry]), self.weights[entry], accumulate=True)
        return out.to(rows.device)


def top_transitions(seqs: np.ndarray, skips: np.ndarray, n_items: int, m: int, hide: bool,
                    row_user: np.ndarray | None = None):
    """The ``m`` tracks that most often followed each track in the rows ``seqs`` (B, T), and how often:
    int32 (n_items + 1, m) (PAD where a track had fewer successors) and float32 (n_items + 1, m), most
    frequent first, ties by track id.  With ``hide`` skipped plays are left out first (positives-only),
    as ``MarkovScorer`` does.  With ``row_user`` (B,) also each listener's own share: sorted int64
    keys ``model.own_key(listener, track, next)`` and float32 counts (else two Nones).  The repeat
    head's transition term reads them (``SeqRec.set_transitions``)."""
    V = n_items + 1
    s = np.where(np.asarray(skips) == 1, PAD, seqs) if hide else np.asarray(seqs)
    prev, nxt, row = _consecutive_pairs(s)
    key, count = np.unique(prev * V + nxt, return_counts=True)
    src, dst = key // V, key % V
    order = np.lexsort((dst, -count, src))  # by source, most frequent first, then by id
    src, dst, count = src[order], dst[order], count[order]
    rank = np.arange(len(src)) - np.searchsorted(src, src, side="left")
    keep = rank < m
    items = np.zeros((V, m), np.int32)
    counts = np.zeros((V, m), np.float32)
    items[src[keep], rank[keep]] = dst[keep]
    counts[src[keep], rank[keep]] = count[keep]
    if row_user is None:
        return items, counts, None, None
    users = np.asarray(row_user, np.int64)[row]
    if len(users) and float(users.max() + 1) * V * V >= 2.0 ** 63:
        raise ValueError(f"{users.max() + 1} listeners x {V} tracks: too many for the transition term's int64 keys")
    own, own_count = np.unique(own_key(users, prev, nxt, n_items), return_counts=True)
    return items, counts, own, own_count.astype(np.float32)


def _consecutive_pairs(seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(previous, next, row) of every two consecutive real plays of a row of ``seqs`` (B, T), skipping
    interior padding, in row order; all int64."""
    s = np.asarray(seqs)
    r, c = np.nonzero(s != PAD)  # row-major: each row's real plays in order
    same_row = r[1:] == r[:-1]
    prev, nxt = s[r[:-1], c[:-1]][same_row], s[r[1:], c[1:]][same_row]
    return prev.astype(np.int64), nxt.astype(np.int64), r[:-1][same_row].astype(np.int64)


class SessionKNNScorer:
    """V-SKNN (Ludewig & Jannach 2018): tracks of the train sessions most similar to the query's plays.

    The query's plays are the real plays of its row up to and including the query column
    (earlier windows of a long session are not in the batch).  Play ``j`` of ``n`` weighs ``j``:
    the paper's linear decay ``j / n`` times ``n``, which is the same for every train session of
    the query, so the ranking is the paper's while every score stays an integer (a repeated track
    weighs its latest play).  The similarity of a train session is the sum of the weights of the
    query tracks it contains.  The candidates are the ``m`` most recent train sessions that share
    a track with the query; the ``k`` most similar of them (ties: the more recent) are the
    neighbours, and a track scores the sum of the similarities of the neighbours that contain it.
    Popularity, squashed below 1 as in ``MarkovScorer``, orders ties and the tracks no neighbour has.

    With ``hide`` skipped plays are left out of the train sessions and of the query (positives-only).
    """

    def __init__(self, seqs: np.ndarray, skips: np.ndarray, row_session: np.ndarray, counts: np.ndarray,
                 hide: bool, k: int = 100, m: int = 500) -> None:
        if k < 1 or m < 1:
            raise ValueError(f"SessionKNNScorer needs k >= 1 and m >= 1, got k={k}, m={m}")
        V = len(counts)
        s = np.where(np.asarray(skips) == 1, PAD, seqs) if hide else np.asarray(seqs)
        r, c = np.nonzero(s != PAD)
        # session_idx numbers sessions in start-time order, so a larger local index is a more recent session
        local = np.searchsorted(np.unique(row_session), np.asarray(row_session)[r])
        key = np.unique(local.astype(np.int64) * V + s[r, c])  # each (session, track) once
        sess, item = key // V, key % V
        self.n_sessions = int(sess.max(initial=-1)) + 1
        self.sess_ptr = np.searchsorted(sess, np.arange(self.n_sessions + 1)).astype(np.int64)
        self.sess_items = torch.from_numpy(item)
        by_item = np.lexsort((sess, item))  # each track's sessions, oldest first
        self.item_ptr = np.searchsorted(item[by_item], np.arange(V + 1)).astype(np.int64)
        self.item_sess = sess[by_item]
        pop = PopScorer(counts).base
        self.base = pop / (pop[1:].max() + 1.0)  # (V,) popularity squashed below 1, PAD -inf
        self.hide, self.k, self.m = hide, k, m

    def scores(self, batch: Batch, rows: Tensor, cols: Tensor) -> Tensor:
        seqs = hide_skips(batch["seqs"], batch["fb"])[0] if self.hide else batch["seqs"]
        q, item, pos, latest = prefix_plays(seqs[rows].cpu().numpy(), cols.cpu().numpy())
        q, item, weight = q[latest], item[latest], pos[latest]
        nq, ns, sim = self._neighbours(q, item, weight)
        owner, entry = _ranges(self.sess_ptr[ns], self.sess_ptr[ns + 1])
        out = torch.zeros(len(rows), len(self.base))  # (N, V)
        # integer sums, exact in float32 while k * n (n + 1) / 2 stays below 2**24; popularity comes
        # after them so that each score is rounded once
        out.index_put_((torch.from_numpy(nq[owner]), self.sess_items[entry]),
                       torch.from_numpy(sim[owner]).float(), accumulate=True)
        return out.add_(self.base).to(rows.device)

    def _neighbours(self, q: np.ndarray, item: np.ndarray, weight: np.ndarray):
        """(query, session, similarity) of the ``k`` neighbours of each query, from its distinct
        tracks ``item`` with their ``weight`` (flat, ``q`` says whose)."""
        S = max(self.n_sessions, 1)
        # The m most recent candidates are found in the m most recent sessions of each query track:
        # a session later than a candidate in one of its tracks' lists shares that track, so is a
        # later candidate, and a kept candidate has fewer than m of those.  The similarity of a
        # kept candidate is therefore complete although every list is cut to its last m sessions.
        hi = self.item_ptr[item + 1]
        owner, entry = _ranges(np.maximum(self.item_ptr[item], hi - self.m), hi)
        key, inv = np.unique(q[owner] * S + self.item_sess[entry], return_inverse=True)  # by query, then session
        sim = np.bincount(inv.ravel(), weights=weight[owner], minlength=len(key))
        kq, ks = key // S, key % S
        recent = np.searchsorted(kq, kq, side="right") - np.arange(len(key)) <= self.m
        kq, ks, sim = kq[recent], ks[recent], sim[recent]
        order = np.lexsort((-ks, -sim, kq))  # by query, most similar first, then most recent
        kq, ks, sim = kq[order], ks[order], sim[order]
        top = np.arange(len(kq)) - np.searchsorted(kq, kq, side="left") < self.k
        return kq[top], ks[top], sim[top]


class RepeatScorer:
    """Re-listening first: the tracks already played in the query's row, then ``MarkovScorer``.

    It reads the real plays of the query's row up to and including the query column (with
    ``hide``, the non-skipped ones only; earlier windows of a long session are not in the batch)
    and, for the back-off, the train transitions and popularity of ``markov``.  A track played at
    positions ``j1, j2, ...`` of the row (1 = its first real play) scores ``j1 + j2 + ...``: the
    most recent play counts most and every replay adds.  Below those integers, the Markov scores
    of the last play (transition counts, popularity breaking ties), squashed into [0, 1) per
    query, rank the rest of the catalogue.

    When the batch carries successors (``history.row_successors``: the K tracks that followed the
    query's track in the listener's earlier plays, latest first), they rank above everything: the
    k-th latest adds ``K - k`` (k from 0), in units larger than any replay score.

    With ``window`` (the batch's successors then hold, after the K, the ``window`` plays after each,
    ``history.play_successors``), those tracks rank between the replays and the Markov scores: an
    entry after the k-th latest earlier play adds ``K - k``, and every tier above is scaled past the
    largest window sum.
    """

    def __init__(self, markov: MarkovScorer, window: int = 0) -> None:
        self.markov = markov
        self.window = window

    def scores(self, batch: Batch, rows: Tensor, cols: Tensor) -> Tensor:
        back = self.markov.scores(batch, rows, cols).cpu()  # (N, V) >= 0, PAD -inf
        out = back / (back[:, PAD + 1 :].max(dim=1, keepdim=True).values + 1.0)
        seqs = hide_skips(batch["seqs"], batch["fb"])[0] if self.markov.hide else batch["seqs"]
        succ = batch.get("succ")
        W = self.window if succ is not None else 0
        K = succ.shape[2] // (1 + W) if succ is not None else 0
        # one window unit above the largest window sum (every entry the same track); 1 without windows
        tier = K * (K + 1) // 2 * W + 1
        if W:
            s = succ[rows, cols, K:].cpu()  # (N, K * W)
            by_rank = torch.arange(K, 0, -1, dtype=torch.float32).repeat_interleave(W).expand_as(s)
            out.scatter_add_(1, s, torch.where(s != PAD, by_rank, torch.zeros_like(by_rank)))
        q, item, pos, _ = prefix_plays(seqs[rows].cpu().numpy(), cols.cpu().numpy())
        out.index_put_((torch.from_numpy(q), torch.from_numpy(item)), torch.from_numpy(pos).float() * tier,
                       accumulate=True)
        if succ is not None:
            s = succ[rows, cols, :K].cpu()  # (N, K)
            T = seqs.shape[1]
            unit = (T * (T + 1) // 2 + 1) * tier  # above the largest replay score (every column the same track)
            rank_w = (torch.arange(K, 0, -1, dtype=torch.float32) * unit).expand_as(s)  # (N, K)
            out.scatter_add_(1, s, torch.where(s != PAD, rank_w, torch.zeros_like(rank_w)))
            out[:, PAD] = float("-inf")
        return out.to(rows.device)


def prefix_plays(seqs: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every real play of row n of ``seqs`` (N, T) up to column ``cols[n]``, flat and in row order:
    (query n, track, position among the row's real plays counted from 1, whether no later play up
    to ``cols[n]`` repeats the track).  All int64 but the last, bool."""
    col = np.arange(seqs.shape[1])
    real = (seqs != PAD) & (col[None, :] <= cols[:, None])  # (N, T)
    pos = np.cumsum(real, axis=1)  # padding inside a row (hidden skips) takes no position
    repeated_later = ((seqs[:, :, None] == seqs[:, None, :]) & real[:, None, :]
                      & (col[None, :, None] < col[None, None, :])).any(axis=2)  # (N, T)
    q, c = np.nonzero(real)
    return q, seqs[q, c].astype(np.int64), pos[q, c].astype(np.int64), ~repeated_later[q, c]


def _ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranges ``lo[i]:hi[i]`` of a flat array laid end to end: (i, index) of each element."""
    n = np.maximum(np.asarray(hi) - lo, 0)
    owner = np.repeat(np.arange(len(n)), n)
    entry = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
    return owner, entry.astype(np.int64)
