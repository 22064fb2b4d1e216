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
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
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
    /// The machine's open connections, so that a fault can reset them all.
    streams: Arc<Mutex<Vec<Weak<Mutex<Connection>>>>>,
    /// While not zero, a connection that has carried this many bytes is reset (a large
    /// request, a snapshot, breaks in the middle).
    byte_limit: Arc<std::sync::atomic::AtomicU64>,
    /// While set, the wall clock runs fast or slow by this many parts per million, since
    /// the monotonic instant given.
    drift: Arc<Mutex<Option<(Duration, i64)>>>,
    /// The machine's timer events its sleeps wait on (see `SimSleep`).
    anchors: Arc<Mutex<Anchors>>,
}

impl SimHost {
    pub fn new(skew: Duration) -> SimHost {
        SimHost {
            skew_nanos: Arc::new(AtomicI64::new(i64::try_from(skew.as_nanos()).unwrap_or(0))),
            streams: Arc::default(),
            byte_limit: Arc::default(),
            drift: Arc::default(),
            anchors: Arc::default(),
        }
    }

    /// Makes the wall clock run `ppm` parts per million fast (or slow, below zero) from
    /// now; zero stops the drift, keeping the error it built up (as `skew_nanos` shows).
    pub fn set_drift(&self, ppm: i64) {
        let now = self.elapsed();
        let mut drift = self.drift.lock().unwrap_or_else(|e| e.into_inner());
        self.skew_nanos
            .fetch_add(drifted(*drift, now), Ordering::Relaxed);
        *drift = (ppm != 0).then_some((now, ppm));
    }

    /// From now on (until set to zero) connections are reset once they have carried `limit`
    /// bytes either way.
    pub fn reset_connections_after(&self, limit: u64) {
        self.byte_limit.store(limit, Ordering::Relaxed);
    }

    /// Resets every connection the machine has open, whatever it is in the middle of: both
    /// ends see the connection fail, as after a TCP reset.
    pub fn reset_connections(&self) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        for connection in streams.drain(..).filter_map(|weak| weak.upgrade()) {
            let mut connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            connection.stream = None; // the peer reads the end of the stream
            if let Some(waker) = connection.reader.take() {
                waker.wake();
            }
        }
    }

    fn track(&self, stream: madsim::net::TcpStream) -> SimStream {
        let connection = Arc::new(Mutex::new(Connection {
            stream: Some(stream),
            reader: None,
            carried: 0,
            byte_limit: Arc::clone(&self.byte_limit),
        }));
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|weak| weak.strong_count() > 0);
        streams.push(Arc::downgrade(&connection));
        SimStream {
            connection,
            unflushed: false,
        }
    }

    /// Moves this machine's wall clock by `by` nanoseconds (either way); timers, which run on
    /// the monotonic clock, are not affected, as on a real machine.
    pub fn jump_clock(&self, by: i64) {
        self.skew_nanos.fetch_add(by, Ordering::Relaxed);
    }

    /// The wall clock's error now, in nanoseconds (a jump and any drift so far).
    pub fn skew_nanos(&self) -> i64 {
        let drift = *self.drift.lock().unwrap_or_else(|e| e.into_inner());
        self.skew_nanos.load(Ordering::Relaxed) + drifted(drift, self.elapsed())
    }
}

/// The error a drift has built up by `now`.
fn drifted(drift: Option<(Duration, i64)>, now: Duration) -> i64 {
    drift.map_or(0, |(since, ppm)| {
        let run = i64::try_from(now.saturating_sub(since).as_nanos()).unwrap_or(i64::MAX);
        run.saturating_mul(ppm) / 1_000_000
    })
}

impl Host for SimHost {
    type Stream = SimStream;
    type Listener = SimListener;

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
        SimSleep {
            deadline: madsim::time::TimeHandle::current().now_instant() + duration,
            anchors: Arc::clone(&self.anchors),
            waiting: None,
        }
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

    async fn listen(&self, address: &str) -> io::Result<SimListener> {
        let inner = madsim::net::TcpListener::bind(address).await?;
        Ok(SimListener {
            inner,
            host: self.clone(),
        })
    }

    async fn connect(&self, address: &str) -> io::Result<SimStream> {
        let stream = madsim::net::TcpStream::connect(address).await?;
        Ok(self.track(stream))
    }
}

// madsim's clock speaks in `std::time::Instant`s; they are only compared with each other here.
#[allow(clippy::disallowed_types)]
type SimInstant = std::time::Instant;

/// A sleep on madsim's clock that is cheap for the simulation to keep track of.
///
/// madsim's own `Sleep` adds an event to the simulation's timer heap at every poll that finds
/// it pending, and the event stays there until its deadline even when the sleep is long gone.
/// Most sleeps are deadlines that never fire: hyper's 30 s header-read timeout, set anew for
/// every request a connection serves, and the timeouts around requests and body reads. The
/// heap held tens of thousands of dead events, and keeping it ordered was a tenth of the
/// simulator's time. So a sleep waits on one of its machine's `Anchors` instead: an event
/// already in the heap at most a quarter of the sleep's remaining time before its deadline,
/// or a new one at the deadline when there is none. When an anchor fires before a sleep's
/// deadline, it wakes the sleep's task (a spurious wake, which futures allow), and the sleep
/// waits again from there. Time is not rounded: a sleep is done exactly at its deadline.
struct SimSleep {
    deadline: SimInstant,
    anchors: Arc<Mutex<Anchors>>,
    /// The task to wake and the anchor it waits on; `None` until the first pending poll.
    waiting: Option<(Arc<Waiting>, Arc<Anchor>)>,
}

/// The task a sleep wakes; emptied when the sleep is dropped.
struct Waiting(Mutex<Option<std::task::Waker>>);

/// A machine's timer events in madsim's heap that sleeps can still wait on, by deadline.
#[derive(Default)]
pub(crate) struct Anchors(std::collections::BTreeMap<SimInstant, Arc<Anchor>>);

/// One timer event in madsim's heap and the sleeps waiting on it.
struct Anchor {
    deadline: SimInstant,
    anchors: Weak<Mutex<Anchors>>,
    fired: std::sync::atomic::AtomicBool,
    waiting: Mutex<Vec<Weak<Waiting>>>,
}

impl std::task::Wake for Anchor {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Relaxed);
        if let Some(anchors) = self.anchors.upgrade() {
            let mut anchors = anchors.lock().unwrap_or_else(|e| e.into_inner());
            if anchors
                .0
                .get(&self.deadline)
                .is_some_and(|anchor| Arc::ptr_eq(anchor, self))
            {
                anchors.0.remove(&self.deadline);
            }
        }
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()));
        for waiting in waiting.iter().filter_map(Weak::upgrade) {
            let waker = waiting.0.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl SimSleep {
    /// Waits on an anchor at most a quarter of the remaining time early, or a new one.
    fn anchor(&self, now: SimInstant, waiting: &Arc<Waiting>) -> Arc<Anchor> {
        let earliest = self.deadline - (self.deadline - now) / 4;
        let mut anchors = self.anchors.lock().unwrap_or_else(|e| e.into_inner());
        let found = anchors
            .0
            .range(earliest..=self.deadline)
            .next_back()
            .map(|(_, anchor)| Arc::clone(anchor));
        let anchor = found.unwrap_or_else(|| {
            let anchor = Arc::new(Anchor {
                deadline: self.deadline,
                anchors: Arc::downgrade(&self.anchors),
                fired: Default::default(),
                waiting: Mutex::default(),
            });
            anchors.0.insert(self.deadline, Arc::clone(&anchor));
            // madsim's sleep adds its event on this one poll; the event outlives it.
            let waker = std::task::Waker::from(Arc::clone(&anchor));
            let mut event = madsim::time::sleep_until(self.deadline);
            let _ = Pin::new(&mut event).poll(&mut Context::from_waker(&waker));
            anchor
        });
        let mut list = anchor.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() >= 64 && list.len().is_power_of_two() {
            list.retain(|waiting| waiting.strong_count() > 0);
        }
        list.push(Arc::downgrade(waiting));
        drop(list);
        anchor
    }
}

impl Future for SimSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = madsim::time::TimeHandle::current().now_instant();
        if now >= self.deadline {
            return Poll::Ready(());
        }
        if let Some((waiting, anchor)) = &self.waiting {
            let mut slot = waiting.0.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_mut() {
                Some(waker) => waker.clone_from(cx.waker()),
                None => *slot = Some(cx.waker().clone()),
            }
            drop(slot);
            if !anchor.fired.load(Ordering::Relaxed) {
                return Poll::Pending;
            }
        }
        // Not waiting yet, or woken early by an anchor that has fired: wait (again).
        let waiting = match self.waiting.take() {
            Some((waiting, _)) => waiting,
            None => Arc::new(Waiting(Mutex::new(Some(cx.waker().clone())))),
        };
        let anchor = self.anchor(now, &waiting);
        self.waiting = Some((waiting, anchor));
        Poll::Pending
    }
}

impl Drop for SimSleep {
    fn drop(&mut self) {
        if let Some((waiting, _)) = &self.waiting {
            waiting.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }
}

/// A listener on a simulated machine.
pub struct SimListener {
    inner: madsim::net::TcpListener,
    host: SimHost,
}

impl Listener for SimListener {
    type Stream = SimStream;

    async fn accept(&self) -> io::Result<(SimStream, SocketAddr)> {
        let (stream, from) = self.inner.accept().await?;
        Ok((self.host.track(stream), from))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A simulated TCP stream. madsim's stream sends one packet per flush, even an empty one, and
/// its packets are delivered one after another, each after its own latency; hyper flushes
/// often, so empty packets would pile up behind each other and every request on a long-lived
/// connection would wait longer than the last. Here a flush with nothing written sends nothing.
pub struct SimStream {
    connection: Arc<Mutex<Connection>>,
    unflushed: bool,
}

/// A connection's stream, which a reset takes away, and the task waiting to read from it.
struct Connection {
    stream: Option<madsim::net::TcpStream>,
    reader: Option<std::task::Waker>,
    /// Bytes read and written so far.
    carried: u64,
    byte_limit: Arc<std::sync::atomic::AtomicU64>,
}

impl Connection {
    /// Counts `bytes` more; past the machine's byte limit the connection is reset.
    fn carry(&mut self, bytes: usize) -> io::Result<()> {
        self.carried += bytes as u64;
        let limit = self.byte_limit.load(Ordering::Relaxed);
        if limit != 0 && self.carried > limit {
            self.stream = None;
            return Err(reset());
        }
        Ok(())
    }
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by peer")
}

impl SimStream {
    fn with<T>(
        &self,
        op: impl FnOnce(Pin<&mut madsim::net::TcpStream>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        match connection.stream.as_mut() {
            Some(stream) => op(Pin::new(stream)),
            None => Poll::Ready(Err(reset())),
        }
    }

    fn carry(&self, bytes: usize) -> io::Result<()> {
        self.connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .carry(bytes)
    }
}

impl tokio::io::AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        connection.reader = Some(cx.waker().clone());
        let before = buf.filled().len();
        let read = match connection.stream.as_mut() {
            Some(stream) => Pin::new(stream).poll_read(cx, buf),
            None => return Poll::Ready(Err(reset())),
        };
        match read {
            Poll::Ready(Ok(())) => Poll::Ready(connection.carry(buf.filled().len() - before)),
            other => other,
        }
    }
}

impl tokio::io::AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.unflushed |= !data.is_empty();
        match self.with(|stream| stream.poll_write(cx, data)) {
            Poll::Ready(Ok(n)) => Poll::Ready(self.carry(n).map(|()| n)),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.unflushed {
            return Poll::Ready(Ok(()));
        }
        let flushed = self.with(|stream| stream.poll_flush(cx));
        if flushed.is_ready() {
            self.unflushed = false;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|stream| stream.poll_shutdown(cx))
    }
}
