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

from toolkit import distributed, metrics, topk
from toolkit.config import POSITIONS
from toolkit.data import SplitArrays, next_skip_rows, to_batch
from toolkit.schema import PAD
from toolkit.scorers import Scorer

POS_KS = (1, 5, 10, 20)
SCORE_BUDGET = 1 << 23  # catalogue scores held at once (32 MB of float32), whatever the catalogue size
# past this many tracks a chunk would score fewer than 16 queries per read of the item table, so
# scorers that can (``tiles``) rank a batch's queries in item tiles instead (toolkit/topk.py)
TILED_FROM = SCORE_BUDGET // 16
OVERLAP_PAIRS = 20_000  # query pairs behind overlap@10: its sampling sd is then about 0.002 (Spotify valid)


@dataclass
class QueryResults:
    """Per-query outcomes; everything in the report is an aggregate of these."""

    session: np.ndarray  # int64 (Q,) session_idx of the query
    skipped: np.ndarray  # bool (Q,) the next play was skipped
    rank: np.ndarray  # int64 (Q,) full-catalogue rank of the next play
    auc: np.ndarray  # float64 (Q,) within-session AUC of a positive query (NaN: no skipped track)
    top: np.ndarray  # int32 (Q, 10) the ten best-scored tracks
    # float64 (Q,) the same AUC against the skips played up to the query only, the ones the model
    # has read (NaN: none yet)
    auc_seen: np.ndarray

    @classmethod
    def empty(cls) -> "QueryResults":
        z = np.zeros(0)
        return cls(z.astype(np.int64), z.astype(bool), z.astype(np.int64), z, np.zeros((0, TOP_K), np.int32), z)

    @classmethod
    def concat(cls, parts: list["QueryResults"]) -> "QueryResults":
        """The queries of ``parts`` one after the other (e.g. the shards of several processes, in rank order)."""
        parts = [p for p in parts if len(p.rank)]
        if not parts:
            return cls.empty()
        return cls(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in cls.__dataclass_fields__})


TOP_K = 10


def query_mask(a: SplitArrays, positions: str = "all", leave_last_out: bool = False) -> np.ndarray:
    """bool (R, L): the positions that are queries.

    ``positions='all'``: every position whose next play is known.  ``'last'``: per session only the
    position before its last non-skipped play.  A leave-last-out dataset has one query per session
    whatever ``positions`` says: the position before the held-out play.
    """
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
    nxt = np.asarray(a.next_item)
    mask = nxt != PAD
    rs = np.asarray(a.row_session)
    if leave_last_out:
        # the held-out play is the last column of each session's last row; its query is just before
        last_row = np.ones(len(a), dtype=bool)
        last_row[:-1] = rs[1:] != rs[:-1]
        keep = np.zeros_like(mask)
        keep[last_row, -2] = True
        return mask & keep
    if positions == "last":
        kept = next_skip_rows(a, np.arange(len(a))) == 0  # the next play was not skipped
        flat = np.flatnonzero(mask & kept)  # row-major: time order in a session
        sess = rs[flat // mask.shape[1]]
        last = flat[np.r_[sess[1:] != sess[:-1], True]] if len(flat) else flat
        mask = np.zeros_like(mask)
        mask.flat[last] = True
    return mask


def session_skips(a: SplitArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tracks skipped anywhere in each session of the split, as CSR over sorted session ids.

    Returns (session ids sorted, offsets, items): the skipped tracks of ``ids[i]`` are
    ``items[offsets[i]:offsets[i + 1]]`` (each track once).
    """
    seqs, skips, rs = np.asarray(a.seqs), np.asarray(a.skips), np.asarray(a.row_session)
    r, c = np.nonzero((skips == 1) & (seqs != PAD))
    sess, item = rs[r], seqs[r, c].astype(np.int64)  # every play of a session is an input somewhere
    ids = np.unique(rs)
    width = int(seqs.max(initial=0)) + 1
    key = np.unique(np.searchsorted(ids, sess) * width + item)
    local, items = key // width, key % width
    offsets = np.searchsorted(local, np.arange(len(ids) + 1))
    return ids, offsets.astype(np.int64), items


@torch.no_grad()
def run_queries(scorer: Scorer, a: SplitArrays, device: torch.device, last_only: bool = False, batch_rows: int = 64,
                n_items: int | None = None, sessions: np.ndarray | None = None, positions: str = "all",
                exclude_played: bool = False, tiled: bool | None = None) -> QueryResults:
    """Score every query of a split (or of the given ``sessions`` only) against the whole catalogue.

    Memory is bounded: queries are scored in chunks of ``SCORE_BUDGET // catalogue`` at a time, or,
    with ``tiled`` (None: when the catalogue has ``TILED_FROM`` tracks or more and the scorer has
    ``tiles``), a batch's queries together over tiles of ``SCORE_BUDGET // queries`` tracks
    (``topk.rank_in_tiles``: the same ranks and top-10).
    With ``exclude_played`` the tracks already played in the session are removed from the ranking;
    a query whose next play is such a repeat then ranks it last (a miss), never drops the query.
    Under torchrun each process scores its own whole blocks of ``batch_rows`` rows (the same blocks
    one process would score: no query padded or repeated) and every process gets all the outcomes,
    in row order: the result is the single-process one.
    """
    world = distributed.current()
    mask = query_mask(a, positions, last_only)
    rs = np.asarray(a.row_session)
    if sessions is not None:
        mask &= np.isin(rs, sessions)[:, None]
    width = (n_items or int(np.asarray(a.seqs).max(initial=1))) + 1
    if tiled is None:
        tiled = width >= TILED_FROM and hasattr(scorer, "tiles")
    chunk = batch_rows * a.seqs.shape[1] if tiled else max(1, SCORE_BUDGET // width)  # tiled: a batch at once
    k = min(TOP_K, width - 1)
    skip_ids, skip_off, skip_items = session_skips(a.session_part())  # the listener's history is not the session
    first_row = _session_first_row(rs)
    out: dict[str, list] = {k: [] for k in ("session", "skipped", "rank", "auc", "top", "auc_seen")}
    lo, hi = world.bounds(len(a), batch_rows)
    for start in range(lo, hi, batch_rows):
        idx = np.arange(start, min(start + batch_rows, hi))
        m = torch.from_numpy(mask[idx]).to(device)
        if not bool(m.any()):
            continue
        batch = to_batch(a, idx, device)
        all_rows, all_cols = m.nonzero(as_tuple=True)
        for lo in range(0, len(all_rows), chunk):
            rows, cols = all_rows[lo : lo + chunk], all_cols[lo : lo + chunk]
            row_ids = idx[rows.cpu().numpy()]
            played, was_skipped = _played_before(a, first_row, row_ids, cols.cpu().numpy())
            targets = batch["next_item"][rows, cols]
            sess = rs[row_ids]
            negs = torch.from_numpy(_gather_ragged(np.searchsorted(skip_ids, sess), skip_off, skip_items)).to(device)
            seen = torch.from_numpy(_distinct(np.where(was_skipped, played, PAD))).to(device)
            if tiled:
                tiles = scorer.tiles(batch, rows, cols)
                banned = torch.from_numpy(played).to(device) if exclude_played else None
                ranked = topk.rank_in_tiles(tiles, targets, k, topk.item_tile(len(rows), width, SCORE_BUDGET),
                                            banned, torch.cat([targets.unsqueeze(1), negs, seen], dim=1))
                rank, top = ranked.rank.cpu().numpy(), ranked.top.int().cpu().numpy()
                pos_s, neg_s, seen_s = ranked.listed.split([1, negs.shape[1], seen.shape[1]], dim=1)
            else:
                scores = scorer.scores(batch, rows, cols).float()  # (N, V)
                if exclude_played:
                    scores.scatter_(1, torch.from_numpy(played).to(scores.device), float("-inf"))
                rank = metrics.rank_of_targets(scores, targets)
                # scorers that could rank in tiles break ties in a top list as the tiles do
                top = (topk.best(scores, k)[1] if hasattr(scorer, "tiles") else
                       torch.topk(scores, k=k, dim=1).indices).int().cpu().numpy()
                pos_s, neg_s, seen_s = (scores.gather(1, t) for t in (targets.unsqueeze(1), negs, seen))
            out["rank"].append(rank)
            out["top"].append(top)
            skipped = batch["next_skip"][rows, cols] == 1
            out["skipped"].append(skipped.cpu().numpy())
            out["session"].append(sess)
            out["auc"].append(_session_auc(pos_s, neg_s, targets, skipped, negs))
            out["auc_seen"].append(_session_auc(pos_s, seen_s, targets, skipped, seen))
    mine = QueryResults(**{k: np.concatenate(v) for k, v in out.items()}) if out["rank"] else QueryResults.empty()
    return mine if world.size == 1 else QueryResults.concat(world.gather(mine))


def _session_first_row(rs: np.ndarray) -> np.ndarray:
    """int64 (R,): index of the first row of each row's session (rows of a session are adjacent)."""
    starts = np.r_[True, rs[1:] != rs[:-1]] if len(rs) else np.zeros(0, bool)
    return np.maximum.accumulate(np.where(starts, np.arange(len(rs)), 0))


def _played_before(a: SplitArrays, first_row: np.ndarray, rows: np.ndarray,
                   cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 (N, W): every track played in the session up to and including each query position
    (earlier rows of the session too), PAD-filled (PAD's score is -inf already); and bool (N, W),
    which of those plays were skipped.  ``cols`` count the history columns; the history is not read."""
    cols = cols - a.history
    a = a.session_part()
    L = a.seqs.shape[1]
    back = int((rows - first_row[rows]).max(initial=0))
    parts, skips = [], []
    for k in range(back, -1, -1):
        src = rows - k
        ok = src >= first_row[rows]
        part = np.asarray(a.seqs[np.where(ok, src, rows)]).astype(np.int64)
        part[~ok] = PAD
        if k == 0:
            part[np.arange(L)[None, :] > cols[:, None]] = PAD
        parts.append(part)
        skips.append((np.asarray(a.skips[np.where(ok, src, rows)]) == 1) & (part != PAD))
    return np.concatenate(parts, axis=1), np.concatenate(skips, axis=1)


def _distinct(items: np.ndarray) -> np.ndarray:
    """int64 (N, W): each row's tracks once (a track skipped twice is one negative, as in
    ``session_skips``), PAD elsewhere."""
    out = np.sort(items, axis=1)
    out[:, 1:][out[:, 1:] == out[:, :-1]] = PAD
    return out


def _gather_ragged(which: np.ndarray, offsets: np.ndarray, items: np.ndarray) -> np.ndarray:
    """int64 (N, M): ``items[offsets[w]:offsets[w + 1]]`` for each ``w`` in ``which``, PAD-filled."""
    counts = offsets[which + 1] - offsets[which]
    width = int(counts.max(initial=0))
    col = np.arange(width)[None, :]
    pos = offsets[which][:, None] + col
    ok = col < counts[:, None]
    return np.where(ok, items[np.where(ok, pos, 0)] if len(items) else PAD, PAD).astype(np.int64)


def _session_auc(pos_s, neg_s, targets, skipped, negs) -> np.ndarray:
    """Per positive query: share of the session's skipped tracks ``negs`` (N, M) (other than the next
    play itself) scored below the next play, ties half, from the scores of the next play (N, 1) and of
    ``negs`` (N, M); NaN for skip queries and sessions without skips."""
    valid = (negs != PAD) & (negs != targets.unsqueeze(1)) & ~skipped.unsqueeze(1)
    wins = ((pos_s > neg_s).float() + 0.5 * (pos_s == neg_s).float()) * valid
    n = valid.sum(dim=1)
    auc = torch.where(n > 0, wins.sum(dim=1) / n.clamp(min=1), torch.full_like(n, float("nan"), dtype=torch.float))
    return auc.double().cpu().numpy()


def summarize(q: QueryResults, n_items: int, popularity: np.ndarray | None = None) -> dict[str, float]:
    """The metric table row of one run: means over queries, plus the query counts behind them.

    ``popularity``: per-track popularity percentile (``metrics.popularity_percentile``) for
    ``pop_pct@10``, the mean percentile of the top-10 of positive queries.  ``overlap@10``: how
    alike the top-10 lists of positive queries from different sessions are (``top_overlap``).
    """
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
    for name in ("auc", "auc_seen"):  # over the positive queries that have a pair
        values = getattr(q, name)[~q.skipped]
        out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    out["coverage@10"] = metrics.coverage_at_k(q.top[~q.skipped], n_items) if len(pos) else float("nan")
    if popularity is not None:
        out["pop_pct@10"] = metrics.mean_top_popularity(q.top[~q.skipped], popularity)
    out["overlap@10"] = top_overlap(q.top[~q.skipped], q.session[~q.skipped])
    out["n_pos"] = int(len(pos))
    out["n_skip"] = int(len(skip))
    out["n_sessions"] = int(len(np.unique(q.session)))
    return out


def top_overlap(top: np.ndarray, session: np.ndarray, n_pairs: int = OVERLAP_PAIRS, seed: int = 0) -> float:
    """How little the lists depend on the session: the mean share of their top-k tracks that two
    queries from different sessions have in common (0: every session gets its own list, 1: the
    same list for everyone).  Not a quality metric; it says how far a ranking reads the session.

    Parameters
    ----------
    top : int (Q, k) each query's best tracks; PAD entries match nothing.
    session : int (Q,) session of each query.
    n_pairs, seed : with at most ``n_pairs`` cross-session pairs every one is used; otherwise
        ``n_pairs`` ordered pairs are drawn with ``seed`` (same-session draws are dropped), so
        the figure is exact on small splits and stable on large ones.

    Returns
    -------
    float in [0, 1], NaN when no two queries come from different sessions.
    """
    top, session = np.asarray(top), np.asarray(session)
    Q, k = top.shape
    if Q * (Q - 1) // 2 <= n_pairs:
        i, j = np.triu_indices(Q, k=1)
    else:
        rng = np.random.default_rng(seed)
        i, j = rng.integers(0, Q, size=(2, 4 * n_pairs))  # 4x: enough whenever few pairs share a session
    cross = session[i] != session[j]
    i, j = i[cross][:n_pairs], j[cross][:n_pairs]
    if len(i) == 0 or k == 0:
        return float("nan")
    a, b = top[i], top[j]  # (P, k) each
    shared = ((a[:, :, None] == b[:, None, :]) & (a != PAD)[:, :, None]).sum(axis=(1, 2))
    return float(shared.mean() / k)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def evaluate(scorer: Scorer, a: SplitArrays, n_items: int, device: torch.device, last_only: bool = False,
             sessions: np.ndarray | None = None, **options) -> dict[str, float]:
    """Metrics of one scorer on one split (validation during training, test in the report)."""
    return summarize(run_queries(scorer, a, device, last_only, n_items=n_items, sessions=sessions, **options),
                     n_items)


def session_subset(a: SplitArrays, n: int, seed: int) -> np.ndarray | None:
    """``n`` of the split's sessions drawn with ``seed`` (None: all of them).  Every query of a
    chosen session is kept, and each is still ranked against the whole catalogue."""
    ids = np.unique(np.asarray(a.row_session))
    if n <= 0 or n >= len(ids):
        return None
    return np.sort(np.random.default_rng([seed, 7]).choice(ids, size=n, replace=False))
