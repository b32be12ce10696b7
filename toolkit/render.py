"""Render a report dictionary as Markdown, or as one self-contained HTML page with plots.

The dictionary comes from ``toolkit/report.py``: dataset summary, evaluation protocol, one entry
per group of runs (model, feedback, options) with test metrics and their bootstrap intervals,
paired differences against a baseline group, and every run with its training curve. Any float may
be NaN or null; it is printed as "–" and is never the best value of a column.

Both documents are built from one list of blocks (headings, paragraphs, tables, figures), so the
Markdown and the HTML always hold the same sections and the same numbers. Plots are
``matplotlib.figure.Figure`` objects drawn by the Agg canvas (no pyplot state), returned as PNG
bytes and embedded as base64 ``data:`` URIs: the HTML file needs nothing else to display.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

from toolkit.artifacts import atomic_path
from toolkit.errors import ConfigError

DASH = "–"  # shown for NaN / missing numbers
MARK = "✓"  # a paired difference whose interval excludes zero
DPI = 110
# Okabe & Ito's colour-blind-safe palette; grey instead of black (error bars are black), yellow last
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
POS_COLOUR, SKIP_COLOUR = "#0072B2", "#D55E00"
BAR_METRICS = ("hr@10", "ndcg@10", "mrr@10", "skip_hr@10")
GLOSSARY = (
    ("hr@k", "hit rate: share of positive queries (next play not skipped) whose next track is in the top k"),
    ("ndcg@k", "normalised discounted cumulative gain of the next non-skipped track: 1 / log2(rank + 1) "
               "inside the top k, else 0"),
    ("mrr@10", "mean reciprocal rank of the next non-skipped track: 1 / rank inside the top 10, else 0"),
    ("skip_hr@10", "hit rate of the skipped next track (queries whose next play was skipped); lower is better"),
    ("skip_mrr@10", "mean reciprocal rank of the skipped next track inside the top 10; lower is better"),
    ("delta_hr@10", "hr@10 − skip_hr@10: how much more often the kept next track is in the top 10 than the "
                    "skipped one"),
    ("auc", "within-session AUC of the next non-skipped track against the session's skipped tracks; "
            "0.5 = chance"),
    ("coverage@10", "share of the catalogue that appears in at least one top-10 list"),
    ("pop_pct@10", "mean popularity percentile of the top-10 tracks; 100 = the most played track"),
)
_RC = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10,
       "ytick.labelsize": 10, "legend.fontsize": 10, "figure.titlesize": 13, "axes.grid": True,
       "grid.alpha": 0.35, "axes.spines.top": False, "axes.spines.right": False}


# ---------------------------------------------------------------------------------------------
# numbers


def _float(x) -> float:
    """``x`` as a float; NaN for None, text or anything else that is not a number."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _ok(x) -> bool:
    return math.isfinite(_float(x))


def fmt_num(x, digits: int = 4, sign: bool = False) -> str:
    """``0.1234`` (``+0.1234`` with ``sign``), or "–" for NaN / missing."""
    v = _float(x)
    if not math.isfinite(v):
        return DASH
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def fmt_count(x) -> str:
    """``1,262,661``, or "–" for NaN / missing."""
    v = _float(x)
    return f"{round(v):,}" if math.isfinite(v) else DASH


def _fmt_duration(seconds) -> str:
    s = _float(seconds)
    if not math.isfinite(s):
        return DASH
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {round(s % 60):02d} s"
    return f"{int(s // 3600):,} h {int(s % 3600 // 60):02d} min"


def _n_seeds(group: dict) -> int:
    return len(group.get("seeds") or group.get("runs") or [])


def _stat(group: dict, metric: str) -> dict:
    return (group.get("metrics") or {}).get(metric) or {}


def _level(report: dict) -> str:
    """The interval level as text, e.g. "95 %"."""
    level = _float((report.get("protocol") or {}).get("interval", 0.95))
    return f"{level * 100:g} %" if math.isfinite(level) else "95 %"


# ---------------------------------------------------------------------------------------------
# document model shared by the Markdown and HTML writers


@dataclass(frozen=True)
class Cell:
    text: str
    note: str = ""  # the interval or "(1 seed)"; a second, smaller line in HTML
    bold: bool = False


@dataclass(frozen=True)
class Table:
    header: list[str]
    numeric: list[bool]  # right-aligned columns
    rows: list[list[Cell]]


def metric_cell(group: dict, metric: str, bold: bool = False) -> Cell:
    """``0.1234 ± 0.0056`` (mean ± half-width of the interval), ``0.1234 (1 seed)``, or "–"."""
    stat = _stat(group, metric)
    mean = _float(stat.get("mean"))
    if not math.isfinite(mean):
        return Cell(DASH)
    lo, hi = _float(stat.get("lo")), _float(stat.get("hi"))
    if _n_seeds(group) == 1:
        note = "(1 seed)"
    elif math.isfinite(lo) and math.isfinite(hi):
        note = f"± {(hi - lo) / 2:.4f}"
    else:
        note = ""
    return Cell(f"{mean:.4f}", note, bold)


def best_rows(groups: list[dict], metric: str, lower_is_better: bool) -> set[int]:
    """Indices of the groups with the best mean (ties at 4 decimals share it); NaN never wins."""
    means = [(i, round(_float(_stat(g, metric).get("mean")), 4)) for i, g in enumerate(groups)]
    means = [(i, m) for i, m in means if math.isfinite(m)]
    if len(means) < 2:
        return set()
    best = (min if lower_is_better else max)(m for _, m in means)
    return {i for i, m in means if m == best}


def _options_text(options: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((options or {}).items())) or DASH


def _group_name(group: dict) -> str:
    """The group's key, else "model / feedback"."""
    return str(group.get("key") or f"{group.get('model', '?')} / {group.get('feedback', '?')}")


def main_table(report: dict) -> Table:
    """One row per group (its key "model / feedback", with the options), every metric, seeds and query
    counts. The key is the name the plots and the paired differences use too."""
    groups = report.get("groups") or []
    metrics = list(report.get("metrics") or [])
    lower = set(report.get("lower_is_better") or [])
    best = {m: best_rows(groups, m, m in lower) for m in metrics}
    header = ["group (options)"] + [f"{m} ↓" if m in lower else m for m in metrics]
    header += ["seeds", "sessions", "positive queries", "skip queries"]
    rows = []
    for i, g in enumerate(groups):
        row = [Cell(_group_name(g), f"({_options_text(g['options'])})" if g.get("options") else "")]
        row += [metric_cell(g, m, i in best[m]) for m in metrics]
        row += [Cell(fmt_count(_n_seeds(g))), Cell(fmt_count(g.get("n_sessions"))),
                Cell(fmt_count(g.get("n_pos"))), Cell(fmt_count(g.get("n_skip")))]
        rows.append(row)
    return Table(header, [False] + [True] * (len(metrics) + 4), rows)


def comparison_table(report: dict) -> Table:
    lower = set(report.get("lower_is_better") or [])
    rows = []
    for c in report.get("comparisons") or []:
        diff, lo, hi = _float(c.get("diff")), _float(c.get("lo")), _float(c.get("hi"))
        excludes = c.get("excludes_zero")
        if excludes is None:
            excludes = (math.isfinite(lo) and lo > 0) or (math.isfinite(hi) and hi < 0)
        mark = ""
        if excludes and math.isfinite(diff) and diff != 0:
            mark = f"{MARK} {'better' if (diff < 0) == (c.get('metric') in lower) else 'worse'}"
        interval = f"[{fmt_num(lo, sign=True)}, {fmt_num(hi, sign=True)}]" if _ok(lo) and _ok(hi) else DASH
        rows.append([Cell(str(c.get("group", DASH))), Cell(str(c.get("baseline", DASH))),
                     Cell(str(c.get("metric", DASH))), Cell(fmt_num(diff, sign=True)), Cell(interval),
                     Cell(fmt_count(c.get("n_sessions"))), Cell(mark)])
    header = ["group", "baseline", "metric", "difference", f"{_level(report)} interval", "sessions",
              "excludes 0"]
    return Table(header, [False, False, False, True, True, True, False], rows)


def runs_table(report: dict) -> Table:
    rows = [[Cell(str(r.get("id", DASH))), Cell(str(r.get("group", DASH))), Cell(fmt_count(r.get("seed"))),
             Cell(str(r.get("status", DASH))), Cell(fmt_count(r.get("epochs_done"))),
             Cell(fmt_count(r.get("best_epoch"))), Cell(_fmt_duration(r.get("wall_s")))]
            for r in report.get("runs") or []]
    return Table(["run", "group", "seed", "status", "epochs", "best epoch", "wall time"],
                 [False, False, True, False, True, True, True], rows)


def dataset_tables(report: dict) -> list[Table]:
    d = report.get("dataset") or {}
    share = _float(d.get("skip_share"))
    rows = [("format", str(d.get("format", DASH))), ("rows read", fmt_count(d.get("rows_in"))),
            ("rows kept", fmt_count(d.get("rows_kept")))]
    rows += [(f"rows dropped: {reason}", fmt_count(n)) for reason, n in sorted((d.get("dropped") or {}).items())]
    rows += [("listeners", fmt_count(d.get("users"))), ("sessions", fmt_count(d.get("sessions"))),
             ("tracks", fmt_count(d.get("items"))),
             ("skip share", f"{share:.4f} ({share:.1%})" if math.isfinite(share) else DASH),
             ("median session length (plays)", fmt_count(d.get("median_session_len")))]
    tables = [Table(["quantity", "value"], [False, True], [[Cell(k), Cell(v)] for k, v in rows])]
    splits = d.get("splits") or {}
    if splits:
        tables.append(Table(["split", "sessions", "plays"], [False, True, True],
                            [[Cell(name), Cell(fmt_count(s.get("sessions"))),
                              Cell(fmt_count(s.get("events", s.get("plays"))))] for name, s in splits.items()]))
    return tables


def protocol_lines(report: dict) -> list[str]:
    """The protocol fields as sentences."""
    p = report.get("protocol") or {}
    positions = p.get("positions")
    where = {"all": ", at every position of each session whose next play is known",
             "last": ", at the last position of each session", None: ""}.get(positions, f", at positions: {positions}")
    lines = [f"Metrics are computed on the {p.get('split', 'test')} split{where}."]
    if p.get("exclude_played") is not None:
        lines.append("Tracks already played in the session are excluded from the ranking." if p["exclude_played"]
                     else "Tracks already played in the session stay in the ranking (music repeats).")
    if _ok(p.get("catalogue")):
        lines.append(f"Every query ranks the full catalogue of {fmt_count(p['catalogue'])} tracks "
                     "(no sampled candidates).")
    if _ok(p.get("bootstrap")):
        seed = f", seed {p['seed']}" if p.get("seed") is not None else ""
        lines.append(f"A group's interval is a {_level(report)} t-interval over its seeds (none with one seed); a "
                     f"paired difference's interval comes from a bootstrap over the {p.get('split', 'test')} "
                     f"sessions ({fmt_count(p['bootstrap'])} replicates{seed}), which covers session sampling, "
                     "not seed-to-seed variation.")
    if p.get("baseline"):
        lines.append(f"Paired differences are taken against the group “{p['baseline']}”.")
    else:
        lines.append("No baseline group is set.")
    if p.get("note"):
        lines.append(str(p["note"]))
    return lines


def _title(report: dict) -> str:
    """The report's title, with the dataset name in it."""
    name = (report.get("dataset") or {}).get("name")
    title = str(report.get("title") or f"Skip-aware next-track recommendation: {name or '?'}")
    return f"{title}: {name}" if name and str(name) not in title else title


def _blocks(report: dict) -> list[tuple]:
    """The document: ("h1"|"h2"|"p", text), ("ul", [text]), ("dl", [(term, text)]), ("table", Table),
    ("figure", plot function, caption, note when there is nothing to plot)."""
    level = _level(report)
    split = (report.get("protocol") or {}).get("split", "test")
    out = [("h1", _title(report)),
           ("p", f"Generated {report.get('generated', DASH)} by toolkit {report.get('toolkit_version', DASH)}."),
           ("h2", "Protocol"), ("ul", protocol_lines(report)),
           ("h2", "Dataset"), *[("table", t) for t in dataset_tables(report)],
           ("figure", plot_dataset, "Session lengths and the size of each split.", "No dataset summary to plot."),
           ("h2", "Results"),
           ("p", f"Each cell: mean over seeds ± half-width of its {level} interval; “(1 seed)”: a single run, "
                 f"no interval. Bold: best in the column (↓: lower is better). {DASH}: not available."),
           ("table", main_table(report)),
           ("figure", plot_metric_bars, f"Main metrics per group with {level} intervals.", "No metrics to plot."),
           ("figure", plot_hr_curves, "Hit rate against the cut-off k.", "No HR@k curves in this report."),
           ("figure", plot_rank_distribution, "Full-catalogue rank of the next track, not skipped vs skipped.",
            "No rank histograms in this report."),
           ("h2", "Paired differences")]
    baseline = (report.get("protocol") or {}).get("baseline")
    if not baseline:
        out.append(("p", "No baseline group was set, so there are no paired differences."))
    elif not report.get("comparisons"):
        out.append(("p", f"No paired differences against “{baseline}” were computed."))
    else:
        out += [("p", f"Group minus baseline on the same {split} sessions, with the {level} interval of the "
                      f"difference; {MARK}: the interval excludes zero (better / worse for that metric)."),
                ("table", comparison_table(report))]
    out += [("h2", "Runs"), ("table", runs_table(report)),
            ("figure", plot_training_curves, "Validation NDCG@10 and training loss per epoch, one line per run.",
             "No training curves in this report."),
            ("h2", "Glossary"), ("dl", list(GLOSSARY))]
    return out


# ---------------------------------------------------------------------------------------------
# Markdown


def _md(text: str, in_table: bool = False) -> str:
    text = html.escape(str(text), quote=False)  # no raw HTML from the report reaches a Markdown viewer
    return text.replace("|", "\\|") if in_table else text


def _md_table(t: Table) -> str:
    def cell(c: Cell) -> str:
        text = _md(f"{c.text} {c.note}".strip(), in_table=True)
        return f"**{text}**" if c.bold and c.text != DASH else text

    lines = ["| " + " | ".join(_md(h, True) for h in t.header) + " |",
             "|" + "|".join("---:" if n else "---" for n in t.numeric) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def to_markdown(report: dict) -> str:
    """The report as a Markdown document (figures are in the HTML version only)."""
    parts = []
    for kind, *body in _blocks(report):
        if kind == "h1":
            parts.append(f"# {_md(body[0])}")
        elif kind == "h2":
            parts.append(f"## {_md(body[0])}")
        elif kind == "p":
            parts.append(_md(body[0]))
        elif kind == "ul":
            parts.append("\n".join(f"- {_md(line)}" for line in body[0]))
        elif kind == "dl":
            parts.append("\n".join(f"- **{_md(term)}**: {_md(text)}" for term, text in body[0]))
        elif kind == "table":
            parts.append(_md_table(body[0]) if body[0].rows else "_(none)_")
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;color:#1b1b1b;
 max-width:1500px;margin:1.5rem auto;padding:0 1.2rem;line-height:1.45;font-size:15px}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.25rem;margin-top:2rem;border-bottom:2px solid #ddd}
.scroll{overflow-x:auto;margin:.6rem 0 1rem}
table{border-collapse:collapse;font-size:12.5px}
th,td{padding:.3rem .4rem;border-bottom:1px solid #e2e2e2;vertical-align:top}
th{background:#f1f3f5;text-align:left;font-weight:600}
tbody tr:nth-child(even){background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap} th.num{text-align:right}
td:first-child{min-width:12rem} .nb{white-space:nowrap}
td strong{color:#000}
.pm{display:block;font-size:.82em;color:#5a5a5a;font-weight:normal}
figure{margin:1rem 0 1.6rem} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9rem;color:#444}
.note{color:#7a4a00;font-style:italic}
dt{font-weight:600;font-family:ui-monospace,Menlo,Consolas,monospace} dd{margin:0 0 .4rem 1.5rem}
"""


def _html_table(t: Table) -> str:
    def cls(numeric: bool) -> str:
        return ' class="num"' if numeric else ""

    def cell(c: Cell, numeric: bool) -> str:
        # text lines break at spaces only, never inside a name like "feedback-input+contrastive"
        text = html.escape(c.text) if numeric else " ".join(
            f'<span class="nb">{html.escape(word)}</span>' for word in c.text.split(" "))
        inner = text + (f'<span class="pm">{html.escape(c.note)}</span>' if c.note else "")
        return f"<strong>{inner}</strong>" if c.bold and c.text != DASH else inner

    def header(h: str) -> str:  # let "skip_mrr@10" break after "_" and "@" so narrow numbers set the width
        return html.escape(h).replace("_", "_<wbr>").replace("@", "@<wbr>")

    head = "".join(f"<th{cls(n)}>{header(h)}</th>" for h, n in zip(t.header, t.numeric))
    body = "".join("<tr>" + "".join(f"<td{cls(n)}>{cell(c, n)}</td>" for c, n in zip(row, t.numeric)) + "</tr>"
                   for row in t.rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _html_figure(plot, report: dict, caption: str, note: str) -> str:
    try:
        png = plot(report)
    except ImportError:  # matplotlib is optional for the tables
        return f'<p class="note">{html.escape(caption)} Not drawn: matplotlib is not installed.</p>'
    if png is None:
        return f'<p class="note">{html.escape(note)}</p>'
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def to_html(report: dict) -> str:
    """The report as one self-contained HTML page: inline CSS, plots as base64 PNG, no scripts."""
    parts = []
    for kind, *body in _blocks(report):
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{html.escape(body[0])}</{kind}>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in body[0]) + "</ul>")
        elif kind == "dl":
            parts.append("<dl>" + "".join(f"<dt>{html.escape(t)}</dt><dd>{html.escape(d)}</dd>"
                                          for t, d in body[0]) + "</dl>")
        elif kind == "table":
            parts.append(_html_table(body[0]) if body[0].rows else "<p>(none)</p>")
        elif kind == "figure":
            parts.append(_html_figure(body[0], report, body[1], body[2]))
    title = html.escape(_title(report))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{title}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


# ---------------------------------------------------------------------------------------------
# plots: each returns PNG bytes, or None when the report holds nothing to draw


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _rc():
    import matplotlib

    return matplotlib.rc_context(_RC)


def _label(text) -> str:
    """Text safe as a matplotlib label: no mathtext from "$", no hiding by a leading "_"."""
    text = str(text).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def _legend(fig, handles, labels, width_in: float) -> None:
    """A legend under the axes, as many columns as the longest label allows."""
    if not handles:
        return
    longest = max(len(s) for s in labels)
    ncols = max(1, min(len(labels), int(width_in * 14 // (longest + 6))))
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)


def _group_style(i: int) -> dict:
    return {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[(i // len(PALETTE) + i) % len(MARKERS)]}


def plot_metric_bars(report: dict) -> bytes | None:
    """Grouped bars of hr@10, ndcg@10, mrr@10, skip_hr@10 per group, AUC on its own panel around 0.5;
    error bars are the groups' intervals (none for a single seed)."""
    groups = report.get("groups") or []
    metrics = [m for m in BAR_METRICS if any(_ok(_stat(g, m).get("mean")) for g in groups)]
    has_auc = any(_ok(_stat(g, "auc").get("mean")) for g in groups)
    if not metrics and not has_auc:
        return None
    with _rc():
        fig = _figure(11, 5.2)
        ratios = ([max(len(metrics), 1) * 1.0] if metrics else []) + ([1.4] if has_auc else [])
        axes = list(fig.subplots(1, len(ratios), width_ratios=ratios, squeeze=False)[0])
        width = 0.8 / len(groups)
        handles, labels = [], []
        for i, g in enumerate(groups):
            colour = PALETTE[i % len(PALETTE)]
            hatch = None if i < len(PALETTE) else "//"
            with_interval = _n_seeds(g) != 1
            offset = (i - (len(groups) - 1) / 2) * width
            panels = ([(axes[0], metrics, 0.0)] if metrics else []) + ([(axes[-1], ["auc"], 0.5)] if has_auc else [])
            handle = None
            for ax, names, base in panels:
                for j, m in enumerate(names):
                    s = _stat(g, m)
                    mean = _float(s.get("mean"))
                    if not math.isfinite(mean):
                        continue
                    handle = ax.bar(j + offset, mean - base, width, bottom=base, color=colour, hatch=hatch,
                                    edgecolor="white", linewidth=0.6)
                    lo, hi = _float(s.get("lo")), _float(s.get("hi"))
                    if with_interval and math.isfinite(lo) and math.isfinite(hi):
                        ax.errorbar(j + offset, mean, yerr=[[max(mean - lo, 0)], [max(hi - mean, 0)]],
                                    color="#222", capsize=3, linewidth=1.2)
            if handle is not None:
                handles.append(handle)
                labels.append(_label(_group_name(g)) + ("" if with_interval else " (1 seed, no interval)"))
        if metrics:
            ax = axes[0]
            ax.set_xticks(range(len(metrics)),
                          [m + ("\n(lower is better)" if m in (report.get("lower_is_better") or []) else "")
                           for m in metrics])
            ax.set_ylabel("metric value (share of queries, 0–1)")
            ax.set_title(f"Ranking metrics on the {(report.get('protocol') or {}).get('split', 'test')} split")
            ax.grid(axis="x", visible=False)
        if has_auc:
            ax = axes[-1]
            lo, hi = ax.get_ylim()
            ax.set_ylim(min(lo, 0.5) - 0.06 * (hi - lo), max(hi, 0.5 + 0.06 * (hi - lo)))
            ax.axhline(0.5, color="#555", linestyle="--", linewidth=1)
            ax.text(-0.58, 0.5, "chance", va="top", ha="left", color="#555", fontsize=9)
            ax.set_xticks([0], ["auc"])
            ax.set_xlim(-0.6, 0.6)
            ax.set_ylabel("AUC (0.5 = chance)")
            ax.set_title("Within-session AUC,\nnext kept vs skipped")
            ax.grid(axis="x", visible=False)
        fig.suptitle(f"Test metrics per group (error bars: {_level(report)} interval)")
        _legend(fig, handles, labels, 11)
        return _png(fig)


def plot_hr_curves(report: dict) -> bytes | None:
    """HR@k against k (log x axis), one line per group."""
    from matplotlib.ticker import FixedLocator, NullLocator

    curves = []
    for i, g in enumerate(report.get("groups") or []):
        c = g.get("hr_curve") or {}
        pts = [(_float(k), _float(h)) for k, h in zip(c.get("k") or [], c.get("hr") or [])]
        pts = [(k, h) for k, h in pts if math.isfinite(k) and k > 0 and math.isfinite(h)]
        if pts:
            curves.append((i, g, pts))
    if not curves:
        return None
    with _rc():
        fig = _figure(11, 4.8)
        ax = fig.subplots()
        ks = sorted({k for _, _, pts in curves for k, _ in pts})
        for i, g, pts in curves:
            ax.plot([k for k, _ in pts], [h for _, h in pts], linewidth=2, markersize=5, **_group_style(i),
                    label=_label(_group_name(g)))
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(ks, [f"{k:g}" for k in ks])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("cut-off k (tracks in the top-k list, log scale)")
        ax.set_ylabel("HR@k (share of positive queries)")
        ax.set_title("Hit rate of the next non-skipped track against the cut-off k")
        handles, labels = ax.get_legend_handles_labels()
        _legend(fig, handles, labels, 11)
        return _png(fig)


def _curve_points(run: dict, key: str) -> list[tuple[float, float]]:
    pts = [(_float(row.get("epoch")), _float(row.get(key))) for row in run.get("curve") or []]
    return [(e, v) for e, v in pts if math.isfinite(e) and math.isfinite(v)]


def plot_training_curves(report: dict) -> bytes | None:
    """Validation ndcg@10 and train loss against epoch, one line per run (a marker for one point)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    runs = [r for r in report.get("runs") or [] if _curve_points(r, "valid_ndcg@10") or _curve_points(r, "loss")]
    if not runs:
        return None
    group_index = {g.get("key"): i for i, g in enumerate(report.get("groups") or [])}
    seen_in_group: dict = {}
    with _rc():
        fig = _figure(11, 5.6)
        ax_ndcg, ax_loss = fig.subplots(1, 2)
        handles, labels = [], []
        for n, run in enumerate(runs):
            gi = group_index.get(run.get("group"), len(group_index) + n)
            k = seen_in_group[gi] = seen_in_group.get(gi, -1) + 1
            style = {"color": PALETTE[gi % len(PALETTE)], "marker": MARKERS[gi % len(MARKERS)],
                     "linestyle": ("-", "--", ":", "-.")[k % 4], "linewidth": 1.8, "markersize": 4}
            handle = None
            for ax, key in ((ax_ndcg, "valid_ndcg@10"), (ax_loss, "loss")):
                pts = _curve_points(run, key)
                if len(pts) == 1:  # a baseline: one evaluation, no training curve
                    handle = ax.plot(*zip(*pts), **{**style, "linestyle": "none", "markersize": 9})[0]
                elif pts:
                    handle = ax.plot(*zip(*pts), **style)[0]
                if key == "valid_ndcg@10" and run.get("best_epoch") is not None:
                    best = [v for e, v in pts if e == _float(run["best_epoch"])]
                    if best and len(pts) > 1:
                        ax.plot([_float(run["best_epoch"])], best, marker="*", markersize=13, color=style["color"],
                                markeredgecolor="black", linestyle="none", zorder=5)
            handles.append(handle)
            labels.append(_label(f"{run.get('group', '?')} · seed {run.get('seed', '?')}"))
        for ax, ylabel, title in ((ax_ndcg, "validation NDCG@10", "Validation NDCG@10 (★ best epoch)"),
                                  (ax_loss, "training loss (nats per target)", "Training loss")):
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if not ax.lines:
                ax.text(0.5, 0.5, "nothing recorded", transform=ax.transAxes, ha="center", color="#666")
        handles.append(Line2D([], [], marker="*", markersize=13, color="#888", markeredgecolor="black",
                              linestyle="none"))
        labels.append("best epoch")
        _legend(fig, handles, labels, 11)
        return _png(fig)


def _rank_hist(group: dict):
    """(edges, pos shares, skip shares, n pos, n skip) or None when the histogram is unusable."""
    h = group.get("rank_hist") or {}
    edges = [_float(e) for e in h.get("edges") or []]
    out = []
    for key in ("pos", "skip"):
        counts = [max(_float(c), 0.0) if _ok(c) else 0.0 for c in h.get(key) or []]
        total = sum(counts)
        ok = len(counts) == len(edges) - 1 and total > 0
        out.append(([c / total for c in counts], total) if ok else (None, 0))
    if len(edges) < 2 or not all(math.isfinite(e) and e > 0 for e in edges):
        return None
    if out[0][0] is None and out[1][0] is None:
        return None
    return edges, out[0][0], out[1][0], out[0][1], out[1][1]


def plot_rank_distribution(report: dict) -> bytes | None:
    """Small multiples, one per group: share of queries per log-spaced rank bin, next track not
    skipped vs skipped."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    panels = [(g, h) for g in report.get("groups") or [] if (h := _rank_hist(g)) is not None]
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    with _rc():
        fig = _figure(11, 2.9 * nrows + 1.3)
        axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
        for ax, (g, (edges, pos, skip, n_pos, n_skip)) in zip(axes, panels):
            if pos is not None:
                ax.stairs(pos, edges, color=POS_COLOUR, linewidth=2, fill=True, alpha=0.25)
                ax.stairs(pos, edges, color=POS_COLOUR, linewidth=2)
            if skip is not None:
                ax.stairs(skip, edges, color=SKIP_COLOUR, linewidth=2, linestyle="--")
            ax.axvline(10.5, color="#444", linestyle=":", linewidth=1.2)
            ax.set_xscale("log")
            name = textwrap.fill(_label(_group_name(g)), 34, break_on_hyphens=False)
            ax.set_title(f"{name}\n{fmt_count(n_pos)} kept · {fmt_count(n_skip)} skipped", fontsize=10.5)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        for ax in axes[::ncols]:
            ax.set_ylabel("share of queries")
        for ax in axes[max(len(panels) - ncols, 0):len(panels)]:  # panels with no panel below them
            ax.set_xlabel("rank of the next track (log)")
            ax.xaxis.set_tick_params(labelbottom=True)
        fig.suptitle("Full-catalogue rank of the next track (dotted line: top 10)")
        _legend(fig, [Patch(facecolor=POS_COLOUR, alpha=0.4, edgecolor=POS_COLOUR, linewidth=2),
                      Line2D([], [], color=SKIP_COLOUR, linewidth=2, linestyle="--")],
                ["next track not skipped (positive)", "next track skipped"], 11)
        return _png(fig)


def _length_labels(edges: list[float]) -> list[str]:
    labels = []
    for i, (a, b) in enumerate(zip(edges, edges[1:])):
        if i == len(edges) - 2 and b > 4 * a:
            labels.append(f"{a:g}+")
        else:
            labels.append(f"{a:g}" if b - a <= 1 else f"{a:g}–{b - 1:g}")
    return labels


def plot_dataset(report: dict) -> bytes | None:
    """The session-length histogram and the sessions / plays of each split."""
    from matplotlib.ticker import StrMethodFormatter

    d = report.get("dataset") or {}
    sl = d.get("session_lengths") or {}
    edges, counts = [_float(e) for e in sl.get("edges") or []], [_float(c) for c in sl.get("counts") or []]
    has_hist = len(edges) >= 2 and len(counts) == len(edges) - 1 and any(c > 0 for c in counts if math.isfinite(c))
    splits = [(name, s) for name, s in (d.get("splits") or {}).items() if isinstance(s, dict)]
    if not has_hist and not splits:
        return None
    with _rc():
        fig = _figure(11, 4.4)
        ratios = ([2.2] if has_hist else []) + ([1.2, 1.2] if splits else [])
        axes = list(fig.subplots(1, len(ratios), width_ratios=ratios, squeeze=False)[0])
        thousands = StrMethodFormatter("{x:,.0f}")
        if has_hist:
            ax = axes.pop(0)
            ax.bar(range(len(counts)), [c if math.isfinite(c) else 0 for c in counts], color=PALETTE[0], width=0.85)
            ax.set_xticks(range(len(counts)), _length_labels(edges), rotation=45, ha="right")
            ax.set_xlabel("session length (plays)")
            ax.set_ylabel("sessions")
            median = d.get("median_session_len")
            ax.set_title("Session lengths" + (f" (median {fmt_count(median)} plays)" if _ok(median) else ""))
            ax.yaxis.set_major_formatter(thousands)
            ax.grid(axis="x", visible=False)
        for ax, key, unit in zip(axes, ("sessions", "events"), ("sessions", "plays")):
            values = [_float(s.get(key, s.get("plays"))) for _, s in splits]
            values = [v if math.isfinite(v) else 0 for v in values]
            bars = ax.bar([_label(n) for n, _ in splits], values,
                          color=[PALETTE[(i + 1) % len(PALETTE)] for i in range(len(splits))])
            ax.bar_label(bars, labels=[fmt_count(v) for v in values], fontsize=9, padding=2)
            ax.set_ylabel(unit)
            ax.set_title(f"{unit.capitalize()} per split")
            ax.yaxis.set_major_formatter(thousands)
            ax.margins(x=0.12, y=0.15)
            ax.grid(axis="x", visible=False)
        fig.suptitle(f"Dataset {_label(d.get('name', ''))}".strip())
        return _png(fig)


# ---------------------------------------------------------------------------------------------
# files


def write_report(report: dict, out: Path) -> list[Path]:
    """Write the report by the suffix of ``out``: ``.html`` (and the ``.md`` beside it), ``.md`` or
    ``.json``. Every file is rendered first, then each is written atomically. Returns the paths."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in (".html", ".htm"):
        files = [(out, to_html(report)), (out.with_suffix(".md"), to_markdown(report))]
    elif suffix == ".md":
        files = [(out, to_markdown(report))]
    elif suffix == ".json":
        text = json.dumps(report, indent=2, allow_nan=True, sort_keys=True,
                          default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
        files = [(out, text + "\n")]
    else:
        raise ConfigError(f"{out}: cannot tell the report format from {suffix or 'no suffix'!r}; "
                          "name the file .html, .md or .json")
    for path, text in files:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
            tmp.chmod(0o644)  # a report is for reading; mkstemp would leave it private to the owner
    return [path for path, _ in files]
