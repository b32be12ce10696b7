"""Quality per CPU second: validation NDCG@10 against training CPU time, several configs in ONE run.

Each config is an ordinary ``TrainConfig`` (``--config name:key=value,...`` over the study's SMALL
settings) trained by the toolkit's own pieces (``model_config``, ``Sampler``, ``train_step``,
``lr_factor``) with the loop of ``train._fit_neural``: per-epoch shuffles seeded by (seed, epoch),
AdamW (fused), gradient clipping, the planned warm-up / schedule.  Early stopping is off: every
config runs until its planned epochs or ``--budget-s`` CPU seconds, whichever comes first.

The configs are interleaved: each trains for ``--every-s`` CPU seconds in turn, then is validated
(full ranking on the config's ``valid_sessions`` subset; validation time is not counted), so a
slower or busier stretch of the shared machine hits every config alike.  CPU time is
``time.process_time`` of this process around the training steps only, so run it with one thread
(``OMP_NUM_THREADS=1``; the script also calls ``torch.set_num_threads(1)``).  Dropout draws come
from torch's global generator, which the configs share, so a config's curve is not bit-identical
to its ``toolkit train`` run; its negatives and batch order are.

Example: OMP_NUM_THREADS=1 python benchmarks/bench_quality.py --workspace toolkit-workspace --dataset spotify \\
    --config before: --config after:loss=shared,negatives=2048,batch_size=32,epochs=3 --budget-s 240
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402

from toolkit.artifacts import Workspace, read_manifest  # noqa: E402
from toolkit.manifest import Manifest  # noqa: E402
from toolkit.config import TrainConfig, parse_setting  # noqa: E402
from toolkit.data import load_split, row_batches, to_batch  # noqa: E402
from toolkit.evaluate import evaluate, session_subset  # noqa: E402
from toolkit.model import SeqRec  # noqa: E402
from toolkit.scorers import NeuralScorer  # noqa: E402
from toolkit.study import SMALL  # noqa: E402
from toolkit.train import Sampler, keep_freed_memory, lr_factor, model_config, train_step  # noqa: E402


def parse_config(text: str, dataset: str) -> tuple[str, TrainConfig]:
    """``name:key=value,key=value`` -> (name, TrainConfig over SMALL); ``name:`` is SMALL itself."""
    name, _, rest = text.partition(":")
    extra = {k: parse_setting(v) for k, _, v in (item.partition("=") for item in rest.split(",") if item)}
    for key in ("lr", "sampler_beta", "dropout", "weight_decay"):
        if key in extra:
            extra[key] = float(extra[key])
    return name, TrainConfig(dataset=dataset, **{**SMALL, **extra})


class Run:
    """One config's model, optimiser and position in its epochs; ``advance`` trains for a CPU slice."""

    def __init__(self, name: str, cfg: TrainConfig, manifest: Manifest, train_rows, device) -> None:
        self.name, self.cfg, self.rows, self.device = name, cfg, train_rows, device
        torch.manual_seed(cfg.seed)  # the same initial weights as `toolkit train` with this seed
        self.model = SeqRec(model_config(manifest, cfg)).to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        self.per_epoch = -(-len(train_rows) // cfg.batch_size)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, partial(lr_factor, cfg, cfg.epochs * self.per_epoch))
        self.sampler = Sampler(train_rows, manifest.items, cfg, device)
        self.epoch, self.batch, self.step, self.cpu_s = 0, 0, 0, 0.0
        self.batches = row_batches(len(train_rows), cfg.batch_size, np.random.default_rng([cfg.seed, 0]))
        self.curve: list[dict] = []

    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.epochs

    def advance(self, until_cpu_s: float) -> None:
        self.model.train()
        t0 = time.process_time()
        while not self.done and self.cpu_s + time.process_time() - t0 < until_cpu_s:
            batch = to_batch(self.rows, self.batches[self.batch], self.device)
            loss = sum(train_step(self.model, self.model, batch, self.cfg, self.sampler, self.step).values())
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.opt.step()
            self.sched.step()
            self.step, self.batch = self.step + 1, self.batch + 1
            if self.batch == len(self.batches):
                self.epoch, self.batch = self.epoch + 1, 0
                rng = np.random.default_rng([self.cfg.seed, self.epoch])
                self.batches = row_batches(len(self.rows), self.cfg.batch_size, rng)
        self.cpu_s += time.process_time() - t0


def value_at(curve: list[dict], cpu_s: float) -> float:
    """NDCG@10 of the last validation at or before ``cpu_s`` CPU seconds (NaN before the first)."""
    seen = [p["ndcg@10"] for p in curve if p["cpu_s"] <= cpu_s + 1e-9]
    return seen[-1] if seen else math.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--dataset", default="spotify")
    ap.add_argument("--config", action="append", required=True, help="name:key=value,... over SMALL; first = reference")
    ap.add_argument("--budget-s", type=float, default=240.0, help="CPU seconds of training per config at most")
    ap.add_argument("--every-s", type=float, default=30.0, help="CPU seconds between validations")
    ap.add_argument("--json", type=Path, help="write every curve here")
    args = ap.parse_args()

    torch.set_num_threads(1)
    keep_freed_memory()  # as train() does; it applies to every config alike
    device = torch.device("cpu")
    ds = Workspace.at(args.workspace).dataset(args.dataset)
    manifest = read_manifest(ds)
    configs = [parse_config(c, args.dataset) for c in args.config]
    # the repeat head's successors come with the batches; every config that reads them must read as many
    reads = {cfg.successors for _, cfg in configs if cfg.repeat_head and cfg.successors}
    if len(reads) > 1 or any(cfg.transitions or cfg.history for _, cfg in configs):
        sys.exit("the configs must read one number of successors, and no transitions or history columns")
    n_succ = reads.pop() if reads else 0
    train_rows, valid = load_split(ds, "train", 0, n_succ), load_split(ds, "valid", 0, n_succ)
    last_only = manifest.last_only
    runs = [Run(name, cfg, manifest, train_rows, device) for name, cfg in configs]
    for r in runs:
        print(f"{r.name:>10}: loss {r.sampler.loss}, {r.per_epoch} steps/epoch, "
              f"{json.dumps({k: v for k, v in asdict(r.cfg).items() if v != getattr(TrainConfig(), k)})}", flush=True)
    subset = session_subset(valid, runs[0].cfg.valid_sessions, runs[0].cfg.seed)
    mark = 0.0
    while any(not r.done and r.cpu_s < args.budget_s for r in runs):
        mark = min(mark + args.every_s, args.budget_s)
        for r in runs:
            if r.done or r.cpu_s >= args.budget_s:
                continue
            r.advance(mark)
            r.model.eval()
            m = evaluate(NeuralScorer(r.model, "positives-only" in r.cfg.modes), valid, manifest.items, device,
                         last_only, subset, exclude_played=r.cfg.exclude_played)
            r.curve.append({"cpu_s": r.cpu_s, "step": r.step, "epoch": r.epoch + r.batch / r.per_epoch, **m})
            print(f"{r.name:>10}  cpu {r.cpu_s:7.1f} s  step {r.step:6d}  epoch {r.curve[-1]['epoch']:5.2f}  "
                  f"valid ndcg@10 {m['ndcg@10']:.4f}  hr@10 {m['hr@10']:.4f}", flush=True)

    ref = runs[0]
    print(f"\nvalid NDCG@10 at equal CPU seconds (ratio to {ref.name}); one thread, validation time excluded")
    marks = sorted({round(p["cpu_s"]) for r in runs for p in r.curve})
    print("| CPU s | " + " | ".join(r.name for r in runs) + " |")
    print("|---:|" + "---:|" * len(runs))
    for t in marks:
        cells = []
        for r in runs:
            v, base = value_at(r.curve, t + 1.0), value_at(ref.curve, t + 1.0)
            ratio = f" ({v / base:.2f}x)" if r is not ref and base > 0 and not math.isnan(v) else ""
            cells.append("-" if math.isnan(v) else f"{v:.4f}{ratio}")
        print(f"| {t:.0f} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({r.name: {"config": asdict(r.cfg), "loss": r.sampler.loss, "curve": r.curve}
                                         for r in runs}, indent=1))


if __name__ == "__main__":
    main()
