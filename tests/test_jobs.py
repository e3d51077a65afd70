"""The Spark jobs in-process on the shared local session: ingest, analyze, train.

The library (``mqttids.warehouse``, ``mqttids.spark.analytics``,
``mqttids.models.workflow``) is the reference: a job must give the same rows,
rejects, answers and bundles, and each side must read what the other wrote.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import sys

import pytest

from mqttids.errors import InputNotFoundError
from mqttids.jobs import hadoopfs
from mqttids.jobs.analyze import analyze_job
from mqttids.jobs.errors import NoPacketsError
from mqttids.jobs.ingest_csv import ingest_csv
from mqttids.jobs.store import open_job_warehouse
from mqttids.spark.analytics import analyze
from mqttids.warehouse import open_warehouse
from mqttids.warehouse.errors import SourceFormatError
from test_jobs_data import write_csv

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def jspark(spark):
    """The shared session, its Python workers being this interpreter (mqttids runs there)."""
    spark.sparkContext.pythonExec = sys.executable
    return spark


@pytest.fixture()
def small_blocks(jspark):
    """Spark splits files into blocks of 4 KiB, so a small file spans many partitions."""
    key = "spark.sql.files.maxPartitionBytes"
    old = jspark.conf.get(key)
    jspark.conf.set(key, "4096")
    yield
    jspark.conf.set(key, old)


def packets_of(url: str) -> list[str]:
    with open_warehouse(url) as wh:
        return sorted(map(str, wh.read_packets_arrow().to_pylist()))


def rejects_of(url: str) -> list[tuple]:
    with open_warehouse(url) as wh:
        t = wh.read_table("rejects")
    return sorted(zip(t.column("line").to_pylist(), t.column("reason").to_pylist(),
                      t.column("raw").to_pylist()))


def test_ingest_gives_the_rows_and_rejects_of_mqttids_ingest(jspark, tmp_path, small_blocks):
    csv = tmp_path / "train.csv"
    bad = write_csv(csv, 400, seed=1, bad_every=25)
    job_url, lib_url = f"parquet:{tmp_path}/job", f"parquet:{tmp_path}/lib"
    with open_job_warehouse(jspark, job_url) as wh:
        report = ingest_csv(jspark, wh, [str(csv)], "train").to_json()
    with open_warehouse(lib_url) as lib:
        expected = lib.ingest([csv], "train").to_json()

    for key in ("read", "loaded", "rejected", "skipped_sources"):
        assert report[key] == expected[key]
    assert report["rejected"] == len(bad) and report["read"] == 400 + len(bad)
    assert packets_of(job_url) == packets_of(lib_url)
    assert rejects_of(job_url) == rejects_of(lib_url)
    assert [line for line, _, _ in rejects_of(job_url)] == sorted(bad)
    with open_warehouse(job_url) as wh:
        ledger = wh.read_table("ingest_batches").to_pylist()
    assert len(ledger) == 1
    assert ledger[0]["sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest()
    assert (ledger[0]["rows_read"], ledger[0]["rows_loaded"], ledger[0]["rows_rejected"]) == \
        (report["read"], report["loaded"], report["rejected"])
    assert ledger[0]["ended"] >= ledger[0]["started"]


def test_the_same_bytes_are_loaded_once_under_any_name(jspark, tmp_path):
    write_csv(tmp_path / "a.csv", 50, seed=2)
    shutil.copy(tmp_path / "a.csv", tmp_path / "copy.csv")
    url = f"parquet:{tmp_path}/wh"
    with open_job_warehouse(jspark, url) as wh:
        first = ingest_csv(jspark, wh, [f"{tmp_path}/*.csv"], "train").to_json()
        again = ingest_csv(jspark, wh, [str(tmp_path / "a.csv")], "test").to_json()
    assert [b["skipped"] for b in first["batches"]] == [False, True]
    assert first["loaded"] == 50
    assert again["loaded"] == 0 and again["skipped_sources"] == [hadoopfs.qualify(
        jspark, str(tmp_path / "a.csv"))]
    with open_warehouse(url) as lib:
        assert lib.read_packets_arrow().num_rows == 50
        # the library sees the job's ledger: its own ingest skips the file too
        assert lib.ingest([tmp_path / "copy.csv"], "train").to_json()["loaded"] == 0


def test_gzip_files_are_read_and_fingerprinted_as_stored(jspark, tmp_path):
    write_csv(tmp_path / "plain.csv", 80, seed=4)
    (tmp_path / "z.csv.gz").write_bytes(gzip.compress((tmp_path / "plain.csv").read_bytes()))
    url = f"parquet:{tmp_path}/wh"
    with open_job_warehouse(jspark, url) as wh:
        report = ingest_csv(jspark, wh, [str(tmp_path / "z.csv.gz")], "test").to_json()
    assert report["loaded"] + report["rejected"] == report["read"] > 80
    digest = hashlib.sha256((tmp_path / "z.csv.gz").read_bytes()).hexdigest()
    assert report["batches"][0]["sha256"] == digest
    with open_warehouse(url) as wh:
        assert set(wh.read_packets_arrow(columns=["split"]).column("split").to_pylist()) == \
            {"test"}


def test_a_bad_source_stops_the_job_before_anything_is_loaded(jspark, tmp_path):
    write_csv(tmp_path / "good.csv", 20, seed=5)
    (tmp_path / "cap.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(40))
    (tmp_path / "head.csv").write_text("tcp.flags,no.such.field\n1,2\n")
    url = f"parquet:{tmp_path}/wh"
    with open_job_warehouse(jspark, url) as wh:
        with pytest.raises(SourceFormatError, match="pcap capture"):
            ingest_csv(jspark, wh, [str(tmp_path / "good.csv"), str(tmp_path / "cap.pcap")],
                       "train")
        with pytest.raises(SourceFormatError, match="unknown column"):
            ingest_csv(jspark, wh, [str(tmp_path / "good.csv"), str(tmp_path / "head.csv")],
                       "train")
        with pytest.raises(InputNotFoundError, match="no such file"):
            ingest_csv(jspark, wh, [str(tmp_path / "missing.csv")], "train")
    assert packets_of(url) == []


def test_a_load_that_fails_part_way_leaves_nothing_and_the_rerun_loads_it(
        jspark, tmp_path, monkeypatch):
    write_csv(tmp_path / "a.csv", 60, seed=6)
    url = f"parquet:{tmp_path}/wh"
    real_rename = hadoopfs.rename

    def failing(spark, src, dst):
        if "/ingest_batches/" in dst:
            raise OSError("disk gone while committing")
        real_rename(spark, src, dst)

    monkeypatch.setattr(hadoopfs, "rename", failing)
    with open_job_warehouse(jspark, url) as wh:
        with pytest.raises(OSError, match="disk gone"):
            ingest_csv(jspark, wh, [str(tmp_path / "a.csv")], "train")
    assert packets_of(url) == []
    assert not [n for n in hadoopfs.list_names(jspark, f"{tmp_path}/wh/packets")
                if n.endswith(".parquet")]
    monkeypatch.setattr(hadoopfs, "rename", real_rename)
    with open_job_warehouse(jspark, url) as wh:
        assert ingest_csv(jspark, wh, [str(tmp_path / "a.csv")], "train").loaded > 0
    assert len(packets_of(url)) > 0


def test_analyze_reads_what_the_library_loaded_and_the_library_reads_its_tables(
        jspark, tmp_path):
    write_csv(tmp_path / "tr.csv", 150, seed=7)
    write_csv(tmp_path / "te.csv", 60, seed=8)
    url = f"parquet:{tmp_path}/wh"
    with open_warehouse(url) as lib:
        lib.ingest([tmp_path / "tr.csv"], "train")
        lib.ingest([tmp_path / "te.csv"], "test")
        expected = analyze(lib.spark_read(jspark), top_conflicts=10)
    with open_job_warehouse(jspark, url) as wh:
        result = analyze_job(wh, top_conflicts=10)
        assert wh.read_table("analysis_summary") is not None
    assert result == expected
    with open_warehouse(url) as lib:
        summary = {r["name"]: r["value"] for r in lib.read_table("analysis_summary").to_pylist()}
        balance = lib.read_table("analysis_class_balance")
    assert summary["rows"] == 210
    assert sum(balance.column("rows").to_pylist()) == 210
    # analyzing again replaces the tables instead of adding rows
    with open_job_warehouse(jspark, url) as wh:
        analyze_job(wh, top_conflicts=10)
    with open_warehouse(url) as lib:
        assert lib.read_table("analysis_class_balance").num_rows == balance.num_rows


def test_analyze_on_an_empty_warehouse_says_what_to_load(jspark, tmp_path):
    with open_job_warehouse(jspark, f"parquet:{tmp_path}/empty") as wh:
        with pytest.raises(NoPacketsError, match="holds no packets: load some"):
            analyze_job(wh)


@pytest.mark.postgres
def test_ingest_into_postgresql_over_jdbc(jspark, tmp_path, pg_dsn, pg_warehouse, monkeypatch):
    import psycopg

    monkeypatch.setenv("MQTTIDS_PG_SCHEMA", pg_warehouse)
    csv = tmp_path / "train.csv"
    bad = write_csv(csv, 120, seed=9, bad_every=20)
    lib_url = f"parquet:{tmp_path}/lib"
    with open_warehouse(lib_url) as lib:
        lib.ingest([csv], "train")
    with open_job_warehouse(jspark, pg_dsn) as wh:
        # an earlier Spark load that died: its ledger row has no end, one row got in
        batch = wh._execute(f"INSERT INTO {pg_warehouse}.ingest_batches (source, sha256, "
                            "format, split, started) VALUES ('x', %s, 'csv', 'train', now()) "
                            "RETURNING batch_id",
                            [hashlib.sha256(csv.read_bytes()).hexdigest()])[0][0]
        wh._execute(f"INSERT INTO {pg_warehouse}.packets (batch_id, split) VALUES (%s, 'train')",
                    [batch])
        report = ingest_csv(jspark, wh, [str(csv)], "train").to_json()
        again = ingest_csv(jspark, wh, [str(csv)], "train").to_json()
        result = analyze_job(wh)
    assert report["loaded"] == 120 and report["rejected"] == len(bad)
    assert again["skipped_sources"] and again["loaded"] == 0
    assert result["profile"]["rows"] == 120
    with open_warehouse(pg_dsn) as pg:
        rows = pg.read_packets_arrow()
        rejects = pg.read_table("rejects")
        ledger = pg.read_table("ingest_batches").to_pylist()
    assert sorted(map(str, rows.to_pylist())) == packets_of(lib_url)
    assert sorted(rejects.column("line").to_pylist()) == sorted(bad)
    assert [(r["rows_read"], r["rows_loaded"]) for r in ledger] == [(120 + len(bad), 120)]
    with psycopg.connect(pg_dsn) as conn:
        names = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            [pg_warehouse])}
    assert "analysis_summary" in names


@pytest.mark.slow
def test_train_job_bundle_matches_the_models_stage_and_loads_there(jspark, tmp_path):
    from mqttids.jobs.train import train_spark_models
    from mqttids.models import bundle as bundles
    from mqttids.models.workflow import TrainOptions, WarehouseData, train_models

    write_csv(tmp_path / "tr.csv", 150, seed=10, bad_every=0)
    url = f"parquet:{tmp_path}/wh"
    with open_warehouse(url) as lib:
        lib.ingest([tmp_path / "tr.csv"], "train")
    grid = {"lr": ({"regParam": 0.01, "elasticNetParam": 0.0, "maxIter": 10},)}
    options = TrainOptions(models=("lr",), folds=2, feature_set="packet", grids=grid,
                           models_dir=tmp_path / "lib-models")
    with open_warehouse(url) as lib:
        expected = train_models(jspark, WarehouseData(lib), options)[0]
    with open_job_warehouse(jspark, url) as wh:
        got = train_spark_models(jspark, wh, options, str(tmp_path / "job-models"))[0]

    for key in ("name", "kind", "features", "best_params", "train_rows", "tuning_rows"):
        assert got[key] == expected[key]
    assert [f for c in got["cv"] for f in c["macro_f1"]] == pytest.approx(
        [f for c in expected["cv"] for f in c["macro_f1"]])
    mine = bundles.load_bundle("lr-packet", tmp_path / "job-models")
    theirs = bundles.load_bundle("lr-packet", tmp_path / "lib-models")
    assert set(mine.meta) == set(theirs.meta)
    assert mine.meta["preprocessing"] == theirs.meta["preprocessing"]
    with open_warehouse(url) as lib:
        table = lib.read_packets_arrow(columns=list(mine.spec.sources))
    mine_says = bundles.load_scorer(mine.path).predict(table)
    assert list(mine_says) == list(bundles.load_scorer(theirs.path).predict(table))
    with open_warehouse(url) as lib:
        tuning = lib.read_table("model_tuning")
    assert tuning is not None and set(tuning.column("model").to_pylist()) == {"lr-packet"}
