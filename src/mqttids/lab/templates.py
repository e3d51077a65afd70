"""Encoded MQTT packets with their checksum share, reused across a scenario.

A sensor sends the same few dozen readings for hours; encoding each PUBLISH
again, and summing its bytes for the TCP checksum again, was a third of the
synthetic writer's time. A template keeps the bytes and their word sum; a
QoS 1/2 PUBLISH differs only in its packet identifier, which is patched in,
its share of the sum added (a 16-bit field at an even or odd distance from
the end weighs 1 or 256 modulo 0xffff).
"""

from __future__ import annotations

import struct

from mqttids.lab import codec as mq
from mqttids.lab.wire import payload_sum

_MID = struct.Struct(">H")
_ACK = struct.Struct(">BBH")


class PublishTemplates:
    """PUBLISH packets by (topic, payload, qos, retain, version); at most ``limit`` kept."""

    def __init__(self, limit: int = 50_000):
        self.limit = limit
        self._plain: dict[tuple, tuple[bytes, int]] = {}
        self._with_id: dict[tuple, tuple[bytes, bytes, int, int]] = {}

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool, version: int,
                mid: int = 0, props: tuple = ()) -> tuple[bytes, int]:
        """The packet and its checksum share."""
        key = (topic, payload, qos, retain, version, props)
        if not qos:
            hit = self._plain.get(key)
            if hit is None:
                if len(self._plain) >= self.limit:
                    self._plain.clear()
                pkt = mq.publish(topic, payload, version=version, retain=retain, props=props)
                hit = self._plain[key] = (pkt, payload_sum(pkt))
            return hit
        tpl = self._with_id.get(key)
        if tpl is None:
            if len(self._with_id) >= self.limit:
                self._with_id.clear()
            pkt = mq.publish(topic, payload, qos=qos, retain=retain, msgid=0, version=version,
                             props=props)
            at = 1 + len(mq.varint(len(pkt) - 1 - _varint_len(len(pkt)))) + 2 + len(
                topic.encode())
            tail = pkt[at + 2:]
            exponent = len(tail) + (len(pkt) & 1)
            tpl = self._with_id[key] = (pkt[:at], tail, payload_sum(pkt),
                                        256 if exponent & 1 else 1)
        head, tail, base, weight = tpl
        return head + _MID.pack(mid) + tail, (base + mid * weight) % 0xFFFF


def _varint_len(total: int) -> int:
    """Bytes of the remaining-length field in a packet of ``total`` bytes."""
    for n in (1, 2, 3, 4):
        if total - 1 - n < 128 ** n:
            return n
    return 4


def ack(ptype: int, mid: int) -> tuple[bytes, int]:
    """PUBACK/PUBREC/PUBREL/PUBCOMP (no reason code) and its checksum share."""
    first = ptype << 4 | (0x02 if ptype == mq.PUBREL else 0)
    return _ACK.pack(first, 2, mid), (first * 256 + 2 + mid) % 0xFFFF


PINGREQ = (mq.pingreq(), payload_sum(mq.pingreq()))
PINGRESP = (mq.pingresp(), payload_sum(mq.pingresp()))
