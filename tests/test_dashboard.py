"""The live dashboard's server: binding, routes, the event stream, the Host guard, stopping."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from mqttids.errors import UsageError
from mqttids.report.dashboard import Dashboard, is_loopback, parse_bind
from mqttids.report.dashboard_assets import CSP
from mqttids.report.errors import DashboardError

EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture()
def board():
    with Dashboard("127.0.0.1", 0, history_s=60, max_alerts=3, title=EVIL) as b:
        yield b


def get(board: Dashboard, path: str, host: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", board.port, timeout=5)
    headers = {"Host": host} if host else {}
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


def read_events(resp, count: int) -> list[tuple[str, dict]]:
    """The next ``count`` named events of an open SSE response."""
    events, name = [], None
    while len(events) < count:
        line = resp.fp.readline().decode("utf-8")
        if not line:
            raise AssertionError(f"stream ended after {events}")
        if line.startswith("event: "):
            name = line[7:].strip()
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


@pytest.mark.parametrize("text, expected", [
    ("8765", ("127.0.0.1", 8765)), (" 0 ", ("127.0.0.1", 0)),
    ("0.0.0.0:80", ("0.0.0.0", 80)), ("localhost:8765", ("localhost", 8765)),
    ("[::1]:8765", ("::1", 8765)),
])
def test_parse_bind_accepts_port_or_host_and_port(text, expected):
    assert parse_bind(text) == expected


@pytest.mark.parametrize("text", ["", "http", ":8765", "host:", "1:2:3", "70000", "-1",
                                  "[::1]", "a:b"])
def test_parse_bind_refuses_anything_else_with_an_example(text):
    with pytest.raises(UsageError, match=r"\[HOST:\]PORT; e.g. --dashboard 8765"):
        parse_bind(text)


def test_loopback_names():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")


def test_the_page_script_and_style_are_served_with_a_strict_policy(board):
    resp, body = get(board, "/")
    assert resp.status == 200 and resp.getheader("Content-Security-Policy") == CSP
    assert resp.getheader("X-Content-Type-Options") == "nosniff"
    page = body.decode()
    assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script src=\"app.js\"" in page and "onerror" not in page.replace(
        "&lt;img src=x onerror=alert(1)&gt;", "")
    resp, body = get(board, "/app.js")
    assert resp.getheader("Content-Type").startswith("text/javascript")
    assert b"innerHTML" not in body and b"textContent" in body
    assert get(board, "/app.css")[0].status == 200
    assert get(board, "/favicon.ico")[0].status == 204
    assert get(board, "/nothing")[0].status == 404


def test_requests_for_other_host_names_are_refused_on_loopback(board):
    assert get(board, "/state", host="evil.example:80")[0].status == 421
    assert get(board, "/state", host=f"localhost:{board.port}")[0].status == 200
    assert get(board, "/state", host=f"[::1]:{board.port}")[0].status == 200


def test_state_keeps_recent_alerts_and_one_second_bins(board):
    for k in range(5):
        board.publish_alert({"time": f"2026-12-03T12:00:0{k}Z", "label": "dos",
                             "client_id": EVIL, "score": 0.5})
    board.publish_counts({"legitimate": 10, "dos": 2}, at=1000.2)
    board.publish_counts({"legitimate": 5, "flood": 0}, at=1000.9)
    board.publish_counts({"dos": 1}, at=1100)  # 100 s later: the first bin falls out of 60 s
    state = json.loads(get(board, "/state")[1])
    assert [a["time"][-3:] for a in state["alerts"]] == ["02Z", "03Z", "04Z"]
    assert state["alerts"][0]["client_id"] == EVIL
    assert state["alert_totals"] == {"dos": 5}
    assert state["bins"] == [[1100, {"dos": 1}]]
    assert state["totals"] == {"legitimate": 15, "dos": 3}


def test_events_start_with_a_snapshot_then_stream_as_published(board):
    board.publish_counts({"legitimate": 7}, at=50)
    conn = http.client.HTTPConnection("127.0.0.1", board.port, timeout=5)
    conn.request("GET", "/events")
    resp = conn.getresponse()
    assert resp.getheader("Content-Type").startswith("text/event-stream")
    (name, snap), = read_events(resp, 1)
    assert name == "snapshot" and snap["bins"] == [[50, {"legitimate": 7}]]
    board.publish_alert({"time": "2026-12-03T12:00:00Z", "label": "flood",
                         "client_id": "a\nb</script>"})
    board.publish_counts({"flood": 3, "legitimate": 1}, at=50)
    events = read_events(resp, 2)
    assert events[0] == ("alert", {"time": "2026-12-03T12:00:00Z", "label": "flood",
                                   "client_id": "a\nb</script>"})
    assert events[1] == ("counts", {"t": 50, "counts": {"legitimate": 8, "flood": 3},
                                    "totals": {"legitimate": 8, "flood": 3}})
    board.stop()  # ends the open stream: read() returns instead of timing out
    assert resp.fp.read().strip() == b""
    conn.close()


def test_stop_releases_the_port_and_can_be_called_twice():
    b = Dashboard("127.0.0.1", 0).start()
    port = b.port
    b.stop()
    b.stop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_a_taken_port_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(DashboardError, match=f"cannot listen on 127.0.0.1:{port}"):
            Dashboard("127.0.0.1", port).start()


@pytest.mark.parametrize("counts", [{"dos": -1}, {"dos": 1.5}, {"dos": True}, {"dos": "3"},
                                    [("dos", 1)]])
def test_counts_must_be_whole_numbers(board, counts):
    with pytest.raises(DashboardError):
        board.publish_counts(counts)


def test_alerts_must_be_mappings_and_odd_values_become_text(board):
    with pytest.raises(DashboardError, match="mapping"):
        board.publish_alert(["dos"])
    board.publish_alert({"time": time.time(), "label": "dos", "evidence": {"set": {1}}})
    assert board.snapshot()["alerts"][-1]["evidence"] == {"set": "{1}"}


def test_detector_listeners_publish_alerts_and_batch_counts(board):
    from mqttids.detect import Alert, BatchSummary

    a = Alert(1_764_763_200_000_000, "f1", "10.0.0.9", "10.0.0.1", 4000, 1883, EVIL, "dos",
              0.9, {"rows": 3})
    board.on_alerts([a])
    board.on_batch(BatchSummary(10, {"legitimate": 9, "dos": 1}, [a], 10, 1, 0.001))
    snap = board.snapshot()
    assert snap["alerts"] == [a.to_json()]
    assert snap["totals"] == {"legitimate": 9, "dos": 1}


def test_detect_takes_a_dashboard_option():
    from mqttids.cli import build_parser

    args = build_parser().parse_args(["detect", "x.pcap", "--model", "rf",
                                      "--dashboard", "0.0.0.0:8765"])
    assert parse_bind(args.dashboard) == ("0.0.0.0", 8765)


def test_a_detector_run_feeds_the_dashboard_and_the_report(tmp_path):
    """A real Detector on a lab flood capture, scored by a stand-in model, with the
    dashboard as listener and detect's JSON-lines sink beside it."""
    import numpy as np

    from mqttids import schema
    from mqttids.detect import Detector, JsonLinesSink
    from mqttids.lab.synth import write_class_pcap
    from mqttids.report.inputs import gather

    class LongIsFlood:  # a scorer: rows with more than 100 bytes of TCP payload are flood
        features = ("tcp.len",)
        labels = schema.LABELS

        def predict_proba(self, table):
            lens = np.nan_to_num(table.column("tcp.len").to_numpy(zero_copy_only=False))
            out = np.zeros((table.num_rows, len(self.labels)))
            out[np.arange(table.num_rows), np.where(lens > 100, 2, 0)] = 1.0
            return out

    capture = tmp_path / "flood.pcap"
    write_class_pcap("flood", capture, 1000, seed=1)
    sink = JsonLinesSink.to_file(tmp_path / "alerts.jsonl")
    with Dashboard("127.0.0.1", 0) as board:
        det = Detector(LongIsFlood(), on_alerts=[sink, board.on_alerts],
                       on_batch=[board.on_batch])
        with capture.open("rb") as fh:
            stats = det.run(fh, capture.name)
        sink.close()
        snap = json.loads(get(board, "/state")[1])
    assert stats.alerts >= 1
    assert sum(snap["totals"].values()) == stats.rows and snap["totals"].get("flood", 0) > 0
    assert snap["alert_totals"] == {"flood": stats.alerts}
    assert snap["alerts"][0]["client_id"].startswith("flooder")
    summary = gather(None, alert_files=(tmp_path / "alerts.jsonl",)).alerts
    assert (summary.total, summary.skipped, dict(summary.by_label)) == (
        stats.alerts, 0, {"flood": stats.alerts})
