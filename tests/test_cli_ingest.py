"""`mqttids ingest`: exit codes, the JSON object, one-line errors, both warehouses."""

from __future__ import annotations

import io
import json
import sys

import pytest

from mqttids.cli import main
from test_warehouse_csv import mqttset_row
from test_warehouse_parquet import write_csv


@pytest.fixture()
def csv_file(tmp_path):
    return write_csv(tmp_path / "train70.csv",
                     [mqttset_row(), mqttset_row(tcp_len="-4"), mqttset_row(target="dos")])


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_prints_the_ingest_object_and_nothing_else(tmp_path, csv_file, capsys):
    code, out, err = run(["--warehouse", f"parquet:{tmp_path / 'wh'}", "ingest", csv_file,
                          "--split", "train", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert list(result) == ["read", "loaded", "rejected", "skipped_sources", "batches"]
    assert (result["read"], result["loaded"], result["rejected"]) == (3, 2, 1)
    assert result["skipped_sources"] == []
    assert result["batches"][0]["source"] == csv_file and result["batches"][0]["batch_id"] == 1
    code, out, _ = run(["ingest", csv_file, "--split", "train", "--json", "--warehouse",
                        f"parquet:{tmp_path / 'wh'}"], capsys)
    assert code == 0 and json.loads(out)["skipped_sources"] == [csv_file]


def test_a_summary_goes_to_stderr_without_json(tmp_path, csv_file, capsys, monkeypatch):
    monkeypatch.setenv("MQTTIDS_WAREHOUSE", f"parquet:{tmp_path / 'env-wh'}")
    code, out, err = run(["ingest", csv_file, "--split", "test"], capsys)
    assert code == 0 and out == ""
    assert "3 read = 2 loaded + 1 rejected" in err and "env-wh" in err
    assert (tmp_path / "env-wh" / "packets").is_dir()


@pytest.mark.parametrize("argv, message", [
    (["ingest", "missing.csv", "--split", "train"], "missing.csv: no such file"),
    (["ingest", "-", "-", "--split", "train"], "standard input (-) can be read only once"),
    (["--warehouse", "mysql://x", "ingest", "{csv}", "--split", "train"],
     "unknown warehouse URL"),
    (["ingest", "{csv}", "--split", "train", "--port", "70000"], "port 70000"),
])
def test_errors_are_one_line_and_exit_non_zero(tmp_path, csv_file, capsys, argv, message):
    argv = [a.replace("{csv}", csv_file) for a in argv]
    code, out, err = run(["--warehouse", f"parquet:{tmp_path / 'wh'}"] + argv, capsys)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("mqttids: error:") and message in err


def test_a_wrong_split_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["ingest", "x.csv", "--split", "validation"])
    assert exc.value.code == 2
    assert "invalid choice: 'validation'" in capsys.readouterr().err


def test_standard_input_is_read_once(tmp_path, csv_file, capsys, monkeypatch):
    data = open(csv_file, "rb").read()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, _ = run(["--warehouse", f"parquet:{tmp_path / 'wh'}", "ingest", "-",
                        "--split", "train", "--label", "legitimate", "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and result["batches"][0]["source"] == "-"
    assert (result["loaded"], result["rejected"]) == (1, 2)  # the dos row contradicts the label


@pytest.mark.postgres
def test_ingest_into_postgresql(pg_dsn, pg_warehouse, csv_file, capsys, monkeypatch):
    monkeypatch.setenv("MQTTIDS_PG_SCHEMA", pg_warehouse)
    code, out, _ = run(["--warehouse", pg_dsn, "ingest", csv_file, "--split", "train",
                        "--json"], capsys)
    assert code == 0 and json.loads(out)["loaded"] == 2
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute(f"SELECT count(*) FROM {pg_warehouse}.rejects").fetchone()[0] == 1


@pytest.mark.dataset
def test_parquet_written_by_extract_loads_like_the_capture(dataset_dir, tmp_path, capsys):
    capture = str(dataset_dir / "slowite" / "slowite-test.pcap")
    rows = str(tmp_path / "slowite.parquet")
    assert main(["--quiet", "extract", capture, "-o", rows, "--label", "slowite"]) == 0
    capsys.readouterr()
    warehouse = ["--warehouse", f"parquet:{tmp_path / 'wh'}"]
    code, out, _ = run(warehouse + ["ingest", rows, capture, "--split", "test",
                                    "--label", "slowite", "--json"], capsys)
    result = json.loads(out)
    from_parquet, from_capture = result["batches"]
    assert code == 0 and result["rejected"] == 0
    assert from_parquet["format"] == "parquet" and from_capture["format"] == "pcapng"
    assert from_parquet["loaded"] == from_capture["loaded"] == 600  # tshark counts 600
    from mqttids.warehouse import open_warehouse

    with open_warehouse(f"parquet:{tmp_path / 'wh'}") as wh:
        packets = wh.read_packets_arrow()
    first, second = packets.slice(0, 600), packets.slice(600)
    assert first.drop_columns(["source"]).equals(second.drop_columns(["source"]))
