"""The jobs on a real Spark standalone cluster: a master and two workers on loopback.

The master and workers are pyspark's own (``bin/spark-class ...Master`` and
``...Worker``), one core and 1 GiB per worker; the jobs go in through
``spark-submit`` with the file Dataproc runs (``mqttids/jobs/main.py``). The
train file is ingested on the cluster, the test file by the library; analyze
and a small training run on the cluster must give what local mode gives on
the same warehouse, and each worker must have run an executor. Everything
started here is stopped at the end, also when a test fails.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from mqttids.jobs import main as job_main
from mqttids.warehouse import open_warehouse
from test_jobs_data import write_csv

pytestmark = [pytest.mark.spark, pytest.mark.slow]

pyspark = pytest.importorskip("pyspark")
SPARK_HOME = Path(pyspark.__file__).parent
MAIN_PY = Path(job_main.__file__)
SUBMIT_TIMEOUT = 600
# One small configuration: each L-BFGS iteration is a Spark job, and the machine is shared.
GRID = {"lr": [{"regParam": 0.01, "elasticNetParam": 0.0, "maxIter": 15}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Cluster:
    url: str
    env: dict
    root: Path
    logs: list[Path]

    def diagnostics(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in self.logs if p.exists())


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        # its own process group: the executors a worker starts are stopped with it
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for proc in reversed(procs):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # executors left in the group, if any
        except ProcessLookupError:
            pass


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as r:
            return int(json.load(r).get("aliveworkers", 0))
    except OSError:
        return 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("java") is None:
        pytest.skip("Java is not installed (apt-get install openjdk-17-jre-headless)")
    root = tmp_path_factory.mktemp("standalone")
    env = dict(os.environ, SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1",
               SPARK_LOG_DIR=str(root / "logs"), SPARK_DAEMON_MEMORY="256m",
               PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port, ui = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    logs = [root / "master.log", root / "worker-1.log", root / "worker-2.log"]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start([spark_class, "org.apache.spark.deploy.master.Master",
                             "--host", "127.0.0.1", "--port", str(port),
                             "--webui-port", str(ui)], env, logs[0]))
        for i in (1, 2):
            procs.append(_start([spark_class, "org.apache.spark.deploy.worker.Worker",
                                 "--host", "127.0.0.1", "--cores", "1", "--memory", "1g",
                                 "--webui-port", str(_free_port()),
                                 "--work-dir", str(root / f"work-{i}"), url], env, logs[i]))
        found = Cluster(url, env, root, logs)
        deadline = time.monotonic() + 120
        while _alive_workers(ui) < 2:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail(f"the standalone cluster did not come up with two workers\n"
                            f"{found.diagnostics()}")
            time.sleep(1)
        yield found
    finally:
        _stop(procs)


def submit(cluster: Cluster, *args: str) -> dict:
    """Run a job through spark-submit on the cluster; its one JSON object."""
    cmd = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", cluster.url,
           "--conf", "spark.executor.memory=512m", "--conf", "spark.executor.cores=1",
           "--conf", "spark.cores.max=2", "--conf", "spark.ui.enabled=false",
           # a few hundred rows: 4 shuffle partitions, not Spark's 200 tiny tasks per stage
           "--conf", "spark.sql.shuffle.partitions=4",
           "--driver-memory", "1g", str(MAIN_PY), *args]
    done = subprocess.run(cmd, env=cluster.env, capture_output=True, text=True,
                          timeout=SUBMIT_TIMEOUT)
    assert done.returncode == 0, (f"{' '.join(args)} failed ({done.returncode}):\n"
                                  f"{done.stderr[-4000:]}\n{cluster.diagnostics()}")
    # spark-submit merges the driver's stderr (the logs) into stdout; one line is JSON
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, f"expected one JSON line on stdout, got {done.stdout[-2000:]}"
    return json.loads(lines[0])


def assert_same(a, b, path: str = "result") -> None:
    """Equal, with floats allowed to differ in the last bits (sums in another order)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, path
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys differ"
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_jobs_on_two_workers_equal_local_mode(cluster, spark, tmp_path):
    from mqttids.jobs.analyze import analyze_job
    from mqttids.jobs.store import open_job_warehouse
    from mqttids.jobs.train import train_spark_models
    from mqttids.models import bundle as bundles
    from mqttids.models.workflow import TrainOptions

    write_csv(tmp_path / "train.csv", 600, seed=21, bad_every=40)
    write_csv(tmp_path / "test.csv", 200, seed=22, bad_every=0)
    on_cluster, local = tmp_path / "wh-cluster", tmp_path / "wh-local"
    with open_warehouse(f"parquet:{local}") as lib:
        lib.ingest([tmp_path / "train.csv"], "train")
        lib.ingest([tmp_path / "test.csv"], "test")

    ingest = submit(cluster, "--warehouse", f"parquet:{on_cluster}", "ingest-csv",
                    str(tmp_path / "train.csv"), "--split", "train")
    assert ingest["loaded"] == 600 and ingest["rejected"] == 15
    with open_warehouse(f"parquet:{on_cluster}") as wh:
        wh.ingest([tmp_path / "test.csv"], "test")
        cluster_rows = sorted(map(str, wh.read_packets_arrow().to_pylist()))
    with open_warehouse(f"parquet:{local}") as lib:
        assert cluster_rows == sorted(map(str, lib.read_packets_arrow().to_pylist()))

    analysis = submit(cluster, "--warehouse", f"parquet:{on_cluster}",
                      "--result", str(tmp_path / "analyze.json"), "analyze")
    trained = submit(cluster, "--warehouse", f"parquet:{on_cluster}", "train",
                     "--models", "lr", "--folds", "2", "--features", "packet",
                     "--grid", json.dumps(GRID), "--models-dir", str(tmp_path / "models-cluster"))
    assert json.loads((tmp_path / "analyze.json").read_text()) == analysis
    for i in (1, 2):  # each worker ran an executor of these applications
        assert list((cluster.root / f"work-{i}").glob("app-*/*/stderr")), cluster.diagnostics()

    with open_job_warehouse(spark, f"parquet:{local}") as wh:
        assert_same(analysis, json.loads(json.dumps(analyze_job(wh), default=str)))
        options = TrainOptions(models=("lr",), folds=2, feature_set="packet",
                               grids={"lr": tuple(GRID["lr"])}).check()
        expected = train_spark_models(spark, wh, options, str(tmp_path / "models-local"))
    got = trained["models"]
    assert [m["name"] for m in got] == [m["name"] for m in expected] == ["lr-packet"]
    for key in ("best_params", "train_rows", "tuning_rows", "features", "time_delta"):
        assert got[0][key] == expected[0][key]
    assert_same(got[0]["cv"], expected[0]["cv"])

    with open_warehouse(f"parquet:{local}") as lib:
        test_rows = lib.read_packets_arrow(split="test")
    mine = bundles.load_scorer(tmp_path / "models-cluster" / "lr-packet")
    theirs = bundles.load_scorer(tmp_path / "models-local" / "lr-packet")
    assert list(mine.predict(test_rows)) == list(theirs.predict(test_rows))
