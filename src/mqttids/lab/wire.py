"""Genuine Ethernet/IPv4/TCP frames into a classic pcap file, fast.

The synthetic writer must reach 100,000 packets per second in Python, so a
frame is never built from objects: each direction of a TCP connection keeps
its constant header bytes and the constant part of both checksums, and a
segment is two ``struct.pack`` calls (the pcap record header, then Ethernet,
IP and TCP at once) appended to a list that goes to disk in one write per
few megabytes. Checksums use the fact that a one's-complement sum of 16-bit
words is the number's value modulo 0xffff, so a payload's share is one
``int.from_bytes`` and a ``%``, and the rest is adding a few integers.

Sequence and acknowledgement numbers follow real TCP: SYN and FIN take one
number, data takes its length, every segment after the SYN acknowledges all
that the other side has sent. A pure ACK is only sent when there is
something new to acknowledge, so the trace has no duplicate ACKs.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
PSH_ACK = PSH | ACK
FIN_ACK = FIN | ACK

LINKTYPE_ETHERNET = 1
SNAPLEN = 262144

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
# Ethernet (14) + IP version/ihl/tos (2) | total length | id | flags+frag, ttl, proto |
# IP checksum | addresses and ports | seq | ack | offset+flags | window | checksum | urgent
_HEADERS = struct.Struct(">16sHH4sH12sIIHHHH")
_IP_FIXED = b"\x40\x00\x40\x06"  # don't fragment, TTL 64, protocol TCP
# SYN options as Linux sends them minus timestamps: MSS 1460, NOP, window scale 7,
# NOP, NOP, SACK permitted.
SYN_OPTIONS = b"\x02\x04\x05\xb4\x01\x03\x03\x07\x01\x01\x04\x02"
MSS = 1460


class BudgetReached(Exception):
    """The sink has written the number of frames it was asked for."""


def payload_sum(data: bytes) -> int:
    """One's-complement sum of ``data`` as 16-bit words, modulo 0xffff."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    return value % 0xFFFF


def _words(raw: bytes) -> int:
    return sum(struct.unpack(f">{len(raw) // 2}H", raw))


_SYN_SUM = payload_sum(SYN_OPTIONS)


class PcapSink:
    """A classic little-endian pcap file, written in large blocks.

    ``now`` is the simulation clock in seconds since ``epoch``; the scheduler
    sets it before each step. Frames collect as byte strings and go to disk
    in one ``write`` per few megabytes. Writing stops with
    :class:`BudgetReached` once ``limit`` frames are out, which is how a
    scenario ends at exactly N.
    """

    def __init__(self, fileobj: BinaryIO, limit: int, epoch: int = 1_700_000_000,
                 block: int = 4 << 20):
        self.file = fileobj
        self.limit = limit
        self.epoch = epoch
        self.now = 0.0
        self.count = 0
        self.bytes = _GLOBAL.size
        self.parts: list[bytes] = []
        self.pending = 0
        self.block = block
        fileobj.write(_GLOBAL.pack(0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))

    def flush(self) -> None:
        if self.parts:
            self.file.write(b"".join(self.parts))
            self.bytes += self.pending
            self.parts.clear()
            self.pending = 0

    def close(self) -> None:
        self.flush()
        self.file.flush()


class Host:
    """An Ethernet/IPv4 endpoint: its MAC and address as bytes."""

    __slots__ = ("mac", "ip", "name")

    def __init__(self, ip: str, mac: str, name: str = ""):
        self.ip = bytes(int(p) for p in ip.split("."))
        self.mac = bytes.fromhex(mac.replace(":", ""))
        self.name = name


class Half:
    """One direction of a TCP connection: what this side sends."""

    __slots__ = ("sink", "peer", "nxt", "acked", "ipid", "window", "syn_window", "prefix",
                 "addrports", "ipsum", "tcpsum", "open")

    def __init__(self, sink: PcapSink, src: Host, sport: int, dst: Host, dport: int,
                 isn: int, ipid: int, window: int, syn_window: int = 64240):
        self.sink = sink
        self.peer: Half = self
        self.nxt = isn
        self.acked = -1
        self.ipid = ipid
        self.window = window
        self.syn_window = syn_window
        self.open = True
        self.prefix = dst.mac + src.mac + b"\x08\x00\x45\x00"
        self.addrports = src.ip + dst.ip + struct.pack(">HH", sport, dport)
        addr_words = _words(src.ip + dst.ip)
        self.ipsum = (0x4500 + 0x4000 + 0x4006 + addr_words) % 0xFFFF
        self.tcpsum = (addr_words + 6 + sport + dport + window) % 0xFFFF

    def send(self, payload: bytes = b"", psum: int = -1, flags: int = PSH_ACK) -> None:
        """Write one segment of this direction at the sink's clock."""
        sink = self.sink
        if sink.count >= sink.limit:
            raise BudgetReached
        n = len(payload)
        if psum < 0:
            psum = payload_sum(payload) if n else 0
        seq = self.nxt
        ack = self.peer.nxt
        self.nxt = (seq + n + (flags & FIN)) & 0xFFFFFFFF
        self.acked = ack
        ipid = self.ipid
        self.ipid = (ipid + 1) & 0xFFFF
        total = 40 + n
        offflags = 0x5000 | flags
        now = sink.now
        sec = int(now)
        parts = sink.parts
        parts.append(_RECORD.pack(sink.epoch + sec, int((now - sec) * 1e6), total + 14,
                                  total + 14))
        parts.append(_HEADERS.pack(
            self.prefix, total, ipid, _IP_FIXED,
            (0xFFFF - (self.ipsum + total + ipid) % 0xFFFF) % 0xFFFF, self.addrports,
            seq, ack, offflags, self.window,
            (0xFFFF - (self.tcpsum + 20 + n + seq + ack + offflags + psum) % 0xFFFF) % 0xFFFF,
            0))
        sink.count += 1
        if n:
            parts.append(payload)
        sink.pending += total + 30
        if sink.pending > sink.block:
            sink.flush()

    def ack(self) -> bool:
        """A pure ACK, only when the peer sent something not yet acknowledged."""
        if self.acked == self.peer.nxt:
            return False
        self.send(b"", 0, ACK)
        return True

    def fin(self) -> None:
        self.send(b"", 0, FIN_ACK)
        self.open = False

    def rst(self) -> None:
        self.send(b"", 0, RST | ACK)
        self.open = False
        self.peer.open = False

    def syn(self, acknowledge: bool) -> None:
        """SYN (client) or SYN-ACK (server), with Linux-like options."""
        sink = self.sink
        if sink.count >= sink.limit:
            raise BudgetReached
        seq = self.nxt
        ack = self.peer.nxt if acknowledge else 0
        self.nxt = (seq + 1) & 0xFFFFFFFF
        self.acked = ack if acknowledge else -1
        ipid = self.ipid
        self.ipid = (ipid + 1) & 0xFFFF
        hlen = 20 + len(SYN_OPTIONS)
        total = 20 + hlen
        offflags = (hlen // 4) << 12 | SYN | (ACK if acknowledge else 0)
        tsum = self.tcpsum - self.window + self.syn_window + hlen + seq + ack + offflags
        now = sink.now
        sec = int(now)
        sink.parts.append(_RECORD.pack(sink.epoch + sec, int((now - sec) * 1e6), total + 14,
                                       total + 14))
        sink.parts.append(_HEADERS.pack(
            self.prefix, total, ipid, _IP_FIXED,
            (0xFFFF - (self.ipsum + total + ipid) % 0xFFFF) % 0xFFFF, self.addrports,
            seq, ack, offflags, self.syn_window,
            (0xFFFF - (tsum + _SYN_SUM + 0xFFFF) % 0xFFFF) % 0xFFFF, 0) + SYN_OPTIONS)
        sink.count += 1
        sink.pending += total + 30


class Conn:
    """A TCP connection between a client and the broker: ``c`` and ``s`` halves."""

    __slots__ = ("c", "s", "client", "cport", "up")

    def __init__(self, sink: PcapSink, client: Host, cport: int, server: Host, sport: int,
                 isns: tuple[int, int], ipids: tuple[int, int],
                 windows: tuple[int, int] = (502, 509)):
        self.client = client
        self.cport = cport
        self.up = True  # until either side hangs up; MQTT flows stop when it falls
        self.c = Half(sink, client, cport, server, sport, isns[0], ipids[0], windows[0], 64240)
        self.s = Half(sink, server, sport, client, cport, isns[1], ipids[1], windows[1], 65160)
        self.c.peer = self.s
        self.s.peer = self.c

    def send_segments(self, half: Half, data: bytes, mss: int = MSS) -> int:
        """Send ``data`` from one side cut at MSS boundaries; the number of segments."""
        n = 0
        for start in range(0, len(data), mss):
            half.send(data[start:start + mss])
            n += 1
        return n
