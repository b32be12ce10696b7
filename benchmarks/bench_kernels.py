"""Benchmark the kernels on a synthetic session CSR.

``build_sequences`` is compared with a plain numpy copy of as many bytes as it writes: the kernel
is memory-bound, so copy bandwidth is its practical ceiling (goal: ratio >= 0.5). The copy goes
into a preallocated buffer while ``build_sequences`` returns fresh arrays, whose first touch makes
the OS zero every page; the "core" row runs the jitted kernel into preallocated outputs to show how
much of the gap that is.

Example: python benchmarks/bench_kernels.py --sessions 650000 --max-len 50 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from kernels import build_sequences, popularity_cdf, sample_negatives  # noqa: E402
from kernels.sequences import _build_sequences_kernel, _windows_per_session  # noqa: E402


def synthetic_csr(n_sessions: int, n_items: int, seed: int):
    """Random sessions of 1..60 plays: (items int32, skips int8, offsets int64)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 61, size=n_sessions)
    offsets = np.zeros(n_sessions + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    n_events = int(offsets[-1])
    items = rng.integers(1, n_items + 1, size=n_events, dtype=np.int32)
    skips = (rng.random(n_events) < 0.4).astype(np.int8)
    return items, skips, offsets


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call (JIT, page cache)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _row(name: str, seconds: float | None, gb: float | None, note: str) -> tuple[str, str, str, str]:
    t = "" if seconds is None else f"{seconds * 1e3:9.1f} ms"
    bw = "" if gb is None or seconds is None else f"{gb / seconds:6.2f} GB/s"
    return name, t, bw, note


def bench_sequences(items, skips, offsets, max_len: int, repeats: int):
    """Table rows for build_sequences against numpy copies of as many bytes; also returns its output."""
    out = build_sequences(items, skips, offsets, max_len)
    n_bytes = sum(a.nbytes for a in out)
    gb = n_bytes / 1e9
    t_wrapper = median_time(lambda: build_sequences(items, skips, offsets, max_len), repeats)
    row_start = np.zeros(offsets.shape[0], dtype=np.int64)
    np.cumsum(_windows_per_session(offsets, max_len), out=row_start[1:])
    t_core = median_time(lambda: _build_sequences_kernel(items, skips, offsets, max_len, row_start, *out), repeats)

    src = np.ones(n_bytes, dtype=np.uint8)
    dst = np.empty_like(src)
    t_copy = median_time(lambda: np.copyto(dst, src), repeats)
    t_fresh_copy = median_time(lambda: src.copy(), repeats)  # pays page zeroing like build_sequences
    rows = [
        _row("build_sequences", t_wrapper, gb, f"{out[0].shape[0]:,} rows, {gb:.3f} GB out"),
        _row("  core, preallocated", t_core, gb, "jitted kernel only"),
        _row("numpy copyto", t_copy, gb, "same bytes, preallocated"),
        _row("numpy copy, fresh out", t_fresh_copy, gb, "src.copy()"),
        ("ratio kernel/copy", "", f"{t_copy / t_wrapper:6.2f}", "goal >= 0.5"),
        ("ratio core/copy", "", f"{t_copy / t_core:6.2f}", "both into preallocated memory"),
        ("ratio kernel/fresh copy", "", f"{t_fresh_copy / t_wrapper:6.2f}", "both into fresh memory"),
    ]
    return rows, out


def bench_negatives(seqs, exclude, counts, n_items: int, k: int, repeats: int):
    """Table rows for sample_negatives, uniform and by popularity (beta 0.75)."""
    cdf = popularity_cdf(counts, 0.75)
    rows = []
    for name, c in (("negatives uniform", None), ("negatives popularity", cdf)):
        t = median_time(lambda: sample_negatives(seqs, n_items, k, seed=1, cdf=c, exclude=exclude), repeats)
        rows.append(_row(name, t, None, f"{seqs.shape[0] / t:,.0f} rows/s, k={k}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=650_000, help="sessions (mean 30.5 plays each)")
    parser.add_argument("--max-len", type=int, default=50, help="window length")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement")
    parser.add_argument("--items", type=int, default=100_000, help="catalogue size")
    parser.add_argument("--neg-rows", type=int, default=100_000, help="rows given to sample_negatives")
    parser.add_argument("--k", type=int, default=100, help="negatives per row")
    args = parser.parse_args()

    items, skips, offsets = synthetic_csr(args.sessions, args.items, seed=0)
    print(f"events {items.shape[0]:,}  sessions {args.sessions:,}  max_len {args.max_len}  repeats {args.repeats}")
    rows, out = bench_sequences(items, skips, offsets, args.max_len, args.repeats)
    # negatives for the first rows, excluding their next-item targets as training would
    seqs = np.ascontiguousarray(out[0][: args.neg_rows])
    exclude = np.ascontiguousarray(out[2][: args.neg_rows])
    del out
    counts = np.bincount(items, minlength=args.items + 1).astype(np.int64)
    rows += bench_negatives(seqs, exclude, counts, args.items, args.k, args.repeats)

    print(f"{'what':<24}{'median':>12}{'bandwidth':>12}  notes")
    for name, t, bw, note in rows:
        print(f"{name:<24}{t:>12}{bw:>12}  {note}")


if __name__ == "__main__":
    main()
