"""Model bundles: one folder per model, and the registry that lists them.

A bundle is ``MODELS_DIR/NAME/`` holding

- ``metadata.json``: kind, features, label order, preprocessing spec, best
  parameters, cross-validation summary, metrics, data fingerprint, versions;
- ``pipeline/``: the fitted preprocessing PipelineModel in Spark's format;
- ``model/`` (Spark LR and RF, Spark's format) or ``weights.pt`` (a network's
  state_dict, read back with ``torch.load(..., weights_only=True)``);
- after ``mqttids evaluate``, ``confusion.png``.

No pickled code anywhere. :func:`load_scorer` scores rows without Spark: the
pipeline, LR and RF through :mod:`mqttids.models.export`, networks with torch.
The registry is the warehouse table ``models`` (``mqtt.models`` in
PostgreSQL, a Parquet folder otherwise), one row per bundle name.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mqttids import __version__, schema
from mqttids.models.errors import (BundleDamagedError, BundleFeaturesError,
                                   BundleNotFoundError, BundleVersionError)
from mqttids.spark.pipeline import PreprocessSpec

log = logging.getLogger(__name__)

DEFAULT_MODELS_DIR = Path("mqttids-data") / "models"
METADATA = "metadata.json"
PIPELINE_DIR = "pipeline"
MODEL_DIR = "model"
WEIGHTS = "weights.pt"
CONFUSION_PNG = "confusion.png"
REGISTRY_TABLE = "models"
TUNING_TABLE = "model_tuning"
SPARK_KINDS = ("lr", "rf")
TORCH_KINDS = ("mlp", "dnn")
KINDS = SPARK_KINDS + TORCH_KINDS


def bundle_name(kind: str, feature_set: str, time_delta: bool) -> str:
    """The default name: ``rf-flow``, ``lr-packet``, ``dnn-packet-no-time-delta``."""
    return f"{kind}-{feature_set}" + ("" if time_delta else "-no-time-delta")


def versions() -> dict:
    """Versions that a bundle records, to explain a later mismatch."""
    out = {"mqttids": __version__, "python": platform.python_version(),
           "numpy": np.__version__, "pyarrow": pa.__version__}
    for mod in ("pyspark", "torch"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


@dataclass
class Bundle:
    """A bundle's folder and its parsed metadata."""

    path: Path
    meta: dict

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.meta["features"])

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_json(self.meta["preprocessing"])

    def save_metadata(self) -> None:
        _write_json(self.path / METADATA, self.meta)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)


def staging_dir(models_dir: Path, name: str) -> Path:
    """A fresh folder next to the bundles where one is built before it replaces the old."""
    path = Path(models_dir) / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    path.mkdir(parents=True)
    return path


def publish(staging: Path, meta: dict, models_dir: Path) -> Bundle:
    """Write metadata and move the staged folder into place (replacing a same-named bundle)."""
    _write_json(staging / METADATA, meta)
    final = Path(models_dir) / meta["name"]
    if final.exists():
        old = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.old")
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(final)
    log.info("saved bundle %s", final)
    return Bundle(final, meta)


def list_bundles(models_dir: Path = DEFAULT_MODELS_DIR) -> list[str]:
    """Names of the bundles in ``models_dir``, sorted."""
    d = Path(models_dir)
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / METADATA).is_file())


def resolve(name_or_path: str | Path, models_dir: Path = DEFAULT_MODELS_DIR) -> Path:
    """A bundle folder from a name in ``models_dir`` or a path."""
    p = Path(name_or_path)
    if (p / METADATA).is_file():
        return p
    candidate = Path(models_dir) / str(name_or_path)
    if (candidate / METADATA).is_file():
        return candidate
    known = list_bundles(models_dir)
    hint = (f"bundles there: {', '.join(known)}" if known
            else "there are none: run `mqttids train` first")
    raise BundleNotFoundError(f"no model bundle {str(name_or_path)!r} in {models_dir}; {hint}")


def load_bundle(name_or_path: str | Path, models_dir: Path = DEFAULT_MODELS_DIR, *,
                features: tuple[str, ...] | None = None) -> Bundle:
    """Read and check a bundle: same mqttids version, known features, files present.

    ``features``, when given, are the columns the caller will supply (Wireshark
    names); the bundle must have been trained on exactly those.
    """
    path = resolve(name_or_path, models_dir)
    try:
        meta = json.loads((path / METADATA).read_text())
    except (OSError, ValueError) as exc:
        raise BundleDamagedError(f"{path / METADATA} cannot be read ({exc}): "
                                 "retrain the model with `mqttids train`") from exc
    made_by = meta.get("mqttids_version")
    if made_by != __version__:
        raise BundleVersionError(
            f"bundle {path.name!r} was made by mqttids {made_by}, this is mqttids "
            f"{__version__}: retrain it with this version (`mqttids train`)")
    _check_features(path, meta, features)
    needed = [PIPELINE_DIR, MODEL_DIR if meta.get("kind") in SPARK_KINDS else WEIGHTS]
    missing = [n for n in needed if not (path / n).exists()]
    if missing:
        raise BundleDamagedError(f"bundle {path.name!r} lacks {missing}: retrain it "
                                 "with `mqttids train`")
    return Bundle(path, meta)


def _check_features(path: Path, meta: dict, wanted: tuple[str, ...] | None) -> None:
    have = tuple(meta.get("features", ()))
    unknown = [c for c in have if c not in schema.BY_NAME]
    if unknown:
        raise BundleFeaturesError(
            f"bundle {path.name!r} uses columns {unknown} that this mqttids schema does not "
            "know: retrain it with `mqttids train`")
    expected = schema.feature_columns(meta.get("feature_set", "packet"),
                                      time_delta=meta.get("time_delta", True))
    if have != expected:
        raise BundleFeaturesError(
            f"bundle {path.name!r} lists features that differ from the {meta.get('feature_set')!r} "
            "feature set of this mqttids: retrain it with `mqttids train`")
    if wanted is not None and tuple(wanted) != have:
        extra = sorted(set(have) - set(wanted))
        lacking = sorted(set(wanted) - set(have))
        raise BundleFeaturesError(
            f"bundle {path.name!r} was trained on other features (it needs {extra or 'none'} "
            f"more, and does not use {lacking or 'none'}): pick a bundle of the same feature "
            "set or retrain with the matching --features / --no-time-delta")


# -- scoring without Spark -----------------------------------------------------------

class Scorer:
    """Scores Arrow rows with a bundle, without a Spark session.

    ``predict_proba(rows)`` gives an (n, 6) array in :data:`schema.LABELS`
    order; ``predict(rows)`` the label indices; ``predict_labels(rows)`` the
    names. Rows may use storage names (warehouse) or Wireshark names (capture).
    """

    def __init__(self, bundle: Bundle, device: str = "cpu"):
        from mqttids.models.export import (NumpyLogisticRegression, NumpyPipeline,
                                           NumpyRandomForest)

        self.bundle = bundle
        self.labels = tuple(bundle.meta["labels"])
        self.pipeline = NumpyPipeline.load(bundle.path / PIPELINE_DIR, bundle.spec)
        kind = bundle.kind
        if kind == "lr":
            self._model = NumpyLogisticRegression.load(bundle.path / MODEL_DIR)
        elif kind == "rf":
            self._model = NumpyRandomForest.load(bundle.path / MODEL_DIR)
        else:
            self._model = _TorchModel(bundle, device)

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def features(self) -> tuple[str, ...]:
        return self.bundle.features

    def transform(self, rows) -> np.ndarray:
        return self.pipeline.transform(rows)

    def predict_proba(self, rows) -> np.ndarray:
        return self._model.predict_proba(self.pipeline.transform(rows))

    def predict(self, rows) -> np.ndarray:
        return self.predict_proba(rows).argmax(axis=1)

    def predict_labels(self, rows) -> list[str]:
        return [self.labels[i] for i in self.predict(rows)]


class _TorchModel:
    def __init__(self, bundle: Bundle, device: str):
        import torch

        from mqttids.models import torch_nets

        net_meta = bundle.meta["network"]
        state = torch.load(bundle.path / WEIGHTS, map_location="cpu", weights_only=True)
        params = torch_nets.NetParams.from_json(net_meta["params"])
        self.device = device
        self.net = torch_nets.load_net(state, net_meta["n_in"], net_meta["n_out"], params,
                                       device)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        from mqttids.models import torch_nets

        return torch_nets.predict_proba(self.net, x, self.device)


def load_scorer(name_or_path: str | Path, models_dir: Path = DEFAULT_MODELS_DIR, *,
                features: tuple[str, ...] | None = None, device: str = "cpu") -> Scorer:
    """The Spark-free scorer of a bundle (what `mqttids detect` uses)."""
    return Scorer(load_bundle(name_or_path, models_dir, features=features), device)


def save_weights(state_dict: dict, path: Path) -> None:
    import torch

    torch.save(state_dict, path)


# -- registry ------------------------------------------------------------------------

# The columns of the warehouse's fixed ``models`` table (its ``id`` is generated).
REGISTRY_SCHEMA = pa.schema([
    ("name", pa.string()), ("kind", pa.string()), ("features", pa.string()),
    ("path", pa.string()), ("created", pa.timestamp("us", "UTC")), ("metrics", pa.string()),
    ("params", pa.string()), ("fingerprint", pa.string()),
])


def registry_row(bundle: Bundle) -> dict:
    """The registry's row for a bundle, from its metadata; metrics and params as JSON."""
    m = bundle.meta
    test = m.get("metrics", {}).get("test") or {}
    metrics = {
        "cv_macro_f1": m.get("metrics", {}).get("cv_macro_f1"),
        "train_rows": m["train"]["rows"], "tuning_rows": m["train"]["tuning_rows"],
        "test_accuracy": test.get("accuracy"), "test_macro_f1": test.get("macro_f1"),
        "ceiling": test.get("ceiling"),
        "unseen_accuracy": (test.get("unseen_rows") or {}).get("accuracy"),
        "unseen_macro_f1": (test.get("unseen_rows") or {}).get("macro_f1"),
        "evaluated": test.get("evaluated"),
    }
    return {
        "name": m["name"], "kind": m["kind"],
        "features": m["feature_set"] + ("" if m["time_delta"] else "-no-time-delta"),
        "path": str(bundle.path.resolve()),
        "created": dt.datetime.fromisoformat(m["created"]),
        "metrics": json.dumps(metrics, sort_keys=True),
        "params": json.dumps(m["params"], sort_keys=True),
        "fingerprint": m["train"]["fingerprint"],
    }


def replace_rows(wh, table_name: str, new: pa.Table, key: str) -> None:
    """Write ``new`` into a warehouse table, replacing earlier rows with the same ``key``."""
    old = wh.read_table(table_name)
    if old is not None and old.num_rows:
        keys = set(new.column(key).to_pylist())
        keep = [i for i, k in enumerate(old.column(key).to_pylist()) if k not in keys]
        if keep:
            old = old.take(pa.array(keep, pa.int64())).select(new.schema.names)
            new = pa.concat_tables([old.cast(new.schema), new])
    wh.write_table(table_name, new, mode="overwrite")


def register(wh, bundles: list[Bundle]) -> None:
    """Add or update the registry rows of ``bundles``."""
    if not bundles:
        return
    table = pa.Table.from_pylist([registry_row(b) for b in bundles], schema=REGISTRY_SCHEMA)
    replace_rows(wh, REGISTRY_TABLE, table, "name")
