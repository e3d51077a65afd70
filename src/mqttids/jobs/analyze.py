"""The analyze job: the analytics of ``mqttids analyze`` over a warehouse at any URI.

The answers come from :func:`mqttids.spark.analytics.analyze` unchanged; the
job only reads the packets through the jobs' warehouse view and writes the
``analysis_*`` tables back, so local mode and a cluster give the same object.
"""

from __future__ import annotations

import logging

from mqttids.jobs.errors import NoPacketsError
from mqttids.jobs.store import JobWarehouse
from mqttids.spark.analysis_tables import analysis_tables
from mqttids.spark.analytics import DEFAULT_TOP_FLAGS, analyze
from mqttids.spark.profile import DEFAULT_TOP_VALUES

log = logging.getLogger(__name__)

TOP_CONFLICTS = 10  # as many largest conflicting groups as `mqttids analyze` lists


def analyze_job(wh: JobWarehouse, top_flags: int = DEFAULT_TOP_FLAGS,
                top_values: int = DEFAULT_TOP_VALUES,
                top_conflicts: int = TOP_CONFLICTS) -> dict:
    """The ``analyze`` object of design.md; the analysis tables are written to ``wh``."""
    packets = wh.packets()
    if not packets.take(1):
        raise NoPacketsError(f"the warehouse {wh.display_url} holds no packets: load some "
                             "first with the ingest-csv job or `mqttids ingest`")
    result = analyze(packets, top_flags=top_flags, top_values=top_values,
                     top_conflicts=top_conflicts)
    wh.write_tables(analysis_tables(result))
    log.info("wrote the analysis_* tables to %s", wh.display_url)
    return result
