"""train_models / evaluate_models end to end on toy rows: bundles, registry, reports."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.compute as pc
import pytest
from test_models_data import toy_table

from mqttids import __version__, schema
from mqttids.models import bundle, spark_ml, torch_nets, workflow
from mqttids.models.errors import (BundleFeaturesError, BundleNotFoundError,
                                   BundleVersionError)

pytestmark = [pytest.mark.spark, pytest.mark.torch, pytest.mark.slow]

GRIDS = {"lr": (spark_ml.GRIDS["lr"][0],),
         "rf": ({"numTrees": 10, "maxDepth": 6}, {"numTrees": 10, "maxDepth": 3}),
         "mlp": (torch_nets.NetParams(hidden=(16,), lr=0.01),),
         "dnn": (torch_nets.NetParams(hidden=(16, 16, 16), dropout=0.1, norm=True, lr=0.01),)}


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    pytest.importorskip("torch")
    from mqttids.warehouse import open_warehouse

    root = tmp_path_factory.mktemp("workflow")
    toy = toy_table(40, seed=8)
    data = workflow.ArrowData(toy)
    wh = open_warehouse(f"parquet:{root / 'wh'}")
    options = workflow.TrainOptions(folds=2, feature_set="flow", seed=3, device="cpu",
                                    max_epochs=4, models_dir=root / "models", grids=GRIDS)
    summaries = workflow.train_models(spark, data, options, wh=wh)
    results = workflow.evaluate_models(spark, data, None, root / "models", wh=wh)
    yield {"toy": toy, "data": data, "wh": wh, "summaries": summaries, "results": results,
           "dir": root / "models", "root": root}
    wh.close()


def test_every_model_gets_a_summary_with_its_cv_table(run):
    names = [s["name"] for s in run["summaries"]]
    assert names == ["lr-flow", "rf-flow", "mlp-flow", "dnn-flow"]
    rf = run["summaries"][1]
    assert rf["kind"] == "rf" and rf["features"] == "flow"
    assert len(rf["cv"]) == 2 and all(len(c["macro_f1"]) == 2 for c in rf["cv"])
    assert rf["best_params"] in [c["params"] for c in rf["cv"]]
    assert rf["tuning_rows"] == rf["train_rows"]
    train_rows = run["toy"].filter(pc.equal(run["toy"].column("split"), "train")).num_rows
    assert rf["train_rows"] == train_rows


def test_bundles_hold_metadata_pipeline_and_model(run):
    for s in run["summaries"]:
        path = run["dir"] / s["name"]
        meta = json.loads((path / "metadata.json").read_text())
        assert meta["mqttids_version"] == __version__
        assert meta["labels"] == list(schema.LABELS)
        assert tuple(meta["features"]) == schema.feature_columns("flow")
        assert meta["train"]["fingerprint"].startswith("sha256:")
        assert meta["versions"]["pyspark"] and meta["versions"]["torch"]
        assert (path / "pipeline" / "metadata").is_dir()
        model_file = "model" if s["kind"] in bundle.SPARK_KINDS else "weights.pt"
        assert (path / model_file).exists()
        assert (path / "confusion.png").is_file()
    assert not [p for p in run["dir"].iterdir() if p.name.startswith(".")]


def test_registry_and_tuning_table_are_in_the_warehouse(run):
    reg = run["wh"].read_table("models")
    assert sorted(reg.column("name").to_pylist()) == ["dnn-flow", "lr-flow", "mlp-flow",
                                                      "rf-flow"]
    metrics = json.loads(reg.column("metrics")[0].as_py())
    assert metrics["test_accuracy"] is not None and metrics["cv_macro_f1"] is not None
    tuned = run["wh"].read_table("model_tuning")
    assert tuned.num_rows == 2 * (1 + 2 + 1 + 1)


def test_registering_again_replaces_the_row(run):
    b = bundle.load_bundle("lr-flow", run["dir"])
    bundle.register(run["wh"], [b])
    names = run["wh"].read_table("models").column("name").to_pylist()
    assert names.count("lr-flow") == 1 and len(names) == 4


def test_evaluation_reports_every_figure(run):
    test_rows = run["toy"].filter(pc.equal(run["toy"].column("split"), "test")).num_rows
    for r in run["results"]:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1
        assert 0 < r["ceiling"] <= 1
        assert np.asarray(r["confusion"]["matrix"]).sum() == test_rows
        assert sum(c["support"] for c in r["per_class"].values()) == test_rows
        assert 0 <= r["unseen_rows"]["rows"] <= test_rows
    best = max(r["accuracy"] for r in run["results"])
    assert best > 0.8  # the toy classes are easy


def test_spark_free_scorer_agrees_with_spark_on_the_bundles(run, spark):
    from pyspark.ml import PipelineModel

    test = run["toy"].filter(pc.equal(run["toy"].column("split"), "test"))
    snapshot = test.slice(0)
    df = spark.createDataFrame(test)
    for kind in bundle.SPARK_KINDS:
        path = run["dir"] / f"{kind}-flow"
        pm = PipelineModel.load(str(path / "pipeline"))
        model = spark_ml.load_model(kind, str(path / "model"))
        want = [int(r[0]) for r in model.transform(pm.transform(df)).select("prediction")
                .collect()]
        got = bundle.load_scorer(f"{kind}-flow", run["dir"]).predict(test)
        assert got.tolist() == want
    scorer = bundle.load_scorer("dnn-flow", run["dir"])
    assert scorer.predict_proba(test).shape == (test.num_rows, 6)
    assert len(scorer.predict_labels(test)) == test.num_rows
    assert test.equals(snapshot)


def test_a_bundle_from_another_version_is_refused(run, tmp_path):
    shutil.copytree(run["dir"] / "lr-flow", tmp_path / "lr-flow")
    meta_file = tmp_path / "lr-flow" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["mqttids_version"] = "0.0.1"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(BundleVersionError, match="made by mqttids 0.0.1"):
        bundle.load_bundle("lr-flow", tmp_path)


def test_a_bundle_with_other_features_is_refused(run, tmp_path):
    with pytest.raises(BundleFeaturesError, match="trained on other features"):
        bundle.load_scorer("rf-flow", run["dir"], features=schema.feature_columns("packet"))
    shutil.copytree(run["dir"] / "rf-flow", tmp_path / "rf-flow")
    meta_file = tmp_path / "rf-flow" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["features"] = meta["features"][:-1]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(BundleFeaturesError, match="differ from the 'flow' feature set"):
        bundle.load_bundle(tmp_path / "rf-flow")


def test_an_unknown_bundle_lists_the_ones_there_are(run):
    with pytest.raises(BundleNotFoundError, match="bundles there: dnn-flow, lr-flow"):
        bundle.load_bundle("svm-flow", run["dir"])


def test_tuning_on_a_sample_refits_on_all_train(spark, run, tmp_path):
    options = workflow.TrainOptions(models=("mlp",), folds=2, feature_set="packet",
                                    time_delta=False, device="cpu", max_epochs=2,
                                    tune_rows=100, models_dir=tmp_path, grids=GRIDS)
    (s,) = workflow.train_models(spark, run["data"], options)
    assert s["name"] == "mlp-packet-no-time-delta"
    assert s["tuning_rows"] < s["train_rows"]
    meta = bundle.load_bundle(s["name"], tmp_path).meta
    assert "tcp.time_delta" not in meta["features"]
    assert meta["train"]["rows"] == s["train_rows"]


def test_flow_features_without_context_values_are_refused(spark, tmp_path):
    import pyarrow as pa

    from mqttids.spark.pipeline import MissingFeatureColumnsError

    toy = toy_table(10, seed=2)
    for name in schema.CONTEXT_NAMES:
        col = schema.storage_name(name)
        toy = toy.set_column(toy.schema.get_field_index(col), col,
                             pa.nulls(toy.num_rows, toy.schema.field(col).type))
    options = workflow.TrainOptions(models=("lr",), folds=2, models_dir=tmp_path, grids=GRIDS)
    with pytest.raises(MissingFeatureColumnsError, match="--features packet"):
        workflow.train_models(spark, workflow.ArrowData(toy), options)
