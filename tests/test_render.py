"""Report rendering: hand-computed table cells, best-in-column bolding, self-contained HTML, plots,
empty reports and atomic writes."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest

from toolkit.errors import ConfigError
from toolkit.report import format as report_format
from toolkit.report import plots, render, signals
from toolkit.report.plots import (
    plot_dataset,
    plot_hr_curves,
    plot_metric_bars,
    plot_paired_differences,
    plot_rank_distribution,
    plot_training_curves,
)
from toolkit.report.format import fmt_count
from toolkit.report.render import to_html, to_markdown, write_report

NAN = float("nan")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = (plot_metric_bars, plot_hr_curves, plot_training_curves, plot_rank_distribution, plot_dataset,
         plot_paired_differences)
ODD_ID = "sasrec-all-s1-<b>x</b>"


def _stat(mean, lo, hi, values):
    return {"mean": mean, "lo": lo, "hi": hi, "values": values}


def _curve(losses, ndcgs, other=None):
    return [{"epoch": e, "loss_next": l, "loss_other": {"contrastive": other[e]} if other else {},
             "valid_ndcg@10": n} for e, (l, n) in enumerate(zip(losses, ndcgs))]


def make_report() -> dict:
    """Three groups: A (3 seeds), B (3 seeds, NaN ndcg@10, best hr@10 and skip_hr@10), C (1 seed)."""
    edges = [1, 2, 4, 8, 16, 32, 64]
    a = {"key": "sasrec / all", "model": "sasrec", "feedback": "all", "options": {},
         "runs": ["sasrec-all-s0-aaaa0000", ODD_ID, "sasrec-all-s2-aaaa0002"], "seeds": [0, 1, 2],
         "n_sessions": 1234, "n_pos": 40000, "n_skip": 20000,
         "metrics": {"hr@10": _stat(0.0700, 0.0650, 0.0762, [0.07, 0.068, 0.072]),
                     "ndcg@10": _stat(0.0400, 0.0380, 0.0420, [0.04, 0.039, 0.041]),
                     "skip_hr@10": _stat(0.0500, 0.0470, 0.0530, [0.05, 0.049, 0.051]),
                     "auc": _stat(0.5500, 0.5300, 0.5700, [0.55, 0.54, 0.56])},
         "hr_curve": {"k": [1, 5, 10, 20], "hr": [0.02, 0.05, 0.07, 0.09]},
         "rank_hist": {"edges": edges, "seeds": 3, "pos": [5, 4, 3, 2, 1, 1], "skip": [1, 1, 2, 3, 4, 5],
                       "pos_cold": [0, 0, 0, 0, 0, 1]}}
    b = {"key": "sasrec / feedback-input+contrastive", "model": "sasrec", "feedback": "feedback-input+contrastive",
         "options": {"alpha": 0.1, "context": "input"},
         "runs": ["sasrec-fic-s0-bbbb0000", "sasrec-fic-s1-bbbb0001", "sasrec-fic-s2-bbbb0002"], "seeds": [0, 1, 2],
         "n_sessions": 1234, "n_pos": 40000, "n_skip": 20000,
         "metrics": {"hr@10": _stat(0.0800, 0.0750, 0.0850, [0.08, 0.078, 0.082]),
                     "ndcg@10": _stat(NAN, NAN, NAN, [NAN, NAN, NAN]),
                     "skip_hr@10": _stat(0.0450, 0.0420, 0.0480, [0.045, 0.044, 0.046]),
                     "auc": _stat(0.5800, 0.5600, 0.6000, [0.58, 0.57, 0.59])},
         "hr_curve": {"k": [1, 5, 10, 20], "hr": [0.03, 0.06, 0.08, 0.10]},
         "rank_hist": {"edges": edges, "pos": [6, 4, 3, 2, 1, 0], "skip": [1, 1, 1, 3, 4, 6]}}
    c = {"key": "pop / all", "model": "pop", "feedback": "all", "options": {}, "runs": ["pop-all-s0-cccc0000"],
         "seeds": [0], "n_sessions": 1234, "n_pos": 40000, "n_skip": 20000,
         "metrics": {"hr@10": _stat(0.0123, 0.0100, 0.0150, [0.0123]),
                     "ndcg@10": _stat(0.0050, 0.0040, 0.0060, [0.005]),
                     "skip_hr@10": _stat(0.0600, 0.0550, 0.0650, [0.06]),
                     "auc": _stat(NAN, NAN, NAN, [NAN])}}  # no hr_curve, no rank_hist
    runs = [{"id": rid, "group": a["key"], "seed": s, "status": "finished", "epochs_done": 3, "best_epoch": 2,
             "wall_s": 312.5, "curve": _curve([9.0, 8.0, 7.5], [0.02, 0.03, 0.035 + 0.001 * s])}
            for s, rid in enumerate(a["runs"])]
    runs += [{"id": rid, "group": b["key"], "seed": s, "status": "finished", "epochs_done": 3, "best_epoch": 1,
              "wall_s": 4000.0, "curve": _curve([9.1, 8.2, 7.9], [0.021, 0.036, 0.034], [0.6, 0.5, 0.45]) if s else []}
             for s, rid in enumerate(b["runs"])]  # seed 0 has no curve at all
    runs.append({"id": c["runs"][0], "group": c["key"], "seed": 0, "status": "finished", "epochs_done": 1,
                 "best_epoch": 0, "wall_s": 1.25, "curve": [{"epoch": 0, "valid_ndcg@10": 0.005}]})
    return {
        "title": "Skip-aware next-track recommendation: tinyset", "generated": "2026-11-26 23:10 UTC",
        "toolkit_version": "0.1.0",
        "dataset": {"name": "tinyset", "format": "generic", "rows_in": 1270305, "rows_kept": 1262661,
                    "dropped": {"short_session": 7644}, "users": 47, "sessions": 49331, "items": 165854,
                    "skip_share": 0.359, "median_session_len": 14,
                    "splits": {"train": {"sessions": 39465, "events": 1000000},
                               "valid": {"sessions": 4933, "events": 131000},
                               "test": {"sessions": 4933, "events": 131661}},
                    "session_lengths": {"edges": [2, 3, 4, 8, 100000], "counts": [10, 20, 15, 5]}},
        "protocol": {"split": "test", "positions": "all", "exclude_played": False, "catalogue": 165854,
                     "bootstrap": 1000, "interval": 0.95, "seed": 0, "baseline": "sasrec / all",
                     "baselines": ["sasrec / all", "sasrec / positives-only"],
                     "note": "Sessions are resampled with replacement."},
        "metrics": ["hr@10", "ndcg@10", "skip_hr@10", "auc"],
        "lower_is_better": ["skip_hr@10"],
        "groups": [a, b, c],
        "comparisons": [
            {"group": b["key"], "baseline": a["key"], "metric": "hr@10", "diff": 0.0100, "lo": 0.0040,
             "hi": 0.0160, "n_sessions": 1234, "excludes_zero": True},
            {"group": b["key"], "baseline": a["key"], "metric": "skip_hr@10", "diff": -0.0050, "lo": -0.0090,
             "hi": 0.0010, "n_sessions": 1234, "excludes_zero": False},
            {"group": b["key"], "baseline": "sasrec / positives-only", "metric": "ndcg@10", "diff": 0.0030,
             "lo": -0.0010, "hi": 0.0070, "n_sessions": 1234, "excludes_zero": False},
        ],
        "runs": runs,
    }


def empty_report() -> dict:
    return {"title": "Empty", "dataset": {}, "protocol": {"baseline": None}, "metrics": ["hr@10"],
            "lower_is_better": [], "groups": [], "comparisons": [], "runs": []}


def md_row(md: str, first_cell: str) -> list[str]:
    """The cells of the first Markdown table row that starts with ``first_cell``."""
    for line in md.splitlines():
        if line.startswith(f"| {first_cell}"):
            return [c.strip() for c in line.strip().strip("|").split(" | ")]
    raise AssertionError(f"no row starting with {first_cell!r}")


@pytest.fixture(scope="module")
def md() -> str:
    return to_markdown(make_report())


@pytest.fixture(scope="module")
def page() -> str:
    return to_html(make_report())


def test_markdown_main_table_cells_are_hand_computed(md):
    assert "| group (options) | hr@10 | ndcg@10 | skip_hr@10 ↓ | auc | seeds | sessions | positive queries | " \
           "skip queries |" in md
    a = md_row(md, "sasrec / all")
    # hr@10: mean 0.0700, interval [0.0650, 0.0762] -> half-width (0.0762 - 0.0650) / 2 = 0.0056
    assert a[1] == "0.0700 ± 0.0056"
    assert a[5:] == ["3", "1,234", "40,000", "20,000"]
    b = md_row(md, "sasrec / feedback-input+contrastive")
    assert b[0] == "sasrec / feedback-input+contrastive (alpha=0.1, context=input)"
    c = md_row(md, "pop / all")
    assert c[1] == "0.0123 (1 seed)"  # one seed: the mean only, even though lo / hi are given
    assert c[5] == "1"


def test_markdown_bolds_the_best_cell_and_never_nan(md):
    a, b, c = md_row(md, "sasrec / all"), md_row(md, "sasrec / feedback"), md_row(md, "pop / all")
    assert b[1] == "**0.0800 ± 0.0050**" and not a[1].startswith("**")  # hr@10: max wins
    # ndcg@10: B is NaN (would beat everything in a naive max); A's 0.0400 is the best real value
    assert b[2] == "–"
    assert a[2] == "**0.0400 ± 0.0020**" and c[2] == "0.0050 (1 seed)"
    # skip_hr@10 is lower-is-better: B's 0.0450 beats A's 0.0500 and C's 0.0600
    assert b[3] == "**0.0450 ± 0.0030**" and a[3] == "0.0500 ± 0.0030" and c[3] == "0.0600 (1 seed)"
    assert c[4] == "–" and b[4] == "**0.5800 ± 0.0200**"


def test_nan_is_not_best_whatever_the_group_order():
    report = make_report()
    report["groups"] = report["groups"][::-1]  # the NaN cells come first: a naive max() would keep them
    text = to_markdown(report)
    assert md_row(text, "sasrec / all")[2] == "**0.0400 ± 0.0020**"
    assert md_row(text, "sasrec / feedback")[4] == "**0.5800 ± 0.0200**"
    assert md_row(text, "pop / all")[2] == "0.0050 (1 seed)"


def test_markdown_sections_protocol_dataset_and_glossary(md):
    assert md.startswith("# Skip-aware next-track recommendation: tinyset\n")
    for heading in ("## Protocol", "## Dataset", "## Results", "## Paired differences", "## Runs", "## Glossary"):
        assert heading in md
    assert "full catalogue of 165,854 tracks" in md
    assert "95 % t-interval over its seeds" in md and "(1,000 replicates, seed 0)" in md
    assert "stay in the ranking" in md  # exclude_played = False
    assert md_row(md, "rows read")[1] == "1,270,305"
    assert md_row(md, "skip share")[1] == "0.3590 (35.9%)"
    assert md_row(md, "train")[1:] == ["39,465", "1,000,000"]
    assert "- **delta_hr@10**: hr@10 − skip_hr@10" in md
    assert "100 = the most played track" in md


def test_markdown_paired_differences_and_runs(md):
    hr = md_row(md, "sasrec / feedback-input+contrastive | sasrec / all | hr@10")
    assert hr[3:] == ["+0.0100", "[+0.0040, +0.0160]", "1,234 sessions", "✓ better"]
    skip = md_row(md, "sasrec / feedback-input+contrastive | sasrec / all | skip_hr@10")
    assert skip[3:5] == ["-0.0050", "[-0.0090, +0.0010]"] and skip[-1] == ""
    assert md_row(md, "sasrec-fic-s0-bbbb0000")[1:] == ["sasrec / feedback-input+contrastive", "0", "finished",
                                                         "3", "1", "1 h 07 min"]  # 4000 s = 66.7 min, rounded
    assert md_row(md, "pop-all-s0-cccc0000")[-1] == "1.2 s"
    assert "&lt;b&gt;x&lt;/b&gt;" in md and "<b>" not in md  # raw HTML never reaches a Markdown viewer


def test_comparisons_sentence_without_baseline():
    report = make_report()
    report["protocol"]["baseline"] = report["protocol"]["baselines"] = None
    text = to_markdown(report)
    assert "No baseline group was set" in text and "✓ better" not in text


def test_html_is_self_contained_with_one_image_per_plot(page):
    assert page.startswith("<!DOCTYPE html>")
    assert page.count('<img src="data:image/png;base64,') == len(PLOTS)
    lowered = page.lower()
    for bad in ('src="http', "src='http", 'href="http', "href='http", "<script", "<link", "@import", "url("):
        assert bad not in lowered
    assert "<style>" in page


def test_html_escapes_report_strings(page):
    assert "sasrec-all-s1-&lt;b&gt;x&lt;/b&gt;" in page
    assert "<b>x</b>" not in page


def test_html_has_the_tables(page):
    assert "0.0700<span class=\"pm\">± 0.0056</span>" in page
    assert "<strong>0.0800<span class=\"pm\">± 0.0050</span></strong>" in page
    assert "0.0123<span class=\"pm\">(1 seed)</span>" in page
    assert page.count("<table>") == 6  # dataset, splits, main, paired differences (two baselines), runs


@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_plots_are_png_of_the_expected_size(plot):
    png = plot(make_report())
    assert png[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", png[16:24])  # IHDR
    assert width == 11 * plots.DPI and 300 < height < 1500


@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_plots_return_none_without_data(plot):
    assert plot(empty_report()) is None


def test_plots_survive_partial_and_nan_data():
    report = make_report()
    for g in report["groups"]:
        g["metrics"] = {m: _stat(NAN, NAN, NAN, []) for m in report["metrics"]}
        g["hr_curve"] = {"k": [1, 2], "hr": [NAN, NAN]}
        g["rank_hist"] = {"edges": [1, 2, 4], "pos": [0, 0], "skip": [1]}  # empty and wrong length
    for run in report["runs"]:
        run["curve"] = [{"epoch": 0, "loss": NAN}]
    report["dataset"] = {"session_lengths": {"edges": [2, 3], "counts": [0]}}
    for c in report["comparisons"]:
        c["diff"] = NAN
    for plot in PLOTS:
        assert plot(report) is None
    page = to_html(report)
    assert "data:image/png" not in page
    assert "No training curves in this report." in page and "No metrics to plot." in page


def test_empty_report_renders_both_formats():
    report = empty_report()
    text = to_markdown(report)
    assert "# Empty" in text and "No baseline group was set" in text and "_(none)_" in text
    page = to_html(report)
    # no paired-difference figure, not even its note, without paired differences
    assert "data:image/png" not in page and page.count('<p class="note">') == len(PLOTS) - 1


def test_write_report_html_writes_html_and_markdown_atomically(tmp_path, monkeypatch):
    targets = []
    real_atomic = render.atomic_path

    def recording_atomic(path):
        targets.append(path)
        return real_atomic(path)

    monkeypatch.setattr(render, "atomic_path", recording_atomic)
    report = make_report()
    out = tmp_path / "out" / "report.html"
    written = write_report(report, out)
    assert written == [out, tmp_path / "out" / "report.md"]
    assert targets == written
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.md"]  # no temp left
    assert out.read_text(encoding="utf-8") == to_html(report)
    assert written[1].read_text(encoding="utf-8") == to_markdown(report)


def test_write_report_md_and_json(tmp_path):
    report = make_report()
    assert write_report(report, tmp_path / "r.md") == [tmp_path / "r.md"]
    assert not (tmp_path / "r.html").exists()
    [path] = write_report(report, tmp_path / "r.json")
    text = path.read_text(encoding="utf-8")
    assert text.index('"comparisons"') < text.index('"dataset"') < text.index('"groups"')  # sorted keys
    back = json.loads(text)
    assert math.isnan(back["groups"][1]["metrics"]["ndcg@10"]["mean"])
    assert back["groups"][0]["metrics"]["hr@10"]["hi"] == 0.0762


def test_write_report_rejects_unknown_suffix_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"\.html, \.md or \.json"):
        write_report(make_report(), tmp_path / "r.txt")
    out = tmp_path / "r.html"
    out.write_text("old", encoding="utf-8")

    def broken(report):
        raise RuntimeError("boom")

    monkeypatch.setattr(render, "to_markdown", broken)
    with pytest.raises(RuntimeError):
        write_report(make_report(), out)
    assert out.read_text(encoding="utf-8") == "old" and [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_counts_and_no_pyplot():
    assert fmt_count(1262661) == "1,262,661" and fmt_count(NAN) == "–" and fmt_count(None) == "–"
    for module in (render, plots):
        source = Path(module.__file__).read_text(encoding="utf-8")
        assert "matplotlib.pyplot" not in source and "import pyplot" not in source


# ---------------------------------------------------------------------------------------------
# the signals a reader needs first, and the figures' labels


def test_durations_round_once_and_carry():
    assert report_format.fmt_duration(119.6) == "2 min 00 s"  # not "1 min 60 s"
    assert report_format.fmt_duration(59.97) == "1 min 00 s" and report_format.fmt_duration(59.94) == "59.9 s"
    assert report_format.fmt_duration(3599.6) == "1 h 00 min" and report_format.fmt_duration(7230) == "2 h 00 min"
    assert report_format.fmt_duration(61.2) == "1 min 01 s" and report_format.fmt_duration(None) == "–"


def count_baseline_wins() -> dict:
    """markov beats every neural group: the verdict names it and a warning says no neural model beats it."""
    report = make_report()
    report["verdict"] = {
        "metric": "ndcg@10", "best": "markov / all", "best_mean": 0.0609, "runner_up": "pop / all",
        "vs_runner_up": {"diff": 0.0222, "lo": 0.0158, "hi": 0.0327},
        "best_count": "markov / all", "vs_best_count": None, "best_neural": "sasrec / all",
        "neural_vs_count": {"diff": -0.0399, "lo": -0.0596, "hi": -0.0207}}
    return report


def test_verdict_sentence_when_a_count_baseline_wins():
    md = to_markdown(count_baseline_wins())
    head = md.split("## Protocol")[0]
    assert ("**Best by test NDCG@10: markov / all (0.0609), +0.0222 [+0.0158, +0.0327] over the runner-up pop / all "
            "(the 95 % paired interval excludes zero); it is itself a count baseline.**") in head
    assert ("**Warning:** no neural model beats the best count baseline markov / all on test NDCG@10: the best neural "
            "group, sasrec / all, differs from it by -0.0399 [-0.0596, -0.0207] (the paired interval excludes zero).") \
        in head
    page = to_html(count_baseline_wins())
    assert '<p class="warning"><strong>Warning:</strong> no neural model beats' in page
    assert page.index('<p class="verdict">') < page.index("<h2>Protocol</h2>")


def test_verdict_when_a_neural_model_wins_names_both_margins_and_warns_of_nothing():
    report = make_report()
    report["verdict"] = {
        "metric": "ndcg@10", "best": "sasrec / all", "best_mean": 0.04, "runner_up": "sasrec / contrastive",
        "vs_runner_up": {"diff": 0.001, "lo": -0.002, "hi": 0.004},
        "best_count": "pop / all", "vs_best_count": {"diff": 0.035, "lo": 0.03, "hi": 0.04},
        "best_neural": "sasrec / all", "neural_vs_count": {"diff": 0.035, "lo": 0.03, "hi": 0.04}}
    line = signals.verdict_line(report)
    assert line == ("Best by test NDCG@10: sasrec / all (0.0400), +0.0010 [-0.0020, +0.0040] over the runner-up "
                    "sasrec / contrastive (the 95 % paired interval includes zero); +0.0350 [+0.0300, +0.0400] over "
                    "the best count baseline pop / all (the interval excludes zero).")
    assert not any(kind == "warning" and "count baseline" in text for kind, text in signals.signal_lines(report))
    # a lead whose interval reaches below zero is no win over the count baseline
    report["verdict"]["neural_vs_count"] = {"diff": 0.002, "lo": -0.001, "hi": 0.005}
    assert any("no neural model beats" in text for _, text in signals.signal_lines(report))
    # a report of the valid split says so, not "test"
    report["protocol"] = {**(report.get("protocol") or {}), "split": "valid"}
    assert signals.verdict_line(report).startswith("Best by valid NDCG@10: sasrec / all")
    assert any("count baseline pop / all on valid NDCG@10" in text for _, text in signals.signal_lines(report))


def test_cold_targets_and_last_epoch_are_flagged():
    report = make_report()
    report["dataset"]["split_diagnostics"] = {
        "test": {"listeners": 40, "listeners_without_train": 0, "targets": 1000, "cold_targets": 120,
                 "cold_share": 0.12, "hr_ceiling": 0.88}}
    lines = dict((text.split(":")[0], kind) for kind, text in signals.signal_lines(report))
    md = to_markdown(report)
    assert ("**Note:** 12.0% of the test targets (120 of 1,000) are tracks never played in train: no model learned "
            "anything about them, so none can be expected to hit them and HR@10 is at most 0.880.") in md
    # sasrec / all: best epoch 2 of 3 (the last); the contrastive group: best epoch 1; pop is no trained run
    assert "**Warning:** best epoch = last epoch for 3 of 6 trained runs: more epochs may help." in md
    assert md_row(md, "sasrec-all-s0-aaaa0000")[5] == "2 (last)" and md_row(md, "pop-all-s0-cccc0000")[5] == "0"
    for run in report["runs"]:
        run["best_epoch"] = run["epochs_done"] - 1
    assert "best epoch = last epoch for every trained run" in to_markdown(report)
    assert lines  # the cold line is one of the signals


def test_paired_differences_against_positives_only_too(md, page):
    assert "### Against sasrec / all" in md and "### Against sasrec / positives-only" in md
    row = md_row(md, "sasrec / feedback-input+contrastive | sasrec / positives-only | ndcg@10")
    assert row[3:5] == ["+0.0030", "[-0.0010, +0.0070]"]
    assert "<h3>Against sasrec / positives-only</h3>" in page
    assert "the groups “sasrec / all” and “sasrec / positives-only”" in md
    # the table of one baseline holds its rows only (the results document prints one per report)
    only_main = render.comparison_table(make_report())
    assert {r[1].text for r in only_main.rows} == {"sasrec / all"}


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures the plots draw, instead of their PNG bytes."""
    drawn = []
    monkeypatch.setattr(plots, "_png", lambda fig: drawn.append(fig) or b"png")
    return drawn


def _texts(fig) -> list[str]:
    out = [fig._suptitle.get_text()] if fig._suptitle else []
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()] + [t.get_text() for t in ax.get_xticklabels()]
        out += [t.get_text() for t in ax.texts]
    for legend in fig.legends:
        out += [t.get_text() for t in legend.get_texts()]
    return out


def test_metric_bars_label_the_axis_per_metric_and_show_auc_seen(figures):
    report = make_report()
    report["metrics"].append("auc_seen")
    for g, v in zip(report["groups"], (0.45, 0.52, NAN)):
        g["metrics"]["auc_seen"] = _stat(v, v - 0.01, v + 0.01, [v])
    plot_metric_bars(report)
    texts = _texts(figures[0])
    assert "share of queries" not in " ".join(t for t in texts if "HR:" not in t)  # NDCG and MRR are no shares
    assert "mean over queries (0–1)" in texts
    assert any(t.startswith("auc_seen") for t in texts) and any(t.startswith("auc\n") for t in texts)


def test_rank_histograms_say_the_seeds_and_label_the_cold_bin(figures):
    plot_rank_distribution(make_report())
    texts = " ".join(_texts(figures[0]))
    # sasrec / all: 3 seeds, 16 positive counts in all: 16 / 3 per seed
    assert "5 kept · 5 skipped per seed, mean of 3 seeds" in texts
    assert "shares averaged over seeds" in texts
    assert "positive, track never in train (cold)" in texts and "cold: 6%" in texts  # 1 of 16


def test_training_loss_plots_the_next_item_term_alone(figures):
    report = make_report()
    plot_training_curves(report)
    ndcg, loss, other = figures[0].axes[:3]
    assert loss.get_title() == "Training loss: next-item term" and other.get_title().startswith("Other loss terms")
    plotted = sorted(tuple(line.get_ydata()) for line in loss.lines)
    assert (9.1, 8.2, 7.9) in plotted  # the contrastive group's next-item term, its 0.6 / 0.5 / 0.45 not added
    assert sorted(tuple(line.get_ydata()) for line in other.lines) == [(0.6, 0.5, 0.45)] * 2


def test_validation_on_different_sessions_is_noted(figures):
    report = make_report()
    for run in report["runs"]:
        run["valid_sessions"] = 500 if run["group"].startswith("sasrec") else 0
    plot_training_curves(report)
    assert any("validated on different sessions: all, 500 drawn" in t.replace("\n", " ") for t in _texts(figures[0]))
    for run in report["runs"]:
        run["valid_sessions"] = 5000  # at least the whole validation split (4,933): every run saw all of it
    plot_training_curves(report)
    assert not any("different sessions" in t for t in _texts(figures[1]))


def test_paired_difference_plot_has_a_row_per_group_and_a_marker_per_baseline(figures):
    plot_paired_differences(make_report())
    fig = figures[0]
    assert [ax.get_title() for ax in fig.axes] == ["ndcg@10 (higher is better)", "hr@10 (higher is better)",
                                                   "skip_hr@10 (lower is better)"]
    texts = _texts(fig)
    assert "against sasrec / all" in texts and "against sasrec / positives-only" in texts
