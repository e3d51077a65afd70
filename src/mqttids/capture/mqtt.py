"""MQTT 3.1, 3.1.1 and 5.0 control packets -> the 30 MQTT fields of MQTTset.

The decoder follows Wireshark's MQTT dissector (Wireshark 4.0) field by field,
so that a row equals what ``tshark -T fields`` prints: fields are read in the
dissector's order, and the first read that would run past the end of the
message stops decoding and flags the message as malformed, keeping the fields
read so far, exactly as Wireshark's "Malformed Packet" does. Nothing here
raises on hostile bytes.

A message is given whole (the TCP layer reassembles it). The result is a list
of 30 values in schema order (``mqttids.schema.FEATURES[3:]``), ``None`` where
Wireshark shows no field.
"""

from __future__ import annotations

from mqttids.schema import FEATURE_NAMES

MQTT_FIELDS = FEATURE_NAMES[3:]
_I = {name: i for i, name in enumerate(MQTT_FIELDS)}
CONACK_FLAGS = _I["mqtt.conack.flags"]
CONACK_RESERVED = _I["mqtt.conack.flags.reserved"]
CONACK_SP = _I["mqtt.conack.flags.sp"]
CONACK_VAL = _I["mqtt.conack.val"]
CF_CLEANSESS = _I["mqtt.conflag.cleansess"]
CF_PASSWD = _I["mqtt.conflag.passwd"]
CF_QOS = _I["mqtt.conflag.qos"]
CF_RESERVED = _I["mqtt.conflag.reserved"]
CF_RETAIN = _I["mqtt.conflag.retain"]
CF_UNAME = _I["mqtt.conflag.uname"]
CF_WILLFLAG = _I["mqtt.conflag.willflag"]
CONFLAGS = _I["mqtt.conflags"]
DUPFLAG = _I["mqtt.dupflag"]
HDRFLAGS = _I["mqtt.hdrflags"]
KALIVE = _I["mqtt.kalive"]
LEN = _I["mqtt.len"]
MSG = _I["mqtt.msg"]
MSGID = _I["mqtt.msgid"]
MSGTYPE = _I["mqtt.msgtype"]
PROTO_LEN = _I["mqtt.proto_len"]
PROTONAME = _I["mqtt.protoname"]
QOS = _I["mqtt.qos"]
RETAIN = _I["mqtt.retain"]
SUB_QOS = _I["mqtt.sub.qos"]
SUBACK_QOS = _I["mqtt.suback.qos"]
VER = _I["mqtt.ver"]
WILLMSG = _I["mqtt.willmsg"]
WILLMSG_LEN = _I["mqtt.willmsg_len"]
WILLTOPIC = _I["mqtt.willtopic"]
WILLTOPIC_LEN = _I["mqtt.willtopic_len"]
N_FIELDS = len(MQTT_FIELDS)

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)
V31, V311, V5 = 3, 4, 5
_INT64 = 1 << 63

# v5 property identifiers by the size of their value (Wireshark's grouping).
_PROP_ONE = frozenset((0x01, 0x17, 0x19, 0x25, 0x28, 0x29, 0x2A, 0x24))
_PROP_TWO = frozenset((0x23, 0x13, 0x21, 0x22))
_PROP_FOUR = frozenset((0x02, 0x11, 0x18, 0x27))
_PROP_STRING = frozenset((0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F))
_PROP_PAIR = 0x26
_PROP_VARINT = 0x0B


class Malformed(Exception):
    """Internal: a read ran past the end of the message (Wireshark's bounds error)."""


class Message:
    """One decoded MQTT control packet."""

    __slots__ = ("fields", "msgtype", "malformed", "client_id", "version")

    def __init__(self, fields: list, msgtype: int, malformed: bool,
                 client_id: str | None, version: int):
        self.fields = fields
        self.msgtype = msgtype
        self.malformed = malformed
        self.client_id = client_id
        self.version = version


def read_varint(data: bytes, pos: int, end: int, max_bytes: int = 10) -> tuple[int, int]:
    """(value, bytes used) of a base-128 integer; bytes used is 0 when it is unfinished."""
    value = 0
    shift = 0
    i = pos
    while i < end and i - pos < max_bytes:
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i - pos
        shift += 7
    return value, 0


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def decode_message(pdu: bytes, hdr_len: int, length: int, version: int) -> Message:
    """Decode one whole MQTT message.

    ``hdr_len`` is the size of the fixed header (type byte plus the remaining
    length), ``length`` the remaining length, ``version`` the protocol level of
    the connection so far (0 when no CONNECT was seen). A CONNECT's version is
    returned in ``Message.version`` for the caller to keep.
    """
    v = [None] * N_FIELDS
    b0 = pdu[0]
    mtype = b0 >> 4
    v[HDRFLAGS] = b0
    v[MSGTYPE] = mtype
    if mtype == PUBLISH or (version == V31 and mtype in (PUBREL, SUBSCRIBE, UNSUBSCRIBE)):
        v[DUPFLAG] = (b0 >> 3) & 1
        v[QOS] = (b0 >> 1) & 3
        if mtype == PUBLISH:
            v[RETAIN] = b0 & 1
    v[LEN] = length if length < _INT64 else _INT64 - 1  # a 10-byte length can pass int64
    msg = Message(v, mtype, False, None, version)
    try:
        _BODY[mtype](pdu, hdr_len, len(pdu), length, b0, msg)
    except Malformed:
        msg.malformed = True
    return msg


def _need(pos: int, n: int, end: int) -> None:
    if pos + n > end:
        raise Malformed


def _u16(data: bytes, pos: int, end: int) -> int:
    if pos + 2 > end:
        raise Malformed
    return (data[pos] << 8) | data[pos + 1]


def _u8(data: bytes, pos: int, end: int) -> int:
    if pos >= end:
        raise Malformed
    return data[pos]


def _properties(data: bytes, pos: int, end: int) -> int:
    """Skip a v5 property block, checking every read; returns its size."""
    plen, used = read_varint(data, pos, end)
    if used == 0:
        raise Malformed
    block_end = pos + used + plen
    _need(pos, used + plen, end)
    p = pos + used
    while p < block_end:
        pid = data[p]
        p += 1
        if pid in _PROP_ONE:
            _need(p, 1, end)
            p += 1
        elif pid in _PROP_TWO:
            _need(p, 2, end)
            p += 2
        elif pid in _PROP_FOUR:
            _need(p, 4, end)
            p += 4
        elif pid == _PROP_VARINT:
            _value, n = read_varint(data, p, end)
            if n == 0:
                raise Malformed
            p += n
        elif pid in _PROP_STRING:
            p += 2 + _u16(data, p, end)
            _need(p, 0, end)
        elif pid == _PROP_PAIR:
            p += 2 + _u16(data, p, end)
            p += 2 + _u16(data, p, end)
            _need(p, 0, end)
        else:
            p = block_end
    return used + plen


def _connect(data, pos, end, length, b0, msg):
    v = msg.fields
    n = _u16(data, pos, end)
    v[PROTO_LEN] = n
    pos += 2
    _need(pos, n, end)
    v[PROTONAME] = _text(data[pos:pos + n])
    pos += n
    version = _u8(data, pos, end)
    msg.version = version
    v[VER] = version
    pos += 1
    flags = _u8(data, pos, end)
    v[CONFLAGS] = flags
    v[CF_UNAME] = flags >> 7
    v[CF_PASSWD] = (flags >> 6) & 1
    v[CF_RETAIN] = (flags >> 5) & 1
    v[CF_QOS] = (flags >> 3) & 3
    v[CF_WILLFLAG] = (flags >> 2) & 1
    v[CF_CLEANSESS] = (flags >> 1) & 1
    v[CF_RESERVED] = flags & 1
    pos += 1
    v[KALIVE] = _u16(data, pos, end)
    pos += 2
    if version == V5:
        pos += _properties(data, pos, end)
    n = _u16(data, pos, end)
    pos += 2
    _need(pos, n, end)
    msg.client_id = _text(data[pos:pos + n])
    pos += n
    if flags & 0x04:
        if version == V5:
            pos += _properties(data, pos, end)
        n = _u16(data, pos, end)
        v[WILLTOPIC_LEN] = n
        pos += 2
        if n > 0:
            _need(pos, n, end)
            v[WILLTOPIC] = _text(data[pos:pos + n])
            pos += n
        n = _u16(data, pos, end)
        v[WILLMSG_LEN] = n
        pos += 2
        _need(pos, n, end)
        v[WILLMSG] = data[pos:pos + n].hex()
        pos += n
    if flags & 0x80 and pos < end:
        n = _u16(data, pos, end)
        pos += 2
        _need(pos, n, end)
        pos += n
    if flags & 0x40 and pos < end:
        n = _u16(data, pos, end)
        _need(pos + 2, n, end)


def _connack(data, pos, end, length, b0, msg):
    v = msg.fields
    version = msg.version
    flags = _u8(data, pos, end)
    if version == V31:
        v[CONACK_RESERVED] = 1 if flags else 0
    else:
        v[CONACK_FLAGS] = flags
        v[CONACK_RESERVED] = 1 if flags & 0xFE else 0
        v[CONACK_SP] = flags & 1
    pos += 1
    code = _u8(data, pos, end)
    if version in (V31, V311):
        v[CONACK_VAL] = code
    pos += 1
    if version == V5:
        _properties(data, pos, end)


def _publish(data, pos, end, length, b0, msg):
    v = msg.fields
    n = _u16(data, pos, end)
    pos += 2
    if n > 0:
        _need(pos, n, end)
        pos += n
    if b0 & 0x06:
        v[MSGID] = _u16(data, pos, end)
        pos += 2
    if msg.version == V5:
        pos += _properties(data, pos, end)
    v[MSG] = data[pos:end].hex()


def _subscribe(data, pos, end, length, b0, msg):
    v = msg.fields
    v[MSGID] = _u16(data, pos, end)
    pos += 2
    version = msg.version
    if version == V5:
        pos += _properties(data, pos, end)
    while pos < end:
        n = _u16(data, pos, end)
        pos += 2
        if n > 0:
            _need(pos, n, end)
            pos += n
        qos = _u8(data, pos, end)
        if version != V5 and v[SUB_QOS] is None:
            v[SUB_QOS] = qos
        pos += 1


def _unsubscribe(data, pos, end, length, b0, msg):
    msg.fields[MSGID] = _u16(data, pos, end)
    pos += 2
    if msg.version == V5:
        pos += _properties(data, pos, end)
    while pos < end:
        n = _u16(data, pos, end)
        pos += 2
        if n > 0:
            _need(pos, n, end)
            pos += n


def _suback(data, pos, end, length, b0, msg):
    v = msg.fields
    v[MSGID] = _u16(data, pos, end)
    pos += 2
    version = msg.version
    if version == V5:
        pos += _properties(data, pos, end)
    if pos < end and version in (V31, V311):
        v[SUBACK_QOS] = data[pos]


def _puback(data, pos, end, length, b0, msg):
    msg.fields[MSGID] = _u16(data, pos, end)
    pos += 2
    if msg.version == V5 and length > 2:
        _u8(data, pos, end)
        pos += 1
        if length > 3:
            _properties(data, pos, end)


def _unsuback(data, pos, end, length, b0, msg):
    msg.fields[MSGID] = _u16(data, pos, end)
    pos += 2
    if msg.version == V5:
        _properties(data, pos, end)


def _disconnect(data, pos, end, length, b0, msg):
    if msg.version == V5 and length > 0:
        _u8(data, pos, end)
        pos += 1
        if length >= 2:
            _properties(data, pos, end)


def _nothing(data, pos, end, length, b0, msg):
    return None


_BODY = [_nothing, _connect, _connack, _publish, _puback, _puback, _puback, _puback,
         _subscribe, _suback, _unsubscribe, _unsuback, _nothing, _nothing, _disconnect,
         _disconnect]
