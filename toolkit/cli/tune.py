"""``toolkit tune``: a budgeted search for training settings on validation, its trials as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer
from rich.table import Table

from toolkit.artifacts import Workspace
from toolkit.cli.common import INPUT, MODEL, command, friendly, on_interrupt, out, workspace_option
from toolkit.cli.output import print_table
from toolkit.config import NEURAL

SEARCH = "Search"


@command("""Examples:

  toolkit tune --dataset spotify --budget 30m

  toolkit tune --dataset spotify --budget 2h --feedback contrastive --set d_model=64

Each trial is an ordinary run (see `toolkit runs`); the same command again reuses the finished trials and continues an interrupted search. Only validation data is read: score the chosen settings on test with `toolkit report` or `toolkit study`.""")
@friendly
def tune(
    dataset: Optional[str] = typer.Option(None, rich_help_panel=INPUT, help="Prepared dataset (default: the latest)."),
    workspace: Optional[Path] = workspace_option(INPUT),
    model: Literal[tuple(NEURAL)] = typer.Option("sasrec", rich_help_panel=MODEL, help="Neural model whose settings to search."),
    feedback: str = typer.Option("all", rich_help_panel=MODEL, help="What the model learns from skips (as in `toolkit train`)."),
    budget: str = typer.Option("30m", rich_help_panel=SEARCH, help="Training time for all trials together: 30m, 2h, 1h30m, 600s. A trial starts only while the mean trial so far still fits."),
    trials: Optional[int] = typer.Option(None, rich_help_panel=SEARCH, help="At most this many trials (default: as many as the budget allows)."),
    seed: int = typer.Option(0, rich_help_panel=SEARCH, help="Seed of every trial's run and of the search."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", rich_help_panel=SEARCH, help="A training setting for every trial, key=value; a setting given here is not searched."),
) -> None:
    """Search training settings on validation within a time budget (Optuna's TPE), starting from the study's defaults."""
    from toolkit.cli.progress import TrainView
    from toolkit.config import settings
    from toolkit.progress import TrainProgress
    from toolkit.tune import TuneConfig, parse_budget
    from toolkit.tune import tune as run_tune

    ws = Workspace.at(workspace)
    cfg = TuneConfig(dataset=dataset, budget_s=parse_budget(budget), trials=trials, model=model, feedback=feedback,
                     seed=seed, fixed=settings(set_, reserved=("dataset", "model", "feedback", "seed")))
    with TrainView(out, "  ") as view:
        def show(ev):
            if isinstance(ev, TrainProgress):
                view(ev)
            else:
                view.hide()
                out.print(ev, markup=False, highlight=False, soft_wrap=True)
        with on_interrupt("interrupted: finished trials are kept and the current run is checkpointed; run the "
                          "same command again to continue"):
            result = run_tune(ws, cfg, show)
    print_tune(result)


def print_tune(result) -> None:
    """The trials by validation NDCG@10, the count baselines beside them, and the commands to use the best."""
    from toolkit.tune import command_for, show_setting

    best = result.best
    names = list(result.trials[0].params) if result.trials else []
    t = Table(title=f"tune {result.dataset}: {result.model} / {result.feedback}, validation NDCG@10 on "
                    f"{result.valid_sessions:,} validation sessions", title_justify="left")
    for col in ("trial", *names, "valid NDCG@10", "best epoch", "minutes", "run"):
        t.add_column(col, overflow="fold")
    for tr in sorted(result.trials, key=lambda x: (-x.value, x.number)):
        if tr.repeat_of is not None:
            continue
        mark = " (defaults)" if tr.number == 0 else ""
        mark += " best" if tr is best else ""
        epochs = {"pruned": f"{tr.best_epoch + 1} of {tr.epochs_done}, pruned", "failed": "diverged"}.get(
            tr.state, f"{tr.best_epoch + 1} of {tr.epochs_done}")
        t.add_row(f"{tr.number + 1}{mark}", *(show_setting(tr.params[n]) for n in names), f"{tr.value:.4f}",
                  epochs, f"{tr.wall_s / 60:.1f}", tr.run)
    print_table(out, t)
    bar = max(result.baselines.items(), key=lambda kv: kv[1]["value"])
    gain = best.value - result.default.value
    early = sum(t.state != "complete" and t.repeat_of is None for t in result.trials)
    out.print(f"{len(result.trials)} trials ({early} stopped early), {result.spent_s / 60:.1f} of {result.budget_s / 60:.1f} min of training "
              f"({result.stopped}). Best trial {best.number + 1}: valid NDCG@10 {best.value:.4f}, "
              f"{gain:+.4f} over the defaults; best count baseline ({bar[0]}) {bar[1]['value']:.4f} on the same "
              f"sessions.", soft_wrap=True, highlight=False)
    out.print("Validation only, and the best of several trials flatters its winner: compare on test with "
              "`toolkit report` or a study.", soft_wrap=True, highlight=False)
    out.print(f"train it:  {command_for(result, best)}", soft_wrap=True, highlight=False, markup=False)
    out.print(f"study it:  {command_for(result, best, 'study')}", soft_wrap=True, highlight=False, markup=False)
    out.print(f"wrote {result.path}", soft_wrap=True, highlight=False)
