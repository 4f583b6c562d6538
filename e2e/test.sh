#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit tests, translation
# fixtures, and the integration tests that drive the real binaries over loopback.
# Installs what it needs on a fresh Debian machine (run as root, or have the packages).
set -euo pipefail
cd "$(dirname "$0")/.."

# Build outputs are cached between runs (CI clones afresh each time).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
mkdir -p "$CARGO_TARGET_DIR"

need_pkgs=()
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v cc >/dev/null || need_pkgs+=(build-essential)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v testssl >/dev/null || need_pkgs+=(testssl.sh)   # TLS configuration scan in tests/tls.rs
command -v ip >/dev/null || need_pkgs+=(iproute2)            # network namespaces for e2e backends
command -v htpasswd >/dev/null || need_pkgs+=(apache2-utils)  # real htpasswd hashes in tests/auth.rs
if ((${#need_pkgs[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "missing packages: ${need_pkgs[*]} (install them, or run as root)" >&2
    exit 1
  fi
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup)" >&2; exit 1; }
for c in rustfmt clippy; do
  cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$c"
done

# The e2e suite runs a real kube-apiserver, kube-controller-manager and etcd, built
# from their Go modules (cached under ~/.cache/sluice/k8s; minutes cold, seconds warm).
command -v go >/dev/null || { echo "go not found: the e2e suite builds Kubernetes from its Go modules" >&2; exit 1; }
# A real gRPC peer (grpcio's health service) for the backend-protocol GRPC/GRPCS tests.
venv="$HOME/.cache/sluice/venv"
if ! "$venv/bin/python" -c 'import grpc, grpc_health.v1.health' 2>/dev/null; then
  echo "== installing grpcio into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check grpcio grpcio-health-checking
fi
export SLUICE_PYTHON="$venv/bin/python"

echo "== building the Kubernetes control plane for the e2e suite"
SLUICE_K8S_BIN="$(bash e2e/k8s/build.sh | tail -n 1)"
export SLUICE_K8S_BIN
command -v kubectl >/dev/null || export PATH="$SLUICE_K8S_BIN:$PATH"
# helm, for the chart tests and the e2e harness (which installs the chart's RBAC),
# built from its Go module the same way (cached under ~/.cache/sluice/helm).
echo "== building helm for the chart tests"
SLUICE_HELM="$(bash e2e/helm/build.sh | tail -n 1)"
export SLUICE_HELM
# Real Pods (tests/e2e_pods.rs): the node agent, built from its Go module with the
# Kubernetes module cache (cached under ~/.cache/sluice/node-agent; kube-scheduler
# comes from e2e/k8s/build.sh above).
echo "== building the e2e node agent"
SLUICE_NODE_AGENT="$(bash e2e/node-agent/build.sh | tail -n 1)"
export SLUICE_NODE_AGENT
# MetalLB v0.15.2 controller and speaker (tests/e2e_metallb.rs), built from its Go module
# with the same module cache (cached under ~/.cache/sluice/metallb; ~8 min cold on a
# loaded machine, instant warm).
echo "== building MetalLB for the L2 LoadBalancer test"
SLUICE_METALLB="$(bash e2e/metallb/build.sh | tail -n 1)"
export SLUICE_METALLB
# h2spec (HTTP/2 conformance, tests/h2spec.rs), built from its Go module the same way
# (cached under ~/.cache/sluice/h2spec; about 1.5 minutes cold, instant warm).
echo "== building h2spec for the HTTP/2 conformance test"
SLUICE_H2SPEC="$(bash e2e/h2spec/build.sh | tail -n 1)"
export SLUICE_H2SPEC

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test (unit, fixtures, integration through the real binaries)"
cargo test --all-targets --locked
echo "== fuzz targets, 30 s each (fuzz/README.md; seeds in fuzz/corpus/<target>/)"
# The mutation seed comes from the commit, so a crash CI finds replays exactly on that
# commit (and a commit's run can be repeated before it lands); set SLUICE_FUZZ_SEED to
# explore elsewhere.
head_hex="$(git rev-parse HEAD 2>/dev/null | cut -c1-15)"
fuzz_seed="${SLUICE_FUZZ_SEED:-$(( 16#${head_hex:-1} ))}"
SLUICE_FUZZ_SEED="$fuzz_seed" SLUICE_FUZZ_SECONDS="${SLUICE_FUZZ_SECONDS:-30}" cargo test --locked --test fuzz -- --test-threads=1 --nocapture
echo "== Dockerfile check (its build command run here; no image is built: no Docker engine)"
bash e2e/dockerfile_check.sh
echo "== demo smoke test (the README's first command, checked)"
SLUICE_DEMO_PROFILE=debug SLUICE_DEMO_PORT="${SLUICE_DEMO_PORT:-18080}" SLUICE_DEMO_ADMIN_PORT="${SLUICE_DEMO_ADMIN_PORT:-18254}" SLUICE_DEMO_HTTPS_PORT="${SLUICE_DEMO_HTTPS_PORT:-18443}" \
  bash config/demo/run.sh --smoke
