"""Parity with tshark on traffic recorded from a real Mosquitto and real clients."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time

import pytest

from tsharkref import differences, our_rows, tshark_rows

pytestmark = [pytest.mark.broker, pytest.mark.tshark]


def record(path, port, clients) -> None:
    """Capture loopback traffic on ``port`` while ``clients`` run."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.skip("tcpdump is not installed (apt-get install tcpdump)")
    cap = subprocess.Popen([tcpdump, "-i", "lo", "--immediate-mode", "-U", "-Z", "root",
                            "-w", str(path),
                            f"tcp port {port}"], stderr=subprocess.PIPE)
    line = cap.stderr.readline().decode()
    if "listening" not in line:
        cap.kill()
        pytest.skip(f"tcpdump cannot capture here: {line.strip()}")
    # "listening" can come before packets are really captured: probe with bare TCP
    # connections (no MQTT, so no rows) until one shows in the file.
    deadline = time.monotonic() + 10
    while path.stat().st_size <= 24:
        if time.monotonic() > deadline:
            cap.kill()
            pytest.fail("tcpdump captured nothing within 10 s")
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        time.sleep(0.1)
    try:
        clients()
        time.sleep(0.5)
    finally:
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=10)


def mosquitto_clients(host, port, programs):
    pub, sub = programs["mosquitto_pub"], programs["mosquitto_sub"]
    base = ["-h", host, "-p", str(port)]
    waiting = subprocess.Popen([sub, *base, "-t", "home/#", "-q", "2", "-C", "6", "-W", "10",
                                "-V", "mqttv311", "-i", "listener"], stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    for version in ("mqttv31", "mqttv311", "mqttv5"):
        for qos in ("0", "1", "2"):
            subprocess.run([pub, *base, "-V", version, "-q", qos, "-t", f"home/{version}",
                            "-m", f"{version} qos {qos}", "-i", f"pub-{version}-{qos}",
                            "--will-topic", "home/will", "--will-payload", "gone", "-r"],
                           check=True, timeout=10)
    subprocess.run([pub, *base, "-V", "mqttv5", "-t", "home/props", "-m", "v5",
                    "-D", "publish", "content-type", "text/plain",
                    "-D", "publish", "user-property", "k", "v"], check=True, timeout=10)
    waiting.wait(timeout=15)


def paho_v5_client(host, port):
    mqtt = pytest.importorskip("paho.mqtt.client")
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho5",
                         protocol=mqtt.MQTTv5)
    client.will_set("paho/will", b"bye", qos=1)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "paho/reply"
    props.UserProperty = ("sensor", "t1")
    client.subscribe([("paho/#", 1)])
    for qos in (0, 1, 2):
        info = client.publish("paho/data", f"v5 {qos}".encode(), qos=qos, properties=props)
        info.wait_for_publish(5)
    client.unsubscribe("paho/#")
    time.sleep(0.3)
    client.disconnect()
    client.loop_stop()


def test_mosquitto_clients_of_every_version_match_tshark(tmp_path, mosquitto_broker,
                                                          broker_programs, tshark):
    host, port = mosquitto_broker
    path = tmp_path / "clients.pcap"
    record(path, port, lambda: mosquitto_clients(host, port, broker_programs))
    theirs = tshark_rows(tshark, path, ports=(1883, port))
    types = {row["mqtt.msgtype"] for row in theirs.values()}
    assert {1, 2, 3, 4, 5, 6, 7, 8, 9, 14} <= types
    assert differences(our_rows(path, ports=(1883, port)), theirs) == []


def test_paho_mqtt5_session_matches_tshark(tmp_path, mosquitto_broker, tshark):
    host, port = mosquitto_broker
    path = tmp_path / "paho5.pcap"
    record(path, port, lambda: paho_v5_client(host, port))
    theirs = tshark_rows(tshark, path, ports=(1883, port))
    assert {1, 2, 3, 8, 9, 10, 11, 14} <= {row["mqtt.msgtype"] for row in theirs.values()}
    assert differences(our_rows(path, ports=(1883, port)), theirs) == []
