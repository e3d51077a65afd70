"""`mqttids detect` as a user runs it: files, stdin, SIGINT, JSON output, errors, PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_detect import pcap_of, slowite, train_rf

from mqttids import schema
from mqttids.cli import main

ALERT_KEYS = ["time", "flow", "src", "dst", "sport", "dport", "client_id", "label", "score",
              "evidence"]
MIX = "legitimate=0.4,dos=0.15,flood=0.1,malformed=0.1,slowite=0.1,bruteforce=0.15"


def mqttids(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mqttids", *args], capture_output=True,
                          text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """A small synthetic scenario of the lab: one pcap and one Parquet file per class."""
    from mqttids.lab.synth import write_scenario

    out = tmp_path_factory.mktemp("synth")
    write_scenario(out, packets=20_000, seed=5, mix=MIX, workers=1)
    return out


@pytest.fixture(scope="module")
def model(spark, synth, tmp_path_factory) -> str:
    """An RF bundle trained on the synthetic scenario."""
    rows = pa.concat_tables([pq.read_table(synth / f"{k}.parquet") for k in schema.LABELS])
    return train_rf(spark, rows, tmp_path_factory.mktemp("models"))


# -- option checks (no model needed) -----------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--window", "0"], "--window 0 must be a positive number of seconds"),
    (["--batch", "0"], "--batch 0 must be at least 1 row"),
    (["--min-score", "1.5"], "--min-score 1.5 must be a probability from 0 to 1"),
    (["--idle", "-1"], "--idle -1 must be a positive number of seconds"),
    (["--max-connections", "0"], "--max-connections 0 must be at least 1"),
    (["--port", "70000"], "--port 70000 is not a TCP port"),
])
def test_bad_options_are_one_line_errors(args, message, tmp_path, capsys):
    capture = tmp_path / "c.pcap"
    capture.write_bytes(pcap_of(slowite(41000, 1.0)))
    assert main(["detect", str(capture), "--model", "rf", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("source, message", [
    ("missing.pcap", "capture 'missing.pcap' does not exist"),
    ("iface:", "names no interface"),
])
def test_bad_sources_are_refused_before_the_model_loads(source, message, capsys):
    assert main(["detect", source, "--model", "no-such-model"]) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_model_names_the_bundles_there_are(tmp_path, capsys):
    capture = tmp_path / "c.pcap"
    capture.write_bytes(pcap_of(slowite(41000, 1.0)))
    code = main(["detect", str(capture), "--model", "rf", "--models-dir", str(tmp_path)])
    assert code == 2
    assert "no model bundle 'rf'" in capsys.readouterr().err


# -- with a trained model --------------------------------------------------------------------


@pytest.mark.spark
@pytest.mark.slow
def test_a_capture_file_gives_alert_lines_and_a_json_summary(model, synth, tmp_path):
    alerts = tmp_path / "alerts.jsonl"
    res = mqttids("detect", str(synth / "slowite.pcap"), "--model", model, "--alerts",
                  str(alerts), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert list(summary) == ["packets", "alerts", "seconds"]
    lines = [json.loads(x) for x in alerts.read_text().splitlines()]
    assert summary["alerts"] == len(lines) > 0
    assert summary["packets"] == sum(1 for _ in _frames(synth / "slowite.pcap"))
    assert all(list(a) == ALERT_KEYS for a in lines)
    assert {a["label"] for a in lines} == {"slowite"}
    assert len({(a["flow"], a["label"]) for a in lines}) == len(lines)
    assert all(a["dport"] == 1883 and a["evidence"]["rows"] >= 1 for a in lines)


@pytest.mark.spark
@pytest.mark.slow
def test_legitimate_traffic_raises_nothing_and_alerts_go_to_stdout(model, synth):
    res = mqttids("detect", str(synth / "legitimate.pcap"), "--model", model)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    assert "0 alerts" in res.stderr


@pytest.mark.spark
@pytest.mark.slow
def test_stdin_gives_the_alerts_the_file_gives(model, synth):
    path = synth / "bruteforce.pcap"
    from_file = mqttids("detect", str(path), "--model", model, "--quiet")
    from_stdin = mqttids("detect", "-", "--model", model, "--quiet", stdin=open(path, "rb"))
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout == from_file.stdout != ""


@pytest.mark.spark
@pytest.mark.slow
def test_sigint_stops_a_stream_cleanly_and_flushes_every_alert(model, tmp_path):
    capture = tmp_path / "storm.pcap"
    capture.write_bytes(pcap_of(*(slowite(41000 + i, 1.0 + i * 0.01) for i in range(20))))
    whole = json.loads(mqttids("detect", str(capture), "--model", model, "--json").stdout)
    alerts = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "mqttids", "detect", "-", "--model", model,
                             "--alerts", str(alerts), "--json"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(capture.read_bytes())
        proc.stdin.flush()  # the stream stays open: only the signal can end it
        deadline = time.monotonic() + 60
        while (not alerts.exists() or not alerts.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out)
    lines = alerts.read_text().splitlines()
    assert summary["alerts"] == len(lines) == whole["alerts"] > 0
    assert summary["packets"] == whole["packets"] == 20 * 5


@pytest.mark.spark
@pytest.mark.slow
def test_a_capture_program_that_fails_is_a_clear_error(model):
    res = mqttids("detect", "iface:no-such-if0", "--model", model)
    assert res.returncode == 2
    assert "no-such-if0" in res.stderr and res.stderr.count("\n") == 1


@pytest.mark.spark
@pytest.mark.postgres
@pytest.mark.slow
def test_alerts_become_rows_of_mqtt_alerts_in_postgresql(model, synth, pg_dsn, pg_warehouse):
    env = dict(os.environ, MQTTIDS_PG_SCHEMA=pg_warehouse)
    res = mqttids("detect", str(synth / "slowite.pcap"), "--model", model, "--json",
                  "--warehouse", pg_dsn, env=env)
    assert res.returncode == 0, res.stderr
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(f'SELECT label, model, evidence->>\'rows\', dport FROM '
                            f'"{pg_warehouse}".alerts').fetchall()
    assert len(rows) == json.loads(res.stdout)["alerts"] > 0
    assert {r[0] for r in rows} == {"slowite"} and {r[1] for r in rows} == {"rf-flow"}
    assert all(int(r[2]) >= 1 and r[3] == 1883 for r in rows)


def _frames(path: Path):
    from mqttids.capture.pcap import read_frames

    with open(path, "rb") as f:
        yield from read_frames(f, str(path))
