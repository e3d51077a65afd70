"""Exceptions of the capture stage."""

from mqttids.errors import MqttidsError


class CaptureError(MqttidsError):
    """A capture could not be read."""


class NotACaptureError(CaptureError):
    """The input is neither pcap nor pcapng."""


class UnsupportedLinkTypeError(CaptureError):
    """The capture's link type is not one the decoder reads."""


def describe_bytes(head: bytes) -> str:
    """What the first bytes of a file look like, for an error message."""
    if not head:
        return "it is empty"
    known = {
        b"\x1f\x8b": "gzip-compressed data (gunzip it first)",
        b"PK\x03\x04": "a zip archive (unzip it first)",
        b"PAR1": "a Parquet file (use `mqttids ingest` for rows)",
        b"BZh": "bzip2-compressed data (bunzip2 it first)",
        b"\xfd7zXZ": "xz-compressed data (unxz it first)",
    }
    for magic, what in known.items():
        if head.startswith(magic):
            return f"it starts like {what}"
    shown = head[:16]
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in shown)
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head[:64])
    kind = "text" if printable >= min(len(head), 64) * 0.9 else "binary data"
    return f"its first bytes are {shown.hex(' ')} ({text!r}), which look like {kind}"
