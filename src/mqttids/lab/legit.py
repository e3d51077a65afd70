"""The legitimate smart home as discrete-event actors (synthetic traffic).

A small broker model routes each PUBLISH to the subscribers whose filters
match, keeps retained messages and delivers them on SUBSCRIBE, queues QoS 1/2
messages for the controller's persistent session, and publishes a sensor's
will when it falls silent for 1.5 keep-alives. Every client runs the QoS flow
its messages ask for: nothing for 0, PUBACK for 1, PUBREC/PUBREL/PUBCOMP for 2.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from mqttids.lab import codec as mq
from mqttids.lab import home
from mqttids.lab import templates as tpl
from mqttids.lab.sim import (Net, Sim, close_by_client, delayed_ack_time, handshake,
                             jitter)
from mqttids.lab.wire import Conn, Host

_QUEUE_LIMIT = 100  # messages kept for an offline persistent session
_PING = (mq.pingreq(), mq.pingresp())


class Session:
    """A client's MQTT state at the broker and on the device."""

    __slots__ = ("name", "client_id", "host", "version", "keepalive", "rtt", "clean",
                 "subs", "conn", "online", "mid", "last_out", "queue", "known", "creds")

    def __init__(self, name: str, client_id: str, host: Host, version: int, keepalive: int,
                 rtt: float, clean: bool, subs: tuple[tuple[str, int], ...], creds: bool):
        self.name, self.client_id, self.host = name, client_id, host
        self.version, self.keepalive, self.rtt, self.clean = version, keepalive, rtt, clean
        self.subs, self.creds = subs, creds
        self.conn: Conn | None = None
        self.online = False
        self.mid = 0
        self.last_out = 0.0
        self.queue: list[tuple[str, bytes, int]] = []
        self.known = False  # the broker holds a session for it (session present)

    def next_mid(self) -> int:
        self.mid = self.mid % 65535 + 1
        return self.mid

    def alive(self, conn: Conn | None) -> bool:
        return conn is not None and conn.up


def topic_matches(filt: str, topic: str) -> bool:
    """MQTT filter matching with ``+`` (one level) and ``#`` (the rest)."""
    f_levels, t_levels = filt.split("/"), topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels) or (level != "+" and level != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


def _proc(rng: random.Random) -> float:
    """The broker's time to answer a message it has just read."""
    return jitter(rng, 120e-6, 0.6)


class Home:
    """The broker model and the actors of the legitimate class."""

    def __init__(self, sim: Sim, net: Net, scale: float = 1.0):
        self.sim, self.net, self.scale = sim, net, scale
        self.rng = sim.rng
        self.retained: dict[str, tuple[bytes, int]] = {}
        self.sessions: list[Session] = []
        self._routes: dict[str, list[tuple[Session, int]]] = {}
        self.templates = tpl.PublishTemplates()
        self.last_fan_command = -1e9

    # -- broker -----------------------------------------------------------------

    def _route_table(self, topic: str) -> list[tuple[Session, int]]:
        table = self._routes.get(topic)
        if table is None:
            table = []
            for sess in self.sessions:
                granted = [q for f, q in sess.subs if topic_matches(f, topic)]
                if granted:
                    table.append((sess, max(granted)))
            self._routes[topic] = table
        return table

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """What the broker does with a PUBLISH it accepted."""
        if retain:
            if payload:
                self.retained[topic] = (payload, qos)
            else:
                self.retained.pop(topic, None)
        for sess, granted in self._route_table(topic):
            q = min(qos, granted)
            if sess.online:
                self.sim.spawn(self.deliver(sess, topic, payload, q, False), _proc(self.rng))
            elif not sess.clean and q and len(sess.queue) < _QUEUE_LIMIT:
                sess.queue.append((topic, payload, q))
            if sess.name == "controller" and topic.endswith("/motion") and payload == b"1":
                self.sim.spawn(self.fan_command(), jitter(self.rng, 0.05 * max(self.scale, 0.2)))
            if sess.name == "fan" and topic == home.FAN_COMMAND_TOPIC and sess.online:
                self.sim.spawn(self.client_publish(sess, "home/kitchen/fan", payload, 0, True),
                               jitter(self.rng, 0.02))

    def subscribed(self, sess: Session) -> None:
        if sess not in self.sessions:
            self.sessions.append(sess)
        self._routes.clear()

    def deliver(self, sess: Session, topic: str, payload: bytes, qos: int,
                retain: bool) -> Iterator[float]:
        """Broker to subscriber, with the acknowledgements its QoS needs."""
        conn, rng = sess.conn, self.rng
        if conn is None or not conn.up:
            return
        mid = sess.next_mid() if qos else 0
        conn.s.send(*self.templates.publish(topic, payload, qos, retain, sess.version, mid))
        if qos == 0:
            yield delayed_ack_time(rng)
            if conn.up:
                conn.c.ack()
            return
        yield jitter(rng, sess.rtt)
        if not conn.up:
            return
        sess.last_out = self.sim.now
        if qos == 1:
            conn.c.send(*tpl.ack(mq.PUBACK, mid))
        else:
            conn.c.send(*tpl.ack(mq.PUBREC, mid))
            yield _proc(rng)
            if not conn.up:
                return
            conn.s.send(*tpl.ack(mq.PUBREL, mid))
            yield jitter(rng, sess.rtt)
            if not conn.up:
                return
            conn.c.send(*tpl.ack(mq.PUBCOMP, mid))
        yield delayed_ack_time(rng)
        if conn.up:
            conn.s.ack()

    # -- client moves ---------------------------------------------------------------

    def client_publish(self, sess: Session, topic: str, payload: bytes, qos: int,
                       retain: bool) -> Iterator[float]:
        """Client to broker, with the QoS flow; the broker routes it on arrival."""
        conn, rng = sess.conn, self.rng
        if conn is None or not conn.up:
            return
        mid = sess.next_mid() if qos else 0
        conn.c.send(*self.templates.publish(topic, payload, qos, retain, sess.version, mid))
        sess.last_out = self.sim.now
        self.publish(topic, payload, qos, retain)
        if qos == 0:
            yield delayed_ack_time(rng)
            if conn.up:
                conn.s.ack()
            return
        yield _proc(rng)
        if not conn.up:
            return
        if qos == 1:
            conn.s.send(*tpl.ack(mq.PUBACK, mid))
        else:
            conn.s.send(*tpl.ack(mq.PUBREC, mid))
            yield jitter(rng, sess.rtt)
            if not conn.up:
                return
            conn.c.send(*tpl.ack(mq.PUBREL, mid))
            sess.last_out = self.sim.now
            yield _proc(rng)
            if not conn.up:
                return
            conn.s.send(*tpl.ack(mq.PUBCOMP, mid))
        yield delayed_ack_time(rng)
        if conn.up:
            conn.c.ack()

    def request(self, sess: Session, packet: bytes, reply: bytes) -> Iterator[float]:
        """A client packet answered by the broker (CONNECT, SUBSCRIBE, PINGREQ...)."""
        conn, rng = sess.conn, self.rng
        if not sess.alive(conn):
            return
        conn.c.send(packet)
        sess.last_out = self.sim.now
        yield _proc(rng)
        if not sess.alive(conn):
            return
        conn.s.send(reply)
        yield delayed_ack_time(rng)
        if sess.alive(conn):
            conn.c.ack()

    def keepalive(self, sess: Session, conn: Conn) -> Iterator[float]:
        """PINGREQ whenever the client has sent nothing for a keep-alive period."""
        period = home.scaled_keepalive(sess.keepalive, self.scale)
        while sess.alive(conn):
            due = sess.last_out + period
            if due > self.sim.now:
                yield due - self.sim.now
                continue
            yield from self.request(sess, *_PING)

    def connect(self, sess: Session, will: tuple[str, bytes, int, bool] | None,
                props: tuple = ()) -> Iterator[float]:
        """TCP handshake, CONNECT/CONNACK, SUBSCRIBE/SUBACK and any queued messages."""
        rng = self.rng
        conn = self.net.open(sess.host)
        sess.conn = conn
        yield from handshake(conn, sess.rtt, rng)
        yield jitter(rng, 0.002)
        present = sess.known and not sess.clean
        creds = ({"username": home.LEGIT_USER, "password": home.LEGIT_PASSWORD}
                 if sess.creds else {})
        keepalive = home.scaled_keepalive(sess.keepalive, self.scale)
        packet = mq.connect(sess.client_id, version=sess.version, keepalive=keepalive,
                            clean=sess.clean, will=will, props=props, **creds)
        reply = home.connack_accepted(sess.version, present)
        yield from self.request(sess, packet, reply)
        sess.online, sess.known = True, True
        self.sim.spawn(self.keepalive(sess, conn), 0.0)
        if sess.subs:
            yield jitter(rng, 0.001)
            yield from self.subscribe(sess, sess.subs, present)
        for topic, payload, qos in sess.queue:
            self.sim.spawn(self.deliver(sess, topic, payload, qos, False), _proc(rng))
        sess.queue.clear()

    def subscribe(self, sess: Session, subs: tuple[tuple[str, int], ...],
                  present: bool = False) -> Iterator[float]:
        packet = mq.subscribe(sess.next_mid(), subs, version=sess.version)
        reply = mq.suback(sess.mid, tuple(q for _, q in subs), version=sess.version)
        sess.subs = subs
        self.subscribed(sess)
        yield from self.request(sess, packet, reply)
        if present:
            return
        for topic, (payload, qos) in sorted(self.retained.items()):
            granted = [q for f, q in subs if topic_matches(f, topic)]
            if granted:
                self.sim.spawn(self.deliver(sess, topic, payload, min(qos, max(granted)),
                                            True), _proc(self.rng))

    def disconnect(self, sess: Session, version: int) -> Iterator[float]:
        conn = sess.conn
        if not sess.alive(conn):
            return
        conn.c.send(mq.disconnect(version=version))
        conn.up = False
        sess.online = False
        yield jitter(self.rng, 150e-6)
        yield from close_by_client(conn, sess.rtt, self.rng)

    def power_loss(self, sess: Session, will: tuple[str, bytes, int, bool]) -> Iterator[float]:
        """The device dies: after 1.5 keep-alives the broker sends its will and hangs up."""
        conn = sess.conn
        sess.online = False
        if conn is not None:
            conn.up = False
        timeout = 1.5 * home.scaled_keepalive(sess.keepalive, self.scale)
        yield max(0.0, sess.last_out + timeout - self.sim.now)
        if conn is not None and conn.s.open:
            self.publish(will[0], will[1], will[2], will[3])
            conn.s.fin()
            conn.c.open = False

    # -- actors -----------------------------------------------------------------

    def sensor(self, spec: home.Sensor) -> Iterator[float]:
        rng, scale = self.rng, self.scale
        host = Host(home.home_ip(spec.host), home.home_mac(spec.host), spec.name)
        sess = Session(spec.name, f"{spec.room}-{spec.name}-{rng.getrandbits(24):06x}", host,
                       spec.version, spec.keepalive, jitter(rng, 0.004), True,
                       spec.subscriptions, spec.credentials)
        will = (spec.status_topic, b"offline", 1, True)
        props = home.V5_CONNECT_PROPS if spec.version == mq.V5 else ()
        yield rng.uniform(0.0, 5.0 * scale)
        while True:
            yield from self.connect(sess, will, props)
            yield jitter(rng, 0.003)
            yield from self.client_publish(sess, spec.status_topic, b"online", 1, True)
            end = self.sim.now + rng.expovariate(1.0 / (3 * 3600 * scale))
            while True:
                gap = (jitter(rng, spec.interval, 0.03) if spec.periodic
                       else rng.expovariate(1.0 / spec.interval)) * scale
                if self.sim.now + gap >= end:
                    break
                yield gap
                payload = spec.value(rng).encode()
                yield from self.client_publish(sess, spec.topic, payload, spec.qos, spec.retain)
            yield max(0.0, end - self.sim.now)
            if rng.random() < 0.8:
                yield from self.disconnect(sess, spec.version)
                offline = rng.expovariate(1.0 / (60 * scale))
            else:
                self.sim.spawn(self.power_loss(sess, will), 0.0)
                offline = 1.6 * home.scaled_keepalive(spec.keepalive, scale) + rng.expovariate(
                    1.0 / (600 * scale))
            yield offline

    def subscriber(self, spec: home.Subscriber) -> Iterator[float]:
        rng, scale = self.rng, self.scale
        host = Host(home.home_ip(spec.host), home.home_mac(spec.host, "3c:22:fb"), spec.name)
        persistent = spec.version == mq.V311
        sess = Session(spec.name, f"{spec.name}-{rng.getrandbits(32):08x}", host, spec.version,
                       spec.keepalive, jitter(rng, 0.002), not persistent, spec.subscriptions,
                       True)
        yield rng.uniform(0.0, 2.0 * scale)
        while True:
            yield from self.connect(sess, None,
                                    home.V5_CONNECT_PROPS if spec.version == mq.V5 else ())
            end = self.sim.now + rng.expovariate(1.0 / (spec.session_minutes * 60 * scale))
            if spec.version == mq.V5 and rng.random() < 0.3:
                yield rng.uniform(0.0, end - self.sim.now)
                yield from self.request(sess, mq.unsubscribe(sess.next_mid(), ("home/#",),
                                                             version=sess.version),
                                        mq.unsuback(sess.mid, version=sess.version))
                yield from self.subscribe(sess, (("home/kitchen/#", 1),))
            yield max(0.0, end - self.sim.now)
            yield from self.disconnect(sess, spec.version)
            sess.subs = spec.subscriptions
            yield rng.expovariate(1.0 / (300 * scale))

    def fan_command(self) -> Iterator[float]:
        """The controller turns the fan up when motion is seen (at most once a minute)."""
        ctl = next((s for s in self.sessions if s.name == "controller"), None)
        if ctl is None or not ctl.online or self.sim.now - self.last_fan_command < 60 * self.scale:
            return
        self.last_fan_command = self.sim.now
        yield from self.client_publish(ctl, home.FAN_COMMAND_TOPIC, b"3", 1, False)

    def start(self) -> None:
        for spec in home.SENSORS:
            self.sim.spawn(self.sensor(spec))
        for sub in home.SUBSCRIBERS:
            self.sim.spawn(self.subscriber(sub))


def legitimate(sim: Sim, net: Net, scale: float = 1.0) -> None:
    """Start the smart home's actors on ``sim``."""
    Home(sim, net, scale).start()
