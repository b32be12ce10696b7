"""A table in memory as ``prep``'s input: a polars or pandas DataFrame, or a pyarrow Table.

The table becomes one pyarrow Table, registered with DuckDB as the view ``raw`` exactly where a
file's rows would be (``readers.register_raw``), so every format's SQL reads it unchanged.  Its
place in the dataset's identity, where a file has the sha256 of its bytes, is ``fingerprint``: a
hash of the values themselves, so the same rows give the same dataset however they were built
(polars, pandas or pyarrow, in one chunk or many) and one changed value gives another.

Formats are recognised by their columns, as for files; the text layouts (``sequences``,
``lastfm``, ``lastfm-csv``) have no columns to recognise and are read from files only.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from toolkit.errors import ConfigError, EmptyInputError, InputError, MissingColumnsError
from toolkit.readers import (
    EXPORT_FORMATS, FEEDBACK, FORMATS, REQUIRED, Source, SourceFile, format_of_columns, generic_mapping,
)

TEXT_FORMATS = ("sequences", "lastfm", "lastfm-csv")  # layouts of text files, not columns
ROW = "__toolkit_row"  # the row number added before registration (the files' src_row)
RESERVED = ("src_row", "source_user", ROW)  # names the toolkit adds beside the table's own columns
DEFAULT_LISTENER = "listener"  # the listener of a table in a format without a user column, unless user= says


def as_table(data) -> pa.Table | None:
    """``data`` as one pyarrow Table when it is a table in memory (polars DataFrame or LazyFrame,
    pandas DataFrame, pyarrow Table or RecordBatch); None for anything else (paths).  pandas is
    never imported here: a pandas frame can only exist once its caller has imported it."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    polars = sys.modules.get("polars")
    if polars is not None and isinstance(data, polars.LazyFrame):
        data = data.collect()
    if polars is not None and isinstance(data, polars.DataFrame):
        return data.to_arrow()
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        # the index is row labels, not plays: only the columns are data
        return pa.Table.from_pandas(data, preserve_index=False)
    return None


def describe(table: pa.Table) -> str:
    """How a table is named in messages (it has no file name)."""
    return f"the input table ({table.num_rows:,} rows)"


def resolve_frame(table: pa.Table, fmt: str, cols: dict[str, str], user: str | None, shown: str) -> Source:
    """The Source of a table: its format (recognised from the columns with ``auto``), the checked
    columns and, for a format without a user column, its one listener."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: unknown format; choose one of {', '.join(FORMATS)}")
    if fmt in TEXT_FORMATS:
        raise ConfigError(f"format={fmt!r} is a layout of text files: pass the file itself, or the table "
                          "with format='generic' and cols={'user': ..., 'ts': ..., 'track': ...}")
    columns = tuple(table.column_names)
    if table.num_rows == 0:
        raise EmptyInputError(f"{shown}: holds no rows; pass a table with at least one play")
    clash = [c for c in columns if c in RESERVED]
    if clash:
        raise InputError(f"{shown}: column(s) {', '.join(clash)} are names the toolkit adds itself; rename them")
    if fmt == "auto":
        found = format_of_columns(columns)
        if found is None or found == FEEDBACK:
            raise InputError(f"{shown}: cannot recognise the format from its columns ({', '.join(columns)}); "
                             "pass format='generic' with cols={'user': ..., 'ts': ..., 'track': ...}")
        fmt = found
    mapping: tuple[tuple[str, str], ...] = ()
    if fmt == "generic":
        mapping = generic_mapping(columns, cols, shown)
    elif fmt in REQUIRED:
        missing = [c for c in REQUIRED[fmt] if c not in columns]
        if missing:
            raise MissingColumnsError(shown, missing, list(columns),
                                      f"Is it really {fmt} data? Otherwise use format='generic' with cols=...")
    owner = user if user is not None else (DEFAULT_LISTENER if fmt in EXPORT_FORMATS else None)
    # the file stands for the table in every message and count (prep names src.files[0].shown)
    stand_in = SourceFile(Path(shown), owner, shown, declared=user is not None)
    return Source((stand_in,), fmt, columns, mapping, frame=table)


def relation(con: duckdb.DuckDBPyConnection, src: Source) -> duckdb.DuckDBPyRelation:
    """The table's rows as a file's would be read: ``src_row`` (its row number, the order ties keep),
    every column, and ``source_user``."""
    table = src.frame
    numbered = table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    con.register("input_frame", numbered)
    return con.sql(f'select "{ROW}" as src_row, * exclude ("{ROW}"), $user::varchar as source_user from input_frame',
                   params={"user": src.files[0].user})


def fingerprint(table: pa.Table) -> str:
    """sha256 over the column names and values of ``table``, in order.

    Values are hashed by kind, not by physical type: every integer column as int64, every float as
    float64, every string as UTF-8 text, so the same rows from polars (large or view strings), pandas
    and pyarrow agree; chunking never matters, and null is told apart from every value.
    """
    h = hashlib.sha256(b"toolkit table v1\0")
    h.update(f"{table.num_rows}\0".encode())
    for name, column in zip(table.column_names, table.columns):
        h.update(name.encode() + b"\0")
        for part in _column_parts(column.combine_chunks() if column.num_chunks else pa.array([], column.type)):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
    return h.hexdigest()


def _column_parts(col: pa.Array) -> list[bytes]:
    """Canonical bytes of one column: its kind, where it is null, and its values with nulls filled."""
    kind = col.type
    if pa.types.is_dictionary(kind):
        return _column_parts(col.dictionary_decode())
    valid = np.packbits(col.is_valid().to_numpy(zero_copy_only=False)).tobytes()
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        target = pa.uint64() if pa.types.is_unsigned_integer(kind) and kind.bit_width == 64 else pa.int64()
        values = pc.fill_null(col.cast(target), 0).to_numpy().astype("<i8" if target == pa.int64() else "<u8")
        return [b"int" if not pa.types.is_boolean(kind) else b"bool", valid, values.tobytes()]
    if pa.types.is_floating(kind):
        values = pc.fill_null(col.cast(pa.float64()), 0.0).to_numpy().astype("<f8")
        return [b"float", valid, values.tobytes()]
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_time(kind) or pa.types.is_duration(kind):
        # the unit and zone are part of what a time means: kept in the kind
        count = col.cast(pa.int32() if kind.bit_width == 32 else pa.int64()).cast(pa.int64())
        values = pc.fill_null(count, 0).to_numpy().astype("<i8")
        return [f"time {kind}".encode(), valid, values.tobytes()]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return [b"text", valid, *_text_parts(pc.fill_null(col.cast(pa.large_string()), ""))]
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return [b"binary", valid, *_text_parts(pc.fill_null(col.cast(pa.large_binary()), b""))]
    # nested and rare types (lists, structs, decimals): their values as JSON text, slower but exact
    return [b"json", valid, json.dumps(col.to_pylist(), default=str).encode()]


def _text_parts(col: pa.Array) -> list[bytes]:
    """Lengths and concatenated bytes of a null-free large string or binary array."""
    lengths = pc.binary_length(col).to_numpy().astype("<i8")
    offsets = np.frombuffer(col.buffers()[1], dtype="<i8", count=len(col) + 1, offset=col.offset * 8)
    data = col.buffers()[2]
    body = data[offsets[0]:offsets[-1]].to_pybytes() if data is not None and len(col) else b""
    return [lengths.tobytes(), body]
