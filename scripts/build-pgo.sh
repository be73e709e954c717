#!/usr/bin/env bash
# The release binary built with profile-guided optimisation (PGO), the build to deploy: the
# same code as `cargo build --release`, laid out and inlined by LLVM after the hot paths it
# measured, and markedly faster per request (docs/scaling.md, "Profile-guided optimisation").
#
#   scripts/build-pgo.sh [OUTPUT]        # default OUTPUT: target/pgo/fhirgate
#   scripts/build-pgo.sh --check-training BINARY
#                                        # step 2 alone, with any build (scripts/test.sh)
#
# Builds go to $CARGO_TARGET_DIR (default target/) under pgo-train/ and pgo-build/.
#
# 1. Builds an instrumented fhirgate.
# 2. Trains it on its own parts, not on the benchmark's: `fhirgate demo` generates the
#    sample data and issues tokens, `fhirgate store serve` serves that data, and
#    `fhirgate serve` gateways stand in front of it: one without authentication, one
#    verifying the demo issuer's tokens with audit and a rate limit on (a third one adds the
#    response cache and CORS). curl sends reads, searches, history, compartment searches
#    and refused requests through them, 32 at a time on kept-alive connections, and checks
#    their statuses.
# 3. Merges the counts with llvm-profdata (the LLVM major version must be rustc's: rustup's
#    llvm-tools component, or Debian's llvm-N) and builds the release binary with them.
#
# Needs curl and python3. Takes about twice a release build plus a minute of training.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
check_only=
if [[ ${1:-} == --check-training ]]; then
  check_only=$(realpath "${2:?usage: $0 --check-training BINARY}")
else
  output=${1:-target/pgo/fhirgate}
fi

die() { echo "build-pgo: $*" >&2; exit 2; }
for tool in curl python3 rustc cargo; do
  command -v "$tool" > /dev/null || die "$tool is not installed"
done

host=$(rustc -vV | sed -n 's/^host: //p')
llvm_major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')

# The profile format follows LLVM's; an llvm-profdata of another major version may write
# a file rustc cannot read.
find_profdata() {
  local candidate version
  for candidate in "$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata" \
    "llvm-profdata-$llvm_major" llvm-profdata; do
    command -v "$candidate" > /dev/null || continue
    version=$("$candidate" --version 2> /dev/null | sed -n 's/.*LLVM version \([0-9]*\).*/\1/p')
    [[ $version == "$llvm_major" ]] && { echo "$candidate"; return; }
  done
  die "no llvm-profdata for LLVM $llvm_major (rustc's): 'rustup component add llvm-tools' or 'apt-get install llvm-$llvm_major'"
}
[[ -n $check_only ]] || profdata_tool=$(find_profdata)

target_base=${CARGO_TARGET_DIR:-$repo/target}
train_dir=$target_base/pgo-train
build_dir=$target_base/pgo-build
work=$(mktemp -d)
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  if ((status != 0)); then
    for log in "$work"/*.log; do
      [[ -f $log ]] && { echo "--- $log"; tail -n 20 "$log"; } >&2
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [[ -n $check_only ]]; then
  trainee=$check_only
  rounds=1
else
  echo "== 1/3 instrumented build"
  # A fixed -Cprofile-generate path keeps this build cached between runs; where the counts
  # go is chosen at run time with LLVM_PROFILE_FILE.
  RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$train_dir/profiles" \
    cargo build --release --locked -p fhirgate --bin fhirgate --target "$host" --target-dir "$train_dir"
  trainee=$train_dir/$host/release/fhirgate
  rounds=25
fi

echo "== 2/3 training"
export LLVM_PROFILE_FILE=$work/profiles/fhirgate-%p.profraw
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # URL: until it answers at all (any status), for at most 30 s
  for _ in $(seq 300); do
    curl -s -o /dev/null "$1" && return
    sleep 0.1
  done
  die "nothing answered at $1"
}

demo_port=$(free_port)
"$trainee" demo --data-dir "$work/demo" --listen "127.0.0.1:$demo_port" > "$work/demo.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$demo_port/readyz"
origin=http://127.0.0.1:$demo_port

store_port=$(free_port)
"$trainee" store serve --db "$work/demo/store.sqlite" --listen "127.0.0.1:$store_port" \
  > "$work/store.log" 2>&1 &
pids+=($!)

# A gateway in front of the store: NAME PORT, then the rest of its config on stdin.
gateway_config() {
  {
    echo "listen: 127.0.0.1:$2"
    echo "public_base_url: http://127.0.0.1:$2/fhir"
    echo "upstream: {url: 'http://127.0.0.1:$store_port/fhir'}"
    cat
  } > "$work/$1.yaml"
}
plain_port=$(free_port)
gateway_config plain "$plain_port" <<EOF
metrics: {enabled: false}
auth: {mode: disabled}
EOF
# Both authenticating gateways trust the demo's authorization server.
demo_issuer="auth: {issuers: [{issuer: '$origin/auth', audiences: ['$origin/fhir'], allow_http: true}]}"
smart_port=$(free_port)
gateway_config smart "$smart_port" <<EOF
$demo_issuer
rate_limit:
  rules:
    - {name: per-client, key: client_id, per_second: 100000}
audit: {path: $work/audit}
EOF
# Code the training never runs is laid out as cold: the response cache and CORS get a
# gateway of their own, so that turning them on does not land on it.
cached_port=$(free_port)
gateway_config cached "$cached_port" <<EOF
$demo_issuer
cors: {allowed_origins: ['http://app.example']}
cache:
  rules:
    - {resource_types: ['*'], interactions: [read, vread, search, capabilities], ttl: 5m}
EOF
for gateway in plain smart cached; do
  "$trainee" serve --config "$work/$gateway.yaml" > "$work/$gateway.log" 2>&1 &
  pids+=($!)
done
wait_for "http://127.0.0.1:$store_port/fhir/metadata"
wait_for "http://127.0.0.1:$plain_port/readyz"
wait_for "http://127.0.0.1:$smart_port/readyz"
wait_for "http://127.0.0.1:$cached_port/readyz"

token() { # CLIENT SCOPE [PATIENT]
  "$trainee" auth token --data-dir "$work/demo" --public-url "$origin" --client "$1" \
    --scope "$2" ${3:+--patient "$3"} --expires-in 1h
}
patient_token=$(token demo-app "launch/patient patient/*.rs" pat-0)
system_token=$(token demo-backend "system/*.rs")

# Two request mixes, repeated `rounds` times; bodies are thrown away. "all" reads and searches
# every sample patient; "own" is what one patient's app sends: that patient's data, and now
# and then another patient's (refused).
python3 - "$work" "$rounds" <<'EOF'
import sys
work, rounds = sys.argv[1], int(sys.argv[2])
def patient_paths(p):
    return [f"Patient/{p}", f"Observation?patient={p}", f"Observation?patient={p}&_count=5",
            f"Condition?patient=Patient/{p}", f"Patient/{p}/Encounter", f"Patient/{p}/_history",
            f"Encounter?subject={p}&_include=Encounter:subject"]
common = ["metadata", "Foo/1", "Patient/bad..id", "Patient/no-such-patient",
          "Observation?code=8867-4&_count=10"]
mixes = {
    "all": common + ["Practitioner/pract-0"]
           + [path for i in range(40) for path in patient_paths(f"pat-{i}")],
    "own": common + patient_paths("pat-0") * 40 + ["Patient/pat-1", "Observation?patient=pat-1"],
}
for name, paths in mixes.items():
    with open(f"{work}/requests-{name}.curl", "w") as f:
        for _ in range(rounds):
            for path in paths:
                f.write(f'url = "BASE/{path}"\noutput = "/dev/null"\n')
EOF
# A profile of failures would be worthless: every run must see successes, refusals as
# designed, and no failure of the gateway itself (no answer, or a 5xx).
drive() { # NAME MIX BASE [TOKEN [ORIGIN]]
  sed "s|BASE|$3|" "$work/requests-$2.curl" > "$work/run.curl"
  curl --silent --no-progress-meter --parallel --parallel-max 32 --write-out '%{http_code}\n' \
    ${4:+-H "Authorization: Bearer $4"} ${5:+-H "Origin: $5"} --config "$work/run.curl" 2>> "$work/curl.log" |
    sort | uniq -c | sort -rn > "$work/statuses-$1"
  echo "   $1: $(awk '{printf "%s %s  ", $1, $2}' "$work/statuses-$1")"
  grep -q ' 200$' "$work/statuses-$1" || die "$1: no request succeeded"
  ! grep -Eq ' (000|5[0-9][0-9])$' "$work/statuses-$1" || die "$1: failed requests (count, status above)"
}
drive plain all "http://127.0.0.1:$plain_port/fhir"
drive patient-token own "http://127.0.0.1:$smart_port/fhir" "$patient_token"
drive system-token all "http://127.0.0.1:$smart_port/fhir" "$system_token"
drive cached own "http://127.0.0.1:$cached_port/fhir" "$patient_token" http://app.example
grep -q ' 403$' "$work/statuses-patient-token" || die "the patient token was never refused"
curl -s -o /dev/null -D - -H "Authorization: Bearer $patient_token" \
  "http://127.0.0.1:$cached_port/fhir/Patient/pat-0" | grep -qi '^x-cache-status: hit' ||
  die "the cached gateway never answered from its cache"

# The counts are written when a process exits normally; SIGTERM drains and exits 0.
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for pid in "${pids[@]}"; do wait "$pid" || die "a training process did not exit cleanly"; done
pids=()
if [[ -n $check_only ]]; then
  echo "training ran cleanly with $check_only"
  exit 0
fi
compgen -G "$work/profiles/*.profraw" > /dev/null || die "training wrote no profiles"

echo "== 3/3 optimised build"
mkdir -p "$train_dir"
rm -f "$train_dir"/fhirgate-*.profdata
"$profdata_tool" merge -o "$work/merged.profdata" "$work/profiles"
# Named by content, so that a new profile changes RUSTFLAGS and cargo rebuilds with it.
profile=$train_dir/fhirgate-$(sha256sum "$work/merged.profdata" | cut -c1-16).profdata
mv "$work/merged.profdata" "$profile"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$profile" \
  cargo build --release --locked -p fhirgate --bin fhirgate --target "$host" --target-dir "$build_dir"
mkdir -p "$(dirname "$output")"
install -m 0755 "$build_dir/$host/release/fhirgate" "$output"
echo "built $output (profile $profile)"
