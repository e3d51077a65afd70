"""Scored rows -> alerts: one per connection, label and time window.

Scoring gives a label to every packet row; a person needs one line per
attack on a connection, not one per packet. :class:`AlertTracker` keeps a
little state per connection (flow id): the window it is in, its counters at
the window's start, and per attack label the rows flagged so far. The first
flagged row of a (connection, label) in a window raises the alert as soon as
its micro-batch is scored, so the alert is as early as the scoring allows;
later rows of the same label in the same window only add to the counts.
Rows predicted ``legitimate`` never raise anything.

Windows are tumbling and aligned to the epoch in capture time
(``floor(ts / window)``), so replaying a capture gives the same alerts
however fast it is read. Pure: no I/O, the caller hands in columns and gets
:class:`Alert` objects back.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mqttids import schema

BENIGN = "legitimate"
# The row columns the tracker reads (schema names); checked against the schema below.
TRACKED: tuple[str, ...] = (
    "flow", "ts", "frame", "src", "dst", "sport", "dport", "client_id",
    "ctx.flow_packets", "ctx.flow_msgs", "ctx.flow_connects", "ctx.flow_bytes",
    "ctx.client_connects", "ctx.to_broker", "ctx.malformed",
)
for _name in TRACKED:
    schema.BY_NAME[_name]  # noqa: B018 - fails at import if the schema renames a column

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_ZERO = (0, 0, 0, 0)


def iso_time(ts_us: int) -> str:
    """Microseconds since the epoch as ISO 8601 UTC, exactly (no float rounding)."""
    return (_EPOCH + dt.timedelta(microseconds=ts_us)).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Alert:
    """One alert: a connection, a label, a window, and the counts behind the score."""

    ts_us: int  # capture time of the first row that raised it
    flow: str
    src: str | None
    dst: str | None
    sport: int | None
    dport: int | None
    client_id: str | None
    label: str
    score: float
    evidence: dict = field(default_factory=dict)

    @property
    def time(self) -> str:
        return iso_time(self.ts_us)

    def to_json(self) -> dict:
        """The JSON-lines object of design.md ("Machine-readable output"), keys in order."""
        return {"time": self.time, "flow": self.flow, "src": self.src, "dst": self.dst,
                "sport": self.sport, "dport": self.dport, "client_id": self.client_id,
                "label": self.label, "score": round(self.score, 6), "evidence": self.evidence}


class _Mark:
    """Rows of one attack label on one connection, from the window's first until its alert."""

    __slots__ = ("first_ts", "first_frame", "rows", "score_sum", "max_score", "malformed")

    def __init__(self, ts: int, frame: int):
        self.first_ts = ts
        self.first_frame = frame
        self.rows = 0
        self.score_sum = 0.0
        self.max_score = 0.0
        self.malformed = 0


class _Flow:
    """What the tracker remembers of one connection."""

    __slots__ = ("window", "base", "last", "last_ts", "ends", "client_id", "client_connects",
                 "alerted", "marks")

    def __init__(self, ends: tuple):
        self.window = None
        self.base = _ZERO  # counters before the window's first row
        self.last = _ZERO  # counters at the latest row
        self.last_ts = 0
        self.ends = ends  # (src, dst, sport, dport), client -> broker
        self.client_id: str | None = None
        self.client_connects = 0
        self.alerted = 0  # bit per label index: alerted in the current window
        self.marks: dict[int, _Mark] | None = None  # flagged, alert not yet raised


class AlertTracker:
    """Per-connection alert windows, with a bound on the connections it remembers.

    Memory: at most ``max_flows`` connections are kept (the least recently
    seen go first when a batch leaves more), each a few hundred bytes; marks
    of flagged rows live only until the end of the batch that raises their alert.
    """

    def __init__(self, labels: Sequence[str] = schema.LABELS, window_s: float = 60.0,
                 max_flows: int = 100_000):
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        self.labels = tuple(labels)
        self.benign = self.labels.index(BENIGN) if BENIGN in self.labels else -1
        self.window_s = window_s
        self.window_us = max(1, int(round(window_s * 1_000_000)))
        self.max_flows = max_flows
        self.flows: dict[str, _Flow] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.flows)

    def update(self, cols: Mapping[str, Sequence], predicted: Sequence[int],
               scores: Sequence[float]) -> list[Alert]:
        """Take one scored micro-batch; return the alerts it raises, in row order.

        ``cols`` maps each of :data:`TRACKED` to the batch's values, ``predicted``
        gives each row's label index in ``labels`` and ``scores`` its probability.
        """
        out: list[Alert] = []
        due: list[tuple[str, _Flow]] = []
        flows, ts_col, frames = cols["flow"], cols["ts"], cols["frame"]
        counters = list(zip(cols["ctx.flow_packets"], cols["ctx.flow_msgs"],
                            cols["ctx.flow_connects"], cols["ctx.flow_bytes"]))
        client_ids, client_connects = cols["client_id"], cols["ctx.client_connects"]
        malformed = cols["ctx.malformed"]
        benign, width = self.benign, self.window_us
        for i, flow_id in enumerate(flows):
            st = self.flows.get(flow_id)
            if st is None:
                st = self.flows[flow_id] = _Flow(_client_to_broker(cols, i))
            ts = ts_col[i]
            ts = st.last_ts if ts is None else ts
            window = ts // width
            now = counters[i]
            if window != st.window or (now[0] or 0) < (st.last[0] or 0):
                # A new window, or the decoder forgot the connection and counts anew.
                self._close_window(flow_id, st, out)
                st.window = window
                st.base = st.last if (now[0] or 0) >= (st.last[0] or 0) else _ZERO
            st.last = now
            st.last_ts = ts
            if client_ids[i] is not None:
                st.client_id = client_ids[i]
            st.client_connects = client_connects[i] or 0
            label = predicted[i]
            if label == benign or st.alerted >> label & 1:
                continue
            if st.marks is None:
                st.marks = {}
                due.append((flow_id, st))
            mark = st.marks.get(label)
            if mark is None:
                mark = st.marks[label] = _Mark(ts, frames[i])
            score = scores[i]
            mark.rows += 1
            mark.score_sum += score
            if score > mark.max_score:
                mark.max_score = score
            mark.malformed += 1 if malformed[i] else 0
        for flow_id, st in due:
            self._raise_marked(flow_id, st, out)
        if len(self.flows) > self.max_flows:
            self._shed(len(self.flows) - self.max_flows)
        return out

    def _close_window(self, flow_id: str, st: _Flow, out: list[Alert]) -> None:
        """Raise what the ending window flagged but has not yet alerted, then clear it."""
        self._raise_marked(flow_id, st, out)
        st.alerted = 0

    def _raise_marked(self, flow_id: str, st: _Flow, out: list[Alert]) -> None:
        if st.marks:
            for label, mark in st.marks.items():
                out.append(self._alert(flow_id, st, label, mark))
                st.alerted |= 1 << label
        st.marks = None

    def _alert(self, flow_id: str, st: _Flow, label: int, mark: _Mark) -> Alert:
        last, base = st.last, st.base
        src, dst, sport, dport = st.ends
        mean = mark.score_sum / mark.rows
        evidence = {
            "rows": mark.rows,
            "packets": _diff(last[0], base[0]),
            "messages": _diff(last[1], base[1]),
            "connects": _diff(last[2], base[2]),
            "bytes": _diff(last[3], base[3]),
            "client_connects": st.client_connects,
            "malformed": mark.malformed,
            "mean_score": round(mean, 6),
            "max_score": round(mark.max_score, 6),
            "first_frame": mark.first_frame,
            "window_start": iso_time(st.window * self.window_us),
            "window_seconds": self.window_s,
        }
        return Alert(mark.first_ts, flow_id, src, dst, sport, dport, st.client_id,
                     self.labels[label], mean, evidence)

    def evict_idle(self, now_us: int, idle_us: int) -> int:
        """Forget connections silent for more than ``idle_us``; returns how many went."""
        stale = [k for k, st in self.flows.items() if now_us - st.last_ts > idle_us]
        for k in stale:
            del self.flows[k]
        self.evicted += len(stale)
        return len(stale)

    def _shed(self, excess: int) -> None:
        """Drop the least recently seen connections, a tenth of the cap at a time."""
        n = max(excess, self.max_flows // 10, 1)
        oldest = heapq.nsmallest(n, self.flows.items(), key=lambda kv: kv[1].last_ts)
        for k, _ in oldest:
            del self.flows[k]
        self.evicted += len(oldest)


def _diff(now: int | None, before: int | None) -> int:
    return (now or 0) - (before or 0)


def _client_to_broker(cols: Mapping[str, Sequence], i: int) -> tuple:
    """(src, dst, sport, dport) of row ``i``, turned to read client -> broker."""
    ends = (cols["src"][i], cols["dst"][i], cols["sport"][i], cols["dport"][i])
    if cols["ctx.to_broker"][i] == 0:
        return ends[1], ends[0], ends[3], ends[2]
    return ends
