"""Screenshot an HTML report with headless Chromium, to check by eye how it renders.

``--demo`` first writes a made-up but realistic report (five groups with long names, one
single-seed baseline, a NaN metric, runs with and without curves) to the HTML path, so the
layout can be checked without training anything. Very tall screenshots are also cut into
``<out>-partN.png`` slices of ``--slice`` pixels when Pillow is installed.

Example: python benchmarks/screenshot_report.py /tmp/report_sample.html /tmp/report_sample.png --demo
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from toolkit.report.render import write_report  # noqa: E402

METRICS = ["hr@1", "hr@5", "hr@10", "hr@20", "ndcg@10", "ndcg@20", "mrr@10", "skip_hr@10", "skip_mrr@10",
           "delta_hr@10", "auc", "coverage@10", "pop_pct@10"]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("no Chromium found (looked for chromium, chromium-browser, google-chrome); "
                     "install it, e.g. `apt-get install -y chromium`")


def screenshot(html_path: Path, png_path: Path, width: int = 1400, height: int = 6000) -> Path:
    """Render ``html_path`` in headless Chromium at ``width`` x ``height`` CSS pixels into ``png_path``."""
    html_path, png_path = html_path.resolve(), png_path.resolve()
    if not html_path.is_file():
        raise SystemExit(f"{html_path}: no such file")
    png_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--screenshot={png_path}", f"--window-size={width},{height}", html_path.as_uri()]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not png_path.is_file():
        raise SystemExit(f"chromium failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return png_path


def slice_png(png_path: Path, step: int) -> list[Path]:
    """Cut a tall screenshot into horizontal slices (needs Pillow; none without it)."""
    try:
        from PIL import Image
    except ImportError:
        return []
    img = Image.open(png_path)
    parts = []
    for n, top in enumerate(range(0, img.height, step)):
        part = png_path.with_name(f"{png_path.stem}-part{n + 1}.png")
        img.crop((0, top, img.width, min(top + step, img.height))).save(part)
        parts.append(part)
    return parts


def _stat(mean: float, half: float, seeds: int) -> dict:
    values = [mean + half * d for d in (-0.6, 0.1, 0.5)[:seeds]] if not math.isnan(mean) else [math.nan] * seeds
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "values": values}


def demo_report() -> dict:
    """A made-up report shaped like ``report.scoring.build_report``'s output."""
    specs = [  # key, model, feedback, options, seeds, hr@10, auc, has curves
        ("pop / all", "pop", "all", {}, 1, 0.012, 0.50, False),
        ("markov / all", "markov", "all", {}, 1, 0.041, 0.53, False),
        ("sasrec / all", "sasrec", "all", {}, 3, 0.071, 0.55, True),
        ("sasrec / contrastive", "sasrec", "contrastive", {"alpha": 0.1, "context": "input"}, 3, 0.076, 0.58, True),
        ("sasrec / feedback-input+contrastive", "sasrec", "feedback-input+contrastive",
         {"alpha": 0.1, "context": "input", "tau": 0.07}, 3, 0.079, 0.61, True),
    ]
    edges = [2 ** i for i in range(19)]
    groups, runs = [], []
    for gi, (key, model, feedback, options, seeds, hr10, auc, curves) in enumerate(specs):
        skip10 = hr10 * (0.9 - 0.08 * gi)
        means = {"hr@1": hr10 * 0.3, "hr@5": hr10 * 0.75, "hr@10": hr10, "hr@20": hr10 * 1.3,
                 "ndcg@10": hr10 * 0.55, "ndcg@20": hr10 * 0.63, "mrr@10": hr10 * 0.42, "skip_hr@10": skip10,
                 "skip_mrr@10": skip10 * 0.4, "delta_hr@10": hr10 - skip10, "auc": auc,
                 "coverage@10": 0.002 * (gi + 1) if gi else math.nan, "pop_pct@10": 99.9 - 3 * gi}
        half = {m: abs(v) * 0.06 + 0.001 for m, v in means.items() if not math.isnan(v)}
        ks = [1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100]
        hr_curve = [min(1.0, hr10 * (k / 10) ** 0.45) for k in ks]
        pos = [int(40000 * hr10 * 0.3 * 0.8 ** i) + int(3000 * math.exp(-((i - 11 + gi * 0.4) ** 2) / 8))
               for i in range(len(edges) - 1)]
        skip = [int(20000 * skip10 * 0.3 * 0.8 ** i) + int(2000 * math.exp(-((i - 12) ** 2) / 8))
                for i in range(len(edges) - 1)]
        ids = [f"{model}-{feedback.replace('+', '-')}-s{s}-{(0xab12cd34 * (gi + 3) * (s + 7)) % 16 ** 8:08x}"
               for s in range(seeds)]
        groups.append({"key": key, "model": model, "feedback": feedback, "options": options, "runs": ids,
                       "seeds": list(range(seeds)), "n_sessions": 4933, "n_pos": 41234, "n_skip": 19876,
                       "metrics": {m: _stat(v, half.get(m, 0.0), seeds) for m, v in means.items()},
                       "hr_curve": {"k": ks, "hr": hr_curve},
                       "rank_hist": {"edges": edges, "pos": pos, "skip": skip}})
        for s, run_id in enumerate(ids):
            if curves:
                curve = [{"epoch": e, "loss": 9.2 - (1.3 + 0.15 * gi) * math.log1p(e) + 0.05 * s,
                          "valid_ndcg@10": means["ndcg@10"] * (1 - 0.8 * math.exp(-e / 1.6)) + 0.001 * s}
                         for e in range(8 + s)]
                best = max(curve, key=lambda row: row["valid_ndcg@10"])["epoch"]
            else:
                curve, best = [{"epoch": 0, "valid_ndcg@10": means["ndcg@10"]}], 0
            runs.append({"id": run_id, "group": key, "seed": s, "status": "finished", "epochs_done": len(curve),
                         "best_epoch": best, "wall_s": 4.2 if not curves else 312.5 * (1 + s) + 40 * gi,
                         "curve": curve, "test": {m: v for m, v in means.items()}})
    runs[-1]["id"] = "sasrec-<b>odd</b>-id"
    comparisons = [{"group": g["key"], "baseline": "sasrec / all", "metric": m,
                    "diff": g["metrics"][m]["mean"] - groups[2]["metrics"][m]["mean"],
                    "lo": g["metrics"][m]["mean"] - groups[2]["metrics"][m]["mean"] - 0.003,
                    "hi": g["metrics"][m]["mean"] - groups[2]["metrics"][m]["mean"] + 0.003,
                    "n_sessions": 4933}
                   for g in groups[3:] for m in ("ndcg@10", "hr@10", "skip_hr@10", "auc")]
    for c in comparisons:
        c["excludes_zero"] = c["lo"] > 0 or c["hi"] < 0
    return {
        "title": "Skip-aware next-track recommendation: spotify", "generated": "2026-11-26 23:10 UTC",
        "toolkit_version": "0.1.0",
        "dataset": {"name": "spotify", "format": "spotify", "rows_in": 1270305, "rows_kept": 1262661,
                    "dropped": {"short_session": 7644}, "users": 47, "sessions": 49331, "items": 165854,
                    "skip_share": 0.359, "median_session_len": 14,
                    "splits": {"train": {"sessions": 39465, "events": 1000000},
                               "valid": {"sessions": 4933, "events": 131000},
                               "test": {"sessions": 4933, "events": 131661}},
                    "session_lengths": {"edges": [2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 100000],
                                        "counts": [6100, 4800, 7000, 5200, 6900, 4700, 5100, 3300, 2900,
                                                   1600, 1400, 331]}},
        "protocol": {"split": "test", "positions": "all", "exclude_played": False, "catalogue": 165854,
                     "bootstrap": 1000, "interval": 0.95, "seed": 0, "baseline": "sasrec / all",
                     "note": "Sessions are resampled with replacement; groups share the resamples."},
        "metrics": METRICS, "lower_is_better": ["skip_hr@10", "skip_mrr@10"],
        "groups": groups, "comparisons": comparisons, "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path, help="the HTML report to screenshot")
    ap.add_argument("png", type=Path, help="where to write the screenshot")
    ap.add_argument("--demo", action="store_true", help="first write the built-in demo report to HTML")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=6000)
    ap.add_argument("--slice", type=int, default=1500, help="slice height in pixels (0: no slices)")
    args = ap.parse_args()
    if args.demo:
        for path in write_report(demo_report(), args.html):
            print(f"wrote {path}")
    print(f"wrote {screenshot(args.html, args.png, args.width, args.height)}")
    for part in slice_png(args.png, args.slice) if args.slice else []:
        print(f"wrote {part}")


if __name__ == "__main__":
    main()
