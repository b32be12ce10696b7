"""Options are checked before anything is written, and every failure is one line through one boundary."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from toolkit import train as train_module
from toolkit.artifacts import Workspace, list_runs
from toolkit.cli import app
from toolkit.config import ModelConfig, PrepConfig, TrainConfig, memory_bytes
from toolkit.errors import ConfigError
from toolkit.prep import prep

runner = CliRunner()
SMALL = ["--d-model", "16", "--n-layers", "1", "--batch-size", "4", "--negatives", "3", "--epochs", "2"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line(result, *needles: str, code: int = 1) -> str:
    """Exit ``code``, one line on stderr naming what is wrong, no traceback (stdout may hold a progress bar)."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    text = result.stderr.strip()
    assert len(text.splitlines()) == 1, text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


@pytest.fixture
def ws(tiny_logs, tmp_path):
    workspace = Workspace.at(tmp_path / "ws")
    prep([tiny_logs], workspace, PrepConfig(name="tiny", max_len=4))
    return workspace


# ---------------------------------------------------------------------------------------------
# train options: refused by TrainConfig, before a run folder exists

BAD_TRAIN = [
    (["--set", "grad_clip=0"], "--set grad_clip=0"),
    (["--set", "grad_clip=-1"], "grad_clip="),
    (["--set", "grad_clip=nan"], "grad_clip=nan"),
    (["--set", "grad_clip=inf"], "grad_clip=inf"),
    (["--max-steps", "0"], "--max-steps 0"),
    (["--set", "max_steps=0"], "--max-steps 0"),
    (["--alpha=-0.5"], "--alpha -0.5"),
    (["--alpha", "nan"], "--alpha nan"),
    (["--tau", "0"], "--tau 0"),
    (["--tau", "inf"], "--tau inf"),
    (["--dropout", "1"], "--dropout 1"),
    (["--dropout=-0.1"], "--dropout"),
    (["--set", "mask_prob=0"], "--set mask_prob=0"),
    (["--set", "mask_prob=1"], "--set mask_prob=1"),
    (["--set", "sampler_beta=-1"], "--set sampler_beta=-1"),
    (["--set", "weight_decay=-0.01"], "--set weight_decay=-0.01"),
    (["--set", "weight_decay=nan"], "--set weight_decay=nan"),
    (["--set", "warmup_steps=-1"], "--set warmup_steps=-1"),
    (["--patience", "0"], "--patience 0"),
    (["--valid-sessions=-1"], "--valid-sessions -1"),
    (["--neg-weight=-1"], "--neg-weight -1"),
    (["--neg-weight", "inf"], "--neg-weight inf"),
    (["--d-model", "65"], "--d-model 65 must be a multiple of --n-heads 2"),
    (["--d-model", "0"], "--d-model 0"),
    (["--n-layers", "0"], "--n-layers 0"),
    (["--n-heads", "0"], "--n-heads 0"),
    (["--negatives", "0"], "--negatives 0"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--epochs", "0"], "--epochs 0"),
    (["--lr", "0"], "--lr 0"),
    (["--lr=-0.001"], "--lr -0.001"),
    (["--lr", "inf"], "--lr inf"),
    (["--lr", "nan"], "--lr nan"),
    (["--seed=-1"], "--seed -1"),
    (["--set", "history=-1"], "history=-1"),
    (["--set", "successors=-1"], "successors=-1"),
]


@pytest.mark.parametrize("args,needle", BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_bad_train_option_is_one_line_and_writes_no_run(ws, args, needle):
    result = invoke("train", "--workspace", ws.root, *args)
    text = one_line(result, needle)
    assert "must" in text or "use " in text  # and what to do instead
    assert nothing_in(ws.root / "runs")


def test_every_range_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        TrainConfig(lr=float("nan"), grad_clip=0.0, max_steps=0)
    text = str(caught.value)
    assert "--lr nan" in text and "--set grad_clip=0.0" in text and "--max-steps 0" in text


@pytest.mark.parametrize("d_model,n_heads,n_layers,dropout,mask_prob", [
    (64, 3, 2, 0.2, 0.2), (0, 2, 2, 0.2, 0.2), (64, 0, 2, 0.2, 0.2), (64, 2, 0, 0.2, 0.2), (64, 2, 2, 1.0, 0.2),
    (64, 2, 2, float("nan"), 0.2), (64, 2, 2, 0.2, 0.0), (64, 2, 2, 0.2, float("inf")),
])
def test_train_config_refuses_what_the_model_config_would(d_model, n_heads, n_layers, dropout, mask_prob):
    """A model-shape problem must surface when the options are read, not after the run folder is made."""
    kwargs = dict(d_model=d_model, n_heads=n_heads, n_layers=n_layers, dropout=dropout, mask_prob=mask_prob)
    with pytest.raises(ValueError):
        ModelConfig(n_items=10, causal=False, **kwargs)
    with pytest.raises(ConfigError):
        TrainConfig(model="bert4rec", **kwargs)


@pytest.mark.parametrize("bad", [dict(init_std=float("nan")), dict(init_std=0.0), dict(successors=-1)])
def test_model_config_ranges(bad):
    with pytest.raises(ValueError):
        ModelConfig(n_items=10, **bad)


# ---------------------------------------------------------------------------------------------
# prep options: refused by PrepConfig, before the workspace is touched

BAD_PREP = [
    (["--memory-limit", "1000"], "--memory-limit '1000'"),
    (["--memory-limit", "lots"], "--memory-limit 'lots'"),
    (["--memory-limit", "1GBB"], "--memory-limit"),
    (["--memory-limit", "10MB"], "at least 64MB"),
    (["--valid-frac", "0.5", "--test-frac", "0.5"], "--valid-frac"),
    (["--valid-frac", "nan"], "--valid-frac"),
    (["--test-frac", "1"], "--test-frac"),
    (["--test-frac", "inf"], "--test-frac"),
    (["--session-gap", "0"], "--session-gap"),
    (["--skip-ms=-1"], "--skip-ms"),
    (["--skip-ratio", "0"], "--skip-ratio"),
    (["--skip-ratio", "nan"], "--skip-ratio"),
    (["--name", "x" * 101], "--name must be 1 to 100 characters"),
    (["--max-play-ms", "0"], "--max-play-ms"),
    (["--min-session-len", "0"], "--min-session-len"),
    (["--max-len", "1"], "--max-len"),
]


@pytest.mark.parametrize("args,needle", BAD_PREP, ids=[" ".join(a)[:40] for a, _ in BAD_PREP])
def test_bad_prep_option_is_one_line_and_writes_nothing(tiny_logs, tmp_path, args, needle):
    result = invoke("prep", tiny_logs, "--workspace", tmp_path / "ws", *args)
    one_line(result, needle)
    assert nothing_in(tmp_path / "ws" / "datasets")


@pytest.mark.parametrize("text,size", [("1GB", 1e9), ("512MB", 512e6), ("2GiB", 2 * 2**30), ("1.5GB", 1.5e9),
                                       ("1 gb", 1e9), ("100000KB", 1e8), ("1T", 1e12), ("64MB", 64e6)])
def test_memory_limits_prep_accepts_are_duckdb_sizes(text, size):
    assert memory_bytes(text) == size
    PrepConfig(memory_limit=text)
    con = duckdb.connect()
    con.execute("set memory_limit = $m", {"m": text})  # DuckDB takes it too
    con.close()


# ---------------------------------------------------------------------------------------------
# training that goes wrong: a diverging loss, Ctrl-C


def _only_run(ws: Workspace) -> Path:
    runs = list((ws.root / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def test_nan_loss_stops_the_run_unfinished(ws, monkeypatch):
    real = train_module.train_step
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        terms = real(*args, **kwargs)
        return {k: v * float("nan") for k, v in terms.items()} if len(calls) == 3 else terms

    monkeypatch.setattr(train_module, "train_step", poisoned)
    result = invoke("train", "--workspace", ws.root, *SMALL)
    run = _only_run(ws)
    text = one_line(result, f"run {run.name}", "nan", "--lr", "step 3")
    assert "finished" not in text.replace("not finished", "")
    assert json.loads((run / "result.json").read_text())["status"] == "failed"
    # listed as failed, never as finished
    assert [(r["id"], r["status"]) for r in list_runs(ws)] == [(run.name, "failed")]
    listed = invoke("runs", "--workspace", ws.root)
    assert listed.exit_code == 0 and run.name in listed.output and "finished" not in listed.output


def test_huge_learning_rate_diverges_with_one_line(ws):
    result = invoke("train", "--workspace", ws.root, *SMALL, "--lr", "1e30", "--set", "warmup_steps=0")
    run = _only_run(ws)
    one_line(result, f"run {run.name}", "learning rate is likely too high")
    assert json.loads((run / "result.json").read_text())["status"] == "failed"  # recorded, never finished


def test_ctrl_c_names_the_real_run_and_the_same_command_continues(ws, monkeypatch):
    real = train_module.train_step
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", interrupted)
    result = invoke("train", "--workspace", ws.root, *SMALL)
    run = _only_run(ws)
    text = one_line(result, f"run {run.name}", f"toolkit train --resume {run.name}", "same command", code=130)
    assert "<id>" not in text
    assert (run / "checkpoint.pt").exists() and not (run / "result.json").exists()
    monkeypatch.setattr(train_module, "train_step", real)
    again = invoke("train", "--workspace", ws.root, *SMALL)
    assert again.exit_code == 0, again.output
    assert "resuming at epoch 1, step 1" in again.output and run.name in again.output


# ---------------------------------------------------------------------------------------------
# the error boundary


def _fail_listing(monkeypatch, exc: BaseException) -> None:
    def boom(_ws):
        raise exc

    monkeypatch.setattr("toolkit.artifacts.list_runs", boom)


def test_unexpected_exception_is_one_bug_line(monkeypatch, tmp_path):
    _fail_listing(monkeypatch, ZeroDivisionError("boom"))
    result = invoke("runs", "--workspace", tmp_path / "ws")
    one_line(result, "bug", "ZeroDivisionError: boom", "TOOLKIT_DEBUG=1")


def test_debug_switch_shows_the_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLKIT_DEBUG", "1")
    _fail_listing(monkeypatch, ZeroDivisionError("boom"))
    result = invoke("runs", "--workspace", tmp_path / "ws")
    assert result.exit_code == 1
    assert "Traceback" in result.output and "ZeroDivisionError: boom" in result.output
    assert result.output.strip().splitlines()[-1].startswith("error:")


@pytest.mark.parametrize("code,needle", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"),
                                         (errno.EACCES, "permission denied")])
def test_disk_errors_name_the_path_and_the_fix(monkeypatch, tmp_path, code, needle):
    path = str(tmp_path / "ws" / "runs" / "x" / "metrics.jsonl")
    _fail_listing(monkeypatch, OSError(code, "os text", path))
    one_line(invoke("runs", "--workspace", tmp_path / "ws"), path, needle, "--workspace")


def test_disk_full_without_a_file_name_names_the_file_being_written(ws, monkeypatch):
    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("toolkit.artifacts.os.replace", full)
    result = invoke("train", "--workspace", ws.root, "--dataset", "tiny", "--model", "pop")
    one_line(result, "config.json", "no space left")


def test_missing_gpu_is_one_line(monkeypatch, tmp_path):
    _fail_listing(monkeypatch, AssertionError("Torch not compiled with CUDA enabled"))
    one_line(invoke("runs", "--workspace", tmp_path / "ws"), "--device cuda", "--device cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_device_cuda_without_a_gpu(ws):
    one_line(invoke("train", "--workspace", ws.root, "--device", "cuda", *SMALL), "--device cuda", "--device cpu")
    assert not any((ws.root / "runs").glob("*/config.json"))  # refused before a run folder was made


def test_locked_catalog_does_not_stop_a_listing(ws):
    # listings read the dataset manifests and run folders; the catalog is only an index (tests/test_catalog.py)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys\ncon = duckdb.connect(sys.argv[1])\nprint('ready', flush=True)\n"
         "sys.stdin.read()", str(ws.catalog)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = invoke("datasets", "--workspace", ws.root)
    finally:
        holder.communicate("", timeout=30)
    assert result.exit_code == 0, result.output
    assert "tiny" in result.output and "Traceback" not in result.output


def test_a_duckdb_lock_error_is_one_line_naming_the_file_and_process(monkeypatch, tmp_path):
    # the boundary still explains a DuckDB lock met elsewhere (e.g. a dataset database held open)
    _fail_listing(monkeypatch, duckdb.IOException(
        'IO Error: Could not set lock on file "/x/catalog.duckdb": Conflicting lock is held in python (PID 4242)'))
    one_line(invoke("runs", "--workspace", tmp_path / "ws"), "catalog.duckdb", "locked", "process 4242")


def test_damaged_array_names_the_file_and_prep(ws):
    bad = ws.dataset("tiny").array("train", "seqs")
    bad.write_bytes(bad.read_bytes()[:70])
    result = invoke("train", "--workspace", ws.root, "--dataset", "tiny", "--model", "pop")
    one_line(result, str(bad), "damaged", "toolkit prep")


def test_damaged_manifest_names_the_file(ws):
    manifest = ws.dataset("tiny").manifest
    manifest.write_text('{"name": "tiny", ')
    result = invoke("train", "--workspace", ws.root, "--dataset", "tiny", "--model", "pop")
    one_line(result, str(manifest), "does not parse", "toolkit prep")


def test_damaged_checkpoint_names_the_file(ws, monkeypatch):
    real = train_module.train_step
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", interrupted)
    invoke("train", "--workspace", ws.root, *SMALL)
    checkpoint = _only_run(ws) / "checkpoint.pt"
    checkpoint.write_bytes(np.random.default_rng(0).bytes(500))
    monkeypatch.setattr(train_module, "train_step", real)
    one_line(invoke("train", "--workspace", ws.root, *SMALL), str(checkpoint), "damaged", "delete the run's folder")
