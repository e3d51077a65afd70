"""Alerts summarised for the report: times and labels for the plot, counts, the latest few.

Alerts come from ``mqttids detect`` as JSON lines (design.md, "Machine-readable
output") or as rows of the warehouse's ``alerts`` table. A long run can raise
millions, so the summary keeps only what the page shows: every alert's time
and label (for the plot), counts per label and per client id, and the newest
:data:`LATEST` alerts in full. Pure: the caller hands in dicts.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

LATEST = 50
TOP_CLIENTS = 10


@dataclass
class AlertSummary:
    """What the report shows of a set of alerts."""

    total: int = 0
    times: list[dt.datetime] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    by_label: Counter = field(default_factory=Counter)
    clients: Counter = field(default_factory=Counter)  # (label, client_id) -> alerts
    latest: deque = field(default_factory=lambda: deque(maxlen=LATEST))
    skipped: int = 0  # records that were not alerts (no time or label)
    sources: list[str] = field(default_factory=list)

    def top_clients(self, n: int = TOP_CLIENTS) -> list[tuple[str, str, int]]:
        """(label, client id, alerts) of the ``n`` client ids with most alerts."""
        return [(label, client, count) for (label, client), count in self.clients.most_common(n)]


def parse_time(value) -> dt.datetime | None:
    """An alert time (ISO 8601 text or a datetime) as an aware UTC datetime, or None."""
    if isinstance(value, dt.datetime):
        t = value
    elif isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    if t.tzinfo is None:
        return t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc)


def _evidence(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def add_alerts(summary: AlertSummary, records: Iterable[dict]) -> AlertSummary:
    """Fold alert records into ``summary``; records without a time or label are counted apart."""
    for rec in records:
        t = parse_time(rec.get("time")) if isinstance(rec, dict) else None
        label = rec.get("label") if isinstance(rec, dict) else None
        if t is None or not isinstance(label, str) or not label:
            summary.skipped += 1
            continue
        client = rec.get("client_id")
        client = "" if client is None else str(client)
        summary.total += 1
        summary.times.append(t)
        summary.labels.append(label)
        summary.by_label[label] += 1
        summary.clients[(label, client)] += 1
        summary.latest.append({**rec, "time": t, "client_id": client,
                               "evidence": _evidence(rec.get("evidence"))})
    return summary


def json_lines(lines: Iterable[str]) -> Iterable[dict | None]:
    """JSON objects of a JSON-lines text; a line that is not one object gives None."""
    for line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            yield None
            continue
        yield obj if isinstance(obj, dict) else None


def sort_latest(summary: AlertSummary) -> list[dict]:
    """The kept alerts, newest first."""
    return sorted(summary.latest, key=lambda a: a["time"], reverse=True)
