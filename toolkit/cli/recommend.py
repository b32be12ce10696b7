"""``toolkit recommend``: the next tracks for session prefixes, from a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from toolkit.artifacts import Workspace
from toolkit.cli.common import INPUT, OUTPUT, RUNTIME, command, friendly, out, workspace_option
from toolkit.config import DEVICES

RECOMMEND_DEVICES = tuple(d for d in DEVICES if d != "auto")  # recommend scores where it is told


@command("""Examples:

  toolkit recommend --run sasrec-all-s0-1a2b3c4d --sessions sessions.parquet -k 20 --out recs.parquet

  toolkit recommend --run sasrec-all-s0-1a2b3c4d --artist 'Nina Simone' --title 'Sinnerman'""")
@friendly
def recommend(
    run: str = typer.Option(..., "--run", rich_help_panel=INPUT, help="Run id (see `toolkit runs`)."),
    sessions: Optional[Path] = typer.Option(None, "--sessions", rich_help_panel=INPUT, help="Parquet of session plays: session, track_key or item_id, optional skipped, position."),
    artist: list[str] = typer.Option([], "--artist", rich_help_panel=INPUT, help="Instead of --sessions: the artist of a play of one session (case-insensitive; repeat with --title per play)."),
    title: list[str] = typer.Option([], "--title", rich_help_panel=INPUT, help="The title of that play (one --title per --artist)."),
    listener: Optional[str] = typer.Option(None, "--listener", rich_help_panel=INPUT, help="Whose earlier plays the sessions follow (a user_id of the dataset; `toolkit datasets` counts them), for runs that read them; default: the dataset's only listener, else a 'listener' column of the sessions file."),
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
                        list(zip(artist, title)), listener)
    out.print(f"{res['recommended']:,} sessions → {res['rows']:,} rows in {res['out']} (run {res['run']})")
    if "listeners" in res:
        out.print(past_line(res), highlight=False)
    for p in res["preview"]:
        out.print(f"session {escape(str(p['session']))}:", highlight=False)
        for rank, name, score in p["tracks"]:
            out.print(f"  {rank:>2}. {escape(name)}  [dim](score {score:.3f})[/dim]", highlight=False)
    if res["unknown_plays"] or res["empty_sessions"]:
        out.print(f"[yellow]{res['unknown_plays']:,} of {res['plays']:,} plays are tracks outside the catalogue and "
                  f"were left out; {res['empty_sessions']:,} sessions had no known track and got no "
                  "recommendations[/yellow]")


def past_line(res: dict) -> str:
    """What the run read of the listeners' earlier plays, for a run that reads them."""
    read = ", ".join(f"{name} ({plays:,} plays)" for name, plays in list(res["listeners"].items())[:3])
    more = len(res["listeners"]) - 3
    line = f"read the earlier plays of {read}{f' and {more:,} more listeners' if more > 0 else ''}" if read else ""
    if res["without_listener"]:
        alone = (f"{res['without_listener']:,} sessions had no listener and read their own plays only; "
                 "name one with --listener or a 'listener' column to use their earlier plays")
        line = f"{line}; {alone}" if line else alone
    return line
