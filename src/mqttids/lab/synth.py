"""``mqttids lab synth``: a labelled synthetic scenario, one pcap and one Parquet per class.

The pcaps hold genuine Ethernet/IPv4/TCP/MQTT frames made by the actors of
:mod:`mqttids.lab.legit` and :mod:`mqttids.lab.attacks`; the rows are made
by running those pcaps through the capture decoder
(:func:`mqttids.capture.iter_row_batches`), so synthetic and real traffic
share one feature path. Each class is simulated on its own random stream
derived from the seed, so a class's pcap does not change when the mix of the
others does, and classes can be written in parallel processes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from mqttids.errors import UsageError
from mqttids.lab import attacks, home, legit
from mqttids.lab.errors import MixError, OutputDirError
from mqttids.lab.sim import Net, Sim
from mqttids.lab.wire import Host, PcapSink

log = logging.getLogger(__name__)

DEFAULT_PACKETS = 100_000
DEFAULT_SEED = 1
EPOCH = 1_700_000_000  # 2023-11-14 22:13:20 UTC: every scenario starts here
MAX_PACKETS = 10**10
_PARALLEL_FROM = 200_000


def parse_mix(text: str | None) -> dict[str, float]:
    """``CLASS=SHARE,...`` -> shares per class; classes not named get 0.

    None gives :data:`mqttids.lab.home.DEFAULT_MIX`. Shares must be numbers in
    [0, 1] that add up to 1 (within 1e-6).
    """
    if text is None:
        return dict(home.DEFAULT_MIX)
    mix = dict.fromkeys(home.CLASSES, 0.0)
    seen: set[str] = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise MixError(f"--mix item {item!r} has no '=': write CLASS=SHARE, "
                           f"e.g. legitimate=0.6,dos=0.4")
        if name not in mix:
            raise MixError(f"--mix names unknown class {name!r}: the classes are "
                           f"{', '.join(home.CLASSES)}")
        if name in seen:
            raise MixError(f"--mix names class {name!r} twice: give each class once")
        seen.add(name)
        try:
            share = float(value)
        except ValueError:
            raise MixError(f"--mix share {value.strip()!r} of {name} is not a number: "
                           "use a fraction such as 0.25") from None
        if not 0.0 <= share <= 1.0 or math.isnan(share):
            raise MixError(f"--mix share {share} of {name} is outside 0..1: "
                           "shares are fractions of the packets")
        mix[name] = share
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        raise MixError(f"--mix shares add up to {total:.6g}, not 1: adjust them so they sum "
                       f"to 1 (given: {text})")
    return mix


def split_packets(total: int, mix: dict[str, float]) -> dict[str, int]:
    """Packets per class that add up to exactly ``total`` (largest remainders)."""
    exact = {k: total * mix.get(k, 0.0) for k in home.CLASSES}
    counts = {k: int(v) for k, v in exact.items()}
    short = total - sum(counts.values())
    by_remainder = sorted(home.CLASSES, key=lambda k: (-(exact[k] - counts[k]),
                                                       home.CLASSES.index(k)))
    for k in by_remainder[:short]:
        counts[k] += 1
    return counts


def class_rng(seed: int, kind: str) -> random.Random:
    """The random stream of one class: independent of the other classes' shares."""
    return random.Random(f"mqttids-lab:{seed}:{kind}")


def write_class_pcap(kind: str, path: Path, packets: int, seed: int) -> dict:
    """Simulate class ``kind`` until ``packets`` frames are in ``path``."""
    started, cpu = time.perf_counter(), time.process_time()
    with open(path, "wb") as fileobj:
        sink = PcapSink(fileobj, packets, epoch=EPOCH)
        sim = Sim(sink, class_rng(seed, kind))
        net = Net(sim, Host(home.BROKER_IP, home.BROKER_MAC, "broker"))
        if packets:
            if kind == "legitimate":
                legit.legitimate(sim, net)
            else:
                attacks.start(kind, sim, net)
            sim.run()
        sink.close()
    seconds = time.perf_counter() - started
    return {"pcap": str(path), "packets": sink.count, "bytes": sink.bytes,
            "span_seconds": round(sink.now, 6), "write_seconds": round(seconds, 3),
            "write_cpu_seconds": round(time.process_time() - cpu, 3)}


def write_class_rows(kind: str, pcap: Path, parquet: Path,
                     ports: tuple[int, ...] = (1883,)) -> dict:
    """Decode ``pcap`` with the capture decoder into labelled rows in ``parquet``."""
    import pyarrow.parquet as pq

    from mqttids.capture import ExtractStats, iter_row_batches
    from mqttids.schema import arrow_schema

    started = time.perf_counter()
    stats = ExtractStats()
    with pq.ParquetWriter(parquet, arrow_schema()) as writer:
        for batch in iter_row_batches(pcap, ports=ports, label=kind, stats=stats):
            writer.write_batch(batch)
    return {"parquet": str(parquet), "rows": stats.rows, "messages": stats.messages,
            "malformed": stats.malformed, "decode_seconds":
            round(time.perf_counter() - started, 3)}


def _write_one(kind: str, out_dir: str, packets: int, seed: int, rows: bool) -> dict:
    out = Path(out_dir)
    result = write_class_pcap(kind, out / f"{kind}.pcap", packets, seed)
    if rows:
        result.update(write_class_rows(kind, out / f"{kind}.pcap", out / f"{kind}.parquet"))
    return result


def check_request(out_dir: str | Path, packets: int, seed: int) -> Path:
    """Option checks before any work: one clear error per bad value."""
    if isinstance(packets, bool) or not isinstance(packets, int) or not 1 <= packets <= MAX_PACKETS:
        raise UsageError(f"--packets {packets!r} is not a whole number from 1 to {MAX_PACKETS}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"--seed {seed!r} is not a whole number")
    out = Path(out_dir)
    try:
        if out.exists() and not out.is_dir():
            raise OutputDirError(f"output {out} exists and is not a folder: give -o a folder "
                                 "(it is created when missing)")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(f"cannot use output folder {out}: {exc.strerror}; "
                             "choose a writable place for -o") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputDirError(f"output folder {out} is not writable: choose a writable place "
                             "for -o")
    return out


def write_scenario(out_dir: str | Path, packets: int = DEFAULT_PACKETS,
                   seed: int = DEFAULT_SEED, mix: dict[str, float] | str | None = None,
                   rows: bool = True, workers: int | None = None,
                   progress: Callable[[int], None] | None = None) -> dict:
    """Write ``DIR/CLASS.pcap`` (and ``DIR/CLASS.parquet`` rows) for every class in ``mix``.

    ``packets`` frames in all, split by ``mix`` (shares, or the ``--mix`` text;
    default :data:`home.DEFAULT_MIX`). The same arguments give byte-identical
    pcaps. ``workers`` processes write classes in parallel (default: one per
    CPU from 200,000 packets on, else one). ``progress`` is called with the
    packets of each class as it is done. Returns the summary that ``--json``
    prints (also written to ``DIR/summary.json``).
    """
    out = check_request(out_dir, packets, seed)
    shares = parse_mix(mix) if mix is None or isinstance(mix, str) else parse_mix(
        ",".join(f"{k}={v!r}" for k, v in mix.items()))
    counts = split_packets(packets, shares)
    jobs = sorted((k for k in home.CLASSES if counts[k] > 0), key=lambda k: -counts[k])
    _remove_stale(out, [k for k in home.CLASSES if k not in jobs])
    started = time.perf_counter()
    results: dict[str, dict] = {}
    if workers is None:
        # Starting worker processes costs about a second: only worth it for large scenarios.
        workers = os.cpu_count() or 1 if packets >= _PARALLEL_FROM else 1
    workers = min(workers, len(jobs))
    if workers <= 1:
        for kind in jobs:
            results[kind] = _write_one(kind, str(out), counts[kind], seed, rows)
            if progress is not None:
                progress(counts[kind])
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
            futures = {pool.submit(_write_one, kind, str(out), counts[kind], seed, rows): kind
                       for kind in jobs}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if progress is not None:
                    progress(counts[futures[future]])
    seconds = time.perf_counter() - started
    summary = {"output": str(out), "seed": seed,
               "packets": sum(r["packets"] for r in results.values()),
               "mix": {k: shares[k] for k in home.CLASSES}, "seconds": round(seconds, 3),
               "classes": {k: results[k] for k in home.CLASSES if k in results}}
    write_summary(out, summary)
    return summary


def write_summary(out: Path, summary: dict) -> None:
    """``DIR/summary.json``: what was written, so a folder explains itself later."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _remove_stale(out: Path, kinds: list[str]) -> None:
    """Drop pcaps and rows an earlier run left for classes this run does not write."""
    for kind in kinds:
        for suffix in (".pcap", ".parquet"):
            stale = out / f"{kind}{suffix}"
            if stale.is_file():
                log.info("removing %s from an earlier run (class %s has share 0 now)",
                         stale, kind)
                stale.unlink()
