"""`mqttids train`: preprocessing, cross-validated tuning and model bundles."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mqttids.cli.common import print_json, progress_bar
from mqttids.errors import UsageError

log = logging.getLogger(__name__)

KINDS = ("lr", "rf", "mlp", "dnn")


def models_dir_default() -> str:
    return os.environ.get("MQTTIDS_MODELS_DIR") or str(Path("mqttids-data") / "models")


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="fit the preprocessing pipeline, tune and save the models",
        description="Fit the preprocessing pipeline on the warehouse's train rows, tune each "
                    "model by stratified k-fold cross-validation over the grid it declares, "
                    "refit the best configuration on all of train and save it as a bundle "
                    "(MODELS_DIR/NAME, NAME such as rf-flow). lr and rf are Spark ML; mlp (one "
                    "hidden layer) and dnn (three, with batch norm and dropout) are PyTorch. "
                    "The tuning table goes to the warehouse table model_tuning, the bundles "
                    "to the models registry.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", default=",".join(KINDS), metavar="LIST",
                   help="comma-separated models to train, from lr,rf,mlp,dnn")
    p.add_argument("--folds", type=int, default=3, metavar="K",
                   help="cross-validation folds (K >= 2)")
    p.add_argument("--features", choices=("packet", "flow"), default="flow",
                   help="packet: the 33 MQTTset columns; flow: those plus the ctx. columns")
    p.add_argument("--no-time-delta", action="store_true",
                   help="leave tcp.time_delta out (it mostly reflects how a capture was made)")
    p.add_argument("--seed", type=int, default=0, help="seed of folds, samples and models")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the PyTorch networks train; auto picks CUDA when present")
    p.add_argument("--tune-rows", type=int, default=1_000_000, metavar="N",
                   help="tune on a stratified sample of at most N train rows; the final "
                        "fit always uses all of train")
    p.add_argument("--max-epochs", type=int, default=30, metavar="N",
                   help="most epochs a network trains (early stopping usually ends sooner)")
    p.add_argument("--models-dir", default=models_dir_default(), metavar="DIR",
                   help="where bundles go (also MQTTIDS_MODELS_DIR)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=run)


def parse_models(text: str) -> tuple[str, ...]:
    """``lr,rf`` -> ("lr", "rf"); unknown names or an empty list are a UsageError."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in KINDS]
    if unknown or not names:
        raise UsageError(f"--models {text!r}: unknown model(s) {unknown or '(none given)'}; "
                         f"choose from {','.join(KINDS)}, e.g. --models lr,rf")
    return names


def run(args, settings) -> int:
    from mqttids.models.workflow import TrainOptions

    options = TrainOptions(
        models=parse_models(args.models), folds=args.folds, feature_set=args.features,
        time_delta=not args.no_time_delta, seed=args.seed, device=args.device,
        tune_rows=args.tune_rows, max_epochs=args.max_epochs,
        models_dir=Path(args.models_dir)).check()

    from mqttids.models.workflow import WarehouseData, train_models
    from mqttids.spark.session import get_spark
    from mqttids.warehouse import open_warehouse

    with open_warehouse(settings.warehouse) as wh:
        spark = get_spark(settings.spark_master)
        with progress_bar("train", None, settings.quiet) as bar:
            summaries = train_models(spark, WarehouseData(wh), options, wh=wh, progress=bar)
    if args.json:
        print_json({"models": summaries})
    else:
        _print(summaries)
    return 0


def _print(summaries: list[dict]) -> None:
    console = Console()
    table = Table(title="trained models")
    for col in ("model", "features", "best parameters", "CV macro-F1", "train rows", "bundle"):
        table.add_column(col)
    for s in summaries:
        best = next(c for c in s["cv"] if c["params"] == s["best_params"])
        rows = f"{s['train_rows']:,}"
        if s["tuning_rows"] < s["train_rows"]:
            rows += f" (tuned on a stratified sample of {s['tuning_rows']:,})"
        table.add_row(s["name"], s["features"] + ("" if s["time_delta"] else ", no time delta"),
                      ", ".join(f"{k}={v}" for k, v in s["best_params"].items()),
                      f"{best['mean_macro_f1']:.4f}", rows, s["bundle"])
    console.print(table)
