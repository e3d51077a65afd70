"""The report's I/O adapter: reads what the other stages left, and notes what is absent.

Sources, each optional:

- the warehouse (``open_warehouse``): ``analysis_*`` tables from ``mqttids
  analyze``, the ``models`` registry and evaluation/tuning tables from
  ``mqttids train``/``evaluate``, the ``alerts`` table from ``mqttids detect``;
- model bundles under the models folder (their metadata JSON);
- alerts JSON-lines files from ``mqttids detect --alerts FILE``;
- docs/benchmarks.md.

A Parquet warehouse folder that does not exist is read as empty rather than
created: a report must not leave a new warehouse behind.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from mqttids.report.alerts import AlertSummary, add_alerts, json_lines
from mqttids.report.benchmarks import Section, parse_benchmarks
from mqttids.report.errors import ReportInputError
from mqttids.report.models_view import ModelView, model_views, tuning_records

log = logging.getLogger(__name__)

ANALYSIS_TABLES = ("analysis_summary", "analysis_tcp_len_by_target", "analysis_top_flags",
                   "analysis_class_balance", "analysis_ceiling", "analysis_conflicts",
                   "analysis_profile", "analysis_class_means")
TUNING_TABLE = "model_tuning"  # one row per model, configuration and fold (mqttids train)
# Bundle metadata file names, the first found is read.
BUNDLE_METADATA = ("metadata.json", "bundle.json", "model.json")


@dataclass
class ReportInputs:
    """What the report found; empty fields mean the stage that makes them has not run."""

    warehouse: str | None = None  # the URL, password masked
    warehouse_note: str | None = None  # why nothing was read from it
    analysis: dict[str, list[dict]] = field(default_factory=dict)
    models: list[ModelView] = field(default_factory=list)
    alerts: AlertSummary = field(default_factory=AlertSummary)
    benchmarks: list[Section] = field(default_factory=list)
    benchmarks_source: str | None = None


def open_report_warehouse(url: str):
    """``(warehouse or None, note)``: None with a reason when there is nothing to read."""
    from mqttids.warehouse import open_warehouse
    from mqttids.warehouse.dsn import mask_dsn

    if url.startswith("parquet:"):
        path = Path(url[len("parquet:"):].removeprefix("//"))
        if not path.is_dir():
            return None, f"no warehouse folder at {path}"
    log.info("reading the warehouse %s", mask_dsn(url))
    return open_warehouse(url), None


def read_tables(wh, names) -> dict[str, list[dict]]:
    """The named tables that exist and hold rows, as lists of row dicts."""
    present = set(wh.table_names())
    out = {}
    for name in names:
        if name not in present:
            continue
        table = wh.read_table(name)
        if table is not None and table.num_rows:
            out[name] = table.to_pylist()
    return out


def read_alert_file(path: Path, summary: AlertSummary) -> None:
    """Fold the alerts of a JSON-lines file into ``summary``."""
    if not path.is_file():
        raise ReportInputError(f"alerts file {path} does not exist; give the file that "
                               "`mqttids detect --alerts FILE` wrote")
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            add_alerts(summary, json_lines(fh))
    except OSError as exc:
        raise ReportInputError(f"cannot read alerts file {path}: {exc.strerror}") from None
    summary.sources.append(str(path))


def read_benchmarks(path: Path) -> list[Section]:
    try:
        return parse_benchmarks(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise ReportInputError(f"cannot read benchmarks file {path}: {exc.strerror}") from None


def bundle_records(models_dir: Path) -> list[dict]:
    """The metadata of every bundle folder under ``models_dir`` (name from the folder)."""
    records = []
    if not models_dir.is_dir():
        return records
    for folder in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        meta = next((folder / n for n in BUNDLE_METADATA if (folder / n).is_file()), None)
        if meta is None:
            continue
        try:
            record = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("skipping bundle metadata %s: %s", meta, exc)
            continue
        if isinstance(record, dict):
            records.append({**record, "name": record.get("name") or folder.name,
                            "path": record.get("path") or str(folder)})
    return records


def gather(warehouse_url: str | None, *, models_dir: Path | None = None,
           alert_files: tuple[Path, ...] = (), benchmarks: Path | None = None) -> ReportInputs:
    """Read every source that is there; an explicitly named file that is not there is an error."""
    inputs = ReportInputs()
    for path in alert_files:
        read_alert_file(Path(path), inputs.alerts)
    if benchmarks is not None and Path(benchmarks).is_file():
        inputs.benchmarks = read_benchmarks(Path(benchmarks))
        inputs.benchmarks_source = str(benchmarks)
    records, tuning = [], []
    if warehouse_url:
        from mqttids.warehouse.dsn import mask_dsn

        inputs.warehouse = mask_dsn(warehouse_url)
        wh, inputs.warehouse_note = open_report_warehouse(warehouse_url)
        if wh is not None:
            with wh:
                inputs.analysis = read_tables(wh, ANALYSIS_TABLES)
                records += _registry_records(wh)
                tuning = read_tables(wh, (TUNING_TABLE,)).get(TUNING_TABLE, [])
                alerts = read_tables(wh, ("alerts",)).get("alerts", [])
                add_alerts(inputs.alerts, alerts)
                if alerts:
                    inputs.alerts.sources.append("warehouse table alerts")
    if models_dir is not None:
        records += bundle_records(Path(models_dir))
    records += tuning_records(tuning)
    inputs.models = model_views(records)
    return inputs


def _registry_records(wh) -> list[dict]:
    """Rows of the ``models`` registry, newest first, so the newest of a name wins."""
    rows = read_tables(wh, ("models",)).get("models", [])
    return sorted(rows, key=lambda r: (r.get("created") is not None, r.get("created") or 0,
                                       r.get("id") or 0), reverse=True)
