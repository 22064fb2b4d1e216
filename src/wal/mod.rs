//! The write-ahead log: raft entries and hard state, appended to segment files and fsynced
//! before anything they carry is acknowledged.
//!
//! A segment is named `{seq:016x}-{first_index:016x}.wal` and starts with a header record that
//! carries the chain value the previous segment ended with, so the CRC chain runs through the
//! whole log; every segment repeats the current hard state after its header, so replay can start
//! at any segment. At start-up a record cut short at the very end of the last segment (a write
//! torn by a crash) is cut off; any other damage is an error that names the file and offset.

pub mod record;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};

use crate::runtime::Disk;
use record::{Decoded, End, Kind};

/// etcd's segment size: a new segment is cut once the current one passes it.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

#[derive(Debug)]
pub enum WalError {
    Io(io::Error),
    /// The log is damaged; the member must not start on it.
    Corrupt {
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
            WalError::Corrupt { file, detail } => write!(f, "wal: {file} is corrupt {detail}"),
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
}

pub struct Wal<D: Disk> {
    disk: D,
    dir: PathBuf,
    segment_bytes: u64,
    seq: u64,
    tail: PathBuf,
    tail_len: u64,
    chain: u32,
    last_index: u64,
    hard_state: HardState,
    broken: bool,
}

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

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn encode_message(m: &impl protobuf::Message) -> Vec<u8> {
    m.write_to_bytes().expect("raft messages always encode")
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
        let mut wal = Wal {
            disk,
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(1),
            seq: 0,
            tail: PathBuf::new(),
            tail_len: 0,
            chain: 0,
            last_index: first_index.saturating_sub(1),
            hard_state: HardState::default(),
            broken: false,
        };
        wal.start_segment(0).await?;
        Ok(wal)
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
    /// caller restored), repairing a torn tail.
    pub async fn open(
        disk: D,
        dir: &Path,
        from_index: u64,
        segment_bytes: u64,
    ) -> Result<(Wal<D>, Recovered), WalError> {
        let mut segments = Self::segments(&disk, dir).await?;
        // A crash while cutting a segment can leave the newest one without a whole header.
        while let Some(last) = segments.last() {
            let path = dir.join(&last.name);
            let bytes = disk.read(&path).await?;
            // Only a header cut short is removed; a damaged one is reported below.
            let torn_header = matches!(record::decode(&bytes, 0), Ok(Decoded { records, .. }) if records.is_empty());
            if !torn_header {
                break;
            }
            disk.remove(&path).await?;
            segments.pop();
        }
        let corrupt = |name: &str, detail: String| WalError::Corrupt {
            file: dir.join(name).display().to_string(),
            detail,
        };
        if segments.is_empty() {
            return Err(WalError::Missing(format!(
                "no log segments in {}",
                dir.display()
            )));
        }
        for pair in segments.windows(2) {
            if pair[1].seq != pair[0].seq + 1 {
                return Err(corrupt(
                    &pair[1].name,
                    format!("follows segment {}", pair[0].seq),
                ));
            }
        }
        let Some(start) = segments
            .iter()
            .rposition(|s| s.first_index <= from_index + 1)
        else {
            return Err(WalError::Missing(format!(
                "the log starts at index {} but entries from {} are needed",
                segments[0].first_index,
                from_index + 1
            )));
        };

        let mut recovered = Recovered::default();
        let mut base = from_index; // entries at or below this are not returned
        let mut log_end = 0; // index of the newest entry the log holds
        let mut prev_chain: Option<u32> = None;
        let mut tail = None;
        let last = segments.len() - 1;
        for (i, segment) in segments.iter().enumerate().skip(start) {
            let path = dir.join(&segment.name);
            let bytes = disk.read(&path).await?;
            let decoded = record::decode(&bytes, 0)
                .map_err(|damage| corrupt(&segment.name, damage.to_string()))?;
            if let End::Torn { .. } = decoded.end {
                if i != last {
                    return Err(corrupt(&segment.name, "ends in a torn record".into()));
                }
            }
            let mut records = decoded.records.iter();
            let header = records
                .next()
                .filter(|r| r.kind == Kind::Segment)
                .ok_or_else(|| corrupt(&segment.name, "has no segment header".into()))?;
            let (seq, first_index) = (u64_at(header.payload, 0), u64_at(header.payload, 8));
            let chained = header
                .payload
                .get(16..20)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
            if seq != Some(segment.seq) || first_index != Some(segment.first_index) {
                return Err(corrupt(
                    &segment.name,
                    "header does not match its name".into(),
                ));
            }
            if prev_chain.is_some_and(|c| Some(c) != chained) {
                return Err(corrupt(
                    &segment.name,
                    "does not continue the previous segment".into(),
                ));
            }
            if i == start {
                log_end = segment.first_index - 1;
            }
            for rec in records {
                let bad =
                    |what: &str| corrupt(&segment.name, format!("at byte {}: {what}", rec.offset));
                match rec.kind {
                    Kind::Segment => return Err(bad("a second segment header")),
                    Kind::Entry => {
                        let entry = Entry::parse_from_bytes(rec.payload)
                            .map_err(|e| bad(&format!("undecodable entry: {e}")))?;
                        let index = entry.index;
                        if index == 0 || index > log_end + 1 {
                            return Err(bad(&format!("entry {index} after entry {log_end}")));
                        }
                        log_end = index;
                        if index > base {
                            let keep = recovered.entries.partition_point(|e| e.index < index);
                            recovered.entries.truncate(keep);
                            recovered.entries.push(entry);
                        }
                    }
                    Kind::HardState => {
                        recovered.hard_state = HardState::parse_from_bytes(rec.payload)
                            .map_err(|e| bad(&format!("undecodable hard state: {e}")))?;
                    }
                    Kind::SnapshotInstalled => {
                        let (Some(index), Some(term)) =
                            (u64_at(rec.payload, 0), u64_at(rec.payload, 8))
                        else {
                            return Err(bad("short snapshot record"));
                        };
                        recovered.entries.clear();
                        log_end = index;
                        if index > from_index {
                            base = index;
                            recovered.installed_snapshot = Some((index, term));
                        }
                    }
                }
            }
            prev_chain = Some(decoded.chain);
            if i == last {
                let valid_len = match decoded.end {
                    End::Clean => bytes.len(),
                    End::Torn { valid_len } => {
                        disk.truncate(&path, valid_len as u64).await?;
                        valid_len
                    }
                };
                tail = Some((path, valid_len as u64, decoded.chain));
            }
        }
        let (tail, tail_len, chain) = tail.expect("the last segment was read");
        let wal = Wal {
            disk,
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(1),
            seq: segments[last].seq,
            tail,
            tail_len,
            chain,
            last_index: log_end,
            hard_state: recovered.hard_state.clone(),
            broken: false,
        };
        Ok((wal, recovered))
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
        self.fail_on_error(result)
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

    async fn write(&mut self, buf: Vec<u8>, chain: u32) -> Result<(), WalError> {
        self.check()?;
        if buf.is_empty() {
            return Ok(());
        }
        let result = self.disk.append(&self.tail, &buf).await;
        self.fail_on_error(result)?;
        self.tail_len += buf.len() as u64;
        self.chain = chain;
        Ok(())
    }

    /// Starts segment `seq` after the current one: header, then the current hard state.
    async fn start_segment(&mut self, seq: u64) -> Result<(), WalError> {
        let first_index = self.last_index + 1;
        let path = self.dir.join(segment_name(seq, first_index));
        let mut buf = Vec::new();
        let header = header_payload(seq, first_index, self.chain);
        let mut chain = record::encode(&mut buf, Kind::Segment, &header, 0);
        chain = record::encode(
            &mut buf,
            Kind::HardState,
            &encode_message(&self.hard_state),
            chain,
        );
        let result = self.disk.append(&path, &buf).await;
        self.fail_on_error(result)?;
        let result = self.disk.sync(&path).await;
        self.fail_on_error(result)?;
        self.seq = seq;
        self.tail = path;
        self.tail_len = buf.len() as u64;
        self.chain = chain;
        Ok(())
    }

    async fn cut(&mut self) -> Result<(), WalError> {
        self.sync().await?;
        self.start_segment(self.seq + 1).await
    }
}

#[cfg(test)]
mod tests;
