"""Synthetic listening logs with planted, skip-aware sequential structure.

``synth(out, cfg)`` writes one parquet file of plays in the toolkit's generic column set
(``user_id, ts, track_id, artist, track_name, genre, played_ms, duration_ms``), streamed a chunk
of users at a time, so memory stays bounded whatever ``cfg.plays`` is.

Planted structure (what a skip-aware sequential recommender should be able to exploit)

Catalogue
    Tracks belong to artists and artists to genres.  Track popularity is Zipf-Mandelbrot
    (``weight ~ (rank + zipf_offset)**-zipf_s``); durations are lognormal around
    ``duration_median_s``.
    Internally tracks are laid out genre by genre and artist by artist, so "near" a track means
    a few places away in that layout (usually the same or a neighbouring artist of the same
    genre).  The public ``track_id`` labels are shuffled and reveal none of this layout.
Listeners
    Activity is heavy-tailed (lognormal weights).  Each listener likes 1..``max_fav_genres``
    genres with Dirichlet weights and has ``fav_artists`` favourite artists in each of them.
Sessions
    Session lengths are geometric (mean ``session_mean``, capped at ``session_cap``).  Inside a
    session a play starts ``played_ms`` plus a 0..``pause_max_s`` pause after the previous one;
    sessions are at least ``min_gap_s`` (> 1800 s) apart, so the usual 30-minute gap rule
    recovers them exactly.  Gaps are scaled so each listener's log fills ``days`` days from
    ``start`` (a listener whose listening time cannot fit spills past the window).
Serving and skips
    A session draws a mood genre from the listener's taste.  Each play is on-mood with
    probability ``on_mood_prob`` and off-taste otherwise.  Off-taste tracks are drawn by
    popularity from the whole catalogue and skipped with probability ``skip_off_taste``;
    on-mood tracks are skipped with probability ``skip_on_mood``.  An on-mood track follows the
    *anchor*, the session's latest non-skipped track of the mood genre: with probability
    ``follow_artist_prob`` another track by the anchor's artist, with ``follow_near_prob`` a
    catalogue neighbour within ``near_radius``, otherwise (and when there is no anchor yet) a
    fresh pick: a favourite artist's track with probability ``fav_artist_prob``, else a
    popularity-weighted track of the mood genre.
Consequence
    The next non-skipped track is predictable from the session's earlier non-skipped tracks
    (mood genre, artist continuity, neighbourhood), while skipped plays are mostly off-taste
    noise that never moves the anchor.  Skipped plays last 1..25 s and kept plays 60-100 % of
    the track, so ``played_ms < 30000`` recovers the planted skip label exactly.

Everything is deterministic for a fixed config: the catalogue, the listeners and every chunk
draw from ``numpy.random.default_rng([seed, stream, chunk])``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kernels.synth import serve_tracks
from toolkit.errors import ConfigError

SCHEMA = pa.schema([
    ("user_id", pa.string()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("track_id", pa.string()),
    ("artist", pa.string()),
    ("track_name", pa.string()),
    ("genre", pa.string()),
    ("played_ms", pa.int64()),
    ("duration_ms", pa.int64()),
])

GENRE_NAMES = (
    "pop", "rock", "hip hop", "electronic", "jazz", "classical", "country", "r&b", "metal",
    "folk", "reggae", "latin", "blues", "punk", "soul", "ambient",
)
_WORDS_A = (
    "Blue", "Silent", "Golden", "Broken", "Electric", "Midnight", "Wild", "Lonely", "Neon",
    "Velvet", "Hollow", "Burning", "Paper", "Crystal", "Distant", "Secret", "Summer", "Frozen",
)
_WORDS_B = (
    "Heart", "River", "Highway", "Dream", "Fire", "Rain", "Echo", "Garden", "Signal", "Shadow",
    "Ocean", "Morning", "Machine", "Letter", "Mirror", "Horizon", "Storm", "Dance",
)

_US = 1_000_000  # microseconds per second
_SKIP_MS = (1_000, 25_000)  # a skipped play lasts this long: well under the 30 s skip threshold


@dataclass(frozen=True)
class SynthConfig:
    users: int = 200  # listeners
    plays: int = 100_000  # total plays to write (exactly this many rows)
    tracks: int = 5_000  # catalogue size
    artists: int = 500  # artists; each belongs to one genre and has >= 1 track
    genres: int = 12  # genres; each has >= 1 artist
    seed: int = 0  # root of every random stream
    start: str = "2024-01-01"  # first day of the log (UTC)
    days: int = 180  # the log spans this many days
    zipf_s: float = 1.0  # popularity exponent: rank r (1-based) weighs (r + zipf_offset)**-zipf_s
    zipf_offset: float = 10.0  # flattens the head so no track dominates its genre's picks
    activity_sigma: float = 1.0  # lognormal sigma of listener activity (heavy tail)
    max_fav_genres: int = 3  # a listener likes 1..max_fav_genres genres
    fav_artists: int = 3  # favourite artists per liked genre
    fav_artist_prob: float = 0.3  # fresh on-mood pick comes from a favourite artist
    session_mean: float = 15.0  # mean session length in plays (geometric)
    session_cap: int = 200  # longest session in plays
    on_mood_prob: float = 0.65  # a served track comes from the session's mood genre
    follow_artist_prob: float = 0.35  # on-mood: another track by the anchor's artist
    follow_near_prob: float = 0.30  # on-mood: a catalogue neighbour of the anchor
    near_radius: int = 3  # how far (in catalogue layout) a neighbour may be
    skip_on_mood: float = 0.10  # skip probability of an on-mood track
    skip_off_taste: float = 0.75  # skip probability of an off-taste track
    full_play_prob: float = 0.7  # a kept play runs to the end of the track (else 60-100 %)
    pause_max_s: float = 20.0  # longest pause between plays of one session
    min_gap_s: int = 1860  # shortest gap between sessions, after the previous play ends (> 1800)
    gap_sigma: float = 1.0  # lognormal sigma of session gaps: hours to days
    duration_median_s: float = 220.0  # median track length
    duration_sigma: float = 0.25  # lognormal sigma of track length (clipped to 90..600 s)
    chunk_rows: int = 1_000_000  # rows per chunk of listeners (~400 MB peak; one listener is
    # never split, so a listener with more plays than this forms a larger chunk on its own)

    def __post_init__(self) -> None:
        if self.users < 1 or self.plays < 0 or self.days < 1 or self.chunk_rows < 1:
            raise ConfigError("SynthConfig: users, days, chunk_rows must be >= 1 and plays >= 0")
        if not 1 <= self.genres <= self.artists <= self.tracks:
            raise ConfigError(
                f"SynthConfig: need 1 <= genres ({self.genres}) <= artists ({self.artists}) "
                f"<= tracks ({self.tracks})"
            )
        probs = (self.fav_artist_prob, self.on_mood_prob, self.skip_on_mood,
                 self.skip_off_taste, self.full_play_prob)
        if not all(0.0 <= p <= 1.0 for p in probs) or self.follow_artist_prob < 0 \
                or self.follow_near_prob < 0 or self.follow_artist_prob + self.follow_near_prob > 1:
            raise ConfigError("SynthConfig: probabilities must lie in [0, 1] (follow_* summed)")
        if self.min_gap_s <= 1800 or self.session_mean < 1 or self.session_cap < 1:
            raise ConfigError("SynthConfig: min_gap_s must exceed 1800; session_mean, cap >= 1")
        if self.seed < 0:
            raise ConfigError(f"SynthConfig.seed must be >= 0, got {self.seed}")
        try:
            np.datetime64(self.start, "us")
        except ValueError as err:
            raise ConfigError(
                f"SynthConfig.start: {self.start!r} is not a date like 2024-01-01"
            ) from err
        if self.zipf_offset < 0 or self.zipf_s < 0:
            raise ConfigError("SynthConfig: zipf_s and zipf_offset must be >= 0")
        if self.max_fav_genres < 1 or self.fav_artists < 1 or self.near_radius < 1:
            raise ConfigError("SynthConfig: max_fav_genres, fav_artists, near_radius must be >= 1")


class Catalogue(NamedTuple):
    """Tracks laid out by (genre, artist); index = layout position."""

    track_artist: np.ndarray  # int32[tracks], non-decreasing
    track_genre: np.ndarray  # int32[tracks], non-decreasing
    artist_bounds: np.ndarray  # int64[artists + 1], tracks of artist a: [b[a], b[a+1])
    genre_bounds: np.ndarray  # int64[genres + 1], tracks of genre g
    genre_artist_bounds: np.ndarray  # int64[genres + 1], artists of genre g
    cum_pop: np.ndarray  # float64[tracks], running sum of popularity weights
    artist_cum_pop: np.ndarray  # float64[artists], running sum of artist weights
    duration_ms: np.ndarray  # int64[tracks]
    strings: dict[str, pa.Array]  # track_id, artist, track_name, genre, one entry per track


class Listeners(NamedTuple):
    plays: np.ndarray  # int64[users], plays per listener, sums to cfg.plays
    genres: np.ndarray  # int32[users, K], liked genres (slot k)
    slot_cum: np.ndarray  # float64[users, K], running sum of slot weights (last = 1)
    favs: np.ndarray  # int64[users, K, F], favourite artists per slot


@dataclass(frozen=True)
class SynthSummary:
    """What ``synth`` wrote."""

    rows: int  # plays
    users: int  # listeners with at least one play
    tracks: int  # distinct tracks written
    sessions: int
    skip_share: float
    path: str  # the parquet file


def synth(out: Path, cfg: SynthConfig, progress: Callable[[int], None] | None = None) -> SynthSummary:
    """Write a synthetic play log to ``out`` (one parquet file, written atomically).

    Parameters
    ----------
    out : Path
        Target parquet file; its folder is created.  A ``<name>.tmp`` file beside it holds the
        data until it is complete, then replaces ``out``.
    cfg : SynthConfig
        Sizes, seed and the knobs of the planted structure.
    progress : callable, optional
        Called with the number of rows written so far after each chunk.

    Returns
    -------
    SynthSummary
        ``rows``, ``users`` (listeners with >= 1 play), ``tracks`` (distinct tracks written),
        ``sessions``, ``skip_share`` and ``path``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    cat = _catalogue(cfg, np.random.default_rng([cfg.seed, 0]))
    lis = _listeners(cfg, cat, np.random.default_rng([cfg.seed, 1]))
    t0 = int(np.datetime64(cfg.start, "us").astype(np.int64))
    seen = np.zeros(cfg.tracks, dtype=bool)
    rows = sessions = skips = 0
    try:
        with pq.ParquetWriter(tmp, SCHEMA) as writer:
            for c, (lo, hi) in enumerate(_chunks(lis.plays, cfg.chunk_rows)):
                rng = np.random.default_rng([cfg.seed, 2, c])
                table, stats = _chunk(cfg, cat, lis, lo, hi, t0, rng)
                writer.write_table(table, row_group_size=cfg.chunk_rows)
                seen[stats["tracks"]] = True
                rows += table.num_rows
                sessions += stats["sessions"]
                skips += stats["skips"]
                if progress is not None:
                    progress(rows)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return SynthSummary(rows=rows, users=int((lis.plays > 0).sum()), tracks=int(seen.sum()), sessions=sessions,
                        skip_share=skips / rows if rows else 0.0, path=str(out))


def _catalogue(cfg: SynthConfig, rng: np.random.Generator) -> Catalogue:
    """Genres -> artists -> tracks, laid out genre by genre, artist by artist."""
    genre_w = rng.dirichlet(np.full(cfg.genres, 3.0))
    # The first `genres` artists cover every genre once; the rest follow the genre weights.
    artist_genre = np.concatenate([
        np.arange(cfg.genres), rng.choice(cfg.genres, cfg.artists - cfg.genres, p=genre_w)
    ])
    artist_genre = np.sort(artist_genre).astype(np.int32)  # artist index = layout order
    artist_w = rng.lognormal(0.0, 1.0, cfg.artists)
    track_artist = np.concatenate([
        np.arange(cfg.artists),
        rng.choice(cfg.artists, cfg.tracks - cfg.artists, p=artist_w / artist_w.sum()),
    ])
    track_artist = np.sort(track_artist).astype(np.int32)
    track_genre = artist_genre[track_artist]
    pop = 1.0 / (1.0 + cfg.zipf_offset + rng.permutation(cfg.tracks)) ** cfg.zipf_s
    cum_pop = np.cumsum(pop)
    artist_bounds = np.searchsorted(track_artist, np.arange(cfg.artists + 1)).astype(np.int64)
    genre_cut = np.arange(cfg.genres + 1)
    artist_pop = np.add.reduceat(pop, artist_bounds[:-1])
    dur_s = np.clip(rng.lognormal(np.log(cfg.duration_median_s), cfg.duration_sigma, cfg.tracks),
                    90.0, 600.0)
    return Catalogue(
        track_artist=track_artist,
        track_genre=track_genre,
        artist_bounds=artist_bounds,
        genre_bounds=np.searchsorted(track_genre, genre_cut).astype(np.int64),
        genre_artist_bounds=np.searchsorted(artist_genre, genre_cut).astype(np.int64),
        cum_pop=cum_pop,
        artist_cum_pop=np.cumsum(artist_pop),
        duration_ms=np.round(dur_s * 1000).astype(np.int64),
        strings=_catalogue_strings(cfg, track_artist, track_genre, rng),
    )


def _catalogue_strings(cfg: SynthConfig, track_artist: np.ndarray, track_genre: np.ndarray,
                       rng: np.random.Generator) -> dict[str, pa.Array]:
    """Public labels, shuffled so that neither ids nor names reveal the layout."""
    width = max(6, len(str(cfg.tracks - 1)))
    track_label = rng.permutation(cfg.tracks)
    artist_label = rng.permutation(cfg.artists)
    genre_names = [GENRE_NAMES[g] if g < len(GENRE_NAMES) else f"genre {g}"
                   for g in range(cfg.genres)]
    word_a = rng.integers(0, len(_WORDS_A), cfg.tracks)
    word_b = rng.integers(0, len(_WORDS_B), cfg.tracks)
    artists = pa.array([f"Artist {a}" for a in artist_label])
    return {
        "track_id": pa.array([f"t{t:0{width}d}" for t in track_label]),
        "artist": artists.take(pa.array(track_artist)),
        "track_name": pa.array([f"{_WORDS_A[a]} {_WORDS_B[b]}" for a, b in zip(word_a, word_b)]),
        "genre": pa.array(genre_names).take(pa.array(track_genre)),
    }


def _listeners(cfg: SynthConfig, cat: Catalogue, rng: np.random.Generator) -> Listeners:
    """Heavy-tailed activity, liked genres with weights, favourite artists per liked genre."""
    activity = rng.lognormal(0.0, cfg.activity_sigma, cfg.users)
    k = min(cfg.max_fav_genres, cfg.genres)
    # Gumbel top-k: k distinct genres per listener, popular genres more likely.
    genre_pop = np.diff(np.concatenate([[0.0], cat.cum_pop[cat.genre_bounds[1:] - 1]]))
    keys = np.log(genre_pop) + rng.gumbel(size=(cfg.users, cfg.genres))
    genres = np.argsort(-keys, axis=1)[:, :k].astype(np.int32)
    n_liked = rng.integers(1, k + 1, cfg.users)
    slot_w = rng.gamma(1.0, size=(cfg.users, k)) * (np.arange(k) < n_liked[:, None])
    slot_cum = np.cumsum(slot_w / slot_w.sum(axis=1, keepdims=True), axis=1)
    slot_cum[:, -1] = 1.0
    g = np.repeat(genres[:, :, None], cfg.fav_artists, axis=2)
    favs = _draw_in_blocks(cat.artist_cum_pop, cat.genre_artist_bounds[g],
                           cat.genre_artist_bounds[g + 1], rng.random(g.shape))
    return Listeners(_allocate(cfg.plays, activity), genres, slot_cum, favs)


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    share = total * weights / weights.sum()
    counts = np.floor(share).astype(np.int64)
    short = total - int(counts.sum())
    counts[np.argsort(-(share - counts), kind="stable")[:short]] += 1
    return counts


def _chunks(plays: np.ndarray, chunk_rows: int) -> Iterator[tuple[int, int]]:
    """Consecutive listener ranges [lo, hi) of about ``chunk_rows`` plays (never splits one)."""
    lo, acc = 0, 0
    for u, n in enumerate(plays.tolist()):
        if acc and acc + n > chunk_rows:
            yield lo, u
            lo, acc = u, 0
        acc += n
    if acc:
        yield lo, len(plays)


def _draw_in_blocks(cum: np.ndarray, lo: np.ndarray, hi: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Weighted pick of an index in [lo, hi) per element; ``cum`` is the running weight sum."""
    base = np.where(lo > 0, cum[lo - 1], 0.0)
    idx = np.searchsorted(cum, base + u * (cum[hi - 1] - base), side="right")
    return np.clip(idx, lo, hi - 1)


def _chunk(cfg: SynthConfig, cat: Catalogue, lis: Listeners, lo: int, hi: int, t0: int,
           rng: np.random.Generator) -> tuple[pa.Table, dict]:
    """Generate the plays of listeners [lo, hi) as an arrow table plus counters."""
    n = lis.plays[lo:hi]
    user = np.repeat(np.arange(lo, hi), n)
    new_session = _session_starts(n, cfg, rng)
    sid = np.cumsum(new_session) - 1
    track, skipped = _serve(cfg, cat, lis, user, new_session, sid, rng)
    played = _played_ms(cfg, cat.duration_ms[track], skipped, rng)
    ts = t0 + _start_times(cfg, user, new_session, sid, played, rng)
    ids = pa.array([f"u{u:06d}" for u in range(lo, hi)])
    take = pa.array(track)
    table = pa.table({
        "user_id": ids.take(pa.array(user - lo)),
        "ts": pa.array(ts.view("datetime64[us]")).cast(SCHEMA.field("ts").type),
        "track_id": cat.strings["track_id"].take(take),
        "artist": cat.strings["artist"].take(take),
        "track_name": cat.strings["track_name"].take(take),
        "genre": cat.strings["genre"].take(take),
        "played_ms": played,
        "duration_ms": cat.duration_ms[track],
    }, schema=SCHEMA)
    stats = {"sessions": int(sid[-1]) + 1, "skips": int(skipped.sum()),
             "tracks": np.unique(track)}
    return table, stats


def _session_starts(n: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """bool[rows]: True where a play opens a session (geometric lengths, capped)."""
    rows = int(n.sum())
    first = np.zeros(rows, dtype=bool)
    first[(np.cumsum(n) - n)[n > 0]] = True
    new = first | (rng.random(rows) < 1.0 / cfg.session_mean)
    # Position inside the uncapped session; every cap-th play opens a new one.
    start_row = np.flatnonzero(new)
    pos = np.arange(rows) - start_row[np.cumsum(new) - 1]
    return new | (pos % cfg.session_cap == 0)


def _serve(cfg: SynthConfig, cat: Catalogue, lis: Listeners, user: np.ndarray,
           new_session: np.ndarray, sid: np.ndarray,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pick the track (layout index) and the planted skip flag of every play."""
    rows = len(user)
    s_user = user[new_session]
    slot = (rng.random(len(s_user))[:, None] > lis.slot_cum[s_user]).sum(axis=1)
    slot = np.minimum(slot, lis.slot_cum.shape[1] - 1)
    s_fav = lis.favs[s_user, slot, rng.integers(0, cfg.fav_artists, len(s_user))]
    mood = lis.genres[s_user, slot][sid]
    fav = s_fav[sid]
    on_mood = rng.random(rows) < cfg.on_mood_prob
    skipped = rng.random(rows) < np.where(on_mood, cfg.skip_on_mood, cfg.skip_off_taste)
    # Candidates that do not depend on the session's history, drawn for every row at once.
    off_taste = np.searchsorted(cat.cum_pop, rng.random(rows) * cat.cum_pop[-1], side="right")
    off_taste = np.minimum(off_taste, cfg.tracks - 1)
    use_fav = rng.random(rows) < cfg.fav_artist_prob
    blo = np.where(use_fav, cat.artist_bounds[fav], cat.genre_bounds[mood])
    bhi = np.where(use_fav, cat.artist_bounds[fav + 1], cat.genre_bounds[mood + 1])
    fresh = _draw_in_blocks(cat.cum_pop, blo, bhi, rng.random(rows))
    track = serve_tracks(new_session, on_mood, skipped, mood.astype(np.int64), fresh, off_taste,
                         rng.random(rows), rng.random(rows), cat.track_artist, cat.track_genre,
                         cat.artist_bounds, cat.genre_bounds, cfg.follow_artist_prob,
                         cfg.follow_near_prob, cfg.near_radius)
    return track, skipped



def _played_ms(cfg: SynthConfig, duration: np.ndarray, skipped: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """Skips last 1..25 s; kept plays run to the end or stop after 60-100 % of the track."""
    rows = len(duration)
    partial = np.floor(duration * rng.uniform(0.6, 1.0, rows)).astype(np.int64)
    kept = np.where(rng.random(rows) < cfg.full_play_prob, duration, partial)
    return np.where(skipped, rng.integers(_SKIP_MS[0], _SKIP_MS[1] + 1, rows), kept)


def _start_times(cfg: SynthConfig, user: np.ndarray, new_session: np.ndarray, sid: np.ndarray,
                 played: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """int64[rows] start of each play in microseconds after ``cfg.start``."""
    pause = rng.integers(0, int(cfg.pause_max_s * 1000) + 1, len(played))
    step = (played + pause) * 1000
    offset = _segment_cumsum(step, new_session) - step  # play start inside its session
    last = np.append(np.flatnonzero(new_session)[1:], len(played)) - 1
    dur = offset[last] + played[last] * 1000  # session span, first start to last end
    s_user = user[new_session]
    user_first = np.append(True, s_user[1:] != s_user[:-1])
    # Spread each listener's idle time over the gaps, lognormal weights: hours to days.
    w = rng.lognormal(0.0, cfg.gap_sigma, len(dur))
    seg = np.cumsum(user_first) - 1
    firsts = np.flatnonzero(user_first)
    n_sess = np.diff(np.append(firsts, len(dur)))
    w_total = np.add.reduceat(w, firsts) + rng.lognormal(0.0, cfg.gap_sigma, len(firsts))
    idle = cfg.days * 86_400 * _US - np.add.reduceat(dur, firsts) \
        - (n_sess - 1) * cfg.min_gap_s * _US
    idle = np.maximum(idle, 0)  # too much listening for the window: spill past its end
    gap = np.floor(w / w_total[seg] * idle[seg]).astype(np.int64)
    gap += np.where(user_first, 0, cfg.min_gap_s * _US)
    prev_dur = np.where(user_first, 0, np.roll(dur, 1))
    s_start = _segment_cumsum(gap + prev_dur, user_first)
    return s_start[sid] + offset


def _segment_cumsum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Inclusive running sum of int64 ``values`` that restarts where ``starts`` is True.

    The global running sum may wrap around int64 over many listeners; int64 arithmetic is
    modular, so the difference inside a segment is still exact.
    """
    cs = np.cumsum(values)
    first = np.flatnonzero(starts)
    base = (cs - values)[first]
    return cs - base[np.cumsum(starts) - 1]
