"""The numpy scorer reproduces Spark: same features, same LR and RF predictions."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest
from test_models_data import toy_table

from mqttids import schema
from mqttids.models import spark_ml
from mqttids.models.errors import ExportError
from mqttids.models.export import (NumpyLogisticRegression, NumpyPipeline, NumpyRandomForest,
                                   dense_matrix, raw_input)
from mqttids.spark import pipeline as prep


def test_dense_matrix_reads_both_layouts():
    col_major = {"type": 1, "numRows": 2, "numCols": 3, "values": [1, 4, 2, 5, 3, 6],
                 "isTransposed": False}
    row_major = {**col_major, "values": [1, 2, 3, 4, 5, 6], "isTransposed": True}
    expected = [[1, 2, 3], [4, 5, 6]]
    assert dense_matrix(col_major).tolist() == expected
    assert dense_matrix(row_major).tolist() == expected
    sparse = {"type": 0, "numRows": 2, "numCols": 3, "colPtrs": [0, 1, 1, 2],
              "rowIndices": [1, 0], "values": [7.0, 8.0], "isTransposed": False}
    assert dense_matrix(sparse).tolist() == [[0, 0, 8], [7, 0, 0]]


def test_first_byte_follows_spark_conv():
    import pyarrow as pa

    t = pa.table({"mqtt_msg": ["ff10", "7", None, "zz", "a", "0g", "A1bc"]})
    got = raw_input(t, "mqtt_msg", "byte0")
    assert np.array_equal(got[[0, 3, 5, 6]], [255.0, 0.0, 0.0, 161.0])
    assert np.isnan(got[[1, 2, 4]]).all()
    assert raw_input(t, "mqtt_msg", "nbytes")[0] == 2.0
    # Chunked, sliced and non-ASCII input take the same rules.
    odd = pa.table({"mqtt_msg": pa.chunked_array([["x", "ff"], ["\u00e91", "7z"]])}).slice(1)
    assert raw_input(odd, "mqtt_msg", "byte0").tolist() == [255.0, 0.0, 7.0]


@pytest.fixture(scope="module")
def saved(spark, tmp_path_factory):
    """A pipeline, an LR and an RF fitted on toy train rows and saved as Spark saves them."""
    toy = toy_table(50, seed=11)
    df = prep.with_label(spark.createDataFrame(toy))
    train, test = df.where("split = 'train'"), df.where("split = 'test'")
    features = schema.feature_columns("flow")
    pm, spec = prep.fit_preprocessing(train, features)
    out = tmp_path_factory.mktemp("export")
    pm.write().save(str(out / "pipeline"))
    tr = pm.transform(train)
    lr = spark_ml.fit("lr", tr, spark_ml.GRIDS["lr"][0])
    rf = spark_ml.fit("rf", tr, {"numTrees": 15, "maxDepth": 8}, seed=3)
    lr.write().save(str(out / "lr"))
    rf.write().save(str(out / "rf"))
    rows = toy.filter(pc.equal(toy.column("split"), "test"))
    # Spark's output, in the order of the Arrow rows (the toy frame keeps it).
    te = pm.transform(test)
    spark_x = np.array([v.toArray() for v in te.select("features").toPandas()["features"]])
    preds = {name: m.transform(te).select("prediction", "probability").toPandas()
             for name, m in (("lr", lr), ("rf", rf))}
    return out, spec, rows, spark_x, preds


@pytest.mark.spark
def test_numpy_pipeline_equals_spark_features_exactly(saved):
    out, spec, rows, spark_x, _ = saved
    x = NumpyPipeline.load(out / "pipeline", spec).transform(rows)
    assert x.shape == spark_x.shape
    assert np.array_equal(x, spark_x)


@pytest.mark.spark
def test_numpy_pipeline_reads_wireshark_names_too(saved):
    out, spec, rows, spark_x, _ = saved
    renamed = rows.rename_columns([schema.field_name(c) for c in rows.column_names])
    assert np.array_equal(NumpyPipeline.load(out / "pipeline", spec).transform(renamed), spark_x)


@pytest.mark.spark
@pytest.mark.parametrize("kind,cls", [("lr", NumpyLogisticRegression), ("rf", NumpyRandomForest)])
def test_numpy_models_predict_what_spark_predicts(saved, kind, cls):
    out, spec, rows, spark_x, preds = saved
    model = cls.load(out / kind)
    x = NumpyPipeline.load(out / "pipeline", spec).transform(rows)
    got = model.predict(x)
    want = preds[kind]["prediction"].to_numpy().astype(int)
    assert np.array_equal(got, want)
    spark_p = np.array([v.toArray() for v in preds[kind]["probability"]])
    proba = model.predict_proba(x)
    assert proba.shape == (len(rows), len(schema.LABELS))
    assert np.allclose(proba[:, :spark_p.shape[1]], spark_p, atol=1e-9)


@pytest.mark.spark
def test_loading_the_wrong_kind_is_refused(saved):
    out = saved[0]
    with pytest.raises(ExportError, match="not a random forest"):
        NumpyRandomForest.load(out / "lr")
    with pytest.raises(ExportError, match="no Spark metadata"):
        NumpyLogisticRegression.load(out)


@pytest.mark.spark
def test_missing_input_column_is_named(saved):
    out, spec, rows, _, _ = saved
    with pytest.raises(ExportError, match="mqtt.kalive"):
        NumpyPipeline.load(out / "pipeline", spec).transform(rows.drop_columns(["mqtt_kalive"]))
