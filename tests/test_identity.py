"""What a dataset and a run are: builds, stale runs, names and ids that stay in the workspace,
datasets swapped in whole and checked before they are reused."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

import toolkit.assemble as assemble_module
from toolkit.artifacts import Workspace, list_datasets, read_array, read_json, read_manifest, run_dir
from toolkit.cli import app
from toolkit.config import PrepConfig, TrainConfig
from toolkit.identity import BadNameError, StaleRunError, build_of
from toolkit.manifest import Manifest
from toolkit.prep import dataset_name, prep
from toolkit.train import run_id, train

runner = CliRunner()
DEAD_PID = 2**22 + 12345  # above Linux's largest pid: never a running process


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.output
    lines = [ln for ln in result.output.splitlines() if "error:" in ln]
    assert len(lines) == 1 and result.output.count("error:") == 1, result.output  # the message is one line
    line = lines[0][lines[0].index("error:"):]
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")} if root.exists() else set()


@pytest.fixture
def ws(tiny_logs, tmp_path):
    workspace = Workspace.at(tmp_path / "ws")
    prep([tiny_logs], workspace, PrepConfig(name="tiny", max_len=4))
    return workspace


def test_other_options_are_refused_and_a_forced_rebuild_makes_the_old_run_stale(ws, tiny_logs, tmp_path):
    old = train(ws, TrainConfig(dataset="tiny", model="markov"))
    assert train(ws, TrainConfig(dataset="tiny", model="markov")).reused
    before = read_manifest(ws.dataset("tiny"))
    res = invoke("prep", tiny_logs, "--name", "tiny", "--max-len", 4, "--min-item-plays", 2, "--workspace", ws.root)
    one_line_error(res, "dataset tiny already exists", "--name", "--force")
    assert read_manifest(ws.dataset("tiny")) == before
    # options that do not change the output are the same dataset
    same = prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4, memory_limit="2GB", threads=1))
    assert same.up_to_date and same.manifest.build == before.build

    res = invoke("prep", tiny_logs, "--name", "tiny", "--max-len", 4, "--min-item-plays", 2, "--force",
                 "--workspace", ws.root)
    assert res.exit_code == 0, res.output
    assert "rebuilt dataset tiny (--force)" in " ".join(res.output.split())
    after = read_manifest(ws.dataset("tiny"))
    assert after.config["min_item_plays"] == 2 and after.build != before.build
    assert after.fingerprint == before.fingerprint  # same input, another build

    new = train(ws, TrainConfig(dataset="tiny", model="markov"))  # the same command: a new run, trained
    assert new.id != old.id and not new.reused
    assert read_json(run_dir(ws, new.id).config)["dataset_build"] == after.build
    one_line_error(invoke("report", old.id, "--workspace", ws.root, "--bootstrap", 100),
                   f"run {old.id} is stale", "dataset tiny", "earlier build", f"toolkit train --resume {old.id}")
    sessions = tmp_path / "sessions.parquet"
    pl.DataFrame({"session": [1], "item_id": [1]}).write_parquet(sessions)
    one_line_error(invoke("recommend", "--run", old.id, "--sessions", sessions, "--out", tmp_path / "r.parquet",
                          "--workspace", ws.root), "is stale")
    # the dataset's runs are the current build's only
    res = invoke("report", "--dataset", "tiny", "--workspace", ws.root, "--bootstrap", 100, "--json")
    assert res.exit_code == 0, res.output
    assert old.id not in res.output and new.id in res.output
    # the suggested fix: the stale run's settings, retrained on the current build (here: that run)
    res = invoke("train", "--resume", old.id, "--workspace", ws.root)
    assert res.exit_code == 0 and new.id in res.output, res.output


def test_a_run_folder_of_another_build_is_never_reused(ws):
    cfg = TrainConfig(dataset="tiny", model="pop")
    first = train(ws, cfg)
    config = run_dir(ws, first.id).config
    recorded = read_json(config)
    config.write_text(json.dumps({**recorded, "dataset_build": "0" * 64}))
    with pytest.raises(StaleRunError, match="another build of dataset tiny"):
        train(ws, cfg)


def test_runs_of_datasets_from_before_builds_keep_their_ids(ws, tiny_logs):
    """A manifest written before builds were recorded: reused as it is, its runs keep their first ids,
    and a rebuild into the same build (here: a damaged array) keeps them too."""
    ds = ws.dataset("tiny")
    legacy = {k: v for k, v in read_json(ds.manifest).items() if k not in ("build", "run_ids", "arrays")}
    ds.manifest.write_text(json.dumps(legacy))
    cfg = TrainConfig(dataset="tiny", model="pop")
    old = Manifest.from_json(legacy, ds.manifest)
    old_id = run_id(old, cfg)
    assert old_id == run_id(replace(old, name="other", rows_in=1, config=None), cfg)  # fingerprint and pipeline only
    ran = train(ws, cfg)
    assert ran.id == old_id
    assert prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4)).up_to_date
    with open(ds.array("valid", "seqs"), "r+b") as fh:
        fh.truncate(os.path.getsize(ds.array("valid", "seqs")) - 4)
    rebuilt = prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4))
    assert not rebuilt.up_to_date and rebuilt.manifest.run_ids == "input"
    assert rebuilt.manifest.build == build_of(legacy)
    again = train(ws, cfg)
    assert again.id == ran.id and again.reused
    # a new dataset names its runs by the build
    fresh = prep([tiny_logs], ws, PrepConfig(name="tiny2", max_len=4)).manifest
    assert fresh.run_ids == "build"
    assert run_id(fresh, TrainConfig(dataset="tiny2")) != run_id(replace(fresh, run_ids="input"),
                                                                 TrainConfig(dataset="tiny2"))


def test_generic_file_names_take_their_folder_name(tiny_logs, tmp_path):
    for who in ("alice", "bob"):
        (tmp_path / who).mkdir()
        shutil.copy(tiny_logs, tmp_path / who / "data.csv")
    ws = Workspace.at(tmp_path / "ws")
    a = prep([tmp_path / "alice" / "data.csv"], ws, PrepConfig(max_len=4))
    b = prep([tmp_path / "bob" / "data.csv"], ws, PrepConfig(max_len=4))
    assert (a.name, b.name) == ("alice-data", "bob-data")
    assert {r["name"] for r in list_datasets(ws)} == {"alice-data", "bob-data"}
    for path, name in [("dl/ann/my_spotify_data.zip", "ann-my_spotify_data"),
                       ("x/ann/StreamingHistory0.json", "ann-StreamingHistory0"),
                       ("x/ann/Streaming_History_Audio_*.json", "ann-Streaming_History_Audio"),
                       ("x/ann/endsong_0.json", "ann-endsong_0"), ("x/ann/spotify-2024.json", "spotify-2024"),
                       ("x/tiny_logs.csv", "tiny_logs"), ("x/ann/日本.csv", "ann")]:
        assert dataset_name(None, [Path(path)]) == (name, []), path


def test_names_that_change_are_reported_and_names_left_empty_are_errors(tiny_logs, tmp_path):
    ws = tmp_path / "ws"
    res = invoke("prep", tiny_logs, "--name", "my data/1", "--max-len", 4, "--workspace", ws)
    assert res.exit_code == 0, res.output
    assert "--name 'my data/1' is not a usable folder name; the dataset is named my-data-1" in " ".join(
        res.output.split())
    assert (ws / "datasets" / "my-data-1" / "manifest.json").is_file()
    for bad in ("..", "日本", "/"):
        one_line_error(invoke("prep", tiny_logs, "--name", bad, "--workspace", tmp_path / "other"), "ASCII")
    one_line_error(invoke("prep", tiny_logs, "--name", "", "--workspace", tmp_path / "other"), "--name must be 1 to 100")
    assert not (tmp_path / "other").exists()
    with pytest.raises(BadNameError):
        dataset_name(None, [Path("/日本/日本.csv")])


@pytest.mark.parametrize("bad", ["..", "../x", "/abs", "a/b", "日本", ".", "../../elsewhere/run", ".tmp-tiny-1"])
def test_hostile_names_and_ids_are_one_line_errors_that_write_nothing(ws, tmp_path, bad):
    outside = files_under(tmp_path) - files_under(ws.root)
    inside = files_under(ws.root)
    sessions = tmp_path / "sessions.parquet"
    pl.DataFrame({"session": [1], "item_id": [1]}).write_parquet(sessions)
    outside.add(sessions)
    w = ("--workspace", ws.root)
    one_line_error(invoke("report", bad, *w), repr(bad))
    one_line_error(invoke("report", "--dataset", bad, *w), repr(bad))
    one_line_error(invoke("train", "--dataset", bad, "--model", "pop", *w), repr(bad))
    one_line_error(invoke("train", "--resume", bad, *w), repr(bad))
    one_line_error(invoke("recommend", "--run", bad, "--sessions", sessions, "--out", tmp_path / "r.parquet", *w),
                   repr(bad))
    assert files_under(ws.root) == inside
    assert files_under(tmp_path) - files_under(ws.root) == outside
    with pytest.raises(BadNameError):
        ws.dataset(bad)
    with pytest.raises(BadNameError):
        run_dir(ws, bad)


def test_read_only_commands_create_no_workspace(tmp_path):
    ws = tmp_path / "nowhere"
    for args in (["runs"], ["datasets"], ["report"], ["report", "sasrec-all-s0-12345678"],
                 ["recommend", "--run", "pop-all-s0-12345678", "--sessions", tmp_path / "s.parquet"]):
        res = invoke(*args, "--workspace", ws)
        assert res.exit_code in (0, 1) and "Traceback" not in res.output, res.output
    assert not ws.exists()


def test_an_interrupted_rebuild_leaves_the_previous_dataset(ws, tiny_logs, monkeypatch):
    ds = ws.dataset("tiny")
    before = read_manifest(ds)
    seqs = np.asarray(read_array(ds.array("train", "seqs"))).copy()

    def disk_full(work, *_args):
        (work.path / "train_seqs.npy").write_bytes(b"\x93NUMPY half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(assemble_module, "write", disk_full)  # prep writes events and arrays there
    with pytest.raises(OSError, match="No space left"):
        prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4), force=True)
    monkeypatch.undo()
    assert read_manifest(ds) == before
    assert np.array_equal(read_array(ds.array("train", "seqs")), seqs)
    assert [(r["name"], r["fingerprint"]) for r in list_datasets(ws)] == [("tiny", before.fingerprint)]
    assert not [p for p in ws.datasets.iterdir() if p.name.startswith(".")]
    # a prep killed mid-build leaves its work folder; one killed mid-swap, the previous version aside
    (ws.datasets / f".tmp-tiny-{DEAD_PID}").mkdir()
    (ws.datasets / f".tmp-tiny-{DEAD_PID}" / "train_seqs.npy").write_bytes(b"half")
    shutil.copytree(ds.path, ws.datasets / f".trash-tiny2-{DEAD_PID}")
    assert prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4)).up_to_date
    assert sorted(p.name for p in ws.datasets.iterdir()) == ["tiny", "tiny2"]
    assert read_manifest(ws.dataset("tiny2")) == before


def test_a_damaged_dataset_is_rebuilt_not_reused(ws, tiny_logs):
    ds = ws.dataset("tiny")
    path = ds.array("train", "seqs")
    whole = path.read_bytes()
    path.write_bytes(whole[:-8])
    res = invoke("prep", tiny_logs, "--name", "tiny", "--max-len", 4, "--workspace", ws.root)
    assert res.exit_code == 0, res.output
    assert "rebuilt dataset tiny (train_seqs.npy is truncated" in " ".join(res.output.split())
    assert path.read_bytes() == whole
    assert prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4)).up_to_date
    # an array of another shape, and an unreadable manifest, are rebuilt too
    np.save(path, np.zeros((1, 3), np.int32))
    assert "train_seqs.npy has shape (1, 3)" in prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4)).notes[0]
    ds.manifest.write_text("{not json")
    res = invoke("report", "--dataset", "tiny", "--workspace", ws.root)
    one_line_error(res)
    again = prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4))
    assert again.notes == ("rebuilt dataset tiny (manifest.json does not parse)",)
