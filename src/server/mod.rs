//! A member assembled from its configuration: the node, its client API and its peer
//! transport, on a host's sockets and a disk. [`Server`] is the member itself, the same in
//! production and in the simulator; [`run`] is the production process around it (the data dir
//! lock, the real sockets and disk, the signals).

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::api::{self, App};
use crate::config::Config;
use crate::membership::{format_id, parse_id, Member};
use crate::net::{Connector, CLIENT_CONNECTIONS, PEER_CONNECTIONS};
use crate::node::{Node, NodeConfig};
use crate::runtime::{Disk, Host, Parts};
use crate::sync::Flag;
use crate::tls::ServerTls;
use crate::transport::{self, HttpTransport};

mod process;

pub use process::run;

/// What a member runs on: a host, a disk, and the HTTP peer transport on that host.
pub type MemberRuntime<H, D> = Parts<H, D, HttpTransport<H>>;

/// The TLS a member serves and dials with, made where the process is assembled (from
/// certificate files in production, `server::process`; none in the simulator yet).
#[derive(Clone, Default)]
pub struct Security {
    /// For `https://` client listeners.
    pub clients: Option<ServerTls>,
    /// For `https://` peer listeners.
    pub peers: Option<ServerTls>,
    /// How this member dials its peers, and asks them for the members when it joins.
    pub peer_dialer: Connector,
}

/// One bound listener, and the TLS it serves with (an `https://` URL).
pub struct Bound<H: Host> {
    pub listener: H::Listener,
    pub tls: Option<ServerTls>,
}

impl<H: Host> Bound<H> {
    pub fn plain(listener: H::Listener) -> Bound<H> {
        Bound {
            listener,
            tls: None,
        }
    }
}

/// The listeners a member serves, bound before anything is written so that a port in use
/// fails fast and cleanly, and how it dials its peers.
pub struct Listeners<H: Host> {
    pub clients: Vec<Bound<H>>,
    pub peers: Vec<Bound<H>>,
    pub peer_dialer: Connector,
}

impl<H: Host> Listeners<H> {
    /// Binds every `--listen-client-urls` and `--listen-peer-urls` address; an `https://` one
    /// serves TLS only, and without TLS settings it is an error, never plaintext.
    pub async fn bind(
        host: &H,
        config: &Config,
        security: &Security,
    ) -> Result<Listeners<H>, String> {
        let bind = |url: &crate::config::Url, what: &'static str, tls: &Option<ServerTls>| {
            let url = url.clone();
            let tls = if url.scheme == "https" {
                match tls {
                    Some(tls) => Ok(Some(tls.clone())),
                    None => Err(format!(
                        "cannot listen for {what} on {url}: https needs a certificate and key"
                    )),
                }
            } else {
                Ok(None)
            };
            async move {
                let tls = tls?;
                let listener = host
                    .listen(&url.address())
                    .await
                    .map_err(|e| format!("cannot listen for {what} on {url}: {e}"))?;
                Ok::<_, String>(Bound { listener, tls })
            }
        };
        let mut clients = Vec::new();
        for url in &config.listen_client_urls {
            clients.push(bind(url, "clients", &security.clients).await?);
        }
        let mut peers = Vec::new();
        for url in &config.listen_peer_urls {
            peers.push(bind(url, "peers", &security.peers).await?);
        }
        Ok(Listeners {
            clients,
            peers,
            peer_dialer: security.peer_dialer.clone(),
        })
    }
}

/// A running member.
pub struct Server<H: Host, D: Disk> {
    node: Node<MemberRuntime<H, D>>,
    /// Raised to stop the listeners.
    stop: Arc<Flag>,
}

impl<H: Host, D: Disk> Server<H, D> {
    /// Starts the member `config` describes and serves its listeners.
    pub async fn start(
        config: Config,
        host: H,
        disk: D,
        listeners: Listeners<H>,
    ) -> Result<Server<H, D>, String> {
        let dialer = listeners.peer_dialer.clone();
        let (id, cluster_id, known, new_member) = identity(&config, &host, &disk, &dialer).await?;
        let mut config = config;
        config.id = id;
        config.cluster_id = cluster_id;

        let transport = HttpTransport::new(
            host.clone(),
            config.id,
            config.cluster_id,
            &config.advertise_peer_urls,
        )
        .with_connector(dialer);
        let listed = config.initial_cluster.iter().map(|m| (m.id, &m.peer_urls));
        let fetched = known.iter().map(|m| (m.id, &m.peer_urls));
        for (member, urls) in listed.chain(fetched).filter(|(m, _)| *m != config.id) {
            transport.connect_peer(member, urls);
        }
        let rt = Parts {
            host: host.clone(),
            disk: disk.clone(),
            net: Arc::new(transport.clone()),
        };
        let started = host.now();
        let (inbox_tx, inbox_rx) = mpsc::channel(crate::node::INBOX_CAPACITY);
        let node = Node::start(rt, node_config(&config), inbox_rx)
            .await
            .map_err(|e| format!("cannot start the member: {e}"))?;
        if new_member {
            write_identity(&disk, &config.data_dir, config.id, config.cluster_id).await?;
        }
        let reporter = node.clone();
        transport.set_reporter(move |report| reporter.report(report));
        // Members added since the flags were written are known from the replicated table, and
        // so is where this member itself listens now.
        for member in node.members() {
            crate::runtime::Transport::add_peer(&transport, member.id, &member.peer_urls);
        }
        // ...and members the flags list that the cluster has removed since lose their lanes.
        for id in transport.peer_ids() {
            if node.is_removed(id) {
                crate::runtime::Transport::remove_peer(&transport, id);
            }
        }

        let stop = Arc::new(Flag::new());
        host.spawn(until_stopped(
            Arc::clone(&stop),
            ask_whether_removed(host.clone(), node.clone(), transport.clone()),
        ));
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
        for Bound { listener, tls } in listeners.clients {
            let app = Arc::clone(&app);
            let serving = crate::net::serve(
                host.clone(),
                listener,
                CLIENT_CONNECTIONS,
                tls,
                move |request| {
                    let app = Arc::clone(&app);
                    async move { Ok::<_, Infallible>(api::handle(app, request).await) }
                },
            );
            // Clients wait (their connections queue) until the member has caught up, as with
            // etcd, which serves them only once its publish is applied.
            let ready = node.ready();
            let serving = async move {
                ready.await;
                serving.await
            };
            host.spawn(until_stopped(Arc::clone(&stop), serving));
        }
        let inbound = Arc::new(transport::Inbound::new(
            &transport,
            inbox_tx,
            config.max_request_bytes,
        ));
        for Bound { listener, tls } in listeners.peers {
            let cluster_id = config.cluster_id;
            let (inbound, node) = (Arc::clone(&inbound), node.clone());
            let serving = crate::net::serve(
                host.clone(),
                listener,
                PEER_CONNECTIONS,
                tls,
                move |request| {
                    let (inbound, node) = (Arc::clone(&inbound), node.clone());
                    async move {
                        if request.uri().path() == "/members" {
                            return Ok::<_, Infallible>(peer_members(&node, cluster_id));
                        }
                        Ok(inbound.receive(request, |id| node.is_removed(id)).await)
                    }
                },
            );
            host.spawn(until_stopped(Arc::clone(&stop), serving));
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
        Ok(Server { node, stop })
    }

    pub fn node(&self) -> &Node<MemberRuntime<H, D>> {
        &self.node
    }

    /// Waits until the member stops by itself (removed from the cluster, its disk failed);
    /// says why.
    pub async fn stopped(&self) -> String {
        self.node.stopped().await
    }

    /// Stops taking requests and lets the member finish what it is writing.
    pub async fn shutdown(self) {
        self.stop.raise();
        self.node.shutdown().await;
    }
}

/// While the member knows no leader, asks its peers now and then whether it was removed (see
/// `HttpTransport::ask_whether_removed`): a member removed while it was down, that never got
/// far enough to know any configuration, would otherwise run for ever.
async fn ask_whether_removed<H: Host, D: Disk>(
    host: H,
    node: Node<MemberRuntime<H, D>>,
    transport: HttpTransport<H>,
) {
    loop {
        host.sleep(REMOVAL_CHECK).await;
        let status = node.status();
        if status.leader == 0 && status.stopped.is_none() {
            transport.ask_whether_removed().await;
        }
    }
}

/// How often a member without a leader asks whether it was removed.
const REMOVAL_CHECK: Duration = Duration::from_secs(5);

/// Runs `serving` until `stop` is raised.
async fn until_stopped(stop: Arc<Flag>, serving: impl std::future::Future<Output = ()>) {
    tokio::select! {
        biased;
        () = stop.raised() => {}
        _ = serving => {}
    }
}

/// What a joining member asks for (etcd's peer `/members`).
fn peer_members<R: crate::runtime::Runtime>(
    node: &Node<R>,
    cluster_id: u64,
) -> hyper::Response<crate::net::Body> {
    let body = serde_json::to_string(&node.members()).expect("members serialise");
    let mut response = hyper::Response::new(crate::net::full(body));
    if let Ok(value) = hyper::header::HeaderValue::from_str(&format_id(cluster_id)) {
        response.headers_mut().insert("X-Etcd-Cluster-ID", value);
    }
    response
}

fn node_config(config: &Config) -> NodeConfig {
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
    node_config.unsafe_skip_fsync = config.unsafe_no_fsync;
    node_config.segment_bytes = config.wal_segment_bytes;
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
    node_config.request_timeout = Duration::from_secs(5) + 2 * config.election;
    // Tests prove that a member whose raft task dies stops; release builds have no such door.
    #[cfg(debug_assertions)]
    {
        node_config.panic_on_key = std::env::var("ETCDRS_TEST_PANIC_ON_KEY").ok();
    }
    node_config
}

fn identity_path(dir: &Path) -> std::path::PathBuf {
    dir.join("member").join("identity")
}

/// A data dir remembers which member of which cluster it holds: `member <id> of cluster <id>`.
async fn read_identity<D: Disk>(disk: &D, dir: &Path) -> Result<Option<(u64, u64)>, String> {
    let path = identity_path(dir);
    let text = match disk.read(&path).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["member", id, "of", "cluster", cluster] => match (parse_id(id), parse_id(cluster)) {
            (Some(id), Some(cluster)) => Ok(Some((id, cluster))),
            _ => Err(format!("{} is damaged", path.display())),
        },
        _ => Err(format!("{} is damaged", path.display())),
    }
}

async fn write_identity<D: Disk>(
    disk: &D,
    dir: &Path,
    id: u64,
    cluster_id: u64,
) -> Result<(), String> {
    let path = identity_path(dir);
    let text = format!(
        "member {} of cluster {}",
        format_id(id),
        format_id(cluster_id)
    );
    disk.create_dir_all(&dir.join("member"))
        .await
        .map_err(|e| e.to_string())?;
    disk.write_atomic(&path, text.as_bytes())
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Which member this is, of which cluster: from the data dir if it has been here before;
/// for a new cluster from the flags; for a member joining a running cluster, from that
/// cluster, which chose the id when the member was added (with `POST /v2/members`).
///
/// Like etcd, a member that has been here before ignores the bootstrap flags
/// (`--initial-cluster`, `--initial-cluster-token`, `--initial-cluster-state`) and says so.
/// The identity is written only once the member has started (see [`Server::start`]), so a
/// start that fails leaves nothing that would refuse a corrected one. The flag `true` says it
/// is new.
async fn identity<H: Host, D: Disk>(
    config: &Config,
    host: &H,
    disk: &D,
    dialer: &Connector,
) -> Result<(u64, u64, Vec<Member>, bool), String> {
    let dir = &config.data_dir;
    match (read_identity(disk, dir).await?, config.new_cluster) {
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
            let (id, cluster_id, members) = join_cluster(config, host, dialer).await?;
            Ok((id, cluster_id, members, true))
        }
    }
}

/// Asks the other members listed in `--initial-cluster` for the cluster's members and finds
/// this one among them by its peer URLs. A member started right after `member add` may ask
/// one that has not applied the add yet, so every listed peer is asked, for a few rounds,
/// before the start fails.
async fn join_cluster<H: Host>(
    config: &Config,
    host: &H,
    dialer: &Connector,
) -> Result<(u64, u64, Vec<Member>), String> {
    let mut mine = config.advertise_peer_urls.clone();
    mine.sort();
    let peers: Vec<String> = config
        .initial_cluster
        .iter()
        .filter(|m| m.name != config.name)
        .flat_map(|m| m.peer_urls.clone())
        .collect();
    let mut failure =
        "--initial-cluster-state existing: no other member in --initial-cluster answered"
            .to_owned();
    let mut unanswered = std::collections::BTreeMap::<String, String>::new();
    let give_up = host.elapsed() + JOIN_DEADLINE;
    for round in 0..JOIN_ROUNDS {
        if round > 0 {
            if host.elapsed() >= give_up {
                break;
            }
            host.sleep(Duration::from_secs(1)).await;
        }
        for url in &peers {
            let (cluster_id, members) = match fetch_members(host, dialer, url).await {
                Ok(answer) => answer,
                Err(why) => {
                    // As etcd names each peer it could not ask, and why (a TLS refusal, say).
                    unanswered.insert(url.clone(), why);
                    continue;
                }
            };
            unanswered.remove(url);
            let me = members.iter().find(|m| {
                let mut theirs = m.peer_urls.clone();
                theirs.sort();
                theirs == mine
            });
            match me {
                Some(me) => return Ok((me.id, cluster_id, members.clone())),
                None => {
                    failure = format!(
                        "the cluster at {url} has no member with peer URLs {}; add it first (POST /v2/members)",
                        mine.join(",")
                    )
                }
            }
        }
    }
    for (url, why) in &unanswered {
        failure.push_str(&format!(
            "; could not get cluster response from {url}: {why}"
        ));
    }
    Err(failure)
}

/// Rounds of asking every peer before a joining member gives up, and how long it may keep
/// starting new rounds.
const JOIN_ROUNDS: usize = 5;
const JOIN_DEADLINE: Duration = Duration::from_secs(15);

async fn fetch_members<H: Host>(
    host: &H,
    dialer: &Connector,
    peer_url: &str,
) -> Result<(u64, Vec<Member>), String> {
    use http_body_util::BodyExt;
    let uri: hyper::Uri = format!("{peer_url}/members")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let address = crate::net::address_of(&uri)?;
    let mut sender = dialer
        .dial(host, &uri, Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())?;
    let request = hyper::Request::get(uri)
        .header(hyper::header::HOST, address)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let answer = async {
        let response = sender.send_request(request).await.map_err(|e| {
            // A peer that refuses our certificate says so only on the first read (TLS 1.3).
            crate::tls::find_failure(&e).unwrap_or_else(|| e.to_string())
        })?;
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
        Ok::<_, String>((cluster_id, members))
    };
    crate::runtime::timeout(host, Duration::from_secs(5), answer)
        .await
        .map_err(|()| "timed out".to_owned())?
}
