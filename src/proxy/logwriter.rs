//! The access-log writer: each worker thread formats its lines into its own buffer and a
//! background thread writes the buffers to stdout in batches (one `write(2)` per buffer
//! per batch instead of one per line), so a worker never takes a lock another worker
//! holds and never waits on stdout.
//!
//! - Order: a thread's lines leave in the order it wrote them (a buffer is taken whole
//!   and written under one flush lock); lines of different workers interleave only at
//!   line boundaries, as nginx workers' buffered logs do.
//! - Bounded: a worker's unwritten lines are capped at [`MAX_PENDING`] bytes. A stdout
//!   slower than the traffic loses lines beyond that rather than stalling requests; they
//!   are counted (`sluice_access_log_dropped_lines`) and reported on stderr.
//! - Latency: the writer wakes when a line arrives at an idle log and writes what it
//!   has [`BATCH`] later; an idle proxy costs no wake-ups.
//! - Shutdown: [`flush`] writes everything pending; the drain and the SIGINT exit call it
//!   before the process exits.
//!
//! Hand-written rather than `tracing-appender`'s non-blocking writer: that one funnels
//! every line through one channel shared by all workers and writes line by line.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Bytes of unwritten lines a worker may hold before new lines are dropped.
pub const MAX_PENDING: usize = 4 << 20;
/// How long the writer gathers lines after the first one of a batch arrives.
const BATCH: Duration = Duration::from_millis(10);

/// One worker's unwritten lines.
#[derive(Default)]
struct Buffer {
    lines: Mutex<Vec<u8>>,
}

struct Writer {
    buffers: Mutex<Vec<Arc<Buffer>>>,
    /// Held for a whole flush so two flushes (writer thread, shutdown) never reorder.
    flushing: Mutex<()>,
    /// A line arrived since the writer last looked.
    pending: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
    dropped: AtomicU64,
}

static WRITER: Writer = Writer {
    buffers: Mutex::new(Vec::new()),
    flushing: Mutex::new(()),
    pending: AtomicBool::new(false),
    thread: OnceLock::new(),
    dropped: AtomicU64::new(0),
};

thread_local! {
    static MINE: Arc<Buffer> = {
        let b = Arc::new(Buffer::default());
        WRITER.buffers.lock().unwrap_or_else(|e| e.into_inner()).push(b.clone());
        b
    };
    /// Where a line is rendered before it is appended (reused: no allocation per line).
    static SCRATCH: RefCell<String> = RefCell::new(String::with_capacity(512));
}

/// Renders one line with `render` (without its newline) and queues it for stdout.
pub fn write_line(render: impl FnOnce(&mut String)) {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        s.clear();
        render(&mut s);
        s.push('\n');
        MINE.with(|b| {
            let mut lines = b.lines.lock().unwrap_or_else(|e| e.into_inner());
            if lines.len() + s.len() > MAX_PENDING {
                WRITER.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                lines.extend_from_slice(s.as_bytes());
            }
        });
    });
    if !WRITER.pending.load(Ordering::Relaxed) && !WRITER.pending.swap(true, Ordering::AcqRel) {
        writer_thread().unpark();
    }
}

fn writer_thread() -> &'static std::thread::Thread {
    WRITER.thread.get_or_init(|| {
        std::thread::Builder::new()
            .name("sluice-accesslog".into())
            .spawn(|| loop {
                while !WRITER.pending.load(Ordering::Acquire) {
                    std::thread::park();
                }
                std::thread::sleep(BATCH);
                WRITER.pending.store(false, Ordering::Release);
                flush();
            })
            .expect("spawning the access-log writer")
            .thread()
            .clone()
    })
}

/// Lines dropped so far because stdout could not keep up (or failed).
pub fn dropped() -> u64 {
    WRITER.dropped.load(Ordering::Relaxed)
}

/// Writes every pending line to stdout now (blocking). Called by the writer thread and
/// before the process exits.
pub fn flush() {
    let _order = WRITER.flushing.lock().unwrap_or_else(|e| e.into_inner());
    let buffers = WRITER
        .buffers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let before = dropped();
    let mut out = std::io::stdout().lock();
    let mut spare = Vec::new();
    for b in buffers {
        // Swap under the worker's lock (a pointer swap), write outside it.
        let mut batch = {
            let mut lines = b.lines.lock().unwrap_or_else(|e| e.into_inner());
            if lines.is_empty() {
                continue;
            }
            std::mem::replace(&mut *lines, std::mem::take(&mut spare))
        };
        if out.write_all(&batch).is_err() {
            let lost = batch.iter().filter(|c| **c == b'\n').count();
            WRITER.dropped.fetch_add(lost as u64, Ordering::Relaxed);
        }
        batch.clear();
        spare = batch;
    }
    let _ = out.flush();
    let now = dropped();
    if now > before {
        crate::metrics::global().access_log_dropped(now - before);
        tracing::warn!(
            dropped = now - before,
            total = now,
            "access log: stdout too slow or failing, lines dropped"
        );
    }
}
