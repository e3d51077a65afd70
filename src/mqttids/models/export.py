"""Spark-free scoring: the fitted pipeline, logistic regression and random forest in numpy.

The detector must score packets without a JVM, so this module reads the
parameters of fitted Spark stages straight from their native saved format
(Parquet and JSON files that Spark ML writes) and reimplements their
``transform``/``predict`` with numpy, in the same floating-point order where
that decides the result (tree thresholds, forest votes). ``tests/test_models_export.py``
checks that the predictions equal Spark's.

Nothing here imports pyspark.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mqttids import schema
from mqttids.models.errors import ExportError
from mqttids.spark.pipeline import NULL_CATEGORY, OTHER_CATEGORY, PreprocessSpec

N_LABELS = len(schema.LABELS)


# -- reading Spark's native files --------------------------------------------------

def read_stage_metadata(path: Path) -> dict:
    """The JSON metadata Spark writes for a stage or model (metadata/part-00000)."""
    parts = sorted((Path(path) / "metadata").glob("part-*"))
    if not parts:
        raise ExportError(f"{path} holds no Spark metadata/part-* file: it is not a saved "
                          "Spark ML stage; retrain with `mqttids train`")
    return json.loads(parts[0].read_text().splitlines()[0])


def read_stage_data(path: Path) -> pa.Table:
    """The Parquet data of a saved stage (files starting with _ or . are skipped)."""
    return pq.read_table(Path(path) / "data")


def dense_vector(v: dict) -> np.ndarray:
    """A Spark VectorUDT value (type 1 dense, 0 sparse) as a float64 array."""
    if v["type"] == 1:
        return np.asarray(v["values"], dtype=np.float64)
    out = np.zeros(v["size"], dtype=np.float64)
    out[np.asarray(v["indices"], dtype=np.int64)] = v["values"]
    return out


def dense_matrix(m: dict) -> np.ndarray:
    """A Spark MatrixUDT value as a (numRows, numCols) float64 array."""
    rows, cols = m["numRows"], m["numCols"]
    values = np.asarray(m["values"], dtype=np.float64)
    if m["type"] == 1:
        if m["isTransposed"]:
            return values.reshape(rows, cols)
        return values.reshape(cols, rows).T.copy()
    # Sparse: compressed columns, or compressed rows when transposed.
    major, minor = (rows, cols) if m["isTransposed"] else (cols, rows)
    out = np.zeros((major, minor), dtype=np.float64)
    ptrs, idx = m["colPtrs"], m["rowIndices"]
    for j in range(major):
        out[j, idx[ptrs[j]:ptrs[j + 1]]] = values[ptrs[j]:ptrs[j + 1]]
    return out if m["isTransposed"] else out.T.copy()


def pipeline_stages(path: Path) -> list[tuple[str, Path]]:
    """(Spark class name, folder) of each stage of a saved PipelineModel, in order."""
    path = Path(path)
    meta = read_stage_metadata(path)
    uids = meta.get("paramMap", {}).get("stageUids")
    if uids is None:
        raise ExportError(f"{path} is not a saved Spark PipelineModel")
    out = []
    for i, uid in enumerate(uids):
        folder = path / "stages" / f"{i}_{uid}"
        out.append((read_stage_metadata(folder)["class"], folder))
    return out


# -- the preprocessing pipeline ------------------------------------------------------

def _column(table: pa.Table, source: str) -> pa.ChunkedArray:
    """A column by storage name, or by its Wireshark name (capture rows use those)."""
    for name in (source, schema.field_name(source)):
        if name in table.column_names:
            col = table.column(name)
            return col if isinstance(col, pa.ChunkedArray) else pa.chunked_array([col])
    raise ExportError(
        f"the rows have no column {schema.field_name(source)!r} (or {source!r}) that the "
        "model needs: extract them with the same mqttids version and feature set")


def _as_float(col: pa.ChunkedArray) -> np.ndarray:
    """float64 values with NULL (and NaN) as NaN."""
    if pa.types.is_boolean(col.type):
        col = pc.cast(col, pa.int8())
    arr = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(arr, dtype=np.float64)


_HEX_DIGIT = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate("0123456789abcdef"):
    _HEX_DIGIT[ord(_c)] = _HEX_DIGIT[ord(_c.upper())] = _i


def _hex_prefix_value(prefix: pa.ChunkedArray) -> np.ndarray:
    """Spark's conv(substr(s, 1, 2), 16, 10): the leading hex digits' value, 0 if none.

    NaN where the string is NULL or shorter than two characters. Vectorised over
    ASCII; other text takes a slow path (the decoder writes lower-case hex).
    """
    lengths = np.asarray(pc.utf8_length(prefix).fill_null(0).to_numpy(zero_copy_only=False))
    out = np.full(len(lengths), np.nan)
    ok = lengths >= 2
    if not ok.any():
        return out
    kept = pc.filter(prefix, pa.array(ok)).combine_chunks()
    offsets = np.frombuffer(kept.buffers()[1], dtype=np.int32)[kept.offset:
                                                              kept.offset + len(kept) + 1]
    codes = np.frombuffer(kept.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    if len(codes) != 2 * len(kept):  # some character took more than one byte
        texts = prefix.to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(ok):
            digits = ""
            for ch in texts[i]:
                if ch not in "0123456789abcdefABCDEF":
                    break
                digits += ch
            out[i] = int(digits, 16) if digits else 0.0
        return out
    d = _HEX_DIGIT[codes.reshape(-1, 2)]
    out[ok] = np.where(d[:, 0] < 0, 0, np.where(d[:, 1] < 0, d[:, 0], d[:, 0] * 16 + d[:, 1]))
    return out


def raw_input(table: pa.Table, source: str, transform: str) -> np.ndarray:
    """The derived input before cleaning, as pipeline.raw_expression defines it."""
    col = _column(table, source)
    if transform == "value":
        return _as_float(col)
    strings = pc.cast(col, pa.string())
    if transform == "nbytes":
        return np.floor(_as_float(pc.utf8_length(strings)) / 2)
    if transform == "byte0":
        return _hex_prefix_value(pc.utf8_slice_codeunits(strings, 0, 2))
    raise ExportError(f"unknown input transform {transform!r}: the bundle needs a newer mqttids")


class NumpyPipeline:
    """The fitted preprocessing pipeline, applied to Arrow rows with numpy."""

    def __init__(self, spec: PreprocessSpec, labels: list[list[str]], mean: np.ndarray,
                 std: np.ndarray):
        self.spec = spec
        self.labels = labels
        self.shift = mean
        self.scale = np.where(std != 0.0, 1.0 / np.where(std != 0.0, std, 1.0), 0.0)

    @classmethod
    def load(cls, path: Path, spec: PreprocessSpec) -> NumpyPipeline:
        """Read a PipelineModel that spark.pipeline.fit_preprocessing saved."""
        labels, mean, std = [], None, None
        for cls_name, folder in pipeline_stages(path):
            short = cls_name.rsplit(".", 1)[-1]
            if short == "StringIndexerModel":
                labels = [list(x) for x in read_stage_data(folder).column("labelsArray")[0].as_py()]
            elif short == "StandardScalerModel":
                row = read_stage_data(folder).to_pylist()[0]
                mean, std = dense_vector(row["mean"]), dense_vector(row["std"])
        if mean is None:
            raise ExportError(f"{path} has no StandardScaler stage: it is not an mqttids pipeline")
        if len(mean) != len(spec.slots):
            raise ExportError(f"{path} scales {len(mean)} slots but its spec names "
                              f"{len(spec.slots)}: the bundle is inconsistent; retrain it")
        return cls(spec, labels, mean, std)

    @property
    def width(self) -> int:
        return len(self.shift)

    def transform(self, table: pa.Table | pa.RecordBatch) -> np.ndarray:
        """Rows -> the (n, width) float64 matrix that Spark's ``features`` holds."""
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        blocks = []
        for n in self.spec.numeric:
            raw = raw_input(table, n.source, n.transform)
            missing = np.isnan(raw)
            if n.value:
                clipped = np.minimum(np.maximum(raw, n.lo), n.hi)
                blocks.append(np.where(missing, 0.0, clipped))
            if n.indicator:
                blocks.append(missing.astype(np.float64))
        for t, labels in zip(self.spec.text, self.labels):
            blocks.extend(self._one_hot(table, t, labels).T)
        x = np.column_stack(blocks) if blocks else np.zeros((table.num_rows, 0))
        return (x - self.shift) * self.scale

    @staticmethod
    def _one_hot(table: pa.Table, t, labels: list[str]) -> np.ndarray:
        values = pc.cast(_column(table, t.source), pa.string())
        cat = pc.if_else(pc.is_null(values), NULL_CATEGORY,
                         pc.if_else(pc.is_in(values, pa.array(list(t.categories), pa.string())),
                                    values, OTHER_CATEGORY))
        # StringIndexer's keep bucket (index len(labels)) takes values unseen in train.
        idx = pc.index_in(cat, pa.array(labels, pa.string())).fill_null(len(labels))
        idx = np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int64)
        out = np.zeros((len(idx), len(labels) + 1), dtype=np.float64)
        out[np.arange(len(idx)), idx] = 1.0
        return out


# -- classifiers ---------------------------------------------------------------------

def _pad(proba: np.ndarray) -> np.ndarray:
    """Spark sizes outputs by the largest label seen; pad to all six labels."""
    if proba.shape[1] >= N_LABELS:
        return proba
    return np.hstack([proba, np.zeros((proba.shape[0], N_LABELS - proba.shape[1]))])


class NumpyLogisticRegression:
    """Spark's multinomial LogisticRegressionModel: softmax of W x + b."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray):
        self.coef = coef
        self.intercept = intercept

    @classmethod
    def load(cls, path: Path) -> NumpyLogisticRegression:
        meta = read_stage_metadata(path)
        if not meta["class"].endswith("LogisticRegressionModel"):
            raise ExportError(f"{path} holds a {meta['class']}, not a LogisticRegressionModel")
        row = read_stage_data(path).to_pylist()[0]
        if not row["isMultinomial"]:
            raise ExportError(f"{path} is a binomial logistic regression; mqttids trains "
                              "multinomial ones: retrain with `mqttids train --models lr`")
        return cls(dense_matrix(row["coefficientMatrix"]), dense_vector(row["interceptVector"]))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        margins = x @ self.coef.T + self.intercept
        top = margins.max(axis=1, keepdims=True)
        e = np.exp(margins - np.where(top > 0, top, 0.0))
        return _pad(e / e.sum(axis=1, keepdims=True))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)


class NumpyRandomForest:
    """Spark's RandomForestClassificationModel: mean of per-tree leaf class shares."""

    def __init__(self, trees: list[dict[str, np.ndarray]], n_classes: int):
        self.trees = trees
        self.n_classes = n_classes

    @classmethod
    def load(cls, path: Path) -> NumpyRandomForest:
        meta = read_stage_metadata(path)
        if not meta["class"].endswith("RandomForestClassificationModel"):
            raise ExportError(f"{path} holds a {meta['class']}, not a random forest")
        n_classes = int(meta.get("numClasses", 0))
        data = read_stage_data(path)
        tree_ids = np.asarray(data.column("treeID").to_numpy())
        nodes = data.column("nodeData").combine_chunks()
        trees = [_tree_arrays(nodes.filter(pa.array(tree_ids == t)), path)
                 for t in np.unique(tree_ids)]
        n_classes = n_classes or trees[0]["share"].shape[1]
        return cls(trees, n_classes)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        votes = np.zeros((x.shape[0], self.n_classes))
        rows = np.arange(x.shape[0])
        for tree in self.trees:
            node = np.zeros(x.shape[0], dtype=np.int64)
            while True:
                inner = tree["left"][node] >= 0
                if not inner.any():
                    break
                go_left = x[rows, tree["feature"][node]] <= tree["threshold"][node]
                nxt = np.where(go_left, tree["left"][node], tree["right"][node])
                node = np.where(inner, nxt, node)
            votes += tree["share"][node]
        return _pad(votes / votes.sum(axis=1, keepdims=True))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)


def _tree_arrays(nodes: pa.StructArray, path: Path) -> dict[str, np.ndarray]:
    """One tree's nodes as arrays indexed by node id."""
    ids = np.asarray(nodes.field("id").to_numpy())
    order = np.argsort(ids)
    split = nodes.field("split")
    if (np.asarray(split.field("numCategories").to_numpy()) != -1).any():
        raise ExportError(f"{path} has categorical splits, which mqttids pipelines never "
                          "make: the bundle comes from elsewhere; retrain it")
    thresholds = [t[0] if t else 0.0 for t in split.field("leftCategoriesOrThreshold").to_pylist()]
    stats = np.asarray(nodes.field("impurityStats").to_pylist(), dtype=np.float64)
    totals = stats.sum(axis=1, keepdims=True)
    share = np.divide(stats, totals, out=np.zeros_like(stats), where=totals != 0)
    feature = np.asarray(split.field("featureIndex").to_numpy(), dtype=np.int64)
    return {
        "left": np.asarray(nodes.field("leftChild").to_numpy(), dtype=np.int64)[order],
        "right": np.asarray(nodes.field("rightChild").to_numpy(), dtype=np.int64)[order],
        "feature": np.maximum(feature, 0)[order],
        "threshold": np.asarray(thresholds, dtype=np.float64)[order],
        "share": share[order],
    }
