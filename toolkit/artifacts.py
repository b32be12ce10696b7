"""Where things live in a workspace, and one reader and one writer per artifact.

    <workspace>/
        catalog.duckdb              an index of datasets and runs for SQL queries, rebuilt from the files
        catalog.lock                taken (flock) while the catalog is rewritten
        datasets/<name>/
            events.parquet          one row per kept play (schema.EVENTS_SCHEMA)
            items.parquet           one row per track id (schema.ITEMS_SCHEMA)
            <split>_<array>.npy     sequence arrays per split (seqs, skips, next_item, next_pos, row_session)
            manifest.json           config, row accounting, summary, input fingerprint, build, versions
        datasets/.tmp-<name>-<pid>  a dataset being built; swapped in whole when complete
        runs/<id>/                  one trained run (RunDir); runs/<id>/.lock is held while it trains
        tmp/                        DuckDB spill files and unpacked archives (`toolkit clean` deletes them)
        locks/dataset-<name>.lock   held (flock) by the prep building <name>; holds its pid
        locks/unpacked.lock         held shared by every prep, exclusive while unpacked archives are deleted

Every file is written to a temporary name in the same folder and renamed into place, so a reader
never sees half a file and an interrupted command leaves the previous version intact; a dataset
is built in a folder of its own and renamed into place whole.  Dataset names and run ids are
checked (``identity.check_name``) before a path is made of them, and commands that only read
never create anything: ``Workspace.create`` is for the ones that write.

The files are the truth: ``toolkit datasets`` and ``toolkit runs`` read the manifests and run
folders (``list_datasets``, ``list_runs``), so a missing, damaged, stale or locked catalog never
changes a listing.  ``record_dataset`` / ``record_run`` rewrite the catalog from those files, one
process at a time (``catalog_lock``), and never fail the command that calls them.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import duckdb
import numpy as np

from toolkit.errors import ArtifactMissingError, DamagedArtifactError, ToolkitError, disk_full, out_of_space
from toolkit.identity import check_name
from toolkit.manifest import Manifest
from toolkit.run_result import TrainResult

ENV_WORKSPACE = "TOOLKIT_WORKSPACE"
DEFAULT_WORKSPACE = "toolkit-workspace"
ARRAYS = ("seqs", "skips", "next_item", "next_pos", "row_session")


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
    def unpacked(self) -> Path:
        """``tmp/unzipped``: archives unpacked for DuckDB, one folder per archive (readers.archive_dir)."""
        return self.tmp / "unzipped"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def unpack_lock(self) -> Path:
        return self.locks / "unpacked.lock"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def catalog_lock(self) -> Path:
        return self.root / "catalog.lock"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

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
    except Exception as exc:
        # a full disk reaches here in many guises (polars, numpy and torch word it their own way);
        # named here, where the file being written is known, it never passes for a damaged file
        if out_of_space(exc) and not isinstance(exc, ToolkitError):
            raise disk_full(target, exc) from exc
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise damaged(path, exc) from exc


def damaged(path: Path, exc: BaseException) -> DamagedArtifactError:
    """The one-line error for a workspace file that does not parse, with the fix for where it lies."""
    parts = path.parts
    if "runs" in parts:
        fix = "delete the run's folder and train it again (`toolkit train`), or pick another run"
    elif "datasets" in parts:
        fix = "run `toolkit prep` again for this dataset (it rewrites every file)"
    else:
        fix = "delete it, or write it again"
    why = (str(exc).strip().splitlines() or [""])[0][:200].split(". ")[0]
    return DamagedArtifactError(f"{path}: cannot be read, the file is damaged or truncated "
                                f"({type(exc).__name__}{': ' + why if why else ''}); {fix}")


def read_frame(path: Path, columns: list[str] | None = None):
    """A dataset's parquet file (events, items) as a polars frame; a damaged file is a one-line error."""
    import polars as pl

    if not path.exists():
        raise ArtifactMissingError(f"{path}: missing; run `toolkit prep` again for this dataset")
    try:
        return pl.read_parquet(path, columns=columns)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        if out_of_space(exc):
            raise
        raise damaged(path, exc) from exc


def read_array(path: Path, mmap: bool = True) -> np.ndarray:
    """Load a sequence array; memory-mapped by default so training never copies it whole."""
    if not path.exists():
        raise ArtifactMissingError(f"{path}: missing; run `toolkit prep` again for this dataset")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # a bad header, or shorter than its header says
        raise damaged(path, exc) from exc
    if not isinstance(array, np.ndarray):  # an .npz archive under an .npy name
        raise damaged(path, TypeError("not a single array"))
    return array


def write_manifest(ds: DatasetDir, manifest: Manifest) -> None:
    write_json(ds.manifest, manifest.to_json())


def read_manifest(ds: DatasetDir) -> Manifest:
    """The dataset's manifest, checked key by key (``Manifest.from_json``): missing, unparseable or
    ill-fitting is a one-line error naming the file and saying to prepare the dataset again."""
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
    return Manifest.from_json(manifest, ds.manifest)


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
    try:
        return [json.loads(line) for line in run.metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError) as exc:
        raise damaged(run.metrics, exc) from exc


def save_torch(path: Path, state: dict) -> None:
    """torch.save to a temp file, then rename: a checkpoint is either whole or absent."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)  # through a Python file, so a full disk surfaces as its OSError (out_of_space)


def load_torch(path: Path) -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers, never pickled code."""
    import torch

    if not path.exists():
        raise ArtifactMissingError(f"{path}: missing; train the run again or pick another run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch says "damaged" in a dozen types (zip, pickle, OS, runtime)
        raise damaged(path, exc) from exc
    if not isinstance(state, dict):
        raise damaged(path, TypeError(f"holds a {type(state).__name__}, not a checkpoint"))
    return state


# ---------------------------------------------------------------------------------------------
# listings (from the files) and the catalog (an index rebuilt from them)

RUN_LOCK = ".lock"  # runs/<id>/.lock: held (flock) by the process training the run; holds its pid
CATALOG_LOCK_TIMEOUT = 30.0  # seconds a command waits for another one rewriting the catalog
RUN_LOCK_WAIT = 1.0  # seconds train retries a run's lock (a listing probes it for an instant)
# seconds a prep waits for another prep of the same dataset: long enough to ride out one that is just
# finishing, short enough that a second terminal hears at once that its prep is refused
DATASET_LOCK_WAIT = 3.0


class CatalogBusyError(ToolkitError):
    """Another process kept the workspace catalog locked past the timeout."""


class RunBusyError(ToolkitError):
    """The run is being trained by another process."""


class DatasetBusyError(ToolkitError):
    """The dataset is being prepared by another process."""


def _flock(path: Path, timeout: float, poll: float = 0.05, shared: bool = False) -> int | None:
    """A descriptor of ``path`` (created if missing) holding its flock (exclusive, or ``shared``), or
    None when another process kept a conflicting lock for ``timeout`` seconds.  Closing the
    descriptor releases the lock (so does the process ending, however it ends)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(poll)
        except BaseException:
            os.close(fd)
            raise


def lock_held(path: Path) -> bool:
    """Whether another open file holds ``path``'s flock.  Creates nothing; probes with a shared lock
    for an instant (``run_lock`` retries for ``RUN_LOCK_WAIT`` seconds, so a probe never refuses a run)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


@contextmanager
def catalog_lock(ws: Workspace, timeout: float = CATALOG_LOCK_TIMEOUT):
    """Hold ``<workspace>/catalog.lock`` (one catalog writer at a time, whichever process)."""
    fd = _flock(ws.catalog_lock, timeout)
    if fd is None:
        raise CatalogBusyError(f"{ws.catalog_lock}: another toolkit command kept the workspace catalog locked for "
                               f"{timeout:g} s; wait for it to finish, or point --workspace at another folder")
    try:
        yield
    finally:
        os.close(fd)


@contextmanager
def run_lock(run: "RunDir", wait: float = RUN_LOCK_WAIT):
    """Hold ``runs/<id>/.lock`` while the run trains, its pid written in it; refused with one line when
    another process holds it.  Released on any exit: return, exception, Ctrl-C, or the process dying."""
    path = run.path / RUN_LOCK
    fd = _flock(path, wait)
    if fd is None:
        raise RunBusyError(f"run {run.id} is being trained by another process{_holder(path)}; wait for it to "
                           "finish, or train another run (e.g. another --seed)")
    with _holding(fd):
        yield


def dataset_lock_path(ws: Workspace, name: str) -> Path:
    """``locks/dataset-<name>.lock``: outside ``datasets/``, whose folders are swapped whole."""
    return ws.locks / f"dataset-{check_name(name, 'dataset')}.lock"


@contextmanager
def dataset_lock(ws: Workspace, name: str, wait: float = DATASET_LOCK_WAIT):
    """Hold dataset ``name``'s lock while prep reads, builds and swaps it in, its pid written in it;
    after ``wait`` seconds of another process holding it, refused with one line naming the dataset
    and that process.  Released on any exit, the process dying included."""
    path = dataset_lock_path(ws, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _flock(path, wait)
    if fd is None:
        raise DatasetBusyError(f"dataset {name} is being prepared by another process{_holder(path)}; wait for it "
                               f"to finish and run the command again, or prepare into another --name")
    with _holding(fd):
        yield


@contextmanager
def unpack_lock(ws: Workspace, shared: bool, wait: float = 0.0):
    """Yield whether ``locks/unpacked.lock`` was taken: shared by every prep while it reads unpacked
    archives, exclusive for deleting them (so nothing is deleted under a prep still reading it)."""
    ws.locks.mkdir(parents=True, exist_ok=True)
    fd = _flock(ws.unpack_lock, wait, shared=shared)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


@contextmanager
def _holding(fd: int):
    """Write this process's pid into a lock file held through ``fd``; clear it and release on exit."""
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)


def _holder(path: Path) -> str:
    """`` (process N, since HH:MM:SS)`` for the process holding the lock at ``path``, as far as known."""
    pid = _lock_pid(path)
    if pid is None:
        return ""
    try:
        since = datetime.fromtimestamp(path.stat().st_mtime).strftime("%H:%M:%S")
    except OSError:
        return f" (process {pid})"
    return f" (process {pid}, since {since})"


def _lock_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


WORK_PREFIX = ".tmp-"  # datasets/.tmp-<name>-<pid>: a dataset being built
TRASH_PREFIX = ".trash-"  # datasets/.trash-<name>-<pid>: the previous version, for the instant of the swap


@dataclass(frozen=True)
class WorkFolder:
    """A dataset work folder (``.tmp-<name>-<pid>`` or ``.trash-<name>-<pid>``) whose process is gone."""

    path: Path
    dataset: str
    restore: bool  # a previous version set aside by a swap cut short, nothing in its place: it goes back


def dead_work_folders(ws: Workspace) -> list[WorkFolder]:
    """The work folders in ``datasets/`` of preps no longer running (this process's own included)."""
    out = []
    for path in sorted(ws.datasets.glob(".*-*")) if ws.datasets.is_dir() else []:
        prefix = next((p for p in (WORK_PREFIX, TRASH_PREFIX) if path.name.startswith(p)), None)
        if prefix is None or not path.is_dir():
            continue
        name, _, pid = path.name[len(prefix):].rpartition("-")
        if not pid.isdigit() or (int(pid) != os.getpid() and pid_alive(int(pid))):
            continue
        restore = (prefix == TRASH_PREFIX and bool(name) and not (ws.datasets / name).exists()
                   and (path / "manifest.json").exists())
        out.append(WorkFolder(path, name, restore))
    return out


def settle_work_folder(folder: WorkFolder) -> None:
    """Put a set-aside previous version back in place, or delete the folder."""
    if folder.restore:
        os.replace(folder.path, folder.path.parent / folder.dataset)
    else:
        shutil.rmtree(folder.path, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _json_or_none(path: Path):
    """The parsed file; None when missing or damaged (a listing shows it, it does not fail on it)."""
    try:
        return read_json(path)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _mtime(*paths: Path) -> datetime | None:
    times = []
    for path in paths:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            pass
    return datetime.fromtimestamp(max(times)) if times else None


def _folders(parent: Path) -> list[Path]:
    """Sub-folders of ``parent``, hidden and temporary ones (names starting with '.') left out."""
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if not p.name.startswith(".") and p.is_dir())


class DatasetRow(TypedDict):
    """A dataset as ``list_datasets`` lists it (and the catalog's ``datasets`` table holds it); the
    summary values are None when its manifest is damaged."""

    name: str
    created: datetime | None  # when its manifest was written
    path: str
    format: str | None
    rows_in: int | None
    rows_kept: int | None
    users: int | None
    sessions: int | None
    items: int | None
    skip_share: float | None
    fingerprint: str | None
    status: str  # ready or damaged


class RunRow(TypedDict):
    """A run as ``list_runs`` lists it (and the catalog's ``runs`` table holds it); what is not known
    yet (an unfinished run) or not readable (a damaged one) is None."""

    id: str
    dataset: str | None
    model: str | None
    feedback: str | None
    seed: int | None
    status: str  # finished, running, failed, interrupted or damaged
    epochs_done: int | None
    best_epoch: int | None
    valid_ndcg10: float | None
    valid_hr10: float | None
    valid_skip_hr10: float | None
    wall_s: float | None
    git_commit: str | None
    updated: datetime | None
    config: dict[str, Any] | None  # config.json's train settings
    valid_metrics: dict[str, float] | None
    path: str


_DATASET_COLS = ("format", "rows_in", "rows_kept", "users", "sessions", "items", "skip_share", "fingerprint")


def _dataset_rows(ws: Workspace) -> list[dict]:
    rows = []
    for folder in _folders(ws.datasets):
        ds = DatasetDir(folder)
        if not ds.manifest.exists():
            continue  # not a dataset (or one whose build never finished)
        manifest = _json_or_none(ds.manifest)
        ok = _fits_manifest(manifest, ds)
        manifest = manifest if ok else {}
        rows.append({"name": ds.name, "created": _mtime(ds.manifest), "path": str(ds.path),
                     **{c: manifest.get(c) for c in _DATASET_COLS}, "status": "ready" if ok else "damaged",
                     "manifest": manifest})
    rows.sort(key=lambda r: r["name"])
    rows.sort(key=lambda r: r["created"] or datetime.min, reverse=True)
    return rows


def _fits_manifest(data, ds: DatasetDir) -> bool:
    """Whether ``data`` (a parsed manifest.json, or None) reads as a ``Manifest``."""
    try:
        Manifest.from_json(data, ds.manifest)
    except DamagedArtifactError:
        return False
    return True


def list_datasets(ws: Workspace, damaged: bool = False) -> list[DatasetRow]:
    """The prepared datasets, read from their manifests, newest first.  A manifest that does not parse
    is left out, or listed with status ``damaged`` when ``damaged`` is true.  Never reads the catalog."""
    return [{k: v for k, v in r.items() if k != "manifest"} for r in _dataset_rows(ws)
            if damaged or r["status"] == "ready"]


def _run_row(run: "RunDir") -> RunRow | None:
    """The listing row of a run folder (None when it is not one): finished runs from result.json, others
    from config.json and the epochs in metrics.jsonl so far, status running (its lock is held),
    interrupted or damaged."""
    if not (run.config.exists() or run.result.exists()):
        return None
    config, result = _json_or_none(run.config), _json_or_none(run.result)
    config = config if isinstance(config, dict) else None
    result = result if isinstance(result, dict) else None
    cfg = config.get("train") if config and isinstance(config.get("train"), dict) else {}
    row: RunRow = {
        "id": run.id, "dataset": cfg.get("dataset"), "model": cfg.get("model"), "feedback": cfg.get("feedback"),
        "seed": cfg.get("seed"), "status": "damaged", "epochs_done": None, "best_epoch": None, "valid_ndcg10": None,
        "valid_hr10": None, "valid_skip_hr10": None, "wall_s": None, "git_commit": None,
        "updated": _mtime(run.config, run.metrics, run.result), "config": cfg or None, "valid_metrics": None,
        "path": str(run.path)}  # status: set below in every case
    broken = (run.config.exists() and config is None) or (run.result.exists() and result is None)
    if result is not None and result.get("status") == "finished" and not broken:
        valid = result.get("valid") if isinstance(result.get("valid"), dict) else {}
        row.update({k: result.get(k, row[k]) for k in ("dataset", "model", "feedback", "seed", "epochs_done",
                                                        "best_epoch", "wall_s", "git_commit")})
        row.update(status="finished", valid_metrics=valid or None, valid_ndcg10=valid.get("ndcg@10"),
                   valid_hr10=valid.get("hr@10"), valid_skip_hr10=valid.get("skip_hr@10"))
        return row
    if lock_held(run.path / RUN_LOCK):
        row["status"] = "running"
    elif result is not None and result.get("status") == "failed":
        row["status"] = "failed"
    elif config is None or broken:
        row["status"] = "damaged"
    else:
        row["status"] = "interrupted"
    try:
        epochs = [m for m in read_metrics(run) if isinstance(m, dict) and isinstance(m.get("epoch"), int)]
    except (OSError, ValueError, UnicodeDecodeError):
        epochs = []
    scored = [m for m in epochs if isinstance(m.get("valid_ndcg@10"), (int, float))]
    if epochs:
        row["epochs_done"] = max(m["epoch"] for m in epochs) + 1
    if scored:  # the best epoch so far
        best = max(scored, key=lambda m: m["valid_ndcg@10"])
        row.update(best_epoch=best["epoch"], valid_ndcg10=best.get("valid_ndcg@10"), valid_hr10=best.get("valid_hr@10"),
                   valid_skip_hr10=best.get("valid_skip_hr@10"))
    return row


def list_runs(ws: Workspace) -> list[RunRow]:
    """Every run folder with config.json or result.json, newest first, with its status: finished,
    running (another process holds its lock), failed (stopped by a NaN / inf loss), interrupted
    (unfinished, nobody training it) or damaged.
    Read from the run folders; never reads the catalog."""
    rows = [row for folder in _folders(ws.runs) if (row := _run_row(RunDir(folder))) is not None]
    rows.sort(key=lambda r: r["id"])
    rows.sort(key=lambda r: r["updated"] or datetime.min, reverse=True)
    return rows


_CATALOG_DDL = """
create or replace table datasets (
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
    status varchar,
    manifest json
)
"""

_RUNS_DDL = """
create or replace table runs (
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
    path varchar,
    config json,
    valid_metrics json
)
"""
_DATASET_TABLE = ("name", "created", "path", *_DATASET_COLS, "status", "manifest")
_RUN_TABLE = ("id", "dataset", "model", "feedback", "seed", "status", "epochs_done", "best_epoch", "valid_ndcg10",
              "valid_hr10", "valid_skip_hr10", "wall_s", "git_commit", "updated", "path", "config", "valid_metrics")
_JSON_COLS = {"manifest", "config", "valid_metrics"}


def _cell(row: dict, col: str):
    value = row.get(col)
    return json.dumps(value, default=float) if col in _JSON_COLS and value is not None else value


def _write_catalog(ws: Workspace, datasets: list[dict], runs: list[dict]) -> None:
    with duckdb.connect(str(ws.catalog)) as con:
        con.execute("begin transaction")
        for ddl, table, cols, rows in ((_CATALOG_DDL, "datasets", _DATASET_TABLE, datasets),
                                       (_RUNS_DDL, "runs", _RUN_TABLE, runs)):
            con.execute(ddl)
            if rows:
                con.executemany(f"insert into {table} ({', '.join(cols)}) values ({', '.join('?' * len(cols))})",
                                [[_cell(r, c) for c in cols] for r in rows])
        con.execute("commit")


def refresh_catalog(ws: Workspace, timeout: float = CATALOG_LOCK_TIMEOUT) -> bool:
    """Rewrite ``catalog.duckdb`` from the dataset manifests and run folders, one process at a time.

    Best effort, never an error: the listings read the files, so a catalog that cannot be written now
    (another toolkit command kept ``catalog.lock`` past ``timeout``, a process outside the toolkit holds
    the database open, the disk refuses) is left as it was and the next write brings it up to date.  A
    damaged catalog (not a DuckDB file) is deleted and written anew.  True when it was written."""
    try:
        with catalog_lock(ws, timeout):
            datasets, runs = _dataset_rows(ws), list_runs(ws)
            try:
                _write_catalog(ws, datasets, runs)
            except duckdb.IOException as exc:
                if "lock" in str(exc).lower():
                    return False  # open in another program; the next write catches up
                for path in (ws.catalog, ws.catalog.with_name(ws.catalog.name + ".wal")):
                    path.unlink(missing_ok=True)
                _write_catalog(ws, datasets, runs)
    except (CatalogBusyError, duckdb.Error, OSError):
        return False
    return True


def record_dataset(ws: Workspace, ds: DatasetDir, manifest: Manifest) -> bool:
    """Bring the catalog up to date after ``ds`` was prepared (``refresh_catalog``; never fails)."""
    return refresh_catalog(ws)


def record_run(ws: Workspace, result: TrainResult) -> bool:
    """Bring the catalog up to date after a run finished (``refresh_catalog``; never fails)."""
    return refresh_catalog(ws)
