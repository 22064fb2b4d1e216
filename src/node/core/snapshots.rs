//! Snapshots: the store saved every `snapshot_count` applied entries (and the log behind it
//! released), and a leader's snapshot installed in place of the log and the store.

use super::*;

impl<R: Runtime> Core<R> {
    /// A snapshot from the leader: it replaces the log and the store.
    pub(super) async fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), Fatal> {
        let meta = snapshot.get_metadata().clone();
        let state = State::restore(&snapshot.data)?;
        while let Err(e) = self.snapshotter.save(&snapshot).await {
            self.wait_for_room(e).await?;
        }
        while let Err(e) = self.wal.snapshot_installed(meta.index, meta.term).await {
            self.wait_for_room(e).await?;
        }
        self.storage
            .mem
            .wl()
            .apply_snapshot(snapshot.clone())
            .map_err(|e| e.to_string())?;
        self.storage.set_latest(snapshot);
        self.note_durable();
        let mut current = self.shared.state.write().unwrap_or_else(|e| e.into_inner());
        let mut state = state;
        // The tree and history are the leader's now; the clients watching here stay.
        state.store.adopt_watchers(&mut current.store);
        // Members added or re-addressed in the entries the snapshot stands for were never
        // applied here one by one: the transport learns of them now, or this member could
        // hear from them but never answer (a joiner that became leader waited for ever).
        for member in state.members.members() {
            self.rt.net().add_peer(member.id, &member.peer_urls);
        }
        // And members removed in them lose their lanes, as if applied here.
        for gone in current
            .members
            .members()
            .filter(|m| state.members.is_removed(m.id))
        {
            self.rt.net().remove_peer(gone.id);
        }
        *current = state;
        self.applied = meta.index;
        self.last_snapshot = meta.index;
        let mut status = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        status.applied = meta.index;
        status.snapshots_installed += 1;
        Ok(())
    }

    /// Every `snapshot_count` applied entries: save the store, let raft forget all but the
    /// catch-up entries, keep `max_snapshots` files and release the log they no longer need.
    pub(super) async fn maybe_snapshot(&mut self) -> Result<(), Fatal> {
        let wanted = self.storage.take_wanted();
        if !wanted
            && self.applied
                < self
                    .last_snapshot
                    .saturating_add(self.config.snapshot_count)
        {
            return Ok(());
        }
        let index = self.applied;
        let term = self.storage.mem.term(index).map_err(|e| e.to_string())?;
        let conf_state: ConfState = self
            .storage
            .mem
            .initial_state()
            .map_err(|e| e.to_string())?
            .conf_state;
        let data = self
            .shared
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .save();
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let meta = snapshot.mut_metadata();
        meta.set_index(index);
        meta.set_term(term);
        meta.set_conf_state(conf_state);
        if let Err(e) = self.snapshotter.save(&snapshot).await {
            if !e.is_no_space() {
                return Err(e.to_string());
            }
            // A snapshot only saves work later: the log still holds everything, so it waits
            // for room (raft asks again when a follower needs one).
            let now = self.rt.elapsed();
            if self
                .snapshot_skipped_at
                .is_none_or(|at| now >= at + std::time::Duration::from_secs(60))
            {
                eprintln!("etcd: snapshot at {index} not saved, the disk is full: {e}");
                self.snapshot_skipped_at = Some(now);
            }
            self.last_snapshot = index;
            return Ok(());
        }
        self.storage.set_latest(snapshot);
        let compact_to = index.saturating_sub(self.config.catch_up_entries);
        let first = self.storage.mem.first_index().map_err(|e| e.to_string())?;
        if compact_to > first {
            self.storage
                .mem
                .wl()
                .compact(compact_to)
                .map_err(|e| e.to_string())?;
        }
        let oldest = self
            .snapshotter
            .purge(self.config.max_snapshots)
            .await
            .map_err(|e| e.to_string())?;
        self.wal
            .release_to(oldest.unwrap_or(index))
            .await
            .map_err(|e| e.to_string())?;
        self.last_snapshot = index;
        Ok(())
    }
}
