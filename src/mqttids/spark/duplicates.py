"""Identical feature rows: the packet-level accuracy ceiling, conflicts and leakage.

Many packets of different classes look the same over the 33 features
(handshakes, acks, CONNACKs with code 0). Group the rows by all feature values,
NULL equal to NULL, and give each group its majority label: the share of rows
that get their own label is the accuracy ceiling of any packet-level model on
those rows. Groups that hold more than one label are the conflicts. A feature
row of test that also occurs in train leaks: a model may have memorised it.

Everything comes from one Spark job: one aggregation by feature vector with a
count per (split, label), then one global row; the labels that occur are
passed in (or found first), so no label is hard-coded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import reduce

from mqttids.schema import FEATURE_NAMES, SPLITS, field_name
from mqttids.spark.common import (SPLIT, TARGET, AnalyticsError, label_order, require_columns,
                                  to_storage)

log = logging.getLogger(__name__)

ALL = "all"
DEFAULT_TOP_CONFLICTS = 20


def _vector_counts(df, feats: list[str], parts: dict, labels: list[str]):
    """One row per feature vector: its row count per (part, label), then per-part figures.

    A single aggregation (one shuffle): ``any_P`` counts every row of part P,
    labelled or not; ``n_P_i`` the rows of label ``labels[i]``. From those,
    per part: ``lab_P`` labelled rows, ``top_P`` the majority label's rows and
    ``labels_P`` how many labels the vector carries.
    """
    from pyspark.sql import functions as F

    target = F.col(TARGET)
    aggs = []
    for p, cond in parts.items():
        aggs.append(F.count(F.when(cond, 1)).alias(f"any_{p}"))
        aggs += [F.count(F.when(cond & (target == label), 1)).alias(f"n_{p}_{i}")
                 for i, label in enumerate(labels)]
    g = df.groupBy(*feats).agg(*aggs)
    derived = []
    for p in parts:
        n = [F.col(f"n_{p}_{i}") for i in range(len(labels))]
        derived += [
            reduce(lambda a, b: a + b, n, F.lit(0)).alias(f"lab_{p}"),
            (F.greatest(*n) if len(n) > 1 else n[0] if n else F.lit(0)).alias(f"top_{p}"),
            reduce(lambda a, b: a + b, [(c > 0).cast("int") for c in n], F.lit(0))
            .alias(f"labels_{p}"),
        ]
    return g.select("*", *derived)


def _part_stats(part: str):
    """Aggregates over feature vectors that give one part's ceiling figures."""
    from pyspark.sql import functions as F

    lab, top, labels = (F.col(f"lab_{part}"), F.col(f"top_{part}"), F.col(f"labels_{part}"))
    return [
        F.sum(lab).alias(f"rows_{part}"),
        F.sum(top).alias(f"correct_{part}"),
        F.count(F.when(lab > 0, 1)).alias(f"groups_{part}"),
        F.count(F.when(labels > 1, 1)).alias(f"cgroups_{part}"),
        F.sum(F.when(labels > 1, lab)).alias(f"crows_{part}"),
    ]


def _ceiling(row, part: str) -> dict:
    rows = int(row[f"rows_{part}"] or 0)
    correct = int(row[f"correct_{part}"] or 0)
    return {"accuracy": correct / rows if rows else None, "rows": rows,
            "groups": int(row[f"groups_{part}"]),
            "conflicting_groups": int(row[f"cgroups_{part}"]),
            "conflicting_rows": int(row[f"crows_{part}"] or 0)}


def _feature_cols(df, feature_cols: Iterable[str] | None) -> list[str]:
    feats = to_storage(FEATURE_NAMES if feature_cols is None else feature_cols)
    if not feats:
        raise AnalyticsError("the packet ceiling needs at least one feature column, got none: "
                             "pass feature_cols=None for the 33 MQTTset features")
    require_columns(df, feats + [TARGET], "the packet ceiling")
    return feats


def data_labels(df) -> list[str]:
    """The labels that occur in ``df`` (a one-column Spark job), in schema order."""
    rows = df.where(df[TARGET].isNotNull()).select(TARGET).distinct().collect()
    return label_order(r[TARGET] for r in rows)


def packet_ceiling(df, feature_cols: Iterable[str] | None = None,
                   labels: Iterable[str] | None = None) -> dict:
    """The accuracy ceiling of any packet-level model on all rows of ``df``.

    Rows are grouped by ``feature_cols`` (default: the 33 MQTTset features;
    Wireshark or storage names), NULL equal to NULL; each group gets its
    majority label. Rows with a NULL target are left out. Returns
    ``{"accuracy", "rows", "groups", "conflicting_groups", "conflicting_rows"}``
    (accuracy None when no row is labelled). Filter ``df`` first to get the
    ceiling of one split, e.g. ``df.where("split = 'test'")``. ``labels`` are
    the labels that occur (found with one small extra job when not given).
    """
    from pyspark.sql import functions as F

    feats = _feature_cols(df, feature_cols)
    labels = data_labels(df) if labels is None else list(labels)
    g = _vector_counts(df, feats, {ALL: F.lit(True)}, labels)
    return _ceiling(g.agg(*_part_stats(ALL)).collect()[0], ALL)


def duplicate_report(df, feature_cols: Iterable[str] | None = None,
                     top_conflicts: int = DEFAULT_TOP_CONFLICTS,
                     labels: Iterable[str] | None = None) -> dict:
    """Ceilings per split and over all rows, train/test leakage and the largest conflicts.

    One Spark job (plus one small one that finds the labels when ``labels`` is
    not given). Returns::

        {"by_split": {"train": ceiling, "test": ceiling, "all": ceiling},
         "shared": {"test_rows", "train_rows", "vectors"},
         "conflicts": [{"rows", "majority", "labels", "by_split", "features"}]}

    ``shared.test_rows`` counts the test rows whose feature vector also occurs
    in train (any label); ``conflicts`` are the feature vectors with more than
    one label over all rows, largest first.
    """
    from pyspark.sql import functions as F

    feats = _feature_cols(df, feature_cols)
    require_columns(df, [SPLIT], "the duplicate report")
    labels = data_labels(df) if labels is None else list(labels)
    parts = {s: F.col(SPLIT) == s for s in SPLITS}
    parts[ALL] = F.lit(True)
    g = _vector_counts(df, feats, parts, labels)
    train, test = (F.col(f"any_{s}") for s in SPLITS)
    # Built only for conflicting vectors (few): a struct per row of g costs as much
    # as the whole aggregation. Ties in size are broken by a hash of the vector.
    conflicted = F.col(f"labels_{ALL}") > 1
    order = F.when(conflicted, F.struct(F.col(f"lab_{ALL}"), F.xxhash64(*feats)))
    counts = [f"n_{p}_{i}" for p in parts for i in range(len(labels))]
    aggs = [a for p in parts for a in _part_stats(p)]
    aggs += [F.sum(F.when(train > 0, test)).alias("shared_test"),
             F.sum(F.when(test > 0, train)).alias("shared_train"),
             F.count(F.when((train > 0) & (test > 0), 1)).alias("shared_vectors"),
             F.max_by(F.when(conflicted, F.struct(order.alias("order"),
                                                  F.struct(*feats).alias("vector"), *counts)),
                      order, max(1, top_conflicts)).alias("conflicts")]
    row = g.agg(*aggs).collect()[0]
    ranked = sorted(row["conflicts"] or [], key=lambda c: tuple(c["order"]), reverse=True)
    return {
        "by_split": {p: _ceiling(row, p) for p in parts},
        "shared": {"test_rows": int(row["shared_test"] or 0),
                   "train_rows": int(row["shared_train"] or 0),
                   "vectors": int(row["shared_vectors"])},
        "conflicts": [_conflict_entry(c, feats, labels) for c in ranked[:top_conflicts]],
    }


def empty_report() -> dict:
    """What :func:`duplicate_report` returns for a DataFrame without rows, with no Spark job."""
    ceiling = {"accuracy": None, "rows": 0, "groups": 0, "conflicting_groups": 0,
               "conflicting_rows": 0}
    return {"by_split": {p: dict(ceiling) for p in (*SPLITS, ALL)},
            "shared": {"test_rows": 0, "train_rows": 0, "vectors": 0},
            "conflicts": []}


def _conflict_entry(c, feats: list[str], labels: list[str]) -> dict:
    """One conflicting feature vector: its label counts in all rows and per split."""
    def counts(part: str) -> dict[str, int]:
        return {label: int(c[f"n_{part}_{i}"]) for i, label in enumerate(labels)
                if c[f"n_{part}_{i}"]}

    pooled = counts(ALL)
    vector = c["vector"]
    return {
        "rows": sum(pooled.values()),
        "majority": max(pooled, key=lambda label: pooled[label]),
        "labels": pooled,
        "by_split": {s: counts(s) for s in SPLITS if counts(s)},
        "features": {field_name(col): vector[col] for col in feats if vector[col] is not None},
    }
