"""TCP reassembly per direction: order, retransmission, splits and bursts."""

from __future__ import annotations

import io

import pyarrow as pa

import pcapbuild as pb
from mqttids.capture import iter_row_batches
from mqttids.capture.extract import ARROW_SCHEMA
from mqttids.capture.tcp import Direction, cut_messages


def rows(packets, **kw) -> list[dict]:
    batches = list(iter_row_batches(io.BytesIO(pb.pcap_bytes(packets)), **kw))
    return pa.Table.from_batches(batches, schema=ARROW_SCHEMA).to_pylist()


def opened():
    c = pb.Conversation().handshake()
    c.send(True, pb.connect())
    c.send(False, pb.connack())
    return c


def test_out_of_order_segments_are_put_back_in_order():
    c = opened()
    first, second = pb.publish("a", b"1"), pb.publish("b", b"2")
    seq = c.cseq
    late = c.seg(True, 0x18, first, seq=seq)
    early = c.seg(True, 0x18, second, seq=seq + len(first))
    c.packets += [(c.t + 0.01, early), (c.t + 0.02, late)]
    got = rows(c.packets, per_message=True)
    publishes = [r for r in got if r["mqtt.msgtype"] == 3]
    assert [bytes.fromhex(r["mqtt.msg"]) for r in publishes] == [b"1", b"2"]
    assert all(r["frame"] == len(c.packets) for r in publishes)  # both complete in the late one


def test_a_retransmission_adds_no_row():
    c = opened()
    msg = pb.publish("a", b"1")
    c.send(True, msg)
    c.packets.append((c.t + 0.2, c.seg(True, 0x18, msg, seq=c.cseq - len(msg))))
    assert [r["mqtt.msgtype"] for r in rows(c.packets)] == [1, 2, 3]


def test_an_overlapping_segment_adds_only_its_new_bytes():
    c = opened()
    one, two = pb.publish("a", b"1"), pb.publish("b", b"2")
    seq = c.cseq
    c.packets.append((c.t + 0.01, c.seg(True, 0x18, one, seq=seq)))
    c.packets.append((c.t + 0.02, c.seg(True, 0x18, one + two, seq=seq)))
    got = [r for r in rows(c.packets, per_message=True) if r["mqtt.msgtype"] == 3]
    assert [bytes.fromhex(r["mqtt.msg"]) for r in got] == [b"1", b"2"]


def test_a_message_split_across_three_segments_is_one_row_on_the_last():
    c = opened()
    msg = pb.publish("split/topic", b"z" * 500, qos=1, msgid=9)
    for part in (msg[:1], msg[1:200], msg[200:]):
        c.send(True, part)
    got = rows(c.packets)
    assert got[-1]["mqtt.msgtype"] == 3 and got[-1]["mqtt.len"] == len(msg) - 3
    assert got[-1]["frame"] == len(c.packets) and got[-1]["tcp.len"] == len(msg) - 200


def test_many_messages_in_one_segment_count_in_context():
    c = opened()
    c.send(True, b"".join(pb.publish("f", b"x" * 10) for _ in range(50)))
    packet = rows(c.packets)[-1]
    assert packet["ctx.packet_msgs"] == 50 and packet["ctx.flow_msgs"] == 52
    assert len([r for r in rows(c.packets, per_message=True) if r["mqtt.msgtype"] == 3]) == 50


def test_context_counts_connects_per_connection_and_per_client():
    packets = []
    for port in (40001, 40002, 40003):
        c = pb.Conversation(cport=port, t=float(port)).handshake()
        c.send(True, pb.connect(client=f"c{port}"))
        c.send(True, pb.connect(client=f"again{port}"))
        packets += c.packets
    got = [r for r in rows(packets) if r["mqtt.msgtype"] == 1]
    assert [r["ctx.flow_connects"] for r in got] == [1, 2] * 3
    assert [r["ctx.client_connects"] for r in got] == [1, 2, 3, 4, 5, 6]
    assert len({r["flow"] for r in got}) == 3


def test_a_gap_that_never_fills_does_not_stall_the_direction():
    d = Direction()
    d.syn(0)
    assert d.segment(1000, pb.publish("late", b"x")) == []
    msg = pb.publish("a", b"1")
    for i in range(80):  # far more segments than may wait for a gap
        d.segment(2000 + i * len(msg), msg)
    assert len(d.ahead) <= 64
    assert len(d.segment(2000 + 80 * len(msg), msg)) == 1


def test_an_oversized_length_is_cut_as_malformed_without_buffering():
    cuts, rest = cut_messages(b"\x30\xff\xff\xff\x7f" + b"x" * 10, max_message=1 << 20)
    assert len(cuts) == 1 and cuts[0][3] is False and rest == b""


def test_an_unfinished_length_waits_for_more_bytes():
    assert cut_messages(b"\x30\xff") == ([], b"\x30\xff")


def test_segments_after_one_the_capture_lost_are_decoded():
    # Found in a recorded flood: the kernel dropped a segment, the decoder took
    # the next one for early data waiting on a gap, then threw it away.
    for split, msgs in ((False, [b"b", b"c", b"d", b"e"]), (True, [b"b" * 40, b"d", b"e"])):
        got = rows(pb.lossy(split).packets, per_message=True)
        published = [r["mqtt.msg"] for r in got if r["mqtt.msgtype"] == 3]
        assert published == [b"a".hex()] + [m.hex() for m in msgs], split


def test_a_lost_gap_gives_up_the_message_it_cut_and_resumes_at_the_waiting_data():
    d = Direction()
    d.syn(0)
    head = pb.publish("a", b"1" * 30)
    assert d.segment(1, head[:8]) == []  # unfinished when the next bytes are lost
    lost = 1 + len(head) + 50  # the rest of ``head`` and 50 more bytes never arrive
    m = pb.publish("b", b"2")
    assert d.segment(lost, m[:3]) == []  # waits: it could be early, not lost
    cuts = d.segment(lost + 3, m[3:] + m)  # contiguous with it: the gap was lost
    assert [c[0] for c in cuts] == [m, m]
    assert d.pending == b"" and not d.ahead


def test_waiting_data_that_does_not_reach_the_segment_is_given_up():
    d = Direction()
    d.syn(0)
    m = pb.publish("b", b"2")
    assert d.segment(100, m) == []  # after a gap: waits
    d.note(300)  # the sender announced bytes up to 300
    assert [c[0] for c in d.segment(200, m)] == [m]  # another gap before 200
    assert not d.ahead and d.next_seq == 200 + len(m)
