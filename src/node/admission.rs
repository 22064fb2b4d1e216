//! Which raft messages from the network may reach raft-rs at all.
//!
//! raft-rs trusts its peers: a heartbeat whose commit index lies beyond the log, an append
//! whose entries are not consecutive, or an append response for an index the leader never
//! wrote makes it panic (or corrupt its log), and a term near `u64::MAX` overflows at the next
//! election. Anyone who can reach the peer port can send such a message, so each one is
//! checked here first. Refusing is always safe: raft tolerates lost messages, and every rule
//! below only refuses what a correct member never sends. Pure: a message and a view of the
//! local raft state in, a verdict out.

use raft::eraftpb::{Message, MessageType};

/// No cluster reaches this term (an election a microsecond for half a million years); a
/// higher one is forged, and would overflow raft's `term + 1`.
pub const MAX_TERM: u64 = 1 << 60;

/// What the check needs to know of the local raft state.
pub struct View<'a> {
    pub id: u64,
    pub last_index: u64,
    /// Whether raft's configuration holds a member (a voter or a learner, incoming or
    /// outgoing).
    pub is_member: &'a dyn Fn(u64) -> bool,
    /// False while a joining member waits for its first snapshot and knows no members yet.
    pub knows_members: bool,
}

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

pub fn check(message: &Message, view: &View<'_>) -> Result<(), Refusal> {
    let refuse = |why: String| Err(Refusal(why));
    let kind = message.get_msg_type();
    if !sent_by_peers(kind) {
        return refuse(format!("{kind:?} is never sent between members"));
    }
    if message.to != view.id {
        return refuse(format!("addressed to {:x}", message.to));
    }
    if message.from == 0 || message.from == view.id {
        return refuse(format!("claims to come from {:x}", message.from));
    }
    if view.knows_members && !(view.is_member)(message.from) {
        return refuse(format!("from {:x}, not a member", message.from));
    }
    if message.term > MAX_TERM {
        return refuse(format!("term {} is impossible", message.term));
    }
    match kind {
        MessageType::MsgHeartbeat if message.commit > view.last_index => refuse(format!(
            "heartbeat commits {} but the log ends at {}",
            message.commit, view.last_index
        )),
        MessageType::MsgAppend => check_append(message),
        MessageType::MsgAppendResponse if !message.reject && message.index > view.last_index => {
            refuse(format!(
                "acknowledges {} but the log ends at {}",
                message.index, view.last_index
            ))
        }
        _ => Ok(()),
    }
}

/// An append's entries follow its `index` one by one, with terms that never go down, start
/// at or after `log_term` and never pass the sender's term.
fn check_append(message: &Message) -> Result<(), Refusal> {
    let mut previous_term = message.log_term;
    for (i, entry) in message.get_entries().iter().enumerate() {
        let expected = message.index.checked_add(1 + i as u64);
        if Some(entry.index) != expected {
            return Err(Refusal(format!(
                "append after {} holds entry {} in place {i}",
                message.index, entry.index
            )));
        }
        if entry.term < previous_term || entry.term > message.term {
            return Err(Refusal(format!(
                "entry {} has term {} (previous {previous_term}, sender's {})",
                entry.index, entry.term, message.term
            )));
        }
        previous_term = entry.term;
    }
    Ok(())
}

/// The message types members send each other; the rest are raft's local signals.
fn sent_by_peers(kind: MessageType) -> bool {
    use MessageType::*;
    matches!(
        kind,
        MsgAppend
            | MsgAppendResponse
            | MsgRequestVote
            | MsgRequestVoteResponse
            | MsgRequestPreVote
            | MsgRequestPreVoteResponse
            | MsgSnapshot
            | MsgHeartbeat
            | MsgHeartbeatResponse
            | MsgTransferLeader
            | MsgTimeoutNow
            | MsgReadIndex
            | MsgReadIndexResp
            | MsgPropose
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    fn member(id: u64) -> bool {
        (1..=3).contains(&id)
    }

    fn view() -> View<'static> {
        View {
            id: 1,
            last_index: 10,
            is_member: &member,
            knows_members: true,
        }
    }

    fn message(kind: MessageType) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.set_to(1);
        m.set_from(2);
        m.set_term(5);
        m
    }

    fn entry(index: u64, term: u64) -> Entry {
        let mut e = Entry::default();
        e.set_index(index);
        e.set_term(term);
        e
    }

    #[test]
    fn ordinary_messages_pass() {
        let mut heartbeat = message(MessageType::MsgHeartbeat);
        heartbeat.set_commit(10);
        assert_eq!(check(&heartbeat, &view()), Ok(()));
        let mut append = message(MessageType::MsgAppend);
        append.set_index(10);
        append.set_log_term(4);
        append.set_entries(vec![entry(11, 4), entry(12, 5)].into());
        assert_eq!(check(&append, &view()), Ok(()));
        assert_eq!(
            check(&message(MessageType::MsgRequestVote), &view()),
            Ok(())
        );
    }

    #[test]
    fn a_heartbeat_committing_past_the_log_is_refused() {
        let mut heartbeat = message(MessageType::MsgHeartbeat);
        heartbeat.set_commit(11);
        assert!(check(&heartbeat, &view()).is_err());
        heartbeat.set_commit(u64::MAX);
        assert!(check(&heartbeat, &view()).is_err());
    }

    #[test]
    fn strangers_and_impostors_are_refused() {
        let mut m = message(MessageType::MsgHeartbeat);
        m.set_from(9);
        assert!(check(&m, &view()).is_err());
        m.set_from(1);
        assert!(check(&m, &view()).is_err());
        m.set_from(0);
        assert!(check(&m, &view()).is_err());
        let mut m = message(MessageType::MsgHeartbeat);
        m.set_to(2);
        assert!(check(&m, &view()).is_err());
    }

    #[test]
    fn a_joining_member_hears_the_leader_before_it_knows_the_members() {
        let joining = View {
            id: 1,
            last_index: 0,
            is_member: &|_| false,
            knows_members: false,
        };
        assert_eq!(check(&message(MessageType::MsgSnapshot), &joining), Ok(()));
    }

    #[test]
    fn local_signals_and_impossible_terms_are_refused() {
        for kind in [
            MessageType::MsgHup,
            MessageType::MsgBeat,
            MessageType::MsgUnreachable,
            MessageType::MsgSnapStatus,
            MessageType::MsgCheckQuorum,
        ] {
            assert!(check(&message(kind), &view()).is_err(), "{kind:?}");
        }
        let mut m = message(MessageType::MsgRequestVote);
        m.set_term(u64::MAX);
        assert!(check(&m, &view()).is_err());
    }

    #[test]
    fn appends_must_be_consecutive_and_in_term_order() {
        let mut append = message(MessageType::MsgAppend);
        append.set_index(10);
        append.set_log_term(4);
        append.set_entries(vec![entry(11, 4), entry(13, 4)].into());
        assert!(check(&append, &view()).is_err());
        append.set_entries(vec![entry(11, 5), entry(12, 4)].into());
        assert!(check(&append, &view()).is_err());
        append.set_entries(vec![entry(11, 6)].into());
        assert!(check(&append, &view()).is_err(), "a term past the sender's");
        append.set_index(u64::MAX);
        append.set_entries(vec![entry(0, 5)].into());
        assert!(check(&append, &view()).is_err());
    }

    #[test]
    fn an_acknowledgement_past_the_log_is_refused() {
        let mut ack = message(MessageType::MsgAppendResponse);
        ack.set_index(11);
        assert!(check(&ack, &view()).is_err());
        ack.set_reject(true);
        assert_eq!(check(&ack, &view()), Ok(()));
    }
}
