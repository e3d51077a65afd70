"""`mqttids extract`: captures to feature rows (CSV or Parquet)."""

from __future__ import annotations

import itertools
import logging
import sys

from mqttids.capture import ExtractStats, iter_row_batches
from mqttids.capture.extract import (ARROW_SCHEMA, check_label, check_ports, check_sources,
                                     source_size)
from mqttids.capture.output import check_output, write_batches
from mqttids.cli.common import print_json, progress_bar
from mqttids.config import DEFAULT_MQTT_PORT
from mqttids.errors import UsageError

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "extract", help="captures (or - for a stream on stdin) to MQTTset feature rows",
        description="Decode pcap/pcapng captures into one row per packet that carries MQTT "
                    "(its first occurrence of each field, as tshark -E occurrence=f), or one "
                    "row per MQTT message with --per-message. Columns: the 33 MQTTset "
                    "fields, the label, provenance and ctx. context columns.")
    p.add_argument("pcap", nargs="+", metavar="PCAP", help="capture files, or - for stdin")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file; .csv or .parquet picks the format")
    p.add_argument("--port", type=int, action="append", default=[], metavar="N",
                   help=f"also read MQTT on TCP port N (port {DEFAULT_MQTT_PORT} always)")
    p.add_argument("--label", help="class to write in the target column")
    p.add_argument("--per-message", action="store_true",
                   help="one row per MQTT message instead of per packet")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(run=run)


def run(args, settings) -> int:
    ports = check_ports([DEFAULT_MQTT_PORT] + args.port)
    check_label(args.label)
    out = check_output(args.output)
    check_sources(args.pcap)
    if args.pcap.count("-") > 1:
        raise UsageError("stdin (-) can be read only once: give '-' a single time")
    stats = ExtractStats()
    total = sum(source_size(p) or 0 for p in args.pcap)
    with progress_bar("extract", None, settings.quiet or total == 0) as bar:
        batches = itertools.chain.from_iterable(
            iter_row_batches(p, ports=ports, per_message=args.per_message, label=args.label,
                             stats=stats, progress=bar.advance)
            for p in args.pcap)
        write_batches(out, ARROW_SCHEMA, batches)
    for warning in stats.warnings:
        log.debug("warning: %s", warning)
    if args.json:
        print_json(stats.to_json(str(out)))
    elif not settings.quiet:
        sys.stderr.write(f"{stats.packets} packets, {stats.rows} rows, {stats.malformed} "
                         f"malformed messages -> {out} ({stats.seconds:.2f} s)\n")
    return 0
