"""Reading pcap and pcapng, from a file or a stream, in constant memory.

Yields ``(frame_number, ts_ns, linktype, data)`` for every captured frame.
Written by hand rather than with a library: it must read a never-ending
stdin stream in constant memory and survive a truncated or corrupt capture,
and it is the reference that the C decoder (``_cdecoder.c``) follows byte for
byte, warnings included.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from typing import BinaryIO

from mqttids.capture.errors import NotACaptureError, describe_bytes

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# A frame larger than this is corrupt framing, not a packet (pcapng caps at 256 KiB).
MAX_FRAME = 1 << 24

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
# Bytes of body that a block needs for the fixed fields read from it.
_MIN_BODY = {6: 16, 2: 16, 3: 4, 1: 2}

Frame = tuple[int, int, int, bytes]


class _Buffer:
    """A read buffer over a stream: ``need(n)`` makes ``n`` bytes available."""

    __slots__ = ("stream", "data", "pos", "eof", "base")

    def __init__(self, stream: BinaryIO, head: bytes):
        self.stream = stream
        self.data = head
        self.pos = 0
        self.eof = False
        self.base = 0  # stream offset of data[0], for messages

    def need(self, n: int) -> bool:
        """True when ``n`` bytes from ``pos`` are in ``data``; False at end of input."""
        while len(self.data) - self.pos < n:
            if self.eof:
                return False
            chunk = self.stream.read(max(CHUNK, n))
            if not chunk:
                self.eof = True
                return False
            self.data = self.data[self.pos:] + chunk
            self.base += self.pos
            self.pos = 0
        return True

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def read_frames(stream: BinaryIO, name: str, warnings: list[str] | None = None
                ) -> Iterator[Frame]:
    """Frames of a pcap or pcapng stream; a truncated tail gives one warning."""
    head = _read_exactly(stream, 4)
    if head in PCAP_MAGICS:
        yield from _pcap_frames(stream, name, head, warnings)
    elif head == PCAPNG_SHB:
        yield from _pcapng_frames(stream, name, head, warnings)
    else:
        more = head + stream.read(60)
        raise NotACaptureError(
            f"{name} is not a pcap or pcapng capture: {describe_bytes(more)}; "
            "give a file written by tcpdump, dumpcap or Wireshark")


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _warn(warnings: list[str] | None, name: str, message: str) -> None:
    text = f"{name}: {message}"
    log.warning("%s", text)
    if warnings is not None:
        warnings.append(text)


def _pcap_frames(stream, name, magic, warnings) -> Iterator[Frame]:
    endian, ts_mult = PCAP_MAGICS[magic]
    buf = _Buffer(stream, magic)
    if not buf.need(24):
        _warn(warnings, name, "capture ends inside its file header; no frames read")
        return
    linktype = struct.unpack_from(endian + "I", buf.data, buf.pos + 20)[0] & 0x0FFFFFFF
    buf.pos += 24
    record = struct.Struct(endian + "IIII")
    unpack = record.unpack_from
    frame = 0
    while True:
        if buf.left < 16 and not buf.need(16):
            break
        data = buf.data
        pos = buf.pos
        sec, frac, incl, _orig = unpack(data, pos)
        if incl > MAX_FRAME:
            _warn(warnings, name, f"frame {frame + 1} claims {incl} bytes; the capture is "
                                  f"corrupt from byte offset {buf.base + pos} on, stopped there")
            return
        end = pos + 16 + incl
        if end > len(data):
            if not buf.need(16 + incl):
                break
            data = buf.data
            pos = buf.pos
            end = pos + 16 + incl
        frame += 1
        buf.pos = end
        yield frame, sec * 1_000_000_000 + frac * ts_mult, linktype, data[pos + 16:end]
    if buf.left:
        _warn(warnings, name, f"capture is truncated: {buf.left} bytes after frame {frame} "
                              "do not make a whole frame; every complete frame was read")


class _Interface:
    __slots__ = ("linktype", "ts_num", "ts_den", "offset_ns")

    def __init__(self, linktype: int):
        self.linktype = linktype
        self.ts_num = 1000  # default resolution: microseconds
        self.ts_den = 1
        self.offset_ns = 0


def _parse_idb(body: bytes, endian: str) -> _Interface:
    linktype = struct.unpack_from(endian + "H", body, 0)[0]
    iface = _Interface(linktype)
    pos = 8
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(endian + "HH", body, pos)
        value = body[pos + 4:pos + 4 + length]
        if code == 0:
            break
        if code == 9 and value:  # if_tsresol
            exp = value[0] & 0x7F
            if value[0] & 0x80:
                iface.ts_num, iface.ts_den = 1_000_000_000, 1 << exp
            elif exp <= 9:
                iface.ts_num, iface.ts_den = 10 ** (9 - exp), 1
            else:
                iface.ts_num, iface.ts_den = 1, 10 ** (exp - 9)
        elif code == 14 and len(value) == 8:  # if_tsoffset, seconds
            iface.offset_ns = struct.unpack(endian + "q", value)[0] * 1_000_000_000
        pos += 4 + ((length + 3) & ~3)
    return iface


def _pcapng_frames(stream, name, magic, warnings) -> Iterator[Frame]:
    buf = _Buffer(stream, magic)
    endian = "<"
    ifaces: list[_Interface] = []
    frame = 0
    while True:
        if not buf.need(12):
            break
        data, pos = buf.data, buf.pos
        if data[pos:pos + 4] == PCAPNG_SHB:
            bom = data[pos + 8:pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                _warn(warnings, name, f"section header at byte {buf.base + pos} has a bad "
                                      "byte-order "
                                      "mark; stopped there")
                return
            ifaces = []  # interfaces are per section
        btype, blen = struct.unpack_from(endian + "II", data, pos)
        if blen < 12 or blen % 4 or blen > MAX_FRAME:
            _warn(warnings, name, f"block at byte {buf.base + pos} has an impossible "
                                  f"length {blen}; "
                                  "the capture is corrupt from there, stopped")
            return
        if not buf.need(blen):
            break
        data, pos = buf.data, buf.pos
        body = data[pos + 8:pos + blen - 4]
        buf.pos = pos + blen
        if len(body) < _MIN_BODY.get(btype, 0) and (btype != 3 or ifaces):
            _warn(warnings, name, f"block at byte {buf.base + pos} of type {btype} is "
                                  f"{blen} bytes, too "
                                  "short for its fields; the capture is corrupt from there, "
                                  "stopped")
            return
        if btype == 6:  # enhanced packet block
            iface_id, ts_hi, ts_lo, caplen = struct.unpack_from(endian + "IIII", body, 0)
            if iface_id >= len(ifaces) or 20 + caplen > len(body):
                _warn(warnings, name, f"packet block at byte {buf.base + pos} names "
                                      f"interface {iface_id} "
                                      "or overruns its block; skipped")
                continue
            iface = ifaces[iface_id]
            ticks = (ts_hi << 32) | ts_lo
            ts = ticks * iface.ts_num // iface.ts_den + iface.offset_ns
            frame += 1
            yield frame, ts, iface.linktype, body[20:20 + caplen]
        elif btype == 1:
            ifaces.append(_parse_idb(body, endian))
        elif btype == 3 and ifaces:  # simple packet block: interface 0, no time stamp
            orig = struct.unpack_from(endian + "I", body, 0)[0]
            snap = len(body) - 4
            frame += 1
            yield frame, 0, ifaces[0].linktype, body[4:4 + min(orig, snap)]
        elif btype == 2:  # obsolete packet block
            iface_id, _drops, ts_hi, ts_lo, caplen = struct.unpack_from(
                endian + "HHIII", body, 0)
            if iface_id < len(ifaces) and 20 + caplen <= len(body):
                iface = ifaces[iface_id]
                ts = ((ts_hi << 32) | ts_lo) * iface.ts_num // iface.ts_den + iface.offset_ns
                frame += 1
                yield frame, ts, iface.linktype, body[20:20 + caplen]
    if buf.left:
        _warn(warnings, name, f"capture is truncated: {buf.left} bytes after frame {frame} "
                              "do not make a whole block; every complete frame was read")
