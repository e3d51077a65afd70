"""Benchmark `analyze` on 10,000,000 packet rows with Spark on local[2].

The rows are the decoded MQTTset-reduced captures (../shared/datasets), each
split kept, replicated at random to the wanted count; half of the copies get
a jittered tcp.time_delta and a new mqtt.msgid, so that the data hold both
exact duplicates (as MQTTset's augmented files do) and many distinct rows.
Without the captures, rows are drawn from small value pools instead.

The Parquet file is written once under bench/out/analyze/ and reused; the
figures (seconds per scan, rows per second) are printed as one JSON line.

    python -m bench analyze                # 10M rows
    python -m bench.bench_analyze --rows 1000000 --master 'local[2]'
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mqttids import schema

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
DATASET = HERE.parent.parent / "shared" / "datasets" / "mqttset-reduced"
CLASSES = {"benign": "legitimate", "benign-5mb": "legitimate", "malariados": "dos",
           "flood": "flood", "malformed": "malformed", "slowite": "slowite",
           "bruteforce": "bruteforce"}
CHUNK = 1_000_000


def decoded_base(dataset: Path) -> pa.Table:
    """Every capture of the reduced data set decoded, with storage names, label and split."""
    from mqttids.capture import iter_row_batches

    tables = []
    for folder, label in CLASSES.items():
        for capture in sorted((dataset / folder).glob(f"{folder}-*.pcap*")):
            split = "train" if "-train." in capture.name else "test"
            batches = list(iter_row_batches(capture, label=label))
            table = pa.Table.from_batches(batches, schema=schema.arrow_schema())
            table = table.set_column(table.schema.get_field_index("split"), "split",
                                     pa.array([split] * len(table), pa.string()))
            tables.append(table)
    base = pa.concat_tables(tables)
    return base.rename_columns([schema.storage_name(n) for n in base.column_names])


def synthetic_base(rng: np.random.Generator, n: int = 50_000) -> pa.Table:
    """Rows from small value pools, for machines without the captures."""
    cols = {}
    for f in schema.ALL_FIELDS:
        cols[f.storage] = pa.nulls(n, f.arrow_type)
    labels = np.array(schema.LABELS)[rng.integers(0, len(schema.LABELS), n)]
    cols["target"] = pa.array(labels)
    cols["split"] = pa.array(np.where(rng.random(n) < 0.7, "train", "test"))
    cols["tcp_flags"] = pa.array(rng.choice([0x18, 0x10, 0x19, 0x11, 0x02], n), pa.int32())
    cols["tcp_time_delta"] = pa.array(rng.exponential(0.05, n))
    cols["tcp_len"] = pa.array(rng.choice([0, 2, 4, 20, 120, 1460], n), pa.int32())
    cols["mqtt_len"] = pa.array(rng.choice([0, 2, 18, 118], n), pa.int32())
    cols["mqtt_msgtype"] = pa.array(rng.choice([1, 2, 3, 4, 12, 13, 14], n), pa.int32())
    cols["mqtt_protoname"] = pa.array(np.where(rng.random(n) < 0.1, "MQTT", None))
    return pa.table(cols, schema=schema.arrow_schema(storage=True))


def replicate(base: pa.Table, rows: int, rng: np.random.Generator, out: Path) -> None:
    """Write ``rows`` rows drawn from ``base`` to ``out``, half of them varied."""
    writer = pq.ParquetWriter(out, base.schema, compression="snappy")
    delta = base.column("tcp_time_delta").to_numpy(zero_copy_only=False)
    msgid = base.column("mqtt_msgid").cast(pa.float64()).fill_null(np.nan).to_numpy()
    try:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            idx = rng.integers(0, len(base), n)
            chunk = base.take(pa.array(idx))
            vary = rng.random(n) < 0.5
            d = np.where(vary, delta[idx] * rng.lognormal(0.0, 0.2, n), delta[idx])
            m = np.where(vary & ~np.isnan(msgid[idx]), rng.integers(1, 65536, n), msgid[idx])
            chunk = chunk.set_column(chunk.schema.get_field_index("tcp_time_delta"),
                                     "tcp_time_delta", pa.array(d, pa.float64()))
            chunk = chunk.set_column(
                chunk.schema.get_field_index("mqtt_msgid"), "mqtt_msgid",
                pa.array(m, mask=np.isnan(m)).cast(chunk.schema.field("mqtt_msgid").type))
            chunk = chunk.set_column(chunk.schema.get_field_index("frame"), "frame",
                                     pa.array(np.arange(start, start + n) + 1, pa.int64()))
            writer.write_table(chunk)
    finally:
        writer.close()


def make_data(rows: int, out: Path, seed: int = 1) -> Path:
    """The benchmark's Parquet file, written once per row count and kept."""
    path = out / f"packets_{rows}.parquet"
    if path.exists():
        return path
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    base = decoded_base(DATASET) if DATASET.is_dir() else synthetic_base(rng)
    log.info("base: %d rows (%s) in %.1f s", len(base),
             "decoded captures" if DATASET.is_dir() else "synthetic", time.perf_counter() - started)
    partial = path.with_suffix(".partial")
    replicate(base, rows, rng, partial)
    partial.rename(path)
    log.info("wrote %s in %.1f s", path, time.perf_counter() - started)
    return path


def jvm_cpu_seconds(spark) -> float | None:
    """CPU seconds the local Spark JVM has used so far (None off Linux or on a cluster).

    The machine is shared, so wall time depends on the others' load; CPU time
    of the JVM does much less, and is printed beside it.
    """
    try:
        pid = spark.sparkContext._gateway.proc.pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (AttributeError, OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Steps:
    """A progress sink that records the wall and JVM CPU time of each scan."""

    def __init__(self, spark):
        self.spark = spark
        self.marks = [(time.perf_counter(), jvm_cpu_seconds(spark))]

    def advance(self, n: int = 1) -> None:
        self.marks.append((time.perf_counter(), jvm_cpu_seconds(self.spark)))

    def seconds(self) -> list[tuple]:
        return [(round(b[0] - a[0], 1), None if a[1] is None else round(b[1] - a[1], 1))
                for a, b in zip(self.marks, self.marks[1:])]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_analyze", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "analyze")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)

    from mqttids.spark.analytics import analyze
    from mqttids.spark.session import get_spark

    path = make_data(args.rows, args.out)
    spark = get_spark(args.master, app_name="bench-analyze")
    df = spark.read.parquet(str(path))
    steps = _Steps(spark)
    started = time.perf_counter()
    result = analyze(df, progress=steps)
    seconds = time.perf_counter() - started
    cpu = [c for _, c in steps.seconds()]
    figures = {
        "bench": "analyze", "rows": args.rows, "master": args.master,
        "seconds": round(seconds, 1), "rows_per_s": round(args.rows / seconds),
        "jvm_cpu_seconds": None if None in cpu else round(sum(cpu), 1),
        "load_average": os.getloadavg()[0],
        "scan_seconds_wall_cpu": dict(zip(["sums", "value_counts", "vectors"],
                                          steps.seconds())),
        "parquet_mb": round(path.stat().st_size / 2**20),
        "ceiling": result["ceiling"]["by_split"],
        "train_test_shared_rows": result["train_test_shared_rows"],
    }
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
