#!/usr/bin/env bash
# Builds the cargo-fuzz targets of fuzz/ and runs each for SECONDS (default 60) over a scratch copy
# of its committed corpus (fuzz/corpus/<target>); a crash or a failed assertion fails the run and
# leaves the input in fuzz/artifacts/<target>/. Part of scripts/test.sh (60 s each).
#   bash scripts/fuzz.sh 600                  # the long run (10 min per target)
#   FUZZ_GROW=1 bash scripts/fuzz.sh 600      # ... adding what it finds to the committed corpora
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
# cargo-fuzz passes a few -Z flags to rustc; a stable toolchain accepts them with RUSTC_BOOTSTRAP
# (no nightly toolchain is installable here). No sanitizer: the fuzzed code is safe Rust, and the
# point is panics, failed assertions and differential mismatches.
export RUSTC_BOOTSTRAP=1
# Dev profile (optimized enough for fuzzing our code; a third of the release build's time).
cargo fuzz build --dev -s none
for target in $(cargo fuzz list); do
  echo "== fuzz $target for ${secs}s"
  if [ -n "${FUZZ_GROW:-}" ]; then
    corpus="corpus/$target"
  else
    corpus=$(mktemp -d)
    cp -r "corpus/$target/." "$corpus/" 2>/dev/null || true
  fi
  cargo fuzz run --dev -s none "$target" "$corpus" -- \
    -max_total_time="$secs" -max_len=8192 -print_final_stats=1 2>&1 | grep -E "^(#|Done|stat::|==|INFO: seed)|panicked|ERROR|SUMMARY|crash|Failing input" | tail -n 12
  [ -n "${FUZZ_GROW:-}" ] || rm -rf "$corpus"
done
