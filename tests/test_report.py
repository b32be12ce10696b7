"""The report: statistics by hand, full ranking versus sampled, and the commands end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from toolkit import evaluate as ev
from toolkit import metrics
from toolkit import report as rp
from toolkit.report import scoring
from toolkit.artifacts import Workspace, read_json, run_dir
from toolkit.cli import app
from toolkit.config import PrepConfig, TrainConfig
from toolkit.evaluate import QueryResults
from toolkit.prep import prep
from toolkit.train import train

runner = CliRunner()
SMALL = dict(d_model=16, n_heads=2, n_layers=1, batch_size=4, epochs=2, negatives=3, warmup_steps=2)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *needles, code: int = 1):
    assert result.exit_code == code, result.output
    text = result.output.strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    for needle in needles:
        assert needle in text, (needle, text)


# ---------------------------------------------------------------------------------------------
# statistics by hand


def test_seed_interval_by_hand():
    s = rp.seed_interval([1.0, 2.0, 3.0])
    # sd = 1, t(0.975, 2 df) = 4.303: half-width 4.303 / sqrt(3)
    assert s["mean"] == 2.0 and s["hi"] - 2.0 == pytest.approx(4.303 / math.sqrt(3))
    one = rp.seed_interval([0.5])
    assert one["mean"] == 0.5 and math.isnan(one["lo"]) and math.isnan(one["hi"])


def q_results(session, rank, skipped, auc=None):
    n = len(session)
    return QueryResults(np.asarray(session, np.int64), np.asarray(skipped, bool), np.asarray(rank, np.int64),
                        np.asarray(auc if auc is not None else [np.nan] * n, np.float64), np.zeros((n, 10), np.int32),
                        np.full(n, np.nan))


def test_session_sums_by_hand():
    q = q_results([0, 0, 1, 2], [1, 20, 2, 3], [False, False, False, True])
    sums, counts = rp.session_sums([q], "hr@10", np.array([0, 1, 2]))
    assert sums.tolist() == [[1.0, 1.0, 0.0]] and counts.tolist() == [2, 1, 0]
    sums, counts = rp.session_sums([q], "skip_hr@10", np.array([0, 1, 2]))
    assert sums.tolist() == [[0, 0, 1]] and counts.tolist() == [0, 0, 1]
    # two seeds of one group: a row per seed, counts are the queries of one run
    q2 = q_results([0, 0, 1, 2], [30, 30, 30, 3], [False, False, False, True])
    sums, counts = rp.session_sums([q, q2], "hr@10", np.array([0, 1, 2]))
    assert sums.tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]] and counts.tolist() == [2, 1, 0]


def test_paired_bootstrap_of_a_constant_shift_is_exact():
    counts = np.array([2.0, 1.0, 3.0, 0.0])
    base = np.array([1.0, 0.0, 2.0, 0.0])
    pb = rp.paired_bootstrap((base + 0.25 * counts, counts), (base, counts), replicates=200, seed=0)
    assert pb["diff"] == pytest.approx(0.25) and pb["lo"] == pytest.approx(0.25) and pb["hi"] == pytest.approx(0.25)
    assert pb["n_sessions"] == 3  # the session without queries is left out
    same = rp.paired_bootstrap((base, counts), (base, counts), replicates=200, seed=0)
    assert same["diff"] == 0.0 and same["lo"] == 0.0 and same["hi"] == 0.0
    with pytest.raises(ValueError):
        rp.paired_bootstrap((base, counts), (base, counts + 1), replicates=200, seed=0)


def test_paired_bootstrap_resamples_seeds_too():
    counts = np.full(50, 4.0)
    # every session agrees, so a bootstrap over sessions alone would give a zero-width interval; but
    # group a's three seeds reach 0.1, 0.3 and 0.5 per query, and b (one seed) 0.3: seed luck, not skill
    a = np.stack([counts * v for v in (0.1, 0.3, 0.5)])
    b = counts * 0.3
    pb = rp.paired_bootstrap((a, counts), (b, counts), replicates=2000, seed=0)
    assert pb["diff"] == pytest.approx(0.0, abs=1e-12)
    # a's value is the mean of three seeds drawn with replacement from {0.1, 0.3, 0.5}: all three are
    # 0.1 in 1/27 ≈ 3.7 % of replicates (more than the 2.5 % tail), all three 0.5 as often, so the
    # interval runs from 0.1 − 0.3 to 0.5 − 0.3
    assert pb["lo"] == pytest.approx(-0.2) and pb["hi"] == pytest.approx(0.2)
    one_seed = rp.paired_bootstrap((a[2], counts), (b, counts), replicates=2000, seed=0)
    assert one_seed["lo"] == pytest.approx(0.2) and one_seed["hi"] == pytest.approx(0.2)


def test_paired_bootstrap_interval_covers_a_noisy_difference():
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 6, size=400).astype(float)
    b = rng.binomial(counts.astype(int), 0.3).astype(float)
    a = rng.binomial(counts.astype(int), 0.4).astype(float)
    pb = rp.paired_bootstrap((a, counts), (b, counts), replicates=1000, seed=0)
    assert pb["lo"] < pb["diff"] < pb["hi"] and pb["lo"] > 0  # 0.4 vs 0.3 on ~1,200 queries: clearly positive
    assert pb["diff"] == pytest.approx(a.sum() / counts.sum() - b.sum() / counts.sum())


def test_by_unit_adds_sessions_up_per_listener():
    sums = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 1.0]])
    counts = np.array([2.0, 2.0, 1.0, 3.0])
    total, n = rp.by_unit((sums, counts), np.array([1, 0, 1, 0]))
    assert total.tolist() == [[6.0, 4.0], [2.0, 0.0]] and n.tolist() == [5.0, 3.0]
    assert rp.by_unit((sums, counts), None) == (sums, counts)


def _clustered(listeners: int, per_listener: int, spread: float, seed: int):
    """Per session: queries, and hits of two models whose difference varies by listener (``spread``)
    and only a little by session."""
    rng = np.random.default_rng(seed)
    units = np.repeat(np.arange(listeners), per_listener)
    counts = np.full(len(units), 10.0)
    effect = rng.normal(0.05, spread, size=listeners)[units]  # how much better a is for this listener
    b = rng.binomial(10, 0.3, size=len(units)).astype(float)
    a = np.clip(b + np.round(10 * effect + rng.normal(0, 0.3, size=len(units))), 0, 10)
    return (a, counts), (b, counts), units


def test_listener_interval_is_wider_than_the_session_interval_on_clustered_data():
    a, b, units = _clustered(listeners=12, per_listener=40, spread=0.15, seed=3)
    by_session = rp.paired_bootstrap(a, b, replicates=2000, seed=0)
    by_listener = rp.paired_bootstrap(rp.by_unit(a, units), rp.by_unit(b, units), replicates=2000, seed=0)
    assert by_listener["diff"] == pytest.approx(by_session["diff"])  # same point estimate
    assert by_listener["n_sessions"] == 12 and by_session["n_sessions"] == 480
    # 12 independent listeners, not 480 independent sessions: the honest interval is far wider
    assert (by_listener["hi"] - by_listener["lo"]) > 2.5 * (by_session["hi"] - by_session["lo"])


def test_listener_interval_equals_the_session_interval_when_each_session_is_its_own_listener():
    a, b, _ = _clustered(listeners=200, per_listener=1, spread=0.15, seed=4)
    units = np.arange(200)
    by_session = rp.paired_bootstrap(a, b, replicates=1000, seed=0)
    by_listener = rp.paired_bootstrap(rp.by_unit(a, units), rp.by_unit(b, units), replicates=1000, seed=0)
    assert by_listener == by_session


def test_listener_interval_is_close_to_the_session_interval_on_unclustered_data():
    # listeners with no effect of their own: sessions are independent, and so the two intervals agree
    a, b, units = _clustered(listeners=100, per_listener=8, spread=0.0, seed=5)
    by_session = rp.paired_bootstrap(a, b, replicates=2000, seed=0)
    by_listener = rp.paired_bootstrap(rp.by_unit(a, units), rp.by_unit(b, units), replicates=2000, seed=0)
    ratio = (by_listener["hi"] - by_listener["lo"]) / (by_session["hi"] - by_session["lo"])
    assert 0.8 < ratio < 1.25


class FixedScores:
    def __init__(self, scores: torch.Tensor) -> None:
        self.s = scores

    def scores(self, batch, rows, cols):
        return self.s.expand(len(rows), -1).clone()


def test_sampled_candidates_inflate_what_full_ranking_reports():
    """The target is 50th of 1,000 tracks: a miss at 10 in full ranking, a hit among 100 sampled ones."""
    n_items = 1000
    scores = torch.linspace(1.0, 0.0, n_items + 1).unsqueeze(0)  # track 1 best ... track 1000 worst
    scores[0, 0] = float("-inf")
    target = 50
    seqs = np.array([[7, target]], np.int32)
    a = ev.SplitArrays(seqs=seqs, skips=np.zeros_like(seqs, np.int8), next_item=np.array([[target, 0]], np.int32),
                       next_pos=np.zeros_like(seqs), row_session=np.array([0]))
    full = ev.run_queries(FixedScores(scores), a, torch.device("cpu"), n_items=n_items)
    assert full.rank.tolist() == [50] and ev.summarize(full, n_items)["hr@10"] == 0.0
    # the protocol of the reference code: the target among 100 random negatives
    rng = np.random.default_rng(0)
    negatives = rng.choice(np.setdiff1d(np.arange(1, n_items + 1), [target]), size=100, replace=False)
    candidates = torch.from_numpy(np.r_[target, negatives])
    sampled_rank = int((scores[0, candidates] >= scores[0, target]).sum())
    assert sampled_rank <= 10 and metrics.hit_at_k(np.array([sampled_rank]), 10)[0] == 1.0


# ---------------------------------------------------------------------------------------------
# end to end on the tiny log


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    from tests.conftest import TINY_LOGS

    root = tmp_path_factory.mktemp("report")
    ws = Workspace.at(root / "ws")
    prep([TINY_LOGS], ws, PrepConfig(name="tiny", max_len=4))
    ids = {}
    for model, feedback, seeds in (("pop", "all", [0]), ("markov", "all", [0]), ("sasrec", "all", [0, 1]),
                                   ("sasrec", "positives-only", [0, 1])):
        for seed in seeds:
            extra = SMALL if model == "sasrec" else {}
            r = train(ws, TrainConfig(dataset="tiny", model=model, feedback=feedback, seed=seed, **extra))
            ids.setdefault(f"{model} / {feedback}", []).append(r.id)
    return ws, ids


def test_report_groups_seeds_and_compares_with_the_baseline(trained):
    ws, ids = trained
    rep = rp.build_report(ws, [], rp.Protocol(bootstrap=200))
    keys = [g["key"] for g in rep["groups"]]
    assert keys == ["pop / all", "markov / all", "sasrec / all", "sasrec / positives-only"]
    sasrec = rep["groups"][2]
    assert sasrec["runs"] == ids["sasrec / all"] and sasrec["seeds"] == [0, 1]
    assert sasrec["metrics"]["hr@10"]["values"] == [r["test"]["hr@10"] for r in rep["runs"] if r["group"] == "sasrec / all"]
    assert rep["protocol"]["baseline"] == "sasrec / all"
    compared = {(c["group"], c["metric"]) for c in rep["comparisons"]}
    assert ("sasrec / positives-only", "ndcg@10") in compared and ("sasrec / all", "ndcg@10") not in compared
    json.loads(json.dumps(rep, default=float))  # plain data only


def test_a_setting_only_one_group_reads_is_named_where_it_is_not_the_default():
    from toolkit.report.grouping import group_runs
    from toolkit.runs import RunRecord

    def run(i, **settings):
        return RunRecord(id=f"r{i}", dir=None, config=TrainConfig(dataset="d", **settings), result=None, recorded={})

    frozen = {"freeze_items": True}
    keys = list(group_runs([run(0, **frozen), run(1, feedback="contrastive", context="output", **frozen),
                            run(2, feedback="positives-only", **frozen), run(3, model="markov")]))
    # freeze_items is every neural group's: the protocol names it; the skip term's context is one group's
    assert keys == ["markov / all", "sasrec / all", "sasrec / positives-only", "sasrec / contrastive (context=output)"]
    keys = list(group_runs([run(0), run(1, feedback="contrastive")]))
    assert keys == ["sasrec / all", "sasrec / contrastive"]  # its defaults stay unnamed


def test_the_report_is_typed_records_whose_json_reads_back(trained, tmp_path):
    from toolkit.report.records import Comparison, Group, Report, read_report

    ws, ids = trained
    rep = rp.assemble_report(ws, [], rp.Protocol(bootstrap=200))
    assert isinstance(rep, Report) and all(isinstance(g, Group) for g in rep.groups)
    assert all(isinstance(c, Comparison) for c in rep.comparisons) and isinstance(rep.verdict.vs_best_count, Comparison)
    assert rep.groups[2].runs == ids["sasrec / all"] and rep.groups[2].mean("ndcg@10") == \
        rep.groups[2].metrics["ndcg@10"]["mean"]
    data = rep.to_dict()
    assert list(data) == ["title", "generated", "toolkit_version", "dataset", "protocol", "metrics", "lower_is_better",
                          "groups", "comparisons", "verdict", "runs"]
    assert list(data["comparisons"][0]) == ["group", "baseline", "metric", "unit", "diff", "lo", "hi", "n_units",
                                            "excludes_zero"]
    same = json.dumps(Report.from_dict(json.loads(json.dumps(data))).to_dict(), sort_keys=True)
    assert same == json.dumps(data, sort_keys=True)
    out = tmp_path / "r.json"
    assert invoke("report", "--workspace", ws.root, "--bootstrap", 200, "--out", out).exit_code == 0
    back = read_report(out)
    assert [g.key for g in back.groups] == [g.key for g in rep.groups] and back.verdict.best == rep.verdict.best


@pytest.mark.parametrize("damage,why", [
    (lambda d: d.pop("groups"), "lacks 'groups'"),
    (lambda d: d["groups"][0].pop("n_pos"), "lacks 'n_pos'"),
    (lambda d: d["comparisons"].append([1]), "is not a report's layout"),
])
def test_a_report_file_that_does_not_fit_is_one_line_naming_it(trained, tmp_path, damage, why):
    from toolkit.errors import InputError
    from toolkit.report.records import read_report

    ws, _ = trained
    data = rp.build_report(ws, [], rp.Protocol(bootstrap=200))
    damage(data)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data, default=float), encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_report(path)
    assert str(err.value).startswith(f"{path}: {why}; ") and "\n" not in str(err.value)


def test_valid_split_report_equals_the_training_metrics(trained):
    """One evaluation path: scoring the best checkpoint on validation reproduces what training logged."""
    ws, ids = trained
    rep = rp.build_report(ws, ids["sasrec / all"] + ids["markov / all"], rp.Protocol(split="valid", bootstrap=200))
    for row in rep["runs"]:
        logged = read_json(run_dir(ws, row["id"]).result)["valid"]
        for m in ("hr@10", "ndcg@10", "skip_hr@10", "n_pos", "n_skip"):
            assert row["test"][m] == pytest.approx(logged[m], nan_ok=True), (row["id"], m)


def test_scores_are_cached_per_protocol(trained, monkeypatch):
    ws, _ = trained
    rp.build_report(ws, [], rp.Protocol(bootstrap=200))

    def no_scoring(*_a, **_k):
        raise AssertionError("scored again although the cache is valid")

    monkeypatch.setattr(scoring, "run_queries", no_scoring)
    monkeypatch.setattr(scoring, "track_skip_signal", lambda *_a: None)  # a count yardstick, not a run: never cached
    rp.build_report(ws, [], rp.Protocol(bootstrap=200, seed=3))
    with pytest.raises(AssertionError):
        rp.build_report(ws, [], rp.Protocol(bootstrap=200, exclude_played=True))


def test_cli_report_table_json_and_files(trained, tmp_path):
    ws, _ = trained
    res = invoke("report", "--workspace", ws.root, "--bootstrap", "200")
    assert res.exit_code == 0, res.output
    assert "positives-only" in res.output and "difference against sasrec / all" in " ".join(res.output.split())
    res = invoke("report", "--workspace", ws.root, "--json", "--bootstrap", "200", "--positions", "last")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["protocol"]["positions"] == "last" and all(g["n_skip"] == 0 for g in data["groups"])
    res = invoke("report", "--workspace", ws.root, "--out", tmp_path / "r.html", "--bootstrap", "200")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r.html").read_text().count("data:image/png;base64,") >= 4
    assert "| sasrec / all" in (tmp_path / "r.md").read_text()


def test_cli_report_bad_input(trained, tmp_path):
    ws, ids = trained
    one_line_error(invoke("report", "nope", "--workspace", ws.root), "unknown run 'nope'", "toolkit runs")
    one_line_error(invoke("report", "--workspace", ws.root, "--baseline", "bert4rec"), "--baseline")
    one_line_error(invoke("report", "--workspace", ws.root, "--positions", "first"), "'--positions'", code=2)
    # an interrupted run: config and a best checkpoint, no finished result
    rid = ids["sasrec / all"][0]
    result = run_dir(ws, rid).result
    saved = result.read_text()
    result.unlink()
    try:
        one_line_error(invoke("report", rid, "--workspace", ws.root), "did not finish", "--allow-unfinished")
        res = invoke("report", rid, "--workspace", ws.root, "--allow-unfinished", "--bootstrap", "200")
        assert res.exit_code == 0, res.output
    finally:
        result.write_text(saved)


def test_runs_from_two_datasets_are_refused(trained, tmp_path):
    from tests.conftest import TINY_LOGS

    ws, ids = trained
    prep([TINY_LOGS], ws, PrepConfig(name="tiny2", max_len=5))
    other = train(ws, TrainConfig(dataset="tiny2", model="pop"))
    one_line_error(invoke("report", ids["pop / all"][0], other.id, "--workspace", ws.root), "different datasets")


def test_cli_recommend_joins_names_and_counts_unknown_tracks(trained, tmp_path):
    ws, ids = trained
    items = pl.read_parquet(ws.dataset("tiny").items)
    keys = items["track_key"].to_list()
    sessions = pl.DataFrame({"session": ["a", "a", "a", "b", "c"], "position": [2, 1, 3, 1, 1],
                             "track_key": [keys[0], keys[1], "no such track", keys[2], "unknown too"],
                             "skipped": [False, True, False, False, False]})
    sessions.write_parquet(tmp_path / "s.parquet")
    for run in (ids["sasrec / all"][0], ids["markov / all"][0]):
        res = invoke("recommend", "--run", run, "--sessions", tmp_path / "s.parquet", "-k", 3, "--out",
                     tmp_path / "recs.parquet", "--workspace", ws.root)
        assert res.exit_code == 0, res.output
        said = " ".join(res.output.split())
        assert "2 of 5 plays" in said and "1 sessions had no known track" in said
        recs = pl.read_parquet(tmp_path / "recs.parquet")
        assert recs["session"].to_list() == ["a"] * 3 + ["b"] * 3
        assert recs["rank"].to_list() == [1, 2, 3] * 2
        assert recs["item_id"].is_between(1, items.height).all() and recs["track_key"].null_count() == 0
        top = recs.filter(pl.col("session") == "a")["score"].to_list()
        assert top == sorted(top, reverse=True)
    one_line_error(invoke("recommend", "--run", ids["pop / all"][0], "--sessions", tmp_path / "missing.parquet",
                          "--workspace", ws.root), "missing.parquet")
    pl.DataFrame({"user": ["a"], "song": ["x"]}).write_parquet(tmp_path / "bad.parquet")
    one_line_error(invoke("recommend", "--run", ids["pop / all"][0], "--sessions", tmp_path / "bad.parquet",
                          "--workspace", ws.root), "'session'", "track_key", "user, song")


def test_study_runs_the_grid_reuses_it_and_writes_its_section(tmp_path, tiny_logs):
    ws = tmp_path / "sws"
    results = tmp_path / "results.md"
    args = ["study", tiny_logs, "--name", "tinystudy", "--seeds", "2", "--workspace", ws, "--results", results,
            "--set", "epochs=1", "--set", "d_model=16", "--set", "batch_size=4", "--set", "negatives=3",
            "--set", "n_layers=1", "--set", "valid_sessions=0"]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    text = results.read_text()
    assert text.count("<!-- study:tinystudy:begin -->") == 1
    assert "Paired differences against `sasrec / all`" in text and "**A smoke run:" in text
    assert "Paired differences against `sasrec / positives-only`" in text
    runs = sorted(p.name for p in (ws / "runs").iterdir())
    assert len(runs) == 5 + 4 * 2  # five count baselines once, four neural cells x two seeds
    res = invoke(*args)  # everything is reused: same runs, the section replaced, not added
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (ws / "runs").iterdir()) == runs
    assert results.read_text().count("## tinystudy") == 1
    # a fresh workspace retrains everything with the same seeds and reproduces the section
    fresh = [a if a != ws else tmp_path / "fresh" for a in args if a != results]
    fresh = fresh[:fresh.index("--results")] + fresh[fresh.index("--results") + 1:] + ["--check", results]
    res = invoke(*fresh)
    assert res.exit_code == 0, res.output
    assert "cells reproduced within the document's intervals" in " ".join(res.output.split())
    assert "did not" not in res.output
    record = results.read_text()
    assert record.count("<!-- study:tinystudy:check:begin -->") == 1 and "### Reproduction check: tinystudy" in record
    assert "trained 13 of the 13 runs itself" in record and "did not" not in record
    assert "Track skip signal: ranking the tracks by how rarely they were skipped" in record
    assert "### Neural against counting" in record and "overlap@10" in record
    res = invoke(*args)  # the section rewritten with the same table: the check record still describes it
    assert res.exit_code == 0 and results.read_text().count("### Reproduction check: tinystudy") == 1
    # a number the run does not reproduce fails the check and is named
    lines = results.read_text().splitlines()
    row = next(i for i, ln in enumerate(lines) if ln.startswith("| markov / all |"))
    cells = lines[row].split(" | ")
    cells[1] = "0.9999 (1 seed)"
    lines[row] = " | ".join(cells)
    results.write_text("\n".join(lines))
    res = invoke(*fresh)
    assert res.exit_code == 1 and "1 did not" in res.output, res.output
    assert "0.9999 vs" in " ".join(res.output.split())
    record = results.read_text()
    assert record.count("### Reproduction check: tinystudy") == 1 and "**1 did not**" in record
    assert "trained 0 of the 13 runs itself" in record
    res = invoke(*args)  # a new table drops the check record, which described the old one
    assert res.exit_code == 0 and "Reproduction check" not in results.read_text()
    one_line_error(invoke("study", "--workspace", ws, "--check", tmp_path / "none.md"), "none.md")
    one_line_error(invoke("study", "--workspace", ws, "--set", "colour=blue"), "--set colour=blue")
    one_line_error(invoke("study", "--workspace", ws, "--grid", "huge"), "'--grid'", "'huge'", code=2)


def test_study_verdict_needs_both_baselines_and_fewer_skips():
    from toolkit.report.render import blocks_markdown
    from toolkit.study import verdict

    def comp(group, baseline, metric, diff, lo, hi):
        return {"group": group, "baseline": baseline, "metric": metric, "diff": diff, "lo": lo, "hi": hi}

    g = "sasrec / contrastive"
    good = {"all": {"comparisons": [comp(g, "sasrec / all", "ndcg@10", 0.01, 0.005, 0.015),
                                    comp(g, "sasrec / all", "skip_hr@10", -0.01, -0.02, -0.001)]},
            "pos": {"comparisons": [comp(g, "sasrec / positives-only", "ndcg@10", 0.004, 0.001, 0.007)]}}
    assert "**Target met by: sasrec / contrastive.**" in blocks_markdown(verdict(good))
    # above positives-only only by chance: the interval reaches below zero
    good["pos"]["comparisons"][0].update(lo=-0.001)
    assert "**Target not met" in blocks_markdown(verdict(good))


def test_study_neural_against_counting_picks_both_on_validation():
    from toolkit.report.render import blocks_markdown
    from toolkit.study import baseline_target, best_by_validation

    def group(key, model, feedback, overlap):
        return {"key": key, "model": model, "feedback": feedback, "metrics": {"overlap@10": {"mean": overlap}}}

    groups = [group("markov / all", "markov", "all", 0.30), group("repeat / all", "repeat", "all", 0.05),
              group("sasrec / all", "sasrec", "all", 0.02), group("sasrec / contrastive", "sasrec", "contrastive", 0.02)]
    runs = [{"group": "markov / all", "valid_ndcg@10": 0.10}, {"group": "repeat / all", "valid_ndcg@10": 0.09},
            {"group": "sasrec / all", "valid_ndcg@10": 0.08}, {"group": "sasrec / all", "valid_ndcg@10": 0.12},
            {"group": "sasrec / contrastive", "valid_ndcg@10": 0.50}]  # skip-aware: never the neural pick
    main = {"groups": groups, "runs": runs, "comparisons": []}
    assert best_by_validation(main) == ("markov / all", "sasrec / all")  # sasrec's mean 0.10 over two seeds

    def against(lo):
        return {"group": "sasrec / all", "baseline": "markov / all", "metric": "ndcg@10", "diff": 0.004,
                "lo": lo, "hi": 0.008, "unit": "listeners", "n_units": 47}

    text = blocks_markdown(baseline_target({"sasrec / all": main, "markov / all": {"comparisons": [against(0.001)]}}))
    assert "NDCG@10 +0.0040 [+0.0010, +0.0080] (bootstrap over 47 listeners): **met**" in text
    assert "`sasrec / all` 0.020, `markov / all` 0.300" in text
    text = blocks_markdown(baseline_target({"sasrec / all": main, "markov / all": {"comparisons": [against(-0.001)]}}))
    assert "**not met**" in text


@pytest.mark.parametrize("grid", ["core", "skip", "paper", "full"])
@pytest.mark.parametrize("overrides", [{}, {"transitions": 20, "follow": True, "successor_sum": True}])
def test_every_study_grid_builds_valid_training_configs(grid, overrides):
    from toolkit.study import GRIDS, StudyConfig, cells

    runs = cells(StudyConfig(grid=grid, seeds=2, overrides=overrides), "any")
    neural = [(m, f) for m, f, _ in GRIDS[grid] if m not in ("pop", "markov", "sknn", "repeat")]
    assert len(runs) == len(GRIDS[grid]) + len(neural)  # baselines once, neural cells per seed
    for cfg in runs:
        if cfg.model == "bert4rec" or "negative-target" in cfg.feedback:
            assert not cfg.repeat_head and cfg.successors == 0  # the head cannot apply there
        elif cfg.model == "sasrec":
            assert cfg.repeat_head and cfg.successors > 0


# ---------------------------------------------------------------------------------------------
# the signals: verdict, second baseline, cold targets, names in recommend


def test_report_compares_with_positives_only_too_and_gives_a_verdict(trained):
    ws, _ = trained
    rep = rp.build_report(ws, [], rp.Protocol(bootstrap=200), "tiny")  # another test adds a later dataset
    assert rep["protocol"]["baselines"] == ["sasrec / all", "sasrec / positives-only"]
    against = {(c["group"], c["baseline"]) for c in rep["comparisons"] if c["metric"] == "ndcg@10"}
    assert {("markov / all", "sasrec / positives-only"), ("pop / all", "sasrec / positives-only")} <= against
    assert ("sasrec / positives-only", "sasrec / all") in against
    assert ("sasrec / all", "sasrec / positives-only") not in against  # the row above, negated
    means = {g["key"]: g["metrics"]["ndcg@10"]["mean"] for g in rep["groups"]}
    v = rep["verdict"]
    ranked = sorted(means, key=means.get, reverse=True)
    assert v["best"] == ranked[0] and v["runner_up"] == ranked[1] and v["best_mean"] == means[ranked[0]]
    assert v["vs_runner_up"]["group"] == ranked[0] and v["vs_runner_up"]["baseline"] == ranked[1]
    assert v["vs_runner_up"]["diff"] == pytest.approx(means[ranked[0]] - means[ranked[1]])
    count = max(("pop / all", "markov / all"), key=means.get)
    neural = max(("sasrec / all", "sasrec / positives-only"), key=means.get)
    assert v["best_count"] == count and v["best_neural"] == neural
    assert v["neural_vs_count"]["diff"] == pytest.approx(means[neural] - means[count])


def test_rank_histograms_mark_cold_targets_and_count_the_seeds(trained):
    ws, _ = trained
    ds = ws.dataset("tiny")
    events = pl.read_parquet(ds.events)
    test = events.filter(pl.col("split") == "test").sort("session_idx", "position")
    # positive queries: kept plays after a session's first (the diagnostics' targets), every position scored
    targets = test.filter((pl.col("position") > 0) & (pl.col("is_skip") == 0))["item_id"].to_list()
    saved = ds.items.read_bytes()
    try:  # the tiny test split has no cold target: make the first one's track count as never in train
        items = pl.read_parquet(ds.items)
        items.with_columns(pl.when(pl.col("item_id") == targets[0]).then(0).otherwise(pl.col("train_plays"))
                           .alias("train_plays")).write_parquet(ds.items)
        rep = rp.build_report(ws, [], rp.Protocol(bootstrap=200), "tiny")  # another test adds a later dataset
    finally:
        ds.items.write_bytes(saved)
    expected_cold = targets.count(targets[0])
    for g in rep["groups"]:
        h = g["rank_hist"]
        assert h["seeds"] == len(g["seeds"])
        assert sum(h["pos"]) == g["n_pos"] * len(g["seeds"])  # summed over the seeds
        assert sum(h["pos_cold"]) == expected_cold * len(g["seeds"])


def test_cli_report_prints_the_verdict_and_both_difference_tables(trained):
    ws, _ = trained
    res = invoke("report", "--workspace", ws.root, "--bootstrap", "200", "--dataset", "tiny")
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "Best by test NDCG@10:" in said
    assert "difference against sasrec / positives-only" in said and "difference against sasrec / all" in said
    assert "of the test targets" in said and "are tracks never played in train" in said
    assert said.index("Best by test NDCG@10") < said.index("difference against sasrec / all")


def test_cli_prep_summary_states_the_cold_share_and_its_meaning(tmp_path):
    from tests.conftest import TINY_LOGS

    res = invoke("prep", TINY_LOGS, "--workspace", tmp_path / "w", "--max-len", 4)
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    manifest = read_json(tmp_path / "w" / "datasets" / "tiny_logs" / "manifest.json")
    diag = manifest["split_diagnostics"]
    assert (f"cold targets: {diag['valid']['cold_share']:.1%} of the valid and {diag['test']['cold_share']:.1%} of "
            "the test targets are tracks never played in train: no model learned anything about them") in said
    assert (f"HR@10 is at most {1 - diag['valid']['cold_share']:.3f} (valid) and "
            f"{1 - diag['test']['cold_share']:.3f} (test).") in said
    held_out = manifest["splits"]["valid"]["events"] + manifest["splits"]["test"]["events"]
    assert f"({manifest['cold_events']:,} of {held_out:,} valid/test plays, " in said


def test_paper_comparison_shows_relative_changes_only_with_their_interval():
    from toolkit.report.render import blocks_markdown
    from toolkit.study import paper_comparison

    def group(key, hr1, hr10):
        return {"key": key, "metrics": {"hr@1": {"mean": hr1}, "hr@10": {"mean": hr10}}}

    rep = {"groups": [group("sasrec / all", 0.0004, 0.20), group("sasrec / contrastive", 0.0006, 0.22)],
           "comparisons": [{"group": "sasrec / contrastive", "baseline": "sasrec / all", "metric": "hr@10",
                            "diff": 0.02, "lo": 0.01, "hi": 0.03}]}
    text = blocks_markdown(paper_comparison(rep))
    assert "+50.0%" not in text and "– (base below 0.01)" in text  # 0.0004 -> 0.0006 is no "+50 %"
    assert "+10.0% [+5.0%, +15.0%]" in text  # hr@10: 0.02 / 0.20 with the interval's ends divided alike
    assert "| hr@10 | 0.5593 → 0.5867 | +4.9% | sasrec / contrastive | 0.2000 → 0.2200 |" in text
    rep["comparisons"] = []
    assert "– (no paired interval)" in blocks_markdown(paper_comparison(rep))


def _names_dataset(ws: Workspace) -> None:
    """The tiny dataset's items renamed: keys of the form artist<US>title without name columns, and
    two tracks whose names differ only in case."""
    path = ws.dataset("tiny").items
    items = pl.read_parquet(path)
    names = [("Nina Simone", "Sinnerman"), ("Nina Simone", "Feeling Good"), ("Björk", "Jóga"),
             ("The Cure", "Lullaby"), ("the cure", "LULLABY")]
    keys = [f"{a}\x1f{t}" for a, t in names] + items["track_key"].to_list()[len(names):]
    items.with_columns(pl.Series("track_key", keys), pl.lit(None, pl.String).alias("artist"),
                       pl.lit(None, pl.String).alias("title")).write_parquet(path)


def test_cli_recommend_by_artist_and_title_previews_names(trained, tmp_path):
    ws, ids = trained
    path = ws.dataset("tiny").items
    saved = path.read_bytes()
    try:
        _names_dataset(ws)
        run = ids["markov / all"][0]
        base = ["recommend", "--run", run, "--workspace", ws.root, "--out", tmp_path / "r.parquet", "-k", 3]
        res = invoke(*base, "--artist", "nina simone", "--title", "SINNERMAN")
        assert res.exit_code == 0, res.output
        recs = pl.read_parquet(tmp_path / "r.parquet")
        assert recs["session"].unique().to_list() == ["named"] and recs.height == 3
        shown = res.output.splitlines()
        assert "session named:" in shown
        first = recs.row(0, named=True)
        a, _, t = first["track_key"].partition("\x1f")
        name = f"{a} – {t}" if t else first["track_key"]
        assert any(line.strip().startswith(f"1. {name}  (score") for line in shown), res.output
        assert "\x1f" not in res.output
        one_line_error(invoke(*base, "--artist", "Nina Simone", "--title", "Sinerman"),
                       "--title 'Sinerman'", "no such track", "close: Nina Simone – Sinnerman")
        one_line_error(invoke(*base, "--artist", "THE CURE", "--title", "lullaby"),
                       "fits 2 tracks", "The Cure – Lullaby", "the cure – LULLABY", "track_key")
        res = invoke(*base, "--artist", "The Cure", "--title", "Lullaby")  # the exact spelling settles it
        assert res.exit_code == 0, res.output
        one_line_error(invoke(*base), "--sessions FILE or --artist")
    finally:
        path.write_bytes(saved)


def test_recommend_display_names():
    from toolkit.recommend import display_name

    assert display_name("Nina Simone\x1fSinnerman", None, None) == "Nina Simone – Sinnerman"
    assert display_name("t1", "A", "One") == "A – One"  # the name columns win over the key
    assert display_name("spotify:track:1", None, None) == "spotify:track:1"  # an id stands as it is


def test_recommend_leaves_out_played_tracks_for_a_run_chosen_that_way(trained, tmp_path):
    ws, ids = trained
    keys = pl.read_parquet(ws.dataset("tiny").items)["track_key"].to_list()
    sessions = pl.DataFrame({"session": ["a", "a"], "position": [1, 2], "track_key": [keys[0], keys[1]]})
    sessions.write_parquet(tmp_path / "s.parquet")
    plain = train(ws, TrainConfig(dataset="tiny", model="pop"))
    excl = train(ws, TrainConfig(dataset="tiny", model="pop", exclude_played=True))
    tops = {}
    for run in (plain.id, excl.id):
        res = invoke("recommend", "--run", run, "--sessions", tmp_path / "s.parquet", "-k", 3, "--out",
                     tmp_path / f"{run}.parquet", "--workspace", ws.root)
        assert res.exit_code == 0, res.output
        tops[run] = pl.read_parquet(tmp_path / f"{run}.parquet")["track_key"].to_list()
    # popularity ranks the two most played tracks first; the run validated without replays skips them
    assert {keys[0], keys[1]} & set(tops[plain.id]) and not {keys[0], keys[1]} & set(tops[excl.id])
    assert len(tops[excl.id]) == 3
