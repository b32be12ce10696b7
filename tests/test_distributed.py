"""Several processes (torchrun, gloo on CPU) train and evaluate exactly like one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from stubs import manifest_stub
from typer.testing import CliRunner

from toolkit import distributed
from toolkit.artifacts import Workspace, load_torch, read_json, read_metrics, run_dir
from toolkit.cli import app
from toolkit.config import PrepConfig, TrainConfig
from toolkit.data import load_split
from toolkit.distributed import World, share_weights
from toolkit.errors import ConfigError
from toolkit.evaluate import QueryResults
from toolkit.prep import prep
from toolkit.synth import SynthConfig, synth
from toolkit.train import run_id, train

REPO = Path(__file__).resolve().parent.parent
BATCH = 37  # odd: the two shares of a batch differ by one row
SMALL = dict(dataset="s", d_model=16, n_layers=1, batch_size=BATCH, epochs=2, dropout=0.0, warmup_steps=2,
             patience=5, negatives=8)


# ---------------------------------------------------------------------------------------------
# the pieces, one process


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shares_are_the_sorted_batch_cut_in_contiguous_near_equal_pieces(size):
    rng = np.random.default_rng(size)
    for n in range(0, 12):
        rows = rng.permutation(100)[:n]
        shares = [World(rank=r, size=size).share(rows) for r in range(size)]
        assert np.array_equal(np.concatenate(shares), np.sort(rows))
        lengths = [len(s) for s in shares]
        assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)


def test_evaluation_blocks_are_whole_batches_of_rows():
    # 10 rows in blocks of 4: blocks [0, 4) [4, 8) [8, 10); two ranks take two blocks and one
    assert [World(rank=r, size=2).bounds(10, 4) for r in range(2)] == [(0, 8), (8, 10)]
    assert [World(rank=r, size=3).bounds(10, 4) for r in range(3)] == [(0, 4), (4, 8), (8, 10)]
    assert [World(rank=r, size=4).bounds(10, 4) for r in range(4)] == [(0, 4), (4, 8), (8, 10), (10, 10)]
    assert World().bounds(10, 4) == (0, 10)


def test_share_weights_by_hand():
    # term 0: this rank has 2 of 5 positions; term 1: no rank has any (its mean is 0, weight 0)
    assert share_weights(torch.tensor([2.0, 0.0]), torch.tensor([5.0, 0.0])).tolist() == pytest.approx([0.4, 0.0])


def test_weighted_shares_add_up_to_the_global_mean():
    # uneven shares and one share without any position: sum over ranks of mean_r * n_r / N is the
    # mean over the whole batch, not the mean of the ranks' means
    per = torch.tensor([[1.0, 2.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 0.0], [8.0, 16.0, 32.0]])
    keep = torch.tensor([[True, True, False], [True, False, False], [False, False, False], [True, True, True]])
    shares = [slice(0, 2), slice(2, 3), slice(3, 4)]

    def mean(s):  # what every loss returns: the mean over the share's positions, 0 without any
        return per[s][keep[s]].sum() / keep[s].sum().clamp(min=1)

    counts = torch.stack([keep[s].sum() for s in shares]).float()
    weights = share_weights(counts, counts.sum().expand(3))
    total = sum(mean(s) * w for s, w in zip(shares, weights))
    assert total.item() == pytest.approx((1 + 2 + 4 + 8 + 16 + 32) / 6)
    assert total.item() != pytest.approx(np.mean([mean(s).item() for s in shares]))


def test_query_results_concat_in_order():
    def q(sessions):
        n = len(sessions)
        return QueryResults(np.array(sessions, np.int64), np.zeros(n, bool), np.arange(n, dtype=np.int64),
                            np.full(n, 0.5), np.zeros((n, 10), np.int32), np.full(n, np.nan))

    joined = QueryResults.concat([q([1, 1]), QueryResults.empty(), q([2])])
    assert joined.session.tolist() == [1, 1, 2] and joined.rank.tolist() == [0, 1, 0]
    assert len(QueryResults.concat([QueryResults.empty()]).rank) == 0


def test_a_rank_resumes_its_own_generator_and_another_world_size_is_refused():
    states = [torch.manual_seed(s).get_state() for s in (1, 2)]
    ck = {"world_size": 2, "torch_rng": states[0], "rank_rng": [{"cpu": s} for s in states]}
    World(rank=1, size=2).restore_rng(ck, "r")
    assert torch.equal(torch.get_rng_state(), states[1])
    with pytest.raises(ConfigError, match=r"run r was checkpointed by 2 process\(es\) and is resumed by 1.*--devices 2"):
        World().restore_rng(ck, "r")
    with pytest.raises(ConfigError, match="checkpointed by 1 process"):  # a checkpoint from before world sizes
        World(rank=0, size=2).restore_rng({"torch_rng": states[0]}, "r")


def test_world_size_is_not_part_of_the_run_id():
    manifest = manifest_stub(fingerprint="f")
    assert "world_size" not in asdict(TrainConfig())  # a runtime fact of the launch, never a setting
    assert run_id(manifest, TrainConfig(seed=1)) == run_id(manifest, TrainConfig(seed=1))


def test_devices_relaunches_the_same_config(monkeypatch, tmp_path):
    """``--devices`` hands the config to the processes as --set items: they rebuild exactly it."""
    launched, trained = [], []
    monkeypatch.setattr(distributed, "relaunch", lambda n, args: launched.append((n, args)) or 0)
    monkeypatch.setattr("toolkit.train.train", lambda ws, cfg, progress=None: trained.append(cfg) or {})
    flags = ["train", "--workspace", str(tmp_path), "--dataset", "s", "--lr", "0.0003", "--max-steps", "7",
             "--feedback", "contrastive", "--set", "weight_decay=0.01", "--amp"]
    res = CliRunner().invoke(app, [*flags, "--devices", "2"])
    assert res.exit_code == 0, res.output
    (n, args), = launched
    assert n == 2 and "--devices" not in args
    monkeypatch.setattr(distributed, "main_process", lambda: False)  # a rank > 0 trains without output
    assert CliRunner().invoke(app, args).exit_code == 0
    assert trained == [TrainConfig(dataset="s", lr=3e-4, max_steps=7, feedback="contrastive", weight_decay=0.01,
                                   amp=True)]


def test_devices_errors_are_one_line(monkeypatch, tmp_path):
    res = CliRunner().invoke(app, ["train", "--workspace", str(tmp_path), "--devices", "0"])
    assert res.exit_code == 1 and "--devices 0" in res.output and len(res.output.strip().splitlines()) == 1
    monkeypatch.setenv("WORLD_SIZE", "2")
    res = CliRunner().invoke(app, ["train", "--workspace", str(tmp_path), "--devices", "2"])
    assert res.exit_code == 1 and "already runs under torchrun" in res.output


# ---------------------------------------------------------------------------------------------
# two processes against one


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A prepared synthetic dataset "s" (a few hundred train rows, windows of 8)."""
    root = tmp_path_factory.mktemp("ddp")
    logs = root / "s.parquet"
    synth(logs, SynthConfig(users=30, plays=3000, tracks=300, artists=30, seed=1))
    prep([logs], Workspace.at(root / "ws"), PrepConfig(name="s", max_len=8))
    return root / "ws"


def copy_of(base: Path, where: Path) -> Workspace:
    shutil.copytree(base, where)
    return Workspace.at(where)


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def assert_same_training(one: Workspace, two: Workspace, rid: str) -> None:
    """The same weights (float tolerance) and the same validation metrics, epoch by epoch."""
    a, b = load_torch(run_dir(one, rid).checkpoint), load_torch(run_dir(two, rid).checkpoint)
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-4, atol=1e-5)
    rows_a, rows_b = read_metrics(run_dir(one, rid)), read_metrics(run_dir(two, rid))
    assert len(rows_a) == len(rows_b) == 2
    for ra, rb in zip(rows_a, rows_b):
        for k in ra:
            if k.startswith(("valid_", "loss_")):
                assert rb[k] == pytest.approx(ra[k], rel=1e-5, nan_ok=True), k
    assert read_json(run_dir(two, rid).result)["world_size"] == 2
    assert read_json(run_dir(one, rid).result)["world_size"] == 1


def test_two_processes_train_and_report_like_one(base, tmp_path, monkeypatch):
    """sasrec, per-row sampled negatives, a contrastive and a negative-target term, a short last
    batch and uneven shares: `--devices 2` trains what one process trains; the 2-process report
    (test split) is identical to the 1-process one on the same weights."""
    one, two = copy_of(base, tmp_path / "one"), copy_of(base, tmp_path / "two")
    cfg = TrainConfig(model="sasrec", feedback="contrastive+negative-target", loss="sampled", seed=3, **SMALL)
    n_rows = len(load_split(one.dataset("s"), "train"))
    assert n_rows % BATCH, "the last batch should be short"
    alone = train(one, cfg)

    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the processes torchrun starts import this checkout
    flags = ["--dataset", "s", "--model", "sasrec", "--feedback", "contrastive+negative-target", "--loss", "sampled",
             "--seed", "3", "--d-model", "16", "--n-layers", "1", "--batch-size", str(BATCH), "--epochs", "2",
             "--dropout", "0", "--patience", "5", "--negatives", "8", "--set", "warmup_steps=2"]
    res = CliRunner().invoke(app, ["train", "--workspace", str(two.root), "--devices", "2", *flags])
    assert res.exit_code == 0, res.output
    assert_same_training(one, two, alone.id)  # same run id: the same run folder name

    three = copy_of(two.root, tmp_path / "three")  # the same weights, no cached evaluation
    report = ["report", "--workspace", str(two.root), "--json", "--bootstrap", "100"]
    both = torchrun("-m", "toolkit", *report)
    assert both.returncode == 0, both.stderr[-2000:]
    single = CliRunner().invoke(app, [*report[:2], str(three.root), *report[3:]])
    assert single.exit_code == 0, single.output
    rep_two, rep_one = json.loads(both.stdout), json.loads(single.output)
    for rep in (rep_two, rep_one):
        rep.pop("generated")
    assert rep_two["runs"][0]["test"]["n_pos"] > 0
    assert json.dumps(rep_two, sort_keys=True) == json.dumps(rep_one, sort_keys=True)


def test_killed_two_process_run_resumes_with_two_to_the_single_process_result(base, tmp_path):
    """bert4rec (masks drawn over the whole batch): two processes killed after the first epoch's
    checkpoint, refused by one process, resumed by two: the result of one uninterrupted process."""
    one, two = copy_of(base, tmp_path / "one"), copy_of(base, tmp_path / "two")
    cfg = TrainConfig(model="bert4rec", seed=5, **SMALL)
    alone = train(one, cfg)
    worker = [str(REPO / "tests" / "ddp_worker.py"), str(two.root), json.dumps(asdict(cfg))]

    killed = torchrun(*worker, "0")
    assert killed.returncode != 0
    run = run_dir(two, alone.id)
    ck = load_torch(run.checkpoint)
    assert ck["world_size"] == 2 and ck["state"]["epoch"] == 1 and not run.result.exists()
    assert len(ck["rank_rng"]) == 2 and not torch.equal(ck["rank_rng"][0]["cpu"], ck["rank_rng"][1]["cpu"])
    assert len(read_metrics(run)) == 1

    refused = CliRunner().invoke(app, ["train", "--workspace", str(two.root), "--resume", alone.id])
    assert refused.exit_code == 1 and "checkpointed by 2 process(es)" in refused.output
    errors = [line for line in refused.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--devices 2" in errors[0]

    resumed = torchrun(*worker, "-1")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_training(one, two, alone.id)
