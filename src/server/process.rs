//! The production process around a member: the data dir lock, the real sockets and disk, and
//! the signals that stop it.
// Locking the data dir and waiting for signals is this module's job.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{Listeners, Security, Server};
use crate::config::{Config, TlsSettings};
use crate::net::Connector;
use crate::runtime::{FsDisk, TokioHost};
use crate::tls::{ClientFiles, ServerFiles};

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
    // ports are bound, so a start that fails for a port in use leaves nothing behind (but
    // the certificates `--auto-tls` generates into it first, as etcd does too).
    let existing = config.data_dir.exists();
    let early_lock = existing
        .then(|| lock_data_dir(&config.data_dir))
        .transpose()?;
    let security = security(&config)?;
    let listeners = Listeners::bind(&host, &config, &security).await?;
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

/// The member's TLS from its flags: certificate files, re-read when they change, or
/// certificates generated into the data dir (`--auto-tls`, `--peer-auto-tls`) when no files
/// are given.
fn security(config: &Config) -> Result<Security, String> {
    let client_files = certificate_files(
        config,
        &config.client_tls,
        "client",
        &config.listen_client_urls,
    )?;
    let peer_files = certificate_files(config, &config.peer_tls, "peer", &config.listen_peer_urls)?;
    let clients = server_tls(&config.client_tls, client_files, "client")?;
    let peers = server_tls(&config.peer_tls, peer_files.clone(), "peer")?;
    // A member shows its peer certificate when it dials a peer, and trusts the peer CA; on
    // generated certificates nobody can be verified, and etcd does not try.
    let peer_dialer = match peer_files {
        None => Connector::plain(),
        Some((cert, key)) => {
            let files = ClientFiles {
                cert: Some(cert),
                key: Some(key),
                trusted_ca: config.peer_tls.trusted_ca.clone(),
                skip_verify: config.peer_tls.cert.is_none(),
            };
            Connector::with_tls(files.load("peer")?)
        }
    };
    Ok(Security {
        clients,
        peers,
        peer_dialer,
    })
}

/// The certificate and key one side serves with: its files, or generated ones.
fn certificate_files(
    config: &Config,
    tls: &TlsSettings,
    side: &str,
    urls: &[crate::config::Url],
) -> Result<Option<(PathBuf, PathBuf)>, String> {
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        if tls.auto {
            eprintln!(
                "etcd: ignoring --{}auto-tls: certificate files are given",
                if side == "peer" { "peer-" } else { "" }
            );
        }
        return Ok(Some((cert.clone(), key.clone())));
    }
    if !tls.auto {
        return Ok(None);
    }
    let hosts: Vec<String> = urls
        .iter()
        .map(|u| u.host.trim_matches(['[', ']']).to_owned())
        .chain(["localhost".to_owned(), "127.0.0.1".to_owned()])
        .collect();
    let dir = config.data_dir.join("fixtures").join(side);
    crate::tls::auto::self_signed(&dir, &hosts).map(Some)
}

/// The listener side of one side's TLS, when it has a certificate.
fn server_tls(
    tls: &TlsSettings,
    files: Option<(PathBuf, PathBuf)>,
    side: &'static str,
) -> Result<Option<crate::tls::ServerTls>, String> {
    let Some((cert, key)) = files else {
        return Ok(None);
    };
    let files = ServerFiles {
        cert,
        key,
        trusted_ca: tls.trusted_ca.clone(),
        client_cert_auth: tls.client_cert_auth,
        crl: tls.crl.clone(),
    };
    files.load(side).map(Some)
}
