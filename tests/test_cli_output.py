"""What the command line prints: whole tables through a pipe, JSON and CSV that parse, help that tells
the truth about the defaults, and one-line usage errors."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import typer
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from toolkit import __version__
from toolkit.artifacts import Workspace, list_datasets, list_runs
from toolkit.cli import app
from toolkit.cli.output import csv_text, json_text, plain_table, print_table, table_text
from toolkit.config import FEEDBACK_MODES, MODELS, NAME_MAX, PrepConfig, TrainConfig
from toolkit.grids import DEFAULT_GRID, GRIDS, cell_name
from toolkit.readers import FORMATS
from toolkit.settings import complete_feedback

runner = CliRunner()
COMMANDS = list(typer.main.get_command(app).commands)
LONG_NAME = "a-listening-log-with-a-name-long-enough-to-overflow-any-eighty-column-table-" + "x" * 20
CLI_DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"  # the commands' reference


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with one prepared dataset under a long name and two trained count baselines."""
    from tests.conftest import TINY_LOGS
    from toolkit.prep import prep
    from toolkit.train import train

    workspace = Workspace.at(tmp_path_factory.mktemp("out") / "ws")
    prep([TINY_LOGS], workspace, PrepConfig(name=LONG_NAME, max_len=4))
    for model in ("pop", "markov"):
        train(workspace, TrainConfig(model=model))
    return workspace


# ---------------------------------------------------------------------------------------------
# tables through a pipe: CliRunner's stdout is not a terminal


def test_piped_runs_are_whole(ws):
    assert len(LONG_NAME) <= NAME_MAX
    result = invoke("runs", "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    lines = result.output.splitlines()
    assert re.split(r"\s{2,}", lines[0].strip()) == ["id", "dataset", "status", "epochs", "NDCG@10", "HR@10",
                                                      "skip HR@10", "wall s"]
    rows = list_runs(ws)
    assert len(lines) == 1 + len(rows)  # one line per run: nothing wrapped
    for row in rows:
        line = next(line for line in lines if line.startswith(row["id"]))
        assert LONG_NAME in line and f"{row['valid_ndcg10']:.4f}" in line and f"{row['valid_hr10']:.4f}" in line
    # the metric has more digits than the table shows; it is rounded, never cut to "0.…"
    assert any(len(repr(r["valid_ndcg10"])) > 8 for r in rows)


def test_piped_datasets_are_whole(ws):
    result = invoke("datasets", "--workspace", ws.root)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["name", "format", "plays", "kept", "users", "sessions", "tracks", "skips", "created"]
    assert lines[1].startswith(LONG_NAME + "  ") and "…" not in result.output
    share = list_datasets(ws)[0]["skip_share"]
    assert f"{share:.1%}" in lines[1]


def test_runs_as_json_and_csv(ws):
    rows = list_runs(ws)
    result = invoke("runs", "--workspace", ws.root, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["id"] for r in data] == [r["id"] for r in rows]
    assert {"id", "dataset", "model", "feedback", "seed", "status", "valid_ndcg10", "config", "path"} <= set(data[0])
    assert data[0]["valid_ndcg10"] == rows[0]["valid_ndcg10"] and data[0]["dataset"] == LONG_NAME  # unrounded

    result = invoke("runs", "--workspace", ws.root, "--csv")
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["id"] for r in table] == [r["id"] for r in rows]
    assert float(table[0]["valid_ndcg10"]) == rows[0]["valid_ndcg10"] and table[0]["status"] == "finished"
    assert "config" not in table[0]  # nested: --json has it


def test_datasets_as_json_and_csv(ws):
    result = invoke("datasets", "--workspace", ws.root, "--json")
    assert result.exit_code == 0, result.output
    (data,) = json.loads(result.output)
    assert data["name"] == LONG_NAME and data["rows_in"] == 41 and data["status"] == "ready"
    result = invoke("datasets", "--workspace", ws.root, "--csv")
    (row,) = list(csv.DictReader(io.StringIO(result.output)))
    assert row["name"] == LONG_NAME and int(row["rows_kept"]) == data["rows_kept"]
    assert float(row["skip_share"]) == data["skip_share"]


def test_empty_workspace_lists_nothing_as_json_and_csv(tmp_path):
    assert json.loads(invoke("runs", "--workspace", tmp_path / "empty", "--json").output) == []
    assert invoke("datasets", "--workspace", tmp_path / "empty", "--csv").output == "\n"


def test_json_and_csv_together_is_a_usage_error(ws):
    result = invoke("runs", "--workspace", ws.root, "--json", "--csv")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "--json" in result.output and "--csv" in result.output


def test_report_piped_as_json_and_as_csv(ws, tmp_path):
    base = ["report", "--workspace", ws.root, "--bootstrap", 100, "--baseline", "pop / all"]
    result = invoke(*base)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and LONG_NAME in result.output
    line = next(line for line in result.output.splitlines() if line.startswith("markov / all"))
    assert re.search(r"\d\.\d{4}", line)  # the group's numbers on its own line

    result = invoke(*base, "--json", "--out", tmp_path / "r.md")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # "wrote ..." went to stderr
    assert {"groups", "comparisons", "protocol", "dataset", "runs"} <= set(data)
    assert [g["key"] for g in data["groups"]] == ["pop / all", "markov / all"]
    assert "wrote" in result.stderr and (tmp_path / "r.md").is_file()

    result = invoke(*base, "--csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["table"] for r in rows} == {"groups", "differences"}
    ndcg = {(r["table"], r["group"]): r for r in rows if r["metric"] == "ndcg@10"}
    group = next(g for g in data["groups"] if g["key"] == "markov / all")
    assert float(ndcg["groups", "markov / all"]["value"]) == pytest.approx(group["metrics"]["ndcg@10"]["mean"])
    diff = next(c for c in data["comparisons"] if c["metric"] == "ndcg@10")
    assert ndcg["differences", "markov / all"]["baseline"] == "pop / all"
    assert float(ndcg["differences", "markov / all"]["value"]) == pytest.approx(diff["diff"])


# ---------------------------------------------------------------------------------------------
# the printing helpers


def test_plain_table_aligns_and_keeps_every_cell():
    text = plain_table(["name", "n"], [["a", "1"], ["longer name", "12345.6789"]], right={1})
    assert text.splitlines() == ["name                  n",
                                 "a                     1",
                                 "longer name  12345.6789"]


def test_a_rich_table_in_a_pipe_is_plain_text():
    table = Table(title="runs in [bold]ws[/bold]", caption="a caption")
    table.add_column("model / feedback")
    table.add_column("ndcg@10", justify="right")
    table.add_row("sasrec / all\n[dim]3 seeds[/dim]", "[bold]0.1234\n±0.0100[/bold]")
    assert table_text(table).splitlines() == ["runs in ws",
                                              "model / feedback" + " " * 13 + "ndcg@10",
                                              "sasrec / all 3 seeds  0.1234 ±0.0100",
                                              "a caption"]
    piped = Console(file=io.StringIO(), width=20, force_terminal=False)
    print_table(piped, table)
    assert piped.file.getvalue().splitlines()[2] == "sasrec / all 3 seeds  0.1234 ±0.0100"  # not cut at 20


@pytest.mark.parametrize("width", [50, 130, 250])
def test_a_terminal_table_never_cuts_a_cell(ws, monkeypatch, width):
    """On a terminal too narrow for every word of the table the plain text comes instead (the terminal
    wraps its lines, nothing is lost); a wide one gets rich's table with every cell whole."""
    from toolkit.cli import workspace

    screen = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    monkeypatch.setattr(workspace, "out", screen)  # the console of `toolkit runs`
    assert invoke("runs", "--workspace", ws.root).exit_code == 0
    text = screen.file.getvalue()
    assert "…" not in text and ("┃" in text) == (width == 250)
    for row in list_runs(ws):
        assert row["id"] in text and f"{row['valid_ndcg10']:.4f}" in text and LONG_NAME in text
    for header in ("NDCG@10", "skip HR@10", "epochs"):
        assert header in text


def test_json_is_strict_and_csv_leaves_non_finite_empty():
    from datetime import datetime

    text = json_text({"a": float("nan"), "b": [float("inf"), 1.5], "when": datetime(2024, 1, 2)})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "when": "2024-01-02T00:00:00"}
    assert "NaN" not in text and "Infinity" not in text
    rows = list(csv.reader(io.StringIO(csv_text([{"x": float("nan"), "y": "a,b", "z": {"nested": 1}}]))))
    assert rows == [["x", "y"], ["", "a,b"]]


# ---------------------------------------------------------------------------------------------
# help


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_short_help_and_an_example(command):
    long = invoke(command, "--help")
    short = invoke(command, "-h")
    assert long.exit_code == short.exit_code == 0, short.output
    assert short.output == long.output
    assert "Example" in long.output and f"toolkit {command}" in long.output.split("Example", 1)[1]


def test_top_level_help_version_and_completion():
    assert invoke("-h").exit_code == 0 and "Commands" in invoke("-h").output
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == __version__
    assert invoke("version").output.strip() == __version__
    assert "--install-completion" in invoke("--help").output


def test_feedback_completes_each_mode_of_a_combination():
    assert complete_feedback("pos") == ["positives-only"]
    assert complete_feedback("positives-only+con") == ["positives-only+contrastive"]
    assert len(complete_feedback("")) == len(FEEDBACK_MODES)


def test_train_help_groups_options_into_panels():
    text = invoke("train", "-h").output
    panels = re.findall(r"╭─ (.+?) ─", text)
    assert {"Input", "Model", "Loss", "Skips", "Training", "Runtime", "Output"} <= set(panels)
    for name in MODELS:
        assert name in text.split("╭─ Model")[1].split("╰")[0]


# the command-line options that are no config field
NOT_CONFIG = {"logs", "force", "keep_unpacked", "workspace", "set_", "resume", "help", "devices"}
RENAMED = {"session_gap": "session_gap_s", "col": "cols", "compile_": "compile"}


def _defaults(command: str) -> dict:
    params = typer.main.get_command(app).commands[command].params
    return {p.name: p.default for p in params}


@pytest.mark.parametrize("command,config", [("prep", PrepConfig), ("train", TrainConfig)])
def test_every_option_default_is_the_config_default(command, config):
    defaults = {f.name: f.default for f in fields(config)}
    options = _defaults(command)
    for name, default in options.items():
        if name in NOT_CONFIG:
            continue
        field = RENAMED.get(name, name)
        assert field in defaults, f"--{name} maps to no {config.__name__} field; add it to RENAMED or NOT_CONFIG"
        shown = tuple(default) if isinstance(default, list) else default
        assert shown == defaults[field], (name, shown, defaults[field])


def test_report_and_study_defaults_are_the_protocol_and_study_defaults():
    from toolkit.report import Protocol
    from toolkit.study import StudyConfig

    report = _defaults("report")
    for f in fields(Protocol):
        if f.name in report:
            assert report[f.name] == f.default, f.name
    assert {"split", "positions", "bootstrap", "resample", "baseline", "exclude_played"} <= set(report)
    study = _defaults("study")
    assert study["grid"] == StudyConfig.grid == DEFAULT_GRID and study["seeds"] == StudyConfig.seeds


def _between(text: str, start: str, end: str) -> str:
    return " ".join(text.split(start, 1)[1].split(end, 1)[0].split())


def test_study_help_lists_each_grid_as_the_code_defines_it():
    """Every grid with all its cells (a grid that extends another as that one plus the rest), the
    default marked: what ``toolkit/grids.py`` runs, not a second hand-kept list."""
    text = " ".join(invoke("study", "-h").output.split())
    for name, cells in GRIDS.items():
        label = f"{name} (default)" if name == DEFAULT_GRID else name
        whole = f" {label}: " + ", ".join(cell_name(*c) for c in cells)
        extended = [f" {label}: {base} + " + ", ".join(cell_name(*c) for c in cells[len(base_cells):])
                    for base, base_cells in GRIDS.items() if base != name and cells[:len(base_cells)] == base_cells]
        assert any(f"{line} " in text + " " for line in [whole, *extended]), (name, text)
    assert f"[default: {DEFAULT_GRID}]" in text


def test_the_cli_doc_describes_the_default_grid_the_code_runs():
    """docs/cli.md's list of the default grid names each count baseline as often as the grid runs it,
    SASRec, and exactly the grid's SASRec feedback modes."""
    text = " ".join(CLI_DOC.read_text().split())
    listed = text.split(f"`{DEFAULT_GRID}` (default:", 1)[1].split("`skip`", 1)[0].lower()
    core = GRIDS[DEFAULT_GRID]
    assert {m for m in MODELS if re.search(rf"\b{m}\b", listed)} == {m for m, _, _ in core}
    for model in {m for m, _, _ in core} - {"sasrec"}:
        assert len(re.findall(rf"\b{model}\b", listed)) == sum(m == model for m, _, _ in core), model
    assert set(re.findall(r"`([a-z+-]+)`", listed)) == {f for m, f, _ in core if m == "sasrec"}


# ---------------------------------------------------------------------------------------------
# usage errors: one line, the valid choices, exit status 2


@pytest.mark.parametrize("args,choices", [
    (["train", "--model", "transformer"], MODELS),
    (["prep", "logs.csv", "--format", "itunes"], FORMATS),
    (["study", "--grid", "huge"], tuple(GRIDS)),
    (["train", "--feedback", "all+bogus"], FEEDBACK_MODES),
    (["report", "--positions", "first"], ("all", "last")),
])
def test_an_invalid_choice_is_one_line_listing_the_choices(args, choices):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert len(text.splitlines()) == 1 and "Traceback" not in text, text
    assert text.startswith("error: ") and f"toolkit {args[0]}" in text and "-h" in text
    assert all(c in text for c in choices), text


def test_an_unknown_option_is_one_line():
    result = invoke("runs", "--colour")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "--colour" in result.output


def _colour_run(extra_env: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(FORCE_COLOR="1", TERM="xterm-256color", **extra_env)
    proc = subprocess.run([sys.executable, "-m", "toolkit", "train", "--model", "none"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    return proc.stderr


def test_no_color_turns_the_colour_off():
    assert "\x1b[31m" in _colour_run({})  # the red "error:" on a colour terminal
    plain = _colour_run({"NO_COLOR": "1"})
    assert "\x1b[3" not in plain and "error:" in plain
