"""The workspace's own commands: ``toolkit runs``, ``datasets``, ``clean`` and ``version``, and
``toolkit synth``, which writes a log to prepare."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from toolkit import __version__
from toolkit.artifacts import Workspace, list_datasets
from toolkit.cli.common import INPUT, OUTPUT, command, csv_option, friendly, json_option, out, workspace_option
from toolkit.cli.output import print_listing, print_records, print_table, shown, size_text


@command("""Examples:

  toolkit synth logs.parquet --users 2000 --plays 1000000

  toolkit synth small.parquet --plays 5000 --seed 1""")
@friendly
def synth(
    out_path: Path = typer.Argument(Path("synthetic-logs.parquet"), metavar="OUT", help="Parquet file to write."),
    users: int = typer.Option(200, help="Listeners."),
    plays: int = typer.Option(100_000, help="Plays (rows) in total."),
    tracks: int = typer.Option(5_000, help="Catalogue size."),
    artists: Optional[int] = typer.Option(None, help="Artists (default: one per 10 tracks, at least --genres)."),
    genres: int = typer.Option(12, help="Genres."),
    days: int = typer.Option(180, help="Days the log spans."),
    seed: int = typer.Option(0, help="Random seed; the same seed writes the same file."),
) -> None:
    """Write a realistic synthetic listening log with planted, skip-informative structure."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from toolkit.synth import SynthConfig
    from toolkit.synth import synth as run_synth

    n_artists = artists if artists is not None else max(genres, tracks // 10)
    cfg = SynthConfig(users=users, plays=plays, tracks=tracks, artists=n_artists, genres=genres, days=days, seed=seed)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=out) as bar:
        task = bar.add_task("writing plays", total=plays)
        summary = run_synth(out_path, cfg, progress=lambda n: bar.update(task, completed=n))
    out.print(
        f"wrote {summary.rows:,} plays of {summary.users:,} users over {summary.tracks:,} tracks "
        f"({summary.sessions:,} sessions, {summary.skip_share:.1%} skipped) to {out_path}"
    )


@command("""Examples:

  toolkit runs

  toolkit runs --csv > runs.csv

  toolkit runs --json | jq '.[] | select(.status == "finished") | .id'""")
@friendly
def runs(workspace: Optional[Path] = workspace_option(INPUT), as_json: bool = json_option(),
         as_csv: bool = csv_option()) -> None:
    """List the runs of the workspace with their status and best validation metrics.

    Status: finished, running, interrupted or failed; an unfinished run shows the best of its epochs so far.
    """
    from toolkit.artifacts import list_runs

    ws = Workspace.at(workspace)
    rows = list_runs(ws)
    if print_records(rows, as_json, as_csv):
        return
    if not rows:
        out.print(f"no runs in {ws.root}; run `toolkit train`")
        return
    print_listing(out, f"runs in {ws.root}", ["id", "dataset", "status"],
                  ["epochs", "NDCG@10", "HR@10", "skip HR@10", "wall s"],
                  [[r["id"], shown(r["dataset"]), shown(r["status"]), shown(r["epochs_done"]),
                    shown(r["valid_ndcg10"], "{:.4f}"), shown(r["valid_hr10"], "{:.4f}"),
                    shown(r["valid_skip_hr10"], "{:.4f}"), shown(r["wall_s"], "{:.0f}")] for r in rows])


@command("""Examples:

  toolkit datasets

  toolkit datasets --csv > datasets.csv""")
@friendly
def datasets(workspace: Optional[Path] = workspace_option(INPUT), as_json: bool = json_option(),
             as_csv: bool = csv_option()) -> None:
    """List the prepared datasets of the workspace."""
    ws = Workspace.at(workspace)
    rows = list_datasets(ws, damaged=True)
    if print_records(rows, as_json, as_csv):
        return
    if not rows:
        out.print(f"no datasets in {ws.root}; run `toolkit prep LOGS`")
        return
    print_listing(out, f"datasets in {ws.root}", ["name", "format"],
                  ["plays", "kept", "users", "sessions", "tracks", "skips", "created"],
                  [[r["name"], shown(r["format"]) if r["status"] == "ready" else "damaged: run `toolkit prep` again",
                    shown(r["rows_in"], "{:,}"), shown(r["rows_kept"], "{:,}"), shown(r["users"], "{:,}"),
                    shown(r["sessions"], "{:,}"), shown(r["items"], "{:,}"), shown(r["skip_share"], "{:.1%}"),
                    shown(r["created"])[:10]]
                   for r in rows])


@command("""Examples:

  toolkit clean --dry-run

  toolkit clean --workspace ~/music-workspace""")
@friendly
def clean(
    dry_run: bool = typer.Option(False, "--dry-run", rich_help_panel=OUTPUT, help="List what would be deleted, with sizes; delete nothing."),
    workspace: Optional[Path] = workspace_option(OUTPUT),
) -> None:
    """Delete unpacked archives and what interrupted commands left behind; never a dataset or a run."""
    from toolkit.clean import clean as run_clean

    ws = Workspace.at(workspace)
    done = run_clean(ws, dry_run)
    if done.prep_running:
        out.print("a prep is running in this workspace: its unpacked archives and spill files are left alone",
                  highlight=False)
    if not done.leftovers:
        out.print(f"nothing to clean in {ws.root}", highlight=False, soft_wrap=True)
        return
    table = Table(title=None, show_header=True)
    table.add_column("path", overflow="fold")
    table.add_column("what", overflow="fold")
    table.add_column("size", justify="right")
    for item in done.leftovers:
        table.add_row(Text(str(item.path.relative_to(ws.root))), Text(item.what), size_text(item.bytes))
    print_table(out, table)
    verb = "would free" if dry_run else "freed"
    out.print(f"{len(done.leftovers)} item(s); {verb} {size_text(done.bytes)}"
              + (" (dry run: nothing deleted)" if dry_run else ""), highlight=False)


@command("""Examples:

  toolkit version

  toolkit --version""")
def version() -> None:
    """Print the toolkit version."""
    out.print(__version__)
