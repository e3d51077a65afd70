"""The ingest job: MQTTset CSV files at any URI into the warehouse, parsed by Spark's executors.

Each file is one batch, as with ``mqttids ingest``: fingerprinted (SHA-256,
computed in the JVM while the bytes stream past), skipped when the ledger
already holds it, and otherwise loaded whole or not at all. Rows are typed and
checked by the warehouse's own MQTTset reader
(:class:`mqttids.warehouse.csvrows.MqttsetCsvReader`, whose types come from
:mod:`mqttids.schema`), run inside ``mapInArrow`` on every executor, so a row
gets the same value or the same reject reason whichever way it was loaded.

Line numbers of rejected rows are exact although the file is read in
parallel: a first pass counts the lines of each block Spark splits the file
into, and each row's number is its block's first line plus its position in
the block.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import time
import zlib
from collections.abc import Iterator
from functools import partial

import numpy as np
import pyarrow as pa

from mqttids.jobs import hadoopfs
from mqttids.jobs.store import BatchCounts, BatchSource, JobWarehouse, PACKETS_SCHEMA
from mqttids.warehouse.base import check_ingest_options
from mqttids.warehouse.csvrows import MAX_HEADER_BYTES, MqttsetCsvReader, parse_header
from mqttids.warehouse.errors import SourceFormatError
from mqttids.warehouse.report import BatchReport, IngestReport
from mqttids.warehouse.rows import SourceContext

log = logging.getLogger(__name__)

# A reject's position, reason and text; prefixed, since packets have a ``frame`` column.
REJECT_FIELDS = (("_line", pa.int64()), ("_reason", pa.string()), ("_raw", pa.string()))
REJECTED = "_rejected"
PARSED_SCHEMA = pa.schema(list(PACKETS_SCHEMA) + [pa.field(n, t) for n, t in REJECT_FIELDS]
                          + [pa.field(REJECTED, pa.bool_())])
_NOT_CSV = {b"\xa1\xb2\xc3\xd4": "a pcap capture", b"\xd4\xc3\xb2\xa1": "a pcap capture",
            b"\x0a\x0d\x0d\x0a": "a pcapng capture", b"PAR1": "a Parquet file"}


def header_line(head: bytes, uri: str) -> bytes:
    """The first line of a file from its first bytes (gzip-compressed files are opened)."""
    if head[:2] == b"\x1f\x8b":
        head = zlib.decompressobj(wbits=31).decompress(head, MAX_HEADER_BYTES)
    if not head:
        raise SourceFormatError(f"{uri}: the file is empty; an MQTTset CSV needs at least "
                                "its header line")
    kind = _NOT_CSV.get(head[:4])
    if kind is not None:
        raise SourceFormatError(f"{uri} is {kind}, not an MQTTset CSV: the Spark ingest job "
                                "takes CSV files; load captures and Parquet with "
                                "`mqttids ingest`")
    return head.split(b"\n", 1)[0].rstrip(b"\r")


def open_source(spark, uri: str) -> tuple[BatchSource, bytes]:
    """Fingerprint one file and check its header before anything is loaded."""
    header = header_line(hadoopfs.read_head(spark, uri, MAX_HEADER_BYTES), uri)
    parse_header(header + b"\n", uri)
    return BatchSource(hadoopfs.qualify(spark, uri), hadoopfs.sha256(spark, uri)), header


# -- parsing on the executors -------------------------------------------------------------

def _runs(lines: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index ranges of consecutive line numbers."""
    if not len(lines):
        return []
    cuts = np.flatnonzero(np.diff(lines) != 1) + 1
    bounds = [0, *cuts.tolist(), len(lines)]
    return list(zip(bounds[:-1], bounds[1:]))


def _conform(table: pa.Table, rejected: bool) -> pa.RecordBatch:
    """Rows in PARSED_SCHEMA: every packet column, then the reject columns."""
    n = table.num_rows
    arrays = [table.column(f.name).combine_chunks() if f.name in table.column_names
              else pa.nulls(n, f.type) for f in PARSED_SCHEMA if f.name != REJECTED]
    arrays.append(pa.repeat(pa.scalar(rejected), n))
    return pa.RecordBatch.from_arrays(arrays, schema=PARSED_SCHEMA)


def _parse_run(values: list[bytes], first_line: int, header: bytes,
               ctx: SourceContext) -> Iterator[pa.RecordBatch]:
    """Rows and rejects of consecutive lines, numbered as in the file."""
    data = header + b"\n" + b"\n".join(values) + b"\n"
    reader = MqttsetCsvReader(io.BytesIO(data), ctx, ctx.name)
    shift = first_line - 2  # the reader numbers the line after the header 2
    for chunk in reader.chunks():
        if chunk.table.num_rows:
            yield _conform(chunk.table, rejected=False)
        if chunk.rejects:
            yield _conform(pa.table({
                "_line": pa.array([r.line + shift for r in chunk.rejects], pa.int64()),
                "_reason": pa.array([r.reason for r in chunk.rejects], pa.string()),
                "_raw": pa.array([r.raw for r in chunk.rejects], pa.string()),
            }), rejected=True)


def parse_partition(batches: Iterator[pa.RecordBatch], header: bytes,
                    blocks: dict[int, tuple[int, int]], ctx: SourceContext
                    ) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: raw lines (value, block start, row id) to PARSED_SCHEMA rows.

    ``blocks`` maps a block's start offset to (its first line number, the row
    id Spark gave that line); line 1 is the header and is not a row.
    """
    for batch in batches:
        starts = batch.column(1).to_numpy()
        ids = batch.column(2).to_numpy()
        first = np.array([blocks[int(s)][0] for s in starts], dtype=np.int64)
        first_id = np.array([blocks[int(s)][1] for s in starts], dtype=np.int64)
        lines = first + (ids - first_id)
        values = batch.column(0).to_pylist()
        for start, end in _runs(lines):
            if lines[start] == 1:
                start += 1
            if start < end:
                yield from _parse_run(values[start:end], int(lines[start]), header, ctx)


# -- one file, one batch ---------------------------------------------------------------------

def _raw_lines(spark, uri: str):
    from pyspark.sql import functions as F

    return spark.read.text(uri).select(
        F.col("value").cast("binary").alias("value"),
        F.input_file_block_start().alias("block"),
        F.monotonically_increasing_id().alias("row_id"))


def line_blocks(lines) -> dict[int, tuple[int, int]]:
    """Each block's first line number and first row id, from one pass over the file."""
    from pyspark.sql import functions as F

    counts = lines.groupBy("block").agg(F.count(F.lit(1)).alias("n"),
                                        F.min("row_id").alias("first_id")).collect()
    out, line = {}, 1
    for row in sorted(counts, key=lambda r: r["block"]):
        out[int(row["block"])] = (line, int(row["first_id"]))
        line += int(row["n"])
    return out


def parse_file(spark, uri: str, header: bytes, ctx: SourceContext):
    """A DataFrame of PARSED_SCHEMA rows (rows and rejects) for one CSV file."""
    from mqttids.jobs.store import spark_schema

    lines = _raw_lines(spark, uri)
    blocks = line_blocks(lines)
    return lines.mapInArrow(partial(parse_partition, header=header, blocks=blocks, ctx=ctx),
                            spark_schema(PARSED_SCHEMA))


def load_source(spark, wh: JobWarehouse, source: BatchSource, header: bytes, split: str,
                label: str | None) -> BatchReport:
    """Load one file as one batch, or report it skipped when the ledger has its bytes."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    report = BatchReport(source.uri, source.sha256, source.format)
    started = time.monotonic()
    with wh.writing():
        known = wh.find_batch(source.sha256)
        if known is not None:
            report.batch_id, report.skipped = known, True
            return report
        began = dt.datetime.now(dt.timezone.utc)
        parsed = parse_file(spark, source.uri, header,
                            SourceContext(split, label, source.name))
        parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            counts = {bool(r[REJECTED]): int(r["count"])
                      for r in parsed.groupBy(REJECTED).count().collect()}
            loaded, rejected = counts.get(False, 0), counts.get(True, 0)
            rows = parsed.where(~F.col(REJECTED))
            rejects = parsed.where(F.col(REJECTED)).select(
                F.col("_line").alias("line"), F.lit(None).cast("long").alias("frame"),
                F.col("_reason").alias("reason"), F.col("_raw").alias("raw"))
            report.batch_id = wh.write_batch(
                source, split, label, rows, rejects,
                BatchCounts(loaded + rejected, loaded, rejected), began)
        finally:
            parsed.unpersist()
    report.read, report.loaded, report.rejected = loaded + rejected, loaded, rejected
    report.seconds = time.monotonic() - started
    log.info("loaded %s as batch %s: %d read, %d loaded, %d rejected in %.1f s", source.uri,
             report.batch_id, report.read, report.loaded, report.rejected, report.seconds)
    return report


def ingest_csv(spark, wh: JobWarehouse, uris: list[str], split: str,
               label: str | None = None) -> IngestReport:
    """Load MQTTset CSV files (paths, URIs or globs) as ``split``; each file is one batch.

    Every file is found, fingerprinted and its header checked before the
    first is loaded, so that a bad last file stops the job with nothing done.
    """
    check_ingest_options(split, label, ())
    files = [f for uri in uris for f in hadoopfs.expand(spark, uri)]
    if not files:
        raise SourceFormatError("no sources given; name at least one MQTTset CSV file")
    opened = [open_source(spark, f) for f in files]
    report = IngestReport()
    seen: dict[str, BatchReport] = {}
    for source, header in opened:
        earlier = seen.get(source.sha256)
        if earlier is not None:
            report.batches.append(BatchReport(source.uri, source.sha256, source.format,
                                              batch_id=earlier.batch_id, skipped=True))
            continue
        batch = load_source(spark, wh, source, header, split, label)
        seen[source.sha256] = batch
        report.batches.append(batch)
    return report

