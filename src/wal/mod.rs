//! The write-ahead log: raft entries and hard state, written to segment files and fsynced
//! before anything they carry is acknowledged.
//!
//! A segment is named `{seq:016x}-{first_index:016x}.wal`. It starts with a header record that
//! carries the chain value the previous segment ended with, so the CRC chain runs through the
//! whole log, then the current hard state, so replay can start at any segment (record format in
//! `record`).
//!
//! Segments are preallocated: a new one is grown to the segment size (zeros) and that length is
//! made durable together with its header before anything else is written into it, and records
//! are written in place after the last one. A write that would not leave `HEADER_LEN` zero bytes
//! after itself first grows the file, durably. So the data always ends with at least
//! `HEADER_LEN` zero bytes, a segment's length never changes in a crash, and every write lands
//! on zeros. A finished segment ends with a `Next` record naming its successor, written only
//! once the successor is durable.
//!
//! What start-up makes of a segment follows from that:
//! - The file ending inside the records (fewer than `HEADER_LEN` bytes left after a record, or a
//!   record longer than what is left) cannot come from a crash: the file was truncated after it
//!   was written, and the member refuses to start ([`WalError::Truncated`]). So does a newest
//!   segment ending with `Next`: its successor was deleted.
//! - A record that does not check out in the newest segment is a write a crash left unfinished
//!   iff part of it that lies within one 512-byte sector is all zeros (etcd's torn-entry rule: a
//!   disk writes sectors whole, and the sectors that did not make it read as the zeros that were
//!   there). It is cut off, with everything after it, and the cut is reported
//!   ([`Recovered::repairs`]). Bytes after the closing zeros (a write whose first sector did not
//!   make it) are zeroed the same way, so a later write cannot end next to them.
//! - Any other record that does not check out is damage: an error naming the file and offset.
//! - Only a `Next` record can be unfinished in the segment before the newest; it is completed
//!   (each sector of what is there must be either as the record would have it or zeros).
//! - A newest segment that is empty or all zeros is one whose creation a crash cut short; it is
//!   created again, unless the segment before it links to it (then it was emptied: refused).
//!   The first segment is written aside and renamed once durable, so an empty one that is the
//!   only segment was emptied too: refused.
//!
//! Start-up changes nothing on disk until the whole log has checked out, so a refusal says
//! the same every time.

pub mod record;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};

use crate::runtime::Disk;
use record::{Kind, Record, Stop, HEADER_LEN};

/// etcd's segment size: a new segment is cut once the current one passes it.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// A segment that must grow grows to a multiple of this: every growth costs an fsync.
const GROWTH: u64 = 4 << 10;

/// A `Next` record's length: a growth leaves room for it, as it is written right after the
/// write that made the segment full.
const LINK_LEN: u64 = HEADER_LEN as u64 + 16;

/// The suffix of a first segment being created.
const ASIDE: &str = ".tmp";

/// What an operator can do about a log that lost data.
const RECOVERY: &str = "restore this member's data from a backup, or remove this member and \
                        add it back empty so it copies the data from its peers (etcdctl member \
                        remove / member add)";

#[derive(Debug)]
pub enum WalError {
    Io(io::Error),
    /// The disk is full. Nothing of the failed call was kept and the log is as it was, so the
    /// same call may be made again once there is room.
    NoSpace(io::Error),
    /// The log is damaged; the member must not start on it.
    Corrupt {
        file: String,
        detail: String,
    },
    /// The log is shorter than what was written to it, which no crash does; the member must
    /// not start on it.
    Truncated {
        file: String,
        detail: String,
    },
    /// The log does not hold what is needed (no segments, or not back far enough).
    Missing(String),
    /// An earlier write failed; the log cannot be trusted to continue.
    Broken,
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io(e) => write!(f, "wal: {e}"),
            WalError::NoSpace(e) => write!(f, "wal: {e}"),
            WalError::Corrupt { file, detail } => write!(f, "wal: {file} is corrupt {detail}"),
            WalError::Truncated { file, detail } => write!(
                f,
                "wal: {file}: {detail}. The log was truncated after it was written (not by a \
                 crash: its segments are preallocated), so records it held are gone and this \
                 member will not start on it. To recover, {RECOVERY}"
            ),
            WalError::Missing(why) => write!(f, "wal: {why}"),
            WalError::Broken => write!(f, "wal: a previous write failed; refusing to continue"),
        }
    }
}

impl std::error::Error for WalError {}

impl From<io::Error> for WalError {
    fn from(e: io::Error) -> Self {
        WalError::Io(e)
    }
}

/// A write that a crash left unfinished, cut off at start-up: the bytes from `offset` to the
/// last non-zero byte of `file` were zeroed. They were never synced, so nothing acknowledged
/// was in them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repair {
    pub file: String,
    pub offset: u64,
    pub bytes: u64,
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wal: {}: cut a torn record at byte {} ({} bytes) that a crash left unfinished",
            self.file, self.offset, self.bytes
        )
    }
}

/// What start-up found in the log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovered {
    pub hard_state: HardState,
    /// Entries after the index the log was opened from, in order, with later writes of an
    /// index replacing earlier ones (raft overwrites uncommitted entries).
    pub entries: Vec<Entry>,
    /// The newest snapshot (index, term) installed from a leader after that index: the log
    /// restarts after it, so the caller must hold that snapshot or a newer one.
    pub installed_snapshot: Option<(u64, u64)>,
    /// Unfinished writes cut off; the caller should tell the operator.
    pub repairs: Vec<Repair>,
}

pub struct Wal<D: Disk> {
    disk: D,
    dir: PathBuf,
    segment_bytes: u64,
    seq: u64,
    tail: PathBuf,
    /// Where the next record goes in `tail`.
    tail_len: u64,
    /// `tail`'s durable length.
    allocated: u64,
    chain: u32,
    last_index: u64,
    hard_state: HardState,
    /// The hard state and last index as of the last completed sync: what a crash keeps.
    synced: (HardState, u64),
    broken: bool,
}

#[derive(Clone)]
struct SegmentName {
    seq: u64,
    first_index: u64,
    name: String,
}

fn segment_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}.wal")
}

fn parse_segment_name(name: &str) -> Option<SegmentName> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 16 || first.len() != 16 {
        return None;
    }
    Some(SegmentName {
        seq: u64::from_str_radix(seq, 16).ok()?,
        first_index: u64::from_str_radix(first, 16).ok()?,
        name: name.to_owned(),
    })
}

fn header_payload(seq: u64, first_index: u64, prev_chain: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&first_index.to_le_bytes());
    out.extend_from_slice(&prev_chain.to_le_bytes());
    out
}

/// The `Next` record that closes a segment whose records end with chain value `chain`.
fn next_record(next: &SegmentName, chain: u32) -> Vec<u8> {
    let mut payload = next.seq.to_le_bytes().to_vec();
    payload.extend_from_slice(&next.first_index.to_le_bytes());
    let mut out = Vec::new();
    record::encode(&mut out, Kind::Next, &payload, chain);
    out
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn encode_message(m: &impl protobuf::Message) -> Vec<u8> {
    m.write_to_bytes().expect("raft messages always encode")
}

/// Writes `data` at `at` in `path`, first growing the file, durably, when fewer than
/// `HEADER_LEN` zero bytes would be left after it: a crash must never shorten the data.
async fn put<D: Disk>(
    disk: &D,
    path: &Path,
    at: u64,
    data: &[u8],
    allocated: &mut u64,
) -> io::Result<()> {
    let need = at + data.len() as u64 + HEADER_LEN as u64;
    if need > *allocated {
        let len = (need + LINK_LEN).next_multiple_of(GROWTH);
        disk.allocate(path, len).await?;
        disk.sync(path).await?;
        *allocated = len;
    }
    disk.write_at(path, at, data).await
}

/// Where a segment stands among those read at start-up; it decides what a crash can have left.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Finished before its successor was created: it must be whole.
    Earlier,
    /// Finished, but its `Next` record was written after its successor was created.
    BeforeLast,
    /// The one being written.
    Last,
}

/// How a segment read at start-up ends.
struct Ending {
    /// Where its records end.
    end: u64,
    /// Its length.
    len: u64,
    /// The chain value after its last record but `Next`: its successor's header carries it.
    chain: u32,
    /// Whether it ends with a `Next` record.
    linked: bool,
}

/// A change start-up makes once it has checked the whole log.
enum Fix {
    /// Zero `len` bytes from `at`: an unfinished write.
    Cut { path: PathBuf, at: u64, len: u64 },
    /// Write the `Next` record that an unfinished cut left out.
    Link {
        path: PathBuf,
        at: u64,
        allocated: u64,
        record: Vec<u8>,
    },
}

/// Replays records into what start-up returns.
struct Replay {
    from_index: u64,
    recovered: Recovered,
    /// Entries at or below this are not returned.
    base: u64,
    /// The index of the newest entry the log holds.
    log_end: u64,
}

impl Replay {
    fn record(&mut self, rec: &Record<'_>) -> Result<(), String> {
        match rec.kind {
            Kind::Segment => return Err("a second segment header".into()),
            Kind::Next => return Err("a link to the next segment before the end".into()),
            Kind::Entry => {
                let entry = Entry::parse_from_bytes(rec.payload)
                    .map_err(|e| format!("undecodable entry: {e}"))?;
                let index = entry.index;
                if index == 0 || index > self.log_end + 1 {
                    return Err(format!("entry {index} after entry {}", self.log_end));
                }
                self.log_end = index;
                if index > self.base {
                    let entries = &mut self.recovered.entries;
                    let keep = entries.partition_point(|e| e.index < index);
                    entries.truncate(keep);
                    entries.push(entry);
                }
            }
            Kind::HardState => {
                self.recovered.hard_state = HardState::parse_from_bytes(rec.payload)
                    .map_err(|e| format!("undecodable hard state: {e}"))?;
            }
            Kind::SnapshotInstalled => {
                let (Some(index), Some(term)) = (u64_at(rec.payload, 0), u64_at(rec.payload, 8))
                else {
                    return Err("short snapshot record".into());
                };
                self.recovered.entries.clear();
                self.log_end = index;
                if index > self.from_index {
                    self.base = index;
                    self.recovered.installed_snapshot = Some((index, term));
                }
            }
        }
        Ok(())
    }
}

/// Start-up's reading of the log: checks every segment from the one it starts at, and gathers
/// the repairs to make once all of it checked out.
struct Reader<'a> {
    dir: &'a Path,
    replay: Replay,
    /// The chain value the previous segment read ended with.
    prev_chain: Option<u32>,
    fixes: Vec<Fix>,
}

impl Reader<'_> {
    fn file(&self, segment: &SegmentName) -> String {
        self.dir.join(&segment.name).display().to_string()
    }

    fn corrupt(&self, segment: &SegmentName, detail: String) -> WalError {
        WalError::Corrupt {
            file: self.file(segment),
            detail,
        }
    }

    /// Checks and replays one segment; `next` is its successor, when it has one.
    fn segment(
        &mut self,
        bytes: &[u8],
        segment: &SegmentName,
        next: Option<&SegmentName>,
        role: Role,
    ) -> Result<Ending, WalError> {
        let scan = record::scan(bytes, 0);
        let end = scan.end;
        let unfinished = self.unfinished(bytes, &scan, segment, role)?;
        let mut records = scan.records.iter().peekable();
        self.header(records.next(), segment)?;
        let mut chain = scan.records[0].crc;
        let mut linked = false;
        while let Some(rec) = records.next() {
            if rec.kind == Kind::Next && records.peek().is_none() {
                linked = true;
                self.link(rec, segment, next)?;
                break;
            }
            if let Err(what) = self.replay.record(rec) {
                return Err(self.corrupt(segment, format!("at byte {}: {what}", rec.offset)));
            }
            chain = rec.crc;
        }
        if role == Role::BeforeLast && linked && unfinished {
            return Err(self.corrupt(
                segment,
                format!("at byte {end}: bytes after the link to the next segment"),
            ));
        }
        if role == Role::BeforeLast && !linked {
            let next = next.expect("a segment before the last has a successor");
            let record = next_record(next, chain);
            if unfinished && !record::is_partial_write_of(&bytes[end..], end, &record) {
                return Err(self.corrupt(
                    segment,
                    format!(
                        "at byte {end}: bytes that are not the link to {}",
                        next.name
                    ),
                ));
            }
            self.fixes.push(Fix::Link {
                path: self.dir.join(&segment.name),
                at: end as u64,
                allocated: bytes.len() as u64,
                record,
            });
        }
        self.prev_chain = Some(chain);
        Ok(Ending {
            end: end as u64,
            len: bytes.len() as u64,
            chain,
            linked,
        })
    }

    /// Decides what the bytes where the records stop mean; whether they are an unfinished
    /// write, cut off here in the newest segment.
    fn unfinished(
        &mut self,
        bytes: &[u8],
        scan: &record::Scan<'_>,
        segment: &SegmentName,
        role: Role,
    ) -> Result<bool, WalError> {
        let end = scan.end;
        let last_written = record::last_nonzero(bytes, end);
        let what = match &scan.stop {
            Stop::Eof { reason } => {
                return Err(WalError::Truncated {
                    file: self.file(segment),
                    detail: format!("at byte {end}: {reason}"),
                })
            }
            Stop::Bad {
                reason,
                torn: false,
            } => return Err(self.corrupt(segment, format!("at byte {end}: {reason}"))),
            Stop::End if last_written.is_none() => return Ok(false),
            Stop::End => "bytes after the end of its records".to_owned(),
            Stop::Bad { reason, torn: true } => reason.clone(),
        };
        match role {
            Role::Last => {
                let len = last_written.map_or(0, |at| at + 1 - end) as u64;
                let path = self.dir.join(&segment.name);
                self.replay.recovered.repairs.push(Repair {
                    file: path.display().to_string(),
                    offset: end as u64,
                    bytes: len,
                });
                self.fixes.push(Fix::Cut {
                    path,
                    at: end as u64,
                    len,
                });
                Ok(true)
            }
            // Its `Next` record, checked once the records are read.
            Role::BeforeLast => Ok(true),
            Role::Earlier => Err(self.corrupt(
                segment,
                format!(
                    "at byte {end}: {what}, in a segment finished before the next was \
                     created, where no unfinished write can be"
                ),
            )),
        }
    }

    fn header(&self, header: Option<&Record<'_>>, segment: &SegmentName) -> Result<(), WalError> {
        let header = header
            .filter(|r| r.kind == Kind::Segment)
            .ok_or_else(|| self.corrupt(segment, "has no segment header".into()))?;
        let (seq, first_index) = (u64_at(header.payload, 0), u64_at(header.payload, 8));
        let chained = header
            .payload
            .get(16..20)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
        if seq != Some(segment.seq) || first_index != Some(segment.first_index) {
            return Err(self.corrupt(segment, "header does not match its name".into()));
        }
        if self.prev_chain.is_some_and(|c| Some(c) != chained) {
            return Err(self.corrupt(segment, "does not continue the previous segment".into()));
        }
        Ok(())
    }

    /// Checks a segment's closing `Next` record against the segment that follows it.
    fn link(
        &self,
        rec: &Record<'_>,
        segment: &SegmentName,
        next: Option<&SegmentName>,
    ) -> Result<(), WalError> {
        let (seq, first_index) = (u64_at(rec.payload, 0), u64_at(rec.payload, 8));
        let (Some(seq), Some(first_index)) = (seq, first_index) else {
            return Err(self.corrupt(
                segment,
                format!("at byte {}: short link record", rec.offset),
            ));
        };
        let named = segment_name(seq, first_index);
        match next {
            None => Err(WalError::Truncated {
                file: self.file(segment),
                detail: format!(
                    "it ends with a link to the segment after it, {named}, which is missing or \
                     empty"
                ),
            }),
            Some(next) if next.name != named => Err(self.corrupt(
                segment,
                format!(
                    "at byte {}: links to {named} but is followed by {}",
                    rec.offset, next.name
                ),
            )),
            Some(_) => Ok(()),
        }
    }
}

impl<D: Disk> Wal<D> {
    /// Starts a new log in `dir` whose first entry will be `first_index`.
    pub async fn create(
        disk: D,
        dir: &Path,
        first_index: u64,
        segment_bytes: u64,
    ) -> Result<Wal<D>, WalError> {
        disk.create_dir_all(dir).await?;
        if !Self::segments(&disk, dir).await?.is_empty() {
            return Err(WalError::Corrupt {
                file: dir.display().to_string(),
                detail: "already holds a log".into(),
            });
        }
        for name in disk.list(dir).await? {
            if name.ends_with(ASIDE) {
                // A creation that a crash cut short.
                disk.remove(&dir.join(name)).await?;
            }
        }
        let mut wal = Wal::empty(disk, dir, segment_bytes);
        wal.last_index = first_index.saturating_sub(1);
        wal.synced.1 = wal.last_index;
        // Written aside and renamed once durable, so that a first segment found empty was
        // emptied after it was written: unlike a later one, it has no predecessor to say so.
        let path = dir.join(segment_name(0, first_index));
        let aside = PathBuf::from(format!("{}{ASIDE}", path.display()));
        wal.start_segment_at(0, &aside).await?;
        let result = wal.disk.rename(&aside, &path).await;
        wal.fail_on_error(result)?;
        wal.tail = path;
        Ok(wal)
    }

    fn empty(disk: D, dir: &Path, segment_bytes: u64) -> Wal<D> {
        Wal {
            disk,
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(1),
            seq: 0,
            tail: PathBuf::new(),
            tail_len: 0,
            allocated: 0,
            chain: 0,
            last_index: 0,
            hard_state: HardState::default(),
            synced: (HardState::default(), 0),
            broken: false,
        }
    }

    async fn segments(disk: &D, dir: &Path) -> Result<Vec<SegmentName>, WalError> {
        let mut segments: Vec<SegmentName> = disk
            .list(dir)
            .await?
            .iter()
            .filter_map(|n| parse_segment_name(n))
            .collect();
        segments.sort_by_key(|s| s.seq);
        Ok(segments)
    }

    /// Whether `dir` holds a log at all.
    pub async fn exists(disk: &D, dir: &Path) -> Result<bool, WalError> {
        match disk.list(dir).await {
            Ok(names) => Ok(names.iter().any(|n| parse_segment_name(n).is_some())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the log in `dir` for entries after `from_index` (the index of the snapshot the
    /// caller restored), finishing what a crash left unfinished (see the module doc). Nothing is
    /// changed on disk unless the whole log checked out.
    pub async fn open(
        disk: D,
        dir: &Path,
        from_index: u64,
        segment_bytes: u64,
    ) -> Result<(Wal<D>, Recovered), WalError> {
        let segments = Self::segments(&disk, dir).await?;
        let Some(last) = segments.len().checked_sub(1) else {
            return Err(WalError::Missing(format!(
                "no log segments in {}",
                dir.display()
            )));
        };
        for pair in segments.windows(2) {
            if pair[1].seq != pair[0].seq + 1 {
                return Err(WalError::Corrupt {
                    file: dir.join(&pair[1].name).display().to_string(),
                    detail: format!("follows segment {}", pair[0].seq),
                });
            }
        }
        let mut last_bytes = Some(disk.read(&dir.join(&segments[last].name)).await?);
        // A crash while a segment was being created leaves it empty or all zeros: nothing was
        // written into it before its header was durable.
        let unborn = last_bytes.as_deref().is_some_and(record::is_zero);
        if unborn && last == 0 {
            // `create` makes the first segment whole before giving it its name.
            return Err(WalError::Truncated {
                file: dir.join(&segments[last].name).display().to_string(),
                detail: "it is empty, and it is the only segment of the log".into(),
            });
        }
        let newest = if unborn { last - 1 } else { last };
        let Some(start) = segments[..=newest]
            .iter()
            .rposition(|s| s.first_index <= from_index + 1)
        else {
            return Err(WalError::Missing(format!(
                "the log starts at index {} but entries from {} are needed",
                segments[0].first_index,
                from_index + 1
            )));
        };

        let mut reader = Reader {
            dir,
            replay: Replay {
                from_index,
                recovered: Recovered::default(),
                base: from_index,
                log_end: segments[start].first_index - 1,
            },
            prev_chain: None,
            fixes: Vec::new(),
        };
        let mut ending = None;
        for i in start..=newest {
            let bytes = match i == last {
                true => last_bytes.take().expect("the newest segment was read once"),
                false => disk.read(&dir.join(&segments[i].name)).await?,
            };
            let role = match last - i {
                0 => Role::Last,
                1 if !unborn => Role::BeforeLast,
                _ => Role::Earlier,
            };
            ending = Some(reader.segment(&bytes, &segments[i], segments.get(i + 1), role)?);
        }
        let ending = ending.expect("at least one segment was read");
        let Reader { replay, fixes, .. } = reader;

        let mut wal = Wal::empty(disk, dir, segment_bytes);
        wal.seq = segments[newest].seq;
        wal.tail = dir.join(&segments[newest].name);
        wal.tail_len = ending.end;
        wal.allocated = ending.len;
        wal.chain = ending.chain;
        wal.last_index = replay.log_end;
        wal.hard_state = replay.recovered.hard_state.clone();
        // What was read back survived whatever came before: as good as synced.
        wal.synced = (wal.hard_state.clone(), wal.last_index);
        if unborn {
            wal.check_unborn(&segments[last], &ending)?;
        }
        for fix in fixes {
            wal.apply(fix).await?;
        }
        if unborn {
            // As `cut` would have made it.
            wal.cut().await?;
        }
        Ok((wal, replay.recovered))
    }

    async fn apply(&self, fix: Fix) -> Result<(), WalError> {
        match fix {
            Fix::Cut { path, at, len } => {
                self.disk
                    .write_at(&path, at, &vec![0; len as usize])
                    .await?;
                self.disk.sync(&path).await?;
            }
            Fix::Link {
                path,
                at,
                mut allocated,
                record,
            } => {
                put(&self.disk, &path, at, &record, &mut allocated).await?;
                self.disk.sync(&path).await?;
            }
        }
        Ok(())
    }

    /// Whether the newest segment, found empty, can be one whose creation a crash cut short;
    /// `ending` is how the one before it (the tail so far) ends.
    fn check_unborn(&self, unborn: &SegmentName, ending: &Ending) -> Result<(), WalError> {
        let file = self.dir.join(&unborn.name).display().to_string();
        if ending.linked {
            return Err(WalError::Truncated {
                file,
                detail: "it is empty, but the segment before it links to it".into(),
            });
        }
        if unborn.first_index != self.last_index + 1 {
            return Err(WalError::Corrupt {
                file,
                detail: format!(
                    "is empty and starts at index {}, but the log before it ends at {}",
                    unborn.first_index, self.last_index
                ),
            });
        }
        Ok(())
    }

    /// Appends entries and, if given, a new hard state. Not durable until `sync`.
    pub async fn save(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), WalError> {
        let mut buf = Vec::new();
        let mut chain = self.chain;
        for entry in entries {
            chain = record::encode(&mut buf, Kind::Entry, &encode_message(entry), chain);
        }
        if let Some(hs) = hard_state {
            chain = record::encode(&mut buf, Kind::HardState, &encode_message(hs), chain);
        }
        self.write(buf, chain).await?;
        if let Some(last) = entries.last() {
            self.last_index = last.index;
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        if self.tail_len >= self.segment_bytes {
            self.cut().await?;
        }
        Ok(())
    }

    /// Records that a snapshot from the leader replaced the log up to `index`, durably.
    pub async fn snapshot_installed(&mut self, index: u64, term: u64) -> Result<(), WalError> {
        let mut buf = Vec::new();
        let mut payload = index.to_le_bytes().to_vec();
        payload.extend_from_slice(&term.to_le_bytes());
        let chain = record::encode(&mut buf, Kind::SnapshotInstalled, &payload, self.chain);
        self.write(buf, chain).await?;
        self.last_index = index;
        self.sync().await
    }

    /// Makes everything saved so far durable.
    pub async fn sync(&mut self) -> Result<(), WalError> {
        self.check()?;
        let result = self.disk.sync(&self.tail).await;
        self.fail_on_error(result)?;
        self.synced = (self.hard_state.clone(), self.last_index);
        Ok(())
    }

    /// The hard state and last index as of the last completed sync: what a crash would keep.
    pub fn synced(&self) -> (&HardState, u64) {
        (&self.synced.0, self.synced.1)
    }

    /// Removes segments holding only entries at or below `index` (never the newest segment).
    pub async fn release_to(&mut self, index: u64) -> Result<usize, WalError> {
        self.check()?;
        let segments = Self::segments(&self.disk, &self.dir).await?;
        let mut removed = 0;
        for pair in segments.windows(2) {
            if pair[1].first_index > index + 1 {
                break;
            }
            self.disk.remove(&self.dir.join(&pair[0].name)).await?;
            removed += 1;
        }
        Ok(removed)
    }

    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    fn check(&self) -> Result<(), WalError> {
        if self.broken {
            return Err(WalError::Broken);
        }
        Ok(())
    }

    fn fail_on_error<T>(&mut self, result: io::Result<T>) -> Result<T, WalError> {
        result.map_err(|e| {
            self.broken = true;
            WalError::Io(e)
        })
    }

    /// As `fail_on_error`, but a full disk leaves the log usable: for writes that either
    /// change nothing the log relies on when they fail (records past its end) or are undone.
    fn fail_unless_full<T>(&mut self, result: io::Result<T>) -> Result<T, WalError> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::StorageFull => Err(WalError::NoSpace(e)),
            other => self.fail_on_error(other),
        }
    }

    async fn write(&mut self, buf: Vec<u8>, chain: u32) -> Result<(), WalError> {
        self.check()?;
        if buf.is_empty() {
            return Ok(());
        }
        let result = put(
            &self.disk,
            &self.tail,
            self.tail_len,
            &buf,
            &mut self.allocated,
        )
        .await;
        // Bytes of a failed write lie past `tail_len`: the next write goes over them, and a
        // crash before that leaves what start-up cuts off as an unfinished write.
        self.fail_unless_full(result)?;
        self.tail_len += buf.len() as u64;
        self.chain = chain;
        Ok(())
    }

    /// Starts segment `seq` after the current one: preallocated, with its header and the
    /// current hard state, all durable before the segment is used.
    async fn start_segment(&mut self, seq: u64) -> Result<(), WalError> {
        let path = self.dir.join(segment_name(seq, self.last_index + 1));
        self.start_segment_at(seq, &path).await
    }

    async fn start_segment_at(&mut self, seq: u64, path: &Path) -> Result<(), WalError> {
        let first_index = self.last_index + 1;
        let mut buf = Vec::new();
        let header = header_payload(seq, first_index, self.chain);
        let mut chain = record::encode(&mut buf, Kind::Segment, &header, 0);
        chain = record::encode(
            &mut buf,
            Kind::HardState,
            &encode_message(&self.hard_state),
            chain,
        );
        let allocated = self
            .segment_bytes
            .max((buf.len() + HEADER_LEN) as u64)
            .next_multiple_of(record::SECTOR as u64);
        let result = async {
            self.disk.allocate(path, allocated).await?;
            self.disk.write_at(path, 0, &buf).await?;
            self.disk.sync(path).await
        }
        .await;
        if let Err(e) = &result {
            if e.kind() == io::ErrorKind::StorageFull {
                // Not part of the log yet: gone, or start-up would find a stray segment.
                let removed = match self.disk.remove(path).await {
                    Err(gone) if gone.kind() == io::ErrorKind::NotFound => Ok(()),
                    other => other,
                };
                self.fail_on_error(removed)?;
            }
        }
        self.fail_unless_full(result)?;
        self.seq = seq;
        self.tail = path.to_path_buf();
        self.tail_len = buf.len() as u64;
        self.allocated = allocated;
        self.chain = chain;
        Ok(())
    }

    /// Moves to a new segment. The old one gets its `Next` record only once the new one is
    /// durable, so a newest segment ending with one has lost its successor.
    ///
    /// On a full disk the cut is undone and the log stays on its segment, growing past its
    /// size; the next save tries again.
    async fn cut(&mut self) -> Result<(), WalError> {
        self.sync().await?;
        let (old, end, mut allocated, chain, seq) = (
            self.tail.clone(),
            self.tail_len,
            self.allocated,
            self.chain,
            self.seq,
        );
        let next = SegmentName {
            seq: self.seq + 1,
            first_index: self.last_index + 1,
            name: String::new(),
        };
        match self.start_segment(next.seq).await {
            Err(WalError::NoSpace(_)) => return Ok(()),
            other => other?,
        }
        let record = next_record(&next, chain);
        let linked = async {
            put(&self.disk, &old, end, &record, &mut allocated).await?;
            self.disk.sync(&old).await
        }
        .await;
        match linked {
            Err(e) if e.kind() == io::ErrorKind::StorageFull => {
                // The new segment holds only its header: back to the old one, as if the cut
                // had never begun.
                let removed = self.disk.remove(&self.tail).await;
                self.fail_on_error(removed)?;
                self.tail = old;
                self.tail_len = end;
                self.allocated = allocated;
                self.chain = chain;
                self.seq = seq;
                Ok(())
            }
            other => self.fail_on_error(other),
        }
    }
}

#[cfg(test)]
mod tests;
