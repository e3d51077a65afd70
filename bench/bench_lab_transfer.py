"""Train on synthetic traffic, score on recorded traffic: how far `lab synth` carries.

Steps (each an ordinary `mqttids` command, in a fresh warehouse under
bench/out/lab-transfer): `lab synth` -> ingest as train; `lab record` (a real
Mosquitto under real attack; needs root or capture rights) -> ingest as test;
`train`, then `evaluate`, with and without tcp.time_delta (its values on
loopback have nothing in common with a simulated LAN). Prints one JSON object
and writes it to transfer.json; docs/lab.md quotes the figures as they come.

    python -m bench lab_transfer            # defaults below
    python bench/bench_lab_transfer.py --packets 300k --seconds 10 --models lr,rf
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class StepFailed(Exception):
    """A command of the experiment exited non-zero; the message is its error line."""


def _mqttids(*argv: str, warehouse: Path | None = None) -> dict:
    """Run one command with --json and return its object; stop on failure."""
    cmd = [sys.executable, "-m", "mqttids.cli", "--quiet"]
    if warehouse is not None:
        cmd += ["--warehouse", f"parquet:{warehouse}", "--spark-master", "local[2]"]
    cmd += [*argv, "--json"]
    sys.stderr.write("$ mqttids " + " ".join(cmd[4:]) + "\n")
    done = subprocess.run(cmd, capture_output=True, text=True,
                          env=os.environ | {"SPARK_LOCAL_IP": "127.0.0.1"})
    if done.returncode != 0:
        raise StepFailed(f"mqttids {' '.join(argv[:2])} failed ({done.returncode}): "
                         f"{done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def _figures(evaluation: dict) -> list[dict]:
    return [{"model": m["name"], "accuracy": round(m["accuracy"], 4),
             "macro_f1": round(m["macro_f1"], 4),
             "recall": {k: round(v["recall"], 3) for k, v in m["per_class"].items()}}
            for m in evaluation["models"]]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_lab_transfer", description=__doc__)
    parser.add_argument("--packets", default="300k", help="synthetic train packets")
    parser.add_argument("--seconds", default="10", help="recorded seconds per class")
    parser.add_argument("--models", default="lr,rf", help="models to train")
    parser.add_argument("--features", default="packet", choices=("packet", "flow"))
    parser.add_argument("--work", default=str(HERE / "out" / "lab-transfer"))
    args = parser.parse_args(argv)
    try:
        result = _experiment(args)
    except StepFailed as exc:
        if "may not capture" in str(exc):
            sys.stdout.write(f"skipped: recording needs capture rights ({exc})\n")
            return 0
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def _experiment(args: argparse.Namespace) -> dict:
    work = Path(args.work)
    started = time.perf_counter()
    synth = _mqttids("lab", "synth", "-o", str(work / "synth"), "--packets", args.packets,
                     "--seed", "1")
    record = _mqttids("lab", "record", "-o", str(work / "record"), "--seconds", args.seconds,
                      "--seed", "2")
    result = {"train_rows": sum(c["rows"] for c in synth["classes"].values()),
              "test_rows": sum(c["rows"] for c in record["classes"].values()),
              "features": args.features, "runs": {}}
    for variant, extra in (("with_time_delta", []), ("without_time_delta", ["--no-time-delta"])):
        warehouse = work / f"warehouse-{variant}"
        models_dir = work / f"models-{variant}"
        _mqttids("ingest", *sorted(glob.glob(str(work / "synth" / "*.parquet"))), "--split",
                 "train", warehouse=warehouse)
        _mqttids("ingest", *sorted(glob.glob(str(work / "record" / "*.parquet"))), "--split",
                 "test", warehouse=warehouse)
        _mqttids("train", "--models", args.models, "--features", args.features, "--folds", "2",
                 "--models-dir", str(models_dir), *extra, warehouse=warehouse)
        evaluation = _mqttids("evaluate", "--models-dir", str(models_dir), "--no-png",
                              warehouse=warehouse)
        result["runs"][variant] = _figures(evaluation)
    result["seconds"] = round(time.perf_counter() - started, 1)
    (work / "transfer.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
