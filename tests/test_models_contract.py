"""Contract checks run over every model kind (lr, rf, mlp, dnn).

- the same seed gives the same predictions;
- save then load gives the same predictions (Spark's own format, or a torch
  state_dict read back with weights_only=True);
- the input data is not changed by fitting or scoring.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest
from test_models_data import toy_table

from mqttids import schema
from mqttids.models import bundle, spark_ml, torch_nets
from mqttids.models.export import NumpyPipeline
from mqttids.spark import pipeline as prep

pytestmark = [pytest.mark.spark, pytest.mark.torch]

SMALL = {"lr": {"regParam": 0.01, "maxIter": 20}, "rf": {"numTrees": 10, "maxDepth": 6},
         "mlp": torch_nets.NetParams(hidden=(16,)),
         "dnn": torch_nets.NetParams(hidden=(16, 16, 16), dropout=0.1, norm=True)}


@pytest.fixture(scope="module")
def prepared(spark, tmp_path_factory):
    pytest.importorskip("torch")
    toy = toy_table(40, seed=21)
    snapshot = toy_table(40, seed=21)
    df = prep.with_label(spark.createDataFrame(toy))
    train, test = df.where("split = 'train'"), df.where("split = 'test'")
    pm, spec = prep.fit_preprocessing(train, schema.feature_columns("packet"))
    folder = tmp_path_factory.mktemp("contract")
    pm.write().save(str(folder / "pipeline"))
    pipe = NumpyPipeline.load(folder / "pipeline", spec)
    rows = {s: toy.filter(pc.equal(toy.column("split"), s)) for s in ("train", "test")}
    x = {s: pipe.transform(t).astype(np.float32) for s, t in rows.items()}
    y = np.array([schema.LABELS.index(v) for v in rows["train"].column("target").to_pylist()])
    return {"toy": toy, "snapshot": snapshot, "pm": pm, "train": pm.transform(train),
            "test": pm.transform(test), "x": x, "y": y, "folder": folder}


def _fit(kind: str, p: dict, seed: int):
    """(fitted model, predictions on the toy test rows)."""
    if kind in bundle.SPARK_KINDS:
        model = spark_ml.fit(kind, p["train"], SMALL[kind], seed)
        return model, _spark_predict(model, p["test"])
    fit = torch_nets.fit_net(p["x"]["train"], p["y"], SMALL[kind], n_classes=6, seed=seed,
                             max_epochs=5)
    return fit, _torch_predict(fit.state_dict, kind, p)


def _spark_predict(model, df) -> np.ndarray:
    return np.array([r[0] for r in model.transform(df).select("prediction").collect()], int)


def _torch_predict(state, kind, p) -> np.ndarray:
    net = torch_nets.load_net(state, p["x"]["test"].shape[1], 6, SMALL[kind])
    return torch_nets.predict_proba(net, p["x"]["test"]).argmax(axis=1)


@pytest.mark.parametrize("kind", bundle.KINDS)
def test_same_seed_gives_same_predictions(prepared, kind):
    _, first = _fit(kind, prepared, seed=4)
    _, again = _fit(kind, prepared, seed=4)
    assert np.array_equal(first, again)
    assert len(first) == prepared["x"]["test"].shape[0]


@pytest.mark.parametrize("kind", bundle.KINDS)
def test_save_then_load_gives_same_predictions(prepared, kind, tmp_path):
    model, before = _fit(kind, prepared, seed=1)
    if kind in bundle.SPARK_KINDS:
        model.write().save(str(tmp_path / "model"))
        after = _spark_predict(spark_ml.load_model(kind, str(tmp_path / "model")),
                               prepared["test"])
    else:
        import torch

        bundle.save_weights(model.state_dict, tmp_path / "w.pt")
        state = torch.load(tmp_path / "w.pt", weights_only=True)
        after = _torch_predict(state, kind, prepared)
    assert np.array_equal(before, after)


@pytest.mark.parametrize("kind", bundle.KINDS)
def test_fitting_and_scoring_leave_the_input_alone(prepared, kind):
    x_before = {s: a.copy() for s, a in prepared["x"].items()}
    y_before = prepared["y"].copy()
    _fit(kind, prepared, seed=2)
    assert all(np.array_equal(prepared["x"][s], x_before[s]) for s in x_before)
    assert np.array_equal(prepared["y"], y_before)
    assert prepared["toy"].equals(prepared["snapshot"])
