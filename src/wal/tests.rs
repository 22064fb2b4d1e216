use std::path::Path;

use proptest::prelude::*;
use raft::eraftpb::{Entry, HardState};

use super::*;
use crate::runtime::SimDisk;

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(f)
}

fn dir() -> &'static Path {
    Path::new("/data/member/wal")
}

fn entry(index: u64, term: u64) -> Entry {
    let mut e = Entry::default();
    e.set_index(index);
    e.set_term(term);
    e.set_data(format!("payload {index}/{term}").into_bytes().into());
    e
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    let mut hs = HardState::default();
    hs.set_term(term);
    hs.set_vote(vote);
    hs.set_commit(commit);
    hs
}

fn indexes(r: &Recovered) -> Vec<(u64, u64)> {
    r.entries.iter().map(|e| (e.index, e.term)).collect()
}

async fn fresh(disk: &SimDisk, segment_bytes: u64) -> Wal<SimDisk> {
    Wal::create(disk.clone(), dir(), 1, segment_bytes)
        .await
        .unwrap()
}

#[test]
fn entries_and_hard_state_survive_reopen() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, DEFAULT_SEGMENT_BYTES).await;
        let entries: Vec<_> = (1..=5).map(|i| entry(i, 1)).collect();
        wal.save(Some(&hard_state(1, 2, 3)), &entries)
            .await
            .unwrap();
        wal.sync().await.unwrap();
        let (wal, got) = Wal::open(disk.clone(), dir(), 0, DEFAULT_SEGMENT_BYTES)
            .await
            .unwrap();
        assert_eq!(got.entries, entries);
        assert_eq!(got.hard_state, hard_state(1, 2, 3));
        assert_eq!(wal.last_index(), 5);
    });
}

#[test]
fn open_from_an_index_returns_only_later_entries() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, DEFAULT_SEGMENT_BYTES).await;
        let entries: Vec<_> = (1..=5).map(|i| entry(i, 1)).collect();
        wal.save(None, &entries).await.unwrap();
        wal.sync().await.unwrap();
        let (_, got) = Wal::open(disk, dir(), 3, DEFAULT_SEGMENT_BYTES)
            .await
            .unwrap();
        assert_eq!(indexes(&got), [(4, 1), (5, 1)]);
    });
}

#[test]
fn a_crash_loses_only_what_was_not_synced() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, DEFAULT_SEGMENT_BYTES).await;
        wal.save(Some(&hard_state(1, 1, 2)), &[entry(1, 1), entry(2, 1)])
            .await
            .unwrap();
        wal.sync().await.unwrap();
        wal.save(Some(&hard_state(1, 1, 3)), &[entry(3, 1)])
            .await
            .unwrap();
        disk.crash(|_| 0);
        let (_, got) = Wal::open(disk, dir(), 0, DEFAULT_SEGMENT_BYTES)
            .await
            .unwrap();
        assert_eq!(indexes(&got), [(1, 1), (2, 1)]);
        assert_eq!(got.hard_state, hard_state(1, 1, 2));
    });
}

#[test]
fn a_torn_last_record_is_cut_off_and_the_log_goes_on() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, DEFAULT_SEGMENT_BYTES).await;
        wal.save(None, &[entry(1, 1)]).await.unwrap();
        wal.sync().await.unwrap();
        wal.save(None, &[entry(2, 1)]).await.unwrap();
        disk.crash(|unsynced| unsynced - 3); // all but the last three bytes of entry 2
        let (mut wal, got) = Wal::open(disk.clone(), dir(), 0, DEFAULT_SEGMENT_BYTES)
            .await
            .unwrap();
        assert_eq!(indexes(&got), [(1, 1)]);
        wal.save(None, &[entry(2, 2)]).await.unwrap();
        wal.sync().await.unwrap();
        let (_, got) = Wal::open(disk, dir(), 0, DEFAULT_SEGMENT_BYTES)
            .await
            .unwrap();
        assert_eq!(indexes(&got), [(1, 1), (2, 2)]);
    });
}

#[test]
fn damage_in_the_middle_is_a_clear_error() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, DEFAULT_SEGMENT_BYTES).await;
        wal.save(None, &(1..=3).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .await
            .unwrap();
        wal.sync().await.unwrap();
        let segment = dir().join(segment_name(0, 1));
        let len = disk.len(&segment).unwrap();
        disk.corrupt(&segment, len / 2);
        match Wal::open(disk, dir(), 0, DEFAULT_SEGMENT_BYTES).await {
            Err(WalError::Corrupt { file, detail }) => {
                assert!(
                    file.ends_with("0000000000000000-0000000000000001.wal"),
                    "{file}"
                );
                assert!(detail.contains("at byte"), "{detail}");
            }
            other => panic!("damage went unnoticed: {:?}", other.map(|(_, r)| r)),
        }
    });
}

#[test]
fn rewritten_entries_replace_the_old_ones() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, DEFAULT_SEGMENT_BYTES).await;
        wal.save(None, &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .await
            .unwrap();
        wal.save(None, &[entry(4, 2), entry(5, 2), entry(6, 2)])
            .await
            .unwrap();
        wal.sync().await.unwrap();
        let (_, got) = Wal::open(disk, dir(), 0, DEFAULT_SEGMENT_BYTES)
            .await
            .unwrap();
        assert_eq!(
            indexes(&got),
            [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]
        );
    });
}

#[test]
fn an_entry_that_skips_ahead_is_damage() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, DEFAULT_SEGMENT_BYTES).await;
        wal.save(None, &[entry(1, 1), entry(3, 1)]).await.unwrap();
        wal.sync().await.unwrap();
        assert!(matches!(
            Wal::open(disk, dir(), 0, DEFAULT_SEGMENT_BYTES).await,
            Err(WalError::Corrupt { .. })
        ));
    });
}

#[test]
fn segments_are_cut_and_replay_runs_across_them() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, 200).await;
        for i in 1..=20 {
            wal.save(Some(&hard_state(1, 1, i - 1)), &[entry(i, 1)])
                .await
                .unwrap();
        }
        wal.sync().await.unwrap();
        let segments = disk.clone();
        let names = segments.list(dir()).await.unwrap();
        assert!(names.len() > 3, "{names:?}");
        let (_, got) = Wal::open(disk.clone(), dir(), 0, 200).await.unwrap();
        assert_eq!(got.entries.len(), 20);
        assert_eq!(got.hard_state, hard_state(1, 1, 19));
        // Starting late reads only the late segments, and still finds the hard state.
        let (_, late) = Wal::open(disk.clone(), dir(), 17, 200).await.unwrap();
        assert_eq!(indexes(&late), [(18, 1), (19, 1), (20, 1)]);
        assert_eq!(late.hard_state, hard_state(1, 1, 19));
    });
}

#[test]
fn released_segments_are_gone_and_the_rest_still_replays() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, 200).await;
        for i in 1..=20 {
            wal.save(None, &[entry(i, 1)]).await.unwrap();
        }
        wal.sync().await.unwrap();
        let before = disk.list(dir()).await.unwrap().len();
        let removed = wal.release_to(15).await.unwrap();
        assert!(removed > 0);
        assert_eq!(disk.list(dir()).await.unwrap().len(), before - removed);
        let (_, got) = Wal::open(disk.clone(), dir(), 15, 200).await.unwrap();
        assert_eq!(got.entries.first().map(|e| e.index), Some(16));
        assert!(matches!(
            Wal::open(disk, dir(), 0, 200).await,
            Err(WalError::Missing(_))
        ));
    });
}

#[test]
fn a_removed_middle_segment_breaks_the_chain() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, 150).await;
        for i in 1..=12 {
            wal.save(None, &[entry(i, 1)]).await.unwrap();
        }
        wal.sync().await.unwrap();
        let names = disk.list(dir()).await.unwrap();
        assert!(names.len() >= 3);
        disk.remove(&dir().join(&names[1])).await.unwrap();
        assert!(matches!(
            Wal::open(disk, dir(), 0, 150).await,
            Err(WalError::Corrupt { .. })
        ));
    });
}

#[test]
fn an_installed_snapshot_restarts_the_log() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, DEFAULT_SEGMENT_BYTES).await;
        wal.save(None, &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .await
            .unwrap();
        wal.snapshot_installed(40, 3).await.unwrap();
        wal.save(None, &[entry(41, 3)]).await.unwrap();
        wal.sync().await.unwrap();
        let (_, got) = Wal::open(disk.clone(), dir(), 2, DEFAULT_SEGMENT_BYTES)
            .await
            .unwrap();
        assert_eq!(got.installed_snapshot, Some((40, 3)));
        assert_eq!(indexes(&got), [(41, 3)]);
        let (_, from_snapshot) = Wal::open(disk, dir(), 40, DEFAULT_SEGMENT_BYTES)
            .await
            .unwrap();
        assert_eq!(from_snapshot.installed_snapshot, None);
        assert_eq!(indexes(&from_snapshot), [(41, 3)]);
    });
}

#[test]
fn a_failed_write_stops_the_log_for_good() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, DEFAULT_SEGMENT_BYTES).await;
        disk.set_failing(true);
        assert!(matches!(
            wal.save(None, &[entry(1, 1)]).await,
            Err(WalError::Io(_))
        ));
        disk.set_failing(false);
        assert!(matches!(
            wal.save(None, &[entry(1, 1)]).await,
            Err(WalError::Broken)
        ));
        assert!(matches!(wal.sync().await, Err(WalError::Broken)));
    });
}

#[test]
fn a_segment_torn_while_being_cut_is_dropped() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, DEFAULT_SEGMENT_BYTES).await;
        wal.save(None, &[entry(1, 1)]).await.unwrap();
        wal.sync().await.unwrap();
        // What a crash in the middle of writing the next segment's header leaves behind.
        let next = dir().join(segment_name(1, 2));
        disk.append(&next, &[9, 0, 0]).await.unwrap();
        disk.sync(&next).await.unwrap();
        let (mut wal, got) = Wal::open(disk.clone(), dir(), 0, DEFAULT_SEGMENT_BYTES)
            .await
            .unwrap();
        assert_eq!(indexes(&got), [(1, 1)]);
        assert!(disk.read(&next).await.is_err(), "the torn segment is gone");
        wal.save(None, &[entry(2, 1)]).await.unwrap();
        wal.sync().await.unwrap();
    });
}

#[test]
fn creating_over_an_existing_log_is_refused() {
    run(async {
        let disk = SimDisk::new();
        fresh(&disk, DEFAULT_SEGMENT_BYTES).await;
        assert!(Wal::create(disk, dir(), 1, DEFAULT_SEGMENT_BYTES)
            .await
            .is_err());
    });
}

#[test]
fn the_real_file_system_keeps_the_log_too() {
    let dir = std::env::temp_dir().join(format!("etcd-wal-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run(async {
        let disk = crate::runtime::FsDisk::default();
        let mut wal = Wal::create(disk.clone(), &dir, 1, 300).await.unwrap();
        for i in 1..=10 {
            wal.save(Some(&hard_state(2, 1, i)), &[entry(i, 2)])
                .await
                .unwrap();
        }
        wal.sync().await.unwrap();
        drop(wal);
        let (_, got) = Wal::open(disk, &dir, 0, 300).await.unwrap();
        assert_eq!(got.entries.len(), 10);
        assert_eq!(got.hard_state, hard_state(2, 1, 10));
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[derive(Clone, Debug)]
enum Step {
    Save {
        entries: u8,
        rewind: u8,
        hard_state: bool,
    },
    Sync,
    Crash {
        keep: u16,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u8..4, 0u8..3, any::<bool>()).prop_map(|(entries, rewind, hard_state)| Step::Save { entries, rewind, hard_state }),
        2 => Just(Step::Sync),
        1 => any::<u16>().prop_map(|keep| Step::Crash { keep }),
    ]
}

proptest! {
    /// Whatever the crashes tear, a reopened log holds every synced entry and only entries
    /// that were written, in order.
    #[test]
    fn crashes_keep_every_synced_entry(steps in proptest::collection::vec(step(), 1..40), segment_bytes in 120u64..600) {
        run(async {
            let disk = SimDisk::new();
            let mut wal = Wal::create(disk.clone(), dir(), 1, segment_bytes).await.unwrap();
            let mut written: Vec<Entry> = Vec::new(); // the log as the last writes left it
            let mut synced: Vec<Entry> = Vec::new();  // the log as of the last sync
            let mut term = 1;
            for step in &steps {
                match *step {
                    Step::Save { entries, rewind, hard_state: hs } => {
                        let keep = written.len().saturating_sub(rewind as usize);
                        written.truncate(keep);
                        term += u64::from(rewind > 0);
                        let new: Vec<Entry> = (0..entries as u64).map(|i| entry(keep as u64 + 1 + i, term)).collect();
                        written.extend(new.iter().cloned());
                        let hs = hs.then(|| hard_state(term, 1, 0));
                        wal.save(hs.as_ref(), &new).await.unwrap();
                    }
                    Step::Sync => {
                        wal.sync().await.unwrap();
                        synced = written.clone();
                    }
                    Step::Crash { keep } => {
                        disk.crash(|unsynced| keep as usize % (unsynced + 1));
                        let (reopened, got) = Wal::open(disk.clone(), dir(), 0, segment_bytes).await
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        // Every synced entry survives, unless a later rewrite (from a newer
                        // term) replaced the log from some index on and survived too: raft
                        // only rewrites entries that were never committed.
                        let common = synced.iter().zip(&got.entries).take_while(|(a, b)| a == b).count();
                        if common < synced.len() {
                            let replaced = got.entries.get(common).is_some_and(|e| e.term > synced[common].term);
                            prop_assert!(replaced, "synced entry {} lost", synced[common].index);
                        }
                        // Nothing comes back that was never written.
                        for e in &got.entries {
                            prop_assert!(e.data == entry(e.index, e.term).data, "invented entry {}", e.index);
                        }
                        written = got.entries.clone();
                        synced = got.entries;
                        term = written.last().map_or(term, |e| e.term.max(term));
                        wal = reopened;
                    }
                }
            }
            Ok(())
        })?;
    }
}
