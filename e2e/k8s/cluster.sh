#!/usr/bin/env bash
# A throw-away Kubernetes control plane on 127.0.0.1 for the e2e tests: etcd,
# kube-apiserver and kube-controller-manager (EndpointSlice controllers, garbage
# collector, namespace, service-account tokens). No kubelet, no scheduler, no
# container runtime. See README.md.
#
#   e2e/k8s/cluster.sh start DIR   # fresh cluster; state, logs and PIDs in DIR
#   e2e/k8s/cluster.sh stop DIR    # TERM then KILL; safe to call twice
#   e2e/k8s/cluster.sh stop-apiserver DIR / restart-apiserver DIR   # outage drills
#
# After start, DIR holds admin.kubeconfig and env (source it: KUBECONFIG,
# SLUICE_K8S_SERVER, SLUICE_K8S_CA, SLUICE_K8S_ADMIN_TOKEN, PIDs, ...).
# Binaries: $SLUICE_K8S_BIN if set, else whatever build.sh prints (a warm build.sh
# run takes about a second). SLUICE_K8S_TIMEOUT (seconds, default 120) bounds each wait.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Stop order; kube-scheduler runs only in nodes mode (stopping what never ran is a no-op).
components=(kube-scheduler kube-controller-manager kube-apiserver etcd)
# Nodes mode (SLUICE_K8S_NODES=1, for a node agent that runs real Pods): also the
# node-lifecycle controller (with a short SLUICE_K8S_NODE_GRACE, default 10s) and
# kube-scheduler. Off by default: node-lifecycle would mark the Pods of a Node that
# nobody heartbeats NotReady.
nodes=${SLUICE_K8S_NODES:-0}
timeout=${SLUICE_K8S_TIMEOUT:-120}

log() { echo "cluster.sh: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}
usage() {
  echo "usage: $0 start|stop|stop-apiserver|restart-apiserver DIR" >&2
  exit 2
}

# --- processes ---------------------------------------------------------------

# Prints the PID recorded for a component if that process is still ours: alive and
# started with DIR on its command line (guards against a recycled PID).
live_pid() {
  local pidfile=$dir/$1.pid pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir" || return 1
  echo "$pid"
}

# alive PID: the process exists and is not a zombie (exited, not yet reaped).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) } # field 3, after "pid (comm) "
  [[ ${stat%% *} != Z ]]
}

stop_one() {
  local name=$1 pid i
  if pid=$(live_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do # 10s
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "$name (pid $pid) ignored TERM for 10s: KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/$name.pid"
}

stop_all() {
  local c
  for c in "${components[@]}"; do stop_one "$c"; done
}

tail_log() {
  local f=$dir/$1.log
  if [[ -s $f ]]; then
    log "last lines of $f:"
    tail -n "${2:-40}" "$f" | sed 's/^/    /' >&2
  fi
}

# fail NAME MESSAGE: show the log, tear down what was started, exit 1.
fail() {
  log "error: $2"
  tail_log "$1"
  log "stopping what was started (state left in $dir)"
  stop_all
  exit 1
}

# Ports: random, below the kernel's ephemeral range (so no outgoing connection holds
# them), not accepting connections on 127.0.0.1, not already handed out by this run.
# A race with another process is still possible: start retries on "address already
# in use".
taken_ports=" "
free_port() { # sets REPLY
  local lo p i
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range || lo=32768
  ((lo > 12000)) || lo=32768
  for ((i = 0; i < 500; i++)); do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % (lo - 10000)))
    [[ $taken_ports == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      taken_ports+="$p "
      REPLY=$p
      return 0
    fi
  done
  die "no free port found on 127.0.0.1"
}

# launch NAME ARGS...: start $bin/NAME in the background, output to DIR/NAME.log.
launch() {
  local name=$1
  shift
  "$bin/$name" "$@" </dev/null >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

# wait_for NAME WHAT CHECK...: poll CHECK until it succeeds. Returns 2 if the process
# died of a port clash (caller retries with other ports); fails on any other death
# or on timeout.
wait_for() {
  local name=$1 what=$2 pid deadline=$((SECONDS + timeout))
  shift 2
  pid=$(<"$dir/$name.pid")
  until "$@" >/dev/null 2>&1; do
    if ! alive "$pid"; then
      wait "$pid" 2>/dev/null || true
      rm -f "$dir/$name.pid"
      if grep -q 'address already in use' "$dir/$name.log"; then
        log "$name: port clash, retrying with other ports"
        return 2
      fi
      fail "$name" "$name exited before it was $what"
    fi
    ((SECONDS < deadline)) || fail "$name" "$name not $what after ${timeout}s"
    sleep 0.2
  done
}

# --- start -------------------------------------------------------------------

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found (Debian: apt-get install $2)"; }

gen_pki() {
  local pki=$dir/pki
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=sluice-e2e-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out ca.crt
    openssl ecparam -name prime256v1 -genkey -noout -out apiserver.key
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr
    # 10.96.0.1: the ClusterIP of the 'kubernetes' Service (first of --service-cluster-ip-range).
    cat >apiserver.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
      -days 3650 -extfile apiserver.ext -out apiserver.crt
    # Service-account token signing key pair (RS256).
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) >"$dir/pki.log" 2>&1 || {
    tail_log pki
    die "openssl failed"
  }
  chmod 600 "$pki"/*.key
}

write_kubeconfig() { # server
  local ca
  ca=$(base64 -w0 <"$dir/pki/ca.crt")
  cat >"$dir/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sluice-e2e
  cluster:
    server: $1
    certificate-authority-data: $ca
users:
- name: admin
  user:
    token: $admin_token
contexts:
- name: sluice-e2e
  context:
    cluster: sluice-e2e
    user: admin
current-context: sluice-e2e
EOF
  chmod 600 "$dir/admin.kubeconfig"
}

# curl against the API server as admin.
api() {
  curl -sf --max-time 5 --cacert "$dir/pki/ca.crt" -H "Authorization: Bearer $admin_token" \
    "https://127.0.0.1:$api_port$1"
}
etcd_healthy() { [[ $(curl -sf --max-time 2 "http://127.0.0.1:$etcd_port/health") == *'"health":"true"'* ]]; }
apiserver_ready() { [[ $(api /readyz) == ok ]] && api /api/v1/namespaces/default; }
kcm_healthy() { [[ $(curl -sfk --max-time 2 "https://127.0.0.1:$kcm_port/healthz") == ok ]]; }

start_etcd() {
  free_port
  etcd_port=$REPLY
  free_port
  local peer_port=$REPLY
  rm -rf "$dir/etcd" # a failed attempt may have bootstrapped it with other ports
  # No TLS between apiserver and etcd: both on loopback, throw-away data.
  # --unsafe-no-fsync: durability is of no use here, speed is.
  launch etcd \
    --name=sluice-e2e \
    --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="sluice-e2e=http://127.0.0.1:$peer_port" \
    --initial-cluster-state=new \
    --unsafe-no-fsync \
    --log-level=warn
  wait_for etcd healthy etcd_healthy
}

start_apiserver() {
  free_port
  api_port=$REPLY
  local args=(
    --bind-address=127.0.0.1
    --secure-port="$api_port"
    --advertise-address=127.0.0.1
    --cert-dir="$dir/pki/apiserver-generated"
    --tls-cert-file="$dir/pki/apiserver.crt"
    --tls-private-key-file="$dir/pki/apiserver.key"
    --client-ca-file="$dir/pki/ca.crt"
    --token-auth-file="$dir/tokens.csv"
    --authorization-mode=Node,RBAC
    --service-account-issuer=https://kubernetes.default.svc
    --service-account-key-file="$dir/pki/sa.pub"
    --service-account-signing-key-file="$dir/pki/sa.key"
    --disable-admission-plugins=ServiceAccount
    --endpoint-reconciler-type=none
    --service-cluster-ip-range=10.96.0.0/16
    --etcd-servers="http://127.0.0.1:$etcd_port"
    --allow-privileged=true
    --profiling=false
    --v="${SLUICE_K8S_VERBOSITY:-1}"
  )
  # Kept so restart-apiserver brings it back on the same port with the same state.
  printf '%s\n' "${args[@]}" >"$dir/kube-apiserver.args"
  launch kube-apiserver "${args[@]}"
  wait_for kube-apiserver ready apiserver_ready
}

# Stops only the API server (etcd and the controller manager keep running), as an
# outage or an upgrade would; restart-apiserver brings it back unchanged.
cmd_stop_apiserver() {
  stop_one kube-apiserver
  log "kube-apiserver stopped"
}

cmd_restart_apiserver() {
  [[ -f $dir/env && -f $dir/kube-apiserver.args ]] || die "no cluster in $dir"
  # shellcheck disable=SC1091
  source "$dir/env"
  bin=$SLUICE_K8S_BIN
  admin_token=$SLUICE_K8S_ADMIN_TOKEN
  api_port=${SLUICE_K8S_SERVER##*:}
  live_pid kube-apiserver >/dev/null && die "kube-apiserver is already running"
  local args
  mapfile -t args <"$dir/kube-apiserver.args"
  mv -f "$dir/kube-apiserver.log" "$dir/kube-apiserver.log.1" 2>/dev/null || true
  launch kube-apiserver "${args[@]}"
  wait_for kube-apiserver ready apiserver_ready || fail kube-apiserver "restart failed"
  log "kube-apiserver back on https://127.0.0.1:$api_port"
}

start_kcm() {
  local node_controllers="" node_flags=()
  if ((nodes)); then
    node_controllers=,nodelifecycle
    node_flags=(--node-monitor-grace-period="${SLUICE_K8S_NODE_GRACE:-10s}" --node-monitor-period=1s)
  fi
  free_port
  kcm_port=$REPLY
  launch kube-controller-manager \
    --kubeconfig="$dir/admin.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$kcm_port" \
    --cert-dir="$dir/pki/kcm-generated" \
    --controllers="endpointslice,endpointslicemirroring,garbagecollector,namespace,serviceaccount-token,deployment,replicaset$node_controllers" \
    "${node_flags[@]}" \
    --leader-elect=false \
    --use-service-account-credentials=false \
    --service-account-private-key-file="$dir/pki/sa.key" \
    --root-ca-file="$dir/pki/ca.crt" \
    --profiling=false \
    --v="${SLUICE_K8S_VERBOSITY:-1}"
  wait_for kube-controller-manager healthy kcm_healthy
}

sched_healthy() { [[ $(curl -sfk --max-time 2 "https://127.0.0.1:$sched_port/healthz") == ok ]]; }

start_scheduler() {
  free_port
  sched_port=$REPLY
  launch kube-scheduler \
    --kubeconfig="$dir/admin.kubeconfig" \
    --authentication-kubeconfig="$dir/admin.kubeconfig" \
    --authorization-kubeconfig="$dir/admin.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$sched_port" \
    --cert-dir="$dir/pki/scheduler-generated" \
    --leader-elect=false \
    --profiling=false \
    --v="${SLUICE_K8S_VERBOSITY:-1}"
  wait_for kube-scheduler healthy sched_healthy
}

# with_retries FUNC: rerun FUNC (which picks its own ports) after a port clash.
with_retries() {
  local i rc
  for ((i = 0; i < 3; i++)); do
    rc=0
    "$1" || rc=$?
    ((rc == 2)) || return "$rc"
  done
  die "$1: ports kept clashing"
}

cmd_start() {
  need openssl openssl
  need curl curl
  need base64 coreutils
  local c
  for c in "${components[@]}"; do
    if live_pid "$c" >/dev/null; then
      die "$c is already running from $dir (pid $(live_pid "$c")): '$0 stop $dir' first"
    fi
  done
  if [[ -n ${SLUICE_K8S_BIN:-} ]]; then
    bin=$SLUICE_K8S_BIN
  else
    bin=$("$here/build.sh" | tail -n1) || die "build.sh failed"
  fi
  for c in "${components[@]}"; do
    [[ $c == kube-scheduler ]] && ! ((nodes)) && continue
    [[ -x $bin/$c ]] || die "$bin/$c missing (run $here/build.sh)"
  done

  # Every start is a fresh cluster: drop what an earlier start left behind.
  rm -rf "$dir/etcd" "$dir/pki" "$dir"/*.log "$dir"/*.pid "$dir/env" "$dir/admin.kubeconfig" "$dir/tokens.csv"
  mkdir -p "$dir"
  local t0=$SECONDS

  gen_pki
  admin_token=$(openssl rand -hex 32)
  # token,user,uid,"groups"
  echo "$admin_token,admin,admin,\"system:masters\"" >"$dir/tokens.csv"
  chmod 600 "$dir/tokens.csv"

  with_retries start_etcd
  log "etcd ready on 127.0.0.1:$etcd_port"
  with_retries start_apiserver
  write_kubeconfig "https://127.0.0.1:$api_port"
  log "kube-apiserver ready on https://127.0.0.1:$api_port"
  with_retries start_kcm
  log "kube-controller-manager healthy on 127.0.0.1:$kcm_port"
  if ((nodes)); then
    with_retries start_scheduler
    log "kube-scheduler healthy on 127.0.0.1:$sched_port"
  fi

  cat >"$dir/env" <<EOF
export KUBECONFIG='$dir/admin.kubeconfig'
export SLUICE_K8S_DIR='$dir'
export SLUICE_K8S_BIN='$bin'
export SLUICE_K8S_SERVER='https://127.0.0.1:$api_port'
export SLUICE_K8S_CA='$dir/pki/ca.crt'
export SLUICE_K8S_ADMIN_TOKEN='$admin_token'
export SLUICE_K8S_ETCD='http://127.0.0.1:$etcd_port'
export SLUICE_K8S_ETCD_PID=$(<"$dir/etcd.pid")
export SLUICE_K8S_APISERVER_PID=$(<"$dir/kube-apiserver.pid")
export SLUICE_K8S_CONTROLLER_MANAGER_PID=$(<"$dir/kube-controller-manager.pid")
EOF
  if ((nodes)); then
    echo "export SLUICE_K8S_SCHEDULER_PID=$(<"$dir/kube-scheduler.pid")" >>"$dir/env"
  fi
  log "cluster up in $((SECONDS - t0))s: source $dir/env (KUBECONFIG=$dir/admin.kubeconfig)"
}

[[ $# == 2 ]] || usage
dir=$(realpath -m -- "$2")
[[ $dir != / ]] || die "DIR must not be /"
case $1 in
start) cmd_start ;;
stop-apiserver) cmd_stop_apiserver ;;
restart-apiserver) cmd_restart_apiserver ;;
stop)
  [[ -d $dir ]] || exit 0
  stop_all
  ;;
*) usage ;;
esac
