"""Training on the tiny fixture: every model and feedback mode runs, seeds reproduce, resume is exact."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import reference
from toolkit.artifacts import Workspace, load_torch, read_metrics, run_dir
from toolkit.cli import app
from toolkit.config import ModelConfig, TrainConfig
from toolkit.data import SplitArrays, load_split
from toolkit.errors import ConfigError
from toolkit.prep import prep
from toolkit.config import PrepConfig
from toolkit.model import SeqRec
from toolkit.train import train

TIMING = ("seconds", "rows_per_s")


def same(a: dict, b: dict) -> bool:
    """Metric dictionaries equal, NaN (a metric with no query, e.g. no skip seen yet) equal to NaN."""
    return a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


SMALL = dict(d_model=16, n_heads=2, n_layers=1, batch_size=4, epochs=2, negatives=3, warmup_steps=2)


@pytest.fixture
def ws(tiny_logs, tmp_path):
    workspace = Workspace.at(tmp_path / "ws")
    prep([tiny_logs], workspace, PrepConfig(name="tiny", max_len=4))
    return workspace


@pytest.mark.parametrize("model,feedback", [
    ("pop", "all"), ("markov", "all"), ("markov", "positives-only"),
    ("sasrec", "all"), ("sasrec", "positives-only"), ("sasrec", "contrastive"), ("sasrec", "feedback-input"),
    ("sasrec", "negative-target"), ("sasrec", "contrastive+feedback-input"), ("bert4rec", "all"),
    ("bert4rec", "contrastive"), ("gru4rec", "all"), ("gru4rec", "contrastive+feedback-input"),
])
def test_every_model_and_mode_trains(ws, model, feedback):
    result = train(ws, TrainConfig(model=model, feedback=feedback, **SMALL))
    assert result.status == "finished"
    v = result.valid
    # every validation query was scored: the positive ones are the plays after a session's first whose
    # next play was kept, counted here from the split's own arrays
    valid = load_split(ws.dataset("tiny"), "valid")
    kept_next = (np.asarray(valid.next_item) != 0) & (reference.next_skip(np.asarray(valid.skips), np.asarray(valid.row_session)) == 0)
    assert v["n_pos"] == int(kept_next.sum())
    rows = read_metrics(run_dir(ws, result.id))
    # the result reports the best epoch's validation, and every recorded loss is a finite number
    best = max(rows, key=lambda r: r["valid_ndcg@10"])
    assert v["ndcg@10"] == best["valid_ndcg@10"]
    assert all(np.isfinite(r[k]) for r in rows for k in r if k.startswith("loss"))
    assert len(rows) == (1 if model in ("pop", "markov") else SMALL["epochs"])


@pytest.mark.parametrize("context,negatives", [("score", "seen"), ("output", "seen"), ("score", "session")])
def test_contrastive_variants_train_and_their_term_changes_the_model(ws, context, negatives):
    plain = train(ws, TrainConfig(feedback="contrastive+feedback-input", **SMALL))
    variant = train(ws, TrainConfig(feedback="contrastive+feedback-input", context=context,
                                    skip_negatives=negatives, **SMALL))
    assert variant.status == "finished" and variant.id != plain.id
    assert read_metrics(run_dir(ws, variant.id))[0]["loss_contrastive"] != \
        read_metrics(run_dir(ws, plain.id))[0]["loss_contrastive"]


def test_positives_only_contrastive_takes_its_negatives_from_the_hidden_skips(ws):
    # the model never reads a skipped play, yet the skip term still has the session's skips to push from
    result = train(ws, TrainConfig(feedback="positives-only+contrastive", **SMALL))
    assert result.status == "finished"
    assert all(row["loss_contrastive"] > 0 for row in read_metrics(run_dir(ws, result.id)))


@pytest.mark.parametrize("loss", ["sampled", "bce"])
def test_sampled_losses_train(ws, loss):
    result = train(ws, TrainConfig(loss=loss, feedback="negative-target", **SMALL))
    assert result.status == "finished"


def test_same_seed_same_metrics_and_the_run_is_reused(ws, tmp_path, tiny_logs):
    first = train(ws, TrainConfig(seed=5, **SMALL))
    again = train(ws, TrainConfig(seed=5, **SMALL))
    assert again.reused and same(again.valid, first.valid)
    other = Workspace.at(tmp_path / "other")
    prep([tiny_logs], other, PrepConfig(name="tiny", max_len=4))
    fresh = train(other, TrainConfig(seed=5, **SMALL))
    assert fresh.id == first.id and same(fresh.valid, first.valid)
    assert untimed(read_metrics(run_dir(other, fresh.id))) == untimed(read_metrics(run_dir(ws, first.id)))


def test_training_kernels_add_into_shared_rows_in_one_order():
    from toolkit.train import deterministic_kernels

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the rows' sums race only with more than one thread
    try:
        torch.manual_seed(0)
        table = torch.randn(500, 32, requires_grad=True)
        ids, weights = torch.randint(0, 500, (64, 50)), torch.randn(64, 50, 32)

        def grad() -> torch.Tensor:  # the backward of an indexed read of the track table
            table.grad = None
            (table[ids] * weights).sum().backward()
            return table.grad.clone()

        was = torch.are_deterministic_algorithms_enabled()
        # without the context, 30 of 30 repeats differed from the first on a 2-core machine
        with deterministic_kernels(torch.device("cpu")):
            first = grad()
            assert all(torch.equal(first, grad()) for _ in range(20))
        assert torch.are_deterministic_algorithms_enabled() == was  # the caller's setting is back
    finally:
        torch.set_num_threads(threads)


def test_resume_after_an_interruption_matches_an_uninterrupted_run(ws, tmp_path, tiny_logs):
    cfg = TrainConfig(seed=2, patience=10, **{**SMALL, "epochs": 3})
    whole = train(ws, cfg)

    other = Workspace.at(tmp_path / "other")
    prep([tiny_logs], other, PrepConfig(name="tiny", max_len=4))

    def crash_after_first_epoch(event):
        if event.phase == "step" and event.epoch == 0 and event.batch == 1:
            time.sleep(1.5)  # a slow first epoch: its time must still count in the run's wall time
        if event.phase == "epoch" and event.epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(other, cfg, crash_after_first_epoch)
    assert not run_dir(other, whole.id).result.exists()
    resumed_events = []
    resumed = train(other, cfg, resumed_events.append)
    assert resumed_events[0].phase == "resumed"
    assert same(resumed.valid, whole.valid)
    # the wall time spans both sessions: the slow first epoch, then the epochs trained after resuming
    after = sum(r["seconds"] for r in read_metrics(run_dir(other, whole.id))[1:])
    assert resumed.wall_s >= 1.5 + after
    # the loss of every epoch after the interruption matches too, so the data order and RNG resumed exactly
    assert untimed(read_metrics(run_dir(other, whole.id)))[1:] == untimed(read_metrics(run_dir(ws, whole.id)))[1:]


def test_interrupt_mid_epoch_resumes_exactly(ws, tmp_path, tiny_logs):
    cfg = TrainConfig(seed=4, patience=10, **SMALL)
    whole = train(ws, cfg)
    other = Workspace.at(tmp_path / "other")
    prep([tiny_logs], other, PrepConfig(name="tiny", max_len=4))
    seen = []

    def crash_at_second_step(event):
        seen.append(event)
        if event.phase == "step" and len([e for e in seen if e.phase == "step"]) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(other, cfg, crash_at_second_step)
    assert same(train(other, cfg).valid, whole.valid)


def test_checkpoints_load_with_weights_only(ws):
    import torch

    result = train(ws, TrainConfig(**SMALL))
    run = run_dir(ws, result.id)
    for path in (run.best, run.checkpoint):
        state = torch.load(path, weights_only=True)
        assert "model" in state and "model_config" in state


@pytest.mark.parametrize("bad", [
    dict(model="narm"), dict(feedback="all+contrastive"), dict(feedback="positives-only+negative-target"),
    dict(feedback="positives-only+feedback-input"), dict(feedback="positives-only+contrastive", context="output"),
    dict(model="bert4rec", target="next-pos"), dict(model="bert4rec", target="next-kept"),
    dict(model="pop", feedback="contrastive"), dict(context="both"), dict(target="next-skip"),
])
def test_contradictory_options_are_refused(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_skip_aware_mode_on_data_without_skips(tmp_path):
    logs = tmp_path / "seq.txt"
    logs.write_text("1 2 3 4 5\n2 3 4 5 6\n3 4 5 6 7\n")
    ws = Workspace.at(tmp_path / "ws")
    prep([logs], ws, PrepConfig(name="noskips", max_len=4))
    with pytest.raises(ConfigError, match="no skipped plays"):
        train(ws, TrainConfig(dataset="noskips", feedback="contrastive", **SMALL))


def test_cli_train_runs_and_resume_errors(ws):
    runner = CliRunner()
    root = str(ws.root)
    result = runner.invoke(app, ["train", "--workspace", root, "--epochs", "1", "--d-model", "16", "--batch-size", "4",
                                 "--negatives", "3"])
    assert result.exit_code == 0, result.output
    assert "valid NDCG@10" in result.output and "run " in result.output
    listed = runner.invoke(app, ["runs", "--workspace", root])
    assert listed.exit_code == 0 and "sasrec-all" in listed.output
    missing = runner.invoke(app, ["train", "--workspace", root, "--resume", "nope"])
    assert missing.exit_code == 1 and "toolkit runs" in missing.output
    unknown = runner.invoke(app, ["train", "--workspace", root, "--dataset", "absent"])
    assert unknown.exit_code == 1 and "absent" in unknown.output
    json.dumps(result.output)


# the TrainConfig fields of the first release: a run's id hashes exactly these while every later
# setting keeps the value that reproduces the old behaviour
FIRST_RELEASE = (
    "dataset", "model", "feedback", "target", "loss", "negatives", "sampler", "sampler_beta", "alpha", "tau",
    "context", "neg_weight", "d_model", "n_layers", "n_heads", "dropout", "mask_prob", "epochs", "batch_size", "lr",
    "weight_decay", "warmup_steps", "grad_clip", "patience", "max_steps", "valid_sessions", "seed", "device",
    "compile",
)


def test_later_settings_keep_old_run_ids_until_they_are_used():
    import hashlib
    from dataclasses import asdict

    from toolkit.config import LATER_SETTINGS, RUNTIME_SETTINGS
    from stubs import manifest_stub
    from toolkit.train import run_id

    manifest = manifest_stub()
    # a run recorded before the repeat head existed: its config holds the settings' earlier behaviour
    old = dict(repeat_head=False, successors=0)
    cfg = TrainConfig(dataset="d", feedback="contrastive", seed=2, **old)
    first = {k: v for k, v in asdict(cfg).items() if k in FIRST_RELEASE}
    key = json.dumps({"data": manifest.fingerprint, "pipeline": "p", "cfg": first}, sort_keys=True)
    assert run_id(manifest, cfg) == f"sasrec-contrastive-s2-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    assert set(asdict(cfg)) == set(FIRST_RELEASE) | set(LATER_SETTINGS) | RUNTIME_SETTINGS
    changed = {run_id(manifest, TrainConfig(dataset="d", feedback="contrastive", seed=2, lr_schedule="cosine", **old)),
               run_id(manifest, TrainConfig(dataset="d", feedback="contrastive", seed=2, amp=True, **old)),
               run_id(manifest, TrainConfig(dataset="d", feedback="contrastive", seed=2, exclude_played=True, **old)),
               run_id(manifest, TrainConfig(dataset="d", feedback="contrastive", seed=2, skip_negatives="seen", **old)),
               run_id(manifest, TrainConfig(dataset="d", feedback="contrastive", seed=2))}  # today's default: repeat head
    assert len(changed) == 5 and run_id(manifest, cfg) not in changed


def test_contrastive_context_and_negatives_are_checked():
    TrainConfig(feedback="contrastive", context="score", skip_negatives="seen")  # both valid
    with pytest.raises(ConfigError, match="--context bogus: choose input, output or score"):
        TrainConfig(context="bogus")
    with pytest.raises(ConfigError, match="--skip-negatives later: choose session or seen"):
        TrainConfig(skip_negatives="later")


def test_learning_rate_schedule_by_hand():
    from toolkit.train import lr_factor

    const = TrainConfig(warmup_steps=4)
    assert [lr_factor(const, 20, s) for s in (0, 1, 3, 10, 19)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    cos = TrainConfig(warmup_steps=4, lr_schedule="cosine")
    # warm-up as before, then 0.5 (1 + cos(pi (s - 4) / 16)) over the 16 steps left of 20
    assert [lr_factor(cos, 20, s) for s in (0, 3, 4, 8, 12, 20, 25)] == pytest.approx(
        [0.25, 1.0, 1.0, 0.5 * (1 + 0.5 ** 0.5), 0.5, 0.0, 0.0])


def test_cosine_schedule_and_mixed_precision_train_and_resume(ws, tmp_path, tiny_logs):
    cfg = TrainConfig(seed=1, patience=10, lr_schedule="cosine", amp=True, **{**SMALL, "epochs": 3})
    whole = train(ws, cfg)
    assert whole.status == "finished"
    losses_ = [r["loss_next"] for r in read_metrics(run_dir(ws, whole.id))]
    assert len(losses_) == 3 and all(np.isfinite(x) and x > 0 for x in losses_)  # finite under bfloat16 autocast
    other = Workspace.at(tmp_path / "other")
    prep([tiny_logs], other, PrepConfig(name="tiny", max_len=4))

    def crash_after_first_epoch(event):
        if event.phase == "epoch" and event.epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(other, cfg, crash_after_first_epoch)
    assert same(train(other, cfg).valid, whole.valid)  # the schedule resumed where it stopped


def test_mixed_precision_runs_the_forward_pass_in_bfloat16(ws, monkeypatch):
    import toolkit.train as train_module

    seen = []
    real = train_module.losses.full_cross_entropy

    def spy(scores, targets):
        seen.append(scores.dtype)
        return real(scores, targets)

    monkeypatch.setattr(train_module.losses, "full_cross_entropy", spy)
    train(ws, TrainConfig(amp=True, max_steps=1, **SMALL))
    train(ws, TrainConfig(max_steps=1, **SMALL))
    import torch

    assert seen == [torch.bfloat16, torch.float32]


@pytest.mark.parametrize("item,message", [
    ("epochs", "key=value"), ("nope=1", "key=value"), ("epochs=abc", "takes int"), ("amp=3", "takes bool"),
    ("lr_schedule=linear", "choose constant or cosine"),
])
def test_cli_train_settings_are_checked(ws, item, message):
    result = CliRunner().invoke(app, ["train", "--workspace", str(ws.root), "--set", item])
    assert result.exit_code == 1 and message in result.output, result.output


def test_cli_train_takes_any_setting(ws):
    result = CliRunner().invoke(app, ["train", "--workspace", str(ws.root), "--epochs", "1", "--d-model", "16",
                                      "--batch-size", "4", "--set", "weight_decay=0.01", "--set", "warmup_steps=3",
                                      "--lr-schedule", "cosine"])
    assert result.exit_code == 0, result.output
    run = next((ws.root / "runs").iterdir())
    saved = json.loads((run / "config.json").read_text())["train"]
    assert saved["weight_decay"] == 0.01 and saved["warmup_steps"] == 3 and saved["lr_schedule"] == "cosine"


def test_exclude_played_changes_validation_only(ws):
    """--exclude-played is a validation protocol: same seed, same training losses, its own run id
    and config; the recorded validation score is the report's valid-split score without played tracks."""
    from toolkit.artifacts import read_manifest
    from toolkit.evaluate import summarize
    from toolkit.report import Protocol, score_run
    from toolkit.runs import select_runs

    base = ["train", "--workspace", str(ws.root), "--epochs", "1", "--d-model", "16", "--batch-size", "4"]
    plain = CliRunner().invoke(app, base)
    excl = CliRunner().invoke(app, [*base, "--exclude-played"])
    assert plain.exit_code == 0 and excl.exit_code == 0, excl.output
    runs = {json.loads((r / "config.json").read_text())["train"]["exclude_played"]: r for r in (ws.root / "runs").iterdir()}
    assert set(runs) == {False, True}
    rows = {k: json.loads((r / "metrics.jsonl").read_text().splitlines()[0]) for k, r in runs.items()}
    assert rows[True]["loss_next"] == rows[False]["loss_next"]
    run = select_runs(ws, [runs[True].name], None, allow_unfinished=False)[0]
    q = score_run(ws, run, Protocol(split="valid", exclude_played=True), torch.device("cpu"))
    again = summarize(q, read_manifest(ws.dataset("tiny")).items)
    assert again["ndcg@10"] == pytest.approx(rows[True]["valid_ndcg@10"])


def test_next_kept_targets_train_only_where_the_next_play_was_kept():
    from types import SimpleNamespace

    from toolkit import losses
    from toolkit.model import SeqRec
    from toolkit.config import ModelConfig
    from toolkit.train import train_step

    torch.manual_seed(0)
    model = SeqRec(ModelConfig(n_items=6, max_len=4, d_model=8, n_heads=2, n_layers=1)).eval()
    # one row: plays 1 2 3 (skipped) 4, next plays 2 3 4 -, the play after 2 (3) was skipped
    batch = {"seqs": torch.tensor([[1, 2, 3, 4]]), "fb": torch.tensor([[0, 0, 1, 0]]),
             "next_item": torch.tensor([[2, 3, 4, 0]]), "next_pos": torch.tensor([[2, 4, 4, 0]]),
             "next_skip": torch.tensor([[0, 1, 0, 0]])}
    ce = SimpleNamespace(loss="ce")
    got = train_step(model, model, batch, TrainConfig(target="next-kept"), ce, 0)["next"]
    scores = model.scores(model(batch["seqs"], batch["fb"]))[0]  # (T, V)
    want = losses.full_cross_entropy(scores[[0, 2]], torch.tensor([2, 4]))  # positions 0 and 2 only
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    every = train_step(model, model, batch, TrainConfig(), ce, 0)["next"]
    assert every.item() == pytest.approx(losses.full_cross_entropy(scores[:3], torch.tensor([2, 3, 4])).item(), rel=1e-6)
    with pytest.raises(ConfigError, match="drop --target next-kept"):
        TrainConfig(feedback="positives-only", target="next-kept")


def test_cli_train_with_shared_negatives_end_to_end(ws):
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--workspace", str(ws.root), "--loss", "shared", "--epochs", "1",
                                 "--d-model", "16", "--batch-size", "4", "--negatives", "3"])
    assert result.exit_code == 0, result.output
    assert "valid NDCG@10" in result.output
    both = train(ws, TrainConfig(loss="shared", feedback="contrastive+negative-target", **SMALL))
    assert both.status == "finished"
    rows = read_metrics(run_dir(ws, both.id))
    assert all(r["loss_next"] > 0 and r["loss_negative"] > 0 for r in rows)


def test_shared_loss_resumes_exactly_mid_epoch(ws, tmp_path, tiny_logs):
    cfg = TrainConfig(seed=4, patience=10, loss="shared", **SMALL)
    whole = train(ws, cfg)
    other = Workspace.at(tmp_path / "other")
    prep([tiny_logs], other, PrepConfig(name="tiny", max_len=4))
    steps = []

    def crash_at_second_step(event):
        steps.extend([event] if event.phase == "step" else [])
        if len(steps) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(other, cfg, crash_at_second_step)
    # the negatives of every step come from (seed, step), so the resumed run draws what the whole one drew
    assert same(train(other, cfg).valid, whole.valid)


@pytest.mark.parametrize("sampler", ["popularity", "uniform"])
def test_shared_negatives_are_seeded_by_seed_and_step(sampler):
    import numpy as np

    from toolkit.train import Sampler

    # tracks 1..6 with plays; 7 is never played, so popularity never draws it
    seqs = np.array([[0, 1, 2, 3], [4, 5, 6, 1]], dtype=np.int32)
    rows = SplitArrays(seqs=seqs, skips=np.zeros_like(seqs, np.int8), next_item=np.zeros_like(seqs),
                       next_pos=np.zeros_like(seqs), row_session=np.arange(2))
    cfg = TrainConfig(loss="shared", negatives=500, sampler=sampler)
    draw = Sampler(rows, 7, cfg, torch.device("cpu")).draw_shared
    first = draw(3)
    assert first.shape == (500,) and first.dtype == torch.int64
    assert torch.equal(first, draw(3)) and torch.equal(first, Sampler(rows, 7, cfg, torch.device("cpu")).draw_shared(3))
    assert not torch.equal(first, draw(4))
    assert not torch.equal(first, Sampler(rows, 7, TrainConfig(loss="shared", negatives=500, sampler=sampler,
                                                                seed=1), torch.device("cpu")).draw_shared(3))
    assert int(first.min()) >= 1 and int(first.max()) <= 7
    drawn = set(first.tolist())
    assert drawn == ({1, 2, 3, 4, 5, 6} if sampler == "popularity" else {1, 2, 3, 4, 5, 6, 7})


@pytest.mark.parametrize("loss,feedback", [("ce", "all"), ("shared", "all"), ("shared", "positives-only+contrastive")])
def test_repeat_head_trains_learns_its_weights_and_scores_replays(ws, loss, feedback):
    cfg = TrainConfig(loss=loss, feedback=feedback, repeat_head=True, **{**SMALL, "epochs": 3})
    result = train(ws, cfg)
    assert result.status == "finished" and result.valid["n_pos"] > 0
    best = load_torch(run_dir(ws, result.id).best)
    weights = best["model"]["repeat_by_distance"]
    assert torch.count_nonzero(weights) > 0  # the head moved away from its zero start
    plain = train(ws, TrainConfig(loss=loss, feedback=feedback, repeat_head=False, **{**SMALL, "epochs": 3}))
    assert plain.id != result.id  # a setting of its own in the run's identity


def test_repeat_head_and_successors_are_on_by_default_where_they_apply():
    # the study's choice on validation; the run records the resolved values, never None
    assert (TrainConfig().repeat_head, TrainConfig().successors) == (True, 10)
    assert (TrainConfig(model="gru4rec").repeat_head, TrainConfig(model="repeat").successors) == (True, 10)
    for off in (dict(model="bert4rec"), dict(feedback="negative-target"), dict(model="markov"), dict(model="pop")):
        assert (TrainConfig(**off).repeat_head, TrainConfig(**off).successors) == (False, 0), off
    assert TrainConfig(repeat_head=False).successors == 0


def test_repeat_head_refuses_what_it_cannot_train():
    with pytest.raises(ConfigError, match="--repeat-head"):
        TrainConfig(model="bert4rec", repeat_head=True)
    with pytest.raises(ConfigError, match="--repeat-head"):
        TrainConfig(feedback="negative-target", repeat_head=True)


@pytest.mark.parametrize("loss,feedback", [("ce", "all"), ("shared", "all"), ("shared", "positives-only+contrastive")])
def test_listener_history_and_successors_train_and_score(ws, loss, feedback):
    from toolkit.report import Protocol, score_run
    from toolkit.runs import select_runs

    cfg = TrainConfig(loss=loss, feedback=feedback, repeat_head=True, history=3, successors=2, **{**SMALL, "epochs": 3})
    result = train(ws, cfg)
    assert result.status == "finished" and result.valid["n_pos"] > 0
    best = load_torch(run_dir(ws, result.id).best)
    assert best["model_config"]["history"] == 3 and best["model_config"]["max_len"] == 4 + 3
    assert torch.count_nonzero(best["model"]["successor_by_rank"]) > 0  # the successor term moved
    q = score_run(ws, select_runs(ws, [result.id], None, False)[0], Protocol(split="test"), torch.device("cpu"))
    plain = score_run(ws, select_runs(ws, [train(ws, TrainConfig(loss=loss, feedback=feedback, repeat_head=False,
                                                                 **SMALL)).id],
                                      None, False)[0], Protocol(split="test"), torch.device("cpu"))
    # the same queries, whatever context the rows carry
    assert q.session.tolist() == plain.session.tolist() and q.skipped.tolist() == plain.skipped.tolist()


def test_windows_after_the_successors_train_score_and_recommend(ws):
    from toolkit.report import Protocol, score_run
    from toolkit.runs import select_runs

    cfg = TrainConfig(repeat_head=True, successors=2, window=2, **{**SMALL, "epochs": 3})
    result = train(ws, cfg)
    assert result.status == "finished" and result.valid["n_pos"] > 0
    best = load_torch(run_dir(ws, result.id).best)
    assert best["model_config"]["window"] == 2
    assert torch.count_nonzero(best["model"]["window_by_rank"]) > 0  # the window term moved
    q = score_run(ws, select_runs(ws, [result.id], None, False)[0], Protocol(split="test"), torch.device("cpu"))
    assert len(q.session) > 0
    rule = train(ws, TrainConfig(model="repeat", successors=2, window=2))  # the count rule reads them too
    assert rule.status == "finished" and rule.valid["n_pos"] > 0
    with pytest.raises(ConfigError, match="window"):
        TrainConfig(model="markov", window=2)
    with pytest.raises(ConfigError, match="window"):
        TrainConfig(window=-1)


def test_rule_rank_with_frozen_track_embeddings_trains_and_scores(ws):
    from toolkit.report import Protocol, score_run
    from toolkit.runs import select_runs

    cfg = TrainConfig(repeat_head=True, successors=2, window=1, transitions=3, rule_rank=True, freeze_items=True,
                      loss="shared", **{**SMALL, "epochs": 2})
    result = train(ws, cfg)
    assert result.status == "finished" and result.valid["n_pos"] > 0
    best = load_torch(run_dir(ws, result.id).best)
    assert best["model_config"]["rule_rank"] and best["model_config"]["freeze_items"]
    torch.manual_seed(cfg.seed)  # the run's own start: its seed, then the model
    start = SeqRec(ModelConfig(**best["model_config"]))
    assert not torch.equal(best["model"]["rule_by_place"], start.rule_by_place)  # the places' weights were learned
    assert torch.equal(best["model"]["encoder.item_emb.weight"], start.encoder.item_emb.weight)  # the tracks' were not
    q = score_run(ws, select_runs(ws, [result.id], None, False)[0], Protocol(split="test"), torch.device("cpu"))
    assert len(q.session) > 0
    with pytest.raises(ConfigError, match="rule_rank"):
        TrainConfig(repeat_head=False, rule_rank=True)


def test_under_frozen_track_vectors_the_skip_term_needs_the_output_context(ws):
    frozen = {**SMALL, "freeze_items": True}
    # the play embeddings e_t are the frozen table itself: the term would have no parameter to move
    with pytest.raises(ConfigError, match="freeze_items keeps the track vectors"):
        TrainConfig(feedback="contrastive", **frozen)
    with pytest.raises(ConfigError, match="freeze_items keeps the track vectors"):
        TrainConfig(feedback="positives-only+contrastive", **frozen)
    TrainConfig(feedback="contrastive", artists=True, **frozen)  # the artist vectors still train: allowed
    blind = train(ws, TrainConfig(feedback="all", **frozen))
    aware = train(ws, TrainConfig(feedback="contrastive", context="output", **frozen))
    assert aware.status == "finished" and read_metrics(run_dir(ws, aware.id))[0]["loss_contrastive"] > 0
    a, b = (load_torch(run_dir(ws, r.id).best)["model"] for r in (blind, aware))
    assert torch.equal(a["encoder.item_emb.weight"], b["encoder.item_emb.weight"])  # both tables stayed put
    moved = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k])]
    assert moved  # and the term changed the rest of the model


def test_repeat_baseline_ranks_the_listeners_successors_first(ws):
    result = train(ws, TrainConfig(model="repeat", successors=2))
    assert result.status == "finished"
    with pytest.raises(ConfigError, match="successors"):
        TrainConfig(model="markov", successors=2)
    with pytest.raises(ConfigError, match="successors extends the repeat head"):
        TrainConfig(successors=2, repeat_head=False)


@pytest.mark.parametrize("loss,feedback", [("ce", "all"), ("shared", "positives-only")])
def test_transition_term_trains_carries_its_table_and_scores(ws, loss, feedback):
    from toolkit.report import Protocol, score_run
    from toolkit.runs import select_runs

    result = train(ws, TrainConfig(loss=loss, feedback=feedback, transitions=3, **{**SMALL, "epochs": 3}))
    assert result.status == "finished" and result.valid["n_pos"] > 0
    best = load_torch(run_dir(ws, result.id).best)
    assert best["model_config"]["transitions"] == 3
    assert torch.count_nonzero(best["model"]["trans_items"]) > 0  # the train rows' table went into the checkpoint
    assert len(best["model"]["trans_own_keys"]) > 0  # and each listener's own share of it
    assert best["model"]["trans_by_count"].item() != 0.0 or best["model"]["trans_by_share"].item() != 0.0
    q = score_run(ws, select_runs(ws, [result.id], None, False)[0], Protocol(split="test"), torch.device("cpu"))
    assert len(q.session) > 0 and np.isfinite(q.rank).all()
    assert result.id != train(ws, TrainConfig(loss=loss, feedback=feedback, **{**SMALL, "epochs": 3})).id
    with pytest.raises(ConfigError, match="transitions extends the repeat head"):
        TrainConfig(transitions=3, repeat_head=False)


def test_successor_settings_train_and_score_and_need_successors(ws):
    from toolkit.report import Protocol, score_run
    from toolkit.runs import select_runs

    result = train(ws, TrainConfig(follow=True, successor_sum=True, successor_mute=True, **{**SMALL, "epochs": 3}))
    assert result.status == "finished" and result.valid["n_pos"] > 0
    best = load_torch(run_dir(ws, result.id).best)
    assert best["model_config"]["follow"] is True and best["model_config"]["successor_sum"] is True
    assert best["model"]["successor_mute"].item() != -0.4  # the share was trained
    assert torch.count_nonzero(best["model"]["successor_by_follow"]) > 0  # the table learned something
    q = score_run(ws, select_runs(ws, [result.id], None, False)[0], Protocol(split="test"), torch.device("cpu"))
    assert len(q.session) > 0 and np.isfinite(q.rank).all()
    assert result.id != train(ws, TrainConfig(**{**SMALL, "epochs": 3})).id
    with pytest.raises(ConfigError, match="follow weighs"):
        TrainConfig(follow=True, successors=0)
    with pytest.raises(ConfigError, match="successor_sum weighs"):
        TrainConfig(model="bert4rec", successor_sum=True)


@pytest.mark.parametrize("model", ["sasrec", "bert4rec", "gru4rec"])
def test_artist_embeddings_train_carry_each_tracks_artist_and_score(ws, model):
    from toolkit.data import item_artists
    from toolkit.report import Protocol, score_run
    from toolkit.runs import select_runs

    result = train(ws, TrainConfig(model=model, artists=True, **SMALL))
    assert result.status == "finished" and result.valid["n_pos"] > 0
    best = load_torch(run_dir(ws, result.id).best)
    codes, n = item_artists(ws.dataset("tiny"), best["model_config"]["n_items"])
    assert best["model_config"]["artists"] == n == 5  # the fixture's artists A to E
    assert torch.equal(best["model"]["encoder.item_artist"], torch.from_numpy(codes))
    q = score_run(ws, select_runs(ws, [result.id], None, False)[0], Protocol(split="test"), torch.device("cpu"))
    assert len(q.session) > 0 and np.isfinite(q.rank).all()
    assert result.id != train(ws, TrainConfig(model=model, **SMALL)).id


def test_artist_codes_number_the_names_in_order_and_leave_tracks_without_one_at_zero(tmp_path):
    import polars as pl

    from toolkit.data import item_artists

    ds = Workspace.at(tmp_path / "ws").dataset("x")
    ds.path.mkdir(parents=True)
    pl.DataFrame({"item_id": [1, 2, 3, 4, 5], "artist": ["b", "a", None, "b", "  "]}).write_parquet(ds.items)
    codes, n = item_artists(ds, 5)
    assert n == 2 and codes.tolist() == [0, 2, 1, 0, 2, 0, 0]  # PAD, tracks 1-5 ("a" = 1, "b" = 2), MASK


def test_artists_on_a_dataset_without_artist_names_is_refused(tmp_path):
    logs = tmp_path / "plays.csv"
    logs.write_text("user_id,ts,track_id\n" + "".join(f"u1,2024-01-0{d}T10:0{m}:00Z,t{m}\n"
                                                          for d in range(1, 8) for m in range(4)))
    ws = Workspace.at(tmp_path / "ws")
    prep([logs], ws, PrepConfig(name="bare", max_len=4))
    with pytest.raises(ConfigError, match="has no artist names"):
        train(ws, TrainConfig(artists=True, **SMALL))
