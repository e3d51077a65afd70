"""The Spark jobs' command line and their pure parts, without a Spark session."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mqttids.jobs import cli, hadoopfs
from mqttids.jobs.ingest_csv import PARSED_SCHEMA, REJECTED, _runs, header_line, parse_partition
from mqttids.warehouse.errors import SourceFormatError
from mqttids.warehouse.rows import SourceContext
from test_jobs_data import write_csv


def run_main(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", [
    (["train", "--models", "lr,mlp"], "train on one machine with `mqttids train`"),
    (["train", "--models", "lr,lr"], "lists a model twice"),
    (["train", "--models", "svm"], "unknown models"),
    (["train", "--folds", "1"], "--folds must be at least 2"),
    (["ingest-csv", "x.csv", "--split", "train", "--label", "nope"], "label 'nope'"),
    (["train", "--grid", "{lr: 1}"], "--grid is not JSON"),
    (["train", "--grid", '{"lr": []}'], "list of parameter objects"),
    (["train", "--grid", '{"mlp": [{"hidden": 8}]}'], "does not train"),
])
def test_bad_options_stop_before_spark_starts_with_one_line(capsys, argv, message):
    code, out, err = run_main(capsys, *argv)
    assert code == 2
    assert out == ""
    assert message in err
    assert err.startswith("mqttids.jobs: error: ") and err.count("\n") == 1


def test_every_job_has_help():
    parser = cli.build_parser()
    for job in cli.JOBS:
        with pytest.raises(SystemExit) as stop:
            parser.parse_args([job, "--help"])
        assert stop.value.code == 0


def test_the_spark_submit_file_prints_where_it_is():
    out = subprocess.run([sys.executable, "-m", "mqttids.jobs.main", "--where"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.endswith(os.path.join("mqttids", "jobs", "main.py"))
    assert os.path.isfile(out)


@pytest.mark.parametrize("given, expected", [
    ("gs://bucket/data/x.csv", "gs://bucket/data/x.csv"),
    ("hdfs:///data/x.csv", "hdfs:///data/x.csv"),
    ("file:/tmp/x.csv", "file:/tmp/x.csv"),
    ("/tmp/x.csv", "/tmp/x.csv"),
])
def test_uris_keep_their_scheme_and_absolute_paths_stay(given, expected):
    assert hadoopfs.absolute_uri(given) == expected


def test_a_relative_path_is_made_absolute_for_the_executors(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert hadoopfs.absolute_uri("data/x.csv") == str(tmp_path / "data" / "x.csv")


def test_join_does_not_double_slashes():
    assert hadoopfs.join("gs://b/wh/", "packets", "/batch-000001.parquet") == \
        "gs://b/wh/packets/batch-000001.parquet"


def test_header_line_of_plain_and_gzip_files():
    head = b"tcp.flags,tcp.len\r\n0x18,2\n"
    assert header_line(head, "x.csv") == b"tcp.flags,tcp.len"
    assert header_line(gzip.compress(head * 1000)[:300], "x.csv.gz") == b"tcp.flags,tcp.len"


@pytest.mark.parametrize("head, kind", [
    (b"\xd4\xc3\xb2\xa1rest", "pcap capture"),
    (b"\x0a\x0d\x0d\x0arest", "pcapng capture"),
    (b"PAR1rest", "Parquet file"),
    (b"", "empty"),
])
def test_a_file_that_is_not_csv_is_refused_with_what_it_is(head, kind):
    with pytest.raises(SourceFormatError, match=kind):
        header_line(head, "in.bin")


def test_runs_split_where_line_numbers_jump():
    assert _runs(pa.array([5, 6, 7, 20, 21, 3]).to_numpy()) == [(0, 3), (3, 5), (5, 6)]
    assert _runs(pa.array([], pa.int64()).to_numpy()) == []


def _batch(lines: list[bytes], block: int, first_id: int) -> pa.RecordBatch:
    n = len(lines)
    return pa.RecordBatch.from_arrays(
        [pa.array(lines, pa.binary()), pa.array([block] * n, pa.int64()),
         pa.array(range(first_id, first_id + n), pa.int64())],
        names=["value", "block", "row_id"])


def test_rejects_keep_their_file_line_numbers_across_blocks(tmp_path):
    """Two blocks, given out of order, with row ids as Spark assigns them per partition."""
    path = tmp_path / "x.csv"
    bad = write_csv(path, 120, seed=3, bad_every=10)
    lines = path.read_bytes().split(b"\n")[:-1]
    cut = 61
    blocks = {0: (1, 0), 5000: (cut + 1, 1 << 33)}
    batches = [_batch(lines[cut:], 5000, 1 << 33), _batch(lines[:cut], 0, 0)]
    out = pa.Table.from_batches(
        list(parse_partition(iter(batches), lines[0], blocks,
                             SourceContext("train", None, "x.csv"))), schema=PARSED_SCHEMA)
    rejected = out.filter(out.column(REJECTED))
    assert sorted(rejected.column("_line").to_pylist()) == sorted(bad)
    assert out.num_rows == len(lines) - 1
    raw = dict(zip(rejected.column("_line").to_pylist(), rejected.column("_raw").to_pylist()))
    for number in bad:
        assert raw[number] == lines[number - 1].decode()
    rows = out.filter(pc.invert(out.column(REJECTED)))
    assert rows.column("split").unique().to_pylist() == ["train"]
    assert rows.column("source").unique().to_pylist() == ["x.csv"]
    assert set(rows.column("target").to_pylist()) <= set(
        ln.rsplit(b",", 1)[-1].decode() for ln in lines[1:])
