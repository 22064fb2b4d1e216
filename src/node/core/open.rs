//! Opening a member: a new member's first state, or what a restart finds on disk (the
//! newest usable snapshot and the log after it), made into a raft node.

use super::*;

#[derive(Debug)]
pub enum StartError {
    Wal(WalError),
    Snap(SnapError),
    Raft(raft::Error),
    /// The data on disk cannot be used as it is.
    Invalid(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Wal(e) => write!(f, "{e}"),
            StartError::Snap(e) => write!(f, "{e}"),
            StartError::Raft(e) => write!(f, "raft: {e}"),
            StartError::Invalid(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<WalError> for StartError {
    fn from(e: WalError) -> Self {
        StartError::Wal(e)
    }
}

impl From<SnapError> for StartError {
    fn from(e: SnapError) -> Self {
        StartError::Snap(e)
    }
}

impl From<raft::Error> for StartError {
    fn from(e: raft::Error) -> Self {
        StartError::Raft(e)
    }
}

fn data_paths(config: &NodeConfig) -> (PathBuf, PathBuf) {
    let member = config.data_dir.join("member");
    let wal = config.wal_dir.clone().unwrap_or_else(|| member.join("wal"));
    (wal, member.join("snap"))
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// A new member's first state: a snapshot at index 1 holding the initial membership and an
/// empty store, identical on every member, and an empty log after it. A member that joins
/// later gets this state from the leader as a snapshot, so it learns the membership too.
async fn bootstrap<D: crate::runtime::Disk>(
    disk: &D,
    config: &NodeConfig,
    snapshotter: &Snapshotter<D>,
    wal_dir: &std::path::Path,
) -> Result<(), StartError> {
    if config.peers.is_empty() || !config.peers.contains(&config.id) {
        return Err(StartError::Invalid(format!(
            "member {:x} is not in the initial cluster",
            config.id
        )));
    }
    let members = config.peers.iter().map(|&id| {
        config
            .initial_members
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .unwrap_or(Member {
                id,
                name: String::new(),
                peer_urls: Vec::new(),
                client_urls: Vec::new(),
            })
    });
    let state = State {
        store: Store::with_history_capacity(config.history_capacity),
        members: Membership::new(members),
    };
    let mut snapshot = Snapshot::default();
    snapshot.set_data(state.save().into());
    let meta = snapshot.mut_metadata();
    meta.set_index(1);
    meta.set_term(1);
    meta.mut_conf_state().set_voters(config.peers.clone());
    snapshotter.save(&snapshot).await?;
    let mut wal = Wal::create(disk.clone(), wal_dir, 2, config.segment_bytes).await?;
    let mut hs = HardState::default();
    hs.set_term(1);
    hs.set_commit(1);
    wal.save(Some(&hs), &[]).await?;
    wal.sync().await?;
    Ok(())
}

impl<R: Runtime> Core<R> {
    pub(in crate::node) async fn open(
        rt: R,
        config: NodeConfig,
        inbox: mpsc::Receiver<Message>,
        commands: mpsc::Receiver<Command>,
    ) -> Result<(Core<R>, Arc<Shared>), StartError> {
        let disk = rt.disk().clone();
        let (wal_dir, snap_dir) = data_paths(&config);
        let snapshotter = Snapshotter::new(disk.clone(), &snap_dir).await?;
        if !Wal::exists(&disk, &wal_dir).await? {
            if config.join {
                Wal::create(disk.clone(), &wal_dir, 1, config.segment_bytes).await?;
            } else {
                bootstrap(&disk, &config, &snapshotter, &wal_dir).await?;
            }
        }
        let snapshot = match snapshotter.load_newest().await? {
            Some(snapshot) => snapshot,
            // A member joining a running cluster has nothing yet: the leader sends a snapshot.
            None if config.join => Snapshot::default(),
            None => {
                return Err(StartError::Invalid(
                    "no usable snapshot in the data dir".into(),
                ))
            }
        };
        let meta = snapshot.get_metadata().clone();
        let state = if meta.index == 0 {
            State {
                store: Store::with_history_capacity(config.history_capacity),
                members: Membership::default(),
            }
        } else {
            State::restore(&snapshot.data)
                .map_err(|e| StartError::Invalid(format!("snapshot at {}: {e}", meta.index)))?
        };
        let (mut wal, recovered) =
            Wal::open(disk, &wal_dir, meta.index, config.segment_bytes).await?;
        // A snapshot from a leader is saved before the log records that it was installed; a
        // crash between the two leaves a log that ends before the snapshot. Recorded now, or
        // the entries that follow would be written after a gap that no later start accepts.
        if meta.index > wal.last_index() {
            wal.snapshot_installed(meta.index, meta.term).await?;
        }
        // What a crash left unfinished and start-up cut off: the operator hears of it.
        for repair in &recovered.repairs {
            eprintln!("etcd: {repair}");
        }
        if let Some((index, _)) = recovered.installed_snapshot {
            return Err(StartError::Invalid(format!(
                "the log continues from a snapshot at {index}, but the newest usable snapshot is at {}",
                meta.index
            )));
        }

        let storage = RaftStorage::default();
        if meta.index > 0 {
            storage.mem.wl().apply_snapshot(snapshot.clone())?;
        }
        storage.mem.wl().append(&recovered.entries)?;
        let last_index = storage.mem.last_index()?;
        let mut hard_state = recovered.hard_state;
        hard_state.term = hard_state.term.max(meta.term);
        hard_state.commit = hard_state.commit.clamp(meta.index, last_index);
        storage.mem.wl().set_hardstate(hard_state.clone());
        storage.set_latest(snapshot);

        let ticks = config.election_ticks.max(2);
        let raft_config = raft::Config {
            id: config.id,
            election_tick: ticks,
            heartbeat_tick: 1,
            applied: meta.index,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            min_election_tick: ticks,
            max_election_tick: 2 * ticks,
            ..Default::default()
        };
        let expiry_ticks = (config.sync_interval.as_nanos() / config.tick.as_nanos().max(1)) as u64;
        let raw = RawNode::new(&raft_config, storage.clone(), &logger())?;
        let clock = crate::node::cluster_clock::ClusterClock::starting_at(rt.now(), rt.elapsed());

        let shared = Arc::new(Shared::new(
            state,
            Status {
                id: config.id,
                applied: meta.index,
                ..Status::default()
            },
            storage.clone(),
        ));
        *shared.clock.lock().unwrap_or_else(|e| e.into_inner()) = clock;
        let publish_request = rt.random_u64();
        if config.publish.is_none() {
            shared.mark_ready(); // nothing to announce: a bare node, in tests
        }
        let mut core = Core {
            rt,
            config,
            raw,
            storage,
            wal,
            snapshotter,
            shared: Arc::clone(&shared),
            inbox: Some(inbox),
            commands,
            election_timeout: 0,
            election_epoch: (0, 0, 0),
            waiters: waiters::Waiters::default(),
            publish_request,
            durable: Durable {
                term: hard_state.term,
                vote: hard_state.vote,
                last_index,
            },
            applied: meta.index,
            last_snapshot: meta.index,
            ticks: 0,
            timeouts: timeouts::Timeouts::new(expiry_ticks),
            conf_queue: std::collections::VecDeque::new(),
            conf_pending: None,
            leaving_at: None,
            conf_applied: false,
            commit_unsaved: false,
            refused_messages: 0,
            last_refusal_logged: None,
            snapshot_skipped_at: None,
        };
        core.redraw_election_timeout();
        Ok((core, shared))
    }
}
