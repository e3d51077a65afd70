"""Captures -> Arrow record batches of feature rows."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from mqttids import schema
from mqttids.capture import pcap
from mqttids.capture.errors import CaptureError
from mqttids.capture.flows import address_text, flow_id
from mqttids.capture.pcap import read_frames
from mqttids.capture.rows import FrameDecoder
from mqttids.capture.tcp import MAX_MESSAGE, MAX_PENDING_SEGMENTS
from mqttids.errors import InputNotFoundError, UsageError

log = logging.getLogger(__name__)

ARROW_SCHEMA = schema.arrow_schema()
_TS_INDEX = schema.COLUMN_NAMES.index("ts")


@dataclass
class ExtractStats:
    """What an extraction saw, for the summary and the --json object."""

    packets: int = 0
    rows: int = 0
    malformed: int = 0
    messages: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_json(self, output: str | None = None) -> dict:
        return {"packets": self.packets, "rows": self.rows, "malformed": self.malformed,
                "seconds": round(self.seconds, 3), "output": output}


def check_ports(ports: Iterable[int]) -> tuple[int, ...]:
    ports = tuple(ports)
    for port in ports:
        if not 0 < port < 65536:
            raise UsageError(f"--port {port} is not a TCP port: give a number from 1 to 65535")
    return ports


def check_label(label: str | None) -> str | None:
    if label is not None and label not in schema.LABELS:
        raise UsageError(f"--label {label!r} is not a known class: use one of "
                         + ", ".join(schema.LABELS))
    return label


def rows_to_batch(rows: list[tuple]) -> pa.RecordBatch:
    """Row tuples in schema order -> one record batch of the feature schema."""
    columns = list(zip(*rows))
    arrays = []
    for i, f in enumerate(ARROW_SCHEMA):
        arrays.append(pa.array(columns[i], type=f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=ARROW_SCHEMA)


def check_sources(sources: Iterable) -> None:
    """Refuse missing files and folders before any work starts."""
    for source in sources:
        if hasattr(source, "read") or str(source) == "-":
            continue
        path = Path(source)
        if not path.exists():
            raise InputNotFoundError(f"capture {str(path)!r} does not exist: check the path")
        if path.is_dir():
            raise CaptureError(f"{str(path)!r} is a folder: give the capture files in it")


def _open(source) -> tuple[BinaryIO, str, str, bool]:
    """(stream, name for the source column, name for messages, whether we own it)."""
    if hasattr(source, "read"):
        name = str(getattr(source, "name", "-"))
        return source, Path(name).name, name, False
    if str(source) == "-":
        return sys.stdin.buffer, "-", "stdin", False
    check_sources([source])
    path = Path(source)
    return open(path, "rb", buffering=0), path.name, str(path), True


def iter_row_batches(source, *, ports: Iterable[int] = (1883,), per_message: bool = False,
                     label: str | None = None, stats: ExtractStats | None = None,
                     batch_rows: int = 65536, progress=None) -> Iterator[pa.RecordBatch]:
    """Decode one capture (path, ``-`` for stdin, or a binary stream) into batches.

    Memory stays bounded by ``batch_rows`` and the open connections' state,
    whatever the length of the capture. ``progress``, if given, is called with
    the number of frames read since its last call. The C decoder does the work
    when it is built (the Python one is the reference, and the fallback);
    MQTTIDS_PURE_PYTHON=1 forces the Python decoder.
    """
    ports = check_ports(ports)
    label = check_label(label)
    stats = stats if stats is not None else ExtractStats()
    stream, name, shown, owned = _open(source)
    if use_cdecoder():
        decoder = _CRun(stream, name, shown, ports, per_message, label, batch_rows,
                        stats.warnings)
        batches = decoder.batches()
    else:
        decoder = FrameDecoder(ports, per_message=per_message, source=name, label=label)
        batches = _python_batches(decoder, read_frames(stream, shown, stats.warnings),
                                  batch_rows)
    started = time.perf_counter()
    reported = 0  # frames of this capture already given to progress
    try:
        for batch, full in batches:
            stats.rows += batch.num_rows
            yield batch
            if full and progress is not None:
                progress(decoder.frames - reported)
                reported = decoder.frames
    finally:
        if owned:
            stream.close()
        if progress is not None:
            progress(decoder.frames - reported)
        stats.packets += decoder.frames
        stats.malformed += decoder.malformed
        stats.messages += decoder.mqtt_messages
        stats.seconds += time.perf_counter() - started


def _python_batches(decoder: FrameDecoder, frames, batch_rows: int):
    """(batch, full) pairs of the pure-Python decoder: full batches, then the rest."""
    rows: list[tuple] = []
    decode = decoder.decode
    extend = rows.extend
    for frame_no, ts_ns, linktype, data in frames:
        out = decode(frame_no, ts_ns, linktype, data)
        if out:
            extend(out)
            if len(rows) >= batch_rows:
                yield rows_to_batch(rows), True
                rows.clear()
    if rows:
        yield rows_to_batch(rows), False


_C_TYPES = {"int32": pa.int32(), "int64": pa.int64(), "float64": pa.float64(),
            "bool": pa.bool_(), "string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC")}


def _load_cdecoder():
    """The C decoder module when it is built from this source for this schema, else None."""
    try:
        from mqttids.capture import _cdecoder
    except ImportError:
        return None
    made = [(name, _C_TYPES.get(kind)) for name, kind in _cdecoder.COLUMNS]
    source = Path(__file__).with_name("_cdecoder.c")  # present in a source checkout
    if made != [(f.name, f.type) for f in ARROW_SCHEMA] or (source.exists() and hashlib.sha256(
            source.read_bytes()).hexdigest() != _cdecoder.SOURCE_SHA256):
        log.warning("the C capture decoder was built from an older source or schema; using "
                    "the slower Python decoder (rebuild it: pip install -e .)")
        return None
    return _cdecoder


_CDECODER = _load_cdecoder()


def use_cdecoder() -> bool:
    """True when batches come from the C decoder (built, and not switched off)."""
    return _CDECODER is not None and os.environ.get("MQTTIDS_PURE_PYTHON", "") in ("", "0")


def _conn_info(src: bytes, sport: int, dst: bytes, dport: int, generation: int):
    """Flow id and address texts of a new connection, made as flows.new_connection makes them."""
    return flow_id(src, sport, dst, dport, generation), address_text(src), address_text(dst)


class _CRun:
    """The C decoder over one stream: reads chunks as pcap._Buffer does, yields batches.

    Has the counters of :class:`FrameDecoder` (``frames``, ``malformed``,
    ``mqtt_messages``) for the caller's statistics.
    """

    def __init__(self, stream, name, shown, ports, per_message, label, batch_rows, warnings):
        self.stream, self.name, self.shown, self.warnings = stream, name, shown, warnings
        self.options = dict(ports=ports, per_message=per_message, batch_rows=batch_rows,
                            max_message=MAX_MESSAGE, max_pending=MAX_PENDING_SEGMENTS,
                            max_frame=pcap.MAX_FRAME, source=name, label=label,
                            conn_info=_conn_info)
        self.dec = None

    frames = property(lambda self: self.dec.frames if self.dec else 0)
    malformed = property(lambda self: self.dec.malformed if self.dec else 0)
    mqtt_messages = property(lambda self: self.dec.mqtt_messages if self.dec else 0)

    def batches(self):
        head = pcap._read_exactly(self.stream, 4)
        if head not in pcap.PCAP_MAGICS and head != pcap.PCAPNG_SHB:
            # Not a capture: the reference reader raises its NotACaptureError.
            next(read_frames(io.BytesIO(head + self.stream.read(60)), self.shown))
        dec = self.dec = _CDECODER.Decoder(head, **self.options)
        while True:
            status = dec.run()
            self._report()
            if status == _CDECODER.BATCH:
                yield self._batch(), True
            elif status == _CDECODER.NEED:
                chunk = self.stream.read(max(pcap.CHUNK, dec.need))
                if not chunk:
                    dec.finish()
                    self._report()
                    break
                dec.feed(chunk)
            else:
                break
        if dec.rows:
            yield self._batch(), False

    def _report(self) -> None:
        for text in self.dec.warnings():
            pcap._warn(self.warnings, self.shown, text)
        for linktype in self.dec.linktypes():
            # worded as FrameDecoder.decode words it
            logging.getLogger("mqttids.capture.rows").warning(
                "%s: link type %d is not supported; its frames are skipped", self.name, linktype)

    def _batch(self) -> pa.RecordBatch:
        n, columns = self.dec.take()
        arrays = []
        for f, (nulls, valid, *buffers) in zip(ARROW_SCHEMA, columns):
            bufs = [None if valid is None else pa.py_buffer(valid)]
            bufs += [pa.py_buffer(b) for b in buffers]
            arrays.append(pa.Array.from_buffers(f.type, n, bufs, null_count=nulls))
        return pa.RecordBatch.from_arrays(arrays, schema=ARROW_SCHEMA)


def source_size(source) -> int | None:
    """Bytes in a capture file, for a progress bar; None for streams."""
    try:
        return os.path.getsize(source) if str(source) != "-" else None
    except (OSError, TypeError):
        return None
