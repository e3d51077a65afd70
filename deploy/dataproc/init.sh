#!/usr/bin/env bash
# Dataproc initialisation action for mqttids; runs as root on every node while the
# cluster is created. deploy/dataproc/run.sh stages it and passes its settings as
# cluster metadata:
#
#   mqttids-wheel          gs:// URI of the mqttids wheel (required)
#   mqttids-jdbc-jar       gs:// URI of the PostgreSQL JDBC driver (with Cloud SQL)
#   mqttids-cloudsql       PROJECT:REGION:INSTANCE of Cloud SQL for PostgreSQL
#   mqttids-sql-connect    proxy (Cloud SQL Auth Proxy on 127.0.0.1:5432) or private-ip
#   mqttids-proxy-version  Auth Proxy release, e.g. v2.20.0
#   mqttids-db-secret      Secret Manager secret with the database password
#   mqttids-db-user        database user (for the password file)
#
# It installs the wheel and its dependencies into the Python that Spark runs
# (never pyspark itself: the image's Spark is the one that runs), puts the JDBC
# driver on Spark's class path, and with Cloud SQL starts the Auth Proxy (every
# node: executors write over JDBC too) and writes the password to a libpq password
# file on the master, where the driver runs. The password never appears in
# metadata, job arguments or logs.
set -euo pipefail

meta() { /usr/share/google/get_metadata_value "attributes/$1" 2>/dev/null || true; }

WHEEL_URI="$(meta mqttids-wheel)"
JDBC_URI="$(meta mqttids-jdbc-jar)"
CLOUDSQL="$(meta mqttids-cloudsql)"
SQL_CONNECT="$(meta mqttids-sql-connect)"
PROXY_VERSION="$(meta mqttids-proxy-version)"
DB_SECRET="$(meta mqttids-db-secret)"
DB_USER="$(meta mqttids-db-user)"
ROLE="$(meta dataproc-role)"
SPARK_JARS="/usr/lib/spark/jars"
PASSFILE="/etc/mqttids/pgpass"

log() { echo "mqttids-init: $*" >&2; }
fail() { log "error: $*"; exit 1; }

[[ -n "$WHEEL_URI" ]] || fail "cluster metadata mqttids-wheel is not set; create the \
cluster with deploy/dataproc/run.sh"

# The Python that PySpark runs on this image (conda on Dataproc 2.x/3.x images).
if [[ -x /opt/conda/default/bin/python ]]; then
  PY=/opt/conda/default/bin/python
else
  PY="$(command -v python3)"
fi

install_wheel() {
  local work wheel
  work="$(mktemp -d)"
  gcloud storage cp "$WHEEL_URI" "$work/"
  wheel="$work/$(basename "$WHEEL_URI")"
  # The postgres extra brings psycopg; the spark extra is left out on purpose so that
  # pip does not replace the image's pyspark. pandas<3: pyspark warns and slows with 3.
  "$PY" -m pip install --no-input --disable-pip-version-check "${wheel}[postgres]" \
    "pandas>=2.2,<3"
  "$PY" -c "import mqttids.jobs.cli, pyspark; print('mqttids-init: mqttids ready, Spark', \
pyspark.__version__)"
  rm -rf "$work"
}

install_jdbc() {
  [[ -n "$JDBC_URI" ]] || return 0
  gcloud storage cp "$JDBC_URI" "$SPARK_JARS/postgresql.jar"
  chmod 644 "$SPARK_JARS/postgresql.jar"
}

start_proxy() {
  [[ -n "$CLOUDSQL" && "$SQL_CONNECT" == proxy ]] || return 0
  local url="https://storage.googleapis.com/cloud-sql-connectors/cloud-sql-proxy"
  url+="/${PROXY_VERSION:-v2.20.0}/cloud-sql-proxy.linux.amd64"
  curl -fsSL --retry 5 -o /usr/local/bin/cloud-sql-proxy "$url"
  chmod 755 /usr/local/bin/cloud-sql-proxy
  cat > /etc/systemd/system/cloud-sql-proxy.service <<EOF
[Unit]
Description=Cloud SQL Auth Proxy for mqttids ($CLOUDSQL)
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/cloud-sql-proxy --address 127.0.0.1 --port 5432 $CLOUDSQL
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
EOF
  systemctl daemon-reload
  systemctl enable --now cloud-sql-proxy.service
  for _ in $(seq 1 60); do
    if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
      log "Cloud SQL Auth Proxy listening on 127.0.0.1:5432 for $CLOUDSQL"
      return 0
    fi
    sleep 1
  done
  fail "the Cloud SQL Auth Proxy did not start; see journalctl -u cloud-sql-proxy"
}

write_passfile() {
  [[ -n "$CLOUDSQL" && "$ROLE" == Master ]] || return 0
  [[ -n "$DB_SECRET" ]] || fail "cluster metadata mqttids-db-secret is not set"
  local password
  mkdir -p "$(dirname "$PASSFILE")"
  umask 077
  password="$(gcloud secrets versions access latest --secret "$DB_SECRET")" \
    || fail "cannot read secret $DB_SECRET: grant the cluster's service account \
roles/secretmanager.secretAccessor on it"
  # libpq's password file: host:port:database:user:password, with : and \ escaped.
  password="${password//\\/\\\\}"
  password="${password//:/\\:}"
  printf '*:*:*:%s:%s\n' "${DB_USER:-*}" "$password" > "$PASSFILE"
  unset password
  chmod 600 "$PASSFILE"
  log "password file written to $PASSFILE (mode 600)"
}

install_wheel
install_jdbc
start_proxy
write_passfile
log "done on the $ROLE node"
