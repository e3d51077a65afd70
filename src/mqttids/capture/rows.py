"""Frames -> feature rows.

:class:`FrameDecoder` takes captured frames one at a time (link layer, IPv4 or
IPv6, TCP), keeps per-connection state, reassembles each direction, decodes
the MQTT messages a frame completes, and returns the frame's rows as tuples in
``mqttids.schema.COLUMN_NAMES`` order:

- packet rows (the default): one row per frame that completes at least one
  MQTT message. Like ``tshark -T fields -E occurrence=f``, each field takes its
  first occurrence in the frame: the first message's, or a later message's
  where the first has none;
- message rows (``per_message=True``): one row per MQTT message.

The link, IP and TCP headers are read inline in :meth:`FrameDecoder.decode`:
it runs once per frame and a function call per layer costs a measurable share
of the per-packet budget in pure Python.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from struct import Struct

from mqttids.capture.flows import Connection, new_connection
from mqttids.capture.mqtt import CONNECT, N_FIELDS, decode_message
from mqttids.capture.tcp import MAX_MESSAGE

log = logging.getLogger(__name__)

_TCP = Struct("!HHIIH")
_U16 = Struct("!H")
_U32LE = Struct("<I")
_U32BE = Struct("!I")

LINK_ETHERNET, LINK_NULL, LINK_RAW, LINK_LOOP = 1, 0, 101, 108
LINK_SLL, LINK_SLL2, LINK_IPV4, LINK_IPV6 = 113, 276, 228, 229
LINK_RAW_ALT = (12, 14)
SUPPORTED_LINKTYPES = frozenset(
    (LINK_ETHERNET, LINK_NULL, LINK_RAW, LINK_LOOP, LINK_SLL, LINK_SLL2, LINK_IPV4,
     LINK_IPV6) + LINK_RAW_ALT)
_VLAN = frozenset((0x8100, 0x88A8, 0x9100))
_BSD_AF_INET6 = frozenset((24, 28, 30))
_IPV6_EXT = frozenset((0, 43, 60))
_MAX_TS_NS = 1 << 62


def ip_offset(linktype: int, data: bytes) -> int:
    """Offset of the IP header in a frame, or -1 when the frame carries no IP."""
    if linktype == LINK_ETHERNET:
        off = 12
        etype = (data[12] << 8) | data[13] if len(data) >= 14 else 0
        while etype in _VLAN and len(data) >= off + 6:
            off += 4
            etype = (data[off] << 8) | data[off + 1]
        return off + 2 if etype in (0x0800, 0x86DD) else -1
    if linktype == LINK_SLL:
        return 16 if len(data) >= 16 and data[14:16] in (b"\x08\x00", b"\x86\xdd") else -1
    if linktype == LINK_SLL2:
        return 20 if len(data) >= 20 and data[0:2] in (b"\x08\x00", b"\x86\xdd") else -1
    if linktype in (LINK_RAW, LINK_IPV4, LINK_IPV6) or linktype in LINK_RAW_ALT:
        return 0
    if linktype in (LINK_NULL, LINK_LOOP):
        if len(data) < 4:
            return -1
        af = _U32BE.unpack_from(data)[0] if linktype == LINK_LOOP else _U32LE.unpack_from(data)[0]
        if af > 0xFFFF:
            af = _U32BE.unpack_from(data)[0]
        return 4 if af == 2 or af in _BSD_AF_INET6 else -1
    return -1


def tcp_segment(data: bytes, off: int):
    """(src, dst, tcp offset, IP payload end) of a TCP/IP packet, or None.

    IP fragments are not reassembled (MQTT over TCP does not fragment in
    practice); a fragment gives None.
    """
    if len(data) < off + 20:
        return None
    ver = data[off] >> 4
    if ver == 4:
        ihl = (data[off] & 0x0F) * 4
        if data[off + 9] != 6 or ihl < 20 or _U16.unpack_from(data, off + 6)[0] & 0x3FFF:
            return None
        end = off + _U16.unpack_from(data, off + 2)[0]
        return data[off + 12:off + 16], data[off + 16:off + 20], off + ihl, end
    if ver == 6 and len(data) >= off + 40:
        nxt = data[off + 6]
        end = off + 40 + _U16.unpack_from(data, off + 4)[0]
        pos = off + 40
        while nxt in _IPV6_EXT or nxt == 51:
            if len(data) < pos + 8:
                return None
            step = (data[pos + 1] + 2) * 4 if nxt == 51 else (data[pos + 1] + 1) * 8
            nxt = data[pos]
            pos += step
        if nxt != 6:
            return None
        return data[off + 8:off + 24], data[off + 24:off + 40], pos, end
    return None


class FrameDecoder:
    """Stateful frame -> rows decoder for one capture (or one live stream)."""

    def __init__(self, ports: Iterable[int] = (1883,), per_message: bool = False,
                 source: str = "-", label: str | None = None,
                 max_message: int = MAX_MESSAGE):
        self.ports = frozenset(ports)
        self.per_message = per_message
        self.source = source
        self.label = label
        self.max_message = max_message
        self.conns: dict[tuple, tuple[Connection, int]] = {}
        self.generations: dict[tuple, int] = {}
        self.client_connects: dict[bytes, int] = {}
        self.frames = 0
        self.mqtt_messages = 0
        self.malformed = 0
        self.unknown_linktypes: set[int] = set()

    def decode(self, frame_no: int, ts_ns: int, linktype: int, data: bytes) -> list[tuple]:
        """The rows of one frame (often none)."""
        self.frames += 1
        try:
            off = ip_offset(linktype, data)
        except IndexError:
            return []
        if off < 0:
            if linktype not in SUPPORTED_LINKTYPES and linktype not in self.unknown_linktypes:
                self.unknown_linktypes.add(linktype)
                log.warning("%s: link type %d is not supported; its frames are skipped",
                            self.source, linktype)
            return []
        seg = tcp_segment(data, off)
        if seg is None:
            return []
        src, dst, t, end = seg
        if len(data) < t + 20:
            return []
        sport, dport, seq, _ack, offflags = _TCP.unpack_from(data, t)
        ports = self.ports
        if sport not in ports and dport not in ports:
            return []
        doff = (offflags >> 12) * 4
        flags = offflags & 0x0FFF
        tcp_len = end - t - doff
        if tcp_len < 0 or doff < 20:
            return []
        conn, side = self._connection(src, sport, dst, dport, flags, seq, dport in ports)
        last = conn.last_ts
        delta = 0.0 if last is None else (ts_ns - last) / 1e9
        conn.last_ts = ts_ns
        conn.last_seen = ts_ns
        conn.packets += 1
        conn.bytes += tcp_len
        if flags & 0x05:  # FIN or RST
            conn.closed = True
        direction = conn.dirs[side]
        if tcp_len == 0:
            direction.note((seq + (flags & 1)) & 0xFFFFFFFF)
            return []
        cuts = direction.segment(seq, data[t + doff:end], self.max_message)
        if flags & 1:
            direction.note((seq + tcp_len + 1) & 0xFFFFFFFF)
        if not cuts:
            return []
        return self._rows(conn, side, cuts, frame_no, ts_ns, (flags, delta, tcp_len))

    def _connection(self, src, sport, dst, dport, flags, seq, to_broker) -> tuple[Connection, int]:
        key = (src, sport, dst, dport)
        found = self.conns.get(key)
        syn_only = flags & 0x12 == 0x02
        if found is not None and not (syn_only and found[1] == 0 and (
                found[0].closed or found[0].syn_seq not in (None, seq))):
            conn, side = found
        else:
            canon = (key, (dst, dport, src, sport)) if (src, sport) < (dst, dport) else (
                (dst, dport, src, sport), key)
            gen = self.generations.get(canon, -1) + 1
            self.generations[canon] = gen
            conn = new_connection(src, sport, dst, dport, to_broker, gen)
            side = 0
            self.conns[key] = (conn, 0)
            self.conns[(dst, dport, src, sport)] = (conn, 1)
        if flags & 0x02:  # SYN: the stream starts after it
            conn.dirs[side].syn(seq)
            if side == 0 and syn_only:
                conn.syn_seq = seq
        return conn, side

    def _rows(self, conn: Connection, side: int, cuts, frame_no: int, ts_ns: int,
              tcp_fields: tuple) -> list[tuple]:
        messages = []
        for pdu, hdr_len, length, whole in cuts:
            msg = decode_message(pdu, hdr_len, length, conn.version)
            if not whole:
                msg.malformed = True
            if msg.msgtype == CONNECT:
                if msg.version != conn.version:
                    conn.version = msg.version
                if msg.client_id is not None:
                    conn.client_id = msg.client_id
            messages.append(msg)
        self.mqtt_messages += len(messages)
        src, dst, sport, dport = conn.ends[side]
        to_broker = 1 if dport in self.ports else 0
        # A corrupt pcapng time stamp can pass what Arrow's int64 microseconds hold.
        ts_us = ts_ns // 1000 if -_MAX_TS_NS < ts_ns < _MAX_TS_NS else None
        count = len(messages)
        prov = (self.label, None, self.source, frame_no)
        if self.per_message:
            rows = []
            for i, msg in enumerate(messages):
                self._count(conn, (msg,))
                rows.append(tcp_fields + tuple(msg.fields) + prov + (
                    i, ts_us, conn.flow_id, src, dst, sport, dport, msg.malformed,
                    conn.client_id, conn.packets, conn.messages, conn.connects, conn.bytes,
                    self.client_connects.get(conn.client_addr, 0), count, to_broker,
                    int(msg.malformed)))
            return rows
        self._count(conn, messages)
        fields = messages[0].fields
        malformed = messages[0].malformed
        if count > 1:
            fields = list(fields)
            for msg in messages[1:]:
                malformed = malformed or msg.malformed
                other = msg.fields
                for i in range(N_FIELDS):
                    if fields[i] is None and other[i] is not None:
                        fields[i] = other[i]
        return [tcp_fields + tuple(fields) + prov + (
            0, ts_us, conn.flow_id, src, dst, sport, dport, malformed, conn.client_id,
            conn.packets, conn.messages, conn.connects, conn.bytes,
            self.client_connects.get(conn.client_addr, 0), count, to_broker, int(malformed))]

    def _count(self, conn: Connection, messages) -> None:
        conn.messages += len(messages)
        for msg in messages:
            if msg.malformed:
                self.malformed += 1
            if msg.msgtype == CONNECT:
                conn.connects += 1
                addr = conn.client_addr
                self.client_connects[addr] = self.client_connects.get(addr, 0) + 1

    def evict_idle(self, now_ns: int, idle_ns: int) -> int:
        """Forget connections silent for ``idle_ns``; returns how many went."""
        stale = {id(c) for c, _ in self.conns.values() if now_ns - c.last_seen > idle_ns}
        if not stale:
            return 0
        self.conns = {k: v for k, v in self.conns.items() if id(v[0]) not in stale}
        return len(stale)
