"""Arrow tables to and from the CSV text of PostgreSQL's COPY, without Python loops over rows.

COPY's CSV format tells NULL (an empty unquoted field) from an empty string
(``""``), which is exactly what Arrow's CSV writer produces and its reader
can be told to read back. Types PostgreSQL spells differently (booleans as
``t``/``f``, bytea as ``\\x..`` hex, JSON for nested values) are converted
here in both directions.
"""

from __future__ import annotations

import base64
import json
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

SCHEMA_TAG = "mqttids-arrow-schema:"


def to_copy_csv(table: pa.Table, quote_all: bool = False) -> pa.Buffer:
    """CSV text of ``table`` for ``COPY ... FROM STDIN (FORMAT csv)``.

    ``quote_all`` quotes every value: needed when a value could be the text
    ``\\.`` alone on a line, which COPY would take for the end of the data.
    """
    sink = pa.BufferOutputStream()
    style = "all_valid" if quote_all else "needed"
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style=style))
    return sink.getvalue()


def for_copy(table: pa.Table) -> pa.Table:
    """Columns whose Arrow text is not what PostgreSQL reads, rewritten as text."""
    arrays = []
    for arr in table.columns:
        arr = arr.combine_chunks()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if pa.types.is_nested(arr.type):
            arr = pa.array([None if v is None else json.dumps(v, default=str)
                            for v in arr.to_pylist()], pa.string())
        elif pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
            arr = pa.array([None if v is None else "\\x" + v.hex() for v in arr.to_pylist()],
                           pa.string())
        elif pa.types.is_float16(arr.type):
            arr = pc.cast(arr, pa.float32())
        arrays.append(arr)
    return pa.table(arrays, names=table.column_names)


def read_copy_csv(stream: BinaryIO, names: list[str], types: dict[str, pa.DataType]) -> pa.Table:
    """Parse ``COPY ... TO STDOUT (FORMAT csv)`` output with the given column types."""
    return pacsv.read_csv(
        stream,
        read_options=pacsv.ReadOptions(column_names=names, block_size=16 << 20),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=types, null_values=[""], strings_can_be_null=True,
            quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"]))


def from_text(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """A column read as text back to its Arrow type (small result tables only)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(target):
        return pc.cast(from_text(arr, target.value_type), target)
    if pa.types.is_string(target) or pa.types.is_large_string(target):
        return pc.cast(arr, target)
    if pa.types.is_nested(target):
        return pa.array([None if v is None else json.loads(v) for v in arr.to_pylist()], target)
    if pa.types.is_binary(target) or pa.types.is_large_binary(target):
        return pa.array([None if v is None else bytes.fromhex(v[2:]) for v in arr.to_pylist()],
                        target)
    if pa.types.is_boolean(target):
        return pc.equal(arr, "t")
    if pa.types.is_null(target):
        return pa.nulls(len(arr))
    return pc.cast(arr, target)


def schema_comment(arrow_schema: pa.Schema) -> str:
    """An Arrow schema as table-comment text, so a result table reads back with its types."""
    return SCHEMA_TAG + base64.b64encode(arrow_schema.serialize().to_pybytes()).decode("ascii")


def schema_from_comment(comment: str | None) -> pa.Schema | None:
    if not comment or not comment.startswith(SCHEMA_TAG):
        return None
    raw = base64.b64decode(comment[len(SCHEMA_TAG):])
    return pa.ipc.read_schema(pa.py_buffer(raw))
