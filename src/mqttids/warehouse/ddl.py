"""The warehouse tables, declared from the schema module: names, types, constraints.

PostgreSQL gets them as DDL (:func:`create_statements`); the Parquet store
uses the same declarations to check what it is given, so that both stores
refuse the same things. ``packets`` holds the schema's columns under their
storage names, plus ``id`` (for Spark's partitioned JDBC reads) and
``batch_id`` (the load it came from).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from mqttids import schema
from mqttids.warehouse.constraints import check_sql
from mqttids.warehouse.errors import TableError

FORMATS = ("csv", "pcap", "pcapng", "parquet")
INGEST_TABLES = ("packets", "ingest_batches", "rejects")  # written only by ingest
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Column:
    """A column of a fixed table, in SQL and in Arrow."""

    name: str
    sql: str
    arrow: pa.DataType
    not_null: bool = False
    check: str | None = None
    default: str | None = None
    identity: bool = False
    identity_cache: int = 1  # ids a session takes from the sequence at a time


def _labels_in(col: str) -> str:
    return f"{col} IN ({', '.join(repr(v) for v in schema.LABELS)})"


_TS = pa.timestamp("us", tz="UTC")

INGEST_BATCHES = (
    Column("batch_id", "bigint", pa.int64(), identity=True),
    Column("source", "text", pa.string(), not_null=True),
    Column("sha256", "text", pa.string(), not_null=True, check="sha256 ~ '^[0-9a-f]{64}$'"),
    Column("format", "text", pa.string(), not_null=True,
           check=f"format IN ({', '.join(repr(f) for f in FORMATS)})"),
    Column("split", "text", pa.string(), not_null=True,
           check=f"split IN ({', '.join(repr(s) for s in schema.SPLITS)})"),
    Column("label", "text", pa.string(), check=_labels_in("label")),
    Column("rows_read", "bigint", pa.int64(), not_null=True, default="0",
           check="rows_read >= 0"),
    Column("rows_loaded", "bigint", pa.int64(), not_null=True, default="0",
           check="rows_loaded >= 0"),
    Column("rows_rejected", "bigint", pa.int64(), not_null=True, default="0",
           check="rows_rejected >= 0"),
    Column("started", "timestamptz", _TS, not_null=True),
    Column("ended", "timestamptz", _TS),
)
INGEST_BATCHES_CHECKS = (
    ("rows_add_up", "rows_read = rows_loaded + rows_rejected"),
    ("ended_after_start", "ended IS NULL OR ended >= started"),
)

REJECTS = (
    Column("batch_id", "bigint", pa.int64(), not_null=True),
    Column("line", "bigint", pa.int64(), check="line >= 1"),
    Column("frame", "bigint", pa.int64(), check="frame >= 1"),
    Column("reason", "text", pa.string(), not_null=True, check="reason <> ''"),
    Column("raw", "text", pa.string(), not_null=True),
)
REJECTS_CHECKS = (("has_position", "line IS NOT NULL OR frame IS NOT NULL"),)

ALERTS = (
    Column("id", "bigint", pa.int64(), identity=True),
    Column("time", "timestamptz", _TS, not_null=True),
    Column("flow", "text", pa.string()),
    Column("src", "text", pa.string()),
    Column("dst", "text", pa.string()),
    Column("sport", "integer", pa.int32(), check="sport BETWEEN 0 AND 65535"),
    Column("dport", "integer", pa.int32(), check="dport BETWEEN 0 AND 65535"),
    Column("client_id", "text", pa.string()),
    Column("label", "text", pa.string(), not_null=True, check=_labels_in("label")),
    Column("score", "double precision", pa.float64(),
           check="score > '-Infinity' AND score < 'Infinity'"),
    Column("evidence", "jsonb", pa.string()),
    Column("model", "text", pa.string()),
    Column("created", "timestamptz", _TS, not_null=True, default="now()"),
)

MODELS = (
    Column("id", "bigint", pa.int64(), identity=True),
    Column("name", "text", pa.string(), not_null=True, check="name <> ''"),
    Column("kind", "text", pa.string(), not_null=True),
    Column("features", "text", pa.string()),
    Column("path", "text", pa.string()),
    Column("created", "timestamptz", _TS, not_null=True, default="now()"),
    Column("metrics", "jsonb", pa.string()),
    Column("params", "jsonb", pa.string()),
    Column("fingerprint", "text", pa.string()),
)

FIXED_RESULT_TABLES: dict[str, tuple[Column, ...]] = {"alerts": ALERTS, "models": MODELS}

# Internal columns of packets that readers do not return (they are not schema columns).
# A cached sequence spares the load a sequence lock per row; ids stay unique,
# with gaps where a session ends before using all it took.
PACKET_EXTRA = (
    Column("id", "bigint", pa.int64(), identity=True, identity_cache=10000),
    Column("batch_id", "bigint", pa.int64(), not_null=True),
)


def check_table_name(name: str) -> str:
    """A result table's name: lower-case letters, digits and underscores."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise TableError(f"table name {name!r} is not usable: use lower-case letters, digits "
                         "and underscores, starting with a letter (at most 63 characters)")
    return name


def fixed_columns(name: str, table: pa.Table) -> list[Column]:
    """The fixed-table columns that ``table`` fills; refuses unknown or missing ones."""
    columns = {c.name: c for c in FIXED_RESULT_TABLES[name] if not c.identity}
    unknown = [c for c in table.column_names if c not in columns]
    if unknown:
        raise TableError(f"table {name!r} has no column(s) {', '.join(unknown)}; its columns "
                         f"are {', '.join(columns)} (see docs/warehouse.md)")
    missing = [c.name for c in columns.values()
               if c.not_null and c.default is None and c.name not in table.column_names]
    if missing:
        raise TableError(f"table {name!r} needs column(s) {', '.join(missing)}; add them")
    return [columns[c] for c in table.column_names]


def _column_sql(col: Column) -> str:
    parts = [col.name, col.sql]
    if col.identity:
        parts.append("GENERATED ALWAYS AS IDENTITY")
        if col.identity_cache > 1:
            parts.append(f"(CACHE {col.identity_cache})")
    if col.not_null:
        parts.append("NOT NULL")
    if col.default is not None:
        parts.append(f"DEFAULT {col.default}")
    if col.check is not None:
        parts.append(f"CONSTRAINT {col.name}_check CHECK ({col.check})")
    return " ".join(parts)


def _table_sql(qualified: str, columns: tuple[Column, ...], checks=(), key: str | None = None,
               extra_lines: tuple[str, ...] = ()) -> str:
    lines = [_column_sql(c) for c in columns] + list(extra_lines)
    if key:
        lines.append(f"PRIMARY KEY ({key})")
    lines += [f"CONSTRAINT {n} CHECK ({expr})" for n, expr in checks]
    body = ",\n  ".join(lines)
    return f"CREATE TABLE IF NOT EXISTS {qualified} (\n  {body}\n)"


def packets_sql(qualified: str) -> str:
    """``packets``: every schema column with its SQL type and the loader's rules as CHECKs."""
    lines = [f"{f.storage} {f.sql_type}" for f in schema.ALL_FIELDS]
    checks = [c for f in schema.ALL_FIELDS for c in check_sql(f.name)]
    return _table_sql(qualified, PACKET_EXTRA, checks, extra_lines=tuple(lines))


def create_statements(pg_schema: str) -> list[str]:
    """Every statement that creates the schema and its fixed tables; safe to repeat."""
    q = f"{pg_schema}."
    return [
        f"CREATE SCHEMA IF NOT EXISTS {pg_schema}",
        _table_sql(q + "ingest_batches", INGEST_BATCHES, INGEST_BATCHES_CHECKS, key="batch_id",
                   extra_lines=("CONSTRAINT sha256_once UNIQUE (sha256)",)),
        packets_sql(q + "packets"),
        # A BRIN index is a few pages for millions of rows and lets a partitioned
        # JDBC read scan only its id range. Each index costs the load about
        # 0.5 microseconds a row, so batch_id has none (deleting a batch scans).
        f"CREATE INDEX IF NOT EXISTS packets_id_brin ON {q}packets USING brin (id) "
        "WITH (autosummarize = on)",
        _table_sql(q + "rejects", REJECTS, REJECTS_CHECKS,
                   extra_lines=(f"FOREIGN KEY (batch_id) REFERENCES {q}ingest_batches "
                                "(batch_id) ON DELETE CASCADE",)),
        f"CREATE INDEX IF NOT EXISTS rejects_batch ON {q}rejects (batch_id)",
        _table_sql(q + "alerts", ALERTS, key="id"),
        _table_sql(q + "models", MODELS, key="id"),
    ]


def sql_type(arrow: pa.DataType) -> str:
    """The PostgreSQL type a result-table column of this Arrow type is stored as."""
    if pa.types.is_dictionary(arrow):
        return sql_type(arrow.value_type)
    simple = [
        (pa.types.is_boolean, "boolean"), (pa.types.is_int8, "smallint"),
        (pa.types.is_int16, "smallint"), (pa.types.is_uint8, "smallint"),
        (pa.types.is_int32, "integer"), (pa.types.is_uint16, "integer"),
        (pa.types.is_int64, "bigint"), (pa.types.is_uint32, "bigint"),
        (pa.types.is_uint64, "numeric(20)"), (pa.types.is_float16, "real"),
        (pa.types.is_float32, "real"), (pa.types.is_float64, "double precision"),
        (pa.types.is_string, "text"), (pa.types.is_large_string, "text"),
        (pa.types.is_binary, "bytea"), (pa.types.is_large_binary, "bytea"),
        (pa.types.is_date, "date"), (pa.types.is_decimal, "numeric"),
        (pa.types.is_null, "text"),
    ]
    for test, name in simple:
        if test(arrow):
            return name
    if pa.types.is_timestamp(arrow):
        return "timestamptz" if arrow.tz else "timestamp"
    if pa.types.is_nested(arrow):
        return "jsonb"
    raise TableError(f"a column of Arrow type {arrow} cannot be stored; use numbers, text, "
                     "booleans, times, or lists and structs of those")
