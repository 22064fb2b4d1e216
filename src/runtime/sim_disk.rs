//! A disk in memory that remembers what is durable. Every file has what reads see, what a
//! `sync` made durable, and the 512-byte sectors written since; `crash` keeps the durable image
//! plus any subset (or a prefix) of those sectors and of the unsynced length change, which is
//! what a power cut can leave: a sector reaches the platter whole or not at all, in no
//! particular order. A file never synced may vanish. It can also be told to fail every
//! operation, as a dying disk does, or to have only so much room left: then a write that
//! needs more new blocks than that fails with ENOSPC and changes nothing, while reads,
//! overwrites and removals go on.
//!
//! A file's length may run far past the bytes ever written (a preallocated log segment): only
//! written bytes are stored, the rest reads as zeros.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use super::Disk;

/// What a crash keeps or loses whole.
pub const SECTOR: u64 = 512;

#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, File>,
    dirs: BTreeSet<PathBuf>,
    failing: bool,
    /// Bytes of new blocks that may still be written; `None` for no limit.
    room: Option<u64>,
    syncs: u64,
    refused: u64,
    latency: Latency,
}

/// What kind of work a disk operation is, for a latency model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskOp {
    /// Reading a file or a directory.
    Read,
    /// Writing into the page cache (not durable).
    Write,
    /// Anything that waits for the platter: sync, atomic writes, renames, removals.
    Sync,
}

/// A wait before an operation takes effect, on the caller's clock.
pub type Delay = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long operations take: none when unset, so the disk answers at once.
#[derive(Clone, Default)]
struct Latency(Option<Arc<dyn Fn(DiskOp) -> Option<Delay> + Send + Sync>>);

impl fmt::Debug for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Latency(model)"
        } else {
            "Latency(none)"
        })
    }
}

/// A file's content: `bytes`, then zeros up to `len`.
#[derive(Clone, Debug, Default)]
struct Image {
    bytes: Vec<u8>,
    len: u64,
}

fn index(offset: u64) -> usize {
    usize::try_from(offset).expect("a simulated file fits in memory")
}

impl Image {
    fn write(&mut self, offset: u64, data: &[u8]) {
        let (start, end) = (index(offset), index(offset) + data.len());
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[start..end].copy_from_slice(data);
        self.len = self.len.max(end as u64);
    }

    fn set_len(&mut self, len: u64) {
        self.len = len;
        self.bytes.truncate(index(len));
    }

    fn contents(&self) -> Vec<u8> {
        let mut out = vec![0; index(self.len)];
        out[..self.bytes.len()].copy_from_slice(&self.bytes);
        out
    }

    /// Makes one sector as it is in `from` (whatever the lengths; `set_len` clips after).
    fn copy_sector(&mut self, from: &Image, sector: u64) {
        let start = index(sector * SECTOR);
        let end = start + index(SECTOR);
        let have = from.bytes.len().clamp(start, end);
        if self.bytes.len() < have {
            self.bytes.resize(have, 0);
        }
        self.bytes[start..have].copy_from_slice(&from.bytes[start..have]);
        let stale = self.bytes.len().min(end);
        if stale > have {
            self.bytes[have..stale].fill(0);
        }
    }
}

#[derive(Clone, Debug, Default)]
struct File {
    /// What reads see.
    now: Image,
    /// What a crash keeps for sure; `None` until the first sync makes the file itself durable.
    durable: Option<Image>,
    /// Sectors written since the last sync.
    dirty: BTreeSet<u64>,
}

impl File {
    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.now.write(offset, data);
        let last = offset + data.len() as u64 - 1;
        self.dirty.extend(offset / SECTOR..=last / SECTOR);
    }

    fn sync(&mut self) {
        let durable = self.durable.get_or_insert_with(Image::default);
        for &sector in &self.dirty {
            durable.copy_sector(&self.now, sector);
        }
        durable.set_len(self.now.len);
        self.dirty.clear();
    }

    /// The unsynced changes a crash may keep or lose: the file's creation, its length, then
    /// each sector written.
    fn unsynced(&self) -> usize {
        usize::from(self.durable.is_none())
            + usize::from(self.durable.as_ref().map_or(0, |d| d.len) != self.now.len)
            + self.dirty.len()
    }

    /// What is left after a crash, `keep` deciding for each unsynced change in the order of
    /// `unsynced`; `None` when the file is gone.
    fn crashed(&self, keep: &mut dyn FnMut() -> bool) -> Option<Image> {
        let mut image = match &self.durable {
            Some(durable) => durable.clone(),
            None if keep() => Image::default(),
            None => return None,
        };
        let len = if image.len != self.now.len && keep() {
            self.now.len
        } else {
            image.len
        };
        for &sector in &self.dirty {
            if keep() {
                image.copy_sector(&self.now, sector);
            }
        }
        image.set_len(len);
        Some(image)
    }
}

fn eio() -> io::Error {
    io::Error::other("simulated disk failure (EIO)")
}

impl State {
    /// Takes `bytes` of new blocks, or fails with ENOSPC and takes nothing.
    fn take_room(&mut self, bytes: u64) -> io::Result<()> {
        match &mut self.room {
            Some(room) if bytes > *room => Err(no_space()),
            Some(room) => {
                *room -= bytes;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn no_space() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "simulated disk full (ENOSPC)")
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

    /// An independent copy of everything on this disk, synced or not.
    pub fn fork(&self) -> SimDisk {
        let state = self.state();
        SimDisk {
            state: Arc::new(Mutex::new(State {
                files: state.files.clone(),
                dirs: state.dirs.clone(),
                failing: state.failing,
                room: state.room,
                syncs: state.syncs,
                refused: state.refused,
                latency: state.latency.clone(),
            })),
        }
    }

    /// How many operations failed because the disk was failing.
    pub fn refused_count(&self) -> u64 {
        self.state().refused
    }

    /// A power cut that keeps, of each file's unsynced changes (its creation if it was never
    /// synced, a change of its length, then each sector written, in address order),
    /// `keep(count)` from the first: `|_| 0` loses everything unsynced, `|n| n` nothing.
    pub fn crash(&self, mut keep: impl FnMut(usize) -> usize) {
        let left = std::cell::Cell::new(0);
        self.crash_with(&mut |unsynced| left.set(keep(unsynced)), &mut || {
            let n = left.get();
            left.set(n.saturating_sub(1));
            n > 0
        });
    }

    /// A power cut that keeps each unsynced change (as in `crash`) for which `keep()` says so:
    /// sectors reach the disk in any order.
    pub fn crash_scattered(&self, mut keep: impl FnMut() -> bool) {
        self.crash_with(&mut |_| {}, &mut keep);
    }

    /// `next_file` hears how many unsynced changes the next file has before `keep` is asked
    /// about each.
    fn crash_with(&self, next_file: &mut dyn FnMut(usize), keep: &mut dyn FnMut() -> bool) {
        let mut state = self.state();
        let mut gone = Vec::new();
        for (path, file) in state.files.iter_mut() {
            next_file(file.unsynced());
            match file.crashed(keep) {
                Some(image) => {
                    *file = File {
                        now: image.clone(),
                        durable: Some(image),
                        dirty: BTreeSet::new(),
                    }
                }
                None => gone.push(path.clone()),
            }
        }
        for path in gone {
            state.files.remove(&path);
        }
    }

    /// From now on every operation fails with EIO (until `set_failing(false)`).
    pub fn set_failing(&self, failing: bool) {
        self.state().failing = failing;
    }

    /// Leaves `room` bytes of new blocks (`None`: no limit). A write that needs more (past
    /// what a file holds, or a new file's content) fails with ENOSPC and changes nothing. A
    /// sparse `allocate` needs none, like the real one; removing a file frees nothing.
    pub fn set_room(&self, room: Option<u64>) {
        self.state().room = room;
    }

    /// How many syncs have been issued (to check group commit).
    pub fn sync_count(&self) -> u64 {
        self.state().syncs
    }

    /// Flips one bit of a file's content, durably, for corruption tests.
    pub fn corrupt(&self, path: &Path, offset: usize) {
        if let Some(file) = self.state().files.get_mut(path) {
            let offset = offset as u64;
            if offset >= file.now.len {
                return;
            }
            for image in std::iter::once(&mut file.now).chain(file.durable.as_mut()) {
                if offset < image.len {
                    let old = image.bytes.get(index(offset)).copied().unwrap_or(0);
                    image.write(offset, &[old ^ 0x40]);
                }
            }
        }
    }

    /// Makes every operation wait for what `model` says first (the simulator's clock): an
    /// operation takes effect only when its wait ends, so a crash during it finds it not done.
    pub fn set_latency(&self, model: impl Fn(DiskOp) -> Option<Delay> + Send + Sync + 'static) {
        self.state().latency = Latency(Some(Arc::new(model)));
    }

    async fn wait(&self, op: DiskOp) {
        let delay = {
            let state = self.state();
            state.latency.0.as_ref().and_then(|model| model(op))
        };
        if let Some(delay) = delay {
            delay.await;
        }
    }

    /// The files under `dir` (at any depth) and how many bytes of each were ever written
    /// (a preallocated tail not counted): where damage at rest can land.
    pub fn written_under(&self, dir: &Path) -> Vec<(PathBuf, usize)> {
        self.state()
            .files
            .iter()
            .filter(|(path, file)| path.starts_with(dir) && !file.now.bytes.is_empty())
            .map(|(path, file)| (path.clone(), file.now.bytes.len()))
            .collect()
    }

    /// A file's length as reads see it.
    pub fn len(&self, path: &Path) -> Option<usize> {
        self.state().files.get(path).map(|f| index(f.now.len))
    }
}

impl Disk for SimDisk {
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.wait(DiskOp::Sync).await;
        let mut state = self.writable()?;
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.wait(DiskOp::Read).await;
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
        self.wait(DiskOp::Read).await;
        let state = self.writable()?;
        state
            .files
            .get(path)
            .map(|f| f.now.contents())
            .ok_or_else(|| not_found(path))
    }

    async fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.wait(DiskOp::Write).await;
        let mut state = self.writable()?;
        let held = state
            .files
            .get(path)
            .map_or(0, |f| f.now.bytes.len() as u64);
        let end = offset + data.len() as u64;
        state.take_room(if data.is_empty() {
            0
        } else {
            end.saturating_sub(held)
        })?;
        let file = state.files.entry(path.to_path_buf()).or_default();
        file.write(offset, data);
        Ok(())
    }

    async fn allocate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.wait(DiskOp::Write).await;
        let mut state = self.writable()?;
        let file = state.files.entry(path.to_path_buf()).or_default();
        if file.now.len < len {
            file.now.len = len;
        }
        Ok(())
    }

    async fn sync(&self, path: &Path) -> io::Result<()> {
        self.wait(DiskOp::Sync).await;
        let mut state = self.writable()?;
        state.syncs += 1;
        let file = state.files.get_mut(path).ok_or_else(|| not_found(path))?;
        file.sync();
        Ok(())
    }

    async fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.wait(DiskOp::Sync).await;
        let mut state = self.writable()?;
        state.take_room(data.len() as u64)?;
        state.syncs += 1;
        let mut file = File::default();
        file.write(0, data);
        file.sync();
        state.files.insert(path.to_path_buf(), file);
        Ok(())
    }

    async fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.wait(DiskOp::Sync).await;
        let mut state = self.writable()?;
        let file = state.files.get_mut(path).ok_or_else(|| not_found(path))?;
        file.now.set_len(len);
        // Like the real one, which syncs the file after cutting it.
        file.sync();
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.wait(DiskOp::Sync).await;
        let mut state = self.writable()?;
        let file = state.files.remove(from).ok_or_else(|| not_found(from))?;
        state.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.wait(DiskOp::Sync).await;
        let mut state = self.writable()?;
        state.files.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn now<T>(f: impl std::future::Future<Output = T>) -> T {
        f.now_or_never().expect("the simulated disk never waits")
    }

    fn path() -> &'static Path {
        Path::new("/d/f")
    }

    #[test]
    fn a_long_file_stores_only_what_was_written() {
        let disk = SimDisk::new();
        now(disk.allocate(path(), 64 << 20)).unwrap();
        now(disk.write_at(path(), 10, b"abc")).unwrap();
        assert_eq!(disk.len(path()), Some(64 << 20));
        assert_eq!(disk.state().files[path()].now.bytes.len(), 13);
        let bytes = now(disk.read(path())).unwrap();
        assert_eq!(&bytes[8..14], b"\0\0abc\0");
    }

    #[test]
    fn a_crash_keeps_synced_bytes_and_whole_sectors_of_the_rest() {
        let disk = SimDisk::new();
        now(disk.allocate(path(), 4 * SECTOR)).unwrap();
        now(disk.write_at(path(), 0, &[1; 100])).unwrap();
        now(disk.sync(path())).unwrap();
        now(disk.write_at(path(), 100, &[2; 1000])).unwrap(); // sectors 0, 1 and 2
        let mut coin = [true, false, true].into_iter();
        disk.crash_scattered(|| coin.next().unwrap());
        let bytes = now(disk.read(path())).unwrap();
        assert_eq!(bytes.len(), 4 * 512);
        assert_eq!(bytes[..100], [1; 100]);
        assert_eq!(bytes[100..512], [2; 412]);
        assert_eq!(bytes[512..1024], [0; 512]);
        assert_eq!(bytes[1024..1100], [2; 76]);
        assert_eq!(bytes[1100..], [0; 948]);
    }

    #[test]
    fn an_unsynced_length_change_may_be_lost_but_a_synced_one_never() {
        let disk = SimDisk::new();
        now(disk.allocate(path(), 1000)).unwrap();
        now(disk.sync(path())).unwrap();
        now(disk.allocate(path(), 5000)).unwrap();
        now(disk.write_at(path(), 1000, &[7; 600])).unwrap();
        disk.crash(|_| 0);
        assert_eq!(disk.len(path()), Some(1000));
        assert!(now(disk.read(path())).unwrap().iter().all(|&b| b == 0));
        disk.crash(|n| n);
        assert_eq!(disk.len(path()), Some(1000));
    }

    #[test]
    fn a_file_never_synced_may_vanish() {
        let disk = SimDisk::new();
        now(disk.write_at(path(), 0, b"x")).unwrap();
        disk.crash(|_| 0);
        assert_eq!(disk.len(path()), None);
        now(disk.write_at(path(), 0, b"x")).unwrap();
        disk.crash(|n| n);
        assert_eq!(now(disk.read(path())).unwrap(), b"x");
    }

    #[test]
    fn a_crash_keeping_a_prefix_keeps_the_first_sectors() {
        let disk = SimDisk::new();
        now(disk.allocate(path(), 4 * SECTOR)).unwrap();
        now(disk.sync(path())).unwrap();
        now(disk.write_at(path(), 0, &[3; 2048])).unwrap();
        disk.crash(|n| {
            assert_eq!(n, 4);
            2
        });
        let bytes = now(disk.read(path())).unwrap();
        assert_eq!(bytes[..1024], [3; 1024]);
        assert_eq!(bytes[1024..], [0; 1024]);
    }
}
