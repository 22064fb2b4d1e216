//! Membership changes: checked against the table as this member has applied it, proposed
//! one at a time (an add or remove as a raft configuration change, a peer-URL update as an
//! ordinary entry), and applied to the member table and to raft together, or to neither.

use super::*;

/// What a membership change entry carries besides raft's own fields: the request to answer,
/// the new member's peer URLs, and whether the proposer asked for the strict check (so every
/// member decides the same way when it applies the entry).
///
/// With the strict check, the leader also says whether it hears from enough members for the
/// cluster to stay writable through the change (`unhealthy`, set by the leader as it takes
/// the proposal): only the leader knows who is alive, and the verdict travels in the entry so
/// that every member answers the same.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct ConfContext {
    request: u64,
    peer_urls: Vec<String>,
    strict: bool,
    unhealthy: Option<String>,
}

/// The context as members wrote it before the leader's verdict was added.
#[derive(serde::Deserialize)]
struct ConfContextV1 {
    request: u64,
    peer_urls: Vec<String>,
    strict: bool,
}

impl ConfContext {
    fn decode(bytes: &[u8]) -> Option<ConfContext> {
        postcard::from_bytes(bytes).ok().or_else(|| {
            postcard::from_bytes::<ConfContextV1>(bytes)
                .ok()
                .map(|v1| ConfContext {
                    request: v1.request,
                    peer_urls: v1.peer_urls,
                    strict: v1.strict,
                    unhealthy: None,
                })
        })
    }
}

pub(super) fn no_leader() -> MembershipError {
    MembershipError::Unavailable("etcdserver: no leader to take the change; try again".into())
}

impl<R: Runtime> Core<R> {
    /// Checks a membership change against the table as this member has applied it (a fast
    /// answer), then proposes it: a peer-URL update as an ordinary entry, an add or remove as
    /// a raft configuration change, one at a time.
    pub(super) fn change_members(
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
        if let Err(why) = self.waiters.add_member_change(request, reply) {
            self.stop(why);
            return;
        }
        let (kind, id, peer_urls) = match change {
            MemberChange::UpdatePeerUrls { id, peer_urls } => {
                let proposal = Proposal {
                    id: request,
                    time: self.stamp(),
                    op: Op::UpdatePeerUrls { id, peer_urls },
                };
                if self.raw.propose(Vec::new(), proposal.encode()).is_err() {
                    self.waiters.answer_member_change(request, Err(no_leader()));
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
            unhealthy: None,
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

    pub(super) fn propose_conf_changes(&mut self) {
        // A change whose client gave up no longer holds the queue.
        if let Some(request) = self.conf_pending {
            if !self.waiters.member_change_waits(request) {
                self.conf_pending = None;
            }
        }
        while self.conf_pending.is_none() {
            let Some((request, cc)) = self.conf_queue.pop_front() else {
                return;
            };
            if !self.waiters.member_change_waits(request) {
                continue;
            }
            // Judged here when this member leads; a follower's goes to the leader, which judges.
            let mut judged = cc.clone();
            self.judge_conf_change(&mut judged);
            match self.raw.propose_conf_change(Vec::new(), judged) {
                Ok(()) => self.conf_pending = Some(request),
                Err(raft::Error::ProposalDropped) => {
                    self.conf_queue.push_front((request, cc)); // no leader yet: next tick
                    return;
                }
                Err(e) => self.waiters.answer_member_change(
                    request,
                    Err(MembershipError::Unavailable(format!("etcdserver: {e}"))),
                ),
            }
        }
    }

    /// Applies one membership change (adding or removing a voter) to the member table and to
    /// raft together, or to neither; `true` when it removed this member.
    pub(super) fn apply_member_change(
        &mut self,
        state: &mut State,
        change: ConfChange,
    ) -> Result<bool, Fatal> {
        use raft::eraftpb::ConfChangeType;
        let context = ConfContext::decode(change.get_context());
        let id = change.node_id;
        let kind = change.get_change_type();
        // The same check again, on the replicated table: every member decides alike, and two
        // changes that passed their first check one at a time cannot both slip through. A
        // refused change must not reach raft's apply_conf_change.
        let outcome = match (kind, &context) {
            (
                _,
                Some(ConfContext {
                    unhealthy: Some(why),
                    ..
                }),
            ) => Err(MembershipError::Unhealthy(why.clone())),
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
            self.waiters.answer_member_change(ctx.request, outcome);
        }
        Ok(removed_self)
    }

    /// On the leader, a strict membership change gets the leader's verdict on the cluster's
    /// health (`rules::unhealthy`, from raft's record of whom it heard from lately), written
    /// into its context; `true` when the change was judged unhealthy. Anything else is left
    /// as it is.
    pub(super) fn judge_conf_change(&self, change: &mut ConfChange) -> bool {
        use crate::membership::rules::{self, Change};
        use raft::eraftpb::ConfChangeType;
        if self.raw.raft.state != StateRole::Leader {
            return false;
        }
        let Some(mut ctx) = ConfContext::decode(change.get_context()) else {
            return false;
        };
        let kind = match change.get_change_type() {
            ConfChangeType::AddNode => Change::Add,
            ConfChangeType::RemoveNode => Change::Remove(change.node_id),
            ConfChangeType::AddLearnerNode => return false,
        };
        if !ctx.strict || ctx.unhealthy.is_some() {
            return false;
        }
        let me = self.config.id;
        let heard: Vec<(u64, bool)> = self
            .raw
            .raft
            .prs()
            .iter()
            .map(|(id, pr)| (*id, *id == me || pr.recent_active))
            .collect();
        ctx.unhealthy = rules::unhealthy(kind, &heard);
        if ctx.unhealthy.is_none() {
            return false;
        }
        change.set_context(
            postcard::to_allocvec(&ctx)
                .expect("a context encodes")
                .into(),
        );
        true
    }
}
