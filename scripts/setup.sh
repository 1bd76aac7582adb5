#!/usr/bin/env bash
# Installs what building and testing Kappa Exchange needs on a fresh Debian machine.
# Idempotent and quick when everything is already there.
set -euo pipefail

need=()
# chromium + chromium-driver: the dashboard's browser test (tests/dashboard_browser.rs);
# python3-venv: the deployment checks' pinned tools (scripts/deploy-check.sh);
# libssl-dev: librdkafka's TLS and SASL/SCRAM (the rdkafka "ssl" feature);
# kcat: watching topics, and scripts/kafka.sh's readiness check (a metadata request);
# python3-dev: building QuickFIX's Python module (the FIX gateway's test client).
for pkg in build-essential pkg-config zlib1g-dev libssl-dev chromium chromium-driver python3 python3-venv python3-dev kcat; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# Java 17+ and Maven: the real Apache Kafka broker of scripts/kafka.sh (fetched from Maven
# Central). Machines of this kind have them already; install Debian's where missing.
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
updated=""
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  $SUDO apt-get update -qq
  updated=1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
# promtool: checks and unit-tests the alert rules (tests/deploy/test_monitoring.py). Debian ships it
# in the prometheus package only: installed without its recommends (node exporter), and the server
# the package starts (where services start) is stopped and disabled, as nothing here uses it.
if ! command -v promtool >/dev/null 2>&1; then
  echo "setup: installing prometheus (for promtool)"
  [ -n "$updated" ] || $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/prometheus ]; then
    $SUDO /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
fi

# QuickFIX (PyPI `quickfix`, the reference FIX engine; tests/fix.rs drives the fix-gateway with it
# as the client). Only a source distribution exists: its C++ takes ~6 minutes of one core, so it
# builds in the background, in its own venv, while the rest of the setup runs (waited for below).
fix_venv="$(cd "$(dirname "$0")/.." && pwd)/.venv-fix"
fix_req="quickfix==1.16.0"
fix_pid=""
if [ "$(cat "$fix_venv/.requirements" 2>/dev/null)" != "$fix_req" ]; then
  echo "setup: building $fix_req into $fix_venv (in the background; log: $fix_venv.log)"
  (
    python3 -m venv "$fix_venv" &&
      "$fix_venv/bin/pip" install -q --disable-pip-version-check "$fix_req" &&
      echo "$fix_req" > "$fix_venv/.requirements"
  ) > "$fix_venv.log" 2>&1 &
  fix_pid=$!
fi

for tool in cargo rustfmt cargo-clippy; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is missing (install Rust with rustup, components rustfmt and clippy)" >&2; exit 1; }
done

# cargo-fuzz (scripts/fuzz.sh), pinned.
if ! cargo fuzz --version 2>/dev/null | grep -q "0.13.2"; then
  echo "setup: installing cargo-fuzz 0.13.2"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

# The broker's jars (cached in tools/kafka/lib; no network once there).
bash "$(dirname "$0")/kafka.sh" fetch

# Client examples (examples/python, tested by tests/clients.rs): the standard Python Kafka client
# and Polars; and schemathesis, which tests the live HTTP API against its OpenAPI description
# (tests/contracts.rs) — pinned, in their own venv (.venv-clients).
clients_venv="$(cd "$(dirname "$0")/.." && pwd)/.venv-clients"
clients_req="confluent-kafka==2.12.1 polars==2.1.0 schemathesis==4.32.5"
if [ "$(cat "$clients_venv/.requirements" 2>/dev/null)" != "$clients_req" ]; then
  echo "setup: installing $clients_req into $clients_venv"
  python3 -m venv "$clients_venv"
  # shellcheck disable=SC2086 # several requirements
  "$clients_venv/bin/pip" install -q --disable-pip-version-check $clients_req
  echo "$clients_req" > "$clients_venv/.requirements"
fi

if [ -n "$fix_pid" ]; then
  if ! wait "$fix_pid"; then
    echo "setup: building QuickFIX failed:" >&2
    tail -30 "$fix_venv.log" >&2
    exit 1
  fi
  echo "setup: $fix_req ready"
fi
