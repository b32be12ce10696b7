"""Obvious references for every kernel in ``kernels/``: plain Python, or polars where a whole-table
formulation is further from the kernel's loop (no numba here).

They favour the most literal reading of the spec over speed: windows are cut one by one from the
end of the session, and ``next_pos`` is a forward scan per play (quadratic on purpose, so it does
not share the kernel's backward-pass logic).
"""

from __future__ import annotations

import numpy as np
import polars as pl

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
    """Reference for ``kernels.sessions.sessionize`` as polars window expressions over the whole
    table (the kernel is one sequential loop): a session starts at a change of user or of the
    source's session id, or, without one, after a pause longer than ``gap_s``; each play's skip
    label comes from the first rule in precedence order that has the evidence it needs."""
    plays = pl.DataFrame({
        "user": user, "start": start_us, "end": end_us, "hint": hint, "track": track, "flag": flag,
        "played": played, "duration": duration,
    }, schema={"user": pl.Int64, "start": pl.Int64, "end": pl.Int64, "hint": pl.Int64, "track": pl.Int64,
               "flag": pl.Int64, "played": pl.Int64, "duration": pl.Int64})
    first = (
        pl.col("user").shift(1).is_null()
        | (pl.col("user") != pl.col("user").shift(1))
        | (pl.col("hint") != pl.col("hint").shift(1))
        | ((pl.col("hint") == -1) & (pl.col("start") - pl.col("end").shift(1) > gap_s * 1_000_000))
    )
    sessions = plays.with_columns(first.alias("first")).with_columns(
        (pl.col("first").cast(pl.Int64).cum_sum() - 1).alias("session"))
    next_start = pl.col("start").shift(-1).over("session")
    ratio_rule = pl.lit(False) if skip_ratio is None else (pl.col("played") >= 0) & (pl.col("duration") >= 0)
    rules = (  # (applies, label, source code), in precedence order
        (pl.col("flag").is_in([2, 3]), pl.col("flag") == 3, 5),
        (pl.col("flag").is_in([0, 1]), pl.col("flag") == 1, 0),
        (ratio_rule, pl.col("played") < (skip_ratio or 0.0) * pl.col("duration"), 1),
        (pl.col("played") >= 0, pl.col("played") < skip_ms, 2),
        (next_start.is_not_null(), next_start - pl.col("start") < skip_ms * 1000, 3),
    )
    label, source = pl.when(rules[0][0]).then(rules[0][1]), pl.when(rules[0][0]).then(pl.lit(rules[0][2]))
    for applies, is_skip, code in rules[1:]:
        label, source = label.when(applies).then(is_skip), source.when(applies).then(pl.lit(code))
    out = sessions.with_columns(
        position=pl.int_range(pl.len()).over("session"),
        is_skip=label.otherwise(False).cast(pl.Int64),
        source=source.otherwise(pl.lit(4)),
        repeat=pl.lit(bool(collapse_repeats))
        & (pl.col("track") == pl.col("track").shift(1).over("session")).fill_null(False),
    )
    return tuple(out[c].to_list() for c in ("session", "position", "is_skip", "source", "repeat"))


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


def stable_places(codes):
    """Reference for ``kernels.ordering.stable_places``: a play goes after every smaller code and
    after the earlier plays of its own code."""
    codes = [int(c) for c in codes]
    return np.array([sum(c < mine for c in codes) + sum(c == mine for c in codes[:i])
                     for i, mine in enumerate(codes)], np.int64)


def next_skip(skips, row_session):
    """Reference for ``toolkit.data.next_skip_rows`` over every row: the whole split shifted by one
    play, the last column taking the next row's first when it is the same session."""
    out = np.zeros_like(skips)
    out[:, :-1] = skips[:, 1:]
    if len(skips) > 1:
        same = row_session[1:] == row_session[:-1]
        out[:-1, -1] = np.where(same, skips[1:, 0], 0)
    return out


def look_up(table, hashes):
    """Reference for ``kernels.lookup``: a Python dict from each value to its first row; -1 when absent."""
    row_of = {}
    for row, value in enumerate(table):
        row_of.setdefault(int(value), row)
    return np.array([row_of.get(int(h), -1) for h in hashes], np.int32)
