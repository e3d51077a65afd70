"""Shared fixtures: one per outside resource (data set, tshark, PostgreSQL, Spark,
broker). A test that needs one is marked and skips with the reason when the
resource is missing; `make test` and CI install and start all of them."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASET = Path(os.environ.get(
    "MQTTIDS_DATASET", REPO.parent / "shared" / "datasets" / "mqttset-reduced"))
PG_DSN = os.environ.get("MQTTIDS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    """../shared/datasets/mqttset-reduced, or a skip that says it is absent."""
    if not DATASET.is_dir():
        pytest.skip(f"MQTTset captures not found at {DATASET} (set MQTTIDS_DATASET)")
    return DATASET


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    return path


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """A DSN of the test database; skips when no server listens on 127.0.0.1:5432."""
    if not _port_open("127.0.0.1", 5432):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (.ci/run starts it)")
    return PG_DSN


@pytest.fixture()
def pg_warehouse(pg_dsn):
    """A fresh schema name for one test, dropped afterwards."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:10]}"
    yield schema
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def spark():
    """One Spark session for the whole test run (start-up costs 10-20 s)."""
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Java is not installed (apt-get install openjdk-17-jre-headless)")
    from mqttids.spark.session import get_spark

    session = get_spark("local[2]", app_name="mqttids-tests",
                        extra={"spark.driver.memory": "4g"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def broker_programs() -> dict[str, str]:
    """Paths of mosquitto, mosquitto_pub and mosquitto_sub, or a skip."""
    found = {name: shutil.which(name) for name in ("mosquitto", "mosquitto_pub", "mosquitto_sub")}
    missing = [k for k, v in found.items() if v is None]
    if missing:
        pytest.skip(f"missing broker programs {missing} (apt-get install mosquitto "
                    "mosquitto-clients)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mosquitto_broker(broker_programs, tmp_path_factory):
    """A Mosquitto of our own on a free loopback port: (host, port); stopped at the end."""
    import subprocess
    import time

    folder = tmp_path_factory.mktemp("mosquitto")
    folder.chmod(0o777)
    port = free_port()
    conf = folder / "mosquitto.conf"
    # Run as root, mosquitto drops to its own user, which cannot enter pytest's
    # private temporary folders: it gets no files to write, and logs nowhere.
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "log_dest none\n")
    conf.chmod(0o644)
    proc = subprocess.Popen([broker_programs["mosquitto"], "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mosquitto did not start on port {port} with {conf}")
        time.sleep(0.05)
    yield "127.0.0.1", port
    proc.terminate()
    proc.wait(timeout=10)
