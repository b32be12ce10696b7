"""How the command line prints a table: rich on a terminal, plain text through a pipe, JSON and CSV
for programs.

Rich lays a table out to the console's width, and a pipe or file has none, so rich assumes 80
columns and ellipsises whatever does not fit ("0.…", "da…").  Text that leaves the terminal is
therefore never laid out by width: each table becomes aligned plain text, every cell whole, one row
per line.  ``--json`` and ``--csv`` give programs the values themselves, unrounded.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

GAP = "  "  # between the columns of a plain table


def print_table(console: Console, table: Table) -> None:
    """The table as rich draws it on a terminal wide enough for its every word, else as plain text
    (``table_text``): squeezed further, rich would cut numbers and headers, or drop whole columns."""
    if console.is_terminal and fits(console, table):
        console.print(table)
    else:
        console.print(table_text(table), markup=False, highlight=False, soft_wrap=True, emoji=False)


def fits(console: Console, table: Table) -> bool:
    """Whether rich can draw ``table`` in the console's width by wrapping text at spaces only."""
    unbounded = console.options.update_width(10**6)  # measure every word, not words already cut to the width
    return Measurement.get(console, unbounded, table).minimum <= console.width


def table_text(table: Table) -> str:
    """A rich table as plain text: its title, the header and one line per row with every cell whole
    (a multi-line cell joined on one line), numbers aligned right, then its caption."""
    columns = table.columns
    rows = [[plain(cell) for cell in column.cells] for column in columns]
    body = [list(row) for row in zip(*rows)] if columns else []
    headers = [plain(c.header) for c in columns] if table.show_header else None
    right = {i for i, c in enumerate(columns) if c.justify == "right"}
    lines = [plain(table.title)] if table.title else []
    lines.append(plain_table(headers, body, right))
    if table.caption:
        lines.append(plain(table.caption))
    return "\n".join(line for line in lines if line)


def plain_table(headers: Sequence[str] | None, rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> str:
    """Rows of text as aligned columns, ``GAP`` apart; the columns in ``right`` aligned right."""
    right = set(right)
    table = ([list(headers)] if headers is not None else []) + [list(r) for r in rows]
    if not table:
        return ""
    widths = [max(cell_len(row[i]) for row in table) for i in range(len(table[0]))]

    def pad(i: int, text: str) -> str:
        fill = " " * (widths[i] - cell_len(text))
        return fill + text if i in right else text + fill

    return "\n".join(GAP.join(pad(i, text) for i, text in enumerate(row)).rstrip() for row in table)


def plain(cell: Any) -> str:
    """A table cell (text, rich markup or Text) as plain text on one line."""
    if cell is None:
        return ""
    if isinstance(cell, Text):
        text = cell.plain
    elif isinstance(cell, str):
        text = Text.from_markup(cell).plain
    else:
        text = str(cell)
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


# ---------------------------------------------------------------------------------------------
# listings (``toolkit runs``, ``datasets``, ``clean``)


def print_records(records: list[dict], as_json: bool, as_csv: bool) -> bool:
    """Print ``records`` for a program (``--json`` or ``--csv``); False when the table is wanted."""
    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv", param_hint="'--json' / '--csv'")
    if as_json:
        typer.echo(json_text(records))
    elif as_csv:
        typer.echo(csv_text(records), nl=False)
    return as_json or as_csv


def shown(value, fmt: str = "{}") -> str:
    """A listing cell: '-' for a value a damaged or unfinished artifact does not have."""
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def print_listing(console: Console, title: str, text_cols: list[str], number_cols: list[str], rows: list[list[str]]) -> None:
    """A table whose first column never wraps (it holds ids) and whose numbers align right; nothing
    is ever cut short (folded on a narrow terminal, whole in a pipe).  Cells are Text, so a name
    with brackets is shown as it is, not read as markup."""
    table = Table(title=title if console.is_terminal else None)  # a pipe gets the header row first
    for i, col in enumerate(text_cols):
        table.add_column(col, no_wrap=i == 0, overflow="fold")
    for col in number_cols:
        table.add_column(col, justify="right", overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    print_table(console, table)




def size_text(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"


# ---------------------------------------------------------------------------------------------
# for programs


def json_text(value: Any, sort_keys: bool = False) -> str:
    """Strict JSON (what ``jq`` and every JSON parser accept): NaN and infinity become null, dates
    ISO text, paths strings, numpy values Python numbers."""
    return json.dumps(jsonable(value), indent=2, sort_keys=sort_keys, allow_nan=False, ensure_ascii=False)


def jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int)):
        return value
    if hasattr(value, "tolist"):  # a numpy scalar or array
        return jsonable(value.tolist())
    return str(value)


def csv_text(records: Sequence[dict]) -> str:
    """Records as CSV with a header row: every key whose values are scalars, in the records' order
    (nested values, such as a run's whole config, are left to ``--json``); an empty cell for a value
    that is missing, None or not finite."""
    nested = {k for r in records for k, v in r.items() if isinstance(v, (dict, list, tuple))}
    columns = [k for k in dict.fromkeys(k for r in records for k in r) if k not in nested]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for r in records:
        writer.writerow([_csv_cell(r.get(k)) for k in columns])
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    value = jsonable(value)
    return "" if value is None else value
