# Sourced by the e2e Go builds (k8s, helm, h2spec, node-agent; they define log and die first):
# checks that a Go toolchain can build modules whose go.mod says 'go 1.25.0'.
# Go 1.21-1.24 can fetch that toolchain itself through the module proxy when
# GOTOOLCHAIN allows it; older than 1.21 cannot.
command -v go >/dev/null 2>&1 ||
  die "'go' not found in PATH. Install Go >= 1.25 (Debian: apt-get install golang-go; or https://go.dev/dl/)."
gover=$(go env GOVERSION 2>/dev/null || true)
[[ $gover =~ ^go1\.([0-9]+) ]] || die "cannot parse the Go version ('$gover' from 'go env GOVERSION')"
gominor=${BASH_REMATCH[1]}
if ((gominor < 21)); then
  die "Go $gover is too old: Go >= 1.25 is needed (>= 1.21 can download 1.25 itself)."
elif ((gominor < 25)); then
  if [[ -z ${GOTOOLCHAIN:-} || ${GOTOOLCHAIN} == local ]]; then
    log "Go $gover < 1.25: letting go fetch the toolchain named in go.mod (GOTOOLCHAIN=auto)"
    export GOTOOLCHAIN=auto
  fi
fi

# go_build_env GOMOD GOCACHE LOCK: the environment every e2e Go build uses. Module and
# build caches under ~/.cache/sluice, CGO off, `nice_cmd` (lower priority, so a build
# does not starve tests running beside it; SLUICE_BUILD_NICE=0 turns it off), and an
# exclusive lock on LOCK (fd 9), so two runs at once never build into each other.
go_build_env() {
  mkdir -p "$1" "$2" "$(dirname "$3")"
  export GOMODCACHE=$1 GOCACHE=$2 CGO_ENABLED=0
  # -modcacherw: the module cache can be deleted with plain rm -rf.
  export GOFLAGS="-mod=mod -modcacherw -buildvcs=false ${GOFLAGS:-}"
  nice_cmd=()
  if [[ ${SLUICE_BUILD_NICE:-10} != 0 ]] && command -v nice >/dev/null 2>&1; then
    nice_cmd=(nice -n "${SLUICE_BUILD_NICE:-10}")
  fi
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$3"
    flock 9
  fi
}
