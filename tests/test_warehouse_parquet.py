"""The Parquet warehouse: ledger, idempotence, rejects, atomic batches, result tables."""

from __future__ import annotations

import datetime as dt
import gzip
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mqttids import schema
from mqttids.errors import InputNotFoundError, UsageError
from mqttids.warehouse import SourceFormatError, TableError, open_warehouse
from mqttids.warehouse import sources as sources_module
from test_warehouse_csv import HEADER, mqttset_row


def write_csv(path, rows: list[str]) -> str:
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return str(path)


@pytest.fixture()
def wh(tmp_path):
    with open_warehouse(f"parquet:{tmp_path / 'wh'}") as store:
        yield store


@pytest.fixture()
def csv_file(tmp_path):
    rows = [mqttset_row(target=t) for t in ("legitimate", "dos", "flood")]
    rows.insert(1, mqttset_row(tcp_len="-1"))
    return write_csv(tmp_path / "train70.csv", rows)


def test_ingest_counts_and_reads_back(wh, csv_file):
    report = wh.ingest([csv_file], split="train")
    assert (report.read, report.loaded, report.rejected) == (4, 3, 1)
    packets = wh.read_packets_arrow()
    assert packets.schema == schema.arrow_schema(storage=True)
    assert packets.column("target").to_pylist() == ["legitimate", "dos", "flood"]
    assert set(packets.column("source").to_pylist()) == {"train70.csv"}
    rejects = wh.read_table("rejects").to_pylist()
    assert [(r["batch_id"], r["line"]) for r in rejects] == [(1, 3)]
    assert "tcp.len" in rejects[0]["reason"] and rejects[0]["raw"] == mqttset_row(tcp_len="-1")
    (ledger,) = wh.read_table("ingest_batches").to_pylist()
    assert ledger["sha256"] == report.batches[0].sha256 and ledger["source"] == csv_file
    assert (ledger["rows_read"], ledger["rows_loaded"], ledger["rows_rejected"]) == (4, 3, 1)
    assert ledger["ended"] >= ledger["started"]


def test_a_source_already_loaded_is_skipped_even_under_another_name(wh, csv_file, tmp_path):
    wh.ingest([csv_file], split="train")
    copy = tmp_path / "copy.csv"
    copy.write_bytes(open(csv_file, "rb").read())
    report = wh.ingest([csv_file, str(copy)], split="train")
    assert report.loaded == 0 and report.skipped_sources == [csv_file, str(copy)]
    assert [b.batch_id for b in report.batches] == [1, 1]
    assert wh.read_packets_arrow().num_rows == 3


def test_the_same_file_twice_in_one_command_loads_once(wh, csv_file):
    report = wh.ingest([csv_file, csv_file], split="test")
    assert report.loaded == 3 and report.skipped_sources == [csv_file]
    assert report.to_json()["batches"][1]["skipped"] is True


def test_split_filter_and_column_choice(wh, csv_file, tmp_path):
    wh.ingest([csv_file], split="train")
    other = write_csv(tmp_path / "test30.csv", [mqttset_row(target="slowite")])
    wh.ingest([other], split="test")
    test_rows = wh.read_packets_arrow(split="test", columns=["tcp.flags", "target"])
    assert test_rows.column_names == ["tcp_flags", "target"]
    assert test_rows.to_pylist() == [{"tcp_flags": 24, "target": "slowite"}]
    with pytest.raises(TableError, match="no column 'nope'"):
        wh.read_packets_arrow(columns=["nope"])
    with pytest.raises(UsageError, match="split 'dev'"):
        wh.read_packets_arrow(split="dev")


def test_a_load_that_fails_part_way_leaves_nothing_and_reruns_once(wh, tmp_path, monkeypatch):
    big = write_csv(tmp_path / "big.csv", [mqttset_row()] * 3000)
    real = sources_module.MqttsetCsvReader.convert

    def failing(self, unit):
        if unit.first_line > 1000:
            raise OSError("disk unplugged")
        return real(self, unit)

    monkeypatch.setattr(sources_module.MqttsetCsvReader, "convert", failing)
    monkeypatch.setattr("mqttids.warehouse.csvrows.BLOCK_BYTES", 4096)
    with pytest.raises(OSError, match="unplugged"):
        wh.ingest([big], split="train")
    assert wh.read_packets_arrow().num_rows == 0
    assert wh.read_table("ingest_batches").num_rows == 0
    assert list((wh.root / ".staging").iterdir()) == []
    monkeypatch.setattr(sources_module.MqttsetCsvReader, "convert", real)
    assert wh.ingest([big], split="train").loaded == 3000
    assert wh.ingest([big], split="train").loaded == 0
    assert wh.read_packets_arrow().num_rows == 3000


def test_files_of_an_unfinished_commit_are_invisible_and_swept(wh, csv_file):
    wh.ingest([csv_file], split="train")
    orphan = wh.root / "packets" / "batch-000007.parquet"
    orphan.write_bytes((wh.root / "packets" / "batch-000001.parquet").read_bytes())
    assert wh.read_packets_arrow().num_rows == 3
    wh.write_table("anything", pa.table({"a": [1]}))  # any writer sweeps
    assert not orphan.exists()


def test_a_bad_source_stops_the_command_before_anything_is_loaded(wh, csv_file, tmp_path):
    bad = tmp_path / "notes.csv"
    bad.write_text("name,value\nx,1\n")
    with pytest.raises(SourceFormatError, match="unknown column"):
        wh.ingest([csv_file, str(bad)], split="train")
    with pytest.raises(InputNotFoundError, match="no such file"):
        wh.ingest([csv_file, str(tmp_path / "missing.csv")], split="train")
    with pytest.raises(SourceFormatError, match="is a folder"):
        wh.ingest([str(tmp_path)], split="train")
    assert wh.read_table("ingest_batches").num_rows == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "dev"}, "split 'dev'"), ({"split": "train", "label": "worm"}, "label 'worm'"),
    ({"split": "train", "ports": [0]}, "port 0"),
])
def test_bad_options_are_refused_first(wh, csv_file, kwargs, message):
    with pytest.raises(UsageError, match=message):
        wh.ingest([csv_file], **kwargs)


def test_gzip_csv_is_read(wh, csv_file, tmp_path):
    packed = tmp_path / "train70.csv.gz"
    packed.write_bytes(gzip.compress(open(csv_file, "rb").read()))
    report = wh.ingest([str(packed)], split="train")
    assert (report.loaded, report.rejected, report.batches[0].format) == (3, 1, "csv")


def test_parquet_rows_with_wireshark_names_are_checked_like_csv(wh, tmp_path):
    names = schema.COLUMN_NAMES
    good = {n: None for n in names} | {"tcp.flags": 24, "tcp.len": 5, "frame": 10,
                                       "mqtt.msgtype": 3, "target": None}
    bad = good | {"tcp.len": -3, "frame": 11}
    table = pa.Table.from_pylist([good, bad], schema=schema.arrow_schema())
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path)
    report = wh.ingest([str(path)], split="test", label="dos")
    assert (report.loaded, report.rejected) == (1, 1)
    row = wh.read_packets_arrow().to_pylist()[0]
    assert (row["tcp_len"], row["frame"], row["target"], row["split"]) == (5, 10, "dos", "test")
    (reject,) = wh.read_table("rejects").to_pylist()
    assert (reject["line"], reject["frame"]) == (None, 11)
    assert '"tcp.len": -3' in reject["raw"]


def test_malformed_packets_decoded_values_are_stored_not_rejected(wh, tmp_path):
    check_malformed_values_are_stored(wh, tmp_path)


def check_malformed_values_are_stored(wh, tmp_path) -> None:
    """(Shared with the PostgreSQL tests.)"""
    # What the decoder gives for fuzzed packets: a five-byte remaining length
    # (above MQTT's 268,435,455) and a protocol name holding a zero byte.
    names = schema.COLUMN_NAMES
    base = {n: None for n in names} | {"tcp.flags": 24, "tcp.len": 9, "frame": 1,
                                       "mqtt.msgtype": 3, "target": "malformed"}
    rows = [base | {"mqtt.len": 536_870_911},
            base | {"frame": 2, "mqtt.msgtype": 1, "mqtt.protoname": "MQ\x00T"},
            base | {"frame": 3, "mqtt.len": -1}]
    path = tmp_path / "fuzzed.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema.arrow_schema()), path)
    report = wh.ingest([str(path)], split="train")
    assert (report.read, report.loaded, report.rejected) == (3, 2, 1)
    got = {r["frame"]: r for r in wh.read_packets_arrow().to_pylist()}
    assert got[1]["mqtt_len"] == 536_870_911
    assert got[2]["mqtt_protoname"] == "MQ\ufffdT"
    (reject,) = wh.read_table("rejects").to_pylist()
    assert reject["frame"] == 3 and "mqtt.len: -1" in reject["reason"]


@pytest.mark.dataset
def test_a_capture_goes_through_the_decoder(wh, dataset_dir):
    capture = dataset_dir / "malformed" / "malformed-test.pcap"
    report = wh.ingest([str(capture)], split="test", label="malformed")
    assert report.read == report.loaded == 1063  # tshark -Y mqtt counts 1,063
    packets = wh.read_packets_arrow(columns=["target", "frame", "source"])
    assert set(packets.column("target").to_pylist()) == {"malformed"}
    assert set(packets.column("source").to_pylist()) == {"malformed-test.pcap"}
    assert report.batches[0].format == "pcapng"  # named .pcap, recognised by its content


def test_result_tables_overwrite_append_and_types(wh):
    table = pa.table({"fold": pa.array([1, 2], pa.int32()), "f1": [0.5, 0.75],
                      "scores": pa.array([[0.1, 0.2], []], pa.list_(pa.float64()))})
    wh.write_table("cv_results", table)
    wh.write_table("cv_results", table, mode="append")
    assert wh.read_table("cv_results").num_rows == 4
    wh.write_table("cv_results", table.slice(0, 1), mode="overwrite")
    assert wh.read_table("cv_results").equals(table.slice(0, 1))
    assert len(list((wh.root / "cv_results").iterdir())) == 1
    with pytest.raises(TableError, match="cannot append"):
        wh.write_table("cv_results", pa.table({"other": [1]}), mode="append")
    assert wh.read_table("nothing_here") is None
    assert "cv_results" in wh.table_names() and "packets" in wh.table_names()


@pytest.mark.parametrize("name, table, message", [
    ("packets", pa.table({"a": [1]}), "written by `mqttids ingest` only"),
    ("Bad-Name", pa.table({"a": [1]}), "not usable"),
    ("alerts", pa.table({"colour": ["red"]}), "has no column"),
    ("alerts", pa.table({"label": ["dos"]}), "needs column"),
])
def test_result_table_mistakes_are_refused(wh, name, table, message):
    with pytest.raises(TableError, match=message):
        wh.write_table(name, table)


def test_alerts_get_every_column_as_in_postgresql(wh):
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    wh.write_table("alerts", pa.table({"time": [now], "label": ["flood"], "score": [0.9],
                                       "evidence": ['{"msgs": 40}']}), mode="append")
    wh.write_table("alerts", pa.table({"time": [now], "label": ["dos"]}), mode="append")
    alerts = wh.read_table("alerts")
    assert alerts.column_names[:3] == ["id", "time", "flow"]
    assert alerts.column("id").to_pylist() == [1, 2]
    assert alerts.column("created").null_count == 0


def test_warehouse_urls(tmp_path):
    from mqttids.warehouse import WarehouseURLError

    with pytest.raises(WarehouseURLError, match="unknown warehouse URL"):
        open_warehouse("mysql://x")
    with pytest.raises(WarehouseURLError, match="names no folder"):
        open_warehouse("parquet:")
    with open_warehouse(f"parquet://{tmp_path}/w") as store:
        assert store.root == tmp_path / "w"
    assert os.path.isdir(tmp_path / "w")
