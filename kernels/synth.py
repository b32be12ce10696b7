"""Serve the tracks of a synthetic log in order: the one step of ``toolkit/synth.py`` that carries
state from play to play (the session's anchor), so it cannot be vectorised.

Layout (see ``toolkit/synth.py``): tracks ``0..tracks-1`` are laid out genre by genre and artist by
artist, so ``artist_bounds[a]:artist_bounds[a + 1]`` are the tracks of artist ``a`` and
``genre_bounds[g]:genre_bounds[g + 1]`` those of genre ``g``.  Everything random arrives drawn
already (one value per play), so the kernel holds no generator and the output depends on its
arguments alone.
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit
from kernels.checks import check_array, check_positive_int


def serve_tracks(
    new_session: np.ndarray,
    on_mood: np.ndarray,
    skipped: np.ndarray,
    mood: np.ndarray,
    fresh: np.ndarray,
    off_taste: np.ndarray,
    u_action: np.ndarray,
    u_pick: np.ndarray,
    track_artist: np.ndarray,
    track_genre: np.ndarray,
    artist_bounds: np.ndarray,
    genre_bounds: np.ndarray,
    p_artist: float,
    p_near: float,
    radius: int,
) -> np.ndarray:
    """The track of every play; the anchor is the session's latest kept play of its mood genre.

    Parameters
    ----------
    new_session : bool[rows], True where a play opens a session (row 0 must).
    on_mood : bool[rows], the play is served from the session's mood genre.
    skipped : bool[rows], the planted skip label.
    mood : int64[rows], the session's mood genre.
    fresh : int64[rows], the track an on-mood play takes when it does not follow the anchor.
    off_taste : int64[rows], the track an off-mood play takes.
    u_action, u_pick : float64[rows] in [0, 1): which follow rule applies, and which track it picks.
    track_artist, track_genre : int32[tracks], non-decreasing (the layout).
    artist_bounds : int64[artists + 1], genre_bounds : int64[genres + 1], CSR bounds of the layout.
    p_artist, p_near : probabilities of following the anchor's artist / a neighbour of it.
    radius : a neighbour lies 1..radius places from the anchor, wrapping inside its genre.

    Returns
    -------
    int64[rows]: track (layout index) per play.  An on-mood play with an anchor takes another
    track by the anchor's artist when ``u_action < p_artist`` and the artist has one, a neighbour
    when ``u_action < p_artist + p_near``, else ``fresh``.  Skipped and off-genre plays never
    move the anchor.
    """
    rows = len(new_session)
    for name, arr in {"new_session": new_session, "on_mood": on_mood, "skipped": skipped}.items():
        check_array(name, arr, np.bool_, 1)
    for name, arr in {"mood": mood, "fresh": fresh, "off_taste": off_taste}.items():
        check_array(name, arr, np.int64, 1)
    for name, arr in {"u_action": u_action, "u_pick": u_pick}.items():
        check_array(name, arr, np.float64, 1)
        if rows and (arr.min() < 0.0 or arr.max() >= 1.0):
            raise ValueError(f"{name} must lie in [0, 1); draw it with rng.random(rows)")
    for name, arr in {"on_mood": on_mood, "skipped": skipped, "mood": mood, "fresh": fresh, "off_taste": off_taste,
                      "u_action": u_action, "u_pick": u_pick}.items():
        if len(arr) != rows:
            raise ValueError(f"{name} has {len(arr)} entries but new_session has {rows}; pass one value per play")
    if rows and not new_session[0]:
        raise ValueError("new_session[0] must be True: the first play opens a session")
    check_array("track_artist", track_artist, np.int32, 1)
    check_array("track_genre", track_genre, np.int32, 1)
    tracks = len(track_artist)
    if len(track_genre) != tracks or tracks == 0:
        raise ValueError(f"track_artist and track_genre must both hold one entry per track, got {tracks} and "
                         f"{len(track_genre)}")
    for name, bounds, owner in (("artist_bounds", artist_bounds, track_artist),
                                ("genre_bounds", genre_bounds, track_genre)):
        check_array(name, bounds, np.int64, 1)
        if len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != tracks or np.any(np.diff(bounds) <= 0):
            raise ValueError(f"{name} must rise strictly from 0 to the {tracks} tracks (every group non-empty)")
        if np.any(np.searchsorted(bounds, np.arange(tracks), side="right") - 1 != owner):
            raise ValueError(f"{name} disagrees with the track layout; lay tracks out group by group")
    for name, arr in {"fresh": fresh, "off_taste": off_taste}.items():
        if rows and (arr.min() < 0 or arr.max() >= tracks):
            raise ValueError(f"{name} must hold track indices 0..{tracks - 1}")
    if rows and (mood.min() < 0 or mood.max() >= len(genre_bounds) - 1):
        raise ValueError(f"mood must hold genre indices 0..{len(genre_bounds) - 2}")
    if not (0.0 <= p_artist and 0.0 <= p_near and p_artist + p_near <= 1.0):
        raise ValueError(f"need p_artist, p_near >= 0 with p_artist + p_near <= 1, got {p_artist} and {p_near}")
    radius = check_positive_int("radius", radius)
    out = np.empty(rows, dtype=np.int64)
    _serve_tracks_kernel(new_session, on_mood, skipped, mood, fresh, off_taste, u_action, u_pick, track_artist,
                         track_genre, artist_bounds, genre_bounds, float(p_artist), float(p_near), radius, out)
    return out


@njit
def _serve_tracks_kernel(new_session, on_mood, skipped, mood, fresh, off_taste, u_action, u_pick, track_artist,
                         track_genre, artist_bounds, genre_bounds, p_artist, p_near, radius, out):
    anchor = -1
    for i in range(len(out)):
        if new_session[i]:
            anchor = -1
        if not on_mood[i]:
            t = off_taste[i]
        elif anchor < 0 or u_action[i] >= p_artist + p_near:
            t = fresh[i]
        else:
            a = track_artist[anchor]
            lo, hi = artist_bounds[a], artist_bounds[a + 1]
            if u_action[i] < p_artist and hi - lo > 1:
                # Another track by the same artist, never the anchor itself.
                t = lo + int(u_pick[i] * (hi - lo - 1))
                t += t >= anchor
            else:
                g = track_genre[anchor]
                glo, size = genre_bounds[g], genre_bounds[g + 1] - genre_bounds[g]
                k = int(u_pick[i] * 2 * radius)
                step = k - radius if k < radius else k - radius + 1
                t = glo + (anchor - glo + step) % size
        out[i] = t
        # Skipped and off-mood plays never move the anchor: that is the planted signal.
        if not skipped[i] and track_genre[t] == mood[i]:
            anchor = t
