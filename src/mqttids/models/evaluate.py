"""Honest test figures: metrics, the packet-level ceiling and unseen rows.

Metrics are pure numpy over label indices (schema.LABELS order). The Spark
helpers mark which test rows also occur in train (same values in every
feature column, NULL equal to NULL): a model may have memorised those, so
every figure is also given on the others ("unseen rows"). The ceiling comes
from :func:`mqttids.spark.duplicates.packet_ceiling`: group test rows by the
packet features, give each group its majority label; no packet-level model
can be right more often than that.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mqttids import schema

log = logging.getLogger(__name__)

LABELS = schema.LABELS
UNSEEN_COL = "unseen"


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray,
                     n_labels: int = len(LABELS)) -> np.ndarray:
    """Counts: row = true label index, column = predicted label index."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * n_labels + y_pred,
                       minlength=n_labels * n_labels).reshape(n_labels, n_labels)


def scores(cm: np.ndarray, labels: tuple[str, ...] = LABELS) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support from a confusion matrix.

    Macro-F1 averages over the labels that occur in the truth or the
    predictions (a label absent from both says nothing); an undefined
    precision or recall counts as 0. Empty input gives None figures.
    """
    total = int(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = (support > 0) | (predicted > 0)
    per_class = {
        labels[i]: {"precision": float(precision[i]), "recall": float(recall[i]),
                    "f1": float(f1[i]), "support": int(support[i])}
        for i in range(len(labels)) if present[i]
    }
    return {
        "accuracy": float(tp.sum() / total) if total else None,
        "macro_f1": float(f1[present].mean()) if present.any() else None,
        "per_class": per_class,
    }


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """scores() plus the confusion matrix in design.md's JSON form."""
    cm = confusion_matrix(y_true, y_pred)
    out = scores(cm)
    out["confusion"] = {"labels": list(LABELS), "matrix": cm.tolist()}
    return out


def report(y_true: np.ndarray, y_pred: np.ndarray, unseen: np.ndarray,
           ceiling: float | None) -> dict:
    """The figures `mqttids evaluate` prints for one model."""
    unseen = np.asarray(unseen, dtype=bool)
    full = metrics(y_true, y_pred)
    part = scores(confusion_matrix(y_true[unseen], y_pred[unseen]))
    return {
        "accuracy": full["accuracy"],
        "macro_f1": full["macro_f1"],
        "per_class": full["per_class"],
        "confusion": full["confusion"],
        "ceiling": ceiling,
        "unseen_rows": {"accuracy": part["accuracy"], "macro_f1": part["macro_f1"],
                        "rows": int(unseen.sum())},
    }


# -- Spark side ----------------------------------------------------------------------

def mark_unseen(test, train, features: tuple[str, ...]):
    """``test`` plus a boolean ``unseen``: no train row has the same feature values."""
    from pyspark.sql import functions as F

    cols = [schema.storage_name(n) for n in features]
    seen = train.select(*cols).distinct().withColumn("__seen", F.lit(True))
    t, s = test.alias("t"), seen.alias("s")
    cond = None
    for c in cols:
        eq = F.col(f"t.`{c}`").eqNullSafe(F.col(f"s.`{c}`"))
        cond = eq if cond is None else cond & eq
    joined = t.join(s, on=cond, how="left")
    return joined.select("t.*", F.col("s.__seen").isNull().alias(UNSEEN_COL))


def ceiling(test, time_delta: bool) -> float | None:
    """Packet-level ceiling on ``test`` over the packet features (with or without time delta)."""
    from mqttids.spark.duplicates import packet_ceiling

    cols = schema.feature_columns("packet", time_delta=time_delta)
    return packet_ceiling(test, cols)["accuracy"]


# -- the picture ---------------------------------------------------------------------

def confusion_png(cm: np.ndarray, path: Path, title: str,
                  labels: tuple[str, ...] = LABELS) -> Path:
    """Write the confusion matrix as a PNG: colour = share of the true class, text = count."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(7, 6))
    try:
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, f"{cm[i, j]:,}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
        fig.colorbar(im, ax=ax, label="share of true class")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
