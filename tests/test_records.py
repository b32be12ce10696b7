"""The records at the seams between stages: the manifest and a finished run's result, each checked
once where its file is read, and written back byte for byte as before."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from toolkit.artifacts import Workspace, list_datasets, read_manifest, run_dir, write_json
from toolkit.cli import app
from toolkit.config import PrepConfig, TrainConfig
from toolkit.errors import DamagedArtifactError
from toolkit.manifest import Manifest, SkipRule, SplitCounts
from toolkit.prep import PrepResult, prep
from toolkit.run_result import TrainResult
from toolkit.train import train


@pytest.fixture
def ws(tiny_logs, tmp_path):
    workspace = Workspace.at(tmp_path / "ws")
    prep([tiny_logs], workspace, PrepConfig(name="tiny", max_len=4))
    return workspace


def _rewrite(ws: Workspace, **changes) -> None:
    """manifest.json of dataset tiny with keys changed (None: the key removed)."""
    path = ws.dataset("tiny").manifest
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def _text(data: dict) -> str:
    return json.dumps(data, sort_keys=True)


def test_prep_returns_the_manifest_it_wrote_and_reading_it_back_writes_the_same_bytes(tiny_logs, tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    prepared = prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4))
    assert isinstance(prepared, PrepResult) and not prepared.up_to_date and prepared.name == "tiny"
    ds = ws.dataset("tiny")
    read = read_manifest(ds)
    assert read == prepared.manifest
    assert isinstance(read.skip_rule, SkipRule) and all(isinstance(s, SplitCounts) for s in read.splits.values())
    assert sum(s.events for s in read.splits.values()) == read.rows_kept == 38
    written = ds.manifest.read_bytes()
    write_json(tmp_path / "again.json", read.to_json())
    assert (tmp_path / "again.json").read_bytes() == written
    again = prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4))
    assert again.up_to_date and again.manifest == read and ds.manifest.read_bytes() == written


def test_a_manifest_of_an_earlier_version_reads_without_the_keys_it_lacks(ws):
    _rewrite(ws, build=None, run_ids=None, arrays=None, split_diagnostics=None)
    m = read_manifest(ws.dataset("tiny"))
    assert (m.build, m.run_ids, m.arrays, m.split_diagnostics) == (None, None, None, None)
    assert not {"build", "run_ids", "arrays", "split_diagnostics"} & set(m.to_json())
    assert m.items == 8 and m.last_only is False


@pytest.mark.parametrize("change, named", [
    (dict(items=None), "has no 'items'"),
    (dict(items="8"), "'items' is '8', not a whole number"),
    (dict(skip_share=True), "'skip_share' is True, not a number"),
    (dict(splits={"train": {"sessions": 1}}), "'splits' -> 'train' lacks whole numbers"),
    (dict(skip_rule={"rules": {}}), "'skip_rule' lacks its plays_by_rule and rules"),
    (dict(run_ids=3), "'run_ids' is 3, not text"),
])
def test_a_manifest_that_does_not_fit_is_one_line_naming_the_file_and_the_fix(ws, change, named):
    _rewrite(ws, **change)
    ds = ws.dataset("tiny")
    with pytest.raises(DamagedArtifactError) as exc:
        read_manifest(ds)
    text = str(exc.value)
    assert len(text.splitlines()) == 1 and text.startswith(str(ds.manifest)), text
    assert named in text and "toolkit prep LOGS --name tiny" in text, text


def test_commands_refuse_a_manifest_that_does_not_fit_and_listings_call_it_damaged(ws):
    _rewrite(ws, max_len="four")
    result = CliRunner().invoke(app, ["train", "--dataset", "tiny", "--model", "pop", "--workspace", str(ws.root)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    line = " ".join(result.stderr.split())
    assert "manifest.json" in line and "'max_len'" in line and "toolkit prep" in line, line
    assert list_datasets(ws) == [] and [r["status"] for r in list_datasets(ws, damaged=True)] == ["damaged"]


def test_train_returns_the_result_it_wrote_and_reads_it_back_when_reused(ws):
    first = train(ws, TrainConfig(dataset="tiny", model="pop"))
    assert isinstance(first, TrainResult) and not first.reused and first.status == "finished"
    path = run_dir(ws, first.id).result
    on_disk = json.loads(path.read_text())
    assert _text(on_disk) == _text(first.to_json()) and "reused" not in on_disk  # text: NaN metrics never equal
    again = train(ws, TrainConfig(dataset="tiny", model="pop"))
    assert again.reused and _text(again.to_json()) == _text(first.to_json())


def test_a_damaged_result_is_one_line_naming_it(ws):
    first = train(ws, TrainConfig(dataset="tiny", model="pop"))
    path = run_dir(ws, first.id).result
    path.write_text(json.dumps({k: v for k, v in first.to_json().items() if k != "valid"}))
    with pytest.raises(DamagedArtifactError) as exc:
        train(ws, TrainConfig(dataset="tiny", model="pop"))
    text = str(exc.value)
    assert len(text.splitlines()) == 1 and text.startswith(str(path)) and "has no 'valid'" in text, text
    assert "train it again" in text


def test_results_of_earlier_versions_read_without_world_size(ws):
    first = train(ws, TrainConfig(dataset="tiny", model="pop"))
    older = {k: v for k, v in first.to_json().items() if k != "world_size"}
    read = TrainResult.from_json(older, "result.json")
    assert read.world_size is None and _text(read.to_json()) == _text(older)


def test_every_manifest_field_reads_from_its_json_key():
    m = Manifest(name="d", format="generic", fingerprint="f", rows_in=3, rows_kept=2, rows_dropped={"x": 1}, users=1,
                 sessions=1, items=2, skip_share=0.5, split_mode="last", max_len=4,
                 splits={"train": SplitCounts(sessions=1, events=2, rows=1, skips=1)},
                 skip_rule=SkipRule(plays_by_rule={"gap": 2}, rules={"gap": "pause"}, agreement={"gap": {"plays": 2}}))
    data = json.loads(json.dumps(m.to_json()))
    assert data["splits"] == {"train": {"sessions": 1, "events": 2, "rows": 1, "skips": 1}}
    assert data["skip_rule"]["agreement"] == {"gap": {"plays": 2}} and "build" not in data
    assert Manifest.from_json(data, "manifest.json") == m and m.last_only
