"""Full-catalogue evaluation at scale: time and peak memory of ``toolkit.evaluate.run_queries``.

    python benchmarks/bench_eval.py                      # 1,000,000 tracks: today's chunks against item tiles
    python benchmarks/bench_eval.py --floor --sessions 10000 --items 100000   # the chunks against a floor

Each measurement runs in a fresh subprocess so its peak RSS is its own, and the repeats are
interleaved so that machine noise hits every mode alike.

Default (tiles): ``run_queries`` twice on the same queries, model and catalogue: ``tiled=False``
(today's path: ``SCORE_BUDGET // catalogue`` queries at a time against the whole catalogue) and
``tiled=True`` (``toolkit/topk.py``: a batch's queries against one tile of tracks at a time, under the
same budget).  Each child saves its ranks and top-10 lists; the parent asserts that both modes give
the same ones, then prints the median wall time, queries per second, the peak RSS and the ratios.

``--floor``: today's path against a floor, the bare scoring matmul (hidden states x item table) for
the same queries in the same chunks, without ranking, top-k or AUC.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def synthetic_split(sessions: int, length: int, n_items: int, seed: int):
    from toolkit.data import SplitArrays

    rng = np.random.default_rng(seed)
    # Zipf-like popularity so the catalogue is used unevenly, like real listening
    p = 1.0 / np.arange(1, n_items + 1) ** 0.8
    seqs = rng.choice(np.arange(1, n_items + 1), size=(sessions, length), p=p / p.sum()).astype(np.int32)
    skips = (rng.random((sessions, length)) < 0.3).astype(np.int8)
    nxt = np.zeros_like(seqs)
    nxt[:, :-1] = seqs[:, 1:]
    rs = np.arange(sessions, dtype=np.int64)
    return SplitArrays(seqs=seqs, skips=skips, next_item=nxt, next_pos=nxt.copy(), row_session=rs)


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
        tiled = {"eval": None, "chunks": False, "tiles": True}[args.mode]
        t0 = time.perf_counter()
        q = run_queries(NeuralScorer(model, hide=False), a, device, n_items=args.items, tiled=tiled)
        seconds = time.perf_counter() - t0
        summarize(q, args.items)
        queries = len(q.rank)
        if args.save:
            np.savez(args.save, rank=q.rank, top=q.top)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "queries": queries, "peak_rss": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=None, help="default 32 (tiles), 10,000 (--floor)")
    ap.add_argument("--length", type=int, default=10, help="plays per session (length - 1 queries each)")
    ap.add_argument("--items", type=int, default=None, help="default 1,000,000 (tiles), 100,000 (--floor)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--floor", action="store_true", help="today's path against the bare scoring matmul")
    ap.add_argument("--mode", choices=["eval", "floor", "chunks", "tiles"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(child(args)))
        return
    args.sessions = args.sessions or (10_000 if args.floor else 32)
    args.items = args.items or (100_000 if args.floor else 1_000_000)
    if args.floor:
        floor(args)
    else:
        tiles(args)


def run_child(args, mode: str, save: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--mode", mode, "--sessions", str(args.sessions), "--length",
           str(args.length), "--items", str(args.items), "--threads", str(args.threads)]
    if save is not None:
        cmd += ["--save", str(save)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def floor(args) -> None:
    results: dict[str, list[dict]] = {"eval": [], "floor": []}
    for _ in range(args.repeats):
        for mode in ("floor", "eval"):
            results[mode].append(run_child(args, mode))
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


def tiles(args) -> None:
    from toolkit.evaluate import SCORE_BUDGET
    from toolkit.topk import item_tile

    results: dict[str, list[dict]] = {"chunks": [], "tiles": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for mode in ("chunks", "tiles"):
                results[mode].append(run_child(args, mode, Path(tmp) / f"{mode}-{r}.npz"))
        saved = {m: [np.load(Path(tmp) / f"{m}-{r}.npz") for r in range(args.repeats)] for m in results}
        ref = saved["chunks"][0]
        for m, runs in saved.items():
            for got in runs:
                assert np.array_equal(got["top"], ref["top"]), f"{m}: top-10 lists differ from today's chunks"
                assert np.array_equal(got["rank"], ref["rank"]), f"{m}: ranks differ from today's chunks"
    queries = results["chunks"][0]["queries"]
    t = {m: statistics.median(r["seconds"] for r in rs) for m, rs in results.items()}
    rss = {m: statistics.median(r["peak_rss"] for r in rs) for m, rs in results.items()}
    width = args.items + 1
    per_batch = 64 * (args.length - 1)
    print(f"catalogue {args.items:,} tracks, {args.sessions:,} sessions, {queries:,} queries, "
          f"{args.threads} threads, median of {args.repeats}")
    print(f"chunks: {max(1, SCORE_BUDGET // width)} queries x {width:,} tracks at a time; tiles: up to "
          f"{per_batch} queries x {item_tile(per_batch, width, SCORE_BUDGET):,} tracks")
    print("identical ranks and top-10 lists in every repeat: yes")
    for m in results:
        runs = " ".join(f"{r['seconds']:.1f}" for r in results[m])
        print(f"{m:7s} {t[m]:7.1f} s  ({queries / t[m]:,.1f} queries/s)  peak RSS {rss[m] / 2**30:.2f} GiB  "
              f"(runs {runs} s)")
    print(f"tiles / chunks: time {t['tiles'] / t['chunks']:.2f}x, peak RSS {rss['tiles'] / rss['chunks']:.2f}x")


if __name__ == "__main__":
    main()
