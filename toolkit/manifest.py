"""A prepared dataset's ``manifest.json`` as a record: what prep wrote, checked once when it is read.

``prep`` builds a ``Manifest`` and ``artifacts.write_manifest`` writes its JSON form; every reader
gets the record from ``artifacts.read_manifest``, which checks each key's presence and type there,
so a manifest that does not fit fails in one line naming the file, never as a ``KeyError`` three
modules later.  Field names are the JSON keys, and ``to_json`` gives back exactly the dict written
before this record existed (the file stays byte-identical).

Keys that older manifests lack (a manifest from before dataset builds were recorded, say) are
optional fields holding None; ``to_json`` leaves them out again.  The skip rules and the per-split
counts are small records of their own; the split diagnostics and array headers stay JSON-shaped
(``TypedDict``), as they travel on into reports unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from toolkit.errors import DamagedArtifactError

if TYPE_CHECKING:  # annotations only: reading a manifest loads no query engine
    from toolkit.splits import SplitDiagnostics


class ArrayHeader(TypedDict):
    """The header of one sequence array as prep wrote it (checked against the file, never loaded)."""

    shape: list[int]
    dtype: str  # numpy's dtype.str, e.g. "<i4"


@dataclass(frozen=True)
class SplitCounts:
    """One split of a prepared dataset: its sessions, plays, sequence rows and skipped plays."""

    sessions: int
    events: int
    rows: int  # rows of the <split>_*.npy arrays (a long session spans several)
    skips: int

    def to_json(self) -> dict:
        return {"sessions": self.sessions, "events": self.events, "rows": self.rows, "skips": self.skips}


@dataclass(frozen=True)
class SkipRule:
    """How the plays got their skip labels: plays per rule, each rule in words, and (where the source
    recorded its own flag) each fallback rule's agreement with that flag."""

    plays_by_rule: dict[str, int]
    rules: dict[str, str]
    agreement: dict[str, dict] | None = None  # rule -> sql/skip_rule_agreement.sql's row

    def to_json(self) -> dict:
        out: dict[str, Any] = {"plays_by_rule": dict(self.plays_by_rule), "rules": dict(self.rules)}
        if self.agreement is not None:
            out["agreement"] = self.agreement
        return out


@dataclass(frozen=True)
class Manifest:
    """``datasets/<name>/manifest.json``: the summary, row accounting, splits, options and provenance."""

    name: str
    format: str  # the input format read (generic, spotify-extended, ...)
    fingerprint: str  # sha256 of the input's content
    # row accounting: rows_in == rows_kept + sum(rows_dropped.values()), checked by prep
    rows_in: int
    rows_kept: int
    rows_dropped: dict[str, int]  # drop reason -> rows
    users: int
    sessions: int
    items: int  # catalogue size: item ids 1..items
    skip_share: float
    split_mode: str  # time, listener or last
    splits: dict[str, SplitCounts]  # train, valid, test
    max_len: int  # width of the sequence arrays
    # absent from manifests of earlier toolkit versions (None here, left out of the JSON)
    format_version: int | None = None
    pipeline: str | None = None  # prep.PIPELINE of the prep that wrote it
    build: str | None = None  # identity.build_key; computed by identity.build_of where absent
    run_ids: str | None = None  # "input" (runs keep the ids of the first build) or "build"; absent = input
    config: dict | None = None  # asdict(PrepConfig)
    files: int | None = None
    files_skipped: list[dict] | None = None  # {"file", "reason"} per input file not read
    reading: dict | None = None  # listeners, feedback_files, notes (prep._reading)
    versions: dict | None = None  # python and library versions
    arrays: dict[str, ArrayHeader] | None = None  # file name -> header
    skip_rule: SkipRule | None = None
    split_reason: str | None = None
    split_diagnostics: dict[str, SplitDiagnostics] | None = None
    split_warnings: list[str] | None = None
    first_play: str | None = None
    last_play: str | None = None
    median_session_len: float | None = None
    mean_session_len: float | None = None
    cold_items: int | None = None  # tracks without a train play
    cold_events: int | None = None  # their plays

    @property
    def last_only(self) -> bool:
        """Whether only each session's last play is a query (the ``last`` split of untimed logs)."""
        return self.split_mode == "last"

    def to_json(self) -> dict:
        """The manifest as written to manifest.json (``manifest_version`` aside: the writer adds it)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in _OPTIONAL:
                continue
            if f.name == "splits":
                value = {split: counts.to_json() for split, counts in value.items()}
            elif f.name == "skip_rule":
                value = value.to_json()
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: Any, path: Path | str) -> Manifest:
        """The record of ``data`` (manifest.json parsed), or a one-line error naming ``path``: a key
        missing or of the wrong type means the file is damaged or not a manifest of this toolkit."""
        if not isinstance(data, dict):
            raise _unfit(path, data, f"holds a {type(data).__name__}, not an object")
        values: dict[str, Any] = {}
        for name, kind in _TYPES.items():
            if name not in data or (data[name] is None and name in _OPTIONAL):
                if name not in _OPTIONAL:
                    raise _unfit(path, data, f"has no {name!r}")
                continue
            value = data[name]
            if not _fits(value, kind):
                raise _unfit(path, data, f"{name!r} is {_shown(value)}, not {_KIND_WORDS[kind]}")
            values[name] = value
        values["splits"] = {split: _split_counts(path, data, split, counts) for split, counts in data["splits"].items()}
        if "skip_rule" in values:
            values["skip_rule"] = _skip_rule(path, data, values["skip_rule"])
        return cls(**values)


_OPTIONAL = frozenset(f.name for f in fields(Manifest) if f.default is None)
# the JSON type of each key: int (never bool), float (int too), str, dict, list
_TYPES = {"name": str, "format": str, "fingerprint": str, "rows_in": int, "rows_kept": int, "rows_dropped": dict,
          "users": int, "sessions": int, "items": int, "skip_share": float, "split_mode": str, "splits": dict,
          "max_len": int, "format_version": int, "pipeline": str, "build": str, "run_ids": str, "config": dict,
          "files": int, "files_skipped": list, "reading": dict, "versions": dict, "arrays": dict, "skip_rule": dict,
          "split_reason": str, "split_diagnostics": dict, "split_warnings": list, "first_play": str,
          "last_play": str, "median_session_len": float, "mean_session_len": float, "cold_items": int,
          "cold_events": int}
_KIND_WORDS = {int: "a whole number", float: "a number", str: "text", dict: "an object", list: "a list"}
assert set(_TYPES) == {f.name for f in fields(Manifest)}, "every manifest field has its JSON type"


def _fits(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False  # JSON true / false is no count
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"a {type(value).__name__}"


def _unfit(path: Path | str, data: Any, what: str) -> DamagedArtifactError:
    name = data.get("name") if isinstance(data, dict) and isinstance(data.get("name"), str) else None
    again = f"toolkit prep LOGS --name {name}" if name else "toolkit prep LOGS"
    return DamagedArtifactError(f"{path}: not a manifest this toolkit can read ({what}); the dataset is damaged or "
                                f"from another version: run `{again}` again")


def _split_counts(path: Path | str, data: dict, split: str, counts: Any) -> SplitCounts:
    names = [f.name for f in fields(SplitCounts)]
    if not isinstance(counts, dict) or not all(_fits(counts.get(n), int) for n in names):
        raise _unfit(path, data, f"'splits' -> {split!r} lacks whole numbers of {', '.join(names)}")
    return SplitCounts(**{n: counts[n] for n in names})


def _skip_rule(path: Path | str, data: dict, rule: dict) -> SkipRule:
    by_rule, words = rule.get("plays_by_rule"), rule.get("rules")
    agreement = rule.get("agreement")
    if not (isinstance(by_rule, dict) and all(_fits(n, int) for n in by_rule.values()) and isinstance(words, dict)
            and (agreement is None or isinstance(agreement, dict))):
        raise _unfit(path, data, "'skip_rule' lacks its plays_by_rule and rules")
    return SkipRule(plays_by_rule=by_rule, rules=words, agreement=agreement)
