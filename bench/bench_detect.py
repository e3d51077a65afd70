"""Benchmark `mqttids detect`: throughput, packet-to-alert latency, memory per connection.

Each measurement prints one JSON line (docs/benchmarks.md keeps the figures):

- throughput: `mqttids detect FILE --model M --json` on one core (taskset, as
  bench_extract times extract) on bench_extract's replayed MQTTset traffic
  (every reduced capture, as Ethernet, ``--copies`` times, connections going
  on from copy to copy); packets per second over the command's wall-clock and
  CPU time, for the C and the Python decoder (the Python one on a tenth);
- latency: `mqttids detect - --model M` fed through a pipe at a steady
  ``--rate`` packets per second of the same traffic, each pcap time stamp set
  to the moment of writing; an alert's delay is when it is read from the
  child's stdout minus the time stamp of the packet that raised it (p50,
  p99, max);
- memory: ``--connections`` concurrent SlowITe-style connections (handshake,
  CONNECT with keep-alive 65535, CONNACK, never closed) through a detector in
  a fresh process; resident memory before and after, per connection, then
  twice as many connections with the cap at ``--connections`` to show the cap
  holding.

    python -m bench detect
    python -m bench.bench_detect --model rf-flow --parts latency --rate 10000 --engine c
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATASET = Path(os.environ.get("MQTTIDS_DATASET",
                              REPO.parent / "shared" / "datasets" / "mqttset-reduced"))
OUT = HERE / "out" / "detect"
MODELS = OUT / "models"
CLASSES = {"benign": "legitimate", "benign-5mb": "legitimate", "malariados": "dos",
           "flood": "flood", "malformed": "malformed", "slowite": "slowite",
           "bruteforce": "bruteforce"}
PARTS = ("throughput", "latency", "memory")
_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


# -- the model ------------------------------------------------------------------------------

def ensure_model(name: str) -> str:
    """A bundle folder: ``name`` when it is one, else bench/out/detect/models/NAME.

    ``rf-flow`` is trained there when missing, as `mqttids train --models rf`
    trains it (default grid and folds), on the train captures of the reduced
    MQTTset: a few minutes, once.
    """
    from mqttids.models.bundle import METADATA

    if (Path(name) / METADATA).is_file():
        return name
    path = MODELS / name
    if (path / METADATA).is_file():
        return str(path)
    if name != "rf-flow":
        raise SystemExit(f"no bundle {name!r}: give a bundle folder, or rf-flow to train one")
    import pyarrow as pa

    from mqttids import schema
    from mqttids.capture import iter_row_batches
    from mqttids.models.workflow import ArrowData, TrainOptions, train_models
    from mqttids.spark.session import get_spark

    batches = []
    for folder, label in CLASSES.items():
        for capture in sorted((DATASET / folder).glob(f"{folder}-train.pcap*")):
            batches += iter_row_batches(capture, label=label)
    rows = pa.Table.from_batches(batches)
    rows = rows.set_column(rows.schema.get_field_index("split"), "split",
                           pa.array(["train"] * rows.num_rows, pa.string()))
    rows = rows.rename_columns([schema.storage_name(n) for n in rows.column_names])
    log.info("training rf-flow on %d rows of the reduced MQTTset train captures", len(rows))
    spark = get_spark("local[2]", app_name="bench-detect")
    try:
        summary, = train_models(spark, ArrowData(rows), TrainOptions(
            models=("rf",), feature_set="flow", models_dir=MODELS))
    finally:
        spark.stop()
    return summary["bundle"]


# -- traffic ------------------------------------------------------------------------------

def replay_capture(copies: int) -> tuple[Path, int]:
    """bench_extract's replayed MQTTset traffic, ``copies`` times; (path, packets)."""
    from bench.bench_extract import load_base, write_stream

    base = load_base(DATASET)
    path = OUT / f"replay-{copies}.pcap"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with open(partial, "wb") as f:
            write_stream(base, copies, f)
        partial.rename(path)
    return path, base.packets * copies


def storm_capture(connections: int, out: Path = OUT) -> Path:
    """``connections`` SlowITe-style connections, all left open: 5 frames each (raw IP)."""
    path = out / f"storm-{connections}.pcap"
    if path.exists():
        return path
    out.mkdir(parents=True, exist_ok=True)
    broker = socket.inet_aton("10.0.0.1")
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as f:
        f.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 262144, 101))
        ts = 1_700_000_000 * 10**6
        chunk = []
        for i in range(connections):
            client = socket.inet_aton(f"10.{1 + i // 60000}.{(i // 250) % 240}.{1 + i % 250}")
            port = 1024 + i % 60000
            cid = f"slow{i}".encode()
            connect = (b"\x10" + bytes([12 + len(cid)]) + b"\x00\x04MQTT\x04\x02\xff\xff"
                       + struct.pack("!H", len(cid)) + cid)
            segs = [(True, 0x02, b"", 0), (False, 0x12, b"", 0), (True, 0x10, b"", 1),
                    (True, 0x18, connect, 1), (False, 0x18, b"\x20\x02\x00\x00", 1)]
            cseq, bseq = 1000, 5000
            for up, flags, payload, after_syn in segs:
                src, dst = (client, broker) if up else (broker, client)
                sp, dp = (port, 1883) if up else (1883, port)
                seq = (cseq if up else bseq) + after_syn
                ack = (bseq if up else cseq) + 1 if flags != 0x02 else 0
                if up:
                    cseq += len(payload)
                else:
                    bseq += len(payload)
                tcp = struct.pack("!HHIIBBHHH", sp, dp, seq, ack, 0x50, flags, 65535, 0, 0)
                ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64,
                                 6, 0, src, dst)
                frame = ip + tcp + payload
                ts += 20
                chunk.append(_RECORD.pack(ts // 10**6, ts % 10**6, len(frame), len(frame))
                             + frame)
            if len(chunk) > 50_000:
                f.write(b"".join(chunk))
                chunk = []
        f.write(b"".join(chunk))
    partial.rename(path)
    return path


# -- throughput -------------------------------------------------------------------------

def detect_cmd(source: str, model: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mqttids", "--quiet", "detect", source, "--model", model,
            *extra]


def throughput(model: str, copies: int, engine: str) -> dict:
    """`mqttids detect FILE --json` on one core: packets/s over wall and CPU time."""
    from bench.bench_extract import timed

    path, packets = replay_capture(copies)
    env = _engine_env(engine)
    run = timed(detect_cmd(str(path), model, "--json", "--alerts", os.devnull), env=env)
    summary = json.loads(run.stdout)
    assert summary["packets"] == packets, (summary, packets)
    return {"part": "throughput", "engine": engine, "model": model, "packets": packets,
            "alerts": summary["alerts"], "wall_s": round(run.wall, 2), "cpu_s": round(run.cpu, 2),
            "detector_s": summary["seconds"],
            "packets_per_s_wall": round(packets / run.wall),
            "packets_per_s_cpu": round(packets / run.cpu),
            "max_rss_mb": round(run.max_rss_kib / 1024)}


# -- latency -----------------------------------------------------------------------------

def _records(copy: bytes, starts) -> list[bytearray]:
    ends = list(starts[1:]) + [len(copy)]
    return [bytearray(copy[a:b]) for a, b in zip(starts, ends)]


def _pace(fd: int, rate: int, seconds: float, sent_out) -> None:
    """Write the replayed traffic to ``fd`` at ``rate`` packets/s, stamped with the write time.

    Runs in a process of its own, so that preparing records never delays the
    reading of alerts; every record is prepared before the clock starts.
    """
    from bench.bench_extract import PCAP_HEADER, copy_bytes, load_base

    base = load_base(DATASET)
    records: list[bytearray] = []
    for k in range(int(rate * seconds) // base.packets + 1):
        records += _records(copy_bytes(base, k), base.starts)
    pipe = os.fdopen(fd, "wb", buffering=0)
    pipe.write(PCAP_HEADER)
    step = 0.002
    per_step = max(1, round(rate * step))
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds:
        delay = start + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.time_ns() // 1000
        stamp = struct.pack("<II", now // 1_000_000, now % 1_000_000)
        parts = records[sent:sent + per_step]
        for rec in parts:
            rec[0:8] = stamp
        pipe.write(b"".join(parts))
        sent += len(parts)
    pipe.close()
    sent_out.value = sent


def latency(model: str, rate: int, seconds: float, engine: str, nice: int = 0) -> dict:
    """Delays from a packet's time stamp to its alert on the stdout of `mqttids detect -`.

    ``nice`` below 0 runs the detector ahead of other jobs on a shared machine,
    as a sensor would be run (it needs root).
    """
    prefix = ["nice", "-n", str(nice)] if nice else []
    child = subprocess.Popen(prefix + detect_cmd("-", model), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=_engine_env(engine))
    delays: list[tuple[float, float]] = []  # (when read, delay)

    def read_alerts() -> None:
        for line in child.stdout:
            got = time.time()
            sent = np.datetime64(json.loads(line)["time"][:26], "us").astype("int64") / 1e6
            delays.append((got, got - sent))

    reader = threading.Thread(target=read_alerts, daemon=True)
    reader.start()
    time.sleep(5.0)  # start-up and model loading are not packet delays
    ctx = multiprocessing.get_context("fork")
    sent = ctx.Value("q", 0)
    writer = ctx.Process(target=_pace, args=(child.stdin.fileno(), rate, seconds, sent))
    writer.start()
    child.stdin.close()  # the writer holds the pipe now; its exit ends the stream
    writer.join()
    _, _, usage = os.wait4(child.pid, 0)
    child.returncode = 0
    reader.join(timeout=10)
    d = np.array([x for _, x in delays]) * 1000
    late = d[len(d) // 2:]  # the second half of the run, when any backlog would show

    def pct(values, q):
        return round(float(np.percentile(values, q)), 1) if len(values) else None

    return {"part": "latency", "engine": engine, "model": model, "rate": rate, "nice": nice,
            "seconds": seconds, "packets": sent.value, "alerts": len(d), "p50_ms": pct(d, 50),
            "p99_ms": pct(d, 99), "max_ms": pct(d, 100),
            "second_half_p99_ms": pct(late, 99),
            "detector_cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}


def _engine_env(engine: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MQTTIDS_PURE_PYTHON"}
    if engine == "python":
        env["MQTTIDS_PURE_PYTHON"] = "1"
    return env


# -- memory -------------------------------------------------------------------------------

def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(model: str, connections: int, cap: int, engine: str) -> dict:
    """In a fresh process: resident memory before and after the storm."""
    from mqttids.detect import Detector, load_scorer

    path = storm_capture(connections)
    scorer = load_scorer(model)
    det = Detector(scorer, engine=engine, max_connections=cap, idle_s=3600)
    before = _rss_mb()
    with open(path, "rb", buffering=0) as stream:
        stats = det.run(stream, path.name)
    after = _rss_mb()
    return {"part": "memory", "engine": det.engine.kind, "connections": connections,
            "cap": cap, "kept": det.connections, "tracked": len(det.tracker),
            "alerts": stats.alerts, "rss_before_mb": round(before, 1),
            "rss_after_mb": round(after, 1),
            "bytes_per_connection": round((after - before) * 2**20 / min(connections, cap))}


def memory(model: str, connections: int, engine: str) -> list[dict]:
    out = []
    for n, cap in ((connections, connections), (2 * connections, connections)):
        storm_capture(n)
        res = subprocess.run([sys.executable, "-m", "bench.bench_detect", "--parts",
                              "memory-child", "--model", model, "--connections", str(n),
                              "--cap", str(cap), "--engine", engine],
                             capture_output=True, text=True, cwd=REPO, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


# -- main -----------------------------------------------------------------------------------

def _engines(engine: str) -> list[str]:
    from mqttids.detect.engines import c_available

    if engine != "both":
        return [engine]
    return ["c", "python"] if c_available() else ["python"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_detect", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="rf-flow",
                        help="a bundle folder, or rf-flow (trained under bench/out/detect "
                             "when missing)")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--engine", default="both", choices=["both", "c", "python"])
    parser.add_argument("--copies", type=int, default=10,
                        help="copies of the MQTTset traffic to replay (100,712 packets each)")
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness of the detector in the latency run (negative: ahead "
                             "of other jobs; needs root)")
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--cap", type=int, default=100_000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    parts = args.parts.split(",")
    args.model = ensure_model(args.model)
    if parts == ["memory-child"]:
        print(json.dumps(memory_child(args.model, args.connections, args.cap, args.engine)))
        return 0
    for engine in _engines(args.engine):
        if "throughput" in parts:
            copies = args.copies if engine == "c" else max(1, args.copies // 10)
            print(json.dumps(throughput(args.model, copies, engine)), flush=True)
        if "latency" in parts:
            print(json.dumps(latency(args.model, args.rate, args.seconds, engine, args.nice)),
                  flush=True)
        if "memory" in parts:
            for figures in memory(args.model, args.connections, engine):
                print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
