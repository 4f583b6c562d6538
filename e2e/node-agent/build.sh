#!/usr/bin/env bash
# Builds the e2e node agent (this directory's Go module, client-go v0.34.10) into
# ${SLUICE_CACHE:-~/.cache/sluice}/node-agent/<stamp>/node-agent, sharing the Go module
# and build caches of e2e/k8s/build.sh (so nothing is downloaded twice). A binary built
# from the same sources is kept: a warm run takes well under a second. Progress goes
# to stderr; the last line of stdout is the binary's path.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${SLUICE_CACHE:-$HOME/.cache/sluice}
log() { echo "node-agent/build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=e2e/go_toolchain.sh
source "$here/../go_toolchain.sh"

stamp=$(cd "$here" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
out=$root/node-agent/$stamp
if [[ ! -x $out/node-agent ]]; then
  # The Kubernetes builds' module cache: client-go and friends are downloaded once.
  go_build_env "$root/k8s/gomod" "$root/k8s/gocache" "$root/node-agent/build.lock"
  if [[ ! -x $out/node-agent ]]; then
    log "building node-agent"
    start=$SECONDS
    tmp=$(mktemp -d "$root/node-agent/.tmp.XXXXXX")
    (cd "$here" && "${nice_cmd[@]}" go build -trimpath -ldflags "-s -w" -o "$tmp/node-agent" .) >&2 ||
      { rm -rf "$tmp"; die "go build failed"; }
    mkdir -p "$out"
    mv -f "$tmp/node-agent" "$out/node-agent"
    rm -rf "$tmp"
    log "built in $((SECONDS - start))s"
  fi
fi
echo "$out/node-agent"
