"""The chunked full-catalogue cross-entropy equals torch's on the materialised scores, trains the same
model, and is chosen only when the step's scores outgrow ``loss_memory_mb``."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings as hsettings, strategies as st
from typer.testing import CliRunner

from toolkit import full_softmax, losses
from toolkit.artifacts import Workspace, read_metrics, run_dir
from toolkit.cli import app
from toolkit.config import ModelConfig, PrepConfig, TrainConfig, identity, settings
from toolkit.errors import ConfigError
from toolkit.model import SeqRec, cloze_mask
from toolkit.prep import prep
from toolkit.schema import PAD
from toolkit.train import train, train_step

torch.set_num_threads(1)
N, V, D, R = 11, 23, 8, 6  # positions, catalogue incl. PAD, width, repeat entries per query
TOL = dict(rtol=1e-5, atol=1e-6)  # float32


def problem(seed: int = 0, n: int = N, v: int = V, d: int = D):
    """hidden (n, d); table (v + 1, d): the last row plays MASK, never scored; targets with PAD positions."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g).requires_grad_()
    table = torch.randn(v + 1, d, generator=g).requires_grad_()
    targets = torch.randint(1, v, (n,), generator=g)
    targets[::4] = PAD
    return hidden, table, targets


def plain_scores(hidden, table, v=V):
    scores = hidden @ table[:v].T  # (N, V)
    return torch.cat([torch.full_like(scores[:, :1], float("-inf")), scores[:, 1:]], dim=1)


def grads(loss, *inputs):
    return torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("chunk", [1, 3, 7, V - 1, V, V + 5])
def test_loss_and_gradients_match_torch_cross_entropy(chunk):
    hidden, table, targets = problem()
    want = F.cross_entropy(plain_scores(hidden, table), targets, ignore_index=PAD)
    got = full_softmax.cross_entropy(hidden, table, targets, chunk, n_scored=V)
    torch.testing.assert_close(got, want, **TOL)
    for g_got, g_want in zip(grads(got, hidden, table), grads(want, hidden, table)):
        torch.testing.assert_close(g_got, g_want, **TOL)
    g_table = grads(full_softmax.cross_entropy(hidden, table, targets, chunk, n_scored=V), table)[0]
    assert torch.count_nonzero(g_table[V:]) == 0  # the MASK row is not in the catalogue
    g_hidden = grads(full_softmax.cross_entropy(hidden, table, targets, chunk, n_scored=V), hidden)[0]
    assert torch.count_nonzero(g_hidden[targets == PAD]) == 0 and torch.count_nonzero(g_hidden[1]) > 0


@pytest.mark.parametrize("chunk", [1, 4, 10, V])
def test_repeat_copy_term_is_added_exactly(chunk):
    hidden, table, targets = problem(1)
    g = torch.Generator().manual_seed(2)
    items = torch.randint(0, V, (N, R), generator=g)
    items[:, 1] = items[:, 0]  # a track played twice: its weights add up
    items[:, 2] = targets  # the target among the copied tracks
    weights = torch.randn(N, R, generator=g)
    weights = torch.where(items == PAD, 0.0, weights).requires_grad_()  # as copy_terms' `weights * available`
    want = F.cross_entropy(plain_scores(hidden, table).scatter_add(1, items, weights), targets, ignore_index=PAD)
    got = full_softmax.cross_entropy(hidden, table, targets, chunk, V, items, weights)
    torch.testing.assert_close(got, want, **TOL)
    for g_got, g_want in zip(grads(got, hidden, table, weights), grads(want, hidden, table, weights)):
        torch.testing.assert_close(g_got, g_want, **TOL)


def test_per_query_terms_by_hand():
    # D = 1, catalogue PAD, 1, 2: scores h * e = (-inf, 1, 2) for h = 1; the target 1 loses log(1 + e)
    hidden = torch.tensor([[1.0], [1.0]])
    table = torch.tensor([[0.0], [1.0], [2.0]])
    got = full_softmax.cross_entropy_terms(hidden, table, torch.tensor([1, PAD]), chunk=1)
    want = torch.tensor([torch.log1p(torch.exp(torch.tensor(1.0))).item(), 0.0])
    torch.testing.assert_close(got, want, **TOL)


def test_no_target_gives_zero_with_a_graph():
    hidden, table, _ = problem()
    loss = full_softmax.cross_entropy(hidden, table, torch.zeros(N, dtype=torch.long), 5, V)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(hidden.grad) == 0 and torch.count_nonzero(table.grad) == 0


def test_negative_target_chunked_matches_the_materialised_loss():
    hidden, table, skipped = problem(3)
    want = losses.negative_target_loss(plain_scores(hidden, table), skipped)
    got = losses.negative_target_chunked(hidden, table, skipped, 4, V)
    torch.testing.assert_close(got, want, **TOL)
    for g_got, g_want in zip(grads(got, hidden, table), grads(want, hidden, table)):
        torch.testing.assert_close(g_got, g_want, **TOL)


def test_autocast_does_not_lower_the_loss_to_bfloat16():
    hidden, table, targets = problem(4, v=200)
    want = F.cross_entropy(plain_scores(hidden, table, 200), targets, ignore_index=PAD)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = full_softmax.cross_entropy(hidden, table, targets, 64, 200)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, **TOL)  # bfloat16 scores would be off by ~1e-2


def test_bad_arguments_say_what_to_pass():
    hidden, table, targets = problem()
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        full_softmax.cross_entropy(hidden, table, targets, 0)
    with pytest.raises(ValueError, match="items and weights together"):
        full_softmax.cross_entropy(hidden, table, targets, 3, items=torch.zeros(N, 2, dtype=torch.long))


@hsettings(max_examples=40, deadline=None, derandomize=True)
@given(n=st.integers(0, 9), v=st.integers(2, 40), d=st.integers(1, 5), chunk=st.integers(1, 45),
       seed=st.integers(0, 2**16))
def test_any_chunk_gives_the_plain_loss(n, v, d, chunk, seed):
    hidden, table, targets = problem(seed, n, v, d)
    want = F.cross_entropy(plain_scores(hidden, table, v), targets, ignore_index=PAD, reduction="sum")
    want = want / (targets != PAD).sum().clamp(min=1)
    got = full_softmax.cross_entropy(hidden, table, targets, chunk, v)
    torch.testing.assert_close(got, want, **TOL)
    for g_got, g_want in zip(grads(got, hidden, table), grads(want, hidden, table)):
        torch.testing.assert_close(g_got, g_want, **TOL)


def test_chunk_columns_by_hand():
    # 1 MiB holds 262,144 float32 scores
    assert full_softmax.chunk_columns(1000, 262, 1.0) is None  # 262,000 scores fit: plain loss
    assert full_softmax.chunk_columns(1000, 300, 1.0) == 262
    assert full_softmax.chunk_columns(10**6, 300, 1.0) == 1  # never 0 columns
    assert full_softmax.chunk_columns(0, 10**9, 1.0) is None  # no position: nothing to hold


# ---- wiring: TrainConfig.loss_memory_mb and train_step ------------------------------------------


def test_loss_memory_stays_out_of_the_run_id_at_its_default():
    assert "loss_memory_mb" not in identity(TrainConfig())
    assert identity(TrainConfig(loss_memory_mb=64))["loss_memory_mb"] == 64
    assert settings(["loss_memory_mb=64"]) == {"loss_memory_mb": 64.0}
    with pytest.raises(ConfigError, match=r"--set loss_memory_mb=0: must be a finite number > 0"):
        TrainConfig(loss_memory_mb=0)


def tiny_batch(n_items: int, B: int = 4, T: int = 6, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    seqs = torch.randint(1, n_items + 1, (B, T), generator=g)
    seqs[0, :3] = PAD  # left padding
    seqs[1, 1:3] = seqs[1, 0]  # replays for the repeat head
    fb = torch.randint(0, 2, (B, T), generator=g) * (seqs != PAD)
    next_item = torch.cat([seqs[:, 1:], torch.zeros(B, 1, dtype=torch.long)], 1)
    return {"seqs": seqs, "fb": fb, "next_item": next_item, "next_pos": next_item,
            "next_skip": torch.cat([fb[:, 1:], torch.zeros(B, 1, dtype=torch.long)], 1),
            "succ": torch.randint(0, n_items + 1, (B, T, 2), generator=g)}


@pytest.mark.parametrize("options", [
    dict(repeat_head=False), dict(feedback="negative-target"), dict(repeat_head=True, successors=2), dict(model="bert4rec"),
])
def test_chunked_path_trains_the_same_weights_as_the_plain_one(monkeypatch, options):
    n_items, steps = 300, 4
    chunked_calls = []
    terms = full_softmax.cross_entropy_terms
    monkeypatch.setattr(full_softmax, "cross_entropy_terms", lambda *a: chunked_calls.append(a[3]) or terms(*a))

    def build(cfg: TrainConfig) -> SeqRec:
        torch.manual_seed(0)
        return SeqRec(ModelConfig(n_items=n_items, max_len=6, d_model=8, n_heads=2, n_layers=1, dropout=0.0,
                                  causal=cfg.model != "bert4rec", repeat_head=cfg.repeat_head,
                                  successors=cfg.successors))

    def fit(memory_mb: float) -> SeqRec:
        cfg = TrainConfig(loss="ce", loss_memory_mb=memory_mb, **options)
        model = build(cfg)
        # SGD, not Adam: Adam scales a gradient that is 0 up to rounding (the attention key bias's) to a
        # full step, so two equal losses whose rounding differs would train visibly different weights
        opt = torch.optim.SGD(model.parameters(), lr=0.1)  # higher: the repeat head diverges
        for step in range(steps):
            loss = sum(train_step(model, model, tiny_batch(n_items, seed=step), cfg,
                                  SimpleNamespace(loss="ce", cloze=seeded_cloze), step).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model

    def seeded_cloze(seqs, model_cfg, step):  # both fits mask the same plays
        return cloze_mask(seqs, model_cfg.n_items, model_cfg.mask_prob, torch.Generator().manual_seed(step))

    plain = fit(512.0)
    assert chunked_calls == []
    chunked = fit(0.005)  # 1,310 scores: at most 24 positions x 301 columns -> chunks of 54+ columns
    assert chunked_calls and all(1 <= c < n_items + 1 for c in chunked_calls)
    for (name, p), q in zip(plain.named_parameters(), chunked.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
    start = build(TrainConfig(**options)).encoder.item_emb.weight
    assert (plain.encoder.item_emb.weight - start).abs().max() > 1e-3  # the steps did train


def test_cli_trains_with_the_chunked_loss_and_refuses_a_bad_budget(tiny_logs, tmp_path, monkeypatch):
    ws = Workspace.at(tmp_path / "ws")
    prep([tiny_logs], ws, PrepConfig(name="tiny", max_len=4))
    calls = []
    terms = full_softmax.cross_entropy_terms
    monkeypatch.setattr(full_softmax, "cross_entropy_terms", lambda *a: calls.append(a[3]) or terms(*a))
    small = dict(d_model=16, n_heads=2, n_layers=1, batch_size=4, epochs=2, warmup_steps=2, loss="ce")
    plain = train(ws, TrainConfig(**small))
    assert calls == []
    runner = CliRunner()
    args = ["train", "--workspace", str(ws.root), "--loss", "ce", "--epochs", "2", "--d-model", "16",
            "--batch-size", "4", "--n-layers", "1", "--set", "warmup_steps=2"]
    result = runner.invoke(app, [*args, "--set", "loss_memory_mb=0.0001"])
    assert result.exit_code == 0, result.output
    assert calls  # 26 scores per chunk: the chunked path ran
    chunked = [r for r in (ws.root / "runs").iterdir() if r.name != plain.id]
    assert len(chunked) == 1
    got = json.loads((chunked[0] / "config.json").read_text())["train"]
    assert got["loss_memory_mb"] == 0.0001
    want_loss = [r["loss_next"] for r in read_metrics(run_dir(ws, plain.id))]
    got_loss = [r["loss_next"] for r in read_metrics(run_dir(ws, chunked[0].name))]
    assert got_loss == pytest.approx(want_loss, rel=1e-4)
    bad = runner.invoke(app, [*args, "--set", "loss_memory_mb=-1"])
    assert bad.exit_code == 1 and "loss_memory_mb=-1" in bad.output and "Traceback" not in bad.output
    assert len(bad.output.strip().splitlines()) == 1
