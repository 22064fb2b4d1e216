//! Which raft messages from the network may reach raft-rs at all.
//!
//! raft-rs trusts its peers: a heartbeat whose commit index lies beyond the log, an append
//! whose entries are not consecutive, an append response for an index the leader never
//! wrote, a proposal or read request without entries, a snapshot whose configuration lists a
//! member twice — each makes it panic or corrupt its log. Anyone who can reach the peer port
//! can send such a message, so each one is checked here first. Refusing is always safe: raft
//! tolerates lost messages, and every rule below only refuses what a correct member never
//! sends. Pure: a message and a view of the local raft state in, a verdict out.
//!
//! What this cannot do is tell a forged message from a real one: a message that claims to
//! come from the leader, in its term, with well-formed entries, is taken as the leader's
//! (raft is not Byzantine-tolerant). Only authenticated peers close that door (peer TLS).

use raft::eraftpb::{ConfState, Message, MessageType, Snapshot};

/// How far ahead of this member's term a message's term may be. With pre-vote, terms move
/// only when an election can win, so a real member is never this far ahead; a forged term
/// can push this member's term up by at most this much per message, which keeps `u64`
/// overflow (raft's `term + 1`) some 2^40 forged messages away. (An absolute cap would be
/// worse: one message at the cap would leave every election after it refused.)
pub const MAX_TERM_JUMP: u64 = 1 << 24;

/// No log reaches this index (a write a nanosecond for a century is below 2^62); a
/// snapshot claiming one is forged, and arithmetic on it would overflow.
pub const MAX_LOG_INDEX: u64 = 1 << 62;

/// The most bytes of context a message or an entry carries: raft's own contexts are a read
/// request's id or a campaign's kind, a few bytes; raft copies a message's context into its
/// answer, so a large one would be multiplied.
pub const MAX_CONTEXT_BYTES: usize = 1024;

/// What the check needs to know of the local raft state.
pub struct View {
    pub id: u64,
    pub term: u64,
    pub last_index: u64,
    /// The committed index and the term of the entry there.
    pub committed: u64,
    pub committed_term: u64,
}

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

pub fn check(message: &Message, view: &View) -> Result<(), Refusal> {
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
    // A sender this member does not know as a member is not refused: a member added while
    // this one lagged may lead it, and this one learns of the addition only from that leader's
    // appends. raft-rs itself ignores answers from members it does not track.
    if message.term > view.term.saturating_add(MAX_TERM_JUMP) {
        return refuse(format!(
            "term {} is implausibly far ahead of {}",
            message.term, view.term
        ));
    }
    let entries = message.get_entries();
    if message.context.len() > MAX_CONTEXT_BYTES
        || entries.iter().any(|e| e.context.len() > MAX_CONTEXT_BYTES)
    {
        return refuse("a context too large".into());
    }
    match kind {
        // Forwarded requests carry no term (raft-rs panics forwarding one that does) and
        // something to propose or read.
        MessageType::MsgPropose | MessageType::MsgReadIndex if message.term != 0 => {
            refuse(format!("a {kind:?} with term {}", message.term))
        }
        MessageType::MsgPropose if entries.is_empty() => refuse("an empty proposal".into()),
        MessageType::MsgReadIndex | MessageType::MsgReadIndexResp
            if entries.len() != 1 || entries[0].data.len() > MAX_CONTEXT_BYTES =>
        {
            refuse(format!("a {kind:?} without one small request id"))
        }
        MessageType::MsgSnapshot => check_snapshot(message, view),
        MessageType::MsgHeartbeat if message.commit > view.last_index => refuse(format!(
            "heartbeat commits {} but the log ends at {}",
            message.commit, view.last_index
        )),
        // A leader of this member's term or later holds its committed entries, and a log's
        // terms never go down: at or after the committed index such a leader's log has no
        // term below the committed entry's. raft-rs, looking for where such an append parts
        // from its log, walks back into the compacted part and panics. (An older leader's
        // appends go to raft, which answers them so that the old leader steps down.)
        MessageType::MsgAppend
            if message.term >= view.term
                && message.index >= view.committed
                && message.log_term < view.committed_term =>
        {
            refuse(format!(
                "append after entry {} with term {}, below the committed entry {}'s term {}",
                message.index, message.log_term, view.committed, view.committed_term
            ))
        }
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

/// A snapshot raft can install: a configuration of distinct members (raft-rs panics restoring
/// one that lists a member twice), not a joint one (this cluster never makes one), and data
/// that is a state this member can load (else loading it would stop the member).
fn check_snapshot(message: &Message, view: &View) -> Result<(), Refusal> {
    let snapshot: &Snapshot = message.get_snapshot();
    let meta = snapshot.get_metadata();
    if meta.index == 0 || meta.index > MAX_LOG_INDEX || meta.term == 0 || meta.term > message.term {
        return Err(Refusal(format!(
            "a snapshot at index {}, term {} (sender's term {})",
            meta.index, meta.term, message.term
        )));
    }
    let conf = meta.get_conf_state();
    check_conf_state(conf)?;
    // A leader's snapshot names the leader and the member it is for (raft-rs would not
    // install one without the receiver; one without its sender is not a leader's).
    let listed = |id: u64| conf.voters.contains(&id) || conf.learners.contains(&id);
    if !listed(view.id) || !conf.voters.contains(&message.from) {
        return Err(Refusal(format!(
            "a snapshot whose configuration {:?} leaves out its sender or receiver",
            conf.voters
        )));
    }
    crate::state::State::restore(&snapshot.data)
        .map(|_| ())
        .map_err(|e| Refusal(format!("a snapshot that does not load: {e}")))
}

fn check_conf_state(conf: &ConfState) -> Result<(), Refusal> {
    if !conf.voters_outgoing.is_empty() || !conf.learners_next.is_empty() || conf.auto_leave {
        return Err(Refusal("a joint configuration".into()));
    }
    let mut members: Vec<u64> = conf.voters.iter().chain(&conf.learners).copied().collect();
    let listed = members.len();
    members.sort_unstable();
    members.dedup();
    if conf.voters.is_empty() || members.len() != listed || members.contains(&0) {
        return Err(Refusal(format!(
            "a configuration of voters {:?} and learners {:?}",
            conf.voters, conf.learners
        )));
    }
    Ok(())
}

/// An append's entries follow its `index` one by one, with terms that never go down, start
/// at or after `log_term` and never pass the sender's term.
fn check_append(message: &Message) -> Result<(), Refusal> {
    // Only the start of the log has term 0; raft-rs takes such an append as matching any log
    // it does not hold and acknowledges entries it never wrote.
    if message.index > 0 && message.log_term == 0 {
        return Err(Refusal(format!(
            "append after entry {} claims it has term 0",
            message.index
        )));
    }
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

    fn view() -> View {
        View {
            id: 1,
            term: 5,
            last_index: 10,
            committed: 8,
            committed_term: 3,
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
    fn impostors_are_refused() {
        let mut m = message(MessageType::MsgHeartbeat);
        m.set_from(1);
        assert!(check(&m, &view()).is_err());
        m.set_from(0);
        assert!(check(&m, &view()).is_err());
        let mut m = message(MessageType::MsgHeartbeat);
        m.set_to(2);
        assert!(check(&m, &view()).is_err());
    }

    #[test]
    fn a_member_this_one_does_not_know_yet_may_lead_it() {
        // Added while this member lagged, and elected: its appends are how this one learns.
        let mut append = message(MessageType::MsgAppend);
        append.set_from(9);
        append.set_index(10);
        append.set_log_term(4);
        assert_eq!(check(&append, &view()), Ok(()));
    }

    #[test]
    fn an_append_whose_term_is_below_the_committed_log_is_refused() {
        let mut append = message(MessageType::MsgAppend);
        append.set_index(10_000);
        append.set_log_term(2);
        assert!(check(&append, &view()).is_err());
        append.set_log_term(3);
        assert_eq!(check(&append, &view()), Ok(()));
        // Before the committed index raft answers with its commit index and looks no further.
        append.set_index(7);
        append.set_log_term(2);
        assert_eq!(check(&append, &view()), Ok(()));
    }

    #[test]
    fn an_append_after_a_termless_entry_is_refused() {
        let mut append = message(MessageType::MsgAppend);
        append.set_index(10_000);
        append.set_log_term(0);
        assert!(check(&append, &view()).is_err());
        // The log's very start is the one place with term 0.
        append.set_index(0);
        append.set_entries(vec![entry(1, 1)].into());
        assert_eq!(check(&append, &view()), Ok(()));
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
    fn terms_may_run_ahead_but_not_without_bound() {
        let mut m = message(MessageType::MsgRequestVote);
        m.set_term(5 + MAX_TERM_JUMP);
        assert_eq!(check(&m, &view()), Ok(()));
        m.set_term(6 + MAX_TERM_JUMP);
        assert!(check(&m, &view()).is_err());
        // A member already far along (forced there, or just old) still holds elections.
        let far = View {
            term: 1 << 60,
            ..view()
        };
        m.set_term((1 << 60) + 1);
        assert_eq!(check(&m, &far), Ok(()));
    }

    #[test]
    fn forwarded_requests_need_something_to_do_and_no_term() {
        let mut propose = message(MessageType::MsgPropose);
        propose.set_term(0);
        assert!(check(&propose, &view()).is_err(), "no entries");
        propose.set_entries(vec![entry(0, 0)].into());
        assert_eq!(check(&propose, &view()), Ok(()));
        propose.set_term(5);
        assert!(check(&propose, &view()).is_err(), "a term");
        let mut read = message(MessageType::MsgReadIndex);
        read.set_term(0);
        assert!(check(&read, &view()).is_err(), "no request id");
        read.set_entries(vec![entry(0, 0)].into());
        assert_eq!(check(&read, &view()), Ok(()));
        read.set_term(3);
        assert!(check(&read, &view()).is_err(), "a term");
        let mut answer = message(MessageType::MsgReadIndexResp);
        assert!(check(&answer, &view()).is_err());
        answer.set_entries(vec![entry(0, 0)].into());
        assert_eq!(check(&answer, &view()), Ok(()));
    }

    #[test]
    fn large_contexts_are_refused() {
        let mut m = message(MessageType::MsgHeartbeat);
        m.set_context(vec![7; MAX_CONTEXT_BYTES + 1].into());
        assert!(check(&m, &view()).is_err());
        m.set_context(vec![7; 8].into());
        assert_eq!(check(&m, &view()), Ok(()));
    }

    fn snapshot(voters: &[u64], learners: &[u64]) -> Message {
        let mut m = message(MessageType::MsgSnapshot);
        let state = crate::state::State::default();
        let snap = m.mut_snapshot();
        snap.set_data(state.save().into());
        let meta = snap.mut_metadata();
        meta.set_index(20);
        meta.set_term(5);
        meta.mut_conf_state().set_voters(voters.to_vec());
        meta.mut_conf_state().set_learners(learners.to_vec());
        m
    }

    #[test]
    fn snapshots_must_be_installable() {
        assert_eq!(check(&snapshot(&[1, 2, 3], &[]), &view()), Ok(()));
        assert!(
            check(&snapshot(&[1, 3], &[]), &view()).is_err(),
            "without its sender"
        );
        assert!(
            check(&snapshot(&[2, 3], &[]), &view()).is_err(),
            "without its receiver"
        );
        let mut far = snapshot(&[1, 2, 3], &[]);
        far.mut_snapshot().mut_metadata().set_index(u64::MAX - 1);
        assert!(check(&far, &view()).is_err(), "an index no log reaches");
        assert!(
            check(&snapshot(&[1, 2], &[2]), &view()).is_err(),
            "a voter and a learner"
        );
        assert!(
            check(&snapshot(&[1, 1], &[]), &view()).is_err(),
            "a voter twice"
        );
        assert!(check(&snapshot(&[], &[]), &view()).is_err(), "no voters");
        let mut garbage = snapshot(&[1, 2, 3], &[]);
        garbage.mut_snapshot().set_data(vec![0xff; 64].into());
        assert!(check(&garbage, &view()).is_err(), "data that does not load");
        let mut ahead = snapshot(&[1, 2, 3], &[]);
        ahead.mut_snapshot().mut_metadata().set_term(6);
        assert!(check(&ahead, &view()).is_err(), "a term past the sender's");
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
