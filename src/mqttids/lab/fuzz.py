"""Malformed MQTT: broken packets of every control type, as a fuzzer sends them.

Each case names the rule it breaks, so a test (or a reader of the pcap) can
tell what a packet was meant to be. The synthetic writer and the live
recorder draw from the same cases; the recorder lets the real broker react,
the writer plays the reaction given in ``verdict``:

- ``close``: the broker drops the connection (a protocol error or a
  malformed packet; an MQTT 5 client first gets DISCONNECT 0x81 or 0x82);
- ``refuse``: the broker answers CONNACK with an error code, then closes;
- ``accept``: the packet is odd but the broker carries on.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

from mqttids.lab import codec as mq

_U16 = struct.Struct(">H")


@dataclass(frozen=True)
class FuzzCase:
    """One malformed packet and what a broker does with it."""

    name: str
    ptype: int  # the control type the packet claims (0 and 15 included)
    data: bytes
    version: int
    connect_first: bool  # a valid CONNECT/CONNACK comes before it
    verdict: str  # close | refuse | accept
    reason: int = mq.RC_PROTOCOL_ERROR_V5  # what an MQTT 5 broker says when it closes


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
        FuzzCase("connect-reserved-flag", 1, bytes(reserved), v, False, "close",
                 mq.RC_MALFORMED_V5),
        FuzzCase("connect-will-qos-3", 1, bytes(will_qos3), v, False, "close",
                 mq.RC_MALFORMED_V5),
        FuzzCase("connect-protocol-level", 1, bytes(bad_level), v, False, "refuse"),
        FuzzCase("connect-protocol-name", 1, bytes(bad_name), v, False, "close"),
        FuzzCase("connect-client-id-overrun", 1, bytes(overrun), v, False, "close",
                 mq.RC_MALFORMED_V5),
        FuzzCase("connect-client-id-utf8", 1, bad_utf8, v, False, "close", mq.RC_MALFORMED_V5),
    ]
    if v == mq.V311:
        no_user = bytearray(mq.connect(cid, version=v, password="x" * rng.randint(1, 12)))
        cases.append(FuzzCase("connect-password-without-user", 1, bytes(no_user), v, False,
                              "close"))
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
    body = mq.utf8(topic)
    overrun = mq.packet(mq.PUBLISH, 0, _U16.pack(len(topic) + rng.randint(20, 900))
                        + body[2:] + props + payload)
    junk = mq.publish(topic, bytes(rng.getrandbits(8) for _ in range(rng.randint(200, 1200))),
                      version=v)
    cases = [
        FuzzCase("publish-qos-3", 3, qos3, v, True, "close", mq.RC_MALFORMED_V5),
        FuzzCase("publish-wildcard-topic", 3, wild, v, True, "close"),
        FuzzCase("publish-topic-utf8", 3, utf8, v, True, "close", mq.RC_MALFORMED_V5),
        FuzzCase("publish-zero-packet-id", 3, zero_id, v, True, "close"),
        FuzzCase("publish-topic-overrun", 3, overrun, v, True, "close", mq.RC_MALFORMED_V5),
        FuzzCase("publish-binary-payload", 3, junk, v, True, "accept"),
    ]
    if v == mq.V311:
        cases.append(FuzzCase("publish-empty-topic", 3, mq.packet(mq.PUBLISH, 0, b"\x00\x00"
                                                                  + payload), v, True, "close"))
    return cases


def _ack_cases(rng: random.Random, v: int) -> list[FuzzCase]:
    mid = _U16.pack(rng.randint(1, 65535))
    return [
        FuzzCase("puback-length", 4, mq.packet(mq.PUBACK, 0, mid + b"\x00\x00\x00"), v, True,
                 "close" if v == mq.V311 else "accept", mq.RC_MALFORMED_V5),
        FuzzCase("puback-flags", 4, mq.packet(mq.PUBACK, rng.randint(1, 15), mid), v, True,
                 "close", mq.RC_MALFORMED_V5),
        FuzzCase("pubrec-flags", 5, mq.packet(mq.PUBREC, rng.randint(1, 15), mid), v, True,
                 "close", mq.RC_MALFORMED_V5),
        FuzzCase("pubrel-flags", 6, mq.packet(mq.PUBREL, 0, mid), v, True, "close",
                 mq.RC_MALFORMED_V5),
        FuzzCase("pubcomp-missing-id", 7, mq.packet(mq.PUBCOMP, 0, b""), v, True, "close",
                 mq.RC_MALFORMED_V5),
    ]


def _subscribe_cases(rng: random.Random, v: int) -> list[FuzzCase]:
    props = mq.properties() if v == mq.V5 else b""
    mid = _U16.pack(rng.randint(1, 65535))
    filt = mq.utf8(rng.choice(("home/#", "$SYS/#", "#", "home/+/smoke")))
    return [
        FuzzCase("subscribe-flags", 8, mq.packet(mq.SUBSCRIBE, 0, mid + props + filt + b"\x00"),
                 v, True, "close", mq.RC_MALFORMED_V5),
        FuzzCase("subscribe-no-filter", 8, mq.packet(mq.SUBSCRIBE, 2, mid + props), v, True,
                 "close"),
        FuzzCase("subscribe-qos-3", 8, mq.packet(mq.SUBSCRIBE, 2, mid + props + filt + b"\x03"),
                 v, True, "close", mq.RC_MALFORMED_V5),
        FuzzCase("subscribe-filter-utf8", 8,
                 mq.packet(mq.SUBSCRIBE, 2, mid + props + mq.utf8(b"home/\xed\xa0\x80") + b"\x00"),
                 v, True, "close", mq.RC_MALFORMED_V5),
        FuzzCase("unsubscribe-flags", 10, mq.packet(mq.UNSUBSCRIBE, 0, mid + props + filt), v,
                 True, "close", mq.RC_MALFORMED_V5),
        FuzzCase("unsubscribe-no-filter", 10, mq.packet(mq.UNSUBSCRIBE, 2, mid + props), v,
                 True, "close"),
    ]


def _misc_cases(rng: random.Random, v: int) -> list[FuzzCase]:
    mid = _U16.pack(rng.randint(1, 65535))
    cases = [
        FuzzCase("connack-from-client", 2, mq.connack(version=v) if v == mq.V311
                 else mq.packet(mq.CONNACK, 0, b"\x00\x00\x00"), v, True, "close"),
        FuzzCase("suback-from-client", 9, mq.packet(mq.SUBACK, 0, mid + b"\x00"), v, True,
                 "close"),
        FuzzCase("unsuback-from-client", 11, mq.packet(mq.UNSUBACK, 0, mid), v, True, "close"),
        FuzzCase("pingreq-length", 12, mq.packet(mq.PINGREQ, 0, bytes((rng.getrandbits(8),))), v,
                 True, "close", mq.RC_MALFORMED_V5),
        FuzzCase("pingresp-from-client", 13, mq.pingresp(), v, True, "close"),
        FuzzCase("disconnect-flags", 14, mq.packet(mq.DISCONNECT, rng.randint(1, 15), b""), v,
                 True, "close", mq.RC_MALFORMED_V5),
        FuzzCase("reserved-type-0", 0, mq.packet(0, 0, bytes(rng.getrandbits(8)
                                                             for _ in range(rng.randint(0, 8)))),
                 v, True, "close", mq.RC_MALFORMED_V5),
        FuzzCase("remaining-length-overflow", 3,
                 bytes((0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01)) + b"\x00\x01x", v, True, "close",
                 mq.RC_MALFORMED_V5),
    ]
    if v == mq.V311:
        cases += [
            FuzzCase("disconnect-body", 14, mq.packet(mq.DISCONNECT, 0, b"\x00"), v, True,
                     "close"),
            FuzzCase("auth-in-v311", 15, mq.packet(mq.AUTH, 0, b"\x00\x00"), v, True, "close"),
        ]
    else:
        cases.append(FuzzCase("auth-without-method", 15, mq.packet(mq.AUTH, 0, b"\x18\x00"), v,
                              True, "close"))
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
    """A random case: a family, then a case in it; one in eight is a bit-flipped packet."""
    version = mq.V5 if rng.random() < 0.3 else mq.V311
    if rng.random() < 0.125:
        base = mq.publish("home/" + rng.choice(("kitchen/door", "livingroom/light")),
                          b"%d" % rng.randint(0, 999), qos=1, msgid=rng.randint(1, 65535),
                          version=version)
        return FuzzCase("publish-bit-flip", 3, bit_flip(rng, base), version, True, "close",
                        mq.RC_MALFORMED_V5)
    family = rng.choice(_FAMILIES)
    return rng.choice(family(rng, version))
