#!/usr/bin/env bash
# Runs the demo: sluice in standalone mode over config/demo/, in front of demo backends
# that say which of them answered. No cluster needed.
#   config/demo/run.sh           build, start, print curl commands, run until Ctrl-C
#   config/demo/run.sh --smoke   start, check every demo route, stop (used by the tests)
# SLUICE_DEMO_PORT (8080), SLUICE_DEMO_HTTPS_PORT (8443), SLUICE_DEMO_ADMIN_PORT (10254) move the listeners.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
demo="$root/config/demo"
port="${SLUICE_DEMO_PORT:-8080}"
admin="${SLUICE_DEMO_ADMIN_PORT:-10254}"
https="${SLUICE_DEMO_HTTPS_PORT:-8443}"
profile="${SLUICE_DEMO_PROFILE:-release}"
smoke=false
[ "${1:-}" = "--smoke" ] && smoke=true

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
if ! command -v cmake >/dev/null || ! command -v cc >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake build-essential curl >/dev/null
  else
    echo "sluice needs cmake and a C compiler to build (apt-get install cmake build-essential)" >&2
    exit 1
  fi
fi
flag=(); [ "$profile" = release ] && flag=(--release)
echo "building sluice ($profile)..."
(cd "$root" && cargo build -q "${flag[@]}" --bins)
bin="$CARGO_TARGET_DIR/$profile"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

start_backend() { # name port
  "$bin/sluice-echo" --name "$1" --listen "127.0.0.1:$2" --threads 1 >/dev/null &
  pids+=($!)
}
start_backend storefront-abc12 9101
start_backend storefront-def34 9102
start_backend api 9103
start_backend health 9104
start_backend checkout 9105

log="$(mktemp)"
"$bin/sluice" --manifests "$demo" --http-listen "127.0.0.1:$port" --https-listen "127.0.0.1:$https" --admin-listen "127.0.0.1:$admin" --workers 2 \
  >"$log.access" 2>"$log" &
pids+=($!)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null || { cat "$log"; echo "sluice did not become ready" >&2; exit 1; }

u="http://127.0.0.1:$port"
if $smoke; then
  fail=0
  check() { # host path want-status want-backend
    local out status backend
    out=$(curl -s -o /dev/null -D - -H "Host: $1" "$u$2" || true)
    status=$(awk 'NR==1{print $2}' <<<"$out")
    backend=$(awk 'tolower($1)=="x-backend:"{print $2}' <<<"$out" | tr -d '\r')
    if [ "$status" != "$3" ] || [[ "$backend" != $4 ]]; then
      echo "demo check failed: $1$2 -> $status ${backend:--} (want $3 $4)"; fail=1
    else
      echo "ok  $1$2 -> $status ${backend:--}"
    fi
  }
  check shop.demo.local / 200 'storefront-*'
  check shop.demo.local /api/orders 200 api
  check shop.demo.local /api/health 200 health
  check shop.demo.local /api/health/x 200 api
  check acme.tenants.demo.local / 200 api
  check shop.demo.local /checkout 503 ''
  check nowhere.demo.local / 404 ''
  seen=$(for _ in 1 2 3 4; do curl -s -o /dev/null -w '%header{x-backend}\n' -H 'Host: shop.demo.local' "$u/"; done | sort -u | wc -l)
  [ "$seen" = 2 ] || { echo "demo check failed: round robin reached $seen storefront backends, want 2"; fail=1; }
  exit $fail
fi

cat <<TXT

sluice is serving config/demo/ on $u (admin: http://127.0.0.1:$admin/readyz)
Try:
  curl -H 'Host: shop.demo.local' $u/                # storefront: run it twice, round robin over two Pods
  curl -H 'Host: shop.demo.local' $u/api/orders      # api (selector-less Service, mirrored Endpoints)
  curl -H 'Host: shop.demo.local' $u/api/health      # Exact path beats the /api prefix
  curl -H 'Host: acme.tenants.demo.local' $u/        # wildcard host
  curl -i -H 'Host: shop.demo.local' $u/checkout     # 503: no ready endpoints
  curl -i -H 'Host: nowhere.demo.local' $u/          # 404: no rule matches
  curl --http2-prior-knowledge -H 'Host: shop.demo.local' $u/   # h2c
Each backend answers with JSON naming itself (\"backend\") and the headers sluice sent.
Edit config/demo/*.yaml and the change is live at once. Access log: $log.access
Ctrl-C stops everything.
TXT
wait "${pids[-1]}"
