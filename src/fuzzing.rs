//! The properties the cargo-fuzz targets in `fuzz/` check, one function per target. They live
//! here so that a normal test can replay every corpus file without the fuzzer
//! (`tests/fuzz_corpus.rs`): each returns for any input and panics only when a property is
//! broken.
//!
//! Every input is bytes that a crash, a disk or a stranger could have produced: a log segment,
//! a snapshot file, a peer's message batch, a client's request.

use std::path::Path;

use futures_util::FutureExt;
use raft::eraftpb::{Entry, HardState};

use crate::membership::{rules, Membership, MembershipError};
use crate::runtime::{Disk, SimDisk};
use crate::wal::{Wal, WalError};

/// The simulated disk answers at once; its futures never wait.
fn now<T>(future: impl std::future::Future<Output = T>) -> T {
    future
        .now_or_never()
        .expect("the simulated disk never waits")
}

/// A cursor over fuzz input: each read takes the next bytes, zero once they run out.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from(self.byte()) << 8 | u16::from(self.byte())
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// Any bytes as the only segment of a log: opening it gives entries or a clear error, never
/// a panic, and a log that opened can be written and reopened, with nothing left to repair.
pub fn wal_segment(data: &[u8]) {
    let disk = SimDisk::new();
    let dir = Path::new("/wal");
    now(disk.create_dir_all(dir)).expect("a directory");
    now(disk.write_at(&dir.join("0000000000000000-0000000000000001.wal"), 0, data))
        .expect("a file");
    match now(Wal::open(disk.clone(), dir, 0, 1 << 20)) {
        Ok((mut wal, recovered)) => {
            let next = recovered.entries.last().map_or(1, |e| e.index + 1);
            let entry = entry(next, b"after");
            now(wal.save(None, std::slice::from_ref(&entry)))
                .expect("the repaired log takes writes");
            now(wal.sync()).expect("and syncs");
            let (_, again) = now(Wal::open(disk, dir, 0, 1 << 20)).expect("and opens again");
            let mut expected = recovered.entries.clone();
            expected.retain(|e| e.index < next);
            expected.push(entry);
            assert_eq!(again.entries, expected, "reopening lost or changed entries");
            assert_eq!(again.repairs, [], "a repair did not last");
        }
        Err(WalError::Corrupt { .. } | WalError::Truncated { .. } | WalError::Missing(_)) => {}
        Err(other) => panic!("an unexpected kind of error: {other}"),
    }
}

fn entry(index: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term: 1,
        data: data.to_vec().into(),
        ..Entry::default()
    }
}

/// Writes a log from the input (segment size, then batches of entries with a hard state each),
/// syncs it, and returns the disk, the segment size and the entries written.
fn written_log(input: &mut Input<'_>, dir: &Path) -> (SimDisk, u64, Vec<Entry>) {
    let segment_bytes = 128 + u64::from(input.u16() % 2048);
    let disk = SimDisk::new();
    let mut wal = now(Wal::create(disk.clone(), dir, 1, segment_bytes)).expect("a new log");
    let count = usize::from(input.byte() % 40);
    let mut written = Vec::new();
    while written.len() < count {
        let batch = usize::from(input.byte() % 4) + 1;
        let entries = new_entries(input, written.len() as u64 + 1, batch);
        save(&mut wal, &entries);
        written.extend(entries);
    }
    now(wal.sync()).expect("a sync");
    (disk, segment_bytes, written)
}

fn new_entries(input: &mut Input<'_>, first: u64, count: usize) -> Vec<Entry> {
    (first..first + count as u64)
        .map(|index| {
            let len = usize::from(input.byte() % 48);
            entry(index, &input.bytes(len))
        })
        .collect()
}

fn save(wal: &mut Wal<SimDisk>, entries: &[Entry]) {
    let hs = HardState {
        term: 1,
        commit: entries.last().map_or(0, |e| e.index),
        ..HardState::default()
    };
    now(wal.save(Some(&hs), entries)).expect("a write");
}

/// A log written by the real code and synced, then damaged and opened:
/// - cut short anywhere (any segment, any offset): refused as truncated, or everything back;
/// - a bit flipped: exactly a prefix of what was written, or refused (a record whose checksum
///   failed never comes back);
/// - more entries written but not synced, then a crash keeping any subset of their sectors:
///   never refused, every synced entry back, then a prefix of the unsynced ones;
/// - left alone: everything back, nothing repaired.
pub fn wal_damage(data: &[u8]) {
    let mut input = Input { data };
    let dir = Path::new("/wal");
    let (disk, segment_bytes, mut written) = written_log(&mut input, dir);
    let synced = written.len();
    let damage = input.byte() % 4;
    if damage == 3 {
        let (mut wal, _) = now(Wal::open(disk.clone(), dir, 0, segment_bytes)).expect("a log");
        let more = usize::from(input.byte() % 24);
        while written.len() < synced + more {
            let batch = usize::from(input.byte() % 4) + 1;
            let entries = new_entries(&mut input, written.len() as u64 + 1, batch);
            save(&mut wal, &entries);
            written.extend(entries);
        }
        disk.crash_scattered(|| input.byte() & 1 == 1);
    } else {
        let mut files = now(disk.list(dir)).expect("the segments");
        files.sort();
        let victim = usize::from(input.byte()) % files.len();
        let path = dir.join(&files[victim]);
        let len = disk.len(&path).unwrap_or(0);
        let at = if len == 0 {
            0
        } else {
            usize::from(input.u16()) % len
        };
        match damage {
            0 => now(disk.truncate(&path, at as u64)).expect("a truncation"),
            1 => disk.corrupt(&path, at),
            _ => {}
        }
    }

    match now(Wal::open(disk.clone(), dir, 0, segment_bytes)) {
        Ok((_, recovered)) => {
            let got = &recovered.entries;
            assert!(
                got.len() <= written.len() && got[..] == written[..got.len()],
                "recovered entries are not a prefix of the written ones"
            );
            if damage == 0 || damage == 2 {
                assert_eq!(got.len(), synced, "a log opened without all it had");
                assert_eq!(
                    recovered.repairs,
                    [],
                    "a repair where no write was unfinished"
                );
            }
            if damage == 3 {
                assert!(got.len() >= synced, "a crash lost synced entries");
            }
        }
        Err(WalError::Truncated { .. }) if damage == 0 => {}
        Err(WalError::Corrupt { .. } | WalError::Truncated { .. }) if damage == 1 => {}
        Err(other) => panic!("damage {damage} gave {other}"),
    }
}

/// Any bytes as a snapshot file: a clear error, or a snapshot whose state saves back to itself.
pub fn snapshot_file(data: &[u8]) {
    if let Some(snapshot) = crate::snap::decode(data) {
        if let Ok(state) = crate::state::State::restore(&snapshot.data) {
            let saved = state.save();
            let again = crate::state::State::restore(&saved).expect("a saved state restores");
            assert!(again.save() == saved, "restore(save(s)) differs from s");
        }
    }
    // The same bytes found on disk by the snapshotter.
    let disk = SimDisk::new();
    let dir = Path::new("/snap");
    now(disk.create_dir_all(dir)).expect("a directory");
    now(disk.write_at(&dir.join("0000000000000001-0000000000000005.snap"), 0, data))
        .expect("a file");
    if let Ok(snapshotter) = now(crate::snap::Snapshotter::new(disk, dir)) {
        let _ = now(snapshotter.load_newest());
    }
}

/// The store's own image format: an error, or a store that saves back to itself.
pub fn store_snapshot(data: &[u8]) {
    if let Ok(store) = crate::store::Store::restore(data) {
        let saved = store.save();
        let again = crate::store::Store::restore(&saved).expect("a saved store restores");
        assert!(again.save() == saved, "restore(save(s)) differs from s");
    }
}

/// Whether a member table is one the strict check may leave behind.
fn safe(table: &Membership) -> bool {
    let (members, started) = (table.len(), table.started());
    started >= rules::quorum(members) || (started == 1 && members == 2)
}

/// Adds, removes, peer-URL updates, starts (publishes) and crashes on the member table: ids and
/// peer URLs stay unique, a removed id never returns, and with the strict check on no change
/// leaves fewer started members than a quorum (apart from one started member grown to two).
pub fn membership(data: &[u8]) {
    let mut input = Input { data };
    let strict = input.byte().is_multiple_of(2);
    let initial = u64::from(input.byte() % 5) + 1;
    let url = |n: u8| format!("http://127.0.0.1:{}", 7000 + u16::from(n % 12));
    let mut table = Membership::new((1..=initial).map(|id| crate::membership::Member {
        id,
        name: format!("m{id}"),
        peer_urls: vec![url(id as u8)],
        client_urls: vec![format!("http://127.0.0.1:{}", 8000 + id)],
    }));
    let mut removed = std::collections::BTreeSet::new();
    let mut steps = 0;
    while !input.data.is_empty() && steps < 200 {
        steps += 1;
        let (op, a, b) = (input.byte() % 5, input.byte(), input.byte());
        let id = u64::from(a % 12) + 1;
        let result = match op {
            0 => table.add(id, vec![url(b)], strict),
            1 => table.remove(id, strict).map(|_| ()),
            2 => table.update_peer_urls(id, vec![url(b)]),
            3 => table.publish(
                id,
                format!("m{id}"),
                vec![format!("http://127.0.0.1:{}", 8000 + id)],
            ),
            _ => Ok(()), // a crash: started is replicated state, a crash does not change it
        };
        match (op, &result) {
            (0, Ok(())) => assert!(!removed.contains(&id), "removed id {id} came back"),
            (0, Err(MembershipError::IdRemoved(_))) => assert!(removed.contains(&id)),
            (1, Ok(())) => {
                removed.insert(id);
            }
            _ => {}
        }
        let mut urls: Vec<&String> = table.members().flat_map(|m| &m.peer_urls).collect();
        let total = urls.len();
        urls.sort();
        urls.dedup();
        assert_eq!(urls.len(), total, "a peer URL is used twice");
        for id in &removed {
            assert!(table.get(*id).is_none(), "removed id {id} is in the table");
            assert!(table.is_removed(*id));
        }
        if strict {
            assert!(
                safe(&table),
                "{} members, {} started after op {op} on {id}",
                table.len(),
                table.started()
            );
        }
    }
}

/// A batch of raft messages as a peer sends them: decoded or refused, and every entry's data
/// read as a proposal or refused, without a panic; and what a batch decodes into is bounded
/// by the bytes that carried it.
pub fn raft_messages(data: &[u8]) {
    use crate::transport::{decode, Lane, BATCH};
    for lane in [Lane::Messages, Lane::Snapshots] {
        let Ok(messages) = decode(lane, data) else {
            continue;
        };
        assert!(messages.len() <= BATCH && messages.len() <= data.len() / 5);
        let entries: usize = messages.iter().map(|m| m.get_entries().len()).sum();
        assert!(
            entries <= 4096 + data.len() / 8,
            "{entries} entries from {} bytes",
            data.len()
        );
        for message in messages {
            for entry in message.get_entries() {
                let _ = crate::request::Proposal::decode(&entry.data);
                let _ =
                    <raft::eraftpb::ConfChange as protobuf::Message>::parse_from_bytes(&entry.data);
            }
            if message.has_snapshot() {
                let _ = crate::state::State::restore(&message.get_snapshot().data);
            }
        }
    }
    // And the bytes as one log entry's proposal.
    let _ = crate::request::Proposal::decode(data);
}

/// A client request: the method from the first byte, then `path?query`, a newline and a form
/// body. The keys API reads it as a read, a watch or a write (applied to a store), or answers
/// etcd's error; the members API reads a body as peer URLs or refuses it.
pub fn client_request(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let method = ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH"][usize::from(first % 6)];
    let text = String::from_utf8_lossy(rest);
    let (target, body) = text.split_once('\n').unwrap_or((&text, ""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = format!("/v2/keys/{}", path.trim_start_matches('/'));
    let body = (first & 0x80 != 0).then_some(body.as_bytes());
    if let Ok(crate::api::keys::Interpreted::Write(op)) =
        crate::api::keys::interpret(method, &path, query, body)
    {
        let mut state = crate::state::State::default();
        let proposal = crate::request::Proposal {
            id: 1,
            time: crate::Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
            op,
        };
        let _ = crate::request::apply(&mut state, &proposal);
        let _ = crate::request::apply(&mut state, &proposal);
    }
    let _ = crate::api::members::parse_peer_urls(rest);
    let _ = crate::membership::parse_id(&text);
}

/// Starting inputs for each target, made by the real encoders: the fuzzer mutates them into
/// the neighbourhood of valid files and messages faster than it finds them alone.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = Vec::new();

    // A small segment as written, then one whose last write a crash cut off at sector
    // granularity (the segments are preallocated, so seeds from a big one would be mostly zeros).
    for (segment_bytes, torn) in [(256, false), (2048, true)] {
        let disk = SimDisk::new();
        let dir = Path::new("/wal");
        let mut wal = now(Wal::create(disk.clone(), dir, 1, segment_bytes)).expect("a log");
        save(&mut wal, &[entry(1, b"one"), entry(2, b"two")]);
        if torn {
            now(wal.sync()).expect("a sync");
            save(&mut wal, &[entry(3, &[3; 300]), entry(4, &[4; 700])]);
            let mut coin = false;
            disk.crash_scattered(|| {
                coin = !coin;
                coin
            });
        }
        let names = now(disk.list(dir)).expect("a segment");
        let segment = now(disk.read(&dir.join(&names[0]))).expect("its bytes");
        seeds.push(("wal_segment", segment));
    }
    // Six entries in two batches, synced; damage 3: 24 more unsynced, in six batches; then
    // the coins of a crash that keeps some of their sectors.
    let mut crash = vec![0, 0, 6, 1, 10];
    crash.extend([7; 10]);
    crash.extend([40; 41]);
    crash.push(3);
    for _ in 0..4 {
        crash.extend([20; 21]);
    }
    crash.extend([3, 23]);
    // A batch byte (four entries), then four entries of 30 bytes.
    let batch: Vec<u8> = std::iter::once(3)
        .chain(std::iter::repeat_n(30, 4 * 31))
        .collect();
    for _ in 0..6 {
        crash.extend(&batch);
    }
    crash.extend((0..200).map(|i| (i * 37 % 251) as u8));
    seeds.push(("wal_damage", crash));
    seeds.push((
        "wal_damage",
        vec![1, 0, 12, 2, 5, 1, 2, 3, 4, 5, 2, 0, 0, 40],
    ));
    seeds.push(("wal_damage", vec![0, 64, 30, 3, 20, 0, 1, 0, 0, 0, 2, 9]));
    // Four entries of 40 bytes in one segment, then a bit flipped at several offsets, most
    // inside an entry's data: a record whose checksum fails must never come back.
    for at in [40u16, 100, 150, 200, 250] {
        let mut seed = vec![0xff, 0xff, 4];
        for _ in 0..4 {
            seed.extend([0, 40]);
            seed.extend([b'a'; 40]);
        }
        seed.extend([1, 0]);
        seed.extend(at.to_be_bytes());
        seeds.push(("wal_damage", seed));
    }

    let mut state = crate::state::State::default();
    let proposal = crate::request::Proposal {
        id: 1,
        time: crate::Timestamp::from_unix_secs(1_700_000_000),
        op: crate::request::Op::Set {
            key: "/seed".into(),
            value: Some("value".into()),
            ttl: Some(60),
            refresh: false,
        },
    };
    let _ = crate::request::apply(&mut state, &proposal);
    let mut snapshot = raft::eraftpb::Snapshot::default();
    snapshot.mut_metadata().index = 5;
    snapshot.mut_metadata().term = 1;
    snapshot.data = state.save().into();
    seeds.push(("snapshot_file", crate::snap::encode(&snapshot)));
    seeds.push(("store_snapshot", state.store.save()));

    seeds.push((
        "membership",
        vec![0, 3, 0, 5, 1, 0, 6, 2, 1, 5, 0, 3, 5, 0, 0, 7, 3],
    ));
    seeds.push(("membership", vec![0, 1, 0, 4, 4, 1, 4, 0, 3, 4, 0, 0, 9, 9]));

    let mut message = raft::eraftpb::Message::default();
    message.set_msg_type(raft::eraftpb::MessageType::MsgAppend);
    message.to = 2;
    message.from = 1;
    message.term = 1;
    message.mut_entries().push(entry(1, &proposal.encode()));
    seeds.push(("raft_messages", crate::transport::encode(&[message])));

    for request in [
        &b"\x01message\nvalue=Hello+world"[..],
        b"\x81message\nvalue=Hello&ttl=5",
        b"\x00foo?wait=true&waitIndex=3&recursive=true",
        b"\x82queue\nvalue=Job1",
        b"\x03dir?dir=true&recursive=true",
        b"\x81foo?prevValue=a&prevIndex=2\nvalue=b&prevExist=true",
        b"\x00foo?quorum=true&sorted=true",
        b"\x81foo\nttl=5&refresh=true",
        b"\x01{\"peerURLs\":[\"http://127.0.0.1:2380\"]}",
    ] {
        seeds.push(("client_request", request.to_vec()));
    }
    seeds
}
