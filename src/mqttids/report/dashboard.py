"""The live dashboard of ``mqttids detect --dashboard [HOST:]PORT``.

A small HTTP server in a background thread serves one page; the page gets
alerts and per-class traffic counts pushed over server-sent events
(``/events``) and draws them with DOM text nodes and SVG built from numbers,
never from markup, because client ids and topics come off the wire. The
server binds 127.0.0.1 unless told otherwise, and while bound to loopback it
answers only requests addressed to a loopback name (a guard against DNS
rebinding, which would let a web page read the alerts).

The detector drives it with four calls (or hands ``on_alerts`` and
``on_batch`` to :class:`mqttids.detect.Detector` as listeners)::

    board = Dashboard("127.0.0.1", 8765).start()
    board.publish_counts({"legitimate": 950, "dos": 50}, at=capture_seconds)
    board.publish_alert(alert.to_json())
    board.stop()

Counts are summed into one-second bins (of ``at``, capture time, when given;
of the wall clock otherwise); the last ``history_s`` seconds and the last
``max_alerts`` alerts are kept, so a page opened late sees the recent past.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import numbers
import queue
import socket
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mqttids.errors import UsageError
from mqttids.report import dashboard_assets as assets
from mqttids.report.errors import DashboardError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
KEEPALIVE_S = 15.0
QUEUE_EVENTS = 2000  # events a slow page may fall behind before it is made to reconnect
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def parse_bind(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` as (host, port); the host defaults to 127.0.0.1, ``[::1]:N`` for IPv6.

    >>> parse_bind("8080"), parse_bind("0.0.0.0:8080"), parse_bind("[::1]:8080")
    (('127.0.0.1', 8080), ('0.0.0.0', 8080), ('::1', 8080))
    """
    raw = (text or "").strip()
    host, sep, port_text = raw.rpartition(":")
    if not sep:
        host = DEFAULT_HOST
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or not host:
        host = ""
    try:
        port = int(port_text, 10)
    except ValueError:
        port = -1
    if not host or not 0 <= port <= 65535:
        raise UsageError(f"--dashboard {text!r} is not [HOST:]PORT; e.g. --dashboard 8765, "
                         "--dashboard 0.0.0.0:8765 or --dashboard [::1]:8765 (port 0 picks "
                         "a free one)")
    return host, port


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bin_second(at) -> int:
    if at is None:
        return int(time.time())
    if isinstance(at, dt.datetime):
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.timezone.utc)
        return int(at.timestamp())
    if isinstance(at, (int, float)) and not isinstance(at, bool) and at == at:
        return int(at)
    raise DashboardError(f"counts time {at!r} is not a datetime or seconds since the epoch")


def _counts(counts: Mapping) -> dict[str, int]:
    """``{class: packets}`` checked: whole numbers, 0 or more; zeros are left out."""
    if not isinstance(counts, Mapping):
        raise DashboardError(f"counts must be a mapping of class to packets, got "
                             f"{type(counts).__name__}")
    out = {}
    for label, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise DashboardError(f"count for {str(label)[:40]!r} is {n!r}; counts are whole "
                                 "numbers of packets, 0 or more")
        if n:
            out[str(label)] = int(n)
    return out


class _Subscriber:
    """One open /events stream: its queue, and whether it fell too far behind."""

    def __init__(self):
        self.events: queue.Queue = queue.Queue(maxsize=QUEUE_EVENTS)
        self.dropped = False


class _Board:
    """The dashboard's state, shared by the publishing thread and the page handlers."""

    def __init__(self, history_s: int, max_alerts: int):
        self.lock = threading.Lock()
        self.history_s = history_s
        self.alerts: deque = deque(maxlen=max_alerts)
        self.alert_totals: Counter = Counter()
        self.bins: OrderedDict[int, Counter] = OrderedDict()
        self.totals: Counter = Counter()
        self.subscribers: list[_Subscriber] = []

    def snapshot(self) -> dict:
        with self.lock:
            return self._snapshot()

    def _snapshot(self) -> dict:
        return {"alerts": list(self.alerts),
                "bins": [[t, dict(c)] for t, c in self.bins.items()],
                "totals": dict(self.totals), "alert_totals": dict(self.alert_totals)}

    def subscribe(self) -> tuple[_Subscriber, dict]:
        sub = _Subscriber()
        with self.lock:
            self.subscribers.append(sub)
            return sub, self._snapshot()

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self.lock:
            if sub in self.subscribers:
                self.subscribers.remove(sub)

    def _broadcast(self, event: tuple[str, dict] | None) -> None:
        """Queue ``event`` for every page (caller holds the lock); laggards are cut off."""
        for sub in list(self.subscribers):
            try:
                sub.events.put_nowait(event)
            except queue.Full:
                sub.dropped = True
                self.subscribers.remove(sub)

    def add_alert(self, alert: dict) -> None:
        with self.lock:
            self.alerts.append(alert)
            self.alert_totals[str(alert.get("label"))] += 1
            self._broadcast(("alert", alert))

    def add_counts(self, second: int, counts: dict[str, int]) -> None:
        with self.lock:
            current = self.bins.get(second)
            if current is None:
                current = self.bins[second] = Counter()
                if len(self.bins) > 1 and second < next(reversed(self.bins)):
                    self.bins = OrderedDict(sorted(self.bins.items()))
            current.update(counts)
            self.totals.update(counts)
            newest = next(reversed(self.bins))
            while self.bins and next(iter(self.bins)) < newest - self.history_s:
                self.bins.popitem(last=False)
            if second in self.bins:
                self._broadcast(("counts", {"t": second, "counts": dict(current),
                                            "totals": dict(self.totals)}))

    def close(self) -> None:
        with self.lock:
            self._broadcast(None)
            self.subscribers.clear()


class Dashboard:
    """The live page: ``start()``, then ``publish_alert``/``publish_counts``, then ``stop()``."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = 8765, *, history_s: int = 600,
                 max_alerts: int = 500, title: str = "mqttids live"):
        if history_s < 1 or max_alerts < 1:
            raise DashboardError(f"history_s ({history_s}) and max_alerts ({max_alerts}) "
                                 "must be 1 or more")
        self.host, self.port, self.title = host, port, title
        self._board = _Board(history_s, max_alerts)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        return f"http://{host}:{self.port}/"

    def start(self) -> Dashboard:
        """Bind and serve in a daemon thread; port 0 picks a free port (see ``.port``)."""
        if self._server is not None:
            return self
        handler = type("DashboardHandler", (_Handler,), {"board": self._board,
                                                         "title": self.title,
                                                         "loopback": is_loopback(self.host)})
        server_class = _V6Server if ":" in self.host else ThreadingHTTPServer
        try:
            self._server = server_class((self.host, self.port), handler)
        except OSError as exc:
            raise DashboardError(f"the dashboard cannot listen on {self.host}:{self.port}: "
                                 f"{exc.strerror or exc}; choose another with "
                                 "--dashboard [HOST:]PORT") from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="mqttids-dashboard", daemon=True)
        self._thread.start()
        log.info("dashboard at %s", self.url)
        return self

    def publish_alert(self, alert: Mapping) -> None:
        """Show one alert (detect's JSON object); values are sent as data, shown as text."""
        if not isinstance(alert, Mapping):
            raise DashboardError(f"an alert is a mapping (detect's JSON object), got "
                                 f"{type(alert).__name__}")
        self._board.add_alert(json.loads(json.dumps(dict(alert), default=str)))

    def publish_counts(self, counts: Mapping[str, int], at=None) -> None:
        """Add packets per class seen at ``at`` (datetime or epoch seconds; default now)."""
        values = _counts(counts)
        if values:
            self._board.add_counts(_bin_second(at), values)

    def on_alerts(self, alerts) -> None:
        """A ``Detector(on_alerts=[...])`` listener: each alert's ``to_json()`` is published."""
        for alert in alerts:
            self.publish_alert(alert.to_json() if hasattr(alert, "to_json") else alert)

    def on_batch(self, summary) -> None:
        """A ``Detector(on_batch=[...])`` listener: rows per predicted class, at the wall clock."""
        self.publish_counts(summary.predicted)

    def snapshot(self) -> dict:
        """What a newly opened page would get first: recent alerts, bins and totals."""
        return self._board.snapshot()

    def stop(self) -> None:
        """Close every open page's stream, stop serving and release the port."""
        if self._server is None:
            return
        self._board.close()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Dashboard:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """Routes: / (page), /app.js, /app.css, /events (SSE), /state (JSON)."""

    board: _Board
    title: str
    loopback: bool
    server_version = "mqttids-dashboard"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def _host_allowed(self) -> bool:
        if not self.loopback:
            return True
        host = (self.headers.get("Host") or "").strip()
        if host.startswith("["):
            host = host[1:host.find("]")] if "]" in host else host
        else:
            host = host.rsplit(":", 1)[0]
        return is_loopback(host)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._security_headers()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _security_headers(self) -> None:
        self.send_header("Content-Security-Policy", assets.CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if not self._host_allowed():
            self._send(HTTPStatus.MISDIRECTED_REQUEST, b"this dashboard answers to loopback "
                       b"names only\n", "text/plain; charset=utf-8")
            return
        path = self.path.split("?", 1)[0]
        if path == "/events":
            self._events()
            return
        routes = {
            "/": lambda: (assets.page(self.title), "text/html; charset=utf-8"),
            "/app.js": lambda: (assets.SCRIPT, "text/javascript; charset=utf-8"),
            "/app.css": lambda: (assets.STYLE, "text/css; charset=utf-8"),
            "/state": lambda: (json.dumps(self.board.snapshot()), "application/json"),
        }
        if path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        elif path in routes:
            text, ctype = routes[path]()
            self._send(HTTPStatus.OK, text.encode("utf-8"), ctype)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    do_HEAD = do_GET  # noqa: N815 - the name http.server calls

    def _events(self) -> None:
        """A server-sent event stream: the snapshot first, then every event as it comes."""
        sub, snapshot = self.board.subscribe()
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self._security_headers()
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self._write("retry: 2000\n\n" + _event("snapshot", snapshot))
            while not sub.dropped:
                try:
                    item = sub.events.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    self._write(": keep-alive\n\n")
                    continue
                if item is None:
                    return
                self._write(_event(*item))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            log.debug("a dashboard page went away")
        finally:
            self.board.unsubscribe(sub)

    def _write(self, text: str) -> None:
        self.wfile.write(text.encode("utf-8"))
        self.wfile.flush()


def _event(name: str, data: dict) -> str:
    """One SSE message; JSON never holds a raw newline, so one data line suffices."""
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"
