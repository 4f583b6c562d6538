//! The per-request families (`nginx_ingress_controller_requests` and the five
//! histograms that share its labels), counted per worker thread and summed at scrape.
//!
//! Each thread that records a request gets its own [`Shard`]; only that thread writes
//! the shard's series, so an update is a relaxed load and store (no locked
//! read-modify-write, no cache line bouncing between workers), and the thread finds a
//! series through a thread-local map keyed by one hash of the label values: no lock and
//! no reference count on the request path. A scrape reads every shard (a mutex per
//! shard, taken by the recording thread only when it creates a series) and adds the
//! series with equal labels. Shards outlive their threads, so no count is lost.
//!
//! Labels are bounded by the caller (route fields, method, status); a series is created
//! once per distinct label set per thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::*;

/// The histogram families, in exposition order after the counter.
const HISTOGRAMS: [(&str, &str, &[f64]); 5] = [
    (
        "nginx_ingress_controller_request_duration_seconds",
        "The request processing time in seconds",
        TIME_BUCKETS,
    ),
    (
        "nginx_ingress_controller_response_duration_seconds",
        "The time spent on receiving the response from the upstream server in seconds",
        TIME_BUCKETS,
    ),
    (
        "nginx_ingress_controller_request_size",
        "The request length (including request line, header, and request body)",
        SIZE_BUCKETS,
    ),
    (
        "nginx_ingress_controller_response_size",
        "The response length (including request line, header, and request body)",
        SIZE_BUCKETS,
    ),
    (
        "nginx_ingress_controller_bytes_sent",
        "The number of bytes sent to a client",
        SIZE_BUCKETS,
    ),
];
const REQUESTS: (&str, &str) = (
    "nginx_ingress_controller_requests",
    "The total number of client requests",
);
/// Index of the response duration histogram: observed only when an upstream answered,
/// so its series is shown only once it has a count (as when it was created on first
/// observation).
const RESPONSE_DURATION: usize = 1;

/// Adds to a counter only its owning thread writes: a plain load and store.
fn bump(a: &AtomicU64, by: u64) {
    a.store(
        a.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

#[derive(Debug)]
struct Hist {
    buckets: &'static [f64],
    /// Non-cumulative: the first bucket whose bound is >= the value.
    counts: Box<[AtomicU64]>,
    /// f64 bits.
    sum: AtomicU64,
    count: AtomicU64,
}

impl Hist {
    fn new(buckets: &'static [f64]) -> Hist {
        Hist {
            buckets,
            counts: buckets.iter().map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Only from the owning thread.
    fn observe(&self, v: f64) {
        if let Some(i) = self.buckets.iter().position(|b| v <= *b) {
            bump(&self.counts[i], 1);
        }
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed)) + v;
        self.sum.store(sum.to_bits(), Ordering::Relaxed);
        bump(&self.count, 1);
    }
}

/// The six values of one label set in one shard.
#[derive(Debug)]
struct Series {
    requests: AtomicU64,
    hists: [Hist; 5],
}

impl Series {
    fn new() -> Series {
        Series {
            requests: AtomicU64::new(0),
            hists: HISTOGRAMS.map(|(_, _, b)| Hist::new(b)),
        }
    }
}

type Labels = Box<[Box<str>]>;

/// One thread's series, readable by the scraper.
#[derive(Debug, Default)]
struct Shard {
    series: Mutex<Vec<(Labels, Arc<Series>)>>,
}

/// The recording thread's index into its shard: hash of the label values -> series.
struct Local {
    owner: usize,
    shard: Arc<Shard>,
    index: HashMap<u64, Vec<(Labels, Arc<Series>)>>,
}

thread_local! {
    /// One entry per `Shards` this thread records into (one in the binary; tests make more).
    static LOCAL: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// The per-request families of one [`Metrics`].
#[derive(Debug)]
pub(super) struct Shards {
    id: usize,
    all: Mutex<Vec<Arc<Shard>>>,
}

impl Default for Shards {
    fn default() -> Shards {
        Shards {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            all: Mutex::new(Vec::new()),
        }
    }
}

impl Shards {
    /// Counts one request under `labels` (the values of `REQ_LABELS`).
    pub(super) fn record(&self, labels: &[&str; 8], r: &RequestRecord<'_>) {
        let key = hash_values(labels);
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            let pos = match local.iter().position(|l| l.owner == self.id) {
                Some(p) => p,
                None => {
                    let shard = Arc::new(Shard::default());
                    self.all
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(shard.clone());
                    local.push(Local {
                        owner: self.id,
                        shard,
                        index: HashMap::new(),
                    });
                    local.len() - 1
                }
            };
            let l = &mut local[pos];
            let same =
                |(v, _): &&(Labels, Arc<Series>)| v.iter().zip(labels).all(|(a, b)| &**a == *b);
            let bucket = l.index.entry(key).or_default();
            let series = match bucket.iter().find(same) {
                Some((_, s)) => s,
                None => {
                    let values: Labels = labels.iter().map(|v| (*v).into()).collect();
                    let s = Arc::new(Series::new());
                    l.shard
                        .series
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((values.clone(), s.clone()));
                    bucket.push((values, s));
                    &bucket.last().expect("just pushed").1
                }
            };
            bump(&series.requests, 1);
            let h = &series.hists;
            h[0].observe(r.duration_secs);
            if let Some(u) = r.upstream_secs {
                h[RESPONSE_DURATION].observe(u);
            }
            h[2].observe(r.request_bytes as f64);
            h[3].observe(r.response_bytes as f64);
            h[4].observe(r.response_bytes as f64);
        });
    }

    /// The six families, each series summed over the shards, sorted by label values.
    pub(super) fn encode(&self, constant: &str, out: &mut String) {
        struct Sum {
            requests: u64,
            hists: Vec<(Vec<u64>, f64, u64)>,
        }
        let mut sums: BTreeMap<Labels, Sum> = BTreeMap::new();
        let shards = self.all.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for shard in shards {
            let series = shard.series.lock().unwrap_or_else(|e| e.into_inner());
            for (labels, s) in series.iter() {
                let sum = sums.entry(labels.clone()).or_insert_with(|| Sum {
                    requests: 0,
                    hists: HISTOGRAMS
                        .iter()
                        .map(|(_, _, b)| (vec![0; b.len()], 0.0, 0))
                        .collect(),
                });
                sum.requests += s.requests.load(Ordering::Relaxed);
                for (acc, h) in sum.hists.iter_mut().zip(s.hists.iter()) {
                    for (a, c) in acc.0.iter_mut().zip(h.counts.iter()) {
                        *a += c.load(Ordering::Relaxed);
                    }
                    acc.1 += f64::from_bits(h.sum.load(Ordering::Relaxed));
                    acc.2 += h.count.load(Ordering::Relaxed);
                }
            }
        }
        let labels: Vec<(String, &Sum)> = sums
            .iter()
            .map(|(v, s)| (label_text(constant, REQ_LABELS, v), s))
            .collect();
        let (name, help) = REQUESTS;
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (l, s) in &labels {
            let _ = writeln!(out, "{name}{{{l}}} {}", s.requests);
        }
        for (i, (name, help, buckets)) in HISTOGRAMS.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (l, s) in &labels {
                let (counts, sum, n) = &s.hists[i];
                if i == RESPONSE_DURATION && *n == 0 {
                    continue;
                }
                encode_histogram(out, name, l, buckets, counts, *sum, *n);
            }
        }
    }
}
