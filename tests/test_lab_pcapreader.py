"""A small independent reader of the lab's Ethernet/IPv4/TCP pcaps, for the lab tests.

It recomputes every checksum the slow, obvious way (summing 16-bit words),
so that the writer's modular shortcut is checked against the definition.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Segment:
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes
    ip_ok: bool
    tcp_ok: bool

    @property
    def key(self) -> tuple:
        return (self.src, self.sport, self.dst, self.dport)


def _ones_complement(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def read_segments(path: Path) -> list[Segment]:
    raw = Path(path).read_bytes()
    magic, major, minor, _, _, snap, link = struct.unpack("<IHHiIII", raw[:24])
    assert (magic, major, minor, link) == (0xA1B2C3D4, 2, 4, 1), "classic LE Ethernet pcap"
    out, pos = [], 24
    while pos < len(raw):
        sec, usec, incl, orig = struct.unpack("<IIII", raw[pos:pos + 16])
        frame = raw[pos + 16:pos + 16 + incl]
        assert incl == orig == len(frame), "whole frames, none truncated"
        pos += 16 + incl
        assert frame[12:14] == b"\x08\x00", "IPv4 over Ethernet"
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        assert ip[9] == 6 and total == len(ip)
        ip_ok = _ones_complement(ip[:ihl]) == 0xFFFF
        tcp = ip[ihl:total]
        pseudo = ip[12:20] + struct.pack(">BBH", 0, 6, len(tcp))
        tcp_ok = _ones_complement(pseudo + tcp) == 0xFFFF
        sport, dport, seq, ack, offflags, window = struct.unpack(">HHIIHH", tcp[:16])
        hlen = (offflags >> 12) * 4
        out.append(Segment(sec + usec / 1e6, ".".join(map(str, ip[12:16])), sport,
                           ".".join(map(str, ip[16:20])), dport, seq, ack, offflags & 0x1FF,
                           window, tcp[hlen:], ip_ok, tcp_ok))
    return out


def mqtt_messages(stream: bytes) -> list[tuple[int, int, bytes]]:
    """(first byte, remaining length, body) of each whole MQTT message in a byte stream."""
    out, pos = [], 0
    while pos + 2 <= len(stream):
        length, shift, at = 0, 0, pos + 1
        while at < len(stream):
            byte = stream[at]
            length |= (byte & 0x7F) << shift
            shift += 7
            at += 1
            if not byte & 0x80 or shift > 21:
                break
        if at + length > len(stream):
            break
        out.append((stream[pos], length, stream[at:at + length]))
        pos = at + length
    return out


def streams(segments: list[Segment], port: int = 1883) -> dict[tuple, bytes]:
    """Client-to-broker and broker-to-client byte streams of every connection, in order."""
    data: dict[tuple, bytearray] = {}
    for seg in segments:
        if seg.payload:
            data.setdefault(seg.key, bytearray()).extend(seg.payload)
    return {k: bytes(v) for k, v in data.items()}


# Two frames the lab wrote, whose IP and TCP checksums tshark 4.0 reported as good:
# a SYN with options, and a CONNECT with a will, user name and password.
_SYN = bytes.fromhex(
    "dca632000010b827eb000001080045000034006440004006b6a0c0a80165c0a8010a9c41075b00003039"
    "000000008002faf01c8b0000020405b40103030701010402")
_CONNECT = bytes.fromhex(
    "dca632000010b827eb00000108004500004d006640004006b685c0a80165c0a8010a9c41075b0000303a"
    "000f4240501801f64fdc0000102300044d51545404ee003c00036162630003612f7300076f66666c696e"
    "65000175000170")


def _pcap_of(*frames: bytes) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    for i, frame in enumerate(frames):
        out += struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame
    return out


def test_reader_accepts_checksums_that_tshark_accepted(tmp_path):
    path = tmp_path / "two.pcap"
    path.write_bytes(_pcap_of(_SYN, _CONNECT))
    syn, connect = read_segments(path)
    assert syn.ip_ok and syn.tcp_ok and connect.ip_ok and connect.tcp_ok
    assert (syn.flags, syn.seq, connect.seq, connect.ack) == (0x002, 12345, 12346, 1000000)
    assert connect.payload[:1] == b"\x10"


def test_reader_rejects_a_flipped_bit(tmp_path):
    broken = bytearray(_CONNECT)
    broken[-3] ^= 0x01
    path = tmp_path / "bad.pcap"
    path.write_bytes(_pcap_of(bytes(broken)))
    (seg,) = read_segments(path)
    assert seg.ip_ok and not seg.tcp_ok


def test_mqtt_messages_splits_a_stream_and_keeps_an_incomplete_tail_out():
    stream = b"\x30\x05\x00\x01ax1" + b"\xc0\x00" + b"\x30\x10\x00"
    assert mqtt_messages(stream) == [(0x30, 5, b"\x00\x01ax1"), (0xC0, 0, b"")]
