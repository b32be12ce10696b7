"""kernels.sessions.sessionize against the plain-Python reference, plus hand-picked cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from kernels.sessions import SOURCES, mark_duplicates, sessionize

S = 1_000_000  # microseconds per second


def arrays(user, start_s, end_s=None, hint=None, track=None, flag=None, played=None, duration=None):
    n = len(user)
    end_s = start_s if end_s is None else end_s
    return dict(
        user=np.asarray(user, np.int32), start_us=np.asarray(start_s, np.int64) * S,
        end_us=np.asarray(end_s, np.int64) * S, hint=np.asarray(hint or [-1] * n, np.int64),
        track=np.asarray(track or list(range(1, n + 1)), np.int32), flag=np.asarray(flag or [-1] * n, np.int8),
        played=np.asarray(played or [-1] * n, np.int64), duration=np.asarray(duration or [-1] * n, np.int64),
    )


def run(a, gap_s=1800, skip_ms=30_000, skip_ratio=None, collapse=False):
    return sessionize(**a, gap_s=gap_s, skip_ms=skip_ms, skip_ratio=skip_ratio, collapse_repeats=collapse)


def test_gap_exactly_at_the_threshold_stays_and_one_more_second_splits():
    a = arrays([0, 0, 0], [0, 1800, 3601])
    session, position, *_ = run(a)
    assert session.tolist() == [0, 0, 1] and position.tolist() == [0, 1, 0]


def test_pause_is_measured_from_the_previous_end():
    a = arrays([0, 0], [0, 2000], end_s=[300, 2300])
    assert run(a)[0].tolist() == [0, 0]  # 1700 s after the first play ended


def test_users_and_hints_always_start_sessions():
    a = arrays([0, 0, 1, 1], [0, 1, 2, 3], hint=[7, 8, 8, 8])
    assert run(a)[0].tolist() == [0, 1, 2, 2]


def test_skip_rules_in_order():
    a = arrays([0] * 5, [0, 10, 100, 400, 405], flag=[1, -1, -1, -1, -1], played=[999_999, 5_000, -1, -1, -1],
               duration=[-1, 200_000, -1, -1, -1])
    _, _, is_skip, source, _ = run(a)
    # explicit flag wins; played rule; gap rule (300 s to the next play: kept); gap rule (5 s: skip); last: unknown
    assert is_skip.tolist() == [1, 1, 0, 1, 0]
    assert source.tolist() == [0, 2, 3, 3, 4]
    _, _, is_skip, source, _ = run(a, skip_ratio=0.5)
    assert source.tolist()[1] == 1 and is_skip.tolist()[1] == 1


def test_skip_thresholds_are_strict():
    # 29 s / 30 s to the next play (gap rule), then 29_999 / 30_000 ms played (played rule): below is a skip
    a = arrays([0] * 5, [0, 29, 59, 100, 200], played=[-1, -1, -1, 29_999, 30_000])
    _, _, is_skip, source, _ = run(a)
    assert is_skip.tolist() == [1, 0, 0, 1, 0]
    assert source.tolist() == [3, 3, 3, 2, 2]


def test_end_reason_comes_after_the_flag_and_before_the_played_time():
    # flag 3 / 2: the end reason says skipped / kept, whatever the played time says
    a = arrays([0] * 4, [0, 10, 20, 30], flag=[3, 2, 1, -1], played=[999_999, 1_000, 999_999, 1_000])
    _, _, is_skip, source, _ = run(a, skip_ratio=0.5)
    assert is_skip.tolist() == [1, 0, 1, 1]
    assert source.tolist() == [5, 5, 0, 2]
    assert [SOURCES[s] for s in source.tolist()] == ["reason", "reason", "explicit", "played_ms"]


def test_flag_outside_its_codes_is_refused():
    with pytest.raises(ValueError, match="end reason"):
        run(arrays([0, 0], [0, 1], flag=[1, 4]))


def test_all_skip_session_and_repeats():
    a = arrays([0, 0, 0, 0], [0, 5, 10, 15], track=[3, 3, 4, 3], played=[1000, 1000, 2000, 500])
    _, _, is_skip, _, repeat = run(a, collapse=True)
    assert is_skip.tolist() == [1, 1, 1, 1]
    assert repeat.tolist() == [False, True, False, False]
    assert run(a)[4].tolist() == [False] * 4


def test_empty_input():
    out = run(arrays([], []))
    assert all(len(x) == 0 for x in out)


def test_unsorted_users_are_refused():
    with pytest.raises(ValueError, match="sort plays"):
        run(arrays([1, 0], [0, 1]))


def test_wrong_dtype_says_how_to_fix():
    a = arrays([0], [0])
    a["user"] = a["user"].astype(np.int64)
    with pytest.raises(TypeError, match="astype"):
        run(a)


@st.composite
def plays(draw):
    n = draw(st.integers(0, 30))
    user = sorted(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    # the thresholds' edges (30 s skip gap; 600 / 1800 s session gaps) next to arbitrary steps
    edges = st.sampled_from([0, 29, 30, 31, 599, 600, 601, 1799, 1800, 1801])
    steps = draw(st.lists(st.one_of(edges, st.integers(0, 4000)), min_size=n, max_size=n))
    start = np.cumsum(steps).tolist()
    length = draw(st.lists(st.one_of(st.just(0), st.integers(0, 400)), min_size=n, max_size=n))
    maybe = lambda values: draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))  # noqa: E731
    return arrays(user, start, end_s=[s + d for s, d in zip(start, length)], hint=maybe([-1, -1, 5, 6]),
                  track=maybe([1, 2, 3]), flag=maybe([-1, -1, 0, 1, 2, 3]),
                  played=maybe([-1, 0, 29_999, 30_000, 90_000]),
                  duration=maybe([-1, 60_000, 200_000]))


@settings(max_examples=300, deadline=None)
@given(plays(), st.sampled_from([None, 0.5]), st.booleans(), st.sampled_from([1, 600, 1800]))
def test_kernel_matches_reference(a, ratio, collapse, gap):
    got = run(a, gap_s=gap, skip_ratio=ratio, collapse=collapse)
    want = reference.sessionize(**{k: v.tolist() for k, v in a.items()}, gap_s=gap, skip_ms=30_000,
                                skip_ratio=ratio, collapse_repeats=collapse)
    for g, w in zip(got, want):
        assert g.tolist() == list(w)


def dup_arrays(rows):
    cols = list(zip(*rows)) if rows else [[]] * 6
    dtypes = (np.int32, np.int64, np.int64, np.int32, np.int64, np.int64)
    return [np.asarray(c, dt) for c, dt in zip(cols, dtypes)]


def test_duplicates_interleaved_with_other_plays_of_the_same_time():
    # (user, order, start, track, played, position); rows 0 and 2 are copies with row 1 between them
    rows = [(0, 5, 5, 1, 100, -1), (0, 5, 5, 2, 100, -1), (0, 5, 5, 1, 100, -1), (0, 6, 6, 1, 100, -1),
            (1, 5, 5, 1, 100, -1), (1, 5, 5, 1, 100, 3)]
    assert mark_duplicates(*dup_arrays(rows)).tolist() == [False, False, True, False, False, False]


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2), st.integers(0, 1), st.integers(1, 2),
                          st.integers(0, 1), st.integers(-1, 0)), max_size=25))
def test_duplicates_match_reference(rows):
    rows = sorted(rows, key=lambda r: (r[0], r[1]))  # the stream is sorted by user, then order time
    arrays_ = dup_arrays([(u, o, o + s, t, p, q) for u, o, s, t, p, q in rows])
    assert mark_duplicates(*arrays_).tolist() == reference.mark_duplicates(*[a.tolist() for a in arrays_])
