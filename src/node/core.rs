//! The task that owns raft: it steps messages, ticks, proposes, and handles each `Ready` in the
//! order that keeps the log safe — send what may go before persistence, install a snapshot,
//! apply what is committed, append and fsync new entries and hard state, send what had to wait
//! for the fsync, then advance and persist the new commit index.
//!
//! Group commit falls out of the loop: everything that arrived while the last fsync ran is
//! drained into the next `Ready`, so one fsync covers all of it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfState, EntryType, HardState, Message, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole, Storage};
use tokio::sync::{mpsc, oneshot};

use super::admission;
use super::durable::Durable;
use super::raft_storage::RaftStorage;
use super::{
    no_space, stopped, Command, MemberChange, NodeConfig, PeerReport, Role, Shared, Status,
    COMMAND_CAPACITY, INBOX_CAPACITY,
};
use crate::error::Error;
use crate::membership::MembershipError;
use crate::membership::{Member, Membership};
use crate::request::{self, Applied, Op, Proposal};
use crate::runtime::{Runtime, Transport};
use crate::snap::{SnapError, Snapshotter};
use crate::state::State;
use crate::store::Store;
use crate::wal::{Wal, WalError};

#[derive(Debug)]
pub enum StartError {
    Wal(WalError),
    Snap(SnapError),
    Raft(raft::Error),
    /// The data on disk cannot be used as it is.
    Invalid(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Wal(e) => write!(f, "{e}"),
            StartError::Snap(e) => write!(f, "{e}"),
            StartError::Raft(e) => write!(f, "raft: {e}"),
            StartError::Invalid(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<WalError> for StartError {
    fn from(e: WalError) -> Self {
        StartError::Wal(e)
    }
}

impl From<SnapError> for StartError {
    fn from(e: SnapError) -> Self {
        StartError::Snap(e)
    }
}

impl From<raft::Error> for StartError {
    fn from(e: raft::Error) -> Self {
        StartError::Raft(e)
    }
}

/// Why the loop stopped.
type Fatal = String;

/// How long a member whose disk is full waits before it tries to write again.
const ROOM_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A failed disk step: `Ok` with the reason when the disk was full (the step may be tried
/// again), `Err` when the member must stop.
struct DiskFull(Result<String, Fatal>);

impl From<WalError> for DiskFull {
    fn from(e: WalError) -> Self {
        DiskFull(match e {
            WalError::NoSpace(_) => Ok(e.to_string()),
            e => Err(e.to_string()),
        })
    }
}

impl From<SnapError> for DiskFull {
    fn from(e: SnapError) -> Self {
        DiskFull(if e.is_no_space() {
            Ok(e.to_string())
        } else {
            Err(e.to_string())
        })
    }
}

const REMOVED: &str = "this member was removed from the cluster";

pub(super) struct Core<R: Runtime> {
    rt: R,
    config: NodeConfig,
    raw: RawNode<RaftStorage>,
    storage: RaftStorage,
    wal: Wal<R::Disk>,
    snapshotter: Snapshotter<R::Disk>,
    shared: Arc<Shared>,
    inbox: Option<mpsc::Receiver<Message>>,
    commands: mpsc::Receiver<Command>,
    /// What is synced to disk: no message sent may vouch for more (see `durable`).
    durable: Durable,
    /// The election timeout last drawn, and the (term, role, leader) it was drawn for (see
    /// `redraw_election_timeout`).
    election_timeout: usize,
    election_epoch: (u64, u8, u64),
    waiters: BTreeMap<u64, oneshot::Sender<Result<crate::store::Event, Error>>>,
    /// Proposals raft dropped (no leader yet); tried again every tick while their client waits.
    unproposed: Vec<(u64, Vec<u8>)>,
    /// Read barriers waiting for raft to confirm the leader's commit index.
    reads: BTreeMap<u64, oneshot::Sender<Result<(), Error>>>,
    /// Read barriers confirmed at an index, waiting for it to be applied.
    confirmed_reads: Vec<(u64, oneshot::Sender<Result<(), Error>>)>,
    applied: u64,
    last_snapshot: u64,
    ticks: u64,
    last_sync_tick: u64,
    /// Set once this member applied its own removal: the tick at which it stops. Like etcd
    /// (which waits ten ticks), it goes on talking to its peers until then, so that a removed
    /// leader tells the others the removal committed; stopping at once could leave them in the
    /// old configuration, waiting forever for its vote.
    leaving_at: Option<u64>,
    /// A configuration change was applied since the commit index was last made durable.
    /// A member's configuration follows from its commit index: if a power cut made it forget
    /// that a change committed, it could restart in a configuration whose other voters are
    /// gone (removed and stopped), with no one left to tell it otherwise.
    conf_applied: bool,
    /// The in-memory commit index is ahead of the one in the log.
    commit_unsaved: bool,
    /// Clients waiting for a membership change, by request id.
    member_waiters: BTreeMap<u64, oneshot::Sender<Result<(), MembershipError>>>,
    /// raft takes one membership change at a time (a second one becomes an empty entry): the
    /// rest wait here, with their request ids.
    conf_queue: std::collections::VecDeque<(u64, ConfChange)>,
    conf_pending: Option<u64>,
    /// When this member last proposed its attributes (etcd's publish).
    publish_sent_at: Option<u64>,
    /// Peer messages refused before they reached raft, and when that was last logged.
    refused_messages: u64,
    last_refusal_logged: Option<std::time::Duration>,
    /// When a snapshot was last skipped for want of room, to say so once a while.
    snapshot_skipped_at: Option<std::time::Duration>,
}

/// What a membership change entry carries besides raft's own fields: the request to answer,
/// the new member's peer URLs, and whether the proposer asked for the strict check (so every
/// member decides the same way when it applies the entry).
#[derive(serde::Serialize, serde::Deserialize)]
struct ConfContext {
    request: u64,
    peer_urls: Vec<String>,
    strict: bool,
}

fn data_paths(config: &NodeConfig) -> (PathBuf, PathBuf) {
    let member = config.data_dir.join("member");
    let wal = config.wal_dir.clone().unwrap_or_else(|| member.join("wal"));
    (wal, member.join("snap"))
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl<R: Runtime> Core<R> {
    pub(super) async fn open(
        rt: R,
        config: NodeConfig,
        inbox: mpsc::Receiver<Message>,
        commands: mpsc::Receiver<Command>,
    ) -> Result<(Core<R>, Arc<Shared>), StartError> {
        let disk = rt.disk().clone();
        let (wal_dir, snap_dir) = data_paths(&config);
        let snapshotter = Snapshotter::new(disk.clone(), &snap_dir).await?;
        if !Wal::exists(&disk, &wal_dir).await? {
            if config.join {
                Wal::create(disk.clone(), &wal_dir, 1, config.segment_bytes).await?;
            } else {
                bootstrap(&disk, &config, &snapshotter, &wal_dir).await?;
            }
        }
        let snapshot = match snapshotter.load_newest().await? {
            Some(snapshot) => snapshot,
            // A member joining a running cluster has nothing yet: the leader sends a snapshot.
            None if config.join => Snapshot::default(),
            None => {
                return Err(StartError::Invalid(
                    "no usable snapshot in the data dir".into(),
                ))
            }
        };
        let meta = snapshot.get_metadata().clone();
        let state = if meta.index == 0 {
            State {
                store: Store::with_history_capacity(config.history_capacity),
                members: Membership::default(),
            }
        } else {
            State::restore(&snapshot.data)
                .map_err(|e| StartError::Invalid(format!("snapshot at {}: {e}", meta.index)))?
        };
        let (wal, recovered) = Wal::open(disk, &wal_dir, meta.index, config.segment_bytes).await?;
        // What a crash left unfinished and start-up cut off: the operator hears of it.
        for repair in &recovered.repairs {
            eprintln!("etcd: {repair}");
        }
        if let Some((index, _)) = recovered.installed_snapshot {
            return Err(StartError::Invalid(format!(
                "the log continues from a snapshot at {index}, but the newest usable snapshot is at {}",
                meta.index
            )));
        }

        let storage = RaftStorage::default();
        if meta.index > 0 {
            storage.mem.wl().apply_snapshot(snapshot.clone())?;
        }
        storage.mem.wl().append(&recovered.entries)?;
        let last_index = storage.mem.last_index()?;
        let mut hard_state = recovered.hard_state;
        hard_state.term = hard_state.term.max(meta.term);
        hard_state.commit = hard_state.commit.clamp(meta.index, last_index);
        storage.mem.wl().set_hardstate(hard_state.clone());
        storage.set_latest(snapshot);

        let ticks = config.election_ticks.max(2);
        let raft_config = raft::Config {
            id: config.id,
            election_tick: ticks,
            heartbeat_tick: 1,
            applied: meta.index,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            min_election_tick: ticks,
            max_election_tick: 2 * ticks,
            ..Default::default()
        };
        let raw = RawNode::new(&raft_config, storage.clone(), &logger())?;

        let shared = Arc::new(Shared::new(
            state,
            Status {
                id: config.id,
                applied: meta.index,
                ..Status::default()
            },
            storage.clone(),
        ));
        let mut core = Core {
            rt,
            config,
            raw,
            storage,
            wal,
            snapshotter,
            shared: Arc::clone(&shared),
            inbox: Some(inbox),
            commands,
            election_timeout: 0,
            election_epoch: (0, 0, 0),
            durable: Durable {
                term: hard_state.term,
                vote: hard_state.vote,
                last_index,
            },
            waiters: BTreeMap::new(),
            unproposed: Vec::new(),
            reads: BTreeMap::new(),
            confirmed_reads: Vec::new(),
            applied: meta.index,
            last_snapshot: meta.index,
            ticks: 0,
            last_sync_tick: 0,
            member_waiters: BTreeMap::new(),
            conf_queue: std::collections::VecDeque::new(),
            conf_pending: None,
            leaving_at: None,
            conf_applied: false,
            commit_unsaved: false,
            refused_messages: 0,
            last_refusal_logged: None,
            snapshot_skipped_at: None,
            publish_sent_at: None,
        };
        core.redraw_election_timeout();
        Ok((core, shared))
    }

    pub(super) async fn run(mut self) {
        let _watch = StopOnPanic(Arc::clone(&self.shared));
        let tick = self.config.tick;
        let mut next_tick = self.rt.elapsed() + tick;
        loop {
            let sleep = self.rt.sleep(next_tick.saturating_sub(self.rt.elapsed()));
            tokio::select! {
                biased;
                // Peer reports and a stop first: they never wait behind clients.
                _ = self.shared.control.woken() => {}
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return, // every handle is gone
                },
                message = recv_or_wait(&mut self.inbox) => match message {
                    Some(message) => self.step(message),
                    None => self.inbox = None,
                },
                _ = sleep => {}
            }
            if !self.take_control() {
                return;
            }
            // Take what is already waiting, so one Ready (and one fsync) serves it all; but at
            // most a queue-full of each, what could have been waiting when the round began, so
            // that clients or peers sending as fast as the loop takes cannot hold it here while
            // its tick and its Ready (and the fsync that answers them) wait.
            for _ in 0..COMMAND_CAPACITY {
                let Ok(command) = self.commands.try_recv() else {
                    break;
                };
                self.command(command);
            }
            for _ in 0..INBOX_CAPACITY {
                let Some(message) = self.inbox.as_mut().and_then(|i| i.try_recv().ok()) else {
                    break;
                };
                self.step(message);
            }
            let now = self.rt.elapsed();
            if now >= next_tick {
                next_tick = now + tick;
                self.tick();
                if self.leaving_at.is_some_and(|at| self.ticks >= at) {
                    self.stop(REMOVED.into());
                    return;
                }
            }
            self.redraw_election_timeout();
            if self.raw.has_ready() {
                if let Err(why) = self.handle_ready().await {
                    self.stop(why);
                    return;
                }
            }
        }
    }

    fn step(&mut self, message: Message) {
        // A member on its way out only sends: raft-rs panics when a leader that removed
        // itself counts an append response towards a commit.
        if self.leaving_at.is_some() {
            return;
        }
        let raft = &self.raw.raft;
        let view = admission::View {
            id: self.config.id,
            term: raft.term,
            last_index: raft.raft_log.last_index(),
        };
        if let Err(refusal) = admission::check(&message, &view) {
            self.refused_message(&message, refusal);
            return;
        }
        // Messages from members raft no longer knows, or stale ones, are refused inside raft.
        let _ = self.raw.step(message);
    }

    /// Says why a peer message was refused, at most once a second so that a flood of forged
    /// messages cannot flood the log too.
    fn refused_message(&mut self, message: &Message, refusal: admission::Refusal) {
        self.refused_messages += 1;
        let now = self.rt.elapsed();
        if self
            .last_refusal_logged
            .is_some_and(|at| now < at + std::time::Duration::from_secs(1))
        {
            return;
        }
        self.last_refusal_logged = Some(now);
        eprintln!(
            "etcd: refused a {:?} from {:x}: {} ({} refused so far)",
            message.get_msg_type(),
            message.from,
            refusal.0,
            self.refused_messages
        );
    }

    /// Handles one client command.
    fn command(&mut self, command: Command) {
        if self.leaving_at.is_some() {
            match command {
                Command::Propose { reply, .. } => {
                    let _ = reply.send(Err(stopped()));
                }
                Command::Read { reply, .. } => {
                    let _ = reply.send(Err(stopped()));
                }
                Command::ChangeMembers { reply, .. } => {
                    let _ = reply.send(Err(MembershipError::Unavailable(REMOVED.into())));
                }
            }
            return;
        }
        match command {
            Command::Propose { proposal, reply } => {
                let id = proposal.id;
                self.waiters.insert(id, reply);
                self.propose(id, proposal.encode());
            }
            Command::Read { id, reply } => {
                self.reads.insert(id, reply);
                self.raw.read_index(id.to_le_bytes().to_vec());
            }
            Command::ChangeMembers { change, reply } => self.change_members(change, reply),
        }
    }

    /// Hands raft what the transport reported and honours a stop (see `control`); `false`
    /// when the member must stop now.
    fn take_control(&mut self) -> bool {
        let taken = self.shared.control.take();
        for report in taken.reports {
            match report {
                PeerReport::Unreachable(id) => self.raw.report_unreachable(id),
                PeerReport::SnapshotSent(id) => {
                    self.raw.report_snapshot(id, SnapshotStatus::Finish)
                }
                PeerReport::SnapshotFailed(id) => {
                    self.raw.report_snapshot(id, SnapshotStatus::Failure)
                }
                PeerReport::RemovedByPeer => {
                    self.stop(REMOVED.into());
                    return false;
                }
            }
        }
        if taken.stop {
            // Whatever this loop wrote is on disk: a round finishes its fsync before the next
            // one takes a stop.
            self.stop("stopped".into());
            return false;
        }
        true
    }

    /// Checks a membership change against the table as this member has applied it (a fast
    /// answer), then proposes it: a peer-URL update as an ordinary entry, an add or remove as
    /// a raft configuration change, one at a time.
    fn change_members(
        &mut self,
        change: MemberChange,
        reply: oneshot::Sender<Result<(), MembershipError>>,
    ) {
        use raft::eraftpb::ConfChangeType;
        let strict = self.config.strict_reconfig_check;
        let check = {
            let state = self.shared.state.read().unwrap_or_else(|e| e.into_inner());
            match &change {
                MemberChange::Add { id, peer_urls } => {
                    state.members.check_add(*id, peer_urls, strict)
                }
                MemberChange::Remove { id } => state.members.check_remove(*id, strict),
                MemberChange::UpdatePeerUrls { id, peer_urls } => {
                    state.members.check_update(*id, peer_urls)
                }
            }
        };
        if let Err(e) = check {
            let _ = reply.send(Err(e));
            return;
        }
        let request = self.rt.random_u64();
        self.member_waiters.insert(request, reply);
        let (kind, id, peer_urls) = match change {
            MemberChange::UpdatePeerUrls { id, peer_urls } => {
                let proposal = Proposal {
                    id: request,
                    time: self.rt.now(),
                    op: Op::UpdatePeerUrls { id, peer_urls },
                };
                if self.raw.propose(Vec::new(), proposal.encode()).is_err() {
                    self.answer_member(request, Err(no_leader()));
                }
                return;
            }
            MemberChange::Add { id, peer_urls } => (ConfChangeType::AddNode, id, peer_urls),
            MemberChange::Remove { id } => (ConfChangeType::RemoveNode, id, Vec::new()),
        };
        let context = ConfContext {
            request,
            peer_urls,
            strict,
        };
        let mut cc = ConfChange::default();
        cc.set_change_type(kind);
        cc.set_node_id(id);
        cc.set_context(
            postcard::to_allocvec(&context)
                .expect("a context encodes")
                .into(),
        );
        self.conf_queue.push_back((request, cc));
        self.propose_conf_changes();
    }

    fn propose_conf_changes(&mut self) {
        // A change whose client gave up no longer holds the queue.
        if let Some(request) = self.conf_pending {
            if self
                .member_waiters
                .get(&request)
                .is_none_or(|w| w.is_closed())
            {
                self.conf_pending = None;
            }
        }
        while self.conf_pending.is_none() {
            let Some((request, cc)) = self.conf_queue.pop_front() else {
                return;
            };
            if self
                .member_waiters
                .get(&request)
                .is_none_or(|w| w.is_closed())
            {
                continue;
            }
            match self.raw.propose_conf_change(Vec::new(), cc.clone()) {
                Ok(()) => self.conf_pending = Some(request),
                Err(raft::Error::ProposalDropped) => {
                    self.conf_queue.push_front((request, cc)); // no leader yet: next tick
                    return;
                }
                Err(e) => self.answer_member(
                    request,
                    Err(MembershipError::Unavailable(format!("etcdserver: {e}"))),
                ),
            }
        }
    }

    fn answer_member(&mut self, request: u64, result: Result<(), MembershipError>) {
        if let Some(waiter) = self.member_waiters.remove(&request) {
            let _ = waiter.send(result);
        }
    }

    fn propose(&mut self, id: u64, data: Vec<u8>) {
        match self.raw.propose(Vec::new(), data.clone()) {
            Ok(()) => {}
            Err(raft::Error::ProposalDropped) => self.unproposed.push((id, data)),
            Err(e) => {
                if let Some(waiter) = self.waiters.remove(&id) {
                    let _ = waiter.send(Err(Error::new(
                        crate::ErrorCode::RaftInternal,
                        format!("etcdserver: {e}"),
                        0,
                    )));
                }
            }
        }
    }

    /// raft-rs draws a fresh election timeout whenever a member changes term, role or leader,
    /// from an RNG the simulator cannot seed; each such draw is replaced here by one from the
    /// runtime, so runs repeat. A fresh draw every time matters: members whose timeouts stay
    /// equal split every vote for ever (two members did, in the simulator). The change is
    /// noticed by what it changed, never by raft's drawn value alone: that value may happen to
    /// equal the last one drawn here, and a run must not depend on it.
    fn redraw_election_timeout(&mut self) {
        let raft = &mut self.raw.raft;
        let epoch = (raft.term, raft.state as u8, raft.leader_id);
        if epoch == self.election_epoch
            && raft.randomized_election_timeout() == self.election_timeout
        {
            return;
        }
        let ticks = raft.election_timeout();
        let drawn = ticks + (self.rt.random_u64() % ticks as u64) as usize;
        raft.set_randomized_election_timeout(drawn);
        self.election_timeout = drawn;
        self.election_epoch = epoch;
    }

    fn tick(&mut self) {
        self.raw.tick();
        self.ticks += 1;
        if self.leaving_at.is_some() {
            return; // heartbeats carry the commit index to the others; nothing else to do
        }
        // Clients that gave up are forgotten.
        self.waiters.retain(|_, w| !w.is_closed());
        self.reads.retain(|_, r| !r.is_closed());
        let waiting = std::mem::take(&mut self.unproposed);
        for (id, data) in waiting {
            if self.waiters.contains_key(&id) {
                self.propose(id, data);
            }
        }
        // A read raft dropped (no leader, or a leader change) is simply asked again.
        if self.ticks.is_multiple_of(5) {
            for id in self.reads.keys() {
                self.raw.read_index(id.to_le_bytes().to_vec());
            }
        }
        self.propose_expiry();
        self.publish_attributes();
        self.member_waiters.retain(|_, w| !w.is_closed());
        self.propose_conf_changes();
    }

    /// A started member announces its name and client URLs through raft (etcd's publish) as
    /// soon as there is a leader to take it, and again every ten ticks until the applied
    /// member table shows them: clients that read `/v2/machines` right after the first write
    /// find the member there.
    fn publish_attributes(&mut self) {
        if self.config.publish.is_none()
            || self.raw.raft.leader_id == 0
            || self.publish_sent_at.is_some_and(|at| self.ticks < at + 10)
        {
            return;
        }
        let Some((name, client_urls)) = self.config.publish.clone() else {
            return;
        };
        let shown = self
            .shared
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .members
            .get(self.config.id)
            .is_some_and(|m| m.name == name && m.client_urls == client_urls);
        if shown {
            self.config.publish = None;
            return;
        }
        let proposal = Proposal {
            id: self.rt.random_u64(),
            time: self.rt.now(),
            op: Op::Publish {
                id: self.config.id,
                name,
                client_urls,
            },
        };
        if self.raw.propose(Vec::new(), proposal.encode()).is_ok() {
            self.publish_sent_at = Some(self.ticks);
        }
    }

    /// The leader proposes `Sync{now}` when some TTL is due, so every member expires the same
    /// keys at the same index.
    fn propose_expiry(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            return;
        }
        let interval =
            (self.config.sync_interval.as_nanos() / self.config.tick.as_nanos().max(1)) as u64;
        if self.ticks < self.last_sync_tick + interval.max(1) {
            return;
        }
        let now = self.rt.now();
        let due = self
            .shared
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .store
            .next_expiry()
            .is_some_and(|at| at <= now);
        if due {
            self.last_sync_tick = self.ticks;
            let proposal = Proposal {
                id: self.rt.random_u64(),
                time: now,
                op: Op::Sync,
            };
            let _ = self.raw.propose(Vec::new(), proposal.encode());
        }
    }

    async fn handle_ready(&mut self) -> Result<(), Fatal> {
        let mut ready = self.raw.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone()).await?;
        }
        // Committed entries are applied at once, before this Ready's own entries are synced, so
        // that clients hear back without waiting for that fsync. A membership change is the
        // exception: a leader that applies its own removal is no longer in its own progress
        // table, and raft-rs unwraps that entry when it hears its new entries were persisted,
        // so those wait until raft has been told (below).
        let mut committed = ready.take_committed_entries();
        if !committed
            .iter()
            .any(|e| e.get_entry_type() != EntryType::EntryNormal)
        {
            self.apply(std::mem::take(&mut committed))?;
        }
        for read in ready.take_read_states() {
            let id = read
                .request_ctx
                .get(..8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            if let Some(reply) = id.and_then(|id| self.reads.remove(&id)) {
                self.confirmed_reads.push((read.index, reply));
            }
        }
        if !ready.entries().is_empty() || ready.hs().is_some() {
            // A commit index not yet written rides along with these entries for free.
            let lagging = (ready.hs().is_none() && std::mem::take(&mut self.commit_unsaved))
                .then(|| self.storage.mem.rl().hard_state().clone());
            if ready.hs().is_some() {
                self.commit_unsaved = false;
            }
            let hs = ready.hs().or(lagging.as_ref());
            while let Err(e) = self.wal.save(hs, ready.entries()).await {
                self.wait_for_room(e).await?;
            }
            if ready.must_sync() && !self.config.unsafe_skip_fsync {
                self.wal.sync().await.map_err(|e| e.to_string())?;
            }
            let mut log = self.storage.mem.wl();
            log.append(ready.entries()).map_err(|e| e.to_string())?;
            if let Some(hs) = ready.hs() {
                log.set_hardstate(hs.clone());
            }
            drop(log);
            self.note_durable();
        }
        self.send(ready.take_persisted_messages());

        let mut light = self.raw.advance_append(ready);
        self.apply(committed)?;
        if let Some(commit) = light.commit_index() {
            // Not written now: a commit index is learnt again from the leader (or, alone, by
            // committing a new term's first entry), so it waits for the next write to the log
            // instead of costing one of its own. Membership changes are the exception, below.
            self.storage.mem.wl().mut_hard_state().set_commit(commit);
            self.commit_unsaved = true;
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        if std::mem::take(&mut self.conf_applied) {
            self.commit_unsaved = false;
            let hs = self.storage.mem.rl().hard_state().clone();
            while let Err(e) = self.wal.save(Some(&hs), &[]).await {
                self.wait_for_room(e).await?;
            }
            if !self.config.unsafe_skip_fsync {
                self.wal.sync().await.map_err(|e| e.to_string())?;
            }
        }

        self.answer_reads();
        self.maybe_snapshot().await?;
        let committed = self.raw.raft.raft_log.committed;
        invariant(self.applied <= committed, || {
            format!("applied {} is past committed {committed}", self.applied)
        })?;
        invariant(self.last_snapshot <= self.applied, || {
            format!(
                "the snapshot at {} is past applied {}",
                self.last_snapshot, self.applied
            )
        })?;
        self.publish_status();
        Ok(())
    }

    /// The disk is full (`full` says so; any other failure ends the member): nothing more can
    /// be made durable, so nothing more may be promised. Until there is room the member
    /// refuses writes, quorum reads and membership changes at once, and drops its peers'
    /// messages (to them it is down); local reads go on, served from the store as it stands.
    /// Every second it lets its caller try the failed step again.
    async fn wait_for_room(&mut self, full: impl Into<DiskFull>) -> Result<(), Fatal> {
        let DiskFull(why) = full.into();
        let why = why?;
        {
            let mut status = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
            if !status.disk_full {
                eprintln!("etcd: the disk is full ({why}); writes are refused until there is room");
                status.disk_full = true;
            }
        }
        let until = self.rt.elapsed() + ROOM_RETRY;
        loop {
            let sleep = self.rt.sleep(until.saturating_sub(self.rt.elapsed()));
            tokio::select! {
                biased;
                // Stops, and what raft hears of its peers (a snapshot's outcome must reach it
                // whatever happens here), before clients.
                _ = self.shared.control.woken() => {
                    if !self.take_control() {
                        return Err("stopped".into());
                    }
                }
                command = self.commands.recv() => match command {
                    Some(Command::Propose { reply, .. }) => { let _ = reply.send(Err(no_space())); }
                    Some(Command::Read { reply, .. }) => { let _ = reply.send(Err(no_space())); }
                    Some(Command::ChangeMembers { reply, .. }) => {
                        let _ = reply.send(Err(MembershipError::Unavailable(
                            "etcdserver: no space left on this member's disk".into(),
                        )));
                    }
                    None => return Err("stopped".into()),
                },
                message = recv_or_wait(&mut self.inbox) => {
                    if message.is_none() {
                        self.inbox = None;
                    }
                }
                _ = sleep => break,
            }
        }
        Ok(())
    }

    /// Takes what the log has synced as durable (with --unsafe-no-fsync, what it has written:
    /// as durable as it will ever be), for `send`'s check. The log says, not this loop, so
    /// that a sync skipped or moved here shows.
    fn note_durable(&mut self) {
        let (hs, last_index) = if self.config.unsafe_skip_fsync {
            (
                self.storage.mem.rl().hard_state().clone(),
                self.wal.last_index(),
            )
        } else {
            let (hs, last_index) = self.wal.synced();
            (hs.clone(), last_index)
        };
        self.durable.term = hs.term;
        self.durable.vote = hs.vote;
        self.durable.last_index = last_index;
    }

    /// Sends messages, none of which may vouch for state not yet synced: a broken promise is
    /// a bug in this loop, so it panics in tests and the simulator; a release build drops the
    /// message and says so (raft sends again once the state is synced).
    fn send(&self, messages: Vec<Message>) {
        for message in messages {
            if let Some(broken) = self.durable.vouches_beyond(&message) {
                if cfg!(debug_assertions) {
                    panic!("member {}: {broken}", self.config.id);
                }
                eprintln!("etcd: not sent, a bug: {broken}");
                continue;
            }
            self.rt.net().send(message);
        }
    }

    fn apply(&mut self, entries: Vec<raft::eraftpb::Entry>) -> Result<(), Fatal> {
        if entries.is_empty() {
            return Ok(());
        }
        // Its own handle, so the lock it guards does not hold `self` borrowed.
        let shared = Arc::clone(&self.shared);
        let mut store = shared.state.write().unwrap_or_else(|e| e.into_inner());
        let mut removed_self = false;
        for entry in entries {
            if entry.index <= self.applied {
                continue;
            }
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {} // a new leader's no-op
                EntryType::EntryNormal => match Proposal::decode(&entry.data) {
                    Ok(proposal) => {
                        if let (Some(key), Op::Set { key: written, .. }) =
                            (&self.config.panic_on_key, &proposal.op)
                        {
                            assert!(key != written, "fault point: a write to {key}");
                        }
                        match request::apply(&mut store, &proposal) {
                            Applied::Keys(result) => {
                                if let Some(waiter) = self.waiters.remove(&proposal.id) {
                                    let _ = waiter.send(result);
                                }
                            }
                            Applied::Members(result) => {
                                if let (Ok(()), Op::UpdatePeerUrls { id, peer_urls }) =
                                    (&result, &proposal.op)
                                {
                                    self.rt.net().add_peer(*id, peer_urls);
                                }
                                if let Some(waiter) = self.member_waiters.remove(&proposal.id) {
                                    let _ = waiter.send(result);
                                }
                            }
                        }
                    }
                    // No member writes such an entry (every proposal is encoded by
                    // `Proposal::encode`, and the log's checksums guard it on disk), so it was
                    // forged by a peer. Stopping would stop every member, and again at every
                    // restart; skipping it keeps them all alike, as each one skips it.
                    Err(e) => eprintln!("etcd: skipped entry {}: {e}", entry.index),
                },
                EntryType::EntryConfChange => {
                    self.conf_applied = true;
                    match ConfChange::parse_from_bytes(&entry.data) {
                        Ok(change) => {
                            removed_self |= self.apply_member_change(&mut store, change)?
                        }
                        // Forged, like an undecodable proposal: skipped by every member alike.
                        Err(e) => eprintln!("etcd: skipped membership entry {}: {e}", entry.index),
                    }
                }
                // This cluster changes members one at a time and never makes a joint
                // configuration, so no member writes these: skipped by every member alike.
                EntryType::EntryConfChangeV2 => {
                    eprintln!(
                        "etcd: skipped entry {}: a joint membership change",
                        entry.index
                    )
                }
            }
            self.applied = entry.index;
        }
        // Published while the store is still locked, so readers see the two agree.
        self.shared
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .applied = self.applied;
        if removed_self && self.leaving_at.is_none() {
            self.leaving_at = Some(self.ticks + 10);
            for (_, waiter) in std::mem::take(&mut self.waiters) {
                let _ = waiter.send(Err(stopped()));
            }
            for (_, reply) in std::mem::take(&mut self.reads) {
                let _ = reply.send(Err(stopped()));
            }
        }
        Ok(())
    }

    fn answer_reads(&mut self) {
        let applied = self.applied;
        let ready: Vec<_> = {
            let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.confirmed_reads)
                .into_iter()
                .partition(|(index, _)| *index <= applied);
            self.confirmed_reads = waiting;
            done
        };
        for (_, reply) in ready {
            let _ = reply.send(Ok(()));
        }
    }

    /// Applies one membership change (adding or removing a voter) to the member table and to
    /// raft together, or to neither; `true` when it removed this member.
    fn apply_member_change(
        &mut self,
        state: &mut State,
        change: ConfChange,
    ) -> Result<bool, Fatal> {
        use raft::eraftpb::ConfChangeType;
        let context: Option<ConfContext> = postcard::from_bytes(change.get_context()).ok();
        let id = change.node_id;
        let kind = change.get_change_type();
        // The same check again, on the replicated table: every member decides alike, and two
        // changes that passed their first check one at a time cannot both slip through. A
        // refused change must not reach raft's apply_conf_change.
        let outcome = match (kind, &context) {
            (ConfChangeType::AddNode, Some(ctx)) => {
                state.members.add(id, ctx.peer_urls.clone(), ctx.strict)
            }
            // raft refuses a configuration without voters; refused here first, so the table
            // and raft never part.
            (ConfChangeType::RemoveNode, Some(_))
                if self.raw.raft.prs().conf().to_conf_state().voters == [id] =>
            {
                Err(MembershipError::Unavailable(
                    "the last member cannot be removed".into(),
                ))
            }
            (ConfChangeType::RemoveNode, Some(ctx)) => {
                state.members.remove(id, ctx.strict).map(|_| ())
            }
            (ConfChangeType::AddLearnerNode, Some(_)) => Err(MembershipError::Unavailable(
                "learner members are not supported".into(),
            )),
            // Every change a member proposes says which request it answers; one without is
            // forged, and applying it would change raft's voters behind the member table's
            // back (and so its quorum).
            (_, None) => Err(MembershipError::Unavailable(
                "a membership change without its request".into(),
            )),
        };
        let mut removed_self = false;
        if outcome.is_ok() {
            let conf = self
                .raw
                .apply_conf_change(&change)
                .map_err(|e| e.to_string())?;
            let voters: std::collections::BTreeSet<u64> = conf.voters.iter().copied().collect();
            let table: std::collections::BTreeSet<u64> =
                state.members.members().map(|m| m.id).collect();
            invariant(voters == table, || {
                format!("after a change to {id:x}, raft's voters {voters:x?} and the member table {table:x?} differ")
            })?;
            self.storage.mem.wl().set_conf_state(conf);
            match (kind, &context) {
                (ConfChangeType::AddNode, Some(ctx)) => self.rt.net().add_peer(id, &ctx.peer_urls),
                // Raft no longer tracks the peer: its lanes can go (see `Transport`).
                _ if id != self.config.id => self.rt.net().remove_peer(id),
                _ => removed_self = true,
            }
        }
        if let Some(ctx) = context {
            if self.conf_pending == Some(ctx.request) {
                self.conf_pending = None;
            }
            if let Some(waiter) = self.member_waiters.remove(&ctx.request) {
                let _ = waiter.send(outcome);
            }
        }
        Ok(removed_self)
    }

    /// A snapshot from the leader: it replaces the log and the store.
    async fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), Fatal> {
        let meta = snapshot.get_metadata().clone();
        let state = State::restore(&snapshot.data)?;
        while let Err(e) = self.snapshotter.save(&snapshot).await {
            self.wait_for_room(e).await?;
        }
        while let Err(e) = self.wal.snapshot_installed(meta.index, meta.term).await {
            self.wait_for_room(e).await?;
        }
        self.storage
            .mem
            .wl()
            .apply_snapshot(snapshot.clone())
            .map_err(|e| e.to_string())?;
        self.storage.set_latest(snapshot);
        self.note_durable();
        let mut current = self.shared.state.write().unwrap_or_else(|e| e.into_inner());
        let mut state = state;
        // The tree and history are the leader's now; the clients watching here stay.
        state.store.adopt_watchers(&mut current.store);
        // Members added or re-addressed in the entries the snapshot stands for were never
        // applied here one by one: the transport learns of them now, or this member could
        // hear from them but never answer (a joiner that became leader waited for ever).
        for member in state.members.members() {
            self.rt.net().add_peer(member.id, &member.peer_urls);
        }
        // And members removed in them lose their lanes, as if applied here.
        for gone in current
            .members
            .members()
            .filter(|m| state.members.is_removed(m.id))
        {
            self.rt.net().remove_peer(gone.id);
        }
        *current = state;
        self.applied = meta.index;
        self.last_snapshot = meta.index;
        let mut status = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        status.applied = meta.index;
        status.snapshots_installed += 1;
        Ok(())
    }

    /// Every `snapshot_count` applied entries: save the store, let raft forget all but the
    /// catch-up entries, keep `max_snapshots` files and release the log they no longer need.
    async fn maybe_snapshot(&mut self) -> Result<(), Fatal> {
        let wanted = self.storage.take_wanted();
        if !wanted
            && self.applied
                < self
                    .last_snapshot
                    .saturating_add(self.config.snapshot_count)
        {
            return Ok(());
        }
        let index = self.applied;
        let term = self.storage.mem.term(index).map_err(|e| e.to_string())?;
        let conf_state: ConfState = self
            .storage
            .mem
            .initial_state()
            .map_err(|e| e.to_string())?
            .conf_state;
        let data = self
            .shared
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .save();
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let meta = snapshot.mut_metadata();
        meta.set_index(index);
        meta.set_term(term);
        meta.set_conf_state(conf_state);
        if let Err(e) = self.snapshotter.save(&snapshot).await {
            if !e.is_no_space() {
                return Err(e.to_string());
            }
            // A snapshot only saves work later: the log still holds everything, so it waits
            // for room (raft asks again when a follower needs one).
            let now = self.rt.elapsed();
            if self
                .snapshot_skipped_at
                .is_none_or(|at| now >= at + std::time::Duration::from_secs(60))
            {
                eprintln!("etcd: snapshot at {index} not saved, the disk is full: {e}");
                self.snapshot_skipped_at = Some(now);
            }
            self.last_snapshot = index;
            return Ok(());
        }
        self.storage.set_latest(snapshot);
        let compact_to = index.saturating_sub(self.config.catch_up_entries);
        let first = self.storage.mem.first_index().map_err(|e| e.to_string())?;
        if compact_to > first {
            self.storage
                .mem
                .wl()
                .compact(compact_to)
                .map_err(|e| e.to_string())?;
        }
        let oldest = self
            .snapshotter
            .purge(self.config.max_snapshots)
            .await
            .map_err(|e| e.to_string())?;
        self.wal
            .release_to(oldest.unwrap_or(index))
            .await
            .map_err(|e| e.to_string())?;
        self.last_snapshot = index;
        Ok(())
    }

    fn publish_status(&self) {
        let raft = &self.raw.raft;
        let role = match raft.state {
            StateRole::Leader => Role::Leader,
            StateRole::Candidate => Role::Candidate,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Follower => Role::Follower,
        };
        let mut status = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        // Every step of this round reached the disk.
        status.disk_full = false;
        status.term = raft.term;
        if status.leader != raft.leader_id || status.leader_since.is_none() {
            status.leader_since = (raft.leader_id != 0).then(|| self.rt.now());
        }
        status.leader = raft.leader_id;
        status.role = role;
        status.commit = raft.raft_log.committed;
        status.followers.clear();
        if role == Role::Leader {
            status
                .followers
                .extend(
                    raft.prs()
                        .iter()
                        .filter(|(id, _)| **id != raft.id)
                        .map(|(id, pr)| {
                            let state = match pr.state {
                                raft::ProgressState::Probe => "Probe",
                                raft::ProgressState::Replicate => "Replicate",
                                raft::ProgressState::Snapshot => "Snapshot",
                            };
                            (*id, pr.matched, state)
                        }),
                );
        }
    }

    /// A failed disk (or a damaged entry) ends the member: nothing more is acknowledged.
    fn stop(&mut self, why: Fatal) {
        self.shared.mark_stopped(why);
        for (_, waiter) in std::mem::take(&mut self.waiters) {
            let _ = waiter.send(Err(stopped()));
        }
        for (_, reply) in std::mem::take(&mut self.reads) {
            let _ = reply.send(Err(stopped()));
        }
    }
}

/// A rule the loop keeps whatever happens: broken, it is a bug here, not a fault outside. It
/// panics in tests and the simulator; in a release build the member stops, saying why.
fn invariant(holds: bool, what: impl FnOnce() -> String) -> Result<(), Fatal> {
    if holds {
        return Ok(());
    }
    let why = format!("invariant broken: {}", what());
    if cfg!(debug_assertions) {
        panic!("{why}");
    }
    Err(why)
}

/// Marks the member stopped if its raft task panics, so the process around it stops too (with
/// a non-zero status, for its supervisor to restart it) instead of serving stale reads and
/// refusing every write for ever. The panic's own message is already on stderr.
struct StopOnPanic(Arc<Shared>);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .mark_stopped("the raft task panicked (its message is above)".into());
        }
    }
}

fn no_leader() -> MembershipError {
    MembershipError::Unavailable("etcdserver: no leader to take the change; try again".into())
}

async fn recv_or_wait(inbox: &mut Option<mpsc::Receiver<Message>>) -> Option<Message> {
    match inbox {
        Some(inbox) => inbox.recv().await,
        None => std::future::pending().await,
    }
}

/// A new member's first state: a snapshot at index 1 holding the initial membership and an
/// empty store, identical on every member, and an empty log after it. A member that joins
/// later gets this state from the leader as a snapshot, so it learns the membership too.
async fn bootstrap<D: crate::runtime::Disk>(
    disk: &D,
    config: &NodeConfig,
    snapshotter: &Snapshotter<D>,
    wal_dir: &std::path::Path,
) -> Result<(), StartError> {
    if config.peers.is_empty() || !config.peers.contains(&config.id) {
        return Err(StartError::Invalid(format!(
            "member {:x} is not in the initial cluster",
            config.id
        )));
    }
    let members = config.peers.iter().map(|&id| {
        config
            .initial_members
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .unwrap_or(Member {
                id,
                name: String::new(),
                peer_urls: Vec::new(),
                client_urls: Vec::new(),
            })
    });
    let state = State {
        store: Store::with_history_capacity(config.history_capacity),
        members: Membership::new(members),
    };
    let mut snapshot = Snapshot::default();
    snapshot.set_data(state.save().into());
    let meta = snapshot.mut_metadata();
    meta.set_index(1);
    meta.set_term(1);
    meta.mut_conf_state().set_voters(config.peers.clone());
    snapshotter.save(&snapshot).await?;
    let mut wal = Wal::create(disk.clone(), wal_dir, 2, config.segment_bytes).await?;
    let mut hs = HardState::default();
    hs.set_term(1);
    hs.set_commit(1);
    wal.save(Some(&hs), &[]).await?;
    wal.sync().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh_shared() -> Arc<Shared> {
        Arc::new(Shared::new(
            State::default(),
            Status::default(),
            RaftStorage::default(),
        ))
    }

    #[test]
    // A real thread, so that the panic unwinds as it does in a tokio worker.
    #[allow(clippy::disallowed_methods)]
    fn a_panic_in_the_raft_task_marks_the_member_stopped() {
        let shared = fresh_shared();
        let watched = Arc::clone(&shared);
        let task = std::thread::spawn(move || {
            let _watch = StopOnPanic(watched);
            panic!("raft-rs gave up");
        });
        assert!(task.join().is_err());
        let stopped = shared.status.lock().unwrap().stopped.clone();
        assert!(stopped.is_some_and(|why| why.contains("panicked")));
        // A task that ends normally leaves the reason to whoever stopped it.
        let calm = fresh_shared();
        drop(StopOnPanic(Arc::clone(&calm)));
        assert_eq!(calm.status.lock().unwrap().stopped, None);
    }
}
