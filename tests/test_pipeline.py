"""The preprocessing pipeline: rules as pure functions, fitting on Spark."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from test_models_data import toy_table

from mqttids import schema
from mqttids.spark import pipeline as prep


def test_numeric_rule_drops_empty_and_constant_columns():
    assert prep._numeric_rule({"nonnull": 0, "min": None, "max": None, "zeros": 0}, 10)[2] \
        == "all NULL in train"
    assert prep._numeric_rule({"nonnull": 10, "min": 24, "max": 24, "zeros": 0}, 10)[2] \
        == "constant in train"


def test_numeric_rule_keeps_presence_when_only_one_value_and_nulls():
    # {NULL, 0}: after NULL -> 0 the value says nothing; the indicator does.
    assert prep._numeric_rule({"nonnull": 4, "min": 0, "max": 0, "zeros": 4}, 10) \
        == (False, True, "")
    # {NULL, 5}: 0 (from NULL) and 5 already tell presence apart.
    assert prep._numeric_rule({"nonnull": 4, "min": 5, "max": 5, "zeros": 0}, 10) \
        == (True, False, "")


def test_numeric_rule_adds_an_indicator_only_when_null_and_zero_meet():
    assert prep._numeric_rule({"nonnull": 8, "min": 0, "max": 2, "zeros": 3}, 10) \
        == (True, True, "")
    assert prep._numeric_rule({"nonnull": 8, "min": 1, "max": 2, "zeros": 0}, 10) \
        == (True, False, "")
    assert prep._numeric_rule({"nonnull": 10, "min": 0, "max": 2, "zeros": 3}, 10) \
        == (True, False, "")


def test_payloads_become_length_and_first_byte_inputs():
    names = [n for n, _, _ in prep.derived_inputs(("mqtt.msg", "tcp.len", "mqtt.protoname"))]
    assert names == ["mqtt_msg__nbytes", "mqtt_msg__byte0", "tcp_len"]
    assert prep.text_sources(("mqtt.msg", "mqtt.protoname")) == ["mqtt_protoname"]


def test_spec_refuses_another_version():
    with pytest.raises(prep.PreprocessSpecError, match="version 99"):
        prep.PreprocessSpec.from_json({"version": 99})


# -- Spark ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy():
    return toy_table(40, seed=5)


@pytest.fixture(scope="module")
def fitted(spark, toy):
    df = prep.with_label(spark.createDataFrame(toy))
    train = df.where("split = 'train'")
    model, spec = prep.fit_preprocessing(train, schema.feature_columns("flow"))
    return df, model, spec


@pytest.mark.spark
def test_pruning_drops_constant_and_empty_train_columns(fitted):
    _, _, spec = fitted
    assert spec.dropped["tcp_flags"] == "constant in train"
    assert spec.dropped["mqtt_willtopic"] == "all NULL in train"
    assert spec.dropped["mqtt_willmsg__nbytes"] == "all NULL in train"
    kept = {n.name for n in spec.numeric}
    assert "tcp_flags" not in kept and "tcp_len" in kept
    assert [t.source for t in spec.text] == ["mqtt_protoname"]


@pytest.mark.spark
def test_indicators_go_where_null_and_zero_both_occur(fitted):
    _, _, spec = fitted
    by = {n.name: n for n in spec.numeric}
    assert by["mqtt_qos"].indicator and by["mqtt_qos"].value  # NULL in CONNECTs, 0 elsewhere
    assert not by["mqtt_conack_val"].indicator  # NULL or 5: 0 already means absent
    assert spec.slots[:2] == ("tcp_time_delta", "tcp_len")
    assert "mqtt_protoname=<unseen>" in spec.slots


@pytest.mark.spark
def test_statistics_come_from_train_rows_only(spark, fitted, toy):
    df, model, spec = fitted
    train = toy.filter(pc.equal(toy.column("split"), "train"))
    assert spec.train_rows == train.num_rows
    lens = np.asarray(train.column("tcp_len").to_numpy(), dtype=float)
    by = {n.name: n for n in spec.numeric}
    assert lens.min() <= by["tcp_len"].lo <= by["tcp_len"].hi <= lens.max()
    scaler = model.stages[-1]
    assert scaler.mean[spec.slots.index("tcp_len")] == pytest.approx(
        np.clip(lens, by["tcp_len"].lo, by["tcp_len"].hi).mean())


@pytest.mark.spark
def test_values_outside_train_range_are_clipped_and_unseen_text_has_its_bucket(spark, fitted):
    _, model, spec = fitted
    cols = schema.feature_columns("flow")
    row = {schema.storage_name(c): None for c in cols}
    row.update({"tcp_len": 10**9, "mqtt_protoname": "MQIsdp", "mqtt_msgtype": 3})
    odd = spark.createDataFrame(pa.Table.from_pylist(
        [row], schema=schema.arrow_schema(cols, storage=True)))
    raw = model.transform(odd).select(prep.RAW_VECTOR_COL).first()[0].toArray()
    by = {n.name: n for n in spec.numeric}
    assert raw[spec.slots.index("tcp_len")] == by["tcp_len"].hi
    assert raw[spec.slots.index("mqtt_protoname=<unseen>")] == 1.0
    assert raw[spec.slots.index("mqtt_qos__null")] == 1.0
    assert raw[spec.slots.index("mqtt_qos")] == 0.0


@pytest.mark.spark
def test_no_train_rows_is_a_clear_error(spark, toy):
    empty = spark.createDataFrame(toy.slice(0, 0))
    with pytest.raises(prep.NoTrainRowsError, match="no labelled train rows"):
        prep.fit_preprocessing(empty, schema.feature_columns("packet"))


@pytest.mark.spark
def test_missing_flow_columns_are_named(spark, toy):
    packet_only = spark.createDataFrame(toy.drop_columns(["ctx_flow_packets"]))
    with pytest.raises(prep.MissingFeatureColumnsError, match="ctx_flow_packets"):
        prep.fit_preprocessing(packet_only, schema.feature_columns("flow"))
