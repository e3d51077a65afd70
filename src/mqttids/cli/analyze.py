"""`mqttids analyze`: Spark analytics and a data profile of the warehouse's packets."""

from __future__ import annotations

import argparse
import logging

from rich.console import Console
from rich.table import Table

from mqttids.cli.common import print_json, progress_bar
from mqttids.errors import MqttidsError, UsageError
from mqttids.schema import BY_NAME, HEX
from mqttids.spark.analytics import MAX_TOP

log = logging.getLogger(__name__)


class NoPacketsError(MqttidsError):
    """The warehouse holds no packet rows to analyse."""


def register(sub) -> None:
    p = sub.add_parser(
        "analyze", help="Spark analytics and a data profile of the warehouse",
        description="Answer, with Spark, what the data hold before any model: the average "
                    "mqtt.len in train, the average tcp.len per target, the most frequent "
                    "tcp.flags (ties at the last rank kept), the class balance per split, a "
                    "profile of every column, label-conflicting duplicates with the "
                    "packet-level accuracy ceiling, and the rows train and test share. "
                    "Prints tables (or --json) and writes analysis_* tables to the "
                    "warehouse for the report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--top-flags", default="5", metavar="X",
                   help="how many of the most frequent tcp.flags values to list (X >= 1)")
    p.add_argument("--top-values", default="5", metavar="K",
                   help="most frequent values shown per column in the profile (K >= 0)")
    p.add_argument("--conflicts", default="10", metavar="N",
                   help="largest label-conflicting groups to list (N >= 0)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object on stdout instead of tables")
    p.set_defaults(run=run)


def whole_number(option: str, text: str, minimum: int) -> int:
    """``text`` as an integer in [minimum, MAX_TOP], or a one-line UsageError."""
    try:
        value = int(text, 10)
    except (TypeError, ValueError):
        value = None
    if value is None or not minimum <= value <= MAX_TOP:
        raise UsageError(f"{option} must be a whole number from {minimum} to {MAX_TOP}, "
                         f"got {text!r}: e.g. {option} 5")
    return value


def run(args, settings) -> int:
    top_flags = whole_number("--top-flags", args.top_flags, 1)
    top_values = whole_number("--top-values", args.top_values, 0)
    conflicts = whole_number("--conflicts", args.conflicts, 0)

    from mqttids.spark.analysis_tables import analysis_tables
    from mqttids.spark.analytics import ANALYZE_STEPS, analyze
    from mqttids.spark.session import get_spark
    from mqttids.warehouse import open_warehouse

    with open_warehouse(settings.warehouse) as wh:
        spark = get_spark(settings.spark_master)
        packets = wh.spark_read(spark, "packets")
        with progress_bar("analyze", ANALYZE_STEPS, settings.quiet) as bar:
            # JDBC reads cost far more than Parquet scans: read PostgreSQL once.
            result = analyze(packets, top_flags=top_flags, top_values=top_values,
                             top_conflicts=conflicts, progress=bar,
                             cache=not settings.warehouse.startswith("parquet:"))
        if result["profile"]["rows"] == 0:
            raise NoPacketsError(f"the warehouse {settings.warehouse} holds no packets: load "
                                 "some first with `mqttids ingest SOURCE --split train`")
        for name, table in analysis_tables(result).items():
            wh.write_table(name, table, mode="overwrite")
        log.info("wrote the analysis_* tables to %s", settings.warehouse)

    if args.json:
        print_json(result)
    else:
        render(result)
    return 0


# -- terminal tables --------------------------------------------------------------------

def _num(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _value(name: str, value, width: int = 24) -> str:
    """A value as Wireshark shows it: hex flags in hex, long text cut short."""
    if value is None:
        return "NULL"
    if BY_NAME[name].kind == HEX and isinstance(value, int):
        return f"0x{value:04x}"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _table(title: str, **kwargs) -> Table:
    """A table at least as wide as its title, so that the title reads on one line."""
    return Table(title=title, min_width=len(title) + 4, **kwargs)


def _bound(name: str, value) -> str:
    return "-" if value is None else _value(name, value)


def _answers(result: dict) -> Table:
    t = _table("Answers", show_header=False)
    ceiling = result["ceiling"]
    profile = result["profile"]
    t.add_row("rows (unlabelled)", f"{profile['rows']:,} ({profile['unlabelled_rows']:,})")
    t.add_row("average mqtt.len in train", _num(result["avg_mqtt_len_train"]))
    t.add_row(f"packet-level accuracy ceiling ({ceiling['split']})", _num(ceiling["accuracy"], 4))
    shared = profile["train_test_shared"]
    t.add_row("test rows whose features occur in train",
              f"{result['train_test_shared_rows']:,} ({shared['vectors']:,} feature rows)")
    return t


def _by_target_and_flags(result: dict) -> list[Table]:
    tcp = _table("Average tcp.len per target (all splits)")
    tcp.add_column("target")
    tcp.add_column("tcp.len", justify="right")
    for label, avg in result["avg_tcp_len_by_target"].items():
        tcp.add_row(label, _num(avg))
    flags = _table("Most frequent tcp.flags (ties at the last rank kept)")
    for name in ("flag", "count"):
        flags.add_column(name, justify="right")
    for f in result["top_tcp_flags"]:
        flags.add_row(_value("tcp.flags", f["flag"]), _num(f["count"]))
    return [tcp, flags]


def _balance_and_ceiling(result: dict) -> list[Table]:
    balance = result["class_balance"]
    labels = list(dict.fromkeys(label for split in balance.values() for label in split))
    t = _table("Class balance (rows)")
    t.add_column("target")
    for split in balance:
        t.add_column(split, justify="right")
    for label in labels:
        t.add_row(label, *[_num(balance[s].get(label, 0)) for s in balance])
    c = _table("Packet-level ceiling: identical 33-feature rows get their majority label")
    for name in ("rows of", "accuracy", "labelled rows", "groups", "conflicting groups",
                 "rows in them"):
        c.add_column(name, justify="right")
    for split, s in result["ceiling"]["by_split"].items():
        c.add_row(split, _num(s["accuracy"], 4), _num(s["rows"]), _num(s["groups"]),
                  _num(s["conflicting_groups"]), _num(s["conflicting_rows"]))
    return [t, c]


def _conflicts(result: dict) -> Table:
    t = _table("Largest label-conflicting groups (all splits)")
    for name, justify in (("rows", "right"), ("labels", "left"), ("features (non-NULL)", "left")):
        t.add_column(name, justify=justify)
    for c in result["ceiling"]["conflicts"]:
        labels = ", ".join(f"{k} {v:,}" for k, v in c["labels"].items())
        features = " ".join(f"{k}={_value(k, v, 12)}" for k, v in c["features"].items())
        t.add_row(_num(c["rows"]), labels, features)
    return t


def _profile(result: dict) -> Table:
    t = _table("Profile (over all rows)")
    t.add_column("field")
    for name in ("null %", "distinct", "min", "max"):
        t.add_column(name, justify="right")
    t.add_column("top values (count)")
    t.add_column("note")
    for c in result["profile"]["columns"]:
        share = "-" if c["null_share"] is None else f"{100 * c['null_share']:.1f}"
        top = ", ".join(f"{_value(c['name'], v['value'], 14)} ({v['count']:,})"
                        for v in c["top_values"])
        note = "empty" if c["empty"] else "constant" if c["constant"] else ""
        t.add_row(f"{c['name']}\n[dim]{c['title']}: {c['meaning']}[/dim]", share,
                  _num(c["distinct"]), _bound(c["name"], c["min"]),
                  _bound(c["name"], c["max"]), top, note)
    return t


def _class_means(result: dict) -> Table:
    columns = [c for c in result["profile"]["columns"] if c["class_means"] and not c["empty"]]
    labels = list(dict.fromkeys(label for c in columns for label in c["class_means"]))
    t = _table("Mean per class (numeric columns that hold values)")
    t.add_column("field")
    for label in labels:
        t.add_column(label, justify="right")
    for c in columns:
        t.add_row(c["name"], *[_num(c["class_means"].get(label), 3) for label in labels])
    return t


def render(result: dict) -> None:
    """The answers as terminal tables on stdout."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    tables = [_answers(result), *_by_target_and_flags(result),
              *_balance_and_ceiling(result), _conflicts(result), _profile(result),
              _class_means(result)]
    for table in tables:
        console.print(table)
    empty = result["profile"]["empty_columns"]
    constant = result["profile"]["constant_columns"]
    console.print(f"empty columns ({len(empty)}): {', '.join(empty) or '-'}")
    console.print(f"constant columns ({len(constant)}): {', '.join(constant) or '-'}")
