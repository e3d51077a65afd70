"""The C decoder gives exactly what the Python reference gives.

Same record batches (values, nulls, batch boundaries), same statistics and the
same warnings, on the MQTTset captures, on crafted edge cases and on random
and mutated captures; and a stream read in small pieces gives what the whole
file gives.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcapbuild as pb
from mqttids.capture import ExtractStats, NotACaptureError, extract, iter_row_batches

try:
    from mqttids.capture import _cdecoder  # noqa: F401
except ImportError:
    pytest.skip("the C decoder is not built (pip install -e . with a C compiler)",
                allow_module_level=True)

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@contextlib.contextmanager
def decoder(pure: bool):
    """Pick the Python (pure) or the C decoder through the documented switch."""
    old = os.environ.get("MQTTIDS_PURE_PYTHON")
    os.environ["MQTTIDS_PURE_PYTHON"] = "1" if pure else "0"
    try:
        assert extract.use_cdecoder() is not pure
        yield
    finally:
        if old is None:
            del os.environ["MQTTIDS_PURE_PYTHON"]
        else:
            os.environ["MQTTIDS_PURE_PYTHON"] = old


def run(source, pure: bool, **kw):
    """(batches, statistics) of one decoder, or the NotACaptureError message."""
    stats = ExtractStats()
    with decoder(pure):
        try:
            batches = list(iter_row_batches(source, stats=stats, **kw))
        except NotACaptureError as e:
            return str(e)
    return batches, (stats.packets, stats.rows, stats.malformed, stats.messages,
                     stats.warnings)


def first_difference(a: list[pa.RecordBatch], b: list[pa.RecordBatch]) -> str:
    if [x.num_rows for x in a] != [x.num_rows for x in b]:
        return f"batch sizes {[x.num_rows for x in a]} != {[x.num_rows for x in b]}"
    for i, (x, y) in enumerate(zip(a, b)):
        for name in x.schema.names:
            p, c = x.column(name).to_pylist(), y.column(name).to_pylist()
            for row, (u, v) in enumerate(zip(p, c)):
                if u != v:
                    return f"batch {i} row {row} column {name}: python {u!r} != C {v!r}"
            if not x.column(name).equals(y.column(name)):
                return f"batch {i} column {name}: same values, different arrays"
    return "schemas differ"


def assert_same(py, c) -> None:
    if isinstance(py, str) or isinstance(c, str):
        assert py == c
        return
    (pb_, ps), (cb, cs) = py, c
    same = len(pb_) == len(cb) and all(x.equals(y) for x, y in zip(pb_, cb))
    assert same, first_difference(pb_, cb)
    assert ps == cs


def assert_decoders_agree(data: bytes, **kw) -> None:
    assert_same(run(io.BytesIO(data), True, **kw), run(io.BytesIO(data), False, **kw))


class Trickle(io.RawIOBase):
    """A stream whose reads return at most ``step`` bytes, like a slow pipe."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step, self.pos = data, step, 0

    def readable(self) -> bool:
        return True

    def read(self, n=-1) -> bytes:
        n = self.step if n is None or n < 0 else min(n, self.step)
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


# ----------------------------------------------------------------- builders

def block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack(e + "II", btype, len(body) + 12) + body + struct.pack(e + "I",
                                                                            len(body) + 12)


def shb(e: str) -> bytes:
    return block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(e: str, linktype: int, tsresol: int | None = None, tsoffset: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += struct.pack(e + "HH", 9, 1) + bytes([tsresol]) + b"\x00\x00\x00"
    if tsoffset is not None:
        opts += struct.pack(e + "HHq", 14, 8, tsoffset)
    if opts:
        opts += struct.pack(e + "HH", 0, 0)
    return block(e, 1, struct.pack(e + "HHI", linktype, 0, 262144) + opts)


def epb(e: str, iface: int, ticks: int, data: bytes) -> bytes:
    return block(e, 6, struct.pack(e + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF,
                                   len(data), len(data)) + data)


def opb(e: str, iface: int, ticks: int, data: bytes) -> bytes:
    return block(e, 2, struct.pack(e + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF,
                                   len(data), len(data)) + data)


def spb(e: str, data: bytes) -> bytes:
    return block(e, 3, struct.pack(e + "I", len(data)) + data)


def rich_pcapng() -> bytes:
    """Two sections of each byte order, several interfaces, every packet block kind."""
    packets = pb.session(4).packets
    v5 = pb.session(5, cport=40100).packets
    out = [shb("<"), idb("<", 1), idb("<", 113, tsresol=9), idb("<", 101, tsresol=0x80 | 20,
                                                                tsoffset=1_600_000_000)]
    for i, (t, ip) in enumerate(packets):
        iface = i % 3
        lt = (1, 113, 101)[iface]
        ticks = [round(t * 1e6), round(t * 1e9), round(t * (1 << 20))][iface]
        out.append(epb("<", iface, ticks, pb.link(lt, ip)) if i % 5 else
                   opb("<", iface, ticks, pb.link(lt, ip)))
    out += [shb(">"), idb(">", 228, tsresol=3, tsoffset=-5)]
    for i, (t, ip) in enumerate(v5):
        out.append(spb(">", ip) if i % 4 == 0 else epb(">", 0, round(t * 1e3), ip))
    return b"".join(out)


RICH_PCAPNG = rich_pcapng()
SESSIONS = {v: pb.pcap_bytes(pb.session(v).packets) for v in (3, 4, 5)}


def conversation(version: int, payloads: list[tuple[bool, bytes]]) -> pb.Conversation:
    c = pb.Conversation().handshake()
    c.send(True, pb.connect(version=version))
    c.send(False, pb.connack(version=version))
    for from_client, payload in payloads:
        c.send(from_client, payload)
    return c


# ----------------------------------------------------- the MQTTset captures

def dataset_captures(root) -> list:
    return sorted(p for p in root.rglob("*") if p.suffix in (".pcap", ".pcapng"))


@pytest.mark.dataset
@pytest.mark.slow
@pytest.mark.parametrize("per_message", [False, True])
def test_every_dataset_capture_gives_the_same_batches(dataset_dir, per_message):
    captures = dataset_captures(dataset_dir)
    assert captures
    for path in captures:
        py, c = run(path, True, per_message=per_message), run(path, False, per_message=per_message)
        assert py[1][1] > 0, path  # every capture carries MQTT rows
        assert_same(py, c)


@pytest.mark.dataset
def test_small_batches_break_at_the_same_frames(dataset_dir):
    path = dataset_dir / "malariados" / "malariados-test.pcap"
    assert_same(run(path, True, batch_rows=97), run(path, False, batch_rows=97))
    assert_same(run(path, True, batch_rows=1, per_message=True),
                run(path, False, batch_rows=1, per_message=True))


@pytest.mark.dataset
@pytest.mark.parametrize("step", [1, 333, 70_000])
def test_a_trickling_stream_gives_what_the_whole_file_gives(dataset_dir, step):
    path = dataset_dir / "flood" / "flood-test.pcap"  # messages span segments
    data = path.read_bytes()
    whole = run(io.BytesIO(data), False)
    trickled = run(Trickle(data, step), False)
    assert_same(whole, trickled)
    assert_same(run(Trickle(data, step), True), trickled)


@pytest.mark.dataset
def test_stdin_gives_what_the_file_gives(dataset_dir, tmp_path):
    path = dataset_dir / "bruteforce" / "bruteforce-test.pcapng"
    cli = [sys.executable, "-c", "import sys; from mqttids.cli import main; sys.exit(main())",
           "--quiet", "extract"]
    env = {k: v for k, v in os.environ.items() if k != "MQTTIDS_PURE_PYTHON"}
    with open(path, "rb") as f:
        subprocess.run(cli + ["-", "-o", str(tmp_path / "stdin.parquet")], stdin=f, check=True,
                       env=env, timeout=120)
    subprocess.run(cli + [str(path), "-o", str(tmp_path / "file.parquet")], check=True,
                   env=env, timeout=120)
    a = pq.read_table(tmp_path / "stdin.parquet").drop_columns(["source"])
    b = pq.read_table(tmp_path / "file.parquet").drop_columns(["source"])
    assert a.num_rows == 764 and a.equals(b)


# ------------------------------------------------------------ crafted cases

def test_the_c_decoder_is_built_for_this_schema():
    assert extract._CDECODER is not None  # else a schema change needs a rebuild
    with decoder(pure=False):
        assert extract.use_cdecoder()


@pytest.mark.parametrize("version", [3, 4, 5])
@pytest.mark.parametrize("big_endian,nano,linktype", [(False, False, 1), (True, True, 113),
                                                      (False, True, 276), (True, False, 0)])
def test_sessions_in_every_pcap_form_agree(version, big_endian, nano, linktype):
    packets = pb.session(version, v6=linktype == 276, client="fd00::2" if linktype == 276
                         else "10.0.0.2", broker="fd00::1" if linktype == 276
                         else "10.0.0.1").packets
    data = pb.pcap_bytes(packets, big_endian=big_endian, nano=nano, linktype=linktype,
                         vlan=linktype == 1)
    assert_decoders_agree(data)
    assert_decoders_agree(data, per_message=True, label="dos", ports=(1883, 8883))


def test_pcapng_sections_interfaces_and_block_kinds_agree():
    assert_decoders_agree(RICH_PCAPNG)
    assert_decoders_agree(RICH_PCAPNG, per_message=True)
    batches, stats = run(io.BytesIO(RICH_PCAPNG), False)
    table = pa.Table.from_batches(batches)
    assert stats[1] == table.num_rows == 32 and not stats[4]
    assert 0 in [t.timestamp() for t in table.column("ts").to_pylist()]  # SPBs have no time


def test_reused_endpoints_start_a_new_generation_of_the_flow():
    first = pb.session(4)
    second = pb.session(4, t=first.t + 1, cseq=90_000, bseq=70_000)
    data = pb.pcap_bytes(first.packets + second.packets)
    assert_decoders_agree(data)
    flows = set(pa.Table.from_batches(run(io.BytesIO(data), False)[0]).column("flow").to_pylist())
    assert len(flows) == 2 and any(f.endswith(".1") for f in flows)


def test_a_connection_to_itself_agrees():
    c = pb.Conversation(client="10.0.0.1", cport=1883)
    c.handshake()
    c.send(True, pb.connect())
    c.send(False, pb.connack())
    assert_decoders_agree(pb.pcap_bytes(c.packets))


def test_texts_with_invalid_utf8_are_replaced_alike():
    odd = [b"\xff\xfe", b"caf\xc3\xa9", b"\xed\xa0\x80x", b"\xf0\x9f\x98", b"a\xc0\xafb", b""]
    c = pb.Conversation().handshake()
    for i, raw in enumerate(odd):
        c.send(True, pb.connect(client=raw, will=(raw or b"t", raw, 1, False)))
        body = pb.s16(raw) + bytes([4, 0]) + b"\x00\x3c" + pb.s16(raw)
        c.send(True, pb.mqtt(0x10, body))
    data = pb.pcap_bytes(c.packets)
    assert_decoders_agree(data)
    assert_decoders_agree(data, per_message=True)


def test_per_message_rows_carry_the_client_id_after_the_whole_packet():
    c = pb.Conversation().handshake()
    c.send(True, pb.publish("early", b"1") + pb.connect(client="late") + pb.PINGREQ)
    assert_decoders_agree(pb.pcap_bytes(c.packets), per_message=True)


@pytest.mark.parametrize("tsoffset,tsresol,ticks", [(None, 0, (1 << 64) - 1),
                                                     (-(1 << 63), None, 5_000_000)])
def test_time_stamps_past_the_timestamp_range_agree(tsoffset, tsresol, ticks):
    c = conversation(4, [(True, pb.publish("t", b"x"))])
    frames = [epb("<", 0, ticks - i, pb.link(1, ip)) for i, (_, ip) in enumerate(c.packets)]
    data = shb("<") + idb("<", 1, tsresol=tsresol, tsoffset=tsoffset) + b"".join(frames)
    assert_decoders_agree(data)
    ts = pa.Table.from_batches(run(io.BytesIO(data), False)[0]).column("ts")
    assert ts.null_count == ts.length() > 0


@pytest.mark.parametrize("data", [b"", b"\x1f\x8b\x08\x00rest", b"hello, world\n" * 5,
                                  b"\xd4\xc3\xb2", b"PAR1" + bytes(100)])
def test_non_captures_get_the_same_error(data):
    py, c = run(io.BytesIO(data), True), run(io.BytesIO(data), False)
    assert isinstance(py, str) and py == c


@pytest.mark.parametrize("data", [
    SESSIONS[4][:-7], SESSIONS[4][:20], SESSIONS[4][:24],
    SESSIONS[4][:24] + struct.pack("<IIII", 0, 0, 1 << 25, 0) + bytes(40),
    RICH_PCAPNG[:-3], RICH_PCAPNG[:11],
    RICH_PCAPNG[:8] + b"\x00\x00\x00\x00" + RICH_PCAPNG[12:],
    RICH_PCAPNG[:4] + b"\x0d\x00\x00\x00" + RICH_PCAPNG[8:],
    shb("<") + struct.pack("<III", 6, 12, 12),
    shb("<") + idb("<", 1) + struct.pack("<III", 6, 24, 9) + bytes(8) + struct.pack("<I", 24),
], ids=["cut-frame", "cut-header", "header-only", "huge-frame", "cut-block", "cut-shb",
        "bad-bom", "odd-length", "short-epb", "epb-bad-iface"])
def test_truncated_and_corrupt_captures_warn_alike(data):
    py = run(io.BytesIO(data), True)
    assert_same(py, run(io.BytesIO(data), False))
    header_only = data == SESSIONS[4][:24]  # a capture with no frames: nothing to warn of
    assert bool(py[1][4]) is not header_only


def test_unsupported_link_types_are_reported_once_alike(caplog):
    data = pb.pcap_bytes(pb.session(4).packets[:3], linktype=1)
    data = data[:20] + struct.pack("<I", 147) + data[24:]
    assert_decoders_agree(data)
    messages = []
    for pure in (True, False):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mqttids.capture"):
            run(io.BytesIO(data), pure)
        messages.append([(r.name, r.getMessage()) for r in caplog.records])
    assert messages[0] == messages[1]
    assert [m for _, m in messages[0]] == ["-: link type 147 is not supported; its frames are "
                                           "skipped"]


# ------------------------------------------------------ property-based

@FUZZ
@given(st.sampled_from((3, 4, 5)),
       st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), min_size=1,
                max_size=24),
       st.integers(0, 10 ** 6), st.booleans())
def test_mutated_pcap_captures_agree(version, mutations, cut, per_message):
    data = bytearray(SESSIONS[version])
    for pos, value in mutations:
        data[pos % len(data)] = value
    assert_decoders_agree(bytes(data[:cut]), per_message=per_message, batch_rows=3)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), min_size=1,
                max_size=24),
       st.integers(0, 10 ** 6), st.booleans())
def test_mutated_pcapng_captures_agree(mutations, cut, per_message):
    data = bytearray(RICH_PCAPNG)
    for pos, value in mutations:
        data[pos % len(data)] = value
    assert_decoders_agree(bytes(data[:cut]), per_message=per_message, batch_rows=5)


@FUZZ
@given(st.binary(max_size=3000), st.sampled_from((1, 0, 113, 101)))
def test_random_bytes_after_a_pcap_header_agree(tail, linktype):
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    assert_decoders_agree(header + tail)


mqtt_first_bytes = st.one_of(st.integers(0, 255), st.sampled_from(
    (0x10, 0x20, 0x30, 0x32, 0x34, 0x3B, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0,
     0xC0, 0xD0, 0xE0, 0xF0)))


@FUZZ
@given(st.sampled_from((0, 3, 4, 5)),
       st.lists(st.tuples(st.booleans(), mqtt_first_bytes, st.binary(max_size=80),
                          st.booleans()), max_size=12),
       st.booleans())
def test_random_mqtt_messages_inside_valid_tcp_agree(version, messages, per_message):
    c = pb.Conversation().handshake()
    if version:
        c.send(True, pb.connect(version=version, client="fz"))
    burst = b""
    for from_client, first, body, flush in messages:
        burst += pb.mqtt(first, body)
        if flush:
            c.send(from_client, burst)
            burst = b""
    if burst:
        c.send(True, burst)
    assert_decoders_agree(pb.pcap_bytes(c.packets), per_message=per_message)


@FUZZ
@given(st.sampled_from((3, 4, 5)), st.data())
def test_segments_cut_reordered_repeated_and_lost_agree(version, data):
    """The byte stream of a session, cut anywhere, delivered in a shuffled window."""
    stream = b"".join([pb.connect(version=version, client="rs"),
                       pb.publish("a", b"x" * 40, qos=1, msgid=3, version=version),
                       pb.subscribe(version=version),
                       pb.publish("b/c", b"y" * 700, version=version), pb.PINGREQ,
                       pb.publish("d", b"", qos=2, msgid=9, version=version), pb.DISCONNECT])
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=25)))
    pieces = [(a, stream[a:b]) for a, b in zip([0] + cuts, cuts + [len(stream)])]
    order = []
    for i, piece in enumerate(pieces):
        fate = data.draw(st.sampled_from(("send", "send", "send", "twice", "lose", "later")))
        if fate == "lose":
            continue
        order.append((i, piece))
        if fate == "twice":
            order.append((i, piece))
        elif fate == "later" and order:
            j = data.draw(st.integers(0, len(order) - 1))
            order.insert(j, order.pop())
    c = pb.Conversation().handshake()
    base = c.cseq
    for _, (offset, piece) in order:
        if data.draw(st.booleans()):
            c.packets.append((c.t + 0.001, c.seg(False, 0x10, b"", advance=False)))
        c.t += 0.01
        c.packets.append((c.t, c.seg(True, 0x18, piece, seq=base + offset)))
    per_message = data.draw(st.booleans())
    assert_decoders_agree(pb.pcap_bytes(c.packets), per_message=per_message)


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("per_message", [False, True])
def test_a_capture_that_lost_a_segment_agrees(split, per_message):
    assert_decoders_agree(pb.pcap_bytes(pb.lossy(split).packets), per_message=per_message)
