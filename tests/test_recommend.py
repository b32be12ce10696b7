"""``recommend`` reads the listener's earlier plays as evaluation does: successors, the listener's code."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

import toolkit
from tests.test_report import invoke, one_line_error
from toolkit.artifacts import Workspace


def _two_listeners() -> pl.DataFrame:
    # after "Hub", ann always plays "Ann's next" and bob "Bob's next"; everything else is filler
    rows, t0 = [], datetime(2024, 1, 1)
    for who, nxt in (("ann", "Ann's next"), ("bob", "Bob's next")):
        for s in range(14):
            start = t0 + timedelta(hours=3 * s)
            tracks = [f"Filler {s % 5}", "Hub", nxt, f"Filler {(s + 2) % 5}"]
            for p, title in enumerate(tracks):
                rows.append({"user_id": who, "ts": start + timedelta(minutes=4 * p), "track_id": title, "artist": "Band",
                             "track_name": title, "played_ms": 200_000, "duration_ms": 200_000})
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def repeat_run(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    ds = toolkit.prep(_two_listeners(), name="two", workspace=ws)
    return ws, toolkit.train(ds, model="repeat", successors=10, workspace=ws)


def test_recommend_reads_the_named_listeners_successors(repeat_run):
    ws, run = repeat_run
    top = {who: toolkit.recommend(run, [("Band", "Hub")], k=3, listener=who, workspace=ws)["title"][0]
           for who in ("ann", "bob")}
    assert top == {"ann": "Ann's next", "bob": "Bob's next"}
    frame = pl.DataFrame({"session": ["s1", "s2"], "track_key": [_key(ws, "Hub")] * 2, "listener": ["bob", "ann"]})
    recs = toolkit.recommend(run, frame, k=1, workspace=ws)
    assert dict(zip(recs["session"], recs["title"])) == {"s1": "Bob's next", "s2": "Ann's next"}


def test_recommend_without_a_listener_reads_the_session_alone_and_says_so(repeat_run, tmp_path):
    ws, run = repeat_run
    with pytest.warns(UserWarning, match="name no listener"):
        alone = toolkit.recommend(run, [("Band", "Hub")], k=3, workspace=ws)
    assert alone["title"][0] == "Hub"  # no successors: the session's own play comes first
    res = invoke("recommend", "--run", run.id, "--workspace", ws, "--artist", "Band", "--title", "Hub",
                 "--out", tmp_path / "r.parquet", "-k", 3)
    assert res.exit_code == 0 and "had no listener" in res.output
    res = invoke("recommend", "--run", run.id, "--workspace", ws, "--artist", "Band", "--title", "Hub",
                 "--listener", "ann", "--out", tmp_path / "r.parquet", "-k", 3)
    assert res.exit_code == 0 and "earlier plays of ann" in res.output and "Ann's next" in res.output
    one_line_error(invoke("recommend", "--run", run.id, "--workspace", ws, "--artist", "Band", "--title", "Hub",
                          "--listener", "carol", "--out", tmp_path / "r.parquet"), "listener 'carol'")


def test_a_network_with_successors_history_and_transitions_reads_the_listener(repeat_run):
    ws, _ = repeat_run
    run = toolkit.train("two", model="sasrec", successors=2, history=3, transitions=2, window=2, d_model=8, n_heads=1,
                        n_layers=1, epochs=1, batch_size=8, negatives=16, workspace=ws)
    recs = {who: toolkit.recommend(run, [("Band", "Hub")], k=5, listener=who, workspace=ws) for who in ("ann", "bob")}
    assert all(r.height == 5 for r in recs.values())
    assert recs["ann"]["score"].to_list() != recs["bob"]["score"].to_list()  # their pasts differ


def _key(ws, title: str) -> str:
    items = pl.read_parquet(Workspace.at(ws).dataset("two").items)
    return items.filter(pl.col("title") == title)["track_key"][0]
