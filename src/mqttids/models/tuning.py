"""Seeded, stratified k-fold cross-validation over each model's declared grid.

Folds are stratified by label so that a class of 27 rows (flood) lands in
every fold. On very large train sets the search runs on a stratified sample
(every class keeps at least ``MIN_PER_CLASS`` rows when it has them); the
chosen configuration is then refitted on all of train by the caller.

The preprocessing pipeline is fitted once on all of train and shared by the
folds: its statistics (quantiles, means, deviations) never look at labels,
and test rows are never involved.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from mqttids.errors import UsageError
from mqttids.models import evaluate, spark_ml, torch_nets
from mqttids.spark.pipeline import FEATURES_COL, LABEL_COL

log = logging.getLogger(__name__)

DEFAULT_FOLDS = 3
DEFAULT_TUNE_ROWS = 1_000_000
MIN_PER_CLASS = 2_000
VALIDATION_SHARE = 0.1
FOLD_COL = "fold"


@dataclass
class CvRow:
    """One configuration scored on one held-out fold."""

    model: str
    kind: str
    config: int  # index into the model's grid
    params: dict
    fold: int
    accuracy: float | None
    macro_f1: float | None
    train_rows: int
    val_rows: int
    seconds: float
    best_epoch: int | None = None


def check_folds(k: int) -> int:
    if k < 2:
        raise UsageError(f"--folds must be at least 2, got {k}: cross-validation needs "
                         "a held-out fold")
    return k


# -- folds and samples ---------------------------------------------------------------

def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold id per row: each class shuffled (seeded) and dealt round-robin."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(y), dtype=np.int64)
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        folds[rng.permutation(idx)] = np.arange(len(idx)) % k
    return folds


def sample_fractions(class_counts: dict, max_rows: int) -> dict:
    """Per-class sampling fractions that bring ``sum(counts)`` near ``max_rows``."""
    total = sum(class_counts.values())
    if total <= max_rows:
        return {c: 1.0 for c in class_counts}
    base = max_rows / total
    # Small classes keep up to MIN_PER_CLASS rows, but never half the sample between them.
    floor = min(MIN_PER_CLASS, max_rows // (2 * max(len(class_counts), 1)))
    return {c: min(1.0, max(base, floor / n)) for c, n in class_counts.items() if n}


def stratified_sample_indices(y: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """Row indices of a stratified sample (all rows when there are few enough)."""
    if len(y) <= max_rows:
        return np.arange(len(y))
    labels, counts = np.unique(y, return_counts=True)
    fractions = sample_fractions(dict(zip(labels.tolist(), counts.tolist())), max_rows)
    rng = np.random.default_rng(seed)
    keep = [np.sort(rng.choice(np.flatnonzero(y == lab), size=max(1, round(n * fractions[lab])),
                               replace=False))
            for lab, n in zip(labels.tolist(), counts.tolist())]
    return np.sort(np.concatenate(keep))


def validation_split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) for early stopping, stratified."""
    folds = stratified_folds(y, round(1 / VALIDATION_SHARE), seed)
    return np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)


def spark_sample(train, class_counts: dict, max_rows: int, seed: int):
    """A stratified Bernoulli sample of a Spark DataFrame (by ``target``)."""
    fractions = sample_fractions(class_counts, max_rows)
    if all(f >= 1.0 for f in fractions.values()):
        return train
    return train.sampleBy("target", fractions, seed)


def spark_folds(df, k: int, seed: int, key_cols: Sequence[str]):
    """``df`` plus a stratified ``fold`` column, reproducible for a seed.

    Within each label, rows are ranked by a seeded hash of their feature
    values and dealt round-robin; rows that tie are identical for the model,
    so the folds' contents do not depend on how Spark partitions the data.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = F.xxhash64(F.lit(seed), *[F.col(f"`{c}`") for c in key_cols])
    w = Window.partitionBy(LABEL_COL).orderBy(key)
    return df.withColumn(FOLD_COL, (F.row_number().over(w) - 1) % k)


# -- cross-validation ----------------------------------------------------------------

def _label_arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(table.column("label").to_numpy(zero_copy_only=False), dtype=np.int64)
    p = np.asarray(table.column("prediction").to_numpy(zero_copy_only=False), dtype=np.int64)
    return y, p


def cv_spark(name: str, kind: str, grid: Sequence[dict], data, k: int, seed: int,
             progress: Callable[[], None] | None = None) -> list[CvRow]:
    """Cross-validate a Spark model over ``grid``; ``data`` has features, label, fold."""
    rows = []
    for i, params in enumerate(grid):
        for f in range(k):
            started = time.perf_counter()
            fit_part = data.where(f"{FOLD_COL} != {f}").select(FEATURES_COL, LABEL_COL)
            held = data.where(f"{FOLD_COL} = {f}")
            model = spark_ml.fit(kind, fit_part, params, seed)
            y, p = _label_arrays(spark_ml.predictions(model, held).toArrow())
            s = evaluate.scores(evaluate.confusion_matrix(y, p))
            rows.append(CvRow(name, kind, i, params, f, s["accuracy"], s["macro_f1"],
                              int(fit_part.count()), len(y), time.perf_counter() - started))
            log.info("%s config %d fold %d: macro-F1 %s", name, i, f, s["macro_f1"])
            if progress:
                progress()
    return rows


def cv_torch(name: str, kind: str, grid: Sequence[torch_nets.NetParams], x: np.ndarray,
             y: np.ndarray, k: int, seed: int, *, device: str, max_epochs: int, patience: int,
             progress: Callable[[], None] | None = None) -> list[CvRow]:
    """Cross-validate a network over ``grid``; early stopping inside each fold."""
    folds = stratified_folds(y, k, seed)
    rows = []
    for i, params in enumerate(grid):
        for f in range(k):
            started = time.perf_counter()
            fit_idx, held_idx = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            tr, va = validation_split(y[fit_idx], seed + f)
            result = torch_nets.fit_net(
                x[fit_idx[tr]], y[fit_idx[tr]], params, n_classes=len(evaluate.LABELS),
                seed=seed, device=device, max_epochs=max_epochs, patience=patience,
                x_val=x[fit_idx[va]], y_val=y[fit_idx[va]])
            net = torch_nets.load_net(result.state_dict, x.shape[1], len(evaluate.LABELS),
                                      params, device)
            p = torch_nets.predict_proba(net, x[held_idx], device).argmax(axis=1)
            s = evaluate.scores(evaluate.confusion_matrix(y[held_idx], p))
            rows.append(CvRow(name, kind, i, params.to_json(), f, s["accuracy"], s["macro_f1"],
                              len(fit_idx), len(held_idx), time.perf_counter() - started,
                              result.best_epoch))
            log.info("%s config %d fold %d: macro-F1 %s after %d epochs",
                     name, i, f, s["macro_f1"], result.best_epoch)
            if progress:
                progress()
    return rows


def summarise(rows: list[CvRow]) -> list[dict]:
    """Per configuration: params, per-fold macro-F1 and the means (the --json "cv" list)."""
    out = []
    for config in sorted({r.config for r in rows}):
        mine = [r for r in rows if r.config == config]
        f1 = [r.macro_f1 for r in mine]
        acc = [r.accuracy for r in mine]
        out.append({"config": config, "params": mine[0].params, "folds": len(mine),
                    "macro_f1": f1, "mean_macro_f1": _mean(f1), "mean_accuracy": _mean(acc),
                    "best_epochs": [r.best_epoch for r in mine if r.best_epoch is not None]})
    return out


def best_config(rows: list[CvRow]) -> int:
    """The grid index with the highest mean macro-F1 (the first on a tie)."""
    configs = sorted({r.config for r in rows})
    means = [s["mean_macro_f1"] for s in summarise(rows)]
    best = max(range(len(configs)),
               key=lambda i: (means[i] if means[i] is not None else -1.0, -i))
    return configs[best]


def refit_epochs(rows: list[CvRow], config: int) -> int:
    """Epochs for the refit on all of train: the median best epoch over the folds."""
    epochs = [r.best_epoch for r in rows if r.config == config and r.best_epoch]
    return max(1, int(round(float(np.median(epochs))))) if epochs else 1


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def tuning_table(rows: list[CvRow]) -> pa.Table:
    """The tuning rows as an Arrow table for wh.write_table (params as JSON text)."""
    records = [{**asdict(r), "params": json.dumps(r.params, sort_keys=True)} for r in rows]
    schema = pa.schema([("model", pa.string()), ("kind", pa.string()), ("config", pa.int32()),
                        ("params", pa.string()), ("fold", pa.int32()),
                        ("accuracy", pa.float64()), ("macro_f1", pa.float64()),
                        ("train_rows", pa.int64()), ("val_rows", pa.int64()),
                        ("seconds", pa.float64()), ("best_epoch", pa.int32())])
    return pa.Table.from_pylist(records, schema=schema)
