"""Small MQTTset-format CSV files for the Spark job tests, and checks of the generator.

Each class has its own kind of packet (a PUBLISH stream, CONNECT floods,
SlowITe's 65535-second keep-alive, ...), jittered, so that a model can learn
something; the files also hold bad rows of every kind the warehouse refuses,
at known line numbers, so that reject positions can be checked exactly.
"""

from __future__ import annotations

import random
from pathlib import Path

from mqttids import schema

COLUMNS = list(schema.MQTTSET_COLUMNS)

# Per class: msgtype, hdrflags, mqtt.len range, kalive, conflags, tcp.len range.
PROFILES = {
    "legitimate": (3, 0x30, (10, 40), 0, 0, (12, 60)),
    "dos": (3, 0x32, (200, 900), 0, 0, (300, 1460)),
    "flood": (3, 0x30, (1000, 4000), 0, 0, (1200, 1460)),
    "malformed": (3, 0x3F, (0, 3), 0, 0, (2, 8)),
    "slowite": (1, 0x10, (12, 16), 65535, 0x02, (14, 20)),
    "bruteforce": (1, 0x10, (30, 60), 60, 0xC2, (32, 70)),
}

# Wrong column count; unknown target; broken hex flag; keep-alive out of range.
BAD_KINDS = ("short", "label", "hex", "range")


def good_row(rng: random.Random, label: str) -> dict[str, str]:
    msgtype, hdr, mlen, kalive, conflags, tlen = PROFILES[label]
    row = {c: "0" for c in COLUMNS}
    row.update({
        "tcp.flags": rng.choice(["0x00000018", "0x00000010", "0x0018"]),
        "tcp.time_delta": f"{rng.expovariate(20 if label != 'slowite' else 200):.6f}",
        "tcp.len": str(rng.randint(*tlen)),
        "mqtt.hdrflags": f"0x{hdr:08x}",
        "mqtt.msgtype": str(msgtype),
        "mqtt.len": str(rng.randint(*mlen)),
        "mqtt.kalive": str(kalive),
        "mqtt.conflags": f"0x{conflags:08x}",
        "target": label,
    })
    if msgtype == 1:
        row.update({"mqtt.protoname": "MQTT", "mqtt.proto_len": "4", "mqtt.ver": "4"})
        row["mqtt.conflag.passwd"] = "1" if conflags & 0x40 else "0"
        row["mqtt.conflag.uname"] = "1" if conflags & 0x80 else "0"
        row["mqtt.conflag.cleansess"] = "1"
    else:
        row["mqtt.msg"] = "".join(f"{rng.randrange(256):02x}" for _ in range(rng.randint(1, 6)))
    return row


def bad_line(rng: random.Random, kind: str) -> str:
    if kind == "short":
        return "1,2,3"
    row = good_row(rng, "legitimate")
    if kind == "label":
        row["target"] = "nonsense"
    elif kind == "hex":
        row["tcp.flags"] = "0xZZ18"
    else:
        row["mqtt.kalive"] = "70000"
    return ",".join(row[c] for c in COLUMNS)


def write_csv(path: Path, rows: int, seed: int, bad_every: int = 53) -> dict[int, str]:
    """Write an MQTTset CSV; returns {line number: kind} of the bad rows in it."""
    rng = random.Random(seed)
    lines = [",".join(COLUMNS)]
    bad: dict[int, str] = {}
    kinds = list(BAD_KINDS)
    labels = list(PROFILES)
    for i in range(rows):
        row = good_row(rng, labels[i % len(labels)] if i < len(labels) else rng.choice(labels))
        lines.append(",".join(row[c] for c in COLUMNS))
        if bad_every and i % bad_every == bad_every - 1:
            kind = kinds[(i // bad_every) % len(kinds)]
            lines.append(bad_line(rng, kind))
            bad[len(lines)] = kind
    path.write_text("\n".join(lines) + "\n")
    return bad


def test_generator_writes_a_header_and_the_bad_rows_where_it_says(tmp_path):
    path = tmp_path / "x.csv"
    bad = write_csv(path, 200, seed=1, bad_every=20)
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == COLUMNS
    assert len(lines) == 1 + 200 + len(bad)
    assert set(bad.values()) == set(BAD_KINDS)
    for number, kind in bad.items():
        line = lines[number - 1]
        assert (line == "1,2,3") == (kind == "short")
        if kind == "label":
            assert line.endswith(",nonsense")
    assert {ln.rsplit(",", 1)[1] for ln in lines[1:] if ln != "1,2,3"} >= set(PROFILES)
