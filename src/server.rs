//! The production server: a checked `Config` becomes a running member with its client and
//! peer listeners.
// Binding sockets and locking the data dir is this module's job.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::api::{self, App};
use crate::config::Config;
use crate::membership::{format_id, Member};
use crate::node::{Node, NodeConfig};
use crate::runtime::{Runtime, TokioRuntime};
use crate::transport::{self, HttpTransport};

/// Holds the data dir for as long as the server lives: a second etcd on it is refused.
pub struct DataDirLock {
    _file: File,
}

fn lock_data_dir(dir: &Path) -> Result<DataDirLock, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.try_lock()
        .map_err(|_| format!("data dir {} is in use by another etcd", dir.display()))?;
    Ok(DataDirLock { _file: file })
}

/// A data dir remembers which member of which cluster it holds; another member or cluster
/// must not start on it.
fn check_identity(dir: &Path, config: &Config) -> Result<(), String> {
    let path = dir.join("member").join("identity");
    let ours = format!(
        "member {} of cluster {}",
        format_id(config.id),
        format_id(config.cluster_id)
    );
    let mut existing = String::new();
    if let Ok(mut file) = File::open(&path) {
        file.read_to_string(&mut existing)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let existing = existing.trim();
        if existing != ours {
            return Err(format!(
                "data dir {} holds {existing}, not {ours} (from --initial-cluster and --initial-cluster-token)",
                dir.display()
            ));
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir.join("member")).map_err(|e| e.to_string())?;
    let mut file =
        File::create(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(ours.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| e.to_string())
}

async fn bind(url: &crate::config::Url, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(url.address())
        .await
        .map_err(|e| format!("cannot listen for {what} on {url}: {e}"))
}

/// Runs until SIGINT or SIGTERM; then stops taking requests, lets the member finish what it is
/// writing, and returns.
pub async fn run(config: Config) -> Result<(), String> {
    let _lock = lock_data_dir(&config.data_dir)?;
    check_identity(&config.data_dir, &config)?;
    if !config.new_cluster
        && !config.data_dir.join("member").join("wal").exists()
        && config.wal_dir.is_none()
    {
        return Err("--initial-cluster-state existing: joining a running cluster comes with runtime membership (not yet)".into());
    }

    let transport = HttpTransport::new(config.id, config.cluster_id);
    for member in config.initial_cluster.iter().filter(|m| m.id != config.id) {
        transport.connect_peer(member.id, &member.peer_urls);
    }
    let rt = TokioRuntime::new(transport.clone());
    let started = rt.now();
    let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();

    let mut node_config = NodeConfig::new(
        config.id,
        config.initial_cluster.iter().map(|m| m.id).collect(),
        config.data_dir.clone(),
    );
    node_config.wal_dir = config.wal_dir.clone();
    node_config.initial_members = config
        .initial_cluster
        .iter()
        .map(|m| Member {
            id: m.id,
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: Vec::new(),
        })
        .collect();
    node_config.publish = Some((config.name.clone(), config.advertise_client_urls.clone()));
    node_config.strict_reconfig_check = config.strict_reconfig_check;
    node_config.tick = config.heartbeat;
    node_config.election_ticks =
        (config.election.as_millis() / config.heartbeat.as_millis().max(1)).max(2) as usize;
    node_config.snapshot_count = config.snapshot_count;
    node_config.catch_up_entries = config.snapshot_count.min(5_000);
    node_config.max_snapshots = if config.max_snapshots == 0 {
        usize::MAX
    } else {
        config.max_snapshots
    };
    node_config.request_timeout = std::time::Duration::from_secs(5) + 2 * config.election;

    // Bind before starting the member, so a port in use fails fast and cleanly.
    let mut client_listeners = Vec::new();
    for url in &config.listen_client_urls {
        client_listeners.push(bind(url, "clients").await?);
    }
    let mut peer_listeners = Vec::new();
    for url in &config.listen_peer_urls {
        peer_listeners.push(bind(url, "peers").await?);
    }

    let node = Node::start(rt, node_config, inbox_rx)
        .await
        .map_err(|e| format!("cannot start the member: {e}"))?;
    let reporter = node.clone();
    transport.set_reporter(move |report| reporter.report(report));
    let app = Arc::new(App {
        node: node.clone(),
        name: config.name.clone(),
        id: config.id,
        cluster_id: config.cluster_id,
        token: config.token.clone(),
        started,
        max_body: 4 << 20,
    });

    let mut tasks = Vec::new();
    for listener in client_listeners {
        let app = Arc::clone(&app);
        tasks.push(tokio::spawn(serve(listener, move |request| {
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(api::handle(app, request).await) }
        })));
    }
    for listener in peer_listeners {
        let (inbox, cluster_id, member_id) = (inbox_tx.clone(), config.cluster_id, config.id);
        tasks.push(tokio::spawn(serve(listener, move |request| {
            let inbox = inbox.clone();
            async move {
                Ok::<_, Infallible>(
                    transport::receive(request, cluster_id, member_id, &inbox).await,
                )
            }
        })));
    }
    eprintln!(
        "etcd {}: member {} ({}) of cluster {} serving clients on {}",
        crate::SERVER_VERSION,
        config.name,
        format_id(config.id),
        format_id(config.cluster_id),
        config
            .listen_client_urls
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Run until told to stop, or until the member stops by itself (removed from the
    // cluster, or its disk failed).
    let stopped_by_itself = async {
        loop {
            if let Some(why) = node.status().stopped {
                return why;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    let result = tokio::select! {
        _ = shutdown_signal() => Ok(()),
        why = stopped_by_itself => Err(format!("the member stopped: {why}")),
    };
    for task in &tasks {
        task.abort();
    }
    node.shutdown().await;
    eprintln!("etcd: stopped");
    result
}

async fn serve<S, F>(listener: TcpListener, service: S)
where
    S: Fn(hyper::Request<hyper::body::Incoming>) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = Result<hyper::Response<api::Body>, Infallible>>
        + Send
        + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, say: wait rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(service))
                .await;
        });
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
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
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
