"""Errors a user can fix.  The CLI prints their message on one line and exits with status 1;
anything else is a bug and keeps its traceback."""

from __future__ import annotations


class ToolkitError(Exception):
    """Base class: the message names the file or column at fault and how to fix it."""


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
