"""Reference rows from tshark, normalised the way the parity contract says:
hex read as an integer, empty as NULL (tshark prints an empty byte field as
<MISSING>; mqttids keeps a present but empty value as "")."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import pyarrow as pa

from mqttids.capture import iter_row_batches
from mqttids.capture.extract import ARROW_SCHEMA
from mqttids.schema import BY_NAME, FEATURE_NAMES


# A flood's PUBLISH payload, printed as hex, is longer than the csv module's
# default field limit of 128 KiB.
csv.field_size_limit(sys.maxsize)


def normalise(name: str, value):
    if value in ("", "<MISSING>", None):
        return None
    kind = BY_NAME[name].kind
    if kind in ("hex", "int"):
        return int(value, 0) if isinstance(value, str) else int(value)
    if kind == "float":
        return round(float(value), 6)
    return value


def tshark_rows(tshark: str, path, ports=(1883,)) -> dict[int, dict]:
    cmd = [tshark, "-r", str(path), "-o", "tcp.calculate_timestamps:TRUE", "-Y", "mqtt",
           "-T", "fields", "-E", "header=y", "-E", "separator=,", "-E", "quote=d",
           "-E", "occurrence=f", "-e", "frame.number"]
    for port in ports:
        if port != 1883:
            cmd += ["-d", f"tcp.port=={port},mqtt"]
    for name in FEATURE_NAMES:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {int(r["frame.number"]): {n: normalise(n, r[n]) for n in FEATURE_NAMES}
            for r in csv.DictReader(io.StringIO(out))}


def our_rows(path, ports=(1883,)) -> dict[int, dict]:
    table = pa.Table.from_batches(list(iter_row_batches(path, ports=ports)),
                                  schema=ARROW_SCHEMA)
    return {r["frame"]: {n: normalise(n, r[n]) for n in FEATURE_NAMES}
            for r in table.to_pylist()}


def differences(ours: dict, theirs: dict, limit: int = 10) -> list[str]:
    """Human-readable differences: frames only one side has, then field mismatches."""
    diffs = [f"frame {f}: only tshark has MQTT" for f in sorted(set(theirs) - set(ours))]
    diffs += [f"frame {f}: only mqttids has MQTT" for f in sorted(set(ours) - set(theirs))]
    for frame in sorted(set(ours) & set(theirs)):
        for name in FEATURE_NAMES:
            if ours[frame][name] != theirs[frame][name]:
                diffs.append(f"frame {frame} {name}: tshark {theirs[frame][name]!r}, "
                             f"mqttids {ours[frame][name]!r}")
    return diffs[:limit]
