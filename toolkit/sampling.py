"""Per-row negatives drawn on the training device: the torch counterpart of ``kernels.sample_negatives``.

The numba kernel runs on the host, so a GPU step would copy the batch to the host, wait for the
draw and copy the negatives back.  ``sample_negatives`` here draws the same distribution where the
batch already is: i.i.d. from ``p_i ∝ counts_i ** beta`` (or uniform over ``1..n_items``) restricted
to the items a row allows (never PAD, never one of the row's plays or excluded ids), falling back to
uniform over the allowed items when none of them has mass, as the kernel does.  The logQ
correction of the sampled losses (``train.Sampler.log_q``) is therefore the same for both.

Rejection first: ``2k + 32`` candidates per row from the unrestricted distribution, of which the
first ``k`` allowed are kept; accepted draws of rejection sampling are i.i.d. from the restricted
distribution.  The rare row that comes up short (its plays hold over half the mass) is filled by
``torch.multinomial`` over its allowed items, the restricted distribution drawn directly, as the
kernel's scan does.  The only host round trip is reading whether any row came up short.

Randomness comes only from a ``torch.Generator`` on the batch's device, seeded by (seed, step,
rank) through ``stream``: a resumed run draws the same negatives, and each process of a torchrun
draws its own rows from its own stream (equal to one process's draws in distribution, not value).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from toolkit.config import NEGATIVES_ON
from toolkit.schema import PAD

FILL_BUDGET = 1 << 22  # catalogue weights held at once while filling rows that came up short
_STREAM = 0x5EED_0E6  # keeps these streams apart from the shared negatives' and the cloze masks'


def draws_on_device(choice: str, device: torch.device) -> bool:
    """Whether per-row negatives come from ``sample_negatives`` (True) or the numba kernel (False).

    ``auto`` draws on the device only when it is not the CPU: on the CPU the numba kernel is the
    faster one and keeps the draws, and so the results, of runs trained before this existed.
    """
    if choice not in NEGATIVES_ON:
        raise ValueError(f"negatives_on must be one of {NEGATIVES_ON}, got {choice!r}")
    return choice == "device" or (choice == "auto" and device.type != "cpu")


def stream(seed: int, step: int, rank: int, device: torch.device | str) -> torch.Generator:
    """A generator on ``device`` for the draws of one step of one process, from (seed, step, rank)."""
    hi, lo = np.random.SeedSequence([seed, step, rank, _STREAM]).generate_state(2, np.uint32)
    return torch.Generator(device=device).manual_seed((int(hi) << 32) | int(lo))


def sample_negatives(seqs: Tensor, exclude: Tensor, n_items: int, k: int, generator: torch.Generator,
                     cdf: Tensor | None = None) -> Tensor:
    """Draw ``k`` negatives per row, with replacement, avoiding the row's positives.

    Parameters
    ----------
    seqs : int (B, L) tensor, the row's plays, left-padded with PAD; none of them is drawn for that row.
    exclude : int (B, L2) tensor, more ids to avoid per row (e.g. the targets); PAD entries are ignored.
    n_items : catalogue size; draws lie in ``1..n_items``.
    k : negatives per row, ``>= 1``.
    generator : torch.Generator on ``seqs.device`` (``stream``); the same state gives the same draws.
    cdf : float64 (n_items + 1,) tensor on ``seqs.device`` from ``kernels.popularity_cdf``; None: uniform.

    Returns
    -------
    int64 (B, k) tensor on ``seqs.device``: ids from the distribution restricted to the row's allowed items.
    """
    B, device = seqs.shape[0], seqs.device
    banned = torch.cat([seqs.reshape(B, -1), exclude.reshape(B, -1)], dim=1).long().sort(dim=1).values  # (B, E)
    m = 2 * k + 32
    if cdf is None:
        cand = torch.randint(1, n_items + 1, (B, m), generator=generator, device=device)
    else:
        u = torch.rand((B, m), generator=generator, dtype=torch.float64, device=device)
        # the smallest i with cdf[i] > u, as the kernel's search: cdf[0] = 0 keeps PAD out, and a
        # track without mass (cdf[i] = cdf[i - 1]) is never the first one above u
        cand = torch.searchsorted(cdf, u, right=True).clamp(max=n_items)  # (B, m)
    ok = ~_contains(banned, cand)
    order = ok.cumsum(dim=1)  # (B, m): allowed candidates up to and including each one
    slot = torch.where(ok & (order <= k), order - 1, torch.full_like(order, k))  # slot k collects the rest
    out = torch.zeros((B, k + 1), dtype=torch.int64, device=device).scatter_(1, slot, cand)[:, :k]
    have = order[:, -1]  # (B,) allowed candidates per row
    short = have < k
    if bool(short.any()):  # the one host round trip of a draw
        rows = short.nonzero().squeeze(1)
        fresh = _restricted(banned[rows], rows, n_items, k, generator, cdf)  # (S, k)
        col = torch.arange(k, device=device)
        out[rows] = torch.where(col[None, :] < have[rows, None], out[rows], fresh)
    return out


def _contains(sorted_ids: Tensor, ids: Tensor) -> Tensor:
    """bool (B, M): whether ``ids[b, j]`` is among ``sorted_ids[b]`` (each row sorted ascending)."""
    pos = torch.searchsorted(sorted_ids, ids).clamp(max=sorted_ids.shape[1] - 1)
    return sorted_ids.gather(1, pos) == ids


def _restricted(banned: Tensor, row_ids: Tensor, n_items: int, k: int, generator: torch.Generator,
                cdf: Tensor | None) -> Tensor:
    """int64 (S, k): k i.i.d. draws per row from the distribution restricted to the row's allowed
    items (uniform over them where none has mass), in row chunks of at most ``FILL_BUDGET`` weights;
    ``row_ids`` (S,) name the rows in errors."""
    device = banned.device
    mass = torch.ones(n_items + 1, dtype=torch.float64, device=device) if cdf is None else torch.diff(
        cdf, prepend=cdf.new_zeros(1))
    mass[PAD] = 0.0
    per = max(1, FILL_BUDGET // (n_items + 1))
    parts = []
    for lo in range(0, len(banned), per):
        rows = banned[lo : lo + per]
        allowed = torch.ones((len(rows), n_items + 1), dtype=torch.bool, device=device)
        allowed[:, PAD] = False
        allowed.scatter_(1, rows, False)
        if not bool(allowed.any(dim=1).all()):
            bad = int(row_ids[lo + int((~allowed.any(dim=1)).nonzero()[0, 0])])
            raise ValueError(f"row {bad} of seqs/exclude covers all {n_items} items, so no negative can be "
                             "drawn; drop such rows or grow the catalogue")
        weights = torch.where(allowed, mass, torch.zeros((), dtype=mass.dtype, device=device))
        empty = weights.sum(dim=1, keepdim=True) == 0
        weights = torch.where(empty, allowed.to(weights.dtype), weights)  # no allowed mass: uniform, as the kernel
        parts.append(torch.multinomial(weights, k, replacement=True, generator=generator))
    return torch.cat(parts)
