"""Capture stage: pcap/pcapng bytes -> MQTTset feature rows.

Pure Python, no Spark. The public entry points:

- :func:`iter_row_batches` reads a capture file (or ``-``/a binary stream) and
  yields ``pyarrow.RecordBatch`` objects with the columns of
  ``mqttids.schema.arrow_schema()`` (Wireshark names, schema order);
- :class:`ExtractStats` counts packets, rows and malformed messages as it goes.
"""

from mqttids.capture.errors import CaptureError, NotACaptureError
from mqttids.capture.extract import ExtractStats, iter_row_batches

__all__ = ["CaptureError", "ExtractStats", "NotACaptureError", "iter_row_batches"]
