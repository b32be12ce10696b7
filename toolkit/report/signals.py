"""What a reader needs before the tables: the verdict, the warnings and the ceilings.

From a report dictionary (``report.scoring.build_report``): which group is best by the primary metric and by
how much (paired intervals, never bare means), a count baseline that no neural group beats, the
targets no model can be expected to hit (tracks never played in train), runs still improving at
their last epoch, and relative changes only where they mean something.  The written report, the
terminal report and prep's summary print the same sentences.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from toolkit.config import NEURAL
from toolkit.report.format import DASH, as_float, fmt_count, fmt_num, interval_level, scored_split

if TYPE_CHECKING:
    from toolkit.splits import SplitDiagnostics

TINY_BASE = 0.01  # below this a relative change says more about the small base than about the change


def _interval(c: dict) -> str:
    """``+0.0100 [+0.0040, +0.0160]`` of a paired difference."""
    return f"{fmt_num(c.get('diff'), sign=True)} [{fmt_num(c.get('lo'), sign=True)}, {fmt_num(c.get('hi'), sign=True)}]"


def _zero(c: dict) -> str:
    lo, hi = as_float(c.get("lo")), as_float(c.get("hi"))
    return "excludes zero" if lo > 0 or hi < 0 else "includes zero"


def verdict_line(report: dict) -> str | None:
    """One sentence: the best group by the primary metric, by how much it leads the runner-up and
    the best count baseline, and whether each paired interval excludes zero."""
    v = report.get("verdict") or {}
    if not v.get("best"):
        return None
    metric, level = str(v.get("metric", "ndcg@10")).upper(), interval_level(report)
    parts = [f"Best by {scored_split(report)} {metric}: {v['best']} ({fmt_num(v.get('best_mean'))})"]
    if v.get("vs_runner_up"):
        c = v["vs_runner_up"]
        parts.append(f"{_interval(c)} over the runner-up {v['runner_up']} (the {level} paired interval {_zero(c)})")
    if v.get("best_count") == v["best"]:
        parts.append("it is itself a count baseline")
    elif v.get("best_count") == v.get("runner_up") and v.get("best_count"):
        parts.append("the runner-up is the best count baseline")
    elif v.get("vs_best_count"):
        c = v["vs_best_count"]
        parts.append(f"{_interval(c)} over the best count baseline {v['best_count']} (the interval {_zero(c)})")
    return parts[0] + (", " + "; ".join(parts[1:]) if len(parts) > 1 else "") + "."


def signal_lines(report: dict) -> list[tuple[str, str]]:
    """(kind, sentence) pairs, kind "verdict", "warning" or "notice": the verdict, a count baseline
    no neural model beats, the targets no model can hit, and runs still improving at their last epoch."""
    out = []
    line = verdict_line(report)
    if line:
        out.append(("verdict", line))
    v = report.get("verdict") or {}
    c = v.get("neural_vs_count")
    if c and not as_float(c.get("lo")) > 0:
        out.append(("warning", f"no neural model beats the best count baseline {v['best_count']} on "
                               f"{scored_split(report)} {str(v.get('metric', 'ndcg@10')).upper()}: the best neural group, "
                               f"{v['best_neural']}, differs from it by {_interval(c)} (the paired interval {_zero(c)})."))
    cold = cold_line(report)
    if cold:
        out.append(("notice", cold))
    trained = [r for r in report.get("runs") or [] if is_neural(report, r)]
    last = [r for r in trained if best_is_last(report, r)]
    if last:
        who = "every trained run" if len(last) == len(trained) else f"{len(last)} of {len(trained)} trained runs"
        out.append(("warning", f"best epoch = last epoch for {who}: more epochs may help."))
    return out


def is_neural(report: dict, run: dict) -> bool:
    """Whether a run row is a trained model (older reports: known from its group's model)."""
    if "neural" in run:
        return bool(run["neural"])
    model = next((g.get("model") for g in report.get("groups") or [] if g.get("key") == run.get("group")), None)
    return model in NEURAL


def best_is_last(report: dict, run: dict) -> bool:
    """A trained model whose best validation epoch is the last one it ran: still improving."""
    best, done = as_float(run.get("best_epoch")), as_float(run.get("epochs_done"))
    return is_neural(report, run) and math.isfinite(best) and math.isfinite(done) and done > 1 and best == done - 1


def cold_line(report: dict) -> str | None:
    """The share of the scored split's targets whose track never occurs in train, and what it means."""
    d = report.get("dataset") or {}
    split = scored_split(report)
    g = (d.get("split_diagnostics") or {}).get(split)
    if not g or not math.isfinite(as_float(g.get("cold_share"))):
        return None
    share = as_float(g["cold_share"])
    counts = f" ({fmt_count(g['cold_targets'])} of {fmt_count(g['targets'])})" if "targets" in g else ""
    return (f"{share:.1%} of the {split} targets{counts} are tracks never played in train: no model learned "
            f"anything about them, so none can be expected to hit them and HR@10 is at most {1 - share:.3f}.")


def cold_summary(diag: Mapping[str, SplitDiagnostics]) -> str | None:
    """One sentence for prep's summary: the share of the valid and test targets whose track never
    occurs in train, and the HR@10 ceiling that follows."""
    rows = [(name, as_float(diag[name].get("cold_share"))) for name in ("valid", "test") if diag.get(name)]
    rows = [(name, share) for name, share in rows if math.isfinite(share)]
    if not rows:
        return None
    shares = " and ".join(f"{share:.1%} of the {name}" for name, share in rows)
    ceilings = " and ".join(f"{1 - share:.3f} ({name})" for name, share in rows)
    return (f"{shares} targets are tracks never played in train: no model learned anything about them, so none "
            f"can be expected to hit them and HR@10 is at most {ceilings}.")


def relative_change(base, paired: dict | None) -> str:
    """``+12.3% [+4.1%, +20.5%]``: a paired difference relative to the base's mean, with its
    interval (the base taken as fixed); "–" with the reason when there is no interval or the base is
    too small to divide by."""
    b = as_float(base)
    if not math.isfinite(b) or abs(b) < TINY_BASE:
        return f"{DASH} (base below {TINY_BASE})"
    diff, lo, hi = (as_float((paired or {}).get(k)) for k in ("diff", "lo", "hi"))
    if not all(math.isfinite(x) for x in (diff, lo, hi)):
        return f"{DASH} (no paired interval)"
    return f"{diff / b:+.1%} [{lo / b:+.1%}, {hi / b:+.1%}]"
