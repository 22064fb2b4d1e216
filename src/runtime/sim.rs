//! The simulation host: madsim's virtual clock, tasks, seeded randomness and simulated TCP.
//! Everything is driven by the simulation seed. A simulated member runs the production server
//! on it (with the in-memory `SimDisk`); the simulator drives the network's faults through
//! madsim.
// A runtime implementation. Time comes from madsim's own clock handle, never from std's
// clocks: madsim virtualises those only when its libc interposition takes, which is not
// guaranteed on every toolchain.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use madsim::rand::RngCore;

use super::{Host, Listener};
use crate::timestamp::Timestamp;

/// One simulated machine: madsim's virtual clock (plus this machine's clock error), its tasks,
/// its seeded randomness and its simulated TCP.
#[derive(Clone)]
pub struct SimHost {
    /// This machine's clock error, added to the simulation's wall clock; shared so that a
    /// fault can move the clock while the member runs.
    skew_nanos: Arc<AtomicI64>,
}

impl SimHost {
    pub fn new(skew: Duration) -> SimHost {
        SimHost {
            skew_nanos: Arc::new(AtomicI64::new(i64::try_from(skew.as_nanos()).unwrap_or(0))),
        }
    }

    /// Moves this machine's wall clock by `by` nanoseconds (either way); timers, which run on
    /// the monotonic clock, are not affected, as on a real machine.
    pub fn jump_clock(&self, by: i64) {
        self.skew_nanos.fetch_add(by, Ordering::Relaxed);
    }

    pub fn skew_nanos(&self) -> i64 {
        self.skew_nanos.load(Ordering::Relaxed)
    }
}

impl Host for SimHost {
    type Stream = SimStream;
    type Listener = madsim::net::TcpListener;

    fn now(&self) -> Timestamp {
        let wall = madsim::time::TimeHandle::current().now_time();
        #[allow(clippy::disallowed_types)] // madsim's virtual wall clock comes as a SystemTime
        let nanos = wall
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        Timestamp::from_unix_nanos(nanos).saturating_add_nanos(self.skew_nanos())
    }

    fn elapsed(&self) -> Duration {
        madsim::time::TimeHandle::current().elapsed()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        madsim::time::sleep(duration)
    }

    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        madsim::task::spawn(task);
    }

    fn random_u64(&self) -> u64 {
        madsim::rand::thread_rng().next_u64()
    }

    async fn listen(&self, address: &str) -> io::Result<madsim::net::TcpListener> {
        madsim::net::TcpListener::bind(address).await
    }

    async fn connect(&self, address: &str) -> io::Result<SimStream> {
        madsim::net::TcpStream::connect(address)
            .await
            .map(SimStream::new)
    }
}

impl Listener for madsim::net::TcpListener {
    type Stream = SimStream;

    async fn accept(&self) -> io::Result<SimStream> {
        madsim::net::TcpListener::accept(self)
            .await
            .map(|(stream, _)| SimStream::new(stream))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        madsim::net::TcpListener::local_addr(self)
    }
}

/// A simulated TCP stream. madsim's stream sends one packet per flush, even an empty one, and
/// its packets are delivered one after another, each after its own latency; hyper flushes
/// often, so empty packets would pile up behind each other and every request on a long-lived
/// connection would wait longer than the last. Here a flush with nothing written sends nothing.
pub struct SimStream {
    inner: madsim::net::TcpStream,
    unflushed: bool,
}

impl SimStream {
    fn new(inner: madsim::net::TcpStream) -> SimStream {
        SimStream {
            inner,
            unflushed: false,
        }
    }
}

impl tokio::io::AsyncRead for SimStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SimStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        self.unflushed |= !data.is_empty();
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if !self.unflushed {
            return std::task::Poll::Ready(Ok(()));
        }
        let flushed = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        if flushed.is_ready() {
            self.unflushed = false;
        }
        flushed
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
