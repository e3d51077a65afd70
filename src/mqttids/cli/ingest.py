"""`mqttids ingest`: MQTTset CSVs, captures and Parquet rows into the warehouse."""

from __future__ import annotations

import sys

from mqttids import schema
from mqttids.cli.common import print_json, progress_bar
from mqttids.config import DEFAULT_MQTT_PORT
from mqttids.errors import UsageError
from mqttids.warehouse import open_warehouse


def register(sub) -> None:
    p = sub.add_parser(
        "ingest", help="load MQTTset CSVs, captures or Parquet rows into the warehouse",
        description="Load each SOURCE as one batch: every row is either stored or rejected "
                    "with its line and reason (table rejects), and a source already loaded "
                    "(same sha256) is skipped. SOURCE is an MQTTset CSV (any variant, also "
                    "gzip-compressed), a pcap/pcapng capture, a Parquet file written by "
                    "`mqttids extract`, or - for standard input. The warehouse is "
                    "--warehouse or MQTTIDS_WAREHOUSE (default parquet:./mqttids-data/"
                    "warehouse).")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="files to load, or -")
    p.add_argument("--split", required=True, choices=schema.SPLITS,
                   help="which split the rows belong to")
    p.add_argument("--label", choices=schema.LABELS,
                   help="class of rows that carry none (captures); a row labelled "
                        "otherwise is rejected")
    p.add_argument("--port", type=int, action="append", default=[], metavar="N",
                   help=f"captures: also read MQTT on TCP port N (port {DEFAULT_MQTT_PORT} "
                        "always)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(run=run)


def run(args, settings) -> int:
    if args.sources.count("-") > 1:
        raise UsageError("standard input (-) can be read only once: give '-' a single time")
    ports = (DEFAULT_MQTT_PORT, *args.port)
    with open_warehouse(settings.warehouse) as wh, \
            progress_bar("ingest", None, settings.quiet) as bar:
        report = wh.ingest(args.sources, args.split, label=args.label, ports=ports,
                           progress=bar)
        where = wh.display_url
    if args.json:
        print_json(report.to_json())
        return 0
    if not settings.quiet:
        for batch in report.batches:
            if batch.skipped:
                sys.stderr.write(f"skipped {batch.source}: already loaded as batch "
                                 f"{batch.batch_id}\n")
            else:
                sys.stderr.write(f"batch {batch.batch_id}: {batch.source}: {batch.read} read, "
                                 f"{batch.loaded} loaded, {batch.rejected} rejected "
                                 f"({batch.seconds:.1f} s)\n")
        sys.stderr.write(f"{report.read} read = {report.loaded} loaded + {report.rejected} "
                         f"rejected into {where}; {len(report.skipped_sources)} source(s) "
                         "skipped\n")
        if report.rejected:
            sys.stderr.write("the rejected rows, with line and reason, are in table rejects\n")
    return 0
