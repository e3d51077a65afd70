"""Report stage: the HTML report of a run, and the live dashboard of ``detect``.

>>> result = write_report("mqttids-data/report")          # doctest: +SKIP
>>> print(result.path)                                     # doctest: +SKIP
mqttids-data/report/report.html

The report reads whatever the other stages left (see :mod:`.inputs`) and
says in the page what is missing and which command makes it. The dashboard
(:class:`Dashboard`) is imported from :mod:`mqttids.report.dashboard`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mqttids.config import DEFAULT_WAREHOUSE
from mqttids.report.errors import ReportOutputError

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
DEFAULT_MODELS_DIR = Path("mqttids-data/models")
DEFAULT_BENCHMARKS = Path("docs/benchmarks.md")

__all__ = ["REPORT_FILE", "ReportResult", "write_report"]


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and which of its sections have data."""

    path: Path
    sections: dict[str, bool] = field(default_factory=dict)
    models: int = 0
    alerts: int = 0

    @property
    def missing(self) -> list[str]:
        return [name for name, present in self.sections.items() if not present]

    def to_json(self) -> dict:
        return {"report": str(self.path), "sections": self.sections, "missing": self.missing,
                "models": self.models, "alerts": self.alerts}


def write_report(out_dir: str | os.PathLike, warehouse: str | None = DEFAULT_WAREHOUSE, *,
                 models_dir: str | os.PathLike | None = DEFAULT_MODELS_DIR,
                 alert_files: tuple[str | os.PathLike, ...] = (),
                 benchmarks: str | os.PathLike | None = DEFAULT_BENCHMARKS,
                 now: dt.datetime | None = None) -> ReportResult:
    """Write ``out_dir/report.html`` from what is there; return its path and what it holds.

    ``warehouse`` is a warehouse URL (None reads none); ``models_dir`` holds
    model bundles; ``alert_files`` are JSON-lines files of ``mqttids detect``;
    ``benchmarks`` is docs/benchmarks.md. The file is written whole or not
    at all (a temporary file renamed into place).
    """
    from mqttids.report.inputs import gather
    from mqttids.report.page import render_page, section_presence

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportOutputError(f"-o {out} is a file, not a folder; name a folder for the "
                                "report, e.g. -o mqttids-data/report")
    inputs = gather(warehouse, models_dir=Path(models_dir) if models_dir else None,
                    alert_files=tuple(Path(p) for p in alert_files),
                    benchmarks=Path(benchmarks) if benchmarks else None)
    text = render_page(inputs, now)
    path = out / REPORT_FILE
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=out)
    except OSError as exc:
        raise ReportOutputError(f"cannot write the report to {out}: {exc.strerror}; "
                                "choose a folder you can write with -o DIR") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ReportOutputError(f"cannot write {path}: {exc.strerror}") from None
    log.info("wrote %s (%d bytes)", path, len(text))
    return ReportResult(path, section_presence(inputs), len(inputs.models),
                        inputs.alerts.total)
