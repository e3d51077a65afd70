"""`mqttids train`: option checks before any work, and a run through a Parquet warehouse."""

from __future__ import annotations

import json

import pytest
from test_models_data import toy_warehouse

from mqttids.cli import main


@pytest.mark.parametrize("argv,message", [
    (["--models", "lr,svm"], "unknown model(s) ['svm']"),
    (["--models", ","], "(none given)"),
    (["--models", "lr,lr"], "lists a model twice"),
    (["--folds", "1"], "--folds must be at least 2, got 1"),
    (["--tune-rows", "5"], "--tune-rows must be at least 100, got 5"),
    (["--max-epochs", "0"], "--max-epochs must be at least 1, got 0"),
])
def test_bad_options_fail_with_one_line(capsys, argv, message, tmp_path):
    code = main(["--warehouse", f"parquet:{tmp_path}", "train", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_cuda_without_a_gpu_is_refused(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["--warehouse", f"parquet:{tmp_path}", "train", "--models", "mlp",
                 "--device", "cuda"])
    assert code == 2 and "no CUDA device" in capsys.readouterr().err


@pytest.mark.spark
def test_an_empty_warehouse_says_what_to_ingest(spark, capsys, tmp_path):
    code = main(["--warehouse", f"parquet:{tmp_path / 'wh'}", "train", "--models", "lr",
                 "--models-dir", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and "mqttids ingest" in err and "--split train" in err


@pytest.mark.spark
@pytest.mark.torch
@pytest.mark.slow
def test_train_json_describes_each_model_and_writes_bundles(spark, capsys, tmp_path):
    url = toy_warehouse(tmp_path)
    models = tmp_path / "models"
    code = main(["--warehouse", url, "--quiet", "train", "--models", "mlp", "--folds", "2",
                 "--features", "packet", "--no-time-delta", "--device", "cpu",
                 "--max-epochs", "3", "--models-dir", str(models), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    doc = json.loads(out)
    (m,) = doc["models"]
    assert m["name"] == "mlp-packet-no-time-delta"
    assert {"name", "kind", "features", "cv", "best_params"} <= set(m)
    assert m["features"] == "packet" and len(m["cv"]) == 2  # the declared grid
    assert m["best_params"] in [c["params"] for c in m["cv"]]
    assert (models / m["name"] / "metadata.json").is_file()
    from mqttids.warehouse import open_warehouse

    with open_warehouse(url) as wh:
        assert wh.read_table("models").column("name").to_pylist() == [m["name"]]
        assert wh.read_table("model_tuning").num_rows == 2 * 2
