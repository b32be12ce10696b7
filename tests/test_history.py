"""The listener's history before each row: a plain-Python reference, a property test, no future."""

from __future__ import annotations

import math
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.history import (ListenerOrder, SuccessorLinks, prefix_context, row_history, row_listener,
                             row_successors)
from toolkit.schema import PAD


def _log(draw_sessions: list[tuple[int | None, list[int], list[int]]]) -> pl.DataFrame:
    """Events of sessions (user or None, items, skips), each user's sessions an hour apart in list order."""
    rows, clock = [], {}
    for s, (user, items, skips) in enumerate(draw_sessions):
        t = clock.get(user, datetime(2020, 1, 1) + timedelta(days=(user or 0)))
        for p, (i, k) in enumerate(zip(items, skips)):
            rows.append({"session_idx": s, "position": p, "user_id": None if user is None else f"u{user}",
                         "item_id": i, "ts": t + timedelta(minutes=p // 2), "is_skip": k})  # ties at the minute
        clock[user] = t + timedelta(hours=2)
    return pl.DataFrame(rows, schema={"session_idx": pl.Int64, "position": pl.Int32, "user_id": pl.String,
                                      "item_id": pl.Int32, "ts": pl.Datetime("us"), "is_skip": pl.Int8})


def _rows(sessions: list[int], lengths: dict[int, int], width: int) -> np.ndarray:
    return np.array([s for s in sessions for _ in range(math.ceil(lengths[s] / width))], np.int64)


def _reference(ev: pl.DataFrame, rows: np.ndarray, width: int, length: int):
    """Row by row: the user's plays that came before the row's window, in time order, the last ``length``."""
    plays = ev.sort("user_id", "ts", "session_idx", "position").to_dicts()
    items = np.full((len(rows), length), PAD, np.int32)
    skips = np.zeros((len(rows), length), np.int8)
    for r, s in enumerate(rows):
        mine = [p for p in plays if p["session_idx"] == s]
        later_rows = sum(1 for q in rows[r + 1:] if q == s)
        start = max(len(mine) - (later_rows + 1) * width, 0)
        user, first = mine[0]["user_id"], mine[start]
        before = []
        for p in plays:
            if p is first:
                break
            if p["user_id"] == user and (user is not None or p["session_idx"] == s):
                before.append(p)
        for c, p in enumerate(before[max(len(before) - length, 0):][::-1] if length else []):
            items[r, length - 1 - c], skips[r, length - 1 - c] = p["item_id"], p["is_skip"]
    return items, skips


sessions_st = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(0, 2)),
              st.integers(1, 9).flatmap(lambda n: st.tuples(st.lists(st.integers(1, 20), min_size=n, max_size=n),
                                                            st.lists(st.integers(0, 1), min_size=n, max_size=n)))),
    min_size=1, max_size=8,
)


@given(sessions_st, st.integers(1, 4), st.integers(0, 6), st.data())
def test_row_history_matches_the_reference(drawn, width, length, data):
    ev = _log([(u, items, skips) for u, (items, skips) in drawn])
    lengths = {s: len(items) for s, (_, (items, _)) in enumerate(drawn)}
    chosen = data.draw(st.lists(st.sampled_from(sorted(lengths)), unique=True, min_size=1).map(sorted))
    rows = _rows(chosen, lengths, width)
    got = row_history(ListenerOrder(ev), rows, width, length)
    want = _reference(ev, rows, width, length)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_history_holds_only_the_listeners_past():
    # u0: session 0 then 2; u1: session 1 (a different listener, never read by u0); session 3 unknown listener
    ev = _log([(0, [1, 2, 3], [0, 1, 0]), (1, [7, 8], [0, 0]), (0, [4, 5, 6, 9, 10], [0, 0, 1, 0, 0]),
               (None, [11, 12], [0, 0])])
    rows = _rows([0, 1, 2, 3], {0: 3, 1: 2, 2: 5, 3: 2}, width=3)  # session 2 has two rows: [4, 5] and [6, 9, 10]
    items, skips = row_history(ListenerOrder(ev), rows, width=3, length=4)
    assert items.tolist() == [
        [0, 0, 0, 0],  # session 0: the listener's first
        [0, 0, 0, 0],  # session 1: u1's first; u0's plays are someone else's
        [0, 1, 2, 3],  # session 2, first row: u0's session 0
        [2, 3, 4, 5],  # its second row: the session's own earlier plays too, nothing of the row itself
        [0, 0, 0, 0],  # no listener: its own earlier plays only, and this is its first row
    ]
    assert skips.tolist()[2] == [0, 0, 1, 0]
    with pytest.raises(ValueError, match="not in the events"):
        row_history(ListenerOrder(ev), np.array([9]), width=3, length=2)


def _successors_reference(ev: pl.DataFrame, rows: np.ndarray, width: int, k: int, w: int = 0) -> np.ndarray:
    """Column by column: walk the listener's plays before this one, newest first, and collect what
    followed each earlier play of the same track; with ``w``, then the w plays after each of those,
    as far as the play itself."""
    plays = ev.sort("user_id", "ts", "session_idx", "position").to_dicts()
    out = np.full((len(rows), width, k * (1 + w)), PAD, np.int32)
    for r, s in enumerate(rows):
        mine = [i for i, p in enumerate(plays) if p["session_idx"] == s]
        later_rows = sum(1 for q in rows[r + 1:] if q == s)
        end = len(mine) - later_rows * width
        window = mine[max(end - width, 0):end]
        for c, i in enumerate(window):
            col = width - len(window) + c
            me = plays[i]
            found = []
            for j in range(i - 1, -1, -1):
                p = plays[j]
                same_listener = p["user_id"] == me["user_id"] and (me["user_id"] is not None or p["session_idx"] == s)
                if same_listener and p["item_id"] == me["item_id"] and len(found) < k:
                    out[r, col, k + len(found) * w:k + (len(found) + 1) * w] = [
                        plays[j + o]["item_id"] if j + o <= i else PAD for o in range(2, w + 2)]
                    found.append(plays[j + 1]["item_id"])
            out[r, col, :len(found)] = found
    return out


@given(sessions_st, st.integers(1, 4), st.integers(0, 3), st.integers(0, 3), st.data())
def test_row_successors_match_the_reference(drawn, width, k, w, data):
    ev = _log([(u, items, skips) for u, (items, skips) in drawn])
    lengths = {s: len(items) for s, (_, (items, _)) in enumerate(drawn)}
    chosen = data.draw(st.lists(st.sampled_from(sorted(lengths)), unique=True, min_size=1).map(sorted))
    rows = _rows(chosen, lengths, width)
    assert np.array_equal(row_successors(ListenerOrder(ev), rows, width, k, w), _successors_reference(ev, rows, width, k, w))


@settings(max_examples=40, deadline=None)
@given(sessions_st, st.integers(1, 4), st.integers(0, 3), st.integers(0, 2), st.data())
def test_successor_links_read_what_row_successors_hold(drawn, width, k, w, data):
    """The links (DuckDB over events.parquet, read a batch of rows at a time) give the whole split's
    successors of the same rows, for any batch of them."""
    ev = _log([(u, items, skips) for u, (items, skips) in drawn])
    lengths = {s: len(items) for s, (_, (items, _)) in enumerate(drawn)}
    chosen = data.draw(st.lists(st.sampled_from(sorted(lengths)), unique=True, min_size=1).map(sorted))
    rows = _rows(chosen, lengths, width)
    batch = np.array(sorted(data.draw(st.sets(st.integers(0, len(rows) - 1), min_size=1))), np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.parquet"
        ev.write_parquet(events, row_group_size=7)  # several row groups, as a large log has
        links = SuccessorLinks(events, Path(tmp) / "scratch", window=w > 0)
        assert not list((Path(tmp) / "scratch").iterdir())  # nothing left behind
        got = links.rows(rows, batch, width, k, w)
    assert np.array_equal(got, row_successors(ListenerOrder(ev), rows, width, k, w)[batch])


def test_successor_links_clear_the_scratch_of_a_killed_build_only(tmp_path):
    """A build killed before it removed its scratch folder leaves it behind; the next build removes
    it, and never the folder of a build still running."""
    import os
    import subprocess
    import sys

    from toolkit.history import LINKS_PREFIX

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / "scratch" / f"{LINKS_PREFIX}{int(gone.stdout)}-abc"
    alive = tmp_path / "scratch" / f"{LINKS_PREFIX}{os.getppid()}-def"
    for folder in (dead, alive):
        (folder / "spill").mkdir(parents=True)
        (folder / "prev.npy").write_bytes(b"half written")
    events = tmp_path / "events.parquet"
    _log([(0, [1, 2, 1], [0, 0, 0])]).write_parquet(events)
    SuccessorLinks(events, tmp_path / "scratch")
    assert not dead.exists() and (alive / "prev.npy").exists()


def test_windows_read_on_after_the_successors_and_stop_at_the_play():
    # u0 plays 1 2 3 4, then later 7 8 7 9 1 5
    ev = _log([(0, [1, 2, 3, 4], [0] * 4), (0, [7, 8, 7, 9, 1, 5], [0] * 6)])
    succ = row_successors(ListenerOrder(ev), np.array([1]), width=6, k=1, window=2)
    # at the second 7: its successor last time was 8, then came the 7 itself; the play after it (9)
    # is later than the query, so it is not read
    assert succ[0, 2].tolist() == [8, 7, 0]
    # at the 1: the 2 that followed it last time, then 3 and 4
    assert succ[0, 4].tolist() == [2, 3, 4]
    assert succ[0, 0].tolist() == [0, 0, 0]  # a new track: nothing
    events = _log([(0, [1, 2, 3, 4], [0] * 4), (0, [7, 8, 7, 9, 1, 5], [0] * 6)])
    with tempfile.TemporaryDirectory() as tmp:
        events.write_parquet(Path(tmp) / "events.parquet")
        with pytest.raises(ValueError, match="window=True"):
            SuccessorLinks(Path(tmp) / "events.parquet", Path(tmp) / "scratch").rows(np.array([1]), np.array([0]), 6, 1, 2)


def test_successors_come_from_the_listeners_past_only():
    # u0 plays 1 2 3, then later 1 4 1 5; u1 plays 1 9 (someone else's successor of 1)
    ev = _log([(0, [1, 2, 3], [0, 0, 0]), (1, [1, 9], [0, 0]), (0, [1, 4, 1, 5], [0, 0, 0, 0])])
    succ = row_successors(ListenerOrder(ev), np.array([2]), width=4, k=2)
    # at the first 1 of session 2 only session 0 knew what follows 1 (2); at the second 1 also the 4
    # just played; at 4 and 5 nothing (never heard before); 9 (u1's) never appears
    assert succ[0].tolist() == [[2, 0], [0, 0], [4, 2], [0, 0]]


@given(sessions_st, st.integers(1, 9).flatmap(
    lambda n: st.tuples(st.lists(st.integers(1, 20), min_size=n, max_size=n),
                        st.lists(st.integers(0, 1), min_size=n, max_size=n))),
       st.integers(1, 4), st.integers(0, 5), st.integers(0, 3), st.sampled_from([0, 1, None]), st.integers(0, 2))
def test_prefix_context_reads_what_a_session_after_the_listeners_plays_reads(drawn, prefix, width, length, k, who, w):
    # recommend's context of a new session is the evaluation's context of that session appended to the log
    ev = _log([(u, items, skips) for u, (items, skips) in drawn] + [(who, *prefix)])
    order = ListenerOrder(ev)
    last = len(drawn)  # the prefix's session
    rows = _rows([last], {last: len(prefix[0])}, width)[-1:]  # its last row: the query's
    before = ListenerOrder(_log([(u, items, skips) for u, (items, skips) in drawn]))
    span = before.listener_plays(f"u{who}") if who is not None else None
    past = (before.items[span[0]], before.skips[span[0]]) if span else (np.zeros(0, np.int32), np.zeros(0, np.int8))
    hist, hist_skips, succ = prefix_context(*past, np.array(prefix[0]), np.array(prefix[1]), width, length, k, w)
    want_items, want_skips = row_history(order, rows, width, length)
    assert hist.tolist() == want_items[0].tolist() and hist_skips.tolist() == want_skips[0].tolist()
    assert succ.tolist() == row_successors(order, rows, width, k, w)[0].tolist()
    if span:  # the listener's code is the one the transition term was trained with
        assert span[1] == row_listener(order, rows, width)[0]


def test_listener_plays_and_codes():
    ev = _log([(1, [5, 6], [0, 1]), (None, [7], [0]), (0, [1, 2], [0, 0]), (1, [3], [0])])
    order = ListenerOrder(ev)
    assert order.listener_names == ["u0", "u1"] and order.n_blocks == 3
    span, code = order.listener_plays("u1")
    assert order.items[span].tolist() == [5, 6, 3] and order.skips[span].tolist() == [0, 1, 0] and code == 1
    assert order.listener_plays("u0")[1] == 0 and order.listener_plays("nobody") is None


def test_a_loaded_split_reads_successors_a_batch_at_a_time(tmp_path):
    """load_split's successors equal the whole split's, with history columns (PAD there) and without."""
    from toolkit.artifacts import Workspace, read_frame
    from toolkit.config import PrepConfig
    from toolkit.data import LazySuccessors, load_split, to_batch
    from toolkit.prep import prep

    ws = Workspace.at(tmp_path / "ws")
    prep([Path(__file__).parent / "data" / "pinned_log.parquet"], ws, PrepConfig(name="p", max_len=4))
    ds = ws.dataset("p")
    a = load_split(ds, "train", history=2, successors=3)
    assert isinstance(a.succ, LazySuccessors) and a.succ.shape == (len(a), 6, 3)
    order = ListenerOrder(read_frame(ds.events, columns=["session_idx", "position", "user_id", "item_id", "ts", "is_skip"]))
    whole = row_successors(order, np.asarray(a.row_session), 4, 3)
    assert whole.any()  # the log's listeners come back to tracks, so there is something to read
    idx = np.arange(0, len(a), 3)
    assert np.array_equal(a.succ[idx], np.concatenate([np.zeros((len(idx), 2, 3), np.int32), whole[idx]], axis=1))
    assert np.array_equal(a.session_part().succ[idx], whole[idx])
    assert np.array_equal(to_batch(a, idx, torch.device("cpu"))["succ"].numpy(), a.succ[idx])
    with pytest.raises(IndexError):
        a.succ[:, 1:]
