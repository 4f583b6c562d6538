#!/usr/bin/env python3
"""Helper for e2e/bench/apply_latency.sh (Python 3 standard library only).

Talks to the kube-apiserver directly over HTTPS (admin token, cluster CA) so that no
kubectl process start sits inside a measurement, and polls sluice over plain HTTP.

Subcommands (the API server is taken from $SLUICE_K8S_SERVER, $SLUICE_K8S_CA and
$SLUICE_K8S_ADMIN_TOKEN, i.e. `source DIR/env` first):

  port                                   print a free 127.0.0.1 port below the ephemeral range
  version                                print the API server's gitVersion
  create --first A --last B              create Ingresses hA..hB (-> Service old), in parallel
  measure --size N --samples S ...       wait for sluice, take the samples, write JSON
  report FILE...                         print the final table from measure's JSON files

See e2e/bench/README.md ("apply_latency.sh") for what is measured.
"""

import argparse
import http.client
import json
import os
import random
import re
import socket
import ssl
import statistics
import sys
import threading
import time
import urllib.parse

NS = "bench"
ING_PATH = f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses"
DOMAIN = "bench.example"
SAMPLE_LABEL = "bench.sluice.dev/sample"
LIVE_TIMEOUT = 30.0  # seconds a change may take to go live before the run fails
POLL_SLEEP = 0.002  # seconds between two polls through sluice


def die(msg):
    print(f"apply_latency.py: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def log(msg):
    print(f"apply_latency.py: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ API server client


class Api:
    """One keep-alive HTTPS connection to the API server."""

    def __init__(self, timeout=60.0):
        try:
            server = os.environ["SLUICE_K8S_SERVER"]
            ca = os.environ["SLUICE_K8S_CA"]
            self.token = os.environ["SLUICE_K8S_ADMIN_TOKEN"]
        except KeyError as e:
            die(f"${e.args[0]} is not set (source the cluster's env file)")
        u = urllib.parse.urlsplit(server)
        self.host, self.port = u.hostname, u.port or 443
        self.ctx = ssl.create_default_context(cafile=ca)
        self.timeout = timeout
        self.conn = None

    def _connect(self):
        self.conn = http.client.HTTPSConnection(
            self.host, self.port, context=self.ctx, timeout=self.timeout
        )
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, method, path, body=None, ctype="application/json", ok=(200, 201)):
        """Sends one request; returns (status, parsed JSON). Retries once on a dropped
        keep-alive connection (never inside a measurement: the connection is warm)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = ctype
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        try:
            obj = json.loads(raw) if raw else None
        except ValueError:
            obj = raw.decode(errors="replace")
        if ok and resp.status not in ok:
            die(f"{method} {path}: HTTP {resp.status}: {str(obj)[:500]}")
        return resp.status, obj


def ingress(name, host, service, sample=None):
    meta = {"name": name, "namespace": NS}
    if sample:
        meta["labels"] = {SAMPLE_LABEL: sample}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta,
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": service, "port": {"number": 80}}
                                },
                            }
                        ]
                    },
                }
            ],
        },
    }


def switch_patch(service):
    return [
        {
            "op": "replace",
            "path": "/spec/rules/0/http/paths/0/backend/service/name",
            "value": service,
        }
    ]


# ------------------------------------------------------------------ sluice client


class Prober:
    """GETs through sluice with a Host header, on a keep-alive connection."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, host):
        """Returns (status, x-backend or None); (0, None) when sluice does not answer."""
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                    self.conn.connect()
                    self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.conn.request("GET", "/", headers={"Host": host})
                resp = self.conn.getresponse()
                resp.read()
                if resp.will_close:
                    self.conn.close()
                    self.conn = None
                return resp.status, resp.getheader("x-backend")
            except (http.client.HTTPException, OSError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt:
                    return 0, None
        return 0, None

    def wait(self, host, backend, timeout, what):
        """Polls until host answers 200 with x-backend == backend; returns the
        perf_counter of the first such answer. Fails the run after `timeout`."""
        deadline = time.perf_counter() + timeout
        last = None
        while True:
            status, got = self.get(host)
            now = time.perf_counter()
            if status == 200 and got == backend:
                return now
            last = (status, got)
            if now > deadline:
                die(
                    f"{what}: {host} not live on backend {backend!r} within {timeout:.0f} s "
                    f"(last answer: HTTP {last[0]}, x-backend {last[1]!r})"
                )
            time.sleep(POLL_SLEEP)


# ------------------------------------------------------------------ watch (API-side timing)


class Watcher(threading.Thread):
    """Watches the bench namespace's Ingresses and records when each (name,
    resourceVersion) event arrives: the API server's share of apply-to-live is
    t_event - t0, the rest is sluice (debounce, build, publish) plus poll granularity."""

    def __init__(self, rv):
        super().__init__(daemon=True)
        self.rv = rv
        self.seen = {}
        self.cond = threading.Condition()
        self.stop = False
        self.error = None

    def run(self):
        while not self.stop:
            try:
                self._watch()
            except Exception as e:  # reconnect from the last resourceVersion seen
                self.error = repr(e)
                time.sleep(0.2)

    def _watch(self):
        api = Api(timeout=None)
        api._connect()
        q = urllib.parse.urlencode(
            {"watch": "1", "resourceVersion": self.rv, "timeoutSeconds": "3600"}
        )
        api.conn.request(
            "GET",
            f"{ING_PATH}?{q}",
            headers={"Authorization": f"Bearer {api.token}", "Accept": "application/json"},
        )
        resp = api.conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"watch: HTTP {resp.status}")
        while not self.stop:
            line = resp.readline()
            if not line:
                return
            now = time.perf_counter()
            ev = json.loads(line)
            if ev.get("type") == "ERROR":
                raise RuntimeError(f"watch error: {ev}")
            meta = ev["object"]["metadata"]
            self.rv = meta["resourceVersion"]
            with self.cond:
                self.seen[(meta["name"], meta["resourceVersion"])] = now
                self.cond.notify_all()

    def arrival(self, name, rv, timeout=5.0):
        with self.cond:
            self.cond.wait_for(lambda: (name, rv) in self.seen, timeout)
            return self.seen.get((name, rv))


# ------------------------------------------------------------------ /proc helpers


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def machine_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v), idle


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


PUBLISH_RE = re.compile(r"published routing table")
KV_RE = re.compile(r"(\w+)=(\S+)")


def publishes(path, start=0, end=None):
    """The `published routing table` lines of sluice's log in [start, end) bytes."""
    out = []
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read() if end is None else f.read(max(0, end - start))
    for line in data.decode(errors="replace").splitlines():
        if not PUBLISH_RE.search(line):
            continue
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        kv = dict(KV_RE.findall(line))
        try:
            out.append(
                {
                    "generation": int(kv["generation"]),
                    "ingresses": int(kv["ingresses"]),
                    "build_ms": float(kv["build_ms"]),
                }
            )
        except (KeyError, ValueError):
            pass
    return out


def pct(values, p):
    """Nearest-rank percentile (p99 of 50 samples is the largest one)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(1, -(-len(s) * p // 100))  # ceil
    return s[int(k) - 1]


def summary(values):
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p99": pct(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


# ------------------------------------------------------------------ subcommands


def cmd_port(_args):
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo = int(f.read().split()[0])
    except OSError:
        lo = 32768
    rng = random.SystemRandom()
    for _ in range(200):
        p = rng.randrange(20000, max(20001, lo))
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p)) == 0:
                continue  # something accepts there
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        print(p)
        return
    die("no free port found on 127.0.0.1")


def cmd_version(_args):
    _, v = Api().request("GET", "/version")
    print(v["gitVersion"])


def cmd_create(args):
    first, last = args.first, args.last
    todo = list(range(first, last + 1))
    lock = threading.Lock()
    errors = []

    def worker():
        api = Api()
        while True:
            with lock:
                if not todo or errors:
                    return
                i = todo.pop()
            try:
                status, obj = api.request(
                    "POST",
                    ING_PATH,
                    ingress(f"h{i}", f"h{i}.{DOMAIN}", "old"),
                    ok=None,
                )
                if status not in (201, 409):  # 409: left by an interrupted earlier call
                    raise RuntimeError(f"POST h{i}: HTTP {status}: {str(obj)[:300]}")
            except Exception as e:
                with lock:
                    errors.append(str(e))
                return

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        die(errors[0])
    dt = time.perf_counter() - t0
    n = last - first + 1
    log(f"created Ingresses h{first}..h{last} ({n}) in {dt:.1f} s ({n / dt:.0f}/s)")
    print(f"{dt:.3f}")


def cmd_measure(args):
    n, samples = args.size, args.samples
    prober = Prober(args.port)
    api = Api()
    res = {"size": n, "samples": samples, "create_s": args.create_s}

    # 1. sluice up: /readyz, then the last host live through the proxy.
    deadline = time.time() + args.start_timeout
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", args.admin_port, timeout=2)
            c.request("GET", "/readyz")
            st = c.getresponse().status
            c.close()
        except OSError:
            st = 0
        if st == 200:
            break
        if not os.path.exists(f"/proc/{args.pid}"):
            die(f"sluice (pid {args.pid}) exited before /readyz; see {args.log}")
        if time.time() > deadline:
            die(f"sluice /readyz not 200 within {args.start_timeout} s; see {args.log}")
        time.sleep(0.01)
    res["ready_s"] = time.time() - args.started_at
    prober.wait(f"h{n}.{DOMAIN}", "old", args.start_timeout, "initial table")
    res["live_s"] = time.time() - args.started_at
    pubs = publishes(args.log)
    first = next((p for p in pubs if p["ingresses"] >= n), None)
    if first is None:
        die(f"no published table with {n} ingresses in {args.log}")
    res["first_table"] = first
    res["rss_ready_kib"] = rss_kib(args.pid)
    log(
        f"N={n}: sluice ready {res['ready_s']:.2f} s, h{n} live {res['live_s']:.2f} s after "
        f"start; table generation {first['generation']} with {first['ingresses']} ingresses "
        f"built in {first['build_ms']:.1f} ms; RSS {res['rss_ready_kib'] / 1024:.1f} MiB"
    )

    # 2. the samples: alternate new Ingress / switch of an existing one.
    _, lst = api.request("GET", f"{ING_PATH}?limit=1")
    watcher = Watcher(lst["metadata"]["resourceVersion"])
    watcher.start()
    rng = random.Random(n)
    change_hosts = rng.sample(range(1, n), samples)  # h<N> is the liveness probe: keep it
    tag = f"{n}x{int(time.time())}"  # new names never collide with an earlier size's
    pids = {
        "sluice": args.pid,
        "kube-apiserver": int(os.environ.get("SLUICE_K8S_APISERVER_PID", "0")),
        "etcd": int(os.environ.get("SLUICE_K8S_ETCD_PID", "0")),
        "kube-controller-manager": int(os.environ.get("SLUICE_K8S_CONTROLLER_MANAGER_PID", "0")),
        "this helper": os.getpid(),
    }
    time.sleep(1.0)  # let the start-up settle (watch connected, last rebuilds done)
    log_start = os.path.getsize(args.log)
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items() if p}
    m0 = machine_cpu()
    w0 = time.perf_counter()
    kinds = {"new": [], "change": []}
    created = []
    api.request("GET", "/version")  # warm the keep-alive connection
    for k in range(samples):
        for kind in ("new", "change"):
            if kind == "new":
                name = f"n{k}-{tag}"
                host = f"{name}.{DOMAIN}"
                st, got = prober.get(host)
                if st == 200:
                    die(f"{host} answers 200 before its Ingress exists")
                body = ingress(name, host, "new", sample="new")
                t0 = time.perf_counter()
                _, obj = api.request("POST", ING_PATH, body)
                created.append(name)
            else:
                name = f"h{change_hosts[k]}"
                host = f"{name}.{DOMAIN}"
                st, got = prober.get(host)
                if (st, got) != (200, "old"):
                    die(f"{host} answers HTTP {st} x-backend {got!r} before the change")
                t0 = time.perf_counter()
                _, obj = api.request(
                    "PATCH",
                    f"{ING_PATH}/{name}",
                    switch_patch("new"),
                    ctype="application/json-patch+json",
                )
            t_resp = time.perf_counter()
            t1 = prober.wait(host, "new", LIVE_TIMEOUT, f"{kind} sample {k}")
            t_ev = watcher.arrival(name, obj["metadata"]["resourceVersion"])
            kinds[kind].append(
                {
                    "name": name,
                    "total_ms": (t1 - t0) * 1e3,
                    "api_resp_ms": (t_resp - t0) * 1e3,
                    "watch_event_ms": None if t_ev is None else (t_ev - t0) * 1e3,
                    "after_event_ms": None if t_ev is None else (t1 - t_ev) * 1e3,
                }
            )
            time.sleep(args.pause)
    w1 = time.perf_counter()
    m1 = machine_cpu()
    cpu1 = {k: cpu_seconds(p) for k, p in pids.items() if p}
    log_end = os.path.getsize(args.log)
    wall = w1 - w0
    res["window_s"] = wall
    res["loadavg"] = loadavg()
    res["machine_busy_pct"] = 100.0 * (1 - (m1[1] - m0[1]) / max(1, m1[0] - m0[0]))
    res["cpu_pct"] = {
        k: 100.0 * (cpu1[k] - cpu0[k]) / wall
        for k in cpu0
        if cpu0[k] is not None and cpu1.get(k) is not None
    }
    rebuilds = publishes(args.log, log_start, log_end)
    res["rebuilds"] = {
        "count": len(rebuilds),
        "build_ms": summary([p["build_ms"] for p in rebuilds]),
        "ingresses_last": rebuilds[-1]["ingresses"] if rebuilds else None,
    }
    res["rss_after_kib"] = rss_kib(args.pid)
    res["watch_error"] = watcher.error
    for kind, rows in kinds.items():
        res[kind] = {
            "total_ms": summary([r["total_ms"] for r in rows]),
            "api_resp_ms": summary([r["api_resp_ms"] for r in rows]),
            "watch_event_ms": summary(
                [r["watch_event_ms"] for r in rows if r["watch_event_ms"] is not None]
            ),
            "after_event_ms": summary(
                [r["after_event_ms"] for r in rows if r["after_event_ms"] is not None]
            ),
            "raw": rows,
        }
        t = res[kind]["total_ms"]
        log(
            f"N={n} {kind}: p50 {t['p50']:.1f} ms, p99 {t['p99']:.1f} ms, "
            f"max {t['max']:.1f} ms ({t['n']} samples)"
        )
    watcher.stop = True

    # 3. back to N Ingresses, all on Service old (the next size adds to them).
    for j in change_hosts:
        api.request(
            "PATCH",
            f"{ING_PATH}/h{j}",
            switch_patch("old"),
            ctype="application/json-patch+json",
        )
    sel = urllib.parse.urlencode({"labelSelector": f"{SAMPLE_LABEL}=new"})
    api.request("DELETE", f"{ING_PATH}?{sel}")
    prober.wait(f"h{change_hosts[-1]}.{DOMAIN}", "old", LIVE_TIMEOUT, "revert")

    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


def fmt_trio(s):
    return f"{s['p50']:.1f}/{s['p99']:.1f}/{s['max']:.1f}"


def cmd_report(args):
    rows = []
    for path in args.files:
        with open(path) as f:
            rows.append(json.load(f))
    print(
        f"# apply-to-live latency against a real kube-apiserver ({args.server_version}), "
        f"sluice {args.rev}, {args.date}, nproc={os.cpu_count()}"
    )
    print(
        f"# {rows[0]['samples'] if rows else 0} samples per kind; p99 is nearest-rank "
        f"(with 50 samples it is the slowest one); all times in ms"
    )
    hdr = (
        f"{'ingresses':<10} {'build_ms(first)':>16} {'build_ms(p50 rebuild)':>22} "
        f"{'new p50/p99/max ms':>20} {'change p50/p99/max ms':>22} {'RSS MiB':>8}"
    )
    print(hdr)
    for r in rows:
        print(
            f"{r['size']:<10} {r['first_table']['build_ms']:>16.1f} "
            f"{r['rebuilds']['build_ms']['p50']:>22.1f} "
            f"{fmt_trio(r['new']['total_ms']):>20} {fmt_trio(r['change']['total_ms']):>22} "
            f"{r['rss_after_kib'] / 1024:>8.1f}"
        )
    print()
    print("# where the time goes (p50/p99/max ms): API = t0 -> the Ingress event reaches a")
    print("# watcher of the API server; sluice = that event -> first 200 from the new backend")
    print("# (includes sluice's 20 ms debounce, the table build and up to ~2.5 ms of polling)")
    print(
        f"{'ingresses':<10} {'kind':<7} {'API reply':>18} {'API watch event':>18} "
        f"{'sluice':>18} {'rebuilds':>9} {'build_ms p50/p99/max':>21}"
    )
    for r in rows:
        for kind in ("new", "change"):
            k = r[kind]
            rb = r["rebuilds"]
            print(
                f"{r['size']:<10} {kind:<7} {fmt_trio(k['api_resp_ms']):>18} "
                f"{fmt_trio(k['watch_event_ms']):>18} {fmt_trio(k['after_event_ms']):>18} "
                f"{rb['count'] if kind == 'new' else '':>9} "
                f"{fmt_trio(rb['build_ms']) if kind == 'new' else '':>21}"
            )
    print()
    print("# start-up and load")
    for r in rows:
        cpu = ", ".join(f"{k} {v:.0f}%" for k, v in r["cpu_pct"].items())
        print(
            f"N={r['size']}: created in {r['create_s']:.1f} s; sluice /readyz after "
            f"{r['ready_s']:.2f} s, h{r['size']} live after {r['live_s']:.2f} s; "
            f"VmRSS {r['rss_ready_kib'] / 1024:.1f} MiB at ready, "
            f"{r['rss_after_kib'] / 1024:.1f} MiB after the samples"
        )
        print(
            f"    during the samples ({r['window_s']:.0f} s): machine busy "
            f"{r['machine_busy_pct']:.0f}% of {os.cpu_count()} cores, loadavg {r['loadavg']}; "
            f"CPU (100% = one core): {cpu}"
        )
        if r.get("watch_error"):
            print(f"    note: the timing watch reconnected ({r['watch_error']})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("port")
    sub.add_parser("version")
    c = sub.add_parser("create")
    c.add_argument("--first", type=int, required=True)
    c.add_argument("--last", type=int, required=True)
    c.add_argument("--parallel", type=int, default=4)
    m = sub.add_parser("measure")
    m.add_argument("--size", type=int, required=True)
    m.add_argument("--samples", type=int, default=50)
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--admin-port", type=int, required=True)
    m.add_argument("--pid", type=int, required=True)
    m.add_argument("--log", required=True)
    m.add_argument("--started-at", type=float, required=True)
    m.add_argument("--start-timeout", type=float, default=120)
    m.add_argument("--create-s", type=float, default=float("nan"))
    m.add_argument("--pause", type=float, default=0.3)
    m.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("--server-version", required=True)
    r.add_argument("--rev", required=True)
    r.add_argument("--date", required=True)
    r.add_argument("files", nargs="+")
    args = p.parse_args()
    {
        "port": cmd_port,
        "version": cmd_version,
        "create": cmd_create,
        "measure": cmd_measure,
        "report": cmd_report,
    }[args.cmd](args)


if __name__ == "__main__":
    main()
