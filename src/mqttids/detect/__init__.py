"""Detect stage: a live capture stream -> feature rows -> model scores -> alerts.

- :class:`Detector` decodes, scores in micro-batches and raises alerts (the
  in-process API: ``run(stream)``, or ``feed(frames)``/``poll()``/``flush()``,
  with ``on_alerts`` and ``on_batch`` listeners);
- :func:`load_scorer` gives the model bundle's Spark-free scorer;
- :class:`OpenSource`/:func:`parse_source` open a file, stdin or ``iface:NAME``;
- :class:`JsonLinesSink` and :class:`WarehouseSink` write the alerts.
"""

from mqttids.detect.alerts import Alert, AlertTracker
from mqttids.detect.detector import (DEFAULT_BATCH_ROWS, DEFAULT_IDLE_S,
                                     DEFAULT_MAX_CONNECTIONS, DEFAULT_MIN_SCORE,
                                     DEFAULT_WINDOW_S, BatchSummary, DetectStats, Detector,
                                     Scorer)
from mqttids.detect.errors import CaptureProgramError, DetectError, ScorerError, SourceError
from mqttids.detect.scoring import load_scorer
from mqttids.detect.sinks import JsonLinesSink, WarehouseSink
from mqttids.detect.sources import OpenSource, SourceSpec, parse_source

__all__ = ["DEFAULT_BATCH_ROWS", "DEFAULT_IDLE_S", "DEFAULT_MAX_CONNECTIONS",
           "DEFAULT_MIN_SCORE", "DEFAULT_WINDOW_S", "Alert", "AlertTracker", "BatchSummary",
           "CaptureProgramError", "DetectError", "DetectStats", "Detector", "JsonLinesSink",
           "OpenSource", "Scorer", "ScorerError", "SourceError", "SourceSpec", "WarehouseSink",
           "load_scorer", "parse_source"]
