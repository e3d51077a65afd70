"""`lab synth` at scale: packets written per second, memory, and the decoder's rows.

Figures, one JSON line each:

- ``pcap``: ``write_scenario`` of ``--packets`` (default 10,000,000) with the
  default mix and ``--workers`` processes (default 2), pcaps only; the target
  is >= 100,000 packets/s written. The load average is printed beside it,
  because on a shared machine the wall rate says as much about the neighbours;
  so is the rate the same run's CPU time gives (each class's CPU seconds,
  scheduled on the workers as the pool does: the wall time on free cores).
- ``class_cpu``: each class alone, in this process, timed by CPU time: the rate
  a free core gives, and from it the wall time two free cores would need.
- ``memory``: peak RSS of a fresh process writing the legitimate class at two
  sizes ten times apart: constant memory means the same peak.
- ``rows``: a 1,000,000-packet scenario with its Parquet rows (the capture
  decoder's rate is part of `lab synth`'s wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = 100_000


def _line(figure: str, **values) -> None:
    sys.stdout.write(json.dumps({"figure": figure, **values}) + "\n")
    sys.stdout.flush()


def _count(text: str) -> int:
    text = text.lower().replace("_", "")
    factor = {"k": 10**3, "m": 10**6}.get(text[-1], 1)
    return int(text[:-1] if factor > 1 else text) * factor


def bench_pcap(out: Path, packets: int, workers: int) -> float:
    from mqttids.lab.synth import write_scenario

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    summary = write_scenario(out, packets=packets, seed=1, rows=False, workers=workers)
    seconds = time.perf_counter() - started
    size = sum(c["bytes"] for c in summary["classes"].values())
    rate = summary["packets"] / seconds
    cpu = {k: c["write_cpu_seconds"] for k, c in summary["classes"].items()}
    busiest = _schedule(cpu, workers)
    _line("pcap", packets=summary["packets"], workers=workers, seconds=round(seconds, 1),
          packets_per_s=round(rate), mbytes=round(size / 1e6), target=TARGET,
          met=rate >= TARGET, loadavg=[round(load_before, 1), round(os.getloadavg()[0], 1)],
          cpu_seconds={k: round(v, 1) for k, v in cpu.items()},
          cpu_bound_seconds=round(busiest, 1),
          cpu_bound_packets_per_s=round(summary["packets"] / busiest))
    return rate


def _schedule(seconds_by_class: dict[str, float], workers: int) -> float:
    """The busiest worker's seconds when classes go largest first to the least busy worker
    (what a process pool does with write_scenario's job order)."""
    loads = [0.0] * workers
    for seconds in sorted(seconds_by_class.values(), reverse=True):
        loads[loads.index(min(loads))] += seconds
    return max(loads)


def bench_class_cpu(out: Path, per_class: int, packets: int, workers: int) -> None:
    from mqttids.lab import home
    from mqttids.lab.synth import split_packets, write_class_pcap

    cpu_rate = {}
    for kind in home.CLASSES:
        started = time.process_time()
        write_class_pcap(kind, out / f"cpu-{kind}.pcap", per_class, seed=1)
        cpu_rate[kind] = per_class / (time.process_time() - started)
        (out / f"cpu-{kind}.pcap").unlink()
    counts = split_packets(packets, home.DEFAULT_MIX)
    busiest = _schedule({k: counts[k] / cpu_rate[k] for k in counts}, workers)
    _line("class_cpu", packets_per_class=per_class,
          cpu_packets_per_s={k: round(v) for k, v in cpu_rate.items()},
          projected_seconds_free_cores=round(busiest, 1),
          projected_packets_per_s=round(packets / busiest))


def bench_memory(out: Path, small: int) -> None:
    peaks = {}
    for n in (small, small * 10):
        code = ("import resource,sys; from pathlib import Path; "
                "from mqttids.lab.synth import write_class_pcap; "
                f"write_class_pcap('legitimate', Path({str(out / 'mem.pcap')!r}), {n}, 1); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True)
        peaks[n] = int(done.stdout.strip()) // 1024
    (out / "mem.pcap").unlink()
    _line("memory", peak_rss_mb=peaks, ratio=round(peaks[small * 10] / peaks[small], 2))


def bench_rows(out: Path, packets: int) -> None:
    from mqttids.lab.synth import write_scenario

    started = time.perf_counter()
    summary = write_scenario(out, packets=packets, seed=1, rows=True)
    seconds = time.perf_counter() - started
    decode = sum(c["decode_seconds"] for c in summary["classes"].values())
    rows = sum(c["rows"] for c in summary["classes"].values())
    _line("rows", packets=packets, rows=rows, seconds=round(seconds, 1),
          packets_per_s=round(packets / seconds), decode_seconds=round(decode, 1))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_synth", description=__doc__)
    parser.add_argument("--packets", type=_count, default=10_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-class", type=_count, default=300_000)
    parser.add_argument("--memory-small", type=_count, default=200_000)
    parser.add_argument("--rows-packets", type=_count, default=1_000_000)
    parser.add_argument("--only", choices=("pcap", "class_cpu", "memory", "rows"))
    parser.add_argument("--out", default=str(HERE / "out" / "synth"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rate = TARGET
    try:
        if args.only in (None, "pcap"):
            rate = bench_pcap(out / "scale", args.packets, args.workers)
        if args.only in (None, "class_cpu"):
            bench_class_cpu(out, args.per_class, args.packets, args.workers)
        if args.only in (None, "memory"):
            bench_memory(out, args.memory_small)
        if args.only in (None, "rows"):
            bench_rows(out / "rows", args.rows_packets)
    finally:
        shutil.rmtree(out / "scale", ignore_errors=True)
    return 0 if rate >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
