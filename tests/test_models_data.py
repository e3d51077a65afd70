"""Toy labelled rows for the model tests (imported by the other test_models_* files).

Each class gets the trait that gives it away in MQTTset (DoS: long payloads,
flood: many messages per packet, SlowITe: keep-alive 65535, brute force:
CONNECTs with credentials and refused CONNACKs, malformed: odd header flags),
plus noise, a constant column (tcp.flags) and empty ones (will fields), so
that pruning, clipping, indicators and text encoding all have work to do.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mqttids import schema

TOY_COLUMNS = schema.FEATURE_NAMES + schema.CONTEXT_NAMES + ("target", "split", "source",
                                                               "frame", "msg_index")


def _rows_for(label: str, n: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for i in range(n):
        r = {"tcp.flags": 0x18, "tcp.time_delta": float(rng.exponential(0.5)),
             "mqtt.msgtype": 3, "mqtt.hdrflags": 0x30, "mqtt.qos": int(rng.integers(0, 2)),
             "mqtt.retain": 0, "mqtt.dupflag": 0, "ctx.flow_packets": int(rng.integers(1, 50)),
             "ctx.flow_msgs": int(rng.integers(1, 50)), "ctx.flow_connects": 1,
             "ctx.flow_bytes": int(rng.integers(10, 5000)), "ctx.client_connects": 1,
             "ctx.packet_msgs": 1, "ctx.to_broker": int(rng.integers(0, 2)), "ctx.malformed": 0}
        payload = int(rng.integers(1, 4))
        if label == "dos":
            payload = int(rng.integers(80, 120))
            r["tcp.time_delta"] = float(rng.exponential(0.001))
        elif label == "flood":
            r["ctx.packet_msgs"] = int(rng.integers(20, 80))
            payload = int(rng.integers(2, 4))
        elif label == "malformed":
            r["mqtt.hdrflags"] = int(rng.choice([0x31, 0x33, 0x3f]))
            r["ctx.malformed"] = int(rng.integers(0, 2))
            payload = 4
        elif label in ("slowite", "bruteforce"):
            creds = label == "bruteforce"
            r.update({"mqtt.msgtype": 1, "mqtt.hdrflags": 0x10, "mqtt.protoname": "MQTT",
                      "mqtt.proto_len": 4, "mqtt.ver": 4, "mqtt.conflag.cleansess": 1,
                      "mqtt.conflag.uname": int(creds), "mqtt.conflag.passwd": int(creds),
                      "mqtt.conflags": 0xC2 if creds else 0x02,
                      "mqtt.kalive": 60 if creds else 65535, "mqtt.qos": None,
                      "mqtt.retain": None, "mqtt.dupflag": None,
                      "ctx.flow_connects": int(rng.integers(1, 4)),
                      "ctx.client_connects": int(rng.integers(1, 30))})
            if creds and i % 2:
                r.update({"mqtt.msgtype": 2, "mqtt.hdrflags": 0x20, "mqtt.conack.val": 5,
                          "mqtt.conack.flags": 0, "mqtt.protoname": None, "mqtt.kalive": None})
            payload = 0
        if payload:
            r["mqtt.msg"] = rng.bytes(payload).hex()
        r["tcp.len"] = 2 + payload + int(rng.integers(0, 3)) + 8 * (r["ctx.packet_msgs"] - 1)
        r["mqtt.len"] = r["tcp.len"] - 2
        r["target"] = label
        rows.append(r)
    return rows


def toy_table(per_class: int = 60, seed: int = 0, test_share: float = 0.3,
              flood: int | None = None) -> pa.Table:
    """Labelled rows with storage names and a train/test split, reproducible for a seed."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in schema.LABELS:
        rows += _rows_for(label, flood if (label == "flood" and flood) else per_class, rng)
    for i, r in enumerate(rows):
        r.update({"split": "test" if rng.random() < test_share else "train",
                  "source": "toy.pcap", "frame": i + 1, "msg_index": 0})
    columns = {schema.storage_name(c): [r.get(c) for r in rows] for c in TOY_COLUMNS}
    return pa.table(columns, schema=schema.arrow_schema(TOY_COLUMNS, storage=True))


def test_toy_table_is_reproducible_and_covers_every_label():
    a, b = toy_table(20, seed=3), toy_table(20, seed=3)
    assert a.equals(b)
    assert set(a.column("target").to_pylist()) == set(schema.LABELS)
    assert set(a.column("split").to_pylist()) == {"train", "test"}
    assert a.column("mqtt_willtopic").null_count == a.num_rows


def toy_warehouse(folder, per_class: int = 40, seed: int = 0) -> str:
    """A Parquet warehouse in ``folder`` holding toy rows, loaded by `ingest`; its URL."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from mqttids.warehouse import open_warehouse

    table = toy_table(per_class, seed=seed)
    table = table.rename_columns([schema.field_name(c) for c in table.column_names])
    url = f"parquet:{folder / 'wh'}"
    with open_warehouse(url) as wh:
        for split in schema.SPLITS:
            path = folder / f"toy-{split}.parquet"
            pq.write_table(table.filter(pc.equal(table.column("split"), split)), path)
            wh.ingest([path], split=split)
    return url
