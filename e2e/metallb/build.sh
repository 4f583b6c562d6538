#!/usr/bin/env bash
# Builds MetalLB's controller and speaker (go.universe.tf/metallb, the version pinned in
# go.mod) into ${SLUICE_CACHE:-~/.cache/sluice}/metallb/<version>-<stamp>/, and copies
# the module's CRDs (config/crd/bases) beside them. Shares the Go module and build
# caches of e2e/k8s/build.sh (so a module both need is downloaded once). Binaries built
# from the same go.mod/go.sum are kept: a warm run takes well under a second. Progress
# goes to stderr; the last line of stdout is the directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=${SLUICE_CACHE:-$HOME/.cache/sluice}
log() { echo "metallb/build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=e2e/go_toolchain.sh
source "$here/../go_toolchain.sh"

version=$(awk '$1 == "require" && $2 == "go.universe.tf/metallb" { print $3; exit }
  $1 == "go.universe.tf/metallb" { print $2; exit }' "$here/go.mod")
[[ -n $version ]] || die "no go.universe.tf/metallb version in $here/go.mod"
stamp=$(cd "$here" && cat go.mod go.sum | sha256sum | cut -c1-12)
out=$root/metallb/$version-$stamp
done_marker=$out/.complete

if [[ ! -f $done_marker ]]; then
  go_build_env "$root/k8s/gomod" "$root/k8s/gocache" "$root/metallb/build.lock"
  if [[ ! -f $done_marker ]]; then
    log "building MetalLB $version controller and speaker (cold: several minutes)"
    start=$SECONDS
    mkdir -p "$root/metallb"
    tmp=$(mktemp -d "$root/metallb/.tmp.XXXXXX")
    # As upstream's Dockerfiles, plus -s -w; one go invocation so shared packages
    # compile once.
    ldflags="-s -w -X go.universe.tf/metallb/internal/version.gitCommit=$version"
    ldflags+=" -X go.universe.tf/metallb/internal/version.gitBranch=release"
    (cd "$here" && "${nice_cmd[@]}" go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
      go.universe.tf/metallb/controller go.universe.tf/metallb/speaker) >&2 ||
      { rm -rf "$tmp"; die "go build failed"; }
    # The CRDs come from the same module download the binaries were built from.
    moddir=$(cd "$here" && go list -m -f '{{.Dir}}' go.universe.tf/metallb) ||
      { rm -rf "$tmp"; die "go list -m go.universe.tf/metallb failed"; }
    mkdir -p "$tmp/crds"
    cp "$moddir"/config/crd/bases/*.yaml "$tmp/crds/"
    chmod -R u+w "$tmp"
    rm -rf "$out"
    mv "$tmp" "$out"
    touch "$done_marker"
    log "built in $((SECONDS - start))s"
  fi
fi
echo "$out"
