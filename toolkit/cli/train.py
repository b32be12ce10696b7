"""``toolkit train``: the options of one run, its progress on screen, and a run over several
processes (``--devices``) started under torchrun."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from toolkit.artifacts import Workspace
from toolkit.cli.common import INPUT, OUTPUT, RUNTIME, TRAINING, command, friendly, on_interrupt, out, workspace_option
from toolkit.config import TrainConfig, settings
from toolkit.resume import resume_config
from toolkit.settings import with_options


def interrupted(exc: KeyboardInterrupt) -> str:
    """The Ctrl-C line of ``toolkit train``: the run it stopped (errors.RunInterrupted) and how to go on."""
    run_id = getattr(exc, "run_id", None)
    if run_id is None:
        return "interrupted before training started; nothing to continue: rerun the same command to start"
    return (f"interrupted: run {run_id} keeps its last checkpoint; rerun the same command (or "
            f"`toolkit train --resume {run_id}`) to continue it")


@command("""Examples:

  toolkit train --model sasrec --feedback contrastive --seed 3

  toolkit train --model pop

  toolkit train --feedback positives-only+contrastive --set weight_decay=0.01

  toolkit train --resume sasrec-all-s0-1a2b3c4d""")
@friendly
@with_options(TrainConfig, after={"resume": "dataset", "set_": "seed", "devices": "compile"})
def train(
    resume: Optional[str] = typer.Option(None, rich_help_panel=INPUT, help="Continue an interrupted run by id (its saved config is used)."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", rich_help_panel=TRAINING, help="Any training setting, key=value (e.g. weight_decay=0.01, warmup_steps=500); overrides the options above."),
    devices: int = typer.Option(1, rich_help_panel=RUNTIME, help="Processes on this machine: N > 1 runs the command under torchrun, one process per GPU (or CPU processes, gloo); same run id and metrics as one process."),
    workspace: Optional[Path] = workspace_option(OUTPUT),
    **given,  # every flagged TrainConfig field, as declared there (toolkit/settings.py)
) -> None:
    """Train a recommender on a prepared dataset; interrupted runs resume where they stopped."""
    from toolkit import distributed
    from toolkit.cli.progress import TrainView
    from toolkit.train import train as run_train

    ws = Workspace.at(workspace)
    if resume:
        cfg = resume_config(ws, resume)
    else:
        cfg = TrainConfig(**{**given, **settings(set_)})
    if devices != 1:
        raise typer.Exit(_launch(devices, ws, cfg))
    if not distributed.main_process():  # the other ranks of a torchrun train quietly; rank 0 reports
        run_train(ws, cfg)
        return
    with TrainView(out) as show, on_interrupt(interrupted):
        result = run_train(ws, cfg, show)
    print_trained(result)


def print_trained(result) -> None:
    """The run's id and best validation metrics, and where its files are."""
    v = result.valid
    note = " (already trained: reused)" if result.reused else ""
    out.print(f"run [bold]{result.id}[/bold]{note}: valid NDCG@10 {v['ndcg@10']:.4f}, HR@10 {v['hr@10']:.4f}, "
              f"skip HR@10 {v['skip_hr@10']:.4f} on {v['n_pos']:,} positive / {v['n_skip']:,} skip queries",
              soft_wrap=True)  # whole in a pipe or log, like the progress lines above it
    out.print(f"files in {result.path}", soft_wrap=True)


def _launch(devices: int, ws: Workspace, cfg) -> int:
    """``toolkit train`` again as ``devices`` processes under torchrun; the config travels as
    ``--set`` items, so every process trains exactly ``cfg`` (and names it with the same run id)."""
    from dataclasses import asdict

    from toolkit import distributed
    from toolkit.errors import ConfigError

    if devices < 1:
        raise ConfigError(f"--devices {devices}: use 1 (this process) or the number of processes to start")
    if distributed.launched():
        raise ConfigError("--devices: this command already runs under torchrun, which chose the processes; "
                          "drop --devices")
    args = ["train", "--workspace", str(ws.root)]
    for key, value in asdict(cfg).items():
        if key == "dataset":
            args += ["--dataset", value] if value is not None else []
        else:
            args += ["--set", f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}"]
    return distributed.relaunch(devices, args)
