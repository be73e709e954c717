#!/usr/bin/env bash
# Memory benchmark of the real binary (issue #10 item 5; docs/reliability.md): what 10 000
# idle keep-alive connections cost, then a soak at high load checking that resident memory
# stays within 10 % of its post-warm-up level. Not part of scripts/test.sh: it takes the
# whole machine for the soak's duration.
#
#   scripts/bench-memory.sh                    # 10 000 connections, 10-minute soak
#   FHIRGATE_SOAK_SECS=120 scripts/bench-memory.sh
#   FHIRGATE_IDLE_CONNECTIONS=20000 scripts/bench-memory.sh idle   # only the connection part
#   scripts/bench-memory.sh soak                                   # only the soak
#
# Figures are printed on lines starting with "idle connections:" and "soak:".
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export FHIRGATE_SOAK_SECS="${FHIRGATE_SOAK_SECS:-600}"
export FHIRGATE_IDLE_CONNECTIONS="${FHIRGATE_IDLE_CONNECTIONS:-10000}"

# Both processes hold one descriptor per connection; the test raises its own soft limit as
# far as the hard limit allows, and the gateway inherits it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

case "${1:-all}" in
  idle) filter=memory::ten_thousand_idle_keep_alive_connections_cost_under_100_mib ;;
  soak) filter=memory::resident_memory_stays_flat_under_sustained_load ;;
  all) filter=memory:: ;;
  *) echo "usage: $0 [idle|soak|all]" >&2; exit 2 ;;
esac

# Release build: the figures are about the binary operators run.
# BENCH_PROFILE=dev runs the debug build (slower, larger) when a release build does not fit.
cargo test --profile "${BENCH_PROFILE:-release}" -p fhirgate --test reliability -- --ignored --nocapture --test-threads=1 "$filter"
