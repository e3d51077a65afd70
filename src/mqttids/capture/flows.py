"""TCP connections and the context they give each row.

A connection is keyed by its two endpoints; both directions share one
:class:`Connection`. Its counters become the ``ctx.`` columns: what came before
in the same connection and from the same client, never anything after.
"""

from __future__ import annotations

import hashlib
import ipaddress

from mqttids.capture.tcp import Direction


def address_text(raw: bytes) -> str:
    """IPv4/IPv6 address bytes as text, the way Wireshark writes them."""
    return str(ipaddress.ip_address(raw))


class Connection:
    """State of one TCP connection: reassembly, MQTT version, context counters."""

    __slots__ = ("flow_id", "ends", "dirs", "last_ts", "version", "client_id", "packets",
                 "messages", "connects", "bytes", "closed", "syn_seq", "client_addr",
                 "last_seen")

    def __init__(self, flow_id: str, ends: tuple[tuple, tuple], client_addr: bytes):
        self.flow_id = flow_id
        # Per direction (0: as first seen, 1: reverse): (src, dst, sport, dport) as text.
        self.ends = ends
        self.dirs = (Direction(), Direction())
        self.last_ts: int | None = None
        self.version = 0
        self.client_id: str | None = None
        self.packets = 0
        self.messages = 0
        self.connects = 0
        self.bytes = 0
        self.closed = False
        self.syn_seq: int | None = None
        self.client_addr = client_addr
        self.last_seen = 0


def flow_id(a: bytes, ap: int, b: bytes, bp: int, generation: int) -> str:
    """A stable id for a connection: the same in every file and run.

    Made from the endpoints in a canonical order, so both directions agree;
    ``generation`` tells apart connections that reuse the same endpoints.
    """
    lo, hi = sorted(((a, ap), (b, bp)))
    digest = hashlib.blake2b(lo[0] + lo[1].to_bytes(2, "big") + hi[0] + hi[1].to_bytes(2, "big"),
                             digest_size=8).hexdigest()
    return digest if generation == 0 else f"{digest}.{generation}"


def new_connection(src: bytes, sport: int, dst: bytes, dport: int, to_broker: bool,
                   generation: int) -> Connection:
    s, d = address_text(src), address_text(dst)
    ends = ((s, d, sport, dport), (d, s, dport, sport))
    return Connection(flow_id(src, sport, dst, dport, generation), ends,
                      src if to_broker else dst)
