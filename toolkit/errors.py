"""Errors a user can fix.  The CLI prints their message on one line and exits with the class's
``exit_code`` (1); anything else is a bug: one line saying so, the traceback with TOOLKIT_DEBUG=1."""

from __future__ import annotations

import errno
import re


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


class DamagedArtifactError(ToolkitError, ValueError):
    """A workspace file that does not parse: truncated, overwritten or not what its name says.

    A ValueError too, so code that reads a file expecting bad JSON (a listing marking a run damaged)
    handles it as it handled the parser's own error."""


class DiskFullError(ToolkitError):
    """A write failed for want of disk space or quota; the file being written is named."""


# how libraries word a full disk when they do not raise OSError(ENOSPC): polars / Rust ("os error 28"),
# DuckDB and C libraries (strerror), numpy's short write of an array ("N requested and M written")
_NO_SPACE = re.compile(r"No space left on device|os error 28\b|Disk quota exceeded|os error 122\b"
                       r"|\d+ requested and \d+ written")


def out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` (from any library) says a write failed because the disk or quota is full, itself
    or an exception it was raised from (torch words a full disk as its own failure, raised while
    handling the OSError of the file object it writes to)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if _NO_SPACE.search(str(exc)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def disk_full(path, exc: BaseException) -> DiskFullError:
    """The one-line error for ``exc`` (``out_of_space``) met while writing ``path``."""
    return DiskFullError(f"{path}: no space left on the disk while writing it; free disk space, or point "
                         "--workspace (TOOLKIT_WORKSPACE) at a folder on another disk")


class TrainingDiverged(ToolkitError):
    """The training loss became NaN or infinite; the run stops unfinished."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, carrying the id of the run it stopped (so the CLI can name it).

    A KeyboardInterrupt still, so every handler of Ctrl-C handles it."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        super().__init__(run_id)
