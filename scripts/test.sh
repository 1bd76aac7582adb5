#!/usr/bin/env bash
# The one command that runs every check of Kappa Exchange (README: "Run all tests").
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== real Apache Kafka for the tests (every end-to-end test runs on it and on the embedded broker)"
kafka_dir=$(mktemp -d -t kx-test-kafka.XXXXXX)
kafka_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
KAPPA_TEST_KAFKA=$(bash scripts/kafka.sh start --port "$kafka_port" --dir "$kafka_dir" --ephemeral --watch-pid $$)
export KAPPA_TEST_KAFKA
trap 'bash scripts/kafka.sh stop --dir "$kafka_dir" >/dev/null 2>&1 || true' EXIT

echo "== cargo test"
cargo test --workspace --locked

echo "== deployment checks"
bash scripts/deploy-check.sh

echo "== fuzzing: each target for 60 s over its committed corpus"
bash scripts/fuzz.sh 60
