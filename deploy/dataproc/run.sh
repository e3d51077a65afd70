#!/usr/bin/env bash
# One full mqttids run on Google Cloud Dataproc, from a source checkout:
#
#   build the wheel -> create/reuse a bucket -> stage wheel, init action, job file,
#   JDBC driver and data -> create a cluster (Spark 4 image, init action installs
#   the wheel) -> submit ingest-csv (train, test), analyze, train -> delete the
#   cluster, also when anything fails (trap on EXIT).
#
#   deploy/dataproc/run.sh --project P --train-csv train70.csv --test-csv test30.csv
#   deploy/dataproc/run.sh --dry-run ...      # print every command, run none
#
# The warehouse is Parquet in the bucket unless --cloudsql names a Cloud SQL for
# PostgreSQL instance; its password is read on the cluster from Secret Manager and
# never passes through this script. See docs/distributed.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

PROJECT="${CLOUDSDK_CORE_PROJECT:-}"
REGION="us-central1"
ZONE=""
BUCKET=""
CLUSTER="mqttids-$(date -u +%Y%m%d-%H%M%S)"
IMAGE_VERSION="3.0-debian12"
MASTER_TYPE="n2-standard-4"
WORKER_TYPE="n2-standard-4"
WORKERS=4
DISK_GB=100
MODELS="lr,rf"
FOLDS=3
FEATURES="packet"
CLOUDSQL=""
SQL_CONNECT="proxy"
DB_NAME="mqttids"
DB_USER="mqttids"
DB_SECRET="mqttids-db-password"
PROXY_VERSION="v2.20.0"
JDBC_JAR="${MQTTIDS_JDBC_JAR:-/usr/share/java/postgresql.jar}"
PYTHON="${PYTHON:-python3}"
MAX_IDLE="1h"
DRY_RUN=0
TRAIN_CSV=()
TEST_CSV=()

usage() {
  cat <<'EOF'
usage: deploy/dataproc/run.sh --project ID --train-csv FILE... --test-csv FILE... [options]

  --project ID             Google Cloud project (or CLOUDSDK_CORE_PROJECT)
  --region R               region of bucket, cluster and jobs (default us-central1)
  --zone Z                 zone of the cluster (default: Dataproc picks one)
  --bucket NAME            bucket for wheel, data and results (default PROJECT-mqttids)
  --cluster NAME           cluster name (default mqttids-UTCDATE-TIME)
  --train-csv FILE|gs://   MQTTset CSV of the train split (repeat for several)
  --test-csv FILE|gs://    MQTTset CSV of the test split (repeat for several)
  --workers N              primary workers (default 4)
  --master-type T          master machine type (default n2-standard-4)
  --worker-type T          worker machine type (default n2-standard-4)
  --disk-gb N              boot disk per node, pd-balanced (default 100)
  --image-version V        Dataproc image; its Spark major must be pyspark's (default 3.0-debian12)
  --models LIST            Spark models to train (default lr,rf)
  --folds K                cross-validation folds (default 3)
  --features packet|flow   feature set to train on (default packet)
  --cloudsql CONN          PROJECT:REGION:INSTANCE of Cloud SQL for PostgreSQL; the warehouse
                           goes there instead of Parquet in the bucket
  --sql-connect MODE       proxy (Cloud SQL Auth Proxy on every node, default) or private-ip
  --db NAME                database (default mqttids)
  --db-user USER           database user (default mqttids)
  --db-password-secret S   Secret Manager secret holding that user's password
                           (default mqttids-db-password)
  --jdbc-jar PATH          PostgreSQL JDBC driver to stage (default /usr/share/java/postgresql.jar)
  --max-idle D             Dataproc deletes the cluster after this idle time, a safety net
                           if this script dies before its own teardown (default 1h)
  --dry-run                print every command in order and run none
  -h, --help               this help
EOF
}

die() { echo "run.sh: error: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --project) PROJECT="${2:?}"; shift 2 ;;
    --region) REGION="${2:?}"; shift 2 ;;
    --zone) ZONE="${2:?}"; shift 2 ;;
    --bucket) BUCKET="${2:?}"; shift 2 ;;
    --cluster) CLUSTER="${2:?}"; shift 2 ;;
    --train-csv) TRAIN_CSV+=("${2:?}"); shift 2 ;;
    --test-csv) TEST_CSV+=("${2:?}"); shift 2 ;;
    --workers) WORKERS="${2:?}"; shift 2 ;;
    --master-type) MASTER_TYPE="${2:?}"; shift 2 ;;
    --worker-type) WORKER_TYPE="${2:?}"; shift 2 ;;
    --disk-gb) DISK_GB="${2:?}"; shift 2 ;;
    --image-version) IMAGE_VERSION="${2:?}"; shift 2 ;;
    --models) MODELS="${2:?}"; shift 2 ;;
    --folds) FOLDS="${2:?}"; shift 2 ;;
    --features) FEATURES="${2:?}"; shift 2 ;;
    --cloudsql) CLOUDSQL="${2:?}"; shift 2 ;;
    --sql-connect) SQL_CONNECT="${2:?}"; shift 2 ;;
    --db) DB_NAME="${2:?}"; shift 2 ;;
    --db-user) DB_USER="${2:?}"; shift 2 ;;
    --db-password-secret) DB_SECRET="${2:?}"; shift 2 ;;
    --jdbc-jar) JDBC_JAR="${2:?}"; shift 2 ;;
    --max-idle) MAX_IDLE="${2:?}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
done

# -- checks before anything is created ----------------------------------------------------

[[ -n "$PROJECT" ]] || die "no project: pass --project ID (or set CLOUDSDK_CORE_PROJECT)"
[[ ${#TRAIN_CSV[@]} -gt 0 ]] || die "no train data: pass --train-csv FILE (an MQTTset CSV)"
[[ ${#TEST_CSV[@]} -gt 0 ]] || die "no test data: pass --test-csv FILE (an MQTTset CSV)"
[[ "$WORKERS" =~ ^[0-9]+$ && "$WORKERS" -ge 2 ]] \
  || die "--workers must be a whole number >= 2 (Dataproc's standard clusters), got '$WORKERS'"
[[ "$FOLDS" =~ ^[0-9]+$ && "$FOLDS" -ge 2 ]] || die "--folds must be >= 2, got '$FOLDS'"
[[ "$DISK_GB" =~ ^[0-9]+$ && "$DISK_GB" -ge 30 ]] || die "--disk-gb must be >= 30, got '$DISK_GB'"
[[ "$FEATURES" == packet || "$FEATURES" == flow ]] \
  || die "--features must be packet or flow, got '$FEATURES'"
[[ "$SQL_CONNECT" == proxy || "$SQL_CONNECT" == private-ip ]] \
  || die "--sql-connect must be proxy or private-ip, got '$SQL_CONNECT'"
[[ -z "$CLOUDSQL" || "$CLOUDSQL" =~ ^[^:]+:[^:]+:[^:]+$ ]] \
  || die "--cloudsql must be PROJECT:REGION:INSTANCE (the instance connection name), got '$CLOUDSQL'"
[[ "$CLUSTER" =~ ^[a-z]([-a-z0-9]{0,49}[a-z0-9])?$ ]] \
  || die "cluster name '$CLUSTER' is not valid: lower-case letters, digits and dashes"
BUCKET="${BUCKET:-${PROJECT}-mqttids}"
BUCKET="${BUCKET#gs://}"

# The Spark major version of the image must be the one pyspark is pinned to.
pyspark_major() {
  sed -n 's/.*"pyspark==\([0-9][0-9]*\)\..*/\1/p' "$REPO/pyproject.toml" | head -n 1
}
image_spark_major() {
  case "$1" in
    3.*) echo 4 ;;        # Dataproc 3.0: Spark 4.0, Python 3.11, Java 17
    2.*) echo 3 ;;        # Dataproc 2.0-2.3: Spark 3.x
    1.*) echo 2 ;;
    *) echo "" ;;
  esac
}
WANT_MAJOR="$(pyspark_major)"
[[ -n "$WANT_MAJOR" ]] || die "cannot read the pinned pyspark version from $REPO/pyproject.toml"
HAVE_MAJOR="$(image_spark_major "$IMAGE_VERSION")"
[[ -n "$HAVE_MAJOR" ]] || die "unknown Dataproc image version '$IMAGE_VERSION': use e.g. 3.0-debian12"
[[ "$HAVE_MAJOR" == "$WANT_MAJOR" ]] || die "image $IMAGE_VERSION runs Spark $HAVE_MAJOR but \
mqttids is built for Spark $WANT_MAJOR (pyspark $WANT_MAJOR.x): use --image-version 3.0-debian12"

if [[ -n "$CLOUDSQL" && $DRY_RUN -eq 0 && ! -f "$JDBC_JAR" ]]; then
  die "no PostgreSQL JDBC driver at $JDBC_JAR: apt-get install libpostgresql-jdbc-java, or \
pass --jdbc-jar PATH"
fi
if [[ $DRY_RUN -eq 0 ]]; then
  command -v gcloud >/dev/null || die "gcloud is not installed: see https://cloud.google.com/sdk"
  for f in "${TRAIN_CSV[@]}" "${TEST_CSV[@]}"; do
    [[ "$f" == gs://* || -f "$f" ]] || die "$f: no such file"
  done
fi

# -- running or printing -------------------------------------------------------------------

# Every command goes through run(): printed (shell-quoted, one line, on the script's own
# stdout even inside $(...)) always, executed unless --dry-run.
exec 3>&1
run() {
  local arg line=""
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then line+="$arg "
    else printf -v arg '%q' "$arg"; line+="$arg "; fi
  done
  echo "${line% }" >&3
  if [[ $DRY_RUN -eq 0 ]]; then "$@"; fi
}

STAGE="gs://$BUCKET/mqttids"
RUN_ID="${CLUSTER}"
RESULTS="gs://$BUCKET/results/$RUN_ID"
GCLOUD_COMMON=(--project "$PROJECT" --region "$REGION")

# -- 1. the wheel: pure Python, so it installs on any node --------------------------------
# The optional C decoder (capture only, never used by the Spark jobs) is left out of this
# build, so that a wheel built on a laptop is py3-none-any and installs on Dataproc's Linux.
BUILD_DIR="$(mktemp -d "${TMPDIR:-/tmp}/mqttids-wheel.XXXXXX")"
cleanup_build() { rm -rf "$BUILD_DIR"; }
trap cleanup_build EXIT
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n 1)"
WHEEL="mqttids-${VERSION}-py3-none-any.whl"
run cp -R "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/src" "$BUILD_DIR/"
run rm -rf "$BUILD_DIR/src/mqttids/capture/_cdecoder.c" "$BUILD_DIR"/src/*.egg-info
run find "$BUILD_DIR/src" \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
run "$PYTHON" -m pip wheel --no-deps --wheel-dir "$BUILD_DIR/dist" "$BUILD_DIR"
if [[ $DRY_RUN -eq 0 && ! -f "$BUILD_DIR/dist/$WHEEL" ]]; then
  die "the build did not produce $WHEEL (found: $(ls "$BUILD_DIR/dist"))"
fi

# -- 2. bucket and staging ---------------------------------------------------------------
if [[ $DRY_RUN -eq 1 ]] || ! gcloud storage buckets describe "gs://$BUCKET" --project "$PROJECT" \
    >/dev/null 2>&1; then
  run gcloud storage buckets create "gs://$BUCKET" --project "$PROJECT" --location "$REGION" \
    --uniform-bucket-level-access
fi
run gcloud storage cp "$BUILD_DIR/dist/$WHEEL" "$STAGE/dist/$WHEEL"
run gcloud storage cp "$HERE/init.sh" "$STAGE/init.sh"
run gcloud storage cp "$REPO/src/mqttids/jobs/main.py" "$STAGE/main.py"
if [[ -n "$CLOUDSQL" ]]; then
  run gcloud storage cp "$JDBC_JAR" "$STAGE/postgresql.jar"
fi

# Local files are uploaded; gs:// URIs are used where they are.
stage_data() {  # split, files...
  local split="$1"; shift
  local f
  for f in "$@"; do
    if [[ "$f" == gs://* ]]; then
      echo "$f"
    else
      run gcloud storage cp "$f" "gs://$BUCKET/data/$split/$(basename "$f")" >&2
      echo "gs://$BUCKET/data/$split/$(basename "$f")"
    fi
  done
}
mapfile -t TRAIN_URIS < <(stage_data train "${TRAIN_CSV[@]}")
mapfile -t TEST_URIS < <(stage_data test "${TEST_CSV[@]}")

# -- 3. where the warehouse lives ----------------------------------------------------------
PASSFILE="/etc/mqttids/pgpass"   # written by init.sh from Secret Manager; holds no URL
if [[ -z "$CLOUDSQL" ]]; then
  WAREHOUSE="parquet:gs://$BUCKET/warehouse"
elif [[ "$SQL_CONNECT" == proxy ]]; then
  WAREHOUSE="postgresql://$DB_USER@127.0.0.1:5432/$DB_NAME?passfile=$PASSFILE"
else
  INSTANCE="${CLOUDSQL##*:}"
  DESCRIBE=(gcloud sql instances describe "$INSTANCE" --project "$PROJECT" --format json)
  if [[ $DRY_RUN -eq 1 ]]; then
    run "${DESCRIBE[@]}"
    DB_HOST="PRIVATE_IP"
  else
    DB_HOST="$(run "${DESCRIBE[@]}" | "$PYTHON" -c 'import json, sys
print(next((a["ipAddress"] for a in json.load(sys.stdin).get("ipAddresses", [])
            if a.get("type") == "PRIVATE"), ""))')"
    [[ -n "$DB_HOST" ]] || die "Cloud SQL instance $INSTANCE has no private IP: enable one \
(private services access) or use --sql-connect proxy"
  fi
  WAREHOUSE="postgresql://$DB_USER@$DB_HOST:5432/$DB_NAME?passfile=$PASSFILE&sslmode=require"
fi

# -- 4. the cluster, deleted on any exit from here on ---------------------------------------
teardown() {
  local status=$?
  trap - EXIT
  echo "# teardown: deleting cluster $CLUSTER (exit status $status)" >&2
  run gcloud dataproc clusters delete "$CLUSTER" "${GCLOUD_COMMON[@]}" --quiet || \
    echo "run.sh: could not delete cluster $CLUSTER; delete it by hand" >&2
  cleanup_build
  exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM

METADATA="mqttids-wheel=$STAGE/dist/$WHEEL"
if [[ -n "$CLOUDSQL" ]]; then
  METADATA+=",mqttids-jdbc-jar=$STAGE/postgresql.jar,mqttids-db-secret=$DB_SECRET"
  METADATA+=",mqttids-db-user=$DB_USER,mqttids-sql-connect=$SQL_CONNECT"
  METADATA+=",mqttids-cloudsql=$CLOUDSQL,mqttids-proxy-version=$PROXY_VERSION"
fi
CREATE=(gcloud dataproc clusters create "$CLUSTER" "${GCLOUD_COMMON[@]}"
  --image-version "$IMAGE_VERSION"
  --master-machine-type "$MASTER_TYPE" --master-boot-disk-type pd-balanced
  --master-boot-disk-size "${DISK_GB}GB"
  --num-workers "$WORKERS" --worker-machine-type "$WORKER_TYPE"
  --worker-boot-disk-type pd-balanced --worker-boot-disk-size "${DISK_GB}GB"
  --initialization-actions "$STAGE/init.sh" --initialization-action-timeout 20m
  --metadata "$METADATA" --scopes cloud-platform --max-idle "$MAX_IDLE"
  --labels app=mqttids)
[[ -n "$ZONE" ]] && CREATE+=(--zone "$ZONE")
run "${CREATE[@]}"

# -- 5. the jobs ---------------------------------------------------------------------------
submit() {  # name, job arguments...
  local name="$1"; shift
  run gcloud dataproc jobs submit pyspark "$STAGE/main.py" --cluster "$CLUSTER" \
    "${GCLOUD_COMMON[@]}" --labels "app=mqttids,step=$name" -- \
    --warehouse "$WAREHOUSE" --result "$RESULTS/$name.json" "$@"
}
submit ingest-train ingest-csv "${TRAIN_URIS[@]}" --split train
submit ingest-test ingest-csv "${TEST_URIS[@]}" --split test
submit analyze analyze
submit train train --models "$MODELS" --folds "$FOLDS" --features "$FEATURES" \
  --models-dir "gs://$BUCKET/models/$RUN_ID"

echo "# results: $RESULTS/ (JSON per step), models: gs://$BUCKET/models/$RUN_ID/," \
  "warehouse: ${WAREHOUSE%%\?*}" >&2
# -- 6. teardown runs from the EXIT trap ---------------------------------------------------
