"""Cut sessions into fixed-length, left-padded training windows with next-item targets.

Shapes and pads (``kernels/conventions.py``): events are a CSR of sessions, ``items: int32[n_events]``
with ids ``1..n_items``, ``skips: int8[n_events]`` (1 = skipped), ``offsets: int64[n_sessions + 1]``.
Outputs are ``[n_rows, max_len]`` arrays left-padded with ``PAD = 0``.
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit
from kernels.checks import check_array, check_positive_int
from kernels.conventions import PAD


def _check_offsets(offsets: object) -> np.ndarray:
    """Check that ``offsets`` is an int64 CSR index: starts at 0 and never decreases."""
    offsets = check_array("offsets", offsets, np.int64, 1)
    if offsets.shape[0] == 0:
        raise ValueError(
            "offsets must hold n_sessions + 1 entries starting with 0; "
            "use np.zeros(1, dtype=np.int64) for no sessions"
        )
    if offsets[0] != 0:
        raise ValueError(f"offsets[0] must be 0, got {offsets[0]}")
    bad = np.flatnonzero(offsets[1:] < offsets[:-1])
    if bad.size:
        s = int(bad[0])
        raise ValueError(
            f"offsets must be non-decreasing; offsets[{s + 1}]={offsets[s + 1]} < offsets[{s}]={offsets[s]}; "
            "sort events by (session, position) and rebuild offsets"
        )
    return offsets


def _windows_per_session(offsets: np.ndarray, max_len: int) -> np.ndarray:
    """``int64[n_sessions]``: ceil(session length / max_len), 0 for empty sessions."""
    return (np.diff(offsets) + (max_len - 1)) // max_len


def count_windows(offsets: np.ndarray, max_len: int) -> int:
    """Number of rows ``build_sequences`` emits for these sessions.

    Parameters
    ----------
    offsets : int64[n_sessions + 1]
        CSR index; session ``s`` occupies events ``offsets[s]:offsets[s + 1]``.
    max_len : int
        Window length, ``> 0``.

    Returns
    -------
    int
        ``sum(ceil(len_s / max_len))``; an empty session contributes no row.
    """
    offsets = _check_offsets(offsets)
    max_len = check_positive_int("max_len", max_len)
    return int(_windows_per_session(offsets, max_len).sum())


def build_sequences(
    items: np.ndarray, skips: np.ndarray, offsets: np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut every session into non-overlapping windows aligned at the session's end.

    A session of length ``n`` gives ``ceil(n / max_len)`` rows: the last holds the last ``max_len``
    plays, the one before the ``max_len`` plays before those, and so on; only the earliest row can
    be partial and it is left-padded with ``PAD``. Rows come in session order, earliest window first.

    Parameters
    ----------
    items : int32[n_events]
        Item ids ``1..n_items`` sorted by (session, position); ``PAD`` must not appear.
    skips : int8[n_events]
        1 for a skipped play, 0 otherwise.
    offsets : int64[n_sessions + 1]
        CSR index: ``offsets[0] == 0``, non-decreasing, ``offsets[-1] == n_events``.
    max_len : int
        Window length, ``> 0``.

    Returns
    -------
    seqs : int32[n_rows, max_len]
        Item ids, left-padded with ``PAD``.
    fb : int8[n_rows, max_len]
        Skip flags of those plays, 0 under padding.
    next_item : int32[n_rows, max_len]
        The play right after each play in the whole session (not just the window); ``PAD`` after
        the session's last play and under padding.
    next_pos : int32[n_rows, max_len]
        The first non-skipped play after each play in the whole session; ``PAD`` if there is none
        and under padding.
    row_session : int64[n_rows]
        Session index of every row.
    """
    items = check_array("items", items, np.int32, 1)
    skips = check_array("skips", skips, np.int8, 1)
    offsets = _check_offsets(offsets)
    max_len = check_positive_int("max_len", max_len)
    if items.shape[0] != skips.shape[0]:
        raise ValueError(f"items and skips must have equal lengths, got {items.shape[0]} and {skips.shape[0]}")
    if offsets[-1] != items.shape[0]:
        raise ValueError(f"offsets[-1] must equal len(items) = {items.shape[0]}, got {offsets[-1]}")
    # Viewing int8 as uint8 maps negative flags above 1, so one max() checks both bounds.
    if skips.shape[0] and skips.view(np.uint8).max() > 1:
        raise ValueError("skips must hold only 0 (played) or 1 (skipped)")
    if items.shape[0] and items.min() <= PAD:
        raise ValueError(f"item ids must be >= 1; PAD={PAD} (or a negative id) found in items")

    row_start = np.zeros(offsets.shape[0], dtype=np.int64)
    np.cumsum(_windows_per_session(offsets, max_len), out=row_start[1:])
    n_rows = int(row_start[-1])
    seqs = np.zeros((n_rows, max_len), dtype=np.int32)
    fb = np.zeros((n_rows, max_len), dtype=np.int8)
    next_item = np.zeros((n_rows, max_len), dtype=np.int32)
    next_pos = np.zeros((n_rows, max_len), dtype=np.int32)
    row_session = np.zeros(n_rows, dtype=np.int64)
    _build_sequences_kernel(items, skips, offsets, max_len, row_start, seqs, fb, next_item, next_pos, row_session)
    return seqs, fb, next_item, next_pos, row_session


@njit
def _build_sequences_kernel(items, skips, offsets, max_len, row_start, seqs, fb, next_item, next_pos, row_session):
    """Fill zeroed outputs; session ``s`` owns rows ``row_start[s]:row_start[s + 1]``.

    A session's rows are contiguous in memory and only the earliest is partial, so the session is
    one run of slots ending where its last row ends: event ``e`` lands at flat slot ``e + shift``.
    Padding slots are never written and stay ``PAD = 0`` from ``np.zeros``.
    """
    seqs_flat = seqs.reshape(-1)
    fb_flat = fb.reshape(-1)
    next_item_flat = next_item.reshape(-1)
    next_pos_flat = next_pos.reshape(-1)
    # Unsigned event indices spare numba's negative-index wraparound test on every access, which
    # otherwise keeps this memory-bound loop from compiling tight (about 2x slower).
    one = np.uint64(1)
    for s in range(offsets.shape[0] - 1):
        start = np.uint64(offsets[s])
        end = np.uint64(offsets[s + 1])
        for r in range(row_start[s], row_start[s + 1]):
            row_session[r] = s
        # slots up to this session's last row >= events up to its end, so shift >= 0
        shift = np.uint64(row_start[s + 1] * max_len) - end
        # One backward pass carries the next play and the next non-skipped play.
        following = np.int32(0)  # PAD
        following_play = np.int32(0)  # PAD
        e = end
        while e > start:
            e -= one
            item = items[e]
            skip = skips[e]
            seqs_flat[e + shift] = item
            fb_flat[e + shift] = skip
            next_item_flat[e + shift] = following
            next_pos_flat[e + shift] = following_play
            following = item
            # Branch-free "if not skip: following_play = item": skips are random, so a branch
            # mispredicts often. played is all ones for a play, zero for a skip.
            played = np.int32(skip) - np.int32(1)
            following_play = (item & played) | (following_play & ~played)
