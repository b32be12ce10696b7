"""Obvious plain-Python references for every kernel in ``kernels/`` (no numba here).

They favour the most literal reading of the spec over speed: windows are cut one by one from the
end of the session, and ``next_pos`` is a forward scan per play (quadratic on purpose, so it does
not share the kernel's backward-pass logic).
"""

from __future__ import annotations

import numpy as np

PAD = 0


def count_windows(offsets, max_len):
    """Number of rows: ceil(len / max_len) per session, by repeated subtraction."""
    rows = 0
    for s in range(len(offsets) - 1):
        remaining = int(offsets[s + 1] - offsets[s])
        while remaining > 0:
            rows += 1
            remaining -= max_len
    return rows


def build_sequences(items, skips, offsets, max_len):
    """Reference for ``kernels.build_sequences``: same five arrays, built row by row."""
    rows = []  # (session, [(event index or None) * max_len])
    for s in range(len(offsets) - 1):
        start, end = int(offsets[s]), int(offsets[s + 1])
        windows = []
        hi = end
        while hi > start:
            lo = max(start, hi - max_len)
            windows.append([None] * (max_len - (hi - lo)) + list(range(lo, hi)))
            hi = lo
        for window in reversed(windows):  # earliest window first
            rows.append((s, window))

    n_rows = len(rows)
    seqs = np.zeros((n_rows, max_len), dtype=np.int32)
    fb = np.zeros((n_rows, max_len), dtype=np.int8)
    next_item = np.zeros((n_rows, max_len), dtype=np.int32)
    next_pos = np.zeros((n_rows, max_len), dtype=np.int32)
    row_session = np.zeros(n_rows, dtype=np.int64)
    for r, (s, window) in enumerate(rows):
        row_session[r] = s
        end = int(offsets[s + 1])
        for j, e in enumerate(window):
            if e is None:
                continue  # padding: PAD / 0 everywhere
            seqs[r, j] = items[e]
            fb[r, j] = skips[e]
            if e + 1 < end:
                next_item[r, j] = items[e + 1]
            for f in range(e + 1, end):
                if skips[f] == 0:
                    next_pos[r, j] = items[f]
                    break
    return seqs, fb, next_item, next_pos, row_session


def popularity_cdf(counts, beta):
    """Reference for ``kernels.popularity_cdf``: running sum of counts ** beta, PAD weighted 0."""
    weights = [0.0] + [float(c) ** float(beta) for c in counts[1:]]
    total = 0.0
    running = []
    for w in weights:
        total += w
        running.append(total)
    cdf = [x / total for x in running]
    cdf[-1] = 1.0
    return np.array(cdf, dtype=np.float64)


def allowed_items(seqs_row, exclude_row, n_items):
    """The ids a negative for this row may take: 1..n_items minus the row's positives/exclusions."""
    banned = set(int(x) for x in seqs_row) | set(int(x) for x in exclude_row)
    return [i for i in range(1, n_items + 1) if i not in banned]


def negative_probabilities(seqs_row, exclude_row, n_items, cdf=None):
    """Expected probability of each id 1..n_items for one row's negatives (index 0 is PAD)."""
    probs = np.zeros(n_items + 1, dtype=np.float64)
    allowed = allowed_items(seqs_row, exclude_row, n_items)
    for i in allowed:
        probs[i] = 1.0 if cdf is None else cdf[i] - cdf[i - 1]
    if probs.sum() == 0.0:  # no allowed item has mass: uniform over the allowed ones
        for i in allowed:
            probs[i] = 1.0
    return probs / probs.sum()


def sessionize(user, start_us, end_us, hint, track, flag, played, duration, gap_s, skip_ms, skip_ratio,
               collapse_repeats):
    """Obvious loop version of kernels.sessions.sessionize (same outputs, as Python lists)."""
    n = len(user)
    session, position, is_skip, source, repeat = [], [], [], [], []
    current = -1
    for i in range(n):
        new = i == 0 or user[i] != user[i - 1] or hint[i] != hint[i - 1] or (
            hint[i] == -1 and start_us[i] - end_us[i - 1] > gap_s * 1_000_000)
        current += 1 if new else 0
        session.append(current)
        position.append(0 if new else position[-1] + 1)
        repeat.append(bool(collapse_repeats and not new and track[i] == track[i - 1]))
    for i in range(n):
        nxt_same = i + 1 < n and session[i + 1] == session[i]
        if flag[i] in (2, 3):  # the source's end reason: 2 kept, 3 skipped
            label, src = int(flag[i] == 3), 5
        elif flag[i] in (0, 1):
            label, src = int(flag[i]), 0
        elif played[i] >= 0 and duration[i] >= 0 and skip_ratio is not None:
            label, src = int(played[i] < skip_ratio * duration[i]), 1
        elif played[i] >= 0:
            label, src = int(played[i] < skip_ms), 2
        elif nxt_same:
            label, src = int(start_us[i + 1] - start_us[i] < skip_ms * 1000), 3
        else:
            label, src = 0, 4
        is_skip.append(label)
        source.append(src)
    return session, position, is_skip, source, repeat


def mark_duplicates(user, order_us, start_us, track, played, position):
    """Obvious version: a play is a copy when an earlier play has the same key."""
    seen, out = set(), []
    for key in zip(user, order_us, start_us, track, played, position):
        out.append(key in seen)
        seen.add(key)
    return out


def serve_tracks(new_session, on_mood, skipped, mood, fresh, off_taste, u_action, u_pick, track_artist,
                 track_genre, artist_bounds, genre_bounds, p_artist, p_near, radius):
    """Reference for ``kernels.synth.serve_tracks``, read off its spec play by play: the anchor is
    looked up afresh each time by scanning the session's earlier plays backwards, and each follow
    rule lists its candidate tracks and picks one by ``u_pick``."""
    out = []
    for i in range(len(new_session)):
        first = max(j for j in range(i + 1) if new_session[j])  # the play that opened this session
        anchor = next((out[j] for j in range(i - 1, first - 1, -1)
                       if not skipped[j] and track_genre[out[j]] == mood[j]), None)
        if not on_mood[i]:
            out.append(int(off_taste[i]))
            continue
        if anchor is None or u_action[i] >= p_artist + p_near:
            out.append(int(fresh[i]))
            continue
        artist = int(track_artist[anchor])
        same_artist = [t for t in range(artist_bounds[artist], artist_bounds[artist + 1]) if t != anchor]
        if u_action[i] < p_artist and same_artist:
            out.append(same_artist[int(u_pick[i] * len(same_artist))])
            continue
        genre = int(track_genre[anchor])
        lo, size = int(genre_bounds[genre]), int(genre_bounds[genre + 1] - genre_bounds[genre])
        steps = [s for s in range(-radius, radius + 1) if s != 0]
        out.append(lo + (anchor - lo + steps[int(u_pick[i] * len(steps))]) % size)
    return out
