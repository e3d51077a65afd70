"""The detector's parts without a model bundle: alert windows, engines, readers, sinks.

A rule scorer stands in for a trained model here (SlowITe's keep-alive of
65535 is its tell); tests/test_detect_models.py scores with real bundles.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mqttids import schema
from mqttids.capture import NotACaptureError
from mqttids.detect import Alert, AlertTracker, Detector, JsonLinesSink, ScorerError
from mqttids.detect.alerts import TRACKED
from mqttids.detect.engines import c_available
from mqttids.detect.sinks import alerts_table
from mqttids.detect.sources import END, ChunkReader, bpf_filter, capture_command, parse_source
from mqttids.errors import InputNotFoundError, UsageError

import pcapbuild as pb

ENGINES = ["python", pytest.param("c", marks=pytest.mark.skipif(
    not c_available(), reason="the C decoder is not built"))]
SLOWITE = schema.LABELS.index("slowite")


class KeepAliveScorer:
    """Legitimate, except a CONNECT with keep-alive 65535 (slowite) or a malformed row."""

    features = ("mqtt.kalive", "ctx.malformed")
    labels = schema.LABELS

    def __init__(self):
        self.batches: list[int] = []

    def predict_proba(self, table: pa.Table) -> np.ndarray:
        self.batches.append(table.num_rows)
        kal = pc.fill_null(table.column("mqtt.kalive"), 0).to_numpy()
        bad = pc.fill_null(table.column("ctx.malformed"), 0).to_numpy()
        out = np.zeros((table.num_rows, len(self.labels)))
        out[:, 0] = 0.8
        out[kal == 65535, SLOWITE] = 0.9
        out[bad == 1, schema.LABELS.index("malformed")] = 0.85
        return out


def slowite(cport: int, t: float, client: str = "10.0.0.9") -> pb.Conversation:
    c = pb.Conversation(client=client, cport=cport, t=t).handshake()
    c.send(True, pb.connect(client=f"slow{cport}", keepalive=65535))
    return c.send(False, pb.connack())


def frames_of(*conversations) -> list[tuple[int, int, int, bytes]]:
    packets = sorted((p for c in conversations for p in c.packets), key=lambda p: p[0])
    return [(i + 1, round(ts * 1e9), 1, pb.link(1, ip)) for i, (ts, ip) in enumerate(packets)]


def pcap_of(*conversations) -> bytes:
    packets = sorted((p for c in conversations for p in c.packets), key=lambda p: p[0])
    return pb.pcap_bytes(packets, nano=True)


def detect(frames, engine="python", **kw) -> tuple[Detector, list[Alert]]:
    det = Detector(KeepAliveScorer(), engine=engine, **kw)
    return det, det.feed(frames) + det.flush()


# -- alert windows -----------------------------------------------------------------------

def cols(rows: list[dict]) -> dict[str, list]:
    base = {"flow": "f1", "ts": 0, "frame": 1, "src": "10.0.0.9", "dst": "10.0.0.1",
            "sport": 40000, "dport": 1883, "client_id": None, "ctx.flow_packets": 1,
            "ctx.flow_msgs": 1, "ctx.flow_connects": 0, "ctx.flow_bytes": 10,
            "ctx.client_connects": 0, "ctx.to_broker": 1, "ctx.malformed": 0}
    full = [{**base, **r} for r in rows]
    return {name: [r[name] for r in full] for name in TRACKED}


def test_one_alert_per_connection_label_and_window():
    tracker = AlertTracker(window_s=10)
    rows = [{"ts": s * 1_000_000, "frame": s + 1, "ctx.flow_packets": s + 1} for s in range(25)]
    alerts = tracker.update(cols(rows), [SLOWITE] * 25, [0.9] * 25)
    assert [a.ts_us for a in alerts] == [0, 10_000_000, 20_000_000]
    assert [a.evidence["rows"] for a in alerts] == [10, 10, 5]  # rows up to the alert
    assert tracker.update(cols(rows[24:]), [SLOWITE], [0.9]) == []


def test_legitimate_rows_raise_nothing():
    tracker = AlertTracker()
    assert tracker.update(cols([{"ts": i} for i in range(100)]), [0] * 100, [0.99] * 100) == []


def test_each_attack_label_of_a_connection_raises_its_own_alert():
    tracker = AlertTracker()
    bf = schema.LABELS.index("bruteforce")
    alerts = tracker.update(cols([{}, {}, {}]), [SLOWITE, bf, SLOWITE], [0.6, 0.7, 0.8])
    assert [(a.label, a.score) for a in alerts] == [("slowite", 0.7), ("bruteforce", 0.7)]


def test_evidence_counts_the_window_and_names_the_client():
    tracker = AlertTracker(window_s=60)
    tracker.update(cols([{"ts": 0, "ctx.flow_packets": 40, "ctx.flow_msgs": 20,
                          "ctx.flow_bytes": 900, "ctx.flow_connects": 1}]), [0], [0.9])
    alert, = tracker.update(cols([
        {"ts": 61_000_000, "frame": 7, "ctx.flow_packets": 45, "ctx.flow_msgs": 22,
         "ctx.flow_connects": 2, "ctx.flow_bytes": 1000, "client_id": "dev1",
         "ctx.client_connects": 9, "ctx.to_broker": 0, "src": "10.0.0.1", "dst": "10.0.0.9",
         "sport": 1883, "dport": 40000, "ctx.malformed": 1}]), [SLOWITE], [0.75])
    assert alert.evidence == {
        "rows": 1, "packets": 5, "messages": 2, "connects": 1, "bytes": 100,
        "client_connects": 9, "malformed": 1, "mean_score": 0.75, "max_score": 0.75,
        "first_frame": 7, "window_start": "1970-01-01T00:01:00.000000+00:00",
        "window_seconds": 60}
    assert (alert.src, alert.dst, alert.sport, alert.dport) == ("10.0.0.9", "10.0.0.1",
                                                                40000, 1883)
    assert alert.client_id == "dev1"


def test_alert_json_has_the_design_keys_in_order():
    alert = Alert(1_700_000_000_123_456, "ab12", "10.0.0.9", "10.0.0.1", 40000, 1883, "c",
                  "flood", 0.912345678, {"rows": 3})
    obj = alert.to_json()
    assert list(obj) == ["time", "flow", "src", "dst", "sport", "dport", "client_id", "label",
                         "score", "evidence"]
    assert obj["time"] == "2023-11-14T22:13:20.123456+00:00"
    assert obj["score"] == 0.912346
    json.dumps(obj)


def test_a_window_that_ends_inside_a_batch_still_alerts():
    tracker = AlertTracker(window_s=1)
    alerts = tracker.update(cols([{"ts": 0}, {"ts": 1_500_000}]), [SLOWITE, 0], [0.9, 0.9])
    assert len(alerts) == 1 and alerts[0].ts_us == 0


def test_tracker_keeps_at_most_max_flows():
    tracker = AlertTracker(max_flows=100)
    rows = [{"flow": f"f{i}", "ts": i} for i in range(1000)]
    tracker.update(cols(rows), [0] * 1000, [0.9] * 1000)
    assert len(tracker) <= 100
    assert "f999" in tracker.flows and "f0" not in tracker.flows


def test_tracker_forgets_idle_connections():
    tracker = AlertTracker()
    tracker.update(cols([{"flow": "old", "ts": 0}, {"flow": "new", "ts": 500}]), [0, 0], [1, 1])
    assert tracker.evict_idle(now_us=1000, idle_us=600) == 1
    assert list(tracker.flows) == ["new"]


# -- the detector on frames ------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_slowite_connections_raise_one_alert_each(engine):
    convs = [slowite(41000 + i, t=1.0 + i * 0.01) for i in range(5)]
    convs.append(pb.session(cport=42000, t=1.5))
    det, alerts = detect(frames_of(*convs), engine)
    assert sorted(a.sport for a in alerts) == [41000 + i for i in range(5)]
    assert {a.label for a in alerts} == {"slowite"}
    assert {a.client_id for a in alerts} == {f"slow{41000 + i}" for i in range(5)}
    assert det.stats.rows == 5 * 2 + 16 and det.stats.alerts == 5


@pytest.mark.skipif(not c_available(), reason="the C decoder is not built")
def test_both_engines_raise_the_same_alerts():
    convs = [slowite(41000 + i, t=1.0 + i * 0.3) for i in range(30)]
    frames = frames_of(*convs, pb.session(cport=42000, t=2.0))
    assert detect(frames, "python", window_s=5)[1] == detect(frames, "c", window_s=5)[1]


@pytest.mark.parametrize("engine", ENGINES)
def test_rows_are_scored_in_batches_of_at_most_batch_rows(engine):
    convs = [slowite(41000 + i, t=1.0 + i * 0.01) for i in range(40)]
    det, _ = detect(frames_of(*convs), engine, batch_rows=16)
    assert max(det.scorer.batches) == 16 and sum(det.scorer.batches) == 80


def test_a_wrongly_shaped_score_is_a_clear_error():
    class Broken(KeepAliveScorer):
        def predict_proba(self, table):
            return np.zeros((table.num_rows, 2))

    det = Detector(Broken(), engine="python")
    with pytest.raises(ScorerError, match="shape"):
        det.feed(frames_of(slowite(41000, 1.0)))
        det.flush()


# -- bounded memory --------------------------------------------------------------------------

def storm(n: int) -> list:
    return frames_of(*(slowite(20000 + i, t=1.0 + i * 0.001, client=f"10.1.{i // 200}.{i % 200}")
                       for i in range(n)))


def test_python_engine_sheds_connections_above_the_cap():
    det = Detector(KeepAliveScorer(), engine="python", max_connections=50)
    frames = storm(600)
    for i in range(0, len(frames), 100):
        det.feed(frames[i:i + 100])
        assert det.connections <= 50 + 100
    det.flush()
    dec = det.engine.decoder
    assert len(dec.generations) <= 150 and len(dec.client_connects) <= 150
    assert len(det.tracker) <= 50
    assert det.stats.alerts == 600


def test_python_engine_forgets_idle_connections():
    det = Detector(KeepAliveScorer(), engine="python", idle_s=10)
    det.feed(frames_of(slowite(41000, t=1.0)))
    assert det.connections == 1
    det.feed(frames_of(slowite(41001, t=100.0)))
    assert det.connections == 1 and det.engine.evicted == 1


@pytest.mark.skipif(not c_available(), reason="the C decoder is not built")
def test_c_engine_starts_afresh_above_the_cap_and_loses_no_row():
    det = Detector(KeepAliveScorer(), engine="c", max_connections=50)
    frames = storm(600)
    for i in range(0, len(frames), 100):
        det.feed(frames[i:i + 100])
        assert det.connections <= 50 + 100
    det.flush()
    assert det.engine.restarts >= 5
    assert det.stats.rows == 1200 and det.stats.alerts == 600
    assert det.stats.packets == len(frames)


# -- streams: readers and micro-batch timing --------------------------------------------------

class Trickle(io.RawIOBase):
    """A stream that returns at most ``step`` bytes per read, like a pipe under load."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step, self.pos = data, step, 0

    def readable(self):
        return True

    def read(self, n=-1):
        n = self.step if n < 0 else min(n, self.step)
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def chunks(reader) -> list:
    reader.start()
    out = []
    while (item := reader.queue.get(timeout=5)) is not END:
        if isinstance(item, BaseException):
            raise item
        out.append(item)
    return out


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_chunk_reader_cuts_at_record_boundaries(kind):
    convs = [slowite(41000 + i, t=1.0 + i) for i in range(20)]
    packets = sorted((p for c in convs for p in c.packets), key=lambda p: p[0])
    data = (pb.pcap_bytes(packets) if kind == "pcap"
            else pb.pcapng_bytes([([(1, None)], [(0, ts, ip) for ts, ip in packets])]))
    got = chunks(ChunkReader(Trickle(data, 333), "t"))
    assert b"".join(d for _, d, _ in got) == data
    assert all(aligned for _, _, aligned in got)
    header = got[-1][0]
    assert header == (data[:24] if kind == "pcap" else data[:len(header)])
    assert header[:4] == data[:4]


def test_chunk_reader_refuses_what_is_not_a_capture():
    with pytest.raises(NotACaptureError, match="not a pcap"):
        chunks(ChunkReader(io.BytesIO(b"hello, this is text\n" * 4), "t"))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_quiet_stream_still_alerts_within_the_wait(engine):
    """The first attack packets are scored after 50 ms while the stream stays open."""
    read_fd, write_fd = os.pipe()
    seen: list[float] = []
    det = Detector(KeepAliveScorer(), engine=engine,
                   on_alerts=[lambda alerts: seen.append(time.monotonic())])
    runner = threading.Thread(target=det.run, args=(open(read_fd, "rb", buffering=0), "pipe"))
    runner.start()
    try:
        os.write(write_fd, pcap_of(slowite(41000, t=1.0)))
        sent = time.monotonic()
        deadline = sent + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen, "no alert while the stream stayed open"
        assert seen[0] - sent < 1.0
    finally:
        os.close(write_fd)
        runner.join(timeout=10)
    assert not runner.is_alive() and det.stats.alerts == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_run_on_a_stream_equals_feeding_frames(engine):
    convs = [slowite(41000 + i, t=1.0 + i * 0.2) for i in range(12)]
    convs.append(pb.session(cport=42000, t=1.1))
    det = Detector(KeepAliveScorer(), engine=engine, window_s=1)
    got: list[Alert] = []
    det.on_alerts.append(got.extend)
    stats = det.run(Trickle(pcap_of(*convs), 500), "trickle")
    assert got == detect(frames_of(*convs), "python", window_s=1)[1]
    assert stats.packets == sum(len(c.packets) for c in convs)


@pytest.mark.parametrize("engine", ENGINES)
def test_stop_ends_a_stream_that_never_ends(engine):
    read_fd, write_fd = os.pipe()
    stop = threading.Event()
    det = Detector(KeepAliveScorer(), engine=engine)
    os.write(write_fd, pcap_of(slowite(41000, t=1.0)))
    stopped: list[bool] = []
    runner = threading.Thread(target=lambda: det.run(
        open(read_fd, "rb", buffering=0), "pipe", stop=stop, grace_s=0.2,
        on_stop=lambda: stopped.append(True)))
    runner.start()
    time.sleep(0.3)
    stop.set()
    runner.join(timeout=5)
    os.close(write_fd)
    assert not runner.is_alive() and stopped == [True] and det.stats.alerts == 1


# -- sources and sinks ------------------------------------------------------------------------

def test_sources_are_checked_before_any_work(tmp_path):
    assert parse_source("-").kind == "stdin"
    assert parse_source("iface:lo").value == "lo"
    with pytest.raises(UsageError, match="names no interface"):
        parse_source("iface:")
    with pytest.raises(InputNotFoundError, match="does not exist"):
        parse_source(str(tmp_path / "missing.pcap"))
    with pytest.raises(Exception, match="is a folder"):
        parse_source(str(tmp_path))


def test_live_capture_hands_over_every_packet_at_once():
    assert bpf_filter((1883, 8883)) == "tcp port 1883 or tcp port 8883"
    cmd = capture_command("eth0", (1883,))
    if cmd[0].endswith("tcpdump"):
        assert {"--immediate-mode", "-U"} <= set(cmd) and cmd[-1] == "tcp port 1883"
    assert cmd[cmd.index("-w") + 1] == "-" and "eth0" in cmd


def test_json_lines_sink_writes_one_line_per_alert(tmp_path):
    alert = Alert(0, "f", "a", "b", 1, 2, None, "dos", 0.5, {"rows": 1})
    sink = JsonLinesSink.to_file(tmp_path / "alerts.jsonl")
    sink([alert, alert])
    sink.close()
    sink = JsonLinesSink.to_file(tmp_path / "alerts.jsonl")
    sink([alert])
    sink.close()
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [alert.to_json()] * 3


def test_alert_rows_fit_the_warehouse_alerts_table():
    from mqttids.warehouse.base import prepare_result_table

    alert = Alert(1_700_000_000_000_000, "f", "a", "b", 1, 2, None, "dos", 0.5, {"rows": 1})
    table = prepare_result_table("alerts", alerts_table([alert], "rf"), "append")
    assert table.column("evidence").to_pylist() == ['{"rows": 1}']
    assert table.column("model").to_pylist() == ["rf"]


def test_rows_below_min_score_raise_nothing():
    class Unsure(KeepAliveScorer):
        def predict_proba(self, table):
            out = super().predict_proba(table)
            out[out[:, SLOWITE] > 0, SLOWITE] = 0.45  # still the most likely label
            out[out[:, SLOWITE] > 0, 0] = 0.3
            return out

    frames = frames_of(slowite(41000, 1.0))
    det = Detector(Unsure(), engine="python")
    assert det.feed(frames) + det.flush() == []
    det = Detector(Unsure(), engine="python", min_score=0.0)
    alerts = det.feed(frames) + det.flush()
    assert [(a.label, a.score) for a in alerts] == [("slowite", 0.45)]


# -- a real model, for the CLI and live tests -------------------------------------------------

def train_rf(spark, rows: pa.Table, models_dir, params: dict | None = None) -> str:
    """A flow-feature random forest trained through `mqttids train`'s library call.

    ``rows`` are labelled capture rows (Wireshark names); returns the bundle folder.
    The grid is one small configuration so that a test trains in seconds.
    """
    from mqttids.models.workflow import ArrowData, TrainOptions, train_models

    rows = rows.set_column(rows.schema.get_field_index("split"), "split",
                           pa.array(["train"] * rows.num_rows, pa.string()))
    rows = rows.rename_columns([schema.storage_name(n) for n in rows.column_names])
    grid = params or {"numTrees": 30, "maxDepth": 12, "maxBins": 32}
    options = TrainOptions(models=("rf",), folds=2, feature_set="flow", seed=1,
                           models_dir=models_dir, grids={"rf": (grid,)})
    summary, = train_models(spark, ArrowData(rows), options)
    return summary["bundle"]
