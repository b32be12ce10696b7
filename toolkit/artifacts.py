"""Where things live in a workspace, and one reader and one writer per artifact.

    <workspace>/
        catalog.duckdb              datasets and runs, so `report` and `runs` are queries
        datasets/<name>/
            events.parquet          one row per kept play (schema.EVENTS_SCHEMA)
            items.parquet           one row per track id (schema.ITEMS_SCHEMA)
            <split>_<array>.npy     sequence arrays per split (seqs, skips, next_item, next_pos, row_session)
            manifest.json           config, row accounting, summary, input fingerprint, build, versions
        datasets/.tmp-<name>-<pid>  a dataset being built; swapped in whole when complete
        runs/<id>/                  one trained run (RunDir)
        tmp/                        DuckDB spill files and unpacked archives (safe to delete)

Every file is written to a temporary name in the same folder and renamed into place, so a reader
never sees half a file and an interrupted command leaves the previous version intact; a dataset
is built in a folder of its own and renamed into place whole.  Dataset names and run ids are
checked (``identity.check_name``) before a path is made of them, and commands that only read
never create anything: ``Workspace.create`` is for the ones that write.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from toolkit.errors import ArtifactMissingError
from toolkit.identity import check_name

ENV_WORKSPACE = "TOOLKIT_WORKSPACE"
DEFAULT_WORKSPACE = "toolkit-workspace"
ARRAYS = ("seqs", "skips", "next_item", "next_pos", "row_session")
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, root: Path | str | None) -> "Workspace":
        """The workspace given, else ``$TOOLKIT_WORKSPACE``, else ``./toolkit-workspace``.  Nothing is
        created: a command that writes calls ``create``."""
        chosen = root or os.environ.get(ENV_WORKSPACE) or DEFAULT_WORKSPACE
        return cls(Path(chosen).expanduser().resolve())

    def create(self) -> "Workspace":
        """Make the workspace's folders (for commands that write into it)."""
        self.datasets.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.duckdb"

    def dataset(self, name: str) -> "DatasetDir":
        return DatasetDir(self.datasets / check_name(name, "dataset"))


@dataclass(frozen=True)
class DatasetDir:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def events(self) -> Path:
        return self.path / "events.parquet"

    @property
    def items(self) -> Path:
        return self.path / "items.parquet"

    @property
    def manifest(self) -> Path:
        return self.path / "manifest.json"

    def array(self, split: str, name: str) -> Path:
        return self.path / f"{split}_{name}.npy"


def safe_name(text: str) -> str:
    """``text`` made a usable dataset name (runs of other characters become '-'); '' when nothing is left."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")


@contextmanager
def atomic_path(target: Path):
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def write_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def read_array(path: Path, mmap: bool = True) -> np.ndarray:
    """Load a sequence array; memory-mapped by default so training never copies it whole."""
    if not path.exists():
        raise ArtifactMissingError(f"{path}: missing; run `toolkit prep` again for this dataset")
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def write_manifest(ds: DatasetDir, manifest: dict) -> None:
    write_json(ds.manifest, {"manifest_version": MANIFEST_VERSION, **manifest})


def read_manifest(ds: DatasetDir) -> dict:
    if not ds.manifest.exists():
        raise ArtifactMissingError(
            f"{ds.path}: no prepared dataset here (manifest.json missing); run `toolkit prep LOGS --name {ds.name}`"
        )
    try:
        manifest = read_json(ds.manifest)
    except (ValueError, UnicodeDecodeError):
        manifest = None
    if not isinstance(manifest, dict):
        raise ArtifactMissingError(f"{ds.manifest}: does not parse; run `toolkit prep LOGS --name {ds.name}` again")
    return manifest


def array_problem(path: Path, shape: tuple | None = None, dtype: str | None = None) -> str | None:
    """Why the .npy file at ``path`` is not whole (missing, bad header, shorter than its header says,
    or another shape / dtype than expected; ``None`` in ``shape`` matches any length), else None.
    Reads the header only."""
    if not path.exists():
        return f"{path.name} is missing"
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            got_shape, _fortran, got_dtype = header(fh)
            start = fh.tell()
    except (ValueError, OSError, EOFError):
        return f"{path.name} has no readable array header"
    expected_size = start + int(np.prod(got_shape, dtype=np.int64)) * got_dtype.itemsize
    if path.stat().st_size != expected_size:
        return f"{path.name} is truncated ({path.stat().st_size:,} of {expected_size:,} bytes)"
    if shape is not None and (len(shape) != len(got_shape) or any(a is not None and a != b
                                                                    for a, b in zip(shape, got_shape))):
        return f"{path.name} has shape {tuple(got_shape)}, not {tuple(shape)}"
    if dtype is not None and got_dtype.str != dtype:
        return f"{path.name} has dtype {got_dtype.str}, not {dtype}"
    return None


_CATALOG_DDL = """
create table if not exists datasets (
    name varchar primary key,
    created timestamp,
    path varchar,
    format varchar,
    rows_in bigint,
    rows_kept bigint,
    users bigint,
    sessions bigint,
    items bigint,
    skip_share double,
    fingerprint varchar,
    manifest json
)
"""


def record_dataset(ws: Workspace, ds: DatasetDir, manifest: dict) -> None:
    """Add or replace the dataset's row in the workspace catalog."""
    with duckdb.connect(str(ws.catalog)) as con:
        con.execute(_CATALOG_DDL)
        con.execute("delete from datasets where name = ?", [ds.name])
        con.execute(
            "insert into datasets values (?, now()::timestamp, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ds.name, str(ds.path), manifest["format"], manifest["rows_in"], manifest["rows_kept"],
                manifest["users"], manifest["sessions"], manifest["items"], manifest["skip_share"],
                manifest["fingerprint"], json.dumps(manifest, default=str),
            ],
        )


def list_datasets(ws: Workspace) -> list[dict]:
    """Catalogued datasets, newest first."""
    if not ws.catalog.exists():
        return []
    with duckdb.connect(str(ws.catalog), read_only=True) as con:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
        if "datasets" not in tables:
            return []
        rel = con.sql("select * exclude (manifest) from datasets order by created desc, name")
        return [dict(zip(rel.columns, row)) for row in rel.fetchall()]


@dataclass(frozen=True)
class RunDir:
    """``runs/<id>/``: config.json, metrics.jsonl, checkpoint.pt (resume), best.pt, result.json."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def result(self) -> Path:
        return self.path / "result.json"


def run_dir(ws: Workspace, run_id: str) -> RunDir:
    return RunDir(ws.root / "runs" / check_name(run_id, "run"))


def append_metrics(run: RunDir, row: dict) -> None:
    """Add one line to metrics.jsonl (rewritten atomically, so a crash never leaves half a line)."""
    old = run.metrics.read_text(encoding="utf-8") if run.metrics.exists() else ""
    with atomic_path(run.metrics) as tmp:
        tmp.write_text(old + json.dumps(row, sort_keys=True, default=float) + "\n", encoding="utf-8")


def read_metrics(run: RunDir) -> list[dict]:
    if not run.metrics.exists():
        return []
    return [json.loads(line) for line in run.metrics.read_text(encoding="utf-8").splitlines() if line.strip()]


def save_torch(path: Path, state: dict) -> None:
    """torch.save to a temp file, then rename: a checkpoint is either whole or absent."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_torch(path: Path) -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers, never pickled code."""
    import torch

    if not path.exists():
        raise ArtifactMissingError(f"{path}: missing; train the run again or pick another run")
    return torch.load(path, map_location="cpu", weights_only=True)


_RUNS_DDL = """
create table if not exists runs (
    id varchar primary key,
    dataset varchar,
    model varchar,
    feedback varchar,
    seed integer,
    status varchar,
    epochs_done integer,
    best_epoch integer,
    valid_ndcg10 double,
    valid_hr10 double,
    valid_skip_hr10 double,
    wall_s double,
    git_commit varchar,
    updated timestamp,
    config json,
    valid_metrics json
)
"""


def record_run(ws: Workspace, row: dict) -> None:
    """Add or replace the run's row in the workspace catalog."""
    cols = ["id", "dataset", "model", "feedback", "seed", "status", "epochs_done", "best_epoch", "valid_ndcg10",
            "valid_hr10", "valid_skip_hr10", "wall_s", "git_commit", "config", "valid_metrics"]
    with duckdb.connect(str(ws.catalog)) as con:
        con.execute(_RUNS_DDL)
        con.execute("delete from runs where id = ?", [row["id"]])
        values = [json.dumps(row[c], default=float) if c in ("config", "valid_metrics") else row.get(c) for c in cols]
        con.execute(
            f"insert into runs ({', '.join(cols)}, updated) values ({', '.join('?' * len(cols))}, now()::timestamp)",
            values,
        )


def list_runs(ws: Workspace) -> list[dict]:
    """Catalogued runs, newest first."""
    if not ws.catalog.exists():
        return []
    with duckdb.connect(str(ws.catalog), read_only=True) as con:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
        if "runs" not in tables:
            return []
        rel = con.sql("select * from runs order by updated desc, id")
        return [dict(zip(rel.columns, row)) for row in rel.fetchall()]
