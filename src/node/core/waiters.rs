//! The clients waiting on the raft loop, in one registry: writes waiting to be applied, reads
//! waiting for raft to confirm the leader's commit index and then for it to be applied, and
//! membership changes waiting for their entry. Each is answered once; a client that gave up
//! is forgotten; when the member stops or leaves, all are failed at once. Ids are drawn at
//! random: two alike would answer one client with another's result, so a duplicate is a bug.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use super::{invariant, Fatal};
use crate::error::Error;
use crate::membership::MembershipError;
use crate::store::Event;

type Reply<T> = oneshot::Sender<T>;

#[derive(Default)]
pub(super) struct Waiters {
    writes: BTreeMap<u64, Reply<Result<Event, Error>>>,
    /// Proposals raft dropped (no leader yet), with their encoded entries: proposed again
    /// every tick while their client waits.
    unproposed: Vec<(u64, Vec<u8>)>,
    /// Read barriers waiting for raft to confirm the leader's commit index.
    reads: BTreeMap<u64, Reply<Result<(), Error>>>,
    /// Read barriers confirmed at an index, waiting for it to be applied.
    confirmed_reads: Vec<(u64, Reply<Result<(), Error>>)>,
    /// Membership changes, by request id.
    members: BTreeMap<u64, Reply<Result<(), MembershipError>>>,
}

impl Waiters {
    pub(super) fn add_write(
        &mut self,
        id: u64,
        reply: Reply<Result<Event, Error>>,
    ) -> Result<(), Fatal> {
        invariant(!self.writes.contains_key(&id), || {
            format!("two writes waiting under one id {id:x}")
        })?;
        self.writes.insert(id, reply);
        Ok(())
    }

    /// Answers the write `id`, if its client still waits here.
    pub(super) fn answer_write(&mut self, id: u64, result: Result<Event, Error>) {
        if let Some(reply) = self.writes.remove(&id) {
            let _ = reply.send(result);
        }
    }

    /// Keeps a proposal raft dropped, to propose again.
    pub(super) fn unproposed(&mut self, id: u64, data: Vec<u8>) {
        self.unproposed.push((id, data));
    }

    /// The dropped proposals whose clients still wait, to propose again.
    pub(super) fn take_unproposed(&mut self) -> Vec<(u64, Vec<u8>)> {
        let writes = &self.writes;
        std::mem::take(&mut self.unproposed)
            .into_iter()
            .filter(|(id, _)| writes.contains_key(id))
            .collect()
    }

    pub(super) fn add_read(
        &mut self,
        id: u64,
        reply: Reply<Result<(), Error>>,
    ) -> Result<(), Fatal> {
        invariant(!self.reads.contains_key(&id), || {
            format!("two reads waiting under one id {id:x}")
        })?;
        self.reads.insert(id, reply);
        Ok(())
    }

    /// The reads raft has not confirmed yet (asked again after a leader change).
    pub(super) fn unconfirmed_reads(&self) -> impl Iterator<Item = u64> + '_ {
        self.reads.keys().copied()
    }

    /// Raft confirmed read `id` at `index`: it is answered once `index` is applied.
    pub(super) fn confirm_read(&mut self, id: u64, index: u64) {
        if let Some(reply) = self.reads.remove(&id) {
            self.confirmed_reads.push((index, reply));
        }
    }

    /// Answers the confirmed reads whose index is applied.
    pub(super) fn answer_reads(&mut self, applied: u64) {
        let (done, waiting) = std::mem::take(&mut self.confirmed_reads)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.confirmed_reads = waiting;
        for (_, reply) in done {
            let _ = reply.send(Ok(()));
        }
    }

    pub(super) fn add_member_change(
        &mut self,
        request: u64,
        reply: Reply<Result<(), MembershipError>>,
    ) -> Result<(), Fatal> {
        invariant(!self.members.contains_key(&request), || {
            format!("two membership changes waiting under one id {request:x}")
        })?;
        self.members.insert(request, reply);
        Ok(())
    }

    /// Whether the client of membership change `request` still waits.
    pub(super) fn member_change_waits(&self, request: u64) -> bool {
        self.members.get(&request).is_some_and(|w| !w.is_closed())
    }

    pub(super) fn answer_member_change(
        &mut self,
        request: u64,
        result: Result<(), MembershipError>,
    ) {
        if let Some(reply) = self.members.remove(&request) {
            let _ = reply.send(result);
        }
    }

    /// Forgets the clients that gave up.
    pub(super) fn forget_gone(&mut self) {
        self.writes.retain(|_, w| !w.is_closed());
        self.reads.retain(|_, r| !r.is_closed());
        self.members.retain(|_, m| !m.is_closed());
    }

    /// Fails every client still waiting for a write or a read with `error`, and every
    /// membership change with `member_error`.
    pub(super) fn fail_all(&mut self, error: impl Fn() -> Error, member_error: MembershipError) {
        for (_, reply) in std::mem::take(&mut self.writes) {
            let _ = reply.send(Err(error()));
        }
        self.unproposed.clear();
        for (_, reply) in std::mem::take(&mut self.reads) {
            let _ = reply.send(Err(error()));
        }
        for (_, reply) in std::mem::take(&mut self.confirmed_reads) {
            let _ = reply.send(Err(error()));
        }
        for (_, reply) in std::mem::take(&mut self.members) {
            let _ = reply.send(Err(member_error.clone()));
        }
    }
}
