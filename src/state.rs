//! The replicated state machine: the v2 keyspace and the member table. Every member applies
//! the same log entries to it; a snapshot is this, as bytes.

use crate::membership::Membership;
use crate::store::Store;

#[derive(Debug, Default)]
pub struct State {
    pub store: Store,
    pub members: Membership,
}

impl State {
    /// `[member table length u32 LE][member table JSON][store snapshot]`.
    pub fn save(&self) -> Vec<u8> {
        self.image(self.store.save())
    }

    /// What every member applying the same log has identically (the store without its
    /// member-local read counters).
    pub fn replicated_image(&self) -> Vec<u8> {
        self.image(self.store.replicated_image())
    }

    /// Whether `other`'s `replicated_image` is the same as this one's, without encoding both
    /// when the states are equal (the usual case).
    pub fn same_replicated_image(&self, other: &State) -> bool {
        (self.members == other.members && self.store.same_replicated(&other.store))
            || self.replicated_image() == other.replicated_image()
    }

    fn image(&self, store: Vec<u8>) -> Vec<u8> {
        let members = serde_json::to_vec(&self.members).expect("the member table serialises");
        let mut out = Vec::with_capacity(4 + members.len() + store.len());
        out.extend_from_slice(&(members.len() as u32).to_le_bytes());
        out.extend_from_slice(&members);
        out.extend_from_slice(&store);
        out
    }

    pub fn restore(bytes: &[u8]) -> Result<State, String> {
        let (len, rest) = bytes.split_at_checked(4).ok_or("state image too short")?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let (members, store) = rest.split_at_checked(len).ok_or("state image cut short")?;
        let members: Membership =
            serde_json::from_slice(members).map_err(|e| format!("member table: {e}"))?;
        let store = Store::restore(store).map_err(|e| e.to_string())?;
        Ok(State { store, members })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Member;
    use crate::store::{Content, TtlOptions};
    use crate::Timestamp;

    #[test]
    fn state_round_trips_and_damage_is_refused() {
        let member = Member {
            id: 7,
            name: "m".into(),
            peer_urls: vec!["http://a:1".into()],
            client_urls: vec![],
        };
        let mut state = State {
            store: Store::new(),
            members: Membership::new([member]),
        };
        let now = Timestamp::from_unix_secs(1_764_000_000);
        state
            .store
            .set("/k", Content::Value("v"), TtlOptions::PERMANENT, now)
            .unwrap();
        let bytes = state.save();
        let back = State::restore(&bytes).unwrap();
        assert_eq!(back.save(), bytes);
        assert_eq!(back.members, state.members);
        for bad in [&bytes[..3], &bytes[..10], &[9, 0, 0, 0, b'{'][..], &[]] {
            assert!(State::restore(bad).is_err());
        }
    }
}
