"""The streaming detector: captured bytes -> feature rows -> micro-batch scores -> alerts.

:class:`Detector` is the in-process API (the CLI uses it, a dashboard can):

    det = Detector(scorer, on_alerts=[show], on_batch=[count])
    det.run(stream, stop=event)     # a pcap/pcapng stream, until it ends or stop is set

or, frame by frame (``(frame_no, ts_ns, linktype, bytes)`` tuples):

    det.feed(frames); det.poll(); ...; det.flush()

Rows are scored in micro-batches: as soon as ``batch_rows`` rows wait, or
when the oldest waiting row has waited ``max_wait_s`` (50 ms), whichever
comes first. A row counts towards an alert when the model's most likely label
is an attack and its probability is at least ``min_score`` (default 0.5: the
model finds that attack more likely than everything else together). Memory
is bounded by ``max_connections`` connections in the decoder and as many in
the alert tracker (see :mod:`mqttids.detect.engines` for how each decoder
keeps to it) plus one queue of input chunks.
"""

from __future__ import annotations

import collections
import logging
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import numpy as np
import pyarrow as pa

from mqttids.detect.alerts import TRACKED, Alert, AlertTracker
from mqttids.detect.engines import CEngine, PythonEngine, c_available
from mqttids.detect.errors import ScorerError
from mqttids.detect.sources import END, ChunkReader, FrameReader

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 4096
DEFAULT_MAX_WAIT_S = 0.05
DEFAULT_WINDOW_S = 60.0
DEFAULT_IDLE_S = 300.0
DEFAULT_MAX_CONNECTIONS = 100_000
DEFAULT_MIN_SCORE = 0.5
ENGINES = ("auto", "c", "python")
_PCAP_NS_HEADER = struct.Struct("<IHHiIII")
_PCAP_RECORD = struct.Struct("<IIII")


class Scorer(Protocol):
    """What the detector needs of a model: its inputs, its label order, probabilities."""

    features: tuple[str, ...]  # schema names of the columns it reads
    labels: tuple[str, ...]  # the label of each probability column

    def predict_proba(self, table: pa.Table) -> np.ndarray: ...


@dataclass
class DetectStats:
    """Running totals; ``to_json`` is the closing summary of ``detect --json``."""

    packets: int = 0
    rows: int = 0
    batches: int = 0
    alerts: int = 0
    seconds: float = 0.0
    predicted: collections.Counter = field(default_factory=collections.Counter)

    def to_json(self) -> dict:
        return {"packets": self.packets, "alerts": self.alerts, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class BatchSummary:
    """What one scored micro-batch held, for listeners such as a dashboard."""

    rows: int
    predicted: dict[str, int]  # rows per predicted label
    alerts: list[Alert]
    packets_total: int
    connections: int
    score_seconds: float


class Detector:
    """Decoding, micro-batch scoring and alert windows for one capture stream."""

    def __init__(self, scorer: Scorer, *, ports: Iterable[int] = (1883,),
                 window_s: float = DEFAULT_WINDOW_S, batch_rows: int = DEFAULT_BATCH_ROWS,
                 max_wait_s: float = DEFAULT_MAX_WAIT_S, idle_s: float = DEFAULT_IDLE_S,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 min_score: float = DEFAULT_MIN_SCORE, engine: str = "auto", source: str = "-",
                 on_alerts: Iterable[Callable[[list[Alert]], None]] = (),
                 on_batch: Iterable[Callable[[BatchSummary], None]] = ()):
        if batch_rows < 1 or max_wait_s < 0 or idle_s <= 0 or max_connections < 1:
            raise ValueError("batch_rows and max_connections must be >= 1, idle_s > 0 and "
                             "max_wait_s >= 0")
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be within [0, 1], got {min_score!r}")
        if engine not in ENGINES:
            raise ValueError(f"engine {engine!r} is not one of {ENGINES}")
        self.scorer = scorer
        self.labels = tuple(scorer.labels)
        self.features = tuple(scorer.features)
        self.warnings: list[str] = []
        ports = tuple(ports)
        if engine == "c" or (engine == "auto" and c_available()):
            self.engine = CEngine(ports, batch_rows, max_connections, source, source,
                                  self.warnings)
        else:
            self.engine = PythonEngine(ports, batch_rows, int(idle_s * 1e9), max_connections,
                                       source)
        self.tracker = AlertTracker(self.labels, window_s, max_connections)
        self.max_wait_s = max_wait_s
        self.min_score = min_score
        self._benign = self.labels.index("legitimate") if "legitimate" in self.labels else -1
        self.idle_us = int(idle_s * 1e6)
        self.on_alerts = list(on_alerts)
        self.on_batch = list(on_batch)
        self.stats = DetectStats()
        self._oldest = 0.0  # monotonic time the oldest waiting row arrived
        self._now_us = 0
        self._next_evict_us: int | None = None
        self._linktype: int | None = None  # of the frames fed to the C engine
        self._header = b""
        self._started = time.perf_counter()

    @property
    def connections(self) -> int:
        return self.engine.connections

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, frames: Iterable[tuple[int, int, int, bytes]]) -> list[Alert]:
        """Decode frames; score every full batch, and a waiting one past its time."""
        if isinstance(self.engine, PythonEngine):
            return self._push(frames)
        return self._push_records(list(frames))

    def _push(self, item) -> list[Alert]:
        engine = self.engine
        idle = engine.waiting == 0
        if isinstance(engine, PythonEngine):
            engine.push_frames(item)
        else:
            engine.push_chunk(*item)
        if idle and engine.waiting:
            self._oldest = time.monotonic()
        out: list[Alert] = []
        while engine.full:
            out.extend(self._score(engine.take()))
        out.extend(self.poll())
        return out

    def _push_records(self, frames: list[tuple[int, int, int, bytes]]) -> list[Alert]:
        """Frames to the C engine, as pcap records (nanosecond time stamps)."""
        out: list[Alert] = []
        start = 0
        for i in range(len(frames) + 1):
            if i < len(frames) and frames[i][2] == self._linktype:
                continue
            if i > start:
                records = b"".join(_PCAP_RECORD.pack(ts // 10**9, ts % 10**9, len(d), len(d)) + d
                                   for _, ts, _, d in frames[start:i])
                out.extend(self._push((self._header, records, True)))
            if i < len(frames):
                first = self._linktype is None
                self._linktype = frames[i][2]
                self._header = _PCAP_NS_HEADER.pack(0xA1B23C4D, 2, 4, 0, 0, 262144,
                                                    self._linktype)
                if first:
                    out.extend(self._push((self._header, self._header, True)))
                else:  # a pcap holds one link type: a new one needs a new decoder
                    self.engine.restart(self._header)
                start = i
        return out

    def poll(self) -> list[Alert]:
        """Score the waiting rows if the oldest has waited ``max_wait_s``."""
        if self.engine.waiting and time.monotonic() - self._oldest >= self.max_wait_s:
            return self.flush()
        return []

    def flush(self) -> list[Alert]:
        """Score every waiting row (end of input, or a stop)."""
        out: list[Alert] = []
        block = self.engine.take()
        while block is not None:
            out.extend(self._score(block))
            block = self.engine.take()
        return out

    @property
    def wait_s(self) -> float | None:
        """Seconds until the waiting rows are due, or None when none wait."""
        if not self.engine.waiting:
            return None
        return max(0.0, self._oldest + self.max_wait_s - time.monotonic())

    # -- scoring -----------------------------------------------------------------------

    def _score(self, block) -> list[Alert]:
        started = time.perf_counter()
        proba = np.asarray(self.scorer.predict_proba(block.table(self.features)))
        if proba.ndim != 2 or proba.shape != (block.n, len(self.labels)):
            raise ScorerError(f"the model returned scores of shape {proba.shape} for "
                              f"{block.n} rows and {len(self.labels)} labels: the bundle "
                              "is inconsistent; retrain it with `mqttids train`")
        predicted = proba.argmax(axis=1)
        scores = proba[np.arange(block.n), predicted]
        # A row whose attack label the model gives less than min_score raises nothing.
        flagged = np.where(scores >= self.min_score, predicted, self._benign)
        cols = block.columns(TRACKED)
        alerts = self.tracker.update(cols, flagged.tolist(), scores.tolist())
        self._evict(cols["ts"])
        counts = np.bincount(predicted, minlength=len(self.labels))
        by_label = {self.labels[i]: int(c) for i, c in enumerate(counts) if c}
        st = self.stats
        st.rows += block.n
        st.batches += 1
        st.alerts += len(alerts)
        st.predicted.update(by_label)
        st.packets = self.engine.frames
        if self.engine.waiting:
            self._oldest = time.monotonic()
        summary = BatchSummary(block.n, by_label, alerts, st.packets, self.connections,
                               time.perf_counter() - started)
        if alerts:
            for listener in self.on_alerts:
                listener(alerts)
        for listener in self.on_batch:
            listener(summary)
        return alerts

    def _evict(self, ts: list) -> None:
        """Let the tracker forget connections idle for ``idle_s``, now and then."""
        try:
            latest = max(ts)
        except TypeError:  # a NULL time stamp (a corrupt capture) among them
            latest = max((t for t in ts if t is not None), default=None)
        if latest is None or latest <= self._now_us:
            return
        self._now_us = latest
        if self._next_evict_us is None:
            self._next_evict_us = latest + self.idle_us // 4
        elif latest >= self._next_evict_us:
            self._next_evict_us = latest + self.idle_us // 4
            self.tracker.evict_idle(latest, self.idle_us)

    # -- driving a stream ------------------------------------------------------------------

    def run(self, stream: BinaryIO, name: str = "-", stop: threading.Event | None = None,
            grace_s: float = 2.0, on_stop: Callable[[], None] | None = None) -> DetectStats:
        """Read a pcap/pcapng stream until it ends (or ``stop`` is set), scoring as it goes.

        After ``stop`` is set, ``on_stop`` is called once (to end a capture
        program) and input already on its way keeps being scored for up to
        ``grace_s`` seconds; then every waiting row is scored and the totals
        returned. The stream should be unbuffered (see :mod:`.sources`).
        """
        stop = stop or threading.Event()
        if isinstance(self.engine, PythonEngine):
            reader = FrameReader(stream, name, warnings=self.warnings)
        else:
            reader = ChunkReader(stream, name)
        reader.start()
        drain_until = None
        try:
            while True:
                if stop.is_set() and drain_until is None:
                    drain_until = time.monotonic() + grace_s
                    if on_stop is not None:
                        on_stop()
                if drain_until is not None and time.monotonic() > drain_until:
                    break
                wait = self.wait_s
                try:
                    item = reader.queue.get(timeout=0.1 if wait is None else min(wait, 0.1))
                except queue.Empty:
                    self.poll()
                    continue
                if item is END:
                    self.engine.finish()
                    break
                if isinstance(item, BaseException):
                    raise item
                self._push(item)
        finally:
            reader.stop()
        self.flush()
        self.stats.packets = self.engine.frames
        self.stats.seconds = time.perf_counter() - self._started
        return self.stats
