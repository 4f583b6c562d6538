#!/usr/bin/env bash
# HTTP/1.1 throughput/latency benchmark: one sluice-echo backend, reached directly (the
# ceiling) and through nginx (configured the way ingress-nginx proxies), HAProxy and
# sluice, each driven in turn by the same wrk load; prints req/s and p50/p99 latency and
# sluice's ratios against the best of nginx/HAProxy. This is a benchmark, not a test.
#
# Beside them the bare-Pingora floor (examples/floor.rs: a ProxyHttp with a fixed peer,
# the same workers and listeners as sluice), so what is Pingora's and what is sluice's
# shows; every row gives p99.9 and the proxy's CPU per request (user and system, from
# /proc of the proxy process only), with the access log off, then again with it on
# (ingress-nginx's default format, to a file) for nginx, HAProxy and sluice. The footer
# gives sluice/floor and floor/nginx CPU ratios.
#
# Then the balancing section: three sluice-echo endpoints behind one Service, sluice with
# round robin, cookie affinity (balanced and persistent, wrk sending the cookie so every
# request takes the sticky path) and upstream-hash-by $request_uri, each an Ingress host
# of the same sluice process; nginx and HAProxy round robin and URI hashing for context.
# Prints req/s, p50/p99 and each variant's req/s ratio to the same proxy's round robin
# (goal: sluice's variants within 5% of its round robin).
#
# NOTE: wrk, the proxy under test and the backend all share the same machine. On a shared
# 2-core box the absolute figures are noisy and move between runs; only the ratios
# between rows of ONE run mean anything (and even those by a few percent).
#
# After the main rows, the per-shape rows (e2e/bench/rows.sh): a new connection per
# request, 1 KiB / 100 KiB / 1 MiB responses, a 1 MB upload, h2c, and 5000 hosts.
#
# Usage: e2e/bench/proxy.sh [--quick] [--no-build] [--balance | --no-balance] [--no-rows]
#   --quick       3 s measurement per target instead of BENCH_DURATION
#   --no-build    use the binaries already built (see CARGO_TARGET_DIR)
#   --balance     run only the balancing section
#   --no-balance  skip the balancing section
#   --no-rows     skip the per-shape rows
# Environment:
#   BENCH_WORKERS      worker processes/threads for every proxy (default: nproc)
#   BENCH_DURATION     seconds of measurement per target (default 10)
#   BENCH_THREADS      wrk threads (default 2)
#   BENCH_CONNECTIONS  wrk connections (default 50)
#   BENCH_KEEP=1       keep the temp dir (configs, logs, wrk outputs) and print its path
#   BENCH_SLUICE_BIN   sluice binary to measure (default: target/release/sluice)
#   CARGO_TARGET_DIR   where the binaries are built and looked for (default: target)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

DURATION=${BENCH_DURATION:-10}
BUILD=1
RUN_MAIN=1
RUN_BALANCE=1
RUN_ROWS=1
for arg in "$@"; do
    case "$arg" in
        --quick) DURATION=3 ;;
        --no-build) BUILD=0 ;;
        --balance) RUN_MAIN=0 RUN_BALANCE=1 ;;
        --no-balance) RUN_MAIN=1 RUN_BALANCE=0 ;;
        --no-rows) RUN_ROWS=0 ;;
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
SLUICE_HTTPS_PORT=19005
BENCH_PATH='/bench?size=256'
HOST_HEADER='bench.local'
# Balancing section: three endpoints of Service default/balance, and the peers' listeners
# (one port per variant, so neither peer pays for host routing).
BAL_BACKEND_PORTS=(19006 19007 19008)
BAL_BACKEND_NAMES=(bench-a bench-b bench-c)
NGINX_RR_PORT=19009
NGINX_HASH_PORT=19010
HAPROXY_RR_PORT=19011
HAPROXY_HASH_PORT=19012
# The bare-Pingora floor, and the access-log-on listeners of every proxy.
FLOOR_PORT=19013
NGINX_LOG_PORT=19014
HAPROXY_LOG_PORT=19015
SLUICE_LOG_PORT=19016
SLUICE_LOG_ADMIN_PORT=19017
SLUICE_LOG_HTTPS_PORT=19018

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
((RUN_MAIN)) || RUN_ROWS=0
((RUN_ROWS)) && ! command -v h2load >/dev/null 2>&1 && need_pkgs+=(nghttp2-client)
# shellcheck source=e2e/bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
# shellcheck source=e2e/bench/rows.sh
source "$SCRIPT_DIR/rows.sh"
bench_install "${need_pkgs[@]}"
export PATH="$PATH:/usr/sbin:/sbin"
bench_build "$BUILD"

# ---------------------------------------------------------------- process management
bench_tmp sluice-bench
ports=("$SLUICE_PORT" "$SLUICE_ADMIN_PORT" "$SLUICE_HTTPS_PORT")
((RUN_MAIN)) && ports+=("$BACKEND_PORT" "$NGINX_PORT" "$HAPROXY_PORT" "$FLOOR_PORT" "$NGINX_LOG_PORT" "$HAPROXY_LOG_PORT" "$SLUICE_LOG_PORT" "$SLUICE_LOG_ADMIN_PORT" "$SLUICE_LOG_HTTPS_PORT")
((RUN_BALANCE)) && ports+=("${BAL_BACKEND_PORTS[@]}" "$NGINX_RR_PORT" "$NGINX_HASH_PORT" "$HAPROXY_RR_PORT" "$HAPROXY_HASH_PORT")
# shellcheck disable=SC2207 # space-separated port numbers
((RUN_ROWS)) && ports+=($(rows_ports))
for p in "${ports[@]}"; do
    port_busy "$p" && die "127.0.0.1:$p is already in use; stop whatever listens there"
done

# wait_http NAME PID URL SECONDS [HOST]: wait until URL answers 2xx through the proxy
# (with Host: HOST, default bench.local), or fail. On failure prints the reason on
# stdout and returns 1.
wait_http() {
    local name=$1 pid=$2 url=$3 secs=$4 host=${5:-$HOST_HEADER} deadline=$((SECONDS + $4))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited during startup: $(tail -n 3 "$TMP/$name.log" 2>/dev/null | tr '\n' ' ')"
            return 1
        fi
        if curl -sf -o /dev/null --max-time 2 -H "Host: $host" "$url"; then
            return 0
        fi
        sleep 0.2
    done
    echo "no 2xx from $url within ${secs}s (last: $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Host: $host" "$url" || true))"
    return 1
}

# start_backend NAME PORT: one sluice-echo answering as NAME on 127.0.0.1:PORT.
start_backend() {
    local name=$1 port=$2 pid
    "$ECHO_BIN" --listen "127.0.0.1:$port" --name "$name" >"$TMP/backend-$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do
        grep -q "listening on" "$TMP/backend-$name.log" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || die "backend $name failed: $(cat "$TMP/backend-$name.log")"
        sleep 0.1
    done
    die "backend $name did not start: $(cat "$TMP/backend-$name.log")"
}

# URL/FAIL: main section, by target. BURL/BHOST/BCOOKIE/BNOTE/FAIL: balancing section, by
# row (FAIL is shared: the row names do not collide with the targets).
declare -A URL FAIL BURL BHOST BCOOKIE BNOTE
BAL_ROWS=(sluice-rr sluice-cookie sluice-persistent sluice-hash sluice-annotated sluice-rr2 nginx-rr nginx-hash haproxy-rr haproxy-hash)
# shellcheck disable=SC2016 # \$request_uri is meant literally here and below
declare -A BLABEL=(
    [sluice-rr]='round robin'
    [sluice-cookie]='cookie, sticky'
    [sluice-persistent]='cookie persistent, sticky'
    [sluice-hash]='hash-by $request_uri'
    [sluice-annotated]='rewrite+cors+allowlist+bodysize'
    [sluice-rr2]='round robin (again)'
    [nginx-rr]='round robin'
    [nginx-hash]='hash $request_uri consistent'
    [haproxy-rr]='roundrobin'
    [haproxy-hash]='balance uri, consistent'
)

# ---------------------------------------------------------------- backends
if ((RUN_MAIN)); then
    start_backend bench $BACKEND_PORT
    URL[direct]="http://127.0.0.1:$BACKEND_PORT$BENCH_PATH"
fi
if ((RUN_BALANCE)); then
    for i in 0 1 2; do
        start_backend "${BAL_BACKEND_NAMES[$i]}" "${BAL_BACKEND_PORTS[$i]}"
    done
fi

# ---------------------------------------------------------------- nginx (as ingress-nginx proxies)
mkdir -p "$TMP/nginx"
NGINX_USER=""
[[ $(id -u) -eq 0 ]] && NGINX_USER="user root;"
# nginx_server PORT UPSTREAM [ACCESS_LOG]: a server block proxying everything to UPSTREAM
# (with ACCESS_LOG, e.g. "access_log FILE upstreaminfo;").
nginx_server() {
    cat <<EOF
    server {
        listen 127.0.0.1:$1 default_server reuseport backlog=4096;
        server_name $HOST_HEADER;
        ${3:-}

        location / {
$(nginx_proxy_settings)

            proxy_pass http://$2;
        }
    }
EOF
}
# nginx_upstream NAME BALANCE_DIRECTIVE PORT...: an upstream block ("" = round robin).
nginx_upstream() {
    local name=$1 balance=$2 port
    shift 2
    echo "    upstream $name {"
    [[ -z $balance ]] || echo "        $balance"
    for port in "$@"; do
        echo "        server 127.0.0.1:$port;"
    done
    echo "        keepalive 320;"
    echo "        keepalive_requests 10000;"
    echo "        keepalive_timeout 60s;"
    echo "    }"
    echo
}
{
    cat <<EOF
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

    # ingress-nginx's default log-format-upstream (its "upstreaminfo"), for the log-on rows.
    log_format upstreaminfo '\$remote_addr - \$remote_user [\$time_local] "\$request" '
        '\$status \$body_bytes_sent "\$http_referer" "\$http_user_agent" '
        '\$request_length \$request_time [default-bench-80] [] \$upstream_addr '
        '\$upstream_response_length \$upstream_response_time \$upstream_status \$req_id';

    # ingress-nginx: reuse an incoming X-Request-ID, else generate one.
    map \$http_x_request_id \$req_id {
        default \$http_x_request_id;
        ""      \$request_id;
    }

EOF
    if ((RUN_MAIN)); then
        nginx_upstream upstream_balancer "" $BACKEND_PORT
        nginx_server $NGINX_PORT upstream_balancer
        nginx_server $NGINX_LOG_PORT upstream_balancer "access_log $TMP/nginx-access.log upstreaminfo;"
        ((RUN_ROWS)) && rows_nginx_conf
    fi
    if ((RUN_BALANCE)); then
        # ingress-nginx balances in Lua; these are nginx's own round robin and ketama hash.
        nginx_upstream balance_rr "" "${BAL_BACKEND_PORTS[@]}"
        # shellcheck disable=SC2016
        nginx_upstream balance_hash 'hash $request_uri consistent;' "${BAL_BACKEND_PORTS[@]}"
        nginx_server $NGINX_RR_PORT balance_rr
        nginx_server $NGINX_HASH_PORT balance_hash
    fi
    echo "}"
} >"$TMP/nginx/nginx.conf"
nginx -e "$TMP/nginx.log" -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" -g 'daemon off;' >>"$TMP/nginx.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
if ((RUN_MAIN)); then
    if reason=$(wait_http nginx "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT$BENCH_PATH" 10); then
        URL[nginx]="http://127.0.0.1:$NGINX_PORT$BENCH_PATH"
        URL[nginx-log]="http://127.0.0.1:$NGINX_LOG_PORT$BENCH_PATH"
    else
        FAIL[nginx]=$reason
        FAIL[nginx-log]=$reason
    fi
fi
if ((RUN_BALANCE)); then
    BURL[nginx-rr]="http://127.0.0.1:$NGINX_RR_PORT$BENCH_PATH"
    BURL[nginx-hash]="http://127.0.0.1:$NGINX_HASH_PORT$BENCH_PATH"
fi

# ---------------------------------------------------------------- HAProxy
{
    cat <<EOF
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
EOF
    # haproxy_frontend NAME PORT BACKEND
    haproxy_frontend() {
        cat <<EOF

frontend $1
    bind 127.0.0.1:$2
    http-request set-header X-Request-ID %[unique-id] unless { req.hdr(x-request-id) -m found }
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Port %[dst_port]
    http-request set-header X-Forwarded-Proto http
    default_backend $3
EOF
    }
    if ((RUN_MAIN)); then
        haproxy_frontend fe $HAPROXY_PORT be
        # Log-on row: ingress-nginx's default format as far as HAProxy's variables go,
        # one line per request to stdout (which is $TMP/haproxy.log).
        haproxy_frontend fe_log $HAPROXY_LOG_PORT be
        cat <<'EOF'
    log stdout format raw local0 info
    http-request capture req.hdr(Referer) len 128
    http-request capture req.hdr(User-Agent) len 128
    log-format "%ci - - [%tr] \"%r\" %ST %B \"%[capture.req.hdr(0)]\" \"%[capture.req.hdr(1)]\" %U %Ta [default-bench-80] [] %si:%sp %B %Tr %ST %ID"
EOF
        printf '\nbackend be\n    server s1 127.0.0.1:%s\n' $BACKEND_PORT
        ((RUN_ROWS)) && rows_haproxy_conf
    fi
    if ((RUN_BALANCE)); then
        haproxy_frontend fe_rr $HAPROXY_RR_PORT be_rr
        haproxy_frontend fe_hash $HAPROXY_HASH_PORT be_hash
        for b in rr hash; do
            printf '\nbackend be_%s\n' $b
            if [[ $b == hash ]]; then
                printf '    balance uri\n    hash-type consistent\n'
            else
                printf '    balance roundrobin\n'
            fi
            for i in 0 1 2; do
                printf '    server %s 127.0.0.1:%s\n' "${BAL_BACKEND_NAMES[$i]}" "${BAL_BACKEND_PORTS[$i]}"
            done
        done
    fi
} >"$TMP/haproxy.cfg"
haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
if ((RUN_MAIN)); then
    if reason=$(wait_http haproxy "$HAPROXY_PID" "http://127.0.0.1:$HAPROXY_PORT$BENCH_PATH" 10); then
        URL[haproxy]="http://127.0.0.1:$HAPROXY_PORT$BENCH_PATH"
        URL[haproxy-log]="http://127.0.0.1:$HAPROXY_LOG_PORT$BENCH_PATH"
    else
        FAIL[haproxy]=$reason
        FAIL[haproxy-log]=$reason
    fi
fi
if ((RUN_BALANCE)); then
    BURL[haproxy-rr]="http://127.0.0.1:$HAPROXY_RR_PORT$BENCH_PATH"
    BURL[haproxy-hash]="http://127.0.0.1:$HAPROXY_HASH_PORT$BENCH_PATH"
fi
if ((RUN_BALANCE)); then
    for r in nginx-rr nginx-hash haproxy-rr haproxy-hash; do
        pid=$NGINX_PID
        [[ $r == haproxy-* ]] && pid=$HAPROXY_PID
        BHOST[$r]=$HOST_HEADER
        reason=$(wait_http "${r%%-*}" "$pid" "${BURL[$r]}" 10) || FAIL[$r]=$reason
    done
fi

# ---------------------------------------------------------------- sluice
mkdir -p "$TMP/manifests"
cat >"$TMP/manifests/class.yaml" <<EOF
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: sluice.dev/ingress-controller}
EOF
if ((RUN_MAIN)); then
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
fi
if ((RUN_BALANCE)); then
    # One Ingress (host <variant>.balance.local) per variant, all to Service balance: three
    # endpoints, one EndpointSlice each (same IP, different ports, as Pods on one node
    # with hostNetwork would be).
    {
        balance_ingress() { # NAME ANNOTATIONS-FLOW-MAP
            cat <<EOF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: balance-$1, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z", annotations: $2}
spec:
  ingressClassName: nginx
  rules:
  - host: $1.balance.local
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: balance, port: {number: 80}}}}
---
EOF
        }
        balance_ingress rr '{}'
        balance_ingress cookie '{nginx.ingress.kubernetes.io/affinity: "cookie"}'
        balance_ingress persistent '{nginx.ingress.kubernetes.io/affinity: "cookie", nginx.ingress.kubernetes.io/affinity-mode: "persistent"}'
        # shellcheck disable=SC2016
        balance_ingress hash '{nginx.ingress.kubernetes.io/upstream-hash-by: "$request_uri"}'
        # Issue 6's "typical annotated route": round robin plus rewrite-target (a regex
        # host), CORS, an allowlist and a body-size limit, against the plain rr row.
        balance_ingress annotated '{nginx.ingress.kubernetes.io/rewrite-target: "/bench", nginx.ingress.kubernetes.io/enable-cors: "true", nginx.ingress.kubernetes.io/whitelist-source-range: "127.0.0.0/8", nginx.ingress.kubernetes.io/proxy-body-size: "8m"}'
        cat <<EOF
apiVersion: v1
kind: Service
metadata: {name: balance, namespace: default}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
EOF
        for i in 0 1 2; do
            cat <<EOF
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: balance-$i, namespace: default, labels: {kubernetes.io/service-name: balance}}
addressType: IPv4
ports: [{name: http, port: ${BAL_BACKEND_PORTS[$i]}}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
EOF
        done
    } >"$TMP/manifests/balance.yaml"
fi
# start_sluice URL HOST [NAME HTTP ADMIN HTTPS LOG DIR]: start sluice (default: the log-off
# instance on SLUICE_PORT; LOG=1 writes its access log, stdout, to $TMP/NAME-access.log;
# DIR: the manifests, default $TMP/manifests), wait for /readyz and a 2xx from URL with
# Host: HOST.
start_sluice() {
    local name=${3:-sluice} http=${4:-$SLUICE_PORT} admin=${5:-$SLUICE_ADMIN_PORT} https=${6:-$SLUICE_HTTPS_PORT}
    local log_flag=(--no-access-log) out=/dev/null
    if [[ ${7:-0} == 1 ]]; then
        log_flag=()
        out="$TMP/$name-access.log"
    fi
    [[ -z $SLUICE_BUILD_FAILED ]] || {
        echo "$SLUICE_BUILD_FAILED"
        return 1
    }
    [[ -x $SLUICE_BIN ]] || {
        echo "$SLUICE_BIN not built"
        return 1
    }
    SLUICE_WORKERS=$WORKERS "$SLUICE_BIN" --manifests "${8:-$TMP/manifests}" \
        --http-listen "127.0.0.1:$http" --admin-listen "127.0.0.1:$admin" \
        --https-listen "127.0.0.1:$https" "${log_flag[@]}" \
        >"$out" 2>"$TMP/$name.log" &
    local pid=$!
    PIDS+=("$pid")
    local deadline=$((SECONDS + 20))
    until curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$admin/readyz"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            local rc=0
            wait "$pid" || rc=$?
            echo "exited with status $rc during startup: $(tail -n 3 "$TMP/$name.log" | tr '\n' ' ')"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "/readyz not 200 within 20s"
            return 1
        fi
        sleep 0.2
    done
    wait_http "$name" "$pid" "$1" 5 "$2"
}
SLUICE_URL="http://127.0.0.1:$SLUICE_PORT$BENCH_PATH"
# PIDS is appended inside start_sluice, so it must not run in a subshell.
declare -A PROC # target -> the PIDs whose CPU time is the proxy's
if ((RUN_MAIN)); then
    start_sluice "$SLUICE_URL" "$HOST_HEADER" >"$TMP/sluice.start" || FAIL[sluice]=$(tr '\n' ' ' <"$TMP/sluice.start")
    [[ -n ${FAIL[sluice]:-} ]] || URL[sluice]=$SLUICE_URL
    PROC[sluice]=${PIDS[-1]}
    # The same sluice with its access log on (ingress-nginx's default format, stdout to a file).
    url="http://127.0.0.1:$SLUICE_LOG_PORT$BENCH_PATH"
    if start_sluice "$url" "$HOST_HEADER" sluice-log $SLUICE_LOG_PORT $SLUICE_LOG_ADMIN_PORT $SLUICE_LOG_HTTPS_PORT 1 >"$TMP/sluice-log.start"; then
        URL[sluice-log]=$url
    else
        FAIL[sluice-log]=$(tr '\n' ' ' <"$TMP/sluice-log.start")
    fi
    PROC[sluice-log]=${PIDS[-1]}
    # The bare-Pingora floor (examples/floor.rs): same workers and listener setup, fixed peer.
    if [[ -n $SLUICE_BUILD_FAILED || ! -x $FLOOR_BIN ]]; then
        FAIL[floor]="${SLUICE_BUILD_FAILED:-$FLOOR_BIN not built}"
    else
        "$FLOOR_BIN" --listen "127.0.0.1:$FLOOR_PORT" --upstream "127.0.0.1:$BACKEND_PORT" --workers "$WORKERS" >"$TMP/floor.log" 2>&1 &
        PIDS+=("$!")
        PROC[floor]=$!
        if reason=$(wait_http floor "$!" "http://127.0.0.1:$FLOOR_PORT$BENCH_PATH" 10); then
            URL[floor]="http://127.0.0.1:$FLOOR_PORT$BENCH_PATH"
        else
            FAIL[floor]=$reason
        fi
    fi
    PROC[nginx]=$(pgrep -P "$NGINX_PID" | tr '\n' ' ')
    PROC[nginx-log]=${PROC[nginx]}
    PROC[haproxy]=$HAPROXY_PID
    PROC[haproxy-log]=$HAPROXY_PID
    if ((RUN_ROWS)); then
        rows_start_sluice >"$TMP/sluice-hosts.start" || ROWS_SLUICE_FAIL=$(tr '\n' ' ' <"$TMP/sluice-hosts.start")
        ROWS_SLUICE_PID=${PIDS[-1]}
    fi
    if ((RUN_BALANCE)) && [[ -z ${FAIL[sluice]:-} ]]; then
        reason=$(wait_http sluice "${PIDS[-1]}" "$SLUICE_URL" 5 rr.balance.local) || FAIL[sluice]=$reason
    fi
else
    start_sluice "$SLUICE_URL" rr.balance.local >"$TMP/sluice.start" || FAIL[sluice]=$(tr '\n' ' ' <"$TMP/sluice.start")
fi
if ((RUN_BALANCE)); then
    for r in sluice-rr sluice-cookie sluice-persistent sluice-hash sluice-annotated sluice-rr2; do
        BURL[$r]=$SLUICE_URL
        v=${r#sluice-}
        v=${v%2}
        BHOST[$r]=$v.balance.local
        [[ -z ${FAIL[sluice]:-} ]] || FAIL[$r]=${FAIL[sluice]}
    done
fi

# ---------------------------------------------------------------- measure
# to_ms VALUE: wrk prints 512.00us / 1.23ms / 1.01s / 1.00m
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

# wrk prints no p99.9; its Lua done() hook does, in microseconds, with the request count.
cat >"$TMP/pctl.lua" <<'EOF'
done = function(summary, latency, requests)
  io.write(string.format("PCTL %d %d %d %d\n", latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), summary.requests))
end
EOF
CLK_TCK=$(getconf CLK_TCK)

declare -A RPS P50 P99 P999 ERRS CPU_U CPU_S CPU_T
# measure KEY URL HOST [WRK-ARG...]: a warm-up, then the measured wrk run; sets RPS, P50,
# P99, P999 and ERRS of KEY, or FAIL of KEY; with PROC[KEY] also CPU_U/CPU_S/CPU_T, the
# proxy's user/system/total CPU µs per request over the measured run.
measure() {
    local key=$1 url=$2 host=$3 out="$TMP/wrk-$1.txt" errs non2xx sock c0 c1 n
    shift 3
    log "measuring $key (${WARMUP}s warm-up + ${DURATION}s)"
    local wrk_args=(-t"$WRK_THREADS" -c"$WRK_CONNS" -H "Host: $host" -s "${WRK_SCRIPT:-$TMP/pctl.lua}" "$@")
    timeout $((WARMUP + 30)) wrk "${wrk_args[@]}" -d"${WARMUP}s" "$url" >/dev/null 2>&1 || true
    # shellcheck disable=SC2086 # PROC holds a list of PIDs
    c0=$(cpu_split ${PROC[$key]:-})
    if ! timeout $((DURATION + 30)) wrk "${wrk_args[@]}" -d"${DURATION}s" --latency "$url" >"$out" 2>&1; then
        FAIL[$key]="wrk failed: $(tail -n 2 "$out" | tr '\n' ' ')"
        return 0
    fi
    # shellcheck disable=SC2086
    c1=$(cpu_split ${PROC[$key]:-})
    RPS[$key]=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    read -r _ P50[$key] P99[$key] P999[$key] n < <(awk '$1 == "PCTL" {printf "x %.3f %.3f %.3f %d\n", $2 / 1000, $3 / 1000, $4 / 1000, $5}' "$out")
    if [[ -n ${PROC[$key]:-} && ${n:-0} -gt 0 ]]; then
        read -r CPU_U[$key] CPU_S[$key] CPU_T[$key] < <(awk -v a="$c0" -v b="$c1" -v n="$n" -v hz="$CLK_TCK" 'BEGIN {
            split(a, x, " "); split(b, y, " "); u = (y[1] - x[1]) * 1e6 / hz / n; s = (y[2] - x[2]) * 1e6 / hz / n
            printf "%.1f %.1f %.1f\n", u, s, u + s }')
    fi
    errs=""
    non2xx=$(awk -F': *' '/Non-2xx or 3xx responses/ {print $2}' "$out")
    [[ -z $non2xx ]] || errs="non-2xx/3xx: $non2xx"
    sock=$(sed -n 's/^ *Socket errors: *//p' "$out")
    [[ -z $sock ]] || errs="${errs:+$errs; }socket errors: $sock"
    ERRS[$key]=$errs
    if [[ -z ${RPS[$key]} ]]; then
        FAIL[$key]="could not parse wrk output: $(tr '\n' ' ' <"$out" | cut -c1-200)"
    fi
}

version_of() { "$@" 2>&1 | head -n 1 | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n 1 || true; }
print_header() {
    echo "# $(date -u '+%Y-%m-%dT%H:%M:%SZ')  nproc=$NPROC  workers=$WORKERS  nginx $(version_of nginx -v)  haproxy $(version_of haproxy -v)  wrk $(version_of wrk -v)"
}

if ((RUN_MAIN)); then
    # Log-off rows, then log-on rows; sluice and the floor measured next to each other.
    TARGETS=(direct nginx haproxy floor sluice nginx-log haproxy-log sluice-log)
    for t in "${TARGETS[@]}"; do
        [[ -n ${URL[$t]:-} ]] || continue
        measure "$t" "${URL[$t]}" "$HOST_HEADER"
    done
    # Access-log lines written (a log-on row that wrote none measured nothing).
    declare -A LOGFILE=([nginx-log]="$TMP/nginx-access.log" [haproxy-log]="$TMP/haproxy.log" [sluice-log]="$TMP/sluice-log-access.log")

    # ------------------------------------------------------------ report
    echo
    print_header
    echo "# wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s --latency (after ${WARMUP}s warm-up), GET $BENCH_PATH (256-byte body), HTTP/1.1 keep-alive"
    echo "# us/req: the proxy's CPU per request (utime/stime from /proc of the proxy process, nginx's workers), over the measured run"
    echo "# *-log rows: access log on, ingress-nginx's default format, to a file; other rows: access log off"
    printf '%-12s %9s %8s %8s %8s %7s %7s %7s  %s\n' target 'req/s' 'p50 ms' 'p99 ms' 'p99.9 ms' 'us usr' 'us sys' 'us/req' 'notes'

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
        [[ -n ${RPS[$t]:-} ]] || continue
        notes=""
        if [[ $t == sluice && -n $best_rps ]]; then
            notes=$(awk -v r="${RPS[$t]}" -v br="$best_rps" -v p="${P99[$t]}" -v bp="$best_p99" \
                'BEGIN { printf "throughput x%.2f of best peer, p99 x%.2f of best peer", r / br, (bp > 0 ? p / bp : 0) }')
        fi
        if [[ -n ${LOGFILE[$t]:-} ]]; then
            notes="${notes:+$notes; }$(wc -l <"${LOGFILE[$t]}" 2>/dev/null || echo 0) log lines"
        fi
        [[ -z ${ERRS[$t]:-} ]] || notes="${notes:+$notes; }${ERRS[$t]}"
        printf '%-12s %9.0f %8.3f %8.3f %8.3f %7s %7s %7s  %s\n' "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" "${P999[$t]}" \
            "${CPU_U[$t]:--}" "${CPU_S[$t]:--}" "${CPU_T[$t]:--}" "$notes"
    done
    # ratio A B: CPU per request of A / of B, or "-".
    ratio() {
        if [[ -n ${CPU_T[$1]:-} && -n ${CPU_T[$2]:-} ]]; then
            awk -v a="${CPU_T[$1]}" -v b="${CPU_T[$2]}" 'BEGIN {printf "x%.2f", (b > 0 ? a / b : 0)}'
        else
            echo -
        fi
    }
    echo "# CPU per request: sluice/floor $(ratio sluice floor) (goal <= x1.05)  floor/nginx $(ratio floor nginx) (goal <= x1.30)  sluice/nginx $(ratio sluice nginx)"
    echo "# log on:          sluice-log/floor $(ratio sluice-log floor) (goal <= x1.10)  sluice-log/nginx-log $(ratio sluice-log nginx-log)  sluice-log/sluice $(ratio sluice-log sluice)"
    if [[ -n ${RPS[sluice]:-} && -n ${RPS[sluice-log]:-} ]]; then
        echo "# access log throughput cost: sluice-log req/s / sluice req/s $(awk -v a="${RPS[sluice-log]}" -v b="${RPS[sluice]}" 'BEGIN {printf "x%.3f", a / b}') (goal >= x0.90)"
    fi
    if ((RUN_ROWS)); then
        rows_run
        rows_report
    fi
fi

((RUN_BALANCE)) || exit 0

# ---------------------------------------------------------------- balancing section
# probe URL HOST [COOKIE]: 9 sequential requests (new connection each); prints the
# distinct x-backend values seen, comma-separated, then " set-cookie" if any response
# set a cookie.
probe() {
    local url=$1 host=$2 extra=() hdrs seen="" setc=""
    [[ -z ${3:-} ]] || extra=(-H "Cookie: $3")
    for _ in 1 2 3 4 5 6 7 8 9; do
        hdrs=$(curl -s -D - -o /dev/null --max-time 2 -H "Host: $host" "${extra[@]}" "$url" | tr -d '\r') || true
        seen+="$(awk -F': *' 'tolower($1) == "x-backend" {print $2}' <<<"$hdrs")"$'\n'
        grep -qi '^set-cookie:' <<<"$hdrs" && setc=" set-cookie"
    done
    echo "$(grep -v '^$' <<<"$seen" | sort -u | paste -sd, -)$setc"
}

# Sticky rows: the first response's INGRESSCOOKIE goes into every wrk request, so wrk
# measures the path of a returning client (cookie valid, no Set-Cookie issued).
for r in sluice-cookie sluice-persistent; do
    [[ -z ${FAIL[$r]:-} ]] || continue
    hdrs=$(curl -si --max-time 2 -H "Host: ${BHOST[$r]}" "${BURL[$r]}" | tr -d '\r' || true)
    value=$(sed -n 's/^[Ss][Ee][Tt]-[Cc][Oo][Oo][Kk][Ii][Ee]: *INGRESSCOOKIE=\([^;]*\).*/\1/p' <<<"$hdrs" | head -n 1)
    if [[ -z $value ]]; then
        FAIL[$r]="no Set-Cookie: INGRESSCOOKIE=... in the first answer: $(head -n 1 <<<"$hdrs")"
        continue
    fi
    BCOOKIE[$r]="INGRESSCOOKIE=$value"
done
# Check each row routes as its variant should before measuring it.
for r in "${BAL_ROWS[@]}"; do
    [[ -z ${FAIL[$r]:-} ]] || continue
    seen=$(probe "${BURL[$r]}" "${BHOST[$r]}" "${BCOOKIE[$r]:-}")
    backends=${seen% set-cookie}
    case $r in
        *-rr | *-rr2 | sluice-annotated)
            if [[ $backends == *,*,* ]]; then
                BNOTE[$r]="spread over $backends"
            else
                BNOTE[$r]="WARNING: 9 requests reached only ${backends:-no backend}"
            fi
            ;;
        sluice-cookie | sluice-persistent)
            if [[ $seen == *set-cookie ]]; then
                BNOTE[$r]="WARNING: cookie re-issued with the cookie sent (not the sticky path); backends $backends"
            elif [[ -n $backends && $backends != *,* ]]; then
                BNOTE[$r]="sticky to $backends, no Set-Cookie"
            else
                BNOTE[$r]="WARNING: not sticky: ${backends:-no backend}"
            fi
            ;;
        *-hash)
            if [[ -n $backends && $backends != *,* ]]; then
                BNOTE[$r]="one URI -> $backends"
            else
                BNOTE[$r]="WARNING: one URI reached ${backends:-no backend}"
            fi
            ;;
    esac
done

for r in "${BAL_ROWS[@]}"; do
    [[ -z ${FAIL[$r]:-} ]] || continue
    extra=()
    [[ -z ${BCOOKIE[$r]:-} ]] || extra=(-H "Cookie: ${BCOOKIE[$r]}")
    measure "$r" "${BURL[$r]}" "${BHOST[$r]}" "${extra[@]}"
done

# ---------------------------------------------------------------- balancing report
# Reference per proxy: its round robin req/s (sluice: the mean of the runs before and
# after its other variants, so slow drift of a noisy machine cancels out).
declare -A REF
for p in sluice nginx haproxy; do
    sum=0 n=0
    for r in "$p-rr" "$p-rr2"; do
        [[ -n ${RPS[$r]:-} && -z ${FAIL[$r]:-} ]] || continue
        sum=$(awk -v a="$sum" -v b="${RPS[$r]}" 'BEGIN {print a + b}')
        n=$((n + 1))
    done
    ((n == 0)) || REF[$p]=$(awk -v s="$sum" -v n="$n" 'BEGIN {print s / n}')
done

echo
((RUN_MAIN)) || print_header
echo "# balancing: Service with 3 endpoints (sluice-echo ${BAL_BACKEND_NAMES[*]} on 127.0.0.1:${BAL_BACKEND_PORTS[0]}-${BAL_BACKEND_PORTS[2]}); same wrk -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s --latency, GET $BENCH_PATH"
echo "# sluice: one process, Host <variant>.balance.local; cookie rows send the INGRESSCOOKIE of a first curl (sticky path); one URI, so hash rows load one endpoint"
echo "# vs rr: req/s / the same proxy's round robin (sluice: mean of its two round robin runs). Goal: sluice variants within 5% of round robin (>= x0.95)"
printf '%-8s %-29s %10s %8s %8s %7s  %s\n' proxy variant 'req/s' 'p50 ms' 'p99 ms' 'vs rr' 'notes'
misses=() met=0
for r in "${BAL_ROWS[@]}"; do
    p=${r%%-*}
    if [[ -n ${FAIL[$r]:-} ]]; then
        printf '%-8s %-29s FAILED (%s)\n' "$p" "${BLABEL[$r]}" "${FAIL[$r]}"
        continue
    fi
    ratio="-"
    [[ -z ${REF[$p]:-} ]] || ratio=$(awk -v a="${RPS[$r]}" -v b="${REF[$p]}" 'BEGIN {printf "x%.3f", a / b}')
    notes=${BNOTE[$r]:-}
    [[ -z ${ERRS[$r]:-} ]] || notes="${notes:+$notes; }${ERRS[$r]}"
    if [[ $p == sluice && $r != sluice-rr* && $ratio != - ]]; then
        if awk -v x="${ratio#x}" 'BEGIN {exit !(x >= 0.95)}'; then
            met=$((met + 1))
            notes="goal ok (>= x0.95); $notes"
        else
            misses+=("${BLABEL[$r]} $ratio")
            notes="BELOW GOAL (< x0.95); $notes"
        fi
    fi
    printf '%-8s %-29s %10.0f %8.3f %8.3f %7s  %s\n' "$p" "${BLABEL[$r]}" "${RPS[$r]}" "${P50[$r]}" "${P99[$r]}" "$ratio" "$notes"
done
noisy=0
if [[ -n ${RPS[sluice-rr]:-} && -n ${RPS[sluice-rr2]:-} ]]; then
    drift=$(awk -v a="${RPS[sluice-rr]}" -v b="${RPS[sluice-rr2]}" 'BEGIN {d = (b - a) / a * 100; printf "%+.1f", d}')
    echo "# noise: sluice's two round robin runs differ by ${drift}%; a ratio off x1.00 by less than that is not a finding"
    awk -v d="$drift" 'BEGIN {exit !(d > 5 || d < -5)}' && noisy=1
fi
if ((${#misses[@]})); then
    verdict="goal NOT met"
    ((noisy)) && verdict="goal inconclusive (round robin itself moved more than 5%; rerun, longer or on a quieter machine)"
    echo "# $verdict; sluice variants below x0.95 of round robin: $(IFS=';'; echo "${misses[*]}")"
elif ((met)); then
    verdict="goal met: no measured sluice variant more than 5% below round robin"
    ((noisy)) && verdict="$verdict (but round robin itself moved more than 5%)"
    echo "# $verdict"
fi
