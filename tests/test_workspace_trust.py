"""A workspace you can trust, the remaining cases: two preps of one dataset, a full disk during prep
and train, ``toolkit clean``, the advice when every row is dropped, and corrupt or truncated versions
of every artifact given to every verb that reads it.

Each case asserts the outcome: success, or one line on stderr naming the file (or dataset) and the
fix with exit status 1, and never a changed or lost previous result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from toolkit.artifacts import DATASET_LOCK_WAIT, Workspace, dataset_lock_path, list_datasets, list_runs, lock_held
from toolkit.cli import app
from toolkit.clean import STALE_TEMP_S
from toolkit.manifest import Manifest
from toolkit.prep import DROP_FIXES, _existing

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny_logs.csv"
SMALL = ["--d-model", "16", "--n-layers", "1", "--batch-size", "4", "--negatives", "3", "--epochs", "2",
         "--device", "cpu"]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def one_line(text: str, *needles: str) -> str:
    """``text`` is exactly one line, no traceback, and names every needle."""
    text = text.strip()
    assert len(text.splitlines()) == 1 and "Traceback" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def _env(ws: Path) -> dict:
    return {**os.environ, "TOOLKIT_WORKSPACE": str(ws), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def toolkit(ws: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolkit", *map(str, args)], cwd=ROOT, env=_env(ws),
                          capture_output=True, text=True, timeout=timeout)


def hidden(folder: Path) -> list[str]:
    """Temporary and work files anywhere under ``folder`` (what an interrupted write would leave)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*")
                  if p.name not in (".lock",) and (p.name.endswith(".tmp") or p.name.startswith((".tmp-", ".trash-"))))


@pytest.fixture(scope="module")
def bigger_log(tmp_path_factory) -> Path:
    """A synthetic log big enough that prep spends seconds on it and writes more than a megabyte."""
    out = tmp_path_factory.mktemp("logs") / "synth.parquet"
    done = toolkit(out.parent, "synth", out, "--users", "60", "--plays", "60000", "--tracks", "800")
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def trained_ws(tmp_path_factory) -> Path:
    """A workspace with dataset tiny and one finished small SASRec run (copied per test)."""
    ws = tmp_path_factory.mktemp("trained") / "ws"
    for args in (["prep", TINY, "--name", "tiny", "--max-len", "4"], ["train", "--dataset", "tiny", *SMALL]):
        done = toolkit(ws, *args)
        assert done.returncode == 0, done.stderr
    return ws


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _run_folder(ws: Path) -> Path:
    [run] = [p for p in (ws / "runs").iterdir() if (p / "config.json").exists()]
    return run


# ------------------------------------------------------------------------------------------------
# 1. two preps of one dataset name


@pytest.mark.slow
def test_a_second_prep_of_the_same_dataset_waits_then_is_refused_naming_the_first(bigger_log, tmp_path):
    ws = tmp_path / "ws"
    lock = dataset_lock_path(Workspace.at(ws), "big")
    first = subprocess.Popen([sys.executable, "-m", "toolkit", "prep", str(bigger_log), "--name", "big"], cwd=ROOT,
                             env=_env(ws), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not lock_held(lock):
            assert first.poll() is None, f"the first prep ended before it held the lock: {first.stderr.read()}"
            assert time.monotonic() < deadline, "the first prep never took the dataset lock"
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)  # holds the lock for as long as the second one tries
        try:
            started = time.monotonic()
            second = toolkit(ws, "prep", TINY, "--name", "big")
            waited = time.monotonic() - started
        finally:
            first.send_signal(signal.SIGCONT)
        assert second.returncode == 1, second.stdout + second.stderr
        one_line(second.stderr, "dataset big", "being prepared by another process", f"process {first.pid}",
                 "--name")
        assert waited >= DATASET_LOCK_WAIT  # it waited for the lock before refusing
        assert first.wait(timeout=180) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        first.stderr.close()
    # the first prep's dataset, whole; the refused one wrote nothing
    [row] = list_datasets(Workspace.at(ws))
    assert (row["name"], row["rows_in"]) == ("big", 60_000)
    assert hidden(ws) == []
    assert not lock_held(lock)
    again = toolkit(ws, "prep", bigger_log, "--name", "big")  # the lock died with its holder: up to date
    assert again.returncode == 0 and "already prepared" in again.stdout, again.stderr


def test_preps_of_two_names_do_not_wait_for_each_other(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom toolkit.artifacts import Workspace, dataset_lock\n"
         "with dataset_lock(Workspace.at(sys.argv[1]), 'other'):\n    print('ready', flush=True)\n    sys.stdin.read()",
         str(ws.root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=_env(ws.root))
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = invoke("prep", TINY, "--name", "tiny", "--workspace", ws.root)
        assert result.exit_code == 0, result.output
        refused = invoke("prep", TINY, "--name", "other", "--workspace", ws.root)
        assert refused.exit_code == 1
        one_line(refused.stderr, "dataset other", f"process {holder.pid}")
    finally:
        holder.communicate("", timeout=30)
    assert [r["name"] for r in list_datasets(ws)] == ["tiny"]


# ------------------------------------------------------------------------------------------------
# 2. a full disk: a small tmpfs mounted in a user namespace over a copy of the workspace


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d"], capture_output=True)
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(not _can_mount_tmpfs(), reason="cannot mount a tmpfs here (no unprivileged user "
                                 "namespaces); the in-process full-disk cases below still run")

ON_SMALL_DISK = """set -e
mount -t tmpfs -o size="$1"k tmpfs "$2"
cp -a "$3/." "$2/"
shift 4
set +e
python -m toolkit "$@" >/dev/null 2>"$ERR"
echo $? > "$RC"
cp -a "$MNT/." "$OUT/"
"""


def on_small_disk(ws: Path, free_kib: int, *args: str, tmp: Path) -> tuple[int, str, Path]:
    """Run ``toolkit ARGS`` on a copy of ``ws`` in a tmpfs with ``free_kib`` KiB left; return the exit status,
    stderr and a copy of what the workspace held afterwards."""
    used = sum(-(-p.stat().st_size // 4096) * 4 for p in ws.rglob("*") if p.is_file())
    mnt, out = tmp / "mnt", tmp / "after"
    mnt.mkdir()
    out.mkdir()
    env = {**_env(mnt), "ERR": str(tmp / "err"), "RC": str(tmp / "rc"), "MNT": str(mnt), "OUT": str(out)}
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", ON_SMALL_DISK, "small",
                           str(used + free_kib), str(mnt), str(ws), "-", *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int((tmp / "rc").read_text()), (tmp / "err").read_text(), out


@pytest.mark.slow
@needs_tmpfs
def test_disk_full_during_prep_keeps_the_previous_dataset(trained_ws, bigger_log, tmp_path):
    manifest = trained_ws / "datasets" / "tiny" / "manifest.json"
    rc, err, after = on_small_disk(trained_ws, 300, "prep", bigger_log, "--name", "tiny", "--force", tmp=tmp_path)
    assert rc == 1, err
    line = one_line(err, "no space left on the disk", "free disk space", "--workspace")
    assert re.search(r"\.(parquet|npy|json)\b", line), line  # names the file it was writing
    assert (after / "datasets" / "tiny" / "manifest.json").read_bytes() == manifest.read_bytes()
    kept, damage = _existing(Workspace.at(after).dataset("tiny"))
    assert damage is None and kept == Manifest.from_json(json.loads(manifest.read_text()), manifest)
    assert hidden(after) == []  # no work folder, no temporary file
    assert [(r["name"], r["status"]) for r in list_datasets(Workspace.at(after), damaged=True)] == [("tiny", "ready")]


@pytest.mark.slow
@needs_tmpfs
def test_disk_full_during_train_keeps_the_finished_run_and_resumes_later(trained_ws, tmp_path):
    before = _run_folder(trained_ws)
    result = (before / "result.json").read_bytes()
    rc, err, after = on_small_disk(trained_ws, 24, "train", "--dataset", "tiny", *SMALL, "--d-model", "64",
                                   tmp=tmp_path)
    assert rc == 1, err
    line = one_line(err, "no space left on the disk", "free disk space")
    assert re.search(r"runs/[^/]+/(best|checkpoint)\.pt|metrics\.jsonl|config\.json", line), line
    assert hidden(after) == []
    rows = {r["id"]: r["status"] for r in list_runs(Workspace.at(after))}
    assert rows.pop(before.name) == "finished" and list(rows.values()) == ["interrupted"]
    assert (after / "runs" / before.name / "result.json").read_bytes() == result
    # with space again, the same command finishes the run
    again = toolkit(after, "train", "--dataset", "tiny", *SMALL, "--d-model", "64")
    assert again.returncode == 0, again.stderr
    assert sorted(r["status"] for r in list_runs(Workspace.at(after))) == ["finished", "finished"]


# the words each library uses for a full disk, injected where it writes (runs everywhere, tmpfs or not)
def _polars_full(*_a, **_k):
    raise pl.exceptions.ComputeError("parquet: File out of specification: underlying IO error: No space left on "
                                     "device (os error 28)")


def _numpy_full(*_a, **_k):
    raise OSError("58552 requested and 15328 written")


def _torch_full(*_a, **_k):
    try:
        raise OSError(28, "No space left on device")
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None


@pytest.mark.parametrize("target,fake,file", [
    ("polars.DataFrame.write_parquet", _polars_full, "items.parquet"),
    ("numpy.lib.format.write_array_header_1_0", _numpy_full, "_seqs.npy"),  # prep writes arrays header first
])
def test_full_disk_in_a_library_writing_a_dataset_is_one_line(trained_ws, tmp_path, monkeypatch, target, fake, file):
    ws = _copy(trained_ws, tmp_path / "ws")
    before = (ws / "datasets" / "tiny" / "manifest.json").read_bytes()
    monkeypatch.setattr(target, fake)
    result = invoke("prep", TINY, "--name", "tiny", "--max-len", "4", "--force", "--workspace", ws)
    assert result.exit_code == 1
    one_line(result.stderr, file, "no space left on the disk", "free disk space")
    assert (ws / "datasets" / "tiny" / "manifest.json").read_bytes() == before
    assert hidden(ws) == []


def test_full_disk_while_saving_a_checkpoint_is_one_line(trained_ws, tmp_path, monkeypatch):
    ws = _copy(trained_ws, tmp_path / "ws")
    monkeypatch.setattr("torch.save", _torch_full)
    result = invoke("train", "--dataset", "tiny", *SMALL, "--seed", "5", "--workspace", ws)
    assert result.exit_code == 1
    one_line(result.stderr, ".pt", "no space left on the disk", "free disk space")
    assert hidden(ws) == []


def test_full_disk_under_duckdb_is_not_called_unreadable_input(tmp_path, monkeypatch):
    import duckdb

    def full(*_a, **_k):
        raise duckdb.IOException('IO Error: Could not write file "/w/tmp/duckdb/duckdb_temp_block-1.block": '
                                 "No space left on device")

    monkeypatch.setattr("toolkit.prep._play_stream", full)
    result = invoke("prep", TINY, "--workspace", tmp_path / "ws")
    assert result.exit_code == 1
    one_line(result.stderr, "duckdb_temp_block-1.block", "free disk space")


# ------------------------------------------------------------------------------------------------
# 3. toolkit clean, and prep deleting what it unpacked


def _zip_of_tiny(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(TINY, "export/plays.csv")
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_prep_deletes_what_it_unpacked_unless_asked_to_keep_it(tmp_path):
    archive = _zip_of_tiny(tmp_path / "export.zip")
    ws = Workspace.at(tmp_path / "ws")
    assert invoke("prep", archive, "--name", "a", "--workspace", ws.root).exit_code == 0
    assert list(ws.unpacked.iterdir()) == []
    kept = invoke("prep", archive, "--name", "b", "--keep-unpacked", "--workspace", ws.root)
    assert kept.exit_code == 0, kept.output
    [folder] = ws.unpacked.iterdir()
    assert (folder / "export" / "plays.csv").read_bytes() == TINY.read_bytes()


def test_clean_lists_then_deletes_leftovers_and_never_datasets_or_runs(trained_ws, tmp_path):
    ws = Workspace.at(_copy(trained_ws, tmp_path / "ws"))
    archive = _zip_of_tiny(tmp_path / "export.zip")
    assert invoke("prep", archive, "--name", "z", "--keep-unpacked", "--workspace", ws.root).exit_code == 0
    [unpacked] = ws.unpacked.iterdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has ended
    work = ws.datasets / f".tmp-tiny-{dead_pid}"
    work.mkdir()
    (work / "events.parquet").write_bytes(b"x" * 5000)
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    busy = ws.datasets / f".tmp-other-{live.pid}"  # a prep still building: never touched
    busy.mkdir()
    run = _run_folder(ws.root)
    old_tmp, new_tmp = run / ".best.pt.abc.tmp", run / ".checkpoint.pt.def.tmp"
    old_tmp.write_bytes(b"y" * 300)
    new_tmp.write_bytes(b"z" * 300)
    os.utime(old_tmp, (time.time() - STALE_TEMP_S - 60,) * 2)
    spill = ws.tmp / "duckdb"
    spill.mkdir(exist_ok=True)
    (spill / "duckdb_temp_storage-0.tmp").write_bytes(b"s" * 1000)
    keep = {k: v for k, v in _tree(ws.root).items()
            if k.startswith(("datasets/tiny/", "datasets/z/", f"runs/{run.name}/")) and not k.endswith(".tmp")}
    try:
        dry = invoke("clean", "--dry-run", "--workspace", ws.root)
        assert dry.exit_code == 0, dry.output
        text = " ".join(dry.output.split())
        for shown in (unpacked.name, work.name, old_tmp.name, "tmp/duckdb"):
            assert shown in text, (shown, text)
        assert busy.name not in text and new_tmp.name not in text
        assert "dry run: nothing deleted" in text and "4 item(s)" in text
        assert unpacked.exists() and work.exists() and old_tmp.exists() and spill.exists()

        done = invoke("clean", "--workspace", ws.root)
        assert done.exit_code == 0, done.output
        assert "freed" in done.output
        assert not unpacked.exists() and not work.exists() and not old_tmp.exists() and not spill.exists()
        assert busy.exists() and new_tmp.exists()
        after = _tree(ws.root)
        assert {k: after.get(k) for k in keep} == keep  # every dataset and run file, byte for byte
        assert "nothing to clean" in invoke("clean", "--workspace", ws.root).output
    finally:
        live.communicate(b"", timeout=30)


def test_clean_puts_back_a_dataset_set_aside_by_an_interrupted_swap(trained_ws, tmp_path):
    ws = Workspace.at(_copy(trained_ws, tmp_path / "ws"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    os.replace(ws.datasets / "tiny", ws.datasets / f".trash-tiny-{int(dead.stdout)}")
    assert invoke("clean", "--dry-run", "--workspace", ws.root).exit_code == 0
    assert not (ws.datasets / "tiny").exists()
    result = invoke("clean", "--workspace", ws.root)
    assert result.exit_code == 0 and "put back" in " ".join(result.output.split())
    assert [r["name"] for r in list_datasets(ws)] == ["tiny"]


def test_clean_leaves_unpacked_files_of_a_running_prep(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    archive = _zip_of_tiny(tmp_path / "export.zip")
    assert invoke("prep", archive, "--keep-unpacked", "--workspace", ws.root).exit_code == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom toolkit.artifacts import Workspace, unpack_lock\n"
         "with unpack_lock(Workspace.at(sys.argv[1]), shared=True):\n    print('ready', flush=True)\n"
         "    sys.stdin.read()", str(ws.root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env=_env(ws.root))
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = invoke("clean", "--workspace", ws.root)
        assert result.exit_code == 0 and "a prep is running" in result.output, result.output
        assert len(list(ws.unpacked.iterdir())) == 1
        # and a prep finishing meanwhile leaves its unpacked files too, saying so
        other = invoke("prep", archive, "--name", "other", "--workspace", ws.root)
        assert other.exit_code == 0 and "toolkit clean" in " ".join(other.output.split()), other.output
        assert len(list(ws.unpacked.iterdir())) == 1
    finally:
        holder.communicate("", timeout=30)
    assert invoke("clean", "--workspace", ws.root).exit_code == 0
    assert list(ws.unpacked.iterdir()) == []


def test_clean_of_a_missing_workspace_creates_nothing(tmp_path):
    result = invoke("clean", "--workspace", tmp_path / "nowhere")
    assert result.exit_code == 0 and "nothing to clean" in result.output
    assert not (tmp_path / "nowhere").exists()


# ------------------------------------------------------------------------------------------------
# 4. every row dropped: the top reasons, their counts, and the option that changes each


def _counts(line: str) -> dict[str, int]:
    return {reason: int(n.replace(",", "")) for reason, n in re.findall(r"([a-z_]+) ([\d,]+) \(", line)}


@pytest.mark.parametrize("edit,args,reason,option", [
    ("no_users", [], "null_user", "--user"),
    ("future", [], "impossible_time", "--col ts"),
    (None, ["--min-item-plays", "1000"], "rare_track", "--min-item-plays"),
    (None, ["--min-session-len", "1000"], "short_session", "--min-session-len"),
    (None, ["--max-play-ms", "1"], "overlong_play", "--max-play-ms"),
])
def test_when_every_row_is_dropped_the_error_names_the_reasons_and_options(tmp_path, edit, args, reason, option):
    logs = TINY
    if edit is not None:
        frame = pl.read_csv(TINY)
        frame = (frame.with_columns(pl.lit(None, pl.Utf8).alias("user_id")) if edit == "no_users"
                 else frame.with_columns(pl.col("ts").str.replace("^2024", "2999")))
        logs = tmp_path / "plays.csv"
        frame.write_csv(logs)
    result = invoke("prep", logs, *args, "--workspace", tmp_path / "ws")
    assert result.exit_code == 1
    line = one_line(result.stderr, logs.name, "every row was filtered away", reason, option)
    counts = _counts(line)
    assert counts[reason] == max(counts.values()) and 1 <= len(counts) <= 3
    assert all(DROP_FIXES[r] in line for r in counts)  # each reason with its own fix
    assert sum(counts.values()) == 41  # here every reason fits in the top three: they add up to the rows read
    assert not (tmp_path / "ws" / "datasets").exists() or list_datasets(Workspace.at(tmp_path / "ws")) == []


# ------------------------------------------------------------------------------------------------
# 5. corrupt and truncated artifacts x every verb that reads them

ARTIFACTS = {  # name: the files it covers, relative to the workspace ('RUN' is the run's folder)
    "manifest.json": ["datasets/tiny/manifest.json"],
    "arrays (.npy)": ["datasets/tiny/*.npy"],
    "events.parquet": ["datasets/tiny/events.parquet"],
    "items.parquet": ["datasets/tiny/items.parquet"],
    "best.pt": ["RUN/best.pt"],
    "checkpoint.pt": ["RUN/checkpoint.pt"],
    "metrics.jsonl": ["RUN/metrics.jsonl"],
    "result.json": ["RUN/result.json"],
    "config.json": ["RUN/config.json"],
    "catalog.duckdb": ["catalog.duckdb"],
}
DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: np.random.default_rng(len(data)).bytes(len(data)),
}
VERBS = ("datasets", "runs", "train --resume", "report", "recommend")
# what each verb cannot do without: damaging it must fail the verb, never pass silently
NEEDS = {
    "train --resume": {"manifest.json", "arrays (.npy)", "checkpoint.pt", "config.json"},
    "report": {"manifest.json", "arrays (.npy)", "best.pt", "result.json", "config.json"},
    "recommend": {"manifest.json", "items.parquet", "best.pt", "result.json", "config.json"},
}
FIXES = ("toolkit prep", "toolkit train", "train it again", "delete the run", "pick another run")


def _damage(ws: Path, artifact: str, how: str) -> list[Path]:
    run = _run_folder(ws)
    paths = [p for pattern in ARTIFACTS[artifact]
             for p in sorted((run if pattern.startswith("RUN/") else ws).glob(pattern.removeprefix("RUN/")))]
    assert paths, artifact
    for path in paths:
        path.write_bytes(DAMAGE[how](path.read_bytes()))
    for wal in ws.glob("catalog.duckdb.wal"):
        wal.unlink()
    return paths


def _verb_args(verb: str, ws: Path, artifact: str, tmp_path: Path) -> list:
    run = _run_folder(ws)
    if verb == "train --resume":
        if artifact != "result.json":  # unfinished, so resuming reads its checkpoint
            (run / "result.json").unlink()
        return ["train", "--resume", run.name]
    if verb == "report":
        return ["report", "--bootstrap", "100", "--device", "cpu"]
    if verb == "recommend":
        sessions = tmp_path / "sessions.parquet"
        pl.DataFrame({"session": [1, 1], "track_key": ["t1", "t2"]}).write_parquet(sessions)
        return ["recommend", "--run", run.name, "--sessions", sessions, "--out", tmp_path / "recs.parquet"]
    return [verb]


@pytest.mark.slow
@pytest.mark.parametrize("how", list(DAMAGE))
@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("artifact", list(ARTIFACTS))
def test_damaged_artifact_is_one_line_naming_the_file_and_the_fix(trained_ws, tmp_path, artifact, verb, how):
    ws = _copy(trained_ws, tmp_path / "ws")
    damaged = _damage(ws, artifact, how)
    result = invoke(*_verb_args(verb, ws, artifact, tmp_path), "--workspace", ws)
    assert "Traceback" not in result.output and "this is a bug" not in result.output, result.output
    if artifact == "catalog.duckdb" or verb in ("datasets", "runs"):
        # the catalog is an index and listings read the files: both go on, and say what is damaged
        assert result.exit_code == 0, result.output
        shown = " ".join(result.output.split())
        if (verb, artifact) in (("datasets", "manifest.json"), ("runs", "result.json"), ("runs", "config.json")):
            assert "damaged" in shown, shown
        return
    if artifact in NEEDS[verb]:
        assert result.exit_code == 1, f"{verb} passed with a {how} {artifact}: {result.output}"
    if result.exit_code != 0:
        assert result.exit_code == 1, result.output
        line = one_line(result.stderr)
        assert any(p.name in line for p in damaged) or "dataset tiny" in line or _run_folder(ws).name in line, line
        assert any(fix in line for fix in FIXES), line
    if verb == "recommend" and result.exit_code == 0:
        recs = pl.read_parquet(tmp_path / "recs.parquet")
        assert recs.height > 0 and recs["track_key"].null_count() == 0  # not silently wrong names
