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

COMMANDS = ("extract", "lab", "ingest", "analyze", "train", "evaluate", "detect", "report",
            "demo")

log = logging.getLogger("mqttids")


def _global_options(parser: argparse.ArgumentParser, default=None) -> None:
    parser.add_argument("--warehouse", metavar="URL", default=default,
                        help="parquet:PATH (default parquet:./mqttids-data/warehouse) or "
                             "postgresql://...; also MQTTIDS_WAREHOUSE")
    parser.add_argument("--spark-master", metavar="URL", default=default,
                        help="Spark master (default local[*]); also MQTTIDS_SPARK_MASTER")
    parser.add_argument("--quiet", action="store_true", default=default or False,
                        help="no progress bars")
    parser.add_argument("--log-level", metavar="LEVEL", default=default,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info",
                                 "warning", "error"],
                        help="diagnostics on stderr (default WARNING)")


def _leaf_parsers(parser: argparse.ArgumentParser):
    """Every parser that ends a command line (commands and their subcommands)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield parser
        return
    for action in subs:
        for child in action.choices.values():
            yield from _leaf_parsers(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mqttids",
        description="MQTT intrusion detection: captures to features, warehouse, "
                    "Spark analytics, models and live alerts.")
    parser.add_argument("--version", action="version", version=f"mqttids {__version__}")
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"mqttids.cli.{name}").register(sub)
    # The global options also work after the command (`mqttids extract ... --quiet`);
    # SUPPRESS keeps a value given before the command when none is given after.
    for leaf in _leaf_parsers(parser):
        _global_options(leaf, default=argparse.SUPPRESS)
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
