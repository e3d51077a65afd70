"""The PostgreSQL warehouse: schema ``mqtt`` (configurable), loaded with COPY through psycopg 3.

One source is one transaction: the ledger row goes in first (its UNIQUE
sha256 makes a concurrent load of the same file wait, then skip), the rows
stream through a single ``COPY ... FROM STDIN`` while the next block is parsed
in a worker thread, the rejects follow, and the ledger row gets its counts.
If anything fails, the connection included, PostgreSQL rolls the whole batch
back: a re-run loads it exactly once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from collections.abc import Sequence

import pyarrow as pa

from mqttids import schema
from mqttids.errors import MissingDependencyError, UsageError
from mqttids.warehouse import copytext
from mqttids.warehouse.base import (Progress, Warehouse, check_split, load_workers,
                                    ordered_map, prepare_result_table, storage_columns)
from mqttids.warehouse.ddl import (FIXED_RESULT_TABLES, INGEST_BATCHES, REJECTS, check_table_name,
                                   create_statements, sql_type)
from mqttids.warehouse.dsn import jdbc_url, mask_dsn, scrub
from mqttids.warehouse.errors import (TableError, WarehouseConnectionError, WarehouseError,
                                      WarehouseURLError)
from mqttids.warehouse.report import BatchReport
from mqttids.warehouse.rows import Reject, RowChunk, SourceContext
from mqttids.warehouse.sources import Source, SourceReader, open_reader

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = "mqtt"
JDBC_DRIVER = "org.postgresql.Driver"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_FIXED = ("ingest_batches", "packets", "rejects", "alerts", "models")
_PG_TO_ARROW = {
    "smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(),
    "real": pa.float32(), "double precision": pa.float64(), "boolean": pa.bool_(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "timestamp without time zone": pa.timestamp("us"), "date": pa.date32(),
    "bytea": pa.binary(),
}


def _psycopg():
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the postgres extra installs it
        raise MissingDependencyError(
            "psycopg 3 is not installed: pip install 'mqttids[postgres]'") from exc
    return psycopg


def check_schema_name(name: str) -> str:
    if not isinstance(name, str) or not _SCHEMA_RE.match(name):
        raise UsageError(f"PostgreSQL schema name {name!r} is not usable: use lower-case "
                         "letters, digits and underscores (default 'mqtt')")
    return name


class PostgresWarehouse(Warehouse):
    """Tables in one PostgreSQL schema; see ``docs/warehouse.md`` for their constraints."""

    def __init__(self, url: str, pg_schema: str = DEFAULT_SCHEMA):
        self.schema = check_schema_name(pg_schema)
        self._url = url
        self.display_url = mask_dsn(url)
        self._conn = None
        self._conn = self._connect()
        self._ensure_tables()

    # -- connection -------------------------------------------------------------------

    def _connect(self):
        psycopg = _psycopg()
        try:
            params = psycopg.conninfo.conninfo_to_dict(self._url)
        except psycopg.ProgrammingError as exc:
            raise WarehouseURLError(f"cannot read the warehouse URL {self.display_url}: "
                                    f"{self._scrub(str(exc))}") from None
        extra = {"application_name": "mqttids"}
        if "connect_timeout" not in params:
            extra["connect_timeout"] = 10
        try:
            conn = psycopg.connect(self._url, autocommit=True, **extra)
        except psycopg.Error as exc:
            raise WarehouseConnectionError(
                f"cannot connect to PostgreSQL at {self.display_url}: "
                f"{self._scrub(str(exc)).strip()}; check that the server runs and that the "
                "password is in PGPASSWORD or ~/.pgpass") from None
        conn.execute("SET TIME ZONE 'UTC'")
        return conn

    def _scrub(self, text: str) -> str:
        """A server or driver message as one line, without any password in it."""
        text = " ".join(text.split())
        secrets = []
        try:
            secrets.append(_psycopg().conninfo.conninfo_to_dict(self._url).get("password"))
        except Exception:  # an unreadable URL has no password to hide beyond masking
            pass
        if self._conn is not None:
            secrets.append(self._conn.info.password)
        return scrub(mask_dsn(text) if "://" in text else text, secrets)

    def _live(self):
        if self._conn is None or self._conn.closed:
            raise WarehouseConnectionError(
                f"the connection to {self.display_url} is closed (it was lost or closed); "
                "open the warehouse again")
        return self._conn

    def _lost(self, exc: Exception, doing: str) -> WarehouseConnectionError:
        if self._conn is not None:
            self._conn.close()
        return WarehouseConnectionError(
            f"the connection to PostgreSQL at {self.display_url} was lost while {doing} "
            f"({self._scrub(str(exc)).strip()}); the server rolled that work back, so run "
            "the same command again")

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()

    def _q(self, name: str) -> str:
        return f"{self.schema}.{name}"

    def _ensure_tables(self) -> None:
        conn = self._live()
        key = int.from_bytes(hashlib.sha256(f"mqttids:{self.schema}".encode()).digest()[:8],
                             "big", signed=True)
        with conn.transaction():
            existing = conn.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = %s AND table_name = ANY(%s)",
                [self.schema, list(_FIXED)]).fetchone()[0]
            if existing == len(_FIXED):
                return
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [key])
            for statement in create_statements(self.schema):
                conn.execute(statement)
        log.info("created the warehouse tables in schema %s at %s", self.schema,
                 self.display_url)

    # -- ingest -----------------------------------------------------------------------

    def _batch_of(self, sha256: str) -> int | None:
        row = self._live().execute(
            f"SELECT batch_id FROM {self._q('ingest_batches')} WHERE sha256 = %s",
            [sha256]).fetchone()
        return row[0] if row else None

    def _ingest_source(self, source: Source, split: str, label: str | None,
                       ports: tuple[int, ...], progress: Progress | None) -> BatchReport:
        psycopg = _psycopg()
        report = BatchReport(source.location, source.sha256, source.kind)
        try:
            known = self._batch_of(source.sha256)
            if known is not None:
                report.batch_id, report.skipped = known, True
                return report
            ctx = SourceContext(split, label, source.name)
            with open_reader(source, ctx, ports) as reader:
                return self._load(source, reader, ctx, report, progress)
        except psycopg.OperationalError as exc:
            raise self._lost(exc, f"loading {source.given}") from None
        except psycopg.IntegrityError as exc:
            raise WarehouseError(
                f"PostgreSQL refused a row of {source.given} that mqttids had accepted "
                f"({self._scrub(str(exc)).strip()}); nothing of it was loaded. Please report "
                "this: the loader's checks and the table's constraints disagree") from None

    def _open_batch(self, cur, source: Source, ctx: SourceContext) -> int | None:
        """Insert the ledger row; None when another loader committed this sha256 first."""
        psycopg = _psycopg()
        try:
            with cur.connection.transaction():
                return cur.execute(
                    f"INSERT INTO {self._q('ingest_batches')} "
                    "(source, sha256, format, split, label, started) "
                    "VALUES (%s, %s, %s, %s, %s, clock_timestamp()) RETURNING batch_id",
                    [source.location, source.sha256, source.kind, ctx.split,
                     ctx.label]).fetchone()[0]
        except psycopg.errors.UniqueViolation:
            return None

    def _load(self, source: Source, reader: SourceReader, ctx: SourceContext,
              report: BatchReport, progress: Progress | None) -> BatchReport:
        conn = self._live()
        columns = ", ".join(["batch_id"] + [schema.storage_name(n) for n in reader.names])
        with conn.transaction(), conn.cursor() as cur, \
                tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
            batch_id = self._open_batch(cur, source, ctx)
            if batch_id is None:
                report.batch_id, report.skipped = self._batch_of(source.sha256), True
                return report
            report.batch_id = batch_id
            with cur.copy(f"COPY {self._q('packets')} ({columns}) FROM STDIN (FORMAT csv)") \
                    as copy:
                def convert(unit) -> tuple[RowChunk, memoryview | None]:
                    return _with_payload(reader.convert(unit), batch_id)

                for chunk, payload in ordered_map(convert, reader.units(), load_workers()):
                    if payload is not None:
                        copy.write(payload)
                    report.loaded += chunk.table.num_rows
                    report.read += chunk.read
                    if chunk.rejects:
                        spool.write(_rejects_csv(chunk.rejects, batch_id))
                    if progress is not None:
                        progress.advance(chunk.consumed)
            if cur.rowcount not in (-1, report.loaded):
                raise WarehouseError(f"COPY stored {cur.rowcount} rows of {source.given} but "
                                     f"{report.loaded} were sent; the batch was rolled back")
            report.rejected = report.read - report.loaded
            self._copy_rejects(cur, spool)
            cur.execute(f"UPDATE {self._q('ingest_batches')} SET rows_read = %s, "
                        "rows_loaded = %s, rows_rejected = %s, ended = clock_timestamp() "
                        "WHERE batch_id = %s",
                        [report.read, report.loaded, report.rejected, batch_id])
        return report

    def _copy_rejects(self, cur, spool) -> None:
        if not spool.tell():
            return
        spool.seek(0)
        names = ", ".join(c.name for c in REJECTS)
        with cur.copy(f"COPY {self._q('rejects')} ({names}) FROM STDIN (FORMAT csv)") as copy:
            while block := spool.read(1 << 20):
                copy.write(block)

    # -- reading ----------------------------------------------------------------------

    def _copy_out(self, select: str, names: list[str], types: dict[str, pa.DataType]) -> pa.Table:
        """Run ``COPY (select) TO STDOUT`` into a temporary file and parse it with Arrow."""
        psycopg = _psycopg()
        conn = self._live()
        try:
            with tempfile.TemporaryFile() as spool:
                with conn.cursor() as cur, cur.copy(f"COPY ({select}) TO STDOUT (FORMAT csv)") \
                        as copy:
                    for block in copy:
                        spool.write(block)
                if not spool.tell():
                    return pa.schema([(n, types[n]) for n in names]).empty_table()
                spool.seek(0)
                return copytext.read_copy_csv(spool, names, types)
        except psycopg.OperationalError as exc:
            raise self._lost(exc, "reading") from None

    def read_packets_arrow(self, split: str | None = None,
                           columns: Sequence[str] | None = None) -> pa.Table:
        check_split(split)
        names = storage_columns(columns)
        types = {schema.storage_name(f.name): f.arrow_type for f in schema.ALL_FIELDS}
        where = ""
        if split is not None:
            where = f" WHERE split = '{split}'"  # one of schema.SPLITS, checked above
        select = f"SELECT {', '.join(names)} FROM {self._q('packets')}{where}"
        return self._copy_out(select, names, {n: types[n] for n in names})

    def table_names(self) -> list[str]:
        rows = self._live().execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "AND table_type = 'BASE TABLE' ORDER BY table_name", [self.schema]).fetchall()
        return [r[0] for r in rows]

    def _stored_schema(self, name: str) -> pa.Schema | None:
        """The Arrow schema a table reads back as, or None when the table does not exist."""
        if name == "packets":
            return schema.arrow_schema(storage=True)
        fixed = {"ingest_batches": INGEST_BATCHES, "rejects": REJECTS, **FIXED_RESULT_TABLES}
        if name in fixed:
            return pa.schema([(c.name, c.arrow) for c in fixed[name]])
        row = self._live().execute(
            "SELECT obj_description(to_regclass(%s), 'pg_class'), to_regclass(%s) IS NOT NULL",
            [self._q(name), self._q(name)]).fetchone()
        if not row[1]:
            return None
        stored = copytext.schema_from_comment(row[0])
        if stored is not None:
            return stored
        cols = self._live().execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            [self.schema, name]).fetchall()
        return pa.schema([(c, _PG_TO_ARROW.get(t, pa.string())) for c, t in cols])

    def read_table(self, name: str) -> pa.Table | None:
        check_table_name(name)
        if name == "packets":
            return self.read_packets_arrow()
        stored = self._stored_schema(name)
        if stored is None:
            return None
        psycopg = _psycopg()
        idents = [psycopg.sql.Identifier(n).as_string(self._live()) for n in stored.names]
        text = self._copy_out(f"SELECT {', '.join(idents)} FROM {self._q(name)}",
                              list(stored.names), {n: pa.string() for n in stored.names})
        return pa.table([copytext.from_text(text.column(f.name), f.type) for f in stored],
                        schema=stored)

    # -- result tables ----------------------------------------------------------------

    def write_table(self, name: str, table: pa.Table, mode: str = "overwrite") -> None:
        table = prepare_result_table(name, table, mode)
        psycopg = _psycopg()
        conn = self._live()
        ident = psycopg.sql.Identifier
        columns = ", ".join(ident(c).as_string(conn) for c in table.column_names)
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [self._q(name)])
                if name in FIXED_RESULT_TABLES:
                    if mode == "overwrite":
                        conn.execute(f"TRUNCATE {self._q(name)} RESTART IDENTITY")
                else:
                    self._prepare_generic(name, table, mode)
                with conn.cursor() as cur, \
                        cur.copy(f"COPY {self._q(name)} ({columns}) FROM STDIN (FORMAT csv)") \
                        as copy:
                    copy.write(copytext.to_copy_csv(copytext.for_copy(table), quote_all=True))
        except psycopg.OperationalError as exc:
            raise self._lost(exc, f"writing table {name}") from None
        except psycopg.DataError as exc:
            raise TableError(f"PostgreSQL refused table {name!r}: "
                             f"{self._scrub(str(exc)).strip()}") from None
        except psycopg.IntegrityError as exc:
            raise TableError(f"table {name!r} breaks a constraint: "
                             f"{self._scrub(str(exc)).strip()}") from None

    def _prepare_generic(self, name: str, table: pa.Table, mode: str) -> None:
        conn = self._live()
        stored = self._stored_schema(name)
        if stored is not None and mode == "append":
            if stored.remove_metadata() != table.schema.remove_metadata():
                raise TableError(
                    f"cannot append to table {name!r}: it has columns {_describe(stored)}, "
                    f"the new rows have {_describe(table.schema)}; write with "
                    "mode='overwrite' to replace it")
            return
        psycopg = _psycopg()
        if stored is not None:
            conn.execute(f"DROP TABLE {self._q(name)}")
        cols = ", ".join(f"{psycopg.sql.Identifier(f.name).as_string(conn)} {sql_type(f.type)}"
                         for f in table.schema)
        conn.execute(f"CREATE TABLE {self._q(name)} ({cols})")
        comment = psycopg.sql.Literal(copytext.schema_comment(table.schema)).as_string(conn)
        conn.execute(f"COMMENT ON TABLE {self._q(name)} IS {comment}")

    # -- Spark ------------------------------------------------------------------------

    def jdbc_options(self) -> dict[str, str]:
        """JDBC URL, user, password and driver of this connection (the password is secret)."""
        info = self._live().info
        options = {"url": jdbc_url(info.host, info.port, info.dbname), "user": info.user,
                   "driver": JDBC_DRIVER}
        if info.password:
            options["password"] = info.password
        return options

    def spark_read(self, spark, table: str = "packets", num_partitions: int | None = None,
                   fetchsize: int = 10000):
        """A DataFrame over JDBC; packets are read in ``num_partitions`` id ranges."""
        check_table_name(table)
        if table not in self.table_names():
            raise TableError(f"no table {table!r} in schema {self.schema}; tables: "
                             f"{', '.join(self.table_names())}")
        reader = spark.read.format("jdbc").option("dbtable", self._q(table)) \
            .option("fetchsize", str(fetchsize))
        for key, value in self.jdbc_options().items():
            reader = reader.option(key, value)
        if table == "packets":
            low, high = self._live().execute(
                f"SELECT min(id), max(id) FROM {self._q('packets')}").fetchone()
            parts = num_partitions or max(1, spark.sparkContext.defaultParallelism)
            if low is not None and parts > 1:
                reader = reader.option("partitionColumn", "id").option("lowerBound", str(low)) \
                    .option("upperBound", str(high + 1)).option("numPartitions", str(parts))
        try:
            frame = reader.load()
        except Exception as exc:  # py4j wraps the JVM's errors
            text = str(exc)
            if "ClassNotFoundException" in text or "No suitable driver" in text:
                raise MissingDependencyError(
                    "Spark cannot find the PostgreSQL JDBC driver: install "
                    "libpostgresql-jdbc-java (/usr/share/java/postgresql.jar) and start Spark "
                    "with mqttids.spark.session.get_spark") from None
            raise WarehouseError(f"Spark could not read {self._q(table)} over JDBC: "
                                 f"{self._scrub(text.splitlines()[0])}") from None
        if table == "packets":
            frame = frame.select(*[f.storage for f in schema.ALL_FIELDS])
        return frame


def _describe(arrow_schema: pa.Schema) -> str:
    return "(" + ", ".join(f"{f.name} {f.type}" for f in arrow_schema) + ")"


def _with_payload(chunk: RowChunk, batch_id: int) -> tuple[RowChunk, memoryview | None]:
    """A chunk with its COPY text (batch_id first); made in a worker thread."""
    rows = chunk.table.num_rows
    if not rows:
        return chunk, None
    table = chunk.table.add_column(0, "batch_id", pa.repeat(pa.scalar(batch_id, pa.int64()), rows))
    return chunk, memoryview(copytext.to_copy_csv(table))


def _rejects_csv(rejects: list[Reject], batch_id: int) -> memoryview:
    table = pa.table({
        "batch_id": pa.repeat(pa.scalar(batch_id, pa.int64()), len(rejects)),
        "line": pa.array([r.line for r in rejects], pa.int64()),
        "frame": pa.array([r.frame for r in rejects], pa.int64()),
        "reason": pa.array([r.reason for r in rejects], pa.string()),
        "raw": pa.array([r.raw for r in rejects], pa.string()),
    })
    return memoryview(copytext.to_copy_csv(table))
