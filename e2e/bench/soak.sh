#!/usr/bin/env bash
# Soak (not in CI): a standalone sluice (release build) under mixed load while a loop
# rewrites its manifests every second, to show that nothing grows and nothing fails.
#
#   e2e/bench/soak.sh                    # 10 minutes
#   SOAK_SECONDS=300 e2e/bench/soak.sh   # shorter
#   e2e/bench/soak.sh --no-build         # use the existing release binaries
#   SOAK_BIN_DIR=target/debug e2e/bench/soak.sh   # other binaries (no build)
#
# Load, all on loopback, each loop bounded by SOAK_SECONDS (and by a count):
#   - wrk keep-alive (HTTP/1.1, 8 connections);
#   - wrk with `Connection: close` (a new connection per request, 2 connections);
#   - wrk over TLS (keep-alive, 4 connections);
#   - h2load over TLS (h2, 4 connections x 8 streams, rate-limited) and over h2c;
#   - WebSocket sessions (python, stdlib only: upgrade, hello, echo, close), one a second;
#   - slow clients within their limits (headers dribbled over ~2 s, then a slow body);
#   - 1 MB uploads (curl, echoed back and checked by size), every 0.2 s.
# Churn, every second: the Ingress (an annotation value and a second Ingress appearing
# and disappearing), the TLS Secret (two certificates in turn) and the endpoints (one,
# two, or the other of two backends; never none).
# Every 10 s: RSS and open fds of sluice (/proc/PID/status, /proc/PID/fd) and the table
# generation (admin /metrics, sluice_table_generation). At the end: failed requests per
# load, RSS after warm-up vs at the end (growth %), fds, generations.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
log() { echo "soak: $*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=e2e/bench/lib.sh
source "$ROOT/e2e/bench/lib.sh"

SECONDS_TOTAL=${SOAK_SECONDS:-600}
WARMUP=${SOAK_WARMUP:-60}
((SECONDS_TOTAL >= 30 && SECONDS_TOTAL <= 7200)) || die "SOAK_SECONDS must be 30..7200"
((WARMUP < SECONDS_TOTAL)) || WARMUP=$((SECONDS_TOTAL / 5))
build=1
[[ ${1:-} == --no-build ]] && build=0

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
bench_install "${need[@]}"
command -v python3 >/dev/null || die "python3 is needed (WebSocket and slow clients)"

if [[ -n ${SOAK_BIN_DIR:-} ]]; then
    # Binaries from elsewhere (e.g. SOAK_BIN_DIR=$CARGO_TARGET_DIR/debug when there is
    # no time for a release build); the figures then describe that build.
    ECHO_BIN=$SOAK_BIN_DIR/sluice-echo SLUICE_BIN=$SOAK_BIN_DIR/sluice SLUICE_BUILD_FAILED=""
else
    bench_build "$build"
fi
[[ -z $SLUICE_BUILD_FAILED && -x $SLUICE_BIN ]] || die "no release sluice ($SLUICE_BUILD_FAILED)"
bench_tmp sluice-soak

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(free_port) HTTPS=$(free_port) ADMIN=$(free_port)

# Two backends.
declare -A BACKEND
for name in a b; do
    "$ECHO_BIN" --listen 127.0.0.1:0 --name "$name" --threads 1 >"$TMP/echo-$name.out" 2>&1 &
    PIDS+=($!)
done
for name in a b; do
    for _ in $(seq 50); do grep -q listening "$TMP/echo-$name.out" && break; sleep 0.1; done
    BACKEND[$name]=$(awk '/listening/ { print $NF; exit }' "$TMP/echo-$name.out")
    [[ -n ${BACKEND[$name]} ]] || die "sluice-echo $name did not start"
done
PORT_A=${BACKEND[a]##*:} PORT_B=${BACKEND[b]##*:}
[[ $PORT_A == "$PORT_B" ]] && die "both backends on one port"

# Two certificates for soak.local, served in turn.
for c in 1 2; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=soak.local $c" -addext "subjectAltName=DNS:soak.local" \
        -keyout "$TMP/key$c.pem" -out "$TMP/crt$c.pem" 2>/dev/null
done
head -c 1000000 /dev/urandom >"$TMP/upload.bin"

M=$TMP/manifests
mkdir -p "$M"
write() { # name content: atomic, as kubectl-style tools and ConfigMap mounts write
    printf '%s' "$2" >"$M/.$1.tmp" && mv -f "$M/.$1.tmp" "$M/$1"
}
class='apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: sluice.dev/ingress-controller}
'
# The Service is selector-less: its Endpoints list the backends (ports differ, so
# each backend gets its own Endpoints subset).
endpoints() { # which: a | b | ab
    local subsets=""
    [[ $1 == *a* ]] && subsets+="- {addresses: [{ip: 127.0.0.1}], ports: [{name: http, port: $PORT_A}]}
"
    [[ $1 == *b* ]] && subsets+="- {addresses: [{ip: 127.0.0.1}], ports: [{name: http, port: $PORT_B}]}
"
    printf 'apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: default}\nspec: {ports: [{name: http, port: 80}]}\n---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: echo, namespace: default}\nsubsets:\n%s' "$subsets"
}
secret() { # cert number
    printf 'apiVersion: v1\nkind: Secret\nmetadata: {name: soak-tls, namespace: default}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n%s\n  tls.key: |\n%s\n' \
        "$(sed 's/^/    /' "$TMP/crt$1.pem")" "$(sed 's/^/    /' "$TMP/key$1.pem")"
}
ingress() { # iteration
    local i=$1
    printf 'apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: soak\n  namespace: default\n  annotations:\n    nginx.ingress.kubernetes.io/proxy-body-size: "2m"\n    nginx.ingress.kubernetes.io/proxy-read-timeout: "%d"\n    nginx.ingress.kubernetes.io/ssl-redirect: "false"\nspec:\n  ingressClassName: nginx\n  tls: [{hosts: [soak.local], secretName: soak-tls}]\n  rules:\n  - http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}\n' $((60 + i % 2))
    if ((i % 3 == 0)); then
        printf -- '---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: churn, namespace: default}\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: churn-%d.local\n    http:\n      paths:\n      - {path: /x, pathType: Exact, backend: {service: {name: echo, port: {number: 80}}}}\n' "$i"
    fi
}
write class.yaml "$class"
write echo.yaml "$(endpoints ab)"
write secret.yaml "$(secret 1)"
write ingress.yaml "$(ingress 0)"

"$SLUICE_BIN" --manifests "$M" --http-listen "127.0.0.1:$HTTP" --https-listen "127.0.0.1:$HTTPS" \
    --admin-listen "127.0.0.1:$ADMIN" --workers 2 --no-access-log >"$TMP/sluice.out" 2>"$TMP/sluice.err" &
SLUICE_PID=$!
PIDS+=("$SLUICE_PID")
for _ in $(seq 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$HTTP/" && break
    kill -0 "$SLUICE_PID" 2>/dev/null || { cat "$TMP/sluice.err" >&2; die "sluice exited"; }
    sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$HTTP/" || die "sluice does not serve"
log "sluice pid $SLUICE_PID: http :$HTTP, https :$HTTPS, admin :$ADMIN; ${SECONDS_TOTAL}s, warm-up ${WARMUP}s"

D=$SECONDS_TOTAL
END=$((SECONDS + D))
R=$TMP/results
mkdir -p "$R"

wrk -t1 -c8 -d"${D}s" --latency "http://127.0.0.1:$HTTP/" >"$R/wrk-keepalive.txt" 2>&1 &
LOADS=($!)
wrk -t1 -c2 -d"${D}s" -H 'Connection: close' "http://127.0.0.1:$HTTP/" >"$R/wrk-close.txt" 2>&1 &
LOADS+=($!)
wrk -t1 -c4 -d"${D}s" "https://127.0.0.1:$HTTPS/" >"$R/wrk-tls.txt" 2>&1 &
LOADS+=($!)
h2load -D "$D" -c4 -m8 -t1 --rps 50 "https://127.0.0.1:$HTTPS/" >"$R/h2load-tls.txt" 2>&1 &
LOADS+=($!)
h2load -D "$D" -c2 -m8 -t1 --rps 50 "http://127.0.0.1:$HTTP/" >"$R/h2load-h2c.txt" 2>&1 &
LOADS+=($!)

# WebSocket sessions and slow clients: python, stdlib only.
python3 - "$HTTP" "$D" >"$R/python.txt" 2>&1 <<'PY' &
import base64, os, socket, sys, threading, time
port, duration = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + duration
lock = threading.Lock()
counts = {"ws_ok": 0, "ws_failed": 0, "slow_ok": 0, "slow_failed": 0}
errors = []

def bump(k, err=None):
    with lock:
        counts[k] += 1
        if err and len(errors) < 20:
            errors.append(err)

def recv_until(s, marker, limit=1 << 16):
    buf = b""
    while marker not in buf and len(buf) < limit:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf

def frame(f):
    h = f.read(2)
    if len(h) < 2:
        raise RuntimeError("connection closed")
    n = h[1] & 0x7F
    if n == 126:
        n = int.from_bytes(f.read(2), "big")
    return h[0] & 0x0F, f.read(n) if n else b""

def ws_session():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /ws HTTP/1.1\r\nHost: soak.local\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        # Buffered: the first frame may arrive with the 101 response.
        f = s.makefile("rb")
        head = f.readline()
        while f.readline() not in (b"\r\n", b""):
            pass
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"upgrade: {head[:60]!r}")
        op, hello = frame(f)
        if not hello.startswith(b"hello from"):
            raise RuntimeError(f"hello: {hello!r}")
        for i in range(5):
            msg = f"soak {i}".encode()
            mask = os.urandom(4)
            s.sendall(bytes([0x81, 0x80 | len(msg)]) + mask + bytes(b ^ mask[j % 4] for j, b in enumerate(msg)))
            op, got = frame(f)
            if got != msg:
                raise RuntimeError(f"echo: {got!r}")
            time.sleep(0.1)
        s.sendall(bytes([0x88, 0x80]) + os.urandom(4))
    finally:
        s.close()

def slow_session():
    # Headers a few bytes at a time over ~2 s, then a 20-byte body over ~1 s:
    # well within client-header-timeout / client-body-timeout (60 s).
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        body = b"0123456789abcdefghij"
        req = (f"POST /slow?echo_body=1 HTTP/1.1\r\nHost: soak.local\r\nContent-Length: {len(body)}\r\n"
               "Connection: close\r\n\r\n").encode()
        step = max(1, len(req) // 20)
        for i in range(0, len(req), step):
            s.sendall(req[i:i + step]); time.sleep(0.1)
        for i in range(0, len(body), 4):
            s.sendall(body[i:i + 4]); time.sleep(0.2)
        resp = recv_until(s, b"\r\n\r\n" + body, 1 << 20)
        if not resp.startswith(b"HTTP/1.1 200") or not resp.endswith(body):
            raise RuntimeError(f"slow: {resp[:80]!r}")
    finally:
        s.close()

def loop(kind, fn, pause, limit):
    n = 0
    while time.time() < end and n < limit:
        n += 1
        try:
            fn(); bump(kind + "_ok")
        except Exception as e:
            bump(kind + "_failed", f"{kind}: {e}")
        time.sleep(pause)

threads = [threading.Thread(target=loop, args=("ws", ws_session, 0.5, 100000))]
threads += [threading.Thread(target=loop, args=("slow", slow_session, 0.1, 100000)) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(" ".join(f"{k}={v}" for k, v in counts.items()))
for e in errors: print("error:", e)
PY
LOADS+=($!)

# 1 MB uploads, echoed back: the size must match.
(
    ok=0 failed=0 n=0
    while ((SECONDS < END && n < 100000)); do
        n=$((n + 1))
        got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 30 \
            --data-binary "@$TMP/upload.bin" -H 'Content-Type: application/octet-stream' \
            "http://127.0.0.1:$HTTP/upload?echo_body=1" || echo "000 0")
        if [[ $got == "200 1000000" ]]; then ok=$((ok + 1)); else failed=$((failed + 1)); echo "upload: $got"; fi
        sleep 0.2
    done
    echo "uploads ok=$ok failed=$failed"
) >"$R/uploads.txt" 2>&1 &
LOADS+=($!)

# Churn: every second, the Ingress, the TLS Secret and the endpoints.
(
    i=0 sets=(ab a ab b)
    while ((SECONDS < END && i < 100000)); do
        i=$((i + 1))
        write ingress.yaml "$(ingress "$i")"
        write secret.yaml "$(secret $((1 + i % 2)))"
        write echo.yaml "$(endpoints "${sets[$((i % 4))]}")"
        sleep 1
    done
    echo "churn iterations=$i"
) >"$R/churn.txt" 2>&1 &
LOADS+=($!)

generation() {
    curl -s --max-time 2 "http://127.0.0.1:$ADMIN/metrics" | awk '$1 ~ /^sluice_table_generation([{]|$)/ { print $NF }'
}
printf '%6s %10s %6s %10s\n' t_s rss_kb fds generation
: >"$R/samples.txt"
start=$SECONDS
while ((SECONDS < END + 2)); do
    kill -0 "$SLUICE_PID" 2>/dev/null || die "sluice exited during the soak: $(tail -5 "$TMP/sluice.err")"
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$SLUICE_PID/status")
    fds=$(ls "/proc/$SLUICE_PID/fd" | wc -l)
    printf '%6d %10d %6d %10s\n' $((SECONDS - start)) "$rss" "$fds" "$(generation)" | tee -a "$R/samples.txt"
    sleep 10
done
for pid in "${LOADS[@]}"; do wait "$pid" || true; done
# After the load: connections closed, fds back to the listeners and pools.
sleep 3
idle_fds=$(ls "/proc/$SLUICE_PID/fd" | wc -l)

wrk_failed() { # file: non-2xx + socket errors (connect, read, write, timeout)
    awk '/Non-2xx/ { f += $NF } /Socket errors/ { gsub(/,/, ""); f += $4 + $6 + $8 + $10 } END { print f + 0 }' "$1"
}
wrk_total() { awk '/requests in/ { print $1 }' "$1"; }
h2_failed() { awk '/^requests:/ { gsub(/,/, ""); print $10 + $12 + $14 }' "$1"; }
h2_total() { awk '/^requests:/ { print $2 }' "$1"; }
h2_non2xx() { awk '/^status codes:/ { gsub(/,/, ""); print $5 + $7 + $9 }' "$1"; }

echo
echo "== results after ${D}s"
total_failed=0
for f in wrk-keepalive wrk-close wrk-tls; do
    fl=$(wrk_failed "$R/$f.txt")
    total_failed=$((total_failed + fl))
    printf '%-15s requests %10s failed %s\n' "$f" "$(wrk_total "$R/$f.txt")" "$fl"
done
for f in h2load-tls h2load-h2c; do
    fl=$(( $(h2_failed "$R/$f.txt") + $(h2_non2xx "$R/$f.txt") ))
    total_failed=$((total_failed + fl))
    printf '%-15s requests %10s failed %s\n' "$f" "$(h2_total "$R/$f.txt")" "$fl"
done
py=$(head -1 "$R/python.txt")
echo "python          $py"
for k in ws_failed slow_failed; do
    v=$(sed -n "s/.*$k=\([0-9]*\).*/\1/p" <<<"$py")
    total_failed=$((total_failed + ${v:-1}))
done
up=$(tail -1 "$R/uploads.txt")
echo "$up"
v=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$up")
total_failed=$((total_failed + ${v:-1}))
tail -1 "$R/churn.txt"
grep -h '^error:\|^upload:' "$R/python.txt" "$R/uploads.txt" | head -10 || true

awk -v warm="$WARMUP" -v idle="$idle_fds" -v failed="$total_failed" '
    { t[NR] = $1; rss[NR] = $2; fds[NR] = $3; gen[NR] = $4 }
    END {
        for (i = 1; i <= NR; i++) if (t[i] >= warm) { w = i; break }
        if (!w) w = 1
        minf = maxf = fds[w]
        for (i = w; i <= NR; i++) { if (fds[i] < minf) minf = fds[i]; if (fds[i] > maxf) maxf = fds[i] }
        printf "RSS: %d kB at %d s (after warm-up), %d kB at the end: growth %+.1f%%\n", rss[w], t[w], rss[NR], 100 * (rss[NR] - rss[w]) / rss[w]
        printf "fds under load after warm-up: %d..%d; at start %d; after the load %d\n", minf, maxf, fds[1], idle
        printf "table generations: %s at start, %s at the end\n", gen[1], gen[NR]
        printf "failed requests: %d\n", failed
    }' "$R/samples.txt"
