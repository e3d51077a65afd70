"""Identical feature rows: the packet-level accuracy ceiling, conflicts and leakage.

Many packets of different classes look the same over the 33 features
(handshakes, acks, CONNACKs with code 0). Group the rows by all feature values,
NULL equal to NULL, and give each group its majority label: the share of rows
that get their own label is the accuracy ceiling of any packet-level model on
those rows. Groups that hold more than one label are the conflicts. A feature
row of test that also occurs in train leaks: a model may have memorised it.

Everything comes from one Spark job: a count per (feature vector, label) with
one count column per split, then per feature vector, then one global row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import reduce

from mqttids.schema import FEATURE_NAMES, SPLITS, field_name
from mqttids.spark.common import (SPLIT, TARGET, AnalyticsError, label_order, require_columns,
                                  split_order, to_storage)

log = logging.getLogger(__name__)

ALL = "all"
DEFAULT_TOP_CONFLICTS = 20


def _part_stats(g2, part: str):
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


def _vector_counts(df, feats: list[str], parts: dict):
    """Per feature vector: rows, labelled rows, largest label count, label count; per part."""
    from pyspark.sql import functions as F

    g1 = df.groupBy(*feats, TARGET).agg(
        *[F.count(F.when(cond, 1)).alias(f"n_{p}") for p, cond in parts.items()])
    labelled = F.col(TARGET).isNotNull()
    aggs = []
    for p in parts:
        n = F.col(f"n_{p}")
        aggs += [F.sum(n).alias(f"any_{p}"),
                 F.sum(F.when(labelled, n)).alias(f"lab_{p}"),
                 F.max(F.when(labelled & (n > 0), n)).alias(f"top_{p}"),
                 F.count(F.when(labelled & (n > 0), 1)).alias(f"labels_{p}")]
    return g1.groupBy(*feats).agg(*aggs)


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


def packet_ceiling(df, feature_cols: Iterable[str] | None = None) -> dict:
    """The accuracy ceiling of any packet-level model on all rows of ``df`` (one Spark job).

    Rows are grouped by ``feature_cols`` (default: the 33 MQTTset features;
    Wireshark or storage names), NULL equal to NULL; each group gets its
    majority label. Rows with a NULL target are left out. Returns
    ``{"accuracy", "rows", "groups", "conflicting_groups", "conflicting_rows"}``
    (accuracy None when no row is labelled). Filter ``df`` first to get the
    ceiling of one split, e.g. ``df.where("split = 'test'")``.
    """
    from pyspark.sql import functions as F

    feats = _feature_cols(df, feature_cols)
    g2 = _vector_counts(df, feats, {ALL: F.lit(True)})
    return _ceiling(g2.agg(*_part_stats(g2, ALL)).collect()[0], ALL)


def duplicate_report(df, feature_cols: Iterable[str] | None = None,
                     top_conflicts: int = DEFAULT_TOP_CONFLICTS) -> dict:
    """Ceilings per split and over all rows, train/test leakage and the largest conflicts.

    One Spark job, plus a small one that counts the labels of the listed
    conflicting groups. Returns::

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
    parts = {s: F.col(SPLIT) == s for s in SPLITS}
    parts[ALL] = F.lit(True)
    g2 = _vector_counts(df, feats, parts)
    train, test = (F.col(f"any_{s}") for s in SPLITS)
    conflicted = F.col(f"labels_{ALL}") > 1
    order = F.struct(F.col(f"lab_{ALL}"), F.xxhash64(*feats))
    aggs = [a for p in parts for a in _part_stats(g2, p)]
    aggs += [F.sum(F.when(train > 0, test)).alias("shared_test"),
             F.sum(F.when(test > 0, train)).alias("shared_train"),
             F.count(F.when((train > 0) & (test > 0), 1)).alias("shared_vectors"),
             F.max_by(F.struct(order.alias("order"), F.struct(*feats).alias("vector")),
                      F.when(conflicted, order), max(1, top_conflicts)).alias("conflicts")]
    row = g2.agg(*aggs).collect()[0]
    ranked = sorted(row["conflicts"] or [], key=lambda c: tuple(c["order"]), reverse=True)
    vectors = [c["vector"] for c in ranked[:top_conflicts]]
    return {
        "by_split": {p: _ceiling(row, p) for p in parts},
        "shared": {"test_rows": int(row["shared_test"] or 0),
                   "train_rows": int(row["shared_train"] or 0),
                   "vectors": int(row["shared_vectors"])},
        "conflicts": _conflict_details(df, feats, vectors),
    }


def _conflict_details(df, feats: list[str], vectors: list) -> list[dict]:
    """Label counts, per split and in all, of each listed feature vector (one small job)."""
    if not vectors:
        return []
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegerType, StructField, StructType

    key_fields = [StructField(f"_k{i}", df.schema[c].dataType, True) for i, c in enumerate(feats)]
    keys = df.sparkSession.createDataFrame(
        [(gid, *[v[c] for c in feats]) for gid, v in enumerate(vectors)],
        StructType([StructField("_group", IntegerType(), False), *key_fields]))
    match = reduce(lambda a, b: a & b,
                   [df[c].eqNullSafe(keys[f"_k{i}"]) for i, c in enumerate(feats)])
    counted = (df.join(F.broadcast(keys), match, "inner")
               .where(F.col(TARGET).isNotNull())
               .groupBy("_group", SPLIT, TARGET).count().collect())
    out = []
    for gid, vector in enumerate(vectors):
        mine = [r for r in counted if r["_group"] == gid]
        out.append(_conflict_entry(vector, feats, mine))
    return out


def _conflict_entry(vector, feats: list[str], counted) -> dict:
    labels: dict[str, int] = {}
    by_split: dict[str, dict[str, int]] = {}
    for r in counted:
        labels[r[TARGET]] = labels.get(r[TARGET], 0) + int(r["count"])
        if r[SPLIT] is not None:
            split = by_split.setdefault(r[SPLIT], {})
            split[r[TARGET]] = split.get(r[TARGET], 0) + int(r["count"])
    order = label_order(labels)
    majority = max(order, key=lambda label: labels[label]) if order else None
    return {
        "rows": sum(labels.values()),
        "majority": majority,
        "labels": {label: labels[label] for label in order},
        "by_split": {s: {label: by_split[s][label] for label in label_order(by_split[s])}
                     for s in split_order(by_split)},
        "features": {field_name(c): vector[c] for c in feats if vector[c] is not None},
    }
