"""TCP: one direction's byte stream, reassembled, cut into MQTT messages.

Per direction we keep the next expected sequence number, the bytes of an
unfinished message, and segments that arrived ahead of a gap. In-order data
is cut into messages at once; a retransmission of bytes already seen adds
nothing; data that overlaps adds only its new bytes; out-of-order segments wait
for the gap to fill. Everything is bounded: a gap that never fills, or a
message longer than ``max_message`` bytes, is given up with a malformed
message rather than buffering without end.
"""

from __future__ import annotations

from mqttids.capture.mqtt import read_varint

MAX_MESSAGE = 16 << 20  # bytes; MQTT allows 256 MiB, no broker we know accepts that
MAX_PENDING_SEGMENTS = 64
_MASK = 0xFFFFFFFF
_HALF = 0x80000000

# One cut message: (bytes, fixed-header length, remaining length, whole)
# `whole` is False for a message given up unfinished (malformed).
Cut = tuple[bytes, int, int, bool]


def cut_messages(buf: bytes, max_message: int = MAX_MESSAGE) -> tuple[list[Cut], bytes]:
    """Cut ``buf`` into whole MQTT messages; returns them and the unfinished rest."""
    out: list[Cut] = []
    pos = 0
    n = len(buf)
    while n - pos >= 2:
        length, used = read_varint(buf, pos + 1, n)
        if used == 0:
            if n - pos - 1 >= 10:  # ten continuation bytes: no length can follow
                out.append((buf[pos:], 1, 0, False))
                return out, b""
            break
        total = 1 + used + length
        if total > max_message:
            out.append((buf[pos:pos + 1 + used], 1 + used, length, False))
            return out, b""
        if n - pos < total:
            break
        out.append((buf[pos:pos + total], 1 + used, length, True))
        pos += total
    return out, (buf[pos:] if pos else buf)


class Direction:
    """Reassembly state of one direction of a TCP connection."""

    __slots__ = ("next_seq", "pending", "ahead", "seen")

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.seen: int | None = None  # highest sequence number seen, data or not
        self.pending = b""
        self.ahead: dict[int, bytes] = {}

    def syn(self, seq: int) -> None:
        self.next_seq = self.seen = (seq + 1) & 0xFFFFFFFF
        self.pending = b""
        self.ahead.clear()

    def note(self, end: int) -> None:
        """Record that the sender has reached sequence number ``end``."""
        seen = self.seen
        if seen is None or (end - seen) & 0xFFFFFFFF < 0x80000000:
            self.seen = end

    def segment(self, seq: int, data: bytes, max_message: int = MAX_MESSAGE) -> list[Cut]:
        """Take one data segment; returns the messages it completes.

        Data that ends at or below what the sender already reached is a
        retransmission and adds nothing, even when the capture never showed
        the first copy (a later segment or ACK had moved past it): Wireshark
        does not decode it either, and rows must agree with Wireshark. The
        bytes the capture missed are then given up, and so is a gap that an
        earlier segment already announced as sent. A gap before data that
        nothing announced is out-of-order arrival: the data waits in
        ``ahead`` for the gap to fill.
        """
        size = len(data)
        seen = self.seen
        nxt = self.next_seq
        if seen is not None and not self.ahead and (seen - seq - size) & _MASK < _HALF:
            if nxt is not None and nxt != seen and (seen - nxt) & _MASK < _HALF:
                self.next_seq = seen  # the capture lost these bytes
                self.pending = b""
            return []
        if (nxt is not None and seen is not None and seq != nxt
                and (seq - nxt) & _MASK < _HALF and (seen - seq) & _MASK < _HALF):
            # A gap the sender had already passed: lost by the capture, not late.
            self._give_up_gap(seq)
        self.note((seq + size) & _MASK)
        return self.push(seq, data, max_message)

    def _give_up_gap(self, seq: int) -> None:
        """Go on after bytes the capture lost, before a segment at ``seq``.

        The unfinished message before the gap is given up. Segments that
        waited on the gap are the stream's data from their own start on, as
        Wireshark dissects a segment after "previous segment not captured":
        they are taken up to ``seq`` when they reach it, so their messages
        are cut with this segment's (found in a flood recorded by the lab,
        where the kernel dropped packets). Waiting data that still leaves a
        gap before ``seq`` is given up with the rest.
        """
        self.pending = b""
        if self.ahead:
            nxt = self.next_seq
            first = min(self.ahead, key=lambda s: (s - nxt) & _MASK)
            if (seq - first) & _MASK < _HALF:
                buf, end = self._fill(b"", first)
                if (end - seq) & _MASK < _HALF:  # reaches this segment
                    self.pending, self.next_seq = buf, end
                    return  # what still waits lies beyond ``end``
        self.next_seq = seq
        self.ahead.clear()

    def push(self, seq: int, data: bytes, max_message: int = MAX_MESSAGE) -> list[Cut]:
        """Add one segment's payload; returns the messages it completes."""
        nxt = self.next_seq
        if nxt is None:
            nxt = seq
        elif seq != nxt:
            if (seq - nxt) & 0xFFFFFFFF < 0x80000000:  # ahead of a gap
                if len(self.ahead) < MAX_PENDING_SEGMENTS:
                    if len(data) > len(self.ahead.get(seq, b"")):
                        self.ahead[seq] = data
                    return []
                # The gap never filled: drop what waited on it and go on from here.
                self.pending = b""
                self.ahead.clear()
                nxt = seq
            else:
                behind = (nxt - seq) & 0xFFFFFFFF
                if behind >= len(data):
                    return []  # a retransmission of bytes already seen
                data = data[behind:]
        nxt = (nxt + len(data)) & 0xFFFFFFFF
        buf = self.pending + data if self.pending else data
        if self.ahead:
            buf, nxt = self._fill(buf, nxt)
        self.next_seq = nxt
        cuts, self.pending = cut_messages(buf, max_message)
        return cuts

    def _fill(self, buf: bytes, nxt: int) -> tuple[bytes, int]:
        """Append waiting segments that the new data made contiguous."""
        progress = True
        while progress and self.ahead:
            progress = False
            for seq in list(self.ahead):
                behind = (nxt - seq) & 0xFFFFFFFF
                if behind < 0x80000000:
                    data = self.ahead.pop(seq)
                    if behind < len(data):
                        buf += data[behind:]
                        nxt = (nxt + len(data) - behind) & 0xFFFFFFFF
                    progress = True
        return buf, nxt
