//! raft-rs's in-memory log, answering snapshot requests with our latest real snapshot (raft's
//! `MemStorage` would hand followers a snapshot without the store in it).

use std::sync::{Arc, Mutex};

use raft::eraftpb::{Entry, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage};

#[derive(Clone, Default)]
pub struct RaftStorage {
    pub mem: MemStorage,
    latest: Arc<Mutex<Snapshot>>,
}

impl RaftStorage {
    pub fn set_latest(&self, snapshot: Snapshot) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }
}

impl Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        Ok(self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }
}
