"""The warehouse as the Spark jobs see it: any URI for Parquet, or PostgreSQL over JDBC.

``mqttids.warehouse`` serves one machine: its Parquet store needs a local
folder (it locks with ``fcntl``) and reads through pyarrow. A job on a cluster
reads and writes through Spark and Hadoop instead, so that the same store can
live at ``gs://`` or ``hdfs://``. This module keeps the Parquet layout that
``mqttids/warehouse/parquet.py`` documents, file for file, so that both sides
read what the other wrote (tests/test_jobs_store.py checks it):

- ``packets/batch-NNNNNN.parquet``, ``rejects/batch-NNNNNN.parquet`` and
  ``ingest_batches/batch-NNNNNN.parquet``: one file each per batch; the ledger
  row is moved into place last and commits the batch;
- result tables as ``NAME/gNNNNNN-NNNNNN.parquet``: the newest generation wins.

On a local folder the jobs take the same ``.lock`` as the library; an object
store has no such lock, so only one writer may load into a ``gs://``
warehouse at a time. PostgreSQL is reached through the library's own
:class:`~mqttids.warehouse.postgres.PostgresWarehouse` (tables, reads, result
tables), and packets go in with Spark's JDBC writer, in parallel from every
executor.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import io
import logging
import os
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from mqttids import schema
from mqttids.jobs import hadoopfs
from mqttids.jobs.errors import JobWarehouseError
from mqttids.warehouse.base import prepare_result_table
from mqttids.warehouse.ddl import FIXED_RESULT_TABLES, INGEST_BATCHES, REJECTS

log = logging.getLogger(__name__)

PACKETS_SCHEMA = schema.arrow_schema(storage=True)
LEDGER_SCHEMA = pa.schema([(c.name, c.arrow) for c in INGEST_BATCHES])
REJECTS_SCHEMA = pa.schema([(c.name, c.arrow) for c in REJECTS])
_BATCH_RE = re.compile(r"^batch-(\d+)\.parquet$")
_PART_RE = re.compile(r"^g(\d+)-(\d+)\.parquet$")


@dataclass(frozen=True)
class BatchSource:
    """One input of an ingest: where it is, its fingerprint and what the ledger records."""

    uri: str  # fully qualified
    sha256: str
    format: str = "csv"

    @property
    def name(self) -> str:
        """The file's base name: what the ``source`` column holds."""
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class BatchCounts:
    read: int
    loaded: int
    rejected: int


def spark_schema(arrow_schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(arrow_schema.remove_metadata())


def _table_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


class JobWarehouse(ABC):
    """What the jobs need from a store; open one with :func:`open_job_warehouse`."""

    display_url: str

    @abstractmethod
    def packets(self):
        """The packets as a Spark DataFrame with every schema column (storage names)."""

    @abstractmethod
    def write_tables(self, tables: dict[str, pa.Table]) -> None:
        """Replace small result tables (analysis, tuning) with these Arrow tables."""

    @abstractmethod
    def read_table(self, name: str) -> pa.Table | None:
        """A small result table, or None when there is none of that name."""

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Exclusive access for a load, where the store can give it."""
        yield

    @abstractmethod
    def find_batch(self, sha256: str) -> int | None:
        """The committed batch that loaded these bytes, or None (unfinished ones are removed)."""

    @abstractmethod
    def write_batch(self, source: BatchSource, split: str, label: str | None, rows, rejects,
                    counts: BatchCounts, started: dt.datetime) -> int:
        """Store one source's rows and rejects as one batch; returns its batch id.

        ``rows`` holds every packet column (storage names); ``rejects`` has
        ``line``, ``frame``, ``reason`` and ``raw``. Either the whole batch is
        committed, with its ledger row, or nothing of it remains.
        """

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> JobWarehouse:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- Parquet at any URI ---------------------------------------------------------------------

class ParquetJobWarehouse(JobWarehouse):
    """The Parquet layout of ``mqttids.warehouse.parquet``, written through Spark and Hadoop."""

    def __init__(self, spark, base: str):
        self.spark = spark
        self.base = hadoopfs.qualify(spark, base)
        self.display_url = f"parquet:{self.base}"
        self.local = self.base.startswith("file:")
        # Parquet's own timestamp type, which pyarrow reads back as timestamp[us, UTC].
        spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        if self.local and not self._is_one_machine():
            log.warning("%s is a local folder but Spark runs on a cluster: each executor "
                        "writes to its own disk; use a shared URI (gs://, hdfs://)",
                        self.display_url)

    def _is_one_machine(self) -> bool:
        master = self.spark.sparkContext.master
        return master.startswith("local") or "127.0.0.1" in master or "localhost" in master

    def _uri(self, *names: str) -> str:
        return hadoopfs.join(self.base, *names)

    def _batch_files(self, folder: str) -> dict[int, str]:
        found = {}
        for name in hadoopfs.list_names(self.spark, self._uri(folder)):
            match = _BATCH_RE.match(name)
            if match:
                found[int(match.group(1))] = self._uri(folder, name)
        return found

    def _committed_files(self, folder: str) -> list[str]:
        committed = self._batch_files("ingest_batches")
        return [uri for i, uri in sorted(self._batch_files(folder).items()) if i in committed]

    def packets(self):
        files = self._committed_files("packets")
        if not files:
            return self.spark.createDataFrame([], spark_schema(PACKETS_SCHEMA))
        return self.spark.read.schema(spark_schema(PACKETS_SCHEMA)).parquet(*files)

    def ledger(self) -> pa.Table:
        """The committed ledger rows (one small file per batch)."""
        tables = [pq.read_table(io.BytesIO(hadoopfs.read_bytes(self.spark, uri)))
                  .select(LEDGER_SCHEMA.names).cast(LEDGER_SCHEMA)
                  for uri in self._committed_files("ingest_batches")]
        return pa.concat_tables(tables) if tables else LEDGER_SCHEMA.empty_table()

    # -- result tables ----------------------------------------------------------------

    def _generations(self, name: str) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for entry in hadoopfs.list_names(self.spark, self._uri(name)):
            match = _PART_RE.match(entry)
            if match:
                found.setdefault(int(match.group(1)), []).append(self._uri(name, entry))
        return found

    def write_tables(self, tables: dict[str, pa.Table]) -> None:
        with self.writing():
            for name, table in tables.items():
                table = prepare_result_table(name, table, "overwrite")
                if name in FIXED_RESULT_TABLES:
                    raise JobWarehouseError(f"table {name!r} is written by its own stage; "
                                            "the jobs write result tables only")
                older = self._generations(name)
                generation = max(older, default=0) + 1
                staged = self._uri(".staging", f"{uuid.uuid4().hex}.part.parquet")
                hadoopfs.write_bytes(self.spark, staged, _table_bytes(table))
                hadoopfs.rename(self.spark, staged,
                                self._uri(name, f"g{generation:06d}-000001.parquet"))
                for uris in older.values():
                    for uri in uris:
                        hadoopfs.delete(self.spark, uri)

    def read_table(self, name: str) -> pa.Table | None:
        generations = self._generations(name)
        if not generations:
            return None
        parts = sorted(generations[max(generations)])
        tables = [pq.read_table(io.BytesIO(hadoopfs.read_bytes(self.spark, uri)))
                  for uri in parts]
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    # -- batches ----------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """The library's writer lock on a local folder; leftovers are swept under it."""
        if not self.local:
            self._sweep(everything=False)
            yield
            return
        root = urlsplit(self.base).path
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, ".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._sweep(everything=True)
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _sweep(self, everything: bool) -> None:
        """Remove batch files that no ledger row commits (a load that died part way).

        Under the lock the staging folder goes too, as the library does; without
        a lock (object stores) only orphaned batch files are removed.
        """
        if everything:
            hadoopfs.delete(self.spark, self._uri(".staging"))
        committed = self._batch_files("ingest_batches")
        for folder in ("packets", "rejects"):
            for batch_id, uri in self._batch_files(folder).items():
                if batch_id not in committed:
                    log.warning("removing %s: its load did not finish", uri)
                    hadoopfs.delete(self.spark, uri)

    def find_batch(self, sha256: str) -> int | None:
        ledger = self.ledger()
        for batch_id, digest in zip(ledger.column("batch_id").to_pylist(),
                                    ledger.column("sha256").to_pylist()):
            if digest == sha256:
                return batch_id
        return None

    def _next_id(self) -> int:
        ids = [0]
        for folder in ("ingest_batches", "packets", "rejects"):
            ids += list(self._batch_files(folder))
        return max(ids) + 1

    def _single_file(self, frame, folder: str, batch_id: int, stage: str) -> str:
        """Write ``frame`` as one Parquet file and move it to ``folder/batch-N.parquet``."""
        out = hadoopfs.join(stage, folder)
        frame.coalesce(1).write.mode("errorifexists") \
            .option("compression", "snappy").parquet(out)
        parts = [n for n in hadoopfs.list_names(self.spark, out)
                 if n.startswith("part-") and n.endswith(".parquet")]
        if len(parts) != 1:
            raise JobWarehouseError(f"Spark wrote {len(parts)} files for {folder} of batch "
                                    f"{batch_id} where one was expected; nothing was committed")
        target = self._uri(folder, f"batch-{batch_id:06d}.parquet")
        hadoopfs.rename(self.spark, hadoopfs.join(out, parts[0]), target)
        return target

    def write_batch(self, source: BatchSource, split: str, label: str | None, rows, rejects,
                    counts: BatchCounts, started: dt.datetime) -> int:
        from pyspark.sql import functions as F

        batch_id = self._next_id()
        stage = self._uri(".staging", f"spark-{uuid.uuid4().hex}")
        placed: list[str] = []
        try:
            if counts.loaded:
                placed.append(self._single_file(rows.select(*PACKETS_SCHEMA.names),
                                                "packets", batch_id, stage))
            else:
                target = self._uri("packets", f"batch-{batch_id:06d}.parquet")
                hadoopfs.write_bytes(self.spark, target,
                                     _table_bytes(PACKETS_SCHEMA.empty_table()))
                placed.append(target)
            if counts.rejected:
                frame = rejects.select(F.lit(batch_id).cast("long").alias("batch_id"),
                                       "line", "frame", "reason", "raw")
                placed.append(self._single_file(frame, "rejects", batch_id, stage))
            ledger = pa.table([
                [batch_id], [source.uri], [source.sha256], [source.format], [split], [label],
                [counts.read], [counts.loaded], [counts.rejected], [started],
                [dt.datetime.now(dt.timezone.utc)],
            ], schema=LEDGER_SCHEMA)
            staged = hadoopfs.join(stage, "ledger.parquet")
            hadoopfs.write_bytes(self.spark, staged, _table_bytes(ledger))
            hadoopfs.rename(self.spark, staged,
                            self._uri("ingest_batches", f"batch-{batch_id:06d}.parquet"))
        except BaseException:
            for uri in placed:
                hadoopfs.delete(self.spark, uri)
            raise
        finally:
            hadoopfs.delete(self.spark, stage)
        return batch_id


# -- PostgreSQL ------------------------------------------------------------------------------

class PostgresJobWarehouse(JobWarehouse):
    """Tables of :class:`PostgresWarehouse`; packets and rejects written with Spark's JDBC."""

    def __init__(self, spark, url: str):
        from mqttids.warehouse import open_warehouse

        self.spark = spark
        self.url = url
        self.wh = open_warehouse(url)
        self.display_url = self.wh.display_url

    def close(self) -> None:
        self.wh.close()

    def _q(self, name: str) -> str:
        return f"{self.wh.schema}.{name}"

    def packets(self):
        return self.wh.spark_read(self.spark, "packets")

    def write_tables(self, tables: dict[str, pa.Table]) -> None:
        for name, table in tables.items():
            self.wh.write_table(name, table, mode="overwrite")

    def read_table(self, name: str) -> pa.Table | None:
        return self.wh.read_table(name)

    def _execute(self, sql: str, params: list) -> list[tuple]:
        """One statement on its own connection, committed when it returns."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def find_batch(self, sha256: str) -> int | None:
        found = self._execute(f"SELECT batch_id, ended FROM {self._q('ingest_batches')} "
                              "WHERE sha256 = %s", [sha256])
        if not found:
            return None
        batch_id, ended = found[0]
        if ended is not None:
            return batch_id
        # Only the Spark loader commits a ledger row before its rows; an open one
        # is a load that died part way.
        log.warning("removing batch %s of an earlier load that did not finish", batch_id)
        self._drop(batch_id)
        return None

    def _drop(self, batch_id: int) -> None:
        self._execute(f"DELETE FROM {self._q('packets')} WHERE batch_id = %s", [batch_id])
        self._execute(f"DELETE FROM {self._q('ingest_batches')} WHERE batch_id = %s",
                      [batch_id])

    def _jdbc_write(self, frame, table: str) -> None:
        options = self.wh.jdbc_options()
        url = options.pop("url")
        url += ("&" if "?" in url else "?") + "reWriteBatchedInserts=true"
        writer = frame.write.format("jdbc").mode("append").option("url", url) \
            .option("dbtable", self._q(table)).option("batchsize", "10000")
        for key, value in options.items():
            writer = writer.option(key, value)
        writer.save()

    def write_batch(self, source: BatchSource, split: str, label: str | None, rows, rejects,
                    counts: BatchCounts, started: dt.datetime) -> int:
        from pyspark.sql import functions as F

        batch_id = self._execute(
            f"INSERT INTO {self._q('ingest_batches')} "
            "(source, sha256, format, split, label, started) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING batch_id",
            [source.uri, source.sha256, source.format, split, label, started])[0][0]
        try:
            if counts.loaded:
                self._jdbc_write(rows.select(F.lit(batch_id).cast("long").alias("batch_id"),
                                             *PACKETS_SCHEMA.names), "packets")
            if counts.rejected:
                self._jdbc_write(rejects.select(F.lit(batch_id).cast("long").alias("batch_id"),
                                                "line", "frame", "reason", "raw"), "rejects")
            self._execute(f"UPDATE {self._q('ingest_batches')} SET rows_read = %s, "
                          "rows_loaded = %s, rows_rejected = %s, ended = clock_timestamp() "
                          "WHERE batch_id = %s",
                          [counts.read, counts.loaded, counts.rejected, batch_id])
        except BaseException:
            self._drop(batch_id)
            raise
        return batch_id


def open_job_warehouse(spark, url: str) -> JobWarehouse:
    """The store ``url`` names: ``parquet:URI`` (any Hadoop URI) or ``postgresql://...``."""
    if url.startswith("parquet:"):
        base = url[len("parquet:"):]
        if base.startswith("//"):
            base = base[2:]
        if not base:
            raise JobWarehouseError("warehouse URL 'parquet:' names no folder; write "
                                    "parquet:URI, e.g. parquet:gs://BUCKET/warehouse")
        return ParquetJobWarehouse(spark, base)
    return PostgresJobWarehouse(spark, url)
