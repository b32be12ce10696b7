"""What every command shares: the error boundary (``friendly``), the usage-error group, the consoles,
the help panels and the options several commands take.

Every command runs inside ``friendly``: an expected failure becomes one red line on stderr naming the
file or option and the fix, exit status 1; anything else is a bug, reported on one line too.
TOOLKIT_DEBUG=1 adds the traceback.  ``toolkit.cli.failures`` words each expected failure.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from typing import Callable
import sys
import time
import traceback

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from toolkit.cli.failures import explain, first_line
from toolkit.errors import ToolkitError

# click's base exception, found through typer's (typer >= 0.29 carries its own copy of click)
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class Commands(TyperGroup):
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


out = Console()
err = Console(stderr=True)

# help panels: every command's options grouped by what they are about
INPUT, MODEL, LOSS, SKIPS, TRAINING, RUNTIME, OUTPUT = "Input", "Model", "Loss", "Skips", "Training", "Runtime", "Output"
SESSIONS, FILTERS, SPLIT, PROTOCOL, GRID = "Sessions and skips", "Filters", "Split", "Protocol", "Grid"


def workspace_option(panel: str = INPUT):
    """--workspace / -w, shown in ``panel`` (Input where a command reads it, Output where it writes)."""
    return typer.Option(None, "--workspace", "-w", envvar="TOOLKIT_WORKSPACE", rich_help_panel=panel,
                        help="Workspace folder (default: ./toolkit-workspace).")


def json_option():
    return typer.Option(False, "--json", rich_help_panel=OUTPUT,
                        help="Print the records as JSON (every field, unrounded) instead of the table.")


def csv_option():
    return typer.Option(False, "--csv", rich_help_panel=OUTPUT,
                        help="Print the records as CSV with a header row (every flat field, unrounded).")


def command(epilog: str):
    """Marks a function as a toolkit command with its help epilog (the examples); ``toolkit/cli/__init__.py``
    registers the commands on the app, in the order ``toolkit -h`` lists them."""

    def mark(fn):
        fn.epilog = epilog
        return fn

    return mark


@contextmanager
def on_interrupt(message: str | Callable[[KeyboardInterrupt], str]):
    """Ctrl-C inside the block: one line on stderr saying what is kept and how to go on (``message``,
    or made from the interrupt), exit status 130.  Training checkpoints before the interrupt gets here."""
    try:
        yield
    except KeyboardInterrupt as exc:
        err.print(message(exc) if callable(message) else message, soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(130) from None


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
            if isinstance(exc, ToolkitError) and not main_process():
                raise typer.Exit(exc.exit_code) from None  # every rank of a torchrun meets it; rank 0 says it
            if debugging():
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            message, code = explain(exc) or (
                f"this is a bug in the toolkit: {type(exc).__name__}: {first_line(exc)} "
                f"(rerun with {DEBUG_ENV}=1 for the traceback and include it in a bug report)", 1)
            err.print(f"[red]error:[/red] {escape(one_line(message))}", soft_wrap=True, highlight=False, markup=True)
            raise typer.Exit(code) from None

    return wrapper


def one_line(message: str) -> str:
    """The message with every control character (a newline inside a file or column name, say) written
    as its escape, so an error is always exactly one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def main_process() -> bool:  # distributed.main_process, without importing torch up front
    return int(os.environ.get("RANK", "0") or 0) == 0


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def stage_status(text: str = "starting", console: Console = out):
    """A spinner that shows the current stage and its elapsed time; ``update(stage)`` moves it on."""
    status = console.status(text)
    started = time.perf_counter()

    def update(stage: str) -> None:
        status.update(f"{stage} [dim]({time.perf_counter() - started:.0f} s)[/dim]")

    return status, update
