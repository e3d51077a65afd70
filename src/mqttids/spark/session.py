"""The one place that starts a Spark session.

Sized for the reference machine (2 cores, 24 GiB) in local mode; on a cluster
the master's own settings win, because nothing here is set that a
``spark-submit --conf`` or the cluster defaults would need to override.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys

from mqttids.errors import MissingDependencyError

log = logging.getLogger(__name__)

JDBC_JAR = "/usr/share/java/postgresql.jar"

_LOCAL_DEFAULTS = {
    "spark.driver.memory": "8g",
    "spark.sql.shuffle.partitions": "8",
    "spark.default.parallelism": "4",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}


def get_spark(master: str = "local[*]", app_name: str = "mqttids", extra: dict | None = None):
    """Return the active Spark session, creating one for ``master`` if needed.

    The PostgreSQL JDBC driver is put on the class path when Debian's
    libpostgresql-jdbc-java is installed (or MQTTIDS_JDBC_JAR names a jar).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - the package declares pyspark
        raise MissingDependencyError(
            "pyspark is not installed: run `make test` or `pip install 'mqttids[spark]'`"
        ) from exc
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise MissingDependencyError(
            "Spark needs Java 17 and no `java` was found: install openjdk-17-jre-headless")

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if master.startswith("local"):
        # Local Python workers must be this interpreter (the venv with mqttids and
        # pyarrow), not whatever `python3` is first on PATH. On a cluster the
        # executors' own Python is the right one, so it is left alone there.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name).master(master)
    conf = dict(_LOCAL_DEFAULTS) if master.startswith("local") else {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    jar = os.environ.get("MQTTIDS_JDBC_JAR", JDBC_JAR)
    if os.path.exists(jar):
        conf["spark.jars"] = jar
    conf.update(extra or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    log.info("starting Spark session on %s", master)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
