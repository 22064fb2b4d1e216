//! A key's history that failed the linearizability check, written as an HTML timeline where
//! a developer finds it: `target/sim-failures/seed-<seed>-<key>.html` under the crate root.

use std::path::{Path, PathBuf};

use etcd::lincheck::timeline::Timeline;
use etcd::lincheck::{Operation, Verdict};

use crate::seeds::{self, TIMELINE};

/// Writes the timeline of `key` (`clients[i]` made `ops[i]`) and returns the failure's line
/// that names it.
pub fn write<I: std::fmt::Display, O: std::fmt::Display>(
    key: &str,
    clients: &[u64],
    ops: &[Operation<I, O>],
    verdict: &Verdict,
) -> String {
    // The simulation's own seed: a scenario may offset the seed it was given.
    let seed = madsim::runtime::Handle::current().seed();
    let replay = match seeds::replay_command() {
        Some(command) => format!("{command}   (madsim seed {seed})"),
        None => format!("madsim seed {seed}"),
    };
    let html = Timeline {
        key,
        replay: &replay,
        ops,
        clients,
        verdict,
    }
    .to_html();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sim-failures");
    let path = dir.join(format!("seed-{seed}-{}.html", file_name(key)));
    match save(&dir, &path, &html) {
        Ok(()) => format!("{TIMELINE}{}", path.display()),
        Err(e) => format!("{TIMELINE}not written to {}: {e}", path.display()),
    }
}

// The harness writes for the developer, outside the simulation: not through the runtime's Disk.
#[allow(clippy::disallowed_methods)]
fn save(dir: &Path, path: &PathBuf, html: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(path, html)
}

/// `/k0` becomes `k0`; any character a file name may not hold becomes `_`.
fn file_name(key: &str) -> String {
    key.trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
