"""Everything that ranks the catalogue for a query: the neural models and the count baselines.

A scorer answers ``scores(batch, rows, cols) -> float (N, n_items + 1)``: the catalogue scores of
the play after position ``(rows[n], cols[n])`` of the batch, given that position and everything
before it in the row (never after).  The PAD column is -inf.  One evaluation path serves all.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from toolkit.model import SeqRec
from toolkit.schema import PAD, mask_id


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
        self._hidden: tuple[Tensor, Tensor] | None = None  # (batch seqs, encoder output) of the last batch

    def _encode(self, key: Tensor, seqs: Tensor, fb: Tensor) -> Tensor:
        # evaluation asks for a batch's queries in several chunks: encode each batch once
        if self._hidden is None or self._hidden[0] is not key:
            self._hidden = (key, self.model(seqs, fb))
        return self._hidden[1]

    @torch.no_grad()
    def scores(self, batch: dict[str, Tensor], rows: Tensor, cols: Tensor) -> Tensor:
        seqs, fb = batch["seqs"], batch["fb"]
        if self.hide:
            seqs, fb = hide_skips(seqs, fb)
        if self.model.cfg.causal:
            hidden = self._encode(batch["seqs"], seqs, fb)  # (B, T, D)
            # a positives-only model reads a skipped position's context from the last real play
            src = last_real_column(seqs)[rows, cols] if self.hide else cols
            return self.model.scores(hidden[rows, src])  # (N, V)
        q_seqs, q_fb = cloze_queries(seqs[rows], fb[rows], cols, self.model.cfg.n_items)
        hidden = self.model(q_seqs, q_fb)  # (N, T, D)
        return self.model.scores(hidden[:, -1])  # (N, V)


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

    def scores(self, batch: dict[str, Tensor], rows: Tensor, cols: Tensor) -> Tensor:
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
        prev, nxt = _consecutive_pairs(s)
        key, weight = np.unique(prev.astype(np.int64) * n + nxt, return_counts=True)
        self.n = n
        self.indptr = np.searchsorted(key // n, np.arange(n + 1)).astype(np.int64)
        self.targets = torch.from_numpy((key % n).astype(np.int64))
        self.weights = torch.from_numpy(weight.astype(np.float32))
        self.pop = PopScorer(counts)
        self.hide = hide

    def scores(self, batch: dict[str, Tensor], rows: Tensor, cols: Tensor) -> Tensor:
        seqs, fb = batch["seqs"], batch["fb"]
        if self.hide:
            seqs, fb = hide_skips(seqs, fb)
        src = last_real_column(seqs)[rows, cols]
        last = seqs[rows, src].cpu().numpy()
        # popularity, squashed below 1, breaks ties among unseen transitions
        out = self.pop.scores(batch, rows, cols).cpu() / (self.pop.base[1:].max() + 1.0)
        # every query's transition list, flattened: query q owns entries indptr[last[q]]:indptr[last[q] + 1]
        lo = np.where(last != PAD, self.indptr[last], 0)
        n = np.where(last != PAD, self.indptr[last + 1], 0) - lo
        owner = np.repeat(np.arange(len(last)), n)
        entry = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
        entry = torch.from_numpy(entry)
        out.index_put_((torch.from_numpy(owner), self.targets[entry]), self.weights[entry], accumulate=True)
        return out.to(rows.device)


def _consecutive_pairs(seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(previous, next) real plays of each row, skipping interior padding."""
    prev_all, next_all = [], []
    for row in np.asarray(seqs):
        real = row[row != PAD]
        if len(real) > 1:
            prev_all.append(real[:-1])
            next_all.append(real[1:])
    if not prev_all:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(prev_all).astype(np.int64), np.concatenate(next_all).astype(np.int64)
