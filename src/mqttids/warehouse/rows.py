"""What every source reader yields: checked rows in storage form, and the rows refused.

Readers of each format (MQTTset CSV, captures, Parquet) turn their input into
:class:`RowChunk` objects; the warehouses write them without looking inside.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mqttids import schema
from mqttids.warehouse.convert import RowFaults, check_values, labels

log = logging.getLogger(__name__)

MAX_RAW_CHARS = 65536  # raw text kept with a reject; longer text is cut and says so


@dataclass(frozen=True)
class SourceContext:
    """What the command line says about one source: its split, label and file name."""

    split: str
    label: str | None
    name: str  # goes into the ``source`` column: the file's base name, or "-"


@dataclass(frozen=True)
class Reject:
    """One refused row: where it was (line or frame), why, and its text as read."""

    line: int | None
    frame: int | None
    reason: str
    raw: str


@dataclass
class RowChunk:
    """A piece of one source: rows ready to store and rows refused."""

    table: pa.Table  # storage names, schema types
    rejects: list[Reject] = field(default_factory=list)
    consumed: int = 0  # input bytes this chunk accounts for (progress)

    @property
    def read(self) -> int:
        return self.table.num_rows + len(self.rejects)


def raw_text(data: bytes | str) -> str:
    """Raw input as storable text: bad UTF-8 and NUL bytes spelled as escapes, length capped."""
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if len(text) > MAX_RAW_CHARS:
        text = f"{text[:MAX_RAW_CHARS]}... [cut: {len(text)} characters in all]"
    return text


def output_names(present: set[str]) -> tuple[str, ...]:
    """Schema names stored for a source: its columns plus target, split and source, in order."""
    wanted = present | {"target", "split", "source"}
    return tuple(n for n in schema.COLUMN_NAMES if n in wanted)


def storage_schema(names: tuple[str, ...]) -> pa.Schema:
    return schema.arrow_schema(names, storage=True)


def finish(columns: dict[str, pa.Array], rows: int, names: tuple[str, ...],
           ctx: SourceContext, faults: RowFaults, nul_checked: bool = False
           ) -> tuple[pa.Table, np.ndarray]:
    """Check every column, set target/split/source, keep the good rows.

    ``columns`` maps schema names to arrays already in schema types (features,
    provenance, context); ``target`` and ``split`` may be raw text. Returns the
    table of good rows in storage names and the indices of refused rows.
    """
    out: dict[str, pa.Array] = {}
    for name in names:
        fld = schema.BY_NAME[name]
        if name in ("target", "split"):
            fixed = ctx.split if name == "split" else ctx.label
            arr = labels(columns.get(name), rows, fixed, name, faults)
        elif name == "source":
            arr = pa.repeat(pa.scalar(ctx.name, pa.string()), rows)
        elif name in columns:
            arr = columns[name]
            if not nul_checked and pa.types.is_string(arr.type):
                arr = _without_nul(arr, name, ctx)
            check_values(arr, fld, faults, nul_checked=True)
        else:
            arr = pa.nulls(rows, fld.arrow_type)
        out[schema.storage_name(name)] = arr
    table = pa.table(out, schema=storage_schema(names))
    if faults.count:
        table = table.filter(pa.array(~faults.bad))
    return table, np.flatnonzero(faults.bad)


def _without_nul(arr: pa.Array, name: str, ctx: SourceContext) -> pa.Array:
    """Text with each NUL character as U+FFFD, which PostgreSQL's text type can hold.

    Decoded rows (captures, Parquet) carry a NUL where a malformed packet's
    string field held a zero byte; refusing the row would lose the very
    evidence of the malformed class, so the character is replaced, as the
    decoder already replaces bytes that are not UTF-8. (A CSV line holding a
    NUL byte is refused as bad encoding before it gets here.)
    """
    hits = pc.sum(pc.count_substring(arr, "\x00")).as_py() or 0
    if not hits:
        return arr
    log.info("%s: %d NUL character(s) in %s stored as U+FFFD", ctx.name, hits, name)
    return pc.replace_substring(arr, "\x00", "\ufffd")


def reject_list(bad: np.ndarray, faults: RowFaults, where: Callable[[int], tuple],
                raw: Callable[[int], bytes | str]) -> list[Reject]:
    """Rejects for the refused rows; ``where(row)`` gives (line, frame)."""
    out = []
    for row in bad:
        line, frame = where(int(row))
        out.append(Reject(line, frame, faults.reason(int(row)), raw_text(raw(int(row)))))
    return out
