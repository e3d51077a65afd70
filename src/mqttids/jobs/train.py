"""The train job: the Spark ML models of ``mqttids train``, with bundles written to any URI.

The models stage (:mod:`mqttids.models.workflow`) keeps its bundles in a folder
on the driver's disk, which a cluster's executors cannot reach: Spark ML writes
a model from the executors, so on Dataproc an unqualified path lands in HDFS
while Python looks on the driver's disk. This job runs the same steps with the
same library calls (preprocessing fitted on train, stratified sample and folds,
cross-validation over the declared grid, refit of the best configuration on
all of train) and writes each bundle through Spark ML and Hadoop to a URI, in
the layout of :mod:`mqttids.models.bundle`, so that a bundle copied from
``gs://`` loads with :func:`mqttids.models.bundle.load_bundle` unchanged.

Only the Spark models (``lr``, ``rf``) train here; the PyTorch networks train
on one machine with ``mqttids train``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from pathlib import Path

import pyarrow as pa

from mqttids import __version__, schema
from mqttids.errors import MqttidsError, UsageError
from mqttids.jobs import hadoopfs
from mqttids.jobs.errors import JobError
from mqttids.jobs.store import JobWarehouse
from mqttids.models import bundle as bundles
from mqttids.models import spark_ml, tuning
from mqttids.models.workflow import TrainOptions, labelled
from mqttids.spark import pipeline as prep

log = logging.getLogger(__name__)

DEFAULT_MODELS_URI = str(bundles.DEFAULT_MODELS_DIR)


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="cross-validate and fit the Spark ML models, "
                                     "bundles to any URI",
                       description="Fit the preprocessing pipeline on train, cross-validate "
                                   "each Spark model over its declared grid (seeded, "
                                   "stratified folds), refit the best on all of train and "
                                   "save a bundle per model under --models-dir.")
    p.add_argument("--models", default=",".join(bundles.SPARK_KINDS),
                   help="comma-separated Spark models: lr, rf")
    p.add_argument("--folds", type=int, default=tuning.DEFAULT_FOLDS)
    p.add_argument("--features", choices=["packet", "flow"], default="flow")
    p.add_argument("--no-time-delta", action="store_true",
                   help="leave tcp.time_delta out of the features")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tune-rows", type=int, default=tuning.DEFAULT_TUNE_ROWS,
                   help="cross-validate on a stratified sample of at most this many rows")
    p.add_argument("--models-dir", default=DEFAULT_MODELS_URI, metavar="URI",
                   help="where bundles go: a path or gs://, hdfs:// URI")
    p.add_argument("--grid", default=None, metavar="JSON",
                   help='replace declared grids, e.g. \'{"lr": [{"regParam": 0.01, '
                        '"maxIter": 20}]}\' (Spark ML parameter names)')


def parse_grid(text: str | None) -> dict | None:
    """``--grid``: {kind: [params, ...]} with at least one configuration per kind."""
    if text is None:
        return None
    try:
        grid = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--grid is not JSON ({exc.msg} at character {exc.pos}): give e.g. "
                         '{"lr": [{"regParam": 0.01}]}') from None
    if not isinstance(grid, dict) or not all(
            isinstance(v, list) and v and all(isinstance(c, dict) for c in v)
            for v in grid.values()):
        raise UsageError(f"--grid must map a model to a list of parameter objects, got "
                         f"{text!r}: e.g. {{\"lr\": [{{\"regParam\": 0.01}}]}}")
    unknown = [k for k in grid if k not in bundles.SPARK_KINDS]
    if unknown:
        raise UsageError(f"--grid names models {unknown} that the Spark job does not train; "
                         f"use {', '.join(bundles.SPARK_KINDS)}")
    return {k: tuple(v) for k, v in grid.items()}


def options_from(args) -> TrainOptions:
    """The models stage's options, checked; the networks are refused here."""
    kinds = tuple(k.strip() for k in args.models.split(",") if k.strip())
    networks = [k for k in kinds if k in bundles.TORCH_KINDS]
    if networks:
        raise UsageError(f"--models {args.models!r}: the networks {networks} train on one "
                         "machine with `mqttids train`; the Spark job trains "
                         f"{', '.join(bundles.SPARK_KINDS)}")
    return TrainOptions(models=kinds, folds=args.folds, feature_set=args.features,
                        time_delta=not args.no_time_delta, seed=args.seed,
                        tune_rows=args.tune_rows, grids=parse_grid(args.grid)).check()


def train_job(spark, wh: JobWarehouse, args) -> dict:
    """The ``train`` object of design.md for the Spark models."""
    options = options_from(args)
    models_uri = hadoopfs.qualify(spark, args.models_dir)
    return {"models": train_spark_models(spark, wh, options, models_uri)}


def train_spark_models(spark, wh: JobWarehouse, options: TrainOptions,
                       models_uri: str) -> list[dict]:
    """Fit, tune and refit each Spark model of ``options``; one summary per bundle."""
    train = labelled(wh.packets(), "train")
    prep.check_columns(train, options.features)
    if not train.take(1):
        raise prep.NoTrainRowsError(f"the warehouse {wh.display_url} has no labelled train "
                                    "rows: load some with the ingest-csv job (--split train)")
    inputs = [f"`{schema.storage_name(n)}`" for n in options.features]
    train = train.select(*inputs, "target", prep.LABEL_COL).persist()
    try:
        pm, spec = prep.fit_preprocessing(train, options.features)
        present = [c for c, n in spec.class_counts.items() if n]
        if len(present) < 2:
            raise JobError(f"train holds only the class(es) {present}: a classifier needs at "
                           "least two; ingest more labelled rows with --split train")
        sample = tuning.spark_sample(train, spec.class_counts, options.tune_rows, options.seed)
        # As the models stage does: checkpoints cut the wide preprocessing plan short,
        # which would otherwise be planned again for every optimiser iteration.
        cv_data = pm.transform(tuning.spark_folds(sample, options.folds, options.seed,
                                                  spec.sources)) \
            .select(prep.FEATURES_COL, prep.LABEL_COL, tuning.FOLD_COL).localCheckpoint()
        full = pm.transform(train).select(prep.FEATURES_COL, prep.LABEL_COL) \
            .localCheckpoint()
        try:
            n_tune = cv_data.count()
            if n_tune < spec.train_rows:
                log.warning("tuning on a stratified sample of %d of the %d train rows; the "
                            "chosen configuration is refitted on all of them", n_tune,
                            spec.train_rows)
            return [_train_one(spark, wh, options, kind, pm, spec, cv_data, full, n_tune,
                               models_uri) for kind in options.models]
        finally:
            cv_data.unpersist()
            full.unpersist()
    finally:
        train.unpersist()


def _train_one(spark, wh, options: TrainOptions, kind: str, pm, spec, cv_data, full,
               n_tune: int, models_uri: str) -> dict:
    name = bundles.bundle_name(kind, options.feature_set, options.time_delta)
    grid = options.grid(kind)
    rows = tuning.cv_spark(name, kind, grid, cv_data, options.folds, options.seed)
    best = tuning.best_config(rows)
    params = grid[best]
    started = time.perf_counter()
    model = spark_ml.fit(kind, full, params, options.seed)
    log.info("%s refitted on all %d train rows in %.1f s", name, spec.train_rows,
             time.perf_counter() - started)
    summary = tuning.summarise(rows)
    meta = bundle_metadata(name, kind, options, spec, params, summary, best, n_tune)
    uri = save_bundle(spark, models_uri, name, pm, model, meta)
    record(wh, bundles.Bundle(Path(name), meta), uri, tuning.tuning_table(rows))
    return {"name": name, "kind": kind, "features": options.feature_set,
            "time_delta": options.time_delta, "cv": summary, "best_params": params,
            "train_rows": spec.train_rows, "tuning_rows": n_tune, "bundle": uri}


def bundle_metadata(name: str, kind: str, options: TrainOptions, spec, params: dict,
                    summary: list[dict], best: int, n_tune: int) -> dict:
    """``metadata.json`` of a bundle, with the keys the models stage writes and reads."""
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
    }


def save_bundle(spark, models_uri: str, name: str, pm, model, meta: dict) -> str:
    """Write pipeline, model and metadata under a staging name, then move it into place."""
    final = hadoopfs.join(models_uri, name)
    staging = hadoopfs.join(models_uri, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pm.write().overwrite().save(hadoopfs.join(staging, bundles.PIPELINE_DIR))
        model.write().overwrite().save(hadoopfs.join(staging, bundles.MODEL_DIR))
        text = json.dumps(meta, indent=2, sort_keys=False, default=str) + "\n"
        hadoopfs.write_bytes(spark, hadoopfs.join(staging, bundles.METADATA), text.encode())
        hadoopfs.delete(spark, final)
        hadoopfs.rename(spark, staging, final)
    except BaseException:
        hadoopfs.delete(spark, staging)
        raise
    log.info("saved bundle %s", final)
    return final


class _Tables:
    """``read_table``/``write_table`` over a JobWarehouse, as the models stage calls them."""

    def __init__(self, wh: JobWarehouse):
        self.wh = wh

    def read_table(self, name: str) -> pa.Table | None:
        return self.wh.read_table(name)

    def write_table(self, name: str, table: pa.Table, mode: str = "overwrite") -> None:
        if mode != "overwrite":
            raise JobError(f"the jobs replace result tables; got mode {mode!r} for {name}")
        self.wh.write_tables({name: table})


def record(wh: JobWarehouse, bundle: bundles.Bundle, uri: str, tuning_rows: pa.Table) -> None:
    """The tuning table's rows and the registry row of a bundle, as the models stage keeps them.

    A registry the warehouse refuses is reported and does not undo the bundle,
    which is the result that matters.
    """
    tables = _Tables(wh)
    bundles.replace_rows(tables, bundles.TUNING_TABLE, tuning_rows, "model")
    row = bundles.registry_row(bundle)
    row["path"] = uri
    try:
        bundles.replace_rows(tables, bundles.REGISTRY_TABLE,
                             pa.Table.from_pylist([row], schema=bundles.REGISTRY_SCHEMA), "name")
    except MqttidsError as exc:
        log.warning("bundle %s saved, but the registry table was not updated: %s", uri, exc)
