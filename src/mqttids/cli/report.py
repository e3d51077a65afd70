"""`mqttids report`: one self-contained HTML page of what the other stages produced."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mqttids.cli.common import print_json

DEFAULT_OUT = "mqttids-data/report"


def register(sub) -> None:
    from mqttids.report import DEFAULT_BENCHMARKS, DEFAULT_MODELS_DIR

    p = sub.add_parser(
        "report", help="write the HTML report (one file, plots embedded)",
        description="Write DIR/report.html: class balance and the feature profile (from "
                    "`mqttids analyze`), per model the confusion matrix, per-class F1 and the "
                    "packet-level ceiling beside its accuracy (`mqttids evaluate`), "
                    "cross-validation scores against hyperparameters (`mqttids train`), alerts "
                    "over time (`mqttids detect`) and benchmark figures (docs/benchmarks.md). "
                    "Whatever is missing is named in the page with the command that makes it. "
                    "The page needs no server and loads nothing from the network. Prints the "
                    "report's path.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-o", "--output", default=DEFAULT_OUT, metavar="DIR",
                   help="folder to write report.html into (made if missing)")
    p.add_argument("--alerts", action="append", default=[], metavar="FILE",
                   help="alerts JSON-lines file written by `mqttids detect --alerts FILE`; "
                        "repeat for more (the warehouse's alerts table is read as well)")
    p.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR), metavar="DIR",
                   help="folder of model bundles whose metadata to read")
    p.add_argument("--benchmarks", default=str(DEFAULT_BENCHMARKS), metavar="FILE",
                   help="Markdown file of benchmark figures")
    p.add_argument("--no-warehouse", action="store_true",
                   help="read no warehouse (only bundles, alerts files and benchmarks)")
    p.add_argument("--json", action="store_true",
                   help='print {"report": PATH, "sections": {...}, "missing": [...], ...}')
    p.set_defaults(run=run)


def run(args, settings) -> int:
    from mqttids.report import write_report
    from mqttids.report.page import SECTIONS

    result = write_report(Path(args.output),
                          None if args.no_warehouse else settings.warehouse,
                          models_dir=Path(args.models_dir), alert_files=tuple(args.alerts),
                          benchmarks=Path(args.benchmarks))
    if args.json:
        print_json(result.to_json())
        return 0
    if not settings.quiet:
        commands = {sid: command for sid, _, command in SECTIONS}
        for sid in result.missing:
            print(f"report: no {sid} yet; make it with: {commands[sid]}", file=sys.stderr)
    print(result.path)
    return 0
