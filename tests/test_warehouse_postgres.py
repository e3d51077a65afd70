"""The PostgreSQL warehouse against the real server: COPY, ledger, rejects, faults, secrets."""

from __future__ import annotations

import datetime as dt
import logging
import threading

import pyarrow as pa
import pytest

from mqttids import schema
from mqttids.warehouse import (TableError, WarehouseConnectionError, WarehouseURLError,
                               open_warehouse)
from mqttids.warehouse.ddl import create_statements
from mqttids.warehouse.dsn import mask_dsn
from test_warehouse_csv import mqttset_row
from test_warehouse_parquet import check_malformed_values_are_stored, write_csv

pytestmark = pytest.mark.postgres
psycopg = pytest.importorskip("psycopg")


@pytest.fixture()
def wh(pg_dsn, pg_warehouse):
    with open_warehouse(pg_dsn, pg_schema=pg_warehouse) as store:
        yield store


def count(dsn: str, sql: str):
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchone()[0]


def test_ingest_copies_rows_records_the_batch_and_its_rejects(wh, pg_dsn, pg_warehouse, tmp_path):
    path = write_csv(tmp_path / "train70.csv",
                     [mqttset_row(), mqttset_row(target="attack"), mqttset_row(target="dos")])
    report = wh.ingest([path], split="train")
    assert (report.read, report.loaded, report.rejected) == (3, 2, 1)
    s = pg_warehouse
    assert count(pg_dsn, f"SELECT count(*) FROM {s}.packets") == 2
    assert count(pg_dsn, f"SELECT rows_read - rows_loaded - rows_rejected "
                         f"FROM {s}.ingest_batches") == 0
    (reject,) = wh.read_table("rejects").to_pylist()
    assert (reject["line"], reject["raw"]) == (3, mqttset_row(target="attack"))
    assert "unknown value 'attack'" in reject["reason"]
    packets = wh.read_packets_arrow()
    assert packets.schema == schema.arrow_schema(storage=True)
    assert packets.column("target").to_pylist() == ["legitimate", "dos"]
    assert packets.column("mqtt_msg").to_pylist() == [None, None]
    assert packets.column("mqtt_protoname").to_pylist() == ["MQTT", "MQTT"]


def test_a_rerun_is_skipped_and_reported(wh, pg_dsn, pg_warehouse, tmp_path):
    path = write_csv(tmp_path / "a.csv", [mqttset_row()] * 5)
    first = wh.ingest([path], split="train")
    again = wh.ingest([path], split="test")
    assert again.skipped_sources == [path]
    assert again.batches[0].batch_id == first.batches[0].batch_id
    assert count(pg_dsn, f"SELECT count(*) FROM {pg_warehouse}.packets") == 5


def test_values_round_trip_exactly(wh, tmp_path):
    rows = [mqttset_row(delta="0.1", msg="00ff", msgtype="3"),
            mqttset_row(delta="1e-09", protoname="MQIsdp")]
    wh.ingest([write_csv(tmp_path / "r.csv", rows)], split="test")
    got = wh.read_packets_arrow(split="test").to_pylist()
    assert [r["tcp_time_delta"] for r in got] == [0.1, 1e-09]
    assert [r["mqtt_msg"] for r in got] == ["00ff", None]
    assert [r["mqtt_protoname"] for r in got] == ["MQTT", "MQIsdp"]
    assert wh.read_packets_arrow(split="train").num_rows == 0


def test_malformed_packets_decoded_values_are_stored_not_rejected(wh, tmp_path):
    check_malformed_values_are_stored(wh, tmp_path)


@pytest.mark.parametrize("column, value", [
    ("target", "'worm'"), ("split", "'dev'"), ("tcp_len", "-1"), ("mqtt_len", "-1"),
    ("tcp_time_delta", "'NaN'"), ("tcp_time_delta", "'-Infinity'"), ("sport", "70000"),
    ("ctx_flow_bytes", "-5"), ("frame", "0"),
])
def test_constraints_refuse_what_the_loader_refuses(wh, pg_dsn, pg_warehouse, column, value):
    s = pg_warehouse
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        batch = conn.execute(
            f"INSERT INTO {s}.ingest_batches (source, sha256, format, split, started) "
            f"VALUES ('x', repeat('a', 64), 'csv', 'train', now()) RETURNING batch_id"
        ).fetchone()[0]
        conn.execute(f"INSERT INTO {s}.packets (batch_id, tcp_len) VALUES ({batch}, 1)")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(f"INSERT INTO {s}.packets (batch_id, {column}) VALUES ({batch}, {value})")


def test_the_ledger_refuses_a_second_row_for_one_sha256(wh, pg_dsn, pg_warehouse):
    insert = (f"INSERT INTO {pg_warehouse}.ingest_batches (source, sha256, format, split, "
              "started) VALUES ('x', repeat('b', 64), 'csv', 'train', now())")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(insert)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert)


def test_ddl_is_safe_to_run_twice(wh, pg_dsn, pg_warehouse):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for statement in create_statements(pg_warehouse):
            conn.execute(statement)
    assert {"packets", "ingest_batches", "rejects", "alerts", "models"} <= set(wh.table_names())


class _CutConnection:
    """A progress sink that kills the loader's server process after the first block."""

    def __init__(self, dsn: str, pid: int):
        self.dsn, self.pid, self.calls = dsn, pid, 0

    def total(self, n):
        pass

    def advance(self, n=1):
        self.calls += 1
        if self.calls == 1:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", [self.pid])


def test_a_connection_cut_mid_load_rolls_back_and_a_rerun_loads_once(
        pg_dsn, pg_warehouse, tmp_path, monkeypatch):
    monkeypatch.setattr("mqttids.warehouse.csvrows.BLOCK_BYTES", 8192)
    path = write_csv(tmp_path / "big.csv", [mqttset_row()] * 4000)
    s = pg_warehouse
    wh = open_warehouse(pg_dsn, pg_schema=s)
    cut = _CutConnection(pg_dsn, wh._live().info.backend_pid)
    with pytest.raises(WarehouseConnectionError, match="lost while loading .*run the same"):
        wh.ingest([path], split="train", progress=cut)
    assert cut.calls >= 1
    assert count(pg_dsn, f"SELECT count(*) FROM {s}.packets") == 0
    assert count(pg_dsn, f"SELECT count(*) FROM {s}.ingest_batches") == 0
    with pytest.raises(WarehouseConnectionError, match="closed"):
        wh.read_packets_arrow()
    with open_warehouse(pg_dsn, pg_schema=s) as again:
        assert again.ingest([path], split="train").loaded == 4000
        assert again.ingest([path], split="train").skipped_sources == [path]
    assert count(pg_dsn, f"SELECT count(*) FROM {s}.packets") == 4000


def test_two_loaders_of_one_file_load_it_once(pg_dsn, pg_warehouse, tmp_path):
    path = write_csv(tmp_path / "same.csv", [mqttset_row()] * 3000)
    open_warehouse(pg_dsn, pg_schema=pg_warehouse).close()  # tables exist before the race
    reports = []

    def load():
        with open_warehouse(pg_dsn, pg_schema=pg_warehouse) as store:
            reports.append(store.ingest([path], split="train"))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.loaded for r in reports) == [0, 3000]
    assert count(pg_dsn, f"SELECT count(*) FROM {pg_warehouse}.packets") == 3000


def test_a_password_is_never_shown(pg_dsn, pg_warehouse, tmp_path, caplog):
    secret = "s3cret-Pw"
    with pytest.raises(WarehouseConnectionError) as err:
        open_warehouse(f"postgresql://postgres:{secret}@127.0.0.1:1/test")
    assert secret not in str(err.value) and "***" in str(err.value)
    url = pg_dsn.replace("postgres@", f"postgres:{secret}@")  # trust auth ignores it
    caplog.set_level(logging.DEBUG)
    with open_warehouse(url, pg_schema=pg_warehouse) as store:
        store.ingest([write_csv(tmp_path / "p.csv", [mqttset_row()])], split="train")
        assert secret not in repr(store) and secret not in store.display_url
    assert all(secret not in r.getMessage() for r in caplog.records)


def test_a_password_from_pgpassword_reaches_spark_options(pg_dsn, pg_warehouse, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "from-env")
    with open_warehouse(pg_dsn, pg_schema=pg_warehouse) as store:
        options = store.jdbc_options()
    assert options["password"] == "from-env"
    assert options["url"].startswith("jdbc:postgresql://127.0.0.1:5432/")


@pytest.mark.parametrize("dsn, shown", [
    ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://u@h/db?password=pw&sslmode=require",
     "postgresql://u@h/db?password=***&sslmode=require"),
    ("host=h user=u password='p w' dbname=db", "host=h user=u password=*** dbname=db"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
])
def test_mask_dsn(dsn, shown):
    assert mask_dsn(dsn) == shown


def test_a_bad_schema_name_or_url_is_refused(pg_dsn):
    from mqttids.errors import UsageError

    with pytest.raises(UsageError, match="schema name"):
        open_warehouse(pg_dsn, pg_schema="Robert'); drop")
    with pytest.raises(WarehouseURLError, match="cannot read"):
        open_warehouse("postgresql://h/db?bogus_option=1")


def test_result_tables_round_trip_with_their_types(wh):
    when = dt.datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=dt.timezone.utc)
    table = pa.table({
        "name": pa.array(["a", "", None, "\\.", 'q"uote,\nline']),
        "n": pa.array([1, 2, None, 4, 5], pa.int32()),
        "big": pa.array([2**40, 0, 1, None, -1], pa.int64()),
        "x": [0.1, float("inf"), None, -2.5, 1e-300],
        "ok": [True, False, None, True, False],
        "at": pa.array([when] * 4 + [None], pa.timestamp("us", tz="UTC")),
        "day": pa.array([dt.date(2026, 1, 2)] * 5, pa.date32()),
        "scores": pa.array([[0.5, 1.0], [], None, [2.0], [3.0]], pa.list_(pa.float64())),
        "blob": pa.array([b"\x00\xff", b"", None, b"a", b"b"], pa.binary()),
    })
    wh.write_table("cv_results", table)
    assert wh.read_table("cv_results").equals(table)
    wh.write_table("cv_results", table, mode="append")
    assert wh.read_table("cv_results").num_rows == 10
    with pytest.raises(TableError, match="cannot append"):
        wh.write_table("cv_results", table.drop_columns(["blob"]), mode="append")
    wh.write_table("cv_results", table.slice(0, 1))
    assert wh.read_table("cv_results").num_rows == 1
    assert wh.read_table("absent") is None
    assert "cv_results" in wh.table_names()


def test_alerts_and_models_tables(wh):
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    wh.write_table("alerts", pa.table({"time": [now], "label": ["flood"], "score": [0.97],
                                       "evidence": ['{"msgs": 40}'], "sport": [50000]}),
                   mode="append")
    (alert,) = wh.read_table("alerts").to_pylist()
    assert (alert["id"], alert["label"], alert["sport"]) == (1, "flood", 50000)
    assert alert["evidence"] == '{"msgs": 40}' and alert["created"] is not None
    with pytest.raises(TableError, match="breaks a constraint"):
        wh.write_table("alerts", pa.table({"time": [now], "label": ["worm"]}), mode="append")
    wh.write_table("models", pa.table({"name": ["rf"], "kind": ["spark-rf"],
                                       "metrics": pa.array([{"accuracy": 0.99}])}))
    (model,) = wh.read_table("models").to_pylist()
    assert model["name"] == "rf" and model["metrics"] == '{"accuracy": 0.99}'
