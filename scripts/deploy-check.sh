#!/usr/bin/env bash
# Offline checks of the deployment files: yamllint (k8s/, airflow_dags/), hadolint (Dockerfile),
# kubernetes-validate --strict, JSON schemas for the custom resources (generated from the
# operators' CRDs by k8s/schemas/generate.py; a test regenerates them) plus the operators'
# run-time rules, Pod Security "restricted" for every pod, the Airflow DagBag, every templated
# field rendered by Airflow for runs with and without a logical date, and every DAG/Deployment
# command line parsed by the real binaries (built by cargo test).
# Also the monitoring (k8s/monitoring/): promtool check/test rules on the alert rules (promtool
# from scripts/setup.sh), the Grafana dashboard's queries against the metrics the code exports.
# Installs its pinned tools into .venv on first use (~1.5 min). Part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
req=tests/deploy/requirements.txt
stamp="$venv/.requirements"
if ! cmp -s "$req" "$stamp" 2>/dev/null; then
  echo "deploy-check: installing pinned tools into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi
bin="$venv/bin"

echo "== yamllint k8s/ airflow_dags/"
"$bin/yamllint" -s k8s/ airflow_dags/
echo "== hadolint Dockerfile"
"$bin/hadolint" Dockerfile
echo "== kubernetes-validate --strict (core resources)"
# Custom resources are reported as skipped here; tests/deploy checks them against k8s/schemas.
out=$("$bin/kubernetes-validate" --strict -k 1.31 --quiet k8s/*.yaml 2>&1) || { echo "$out"; exit 1; }
echo "$out" | grep -v "Couldn't find schema for kind" || true
echo "== pytest tests/deploy (CRD schemas, cross-checks, pod security, Airflow DagBag and rendering, command lines, promtool, dashboard)"
"$bin/python" -m pytest -q -p no:cacheprovider tests/deploy
