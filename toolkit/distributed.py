"""Training and evaluation over several processes started by torchrun (one per GPU, or CPU processes).

torchrun gives each process RANK, WORLD_SIZE and LOCAL_RANK; ``join`` opens the process group
(NCCL on CUDA, gloo on CPU) and returns this process's ``World``.  Alone, the World has one rank
and every method below does nothing, so the training loop reads the same either way.

What stays as in one process, so that run ids, resume positions and the learning-rate schedule
mean the same with any number of processes:

- the batch: every rank draws the same seeded epoch permutation; the global batch is still
  ``--batch-size`` rows, sorted (as ``data.to_batch`` sorts), and rank r trains on its contiguous
  share of them (``World.share``);
- the gradient: each loss term is a mean over its own positions (``losses``), so every rank scales
  its term by (its positions / the global batch's positions) and the gradients are summed, which is
  the single-process gradient of the global batch: short last batch and uneven shares included;
- the random draws: per-row negatives and BERT4Rec masks come from (seed, step) streams that run
  over the rows of the whole batch in order, so ``ShardSampler`` gathers the batch's rows, draws as
  one process would, and keeps its own; shared negatives are the same on every rank already.
  Per-row negatives drawn on the device (``toolkit/sampling.py``, the default on GPUs) are the
  exception: each rank draws its own rows from a (seed, step, rank) stream, without the gather, so
  they equal a single process's draws in distribution only, as dropout below;
- validation and ``toolkit report``: ranks score whole blocks of query rows (no padding, no
  repeated query) and the per-query outcomes are gathered in row order (``gather``).

Dropout is the exception: each rank draws its own masks from its own torch stream (rank 0 the
single-process one, rank r > 0 one seeded by (seed, r)), so with dropout > 0 a run equals a
single-process run in distribution only; every rank's generator state is in the checkpoint.
"""

from __future__ import annotations

import atexit
import os
import uuid
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from toolkit.data import Batch, SplitArrays, to_batch
from toolkit.errors import ConfigError

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun sets for every process it starts


def main_process() -> bool:
    """Whether this process prints and writes: rank 0 of a torchrun, or a process on its own.
    Read from the environment, so it holds before the process group is open."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run: rank ``rank`` of ``size``."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")  # where this rank's tensors (and NCCL's) live

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def bounds(self, n: int, block: int = 1) -> tuple[int, int]:
        """[lo, hi) of ``n`` items held by this rank: contiguous, in whole blocks of ``block``
        items (the last block may be short), the first ranks holding one block more when they
        do not divide evenly; a rank may hold none."""
        blocks = -(-n // block)
        per, extra = divmod(blocks, self.size)
        first = self.rank * per + min(self.rank, extra)
        last = first + per + (self.rank < extra)
        return min(first * block, n), min(last * block, n)

    def share(self, rows: np.ndarray) -> np.ndarray:
        """This rank's rows of a global batch: its contiguous slice of the sorted rows (sorted, as
        ``to_batch`` reads them, so the shares laid end to end are the single-process batch)."""
        lo, hi = self.bounds(len(rows))
        return np.sort(rows)[lo:hi]

    def batch(self, a: SplitArrays, rows: np.ndarray, device: torch.device) -> Batch:
        """This rank's share of the global batch ``rows`` of ``a`` as tensors (``data.to_batch``).

        A rank whose share of a short last batch is empty (fewer rows than ranks) gets one all-PAD
        row: it takes part in every collective, has no position, so weighs nothing, and comes after
        every real row, so the per-row draws of the real rows do not change.
        """
        mine = to_batch(a, self.share(rows), device)
        if len(mine["seqs"]) or not len(rows):
            return mine
        return {k: torch.zeros_like(v) for k, v in to_batch(a, rows[:1], device).items()}

    def agree(self, flag: bool) -> bool:
        """True on every rank when it is true on any: one decision for all (e.g. "already finished")."""
        if self.size == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def global_terms(self, terms: dict[str, torch.Tensor], counts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each loss term rescaled to this rank's part of the global batch's mean.

        ``terms[k]`` is a mean over ``counts[k]`` positions of this rank's share (0 when it has
        none); times counts[k] / (the positions of every rank) it becomes this rank's part of the
        sum over the global batch divided by the global count, so the summed gradients
        (``reduce_gradients``) are those of one process on the whole batch.
        """
        if self.size == 1:
            return terms
        names = list(terms)
        missing = [k for k in names if k not in counts]
        if missing:
            raise RuntimeError(f"train_step gave no position count for loss term(s) {missing}")
        local = torch.stack([torch.as_tensor(counts[k], device=self.device).float() for k in names])
        total = local.clone()
        dist.all_reduce(total)
        weights = share_weights(local, total)
        return {k: terms[k] * weights[i] for i, k in enumerate(names)}

    def values(self, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> tuple[float, dict[str, float]]:
        """The global batch's loss and terms as numbers, the same on every rank (for the log and
        the divergence check, so every rank stops together)."""
        if self.size == 1:
            return float(loss.detach()), {k: float(v.detach()) for k, v in terms.items()}
        t = torch.stack([loss.detach().float(), *(v.detach().float() for v in terms.values())])
        dist.all_reduce(t)
        out = t.tolist()
        return out[0], dict(zip(terms, out[1:]))

    def reduce_gradients(self, model: torch.nn.Module) -> None:
        """Sum every parameter's gradient over the ranks, in one flat buffer.

        A parameter without a gradient on every rank keeps none (the optimiser skips it, as alone);
        one with a gradient on some rank gets zeros where it has none.  Written out rather than
        wrapped in DistributedDataParallel: the losses read the item table and the repeat head
        outside ``forward``, where DDP's unused-parameter search does not look.
        """
        if self.size == 1:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        has = torch.tensor([float(p.grad is not None) for p in params], device=self.device)
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
        used = [p for p, h in zip(params, has.tolist()) if h]
        for p in used:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if not used:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in used])
        dist.all_reduce(flat)
        offset = 0
        for p in used:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    def gather_rows(self, t: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Every rank's rows of ``t`` (dim 0) concatenated in rank order, and each rank's row count."""
        sizes = torch.zeros(self.size, dtype=torch.int64, device=t.device)
        sizes[self.rank] = len(t)
        dist.all_reduce(sizes)
        counts = sizes.tolist()
        padded = torch.zeros((max(counts), *t.shape[1:]), dtype=t.dtype, device=t.device)
        padded[: len(t)] = t
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:c] for p, c in zip(parts, counts)]), counts

    def gather(self, obj) -> list:
        """Every rank's ``obj`` in rank order, on every rank (so every rank decides alike)."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def start(self, model: torch.nn.Module, seed: int) -> None:
        """Give every rank rank 0's initial weights, then its own dropout stream (rank 0 keeps the
        single-process one); call after the model is built from the shared seed."""
        if self.size == 1:
            return
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                dist.broadcast(t.data, src=0)
        if self.rank:
            torch.manual_seed(int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0]))

    def rng_states(self) -> list[dict[str, torch.Tensor]] | None:
        """Every rank's torch generator state (CPU, and CUDA where it trains), gathered for rank 0's
        checkpoint; None alone (the checkpoint's ``torch_rng`` is the state then)."""
        if self.size == 1:
            return None
        mine = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            mine["cuda"] = torch.cuda.get_rng_state(self.device)
        return self.gather(mine)

    def restore_rng(self, checkpoint: dict, run_id: str) -> None:
        """Set this rank's generators from a checkpoint written by the same number of processes;
        refuse another number (each rank's dropout stream is part of the run)."""
        saved = int(checkpoint.get("world_size", 1))
        if saved != self.size:
            raise ConfigError(
                f"run {run_id} was checkpointed by {saved} process(es) and is resumed by {self.size}: resume it "
                f"with {saved} (`toolkit train --devices {saved}` or `torchrun --nproc_per_node {saved}`), "
                "or delete its checkpoint.pt to train it again from the start")
        if self.size == 1:
            torch.set_rng_state(checkpoint["torch_rng"])
            return
        mine = checkpoint["rank_rng"][self.rank]
        torch.set_rng_state(mine["cpu"])
        if "cuda" in mine and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"], self.device)

    def sampler(self, inner):
        """The sampler every rank draws with: ``inner`` alone, else a ``ShardSampler`` around it."""
        return inner if self.size == 1 else ShardSampler(inner, self)


def share_weights(local: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """float (K,): local[k] / total[k], 0 where no rank has a position (a mean over nothing is 0)."""
    return local / total.clamp(min=1)


class ShardSampler:
    """A ``train.Sampler`` for one rank: per-row draws and BERT4Rec masks over the whole global
    batch, as one process would make them, of which this rank keeps its rows."""

    def __init__(self, inner, world: World) -> None:
        self.inner, self.world = inner, world

    def __getattr__(self, name: str):  # loss, log_q, k, draw_shared ...: the inner sampler's own
        return getattr(self.inner, name)

    def _mine(self, counts: list[int]) -> slice:
        lo = sum(counts[: self.world.rank])
        return slice(lo, lo + counts[self.world.rank])

    def draw(self, seqs: torch.Tensor, targets: torch.Tensor, step: int) -> torch.Tensor:
        if getattr(self.inner, "on_device", False):  # each rank draws its own rows from its own stream: no gather
            return self.inner.draw(seqs, targets, step, rank=self.world.rank)
        every_seq, counts = self.world.gather_rows(seqs)
        every_target, _ = self.world.gather_rows(targets)
        return self.inner.draw(every_seq, every_target, step)[self._mine(counts)]

    def cloze(self, seqs: torch.Tensor, model_cfg, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        every_seq, counts = self.world.gather_rows(seqs)
        masked, targets = self.inner.cloze(every_seq, model_cfg, step)
        mine = self._mine(counts)
        return masked[mine], targets[mine]


def join(device: torch.device) -> World:
    """This process's World: under torchrun, open the process group (once; NCCL for CUDA, gloo for
    CPU) and put a CUDA process on its own GPU (LOCAL_RANK); otherwise a world of one."""
    if not launched():
        return World(device=device)
    missing = [k for k in ENV if k not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE is set but {', '.join(missing)} is not: start several processes with "
                          "`torchrun` (or `toolkit train --devices N`), or unset WORLD_SIZE to train alone")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave)
    return World(rank=dist.get_rank(), size=dist.get_world_size(), device=device)


def current() -> World:
    """The World of the open process group (``join``), else a world of one: what evaluation shards by."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return World()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    return World(rank=dist.get_rank(), size=dist.get_world_size(), device=device)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def relaunch(devices: int, args: list[str]) -> int:
    """Run ``python -m toolkit ARGS`` as ``devices`` processes on this machine under torchrun
    (``--standalone``) and return the exit status: 0, or the first failed process's (which has
    printed its own one-line error)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, parse_args

    # torchrun --standalone: a rendezvous on a free local port, under a fresh id
    config, cmd, cmd_args = config_from_args(parse_args([
        "--nnodes", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0", "--rdzv_id", uuid.uuid4().hex,
        "--nproc_per_node", str(devices), "--max_restarts", "0", "-m", "toolkit", *args]))
    try:
        elastic_launch(config, cmd)(*cmd_args)
    except ChildFailedError as exc:
        codes = [f.exitcode for f in exc.failures.values()]
        return next((c for c in codes if c > 0), 1)
    return 0
