"""Train a list of configurations on one prepared dataset and log validation results as JSON lines.

A tuning aid: every run is an ordinary ``toolkit train`` run (same ids, reused when finished),
and only validation metrics are read, never test.  One line per finished run is appended to
``--out`` as soon as it finishes, so a time-boxed sweep keeps what it reached.

    python benchmarks/train_grid.py --dataset spotify --grid skip-tuning --out sweep.jsonl
    python benchmarks/train_grid.py --dataset ml1m --grid ml1m --out ml1m.jsonl --test

``--test`` also scores the test split after training; use it for reproductions of published
numbers (ML-1M), not for choosing options.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path


from toolkit.artifacts import Workspace, read_manifest
from toolkit.config import TrainConfig, parse_setting
from toolkit.evaluate import summarize
from toolkit.devices import pick_device
from toolkit.report import Protocol, score_run
from toolkit.runs import select_runs
from toolkit.train import train

GRIDS: dict[str, list[dict]] = {
    # skip-aware options the paper left open, in the order they are worth trying
    "skip-tuning": [
        {"feedback": "all"},
        {"feedback": "positives-only"},
        {"feedback": "contrastive"},
        {"feedback": "all", "target": "next-pos"},
        {"feedback": "feedback-input"},
        {"feedback": "feedback-input+contrastive"},
        {"feedback": "contrastive", "alpha": 0.3},
        {"feedback": "contrastive", "target": "next-pos"},
        {"feedback": "negative-target"},
        {"feedback": "feedback-input+contrastive", "target": "next-pos"},
        {"feedback": "contrastive", "alpha": 0.05, "context": "output"},
        {"feedback": "contrastive", "alpha": 1.0},
        {"feedback": "contrastive", "tau": 0.5},
        {"feedback": "feedback-input", "target": "next-pos"},
    ],
    # does the skip term rank skipped tracks lower? the paper's contexts (cos / tau) against the ranking's
    # own scores (context "score"), with next-item and next-positive targets
    "skip-direction": [
        {"feedback": "all"},
        {"feedback": "positives-only"},
        {"feedback": "contrastive"},
        {"feedback": "contrastive", "target": "next-pos"},
        {"feedback": "all", "target": "next-pos"},
        {"feedback": "contrastive", "context": "score", "alpha": 0.1},
        {"feedback": "contrastive", "context": "score", "alpha": 0.5},
        {"feedback": "contrastive", "context": "score", "alpha": 1.0},
        {"feedback": "contrastive", "context": "score", "alpha": 2.0},
        {"feedback": "contrastive", "context": "score", "alpha": 0.5, "target": "next-pos"},
        # the model must read which plays were skipped (feedback-input) to learn not to offer them again
        {"feedback": "feedback-input"},
        {"feedback": "feedback-input+contrastive", "context": "score", "skip_negatives": "seen", "alpha": 0.5},
        {"feedback": "feedback-input+contrastive", "context": "score", "skip_negatives": "seen", "alpha": 1.0},
        {"feedback": "feedback-input+contrastive", "context": "score", "skip_negatives": "seen", "alpha": 2.0},
        {"feedback": "contrastive", "context": "score", "skip_negatives": "seen", "alpha": 1.0},
        {"feedback": "feedback-input+contrastive", "context": "score", "alpha": 0.5},
        {"feedback": "feedback-input+contrastive"},
        {"feedback": "feedback-input+contrastive", "skip_negatives": "seen"},
    ],
    # SASRec with full cross-entropy on ML-1M (max_len 200 dataset), two widths; validated, like the
    # published numbers, without the films the user already rated (a user rates a film once)
    "ml1m": [
        {"model": "sasrec", "loss": "ce", "d_model": 64, "n_heads": 1, "dropout": 0.2, "exclude_played": True},
        {"model": "sasrec", "loss": "ce", "d_model": 128, "n_heads": 2, "dropout": 0.3, "exclude_played": True},
    ],
    # learning-rate decay, more room for early stopping and stronger dropout at both widths
    "ml1m-decay": [
        {"model": "sasrec", "loss": "ce", "d_model": 64, "n_heads": 1, "dropout": 0.2, "lr_schedule": "cosine",
         "epochs": 300, "patience": 40, "exclude_played": True},
        {"model": "sasrec", "loss": "ce", "d_model": 128, "n_heads": 2, "dropout": 0.3, "lr_schedule": "cosine",
         "epochs": 300, "patience": 40, "exclude_played": True},
        {"model": "sasrec", "loss": "ce", "d_model": 128, "n_heads": 2, "dropout": 0.5, "lr_schedule": "cosine",
         "epochs": 300, "patience": 40, "exclude_played": True},
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--grid", choices=sorted(GRIDS), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], help="key=value for every run, e.g. epochs=8")
    ap.add_argument("--only", default="", help="comma-separated indices of the grid to run")
    ap.add_argument("--test", action="store_true", help="also score the test split (reproductions only)")
    args = ap.parse_args()
    ws = Workspace.at(args.workspace)
    base = {k: parse_setting(v) for k, v in (s.split("=", 1) for s in args.set)}
    grid = GRIDS[args.grid]
    chosen = [int(i) for i in args.only.split(",") if i.strip()] or range(len(grid))
    for i in chosen:
        cfg = TrainConfig(dataset=args.dataset, **{**base, **grid[i]})
        t0 = time.perf_counter()
        result = train(ws, cfg, _print_epoch)
        line = {"grid": args.grid, "index": i, "options": grid[i], "config": asdict(cfg), "run": result.id,
                "valid": result.valid, "best_epoch": result.best_epoch, "epochs_done": result.epochs_done,
                "wall_s": time.perf_counter() - t0, "device": str(pick_device(cfg.device)),
                "curve": [json.loads(x) for x in Path(result.path, "metrics.jsonl").read_text().splitlines()]}
        if args.test:
            line["test"] = _test_metrics(ws, cfg, result)
        with args.out.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps({k: line[k] for k in ("index", "options", "run", "wall_s")}), flush=True)


def _test_metrics(ws: Workspace, cfg: TrainConfig, result: dict) -> dict:
    """The run's best checkpoint on the test split, through the report's scoring path, under the
    protocol it was validated with (``exclude_played``) and, for comparison, the other one."""
    run = select_runs(ws, [result.id], None, allow_unfinished=False)[0]
    n_items = read_manifest(ws.dataset(cfg.dataset)).items
    out = {}
    for exclude in (cfg.exclude_played, not cfg.exclude_played):
        q = score_run(ws, run, Protocol(exclude_played=exclude), pick_device(cfg.device))
        out["excluding_played" if exclude else "including_played"] = summarize(q, n_items)
    return out


def _print_epoch(event) -> None:
    if event.phase == "epoch":
        print(f"  epoch {event.epoch}: {event.seconds:.1f} s, valid ndcg@10 {event.valid['ndcg@10']:.4f}",
              flush=True)




if __name__ == "__main__":
    main()
