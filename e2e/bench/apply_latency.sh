#!/usr/bin/env bash
# Apply-to-live latency of sluice in controller mode against a real kube-apiserver: how
# long from sending an Ingress create/update to the API server until a request through
# sluice reaches the new backend, with 1000 and 5000 Ingresses in the cluster. Also the
# routing-table build time sluice logs, sluice's RSS, and the CPU load. A benchmark,
# not a test. Needs root (network namespace), kubectl, curl, python3 (stdlib only).
#
# Usage: e2e/bench/apply_latency.sh [--no-build]
#   --no-build  use the binaries already in target/release
# Environment:
#   SIZES         Ingress counts to measure at, increasing (default "1000 5000")
#   SAMPLES       samples per size and kind (default 50)
#   BENCH_KEEP=1  keep the temp dir (cluster logs, sluice logs, JSON results)
#   SLUICE_K8S_BIN, SLUICE_K8S_TIMEOUT: passed on to e2e/k8s/cluster.sh
#
# Per size N: Ingresses h1..hN (host h<i>.bench.example, / Prefix -> Service old) are
# created straight through the API, then a fresh sluice is started and waited for
# (/readyz, then h<N> answering through it). Then SAMPLES times each, alternately:
#   new     POST an Ingress n<k>-... -> Service new;  live = first 200 with x-backend: new
#   change  JSON-patch h<j> from Service old to new;   same
# t0 is taken just before the request goes out on a warm keep-alive HTTPS connection;
# sluice is polled every ~2 ms. Afterwards the changes are reverted, the new Ingresses
# deleted and sluice stopped; the next size adds the missing Ingresses.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
HELPER="$SCRIPT_DIR/apply_latency.py"

BUILD=1
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "apply_latency.sh: unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

SIZES=${SIZES:-"1000 5000"}
SAMPLES=${SAMPLES:-50}

NETNS=sluice-bench-lat
VETH_HOST=slbh
VETH_NS=slbc
OLD_ADDR=10.244.200.2
NEW_ADDR=10.244.200.3

log() { echo "apply_latency.sh: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ---------------------------------------------------------------- prerequisites
[[ $(id -u) -eq 0 ]] || die "needs root (ip netns)"
for c in ip curl python3; do
    command -v "$c" >/dev/null 2>&1 || die "$c not found"
done
python3 -c 'import sys; sys.exit(sys.version_info < (3, 8))' || die "python3 >= 3.8 needed"
prev=0
for n in $SIZES; do
    if ! [[ $n =~ ^[0-9]+$ ]] || ((n <= prev)); then
        die "SIZES must be increasing positive integers: $SIZES"
    fi
    prev=$n
done
if ! [[ $SAMPLES =~ ^[0-9]+$ ]] || ((SAMPLES == 0)); then
    die "SAMPLES must be a positive integer"
fi
for n in $SIZES; do
    ((SAMPLES < n)) || die "SAMPLES ($SAMPLES) must be below every size ($n)"
done

cd "$ROOT"
if ((BUILD)); then
    log "cargo build --release --bins"
    cargo build --release --bins >&2
fi
SLUICE="$ROOT/target/release/sluice"
ECHO="$ROOT/target/release/sluice-echo"
[[ -x $SLUICE && -x $ECHO ]] || die "no $SLUICE / $ECHO (build first)"

WORK=$(mktemp -d /tmp/sluice-bench-lat.XXXXXX)
K8S="$WORK/k8s"
mkdir -p "$K8S" "$WORK/results"

# ---------------------------------------------------------------- cleanup
SLUICE_PID=
BACKEND_PIDS=()
stop_pid() { # stop_pid PID: TERM, then KILL after 5 s
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $SLUICE_PID ]]; then
        if ((rc != 0)) && [[ -f $WORK/sluice.log ]]; then
            log "last lines of the sluice log ($WORK/sluice.log):"
            tail -n 20 "$WORK/sluice.log" >&2 || true
        fi
        stop_pid "$SLUICE_PID"
    fi
    local p
    for p in "${BACKEND_PIDS[@]}"; do stop_pid "$p"; done
    ip netns del "$NETNS" 2>/dev/null || true
    ip link del "$VETH_HOST" 2>/dev/null || true
    "$ROOT/e2e/k8s/cluster.sh" stop "$K8S" >/dev/null 2>&1 || true
    if [[ ${BENCH_KEEP:-0} == 1 || $rc != 0 ]]; then
        log "kept $WORK (cluster logs in k8s/, sluice logs, results/)"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- network namespace, backends
# The API server rejects loopback addresses in EndpointSlices, so the two backends live
# in a network namespace reached over a veth pair.
ip netns del "$NETNS" 2>/dev/null || true # leftovers of an interrupted run
ip link del "$VETH_HOST" 2>/dev/null || true
ip netns add "$NETNS"
ip link add "$VETH_HOST" type veth peer name "$VETH_NS"
ip link set "$VETH_NS" netns "$NETNS"
ip addr add 10.244.200.1/24 dev "$VETH_HOST"
ip link set "$VETH_HOST" up
ip netns exec "$NETNS" ip link set lo up
ip netns exec "$NETNS" ip addr add "$OLD_ADDR/24" dev "$VETH_NS"
ip netns exec "$NETNS" ip addr add "$NEW_ADDR/24" dev "$VETH_NS"
ip netns exec "$NETNS" ip link set "$VETH_NS" up

# `ip netns exec` execs the program, so $! is sluice-echo's own PID.
ip netns exec "$NETNS" "$ECHO" --listen "$OLD_ADDR:8080" --name old --threads 1 \
    >"$WORK/echo-old.log" 2>&1 &
BACKEND_PIDS+=($!)
ip netns exec "$NETNS" "$ECHO" --listen "$NEW_ADDR:8080" --name new --threads 1 \
    >"$WORK/echo-new.log" 2>&1 &
BACKEND_PIDS+=($!)
for b in old new; do
    addr=$OLD_ADDR
    [[ $b == new ]] && addr=$NEW_ADDR
    for ((i = 0; ; i++)); do
        got=$(curl -s -o /dev/null -D - --max-time 1 "http://$addr:8080/" 2>/dev/null | tr -d '\r' |
            sed -n 's/^x-backend: //Ip') || true
        [[ $got == "$b" ]] && break
        ((i < 100)) || die "backend $b on $addr:8080 does not answer (see $WORK/echo-$b.log)"
        sleep 0.1
    done
done
log "backends old ($OLD_ADDR:8080) and new ($NEW_ADDR:8080) up in netns $NETNS"

# ---------------------------------------------------------------- cluster
"$ROOT/e2e/k8s/cluster.sh" start "$K8S"
# shellcheck disable=SC1091
source "$K8S/env"
command -v kubectl >/dev/null 2>&1 || export PATH="$PATH:$SLUICE_K8S_BIN" # e2e/k8s may build one
command -v kubectl >/dev/null 2>&1 || die "kubectl not found"
SERVER_VERSION=$(python3 "$HELPER" version)

kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: bench}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: sluice.dev/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: old, namespace: bench}
spec:
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: new, namespace: bench}
spec:
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: old-manual
  namespace: bench
  labels: {kubernetes.io/service-name: old}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: ["$OLD_ADDR"], conditions: {ready: true}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: new-manual
  namespace: bench
  labels: {kubernetes.io/service-name: new}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: ["$NEW_ADDR"], conditions: {ready: true}}]
EOF
log "namespace bench, IngressClass nginx, Services old/new with EndpointSlices created"

# ---------------------------------------------------------------- per size
have=0
results=()
for n in $SIZES; do
    log "=== $n Ingresses"
    create_s=$(python3 "$HELPER" create --first $((have + 1)) --last "$n")
    have=$n

    http_port=$(python3 "$HELPER" port)
    admin_port=$(python3 "$HELPER" port)
    [[ $http_port != "$admin_port" ]] || admin_port=$(python3 "$HELPER" port)
    https_port=$(python3 "$HELPER" port)
    slog="$WORK/sluice-$n.log"
    ln -sf "$slog" "$WORK/sluice.log"
    started_at=$(date +%s.%N)
    POD_NAMESPACE=default RUST_LOG=info "$SLUICE" --kubeconfig "$K8S/admin.kubeconfig" \
        --http-listen "127.0.0.1:$http_port" --admin-listen "127.0.0.1:$admin_port" \
        --https-listen "127.0.0.1:$https_port" --no-access-log >/dev/null 2>"$slog" &
    SLUICE_PID=$!
    log "sluice pid $SLUICE_PID on 127.0.0.1:$http_port (admin $admin_port), log $slog"

    python3 "$HELPER" measure --size "$n" --samples "$SAMPLES" --port "$http_port" \
        --admin-port "$admin_port" --pid "$SLUICE_PID" --log "$slog" \
        --started-at "$started_at" --create-s "$create_s" \
        --out "$WORK/results/$n.json"
    results+=("$WORK/results/$n.json")

    stop_pid "$SLUICE_PID"
    SLUICE_PID=
done

# ---------------------------------------------------------------- report
# read-only git: no index refresh (another engineer may be using the work tree)
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" --no-optional-locks diff --quiet HEAD -- 2>/dev/null || rev+="-dirty"
# the binary may predate HEAD (--no-build) or hold uncommitted edits: say when it was built
rev+=" (binary built $(date -u -r "$SLUICE" +%Y-%m-%dT%H:%MZ))"
echo
python3 "$HELPER" report --server-version "$SERVER_VERSION" --rev "$rev" \
    --date "$(date -u +%Y-%m-%dT%H:%MZ)" "${results[@]}"
