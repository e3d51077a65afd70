"""A per-column data profile: what each field holds, and which ones carry nothing.

For every feature (and every context column the data has) the profile gives
the share of NULLs, the exact number of distinct values, min and max, the most
frequent values, and the mean per class, next to the field's Wireshark title
and its meaning in MQTT terms. Columns that are empty (all NULL) or constant
(one value, no NULL) are listed: the preprocessing pipeline drops them.

All counts are exact. The value counts come from one aggregation over the
non-NULL values stacked as (column, value) pairs, so the data are scanned once
however many columns there are; NULL counts and means come from the
per-(split, target) sums that the other answers use too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from mqttids.schema import BY_NAME, CONTEXT_FIELDS, FEATURES, FLOAT, Field, field_name
from mqttids.spark.common import (GroupSums, TARGET, is_numeric, label_order, mean_from,
                                  require_columns, split_target_sums)

log = logging.getLogger(__name__)

DEFAULT_TOP_VALUES = 5


def profiled_fields(df) -> list[Field]:
    """The 33 features, then the context columns that ``df`` has."""
    present = set(df.columns)
    return list(FEATURES) + [f for f in CONTEXT_FIELDS if f.storage in present]


def value_stats(df, fields: Iterable[Field], top_values: int = DEFAULT_TOP_VALUES,
                all_values: Iterable[str] = ()) -> dict:
    """Exact distinct count, min, max and most frequent values of each field (one Spark job).

    Every non-NULL value becomes a (column, number, text) triple; the triples
    are counted, then aggregated per column, keeping the ``top_values`` most
    frequent values (ties broken by the smaller value) with a bounded top-k,
    so nothing sorts the whole data. NULLs never enter the stack: their counts
    come from :func:`split_target_sums`. For the columns named in
    ``all_values`` (storage names, few distinct values) every (value, count)
    pair comes back too, under ``"counts"``. Returns ``{storage name: stats}``.
    """
    from pyspark.sql import functions as F

    fields = list(fields)
    require_columns(df, [f.storage for f in fields], "the column profile")
    if not fields:
        return {}
    full = [i for i, f in enumerate(fields) if f.storage in set(all_values)]
    # NULL values become all-NULL rows of the stack, dropped before counting.
    counts = (df.select(F.inline(F.array(*[_triple(i, f) for i, f in enumerate(fields)])))
              .where(F.col("c").isNotNull()).groupBy("c", "num", "txt").count())
    ranking = F.struct((-F.col("count")).alias("k"), "num", "txt")
    per_column = counts.groupBy("c").agg(
        F.count(F.lit(1)).alias("distinct"),
        F.min("num").alias("min"), F.max("num").alias("max"),
        F.min_by(F.struct("num", "txt", "count"), ranking, max(1, top_values)).alias("top"),
        F.collect_list(F.when(F.col("c").isin(full), F.struct("num", "txt", "count")))
        .alias("all"))
    found = {row["c"]: row for row in per_column.collect()}
    return {f.storage: _field_stats(f, found.get(i), top_values, i in full)
            for i, f in enumerate(fields)}


def value_stats_of_nothing(fields: Iterable[Field], all_values: Iterable[str] = ()) -> dict:
    """What :func:`value_stats` returns for a DataFrame without rows, with no Spark job."""
    return {f.storage: _field_stats(f, None, 0, f.storage in set(all_values)) for f in fields}


def _triple(i: int, f: Field):
    """The (column, number, text) struct of a field's value; NULL when the value is."""
    from pyspark.sql import functions as F

    value = F.col(f.storage)
    num = value.cast("double") if is_numeric(f) else F.lit(None).cast("double")
    txt = F.lit(None).cast("string") if is_numeric(f) else value.cast("string")
    return F.when(value.isNotNull(),
                  F.struct(F.lit(i).alias("c"), num.alias("num"), txt.alias("txt")))


def _typed(f: Field, num, txt):
    """A stacked value back in the field's own type: int, float or text."""
    if not is_numeric(f):
        return txt
    if num is None:
        return None
    return float(num) if f.kind == FLOAT else int(num)


def _field_stats(f: Field, row, top_values: int, full: bool) -> dict:
    stats = {"distinct": 0, "min": None, "max": None, "top_values": []}
    if full:
        stats["counts"] = []
    if row is None:  # no value at all
        return stats
    stats["distinct"] = int(row["distinct"])
    if is_numeric(f):
        stats["min"], stats["max"] = _typed(f, row["min"], None), _typed(f, row["max"], None)
    stats["top_values"] = [{"value": _typed(f, t["num"], t["txt"]), "count": int(t["count"])}
                           for t in (row["top"] or [])][:top_values]
    if full:
        stats["counts"] = [(_typed(f, t["num"], t["txt"]), int(t["count"])) for t in row["all"]]
    return stats


def class_means(groups: Iterable[GroupSums], fields: Iterable[Field]) -> dict:
    """``{storage name: {label: mean}}`` over every split, for numeric fields."""
    groups = [g for g in groups if g.target is not None]
    labels = label_order(g.target for g in groups)
    return {f.storage: {label: mean_from([g for g in groups if g.target == label], f.storage)
                        for label in labels}
            for f in fields if is_numeric(f)}


def build_profile(fields: Iterable[Field], stats: dict, groups: list[GroupSums]) -> dict:
    """The profile object of ``analyze --json`` (pure).

    ``stats`` come from :func:`value_stats`; ``groups`` from
    :func:`split_target_sums` over the same columns, for row and NULL counts
    and the per-class means.
    """
    fields = list(fields)
    rows = sum(g.rows for g in groups)
    means = class_means(groups, fields)
    columns = []
    for f in fields:
        s = stats[f.storage]
        nulls = rows - sum(g.counts[f.storage] for g in groups)
        columns.append({
            "name": f.name, "storage": f.storage, "title": f.title, "meaning": f.meaning,
            "kind": f.kind, "null_share": nulls / rows if rows else None,
            "nulls": nulls, "distinct": s["distinct"], "min": s["min"], "max": s["max"],
            "top_values": s["top_values"], "class_means": means.get(f.storage, {}),
            "empty": nulls == rows,
            "constant": s["distinct"] == 1 and nulls == 0,
        })
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
    :func:`split_target_sums` over at least these columns, when the caller has
    them already.
    """
    if columns is None:
        fields = profiled_fields(df)
    else:
        fields = [BY_NAME[field_name(c)] for c in columns]
    require_columns(df, [TARGET] + [f.storage for f in fields], "the column profile")
    stats = value_stats(df, fields, top_values)
    if groups is None:
        groups = split_target_sums(df, [f.storage for f in fields])
    profile = build_profile(fields, stats, groups)
    log.info("profiled %d columns over %d rows", len(fields), profile["rows"])
    return profile
