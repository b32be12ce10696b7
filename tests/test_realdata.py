"""prep --format auto on every real log in ../shared/data/raw (skipped where it is absent).

The expected numbers come from each folder's SOURCE.md (row counts, skip labels, formats); the
rest are plausibility bands, since these are other people's listening histories.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.artifacts import Workspace
from toolkit.config import PrepConfig
from toolkit.prep import prep

pytestmark = pytest.mark.realdata


def run(raw_data, tmp_path, rel: str, **options):
    path = raw_data / rel
    if not path.exists():
        pytest.skip(f"{path} not present")
    m = prep([path], Workspace.at(tmp_path / "ws"), PrepConfig(**options)).manifest
    assert m.rows_in == m.rows_kept + sum(m.rows_dropped.values())
    assert all(s.sessions > 0 for s in m.splits.values()), m.splits
    return m


def test_spotify_account_data_all_users(raw_data, tmp_path):
    m = run(raw_data, tmp_path, "spotify-streaming-history")
    assert m.format == "spotify"
    users = sorted(p.name for p in (raw_data / "spotify-streaming-history").iterdir() if p.is_dir())
    assert m.users == len(users)
    assert m.rows_in > 1_000_000
    assert 0.2 < m.skip_share < 0.5  # SOURCE.md: 4 % to 71 % of plays under 30 s per user
    assert m.skip_rule.plays_by_rule == {"played_ms": m.rows_kept}
    assert 5 <= m.median_session_len <= 40


def test_spotify_one_listener_zip(raw_data, tmp_path):
    m = run(raw_data, tmp_path, "spotify-streaming-history/user_a/my_spotify_data.zip")
    assert m.users == 1 and m.rows_in == 38_403  # SOURCE.md: user_a has 38,403 plays


def test_spotify_extended_uses_the_explicit_flag(raw_data, tmp_path):
    m = run(raw_data, tmp_path, "spotify-extended-history")
    assert m.format == "spotify-extended"
    assert m.rows_dropped.get("podcast", 0) > 0  # podcast / audiobook rows have no track uri
    by_rule = m.skip_rule.plays_by_rule
    assert by_rule["explicit"] > by_rule.get("played_ms", 0)  # only old endsong rows lack the flag


def test_spotify_extended_reads_every_listener_and_labels_by_end_reason(raw_data, tmp_path):
    m = run(raw_data, tmp_path, "spotify-extended-history")
    listeners = [p for p in (raw_data / "spotify-extended-history").iterdir() if p.is_dir()]
    # SOURCE.md: 31 listeners here; their per-user rows in the round-2 and round-3 tables add up to
    # 519,195, re-saves (songdata_N, spot, all_time_Spotify, history2, 5 / 14 ...) included
    assert m.users == len(listeners) == 31 and m.rows_in == 519_195
    assert {Path(s["file"]).suffix for s in m.files_skipped} == {".tsv"}  # only the folder's own tables
    assert m.rows_dropped["podcast"] >= 13_342  # round 3 alone: rows minus music rows
    rule = m.skip_rule
    assert sum(rule.plays_by_rule.values()) == m.rows_kept
    assert set(rule.plays_by_rule) <= {"explicit", "reason", "played_ms"} and rule.plays_by_rule["reason"] > 0
    agreement = rule.agreement
    assert agreement["reason"]["agreement"] > 0.99 and agreement["reason"]["recall"] > 0.99
    assert agreement["played_ms"]["agreement"] < agreement["reason"]["agreement"]
    assert agreement["reason_else_played_ms"]["plays"] == agreement["played_ms"]["plays"]


def test_mssd_fragment(raw_data, tmp_path):
    m = run(raw_data, tmp_path, "mssd-samples", min_session_len=2)
    assert m.format == "mssd" and m.rows_in == 201 and m.sessions == 11
    assert m.skip_share == pytest.approx(82 / 201)  # SOURCE.md: skip_2 on 82 of 201 rows
    assert m.first_play.startswith("2018-07")  # the dd-mm-yy dates read correctly


def test_lastfm_sample_ignores_the_profile_table(raw_data, tmp_path):
    m = run(raw_data, tmp_path, "lastfm-1k-sample")
    assert m.format == "lastfm" and m.rows_in == 5_000 and m.files == 1
    # scrobbles are plays of at least half a track: no skip labels (docs/formats.md)
    assert m.skip_rule.plays_by_rule == {"none": m.rows_kept} and m.skip_share == 0


def test_piki_dislikes_are_the_negative_signal(raw_data, tmp_path):
    m = run(raw_data, tmp_path, "piki-music-sample")
    assert m.format == "piki" and m.rows_in == 500
    assert 0.45 < m.skip_share < 0.65  # SOURCE.md: 56.4 % dislikes


def test_ml1m_sequences_default_to_leave_last_out(raw_data, tmp_path):
    m = run(raw_data, tmp_path, "ml1m-gsasrec/train/input.txt")
    assert m.format == "sequences" and m.split_mode == "last"
    assert m.users == 6_040 and m.items == 3_416  # SOURCE.md: 6,040 users, 3,416 items
    assert m.rows_dropped == {}
