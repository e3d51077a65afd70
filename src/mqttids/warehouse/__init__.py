"""Warehouse stage: feature rows, the ingest ledger, rejects and result tables.

Two stores behind one interface (:class:`mqttids.warehouse.base.Warehouse`):

- ``parquet:PATH`` (the default, ``parquet:./mqttids-data/warehouse``): folders
  of Parquet files, one per table;
- ``postgresql://...``: a PostgreSQL schema (``mqtt`` unless ``pg_schema`` or
  ``MQTTIDS_PG_SCHEMA`` says otherwise), loaded with COPY.

>>> with open_warehouse("parquet:/tmp/wh") as wh:          # doctest: +SKIP
...     report = wh.ingest(["train70.csv"], split="train")
...     print(report.to_json())
"""

from __future__ import annotations

import os

from mqttids.config import DEFAULT_WAREHOUSE
from mqttids.warehouse.base import Warehouse
from mqttids.warehouse.dsn import is_url, mask_dsn
from mqttids.warehouse.errors import (SourceFormatError, TableError, WarehouseConnectionError,
                                      WarehouseError, WarehouseURLError)
from mqttids.warehouse.report import BatchReport, IngestReport

__all__ = ["BatchReport", "IngestReport", "SourceFormatError", "TableError", "Warehouse",
           "WarehouseConnectionError", "WarehouseError", "WarehouseURLError", "open_warehouse"]


def open_warehouse(url: str | None = None, *, pg_schema: str | None = None) -> Warehouse:
    """The store that ``url`` names: ``parquet:PATH`` or ``postgresql://...``.

    ``pg_schema`` picks the PostgreSQL schema (default: ``MQTTIDS_PG_SCHEMA``,
    else ``mqtt``); it lets tests and several projects share one database.
    """
    url = url or DEFAULT_WAREHOUSE
    if url.startswith("parquet:"):
        from mqttids.warehouse.parquet import ParquetWarehouse

        path = url[len("parquet:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise WarehouseURLError("warehouse URL 'parquet:' names no folder; "
                                    "write parquet:PATH, e.g. parquet:./mqttids-data/warehouse")
        return ParquetWarehouse(path)
    if is_url(url) or "dbname=" in url or "host=" in url:
        from mqttids.warehouse.postgres import DEFAULT_SCHEMA, PostgresWarehouse

        schema_name = pg_schema or os.environ.get("MQTTIDS_PG_SCHEMA") or DEFAULT_SCHEMA
        return PostgresWarehouse(url, schema_name)
    raise WarehouseURLError(f"unknown warehouse URL {mask_dsn(url)!r}: use parquet:PATH "
                            "(the default is parquet:./mqttids-data/warehouse) or "
                            "postgresql://USER@HOST:PORT/DB")
