"""``toolkit prep``: raw plays in, a prepared dataset out, and the summary of what it kept."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

import typer
from rich.table import Table

from toolkit import splits
from toolkit.artifacts import Workspace
from toolkit.cli.common import (
    FILTERS, INPUT, OUTPUT, RUNTIME, SESSIONS, SPLIT, command, friendly, out, stage_status, workspace_option,
)
from toolkit.cli.output import print_table
from toolkit.config import SPLIT_MODES, PrepConfig
from toolkit.readers import FORMATS

_PREP = PrepConfig()  # option defaults are the config's own

if TYPE_CHECKING:
    from toolkit.prep import PrepResult


@command("""Examples:

  toolkit prep ~/Downloads/my_spotify_data.zip

  toolkit prep exports/ --format auto --split listener --name spotify

  toolkit prep plays.parquet --format generic --col user=listener --col ts=started_at --col track=isrc""")
@friendly
def prep(
    logs: list[Path] = typer.Argument(..., help="Files, globs, folders or zip archives of raw plays."),
    format: Literal[FORMATS] = typer.Option(_PREP.format, "--format", "-f", rich_help_panel=INPUT,
                                            help="Input format; auto recognises each of the others (docs/formats.md)."),
    col: list[str] = typer.Option(list(_PREP.cols), "--col", metavar="ROLE=COLUMN", rich_help_panel=INPUT, help="Generic format: role=column (roles: user ts track played_ms duration_ms skipped session artist title)."),
    user: Optional[str] = typer.Option(_PREP.user, rich_help_panel=INPUT, help="User id for every play (one listener's export)."),
    session_gap: int = typer.Option(_PREP.session_gap_s, rich_help_panel=SESSIONS, help="Seconds of pause that start a new session (strictly longer)."),
    skip_ms: int = typer.Option(_PREP.skip_ms, rich_help_panel=SESSIONS, help="A play shorter than this many ms is a skip (no explicit flag)."),
    skip_ratio: Optional[float] = typer.Option(_PREP.skip_ratio, rich_help_panel=SESSIONS, help="With track lengths: played/length below this is a skip."),
    collapse_repeats: bool = typer.Option(_PREP.collapse_repeats, rich_help_panel=FILTERS, help="Drop a play of the same track as the play right before it."),
    min_session_len: int = typer.Option(_PREP.min_session_len, rich_help_panel=FILTERS, help="Drop sessions with fewer plays."),
    min_item_plays: int = typer.Option(_PREP.min_item_plays, rich_help_panel=FILTERS, help="Drop tracks with fewer plays in the whole log."),
    keep_podcasts: bool = typer.Option(_PREP.keep_podcasts, rich_help_panel=FILTERS, help="Keep podcast / audiobook rows (extended history)."),
    max_play_ms: Optional[int] = typer.Option(_PREP.max_play_ms, rich_help_panel=FILTERS, help="Drop plays longer than this (e.g. podcasts)."),
    split: Literal[SPLIT_MODES] = typer.Option(_PREP.split, rich_help_panel=SPLIT, help="time: every session cut at the same instants; listener: each listener's own last sessions are valid/test; last: leave-last-out (leaky); auto: listener when a global cut would test listeners without training plays, else time (last for the sequences format, which has no time)."),
    valid_frac: float = typer.Option(_PREP.valid_frac, rich_help_panel=SPLIT, help="Share of sessions for validation."),
    test_frac: float = typer.Option(_PREP.test_frac, rich_help_panel=SPLIT, help="Share of sessions for test."),
    max_len: int = typer.Option(_PREP.max_len, rich_help_panel=SPLIT, help="Width of the sequence arrays; longer sessions become several windows."),
    memory_limit: str = typer.Option(_PREP.memory_limit, rich_help_panel=RUNTIME, help="DuckDB memory limit (spills to disk past it)."),
    memory: str = typer.Option(_PREP.memory, rich_help_panel=RUNTIME, help="Memory for prep's own arrays; a larger log is prepared in buckets of listeners (same result)."),
    name: Optional[str] = typer.Option(_PREP.name, rich_help_panel=OUTPUT, help="Dataset name (default: from the input path)."),
    force: bool = typer.Option(False, "--force", rich_help_panel=OUTPUT, help="Rebuild even when up to date, and replace a dataset of this name prepared from other input or options (its runs become stale)."),
    keep_unpacked: bool = typer.Option(False, "--keep-unpacked", rich_help_panel=OUTPUT, help="Keep the files unpacked from zip archives in the workspace's tmp/ (deleted after a successful prep otherwise; `toolkit clean` deletes them later)."),
    workspace: Optional[Path] = workspace_option(OUTPUT),
) -> None:
    """Turn raw plays into sessions with skip labels, ids, splits and sequence arrays."""
    from toolkit.prep import prep as run_prep

    cfg = PrepConfig(
        format=format, cols=tuple(col), user=user, name=name, session_gap_s=session_gap, skip_ms=skip_ms,
        skip_ratio=skip_ratio, collapse_repeats=collapse_repeats, min_session_len=min_session_len,
        min_item_plays=min_item_plays, keep_podcasts=keep_podcasts, max_play_ms=max_play_ms, split=split,
        valid_frac=valid_frac, test_frac=test_frac, max_len=max_len, memory_limit=memory_limit,
        memory=memory,
    )
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
