"""One evaluation path for validation and test: full-catalogue ranking of the next play.

Queries are the positions whose next play is known (``next_item != PAD``); under a leave-last-out
dataset only the position before each session's held-out play.  Positive metrics use queries
whose next play was not skipped, skip metrics those whose next play was.  Scores come from a
scorer (``toolkit/scorers.py``); ranks are over all tracks, never a sampled candidate set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from toolkit import metrics
from toolkit.data import SplitArrays, to_batch
from toolkit.schema import PAD

POS_KS = (1, 5, 10, 20)
SCORE_BUDGET = 1 << 23  # catalogue scores held at once (32 MB of float32), whatever the catalogue size


@dataclass
class QueryResults:
    """Per-query outcomes; everything in the report is an aggregate of these."""

    session: np.ndarray  # int64 (Q,) session_idx of the query
    skipped: np.ndarray  # bool (Q,) the next play was skipped
    rank: np.ndarray  # int64 (Q,) full-catalogue rank of the next play
    auc: np.ndarray  # float64 (Q,) within-session AUC of a positive query (NaN: no skipped track)
    top: np.ndarray  # int32 (Q, 10) the ten best-scored tracks


def query_mask(a: SplitArrays, last_only: bool) -> np.ndarray:
    """bool (R, L): the positions that are queries."""
    mask = np.asarray(a.next_item) != PAD
    if last_only:
        # the held-out play is the last column of each session's last row; its query is just before
        last_row = np.ones(len(a), dtype=bool)
        last_row[:-1] = np.asarray(a.row_session[1:]) != np.asarray(a.row_session[:-1])
        keep = np.zeros_like(mask)
        keep[last_row, -2] = True
        mask &= keep
    return mask


@torch.no_grad()
def run_queries(scorer, a: SplitArrays, device: torch.device, last_only: bool = False, batch_rows: int = 64,
                n_items: int | None = None, sessions: np.ndarray | None = None) -> QueryResults:
    """Score every query of a split (or of the given ``sessions`` only).

    Memory is bounded: queries are scored in chunks of ``SCORE_BUDGET // catalogue`` at a time.
    """
    mask = query_mask(a, last_only)
    if sessions is not None:
        mask &= np.isin(np.asarray(a.row_session), sessions)[:, None]
    width = (n_items or int(np.asarray(a.seqs).max(initial=1))) + 1
    chunk = max(1, SCORE_BUDGET // width)
    out: dict[str, list] = {k: [] for k in ("session", "skipped", "rank", "auc", "top")}
    for start in range(0, len(a), batch_rows):
        idx = np.arange(start, min(start + batch_rows, len(a)))
        m = torch.from_numpy(mask[idx]).to(device)
        if not bool(m.any()):
            continue
        batch = to_batch(a, idx, device)
        all_rows, all_cols = m.nonzero(as_tuple=True)
        for lo in range(0, len(all_rows), chunk):
            rows, cols = all_rows[lo : lo + chunk], all_cols[lo : lo + chunk]
            scores = scorer.scores(batch, rows, cols).float()  # (N, V)
            targets = batch["next_item"][rows, cols]
            out["rank"].append(metrics.rank_of_targets(scores, targets))
            out["top"].append(torch.topk(scores, k=min(10, scores.shape[1] - 1), dim=1).indices.int().cpu().numpy())
            skipped = batch["next_skip"][rows, cols] == 1
            out["skipped"].append(skipped.cpu().numpy())
            out["session"].append(np.asarray(a.row_session)[idx][rows.cpu().numpy()])
            out["auc"].append(_session_auc(scores, targets, skipped, batch, rows))
    if not out["rank"]:
        empty = np.zeros(0)
        return QueryResults(empty.astype(np.int64), empty.astype(bool), empty.astype(np.int64), empty,
                            np.zeros((0, 10), np.int32))
    return QueryResults(**{k: np.concatenate(v) for k, v in out.items()})


def _session_auc(scores, targets, skipped, batch, rows) -> np.ndarray:
    """Per positive query: share of the row's skipped tracks scored below the next play."""
    seqs, fb = batch["seqs"][rows], batch["fb"][rows]  # (N, T)
    neg = torch.where(fb == 1, seqs, torch.zeros_like(seqs))  # (N, T) skipped tracks, PAD elsewhere
    valid = (neg != PAD) & (neg != targets.unsqueeze(1)) & ~skipped.unsqueeze(1)
    pos_s = scores.gather(1, targets.unsqueeze(1))  # (N, 1)
    neg_s = scores.gather(1, neg)  # (N, T)
    wins = ((pos_s > neg_s).float() + 0.5 * (pos_s == neg_s).float()) * valid
    n = valid.sum(dim=1)
    auc = torch.where(n > 0, wins.sum(dim=1) / n.clamp(min=1), torch.full_like(n, float("nan"), dtype=torch.float))
    return auc.double().cpu().numpy()


def summarize(q: QueryResults, n_items: int) -> dict[str, float]:
    """The metric table row of one run: means over queries, plus the query counts behind them."""
    pos, skip = q.rank[~q.skipped], q.rank[q.skipped]
    out: dict[str, float] = {}
    for k in POS_KS:
        out[f"hr@{k}"] = _mean(metrics.hit_at_k(pos, k))
    for k in (10, 20):
        out[f"ndcg@{k}"] = _mean(metrics.ndcg_at_k(pos, k))
    out["mrr@10"] = _mean(metrics.mrr_at_k(pos, 10))
    out["skip_hr@10"] = _mean(metrics.hit_at_k(skip, 10))
    out["skip_mrr@10"] = _mean(metrics.mrr_at_k(skip, 10))
    out["delta_hr@10"] = out["hr@10"] - out["skip_hr@10"]
    auc = q.auc[~q.skipped]
    out["auc"] = float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")
    out["coverage@10"] = metrics.coverage_at_k(q.top[~q.skipped], n_items) if len(pos) else float("nan")
    out["n_pos"] = int(len(pos))
    out["n_skip"] = int(len(skip))
    out["n_sessions"] = int(len(np.unique(q.session)))
    return out


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def evaluate(scorer, a: SplitArrays, n_items: int, device: torch.device, last_only: bool = False,
             sessions: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of one scorer on one split (validation during training, test in the report)."""
    return summarize(run_queries(scorer, a, device, last_only, n_items=n_items, sessions=sessions), n_items)


def session_subset(a: SplitArrays, n: int, seed: int) -> np.ndarray | None:
    """``n`` of the split's sessions drawn with ``seed`` (None: all of them).  Every query of a
    chosen session is kept, and each is still ranked against the whole catalogue."""
    ids = np.unique(np.asarray(a.row_session))
    if n <= 0 or n >= len(ids):
        return None
    return np.sort(np.random.default_rng([seed, 7]).choice(ids, size=n, replace=False))
