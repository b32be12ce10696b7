"""Find the input files, recognise their format and expose them to SQL as the view ``raw``.

Each format preset has a ``sql/normalize_<format>.sql`` that turns ``raw`` into the canonical
play table (``toolkit.schema.PLAY_COLUMNS``).  This module only decides *which* files and *how*
DuckDB reads them; no column logic lives here except the validated ``--col`` mapping of the
``generic`` format.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import hashlib
import os
import re
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import duckdb

from toolkit import sql
from toolkit.artifacts import atomic_path, safe_name
from toolkit.sources import SourceFile
from toolkit.config import FORMATS
from toolkit.errors import ConfigError, EmptyInputError, InputError, MissingColumnsError

DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".txt", ".parquet")

# File-name patterns of Spotify's own exports; the first list is the account-data history, the
# second the extended history.  Files named otherwise are recognised by their columns (owners
# re-save exports as songdata_0.json, history2.json, 14.json ...), except the podcast and video
# histories, which hold no music plays and are always left out (and reported).
SPOTIFY_NAMES = ("StreamingHistory[0-9]*.json", "StreamingHistory_music_*.json")
EXTENDED_NAMES = ("Streaming_History_Audio_*.json", "endsong*.json")
NOT_MUSIC_NAMES = ("StreamingHistory_podcast_*", "Streaming_History_Video_*", "StreamingHistory_video_*")
SPOTIFY_FORMATS = ("spotify", "spotify-extended")

# Columns each preset needs (what `--format auto` looks for, and what a missing-column error lists).
REQUIRED = {
    "spotify": ("endTime", "artistName", "trackName", "msPlayed"),
    "spotify-extended": ("ts", "ms_played", "spotify_track_uri"),
    "mssd": ("session_id", "session_position", "track_id_clean", "skip_2", "date", "hour_of_day"),
    "piki": ("user_id", "timestamp", "song_id", "liked"),
    "deezer": ("user_id", "media_id", "ts_listen", "is_listened"),
    "listenbrainz": ("listened_at", "track_metadata"),
    "yambda": ("uid", "timestamp", "item_id", "played_ratio_pct"),
}
# Yambda's like / dislike / unlike / undislike files: events about tracks, not plays (docs/formats.md)
YAMBDA_EVENTS = "yambda like/dislike events"
YAMBDA_SKIP_RATIO = 0.5  # Yambda's authors count a listen above half the track
# ListenBrainz keys prep reads; the rest of a listen (free-form additional_info above all) stays
# inside track_metadata as JSON, so files whose listens carry different keys read alike.
LISTENBRAINZ_COLUMNS = {"listened_at": "VARCHAR", "recording_msid": "VARCHAR", "track_metadata": "JSON"}
FEEDBACK_COLUMNS = {"recording_mbid": "VARCHAR", "recording_msid": "VARCHAR", "score": "VARCHAR", "created": "VARCHAR"}
FEEDBACK = "listenbrainz feedback"  # what _sniff calls a feedback.jsonl: part of the listenbrainz format
LASTFM_CSV_COLUMNS = ("artist", "album", "track", "date")  # lastfm-to-csv's order, header or not
# Formats with no user column: the user is the export's listener (toolkit/listeners.py).
EXPORT_FORMATS = ("spotify", "spotify-extended", "listenbrainz", "lastfm-csv")
# Formats whose plays carry no skip evidence: every play is labelled kept and the manifest names
# the rule 'none' with this reason (docs/formats.md explains each).
NO_SKIP_SIGNAL = {
    "sequences": "the format has no feedback",
    "lastfm": "Last.fm scrobbles only plays of at least half a track (or 4 minutes): skips are not in the log",
    "lastfm-csv": "Last.fm scrobbles only plays of at least half a track (or 4 minutes): skips are not in the log",
}
# Extended-history columns a re-save may lack (e.g. a music-only CSV): read as nulls when no file has them.
EXTENDED_OPTIONAL = {
    "master_metadata_track_name": "varchar", "master_metadata_album_artist_name": "varchar",
    "spotify_episode_uri": "varchar", "episode_name": "varchar", "episode_show_name": "varchar",
    "skipped": "boolean", "reason_end": "varchar",
}
# Columns a format's SQL reads but a file may lack: read as nulls of this type.
OPTIONAL = {"spotify-extended": EXTENDED_OPTIONAL, "deezer": {"media_duration": "bigint"},
            "yambda": {"track_length_seconds": "double", "is_organic": "tinyint", "event_type": "varchar"}}
GENERIC_ROLES = ("user", "ts", "track", "played_ms", "duration_ms", "skipped", "session", "artist", "title")
GENERIC_DEFAULTS = {
    "user": ("user_id", "user", "userid"),
    "ts": ("ts", "timestamp", "time", "played_at"),
    "track": ("track_id", "track", "item_id", "trackid"),
    "played_ms": ("played_ms", "ms_played", "msplayed"),
    "duration_ms": ("duration_ms", "track_ms", "length_ms"),
    "skipped": ("skipped", "is_skip", "skip"),
    "session": ("session_id",),
    "artist": ("artist", "artist_name", "artistname"),
    "title": ("track_name", "title", "trackname"),
}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .\-]*$")


@dataclass(frozen=True)
class Source:
    """The resolved input: files in a fixed order, their format and the reader options."""

    files: tuple[SourceFile, ...]
    format: str
    columns: tuple[str, ...]
    mapping: tuple[tuple[str, str], ...] = ()  # generic role -> source column
    skipped: tuple[tuple[str, str], ...] = ()  # (file as shown, why it is not read) for every file left out
    feedback: tuple[SourceFile, ...] = ()  # ListenBrainz feedback.jsonl files (view ``feedback``)
    listeners: tuple[tuple[str, str], ...] = ()  # (listener, export as shown), where exports became listeners
    notes: tuple[str, ...] = ()  # what the user should be told about how the input was read
    frame: object = None  # a pyarrow Table read in place of files (toolkit/frames.py); files holds its stand-in

    @property
    def inputs(self) -> tuple[SourceFile, ...]:
        """Every file read, in reading order (what the input fingerprint covers)."""
        return self.files + self.feedback


def natural_key(text: str) -> list:
    """Sort key that puts ``StreamingHistory2`` before ``StreamingHistory10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def expand(paths: list[Path], unzip_dir: Path, user: str | None,
           ignored: list[tuple[str, str]] | None = None) -> list[SourceFile]:
    """Files, globs, folders and zip archives -> data files in a deterministic order.

    The user of a file is ``user`` when given; otherwise, for a folder whose exports sit in
    several sub-folders, the first-level sub-folder; otherwise the folder (or, for a single
    file or archive, the parent folder) that holds the export.  The last is only a default:
    where it would merge several exports, ``toolkit.listeners.assign`` names a listener after
    each.  Folders are walked through symlinked sub-folders too; archives are extracted under
    ``unzip_dir`` (see ``_unzip``).  Files of a folder or archive that are no data file (a PDF, a
    compressed log) are appended to ``ignored`` with the reason, so none is left out unsaid.
    """
    found: list[SourceFile] = []
    for raw in paths:
        text = str(raw)
        matches = sorted(glob.glob(text), key=natural_key) if glob.has_magic(text) else [text]
        if not matches:
            raise InputError(f"{text}: no file matches this pattern; check the path")
        for m in matches:
            found.extend(_expand_one(Path(m), unzip_dir, user, ignored if ignored is not None else []))
    if not found:
        raise EmptyInputError(
            f"{', '.join(map(str, paths))}: no data files found (looked for {', '.join(DATA_SUFFIXES)} and .zip)"
        )
    return found


def _expand_one(path: Path, unzip_dir: Path, user: str | None, ignored: list[tuple[str, str]]) -> list[SourceFile]:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    if path.is_file():
        owner = user or path.resolve().parent.name
        declared = user is not None
        return (_unzip(path, unzip_dir, owner, declared, ignored) if path.suffix == ".zip"
                else [SourceFile(path, owner, str(path), declared=declared)])
    every = sorted((p for p in _walk(path) if p.is_file() and not p.name.startswith(".")
                    and p.name not in ("SOURCE.md",)), key=lambda p: natural_key(str(p.relative_to(path))))
    files = [p for p in every if p.suffix in DATA_SUFFIXES or p.suffix == ".zip"]
    ignored.extend((str(p), _not_data(p.name)) for p in every if p not in files)
    tops = {p.relative_to(path).parts[0] for p in files if len(p.relative_to(path).parts) > 1}
    many = user is None and len(tops) > 1
    out: list[SourceFile] = []
    for p in files:
        rel = p.relative_to(path)
        by_folder = many and len(rel.parts) > 1
        owner = user or (rel.parts[0] if by_folder else path.resolve().name)
        declared = user is not None or by_folder
        out.extend(_unzip(p, unzip_dir, owner, declared, ignored) if p.suffix == ".zip"
                   else [SourceFile(p, owner, str(p), declared=declared)])
    return out


def _not_data(name: str) -> str:
    """Why a file of this name is not read."""
    suffix = Path(name).suffix
    if suffix in (".gz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".tgz"):
        return f"compressed ({suffix}): extract it and pass the file it holds"
    return f"not a data file ({suffix or 'no suffix'}): prep reads {', '.join(DATA_SUFFIXES)} and .zip files"


def _walk(folder: Path) -> list[Path]:
    """Every file under ``folder``, through symlinked sub-folders (``Path.rglob`` does not follow
    them).  Each real folder is entered once, so a symlink loop ends the walk down that branch
    instead of running forever, and two links to one folder read its files once."""
    seen: set[tuple[int, int]] = set()
    out: list[Path] = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        out.extend(Path(root) / n for n in names)
    return out


# What one archive may unpack to.  A zip bomb (a small archive that inflates to fill the disk)
# stops with an error naming the member instead.  Real exports sit far below both caps: a
# Spotify export is megabytes of JSON that deflate shrinks some 5-20 times, and even a
# synthetic history of near-identical rows stays near 120:1, while deflate tops out near
# 1030:1, reached by runs of one byte, which is what bombs are made of.  The environment
# variables override both caps.
MAX_UNZIP_BYTES = 20 * 2**30  # TOOLKIT_MAX_UNZIP_BYTES: uncompressed bytes, all data members of one archive
MAX_UNZIP_RATIO = 200.0  # TOOLKIT_MAX_UNZIP_RATIO: uncompressed / compressed size of one member ...
RATIO_FROM_BYTES = 2**20  # ... once the member is larger than this
UNZIP_CHUNK = 2**20  # members are streamed to disk in pieces of this size, never read whole
STALE_TEMP_S = 3600  # a temporary member file untouched this long is an interrupted extraction's

_DRIVE = re.compile(r"^[A-Za-z]:")
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError)  # reading a member: corrupt data
try:
    import lzma

    _DAMAGED += (lzma.LZMAError,)
except ImportError:  # pragma: no cover - Python built without lzma; zipfile then refuses such members
    pass
_HOW_TO = "extract it yourself and pass the folder"


def _cap(var: str, default: float) -> float:
    text = os.environ.get(var, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ConfigError(f"{var}={text!r}: not a positive number; unset it or set e.g. {var}={default:g}")
    return value


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _member(archive: Path, name: str) -> str:
    """``archive!member`` for messages, with control characters escaped so it stays one line."""
    shown = name if name.isprintable() else repr(name)[1:-1]
    return f"{archive}!{shown}"


def _member_parts(name: str) -> tuple[str, ...] | None:
    """The folders and file name a member is written to, or None when the name could lead outside
    the extraction folder: absolute, with a drive letter, or with a ``..`` component.  Both
    ``/`` and ``\\`` separate folders (archives made on Windows may use either)."""
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return None
    parts = tuple(p for p in re.split(r"[\\/]", name) if p not in ("", "."))
    if not parts or ".." in parts:
        return None
    return parts


def _content_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def archive_dir(archive: Path, unzip_dir: Path, owner: str) -> Path:
    """Where ``archive`` is extracted: keyed on its content, so an archive replaced at the same path
    is extracted afresh, never answered with the old members.  The path's hash keeps two copies of
    one archive apart (each is read, like two copies of a plain file), and the owner is only
    shown, made safe first: ``--user ../..`` cannot steer the folder anywhere."""
    where = hashlib.sha256(str(archive.resolve()).encode()).hexdigest()[:8]
    owner_part = (safe_name(owner) or "listener")[:40]
    return unzip_dir / f"{owner_part}-{_content_hash(archive)[:16]}-{where}"


def _unzip(archive: Path, unzip_dir: Path, owner: str, declared: bool = False,
           ignored: list[tuple[str, str]] | None = None) -> list[SourceFile]:
    """Extract an archive's data members (DuckDB cannot read inside a zip).

    Safe against hostile archives: a member whose path leads outside the extraction folder, an
    encrypted or damaged member, or one that unpacks past the caps above stops prep with one
    line naming the archive and the member.  Each member is streamed to a temporary name and
    renamed into place when complete, so an interrupted run never leaves a half member under
    its final name and a later run extracts it again.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{archive}: not a readable zip archive ({exc}); re-download or extract it") from exc
    max_bytes = _cap("TOOLKIT_MAX_UNZIP_BYTES", MAX_UNZIP_BYTES)
    max_ratio = _cap("TOOLKIT_MAX_UNZIP_RATIO", MAX_UNZIP_RATIO)
    with zf:
        target = archive_dir(archive, unzip_dir, owner)
        members = _data_members(zf, archive, max_bytes, max_ratio, ignored if ignored is not None else [])
        root = target.resolve()
        _drop_stale_temps(target)
        out = []
        total = 0
        for info, parts in members:
            dest = target.joinpath(*parts)
            if not dest.resolve().is_relative_to(root):
                raise InputError(f"{_member(archive, info.filename)}: leads outside the extraction folder; "
                                 f"not extracted: {_HOW_TO}")
            if not (dest.is_file() and dest.stat().st_size == info.file_size):
                _extract(zf, info, dest, archive, total, max_bytes, max_ratio)
            total += info.file_size
            out.append(SourceFile(dest, owner, f"{archive}!{info.filename}", archive, declared))
    return out


def _data_members(zf: zipfile.ZipFile, archive: Path, max_bytes: float, max_ratio: float,
                  ignored: list[tuple[str, str]]):
    """The data members in reading order, each with the path parts it is written to, after
    checking every one before anything is written: safe path, not encrypted, not twice in the
    archive, and the sizes the archive declares within the caps."""
    members = []
    seen: set[tuple[str, ...]] = set()
    declared = 0
    infos = sorted((i for i in zf.infolist() if not i.is_dir()), key=lambda i: natural_key(i.filename))
    for info in infos:
        name = info.filename
        base = re.split(r"[\\/]", name)[-1]
        if Path(base).suffix not in DATA_SUFFIXES:
            if not base.startswith("."):
                ignored.append((_member(archive, name), _not_data(base)))
            continue
        parts = _member_parts(name)
        if parts is None:
            raise InputError(f"{_member(archive, name)}: member path leads outside the archive's folder "
                             f"(absolute, drive letter or '..'); not extracted: {_HOW_TO}")
        if info.flag_bits & 0x1:
            raise InputError(f"{_member(archive, name)}: encrypted member; {_HOW_TO} (with its password)")
        if parts in seen:
            raise InputError(f"{_member(archive, name)}: the archive holds two members of this name; {_HOW_TO}")
        seen.add(parts)
        declared += info.file_size
        _check_caps(archive, info, info.file_size, declared, max_bytes, max_ratio)
        members.append((info, parts))
    return members


def _check_caps(archive: Path, info: zipfile.ZipInfo, size: int, total: int, max_bytes: float,
                max_ratio: float) -> None:
    where = _member(archive, info.filename)
    if total > max_bytes:
        raise InputError(f"{where}: the archive unpacks past {_mib(max_bytes)} (the cap on one archive, "
                         f"TOOLKIT_MAX_UNZIP_BYTES); not extracted: if it is genuine, {_HOW_TO} "
                         "or raise TOOLKIT_MAX_UNZIP_BYTES")
    if size > RATIO_FROM_BYTES and size > max_ratio * max(info.compress_size, 1):
        raise InputError(f"{where}: compressed more than {max_ratio:g}:1 ({_mib(info.compress_size)} -> "
                         f"{_mib(size)} and more), the mark of a zip bomb; not extracted: if it is genuine, "
                         f"{_HOW_TO} or raise TOOLKIT_MAX_UNZIP_RATIO")


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, archive: Path, before: int,
             max_bytes: float, max_ratio: float) -> None:
    """Stream one member to ``dest`` through a temporary file, counting the bytes it really
    unpacks to against the caps (the temporary file is removed when anything goes wrong)."""
    where = _member(archive, info.filename)
    with atomic_path(dest) as tmp, open(tmp, "wb") as sink:
        try:
            src = zf.open(info)
        except RuntimeError as exc:  # encrypted (the flag was checked; this is the library's own word)
            raise InputError(f"{where}: cannot be opened ({exc}); {_HOW_TO}") from exc
        except NotImplementedError as exc:  # a compression method zipfile lacks
            raise InputError(f"{where}: {exc}; {_HOW_TO}") from exc
        except _DAMAGED as exc:
            raise InputError(f"{where}: damaged ({exc}); re-download the archive or {_HOW_TO}") from exc
        written = 0
        with src:
            while True:
                try:
                    chunk = src.read(UNZIP_CHUNK)
                except _DAMAGED as exc:
                    raise InputError(f"{where}: damaged ({exc}); re-download the archive or {_HOW_TO}") from exc
                if not chunk:
                    break
                written += len(chunk)
                _check_caps(archive, info, written, before + written, max_bytes, max_ratio)
                sink.write(chunk)


def unpacked_folders(src: Source, unzip_dir: Path) -> list[Path]:
    """The folders under ``unzip_dir`` that ``src``'s files were unpacked into (one per archive)."""
    root = unzip_dir.resolve()
    folders = {root / f.path.resolve().relative_to(root).parts[0] for f in src.inputs
               if f.archive is not None and f.path.resolve().is_relative_to(root)}
    return sorted(folders)


def _drop_stale_temps(target: Path) -> None:
    """Remove temporary member files an interrupted extraction left behind (never read: a member
    is only read under its final name); recent ones may belong to a run still extracting."""
    if not target.is_dir():
        return
    cutoff = time.time() - STALE_TEMP_S
    for tmp in target.rglob(".*.tmp"):
        try:
            if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:
            pass


def select_files(
    con: duckdb.DuckDBPyConnection, files: list[SourceFile], fmt: str, first: SourceFile | None = None
) -> tuple[list[SourceFile], list[tuple[str, str]]]:
    """The files ``fmt`` reads, and every other file with the reason it is left out.

    A Spotify format reads the files named like its history or whose columns look like it
    (Spotify exports ship other JSON files beside the history, and owners rename the history
    itself).  ``first`` is the file ``--format auto`` recognised the format from; then every
    file must be detected as that format too.  Otherwise (an explicit non-Spotify format) every
    file is read.  DuckDB reads one file type per run, so files of another type than ``first``
    (or than the first file read) are left out too.
    """
    chosen: list[SourceFile] = []
    skipped: list[tuple[str, str]] = []
    for f in files:
        why = _why_not(con, f, fmt, first)
        if why is None:
            chosen.append(f)
        else:
            skipped.append((f.shown, why))
    anchor = first or (chosen[0] if chosen else None)
    if anchor is not None:
        kind = anchor.path.suffix
        skipped += [(f.shown, f"{fmt} data, but a {f.path.suffix} file among {kind} ones: prep reads one file "
                              "type per run, so prepare it on its own") for f in chosen if f.path.suffix != kind]
        chosen = [f for f in chosen if f.path.suffix == kind]
    order = {f.shown: i for i, f in enumerate(files)}
    return chosen, sorted(skipped, key=lambda item: order[item[0]])


def _why_not(con: duckdb.DuckDBPyConnection, f: SourceFile, fmt: str, first: SourceFile | None) -> str | None:
    """Why ``fmt`` does not read ``f`` (None: it does)."""
    if f is first:
        return None
    if fmt in SPOTIFY_FORMATS:
        if _name_format(f.path.name) == fmt:
            return None
        if _not_music(f.path.name):
            return "a Spotify podcast or video history, not music plays"
    elif first is None and fmt not in ("listenbrainz", "yambda"):
        # an explicit format reads every file it is given; ListenBrainz exports hold more
        # than listens (user.json, feedback.jsonl), so its files are told apart by content
        return None
    kind, columns = _sniff(con, f)
    if kind == fmt or (fmt == "listenbrainz" and kind == FEEDBACK):
        return None
    if kind == YAMBDA_EVENTS:
        return "Yambda likes or dislikes, not listens: prep reads listens (skips come from played_ratio_pct)"
    if kind is not None:
        return f"{kind} data, not {fmt}: prepare it on its own (--format {kind})"
    if columns is None:
        return f"not readable as a table of plays ({f.path.suffix} file)"
    shown = ", ".join(columns[:6]) + (", ..." if len(columns) > 6 else "")
    return f"its columns ({shown}) are not {fmt} data"


def _name_format(name: str) -> str | None:
    for fmt, patterns in (("spotify-extended", EXTENDED_NAMES), ("spotify", SPOTIFY_NAMES)):
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return fmt
    return None


def _not_music(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in NOT_MUSIC_NAMES)


def read_expr(files: list[SourceFile], fmt: str) -> tuple[str, list]:
    """The DuckDB table function (text, parameters) that reads ``files`` in order."""
    paths = [str(f.path) for f in files]
    suffixes = {f.path.suffix for f in files}
    if len(suffixes) > 1:
        raise InputError(
            f"{files[0].shown}: mixes file types {sorted(suffixes)}; pass one kind of file at a time"
        )
    suffix = suffixes.pop()
    if fmt == "sequences":
        return "read_text($files)", paths
    if fmt == "lastfm":
        return "read_csv($files, delim='\t', header=false, quote='', escape='', all_varchar=true, filename=true)", paths
    if fmt == "lastfm-csv":
        # no header option: files with and without one are read alike, the SQL drops header lines
        return ("read_csv($files, delim=',', header=false, all_varchar=true, filename=true, "
                "columns={'artist': 'VARCHAR', 'album': 'VARCHAR', 'track': 'VARCHAR', 'date': 'VARCHAR'})"), paths
    if fmt == "listenbrainz":
        return "read_json($files, columns=$columns, filename=true)", paths
    if fmt == FEEDBACK:
        return "read_json($files, columns=$columns, filename=true)", paths
    if fmt == "mssd" and suffix in (".csv", ".tsv"):
        # All text: the sniffer would read the dd-mm-yy dates of some copies as yy-mm-dd.
        return "read_csv($files, all_varchar=true, filename=true, union_by_name=true)", paths
    if suffix == ".parquet":
        return "read_parquet($files, filename=true, union_by_name=true)", paths
    if suffix in (".json", ".jsonl", ".ndjson"):
        return "read_json($files, filename=true, union_by_name=true)", paths
    delim = "\t" if suffix == ".tsv" else None
    if delim:
        return "read_csv($files, delim='\t', filename=true, union_by_name=true)", paths
    return "read_csv($files, filename=true, union_by_name=true)", paths


def _bind(expr: str, paths: list[str], fmt: str) -> dict:
    """The parameters of a ``read_expr`` text: the files, and the typed columns where it names them."""
    params: dict = {"files": paths}
    if "$columns" in expr:
        params["columns"] = FEEDBACK_COLUMNS if fmt == FEEDBACK else LISTENBRAINZ_COLUMNS
    return params


def columns_of(con: duckdb.DuckDBPyConnection, files: list[SourceFile], fmt: str) -> tuple[str, ...]:
    """Column names DuckDB sees in the first file (cheap: it reads a sample only)."""
    expr, paths = read_expr(files[:1], fmt)
    try:
        rel = con.sql(f"select * from {expr} limit 0", params=_bind(expr, paths, fmt))
        return tuple(c for c in rel.columns if c != "filename")
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise InputError(f"{files[0].shown}: cannot be read ({first}); check that it is {fmt} data") from exc


def detect(con: duckdb.DuckDBPyConnection, files: list[SourceFile]) -> tuple[str, SourceFile]:
    """Recognise the format from file names first, then from the columns of each file in turn.

    Returns the format and the first file recognised; files before it that match no format
    (a profile table beside a log, say) are left out by the caller.
    """
    for fmt in ("spotify-extended", "spotify"):
        hit = next((f for f in files if _name_format(f.path.name) == fmt), None)
        if hit is not None:
            return fmt, hit
    for f in files:
        fmt = None if _not_music(f.path.name) else _sniff(con, f)[0]
        if fmt is not None and fmt != YAMBDA_EVENTS:
            return ("listenbrainz" if fmt == FEEDBACK else fmt), f
    raise InputError(
        f"{files[0].shown}: cannot recognise the format from its columns; "
        "pass --format generic --col user=<column> --col ts=<column> --col track=<column>"
    )


def _sniff(con: duckdb.DuckDBPyConnection, f: SourceFile) -> tuple[str | None, tuple[str, ...] | None]:
    """The format a file's content looks like (None: none), and its columns (None: unreadable)."""
    if f.path.suffix == ".txt" and _looks_like_sequences(f.path):
        return "sequences", ()
    if f.path.suffix == ".tsv" and _looks_like_lastfm(f.path):
        return "lastfm", ()
    try:
        columns = columns_of(con, [f], "generic")
    except InputError:
        return None, None
    if f.path.suffix == ".csv" and _looks_like_lastfm_csv(f.path):
        return "lastfm-csv", columns
    return format_of_columns(columns), columns


def format_of_columns(columns: tuple[str, ...]) -> str | None:
    """The format a table with these columns holds (None: none); a file's or a DataFrame's."""
    cols = set(columns)
    if set(REQUIRED["listenbrainz"]) <= cols:
        return "listenbrainz"
    if "score" in cols and cols & {"recording_mbid", "recording_msid"}:
        return FEEDBACK
    # an extended-history re-save keeps ts and ms_played but may drop the podcast columns
    if {"ts", "ms_played"} <= cols and cols & {"spotify_track_uri", "master_metadata_track_name"}:
        return "spotify-extended"
    for fmt in ("spotify", "mssd", "piki", "deezer", "yambda"):
        if set(REQUIRED[fmt]) <= cols:
            return fmt
    if {"uid", "timestamp", "item_id"} <= cols:
        return YAMBDA_EVENTS
    if {"user_id", "ts", "track_id"} <= cols:
        return "generic"
    return None


def _head(path: Path, n: int = 5) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [line.rstrip("\n") for _, line in zip(range(n), fh)]


def _looks_like_sequences(path: Path) -> bool:
    lines = [ln for ln in _head(path) if ln.strip()]
    return bool(lines) and all(re.fullmatch(r"\d+( \d+)*", ln.strip()) for ln in lines)


def _looks_like_lastfm(path: Path) -> bool:
    lines = _head(path)
    return bool(lines) and all(
        len(parts) == 6 and re.match(r"\d{4}-\d\d-\d\dT", parts[1]) for parts in (ln.split("\t") for ln in lines)
    )


# lastfm-to-csv writes '31 Jan 2021 22:10'; other exporters ISO times or epoch seconds
_SCROBBLE_TIME = re.compile(r"\d{1,2} [A-Za-z]{3} \d{4},? \d\d:\d\d|\d{4}-\d\d-\d\d[T ]\d\d:\d\d.*|\d{9,10}")


def _looks_like_lastfm_csv(path: Path) -> bool:
    """Four comma-separated fields per line, the last a scrobble time (a header line
    ``artist,album,track,date`` may come first)."""
    rows = [r for r in csv.reader(_head(path)) if r]
    if rows and [c.strip().lower() for c in rows[0]] == list(LASTFM_CSV_COLUMNS):
        rows = rows[1:]
    return bool(rows) and all(len(r) == 4 and _SCROBBLE_TIME.fullmatch(r[3].strip()) for r in rows)


def generic_mapping(columns: tuple[str, ...], cols: dict[str, str], shown: str) -> tuple[tuple[str, str], ...]:
    """Resolve ``--col role=column`` options (and the default names) against the real columns."""
    unknown = set(cols) - set(GENERIC_ROLES)
    if unknown:
        raise ConfigError(f"--col: unknown role(s) {sorted(unknown)}; roles are {', '.join(GENERIC_ROLES)}")
    lower = {c.lower(): c for c in columns}
    mapping = {}
    for role in GENERIC_ROLES:
        if role in cols:
            if cols[role] not in columns or not _IDENT.match(cols[role]):
                raise MissingColumnsError(
                    shown, [cols[role]], list(columns), f"Fix --col {role}=<one of the columns above>."
                )
            mapping[role] = cols[role]
            continue
        hit = next((lower[c] for c in GENERIC_DEFAULTS[role] if c in lower), None)
        if hit is not None:
            mapping[role] = hit
    missing = [r for r in ("user", "ts", "track") if r not in mapping]
    if missing:
        raise MissingColumnsError(
            shown, missing, list(columns), "Name them with " + " ".join(f"--col {r}=<column>" for r in missing) + "."
        )
    return tuple(mapping.items())


def resolve(
    con: duckdb.DuckDBPyConnection, paths: list[Path], fmt: str, cols: dict[str, str], user: str | None, unzip_dir: Path
) -> Source:
    """Expand the inputs, settle the format and check the columns it needs are there."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: unknown format; choose one of {', '.join(FORMATS)}")
    ignored: list[tuple[str, str]] = []
    files = expand(paths, unzip_dir, user, ignored)
    first = None
    if fmt == "auto":
        fmt, first = detect(con, files)
    chosen, skipped = select_files(con, files, fmt, first)
    skipped += ignored
    if not chosen:
        raise EmptyInputError(f"{paths[0]}: no {fmt} files found among {len(files)} file(s) "
                              f"({skipped[0][0]}: {skipped[0][1]}); check --format")
    feedback: list[SourceFile] = []
    if fmt == "listenbrainz":
        feedback = [f for f in chosen if _sniff(con, f)[0] == FEEDBACK]
        chosen = [f for f in chosen if f not in feedback]
        if not chosen:
            raise EmptyInputError(f"{feedback[0].shown}: ListenBrainz feedback without listens; pass the whole "
                                  "export (the zip, or the folder holding listens/)")
    chosen, feedback, listeners, notes = listeners_of(chosen, feedback, fmt)
    # the typed read names the columns itself; what the files hold is what auto-detection sees
    columns = () if fmt in ("sequences", "lastfm", "lastfm-csv") else columns_of(
        con, chosen, "generic" if fmt == "listenbrainz" else fmt)
    mapping: tuple[tuple[str, str], ...] = ()
    if fmt == "generic":
        mapping = generic_mapping(columns, cols, chosen[0].shown)
    elif fmt in REQUIRED:
        missing = [c for c in REQUIRED[fmt] if c not in columns]
        if missing:
            raise MissingColumnsError(
                chosen[0].shown, missing, list(columns), f"Is it really {fmt} data? Otherwise use --format generic --col ..."
            )
    return Source(tuple(chosen), fmt, columns, mapping, tuple(skipped), tuple(feedback), listeners, notes)


def listeners_of(files: list[SourceFile], feedback: list[SourceFile], fmt: str):
    """``toolkit.listeners.assign`` over the listens and the feedback files together: one export,
    one listener, for the formats without a user column."""
    from toolkit.listeners import assign

    if fmt not in EXPORT_FORMATS:
        return files, feedback, (), ()
    named, listeners, notes = assign([*files, *feedback], fmt)
    return named[:len(files)], named[len(files):], listeners, notes


def is_parquet(src: Source) -> bool:
    """Whether the source is read with read_parquet, or is a table in memory (both cheap to scan
    again), rather than parsed text."""
    if src.frame is not None:
        return True
    return read_expr(list(src.files), src.format)[0].startswith("read_parquet")


def register_raw(con: duckdb.DuckDBPyConnection, src: Source,
                 rows: duckdb.DuckDBPyRelation | None = None) -> None:
    """Create the view ``raw``: the source rows in file order, plus ``src_row`` and ``source_user``.
    A table in memory comes as ``rows``, its rows in order, numbered by ``toolkit.frames.relation``
    (the caller makes it: frames reads this module's formats, so this module never imports frames)."""
    if src.frame is not None and rows is None:
        raise ValueError("a table in memory is registered through toolkit.frames.relation: pass its rows")
    rel = rows if rows is not None else _file_rows(con, src)
    if src.format == "generic":
        rel = _generic_projection(rel, dict(src.mapping))
    if src.format in OPTIONAL:
        present = set(rel.columns)
        absent = [f"null::{kind} as {col}" for col, kind in OPTIONAL[src.format].items() if col not in present]
        if absent:
            rel = rel.project(", ".join(["*", *absent]))
    rel.create_view("raw")
    if src.format == "listenbrainz":
        _register_feedback(con, src.feedback)


def _file_rows(con: duckdb.DuckDBPyConnection, src: Source) -> duckdb.DuckDBPyRelation:
    """The files' rows in order with ``src_row`` and ``source_user``.

    ``src_row`` breaks ties between equal timestamps, so it must follow the files' own order:
    parquet gives each row's exact ``file_row_number``; for text formats DuckDB's scan keeps
    insertion order and ``row_number() over ()`` numbers it.
    """
    expr, paths = read_expr(list(src.files), src.format)
    parquet = is_parquet(src)
    if parquet:
        expr = expr.replace("filename=true", "filename=true, file_row_number=true")
        scan = f"select * from {expr}"
    else:
        # numbered inside the scan, before any join could reorder rows
        cols = "filename, content" if src.format == "sequences" else "*"
        scan = f"select row_number() over () as scan_row, {cols} from {expr}"
    users = {f.user for f in src.files}
    if len(users) == 1 and (len(src.files) == 1 or not parquet):
        # one owner and no file index needed: no join against the file table
        row = "r.file_row_number" if parquet else "r.scan_row"
        rel = con.sql(f"select {row} as src_row, r.* exclude (filename), $user as source_user from ({scan}) r",
                      params={**_bind(expr, paths, src.format), "user": users.pop()})
    else:
        con.execute("create or replace temp table source_files (filename varchar, file_no bigint, source_user varchar)")
        con.executemany("insert into source_files values (?, ?, ?)",
                        [[str(f.path), i, f.user] for i, f in enumerate(src.files)])
        row = "(u.file_no << 40) + r.file_row_number" if parquet else "r.scan_row"
        rel = con.sql(f"select {row} as src_row, r.* exclude (filename), u.source_user from ({scan}) r "
                      "join source_files u using (filename)", params=_bind(expr, paths, src.format))
    if not parquet:
        rel = rel.project("* exclude (scan_row)")
    if parquet:
        rel = rel.project("* exclude (file_row_number)")
    return rel


def _register_feedback(con: duckdb.DuckDBPyConnection, files: tuple[SourceFile, ...]) -> None:
    """The view ``feedback``: every love / hate of the export's feedback.jsonl files, with the
    listener they belong to (empty when the input has none)."""
    cols = ", ".join(f"r.{c}" for c in FEEDBACK_COLUMNS)
    if not files:
        typed = ", ".join(f"null::{kind} as {c}" for c, kind in FEEDBACK_COLUMNS.items())
        con.sql(f"select null::varchar as source_user, {typed} limit 0").create_view("feedback")
        return
    con.execute("create or replace temp table feedback_files (filename varchar, source_user varchar)")
    con.executemany("insert into feedback_files values (?, ?)", [[str(f.path), f.user] for f in files])
    expr, paths = read_expr(list(files), FEEDBACK)
    con.sql(f"select u.source_user, {cols} from {expr} r join feedback_files u using (filename)",
            params=_bind(expr, paths, FEEDBACK)).create_view("feedback")


def _generic_projection(rel: duckdb.DuckDBPyRelation, mapping: dict[str, str]) -> duckdb.DuckDBPyRelation:
    """Rename mapped source columns to fixed names (identifiers validated and quoted)."""
    names = {
        "user": "user_raw", "ts": "ts_raw", "track": "track_raw", "played_ms": "played_raw",
        "duration_ms": "duration_raw", "skipped": "skipped_raw", "session": "session_raw",
        "artist": "artist_raw", "title": "title_raw",
    }
    parts = ["src_row", "source_user"]
    for role, alias in names.items():
        col = mapping.get(role)
        parts.append(f'"{col}" as {alias}' if col else f"null::varchar as {alias}")
    return rel.project(", ".join(parts))


def ts_unit(con: duckdb.DuckDBPyConnection) -> str:
    """How the generic ``ts`` column encodes time: 's' / 'ms' epochs, or 'text' / 'timestamp'."""
    kind = sql.one(con, "select typeof(ts_raw) from raw limit 1")
    if kind is None:
        return "text"
    kind = kind[0].upper()
    if kind.startswith("TIMESTAMP") or kind == "DATE":
        return "timestamp"
    if any(k in kind for k in ("INT", "DOUBLE", "FLOAT", "DECIMAL")):
        # the typical value, not the largest: one far-future outlier must not turn seconds into ms
        top = sql.one(con, "select approx_quantile(abs(ts_raw::double), 0.5) from raw where isfinite(ts_raw::double)")[0] or 0
        return "ms" if top > 1e11 else "s"
    return "text"
