"""Bundle folders, their checks and the registry, without training anything."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from mqttids import __version__, schema
from mqttids.models import bundle
from mqttids.models.errors import (BundleDamagedError, BundleFeaturesError,
                                   BundleNotFoundError, BundleVersionError)


def _meta(name="rf-flow", kind="rf", feature_set="flow", time_delta=True, **over) -> dict:
    meta = {"name": name, "kind": kind, "mqttids_version": __version__,
            "created": "2026-12-03T10:00:00+00:00", "feature_set": feature_set,
            "time_delta": time_delta,
            "features": list(schema.feature_columns(feature_set, time_delta=time_delta)),
            "labels": list(schema.LABELS), "params": {"numTrees": 5},
            "train": {"rows": 100, "tuning_rows": 100, "fingerprint": "sha256:ab"},
            "metrics": {"cv_macro_f1": 0.9}}
    meta.update(over)
    return meta


def _write(folder, meta: dict, files=("pipeline", "model")):
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps(meta))
    for f in files:
        (folder / f).mkdir()
    return folder


def test_names_say_kind_features_and_time_delta():
    assert bundle.bundle_name("rf", "flow", True) == "rf-flow"
    assert bundle.bundle_name("dnn", "packet", False) == "dnn-packet-no-time-delta"


def test_a_good_bundle_loads_and_is_listed(tmp_path):
    _write(tmp_path / "rf-flow", _meta())
    b = bundle.load_bundle("rf-flow", tmp_path)
    assert b.kind == "rf" and b.features == schema.feature_columns("flow")
    assert bundle.list_bundles(tmp_path) == ["rf-flow"]
    assert bundle.load_bundle(tmp_path / "rf-flow").name == "rf-flow"


def test_unknown_name_in_an_empty_folder_says_to_train(tmp_path):
    with pytest.raises(BundleNotFoundError, match="there are none: run `mqttids train`"):
        bundle.load_bundle("rf-flow", tmp_path)


def test_other_version_is_refused(tmp_path):
    _write(tmp_path / "rf-flow", _meta(mqttids_version="9.9.9"))
    with pytest.raises(BundleVersionError, match="made by mqttids 9.9.9, this is mqttids"):
        bundle.load_bundle("rf-flow", tmp_path)


def test_features_unknown_to_this_schema_are_refused(tmp_path):
    meta = _meta()
    meta["features"] = meta["features"] + ["mqtt.newfield"]
    _write(tmp_path / "rf-flow", meta)
    with pytest.raises(BundleFeaturesError, match="'mqtt.newfield'"):
        bundle.load_bundle("rf-flow", tmp_path)


def test_asking_for_other_features_is_refused(tmp_path):
    _write(tmp_path / "rf-packet", _meta("rf-packet", feature_set="packet"))
    with pytest.raises(BundleFeaturesError, match="does not use"):
        bundle.load_bundle("rf-packet", tmp_path, features=schema.feature_columns("flow"))


def test_missing_files_and_bad_json_are_damage(tmp_path):
    _write(tmp_path / "mlp-flow", _meta("mlp-flow", kind="mlp"), files=("pipeline",))
    with pytest.raises(BundleDamagedError, match="lacks \\['weights.pt'\\]"):
        bundle.load_bundle("mlp-flow", tmp_path)
    (tmp_path / "lr-flow").mkdir()
    (tmp_path / "lr-flow" / "metadata.json").write_text("{not json")
    with pytest.raises(BundleDamagedError, match="cannot be read"):
        bundle.load_bundle("lr-flow", tmp_path)


def test_publish_replaces_a_bundle_of_the_same_name(tmp_path):
    _write(tmp_path / "rf-flow", _meta(params={"old": True}))
    staging = bundle.staging_dir(tmp_path, "rf-flow")
    (staging / "pipeline").mkdir()
    (staging / "model").mkdir()
    bundle.publish(staging, _meta(params={"new": True}), tmp_path)
    assert bundle.load_bundle("rf-flow", tmp_path).meta["params"] == {"new": True}
    assert [p.name for p in tmp_path.iterdir()] == ["rf-flow"]


class FakeWarehouse:
    """read_table/write_table as the warehouse contract defines them, in memory."""

    def __init__(self):
        self.tables: dict[str, pa.Table] = {}

    def read_table(self, name):
        return self.tables.get(name)

    def write_table(self, name, table, mode="overwrite"):
        assert mode == "overwrite"
        self.tables[name] = table


def test_registry_rows_hold_metrics_and_params_as_json(tmp_path):
    b = bundle.Bundle(tmp_path / "rf-flow", _meta(time_delta=False))
    b.meta["metrics"]["test"] = {"accuracy": 0.99, "macro_f1": 0.98, "ceiling": 0.995,
                                 "unseen_rows": {"accuracy": 0.9, "macro_f1": 0.8}}
    row = bundle.registry_row(b)
    assert row["features"] == "flow-no-time-delta"
    metrics = json.loads(row["metrics"])
    assert metrics["test_accuracy"] == 0.99 and metrics["unseen_macro_f1"] == 0.8
    assert json.loads(row["params"]) == {"numTrees": 5}


def test_registering_replaces_rows_by_name(tmp_path):
    wh = FakeWarehouse()
    a = bundle.Bundle(tmp_path / "rf-flow", _meta())
    b = bundle.Bundle(tmp_path / "lr-flow", _meta("lr-flow", kind="lr"))
    bundle.register(wh, [a, b])
    a.meta["params"] = {"numTrees": 7}
    bundle.register(wh, [a])
    reg = wh.tables["models"]
    assert sorted(reg.column("name").to_pylist()) == ["lr-flow", "rf-flow"]
    params = dict(zip(reg.column("name").to_pylist(), reg.column("params").to_pylist()))
    assert json.loads(params["rf-flow"]) == {"numTrees": 7}


@pytest.mark.postgres
def test_registry_lands_in_postgres_models(pg_dsn, pg_warehouse, tmp_path):
    from mqttids.warehouse import open_warehouse

    a = bundle.Bundle(tmp_path / "rf-flow", _meta())
    with open_warehouse(pg_dsn, pg_schema=pg_warehouse) as wh:
        bundle.register(wh, [a])
        bundle.register(wh, [a, bundle.Bundle(tmp_path / "lr-flow", _meta("lr-flow", kind="lr"))])
        reg = wh.read_table("models")
    assert sorted(reg.column("name").to_pylist()) == ["lr-flow", "rf-flow"]
    assert json.loads(reg.column("metrics")[0].as_py())["cv_macro_f1"] == 0.9
