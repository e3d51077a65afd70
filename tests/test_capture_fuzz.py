"""Hostile bytes never make the decoder raise: only NotACaptureError for non-captures.

Property-based, bounded by example counts so the suite stays fast.
"""

from __future__ import annotations

import io
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcapbuild as pb
from mqttids.capture import NotACaptureError, iter_row_batches
from mqttids.capture.mqtt import HDRFLAGS, N_FIELDS, decode_message
from mqttids.capture.tcp import cut_messages

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
VALID = pb.pcap_bytes(pb.session(5).packets)
VALID_NG = pb.pcapng_bytes([([(1, None)], [(0, t, ip) for t, ip in pb.session(4).packets])])


def drain(data: bytes) -> int:
    try:
        return sum(b.num_rows for b in iter_row_batches(io.BytesIO(data)))
    except NotACaptureError:
        return -1


@FAST
@given(st.binary(max_size=600), st.integers(0, 3))
def test_random_message_bytes_never_raise(body, version_pick):
    version = (0, 3, 4, 5)[version_pick]
    for cut in cut_messages(body)[0]:
        msg = decode_message(cut[0], cut[1], cut[2], version)
        assert len(msg.fields) == N_FIELDS


@FAST
@given(st.integers(0, 255), st.binary(max_size=300), st.integers(0, 3))
def test_any_message_type_with_any_body_is_decoded_or_flagged(first, body, version_pick):
    version = (0, 3, 4, 5)[version_pick]
    pdu = pb.mqtt(first, body)
    cuts, _ = cut_messages(pdu)
    msg = decode_message(cuts[0][0], cuts[0][1], cuts[0][2], version)
    assert msg.fields[HDRFLAGS] == first  # the header flags are always read
    assert isinstance(msg.malformed, bool)


@FAST
@given(st.binary(max_size=2000))
def test_random_frames_after_a_valid_pcap_header_never_raise(tail):
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    assert drain(header + tail) >= 0


@FAST
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)),
                min_size=1, max_size=20))
def test_mutated_pcap_captures_never_raise(mutations):
    data = bytearray(VALID)
    for pos, value in mutations:
        data[pos] = value
    assert drain(bytes(data)) >= -1


@FAST
@given(st.lists(st.tuples(st.integers(0, len(VALID_NG) - 1), st.integers(0, 255)),
                min_size=1, max_size=20), st.integers(0, len(VALID_NG)))
def test_mutated_and_cut_pcapng_captures_never_raise(mutations, cut):
    data = bytearray(VALID_NG)
    for pos, value in mutations:
        data[pos] = value
    assert drain(bytes(data[:cut])) >= -1


@FAST
@given(st.binary(max_size=400))
def test_random_mqtt_payloads_inside_valid_tcp_never_raise(payload):
    c = pb.Conversation().handshake()
    c.send(True, payload)
    c.send(False, payload[::-1])
    assert drain(pb.pcap_bytes(c.packets)) >= 0
