"""Render a report dictionary as Markdown, or as one self-contained HTML page with plots.

The dictionary comes from ``report.scoring.build_report``: dataset summary, evaluation protocol, one entry
per group of runs (model, feedback, options) with test metrics and their bootstrap intervals,
paired differences against one or two baseline groups, the verdict (``report.signals`` words it
and the warnings that open the document), and every run with its training curve. Any float may
be NaN or null; it is printed as "–" and is never the best value of a column.

Both documents are built from one list of blocks (headings, paragraphs, tables, figures), so the
Markdown and the HTML always hold the same sections and the same numbers. Plots are
``matplotlib.figure.Figure`` objects drawn by the Agg canvas (no pyplot state), returned as PNG
bytes and embedded as base64 ``data:`` URIs: the HTML file needs nothing else to display.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

from toolkit.artifacts import atomic_path
from toolkit.errors import ConfigError
from toolkit.report.format import (
    DASH, MARK, as_float, baselines, comparisons_against, fmt_count, fmt_duration, fmt_num, group_name,
    group_stat, interval_level, is_number, n_seeds, scored_split,
)

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
    ("auc_seen", "the same AUC against the skipped tracks already played before the query only (the ones the "
                 "model has read): below 0.5 when a model offers again what the listener just skipped"),
    ("coverage@10", "share of the catalogue that appears in at least one top-10 list"),
    ("pop_pct@10", "mean popularity percentile of the top-10 tracks; 100 = the most played track"),
    ("overlap@10", "session dependence: the share of top-10 tracks that two different sessions' recommendations "
                   "have in common (0 = every session gets its own list, 1 = one list for everyone)"),
)
# descriptive columns: neither end is better, so no value is set in bold
DESCRIPTIVE = ("pop_pct@10", "overlap@10")


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
    stat = group_stat(group, metric)
    mean = as_float(stat.get("mean"))
    if not math.isfinite(mean):
        return Cell(DASH)
    lo, hi = as_float(stat.get("lo")), as_float(stat.get("hi"))
    if n_seeds(group) == 1:
        note = "(1 seed)"
    elif math.isfinite(lo) and math.isfinite(hi):
        note = f"± {(hi - lo) / 2:.4f}"
    else:
        note = ""
    return Cell(f"{mean:.4f}", note, bold)


def best_rows(groups: list[dict], metric: str, lower_is_better: bool) -> set[int]:
    """Indices of the groups with the best mean (ties at 4 decimals share it); NaN never wins."""
    means = [(i, round(as_float(group_stat(g, metric).get("mean")), 4)) for i, g in enumerate(groups)]
    means = [(i, m) for i, m in means if math.isfinite(m)]
    if len(means) < 2:
        return set()
    best = (min if lower_is_better else max)(m for _, m in means)
    return {i for i, m in means if m == best}


def _options_text(options: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((options or {}).items())) or DASH


def main_table(report: dict) -> Table:
    """One row per group (its key "model / feedback", with the options), every metric, seeds and query
    counts. The key is the name the plots and the paired differences use too."""
    groups = report.get("groups") or []
    metrics = list(report.get("metrics") or [])
    lower = set(report.get("lower_is_better") or [])
    best = {m: best_rows(groups, m, m in lower) if m not in DESCRIPTIVE else set() for m in metrics}
    header = ["group (options)"] + [f"{m} ↓" if m in lower else m for m in metrics]
    header += ["seeds", "sessions", "positive queries", "skip queries"]
    rows = []
    for i, g in enumerate(groups):
        # keys made by report.grouping already name their options: say them once
        named = "(" in group_name(g)
        row = [Cell(group_name(g), f"({_options_text(g['options'])})" if g.get("options") and not named else "")]
        row += [metric_cell(g, m, i in best[m]) for m in metrics]
        row += [Cell(fmt_count(n_seeds(g))), Cell(fmt_count(g.get("n_sessions"))),
                Cell(fmt_count(g.get("n_pos"))), Cell(fmt_count(g.get("n_skip")))]
        rows.append(row)
    return Table(header, [False] + [True] * (len(metrics) + 4), rows)


def comparison_table(report: dict, baseline: str | None = None) -> Table:
    """The paired differences against ``baseline`` (default: the report's main baseline)."""
    lower = set(report.get("lower_is_better") or [])
    rows = []
    for c in comparisons_against(report, baseline):
        diff, lo, hi = as_float(c.get("diff")), as_float(c.get("lo")), as_float(c.get("hi"))
        excludes = c.get("excludes_zero")
        if excludes is None:
            excludes = (math.isfinite(lo) and lo > 0) or (math.isfinite(hi) and hi < 0)
        mark = ""
        if excludes and math.isfinite(diff) and diff != 0:
            mark = f"{MARK} {'better' if (diff < 0) == (c.get('metric') in lower) else 'worse'}"
        interval = f"[{fmt_num(lo, sign=True)}, {fmt_num(hi, sign=True)}]" if is_number(lo) and is_number(hi) else DASH
        rows.append([Cell(str(c.get("group", DASH))), Cell(str(c.get("baseline", DASH))),
                     Cell(str(c.get("metric", DASH))), Cell(fmt_num(diff, sign=True)), Cell(interval),
                     Cell(_units(c)), Cell(mark)])
    header = ["group", "baseline", "metric", "difference", f"{interval_level(report)} interval", "resampled",
              "excludes 0"]
    return Table(header, [False, False, False, True, True, True, False], rows)


def _units(c: dict) -> str:
    """How many independent units the bootstrap resampled, e.g. "47 listeners" (older reports: sessions)."""
    n = c.get("n_units", c.get("n_sessions"))
    return f"{fmt_count(n)} {c.get('unit', 'sessions')}" if is_number(n) else DASH


def runs_table(report: dict) -> Table:
    from toolkit.report.signals import best_is_last

    rows = [[Cell(str(r.get("id", DASH))), Cell(str(r.get("group", DASH))), Cell(fmt_count(r.get("seed"))),
             Cell(str(r.get("status", DASH))), Cell(fmt_count(r.get("epochs_done"))),
             Cell(fmt_count(r.get("best_epoch")), "(last)" if best_is_last(report, r) else ""),
             Cell(fmt_duration(r.get("wall_s")))]
            for r in report.get("runs") or []]
    return Table(["run", "group", "seed", "status", "epochs", "best epoch", "wall time"],
                 [False, False, True, False, True, True, True], rows)


def dataset_tables(report: dict) -> list[Table]:
    d = report.get("dataset") or {}
    share = as_float(d.get("skip_share"))
    rows = [("format", str(d.get("format", DASH))), ("rows read", fmt_count(d.get("rows_in"))),
            ("rows kept", fmt_count(d.get("rows_kept")))]
    rows += [(f"rows dropped: {reason}", fmt_count(n)) for reason, n in sorted((d.get("dropped") or {}).items())]
    rows += [("listeners", fmt_count(d.get("users"))), ("sessions", fmt_count(d.get("sessions"))),
             ("tracks", fmt_count(d.get("items"))),
             ("skip share", f"{share:.4f} ({share:.1%})" if math.isfinite(share) else DASH),
             ("track skip signal: within-session AUC of the tracks' train keep rate (0.5 = none)",
              f"{d['track_skip_auc']:.3f}" if d.get("track_skip_auc") is not None else DASH),
             ("median session length (plays)", fmt_count(d.get("median_session_len")))]
    tables = [Table(["quantity", "value"], [False, True], [[Cell(k), Cell(v)] for k, v in rows])]
    splits = d.get("splits") or {}
    diag = d.get("split_diagnostics") or {}
    if splits:
        header = ["split", "sessions", "plays"]
        if diag:
            header += ["listeners", "listeners without training plays", "targets never in train", "HR@k ceiling"]

        def extra(name: str) -> list[Cell]:
            g = diag.get(name)
            if not diag:
                return []
            if g is None:
                return [Cell(DASH)] * 4
            return [Cell(fmt_count(g["listeners"])), Cell(fmt_count(g["listeners_without_train"])),
                    Cell(f"{g['cold_share']:.1%}"), Cell(f"{g['hr_ceiling']:.3f}")]

        tables.append(Table(header, [False] + [True] * (len(header) - 1),
                            [[Cell(name), Cell(fmt_count(s.get("sessions"))),
                              Cell(fmt_count(s.get("events", s.get("plays")))), *extra(name)]
                             for name, s in splits.items()]))
    return tables


def split_lines(report: dict) -> list[str]:
    """Which split the dataset uses and why, then the warnings about what its test can measure."""
    d = report.get("dataset") or {}
    lines = []
    if d.get("split_reason"):
        lines = [f"Split: {d['split_reason']}."] + [f"Warning: {w}." for w in d.get("split_warnings") or []]
    if d.get("skip_share") == 0:  # e.g. Last.fm: skipped plays never reach the log
        rules = (d.get("skip_rule") or {}).get("rules") or {}
        why = rules["none"] if set(rules) == {"none"} else "no play of the dataset is labelled skipped"
        lines.append(f"Skip metrics are not available: {why}.")
    return lines


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
    if is_number(p.get("catalogue")):
        lines.append(f"Every query ranks the full catalogue of {fmt_count(p['catalogue'])} tracks "
                     "(no sampled candidates).")
    if is_number(p.get("bootstrap")):
        seed = f", seed {p['seed']}" if p.get("seed") is not None else ""
        lines.append(f"A group's interval is a {interval_level(report)} t-interval over its seeds (none with one seed); a "
                     f"paired difference's interval comes from a two-level bootstrap ({fmt_count(p['bootstrap'])} "
                     f"replicates{seed}) that resamples the {p.get('split', 'test')} {_unit_phrase(p)}, the same "
                     "ones for both groups, and each group's seeds, so it covers both which listening was tested "
                     "and seed-to-seed variation.")
    named = baselines(report)
    if named:
        lines.append("Paired differences are taken against the group" + ("s " if len(named) > 1 else " ")
                     + " and ".join(f"“{b}”" for b in named) + ".")
    else:
        lines.append("No baseline group is set.")
    if p.get("note"):
        lines.append(str(p["note"]))
    return lines


def _unit_phrase(p: dict) -> str:
    if p.get("resampled") == "listeners":
        return ("listeners, each with all of their sessions (one listener's sessions are not independent, so "
                "resampling sessions would give too narrow an interval)")
    return "sessions"


def _title(report: dict) -> str:
    """The report's title, with the dataset name in it."""
    name = (report.get("dataset") or {}).get("name")
    title = str(report.get("title") or f"Skip-aware next-track recommendation: {name or '?'}")
    return f"{title}: {name}" if name and str(name) not in title else title


def _blocks(report: dict) -> list[tuple]:
    """The document: ("h1"|"h2"|"h3"|"p", text), ("verdict"|"warning"|"notice"|"strong", text: a
    paragraph set apart), ("ul", [text]), ("dl", [(term, text)]), ("table", Table), ("figure", plot
    function, caption, note when there is nothing to plot)."""
    from toolkit.report.plots import (
        plot_dataset, plot_hr_curves, plot_metric_bars, plot_paired_differences, plot_rank_distribution,
        plot_training_curves,
    )
    from toolkit.report.signals import signal_lines

    level = interval_level(report)
    split = scored_split(report)
    out = [("h1", _title(report)),
           ("p", f"Generated {report.get('generated', DASH)} by toolkit {report.get('toolkit_version', DASH)}."),
           *[(kind, text) for kind, text in signal_lines(report)],
           ("h2", "Protocol"), ("ul", protocol_lines(report)),
           ("h2", "Dataset"), *[("p", line) for line in split_lines(report)],
           *[("table", t) for t in dataset_tables(report)],
           ("figure", plot_dataset, "Session lengths and the size of each split.", "No dataset summary to plot."),
           ("h2", "Results"),
           ("p", f"Each cell: mean over seeds ± half-width of its {level} interval; “(1 seed)”: a single run, "
                 f"no interval. Bold: best in the column (↓: lower is better). {DASH}: not available."),
           ("table", main_table(report)),
           ("figure", plot_metric_bars, f"Main metrics per group with {level} intervals.", "No metrics to plot."),
           ("figure", plot_hr_curves, "Hit rate against the cut-off k.", "No HR@k curves in this report."),
           ("figure", plot_rank_distribution, "Full-catalogue rank of the next track, not skipped vs skipped: the "
            "share of each group's queries per rank bin, averaged over its seeds (every seed ranks the same "
            "queries). Hatched: positive queries whose track never occurs in train (they can only rank by chance, "
            "mostly at the end of the catalogue).", "No rank histograms in this report."),
           ("h2", "Paired differences")]
    named = baselines(report)
    if not named:
        out.append(("p", "No baseline group was set, so there are no paired differences."))
    elif not report.get("comparisons"):
        out.append(("p", f"No paired differences against “{named[0]}” were computed."))
    else:
        out.append(("p", f"Group minus baseline on the same {split} sessions, with the {level} interval of the "
                         f"difference; {MARK}: the interval excludes zero (better / worse for that metric)."))
        for b in named:
            if comparisons_against(report, b):
                out += [("h3", f"Against {b}"), ("table", comparison_table(report, b))]
        out.append(("figure", plot_paired_differences, f"Paired differences (group − baseline) with their {level} "
                    "intervals, one panel per metric, colour and marker by baseline; an interval that does not cross "
                    "the vertical line excludes zero.",
                    "No paired differences to plot."))
    out += [("h2", "Runs"), ("table", runs_table(report)),
            ("figure", plot_training_curves, "Validation NDCG@10 and training loss per epoch, one line per run: "
             "the next-item term alone (comparable across groups), the other terms (contrastive, negative-target) "
             "in their own panel.", "No training curves in this report."),
            ("h2", "Glossary"), ("dl", list(GLOSSARY))]
    return out


# ---------------------------------------------------------------------------------------------
# Markdown


def _md(text: str, in_table: bool = False) -> str:
    text = html.escape(str(text), quote=False)  # no raw HTML from the report reaches a Markdown viewer
    return text.replace("|", "\\|") if in_table else text


def md_table(t: Table) -> str:
    def cell(c: Cell) -> str:
        text = _md(f"{c.text} {c.note}".strip(), in_table=True)
        return f"**{text}**" if c.bold and c.text != DASH else text

    lines = ["| " + " | ".join(_md(h, True) for h in t.header) + " |",
             "|" + "|".join("---:" if n else "---" for n in t.numeric) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def to_markdown(report: dict) -> str:
    """The report as a Markdown document (figures are in the HTML version only)."""
    return blocks_markdown(_blocks(report))


def blocks_markdown(blocks: list[tuple]) -> str:
    """Markdown of a list of blocks (``_blocks`` lists the kinds; figures are left out), each
    block a paragraph of its own; text is escaped, so no raw HTML reaches a Markdown viewer."""
    parts = []
    for kind, *body in blocks:
        if kind == "h1":
            parts.append(f"# {_md(body[0])}")
        elif kind == "h2":
            parts.append(f"## {_md(body[0])}")
        elif kind == "h3":
            parts.append(f"### {_md(body[0])}")
        elif kind in ("verdict", "strong"):
            parts.append(f"**{_md(body[0])}**")
        elif kind == "warning":
            parts.append(f"**Warning:** {_md(body[0])}")
        elif kind == "notice":
            parts.append(f"**Note:** {_md(body[0])}")
        elif kind == "p":
            parts.append(_md(body[0]))
        elif kind == "ul":
            parts.append("\n".join(f"- {_md(line)}" for line in body[0]))
        elif kind == "dl":
            parts.append("\n".join(f"- **{_md(term)}**: {_md(text)}" for term, text in body[0]))
        elif kind == "table":
            parts.append(md_table(body[0]) if body[0].rows else "_(none)_")
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
h3{font-size:1.05rem;margin:1.2rem 0 .2rem}
p.verdict{font-size:1.05rem;font-weight:600;background:#eef5fb;border-left:4px solid #0072B2;padding:.5rem .8rem}
p.notice{border-left:4px solid #999;padding:.3rem .8rem}
p.warning{background:#fff4e5;border-left:4px solid #D55E00;padding:.5rem .8rem}
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
        if kind in ("h1", "h2", "h3", "p"):
            parts.append(f"<{kind}>{html.escape(body[0])}</{kind}>")
        elif kind == "strong":
            parts.append(f"<p><strong>{html.escape(body[0])}</strong></p>")
        elif kind in ("verdict", "warning", "notice"):
            label = {"warning": "<strong>Warning:</strong> ", "notice": "<strong>Note:</strong> "}.get(kind, "")
            parts.append(f'<p class="{kind}">{label}{html.escape(body[0])}</p>')
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
