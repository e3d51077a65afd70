"""`mqttids lab synth|record` on the command line: exit codes, one-line errors, --json."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mqttids.cli import main
from mqttids.cli.lab import _count


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_lab_help_names_both_subcommands(capsys):
    code, out, _ = _run(capsys, "lab", "--help")
    assert code == 0 and "synth" in out and "record" in out


def test_synth_json_prints_one_object_with_every_class(capsys, tmp_path):
    code, out, err = _run(capsys, "--quiet", "lab", "synth", "-o", str(tmp_path), "--packets",
                          "3k", "--seed", "2", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert out.count("\n") == 1
    assert summary["packets"] == 3000 and summary["seed"] == 2
    assert set(summary["classes"]) == {"legitimate", "dos", "flood", "malformed", "slowite",
                                       "bruteforce"}
    for result in summary["classes"].values():
        assert os.path.isfile(result["pcap"]) and os.path.isfile(result["parquet"])


def test_synth_without_json_reports_on_stderr_only(capsys, tmp_path):
    code, out, err = _run(capsys, "lab", "synth", "-o", str(tmp_path), "--packets", "1000",
                          "--mix", "legitimate=1", "--no-rows")
    assert code == 0 and out == ""
    assert "1,000 synthetic packets" in err
    assert not (tmp_path / "legitimate.parquet").exists()


@pytest.mark.parametrize("argv, message", [
    (["--mix", "legitimate=0.5,dos=0.6"], "--mix shares add up to 1.1"),
    (["--mix", "bogus=1"], "unknown class 'bogus'"),
])
def test_bad_mix_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    code, out, err = _run(capsys, "lab", "synth", "-o", str(tmp_path), *argv)
    assert code == 2 and out == ""
    assert err.startswith("mqttids: error: ") and message in err
    assert err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # refused before any work


@pytest.mark.parametrize("argv", [["--packets", "0"], ["--packets", "many"],
                                  ["--workers", "0"], ["--seed", "x"]])
def test_bad_numbers_are_usage_errors(capsys, tmp_path, argv):
    code, _, err = _run(capsys, "lab", "synth", "-o", str(tmp_path), *argv)
    assert code == 2 and "error" in err


def test_output_that_is_a_file_is_one_line(capsys, tmp_path):
    target = tmp_path / "f"
    target.write_text("")
    code, _, err = _run(capsys, "lab", "synth", "-o", str(target), "--packets", "10")
    assert code != 0 and "is not a folder" in err and err.count("\n") == 1


@pytest.mark.parametrize("text, value", [("10M", 10_000_000), ("250k", 250_000),
                                         ("10_000", 10_000), ("7", 7)])
def test_packet_counts_read_as_people_write_them(text, value):
    assert _count(text) == value


def test_packet_count_rejects_fractions():
    with pytest.raises(argparse.ArgumentTypeError, match="not a packet count"):
        _count("1.5M")


@pytest.mark.parametrize("argv", [["--seconds", "0"], ["--seconds", "-1"],
                                  ["--class", "legit"]])
def test_record_checks_its_options_first(capsys, tmp_path, argv):
    code, _, err = _run(capsys, "lab", "record", "-o", str(tmp_path), *argv)
    assert code == 2 and "error" in err


@pytest.mark.broker
def test_record_without_capture_rights_says_so_in_one_line(broker_programs):
    """Run as the unprivileged user nobody: the capture is refused before anything starts."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to become an unprivileged user")
    if shutil.which("tcpdump") is None and shutil.which("dumpcap") is None:
        pytest.skip("no capture program installed")
    with tempfile.TemporaryDirectory(prefix="mqttids-lab-test-") as shared:
        os.chmod(shared, 0o777)  # nobody must be able to write here
        _record_as_nobody(setpriv, Path(shared))


def _record_as_nobody(setpriv: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
         "mqttids.cli", "lab", "record", "-o", str(out), "--seconds", "1", "--class", "dos"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    if "No module named" in result.stderr or "Permission denied" in result.stderr[:200]:
        pytest.skip(f"user nobody cannot run this checkout: {result.stderr[:120]}")
    assert result.returncode == 2
    assert result.stderr.startswith("mqttids: error: ") and result.stderr.count("\n") == 1
    assert "capture" in result.stderr and "root" in result.stderr
    assert not (out / "dos.pcap").exists() and not (out / "broker.log").exists()
