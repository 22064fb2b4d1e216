//! A simulated cluster: N members, each a madsim node running the real `Node` on the
//! simulation runtime, with its own `SimDisk`, all on one `SimNet`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd::node::{Node, NodeConfig, Role};
use etcd::runtime::sim::{SimNet, SimRuntime};
use etcd::runtime::SimDisk;
use madsim::rand::Rng;
use madsim::runtime::{Handle, NodeHandle};

use crate::clock;

pub type Member = Node<SimRuntime>;

#[derive(Clone, Debug)]
pub struct Options {
    pub members: u64,
    /// The deliberately broken mode: acknowledge without fsync.
    pub unsafe_skip_fsync: bool,
    pub snapshot_count: u64,
    pub strict_reconfig_check: bool,
}

#[derive(Default)]
struct Registry {
    /// Running members' handles.
    up: BTreeMap<u64, Member>,
    /// Members that could not start, with why (a healthy disk must always start).
    failed_starts: Vec<(u64, String)>,
}

#[derive(Clone)]
pub struct Cluster {
    pub ids: Vec<u64>,
    pub net: SimNet,
    pub disks: BTreeMap<u64, SimDisk>,
    handle: Handle,
    nodes: BTreeMap<u64, NodeHandle>,
    registry: Arc<Mutex<Registry>>,
}

impl Cluster {
    /// Starts the members; call inside a madsim runtime.
    pub fn start(options: &Options) -> Cluster {
        let handle = Handle::current();
        let ids: Vec<u64> = (1..=options.members).collect();
        let net = SimNet::new();
        let registry = Arc::new(Mutex::new(Registry::default()));
        let mut disks = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        for &id in &ids {
            let disk = SimDisk::new();
            disks.insert(id, disk.clone());
            // Members' clocks disagree by up to 50 ms, as real ones do.
            let skew = Duration::from_micros(madsim::rand::thread_rng().gen_range(0..50_000));
            let mut config = NodeConfig::new(id, ids.clone(), "/data");
            config.unsafe_skip_fsync = options.unsafe_skip_fsync;
            config.strict_reconfig_check = options.strict_reconfig_check;
            config.snapshot_count = options.snapshot_count;
            config.catch_up_entries = options.snapshot_count / 2;
            config.segment_bytes = 16 << 10;
            config.request_timeout = Duration::from_secs(3);
            config.initial_members = ids
                .iter()
                .map(|&m| etcd::membership::Member {
                    id: m,
                    name: format!("member-{m}"),
                    peer_urls: vec![format!("http://member-{m}:2380")],
                    client_urls: Vec::new(),
                })
                .collect();
            config.publish = Some((
                format!("member-{id}"),
                vec![format!("http://member-{id}:2379")],
            ));
            let node = spawn_member(&handle, config, disk, &net, &registry, skew);
            nodes.insert(id, node);
        }
        Cluster {
            ids,
            net,
            disks,
            handle,
            nodes,
            registry,
        }
    }

    /// Starts a member that was added at run time: it joins with an empty log and learns
    /// everything from the leader (etcd's `--initial-cluster-state existing`).
    pub fn join(&mut self, id: u64) {
        let disk = SimDisk::new();
        self.disks.insert(id, disk.clone());
        let mut config = NodeConfig::new(id, Vec::new(), "/data");
        config.join = true;
        config.request_timeout = Duration::from_secs(3);
        config.publish = Some((
            format!("member-{id}"),
            vec![format!("http://member-{id}:2379")],
        ));
        let node = spawn_member(
            &self.handle,
            config,
            disk,
            &self.net,
            &self.registry,
            Duration::ZERO,
        );
        self.nodes.insert(id, node);
        self.ids.push(id);
    }

    pub fn member(&self, id: u64) -> Option<Member> {
        lock(&self.registry).up.get(&id).cloned()
    }

    pub fn up(&self) -> Vec<u64> {
        lock(&self.registry).up.keys().copied().collect()
    }

    pub fn failed_starts(&self) -> Vec<(u64, String)> {
        lock(&self.registry).failed_starts.clone()
    }

    /// Stops a member dead: its tasks end wherever they are.
    pub fn kill(&self, id: u64) {
        lock(&self.registry).up.remove(&id);
        self.handle.kill(self.nodes[&id].id());
    }

    /// A power cut: the member dies and its disk keeps only what was synced, plus, at random,
    /// nothing more, the first sectors of what was written after, or any sectors of it.
    pub fn crash(&self, id: u64) {
        self.kill(id);
        let mut rng = madsim::rand::thread_rng();
        let disk = &self.disks[&id];
        match rng.gen_range(0..3) {
            0 => disk.crash(|_| 0),
            1 => disk.crash(|unsynced| rng.gen_range(0..=unsynced)),
            _ => disk.crash_scattered(|| rng.gen_bool(0.5)),
        }
    }

    pub fn restart(&self, id: u64) {
        lock(&self.registry).up.remove(&id);
        self.handle.restart(self.nodes[&id].id());
    }

    pub fn pause(&self, id: u64) {
        self.handle.pause(self.nodes[&id].id());
    }

    pub fn resume(&self, id: u64) {
        self.handle.resume(self.nodes[&id].id());
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

    /// A running member chosen at random, preferring none in particular.
    pub fn any_member(&self) -> Option<Member> {
        let up = lock(&self.registry).up.clone();
        if up.is_empty() {
            return None;
        }
        let pick = madsim::rand::thread_rng().gen_range(0..up.len());
        up.into_values().nth(pick)
    }

    /// Waits until every member is up, one leads, and all have applied the same index.
    pub async fn settle(&self, within: Duration) -> Result<u64, String> {
        let deadline = clock::now() + within;
        loop {
            let up = lock(&self.registry).up.clone();
            let statuses: Vec<_> = up.values().map(|m| m.status()).collect();
            let leaders = statuses.iter().filter(|s| s.role == Role::Leader).count();
            let applied: Vec<u64> = statuses.iter().map(|s| s.applied).collect();
            let all_up = up.len() == self.ids.len();
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
                return Err(format!(
                    "the cluster did not settle: up {:?}, statuses {statuses:?}",
                    up.keys().collect::<Vec<_>>()
                ));
            }
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A madsim node running one member; restarting the node starts the member again.
fn spawn_member(
    handle: &Handle,
    config: NodeConfig,
    disk: SimDisk,
    net: &SimNet,
    registry: &Arc<Mutex<Registry>>,
    skew: Duration,
) -> NodeHandle {
    let id = config.id;
    let (net, registry) = (net.clone(), Arc::clone(registry));
    handle
        .create_node()
        .name(format!("member-{id}"))
        .init(move || {
            let (disk, net, registry, config) = (
                disk.clone(),
                net.clone(),
                Arc::clone(&registry),
                config.clone(),
            );
            async move {
                let inbox = net.listen(id);
                let rt = SimRuntime::new(id, disk.clone(), net, skew);
                match Node::start(rt, config, inbox).await {
                    Ok(member) => {
                        lock(&registry).up.insert(id, member);
                    }
                    Err(e) => lock(&registry).failed_starts.push((id, e.to_string())),
                }
                // This future is the member's `main`: when it returns, madsim ends the member
                // and every task it spawned.
                std::future::pending::<()>().await
            }
        })
        .build()
}

fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(|e| e.into_inner())
}
