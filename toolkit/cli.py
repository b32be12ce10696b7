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
from typing import TYPE_CHECKING, Literal, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from toolkit import __version__, splits
from toolkit.artifacts import Workspace, list_datasets
from toolkit.cli_output import csv_text, json_text, print_table
from toolkit.config import (
    CONTEXTS, DEVICES, FEEDBACK_MODES, LOSSES, LR_SCHEDULES, MODELS, SAMPLERS, SKIP_NEGATIVES, SPLIT_MODES, TARGETS,
    PrepConfig, TrainConfig,
)
from toolkit.errors import ToolkitError, out_of_space
from toolkit.readers import FORMATS

if TYPE_CHECKING:
    from toolkit.prep import PrepResult

# click's base exception, found through typer's (typer >= 0.29 carries its own copy of click)
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _Commands(TyperGroup):
    """The toolkit's command group: a usage error (an unknown option, a value that is not one of the
    choices) is one red line naming the option, the valid values and ``-h``, like every other error,
    instead of click's usage block and framed panel.  Exit status 2, click's own."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _ClickException as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
                err.print(f"[red]error:[/red] {escape(one_line(usage_message(exc)))}", soft_wrap=True,
                          highlight=False)
            sys.exit(exc.exit_code)
        except typer.Abort:
            err.print("aborted", highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def usage_message(exc: BaseException) -> str:
    """A click usage error as the toolkit states errors: the command, what is wrong, where help is."""
    ctx = getattr(exc, "ctx", None)
    # typer validates choices through pydantic, whose message starts "Value error, "
    text = exc.format_message().replace("Value error, ", "")
    if ctx is None:
        return text
    return f"{ctx.command_path}: {text.rstrip('.')} (see `{ctx.command_path} -h`)"


app = typer.Typer(
    cls=_Commands,
    name="toolkit",  # the program name in usage errors and help, also under a test runner
    help="Sequential music recommendation that learns from skips.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True)

# help panels: every command's options grouped by what they are about
INPUT, MODEL, LOSS, SKIPS, TRAINING, RUNTIME, OUTPUT = "Input", "Model", "Loss", "Skips", "Training", "Runtime", "Output"
SESSIONS, FILTERS, SPLIT, PROTOCOL, GRID = "Sessions and skips", "Filters", "Split", "Protocol", "Grid"


def workspace_option(panel: str = INPUT):
    """--workspace / -w, shown in ``panel`` (Input where a command reads it, Output where it writes)."""
    return typer.Option(None, "--workspace", "-w", envvar="TOOLKIT_WORKSPACE", rich_help_panel=panel,
                        help="Workspace folder (default: ./toolkit-workspace).")


WorkspaceOpt = workspace_option()  # for a command that needs no panel of its own
_PREP, _TRAIN = PrepConfig(), TrainConfig()  # option defaults are the configs' own


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _toolkit(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                 help="Print the toolkit version and exit."),
) -> None:
    """Sequential music recommendation that learns from skips."""


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
            if isinstance(exc, ToolkitError) and not _main_process():
                raise typer.Exit(exc.exit_code) from None  # every rank of a torchrun meets it; rank 0 says it
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


def _main_process() -> bool:  # distributed.main_process, without importing torch up front
    return int(os.environ.get("RANK", "0") or 0) == 0


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
    errno.ENOSPC: f"no space left on the disk: free disk space, {_WORKSPACE_FIX}",
    errno.EDQUOT: f"disk quota exceeded: free disk space, {_WORKSPACE_FIX}",
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
    if out_of_space(exc):  # a library's own words for a full disk (a DuckDB spill file, say): never "damaged"
        return f"{_path_of(exc) or 'a workspace file'}: {_DISK[errno.ENOSPC]}", 1
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


@app.command(epilog="""Examples:

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
    status, update = _stage_status()
    with status:
        prepared = run_prep(list(logs), ws, cfg, update, force=force, keep_unpacked=keep_unpacked)
    from rich.markup import escape

    for note in prepared.notes:
        out.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    _print_prep_summary(prepared, ws, time.perf_counter() - started)


def _print_prep_summary(prepared: PrepResult, ws: Workspace, seconds: float) -> None:
    from toolkit.signals import cold_summary

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


@app.command(epilog="""Examples:

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


@app.command(epilog="""Examples:

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
    from toolkit.cli_progress import GridView
    from toolkit.config import TrainConfig
    from toolkit.prep import prep as run_prep
    from toolkit.study import train_grid
    from toolkit.synth import SynthConfig
    from toolkit.synth import synth as run_synth

    ws = Workspace.at(workspace)
    logs = ws.root / "demo" / f"synthetic-{plays}-{users}-{seed}.parquet"
    logs.parent.mkdir(parents=True, exist_ok=True)
    if not logs.exists():
        with out.status("writing a synthetic listening log"):
            s = run_synth(logs, SynthConfig(users=users, plays=plays, tracks=5_000, artists=500, seed=seed))
        out.print(f"synthetic log: {s.rows:,} plays, {s.users:,} users, {s.skip_share:.1%} skipped -> {logs}")
    started = time.perf_counter()
    status, update = _stage_status()
    with status:
        prepared = run_prep([logs], ws, PrepConfig(name="demo"), update)
    _print_prep_summary(prepared, ws, time.perf_counter() - started)
    if epochs < 1:
        return
    small = dict(dataset="demo", d_model=32, n_layers=1, epochs=epochs, lr=3e-3, patience=epochs, seed=seed)
    grid = [("pop", "all", {}), ("markov", "all", {}), ("sasrec", "all", small),
            ("sasrec", "positives-only", small), ("sasrec", "contrastive", {**small, "alpha": 0.1, "context": "input"})]
    runs = [(f"{model} / {feedback}",
             TrainConfig(model=model, feedback=feedback, **({"dataset": "demo", "seed": seed} | extra)))
            for model, feedback, extra in grid]
    with GridView(out) as show:
        ids, _ = train_grid(ws, runs, show)
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


@app.command(epilog="""Examples:

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
    from dataclasses import fields

    from toolkit.artifacts import read_json, run_dir
    from toolkit.cli_progress import TrainView
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
    from toolkit import distributed

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


def json_option():
    return typer.Option(False, "--json", rich_help_panel=OUTPUT,
                        help="Print the records as JSON (every field, unrounded) instead of the table.")


def csv_option():
    return typer.Option(False, "--csv", rich_help_panel=OUTPUT,
                        help="Print the records as CSV with a header row (every flat field, unrounded).")


@app.command(epilog="""Examples:

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
    if _print_records(rows, as_json, as_csv):
        return
    if not rows:
        out.print(f"no runs in {ws.root}; run `toolkit train`")
        return
    _print_listing(f"runs in {ws.root}", ["id", "dataset", "status"],
                   ["epochs", "NDCG@10", "HR@10", "skip HR@10", "wall s"],
                   [[r["id"], _shown(r["dataset"]), _shown(r["status"]), _shown(r["epochs_done"]),
                     _shown(r["valid_ndcg10"], "{:.4f}"), _shown(r["valid_hr10"], "{:.4f}"),
                     _shown(r["valid_skip_hr10"], "{:.4f}"), _shown(r["wall_s"], "{:.0f}")] for r in rows])


@app.command(epilog="""Examples:

  toolkit datasets

  toolkit datasets --csv > datasets.csv""")
@friendly
def datasets(workspace: Optional[Path] = workspace_option(INPUT), as_json: bool = json_option(),
             as_csv: bool = csv_option()) -> None:
    """List the prepared datasets of the workspace."""
    ws = Workspace.at(workspace)
    rows = list_datasets(ws, damaged=True)
    if _print_records(rows, as_json, as_csv):
        return
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


def _print_records(records: list[dict], as_json: bool, as_csv: bool) -> bool:
    """Print ``records`` for a program (``--json`` or ``--csv``); False when the table is wanted."""
    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="'--json' / '--csv'")
    if as_json:
        typer.echo(json_text(records))
    elif as_csv:
        typer.echo(csv_text(records), nl=False)
    return as_json or as_csv


def _shown(value, fmt: str = "{}") -> str:
    """A listing cell: '-' for a value a damaged or unfinished artifact does not have."""
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def _print_listing(title: str, text_cols: list[str], number_cols: list[str], rows: list[list[str]]) -> None:
    """A table whose first column never wraps (it holds ids) and whose numbers align right; nothing
    is ever cut short (folded on a narrow terminal, whole in a pipe).  Cells are Text, so a name
    with brackets is shown as it is, not read as markup."""
    table = Table(title=title if out.is_terminal else None)  # a pipe gets the header row first
    for i, col in enumerate(text_cols):
        table.add_column(col, no_wrap=i == 0, overflow="fold")
    for col in number_cols:
        table.add_column(col, justify="right", overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    print_table(out, table)


@app.command(epilog="""Examples:

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
        table.add_row(Text(str(item.path.relative_to(ws.root))), Text(item.what), _size_text(item.bytes))
    print_table(out, table)
    verb = "would free" if dry_run else "freed"
    out.print(f"{len(done.leftovers)} item(s); {verb} {_size_text(done.bytes)}"
              + (" (dry run: nothing deleted)" if dry_run else ""), highlight=False)


def _size_text(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"


@app.command(epilog="""Examples:

  toolkit version

  toolkit --version""")
def version() -> None:
    """Print the toolkit version."""
    out.print(__version__)


# report and recommend live beside this module; importing it registers them on ``app``
from toolkit import cli_report  # noqa: E402, F401
