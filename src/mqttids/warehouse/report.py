"""What an ingest did, per source and in total; ``to_json`` gives design.md's object."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class BatchReport:
    """One source: loaded as a new batch, or skipped because its sha256 was loaded before."""

    source: str
    sha256: str
    format: str
    batch_id: int | None = None
    read: int = 0
    loaded: int = 0
    rejected: int = 0
    skipped: bool = False
    seconds: float = 0.0

    def to_json(self) -> dict:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out


@dataclass
class IngestReport:
    """Totals over the sources of one command; read = loaded + rejected always."""

    batches: list[BatchReport] = field(default_factory=list)

    @property
    def read(self) -> int:
        return sum(b.read for b in self.batches)

    @property
    def loaded(self) -> int:
        return sum(b.loaded for b in self.batches)

    @property
    def rejected(self) -> int:
        return sum(b.rejected for b in self.batches)

    @property
    def skipped_sources(self) -> list[str]:
        return [b.source for b in self.batches if b.skipped]

    def to_json(self) -> dict:
        return {"read": self.read, "loaded": self.loaded, "rejected": self.rejected,
                "skipped_sources": self.skipped_sources,
                "batches": [b.to_json() for b in self.batches]}
