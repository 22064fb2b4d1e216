//! A simulated cluster of whole members: each member is a madsim node running the production
//! server (`Config` → `Server`: the client API, the HTTP peer transport and the node) on the
//! simulation host (madsim's clock, tasks and TCP) and its own `SimDisk`. Members find each
//! other by name (`member-<n>`, a simulated DNS record) as real ones do; clients reach them only
//! over simulated TCP.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd::config::Config;
use etcd::node::{Node, Role};
use etcd::runtime::sim::SimHost;
use etcd::runtime::{Delay, DiskOp, SimDisk};
use etcd::server::{Listeners, MemberRuntime, Security, Server};
use madsim::rand::Rng;
use madsim::runtime::{Handle, NodeHandle};

use crate::clock;
use crate::network::Network;

pub type Member = Node<MemberRuntime<SimHost, SimDisk>>;

#[derive(Clone, Debug)]
pub struct Options {
    pub members: u64,
    /// The deliberately broken mode: acknowledge without fsync (`--unsafe-no-fsync`).
    pub unsafe_skip_fsync: bool,
    pub snapshot_count: u64,
    pub strict_reconfig_check: bool,
    /// Clients and peers on TLS (`https://` URLs, peers authenticated by certificate).
    pub tls: bool,
}

pub const CLIENT_PORT: u16 = 2379;
/// Where the simulated clients run (members are at 10.0.x.y).
pub const CLIENTS_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1));
pub const PEER_PORT: u16 = 2380;

/// The name, and host name, of the member started as number `n`.
pub fn name(n: u64) -> String {
    format!("member-{n}")
}

/// `http` or, with TLS, `https`.
pub fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// What every copy of the cluster shares: the machines, which members they run, which of
/// those are running now.
#[derive(Default)]
struct Registry {
    /// Every machine ever started, by the id of the member it runs.
    machines: BTreeMap<u64, Machine>,
    /// The members of the cluster, in the order they were started (removed ones leave).
    members: Vec<u64>,
    /// Members removed from the cluster.
    removed: Vec<u64>,
    /// Running members' handles.
    up: BTreeMap<u64, Member>,
    /// Members that could not start, with why (a healthy disk must always start).
    failed_starts: Vec<(u64, String)>,
    /// Members whose data was damaged at rest: they may refuse to start.
    damaged: BTreeSet<u64>,
}

/// One simulated machine.
#[derive(Clone)]
struct Machine {
    /// The number its name carries (`member-<n>`).
    n: u64,
    node: NodeHandle,
    host: SimHost,
    disk: SimDisk,
    /// The configuration the member starts with next time (an operator may change its ports).
    config: Arc<Mutex<Config>>,
}

#[derive(Clone)]
pub struct Cluster {
    pub net: Network,
    handle: Handle,
    options: Options,
    registry: Arc<Mutex<Registry>>,
}

impl Cluster {
    /// Starts the members; call inside a madsim runtime.
    pub fn start(options: &Options) -> Cluster {
        let handle = Handle::current();
        let net = Network::new();
        let cluster = Cluster {
            net,
            handle,
            options: options.clone(),
            registry: Arc::default(),
        };
        let initial: Vec<(String, String)> = (1..=options.members)
            .map(|n| (name(n), cluster.peer_url(n)))
            .collect();
        for n in 1..=options.members {
            let config = cluster.config(n, &initial, true);
            // Members' clocks disagree by up to 50 ms, as real ones do.
            let skew = Duration::from_micros(madsim::rand::thread_rng().gen_range(0..50_000));
            cluster.boot(n, config.id, config, skew);
        }
        cluster
    }

    /// Starts the members and waits until they have elected a leader.
    pub async fn start_settled(options: &Options) -> Cluster {
        let cluster = Cluster::start(options);
        cluster
            .settle(Duration::from_secs(30))
            .await
            .expect("a leader is elected");
        cluster
    }

    /// The running leader, once there is one.
    pub async fn leading_member(&self) -> Member {
        loop {
            if let Some(leader) = self.leader().and_then(|id| self.member(id)) {
                return leader;
            }
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The member's configuration, from etcd's own flags.
    fn config(&self, n: u64, initial: &[(String, String)], new: bool) -> Config {
        let cluster = initial
            .iter()
            .map(|(name, url)| format!("{name}={url}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut args = vec![
            "etcd".to_owned(),
            format!("--name={}", name(n)),
            "--data-dir=/data".to_owned(),
            format!(
                "--listen-client-urls={}://0.0.0.0:{CLIENT_PORT}",
                self.scheme()
            ),
            format!("--advertise-client-urls={}", self.client_url(n)),
            format!("--listen-peer-urls={}://0.0.0.0:{PEER_PORT}", self.scheme()),
            format!("--initial-advertise-peer-urls={}", self.peer_url(n)),
            format!("--initial-cluster={cluster}"),
            format!(
                "--initial-cluster-state={}",
                if new { "new" } else { "existing" }
            ),
            "--initial-cluster-token=sim".to_owned(),
            format!("--snapshot-count={}", self.options.snapshot_count),
            format!(
                "--strict-reconfig-check={}",
                self.options.strict_reconfig_check
            ),
        ];
        if self.options.unsafe_skip_fsync {
            args.push("--unsafe-no-fsync".to_owned());
        }
        if self.options.tls {
            // The flags an operator gives; the simulator never reads these paths, it hands the
            // member its certificates in memory (`tls::material`).
            args.extend(
                [
                    "--cert-file=/tls/member.pem",
                    "--key-file=/tls/member.key",
                    "--peer-cert-file=/tls/member.pem",
                    "--peer-key-file=/tls/member.key",
                    "--peer-client-cert-auth",
                    "--peer-trusted-ca-file=/tls/ca.pem",
                ]
                .map(str::to_owned),
            );
        }
        let mut config = Config::from_args(args)
            .expect("the simulator's flags parse")
            .expect("the simulator's flags make a configuration");
        // Small segments, so that runs cut and purge them often.
        config.wal_segment_bytes = 16 << 10;
        config
    }

    /// Starts machine `n` running the member `config` describes, whose id is `id`; restarting
    /// the machine starts the member again from its disk.
    fn boot(&self, n: u64, id: u64, config: Config, skew: Duration) {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, (n >> 8) as u8, (n & 0xff) as u8));
        let (host, disk) = (SimHost::new(skew), SimDisk::new());
        disk.set_latency(disk_latency);
        let config = Arc::new(Mutex::new(config));
        let registry = Arc::clone(&self.registry);
        let (machine_host, machine_disk, machine_config) =
            (host.clone(), disk.clone(), Arc::clone(&config));
        let node = self
            .handle
            .create_node()
            .name(name(n))
            .ip(ip)
            .init(move || {
                let (host, disk, registry) = (
                    machine_host.clone(),
                    machine_disk.clone(),
                    Arc::clone(&registry),
                );
                let config = machine_config
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                async move { run_member(id, config, host, disk, registry).await }
            })
            .build();
        madsim::net::NetSim::current().add_dns_record(&name(n), ip);
        self.net.add(id, node.id());
        let mut registry = lock(&self.registry);
        registry.machines.insert(
            id,
            Machine {
                n,
                node,
                host,
                disk,
                config,
            },
        );
        registry.members.push(id);
    }

    /// Starts a member that was added at run time with id `id` and peer URL
    /// [`peer_url`]`(id)`: it joins with an empty log (`--initial-cluster-state existing`),
    /// learns its id from the cluster, and everything else from the leader.
    pub fn join(&self, id: u64) {
        self.join_as(id, id);
    }

    /// Starts machine `n` ([`peer_url`]`(n)`) as the member the cluster admitted as `id`.
    pub fn join_as(&self, n: u64, id: u64) {
        // As an operator writes it: the members as they are now, where they listen now.
        let mut initial: Vec<(String, String)> = self
            .ids()
            .into_iter()
            .map(|id| {
                let n = self.machine(id).n;
                (name(n), self.peer_url_at(id, self.peer_port(id)))
            })
            .collect();
        initial.push((name(n), self.peer_url(n)));
        let config = self.config(n, &initial, false);
        self.boot(n, id, config, Duration::ZERO);
    }

    /// The members of the cluster (removed ones not), in the order they were started.
    pub fn ids(&self) -> Vec<u64> {
        lock(&self.registry).members.clone()
    }

    /// Members removed from the cluster.
    pub fn removed(&self) -> Vec<u64> {
        lock(&self.registry).removed.clone()
    }

    /// Notes that `id` was removed from the cluster: it is no longer expected to run (it
    /// should stop by itself once it learns of its removal).
    pub fn retire(&self, id: u64) {
        let mut registry = lock(&self.registry);
        registry.members.retain(|&m| m != id);
        registry.removed.push(id);
    }

    /// Whether a machine was ever started for member `id`.
    pub fn started(&self, id: u64) -> bool {
        lock(&self.registry).machines.contains_key(&id)
    }

    /// Whether some machine is called `member-<n>`.
    pub fn has_machine(&self, n: u64) -> bool {
        lock(&self.registry).machines.values().any(|m| m.n == n)
    }

    /// The peer URL member `id` has when it listens on `port`.
    pub fn peer_url_at(&self, id: u64, port: u16) -> String {
        format!("{}://{}:{port}", self.scheme(), name(self.machine(id).n))
    }

    fn scheme(&self) -> &'static str {
        scheme(self.options.tls)
    }

    /// Where member number `n` listens for peers at first.
    pub fn peer_url(&self, n: u64) -> String {
        format!("{}://{}:{PEER_PORT}", self.scheme(), name(n))
    }

    pub fn client_url(&self, n: u64) -> String {
        format!("{}://{}:{CLIENT_PORT}", self.scheme(), name(n))
    }

    /// The port member `id` listens on for peers (from its next start, if it was just moved).
    pub fn peer_port(&self, id: u64) -> u16 {
        let machine = self.machine(id);
        let config = machine.config.lock().unwrap_or_else(|e| e.into_inner());
        config
            .listen_peer_urls
            .first()
            .map_or(PEER_PORT, |u| u.port)
    }

    /// Moves a member's peer listener to `port` from its next start on; says its new peer URL.
    pub fn move_peer_port(&self, id: u64, port: u16) -> String {
        let url = self.peer_url_at(id, port);
        let registry = lock(&self.registry);
        let machine = &registry.machines[&id];
        let mut config = machine.config.lock().unwrap_or_else(|e| e.into_inner());
        config.listen_peer_urls =
            vec![
                etcd::config::Url::parse(&format!("{}://0.0.0.0:{port}", self.scheme()))
                    .expect("a valid URL"),
            ];
        config.advertise_peer_urls = vec![url.clone()];
        url
    }

    /// Moves a member's wall clock by `by` nanoseconds, either way (its timers, on the
    /// monotonic clock, are not affected).
    pub fn jump_clock(&self, id: u64, by: i64) {
        self.machine(id).host.jump_clock(by);
    }

    /// Makes member `id`'s wall clock run `ppm` parts per million fast or slow (0: no more).
    pub fn drift_clock(&self, id: u64, ppm: i64) {
        self.machine(id).host.set_drift(ppm);
    }

    /// Member `id`'s wall-clock error now, in nanoseconds.
    pub fn clock_error(&self, id: u64) -> i64 {
        self.machine(id).host.skew_nanos()
    }

    /// Resets every connection member `id` has open.
    pub fn reset_connections(&self, id: u64) {
        self.machine(id).host.reset_connections();
    }

    /// Makes member `id`'s connections break once they carried `limit` bytes (0: never).
    pub fn reset_connections_after(&self, id: u64, limit: u64) {
        self.machine(id).host.reset_connections_after(limit);
    }

    fn machine(&self, id: u64) -> Machine {
        lock(&self.registry).machines[&id].clone()
    }

    pub fn disk(&self, id: u64) -> SimDisk {
        self.machine(id).disk
    }

    /// Makes member `id`'s syncs take up to seconds (an fsync stalled behind a busy disk), or
    /// puts its disk back to normal.
    pub fn slow_disk(&self, id: u64, slow: bool) {
        let disk = self.disk(id);
        if slow {
            disk.set_latency(slow_disk_latency);
        } else {
            disk.set_latency(disk_latency);
        }
    }

    /// The client URL of member `id`.
    pub fn client_url_of(&self, id: u64) -> String {
        self.client_url(self.machine(id).n)
    }

    /// The client URLs of the cluster's members.
    pub fn client_urls(&self) -> Vec<String> {
        let registry = lock(&self.registry);
        registry
            .members
            .iter()
            .map(|id| self.client_url(registry.machines[id].n))
            .collect()
    }

    pub fn member(&self, id: u64) -> Option<Member> {
        lock(&self.registry).up.get(&id).cloned()
    }

    pub fn up(&self) -> Vec<u64> {
        lock(&self.registry).up.keys().copied().collect()
    }

    /// Members that could not start, with why; a member whose data was damaged at rest may
    /// refuse, and is not listed.
    pub fn failed_starts(&self) -> Vec<(u64, String)> {
        let registry = lock(&self.registry);
        registry
            .failed_starts
            .iter()
            .filter(|(id, _)| !registry.damaged.contains(id))
            .cloned()
            .collect()
    }

    /// Why member `id` last failed to start, if it did.
    pub fn failed_start(&self, id: u64) -> Option<String> {
        let registry = lock(&self.registry);
        registry
            .failed_starts
            .iter()
            .rev()
            .find(|(failed, _)| *failed == id)
            .map(|(_, why)| why.clone())
    }

    /// Flips one bit, durably, somewhere in what member `id` wrote to its log and snapshots
    /// (the member should be down); says where. From now on it may refuse to start.
    pub fn damage_at_rest(&self, id: u64) -> Option<String> {
        let disk = self.disk(id);
        let files = disk.written_under(Path::new("/data/member"));
        let total: usize = files.iter().map(|(_, len)| len).sum();
        if total == 0 {
            return None;
        }
        lock(&self.registry).damaged.insert(id);
        let mut at = madsim::rand::thread_rng().gen_range(0..total);
        for (path, len) in files {
            if at < len {
                disk.corrupt(&path, at);
                return Some(format!("{} byte {at}", path.display()));
            }
            at -= len;
        }
        None
    }

    /// Stops a member dead: its tasks end wherever they are, its connections reset.
    pub fn kill(&self, id: u64) {
        lock(&self.registry).up.remove(&id);
        self.handle.kill(self.machine(id).node.id());
    }

    /// A power cut: the member dies and its disk keeps only what was synced, plus, at random,
    /// nothing more, the first sectors of what was written after, or any sectors of it.
    pub fn crash(&self, id: u64) {
        self.kill(id);
        let mut rng = madsim::rand::thread_rng();
        let disk = self.disk(id);
        match rng.gen_range(0..3) {
            0 => disk.crash(|_| 0),
            1 => disk.crash(|unsynced| rng.gen_range(0..=unsynced)),
            _ => disk.crash_scattered(|| rng.gen_bool(0.5)),
        }
    }

    /// Starts the member again from its disk (killing it first if it still runs).
    pub fn restart(&self, id: u64) {
        lock(&self.registry).up.remove(&id);
        let node = self.machine(id).node.id();
        // madsim's restart alone keeps the old process's sockets bound (its listeners would
        // refuse the new process's bind); a kill closes them.
        self.handle.kill(node);
        self.handle.restart(node);
    }

    pub fn pause(&self, id: u64) {
        self.handle.pause(self.machine(id).node.id());
    }

    pub fn resume(&self, id: u64) {
        self.handle.resume(self.machine(id).node.id());
    }

    /// The member every running member that knows a leader agrees on, if it is up.
    pub fn leader(&self) -> Option<u64> {
        let up = lock(&self.registry).up.clone();
        up.values()
            .map(|m| m.status())
            .filter(|s| s.role == Role::Leader)
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }

    /// Waits until every member is up, one leads, and all have applied the same index.
    pub async fn settle(&self, within: Duration) -> Result<u64, String> {
        let deadline = clock::now() + within;
        loop {
            let ids = self.ids();
            let up: BTreeMap<u64, Member> = lock(&self.registry)
                .up
                .iter()
                .filter(|(id, _)| ids.contains(id))
                .map(|(id, m)| (*id, m.clone()))
                .collect();
            let statuses: Vec<_> = up.values().map(|m| m.status()).collect();
            let leaders = statuses.iter().filter(|s| s.role == Role::Leader).count();
            let applied: Vec<u64> = statuses.iter().map(|s| s.applied).collect();
            let all_up = up.len() == ids.len();
            if all_up
                && leaders == 1
                && applied.windows(2).all(|w| w[0] == w[1])
                && statuses
                    .iter()
                    .all(|s| s.applied == s.commit && s.stopped.is_none())
            {
                return Ok(applied[0]);
            }
            if clock::now() >= deadline {
                if std::env::var_os("SIM_DUMP").is_some() {
                    for (id, m) in &up {
                        let table: Vec<String> = m
                            .members()
                            .iter()
                            .map(|m| format!("{:x}@{:?}", m.id, m.peer_urls))
                            .collect();
                        eprintln!("{id:x}: table {table:?}");
                    }
                }
                return Err(format!(
                    "the cluster did not settle: up {:?}, statuses {statuses:?}, failed starts {:?}",
                    up.keys().collect::<Vec<_>>(),
                    self.failed_starts()
                ));
            }
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How long a simulated disk takes: page-cache reads and writes are quick, a sync takes a few
/// milliseconds and, now and then, half a second (a disk that stalls). Operations take effect
/// only when their wait ends, so crashes land between any two steps of the raft loop: between
/// writing and syncing, between syncing and sending, between applying and snapshotting.
fn disk_latency(op: DiskOp) -> Option<Delay> {
    let mut rng = madsim::rand::thread_rng();
    let wait = match op {
        DiskOp::Read | DiskOp::Write => Duration::from_micros(rng.gen_range(5..50)),
        DiskOp::Sync if rng.gen_bool(0.005) => Duration::from_millis(rng.gen_range(50..500)),
        DiskOp::Sync => Duration::from_micros(rng.gen_range(500..5_000)),
    };
    Some(Box::pin(madsim::time::sleep(wait)))
}

/// A disk whose syncs stall: each takes a fifth of a second to two seconds.
fn slow_disk_latency(op: DiskOp) -> Option<Delay> {
    let mut rng = madsim::rand::thread_rng();
    let wait = match op {
        DiskOp::Read | DiskOp::Write => Duration::from_micros(rng.gen_range(50..5_000)),
        DiskOp::Sync => Duration::from_millis(rng.gen_range(200..2_000)),
    };
    Some(Box::pin(madsim::time::sleep(wait)))
}

/// A member's `main`: binds its ports, starts the server, and runs until madsim kills the
/// machine (when this future returns, madsim ends the machine and every task it spawned).
async fn run_member(
    id: u64,
    config: Config,
    host: SimHost,
    disk: SimDisk,
    registry: Arc<Mutex<Registry>>,
) {
    let refused_before = disk.refused_count();
    let security = if config.peer_tls.cert.is_some() {
        let tls = crate::tls::material();
        Security {
            clients: Some(tls.clients.clone()),
            peers: Some(tls.peers.clone()),
            peer_dialer: tls.peer_dialer.clone(),
        }
    } else {
        Security::default()
    };
    let started = match Listeners::bind(&host, &config, &security).await {
        Ok(listeners) => Server::start(config, host, disk.clone(), listeners).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(server) => {
            lock(&registry).up.insert(id, server.node().clone());
            // A member that stops by itself (removed, or its disk failed) closes its listeners,
            // as the process would by exiting; it stays registered, stopped, for the checks.
            let _ = server.stopped().await;
            server.shutdown().await;
        }
        // A start that the disk failed (a disk-error fault) is what should happen; any other
        // failure to start is a bug.
        Err(_) if disk.refused_count() > refused_before => {}
        Err(e) => lock(&registry).failed_starts.push((id, e)),
    }
    std::future::pending::<()>().await
}

fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(|e| e.into_inner())
}
