#!/usr/bin/env bash
# The one command that runs every check of Kappa Exchange (README: "Run all tests").
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

echo "== deployment checks"
bash scripts/deploy-check.sh
