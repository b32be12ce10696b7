"""The report's figures: each ``plot_xxx(report) -> PNG bytes | None`` (None: nothing to draw).

Drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, never pyplot's global state, in
Okabe & Ito's colour-blind-safe palette with markers and line styles as a second cue, so that every
figure reads without the surrounding text.  ``render`` embeds them in the HTML report.
"""

from __future__ import annotations

import io
import math
import textwrap

from toolkit.report.format import (
    as_float, baselines, comparisons_against, fmt_count, group_name, group_stat, interval_level, is_number, n_seeds,
)

DPI = 110
# Okabe & Ito's colour-blind-safe palette; grey instead of black (error bars are black), yellow last
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
POS_COLOUR, SKIP_COLOUR = "#0072B2", "#D55E00"
BAR_METRICS = ("hr@10", "ndcg@10", "mrr@10", "skip_hr@10")
AUC_METRICS = ("auc", "auc_seen")
DIFF_METRICS = ("ndcg@10", "hr@10", "skip_hr@10")
TERM_MARKERS = {"contrastive": "o", "negative": "s", "unlikelihood": "^"}  # the loss terms besides next-item
_RC = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10,
       "ytick.labelsize": 10, "legend.fontsize": 10, "figure.titlesize": 13, "axes.grid": True,
       "grid.alpha": 0.35, "axes.spines.top": False, "axes.spines.right": False}


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
    """Grouped bars of hr@10, ndcg@10, mrr@10, skip_hr@10 per group, auc and auc_seen on their own
    panel around 0.5;
    error bars are the groups' intervals (none for a single seed)."""
    groups = report.get("groups") or []
    metrics = [m for m in BAR_METRICS if any(is_number(group_stat(g, m).get("mean")) for g in groups)]
    aucs = [m for m in AUC_METRICS if any(is_number(group_stat(g, m).get("mean")) for g in groups)]
    has_auc = bool(aucs)
    if not metrics and not has_auc:
        return None
    with _rc():
        fig = _figure(11, 5.2)
        ratios = ([max(len(metrics), 1) * 1.0] if metrics else []) + ([0.7 + 0.7 * len(aucs)] if has_auc else [])
        axes = list(fig.subplots(1, len(ratios), width_ratios=ratios, squeeze=False)[0])
        width = 0.8 / len(groups)
        handles, labels = [], []
        for i, g in enumerate(groups):
            colour = PALETTE[i % len(PALETTE)]
            hatch = None if i < len(PALETTE) else "//"
            with_interval = n_seeds(g) != 1
            offset = (i - (len(groups) - 1) / 2) * width
            panels = ([(axes[0], metrics, 0.0)] if metrics else []) + ([(axes[-1], aucs, 0.5)] if has_auc else [])
            handle = None
            for ax, names, base in panels:
                for j, m in enumerate(names):
                    s = group_stat(g, m)
                    mean = as_float(s.get("mean"))
                    if not math.isfinite(mean):
                        continue
                    handle = ax.bar(j + offset, mean - base, width, bottom=base, color=colour, hatch=hatch,
                                    edgecolor="white", linewidth=0.6)
                    lo, hi = as_float(s.get("lo")), as_float(s.get("hi"))
                    if with_interval and math.isfinite(lo) and math.isfinite(hi):
                        ax.errorbar(j + offset, mean, yerr=[[max(mean - lo, 0)], [max(hi - mean, 0)]],
                                    color="#222", capsize=3, linewidth=1.2)
            if handle is not None:
                handles.append(handle)
                labels.append(_label(group_name(g)) + ("" if with_interval else " (1 seed, no interval)"))
        if metrics:
            ax = axes[0]
            ax.set_xticks(range(len(metrics)),
                          [m + ("\n(lower is better)" if m in (report.get("lower_is_better") or []) else "")
                           for m in metrics])
            ax.set_ylabel("mean over queries (0–1)")
            ax.set_xlabel("HR: share of queries with a hit · NDCG, MRR: mean gain per query")
            ax.set_title(f"Ranking metrics on the {(report.get('protocol') or {}).get('split', 'test')} split")
            ax.grid(axis="x", visible=False)
        if has_auc:
            ax = axes[-1]
            lo, hi = ax.get_ylim()
            ax.set_ylim(min(lo, 0.5) - 0.06 * (hi - lo), max(hi, 0.5 + 0.06 * (hi - lo)))
            ax.axhline(0.5, color="#555", linestyle="--", linewidth=1)
            ax.text(len(aucs) - 0.42, 0.5, "chance", va="bottom", ha="right", color="#555", fontsize=9)
            ax.set_xticks(range(len(aucs)), [{"auc": "auc\n(all skips\nof the session)",
                                              "auc_seen": "auc_seen\n(skips played\nbefore the query)"}[m]
                                             for m in aucs])
            ax.set_xlim(-0.6, len(aucs) - 0.4)
            ax.set_ylabel("AUC (0.5 = chance)")
            ax.set_title("Within-session AUC,\nnext kept vs skipped")
            ax.grid(axis="x", visible=False)
        fig.suptitle(f"Test metrics per group (error bars: {interval_level(report)} interval)")
        _legend(fig, handles, labels, 11)
        return _png(fig)


def plot_hr_curves(report: dict) -> bytes | None:
    """HR@k against k (log x axis), one line per group."""
    from matplotlib.ticker import FixedLocator, NullLocator

    curves = []
    for i, g in enumerate(report.get("groups") or []):
        c = g.get("hr_curve") or {}
        pts = [(as_float(k), as_float(h)) for k, h in zip(c.get("k") or [], c.get("hr") or [])]
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
                    label=_label(group_name(g)))
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
    pts = [(as_float(row.get("epoch")), as_float(row.get(key))) for row in run.get("curve") or []]
    return [(e, v) for e, v in pts if math.isfinite(e) and math.isfinite(v)]


def _other_terms(run: dict) -> dict[str, list[tuple[float, float]]]:
    """The loss terms besides the next-item one (contrastive, negative-target), per epoch."""
    out: dict[str, list[tuple[float, float]]] = {}
    for row in run.get("curve") or []:
        for name, v in (row.get("loss_other") or {}).items():
            e, v = as_float(row.get("epoch")), as_float(v)
            if math.isfinite(e) and math.isfinite(v):
                out.setdefault(str(name), []).append((e, v))
    return out


def validation_note(report: dict) -> str | None:
    """Say so when the runs were validated on different sessions (a subset for the neural runs, all
    for the count baselines): their validation values are then not on the same queries."""
    total = as_float((((report.get("dataset") or {}).get("splits") or {}).get("valid") or {}).get("sessions"))
    # a subset at least as large as the split is the whole split (0 stands for all)
    asked = [int(as_float(r["valid_sessions"])) for r in report.get("runs") or [] if is_number(r.get("valid_sessions"))]
    sizes = {0 if n <= 0 or (math.isfinite(total) and n >= total) else n for n in asked}
    if len(sizes) < 2:
        return None
    shown = sorted(sizes)
    return "validated on different sessions: " + ", ".join("all" if n == 0 else f"{n:,} drawn" for n in shown) + \
        " (runs differ in valid_sessions); values are not on the same queries"


def plot_training_curves(report: dict) -> bytes | None:
    """Validation ndcg@10, the next-item training loss and the other loss terms against epoch, one
    line per run (a marker for one point)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    runs = [r for r in report.get("runs") or []
            if _curve_points(r, "valid_ndcg@10") or _curve_points(r, "loss_next") or _other_terms(r)]
    if not runs:
        return None
    group_index = {g.get("key"): i for i, g in enumerate(report.get("groups") or [])}
    seen_in_group: dict = {}
    has_other = any(_other_terms(r) for r in runs)
    with _rc():
        fig = _figure(11, 5.6)
        axes = fig.subplots(1, 3 if has_other else 2)
        ax_ndcg, ax_loss = axes[0], axes[1]
        handles, labels = [], []
        for n, run in enumerate(runs):
            gi = group_index.get(run.get("group"), len(group_index) + n)
            k = seen_in_group[gi] = seen_in_group.get(gi, -1) + 1
            style = {"color": PALETTE[gi % len(PALETTE)], "marker": MARKERS[gi % len(MARKERS)],
                     "linestyle": ("-", "--", ":", "-.")[k % 4], "linewidth": 1.8, "markersize": 4}
            handle = None
            series = [(ax_ndcg, "valid_ndcg@10", _curve_points(run, "valid_ndcg@10")),
                      (ax_loss, "loss_next", _curve_points(run, "loss_next"))]
            if has_other:
                series += [(axes[2], name, pts) for name, pts in _other_terms(run).items()]
            for ax, key, pts in series:
                line = {**style, "marker": TERM_MARKERS.get(key, style["marker"])} if ax is not ax_ndcg else style
                if len(pts) == 1:  # a baseline: one evaluation, no training curve
                    handle = ax.plot(*zip(*pts), **{**line, "linestyle": "none", "markersize": 9})[0]
                elif pts:
                    handle = ax.plot(*zip(*pts), **line)[0]
                if key == "valid_ndcg@10" and run.get("best_epoch") is not None:
                    best = [v for e, v in pts if e == as_float(run["best_epoch"])]
                    if best and len(pts) > 1:
                        ax.plot([as_float(run["best_epoch"])], best, marker="*", markersize=13, color=style["color"],
                                markeredgecolor="black", linestyle="none", zorder=5)
            handles.append(handle)
            labels.append(_label(f"{run.get('group', '?')} · seed {run.get('seed', '?')}"))
        titles = [(ax_ndcg, "validation NDCG@10", "Validation NDCG@10 (★ best epoch)"),
                  (ax_loss, "loss (nats per target)", "Training loss: next-item term")]
        if has_other:
            names = sorted({t for r in runs for t in _other_terms(r)})
            marks = ", ".join(f"{TERM_MARKERS.get(t, 'o')} {t}" for t in names)
            titles.append((axes[2], "loss term value", f"Other loss terms\n({marks})"))
        for ax, ylabel, title in titles:
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if not ax.lines:
                ax.text(0.5, 0.5, "nothing recorded", transform=ax.transAxes, ha="center", color="#666")
        note = validation_note(report)
        if note:
            ax_ndcg.text(0.02, 0.98, textwrap.fill(note, 40), transform=ax_ndcg.transAxes, va="top", ha="left",
                         fontsize=8.5, color="#7a4a00", bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "#ddd"})
        handles.append(Line2D([], [], marker="*", markersize=13, color="#888", markeredgecolor="black",
                              linestyle="none"))
        labels.append("best epoch")
        _legend(fig, [h for h in handles if h is not None], [lb for h, lb in zip(handles, labels) if h is not None], 11)
        return _png(fig)


def plot_paired_differences(report: dict) -> bytes | None:
    """Forest plot: per metric a panel, per group a row, per baseline a marker with the paired
    difference's interval as a horizontal bar and zero as a vertical line."""
    from matplotlib.lines import Line2D


    named = [b for b in baselines(report) if comparisons_against(report, b)]
    rows: dict[str, None] = {}
    points = []  # (baseline index, group, metric, diff, lo, hi)
    for bi, b in enumerate(named):
        for c in comparisons_against(report, b):
            diff, lo, hi = as_float(c.get("diff")), as_float(c.get("lo")), as_float(c.get("hi"))
            if c.get("metric") in DIFF_METRICS and math.isfinite(diff):
                rows.setdefault(str(c.get("group")))
                points.append((bi, str(c.get("group")), c["metric"], diff, lo, hi))
    metrics = [m for m in DIFF_METRICS if any(p[2] == m for p in points)]
    if not metrics:
        return None
    order = list(rows)
    lower = set(report.get("lower_is_better") or [])
    with _rc():
        fig = _figure(11, 1.6 + 0.42 * len(order) * max(1, len(named)) ** 0.5 + 0.6)
        axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
        step = 0.6 / max(len(named), 1)
        for ax, m in zip(axes, metrics):
            for bi, group, metric, diff, lo, hi in points:
                if metric != m:
                    continue
                y = order.index(group) + (bi - (len(named) - 1) / 2) * step
                err = [[max(diff - lo, 0)], [max(hi - diff, 0)]] if math.isfinite(lo) and math.isfinite(hi) else None
                ax.errorbar([diff], [y], xerr=err, fmt=MARKERS[bi % len(MARKERS)], color=PALETTE[bi % len(PALETTE)],
                            capsize=3, markersize=6, linewidth=1.6)
            ax.axvline(0, color="#444", linewidth=1)
            ax.set_title(m + (" (lower is better)" if m in lower else " (higher is better)"))
            ax.set_xlabel("group − baseline")
            ax.grid(axis="y", visible=False)
        axes[0].set_yticks(range(len(order)), [textwrap.fill(_label(g), 28, break_on_hyphens=False) for g in order])
        axes[0].invert_yaxis()
        fig.suptitle(f"Paired differences against the baselines ({interval_level(report)} intervals)")
        _legend(fig, [Line2D([], [], color=PALETTE[i % len(PALETTE)], marker=MARKERS[i % len(MARKERS)])
                      for i in range(len(named))], [_label(f"against {b}") for b in named], 11)
        return _png(fig)


def _rank_hist(group: dict):
    """(edges, pos shares, skip shares, cold shares, n pos, n skip) per seed, or None when the
    histogram is unusable.  The counts are summed over the group's seeds, which all rank the same
    queries: the shares are the mean of the seeds' shares, the query counts are divided back."""
    h = group.get("rank_hist") or {}
    edges = [as_float(e) for e in h.get("edges") or []]
    seeds = max(as_float(h.get("seeds")), 1.0) if is_number(h.get("seeds")) else 1.0

    def counts(key: str) -> list[float]:
        return [max(as_float(c), 0.0) if is_number(c) else 0.0 for c in h.get(key) or []]

    out = []
    for key in ("pos", "skip"):
        c = counts(key)
        total = sum(c)
        ok = len(c) == len(edges) - 1 and total > 0
        out.append(([x / total for x in c] if ok else None, total / seeds if ok else 0))
    if len(edges) < 2 or not all(math.isfinite(e) and e > 0 for e in edges):
        return None
    if out[0][0] is None and out[1][0] is None:
        return None
    cold = counts("pos_cold")
    total_pos = out[0][1] * seeds
    cold = [x / total_pos for x in cold] if out[0][0] is not None and len(cold) == len(edges) - 1 else None
    return edges, out[0][0], out[1][0], cold, out[0][1], out[1][1]


def plot_rank_distribution(report: dict) -> bytes | None:
    """Small multiples, one per group: share of queries per log-spaced rank bin, next track not
    skipped vs skipped, with the positive queries whose track never occurs in train hatched."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    panels = [(g, h) for g in report.get("groups") or [] if (h := _rank_hist(g)) is not None]
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    any_cold = any(h[3] is not None and any(h[3]) for _, h in panels)
    with _rc():
        fig = _figure(11, 2.9 * nrows + 1.3)
        axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
        for ax, (g, (edges, pos, skip, cold, n_pos, n_skip)) in zip(axes, panels):
            if pos is not None:
                ax.stairs(pos, edges, color=POS_COLOUR, linewidth=2, fill=True, alpha=0.25)
                ax.stairs(pos, edges, color=POS_COLOUR, linewidth=2)
            if cold is not None and any(cold):
                ax.stairs(cold, edges, fill=True, facecolor="none", edgecolor=POS_COLOUR, hatch="xxx", linewidth=0)
                i = max(range(len(cold)), key=lambda j: cold[j])
                ax.annotate(f"cold: {sum(cold):.0%}", (math.sqrt(edges[i] * edges[i + 1]), cold[i]),
                            xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=8.5,
                            color=POS_COLOUR)
            if skip is not None:
                ax.stairs(skip, edges, color=SKIP_COLOUR, linewidth=2, linestyle="--")
            ax.axvline(10.5, color="#444", linestyle=":", linewidth=1.2)
            ax.set_xscale("log")
            name = textwrap.fill(_label(group_name(g)), 34, break_on_hyphens=False)
            seeds = n_seeds(g)
            per = f" per seed, mean of {seeds} seeds" if seeds > 1 else ""
            ax.set_title(f"{name}\n{fmt_count(n_pos)} kept · {fmt_count(n_skip)} skipped{per}", fontsize=10)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        for ax in axes[::ncols]:
            ax.set_ylabel("share of queries")
        for ax in axes[max(len(panels) - ncols, 0):len(panels)]:  # panels with no panel below them
            ax.set_xlabel("rank of the next track (log)")
            ax.xaxis.set_tick_params(labelbottom=True)
        fig.suptitle("Full-catalogue rank of the next track (dotted line: top 10; shares averaged over seeds)")
        handles = [Patch(facecolor=POS_COLOUR, alpha=0.4, edgecolor=POS_COLOUR, linewidth=2),
                   Line2D([], [], color=SKIP_COLOUR, linewidth=2, linestyle="--")]
        labels = ["next track not skipped (positive)", "next track skipped"]
        if any_cold:
            handles.append(Patch(facecolor="none", edgecolor=POS_COLOUR, hatch="xxx"))
            labels.append("positive, track never in train (cold)")
        _legend(fig, handles, labels, 11)
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
    edges, counts = [as_float(e) for e in sl.get("edges") or []], [as_float(c) for c in sl.get("counts") or []]
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
            ax.set_title("Session lengths" + (f" (median {fmt_count(median)} plays)" if is_number(median) else ""))
            ax.yaxis.set_major_formatter(thousands)
            ax.grid(axis="x", visible=False)
        for ax, key, unit in zip(axes, ("sessions", "events"), ("sessions", "plays")):
            values = [as_float(s.get(key, s.get("plays"))) for _, s in splits]
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
