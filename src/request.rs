//! A client's write as it travels through the raft log, and how every member applies it.
//!
//! The proposing member stamps each request with its clock (`time`); a TTL becomes an expiry
//! only when applied, as `time + ttl`, and the leader's periodic `Sync` carries the leader's
//! clock. So what a member's store does depends only on the log, never on when or where the
//! entry is applied.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode};
use crate::membership::MembershipError;
use crate::state::State;
use crate::store::{expiry_after, Condition, Content, Event, TtlOptions};
use crate::timestamp::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `value: None` makes a directory.
    Set {
        key: String,
        value: Option<String>,
        ttl: Option<u64>,
        refresh: bool,
    },
    Create {
        key: String,
        value: Option<String>,
        ttl: Option<u64>,
    },
    CreateInOrder {
        dir: String,
        value: Option<String>,
        ttl: Option<u64>,
    },
    Update {
        key: String,
        value: String,
        ttl: Option<u64>,
        refresh: bool,
    },
    CompareAndSwap {
        key: String,
        prev_value: Option<String>,
        prev_index: Option<u64>,
        value: String,
        ttl: Option<u64>,
        refresh: bool,
    },
    Delete {
        key: String,
        dir: bool,
        recursive: bool,
    },
    CompareAndDelete {
        key: String,
        prev_value: Option<String>,
        prev_index: Option<u64>,
    },
    /// Expire everything due at the proposal's time (proposed by the leader).
    Sync,
    /// A member's peer URLs change (not a raft membership change).
    UpdatePeerUrls { id: u64, peer_urls: Vec<String> },
    /// A member started and announces its name and client URLs (etcd's publish).
    Publish {
        id: u64,
        name: String,
        client_urls: Vec<String>,
    },
}

/// One log entry's payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Chosen by the proposing member so it can wake the waiting client.
    pub id: u64,
    /// The proposing member's clock.
    pub time: Timestamp,
    pub op: Op,
}

impl Proposal {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a proposal always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Proposal, Error> {
        postcard::from_bytes(bytes).map_err(|e| {
            Error::new(
                ErrorCode::RaftInternal,
                format!("undecodable log entry: {e}"),
                0,
            )
        })
    }
}

fn content(value: &Option<String>) -> Content<'_> {
    match value {
        Some(v) => Content::Value(v),
        None => Content::Dir,
    }
}

/// What applying one proposal did.
// Returned once per entry and never kept: boxing the event would cost every write an
// allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Applied {
    /// A change to the keyspace: its event, or why it was refused.
    Keys(Result<Event, Error>),
    /// A change to the member table (a re-address or a publish).
    Members(Result<(), MembershipError>),
}

/// Applies one proposal to the replicated state. `Sync` answers with the last expiry, if any.
pub fn apply(state: &mut State, proposal: &Proposal) -> Applied {
    match &proposal.op {
        Op::UpdatePeerUrls { id, peer_urls } => {
            Applied::Members(state.members.update_peer_urls(*id, peer_urls.clone()))
        }
        Op::Publish {
            id,
            name,
            client_urls,
        } => Applied::Members(
            state
                .members
                .publish(*id, name.clone(), client_urls.clone()),
        ),
        _ => Applied::Keys(apply_to_keys(state, proposal)),
    }
}

fn apply_to_keys(state: &mut State, proposal: &Proposal) -> Result<Event, Error> {
    let now = proposal.time;
    let store = &mut state.store;
    let ttl = |secs: &Option<u64>, refresh: bool| TtlOptions {
        expire_at: secs.and_then(|s| expiry_after(now, s)),
        refresh,
    };
    match &proposal.op {
        Op::Set {
            key,
            value,
            ttl: t,
            refresh,
        } => store.set(key, content(value), ttl(t, *refresh), now),
        Op::Create { key, value, ttl: t } => store.create(key, content(value), ttl(t, false), now),
        Op::CreateInOrder { dir, value, ttl: t } => {
            store.create_in_order(dir, content(value), ttl(t, false), now)
        }
        Op::Update {
            key,
            value,
            ttl: t,
            refresh,
        } => store.update(key, value, ttl(t, *refresh), now),
        Op::CompareAndSwap {
            key,
            prev_value,
            prev_index,
            value,
            ttl: t,
            refresh,
        } => {
            let condition = Condition {
                prev_value: prev_value.as_deref(),
                prev_index: *prev_index,
            };
            store.compare_and_swap(key, condition, value, ttl(t, *refresh), now)
        }
        Op::Delete {
            key,
            dir,
            recursive,
        } => store.delete(key, *dir, *recursive, now),
        Op::CompareAndDelete {
            key,
            prev_value,
            prev_index,
        } => {
            let condition = Condition {
                prev_value: prev_value.as_deref(),
                prev_index: *prev_index,
            };
            store.compare_and_delete(key, condition, now)
        }
        Op::Sync => store
            .expire(now)
            .pop()
            .ok_or_else(|| Error::new(ErrorCode::KeyNotFound, "nothing expired", store.index())),
        Op::UpdatePeerUrls { .. } | Op::Publish { .. } => {
            unreachable!("member table changes are applied by `apply`")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keyspace's answer to a proposal that changes it.
    fn apply(state: &mut State, proposal: &Proposal) -> Result<Event, Error> {
        match super::apply(state, proposal) {
            Applied::Keys(result) => result,
            Applied::Members(result) => panic!("a member table change: {result:?}"),
        }
    }

    fn proposal(op: Op, secs: i64) -> Proposal {
        Proposal {
            id: 7,
            time: Timestamp::from_unix_secs(1_764_000_000 + secs),
            op,
        }
    }

    #[test]
    fn proposals_round_trip_through_bytes() {
        let p = proposal(
            Op::CompareAndSwap {
                key: "/k".into(),
                prev_value: Some("a".into()),
                prev_index: None,
                value: "b".into(),
                ttl: Some(5),
                refresh: false,
            },
            0,
        );
        assert_eq!(Proposal::decode(&p.encode()).unwrap(), p);
        assert!(Proposal::decode(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn ttl_counts_from_the_proposers_clock_and_sync_expires() {
        let mut store = State::default();
        let set = Op::Set {
            key: "/k".into(),
            value: Some("v".into()),
            ttl: Some(5),
            refresh: false,
        };
        let event = apply(&mut store, &proposal(set, 0)).unwrap();
        assert_eq!(
            event.node.expiration,
            Some(Timestamp::from_unix_secs(1_764_000_005))
        );
        assert!(
            apply(&mut store, &proposal(Op::Sync, 4)).is_err(),
            "nothing due yet"
        );
        let expired = apply(&mut store, &proposal(Op::Sync, 5)).unwrap();
        assert_eq!(expired.key(), "/k");
    }

    /// What TTLs do across clock jumps (README, "TTLs and clock jumps"): a TTL becomes a
    /// deadline on the wall clock of the member that took the write; a jump on a reader only
    /// changes the `ttl` it shows while the jump lasts; keys expire when the leader's clock
    /// passes their deadline, so a leader jumping forward expires early, and once a jump is
    /// undone nothing is left shifted except keys written during it.
    #[test]
    fn ttls_are_deadlines_on_the_wall_clock_across_jumps() {
        let mut state = State::default();
        let hour = 3600;
        let set = |key: &str| Op::Set {
            key: key.into(),
            value: Some("v".into()),
            ttl: Some(2 * hour),
            refresh: false,
        };
        apply(&mut state, &proposal(set("/before"), 0)).unwrap();
        let ttl_at = |state: &State, key: &str, secs: i64| {
            let now = Timestamp::from_unix_secs(1_764_000_000 + secs);
            state.store.get(key, false, now).unwrap().node.ttl
        };
        // The clock jumps an hour ahead: the key shows an hour left, and a Sync at the
        // jumped time expires nothing yet.
        assert_eq!(ttl_at(&state, "/before", hour as i64), hour as i64);
        assert!(apply(&mut state, &proposal(Op::Sync, hour as i64)).is_err());
        // A key written during the jump gets its deadline from the jumped clock.
        apply(&mut state, &proposal(set("/during"), hour as i64)).unwrap();
        // The jump is undone: the first key shows its full two hours again; the one written
        // during the jump keeps the hour it was given on top.
        assert_eq!(ttl_at(&state, "/before", 0), 2 * hour as i64);
        assert_eq!(ttl_at(&state, "/during", 0), 3 * hour as i64);
        // A leader whose clock jumps past a deadline expires the key at once.
        let expired = apply(&mut state, &proposal(Op::Sync, 2 * hour as i64)).unwrap();
        assert_eq!(expired.key(), "/before");
        // A clock that goes back only delays expiry.
        assert!(apply(&mut state, &proposal(Op::Sync, -(hour as i64))).is_err());
        assert!(state
            .store
            .get("/during", false, Timestamp::from_unix_secs(1_764_000_000))
            .is_ok());
    }

    #[test]
    fn every_op_reaches_the_store() {
        let mut store = State::default();
        let ops = [
            Op::Create {
                key: "/d".into(),
                value: None,
                ttl: None,
            },
            Op::CreateInOrder {
                dir: "/q".into(),
                value: Some("j".into()),
                ttl: None,
            },
            Op::Set {
                key: "/k".into(),
                value: Some("1".into()),
                ttl: None,
                refresh: false,
            },
            Op::Update {
                key: "/k".into(),
                value: "2".into(),
                ttl: None,
                refresh: false,
            },
            Op::CompareAndSwap {
                key: "/k".into(),
                prev_value: Some("2".into()),
                prev_index: None,
                value: "3".into(),
                ttl: None,
                refresh: false,
            },
            Op::CompareAndDelete {
                key: "/k".into(),
                prev_value: Some("3".into()),
                prev_index: None,
            },
            Op::Delete {
                key: "/d".into(),
                dir: true,
                recursive: false,
            },
        ];
        for (i, op) in ops.into_iter().enumerate() {
            let event = apply(&mut store, &proposal(op, 0)).unwrap();
            assert_eq!(event.index(), i as u64 + 1);
        }
    }

    #[test]
    fn publish_fills_in_a_members_name_and_client_urls() {
        let member = crate::membership::Member {
            id: 5,
            name: String::new(),
            peer_urls: vec!["http://a:2380".into()],
            client_urls: vec![],
        };
        let mut state = State {
            members: crate::membership::Membership::new([member]),
            ..State::default()
        };
        let op = Op::Publish {
            id: 5,
            name: "five".into(),
            client_urls: vec!["http://a:2379".into()],
        };
        let applied = super::apply(&mut state, &proposal(op, 0));
        assert!(
            matches!(applied, Applied::Members(Ok(()))),
            "a publish succeeds as a member table change, not as an error: {applied:?}"
        );
        let published = state.members.get(5).unwrap();
        assert_eq!(
            (published.name.as_str(), published.client_urls.len()),
            ("five", 1)
        );
        assert_eq!(
            state.store.index(),
            0,
            "publishing does not touch the keyspace"
        );
    }
}
