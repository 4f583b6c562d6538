# Sourced by e2e/k8s/build.sh and e2e/helm/build.sh (which define log and die first):
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
