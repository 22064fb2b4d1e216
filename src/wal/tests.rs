use std::path::{Path, PathBuf};

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

/// Big enough never to be cut in these tests; small enough that reading it is cheap.
const BIG: u64 = 64 << 10;

fn last_segment(disk: &SimDisk) -> PathBuf {
    let names = now(disk.list(dir())).unwrap();
    dir().join(names.last().expect("a segment"))
}

/// Where the records of the segment at `path` end.
fn data_end(disk: &SimDisk, path: &Path) -> usize {
    record::scan(&now(disk.read(path)).unwrap(), 0).end
}

fn now<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_util::FutureExt::now_or_never(f).expect("the simulated disk never waits")
}

fn open(disk: &SimDisk, segment_bytes: u64) -> Result<(Wal<SimDisk>, Recovered), WalError> {
    now(Wal::open(disk.clone(), dir(), 0, segment_bytes))
}

fn refused_as_truncated(result: Result<(Wal<SimDisk>, Recovered), WalError>) -> String {
    match result {
        Err(e @ WalError::Truncated { .. }) => e.to_string(),
        Err(other) => panic!("refused, but not as truncated: {other}"),
        Ok((_, got)) => panic!("opened with {} entries", got.entries.len()),
    }
}

/// A pseudo-random coin from a seed, for crashes that keep a scattered subset of sectors.
fn coin(mut seed: u64) -> impl FnMut() -> bool {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed & 1 == 1
    }
}

/// A new log with entries 1..=n (term 1) and `hs`, saved at once and synced; and the entries.
async fn saved(
    disk: &SimDisk,
    segment_bytes: u64,
    n: u64,
    hs: HardState,
) -> (Wal<SimDisk>, Vec<Entry>) {
    let mut wal = fresh(disk, segment_bytes).await;
    let entries: Vec<_> = (1..=n).map(|i| entry(i, 1)).collect();
    wal.save(Some(&hs), &entries).await.unwrap();
    wal.sync().await.unwrap();
    (wal, entries)
}

/// A new log with entries 1..=n (term 1), one save each, synced.
async fn written(disk: &SimDisk, segment_bytes: u64, n: u64) -> Wal<SimDisk> {
    let mut wal = fresh(disk, segment_bytes).await;
    for i in 1..=n {
        wal.save(None, &[entry(i, 1)]).await.unwrap();
    }
    wal.sync().await.unwrap();
    wal
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
        let (_wal, entries) = saved(&disk, BIG, 5, hard_state(1, 2, 3)).await;
        let (wal, got) = Wal::open(disk.clone(), dir(), 0, BIG).await.unwrap();
        assert_eq!(got.entries, entries);
        assert_eq!(got.hard_state, hard_state(1, 2, 3));
        assert_eq!(wal.last_index(), 5);
    });
}

#[test]
fn open_from_an_index_returns_only_later_entries() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, BIG).await;
        let entries: Vec<_> = (1..=5).map(|i| entry(i, 1)).collect();
        wal.save(None, &entries).await.unwrap();
        wal.sync().await.unwrap();
        let (_, got) = Wal::open(disk, dir(), 3, BIG).await.unwrap();
        assert_eq!(indexes(&got), [(4, 1), (5, 1)]);
    });
}

#[test]
fn a_crash_loses_only_what_was_not_synced() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, BIG).await;
        wal.save(Some(&hard_state(1, 1, 2)), &[entry(1, 1), entry(2, 1)])
            .await
            .unwrap();
        wal.sync().await.unwrap();
        wal.save(Some(&hard_state(1, 1, 3)), &[entry(3, 1)])
            .await
            .unwrap();
        disk.crash(|_| 0);
        let (_, got) = Wal::open(disk, dir(), 0, BIG).await.unwrap();
        assert_eq!(indexes(&got), [(1, 1), (2, 1)]);
        assert_eq!(got.hard_state, hard_state(1, 1, 2));
    });
}

#[test]
fn a_torn_last_write_is_cut_off_reported_and_the_log_goes_on() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, BIG).await;
        wal.save(None, &[entry(1, 1)]).await.unwrap();
        wal.sync().await.unwrap();
        let segment = last_segment(&disk);
        let synced_end = data_end(&disk, &segment);
        let mut big = entry(2, 1);
        big.set_data(vec![7; 1500].into());
        wal.save(None, &[big, entry(3, 1)]).await.unwrap();
        // The first sector of the write reaches the disk, the second does not, the rest does.
        let mut kept = [true, false].into_iter().chain(std::iter::repeat(true));
        disk.crash_scattered(|| kept.next().unwrap());
        let (mut wal, got) = Wal::open(disk.clone(), dir(), 0, BIG).await.unwrap();
        assert_eq!(indexes(&got), [(1, 1)]);
        assert_eq!(got.repairs.len(), 1, "{:?}", got.repairs);
        let repair = &got.repairs[0];
        assert_eq!(repair.file, segment.display().to_string());
        assert_eq!(repair.offset, synced_end as u64);
        assert!(repair.bytes > 1000, "{repair:?}");
        assert!(
            repair.to_string().contains(&format!(
                "cut a torn record at byte {synced_end} ({} bytes) that a crash left unfinished",
                repair.bytes
            )),
            "{repair}"
        );
        wal.save(None, &[entry(2, 2)]).await.unwrap();
        wal.sync().await.unwrap();
        let (_, got) = Wal::open(disk, dir(), 0, BIG).await.unwrap();
        assert_eq!(indexes(&got), [(1, 1), (2, 2)]);
        assert_eq!(got.repairs, [], "the repair was durable");
    });
}

#[test]
fn a_write_whose_first_sector_was_lost_leaves_nothing_behind() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, BIG).await;
        wal.save(None, &[entry(1, 1)]).await.unwrap();
        wal.sync().await.unwrap();
        let mut big = entry(2, 1);
        big.set_data(vec![7; 1500].into());
        wal.save(None, &[big]).await.unwrap();
        // The sector holding the new record's header is lost: the data ends there, but the
        // rest of the record is still on disk after the closing zeros.
        let mut kept = [false].into_iter().chain(std::iter::repeat(true));
        disk.crash_scattered(|| kept.next().unwrap());
        let (mut wal, got) = Wal::open(disk.clone(), dir(), 0, BIG).await.unwrap();
        assert_eq!(indexes(&got), [(1, 1)]);
        assert_eq!(got.repairs.len(), 1);
        // A short write now ends right before where those bytes were.
        wal.save(None, &[entry(2, 2)]).await.unwrap();
        wal.sync().await.unwrap();
        let (_, got) = Wal::open(disk, dir(), 0, BIG).await.unwrap();
        assert_eq!(indexes(&got), [(1, 1), (2, 2)]);
        assert_eq!(got.repairs, []);
    });
}

#[test]
fn damage_in_the_middle_is_a_clear_error() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, BIG).await;
        wal.save(None, &(1..=3).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .await
            .unwrap();
        wal.sync().await.unwrap();
        let segment = dir().join(segment_name(0, 1));
        disk.corrupt(&segment, data_end(&disk, &segment) - 10);
        match Wal::open(disk, dir(), 0, BIG).await {
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
        let mut wal = fresh(&disk, BIG).await;
        wal.save(None, &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .await
            .unwrap();
        wal.save(None, &[entry(4, 2), entry(5, 2), entry(6, 2)])
            .await
            .unwrap();
        wal.sync().await.unwrap();
        let (_, got) = Wal::open(disk, dir(), 0, BIG).await.unwrap();
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
        let mut wal = fresh(&disk, BIG).await;
        wal.save(None, &[entry(1, 1), entry(3, 1)]).await.unwrap();
        wal.sync().await.unwrap();
        assert!(matches!(
            Wal::open(disk, dir(), 0, BIG).await,
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
        let mut wal = written(&disk, 200, 20).await;
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
        let _wal = written(&disk, 150, 12).await;
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
        let mut wal = fresh(&disk, BIG).await;
        wal.save(None, &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .await
            .unwrap();
        wal.snapshot_installed(40, 3).await.unwrap();
        wal.save(None, &[entry(41, 3)]).await.unwrap();
        wal.sync().await.unwrap();
        let (_, got) = Wal::open(disk.clone(), dir(), 2, BIG).await.unwrap();
        assert_eq!(got.installed_snapshot, Some((40, 3)));
        assert_eq!(indexes(&got), [(41, 3)]);
        let (_, from_snapshot) = Wal::open(disk, dir(), 40, BIG).await.unwrap();
        assert_eq!(from_snapshot.installed_snapshot, None);
        assert_eq!(indexes(&from_snapshot), [(41, 3)]);
    });
}

#[test]
fn a_failed_write_stops_the_log_for_good() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, BIG).await;
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
fn a_segment_whose_creation_a_crash_cut_short_is_created_again() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, BIG).await;
        wal.save(None, &[entry(1, 1)]).await.unwrap();
        wal.sync().await.unwrap();
        // What a crash while the next segment was being created leaves: its length made it
        // to the disk, its header did not.
        let next = dir().join(segment_name(1, 2));
        disk.allocate(&next, BIG).await.unwrap();
        disk.sync(&next).await.unwrap();
        let (mut wal, got) = Wal::open(disk.clone(), dir(), 0, BIG).await.unwrap();
        assert_eq!(indexes(&got), [(1, 1)]);
        wal.save(None, &[entry(2, 1)]).await.unwrap();
        wal.sync().await.unwrap();
        let (_, got) = Wal::open(disk.clone(), dir(), 0, BIG).await.unwrap();
        assert_eq!(indexes(&got), [(1, 1), (2, 1)]);
        // It was made whole and linked: losing it now is a truncation.
        disk.remove(&next).await.unwrap();
        refused_as_truncated(open(&disk, BIG));
    });
}

#[test]
fn an_emptied_only_segment_is_refused() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, BIG).await;
        wal.save(None, &[entry(1, 1)]).await.unwrap();
        wal.sync().await.unwrap();
        let segment = last_segment(&disk);
        disk.truncate(&segment, 0).await.unwrap();
        refused_as_truncated(open(&disk, BIG));
        assert!(
            Wal::exists(&disk, dir()).await.unwrap(),
            "nothing was removed"
        );
    });
}

#[test]
fn a_log_whose_creation_a_crash_cut_short_is_no_log() {
    run(async {
        let disk = SimDisk::new();
        fresh(&disk, BIG).await;
        // Its first segment, written aside, never got its name.
        let segment = last_segment(&disk);
        let aside = PathBuf::from(format!("{}.tmp", segment.display()));
        disk.rename(&segment, &aside).await.unwrap();
        assert!(!Wal::exists(&disk, dir()).await.unwrap());
        let mut wal = fresh(&disk, BIG).await;
        wal.save(None, &[entry(1, 1)]).await.unwrap();
        wal.sync().await.unwrap();
        assert_eq!(
            disk.list(dir()).await.unwrap().len(),
            1,
            "the leftover is gone"
        );
        assert_eq!(indexes(&open(&disk, BIG).unwrap().1), [(1, 1)]);
    });
}

#[test]
fn creating_over_an_existing_log_is_refused() {
    run(async {
        let disk = SimDisk::new();
        fresh(&disk, BIG).await;
        assert!(Wal::create(disk, dir(), 1, BIG).await.is_err());
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

/// The reported bug: 200 acknowledged writes, a clean stop, and the last segment cut to half
/// the length of its data. Before segments were preallocated this opened with most writes gone.
#[test]
fn a_segment_cut_into_its_data_is_refused_naming_the_file() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, BIG).await;
        for i in 1..=200 {
            wal.save(Some(&hard_state(1, 1, i)), &[entry(i, 1)])
                .await
                .unwrap();
            wal.sync().await.unwrap();
        }
        drop(wal);
        let segment = last_segment(&disk);
        let end = data_end(&disk, &segment);
        disk.truncate(&segment, end as u64 / 2).await.unwrap();
        let message = refused_as_truncated(open(&disk, BIG));
        assert!(
            message.contains(&segment.display().to_string()),
            "{message}"
        );
        assert!(
            message.contains("truncated after it was written"),
            "{message}"
        );
        assert!(message.contains("not by a crash"), "{message}");
        assert!(
            message.contains(
                "restore this member's data from a backup, or remove this member \
                              and add it back empty so it copies the data from its peers \
                              (etcdctl member remove / member add)"
            ),
            "{message}"
        );
        // Refused without touching anything: it says the same the next time.
        refused_as_truncated(open(&disk, BIG));
    });
}

#[test]
fn a_segment_cut_right_after_its_last_record_is_refused() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, BIG).await;
        wal.save(None, &[entry(1, 1), entry(2, 1)]).await.unwrap();
        wal.sync().await.unwrap();
        let segment = last_segment(&disk);
        let end = data_end(&disk, &segment) as u64;
        for cut in [end, end + 1, end + HEADER_LEN as u64 - 1] {
            disk.truncate(&segment, cut).await.unwrap();
            refused_as_truncated(open(&disk, BIG));
        }
    });
}

#[test]
fn a_segment_cut_in_its_zero_tail_loses_nothing() {
    run(async {
        let disk = SimDisk::new();
        let (wal, entries) = saved(&disk, BIG, 200, hard_state(1, 1, 200)).await;
        drop(wal);
        let segment = last_segment(&disk);
        let end = data_end(&disk, &segment) as u64;
        // Half the file is past the data here, as in a preallocated 64 MiB segment.
        let len = disk.len(&segment).unwrap() as u64;
        assert!(len / 2 > end + HEADER_LEN as u64);
        for cut in [len / 2, end + HEADER_LEN as u64] {
            disk.truncate(&segment, cut).await.unwrap();
            let (_, got) = open(&disk, BIG).unwrap();
            assert_eq!(got.entries, entries);
            assert_eq!(got.repairs, []);
        }
        // And the log goes on, growing the file again as it needs to.
        let (mut wal, _) = open(&disk, BIG).unwrap();
        wal.save(None, &[entry(201, 1)]).await.unwrap();
        wal.sync().await.unwrap();
        let (_, got) = open(&disk, BIG).unwrap();
        assert_eq!(got.entries.len(), 201);
    });
}

#[test]
fn a_shortened_earlier_segment_is_refused() {
    run(async {
        let disk = SimDisk::new();
        let _wal = written(&disk, 200, 20).await;
        let names = disk.list(dir()).await.unwrap();
        let first = dir().join(&names[0]);
        let end = data_end(&disk, &first) as u64;
        disk.truncate(&first, end - 3).await.unwrap();
        let message = refused_as_truncated(open(&disk, 200));
        assert!(message.contains(&names[0]), "{message}");
    });
}

#[test]
fn a_deleted_or_emptied_last_segment_is_refused() {
    run(async {
        let disk = SimDisk::new();
        let _wal = written(&disk, 200, 20).await;
        let last = last_segment(&disk);
        let names = disk.list(dir()).await.unwrap();
        let before_last = &names[names.len() - 2];
        disk.truncate(&last, 0).await.unwrap();
        let message = refused_as_truncated(open(&disk, 200));
        assert!(message.contains("links to it"), "{message}");
        disk.remove(&last).await.unwrap();
        let message = refused_as_truncated(open(&disk, 200));
        assert!(message.contains(before_last.as_str()), "{message}");
        assert!(message.contains("missing"), "{message}");
    });
}

#[test]
fn a_link_a_crash_left_unwritten_is_written_at_start_up() {
    run(async {
        let disk = SimDisk::new();
        let _wal = written(&disk, 200, 12).await;
        let names = disk.list(dir()).await.unwrap();
        assert!(names.len() >= 2);
        let before_last = dir().join(&names[names.len() - 2]);
        let bytes = disk.read(&before_last).await.unwrap();
        let scan = record::scan(&bytes, 0);
        let link = scan.records.last().unwrap();
        assert_eq!(link.kind, Kind::Next);
        // As if the crash came before the link reached the disk.
        disk.write_at(&before_last, link.offset as u64, &[0; 25])
            .await
            .unwrap();
        disk.sync(&before_last).await.unwrap();
        let (_, got) = open(&disk, 200).unwrap();
        assert_eq!(got.entries.len(), 12);
        assert_eq!(
            disk.read(&before_last).await.unwrap(),
            bytes,
            "linked again"
        );
        // Anything else there is damage, not an unfinished link.
        disk.write_at(&before_last, link.offset as u64 + 30, &[1])
            .await
            .unwrap();
        assert!(matches!(open(&disk, 200), Err(WalError::Corrupt { .. })));
    });
}

#[test]
fn a_write_past_the_preallocated_length_grows_the_file_durably_first() {
    run(async {
        let disk = SimDisk::new();
        let mut wal = fresh(&disk, 1024).await;
        let segment = last_segment(&disk);
        assert_eq!(disk.len(&segment), Some(1024));
        // A record ending less than HEADER_LEN bytes before the end: no room for the closing
        // zeros, yet not enough to cut a new segment.
        let start = data_end(&disk, &segment);
        let big = (900..1024)
            .map(|len| {
                let mut e = entry(1, 1);
                e.set_data(vec![5; len].into());
                e
            })
            .find(|e| start + HEADER_LEN + encode_message(e).len() == 1020)
            .expect("a length that ends the record at byte 1020");
        wal.save(None, std::slice::from_ref(&big)).await.unwrap();
        let grown = disk.len(&segment).unwrap();
        assert!(grown >= 1020 + HEADER_LEN + 25, "{grown}");
        // Not synced: the record may go, but the room for it may not.
        disk.crash(|_| 0);
        assert_eq!(disk.len(&segment), Some(grown));
        let (wal, got) = open(&disk, 1024).unwrap();
        assert_eq!(wal.last_index(), 0);
        assert_eq!(got.repairs, []);
    });
}

#[test]
fn the_real_file_system_refuses_a_truncated_log_too() {
    let dir = std::env::temp_dir().join(format!("etcd-wal-cut-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run(async {
        let disk = crate::runtime::FsDisk::default();
        let mut wal = Wal::create(disk.clone(), &dir, 1, 4096).await.unwrap();
        for i in 1..=10 {
            wal.save(None, &[entry(i, 2)]).await.unwrap();
        }
        wal.sync().await.unwrap();
        drop(wal);
        let names = disk.list(&dir).await.unwrap();
        let segment = dir.join(names.last().unwrap());
        let bytes = disk.read(&segment).await.unwrap();
        assert_eq!(bytes.len(), 4096, "preallocated");
        let end = record::scan(&bytes, 0).end as u64;
        disk.truncate(&segment, end - 1).await.unwrap();
        match Wal::open(disk, &dir, 0, 4096).await {
            Err(WalError::Truncated { file, .. }) => {
                assert_eq!(file, segment.display().to_string())
            }
            other => panic!("{:?}", other.map(|(_, r)| r.entries.len())),
        }
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
    /// A crash keeping `keep` of each file's unsynced changes, counted from the first, or,
    /// with `scatter`, a random subset of them.
    Crash {
        keep: u16,
        scatter: Option<u64>,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u8..4, 0u8..3, any::<bool>()).prop_map(|(entries, rewind, hard_state)| Step::Save { entries, rewind, hard_state }),
        2 => Just(Step::Sync),
        1 => (any::<u16>(), proptest::option::of(any::<u64>())).prop_map(|(keep, scatter)| Step::Crash { keep, scatter }),
    ]
}

fn sized_entry(index: u64, len: usize) -> Entry {
    let mut e = entry(index, 1);
    e.set_data(vec![index as u8 | 1; len].into());
    e
}

proptest! {
    /// Whatever the crashes tear, a reopened log holds every synced entry and only entries
    /// that were written, in order, and is never refused.
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
                    Step::Crash { keep, scatter } => {
                        match scatter {
                            Some(seed) => disk.crash_scattered(coin(seed | 1)),
                            None => disk.crash(|unsynced| keep as usize % (unsynced + 1)),
                        }
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A synced log whose newest segment is cut short at any offset either opens with every
    /// entry, having lost nothing, or is refused as truncated: never a silent loss.
    #[test]
    fn a_cut_anywhere_in_the_last_segment_is_refused_or_loses_nothing(
        batches in proptest::collection::vec(proptest::collection::vec(0usize..400, 1..4), 1..14),
        segment_bytes in 200u64..3000,
    ) {
        let disk = SimDisk::new();
        let mut written = Vec::new();
        run(async {
            let mut wal = fresh(&disk, segment_bytes).await;
            for batch in &batches {
                let first = written.len() as u64 + 1;
                let entries: Vec<Entry> = batch.iter().zip(first..).map(|(len, i)| sized_entry(i, *len)).collect();
                wal.save(Some(&hard_state(1, 1, first)), &entries).await.unwrap();
                written.extend(entries);
            }
            wal.sync().await.unwrap();
        });
        let segment = last_segment(&disk);
        let len = disk.len(&segment).unwrap();
        let end = data_end(&disk, &segment);
        // Every offset through the data and just past it; a sample of the zero tail.
        let dense = 0..=len.min(end + 2 * HEADER_LEN);
        let sparse = (end + 2 * HEADER_LEN..=len).step_by(97).chain([len]);
        for cut in dense.chain(sparse) {
            let copy = disk.fork();
            now(copy.truncate(&segment, cut as u64)).unwrap();
            match open(&copy, segment_bytes) {
                Ok((_, got)) => {
                    prop_assert!(got.entries == written, "cut at {} of {} (data ends at {}): {} of {} entries", cut, len, end, got.entries.len(), written.len());
                    prop_assert_eq!(got.repairs, vec![]);
                    prop_assert!(cut >= end + HEADER_LEN, "cut at {} opened", cut);
                }
                Err(WalError::Truncated { file, .. }) => {
                    prop_assert_eq!(file, segment.display().to_string());
                    prop_assert!(cut < end + HEADER_LEN, "cut at {} refused", cut);
                }
                Err(other) => prop_assert!(false, "cut at {}: {}", cut, other),
            }
        }
    }
}

/// A full disk refuses a save and leaves the log as it was, whatever step of the save (a
/// record, a new segment, the link to it) ran out of room: once there is room the same save
/// goes through, and the log reopens with every entry, across a crash too.
#[test]
fn a_full_disk_refuses_a_save_and_the_log_goes_on_when_there_is_room() {
    for room in (0..1200).step_by(7) {
        run(async {
            let disk = SimDisk::new();
            let mut wal = fresh(&disk, 200).await;
            let mut refused = 0;
            for i in 1..=20 {
                if i == 8 {
                    disk.set_room(Some(room));
                }
                let hs = hard_state(1, 1, i - 1);
                loop {
                    match wal.save(Some(&hs), &[entry(i, 1)]).await {
                        Ok(()) => break,
                        Err(WalError::NoSpace(_)) => {
                            refused += 1;
                            disk.set_room(None);
                        }
                        Err(e) => panic!("room {room}, entry {i}: {e}"),
                    }
                }
                wal.sync().await.unwrap();
            }
            assert!(room > 600 || refused > 0, "room {room} was never short");
            disk.crash(|_| 0);
            let (_, got) = Wal::open(disk.clone(), dir(), 0, 200)
                .await
                .unwrap_or_else(|e| panic!("room {room}: {e}"));
            assert_eq!(indexes(&got), (1..=20).map(|i| (i, 1)).collect::<Vec<_>>());
            assert_eq!(got.hard_state, hard_state(1, 1, 19));
        });
    }
}
