"""Model targets on the reduced MQTTset captures, PyTorch speed, and the 10M-row run.

Three parts, each selectable:

- ``targets`` (default): decodes ../shared/datasets/mqttset-reduced with
  mqttids.capture (every ``*-train`` capture -> split train, ``*-test`` -> test;
  benign and benign-5mb are legitimate, malariados is dos), trains the four
  models with 3-fold CV for the packet and the flow feature sets (and, with
  ``--no-time-delta-too``, both again without tcp.time_delta), evaluates them
  on test and checks the targets: best packet model within 1 point of the
  packet-level ceiling; best flow model macro-F1 >= 0.995.
- ``speed`` (default): one training epoch of each network configuration over
  ``--speed-rows`` random rows of the flow pipeline's width, torch on 2
  threads; rows per second over wall time and over CPU time / 2 (the machine
  is shared, so CPU time says what two cores of our own would do). Targets:
  shallow >= 300,000 rows/s, deep >= 100,000 rows/s.
- ``big``: `mqttids train` (all four models, 3 folds) on a warehouse that
  holds at least 10M synthetic rows, timed against the 90-minute target.
  Without ``--big-warehouse URL`` it makes them itself, once: `mqttids lab
  synth --packets` ``--big-packets`` (15M packets give about 10.1M rows)
  into bench/out/models/big-synth, then `mqttids ingest ... --split train`
  into ``parquet:bench/out/models/big-warehouse``; it refuses to time a
  warehouse with fewer than 10M train rows. ``--big-features`` is flow by
  default (lab rows carry the ctx. columns); a warehouse loaded from the
  MQTTset-format CSV of `python -m bench ingest` needs ``packet``.

    python -m bench models [--parts targets,speed,big] [--folds 3]
        [--no-time-delta-too] [--speed-rows 1000000] [--big-warehouse URL]
        [--big-packets 15M] [--big-features packet|flow]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from mqttids import schema

REPO = Path(__file__).resolve().parents[1]
DATASET = Path(os.environ.get("MQTTIDS_DATASET",
                              REPO.parent / "shared" / "datasets" / "mqttset-reduced"))
LABEL_OF = {"benign": "legitimate", "benign-5mb": "legitimate", "malariados": "dos"}
SHALLOW_TARGET, DEEP_TARGET = 300_000, 100_000
FLOW_TARGET, CEILING_MARGIN = 0.995, 0.01


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench models", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="targets,speed", help="targets, speed and/or big")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--no-time-delta-too", action="store_true",
                   help="also train both feature sets without tcp.time_delta")
    p.add_argument("--speed-rows", type=int, default=1_000_000)
    p.add_argument("--big-warehouse", metavar="URL",
                   help="warehouse holding the 10M synthetic rows (default: make them)")
    p.add_argument("--big-packets", default="15M",
                   help="packets `lab synth` makes for part big when it makes the rows")
    p.add_argument("--big-features", choices=("packet", "flow"), default="flow",
                   help="feature set of part big (rows from MQTTset-format CSV have no ctx.)")
    p.add_argument("--out", default=str(REPO / "bench" / "out" / "models"),
                   help="folder for bundles and the JSON of the results")
    return p.parse_args(argv)


def load_reduced(dataset: Path = DATASET) -> pa.Table:
    """The reduced captures as rows with storage names, split and label set."""
    from mqttids.capture import iter_row_batches

    tables = []
    for folder in sorted(p for p in dataset.iterdir() if p.is_dir()):
        label = LABEL_OF.get(folder.name, folder.name)
        for split in schema.SPLITS:
            for f in sorted(folder.glob(f"*-{split}.pcap*")):
                t = pa.Table.from_batches(list(iter_row_batches(f, label=label)))
                t = t.set_column(t.schema.get_field_index("split"), "split",
                                 pa.array([split] * t.num_rows, pa.string()))
                tables.append(t)
    table = pa.concat_tables(tables)
    return table.rename_columns([schema.storage_name(n) for n in table.column_names])


def run_targets(args, out: Path) -> dict:
    from mqttids.models import workflow
    from mqttids.spark.session import get_spark

    rows = load_reduced()
    print(f"reduced MQTTset captures: {rows.num_rows:,} rows "
          f"({sum(1 for s in rows.column('split').to_pylist() if s == 'train'):,} train)")
    spark = get_spark("local[2]")
    data = workflow.ArrowData(rows)
    runs = [("packet", True), ("flow", True)]
    if args.no_time_delta_too:
        runs += [("packet", False), ("flow", False)]
    results = {}
    for feature_set, td in runs:
        options = workflow.TrainOptions(folds=args.folds, feature_set=feature_set,
                                        time_delta=td, device="cpu", models_dir=out)
        started = time.perf_counter()
        summaries = workflow.train_models(spark, data, options)
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        evaluated = workflow.evaluate_models(spark, data, [s["name"] for s in summaries], out)
        key = feature_set + ("" if td else "-no-time-delta")
        results[key] = {"train_seconds": train_s, "evaluate_seconds":
                        time.perf_counter() - started, "models": []}
        print(f"\n{key}: trained in {train_s:.0f} s")
        print(f"{'model':28} {'CV macro-F1':>11} {'accuracy':>9} {'macro-F1':>9} "
              f"{'ceiling':>8} {'unseen acc':>10} {'unseen F1':>9} {'unseen n':>8}")
        for s, e in zip(summaries, evaluated):
            cv = next(c for c in s["cv"] if c["params"] == s["best_params"])
            u = e["unseen_rows"]
            print(f"{s['name']:28} {cv['mean_macro_f1']:11.4f} {e['accuracy']:9.4f} "
                  f"{e['macro_f1']:9.4f} {e['ceiling']:8.4f} {_f(u['accuracy']):>10} "
                  f"{_f(u['macro_f1']):>9} {u['rows']:8,}")
            results[key]["models"].append({
                "name": s["name"], "best_params": s["best_params"],
                "cv_macro_f1": cv["mean_macro_f1"], "accuracy": e["accuracy"],
                "macro_f1": e["macro_f1"], "ceiling": e["ceiling"], "unseen_rows": u,
                "per_class_f1": {k: v["f1"] for k, v in e["per_class"].items()}})
    _check_targets(results)
    return results


def _f(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _check_targets(results: dict) -> None:
    if "packet" in results:
        models = results["packet"]["models"]
        best = max(models, key=lambda m: m["accuracy"])
        gap = best["ceiling"] - best["accuracy"]
        verdict = "met" if gap <= CEILING_MARGIN else "NOT met"
        print(f"\ntarget packet: best {best['name']} accuracy {best['accuracy']:.4f}, ceiling "
              f"{best['ceiling']:.4f}, gap {100 * gap:.2f} points (<= 1): {verdict}")
    if "flow" in results:
        best = max(results["flow"]["models"], key=lambda m: m["macro_f1"])
        verdict = "met" if best["macro_f1"] >= FLOW_TARGET else "NOT met"
        print(f"target flow: best {best['name']} macro-F1 {best['macro_f1']:.4f} "
              f"(>= {FLOW_TARGET}): {verdict}")


def run_speed(args) -> dict:
    import torch

    from mqttids.models import torch_nets

    torch.set_num_threads(2)
    width = 45  # about the flow pipeline's width on MQTTset rows
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.speed_rows, width)).astype(np.float32)
    y = rng.integers(0, len(schema.LABELS), args.speed_rows)
    out = {}
    print(f"\nPyTorch {torch.__version__}, 2 threads, {args.speed_rows:,} rows x {width}")
    for kind, target in (("mlp", SHALLOW_TARGET), ("dnn", DEEP_TARGET)):
        for params in torch_nets.GRIDS[kind]:
            torch_nets.fit_net(x[:100_000], y[:100_000], params, n_classes=6, max_epochs=1)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            fit = torch_nets.fit_net(x, y, params, n_classes=6, max_epochs=2)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            per_epoch_wall = fit.rows_per_s
            per_epoch_cpu = 2 * args.speed_rows / (cpu / 2)
            verdict = "met" if max(per_epoch_wall, per_epoch_cpu) >= target else "NOT met"
            label = f"{kind} hidden={list(params.hidden)} batch={params.batch_size}"
            print(f"{label:42} {per_epoch_wall:10,.0f} rows/s wall  {per_epoch_cpu:10,.0f} "
                  f"rows/s over CPU time/2  (target {target:,}: {verdict})")
            out[label] = {"wall": per_epoch_wall, "cpu": per_epoch_cpu, "seconds": wall}
    return out


BIG_ROWS = 10_000_000


def _mqttids(*argv: str) -> list[str]:
    return [sys.executable, "-m", "mqttids.cli", *argv]


def make_big_warehouse(args, out: Path) -> str:
    """A Parquet warehouse with the lab's synthetic rows as train, made once and reused."""
    synth, url = out / "big-synth", f"parquet:{out / 'big-warehouse'}"
    if not (synth / "summary.json").is_file():
        print(f"\npart big: lab synth --packets {args.big_packets} -o {synth}")
        started = time.perf_counter()
        subprocess.run(_mqttids("--quiet", "lab", "synth", "-o", str(synth), "--packets",
                                args.big_packets, "--seed", "1"), check=True)
        print(f"  made in {time.perf_counter() - started:.0f} s")
    print(f"part big: ingest {synth}/*.parquet into {url} (a re-run skips loaded files)")
    started = time.perf_counter()
    done = subprocess.run(_mqttids("--quiet", "--warehouse", url, "ingest",
                                   *sorted(map(str, synth.glob("*.parquet"))),
                                   "--split", "train", "--json"),
                          check=True, stdout=subprocess.PIPE, text=True)
    report = json.loads(done.stdout)
    print(f"  {json.dumps({k: v for k, v in report.items() if k != 'batches'})} in "
          f"{time.perf_counter() - started:.0f} s")
    return url


def _train_rows(url: str) -> int:
    from mqttids.warehouse import open_warehouse

    with open_warehouse(url) as wh:
        return wh.read_packets_arrow("train", ["target"]).num_rows


def run_big(args, out: Path) -> dict:
    url = args.big_warehouse or make_big_warehouse(args, out)
    rows = _train_rows(url)
    if rows < BIG_ROWS:
        print(f"\npart big: {url} holds {rows:,} train rows, fewer than {BIG_ROWS:,}: give "
              "more --big-packets or another --big-warehouse")
        return {"error": f"{rows} train rows"}
    print(f"part big: {rows:,} train rows in {url}")
    cmd = [sys.executable, "-m", "mqttids.cli", "--warehouse", url,
           "--spark-master", "local[2]", "--quiet", "--log-level", "INFO", "train",
           "--models", "lr,rf,mlp,dnn",
           "--folds", "3", "--features", args.big_features, "--device", "cpu",
           "--models-dir", str(out / "big"), "--json"]
    log_file = out / "big-train.log"
    print(f"\npart big: {' '.join(cmd[1:])}\n(progress in {log_file})")
    started = time.perf_counter()
    with open(log_file, "w") as err:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    seconds = time.perf_counter() - started
    print(f"\nmqttids train on {url}: exit {done.returncode}, {seconds / 60:.1f} "
          f"min (target 90)")
    if done.returncode:
        tail = log_file.read_text()[-2000:]
        print(tail)
        return {"seconds": seconds, "train_rows": rows, "error": tail}
    summary = json.loads(done.stdout)
    for m in summary["models"]:
        print(f"  {m['name']}: tuned on {m['tuning_rows']:,} of {m['train_rows']:,} rows")
    return {"seconds": seconds, "train_rows": rows, "summary": summary}


def main(argv: list[str]) -> int:
    args = parse(argv)
    logging.basicConfig(level=os.environ.get("MQTTIDS_LOG_LEVEL", "WARNING").upper(),
                        stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"targets", "speed", "big"}
    if unknown:
        print(f"unknown part(s) {sorted(unknown)}: use targets, speed, big")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    if "targets" in parts:
        if not DATASET.is_dir():
            print(f"MQTTset captures not found at {DATASET} (set MQTTIDS_DATASET)")
            return 2
        results["targets"] = run_targets(args, out)
    if "speed" in parts:
        results["speed"] = run_speed(args)
    if "big" in parts:
        results["big"] = run_big(args, out)
    with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".json") as f:
        json.dump(results, f, indent=2, default=str)
    os.replace(f.name, out / "results.json")
    print(f"\nfigures also in {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
