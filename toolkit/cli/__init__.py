"""The ``toolkit`` command line: one module per command group, each command parsing its options,
calling one library function and printing what it returns.  No logic lives here.

``common`` holds what every command shares (the error boundary ``friendly``, the consoles, the help
panels), ``output`` how tables and records are printed, ``progress`` how training is shown.  This
module builds the app and registers the commands, in the order ``toolkit -h`` lists them.
"""

from __future__ import annotations

import typer

from toolkit import __version__
from toolkit.cli import demo, prep, recommend, report, study, train, tune, workspace
from toolkit.cli.common import Commands

app = typer.Typer(
    cls=Commands,
    name="toolkit",  # the program name in usage errors and help, also under a test runner
    help="Sequential music recommendation that learns from skips.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

COMMANDS = (prep.prep, workspace.synth, demo.demo, train.train, workspace.runs, workspace.datasets, workspace.clean,
            workspace.version, report.report, recommend.recommend, study.study, tune.tune)
for _command in COMMANDS:
    app.command(epilog=_command.epilog)(_command)


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
