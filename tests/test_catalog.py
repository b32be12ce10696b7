"""The files are the truth: listings survive a missing, damaged, stale or locked catalog; concurrent
trains all finish and all appear; a run trained by another process is refused, and listed as running."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from toolkit.artifacts import (
    RUN_LOCK, CatalogBusyError, Workspace, catalog_lock, list_datasets, list_runs, read_manifest, refresh_catalog,
    run_dir, write_json,
)
from toolkit.cli import app
from toolkit.config import PrepConfig, TrainConfig
from toolkit.identity import build_of
from toolkit.prep import prep
from toolkit.train import run_id, train

from test_options import one_line  # exit 1, one line on stderr naming what is wrong, no traceback

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def listed(command: str, ws: Workspace) -> str:
    result = invoke(command, "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "error" not in result.output, result.output
    return " ".join(result.output.split())


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def holding(code: str, *args: str) -> subprocess.Popen:
    """A process running ``code`` (which prints 'ready' once it holds what it holds) until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", code + "\nprint('ready', flush=True)\nsys.stdin.read()", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env())
    assert proc.stdout.readline().strip() == "ready"
    return proc


HOLD_FLOCK = "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\nfcntl.flock(fd, fcntl.LOCK_EX)"
HOLD_CATALOG = "import duckdb, sys\ncon = duckdb.connect(sys.argv[1])"


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    """Listings wide enough that no cell is cut."""
    from toolkit.cli import common

    monkeypatch.setattr(common.out, "_width", 250)


@pytest.fixture
def ws(tiny_logs, tmp_path):
    workspace = Workspace.at(tmp_path / "ws")
    prep([tiny_logs], workspace, PrepConfig(name="tiny", max_len=4))
    return workspace


@pytest.fixture
def trained(ws):
    """The prepared workspace with two finished baseline runs."""
    ids = [train(ws, TrainConfig(model=model, seed=1)).id for model in ("pop", "markov")]
    return ws, ids


def test_listings_read_the_files_when_the_catalog_is_missing(trained):
    ws, ids = trained
    ws.catalog.unlink()
    assert [r["name"] for r in list_datasets(ws)] == ["tiny"]
    assert {r["id"] for r in list_runs(ws)} == set(ids)
    assert "tiny" in listed("datasets", ws)
    text = listed("runs", ws)
    assert all(i in text for i in ids) and "finished" in text
    assert not ws.catalog.exists()  # listing writes nothing


def test_garbage_catalog_changes_no_listing_and_is_rebuilt_by_the_next_write(trained):
    ws, ids = trained
    ws.catalog.write_bytes(os.urandom(4096))
    assert "tiny" in listed("datasets", ws)
    assert all(i in listed("runs", ws) for i in ids)
    third = train(ws, TrainConfig(model="pop", seed=2)).id
    assert all(i in listed("runs", ws) for i in [*ids, third])
    with duckdb.connect(str(ws.catalog), read_only=True) as con:  # the write replaced the damaged index
        assert {r[0] for r in con.execute("select id from runs").fetchall()} == {*ids, third}
        assert con.execute("select name from datasets").fetchall() == [("tiny",)]


def test_stale_catalog_does_not_hide_a_run(trained):
    ws, ids = trained
    with duckdb.connect(str(ws.catalog)) as con:  # as if the last run finished without reaching the catalog
        con.execute("delete from runs where id = ?", [ids[1]])
    assert set(ids) <= {r["id"] for r in list_runs(ws)}


def test_catalog_held_open_by_another_process(trained):
    ws, ids = trained
    holder = holding(HOLD_CATALOG, str(ws.catalog))
    try:
        assert all(i in listed("runs", ws) for i in ids)
        assert "tiny" in listed("datasets", ws)
        result = invoke("train", "--workspace", ws.root, "--model", "pop", "--seed", "9")
        assert result.exit_code == 0, result.output
        new = run_dir(ws, result.output.split("run ", 1)[1].split()[0].split(":")[0])
        assert new.result.exists()
        assert new.id in listed("runs", ws)
    finally:
        holder.communicate("", timeout=30)


def test_concurrent_trains_all_finish_and_are_listed(ws):
    procs = [subprocess.Popen([sys.executable, "-m", "toolkit", "train", "--model", "pop", "--seed", str(seed),
                               "--workspace", str(ws.root)], cwd=ROOT, env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for seed in range(4)]
    while any(p.poll() is None for p in procs):  # a reader polling during the writes never fails
        list_runs(ws)
        list_datasets(ws)
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    rows = list_runs(ws)
    assert sorted(r["seed"] for r in rows) == [0, 1, 2, 3]
    assert {r["status"] for r in rows} == {"finished"}
    text = listed("runs", ws)
    assert all(r["id"] in text for r in rows)
    with duckdb.connect(str(ws.catalog), read_only=True) as con:  # the last writer saw every run
        assert con.execute("select count(*) from runs").fetchone()[0] == 4


def _unfinished(ws: Workspace, seed: int):
    """A run folder as an interrupted run leaves it: config.json, no result.json."""
    cfg = replace(TrainConfig(model="pop", seed=seed), dataset="tiny")
    manifest = read_manifest(ws.dataset("tiny"))
    run = run_dir(ws, run_id(manifest, cfg))
    write_json(run.config, {"train": asdict(cfg), "dataset_fingerprint": manifest.fingerprint,
                            "dataset_build": build_of(manifest.to_json())})
    return run


def test_unfinished_run_is_listed_as_interrupted_or_running(trained):
    ws, ids = trained
    run = _unfinished(ws, 5)
    (ws.root / "runs" / ".tmp-junk").mkdir()  # hidden folders are no runs
    (ws.root / "runs" / ".tmp-junk" / "config.json").write_text("{}")
    rows = {r["id"]: r for r in list_runs(ws)}
    assert set(rows) == {*ids, run.id}
    assert rows[run.id]["status"] == "interrupted" and rows[ids[0]]["status"] == "finished"
    text = listed("runs", ws)
    assert run.id in text and "interrupted" in text
    holder = holding(HOLD_FLOCK, str(run.path / RUN_LOCK))
    try:
        assert {r["id"]: r["status"] for r in list_runs(ws)}[run.id] == "running"
        assert "running" in listed("runs", ws)
    finally:
        holder.communicate("", timeout=30)
    assert {r["id"]: r["status"] for r in list_runs(ws)}[run.id] == "interrupted"


def test_a_run_trained_by_another_process_is_refused(ws):
    run = _unfinished(ws, 7)
    holder = holding(HOLD_FLOCK + "\nos.write(fd, f'{os.getpid()}\\n'.encode())", str(run.path / RUN_LOCK))
    try:
        result = invoke("train", "--workspace", ws.root, "--model", "pop", "--seed", "7")
        one_line(result, f"run {run.id}", "another process", f"process {holder.pid}", "--seed")
        assert not run.result.exists()
    finally:
        holder.communicate("", timeout=30)
    again = invoke("train", "--workspace", ws.root, "--model", "pop", "--seed", "7")  # the lock went with it
    assert again.exit_code == 0, again.output
    assert run.result.exists() and run.id in again.output


def test_the_run_lock_is_released_on_errors_and_ctrl_c(ws, monkeypatch):
    from toolkit import train as train_module

    def stop(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_fit_baseline", stop)
    with pytest.raises(KeyboardInterrupt):
        train(ws, TrainConfig(model="pop", seed=3))
    monkeypatch.undo()
    assert {r["status"] for r in list_runs(ws)} == {"interrupted"}
    assert train(ws, TrainConfig(model="pop", seed=3)).status == "finished"


def test_damaged_files_are_listed_not_fatal(trained):
    ws, ids = trained
    run_dir(ws, ids[0]).result.write_text('{"status": ')
    bad = ws.root / "datasets" / "broken"
    bad.mkdir()
    (bad / "manifest.json").write_text("not json")
    rows = {r["id"]: r["status"] for r in list_runs(ws)}
    assert rows[ids[0]] == "damaged" and rows[ids[1]] == "finished"
    assert [r["name"] for r in list_datasets(ws)] == ["tiny"]  # what `train` may pick as the latest
    text = listed("datasets", ws)
    assert "broken" in text and "damaged" in text and "tiny" in text
    assert "damaged" in listed("runs", ws)


def test_a_busy_catalog_lock_skips_the_catalog_write_never_the_command(trained):
    ws, ids = trained
    holder = holding(HOLD_FLOCK, str(ws.catalog_lock))
    try:
        with pytest.raises(CatalogBusyError, match="catalog.lock"):
            with catalog_lock(ws, timeout=0.2):
                pass
        assert refresh_catalog(ws, timeout=0.2) is False
    finally:
        holder.communicate("", timeout=30)
    assert refresh_catalog(ws) is True
