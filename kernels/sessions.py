"""One linear pass over time-ordered plays: sessions, positions, skip labels and repeats.

The plays arrive sorted by (user, order time, source position, source row) (``sql/play_stream.sql``
ordered by ``toolkit/prep.py``); a single pass then replaces what would be several window sorts in
SQL.  Missing values are encoded as -1 (``hint``, ``flag``, ``played``, ``duration``).

Skip rules, in order (``source`` codes): 0 the source's explicit flag; 5 the source's end reason
(a flag of 2 / 3, see below); 1 played / duration below ``skip_ratio`` (when both are known and the
ratio is on); 2 played below ``skip_ms``; 3 the pause to the next play of the same session below
``skip_ms`` (start times only); 4 the last play of such a session, which cannot be judged and
counts as not skipped.  The end reason got code 5, not a place in the middle, so the codes that
prepared datasets already hold keep their meaning.

``flag`` carries both kinds of source evidence in one int8, so formats without an end reason pass
their flag unchanged: -1 none, 0 / 1 the explicit flag, 2 / 3 the end reason says kept / skipped
(``sql/normalize_spotify_extended.sql`` emits 2 / 3 where Spotify did not record its flag).
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit
from kernels.checks import check_array

SOURCES = ("explicit", "ratio", "played_ms", "gap", "unknown", "reason")
# the rules in the order they are tried (how the manifest lists them)
PRECEDENCE = ("explicit", "reason", "ratio", "played_ms", "gap", "unknown")
REASON_FLAG = 2  # flag values REASON_FLAG + 0 / 1: the source's end reason says kept / skipped


def mark_duplicates(user: np.ndarray, order_us: np.ndarray, start_us: np.ndarray, track: np.ndarray,
                    played: np.ndarray, position: np.ndarray) -> np.ndarray:
    """bool[n]: the play repeats an earlier play of the stream exactly (same user, start, track,
    played time and source position); the first copy is kept.

    Copies share their order time, so they sit in the same run of equal (user, order_us); only
    those runs (almost always of length 1) are compared pairwise.
    """
    n = len(user)
    check_array("user", user, np.int32, 1)
    check_array("track", track, np.int32, 1)
    for name, arr in {"order_us": order_us, "start_us": start_us, "played": played, "position": position}.items():
        check_array(name, arr, np.int64, 1)
        if len(arr) != n:
            raise ValueError(f"{name} has {len(arr)} entries but user has {n}; pass one value per play")
    out = np.zeros(n, np.bool_)
    _mark_duplicates_kernel(user, order_us, start_us, track, played, position, out)
    return out


@njit
def _mark_duplicates_kernel(user, order_us, start_us, track, played, position, out):
    n = user.shape[0]
    run = 0
    for i in range(n):
        if i == 0 or user[i] != user[i - 1] or order_us[i] != order_us[i - 1]:
            run = i
            continue
        for j in range(run, i):
            if (not out[j] and start_us[j] == start_us[i] and track[j] == track[i] and played[j] == played[i]
                    and position[j] == position[i]):
                out[i] = True
                break


def sessionize(
    user: np.ndarray,
    start_us: np.ndarray,
    end_us: np.ndarray,
    hint: np.ndarray,
    track: np.ndarray,
    flag: np.ndarray,
    played: np.ndarray,
    duration: np.ndarray,
    gap_s: int,
    skip_ms: int,
    skip_ratio: float | None,
    collapse_repeats: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut sorted plays into sessions and label them.

    Parameters
    ----------
    user : int32[n] user code, non-decreasing.
    start_us, end_us : int64[n] play start and (estimated) end, epoch microseconds.
    hint : int64[n] the source's session id code, -1 where none; a change starts a session.
    track : int32[n] track code.
    flag : int8[n] explicit skip flag (0 / 1), end-reason verdict (2 kept / 3 skipped), -1 where none.
    played, duration : int64[n] milliseconds, -1 where unknown.
    gap_s : a pause strictly longer than this many seconds starts a new session.
    skip_ms, skip_ratio : the skip thresholds (``skip_ratio`` None turns the ratio rule off).
    collapse_repeats : mark a play of the same track as the play before it in the session.

    Returns
    -------
    session : int64[n] global session number, 0.. in input order.
    position : int32[n] position inside the session, from 0.
    is_skip : int8[n] 1 = skipped.
    source : int8[n] which rule decided (index into ``SOURCES``).
    repeat : bool[n] a consecutive repeat (always False unless ``collapse_repeats``).
    """
    n = len(user)
    user = check_array("user", user, np.int32, 1)
    arrays = {"start_us": start_us, "end_us": end_us, "hint": hint, "played": played, "duration": duration}
    for name, arr in arrays.items():
        check_array(name, arr, np.int64, 1)
    check_array("track", track, np.int32, 1)
    check_array("flag", flag, np.int8, 1)
    for name, arr in {**arrays, "track": track, "flag": flag}.items():
        if len(arr) != n:
            raise ValueError(f"{name} has {len(arr)} entries but user has {n}; pass one value per play")
    if n and (flag.min() < -1 or flag.max() > REASON_FLAG + 1):
        raise ValueError(f"flag holds values outside -1..{REASON_FLAG + 1}: use -1 none, 0 / 1 the source's flag, "
                         f"{REASON_FLAG} / {REASON_FLAG + 1} its end reason (kept / skipped)")
    if n and np.any(user[1:] < user[:-1]):
        raise ValueError("user must be non-decreasing: sort plays by (user, time) first")
    if gap_s <= 0 or skip_ms < 0:
        raise ValueError(f"need gap_s > 0 and skip_ms >= 0, got {gap_s} and {skip_ms}")
    session = np.empty(n, np.int64)
    position = np.empty(n, np.int32)
    is_skip = np.empty(n, np.int8)
    source = np.empty(n, np.int8)
    repeat = np.empty(n, np.bool_)
    ratio = -1.0 if skip_ratio is None else float(skip_ratio)
    _sessionize_kernel(user, start_us, end_us, hint, track, flag, played, duration, int(gap_s) * 1_000_000,
                       int(skip_ms), ratio, bool(collapse_repeats), session, position, is_skip, source, repeat)
    return session, position, is_skip, source, repeat


@njit
def _sessionize_kernel(user, start_us, end_us, hint, track, flag, played, duration, gap_us, skip_ms, ratio,
                       collapse, session, position, is_skip, source, repeat):
    n = user.shape[0]
    current = -1
    for i in range(n):
        new = (
            i == 0
            or user[i] != user[i - 1]
            or hint[i] != hint[i - 1]
            or (hint[i] == -1 and start_us[i] - end_us[i - 1] > gap_us)
        )
        if new:
            current += 1
            position[i] = 0
        else:
            position[i] = position[i - 1] + 1
        session[i] = current
        repeat[i] = collapse and not new and track[i] == track[i - 1]
    for i in range(n):
        if flag[i] >= 2:  # the end reason (REASON_FLAG; a literal: kernels take no globals)
            is_skip[i] = flag[i] - 2
            source[i] = 5
        elif flag[i] >= 0:
            is_skip[i] = flag[i]
            source[i] = 0
        elif played[i] >= 0 and duration[i] >= 0 and ratio >= 0.0:
            is_skip[i] = 1 if played[i] < ratio * duration[i] else 0
            source[i] = 1
        elif played[i] >= 0:
            is_skip[i] = 1 if played[i] < skip_ms else 0
            source[i] = 2
        elif i + 1 < n and session[i + 1] == session[i]:
            is_skip[i] = 1 if start_us[i + 1] - start_us[i] < skip_ms * 1000 else 0
            source[i] = 3
        else:
            is_skip[i] = 0
            source[i] = 4
