//! The production runtime: tokio's clock, timers and tasks, the real file system.
// The one place that reads the real clocks and the OS random source.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raft::eraftpb::Message;

use super::{FsDisk, Runtime, Transport};
use crate::timestamp::Timestamp;

pub struct TokioRuntime<N: Transport = NoPeers> {
    origin: Instant,
    disk: FsDisk,
    net: Arc<N>,
}

impl<N: Transport> Clone for TokioRuntime<N> {
    fn clone(&self) -> Self {
        TokioRuntime {
            origin: self.origin,
            disk: self.disk.clone(),
            net: Arc::clone(&self.net),
        }
    }
}

impl<N: Transport> TokioRuntime<N> {
    pub fn new(net: N) -> Self {
        TokioRuntime {
            origin: Instant::now(),
            disk: FsDisk::default(),
            net: Arc::new(net),
        }
    }
}

impl<N: Transport> Runtime for TokioRuntime<N> {
    type Disk = FsDisk;
    type Net = N;

    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_unix_nanos(i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX))
    }

    fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep(duration)
    }

    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(task);
    }

    fn random_u64(&self) -> u64 {
        rand::random()
    }

    fn disk(&self) -> &FsDisk {
        &self.disk
    }

    fn net(&self) -> &N {
        &self.net
    }
}

/// A network with no other members: a single-member cluster sends nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&self, _message: Message) {}
}
