//! The production process around a member: the data dir lock, the real sockets and disk, and
//! the signals that stop it.
// Locking the data dir and waiting for signals is this module's job.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{Listeners, Server};
use crate::config::Config;
use crate::runtime::{FsDisk, TokioHost};

/// Holds the data dir for as long as the server lives: a second etcd on it is refused.
pub struct DataDirLock {
    _file: File,
}

fn lock_data_dir(dir: &Path) -> Result<DataDirLock, String> {
    crate::runtime::create_private_dir(dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(crate::runtime::PRIVATE_FILE)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.try_lock()
        .map_err(|_| format!("data dir {} is in use by another etcd", dir.display()))?;
    Ok(DataDirLock { _file: file })
}

/// Runs until SIGINT or SIGTERM; then stops taking requests, lets the member finish what it is
/// writing, and returns.
pub async fn run(config: Config) -> Result<(), String> {
    let host = TokioHost::new();
    // A data dir in use is refused before anything else; a new one is made only once the
    // ports are bound, so a start that fails for a port in use leaves nothing behind.
    let existing = config.data_dir.exists();
    let early_lock = existing
        .then(|| lock_data_dir(&config.data_dir))
        .transpose()?;
    let listeners = Listeners::bind(&host, &config).await?;
    let _lock = match early_lock {
        Some(lock) => lock,
        None => lock_data_dir(&config.data_dir)?,
    };
    let server = Server::start(config, host, FsDisk::default(), listeners).await?;
    // Run until told to stop, or until the member stops by itself (removed from the
    // cluster, or its disk failed).
    let result = tokio::select! {
        _ = shutdown_signal() => Ok(()),
        // As etcd: a removed member's work is done (status 0, so a supervisor that restarts
        // on failure does not bring it back), and its data is of no further use.
        why = server.stopped() => if why == crate::node::REMOVED {
            eprintln!("etcd: {why}; the data-dir used by this member must be removed");
            Ok(())
        } else {
            Err(format!("the member stopped: {why}"))
        },
    };
    server.shutdown().await;
    eprintln!("etcd: stopped");
    result
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}
