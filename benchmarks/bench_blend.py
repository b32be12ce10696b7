"""How much does a trained neural run know beyond counting?  A validation-fitted blend, scored on test.

The count baseline ``repeat --set successors=K`` ranks (1) the tracks that followed the query's
track in the listener's earlier plays, (2) the session's own plays, (3) the train transitions
from the last play.  This script takes one finished neural run and asks whether its scores add
anything to those three counts:

    blend = neural score + b * successor score + c * replay score + d * log(1 + transitions)

with (b, c, d) >= 0 chosen by NDCG@10 on the VALIDATION split only, then applied once to test.
If the blend beats the count rule on test with the listener-level interval above zero, the
network carries information the counts lack; if it only matches it, the counts already hold what
the network learned.  It is a diagnostic, not a model the toolkit trains.

Exactness: scoring every (query, track) pair for 100 grid points would take hours, so each query
keeps a candidate set: its top ``--top`` tracks by the neural score, every track with a count
feature (successors, replays, the ``--transitions`` most frequent transitions) and its target.
With non-negative weights a track outside the set scores below the set's own top tracks, so
the target's rank is exact whenever it is inside the top ten, which is all NDCG@10 reads.
Ties count against the target, as in the toolkit's metrics.

Example (a workspace with a finished study of a listener log):
    python benchmarks/bench_blend.py --workspace ws --run sasrec-all-s0-32d39f5d \
        --count-run repeat-all-s0-753afe95
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from toolkit import metrics  # noqa: E402
from toolkit.artifacts import Workspace, read_manifest  # noqa: E402
from toolkit.config import SUCCESSOR_OPTIONS  # noqa: E402
from toolkit.data import load_split, to_batch  # noqa: E402
from toolkit.evaluate import QueryResults, query_mask  # noqa: E402
from toolkit.report import (  # noqa: E402
    by_unit, paired_bootstrap, resampling_units, score_run, session_sums, Protocol,
)
from toolkit.runs import build_baseline, scorer_for, select_runs  # noqa: E402
from toolkit.schema import PAD  # noqa: E402
from toolkit.scorers import prefix_plays  # noqa: E402

GRID_B = (0, 0.4, 0.8, 1.6, 3, 5, 8, 12)  # per successor rank unit (K - k for the k-th latest)
GRID_C = (0, 0.1, 0.3, 1, 2)  # per replay position
GRID_D = (0, 1, 2, 4, 8, 12)  # per log(1 + transition count)


def candidate_features(scorer, markov, a, n_items: int, top: int, transitions: int, device) -> dict:
    """Per query of split ``a``: a padded candidate block of features (neural, successor, replay,
    transition count), which candidate is the target, the session and whether the play was skipped."""
    mask = query_mask(a, "all")
    V = n_items + 1
    blocks, targets, sessions, skipped = [], [], [], []
    rs = np.asarray(a.row_session)
    for start in range(0, len(a), 64):
        idx = np.arange(start, min(start + 64, len(a)))
        m = torch.from_numpy(mask[idx])
        if not bool(m.any()):
            continue
        batch = to_batch(a, idx, device)
        rows, cols = (t.to(device) for t in m.nonzero(as_tuple=True))
        S = scorer.scores(batch, rows, cols).float().cpu()  # (N, V)
        N = len(rows)
        r_np, c_np = rows.cpu().numpy(), cols.cpu().numpy()
        tgt = batch["next_item"][rows, cols].cpu().numpy().astype(np.int64)
        best = torch.topk(S, top, dim=1).indices.numpy()
        succ = batch["succ"][rows, cols].cpu().numpy().astype(np.int64)  # (N, K) latest first
        K = succ.shape[1]
        sq, sk = np.nonzero(succ != PAD)
        # a replayed track scores the sum of its positions in the row (the count rule's replay term)
        pq, p_item, p_pos, _ = prefix_plays(batch["seqs"][rows].cpu().numpy(), c_np)
        last = batch["seqs"][rows, cols].cpu().numpy()
        tq, t_item, t_count = [], [], []
        for n in np.flatnonzero(last != PAD):
            lo, hi = markov.indptr[last[n]], markov.indptr[last[n] + 1]
            w, t = markov.weights[lo:hi].numpy(), markov.targets[lo:hi].numpy()
            keep = np.argsort(-w, kind="stable")[:transitions]
            tq.append(np.full(len(keep), n)), t_item.append(t[keep]), t_count.append(w[keep])
        tq, t_item, t_count = (np.concatenate(x) if x else np.zeros(0) for x in (tq, t_item, t_count))
        tq, t_item = tq.astype(np.int64), t_item.astype(np.int64)
        keys = np.unique(np.concatenate([np.repeat(np.arange(N), top) * V + best.ravel(), sq * V + succ[sq, sk],
                                         pq * V + p_item, tq * V + t_item, np.arange(N) * V + tgt]))
        kq, ki = keys // V, keys % V
        feat = np.zeros((len(keys), 4), np.float32)
        feat[:, 0] = S[torch.from_numpy(kq), torch.from_numpy(ki)].numpy()
        np.add.at(feat[:, 1], np.searchsorted(keys, sq * V + succ[sq, sk]), (K - sk).astype(np.float32))
        np.add.at(feat[:, 2], np.searchsorted(keys, pq * V + p_item), p_pos.astype(np.float32))
        np.add.at(feat[:, 3], np.searchsorted(keys, tq * V + t_item), t_count.astype(np.float32))
        per_q = np.bincount(kq, minlength=N)
        width = per_q.max()
        block = np.full((N, width, 4), np.nan, np.float32)
        block[kq, np.arange(len(kq)) - np.repeat(np.cumsum(per_q) - per_q, per_q)] = feat
        blocks.append(block)
        targets.append(np.flatnonzero(ki == tgt[kq]) - (np.cumsum(per_q) - per_q))
        sessions.append(rs[idx[r_np]])
        skipped.append((batch["next_skip"][rows, cols] == 1).cpu().numpy())
    width = max(b.shape[1] for b in blocks)
    F = np.concatenate([np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0)), constant_values=np.nan) for b in blocks])
    return {"F": F, "target": np.concatenate(targets), "session": np.concatenate(sessions),
            "skipped": np.concatenate(skipped)}


def ranks(feats: dict, score: np.ndarray) -> np.ndarray:
    """1-based rank of each query's target among its candidates (ties against the target); a
    missing candidate (NaN padding) never outranks anything."""
    score = np.where(np.isnan(feats["F"][..., 0]), -np.inf, score)
    t = score[np.arange(len(score)), feats["target"]]
    return (score >= t[:, None]).sum(1)  # the target itself is one of the >=


def blend(feats: dict, b: float, c: float, d: float) -> np.ndarray:
    F = np.nan_to_num(feats["F"], nan=0.0)
    return F[..., 0] + b * F[..., 1] + c * F[..., 2] + d * np.log1p(F[..., 3])


def count_rule(feats: dict) -> np.ndarray:
    """The repeat baseline's order on the candidates: successors, then replays, then transitions;
    the neural score only breaks the remaining ties (the baseline breaks them by popularity)."""
    F = np.nan_to_num(feats["F"], nan=0.0)
    return F[..., 1] * 1e9 + F[..., 2] * 1e5 + np.minimum(F[..., 3], 9999) * 10 + np.tanh(F[..., 0] / 100)


def ndcg(feats: dict, rank: np.ndarray) -> float:
    kept = ~feats["skipped"]
    return float(metrics.ndcg_at_k(rank, 10)[kept].mean())


def as_results(feats: dict, rank: np.ndarray) -> QueryResults:
    n = len(rank)
    nan = np.full(n, np.nan)
    return QueryResults(session=feats["session"], skipped=feats["skipped"], rank=rank.astype(np.int64), auc=nan,
                        top=np.zeros((n, 10), np.int32), auc_seen=nan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--run", required=True, help="a finished causal neural run trained with successors")
    ap.add_argument("--count-run", help="the finished repeat run with the same successors, to check the count rule")
    ap.add_argument("--top", type=int, default=300)
    ap.add_argument("--transitions", type=int, default=100)
    ap.add_argument("--replicates", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    device = torch.device("cpu")
    ws = Workspace.at(args.workspace)
    run = select_runs(ws, [args.run], None, False)[0]
    cfg = run.config
    if not cfg.successors:
        sys.exit(f"run {args.run} was trained without successors; pick one trained with --set successors=K")
    ds = ws.dataset(cfg.dataset)
    manifest = read_manifest(ds)
    scorer = scorer_for(ws, run, device)
    count_cfg = dataclasses.replace(cfg, model="repeat", repeat_head=False, transitions=0,
                                    **dict.fromkeys(SUCCESSOR_OPTIONS, False))
    markov = build_baseline(ds, manifest, count_cfg).markov
    split_feats = {}
    for split in ("valid", "test"):
        t0 = time.perf_counter()
        a = load_split(ds, split, 0, cfg.successors)
        split_feats[split] = candidate_features(scorer, markov, a, manifest.items, args.top, args.transitions, device)
        print(f"{split}: {len(split_feats[split]['target']):,} queries, {time.perf_counter() - t0:.0f} s", flush=True)
    valid, test = split_feats["valid"], split_feats["test"]
    fits = sorted(((ndcg(valid, ranks(valid, blend(valid, *w))), w)
                   for w in itertools.product(GRID_B, GRID_C, GRID_D)), reverse=True)
    (v_best, w_best) = fits[0]
    print(f"validation: neural {ndcg(valid, ranks(valid, blend(valid, 0, 0, 0))):.4f}, count rule "
          f"{ndcg(valid, ranks(valid, count_rule(valid))):.4f}, best blend {v_best:.4f} at b, c, d = {w_best}")
    r_neural, r_count, r_blend = (ranks(test, s) for s in (blend(test, 0, 0, 0), count_rule(test), blend(test, *w_best)))
    if args.count_run:
        cached = score_run(ws, select_runs(ws, [args.count_run], None, False)[0], Protocol(split="test"), device)
        kept = ~cached.skipped
        print(f"count run {args.count_run}: test NDCG@10 {metrics.ndcg_at_k(cached.rank, 10)[kept].mean():.4f} "
              f"(the count rule on the candidates: {ndcg(test, r_count):.4f})")
    sessions = np.unique(test["session"])
    units, unit_name = resampling_units(ds, sessions, "auto")
    sums = {name: by_unit(session_sums([as_results(test, r)], "ndcg@10", sessions), units)
            for name, r in (("neural", r_neural), ("count", r_count), ("blend", r_blend))}
    print(f"test ({len(test['target']):,} queries; intervals resample {unit_name}):")
    for name in ("neural", "count", "blend"):
        print(f"  {name:<7} NDCG@10 {ndcg(test, {'neural': r_neural, 'count': r_count, 'blend': r_blend}[name]):.4f}")
    for a_name in ("neural", "blend"):
        d = paired_bootstrap(sums[a_name], sums["count"], args.replicates, 0)
        print(f"  {a_name} - count: {d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]")


if __name__ == "__main__":
    main()
