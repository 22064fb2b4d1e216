//! Which seeds a simulation runs, and how a failure tells you to replay it.
//!
//! `SIM_SEED=<n>` runs exactly that seed; `SIM_RUNS=<k>` runs k seeds (the default is fixed so
//! CI is repeatable), from `SIM_FIRST` (1 unless set); a failing seed panics with the one
//! command that replays it. With `SIM_KEEP_GOING=1` (soaks) every seed runs and the failures
//! are listed together at the end. `SIM_THREADS=<n>` runs the seeds on n threads (soaks use
//! every core; the default is 1, since `cargo test` already runs the scenarios side by side).

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// A failure's line that names a timeline it wrote starts with this; `for_each_seed` repeats
/// such lines next to the replay command, where the reader of a long failure looks.
pub const TIMELINE: &str = "timeline: ";

thread_local! {
    /// The command that replays the seed this thread runs now (madsim runs a simulation on
    /// the thread that starts it), for the files a failure writes.
    static REPLAY: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// How to replay the seed running now; `None` outside `for_each_seed`.
pub fn replay_command() -> Option<String> {
    REPLAY.with(|replay| replay.borrow().clone())
}

/// Runs the seeds; `Err` lists the seeds that failed (only with `SIM_KEEP_GOING`: otherwise
/// the first failure panics at once). `SIM_THREADS=<n>` spreads the seeds over n threads, each
/// running its own simulations one after another (madsim keeps a simulation on the thread that
/// starts it, so seeds stay deterministic whichever thread takes them).
pub fn for_each_seed(
    test: &str,
    default_runs: u64,
    run: impl Fn(u64) + Sync,
) -> Result<(), String> {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env("SIM_FIRST").unwrap_or(1);
            (first..first + env("SIM_RUNS").unwrap_or(default_runs)).collect()
        }
    };
    let keep_going = std::env::var_os("SIM_KEEP_GOING").is_some();
    let threads = env("SIM_THREADS").unwrap_or(1).clamp(1, 64) as usize;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failures = Mutex::new(Vec::<(u64, String)>::new());
    let worker = || {
        while !stop.load(Ordering::Relaxed) {
            let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return;
            };
            if let Err(failure) = run_one(test, seed, &run) {
                if keep_going {
                    eprintln!("{failure}");
                } else {
                    stop.store(true, Ordering::Relaxed);
                }
                failures.lock().unwrap().push((seed, failure));
            }
        }
    };
    if threads == 1 {
        worker();
    } else {
        // Test-only parallelism over independent simulations; the node code stays
        // single-threaded inside each one.
        #[allow(clippy::disallowed_methods)]
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(worker);
            }
        });
    }
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    if let Some((_, first)) = failures.first().filter(|_| !keep_going) {
        panic!("{first}");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        let seeds: Vec<u64> = failures.iter().map(|(seed, _)| *seed).collect();
        Err(format!("{} seeds failed: {seeds:?}", seeds.len()))
    }
}

/// Runs one seed on a thread of its own; a failure comes back as the message to print, with
/// its replay command.
///
/// A fresh thread, because state that std, tokio and rand keep per thread outlives a madsim
/// runtime: std seeds `HashMap`'s hash keys once per thread and madsim can seed them only on a
/// thread that has made none yet, so a second seed on the same thread iterates its maps in an
/// order that depends on the seeds before it, and `SIM_SEED` would not replay what a batch ran.
fn run_one(test: &str, seed: u64, run: &(impl Fn(u64) + Sync)) -> Result<(), String> {
    // Test-only threads around independent simulations.
    #[allow(clippy::disallowed_methods)]
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(format!("seed-{seed}"))
            .stack_size(8 << 20)
            .spawn_scoped(scope, || run_on_this_thread(test, seed, run))
            .expect("a thread for the seed")
            .join()
            .unwrap_or_else(|_| Err(format!("seed {seed} failed outside the run")))
    })
}

fn run_on_this_thread(test: &str, seed: u64, run: &impl Fn(u64)) -> Result<(), String> {
    let replay = format!("SIM_SEED={seed} cargo test --features sim --test sim {test}");
    REPLAY.with(|r| *r.borrow_mut() = Some(replay.clone()));
    let outcome = catch_unwind(AssertUnwindSafe(|| run(seed)));
    REPLAY.with(|r| *r.borrow_mut() = None);
    let Err(cause) = outcome else {
        return Ok(());
    };
    let why = cause
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| cause.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    let timelines: String = why
        .lines()
        .filter(|line| line.starts_with(TIMELINE))
        .map(|line| format!("\n{line}"))
        .collect();
    Err(format!(
        "seed {seed} failed: {why}\nreplay with: {replay}{timelines}"
    ))
}
