"""Named exceptions of the warehouse stage; each message says what, the value, and what to do."""

from __future__ import annotations

from mqttids.errors import MqttidsError


class WarehouseError(MqttidsError):
    """Base of every warehouse error."""


class WarehouseURLError(WarehouseError):
    """A warehouse URL that is neither ``parquet:PATH`` nor ``postgresql://...``."""


class WarehouseConnectionError(WarehouseError):
    """PostgreSQL could not be reached, or the connection was lost during a load."""


class SourceFormatError(WarehouseError):
    """A source file is not an MQTTset CSV, a capture or a Parquet file of feature rows."""


class TableError(WarehouseError):
    """A result table name or its columns do not fit the warehouse."""
