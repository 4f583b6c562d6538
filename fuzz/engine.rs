//! A small mutational fuzzer on stable Rust (see fuzz/README.md for why not cargo-fuzz,
//! cargo-afl or bolero's coverage engines): every seed in `fuzz/corpus/<target>/` and
//! every crash kept in `fuzz/regressions/<target>/` is run first, then random
//! mutations of them (bit flips, byte edits, deletions, duplications, splices, and
//! tokens from the target's dictionary) for `SLUICE_FUZZ_SECONDS` (default 2; CI runs
//! 30). Without coverage feedback the pool grows only by chance: a bounded number of
//! mutants are kept so that mutations stack.
//!
//! A panic fails the test with the seed, the input (escaped) and a file written under
//! the test's scratch directory; copy that file into `fuzz/regressions/<target>/` and
//! it is a regression test forever. `SLUICE_FUZZ_SEED` replays one run.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const POOL_MAX: usize = 512;
const LEN_MAX: usize = 16 * 1024;

/// Seconds of random mutation per target.
fn budget() -> Duration {
    let secs = std::env::var("SLUICE_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs.clamp(0.0, 3600.0))
}

fn read_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    out
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Runs `target` on the corpus and regressions, then on mutants for the budget.
pub fn fuzz(name: &str, dict: &[&[u8]], target: fn(&[u8])) {
    let corpus = read_dir(&root().join("corpus").join(name));
    let regressions = read_dir(&root().join("regressions").join(name));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{name}/ has no seeds: every target needs at least one"
    );
    for (path, data) in regressions.iter().chain(&corpus) {
        if let Err(msg) = run_one(target, data) {
            panic!("{name}: {} panics: {msg}", path.display());
        }
    }
    let seed = std::env::var("SLUICE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut pool: Vec<Vec<u8>> = corpus
        .into_iter()
        .chain(regressions)
        .map(|(_, d)| d)
        .collect();
    let seeds = pool.len();
    let (start, budget) = (Instant::now(), budget());
    let mut execs = 0u64;
    // Quiet while mutants panic on purpose inside catch_unwind; restored before failing.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    while start.elapsed() < budget {
        let base = &pool[rng.usize(..pool.len())];
        let other = &pool[rng.usize(..pool.len())];
        let input = mutate(&mut rng, base, other, dict);
        execs += 1;
        if let Err(msg) = run_one(target, &input) {
            failure = Some((input, msg));
            break;
        }
        // Keep some mutants so that mutations compound (bounded).
        if rng.u8(..16) == 0 {
            if pool.len() < POOL_MAX {
                pool.push(input);
            } else {
                let i = rng.usize(seeds..pool.len());
                pool[i] = input;
            }
        }
    }
    std::panic::set_hook(hook);
    if let Some((input, msg)) = failure {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("fuzz-crashes")
            .join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("crash-{seed:016x}-{execs}"));
        std::fs::write(&file, &input).unwrap();
        panic!(
            "{name}: panic after {execs} runs (SLUICE_FUZZ_SEED={seed}): {msg}\ninput {:?}\nsaved to {} (copy it into fuzz/regressions/{name}/)",
            String::from_utf8_lossy(&input),
            file.display()
        );
    }
    eprintln!(
        "fuzz {name}: {execs} mutants in {:.1}s ({seeds} seeds, pool {}, SLUICE_FUZZ_SEED={seed})",
        start.elapsed().as_secs_f64(),
        pool.len()
    );
}

fn run_one(target: fn(&[u8]), data: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| target(data))).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into())
    })
}

fn mutate(rng: &mut fastrand::Rng, base: &[u8], other: &[u8], dict: &[&[u8]]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.usize(..6) {
        let len = v.len();
        match rng.u8(..10) {
            0 if len > 0 => {
                let i = rng.usize(..len);
                v[i] ^= 1 << rng.u8(..8);
            }
            1 if len > 0 => {
                let i = rng.usize(..len);
                v[i] = rng.u8(..);
            }
            2 => {
                let i = rng.usize(..=len);
                v.insert(i, rng.u8(..));
            }
            3 if len > 0 => {
                let i = rng.usize(..len);
                let n = rng.usize(1..=(len - i).min(16));
                v.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.usize(..len);
                let n = rng.usize(1..=(len - i).min(64));
                let chunk = v[i..i + n].to_vec();
                let at = rng.usize(..=v.len());
                v.splice(at..at, chunk);
            }
            5 if !other.is_empty() => {
                // Splice: a piece of another input.
                let i = rng.usize(..other.len());
                let n = rng.usize(1..=(other.len() - i).min(256));
                let at = rng.usize(..=len);
                v.splice(at..at, other[i..i + n].iter().copied());
            }
            6 | 7 if !dict.is_empty() => {
                let tok = dict[rng.usize(..dict.len())];
                let at = rng.usize(..=len);
                v.splice(at..at, tok.iter().copied());
            }
            8 if len > 0 => v.truncate(rng.usize(..len)),
            _ => {
                // An interesting ASCII number.
                let n: &[u8] = [
                    b"0".as_slice(),
                    b"-1",
                    b"65536",
                    b"4294967296",
                    b"99999999999999999999",
                ][rng.usize(..5)];
                let at = rng.usize(..=len);
                v.splice(at..at, n.iter().copied());
            }
        }
    }
    v.truncate(LEN_MAX);
    v
}

/// Reads choices from fuzz input bytes (as `arbitrary::Unstructured` does): structured
/// targets turn the same mutated bytes into objects, rules and requests.
pub struct Choices<'a> {
    data: &'a [u8],
}

impl<'a> Choices<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Choices { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        let v = u16::from_le_bytes([self.byte(), self.byte()]) as usize;
        v % n
    }

    pub fn pick<'t, T: ?Sized>(&mut self, items: &[&'t T]) -> &'t T {
        items[self.below(items.len())]
    }

    pub fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// Up to `max` raw bytes as (lossy) text.
    pub fn text(&mut self, max: usize) -> String {
        let n = self.below(max + 1).min(self.data.len());
        let (t, rest) = self.data.split_at(n);
        self.data = rest;
        String::from_utf8_lossy(t).into_owned()
    }
}
