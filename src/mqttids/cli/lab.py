"""`mqttids lab`: labelled MQTT traffic, synthetic (`synth`) or recorded live (`record`)."""

from __future__ import annotations

import argparse
import sys

from mqttids.cli.common import print_json, progress_bar
from mqttids.lab import home
from mqttids.lab.synth import DEFAULT_PACKETS, DEFAULT_SEED, parse_mix


def _count(text: str) -> int:
    """Packet counts as people write them: 10000000, 10_000_000, 10M, 250k."""
    raw = text.strip().lower().replace("_", "")
    factor = {"k": 10**3, "m": 10**6}.get(raw[-1:], 1)
    digits = raw[:-1] if factor > 1 else raw
    try:
        value = int(digits) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a packet count: use digits, optionally with k or M "
            "(e.g. 250k, 10M)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the packet count must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be in (0, 3600]")
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: use 1 or more processes")
    return value


def register(sub) -> None:
    p = sub.add_parser("lab", help="labelled MQTT traffic: synthetic pcaps or a live recording",
                       description="Make labelled MQTT traffic: one pcap and one Parquet file "
                                   "of decoded rows per class "
                                   f"({', '.join(home.CLASSES)}).")
    lab_sub = p.add_subparsers(dest="lab_command", metavar="SUBCOMMAND")
    lab_sub.required = True

    s = lab_sub.add_parser(
        "synth", help="simulate the smart home and five attacks into pcaps",
        description="Write DIR/CLASS.pcap (genuine Ethernet/IPv4/TCP/MQTT frames) and "
                    "DIR/CLASS.parquet (their rows, from the capture decoder) for each class, "
                    "plus DIR/summary.json. The same options give the same bytes.")
    s.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output folder (created when missing)")
    s.add_argument("--packets", type=_count, default=DEFAULT_PACKETS, metavar="N",
                   help=f"frames in all classes together (default {DEFAULT_PACKETS:,}; "
                        "k and M suffixes allowed)")
    s.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="S",
                   help=f"random seed (default {DEFAULT_SEED})")
    default_mix = ",".join(f"{k}={v}" for k, v in home.DEFAULT_MIX.items())
    s.add_argument("--mix", metavar="CLASS=SHARE,...",
                   help=f"share of the packets per class; unnamed classes get 0 "
                        f"(default {default_mix})")
    s.add_argument("--workers", type=_workers, metavar="N",
                   help="processes writing classes in parallel (default: one per CPU)")
    s.add_argument("--no-rows", action="store_true",
                   help="write the pcaps only, not the decoded Parquet rows")
    s.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    s.set_defaults(run=run_synth)

    r = lab_sub.add_parser(
        "record", help="drive a real Mosquitto with real clients and attacks, and capture",
        description="Start a private Mosquitto on a free port of 127.0.0.1, then for each "
                    "class capture the loopback traffic (tcpdump or dumpcap) while the class's "
                    "clients run: DIR/CLASS.pcap, DIR/CLASS.parquet, DIR/summary.json (with "
                    "the port, which `extract --port` needs to read the pcaps). Needs root "
                    "or capture rights.")
    r.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output folder (created when missing)")
    r.add_argument("--seconds", type=_seconds, default=10.0, metavar="S",
                   help="seconds of traffic recorded per class (default 10)")
    r.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="S",
                   help=f"random seed of the drivers (default {DEFAULT_SEED})")
    r.add_argument("--class", dest="classes", action="append", choices=home.CLASSES,
                   metavar="CLASS", help="record only this class (repeatable; default all)")
    r.add_argument("--no-rows", action="store_true",
                   help="write the pcaps only, not the decoded Parquet rows")
    r.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    r.set_defaults(run=run_record)


def run_synth(args, settings) -> int:
    from mqttids.lab.synth import write_scenario

    mix = parse_mix(args.mix)  # a bad --mix fails here, in one line, before any work
    with progress_bar("lab synth", args.packets, settings.quiet) as bar:
        summary = write_scenario(args.output, packets=args.packets, seed=args.seed, mix=mix,
                                 rows=not args.no_rows, workers=args.workers,
                                 progress=bar.advance)
    _report(args, settings, summary, "synthetic")
    return 0


def run_record(args, settings) -> int:
    from mqttids.lab.record import record_scenario

    classes = args.classes or list(home.CLASSES)
    with progress_bar("lab record", len(classes), settings.quiet) as bar:
        summary = record_scenario(args.output, seconds=args.seconds, seed=args.seed,
                                  classes=classes, rows=not args.no_rows,
                                  progress=bar.advance)
    _report(args, settings, summary, "recorded")
    return 0


def _report(args, settings, summary: dict, what: str) -> None:
    if args.json:
        print_json(summary)
        return
    if settings.quiet:
        return
    for kind, result in summary["classes"].items():
        rows = f", {result['rows']:,} rows" if "rows" in result else ""
        sys.stderr.write(f"{kind:>11}: {result['packets']:,} packets{rows} -> "
                         f"{result['pcap']}\n")
    sys.stderr.write(f"{summary['packets']:,} {what} packets in {summary['seconds']:.1f} s "
                     f"-> {summary['output']}\n")
