"""kernels.synth.serve_tracks against the plain-Python reference, plus the planted-signal properties.

Run it twice, as the other kernel tests: as is, and with ``NUMBA_DISABLE_JIT=1``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.synth import serve_tracks

try:
    from tests import reference as ref
except ImportError:  # tests/ itself is on sys.path instead of the repo root
    import reference as ref


def layout(tracks_per_artist: list[list[int]]):
    """Catalogue arrays from tracks per artist, grouped by genre: [[3, 1], [2]] is genre 0 with
    artists of 3 and 1 tracks, genre 1 with one artist of 2 tracks."""
    artist_sizes = [n for genre in tracks_per_artist for n in genre]
    genre_of_artist = [g for g, genre in enumerate(tracks_per_artist) for _ in genre]
    track_artist = np.repeat(np.arange(len(artist_sizes)), artist_sizes).astype(np.int32)
    track_genre = np.asarray(genre_of_artist, np.int32)[track_artist]
    artist_bounds = np.r_[0, np.cumsum(artist_sizes)].astype(np.int64)
    genre_bounds = np.r_[0, np.cumsum([sum(genre) for genre in tracks_per_artist])].astype(np.int64)
    return dict(track_artist=track_artist, track_genre=track_genre, artist_bounds=artist_bounds,
                genre_bounds=genre_bounds)


def plays(rows: int, cat: dict, seed: int, session_prob: float = 0.2, on_mood_prob: float = 0.7):
    rng = np.random.default_rng(seed)
    tracks, genres = len(cat["track_artist"]), len(cat["genre_bounds"]) - 1
    new_session = rng.random(rows) < session_prob
    new_session[:1] = True
    session_mood = rng.integers(0, genres, rows)
    mood = session_mood[np.maximum.accumulate(np.where(new_session, np.arange(rows), 0))].astype(np.int64)
    # a fresh pick is a track of the mood genre, as toolkit/synth.py draws it
    lo, hi = cat["genre_bounds"][mood], cat["genre_bounds"][mood + 1]
    fresh = (lo + (rng.random(rows) * (hi - lo)).astype(np.int64)).astype(np.int64)
    return dict(new_session=new_session, on_mood=rng.random(rows) < on_mood_prob, skipped=rng.random(rows) < 0.3,
                mood=mood, fresh=fresh, off_taste=rng.integers(0, tracks, rows).astype(np.int64),
                u_action=rng.random(rows), u_pick=rng.random(rows))


def serve(p, cat, p_artist=0.35, p_near=0.3, radius=2):
    return serve_tracks(**p, **cat, p_artist=p_artist, p_near=p_near, radius=radius)


def reference(p, cat, p_artist=0.35, p_near=0.3, radius=2):
    return ref.serve_tracks(**p, **cat, p_artist=p_artist, p_near=p_near, radius=radius)


CATALOGUES = st.lists(st.lists(st.integers(1, 4), min_size=1, max_size=4), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(CATALOGUES, st.integers(0, 60), st.integers(0, 2**32 - 1), st.floats(0, 1), st.floats(0, 1),
       st.integers(1, 5))
def test_matches_reference(tracks_per_artist, rows, seed, a, b, radius):
    cat = layout(tracks_per_artist)
    p = plays(rows, cat, seed)
    p_artist, p_near = a * (1 - b), (1 - a) * b  # any pair summing to at most 1
    got = serve(p, cat, p_artist, p_near, radius)
    assert got.dtype == np.int64 and got.tolist() == reference(p, cat, p_artist, p_near, radius)


@settings(max_examples=60, deadline=None)
@given(CATALOGUES, st.integers(1, 60), st.integers(0, 2**32 - 1))
def test_off_mood_plays_and_session_openers_take_their_draws(tracks_per_artist, rows, seed):
    cat = layout(tracks_per_artist)
    p = plays(rows, cat, seed)
    got = serve(p, cat)
    assert np.array_equal(got[~p["on_mood"]], p["off_taste"][~p["on_mood"]])
    opener = p["new_session"] & p["on_mood"]  # no anchor yet: the fresh pick
    assert np.array_equal(got[opener], p["fresh"][opener])
    assert got.min() >= 0 and got.max() < len(cat["track_artist"])


def test_follows_the_anchor_artist_and_never_repeats_the_anchor():
    cat = layout([[3, 1]])  # artist 0: tracks 0..2, artist 1: track 3
    n = 4
    p = dict(new_session=np.array([True, False, False, False]), on_mood=np.ones(n, bool), skipped=np.zeros(n, bool),
             mood=np.zeros(n, np.int64), fresh=np.array([1, 3, 3, 3], np.int64), off_taste=np.zeros(n, np.int64),
             u_action=np.array([0.9, 0.1, 0.1, 0.1]), u_pick=np.array([0.0, 0.0, 0.5, 0.99]))
    # play 0 fresh (track 1, artist 0); then each time one of the artist's tracks other than the
    # anchor (the previous play), picked by u_pick: of (0, 2), (1, 2), (0, 1)
    assert serve(p, cat).tolist() == [1, 0, 2, 1]


def test_a_skipped_play_does_not_move_the_anchor_and_a_new_session_drops_it():
    cat = layout([[1, 1, 1, 1, 1]])  # one genre of five one-track artists: following means a neighbour
    n = 4
    p = dict(new_session=np.array([True, False, False, True]), on_mood=np.ones(n, bool),
             skipped=np.array([False, True, False, False]), mood=np.zeros(n, np.int64),
             fresh=np.array([2, 4, 4, 0], np.int64), off_taste=np.zeros(n, np.int64),
             u_action=np.array([0.9, 0.5, 0.5, 0.5]), u_pick=np.array([0.0, 0.99, 0.99, 0.0]))
    # radius 1: u_pick 0.99 steps +1.  Play 1 follows 2 -> 3 but is skipped, so play 2 follows 2 again;
    # play 3 opens a session: no anchor, the fresh pick 0
    assert serve(p, cat, p_artist=0.0, p_near=0.6, radius=1).tolist() == [2, 3, 3, 0]


def test_neighbours_wrap_inside_the_genre():
    cat = layout([[2], [3]])  # genre 1 holds tracks 2..4
    n = 2
    p = dict(new_session=np.array([True, False]), on_mood=np.ones(n, bool), skipped=np.zeros(n, bool),
             mood=np.ones(n, np.int64), fresh=np.array([4, 2], np.int64), off_taste=np.zeros(n, np.int64),
             u_action=np.array([0.9, 0.5]), u_pick=np.array([0.0, 0.99]))
    assert serve(p, cat, p_artist=0.0, p_near=0.6, radius=1).tolist() == [4, 2]  # 4 + 1 wraps to 2


@pytest.mark.parametrize("change, message", [
    (dict(fresh=np.zeros(3, np.int32)), "fresh must have dtype int64"),
    (dict(u_pick=np.ones(3)), "u_pick must lie in [0, 1)"),
    (dict(skipped=np.zeros(2, bool)), "skipped has 2 entries"),
    (dict(new_session=np.zeros(3, bool)), "new_session[0] must be True"),
    (dict(off_taste=np.full(3, 9, np.int64)), "off_taste must hold track indices"),
    (dict(mood=np.full(3, 5, np.int64)), "mood must hold genre indices"),
    (dict(p_artist=0.7, p_near=0.5), "p_artist + p_near <= 1"),
    (dict(radius=0), "radius must be > 0"),
    (dict(artist_bounds=np.array([0, 2, 2, 3], np.int64)), "artist_bounds must rise strictly"),
])
def test_rejects_bad_input(change, message):
    cat = layout([[2, 1]])
    args = {**plays(3, cat, 0), **cat, "p_artist": 0.3, "p_near": 0.3, "radius": 1, **change}
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        serve_tracks(**args)
