"""Where alerts go: JSON lines on a stream or in a file, and ``mqtt.alerts`` in PostgreSQL.

A sink is called with each micro-batch's alerts (``sink(alerts)``) and closed
once at the end; ``close`` writes whatever it still holds, so stopping the
detector loses no alert.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TextIO

import pyarrow as pa

from mqttids.detect.alerts import Alert
from mqttids.detect.errors import DetectError

log = logging.getLogger(__name__)

ALERTS_TABLE = "alerts"


class JsonLinesSink:
    """One JSON object per alert and line, flushed after every batch (a reader tails it)."""

    def __init__(self, stream: TextIO, owned: bool = False):
        self.stream = stream
        self.owned = owned
        self.written = 0

    @classmethod
    def to_file(cls, path: str | Path) -> JsonLinesSink:
        """Append to ``path`` (a sensor's log keeps the alerts of earlier runs)."""
        path = Path(path)
        if path.is_dir():
            raise DetectError(f"--alerts {str(path)!r} is a folder: give a file name")
        if not path.parent.is_dir():
            raise DetectError(f"--alerts {str(path)!r}: folder {str(path.parent)!r} does not "
                              "exist; create it first")
        try:
            stream = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise DetectError(f"cannot write alerts to {str(path)!r}: {exc.strerror}") from None
        return cls(stream, owned=True)

    def __call__(self, alerts: list[Alert]) -> None:
        self.stream.write("".join(json.dumps(a.to_json()) + "\n" for a in alerts))
        self.stream.flush()
        self.written += len(alerts)

    def close(self) -> None:
        if self.owned:
            self.stream.close()
        else:
            self.stream.flush()


def alerts_table(alerts: list[Alert], model: str | None) -> pa.Table:
    """Alerts as rows of the warehouse's ``alerts`` table (evidence as JSON text)."""
    return pa.table({
        "time": pa.array([a.ts_us for a in alerts], pa.timestamp("us", tz="UTC")),
        "flow": pa.array([a.flow for a in alerts], pa.string()),
        "src": pa.array([a.src for a in alerts], pa.string()),
        "dst": pa.array([a.dst for a in alerts], pa.string()),
        "sport": pa.array([a.sport for a in alerts], pa.int32()),
        "dport": pa.array([a.dport for a in alerts], pa.int32()),
        "client_id": pa.array([a.client_id for a in alerts], pa.string()),
        "label": pa.array([a.label for a in alerts], pa.string()),
        "score": pa.array([a.score for a in alerts], pa.float64()),
        "evidence": pa.array([json.dumps(a.evidence) for a in alerts], pa.string()),
        "model": pa.array([model] * len(alerts), pa.string()),
    })


class WarehouseSink:
    """Appends each micro-batch's alerts to the warehouse's ``alerts`` table (one COPY).

    Micro-batches come at most every 50 ms or every ``--batch`` rows, so even a
    storm of alerts is a few transactions a second.
    """

    def __init__(self, warehouse, model: str | None):
        self.warehouse = warehouse
        self.model = model
        self.written = 0

    def __call__(self, alerts: list[Alert]) -> None:
        self.warehouse.write_table(ALERTS_TABLE, alerts_table(alerts, self.model), mode="append")
        self.written += len(alerts)
        log.debug("wrote %d alerts to %s", len(alerts), self.warehouse)

    def close(self) -> None:
        """Nothing is held between batches; the warehouse is closed by its owner."""
