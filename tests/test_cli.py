"""End to end through the command line, and one test per kind of bad input."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_prep_end_to_end(tiny_logs, tmp_path):
    ws = tmp_path / "ws"
    result = invoke("prep", tiny_logs, "--workspace", ws, "--max-len", 8)
    assert result.exit_code == 0, result.output
    assert "rows read" in result.output and "41" in result.output
    assert "dropped: exact_duplicate" in result.output
    ds = ws / "datasets" / "tiny_logs"
    for name in ("events.parquet", "items.parquet", "manifest.json", "train_seqs.npy", "test_next_pos.npy"):
        assert (ds / name).is_file(), name
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_kept"] + sum(manifest["rows_dropped"].values())
    assert manifest["config"]["max_len"] == 8
    listed = invoke("datasets", "--workspace", ws)
    assert listed.exit_code == 0 and "tiny_logs" in listed.output


def test_demo_runs_the_pipeline(tmp_path):
    result = invoke("demo", "--plays", 4000, "--users", 30, "--epochs", 1, "--workspace", tmp_path / "ws")
    assert result.exit_code == 0, result.output
    assert "dataset demo" in result.output and "positives-only" in result.output
    assert "run 1 of 5: pop / all" in result.output and "run 5 of 5: sasrec / contrastive" in result.output
    assert (tmp_path / "ws" / "datasets" / "demo" / "train_seqs.npy").is_file()
    assert "difference against sasrec / all" in " ".join(result.output.split())
    assert (tmp_path / "ws" / "demo" / "report.html").is_file()


def test_synth_then_prep(tmp_path):
    logs = tmp_path / "logs.parquet"
    result = invoke("synth", logs, "--users", 20, "--plays", 3000, "--tracks", 300, "--seed", 1)
    assert result.exit_code == 0, result.output
    assert logs.is_file()
    result = invoke("prep", logs, "--workspace", tmp_path / "ws")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "ws" / "datasets" / "logs" / "manifest.json").read_text())
    assert manifest["format"] == "generic" and manifest["rows_in"] == 3000
    assert 0.15 < manifest["skip_share"] < 0.5


@pytest.mark.parametrize("command", ["prep", "synth", "demo", "datasets", "version"])
def test_every_command_has_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output and f"toolkit {command}" in result.output.split("Examples:")[1]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_clean_error(result, *needles: str):
    """Exit 1, one line naming what is wrong, no traceback."""
    assert result.exit_code == 1, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    for needle in needles:
        assert needle in text, (needle, text)


def test_missing_column_names_the_columns_and_the_fix(tmp_path):
    logs = _write(tmp_path, "plays.csv", "listener,when,song\na,2024-01-01T00:00:00Z,x\n")
    result = invoke("prep", logs, "--format", "generic")
    assert_clean_error(result, "plays.csv", "listener", "--col user=")


def test_misnamed_col_option(tiny_logs):
    result = invoke("prep", tiny_logs, "--format", "generic", "--col", "track=song")
    assert_clean_error(result, "tiny_logs.csv", "song", "--col track")


def test_unknown_role_and_bad_col_syntax(tiny_logs):
    assert_clean_error(invoke("prep", tiny_logs, "--col", "tempo=bpm"), "unknown role")
    assert_clean_error(invoke("prep", tiny_logs, "--col", "user"), "role=column")


def test_unreadable_file(tmp_path):
    logs = _write(tmp_path, "plays.parquet", "this is not parquet")
    assert_clean_error(invoke("prep", logs, "--format", "generic"), "plays.parquet")


def test_empty_file(tmp_path):
    logs = _write(tmp_path, "plays.csv", "user_id,ts,track_id,played_ms\n")
    assert_clean_error(invoke("prep", logs), "plays.csv", "no rows")


def test_missing_path(tmp_path):
    assert_clean_error(invoke("prep", tmp_path / "nope.csv"), "nope.csv", "no such file")


def test_unknown_format(tiny_logs):
    """A usage error (click's exit status 2), one line listing the formats there are."""
    result = invoke("prep", tiny_logs, "--format", "itunes")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "'--format'" in result.output and "'itunes'" in result.output and "'spotify-extended'" in result.output


def test_unparseable_timestamps(tmp_path):
    logs = _write(tmp_path, "plays.csv", "user_id,ts,track_id\na,yesterday,x\nb,last week,y\n")
    assert_clean_error(invoke("prep", logs), "plays.csv", "'ts'", "--col ts=")


def test_wrong_type_of_played_time(tmp_path):
    rows = "".join(f"a,2024-01-01T00:0{i}:00Z,x{i},long\n" for i in range(3))
    logs = _write(tmp_path, "plays.csv", "user_id,ts,track_id,played_ms\n" + rows)
    assert_clean_error(invoke("prep", logs), "plays.csv", "'played_ms'")


def test_some_bad_rows_are_dropped_and_counted(tmp_path, tiny_logs):
    text = tiny_logs.read_text()
    bad = "u1,2024-01-01T10:01:00Z,t9,Z,Nine,-5,100000\nu1,not a time,t1,A,One,1,1\n,2024-01-01T10:02:00Z,t1,A,One,1,1\n"
    logs = _write(tmp_path, "plays.csv", text + bad)
    result = invoke("prep", logs, "--workspace", tmp_path / "ws")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "ws" / "datasets" / "plays" / "manifest.json").read_text())
    dropped = manifest["rows_dropped"]
    assert dropped["negative_played_ms"] == 1 and dropped["unparseable_ts"] == 1 and dropped["null_user"] == 1
    assert manifest["rows_in"] == 44 == manifest["rows_kept"] + sum(dropped.values())


def test_everything_filtered_away(tiny_logs):
    assert_clean_error(invoke("prep", tiny_logs, "--min-session-len", 1000), "filtered away", "--min-session-len")


def test_unrecognised_format(tmp_path):
    logs = _write(tmp_path, "weather.csv", "city,temp\nOslo,3\n")
    assert_clean_error(invoke("prep", logs), "weather.csv", "--format generic")


def test_bad_option_value(tiny_logs):
    assert_clean_error(invoke("prep", tiny_logs, "--skip-ratio", 2), "--skip-ratio")


def test_an_error_naming_a_column_with_a_newline_stays_one_line(tmp_path):
    logs = tmp_path / "plays.csv"
    logs.write_text('"a\nb",c\n1,2\n')  # a header whose first column name holds a newline
    result = invoke("prep", logs, "--format", "generic", "--workspace", tmp_path / "ws")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and "a\\nb" in result.output, result.output


# ---------------------------------------------------------------------------------------------
# the shape of the command line: thin commands, no import circles

CLI_PACKAGE = Path(__file__).resolve().parents[1] / "toolkit" / "cli"
# A command parses its options, calls one library function and prints what it returns; that fits in
# 25 lines.  The bound leaves 5 lines for train, which still maps its options onto TrainConfig by hand.
COMMAND_BODY_LINES = 30


def command_bodies() -> dict[str, int]:
    """Each registered command's body length in lines (after its docstring), found by parsing the
    module that defines it."""
    lengths = {}
    for info in app.registered_commands:
        fn = inspect.unwrap(info.callback)
        fn = getattr(fn, "body", fn)  # a command whose options settings.with_options made
        path = Path(inspect.getsourcefile(fn))
        assert path.parent == CLI_PACKAGE, f"{fn.__name__} is defined outside toolkit/cli: {path}"
        node = next(n for n in ast.parse(path.read_text()).body
                    if isinstance(n, ast.FunctionDef) and n.name == fn.__name__)
        body = node.body[1:] if ast.get_docstring(node) is not None else node.body
        lengths[f"{path.name}::{fn.__name__}"] = node.end_lineno - body[0].lineno + 1
    return lengths


def test_every_command_body_is_short():
    lengths = command_bodies()
    assert len(lengths) == len(app.registered_commands) >= 11
    assert {k: n for k, n in lengths.items() if n > COMMAND_BODY_LINES} == {}


def cli_imports() -> dict[str, set[tuple[str, str]]]:
    """For each module of toolkit/cli: the (module, name) pairs it imports from the toolkit, at any depth
    of the module (a command's own imports included); ``name`` is '' for ``import module``."""
    found = {}
    for path in sorted(CLI_PACKAGE.glob("*.py")):
        module = "toolkit.cli" if path.stem == "__init__" else f"toolkit.cli.{path.stem}"
        pairs = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("toolkit"):
                pairs |= {(node.module, alias.name) for alias in node.names}
            elif isinstance(node, ast.Import):
                pairs |= {(alias.name, "") for alias in node.names if alias.name.startswith("toolkit")}
        found[module] = pairs
    return found


def test_the_cli_modules_import_no_circle_and_no_private_names():
    imports = cli_imports()
    edges = {}
    for module, pairs in imports.items():
        # ``from toolkit.cli import prep`` names the submodule toolkit.cli.prep
        targets = {f"{m}.{n}" if f"{m}.{n}" in imports else m for m, n in pairs}
        edges[module] = {t for t in targets if t in imports and t != module}
    assert "toolkit.cli" not in set().union(*edges.values()), "a command module imports the app's own module"

    def circle_from(module, path):
        for nxt in sorted(edges[module]):
            if nxt in path:
                return path[path.index(nxt):] + [nxt]
            found = circle_from(nxt, path + [nxt])
            if found:
                return found
        return None

    assert [c for c in (circle_from(m, [m]) for m in edges) if c] == []
    private = sorted(f"{module}: {m}.{n}" for module, pairs in imports.items() for m, n in pairs
                     if n.startswith("_") and not n.startswith("__"))
    assert private == []
