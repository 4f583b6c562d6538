#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager (from k8s.io/kubernetes, see go.mod)
# and etcd (from go.etcd.io/etcd/server/v3, see etcd/go.mod) through the Go module
# proxy, into ${SLUICE_CACHE:-~/.cache/sluice}/k8s/v<kubernetes version>/bin/.
# Binaries already there (and built from the same go.mod/go.sum) are kept, so a warm
# run takes a second. Progress goes to stderr; the last line of stdout is the bin dir.
#
#   e2e/k8s/build.sh            # build what is missing, print the bin dir
#   SLUICE_BUILD_NICE=0 ...     # don't lower the build's priority (default: nice 10)
#   GOFLAGS=-p=1 ...            # extra go flags are passed through
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${SLUICE_CACHE:-$HOME/.cache/sluice}/k8s

log() { echo "build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=e2e/go_toolchain.sh
source "$here/../go_toolchain.sh"

k8s_version=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$here/go.mod")
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$here/etcd/go.mod")
[[ $k8s_version =~ ^v1\.([0-9]+)\.[0-9]+$ ]] || die "no k8s.io/kubernetes release version in $here/go.mod"
k8s_minor=${BASH_REMATCH[1]}
[[ -n $etcd_version ]] || die "no go.etcd.io/etcd/server/v3 version in $here/etcd/go.mod"

bin=$cache/$k8s_version/bin
mkdir -p "$bin"

go_build_env "$cache/gomod" "$cache/gocache" "$cache/build.lock"

build_tags=selinux,notest
stamp_of() { # module dir, ldflags -> digest of what the binaries are built from
  { cat "$1/go.mod" "$1/go.sum"; echo "tags=$build_tags ldflags=$2"; } | sha256sum | cut -d' ' -f1
}
up_to_date() { # name stamp
  [[ -x $bin/$1 && -f $bin/.$1.stamp && $(cat "$bin/.$1.stamp") == "$2" ]]
}

# build MODULE_DIR LDFLAGS NAME=PACKAGE...
build() {
  local dir=$1 ldflags=$2 stamp names=() pkgs=() nv tmp start
  shift 2
  stamp=$(stamp_of "$dir" "$ldflags")
  for nv in "$@"; do
    up_to_date "${nv%%=*}" "$stamp" && continue
    names+=("${nv%%=*}")
    pkgs+=("${nv#*=}")
  done
  ((${#pkgs[@]})) || return 0
  log "building ${names[*]} (module $dir; a cold build takes many minutes)"
  tmp=$(mktemp -d "$bin/.tmp.XXXXXX")
  start=$SECONDS
  # One go invocation for all packages of a module: shared packages compile once.
  if ! (cd "$dir" && "${nice_cmd[@]}" go build -trimpath -tags "$build_tags" \
    -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}" >&2); then
    rm -rf "$tmp"
    die "go build failed in $dir"
  fi
  local i n out
  for i in "${!names[@]}"; do
    n=${names[i]}
    # go build -o DIR/ names a binary after the package's last path element, or the
    # one before it if that is a major version suffix (go.etcd.io/etcd/server/v3 -> server).
    out=${pkgs[i]##*/}
    [[ $out =~ ^v[0-9]+$ ]] && out=$(basename "$(dirname "${pkgs[i]}")")
    [[ -x $tmp/$out ]] || { rm -rf "$tmp"; die "go build did not produce $out"; }
    mv -f "$tmp/$out" "$bin/$n"
    echo "$stamp" >"$bin/.$n.stamp"
  done
  rm -rf "$tmp"
  log "built ${names[*]} in $((SECONDS - start))s"
}

# What hack/lib/version.sh stamps into release builds (kube-apiserver reports it at
# /version; without it the version is v0.0.0-master+$Format:...$).
k8s_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor"
  k8s_ldflags+=" -X $p.gitTreeState=clean"
done

build "$here" "$k8s_ldflags" \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
  kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
  kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler
# go.etcd.io/etcd/server/v3 is itself the etcd main package (server/main.go).
build "$here/etcd" "-s -w" etcd=go.etcd.io/etcd/server/v3
# The tests apply manifests with kubectl; a machine without one gets it from the same
# Kubernetes module (put $bin on PATH).
if ! command -v kubectl >/dev/null 2>&1; then
  build "$here" "$k8s_ldflags" kubectl=k8s.io/kubernetes/cmd/kubectl
fi

log "kubernetes $k8s_version, etcd $etcd_version: $(cd "$bin" && echo kube-apiserver kube-controller-manager kube-scheduler etcd)"
echo "$bin"
