# shellcheck shell=bash
# The per-shape rows of proxy.sh, sourced by it (not run on its own): the same nginx,
# HAProxy, bare-Pingora floor and sluice (access log off) as the main rows, driven with
# other request shapes, each reported side by side with CPU per request:
#
#   close    a new connection per request (wrk -H "Connection: close")
#   1KiB / 100KiB / 1MiB   larger response bodies (size=N)
#   up1MB    a 1,000,000-byte POST per request (below nginx's and sluice's 1m default
#            body limit), request buffering as each proxy's default
#   h2c      HTTP/2 with prior knowledge, h2load -m10 (nginx and HAProxy get an h2c-only
#            listener of their own; sluice and the floor take h2c on their usual port)
#   hosts    $BENCH_HOSTS (default 5000) hosts, the request for the last one: sluice with
#            5000 Ingresses, nginx with 5000 server blocks, HAProxy with a 5000-line map
#            (the floor has no routing table; its ratio is against its keep-alive row)
#
# Functions: rows_ports, rows_nginx_conf (inside nginx's http block), rows_haproxy_conf,
# rows_start_sluice, rows_run, rows_report.

ROWS_NGINX_H2C_PORT=19019
ROWS_HAPROXY_H2C_PORT=19020
ROWS_NGINX_HOSTS_PORT=19021
ROWS_HAPROXY_HOSTS_PORT=19022
ROWS_SLUICE_HOSTS_PORTS=(19023 19024 19025)
ROWS_HOSTS=${BENCH_HOSTS:-5000}
ROWS_LAST_HOST="h$((ROWS_HOSTS - 1)).hosts.local"
ROWS=(close 1KiB 100KiB 1MiB up1MB h2c hosts)
ROWS_TARGETS=(nginx haproxy floor sluice)

rows_ports() { echo "$ROWS_NGINX_H2C_PORT $ROWS_HAPROXY_H2C_PORT $ROWS_NGINX_HOSTS_PORT $ROWS_HAPROXY_HOSTS_PORT ${ROWS_SLUICE_HOSTS_PORTS[*]}"; }

rows_nginx_conf() {
    cat <<EOF
    server_names_hash_max_size 16384;
    server_names_hash_bucket_size 128;
    server {
        listen 127.0.0.1:$ROWS_NGINX_H2C_PORT http2 reuseport backlog=4096;
        location / {
$(nginx_proxy_settings)
            proxy_pass http://upstream_balancer;
        }
    }
EOF
    # One server block per host, as ingress-nginx generates them.
    local settings i opts=" reuseport backlog=4096"
    settings=$(nginx_proxy_settings)
    for ((i = 0; i < ROWS_HOSTS; i++)); do
        printf '    server {\n        listen 127.0.0.1:%s%s;\n        server_name h%d.hosts.local;\n        location / {\n%s\n            proxy_pass http://upstream_balancer;\n        }\n    }\n' \
            "$ROWS_NGINX_HOSTS_PORT" "$opts" "$i" "$settings"
        opts=""
    done
}

rows_haproxy_conf() {
    local i
    for ((i = 0; i < ROWS_HOSTS; i++)); do echo "h$i.hosts.local be"; done >"$TMP/hosts.map"
    haproxy_frontend fe_h2c "$ROWS_HAPROXY_H2C_PORT proto h2" be
    haproxy_frontend fe_hosts "$ROWS_HAPROXY_HOSTS_PORT" be_missing
    echo "    use_backend %[req.hdr(host),lower,map($TMP/hosts.map)] if { req.hdr(host),lower,map($TMP/hosts.map) -m found }"
    printf '\nbackend be_missing\n    http-request deny deny_status 404\n'
}

# rows_start_sluice: a second log-off sluice on ROWS_SLUICE_HOSTS_PORTS whose table holds
# ROWS_HOSTS Ingresses (one host each) to the bench Service.
rows_start_sluice() {
    local dir="$TMP/manifests-hosts" i
    mkdir -p "$dir"
    cp "$TMP/manifests/class.yaml" "$dir/"
    # The bench Service and its EndpointSlice (the last two documents of bench.yaml).
    awk 'BEGIN {RS = "---\n"} /kind: (Service|EndpointSlice)/ {printf "---\n%s", $0}' "$TMP/manifests/bench.yaml" >"$dir/service.yaml"
    for ((i = 0; i < ROWS_HOSTS; i++)); do
        printf -- '---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: h%d, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}\nspec:\n  ingressClassName: nginx\n  rules: [{host: h%d.hosts.local, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: bench, port: {number: 80}}}}]}}]\n' "$i" "$i"
    done >"$dir/hosts.yaml"
    start_sluice "http://127.0.0.1:${ROWS_SLUICE_HOSTS_PORTS[0]}$BENCH_PATH" "$ROWS_LAST_HOST" sluice-hosts \
        "${ROWS_SLUICE_HOSTS_PORTS[0]}" "${ROWS_SLUICE_HOSTS_PORTS[1]}" "${ROWS_SLUICE_HOSTS_PORTS[2]}" 0 "$dir"
}

# measure_h2 KEY URL HOST: h2load -m10 with prior knowledge; sets RPS, CPU_* of KEY (no
# latency percentiles: h2load prints none).
measure_h2() {
    local key=$1 url=$2 host=$3 out="$TMP/h2load-$1.txt" c0 c1 ok port
    port=${url#http://127.0.0.1:}
    port=${port%%/*}
    local args=(-t"$WRK_THREADS" -c"$WRK_CONNS" -m10 --connect-to="127.0.0.1:$port")
    local hurl="http://$host:$port${url#http://127.0.0.1:"$port"}"
    log "measuring $key (${WARMUP}s warm-up + ${DURATION}s, h2load)"
    timeout $((WARMUP + 30)) h2load "${args[@]}" -D "$WARMUP" "$hurl" >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    c0=$(cpu_split ${PROC[$key]:-})
    if ! timeout $((DURATION + 30)) h2load "${args[@]}" -D "$DURATION" "$hurl" >"$out" 2>&1; then
        FAIL[$key]="h2load failed: $(tail -n 2 "$out" | tr '\n' ' ')"
        return 0
    fi
    # shellcheck disable=SC2086
    c1=$(cpu_split ${PROC[$key]:-})
    ok=$(awk '/^requests:/ {print $8}' "$out")
    RPS[$key]=$(awk '/^finished in/ {for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^req\/s/) {printf "%.0f", $i; exit}}' "$out")
    if [[ -z ${RPS[$key]} || -z $ok || $ok -eq 0 ]]; then
        FAIL[$key]="could not parse h2load output: $(tr '\n' ' ' <"$out" | cut -c1-300)"
        return 0
    fi
    P50[$key]=- P99[$key]=- P999[$key]=-
    read -r CPU_U[$key] CPU_S[$key] CPU_T[$key] < <(awk -v a="$c0" -v b="$c1" -v n="$ok" -v hz="$CLK_TCK" 'BEGIN {
        split(a, x, " "); split(b, y, " "); u = (y[1] - x[1]) * 1e6 / hz / n; s = (y[2] - x[2]) * 1e6 / hz / n
        printf "%.1f %.1f %.1f\n", u, s, u + s }')
    local bad
    bad=$(awk '/^requests:/ {print $10 + $12 + $14}' "$out")
    ERRS[$key]=""
    ((bad == 0)) || ERRS[$key]="failed/errored/timeout: $bad"
    grep -q '^Application protocol: h2c' "$out" || ERRS[$key]+="${ERRS[$key]:+; }not h2c"
}

rows_run() {
    cat >"$TMP/upload.lua" <<'EOF'
wrk.method = "POST"
wrk.body = string.rep("x", 1000000)
wrk.headers["Content-Type"] = "application/octet-stream"
done = function(summary, latency, requests)
  io.write(string.format("PCTL %d %d %d %d\n", latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), summary.requests))
end
EOF
    local r t base key url
    for r in "${ROWS[@]}"; do
        for t in "${ROWS_TARGETS[@]}"; do
            key="$r.$t"
            PROC[$key]=${PROC[$t]:-}
            if [[ -n ${FAIL[$t]:-} || -z ${URL[$t]:-} ]]; then
                FAIL[$key]=${FAIL[$t]:-no URL}
                continue
            fi
            base=${URL[$t]%%\?*}
            base=${base%/bench}
            case $r in
                close) measure "$key" "${URL[$t]}" "$HOST_HEADER" -H "Connection: close" ;;
                1KiB) measure "$key" "$base/bench?size=1024" "$HOST_HEADER" ;;
                100KiB) measure "$key" "$base/bench?size=102400" "$HOST_HEADER" ;;
                1MiB) measure "$key" "$base/bench?size=1048576" "$HOST_HEADER" ;;
                up1MB) WRK_SCRIPT="$TMP/upload.lua" measure "$key" "${URL[$t]}" "$HOST_HEADER" ;;
                h2c)
                    url=${URL[$t]}
                    [[ $t == nginx ]] && url="http://127.0.0.1:$ROWS_NGINX_H2C_PORT$BENCH_PATH"
                    [[ $t == haproxy ]] && url="http://127.0.0.1:$ROWS_HAPROXY_H2C_PORT$BENCH_PATH"
                    measure_h2 "$key" "$url" "$HOST_HEADER"
                    ;;
                hosts)
                    case $t in
                        floor)
                            FAIL[$key]="no routing table"
                            continue
                            ;;
                        nginx) url="http://127.0.0.1:$ROWS_NGINX_HOSTS_PORT$BENCH_PATH" ;;
                        haproxy) url="http://127.0.0.1:$ROWS_HAPROXY_HOSTS_PORT$BENCH_PATH" ;;
                        sluice)
                            if [[ -n ${ROWS_SLUICE_FAIL:-} ]]; then
                                FAIL[$key]=$ROWS_SLUICE_FAIL
                                continue
                            fi
                            url="http://127.0.0.1:${ROWS_SLUICE_HOSTS_PORTS[0]}$BENCH_PATH"
                            PROC[$key]=$ROWS_SLUICE_PID
                            ;;
                    esac
                    measure "$key" "$url" "$ROWS_LAST_HOST"
                    ;;
            esac
        done
    done
}

rows_report() {
    echo
    echo "# per-shape rows (access log off everywhere; wrk -t$WRK_THREADS -c$WRK_CONNS, h2load -m10 for h2c; ${WARMUP}s warm-up + ${DURATION}s)"
    printf '%-18s %9s %8s %8s %8s %7s %7s %7s  %s\n' row/target 'req/s' 'p50 ms' 'p99 ms' 'p99.9 ms' 'us usr' 'us sys' 'us/req' 'notes'
    local r t key f
    for r in "${ROWS[@]}"; do
        for t in "${ROWS_TARGETS[@]}"; do
            key="$r.$t"
            if [[ -n ${FAIL[$key]:-} ]]; then
                printf '%-18s %s\n' "$r/$t" "- (${FAIL[$key]})"
                continue
            fi
            [[ -n ${RPS[$key]:-} ]] || continue
            f='%-18s %9.0f %8s %8s %8s %7s %7s %7s  %s\n'
            printf "$f" "$r/$t" "${RPS[$key]}" "${P50[$key]}" "${P99[$key]}" "${P999[$key]}" \
                "${CPU_U[$key]:--}" "${CPU_S[$key]:--}" "${CPU_T[$key]:--}" "${ERRS[$key]:-}" | sed 's/ *$//'
        done
        local floor_key="$r.floor"
        [[ $r == hosts ]] && floor_key=floor
        echo "#   $r: sluice/floor $(ratio "$r.sluice" "$floor_key")  floor/nginx $(ratio "$floor_key" "$r.nginx")  sluice/nginx $(ratio "$r.sluice" "$r.nginx")  (CPU per request)"
    done
}
