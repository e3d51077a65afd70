"""`mqttids evaluate`: test metrics, confusion matrices, the ceiling and unseen rows."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mqttids.cli.common import print_json
from mqttids.cli.train import models_dir_default

log = logging.getLogger(__name__)

JSON_KEYS = ("name", "accuracy", "macro_f1", "per_class", "confusion", "ceiling")


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="score the model bundles on the test split",
        description="Score each bundle (or those named by --model) on the warehouse's test "
                    "rows: accuracy, macro-F1, per-class precision/recall/F1, the confusion "
                    "matrix (also as MODELS_DIR/NAME/confusion.png), the packet-level ceiling "
                    "(majority label of identical rows), and the same figures on the test "
                    "rows whose feature values never occur in train. The figures are stored "
                    "in the bundle and the models registry.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", action="append", metavar="NAME",
                   help="bundle to evaluate (repeatable); default: every bundle")
    p.add_argument("--models-dir", default=models_dir_default(), metavar="DIR",
                   help="where the bundles are (also MQTTIDS_MODELS_DIR)")
    p.add_argument("--no-png", action="store_true", help="do not write confusion.png")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=run)


def run(args, settings) -> int:
    from mqttids.models import bundle
    from mqttids.models.errors import BundleNotFoundError

    models_dir = Path(args.models_dir)
    names = args.model or bundle.list_bundles(models_dir)
    if not names:
        raise BundleNotFoundError(f"no model bundles in {models_dir}: run `mqttids train` "
                                  "first, or point --models-dir at them")
    for name in names:  # a wrong name or an old bundle fails before Spark starts
        bundle.load_bundle(name, models_dir)

    from mqttids.models.workflow import WarehouseData, evaluate_models
    from mqttids.spark.session import get_spark
    from mqttids.warehouse import open_warehouse

    with open_warehouse(settings.warehouse) as wh:
        spark = get_spark(settings.spark_master)
        results = evaluate_models(spark, WarehouseData(wh), names, models_dir, wh=wh,
                                  png=not args.no_png)
    if args.json:
        print_json({"models": [to_json(r) for r in results]})
    else:
        for r in results:
            _print(r)
    return 0


def to_json(result: dict) -> dict:
    """One model's entry in design.md's shape."""
    out = {k: result[k] for k in JSON_KEYS}
    out["unseen_rows"] = {"accuracy": result["unseen_rows"]["accuracy"],
                          "macro_f1": result["unseen_rows"]["macro_f1"]}
    return out


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _print(r: dict) -> None:
    console = Console()
    unseen = r["unseen_rows"]
    console.print(f"[bold]{r['name']}[/bold]: accuracy {_fmt(r['accuracy'])}, macro-F1 "
                  f"{_fmt(r['macro_f1'])}; packet-level ceiling {_fmt(r['ceiling'])}; "
                  f"on the {unseen['rows']:,} test rows unseen in train: accuracy "
                  f"{_fmt(unseen['accuracy'])}, macro-F1 {_fmt(unseen['macro_f1'])}")
    per = Table(title=f"{r['name']}: per class")
    for col in ("label", "precision", "recall", "F1", "support"):
        per.add_column(col, justify="left" if col == "label" else "right")
    for label, s in r["per_class"].items():
        per.add_row(label, _fmt(s["precision"]), _fmt(s["recall"]), _fmt(s["f1"]),
                    f"{s['support']:,}")
    console.print(per)
    labels = r["confusion"]["labels"]
    cm = Table(title=f"{r['name']}: confusion (rows true, columns predicted)")
    cm.add_column("true \\ predicted")
    for label in labels:
        cm.add_column(label, justify="right")
    for label, row in zip(labels, r["confusion"]["matrix"]):
        cm.add_row(label, *[f"{v:,}" for v in row])
    console.print(cm)
    if r.get("png"):
        console.print(f"confusion matrix picture: {r['png']}")
