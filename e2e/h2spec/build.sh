#!/usr/bin/env bash
# Builds h2spec (github.com/summerwind/h2spec/cmd/h2spec, version pinned in go.mod
# beside this script) through the Go module proxy into
# ${SLUICE_CACHE:-~/.cache/sluice}/h2spec/<version>/bin/h2spec, for the HTTP/2
# conformance test (tests/h2spec.rs). An h2spec already built from the same
# go.mod/go.sum is kept, so a warm run takes well under a second. Progress goes to
# stderr; the last line of stdout is the path of the h2spec binary.
#
#   e2e/h2spec/build.sh         # build if missing, print the binary's path
#   SLUICE_BUILD_NICE=0 ...     # don't lower the build's priority (default: nice 10)
#   GOFLAGS=-p=1 ...            # extra go flags are passed through
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${SLUICE_CACHE:-$HOME/.cache/sluice}/h2spec

log() { echo "h2spec/build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=e2e/go_toolchain.sh
source "$here/../go_toolchain.sh"

version=$(awk '$1 == "github.com/summerwind/h2spec" { print $2; exit }' "$here/go.mod")
[[ $version =~ ^v2\.[0-9]+\.[0-9]+ ]] || die "no github.com/summerwind/h2spec version in $here/go.mod"

bin=$cache/$version/bin
mkdir -p "$bin"

go_build_env "$cache/gomod" "$cache/gocache" "$cache/build.lock"

# h2spec's own release builds stamp the version into main.VERSION.
ldflags="-s -w -X main.VERSION=${version%%+*}"
stamp=$({ cat "$here/go.mod" "$here/go.sum"; echo "ldflags=$ldflags"; } | sha256sum | cut -d' ' -f1)

if [[ -x $bin/h2spec && -f $bin/.h2spec.stamp && $(cat "$bin/.h2spec.stamp") == "$stamp" ]]; then
  log "h2spec $version: up to date"
else
  log "building h2spec $version"
  tmp=$(mktemp -d "$bin/.tmp.XXXXXX")
  start=$SECONDS
  if ! (cd "$here" && "${nice_cmd[@]}" go build -trimpath -ldflags "$ldflags" \
    -o "$tmp/h2spec" github.com/summerwind/h2spec/cmd/h2spec >&2); then
    rm -rf "$tmp"
    die "go build failed in $here"
  fi
  mv -f "$tmp/h2spec" "$bin/h2spec"
  echo "$stamp" >"$bin/.h2spec.stamp"
  rm -rf "$tmp"
  log "built h2spec $version in $((SECONDS - start))s"
fi
echo "$bin/h2spec"
