"""Reading numbers and names off a report dictionary, as every view of it shows them.

The written report (``render``), its plots (``plots``) and the sentences that open it
(``signals``) format numbers and name groups and baselines the same way; this is that one way.
Any float may be NaN, None or text in a report read back from JSON: it shows as "–".
"""

from __future__ import annotations

import math

DASH = "–"  # shown for NaN / missing numbers
MARK = "✓"  # a paired difference whose interval excludes zero


def as_float(x) -> float:
    """``x`` as a float; NaN for None, text or anything else that is not a number."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def is_number(x) -> bool:
    return math.isfinite(as_float(x))


def fmt_num(x, digits: int = 4, sign: bool = False) -> str:
    """``0.1234`` (``+0.1234`` with ``sign``), or "–" for NaN / missing."""
    v = as_float(x)
    if not math.isfinite(v):
        return DASH
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def fmt_count(x) -> str:
    """``1,262,661``, or "–" for NaN / missing."""
    v = as_float(x)
    return f"{round(v):,}" if math.isfinite(v) else DASH


def fmt_duration(seconds) -> str:
    """``7.3 s``, ``2 min 00 s``, ``1 h 06 min``: rounded once, to the last unit shown, so that a
    rounded-up part carries into the next unit (119.6 s is 2 min 00 s, never 1 min 60 s)."""
    s = as_float(seconds)
    if not math.isfinite(s):
        return DASH
    if round(s, 1) < 60:
        return f"{s:.1f} s"
    if round(s) < 3600:
        whole = round(s)
        return f"{whole // 60} min {whole % 60:02d} s"
    minutes = round(s / 60)
    return f"{minutes // 60:,} h {minutes % 60:02d} min"


def n_seeds(group: dict) -> int:
    return len(group.get("seeds") or group.get("runs") or [])


def group_stat(group: dict, metric: str) -> dict:
    return (group.get("metrics") or {}).get(metric) or {}


def interval_level(report: dict) -> str:
    """The interval level as text, e.g. "95 %"."""
    level = as_float((report.get("protocol") or {}).get("interval", 0.95))
    return f"{level * 100:g} %" if math.isfinite(level) else "95 %"


def scored_split(report: dict) -> str:
    """The split the report scored: "test", or "valid" for ``report --split valid``."""
    return (report.get("protocol") or {}).get("split", "test")


def group_name(group: dict) -> str:
    """The group's key, else "model / feedback"."""
    return str(group.get("key") or f"{group.get('model', '?')} / {group.get('feedback', '?')}")


def baselines(report: dict) -> list[str]:
    """The groups the paired differences are taken against, the main one first."""
    p = report.get("protocol") or {}
    named = list(p.get("baselines") or ([p["baseline"]] if p.get("baseline") else []))
    found = [c.get("baseline") for c in report.get("comparisons") or [] if c.get("baseline")]
    return named + [b for b in dict.fromkeys(found) if b not in named] if named else []


def comparisons_against(report: dict, baseline: str | None) -> list[dict]:
    """The paired differences against ``baseline`` (None: the main one); rows that name no
    baseline belong to the main one."""
    main = (baselines(report) or [None])[0]
    wanted = baseline or main
    return [c for c in report.get("comparisons") or [] if c.get("baseline", main) == wanted]
