"""kill -9 at each write phase of prep and train: what is left behind is whole, listed truthfully, and the
same command run again finishes the job.

Each case starts ``python -m toolkit ...`` in a subprocess, polls its workspace for a file or folder
that marks a write phase (prep's build folder ``datasets/.tmp-*`` and the files written into it; a
run's ``.lock``, ``metrics.jsonl``, ``best.pt``, ``checkpoint.pt``), sends SIGKILL the moment it
appears, and then checks the workspace.  A process that finishes before its trigger fails the case
(the input is too small for the phase), it never passes by accident.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

from toolkit.artifacts import RUN_LOCK, Workspace, list_datasets, list_runs, lock_held, read_json, read_metrics
from toolkit.cli import app
from toolkit.manifest import Manifest
from toolkit.prep import _existing

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny_logs.csv"
POLL_S = 0.01
TRIGGER_TIMEOUT_S = 60.0
TRAIN = ["--d-model", "16", "--n-layers", "1", "--batch-size", "4", "--epochs", "6", "--negatives", "3",
         "--patience", "10", "--device", "cpu"]
TIMING = ("seconds", "rows_per_s")


def _env(ws: Path) -> dict:
    env = {**os.environ, "TOOLKIT_WORKSPACE": str(ws), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return env


def toolkit(ws: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m toolkit ARGS`` to the end in workspace ``ws``."""
    return subprocess.run([sys.executable, "-m", "toolkit", *args], cwd=ROOT, env=_env(ws), capture_output=True,
                          text=True, timeout=timeout)


def kill_at(ws: Path, args: list[str], trigger: Callable[[], bool], what: str) -> None:
    """Start ``python -m toolkit ARGS``, poll every 10 ms until ``trigger()`` holds, SIGKILL the process
    and reap it.  Fails when the process ends first: the input is too small to catch that phase."""
    proc = subprocess.Popen([sys.executable, "-m", "toolkit", *args], cwd=ROOT, env=_env(ws),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TRIGGER_TIMEOUT_S
    try:
        while not trigger():
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-2000:]
                pytest.fail(f"toolkit {' '.join(args)} ended (rc {proc.returncode}) before {what}; "
                            f"give it a bigger input\n{err}")
            if time.monotonic() > deadline:
                pytest.fail(f"toolkit {' '.join(args)}: {what} did not happen in {TRIGGER_TIMEOUT_S:g} s")
            time.sleep(POLL_S)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL, f"toolkit {' '.join(args)} ended before the kill at {what}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def exists(pattern: str, root: Path) -> Callable[[], bool]:
    return lambda: any(True for _ in root.glob(pattern))


def listing(ws: Path, command: str) -> str:
    """The output of ``toolkit datasets`` / ``toolkit runs`` (in process, wide enough for every column)."""
    result = CliRunner().invoke(app, [command, "--workspace", str(ws)], terminal_width=250,
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


# ------------------------------------------------------------------------------------------------
# prep


@pytest.fixture(scope="module")
def bigger_log(tmp_path_factory) -> Path:
    """A synthetic log big enough that prep spends a while in its build folder."""
    out = tmp_path_factory.mktemp("logs") / "synth.parquet"
    done = toolkit(out.parent, "synth", str(out), "--users", "60", "--plays", "60000", "--tracks", "800")
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def tiny_prepared(tmp_path_factory) -> Path:
    """A workspace with dataset ``tiny`` prepared from the tiny log with --max-len 4 (copied per test)."""
    ws = tmp_path_factory.mktemp("prepared") / "ws"
    done = toolkit(ws, "prep", str(TINY), "--name", "tiny", "--max-len", "4")
    assert done.returncode == 0, done.stderr
    return ws


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _leftovers(ws: Path) -> list[str]:
    return sorted(p.name for p in (ws / "datasets").iterdir() if p.name.startswith("."))


PREP_PHASES = {
    "build folder made": "datasets/.tmp-tiny-*",
    "items written": "datasets/.tmp-tiny-*/items.parquet",
    "events written": "datasets/.tmp-tiny-*/events.parquet",
}


@pytest.mark.parametrize("phase", list(PREP_PHASES))
def test_forced_rebuild_killed_keeps_the_previous_dataset(phase, tiny_prepared, bigger_log, tmp_path):
    ws = _copy(tiny_prepared, tmp_path / "ws")
    manifest = ws / "datasets" / "tiny" / "manifest.json"
    before = manifest.read_bytes()
    old = json.loads(before)
    assert old["max_len"] == 4 and old["rows_in"] == 41 and old["rows_kept"] == 38

    kill_at(ws, ["prep", str(bigger_log), "--name", "tiny", "--force", "--min-item-plays", "2"],
            exists(PREP_PHASES[phase], ws), phase)

    assert _leftovers(ws), "the killed build left no work folder: the trigger missed the phase"
    assert manifest.read_bytes() == before  # the old version, untouched
    rows = list_datasets(Workspace.at(ws), damaged=True)
    assert [(r["name"], r["status"], r["rows_in"], r["rows_kept"], r["fingerprint"]) for r in rows] == [
        ("tiny", "ready", 41, 38, old["fingerprint"])]
    shown = listing(ws, "datasets")
    assert "tiny" in shown and "damaged" not in shown and ".tmp" not in shown
    # still readable: its parquet footers and array headers match its manifest
    kept, damage = _existing(Workspace.at(ws).dataset("tiny"))
    assert kept == Manifest.from_json(old, manifest) and damage is None

    again = toolkit(ws, "prep", str(TINY), "--name", "tiny", "--max-len", "4")
    assert again.returncode == 0, again.stderr
    assert _leftovers(ws) == []  # the dead build's folder is cleaned
    assert manifest.read_bytes() == before  # up to date: reused as it was


def test_first_prep_killed_leaves_no_half_dataset(bigger_log, tmp_path):
    ws = tmp_path / "ws"
    kill_at(ws, ["prep", str(bigger_log), "--name", "big", "--max-len", "8"],
            exists("datasets/.tmp-big-*/events.parquet", ws), "events written")

    assert not (ws / "datasets" / "big").exists()
    assert _leftovers(ws)
    assert list_datasets(Workspace.at(ws), damaged=True) == []
    assert "no datasets" in listing(ws, "datasets")
    assert toolkit(ws, "train", "--model", "pop").returncode != 0  # nothing to train on

    again = toolkit(ws, "prep", str(bigger_log), "--name", "big", "--max-len", "8")
    assert again.returncode == 0, again.stderr
    assert _leftovers(ws) == []
    rows = list_datasets(Workspace.at(ws))
    assert [(r["name"], r["status"], r["rows_in"]) for r in rows] == [("big", "ready", 60_000)]
    assert read_json(ws / "datasets" / "big" / "manifest.json")["max_len"] == 8


# ------------------------------------------------------------------------------------------------
# train


@pytest.fixture(scope="module")
def whole_run(tiny_prepared, tmp_path_factory) -> dict:
    """The uninterrupted run of the TRAIN command, in its own workspace: result and metrics."""
    ws = _copy(tiny_prepared, tmp_path_factory.mktemp("whole") / "ws")
    done = toolkit(ws, "train", "--dataset", "tiny", *TRAIN)
    assert done.returncode == 0, done.stderr
    [run] = list((ws / "runs").iterdir())
    return {"id": run.name, "result": read_json(run / "result.json"), "metrics": _untimed(run)}


def _untimed(run: Path) -> list[dict]:
    from toolkit.artifacts import RunDir

    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(RunDir(run))]


def _close(a: dict, b: dict, tol: float = 1e-6) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) and isinstance(y, float):
            if not (abs(x - y) <= tol or (x != x and y != y)):
                return False
        elif x != y:
            return False
    return True


def _run_folder(ws: Path) -> Path:
    [run] = [p for p in (ws / "runs").iterdir() if p.is_dir()]
    return run


def _metric_lines(ws: Path) -> Callable[[], int]:
    def count() -> int:
        for path in (ws / "runs").glob("*/metrics.jsonl"):
            try:
                return len(path.read_text().splitlines())
            except OSError:
                return 0
        return 0
    return count


TRAIN_PHASES = {  # phase: the trigger, given the workspace
    "config written, lock held": lambda ws: exists("runs/*/config.json", ws),
    "first best.pt": lambda ws: exists("runs/*/best.pt", ws),
    "first checkpoint": lambda ws: exists("runs/*/checkpoint.pt", ws),
    "metrics.jsonl grew to 2 epochs": lambda ws: lambda: _metric_lines(ws)() >= 2,
}


@pytest.mark.parametrize("phase", list(TRAIN_PHASES))
def test_killed_run_is_interrupted_and_resumes_to_the_same_result(phase, tiny_prepared, whole_run, tmp_path):
    ws = _copy(tiny_prepared, tmp_path / "ws")
    kill_at(ws, ["train", "--dataset", "tiny", *TRAIN], TRAIN_PHASES[phase](ws), phase)

    run = _run_folder(ws)
    assert run.name == whole_run["id"]
    assert not (run / "result.json").exists()
    assert (run / RUN_LOCK).read_text().strip().isdigit()  # the dead trainer's pid is still written in it
    assert not lock_held(run / RUN_LOCK)  # but the lock died with the process
    [row] = list_runs(Workspace.at(ws))
    assert row["id"] == run.name and row["status"] == "interrupted"
    if phase in ("first checkpoint", "metrics.jsonl grew to 2 epochs"):
        assert row["epochs_done"] >= (1 if phase == "first checkpoint" else 2)
        assert row["epochs_done"] < 6
    shown = listing(ws, "runs")
    assert run.name in shown and "interrupted" in shown and "finished" not in shown

    started = time.monotonic()
    again = toolkit(ws, "train", "--dataset", "tiny", *TRAIN)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "being trained by another process" not in again.stderr
    result = read_json(run / "result.json")
    want = whole_run["result"]
    assert result["status"] == "finished" and result["epochs_done"] == want["epochs_done"] == 6
    assert result["best_epoch"] == want["best_epoch"]
    assert _close(result["valid"], want["valid"]), (result["valid"], want["valid"])
    got_metrics = _untimed(run)
    assert [m["epoch"] for m in got_metrics] == [m["epoch"] for m in whole_run["metrics"]] == list(range(6))
    assert all(_close(a, b) for a, b in zip(got_metrics, whole_run["metrics"])), (got_metrics, whole_run["metrics"])
    [row] = list_runs(Workspace.at(ws))
    assert row["status"] == "finished"
    assert time.monotonic() - started < 60
