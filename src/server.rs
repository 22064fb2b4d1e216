//! The production server: a checked `Config` becomes a running member with its client and
//! peer listeners.
// Binding sockets and locking the data dir is this module's job.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::api::{self, App};
use crate::config::Config;
use crate::membership::{format_id, parse_id, Member};
use crate::node::{Node, NodeConfig};
use crate::runtime::{Runtime, TokioRuntime};
use crate::transport::{self, HttpTransport};

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

/// A data dir remembers which member of which cluster it holds: `member <id> of cluster <id>`.
fn read_identity(dir: &Path) -> Result<Option<(u64, u64)>, String> {
    let path = dir.join("member").join("identity");
    let Ok(mut file) = File::open(&path) else {
        return Ok(None);
    };
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["member", id, "of", "cluster", cluster] => match (parse_id(id), parse_id(cluster)) {
            (Some(id), Some(cluster)) => Ok(Some((id, cluster))),
            _ => Err(format!("{} is damaged", path.display())),
        },
        _ => Err(format!("{} is damaged", path.display())),
    }
}

fn write_identity(dir: &Path, id: u64, cluster_id: u64) -> Result<(), String> {
    let path = dir.join("member").join("identity");
    crate::runtime::create_private_dir(&dir.join("member")).map_err(|e| e.to_string())?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(crate::runtime::PRIVATE_FILE)
        .open(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let text = format!(
        "member {} of cluster {}",
        format_id(id),
        format_id(cluster_id)
    );
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| e.to_string())
}

/// Which member this is, of which cluster: from the data dir if it has been here before;
/// for a new cluster from the flags; for a member joining a running cluster, from that
/// cluster, which chose the id when the member was added (with `POST /v2/members`).
///
/// Like etcd, a member that has been here before ignores the bootstrap flags
/// (`--initial-cluster`, `--initial-cluster-token`, `--initial-cluster-state`) and says so.
/// The identity is written only once the member has started (see [`run`]), so a start that
/// fails leaves nothing that would refuse a corrected one. The flag `true` says it is new.
async fn identity(config: &Config) -> Result<(u64, u64, Vec<Member>, bool), String> {
    let dir = &config.data_dir;
    match (read_identity(dir)?, config.new_cluster) {
        (Some((id, cluster)), _) => {
            // A restart with the same bootstrap flags is the usual case; anything else is
            // worth a line.
            if !config.new_cluster || (id, cluster) != (config.id, config.cluster_id) {
                eprintln!(
                    "etcd: the data dir {} already holds member {} of cluster {}: starting as that member; --initial-cluster, --initial-cluster-token and --initial-cluster-state only bootstrap a new member and are ignored",
                    dir.display(),
                    format_id(id),
                    format_id(cluster)
                );
            }
            Ok((id, cluster, Vec::new(), false))
        }
        (None, _) if config.bootstrap_conflict.is_some() => {
            Err(config.bootstrap_conflict.clone().unwrap_or_default())
        }
        (None, true) => Ok((config.id, config.cluster_id, Vec::new(), true)),
        (None, false) => {
            let (id, cluster_id, members) = join_cluster(config).await?;
            Ok((id, cluster_id, members, true))
        }
    }
}

/// Asks the other members listed in `--initial-cluster` for the cluster's members and finds
/// this one among them by its peer URLs.
async fn join_cluster(config: &Config) -> Result<(u64, u64, Vec<Member>), String> {
    let mut mine = config.advertise_peer_urls.clone();
    mine.sort();
    let peers = config
        .initial_cluster
        .iter()
        .filter(|m| m.name != config.name);
    for url in peers.flat_map(|m| m.peer_urls.clone()) {
        let Ok((cluster_id, members)) = fetch_members(&url).await else {
            continue;
        };
        let me = members.iter().find(|m| {
            let mut theirs = m.peer_urls.clone();
            theirs.sort();
            theirs == mine
        });
        return match me {
            Some(me) => Ok((me.id, cluster_id, members.clone())),
            None => Err(format!(
                "the cluster at {url} has no member with peer URLs {}; add it first (POST /v2/members)",
                mine.join(",")
            )),
        };
    }
    Err("--initial-cluster-state existing: no other member in --initial-cluster answered".into())
}

async fn fetch_members(peer_url: &str) -> Result<(u64, Vec<Member>), String> {
    use http_body_util::BodyExt;
    let uri: hyper::Uri = format!("{peer_url}/members")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let (host, port) = (
        uri.host().ok_or("no host")?.to_owned(),
        uri.port_u16().unwrap_or(80),
    );
    let stream = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = hyper::Request::get(uri)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let cluster_id = response
        .headers()
        .get("X-Etcd-Cluster-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_id)
        .ok_or("no cluster id")?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let members: Vec<Member> = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok((cluster_id, members))
}

/// Every client and peer listener, bound before anything is written, so a port in use fails
/// fast and cleanly.
async fn bind_all(config: &Config) -> Result<(Vec<TcpListener>, Vec<TcpListener>), String> {
    let mut client_listeners = Vec::new();
    for url in &config.listen_client_urls {
        client_listeners.push(bind(url, "clients").await?);
    }
    let mut peer_listeners = Vec::new();
    for url in &config.listen_peer_urls {
        peer_listeners.push(bind(url, "peers").await?);
    }
    Ok((client_listeners, peer_listeners))
}

async fn bind(url: &crate::config::Url, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(url.address())
        .await
        .map_err(|e| format!("cannot listen for {what} on {url}: {e}"))
}

/// Runs until SIGINT or SIGTERM; then stops taking requests, lets the member finish what it is
/// writing, and returns.
pub async fn run(config: Config) -> Result<(), String> {
    // A data dir in use is refused before anything else; a new one is made only once the
    // ports are bound, so a start that fails for a port in use leaves nothing behind.
    let existing = config.data_dir.exists();
    let early_lock = existing
        .then(|| lock_data_dir(&config.data_dir))
        .transpose()?;
    let (client_listeners, peer_listeners) = bind_all(&config).await?;
    let _lock = match early_lock {
        Some(lock) => lock,
        None => lock_data_dir(&config.data_dir)?,
    };
    let (id, cluster_id, known, new_member) = identity(&config).await?;
    let mut config = config;
    config.id = id;
    config.cluster_id = cluster_id;

    let transport = HttpTransport::new(config.id, config.cluster_id);
    let listed = config.initial_cluster.iter().map(|m| (m.id, &m.peer_urls));
    let fetched = known.iter().map(|m| (m.id, &m.peer_urls));
    for (member, urls) in listed.chain(fetched).filter(|(m, _)| *m != config.id) {
        transport.connect_peer(member, urls);
    }
    let rt = TokioRuntime::new(transport.clone());
    let started = rt.now();
    let (inbox_tx, inbox_rx) = mpsc::channel(crate::node::INBOX_CAPACITY);

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
    node_config.join = !config.new_cluster;
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
    // Tests prove that a member whose raft task dies stops; release builds have no such door.
    #[cfg(debug_assertions)]
    {
        node_config.panic_on_key = std::env::var("ETCDRS_TEST_PANIC_ON_KEY").ok();
    }

    let node = Node::start(rt, node_config, inbox_rx)
        .await
        .map_err(|e| format!("cannot start the member: {e}"))?;
    if new_member {
        write_identity(&config.data_dir, config.id, config.cluster_id)?;
    }
    let reporter = node.clone();
    transport.set_reporter(move |report| reporter.report(report));
    // Members added since the flags were written are known from the replicated table.
    for member in node.members().iter().filter(|m| m.id != config.id) {
        transport.connect_peer(member.id, &member.peer_urls);
    }
    let app = Arc::new(App {
        node: node.clone(),
        name: config.name.clone(),
        id: config.id,
        cluster_id: config.cluster_id,
        token: config.token.clone(),
        started,
        max_body: config.max_request_bytes,
        cors: config.cors.clone(),
        traffic: transport.stats(),
    });

    let mut tasks = Vec::new();
    for listener in client_listeners {
        let app = Arc::clone(&app);
        tasks.push(tokio::spawn(serve(
            listener,
            CLIENT_CONNECTIONS,
            move |request| {
                let app = Arc::clone(&app);
                async move { Ok::<_, Infallible>(api::handle(app, request).await) }
            },
        )));
    }
    let inbound = Arc::new(transport::Inbound::new(
        config.cluster_id,
        config.id,
        inbox_tx.clone(),
        config.max_request_bytes,
        transport.stats(),
    ));
    for listener in peer_listeners {
        let cluster_id = config.cluster_id;
        let (inbound, node) = (Arc::clone(&inbound), node.clone());
        tasks.push(tokio::spawn(serve(
            listener,
            PEER_CONNECTIONS,
            move |request| {
                let (inbound, node) = (Arc::clone(&inbound), node.clone());
                async move {
                    if request.uri().path() == "/members" {
                        // What a joining member asks for (etcd's peer /members).
                        let body =
                            serde_json::to_string(&node.members()).expect("members serialise");
                        let mut response = hyper::Response::new(api::full(body));
                        if let Ok(value) =
                            hyper::header::HeaderValue::from_str(&format_id(cluster_id))
                        {
                            response.headers_mut().insert("X-Etcd-Cluster-ID", value);
                        }
                        return Ok::<_, Infallible>(response);
                    }
                    Ok::<_, Infallible>(inbound.receive(request, |id| node.is_removed(id)).await)
                }
            },
        )));
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

/// A connection that is not in the middle of a request and has not sent a whole request head
/// within this time is closed: slow or stalled headers (slowloris), and keep-alive connections
/// left idle. A request in progress (a long-poll watch, say) is never cut short by it.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The most connections one listener keeps open; beyond it new connections are closed at once
/// (with a log line), so that a flood of connections cannot exhaust the process's files.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimit {
    pub max: usize,
    /// What the listener serves, for the log line.
    pub what: &'static str,
}

pub const CLIENT_CONNECTIONS: ConnectionLimit = ConnectionLimit {
    max: 8192,
    what: "client",
};
pub const PEER_CONNECTIONS: ConnectionLimit = ConnectionLimit {
    max: 1024,
    what: "peer",
};

async fn serve<S, F>(listener: TcpListener, limit: ConnectionLimit, service: S)
where
    S: Fn(hyper::Request<hyper::body::Incoming>) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = Result<hyper::Response<api::Body>, Infallible>>
        + Send
        + 'static,
{
    let open = Arc::new(tokio::sync::Semaphore::new(limit.max));
    let mut last_refusal_logged: Option<std::time::Instant> = None;
    let mut refused = 0u64;
    let mut http = http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // Header names as Go writes them (`X-Etcd-Index`), for scripts that grep `curl -i`.
        .title_case_headers(true);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, say: wait rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            drop(stream);
            refused += 1;
            if last_refusal_logged.is_none_or(|at| at.elapsed().as_secs() >= 10) {
                last_refusal_logged = Some(std::time::Instant::now());
                eprintln!(
                    "etcd: {} {} connections are open, the most allowed; closing new ones ({refused} so far)",
                    limit.max, limit.what
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let connection = http.serve_connection(TokioIo::new(stream), service_fn(service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
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
