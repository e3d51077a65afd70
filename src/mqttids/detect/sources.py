"""Where packets come from: a capture file, a pcap stream on stdin, or a live interface.

This is the detect stage's I/O adapter. ``iface:NAME`` starts tcpdump (or,
without it, dumpcap) writing a pcap stream to a pipe, and stops it when the
detector stops. Every source is read through an unbuffered stream: a buffered
``read(1 MiB)`` on a pipe would wait for a whole mebibyte, holding back the
packets of a quiet network for as long as it takes to fill.

:class:`FrameReader` (frames, for the Python decoder) and :class:`ChunkReader`
(raw bytes cut at record boundaries, for the C decoder) read in a thread and
hand over through a bounded queue, so the scoring thread can wait on it with
a timeout: that is how a micro-batch is scored after 50 ms even when no
further packet arrives.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import queue
import shutil
import signal
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mqttids.capture import pcap
from mqttids.capture.pcap import read_frames
from mqttids.detect.errors import CaptureProgramError, SourceError
from mqttids.errors import InputNotFoundError, MissingDependencyError, UsageError

log = logging.getLogger(__name__)

IFACE_PREFIX = "iface:"
STDIN = "-"
END = object()  # put on the queue after the last frame


@dataclass(frozen=True)
class SourceSpec:
    """A parsed SOURCE argument: ``kind`` is file, stdin or iface."""

    kind: str
    value: str

    @property
    def name(self) -> str:
        return {"file": self.value, "stdin": "stdin"}.get(self.kind, f"{IFACE_PREFIX}{self.value}")


def parse_source(text: str) -> SourceSpec:
    """Check a SOURCE argument before any work starts."""
    if text == STDIN:
        return SourceSpec("stdin", STDIN)
    if text.startswith(IFACE_PREFIX):
        iface = text[len(IFACE_PREFIX):]
        if not iface or any(c.isspace() for c in iface):
            raise UsageError(f"source {text!r} names no interface: write iface:NAME, "
                             "e.g. iface:eth0 or iface:lo")
        return SourceSpec("iface", iface)
    path = Path(text)
    if not path.exists():
        raise InputNotFoundError(f"capture {text!r} does not exist: give a pcap/pcapng file, "
                                 "- for a stream on stdin, or iface:NAME")
    if path.is_dir():
        raise SourceError(f"{text!r} is a folder: give one capture file, - or iface:NAME")
    return SourceSpec("file", text)


def bpf_filter(ports: tuple[int, ...]) -> str:
    """A capture filter that keeps the MQTT ports' TCP traffic."""
    return " or ".join(f"tcp port {p}" for p in ports)


def capture_command(iface: str, ports: tuple[int, ...]) -> list[str]:
    """The tcpdump (preferred) or dumpcap command that streams pcap to stdout."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump:
        # --immediate-mode and -U: hand over each packet at once, not a buffer full.
        return [tcpdump, "-i", iface, "--immediate-mode", "-U", "-n", "-s", "0", "-w", "-",
                bpf_filter(ports)]
    dumpcap = shutil.which("dumpcap")
    if dumpcap:
        return [dumpcap, "-i", iface, "-q", "-P", "-s", "0", "-w", "-", "-f", bpf_filter(ports)]
    raise MissingDependencyError("iface: capture needs tcpdump or dumpcap, and neither is on "
                                 "PATH: apt-get install tcpdump (or pipe a capture into "
                                 "`mqttids detect -`)")


class OpenSource:
    """An opened source: an unbuffered binary ``stream``, and the capture program if any.

    ``close()`` stops the program (SIGTERM, then SIGKILL after a grace period)
    and closes what it opened; it is safe to call twice.
    """

    def __init__(self, spec: SourceSpec, ports: tuple[int, ...], stdin: BinaryIO | None = None):
        self.spec = spec
        self.process: subprocess.Popen | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=5)
        self._owned = True
        if spec.kind == "file":
            self.stream: BinaryIO = open(spec.value, "rb", buffering=0)
        elif spec.kind == "stdin":
            fd = (stdin or sys.stdin.buffer).fileno()
            self.stream = open(fd, "rb", buffering=0, closefd=False)
        else:
            self._start_capture(capture_command(spec.value, ports))

    def _start_capture(self, cmd: list[str]) -> None:
        log.info("starting %s", " ".join(cmd))
        try:
            self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            bufsize=0, start_new_session=True)
        except OSError as exc:
            raise CaptureProgramError(f"cannot start {cmd[0]}: {exc}; check that it is "
                                      "installed and executable") from None
        self.stream = self.process.stdout
        threading.Thread(target=self._drain_stderr, name="mqttids-capture-stderr",
                         daemon=True).start()

    def _drain_stderr(self) -> None:
        for raw in iter(self.process.stderr.readline, b""):
            line = raw.decode(errors="replace").strip()
            if line:
                self._stderr_tail.append(line)
                log.info("%s: %s", Path(self.process.args[0]).name, line)

    def check_program(self) -> None:
        """Raise when the capture program ended in failure (a bad interface, no rights)."""
        proc = self.process
        if proc is None:
            return
        try:
            proc.wait(timeout=2)  # its output ended, so it is ending too
        except subprocess.TimeoutExpired:
            return
        if proc.returncode <= 0:
            return
        detail = "; ".join(self._stderr_tail) or "no message"
        raise CaptureProgramError(f"{Path(proc.args[0]).name} on {self.spec.value!r} exited "
                                  f"with status {proc.returncode} ({detail}); check the "
                                  "interface name (ip link) and the capture rights (root or "
                                  "CAP_NET_RAW)")

    def stop_program(self) -> None:
        """Ask the capture program to end; it flushes, closes the pipe, the reader sees EOF."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        if self.process is not None:
            self.stop_program()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._owned:
            self._owned = False
            try:
                self.stream.close()
            except OSError:
                pass

    def __enter__(self) -> OpenSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BoundedQueue(queue.Queue):
    """A bounded queue whose ``put`` gives up once ``stop_event`` is set.

    A reader thread that waits for a slow consumer must still end when the
    detector stops, or it would hold the process open.
    """

    def __init__(self, depth: int):
        super().__init__(maxsize=depth)
        self.stop_event = threading.Event()

    def put(self, item, block: bool = True, timeout: float | None = None) -> bool:
        while not self.stop_event.is_set():
            try:
                super().put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


class _FlushBeforeRead:
    """A stream wrapper that hands over pending frames before a read that may block."""

    def __init__(self, stream: BinaryIO, flush):
        self._stream = stream
        self._flush = flush
        self.name = getattr(stream, "name", "-")

    def read(self, n: int = -1) -> bytes:
        self._flush()
        return self._stream.read(n)


class FrameReader(threading.Thread):
    """Reads frames in a thread; queues lists of frames, then END (or the exception).

    A list is handed over when it holds ``chunk_frames`` frames or when the
    reader is about to wait for input, so a frame never waits in the reader for
    a later one. The queue is bounded: a detector slower than its input makes
    the reader wait, and a live capture then drops in the kernel, never here.
    """

    def __init__(self, stream: BinaryIO, name: str, chunk_frames: int = 1024,
                 depth: int = 16, warnings: list[str] | None = None):
        super().__init__(name="mqttids-detect-frames", daemon=True)
        self.queue = BoundedQueue(depth)
        self.warnings = warnings if warnings is not None else []
        self._stream = stream
        self._source_name = name
        self._chunk = chunk_frames
        self._pending: list = []

    def _flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.queue.put(batch)

    def run(self) -> None:
        stream = _FlushBeforeRead(self._stream, self._flush)
        stopped = self.queue.stop_event
        try:
            chunk = self._chunk
            for frame in read_frames(stream, self._source_name, self.warnings):
                pending = self._pending
                pending.append(frame)
                if len(pending) >= chunk:
                    self._flush()
                    if stopped.is_set():
                        return
            self._flush()
            self.queue.put(END)
        except BaseException as exc:  # handed to the scoring thread, raised there
            self.queue.put(exc)

    def stop(self) -> None:
        self.queue.stop_event.set()


_PCAP_RECORD = {"<": struct.Struct("<I"), ">": struct.Struct(">I")}
_BOMS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_IDB = 1


class ChunkReader(threading.Thread):
    """Reads raw capture bytes in a thread; queues (header, data, aligned), then END.

    Each chunk is what the stream had ready (up to 1 MiB), so a quiet network's
    packets are never held back waiting for more. ``data`` ends at a record
    boundary while the framing looks sound (``aligned``), so a fresh decoder
    can take over after any chunk; ``header`` is what such a decoder must read
    first (the pcap file header, or the pcapng section header and its
    interface blocks so far). Once the framing looks corrupt, bytes pass on
    unaligned and the decoder reports the damage as ``extract`` would.
    """

    def __init__(self, stream: BinaryIO, name: str, depth: int = 16):
        super().__init__(name="mqttids-detect-chunks", daemon=True)
        self.queue = BoundedQueue(depth)
        self._stream = stream
        self._name = name
        self._buf = b""
        self._header = b""
        self._endian = "<"
        self._aligned = True
        self._pcapng = False

    def stop(self) -> None:
        self.queue.stop_event.set()

    def run(self) -> None:
        try:
            if self._start():
                while not self.queue.stop_event.is_set():
                    chunk = self._stream.read(pcap.CHUNK)
                    if not chunk:
                        break
                    self._buf += chunk
                    cut = self._scan()
                    if cut:
                        data, self._buf = self._buf[:cut], self._buf[cut:]
                        self.queue.put((self._header, data, self._aligned))
                if self._buf:
                    self.queue.put((self._header, self._buf, False))
            self.queue.put(END)
        except BaseException as exc:  # handed to the scoring thread, raised there
            self.queue.put(exc)

    def _start(self) -> bool:
        """Read the magic number (and a pcap file header); False if the reader must stop."""
        head = pcap._read_exactly(self._stream, 4)
        if head in pcap.PCAP_MAGICS:
            self._endian = pcap.PCAP_MAGICS[head][0]
            self._header = head + pcap._read_exactly(self._stream, 20)
            self._aligned = len(self._header) == 24
            self.queue.put((self._header, self._header, self._aligned))
            return True
        if head == pcap.PCAPNG_SHB:
            self._pcapng = True
            self._buf = head
            return True
        # Not a capture: the reference reader raises its NotACaptureError with the details.
        next(read_frames(io.BytesIO(head + self._stream.read(60)), self._name))
        return False

    def _scan(self) -> int:
        """How many bytes of the buffer end at a record boundary (all, once unaligned)."""
        if not self._aligned:
            return len(self._buf)
        return self._scan_pcapng() if self._pcapng else self._scan_pcap()

    def _scan_pcap(self) -> int:
        buf, n, pos = self._buf, len(self._buf), 0
        unpack = _PCAP_RECORD[self._endian].unpack_from
        while pos + 16 <= n:
            incl = unpack(buf, pos + 8)[0]
            if incl > pcap.MAX_FRAME:
                self._aligned = False
                return n
            if pos + 16 + incl > n:
                break
            pos += 16 + incl
        return pos

    def _scan_pcapng(self) -> int:
        buf, n, pos = self._buf, len(self._buf), 0
        while pos + 12 <= n:
            is_shb = buf[pos:pos + 4] == pcap.PCAPNG_SHB
            if is_shb:
                self._endian = _BOMS.get(buf[pos + 8:pos + 12], "")
            btype, blen = struct.unpack_from(self._endian + "II", buf, pos) if self._endian \
                else (0, 0)
            if blen < 12 or blen % 4 or blen > pcap.MAX_FRAME:
                self._aligned = False
                return n
            if pos + blen > n:
                break
            if is_shb:
                self._header = buf[pos:pos + blen]
            elif btype == _IDB:
                self._header += buf[pos:pos + blen]
            pos += blen
        return pos
