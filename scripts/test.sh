#!/usr/bin/env bash
# Runs every test suite of fhirgate on a fresh machine: first installs what the tests need
# (Debian packages, npm and PyPI test packages), then runs the Rust tests and the browser tests.
# `.ci/run` calls this same script, so what passes here passes in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

# --- system packages -------------------------------------------------------------------
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- npm test packages (lock files committed; packages never committed) ---------------------
for dir in tests/browser tests/interop tools/fhir-defs; do
  if [ -f "$dir/package-lock.json" ]; then
    step "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

# --- PyPI test packages -------------------------------------------------------------------
if [ -f tests/python/requirements.txt ]; then
  step "pip install -r tests/python/requirements.txt"
  python3 -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
fi

# --- generated tables must match their generators -------------------------------------------
for gen in tools/gen-*.py; do
  [ -f "$gen" ] || continue
  step "checking generated tables: $gen --check"
  python3 "$gen" --check
done

# --- Rust -------------------------------------------------------------------------------
step "cargo build (binaries used by the integration and browser tests)"
cargo build --workspace --bins --examples

step "cargo test --workspace"
cargo test --workspace --no-fail-fast

# The training half of the profile-guided release build, with the debug binary: every
# process it starts must serve and exit cleanly, and its requests get the statuses it expects.
step "PGO training run (scripts/build-pgo.sh --check-training)"
bash scripts/build-pgo.sh --check-training "$CARGO_TARGET_DIR/debug/fhirgate"

# Issue #11: Dockerfile, Compose, Kubernetes manifests and Helm chart (installs its validators).
step "deployment files (scripts/validate-deploy.sh)"
bash scripts/validate-deploy.sh

# Issue #10 item 6: every fuzz target for a short fixed time (6 x 15 s plus the fuzz build).
step "fuzzing each target for 15 s (scripts/fuzz-ci.sh)"
FUZZ_TIME="${FUZZ_TIME:-15}" bash scripts/fuzz-ci.sh

# --- browser tests ------------------------------------------------------------------------
if [ -f tests/browser/package.json ]; then
  step "browser tests (headless Chromium)"
  (cd tests/browser && FHIRGATE_TARGET_DIR="$CARGO_TARGET_DIR" npm test)
fi

# --- interop tests with parts nobody here wrote ------------------------------------------
# oidc-provider (npm) as the gateway's token issuer: JWT and opaque (introspected) tokens,
# key rotation. Starts `fhirgate store serve` and `fhirgate serve` itself.
if [ -f tests/interop/package.json ]; then
  step "interop tests: oidc-provider as the gateway's issuer"
  (cd tests/interop && FHIRGATE_TARGET_DIR="$CARGO_TARGET_DIR" npm test)
fi

# The Python SMART client (fhirclient from PyPI) launching against `fhirgate demo`.
# pytest's exit code is kept as is: 5 (no tests collected) fails the run too.
if [ -f tests/python/requirements.txt ]; then
  step "interop tests: Python fhirclient"
  FHIRGATE_TARGET_DIR="$CARGO_TARGET_DIR" PYTHONDONTWRITEBYTECODE=1 python3 -m pytest tests/python
fi

step "all test suites passed"
