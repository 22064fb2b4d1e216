//! A disk in memory that remembers what is durable. Every file has the bytes written to it and
//! the length of the prefix that a `sync` made durable; `crash` keeps the durable prefix plus a
//! random part of what was written after it, which is what a power cut can leave (the last
//! write torn anywhere). It can also be told to fail every operation, as a dying disk does.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::Disk;

#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, File>,
    dirs: std::collections::BTreeSet<PathBuf>,
    failing: bool,
    syncs: u64,
    refused: u64,
}

#[derive(Clone, Debug, Default)]
struct File {
    data: Vec<u8>,
    durable: usize,
}

fn eio() -> io::Error {
    io::Error::other("simulated disk failure (EIO)")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is already a failed test; keep going for its report.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn writable(&self) -> io::Result<MutexGuard<'_, State>> {
        let mut state = self.state();
        if state.failing {
            state.refused += 1;
            return Err(eio());
        }
        Ok(state)
    }

    /// How many operations failed because the disk was failing.
    pub fn refused_count(&self) -> u64 {
        self.state().refused
    }

    /// Loses what was not synced, keeping `keep(unsynced_len)` of each file's unsynced tail.
    pub fn crash(&self, mut keep: impl FnMut(usize) -> usize) {
        let mut state = self.state();
        for file in state.files.values_mut() {
            let unsynced = file.data.len() - file.durable;
            let kept = keep(unsynced).min(unsynced);
            file.data.truncate(file.durable + kept);
            file.durable = file.data.len();
        }
    }

    /// From now on every operation fails with EIO (until `set_failing(false)`).
    pub fn set_failing(&self, failing: bool) {
        self.state().failing = failing;
    }

    /// How many syncs have been issued (to check group commit).
    pub fn sync_count(&self) -> u64 {
        self.state().syncs
    }

    /// Flips one bit of a file's durable content, for corruption tests.
    pub fn corrupt(&self, path: &Path, offset: usize) {
        if let Some(file) = self.state().files.get_mut(path) {
            if let Some(byte) = file.data.get_mut(offset) {
                *byte ^= 0x40;
            }
        }
    }

    pub fn len(&self, path: &Path) -> Option<usize> {
        self.state().files.get(path).map(|f| f.data.len())
    }
}

impl Disk for SimDisk {
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.writable()?;
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.writable()?;
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    async fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.writable()?;
        state
            .files
            .get(path)
            .map(|f| f.data.clone())
            .ok_or_else(|| not_found(path))
    }

    async fn append(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut state = self.writable()?;
        state
            .files
            .entry(path.to_path_buf())
            .or_default()
            .data
            .extend_from_slice(data);
        Ok(())
    }

    async fn sync(&self, path: &Path) -> io::Result<()> {
        let mut state = self.writable()?;
        state.syncs += 1;
        let file = state.files.get_mut(path).ok_or_else(|| not_found(path))?;
        file.durable = file.data.len();
        Ok(())
    }

    async fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut state = self.writable()?;
        state.syncs += 1;
        let file = File {
            data: data.to_vec(),
            durable: data.len(),
        };
        state.files.insert(path.to_path_buf(), file);
        Ok(())
    }

    async fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.writable()?;
        let file = state.files.get_mut(path).ok_or_else(|| not_found(path))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        file.data.truncate(len);
        file.durable = file.durable.min(file.data.len());
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.writable()?;
        let file = state.files.remove(from).ok_or_else(|| not_found(from))?;
        state.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.writable()?;
        state.files.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }
}
