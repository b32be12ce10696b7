"""``toolkit prep``: raw plays in, a prepared dataset out, and the summary of what it kept."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from toolkit import splits
from toolkit.artifacts import Workspace
from toolkit.cli.common import OUTPUT, command, friendly, out, stage_status, workspace_option
from toolkit.cli.output import print_table
from toolkit.config import PrepConfig
from toolkit.settings import with_options

if TYPE_CHECKING:
    from toolkit.prep import PrepResult


@command("""Examples:

  toolkit prep ~/Downloads/my_spotify_data.zip

  toolkit prep exports/ --format auto --split listener --name spotify

  toolkit prep plays.parquet --format generic --col user=listener --col ts=started_at --col track=isrc""")
@friendly
@with_options(PrepConfig, after={})
def prep(
    logs: list[Path] = typer.Argument(..., help="Files, globs, folders or zip archives of raw plays."),
    force: bool = typer.Option(False, "--force", rich_help_panel=OUTPUT, help="Rebuild even when up to date, and replace a dataset of this name prepared from other input or options (its runs become stale)."),
    keep_unpacked: bool = typer.Option(False, "--keep-unpacked", rich_help_panel=OUTPUT, help="Keep the files unpacked from zip archives in the workspace's tmp/ (deleted after a successful prep otherwise; `toolkit clean` deletes them later)."),
    workspace: Optional[Path] = workspace_option(OUTPUT),
    **given,  # every flagged PrepConfig field, as declared there (toolkit/settings.py)
) -> None:
    """Turn raw plays into sessions with skip labels, ids, splits and sequence arrays."""
    from toolkit.prep import prep as run_prep

    cfg = PrepConfig(**given)
    ws = Workspace.at(workspace)
    started = time.perf_counter()
    status, update = stage_status()
    with status:
        prepared = run_prep(list(logs), ws, cfg, update, force=force, keep_unpacked=keep_unpacked)
    from rich.markup import escape

    for note in prepared.notes:
        out.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    print_prep_summary(prepared, ws, time.perf_counter() - started)


def print_prep_summary(prepared: PrepResult, ws: Workspace, seconds: float) -> None:
    from toolkit.report.signals import cold_summary

    m = prepared.manifest
    title = f"dataset [bold]{m.name}[/bold] ({m.format}, {m.files} file(s))"
    if prepared.up_to_date:
        title += " [dim]already prepared from this exact input and options[/dim]"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("rows read", f"{m.rows_in:,}")
    table.add_row("rows kept", f"{m.rows_kept:,}")
    for reason, n in m.rows_dropped.items():
        table.add_row(f"  dropped: {reason}", f"{n:,}")
    table.add_row("users", f"{m.users:,}")
    table.add_row("sessions", f"{m.sessions:,}")
    table.add_row("tracks", f"{m.items:,}")
    table.add_row("skip share", f"{m.skip_share:.1%}")
    table.add_row("skip rule", ", ".join(f"{k}: {v:,}" for k, v in m.skip_rule.plays_by_rule.items()))
    table.add_row("median session length", f"{m.median_session_len:g}")
    for split, s in m.splits.items():
        table.add_row(f"{split}", f"{s.sessions:,} sessions, {s.events:,} plays")
    held_out = sum(s.events for name, s in m.splits.items() if name != "train")
    share = f", {m.cold_events / held_out:.1%}" if held_out else ""
    table.add_row("tracks never in train",
                  f"{m.cold_items:,} ({m.cold_events:,} of {held_out:,} valid/test plays{share})")
    table.add_row("period", f"{m.first_play[:10]} to {m.last_play[:10]}")
    print_table(out, table)
    if m.files_skipped:  # names only; the manifest keeps each file's full path
        out.print(f"{len(m.files_skipped)} file(s) not read: " + "; ".join(
            f"{Path(s['file'].split('!')[-1]).name} ({s['reason']})" for s in m.files_skipped), markup=False)
    out.print(f"split {m.split_reason or m.split_mode}")
    diag = m.split_diagnostics
    if diag:
        for line in splits.lines(diag, splits.users_known(m.users, m.sessions)):
            out.print(f"  {line}")
    cold = cold_summary(diag) if diag else None
    if cold:
        out.print(f"cold targets: {cold}", highlight=False)
    for warning in m.split_warnings or []:
        out.print(f"[yellow]warning:[/yellow] {warning}")
    out.print(f"written to {ws.root / 'datasets' / m.name} in {seconds:.1f} s")
