"""Errors a user can fix.  The CLI prints their message on one line and exits with the class's
``exit_code`` (1); anything else is a bug: one line saying so, the traceback with TOOLKIT_DEBUG=1."""

from __future__ import annotations


class ToolkitError(Exception):
    """Base class: the message names the file or column at fault and how to fix it."""

    exit_code = 1  # the CLI's exit status (2 stays click's own: an unknown option or a malformed value)


class InputError(ToolkitError):
    """An input file or folder cannot be read as asked."""


class MissingColumnsError(InputError):
    """The input lacks columns the chosen format needs."""

    def __init__(self, source: str, missing: list[str], present: list[str], hint: str):
        self.missing = missing
        super().__init__(
            f"{source}: missing column(s) {', '.join(missing)}; it has {', '.join(present) or 'none'}. {hint}"
        )


class EmptyInputError(ToolkitError):
    """Nothing usable is left: an empty file, or every row filtered away."""


class ConfigError(ToolkitError):
    """Options that cannot work together, or a value out of range."""


class ArtifactMissingError(ToolkitError):
    """A dataset or run the command needs is not in the workspace."""


class TrainingDiverged(ToolkitError):
    """The training loss became NaN or infinite; the run stops unfinished."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, carrying the id of the run it stopped (so the CLI can name it).

    A KeyboardInterrupt still, so every handler of Ctrl-C handles it."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        super().__init__(run_id)
