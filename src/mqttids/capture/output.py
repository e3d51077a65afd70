"""Writing feature rows to CSV or Parquet, chosen by the output's suffix."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mqttids.errors import UsageError

SUFFIXES = (".csv", ".parquet")


def check_output(path: str) -> Path:
    """The output path, refused before any work when its suffix or folder is wrong."""
    out = Path(path)
    if out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"output {path!r} must end in .csv or .parquet, which picks the format")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"the folder of output {path!r} does not exist: create {str(parent)!r}")
    return out


def write_batches(path: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    """Stream batches to ``path``; a partial file is removed if writing fails."""
    tmp = path.with_name(f".{path.name}.partial")
    rows = 0
    try:
        if path.suffix.lower() == ".parquet":
            with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                for batch in batches:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        else:
            with pacsv.CSVWriter(tmp, schema) as writer:
                for batch in batches:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return rows
