"""synth(): exact size, schema, determinism, session timing, skip labels and the planted signal."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from toolkit.errors import ConfigError
from toolkit.synth import SCHEMA, SynthConfig, synth

SMALL = SynthConfig(users=60, plays=20_000, tracks=800, artists=120, genres=8, seed=3,
                    days=60, chunk_rows=4_000)
EXPECTED_SCHEMA = {
    "user_id": pl.String,
    "ts": pl.Datetime("us", "UTC"),
    "track_id": pl.String,
    "artist": pl.String,
    "track_name": pl.String,
    "genre": pl.String,
    "played_ms": pl.Int64,
    "duration_ms": pl.Int64,
}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict, list[int]]:
    out = tmp_path_factory.mktemp("synth") / "plays.parquet"
    calls: list[int] = []
    summary = synth(out, SMALL, progress=calls.append)
    return out, summary, calls


@pytest.fixture(scope="module")
def sessioned(small) -> pl.DataFrame:
    """Plays in file order with the gap to the previous play's end and a 30-minute session id."""
    out, _, _ = small
    return (
        pl.read_parquet(out)
        .with_row_index("row")
        .with_columns(
            end=pl.col("ts") + pl.duration(milliseconds=pl.col("played_ms")),
            skip=pl.col("played_ms") < 30_000,
        )
        .with_columns(gap_s=(pl.col("ts") - pl.col("end").shift(1).over("user_id"))
                      .dt.total_microseconds() / 1e6)
        .with_columns(session=(pl.col("gap_s").is_null() | (pl.col("gap_s") > 1800)).cum_sum())
    )


def test_exact_row_count_and_summary(small):
    out, summary, _ = small
    assert pq.ParquetFile(out).metadata.num_rows == SMALL.plays
    assert summary.rows == SMALL.plays
    assert summary.users == SMALL.users
    assert summary.path == str(out)
    df = pl.read_parquet(out)
    assert summary.tracks == df["track_id"].n_unique()
    assert df["user_id"].n_unique() == SMALL.users


def test_columns_and_types(small):
    out, _, _ = small
    assert pq.read_schema(out).remove_metadata() == SCHEMA
    assert pl.read_parquet_schema(out) == EXPECTED_SCHEMA


def test_same_seed_same_bytes_other_seed_differs(tmp_path, small):
    out, _, _ = small
    again = tmp_path / "again.parquet"
    synth(again, SMALL)
    assert again.read_bytes() == out.read_bytes()
    other = tmp_path / "other.parquet"
    synth(other, SynthConfig(**{**SMALL.__dict__, "seed": SMALL.seed + 1}))
    with pytest.raises(AssertionError):
        assert_frame_equal(pl.read_parquet(other), pl.read_parquet(out))


def test_timestamps_strictly_increase_per_user(sessioned):
    step = sessioned.select(pl.col("ts").diff().over("user_id").alias("step"))["step"]
    assert (step.drop_nulls() > timedelta(0)).all()
    users = sessioned["user_id"]
    # Each user's rows are contiguous: the user changes exactly n_users times.
    assert users.ne_missing(users.shift(1)).sum() == users.n_unique()


def test_session_gaps_are_unambiguous(small, sessioned):
    _, summary, _ = small
    gaps = sessioned["gap_s"].drop_nulls()
    within = gaps.filter(gaps <= 1800)
    between = gaps.filter(gaps > 1800)
    assert within.max() <= SMALL.pause_max_s
    assert between.min() >= SMALL.min_gap_s
    assert sessioned["session"].n_unique() == summary.sessions
    assert sessioned.group_by("session").len()["len"].max() <= SMALL.session_cap


def test_log_fills_the_window(sessioned):
    first = datetime.fromisoformat(SMALL.start).replace(tzinfo=timezone.utc)
    assert sessioned["ts"].min() >= first
    assert sessioned["end"].max() <= first + timedelta(days=SMALL.days)


def test_played_ms_encodes_the_skip_label(small, sessioned):
    _, summary, _ = small
    skipped = sessioned.filter(pl.col("skip"))
    kept = sessioned.filter(~pl.col("skip"))
    assert skipped["played_ms"].min() >= 1_000 and skipped["played_ms"].max() <= 25_000
    assert (kept["played_ms"] <= kept["duration_ms"]).all()
    assert (kept["played_ms"] >= 0.6 * kept["duration_ms"]).all()
    assert 0.25 <= summary.skip_share <= 0.40
    assert summary.skip_share == pytest.approx(len(skipped) / len(sessioned))
    assert sessioned["duration_ms"].is_between(90_000, 600_000).all()


def test_planted_signal_skips_are_off_mood(sessioned):
    majority = (
        sessioned.filter(~pl.col("skip"))
        .group_by("session", "genre").len()
        .sort("len", "genre", descending=True)
        .group_by("session").first()
        .select("session", mood="genre")
    )
    match = (
        sessioned.join(majority, on="session", how="inner")
        .group_by("skip").agg((pl.col("genre") == pl.col("mood")).mean().alias("share"))
    )
    share = dict(zip(match["skip"], match["share"]))
    assert share[False] > 0.75
    assert share[False] - share[True] > 0.3


def test_planted_signal_artist_continuity(sessioned):
    kept = sessioned.filter(~pl.col("skip")).with_columns(
        prev_artist=pl.col("artist").shift(1).over("session")
    ).drop_nulls("prev_artist")
    assert (kept["artist"] == kept["prev_artist"]).mean() > 0.3


def test_progress_and_atomic_write(small):
    out, summary, calls = small
    assert len(calls) > 1, "chunk_rows is small, so several chunks are written"
    assert calls == sorted(calls) and calls[-1] == summary.rows
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_failed_write_leaves_nothing(tmp_path):
    def boom(_rows: int) -> None:
        raise RuntimeError("stop")

    out = tmp_path / "sub" / "plays.parquet"
    with pytest.raises(RuntimeError):
        synth(out, SynthConfig(users=5, plays=500, tracks=50, artists=10, genres=3), progress=boom)
    assert list(out.parent.iterdir()) == []


def test_fewer_plays_than_users(tmp_path):
    out = tmp_path / "p.parquet"
    summary = synth(out, SynthConfig(users=40, plays=7, tracks=50, artists=10, genres=3))
    assert summary.rows == 7 == pl.read_parquet(out).height
    assert summary.users <= 7


def test_zero_plays_writes_an_empty_file(tmp_path):
    out = tmp_path / "p.parquet"
    summary = synth(out, SynthConfig(plays=0, tracks=50, artists=10, genres=3))
    assert summary.rows == 0 and summary.skip_share == 0.0
    assert pl.read_parquet(out).schema == EXPECTED_SCHEMA


@pytest.mark.parametrize("bad", [
    {"genres": 20, "artists": 10},
    {"min_gap_s": 1800},
    {"on_mood_prob": 1.5},
    {"follow_artist_prob": 0.7, "follow_near_prob": 0.5},
    {"users": 0},
    {"start": "first of May"},
    {"seed": -1},
])
def test_bad_config_is_rejected(bad):
    with pytest.raises(ConfigError):
        SynthConfig(**bad)
