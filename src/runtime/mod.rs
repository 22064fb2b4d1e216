//! The one seam between the node and the world: disk today; clock, timers, tasks, the peer
//! network and randomness join it with the replicated node. Production implements it on the
//! real file system and tokio; the simulator on memory and madsim.

mod fs_disk;
mod sim_disk;

use std::future::Future;
use std::io;
use std::path::Path;

pub use fs_disk::FsDisk;
pub use sim_disk::SimDisk;

/// Durable storage as the WAL and snapshots need it. Appends are not durable until `sync`;
/// `write_atomic` is durable when it returns (write aside, sync, rename, sync the directory).
pub trait Disk: Clone + Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> impl Future<Output = io::Result<()>> + Send;
    /// The names of the plain files in `dir`, sorted.
    fn list(&self, dir: &Path) -> impl Future<Output = io::Result<Vec<String>>> + Send;
    fn read(&self, path: &Path) -> impl Future<Output = io::Result<Vec<u8>>> + Send;
    /// Appends to a file, creating it when missing.
    fn append(&self, path: &Path, data: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Makes everything written to `path` so far (and its existence) durable.
    fn sync(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send;
    fn write_atomic(&self, path: &Path, data: &[u8])
        -> impl Future<Output = io::Result<()>> + Send;
    fn truncate(&self, path: &Path, len: u64) -> impl Future<Output = io::Result<()>> + Send;
    fn rename(&self, from: &Path, to: &Path) -> impl Future<Output = io::Result<()>> + Send;
    fn remove(&self, path: &Path) -> impl Future<Output = io::Result<()>> + Send;
}
