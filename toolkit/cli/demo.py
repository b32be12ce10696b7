"""``toolkit demo``: the whole pipeline on a synthetic log, shown step by step."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from toolkit.artifacts import Workspace
from toolkit.cli.common import OUTPUT, command, friendly, out, stage_status, workspace_option
from toolkit.cli.prep import print_prep_summary
from toolkit.cli.progress import GridView
from toolkit.cli.report import print_report
from toolkit.demo import LogWritten, Prepared, Stage
from toolkit.progress import GridProgress, TrainProgress


@command("""Examples:

  toolkit demo

  toolkit demo --plays 20000 --epochs 1""")
@friendly
def demo(
    plays: int = typer.Option(200_000, help="Plays in the synthetic log."),
    users: int = typer.Option(300, help="Listeners in the synthetic log."),
    epochs: int = typer.Option(4, help="Epochs for each SASRec model (0: prepare only)."),
    seed: int = typer.Option(0, help="Random seed."),
    workspace: Optional[Path] = workspace_option(OUTPUT),
) -> None:
    """Run the whole pipeline on a built-in synthetic log (nothing to download).

    Writes the log, prepares it, trains the baselines and small SASRec models with and without skips,
    and reports them on the test split (HTML report in the workspace's demo/ folder).
    """
    from toolkit.demo import DemoConfig
    from toolkit.demo import demo as run_demo

    ws = Workspace.at(workspace)
    with DemoView(out, ws) as show:
        res = run_demo(ws, DemoConfig(plays=plays, users=users, epochs=epochs, seed=seed), show)
    if res.report is None:
        return
    print_report(res.report)
    for path in res.written:
        out.print(f"wrote {path}")
    out.print("skip_hr@10: how often the skipped next track reaches the top 10 (lower is better). "
              "One seed on synthetic data: a demonstration, not a result; `toolkit study` runs seeds.")


class DemoView:
    """Shows the demo's steps one after the other: a spinner for a step without progress of its own
    (a prep's stages with their elapsed time), the log's and the dataset's summaries as they come, and
    the grid of runs (``GridView``).  One live display at a time, as rich requires."""

    def __init__(self, console: Console, ws: Workspace) -> None:
        self.console, self.ws = console, ws
        self.live = None  # the spinner (rich Status) or the GridView shown now
        self.update = None  # moves the spinner to a prep stage

    def __enter__(self) -> DemoView:
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = self.update = None

    def __call__(self, ev) -> None:
        if isinstance(ev, (GridProgress, TrainProgress)):
            if not isinstance(self.live, GridView):
                self._stop()
                self.live = GridView(self.console).__enter__()
            self.live(ev)
        elif isinstance(ev, Stage):
            self._stop()
            self.live, self.update = stage_status(ev.text, self.console)
            self.live.__enter__()
        elif isinstance(ev, str):
            if self.update is not None:
                self.update(ev)
        elif isinstance(ev, LogWritten):
            self._stop()
            s = ev.summary
            self.console.print(f"synthetic log: {s.rows:,} plays, {s.users:,} users, "
                               f"{s.skip_share:.1%} skipped -> {ev.path}")
        elif isinstance(ev, Prepared):
            self._stop()
            print_prep_summary(ev.prepared, self.ws, ev.seconds)
