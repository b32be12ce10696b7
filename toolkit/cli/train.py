"""``toolkit train``: the options of one run, its progress on screen, and a run over several
processes (``--devices``) started under torchrun."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from toolkit.artifacts import Workspace
from toolkit.cli.common import (
    INPUT, LOSS, MODEL, OUTPUT, RUNTIME, SKIPS, TRAINING, command, err, friendly, out, workspace_option,
)
from toolkit.config import (
    CONTEXTS, DEVICES, FEEDBACK_MODES, LOSSES, LR_SCHEDULES, MODELS, SAMPLERS, SKIP_NEGATIVES, TARGETS, TrainConfig,
    settings,
)
from toolkit.resume import resume_config

_TRAIN = TrainConfig()  # option defaults are the config's own


def feedback_modes(value: str) -> str:
    """--feedback: one mode, or several joined with '+', each one of config.FEEDBACK_MODES (which
    combinations make sense TrainConfig decides, with a message saying why)."""
    unknown = [m for m in value.split("+") if m not in FEEDBACK_MODES]
    if unknown:
        raise typer.BadParameter(f"{' and '.join(map(repr, unknown))} is not a feedback mode; choose from "
                                 f"{', '.join(FEEDBACK_MODES)}, or join several with '+'")
    return value


def complete_feedback(incomplete: str) -> list[str]:
    """Shell completion of --feedback: the modes, after any already joined with '+'."""
    done, _, last = incomplete.rpartition("+")
    return [f"{done}+{m}" if done else m for m in FEEDBACK_MODES if m.startswith(last)]


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
def train(
    dataset: Optional[str] = typer.Option(_TRAIN.dataset, rich_help_panel=INPUT, help="Prepared dataset (default: the latest)."),
    resume: Optional[str] = typer.Option(None, rich_help_panel=INPUT, help="Continue an interrupted run by id (its saved config is used)."),
    model: Literal[MODELS] = typer.Option(_TRAIN.model, rich_help_panel=MODEL, help="sasrec, bert4rec, gru4rec (recurrent), pop (most popular), markov (transitions), sknn (session neighbours) or repeat (the session's own plays first)."),
    d_model: int = typer.Option(_TRAIN.d_model, rich_help_panel=MODEL, help="Model width."),
    n_layers: int = typer.Option(_TRAIN.n_layers, rich_help_panel=MODEL, help="Transformer blocks."),
    n_heads: int = typer.Option(_TRAIN.n_heads, rich_help_panel=MODEL, help="Attention heads."),
    dropout: float = typer.Option(_TRAIN.dropout, rich_help_panel=MODEL, help="Dropout."),
    feedback: str = typer.Option(_TRAIN.feedback, rich_help_panel=SKIPS, parser=feedback_modes,
                                 metavar="MODE[+MODE]", autocompletion=complete_feedback,
                                 help=f"What the model learns from skips: {', '.join(FEEDBACK_MODES)}; combine with '+'."),
    alpha: float = typer.Option(_TRAIN.alpha, rich_help_panel=SKIPS, help="Contrastive: weight of the skip InfoNCE term."),
    tau: float = typer.Option(_TRAIN.tau, rich_help_panel=SKIPS, help="Contrastive: temperature."),
    context: Literal[CONTEXTS] = typer.Option(_TRAIN.context, rich_help_panel=SKIPS, help="Contrastive context: input (e_t, the play's embedding) or output (y_i), by cos/tau; "
                                "score (y_i by dot product: the ranking's own scores)."),
    skip_negatives: Literal[SKIP_NEGATIVES] = typer.Option(_TRAIN.skip_negatives, rich_help_panel=SKIPS, help="Contrastive negatives: session (every skipped play of the "
                                       "session, as in the paper) or seen (only skips up to the query's position)."),
    neg_weight: float = typer.Option(_TRAIN.neg_weight, rich_help_panel=SKIPS, help="Negative-target: weight of the unlikelihood term."),
    target: Literal[TARGETS] = typer.Option(_TRAIN.target, rich_help_panel=LOSS, help="Causal target: next-item, next-pos (next non-skipped play) or "
                                "next-kept (the next play where it was kept)."),
    loss: Literal[LOSSES] = typer.Option(_TRAIN.loss, rich_help_panel=LOSS, help="ce (full softmax), sampled (per-row negatives, logQ-corrected), shared (negatives shared by the batch, logQ-corrected), bce, or auto."),
    negatives: int = typer.Option(_TRAIN.negatives, rich_help_panel=LOSS, help="Sampled negatives per row."),
    sampler: Literal[SAMPLERS] = typer.Option(_TRAIN.sampler, rich_help_panel=LOSS, help="Negative sampler: popularity (logQ-corrected) or uniform."),
    epochs: int = typer.Option(_TRAIN.epochs, rich_help_panel=TRAINING, help="Epochs."),
    batch_size: int = typer.Option(_TRAIN.batch_size, rich_help_panel=TRAINING, help="Rows per step."),
    lr: float = typer.Option(_TRAIN.lr, rich_help_panel=TRAINING, help="Peak learning rate (AdamW)."),
    lr_schedule: Literal[LR_SCHEDULES] = typer.Option(_TRAIN.lr_schedule, rich_help_panel=TRAINING, help="After warm-up: constant, or cosine (decays to 0 at the last planned step)."),
    patience: int = typer.Option(_TRAIN.patience, rich_help_panel=TRAINING, help="Early stopping patience in epochs (validation NDCG@10)."),
    max_steps: Optional[int] = typer.Option(_TRAIN.max_steps, rich_help_panel=TRAINING, help="Stop after this many steps (smoke tests)."),
    valid_sessions: int = typer.Option(_TRAIN.valid_sessions, rich_help_panel=TRAINING, help="Validate on this many sessions drawn with the seed (0: all); still full ranking."),
    exclude_played: bool = typer.Option(_TRAIN.exclude_played, "--exclude-played", rich_help_panel=TRAINING, help="Validate without the tracks already played in the session (the ML-1M protocol); pair with report --exclude-played."),
    seed: int = typer.Option(_TRAIN.seed, rich_help_panel=TRAINING, help="Seed for numpy, the numba samplers and torch."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", rich_help_panel=TRAINING, help="Any training setting, key=value (e.g. weight_decay=0.01, warmup_steps=500); overrides the options above."),
    device: Literal[DEVICES] = typer.Option(_TRAIN.device, rich_help_panel=RUNTIME, help="auto takes a CUDA GPU when there is one."),
    amp: bool = typer.Option(_TRAIN.amp, "--amp", rich_help_panel=RUNTIME, help="Mixed precision: bfloat16 autocast in training (for GPUs; validation stays float32)."),
    compile_: bool = typer.Option(_TRAIN.compile, "--compile", rich_help_panel=RUNTIME, help="torch.compile the model (slow first steps; pays off on long GPU runs)."),
    devices: int = typer.Option(1, rich_help_panel=RUNTIME, help="Processes on this machine: N > 1 runs the command under torchrun, one process per GPU (or CPU processes, gloo); same run id and metrics as one process."),
    workspace: Optional[Path] = workspace_option(OUTPUT),
) -> None:
    """Train a recommender on a prepared dataset; interrupted runs resume where they stopped."""
    from toolkit import distributed
    from toolkit.cli.progress import TrainView
    from toolkit.train import train as run_train

    ws = Workspace.at(workspace)
    if resume:
        cfg = resume_config(ws, resume)
    else:
        given = dict(
            dataset=dataset, model=model, feedback=feedback, target=target, loss=loss, negatives=negatives,
            sampler=sampler, alpha=alpha, tau=tau, context=context, skip_negatives=skip_negatives,
            neg_weight=neg_weight, d_model=d_model, n_layers=n_layers, n_heads=n_heads, dropout=dropout,
            epochs=epochs, batch_size=batch_size, lr=lr,
            patience=patience, max_steps=max_steps, valid_sessions=valid_sessions, seed=seed, device=device,
            lr_schedule=lr_schedule, amp=amp, compile=compile_, exclude_played=exclude_played,
        )
        cfg = TrainConfig(**{**given, **settings(set_)})
    if devices != 1:
        raise typer.Exit(_launch(devices, ws, cfg))
    if not distributed.main_process():  # the other ranks of a torchrun train quietly; rank 0 reports
        run_train(ws, cfg)
        return
    with TrainView(out) as show:
        try:
            result = run_train(ws, cfg, show)
        except KeyboardInterrupt as exc:
            err.print(interrupted(exc), soft_wrap=True, highlight=False, markup=False)
            raise typer.Exit(130) from None
    print_trained(result)


def print_trained(result: dict) -> None:
    """The run's id and best validation metrics, and where its files are."""
    v = result["valid"]
    note = " (already trained: reused)" if result.get("reused") else ""
    out.print(f"run [bold]{result['id']}[/bold]{note}: valid NDCG@10 {v['ndcg@10']:.4f}, HR@10 {v['hr@10']:.4f}, "
              f"skip HR@10 {v['skip_hr@10']:.4f} on {v['n_pos']:,} positive / {v['n_skip']:,} skip queries",
              soft_wrap=True)  # whole in a pipe or log, like the progress lines above it
    out.print(f"files in {result['path']}", soft_wrap=True)


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
