"""Spark analytics over the packets table: the questions asked before any model.

Each answer is a function of a Spark DataFrame with storage column names that
returns plain Python data; :func:`analyze` answers them all with three scans of
the data and returns the object that ``mqttids analyze --json`` prints:

- the average MQTT message length (``mqtt.len``) in train;
- the average TCP payload length (``tcp.len``) of each target, over every split;
- the most frequent ``tcp.flags`` values, every value tied at the last rank kept;
- the class balance per split;
- the per-column profile (:mod:`mqttids.spark.profile`);
- the packet-level accuracy ceiling, conflicting duplicates and the rows that
  train and test share (:mod:`mqttids.spark.duplicates`).

Averages follow SQL: NULL values are left out, and an average over no value is
None. Labels and splits come from the data, none is hard-coded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from mqttids.schema import FEATURE_NAMES, SPLITS, storage_name
from mqttids.spark.common import (SPLIT, TARGET, AnalyticsError, GroupSums, label_order,
                                  mean_from, require_columns, split_order, split_target_sums)
from mqttids.spark.duplicates import DEFAULT_TOP_CONFLICTS, duplicate_report, empty_report
from mqttids.spark.profile import (DEFAULT_TOP_VALUES, build_profile, profiled_fields,
                                   value_stats, value_stats_of_nothing)

log = logging.getLogger(__name__)

MQTT_LEN = storage_name("mqtt.len")
TCP_LEN = storage_name("tcp.len")
TCP_FLAGS = storage_name("tcp.flags")
DEFAULT_TOP_FLAGS = 5
MAX_TOP = 100_000  # the largest k that Spark's top-k aggregates take


def check_top(option: str, value: int, minimum: int = 1) -> int:
    """``value`` when it is an integer in [minimum, MAX_TOP], else an AnalyticsError."""
    if isinstance(value, bool) or not isinstance(value, int) or not \
            minimum <= value <= MAX_TOP:
        raise AnalyticsError(f"{option} must be a whole number from {minimum} to {MAX_TOP}, "
                             f"got {value!r}: pass e.g. {option} 5")
    return value


# -- answers from the per-(split, target) sums ------------------------------------------

def class_balance_from(groups: Iterable[GroupSums]) -> dict[str, dict[str, int]]:
    """``{split: {label: rows}}``: train and test always, labelled rows only."""
    counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    for g in groups:
        if g.split is not None and g.target is not None:
            split = counts.setdefault(g.split, {})
            split[g.target] = split.get(g.target, 0) + g.rows
    return {s: {label: counts[s][label] for label in label_order(counts[s])}
            for s in split_order(counts)}


def avg_by_target_from(groups: Iterable[GroupSums], column: str) -> dict[str, float | None]:
    """``{label: mean of column}`` over every split, for each label in the data."""
    groups = [g for g in groups if g.target is not None]
    return {label: mean_from([g for g in groups if g.target == label], column)
            for label in label_order(g.target for g in groups)}


def avg_in_split_from(groups: Iterable[GroupSums], column: str, split: str) -> float | None:
    """The mean of ``column`` over the rows of ``split``, labelled or not."""
    return mean_from([g for g in groups if g.split == split], column)


def class_balance(df) -> dict[str, dict[str, int]]:
    """Rows per label in each split (one Spark job)."""
    return class_balance_from(split_target_sums(df))


def avg_mqtt_len(df, split: str = "train") -> float | None:
    """The average MQTT message length (remaining length) in ``split`` (one Spark job)."""
    return avg_in_split_from(split_target_sums(df, [MQTT_LEN]), MQTT_LEN, split)


def avg_tcp_len_by_target(df) -> dict[str, float | None]:
    """The average TCP payload length of each label, over every split (one Spark job)."""
    return avg_by_target_from(split_target_sums(df, [TCP_LEN]), TCP_LEN)


# -- top TCP flags ----------------------------------------------------------------------

def top_with_ties(counts: Iterable[tuple[int, int]], x: int) -> list[dict]:
    """The ``x`` most frequent values and every value tied with the one at rank ``x``.

    ``counts`` are (value, count) pairs; the result runs from the most frequent
    down, equal counts by value.
    """
    ranked = sorted(counts, key=lambda vc: (-vc[1], vc[0]))
    if len(ranked) > x:
        cut = ranked[x - 1][1]
        ranked = [vc for vc in ranked if vc[1] >= cut]
    return [{"flag": int(v), "count": int(c)} for v, c in ranked]


def top_tcp_flags(df, x: int = DEFAULT_TOP_FLAGS) -> list[dict]:
    """``[{"flag", "count"}]``: the ``x`` most frequent tcp.flags values, ties at rank x kept.

    NULL flags (rows without TCP) are not a value. The distinct values are at
    most 4096 (12 flag bits), so their counts are collected and ranked here.
    """
    from pyspark.sql import functions as F

    check_top("--top-flags", x)
    require_columns(df, [TCP_FLAGS], "the top TCP flags")
    counts = (df.where(F.col(TCP_FLAGS).isNotNull()).groupBy(TCP_FLAGS).count().collect())
    return top_with_ties(((r[TCP_FLAGS], r["count"]) for r in counts), x)


# -- everything at once -----------------------------------------------------------------

def _timed(step: str, progress, func, *args, **kwargs):
    start = time.perf_counter()
    result = func(*args, **kwargs)
    log.info("%s: %.1f s", step, time.perf_counter() - start)
    if progress is not None:
        progress.advance(1)
    return result


ANALYZE_STEPS = 3


def analyze(df, top_flags: int = DEFAULT_TOP_FLAGS, top_values: int = DEFAULT_TOP_VALUES,
            top_conflicts: int = DEFAULT_TOP_CONFLICTS, progress=None,
            cache: bool = False) -> dict:
    """All answers, as the object ``mqttids analyze --json`` prints.

    Three scans of ``df``: the per-(split, target) counts and sums, the stacked
    value counts (which hold the tcp.flags counts too), and the feature-vector
    counts. With ``cache`` the needed columns are persisted (memory, then
    disk) during the first scan, so that a costly source such as JDBC is read
    once; a Parquet source is cheaper to scan again. ``progress``, when given,
    has ``advance(1)`` called after each scan (:data:`ANALYZE_STEPS` in all).
    """
    check_top("--top-flags", top_flags)
    check_top("--top-values", top_values, minimum=0)
    check_top("--conflicts", top_conflicts, minimum=0)
    fields = profiled_fields(df)
    needed = [f.storage for f in fields] + [TARGET, SPLIT]
    require_columns(df, needed, "analyze")
    if not cache:
        return _analyze(df, fields, top_flags, top_values, top_conflicts, progress)
    from pyspark import StorageLevel

    kept = df.select(*needed).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _analyze(kept, fields, top_flags, top_values, top_conflicts, progress)
    finally:
        kept.unpersist()


def _analyze(df, fields, top_flags, top_values, top_conflicts, progress) -> dict:
    """The three scans and the answer object, once the options are checked."""
    groups = _timed("per-class sums", progress, split_target_sums, df,
                    [f.storage for f in fields])
    if groups:
        stats = _timed("value counts", progress, value_stats, df, fields, top_values,
                       all_values=(TCP_FLAGS,))
        labels = label_order(g.target for g in groups if g.target is not None)
        dups = _timed("feature-vector counts", progress, duplicate_report, df,
                      FEATURE_NAMES, top_conflicts, labels=labels)
    else:  # no rows: nothing to count, and two Spark jobs saved
        stats = value_stats_of_nothing(fields, all_values=(TCP_FLAGS,))
        dups = empty_report()
        if progress is not None:
            progress.advance(ANALYZE_STEPS - 1)

    profile = build_profile(fields, stats, groups)
    profile["unlabelled_rows"] = sum(g.rows for g in groups if g.target is None)
    profile["rows_without_split"] = sum(g.rows for g in groups if g.split is None)
    profile["train_test_shared"] = dups["shared"]
    return {
        "avg_mqtt_len_train": avg_in_split_from(groups, MQTT_LEN, "train"),
        "avg_tcp_len_by_target": avg_by_target_from(groups, TCP_LEN),
        "top_tcp_flags": top_with_ties(stats[TCP_FLAGS]["counts"], top_flags),
        "class_balance": class_balance_from(groups),
        "ceiling": _ceiling_answer(dups),
        "train_test_shared_rows": dups["shared"]["test_rows"],
        "profile": profile,
    }


def _ceiling_answer(dups: dict) -> dict:
    """The ceiling object: test's when test has labelled rows, else train's, else all rows'.

    A model is judged on test, so test's ceiling is the headline; ``split``
    says which one ``accuracy`` is, and ``by_split`` holds all of them.
    """
    by_split = dups["by_split"]
    chosen = next((s for s in ("test", "train", "all") if by_split[s]["rows"]), "test")
    return {"accuracy": by_split[chosen]["accuracy"], "split": chosen,
            "features": len(FEATURE_NAMES), "by_split": by_split,
            "conflicts": dups["conflicts"]}
