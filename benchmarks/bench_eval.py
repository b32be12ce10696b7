"""Full-catalogue evaluation at scale: time and peak memory of ``toolkit.evaluate.run_queries``.

    python benchmarks/bench_eval.py                      # 10,000 sessions, 100,000 tracks, 3 repeats
    python benchmarks/bench_eval.py --sessions 2000 --items 20000 --repeats 1

Each repeat runs in a fresh subprocess so its peak RSS is its own.  In the same run it measures a
floor: the bare scoring matmul (hidden states x item table) for the same queries in the same
chunks, without ranking, top-k or AUC.  It prints the median wall time, queries per second, the
ratio to the floor, the peak RSS, and what holding every score at once would need.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch


def synthetic_split(sessions: int, length: int, n_items: int, seed: int):
    from toolkit.data import SplitArrays, next_skip

    rng = np.random.default_rng(seed)
    # Zipf-like popularity so the catalogue is used unevenly, like real listening
    p = 1.0 / np.arange(1, n_items + 1) ** 0.8
    seqs = rng.choice(np.arange(1, n_items + 1), size=(sessions, length), p=p / p.sum()).astype(np.int32)
    skips = (rng.random((sessions, length)) < 0.3).astype(np.int8)
    nxt = np.zeros_like(seqs)
    nxt[:, :-1] = seqs[:, 1:]
    rs = np.arange(sessions, dtype=np.int64)
    return SplitArrays(seqs=seqs, skips=skips, next_item=nxt, next_pos=nxt.copy(), next_skip=next_skip(skips, rs),
                       row_session=rs)


def child(args) -> dict:
    from toolkit.config import ModelConfig
    from toolkit.evaluate import SCORE_BUDGET, run_queries, summarize
    from toolkit.model import SeqRec
    from toolkit.scorers import NeuralScorer

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    a = synthetic_split(args.sessions, args.length, args.items, seed=0)
    model = SeqRec(ModelConfig(n_items=args.items, max_len=args.length, d_model=64, n_heads=2, n_layers=2,
                               dropout=0.0, causal=True, feedback_input=False, mask_prob=0.2)).eval()
    device = torch.device("cpu")
    if args.mode == "floor":
        emb = model.item_embeddings().detach()
        chunk = max(1, SCORE_BUDGET // (args.items + 1))
        t0 = time.perf_counter()
        with torch.no_grad():
            n = 0
            for start in range(0, len(a), 64):
                seqs = torch.from_numpy(np.asarray(a.seqs[start : start + 64], np.int64))
                hidden = model(seqs, torch.zeros_like(seqs))[:, :-1].reshape(-1, emb.shape[1])
                for lo in range(0, len(hidden), chunk):
                    (hidden[lo : lo + chunk] @ emb.T).max()
                n += len(hidden)
        seconds = time.perf_counter() - t0
        queries = n
    else:
        t0 = time.perf_counter()
        q = run_queries(NeuralScorer(model, hide=False), a, device, n_items=args.items)
        seconds = time.perf_counter() - t0
        summarize(q, args.items)
        queries = len(q.rank)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "queries": queries, "peak_rss": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--length", type=int, default=10, help="plays per session (length - 1 queries each)")
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", choices=["eval", "floor"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(child(args)))
        return
    results: dict[str, list[dict]] = {"eval": [], "floor": []}
    for _ in range(args.repeats):
        for mode in ("floor", "eval"):
            cmd = [sys.executable, __file__, "--mode", mode, "--sessions", str(args.sessions), "--length",
                   str(args.length), "--items", str(args.items), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    ev, fl = results["eval"], results["floor"]
    t_eval = statistics.median(r["seconds"] for r in ev)
    t_floor = statistics.median(r["seconds"] for r in fl)
    queries = ev[0]["queries"]
    rss = statistics.median(r["peak_rss"] for r in ev)
    all_at_once = queries * (args.items + 1) * 4
    print(f"catalogue {args.items:,} tracks, {args.sessions:,} sessions, {queries:,} queries, "
          f"{args.threads} threads, median of {args.repeats}")
    print(f"evaluation (rank, top-10, session AUC): {t_eval:.1f} s  ({queries / t_eval:,.0f} queries/s)")
    print(f"floor (scoring matmul only):           {t_floor:.1f} s  -> evaluation / floor = {t_eval / t_floor:.2f}x")
    print(f"peak RSS of the evaluation process: {rss / 2**30:.2f} GiB; every score held at once would need "
          f"{all_at_once / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
