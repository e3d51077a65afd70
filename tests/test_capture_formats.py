"""Containers and link layers: the same traffic gives the same rows in every form."""

from __future__ import annotations

import io
import logging
import struct

import pyarrow as pa
import pytest

import pcapbuild as pb
from mqttids.capture import ExtractStats, NotACaptureError, iter_row_batches
from mqttids.capture.extract import ARROW_SCHEMA
from mqttids.schema import FEATURE_NAMES


def rows(data: bytes, **kw) -> list[dict]:
    batches = list(iter_row_batches(io.BytesIO(data), **kw))
    return pa.Table.from_batches(batches, schema=ARROW_SCHEMA).to_pylist()


def features(rs: list[dict]) -> list[tuple]:
    return [tuple(r[n] for n in FEATURE_NAMES) for r in rs]


@pytest.fixture(scope="module")
def reference():
    packets = pb.session(4).packets
    return packets, rows(pb.pcap_bytes(packets))


def test_a_session_gives_one_row_per_mqtt_packet(reference):
    _, rs = reference
    assert [r["mqtt.msgtype"] for r in rs] == [1, 2, 8, 9, 3, 3, 4, 3, 5, 6, 7, 10, 11, 12, 13, 14]
    connect = rs[0]
    assert (connect["mqtt.conflags"], connect["mqtt.kalive"], connect["mqtt.willtopic"],
            connect["mqtt.willmsg"]) == (0xEE, 60, "w/t", b"bye".hex())
    assert connect["client_id"] == "c1" and connect["ctx.to_broker"] == 1


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_time_resolutions_agree(reference, big_endian, nano):
    packets, expected = reference
    got = rows(pb.pcap_bytes(packets, big_endian=big_endian, nano=nano))
    assert features(got) == features(expected)
    assert [r["ts"] for r in got] == [r["ts"] for r in expected]


@pytest.mark.parametrize("linktype,vlan", [(1, True), (113, False), (276, False), (101, False),
                                           (228, False), (0, False), (108, False)])
def test_every_link_type_gives_the_same_rows(reference, linktype, vlan):
    packets, expected = reference
    assert features(rows(pb.pcap_bytes(packets, linktype=linktype, vlan=vlan))) == \
        features(expected)


def test_ipv6_gives_the_same_mqtt_fields(reference):
    _, expected = reference
    got = rows(pb.pcap_bytes(pb.session(4, client="fd00::2", broker="fd00::1", v6=True).packets,
                             linktype=229))
    assert features(got) == features(expected)
    assert got[0]["src"] == "fd00::2"


def test_pcapng_with_sections_interfaces_and_resolutions(reference):
    packets, expected = reference
    half = len(packets) // 2
    first = [(i % 2, ts, ip) for i, (ts, ip) in enumerate(packets[:half])]
    second = [(0, ts, ip) for ts, ip in packets[half:]]
    data = pb.pcapng_bytes([([(1, None), (113, 9)], first), ([(101, 3)], second)])
    got = rows(data)
    assert features(got) == features(expected)
    assert [r["ts"] for r in got] == [r["ts"] for r in expected]
    assert features(rows(pb.pcapng_bytes([([(1, None)], [(0, t, ip) for t, ip in packets])],
                                         big_endian=True))) == features(expected)


def test_a_truncated_capture_gives_every_whole_packet_and_one_warning(reference, caplog):
    packets, expected = reference
    data = pb.pcap_bytes(packets)
    stats = ExtractStats()
    with caplog.at_level(logging.WARNING):
        got = rows(data[:-30], stats=stats)
    assert features(got) == features(expected)  # the cut frame is the closing ACK
    assert stats.packets == len(packets) - 1
    assert len(stats.warnings) == 1 and "truncated" in stats.warnings[0]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


@pytest.mark.parametrize("data,hint", [
    (b"tcp.flags,tcp.time_delta\n0x18,0.1\n", "text"),
    (b"\x1f\x8b\x08\x00" + b"\x00" * 20, "gzip"),
    (b"", "empty"),
    (b"\x00\x01\x02\x03\xff\xfe", "binary"),
])
def test_a_file_that_is_not_a_capture_gets_one_clear_line(tmp_path, data, hint):
    path = tmp_path / "notes.bin"
    path.write_bytes(data)
    with pytest.raises(NotACaptureError) as err:
        list(iter_row_batches(path))
    message = str(err.value)
    assert str(path) in message and hint in message and "\n" not in message


def test_streaming_in_small_chunks_gives_the_same_rows(reference):
    packets, expected = reference

    class Trickle(io.RawIOBase):
        def __init__(self, data):
            self.data, self.pos = data, 0

        def readable(self):
            return True

        def read(self, n=-1):
            chunk = self.data[self.pos:self.pos + min(n if n > 0 else 7, 7)]
            self.pos += len(chunk)
            return chunk

    got = pa.Table.from_batches(list(iter_row_batches(Trickle(pb.pcap_bytes(packets)))),
                                schema=ARROW_SCHEMA).to_pylist()
    assert features(got) == features(expected)


def test_warnings_give_the_byte_offset_in_the_whole_stream(reference):
    packets, _ = reference
    good = pb.pcap_bytes(packets * 400)  # well past the reader's first 1 MiB buffer
    bad = good + struct.pack("<IIII", 0, 0, 1 << 30, 1 << 30)
    stats = ExtractStats()
    rows(bad, stats=stats)
    assert f"from byte offset {len(good)} on" in stats.warnings[0]
