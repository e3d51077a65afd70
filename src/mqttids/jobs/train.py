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

import json
import logging
import uuid
from pathlib import Path

import pyarrow as pa

from mqttids.errors import MqttidsError, UsageError
from mqttids.jobs import hadoopfs
from mqttids.jobs.errors import JobError
from mqttids.jobs.store import JobWarehouse
from mqttids.models import bundle as bundles
from mqttids.models import tuning, workflow
from mqttids.models.workflow import TrainOptions
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
    """Fit, tune and refit each Spark model of ``options``; one summary per bundle.

    The steps are the models stage's own (:mod:`mqttids.models.workflow`);
    only where the bundles go differs.
    """
    train = workflow.train_frame(
        wh.packets(), options, f"the warehouse {wh.display_url} has no labelled train rows: "
                               "load some with the ingest-csv job (--split train)")
    try:
        pm, spec = prep.fit_preprocessing(train, options.features)
        workflow.check_classes(spec, "the ingest-csv job (--split train)")
        cv_data, full = workflow.spark_frames(pm, train, spec, options)
        try:
            n_tune = cv_data.count()
            workflow.log_sample(n_tune, spec.train_rows)
            out = []
            for kind in options.models:
                name, rows, best, params, model = workflow.tune_spark_model(
                    kind, options, cv_data, full, spec.train_rows)
                meta = workflow.bundle_metadata(name, kind, options, spec, params, rows, best,
                                                n_tune)
                uri = save_bundle(spark, models_uri, name, pm, model, meta)
                record(wh, bundles.Bundle(Path(name), meta), uri, tuning.tuning_table(rows))
                out.append(workflow.train_summary(meta, uri))
            return out
        finally:
            cv_data.unpersist()
            full.unpersist()
    finally:
        train.unpersist()


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
