"""A per-column data profile: what each field holds, and which ones carry nothing.

For every feature (and every context column the data has) the profile gives
the share of NULLs, the exact number of distinct values, min and max, the most
frequent values, and the mean per class, next to the field's Wireshark title
and its meaning in MQTT terms. Columns that are empty (all NULL) or constant
(one value, no NULL) are listed: the preprocessing pipeline drops them.

All counts are exact. The value counts come from one aggregation over the
columns stacked as (column, value) pairs, so the data are scanned once however
many columns there are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from mqttids.schema import CONTEXT_FIELDS, FEATURES, FLOAT, Field, field_name
from mqttids.spark.common import (GroupSums, TARGET, is_numeric, label_order, mean_from,
                                  require_columns, split_target_sums)

log = logging.getLogger(__name__)

DEFAULT_TOP_VALUES = 5


def profiled_fields(df) -> list[Field]:
    """The 33 features, then the context columns that ``df`` has."""
    present = set(df.columns)
    return list(FEATURES) + [f for f in CONTEXT_FIELDS if f.storage in present]


def value_stats(df, fields: Iterable[Field], top_values: int = DEFAULT_TOP_VALUES) -> dict:
    """Exact NULL count, distinct count, min, max and top values of each field.

    One job: every row becomes one (column, number, text) triple per field,
    grouped and counted; a second aggregation per column keeps the counts and
    the ``top_values`` most frequent values (ties broken by the smaller value),
    so no sort of the whole data happens. Returns ``{storage name: stats}``.
    """
    from pyspark.sql import functions as F

    fields = list(fields)
    require_columns(df, [f.storage for f in fields], "the column profile")
    if not fields:
        return {}
    triples = [F.struct(F.lit(i).alias("c"),
                        (F.col(f.storage).cast("double") if is_numeric(f)
                         else F.lit(None).cast("double")).alias("num"),
                        (F.lit(None).cast("string") if is_numeric(f)
                         else F.col(f.storage).cast("string")).alias("txt"))
               for i, f in enumerate(fields)]
    counts = df.select(F.inline(F.array(*triples))).groupBy("c", "num", "txt").count()
    present = F.col("num").isNotNull() | F.col("txt").isNotNull()
    ranking = F.struct((-F.col("count")).alias("k"), "num", "txt")
    per_column = counts.groupBy("c").agg(
        F.sum("count").alias("rows"),
        F.sum(F.when(~present, F.col("count")).otherwise(0)).alias("nulls"),
        F.count(F.when(present, 1)).alias("distinct"),
        F.min("num").alias("min"), F.max("num").alias("max"),
        F.min_by(F.struct("num", "txt", "count"), F.when(present, ranking),
                 max(1, top_values)).alias("top"))
    found = {row["c"]: row for row in per_column.collect()}
    return {f.storage: _field_stats(f, found.get(i), top_values) for i, f in enumerate(fields)}


def _typed(f: Field, num, txt):
    """A stacked value back in the field's own type: int, float or text."""
    if not is_numeric(f):
        return txt
    if num is None:
        return None
    return float(num) if f.kind == FLOAT else int(num)


def _field_stats(f: Field, row, top_values: int) -> dict:
    if row is None:  # no rows at all
        return {"rows": 0, "nulls": 0, "distinct": 0, "min": None, "max": None, "top_values": []}
    top = [{"value": _typed(f, t["num"], t["txt"]), "count": int(t["count"])}
           for t in (row["top"] or [])][:top_values]
    numeric = is_numeric(f)
    return {"rows": int(row["rows"]), "nulls": int(row["nulls"]),
            "distinct": int(row["distinct"]),
            "min": _typed(f, row["min"], None) if numeric else None,
            "max": _typed(f, row["max"], None) if numeric else None,
            "top_values": top}


def class_means(groups: Iterable[GroupSums], fields: Iterable[Field]) -> dict:
    """``{storage name: {label: mean}}`` over every split, for numeric fields."""
    groups = [g for g in groups if g.target is not None]
    labels = label_order(g.target for g in groups)
    return {f.storage: {label: mean_from([g for g in groups if g.target == label], f.storage)
                        for label in labels}
            for f in fields if is_numeric(f)}


def build_profile(fields: Iterable[Field], stats: dict, means: dict) -> dict:
    """The profile object of ``analyze --json`` from value stats and class means (pure)."""
    columns = []
    for f in fields:
        s = stats[f.storage]
        rows, nulls = s["rows"], s["nulls"]
        columns.append({
            "name": f.name, "storage": f.storage, "title": f.title, "meaning": f.meaning,
            "kind": f.kind, "null_share": nulls / rows if rows else None,
            "nulls": nulls, "distinct": s["distinct"], "min": s["min"], "max": s["max"],
            "top_values": s["top_values"], "class_means": means.get(f.storage, {}),
            "empty": nulls == rows,
            "constant": s["distinct"] == 1 and nulls == 0,
        })
    rows = max((s["rows"] for s in stats.values()), default=0)
    return {
        "rows": rows,
        "columns": columns,
        "constant_columns": [c["name"] for c in columns if c["constant"]],
        "empty_columns": [c["name"] for c in columns if c["empty"]],
    }


def column_profile(df, columns: Iterable[str] | None = None,
                   top_values: int = DEFAULT_TOP_VALUES,
                   groups: list[GroupSums] | None = None) -> dict:
    """The profile of ``df`` (two Spark jobs; one when ``groups`` are given).

    ``columns`` names the columns to profile (Wireshark or storage names;
    default: the features and the context columns ``df`` has). ``groups`` are
    :func:`split_target_sums` over at least these numeric columns, when the
    caller has them already.
    """
    if columns is None:
        fields = profiled_fields(df)
    else:
        from mqttids.schema import BY_NAME
        fields = [BY_NAME[field_name(c)] for c in columns]
    require_columns(df, [TARGET] + [f.storage for f in fields], "the column profile")
    stats = value_stats(df, fields, top_values)
    if groups is None:
        groups = split_target_sums(df, [f.storage for f in fields if is_numeric(f)])
    profile = build_profile(fields, stats, class_means(groups, fields))
    log.info("profiled %d columns over %d rows", len(fields), profile["rows"])
    return profile
