"""Malformed MQTT: broken packets of every control type, as a fuzzer sends them.

Each case names the rule it breaks, so a test (or a reader of the pcap) can
tell what a packet was meant to be. The synthetic writer and the live
recorder draw from the same cases; the recorder lets the real broker react,
the writer plays the reaction written in the case, which is what Mosquitto
2.0 does (probed case by case against a live broker):

- most violations: the broker closes the connection without a word; an MQTT
  5 client that broke a PUBLISH, SUBSCRIBE or UNSUBSCRIBE rule first gets
  DISCONNECT with 0x81 (malformed) or 0x82 (protocol error);
- a CONNECT with an unknown protocol level: CONNACK 1, then close;
- an impossible remaining length: the broker resets the connection;
- a few oddities are let through: a PUBACK with extra bytes or flags, a
  PINGREQ with a body (answered by PINGRESP), a PUBREC with flags (answered
  by PUBREL), a client-sent SUBACK or PINGRESP (3.1.1).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

from mqttids.lab import codec as mq

_U16 = struct.Struct(">H")

MALFORMED = mq.RC_MALFORMED_V5
PROTOCOL = mq.RC_PROTOCOL_ERROR_V5


@dataclass(frozen=True)
class FuzzCase:
    """One malformed packet and what the broker does with it."""

    name: str
    ptype: int  # the control type the packet claims (0 and 15 included)
    data: bytes
    version: int
    connect_first: bool  # a valid CONNECT/CONNACK comes before it
    answer: bytes = b""  # what the broker sends back
    closes: bool = True  # the broker hangs up (FIN) after answering
    resets: bool = False  # the broker resets the connection (RST) instead


def _close(name: str, ptype: int, data: bytes, v: int, first: bool = True,
           v5_reason: int = 0) -> FuzzCase:
    """A case the broker ends by closing; MQTT 5 sessions get DISCONNECT(reason) first."""
    answer = mq.disconnect(version=v, reason=v5_reason) if v == mq.V5 and v5_reason else b""
    return FuzzCase(name, ptype, data, v, first, answer)


def _client_id(rng: random.Random) -> str:
    return "fz" + "".join(rng.choice("0123456789abcdef") for _ in range(10))


def _connect_cases(rng: random.Random, v: int) -> list[FuzzCase]:
    cid = _client_id(rng)
    good = bytearray(mq.connect(cid, version=v, keepalive=60))
    flags_at = 2 + 6 + 1  # fixed header (2), protocol name (6), level (1)
    reserved = bytearray(good)
    reserved[flags_at] |= 0x01
    will_qos3 = bytearray(mq.connect(cid, version=v, will=("fz/w", b"x", 1, False)))
    will_qos3[flags_at] |= 0x18
    bad_level = bytearray(good)
    bad_level[flags_at - 1] = rng.choice((0, 2, 6, 7, 9, 0x83))
    bad_name = good.replace(b"\x00\x04MQTT", b"\x00\x04" + rng.choice((b"MQTX", b"mqtt",
                                                                       b"MQ\x00T")), 1)
    overrun = bytearray(good)
    id_at = len(good) - 2 - len(cid)
    overrun[id_at:id_at + 2] = _U16.pack(len(cid) + rng.randint(5, 300))
    bad_utf8 = mq.packet(mq.CONNECT, 0, bytes(good[2:id_at]) + _U16.pack(6) + b"fz\xc0\xaf\xff1")
    cases = [
        _close("connect-reserved-flag", 1, bytes(reserved), v, False),
        _close("connect-will-qos-3", 1, bytes(will_qos3), v, False),
        FuzzCase("connect-protocol-level", 1, bytes(bad_level), v, False, mq.connack(0x01)),
        _close("connect-protocol-name", 1, bytes(bad_name), v, False),
        _close("connect-client-id-overrun", 1, bytes(overrun), v, False),
        _close("connect-client-id-utf8", 1, bad_utf8, v, False),
    ]
    if v == mq.V311:
        no_user = mq.connect(cid, version=v, password="x" * rng.randint(1, 12))
        cases.append(_close("connect-password-without-user", 1, no_user, v, False))
    return cases


def _publish_cases(rng: random.Random, v: int) -> list[FuzzCase]:
    props = mq.properties() if v == mq.V5 else b""
    payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
    topic = rng.choice(("home/livingroom/temperature", "home/kitchen/door", "fz/t"))
    qos3 = mq.packet(mq.PUBLISH, 0x06, mq.utf8(topic) + b"\x00\x01" + props + payload)
    wild = mq.publish(rng.choice(("home/#", "home/+/door", "#")), payload, version=v)
    utf8 = mq.packet(mq.PUBLISH, 0, mq.utf8(b"home/\xc0\xaf" + bytes((rng.randint(0x80, 0xff),)))
                     + props + payload)
    zero_id = mq.publish(topic, payload, qos=1, msgid=0, version=v)
    overrun = mq.packet(mq.PUBLISH, 0, _U16.pack(len(topic) + rng.randint(20, 900))
                        + topic.encode() + props + payload)
    junk = mq.publish(topic, bytes(rng.getrandbits(8) for _ in range(rng.randint(200, 1200))),
                      version=v)
    cases = [
        _close("publish-qos-3", 3, qos3, v, v5_reason=MALFORMED),
        _close("publish-wildcard-topic", 3, wild, v, v5_reason=PROTOCOL),
        _close("publish-topic-utf8", 3, utf8, v, v5_reason=MALFORMED),
        _close("publish-zero-packet-id", 3, zero_id, v, v5_reason=PROTOCOL),
        _close("publish-topic-overrun", 3, overrun, v, v5_reason=MALFORMED),
        FuzzCase("publish-binary-payload", 3, junk, v, True, closes=False),
    ]
    if v == mq.V311:
        cases.append(_close("publish-empty-topic", 3, mq.packet(mq.PUBLISH, 0, b"\x00\x00"
                                                                + payload), v))
    return cases


def _ack_cases(rng: random.Random, v: int) -> list[FuzzCase]:
    mid = rng.randint(1, 65535)
    raw = _U16.pack(mid)
    return [
        FuzzCase("puback-length", 4, mq.packet(mq.PUBACK, 0, raw + b"\x00\x00\x00"), v, True,
                 closes=False),
        FuzzCase("puback-flags", 4, mq.packet(mq.PUBACK, rng.randint(1, 15), raw), v, True,
                 closes=False),
        FuzzCase("pubrec-flags", 5, mq.packet(mq.PUBREC, rng.randint(1, 15), raw), v, True,
                 mq.ack(mq.PUBREL, mid), closes=False),
        _close("pubrel-flags", 6, mq.packet(mq.PUBREL, 0, raw), v),
        _close("pubcomp-missing-id", 7, mq.packet(mq.PUBCOMP, 0, b""), v),
    ]


def _subscribe_cases(rng: random.Random, v: int) -> list[FuzzCase]:
    props = mq.properties() if v == mq.V5 else b""
    mid = _U16.pack(rng.randint(1, 65535))
    filt = mq.utf8(rng.choice(("home/#", "$SYS/#", "#", "home/+/smoke")))
    bad_filter = mq.utf8(b"home/\xed\xa0\x80")
    return [
        _close("subscribe-flags", 8, mq.packet(mq.SUBSCRIBE, 0, mid + props + filt + b"\x00"),
               v, v5_reason=MALFORMED),
        _close("subscribe-no-filter", 8, mq.packet(mq.SUBSCRIBE, 2, mid + props), v,
               v5_reason=MALFORMED),
        _close("subscribe-qos-3", 8, mq.packet(mq.SUBSCRIBE, 2, mid + props + filt + b"\x03"),
               v, v5_reason=MALFORMED),
        _close("subscribe-filter-utf8", 8,
               mq.packet(mq.SUBSCRIBE, 2, mid + props + bad_filter + b"\x00"), v,
               v5_reason=MALFORMED),
        _close("unsubscribe-flags", 10, mq.packet(mq.UNSUBSCRIBE, 0, mid + props + filt), v,
               v5_reason=MALFORMED),
        _close("unsubscribe-no-filter", 10, mq.packet(mq.UNSUBSCRIBE, 2, mid + props), v,
               v5_reason=MALFORMED),
    ]


def _misc_cases(rng: random.Random, v: int) -> list[FuzzCase]:
    mid = _U16.pack(rng.randint(1, 65535))
    v311 = v == mq.V311
    cases = [
        _close("connack-from-client", 2, mq.connack(version=v), v),
        FuzzCase("suback-from-client", 9, mq.packet(mq.SUBACK, 0, mid + b"\x00"), v, True,
                 closes=not v311),
        FuzzCase("unsuback-from-client", 11, mq.packet(mq.UNSUBACK, 0, mid), v, True,
                 closes=not v311),
        FuzzCase("pingreq-length", 12, mq.packet(mq.PINGREQ, 0, bytes((rng.getrandbits(8),))),
                 v, True, mq.pingresp(), closes=False),
        FuzzCase("pingresp-from-client", 13, mq.pingresp(), v, True, closes=False),
        _close("disconnect-flags", 14, mq.packet(mq.DISCONNECT, rng.randint(1, 15), b""), v),
        _close("reserved-type-0", 0, mq.packet(0, 0, bytes(rng.getrandbits(8)
                                                            for _ in range(rng.randint(0, 8)))),
               v, v5_reason=PROTOCOL),
        FuzzCase("remaining-length-overflow", 3,
                 bytes((0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01)) + b"\x00\x01x", v, True,
                 resets=True),
    ]
    if v311:
        cases += [
            _close("disconnect-body", 14, mq.packet(mq.DISCONNECT, 0, b"\x00"), v),
            _close("auth-in-v311", 15, mq.packet(mq.AUTH, 0, b"\x00\x00"), v),
        ]
    else:
        cases.append(_close("auth-without-method", 15, mq.packet(mq.AUTH, 0, b"\x18\x00"), v))
    return cases


_FAMILIES: tuple[Callable[[random.Random, int], list[FuzzCase]], ...] = (
    _connect_cases, _publish_cases, _ack_cases, _subscribe_cases, _misc_cases)


def all_cases(rng: random.Random, version: int) -> list[FuzzCase]:
    """One instance of every case for ``version`` (4 or 5)."""
    return [case for family in _FAMILIES for case in family(rng, version)]


def bit_flip(rng: random.Random, data: bytes, flips: int = 2) -> bytes:
    """``data`` with a few random bits flipped (the fixed header's first byte kept)."""
    raw = bytearray(data)
    for _ in range(flips):
        at = rng.randrange(1, len(raw)) if len(raw) > 1 else 0
        raw[at] ^= 1 << rng.randrange(8)
    return bytes(raw)


def draw(rng: random.Random) -> FuzzCase:
    """A random case: a family, then a case in it; one in eight is a bit-flipped PUBLISH.

    A flipped PUBLISH has no fixed reaction (the flip may land in the payload);
    the synthetic broker treats it as a protocol error and closes.
    """
    version = mq.V5 if rng.random() < 0.3 else mq.V311
    if rng.random() < 0.125:
        base = mq.publish("home/" + rng.choice(("kitchen/door", "livingroom/light")),
                          b"%d" % rng.randint(0, 999), qos=1, msgid=rng.randint(1, 65535),
                          version=version)
        return _close("publish-bit-flip", 3, bit_flip(rng, base), version)
    family = rng.choice(_FAMILIES)
    return rng.choice(family(rng, version))
