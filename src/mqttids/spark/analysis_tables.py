"""The analyze result as small flat tables, for the warehouse and the report's plots.

Pure: takes the object that :func:`mqttids.spark.analytics.analyze` returns and
gives ``{table name: pyarrow.Table}``. Every table is long and flat (scalar
columns only), so that PostgreSQL and Parquet store it alike and a plot needs
no unpacking. Names all start with ``analysis_``:

- ``analysis_summary``: name, value, detail (the scalar answers);
- ``analysis_tcp_len_by_target``: target, avg_tcp_len;
- ``analysis_top_flags``: rank, flag, flag_hex, count;
- ``analysis_class_balance``: split, target, rows;
- ``analysis_ceiling``: split, accuracy, rows, groups, conflicting_groups, conflicting_rows;
- ``analysis_conflicts``: conflict, split, target, rows, majority, features;
- ``analysis_profile``: one row per column with its title, meaning and figures;
- ``analysis_class_means``: column, target, mean.
"""

from __future__ import annotations

import json

import pyarrow as pa

TABLE_NAMES = ("analysis_summary", "analysis_tcp_len_by_target", "analysis_top_flags",
               "analysis_class_balance", "analysis_ceiling", "analysis_conflicts",
               "analysis_profile", "analysis_class_means")

_SCHEMAS = {
    "analysis_summary": pa.schema([("name", pa.string()), ("value", pa.float64()),
                                   ("detail", pa.string())]),
    "analysis_tcp_len_by_target": pa.schema([("target", pa.string()),
                                             ("avg_tcp_len", pa.float64())]),
    "analysis_top_flags": pa.schema([("rank", pa.int32()), ("flag", pa.int64()),
                                     ("flag_hex", pa.string()), ("count", pa.int64())]),
    "analysis_class_balance": pa.schema([("split", pa.string()), ("target", pa.string()),
                                         ("rows", pa.int64())]),
    "analysis_ceiling": pa.schema([("split", pa.string()), ("accuracy", pa.float64()),
                                   ("rows", pa.int64()), ("groups", pa.int64()),
                                   ("conflicting_groups", pa.int64()),
                                   ("conflicting_rows", pa.int64())]),
    "analysis_conflicts": pa.schema([("conflict", pa.int32()), ("split", pa.string()),
                                     ("target", pa.string()), ("rows", pa.int64()),
                                     ("majority", pa.string()), ("features", pa.string())]),
    "analysis_profile": pa.schema([
        ("column", pa.string()), ("storage", pa.string()), ("title", pa.string()),
        ("meaning", pa.string()), ("kind", pa.string()), ("null_share", pa.float64()),
        ("nulls", pa.int64()), ("distinct", pa.int64()), ("min", pa.float64()),
        ("max", pa.float64()), ("constant", pa.bool_()), ("empty", pa.bool_()),
        ("top_values", pa.string())]),
    "analysis_class_means": pa.schema([("column", pa.string()), ("target", pa.string()),
                                       ("mean", pa.float64())]),
}


def _table(name: str, rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=_SCHEMAS[name])


def _summary(result: dict) -> list[dict]:
    ceiling = result["ceiling"]
    profile = result["profile"]
    return [
        {"name": "rows", "value": profile["rows"], "detail": "rows in the packets table"},
        {"name": "avg_mqtt_len_train", "value": result["avg_mqtt_len_train"],
         "detail": "mean mqtt.len over train rows, NULLs left out"},
        {"name": "ceiling_accuracy", "value": ceiling["accuracy"],
         "detail": f"packet-level ceiling on {ceiling['split']}"},
        {"name": "train_test_shared_rows", "value": result["train_test_shared_rows"],
         "detail": "test rows whose 33 features also occur in train"},
        {"name": "unlabelled_rows", "value": profile["unlabelled_rows"],
         "detail": "rows with a NULL target"},
    ]


def _top_flags(flags: list[dict]) -> list[dict]:
    rows, rank = [], 0
    for i, f in enumerate(flags):
        if i == 0 or f["count"] != flags[i - 1]["count"]:
            rank = i + 1
        rows.append({"rank": rank, "flag": f["flag"], "flag_hex": f"0x{f['flag']:04x}",
                     "count": f["count"]})
    return rows


def _conflicts(conflicts: list[dict]) -> list[dict]:
    rows = []
    for i, c in enumerate(conflicts, start=1):
        features = json.dumps(c["features"], default=str)
        for split, labels in c["by_split"].items():
            rows += [{"conflict": i, "split": split, "target": label, "rows": n,
                      "majority": c["majority"], "features": features}
                     for label, n in labels.items()]
    return rows


def _profile(columns: list[dict]) -> list[dict]:
    def number(v):
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    return [{
        "column": c["name"], "storage": c["storage"], "title": c["title"],
        "meaning": c["meaning"], "kind": c["kind"], "null_share": c["null_share"],
        "nulls": c["nulls"], "distinct": c["distinct"], "min": number(c["min"]),
        "max": number(c["max"]), "constant": c["constant"], "empty": c["empty"],
        "top_values": json.dumps(c["top_values"], default=str),
    } for c in columns]


def analysis_tables(result: dict) -> dict[str, pa.Table]:
    """``{name: table}`` for every table in :data:`TABLE_NAMES`; empty tables keep their schema."""
    profile = result["profile"]
    rows = {
        "analysis_summary": _summary(result),
        "analysis_tcp_len_by_target": [{"target": k, "avg_tcp_len": v}
                                       for k, v in result["avg_tcp_len_by_target"].items()],
        "analysis_top_flags": _top_flags(result["top_tcp_flags"]),
        "analysis_class_balance": [{"split": s, "target": label, "rows": n}
                                   for s, labels in result["class_balance"].items()
                                   for label, n in labels.items()],
        "analysis_ceiling": [{"split": s, **c}
                             for s, c in result["ceiling"]["by_split"].items()],
        "analysis_conflicts": _conflicts(result["ceiling"]["conflicts"]),
        "analysis_profile": _profile(profile["columns"]),
        "analysis_class_means": [{"column": c["name"], "target": label, "mean": m}
                                 for c in profile["columns"]
                                 for label, m in c["class_means"].items()],
    }
    return {name: _table(name, rows[name]) for name in TABLE_NAMES}
