"""MQTTset CSV reading: every spelling of the published files, and every kind of bad row."""

from __future__ import annotations

import io
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqttids import schema
from mqttids.warehouse.csvrows import MqttsetCsvReader
from mqttids.warehouse.errors import SourceFormatError
from mqttids.warehouse.rows import SourceContext

HEADER = ",".join(schema.MQTTSET_COLUMNS)


def mqttset_row(flags="0x00000018", delta="0.000302", tcp_len="14", hdrflags="0x00000010",
                msg="0", protoname="MQTT", target="legitimate", msgtype="1") -> str:
    """A CONNECT row as MQTTset wrote it: 8-digit hex, 0 for absent fields."""
    values = dict.fromkeys(schema.MQTTSET_COLUMNS, "0")
    values.update({
        "tcp.flags": flags, "tcp.time_delta": delta, "tcp.len": tcp_len,
        "mqtt.conack.flags": "0x00000000", "mqtt.conflags": "0x00000002",
        "mqtt.conflag.cleansess": "1", "mqtt.hdrflags": hdrflags, "mqtt.kalive": "60",
        "mqtt.len": "12", "mqtt.msg": msg, "mqtt.msgtype": msgtype, "mqtt.proto_len": "4",
        "mqtt.protoname": protoname, "mqtt.ver": "4", "target": target,
    })
    return ",".join(values[c] for c in schema.MQTTSET_COLUMNS)


def read(text: str | bytes, split="train", label=None, block_bytes=1 << 20, header=HEADER):
    data = text if isinstance(text, bytes) else text.encode()
    if header is not None:
        data = header.encode() + b"\n" + data
    reader = MqttsetCsvReader(io.BytesIO(data), SourceContext(split, label, "x.csv"), "x.csv",
                              block_bytes=block_bytes)
    tables, rejects = [], []
    for chunk in reader.chunks():
        tables.append(chunk.table)
        rejects.extend(chunk.rejects)
    rows = [r for t in tables for r in t.to_pylist()]
    return rows, rejects


def test_a_published_row_is_read_with_hex_as_integers_and_absent_text_as_null():
    rows, rejects = read(mqttset_row() + "\n")
    assert rejects == []
    (row,) = rows
    assert row["tcp_flags"] == 0x18
    assert row["mqtt_hdrflags"] == 0x10
    assert row["mqtt_conflags"] == 2
    assert row["mqtt_protoname"] == "MQTT"
    assert row["mqtt_msg"] is None  # MQTTset's 0 for an absent payload
    assert row["mqtt_willtopic"] is None
    assert row["mqtt_qos"] == 0  # a numeric 0 stays 0
    assert row["tcp_time_delta"] == pytest.approx(0.000302)
    assert (row["target"], row["split"], row["source"]) == ("legitimate", "train", "x.csv")


@pytest.mark.parametrize("spelling", ["0x00000018", "0x0018", "0x18", "0X18", "24"])
def test_hex_flags_of_any_width_or_decimal_give_the_same_integer(spelling):
    rows, rejects = read(mqttset_row(flags=spelling) + "\n")
    assert rejects == [] and rows[0]["tcp_flags"] == 24


def test_plain_zero_in_a_hex_column_is_zero():
    rows, _ = read(mqttset_row(flags="0") + "\n")
    assert rows[0]["tcp_flags"] == 0


def test_header_with_underscores_and_any_column_order():
    cols = list(reversed(schema.MQTTSET_COLUMNS))
    values = dict(zip(schema.MQTTSET_COLUMNS, mqttset_row().split(",")))
    header = ",".join(schema.storage_name(c) for c in cols)
    rows, rejects = read(",".join(values[c] for c in cols) + "\n", header=header)
    assert rejects == [] and rows[0]["tcp_flags"] == 24 and rows[0]["target"] == "legitimate"


def test_payload_hex_is_normalised_to_lower_case_without_colons():
    rows, rejects = read(mqttset_row(msg="31:32:AB", msgtype="3") + "\n")
    assert rejects == [] and rows[0]["mqtt_msg"] == "3132ab"


def test_quoted_rows_as_tshark_writes_them_are_read():
    line = ",".join(f'"{v}"' for v in mqttset_row().split(","))
    rows, rejects = read(line + "\n")
    assert rejects == [] and rows[0]["tcp_flags"] == 24


def test_crlf_blank_lines_and_a_missing_final_newline():
    text = mqttset_row() + "\r\n\r\n" + mqttset_row(target="dos") + "\r\n\n" + mqttset_row()
    rows, rejects = read(text)
    assert rejects == [] and [r["target"] for r in rows] == ["legitimate", "dos", "legitimate"]


BAD_ROWS = [
    (mqttset_row(tcp_len="abc"), "tcp.len: not an integer"),
    (mqttset_row(tcp_len="-5"), "tcp.len: -5 is outside >= 0"),
    (mqttset_row(flags="0xZZ"), "tcp.flags: not a hex"),
    (mqttset_row(flags="0x10000"), "tcp.flags: 65536 is outside 0..4095"),
    (mqttset_row(delta="nan"), "tcp.time_delta: nan is not a finite number"),
    (mqttset_row(delta="soon"), "tcp.time_delta: not a number"),
    (mqttset_row(msgtype="99"), "mqtt.msgtype: 99 is outside 0..15"),
    (mqttset_row(target="attack"), "target: unknown value 'attack'"),
    (mqttset_row(msg="xyz", msgtype="3"), "mqtt.msg: not hex bytes"),
    (mqttset_row(tcp_len="99999999999"), "tcp.len: 99999999999 is out of range"),
    (mqttset_row() + ",extra", "expected 34 fields, found 35"),
    (",".join(mqttset_row().split(",")[:-1]), "expected 34 fields, found 33"),
    ('"0x00000018,' + mqttset_row().split(",", 1)[1], "broken quoting"),
    (mqttset_row().replace("MQTT", 'MQ"TT'), "broken quoting"),
]


@pytest.mark.parametrize("bad, reason", BAD_ROWS, ids=[r for _, r in BAD_ROWS])
def test_a_bad_row_is_rejected_with_line_reason_and_raw_text(bad, reason):
    text = "\n".join([mqttset_row(), bad, mqttset_row()]) + "\n"
    rows, rejects = read(text)
    assert len(rows) == 2
    (reject,) = rejects
    assert reject.line == 3  # the header is line 1
    assert reason in reject.reason
    assert reject.raw == bad


def test_bad_encoding_and_nul_bytes_are_rejected_alone():
    good = mqttset_row().encode()
    bad_utf8 = good.replace(b"MQTT", b"MQ\xffT")
    with_nul = good.replace(b"MQTT", b"MQ\x00T")
    rows, rejects = read(b"\n".join([good, bad_utf8, good, with_nul, good]) + b"\n")
    assert len(rows) == 3
    assert [(r.line, r.reason.split(":")[0]) for r in rejects] == [
        (3, "not valid UTF-8"), (5, "holds a NUL byte")]
    assert "\\xff" in rejects[0].raw and "\\x00" in rejects[1].raw


def test_a_label_that_contradicts_the_given_label_is_rejected_not_relabelled():
    text = mqttset_row(target="dos") + "\n" + mqttset_row(target="") + "\n"
    rows, rejects = read(text, label="flood")
    assert [r["target"] for r in rows] == ["flood"]
    assert rejects[0].line == 2 and "contradicts" in rejects[0].reason


def test_labels_in_another_case_are_accepted():
    rows, rejects = read(mqttset_row(target=" DoS") + "\n")
    assert rejects == [] and rows[0]["target"] == "dos"


def test_line_numbers_stay_exact_across_blocks_and_slow_blocks():
    lines = [mqttset_row() for _ in range(300)]
    lines[10] = mqttset_row(tcp_len="x")
    lines[150] = ""  # blank: not a row
    lines[151] = '"' + mqttset_row()  # broken quoting: forces the careful path
    lines[299] = mqttset_row(target="nope")
    rows, rejects = read("\n".join(lines) + "\n", block_bytes=2048)
    assert [r.line for r in rejects] == [12, 153, 301]
    assert len(rows) == 296


def test_a_line_longer_than_a_block_is_rejected_and_reading_goes_on():
    text = mqttset_row() + "\n" + "9" * 5000 + "\n" + mqttset_row() + "\n"
    rows, rejects = read(text, block_bytes=1024)
    assert len(rows) == 2
    assert rejects[0].line == 3 and "longer than" in rejects[0].reason


@pytest.mark.parametrize("header, message", [
    ("tcp.flags,bogus", "unknown column(s) 'bogus'"),
    ("tcp.flags,target", "lacks 32 of the 33"),
    (HEADER + ",tcp_flags", "appear twice"),
])
def test_a_header_that_is_not_mqttset_stops_the_source(header, message):
    with pytest.raises(SourceFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read("", header=header)


def test_an_empty_file_is_an_error_that_says_so():
    with pytest.raises(SourceFormatError, match="empty"):
        read(b"", header=None)


def test_the_fast_and_the_careful_path_read_the_same_values():
    rows = [mqttset_row(flags=f, delta=d, target=t, msg=m, msgtype="3")
            for f, d, t, m in [("0x00000018", "0.5", "dos", "3132"),
                               ("0x0010", "1e-5", "flood", "0"), ("0", "0", "slowite", "aa")]]
    fast, _ = read("\n".join(rows) + "\n")
    careful, _ = read("\n".join(rows) + "\n" + '"' + rows[0] + "\n")  # one broken line
    assert careful == fast


# A bad value for every kind of column, and where it must be refused.
_BAD_VALUES = {"tcp.flags": "0xG1", "tcp.len": "1.5", "tcp.time_delta": "-1",
               "mqtt.qos": "7", "mqtt.msg": "abc", "target": "worm"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["good", "blank", "short", *_BAD_VALUES]), max_size=60),
       st.sampled_from([256, 4096, 1 << 20]))
def test_every_line_is_loaded_or_rejected_exactly_once(kinds, block_bytes):
    lines, expected_bad = [], []
    for i, kind in enumerate(kinds):
        values = dict(zip(schema.MQTTSET_COLUMNS, mqttset_row(msgtype="3").split(",")))
        if kind in _BAD_VALUES:
            values[kind] = _BAD_VALUES[kind]
        line = ",".join(values[c] for c in schema.MQTTSET_COLUMNS)
        if kind == "blank":
            line = ""
        elif kind == "short":
            line = line.rsplit(",", 1)[0]
        if kind not in ("good", "blank"):
            expected_bad.append(i + 2)
        lines.append(line)
    rows, rejects = read("\n".join(lines) + "\n", block_bytes=block_bytes)
    assert [r.line for r in rejects] == expected_bad
    assert len(rows) + len(rejects) == sum(k != "blank" for k in kinds)
    assert all(not math.isnan(r["tcp_time_delta"]) for r in rows)
