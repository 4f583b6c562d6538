#!/usr/bin/env bash
# TLS termination benchmark: nginx and sluice terminating TLS for the same certificate in
# front of one sluice-echo backend, in one run. This is a benchmark, not a test.
#
#   1. full handshakes/s, one new connection (and one HTTP/1.0 request) per handshake,
#      and TLS 1.2 resumptions/s (s_time -reuse),
#      with an ECDSA P-256 and, separately, an RSA-2048 certificate;
#   2. keep-alive HTTPS requests/s over HTTP/1.1 (wrk) and over h2 (h2load);
#   3. sluice alone with 10,000 distinct certificates (10,000 kubernetes.io/tls Secrets and
#      Ingresses with spec.tls): routing-table build time, VmRSS, SNI picks the right one.
#
# Handshake client: `openssl s_time -new -www ...`, several in parallel. Every connection
# is a fresh SSL object without a session, so every handshake is full whatever the server
# offers. wrk is NOT usable for this: with `Connection: close` it reconnects but keeps the
# previous session (SSL_clear) and resumes it (checked: 1124 of 1126 nginx handshakes were
# resumptions with nginx's default session settings), and sluice's rustls keeps a stateful
# session cache that cannot be switched off from the command line. h2load has no
# per-connection request limit. s_time cannot set SNI nor headers: the Host header is
# smuggled into its request line (GET /bench?size=256 HTTP/1.0 CRLF Host: bench.local CRLF
# Connection: close CRLF X-Pad: HTTP/1.0), and sluice gets `--default-ssl-certificate` so a
# handshake without SNI gets the benchmark certificate (the same resolver path, minus one
# hash lookup). s_time reads until the server closes; the explicit `Connection: close` is
# needed because sluice keeps an HTTP/1.0 connection without keep-alive open (checked and
# reported on a `# note` line).
# Connections/s are counted from s_time's one-character-per-connection output ('*' new
# session, 'r' resumed) over a window after the warm-up.
#
# Besides requests/s the table gives each server's CPU time per request (utime+stime from
# /proc of the sluice process or the nginx workers over the same window). Clients, backend
# and servers share the machine, and OpenSSL 3 clients are expensive (s_time spends more
# CPU per handshake than either server), so req/s ratios are compressed toward 1; the CPU
# per request is the fairer comparison of the TLS work itself. On a small shared machine
# the absolute figures are noisy: compare the ratios within ONE run only.
#
# Usage: e2e/bench/tls.sh [--quick] [--no-build]
#   --quick     3 s measurement per row instead of BENCH_DURATION
#   --no-build  use the binaries already in target/release
# Environment:
#   BENCH_WORKERS      nginx worker processes and sluice workers (default 2)
#   BENCH_DURATION     seconds of measurement per row (default 10)
#   BENCH_HS_CLIENTS   parallel `openssl s_time` processes for the handshake rows (default 8)
#   BENCH_THREADS      wrk / h2load threads (default 2)
#   BENCH_CONNECTIONS  wrk / h2load connections (default 50)
#   BENCH_STREAMS      h2load concurrent streams per connection (default 10)
#   BENCH_CERTS        number of certificates of part 3 (default 10000; 0 skips it)
#   BENCH_KEEP=1       keep the temp dir (certificates, configs, logs, raw outputs)
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
            echo "tls.sh: unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

NPROC=$(nproc)
WORKERS=${BENCH_WORKERS:-2}
HS_CLIENTS=${BENCH_HS_CLIENTS:-8}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNECTIONS:-50}
STREAMS=${BENCH_STREAMS:-10}
NCERTS=${BENCH_CERTS:-10000}
WARMUP=2
CLK_TCK=$(getconf CLK_TCK)

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=65536
((NOFILE > 65536)) && NOFILE=65536

# Fixed ports, 127.0.0.1 only (the manifests below point at the backend port).
BACKEND_PORT=19200
NGINX_ECDSA_PORT=19201
NGINX_RSA_PORT=19202
SLUICE_ECDSA_PORTS=(19203 19204 19205) # http https admin
SLUICE_RSA_PORTS=(19206 19207 19208)
SLUICE_MANY_PORTS=(19209 19210 19211)
BENCH_PATH='/bench?size=256'
HOST='bench.local'

log() { echo "tls.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}

# ---------------------------------------------------------------- prerequisites
need_pkgs=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v h2load >/dev/null 2>&1 || need_pkgs+=(nghttp2-client)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
# shellcheck source=e2e/bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
bench_install "${need_pkgs[@]}"
export PATH="$PATH:/usr/sbin:/sbin"
bench_build "$BUILD"

# ---------------------------------------------------------------- process management
bench_tmp sluice-bench-tls
for p in $BACKEND_PORT $NGINX_ECDSA_PORT $NGINX_RSA_PORT "${SLUICE_ECDSA_PORTS[@]}" \
    "${SLUICE_RSA_PORTS[@]}" "${SLUICE_MANY_PORTS[@]}"; do
    port_busy "$p" && die "127.0.0.1:$p is already in use; stop whatever listens there"
done

declare -A FAIL

# https_ok PORT [HOST]: GET the benchmark path over HTTPS with SNI HOST (default
# bench.local); 0 on a 2xx.
https_ok() {
    local h=${2:-$HOST}
    curl -skf -o /dev/null --max-time 2 --resolve "$h:$1:127.0.0.1" "https://$h:$1$BENCH_PATH"
}

# ---------------------------------------------------------------- certificates
log "generating the ECDSA P-256 and RSA-2048 certificates (SAN $HOST)"
mkdir -p "$TMP/certs"
openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 30 \
    -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
    -keyout "$TMP/certs/ecdsa.key" -out "$TMP/certs/ecdsa.crt" 2>"$TMP/certs/openssl.log" ||
    die "openssl req (ECDSA) failed: $(cat "$TMP/certs/openssl.log")"
openssl req -x509 -nodes -newkey rsa:2048 -days 30 \
    -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
    -keyout "$TMP/certs/rsa.key" -out "$TMP/certs/rsa.crt" 2>"$TMP/certs/openssl.log" ||
    die "openssl req (RSA) failed: $(cat "$TMP/certs/openssl.log")"

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

# ---------------------------------------------------------------- nginx
mkdir -p "$TMP/nginx"
NGINX_USER=""
[[ $(id -u) -eq 0 ]] && NGINX_USER="user root;"
nginx_server() { # PORT CERT-NAME
    cat <<EOF
    server {
        listen 127.0.0.1:$1 ssl http2 reuseport backlog=4096;
        server_name $HOST;
        ssl_certificate $TMP/certs/$2.crt;
        ssl_certificate_key $TMP/certs/$2.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        # ingress-nginx's defaults: a shared session cache, no tickets. The full-handshake
        # rows are full anyway (s_time -new never offers a session); the resumption row
        # uses the cache.
        ssl_session_cache shared:SSL:10m;
        ssl_session_timeout 10m;
        ssl_session_tickets off;

        location / {
$(nginx_proxy_settings)
            proxy_pass http://upstream_balancer;
        }
    }
EOF
}
cat >"$TMP/nginx/nginx.conf" <<EOF
# As e2e/bench/proxy.sh (ingress-nginx's proxying minus Lua), terminating TLS.
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
    # ingress-nginx's default is 1000. Raised so that h2load's connections are never sent
    # away mid-run (sluice sets no such limit); one handshake per 1000 requests would
    # change the keep-alive rows by well under 1% anyway.
    keepalive_requests 1000000;
    server_tokens off;

    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;

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

$(nginx_server "$NGINX_ECDSA_PORT" ecdsa)
$(nginx_server "$NGINX_RSA_PORT" rsa)
}
EOF
nginx -e "$TMP/nginx.log" -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" -g 'daemon off;' >>"$TMP/nginx.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
deadline=$((SECONDS + 10))
until https_ok "$NGINX_ECDSA_PORT" && https_ok "$NGINX_RSA_PORT"; do
    if ! kill -0 "$NGINX_PID" 2>/dev/null; then
        FAIL[nginx]="exited during startup: $(tail -n 3 "$TMP/nginx.log" | tr '\n' ' ')"
        break
    fi
    if ((SECONDS >= deadline)); then
        FAIL[nginx]="no 2xx over HTTPS within 10s"
        break
    fi
    sleep 0.2
done

# ---------------------------------------------------------------- sluice
b64() { base64 -w0 <"$1"; }
write_common_manifests() { # DIR
    cat >"$1/common.yaml" <<EOF
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
}
write_bench_manifests() { # DIR CERT-NAME
    mkdir -p "$1"
    write_common_manifests "$1"
    cat >"$1/bench.yaml" <<EOF
apiVersion: v1
kind: Secret
metadata: {name: bench-tls, namespace: default}
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$TMP/certs/$2.crt")
  tls.key: $(b64 "$TMP/certs/$2.key")
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bench, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  ingressClassName: nginx
  tls: [{hosts: [$HOST], secretName: bench-tls}]
  rules:
  - host: $HOST
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: bench, port: {number: 80}}}}
EOF
}

declare -A SLUICE_PID READY_S
# start_sluice NAME MANIFESTS HTTP HTTPS ADMIN TIMEOUT CHECK-HOST [EXTRA-ARGS...]: sets
# SLUICE_PID[NAME] and READY_S[NAME] (launch to /readyz 200) and checks that CHECK-HOST
# answers over HTTPS, or prints the reason and returns 1. Must not run in a subshell (PIDS).
start_sluice() {
    local name=$1 dir=$2 http=$3 https=$4 admin=$5 secs=$6 check=$7
    shift 7
    [[ -z $SLUICE_BUILD_FAILED ]] || {
        echo "$SLUICE_BUILD_FAILED"
        return 1
    }
    [[ -x $SLUICE_BIN ]] || {
        echo "$SLUICE_BIN not built"
        return 1
    }
    local t0
    t0=$(date +%s.%N)
    "$SLUICE_BIN" --manifests "$dir" --http-listen "127.0.0.1:$http" --https-listen "127.0.0.1:$https" \
        --admin-listen "127.0.0.1:$admin" --workers "$WORKERS" --no-access-log "$@" \
        >"$TMP/sluice-$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    SLUICE_PID[$name]=$pid
    local deadline=$((SECONDS + secs))
    until curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$admin/readyz"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            local rc=0
            wait "$pid" || rc=$?
            echo "exited with status $rc during startup: $(tail -n 3 "$TMP/sluice-$name.log" | tr '\n' ' ')"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "/readyz not 200 within ${secs}s"
            return 1
        fi
        sleep 0.05
    done
    READY_S[$name]=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
    deadline=$((SECONDS + 5))
    until https_ok "$https" "$check"; do
        if ((SECONDS >= deadline)); then
            echo "ready, but no 2xx from https://$check:$https$BENCH_PATH within 5s"
            return 1
        fi
        sleep 0.1
    done
}

vmrss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || true; }

for c in ecdsa rsa; do
    write_bench_manifests "$TMP/manifests-$c" "$c"
done
start_sluice ecdsa "$TMP/manifests-ecdsa" "${SLUICE_ECDSA_PORTS[@]}" 20 "$HOST" \
    --default-ssl-certificate default/bench-tls >"$TMP/sluice.start" ||
    FAIL[sluice]="ecdsa: $(tr '\n' ' ' <"$TMP/sluice.start")"
RSS_ONE=""
[[ -n ${FAIL[sluice]:-} ]] || RSS_ONE=$(vmrss_mib "${SLUICE_PID[ecdsa]}")
if [[ -z ${FAIL[sluice]:-} ]]; then
    start_sluice rsa "$TMP/manifests-rsa" "${SLUICE_RSA_PORTS[@]}" 20 "$HOST" \
        --default-ssl-certificate default/bench-tls >"$TMP/sluice.start" ||
        FAIL[sluice]="rsa: $(tr '\n' ' ' <"$TMP/sluice.start")"
fi

declare -A PORT=(
    [nginx.ecdsa]=$NGINX_ECDSA_PORT [nginx.rsa]=$NGINX_RSA_PORT
    [sluice.ecdsa]=${SLUICE_ECDSA_PORTS[1]} [sluice.rsa]=${SLUICE_RSA_PORTS[1]}
)

# ---------------------------------------------------------------- sanity checks
# server_pids SERVER CERT: the processes whose CPU time is the server's.
server_pids() {
    if [[ $1 == nginx ]]; then
        pgrep -P "$NGINX_PID" | tr '\n' ' '
    else
        echo "${SLUICE_PID[$2]}"
    fi
}
# cpu_ticks PID...: utime+stime (all threads), in clock ticks.
cpu_ticks() {
    local pid sum=0 t
    for pid in "$@"; do
        # Fields after the ")" that closes comm: utime and stime are the 12th and 13th.
        t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

# The request s_time sends: its format is "GET %s HTTP/1.0\r\n\r\n".
STIME_PATH=$'/bench?size=256 HTTP/1.0\r\nHost: bench.local\r\nConnection: close\r\nX-Pad:'
STIME_REQUEST=$'GET /bench?size=256 HTTP/1.0\r\nHost: bench.local\r\nConnection: close\r\nX-Pad: HTTP/1.0\r\n\r\n'

declare -A TLSINFO RESUME TICKETS HTTP10
for s in nginx sluice; do
    [[ -z ${FAIL[$s]:-} ]] || continue
    # HTTP/1.0 without keep-alive: the server must close after the response (RFC 9112 9.3).
    if printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$BENCH_PATH" "$HOST" |
        timeout 5 openssl s_client -connect "127.0.0.1:${PORT[$s.ecdsa]}" -ign_eof >/dev/null 2>&1; then
        HTTP10[$s]=closed
    else
        HTTP10[$s]="still open 5 s after the response"
    fi
    for c in ecdsa rsa; do
        p=${PORT[$s.$c]}
        # What s_time gets (no SNI): the status line of the exact request and the certificate.
        out=$(printf '%s' "$STIME_REQUEST" | timeout 10 openssl s_client -connect "127.0.0.1:$p" \
            -ign_eof 2>&1 || true)
        status=$(grep -m1 -oE '^HTTP/1\.[01] [0-9]{3}' <<<"$out" || true)
        [[ $status == *" 200" ]] || FAIL[$s]="$c: s_time's request got '${status:-no status line}' instead of 200"
        keytype=$(sed -n 's/^Server public key is \([0-9]*\) bit/\1-bit/p' <<<"$out" | head -n 1)
        sig=$(sed -n 's/^Peer signature type: //p' <<<"$out" | head -n 1)
        proto=$(sed -n 's/^New, \(TLSv[0-9.]*\), Cipher is \(.*\)$/\1 \2/p' <<<"$out" | head -n 1)
        kx=$(sed -n 's/^Server Temp Key: \([^,]*\).*/\1/p' <<<"$out" | head -n 1)
        TLSINFO[$s.$c]="$proto $kx ${sig:-?} $keytype"
    done
    # Resumption: save the session (tickets arrive with the response), offer it on a new
    # connection. Several tries: a per-worker session cache only resumes when the kernel
    # hands the new connection to the same worker (SO_REUSEPORT).
    p=${PORT[$s.ecdsa]}
    RESUME[$s]=""
    for v in tls1_3 tls1_2; do
        r=0
        for try in 1 2 3 4 5 6; do
            out=$(printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$BENCH_PATH" "$HOST" |
                timeout 10 openssl s_client -connect "127.0.0.1:$p" -servername "$HOST" "-$v" \
                    -sess_out "$TMP/sess-$s-$v" -ign_eof 2>&1 || true)
            [[ $v != tls1_3 || $try != 1 ]] ||
                TICKETS[$s]=$(grep -c 'Post-Handshake New Session Ticket arrived' <<<"$out" || true)
            again=$(timeout 10 openssl s_client -connect "127.0.0.1:$p" -servername "$HOST" "-$v" \
                -sess_in "$TMP/sess-$s-$v" </dev/null 2>&1 || true)
            ! grep -q '^Reused,' <<<"$again" || r=$((r + 1))
        done
        RESUME[$s]+="${v/tls1_/TLS1.} $r/6, "
    done
    RESUME[$s]=${RESUME[$s]%, }
done

# ---------------------------------------------------------------- measure
declare -A RATE CPU NOTE
# hs_run SERVER CERT [reuse]: full handshakes/s with HS_CLIENTS `openssl s_time -new`
# processes, or with `reuse`, TLS 1.2 resumptions/s (`s_time -reuse`: every connection
# offers the session of the first; TLS 1.2 session IDs, which both servers keep in a
# cache shared by their workers).
hs_run() {
    local s=$1 c=$2 p=${PORT[$1.$2]} key="hs.$2.$1" i mode=(-new) tag=$2
    if [[ ${3:-} == reuse ]]; then
        key="rs.$2.$1" mode=(-reuse -tls1_2) tag="$2-reuse"
    fi
    local -a spids=() files=()
    log "handshakes $tag $s (${WARMUP}s warm-up + ${DURATION}s, $HS_CLIENTS x openssl s_time ${mode[*]})"
    for ((i = 0; i < HS_CLIENTS; i++)); do
        files+=("$TMP/stime-$tag-$s-$i.txt")
        openssl s_time -connect "127.0.0.1:$p" "${mode[@]}" -time $((WARMUP + DURATION + 2)) \
            -www "$STIME_PATH" >"${files[i]}" 2>"${files[i]%.txt}.err" &
        spids+=($!)
    done
    PIDS+=("${spids[@]}")
    # count CHARS: characters s_time printed so far, one per finished connection.
    count() { cat "${files[@]}" | tr -cd "$1" | wc -c; }
    sleep "$WARMUP"
    local srv t0 n0 c0 r0 t1 n1 c1 r1
    srv=$(server_pids "$s" "$c")
    t0=$(date +%s.%N) n0=$(count '*r') r0=$(count r)
    # shellcheck disable=SC2086
    c0=$(cpu_ticks $srv)
    sleep "$DURATION"
    t1=$(date +%s.%N) n1=$(count '*r') r1=$(count r)
    # shellcheck disable=SC2086
    c1=$(cpu_ticks $srv)
    local early=0
    for i in "${!spids[@]}"; do kill -0 "${spids[i]}" 2>/dev/null || early=$((early + 1)); done
    # They stop ~2 s later by themselves; one stuck on a connection the server keeps open
    # would wait for the server's keep-alive timeout.
    local deadline=$((SECONDS + 6))
    for i in "${!spids[@]}"; do
        while kill -0 "${spids[i]}" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill "${spids[i]}" 2>/dev/null || true
        wait "${spids[i]}" 2>/dev/null || true
    done
    if ((early)); then
        FAIL[$key]="$early s_time process(es) ended early: $(cat "$TMP/stime-$tag-$s-"*.err | tail -n 3 | tr '\n' ' ')"
        return
    fi
    local n=$((n1 - n0))
    ((n > 0)) || {
        FAIL[$key]="no connections completed: $(tail -n 3 "${files[0]%.txt}.err" | tr '\n' ' ')"
        return
    }
    RATE[$key]=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}')
    CPU[$key]=$(awk -v d="$((c1 - c0))" -v n="$n" -v hz="$CLK_TCK" 'BEGIN {printf "%.0f", d * 1e6 / hz / n}')
    if [[ ${3:-} == reuse ]]; then
        NOTE[$key]+="$s resumed $((r1 - r0)) of $n; "
    else
        ((r1 - r0 == 0)) || NOTE[$key]+="$s resumed $((r1 - r0)) of $n; "
    fi
}

# ka_h1 SERVER: keep-alive HTTP/1.1 over TLS with wrk (ECDSA certificate).
ka_h1() {
    local s=$1 p=${PORT[$1.ecdsa]} key="h1.$1" out="$TMP/wrk-$1.txt"
    log "keep-alive HTTP/1.1 $s (${WARMUP}s warm-up + ${DURATION}s, wrk -t$THREADS -c$CONNS)"
    local args=(-t"$THREADS" -c"$CONNS" -H "Host: $HOST")
    local url="https://127.0.0.1:$p$BENCH_PATH"
    timeout $((WARMUP + 30)) wrk "${args[@]}" -d"${WARMUP}s" "$url" >/dev/null 2>&1 || true
    local srv c0 c1
    srv=$(server_pids "$s" ecdsa)
    # shellcheck disable=SC2086
    c0=$(cpu_ticks $srv)
    if ! timeout $((DURATION + 30)) wrk "${args[@]}" -d"${DURATION}s" "$url" >"$out" 2>&1; then
        FAIL[$key]="wrk failed: $(tail -n 2 "$out" | tr '\n' ' ')"
        return
    fi
    # shellcheck disable=SC2086
    c1=$(cpu_ticks $srv)
    local n
    n=$(awk '/ requests in / {print $1}' "$out")
    RATE[$key]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    [[ -n ${RATE[$key]} && -n $n ]] || {
        FAIL[$key]="could not parse wrk output: $(tr '\n' ' ' <"$out" | cut -c1-200)"
        return
    }
    CPU[$key]=$(awk -v d="$((c1 - c0))" -v n="$n" -v hz="$CLK_TCK" 'BEGIN {printf "%.0f", d * 1e6 / hz / n}')
    local x
    x=$(awk -F': *' '/Non-2xx or 3xx responses/ {print $2}' "$out")
    [[ -z $x ]] || NOTE[$key]+="$s non-2xx/3xx: $x; "
    x=$(sed -n 's/^ *Socket errors: *//p' "$out")
    [[ -z $x ]] || NOTE[$key]+="$s socket errors: $x; "
}

# ka_h2 SERVER: keep-alive h2 with h2load (ECDSA certificate, SNI bench.local).
ka_h2() {
    local s=$1 p=${PORT[$1.ecdsa]} key="h2.$1" out="$TMP/h2load-$1.txt"
    log "keep-alive h2 $s (${WARMUP}s warm-up + ${DURATION}s, h2load -t$THREADS -c$CONNS -m$STREAMS)"
    local args=(-t"$THREADS" -c"$CONNS" -m"$STREAMS" --connect-to="127.0.0.1:$p")
    local url="https://$HOST$BENCH_PATH"
    timeout $((WARMUP + 30)) h2load "${args[@]}" -D "$WARMUP" "$url" >/dev/null 2>&1 || true
    local srv c0 c1
    srv=$(server_pids "$s" ecdsa)
    # shellcheck disable=SC2086
    c0=$(cpu_ticks $srv)
    if ! timeout $((DURATION + 30)) h2load "${args[@]}" -D "$DURATION" "$url" >"$out" 2>&1; then
        FAIL[$key]="h2load failed: $(tail -n 2 "$out" | tr '\n' ' ')"
        return
    fi
    # shellcheck disable=SC2086
    c1=$(cpu_ticks $srv)
    grep -q '^Application protocol: h2' "$out" || NOTE[$key]+="$s did not negotiate h2; "
    # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
    local ok failed non2xx
    ok=$(awk '/^requests:/ {print $8}' "$out")
    failed=$(awk '/^requests:/ {print $10 + $12 + $14}' "$out")
    # status codes: N 2xx, N 3xx, N 4xx, N 5xx
    non2xx=$(awk '/^status codes:/ {print $5 + $7 + $9}' "$out")
    RATE[$key]=$(awk '/^finished in/ {for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^req\/s/) {printf "%.0f", $i; exit}}' "$out")
    [[ -n ${RATE[$key]} && -n $ok ]] && ((ok > 0)) || {
        FAIL[$key]="could not parse h2load output: $(tr '\n' ' ' <"$out" | cut -c1-300)"
        return
    }
    CPU[$key]=$(awk -v d="$((c1 - c0))" -v n="$ok" -v hz="$CLK_TCK" 'BEGIN {printf "%.0f", d * 1e6 / hz / n}')
    ((failed == 0)) || NOTE[$key]+="$s failed/errored/timeout: $failed; "
    ((non2xx == 0)) || NOTE[$key]+="$s non-2xx: $non2xx; "
}

for c in ecdsa rsa; do
    for s in nginx sluice; do
        if [[ -n ${FAIL[$s]:-} ]]; then FAIL[hs.$c.$s]=${FAIL[$s]}; else hs_run "$s" "$c"; fi
    done
done
for s in nginx sluice; do
    if [[ -n ${FAIL[$s]:-} ]]; then FAIL[rs.ecdsa.$s]=${FAIL[$s]}; else hs_run "$s" ecdsa reuse; fi
done
for s in nginx sluice; do
    if [[ -n ${FAIL[$s]:-} ]]; then FAIL[h1.$s]=${FAIL[$s]}; else ka_h1 "$s"; fi
done
for s in nginx sluice; do
    if [[ -n ${FAIL[$s]:-} ]]; then FAIL[h2.$s]=${FAIL[$s]}; else ka_h2 "$s"; fi
done

# ---------------------------------------------------------------- 10,000 certificates
MANY_FAIL="" MANY_GEN_S="" MANY_BUILD_MS="" MANY_RSS="" MANY_CN="" MANY_HTTP="" MANY_GEN_HOW=""
if ((NCERTS > 0)) && [[ -n ${FAIL[sluice]:-} ]]; then
    MANY_FAIL=${FAIL[sluice]}
elif ((NCERTS > 0)); then
    # The other servers are idle from here on; stop the sluices so the machine is quiet.
    for c in ecdsa rsa; do kill "${SLUICE_PID[$c]}" 2>/dev/null || true; done
    log "generating $NCERTS ECDSA certificates, Secrets and Ingresses"
    dir="$TMP/manifests-many"
    mkdir -p "$dir"
    write_common_manifests "$dir"
    gen_t0=$(date +%s.%N)
    if MANY_GEN_HOW=$(python3 - "$dir" "$NCERTS" "$NPROC" 2>"$TMP/gen.log" <<'PY'
# Writes N self-signed ECDSA P-256 certificates (CN and SAN h<i>.bench.local) as
# kubernetes.io/tls Secrets h<i>-tls plus Ingresses h<i> with spec.tls, 100 pairs a file.
import base64, datetime, os, subprocess, sys, tempfile
from concurrent.futures import ThreadPoolExecutor

out, n, jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def gen(host):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        return (
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )

    how = "python3-cryptography"
    pairs = [gen(f"h{i}.bench.local") for i in range(n)]
except ImportError:
    tmp = tempfile.mkdtemp(dir=out)

    def gen_openssl(i):
        host = f"h{i}.bench.local"
        k, c = os.path.join(tmp, f"{i}.key"), os.path.join(tmp, f"{i}.crt")
        subprocess.run(
            ["openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-days", "30", "-subj", f"/CN={host}",
             "-addext", f"subjectAltName=DNS:{host}", "-keyout", k, "-out", c],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        with open(c, "rb") as fc, open(k, "rb") as fk:
            pair = fc.read(), fk.read()
        os.unlink(c)
        os.unlink(k)
        return pair

    how = f"openssl req x{n}, {jobs} in parallel"
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pairs = list(pool.map(gen_openssl, range(n)))
    os.rmdir(tmp)

b64 = lambda b: base64.b64encode(b).decode()
for start in range(0, n, 100):
    docs = []
    for i in range(start, min(start + 100, n)):
        crt, key = pairs[i]
        host = f"h{i}.bench.local"
        docs.append(
            f"apiVersion: v1\nkind: Secret\n"
            f"metadata: {{name: h{i}-tls, namespace: default}}\n"
            f"type: kubernetes.io/tls\n"
            f"data: {{tls.crt: {b64(crt)}, tls.key: {b64(key)}}}\n"
        )
        docs.append(
            f"apiVersion: networking.k8s.io/v1\nkind: Ingress\n"
            f'metadata: {{name: h{i}, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}}\n'
            f"spec:\n  ingressClassName: nginx\n"
            f"  tls: [{{hosts: [{host}], secretName: h{i}-tls}}]\n"
            f"  rules: [{{host: {host}, http: {{paths: [{{path: /, pathType: Prefix, "
            f"backend: {{service: {{name: bench, port: {{number: 80}}}}}}}}]}}}}]\n"
        )
    with open(os.path.join(out, f"many-{start // 100:04d}.yaml"), "w") as f:
        f.write("---\n".join(docs))
print(how)
PY
    ); then
        MANY_GEN_S=$(awk -v a="$gen_t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
        log "generated in ${MANY_GEN_S}s ($MANY_GEN_HOW); starting sluice on them"
        if start_sluice many "$dir" "${SLUICE_MANY_PORTS[@]}" 120 "h$((NCERTS - 1)).$HOST" >"$TMP/sluice.start"; then
            pid=${SLUICE_PID[many]}
            sleep 0.5 # let start-up settle before reading RSS
            MANY_RSS=$(vmrss_mib "$pid")
            # build_ms of the first published table that holds all the Ingresses.
            MANY_BUILD_MS=$(sed 's/\x1b\[[0-9;]*m//g' "$TMP/sluice-many.log" |
                awk -v n="$NCERTS" '/published routing table/ {
                    ing = ""; ms = ""
                    for (i = 1; i <= NF; i++) {
                        if ($i ~ /^ingresses=/) { ing = $i; sub(/^ingresses=/, "", ing) }
                        if ($i ~ /^build_ms=/) { ms = $i; sub(/^build_ms=/, "", ms) }
                    }
                    if (ing + 0 >= n && ms != "") { printf "%.0f", ms; exit }
                }')
            last="h$((NCERTS - 1)).$HOST"
            MANY_CN=$(timeout 10 openssl s_client -connect "127.0.0.1:${SLUICE_MANY_PORTS[1]}" \
                -servername "$last" </dev/null 2>/dev/null | openssl x509 -noout -subject 2>/dev/null |
                sed -n 's/^subject=.*CN *= *\([^,/]*\).*/\1/p' || true)
            MANY_HTTP=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 \
                --resolve "$last:${SLUICE_MANY_PORTS[1]}:127.0.0.1" \
                "https://$last:${SLUICE_MANY_PORTS[1]}$BENCH_PATH" || true)
        else
            MANY_FAIL=$(tr '\n' ' ' <"$TMP/sluice.start")
        fi
    else
        MANY_FAIL="certificate generation failed: $(tail -n 3 "$TMP/gen.log" | tr '\n' ' ')"
    fi
fi

# ---------------------------------------------------------------- report
version_of() { "$@" 2>&1 | head -n 1 | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n 1 || true; }
# read-only git: no index refresh (another engineer may be using the work tree)
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" --no-optional-locks diff --quiet HEAD -- 2>/dev/null || rev+="-dirty"
rustls_v=$(awk '/^name = "rustls"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' "$ROOT/Cargo.lock" 2>/dev/null || true)
nginx_ssl=$(nginx -V 2>&1 | sed -n 's/.*running with OpenSSL \([^ ]*\).*/\1/p; s/^built with OpenSSL \([^ ]*\) .*/\1/p' | tail -n 1)
echo
echo "# $(date -u '+%Y-%m-%dT%H:%M:%SZ')  nproc=$NPROC  workers=$WORKERS  sluice $rev (rustls ${rustls_v:-?}/aws-lc-rs)  nginx $(version_of nginx -v) (OpenSSL ${nginx_ssl:-?})  $(openssl version | cut -d' ' -f1-2)  wrk $(version_of wrk -v)  h2load $(version_of h2load --version)"
echo "# handshakes: ${HS_CLIENTS} x openssl s_time -new, one HTTP/1.0 GET $BENCH_PATH per connection, no SNI; keep-alive: wrk -t$THREADS -c$CONNS / h2load -t$THREADS -c$CONNS -m$STREAMS, ECDSA cert; ${WARMUP}s warm-up + ${DURATION}s each"
for s in nginx sluice; do
    [[ -z ${FAIL[$s]:-} ]] || continue
    echo "# $s: ecdsa ${TLSINFO[$s.ecdsa]}; rsa ${TLSINFO[$s.rsa]}; resumed when a client offers its session: ${RESUME[$s]} (TLS1.3 tickets per handshake: ${TICKETS[$s]:-?})"
done
for s in nginx sluice; do
    [[ -z ${HTTP10[$s]:-} || ${HTTP10[$s]} == closed ]] ||
        echo "# note: $s kept an HTTP/1.0 connection without keep-alive ${HTTP10[$s]} (RFC 9112 9.3: it should close); s_time's request says Connection: close"
done
printf '%-24s %11s %11s %7s %11s %11s %7s  %s\n' test 'nginx/s' 'sluice/s' 'ratio' 'nginx us' 'sluice us' 'ratio' 'notes'
row() { # LABEL KEY-PREFIX
    local label=$1 k=$2 notes="" rn rs cn cs
    rn=${RATE[$k.nginx]:-} rs=${RATE[$k.sluice]:-} cn=${CPU[$k.nginx]:-} cs=${CPU[$k.sluice]:-}
    [[ -z ${FAIL[$k.nginx]:-} ]] || notes+="nginx FAILED (${FAIL[$k.nginx]}); "
    [[ -z ${FAIL[$k.sluice]:-} ]] || notes+="sluice FAILED (${FAIL[$k.sluice]}); "
    notes+="${NOTE[$k.nginx]:-}${NOTE[$k.sluice]:-}"
    ratio() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "x%.2f", a / b; else print "-"}' || echo -; }
    printf '%-24s %11s %11s %7s %11s %11s %7s  %s\n' "$label" "${rn:--}" "${rs:--}" "$(ratio "$rs" "$rn")" \
        "${cn:--}" "${cs:--}" "$(ratio "$cs" "$cn")" "${notes%; }" | sed 's/ *$//'
}
row 'handshake ECDSA P-256' hs.ecdsa
row 'handshake RSA-2048' hs.rsa
row 'resumption TLS1.2 ECDSA' rs.ecdsa
row 'keep-alive HTTP/1.1' h1
row 'keep-alive h2' h2
echo "# /s: handshakes (= requests) or requests per second; us: server CPU (user+sys, sluice process or nginx workers) per request; ratio: sluice / nginx (above x1.00 is better for /s, below x1.00 for us)"
if ((NCERTS > 0)); then
    echo
    echo "# sluice with $NCERTS certificates ($NCERTS kubernetes.io/tls Secrets + $NCERTS Ingresses with spec.tls, ECDSA P-256, generated in ${MANY_GEN_S:-?}s by ${MANY_GEN_HOW:-?})"
    if [[ -n $MANY_FAIL ]]; then
        echo "sluice: FAILED ($MANY_FAIL)"
    else
        printf '%-32s %10s %10s  %s\n' measure sluice goal 'Envoy (issue)' | sed 's/ *$//'
        printf '%-32s %10s %10s  %s\n' 'table build_ms' "${MANY_BUILD_MS:-?}" '< 2000' '~12000' | sed 's/ *$//'
        printf '%-32s %10s %10s  %s\n' 'start -> /readyz s' "${READY_S[many]:-?}" '' '' | sed 's/ *$//'
        printf '%-32s %10s %10s  %s\n' 'VmRSS MiB at ready' "${MANY_RSS:-?}" '< 150' "~614 MB (1-cert sluice here: ${RSS_ONE:-?} MiB)" | sed 's/ *$//'
        cn_ok=FAIL
        [[ $MANY_CN == "h$((NCERTS - 1)).$HOST" ]] && cn_ok=OK
        printf '%-32s %10s %10s  %s\n' "SNI h$((NCERTS - 1)).$HOST -> CN" "$cn_ok" '' "got CN '${MANY_CN:-none}', GET over it: HTTP ${MANY_HTTP:-?}" | sed 's/ *$//'
    fi
fi
