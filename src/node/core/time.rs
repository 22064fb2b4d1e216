//! Time in the raft loop: the cluster's time that TTLs run on (the leader stamps every
//! proposal), raft's election timeouts drawn from the runtime's seeded randomness, and the
//! leader's proposals that expire keys.

use super::*;

impl<R: Runtime> Core<R> {
    /// The time the cluster's TTLs are measured on, as this member reckons it.
    pub(super) fn cluster_now(&self) -> crate::Timestamp {
        self.shared.cluster_now(&self.rt)
    }

    /// The time to stamp on a proposal made here: the leader's stamp (see `cluster_clock`);
    /// elsewhere what this member reckons, which the leader replaces.
    pub(super) fn stamp(&mut self) -> crate::Timestamp {
        if self.raw.raft.state != StateRole::Leader {
            return self.cluster_now();
        }
        self.shared
            .clock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stamp(self.rt.elapsed(), self.rt.now())
    }

    /// On the leader, a proposal's time becomes the leader's stamp: only the leader's clock
    /// decides TTLs. Anything else passes as it is (raft refuses what it must).
    pub(super) fn restamp(&mut self, data: Vec<u8>) -> Vec<u8> {
        if self.raw.raft.state != StateRole::Leader {
            return data;
        }
        match Proposal::decode(&data) {
            Ok(mut proposal) => {
                proposal.time = self.stamp();
                proposal.encode()
            }
            Err(_) => data,
        }
    }

    /// raft-rs draws a fresh election timeout whenever a member changes term, role or leader,
    /// from an RNG the simulator cannot seed; each such draw is replaced here by one from the
    /// runtime, so runs repeat. A fresh draw every time matters: members whose timeouts stay
    /// equal split every vote for ever (two members did, in the simulator). The change is
    /// noticed by what it changed, never by raft's drawn value alone: that value may happen to
    /// equal the last one drawn here, and a run must not depend on it.
    pub(super) fn redraw_election_timeout(&mut self) {
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

    /// The leader proposes `Sync{now}` when some TTL is due, so every member expires the same
    /// keys at the same index.
    pub(super) fn propose_expiry(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            return;
        }
        if !self.timeouts.expiry.due(self.ticks) {
            return;
        }
        let now = self.cluster_now();
        let due = self
            .shared
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .store
            .next_expiry()
            .is_some_and(|at| at <= now);
        if due {
            self.timeouts.expiry.done(self.ticks);
            let proposal = Proposal {
                id: self.rt.random_u64(),
                time: self.stamp(),
                op: Op::Sync,
            };
            let _ = self.raw.propose(Vec::new(), proposal.encode());
        }
    }
}
