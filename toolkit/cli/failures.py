"""The words for an expected failure: a ToolkitError, a full, read-only or forbidden disk, a missing
GPU, a locked catalog, a damaged file.  ``explain`` gives the one line the error boundary
(``toolkit.cli.common.friendly``) prints, or None for a bug."""

from __future__ import annotations

import errno
import json
import pickle
import re
import sys
import traceback
import zipfile
from pathlib import Path

from toolkit.errors import ToolkitError, out_of_space

_WORKSPACE_FIX = "or point --workspace (TOOLKIT_WORKSPACE) at another folder"
_DISK = {
    errno.ENOSPC: f"no space left on the disk: free disk space, {_WORKSPACE_FIX}",
    errno.EDQUOT: f"disk quota exceeded: free disk space, {_WORKSPACE_FIX}",
    errno.EROFS: f"the file system is read-only: {_WORKSPACE_FIX.removeprefix('or ')} that is writable",
    errno.EACCES: f"permission denied: fix the permissions, {_WORKSPACE_FIX}",
    errno.EPERM: f"operation not permitted: fix the permissions, {_WORKSPACE_FIX}",
    errno.ENOENT: "no such file or folder: check the path",
}
_GPU_MISSING = ("Torch not compiled with CUDA", "no NVIDIA driver", "no CUDA-capable device",
                "CUDA driver version is insufficient", "CUDA-capable device(s) is/are busy or unavailable")
# exceptions that, raised while a file is read, mean the file is damaged or not what it claims
_DAMAGED = (json.JSONDecodeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, UnicodeDecodeError)
_READERS = {"read_json", "read_array", "read_manifest", "read_metrics", "load_torch", "load_split"}


def explain(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit status) for an expected failure; None for a bug."""
    if isinstance(exc, ToolkitError):
        return str(exc), exc.exit_code
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
        where = _quoted_path(str(exc)) or "the workspace catalog"
        pid = re.search(r"\(PID (\d+)\)", str(exc))
        by = f" by process {pid.group(1)}" if pid else " by another process"
        return (f"{where}: locked{by} (another toolkit command on this workspace); wait for it to finish, "
                f"{_WORKSPACE_FIX}"), 1
    if duckdb is not None and isinstance(exc, duckdb.OutOfMemoryException):
        return (f"DuckDB ran out of memory ({first_line(exc)}): raise `toolkit prep --memory-limit` "
                "(e.g. 4GB) or close other programs"), 1
    if isinstance(exc, OSError) and exc.errno in _DISK:
        return f"{_path_of(exc) or 'a workspace file'}: {_DISK[exc.errno]}", 1
    if out_of_space(exc):  # a library's own words for a full disk (a DuckDB spill file, say): never "damaged"
        return f"{_path_of(exc) or 'a workspace file'}: {_DISK[errno.ENOSPC]}", 1
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch.cuda, "OutOfMemoryError", ())):
        return ("the GPU ran out of memory: lower --batch-size (or --negatives, --d-model), "
                "or train with --device cpu"), 1
    if torch is not None and isinstance(exc, (RuntimeError, AssertionError)) and any(
            s in str(exc) for s in _GPU_MISSING):
        return (f"--device cuda: no usable CUDA GPU here ({first_line(exc)}); use --device cpu, "
                "or --device auto to take a GPU only when one is present"), 1
    damaged = _damaged(exc)
    if damaged:
        return damaged, 1
    if isinstance(exc, OSError) and exc.errno is not None:  # the disk or system, not the code
        return f"{_path_of(exc) or 'a file'}: {exc.strerror or first_line(exc)}", 1
    return None


def _damaged(exc: BaseException) -> str | None:
    """The line for a damaged or truncated file being read, when the failure is one and names a file."""
    duckdb = sys.modules.get("duckdb")
    library = type(exc).__module__.split(".")[0]
    reading = (isinstance(exc, _DAMAGED) or library in ("pyarrow", "polars")
               or (duckdb is not None and isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException)))
               or (isinstance(exc, (ValueError, RuntimeError)) and _raised_reading(exc)))
    path = _path_of(exc) if reading else None
    if path is None:
        return None
    parts = Path(path).parts
    if "runs" in parts:
        fix = "delete the run's folder and train it again (`toolkit train`), or pick another run"
    elif "datasets" in parts:
        fix = "run `toolkit prep` again for this dataset (it rewrites every file)"
    else:
        fix = "check the file (export or download it again)"
    why = first_line(exc).split(". ")[0]  # torch's unpickling message goes on for a paragraph
    return f"{path}: cannot be read, the file is damaged or truncated ({type(exc).__name__}: {why}); {fix}"


def _raised_reading(exc: BaseException) -> bool:
    """Whether a numpy / torch file reader, or one of the toolkit's artifact readers, raised ``exc``."""
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        file = frame.f_code.co_filename.replace("\\", "/")
        name = file.rsplit("/", 1)[-1]
        if frame.f_code.co_name in _READERS or file.endswith("torch/serialization.py") or (
                "/numpy/" in file and any(k in name for k in ("format", "npyio", "memmap"))):
            return True
    return False


def _path_of(exc: BaseException) -> str | None:
    """The file a failure is about: the exception's own, one quoted in its message, else the path the
    innermost toolkit function (below the command itself) was working on."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
    quoted = _quoted_path(str(exc))
    if quoted:
        return quoted
    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    for frame in reversed(frames):
        if not _library_frame(Path(frame.f_code.co_filename)):
            continue
        values = dict(frame.f_locals)
        for name in ("path", "target", "tmp", "file", "cache"):
            if isinstance(values.get(name), Path):
                return str(values[name])
        for value in values.values():
            if isinstance(value, Path):
                return str(value)
            if isinstance(getattr(value, "path", None), Path):  # a DatasetDir or RunDir
                return str(value.path)
    return None


_CLI = Path(__file__).resolve().parent
_PACKAGE = _CLI.parent


def _library_frame(file: Path) -> bool:
    """Whether ``file`` is the toolkit's library (any of its modules, not the command line's)."""
    return _PACKAGE in file.parents and _CLI not in file.parents


def _quoted_path(text: str) -> str | None:
    m = re.search(r"[\"']([^\"']+\.(?:duckdb|parquet|npy|npz|json|jsonl|pt|csv|zip|tsv|txt|wal))[\"']", text)
    return m.group(1) if m else None


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else "(no message)"
    return text if len(text) <= 300 else text[:297] + "..."
