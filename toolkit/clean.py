"""``toolkit clean``: delete what a workspace keeps only for a while; never a dataset or a run.

What is deleted (``leftovers``):

- archives unpacked into ``tmp/unzipped/``: prep deletes its own once it succeeds (unless
  ``--keep-unpacked``); a failed or interrupted prep leaves them for the next one to reuse;
- DuckDB spill files in ``tmp/duckdb/`` that a killed prep left behind;
- work folders ``datasets/.tmp-<name>-<pid>`` of preps no longer running (a previous version set
  aside by a swap cut short is put back in place instead: it is a dataset);
- temporary files ``.<file>.<random>.tmp`` of writes killed before their rename, in dataset and run
  folders, once untouched for ``STALE_TEMP_S`` (a live command renames its own within seconds).

The unpacked archives and spill files are read by running preps, so they are deleted only while
no prep runs: every prep holds ``locks/unpacked.lock`` shared, and cleaning takes it exclusive.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from toolkit.artifacts import (
    CATALOG_LOCK_TIMEOUT, Workspace, dead_work_folders, unpack_lock,
)
from toolkit.errors import ToolkitError

STALE_TEMP_S = 3600  # a temporary file untouched this long belongs to a write that was killed


@dataclass(frozen=True)
class Leftover:
    """One thing ``clean`` deletes (or, for a set-aside dataset, puts back)."""

    path: Path
    what: str  # what it is, for the listing
    bytes: int
    restore_as: str | None = None  # a dataset's previous version: renamed back to this name, not deleted


@dataclass(frozen=True)
class Cleaning:
    """What ``clean`` found (and, unless it was a dry run, removed)."""

    leftovers: tuple[Leftover, ...]
    prep_running: bool  # a prep held the unpacked files: they were neither listed nor touched

    @property
    def bytes(self) -> int:
        return sum(item.bytes for item in self.leftovers if item.restore_as is None)


def clean(ws: Workspace, dry_run: bool = False) -> Cleaning:
    """Find the leftovers of ``ws`` and, unless ``dry_run``, delete them.  Creates nothing: a
    workspace that does not exist has nothing to clean.

    Example: ``toolkit clean --dry-run``
    """
    if not ws.root.is_dir():
        return Cleaning((), False)
    found = [*_work_folders(ws), *_stale_temp_files(ws)]
    with _unpacked_held(ws) as free:
        if free:
            found += _tmp_leftovers(ws)
        if not dry_run:
            for item in found:
                _remove(item)
    return Cleaning(tuple(found), prep_running=not free)


@contextmanager
def _unpacked_held(ws: Workspace):
    """Yield whether no prep is reading unpacked files now (and none starts until the block ends)."""
    if not ws.tmp.is_dir():  # no prep ever ran here
        yield True
        return
    with unpack_lock(ws, shared=False) as taken:
        yield taken


def _work_folders(ws: Workspace) -> list[Leftover]:
    out = []
    for folder in dead_work_folders(ws):
        if folder.restore:
            what = f"previous version of dataset {folder.dataset}, set aside by an interrupted prep: put back"
            out.append(Leftover(folder.path, what, _size(folder.path), restore_as=folder.dataset))
        else:
            out.append(Leftover(folder.path, "work folder of an interrupted prep", _size(folder.path)))
    return out


def _stale_temp_files(ws: Workspace) -> list[Leftover]:
    cutoff = time.time() - STALE_TEMP_S
    out = []
    for parent in (ws.datasets, ws.runs):
        for path in sorted(parent.glob("*/.*.tmp")) if parent.is_dir() else []:
            try:
                stat = path.stat()
            except OSError:
                continue
            if path.is_file() and stat.st_mtime < cutoff:
                out.append(Leftover(path, "temporary file of an interrupted write", stat.st_size))
    return out


def _tmp_leftovers(ws: Workspace) -> list[Leftover]:
    out = []
    if ws.unpacked.is_dir():
        out += [Leftover(p, "unpacked archive", _size(p)) for p in sorted(ws.unpacked.iterdir())]
    spill = ws.tmp / "duckdb"
    if spill.is_dir() and any(spill.iterdir()):
        out.append(Leftover(spill, "DuckDB spill files of an interrupted prep", _size(spill)))
    return out


def _remove(item: Leftover) -> None:
    if item.restore_as is not None:
        os.replace(item.path, item.path.parent / item.restore_as)
    elif item.path.is_dir() and not item.path.is_symlink():
        shutil.rmtree(item.path)
    else:
        item.path.unlink(missing_ok=True)


def _size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (links are not followed)."""
    if not path.is_dir() or path.is_symlink():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


# ---------------------------------------------------------------------------------------------
# used by prep


@contextmanager
def reading_unpacked(ws: Workspace, wait: float = CATALOG_LOCK_TIMEOUT):
    """Hold ``locks/unpacked.lock`` shared while a prep unpacks and reads archives, so neither
    ``toolkit clean`` nor another prep's clean-up deletes them underneath it."""
    with unpack_lock(ws, shared=True, wait=wait) as taken:
        if not taken:
            raise ToolkitError(f"{ws.unpack_lock}: another toolkit command kept the unpacked archives locked "
                               f"for {wait:g} s (`toolkit clean`?); wait for it to finish and run prep again")
        yield


def drop_unpacked(ws: Workspace, folders: list[Path]) -> bool:
    """Delete the folders a finished prep unpacked its archives into; False (nothing deleted) when
    another prep is reading unpacked files right now (it may be reading these)."""
    with unpack_lock(ws, shared=False) as taken:
        if taken:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
    return taken
