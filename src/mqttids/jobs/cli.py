"""Command line of the Spark jobs, the process that ``spark-submit`` runs.

    spark-submit [--master URL] .../mqttids/jobs/main.py [--warehouse URL] JOB [OPTIONS]
    python -m mqttids.jobs [--master URL] [--warehouse URL] JOB [OPTIONS]

Jobs: ``ingest-csv``, ``analyze``, ``train``. The master comes from
spark-submit (or Dataproc) unless ``--master`` names one; a plain ``python -m``
run without either uses ``local[*]``. Each job prints one JSON object, on a
line of its own, on stdout (the shape ``mqttids COMMAND --json`` prints) and,
with ``--result URI``, also writes it to that URI through Hadoop, so a Dataproc
run leaves its answers in Cloud Storage. Logs go to stderr; spark-submit
merges a Python driver's stderr into its stdout, so there ``--result`` (or
the one line that starts with ``{``) is the machine-readable answer. Errors
print one line on stderr and exit non-zero, which fails the Spark application
and the Dataproc job with it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from mqttids.cli.common import print_json
from mqttids.config import DEFAULT_WAREHOUSE, resolve
from mqttids.errors import MqttidsError

log = logging.getLogger("mqttids.jobs")

JOBS = ("ingest-csv", "analyze", "train")


def _whole(option: str, minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{option} must be a whole number >= {minimum}, "
                                             f"got {text!r}")
        return value
    return parse


def _ingest_parser(sub) -> None:
    p = sub.add_parser("ingest-csv", help="MQTTset CSV files (any URI, globs too) into the "
                                          "warehouse, parsed on the executors",
                       description="Load MQTTset CSV files into the warehouse with Spark: "
                                   "one batch per file, skipped when its SHA-256 is already "
                                   "in the ledger; bad rows go to the rejects table.")
    p.add_argument("sources", nargs="+", metavar="URI",
                   help="CSV files: paths, file://, gs://, hdfs:// URIs or globs")
    p.add_argument("--split", required=True, choices=["train", "test"])
    p.add_argument("--label", default=None,
                   help="label for rows whose file has no target column")


def _analyze_parser(sub) -> None:
    p = sub.add_parser("analyze", help="Spark analytics and a data profile of the packets",
                       description="The answers of `mqttids analyze`, computed where Spark "
                                   "runs; writes the analysis_* tables to the warehouse.")
    p.add_argument("--top-flags", type=_whole("--top-flags", 1), default=5, metavar="X")
    p.add_argument("--top-values", type=_whole("--top-values", 0), default=5, metavar="K")
    p.add_argument("--conflicts", type=_whole("--conflicts", 0), default=10, metavar="N",
                   help="largest label-conflicting groups to list")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqttids.jobs", description="mqttids Spark jobs for spark-submit and Dataproc.")
    parser.add_argument("--warehouse", metavar="URL", default=None,
                        help="parquet:URI (local path, file://, gs://, hdfs://) or "
                             "postgresql://...; also MQTTIDS_WAREHOUSE "
                             f"(default {DEFAULT_WAREHOUSE})")
    parser.add_argument("--master", metavar="URL", default=None,
                        help="Spark master; default: spark-submit's, else local[*]")
    parser.add_argument("--result", metavar="URI", default=None,
                        help="also write the JSON result to this URI (e.g. gs://B/analyze.json)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="job", metavar="JOB", required=True)
    _ingest_parser(sub)
    _analyze_parser(sub)
    from mqttids.jobs.train import add_parser as train_parser

    train_parser(sub)
    return parser


def job_session(master: str | None):
    """The Spark session: the given master, else spark-submit's, else ``local[*]``.

    A master set in code would override spark-submit's ``--master``, so the one
    spark-submit chose (a system property of its JVM) is read back and passed on.
    """
    from pyspark import SparkConf, SparkContext

    from mqttids.spark.session import get_spark

    if master is None and os.environ.get("PYSPARK_GATEWAY_PORT"):
        # Started by spark-submit: connect to its JVM, whose properties hold --master.
        SparkContext._ensure_initialized()
        master = SparkConf().get("spark.master", None)
    chosen = master or "local[*]"
    if chosen.startswith("local"):
        # Python workers of a local run are this interpreter, the one with mqttids in it.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return get_spark(chosen, app_name="mqttids-jobs")


def check_args(args) -> None:
    """Refuse bad options before a Spark session starts (that takes seconds)."""
    if args.job == "ingest-csv":
        from mqttids.warehouse.base import check_ingest_options

        check_ingest_options(args.split, args.label, ())
    elif args.job == "train":
        from mqttids.jobs.train import options_from

        options_from(args)


def run_job(args, spark) -> dict:
    """Run the job ``args`` names on ``spark`` and return its JSON object."""
    from mqttids.jobs.store import open_job_warehouse

    url = resolve(args.warehouse, "MQTTIDS_WAREHOUSE", DEFAULT_WAREHOUSE)
    with open_job_warehouse(spark, url) as wh:
        log.info("%s on %s with warehouse %s", args.job, spark.sparkContext.master,
                 wh.display_url)
        if args.job == "ingest-csv":
            from mqttids.jobs.ingest_csv import ingest_csv

            return ingest_csv(spark, wh, args.sources, args.split, args.label).to_json()
        if args.job == "analyze":
            from mqttids.jobs.analyze import analyze_job

            return analyze_job(wh, args.top_flags, args.top_values, args.conflicts)
        from mqttids.jobs.train import train_job

        return train_job(spark, wh, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Diagnostics on stderr, mqttids' at --log-level and other libraries' (py4j) at
    # WARNING. Note: spark-submit merges the driver's stderr into its stdout; --result
    # gives the JSON object a place of its own there.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mqttids").setLevel(args.log_level)
    spark = None
    try:
        check_args(args)
        spark = job_session(args.master)
        result = run_job(args, spark)
        if args.result:
            from mqttids.jobs import hadoopfs

            text = json.dumps(result, default=str, indent=1) + "\n"
            log.info("result written to %s",
                     hadoopfs.write_bytes(spark, args.result, text.encode()))
        print_json(result)
        return 0
    except MqttidsError as exc:
        sys.stderr.write(f"mqttids.jobs: error: {exc}\n")
        return exc.exit_code
    finally:
        if spark is not None:
            spark.stop()
