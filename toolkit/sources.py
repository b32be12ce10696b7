"""One input data file and the listener it belongs to: what ``readers`` finds and ``listeners`` names,
in a module of its own so that neither has to import the other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SourceFile:
    """One data file and the user it belongs to when the format carries no user column."""

    path: Path
    user: str | None
    shown: str  # how the file is named in messages (the archive member for zipped files)
    archive: Path | None = None  # the zip archive the file was extracted from
    declared: bool = False  # the user was named by --user or by the one-folder-per-listener layout
