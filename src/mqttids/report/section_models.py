"""The models and cross-validation sections: test figures, confusion, per-class F1, tuning."""

from __future__ import annotations

import json

from mqttids.report import plots
from mqttids.report.html import Safe, img, join, number, table, tag
from mqttids.report.inputs import ReportInputs
from mqttids.report.models_view import ModelView, cv_by_param
from mqttids.report.section_data import missing


def reference_ceiling(inputs: ReportInputs) -> float | None:
    """The packet-level ceiling on test: from evaluate if it gave one, else from analyze."""
    for m in inputs.models:
        if m.ceiling is not None:
            return m.ceiling
    for row in inputs.analysis.get("analysis_ceiling", []):
        if row.get("split") == "test" and row.get("accuracy") is not None:
            return float(row["accuracy"])
    return None


def models_section(inputs: ReportInputs) -> Safe:
    models = inputs.models
    if not models:
        return missing("trained models (the models registry or bundles)",
                       "mqttids train, then mqttids evaluate")
    evaluated = [m for m in models if m.evaluated]
    parts = [overview_table(models, reference_ceiling(inputs))]
    if not evaluated:
        return join(parts + [missing("test results of these models", "mqttids evaluate")])
    with_acc = [m for m in evaluated if m.accuracy is not None]
    ceiling = reference_ceiling(inputs)
    if with_acc:
        parts += [tag("h3", "Accuracy beside the packet-level ceiling"),
                  tag("p", "The ceiling holds for the 33 packet features; a flow-aware model "
                           "sees more and can pass it.", cls="small"),
                  img(plots.ceiling_comparison(
                      [(m.name, m.accuracy, m.unseen_accuracy) for m in with_acc], ceiling),
                      "test accuracy of each model and the packet-level ceiling")]
    f1 = {m.name: {k: v.get("f1") for k, v in m.per_class.items()}
          for m in evaluated if m.per_class}
    if f1:
        parts += [tag("h3", "Per-class F1"), img(plots.per_class_f1(f1), "per-class F1 per model")]
    parts += [model_detail(m) for m in evaluated]
    if ceiling is None:
        parts.append(missing("packet-level ceiling", "mqttids analyze"))
    return join(parts)


def overview_table(models: list[ModelView], ceiling: float | None) -> Safe:
    body = []
    for m in models:
        own = m.ceiling if m.ceiling is not None else ceiling
        gap = None if m.accuracy is None or own is None else m.accuracy - own
        name = tag("a", m.name, href=f"#model-{_anchor(m.name)}") if m.evaluated else m.name
        body.append([name, m.kind or "-", m.features or "-", number(m.cv_macro_f1),
                     number(m.accuracy), number(m.macro_f1), number(own),
                     "-" if gap is None else f"{gap:+.4f}", number(m.unseen_accuracy),
                     number(m.unseen_macro_f1)])
    return table(["model", "kind", "features", "CV macro-F1", "test accuracy", "test macro-F1",
                  "ceiling", "accuracy − ceiling", "accuracy, unseen rows",
                  "macro-F1, unseen rows"], body, numeric=tuple(range(3, 10)))


def _anchor(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def model_detail(m: ModelView) -> Safe:
    """One model: confusion matrix, per-class precision/recall/F1, its chosen parameters."""
    parts = [tag("h3", f"Model {m.name}", id=f"model-{_anchor(m.name)}")]
    facts = [f"kind {m.kind}" if m.kind else None, f"features {m.features}" if m.features else None,
             f"bundle {m.path}" if m.path else None, f"made {m.created}" if m.created else None]
    parts.append(tag("p", "; ".join(f for f in facts if f), cls="small"))
    if m.confusion:
        parts.append(img(plots.confusion_matrix(m.confusion_labels, m.confusion,
                                                f"{m.name}: confusion on test"),
                         f"confusion matrix of {m.name}"))
    else:
        parts.append(missing(f"confusion matrix for {m.name} (evaluate keeps it in the bundle's "
                             "metadata.json: give the bundles' folder with --models-dir)",
                             "mqttids evaluate"))
    if m.per_class:
        body = [[label, number(v.get("precision")), number(v.get("recall")),
                 number(v.get("f1")), number(v.get("support"))]
                for label, v in m.per_class.items()]
        parts.append(table(["class", "precision", "recall", "F1", "support"], body,
                           numeric=(1, 2, 3, 4)))
    if m.best_params:
        parts.append(tag("p", "Chosen by cross-validation: ",
                         tag("code", json.dumps(m.best_params, sort_keys=True, default=str))))
    return tag("div", *parts, cls="model")


def tuning_section(inputs: ReportInputs) -> Safe:
    tuned = [m for m in inputs.models if m.cv]
    if not tuned:
        return missing("cross-validation tables", "mqttids train")
    return join(tuning_part(m) for m in tuned)


def tuning_part(m: ModelView) -> Safe:
    """A model's CV score against each hyperparameter, then the whole grid as a table."""
    metric = m.cv_metric or "score"
    parts = [tag("h3", f"{m.name}: {len(m.cv)} configurations, {metric}")]
    if m.tuning_rows and m.train_rows and m.tuning_rows < m.train_rows:
        parts.append(tag("p", f"Tuned on a stratified sample of {m.tuning_rows:,} of the "
                              f"{m.train_rows:,} train rows; the chosen configuration was "
                              "refitted on all of them.", cls="small"))
    elif m.tuning_rows:
        parts.append(tag("p", f"Tuned on all {m.tuning_rows:,} train rows.", cls="small"))
    by_param = cv_by_param(m.cv)
    if by_param:
        parts.append(img(plots.cv_scores(by_param, metric, f"{m.name}: cross-validation"),
                         f"cross-validation {metric} of {m.name} against its hyperparameters"))
    names = list(dict.fromkeys(k for p in m.cv for k in p.params))
    body = [[*(json.dumps(p.params.get(k), default=str) for k in names), number(p.mean),
             number(p.std), "best" if p.best else ""]
            for p in sorted(m.cv, key=lambda p: -p.mean)]
    parts.append(table([*names, f"{metric} (mean over folds)", "std", ""], body,
                       numeric=(len(names), len(names) + 1)))
    return tag("div", *parts, cls="model")
