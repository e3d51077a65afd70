"""MQTTset CSV files to checked rows, streamed in blocks of whole lines.

Every variant of the published files is read the same way: flags in hex of
any width (``0x00000018``, ``0x0018``) or plain decimal (``0``), column names
with dots (``tcp.flags``) or underscores (``tcp_flags``), any column order.
MQTTset wrote ``0`` for an absent value; see
:data:`mqttids.warehouse.constraints.MQTTSET_ZERO_IS_NULL` for how that is read.

One physical line is one row (no MQTTset value holds a line break), which
keeps line numbers exact and memory flat. A block that is plain ASCII without
quotes or blank lines (the published files) goes straight to Arrow's CSV
parser with numeric columns typed; any other block is screened line by line
first, so that a line with bad UTF-8, a NUL byte or broken quoting is refused
on its own instead of spoiling its neighbours.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mqttids import schema
from mqttids.warehouse.constraints import MQTTSET_ZERO_IS_NULL
from mqttids.warehouse.convert import RowFaults, as_strings, parse_text_column
from mqttids.warehouse.errors import SourceFormatError
from mqttids.warehouse.rows import (Reject, RowChunk, SourceContext, finish, output_names,
                                    raw_text, reject_list)

BLOCK_BYTES = 8 << 20
MAX_HEADER_BYTES = 1 << 16

_FIELD = rb'(?:[^",\r\n]*|"(?:[^"\r\n]|"")*")'
_QUOTED_LINE = re.compile(_FIELD + rb"(?:," + _FIELD + rb")*")
_TYPED_KINDS = {schema.INT, schema.FLOAT}  # parsed by Arrow directly on the fast path


@dataclass(frozen=True)
class CsvHeader:
    """The columns of a CSV file as schema names, in file order."""

    names: tuple[str, ...]

    @property
    def width(self) -> int:
        return len(self.names)


def parse_header(line: bytes, source: str) -> CsvHeader:
    """Schema names of a header line; unknown, repeated or missing columns are errors."""
    try:
        text = line.decode("utf-8-sig").strip("\r\n")
    except UnicodeDecodeError:
        raise SourceFormatError(
            f"{source}: the first line is not UTF-8 text, so this is not an MQTTset CSV; "
            "give a CSV with a header line, a pcap/pcapng capture or a Parquet file") from None
    cells = [c.strip() for c in next(csv.reader([text]), [])]
    names, unknown = [], []
    for cell in cells:
        try:
            names.append(schema.field_name(cell))
        except KeyError:
            unknown.append(cell)
    if unknown:
        raise SourceFormatError(
            f"{source}: unknown column(s) {', '.join(map(repr, unknown[:5]))} in the header; "
            "an MQTTset CSV starts with a header of Wireshark field names such as "
            "'tcp.flags' (or 'tcp_flags')")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SourceFormatError(f"{source}: column(s) {', '.join(repeated)} appear twice in "
                                "the header; remove the copies")
    missing = [n for n in schema.FEATURE_NAMES if n not in names]
    if missing:
        raise SourceFormatError(
            f"{source}: the header lacks {len(missing)} of the 33 MQTTset feature columns "
            f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); "
            "give the file with all of them")
    return CsvHeader(tuple(names))


def read_header(stream: BinaryIO, source: str) -> tuple[CsvHeader, int]:
    """Read and parse the first line; returns the header and the bytes it took."""
    line = stream.readline(MAX_HEADER_BYTES)
    if not line:
        raise SourceFormatError(f"{source}: the file is empty; an MQTTset CSV needs at least "
                                "its header line")
    if not line.endswith(b"\n") and len(line) >= MAX_HEADER_BYTES:
        raise SourceFormatError(f"{source}: no line break in the first "
                                f"{MAX_HEADER_BYTES} bytes, so this is not a CSV file")
    return parse_header(line, source), len(line)


@dataclass
class _Block:
    first_line: int
    data: bytes


def _blocks(stream: BinaryIO, first_line: int, block_bytes: int) -> Iterator[_Block | Reject]:
    """Whole lines in blocks of about ``block_bytes``; a line longer than that is refused."""
    carry = b""
    line = first_line
    while True:
        data = stream.read(block_bytes)
        if not data:
            break
        data = carry + data if carry else data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) > block_bytes:
                yield Reject(line, None, f"line longer than {block_bytes} bytes",
                             raw_text(data[:1024]))
                carry = _skip_to_newline(stream)
                line += 1
            else:
                carry = data
            continue
        block, carry = data[:cut], data[cut:]
        yield _Block(line, block)
        line += block.count(b"\n")
    if carry:
        yield _Block(line, carry + b"\n")


def _skip_to_newline(stream: BinaryIO) -> bytes:
    """Drop input up to the next line break; return what follows it."""
    while True:
        data = stream.read(BLOCK_BYTES)
        if not data:
            return b""
        cut = data.find(b"\n")
        if cut >= 0:
            return data[cut + 1:]


def _clean(data: bytes) -> bool:
    """True when a block can go to Arrow as it is (the published files' case)."""
    if b'"' in data or b"\x00" in data:
        return False
    if data.startswith((b"\n", b"\r\n")) or b"\n\n" in data or b"\n\r\n" in data:
        return False
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _screen(block: _Block) -> tuple[bytes, np.ndarray, list[Reject]]:
    """Drop blank lines; refuse lines with bad UTF-8, NUL bytes or broken quoting."""
    kept, numbers, rejects = [], [], []
    lines = block.data.split(b"\n")
    if block.data.endswith(b"\n"):
        lines.pop()
    for i, line in enumerate(lines):
        body = line[:-1] if line.endswith(b"\r") else line
        if not body:
            continue
        number = block.first_line + i
        reason = None
        if b"\x00" in body:
            reason = "holds a NUL byte"
        else:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                reason = (f"not valid UTF-8: byte 0x{body[exc.start]:02x} at byte "
                          f"{exc.start + 1} of the line")
        if reason is None and b'"' in body and not _QUOTED_LINE.fullmatch(body):
            reason = "broken quoting: a quote that does not open or close a whole field"
        if reason is not None:
            rejects.append(Reject(number, None, reason, raw_text(body)))
        else:
            kept.append(body)
            numbers.append(number)
    data = b"\n".join(kept) + b"\n" if kept else b""
    return data, np.asarray(numbers, dtype=np.int64), rejects


class MqttsetCsvReader:
    """Rows of one MQTTset CSV stream, as :class:`RowChunk` objects."""

    def __init__(self, stream: BinaryIO, ctx: SourceContext, source: str,
                 block_bytes: int | None = None):
        self._stream = stream
        self._ctx = ctx
        self._block_bytes = block_bytes or BLOCK_BYTES
        self.header, self._header_bytes = read_header(stream, source)
        self.names = output_names(set(self.header.names))
        self._typed = {n: schema.BY_NAME[n].arrow_type for n in self.header.names
                       if schema.BY_NAME[n].kind in _TYPED_KINDS}
        self._strings = {n: pa.string() for n in self.header.names}

    def units(self) -> Iterator[_Block | Reject]:
        """Blocks of whole lines (or refused overlong lines), in file order: cheap to make."""
        return _blocks(self._stream, 2, self._block_bytes)

    def convert(self, unit: _Block | Reject) -> RowChunk:
        """The rows of one unit; units are independent, so threads may convert them."""
        if isinstance(unit, Reject):
            return RowChunk(self._empty_schema().empty_table(), [unit])
        chunk = self._parse_block(unit)
        chunk.consumed = len(unit.data) + (self._header_bytes if unit.first_line == 2 else 0)
        return chunk

    def chunks(self) -> Iterator[RowChunk]:
        for unit in self.units():
            yield self.convert(unit)

    def _empty_schema(self) -> pa.Schema:
        return schema.arrow_schema(self.names, storage=True)

    def _parse_block(self, block: _Block) -> RowChunk:
        if _clean(block.data):
            data, numbers, rejects = block.data, None, []
        else:
            data, numbers, rejects = _screen(block)
        if not data:
            return RowChunk(self._empty_schema().empty_table(), rejects)
        invalid: list[tuple[int, str, str]] = []
        table, typed = self._read(data, invalid)
        lines = _line_numbers(data, block.first_line, numbers)
        skipped = np.asarray([n - 1 for n, _, _ in invalid if n is not None], dtype=np.int64)
        for n, reason, text in invalid:
            if n is not None:
                rejects.append(Reject(int(lines[n - 1]), None, reason, raw_text(text)))
        kept_rows = np.delete(np.arange(len(lines)), skipped)
        if len(kept_rows) != table.num_rows or len(skipped) != len(invalid):
            raise SourceFormatError(
                f"{self._ctx.name}: lines {lines[0]}-{lines[-1]} could not be lined up with "
                "the rows parsed from them; report this file to the mqttids maintainers")
        good, bad, faults = self._convert(table, typed)
        if len(bad):
            starts = _line_starts(data)
            rejects.extend(reject_list(
                bad, faults,
                where=lambda r: (int(lines[kept_rows[r]]), None),
                raw=lambda r: data[starts[kept_rows[r]]:starts[kept_rows[r] + 1] - 1]
                .rstrip(b"\r")))
        rejects.sort(key=lambda rj: rj.line)
        return RowChunk(good, rejects)

    def _read(self, data: bytes, invalid: list) -> tuple[pa.Table, bool]:
        """Parse with numeric columns typed; on any conversion error, all as text instead.

        Returns the table and whether the numeric columns are typed. Rows with
        the wrong number of fields are skipped and listed in ``invalid``.
        """
        def on_invalid(row) -> str:
            invalid.append((row.number, f"expected {row.expected_columns} fields, found "
                                        f"{row.actual_columns}", row.text))
            return "skip"

        def parse(types: dict[str, pa.DataType]) -> pa.Table:
            invalid.clear()
            return pacsv.read_csv(
                pa.BufferReader(data),
                read_options=pacsv.ReadOptions(column_names=list(self.header.names),
                                               use_threads=False, block_size=len(data) + 1),
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(column_types=self._strings | types,
                                                     null_values=[""],
                                                     strings_can_be_null=True))

        try:
            return parse(self._typed), True
        except pa.ArrowInvalid:
            return parse({}), False

    def _convert(self, table: pa.Table, typed: bool
                 ) -> tuple[pa.Table, np.ndarray, RowFaults]:
        rows = table.num_rows
        faults = RowFaults(rows)
        columns: dict[str, pa.Array] = {}
        for name in self.names:
            if name not in self.header.names or name in ("target", "split"):
                if name in self.header.names:
                    columns[name] = as_strings(table.column(name))
                continue
            col = table.column(name).combine_chunks()
            if typed and name in self._typed:
                columns[name] = col
            else:
                columns[name] = parse_text_column(col, schema.BY_NAME[name], faults,
                                                  zero_is_null=name in MQTTSET_ZERO_IS_NULL)
        good, bad = finish(columns, rows, self.names, self._ctx, faults, nul_checked=True)
        return good, bad, faults


def _line_numbers(data: bytes, first_line: int, numbers: np.ndarray | None) -> np.ndarray:
    """The file line number of each line in ``data``."""
    if numbers is not None:
        return numbers
    count = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    return first_line + np.arange(count, dtype=np.int64)


def _line_starts(data: bytes) -> np.ndarray:
    """Offsets where each line of ``data`` starts, plus one past the end."""
    breaks = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    starts = np.concatenate([[0], breaks])
    if not data.endswith(b"\n"):
        starts = np.concatenate([starts, [len(data) + 1]])
    return starts
