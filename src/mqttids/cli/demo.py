"""`mqttids demo`: the main job end to end, on traffic it makes itself.

Each step is the same command a user would type, run in this process, so
the demo shows (and tests) exactly the paths users take: synthetic captures
for a train and a test day, ingest into the embedded warehouse, Spark
analytics, training and evaluation, detection on a test capture, and the
HTML report.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from mqttids.errors import MqttidsError
from mqttids.schema import LABELS

log = logging.getLogger(__name__)

DEFAULT_DIR = "mqttids-data/demo"


class DemoStepError(MqttidsError):
    """A step of the demo failed; the message names the step and how to rerun it."""


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="the main job end to end on synthetic traffic",
        description="Make a train and a test day of synthetic MQTT traffic, ingest them into "
                    "the warehouse, analyse them with Spark, train and evaluate the models, "
                    "run the detector on a test capture and write the HTML report.")
    p.add_argument("-o", "--output", default=DEFAULT_DIR, metavar="DIR",
                   help=f"folder for the demo's captures, alerts and report ({DEFAULT_DIR})")
    p.add_argument("--packets", type=int, default=60_000, metavar="N",
                   help="synthetic packets for the train day; the test day gets half")
    p.add_argument("--models", default="lr,rf,mlp,dnn", metavar="LIST",
                   help="models to train (lr,rf,mlp,dnn)")
    p.add_argument("--folds", type=int, default=3, metavar="K", help="cross-validation folds")
    p.set_defaults(run=run)


def steps(args, out: Path) -> list[tuple[str, list[str]]]:
    """The demo as (title, argv) pairs, in order."""
    train, test = out / "train", out / "test"
    plan = [
        ("make a train day of traffic",
         ["lab", "synth", "-o", str(train), "--packets", str(args.packets), "--seed", "1"]),
        ("make a test day of traffic",
         ["lab", "synth", "-o", str(test), "--packets", str(args.packets // 2), "--seed", "2"]),
    ]
    for split, folder in (("train", train), ("test", test)):
        for label in LABELS:
            plan.append((f"ingest {split} {label}",
                         ["ingest", str(folder / f"{label}.pcap"), "--split", split,
                          "--label", label]))
    alerts = out / "alerts.jsonl"
    plan += [
        ("analyse the warehouse with Spark", ["analyze"]),
        ("train the models", ["train", "--models", args.models, "--folds", str(args.folds),
                              "--features", "flow"]),
        ("evaluate them on the test day", ["evaluate"]),
        ("detect attacks in a test capture",
         ["detect", str(test / "bruteforce.pcap"), "--model", "rf", "--alerts", str(alerts)]),
        ("write the report", ["report", "-o", str(out / "report"), "--alerts", str(alerts)]),
    ]
    return plan


def run(args, settings) -> int:
    from mqttids.cli import main

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "alerts.jsonl").unlink(missing_ok=True)
    common = ["--warehouse", settings.warehouse] + (["--quiet"] if settings.quiet else [])
    plan = steps(args, out)
    for number, (title, argv) in enumerate(plan, 1):
        sys.stderr.write(f"\n== demo step {number}/{len(plan)}: {title}\n"
                         f"   mqttids {' '.join(argv)}\n")
        sys.stderr.flush()
        code = main(common + argv)
        if code:
            raise DemoStepError(f"step {number} ({title}) failed with exit code {code}; "
                                f"rerun it alone with: mqttids {' '.join(argv)}")
    report = out / "report" / "report.html"
    sys.stdout.write(f"report: {report.resolve()}\n")
    return 0
