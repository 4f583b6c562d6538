#!/usr/bin/env bash
# Smoke test of the e2e control plane: starts a cluster (cluster.sh), checks what the
# sluice e2e suite relies on, stops it (also on failure). Exits non-zero on any failure.
#
#   e2e/k8s/smoke.sh [DIR]     # DIR defaults to a new directory under /tmp; it is kept
#                              # afterwards (logs) unless the run succeeded and DIR was not given
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v kubectl >/dev/null 2>&1 || { echo "smoke.sh: kubectl not found" >&2; exit 1; }
if [[ $# -ge 1 ]]; then
  dir=$1
  keep=1
else
  dir=$(mktemp -d /tmp/sluice-k8s-smoke.XXXXXX)
  keep=0
fi

ok=0
finish() {
  "$here/cluster.sh" stop "$dir" || true
  if ((ok)); then
    ((keep)) || rm -rf "$dir"
  else
    echo "smoke.sh: FAILED (state and logs in $dir)" >&2
  fi
}
trap finish EXIT

step() { echo "=== $*"; }
pass() { echo "    ok: $*"; }
die() {
  echo "smoke.sh: FAIL: $*" >&2
  exit 1
}
# until_ok SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds.
until_ok() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what: not within ${limit}s"
    sleep 0.5
  done
  pass "$what"
}
# eq EXPECTED COMMAND...: COMMAND prints exactly EXPECTED.
eq() {
  local want=$1 got
  shift
  got=$("$@" 2>/dev/null) || return 1
  [[ $got == "$want" ]]
}

t0=$SECONDS
"$here/cluster.sh" start "$dir"
# shellcheck source=/dev/null
source "$dir/env"
echo "cluster started in $((SECONDS - t0))s; KUBECONFIG=$KUBECONFIG"
k() { kubectl --request-timeout=10s "$@"; }
ns=smoke

step "server version"
ver=$(k get --raw /version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')
[[ $ver == v1.34.* ]] || die "server gitVersion is '$ver', want v1.34.*"
pass "kube-apiserver $ver"

step "namespace, Node, Pod with spec.nodeName, status patched by hand (no kubelet)"
k create namespace "$ns"
k apply -f - <<'EOF'
apiVersion: v1
kind: Node
metadata:
  name: smoke-node
  labels:
    kubernetes.io/hostname: smoke-node
---
apiVersion: v1
kind: Pod
metadata:
  name: backend-0
  namespace: smoke
  labels:
    app: backend
spec:
  nodeName: smoke-node
  containers:
  - name: backend
    image: backend.invalid/none
    ports:
    - name: http
      containerPort: 8080
EOF
k -n "$ns" patch pod backend-0 --subresource=status --type=merge \
  -p '{"status":{"phase":"Running","podIP":"10.244.1.10","podIPs":[{"ip":"10.244.1.10"}],"conditions":[{"type":"Ready","status":"True"}]}}'
eq Running k -n "$ns" get pod backend-0 -o 'jsonpath={.status.phase}' || die "pod status patch did not stick"
pass "pod backend-0 Running with podIP 10.244.1.10"

step "Service with a selector -> EndpointSlice written by the real EndpointSlice controller"
k -n "$ns" apply -f - <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: backend
spec:
  selector:
    app: backend
  ports:
  - name: http
    port: 80
    targetPort: http
EOF
slice_q=(k -n "$ns" get endpointslices -l kubernetes.io/service-name=backend)
until_ok 60 "EndpointSlice lists 10.244.1.10:8080 ready=true" \
  eq "10.244.1.10 true 8080" "${slice_q[@]}" \
  -o 'jsonpath={.items[0].endpoints[0].addresses[0]} {.items[0].endpoints[0].conditions.ready} {.items[0].ports[0].port}'
eq endpointslice-controller.k8s.io "${slice_q[@]}" \
  -o 'jsonpath={.items[0].metadata.labels.endpointslice\.kubernetes\.io/managed-by}' ||
  die "slice not managed by endpointslice-controller.k8s.io"
pass "managed-by endpointslice-controller.k8s.io"
"${slice_q[@]}" -o yaml

step "Pod unready, then Terminating (graceful delete, no kubelet to finish it)"
k -n "$ns" patch pod backend-0 --subresource=status --type=merge \
  -p '{"status":{"conditions":[{"type":"Ready","status":"False"}]}}'
until_ok 60 "endpoint ready=false after the Pod turned unready" \
  eq "false" "${slice_q[@]}" -o 'jsonpath={.items[0].endpoints[0].conditions.ready}'
k -n "$ns" patch pod backend-0 --subresource=status --type=merge \
  -p '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}'
until_ok 60 "endpoint ready=true again" \
  eq "true" "${slice_q[@]}" -o 'jsonpath={.items[0].endpoints[0].conditions.ready}'
k -n "$ns" delete pod backend-0 --wait=false
eq true bash -c "kubectl -n $ns get pod backend-0 -o jsonpath='{.metadata.deletionTimestamp}' | grep -q . && echo true" ||
  die "pod not Terminating after a graceful delete"
until_ok 60 "endpoint ready=false serving=true terminating=true while the Pod is Terminating" \
  eq "false true true" "${slice_q[@]}" \
  -o 'jsonpath={.items[0].endpoints[0].conditions.ready} {.items[0].endpoints[0].conditions.serving} {.items[0].endpoints[0].conditions.terminating}'
k -n "$ns" delete pod backend-0 --force --grace-period=0 2>/dev/null
until_ok 60 "endpoint gone after the Pod is deleted" \
  eq "" "${slice_q[@]}" -o 'jsonpath={.items[*].endpoints[*].addresses[*]}'

step "selector-less Service + Endpoints -> EndpointSlice mirrored by endpointslicemirroring"
k -n "$ns" apply -f - <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: manual
spec:
  ports:
  - name: http
    port: 80
    targetPort: 9090
---
apiVersion: v1
kind: Endpoints
metadata:
  name: manual
subsets:
- addresses:
  - ip: 10.244.2.20
  ports:
  - name: http
    port: 9090
EOF
mirror_q=(k -n "$ns" get endpointslices -l kubernetes.io/service-name=manual)
until_ok 60 "mirrored EndpointSlice lists 10.244.2.20:9090" \
  eq "10.244.2.20 9090 endpointslicemirroring-controller.k8s.io" "${mirror_q[@]}" \
  -o 'jsonpath={.items[0].endpoints[0].addresses[0]} {.items[0].ports[0].port} {.items[0].metadata.labels.endpointslice\.kubernetes\.io/managed-by}'
"${mirror_q[@]}" -o yaml

step "garbage collector: deleting a Service deletes its EndpointSlice (ownerReference)"
k -n "$ns" delete service backend
until_ok 60 "EndpointSlice of the deleted Service is gone" \
  eq "" "${slice_q[@]}" -o 'jsonpath={.items[*].metadata.name}'

step "ServiceAccount token (TokenRequest) subject to RBAC"
k -n "$ns" create serviceaccount sluice
token=$(k -n "$ns" create token sluice --duration=1h)
[[ -n $token ]] || die "kubectl create token printed nothing"
as_sa() { kubectl --request-timeout=10s --kubeconfig=/dev/null --server="$SLUICE_K8S_SERVER" \
  --certificate-authority="$SLUICE_K8S_CA" --token="$1" "${@:2}"; }
who=$(as_sa "$token" auth whoami -o 'jsonpath={.status.userInfo.username}')
[[ $who == system:serviceaccount:$ns:sluice ]] || die "token authenticates as '$who'"
pass "token authenticates as $who"
if out=$(as_sa "$token" get ingresses -A 2>&1); then
  die "listing ingresses succeeded without a binding: $out"
fi
[[ $out == *Forbidden* || $out == *forbidden* ]] || die "expected Forbidden, got: $out"
pass "without a binding: $out"
k create clusterrole smoke-ingress-reader --verb=get,list,watch --resource=ingresses.networking.k8s.io
k create clusterrolebinding smoke-ingress-reader --clusterrole=smoke-ingress-reader \
  --serviceaccount="$ns:sluice"
until_ok 30 "with a ClusterRoleBinding the same token lists ingresses" as_sa "$token" get ingresses -A
if as_sa "$token" get secrets -A >/dev/null 2>&1; then die "token can list secrets: RBAC not enforced"; fi
pass "the same token still cannot list secrets"

step "legacy token Secret populated by the serviceaccount-token controller"
k -n "$ns" apply -f - <<'EOF'
apiVersion: v1
kind: Secret
metadata:
  name: sluice-token
  annotations:
    kubernetes.io/service-account.name: sluice
type: kubernetes.io/service-account-token
EOF
until_ok 60 "Secret sluice-token has data.token" \
  bash -c "kubectl -n $ns get secret sluice-token -o jsonpath='{.data.token}' | grep -q ."
secret_token=$(k -n "$ns" get secret sluice-token -o 'jsonpath={.data.token}' | base64 -d)
as_sa "$secret_token" get ingresses -A >/dev/null || die "the Secret's token is rejected"
pass "the Secret's token works too"

step "namespace controller: deleting the namespace empties and removes it"
k delete namespace "$ns" --wait=false
until_ok 120 "namespace $ns gone" bash -c "! kubectl get namespace $ns"

ok=1
echo "=== smoke test passed in $((SECONDS - t0))s"
