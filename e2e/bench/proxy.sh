#!/usr/bin/env bash
# HTTP/1.1 throughput/latency benchmark: one sluice-echo backend, reached directly (the
# ceiling) and through nginx (configured the way ingress-nginx proxies), HAProxy and
# sluice, each driven in turn by the same wrk load; prints req/s and p50/p99 latency and
# sluice's ratios against the best of nginx/HAProxy. This is a benchmark, not a test.
#
# NOTE: wrk, the proxy under test and the backend all share the same machine. On a shared
# 2-core box the absolute figures are noisy and move between runs; only the ratios
# between rows of ONE run mean anything (and even those by a few percent).
#
# Usage: e2e/bench/proxy.sh [--quick] [--no-build]
#   --quick     3 s measurement per target instead of BENCH_DURATION
#   --no-build  use the binaries already in target/release
# Environment:
#   BENCH_WORKERS      worker processes/threads for every proxy (default: nproc)
#   BENCH_DURATION     seconds of measurement per target (default 10)
#   BENCH_THREADS      wrk threads (default 2)
#   BENCH_CONNECTIONS  wrk connections (default 50)
#   BENCH_KEEP=1       keep the temp dir (configs, logs, wrk outputs) and print its path
#   BENCH_SLUICE_BIN   sluice binary to measure (default: target/release/sluice)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

DURATION=${BENCH_DURATION:-10}
BUILD=1
for arg in "$@"; do
    case "$arg" in
        --quick) DURATION=3 ;;
        --no-build) BUILD=0 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "proxy.sh: unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

NPROC=$(nproc)
WORKERS=${BENCH_WORKERS:-$NPROC}
WRK_THREADS=${BENCH_THREADS:-2}
WRK_CONNS=${BENCH_CONNECTIONS:-50}
WARMUP=2

# File descriptors: raise the soft limit as far as allowed and size the proxies to it
# (HAProxy refuses to start if maxconn needs more descriptors than it may open).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=65536
((NOFILE > 65536)) && NOFILE=65536
HAPROXY_MAXCONN=$((NOFILE / 2 - 100))
((HAPROXY_MAXCONN > 8192)) && HAPROXY_MAXCONN=8192
((HAPROXY_MAXCONN < 256)) && HAPROXY_MAXCONN=256

BACKEND_PORT=19000 # fixed: the sluice manifests below point at it
NGINX_PORT=19001
HAPROXY_PORT=19002
SLUICE_PORT=19003
SLUICE_ADMIN_PORT=19004
BENCH_PATH='/bench?size=256'
HOST_HEADER='bench.local'

log() { echo "proxy.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}

# ---------------------------------------------------------------- prerequisites
need_pkgs=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || need_pkgs+=(haproxy)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
# shellcheck source=e2e/bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
bench_install "${need_pkgs[@]}"
export PATH="$PATH:/usr/sbin:/sbin"
bench_build "$BUILD"

# ---------------------------------------------------------------- process management
bench_tmp sluice-bench
for p in $BACKEND_PORT $NGINX_PORT $HAPROXY_PORT $SLUICE_PORT $SLUICE_ADMIN_PORT; do
    port_busy "$p" && die "127.0.0.1:$p is already in use; stop whatever listens there"
done

# wait_http NAME PID URL SECONDS: wait until URL answers 2xx through the proxy, or fail.
# On failure prints the reason on stdout and returns 1.
wait_http() {
    local name=$1 pid=$2 url=$3 secs=$4 deadline=$((SECONDS + $4))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited during startup: $(tail -n 3 "$TMP/$name.log" 2>/dev/null | tr '\n' ' ')"
            return 1
        fi
        if curl -sf -o /dev/null --max-time 2 -H "Host: $HOST_HEADER" "$url"; then
            return 0
        fi
        sleep 0.2
    done
    echo "no 2xx from $url within ${secs}s (last: $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Host: $HOST_HEADER" "$url" || true))"
    return 1
}

declare -A URL FAIL

# ---------------------------------------------------------------- backend
"$ECHO_BIN" --listen "127.0.0.1:$BACKEND_PORT" --name bench >"$TMP/backend.log" 2>&1 &
BACKEND_PID=$!
PIDS+=("$BACKEND_PID")
for _ in $(seq 100); do
    grep -q "listening on" "$TMP/backend.log" 2>/dev/null && break
    kill -0 "$BACKEND_PID" 2>/dev/null || die "backend failed: $(cat "$TMP/backend.log")"
    sleep 0.1
done
grep -q "listening on" "$TMP/backend.log" || die "backend did not start: $(cat "$TMP/backend.log")"
URL[direct]="http://127.0.0.1:$BACKEND_PORT$BENCH_PATH"

# ---------------------------------------------------------------- nginx (as ingress-nginx proxies)
mkdir -p "$TMP/nginx"
NGINX_USER=""
[[ $(id -u) -eq 0 ]] && NGINX_USER="user root;"
cat >"$TMP/nginx/nginx.conf" <<EOF
# Approximates what ingress-nginx generates for one Ingress rule (minus its Lua balancer
# and Lua logging, so this stand-in is if anything slightly faster than ingress-nginx).
$NGINX_USER
worker_processes $WORKERS;
worker_rlimit_nofile $NOFILE;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx.log warn;

events {
    worker_connections 16384;
    multi_accept on;
    use epoll;
}

http {
    access_log off;
    default_type text/html;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000;
    server_tokens off;

    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;

    # ingress-nginx: reuse an incoming X-Request-ID, else generate one.
    map \$http_x_request_id \$req_id {
        default \$http_x_request_id;
        ""      \$request_id;
    }

    upstream upstream_balancer {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 320;
        keepalive_requests 10000;
        keepalive_timeout 60s;
    }

    server {
        listen 127.0.0.1:$NGINX_PORT default_server reuseport backlog=4096;
        server_name $HOST_HEADER;

        location / {
            proxy_set_header Host \$host;
            proxy_set_header X-Request-ID \$req_id;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Forwarded-Port \$server_port;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Scheme \$scheme;
            proxy_set_header X-Scheme \$scheme;
            proxy_set_header X-Original-URI \$request_uri;
            proxy_set_header Proxy "";

            proxy_http_version 1.1;
            proxy_set_header Connection "";

            proxy_connect_timeout 5s;
            proxy_send_timeout 60s;
            proxy_read_timeout 60s;
            proxy_buffering off;
            proxy_buffer_size 4k;
            proxy_buffers 4 4k;
            proxy_request_buffering on;
            proxy_next_upstream error timeout;
            proxy_redirect off;

            proxy_pass http://upstream_balancer;
        }
    }
}
EOF
nginx -e "$TMP/nginx.log" -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" -g 'daemon off;' >>"$TMP/nginx.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
if reason=$(wait_http nginx "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT$BENCH_PATH" 10); then
    URL[nginx]="http://127.0.0.1:$NGINX_PORT$BENCH_PATH"
else
    FAIL[nginx]=$reason
fi

# ---------------------------------------------------------------- HAProxy
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread $WORKERS
    maxconn $HAPROXY_MAXCONN

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 60s
    timeout http-keep-alive 60s
    option forwardfor
    http-reuse always
    unique-id-format %[uuid()]

frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    http-request set-header X-Request-ID %[unique-id] unless { req.hdr(x-request-id) -m found }
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Port %[dst_port]
    http-request set-header X-Forwarded-Proto http
    default_backend be

backend be
    server s1 127.0.0.1:$BACKEND_PORT
EOF
haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
if reason=$(wait_http haproxy "$HAPROXY_PID" "http://127.0.0.1:$HAPROXY_PORT$BENCH_PATH" 10); then
    URL[haproxy]="http://127.0.0.1:$HAPROXY_PORT$BENCH_PATH"
else
    FAIL[haproxy]=$reason
fi

# ---------------------------------------------------------------- sluice
mkdir -p "$TMP/manifests"
cat >"$TMP/manifests/bench.yaml" <<EOF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bench, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  ingressClassName: nginx
  rules:
  - host: $HOST_HEADER
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: bench, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: sluice.dev/ingress-controller}
---
apiVersion: v1
kind: Service
metadata: {name: bench, namespace: default}
spec: {ports: [{name: http, port: 80, targetPort: $BACKEND_PORT}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: bench-1, namespace: default, labels: {kubernetes.io/service-name: bench}}
addressType: IPv4
ports: [{name: http, port: $BACKEND_PORT}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
EOF
start_sluice() {
    [[ -z $SLUICE_BUILD_FAILED ]] || {
        echo "$SLUICE_BUILD_FAILED"
        return 1
    }
    [[ -x $SLUICE_BIN ]] || {
        echo "$SLUICE_BIN not built"
        return 1
    }
    SLUICE_WORKERS=$WORKERS "$SLUICE_BIN" --manifests "$TMP/manifests" \
        --http-listen "127.0.0.1:$SLUICE_PORT" --admin-listen "127.0.0.1:$SLUICE_ADMIN_PORT" --https-listen 127.0.0.1:19005 --no-access-log \
        >"$TMP/sluice.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    local deadline=$((SECONDS + 20))
    until curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$SLUICE_ADMIN_PORT/readyz"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            local rc=0
            wait "$pid" || rc=$?
            echo "exited with status $rc during startup: $(tail -n 3 "$TMP/sluice.log" | tr '\n' ' ')"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "/readyz not 200 within 20s"
            return 1
        fi
        sleep 0.2
    done
    wait_http sluice "$pid" "http://127.0.0.1:$SLUICE_PORT$BENCH_PATH" 5
}
# PIDS is appended inside start_sluice, so it must not run in a subshell.
start_sluice >"$TMP/sluice.start" || FAIL[sluice]=$(tr '\n' ' ' <"$TMP/sluice.start")
[[ -n ${FAIL[sluice]:-} ]] || URL[sluice]="http://127.0.0.1:$SLUICE_PORT$BENCH_PATH"

# ---------------------------------------------------------------- measure
# to_ms VALUE: wrk prints 512.00us / 1.23ms / 1.01s / 1.00m
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

declare -A RPS P50 P99 ERRS
TARGETS=(direct nginx haproxy sluice)
for t in "${TARGETS[@]}"; do
    [[ -n ${URL[$t]:-} ]] || continue
    log "measuring $t (${WARMUP}s warm-up + ${DURATION}s)"
    wrk_args=(-t"$WRK_THREADS" -c"$WRK_CONNS" -H "Host: $HOST_HEADER")
    timeout $((WARMUP + 30)) wrk "${wrk_args[@]}" -d"${WARMUP}s" "${URL[$t]}" >/dev/null 2>&1 || true
    if ! timeout $((DURATION + 30)) wrk "${wrk_args[@]}" -d"${DURATION}s" --latency "${URL[$t]}" >"$TMP/wrk-$t.txt" 2>&1; then
        FAIL[$t]="wrk failed: $(tail -n 2 "$TMP/wrk-$t.txt" | tr '\n' ' ')"
        continue
    fi
    out="$TMP/wrk-$t.txt"
    RPS[$t]=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    P50[$t]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    P99[$t]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    errs=""
    non2xx=$(awk -F': *' '/Non-2xx or 3xx responses/ {print $2}' "$out")
    [[ -z $non2xx ]] || errs="non-2xx/3xx: $non2xx"
    sock=$(sed -n 's/^ *Socket errors: *//p' "$out")
    [[ -z $sock ]] || errs="${errs:+$errs; }socket errors: $sock"
    ERRS[$t]=$errs
    if [[ -z ${RPS[$t]} ]]; then
        FAIL[$t]="could not parse wrk output: $(tr '\n' ' ' <"$out" | cut -c1-200)"
    fi
done

# ---------------------------------------------------------------- report
version_of() { "$@" 2>&1 | head -n 1 | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n 1 || true; }
echo
echo "# $(date -u '+%Y-%m-%dT%H:%M:%SZ')  nproc=$NPROC  workers=$WORKERS  nginx $(version_of nginx -v)  haproxy $(version_of haproxy -v)  wrk $(version_of wrk -v)"
echo "# wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s --latency (after ${WARMUP}s warm-up), GET $BENCH_PATH (256-byte body), HTTP/1.1 keep-alive"
printf '%-9s %12s %9s %9s  %s\n' target 'req/s' 'p50 ms' 'p99 ms' 'notes'

# Best peer: highest throughput and lowest p99 among nginx/haproxy.
best_rps="" best_p99=""
for p in nginx haproxy; do
    [[ -n ${RPS[$p]:-} && -z ${FAIL[$p]:-} ]] || continue
    if [[ -z $best_rps ]] || awk -v a="${RPS[$p]}" -v b="$best_rps" 'BEGIN {exit !(a > b)}'; then best_rps=${RPS[$p]}; fi
    if [[ -z $best_p99 ]] || awk -v a="${P99[$p]}" -v b="$best_p99" 'BEGIN {exit !(a < b)}'; then best_p99=${P99[$p]}; fi
done

for t in "${TARGETS[@]}"; do
    if [[ -n ${FAIL[$t]:-} ]]; then
        echo "$t: FAILED (${FAIL[$t]})"
        continue
    fi
    notes=""
    if [[ $t == sluice && -n $best_rps ]]; then
        notes=$(awk -v r="${RPS[$t]}" -v br="$best_rps" -v p="${P99[$t]}" -v bp="$best_p99" \
            'BEGIN { printf "throughput x%.2f of best peer, p99 x%.2f of best peer", r / br, (bp > 0 ? p / bp : 0) }')
    fi
    [[ -z ${ERRS[$t]:-} ]] || notes="${notes:+$notes; }${ERRS[$t]}"
    printf '%-9s %12.0f %9.3f %9.3f  %s\n' "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" "$notes"
done
