"""Small builders of MQTT/TCP/IP frames and pcap/pcapng files for tests.

Independent of the lab's synthetic writer on purpose: tests craft edge cases
(odd link types, reordering, malformed bytes) that a realistic scenario never
makes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def s16(b: bytes | str) -> bytes:
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("!H", len(b)) + b


def connect(client="c1", version=4, keepalive=60, user=None, password=None, will=None,
            clean=True, props=b"", will_props=b"") -> bytes:
    name = "MQIsdp" if version == 3 else "MQTT"
    flags = (0x02 if clean else 0) | (0x80 if user is not None else 0) | (
        0x40 if password is not None else 0)
    if will is not None:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    body = s16(name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        body += varint(len(props)) + props
    body += s16(client)
    if will is not None:
        if version == 5:
            body += varint(len(will_props)) + will_props
        body += s16(will[0]) + s16(will[1])
    if user is not None:
        body += s16(user)
    if password is not None:
        body += s16(password)
    return mqtt(0x10, body)


def connack(code=0, sp=0, version=4, props=b"") -> bytes:
    body = bytes([sp, code]) + (varint(len(props)) + props if version == 5 else b"")
    return mqtt(0x20, body)


def publish(topic="t", payload=b"x", qos=0, msgid=1, retain=0, dup=0, version=4,
            props=b"") -> bytes:
    body = s16(topic) + (struct.pack("!H", msgid) if qos else b"")
    if version == 5:
        body += varint(len(props)) + props
    return mqtt(0x30 | (dup << 3) | (qos << 1) | retain, body + payload)


def subscribe(topics=(("a/#", 1),), msgid=2, version=4) -> bytes:
    body = struct.pack("!H", msgid) + (b"\x00" if version == 5 else b"")
    for t, q in topics:
        body += s16(t) + bytes([q])
    return mqtt(0x82, body)


def suback(codes=(1,), msgid=2, version=4) -> bytes:
    return mqtt(0x90, struct.pack("!H", msgid) + (b"\x00" if version == 5 else b"")
                + bytes(codes))


def ack(kind: int, msgid: int, version=4, reason=None) -> bytes:
    first = {4: 0x40, 5: 0x50, 6: 0x62, 7: 0x70, 11: 0xB0}[kind]
    body = struct.pack("!H", msgid)
    if reason is not None:
        body += bytes([reason]) + b"\x00"
    return mqtt(first, body)


def unsubscribe(topics=("a/#",), msgid=3, version=4) -> bytes:
    body = struct.pack("!H", msgid) + (b"\x00" if version == 5 else b"")
    for t in topics:
        body += s16(t)
    return mqtt(0xA2, body)


PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"
DISCONNECT = b"\xe0\x00"


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_ip(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
           payload: bytes, v6: bool = False) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      5 << 4, flags, 65535, 0, 0) + payload
    if v6:
        import ipaddress
        s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
        pseudo = s + d + struct.pack("!IxxxB", len(tcp), 6)
        tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
        return struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + s + d + tcp
    s = bytes(int(x) for x in src.split("."))
    d = bytes(int(x) for x in dst.split("."))
    pseudo = s + d + struct.pack("!xBH", 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp


ETH = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb"


def link(linktype: int, ip: bytes, vlan: bool = False) -> bytes:
    v6 = ip[0] >> 4 == 6
    etype = b"\x86\xdd" if v6 else b"\x08\x00"
    if linktype == 1:
        return ETH + (b"\x81\x00\x00\x0a" if vlan else b"") + etype + ip
    if linktype == 113:
        return b"\x00\x00\x03\x04\x00\x06" + b"\x00" * 8 + etype + ip
    if linktype == 276:
        return etype + b"\x00\x00" + b"\x00\x00\x00\x01" + b"\x00\x01\x06\x00" + b"\x00" * 8 + ip
    if linktype in (101, 228, 229):
        return ip
    if linktype == 0:
        return struct.pack("<I", 30 if v6 else 2) + ip
    if linktype == 108:
        return struct.pack("!I", 24 if v6 else 2) + ip
    raise ValueError(linktype)


@dataclass
class Conversation:
    """A client-broker TCP connection that keeps its sequence numbers right."""

    client: str = "10.0.0.2"
    broker: str = "10.0.0.1"
    cport: int = 40000
    bport: int = 1883
    v6: bool = False
    cseq: int = 1000
    bseq: int = 5000
    t: float = 1.0
    packets: list = field(default_factory=list)  # (ts, ip bytes)

    def _emit(self, ip: bytes, dt: float) -> None:
        self.t += dt
        self.packets.append((self.t, ip))

    def handshake(self) -> "Conversation":
        self._emit(self.seg(True, 0x02, b"", advance=False), 0.001)
        self.cseq += 1
        self._emit(self.seg(False, 0x12, b"", advance=False), 0.001)
        self.bseq += 1
        self._emit(self.seg(True, 0x10, b""), 0.001)
        return self

    def seg(self, from_client: bool, flags: int, payload: bytes, advance=True,
            seq: int | None = None) -> bytes:
        if from_client:
            ip = tcp_ip(self.client, self.broker, self.cport, self.bport,
                        self.cseq if seq is None else seq, self.bseq, flags, payload, self.v6)
            if advance and seq is None:
                self.cseq += len(payload)
        else:
            ip = tcp_ip(self.broker, self.client, self.bport, self.cport,
                        self.bseq if seq is None else seq, self.cseq, flags, payload, self.v6)
            if advance and seq is None:
                self.bseq += len(payload)
        return ip

    def send(self, from_client: bool, payload: bytes, dt: float = 0.01,
             flags: int = 0x18) -> "Conversation":
        self._emit(self.seg(from_client, flags, payload), dt)
        return self

    def close(self) -> "Conversation":
        self._emit(self.seg(True, 0x11, b"", advance=False), 0.001)
        self.cseq += 1
        self._emit(self.seg(False, 0x11, b"", advance=False), 0.001)
        self.bseq += 1
        self._emit(self.seg(True, 0x10, b""), 0.001)
        return self


def pcap_bytes(frames, linktype: int = 1, big_endian: bool = False, nano: bool = False,
               vlan: bool = False) -> bytes:
    """frames: iterable of (ts seconds, ip bytes) -> a classic pcap file."""
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for ts, ip in frames:
        data = link(linktype, ip, vlan)
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        out.append(struct.pack(e + "IIII", sec, frac, len(data), len(data)) + data)
    return b"".join(out)


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def pcapng_bytes(sections, big_endian: bool = False) -> bytes:
    """sections: list of (interfaces, packets); interfaces: list of (linktype, tsresol or None);
    packets: (iface index, ts seconds, ip bytes)."""
    e = ">" if big_endian else "<"
    out = []
    for ifaces, packets in sections:
        out.append(_block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)))
        for linktype, tsresol in ifaces:
            opts = b""
            if tsresol is not None:
                opts = struct.pack(e + "HH", 9, 1) + bytes([tsresol]) + b"\x00\x00\x00"
                opts += struct.pack(e + "HH", 0, 0)
            out.append(_block(e, 1, struct.pack(e + "HHI", linktype, 0, 262144) + opts))
        for iface, ts, ip in packets:
            linktype, tsresol = ifaces[iface]
            per_sec = 10 ** (tsresol if tsresol is not None else 6)
            ticks = round(ts * per_sec)
            data = link(linktype, ip)
            out.append(_block(e, 6, struct.pack(e + "IIIII", iface, ticks >> 32,
                                                ticks & 0xFFFFFFFF, len(data), len(data))
                              + data))
    return b"".join(out)


def session(version: int = 4, **kw) -> Conversation:
    """A full, ordinary session: handshake, CONNECT/CONNACK, subscribe, QoS 0/1/2, close."""
    c = Conversation(**kw).handshake()
    c.send(True, connect(version=version, user="u", password="p",
                         will=("w/t", b"bye", 1, True)))
    c.send(False, connack(version=version))
    c.send(True, subscribe(version=version, topics=(("a/#", 1), ("b", 0))))
    c.send(False, suback(version=version, codes=(1, 0)))
    c.send(True, publish("a/1", b"21.5", qos=0, version=version))
    c.send(True, publish("a/2", b"on", qos=1, msgid=7, version=version))
    c.send(False, ack(4, 7))
    c.send(True, publish("a/3", b"x" * 300, qos=2, msgid=8, retain=1, version=version))
    c.send(False, ack(5, 8))
    c.send(True, ack(6, 8))
    c.send(False, ack(7, 8))
    c.send(True, unsubscribe(version=version))
    c.send(False, ack(11, 3))
    c.send(True, PINGREQ)
    c.send(False, PINGRESP)
    c.send(True, DISCONNECT)
    return c.close()


def lossy(split: bool) -> Conversation:
    """A session whose capture lost one client segment (the kernel dropped it).

    After the loss, the client sends either two whole PUBLISHes in one
    segment and one in the next (``split`` False) or one PUBLISH split over
    two segments, the second ending with another PUBLISH; then the broker
    acknowledges everything and the client publishes once more.
    """
    c = Conversation().handshake()
    c.send(True, connect())
    c.send(False, connack())
    c.send(True, publish("t1", b"a"))
    c.seg(True, 0x18, publish("lost", b"zz"))  # sent, never captured
    if split:
        m = publish("t3", b"b" * 40)
        c.send(True, m[:10])
        c.send(True, m[10:] + publish("t5", b"d"))
    else:
        c.send(True, publish("t3", b"b") + publish("t4", b"c"))
        c.send(True, publish("t5", b"d"))
    c.send(False, b"", flags=0x10)
    c.send(True, publish("t6", b"e"))
    return c
