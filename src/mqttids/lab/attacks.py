"""The five attacks as discrete-event actors (synthetic traffic).

Each follows the mechanics of the tool MQTTset used or of its kind:

- dos: MQTT-Malaria. Waves of clients connect at once and each publishes
  thousands of QoS 1 (sometimes 0) messages as fast as the broker acks them,
  several per TCP segment, to ``mqtt-malaria/<client>/data/<n>/<count>``.
- flood: one client pushes bursts of QoS 0 PUBLISH: thousands of small
  messages packed into full segments, or huge messages spanning dozens of
  segments; the broker only ACKs.
- slowite: SlowITe. Hundreds of connections opened in a burst, each CONNECT
  sent in two parts with keep-alive 65535, then held open silently until the
  attacker stops.
- malformed: a fuzzer. Every attempt a fresh connection, usually a valid
  CONNECT, then one broken packet from :mod:`mqttids.lab.fuzz`; the broker
  hangs up (MQTT 5: DISCONNECT 0x81/0x82 first).
- bruteforce: CONNECTs that guess user names and passwords from a wordlist,
  a few in parallel, each refused with CONNACK 5 (MQTT 5: 0x86 for a known
  user with a wrong password, 0x87 otherwise) and closed.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

from mqttids.lab import codec as mq
from mqttids.lab import fuzz, home
from mqttids.lab import templates as tpl
from mqttids.lab.sim import Net, Sim, close_by_broker, close_by_client, handshake, jitter
from mqttids.lab.wire import MSS, Conn, Host, payload_sum

_U16 = struct.Struct(">H")


def _attacker(kind: str, index: int = 0) -> Host:
    hosts = home.ATTACKER_HOSTS[kind]
    host = hosts[index % len(hosts)]
    return Host(home.home_ip(host), home.home_mac(host, "f4:8c:50"), f"{kind}-{host}")


def _open_session(sim: Sim, conn: Conn, packet: bytes, rtt: float,
                  reply: bytes | None = None) -> Iterator[float]:
    """Handshake, CONNECT, CONNACK (accepted unless ``reply`` says otherwise), ACK."""
    rng = sim.rng
    yield from handshake(conn, rtt, rng)
    yield jitter(rng, 0.0004)
    conn.c.send(packet)
    yield jitter(rng, 150e-6, 0.6)
    conn.s.send(reply if reply is not None else home.connack_accepted(mq.V311))
    yield jitter(rng, rtt)
    conn.c.ack()


# -- dos --------------------------------------------------------------------------


# Messages per segment of a Malaria client: mostly one to four, now and then a full segment.
_MALARIA_BATCH = (1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6, 8, 12, 40)


def malaria_segments(rng: random.Random, cid: str, count: int, qos: int,
                     payloads: list[bytes]) -> Iterator[tuple[bytes, list[int]]]:
    """The PUBLISH batches of one MQTT-Malaria client: (bytes of one segment, packet ids).

    Shared by the synthetic actor and the live driver, so both send the same
    topics, sizes and batching.
    """
    prefix = f"mqtt-malaria/{cid}/data/".encode()
    suffix = f"/{count}".encode()
    size = len(payloads[0])
    # The fixed header and topic length depend only on how many digits n has.
    heads = [b""] + [bytes((0x30 | qos << 1,)) + mq.varint(
        2 + len(prefix) + d + len(suffix) + (2 if qos else 0) + size) + _U16.pack(
        len(prefix) + d + len(suffix)) for d in range(1, 7)]
    per_segment = max(1, (MSS - 100) // (len(heads[5]) + len(prefix) + 5 + len(suffix) + size))
    n, mid, pack, pool = 0, 0, _U16.pack, len(payloads)
    while n < count:
        batch = min(_MALARIA_BATCH[int(rng.random() * len(_MALARIA_BATCH))], per_segment,
                    count - n)
        parts, ids = [], []
        for _ in range(batch):
            n += 1
            digits = b"%d" % n
            parts.append(heads[len(digits)])
            parts.append(prefix + digits + suffix)
            if qos:
                mid = mid % 65535 + 1
                ids.append(mid)
                parts.append(pack(mid))
            parts.append(payloads[n % pool])
        yield b"".join(parts), ids


def malaria_wave(rng: random.Random) -> tuple[int, int, int, list[bytes]]:
    """One Malaria run's settings: clients, messages each, QoS, payloads."""
    clients = rng.randint(8, 40)
    count = rng.choice((500, 1000, 5000, 10000))
    qos = 1 if rng.random() < 0.75 else 0
    size = rng.choice((32, 100, 100, 256, 512))
    payloads = [bytes(rng.choice(b"0123456789abcdefABCDEF") for _ in range(size))
                for _ in range(16)]
    return clients, count, qos, payloads


def _malaria_client(sim: Sim, net: Net, host: Host, cid: str, count: int, qos: int,
                    payloads: list[bytes], done: list[int]) -> Iterator[float]:
    rng = sim.rng
    conn = net.open(host)
    rtt = jitter(rng, 0.0006)
    yield from _open_session(sim, conn, mq.connect(cid, keepalive=60), rtt)
    for data, ids in malaria_segments(rng, cid, count, qos, payloads):
        conn.c.send(data)
        if qos:
            yield jitter(rng, 200e-6, 0.7)
            conn.s.send(struct.pack(f">{len(ids)}I", *[0x40020000 | i for i in ids]))
            yield jitter(rng, 250e-6, 0.8)
        else:
            yield jitter(rng, 120e-6, 0.7)
            if rng.random() < 0.5:
                conn.s.ack()
                yield jitter(rng, 60e-6, 0.5)
    conn.c.send(mq.disconnect())
    conn.up = False
    yield jitter(rng, 100e-6)
    yield from close_by_client(conn, rtt, rng)
    done[0] += 1


def dos(sim: Sim, net: Net, scale: float = 1.0) -> Iterator[float]:
    """Waves of MQTT-Malaria clients, one wave after the other."""
    rng = sim.rng
    wave = 0
    yield rng.uniform(0.0, 1.0) * scale
    while True:
        wave += 1
        clients, count, qos, payloads = malaria_wave(rng)
        done = [0]
        pid = rng.randint(1000, 65000)
        for i in range(clients):
            host = _attacker("dos", i % 3 if wave % 2 else 0)
            cid = f"beem.loadr-attacker{host.ip[3]}.lan-{pid}-{i}"
            sim.spawn(_malaria_client(sim, net, host, cid, count, qos, payloads, done),
                      rng.uniform(0.0, 0.01))
        while done[0] < clients:
            yield 0.25 * scale
        yield rng.uniform(1.0, 10.0) * scale


# -- flood ------------------------------------------------------------------------


def flood_burst(rng: random.Random, version: int, templates: tpl.PublishTemplates,
                small: bool = False) -> bytes:
    """One burst: many small QoS 0 messages (always when ``small``), or a few very large ones."""
    if small or rng.random() < 0.7:
        topic = rng.choice(("home/kitchen/door", "home/livingroom/temperature", "flood",
                            "home/kitchen/fan/set"))
        payload = bytes(rng.choice(b"0123456789") for _ in range(rng.randint(1, 48)))
        pkt, _ = templates.publish(topic, payload, 0, False, version)
        return pkt * rng.randint(200, 4000)
    size = rng.choice((16_384, 65_536, 131_072, 262_144))
    block = bytes(rng.getrandbits(8) for _ in range(256)) * (size // 256)
    return b"".join(mq.publish(f"flood/{rng.getrandbits(16):04x}", block, version=version)
                    for _ in range(rng.randint(1, 4)))


def _flood_client(sim: Sim, net: Net, plan: random.Random, scale: float) -> Iterator[float]:
    """``plan`` draws what the attacker decides (versions, bursts, pauses), ``sim.rng`` the
    network's timing, so the live driver with the same plan sends the same bursts."""
    rng = sim.rng
    templates = tpl.PublishTemplates(limit=64)
    host = _attacker("flood")
    while True:
        version = mq.V5 if plan.random() < 0.3 else mq.V311
        cid = f"flooder-{plan.getrandbits(32):08x}"
        conn = net.open(host)
        rtt = jitter(rng, 0.0005)
        yield from _open_session(sim, conn, mq.connect(cid, version=version, keepalive=60), rtt,
                                 home.connack_accepted(version))
        for burst in range(plan.randint(3, 30)):
            yield plan.uniform(0.2, 3.0) * scale
            data = flood_burst(plan, version, templates, small=burst == 0)
            segments = 0
            for start in range(0, len(data), MSS):
                chunk = data[start:start + MSS]
                conn.c.send(chunk, payload_sum(chunk))
                segments += 1
                yield jitter(rng, 15e-6, 0.5)
                if segments % 2 == 0:
                    conn.s.ack()
                    yield jitter(rng, 10e-6, 0.5)
            yield jitter(rng, 0.0002)
            conn.s.ack()
        conn.c.send(mq.disconnect(version=version))
        conn.up = False
        yield jitter(rng, 100e-6)
        yield from close_by_client(conn, rtt, rng)
        yield plan.uniform(2.0, 30.0) * scale


def flood(sim: Sim, net: Net, scale: float = 1.0) -> Iterator[float]:
    """One flooding client, reconnecting between series of bursts."""
    yield sim.rng.uniform(0.0, 1.0) * scale
    plan = random.Random(sim.rng.getrandbits(64))
    yield from _flood_client(sim, net, plan, scale)


# -- slowite ----------------------------------------------------------------------


def _slowite_conn(sim: Sim, net: Net, host: Host, cid: str, version: int,
                  wave_end: list[float]) -> Iterator[float]:
    rng = sim.rng
    conn = net.open(host)
    rtt = jitter(rng, 0.0007)
    yield from handshake(conn, rtt, rng)
    yield jitter(rng, 0.045, 0.5)
    packet = mq.connect(cid, version=version, keepalive=home.SLOWITE_KEEPALIVE)
    conn.c.send(packet[:-1])
    yield jitter(rng, 20e-6)
    conn.s.ack()
    yield jitter(rng, 0.0004)
    conn.c.send(packet[-1:])
    yield jitter(rng, 10e-6)
    conn.s.ack()
    yield jitter(rng, 70e-6)
    conn.s.send(home.connack_accepted(version))
    yield jitter(rng, 0.0004)
    conn.c.ack()
    yield max(0.0, wave_end[0] - sim.now) + rng.uniform(0.0, 0.05)
    if rng.random() < 0.01:
        conn.c.rst()
        return
    yield from close_by_client(conn, rtt, rng)


def slowite_wave(rng: random.Random) -> tuple[int, int, float]:
    """One SlowITe run: connections to open, MQTT version, seconds to hold them."""
    count = rng.randint(200, 1024)
    version = mq.V5 if rng.random() < 0.2 else mq.V311
    hold = rng.uniform(30.0, 600.0)
    return count, version, hold


def slowite_client_id(index: int) -> str:
    """SlowITe's client ids, as in MQTTset: ``slowiteslowiteslo<n>``."""
    return f"{('slowite' * 3)[:17]}{index}"


def slowite(sim: Sim, net: Net, scale: float = 1.0) -> Iterator[float]:
    """Waves of slow connections, each held until the attacker gives up."""
    rng = sim.rng
    host = _attacker("slowite")
    yield rng.uniform(0.0, 1.0) * scale
    while True:
        count, version, hold = slowite_wave(rng)
        wave_end = [float("inf")]
        for i in range(count):
            sim.spawn(_slowite_conn(sim, net, host, slowite_client_id(i), version, wave_end),
                      i * jitter(rng, 0.0003) * scale)
        yield count * 0.0003 * scale + 0.1
        wave_end[0] = sim.now + hold * scale
        yield hold * scale + 1.0
        yield rng.uniform(5.0, 120.0) * scale


# -- malformed --------------------------------------------------------------------


def _malformed_attempt(sim: Sim, net: Net, host: Host) -> Iterator[float]:
    rng = sim.rng
    case = fuzz.draw(rng)
    conn = net.open(host)
    rtt = jitter(rng, 0.0005)
    v = case.version
    if case.connect_first:
        cid = f"fuzz-{rng.getrandbits(24):06x}"
        yield from _open_session(sim, conn, mq.connect(cid, version=v, keepalive=60), rtt,
                                 home.connack_accepted(v))
        if rng.random() < 0.3:
            yield from _subscribe_everything(sim, conn, v, rtt)
        yield jitter(rng, 0.001)
    else:
        yield from handshake(conn, rtt, rng)
        yield jitter(rng, 0.0004)
    conn.c.send(case.data)
    yield jitter(rng, 150e-6, 0.6)
    if case.answer:
        conn.s.send(case.answer)
        yield jitter(rng, 30e-6)
    conn.up = False
    if case.resets:
        conn.s.rst()
        return
    if case.closes:
        yield from close_by_broker(conn, rtt, rng)
        return
    conn.s.ack()
    yield jitter(rng, 0.05, 0.1)
    conn.c.send(mq.disconnect(version=v))
    yield jitter(rng, 100e-6)
    yield from close_by_client(conn, rtt, rng)


def _subscribe_everything(sim: Sim, conn: Conn, version: int, rtt: float) -> Iterator[float]:
    """SUBSCRIBE home/#: the broker answers with SUBACK and the home's retained messages."""
    rng = sim.rng
    yield jitter(rng, 0.002)
    conn.c.send(mq.subscribe(1, (("home/#", 0),), version=version))
    yield jitter(rng, 150e-6)
    conn.s.send(mq.suback(1, (0,), version=version))
    for topic, payload in home.retained_messages(rng):
        yield jitter(rng, 15e-6)
        conn.s.send(mq.publish(topic, payload, retain=True, version=version))
    yield jitter(rng, rtt)
    conn.c.ack()


def malformed(sim: Sim, net: Net, scale: float = 1.0) -> Iterator[float]:
    """A fuzzer with one to three workers, each trying case after case."""
    rng = sim.rng
    host = _attacker("malformed")
    yield rng.uniform(0.0, 1.0) * scale
    while True:
        workers = rng.randint(1, 3)
        attempts = rng.randint(50, 2000)
        pause = rng.choice((0.002, 0.01, 0.05, 0.3))
        for w in range(workers):
            sim.spawn(_fuzz_worker(sim, net, host, attempts // workers, pause * scale),
                      w * 0.001)
        yield attempts * pause * scale / workers + 1.0
        yield rng.uniform(5.0, 60.0) * scale


def _fuzz_worker(sim: Sim, net: Net, host: Host, attempts: int,
                 pause: float) -> Iterator[float]:
    for _ in range(attempts):
        yield from _malformed_attempt(sim, net, host)
        yield jitter(sim.rng, pause, 0.5)


# -- bruteforce -------------------------------------------------------------------


def _guess(sim: Sim, net: Net, host: Host, user: str, password: str,
           version: int, client_id: str) -> Iterator[float]:
    rng = sim.rng
    conn = net.open(host)
    rtt = jitter(rng, 0.0008)
    if version == mq.V5:
        code = mq.RC_BAD_CREDENTIALS_V5 if user == home.LEGIT_USER else mq.RC_NOT_AUTHORISED_V5
    else:
        code = mq.RC_NOT_AUTHORISED_V311
    packet = mq.connect(client_id, version=version, keepalive=60, username=user,
                        password=password)
    yield from _open_session(sim, conn, packet, rtt, mq.connack(code, version=version))
    conn.up = False
    if rng.random() < 0.2:
        yield jitter(rng, 0.0002)
        yield from close_by_client(conn, rtt, rng)
    else:
        yield jitter(rng, 50e-6)
        yield from close_by_broker(conn, rtt, rng)


def brute_client_id(rng: random.Random, ids: str, version: int) -> str:
    """The client id a guessing tool sends: empty (3.1.1 tools often do) or a random one."""
    if ids == "empty" and (version == mq.V5 or rng.random() < 0.5):
        return ""
    return f"{'mqtt-brute-' if ids == 'empty' else ids}{rng.getrandbits(32):08x}"


def _brute_worker(sim: Sim, net: Net, host: Host, guesses: list[tuple[str, str]],
                  version: int, pause: float, ids: str) -> Iterator[float]:
    rng = sim.rng
    for user, password in guesses:
        client_id = brute_client_id(rng, ids, version)
        yield from _guess(sim, net, host, user, password, version, client_id)
        yield jitter(rng, pause, 0.6)


def brute_run(rng: random.Random) -> tuple[list[str], int, int, float, str]:
    """One run of the guessing tool: users to try, workers, MQTT version, pause, client ids."""
    users = rng.sample(home.BRUTE_USERS, rng.randint(1, 4))
    workers = rng.choice((1, 1, 2, 4))
    version = mq.V5 if rng.random() < 0.3 else mq.V311
    pause = rng.choice((0.005, 0.05, 0.2, 1.0))
    ids = rng.choice(("empty", "paho", "brute-"))
    return users, workers, version, pause, ids


def bruteforce(sim: Sim, net: Net, scale: float = 1.0) -> Iterator[float]:
    """Runs of a password-guessing tool: users x wordlist, split over a few workers."""
    rng = sim.rng
    yield rng.uniform(0.0, 1.0) * scale
    run = 0
    while True:
        run += 1
        host = _attacker("bruteforce", run)
        users, workers, version, pause, ids = brute_run(rng)
        guesses = [(u, p) for u in users for p in home.BRUTE_PASSWORDS]
        for w in range(workers):
            sim.spawn(_brute_worker(sim, net, host, guesses[w::workers], version,
                                    pause * scale, ids), w * 0.003)
        yield len(guesses) / workers * (pause * scale + 0.005) + 1.0
        yield rng.uniform(10.0, 300.0) * scale


ATTACKS = {"dos": dos, "flood": flood, "slowite": slowite, "malformed": malformed,
           "bruteforce": bruteforce}


def start(kind: str, sim: Sim, net: Net, scale: float = 1.0) -> None:
    """Start the actors of attack ``kind`` on ``sim``."""
    sim.spawn(ATTACKS[kind](sim, net, scale))

