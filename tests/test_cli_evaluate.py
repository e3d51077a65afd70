"""`mqttids evaluate`: JSON in design.md's shape, tables, PNGs, and clear errors."""

from __future__ import annotations

import json

import pytest
from test_models_data import toy_warehouse

from mqttids.cli import main
from mqttids.schema import LABELS


def test_no_bundles_is_a_one_line_error(capsys, tmp_path):
    code = main(["--warehouse", f"parquet:{tmp_path}", "evaluate",
                 "--models-dir", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 2 and "run `mqttids train` first" in err


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """A toy warehouse and two bundles made by the library (small grids, fast)."""
    pytest.importorskip("torch")
    from mqttids.models import spark_ml, torch_nets, workflow
    from mqttids.warehouse import open_warehouse

    root = tmp_path_factory.mktemp("cli-evaluate")
    url = toy_warehouse(root)
    grids = {"rf": ({"numTrees": 10, "maxDepth": 5},),
             "mlp": (torch_nets.NetParams(hidden=(16,), lr=0.01),),
             "lr": (spark_ml.GRIDS["lr"][0],)}
    with open_warehouse(url) as wh:
        workflow.train_models(spark, workflow.WarehouseData(wh), workflow.TrainOptions(
            models=("rf", "mlp"), folds=2, device="cpu", max_epochs=3,
            models_dir=root / "models", grids=grids), wh=wh)
    return url, root / "models"


@pytest.mark.spark
@pytest.mark.torch
@pytest.mark.slow
def test_evaluate_json_has_design_shape(trained, capsys):
    url, models = trained
    code = main(["--warehouse", url, "evaluate", "--models-dir", str(models), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    doc = json.loads(captured.out)
    assert [m["name"] for m in doc["models"]] == ["mlp-flow", "rf-flow"]
    for m in doc["models"]:
        assert set(m) == {"name", "accuracy", "macro_f1", "per_class", "confusion", "ceiling",
                          "unseen_rows"}
        assert set(m["unseen_rows"]) == {"accuracy", "macro_f1"}
        assert m["confusion"]["labels"] == list(LABELS)
        assert set(next(iter(m["per_class"].values()))) == {"precision", "recall", "f1",
                                                            "support"}
        assert (models / m["name"] / "confusion.png").is_file()
    from mqttids.warehouse import open_warehouse

    with open_warehouse(url) as wh:
        metrics = json.loads(wh.read_table("models").column("metrics")[0].as_py())
    assert metrics["test_accuracy"] is not None


@pytest.mark.spark
@pytest.mark.torch
@pytest.mark.slow
def test_evaluate_prints_tables_for_one_model(trained, capsys):
    url, models = trained
    code = main(["--warehouse", url, "evaluate", "--model", "rf-flow", "--models-dir",
                 str(models), "--no-png"])
    out = capsys.readouterr().out
    assert code == 0
    assert "rf-flow" in out and "ceiling" in out and "unseen in train" in out
    assert "per class" in out and "confusion" in out and "mlp-flow" not in out


@pytest.mark.spark
def test_an_unknown_model_name_lists_the_bundles(trained, capsys):
    url, models = trained
    code = main(["--warehouse", url, "evaluate", "--model", "svm", "--models-dir", str(models)])
    err = capsys.readouterr().err
    assert code == 2 and "no model bundle 'svm'" in err and "mlp-flow, rf-flow" in err
