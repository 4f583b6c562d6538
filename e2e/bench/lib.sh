# Shared by the benchmark scripts that compare sluice with nginx/HAProxy on this machine:
# installing missing Debian packages, building the release binaries, and a temp dir
# whose processes are all stopped on exit. Source it after defining log() and die().

# bench_install PKG...: installs the Debian packages given (as root), or fails clearly.
bench_install() {
    (($#)) || return 0
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing $*"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        die "missing $*: install them (Debian: apt-get install -y $*) or run as root"
    fi
}

# bench_build BUILD: sets ECHO_BIN, SLUICE_BIN, FLOOR_BIN and SLUICE_BUILD_FAILED; builds the release
# binaries when BUILD is 1. The backend is what every row needs: a stale one is
# acceptable, a stale sluice is not (its rows are then skipped). The binaries are looked
# for where cargo puts them: $CARGO_TARGET_DIR/release when that is set, else target/release.
bench_build() {
    local target=${CARGO_TARGET_DIR:-target}
    [[ $target == /* ]] || target="$ROOT/$target"
    ECHO_BIN="$target/release/sluice-echo"
    SLUICE_BIN=${BENCH_SLUICE_BIN:-"$target/release/sluice"}
    # The bare-Pingora floor (examples/floor.rs): same dependencies and profile as sluice.
    FLOOR_BIN="$target/release/examples/floor"
    SLUICE_BUILD_FAILED=""
    if (($1)); then
        log "building release binaries (cargo build --release --bins --example floor)"
        if ! (cd "$ROOT" && cargo build --release --bins --example floor --quiet); then
            SLUICE_BUILD_FAILED="cargo build --release --bins --example floor failed"
            [[ -x "$ECHO_BIN" ]] || die "build failed and there is no $ECHO_BIN to fall back to"
            log "WARNING: build failed; using the existing $ECHO_BIN, sluice results will be skipped"
        fi
    fi
    [[ -x "$ECHO_BIN" ]] || die "$ECHO_BIN not found (build it or drop --no-build)"
}

# bench_tmp PREFIX: sets TMP to a new temp dir and PIDS=(); on exit every PID in PIDS is
# stopped (TERM, then KILL after 1 s) and TMP removed unless BENCH_KEEP=1.
bench_tmp() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# nginx_proxy_settings: the proxy_* directives of ingress-nginx's default location
# (forwarded headers, upstream keep-alive, timeouts, buffering), shared by the nginx
# configs of proxy.sh and tls.sh so both compare sluice with the same nginx.
nginx_proxy_settings() {
    cat <<'EOF'
            proxy_set_header Host $host;
            proxy_set_header X-Request-ID $req_id;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Scheme $scheme;
            proxy_set_header X-Scheme $scheme;
            proxy_set_header X-Original-URI $request_uri;
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
EOF
}

# cpu_split PID...: "USER SYS" CPU time (all threads) of the processes, in clock ticks
# (getconf CLK_TCK), from /proc/PID/stat.
cpu_split() {
    local pid u=0 s=0 t
    for pid in "$@"; do
        # Fields after the ")" that closes comm: utime and stime are the 12th and 13th.
        t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12, $13}') || t="0 0"
        [[ -n $t ]] || t="0 0"
        u=$((u + ${t% *}))
        s=$((s + ${t#* }))
    done
    echo "$u $s"
}
