"""Input files for ``ingest``: what each one is, its fingerprint, and a reader of its rows.

A source is recognised by its first bytes, not its name: pcap and pcapng
magic numbers, Parquet's ``PAR1``, gzip (a compressed CSV or capture), and
otherwise text that must start with an MQTTset CSV header. Everything that can
be checked before loading (existence, format, header, columns) is checked when
the source is opened, so that a bad third file stops the command before the
first one is loaded. The sha256 is taken over the bytes as stored (compressed
if the file is), which is what the ledger compares.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mqttids import schema
from mqttids.errors import InputNotFoundError, MissingDependencyError
from mqttids.warehouse.convert import RowFaults, coerce_column
from mqttids.warehouse.csvrows import MqttsetCsvReader
from mqttids.warehouse.errors import SourceFormatError
from mqttids.warehouse.rows import RowChunk, SourceContext, finish, output_names, reject_list

_PCAP_MAGIC = {b"\xa1\xb2\xc3\xd4", b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1"}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC = b"\x1f\x8b"
ARROW_BATCH_ROWS = 65536


@dataclass
class Source:
    """One input named on the command line, identified and fingerprinted."""

    given: str  # as named by the user ("-" for standard input)
    path: Path  # the file read (a spooled copy for standard input)
    kind: str  # csv, pcap, pcapng or parquet
    compressed: bool
    sha256: str
    size: int
    spooled: bool = False

    @property
    def name(self) -> str:
        """What the ``source`` column holds: the file's base name, or ``-``."""
        return "-" if self.given == "-" else Path(self.given).name

    @property
    def location(self) -> str:
        """What the ledger holds: the absolute path, or ``-``."""
        return "-" if self.given == "-" else str(Path(self.given).resolve())

    def open(self) -> BinaryIO:
        raw = open(self.path, "rb")
        return gzip.GzipFile(fileobj=raw, mode="rb") if self.compressed else raw

    def discard(self) -> None:
        if self.spooled:
            self.path.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _spool_stdin() -> Path:
    """Standard input copied to a temporary file, so it can be hashed and then read."""
    fd, name = tempfile.mkstemp(prefix="mqttids-stdin-")
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
    return Path(name)


def _kind(head: bytes) -> str:
    if head[:4] in _PCAP_MAGIC:
        return "pcap"
    if head[:4] == _PCAPNG_MAGIC:
        return "pcapng"
    if head[:4] == b"PAR1":
        return "parquet"
    return "csv"


def open_source(given: str | os.PathLike) -> Source:
    """Identify one source and check it as far as possible without loading it."""
    given = str(given)
    spooled = given == "-"
    path = _spool_stdin() if spooled else Path(given)
    if not spooled:
        if not path.exists():
            raise InputNotFoundError(f"{given}: no such file; check the path")
        if path.is_dir():
            raise SourceFormatError(f"{given} is a folder; name the files in it instead "
                                    f"(for example {given}/*.csv)")
    with open(path, "rb") as fh:
        head = fh.read(4)
    compressed = head[:2] == _GZIP_MAGIC
    if compressed:
        with gzip.open(path, "rb") as fh:
            try:
                head = fh.read(4)
            except (OSError, EOFError) as exc:
                raise SourceFormatError(f"{given}: a broken gzip file ({exc}); "
                                        "check the download") from None
    kind = _kind(head)
    if kind == "parquet" and compressed:
        raise SourceFormatError(f"{given}: a gzip-compressed Parquet file; "
                                "decompress it first (Parquet compresses itself)")
    source = Source(given, path, kind, compressed, _sha256(path), path.stat().st_size, spooled)
    try:
        with open_reader(source, SourceContext("train", None, source.name), ()) as _:
            pass
    except BaseException:
        source.discard()
        raise
    return source


class _Counting(io.RawIOBase):
    """A read-only stream that counts the bytes taken from it (for progress)."""

    def __init__(self, inner: BinaryIO):
        self._inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._inner.read(len(buffer))
        buffer[:len(data)] = data
        self.count += len(data)
        return len(data)

    def taken(self) -> int:
        count, self.count = self.count, 0
        return count

    def close(self) -> None:
        self._inner.close()
        super().close()


class SourceReader(ABC):
    """The rows of one source: ``names`` (schema order), ``units()`` and ``convert(unit)``.

    Units come in input order and are cheap to make (a block of lines, a
    decoded batch); converting one (parsing, checking) is the costly part and
    needs nothing from other units, so a loader may convert several at once.
    """

    names: tuple[str, ...]

    @abstractmethod
    def units(self) -> Iterator[Any]:
        """Pieces of the input, in order."""

    @abstractmethod
    def convert(self, unit: Any) -> RowChunk:
        """Checked rows and rejects of one piece."""

    def chunks(self) -> Iterator[RowChunk]:
        for unit in self.units():
            yield self.convert(unit)

    def close(self) -> None:
        pass

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CsvSourceReader(SourceReader):
    def __init__(self, source: Source, ctx: SourceContext):
        self._stream = source.open()
        try:
            self._reader = MqttsetCsvReader(self._stream, ctx, source.given)
        except BaseException:
            self._stream.close()
            raise
        self.names = self._reader.names

    def units(self) -> Iterator[Any]:
        return self._reader.units()

    def convert(self, unit: Any) -> RowChunk:
        return self._reader.convert(unit)

    def close(self) -> None:
        self._stream.close()


def _arrow_names(columns: list[str], source: str) -> dict[str, str]:
    """Map a file's column names (Wireshark or storage form) to schema names."""
    found, unknown = {}, []
    for col in columns:
        try:
            found[col] = schema.field_name(col)
        except KeyError:
            unknown.append(col)
    if unknown:
        raise SourceFormatError(
            f"{source}: unknown column(s) {', '.join(map(repr, unknown[:5]))}; a Parquet "
            "source must hold the columns that `mqttids extract` writes")
    missing = [n for n in schema.FEATURE_NAMES if n not in found.values()]
    if missing:
        raise SourceFormatError(f"{source}: lacks {len(missing)} of the 33 feature columns "
                                f"({', '.join(missing[:4])}); give a file from `mqttids extract`")
    return found


def _json_row(table: pa.Table, row: int) -> str:
    values = {name: table.column(name)[row].as_py() for name in table.column_names}
    return json.dumps(values, default=str)


def arrow_chunk(table: pa.Table, names: tuple[str, ...], ctx: SourceContext,
                first_row: int) -> RowChunk:
    """Checked rows of an Arrow table whose columns carry schema names."""
    faults = RowFaults(table.num_rows)
    columns = {}
    for name in names:
        if name in table.column_names and name not in ("source",):
            col = table.column(name)
            columns[name] = col if name in ("target", "split") else \
                coerce_column(col, schema.BY_NAME[name], faults)
    good, bad = finish(columns, table.num_rows, names, ctx, faults)
    frames = table.column("frame").to_numpy(zero_copy_only=False) \
        if "frame" in table.column_names else None

    def where(row: int) -> tuple:
        frame = frames[row] if frames is not None else None
        if frame is not None and not np.isnan(frame) and frame >= 1:
            return None, int(frame)
        return first_row + row + 1, None

    rejects = reject_list(bad, faults, where, lambda r: _json_row(table, r))
    return RowChunk(good, rejects)


class ParquetSourceReader(SourceReader):
    def __init__(self, source: Source, ctx: SourceContext):
        try:
            self._file = pq.ParquetFile(source.path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceFormatError(f"{source.given}: not a readable Parquet file ({exc})") \
                from None
        self._map = _arrow_names(self._file.schema_arrow.names, source.given)
        self.names = output_names(set(self._map.values()))
        self._ctx = ctx
        self._size = source.size

    def units(self) -> Iterator[tuple[pa.RecordBatch, int]]:
        first = 0
        for batch in self._file.iter_batches(batch_size=ARROW_BATCH_ROWS):
            yield batch, first
            first += batch.num_rows

    def convert(self, unit: tuple[pa.RecordBatch, int]) -> RowChunk:
        batch, first = unit
        table = pa.Table.from_batches([batch]).rename_columns(
            [self._map[c] for c in batch.schema.names])
        chunk = arrow_chunk(table, self.names, self._ctx, first)
        chunk.consumed = int(self._size * batch.num_rows / max(self._file.metadata.num_rows, 1))
        return chunk

    def close(self) -> None:
        self._file.close()


class CaptureSourceReader(SourceReader):
    def __init__(self, source: Source, ctx: SourceContext, ports: tuple[int, ...]):
        try:
            from mqttids.capture import iter_row_batches
        except ImportError as exc:
            raise MissingDependencyError(
                f"{source.given}: the capture decoder (mqttids.capture) is not available "
                f"({exc}); reinstall mqttids") from None
        self._decode = iter_row_batches
        self._stream = _Counting(source.open())
        self._ctx = ctx
        self._ports = ports
        self.names = output_names(set(schema.COLUMN_NAMES))

    def units(self) -> Iterator[tuple[pa.RecordBatch, int, int]]:
        first = 0
        batches = self._decode(io.BufferedReader(self._stream, 1 << 20), ports=self._ports,
                               label=self._ctx.label, batch_rows=ARROW_BATCH_ROWS)
        for batch in batches:
            yield batch, first, self._stream.taken()
            first += batch.num_rows

    def convert(self, unit: tuple[pa.RecordBatch, int, int]) -> RowChunk:
        batch, first, consumed = unit
        chunk = arrow_chunk(pa.Table.from_batches([batch]), self.names, self._ctx, first)
        chunk.consumed = consumed
        return chunk

    def close(self) -> None:
        self._stream.close()


def open_reader(source: Source, ctx: SourceContext, ports: tuple[int, ...]) -> SourceReader:
    """The reader for a source's format."""
    if source.kind == "csv":
        return CsvSourceReader(source, ctx)
    if source.kind == "parquet":
        return ParquetSourceReader(source, ctx)
    return CaptureSourceReader(source, ctx, ports)
