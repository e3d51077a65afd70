"""The report's plots: matplotlib figures drawn off-screen and returned as PNG data URIs.

A data URI keeps the page self-contained (it opens from disk, no server, no
side files). Figures are made with :class:`matplotlib.figure.Figure` directly,
not pyplot, so nothing global is touched and no display is needed. Math text
is off: a label that came off the wire must never be parsed as TeX.

Every function takes plain data and returns ``data:image/png;base64,...``.
"""

from __future__ import annotations

import base64
import io
import math
import zlib
from collections.abc import Sequence
from datetime import datetime

from mqttids.schema import LABELS

_COLORS = ("#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b",
           "#b279a2", "#ff9da6", "#9d755d", "#bab0ac")
_RC = {"text.parse_math": False, "font.size": 9, "axes.spines.top": False,
       "axes.spines.right": False, "axes.titlesize": 10}


def label_color(label: str) -> str:
    """One colour per class, the same in every plot and on the dashboard.

    The schema's labels take the first six colours in order; any other label
    gets one of the rest, chosen by a hash of its name so that it is stable.
    """
    if label in LABELS:
        return _COLORS[LABELS.index(label) % len(_COLORS)]
    spare = len(_COLORS) - len(LABELS)
    return _COLORS[len(LABELS) + zlib.crc32(label.encode("utf-8")) % spare]


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _rc():
    import matplotlib

    return matplotlib.rc_context(_RC)


def _plain_ticks(axis) -> None:
    """Log-axis tick labels as plain numbers (math text, which they default to, is off)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.10g}"))
    axis.set_minor_formatter(NullFormatter())


def class_balance(balance: dict[str, dict[str, int]]) -> str:
    """Rows per class, one bar group per class and one bar per split, on a log scale.

    MQTTset's legitimate class outnumbers some attacks a thousandfold; a log
    axis keeps the small classes visible, and each bar carries its count.
    """
    splits = list(balance)
    labels = [x for x in LABELS if any(x in balance[s] for s in splits)]
    labels += sorted({x for s in splits for x in balance[s]} - set(labels))
    with _rc():
        fig = _figure(7.5, 0.5 + 0.42 * len(labels) * max(1, len(splits)))
        ax = fig.add_subplot()
        height = 0.8 / max(1, len(splits))
        for j, split in enumerate(splits):
            ys = [i + j * height for i in range(len(labels))]
            counts = [balance[split].get(x, 0) for x in labels]
            bars = ax.barh(ys, [max(c, 0.8) for c in counts], height=height * 0.95,
                           label=split, color=_COLORS[j % len(_COLORS)])
            ax.bar_label(bars, labels=[f"{c:,}" for c in counts], padding=3, fontsize=8)
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(labels))], labels)
        ax.invert_yaxis()
        ax.set_xscale("log")
        _plain_ticks(ax.xaxis)
        ax.set_xlabel("rows (log scale)")
        ax.margins(x=0.15)
        ax.legend(title="split", loc="lower right")
        return _png(fig)


def confusion_matrix(labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str) -> str:
    """A confusion matrix: colour is the share of the true class, the cell text the count."""
    n = len(labels)
    shares = []
    for row in matrix:
        total = sum(row)
        shares.append([v / total if total else 0.0 for v in row])
    with _rc():
        fig = _figure(1.6 + 0.75 * n, 1.2 + 0.65 * n)
        ax = fig.add_subplot()
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{matrix[i][j]:,}", ha="center", va="center", fontsize=8,
                        color="white" if shares[i][j] > 0.6 else "black")
        ax.set_xticks(range(n), labels, rotation=35, ha="right")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        fig.colorbar(image, ax=ax, shrink=0.8, label="share of true class")
        return _png(fig)


def per_class_f1(f1: dict[str, dict[str, float]]) -> str:
    """Per-class F1 of every model side by side: ``{model: {label: f1}}``."""
    models = list(f1)
    labels = [x for x in LABELS if any(x in f1[m] for m in models)]
    labels += sorted({x for m in models for x in f1[m]} - set(labels))
    width = 0.8 / max(1, len(models))
    with _rc():
        fig = _figure(max(6.0, 1.0 + 1.1 * len(labels)), 3.4)
        ax = fig.add_subplot()
        for j, model in enumerate(models):
            xs = [i + j * width for i in range(len(labels))]
            ax.bar(xs, [f1[model].get(x, 0.0) or 0.0 for x in labels], width=width * 0.95,
                   label=model, color=_COLORS[j % len(_COLORS)])
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("F1 on test")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="model")
        return _png(fig)


def ceiling_comparison(models: Sequence[tuple[str, float | None, float | None]],
                       ceiling: float | None) -> str:
    """Each model's test accuracy (and on unseen rows) beside the packet-level ceiling.

    ``models`` holds (name, accuracy, accuracy on test rows not in train).
    """
    with _rc():
        fig = _figure(max(5.0, 1.5 + 1.2 * len(models)), 3.4)
        ax = fig.add_subplot()
        xs = range(len(models))
        acc = [m[1] or 0.0 for m in models]
        unseen = [m[2] for m in models]
        bars = ax.bar([x - 0.2 for x in xs], acc, width=0.38, label="accuracy, all test",
                      color=_COLORS[0])
        ax.bar_label(bars, labels=[f"{v:.4f}" for v in acc], fontsize=7, padding=2)
        if any(u is not None for u in unseen):
            bars = ax.bar([x + 0.2 for x in xs], [u or 0.0 for u in unseen], width=0.38,
                          label="accuracy, test rows not in train", color=_COLORS[1])
            ax.bar_label(bars, labels=["-" if u is None else f"{u:.4f}" for u in unseen],
                         fontsize=7, padding=2)
        if ceiling is not None:
            ax.axhline(ceiling, color="#e45756", linestyle="--",
                       label=f"packet-level ceiling {ceiling:.4f}")
        ax.set_xticks(list(xs), [m[0] for m in models])
        low = min([v for v in acc + [u for u in unseen if u is not None]
                   + ([ceiling] if ceiling is not None else [])] or [0.0])
        ax.set_ylim(max(0.0, math.floor(low * 10) / 10 - 0.1), 1.02)
        ax.set_ylabel("accuracy")
        fig.legend(fontsize=8, loc="outside lower center", ncols=2)
        return _png(fig)


def cv_scores(points: dict[str, list[tuple[object, float, float | None, bool]]],
              metric: str, title: str) -> str:
    """CV score against each hyperparameter: ``{param: [(value, mean, std, best)]}``.

    One panel per hyperparameter; a point is one grid configuration, so a
    parameter's panel shows the spread the other parameters cause. The best
    configuration is ringed. Values that are not numbers are placed as
    categories.
    """
    params = list(points)
    with _rc():
        fig = _figure(max(4.0, 3.2 * len(params)), 3.0)
        axes = fig.subplots(1, len(params), squeeze=False)[0]
        for ax, param in zip(axes, params):
            rows = points[param]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                          for v, *_ in rows)
            cats = sorted({str(v) for v, *_ in rows}) if not numeric else []
            xs = [v if numeric else cats.index(str(v)) for v, *_ in rows]
            ys = [m for _, m, _, _ in rows]
            errs = [s or 0.0 for _, _, s, _ in rows]
            ax.errorbar(xs, ys, yerr=errs, fmt="o", color=_COLORS[0], ecolor="#999",
                        capsize=3, markersize=5)
            best = [(x, y) for x, (_, y, _, b) in zip(xs, rows) if b]
            if best:
                ax.plot(*zip(*best), "o", markersize=12, markerfacecolor="none",
                        markeredgecolor=_COLORS[2], label="best")
                ax.legend(fontsize=7)
            if numeric and len({x for x in xs if x > 0}) > 2 and min(xs) > 0 and \
                    max(xs) / min(xs) >= 100:
                ax.set_xscale("log")
                _plain_ticks(ax.xaxis)
            if not numeric:
                ax.set_xticks(range(len(cats)), cats)
            ax.set_xlabel(param)
            ax.set_ylabel(metric)
        fig.suptitle(title)
        return _png(fig)


def alerts_over_time(times: Sequence[datetime], labels: Sequence[str]) -> str:
    """Alerts per time bin, stacked by class; the bin width adapts to the time span."""
    import matplotlib.dates as mdates
    from matplotlib.ticker import MaxNLocator

    start, end = min(times), max(times)
    span = max((end - start).total_seconds(), 1.0)
    width = _bin_seconds(span)
    n_bins = int(span // width) + 1
    classes = [x for x in LABELS if x in set(labels)] + sorted(set(labels) - set(LABELS))
    counts = {c: [0] * n_bins for c in classes}
    for t, label in zip(times, labels):
        counts[label][int((t - start).total_seconds() // width)] += 1
    edges = [mdates.date2num(start) + i * width / 86400 for i in range(n_bins + 1)]
    with _rc():
        fig = _figure(8.0, 3.2)
        ax = fig.add_subplot()
        bottom = [0] * n_bins
        for c in classes:
            top = [b + v for b, v in zip(bottom, counts[c])]
            ax.stairs(top, edges, baseline=bottom, fill=True, label=c, color=label_color(c))
            bottom = top
        ax.xaxis_date()
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"alerts per {_bin_text(width)}")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="class")
        return _png(fig)


_BINS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 6 * 3600, 86400)


def _bin_seconds(span: float) -> int:
    """The smallest bin width that gives at most 120 bins over ``span`` seconds."""
    for b in _BINS:
        if span / b <= 120:
            return b
    return int(math.ceil(span / 120 / 86400)) * 86400


def _bin_text(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d" if seconds > 86400 else "day"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h" if seconds > 3600 else "hour"
    if seconds % 60 == 0:
        return f"{seconds // 60} min" if seconds > 60 else "minute"
    return f"{seconds} s" if seconds > 1 else "second"
