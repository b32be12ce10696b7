"""Benchmark ``toolkit train``: seconds, throughput and memory per epoch of ONE fixed config.

1. A synthetic log is written once with the toolkit's own generator and cached in --data-dir as
   ``synth-p<plays>-u<users>-t<tracks>-s<seed>.parquet`` (the same name bench_prep.py uses).
2. It is prepared with default PrepConfig options into a cached workspace
   ``<data-dir>/bench-train-ws`` (prep reuses the dataset when input, options and code are
   unchanged).  Steps 1-2 run in a child process so that their memory does not count in the
   peak RSS reported for training.
3. ``toolkit.train.train`` runs in this process, in a fresh scratch workspace whose
   ``datasets/<name>`` links to the cached dataset, so no finished run or checkpoint is ever
   reused.  Patience is set above --epochs, so every epoch runs.

Per epoch it prints: training seconds (the step loop, as train() measures it), training rows
per second (rows are windows of up to max_len plays; real plays per second are shown too), the
median step time, validation seconds (``evaluate`` alone, timed by wrapping it) and the gap from
the last step to the 'epoch' event (validation + metrics + best/last checkpoint), the peak RSS
of the process so far (``ru_maxrss``) and, on CUDA, ``torch.cuda.max_memory_allocated``.

The numbers are wall-clock times on whatever else the machine is doing: compare runs only on
the same machine, with the same config, and repeat when a difference is small.

Example: python benchmarks/bench_train.py --epochs 2 --feedback contrastive --json train.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

MB = 1e6


# ---------------------------------------------------------------------------------------------
# Data: synth + prep, in a child process (spawned, so it shares no memory with this one)
# ---------------------------------------------------------------------------------------------


def synth_path(data_dir: Path, plays: int, users: int, tracks: int, seed: int) -> Path:
    return data_dir / f"synth-p{plays}-u{users}-t{tracks}-s{seed}.parquet"


def dataset_name(plays: int, users: int, tracks: int, seed: int) -> str:
    return f"train-p{plays}-u{users}-t{tracks}-s{seed}"


def prepare(data_dir: str, plays: int, users: int, tracks: int, seed: int, queue) -> None:
    """Child process: write the synthetic log (if absent) and prep it (reused if up to date)."""
    from toolkit.artifacts import Workspace
    from toolkit.config import PrepConfig
    from toolkit.prep import prep
    from toolkit.synth import SynthConfig, synth

    root = Path(data_dir)
    log = synth_path(root, plays, users, tracks, seed)
    genres = SynthConfig.genres
    scfg = SynthConfig(users=users, plays=plays, tracks=tracks, artists=max(genres, tracks // 10), seed=seed)
    t0 = time.perf_counter()
    made = not log.exists()
    if made:
        synth(log, scfg)
    synth_s = time.perf_counter() - t0
    pcfg = PrepConfig(name=dataset_name(plays, users, tracks, seed))
    ws = Workspace.at(root / "bench-train-ws")
    t0 = time.perf_counter()
    prepared = prep([log], ws, pcfg)
    prep_s = time.perf_counter() - t0
    queue.put({
        "synth_config": asdict(scfg), "prep_config": asdict(pcfg), "log": str(log), "synth_s": synth_s,
        "synth_written": made, "prep_s": prep_s, "prep_reused": prepared.up_to_date,
        "dataset_dir": str(ws.dataset(prepared.name).path), "manifest": prepared.manifest,
    })


def prepared_dataset(path: Path) -> dict:
    """An already prepared dataset directory (e.g. a real log's), used as it is."""
    from toolkit.artifacts import DatasetDir, read_manifest

    manifest = read_manifest(DatasetDir(path.resolve()))
    return {"synth_config": None, "prep_config": manifest.config, "log": None, "synth_s": 0.0,
            "synth_written": False, "prep_s": 0.0, "prep_reused": True, "dataset_dir": str(path.resolve()),
            "manifest": manifest}


def prepare_in_child(data_dir: Path, args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=prepare, args=(str(data_dir), args.plays, args.users, args.tracks, args.seed, queue))
    proc.start()
    while True:  # poll, so that a child that dies is noticed at once
        try:
            info = queue.get(timeout=1)
            break
        except queue_mod.Empty:
            if not proc.is_alive() and queue.empty():
                raise SystemExit(f"data preparation failed in the child process (exit code {proc.exitcode})") from None
    proc.join()
    return info


# ---------------------------------------------------------------------------------------------
# Machine and versions
# ---------------------------------------------------------------------------------------------


def machine(torch, device) -> dict:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    ram_gib, model = None, platform.processor()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 2**20, 1)
        model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), model)
    except OSError:
        pass
    info = {
        "cores": cores, "usable_cores": usable, "ram_gib": ram_gib, "cpu": model,
        "os": f"{platform.system()} {platform.release()}", "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(), "device": str(device),
        "load_avg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("toolkit", "torch", "numpy", "numba", "duckdb", "polars", "pyarrow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak * 1024 / MB  # macOS reports bytes


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def current_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    print("NOTE: wall-clock timings on a shared machine are noisy (single runs can vary by 30 % or more);")
    print("      compare only runs on the same machine with the same config, and repeat close calls.\n")

    data = prepared_dataset(Path(args.prepared)) if args.prepared else prepare_in_child(data_dir, args)
    m = data["manifest"]

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    import toolkit.train as ttrain
    from toolkit.artifacts import DatasetDir, Workspace
    from toolkit.config import TrainConfig
    from toolkit.data import load_split
    from toolkit.schema import PAD

    cfg = TrainConfig(
        dataset=m.name, model=args.model, feedback=args.feedback, d_model=args.d_model, epochs=args.epochs,
        batch_size=args.batch_size, patience=args.epochs + 1, seed=args.seed, device=args.device, amp=args.amp,
        compile=args.compile, loss=args.loss, negatives=args.negatives, negatives_on=args.negatives_on,
    )
    device = ttrain.pick_device(cfg.device)
    mach, vers = machine(torch, device), versions()

    ds_dir = Path(data["dataset_dir"])
    tr, va = load_split(DatasetDir(ds_dir), "train"), load_split(DatasetDir(ds_dir), "valid")
    train_rows, max_len = len(tr), int(tr.seqs.shape[1])
    train_plays = int((np.asarray(tr.seqs) != PAD).sum())
    valid_rows = len(va)
    valid_queries = int((np.asarray(va.next_item) != PAD).sum())
    plays_per_row = train_plays / max(1, train_rows)
    n_items = m.items
    # the same rule as train()'s _Sampler, repeated here only to print it
    full_ce = cfg.loss == "ce" or (cfg.loss == "auto" and cfg.batch_size * max_len * n_items <= ttrain.CE_BUDGET)
    loss_kind = "ce" if full_ce else ("sampled" if cfg.loss == "auto" else cfg.loss)
    del tr, va

    print(f"date      {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"machine   {mach['cores']} cores ({mach['usable_cores']} usable), {mach['ram_gib']} GiB RAM, {mach['cpu']}, "
          f"{mach['os']}; load avg {', '.join(f'{x:.2f}' for x in mach['load_avg_at_start'] or [])}")
    print(f"torch     {mach['torch_threads']} intra-op / {mach['torch_interop_threads']} inter-op threads, "
          f"device {mach['device']}{' (' + mach['gpu'] + ')' if 'gpu' in mach else ''}")
    print(f"versions  {', '.join(f'{k} {v}' for k, v in vers.items())}")
    if args.prepared:
        print(f"dataset   prepared dataset {m.name} read from {ds_dir} (no synth, no prep)")
    else:
        print(f"log       {data['log']} ({'written' if data['synth_written'] else 'cached'}, {data['synth_s']:.1f} s); "
              f"synth plays={args.plays} users={args.users} tracks={args.tracks} seed={args.seed}")
        print(f"prep      {data['prep_s']:.1f} s ({'reused, up to date' if data['prep_reused'] else 'prepared'}), "
              f"default PrepConfig -> {ds_dir}")
    print(f"dataset   {n_items:,} items, max_len {max_len}; train {train_rows:,} rows holding {train_plays:,} plays "
          f"({plays_per_row:.2f} plays/row); valid {valid_rows:,} rows, {valid_queries:,} queries (full ranking)")
    print(f"config    {json.dumps(asdict(cfg), sort_keys=True)}")
    print(f"          next-item loss resolves to '{loss_kind}'; "
          f"{-(-train_rows // cfg.batch_size)} steps per epoch; patience = epochs + 1, so every epoch runs\n")

    # Time evaluate() on its own by wrapping the name train() calls; train() itself is unchanged.
    eval_seconds: list[float] = []
    real_evaluate = ttrain.evaluate

    def timed_evaluate(*a, **kw):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = real_evaluate(*a, **kw)
        if device.type == "cuda":
            torch.cuda.synchronize()
        eval_seconds.append(time.perf_counter() - t0)
        return out

    ttrain.evaluate = timed_evaluate
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    epochs: list[dict] = []
    step_times: list[float] = []
    last = {"t": None, "cpu": cpu_seconds()}

    def progress(ev) -> None:
        now = time.perf_counter()
        if ev.phase == "step":
            if last["t"] is not None:
                step_times.append(now - last["t"])
            last["t"] = now
            return
        if ev.phase != "epoch":
            return
        row = {
            "epoch": ev.epoch, "train_s": ev.seconds, "rows_per_s": ev.rows_per_s,
            "plays_per_s": ev.rows_per_s * plays_per_row, "steps": len(step_times) + 1,
            "median_step_ms": 1e3 * statistics.median(step_times) if step_times else None,
            "p90_step_ms": 1e3 * quantile(step_times, 0.9) if step_times else None,
            "max_step_ms": 1e3 * max(step_times) if step_times else None,
            "cpu_s": cpu_seconds() - last["cpu"],
            "valid_s": eval_seconds[-1] if eval_seconds else None,
            "after_steps_s": now - last["t"], "peak_rss_mb": peak_rss_mb(), "rss_mb": current_rss_mb(),
            "cuda_peak_mb": torch.cuda.max_memory_allocated(device) / MB if device.type == "cuda" else None,
            "loss": sum(ev.losses.values()),
            "valid_ndcg@10": ev.valid.get("ndcg@10"), "valid_hr@10": ev.valid.get("hr@10"),
        }
        epochs.append(row)
        step_times.clear()
        last["t"] = None
        last["cpu"] = cpu_seconds()
        print_epoch(row, header=len(epochs) == 1)

    scratch = Path(tempfile.mkdtemp(prefix="bench-train-", dir=data_dir))
    try:
        ws = Workspace.at(scratch / "ws")
        (ws.root / "datasets" / m.name).symlink_to(ds_dir, target_is_directory=True)
        rss_before = peak_rss_mb()
        t0 = time.perf_counter()
        result = ttrain.train(ws, cfg, progress)
        train_wall = time.perf_counter() - t0
    finally:
        ttrain.evaluate = real_evaluate
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\ntrain() wall {train_wall:.1f} s for {result.epochs_done} epochs (includes model build and "
          f"checkpoints); peak RSS before train() {rss_before:.0f} MB; whole benchmark "
          f"{time.perf_counter() - t_all:.1f} s")
    if len(epochs) > 1:
        print(f"median over epochs: train {statistics.median(e['train_s'] for e in epochs):.2f} s, "
              f"{statistics.median(e['rows_per_s'] for e in epochs):,.0f} rows/s, "
              f"valid {statistics.median(e['valid_s'] for e in epochs):.2f} s")
    load_end = list(os.getloadavg()) if hasattr(os, "getloadavg") else []
    print(f"load avg at end {', '.join(f'{x:.2f}' for x in load_end)} (above 0 before the run = other work was running)")
    print("MB = 10^6 bytes. step ms: median / 90th percentile / max time between step events; cpu s: this process's\n"
          "user + sys seconds over the epoch including validation (about threads x wall when it had the cores).\n"
          "Timings are noisy on a shared machine; repeat before drawing conclusions.")
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": mach, "versions": vers,
        "args": vars(args), "train_config": asdict(cfg), "synth_config": data["synth_config"],
        "prep_config": data["prep_config"], "prep_s": data["prep_s"], "prep_reused": data["prep_reused"],
        "dataset": {"name": m.name, "items": n_items, "max_len": max_len, "train_rows": train_rows,
                    "train_plays": train_plays, "valid_rows": valid_rows, "valid_queries": valid_queries},
        "load_avg_at_end": load_end, "loss": loss_kind, "peak_rss_before_train_mb": rss_before, "train_wall_s": train_wall, "epochs": epochs,
        "valid": result.valid,
    }


def print_epoch(r: dict, header: bool) -> None:
    if header:
        print(f"{'epoch':>5} {'train s':>8} {'rows/s':>8} {'plays/s':>8} {'steps':>5} {'step ms med/p90/max':>19} "
              f"{'cpu s':>6} {'valid s':>8} {'gap s':>6} {'peakRSS MB':>10} {'cuda MB':>8} {'loss':>7} {'ndcg@10':>8}")
    cuda = f"{r['cuda_peak_mb']:.0f}" if r["cuda_peak_mb"] is not None else "-"
    step = (f"{r['median_step_ms']:.0f}/{r['p90_step_ms']:.0f}/{r['max_step_ms']:.0f}"
            if r["median_step_ms"] is not None else "-")
    valid = f"{r['valid_s']:.2f}" if r["valid_s"] is not None else "-"
    print(f"{r['epoch']:>5} {r['train_s']:>8.2f} {r['rows_per_s']:>8,.0f} {r['plays_per_s']:>8,.0f} {r['steps']:>5} "
          f"{step:>19} {r['cpu_s']:>6.1f} {valid:>8} {r['after_steps_s']:>6.2f} {r['peak_rss_mb']:>10.0f} {cuda:>8} "
          f"{r['loss']:>7.3f} {r['valid_ndcg@10']:>8.4f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--plays", type=int, default=200_000, help="plays in the synthetic log")
    p.add_argument("--users", type=int, default=400, help="listeners in the synthetic log")
    p.add_argument("--tracks", type=int, default=5_000, help="catalogue size of the synthetic log")
    p.add_argument("--seed", type=int, default=0, help="seed of the log and of training")
    p.add_argument("--epochs", type=int, default=2, help="epochs to train (all run: patience is set above this)")
    p.add_argument("--batch-size", type=int, default=128, help="training rows per step")
    p.add_argument("--d-model", type=int, default=64, help="model width")
    p.add_argument("--model", default="sasrec", choices=("sasrec", "bert4rec"), help="neural model")
    p.add_argument("--feedback", default="all", help="feedback mode(s), as for `toolkit train --feedback`")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads; 0 keeps torch's default (one per core). 1 by default because on a "
                        "shared machine a second thread waits on a busy core and steps get many times slower")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="training device")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast in training (toolkit train --amp)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (toolkit train --compile)")
    p.add_argument("--loss", default="auto", choices=("auto", "ce", "sampled", "bce"), help="next-item loss")
    p.add_argument("--negatives", type=int, default=512, help="sampled / bce negatives per row")
    p.add_argument("--negatives-on", default="auto", choices=("auto", "host", "device"),
                   help="where per-row negatives are drawn (toolkit train --set negatives_on=)")
    p.add_argument("--prepared", metavar="DIR",
                   help="benchmark on this prepared dataset directory (e.g. <workspace>/datasets/spotify) "
                        "instead of the synthetic log; --plays/--users/--tracks are then unused")
    p.add_argument("--data-dir", default=str(ROOT / "bench-data"), help="cache for the log and the prepared dataset")
    p.add_argument("--json", metavar="FILE", help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    out = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
