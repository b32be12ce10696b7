"""Per-row negatives drawn with torch on the training device (toolkit/sampling.py) against the numba kernel.

The device path is plain torch, so it runs here on the CPU.  The distribution test draws with fixed
seeds: it gives the same counts on every run, so it cannot flake.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from stubs import manifest_stub

import kernels
from toolkit import sampling
from toolkit.artifacts import Workspace, run_dir
from toolkit.config import PrepConfig, TrainConfig
from toolkit.data import SplitArrays
from toolkit.distributed import ShardSampler, World
from toolkit.errors import ConfigError
from toolkit.prep import prep
from toolkit.schema import PAD
from toolkit.train import Sampler, run_id, train

N_ITEMS = 12
# plays per track id (index 0 is PAD); tracks 10 and 11 were never played, so popularity never draws them
COUNTS = np.array([0, 40, 25, 16, 9, 5, 3, 2, 1, 1, 0, 0, 7], dtype=np.int64)
CDF = kernels.popularity_cdf(COUNTS, 0.75)
# (plays, more excluded ids) of one row; PAD entries are padding
ROWS = {
    "light": ([0, 0, 1, 3], [6]),  # a few tracks out: rejection alone fills the row
    "heavy": ([1, 2, 3, 4], [5]),  # 81 % of the mass out: rows come up short and are filled directly
    "massless": ([1, 2, 3, 4, 5, 6, 7, 8], [9, 12]),  # only 10 and 11 left, neither has mass: uniform over them
}
K, REPEAT = 20, 400  # 8,000 draws per row pattern and sampler


def _critical(df: int, z: float = 3.719) -> float:
    """The chi-square quantile with ``df`` degrees of freedom at upper tail 1e-4 (Wilson-Hilferty)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def _chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs * counts.sum()
    keep = expected > 0
    assert counts[~keep].sum() == 0, "drew a track the distribution gives no mass"
    return float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())


def _restricted(banned: set[int], cdf: np.ndarray | None) -> np.ndarray:
    """float (N_ITEMS + 1,): the distribution the kernel draws a row's negatives from."""
    mass = np.diff(cdf, prepend=0.0) if cdf is not None else np.r_[0.0, np.ones(N_ITEMS)]
    allowed = np.array([i != PAD and i not in banned for i in range(N_ITEMS + 1)])
    w = np.where(allowed, mass, 0.0)
    w = w if w.sum() > 0 else allowed.astype(float)
    return w / w.sum()


def _both(plays: list[int], excl: list[int], cdf: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts per track id of the kernel's and the device sampler's draws for REPEAT copies of one row."""
    seqs = np.tile(np.array(plays, np.int32), (REPEAT, 1))
    exclude = np.tile(np.array(excl, np.int32), (REPEAT, 1))
    host = kernels.sample_negatives(seqs, N_ITEMS, K, seed, cdf=cdf, exclude=exclude)
    device = sampling.sample_negatives(torch.from_numpy(seqs).long(), torch.from_numpy(exclude).long(), N_ITEMS, K,
                                       sampling.stream(seed, 0, 0, "cpu"),
                                       None if cdf is None else torch.from_numpy(cdf))
    assert device.shape == (REPEAT, K) and device.dtype == torch.int64
    return (np.bincount(host.ravel(), minlength=N_ITEMS + 1),
            np.bincount(device.numpy().ravel(), minlength=N_ITEMS + 1))


@pytest.mark.parametrize("pattern", list(ROWS))
@pytest.mark.parametrize("sampler", ["popularity", "uniform"])
def test_device_draws_follow_the_kernels_distribution(pattern, sampler):
    plays, excl = ROWS[pattern]
    cdf = CDF if sampler == "popularity" else None
    probs = _restricted(set(plays) | set(excl), cdf)
    host, device = _both(plays, excl, cdf, seed=11)
    df = int((probs > 0).sum()) - 1
    if df == 0:  # a single allowed track: every draw is it
        assert host.sum() == device.sum() == host.max() == device.max()
        return
    limit = _critical(df)
    assert _chi_square(host, probs) < limit
    assert _chi_square(device, probs) < limit
    # the two samplers against each other (homogeneity; the pooled counts estimate the distribution)
    pooled = (host + device) / (host.sum() + device.sum())
    assert _chi_square(host, pooled) + _chi_square(device, pooled) < limit
    # the check has power: uniform over the allowed tracks instead of the popularity law is far off
    if sampler == "popularity" and pattern != "massless":
        flat = (probs > 0) / (probs > 0).sum()
        assert _chi_square(device, flat) > 10 * limit


def test_the_heavy_row_takes_the_direct_fill():
    """The "heavy" pattern above really exercises the fill of short rows (not rejection alone)."""
    plays, excl = ROWS["heavy"]
    out_mass = np.diff(CDF, prepend=0.0)[sorted(set(plays) | set(excl))].sum()
    assert (2 * K + 32) * (1 - out_mass) < K  # expected accepted candidates per row, below k


@given(st.integers(3, 40), st.integers(1, 30), st.integers(0, 2**31), st.booleans(), st.data())
def test_device_draws_never_hit_pad_a_play_or_an_excluded_id(n_items, k, seed, popular, data):
    rows = data.draw(st.integers(1, 6))
    width = data.draw(st.integers(1, n_items - 2))  # with the excluded id, at least one track stays allowed
    seqs = torch.tensor(data.draw(st.lists(st.lists(st.integers(0, n_items), min_size=width, max_size=width),
                                           min_size=rows, max_size=rows)))
    exclude = torch.tensor(data.draw(st.lists(st.lists(st.integers(0, n_items), min_size=1, max_size=1),
                                              min_size=rows, max_size=rows)))
    counts = np.r_[0, np.arange(n_items) % 4].astype(np.int64)  # every fourth track has no plays
    cdf = torch.from_numpy(kernels.popularity_cdf(counts, 1.0)) if popular and counts.sum() else None
    out = sampling.sample_negatives(seqs, exclude, n_items, k, sampling.stream(seed, 1, 0, "cpu"), cdf)
    assert out.shape == (rows, k)
    assert int(out.min()) >= 1 and int(out.max()) <= n_items
    banned = torch.cat([seqs, exclude], dim=1)
    assert not (out.unsqueeze(2) == banned.unsqueeze(1)).any()


def test_device_draws_are_seeded_by_seed_step_and_rank():
    seqs = torch.randint(0, 1001, (16, 10), generator=torch.Generator().manual_seed(0))
    cdf = torch.from_numpy(kernels.popularity_cdf(np.r_[0, np.arange(1, 1001)].astype(np.int64), 0.75))

    def draw(seed: int, step: int, rank: int) -> torch.Tensor:
        return sampling.sample_negatives(seqs, seqs, 1000, 50, sampling.stream(seed, step, rank, "cpu"), cdf)

    first = draw(3, 7, 0)
    assert torch.equal(first, draw(3, 7, 0))
    for other in (draw(4, 7, 0), draw(3, 8, 0), draw(3, 7, 1)):
        assert not torch.equal(first, other)


def test_a_row_without_any_allowed_track_is_refused():
    seqs = torch.tensor([[1, 2, 3], [1, 0, 0]])
    with pytest.raises(ValueError, match="row 1 of seqs/exclude covers all 3 items"):
        sampling.sample_negatives(seqs[[1, 0]], torch.zeros((2, 1), dtype=torch.long), 3, 2,
                                  sampling.stream(0, 0, 0, "cpu"))


def test_the_sampler_draws_on_the_device_by_choice_and_on_gpus():
    seqs = np.array([[0, 1, 2, 3], [4, 5, 6, 1]], dtype=np.int32)
    rows = SplitArrays(seqs=seqs, skips=np.zeros_like(seqs, np.int8), next_item=np.zeros_like(seqs),
                       next_pos=np.zeros_like(seqs), row_session=np.arange(2))
    cpu = torch.device("cpu")
    assert not Sampler(rows, 7, TrainConfig(), cpu).on_device  # the numba kernel stays the CPU default
    assert Sampler(rows, 7, TrainConfig(negatives_on="device"), cpu).on_device
    assert sampling.draws_on_device("auto", torch.device("cuda"))
    assert not sampling.draws_on_device("host", torch.device("cuda"))
    sampler = Sampler(rows, 7, TrainConfig(negatives_on="device", negatives=3), cpu)
    seqs = torch.tensor([[0, 1, 2, 3]])
    targets = torch.tensor([[0, 2, 3, 4]])
    drawn = sampler.draw(seqs, targets, step=5)
    assert torch.equal(drawn, sampler.draw(seqs, targets, step=5)) and drawn.shape == (1, 3)
    assert set(drawn.ravel().tolist()) <= {5, 6}  # 7 has no plays; the rest is the row's
    with pytest.raises(ConfigError, match="--set negatives_on=gpu: choose auto, host or device"):
        TrainConfig(negatives_on="gpu")


def test_a_rank_draws_its_own_rows_on_the_device_without_a_gather():
    calls = []
    inner = SimpleNamespace(on_device=True, draw=lambda s, t, step, rank=0: calls.append((step, rank)) or s)
    seqs = torch.ones((2, 3), dtype=torch.long)
    # World.gather_rows would need a process group: a device draw must not call it
    assert torch.equal(ShardSampler(inner, World(rank=1, size=2)).draw(seqs, seqs, 9), seqs)
    assert calls == [(9, 1)]


def test_negatives_on_is_a_runtime_knob_outside_the_run_id():
    manifest = manifest_stub()
    ids = {run_id(manifest, TrainConfig(dataset="d", negatives_on=where)) for where in ("auto", "host", "device")}
    assert len(ids) == 1


@pytest.mark.parametrize("loss,feedback", [("sampled", "all"), ("bce", "negative-target")])
def test_training_with_device_negatives(tiny_logs, tmp_path, monkeypatch, loss, feedback):
    ws = Workspace.at(tmp_path / "ws")
    prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4))
    drawn = []
    real = sampling.sample_negatives
    monkeypatch.setattr(sampling, "sample_negatives", lambda *a, **kw: drawn.append(1) or real(*a, **kw))
    monkeypatch.setattr("toolkit.train.negatives_for", lambda *a, **kw: pytest.fail("drew on the host"))
    cfg = TrainConfig(loss=loss, feedback=feedback, negatives_on="device", d_model=16, n_heads=2, n_layers=1,
                      batch_size=4, epochs=2, negatives=3, warmup_steps=2)
    result = train(ws, cfg)
    assert result.status == "finished" and result.valid["n_pos"] > 0 and drawn
    # the same run as with the host sampler: a finished run is reused whichever draws it
    again = train(ws, TrainConfig(**{**cfg.__dict__, "negatives_on": "host"}))
    assert again.reused and again.id == result.id
    assert run_dir(ws, result.id).result.exists()
