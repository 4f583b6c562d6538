#!/usr/bin/env bash
# Builds the helm CLI (helm.sh/helm/v3/cmd/helm, version pinned in go.mod beside this
# script) through the Go module proxy into
# ${SLUICE_CACHE:-~/.cache/sluice}/helm/<version>/bin/helm, for the chart tests
# (tests/helm.rs) and the e2e harness (the chart's RBAC). A helm already built from
# the same go.mod/go.sum is kept, so a warm run takes well under a second. Progress
# goes to stderr; the last line of stdout is the path of the helm binary.
#
#   e2e/helm/build.sh           # build if missing, print the binary's path
#   SLUICE_BUILD_NICE=0 ...     # don't lower the build's priority (default: nice 10)
#   GOFLAGS=-p=1 ...            # extra go flags are passed through
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${SLUICE_CACHE:-$HOME/.cache/sluice}/helm

log() { echo "helm/build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=e2e/go_toolchain.sh
source "$here/../go_toolchain.sh"

version=$(awk '$1 == "helm.sh/helm/v3" { print $2; exit }' "$here/go.mod")
[[ $version =~ ^v3\.[0-9]+\.[0-9]+$ ]] || die "no helm.sh/helm/v3 release version in $here/go.mod"
# The Kubernetes version helm assumes without a cluster (.Capabilities.KubeVersion in
# `helm template`, deprecation checks in `helm lint`) follows its client-go, as
# helm's own Makefile stamps it.
client_go=$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$here/go.mod")
[[ $client_go =~ ^v0\.([0-9]+)\.[0-9]+$ ]] || die "no k8s.io/client-go version in $here/go.mod"
k8s_minor=${BASH_REMATCH[1]}

bin=$cache/$version/bin
mkdir -p "$bin"

go_build_env "$cache/gomod" "$cache/gocache" "$cache/build.lock"

# What helm's Makefile stamps into release builds.
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$k8s_minor"
done
stamp=$({ cat "$here/go.mod" "$here/go.sum"; echo "ldflags=$ldflags"; } | sha256sum | cut -d' ' -f1)

if [[ -x $bin/helm && -f $bin/.helm.stamp && $(cat "$bin/.helm.stamp") == "$stamp" ]]; then
  log "helm $version: up to date"
else
  log "building helm $version (a cold build takes a few minutes)"
  tmp=$(mktemp -d "$bin/.tmp.XXXXXX")
  start=$SECONDS
  if ! (cd "$here" && "${nice_cmd[@]}" go build -trimpath -ldflags "$ldflags" \
    -o "$tmp/helm" helm.sh/helm/v3/cmd/helm >&2); then
    rm -rf "$tmp"
    die "go build failed in $here"
  fi
  mv -f "$tmp/helm" "$bin/helm"
  echo "$stamp" >"$bin/.helm.stamp"
  rm -rf "$tmp"
  log "built helm $version in $((SECONDS - start))s"
fi
echo "$bin/helm"
