"""deploy/dataproc/run.sh without Google Cloud: the dry run, and a run against a fake gcloud.

No network reaches Google from here, so nothing real is created: the dry run
must print every command in the order it would run them, and a run whose
``gcloud`` is a stub that records its arguments (and fails where told) shows
that the cluster is deleted whatever happens after it was created.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "deploy" / "dataproc" / "run.sh"
INIT = REPO / "deploy" / "dataproc" / "init.sh"
SECRET = "pw-Never-Print-Me-42"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = dict(os.environ, PGPASSWORD=SECRET, MQTTIDS_DB_PASSWORD=SECRET, **(env or {}))
    return subprocess.run(["bash", str(RUN), *args], capture_output=True, text=True,
                          env=full, timeout=60)


def commands(out: str) -> list[list[str]]:
    return [shlex.split(line) for line in out.splitlines() if line and not line.startswith("#")]


def index(cmds: list[list[str]], *words: str, start: int = 0) -> int:
    """Position of the first command (from ``start``) that begins with ``words``."""
    for i in range(start, len(cmds)):
        if cmds[i][:len(words)] == list(words):
            return i
    raise AssertionError(f"no command {' '.join(words)!r} in:\n" +
                         "\n".join(" ".join(c) for c in cmds))


BASE = ("--dry-run", "--project", "demo-proj", "--cluster", "mqttids-test",
        "--train-csv", "/data/train70.csv", "--test-csv", "gs://other/test30.csv")


def test_dry_run_prints_the_whole_run_in_order_and_runs_nothing(fake_cloud):
    bin_dir, log, _ = fake_cloud
    done = run(*BASE, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr
    assert not log.exists()  # neither gcloud nor the wheel build ran
    cmds = commands(done.stdout)
    wheel = index(cmds, "python3", "-m", "pip", "wheel")
    bucket = index(cmds, "gcloud", "storage", "buckets", "create")
    staged = [c[-1] for c in cmds if c[:3] == ["gcloud", "storage", "cp"]]
    create = index(cmds, "gcloud", "dataproc", "clusters", "create")
    submits = [i for i, c in enumerate(cmds) if c[:4] == ["gcloud", "dataproc", "jobs", "submit"]]
    delete = index(cmds, "gcloud", "dataproc", "clusters", "delete")
    assert wheel < bucket < create < submits[0] and submits[-1] < delete == len(cmds) - 1
    assert max(i for i, c in enumerate(cmds) if c[:3] == ["gcloud", "storage", "cp"]) < create
    assert "gs://demo-proj-mqttids/mqttids/init.sh" in staged
    assert "gs://demo-proj-mqttids/mqttids/main.py" in staged
    assert "gs://demo-proj-mqttids/data/train/train70.csv" in staged
    assert not any("test30" in s for s in staged)  # already in Cloud Storage: used in place
    wheel_uri = next(s for s in staged if s.endswith("-py3-none-any.whl"))

    c = cmds[create]
    assert c[c.index("--image-version") + 1] == "3.0-debian12"
    assert c[c.index("--initialization-actions") + 1] == "gs://demo-proj-mqttids/mqttids/init.sh"
    assert f"mqttids-wheel={wheel_uri}" in c[c.index("--metadata") + 1].split(",")
    assert "--max-idle" in c and c[c.index("--project") + 1] == "demo-proj"
    assert cmds[delete][4] == "mqttids-test" and "--quiet" in cmds[delete]

    jobs = [cmds[i][cmds[i].index("--") + 1:] for i in submits]
    steps = [next(a for a in j if a in ("ingest-csv", "analyze", "train")) for j in jobs]
    assert steps == ["ingest-csv", "ingest-csv", "analyze", "train"]
    assert "gs://demo-proj-mqttids/data/train/train70.csv" in jobs[0] and "train" in jobs[0]
    assert "gs://other/test30.csv" in jobs[1] and "test" in jobs[1]
    for i, job in zip(submits, jobs):
        assert cmds[i][5] == "gs://demo-proj-mqttids/mqttids/main.py"
        assert job[job.index("--warehouse") + 1] == "parquet:gs://demo-proj-mqttids/warehouse"


def test_dry_run_with_cloud_sql_stages_the_driver_and_prints_no_secret():
    done = run(*BASE, "--cloudsql", "demo-proj:us-central1:pg", "--db", "ids",
               "--db-user", "ids_loader", "--db-password-secret", "ids-pw")
    assert done.returncode == 0, done.stderr
    everything = done.stdout + done.stderr
    assert SECRET not in everything
    assert not re.search(r"password=|:[^@/\s]+@127", everything)
    cmds = commands(done.stdout)
    create = index(cmds, "gcloud", "dataproc", "clusters", "create")
    assert index(cmds, "gcloud", "storage", "cp", "/usr/share/java/postgresql.jar") < create
    meta = dict(kv.split("=", 1) for kv in
                cmds[create][cmds[create].index("--metadata") + 1].split(","))
    assert meta["mqttids-cloudsql"] == "demo-proj:us-central1:pg"
    assert meta["mqttids-db-secret"] == "ids-pw" and meta["mqttids-sql-connect"] == "proxy"
    job = cmds[index(cmds, "gcloud", "dataproc", "jobs", "submit")]
    assert job[job.index("--warehouse") + 1] == \
        "postgresql://ids_loader@127.0.0.1:5432/ids?passfile=/etc/mqttids/pgpass"


def test_private_ip_mode_looks_the_address_up_and_requires_tls():
    done = run(*BASE, "--cloudsql", "demo-proj:us-central1:pg", "--sql-connect", "private-ip")
    assert done.returncode == 0, done.stderr
    cmds = commands(done.stdout)
    describe = index(cmds, "gcloud", "sql", "instances", "describe", "pg")
    assert describe < index(cmds, "gcloud", "dataproc", "clusters", "create")
    job = cmds[index(cmds, "gcloud", "dataproc", "jobs", "submit")]
    url = job[job.index("--warehouse") + 1]
    assert url.startswith("postgresql://mqttids@PRIVATE_IP:5432/mqttids?") and \
        "sslmode=require" in url


@pytest.mark.parametrize("args, message", [
    (("--image-version", "2.3-debian12"), "runs Spark 3 but mqttids is built for Spark 4"),
    (("--image-version", "9.9-x"), "unknown Dataproc image version"),
    (("--workers", "1"), "--workers must be a whole number >= 2"),
    (("--cloudsql", "just-a-name"), "PROJECT:REGION:INSTANCE"),
    (("--features", "pcap"), "--features must be packet or flow"),
    (("--sql-connect", "vpn"), "--sql-connect must be proxy or private-ip"),
    (("--bogus",), "unknown option '--bogus'"),
])
def test_bad_options_stop_before_any_command(args, message):
    done = run(*BASE, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert commands(done.stdout) == []


def test_missing_project_or_data_is_refused():
    assert "no project" in run("--dry-run", "--train-csv", "a", "--test-csv", "b",
                               env={"CLOUDSDK_CORE_PROJECT": ""}).stderr
    assert "no train data" in run("--dry-run", "--project", "p", "--test-csv", "b").stderr


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture()
def fake_cloud(tmp_path):
    """gcloud and python3 stubs that log their arguments; gcloud fails on FAIL_ON."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    _stub(bin_dir, "gcloud", f"""
echo "gcloud $*" >> {log}
if [[ -n "${{FAIL_ON:-}}" && "$*" == *"$FAIL_ON"* ]]; then echo "stub failure" >&2; exit 7; fi
if [[ "$1 $2 $3" == "storage buckets describe" ]]; then exit 1; fi
exit 0
""")
    _stub(bin_dir, "python3", f"""
echo "python3 $*" >> {log}
if [[ "$*" == *"pip wheel"* ]]; then
  dir="${{@: -2:1}}"; mkdir -p "$dir"; touch "$dir/mqttids-0.1.0-py3-none-any.whl"
fi
""")
    (tmp_path / "train.csv").write_text("x\n")
    (tmp_path / "test.csv").write_text("x\n")
    return bin_dir, log, tmp_path


def _real_run(fake_cloud, fail_on: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir, log, data = fake_cloud
    done = run("--project", "demo-proj", "--cluster", "mqttids-test",
               "--train-csv", str(data / "train.csv"), "--test-csv", str(data / "test.csv"),
               env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAIL_ON": fail_on})
    return done, log.read_text().splitlines()


def test_a_failing_job_still_deletes_the_cluster(fake_cloud):
    done, calls = _real_run(fake_cloud, fail_on="step=analyze")
    assert done.returncode == 7
    submits = [c for c in calls if c.startswith("gcloud dataproc jobs submit")]
    assert len(submits) == 3  # ingest train, ingest test, analyze (failed); train never ran
    assert calls[-1].startswith("gcloud dataproc clusters delete mqttids-test")
    assert "deleting cluster mqttids-test (exit status 7)" in done.stderr


def test_a_failed_cluster_creation_is_cleaned_up_too(fake_cloud):
    done, calls = _real_run(fake_cloud, fail_on="clusters create")
    assert done.returncode == 7
    assert not [c for c in calls if "jobs submit" in c]
    assert calls[-1].startswith("gcloud dataproc clusters delete mqttids-test")


def test_a_good_run_creates_the_bucket_once_and_deletes_the_cluster_at_the_end(fake_cloud):
    done, calls = _real_run(fake_cloud)
    assert done.returncode == 0, done.stderr
    assert [c for c in calls if "buckets create" in c] == [
        "gcloud storage buckets create gs://demo-proj-mqttids --project demo-proj "
        "--location us-central1 --uniform-bucket-level-access"]
    assert len([c for c in calls if c.startswith("gcloud dataproc jobs submit")]) == 4
    assert calls[-1].startswith("gcloud dataproc clusters delete mqttids-test")
    assert SECRET not in done.stdout + done.stderr + "\n".join(calls)


def test_init_action_is_valid_bash_and_never_replaces_the_images_spark():
    subprocess.run(["bash", "-n", str(INIT)], check=True)
    text = INIT.read_text()
    assert '"${wheel}[postgres]"' in text
    assert "pyspark==" not in text and "[spark" not in text and "[all" not in text
    assert "/usr/lib/spark/jars" in text                      # the JDBC driver
    assert "cloud-sql-proxy" in text and "secrets versions access" in text
    assert "chmod 600" in text and "set -x" not in text       # the password stays private
