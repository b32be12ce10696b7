"""One export, one listener: which listener each input file of a format without a user column
belongs to.

Spotify, ListenBrainz and Last.fm CSV exports name nobody inside: the listener is whoever the
export belongs to.  ``readers.expand`` gives each file a default listener, the folder holding it,
or the first-level sub-folder when the input is laid out one folder per listener.  That default
would merge two people whose exports sit side by side (``my_spotify_data.zip`` and
``my_spotify_data (1).zip`` in Downloads) into one listener with interleaved sessions, so where
one default listener holds several exports, each export becomes a listener named after its file.
Listeners named by ``--user`` or by the sub-folder layout are kept as they are.

What one export is depends on the format:

- a zip archive is always one export;
- a Last.fm CSV file is one export (exporters write one file per account);
- a ListenBrainz export unzipped is the folder holding ``listens/``; a plain JSONL of listens is
  one export on its own, unless it sits beside a ``feedback.jsonl``, which makes the folder one;
- the loose files of a Spotify export (``StreamingHistory0.json``, ``StreamingHistory1.json``,
  ...) are parts of one export: together they are one listener, the folder's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from toolkit.sources import SourceFile

PER_FILE_FORMATS = ("lastfm-csv", "listenbrainz")  # a loose file may be a whole export


def assign(files: list[SourceFile], fmt: str) -> tuple[list[SourceFile], tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The files with their listener settled, the (listener, export) pairs that were split off
    a shared default, and one note per default listener that was split.

    Names are deterministic: an archive's or file's name without its suffix, else the folder's;
    a name already taken gets `` (2)``, `` (3)``... in reading order.
    """
    folders = {f.path.parent for f in files if f.archive is None and f.path.name == "feedback.jsonl"}
    exports = [_export_of(f, fmt, folders) for f in files]
    by_default: dict[str, list[tuple[str, str]]] = {}
    for f, export in zip(files, exports):
        if not f.declared and f.user is not None and export not in by_default.setdefault(f.user, []):
            by_default[f.user].append(export)
    split = {user: found for user, found in by_default.items() if len(found) > 1}
    if not split:
        return files, (), ()
    taken = {f.user for f in files if f.user not in split}
    name_of: dict[tuple[str, str], str] = {}
    notes = []
    for user, found in split.items():
        for export in found:
            name_of[export] = _unique(export[1], taken)
            taken.add(name_of[export])
        names = ", ".join(name_of[e] for e in found)
        notes.append(f"{len(found)} exports where one listener was expected ({user}): read as {len(found)} "
                     f"listeners named after their files ({names}); pass --user NAME to read them as one")
    out = [replace(f, user=name_of[e]) if not f.declared and f.user in split else f for f, e in zip(files, exports)]
    pairs = tuple(dict.fromkeys((name_of[e], e[0]) for f, e in zip(files, exports) if not f.declared and f.user in split))
    return out, pairs, tuple(notes)


def _export_of(f: SourceFile, fmt: str, feedback_folders: set[Path]) -> tuple[str, str]:
    """(the export as shown, the name its listener gets when exports are told apart)."""
    if f.archive is not None:
        return str(f.archive), f.archive.stem
    if fmt == "listenbrainz":
        parts = f.path.parts
        if "listens" in parts[:-1]:  # listens/<year>/<month>.jsonl of an unzipped export
            root = Path(*parts[:len(parts) - 1 - parts[::-1].index("listens")])
            return str(root), root.name
        if f.path.parent in feedback_folders:
            return str(f.path.parent), f.path.parent.name
    if fmt in PER_FILE_FORMATS:
        return str(f.path), f.path.stem
    return f.user or "", f.user or ""


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    k = 2
    while f"{name} ({k})" in taken:
        k += 1
    return f"{name} ({k})"
