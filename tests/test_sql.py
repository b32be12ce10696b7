"""Golden-row tests for sql/*.sql (cases in tests/sql/cases/*.yaml) and header checks of every SQL file.

A case: ``name``, ``sql`` (file name without .sql, e.g. ``sessionize`` or ``checks/valid_labels``),
``params`` (``*_ts`` values are ISO strings), ``inputs`` (view -> ``{types: {col: TYPE}, rows: [...]}``),
``expected`` (rows; only their columns are compared), and either ``order_by`` (compare as a multiset)
or ``ordered: true`` (compare in output order).  ``xfail: <why>`` marks a known SQL bug.
"""

from __future__ import annotations

import re
from datetime import datetime
from itertools import takewhile
from pathlib import Path

import duckdb
import pytest
import yaml

from toolkit import sql
from toolkit.schema import PLAY_COLUMNS

CASES = Path(__file__).parent / "sql" / "cases"
SQL_NAMES = sorted(p.relative_to(sql.sql_dir()).with_suffix("").as_posix() for p in sql.sql_dir().rglob("*.sql"))


def _cases():
    for path in sorted(CASES.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8")):
            marks = [pytest.mark.xfail(reason=case["xfail"], strict=True)] if "xfail" in case else []
            yield pytest.param(case, id=f"{path.stem}::{case['name']}", marks=marks)


ALL_CASES = list(_cases())


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("set TimeZone = 'UTC'")  # as prep does: timestamptz -> timestamp must not depend on the machine
    yield c
    c.close()


def _create_input(con: duckdb.DuckDBPyConnection, view: str, spec: dict) -> None:
    types = spec["types"]
    columns = ", ".join(f'"{c}" {t}' for c, t in types.items())
    con.execute(f'create temp table "{view}" ({columns})')
    rows = spec.get("rows") or []
    for row in rows:
        assert set(row) <= set(types), f"input {view}: columns {set(row) - set(types)} have no type"
    if rows:
        slots = ", ".join("?" * len(types))
        con.executemany(f'insert into "{view}" values ({slots})', [[row.get(c) for c in types] for row in rows])


def _as_ts(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _param(name: str, value):
    return _as_ts(value) if name.endswith("_ts") else value


def _sort_key(row: dict, cols: list[str]):
    return [(row[c] is None, row[c] if row[c] is not None else 0) for c in cols]


@pytest.mark.parametrize("case", ALL_CASES)
def test_golden(con, case):
    for view, spec in (case.get("inputs") or {}).items():
        _create_input(con, view, spec)
    params = {k: _param(k, v) for k, v in (case.get("params") or {}).items()}
    rel = sql.relation(con, case["sql"], **params)
    names = rel.columns
    ts_cols = {n for n, t in zip(names, rel.types) if str(t).startswith("TIMESTAMP")}
    rows = [dict(zip(names, r)) for r in rel.fetchall()]

    expected = case["expected"] or []
    cols = list(expected[0]) if expected else []
    assert all(list(row) == cols for row in expected), "every expected row must list the same columns"
    assert set(cols) <= set(names), f"output lacks {set(cols) - set(names)}"
    want = [{c: _as_ts(row[c]) if c in ts_cols else row[c] for c in cols} for row in expected]
    got = [{c: row[c] for c in cols} for row in rows]
    if not case.get("ordered"):
        order = case.get("order_by") or cols
        want, got = sorted(want, key=lambda r: _sort_key(r, order)), sorted(got, key=lambda r: _sort_key(r, order))
    assert got == want


def test_every_sql_file_has_golden_cases():
    covered = {p.values[0]["sql"] for p in ALL_CASES}
    assert set(SQL_NAMES) - covered == set()


@pytest.mark.parametrize("name", SQL_NAMES)
def test_header_declares_parameters(name):
    text = sql.load(name)
    assert text.startswith("-- purpose:"), f"sql/{name}.sql must open with '-- purpose:'"
    header = list(takewhile(lambda line: line.startswith("--"), text.splitlines()))
    starts = [i for i, line in enumerate(header) if line.startswith("-- parameters:")]
    assert len(starts) == 1, f"sql/{name}.sql needs one '-- parameters:' header line"
    # The entry runs on over continuation lines ('--' plus several spaces) up to the next '-- key:'.
    block = [header[starts[0]], *takewhile(lambda line: not re.match(r"-- \S", line), header[starts[0] + 1:])]
    declared = set(re.findall(r"\$([a-z_][a-z0-9_]*)", "\n".join(block)))
    if not declared:
        assert block[0].strip() == "-- parameters: none"
    assert declared == sql.params_of(text)


def test_play_stream_hashes_equal_ids_alike_and_marks_missing_session_ids(con):
    """Hash values belong to DuckDB, so check what prep relies on: one id, one hash."""
    con.execute("create temp table kept (src_row bigint, user_id varchar, ts timestamp, ts_end timestamp, "
                "track_key varchar, played_ms bigint, duration_ms bigint, skip_flag boolean, "
                "session_hint varchar, position_hint bigint)")
    con.executemany("insert into kept values (?, ?, '2020-01-01', null, ?, 1, null, null, ?, null)", [
        [1, "u1", "a", "s"], [2, "u2", "a", None], [3, "u1", "b", "s"], [4, "u3", "b", "t"],
    ])
    rel = sql.relation(con, "play_stream")
    rows = {row["src_row"]: row for row in (dict(zip(rel.columns, r)) for r in rel.fetchall())}
    assert rows[1]["user_hash"] == rows[3]["user_hash"] != rows[2]["user_hash"] != rows[4]["user_hash"]
    assert rows[1]["track_hash"] == rows[2]["track_hash"] != rows[3]["track_hash"] == rows[4]["track_hash"]
    assert rows[1]["hint"] == rows[3]["hint"] != rows[4]["hint"] and rows[2]["hint"] == -1
    assert all(r["hint"] >= 0 for k, r in rows.items() if k != 2)  # a signed 63-bit value: -1 stays free


NORMALIZERS = [n for n in SQL_NAMES if n.startswith("normalize_")]


@pytest.mark.parametrize("name", NORMALIZERS)
def test_normalizers_emit_the_canonical_play_columns(con, name):
    """Every reader's SQL hands clean.sql the columns of schema.PLAY_COLUMNS, in that order, then
    parse_error (what the normalize_*.sql headers promise); extra columns may follow."""
    case = next(p.values[0] for p in ALL_CASES if p.values[0]["sql"] == name)
    for view, spec in (case.get("inputs") or {}).items():
        _create_input(con, view, spec)
    params = {k: _param(k, v) for k, v in (case.get("params") or {}).items()}
    columns = tuple(sql.relation(con, name, **params).columns)
    assert columns[: len(PLAY_COLUMNS) + 1] == (*PLAY_COLUMNS, "parse_error")
