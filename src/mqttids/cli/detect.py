"""`mqttids detect`: a capture file, a pcap stream or a live interface -> alerts."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path

from mqttids.capture.errors import CaptureError
from mqttids.capture.extract import check_ports
from mqttids.cli.common import print_json
from mqttids.config import DEFAULT_MQTT_PORT
from mqttids.detect import (DEFAULT_BATCH_ROWS, DEFAULT_IDLE_S, DEFAULT_MAX_CONNECTIONS,
                            DEFAULT_MIN_SCORE, DEFAULT_WINDOW_S, Detector, JsonLinesSink,
                            OpenSource, WarehouseSink, load_scorer, parse_source)
from mqttids.detect.scoring import DEFAULT_MODELS_DIR
from mqttids.errors import UsageError
from mqttids.report.dashboard import Dashboard, parse_bind

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "detect", help="real-time detection: a capture, - (pcap on stdin) or iface:NAME -> alerts",
        description="Decode MQTT traffic as it arrives, score it with a trained model in "
                    "micro-batches (--batch rows or 50 ms, whichever comes first) and raise one "
                    "alert per connection, attack label and --window. Alerts are JSON lines: to "
                    "--alerts FILE (appended), else to stdout unless --json; with a PostgreSQL "
                    "warehouse also rows of mqtt.alerts. Stops at the end of input or on "
                    "Ctrl-C/SIGTERM, after scoring and writing everything read. Example: "
                    "tcpdump -i eth0 -U -w - port 1883 | mqttids detect - --model rf")
    p.add_argument("source", metavar="SOURCE",
                   help="a pcap/pcapng file, - for a pcap stream on stdin, or iface:NAME to "
                        "capture with tcpdump (or dumpcap)")
    p.add_argument("--model", required=True, metavar="NAME",
                   help="model bundle to score with (from `mqttids train`): a bundle name "
                        "such as rf-flow, a kind (rf means rf-flow, else rf-packet), or a "
                        "bundle folder")
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR, metavar="DIR",
                   help=f"where the bundles are (default {DEFAULT_MODELS_DIR})")
    p.add_argument("--alerts", metavar="FILE", help="append alerts to FILE as JSON lines")
    p.add_argument("--window", type=float, default=DEFAULT_WINDOW_S, metavar="SECONDS",
                   help=f"one alert per connection and label per window "
                        f"(default {DEFAULT_WINDOW_S:g})")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH_ROWS, metavar="N",
                   help=f"score when N rows wait or after 50 ms (default {DEFAULT_BATCH_ROWS})")
    p.add_argument("--port", type=int, action="append", default=[], metavar="N",
                   help=f"also read MQTT on TCP port N (port {DEFAULT_MQTT_PORT} always)")
    p.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE, metavar="P",
                   help="raise alerts only for rows whose attack label has at least this "
                        f"probability (default {DEFAULT_MIN_SCORE:g}; 0 alerts on every "
                        "attack prediction)")
    p.add_argument("--idle", type=float, default=DEFAULT_IDLE_S, metavar="SECONDS",
                   help=f"forget connections silent this long (default {DEFAULT_IDLE_S:g})")
    p.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                   metavar="N", help="most connections kept in memory; the least recently "
                                     f"seen go first (default {DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--json", action="store_true",
                   help='print {"packets", "alerts", "seconds"} on stdout at the end')
    p.add_argument("--dashboard", metavar="[HOST:]PORT",
                   help="serve a live page of alerts and traffic per class (host 127.0.0.1 "
                        "unless given; stops when detect stops)")
    p.set_defaults(run=run)


def check_options(args) -> None:
    """Refuse bad values before any work starts, one rule per line."""
    if not args.window > 0:
        raise UsageError(f"--window {args.window:g} must be a positive number of seconds")
    if args.batch < 1:
        raise UsageError(f"--batch {args.batch} must be at least 1 row")
    if not 0.0 <= args.min_score <= 1.0:
        raise UsageError(f"--min-score {args.min_score:g} must be a probability from 0 to 1")
    if not args.idle > 0:
        raise UsageError(f"--idle {args.idle:g} must be a positive number of seconds")
    if args.max_connections < 1:
        raise UsageError(f"--max-connections {args.max_connections} must be at least 1")


def run(args, settings) -> int:
    check_options(args)
    ports = check_ports(dict.fromkeys([DEFAULT_MQTT_PORT] + args.port))
    spec = parse_source(args.source)
    if spec.kind == "stdin" and sys.stdin.isatty():
        raise UsageError("SOURCE - reads a pcap stream from stdin, but stdin is a terminal: "
                         "pipe a capture in, e.g. tcpdump -i eth0 -U -w - port 1883 | "
                         "mqttids detect - --model rf")
    bind = parse_bind(args.dashboard) if args.dashboard else None
    scorer = load_scorer(args.model, args.models_dir)
    sinks, listeners = [], []
    with contextlib.ExitStack() as stack:
        if args.alerts:
            sinks.append(JsonLinesSink.to_file(args.alerts))
        elif not args.json:
            sinks.append(JsonLinesSink(sys.stdout))
        if not settings.warehouse.startswith("parquet:"):
            from mqttids.warehouse import open_warehouse

            warehouse = stack.enter_context(open_warehouse(settings.warehouse))
            sinks.append(WarehouseSink(warehouse, scorer.name))
        for sink in sinks:
            stack.callback(sink.close)
        if bind is not None:
            board = stack.enter_context(Dashboard(*bind))
            sinks.append(board.on_alerts)
            listeners.append(board.on_batch)
            sys.stderr.write(f"dashboard: {board.url}\n")
        detector = Detector(scorer, ports=ports, window_s=args.window, batch_rows=args.batch,
                            idle_s=args.idle, max_connections=args.max_connections,
                            min_score=args.min_score,
                            source=spec.name, on_alerts=sinks, on_batch=listeners)
        source = stack.enter_context(OpenSource(spec, ports))
        stats = _run_until_stopped(detector, source)
    if args.json:
        print_json(stats.to_json())
    elif not settings.quiet:
        sys.stderr.write(f"{stats.packets} packets, {stats.rows} rows scored, {stats.alerts} "
                         f"alerts ({stats.seconds:.2f} s)\n")
    return 0


def _run_until_stopped(detector: Detector, source: OpenSource):
    """Run until the input ends; SIGINT or SIGTERM stop it cleanly (a second one at once)."""
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("stopping on signal %d: scoring what was read", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return detector.run(source.stream, source.spec.name, stop=stop,
                            on_stop=source.stop_program)
    except CaptureError:
        source.check_program()  # a capture program's own message says more
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        source.check_program()
