"""The preprocessing pipeline: raw feature columns -> one scaled vector per row.

Every model shares it, and it is fitted on train rows only. Fitting is two steps:

1. :func:`profile_train` looks at train once (counts, min/max, nulls, zeros,
   quantiles, the most frequent text values) and decides, as data in a
   :class:`PreprocessSpec`, which columns stay, where they are clipped, which
   get an is-null indicator and which text categories are kept;
2. :func:`fit_preprocessing` turns the spec into native Spark ML stages
   (SQLTransformer -> StringIndexer -> OneHotEncoder -> VectorAssembler ->
   StandardScaler) and fits them, so the result saves in Spark's own format.

The spec is plain JSON, so :mod:`mqttids.models.export` can reproduce the
transform in numpy without a Spark session (the detector does that).

How each column kind is encoded (docs/models.md says the same for users):

- numbers (int, hex flags, floats): clipped to the train quantiles, NULL -> 0;
  an is-null indicator is added when train holds both NULL and 0, because
  then 0 alone would merge "absent" with "present and zero";
- hex payloads (``mqtt.msg``, ``mqtt.willmsg``): the byte length and the
  first byte's value, handled as numbers above;
- text (``mqtt.protoname``, ``mqtt.willtopic``): the most frequent train
  values one-hot encoded, plus ``__null__`` and ``__other__``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, replace

from mqttids import schema
from mqttids.errors import MqttidsError

log = logging.getLogger(__name__)

LABEL_COL = "label"
FEATURES_COL = "features"
RAW_VECTOR_COL = "raw_features"
DEFAULT_CLIP = (0.0001, 0.9999)
DEFAULT_MAX_CATEGORIES = 16
NULL_CATEGORY = "__null__"
OTHER_CATEGORY = "__other__"
SPEC_VERSION = 1

# How a schema column becomes numbers: per column kind, the derived inputs.
_DERIVED = {
    schema.INT: ("value",),
    schema.HEX: ("value",),
    schema.FLOAT: ("value",),
    schema.BOOL: ("value",),
    schema.BYTES_HEX: ("nbytes", "byte0"),
}


class NoTrainRowsError(MqttidsError):
    """There are no labelled train rows to fit on."""


class MissingFeatureColumnsError(MqttidsError):
    """The data lacks columns that the feature set needs."""


class PreprocessSpecError(MqttidsError):
    """A saved preprocessing spec is missing, damaged or of another version."""


@dataclass(frozen=True)
class NumericInput:
    """One numeric input derived from a schema column, and how it is cleaned."""

    name: str  # e.g. "mqtt_msg__nbytes"; the Spark column the SQL stage makes
    source: str  # storage name of the schema column
    transform: str  # "value", "nbytes" or "byte0"
    lo: float
    hi: float
    value: bool  # the clipped value is a slot of the vector
    indicator: bool  # an is-null indicator is a slot of the vector


@dataclass(frozen=True)
class TextInput:
    """One text column, one-hot encoded over the categories kept from train."""

    name: str  # the Spark column holding the category string
    source: str
    categories: tuple[str, ...]  # kept train values, most frequent first


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything learnt from train that the transform needs, as plain data."""

    features: tuple[str, ...]  # Wireshark names of the model's input columns
    numeric: tuple[NumericInput, ...]
    text: tuple[TextInput, ...]
    dropped: dict[str, str]  # derived input -> why it went
    clip_quantiles: tuple[float, float]
    train_rows: int
    class_counts: dict[str, int]
    fingerprint: str
    version: int = SPEC_VERSION
    slots: tuple[str, ...] = field(default=())  # names of the vector's slots, in order

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> PreprocessSpec:
        if obj.get("version") != SPEC_VERSION:
            raise PreprocessSpecError(
                f"preprocessing spec version {obj.get('version')!r} is not "
                f"{SPEC_VERSION}: retrain the model with `mqttids train`")
        try:
            return cls(
                features=tuple(obj["features"]),
                numeric=tuple(NumericInput(**n) for n in obj["numeric"]),
                text=tuple(TextInput(n["name"], n["source"], tuple(n["categories"]))
                           for n in obj["text"]),
                dropped=dict(obj["dropped"]),
                clip_quantiles=tuple(obj["clip_quantiles"]),
                train_rows=int(obj["train_rows"]),
                class_counts=dict(obj["class_counts"]),
                fingerprint=obj["fingerprint"],
                version=obj["version"],
                slots=tuple(obj["slots"]),
            )
        except (KeyError, TypeError) as exc:
            raise PreprocessSpecError(
                f"preprocessing spec is damaged ({exc!r}): retrain with `mqttids train`"
            ) from exc

    @property
    def sources(self) -> tuple[str, ...]:
        """Storage names of the columns the transform reads."""
        return tuple(schema.storage_name(n) for n in self.features)


def derived_inputs(features: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(input name, source storage column, transform) for each numeric input."""
    out = []
    for name in features:
        f = schema.BY_NAME[name]
        for transform in _DERIVED.get(f.kind, ()):
            suffix = "" if transform == "value" else f"__{transform}"
            out.append((f.storage + suffix, f.storage, transform))
    return out


def text_sources(features: tuple[str, ...]) -> list[str]:
    return [schema.storage_name(n) for n in features if schema.BY_NAME[n].kind == schema.TEXT]


def raw_expression(source: str, transform: str) -> str:
    """Spark SQL for a derived input before cleaning; NaN counts as NULL.

    ``mqtt.msg`` is hex text, so its byte length is half the string length and
    its first byte is the first two hex digits.
    """
    col = f"`{source}`"
    if transform == "value":
        inner = f"CAST({col} AS DOUBLE)"
    elif transform == "nbytes":
        inner = f"CAST(floor(length({col}) / 2) AS DOUBLE)"
    elif transform == "byte0":
        inner = (f"CASE WHEN length({col}) >= 2 THEN "
                 f"CAST(conv(substr({col}, 1, 2), 16, 10) AS DOUBLE) END")
    else:
        raise ValueError(f"unknown transform {transform!r}")
    return f"nanvl({inner}, CAST(NULL AS DOUBLE))"


def _double(x: float) -> str:
    """An exact double literal: repr() round-trips, and Spark parses it back."""
    return f"CAST('{x!r}' AS DOUBLE)"


def sql_statement(spec: PreprocessSpec) -> str:
    """The SQLTransformer statement: clip, fill NULL with 0, indicators, categories."""
    exprs = []
    for n in spec.numeric:
        raw = raw_expression(n.source, n.transform)
        if n.value:
            clipped = f"least(greatest({raw}, {_double(n.lo)}), {_double(n.hi)})"
            exprs.append(f"CASE WHEN {raw} IS NULL THEN 0.0D ELSE {clipped} END "
                         f"AS `{n.name}__v`")
        if n.indicator:
            exprs.append(f"CASE WHEN {raw} IS NULL THEN 1.0D ELSE 0.0D END AS `{n.name}__null`")
    for t in spec.text:
        col = f"`{t.source}`"
        known = ", ".join(f"'{c.encode('utf-8').hex().upper()}'" for c in t.categories)
        keep = f"WHEN hex({col}) IN ({known}) THEN {col} " if known else ""
        exprs.append(f"CASE WHEN {col} IS NULL THEN '{NULL_CATEGORY}' {keep}"
                     f"ELSE '{OTHER_CATEGORY}' END AS `{t.name}`")
    return "SELECT *, " + ", ".join(exprs) + " FROM __THIS__"


def assembled_columns(spec: PreprocessSpec) -> list[str]:
    """Spark columns that the VectorAssembler joins, in slot order."""
    cols = []
    for n in spec.numeric:
        if n.value:
            cols.append(f"{n.name}__v")
        if n.indicator:
            cols.append(f"{n.name}__null")
    cols.extend(f"{t.name}__onehot" for t in spec.text)
    return cols


def text_slots(t: TextInput, labels: list[str]) -> list[str]:
    """Slot names of one text column's one-hot block.

    ``labels`` are the fitted StringIndexer's categories in index order; one
    slot more is its bucket for values unseen in train (always 0 in train).
    """
    return [f"{t.source}={c}" for c in labels] + [f"{t.source}=<unseen>"]


def label_expression() -> str:
    """Spark SQL mapping ``target`` to its index in schema.LABELS (NULL if unknown)."""
    whens = " ".join(f"WHEN '{lab}' THEN {i}.0D" for i, lab in enumerate(schema.LABELS))
    return f"CASE target {whens} END"


def with_label(df):
    """``df`` with the ``label`` column that Spark ML estimators read."""
    return df.withColumn(LABEL_COL, _expr(label_expression()))


def _expr(text: str):
    from pyspark.sql import functions as F

    return F.expr(text)


def check_columns(df, features: tuple[str, ...]) -> None:
    """Raise a clear error when ``df`` lacks a column the feature set needs."""
    missing = [schema.storage_name(n) for n in features
               if schema.storage_name(n) not in df.columns]
    if missing:
        raise MissingFeatureColumnsError(
            f"the data has no column(s) {missing}: ingest it with a current "
            "`mqttids ingest`, or train with `--features packet`")


def profile_train(train, features: tuple[str, ...], *,
                  clip_quantiles: tuple[float, float] = DEFAULT_CLIP,
                  max_categories: int = DEFAULT_MAX_CATEGORIES) -> PreprocessSpec:
    """Decide, from train rows only, how each column is cleaned and encoded."""
    from pyspark.sql import functions as F

    check_columns(train, features)
    derived = derived_inputs(features)
    stats = _numeric_stats(train, derived)
    total = stats.pop("__rows__")
    if total == 0:
        raise NoTrainRowsError(
            "there are no labelled train rows: load some with "
            "`mqttids ingest SOURCE --split train --label LABEL`")
    class_counts = {r["target"]: int(r["count"])
                    for r in train.groupBy("target").count().collect()}
    quantiles = _quantiles(train, derived, stats, clip_quantiles)

    numeric, dropped = [], {}
    for name, source, transform in derived:
        st = stats[name]
        keep_value, indicator, why = _numeric_rule(st, total)
        if why:
            dropped[name] = why
            continue
        lo, hi = quantiles[name]
        numeric.append(NumericInput(name, source, transform, lo, hi, keep_value, indicator))

    text = []
    for source in text_sources(features):
        counts = (train.groupBy(F.col(f"`{source}`").alias("v")).count()
                  .orderBy(F.desc("count"), F.asc("v")).limit(max_categories + 2).collect())
        values = [r["v"] for r in counts if r["v"] is not None]
        if len(counts) <= 1:
            dropped[source] = "constant in train" if values else "all NULL in train"
            continue
        text.append(TextInput(f"{source}__cat", source, tuple(values[:max_categories])))

    if not numeric and not text:
        raise NoTrainRowsError(
            f"every feature column is constant or empty in the {total} train rows: "
            "the model would learn nothing; ingest varied traffic first")
    fingerprint = _fingerprint(total, class_counts, stats)
    return PreprocessSpec(tuple(features), tuple(numeric), tuple(text), dropped,
                          tuple(clip_quantiles), total, class_counts, fingerprint)


def _numeric_rule(st: dict, total: int) -> tuple[bool, bool, str]:
    """(keep the value, add an is-null indicator, why dropped or '')."""
    nonnull, lo, hi, zeros = st["nonnull"], st["min"], st["max"], st["zeros"]
    has_null = nonnull < total
    if nonnull == 0:
        return False, False, "all NULL in train"
    if lo == hi and not has_null:
        return False, False, "constant in train"
    if lo == hi:
        # One value plus NULLs: only presence carries information.
        return lo != 0, lo == 0, ""
    return True, has_null and zeros > 0, ""


def _numeric_stats(train, derived) -> dict:
    from pyspark.sql import functions as F

    aggs = [F.count(F.lit(1)).alias("__rows__")]
    for name, source, transform in derived:
        e = F.expr(raw_expression(source, transform))
        aggs += [F.count(e).alias(f"{name}|nonnull"), F.min(e).alias(f"{name}|min"),
                 F.max(e).alias(f"{name}|max"),
                 F.sum(F.when(e == 0, 1).otherwise(0)).alias(f"{name}|zeros")]
    row = train.agg(*aggs).collect()[0].asDict()
    out: dict = {"__rows__": int(row["__rows__"])}
    for name, _, _ in derived:
        out[name] = {k: row[f"{name}|{k}"] for k in ("nonnull", "min", "max", "zeros")}
        out[name]["zeros"] = int(out[name]["zeros"] or 0)
    return out


def _quantiles(train, derived, stats, qs) -> dict[str, tuple[float, float]]:
    """Train quantiles of each derived input that has values (NULLs ignored)."""
    live = [(n, s, t) for n, s, t in derived if stats[n]["nonnull"]]
    if not live:
        return {}
    cols = train.selectExpr(*[f"{raw_expression(s, t)} AS `{n}`" for n, s, t in live])
    found = cols.approxQuantile([n for n, _, _ in live], list(qs), 1e-4)
    return {n: (float(q[0]), float(q[1])) for (n, _, _), q in zip(live, found)}


def _fingerprint(total: int, class_counts: dict, stats: dict) -> str:
    """A digest of what the model was trained on: sizes, classes, column ranges."""
    blob = json.dumps({"rows": total, "classes": class_counts, "columns": stats},
                      sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def build_pipeline(spec: PreprocessSpec):
    """The unfitted Spark Pipeline that the spec describes."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import (OneHotEncoder, SQLTransformer, StandardScaler,
                                    StringIndexer, VectorAssembler)

    stages = [SQLTransformer(statement=sql_statement(spec))]
    if spec.text:
        names = [t.name for t in spec.text]
        stages.append(StringIndexer(inputCols=names, outputCols=[f"{n}__idx" for n in names],
                                    handleInvalid="keep", stringOrderType="alphabetAsc"))
        stages.append(OneHotEncoder(inputCols=[f"{n}__idx" for n in names],
                                    outputCols=[f"{n}__onehot" for n in names],
                                    dropLast=False, handleInvalid="error"))
    stages.append(VectorAssembler(inputCols=assembled_columns(spec), outputCol=RAW_VECTOR_COL,
                                  handleInvalid="error"))
    stages.append(StandardScaler(inputCol=RAW_VECTOR_COL, outputCol=FEATURES_COL,
                                 withMean=True, withStd=True))
    return Pipeline(stages=stages)


def fit_preprocessing(train, features: tuple[str, ...], *,
                      clip_quantiles: tuple[float, float] = DEFAULT_CLIP,
                      max_categories: int = DEFAULT_MAX_CATEGORIES):
    """Profile and fit on train rows; returns (PipelineModel, PreprocessSpec)."""
    spec = profile_train(train, features, clip_quantiles=clip_quantiles,
                         max_categories=max_categories)
    for name, why in spec.dropped.items():
        log.info("pruned input %s: %s", name, why)
    model = build_pipeline(spec).fit(train)
    spec = replace(spec, slots=tuple(slot_names(spec, model)))
    log.info("preprocessing fitted on %d train rows: %d slots", spec.train_rows, len(spec.slots))
    return model, spec


def slot_names(spec: PreprocessSpec, model) -> list[str]:
    """Names of the fitted vector's slots: numeric inputs, indicators, one-hot blocks."""
    from pyspark.ml.feature import StringIndexerModel

    slots = []
    for n in spec.numeric:
        slots += ([n.name] if n.value else []) + ([f"{n.name}__null"] if n.indicator else [])
    indexers = [s for s in model.stages if isinstance(s, StringIndexerModel)]
    if spec.text:
        for t, labels in zip(spec.text, indexers[0].labelsArray):
            slots += text_slots(t, list(labels))
    return slots


def transform(model, df):
    """Apply a fitted pipeline; keeps every input column plus ``features``."""
    return model.transform(df)
