"""``mqttids lab record``: real broker, real clients, real attacks, captured per class.

The recorder starts its own Mosquitto on a free port of 127.0.0.1 (a config
and password file in a temporary folder), and for each class starts tcpdump
(or dumpcap) on ``lo`` filtered to that port, runs the class's driver from
:mod:`mqttids.lab.live` for ``seconds``, and stops the capture: one labelled
pcap per class. Everything it started is stopped on the way out, also on an
error, Ctrl-C or SIGTERM. Rows come from the capture decoder, as for
synthetic traffic.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import pwd
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mqttids.errors import MissingDependencyError, UsageError
from mqttids.lab import home, live
from mqttids.lab.errors import BrokerError, CaptureRightsError, CaptureToolError, RecordError
from mqttids.lab.synth import (DEFAULT_SEED, check_request, class_rng, write_class_rows,
                               write_summary)

log = logging.getLogger(__name__)

DEFAULT_SECONDS = 10.0
MAX_SECONDS = 3600.0
LOOPBACK = "127.0.0.1"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
_QUIET = 0.3  # seconds without a new frame that end a class's capture
_QUIET_LIMIT = 5.0  # longest wait for the last segments of a class


def find_capture_tool() -> tuple[str, str]:
    """("tcpdump"|"dumpcap", path); tcpdump first, as it writes pcap directly."""
    for name in ("tcpdump", "dumpcap"):
        path = shutil.which(name) or (f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}",
                                                                       os.X_OK) else None)
        if path:
            return name, path
    raise CaptureToolError("lab record needs tcpdump or dumpcap to capture, and neither is "
                           "installed: apt-get install tcpdump")


def capture_command(tool: str, path: str, port: int, out: Path) -> list[str]:
    """The capture command line: loopback, only our broker's port, pcap format."""
    bpf = f"tcp port {port} and host {LOOPBACK}"
    if tool == "tcpdump":
        return [path, "-i", "lo", "-U", "-s", "0", "-w", str(out), bpf]
    return [path, "-i", "lo", "-f", bpf, "-P", "-w", str(out)]


def is_rights_problem(stderr: str) -> bool:
    """True when a capture tool's error says it may not capture (not root, no capability)."""
    text = stderr.lower()
    return any(s in text for s in ("permission", "not permitted", "operation not allowed",
                                   "you don't have"))


def password_line(user: str, password: str, salt: bytes) -> str:
    """A Mosquitto password-file line (``$6$``: SHA-512 over password then salt)."""
    digest = hashlib.sha512(password.encode() + salt).digest()
    return (f"{user}:$6${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}\n")


def broker_config(port: int, passwd: Path) -> str:
    """Mosquitto settings of the lab broker: loopback only, anonymous allowed, one user."""
    return "\n".join((
        f"listener {port} {LOOPBACK}",
        "allow_anonymous true",
        f"password_file {passwd}",
        "persistence false",
        "max_keepalive 65535",
        "log_dest stderr",
        "log_type error", "log_type warning", "log_type notice", "log_type information",
        "connection_messages true",
        "",
    ))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _give_to_broker_user(paths: list[Path]) -> None:
    """Run as root, Mosquitto drops to user ``mosquitto``: let it read its files."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


class Broker:
    """A Mosquitto process of our own, stopped on exit."""

    def __init__(self, program: str, workdir: Path, log_path: Path):
        self.program = program
        self.workdir = workdir
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._log = None

    def __enter__(self) -> Broker:
        passwd = self.workdir / "passwd"
        passwd.write_text(password_line(home.LEGIT_USER, home.LEGIT_PASSWORD,
                                        os.urandom(12)))
        os.chmod(passwd, 0o600)
        conf = self.workdir / "mosquitto.conf"
        self.port = free_port()
        conf.write_text(broker_config(self.port, passwd))
        os.chmod(conf, 0o644)
        os.chmod(self.workdir, 0o755)
        _give_to_broker_user([passwd, conf])
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.program, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        log.info("mosquitto (pid %d) listening on %s:%d", self.proc.pid, LOOPBACK, self.port)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited at start (code {self.proc.returncode}): "
                                  f"{_tail(self.log_path)}")
            with socket.socket() as sock:
                sock.settimeout(0.2)
                if sock.connect_ex((LOOPBACK, self.port)) == 0:
                    return
            time.sleep(0.05)
        raise BrokerError(f"mosquitto did not listen on {LOOPBACK}:{self.port} within "
                          f"{_START_TIMEOUT:.0f} s: {_tail(self.log_path)}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            _stop(self.proc, signal.SIGTERM)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


class Capture:
    """tcpdump or dumpcap on ``lo`` for one class, stopped (and flushed) on exit."""

    def __init__(self, tool: tuple[str, str], port: int, out: Path):
        self.tool = tool
        self.port = port
        self.out = out
        self.proc: subprocess.Popen | None = None
        self._stderr: list[str] = []

    def __enter__(self) -> Capture:
        name, path = self.tool
        self.proc = subprocess.Popen(capture_command(name, path, self.port, self.out),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        ready = threading.Event()
        reader = threading.Thread(target=self._read_stderr, args=(ready,), daemon=True)
        reader.start()
        try:
            self._wait_ready(ready)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _read_stderr(self, ready: threading.Event) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip())
            if "listening on" in line or "Capturing on" in line:
                ready.set()
        ready.set()

    def _wait_ready(self, ready: threading.Event) -> None:
        name = self.tool[0]
        if not ready.wait(_START_TIMEOUT):
            log.warning("%s gave no start-up line in %.0f s; recording anyway", name,
                        _START_TIMEOUT)
            return
        time.sleep(0.1)
        if self.proc.poll() is not None:
            message = " ".join(self._stderr)[-400:]
            if is_rights_problem(message):
                raise CaptureRightsError(
                    f"{name} may not capture on lo: {message.strip()}; run as root or give "
                    f"{name} capture rights (setcap cap_net_raw,cap_net_admin=eip "
                    f"{self.tool[1]})")
            raise RecordError(f"{name} stopped at start (code {self.proc.returncode}): "
                              f"{message}")

    def stop(self) -> None:
        """Stop capturing (SIGINT, so the file is complete); safe to call twice."""
        if self.proc is not None:
            _stop(self.proc, signal.SIGINT)
            self.proc = None
        if self.out.exists() and os.geteuid() == 0:
            os.chown(self.out, os.getuid(), os.getgid())

    def __exit__(self, *exc) -> None:
        self.stop()


def _wait_quiet(pcap: Path, limit: float = _QUIET_LIMIT) -> None:
    """Wait until the capture has seen nothing new for a moment: the class's last FINs."""
    deadline = time.monotonic() + limit
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_size = pcap.stat().st_size if pcap.exists() else 0
        if now_size != size:
            size, since = now_size, time.monotonic()
        elif time.monotonic() - since >= _QUIET:
            return
        time.sleep(0.05)
    log.info("%s still growing after %.1f s; stopping its capture", pcap.name, limit)


def _stop(proc: subprocess.Popen, sig: int) -> None:
    """Ask a child to stop, then insist."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(_STOP_TIMEOUT)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _tail(path: Path, chars: int = 300) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "(no log)"
    return " | ".join(text[-chars:].splitlines()) or "(empty log)"


def count_frames(path: Path) -> int:
    """Frames in a classic pcap file (what tcpdump and ``dumpcap -P`` write)."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return 0
        order = "<" if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        rec = struct.Struct(order + "IIII")
        frames = 0
        while True:
            hdr = f.read(16)
            if len(hdr) < 16:
                return frames
            f.seek(rec.unpack(hdr)[2], os.SEEK_CUR)
            frames += 1


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a recording like Ctrl-C does, so the cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_classes(classes: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The classes to record, in the given order, each once; none given means all."""
    if not classes:
        return home.CLASSES
    unknown = [c for c in classes if c not in home.CLASSES]
    if unknown:
        raise UsageError(f"unknown class {unknown[0]!r}: the classes are "
                         f"{', '.join(home.CLASSES)}")
    return tuple(dict.fromkeys(classes))


def record_scenario(out_dir: str | Path, seconds: float = DEFAULT_SECONDS,
                    seed: int = DEFAULT_SEED, classes: list[str] | None = None,
                    rows: bool = True, progress: Callable[[int], None] | None = None) -> dict:
    """Record ``DIR/CLASS.pcap`` (and rows) for each class, ``seconds`` of traffic each.

    Each class's driver draws from the same random stream as ``lab synth``
    with the same seed, so both start with the same attack settings. Returns
    the summary ``--json`` prints (also written to ``DIR/summary.json``): the
    broker port (needed to decode the pcaps again: ``--port``), and per class
    the pcap, frames and rows.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
            0 < seconds <= MAX_SECONDS):
        raise UsageError(f"--seconds {seconds!r} is not a number of seconds in (0, "
                         f"{MAX_SECONDS:.0f}]")
    kinds = check_classes(classes)
    out = check_request(out_dir, 1, seed)
    tool = find_capture_tool()
    mosquitto = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access(
        "/usr/sbin/mosquitto", os.X_OK) else None)
    if mosquitto is None:
        raise MissingDependencyError("lab record needs the mosquitto broker: "
                                     "apt-get install mosquitto")
    if "legitimate" in kinds:
        live.require_paho()
    started = time.perf_counter()
    results: dict[str, dict] = {}
    with _sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="mqttids-lab-") as tmp:
        with Capture(tool, free_port(), Path(tmp) / "probe.pcap"):
            pass  # capture rights are checked before anything else starts
        with Broker(mosquitto, Path(tmp), out / "broker.log") as broker:
            for kind in kinds:
                results[kind] = _record_class(kind, tool, broker.port, out, seconds,
                                              class_rng(seed, kind))
                if progress is not None:
                    progress(1)
    if rows:
        for kind in kinds:
            results[kind].update(write_class_rows(kind, out / f"{kind}.pcap",
                                                  out / f"{kind}.parquet", ports=(broker.port,)))
    summary = {"output": str(out), "port": broker.port, "seed": seed,
               "seconds_per_class": seconds, "capture_tool": tool[0],
               "seconds": round(time.perf_counter() - started, 3),
               "packets": sum(r["packets"] for r in results.values()), "classes": results}
    write_summary(out, summary)
    return summary


def _record_class(kind: str, tool: tuple[str, str], port: int, out: Path, seconds: float,
                  rng: random.Random) -> dict:
    pcap = out / f"{kind}.pcap"
    log.info("recording %s for %.1f s into %s", kind, seconds, pcap)
    ctx = live.LiveContext(LOOPBACK, port, time.monotonic() + seconds, rng)
    with Capture(tool, port, pcap) as capture:
        ctx.before_stop = capture.stop
        try:
            ctx.deadline = time.monotonic() + seconds
            live.drive(kind, ctx)
        finally:
            ctx.stop.set()
        _wait_quiet(pcap)
    return {"pcap": str(pcap), "packets": count_frames(pcap), "bytes": pcap.stat().st_size}
