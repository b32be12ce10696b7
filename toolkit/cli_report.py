"""``toolkit report``, ``toolkit recommend`` and ``toolkit study``: the commands built on trained runs.

Registered on the main app by ``toolkit/cli.py``; like the rest of the CLI, no logic lives here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Optional

import typer
from rich.table import Table

from toolkit.artifacts import Workspace
from toolkit.cli import (
    GRID, INPUT, OUTPUT, PROTOCOL, RUNTIME, app, err, friendly, out, workspace_option,
)
from toolkit.cli_output import csv_text, json_text, print_table
from toolkit.config import DEVICES, POSITIONS, RESAMPLE, SCORED_SPLITS
from toolkit.grids import DEFAULT_GRID, GRIDS, cell_name
from toolkit.readers import FORMATS

RECOMMEND_DEVICES = tuple(d for d in DEVICES if d != "auto")  # recommend scores where it is told
SCREEN_METRICS = ("hr@10", "ndcg@10", "mrr@10", "skip_hr@10", "auc")
PAIRED_SCREEN = ("ndcg@10", "hr@10", "skip_hr@10")


@app.command(epilog="""Examples:

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
    exclude_played: bool = typer.Option(False, rich_help_panel=PROTOCOL, help="Remove tracks already played in the session from the ranking."),
    baseline: Optional[str] = typer.Option(None, rich_help_panel=PROTOCOL, help="Group to compare against, e.g. 'sasrec / positives-only' (default: 'sasrec / all')."),
    bootstrap: int = typer.Option(1000, rich_help_panel=PROTOCOL, help="Paired bootstrap replicates (each resamples the test listeners or sessions and every group's seeds)."),
    resample: Literal[RESAMPLE] = typer.Option("auto", rich_help_panel=PROTOCOL, help="What the bootstrap resamples: listeners (each with all their sessions), sessions, or auto (listeners when the log has them)."),
    device: Literal[DEVICES] = typer.Option("auto", rich_help_panel=RUNTIME, help="auto takes a CUDA GPU when there is one."),
    out_file: Optional[Path] = typer.Option(None, "--out", "-o", rich_help_panel=OUTPUT, help="Write the report: .html (with a .md beside it), .md or .json."),
    as_json: bool = typer.Option(False, "--json", rich_help_panel=OUTPUT, help="Print the whole report as JSON (every number, unrounded) instead of the tables."),
    as_csv: bool = typer.Option(False, "--csv", rich_help_panel=OUTPUT, help="Print the group table and the paired differences as CSV, one row per group or difference and metric."),
) -> None:
    """Score runs on the test split (full catalogue) and compare them with confidence intervals."""
    from toolkit.render import write_report
    from toolkit.report import Protocol, build_report

    from toolkit import distributed
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

    from toolkit.render import baselines, comparisons_against, split_lines
    from toolkit.signals import signal_lines

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


@app.command(epilog="""Examples:

  toolkit recommend --run sasrec-all-s0-1a2b3c4d --sessions sessions.parquet -k 20 --out recs.parquet

  toolkit recommend --run sasrec-all-s0-1a2b3c4d --artist 'Nina Simone' --title 'Sinnerman'""")
@friendly
def recommend(
    run: str = typer.Option(..., "--run", rich_help_panel=INPUT, help="Run id (see `toolkit runs`)."),
    sessions: Optional[Path] = typer.Option(None, "--sessions", rich_help_panel=INPUT, help="Parquet of session plays: session, track_key or item_id, optional skipped, position."),
    artist: list[str] = typer.Option([], "--artist", rich_help_panel=INPUT, help="Instead of --sessions: the artist of a play of one session (case-insensitive; repeat with --title per play)."),
    title: list[str] = typer.Option([], "--title", rich_help_panel=INPUT, help="The title of that play (one --title per --artist)."),
    allow_unfinished: bool = typer.Option(False, rich_help_panel=INPUT, help="Use an unfinished run's best checkpoint."),
    workspace: Optional[Path] = workspace_option(INPUT),
    k: int = typer.Option(20, "-k", rich_help_panel=OUTPUT, help="Tracks per session."),
    out_file: Path = typer.Option(Path("recs.parquet"), "--out", "-o", rich_help_panel=OUTPUT, help="Output parquet."),
    device: Literal[RECOMMEND_DEVICES] = typer.Option("cpu", rich_help_panel=RUNTIME, help="Where to score."),
) -> None:
    """Top-k next tracks for session prefixes, with scores and track names."""
    from rich.markup import escape

    from toolkit.recommend import recommend as run_recommend

    if len(artist) != len(title):
        raise typer.BadParameter(f"{len(artist)} --artist and {len(title)} --title: give one of each per play",
                                 param_hint="'--artist' / '--title'")
    res = run_recommend(Workspace.at(workspace), run, sessions, k, out_file, device, allow_unfinished,
                        list(zip(artist, title)))
    out.print(f"{res['recommended']:,} sessions → {res['rows']:,} rows in {res['out']} (run {res['run']})")
    for p in res["preview"]:
        out.print(f"session {escape(str(p['session']))}:", highlight=False)
        for rank, name, score in p["tracks"]:
            out.print(f"  {rank:>2}. {escape(name)}  [dim](score {score:.3f})[/dim]", highlight=False)
    if res["unknown_plays"] or res["empty_sessions"]:
        out.print(f"[yellow]{res['unknown_plays']:,} of {res['plays']:,} plays are tracks outside the catalogue and "
                  f"were left out; {res['empty_sessions']:,} sessions had no known track and got no "
                  "recommendations[/yellow]")


def grids_help() -> str:
    """Each grid of toolkit/grids.py and its cells, for study's help; a grid that extends another
    is shown as that one plus its own cells."""
    lines = ["Grids (--grid; the neural cells run once per seed, the count baselines once):"]
    for name, cells in GRIDS.items():
        base = next((b for b in GRIDS if b != name and len(GRIDS[b]) < len(cells)
                     and cells[:len(GRIDS[b])] == GRIDS[b]), None)
        own = cells[len(GRIDS[base]):] if base else cells
        listed = ", ".join(cell_name(*c) for c in own)
        default = " (default)" if name == DEFAULT_GRID else ""
        lines.append(f"  {name}{default}: {base + ' + ' if base else ''}{listed}")
    return "\n\n".join(lines)


@app.command(epilog=f"""Examples:

  toolkit study logs/ --format auto --seeds 3 --results docs/results.md

  toolkit study --dataset spotify --grid paper --set epochs=5

{grids_help()}""")
@friendly
def study(
    logs: list[Path] = typer.Argument(None, help="Raw logs to prepare first (files, folders, zips); omit to use --dataset."),
    format: Literal[FORMATS] = typer.Option("auto", "--format", "-f", rich_help_panel=INPUT, help="Input format when LOGS are given (see `toolkit prep`)."),
    name: Optional[str] = typer.Option(None, rich_help_panel=INPUT, help="Dataset name when LOGS are given."),
    dataset: Optional[str] = typer.Option(None, rich_help_panel=INPUT, help="Prepared dataset (default: the one just prepared, else the latest)."),
    workspace: Optional[Path] = workspace_option(INPUT),
    grid: Literal[tuple(GRIDS)] = typer.Option(DEFAULT_GRID, rich_help_panel=GRID, help="Grid of runs (each listed below)."),
    seeds: int = typer.Option(2, rich_help_panel=GRID, help="Seeds per neural cell."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", rich_help_panel=GRID, help="Training setting for every neural run, key=value (e.g. epochs=5)."),
    results: Optional[Path] = typer.Option(None, rich_help_panel=OUTPUT, help="Markdown results document to write this dataset's section into."),
    check: Optional[Path] = typer.Option(None, rich_help_panel=OUTPUT, help="Results document to reproduce: compare this run's main table with the dataset's section there (exit 1 when a mean falls outside its stated interval)."),
    out_file: Optional[Path] = typer.Option(None, "--out", "-o", rich_help_panel=OUTPUT, help="Report file (default: <workspace>/studies/<dataset>-<grid>.html)."),
) -> None:
    """Prepare (if needed), train a grid of models over seeds, and report: the paper's experiment in one command."""
    import sys

    from toolkit.cli_progress import GridView
    from toolkit.config import PrepConfig, settings
    from toolkit.prep import prep as run_prep
    from toolkit.study import StudyConfig, command_line
    from toolkit.study import study as run_study

    ws = Workspace.at(workspace)
    overrides = settings(set_, reserved=("dataset", "model", "feedback", "seed"))
    if logs:
        with out.status("preparing") as status:
            manifest = run_prep(list(logs), ws, PrepConfig(format=format, name=name), lambda s: status.update(s))
        dataset = dataset or manifest.name
    if check is not None:  # a document without this dataset's table fails now, not after the training
        from toolkit.results_doc import document_table
        from toolkit.train import latest_dataset

        dataset = dataset or latest_dataset(ws)
        document_table(check, dataset)
    cfg = StudyConfig(dataset=dataset, grid=grid, seeds=seeds, overrides=overrides, results=results, out=out_file, check=check,
                      command=command_line(sys.argv[1:]) if sys.argv[1:2] == ["study"] else "toolkit study")
    with GridView(out) as show:
        try:
            res = run_study(ws, cfg, show)
        except KeyboardInterrupt:
            err.print("interrupted: finished runs are kept and the current one is checkpointed; run the same "
                      "command again to continue")
            raise typer.Exit(130) from None
    print_report(res["report"])
    for path in res["written"]:
        out.print(f"wrote {path}")
    if res["agreements"] is not None and not print_agreement(res["agreements"], check):
        raise typer.Exit(1)


def print_agreement(agreements: list, document: Path) -> bool:
    """Per group: how many cells of the document's main table this run reproduces; every miss in full.
    True when nothing disagrees (cells only one side has are listed, not failed)."""
    from toolkit.results_doc import agreement_rows, tally

    t = Table(title=f"reproducing {document}", title_justify="left")
    for col in ("group", "agree", "outside the stated interval / different", "only one side"):
        t.add_column(col, overflow="fold")
    for row in agreement_rows(agreements):
        t.add_row(*row)
    print_table(out, t)
    checked, failed = tally(agreements)
    out.print(f"{checked - failed} of {checked} cells reproduced within the document's intervals"
              + ("" if not failed else f"; {failed} did not") + f" (recorded in {document})")
    return failed == 0

