"""The interface both warehouses share, and the parts of ``ingest`` that do not depend on the store.

``ingest`` opens and checks every source first (so a bad file stops the
command before anything is loaded), then loads them one by one: each source
is one batch, written atomically, recorded in the ledger with its sha256. A
source whose sha256 is already in the ledger is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from mqttids import schema
from mqttids.errors import UsageError
from mqttids.warehouse.ddl import (FIXED_RESULT_TABLES, INGEST_TABLES, check_table_name,
                                   fixed_columns)
from mqttids.warehouse.errors import TableError
from mqttids.warehouse.report import BatchReport, IngestReport
from mqttids.warehouse.sources import Source, open_source

log = logging.getLogger(__name__)
T = TypeVar("T")
MODES = ("overwrite", "append")


class Progress(Protocol):
    """What ``ingest`` reports progress to (``mqttids.cli.common.Bar`` fits): bytes."""

    def total(self, n: int | None) -> None: ...

    def advance(self, n: int = 1) -> None: ...


def check_ingest_options(split: str, label: str | None, ports: Iterable[int]) -> tuple[int, ...]:
    """Refuse a bad split, label or port before any work starts; return the ports."""
    if split not in schema.SPLITS:
        raise UsageError(f"split {split!r} is not one of {', '.join(schema.SPLITS)}; "
                         "say --split train or --split test")
    if label is not None and label not in schema.LABELS:
        raise UsageError(f"label {label!r} is not one of {', '.join(schema.LABELS)}")
    out = []
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise UsageError(f"port {port!r} is not a TCP port; give a number from 1 to 65535")
        if port not in out:
            out.append(port)
    return tuple(out)


def load_workers() -> int:
    """Threads that convert blocks at once: the cores, at most four (MQTTIDS_LOAD_WORKERS)."""
    wanted = os.environ.get("MQTTIDS_LOAD_WORKERS")
    if wanted:
        try:
            return max(1, int(wanted))
        except ValueError:
            raise UsageError(f"MQTTIDS_LOAD_WORKERS={wanted!r} is not a number of threads; "
                             "unset it or give a whole number such as 2") from None
    return max(1, min(4, os.cpu_count() or 1))


def ordered_map(fn: Callable[[Any], T], items: Iterable[Any], workers: int) -> Iterator[T]:
    """``map(fn, items)`` on ``workers`` threads, results in input order.

    Arrow and NumPy release the GIL for their heavy work, so blocks are parsed
    in parallel while the caller sends the previous ones. At most
    ``workers + 1`` results wait, which bounds memory.
    """
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mqttids-load") as pool:
        pending: deque[Future] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def storage_columns(columns: Sequence[str] | None) -> list[str]:
    """Storage names of the packet columns asked for (schema names in either form)."""
    if columns is None:
        return [f.storage for f in schema.ALL_FIELDS]
    if isinstance(columns, str):
        columns = [columns]
    out = []
    for col in columns:
        try:
            out.append(schema.storage_name(schema.field_name(col)))
        except KeyError:
            raise TableError(f"packets have no column {col!r}; see mqttids.schema.COLUMN_NAMES "
                             "for the columns there are") from None
    return out


def check_split(split: str | None) -> None:
    if split is not None and split not in schema.SPLITS:
        raise UsageError(f"split {split!r} is not one of {', '.join(schema.SPLITS)}")


def _json_text(arr: pa.Array) -> pa.Array:
    return pa.array([None if v is None else json.dumps(v, default=str) for v in arr.to_pylist()],
                    pa.string())


def prepare_result_table(name: str, table: pa.Table, mode: str) -> pa.Table:
    """Check a result table's name, mode and (for alerts and models) columns and types."""
    check_table_name(name)
    if mode not in MODES:
        raise UsageError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    if name in INGEST_TABLES:
        raise TableError(f"table {name!r} is written by `mqttids ingest` only; "
                         "give a result table another name")
    if not isinstance(table, pa.Table):
        raise TableError(f"write_table({name!r}) takes a pyarrow.Table, not "
                         f"{type(table).__name__}")
    if name not in FIXED_RESULT_TABLES:
        if len(set(table.column_names)) != len(table.column_names) or not table.column_names:
            raise TableError(f"table {name!r} needs distinct, non-empty column names; "
                             f"got {table.column_names}")
        return table
    arrays = []
    for col in fixed_columns(name, table):
        arr = table.column(col.name).combine_chunks()
        if pa.types.is_nested(arr.type) and col.sql == "jsonb":
            arr = _json_text(arr)
        try:
            arrays.append(pc.cast(arr, col.arrow))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise TableError(f"table {name!r}: column {col.name!r} of type {arr.type} cannot "
                             f"be stored as {col.arrow}") from None
        if col.not_null and arrays[-1].null_count:
            raise TableError(f"table {name!r}: column {col.name!r} has empty values; "
                             "fill every row")
    return pa.table(arrays, names=table.column_names)


class Warehouse(ABC):
    """Feature rows, the ingest ledger, rejects and small result tables, in one store."""

    #: The store's address as it may be shown: never with a password.
    display_url: str

    def ingest(self, sources: Iterable[str | os.PathLike] | str | os.PathLike, split: str,
               label: str | None = None, ports: Iterable[int] = (1883,),
               progress: Progress | None = None) -> IngestReport:
        """Load sources (MQTTset CSV, pcap/pcapng, Parquet) as ``split``, each one batch.

        Every row read is loaded or rejected with its reason; a source whose
        sha256 is already in the ledger is skipped (reported, not reloaded).
        """
        ports = check_ingest_options(split, label, ports)
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        sources = list(sources)
        if not sources:
            raise UsageError("no sources given; name at least one CSV, capture or Parquet file")
        opened: list[Source] = []
        try:
            for given in sources:
                opened.append(open_source(given))
            if progress is not None:
                progress.total(sum(s.size for s in opened))
            return self._ingest_all(opened, split, label, ports, progress)
        finally:
            for source in opened:
                source.discard()

    def _ingest_all(self, opened: list[Source], split: str, label: str | None,
                    ports: tuple[int, ...], progress: Progress | None) -> IngestReport:
        report = IngestReport()
        first_seen: dict[str, BatchReport] = {}
        for source in opened:
            started = time.monotonic()
            earlier = first_seen.get(source.sha256)
            if earlier is not None:
                batch = BatchReport(source.location, source.sha256, source.kind,
                                    batch_id=earlier.batch_id, skipped=True)
            else:
                batch = self._ingest_source(source, split, label, ports, progress)
                first_seen[source.sha256] = batch
            batch.seconds = time.monotonic() - started
            if batch.skipped:
                log.info("skipped %s: sha256 %s is already loaded as batch %s",
                         source.given, source.sha256[:12], batch.batch_id)
                if progress is not None:
                    progress.advance(source.size)
            else:
                log.info("loaded %s as batch %s: %d read, %d loaded, %d rejected in %.1f s",
                         source.given, batch.batch_id, batch.read, batch.loaded,
                         batch.rejected, batch.seconds)
            report.batches.append(batch)
        return report

    @abstractmethod
    def _ingest_source(self, source: Source, split: str, label: str | None,
                       ports: tuple[int, ...], progress: Progress | None) -> BatchReport:
        """Load one source as one atomic batch, or report it skipped."""

    @abstractmethod
    def read_packets_arrow(self, split: str | None = None,
                           columns: Sequence[str] | None = None) -> pa.Table:
        """Packet rows (storage names), all or one split, all or some columns."""

    @abstractmethod
    def spark_read(self, spark, table: str = "packets"):
        """A Spark DataFrame of a table; packets come with storage names."""

    @abstractmethod
    def write_table(self, name: str, table: pa.Table, mode: str = "overwrite") -> None:
        """Store a small result table (analysis results, CV tables, models, alerts)."""

    @abstractmethod
    def read_table(self, name: str) -> pa.Table | None:
        """A stored table, or None when there is none of that name."""

    @abstractmethod
    def table_names(self) -> list[str]:
        """Names of the tables in the store, sorted."""

    def close(self) -> None:
        """Release connections and locks; the object is not usable afterwards."""

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display_url}>"
