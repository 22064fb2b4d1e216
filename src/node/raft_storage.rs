//! raft-rs's in-memory log, answering snapshot requests with our latest real snapshot (raft's
//! `MemStorage` would hand followers a snapshot without the store in it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use raft::eraftpb::{Entry, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage};

#[derive(Clone, Default)]
pub struct RaftStorage {
    pub mem: MemStorage,
    latest: Arc<Mutex<Snapshot>>,
    /// Raft asked for a snapshot the latest one cannot serve: take a fresh one.
    wanted: Arc<AtomicBool>,
}

impl RaftStorage {
    /// Whether a fresh snapshot was asked for since the last call.
    pub fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::Relaxed)
    }

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

    /// The latest snapshot, unless it predates `to` joining the cluster: raft-rs refuses to
    /// restore a snapshot whose configuration leaves the receiver out (a member added at run
    /// time, facing the bootstrap snapshot). Then raft is told to ask again shortly, and the
    /// node takes a fresh snapshot meanwhile.
    fn snapshot(&self, _request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let conf = latest.get_metadata().get_conf_state();
        let includes = conf
            .get_voters()
            .iter()
            .chain(conf.get_learners())
            .any(|id| *id == to);
        if !includes {
            self.wanted.store(true, Ordering::Relaxed);
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(latest)
    }
}
