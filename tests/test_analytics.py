"""Spark analytics against an independent plain-Python computation on small data.

The data mix repeated feature vectors (so that groups conflict and train and
test share rows), NULLs in every kind of column, ties among tcp.flags counts,
unlabelled rows and rows without a split. Each answer is recomputed here from
the Python rows with no Spark and no mqttids code.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pyarrow as pa
import pytest

from mqttids import schema
from mqttids.spark import analytics, duplicates
from mqttids.spark import profile as profiling
from mqttids.spark.common import AnalyticsError, MissingColumnsError

pytestmark = pytest.mark.spark

LABEL_POOL = ["legitimate", "legitimate", "dos", "dos", "flood", "bruteforce", None]
SPLIT_POOL = ["train", "train", "train", "test", "test", None]
FEATURE_POOLS = {
    "tcp.flags": [0x18, 0x10, 0x19, 0x11, 0x02, None],
    "tcp.time_delta": [0.0, 0.5, 1.25, 3.0e-6, None],
    "tcp.len": [0, 2, 4, 20, 1460, None],
    "mqtt.len": [0, 2, 18, 300, None],
    "mqtt.msgtype": [1, 2, 3, 4, 12, None],
    "mqtt.protoname": ["MQTT", "MQIsdp", None],
    "mqtt.msg": ["", "00ff", "48656c6c6f", None],
    "mqtt.kalive": [60, 65535, None],
}
CONSTANT = {"mqtt.conack.flags.reserved": 0}


def make_rows(seed: int, n: int, templates: int = 12) -> list[dict]:
    """Rows by Wireshark name; most come from a few templates, so vectors repeat."""
    rng = random.Random(seed)

    def vector() -> dict:
        return {name: rng.choice(pool) for name, pool in FEATURE_POOLS.items()}

    pool = [vector() for _ in range(templates)]
    rows = []
    for _ in range(n):
        row = dict.fromkeys(schema.COLUMN_NAMES)
        row.update(rng.choice(pool) if rng.random() < 0.8 else vector())
        row.update(CONSTANT)
        row["target"] = rng.choice(LABEL_POOL)
        row["split"] = rng.choice(SPLIT_POOL)
        row["ctx.flow_packets"] = rng.choice([1, 2, 3, None])
        rows.append(row)
    return rows


def to_frame(spark, rows: list[dict]):
    """A Spark DataFrame with every schema column under its storage name."""
    names = schema.COLUMN_NAMES
    table = pa.table({schema.storage_name(n): pa.array([r[n] for r in rows],
                                                       schema.BY_NAME[n].arrow_type)
                      for n in names},
                     schema=schema.arrow_schema(names, storage=True))
    return spark.createDataFrame(table)


# -- independent computations --------------------------------------------------------------

def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def expected_balance(rows):
    out = {"train": Counter(), "test": Counter()}
    for r in rows:
        if r["split"] is not None and r["target"] is not None:
            out[r["split"]][r["target"]] += 1
    return {s: dict(c) for s, c in out.items()}


def expected_top_flags(rows, x):
    counts = Counter(r["tcp.flags"] for r in rows if r["tcp.flags"] is not None)
    # A value is kept when fewer than x values are strictly more frequent.
    kept = {v: c for v, c in counts.items()
            if sum(1 for other in counts.values() if other > c) < x}
    return sorted(kept.items(), key=lambda vc: (-vc[1], vc[0]))


def expected_ceiling(rows):
    groups = defaultdict(Counter)
    for r in rows:
        if r["target"] is not None:
            groups[tuple(r[n] for n in schema.FEATURE_NAMES)][r["target"]] += 1
    total = sum(sum(c.values()) for c in groups.values())
    conflicting = [c for c in groups.values() if len(c) > 1]
    return {
        "accuracy": sum(max(c.values()) for c in groups.values()) / total if total else None,
        "rows": total, "groups": len(groups), "conflicting_groups": len(conflicting),
        "conflicting_rows": sum(sum(c.values()) for c in conflicting),
    }


def vector(r):
    return tuple(r[n] for n in schema.FEATURE_NAMES)


def expected_shared(rows):
    train = {vector(r) for r in rows if r["split"] == "train"}
    test = {vector(r) for r in rows if r["split"] == "test"}
    return {"test_rows": sum(1 for r in rows if r["split"] == "test" and vector(r) in train),
            "train_rows": sum(1 for r in rows if r["split"] == "train" and vector(r) in test),
            "vectors": len(train & test)}


def expected_column(rows, name):
    values = [r[name] for r in rows]
    present = [v for v in values if v is not None]
    counts = Counter(present)
    numeric = schema.BY_NAME[name].kind in ("int", "hex", "float")
    top = sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))[:5]
    labels = sorted({r["target"] for r in rows if r["target"] is not None})
    return {
        "nulls": len(values) - len(present),
        "null_share": (len(values) - len(present)) / len(values) if values else None,
        "distinct": len(counts),
        "min": min(present) if numeric and present else None,
        "max": max(present) if numeric and present else None,
        "top_values": [{"value": v, "count": c} for v, c in top],
        "class_means": ({label: mean([r[name] for r in rows if r["target"] == label])
                         for label in labels} if numeric else {}),
        "empty": not present,
        "constant": len(counts) == 1 and len(present) == len(values),
    }


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rows():
    return make_rows(seed=40, n=160)


@pytest.fixture(scope="module")
def frame(spark, rows):
    return to_frame(spark, rows).cache()


@pytest.fixture(scope="module")
def result(frame):
    return analytics.analyze(frame, top_flags=2, top_values=5, top_conflicts=3)


# -- tests ---------------------------------------------------------------------------------

def test_data_has_the_cases_the_checks_need(rows):
    """Guards the generator: ties, conflicts, leakage, NULL labels and splits all occur."""
    ceiling = expected_ceiling([r for r in rows if r["split"] == "train"])
    assert ceiling["conflicting_groups"] >= 2
    assert expected_shared(rows)["test_rows"] > 0
    assert any(r["target"] is None for r in rows) and any(r["split"] is None for r in rows)
    assert len(expected_top_flags(rows, 2)) > 2, "the rank-2 tie must keep more than 2 flags"


def test_averages_match_plain_python(result, rows):
    train_mqtt = [r["mqtt.len"] for r in rows if r["split"] == "train"]
    assert result["avg_mqtt_len_train"] == pytest.approx(mean(train_mqtt))
    labels = sorted({r["target"] for r in rows if r["target"] is not None})
    expected = {label: mean([r["tcp.len"] for r in rows if r["target"] == label])
                for label in labels}
    assert result["avg_tcp_len_by_target"] == pytest.approx(expected)
    assert list(result["avg_tcp_len_by_target"]) == ["legitimate", "dos", "flood", "bruteforce"]


def test_top_flags_keep_every_value_tied_at_the_last_rank(result, rows):
    assert [(f["flag"], f["count"]) for f in result["top_tcp_flags"]] == \
        expected_top_flags(rows, 2)


def test_class_balance_per_split(result, rows):
    assert result["class_balance"] == expected_balance(rows)
    profile = result["profile"]
    assert profile["unlabelled_rows"] == sum(1 for r in rows if r["target"] is None)
    assert profile["rows_without_split"] == sum(1 for r in rows if r["split"] is None)


def test_ceiling_per_split_and_over_all_rows(result, rows):
    ceiling = result["ceiling"]
    for split in ("train", "test"):
        want = expected_ceiling([r for r in rows if r["split"] == split])
        assert ceiling["by_split"][split] == pytest.approx(want)
    assert ceiling["by_split"]["all"] == pytest.approx(expected_ceiling(rows))
    assert ceiling["split"] == "test"
    assert ceiling["accuracy"] == ceiling["by_split"]["test"]["accuracy"]


def test_conflicts_list_the_largest_groups_with_their_labels(result, rows):
    groups = defaultdict(Counter)
    for r in rows:
        if r["target"] is not None:
            groups[vector(r)][r["target"]] += 1
    conflicting = sorted((sum(c.values()) for c in groups.values() if len(c) > 1),
                         reverse=True)
    listed = result["ceiling"]["conflicts"]
    assert [c["rows"] for c in listed] == conflicting[:3]
    for c in listed:
        key = tuple(c["features"].get(n) for n in schema.FEATURE_NAMES)
        assert c["labels"] == dict(groups[key])
        assert c["labels"][c["majority"]] == max(groups[key].values())
        for split, labels in c["by_split"].items():
            assert labels == dict(Counter(r["target"] for r in rows if vector(r) == key
                                          and r["split"] == split and r["target"]))


def test_shared_rows_between_train_and_test(result, rows):
    assert result["train_test_shared_rows"] == expected_shared(rows)["test_rows"]
    assert result["profile"]["train_test_shared"] == expected_shared(rows)


def test_profile_matches_plain_python_for_every_column(result, rows):
    profile = result["profile"]
    assert profile["rows"] == len(rows)
    by_name = {c["name"]: c for c in profile["columns"]}
    assert list(by_name) == list(schema.FEATURE_NAMES) + list(schema.CONTEXT_NAMES)
    for name, column in by_name.items():
        want = expected_column(rows, name)
        means = want.pop("class_means")
        assert column["class_means"] == pytest.approx(means), name
        assert {k: column[k] for k in want} == want, name
        assert column["title"] == schema.BY_NAME[name].title
        assert column["meaning"] == schema.BY_NAME[name].meaning
    assert profile["constant_columns"] == ["mqtt.conack.flags.reserved"]
    assert "mqtt.conflags" in profile["empty_columns"]
    assert "tcp.flags" not in profile["empty_columns"]


def test_single_answers_agree_with_analyze(frame, result, rows):
    assert analytics.avg_mqtt_len(frame) == pytest.approx(result["avg_mqtt_len_train"])
    assert analytics.avg_tcp_len_by_target(frame) == \
        pytest.approx(result["avg_tcp_len_by_target"])
    assert analytics.class_balance(frame) == result["class_balance"]
    assert analytics.top_tcp_flags(frame, 1) == [
        {"flag": v, "count": c} for v, c in expected_top_flags(rows, 1)]


def test_packet_ceiling_accepts_either_name_form_and_a_feature_subset(frame, rows):
    test_rows = [r for r in rows if r["split"] == "test"]
    got = duplicates.packet_ceiling(frame.where("split = 'test'"))
    assert got == pytest.approx(expected_ceiling(test_rows))
    subset = ["tcp.flags", "mqtt_msgtype"]
    groups = defaultdict(Counter)
    for r in rows:
        if r["target"] is not None:
            groups[(r["tcp.flags"], r["mqtt.msgtype"])][r["target"]] += 1
    labelled = sum(sum(c.values()) for c in groups.values())
    got = duplicates.packet_ceiling(frame, subset)
    assert got["accuracy"] == pytest.approx(
        sum(max(c.values()) for c in groups.values()) / labelled)
    assert got["groups"] == len(groups)


def test_empty_test_split_and_empty_data(spark, rows):
    train_only = [r for r in rows if r["split"] == "train"]
    result = analytics.analyze(to_frame(spark, train_only), top_flags=3)
    assert result["class_balance"]["test"] == {}
    assert result["ceiling"]["split"] == "train"
    assert result["ceiling"]["by_split"]["test"] == {
        "accuracy": None, "rows": 0, "groups": 0, "conflicting_groups": 0,
        "conflicting_rows": 0}
    assert result["train_test_shared_rows"] == 0

    nothing = to_frame(spark, [])
    empty = analytics.analyze(nothing)
    # analyze skips the last two scans on no rows; they would have said the same.
    assert duplicates.duplicate_report(nothing, labels=[]) == duplicates.empty_report()
    fields = profiling.profiled_fields(nothing)
    assert profiling.value_stats(nothing, fields, all_values=["tcp_flags"]) == \
        profiling.value_stats_of_nothing(fields, all_values=["tcp_flags"])
    assert empty["avg_mqtt_len_train"] is None
    assert empty["avg_tcp_len_by_target"] == {}
    assert empty["top_tcp_flags"] == []
    assert empty["class_balance"] == {"train": {}, "test": {}}
    assert empty["ceiling"]["accuracy"] is None and empty["ceiling"]["conflicts"] == []
    assert empty["profile"]["rows"] == 0
    assert all(c["empty"] and c["null_share"] is None for c in empty["profile"]["columns"])


def test_missing_columns_and_bad_options_are_named_errors(frame):
    with pytest.raises(MissingColumnsError, match="tcp_flags"):
        analytics.top_tcp_flags(frame.drop("tcp_flags"), 3)
    with pytest.raises(AnalyticsError, match="--top-flags must be .* got 0"):
        analytics.analyze(frame, top_flags=0)
    with pytest.raises(AnalyticsError, match="at least one feature"):
        duplicates.packet_ceiling(frame, [])
