#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: a figure that, unlike
# requests per second on these shared 2-core machines, does not drift from run to run
# (repeated runs agree to within 0.1 %). For comparing two builds of the gateway step by step;
# throughput against nginx and HAProxy is still measured with ../shared/bench/run.sh.
#
#   scripts/bench-instructions.sh BINARY [plain|smart|audit] [PATH_AND_QUERY]
#   scripts/bench-instructions.sh target/release/fhirgate smart 'Observation?patient=123'
#
# Needs valgrind, wrk and the shared harness's files (`../shared/bench/run.sh --prepare`):
# its static upstream, RS256 token and issuer. Kernel time is not counted, and callgrind's
# CPU lacks the SHA extensions, so SHA-256 (token cache keys, audit chain) counts several
# times what it costs on the real CPU.
#
# The binary serves under callgrind twice, for 2 s and 6 s of load; the difference of the two
# totals divided by the difference of the request counts leaves start-up and shutdown out.
set -euo pipefail

binary=$(realpath "${1:?usage: $0 BINARY [plain|smart|audit] [PATH_AND_QUERY]}")
mode=${2:-plain}
target=${3:-Patient/123}
work=${FHIR_BENCH_WORK:-/tmp/fhir-proxy-bench}
port=${FHIRGATE_BENCH_PORT:-18390}

for tool in valgrind wrk nginx curl; do
  command -v "$tool" > /dev/null || { echo "$0: $tool is not installed" >&2; exit 2; }
done
[[ -f $work/tokens/valid.jwt && -f $work/conf/upstream-nginx.conf ]] ||
  { echo "$0: run ../shared/bench/run.sh --prepare first (no harness files in $work)" >&2; exit 2; }

scratch=$(mktemp -d)
upstream_pid=
cleanup() {
  [[ -n $upstream_pid ]] && kill "$upstream_pid" 2> /dev/null
  rm -rf "$scratch"
}
trap cleanup EXIT

# The harness's static FHIR upstream, unless one already listens.
if ! curl -s -o /dev/null http://127.0.0.1:18080/fhir/Patient/123; then
  nginx -p "$work/run/" -e "$scratch/upstream.log" -c "$work/conf/upstream-nginx.conf" &
  upstream_pid=$!
  for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18080/fhir/Patient/123 && break; sleep 0.1; done
fi

config=$scratch/fhirgate.yaml
{
  echo "listen: 127.0.0.1:$port"
  echo "public_base_url: http://127.0.0.1:$port/fhir"
  echo "upstream:"
  echo "  url: http://127.0.0.1:18080/fhir"
  case $mode in
    plain)
      echo "metrics: {enabled: false}"
      echo "auth: {mode: disabled}" ;;
    smart | audit)
      if [[ $mode == audit ]]; then
        echo "metrics: {enabled: true}"
        echo "audit: {path: $scratch/audit}"
      else
        echo "metrics: {enabled: false}"
      fi
      echo "auth:"
      echo "  issuers:"
      echo "    - issuer: http://127.0.0.1:18080/auth"
      echo "      audiences: [https://gateway.bench.invalid/fhir]"
      echo "      allow_http: true"
      echo "      max_token_lifetime: 1000000h" ;;
    *) echo "$0: mode is plain, smart or audit" >&2; exit 2 ;;
  esac
} > "$config"
"$binary" check-config "$config" > /dev/null

token=$(cat "$work/tokens/valid.jwt")
# Prints "<requests> <instructions>" for one run under load for $1 seconds.
measure() {
  valgrind --tool=callgrind --callgrind-out-file="$scratch/callgrind.out" \
    "$binary" serve --config "$config" > /dev/null 2> "$scratch/valgrind.log" &
  local gateway=$!
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  local requests
  requests=$(wrk -t1 -c8 -d"$1"s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/fhir/$target" |
    awk '/requests in/ {print $1}')
  kill -TERM "$gateway"
  wait "$gateway" || true
  echo "$requests $(grep -oP 'Collected : \K[0-9]+' "$scratch/valgrind.log" | awk '{s += $1} END {print s}')"
}
read -r short_requests short_total < <(measure 2)
read -r long_requests long_total < <(measure 6)
(( long_requests > short_requests )) || { echo "$0: no requests were answered" >&2; exit 1; }
echo "instructions per request: $(( (long_total - short_total) / (long_requests - short_requests) )) ($mode, GET $target, $(basename "$binary"))"
