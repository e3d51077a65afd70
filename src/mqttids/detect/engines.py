"""Decoding engines for the detector: captured bytes -> blocks of feature rows.

Two engines make the same rows (the capture stage tests them against each
other):

- :class:`PythonEngine` runs :class:`mqttids.capture.rows.FrameDecoder` on
  frames that :class:`mqttids.detect.sources.FrameReader` reads. It forgets
  connections silent for ``idle`` (capture time) and sheds the least recently
  seen above ``max_connections``.
- :class:`CEngine` runs the C decoder (``mqttids.capture._cdecoder``) on raw
  pcap/pcapng bytes that :class:`mqttids.detect.sources.ChunkReader` cuts at
  record boundaries, about ten times faster. The C decoder cannot forget single connections, so this
  engine counts the connections it opens and, past ``max_connections``, starts
  a fresh decoder at a record boundary (re-reading the capture's header
  blocks): memory stays bounded, at the price of every connection being picked
  up mid-stream once.

Both hand out :class:`RowBlock` objects of at most ``batch_rows`` rows.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from mqttids import schema
from mqttids.capture import extract, pcap
from mqttids.capture.rows import FrameDecoder
from mqttids.capture.tcp import MAX_MESSAGE, MAX_PENDING_SEGMENTS

log = logging.getLogger(__name__)

_INDEX = {name: i for i, name in enumerate(schema.COLUMN_NAMES)}
_FRAME = _INDEX["frame"]


def c_available() -> bool:
    """True when the C decoder is built for this schema and not switched off."""
    return extract.use_cdecoder()


# -- row blocks ------------------------------------------------------------------------

class TupleBlock:
    """Rows as tuples in schema order (the Python decoder's output)."""

    def __init__(self, rows: list[tuple]):
        self.n = len(rows)
        self._columns = list(zip(*rows))

    def table(self, features: Iterable[str]) -> pa.Table:
        names = list(features)
        return pa.Table.from_arrays(
            [pa.array(self._columns[_INDEX[n]], type=schema.BY_NAME[n].arrow_type)
             for n in names], names=names)

    def columns(self, names: Iterable[str]) -> dict[str, list]:
        return {n: self._columns[_INDEX[n]] for n in names}


class ArrowBlock:
    """Rows as an Arrow record batch (the C decoder's output); frames renumbered."""

    def __init__(self, batch: pa.RecordBatch, frame_offset: int = 0):
        self.n = batch.num_rows
        self._batch = batch
        self._offset = frame_offset

    def table(self, features: Iterable[str]) -> pa.Table:
        return pa.Table.from_batches([self._batch.select(list(features))])

    def columns(self, names: Iterable[str]) -> dict[str, list]:
        out = {}
        for n in names:
            col = self._batch.column(n)
            if n == "frame" and self._offset:
                col = pc.add(col, self._offset)
            if pa.types.is_timestamp(col.type):
                col = col.cast(pa.int64())
            if col.null_count == 0 and pa.types.is_integer(col.type):
                out[n] = col.to_numpy().tolist()  # several times faster than to_pylist
            else:
                out[n] = col.to_pylist()
        return out


# -- the Python engine -------------------------------------------------------------------

class PythonEngine:
    """FrameDecoder with idle eviction and a cap on connections."""

    kind = "python"

    def __init__(self, ports: tuple[int, ...], batch_rows: int, idle_ns: int,
                 max_connections: int, source: str = "-"):
        self.decoder = FrameDecoder(ports, source=source)
        self.batch_rows = batch_rows
        self.idle_ns = idle_ns
        self.max_connections = max_connections
        self.evicted = 0
        self._rows: list[tuple] = []
        self._now_ns = 0
        self._next_evict_ns: int | None = None

    @property
    def frames(self) -> int:
        return self.decoder.frames

    @property
    def connections(self) -> int:
        return len(self.decoder.conns) // 2

    @property
    def waiting(self) -> int:
        return len(self._rows)

    @property
    def full(self) -> bool:
        return len(self._rows) >= self.batch_rows

    def push_frames(self, frames: Iterable[tuple[int, int, int, bytes]]) -> None:
        decode, extend = self.decoder.decode, self._rows.extend
        ts_ns = None
        for frame_no, ts_ns, linktype, data in frames:
            rows = decode(frame_no, ts_ns, linktype, data)
            if rows:
                extend(rows)
        if ts_ns is not None:
            self._now_ns = max(self._now_ns, ts_ns)
            self._bound()

    def take(self) -> TupleBlock | None:
        if not self._rows:
            return None
        n = self.batch_rows
        rows, self._rows = self._rows[:n], self._rows[n:]
        return TupleBlock(rows)

    def finish(self) -> None:
        """End of input: nothing is held back in this engine."""

    def _bound(self) -> None:
        """Forget idle connections now and then; shed the oldest above the cap."""
        now = self._now_ns
        if self._next_evict_ns is None:
            self._next_evict_ns = now + self.idle_ns // 4
        over = self.connections - self.max_connections
        if now < self._next_evict_ns and over <= 0:
            return
        self._next_evict_ns = now + self.idle_ns // 4
        gone = self.decoder.evict_idle(now, self.idle_ns)
        over = self.connections - self.max_connections
        if over > 0:
            gone += self._shed(max(over, self.max_connections // 10))
        if gone:
            self._prune()
            self.evicted += gone
            log.debug("forgot %d connections; %d kept", gone, self.connections)

    def _shed(self, n: int) -> int:
        seen = [c.last_seen for c, side in self.decoder.conns.values() if side == 0]
        cutoff = heapq.nsmallest(n + 1, seen)[-1] if n < len(seen) else max(seen) + 1
        return self.decoder.evict_idle(cutoff, 0)

    def _prune(self) -> None:
        """Drop the decoder's per-endpoint tables of connections it has forgotten.

        FrameDecoder.evict_idle keeps the generation number of every endpoint
        pair and a CONNECT count per client address; under a storm of
        connections from new ports those would grow without end. A pair seen
        again after this starts at generation 0 again.
        """
        dec = self.decoder
        live = dec.conns
        dec.generations = {k: g for k, g in dec.generations.items() if k[0] in live}
        if len(dec.client_connects) > self.max_connections:
            clients = {c.client_addr for c, _ in live.values()}
            dec.client_connects = {a: n for a, n in dec.client_connects.items() if a in clients}


# -- the C engine --------------------------------------------------------------------

class CEngine:
    """The C decoder over record-aligned chunks, restarted past ``max_connections``."""

    kind = "c"

    def __init__(self, ports: tuple[int, ...], batch_rows: int, max_connections: int,
                 source: str = "-", shown: str = "-", warnings: list[str] | None = None):
        self._module = extract._CDECODER
        self.options = dict(ports=ports, per_message=False, batch_rows=batch_rows,
                            max_message=MAX_MESSAGE, max_pending=MAX_PENDING_SEGMENTS,
                            max_frame=pcap.MAX_FRAME, source=source, label=None,
                            conn_info=self._conn_info)
        self.batch_rows = batch_rows
        self.max_connections = max_connections
        self.shown = shown
        self.warnings = warnings if warnings is not None else []
        self.evicted = 0
        self.restarts = 0
        self.connections = 0
        self._dec = None
        self._aligned = True
        self._frame_offset = 0
        self._ready: list[ArrowBlock] = []

    def _conn_info(self, src: bytes, sport: int, dst: bytes, dport: int, generation: int):
        self.connections += 1
        return extract._conn_info(src, sport, dst, dport, generation)

    @property
    def frames(self) -> int:
        return self._frame_offset + (self._dec.frames if self._dec is not None else 0)

    @property
    def waiting(self) -> int:
        return sum(b.n for b in self._ready) + (self._dec.rows if self._dec is not None else 0)

    @property
    def full(self) -> bool:
        return bool(self._ready)

    def push_chunk(self, header: bytes, data: bytes, aligned: bool) -> None:
        """Decode one chunk from :class:`~mqttids.detect.sources.ChunkReader`.

        The first chunk starts with the capture's magic number. Past the cap, a
        fresh decoder takes over, but only where the chunk before ended at a
        record boundary and ``header`` can set the new decoder up.
        """
        if self._dec is None:
            self._dec = self._module.Decoder(data[:4], **self.options)
            data = data[4:]
        elif self.connections > self.max_connections and self._aligned and header:
            self.restart(header)
        self._aligned = aligned
        self._dec.feed(data)
        self._run()

    def finish(self) -> None:
        if self._dec is not None:
            self._dec.finish()
            self._run()

    def take(self) -> ArrowBlock | None:
        if self._ready:
            return self._ready.pop(0)
        if self._dec is not None and self._dec.rows:
            return self._block()
        return None

    def restart(self, header: bytes) -> None:
        """A fresh decoder: every row the old one holds is handed out first, none is lost."""
        if self._dec.rows:
            self._ready.append(self._block())
        log.info("%d connections open: the C decoder starts afresh to keep memory bounded",
                 self.connections)
        self.evicted += self.connections
        self.connections = 0
        self.restarts += 1
        self._frame_offset += self._dec.frames
        self._dec = self._module.Decoder(header[:4], **self.options)
        self._dec.feed(header[4:])
        self._run()

    def _run(self) -> None:
        dec, module = self._dec, self._module
        while True:
            status = dec.run()
            self._report()
            if status == module.BATCH:
                self._ready.append(self._block())
            else:
                return

    def _block(self) -> ArrowBlock:
        n, columns = self._dec.take()
        arrays = []
        for f, (nulls, valid, *buffers) in zip(extract.ARROW_SCHEMA, columns):
            bufs = [None if valid is None else pa.py_buffer(valid)]
            bufs += [pa.py_buffer(b) for b in buffers]
            arrays.append(pa.Array.from_buffers(f.type, n, bufs, null_count=nulls))
        batch = pa.RecordBatch.from_arrays(arrays, schema=extract.ARROW_SCHEMA)
        return ArrowBlock(batch, self._frame_offset)

    def _report(self) -> None:
        for text in self._dec.warnings():
            pcap._warn(self.warnings, self.shown, text)
        for linktype in self._dec.linktypes():
            log.warning("%s: link type %d is not supported; its frames are skipped",
                        self.shown, linktype)
