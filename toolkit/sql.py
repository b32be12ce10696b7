"""SQL lives in ``sql/<what_it_produces>.sql`` and is loaded by name; scalars are bound as
``$name`` parameters, never formatted into the text."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import duckdb

_PARAM = re.compile(r"\$([a-z_][a-z0-9_]*)")


def sql_dir() -> Path:
    """The folder holding the SQL files: beside the package in a checkout, inside it when installed."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "sql", here / "_sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no sql/ folder beside {here}; reinstall the toolkit")


@cache
def load(name: str) -> str:
    """Text of ``sql/<name>.sql`` (``name`` may contain a sub-folder, e.g. ``checks/valid_labels``)."""
    return (sql_dir() / f"{name}.sql").read_text(encoding="utf-8")


def params_of(text: str) -> set[str]:
    """Names of the ``$params`` a SQL text uses (comments stripped first)."""
    body = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    return set(_PARAM.findall(body))


def relation(con: duckdb.DuckDBPyConnection, name: str, **params) -> duckdb.DuckDBPyRelation:
    """Run ``sql/<name>.sql`` and return its result as a relation (lazy where DuckDB allows)."""
    text = load(name)
    wanted = params_of(text)
    missing = wanted - params.keys()
    if missing:
        raise TypeError(f"sql/{name}.sql needs parameters {sorted(missing)}")
    bound = {k: v for k, v in params.items() if k in wanted}
    return con.sql(text, params=bound) if bound else con.sql(text)


def run_checks(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Run every audit in ``sql/checks/``; each returns offending rows.  Returns name -> row count."""
    found = {}
    for path in sorted((sql_dir() / "checks").glob("*.sql")):
        found[path.stem] = len(relation(con, f"checks/{path.stem}").fetchall())
    return found


def one(con: duckdb.DuckDBPyConnection, query: str, params: dict | None = None) -> tuple | None:
    """First row of an ad-hoc query (the whole result is consumed, as DuckDB requires)."""
    rows = con.execute(query, params or {}).fetchall()
    return rows[0] if rows else None
