"""``toolkit study``: prepare, train a grid over seeds and report in one command, and check a results
document against the report."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer
from rich.table import Table

from toolkit.artifacts import Workspace
from toolkit.cli.common import GRID, INPUT, OUTPUT, command, friendly, on_interrupt, out, workspace_option
from toolkit.cli.output import print_table
from toolkit.cli.report import print_report
from toolkit.grids import DEFAULT_GRID, GRIDS, cell_name
from toolkit.readers import FORMATS


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


@command(f"""Examples:

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

    from toolkit.cli.progress import GridView
    from toolkit.config import settings
    from toolkit.study import StudyConfig, command_line
    from toolkit.study import study as run_study

    ws = Workspace.at(workspace)
    overrides = settings(set_, reserved=("dataset", "model", "feedback", "seed"))
    prepared = prepare_logs(ws, logs, format, name) if logs else None
    cfg = StudyConfig(dataset=dataset or prepared, grid=grid, seeds=seeds, overrides=overrides, results=results,
                      out=out_file, check=check,  # study reads a --check document before it trains anything
                      command=command_line(sys.argv[1:]) if sys.argv[1:2] == ["study"] else "toolkit study")
    with GridView(out) as show, on_interrupt("interrupted: finished runs are kept and the current one is "
                                             "checkpointed; run the same command again to continue"):
        res = run_study(ws, cfg, show)
    print_report(res["report"])
    for path in res["written"]:
        out.print(f"wrote {path}")
    if res["agreements"] is not None and not print_agreement(res["agreements"], check):
        raise typer.Exit(1)


def prepare_logs(ws: Workspace, logs: list[Path], format: str, name: str | None) -> str:
    """Prepare the study's raw logs first, its stages on a spinner; the dataset's name."""
    from toolkit.config import PrepConfig
    from toolkit.prep import prep as run_prep

    with out.status("preparing") as status:
        manifest = run_prep(list(logs), ws, PrepConfig(format=format, name=name), lambda s: status.update(s))
    return manifest.name


def print_agreement(agreements: list, document: Path) -> bool:
    """Per group: how many cells of the document's main table this run reproduces; every miss in full.
    True when nothing disagrees (cells only one side has are listed, not failed)."""
    from toolkit.report.results_doc import agreement_rows, tally

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
