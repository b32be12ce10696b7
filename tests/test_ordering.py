"""toolkit.ordering: the plays of a bucket put in listening order, checked against plain sorts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.ordering import LAST, Coder, listening_order


def _stream(rows: list[tuple], optional: bool = True) -> dict[str, np.ndarray]:
    """play_stream.sql columns as numpy, users and tracks coded, from (user_code, order_us,
    position_key, src_row) rows; track_code is the src_row, so the result's order can be read off it."""
    u, t, p, r = (np.array(c) for c in zip(*rows)) if rows else ([],) * 4
    cols = {"user_code": np.asarray(u, np.int32), "track_code": np.asarray(r, np.int32),
            "order_us": np.asarray(t, np.int64), "end_us": np.asarray(t, np.int64) + 5,
            "played": np.zeros(len(rows), np.int64), "duration": np.full(len(rows), -1, np.int64),
            "flag": np.zeros(len(rows), np.int8), "src_row": np.asarray(r, np.int64)}
    if optional:
        cols.update(start_us=np.asarray(t, np.int64) - 1, hint=np.asarray(r, np.int64) % 2,
                    position_key=np.asarray(p, np.int64))
    return cols

def test_listening_order_by_hand():
    """listening_order: user (by code), then order time, then the source's position
    (missing = LAST, so last), then source row; constant columns a format lacks come back filled."""
    rows = [(9, 50, LAST, 0), (2, 70, LAST, 1), (9, 10, LAST, 5), (9, 10, 1, 3), (9, 0, LAST, 4), (9, 10, 0, 2)]
    out = listening_order(_stream(rows))
    assert out["track_code"].tolist() == [1, 4, 2, 3, 5, 0] and out["user_code"].tolist() == [2, 9, 9, 9, 9, 9]
    assert out["order_us"].tolist() == [70, 0, 10, 10, 10, 50] and out["start_us"].tolist() == [69, -1, 9, 9, 9, 49]
    assert out["position"].tolist() == [-1, -1, 0, 1, -1, -1] and out["hint"].tolist() == [1, 0, 0, 1, 1, 0]
    bare = listening_order(_stream(rows, optional=False))  # no positions: ties by source row
    assert bare["track_code"].tolist() == [1, 4, 2, 3, 5, 0]
    assert bare["start_us"] is bare["order_us"] and set(bare["hint"]) == set(bare["position"]) == {-1}

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.sampled_from([0, 1, 2, np.iinfo(np.int64).max])),
                min_size=0, max_size=40), st.randoms())
def test_listening_order_matches_a_plain_sort(rows, rnd):
    """Whatever the input order, the result is Python's sort by (user code, order time, position
    key, source row): both the stable-by-user fast path and the full sort."""
    codes = [5, 11, 40, 90]  # a bucket's users need not start at code 0
    rows = [(codes[u], t, p, r) for r, (u, t, p) in enumerate(rows)]
    rnd.shuffle(rows)
    # shuffled; each user in file order; and in time order with users interleaved (a service's log,
    # which the stable sort by user takes without the full sort)
    for listed in (rows, sorted(rows, key=lambda x: (x[0], x[3])), sorted(rows, key=lambda x: (x[1], x[2], x[3]))):
        want = sorted(listed, key=lambda x: (x[0], x[1], x[2], x[3]))
        out = listening_order(_stream(listed))
        assert out["track_code"].tolist() == [r for *_, r in want]
        assert out["user_code"].tolist() == [u for u, *_ in want]

@pytest.mark.parametrize("overlap", [False, True])
def test_listening_order_of_long_runs(overlap):
    """Long runs of one user (the usual log) take the run-copy path; a user split into two runs
    whose times interleave needs the full sort.  Both must equal a plain sort."""
    rng = np.random.default_rng(1)
    blocks = [(7, np.arange(0, 400)), (3, np.arange(0, 300)), (8, np.arange(0, 200)),
              (7, np.arange(200, 600) if overlap else np.arange(400, 700))]
    rows, r = [], 0
    for user, times in blocks:
        for t in times:
            rows.append((user, int(t) * 10 + int(rng.integers(0, 2)), LAST, r))
            r += 1
    out = listening_order(_stream(rows))
    want = sorted(rows, key=lambda x: (x[0], x[1], x[2], x[3]))
    assert out["track_code"].tolist() == [x[3] for x in want]
    assert out["order_us"].tolist() == [x[1] for x in want]


def test_codes_are_rows_of_the_dictionary():
    table = np.array([70, 3, 15], np.uint64)  # the track dictionary's hashes, in key order
    codes = Coder(table, "track")(np.array([15, 70, 15, 3], np.uint64))
    assert codes.dtype == np.int32 and codes.tolist() == [2, 0, 2, 1]
    assert Coder(table, "track")(np.zeros(0, np.uint64)).dtype == np.int32
    with pytest.raises(RuntimeError, match="share a 64-bit hash"):
        Coder(np.array([3, 3], np.uint64), "track")


@pytest.mark.parametrize("span", [3, 2**15 + 5, 2**16 + 5])
def test_stable_places_by_listener_at_every_code_width(span):
    """The counting sort on a narrow range of codes and numpy's sort past it give the same stable order."""
    from toolkit.ordering import _placed, _stable_places

    codes = np.random.default_rng(span).integers(7, 7 + span, 5000).astype(np.int32)
    codes[:2] = 7, 7 + span - 1  # the whole range
    values = np.arange(len(codes)) * 3
    assert np.array_equal(_placed(values, _stable_places(codes)), values[np.argsort(codes, kind="stable")])


def test_a_coder_checks_its_table_once_and_names_what_disagrees():
    coder = Coder(np.array([70, 3, 15], np.uint64), "track")
    assert coder(np.array([15, 70, 3], np.uint64)).tolist() == [2, 0, 1]
    with pytest.raises(RuntimeError, match="track dictionary disagree"):
        coder(np.array([4], np.uint64))
    with pytest.raises(RuntimeError, match="two distinct user ids"):
        Coder(np.array([1, 1], np.uint64), "user")
