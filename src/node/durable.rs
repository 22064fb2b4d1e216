//! What this member has made durable, and the rule that no message it sends vouches for more.
//!
//! A granted vote promises that the voter will not vote for anyone else in that term, and an
//! acknowledged append promises that the entries survive a crash; both promises are only as
//! good as the fsync behind them. A member that sent either before syncing could, after a power
//! cut, vote twice in a term or lose an entry a leader counted as replicated. The node checks
//! every message against what it has synced before the message leaves.

use raft::eraftpb::{Message, MessageType};

/// The hard state and log end as last synced to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    pub term: u64,
    pub vote: u64,
    pub last_index: u64,
}

impl Durable {
    /// Why `message` vouches for something not yet durable here, if it does.
    pub fn vouches_beyond(&self, message: &Message) -> Option<String> {
        match message.get_msg_type() {
            MessageType::MsgRequestVoteResponse
                if !message.reject && (self.vote != message.to || self.term < message.term) =>
            {
                Some(format!(
                    "a vote for {} in term {} left before it was synced (durable: vote {} in term {})",
                    message.to, message.term, self.vote, self.term
                ))
            }
            MessageType::MsgAppendResponse
                if !message.reject && message.index > self.last_index =>
            {
                Some(format!(
                    "an acknowledgement of entries up to {} left before they were synced (durable up to {})",
                    message.index, self.last_index
                ))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: MessageType, to: u64, term: u64, index: u64, reject: bool) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.to = to;
        m.term = term;
        m.index = index;
        m.reject = reject;
        m
    }

    #[test]
    fn a_vote_needs_the_synced_vote_and_term() {
        let durable = Durable {
            term: 5,
            vote: 2,
            last_index: 10,
        };
        let vote =
            |to, term, reject| message(MessageType::MsgRequestVoteResponse, to, term, 0, reject);
        assert_eq!(durable.vouches_beyond(&vote(2, 5, false)), None);
        assert!(durable.vouches_beyond(&vote(3, 5, false)).is_some());
        assert!(durable.vouches_beyond(&vote(2, 6, false)).is_some());
        assert_eq!(
            durable.vouches_beyond(&vote(3, 6, true)),
            None,
            "a refusal promises nothing"
        );
    }

    #[test]
    fn an_acknowledgement_needs_the_synced_entries() {
        let durable = Durable {
            term: 5,
            vote: 2,
            last_index: 10,
        };
        let ack = |index, reject| message(MessageType::MsgAppendResponse, 2, 5, index, reject);
        assert_eq!(durable.vouches_beyond(&ack(10, false)), None);
        assert!(durable.vouches_beyond(&ack(11, false)).is_some());
        assert_eq!(durable.vouches_beyond(&ack(11, true)), None);
        let heartbeat = message(MessageType::MsgHeartbeatResponse, 2, 9, 99, false);
        assert_eq!(durable.vouches_beyond(&heartbeat), None);
    }
}
