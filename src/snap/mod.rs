//! Snapshot files: `{term:016x}-{index:016x}.snap`, each a CRC32-C followed by the raft
//! snapshot (metadata and the store). Written aside and renamed, so a file is whole or absent;
//! one that fails its checksum is renamed `.broken` and the next older one is used.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::Snapshot;

use crate::runtime::Disk;

#[derive(Debug)]
pub enum SnapError {
    Io(io::Error),
}

impl fmt::Display for SnapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapError::Io(e) => write!(f, "snap: {e}"),
        }
    }
}

impl SnapError {
    /// The disk was full: nothing was saved, and saving again later may work.
    pub fn is_no_space(&self) -> bool {
        matches!(self, SnapError::Io(e) if e.kind() == io::ErrorKind::StorageFull)
    }
}

impl std::error::Error for SnapError {}

impl From<io::Error> for SnapError {
    fn from(e: io::Error) -> Self {
        SnapError::Io(e)
    }
}

pub struct Snapshotter<D: Disk> {
    disk: D,
    dir: PathBuf,
}

fn file_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}.snap")
}

/// (index, term) of a snapshot file name.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (term, index) = name.strip_suffix(".snap")?.split_once('-')?;
    if term.len() != 16 || index.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(index, 16).ok()?,
        u64::from_str_radix(term, 16).ok()?,
    ))
}

/// Decodes a snapshot file; `None` if it is damaged.
pub fn decode(bytes: &[u8]) -> Option<Snapshot> {
    let (crc, body) = bytes.split_at_checked(4)?;
    if u32::from_le_bytes(crc.try_into().ok()?) != crc32c::crc32c(body) {
        return None;
    }
    // Every real snapshot is of some index; an empty message (CRC 0 of nothing) is damage.
    Snapshot::parse_from_bytes(body)
        .ok()
        .filter(|s| s.get_metadata().index > 0)
}

pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let body = snapshot
        .write_to_bytes()
        .expect("a snapshot always encodes");
    let mut out = crc32c::crc32c(&body).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

impl<D: Disk> Snapshotter<D> {
    pub async fn new(disk: D, dir: &Path) -> Result<Snapshotter<D>, SnapError> {
        disk.create_dir_all(dir).await?;
        Ok(Snapshotter {
            disk,
            dir: dir.to_path_buf(),
        })
    }

    pub async fn save(&self, snapshot: &Snapshot) -> Result<(), SnapError> {
        let meta = snapshot.get_metadata();
        let path = self.dir.join(file_name(meta.term, meta.index));
        self.disk.write_atomic(&path, &encode(snapshot)).await?;
        Ok(())
    }

    /// Snapshot files by index, newest first.
    async fn files(&self) -> Result<Vec<(u64, String)>, SnapError> {
        let mut files: Vec<(u64, String)> = self
            .disk
            .list(&self.dir)
            .await?
            .into_iter()
            .filter_map(|name| parse_name(&name).map(|(index, _)| (index, name)))
            .collect();
        files.sort_by(|a, b| b.cmp(a));
        Ok(files)
    }

    /// The newest snapshot that reads back whole; damaged ones are set aside as `.broken`.
    pub async fn load_newest(&self) -> Result<Option<Snapshot>, SnapError> {
        for (_, name) in self.files().await? {
            let path = self.dir.join(&name);
            if let Some(snapshot) = decode(&self.disk.read(&path).await?) {
                return Ok(Some(snapshot));
            }
            self.disk
                .rename(&path, &self.dir.join(format!("{name}.broken")))
                .await?;
        }
        Ok(None)
    }

    /// Keeps the newest `keep` snapshots; returns the index of the oldest one kept.
    pub async fn purge(&self, keep: usize) -> Result<Option<u64>, SnapError> {
        let files = self.files().await?;
        for (_, name) in files.iter().skip(keep.max(1)) {
            self.disk.remove(&self.dir.join(name)).await?;
        }
        let kept = keep.max(1).min(files.len());
        Ok(kept.checked_sub(1).map(|last| files[last].0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::SimDisk;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    fn snapshot(index: u64, term: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().set_index(index);
        s.mut_metadata().set_term(term);
        s.set_data(format!("store at {index}").into_bytes().into());
        s
    }

    #[test]
    fn the_newest_snapshot_is_loaded() {
        run(async {
            let disk = SimDisk::new();
            let snap = Snapshotter::new(disk, Path::new("/snap")).await.unwrap();
            for (i, t) in [(10, 1), (30, 2), (20, 2)] {
                snap.save(&snapshot(i, t)).await.unwrap();
            }
            assert_eq!(snap.load_newest().await.unwrap(), Some(snapshot(30, 2)));
        });
    }

    #[test]
    fn a_broken_snapshot_falls_back_to_the_previous_one() {
        run(async {
            let disk = SimDisk::new();
            let snap = Snapshotter::new(disk.clone(), Path::new("/snap"))
                .await
                .unwrap();
            snap.save(&snapshot(10, 1)).await.unwrap();
            snap.save(&snapshot(20, 1)).await.unwrap();
            disk.corrupt(&Path::new("/snap").join(file_name(1, 20)), 9);
            assert_eq!(snap.load_newest().await.unwrap(), Some(snapshot(10, 1)));
            let names = disk.list(Path::new("/snap")).await.unwrap();
            assert!(
                names.iter().any(|n| n.ends_with(".snap.broken")),
                "{names:?}"
            );
        });
    }

    #[test]
    fn purge_keeps_the_newest() {
        run(async {
            let disk = SimDisk::new();
            let snap = Snapshotter::new(disk.clone(), Path::new("/snap"))
                .await
                .unwrap();
            for i in 1..=7 {
                snap.save(&snapshot(i * 10, 1)).await.unwrap();
            }
            assert_eq!(snap.purge(3).await.unwrap(), Some(50));
            assert_eq!(disk.list(Path::new("/snap")).await.unwrap().len(), 3);
        });
    }

    #[test]
    fn any_bytes_decode_or_are_refused() {
        for bytes in [&b""[..], b"abc", b"\0\0\0\0", &[0xff; 64]] {
            assert!(decode(bytes).is_none());
        }
        let good = encode(&snapshot(5, 1));
        assert_eq!(decode(&good), Some(snapshot(5, 1)));
    }
}
