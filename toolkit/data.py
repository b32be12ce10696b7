"""Batches for training and evaluation, read from the memory-mapped sequence arrays of ``prep``.

Shapes (see ``toolkit/schema.py``): every array is ``[rows, max_len]``, left-padded with PAD = 0.
``next_skip`` is derived here, a batch at a time (``next_skip_rows``): 1 where the next play of the
session was skipped, and the successors of a batch's plays are read from links built once on disk
(``LazySuccessors``).  Nothing of a split is held in memory whole but what a run asks for on top
(history columns, listener codes): the arrays stay memory-maps, so training a log of any length needs
the pages of its batches, not a copy of the split.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypedDict

import numpy as np
import torch

import kernels
from toolkit.artifacts import DatasetDir, read_array, read_frame
from toolkit.history import ListenerOrder, SuccessorLinks, row_history, row_listener
from toolkit.schema import ITEM, PAD, SESSION, TS, USER


class BatchInputs(TypedDict):
    """What a model reads of a batch: int64 tensors (B, T) on the batch's device, left-padded with PAD."""

    seqs: torch.Tensor  # item ids
    fb: torch.Tensor  # 1 = skipped


class Batch(BatchInputs, total=False):
    """Rows of a split as ``to_batch`` makes them: the inputs, the targets of every position, and the
    successors when the split carries them.  A dict (the medium every scorer and loss already
    takes); the scorers of ``recommend`` get the inputs alone."""

    next_item: torch.Tensor  # (B, T) next play of the session, PAD if none
    next_pos: torch.Tensor  # (B, T) next non-skipped play of the session, PAD if none
    next_skip: torch.Tensor  # (B, T) 1 = the next play was skipped
    succ: torch.Tensor  # (B, T, K) what followed each play's track before (history.row_successors)


@dataclass(frozen=True)
class SplitArrays:
    seqs: np.ndarray  # int32 (R, L) item ids
    skips: np.ndarray  # int8 (R, L) 1 = skipped
    next_item: np.ndarray  # int32 (R, L) next play of the session, PAD if none
    next_pos: np.ndarray  # int32 (R, L) next non-skipped play of the session, PAD if none
    row_session: np.ndarray  # int64 (R,) session_idx of each row
    # the first ``history`` columns of seqs / skips hold the listener's plays before the session
    # (toolkit/history.py); their next_* are PAD, so they are context, never a query or a target
    history: int = 0
    # int32 (R, L, K) or None: at each play, the tracks that followed the same track in the listener's
    # earlier plays, latest first (history.row_successors; PAD in history columns and at padding);
    # load_split hands a LazySuccessors, which reads them a batch of rows at a time
    succ: "np.ndarray | LazySuccessors | None" = None
    # int64 (R,) or None: a code of each row's listener (history.row_listener), for the transition
    # term, which leaves the listener's own transitions out
    row_user: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.seqs)

    def session_part(self) -> "SplitArrays":
        """The same rows without the history columns: the session's own plays only."""
        if not self.history:
            return self
        h = self.history
        return SplitArrays(seqs=self.seqs[:, h:], skips=self.skips[:, h:], next_item=self.next_item[:, h:],
                           next_pos=self.next_pos[:, h:], row_session=self.row_session,
                           succ=None if self.succ is None else self.succ[:, h:], row_user=self.row_user)


def load_split(ds: DatasetDir, split: str, history: int = 0, successors: int = 0, listeners: bool = False,
               window: int = 0) -> SplitArrays:
    """The arrays of one split, memory-mapped (nothing is copied until a batch is taken); with
    ``successors`` > 0 each play carries what followed its track before (read a batch at a time from
    links DuckDB builds once, out of core; with ``window`` also the plays after those successors,
    ``history.play_successors``), with ``history`` > 0 each row is prefixed by its
    listener's last ``history`` plays before the row, with ``listeners`` each row carries its
    listener's code (these two held in memory)."""
    seqs = read_array(ds.array(split, "seqs"))
    row_session = read_array(ds.array(split, "row_session"))
    a = SplitArrays(
        seqs=seqs, skips=read_array(ds.array(split, "skips")), next_item=read_array(ds.array(split, "next_item")),
        next_pos=read_array(ds.array(split, "next_pos")), row_session=row_session,
    )
    if successors > 0:  # read a batch at a time from links built once (history.SuccessorLinks)
        a = replace(a, succ=LazySuccessors(_links(ds, window > 0), row_session, seqs.shape[1], successors, window))
    if history <= 0 and not listeners:
        return a
    # one listener-time ordering of the whole log serves both views
    order = ListenerOrder(read_frame(ds.events, columns=[SESSION, "position", USER, ITEM, TS, "is_skip"]))
    if listeners:
        a = replace(a, row_user=row_listener(order, np.asarray(row_session), seqs.shape[1]))
    if history > 0:
        a = with_history(a, *row_history(order, np.asarray(row_session), seqs.shape[1], history))
    return a


@dataclass(frozen=True)
class LazySuccessors:
    """A split's successors (``history.row_successors``: int32 (R, L, K (1 + window))) without holding them: rows
    indexed by an array of row numbers come from the dataset's links, a batch at a time; the first
    ``pad`` columns (history columns, which have no successors) are PAD."""

    links: SuccessorLinks
    row_session: np.ndarray  # int64 (R,), the split's
    width: int  # the session's columns
    k: int
    window: int = 0
    pad: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.row_session), self.pad + self.width, self.k * (1 + self.window)

    def __len__(self) -> int:
        return len(self.row_session)

    def __getitem__(self, key) -> "np.ndarray | LazySuccessors":
        if isinstance(key, tuple):  # [:, pad:]: the session's columns alone (SplitArrays.session_part)
            rows, cols = key
            if rows != slice(None) or cols != slice(self.pad, None):
                raise IndexError(f"successors index rows by an array, or drop the history columns; not {key!r}")
            return replace(self, pad=0)
        idx = np.asarray(key, np.int64)
        succ = self.links.rows(self.row_session, idx, self.width, self.k, self.window)
        return np.concatenate([np.zeros((len(idx), self.pad, succ.shape[2]), np.int32), succ], axis=1) if self.pad else succ

    def padded(self, h: int) -> "LazySuccessors":
        """The same with ``h`` more PAD columns on the left (``with_history``)."""
        return replace(self, pad=self.pad + h)


_LINKS: dict[tuple, SuccessorLinks] = {}


def _links(ds: DatasetDir, window: bool = False) -> SuccessorLinks:
    """The successor links of ``ds``'s events, built once per process and events file (a run loads
    train and valid; both read the same links); with ``window``, links that also read windows."""
    stat = ds.events.stat()
    key = (str(ds.events.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _LINKS or (window and not _LINKS[key].window):
        _LINKS.clear()  # one dataset's links at a time
        # the workspace's tmp/ when the dataset sits in a workspace, else the dataset's own folder
        scratch = ds.path.parent.parent / "tmp" if ds.path.parent.name == "datasets" else ds.path
        _LINKS[key] = SuccessorLinks(ds.events, scratch, window=window)
    return _LINKS[key]


def with_history(a: SplitArrays, items: np.ndarray, skips: np.ndarray) -> SplitArrays:
    """``a`` with each row prefixed by its history columns (``history.row_history``): items int32
    (R, H), skips int8 (R, H)."""
    h = items.shape[1]
    pad = np.zeros((len(a), h), np.int32)
    return SplitArrays(
        seqs=np.concatenate([items, np.asarray(a.seqs)], axis=1),
        skips=np.concatenate([skips, np.asarray(a.skips)], axis=1),
        next_item=np.concatenate([pad, np.asarray(a.next_item)], axis=1),
        next_pos=np.concatenate([pad, np.asarray(a.next_pos)], axis=1),
        row_session=a.row_session, history=a.history + h, row_user=a.row_user,
        succ=None if a.succ is None else a.succ.padded(h) if isinstance(a.succ, LazySuccessors) else np.concatenate(
            [np.zeros((len(a), h, a.succ.shape[2]), np.int32), a.succ], axis=1),
    )


def next_skip_rows(a: SplitArrays, idx: np.ndarray) -> np.ndarray:
    """int8 (len(idx), L): for the split's rows ``idx`` (sorted), the skip flag of the play after each
    position, read from those rows and the row after each (a whole split's would be one byte per
    position in memory).  Windows are aligned at the session end, so every window but a session's
    earliest is full and the play after a row's last column is the first session column of the
    next row of the same session.  History columns are never followed by a play of theirs: 0 there."""
    h = a.history
    skips = np.asarray(a.skips[idx])  # (B, L)
    out = np.zeros_like(skips)
    out[:, h:-1] = skips[:, h + 1:]
    after = idx + 1
    has = after < len(a)
    if has.any():
        same = np.asarray(a.row_session[after[has]]) == np.asarray(a.row_session[idx[has]])
        out[has, -1] = np.where(same, np.asarray(a.skips[after[has], h]), 0)
    return out


def to_batch(a: SplitArrays, idx: np.ndarray, device: torch.device) -> Batch:
    """Rows ``idx`` as int64 tensors on ``device``: seqs, fb, next_item, next_pos, next_skip (B, T), and
    succ (B, T, K) when the split carries successors."""
    idx = np.sort(idx)  # sorted reads are sequential in the memory map
    columns = {"seqs": a.seqs, "fb": a.skips, "next_item": a.next_item, "next_pos": a.next_pos, "succ": a.succ,
               "user": a.row_user}
    rows = {k: v[idx] for k, v in columns.items() if v is not None}
    rows["next_skip"] = next_skip_rows(a, idx)
    return {k: torch.from_numpy(np.asarray(v, dtype=np.int64)).to(device) for k, v in rows.items()}  # type: ignore[return-value]


def row_batches(n_rows: int, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Row indices cut into batches; shuffled when an rng is given (one rng per epoch)."""
    order = rng.permutation(n_rows) if rng is not None else np.arange(n_rows)
    return [order[i : i + batch_size] for i in range(0, n_rows, batch_size)]


def negatives_for(batch_seqs: torch.Tensor, targets: torch.Tensor, n_items: int, k: int, seed: int,
                  cdf: np.ndarray | None) -> torch.Tensor:
    """k sampled negatives per row (B, k), never PAD, never a play or target of that row."""
    seqs = np.ascontiguousarray(batch_seqs.cpu().numpy().astype(np.int32))
    excl = np.ascontiguousarray(targets.cpu().numpy().astype(np.int32))
    neg = kernels.sample_negatives(seqs, n_items, k, seed, cdf=cdf, exclude=excl)
    return torch.from_numpy(neg.astype(np.int64)).to(batch_seqs.device)


def train_counts(a: SplitArrays, n_items: int, hide_skips: bool = False, chunk_rows: int = 1 << 16) -> np.ndarray:
    """int64 (n_items + 1,): plays of each track in the train rows (PAD counted as 0); with
    ``hide_skips``, its plays that were not skipped (what a positives-only run sees).  A chunk of
    rows at a time, so the split is never copied whole."""
    counts = np.zeros(n_items + 1, np.int64)
    h = a.history  # the session's own plays, each counted once
    for at in range(0, len(a), chunk_rows):
        seqs = np.asarray(a.seqs[at:at + chunk_rows, h:])
        real = seqs != PAD
        if hide_skips:
            real &= np.asarray(a.skips[at:at + chunk_rows, h:]) == 0
        counts += np.bincount(seqs[real], minlength=n_items + 1)
    counts[PAD] = 0
    return counts


def item_artists(ds: DatasetDir, n_items: int) -> tuple[np.ndarray, int]:
    """Each track's artist as a code, int64 (n_items + 2,) indexed by track id (PAD and MASK: 0), and
    how many artists there are. Codes number the distinct artist names in sorted order from 1, so
    they depend on the catalogue only; a track without an artist name gets 0 (no artist embedding)."""
    items = read_frame(ds.items, ["item_id", "artist"])
    ids = items["item_id"].to_numpy().astype(np.int64)
    names = items["artist"].fill_null("").to_numpy().astype(str)
    known = np.char.str_len(np.char.strip(names)) > 0
    distinct, inverse = np.unique(names[known], return_inverse=True)
    codes = np.zeros(n_items + 2, np.int64)
    codes[ids[known]] = inverse + 1
    return codes, len(distinct)
