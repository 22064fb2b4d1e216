//! The replicated node: raft-rs driving a v2 store, persisted by the WAL and snapshots, with
//! every effect on the world going through the runtime.
//!
//! `Node` is a cheap handle; one task (`core`) owns raft and the log. Writes are proposed with
//! an id and answered when their entry is applied; quorum reads go through raft's ReadIndex;
//! plain reads and watches are served from the local store.

pub mod admission;
mod cluster_clock;
mod control;
mod core;
mod durable;
mod raft_storage;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use raft::eraftpb::Message;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, ErrorCode};
use crate::membership::{Member, MembershipError};
use crate::request::{Op, Proposal};
use crate::runtime::Runtime;
use crate::state::State;
use crate::store::{Event, Watcher};
use crate::sync::Flag;

pub use self::core::StartError;

/// Why a member that was removed from the cluster stopped.
pub const REMOVED: &str = "this member was removed from the cluster";

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: u64,
    /// The members of a new cluster (raft ids); every member must be given the same list.
    pub peers: Vec<u64>,
    /// What the new cluster's member table starts with (names and peer URLs); members left
    /// out are listed with their id only.
    pub initial_members: Vec<crate::membership::Member>,
    /// This member's name and client URLs, announced to the cluster once it runs.
    pub publish: Option<(String, Vec<String>)>,
    pub data_dir: PathBuf,
    /// Join a running cluster (etcd's `--initial-cluster-state existing`): start from an empty
    /// log and learn everything, membership included, from the leader's snapshot.
    pub join: bool,
    /// Refuse membership changes that would leave fewer started members than the new
    /// quorum (etcd's `--strict-reconfig-check`).
    pub strict_reconfig_check: bool,
    /// Where the log lives, if not in the data dir (etcd's `--wal-dir`).
    pub wal_dir: Option<PathBuf>,
    /// The heartbeat interval: one raft tick.
    pub tick: Duration,
    /// The election timeout, in ticks; each member draws its own from [n, 2n) at start.
    pub election_ticks: usize,
    /// Applied entries between snapshots (etcd's `--snapshot-count`).
    pub snapshot_count: u64,
    /// Entries kept in memory behind a snapshot for slow followers.
    pub catch_up_entries: u64,
    /// Snapshot files kept (etcd's `--max-snapshots`).
    pub max_snapshots: usize,
    pub segment_bytes: u64,
    /// How long a client waits for its write or quorum read.
    pub request_timeout: Duration,
    /// How often the leader proposes TTL expiry when something is due.
    pub sync_interval: Duration,
    pub history_capacity: usize,
    /// A deliberately broken mode for tests: acknowledge writes without fsync. The simulator
    /// must catch it.
    pub unsafe_skip_fsync: bool,
    /// A fault point for tests: the raft task panics when it applies a write to this key, so
    /// tests can prove what happens to a member whose raft task dies. Set only by debug builds
    /// of the server (from `ETCDRS_TEST_PANIC_ON_KEY`).
    pub panic_on_key: Option<String>,
}

impl NodeConfig {
    pub fn new(id: u64, peers: Vec<u64>, data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            id,
            peers,
            initial_members: Vec::new(),
            publish: None,
            strict_reconfig_check: true,
            join: false,
            data_dir: data_dir.into(),
            wal_dir: None,
            tick: Duration::from_millis(100),
            election_ticks: 10,
            snapshot_count: 10_000,
            catch_up_entries: 5_000,
            max_snapshots: 5,
            segment_bytes: crate::wal::DEFAULT_SEGMENT_BYTES,
            request_timeout: Duration::from_secs(7),
            sync_interval: Duration::from_millis(500),
            history_capacity: crate::store::DEFAULT_HISTORY_CAPACITY,
            unsafe_skip_fsync: false,
            panic_on_key: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    #[default]
    Follower,
    Candidate,
    PreCandidate,
    Leader,
}

/// What a member knows of itself, updated after every round of the raft loop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub id: u64,
    pub term: u64,
    pub leader: u64,
    pub role: Role,
    pub commit: u64,
    pub applied: u64,
    /// Snapshots received from a leader and installed (a member that fell too far behind).
    pub snapshots_installed: u64,
    /// Set when the node stopped (a disk failure, say), with the reason.
    pub stopped: Option<String>,
    /// Set while the disk is full: nothing can be made durable, so writes are refused.
    pub disk_full: bool,
    /// When this member learnt of the current leader (etcd's `leaderInfo.startTime`).
    pub leader_since: Option<crate::timestamp::Timestamp>,
    /// On a leader, how each follower's replication stands, as raft tracks it:
    /// (id, matched index, raft's progress state). Empty elsewhere.
    pub followers: Vec<(u64, u64, &'static str)>,
}

pub(crate) struct Shared {
    state: RwLock<State>,
    status: Mutex<Status>,
    /// The cluster's time as this member knows it (see `cluster_clock`).
    clock: Mutex<cluster_clock::ClusterClock>,
    log: raft_storage::RaftStorage,
    /// Raised once, when the member stops (`Status::stopped` says why).
    stop_notice: Arc<Flag>,
    /// Raised once, when the member has caught up with the cluster as of its start (its
    /// publish for this start is applied) and may answer clients.
    ready_notice: Arc<Flag>,
    /// Peer reports and the request to stop, which must reach the raft loop however full
    /// the command channel is (see `control`).
    control: control::Control,
}

impl Shared {
    pub(crate) fn new(state: State, status: Status, log: raft_storage::RaftStorage) -> Shared {
        Shared {
            state: RwLock::new(state),
            status: Mutex::new(status),
            clock: Mutex::new(cluster_clock::ClusterClock::default()),
            log,
            stop_notice: Arc::default(),
            ready_notice: Arc::default(),
            control: control::Control::default(),
        }
    }

    fn cluster_now<H: crate::runtime::Host>(&self, host: &H) -> crate::Timestamp {
        self.clock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .now(host.elapsed(), host.now())
    }

    /// Records why the member stopped (the first reason stays) and tells whoever waits.
    pub(crate) fn mark_stopped(&self, why: String) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.stopped.get_or_insert(why);
        drop(status);
        self.stop_notice.raise();
    }

    pub(crate) fn mark_ready(&self) {
        self.ready_notice.raise();
    }
}

/// A client's request to the raft loop, through the bounded command channel.
enum Command {
    Propose {
        proposal: Proposal,
        reply: oneshot::Sender<Result<Event, Error>>,
    },
    /// A linearizable read barrier: answered once the local store has applied everything
    /// committed when the read was asked.
    Read {
        id: u64,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    /// Add, remove or re-address a member.
    ChangeMembers {
        change: MemberChange,
        reply: oneshot::Sender<Result<(), MembershipError>>,
    },
}

/// A change to the cluster's membership, as the members API asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    Add { id: u64, peer_urls: Vec<String> },
    Remove { id: u64 },
    UpdatePeerUrls { id: u64, peer_urls: Vec<String> },
}

/// News from the transport that raft should hear. It never waits behind client commands and is
/// never lost (see `control`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerReport {
    /// Messages to this peer could not be delivered.
    Unreachable(u64),
    /// A snapshot for this peer arrived.
    SnapshotSent(u64),
    /// A snapshot for this peer could not be delivered.
    SnapshotFailed(u64),
    /// A peer refused this member's messages because it was removed from the cluster: it
    /// missed its own removal (it was down or cut off when it committed) and must stop.
    RemovedByPeer,
}

/// Raft messages waiting for the member: beyond this the transport drops what arrives (raft
/// sends again), so peers that send faster than the member steps cannot grow its memory.
pub const INBOX_CAPACITY: usize = 4096;

/// Client commands (writes, quorum reads, membership changes) waiting for the raft loop.
/// Beyond it a command is refused at once with etcd's "etcdserver: too many requests" (see
/// `Error::too_many_requests`: HTTP 503 with Retry-After), and certainly was not applied.
///
/// What waits here is what arrived while the loop was busy with a round (mostly its fsync);
/// the next round takes it all (at most this many: see `Core::run`). 1,024 is 25 ms of
/// arrivals at the most a whole cluster took here (~40,000 quorum reads a second, BENCH.md),
/// dozens of healthy fsyncs: a member whose disk or loop stalls for longer turns new clients
/// away at once, instead of letting them pile up and wait out their timeout not knowing
/// whether their write happened. A client holds one command while it waits for its answer,
/// so fewer clients than this (BENCH.md's runs use 64) never meet the bound.
pub const COMMAND_CAPACITY: usize = 1024;

fn timed_out() -> Error {
    Error::new(ErrorCode::RaftInternal, "etcdserver: request timed out", 0)
}

fn no_space() -> Error {
    Error::new(ErrorCode::RaftInternal, crate::error::NO_SPACE_CAUSE, 0)
}

fn stopped() -> Error {
    Error::new(ErrorCode::RaftInternal, "etcdserver: server stopped", 0)
}

/// Why a command could not be queued for the raft loop.
fn not_queued(error: mpsc::error::TrySendError<Command>) -> Error {
    match error {
        mpsc::error::TrySendError::Full(_) => Error::too_many_requests(),
        mpsc::error::TrySendError::Closed(_) => stopped(),
    }
}

/// A handle to a running member.
#[derive(Clone)]
pub struct Node<R: Runtime> {
    rt: R,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    timeout: Duration,
}

impl<R: Runtime> Node<R> {
    /// Starts a member: a new one from `config.peers`, or an existing one from its data dir.
    /// Raft messages for it arrive on `inbox`.
    pub async fn start(
        rt: R,
        config: NodeConfig,
        inbox: mpsc::Receiver<Message>,
    ) -> Result<Node<R>, StartError> {
        let (commands, command_rx) = mpsc::channel(COMMAND_CAPACITY);
        let timeout = config.request_timeout;
        let (core, shared) = core::Core::open(rt.clone(), config, inbox, command_rx).await?;
        rt.spawn(core.run());
        Ok(Node {
            rt,
            shared,
            commands,
            timeout,
        })
    }

    /// Proposes a write and waits for its result.
    pub async fn write(&self, op: Op) -> Result<Event, Error> {
        let proposal = Proposal {
            id: self.rt.random_u64(),
            // The leader stamps the time it takes the proposal (see `cluster_clock`).
            time: self.cluster_now(),
            op,
        };
        let (reply, answer) = oneshot::channel();
        self.commands
            .try_send(Command::Propose { proposal, reply })
            .map_err(not_queued)?;
        self.wait(answer).await
    }

    /// Changes the membership and waits until the change is applied (or refused).
    pub async fn change_members(&self, change: MemberChange) -> Result<(), MembershipError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .try_send(Command::ChangeMembers { change, reply })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => MembershipError::TooManyRequests,
                mpsc::error::TrySendError::Closed(_) => {
                    MembershipError::Unavailable("etcdserver: server stopped".into())
                }
            })?;
        let deadline = self.rt.sleep(self.timeout);
        tokio::select! {
            biased;
            result = answer => result.unwrap_or_else(|_| {
                Err(MembershipError::Unavailable("etcdserver: server stopped".into()))
            }),
            _ = deadline => Err(MembershipError::Unavailable("etcdserver: request timed out".into())),
        }
    }

    /// Tells raft what the transport learnt about a peer (never blocks, never lost).
    pub fn report(&self, report: PeerReport) {
        self.shared.control.report(report);
    }

    /// Stops the member once what it is doing is on disk: the raft loop stops between rounds,
    /// after the round in progress has finished its fsync.
    pub async fn shutdown(&self) {
        self.shared.control.request_stop();
        tokio::select! {
            biased;
            () = self.shared.stop_notice.raised() => {}
            // The raft task is gone without saying so (its runtime is shutting down).
            _ = self.commands.closed() => {}
        }
    }

    /// A linearizable read (etcd's `quorum=true`), through raft's ReadIndex.
    pub async fn quorum_get(&self, key: &str, recursive: bool) -> Result<Event, Error> {
        let (reply, answer) = oneshot::channel();
        let id = self.rt.random_u64();
        self.commands
            .try_send(Command::Read { id, reply })
            .map_err(not_queued)?;
        self.wait(answer).await?;
        self.get(key, recursive)
    }

    /// A read from this member's store (etcd's default: may lag the leader).
    pub fn get(&self, key: &str, recursive: bool) -> Result<Event, Error> {
        self.state().store.get(key, recursive, self.cluster_now())
    }

    /// The cluster's time as this member reckons it: what TTLs are measured on.
    pub fn cluster_now(&self) -> crate::Timestamp {
        self.shared.cluster_now(&self.rt)
    }

    /// The cluster's members as this member has applied them.
    pub fn members(&self) -> Vec<Member> {
        self.state().members.members().cloned().collect()
    }

    /// Whether `id` was removed from the cluster, as this member has applied it.
    pub fn is_removed(&self, id: u64) -> bool {
        self.state().members.is_removed(id)
    }

    pub fn watch(
        &self,
        key: &str,
        recursive: bool,
        stream: bool,
        since_index: u64,
    ) -> Result<Watcher, Error> {
        self.state_mut()
            .store
            .watch(key, recursive, stream, since_index)
    }

    /// Waits until the member stops by itself (removed from the cluster, its disk failed, its
    /// raft task panicked) or is shut down; says why.
    pub async fn stopped(&self) -> String {
        self.shared.stop_notice.raised().await;
        self.status().stopped.unwrap_or_default()
    }

    /// Resolves once the member may answer clients: it has applied everything the cluster
    /// had committed when it started (as etcd, it publishes itself through raft and waits
    /// for that entry), so a restarted or joining member never answers from a store that
    /// lacks acknowledged writes. Never, if the member stops first.
    pub fn ready(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let ready = Arc::clone(&self.shared.ready_notice);
        async move { ready.raised().await }
    }

    /// Whether the member answers clients yet (see `ready`).
    pub fn is_ready(&self) -> bool {
        self.shared.ready_notice.is_raised()
    }

    pub fn runtime(&self) -> &R {
        &self.rt
    }

    pub fn store_stats(&self) -> crate::store::StoreStats {
        self.state().store.stats()
    }

    pub fn status(&self) -> Status {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// (index, term) of every committed entry this member still holds in memory. Committed
    /// entries never change, so every member must agree on these.
    pub fn committed_terms(&self) -> Vec<(u64, u64)> {
        use raft::Storage;
        let log = &self.shared.log.mem;
        let commit = log.rl().hard_state().commit;
        let (Ok(first), Ok(last)) = (log.first_index(), log.last_index()) else {
            return Vec::new();
        };
        (first..=commit.min(last))
            .filter_map(|index| log.term(index).ok().map(|term| (index, term)))
            .collect()
    }

    /// The applied index and the replicated part of the store at it (everything but the
    /// member's own read counters), taken together.
    pub fn store_image(&self) -> (u64, Vec<u8>) {
        // The applied index is published under the store's write lock, so with the read lock
        // held the two belong together.
        let state = self.state();
        (self.status().applied, state.replicated_image())
    }

    /// When this member and `other` are at the same applied index, whether their
    /// `store_image`s are the same; `None` when they are at different indexes.
    pub fn same_store_image(&self, other: &Node<R>) -> Option<bool> {
        let (mine, theirs) = (self.state(), other.state());
        (self.status().applied == other.status().applied)
            .then(|| mine.same_replicated_image(&theirs))
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.shared.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.shared.state.write().unwrap_or_else(|e| e.into_inner())
    }

    async fn wait<T>(&self, answer: oneshot::Receiver<Result<T, Error>>) -> Result<T, Error> {
        let deadline = self.rt.sleep(self.timeout);
        // `biased`: an unbiased select draws from a thread-local RNG that would make
        // simulation runs differ.
        tokio::select! {
            biased;
            result = answer => result.unwrap_or_else(|_| Err(stopped())),
            _ = deadline => Err(timed_out()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Host, NoPeers, Parts, SimDisk, TokioHost};

    type TestRuntime = Parts<TokioHost, SimDisk, NoPeers>;

    /// A single-member cluster on an in-memory disk, once it leads.
    async fn leader() -> Node<TestRuntime> {
        let rt = Parts {
            host: TokioHost::new(),
            disk: SimDisk::new(),
            net: Arc::new(NoPeers),
        };
        let mut config = NodeConfig::new(1, vec![1], "/member");
        config.tick = Duration::from_millis(10);
        let (_peers, inbox) = mpsc::channel(INBOX_CAPACITY);
        let node = Node::start(rt, config, inbox).await.expect("starts");
        let led = crate::runtime::timeout(node.runtime(), Duration::from_secs(10), async {
            while node.status().role != Role::Leader {
                node.runtime().sleep(Duration::from_millis(10)).await;
            }
        });
        led.await.expect("a single member leads");
        node
    }

    /// Fills the command channel with quorum reads, without yielding (so the raft loop, on
    /// this test's one thread, takes none); returns their answers.
    fn fill_the_command_channel(
        node: &Node<TestRuntime>,
    ) -> Vec<oneshot::Receiver<Result<(), Error>>> {
        let mut answers = Vec::new();
        loop {
            let (reply, answer) = oneshot::channel();
            let id = answers.len() as u64;
            match node.commands.try_send(Command::Read { id, reply }) {
                Ok(()) => answers.push(answer),
                Err(mpsc::error::TrySendError::Full(_)) => break,
                Err(e) => panic!("the channel closed: {e}"),
            }
        }
        assert_eq!(answers.len(), COMMAND_CAPACITY);
        answers
    }

    #[tokio::test]
    async fn a_client_that_finds_the_channel_full_is_refused_at_once() {
        let node = leader().await;
        let _queued = fill_the_command_channel(&node);
        // Answered within the poll: the raft loop never ran.
        let write = node.write(Op::Set {
            key: "/k".into(),
            value: Some("v".into()),
            ttl: None,
            refresh: false,
        });
        let refused = futures_util::FutureExt::now_or_never(write);
        assert_eq!(refused, Some(Err(Error::too_many_requests())));
        let read = futures_util::FutureExt::now_or_never(node.quorum_get("/k", false));
        assert_eq!(read, Some(Err(Error::too_many_requests())));
        let change = node.change_members(MemberChange::Remove { id: 9 });
        let change = futures_util::FutureExt::now_or_never(change);
        assert_eq!(change, Some(Err(MembershipError::TooManyRequests)));
    }

    /// A snapshot's outcome that never reaches raft stalls that follower for ever, and a
    /// removal that never reaches it leaves a removed member running: the command channel
    /// being full must drop neither.
    #[tokio::test]
    async fn peer_reports_reach_the_raft_loop_past_a_full_command_channel() {
        let node = leader().await;
        let queued = fill_the_command_channel(&node);
        node.report(PeerReport::SnapshotFailed(2));
        node.report(PeerReport::SnapshotSent(3));
        node.report(PeerReport::RemovedByPeer);
        let why = crate::runtime::timeout(node.runtime(), Duration::from_secs(10), node.stopped());
        assert_eq!(
            why.await.as_deref(),
            Ok("this member was removed from the cluster")
        );
        // The loop took every report, the snapshot outcomes with the removal (in one take,
        // before it: see `Control::take`).
        assert_eq!(node.shared.control.take(), control::Taken::default());
        // The clients queued behind are answered, not left waiting.
        for answer in queued {
            assert!(!matches!(answer.await, Ok(Ok(()))));
        }
    }

    #[tokio::test]
    async fn a_stop_gets_through_a_full_command_channel() {
        let node = leader().await;
        let _queued = fill_the_command_channel(&node);
        let stopping = crate::runtime::timeout(node.runtime(), Duration::from_secs(10), async {
            node.shutdown().await
        });
        assert_eq!(stopping.await, Ok(()));
        assert_eq!(node.status().stopped.as_deref(), Some("stopped"));
    }

    #[tokio::test]
    async fn after_a_full_channel_the_member_answers_as_before() {
        let node = leader().await;
        let queued = fill_the_command_channel(&node);
        for answer in queued {
            assert_eq!(answer.await.expect("answered"), Ok(()));
        }
        let set = node.write(Op::Set {
            key: "/k".into(),
            value: Some("v".into()),
            ttl: None,
            refresh: false,
        });
        assert!(set.await.is_ok());
        assert_eq!(
            node.quorum_get("/k", false)
                .await
                .expect("reads")
                .node
                .value
                .as_deref(),
            Some("v")
        );
    }
}
