"""What a stored row may hold, declared once as data.

The same table drives both sides: the loader checks every row against it and
turns a violation into a reject with a reason, and the PostgreSQL DDL turns it
into CHECK constraints, so that a row written by anything else (psql, Spark's
JDBC writer, a future bug) cannot break the rules either. Because the loader
checks first, a CHECK never fires during a normal load: a COPY that failed on
one row would otherwise lose the whole batch.

Bounds come from the width of each field on the wire, not from what is usual,
so that malformed traffic (the very thing an IDS must keep) still fits: a
one-bit flag is 0 or 1, a one-byte field 0..255, a two-byte field 0..65535.

Only the rules whose breach would change what a query means (labels, splits,
lengths and counts that cannot be negative, a finite time delta, ports, frame
numbers) become CHECKs in the table; the bit-width limits of flags are the
loader's alone. PostgreSQL spends about 25 ns per comparison per row, and all
eighty comparisons cost some 2 microseconds a row: a third of the load rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from mqttids import schema


@dataclass(frozen=True)
class Bounds:
    """Inclusive limits of a numeric column and the reason for them."""

    low: float | None
    high: float | None
    why: str
    in_table: bool = False  # also a CHECK constraint in PostgreSQL

    def describe(self) -> str:
        if self.high is None:
            return f">= {_num(self.low)}"
        return f"{_num(self.low)}..{_num(self.high)}"


def _num(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


_BIT = Bounds(0, 1, "a one-bit flag is 0 or 1")
_QOS = Bounds(0, 3, "a two-bit QoS field")
_BYTE = Bounds(0, 255, "a one-byte field")
_U16 = Bounds(0, 65535, "a two-byte field")
_LEN = Bounds(0, None, "a length or count cannot be negative", in_table=True)
_U16_LEN = Bounds(0, 65535, "a two-byte length cannot be negative")
_PORT = Bounds(0, 65535, "a TCP port", in_table=True)

BOUNDS: dict[str, Bounds] = {
    "tcp.flags": Bounds(0, 4095, "the twelve TCP control bits"),
    "tcp.time_delta": Bounds(0, None, "time between segments cannot be negative",
                             in_table=True),
    "tcp.len": _LEN,
    "mqtt.conack.flags": _BYTE,
    "mqtt.conack.flags.reserved": _BYTE,
    "mqtt.conack.flags.sp": _BIT,
    "mqtt.conack.val": _BYTE,
    "mqtt.conflag.cleansess": _BIT,
    "mqtt.conflag.passwd": _BIT,
    "mqtt.conflag.qos": _QOS,
    "mqtt.conflag.reserved": _BIT,
    "mqtt.conflag.retain": _BIT,
    "mqtt.conflag.uname": _BIT,
    "mqtt.conflag.willflag": _BIT,
    "mqtt.conflags": _BYTE,
    "mqtt.dupflag": _BIT,
    "mqtt.hdrflags": _BYTE,
    "mqtt.kalive": _U16,
    # Not MQTT's 268,435,455: a malformed packet's remaining length is whatever
    # its (up to ten) length bytes say, as Wireshark decodes them, and such rows
    # are the evidence of the malformed class.
    "mqtt.len": Bounds(0, None, "a length cannot be negative"),
    # (In the table, the lengths below are checked as non-negative only.)
    "mqtt.msgid": _U16,
    "mqtt.msgtype": Bounds(0, 15, "the four-bit control packet type"),
    "mqtt.proto_len": _U16_LEN,
    "mqtt.qos": _QOS,
    "mqtt.retain": _BIT,
    "mqtt.sub.qos": _QOS,
    "mqtt.suback.qos": _BYTE,
    "mqtt.ver": _BYTE,
    "mqtt.willmsg_len": _U16_LEN,
    "mqtt.willtopic_len": _U16_LEN,
    "frame": Bounds(1, None, "frame numbers start at 1", in_table=True),
    "msg_index": _LEN,
    "sport": _PORT,
    "dport": _PORT,
    "ctx.flow_packets": _LEN,
    "ctx.flow_msgs": _LEN,
    "ctx.flow_connects": _LEN,
    "ctx.flow_bytes": _LEN,
    "ctx.client_connects": _LEN,
    "ctx.packet_msgs": _LEN,
    "ctx.to_broker": _BIT,
    "ctx.malformed": _BIT,
}

# Values of these two columns come from fixed sets; NULL means unknown.
ALLOWED_TEXT: dict[str, tuple[str, ...]] = {"target": schema.LABELS, "split": schema.SPLITS}

# The literal "0" is how MQTTset wrote an absent value. In these text and byte
# columns it cannot be a real value (hex bytes come in pairs; no protocol is
# named "0"; a will topic of "0" is legal but never seen), so it becomes NULL.
# Numeric columns keep 0: there it is also a real value, and the file cannot
# say which zeros meant "absent".
MQTTSET_ZERO_IS_NULL: tuple[str, ...] = tuple(
    f.name for f in schema.FEATURES if f.kind in (schema.TEXT, schema.BYTES_HEX))


# Lengths with a wire-format upper limit: the table only refuses negative values.
TABLE_NON_NEGATIVE: tuple[str, ...] = ("mqtt.len", "mqtt.proto_len", "mqtt.willmsg_len",
                                       "mqtt.willtopic_len")


def float_must_be_finite(name: str) -> bool:
    """NaN and infinities are refused in every float column: no feature can be either."""
    return schema.BY_NAME[name].kind == schema.FLOAT


def check_sql(name: str) -> list[tuple[str, str]]:
    """(constraint name, CHECK expression) pairs for one schema column."""
    col = schema.storage_name(name)
    checks: list[tuple[str, str]] = []
    bounds = BOUNDS.get(name)
    if bounds is not None and bounds.in_table:
        parts = [f"{col} >= {_num(bounds.low)}"]
        if bounds.high is not None:
            parts.append(f"{col} <= {_num(bounds.high)}")
        if float_must_be_finite(name):
            parts.append(f"{col} < 'Infinity'")  # NaN sorts above it, so NaN is refused too
        checks.append((f"{col}_range", " AND ".join(parts)))
        return checks
    if bounds is not None and name in TABLE_NON_NEGATIVE:
        checks.append((f"{col}_not_negative", f"{col} >= 0"))
    if float_must_be_finite(name):
        # NaN sorts above every number in PostgreSQL: this refuses NaN and both infinities.
        checks.append((f"{col}_finite", f"{col} > '-Infinity' AND {col} < 'Infinity'"))
    if name in ALLOWED_TEXT:
        values = ", ".join(f"'{v}'" for v in ALLOWED_TEXT[name])
        checks.append((f"{col}_known", f"{col} IN ({values})"))
    return checks
