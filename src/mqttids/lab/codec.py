"""MQTT control packets as bytes, MQTT 3.1.1 (level 4) and 5.0 (level 5).

The lab builds its traffic from these encoders: the synthetic writer puts the
bytes into TCP segments of a pcap, the live recorder's attack drivers send
them to a real broker. Keeping one encoder for both is what makes a recorded
and a synthetic PUBLISH of the same topic byte-for-byte alike.

Only valid packets are made here; :mod:`mqttids.lab.fuzz` breaks them on purpose.
"""

from __future__ import annotations

import struct

V311 = 4
V5 = 5

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = (
    8, 9, 10, 11, 12, 13, 14)
AUTH = 15

# CONNACK return codes (3.1.1) and reason codes (5.0) the lab uses.
ACCEPTED = 0x00
RC_NOT_AUTHORISED_V311 = 0x05
RC_BAD_CREDENTIALS_V5 = 0x86
RC_NOT_AUTHORISED_V5 = 0x87
RC_MALFORMED_V5 = 0x81
RC_PROTOCOL_ERROR_V5 = 0x82

# MQTT 5 property identifiers used by the lab.
PROP_SESSION_EXPIRY = 0x11
PROP_RECEIVE_MAXIMUM = 0x21
PROP_TOPIC_ALIAS_MAXIMUM = 0x22
PROP_CONTENT_TYPE = 0x03
PROP_MESSAGE_EXPIRY = 0x02

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def varint(n: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property lengths)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"remaining length {n} is outside 0..268435455")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def utf8(text: str | bytes) -> bytes:
    """A length-prefixed UTF-8 string (or binary data) field."""
    raw = text.encode() if isinstance(text, str) else text
    return _U16.pack(len(raw)) + raw


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    """Fixed header (type, flags, remaining length) followed by ``body``."""
    return bytes((ptype << 4 | flags,)) + varint(len(body)) + body


def properties(props: tuple[tuple[int, int | str | bytes], ...] = ()) -> bytes:
    """An MQTT 5 property block: its length, then each identifier and value."""
    raw = bytearray()
    for ident, value in props:
        raw.append(ident)
        if ident in (PROP_RECEIVE_MAXIMUM, PROP_TOPIC_ALIAS_MAXIMUM):
            raw += _U16.pack(int(value))
        elif ident in (PROP_SESSION_EXPIRY, PROP_MESSAGE_EXPIRY):
            raw += _U32.pack(int(value))
        elif ident == PROP_CONTENT_TYPE:
            raw += utf8(value)  # type: ignore[arg-type]
        else:
            raise ValueError(f"property 0x{ident:02x} is not one the lab encodes")
    return varint(len(raw)) + bytes(raw)


def connect(client_id: str, *, version: int = V311, keepalive: int = 60, clean: bool = True,
            username: str | None = None, password: str | bytes | None = None,
            will: tuple[str, bytes, int, bool] | None = None,
            props: tuple = (), will_props: tuple = ()) -> bytes:
    """A CONNECT; ``will`` is (topic, payload, qos, retain)."""
    flags = 0x02 if clean else 0
    if will is not None:
        _topic, _payload, wqos, wretain = will
        flags |= 0x04 | (wqos << 3) | (0x20 if wretain else 0)
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    body = bytearray(utf8("MQTT"))
    body += bytes((version, flags)) + _U16.pack(keepalive)
    if version == V5:
        body += properties(props)
    body += utf8(client_id)
    if will is not None:
        if version == V5:
            body += properties(will_props)
        body += utf8(will[0]) + utf8(will[1])
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += utf8(password)
    return packet(CONNECT, 0, bytes(body))


def connack(code: int = ACCEPTED, *, session_present: bool = False, version: int = V311,
            props: tuple = ()) -> bytes:
    body = bytes((1 if session_present else 0, code))
    if version == V5:
        body += properties(props)
    return packet(CONNACK, 0, body)


def publish(topic: str, payload: bytes, *, qos: int = 0, retain: bool = False,
            dup: bool = False, msgid: int = 0, version: int = V311,
            props: tuple = ()) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    body = bytearray(utf8(topic))
    if qos:
        body += _U16.pack(msgid)
    if version == V5:
        body += properties(props)
    body += payload
    return packet(PUBLISH, flags, bytes(body))


def ack(ptype: int, msgid: int, *, version: int = V311, reason: int = 0) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP (PUBREL carries flags 0b0010)."""
    flags = 0x02 if ptype == PUBREL else 0
    body = _U16.pack(msgid)
    if version == V5 and reason:
        body += bytes((reason,))
    return packet(ptype, flags, body)


def subscribe(msgid: int, filters: tuple[tuple[str, int], ...], *,
              version: int = V311) -> bytes:
    body = bytearray(_U16.pack(msgid))
    if version == V5:
        body += properties()
    for topic, qos in filters:
        body += utf8(topic) + bytes((qos,))
    return packet(SUBSCRIBE, 0x02, bytes(body))


def suback(msgid: int, codes: tuple[int, ...], *, version: int = V311) -> bytes:
    body = _U16.pack(msgid) + (properties() if version == V5 else b"") + bytes(codes)
    return packet(SUBACK, 0, body)


def unsubscribe(msgid: int, filters: tuple[str, ...], *, version: int = V311) -> bytes:
    body = bytearray(_U16.pack(msgid))
    if version == V5:
        body += properties()
    for topic in filters:
        body += utf8(topic)
    return packet(UNSUBSCRIBE, 0x02, bytes(body))


def unsuback(msgid: int, count: int = 1, *, version: int = V311) -> bytes:
    body = _U16.pack(msgid)
    if version == V5:
        body += properties() + bytes(count)
    return packet(UNSUBACK, 0, body)


def pingreq() -> bytes:
    return b"\xc0\x00"


def pingresp() -> bytes:
    return b"\xd0\x00"


def disconnect(*, version: int = V311, reason: int = 0) -> bytes:
    """DISCONNECT; in MQTT 5 with a reason code (properties omitted, as brokers do)."""
    if version == V5 and reason:
        return packet(DISCONNECT, 0, bytes((reason,)))
    return b"\xe0\x00"


def msgtype(first_byte: int) -> int:
    """The control packet type in a fixed header's first byte."""
    return first_byte >> 4
