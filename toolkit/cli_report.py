"""``toolkit report``, ``toolkit recommend`` and ``toolkit study``: the commands built on trained runs.

Registered on the main app by ``toolkit/cli.py``; like the rest of the CLI, no logic lives here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from toolkit.artifacts import Workspace
from toolkit.cli import WorkspaceOpt, app, err, friendly, out

SCREEN_METRICS = ("hr@10", "ndcg@10", "mrr@10", "skip_hr@10", "auc")
PAIRED_SCREEN = ("ndcg@10", "hr@10", "skip_hr@10")


@app.command()
@friendly
def report(
    runs: list[str] = typer.Argument(None, help="Run ids (default: every finished run of the dataset)."),
    dataset: Optional[str] = typer.Option(None, help="Dataset whose runs to report (default: the latest)."),
    out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the report: .html (with a .md beside it), .md or .json."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON instead of the table."),
    split: str = typer.Option("test", help="Split to score: test, or valid."),
    positions: str = typer.Option("all", help="all: every position with a known next play; last: the last kept play per session."),
    exclude_played: bool = typer.Option(False, help="Remove tracks already played in the session from the ranking."),
    baseline: Optional[str] = typer.Option(None, help="Group to compare against, e.g. 'sasrec / positives-only' (default: 'sasrec / all')."),
    bootstrap: int = typer.Option(1000, help="Paired bootstrap replicates (each resamples the test listeners or sessions and every group's seeds)."),
    resample: str = typer.Option("auto", help="What the bootstrap resamples: listeners (each with all their sessions), sessions, or auto (listeners when the log has them)."),
    allow_unfinished: bool = typer.Option(False, help="Score an unfinished run's best checkpoint instead of refusing."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    workspace: Optional[Path] = WorkspaceOpt,
) -> None:
    """Score runs on the test split (full catalogue) and compare them with confidence intervals.

    Example: toolkit report --out report.html
    """
    from toolkit.render import write_report
    from toolkit.report import Protocol, build_report

    from toolkit import distributed
    from toolkit.train import pick_device

    ws = Workspace.at(workspace)
    protocol = Protocol(split=split, positions=positions, exclude_played=exclude_played, baseline=baseline,
                        bootstrap=bootstrap, resample=resample, allow_unfinished=allow_unfinished)
    distributed.join(pick_device(device))  # under torchrun the processes share the scoring; rank 0 reports
    if not distributed.main_process():
        build_report(ws, runs or [], protocol, dataset, device)
        return
    with out.status("scoring") as status:
        rep = build_report(ws, runs or [], protocol, dataset, device, lambda msg: status.update(msg))
    if as_json:
        typer.echo(json.dumps(rep, indent=2, sort_keys=True, default=float))
    else:
        print_report(rep)
    if out_file is not None:
        for path in write_report(rep, out_file):
            out.print(f"wrote {path}")


def print_report(rep: dict) -> None:
    """The main table (mean ± 95 % interval over seeds, best per column in bold) and the paired
    differences against the baseline; laid out to fit an 80-column terminal."""
    groups = rep["groups"]
    from toolkit.render import split_lines

    for line in split_lines(rep):
        out.print(line.replace("Warning:", "[yellow]warning:[/yellow]", 1))
    table = Table(title=rep["title"], caption=rep["protocol"]["note"], caption_justify="left")
    table.add_column("model / feedback", ratio=1, overflow="fold")
    for m in SCREEN_METRICS:
        table.add_column(m + (" ↓" if m in rep["lower_is_better"] else ""), justify="right", no_wrap=True)
    best = {m: _best(groups, m, m in rep["lower_is_better"]) for m in SCREEN_METRICS}
    for g in groups:
        cells = []
        for m in SCREEN_METRICS:
            text = _cell(g["metrics"][m])
            cells.append(f"[bold green]{text}[/bold green]" if g["key"] in best[m] else text)
        seeds = len(g["seeds"])
        who = (f"{g['key']}\n[dim]{seeds} seed{'s' if seeds > 1 else ''} · {g['n_sessions']:,} sessions · "
               f"{g['n_pos']:,} / {g['n_skip']:,} queries[/dim]")
        table.add_row(who, *cells)
    out.print(table)
    if rep["comparisons"]:
        unit = rep["protocol"].get("resampled", "sessions")
        diff = Table(title=f"difference against {rep['protocol']['baseline']}: paired bootstrap over {unit}, 95 %")
        diff.add_column("group", ratio=1, overflow="fold")
        for m in PAIRED_SCREEN:
            diff.add_column(m, justify="right", no_wrap=True)
        for key in dict.fromkeys(c["group"] for c in rep["comparisons"]):
            row = {c["metric"]: c for c in rep["comparisons"] if c["group"] == key}
            diff.add_row(key, *[_diff_cell(row.get(m)) for m in PAIRED_SCREEN])
        out.print(diff)
        out.print("[dim]bold: the interval excludes zero[/dim]")


def _cell(stat: dict) -> str:
    mean, lo, hi = stat["mean"], stat["lo"], stat["hi"]
    if not _finite(mean):
        return "–"
    return f"{mean:.4f}\n±{(hi - lo) / 2:.4f}" if _finite(lo) and _finite(hi) else f"{mean:.4f}"


def _diff_cell(c: dict | None) -> str:
    if c is None or not _finite(c["diff"]):
        return "–"
    text = f"{c['diff']:+.4f}\n[{c['lo']:+.4f}, {c['hi']:+.4f}]"
    return f"[bold]{text}[/bold]" if c["excludes_zero"] else text


def _best(groups: list[dict], metric: str, lower: bool) -> set[str]:
    values = {g["key"]: round(g["metrics"][metric]["mean"], 4) for g in groups if _finite(g["metrics"][metric]["mean"])}
    if len(values) < 2:
        return set()
    target = min(values.values()) if lower else max(values.values())
    return {k for k, v in values.items() if v == target}


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


@app.command()
@friendly
def recommend(
    run: str = typer.Option(..., "--run", help="Run id (see `toolkit runs`)."),
    sessions: Path = typer.Option(..., "--sessions", help="Parquet of session plays: session, track_key or item_id, optional skipped, position."),
    k: int = typer.Option(20, "-k", help="Tracks per session."),
    out_file: Path = typer.Option(Path("recs.parquet"), "--out", "-o", help="Output parquet."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    allow_unfinished: bool = typer.Option(False, help="Use an unfinished run's best checkpoint."),
    workspace: Optional[Path] = WorkspaceOpt,
) -> None:
    """Top-k next tracks for session prefixes, with scores and track names.

    Example: toolkit recommend --run sasrec-all-s0-1a2b3c4d --sessions sessions.parquet -k 20 --out recs.parquet
    """
    from toolkit.recommend import recommend as run_recommend

    res = run_recommend(Workspace.at(workspace), run, sessions, k, out_file, device, allow_unfinished)
    out.print(f"{res['recommended']:,} sessions → {res['rows']:,} rows in {res['out']} (run {res['run']})")
    if res["unknown_plays"] or res["empty_sessions"]:
        out.print(f"[yellow]{res['unknown_plays']:,} of {res['plays']:,} plays are tracks outside the catalogue and "
                  f"were left out; {res['empty_sessions']:,} sessions had no known track and got no "
                  "recommendations[/yellow]")


@app.command()
@friendly
def study(
    logs: list[Path] = typer.Argument(None, help="Raw logs to prepare first (files, folders, zips); omit to use --dataset."),
    format: str = typer.Option("auto", "--format", "-f", help="Input format when LOGS are given (see `toolkit prep`)."),
    name: Optional[str] = typer.Option(None, help="Dataset name when LOGS are given."),
    dataset: Optional[str] = typer.Option(None, help="Prepared dataset (default: the one just prepared, else the latest)."),
    grid: str = typer.Option("core", help="core (pop, markov, sknn, repeat; SASRec all / positives-only / contrastive / positives-only+contrastive), skip (core + negative-target, alone and with contrastive), paper, or full."),
    seeds: int = typer.Option(2, help="Seeds per neural cell."),
    set_: list[str] = typer.Option([], "--set", help="Training setting for every neural run, key=value (e.g. epochs=5)."),
    results: Optional[Path] = typer.Option(None, help="Markdown results document to write this dataset's section into."),
    check: Optional[Path] = typer.Option(None, help="Results document to reproduce: compare this run's main table with the dataset's section there (exit 1 when a mean falls outside its stated interval)."),
    out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="Report file (default: <workspace>/studies/<dataset>-<grid>.html)."),
    workspace: Optional[Path] = WorkspaceOpt,
) -> None:
    """Prepare (if needed), train a grid of models over seeds, and report: the paper's experiment in one command.

    Example: toolkit study logs/ --format auto --seeds 3 --results docs/results.md
    """
    import sys

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from toolkit.config import PrepConfig, settings
    from toolkit.prep import prep as run_prep
    from toolkit.study import StudyConfig, command_line
    from toolkit.study import study as run_study

    ws = Workspace.at(workspace)
    overrides = settings(set_, reserved=("dataset", "model", "feedback", "seed"))
    if logs:
        with out.status("preparing") as status:
            manifest = run_prep(list(logs), ws, PrepConfig(format=format, name=name), lambda s: status.update(s))
        dataset = dataset or manifest["name"]
    if check is not None:  # a document without this dataset's table fails now, not after the training
        from toolkit.results_doc import document_table
        from toolkit.train import latest_dataset

        dataset = dataset or latest_dataset(ws)
        document_table(check, dataset)
    cfg = StudyConfig(dataset=dataset, grid=grid, seeds=seeds, overrides=overrides, results=results, out=out_file, check=check,
                      command=command_line(sys.argv[1:]) if sys.argv[1:2] == ["study"] else "toolkit study")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=out) as bar:
        task = bar.add_task("study", total=None, info="")

        def show(ev: dict) -> None:
            if ev["event"] == "run":
                eta = f"ETA {ev['eta_s'] / 60:.0f} min" if ev["eta_s"] is not None else ""
                bar.update(task, total=ev["total"], completed=ev["index"],
                           description=f"run {ev['index'] + 1}/{ev['total']}: {ev['id']}",
                           info=f"{ev['index']} done, {ev['total'] - ev['index']} left {eta}")
            elif ev["event"] == "epoch":
                bar.console.print(f"  {ev['run']} epoch {ev['epoch'] + 1}: valid NDCG@10 {ev['valid_ndcg@10']:.4f} "
                                  f"({ev['seconds']:.0f} s)")
            elif ev["event"] == "report":
                bar.update(task, description="scoring the test split", info="")

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
    out.print(t)
    checked, failed = tally(agreements)
    out.print(f"{checked - failed} of {checked} cells reproduced within the document's intervals"
              + ("" if not failed else f"; {failed} did not") + f" (recorded in {document})")
    return failed == 0
