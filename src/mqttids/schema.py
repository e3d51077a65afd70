"""The one feature schema of mqttids.

Every stage (decoder, warehouse, Spark, models, detector, report) takes its
column names, order, types and descriptions from here. The 33 feature columns
keep the Wireshark display-filter names that MQTTset uses, in MQTTset's order.

Three groups follow the features:

- labels: ``target`` (one of :data:`LABELS` or NULL) and ``split``;
- provenance (never features): where a row came from;
- context (``ctx.`` prefix): counts computed from what came before in the same
  TCP connection and from the same client. The packet model uses the 33
  features; the flow-aware model adds the context columns.

Storage (PostgreSQL, Parquet warehouse, Spark) uses names without dots, made by
:func:`storage_name`; :func:`field_name` maps them back.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

LABELS: tuple[str, ...] = ("legitimate", "dos", "flood", "malformed", "slowite", "bruteforce")
SPLITS: tuple[str, ...] = ("train", "test")

# Column kinds: how a value is typed and how it is read from text.
INT = "int"  # decimal integer
HEX = "hex"  # integer that Wireshark prints in hex (0x0018, 0x00000018)
FLOAT = "float"
TEXT = "text"
BYTES_HEX = "bytes_hex"  # raw bytes, written as lower-case hex digits
BOOL = "bool"
TIMESTAMP = "timestamp"

FEATURE = "feature"
LABEL = "label"
PROVENANCE = "provenance"
CONTEXT = "context"


@dataclass(frozen=True)
class Field:
    """One column: its Wireshark name, type, group, title and meaning."""

    name: str
    kind: str
    group: str
    title: str
    meaning: str
    wide: bool = False  # needs 64 bits (counts of bytes, frame numbers)

    @property
    def storage(self) -> str:
        return storage_name(self.name)

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.kind](self.wide)

    @property
    def sql_type(self) -> str:
        return _SQL_TYPES[self.kind](self.wide)


_ARROW_TYPES = {
    INT: lambda wide: pa.int64() if wide else pa.int32(),
    HEX: lambda wide: pa.int64() if wide else pa.int32(),
    FLOAT: lambda wide: pa.float64(),
    TEXT: lambda wide: pa.string(),
    BYTES_HEX: lambda wide: pa.string(),
    BOOL: lambda wide: pa.bool_(),
    TIMESTAMP: lambda wide: pa.timestamp("us", tz="UTC"),
}

_SQL_TYPES = {
    INT: lambda wide: "bigint" if wide else "integer",
    HEX: lambda wide: "bigint" if wide else "integer",
    FLOAT: lambda wide: "double precision",
    TEXT: lambda wide: "text",
    BYTES_HEX: lambda wide: "text",
    BOOL: lambda wide: "boolean",
    TIMESTAMP: lambda wide: "timestamptz",
}


def _f(name: str, kind: str, title: str, meaning: str) -> Field:
    return Field(name, kind, FEATURE, title, meaning)


FEATURES: tuple[Field, ...] = (
    _f("tcp.flags", HEX, "Flags",
       "TCP control bits of the segment (0x18 = PSH+ACK, 0x19 adds FIN)"),
    _f("tcp.time_delta", FLOAT, "Time since previous frame in this TCP stream",
       "Seconds since the previous segment of the same connection, either direction"),
    _f("tcp.len", INT, "TCP Segment Len", "Bytes of TCP payload in the segment"),
    _f("mqtt.conack.flags", HEX, "Acknowledge Flags",
       "CONNACK flags byte (v3.1.1 and v5)"),
    _f("mqtt.conack.flags.reserved", INT, "Reserved",
       "CONNACK reserved bits; must be 0, so 1 is a protocol violation"),
    _f("mqtt.conack.flags.sp", INT, "Session Present",
       "1 when the broker kept a session for this client id"),
    _f("mqtt.conack.val", INT, "Return Code",
       "CONNACK return code (v3.x): 0 accepted, 4 bad credentials, 5 not authorised"),
    _f("mqtt.conflag.cleansess", INT, "Clean Session Flag",
       "1 when the client asks the broker to drop any earlier session"),
    _f("mqtt.conflag.passwd", INT, "Password Flag", "1 when the CONNECT carries a password"),
    _f("mqtt.conflag.qos", INT, "QoS Level", "QoS of the will message in a CONNECT"),
    _f("mqtt.conflag.reserved", INT, "(Reserved)",
       "CONNECT reserved flag; must be 0, so 1 is a protocol violation"),
    _f("mqtt.conflag.retain", INT, "Will Retain", "1 when the will message is to be retained"),
    _f("mqtt.conflag.uname", INT, "User Name Flag", "1 when the CONNECT carries a user name"),
    _f("mqtt.conflag.willflag", INT, "Will Flag",
       "1 when the CONNECT registers a last-will message"),
    _f("mqtt.conflags", HEX, "Connect Flags", "The whole CONNECT flags byte"),
    _f("mqtt.dupflag", INT, "DUP Flag",
       "1 when a PUBLISH is a re-delivery of an earlier attempt"),
    _f("mqtt.hdrflags", HEX, "Header Flags",
       "First byte of the fixed header: message type and its flags"),
    _f("mqtt.kalive", INT, "Keep Alive",
       "Seconds the client may stay silent; SlowITe uses the largest, 65535"),
    Field("mqtt.len", INT, FEATURE, "Msg Len", "Remaining length of the MQTT message",
          wide=True),
    _f("mqtt.msg", BYTES_HEX, "Message", "PUBLISH payload, as hex bytes"),
    _f("mqtt.msgid", INT, "Message Identifier",
       "Packet identifier of QoS 1/2 PUBLISH, acks and (un)subscriptions"),
    _f("mqtt.msgtype", INT, "Message Type",
       "Control packet type: 1 CONNECT, 2 CONNACK, 3 PUBLISH ... 12/13 PING, 14 DISCONNECT"),
    _f("mqtt.proto_len", INT, "Protocol Name Length", "Length of the protocol name"),
    _f("mqtt.protoname", TEXT, "Protocol Name", "MQTT (3.1.1, 5) or MQIsdp (3.1)"),
    _f("mqtt.qos", INT, "QoS Level", "Delivery guarantee of a PUBLISH: 0, 1 or 2"),
    _f("mqtt.retain", INT, "Retain",
       "1 when the broker is to keep the PUBLISH for new subscribers"),
    _f("mqtt.sub.qos", INT, "Requested QoS", "QoS a SUBSCRIBE asks for (v3.x)"),
    _f("mqtt.suback.qos", INT, "Granted QoS", "QoS the broker grants in a SUBACK (v3.x)"),
    _f("mqtt.ver", INT, "Version", "Protocol level in CONNECT: 3 = 3.1, 4 = 3.1.1, 5 = 5.0"),
    _f("mqtt.willmsg", BYTES_HEX, "Will Message", "Last-will payload, as hex bytes"),
    _f("mqtt.willmsg_len", INT, "Will Message Length", "Length of the last-will payload"),
    _f("mqtt.willtopic", TEXT, "Will Topic", "Topic the last-will message goes to"),
    _f("mqtt.willtopic_len", INT, "Will Topic Length", "Length of the will topic"),
)

LABEL_FIELDS: tuple[Field, ...] = (
    Field("target", TEXT, LABEL, "Label", "Traffic class: " + ", ".join(LABELS)),
    Field("split", TEXT, LABEL, "Split", "train or test"),
)

PROVENANCE_FIELDS: tuple[Field, ...] = (
    Field("source", TEXT, PROVENANCE, "Source", "File the row was read from"),
    Field("frame", INT, PROVENANCE, "Frame", "Frame number in the capture (1-based)", wide=True),
    Field("msg_index", INT, PROVENANCE, "Message index",
          "Position of the MQTT message in its packet (0 in packet rows)"),
    Field("ts", TIMESTAMP, PROVENANCE, "Time", "Capture time of the frame, UTC"),
    Field("flow", TEXT, PROVENANCE, "Flow", "Stable id of the TCP connection"),
    Field("src", TEXT, PROVENANCE, "Source address", "IP source address"),
    Field("dst", TEXT, PROVENANCE, "Destination address", "IP destination address"),
    Field("sport", INT, PROVENANCE, "Source port", "TCP source port"),
    Field("dport", INT, PROVENANCE, "Destination port", "TCP destination port"),
    Field("malformed", BOOL, PROVENANCE, "Malformed",
          "Wireshark would flag an MQTT message of this row as a Malformed Packet"),
    Field("client_id", TEXT, PROVENANCE, "Client ID",
          "Client identifier of the connection's CONNECT, when seen"),
)

CONTEXT_FIELDS: tuple[Field, ...] = (
    Field("ctx.flow_packets", INT, CONTEXT, "Packets in connection",
          "TCP segments so far in this connection, both directions, this one included"),
    Field("ctx.flow_msgs", INT, CONTEXT, "Messages in connection",
          "MQTT messages so far in this connection, this packet's included"),
    Field("ctx.flow_connects", INT, CONTEXT, "CONNECTs in connection",
          "CONNECT messages so far in this connection (more than 1 is suspicious)"),
    Field("ctx.flow_bytes", INT, CONTEXT, "Bytes in connection",
          "TCP payload bytes so far in this connection", wide=True),
    Field("ctx.client_connects", INT, CONTEXT, "CONNECTs from client",
          "CONNECT messages so far from the same client address, all connections"),
    Field("ctx.packet_msgs", INT, CONTEXT, "Messages in packet",
          "MQTT messages that this packet completes (floods pack many into one)"),
    Field("ctx.to_broker", INT, CONTEXT, "To broker",
          "1 when the packet goes to the MQTT port, 0 when it comes from it"),
    Field("ctx.malformed", INT, CONTEXT, "Malformed",
          "1 when a message of this packet is malformed as Wireshark judges it"),
)

ALL_FIELDS: tuple[Field, ...] = FEATURES + LABEL_FIELDS + PROVENANCE_FIELDS + CONTEXT_FIELDS

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
CONTEXT_NAMES: tuple[str, ...] = tuple(f.name for f in CONTEXT_FIELDS)
PROVENANCE_NAMES: tuple[str, ...] = tuple(f.name for f in PROVENANCE_FIELDS)
COLUMN_NAMES: tuple[str, ...] = tuple(f.name for f in ALL_FIELDS)
MQTTSET_COLUMNS: tuple[str, ...] = FEATURE_NAMES + ("target",)

BY_NAME: dict[str, Field] = {f.name: f for f in ALL_FIELDS}

# Names map one-to-one: dots become underscores. Because some Wireshark names
# already hold underscores (mqtt.proto_len), the reverse map is a lookup, not
# a string replace.
_TO_STORAGE: dict[str, str] = {f.name: f.name.replace(".", "_") for f in ALL_FIELDS}
_FROM_STORAGE: dict[str, str] = {v: k for k, v in _TO_STORAGE.items()}
assert len(_FROM_STORAGE) == len(_TO_STORAGE), "storage names must be unique"


class UnknownColumnError(KeyError):
    """A column name is not part of the mqttids schema."""

    def __str__(self) -> str:
        return (f"unknown column {self.args[0]!r}: it is not in the mqttids schema; "
                "see `mqttids.schema.COLUMN_NAMES` for the columns there are")


def storage_name(name: str) -> str:
    """The warehouse/Spark name of a schema column: ``tcp.flags`` -> ``tcp_flags``."""
    try:
        return _TO_STORAGE[name]
    except KeyError:
        raise UnknownColumnError(name) from None


def field_name(storage: str) -> str:
    """The Wireshark name of a warehouse column: ``mqtt_proto_len`` -> ``mqtt.proto_len``.

    Names already in Wireshark form are returned unchanged.
    """
    if storage in _FROM_STORAGE:
        return _FROM_STORAGE[storage]
    if storage in _TO_STORAGE:
        return storage
    raise UnknownColumnError(storage)


def arrow_schema(names: tuple[str, ...] = COLUMN_NAMES, storage: bool = False) -> pa.Schema:
    """An Arrow schema for ``names``, with Wireshark names or storage names."""
    return pa.schema([
        pa.field(storage_name(n) if storage else n, BY_NAME[n].arrow_type, nullable=True)
        for n in names
    ])


def feature_columns(features: str = "packet", time_delta: bool = True) -> tuple[str, ...]:
    """The model input columns of a feature set: ``packet`` (33) or ``flow`` (33 + ctx)."""
    if features not in ("packet", "flow"):
        raise ValueError(f"unknown feature set {features!r}: use 'packet' or 'flow'")
    cols = FEATURE_NAMES + (CONTEXT_NAMES if features == "flow" else ())
    if not time_delta:
        cols = tuple(c for c in cols if c != "tcp.time_delta")
    return cols
