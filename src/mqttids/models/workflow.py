"""`mqttids train` and `mqttids evaluate` as library calls.

Data arrive through a small source object: :class:`WarehouseData` (the
normal case: Spark reads the packets table, the networks read Arrow columns
of it) or :class:`ArrowData` (a table in memory, for benchmarks and tests).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mqttids import __version__, schema
from mqttids.errors import UsageError
from mqttids.models import bundle as bundles
from mqttids.models import evaluate, spark_ml, torch_nets, tuning
from mqttids.models.errors import BundleNotFoundError
from mqttids.models.export import NumpyPipeline
from mqttids.spark import pipeline as prep

log = logging.getLogger(__name__)

CHUNK_ROWS = 1 << 20


# -- data sources --------------------------------------------------------------------

class WarehouseData:
    """Rows from a warehouse opened with mqttids.warehouse.open_warehouse."""

    def __init__(self, wh):
        self.wh = wh

    def frame(self, spark):
        return self.wh.spark_read(spark, "packets")

    def arrow(self, split: str, columns: list[str]) -> pa.Table:
        return self.wh.read_packets_arrow(split=split, columns=columns)


class ArrowData:
    """Rows held in an Arrow table with storage names (benchmarks, tests)."""

    def __init__(self, table: pa.Table):
        self.table = table
        self._frame = None

    def frame(self, spark):
        if self._frame is None:
            keep = [c for c in self.table.column_names if c != "ts"]
            self._frame = spark.createDataFrame(self.table.select(keep))
        return self._frame

    def arrow(self, split: str, columns: list[str]) -> pa.Table:
        t = self.table.filter(pc.equal(self.table.column("split"), split))
        return t.select(columns)


def labelled(df, split: str):
    """Rows of ``split`` with a known label, plus the label index column."""
    labels = ", ".join(f"'{x}'" for x in schema.LABELS)
    return prep.with_label(df.where(f"split = '{split}' AND target IN ({labels})"))


def labels_of(table: pa.Table) -> np.ndarray:
    """Label indices (schema.LABELS order) of an Arrow ``target`` column."""
    idx = pc.index_in(table.column("target"), pa.array(schema.LABELS))
    return np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int64)


def pipeline_matrix(pipe: NumpyPipeline, table: pa.Table) -> np.ndarray:
    """The float32 input matrix of the networks, built a million rows at a time."""
    out = np.empty((table.num_rows, pipe.width), dtype=np.float32)
    for start in range(0, table.num_rows, CHUNK_ROWS):
        out[start:start + CHUNK_ROWS] = pipe.transform(table.slice(start, CHUNK_ROWS))
    return out


# -- training ------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainOptions:
    """What `mqttids train` was asked for; defaults are the command's defaults."""

    models: tuple[str, ...] = bundles.KINDS
    folds: int = tuning.DEFAULT_FOLDS
    feature_set: str = "flow"
    time_delta: bool = True
    seed: int = 0
    device: str = "auto"
    tune_rows: int = tuning.DEFAULT_TUNE_ROWS
    max_epochs: int = torch_nets.DEFAULT_MAX_EPOCHS
    patience: int = torch_nets.DEFAULT_PATIENCE
    models_dir: Path = bundles.DEFAULT_MODELS_DIR
    # Replaces a model's declared grid (tests and benchmarks use small ones).
    grids: dict | None = None

    def check(self) -> TrainOptions:
        """Reject bad options before any work starts."""
        unknown = [m for m in self.models if m not in bundles.KINDS]
        if unknown or not self.models:
            raise UsageError(f"--models {','.join(self.models)!r} names unknown models "
                             f"{unknown}: choose from {','.join(bundles.KINDS)}")
        if len(set(self.models)) != len(self.models):
            raise UsageError(f"--models lists a model twice: {','.join(self.models)}")
        tuning.check_folds(self.folds)
        if self.feature_set not in ("packet", "flow"):
            raise UsageError(f"--features must be packet or flow, got {self.feature_set!r}")
        if self.tune_rows < 100:
            raise UsageError(f"--tune-rows must be at least 100, got {self.tune_rows}")
        if self.max_epochs < 1:
            raise UsageError(f"--max-epochs must be at least 1, got {self.max_epochs}")
        if any(m in bundles.TORCH_KINDS for m in self.models):
            torch_nets.resolve_device(self.device)
        return self

    @property
    def features(self) -> tuple[str, ...]:
        return schema.feature_columns(self.feature_set, time_delta=self.time_delta)

    def grid(self, kind: str) -> tuple:
        """The configurations cross-validation searches for ``kind``."""
        if self.grids and kind in self.grids:
            return tuple(self.grids[kind])
        return (spark_ml.GRIDS if kind in bundles.SPARK_KINDS else torch_nets.GRIDS)[kind]


@dataclass
class _Fitted:
    """State shared by the models of one `train` run."""

    options: TrainOptions
    spec: prep.PreprocessSpec
    pipeline_dir: Path
    tuning_rows: dict = field(default_factory=dict)


def train_models(spark, data, options: TrainOptions, wh=None, progress=None) -> list[dict]:
    """Fit the pipeline, tune and refit each model, save bundles; one summary per model."""
    options = options.check()
    models_dir = Path(options.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    train = train_frame(data.frame(spark), options, "there are no labelled train rows: load "
                        "some with `mqttids ingest SOURCE --split train --label LABEL`")
    pipe_dir = bundles.staging_dir(models_dir, "pipeline")
    try:
        pm, spec = prep.fit_preprocessing(train, options.features)
        check_classes(spec)
        _check_context(spec, options)
        pm.write().overwrite().save(str(pipe_dir))
        state = _Fitted(options, spec, pipe_dir)
        if progress is not None:
            progress.total(_steps(options))
        out = []
        spark_kinds = [m for m in options.models if m in bundles.SPARK_KINDS]
        torch_kinds = [m for m in options.models if m in bundles.TORCH_KINDS]
        if spark_kinds:
            out += _train_spark(state, pm, train, spark_kinds, wh, progress)
        if torch_kinds:
            out += _train_torch(state, data, torch_kinds, wh, progress)
        order = {k: i for i, k in enumerate(options.models)}
        return sorted(out, key=lambda s: order[s["kind"]])
    finally:
        train.unpersist()
        shutil.rmtree(pipe_dir, ignore_errors=True)


def train_frame(df, options: TrainOptions, no_rows_hint: str):
    """The labelled train rows with just the model's inputs, persisted.

    Raises MissingFeatureColumnsError when an input column is missing and
    NoTrainRowsError (with ``no_rows_hint``) when there are no train rows.
    """
    train = labelled(df, "train")
    prep.check_columns(train, options.features)
    if not train.take(1):
        raise prep.NoTrainRowsError(no_rows_hint)
    inputs = [f"`{schema.storage_name(n)}`" for n in options.features]
    return train.select(*inputs, "target", prep.LABEL_COL).persist()


def _steps(options: TrainOptions) -> int:
    return sum(len(options.grid(m)) * options.folds + 1 for m in options.models)


def check_classes(spec: prep.PreprocessSpec,
                  how_to_add: str = "`mqttids ingest ... --split train --label L`") -> None:
    """A classifier needs at least two classes in train; ``how_to_add`` says how to load more."""
    present = [c for c, n in spec.class_counts.items() if n]
    if len(present) < 2:
        raise UsageError(
            f"train holds only the class(es) {present}: a classifier needs at least two; "
            f"ingest more labelled rows with {how_to_add}")


def _check_context(spec: prep.PreprocessSpec, options: TrainOptions) -> None:
    """A flow model without any ctx. value would silently be a packet model."""
    if options.feature_set != "flow":
        return
    ctx = [schema.storage_name(n) for n in schema.CONTEXT_NAMES]
    if all(spec.dropped.get(c) == "all NULL in train" for c in ctx):
        raise prep.MissingFeatureColumnsError(
            "the train rows carry no ctx. (connection context) values, as rows from MQTTset "
            "CSV files do not: train with --features packet, or ingest captures (pcap) "
            "whose rows the decoder gives context")


def spark_frames(pm, train, spec: prep.PreprocessSpec, options: TrainOptions):
    """(cross-validation rows with their fold, all train rows), both transformed, checkpointed.

    The CV rows are a stratified sample of at most ``options.tune_rows``.
    Checkpoints cut the query plans short: the preprocessing SQL is wide, and
    re-planning it for every optimiser iteration costs more than the iteration.
    """
    sample = tuning.spark_sample(train, spec.class_counts, options.tune_rows, options.seed)
    cv_data = pm.transform(tuning.spark_folds(sample, options.folds, options.seed,
                                              spec.sources)) \
        .select(prep.FEATURES_COL, prep.LABEL_COL, tuning.FOLD_COL).localCheckpoint()
    full = pm.transform(train).select(prep.FEATURES_COL, prep.LABEL_COL).localCheckpoint()
    return cv_data, full


def tune_spark_model(kind: str, options: TrainOptions, cv_data, full, train_rows: int,
                     advance=None):
    """Cross-validate ``kind`` over its grid, refit the best on ``full``.

    Returns (bundle name, CV rows, index of the best configuration, its
    parameters, the fitted Spark model).
    """
    name = bundles.bundle_name(kind, options.feature_set, options.time_delta)
    grid = options.grid(kind)
    rows = tuning.cv_spark(name, kind, grid, cv_data, options.folds, options.seed, advance)
    best = tuning.best_config(rows)
    started = time.perf_counter()
    model = spark_ml.fit(kind, full, grid[best], options.seed)
    log.info("%s refitted on all %d train rows in %.1f s", name, train_rows,
             time.perf_counter() - started)
    return name, rows, best, grid[best], model


def _train_spark(state: _Fitted, pm, train, kinds, wh, progress) -> list[dict]:
    o, spec = state.options, state.spec
    cv_data, full = spark_frames(pm, train, spec, o)
    try:
        n_tune = cv_data.count()
        log_sample(n_tune, spec.train_rows)
        out = []
        for kind in kinds:
            name, rows, best, params, model = tune_spark_model(
                kind, o, cv_data, full, spec.train_rows, progress.advance if progress else None)
            staging = _stage(state, name)
            model.write().overwrite().save(str(staging / bundles.MODEL_DIR))
            out.append(_finish(state, name, kind, params, rows, best, n_tune, staging, wh, {}))
            if progress:
                progress.advance()
        return out
    finally:
        cv_data.unpersist()
        full.unpersist()


def _train_torch(state: _Fitted, data, kinds, wh, progress) -> list[dict]:
    o, spec = state.options, state.spec
    table = data.arrow("train", list(spec.sources) + ["target"])
    table = table.filter(pc.is_in(table.column("target"), pa.array(schema.LABELS)))
    pipe = NumpyPipeline.load(state.pipeline_dir, spec)
    x, y = pipeline_matrix(pipe, table), labels_of(table)
    del table
    idx = tuning.stratified_sample_indices(y, o.tune_rows, o.seed)
    log_sample(len(idx), len(y))
    x_tune, y_tune = (x, y) if len(idx) == len(y) else (x[idx], y[idx])
    out = []
    for kind in kinds:
        name = bundles.bundle_name(kind, o.feature_set, o.time_delta)
        grid = o.grid(kind)
        rows = tuning.cv_torch(name, kind, grid, x_tune, y_tune, o.folds, o.seed,
                               device=o.device, max_epochs=o.max_epochs, patience=o.patience,
                               progress=progress.advance if progress else None)
        best = tuning.best_config(rows)
        params = grid[best]
        epochs = min(tuning.refit_epochs(rows, best), o.max_epochs)
        fit = torch_nets.fit_net(x, y, params, n_classes=len(schema.LABELS), seed=o.seed,
                                 device=o.device, max_epochs=epochs)
        log.info("%s refitted on all %d train rows for %d epochs at %.0f rows/s",
                 name, len(y), epochs, fit.rows_per_s)
        staging = _stage(state, name)
        bundles.save_weights(fit.state_dict, staging / bundles.WEIGHTS)
        network = {"n_in": int(x.shape[1]), "n_out": len(schema.LABELS),
                   "params": params.to_json(), "epochs": epochs,
                   "rows_per_s": round(fit.rows_per_s), "device": o.device}
        out.append(_finish(state, name, kind, params.to_json(), rows, best, len(idx), staging,
                           wh, {"network": network}))
        if progress:
            progress.advance()
    return out


def log_sample(n_tune: int, n_train: int) -> None:
    if n_tune < n_train:
        log.warning("tuning on a stratified sample of %d of the %d train rows; the chosen "
                    "configuration is refitted on all of them", n_tune, n_train)


def _stage(state: _Fitted, name: str) -> Path:
    staging = bundles.staging_dir(state.options.models_dir, name)
    shutil.copytree(state.pipeline_dir, staging / bundles.PIPELINE_DIR)
    return staging


def bundle_metadata(name: str, kind: str, options: TrainOptions, spec: prep.PreprocessSpec,
                    params: dict, rows: list[dict], best: int, n_tune: int,
                    extra: dict | None = None) -> dict:
    """``metadata.json`` of a bundle (what :func:`mqttids.models.bundle.load_bundle` reads)."""
    summary = tuning.summarise(rows)
    best_summary = next(s for s in summary if s["config"] == best)
    return {
        "name": name, "kind": kind, "mqttids_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        "feature_set": options.feature_set, "time_delta": options.time_delta,
        "features": list(options.features), "labels": list(schema.LABELS),
        "preprocessing": spec.to_json(), "params": params, "cv": summary,
        "train": {"rows": spec.train_rows, "tuning_rows": n_tune, "folds": options.folds,
                  "seed": options.seed, "class_counts": spec.class_counts,
                  "fingerprint": spec.fingerprint},
        "metrics": {"cv_macro_f1": best_summary["mean_macro_f1"]},
        "versions": bundles.versions(),
        **(extra or {}),
    }


def train_summary(meta: dict, bundle: str) -> dict:
    """One model's entry in the ``train`` object of design.md, from its metadata."""
    return {"name": meta["name"], "kind": meta["kind"], "features": meta["feature_set"],
            "time_delta": meta["time_delta"], "cv": meta["cv"], "best_params": meta["params"],
            "train_rows": meta["train"]["rows"], "tuning_rows": meta["train"]["tuning_rows"],
            "bundle": bundle}


def _finish(state: _Fitted, name, kind, params, rows, best, n_tune, staging, wh,
            extra: dict) -> dict:
    """Write metadata, publish the bundle, record registry and tuning rows; the summary."""
    meta = bundle_metadata(name, kind, state.options, state.spec, params, rows, best, n_tune,
                           extra)
    bundle = bundles.publish(staging, meta, state.options.models_dir)
    if wh is not None:
        bundles.register(wh, [bundle])
        bundles.replace_rows(wh, bundles.TUNING_TABLE, tuning.tuning_table(rows), "model")
    return train_summary(meta, str(bundle.path))


# -- evaluation ----------------------------------------------------------------------

def evaluate_models(spark, data, names: list[str] | None = None,
                    models_dir: Path = bundles.DEFAULT_MODELS_DIR, wh=None,
                    png: bool = True) -> list[dict]:
    """Score each bundle on the test split; update its metadata and the registry."""
    names = names or bundles.list_bundles(models_dir)
    if not names:
        raise BundleNotFoundError(f"no model bundles in {models_dir}: run `mqttids train` first")
    loaded = [bundles.load_bundle(n, models_dir) for n in names]
    frame = data.frame(spark)
    test, train = labelled(frame, "test"), labelled(frame, "train")
    if test.limit(1).count() == 0:
        raise UsageError("there are no labelled test rows to evaluate on: load some with "
                         "`mqttids ingest SOURCE --split test --label LABEL`")
    flagged: dict = {}
    ceilings: dict = {}
    out = []
    try:
        for b in loaded:
            prep.check_columns(test, b.features)
            if b.features not in flagged:
                flagged[b.features] = evaluate.mark_unseen(test, train, b.features).persist()
            td = bool(b.meta["time_delta"])
            if td not in ceilings:
                ceilings[td] = evaluate.ceiling(test, td)
            y, p, unseen = _predict_test(b, flagged[b.features])
            rep = evaluate.report(y, p, unseen, ceilings[td])
            if png:
                evaluate.confusion_png(np.asarray(rep["confusion"]["matrix"]),
                                       b.path / bundles.CONFUSION_PNG, f"{b.name} on test")
            rep["evaluated"] = dt.datetime.now(dt.timezone.utc).isoformat()
            b.meta.setdefault("metrics", {})["test"] = rep
            b.save_metadata()
            out.append({"name": b.name, **rep,
                        "png": str(b.path / bundles.CONFUSION_PNG) if png else None})
        if wh is not None:
            bundles.register(wh, loaded)
        return out
    finally:
        for df in flagged.values():
            df.unpersist()


def _predict_test(b: bundles.Bundle, flagged) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true label, predicted label, unseen flag) per test row."""
    if b.kind in bundles.SPARK_KINDS:
        from pyspark.ml import PipelineModel

        pm = PipelineModel.load(str(b.path / bundles.PIPELINE_DIR))
        model = spark_ml.load_model(b.kind, str(b.path / bundles.MODEL_DIR))
        t = model.transform(pm.transform(flagged)).selectExpr(
            "CAST(label AS INT) AS label", "CAST(prediction AS INT) AS prediction",
            evaluate.UNSEEN_COL).toArrow()
        pred = np.asarray(t.column("prediction").to_numpy(zero_copy_only=False))
    else:
        cols = [f"`{c}`" for c in b.spec.sources]
        t = flagged.select(*cols, "label", evaluate.UNSEEN_COL).toArrow()
        pred = bundles.Scorer(b, device="auto").predict(t)
    y = np.asarray(t.column("label").to_numpy(zero_copy_only=False), dtype=np.int64)
    unseen = np.asarray(t.column(evaluate.UNSEEN_COL).to_numpy(zero_copy_only=False), dtype=bool)
    return y, np.asarray(pred, dtype=np.int64), unseen
