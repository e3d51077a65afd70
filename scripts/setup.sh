#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for mqttids: system packages (as root,
# or a list of what to install otherwise), then .venv with the package.
# Re-running is cheap: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v tshark >/dev/null || need+=(tshark)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
[ -f /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)
command -v mosquitto >/dev/null || need+=(mosquitto)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing system packages: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup: missing system packages; as root run:" >&2
    echo "  apt-get update && apt-get install -y ${need[*]}" >&2
    echo "setup: continuing; tests that need them will be skipped" >&2
  fi
fi

PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.installed
# Reinstall when the package's build inputs changed (the C decoder is compiled then).
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] \
   || [ src/mqttids/capture/_cdecoder.c -nt "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  echo "setup: installing mqttids and its dependencies into .venv (first time: a few minutes)" >&2
  .venv/bin/python -m pip install -q -e '.[all,dev]'
  touch "$stamp"
fi
