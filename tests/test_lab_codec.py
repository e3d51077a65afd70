"""MQTT encoders, templates and fuzz cases of the traffic lab."""

from __future__ import annotations

import random

import pytest

from mqttids.lab import codec as mq
from mqttids.lab import fuzz, templates
from mqttids.lab.wire import payload_sum


@pytest.mark.parametrize("n, encoded", [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_varint_matches_the_spec_examples(n, encoded):
    assert mq.varint(n) == encoded


def test_varint_refuses_lengths_mqtt_cannot_carry():
    with pytest.raises(ValueError, match="268435456"):
        mq.varint(268_435_456)


def test_connect_311_with_will_and_credentials_has_the_spec_layout():
    pkt = mq.connect("abc", keepalive=60, username="u", password="p",
                     will=("a/s", b"offline", 1, True))
    assert pkt[0] == 0x10 and pkt[1] == len(pkt) - 2
    assert pkt[2:8] == b"\x00\x04MQTT" and pkt[8] == 4
    assert pkt[9] == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02
    assert pkt[10:12] == b"\x00\x3c"
    assert pkt.endswith(b"\x00\x01u\x00\x01p")


def test_v5_packets_carry_property_blocks():
    assert mq.connect("x", version=5)[8:13] == b"\x05\x02\x00\x3c\x00"
    assert mq.connack(0x87, version=5) == b"\x20\x03\x00\x87\x00"
    assert mq.publish("t", b"v", qos=1, msgid=7, version=5) == b"\x32\x07\x00\x01t\x00\x07\x00v"
    assert mq.disconnect(version=5, reason=0x81) == b"\xe0\x01\x81"


def test_pubrel_and_subscribe_carry_the_mandatory_flags():
    assert mq.ack(mq.PUBREL, 1)[0] == 0x62
    assert mq.subscribe(1, (("a", 0),))[0] == 0x82
    assert mq.unsubscribe(1, ("a",))[0] == 0xA2


def test_publish_templates_equal_fresh_encodings_and_their_sums():
    rng = random.Random(4)
    cache = templates.PublishTemplates(limit=8)
    for _ in range(500):
        topic = "home/" + "x" * rng.randint(0, 200)
        payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        qos, version, mid = rng.randint(0, 2), rng.choice((4, 5)), rng.randint(1, 65535)
        pkt, psum = cache.publish(topic, payload, qos, rng.random() < 0.5, version, mid)
        assert pkt == mq.publish(topic, payload, qos=qos, msgid=mid if qos else 0,
                                 version=version, retain=pkt[0] & 1 == 1)
        assert psum == payload_sum(pkt)
    for ptype in (mq.PUBACK, mq.PUBREC, mq.PUBREL, mq.PUBCOMP):
        pkt, psum = templates.ack(ptype, 513)
        assert pkt == mq.ack(ptype, 513) and psum == payload_sum(pkt)


def test_fuzz_cases_cover_every_control_type_in_both_versions():
    rng = random.Random(1)
    for version in (mq.V311, mq.V5):
        cases = fuzz.all_cases(rng, version)
        assert {c.ptype for c in cases} == set(range(16))
        assert len({c.name for c in cases}) == len(cases)


def test_fuzz_draw_is_reproducible_and_mixes_versions():
    a = [fuzz.draw(random.Random(9)).data for _ in range(3)]
    b = [fuzz.draw(random.Random(9)).data for _ in range(3)]
    assert a == b
    rng = random.Random(3)
    versions = {fuzz.draw(rng).version for _ in range(200)}
    assert versions == {mq.V311, mq.V5}
