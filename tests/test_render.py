"""Report rendering: hand-computed table cells, best-in-column bolding, self-contained HTML, plots,
empty reports and atomic writes."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest

from toolkit import render
from toolkit.errors import ConfigError
from toolkit import plots
from toolkit.plots import (
    plot_dataset,
    plot_hr_curves,
    plot_metric_bars,
    plot_rank_distribution,
    plot_training_curves,
)
from toolkit.render import fmt_count, to_html, to_markdown, write_report

NAN = float("nan")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = (plot_metric_bars, plot_hr_curves, plot_training_curves, plot_rank_distribution, plot_dataset)
ODD_ID = "sasrec-all-s1-<b>x</b>"


def _stat(mean, lo, hi, values):
    return {"mean": mean, "lo": lo, "hi": hi, "values": values}


def _curve(losses, ndcgs):
    return [{"epoch": e, "loss": l, "valid_ndcg@10": n} for e, (l, n) in enumerate(zip(losses, ndcgs))]


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
         "rank_hist": {"edges": edges, "pos": [5, 4, 3, 2, 1, 1], "skip": [1, 1, 2, 3, 4, 5]}}
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
              "wall_s": 4000.0, "curve": _curve([9.1, 8.2, 7.9], [0.021, 0.036, 0.034]) if s else []}
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
                     "note": "Sessions are resampled with replacement."},
        "metrics": ["hr@10", "ndcg@10", "skip_hr@10", "auc"],
        "lower_is_better": ["skip_hr@10"],
        "groups": [a, b, c],
        "comparisons": [
            {"group": b["key"], "baseline": a["key"], "metric": "hr@10", "diff": 0.0100, "lo": 0.0040,
             "hi": 0.0160, "n_sessions": 1234, "excludes_zero": True},
            {"group": b["key"], "baseline": a["key"], "metric": "skip_hr@10", "diff": -0.0050, "lo": -0.0090,
             "hi": 0.0010, "n_sessions": 1234, "excludes_zero": False},
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
                                                         "3", "1", "1 h 06 min"]
    assert md_row(md, "pop-all-s0-cccc0000")[-1] == "1.2 s"
    assert "&lt;b&gt;x&lt;/b&gt;" in md and "<b>" not in md  # raw HTML never reaches a Markdown viewer


def test_comparisons_sentence_without_baseline():
    report = make_report()
    report["protocol"]["baseline"] = None
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
    assert page.count("<table>") == 5  # dataset, splits, main, paired differences, runs


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
    assert "data:image/png" not in page and page.count('<p class="note">') == len(PLOTS)


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
