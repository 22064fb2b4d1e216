//! Which seeds a simulation runs, and how a failure tells you to replay it.
//!
//! `SIM_SEED=<n>` runs exactly that seed; `SIM_RUNS=<k>` runs k seeds (the default is fixed so
//! CI is repeatable); a failing seed panics with the one command that replays it.

use std::panic::{catch_unwind, AssertUnwindSafe};

pub fn for_each_seed(test: &str, default_runs: u64, run: impl Fn(u64)) {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env("SIM_RUNS").unwrap_or(default_runs)).collect(),
    };
    for seed in seeds {
        if let Err(cause) = catch_unwind(AssertUnwindSafe(|| run(seed))) {
            let why = cause
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| cause.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "seed {seed} failed: {why}\nreplay with: SIM_SEED={seed} cargo test --features sim --test sim {test}"
            );
        }
    }
}
