#!/usr/bin/env bash
# Fuzz every reader of untrusted input (readers/src/lib.rs, targets in fuzz/fuzz_targets/) for
# SECONDS each (default 600), one after another, with libFuzzer's memory and time limits: an
# input that panics, hangs (> 10 s), or allocates more than 512 MiB at once is a failure, and
# is left in fuzz/artifacts/NAME/ for `cargo nextest` to keep as a regression test (copy it to
# fuzz/regressions/NAME/). New coverage goes to a scratch corpus, not the committed seeds.
#
#   bash ci/fuzz.sh [SECONDS] [TARGET ...]
#
# Needs the nightly toolchain (these machines carry one beside stable) and cargo-fuzz, which
# this script installs when missing. The project's build, tests and CI stay on stable.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
shift || true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/beatmatch-target}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(ls fuzz/fuzz_targets | sed 's/\.rs$//')
scratch="${FUZZ_SCRATCH:-$(mktemp -d)}"
cargo +nightly fuzz build --fuzz-dir fuzz
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
  echo "== $t: $secs s ($(date -u +%H:%M:%S))"
  cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len=65536 \
    -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 2>&1 | grep -E "^(#[0-9]+ +DONE|Done|stat::number_of_executed_units|stat::peak_rss|==|SUMMARY|artifact|INFO: Loaded|Test unit written)" || true
  if ls "fuzz/artifacts/$t"/* >/dev/null 2>&1; then echo "!! $t left artifacts in fuzz/artifacts/$t"; fi
done
