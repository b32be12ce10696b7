"""``toolkit report``: score runs and compare them, as tables on the screen, JSON, CSV or a written
report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Optional

import typer
from rich.table import Table

from toolkit.artifacts import Workspace
from toolkit.cli.common import INPUT, OUTPUT, PROTOCOL, RUNTIME, command, err, friendly, out, workspace_option
from toolkit.cli.output import csv_text, json_text, print_table
from toolkit.config import DEVICES, POSITIONS, RESAMPLE, SCORED_SPLITS

SCREEN_METRICS = ("hr@10", "ndcg@10", "mrr@10", "skip_hr@10", "auc")
PAIRED_SCREEN = ("ndcg@10", "hr@10", "skip_hr@10")


@command("""Examples:

  toolkit report --out report.html

  toolkit report RUN_ID RUN_ID --baseline "sasrec / positives-only" --positions last

  toolkit report --csv > report.csv

  toolkit report --json | jq '.comparisons[] | select(.excludes_zero)'""")
@friendly
def report(
    runs: list[str] = typer.Argument(None, help="Run ids (default: every finished run of the dataset)."),
    dataset: Optional[str] = typer.Option(None, rich_help_panel=INPUT, help="Dataset whose runs to report (default: the latest)."),
    allow_unfinished: bool = typer.Option(False, rich_help_panel=INPUT, help="Score an unfinished run's best checkpoint instead of refusing."),
    workspace: Optional[Path] = workspace_option(INPUT),
    split: Literal[SCORED_SPLITS] = typer.Option("test", rich_help_panel=PROTOCOL, help="Split to score."),
    positions: Literal[POSITIONS] = typer.Option("all", rich_help_panel=PROTOCOL, help="all: every position with a known next play; last: the last kept play per session."),
    exclude_played: Optional[bool] = typer.Option(None, "--exclude-played/--include-played", rich_help_panel=PROTOCOL, help="Remove tracks already played in the session from the ranking, or keep them, for every run (default: as the runs were validated: `toolkit train --exclude-played`)."),
    baseline: Optional[str] = typer.Option(None, rich_help_panel=PROTOCOL, help="Group to compare against, e.g. 'sasrec / positives-only' (default: 'sasrec / all')."),
    bootstrap: int = typer.Option(1000, rich_help_panel=PROTOCOL, help="Paired bootstrap replicates (each resamples the test listeners or sessions and every group's seeds)."),
    resample: Literal[RESAMPLE] = typer.Option("auto", rich_help_panel=PROTOCOL, help="What the bootstrap resamples: listeners (each with all their sessions), sessions, or auto (listeners when the log has them)."),
    device: Literal[DEVICES] = typer.Option("auto", rich_help_panel=RUNTIME, help="auto takes a CUDA GPU when there is one."),
    out_file: Optional[Path] = typer.Option(None, "--out", "-o", rich_help_panel=OUTPUT, help="Write the report: .html (with a .md beside it), .md or .json."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=OUTPUT, help="Print the whole report as JSON (every number, unrounded) instead of the tables."),
    as_csv: bool = typer.Option(False, "--csv", rich_help_panel=OUTPUT, help="Print the group table and the paired differences as CSV, one row per group or difference and metric."),
) -> None:
    """Score runs on the test split (full catalogue) and compare them with confidence intervals."""
    from toolkit import distributed
    from toolkit.report.protocol import Protocol
    from toolkit.report.render import write_report
    from toolkit.report.scoring import build_report
    from toolkit.train import pick_device

    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="'--json' / '--csv'")
    ws = Workspace.at(workspace)
    protocol = Protocol(split=split, positions=positions, exclude_played=exclude_played, baseline=baseline,
                        bootstrap=bootstrap, resample=resample, allow_unfinished=allow_unfinished)
    distributed.join(pick_device(device))  # under torchrun the processes share the scoring; rank 0 reports
    if not distributed.main_process():
        build_report(ws, runs or [], protocol, dataset, device)
        return
    with err.status("scoring") as status:  # on stderr: stdout may be a report a program reads
        rep = build_report(ws, runs or [], protocol, dataset, device, lambda msg: status.update(msg))
    if as_json:
        typer.echo(json_text(rep, sort_keys=True))
    elif as_csv:
        typer.echo(csv_text(report_records(rep)), nl=False)
    else:
        print_report(rep)
    if out_file is not None:
        for path in write_report(rep, out_file):
            (err if as_json or as_csv else out).print(f"wrote {path}", highlight=False, soft_wrap=True)


def report_records(rep: dict) -> list[dict]:
    """The report's two tables as flat records, one per group and metric (table ``groups``: the mean
    over seeds and its 95 % interval) and one per paired difference (table ``differences``)."""
    records = []
    for g in rep["groups"]:
        for metric in rep["metrics"]:
            stat = g["metrics"].get(metric)
            if stat is None:
                continue
            records.append({"table": "groups", "group": g["key"], "metric": metric, "value": stat["mean"],
                            "lo": stat["lo"], "hi": stat["hi"], "baseline": None, "excludes_zero": None,
                            "seeds": len(g["seeds"]), "sessions": g["n_sessions"], "positive_queries": g["n_pos"],
                            "skip_queries": g["n_skip"], "unit": None, "units": None})
    for c in rep["comparisons"]:
        records.append({"table": "differences", "group": c["group"], "metric": c["metric"], "value": c["diff"],
                        "lo": c["lo"], "hi": c["hi"], "baseline": c["baseline"], "excludes_zero": c["excludes_zero"],
                        "seeds": None, "sessions": None, "positive_queries": None, "skip_queries": None,
                        "unit": c.get("unit"), "units": c.get("n_units")})
    return records


def print_report(rep: dict) -> None:
    """The main table (mean ± 95 % interval over seeds, best per column in bold) and the paired
    differences against the baseline; laid out to fit an 80-column terminal, and as plain text, one
    line per group, when the output is not a terminal (bold cannot show there: a star marks an
    interval that excludes zero)."""
    groups = rep["groups"]
    plain = not out.is_terminal
    from rich.markup import escape

    from toolkit.report.format import baselines, comparisons_against
    from toolkit.report.render import split_lines
    from toolkit.report.signals import signal_lines

    for line in split_lines(rep):
        out.print(line.replace("Warning:", "[yellow]warning:[/yellow]", 1), soft_wrap=plain)
    # the same header as the written report: the verdict, then what to know before the numbers
    style = {"verdict": ("[bold]", "[/bold]"), "warning": ("[yellow]warning:[/yellow] ", ""), "notice": ("note: ", "")}
    for kind, text in signal_lines(rep):
        before, after = style[kind]
        out.print(f"{before}{escape(text)}{after}", soft_wrap=plain, highlight=False)
    table = Table(title=rep["title"], caption=rep["protocol"]["note"], caption_justify="left")
    table.add_column("model / feedback", ratio=1, overflow="fold")
    if plain:
        for col in ("seeds", "sessions", "queries (positive / skip)"):
            table.add_column(col, justify="right")
    for m in SCREEN_METRICS:
        table.add_column(m + (" ↓" if m in rep["lower_is_better"] else ""), justify="right", overflow="fold")
    best = {m: _best(groups, m, m in rep["lower_is_better"]) for m in SCREEN_METRICS}
    for g in groups:
        cells = []
        for m in SCREEN_METRICS:
            text = _cell(g["metrics"][m])
            cells.append(f"[bold green]{text}[/bold green]" if g["key"] in best[m] else text)
        seeds = len(g["seeds"])
        if plain:
            table.add_row(g["key"], str(seeds), f"{g['n_sessions']:,}", f"{g['n_pos']:,} / {g['n_skip']:,}", *cells)
            continue
        who = (f"{g['key']}\n[dim]{seeds} seed{'s' if seeds > 1 else ''} · {g['n_sessions']:,} sessions · "
               f"{g['n_pos']:,} / {g['n_skip']:,} queries[/dim]")
        table.add_row(who, *cells)
    print_table(out, table)
    unit = rep["protocol"].get("resampled", "sessions")
    for baseline in baselines(rep):
        rows = comparisons_against(rep, baseline)
        if not rows:
            continue
        diff = Table(title=f"difference against {baseline}: paired bootstrap over {unit}, 95 %")
        diff.add_column("group", ratio=1, overflow="fold")
        for m in PAIRED_SCREEN:
            diff.add_column(m, justify="right", overflow="fold")
        for key in dict.fromkeys(c["group"] for c in rows):
            row = {c["metric"]: c for c in rows if c["group"] == key}
            diff.add_row(key, *[_diff_cell(row.get(m), plain) for m in PAIRED_SCREEN])
        print_table(out, diff)
    if rep["comparisons"]:
        out.print("*: the interval excludes zero" if plain else "[dim]bold: the interval excludes zero[/dim]")


def _cell(stat: dict) -> str:
    mean, lo, hi = stat["mean"], stat["lo"], stat["hi"]
    if not _finite(mean):
        return "–"
    return f"{mean:.4f}\n±{(hi - lo) / 2:.4f}" if _finite(lo) and _finite(hi) else f"{mean:.4f}"


def _diff_cell(c: dict | None, plain: bool = False) -> str:
    if c is None or not _finite(c["diff"]):
        return "–"
    text = f"{c['diff']:+.4f}\n[{c['lo']:+.4f}, {c['hi']:+.4f}]"
    if plain:
        return text + (" *" if c["excludes_zero"] else "")
    return f"[bold]{text}[/bold]" if c["excludes_zero"] else text


def _best(groups: list[dict], metric: str, lower: bool) -> set[str]:
    values = {g["key"]: round(g["metrics"][metric]["mean"], 4) for g in groups if _finite(g["metrics"][metric]["mean"])}
    if len(values) < 2:
        return set()
    target = min(values.values()) if lower else max(values.values())
    return {k for k, v in values.items() if v == target}


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)
