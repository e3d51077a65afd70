"""`mqttids extract` as a user runs it: exit codes, messages, files, JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import pcapbuild as pb
from mqttids.cli import main
from mqttids.schema import COLUMN_NAMES, MQTTSET_COLUMNS


@pytest.fixture()
def capture(tmp_path):
    path = tmp_path / "s.pcap"
    path.write_bytes(pb.pcap_bytes(pb.session(4).packets))
    return path


def test_parquet_output_has_the_schema_columns_in_order(capture, tmp_path, capsys):
    out = tmp_path / "rows.parquet"
    assert main(["extract", str(capture), "-o", str(out), "--label", "legitimate",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    table = pq.read_table(out)
    assert table.column_names == list(COLUMN_NAMES)
    assert table.column_names[:34] == list(MQTTSET_COLUMNS[:33]) + ["target"]
    assert summary == {"packets": summary["packets"], "rows": 16, "malformed": 0,
                       "seconds": summary["seconds"], "output": str(out)}
    assert set(table.column("target").to_pylist()) == {"legitimate"}


def test_csv_output_and_per_message_rows(tmp_path, capsys):
    c = pb.Conversation().handshake()
    c.send(True, pb.connect() + pb.publish("a", b"1") + pb.publish("b", b"2"))
    path = tmp_path / "burst.pcap"
    path.write_bytes(pb.pcap_bytes(c.packets))
    out = tmp_path / "rows.csv"
    assert main(["extract", str(path), "-o", str(out), "--per-message", "--quiet"]) == 0
    table = pacsv.read_csv(out)
    assert table.num_rows == 3 and table.column("msg_index").to_pylist() == [0, 1, 2]


def test_stdin_stream_gives_the_same_rows_as_the_file(capture, tmp_path):
    out_file, out_pipe = tmp_path / "f.parquet", tmp_path / "p.parquet"
    assert main(["extract", str(capture), "-o", str(out_file), "--quiet"]) == 0
    done = subprocess.run([sys.executable, "-m", "mqttids.cli", "extract", "-", "-o",
                           str(out_pipe), "--json"], input=capture.read_bytes(),
                          capture_output=True, check=True)
    assert json.loads(done.stdout)["rows"] == 16
    a, b = pq.read_table(out_file), pq.read_table(out_pipe)
    assert a.drop_columns(["source"]).equals(b.drop_columns(["source"]))


@pytest.mark.parametrize("args,message", [
    (["extract", "{cap}", "-o", "{tmp}/x.txt"], "must end in .csv or .parquet"),
    (["extract", "{tmp}/missing.pcap", "-o", "{tmp}/x.csv"], "does not exist"),
    (["extract", "{cap}", "-o", "{tmp}/x.csv", "--label", "evil"], "is not a known class"),
    (["extract", "{cap}", "-o", "{tmp}/x.csv", "--port", "70000"], "is not a TCP port"),
    (["extract", "{cap}", "-o", "{tmp}/nofolder/x.csv"], "does not exist"),
    (["extract", "-", "-", "-o", "{tmp}/x.csv"], "only once"),
    (["extract", "{tmp}", "-o", "{tmp}/x.csv"], "is a folder"),
])
def test_bad_input_gets_one_line_and_a_non_zero_exit(capture, tmp_path, capsys, args, message):
    argv = [a.format(cap=capture, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("mqttids: error:") and "\n" not in err
    assert not (tmp_path / "x.csv").exists()


def test_a_non_capture_names_the_file_and_its_first_bytes(tmp_path, capsys):
    bogus = tmp_path / "train70.csv"
    bogus.write_text("tcp.flags,tcp.time_delta\n0x00000018,0.0\n")
    assert main(["extract", str(bogus), "-o", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert str(bogus) in err and "74 63 70 2e" in err and "text" in err
    assert not (tmp_path / "x.csv").exists()


def test_every_command_has_help():
    from mqttids.cli import COMMANDS
    for command in COMMANDS:
        done = subprocess.run([sys.executable, "-m", "mqttids.cli", *command.split("_"),
                               "--help"], capture_output=True, text=True)
        assert done.returncode == 0 and "usage: mqttids" in done.stdout, command


def test_the_summary_counts_the_packets_of_every_capture(capture, tmp_path, capsys):
    out = tmp_path / "two.parquet"
    assert main(["extract", str(capture), str(capture), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    frames = len(pb.session(4).packets)
    assert summary["packets"] == 2 * frames and summary["rows"] == 32
