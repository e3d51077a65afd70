"""Ingest benchmark: MQTTset-format CSV rows into PostgreSQL, against Spark's JDBC writer.

    python -m bench ingest                                 # 10,000,000 rows
    python -m bench.bench_ingest --rows 1000000 --spark-rows 200000

Generates the CSV (MQTTset's own spelling: 8-digit hex flags, 0 for absent
fields) once under bench/out/, loads it with ``mqttids ingest``'s code path
in a child process whose resident memory is sampled every 0.1 s, then loads
the first ``--spark-rows`` of the same rows with Spark's JDBC writer (CSV read,
the same hex and absent-value conversions, ``DataFrame.write.jdbc``) into a
table with the same DDL, and prints both rates and their ratio. Target:
200,000 rows/s or more, memory flat. Figures go into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mqttids import schema

OUT = Path(__file__).resolve().parent / "out"
DEFAULT_DSN = os.environ.get("MQTTIDS_BENCH_PG") or os.environ.get(
    "MQTTIDS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_ROWS_PER_S = 200_000
GENERATOR_VERSION = 1
_WEIGHTS = {"legitimate": 0.50, "dos": 0.39, "bruteforce": 0.045, "malformed": 0.035,
            "slowite": 0.028, "flood": 0.002}  # the reduced CSVs' class shares


# -- MQTTset-format rows ---------------------------------------------------------------

def _hex(value: int) -> str:
    return f"0x{value:08x}"


def _message(kind: str, rng: np.random.Generator) -> tuple[int, dict[str, str]]:
    """(tcp.len, MQTT fields) of one message of the given kind."""
    if kind in ("connect", "slow_connect", "auth_connect", "bad_connect"):
        flags = {"connect": 0x02, "slow_connect": 0x02, "auth_connect": 0xC2,
                 "bad_connect": 0x03}[kind]
        fields = {"mqtt.hdrflags": _hex(0x10), "mqtt.msgtype": "1", "mqtt.len": "12",
                  "mqtt.conflags": _hex(flags), "mqtt.conflag.cleansess": "1",
                  "mqtt.kalive": "65535" if kind == "slow_connect" else "60",
                  "mqtt.proto_len": "4", "mqtt.protoname": "MQTT", "mqtt.ver": "4"}
        if kind == "auth_connect":
            fields |= {"mqtt.conflag.uname": "1", "mqtt.conflag.passwd": "1", "mqtt.len": "30"}
        if kind == "bad_connect":
            fields["mqtt.conflag.reserved"] = "1"
        return int(fields["mqtt.len"]) + 2, fields
    if kind in ("connack", "refused"):
        return 4, {"mqtt.hdrflags": _hex(0x20), "mqtt.msgtype": "2", "mqtt.len": "2",
                   "mqtt.conack.flags": _hex(0), "mqtt.conack.val": "5" if kind == "refused"
                   else "0"}
    if kind in ("publish", "big_publish"):
        size = int(rng.integers(600, 1400)) if kind == "big_publish" else int(rng.integers(2, 24))
        payload = rng.bytes(size).hex()
        return size + 12, {"mqtt.hdrflags": _hex(0x30), "mqtt.msgtype": "3",
                           "mqtt.len": str(size + 10), "mqtt.msg": payload}
    if kind == "subscribe":
        return 18, {"mqtt.hdrflags": _hex(0x82), "mqtt.msgtype": "8", "mqtt.len": "16",
                    "mqtt.msgid": str(int(rng.integers(1, 65535))), "mqtt.sub.qos": "0"}
    simple = {"pingreq": (0xC0, 12), "pingresp": (0xD0, 13), "disconnect": (0xE0, 14)}
    hdr, msgtype = simple[kind]
    return 2, {"mqtt.hdrflags": _hex(hdr), "mqtt.msgtype": str(msgtype), "mqtt.len": "0"}


_KINDS = {
    "legitimate": ["publish"] * 6 + ["pingreq", "pingresp", "connect", "connack", "subscribe"],
    "dos": ["connect", "connack", "disconnect"],
    "flood": ["big_publish"],
    "malformed": ["bad_connect", "publish", "subscribe"],
    "slowite": ["slow_connect", "connack", "pingreq"],
    "bruteforce": ["auth_connect", "refused", "disconnect"],
}


def _line(label: str, rng: np.random.Generator) -> str:
    kind = _KINDS[label][int(rng.integers(len(_KINDS[label])))]
    tcp_len, fields = _message(kind, rng)
    values = dict.fromkeys(schema.MQTTSET_COLUMNS, "0")
    values.update({"tcp.flags": _hex(0x18), "tcp.time_delta": f"{rng.exponential(0.2):.9f}",
                   "tcp.len": str(tcp_len), "mqtt.conack.flags": _hex(0),
                   "mqtt.conflags": _hex(0), "target": label})
    values.update(fields)
    return ",".join(values[c] for c in schema.MQTTSET_COLUMNS) + "\n"


def write_mqttset_csv(path: Path, rows: int, seed: int = 7, pool: int = 50_000) -> None:
    """``rows`` MQTTset-format lines drawn from a pool of distinct ones; memory stays flat."""
    rng = np.random.default_rng(seed)
    labels = list(_WEIGHTS)
    weights = np.array([_WEIGHTS[k] for k in labels]) / sum(_WEIGHTS.values())
    lines = np.array([_line(labels[i], rng) for i in rng.choice(len(labels), pool, p=weights)],
                     dtype=object)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as out:
        out.write(",".join(schema.MQTTSET_COLUMNS) + "\n")
        for start in range(0, rows, 1_000_000):
            count = min(1_000_000, rows - start)
            out.write("".join(lines[rng.integers(0, pool, count)]))
    tmp.replace(path)


def dataset(rows: int, seed: int) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"mqttset-{rows}-s{seed}-v{GENERATOR_VERSION}.csv"
    if not path.exists():
        started = time.perf_counter()
        write_mqttset_csv(path, rows, seed)
        log(f"generated {path} ({path.stat().st_size / 1e6:.0f} MB) in "
            f"{time.perf_counter() - started:.1f} s")
    return path


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- our loader, in a child whose memory we watch --------------------------------------

def _process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a local process (the server's backend), if visible."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child_load(path: str, dsn: str, pg_schema: str) -> None:
    import resource

    from mqttids.warehouse import open_warehouse

    with open_warehouse(dsn, pg_schema=pg_schema) as wh:
        backend = wh._live().info.backend_pid
        server_before = _process_cpu(backend)
        own = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        report = wh.ingest([path], split="train")
        seconds = time.perf_counter() - started
        server_after = _process_cpu(backend)
    done = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = done.ru_utime + done.ru_stime - own.ru_utime - own.ru_stime
    server_cpu = None if server_before is None or server_after is None \
        else server_after - server_before
    sys.stdout.write(json.dumps({"seconds": seconds, "client_cpu_s": client_cpu,
                                 "server_cpu_s": server_cpu, **report.to_json()}) + "\n")


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load_with_mqttids(path: Path, dsn: str, pg_schema: str) -> dict:
    _drop_schema(dsn, pg_schema)
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_ingest", "--child", str(path), "--dsn", dsn,
         "--schema", pg_schema], stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
    samples = []
    while child.poll() is None:
        rss = _rss_mb(child.pid)
        if rss is not None:
            samples.append(rss)
        time.sleep(0.1)
    out = child.stdout.read().decode()
    if child.returncode:
        raise SystemExit(f"the load failed (exit {child.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = max(samples, default=0.0)
    # Peak memory in each tenth of the run: flat when memory does not grow with input.
    tenths = np.array_split(np.asarray(samples or [0.0]), 10)
    result["rss_by_tenth_mb"] = [round(float(t.max()), 0) if t.size else None for t in tenths]
    return result


# -- the anchor: Spark's JDBC writer ---------------------------------------------------

def _subset(path: Path, rows: int) -> Path:
    target = path.with_name(f"{path.stem}-head{rows}.csv")
    if not target.exists():
        with open(path, "rb") as src, open(target.with_suffix(".tmp"), "wb") as out:
            for _ in range(rows + 1):
                out.write(src.readline())
        target.with_suffix(".tmp").replace(target)
    return target


_SPARK_TYPES = {"integer": "int", "bigint": "bigint", "double precision": "double",
                "text": "string"}


def _spark_frame(spark, path: Path):
    """The CSV read by Spark with the conversions our loader does (hex, absent values)."""
    from pyspark.sql import functions as F

    frame = spark.read.option("header", True).csv(str(path))  # every column as text
    columns = []
    for name in schema.MQTTSET_COLUMNS:
        fld = schema.BY_NAME[name]
        col = F.col(f"`{name}`")
        if fld.kind == schema.HEX:
            col = F.conv(F.regexp_replace(col, "^0[xX]", ""), 16, 10)
        elif name != "target" and fld.kind in (schema.TEXT, schema.BYTES_HEX):
            col = F.when(col == "0", F.lit(None)).otherwise(col)
        columns.append(col.cast(_SPARK_TYPES[fld.sql_type]).alias(fld.storage))
    return frame.select(F.lit(0).cast("bigint").alias("batch_id"), *columns,
                        F.lit("train").alias("split"), F.lit(path.name).alias("source"))


def load_with_spark_jdbc(path: Path, dsn: str, pg_schema: str) -> dict:
    from mqttids.spark.session import get_spark
    from mqttids.warehouse import open_warehouse

    _drop_schema(dsn, pg_schema)
    with open_warehouse(dsn, pg_schema=pg_schema) as wh:  # the same DDL as ours
        options = wh.jdbc_options()
    spark = get_spark("local[2]", app_name="bench-ingest")
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(path.stat().st_size // 2 + 1))
    frame = _spark_frame(spark, path)
    started = time.perf_counter()
    properties = {k: v for k, v in options.items() if k != "url"}
    frame.write.jdbc(options["url"], f"{pg_schema}.packets", mode="append",
                     properties=properties)
    seconds = time.perf_counter() - started
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {pg_schema}.packets").fetchone()[0]
    return {"rows": rows, "seconds": seconds, "partitions": frame.rdd.getNumPartitions()}


def _seconds(value: float | None) -> str:
    return "unknown (server not local)" if value is None else f"{value:.1f} s"


def _drop_schema(dsn: str, pg_schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {pg_schema} CASCADE")


# -- the run ---------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ingest",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--spark-rows", type=int, default=1_000_000,
                        help="rows for Spark's JDBC writer (0: skip it)")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the bench schemas")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--schema", default="bench_ingest", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child_load(args.child, args.dsn, args.schema)
        return 0
    path = dataset(args.rows, args.seed)
    ours = load_with_mqttids(path, args.dsn, "bench_ingest")
    rate = ours["loaded"] / ours["seconds"]
    print(f"mqttids COPY: {ours['loaded']:,} rows in {ours['seconds']:.1f} s = {rate:,.0f} rows/s "
          f"(target {TARGET_ROWS_PER_S:,}); peak RSS {ours['peak_rss_mb']:.0f} MB, by tenth of "
          f"the run {ours['rss_by_tenth_mb']}; rejected {ours['rejected']}")
    load = os.getloadavg()[0]
    print(f"CPU: client {ours['client_cpu_s']:.1f} s, PostgreSQL backend "
          f"{_seconds(ours['server_cpu_s'])}; load average {load:.1f} on {os.cpu_count()} cores")
    result = {"bench": "ingest", "rows": ours["loaded"], "seconds": round(ours["seconds"], 2),
              "client_cpu_s": round(ours["client_cpu_s"], 1),
              "server_cpu_s": ours["server_cpu_s"] and round(ours["server_cpu_s"], 1),
              "load_average": round(load, 1),
              "rows_per_s": round(rate), "peak_rss_mb": round(ours["peak_rss_mb"]),
              "rss_by_tenth_mb": ours["rss_by_tenth_mb"],
              "target_rows_per_s": TARGET_ROWS_PER_S}
    if args.spark_rows:
        spark_rows = min(args.spark_rows, args.rows)
        anchor = load_with_spark_jdbc(_subset(path, spark_rows), args.dsn, "bench_ingest_spark")
        spark_rate = anchor["rows"] / anchor["seconds"]
        print(f"Spark JDBC writer: {anchor['rows']:,} rows in {anchor['seconds']:.1f} s = "
              f"{spark_rate:,.0f} rows/s ({anchor['partitions']} partitions); "
              f"mqttids is {rate / spark_rate:.1f}x faster")
        result |= {"spark_rows": anchor["rows"], "spark_rows_per_s": round(spark_rate),
                   "ratio": round(rate / spark_rate, 2)}
    print(json.dumps(result))
    if not args.keep:
        _drop_schema(args.dsn, "bench_ingest")
        _drop_schema(args.dsn, "bench_ingest_spark")
    return 0 if rate >= TARGET_ROWS_PER_S else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
