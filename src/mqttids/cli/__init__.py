"""The `mqttids` console script: parse, call the library, print.

Each command lives in its own module here and exposes ``register(subparsers)``;
the module names are listed in COMMANDS. No SQL, Spark or decoding logic lives
in this package: it turns options into library calls and library errors into
one-line messages.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mqttids import __version__
from mqttids.config import settings_from
from mqttids.errors import MqttidsError

COMMANDS = ("extract", "analyze")

log = logging.getLogger("mqttids")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqttids",
        description="MQTT intrusion detection: captures to features, warehouse, "
                    "Spark analytics, models and live alerts.")
    parser.add_argument("--version", action="version", version=f"mqttids {__version__}")
    parser.add_argument("--warehouse", metavar="URL",
                        help="parquet:PATH (default parquet:./mqttids-data/warehouse) or "
                             "postgresql://...; also MQTTIDS_WAREHOUSE")
    parser.add_argument("--spark-master", metavar="URL",
                        help="Spark master (default local[*]); also MQTTIDS_SPARK_MASTER")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--log-level", metavar="LEVEL",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info",
                                 "warning", "error"],
                        help="diagnostics on stderr (default WARNING)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"mqttids.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = settings_from(args.warehouse, args.spark_master, args.quiet, args.log_level)
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args, settings) or 0)
    except MqttidsError as exc:
        print(f"mqttids: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mqttids: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
