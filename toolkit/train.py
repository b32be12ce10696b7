"""``toolkit train``: a prepared dataset -> a trained run, reproducible and resumable.

One loop, read top to bottom: seed, build, (resume), then per epoch shuffle the train rows,
step, evaluate on validation (full ranking, next positive), checkpoint, stop early.  The run id
is a hash of the dataset and the config, so the same dataset + config + seed is the same run:
a finished run is reused and an interrupted one continues from its last checkpoint.
"""

from __future__ import annotations

import ctypes
import json
import math
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import kernels
from toolkit import distributed, full_softmax, losses, sampling
from toolkit.artifacts import (
    RunDir, Workspace, append_metrics, atomic_path, load_torch, read_json, read_manifest,
    read_metrics, record_run, run_dir, run_lock, save_torch, write_json,
)
from toolkit.config import NEURAL, SUCCESSOR_OPTIONS, ModelConfig, TrainConfig
from toolkit.data import (
    Batch, SplitArrays, item_artists, load_split, negatives_for, row_batches, train_counts,
)
from toolkit.errors import ConfigError, RunInterrupted, TrainingDiverged
from toolkit.identity import StaleRunError, build_of, run_id, run_ids_before, run_is_stale
from toolkit.devices import pick_device
from toolkit.manifest import Manifest
from toolkit.runs import build_baseline, latest_dataset
from toolkit.evaluate import evaluate, session_subset
from toolkit.model import SeqRec, cloze_mask
from toolkit.progress import Pace, TrainProgress
from toolkit.run_result import TrainResult
from toolkit.schema import FORMAT_VERSION, PAD
from toolkit.scorers import NeuralScorer, hide_skips, top_transitions

Progress = Callable[[TrainProgress], None]
CE_BUDGET = 2**26  # full softmax while batch positions x catalogue stays under this many scores
SELECT_METRIC = "ndcg@10"


def train(ws: Workspace, cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Train (or reuse, or resume) the run for ``cfg`` and return its result record (``reused`` when it
    had finished before).

    Example: ``toolkit train --dataset spotify --model sasrec --feedback contrastive --seed 3``
    """
    say = progress or (lambda _event: None)
    ds_name = cfg.dataset or latest_dataset(ws)
    cfg = replace(cfg, dataset=ds_name)
    ds = ws.dataset(ds_name)
    manifest = read_manifest(ds)
    _check_dataset(manifest, cfg)
    run = run_of(ws, manifest, cfg)
    if run.config.exists() and run_is_stale(read_json(run.config), manifest.to_json()):
        # run ids name the dataset build, so this is a run folder from elsewhere: never reuse or resume it
        raise StaleRunError(f"run {run.id} in {run.path.parent} was trained on another build of dataset {ds_name}; "
                            "delete that run folder or train in a fresh workspace (--workspace)")
    if (done := _finished(run)) is not None:
        return done
    device = pick_device(cfg.device)  # a missing GPU is refused before the run folder exists
    world = distributed.join(device)  # under torchrun: this process's rank (rank 0 writes); else a world of one
    device = world.device
    run.path.mkdir(parents=True, exist_ok=True)
    # one run trains in one place at a time (torchrun's rank 0 holds the lock for all its ranks)
    with run_lock(run) if world.is_main else nullcontext():
        done = _finished(run)
        if world.agree(done is not None):  # finished while we waited
            return done
        if world.is_main:
            write_json(run.config, {"train": asdict(cfg), "dataset_fingerprint": manifest.fingerprint,
                                    "dataset_build": build_of(manifest.to_json())})
        seed_everything(cfg.seed)
        started = time.perf_counter()
        try:
            if cfg.model in NEURAL:
                with deterministic_kernels(device):
                    outcome = _fit_neural(run, ds, manifest, cfg, device, say, world)
            else:
                outcome = _fit_baseline(ds, manifest, cfg, device)
                if world.is_main:
                    append_metrics(run, {"epoch": 0, **{f"valid_{k}": v for k, v in outcome["valid"].items()}})
        except RunInterrupted:
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C: the same command (same id) continues from the last checkpoint
            raise RunInterrupted(run.id) from exc
        except TrainingDiverged as exc:  # recorded, so `toolkit runs` says failed and why, not interrupted
            if world.is_main:
                write_json(run.result, {"id": run.id, "status": "failed", "reason": str(exc)})
            raise
        return _finish(ws, run, cfg, outcome, time.perf_counter() - started, world)


def run_of(ws: Workspace, manifest: Manifest, cfg: TrainConfig) -> RunDir:
    """The run folder of ``cfg``: its id's, else that of an id it had before the runtime knobs left
    the id (a run trained with ``--device cpu`` back then), so such a run is reused or resumed."""
    run = run_dir(ws, run_id(manifest, cfg))
    if not run.config.exists():
        for old in run_ids_before(manifest, cfg):
            if run_dir(ws, old).config.exists():
                return run_dir(ws, old)
    return run


def _finished(run: RunDir) -> TrainResult | None:
    """The run's result when it finished before (checked: a damaged result.json is a one-line error)."""
    if not run.result.exists():
        return None
    data = read_json(run.result)
    if not isinstance(data, dict) or data.get("status") != "finished":
        return None
    return TrainResult.from_json(data, run.result, reused=True)


def _check_dataset(manifest: Manifest, cfg: TrainConfig) -> None:
    name = manifest.name
    if manifest.format_version != FORMAT_VERSION:
        raise ConfigError(f"dataset {name} was prepared by an incompatible toolkit version; run `toolkit prep` again")
    uses_skips = set(cfg.modes) & {"positives-only", "contrastive", "feedback-input", "negative-target"}
    if uses_skips and manifest.skip_share == 0:
        raise ConfigError(f"dataset {name} has no skipped plays, so --feedback {cfg.feedback} has nothing to learn "
                          "from; use --feedback all")


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def deterministic_kernels(device: torch.device):
    """torch's deterministic kernels while a run trains on the CPU, then the caller's setting again.

    With two or more threads the backward of an indexed read of the track table (``table[ids]``) adds
    into shared rows in whatever order the threads get there, so the same seed gave weights that
    differed in the last digits from run to run (150 steps on the extended histories). The sorted
    path torch takes in this mode cost nothing measurable on a CPU step. On a GPU it is left to the
    user: there it needs ``CUBLAS_WORKSPACE_CONFIG`` and costs speed.
    """
    if device.type != "cpu":
        yield
        return
    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)  # an op without such a kernel warns, never stops a run
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)


def _fit_baseline(ds, manifest: Manifest, cfg: TrainConfig, device) -> dict:
    scorer = build_baseline(ds, manifest, cfg)
    valid = load_split(ds, "valid", cfg.history, cfg.successors, window=cfg.window)
    metrics = evaluate(scorer, valid, manifest.items, device, last_only=manifest.last_only,
                       sessions=session_subset(valid, cfg.valid_sessions, cfg.seed),
                       exclude_played=cfg.validation.exclude_played)
    return {"valid": metrics, "best_epoch": 0, "epochs_done": 0}


def model_config(manifest: Manifest, cfg: TrainConfig, artists: int = 0) -> ModelConfig:
    return ModelConfig(
        n_items=manifest.items, max_len=manifest.max_len + cfg.history, d_model=cfg.d_model, n_heads=cfg.n_heads,
        n_layers=cfg.n_layers, dropout=cfg.dropout, causal=cfg.model != "bert4rec",
        encoder="gru" if cfg.model == "gru4rec" else "transformer",
        feedback_input="feedback-input" in cfg.modes, mask_prob=cfg.mask_prob, repeat_head=cfg.repeat_head,
        successors=cfg.successors if cfg.repeat_head else 0, history=cfg.history,
        transitions=cfg.transitions if cfg.repeat_head else 0, artists=artists, window=cfg.window,
        rule_start=cfg.rule_start and cfg.repeat_head,
        rule_rank=cfg.rule_rank and cfg.repeat_head, freeze_items=cfg.freeze_items,
        # TrainConfig refuses these without the head and its successors
        **{name: getattr(cfg, name) for name in SUCCESSOR_OPTIONS},
    )


def _fit_neural(run: RunDir, ds, manifest: Manifest, cfg: TrainConfig, device, say: Progress,
                world: distributed.World = distributed.World()) -> dict:
    n_items = manifest.items
    keep_freed_memory()
    train_rows = load_split(ds, "train", cfg.history, cfg.successors, cfg.transitions > 0, cfg.window)
    valid = load_split(ds, "valid", cfg.history, cfg.successors, cfg.transitions > 0, cfg.window)
    last_only = manifest.last_only
    valid_subset = session_subset(valid, cfg.valid_sessions, cfg.seed)
    codes, n_artists = item_artists(ds, n_items) if cfg.artists else (None, 0)
    if cfg.artists and not n_artists:
        raise ConfigError(f"dataset {manifest.name} has no artist names, so --set artists=true has nothing to "
                          "share; leave it off")
    model = SeqRec(model_config(manifest, cfg, n_artists))
    if codes is not None:
        model.set_artists(torch.from_numpy(codes))
    if cfg.transitions:
        h = cfg.history  # the history columns repeat other rows' plays: count each transition once
        table = top_transitions(np.asarray(train_rows.seqs)[:, h:], np.asarray(train_rows.skips)[:, h:], n_items,
                                cfg.transitions, "positives-only" in cfg.modes, train_rows.row_user)
        model.set_transitions(*(torch.from_numpy(t) for t in table))
    model = model.to(device)
    world.start(model, cfg.seed)
    # the fused kernel updates the large item table in one pass (about 30 % faster steps on CPU)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    n_batches = -(-len(train_rows) // cfg.batch_size)
    planned = cfg.epochs * n_batches
    planned = min(planned, cfg.max_steps) if cfg.max_steps is not None else planned
    sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(lr_factor, cfg, planned))
    sampler = world.sampler(Sampler(train_rows, n_items, cfg, device))
    state = {"epoch": 0, "step": 0, "batch": 0, "best": -math.inf, "best_epoch": -1, "bad_epochs": 0, "wall_s": 0.0}
    resumed = run.checkpoint.exists()
    if resumed:
        state = _restore(run, model, opt, sched, world)
    pace = Pace(planned, n_batches)
    say(_progress("resumed" if resumed else "start", run, cfg, state, pace))
    if world.is_main:
        _forget_epochs_from(run, state["epoch"])  # logged by a process killed before it checkpointed them; redone now
    before, began = state.get("wall_s", 0.0), time.perf_counter()  # a resumed run's clock goes on
    step_fn = torch.compile(model) if cfg.compile else model
    while state["epoch"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
        epoch = state["epoch"]
        batches = row_batches(len(train_rows), cfg.batch_size, np.random.default_rng([cfg.seed, epoch]))
        model.train()
        t0, sums, n_seen = time.perf_counter(), {}, 0
        for b in range(state["batch"], len(batches)):
            if cfg.max_steps is not None and state["step"] >= cfg.max_steps:
                break
            batch = world.batch(train_rows, batches[b], device)  # this rank's share of the global batch
            try:
                counts = {}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                    terms = world.global_terms(train_step(step_fn, model, batch, cfg, sampler, state["step"], counts),
                                               counts)
                loss = sum(terms.values())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                world.reduce_gradients(model)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
            except KeyboardInterrupt:
                if world.size == 1:  # several ranks go on from their last epoch's checkpoint (no collective here)
                    _checkpoint(run, model, opt, sched, {**state, "batch": b, "wall_s": before + time.perf_counter() - began})
                raise
            value, term_values = world.values(loss, terms)
            if not math.isfinite(value):  # the update is discarded: only epoch ends and Ctrl-C checkpoint
                raise TrainingDiverged(_diverged(run, cfg, value, epoch, state["step"] + 1))
            state["step"] += 1
            pace.stepped()
            n_seen += len(batches[b])
            for k, v in term_values.items():
                sums[k] = sums.get(k, 0.0) + v
            say(_progress("step", run, cfg, state, pace, batch=b + 1, loss=value,
                          rows_per_s=n_seen / max(time.perf_counter() - t0, 1e-9)))
        seconds = time.perf_counter() - t0
        model.eval()
        metrics = evaluate(NeuralScorer(model, "positives-only" in cfg.modes), valid, n_items, device, last_only,
                           valid_subset, exclude_played=cfg.validation.exclude_played)
        pace.validated()
        row = {"epoch": epoch, "step": state["step"], "seconds": seconds, "rows_per_s": n_seen / max(seconds, 1e-9),
               **{f"loss_{k}": v / max(1, len(batches) - state["batch"]) for k, v in sums.items()},
               **{f"valid_{k}": v for k, v in metrics.items()}}
        if world.is_main:
            append_metrics(run, row)
        improved = metrics[SELECT_METRIC] > state["best"]
        if improved and world.is_main:
            save_torch(run.best, {"model": model.state_dict(), "model_config": asdict(model.cfg), "epoch": epoch,
                                  "valid": metrics})
        state.update(epoch=epoch + 1, batch=0, best=max(state["best"], metrics[SELECT_METRIC]),
                     best_epoch=epoch if improved else state["best_epoch"],
                     bad_epochs=0 if improved else state["bad_epochs"] + 1,
                     wall_s=before + time.perf_counter() - began)
        _checkpoint(run, model, opt, sched, state, world)
        say(_progress("epoch", run, cfg, state, pace, epoch=epoch, seconds=seconds,
                      rows_per_s=row["rows_per_s"], valid=metrics,
                      losses={k.removeprefix("loss_"): v for k, v in row.items() if k.startswith("loss_")}))
        if cfg.max_steps is not None and state["step"] >= cfg.max_steps:
            break
    if cfg.epochs > state["epoch"] > 0 and state["bad_epochs"] >= cfg.patience:
        say(_progress("stopped", run, cfg, state, pace, epoch=state["epoch"] - 1))
    best = load_torch(run.best)
    return {"valid": best["valid"], "best_epoch": best["epoch"], "epochs_done": state["epoch"], "earlier_wall_s": before}


def _progress(phase: str, run: RunDir, cfg: TrainConfig, state: dict, pace: Pace, **fields) -> TrainProgress:
    """The progress event of ``phase`` at the loop's ``state`` (``fields`` add to or override it)."""
    epoch = fields.pop("epoch", state["epoch"])
    validated = phase in ("epoch", "stopped")
    return TrainProgress(
        phase, run.id, epoch=epoch, epochs=cfg.epochs, step=state["step"], steps=pace.steps, batches=pace.batches,
        patience=cfg.patience, eta_s=pace.eta_s(state["step"], epoch, validated), metric=SELECT_METRIC,
        best=state["best"] if state["best_epoch"] >= 0 else None,
        best_epoch=state["best_epoch"] if state["best_epoch"] >= 0 else None, bad_epochs=state["bad_epochs"], **fields)


def _diverged(run: RunDir, cfg: TrainConfig, value: float, epoch: int, step: int) -> str:
    """One line: which run diverged, where, the likely cause and the fix."""
    also = []
    if "contrastive" in cfg.modes:
        also.append(f"--tau {cfg.tau} / --alpha {cfg.alpha}")
    if "negative-target" in cfg.modes:
        also.append(f"--neg-weight {cfg.neg_weight}")
    if cfg.amp:
        also.append("--amp")
    suspects = f"; also check {', '.join(also)}" if also else ""
    return (f"run {run.id}: the training loss became {value} at epoch {epoch + 1}, step {step}, so training stopped "
            f"and the run is not finished; the learning rate is likely too high: lower --lr (it is {cfg.lr:g}; try "
            f"{cfg.lr / 10:g}) or the gradient limit --set grad_clip= (it is {cfg.grad_clip:g}){suspects}")


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory in the process instead of handing it back to the kernel.

    Every backward pass allocates a few catalogue-sized gradient buffers (item table x D: 21 MB on
    Spotify at d 32) and frees them at the end of the step.  glibc serves such blocks with mmap, or
    trims them off the heap top when freed, so each step page-faults them in again: on one CPU
    thread that was half of a 32-row step (63 -> 30 ms, benchmarks/README.md).  No mmap and no trim
    make the next step reuse the same pages.  Tensor values are unchanged; only where their memory
    comes from.  A no-op off glibc (macOS, musl).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - raises AttributeError off glibc
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_max = -1, -4  # glibc malloc.h
    libc.mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1))
    libc.mallopt(m_mmap_max, ctypes.c_int(0))


def lr_factor(cfg: TrainConfig, planned_steps: int, step: int) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warm-up, then constant or a cosine
    decay that reaches 0 at the last planned step (early stopping may end the run before it)."""
    if step < cfg.warmup_steps or cfg.lr_schedule == "constant":
        return min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    done = (step - cfg.warmup_steps) / max(1, planned_steps - cfg.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))


class Sampler:
    """Negatives for sampled losses, seeded per step so a resumed run draws the same ones."""

    def __init__(self, train_rows: SplitArrays, n_items: int, cfg: TrainConfig, device) -> None:
        self.n_items, self.k, self.seed = n_items, cfg.negatives, cfg.seed
        counts = train_counts(train_rows, n_items)
        self.cdf = kernels.popularity_cdf(counts, cfg.sampler_beta) if cfg.sampler == "popularity" else None
        probs = np.diff(self.cdf, prepend=0.0) if self.cdf is not None else np.r_[0.0, np.full(n_items, 1.0 / n_items)]
        self.log_q = torch.log(torch.from_numpy(probs).clamp(min=1e-12)).float().to(device)
        # the shared draw inverts the cdf on torch's side; float64, or the rarest tracks' steps vanish
        self.cdf_t = torch.from_numpy(self.cdf).to(device) if self.cdf is not None else None
        self.device = device
        # per-row negatives on the GPU come from torch where the batch is, so a step never waits on the host
        self.on_device = sampling.draws_on_device(cfg.negatives_on, device)
        # auto keeps its first-release meaning (ce, else per-row sampled): a finished run named with
        # loss=auto must still mean the loss it was trained with
        use_ce = cfg.loss == "ce" or (cfg.loss == "auto" and cfg.batch_size * train_rows.seqs.shape[1] * n_items <= CE_BUDGET)
        # the repeat head's exact candidates fit the shared-negative softmax, not per-row negatives
        auto = "shared" if cfg.repeat_head else "sampled"
        self.loss = "ce" if use_ce else (auto if cfg.loss == "auto" else cfg.loss)

    def draw(self, seqs: torch.Tensor, targets: torch.Tensor, step: int, rank: int = 0) -> torch.Tensor:
        """int64 (B, k): per-row negatives, never PAD, a play or a target of the row; seeded by (seed,
        step), and on the device by the process's ``rank`` too (``sampling.stream``)."""
        k = min(self.k, max(1, self.n_items // 2))
        if self.on_device:
            g = sampling.stream(self.seed, step, rank, seqs.device)
            return sampling.sample_negatives(seqs, targets, self.n_items, k, g, self.cdf_t)
        return negatives_for(seqs, targets, self.n_items, k, (self.seed * 1_000_003 + step) % 2**32, self.cdf)

    def draw_shared(self, step: int) -> torch.Tensor:
        """int64 (K,): one batch's shared negatives, i.i.d. from the sampler's distribution (repeats
        allowed: logQ assumes independent draws). Seeded by (seed, step), so a resumed run draws the same."""
        g = torch.Generator(device=self.device).manual_seed((self.seed * 1_000_003 + step) % 2**63)
        if self.cdf_t is None:
            return torch.randint(1, self.n_items + 1, (self.k,), generator=g, device=self.device)
        u = torch.rand(self.k, generator=g, dtype=torch.float64, device=self.device)
        # cdf[i - 1] <= u < cdf[i] picks item i; cdf[0] = 0 so PAD (and tracks with no weight) never come
        return torch.searchsorted(self.cdf_t, u, right=True).clamp(max=self.n_items)

    def cloze(self, seqs: torch.Tensor, model_cfg: ModelConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """BERT4Rec's masked input and targets of a batch (``model.cloze_mask``), seeded by (seed, step)."""
        g = torch.Generator(device=seqs.device).manual_seed(self.seed * 7919 + step)
        return cloze_mask(seqs, model_cfg.n_items, model_cfg.mask_prob, g)


def train_step(step_fn, model: SeqRec, batch: Batch, cfg: TrainConfig, sampler: Sampler, step: int,
               counts: dict | None = None) -> dict:
    """Loss terms of one batch: next-item term, plus contrastive / negative-target terms when on.

    Each term is a mean over its own positions; ``counts`` (when given) receives how many, per term,
    so that several processes can weigh their shares into the global batch's mean (``distributed``).
    """
    counts = {} if counts is None else counts
    seqs, fb = batch["seqs"], batch["fb"]
    modes = set(cfg.modes)
    if "positives-only" in modes:
        seqs, fb = hide_skips(seqs, fb)
    if model.cfg.causal:
        targets = batch["next_pos"] if cfg.target == "next-pos" or "positives-only" in modes else batch["next_item"]
        keep = seqs != PAD
        if cfg.target == "next-kept":
            keep = keep & (batch["next_skip"] == 0)
        targets = torch.where(keep, targets, torch.zeros_like(targets))
        inputs, in_fb = seqs, fb
    else:
        inputs, targets = sampler.cloze(seqs, model.cfg, step)
        in_fb = torch.where(targets != PAD, torch.zeros_like(fb), fb)  # a hidden play's skip would leak
    hidden = step_fn(inputs, in_fb)  # (B, T, D)
    # the whole table (MASK row too, never a target or negative) rather than item_embeddings()'s
    # slice, whose backward would allocate and copy one more catalogue-sized gradient every step
    emb = model.encoder.table()
    terms = {}
    counts["next"] = (targets != PAD).sum()
    negatives = None
    if model.cfg.repeat_head:
        terms["next"] = _next_with_repeats(model, cfg, hidden, inputs, targets, sampler, step, emb, batch.get("succ"),
                                            batch.get("user"))
    elif sampler.loss == "ce":
        keep = targets != PAD
        terms["next"] = _full_softmax(model, cfg, hidden[keep], targets[keep], emb)
    elif sampler.loss == "shared":
        keep = targets != PAD  # padded positions never reach the (positions, K) product
        negatives = sampler.draw_shared(step)
        terms["next"] = losses.sampled_softmax_shared(hidden[keep], emb, targets[keep], negatives, sampler.log_q)
    else:
        negatives = sampler.draw(seqs, targets, step)
        if sampler.loss == "sampled":
            terms["next"] = losses.sampled_softmax_rows(hidden, emb, targets, negatives, sampler.log_q)
        else:
            flat_neg = negatives.unsqueeze(1).expand(-1, seqs.shape[1], -1)[targets != PAD]
            terms["next"] = losses.bce_negatives(hidden[targets != PAD], emb, targets[targets != PAD], flat_neg)
    if "contrastive" in modes:
        # the term contrasts the session's plays as they were, skips included, even when the model's
        # input hides them (positives-only; the config allows only the e_t context there)
        # (the session's own columns: the listener's history is another session's skips)
        h = model.cfg.history
        plays, skips = batch["seqs"][:, h:], batch["fb"][:, h:]
        context = model.encoder.embed(plays) if cfg.context == "input" else hidden[:, h:]
        term, counts["contrastive"] = losses.contrastive_skip_loss(context, emb, plays, skips, batch["next_pos"][:, h:], cfg.tau,
                                               cosine=cfg.context != "score", seen_only=cfg.skip_negatives == "seen")
        terms["contrastive"] = cfg.alpha * term
    if "negative-target" in modes:
        skipped = torch.where((batch["next_skip"] == 1) & (seqs != PAD), batch["next_item"], torch.zeros_like(seqs))
        keep = skipped != PAD
        counts["negative"] = keep.sum()
        if sampler.loss == "ce":
            kept_hidden, kept_skipped = hidden[keep], skipped[keep]
            chunk = full_softmax.chunk_columns(len(kept_skipped), model.cfg.n_items + 1, cfg.loss_memory_mb)
            term = (losses.negative_target_loss(model.scores(kept_hidden), kept_skipped) if chunk is None
                    else losses.negative_target_chunked(kept_hidden, emb, kept_skipped, chunk, model.cfg.n_items + 1))
        elif sampler.loss == "shared":
            term = losses.negative_target_shared(hidden[keep], emb, skipped[keep], negatives)
        else:
            term = losses.negative_target_rows(hidden, emb, skipped, negatives)
        terms["negative"] = cfg.neg_weight * term
    return terms


def _full_softmax(model: SeqRec, cfg: TrainConfig, hidden, targets, emb, items=None, weights=None):
    """Full-softmax cross-entropy of N positions (hidden (N, D), targets (N,), no PAD), with the repeat
    term (items, weights (N, C)) when given: on the materialised scores while they fit in
    ``cfg.loss_memory_mb``, else in catalogue chunks (the same loss, toolkit/full_softmax.py)."""
    chunk = full_softmax.chunk_columns(len(targets), model.cfg.n_items + 1, cfg.loss_memory_mb)
    if chunk is None:
        scores = model.scores(hidden) if items is None else model.scores_with_repeats(hidden, weights, items)
        return losses.full_cross_entropy(scores, targets)
    return full_softmax.cross_entropy(hidden, emb, targets, chunk, model.cfg.n_items + 1, items, weights)


def _next_with_repeats(model: SeqRec, cfg: TrainConfig, hidden, inputs, targets, sampler: Sampler, step: int, emb,
                       succ=None, users=None):
    """The next-item term of a model with a repeat head: full softmax or shared negatives, each with
    the repeat term of the tracks played before every position and of the successors of its track
    (``SeqRec.copy_terms``)."""
    rows, cols = (targets != PAD).nonzero(as_tuple=True)
    items, weights, available = model.copy_terms(hidden, inputs, succ, rows, cols, targets[rows, cols], users)
    if sampler.loss == "ce":
        return _full_softmax(model, cfg, hidden[rows, cols], targets[rows, cols], emb, items, weights * available)
    if sampler.loss == "shared":
        negatives = sampler.draw_shared(step)
        T = inputs.shape[1]  # the copy candidates past the row's own plays: successors, transitions
        extra = torch.where(available[:, T:], items[:, T:], torch.zeros_like(items[:, T:])) if items.shape[1] > T else None
        seen = losses.negatives_seen(negatives, inputs, rows, cols, extra)
        return losses.shared_softmax_with_repeats(hidden[rows, cols], emb, targets[rows, cols], negatives,
                                                  sampler.log_q, items, weights, available, seen, model.repeat_bonus)
    raise ConfigError(f"--repeat-head trains with --loss ce or shared, not {sampler.loss}")


def _checkpoint(run: RunDir, model, opt, sched, state: dict, world: distributed.World = distributed.World()) -> None:
    rank_rng = world.rng_states()  # every rank's generators, gathered by rank 0
    if world.is_main:
        save_torch(run.checkpoint, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "torch_rng": torch.get_rng_state(), "state": {k: float(v) if k == "best" else v for k, v in state.items()},
            "model_config": asdict(model.cfg), "world_size": world.size,
            **({"rank_rng": rank_rng} if rank_rng is not None else {}),
        })
    world.barrier()  # no rank reads best.pt or goes on before rank 0 has written


def _forget_epochs_from(run: RunDir, epoch: int) -> None:
    """Drop the metrics.jsonl rows of epochs ``epoch`` and later, so a redone epoch is logged once."""
    rows = read_metrics(run)
    keep = [r for r in rows if not isinstance(r.get("epoch"), int) or r["epoch"] < epoch]
    if len(keep) != len(rows):
        with atomic_path(run.metrics) as tmp:
            tmp.write_text("".join(json.dumps(r, sort_keys=True, default=float) + "\n" for r in keep), encoding="utf-8")


def _restore(run: RunDir, model, opt, sched, world: distributed.World = distributed.World()) -> dict:
    ck = load_torch(run.checkpoint)
    world.restore_rng(ck, run.id)  # first: a checkpoint of another number of processes is refused
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    return dict(ck["state"])


def _finish(ws: Workspace, run: RunDir, cfg: TrainConfig, outcome: dict, seconds: float,
            world: distributed.World = distributed.World()) -> TrainResult:
    result = TrainResult(
        id=run.id, status="finished", dataset=cfg.dataset, model=cfg.model, feedback=cfg.feedback, seed=cfg.seed,
        epochs_done=outcome["epochs_done"], best_epoch=outcome["best_epoch"], valid=outcome["valid"],
        wall_s=seconds + outcome.get("earlier_wall_s", 0.0), git_commit=_git_commit(), path=str(run.path),
        world_size=world.size,
    )
    if not world.is_main:
        return result
    write_json(run.result, result.to_json())
    record_run(ws, result)
    return result


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
