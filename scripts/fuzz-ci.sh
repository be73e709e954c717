#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target in fuzz/ for a short fixed time and fails on any crash.
#
#   scripts/fuzz-ci.sh                 # every target, FUZZ_TIME seconds each (default 20)
#   FUZZ_TIME=300 scripts/fuzz-ci.sh bundle config   # longer, chosen targets
#   FUZZ_SANITIZER=address scripts/fuzz-ci.sh        # with AddressSanitizer (see below)
#
# On this stable toolchain `cargo fuzz run -s none` works without a sanitizer (the default
# here: Rust code is memory-safe, so the fuzzer is looking for panics, overflows and
# violated properties). `RUSTC_BOOTSTRAP=1 cargo fuzz run` gives AddressSanitizer, which
# matters only for `unsafe` code in dependencies; FUZZ_SANITIZER=address does that.
#
# The committed seeds in fuzz/corpus/<target>/ are read but never written: new inputs go to
# a scratch corpus. A crash leaves its input in fuzz/artifacts/<target>/; copy it into the
# target's corpus so the replay test (the crate's normal `cargo test`) keeps it fixed.
# Prints one line per target with libFuzzer's executed-unit count.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

FUZZ_TIME="${FUZZ_TIME:-20}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}"
# Its own target dir: fuzz builds use instrumentation flags no normal build shares.
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/../target}/fuzz}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz (about a minute)"
  cargo install cargo-fuzz --locked
fi

if [ "$FUZZ_SANITIZER" != none ]; then
  # Sanitizers need unstable rustc flags; this opts the stable compiler into them.
  export RUSTC_BOOTSTRAP=1
fi
fuzz=(cargo fuzz)
opts=(-s "$FUZZ_SANITIZER" --target-dir "$FUZZ_TARGET_DIR")

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <("${fuzz[@]}" list)
fi

echo "==> building ${#targets[@]} fuzz targets (sanitizer: $FUZZ_SANITIZER)"
"${fuzz[@]}" build "${opts[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
summary=()
for target in "${targets[@]}"; do
  echo "==> fuzzing $target for ${FUZZ_TIME}s"
  mkdir -p "$scratch/$target" "corpus/$target"
  log="$scratch/$target.log"
  # First corpus dir receives new inputs (scratch); the committed seeds are only read.
  if "${fuzz[@]}" run "${opts[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$FUZZ_TIME" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$target")
    tail -n 40 "$log"
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  summary+=("$(printf '%-12s %-6s executions: %s' "$target" "$status" "${execs:-?}")")
done

echo
echo "==> fuzz summary (${FUZZ_TIME}s per target)"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found a crash in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
