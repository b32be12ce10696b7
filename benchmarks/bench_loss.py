"""Next-item losses on a large synthetic catalogue: time and peak memory of one forward + backward.

    python benchmarks/bench_loss.py                       # 1,000,000 and 100,000 tracks, 320 positions
    python benchmarks/bench_loss.py --catalogues 1000000 --cap-gb 12 --repeats 5

For each catalogue it measures, each in a fresh subprocess (so a peak is its own):

- plain: ``losses.full_cross_entropy`` on the materialised (positions, catalogue) scores, as
  ``toolkit train --loss ce`` computes it while the scores fit in ``loss_memory_mb``. Skipped, with
  the reason printed, when its estimated peak (three (positions, catalogue) float32 buffers: scores,
  log-softmax, gradient) is above ``--cap-gb``.
- chunked: ``full_softmax.cross_entropy`` with the chunk that each ``--budgets`` value (MiB of scores
  per step, ``TrainConfig.loss_memory_mb``) gives; the same loss, scores recomputed in backward.
- sampled: ``losses.sampled_softmax_rows``, ``--negatives`` uniform negatives per row with logQ
  (the sampler itself, a numba kernel in training, is not timed).
- shared: ``losses.sampled_softmax_shared``, ``--shared-negatives`` negatives for the whole step.

Every method gets the same hidden states (positions x d, requires grad) and item table
((catalogue + 2) x d: PAD, tracks, MASK), and every position has a target. Time: median of
``--repeats`` forward + backward passes after one warm-up. Memory: the peak resident set over the
timed passes above the resident set before them (``VmHWM`` reset through ``/proc/self/clear_refs``),
with glibc told to return large blocks on free (``MALLOC_MMAP_THRESHOLD_``), so the peak is what the
step holds, not what the allocator keeps; it includes the item table's gradient (catalogue x d).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20


# ---------------------------------------------------------------------------------------------
# One measurement, in a child process
# ---------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _loss_fn(spec: dict, torch):
    """The method's loss as a function of (hidden, table), with its inputs drawn here."""
    sys.path.insert(0, str(ROOT))
    from toolkit import full_softmax, losses
    from toolkit.schema import PAD

    n_items, (batch, max_len) = spec["catalogue"], spec["positions"]
    n_scored = n_items + 1  # PAD and the tracks; the MASK row is never scored
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(1, n_items + 1, (batch * max_len,), generator=g)
    log_q = torch.full((n_scored,), -float(torch.log(torch.tensor(float(n_items)))))
    method = spec["method"]
    if method == "plain":
        def loss(hidden, table):
            scores = hidden @ table[:n_scored].T  # as SeqRec.scores
            scores[:, PAD] = float("-inf")
            return losses.full_cross_entropy(scores, targets)
    elif method == "chunked":
        def loss(hidden, table):
            return full_softmax.cross_entropy(hidden, table, targets, spec["chunk"], n_scored)
    elif method == "sampled":
        negatives = torch.randint(1, n_items + 1, (batch, spec["negatives"]), generator=g)

        def loss(hidden, table):
            return losses.sampled_softmax_rows(hidden.view(batch, max_len, -1), table, targets.view(batch, max_len),
                                               negatives, log_q)
    else:
        negatives = torch.randint(1, n_items + 1, (spec["shared_negatives"],), generator=g)

        def loss(hidden, table):
            return losses.sampled_softmax_shared(hidden, table, targets, negatives, log_q)
    return loss


def child(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    n_items, (batch, max_len), d = spec["catalogue"], spec["positions"], spec["d_model"]
    g = torch.Generator().manual_seed(1)
    table = (torch.randn(n_items + 2, d, generator=g) * 0.02).requires_grad_()  # the model's init scale
    hidden = torch.randn(batch * max_len, d, generator=g).requires_grad_()  # LayerNorm output scale
    loss_fn = _loss_fn(spec, torch)

    def step() -> float:
        table.grad = hidden.grad = None  # as the training loop does (set_to_none)
        loss = loss_fn(hidden, table)
        loss.backward()
        return float(loss)

    value = step()  # warm-up: first touch of every buffer
    table.grad = hidden.grad = None
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"loss": value, "median_s": statistics.median(times), "times_s": times,
            "peak_mib": (_status_kib("VmHWM") - before) / 1024}


def measure(spec: dict) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MIB), "OMP_NUM_THREADS": str(spec["threads"])}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(f"{spec['method']} at {spec['catalogue']:,} tracks failed:\n{out.stderr[-2000:]}")
    return {**spec, **json.loads(out.stdout.strip().splitlines()[-1])}


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------


def machine() -> dict:
    info = {"cores": os.cpu_count(), "cpu": platform.processor(), "python": platform.python_version(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                           if ln.startswith("model name"))
        mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal:"))
        info["ram_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    import torch

    info["torch"] = torch.__version__
    return info


def plan(args, n_items: int) -> tuple[list[dict], list[str]]:
    """The measurements for one catalogue, and the lines saying what was skipped and why."""
    sys.path.insert(0, str(ROOT))
    from toolkit.full_softmax import SCORE_BYTES

    n = args.batch * args.max_len
    base = {"catalogue": n_items, "positions": [args.batch, args.max_len], "d_model": args.d_model,
            "threads": args.threads, "repeats": args.repeats, "negatives": args.negatives,
            "shared_negatives": args.shared_negatives}
    specs, notes = [], []
    plain_gib = 3 * n * (n_items + 1) * SCORE_BYTES / 2**30
    if plain_gib <= args.cap_gb:
        specs.append({**base, "method": "plain"})
    else:
        notes.append(f"plain skipped at {n_items:,} tracks: about {plain_gib:.1f} GiB of scores, log-softmax and "
                     f"gradient ({n:,} x {n_items + 1:,} float32, three times) is above --cap-gb {args.cap_gb:g}")
    for mib in args.budgets:
        # the chunk chunk_columns gives, also where the whole matrix would fit (then one chunk)
        chunk = max(1, min(n_items + 1, int(mib * MIB) // SCORE_BYTES // n))
        specs.append({**base, "method": "chunked", "budget_mib": mib, "chunk": chunk})
    specs += [{**base, "method": "sampled"}, {**base, "method": "shared"}]
    return specs, notes


def label(r: dict) -> str:
    if r["method"] == "chunked":
        return f"chunked {r['budget_mib']:g} MiB ({r['chunk']:,} cols)"
    if r["method"] == "sampled":
        return f"sampled rows (K {r['negatives']:,}/row)"
    if r["method"] == "shared":
        return f"shared (K {r['shared_negatives']:,}/step)"
    return "plain (materialised)"


def report(rows: list[dict], notes: list[str]) -> None:
    print(f"\n{'tracks':>10}  {'method':<30} {'median s':>9} {'peak MiB':>9} {'loss':>9}")
    for r in rows:
        print(f"{r['catalogue']:>10,}  {label(r):<30} {r['median_s']:>9.3f} {r['peak_mib']:>9.0f} {r['loss']:>9.4f}")
    for line in notes:
        print(f"  {line}")
    print("\nratios (time, peak memory), measured in this run:")
    for n_items in dict.fromkeys(r["catalogue"] for r in rows):
        here = [r for r in rows if r["catalogue"] == n_items]
        others = {r["method"]: r for r in here if r["method"] != "chunked"}
        for c in (r for r in here if r["method"] == "chunked"):
            for name, o in others.items():
                print(f"  {n_items:>10,}  {label(c)} / {name}: time {c['median_s'] / o['median_s']:.2f}x, "
                      f"memory {c['peak_mib'] / max(o['peak_mib'], 1e-9):.2f}x")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--catalogues", default="1000000,100000", help="comma-separated catalogue sizes (tracks)")
    p.add_argument("--batch", type=int, default=16, help="rows per step")
    p.add_argument("--max-len", type=int, default=20, help="positions per row (all with a target)")
    p.add_argument("--d-model", type=int, default=64, help="embedding width")
    p.add_argument("--budgets", default="512,64", help="chunked: comma-separated loss_memory_mb values (MiB)")
    p.add_argument("--negatives", type=int, default=512, help="sampled: negatives per row")
    p.add_argument("--shared-negatives", type=int, default=4096, help="shared: negatives per step")
    p.add_argument("--repeats", type=int, default=3, help="timed passes after one warm-up")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--cap-gb", type=float, default=4.0, help="skip plain when its estimate is above this (GiB)")
    p.add_argument("--json", help="also write every measurement to this file")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    args.budgets = [float(x) for x in args.budgets.split(",")]
    started = time.perf_counter()
    info = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **machine(),
            "args": {k: v for k, v in vars(args).items() if k not in ("child", "json")}}
    print(json.dumps(info))
    rows, notes = [], []
    for n_items in (int(x) for x in args.catalogues.split(",")):
        specs, skipped = plan(args, n_items)
        notes += skipped
        for spec in specs:
            rows.append(measure(spec))
            print(f"  measured {label(rows[-1])} at {n_items:,} tracks: {rows[-1]['median_s']:.3f} s", flush=True)
    report(rows, notes)
    info["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"\nload average at end {info['load_avg_at_end']}; took {time.perf_counter() - started:.0f} s")
    if args.json:
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps({"machine": info, "rows": rows, "notes": notes}, indent=1))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
