//! The task that owns raft: it steps messages, ticks, proposes, and handles each `Ready` in the
//! order that keeps the log safe — send what may go before persistence, install a snapshot,
//! apply what is committed, append and fsync new entries and hard state, send what had to wait
//! for the fsync, then advance and persist the new commit index.
//!
//! Group commit falls out of the loop: everything that arrived while the last fsync ran is
//! drained into the next `Ready`, so one fsync covers all of it.
//!
//! `Core::run` and the `Ready` handler here are the only control flow; the rest is split by
//! job: `open` (a member's data made into a raft node), `waiters` (the clients waiting for an
//! answer), `membership` (configuration changes), `snapshots`, `time` (the cluster's time,
//! election timeouts, expiry), `timeouts` (periodic work by name) and `disk_full`.

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

mod disk_full;
mod membership;
mod open;
mod snapshots;
mod time;
mod timeouts;
mod waiters;

pub use open::StartError;

/// Why the loop stopped.
type Fatal = String;

use super::REMOVED;

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
    /// The id of this start's publish proposal (retried under the same id until applied).
    publish_request: u64,
    /// The clients waiting for an answer.
    waiters: waiters::Waiters,
    /// The election timeout last drawn, and the (term, role, leader) it was drawn for (see
    /// `redraw_election_timeout`).
    election_timeout: usize,
    election_epoch: (u64, u8, u64),
    applied: u64,
    last_snapshot: u64,
    /// Ticks since the loop started: the clock of `timeouts` and `leaving_at`.
    ticks: u64,
    timeouts: timeouts::Timeouts,
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
    /// raft takes one membership change at a time (a second one becomes an empty entry): the
    /// rest wait here, with their request ids.
    conf_queue: std::collections::VecDeque<(u64, ConfChange)>,
    conf_pending: Option<u64>,
    /// Peer messages refused before they reached raft, and when that was last logged.
    refused_messages: u64,
    last_refusal_logged: Option<std::time::Duration>,
    /// When a snapshot was last skipped for want of room, to say so once a while.
    snapshot_skipped_at: Option<std::time::Duration>,
}

impl<R: Runtime> Core<R> {
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
                    Some(command) => {
                        if !self.command(command) {
                            return;
                        }
                    }
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
                if !self.command(command) {
                    return;
                }
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
        let committed = raft.raft_log.committed;
        let view = admission::View {
            id: self.config.id,
            term: raft.term,
            last_index: raft.raft_log.last_index(),
            committed,
            // Unknown only if compacted past it, which raft never does: then no check.
            committed_term: raft.raft_log.term(committed).unwrap_or(0),
        };
        if let Err(refusal) = admission::check(&message, &view) {
            self.refused_message(&message, refusal);
            return;
        }
        let mut message = message;
        if message.get_msg_type() == raft::eraftpb::MessageType::MsgPropose {
            for entry in message.mut_entries() {
                if entry.data.is_empty() {
                    continue;
                }
                match entry.get_entry_type() {
                    EntryType::EntryNormal => {
                        let data = self.restamp(entry.data.to_vec());
                        entry.set_data(data.into());
                    }
                    EntryType::EntryConfChange => {
                        let Ok(mut change) = ConfChange::parse_from_bytes(&entry.data) else {
                            continue;
                        };
                        if self.judge_conf_change(&mut change) {
                            if let Ok(data) = change.write_to_bytes() {
                                entry.set_data(data.into());
                            }
                        }
                    }
                    EntryType::EntryConfChangeV2 => {}
                }
            }
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

    /// Handles one client command; `false` when the member must stop now (a broken rule).
    fn command(&mut self, command: Command) -> bool {
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
            return true;
        }
        match command {
            Command::Propose {
                mut proposal,
                reply,
            } => {
                let id = proposal.id;
                if let Err(why) = self.waiters.add_write(id, reply) {
                    self.stop(why);
                    return false;
                }
                proposal.time = self.stamp();
                self.propose(id, proposal.encode());
            }
            Command::Read { id, reply } => {
                if let Err(why) = self.waiters.add_read(id, reply) {
                    self.stop(why);
                    return false;
                }
                self.raw.read_index(id.to_le_bytes().to_vec());
            }
            Command::ChangeMembers { change, reply } => self.change_members(change, reply),
        }
        true
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

    /// Proposes a client's write, already stamped.
    fn propose(&mut self, id: u64, data: Vec<u8>) {
        match self.raw.propose(Vec::new(), data.clone()) {
            Ok(()) => {}
            Err(raft::Error::ProposalDropped) => self.waiters.unproposed(id, data),
            Err(e) => self.waiters.answer_write(
                id,
                Err(Error::new(
                    crate::ErrorCode::RaftInternal,
                    format!("etcdserver: {e}"),
                    0,
                )),
            ),
        }
    }

    fn tick(&mut self) {
        self.raw.tick();
        self.ticks += 1;
        if self.leaving_at.is_some() {
            return; // heartbeats carry the commit index to the others; nothing else to do
        }
        self.waiters.forget_gone();
        for (id, data) in self.waiters.take_unproposed() {
            // Stamped when raft dropped it, with no leader: the leader it now reaches stamps it.
            let data = self.restamp(data);
            self.propose(id, data);
        }
        // A read raft dropped (no leader, or a leader change) is simply asked again.
        if self.timeouts.read_retry.due(self.ticks) {
            self.timeouts.read_retry.done(self.ticks);
            for id in self.waiters.unconfirmed_reads() {
                self.raw.read_index(id.to_le_bytes().to_vec());
            }
        }
        self.propose_expiry();
        self.publish_attributes();
        self.propose_conf_changes();
    }

    /// A started member announces its name and client URLs through raft (etcd's publish) as
    /// soon as there is a leader to take it, and again every ten ticks until the entry is
    /// applied; then it answers clients (see `Node::ready`), and clients that read
    /// `/v2/machines` find it there.
    fn publish_attributes(&mut self) {
        if self.raw.raft.leader_id == 0 || !self.timeouts.publish.due(self.ticks) {
            return;
        }
        let Some((name, client_urls)) = self.config.publish.clone() else {
            return;
        };
        // Proposed at every start, even when the table already shows the same attributes: its
        // entry, once applied, says this member has caught up with the cluster as of now.
        let proposal = Proposal {
            id: self.publish_request,
            time: self.stamp(),
            op: Op::Publish {
                id: self.config.id,
                name,
                client_urls,
            },
        };
        if self.raw.propose(Vec::new(), proposal.encode()).is_ok() {
            self.timeouts.publish.done(self.ticks);
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
            if let Some(id) = id {
                self.waiters.confirm_read(id, read.index);
            }
        }
        if !ready.entries().is_empty() || ready.hs().is_some() {
            self.check_append(ready.entries())?;
            // A commit index not yet written rides along with these entries for free.
            let lagging = (ready.hs().is_none() && std::mem::take(&mut self.commit_unsaved))
                .then(|| self.storage.mem.rl().hard_state().clone());
            if ready.hs().is_some() {
                self.commit_unsaved = false;
            }
            let hs = ready.hs().or(lagging.as_ref());
            self.write_log(hs, ready.entries(), ready.must_sync())
                .await?;
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
            self.write_log(Some(&hs), &[], true).await?;
        }

        self.waiters.answer_reads(self.applied);
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

    /// Writes entries and hard state to the log, waiting out a full disk, and syncs them when
    /// `sync` (unless --unsafe-no-fsync).
    async fn write_log(
        &mut self,
        hs: Option<&HardState>,
        entries: &[raft::eraftpb::Entry],
        sync: bool,
    ) -> Result<(), Fatal> {
        while let Err(e) = self.wal.save(hs, entries).await {
            self.wait_for_room(e).await?;
        }
        if sync && !self.config.unsafe_skip_fsync {
            self.wal.sync().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// New entries follow one another, join the log where it ends or replace only what was
    /// never committed, and never go back a term: what raft hands over to be written.
    fn check_append(&self, entries: &[raft::eraftpb::Entry]) -> Result<(), Fatal> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        for pair in entries.windows(2) {
            invariant(
                pair[1].index == pair[0].index + 1 && pair[1].term >= pair[0].term,
                || {
                    format!(
                        "appended entries not in order: {}/{} then {}/{}",
                        pair[0].index, pair[0].term, pair[1].index, pair[1].term
                    )
                },
            )?;
        }
        let last = self.storage.mem.last_index().map_err(|e| e.to_string())?;
        let committed = self.storage.mem.rl().hard_state().commit;
        invariant(first.index <= last + 1, || {
            format!("entry {} appended past the log's end {last}", first.index)
        })?;
        invariant(first.index > committed, || {
            format!(
                "entry {} would replace a committed one (committed {committed})",
                first.index
            )
        })
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
                        invariant(proposal.encode() == entry.data.as_ref(), || {
                            format!("entry {} does not encode back as it was read", entry.index)
                        })?;
                        self.shared
                            .clock
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .observe(proposal.time, self.rt.elapsed());
                        if let (Some(key), Op::Set { key: written, .. }) =
                            (&self.config.panic_on_key, &proposal.op)
                        {
                            assert!(key != written, "fault point: a write to {key}");
                        }
                        if proposal.id == self.publish_request && self.config.publish.is_some() {
                            self.config.publish = None;
                            self.shared.mark_ready();
                        }
                        match request::apply(&mut store, &proposal) {
                            Applied::Keys(result) => {
                                self.waiters.answer_write(proposal.id, result);
                            }
                            Applied::Members(result) => {
                                if let (Ok(()), Op::UpdatePeerUrls { id, peer_urls }) =
                                    (&result, &proposal.op)
                                {
                                    self.rt.net().add_peer(*id, peer_urls);
                                }
                                self.waiters.answer_member_change(proposal.id, result);
                            }
                        }
                    }
                    // No member writes such an entry (every proposal is encoded by
                    // `Proposal::encode`, and the log's checksums guard it on disk), so it was
                    // forged by a peer. Stopping would stop every member, and again at every
                    // restart; skipping it keeps them all alike, as each one skips it.
                    Err(e) => eprintln!("etcd: skipped entry {}: {e}", entry.index),
                },
                // A membership entry decides who votes: one this member cannot read would leave
                // it guessing at its own quorum, so it stops (as every member will, alike)
                // rather than go on in a configuration it may not share.
                EntryType::EntryConfChange => {
                    self.conf_applied = true;
                    let change = ConfChange::parse_from_bytes(&entry.data).map_err(|e| {
                        format!("membership entry {} cannot be read: {e}", entry.index)
                    })?;
                    invariant(
                        change
                            .write_to_bytes()
                            .is_ok_and(|b| b == entry.data.as_ref()),
                        || format!("entry {} does not encode back as it was read", entry.index),
                    )?;
                    removed_self |= self.apply_member_change(&mut store, change)?
                }
                // This cluster changes members one at a time and never makes a joint
                // configuration: no member writes these.
                EntryType::EntryConfChangeV2 => {
                    return Err(format!(
                        "entry {} is a joint membership change, which this cluster never makes",
                        entry.index
                    ))
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
            self.waiters
                .fail_all(stopped, MembershipError::Unavailable(REMOVED.into()));
        }
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
        self.waiters.fail_all(
            stopped,
            MembershipError::Unavailable("etcdserver: server stopped".into()),
        );
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

async fn recv_or_wait(inbox: &mut Option<mpsc::Receiver<Message>>) -> Option<Message> {
    match inbox {
        Some(inbox) => inbox.recv().await,
        None => std::future::pending().await,
    }
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
