"""Captures -> Arrow record batches of feature rows."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from mqttids import schema
from mqttids.capture.errors import CaptureError
from mqttids.capture.pcap import read_frames
from mqttids.capture.rows import FrameDecoder
from mqttids.errors import InputNotFoundError, UsageError

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
    the number of frames read since its last call.
    """
    ports = check_ports(ports)
    label = check_label(label)
    stats = stats if stats is not None else ExtractStats()
    stream, name, shown, owned = _open(source)
    decoder = FrameDecoder(ports, per_message=per_message, source=name, label=label)
    started = time.perf_counter()
    rows: list[tuple] = []
    decode = decoder.decode
    extend = rows.extend
    try:
        for frame_no, ts_ns, linktype, data in read_frames(stream, shown, stats.warnings):
            out = decode(frame_no, ts_ns, linktype, data)
            if out:
                extend(out)
                if len(rows) >= batch_rows:
                    stats.rows += len(rows)
                    yield rows_to_batch(rows)
                    rows.clear()
                    if progress is not None:
                        progress(decoder.frames - stats.packets)
                        stats.packets = decoder.frames
        if rows:
            stats.rows += len(rows)
            yield rows_to_batch(rows)
    finally:
        if owned:
            stream.close()
        if progress is not None:
            progress(decoder.frames - stats.packets)
        stats.packets = decoder.frames
        stats.malformed += decoder.malformed
        stats.messages += decoder.mqtt_messages
        stats.seconds += time.perf_counter() - started


def source_size(source) -> int | None:
    """Bytes in a capture file, for a progress bar; None for streams."""
    try:
        return os.path.getsize(source) if str(source) != "-" else None
    except (OSError, TypeError):
        return None
