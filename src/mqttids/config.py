"""Settings: command-line flags first, then MQTTIDS_* environment, then defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_WAREHOUSE = "parquet:./mqttids-data/warehouse"
DEFAULT_SPARK_MASTER = "local[*]"
DEFAULT_MQTT_PORT = 1883


@dataclass(frozen=True)
class Settings:
    """Global options every command can read."""

    warehouse: str = DEFAULT_WAREHOUSE
    spark_master: str = DEFAULT_SPARK_MASTER
    quiet: bool = False
    log_level: str = "WARNING"


def resolve(flag: str | None, env: str, default: str) -> str:
    """The first of: the flag's value, the environment variable, the default."""
    if flag:
        return flag
    return os.environ.get(env) or default


def settings_from(warehouse: str | None = None, spark_master: str | None = None,
                  quiet: bool = False, log_level: str | None = None) -> Settings:
    return Settings(
        warehouse=resolve(warehouse, "MQTTIDS_WAREHOUSE", DEFAULT_WAREHOUSE),
        spark_master=resolve(spark_master, "MQTTIDS_SPARK_MASTER", DEFAULT_SPARK_MASTER),
        quiet=quiet,
        log_level=resolve(log_level, "MQTTIDS_LOG_LEVEL", "WARNING").upper(),
    )
