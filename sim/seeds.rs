//! Which seeds a simulation runs, and how a failure tells you to replay it.
//!
//! `SIM_SEED=<n>` runs exactly that seed; `SIM_RUNS=<k>` runs k seeds (the default is fixed so
//! CI is repeatable), from `SIM_FIRST` (1 unless set); a failing seed panics with the one
//! command that replays it. With `SIM_KEEP_GOING=1` (soaks) every seed runs and the failures
//! are listed together at the end.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

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
/// the first failure panics at once).
pub fn for_each_seed(test: &str, default_runs: u64, run: impl Fn(u64)) -> Result<(), String> {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env("SIM_FIRST").unwrap_or(1);
            (first..first + env("SIM_RUNS").unwrap_or(default_runs)).collect()
        }
    };
    let keep_going = std::env::var_os("SIM_KEEP_GOING").is_some();
    let mut failures = Vec::new();
    for seed in seeds {
        let replay = format!("SIM_SEED={seed} cargo test --features sim --test sim {test}");
        REPLAY.with(|r| *r.borrow_mut() = Some(replay.clone()));
        let outcome = catch_unwind(AssertUnwindSafe(|| run(seed)));
        REPLAY.with(|r| *r.borrow_mut() = None);
        if let Err(cause) = outcome {
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
            let failure = format!("seed {seed} failed: {why}\nreplay with: {replay}{timelines}");
            if !keep_going {
                panic!("{failure}");
            }
            eprintln!("{failure}");
            failures.push(seed);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} seeds failed: {failures:?}", failures.len()))
    }
}
