"""What the Spark analyses share: column checks, label order and per-class sums.

The analyses take Spark DataFrames whose columns carry the warehouse's storage
names (``tcp_flags``), as :meth:`Warehouse.spark_read` returns them; callers may
name columns either way (``tcp.flags`` or ``tcp_flags``) and get storage names
back from :func:`to_storage`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mqttids.errors import MqttidsError
from mqttids.schema import FLOAT, HEX, INT, LABELS, SPLITS, Field, field_name, storage_name

TARGET = "target"
SPLIT = "split"
NUMERIC_KINDS = frozenset({INT, HEX, FLOAT})


class AnalyticsError(MqttidsError):
    """An analysis cannot run on the data or the options it was given."""


class MissingColumnsError(AnalyticsError):
    """The DataFrame lacks columns that an analysis needs."""


def to_storage(names: Iterable[str]) -> list[str]:
    """Storage names for schema columns given by Wireshark or storage name."""
    return [storage_name(field_name(n)) for n in names]


def require_columns(df, columns: Iterable[str], what: str) -> None:
    """Raise :class:`MissingColumnsError` naming every column ``what`` needs but lacks."""
    present = set(df.columns)
    missing = [c for c in columns if c not in present]
    if missing:
        raise MissingColumnsError(
            f"{what} needs columns {missing} that the DataFrame lacks; read the packets "
            "table with `open_warehouse(url).spark_read(spark)`, whose columns carry "
            "storage names such as tcp_flags")


def label_order(labels: Iterable[str]) -> list[str]:
    """Labels in schema order (legitimate first), any others after, alphabetically."""
    seen = set(labels)
    known = [label for label in LABELS if label in seen]
    return known + sorted(seen - set(LABELS))


def split_order(splits: Iterable[str]) -> list[str]:
    """Splits in schema order (train, test), any others after, alphabetically."""
    seen = set(splits)
    return [s for s in SPLITS if s in seen] + sorted(seen - set(SPLITS))


def is_numeric(f: Field) -> bool:
    return f.kind in NUMERIC_KINDS


@dataclass(frozen=True)
class GroupSums:
    """Row count, and per column the non-NULL count and sum, of one (split, target) group."""

    split: str | None
    target: str | None
    rows: int
    counts: dict[str, int] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)


def split_target_sums(df, columns: Iterable[str] = ()) -> list[GroupSums]:
    """One pass over ``df``: rows, and each column's non-NULL count and sum, per (split, target).

    Class balance, the average lengths, and the NULL shares and per-class means
    of the profile all derive from these few rows, so this 10M-row scan happens
    once. Text columns get a count and no sum. Sums run in double precision for
    floating and 64-bit columns (ANSI mode would fail on a long overflow) and in
    64-bit integers otherwise, which keeps the means of integer columns exact.
    """
    from pyspark.sql import functions as F

    columns = list(columns)
    require_columns(df, [SPLIT, TARGET, *columns], "the per-class sums")
    types = dict(df.dtypes)
    summed = [c for c in columns if types[c] in _SUMMABLE]
    aggs = [F.count(F.lit(1)).alias("_rows")]
    aggs += [F.count(c).alias(f"_n{i}") for i, c in enumerate(columns)]
    for i, c in enumerate(summed):
        value = F.col(c).cast("double") if types[c] in ("double", "float", "bigint") else c
        aggs.append(F.sum(value).alias(f"_s{i}"))
    out = []
    for row in df.groupBy(SPLIT, TARGET).agg(*aggs).collect():
        out.append(GroupSums(
            split=row[SPLIT], target=row[TARGET], rows=int(row["_rows"]),
            counts={c: int(row[f"_n{i}"]) for i, c in enumerate(columns)},
            sums={c: row[f"_s{i}"] or 0 for i, c in enumerate(summed)}))
    return out


_SUMMABLE = frozenset({"tinyint", "smallint", "int", "bigint", "float", "double"})


def mean_from(groups: Iterable[GroupSums], column: str) -> float | None:
    """The SQL AVG of ``column`` over ``groups``: NULLs ignored, None when no value."""
    n = 0
    total = 0
    for g in groups:
        n += g.counts[column]
        total += g.sums[column]
    return total / n if n else None
