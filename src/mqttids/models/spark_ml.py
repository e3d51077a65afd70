"""Spark ML classifiers: multinomial logistic regression and a random forest.

Each declares the grid its cross-validation searches. Hyperparameters are
plain dicts of Spark ML parameter names, so a tuning table row, a bundle's
metadata and ``--json`` output show them as Spark spells them.
"""

from __future__ import annotations

import logging

from mqttids.models.errors import UnknownModelError
from mqttids.spark.pipeline import FEATURES_COL, LABEL_COL

log = logging.getLogger(__name__)

# Declared grids. LR: ridge strength (the inputs are standardised, so one scale
# fits every column). RF: how many features each split may look at. maxBins is
# high so that split thresholds can isolate rare extreme values (the 27 flood
# rows of the reduced captures sit above 99.9 % of tcp.len); with 64 bins they
# share a bin with their neighbours and flood is never predicted. Trees on
# MQTTset rows stop growing before depth 12, so depth is not searched.
GRIDS: dict[str, tuple[dict, ...]] = {
    "lr": ({"regParam": 0.0001, "elasticNetParam": 0.0, "maxIter": 100},
           {"regParam": 0.01, "elasticNetParam": 0.0, "maxIter": 100}),
    "rf": ({"numTrees": 50, "maxDepth": 20, "maxBins": 512, "featureSubsetStrategy": "sqrt"},
           {"numTrees": 50, "maxDepth": 20, "maxBins": 512, "featureSubsetStrategy": "0.5"}),
}


def make_estimator(kind: str, params: dict, seed: int = 0):
    """An unfitted Spark ML estimator of ``kind`` with ``params``."""
    from pyspark.ml.classification import LogisticRegression, RandomForestClassifier

    common = {"featuresCol": FEATURES_COL, "labelCol": LABEL_COL}
    if kind == "lr":
        # Standardisation already happened in the pipeline; multinomial even with
        # two classes, so the exported scorer has one form to reproduce.
        return LogisticRegression(family="multinomial", standardization=False,
                                  **common, **params)
    if kind == "rf":
        return RandomForestClassifier(seed=seed, **common, **params)
    raise UnknownModelError(f"unknown Spark model kind {kind!r}: use lr or rf")


def fit(kind: str, train, params: dict, seed: int = 0):
    """Fit on a DataFrame with ``features`` and ``label`` columns."""
    return make_estimator(kind, params, seed).fit(train)


def load_model(kind: str, path: str):
    """Read a model saved by Spark ML's own writer."""
    from pyspark.ml.classification import (LogisticRegressionModel,
                                           RandomForestClassificationModel)

    if kind == "lr":
        return LogisticRegressionModel.load(path)
    if kind == "rf":
        return RandomForestClassificationModel.load(path)
    raise UnknownModelError(f"unknown Spark model kind {kind!r}: use lr or rf")


def predictions(model, df):
    """(label, prediction) as int label indices; other columns dropped."""
    return model.transform(df).selectExpr(f"CAST({LABEL_COL} AS INT) AS label",
                                          "CAST(prediction AS INT) AS prediction")
