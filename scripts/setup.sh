#!/usr/bin/env bash
# Installs what building and testing Kappa Exchange needs on a fresh Debian machine.
# Idempotent and quick when everything is already there.
set -euo pipefail

need=()
# chromium + chromium-driver: the dashboard's browser test (tests/dashboard_browser.rs);
# python3-venv: the deployment checks' pinned tools (scripts/deploy-check.sh).
for pkg in build-essential pkg-config zlib1g-dev chromium chromium-driver python3 python3-venv; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

for tool in cargo rustfmt cargo-clippy; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is missing (install Rust with rustup, components rustfmt and clippy)" >&2; exit 1; }
done
