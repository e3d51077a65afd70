"""Spark reads either store: partitioned JDBC for PostgreSQL, Parquet files for the default."""

from __future__ import annotations

import pytest

from mqttids import schema
from mqttids.warehouse import TableError, open_warehouse
from test_warehouse_csv import mqttset_row
from test_warehouse_parquet import write_csv

pytestmark = pytest.mark.spark

STORAGE = [f.storage for f in schema.ALL_FIELDS]


def _rows(n: int) -> list[str]:
    return [mqttset_row(tcp_len=str(i % 1400), target=schema.LABELS[i % 6]) for i in range(n)]


@pytest.mark.postgres
def test_jdbc_read_is_partitioned_on_id_and_has_storage_names(spark, pg_dsn, pg_warehouse,
                                                             tmp_path):
    with open_warehouse(pg_dsn, pg_schema=pg_warehouse) as wh:
        wh.ingest([write_csv(tmp_path / "a.csv", _rows(5000))], split="train")
        frame = wh.spark_read(spark, num_partitions=3)
        assert frame.columns == STORAGE
        assert frame.rdd.getNumPartitions() == 3
        assert frame.count() == 5000
        total = frame.groupBy().sum("tcp_len").first()[0]
        assert total == sum(i % 1400 for i in range(5000))
        ledger = wh.spark_read(spark, table="ingest_batches")
        assert ledger.first()["rows_loaded"] == 5000
        with pytest.raises(TableError, match="no table 'nothing'"):
            wh.spark_read(spark, table="nothing")


def test_parquet_read_sees_committed_batches_only(spark, tmp_path):
    with open_warehouse(f"parquet:{tmp_path / 'wh'}") as wh:
        empty = wh.spark_read(spark)
        assert empty.columns == STORAGE and empty.count() == 0
        wh.ingest([write_csv(tmp_path / "a.csv", _rows(300))], split="test")
        (wh.root / "packets" / "batch-000009.parquet").write_bytes(
            (wh.root / "packets" / "batch-000001.parquet").read_bytes())  # not in the ledger
        frame = wh.spark_read(spark)
        assert frame.columns == STORAGE
        assert frame.count() == 300
        assert {r["target"] for r in frame.select("target").distinct().collect()} == \
            set(schema.LABELS)
        assert dict(frame.dtypes)["tcp_flags"] == "int"
