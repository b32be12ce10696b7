"""The ``toolkit`` command line: parse options, build the config, call the stage, print.

No logic lives here.  Every command runs inside one error boundary (``friendly``): an expected
failure becomes one red line on stderr naming the file or option and the fix, exit status 1;
anything else is a bug, reported on one line too.  TOOLKIT_DEBUG=1 adds the traceback.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import pickle
import re
import sys
import time
import traceback
import zipfile
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from toolkit import __version__, splits
from toolkit.artifacts import Workspace, list_datasets
from toolkit.config import PrepConfig
from toolkit.errors import ToolkitError

app = typer.Typer(
    help="Sequential music recommendation that learns from skips.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

WorkspaceOpt = typer.Option(None, "--workspace", "-w", envvar="TOOLKIT_WORKSPACE",
                            help="Workspace folder (default: ./toolkit-workspace).")


DEBUG_ENV = "TOOLKIT_DEBUG"  # set to 1: every error also prints its traceback
# what typer handles itself: exits, aborts and usage errors (ClickException; typer's own class or click's)
_PASSED_ON = (typer.Exit, typer.Abort, *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"))


def friendly(fn):
    """The one error boundary of every command: an expected failure (a ToolkitError, a full,
    read-only or forbidden disk, a missing GPU, a locked catalog, a damaged file) becomes one red
    line naming the file or option and the fix; anything else one line saying it is a bug.  Exit
    status 1 (a ToolkitError's ``exit_code``); click's own usage errors keep status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _PASSED_ON:
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing leaves as a traceback
            if debugging():
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            message, code = explain(exc) or (
                f"this is a bug in the toolkit: {type(exc).__name__}: {_first_line(exc)} "
                f"(rerun with {DEBUG_ENV}=1 for the traceback and include it in a bug report)", 1)
            err.print(f"[red]error:[/red] {escape(one_line(message))}", soft_wrap=True, highlight=False, markup=True)
            raise typer.Exit(code) from None

    return wrapper


def one_line(message: str) -> str:
    """The message with every control character (a newline inside a file or column name, say) written
    as its escape, so an error is always exactly one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def interrupted(exc: KeyboardInterrupt) -> str:
    """The Ctrl-C line of ``toolkit train``: the run it stopped (errors.RunInterrupted) and how to go on."""
    run_id = getattr(exc, "run_id", None)
    if run_id is None:
        return "interrupted before training started; nothing to continue: rerun the same command to start"
    return (f"interrupted: run {run_id} keeps its last checkpoint; rerun the same command (or "
            f"`toolkit train --resume {run_id}`) to continue it")


_WORKSPACE_FIX = "or point --workspace (TOOLKIT_WORKSPACE) at another folder"
_DISK = {
    errno.ENOSPC: f"no space left on the disk: free space, {_WORKSPACE_FIX}",
    errno.EDQUOT: f"disk quota exceeded: free space, {_WORKSPACE_FIX}",
    errno.EROFS: f"the file system is read-only: {_WORKSPACE_FIX.removeprefix('or ')} that is writable",
    errno.EACCES: f"permission denied: fix the permissions, {_WORKSPACE_FIX}",
    errno.EPERM: f"operation not permitted: fix the permissions, {_WORKSPACE_FIX}",
    errno.ENOENT: "no such file or folder: check the path",
}
_GPU_MISSING = ("Torch not compiled with CUDA", "no NVIDIA driver", "no CUDA-capable device",
                "CUDA driver version is insufficient", "CUDA-capable device(s) is/are busy or unavailable")
# exceptions that, raised while a file is read, mean the file is damaged or not what it claims
_DAMAGED = (json.JSONDecodeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, UnicodeDecodeError)
_READERS = {"read_json", "read_array", "read_manifest", "read_metrics", "load_torch", "load_split"}


def explain(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit status) for an expected failure; None for a bug."""
    if isinstance(exc, ToolkitError):
        return str(exc), exc.exit_code
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
        where = _quoted_path(str(exc)) or "the workspace catalog"
        pid = re.search(r"\(PID (\d+)\)", str(exc))
        by = f" by process {pid.group(1)}" if pid else " by another process"
        return (f"{where}: locked{by} (another toolkit command on this workspace); wait for it to finish, "
                f"{_WORKSPACE_FIX}"), 1
    if duckdb is not None and isinstance(exc, duckdb.OutOfMemoryException):
        return (f"DuckDB ran out of memory ({_first_line(exc)}): raise `toolkit prep --memory-limit` "
                "(e.g. 4GB) or close other programs"), 1
    if isinstance(exc, OSError) and exc.errno in _DISK:
        return f"{_path_of(exc) or 'a workspace file'}: {_DISK[exc.errno]}", 1
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch.cuda, "OutOfMemoryError", ())):
        return ("the GPU ran out of memory: lower --batch-size (or --negatives, --d-model), "
                "or train with --device cpu"), 1
    if torch is not None and isinstance(exc, (RuntimeError, AssertionError)) and any(
            s in str(exc) for s in _GPU_MISSING):
        return (f"--device cuda: no usable CUDA GPU here ({_first_line(exc)}); use --device cpu, "
                "or --device auto to take a GPU only when one is present"), 1
    damaged = _damaged(exc)
    if damaged:
        return damaged, 1
    if isinstance(exc, OSError) and exc.errno is not None:  # the disk or system, not the code
        return f"{_path_of(exc) or 'a file'}: {exc.strerror or _first_line(exc)}", 1
    return None


def _damaged(exc: BaseException) -> str | None:
    """The line for a damaged or truncated file being read, when the failure is one and names a file."""
    duckdb = sys.modules.get("duckdb")
    library = type(exc).__module__.split(".")[0]
    reading = (isinstance(exc, _DAMAGED) or library in ("pyarrow", "polars")
               or (duckdb is not None and isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException)))
               or (isinstance(exc, (ValueError, RuntimeError)) and _raised_reading(exc)))
    path = _path_of(exc) if reading else None
    if path is None:
        return None
    parts = Path(path).parts
    if "runs" in parts:
        fix = "delete the run's folder and train it again (`toolkit train`), or pick another run"
    elif "datasets" in parts:
        fix = "run `toolkit prep` again for this dataset (it rewrites every file)"
    else:
        fix = "check the file (export or download it again)"
    why = _first_line(exc).split(". ")[0]  # torch's unpickling message goes on for a paragraph
    return f"{path}: cannot be read, the file is damaged or truncated ({type(exc).__name__}: {why}); {fix}"


def _raised_reading(exc: BaseException) -> bool:
    """Whether a numpy / torch file reader, or one of the toolkit's artifact readers, raised ``exc``."""
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        file = frame.f_code.co_filename.replace("\\", "/")
        name = file.rsplit("/", 1)[-1]
        if frame.f_code.co_name in _READERS or file.endswith("torch/serialization.py") or (
                "/numpy/" in file and any(k in name for k in ("format", "npyio", "memmap"))):
            return True
    return False


def _path_of(exc: BaseException) -> str | None:
    """The file a failure is about: the exception's own, one quoted in its message, else the path the
    innermost toolkit function (below the command itself) was working on."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
    quoted = _quoted_path(str(exc))
    if quoted:
        return quoted
    package = Path(__file__).resolve().parent
    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    for frame in reversed(frames):
        file = Path(frame.f_code.co_filename)
        if file.parent != package or file.name in ("cli.py", "cli_report.py"):
            continue
        values = dict(frame.f_locals)
        for name in ("path", "target", "tmp", "file", "cache"):
            if isinstance(values.get(name), Path):
                return str(values[name])
        for value in values.values():
            if isinstance(value, Path):
                return str(value)
            if isinstance(getattr(value, "path", None), Path):  # a DatasetDir or RunDir
                return str(value.path)
    return None


def _quoted_path(text: str) -> str | None:
    m = re.search(r"[\"']([^\"']+\.(?:duckdb|parquet|npy|npz|json|jsonl|pt|csv|zip|tsv|txt|wal))[\"']", text)
    return m.group(1) if m else None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else "(no message)"
    return text if len(text) <= 300 else text[:297] + "..."


def _stage_status():
    """A spinner that shows the current stage and its elapsed time."""
    status = out.status("starting")
    started = time.perf_counter()

    def update(stage: str) -> None:
        status.update(f"{stage} [dim]({time.perf_counter() - started:.0f} s)[/dim]")

    return status, update


@app.command()
@friendly
def prep(
    logs: list[Path] = typer.Argument(..., help="Files, globs, folders or zip archives of raw plays."),
    format: str = typer.Option("auto", "--format", "-f", help="auto, generic, spotify, spotify-extended, mssd, lastfm, piki, sequences."),
    col: list[str] = typer.Option([], "--col", help="Generic format: role=column (roles: user ts track played_ms duration_ms skipped session artist title)."),
    user: Optional[str] = typer.Option(None, help="User id for every play (one listener's export)."),
    name: Optional[str] = typer.Option(None, help="Dataset name (default: from the input path)."),
    session_gap: int = typer.Option(1800, help="Seconds of pause that start a new session (strictly longer)."),
    skip_ms: int = typer.Option(30_000, help="A play shorter than this many ms is a skip (no explicit flag)."),
    skip_ratio: Optional[float] = typer.Option(None, help="With track lengths: played/length below this is a skip."),
    collapse_repeats: bool = typer.Option(False, help="Drop a play of the same track as the play right before it."),
    min_session_len: int = typer.Option(2, help="Drop sessions with fewer plays."),
    min_item_plays: int = typer.Option(1, help="Drop tracks with fewer plays in the whole log."),
    keep_podcasts: bool = typer.Option(False, help="Keep podcast / audiobook rows (extended history)."),
    max_play_ms: Optional[int] = typer.Option(None, help="Drop plays longer than this (e.g. podcasts)."),
    split: str = typer.Option("auto", help="'time' (every session cut at the same instants), 'listener' (each listener's own last sessions are valid/test), 'last' (leave-last-out, leaky), 'auto' (listener when a global cut would test listeners without training plays, else time; last for the sequences format, which has no time)."),
    valid_frac: float = typer.Option(0.1, help="Share of sessions for validation."),
    test_frac: float = typer.Option(0.1, help="Share of sessions for test."),
    max_len: int = typer.Option(20, help="Width of the sequence arrays; longer sessions become several windows."),
    memory_limit: str = typer.Option("1GB", help="DuckDB memory limit (spills to disk past it)."),
    memory: str = typer.Option("1.5GB", help="Memory for prep's own arrays; a larger log is prepared in buckets of listeners (same result)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when up to date, and replace a dataset of this name prepared from other input or options (its runs become stale)."),
    workspace: Optional[Path] = WorkspaceOpt,
) -> None:
    """Turn raw plays into sessions with skip labels, ids, splits and sequence arrays.

    Example: toolkit prep ~/Downloads/my_spotify_data.zip --format auto
    """
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
    status, update = _stage_status()
    with status:
        manifest = run_prep(list(logs), ws, cfg, update, force=force)
    from rich.markup import escape

    for note in manifest.get("notes", []):
        out.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    _print_prep_summary(manifest, ws, time.perf_counter() - started)


def _print_prep_summary(m: dict, ws: Workspace, seconds: float) -> None:
    title = f"dataset [bold]{m['name']}[/bold] ({m['format']}, {m['files']} file(s))"
    if m.get("up_to_date"):
        title += " [dim]already prepared from this exact input and options[/dim]"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("rows read", f"{m['rows_in']:,}")
    table.add_row("rows kept", f"{m['rows_kept']:,}")
    for reason, n in m["rows_dropped"].items():
        table.add_row(f"  dropped: {reason}", f"{n:,}")
    table.add_row("users", f"{m['users']:,}")
    table.add_row("sessions", f"{m['sessions']:,}")
    table.add_row("tracks", f"{m['items']:,}")
    table.add_row("skip share", f"{m['skip_share']:.1%}")
    table.add_row("skip rule", ", ".join(f"{k}: {v:,}" for k, v in m["skip_rule"]["plays_by_rule"].items()))
    table.add_row("median session length", f"{m['median_session_len']:g}")
    for split, s in m["splits"].items():
        table.add_row(f"{split}", f"{s['sessions']:,} sessions, {s['events']:,} plays")
    table.add_row("tracks never in train", f"{m['cold_items']:,} ({m['cold_events']:,} valid/test plays)")
    table.add_row("period", f"{m['first_play'][:10]} to {m['last_play'][:10]}")
    out.print(table)
    if m.get("files_skipped"):  # names only; the manifest keeps each file's full path
        out.print(f"{len(m['files_skipped'])} file(s) not read: " + "; ".join(
            f"{Path(s['file'].split('!')[-1]).name} ({s['reason']})" for s in m["files_skipped"]), markup=False)
    out.print(f"split {m.get('split_reason', m['split_mode'])}")
    diag = m.get("split_diagnostics")
    if diag:
        for line in splits.lines(diag, splits.users_known(m["users"], m["sessions"])):
            out.print(f"  {line}")
    for warning in m.get("split_warnings", []):
        out.print(f"[yellow]warning:[/yellow] {warning}")
    out.print(f"written to {ws.root / 'datasets' / m['name']} in {seconds:.1f} s")


@app.command()
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
    """Write a realistic synthetic listening log with planted, skip-informative structure.

    Example: toolkit synth logs.parquet --users 2000 --plays 1000000
    """
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
        f"wrote {summary['rows']:,} plays of {summary['users']:,} users over {summary['tracks']:,} tracks "
        f"({summary['sessions']:,} sessions, {summary['skip_share']:.1%} skipped) to {out_path}"
    )


@app.command()
@friendly
def demo(
    plays: int = typer.Option(200_000, help="Plays in the synthetic log."),
    users: int = typer.Option(300, help="Listeners in the synthetic log."),
    epochs: int = typer.Option(4, help="Epochs for each SASRec model (0: prepare only)."),
    seed: int = typer.Option(0, help="Random seed."),
    workspace: Optional[Path] = WorkspaceOpt,
) -> None:
    """Run the whole pipeline on a built-in synthetic log (nothing to download): write the log,
    prepare it, train the baselines and small SASRec models with and without skips, and report them
    on the test split (HTML report in the workspace's demo/ folder).

    Example: toolkit demo --plays 200000
    """
    from toolkit.config import TrainConfig
    from toolkit.prep import prep as run_prep
    from toolkit.train import train as run_train
    from toolkit.synth import SynthConfig
    from toolkit.synth import synth as run_synth

    ws = Workspace.at(workspace)
    logs = ws.root / "demo" / f"synthetic-{plays}-{users}-{seed}.parquet"
    logs.parent.mkdir(parents=True, exist_ok=True)
    if not logs.exists():
        with out.status("writing a synthetic listening log"):
            s = run_synth(logs, SynthConfig(users=users, plays=plays, tracks=5_000, artists=500, seed=seed))
        out.print(f"synthetic log: {s['rows']:,} plays, {s['users']:,} users, {s['skip_share']:.1%} skipped -> {logs}")
    started = time.perf_counter()
    status, update = _stage_status()
    with status:
        manifest = run_prep([logs], ws, PrepConfig(name="demo"), update)
    _print_prep_summary(manifest, ws, time.perf_counter() - started)
    if epochs < 1:
        return
    small = dict(dataset="demo", d_model=32, n_layers=1, epochs=epochs, lr=3e-3, patience=epochs, seed=seed)
    grid = [("pop", "all", {}), ("markov", "all", {}), ("sasrec", "all", small),
            ("sasrec", "positives-only", small), ("sasrec", "contrastive", {**small, "alpha": 0.1, "context": "input"})]
    ids = []
    for model, feedback, extra in grid:
        with out.status(f"training {model} / {feedback}"):
            cfg = TrainConfig(model=model, feedback=feedback, **({"dataset": "demo", "seed": seed} | extra))
            ids.append(run_train(ws, cfg)["id"])
    from toolkit.cli_report import print_report
    from toolkit.render import write_report
    from toolkit.report import Protocol, build_report

    with out.status("scoring the test split"):
        rep = build_report(ws, ids, Protocol(bootstrap=500), "demo")
    print_report(rep)
    for path in write_report(rep, ws.root / "demo" / "report.html"):
        out.print(f"wrote {path}")
    out.print("skip_hr@10: how often the skipped next track reaches the top 10 (lower is better). "
              "One seed on synthetic data: a demonstration, not a result; `toolkit study` runs seeds.")


@app.command()
@friendly
def train(
    dataset: Optional[str] = typer.Option(None, help="Prepared dataset (default: the latest)."),
    model: str = typer.Option("sasrec", help="sasrec, bert4rec, gru4rec (recurrent), pop (most popular), markov (transitions), sknn (session neighbours) or repeat (the session's own plays first)."),
    feedback: str = typer.Option("all", help="all, positives-only, contrastive, feedback-input, negative-target; combine with '+'."),
    target: str = typer.Option("next-item", help="Causal target: next-item, next-pos (next non-skipped play) or "
                                "next-kept (the next play where it was kept)."),
    loss: str = typer.Option("auto", help="ce (full softmax), sampled (per-row negatives, logQ-corrected), shared (negatives shared by the batch, logQ-corrected), bce, or auto."),
    negatives: int = typer.Option(512, help="Sampled negatives per row."),
    sampler: str = typer.Option("popularity", help="Negative sampler: popularity (logQ-corrected) or uniform."),
    alpha: float = typer.Option(0.1, help="Contrastive: weight of the skip InfoNCE term."),
    tau: float = typer.Option(0.1, help="Contrastive: temperature."),
    context: str = typer.Option("input", help="Contrastive context: input (e_t, the play's embedding) or output (y_i), by cos/tau; "
                                "score (y_i by dot product: the ranking's own scores)."),
    skip_negatives: str = typer.Option("session", help="Contrastive negatives: session (every skipped play of the "
                                       "session, as in the paper) or seen (only skips up to the query's position)."),
    neg_weight: float = typer.Option(0.5, help="Negative-target: weight of the unlikelihood term."),
    d_model: int = typer.Option(64, help="Model width."),
    n_layers: int = typer.Option(2, help="Transformer blocks."),
    n_heads: int = typer.Option(2, help="Attention heads."),
    dropout: float = typer.Option(0.2, help="Dropout."),
    epochs: int = typer.Option(10, help="Epochs."),
    batch_size: int = typer.Option(128, help="Rows per step."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (AdamW)."),
    lr_schedule: str = typer.Option("constant", help="After warm-up: constant, or cosine (decays to 0 at the last planned step)."),
    patience: int = typer.Option(3, help="Early stopping patience in epochs (validation NDCG@10)."),
    max_steps: Optional[int] = typer.Option(None, help="Stop after this many steps (smoke tests)."),
    valid_sessions: int = typer.Option(0, help="Validate on this many sessions drawn with the seed (0: all); still full ranking."),
    seed: int = typer.Option(0, help="Seed for numpy, the numba samplers and torch."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision: bfloat16 autocast in training (for GPUs; validation stays float32)."),
    exclude_played: bool = typer.Option(False, "--exclude-played", help="Validate without the tracks already played in the session (the ML-1M protocol); pair with report --exclude-played."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model (slow first steps; pays off on long GPU runs)."),
    set_: list[str] = typer.Option([], "--set", help="Any training setting, key=value (e.g. weight_decay=0.01, warmup_steps=500); overrides the options above."),
    resume: Optional[str] = typer.Option(None, help="Continue an interrupted run by id (its saved config is used)."),
    workspace: Optional[Path] = WorkspaceOpt,
) -> None:
    """Train a recommender on a prepared dataset; interrupted runs resume where they stopped.

    Example: toolkit train --model sasrec --feedback contrastive --seed 3
    """
    from dataclasses import fields

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from toolkit.artifacts import read_json, run_dir
    from toolkit.config import TrainConfig, settings
    from toolkit.errors import ArtifactMissingError
    from toolkit.train import train as run_train

    ws = Workspace.at(workspace)
    if resume:
        rd = run_dir(ws, resume)
        if not rd.config.exists():
            raise ArtifactMissingError(f"run {resume}: not in {ws.root / 'runs'}; `toolkit runs` lists the runs")
        saved = read_json(rd.config)["train"]
        cfg = TrainConfig(**{f.name: saved[f.name] for f in fields(TrainConfig) if f.name in saved})
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
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=out) as bar:
        task = bar.add_task("training", total=None, info="")

        def show(ev: dict) -> None:
            if ev["event"] == "step":
                bar.update(task, description=f"epoch {ev['epoch'] + 1}", total=ev["batches"], completed=ev["batch"],
                           info=f"loss {ev['loss']:.3f}  {ev['rows_per_s']:.0f} rows/s")
            elif ev["event"] == "epoch":
                bar.console.print(f"epoch {ev['epoch'] + 1}: valid NDCG@10 {ev['valid_ndcg@10']:.4f}  "
                                  f"HR@10 {ev['valid_hr@10']:.4f}  skip HR@10 {ev['valid_skip_hr@10']:.4f}  "
                                  f"({ev['seconds']:.1f} s, {ev['rows_per_s']:.0f} rows/s)")
            elif ev["event"] == "resumed":
                bar.console.print(f"resuming at epoch {ev['epoch'] + 1}, step {ev['step']}")

        try:
            result = run_train(ws, cfg, show)
        except KeyboardInterrupt as exc:
            err.print(interrupted(exc), soft_wrap=True, highlight=False, markup=False)
            raise typer.Exit(130) from None
    v = result["valid"]
    note = " (already trained: reused)" if result.get("reused") else ""
    out.print(f"run [bold]{result['id']}[/bold]{note}: valid NDCG@10 {v['ndcg@10']:.4f}, HR@10 {v['hr@10']:.4f}, "
              f"skip HR@10 {v['skip_hr@10']:.4f} on {v['n_pos']:,} positive / {v['n_skip']:,} skip queries")
    out.print(f"files in {result['path']}")


@app.command()
@friendly
def runs(workspace: Optional[Path] = WorkspaceOpt) -> None:
    """List the runs of the workspace with their status (finished, running, interrupted) and best
    validation metrics (of the epochs so far, for an unfinished run).

    Example: toolkit runs
    """
    from toolkit.artifacts import list_runs

    ws = Workspace.at(workspace)
    rows = list_runs(ws)
    if not rows:
        out.print(f"no runs in {ws.root}; run `toolkit train`")
        return
    _print_listing(f"runs in {ws.root}", ["id", "dataset", "status"],
                   ["epochs", "NDCG@10", "HR@10", "skip HR@10", "wall s"],
                   [[r["id"], _shown(r["dataset"]), _shown(r["status"]), _shown(r["epochs_done"]),
                     _shown(r["valid_ndcg10"], "{:.4f}"), _shown(r["valid_hr10"], "{:.4f}"),
                     _shown(r["valid_skip_hr10"], "{:.4f}"), _shown(r["wall_s"], "{:.0f}")] for r in rows])


@app.command()
@friendly
def datasets(workspace: Optional[Path] = WorkspaceOpt) -> None:
    """List the prepared datasets of the workspace.

    Example: toolkit datasets
    """
    ws = Workspace.at(workspace)
    rows = list_datasets(ws, damaged=True)
    if not rows:
        out.print(f"no datasets in {ws.root}; run `toolkit prep LOGS`")
        return
    _print_listing(f"datasets in {ws.root}", ["name", "format"],
                   ["plays", "kept", "users", "sessions", "tracks", "skips", "created"],
                   [[r["name"], _shown(r["format"]) if r["status"] == "ready" else "damaged: run `toolkit prep` again",
                     _shown(r["rows_in"], "{:,}"), _shown(r["rows_kept"], "{:,}"), _shown(r["users"], "{:,}"),
                     _shown(r["sessions"], "{:,}"), _shown(r["items"], "{:,}"), _shown(r["skip_share"], "{:.1%}"),
                     _shown(r["created"])[:10]]
                    for r in rows])


def _shown(value, fmt: str = "{}") -> str:
    """A listing cell: '-' for a value a damaged or unfinished artifact does not have."""
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def _print_listing(title: str, text_cols: list[str], number_cols: list[str], rows: list[list[str]]) -> None:
    """A rich table whose first column never wraps (it holds ids) and whose numbers align right."""
    table = Table(title=title)
    for i, col in enumerate(text_cols):
        table.add_column(col, no_wrap=i == 0)
    for col in number_cols:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    out.print(table)


@app.command()
def version() -> None:
    """Print the toolkit version.

    Example: toolkit version
    """
    out.print(__version__)


# report and recommend live beside this module; importing it registers them on ``app``
from toolkit import cli_report  # noqa: E402, F401
