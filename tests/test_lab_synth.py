"""`lab synth`: exact counts, determinism, genuine TCP, and each class's MQTT mechanics."""

from __future__ import annotations

import collections
import hashlib
import subprocess

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_lab_pcapreader import mqtt_messages, read_segments, streams

from mqttids.capture import iter_row_batches
from mqttids.lab import home
from mqttids.lab.errors import MixError, OutputDirError
from mqttids.lab.synth import parse_mix, split_packets, write_class_pcap, write_scenario
from mqttids.lab.wire import ACK, FIN, MSS, RST, SYN
from mqttids.schema import arrow_schema

SIZES = {"legitimate": 14_000, "dos": 4_000, "flood": 600, "malformed": 2_500,
         "slowite": 2_000, "bruteforce": 2_000}
TOTAL = sum(SIZES.values())


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    mix = {k: v / TOTAL for k, v in SIZES.items()}
    summary = write_scenario(out, packets=TOTAL, seed=7, mix=mix, workers=1)
    return out, summary


def _rows(path, per_message=True) -> pa.Table:
    return pa.Table.from_batches(list(iter_row_batches(path, per_message=per_message)),
                                 schema=arrow_schema())


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- options ----------------------------------------------------------------------

def test_default_mix_sums_to_one_and_names_every_class():
    assert set(home.DEFAULT_MIX) == set(home.CLASSES)
    assert sum(home.DEFAULT_MIX.values()) == pytest.approx(1.0)
    assert parse_mix(None) == home.DEFAULT_MIX


def test_mix_gives_unnamed_classes_zero_and_tolerates_spaces():
    mix = parse_mix(" legitimate = 0.75 , dos=0.25 ")
    assert mix["legitimate"] == 0.75 and mix["dos"] == 0.25
    assert mix["flood"] == mix["slowite"] == 0.0


@pytest.mark.parametrize("text, message", [
    ("legit=1", "unknown class 'legit'"),
    ("legitimate=0.5,dos=0.6", "add up to 1.1, not 1"),
    ("legitimate=0.5", "add up to 0.5, not 1"),
    ("legitimate=half,dos=0.5", "'half' of legitimate is not a number"),
    ("legitimate=1.5,dos=-0.5", "outside 0..1"),
    ("legitimate=0.5,legitimate=0.5", "names class 'legitimate' twice"),
    ("legitimate", "has no '='"),
])
def test_bad_mix_is_one_clear_error(text, message):
    with pytest.raises(MixError, match=message):
        parse_mix(text)


def test_split_gives_exactly_the_total_by_largest_remainder():
    mix = dict.fromkeys(home.CLASSES, 0.0) | {"dos": 1 / 3, "flood": 1 / 3, "slowite": 1 / 3}
    counts = split_packets(7, mix)
    assert sum(counts.values()) == 7
    assert sorted(counts[k] for k in ("dos", "flood", "slowite")) == [2, 2, 3]
    assert counts["legitimate"] == counts["malformed"] == counts["bruteforce"] == 0


@pytest.mark.parametrize("packets", [0, -5, 2.5, True])
def test_bad_packet_counts_are_refused(tmp_path, packets):
    with pytest.raises(Exception, match="--packets"):
        write_scenario(tmp_path, packets=packets)


def test_an_output_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(OutputDirError, match="not a folder"):
        write_scenario(target, packets=100)


# -- counts, files, determinism --------------------------------------------------

def test_every_class_gets_its_exact_packet_count(scenario):
    out, summary = scenario
    assert summary["packets"] == TOTAL
    for kind, size in SIZES.items():
        assert summary["classes"][kind]["packets"] == size
        assert len(read_segments(out / f"{kind}.pcap")) == size
    assert (out / "summary.json").is_file()


def test_same_seed_same_bytes_other_seed_other_bytes(scenario, tmp_path):
    out, _ = scenario
    again = write_scenario(tmp_path / "again", packets=TOTAL, seed=7,
                           mix={k: v / TOTAL for k, v in SIZES.items()}, rows=False)
    for kind in SIZES:
        assert _sha(out / f"{kind}.pcap") == _sha(tmp_path / "again" / f"{kind}.pcap"), kind
    assert again["packets"] == TOTAL
    write_class_pcap("legitimate", tmp_path / "other.pcap", SIZES["legitimate"], seed=8)
    assert _sha(tmp_path / "other.pcap") != _sha(out / "legitimate.pcap")


def test_a_class_does_not_change_when_the_other_classes_do(tmp_path):
    write_scenario(tmp_path / "a", packets=2000, seed=3, mix="legitimate=0.5,dos=0.5",
                   rows=False)
    write_scenario(tmp_path / "b", packets=2000, seed=3, mix="legitimate=0.5,bruteforce=0.5",
                   rows=False)
    assert _sha(tmp_path / "a" / "legitimate.pcap") == _sha(tmp_path / "b" / "legitimate.pcap")
    assert not (tmp_path / "b" / "dos.pcap").exists()


def test_classes_with_share_zero_lose_their_old_files(tmp_path):
    write_scenario(tmp_path, packets=1000, seed=1, mix="legitimate=0.5,dos=0.5", rows=False)
    write_scenario(tmp_path, packets=1000, seed=1, mix="legitimate=1", rows=False)
    assert not (tmp_path / "dos.pcap").exists()
    assert (tmp_path / "legitimate.pcap").exists()


def test_parallel_workers_write_the_same_bytes(tmp_path):
    mix = "legitimate=0.4,dos=0.3,bruteforce=0.3"
    write_scenario(tmp_path / "one", packets=3000, seed=5, mix=mix, rows=False, workers=1)
    write_scenario(tmp_path / "two", packets=3000, seed=5, mix=mix, rows=False, workers=2)
    for kind in ("legitimate", "dos", "bruteforce"):
        assert _sha(tmp_path / "one" / f"{kind}.pcap") == _sha(tmp_path / "two" / f"{kind}.pcap")


# -- genuine TCP ------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(SIZES))
def test_tcp_is_genuine_checksums_handshakes_and_sequence_numbers(scenario, kind):
    out, _ = scenario
    segments = read_segments(out / f"{kind}.pcap")
    assert all(s.ip_ok and s.tcp_ok for s in segments)
    assert all(a.ts <= b.ts for a, b in zip(segments, segments[1:]))
    nxt: dict[tuple, int] = {}
    for seg in segments:
        back = (seg.dst, seg.dport, seg.src, seg.sport)
        if seg.flags & SYN:
            assert seg.key not in nxt, "one connection per port pair in these scenarios"
            if seg.flags & ACK:
                assert seg.ack == nxt[back]
            nxt[seg.key] = seg.seq + 1
            continue
        assert seg.seq == nxt[seg.key], "no gap and no overlap in either direction"
        if seg.flags & ACK:
            assert seg.ack == nxt[back], "every segment acknowledges all the peer sent"
        nxt[seg.key] = seg.seq + len(seg.payload) + (1 if seg.flags & FIN else 0)
    assert all(len(s.payload) <= MSS for s in segments)


def test_connections_open_with_a_three_way_handshake(scenario):
    out, _ = scenario
    first: dict[tuple, list[int]] = collections.defaultdict(list)
    for seg in read_segments(out / "bruteforce.pcap"):
        conn = tuple(sorted([(seg.src, seg.sport), (seg.dst, seg.dport)]))
        if len(first[conn]) < 3:
            first[conn].append(seg.flags)
    complete = [f for f in first.values() if len(f) == 3]
    assert complete and all(f == [SYN, SYN | ACK, ACK] for f in complete)


def test_connections_close_with_fin_or_rst(scenario):
    out, _ = scenario
    segments = read_segments(out / "bruteforce.pcap")
    closing = collections.Counter(s.flags for s in segments if s.flags & (FIN | RST))
    assert closing[FIN | ACK] >= 2 * (sum(1 for s in segments if s.flags == SYN) - 2)


# -- MQTT mechanics per class ------------------------------------------------------

def test_legitimate_home_has_its_devices_qos_flows_retain_wills_and_pings(scenario):
    out, _ = scenario
    rows = _rows(out / "legitimate.pcap")
    types = collections.Counter(rows.column("mqtt.msgtype").to_pylist())
    assert {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14} <= set(types)
    assert types[5] == types[6] == types[7]  # every QoS 2 flow completes
    assert types[12] == types[13]  # every PINGREQ answered
    publish = rows.filter(pc.equal(rows.column("mqtt.msgtype"), 3))
    assert set(publish.column("mqtt.qos").to_pylist()) == {0, 1, 2}
    assert 1 in publish.column("mqtt.retain").to_pylist()
    connect = rows.filter(pc.equal(rows.column("mqtt.msgtype"), 1))
    assert set(connect.column("mqtt.ver").to_pylist()) == {4, 5}
    assert 1 in connect.column("mqtt.conflag.willflag").to_pylist()
    assert 1 in connect.column("mqtt.conflag.uname").to_pylist()
    sources = {s for s in rows.column("src").to_pylist() if s != home.BROKER_IP}
    assert {home.home_ip(s.host) for s in home.SENSORS} <= sources
    assert not any(rows.column("malformed").to_pylist())


def test_dos_packs_several_malaria_publishes_per_segment(scenario):
    out, _ = scenario
    rows = _rows(out / "dos.pcap", per_message=False)
    assert max(rows.column("ctx.packet_msgs").to_pylist()) >= 5
    msgs = [m for data in streams(read_segments(out / "dos.pcap")).values()
            for m in mqtt_messages(data)]
    topics = {body[2:2 + int.from_bytes(body[:2], "big")].split(b"/")[0]
              for first, _, body in msgs if first >> 4 == 3}
    assert topics == {b"mqtt-malaria"}
    clients = {s.sport for s in read_segments(out / "dos.pcap") if s.flags == SYN}
    assert len(clients) >= 8  # many concurrent clients


def test_flood_packs_many_messages_and_spans_segments(scenario):
    out, _ = scenario
    rows = _rows(out / "flood.pcap", per_message=False)
    assert max(rows.column("ctx.packet_msgs").to_pylist()) >= 20
    segments = read_segments(out / "flood.pcap")
    to_broker = [s for s in segments if s.dport == 1883 and s.payload]
    assert sum(1 for s in to_broker if len(s.payload) == MSS) > len(to_broker) // 2


def test_slowite_holds_connections_with_the_largest_keepalive(scenario):
    out, _ = scenario
    rows = _rows(out / "slowite.pcap")
    connect = rows.filter(pc.equal(rows.column("mqtt.msgtype"), 1))
    assert connect.num_rows > 50
    assert set(connect.column("mqtt.kalive").to_pylist()) == {65535}
    one_byte = [s for s in read_segments(out / "slowite.pcap") if len(s.payload) == 1]
    assert len(one_byte) >= connect.num_rows  # each CONNECT's last byte sent on its own


def test_bruteforce_guesses_are_refused_with_5_or_v5_0x86_0x87(scenario):
    out, _ = scenario
    codes = collections.Counter()
    users = set()
    for data in streams(read_segments(out / "bruteforce.pcap")).values():
        for first, _, body in mqtt_messages(data):
            if first == 0x20:
                codes[body[1] if len(body) == 2 else ("v5", body[1])] += 1
            elif first == 0x10:
                assert body[7] & 0xC0 == 0xC0  # user name and password flags
                users.add(body[6])
    assert codes and 0 not in codes
    assert set(codes) <= {5, ("v5", 0x86), ("v5", 0x87)}


def test_malformed_breaks_many_control_types(scenario):
    out, _ = scenario
    claimed = set()
    for (src, sport, dst, dport), data in streams(read_segments(out / "malformed.pcap")).items():
        if dport == 1883:
            claimed |= {first >> 4 for first, _, _ in mqtt_messages(data)}
    assert len(claimed) >= 12
    rows = _rows(out / "malformed.pcap")
    assert any(rows.column("malformed").to_pylist())


# -- rows ---------------------------------------------------------------------------

def test_rows_are_the_decoder_output_labelled_with_the_class(scenario):
    out, summary = scenario
    for kind in SIZES:
        table = pq.read_table(out / f"{kind}.parquet")
        assert table.schema.names == arrow_schema().names
        assert table.num_rows == summary["classes"][kind]["rows"] > 0
        assert set(table.column("target").to_pylist()) == {kind}
        assert table.num_rows == _rows(out / f"{kind}.pcap", per_message=False).num_rows


def test_every_row_of_every_class_loads_into_the_warehouse(scenario, tmp_path):
    # The fuzzed class holds values no well-formed packet has (remaining
    # lengths above MQTT's maximum, NUL bytes in strings): still rows, not rejects.
    from mqttids.warehouse import open_warehouse

    out, summary = scenario
    with open_warehouse(f"parquet:{tmp_path / 'wh'}") as wh:
        report = wh.ingest(sorted(str(p) for p in out.glob("*.parquet")), split="train")
    assert report.rejected == 0
    assert report.loaded == sum(c["rows"] for c in summary["classes"].values())


@pytest.mark.tshark
@pytest.mark.parametrize("kind", ["legitimate", "dos", "flood", "slowite", "bruteforce"])
def test_tshark_sees_clean_mqtt_with_good_checksums(scenario, tshark, kind):
    out, _ = scenario
    pcap = out / f"{kind}.pcap"
    flagged = subprocess.run(
        [tshark, "-r", str(pcap), "-o", "tcp.check_checksum:TRUE", "-o",
         "ip.check_checksum:TRUE", "-Y",
         "_ws.malformed || _ws.expert.severity >= warning || tcp.checksum.status == 0 "
         "|| ip.checksum.status == 0"],
        capture_output=True, text=True, check=True).stdout
    assert flagged == ""
    types = subprocess.run([tshark, "-r", str(pcap), "-Y", "mqtt", "-T", "fields", "-e",
                            "mqtt.msgtype"], capture_output=True, text=True, check=True).stdout
    tshark_msgs = sum(len(line.split(",")) for line in types.splitlines() if line)
    assert tshark_msgs == _rows(pcap).num_rows


@pytest.mark.tshark
def test_tshark_sees_the_malformed_class_as_malformed(scenario, tshark):
    out, _ = scenario
    flagged = subprocess.run([tshark, "-r", str(out / "malformed.pcap"), "-Y", "_ws.malformed"],
                             capture_output=True, text=True, check=True).stdout
    assert len(flagged.splitlines()) > 10


@pytest.mark.parametrize("filt, topic, hit", [
    ("home/#", "home/kitchen/door", True), ("home/#", "home", True),
    ("home/+/smoke", "home/kitchen/smoke", True), ("home/+/smoke", "home/kitchen/door", False),
    ("home/+/+/status", "home/kitchen/door/status", True), ("home/+", "home/a/b", False),
    ("#", "anything/at/all", True), ("home/kitchen/fan/set", "home/kitchen/fan", False),
])
def test_the_simulated_broker_matches_topic_filters_as_mqtt_does(filt, topic, hit):
    from mqttids.lab.legit import topic_matches

    assert topic_matches(filt, topic) is hit
