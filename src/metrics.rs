//! Prometheus metrics, named as ingress-nginx names them so existing dashboards and
//! alerts keep working, plus `sluice_*` metrics for the control plane.
//!
//! Owns the process-wide registry and its text exposition (format 0.0.4) on the admin
//! listener's `/metrics`. Written by hand rather than with the `prometheus-client` crate
//! because that crate only speaks OpenMetrics, which renames every counter to
//! `*_total`: `nginx_ingress_controller_requests` must keep its name or every
//! ingress-nginx dashboard breaks.
//!
//! Labels stay bounded: `path` is the Ingress rule's path pattern (never the request
//! path), `host` the rule's host (never the request's Host), `method` one of the
//! standard methods or `OTHER`, `status` the three-digit code. Every series also carries
//! ingress-nginx's constant labels `controller_class`, `controller_namespace` and
//! `controller_pod`, which its Grafana dashboard filters on.
//!
//! The six per-request families are counted per worker thread (`shards`): each thread
//! that records requests owns a shard of series it alone writes (plain loads and stores,
//! no locked read-modify-write, no cache line shared with another worker) and finds a
//! series by one hash of the label values in a thread-local map, with no lock. A scrape
//! sums the shards. The other families change rarely and keep a lock per family.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// Request duration buckets (seconds): Prometheus's defaults, as ingress-nginx uses.
const TIME_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Size buckets (bytes).
const SIZE_BUCKETS: &[f64] = &[
    10.0,
    100.0,
    1000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
    10_000_000.0,
];
/// Table build time buckets (seconds).
const BUILD_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// Atomic f64 (bits in a u64).
#[derive(Debug, Default)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn add(&self, v: f64) {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(cur) + v).to_bits();
            match self
                .0
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// One time series' value.
#[derive(Debug)]
enum Value {
    Counter(AtomicF64),
    Gauge(AtomicF64),
    Histogram {
        buckets: &'static [f64],
        counts: Box<[AtomicU64]>,
        sum: AtomicF64,
        count: AtomicU64,
    },
}

impl Value {
    fn observe(&self, v: f64) {
        if let Value::Histogram {
            buckets,
            counts,
            sum,
            count,
        } = self
        {
            if let Some(i) = buckets.iter().position(|b| v <= *b) {
                counts[i].fetch_add(1, Ordering::Relaxed);
            }
            sum.add(v);
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

/// Label values and the series' value.
type Entry = (Box<[Box<str>]>, Arc<Value>);
type Series = Vec<Entry>;

/// A metric family: name, help, label names and its series.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    /// Keyed by a hash of the label values; collisions share the bucket.
    series: RwLock<HashMap<u64, Series>>,
}

fn hash_values(values: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Family {
    fn new(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &'static [&'static str],
    ) -> Family {
        Family {
            name,
            help,
            kind,
            labels,
            series: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, values: &[&str]) -> Arc<Value> {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let key = hash_values(values);
        let same = |(l, _): &&Entry| {
            l.len() == values.len() && l.iter().zip(values).all(|(a, b)| &**a == *b)
        };
        if let Some(v) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .and_then(|s| s.iter().find(same))
        {
            return v.1.clone();
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        let bucket = map.entry(key).or_default();
        if let Some(v) = bucket.iter().find(same) {
            return v.1.clone();
        }
        let value = Arc::new(match self.kind {
            Kind::Counter => Value::Counter(AtomicF64::default()),
            Kind::Gauge => Value::Gauge(AtomicF64::default()),
            Kind::Histogram(b) => Value::Histogram {
                buckets: b,
                counts: (0..b.len()).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicF64::default(),
                count: AtomicU64::new(0),
            },
        });
        bucket.push((values.iter().map(|v| (*v).into()).collect(), value.clone()));
        value
    }

    fn inc(&self, values: &[&str], by: f64) {
        if let Value::Counter(c) = &*self.get(values) {
            c.add(by);
        }
    }

    fn set(&self, values: &[&str], v: f64) {
        if let Value::Gauge(g) = &*self.get(values) {
            g.set(v);
        }
    }

    fn observe(&self, values: &[&str], v: f64) {
        self.get(values).observe(v);
    }

    fn clear(&self) {
        self.series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn encode(&self, constant: &str, out: &mut String) {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram(_) => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
        let mut all: Vec<&Entry> = map.values().flatten().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for (values, value) in all {
            let labels = label_text(constant, self.labels, values);
            match &**value {
                Value::Counter(c) | Value::Gauge(c) => {
                    let _ = writeln!(out, "{}{{{labels}}} {}", self.name, num(c.get()));
                }
                Value::Histogram {
                    buckets,
                    counts,
                    sum,
                    count,
                } => {
                    let counts: Vec<u64> =
                        counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
                    let n = count.load(Ordering::Relaxed);
                    encode_histogram(out, self.name, &labels, buckets, &counts, sum.get(), n);
                }
            }
        }
    }
}

/// The label part of a series: the constant labels, then `names` = `values`.
fn label_text(constant: &str, names: &[&str], values: &[Box<str>]) -> String {
    let mut labels = String::from(constant);
    for (n, v) in names.iter().zip(values.iter()) {
        if !labels.is_empty() {
            labels.push(',');
        }
        let _ = write!(labels, "{n}=\"{}\"", escape(v));
    }
    labels
}

/// One histogram series: non-cumulative bucket `counts` (one per bucket bound), sum, count.
fn encode_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    buckets: &[f64],
    counts: &[u64],
    sum: f64,
    n: u64,
) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (b, c) in buckets.iter().zip(counts.iter()) {
        cumulative += c;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}",
            num(*b)
        );
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {n}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", num(sum));
    let _ = writeln!(out, "{name}_count{{{labels}}} {n}");
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Escapes a label value for the text format.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

const REQ_LABELS: &[&str] = &[
    "host",
    "ingress",
    "method",
    "namespace",
    "path",
    "service",
    "status",
    "canary",
];

/// What the proxy reports about one finished request.
pub struct RequestRecord<'a> {
    pub host: &'a str,
    pub ingress: &'a str,
    pub namespace: &'a str,
    pub path: &'a str,
    pub service: &'a str,
    pub method: &'a str,
    pub status: u16,
    pub canary: &'a str,
    pub duration_secs: f64,
    /// Time the upstream took, when one answered.
    pub upstream_secs: Option<f64>,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// Every metric sluice exposes.
pub struct Metrics {
    constant: OnceLock<String>,
    /// The per-request families, one shard per recording thread.
    shards: shards::Shards,
    ssl_expire: Family,
    reload_ok: Family,
    reload_time: Family,
    leader: Family,
    generation: Family,
    build_seconds: Family,
    objects: Family,
    warnings: Family,
    upstream_connections: Family,
    access_log_dropped: Family,
}

impl Metrics {
    fn new() -> Metrics {
        use Kind::*;
        Metrics {
            constant: OnceLock::new(),
            shards: shards::Shards::default(),
            ssl_expire: Family::new("nginx_ingress_controller_ssl_expire_time_seconds", "Number of seconds since 1970 to the SSL Certificate expire", Gauge, &["host", "namespace", "secret_name"]),
            reload_ok: Family::new("nginx_ingress_controller_config_last_reload_successful", "Whether the last configuration reload attempt was successful (sluice: table publication)", Gauge, &[]),
            reload_time: Family::new("nginx_ingress_controller_config_last_reload_successful_timestamp_seconds", "Timestamp of the last successful configuration reload (sluice: table publication)", Gauge, &[]),
            leader: Family::new("nginx_ingress_controller_leader_election_status", "Gauge reporting status of the leader election, 0 indicates follower, 1 indicates leader", Gauge, &["name"]),
            generation: Family::new("sluice_table_generation", "Generation of the routing table being served", Gauge, &[]),
            build_seconds: Family::new("sluice_table_build_seconds", "Time to translate the objects into a routing table", Histogram(BUILD_BUCKETS), &[]),
            objects: Family::new("sluice_objects", "Objects in the last translated snapshot, by kind", Gauge, &["kind"]),
            warnings: Family::new("sluice_warnings", "Warnings of the current routing table, by reason", Gauge, &["reason"]),
            upstream_connections: Family::new("sluice_upstream_connections", "Upstream connections used for requests, by whether they came from the keep-alive pool", Counter, &["reused"]),
            access_log_dropped: Family::new("sluice_access_log_dropped_lines", "Access-log lines dropped because stdout could not keep up", Counter, &[]),
        }
    }

    /// The families other than the per-request ones, in exposition order.
    fn families(&self) -> [&Family; 10] {
        [
            &self.ssl_expire,
            &self.reload_ok,
            &self.reload_time,
            &self.leader,
            &self.generation,
            &self.build_seconds,
            &self.objects,
            &self.warnings,
            &self.upstream_connections,
            &self.access_log_dropped,
        ]
    }

    /// Sets ingress-nginx's constant labels (once, at start).
    pub fn set_controller(&self, class: &str, namespace: &str, pod: &str) {
        let _ = self.constant.set(format!(
            "controller_class=\"{}\",controller_namespace=\"{}\",controller_pod=\"{}\"",
            escape(class),
            escape(namespace),
            escape(pod)
        ));
    }

    pub fn record_request(&self, r: &RequestRecord<'_>) {
        let status = status_label(r.status);
        let labels = [
            r.host,
            r.ingress,
            method_label(r.method),
            r.namespace,
            r.path,
            r.service,
            status,
            r.canary,
        ];
        self.shards.record(&labels, r);
    }

    /// A table was published.
    pub fn table_published(&self, generation: u64, build_secs: f64, unix_time: f64) {
        self.reload_ok.set(&[], 1.0);
        self.reload_time.set(&[], unix_time);
        self.generation.set(&[], generation as f64);
        self.build_seconds.observe(&[], build_secs);
    }

    /// Replaces the object counts.
    pub fn set_objects(&self, counts: &[(&str, usize)]) {
        for (kind, n) in counts {
            self.objects.set(&[kind], *n as f64);
        }
    }

    /// Replaces the warnings-by-reason gauges.
    pub fn set_warnings<'a>(&self, reasons: impl Iterator<Item = &'a str>) {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for r in reasons {
            *counts.entry(r).or_default() += 1;
        }
        self.warnings.clear();
        for (r, n) in counts {
            self.warnings.set(&[r], n as f64);
        }
    }

    /// Replaces the certificate expiry gauges: (host, namespace, secret, notAfter).
    pub fn set_cert_expiry(&self, certs: &[(String, String, String, i64)]) {
        self.ssl_expire.clear();
        for (host, ns, secret, not_after) in certs {
            self.ssl_expire.set(&[host, ns, secret], *not_after as f64);
        }
    }

    pub fn set_leader(&self, election: &str, leading: bool) {
        self.leader
            .set(&[election], if leading { 1.0 } else { 0.0 });
    }

    pub fn upstream_connection(&self, reused: bool) {
        self.upstream_connections
            .inc(&[if reused { "true" } else { "false" }], 1.0);
    }

    /// Access-log lines were dropped (stdout too slow or failing).
    pub fn access_log_dropped(&self, lines: u64) {
        self.access_log_dropped.inc(&[], lines as f64);
    }

    /// The text exposition (content type `text/plain; version=0.0.4`).
    pub fn encode(&self) -> String {
        let constant = self.constant.get().map_or("", String::as_str);
        let mut out = String::with_capacity(16 * 1024);
        self.shards.encode(constant, &mut out);
        for f in self.families() {
            f.encode(constant, &mut out);
        }
        out
    }
}

fn method_label(m: &str) -> &str {
    match m {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "CONNECT" | "TRACE" => m,
        _ => "OTHER",
    }
}

fn status_label(s: u16) -> &'static str {
    // One string per possible code, made once: no allocation per request.
    static CODES: OnceLock<Vec<String>> = OnceLock::new();
    let codes = CODES.get_or_init(|| (0..600).map(|c| c.to_string()).collect());
    codes.get(usize::from(s)).map_or("other", String::as_str)
}

mod shards;

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    GLOBAL.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_counts_and_escapes() {
        let m = Metrics::new();
        m.set_controller("c", "ns", "pod\"1");
        let rec = RequestRecord {
            host: "a.example",
            ingress: "web",
            namespace: "default",
            path: "/",
            service: "svc",
            method: "BREW",
            status: 200,
            canary: "",
            duration_secs: 0.02,
            upstream_secs: Some(0.01),
            request_bytes: 100,
            response_bytes: 2000,
        };
        m.record_request(&rec);
        m.record_request(&rec);
        let out = m.encode();
        assert!(out.contains("# TYPE nginx_ingress_controller_requests counter"));
        assert!(out.contains("nginx_ingress_controller_requests{controller_class=\"c\",controller_namespace=\"ns\",controller_pod=\"pod\\\"1\",host=\"a.example\",ingress=\"web\",method=\"OTHER\",namespace=\"default\",path=\"/\",service=\"svc\",status=\"200\",canary=\"\"} 2"), "{out}");
        assert!(out.contains("le=\"0.025\"} 2"), "{out}");
        assert!(out.contains("le=\"0.01\"} 0"), "{out}");
    }
}
