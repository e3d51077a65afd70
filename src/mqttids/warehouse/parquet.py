"""The embedded Parquet warehouse (the default): one folder per table under PATH.

Layout::

    PATH/packets/batch-000001.parquet         rows of batch 1 (every schema column)
    PATH/rejects/batch-000001.parquet         its rejects
    PATH/ingest_batches/batch-000001.parquet  its ledger row: written last, it commits the batch
    PATH/NAME/g000002-000001.parquet          result tables: generation, then part
    PATH/.staging/                            files being written
    PATH/.lock                                held by whoever writes

A batch is written to ``.staging`` and renamed into place, ledger row last;
readers only look at batches that have a ledger row, so a crash or an error
part way through leaves nothing visible, and the next writer sweeps the
leftovers. A result table is replaced by writing a new generation and then
deleting the old one; readers take the newest generation only. Writers hold
an exclusive lock on ``PATH/.lock`` (so two loads into one folder queue up);
readers take no lock. The folder must be on a local or mounted file system.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from mqttids import schema
from mqttids.warehouse.base import (Progress, Warehouse, check_split, load_workers,
                                    ordered_map, prepare_result_table, storage_columns)
from mqttids.warehouse.ddl import (FIXED_RESULT_TABLES, INGEST_BATCHES, INGEST_TABLES, REJECTS,
                                   check_table_name)
from mqttids.warehouse.errors import TableError, WarehouseError
from mqttids.warehouse.report import BatchReport
from mqttids.warehouse.rows import Reject, RowChunk, SourceContext
from mqttids.warehouse.sources import Source, open_reader

log = logging.getLogger(__name__)

_BATCH_RE = re.compile(r"^batch-(\d+)\.parquet$")
_PART_RE = re.compile(r"^g(\d+)-(\d+)\.parquet$")
_PACKETS = schema.arrow_schema(storage=True)
_LEDGER = pa.schema([(c.name, c.arrow) for c in INGEST_BATCHES])
_REJECTS = pa.schema([(c.name, c.arrow) for c in REJECTS])


def _fixed_schema(name: str) -> pa.Schema:
    return pa.schema([(c.name, c.arrow) for c in FIXED_RESULT_TABLES[name]])


def _durable_write(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path)
    _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ParquetWarehouse(Warehouse):
    """Tables as folders of Parquet files; see the module docstring for the layout."""

    def __init__(self, path: str | os.PathLike):
        self.root = Path(path).expanduser()
        self.display_url = f"parquet:{self.root}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WarehouseError(f"cannot create the warehouse folder {self.root}: "
                                 f"{exc.strerror}; pick a writable place with --warehouse "
                                 "parquet:PATH") from None

    # -- files ------------------------------------------------------------------------

    @contextmanager
    def _writing(self):
        """The writer's lock; leftovers of interrupted writers are swept under it."""
        with open(self.root / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._sweep()
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _sweep(self) -> None:
        shutil.rmtree(self.root / ".staging", ignore_errors=True)
        (self.root / ".staging").mkdir()
        committed = self._committed()
        for folder in ("packets", "rejects"):
            for batch_id, path in self._batch_files(folder).items():
                if batch_id not in committed:
                    log.warning("removing %s: its load did not finish", path)
                    path.unlink(missing_ok=True)

    def _batch_files(self, folder: str) -> dict[int, Path]:
        found = {}
        base = self.root / folder
        if base.is_dir():
            for entry in os.scandir(base):
                match = _BATCH_RE.match(entry.name)
                if match:
                    found[int(match.group(1))] = Path(entry.path)
        return found

    def _committed(self) -> dict[int, Path]:
        return self._batch_files("ingest_batches")

    def _staging(self, suffix: str) -> Path:
        return self.root / ".staging" / f"{uuid.uuid4().hex}.{suffix}"

    # -- ingest -----------------------------------------------------------------------

    def _ledger(self, columns: list[str] | None = None) -> pa.Table:
        files = [str(p) for _, p in sorted(self._committed().items())]
        if not files:
            return _LEDGER.empty_table().select(columns or _LEDGER.names)
        return pads.dataset(files, schema=_LEDGER, format="parquet").to_table(columns=columns)

    def _batch_of(self, sha256: str) -> int | None:
        ledger = self._ledger(["batch_id", "sha256"])
        hits = ledger.filter(pc.equal(ledger.column("sha256"), sha256))
        return hits.column("batch_id")[0].as_py() if hits.num_rows else None

    def _next_id(self) -> int:
        ids = [0]
        for folder in ("ingest_batches", "packets", "rejects"):
            ids += list(self._batch_files(folder))
        return max(ids) + 1

    def _ingest_source(self, source: Source, split: str, label: str | None,
                       ports: tuple[int, ...], progress: Progress | None) -> BatchReport:
        report = BatchReport(source.location, source.sha256, source.kind)
        with self._writing():
            known = self._batch_of(source.sha256)
            if known is not None:
                report.batch_id, report.skipped = known, True
                return report
            report.batch_id = self._next_id()
            staged: dict[str, Path] = {}
            try:
                self._stage(source, SourceContext(split, label, source.name), ports, report,
                            progress, staged)
                self._commit(report.batch_id, staged)
            finally:
                for path in staged.values():
                    path.unlink(missing_ok=True)
        return report

    def _stage(self, source: Source, ctx: SourceContext, ports: tuple[int, ...],
               report: BatchReport, progress: Progress | None, staged: dict[str, Path]) -> None:
        """Write the batch's packets, rejects and ledger row to the staging folder."""
        started = dt.datetime.now(dt.timezone.utc)
        staged["packets"] = self._staging("packets.parquet")
        rejects: list[Reject] = []
        rejects_writer = None
        with open_reader(source, ctx, ports) as reader, \
                pq.ParquetWriter(staged["packets"], _PACKETS) as writer:
            for chunk, full in ordered_map(lambda unit: _converted(reader, unit), reader.units(),
                                           load_workers()):
                writer.write_table(full)
                report.loaded += chunk.table.num_rows
                report.read += chunk.read
                rejects.extend(chunk.rejects)
                if len(rejects) >= 65536 or (rejects and rejects_writer is not None):
                    if rejects_writer is None:
                        staged["rejects"] = self._staging("rejects.parquet")
                        rejects_writer = pq.ParquetWriter(staged["rejects"], _REJECTS)
                    rejects_writer.write_table(_rejects_table(rejects, report.batch_id))
                    rejects = []
                if progress is not None:
                    progress.advance(chunk.consumed)
        if rejects_writer is not None:
            if rejects:
                rejects_writer.write_table(_rejects_table(rejects, report.batch_id))
            rejects_writer.close()
        elif rejects:
            staged["rejects"] = self._staging("rejects.parquet")
            _durable_write(_rejects_table(rejects, report.batch_id), staged["rejects"])
        report.rejected = report.read - report.loaded
        _fsync(staged["packets"])
        staged["ingest_batches"] = self._staging("ledger.parquet")
        ended = dt.datetime.now(dt.timezone.utc)
        _durable_write(pa.table([
            [report.batch_id], [source.location], [source.sha256], [source.kind], [ctx.split],
            [ctx.label], [report.read], [report.loaded], [report.rejected], [started], [ended],
        ], schema=_LEDGER), staged["ingest_batches"])

    def _commit(self, batch_id: int, staged: dict[str, Path]) -> None:
        """Rename the staged files into place; the ledger row last makes the batch visible."""
        for folder in ("rejects", "packets", "ingest_batches"):
            if folder in staged:
                (self.root / folder).mkdir(exist_ok=True)
                os.replace(staged.pop(folder), self.root / folder / f"batch-{batch_id:06d}.parquet")

    # -- reading ----------------------------------------------------------------------

    def _batch_table(self, folder: str, arrow_schema: pa.Schema, columns=None, filt=None):
        committed = self._committed()
        files = [str(p) for i, p in sorted(self._batch_files(folder).items()) if i in committed]
        if not files:
            return arrow_schema.empty_table().select(columns or arrow_schema.names)
        data = pads.dataset(files, schema=arrow_schema, format="parquet")
        return data.to_table(columns=columns, filter=filt)

    def read_packets_arrow(self, split: str | None = None,
                           columns: Sequence[str] | None = None) -> pa.Table:
        check_split(split)
        names = storage_columns(columns)
        filt = pc.field("split") == split if split is not None else None
        return self._batch_table("packets", _PACKETS, names, filt)

    def _generation(self, name: str) -> tuple[int, list[Path]]:
        """The newest generation of a result table and its part files, oldest first."""
        parts: dict[int, list[tuple[int, Path]]] = {}
        base = self.root / name
        if base.is_dir():
            for entry in os.scandir(base):
                match = _PART_RE.match(entry.name)
                if match:
                    parts.setdefault(int(match.group(1)), []).append(
                        (int(match.group(2)), Path(entry.path)))
        if not parts:
            return 0, []
        newest = max(parts)
        return newest, [p for _, p in sorted(parts[newest])]

    def read_table(self, name: str) -> pa.Table | None:
        check_table_name(name)
        if name == "packets":
            return self.read_packets_arrow()
        if name == "ingest_batches":
            return self._ledger()
        if name == "rejects":
            return self._batch_table("rejects", _REJECTS)
        _, files = self._generation(name)
        if not files:
            return _fixed_schema(name).empty_table() if name in FIXED_RESULT_TABLES else None
        tables = [pq.read_table(p) for p in files]
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def table_names(self) -> list[str]:
        names = set(INGEST_TABLES) | set(FIXED_RESULT_TABLES)
        for entry in os.scandir(self.root):
            visible = entry.is_dir() and not entry.name.startswith(".")
            if visible and self._generation(entry.name)[1]:
                names.add(entry.name)
        return sorted(names)

    # -- result tables ----------------------------------------------------------------

    def write_table(self, name: str, table: pa.Table, mode: str = "overwrite") -> None:
        table = prepare_result_table(name, table, mode)
        with self._writing():
            generation, files = self._generation(name)
            part = 1
            if mode == "append" and files:
                part = int(_PART_RE.match(files[-1].name).group(2)) + 1
            else:
                generation += 1
            if name in FIXED_RESULT_TABLES:
                first_id = 1
                if mode == "append" and files:
                    first_id = pc.max(self.read_table(name).column("id")).as_py() or 0
                    first_id += 1
                table = _complete_fixed(name, table, first_id)
            elif mode == "append" and files:
                existing = pq.read_schema(files[-1]).remove_metadata()
                if existing != table.schema.remove_metadata():
                    raise TableError(
                        f"cannot append to table {name!r}: its columns are "
                        f"{existing.names} with types {[str(t) for t in existing.types]}, the "
                        f"new rows have {table.column_names} with types "
                        f"{[str(t) for t in table.schema.types]}; write with mode='overwrite'")
            staged = self._staging("part.parquet")
            _durable_write(table, staged)
            (self.root / name).mkdir(exist_ok=True)
            os.replace(staged, self.root / name / f"g{generation:06d}-{part:06d}.parquet")
            if mode == "overwrite":
                for old in os.scandir(self.root / name):
                    match = _PART_RE.match(old.name)
                    if match and int(match.group(1)) < generation:
                        os.unlink(old.path)

    # -- Spark ------------------------------------------------------------------------

    def spark_read(self, spark, table: str = "packets"):
        """A DataFrame of a table's committed Parquet files (packets: storage names)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        check_table_name(table)
        if table in ("packets", "rejects"):
            committed = self._committed()
            files = [str(p) for i, p in sorted(self._batch_files(table).items())
                     if i in committed]
            arrow_schema = _PACKETS if table == "packets" else _REJECTS
        elif table == "ingest_batches":
            files = [str(p) for _, p in sorted(self._committed().items())]
            arrow_schema = _LEDGER
        else:
            _, paths = self._generation(table)
            files = [str(p) for p in paths]
            if not files and table not in FIXED_RESULT_TABLES:
                raise TableError(f"no table {table!r} in {self.display_url}; tables: "
                                 f"{', '.join(self.table_names())}")
            arrow_schema = pq.read_schema(files[0]) if files else _fixed_schema(table)
        spark_schema = from_arrow_schema(arrow_schema.remove_metadata())
        if not files:
            return spark.createDataFrame([], spark_schema)
        return spark.read.schema(spark_schema).parquet(*files)


def _converted(reader, unit) -> tuple[RowChunk, pa.Table]:
    chunk = reader.convert(unit)
    return chunk, _full_packets(chunk.table)


def _full_packets(table: pa.Table) -> pa.Table:
    """Rows with every packet column (absent ones NULL), in schema order."""
    rows = table.num_rows
    arrays = [table.column(f.name) if f.name in table.column_names else pa.nulls(rows, f.type)
              for f in _PACKETS]
    return pa.table(arrays, schema=_PACKETS)


def _rejects_table(rejects: list[Reject], batch_id: int) -> pa.Table:
    return pa.table([
        pa.repeat(pa.scalar(batch_id, pa.int64()), len(rejects)),
        pa.array([r.line for r in rejects], pa.int64()),
        pa.array([r.frame for r in rejects], pa.int64()),
        pa.array([r.reason for r in rejects], pa.string()),
        pa.array([r.raw for r in rejects], pa.string()),
    ], schema=_REJECTS)


def _complete_fixed(name: str, table: pa.Table, first_id: int) -> pa.Table:
    """Alerts and models with every column, as PostgreSQL would fill them (id, created)."""
    rows = table.num_rows
    now = pa.scalar(dt.datetime.now(dt.timezone.utc), pa.timestamp("us", tz="UTC"))
    arrays = []
    for col in FIXED_RESULT_TABLES[name]:
        if col.identity:
            arrays.append(pa.array(range(first_id, first_id + rows), pa.int64()))
        elif col.name in table.column_names:
            arrays.append(table.column(col.name))
        elif col.default == "now()":
            arrays.append(pa.repeat(now, rows))
        else:
            arrays.append(pa.nulls(rows, col.arrow))
    return pa.table(arrays, schema=_fixed_schema(name))
