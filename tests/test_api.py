"""The Python API (toolkit/api.py, toolkit/__init__.py) and prep from a table in memory (toolkit/frames.py):
docs/api.md runs as written, the verbs keep both their meanings, a DataFrame prepares the same dataset
as the file it came from, and its fingerprint follows its values only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

import toolkit
from toolkit import frames
from toolkit.errors import ConfigError, EmptyInputError, InputError, MissingColumnsError

ROOT = Path(__file__).resolve().parents[1]
API_DOC = ROOT / "docs" / "api.md"


@pytest.fixture
def one_thread():
    """Training tests share a small CPU: torch on one thread, as OMP_NUM_THREADS=1 would set it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", API_DOC.read_text(), re.S)


# ---------------------------------------------------------------------------------------------
# the walk-through


def test_the_api_walkthrough_runs_as_written(tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    blocks = doc_blocks()
    assert len(blocks) >= 6, "docs/api.md lost its code blocks"
    ns: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md block {i + 1}", "exec"), ns)  # noqa: S102 - our own document

    ds, markov, sasrec, rep = ns["ds"], ns["markov"], ns["sasrec"], ns["rep"]
    assert isinstance(ds, toolkit.Dataset) and ds.name == "synthetic" and ds.format == "generic"
    assert ds.rows_in == 6_000 and ds.rows_kept + sum(ds.rows_dropped.values()) == ds.rows_in
    assert ds.path == tmp_path / "ws" / "datasets" / "synthetic"  # the conftest's TOOLKIT_WORKSPACE
    assert ds.splits["split"].to_list() == ["train", "valid", "test"]
    assert ds.splits["sessions"].sum() == ds.sessions
    assert (markov.model, sasrec.model) == ("markov", "sasrec") and sasrec.status == "finished"
    assert sasrec.config.d_model == 16 and sasrec.metrics.height == sasrec.epochs_done == 2
    assert sasrec.valid["ndcg@10"] == pytest.approx(sasrec.metrics["valid_ndcg@10"].max())

    assert isinstance(rep, toolkit.Report) and rep.baseline == "sasrec / all"
    assert rep.groups["group"].to_list() == ["markov / all", "sasrec / all"]
    assert rep.groups["seeds"].to_list() == [1, 1]
    ndcg = rep.comparisons.filter(pl.col("metric") == "ndcg@10")
    assert ndcg["group"].to_list() == ["markov / all"]
    diff = rep.groups["ndcg@10"][0] - rep.groups["ndcg@10"][1]
    assert ndcg["diff"][0] == pytest.approx(diff)
    assert ndcg["lo"][0] <= ndcg["diff"][0] <= ndcg["hi"][0]
    assert rep.runs["id"].sort().to_list() == sorted([markov.id, sasrec.id])

    recs = toolkit.recommend(sasrec, ns["session"], k=5, listener=ns["plays"]["user_id"][0])
    assert recs.columns == ["rank", "artist", "title", "score", "track_key", "item_id"]
    assert recs["rank"].to_list() == [1, 2, 3, 4, 5]
    assert recs["score"].to_list() == sorted(recs["score"].to_list(), reverse=True)
    items = ds.items()
    assert set(recs["track_key"]) <= set(items["track_key"])

    # the same calls again: the dataset and both runs are reused, not rebuilt
    again = toolkit.prep(ns["plays"], name="synthetic", session_gap_s=1800)
    assert again.up_to_date and again.manifest.fingerprint == ds.manifest.fingerprint
    assert toolkit.train(ds, model="markov").reused


def test_report_writes_its_files_and_takes_run_ids(tmp_path, tiny_logs):
    ds = toolkit.prep(pl.read_csv(tiny_logs), name="tiny", min_session_len=1)
    run = toolkit.train(ds, model="pop")
    rep = toolkit.report(run.id, workspace=ds.workspace, bootstrap=100, out=tmp_path / "r.html")
    assert (tmp_path / "r.html").exists() and (tmp_path / "r.md").exists()
    assert rep.comparisons.height == 0 and rep.baseline is None  # one group: nothing to compare
    assert rep.groups.height == 1 and rep.groups["group"][0] == "pop / all"
    assert rep.write(tmp_path / "r.json") == [tmp_path / "r.json"]


# ---------------------------------------------------------------------------------------------
# the names: one object serves as the function and as the module


def test_import_toolkit_loads_nothing_heavy():
    code = ("import sys, inspect, pydoc; import toolkit; from toolkit import prep, train, report, recommend; "
            "inspect.signature(train); pydoc.render_doc(report); repr(recommend); "
            "print(sorted(m for m in ('torch', 'polars', 'duckdb', 'numba') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_the_verbs_stay_functions_once_their_modules_are_imported(monkeypatch):
    import importlib

    import toolkit.train  # noqa: F401 - binds the module the way any import would

    module = importlib.import_module("toolkit.train")
    assert toolkit.train is not module and callable(toolkit.train)
    from toolkit import train as via_from

    assert via_from is toolkit.train
    # module attributes pass through, in both directions: what tests monkeypatch reaches the module
    assert toolkit.train.pick_device is module.pick_device
    monkeypatch.setattr(via_from, "SELECT_METRIC", "hr@10")
    assert module.SELECT_METRIC == "hr@10"
    monkeypatch.undo()
    assert module.SELECT_METRIC == "ndcg@10"


def test_each_verb_documents_and_signs_its_command_options():
    import inspect

    from toolkit.config import PrepConfig, TrainConfig

    prep_params = inspect.signature(toolkit.prep).parameters
    assert prep_params["session_gap_s"].default == PrepConfig().session_gap_s
    assert prep_params["split"].kind is inspect.Parameter.KEYWORD_ONLY
    train_params = inspect.signature(toolkit.train).parameters
    assert train_params["model"].default == TrainConfig().model and "dataset" in train_params
    for verb in (toolkit.prep, toolkit.train, toolkit.report, toolkit.recommend, toolkit.tune):
        doc = inspect.getdoc(verb)
        assert doc and "Example::" in doc and "toolkit." in doc.split("Example::")[1]


def test_an_unknown_option_names_the_nearest_one(tiny_logs):
    with pytest.raises(ConfigError, match=r"prep: unknown option session_gap=60; did you mean session_gap_s"):
        toolkit.prep(tiny_logs, session_gap=60)
    with pytest.raises(ConfigError, match=r"train: unknown option modle='pop'; did you mean model"):
        toolkit.train("tiny", modle="pop")
    with pytest.raises(ConfigError, match="--split"):  # the config's own checks still apply
        toolkit.prep(tiny_logs, split="sometimes")
    with pytest.raises(InputError, match="prep: logs is int"):
        toolkit.prep(42)


# ---------------------------------------------------------------------------------------------
# prep from a table in memory


def test_a_frame_prepares_the_dataset_its_file_does(tmp_path, tiny_logs):
    from_file = toolkit.prep(tiny_logs, name="file", workspace=tmp_path / "a")
    table = pl.read_csv(tiny_logs)
    from_frame = toolkit.prep(table, name="frame", workspace=tmp_path / "b")
    assert from_frame.format == from_file.format == "generic"
    for field in ("rows_in", "rows_kept", "users", "sessions", "tracks", "skip_share", "rows_dropped"):
        assert getattr(from_frame, field) == getattr(from_file, field), field
    assert_frame_equal(from_frame.events(), from_file.events())
    assert_frame_equal(from_frame.items(), from_file.items())
    assert from_frame.manifest.files == 1 and from_frame.manifest.files_skipped == []


def test_polars_pandas_and_arrow_tables_are_one_dataset(tmp_path, tiny_logs):
    table = pl.read_csv(tiny_logs)
    first = toolkit.prep(table)
    assert first.name == "dataframe" and not first.up_to_date
    assert toolkit.prep(table.to_pandas()).up_to_date
    assert toolkit.prep(table.to_arrow()).up_to_date
    assert toolkit.prep(table.lazy()).up_to_date
    changed = table.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit(5_000)).otherwise("played_ms")
                                 .alias("played_ms"))
    with pytest.raises(ConfigError, match="dataset dataframe already exists, prepared from other input"):
        toolkit.prep(changed)
    assert toolkit.prep(changed, force=True).skip_share != first.skip_share


def test_a_frame_takes_the_generic_mapping_and_a_user(tiny_logs):
    table = pl.read_csv(tiny_logs).rename({"user_id": "listener", "ts": "started", "track_id": "isrc"})
    with pytest.raises(InputError, match="cannot recognise the format from its columns"):
        toolkit.prep(table)
    ds = toolkit.prep(table, format="generic", cols={"user": "listener", "ts": "started", "track": "isrc"})
    assert ds.users == 4 and ds.format == "generic"
    with pytest.raises(MissingColumnsError, match="missing column"):
        toolkit.prep(table, format="generic", cols={"user": "nobody", "ts": "started", "track": "isrc"})
    mapped = ds.manifest.config["cols"]
    assert list(mapped) == ["user=listener", "ts=started", "track=isrc"]


def test_a_frame_in_an_export_format_gets_one_listener():
    plays = pl.DataFrame({
        "endTime": ["2024-01-01 10:00", "2024-01-01 10:04", "2024-01-01 10:08", "2024-01-01 10:12"],
        "artistName": ["A", "B", "A", "C"], "trackName": ["x", "y", "x", "z"],
        "msPlayed": [200_000, 5_000, 200_000, 190_000],
    })
    ds = toolkit.prep(plays, name="spotify", min_session_len=1)
    assert ds.format == "spotify" and ds.users == 1
    assert ds.events()["user_id"].unique().to_list() == [frames.DEFAULT_LISTENER]
    assert toolkit.prep(plays, name="mine", min_session_len=1, user="me").events()["user_id"][0] == "me"


@pytest.mark.parametrize("table,error,match", [
    (pl.DataFrame({"user_id": [], "ts": [], "track_id": []}), EmptyInputError, "holds no rows"),
    (pl.DataFrame({"user_id": ["u"], "ts": ["2024-01-01"], "track_id": ["t"], "src_row": [1]}), InputError,
     "src_row are names the toolkit adds"),
])
def test_a_frame_that_cannot_be_read_is_one_line(table, error, match):
    with pytest.raises(error, match=match) as info:
        toolkit.prep(table)
    assert "\n" not in str(info.value)


def test_text_layouts_are_refused_for_frames(tiny_logs):
    with pytest.raises(ConfigError, match="format='lastfm' is a layout of text files"):
        toolkit.prep(pl.read_csv(tiny_logs), format="lastfm")


# ---------------------------------------------------------------------------------------------
# the fingerprint of a table


def _table() -> pa.Table:
    return pa.table({
        "user": ["a", "b", None, "d"], "n": pa.array([1, None, 3, 4], pa.int32()), "x": [0.5, 1.5, None, 2.0],
        "ok": [True, False, None, True], "ts": pa.array([0, 10**6, None, 3 * 10**6], pa.timestamp("us", "UTC")),
        "cat": pa.array(["p", "q", "p", None]).dictionary_encode(), "tags": [[1], [], None, [2, 3]],
    })


def test_the_fingerprint_follows_values_not_layout():
    table = _table()
    base = frames.fingerprint(table)
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert frames.fingerprint(pa.concat_tables([table.slice(0, 1), table.slice(1, 2), table.slice(3)])) == base
    assert frames.fingerprint(table.cast(pa.schema([
        pa.field("user", pa.large_string()), pa.field("n", pa.int64()), pa.field("x", pa.float32()),
        pa.field("ok", pa.bool_()), pa.field("ts", pa.timestamp("us", "UTC")),
        pa.field("cat", pa.dictionary(pa.int8(), pa.string())), pa.field("tags", pa.list_(pa.int64()))]))) == base
    assert frames.fingerprint(pl.from_arrow(table).to_arrow()) == base  # polars' view strings and categories


@pytest.mark.parametrize("change", [
    lambda t: t.set_column(0, "user", pa.array(["a", "b", None, "e"])),  # one value
    lambda t: t.set_column(0, "user", pa.array(["a", "b", "", "d"])),  # null is not the empty string
    lambda t: t.set_column(1, "n", pa.array([1, 0, 3, 4], pa.int32())),  # null is not zero
    lambda t: t.rename_columns(["who", *t.column_names[1:]]),  # a column name
    lambda t: t.take([1, 0, 2, 3]),  # the order of the rows (it breaks ties of equal times)
    lambda t: t.slice(0, 3),  # a row fewer
    lambda t: t.set_column(4, "ts", t["ts"].cast(pa.timestamp("ms", "UTC"))),  # the unit of a time
    lambda t: t.set_column(0, "user", pa.array(["ab", "", None, "d"])),  # the same bytes, cut elsewhere
])
def test_the_fingerprint_changes_with_the_content(change):
    assert frames.fingerprint(change(_table())) != frames.fingerprint(_table())


def test_a_pandas_frame_leaves_its_index_out():
    df = pd.DataFrame({"user_id": ["u1", "u2"], "track_id": ["t1", "t2"]})
    shuffled_index = df.set_axis([10, 20])
    assert frames.fingerprint(frames.as_table(df)) == frames.fingerprint(frames.as_table(shuffled_index))
    assert frames.as_table(Path("plays.csv")) is None and frames.as_table("plays.csv") is None


# ---------------------------------------------------------------------------------------------
# recommend


@pytest.fixture
def markov_run(tiny_logs):
    ds = toolkit.prep(pl.read_csv(tiny_logs), name="tiny", min_session_len=1)
    return ds, toolkit.train(ds, model="markov")


def test_recommend_takes_keys_pairs_and_frames(markov_run):
    ds, run = markov_run
    items = ds.items().sort("item_id")
    first = items.row(0, named=True)
    by_key = toolkit.recommend(run, [first["track_key"]], k=3)
    by_name = toolkit.recommend(run, [(first["artist"].upper(), f"  {first['title']} ")], k=3)
    assert_frame_equal(by_key, by_name)
    assert by_key.height == min(3, ds.tracks)
    assert_frame_equal(toolkit.recommend(run, first["track_key"], k=3), by_key)  # one key, not its letters
    frame = pl.DataFrame({"session": ["s1", "s1", "s2"], "track_key": items["track_key"][:3].to_list()})
    many = toolkit.recommend(run, frame, k=2)
    assert many.columns[0] == "session" and many["session"].unique().sort().to_list() == ["s1", "s2"]
    assert_frame_equal(toolkit.recommend(run, frame.to_pandas(), k=2), many)


def test_recommend_warns_about_unknown_tracks_and_refuses_none_known(markov_run, tmp_path):
    ds, run = markov_run
    key = ds.items()["track_key"][0]
    with pytest.warns(UserWarning, match="1 of 2 plays are tracks outside the catalogue"):
        recs = toolkit.recommend(run, [key, ("Nobody", "Nothing")], k=2, out=tmp_path / "recs.parquet")
    assert_frame_equal(pl.read_parquet(tmp_path / "recs.parquet"), recs)
    with pytest.warns(UserWarning), pytest.raises(InputError, match="no track is in the catalogue"):
        toolkit.recommend(run, ["no-such-track"])
    with pytest.raises(InputError, match="2 flags for 1 plays"):
        toolkit.recommend(run, [key], skipped=[True, False])
    with pytest.raises(InputError, match="neither a track key nor an"):
        toolkit.recommend(run, [("just one",)])


def test_a_dataset_and_its_runs_keep_their_workspace(tmp_path, tiny_logs):
    elsewhere = tmp_path / "elsewhere"
    ds = toolkit.prep(pl.read_csv(tiny_logs), name="tiny", min_session_len=1, workspace=str(elsewhere))
    run = toolkit.train(ds, model="pop")
    assert run.workspace == ds.workspace == elsewhere and run.path.is_dir()
    assert not (tmp_path / "ws" / "runs").exists()  # nothing in the default workspace
    assert toolkit.recommend(run, [ds.items()["track_key"][0]], k=1).height == 1
    assert toolkit.report([run], bootstrap=100).runs["id"].to_list() == [run.id]
