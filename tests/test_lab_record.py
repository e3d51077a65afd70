"""`lab record` against a real Mosquitto, and how close `lab synth` comes to it.

Marked ``broker``: these need mosquitto, tcpdump (or dumpcap) and the right to
capture on ``lo``; they skip with the reason when something is missing. The
whole recording takes about 6 x 2.5 s.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from test_lab_pcapreader import mqtt_messages

from mqttids.capture import iter_row_batches
from mqttids.lab import codec as mq
from mqttids.lab import fuzz, home
from mqttids.lab.errors import CaptureRightsError, CaptureToolError
from mqttids.lab.live import read_packet
from mqttids.lab.record import Broker, count_frames, record_scenario
from mqttids.lab.synth import write_scenario
from mqttids.schema import arrow_schema

pytestmark = pytest.mark.broker

SECONDS = 2.5
SEED = 11


@pytest.fixture(scope="module")
def recording(tmp_path_factory, broker_programs):
    out = tmp_path_factory.mktemp("record")
    try:
        summary = record_scenario(out, seconds=SECONDS, seed=SEED)
    except (CaptureRightsError, CaptureToolError) as exc:
        pytest.skip(str(exc))
    return out, summary


def _messages(path: Path, port: int) -> pa.Table:
    batches = list(iter_row_batches(path, ports=(port,), per_message=True))
    return pa.Table.from_batches(batches, schema=arrow_schema())


def _alive(marker: str) -> list[str]:
    """Command lines of running processes that mention ``marker``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().split(") ")[-1].startswith("Z")
        except OSError:
            continue
        if marker in cmd and not zombie:
            found.append(cmd)
    return found


def test_every_class_is_recorded_and_decoded(recording):
    out, summary = recording
    assert set(summary["classes"]) == set(home.CLASSES)
    for kind, result in summary["classes"].items():
        assert result["packets"] == count_frames(out / f"{kind}.pcap") > 10, kind
        assert result["rows"] > 0, kind
    assert (out / "summary.json").is_file() and (out / "broker.log").is_file()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _broker_port(log: Path) -> int:
    """The port our broker opened, from its log ("Opening ipv4 listen socket on port N.")."""
    for line in log.read_text().splitlines():
        if "listen socket on port" in line:
            return int(line.rsplit(" ", 1)[-1].rstrip("."))
    raise AssertionError(f"no listen line in {log}")


def test_recording_stops_everything_it_started(recording):
    out, summary = recording
    assert _alive(str(out)) == []  # no capture still writing into the folder
    assert _broker_port(out / "broker.log") == summary["port"]
    assert not _listening(summary["port"])  # the broker is gone


def test_recorded_bruteforce_is_refused_and_slowite_keeps_alive_65535(recording):
    out, summary = recording
    codes = set()
    for first, _, body in _broker_messages(out / "bruteforce.pcap", summary["port"]):
        if first == 0x20:
            codes.add(body[1])
    assert codes and codes <= {mq.RC_NOT_AUTHORISED_V311, mq.RC_NOT_AUTHORISED_V5}
    rows = _messages(out / "slowite.pcap", summary["port"])
    keepalives = {k for k, t in zip(rows.column("mqtt.kalive").to_pylist(),
                                    rows.column("mqtt.msgtype").to_pylist()) if t == 1}
    assert keepalives == {home.SLOWITE_KEEPALIVE}


def _broker_messages(pcap: Path, port: int) -> list[tuple[int, int, bytes]]:
    from test_lab_pcapreader import read_segments

    # The recorder's pcaps come from tcpdump on lo (Ethernet link type), like ours.
    data = collections.defaultdict(bytearray)
    for seg in read_segments(pcap):
        if seg.sport == port and seg.payload:
            data[seg.key] += seg.payload
    return [m for stream in data.values() for m in mqtt_messages(bytes(stream))]


# Realism: per class, the same seed in `lab synth` and `lab record` should give the
# same kind of traffic. The synthetic scenario gets as many packets per class as the
# recording (flood at least 2,000: on lo the capture sees 64 KiB super-segments,
# so the recording holds few, huge packets). Bounds:
#   message-type mix: total variation distance <= 0.15;
#   mqtt.len median and 90th percentile: within 8 bytes or 35 % of the recording's
#   (flood: within a factor of 2.5, its bursts draw random topics and payloads).
# tcp.len is not compared: segmentation on lo (GSO) differs from an Ethernet link.
TV_BOUND = 0.15


@pytest.fixture(scope="module")
def synthetic_match(recording, tmp_path_factory):
    _out, summary = recording
    counts = {k: r["packets"] for k, r in summary["classes"].items()}
    counts["flood"] = max(counts["flood"], 2000)
    total = sum(counts.values())
    syn = tmp_path_factory.mktemp("synth-match")
    write_scenario(syn, packets=total, seed=SEED, rows=False, workers=1,
                   mix={k: v / total for k, v in counts.items()})
    return syn


def _mix_of(table: pa.Table) -> dict[int, float]:
    counts = collections.Counter(table.column("mqtt.msgtype").to_pylist())
    total = sum(counts.values())
    return {t: n / total for t, n in counts.items()}


@pytest.mark.parametrize("kind", home.CLASSES)
def test_synthetic_traffic_resembles_the_recording(recording, synthetic_match, kind):
    out, summary = recording
    rec = _messages(out / f"{kind}.pcap", summary["port"])
    syn = _messages(synthetic_match / f"{kind}.pcap", 1883)
    assert rec.num_rows and syn.num_rows
    rec_mix, syn_mix = _mix_of(rec), _mix_of(syn)
    tv = 0.5 * sum(abs(rec_mix.get(t, 0) - syn_mix.get(t, 0)) for t in set(rec_mix) | set(syn_mix))
    assert tv <= TV_BOUND, (kind, rec_mix, syn_mix)
    lens = {name: np.percentile(np.array(t.column("mqtt.len").to_pylist(), dtype=float),
                                [50, 90]) for name, t in (("rec", rec), ("syn", syn))}
    for r, s in zip(lens["rec"], lens["syn"]):
        if kind == "flood":
            assert r / 2.5 <= s <= r * 2.5, (kind, lens)
        else:
            assert abs(s - r) <= max(8.0, 0.35 * r), (kind, lens)


# Mosquitto 2.0's reaction to each fuzz case, which the synthetic broker plays.

def _mosquitto_version(program: str) -> str:
    head = subprocess.run([program, "-h"], capture_output=True, text=True).stdout.split("\n")[0]
    return head.split("version")[-1].strip()


def test_fuzz_cases_get_the_reaction_the_synthetic_broker_plays(broker_programs):
    if not _mosquitto_version(broker_programs["mosquitto"]).startswith("2.0"):
        pytest.skip("the fuzz reactions were taken from Mosquitto 2.0")
    rng = random.Random(6)
    cases = fuzz.all_cases(rng, mq.V311) + fuzz.all_cases(rng, mq.V5)
    with tempfile.TemporaryDirectory() as tmp, \
            Broker(broker_programs["mosquitto"], Path(tmp), Path(tmp) / "log") as broker:
        for case in cases:
            got = _probe(broker.port, case)
            want = (case.answer, "reset" if case.resets else "closed" if case.closes
                    else "open")
            assert got == want, case.name


def _probe(port: int, case: fuzz.FuzzCase) -> tuple[bytes, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        if case.connect_first:
            sock.sendall(mq.connect(f"probe{random.getrandbits(24)}", version=case.version))
            assert read_packet(sock)[0] == mq.CONNACK
        sock.sendall(case.data)
        sock.settimeout(0.3)
        answer = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return answer, "closed"
                answer += chunk
        except ConnectionResetError:
            return answer, "reset"
        except TimeoutError:
            return answer, "open"


def test_ctrl_c_stops_the_broker_and_the_capture(tmp_path, broker_programs):
    if os.geteuid() != 0:
        pytest.skip("recording needs capture rights; this test runs as root only")
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "mqttids.cli", "--quiet", "lab", "record",
                             "-o", str(out), "--seconds", "30", "--class", "dos"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _alive(str(out / "dos.pcap")):
        time.sleep(0.2)
    assert _alive(str(out / "dos.pcap")), "the capture should have started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip() == "mqttids: interrupted"
    assert _alive(str(out)) == []
    assert not _listening(_broker_port(out / "broker.log"))
    assert count_frames(out / "dos.pcap") > 0  # what was captured is kept
