"""`mqttids analyze` end to end: a Parquet warehouse in, JSON or tables out, tables written.

The expected answers are recomputed in plain Python from the rows that the
warehouse holds after ingest, so whatever ingest normalises, the check is
against the same data that Spark read.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mqttids import schema
from mqttids.cli import main
from mqttids.spark.analysis_tables import TABLE_NAMES
from mqttids.warehouse import open_warehouse

DESIGN_KEYS = ["avg_mqtt_len_train", "avg_tcp_len_by_target", "top_tcp_flags",
               "class_balance", "ceiling", "train_test_shared_rows", "profile"]


def write_rows(path, seed: int, n: int) -> None:
    """MQTTset-like rows (Wireshark names) from a few templates, so rows repeat.

    The templates are the same in every file, so that test shares rows with train.
    """
    templates_rng = random.Random(3)
    rng = random.Random(seed)
    templates = [{"tcp.flags": templates_rng.choice([0x18, 0x10, 0x11]),
                  "tcp.len": templates_rng.choice([2, 4, 20, None]),
                  "mqtt.len": templates_rng.choice([0, 2, 18, None]),
                  "mqtt.msgtype": templates_rng.choice([2, 3, 4, 12]),
                  "mqtt.protoname": templates_rng.choice(["MQTT", None])} for _ in range(6)]
    rows = []
    for _ in range(n):
        row = dict.fromkeys(schema.COLUMN_NAMES)
        row.update(rng.choice(templates))
        row["target"] = rng.choice(["legitimate", "dos", "slowite", None])
        rows.append(row)
    table = pa.table({name: pa.array([r[name] for r in rows], schema.BY_NAME[name].arrow_type)
                      for name in schema.COLUMN_NAMES}, schema=schema.arrow_schema())
    pq.write_table(table, path)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    folder = tmp_path_factory.mktemp("analyze")
    url = f"parquet:{folder / 'wh'}"
    with open_warehouse(url) as wh:
        for split, seed, n in (("train", 3, 70), ("test", 4, 40)):
            write_rows(folder / f"{split}.parquet", seed, n)
            report = wh.ingest([folder / f"{split}.parquet"], split=split)
            assert report.loaded == n
        rows = [dict(zip(r.keys(), r.values())) for r in wh.read_packets_arrow().to_pylist()]
    return url, rows


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def vec(r):
    return tuple(r[schema.storage_name(n)] for n in schema.FEATURE_NAMES)


@pytest.mark.spark
def test_json_answers_match_plain_python_and_tables_are_written(spark, warehouse, capsys):
    url, rows = warehouse
    code, out, err = run_cli(capsys, "--warehouse", url, "--spark-master", "local[2]",
                             "analyze", "--json", "--top-flags", "1")
    assert code == 0, err
    result = json.loads(out)
    assert out.count("\n") == 1 and list(result) == DESIGN_KEYS

    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    lengths = [r["mqtt_len"] for r in train if r["mqtt_len"] is not None]
    assert result["avg_mqtt_len_train"] == pytest.approx(sum(lengths) / len(lengths))
    by_target = defaultdict(list)
    for r in rows:
        if r["target"] is not None and r["tcp_len"] is not None:
            by_target[r["target"]].append(r["tcp_len"])
    assert result["avg_tcp_len_by_target"] == pytest.approx(
        {k: sum(v) / len(v) for k, v in by_target.items()})
    flags = Counter(r["tcp_flags"] for r in rows)
    top = max(flags.values())
    assert result["top_tcp_flags"] == [{"flag": f, "count": c}
                                       for f, c in sorted(flags.items()) if c == top]
    assert result["class_balance"] == {
        s: dict(Counter(r["target"] for r in part if r["target"] is not None))
        for s, part in (("train", train), ("test", test))}
    groups = defaultdict(Counter)
    for r in test:
        if r["target"] is not None:
            groups[vec(r)][r["target"]] += 1
    assert result["ceiling"]["split"] == "test"
    assert result["ceiling"]["accuracy"] == pytest.approx(
        sum(max(c.values()) for c in groups.values()) / sum(sum(c.values())
                                                             for c in groups.values()))
    seen = {vec(r) for r in train}
    shared = sum(1 for r in test if vec(r) in seen)
    assert result["train_test_shared_rows"] == shared > 0

    with open_warehouse(url) as wh:
        assert set(TABLE_NAMES) <= set(wh.table_names())
        balance = wh.read_table("analysis_class_balance").to_pylist()
        assert {(b["split"], b["target"]): b["rows"] for b in balance} == {
            (s, label): n for s, labels in result["class_balance"].items()
            for label, n in labels.items()}
        profile = wh.read_table("analysis_profile").to_pylist()
        assert [p["column"] for p in profile][:33] == list(schema.FEATURE_NAMES)


@pytest.mark.spark
def test_terminal_tables_name_the_fields_by_their_wireshark_titles(spark, warehouse, capsys):
    url, _ = warehouse
    code, out, err = run_cli(capsys, "--warehouse", url, "--spark-master", "local[2]",
                             "analyze", "--top-flags", "2")
    assert code == 0, err
    for text in ("Class balance", "Most frequent tcp.flags", "Packet-level ceiling",
                 "Msg Len", schema.BY_NAME["mqtt.len"].meaning[:30], "0x0018", "empty columns"):
        assert text in out


@pytest.mark.spark
def test_an_empty_warehouse_is_a_one_line_error(spark, tmp_path, capsys):
    code, out, err = run_cli(capsys, "--warehouse", f"parquet:{tmp_path / 'wh'}",
                             "--spark-master", "local[2]", "analyze", "--json")
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "holds no packets" in err and "mqttids ingest" in err


@pytest.mark.parametrize("args, fragment", [
    (["--top-flags", "0"], "--top-flags must be a whole number from 1"),
    (["--top-flags", "two"], "got 'two'"),
    (["--top-values", "-1"], "--top-values must be a whole number from 0"),
    (["--conflicts", "1e3"], "--conflicts must be"),
])
def test_bad_options_fail_before_any_work(tmp_path, capsys, args, fragment):
    code, out, err = run_cli(capsys, "--warehouse", f"parquet:{tmp_path / 'wh'}",
                             "analyze", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and fragment in err
    assert not (tmp_path / "wh").exists()


@pytest.mark.spark
@pytest.mark.postgres
def test_postgres_warehouse_gives_the_same_answers(spark, warehouse, pg_dsn, pg_warehouse,
                                                   tmp_path, capsys, monkeypatch):
    """The same rows in PostgreSQL (read once over JDBC) give the same JSON as in Parquet."""
    url, rows = warehouse
    monkeypatch.setenv("MQTTIDS_PG_SCHEMA", pg_warehouse)
    with open_warehouse(pg_dsn) as wh:
        for split in ("train", "test"):
            part = [r for r in rows if r["split"] == split]
            table = pa.Table.from_pylist(part, schema=schema.arrow_schema(storage=True))
            pq.write_table(table, tmp_path / f"{split}.parquet")
            assert wh.ingest([tmp_path / f"{split}.parquet"], split=split).loaded == len(part)
    results = []
    for where in (url, pg_dsn):
        code, out, err = run_cli(capsys, "--warehouse", where, "--spark-master", "local[2]",
                                 "analyze", "--json")
        assert code == 0, err
        results.append(json.loads(out))
    assert results[1] == results[0]
    with open_warehouse(pg_dsn) as wh:
        ceiling = wh.read_table("analysis_ceiling").to_pylist()
        assert {c["split"]: c["rows"] for c in ceiling} == {
            s: c["rows"] for s, c in results[1]["ceiling"]["by_split"].items()}
