"""A discrete-event clock for the synthetic traffic, and the TCP moves every actor shares.

Every client, broker reaction and attack is a generator (an *actor*) that
writes zero or more segments at the current time and then yields how many
seconds pass before its next step. One heap orders all actors of a class by
time, so the pcap comes out in time order however many connections overlap,
and memory stays bounded by the number of live actors, not by the number of
packets written. The clock is virtual: a scenario of a simulated day runs as
fast as its packets can be written.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Generator, Iterator

from mqttids.lab.wire import ACK, BudgetReached, Conn, Host, PcapSink

Actor = Generator[float, None, None]

# Steps without a new packet before the scheduler gives up: a guard against a
# scenario bug that would otherwise spin for ever.
_STALL_STEPS = 1 << 22


class ScenarioStalledError(RuntimeError):
    """A scenario stopped writing packets while actors were still running."""


class Sim:
    """The clock, the random source and the pcap sink of one class's scenario."""

    def __init__(self, sink: PcapSink, rng: random.Random):
        self.sink = sink
        self.rng = rng
        self._heap: list[tuple[float, int, Actor]] = []
        self._seq = 0

    @property
    def now(self) -> float:
        return self.sink.now

    def spawn(self, actor: Actor, delay: float = 0.0) -> None:
        """Start ``actor`` ``delay`` seconds from now."""
        self._seq += 1
        heapq.heappush(self._heap, (self.sink.now + max(delay, 0.0), self._seq, actor))

    def run(self) -> None:
        """Step actors in time order until the sink's frame budget is spent."""
        heap, sink = self._heap, self.sink
        steps, last_count = 0, -1
        try:
            while heap:
                when, _, actor = heap[0]
                sink.now = when
                try:
                    delay = next(actor)
                except StopIteration:
                    heapq.heappop(heap)
                    continue
                self._seq += 1
                heapq.heapreplace(heap, (when + delay, self._seq, actor))
                steps += 1
                if steps & (_STALL_STEPS - 1) == 0:
                    if sink.count == last_count:
                        raise ScenarioStalledError(
                            f"no packet written in {_STALL_STEPS} steps at t={when:.3f}s")
                    last_count = sink.count
        except BudgetReached:
            return
        raise ScenarioStalledError(f"every actor finished after {sink.count} packets of "
                                   f"{sink.limit}; scenarios must run until the budget")


class Net:
    """Hosts and connections of one scenario: ports, ISNs and IP ids from the seed."""

    def __init__(self, sim: Sim, broker: Host, port: int = 1883):
        self.sim = sim
        self.broker = broker
        self.port = port
        self._ports: dict[bytes, int] = {}

    def open(self, client: Host) -> Conn:
        """A new connection from ``client`` with the next ephemeral port."""
        rng = self.sim.rng
        port = self._ports.get(client.ip) or rng.randrange(32768, 60000)
        self._ports[client.ip] = 32768 + (port + 1 - 32768) % (61000 - 32768)
        return Conn(self.sim.sink, client, port, self.broker, self.port,
                    (rng.getrandbits(32), rng.getrandbits(32)),
                    (rng.getrandbits(16), rng.getrandbits(16)))


def jitter(rng: random.Random, base: float, spread: float = 0.3) -> float:
    """``base`` seconds give or take ``spread`` of it."""
    return base * (1.0 - spread + 2.0 * spread * rng.random())


def handshake(conn: Conn, rtt: float, rng: random.Random) -> Iterator[float]:
    """SYN, SYN-ACK, ACK as seen at the broker: the reply is quick, the ACK an RTT later."""
    conn.c.syn(False)
    yield jitter(rng, 30e-6)
    conn.s.syn(True)
    yield jitter(rng, rtt)
    conn.c.send(b"", 0, ACK)


def close_by_client(conn: Conn, rtt: float, rng: random.Random) -> Iterator[float]:
    """FIN from the client, FIN-ACK from the broker, the last ACK."""
    if not conn.c.open:
        return
    conn.c.fin()
    yield jitter(rng, 60e-6)
    if conn.s.open:
        conn.s.fin()
        yield jitter(rng, rtt)
        conn.c.ack()


def close_by_broker(conn: Conn, rtt: float, rng: random.Random) -> Iterator[float]:
    """The broker hangs up (refused CONNECT, protocol error): FIN, FIN, ACK."""
    if not conn.s.open:
        return
    conn.s.fin()
    yield jitter(rng, rtt)
    if conn.c.open:
        conn.c.fin()
        yield jitter(rng, 60e-6)
        conn.s.ack()


def delayed_ack_time(rng: random.Random) -> float:
    """When Linux acknowledges data it has no reply for: quick-ack or the delayed-ACK timer."""
    if rng.random() < 0.5:
        return jitter(rng, 0.0004, 0.5)
    return jitter(rng, 0.040, 0.25)
