//! The membership table: every member's raft attributes (id, peer URLs) and, once it has
//! started and published them, its name and client URLs. Replicated state: every member
//! applies the same changes in the same order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{format_id, rules, Member};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipError {
    IdExists(u64),
    PeerUrlExists(String),
    IdRemoved(u64),
    IdNotFound(u64),
    /// `--strict-reconfig-check` refused the change.
    NotEnoughStarted {
        members_after: usize,
        started_after: usize,
    },
    /// `--strict-reconfig-check` refused the change: the leader does not hear from enough
    /// members for the cluster to stay writable through it (etcd 3.x's `ErrUnhealthy`).
    Unhealthy(String),
    /// The change could not be made now (the member is stopping, or it timed out).
    Unavailable(String),
    /// The member has more requests waiting than it holds; try again shortly (see
    /// `Error::too_many_requests`, whose reasons for a 503 hold here too).
    TooManyRequests,
}

impl MembershipError {
    /// The status the members API answers with: etcd's for the first four; for a strict
    /// refusal (an opaque 500 in etcd) a 412, since the cluster's state fails the request's
    /// precondition and retrying unchanged will not help.
    pub fn http_status(&self) -> u16 {
        match self {
            MembershipError::IdExists(_) | MembershipError::PeerUrlExists(_) => 409,
            MembershipError::IdRemoved(_) => 410,
            MembershipError::IdNotFound(_) => 404,
            MembershipError::NotEnoughStarted { .. } | MembershipError::Unhealthy(_) => 412,
            MembershipError::Unavailable(_) => 500,
            MembershipError::TooManyRequests => 503,
        }
    }
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // etcd's words, which clients show as they are.
            MembershipError::IdExists(_) => f.write_str("membership: ID exists"),
            MembershipError::PeerUrlExists(_) => f.write_str("membership: peerURL exists"),
            MembershipError::IdRemoved(id) => {
                write!(f, "Member permanently removed: {}", format_id(*id))
            }
            MembershipError::IdNotFound(id) => write!(f, "No such member: {}", format_id(*id)),
            MembershipError::Unavailable(why) => f.write_str(why),
            MembershipError::Unhealthy(why) => write!(
                f,
                "etcdserver: unhealthy cluster: {why} (--strict-reconfig-check)"
            ),
            MembershipError::TooManyRequests => f.write_str(crate::error::TOO_MANY_REQUESTS),
            MembershipError::NotEnoughStarted {
                members_after,
                started_after,
            } => write!(
                f,
                "etcdserver: re-configuration failed due to not enough started members: \
                 {started_after} of {members_after} members would be started, but a quorum of {} \
                 is needed (--strict-reconfig-check)",
                rules::quorum(*members_after)
            ),
        }
    }
}

impl std::error::Error for MembershipError {}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    members: BTreeMap<u64, Member>,
    removed: BTreeSet<u64>,
}

impl Membership {
    pub fn new(initial: impl IntoIterator<Item = Member>) -> Membership {
        Membership {
            members: initial.into_iter().map(|m| (m.id, m)).collect(),
            removed: BTreeSet::new(),
        }
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn get(&self, id: u64) -> Option<&Member> {
        self.members.get(&id)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Started members: those that have published a name (etcd's `IsStarted`). Sticky: a
    /// started member that later crashes still counts.
    pub fn started(&self) -> usize {
        self.members.values().filter(|m| !m.name.is_empty()).count()
    }

    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.contains(&id)
    }

    fn url_in_use(&self, url: &str, except: Option<u64>) -> bool {
        self.members
            .values()
            .filter(|m| Some(m.id) != except)
            .any(|m| m.peer_urls.iter().any(|u| u == url))
    }

    /// Checks an addition without making it.
    pub fn check_add(
        &self,
        id: u64,
        peer_urls: &[String],
        strict: bool,
    ) -> Result<(), MembershipError> {
        if self.removed.contains(&id) {
            return Err(MembershipError::IdRemoved(id));
        }
        if self.members.contains_key(&id) {
            return Err(MembershipError::IdExists(id));
        }
        if let Some(url) = peer_urls.iter().find(|u| self.url_in_use(u, None)) {
            return Err(MembershipError::PeerUrlExists(url.clone()));
        }
        let (members, started) = (self.len(), self.started());
        if strict && !rules::may_add(members, started) {
            return Err(MembershipError::NotEnoughStarted {
                members_after: members + 1,
                started_after: started,
            });
        }
        Ok(())
    }

    /// Adds an unstarted member (no name, no client URLs until it publishes them).
    pub fn add(
        &mut self,
        id: u64,
        peer_urls: Vec<String>,
        strict: bool,
    ) -> Result<(), MembershipError> {
        self.check_add(id, &peer_urls, strict)?;
        self.members.insert(
            id,
            Member {
                id,
                name: String::new(),
                peer_urls,
                client_urls: Vec::new(),
            },
        );
        Ok(())
    }

    /// Checks a removal without making it.
    pub fn check_remove(&self, id: u64, strict: bool) -> Result<(), MembershipError> {
        if self.removed.contains(&id) {
            return Err(MembershipError::IdRemoved(id));
        }
        let leaving = self
            .members
            .get(&id)
            .ok_or(MembershipError::IdNotFound(id))?;
        let remaining = self.len() - 1;
        let remaining_started = self.started() - usize::from(!leaving.name.is_empty());
        if strict && !rules::may_remove(remaining, remaining_started) {
            return Err(MembershipError::NotEnoughStarted {
                members_after: remaining,
                started_after: remaining_started,
            });
        }
        Ok(())
    }

    /// Removes a member for good: its id can never come back.
    pub fn remove(&mut self, id: u64, strict: bool) -> Result<Member, MembershipError> {
        self.check_remove(id, strict)?;
        self.removed.insert(id);
        Ok(self.members.remove(&id).expect("checked above"))
    }

    /// Checks a peer-URL change without making it.
    pub fn check_update(&self, id: u64, peer_urls: &[String]) -> Result<(), MembershipError> {
        if !self.members.contains_key(&id) {
            return Err(MembershipError::IdNotFound(id));
        }
        match peer_urls.iter().find(|u| self.url_in_use(u, Some(id))) {
            Some(url) => Err(MembershipError::PeerUrlExists(url.clone())),
            None => Ok(()),
        }
    }

    /// Changes a member's peer URLs (never checked by the strict rule, as in etcd).
    pub fn update_peer_urls(
        &mut self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<(), MembershipError> {
        if !self.members.contains_key(&id) {
            return Err(MembershipError::IdNotFound(id));
        }
        if let Some(url) = peer_urls.iter().find(|u| self.url_in_use(u, Some(id))) {
            return Err(MembershipError::PeerUrlExists(url.clone()));
        }
        self.members.get_mut(&id).expect("checked above").peer_urls = peer_urls;
        Ok(())
    }

    /// A member started and published its name and client URLs.
    pub fn publish(
        &mut self,
        id: u64,
        name: String,
        client_urls: Vec<String>,
    ) -> Result<(), MembershipError> {
        let member = self
            .members
            .get_mut(&id)
            .ok_or(MembershipError::IdNotFound(id))?;
        member.name = name;
        member.client_urls = client_urls;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn started(id: u64) -> Member {
        Member {
            id,
            name: format!("m{id}"),
            peer_urls: vec![format!("http://10.0.0.{id}:2380")],
            client_urls: vec![format!("http://10.0.0.{id}:2379")],
        }
    }

    fn three() -> Membership {
        Membership::new([started(1), started(2), started(3)])
    }

    fn url(id: u64) -> Vec<String> {
        vec![format!("http://10.0.0.{id}:2380")]
    }

    #[test]
    fn adds_are_unstarted_until_published() {
        let mut m = three();
        m.add(4, url(4), true).unwrap();
        assert_eq!((m.len(), m.started()), (4, 3));
        assert_eq!(m.get(4).unwrap().name, "");
        m.publish(4, "m4".into(), vec!["http://10.0.0.4:2379".into()])
            .unwrap();
        assert_eq!(m.started(), 4);
    }

    #[test]
    fn duplicate_ids_and_peer_urls_conflict() {
        let mut m = three();
        assert_eq!(m.add(2, url(9), false), Err(MembershipError::IdExists(2)));
        assert_eq!(
            m.add(9, url(2), false),
            Err(MembershipError::PeerUrlExists(url(2)[0].clone()))
        );
        assert_eq!(
            m.update_peer_urls(1, url(2)),
            Err(MembershipError::PeerUrlExists(url(2)[0].clone()))
        );
        assert_eq!(
            m.update_peer_urls(1, url(1)),
            Ok(()),
            "a member keeps its own URL"
        );
        assert_eq!(
            m.update_peer_urls(9, url(9)),
            Err(MembershipError::IdNotFound(9))
        );
    }

    #[test]
    fn removed_ids_never_come_back() {
        let mut m = three();
        m.add(4, url(4), false).unwrap();
        m.remove(4, true).unwrap();
        assert_eq!(m.add(4, url(5), false), Err(MembershipError::IdRemoved(4)));
        assert_eq!(m.remove(4, false), Err(MembershipError::IdRemoved(4)));
        assert_eq!(m.remove(7, false), Err(MembershipError::IdNotFound(7)));
    }

    #[test]
    fn the_strict_check_refuses_the_third_unstarted_member_of_three() {
        let mut m = three();
        m.add(4, url(4), true).unwrap();
        m.add(5, url(5), true).unwrap();
        let refused = m.add(6, url(6), true).unwrap_err();
        assert_eq!(
            refused,
            MembershipError::NotEnoughStarted {
                members_after: 6,
                started_after: 3
            }
        );
        assert_eq!(refused.http_status(), 412);
        assert!(
            refused.to_string().contains("not enough started members"),
            "{refused}"
        );
        // Without the check the wedge is reachable: 6 members, 3 started, quorum 4.
        m.add(6, url(6), false).unwrap();
        assert!(m.started() < rules::quorum(m.len()));
        // And the unstarted ones can be removed again, with the check on.
        for id in [6, 5, 4] {
            m.remove(id, true).unwrap();
        }
    }

    #[test]
    fn one_started_member_may_grow_to_two() {
        let mut m = Membership::new([started(1)]);
        m.add(2, url(2), true).unwrap();
        assert_eq!(m.add(3, url(3), true).unwrap_err().http_status(), 412);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Add(u64),
        Remove(u64),
        Start(u64),
    }

    proptest! {
        /// With the check on, no sequence of adds, removes and starts on a healthy cluster ever
        /// leaves started members below quorum, apart from etcd's single-member exception.
        #[test]
        fn strict_mode_never_loses_quorum_by_reconfiguration(
            size in 1u64..6,
            steps in proptest::collection::vec(
                prop_oneof![(1u64..12).prop_map(Step::Add), (1u64..12).prop_map(Step::Remove), (1u64..12).prop_map(Step::Start)],
                0..40,
            ),
        ) {
            let mut m = Membership::new((1..=size).map(started));
            for step in steps {
                let _ = match step {
                    Step::Add(id) => m.add(id, url(id), true),
                    Step::Remove(id) => m.remove(id, true).map(|_| ()),
                    Step::Start(id) => m.publish(id, format!("m{id}"), Vec::new()),
                };
                let exception = m.len() == 2 && m.started() == 1;
                prop_assert!(m.started() >= rules::quorum(m.len()) || exception,
                    "{} of {} started", m.started(), m.len());
                // Invariants of the table itself.
                let urls: Vec<&String> = m.members().flat_map(|x| &x.peer_urls).collect();
                let unique: BTreeSet<&String> = urls.iter().copied().collect();
                prop_assert_eq!(urls.len(), unique.len());
                prop_assert!(m.members().all(|x| !m.is_removed(x.id)));
            }
        }
    }
}
