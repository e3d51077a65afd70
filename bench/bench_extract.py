"""`mqttids extract` against tshark on the same capture, one core each.

The capture is the MQTTset captures' packets (all of ../shared/datasets/
mqttset-reduced's train and test files, Linux-cooked frames turned into
Ethernet frames) replayed ``--copies`` times into one pcap under bench/out/.
Each copy continues the last: time stamps move on, and every TCP direction's
sequence and acknowledgement numbers move on by the bytes that direction sent,
so a long-lived connection goes on as one stream and a closed one is reopened
(a new generation of its flow). The decoder therefore sees one long capture of
the same connections, and what it keeps per connection stays the same size.

Printed: packets per second of each program over the wall-clock time of the
whole command (start-up included) and over its CPU time, for every run, the
best and the spread, the ratio of the best figures; the Python reference
decoder's rate on one copy; and the peak RSS of `mqttids extract -` reading
the stream from stdin at 1x, 2x and 4x its length.

    python -m bench extract [--copies 10] [--runs 3] [--no-tshark]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mqttids import schema
from mqttids.capture.pcap import read_frames
from mqttids.capture.rows import LINK_ETHERNET, LINK_SLL, ip_offset, tcp_segment

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
DATASET = Path(os.environ.get("MQTTIDS_DATASET",
                              REPO.parent / "shared" / "datasets" / "mqttset-reduced"))
PCAP_HEADER = np.array([0xA1B2C3D4, 0x00040002, 0, 0, 262144, LINK_ETHERNET],
                       dtype="<u4").tobytes()
ETH_MACS = bytes.fromhex("020000000001020000000002")


@dataclass
class Base:
    """One copy of the replayed traffic, as arrays that a copy can patch fast."""

    records: np.ndarray  # uint8: pcap records (16-byte header + Ethernet frame) back to back
    starts: np.ndarray  # offset of each record
    ts_us: np.ndarray  # int64 time stamp of each record, from 0
    seq_at: np.ndarray  # offset of the TCP sequence number, -1 when not TCP/IPv4
    seq_step: np.ndarray  # uint32 added to it per copy
    ack_step: np.ndarray  # uint32 added to the acknowledgement number per copy
    span_us: int  # duration of one copy

    @property
    def packets(self) -> int:
        return len(self.starts)


def ethernet(linktype: int, frame: bytes) -> bytes | None:
    if linktype == LINK_ETHERNET:
        return frame
    if linktype == LINK_SLL and len(frame) >= 16:
        return ETH_MACS + frame[14:16] + frame[16:]
    return None


def read_base(captures: list[Path]) -> tuple[list[bytes], list[int]]:
    """Frames of every capture as Ethernet, with time stamps made one increasing line."""
    frames, stamps, clock = [], [], 0
    for path in captures:
        with open(path, "rb") as f:
            first = None
            for _, ts_ns, linktype, data in read_frames(f, path.name):
                frame = ethernet(linktype, data)
                if frame is None:
                    continue
                first = ts_ns // 1000 if first is None else first
                stamps.append(clock + ts_ns // 1000 - first)
                frames.append(frame)
        clock = stamps[-1] + 1000 if stamps else clock
    return frames, stamps


def sequence_steps(frames: list[bytes]) -> tuple[list[int], list[int], list[int]]:
    """Per frame: where its TCP sequence number is, and what a copy adds to it and to the ack.

    A direction's step is the sequence space it covered, SYN and FIN included,
    so that the next copy starts where this one ended.
    """
    found, first, reach = [], {}, {}
    for frame in frames:
        off = ip_offset(LINK_ETHERNET, frame)
        seg = tcp_segment(frame, off) if off >= 0 else None
        if seg is None or len(seg[0]) != 4 or len(frame) < seg[2] + 20:
            found.append(None)
            continue
        src, dst, t, end = seg
        key = (src, frame[t:t + 2], dst, frame[t + 2:t + 4])
        seq = int.from_bytes(frame[t + 4:t + 8], "big")
        flags = frame[t + 13]
        used = max(0, end - t - (frame[t + 12] >> 4) * 4) + (flags & 1) + ((flags >> 1) & 1)
        start = first.setdefault(key, seq)
        ahead = (seq + used - start) & 0xFFFFFFFF
        if ahead < 0x80000000:  # not a segment from before the first one seen
            reach[key] = max(reach.get(key, 0), ahead)
        found.append((key, t))
    at, seq_step, ack_step = [], [], []
    for frame, hit in zip(frames, found):
        if hit is None:
            at.append(-1)
            seq_step.append(0)
            ack_step.append(0)
            continue
        (src, sport, dst, dport), t = hit
        at.append(t)
        seq_step.append(reach[(src, sport, dst, dport)])
        ack_step.append(reach.get((dst, dport, src, sport), 0))
    return at, seq_step, ack_step


def load_base(dataset: Path) -> Base:
    captures = sorted(p for p in dataset.rglob("*") if p.suffix in (".pcap", ".pcapng")
                      and p.parent != dataset)
    if not captures:
        raise SystemExit(f"no captures under {dataset}: set MQTTIDS_DATASET")
    frames, stamps = read_base(captures)
    at, seq_step, ack_step = sequence_steps(frames)
    parts, starts, pos = [], [], 0
    for frame in frames:
        parts.append(np.array([0, 0, len(frame), len(frame)], dtype="<u4").tobytes() + frame)
        starts.append(pos)
        pos += 16 + len(frame)
    starts_a = np.array(starts, dtype=np.int64)
    at_a = np.array(at, dtype=np.int64)
    return Base(np.frombuffer(b"".join(parts), dtype=np.uint8).copy(), starts_a,
                np.array(stamps, dtype=np.int64),
                np.where(at_a >= 0, starts_a + 16 + at_a + 4, -1),
                np.array(seq_step, dtype=np.uint32), np.array(ack_step, dtype=np.uint32),
                int(stamps[-1] - stamps[0]) + 1000)


def _patch_u32be(buf: np.ndarray, at: np.ndarray, add: np.ndarray) -> None:
    idx = at[:, None] + np.arange(4)
    value = (buf[idx].astype(np.uint32) << np.array([24, 16, 8, 0], dtype=np.uint32)).sum(
        axis=1, dtype=np.uint32)
    value = value + add  # wraps modulo 2**32, as TCP sequence numbers do
    buf[idx] = ((value[:, None] >> np.array([24, 16, 8, 0], dtype=np.uint32)) & 0xFF)


def copy_bytes(base: Base, k: int) -> bytes:
    """Copy number k of the base traffic: later time stamps, moved-on sequence numbers."""
    buf = base.records.copy()
    ts = base.ts_us + k * base.span_us
    sec = (ts // 1_000_000).astype("<u4").view(np.uint8).reshape(-1, 4)
    usec = (ts % 1_000_000).astype("<u4").view(np.uint8).reshape(-1, 4)
    buf[base.starts[:, None] + np.arange(4)] = sec
    buf[base.starts[:, None] + 4 + np.arange(4)] = usec
    tcp = base.seq_at >= 0
    if k and tcp.any():
        at = base.seq_at[tcp]
        _patch_u32be(buf, at, base.seq_step[tcp] * np.uint32(k))
        _patch_u32be(buf, at + 4, base.ack_step[tcp] * np.uint32(k))
    return buf.tobytes()


def write_stream(base: Base, copies: int, sink) -> None:
    sink.write(PCAP_HEADER)
    for k in range(copies):
        sink.write(copy_bytes(base, k))


@dataclass
class Run:
    wall: float
    cpu: float
    max_rss_kib: int
    stdout: str


def timed(cmd: list[str], stdin=None, feed=None, env=None) -> Run:
    """Run cmd on core 0; wall time, CPU time and peak RSS of that process alone."""
    started = time.perf_counter()
    proc = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    if feed is not None:
        feed(proc.stdin)
        proc.stdin.close()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed with exit code {proc.returncode}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, out.decode())


def extract_cmd(source: str, output: Path) -> list[str]:
    return [sys.executable, "-m", "mqttids", "--quiet", "extract", source, "-o", str(output),
            "--json"]


def tshark_cmd(capture: Path) -> list[str]:
    fields = [a for name in schema.FEATURE_NAMES for a in ("-e", name)]
    return ["tshark", "-n", "-r", str(capture), "-o", "tcp.calculate_timestamps:TRUE",
            "-Y", "mqtt", "-T", "fields", "-E", "occurrence=f"] + fields


def rates(runs: list[Run], packets: int) -> dict:
    wall = [packets / r.wall for r in runs]
    cpu = [packets / r.cpu for r in runs]
    return {"wall": wall, "cpu": cpu, "best_wall": max(wall), "best_cpu": max(cpu)}


def show(name: str, r: dict) -> None:
    def fmt(xs):
        return ", ".join(f"{x:,.0f}" for x in xs)
    print(f"{name}: packets/s over wall time [{fmt(r['wall'])}] best {r['best_wall']:,.0f}; "
          f"over CPU time [{fmt(r['cpu'])}] best {r['best_cpu']:,.0f}")


def python_rate(base_file: Path, packets: int) -> float:
    env = dict(os.environ, MQTTIDS_PURE_PYTHON="1")
    run = timed(extract_cmd(str(base_file), OUT / "extract-python.parquet"), env=env)
    return packets / run.cpu


def stream_rss(base: Base, copies: int) -> tuple[int, dict]:
    """Peak RSS (KiB) of `mqttids extract -` fed `copies` copies through a pipe."""
    env = {k: v for k, v in os.environ.items() if k != "MQTTIDS_PURE_PYTHON"}
    run = timed(extract_cmd("-", OUT / "extract-stream.parquet"), stdin=subprocess.PIPE,
                feed=lambda pipe: write_stream(base, copies, pipe), env=env)
    return run.max_rss_kib, json.loads(run.stdout)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench extract", description=__doc__.split("\n")[0])
    p.add_argument("--copies", type=int, default=10, help="copies of the MQTTset traffic")
    p.add_argument("--runs", type=int, default=3, help="timed runs of each program")
    p.add_argument("--no-tshark", action="store_true", help="time only mqttids")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if not args.no_tshark and shutil.which("tshark") is None:
        print("tshark is not installed (apt-get install tshark), or pass --no-tshark")
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    base = load_base(DATASET)
    big, one = OUT / "extract-bench.pcap", OUT / "extract-one-copy.pcap"
    with open(big, "wb") as f:
        write_stream(base, args.copies, f)
    with open(one, "wb") as f:
        write_stream(base, 1, f)
    packets = base.packets * args.copies
    print(f"capture: {big} ({big.stat().st_size / 2**20:.0f} MiB), {packets:,} packets "
          f"({args.copies} copies of {base.packets:,}); one core each (taskset -c 0)")
    ours_runs = [timed(extract_cmd(str(big), OUT / "extract-bench.parquet"))
                 for _ in range(args.runs)]
    summary = json.loads(ours_runs[0].stdout)
    print(f"mqttids extract: {summary['rows']:,} rows, {summary['malformed']:,} malformed")
    ours = rates(ours_runs, packets)
    show("mqttids extract", ours)
    if not args.no_tshark:
        theirs = rates([timed(tshark_cmd(big)) for _ in range(args.runs)], packets)
        show("tshark", theirs)
        print(f"ratio (best to best): {ours['best_wall'] / theirs['best_wall']:.1f}x over wall "
              f"time, {ours['best_cpu'] / theirs['best_cpu']:.1f}x over CPU time")
    print(f"Python reference decoder (MQTTIDS_PURE_PYTHON=1, one copy): "
          f"{python_rate(one, base.packets):,.0f} packets/s over CPU time")
    for mult in (1, 2, 4):
        rss, got = stream_rss(base, args.copies * mult)
        print(f"stdin stream {mult}x ({got['packets']:,} packets, {got['rows']:,} rows): "
              f"peak RSS {rss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
