"""Model results, from whichever record holds them, in the one shape the report draws.

``mqttids evaluate --json`` gives per model: name, accuracy, macro_f1,
per_class, confusion, ceiling and unseen_rows (design.md); ``mqttids train``
gives kind, features, the CV table and best_params. The same figures reach
the report through the warehouse's ``models`` registry (``metrics`` and
``params`` JSON columns) and the bundles' metadata. This module merges what
it is given into :class:`ModelView` objects. Pure: plain dicts in, plain
objects out; nothing is invented when a figure is absent.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

# Keys a CV row may use for its score, most specific first (tuning.summarise writes the
# first two; the others are accepted from other writers).
SCORE_KEYS = ("mean_macro_f1", "mean_accuracy", "mean", "mean_score", "score", "metric",
              "macro_f1", "f1", "accuracy")
GENERIC = {"mean_macro_f1": "macro-F1", "mean_accuracy": "accuracy", "macro_f1": "macro-F1",
           "mean": "CV score", "mean_score": "CV score", "score": "CV score",
           "metric": "CV score"}
# Per-fold lists a row may hold beside its mean, for the spread.
FOLD_KEYS = {"mean_macro_f1": "macro_f1", "mean_accuracy": "accuracy", "mean": "fold_scores",
             "mean_score": "fold_scores", "score": "scores"}
NO_TIME_DELTA = "-no-time-delta"
STD_KEYS = ("std", "std_score", "stddev")
# Keys of a flat CV row that are figures, not hyperparameters.
NOT_PARAMS = set(SCORE_KEYS) | set(STD_KEYS) | {
    "model", "name", "kind", "rank", "best", "folds", "fold", "fold_scores", "scores",
    "seconds", "fit_seconds", "time", "config", "metric_name", "features", "n_folds",
    "best_epochs", "best_epoch", "train_rows", "val_rows"}


@dataclass
class CvPoint:
    """One grid configuration and its cross-validation score."""

    params: dict
    mean: float
    std: float | None = None
    best: bool = False


@dataclass
class ModelView:
    """Everything the report shows about one model; None where nothing says."""

    name: str
    kind: str | None = None
    features: str | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    per_class: dict[str, dict] = field(default_factory=dict)
    confusion_labels: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    ceiling: float | None = None
    unseen_accuracy: float | None = None
    unseen_macro_f1: float | None = None
    cv_macro_f1: float | None = None
    train_rows: int | None = None
    tuning_rows: int | None = None
    best_params: dict = field(default_factory=dict)
    cv: list[CvPoint] = field(default_factory=list)
    cv_metric: str | None = None
    path: str | None = None
    created: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def evaluated(self) -> bool:
        return self.accuracy is not None or bool(self.per_class) or bool(self.confusion)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _json(value):
    """A JSON column's value as Python (text is parsed; bad text gives None)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _params_of(row: dict) -> dict:
    if isinstance(row.get("params"), dict):
        return dict(row["params"])
    return {k: v for k, v in row.items()
            if k not in NOT_PARAMS and (v is None or isinstance(v, (str, int, float, bool)))}


def cv_points(rows: list, best_params: dict | None = None) -> tuple[list[CvPoint], str | None]:
    """CV rows (``{"params": {..}, "mean": x, "std": s}`` or flat) as points and the metric name.

    A row counts as the best when it says so (``best``/``rank`` 1) or when its
    parameters equal ``best_params``.
    """
    points, metric = [], None
    for row in rows or []:
        if not isinstance(row, dict):
            continue
        key = next((k for k in SCORE_KEYS if _number(row.get(k)) is not None), None)
        if key is None:
            continue
        if metric is None:
            named = row.get("metric_name") or (row.get("metric") if key != "metric" else None)
            metric = named if isinstance(named, str) else GENERIC.get(key, key)
        std = next((_number(row[k]) for k in STD_KEYS if _number(row.get(k)) is not None), None)
        if std is None:
            std = _spread(row.get(FOLD_KEYS.get(key, "")))
        params = _params_of(row)
        best = bool(row.get("best")) or row.get("rank") == 1 or (
            bool(best_params) and params == best_params)
        points.append(CvPoint(params, _number(row[key]), std, best))
    return points, metric


def _spread(values) -> float | None:
    """Population standard deviation of per-fold scores, when there are two or more."""
    if not isinstance(values, list):
        return None
    nums = [v for v in (_number(x) for x in values) if v is not None]
    return statistics.pstdev(nums) if len(nums) >= 2 else None


def _confusion(value) -> tuple[list[str], list[list[int]]]:
    if not isinstance(value, dict):
        return [], []
    labels, matrix = value.get("labels"), value.get("matrix")
    if not isinstance(labels, list) or not isinstance(matrix, list):
        return [], []
    if len(matrix) != len(labels) or any(not isinstance(r, list) or len(r) != len(labels)
                                         for r in matrix):
        return [], []
    if any(_number(v) is None for r in matrix for v in r):
        return [], []
    return [str(x) for x in labels], [[int(v) for v in r] for r in matrix]


def _feature_set(record: dict) -> str | None:
    """``packet``/``flow`` (from ``feature_set``, or ``features`` when it is text), and
    whether tcp.time_delta was left out."""
    name = record.get("feature_set")
    if not isinstance(name, str):
        name = record.get("features") if isinstance(record.get("features"), str) else None
    if name is None:
        return None
    if name.endswith(NO_TIME_DELTA):  # the registry's spelling
        return name[:-len(NO_TIME_DELTA)] + ", without tcp.time_delta"
    return name + (", without tcp.time_delta" if record.get("time_delta") is False else "")


def _set(view: ModelView, attr: str, value) -> None:
    """Fill ``attr`` when ``value`` is something and the view has nothing there yet."""
    if value is None or value == {} or value == []:
        return
    if getattr(view, attr) in (None, {}, []):
        setattr(view, attr, value)


def merge_record(view: ModelView, record: dict) -> ModelView:
    """Fold one record (evaluate's or train's JSON, a registry row, bundle metadata) in.

    Nested ``metrics``/``test``/``evaluation`` objects are read too, so a
    registry row whose ``metrics`` column holds evaluate's object fills the
    same fields as evaluate's own output. Earlier records win over later ones.
    """
    if not isinstance(record, dict):
        return view
    for nested in ("metrics", "test", "evaluation"):
        inner = _json(record.get(nested))
        if isinstance(inner, dict):
            merge_record(view, inner)
    _set(view, "kind", record.get("kind") if isinstance(record.get("kind"), str) else None)
    _set(view, "features", _feature_set(record))
    _set(view, "path", record.get("path") if isinstance(record.get("path"), str) else None)
    if record.get("created") is not None:
        _set(view, "created", str(record["created"]))
    for attr, keys in (("accuracy", ("accuracy", "test_accuracy")),
                       ("macro_f1", ("macro_f1", "test_macro_f1")),
                       ("unseen_accuracy", ("unseen_accuracy",)),
                       ("unseen_macro_f1", ("unseen_macro_f1",)),
                       ("cv_macro_f1", ("cv_macro_f1",))):
        for key in keys:
            _set(view, attr, _number(record.get(key)))
    ceiling = record.get("ceiling")
    _set(view, "ceiling", _number(ceiling.get("accuracy") if isinstance(ceiling, dict)
                                  else ceiling))
    train = record.get("train")
    if isinstance(train, dict):  # bundle metadata
        sizes = (("train_rows", train.get("rows")), ("tuning_rows", train.get("tuning_rows")))
    else:  # registry row
        sizes = (("train_rows", record.get("train_rows")),
                 ("tuning_rows", record.get("tuning_rows")))
    for attr, value in sizes:
        value = _number(value)
        _set(view, attr, None if value is None else int(value))
    unseen = record.get("unseen_rows")
    if isinstance(unseen, dict):
        _set(view, "unseen_accuracy", _number(unseen.get("accuracy")))
        _set(view, "unseen_macro_f1", _number(unseen.get("macro_f1")))
    per_class = record.get("per_class")
    if isinstance(per_class, dict):
        _set(view, "per_class", {str(k): v for k, v in per_class.items() if isinstance(v, dict)})
    labels, matrix = _confusion(record.get("confusion"))
    if labels and not view.confusion:
        view.confusion_labels, view.confusion = labels, matrix
    best = _json(record.get("best_params"))
    if not isinstance(best, dict):
        params = _json(record.get("params"))
        best = params if isinstance(params, dict) and "cv" not in params else None
        if isinstance(params, dict) and isinstance(params.get("best_params"), dict):
            best = params["best_params"]
    _set(view, "best_params", best if isinstance(best, dict) else None)
    cv = _json(record.get("cv"))
    if isinstance(cv, list) and not view.cv:
        view.cv, view.cv_metric = cv_points(cv, view.best_params)
    return view


def model_views(records: list[dict]) -> list[ModelView]:
    """One view per model name, records merged in the order given, views in first-seen order."""
    views: dict[str, ModelView] = {}
    for record in records:
        if not isinstance(record, dict):
            continue
        name = record.get("name")
        if not isinstance(name, str) or not name:
            continue
        merge_record(views.setdefault(name, ModelView(name)), record)
    return list(views.values())


def cv_by_param(points: list[CvPoint]) -> dict[str, list[tuple[object, float, float | None, bool]]]:
    """``{param: [(value, mean, std, best)]}`` for each parameter that takes 2+ values."""
    names = list(dict.fromkeys(k for p in points for k in p.params))
    out = {}
    for name in names:
        values = {json.dumps(p.params.get(name), sort_keys=True, default=str) for p in points}
        if len(values) < 2:
            continue
        out[name] = [(p.params.get(name) if p.params.get(name) is not None else "none",
                      p.mean, p.std, p.best) for p in points]
    return out


def tuning_records(rows: list[dict]) -> list[dict]:
    """Rows of the ``model_tuning`` table (one per model, configuration and fold) as one
    record per model whose ``cv`` lists each configuration with its per-fold scores."""
    folds: dict = defaultdict(lambda: defaultdict(list))
    kinds, params = {}, {}
    for r in rows:
        model, config = r.get("model"), r.get("config")
        if not isinstance(model, str) or config is None:
            continue
        kinds.setdefault(model, r.get("kind"))
        params.setdefault((model, config), _json(r.get("params")))
        folds[model][config].append(r)
    out = []
    for model, configs in folds.items():
        cv = []
        for config in sorted(configs):
            f1 = [x.get("macro_f1") for x in configs[config]]
            acc = [_number(x.get("accuracy")) for x in configs[config]]
            nums = [v for v in (_number(x) for x in f1) if v is not None]
            if not nums:
                continue
            accs = [a for a in acc if a is not None]
            cv.append({"config": config, "params": params[(model, config)] or {},
                       "macro_f1": nums, "mean_macro_f1": statistics.fmean(nums),
                       "mean_accuracy": statistics.fmean(accs) if accs else None})
        out.append({"name": model, "kind": kinds[model], "cv": cv})
    return out
