//! hyper's timer on the host's clock, so hyper's own timeouts (the header read timeout) run on
//! simulated time in the simulator and on tokio's in production.
// hyper speaks in `std::time::Instant`s; here they are made from the host's clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::runtime::Host;

#[derive(Clone)]
pub struct HostTimer<H> {
    host: H,
    /// An arbitrary instant standing for the host's time zero. hyper speaks in `Instant`s;
    /// they are made from this and the host's clock, and only ever compared with each other.
    origin: Instant,
}

impl<H: Host> HostTimer<H> {
    pub fn new(host: H) -> HostTimer<H> {
        // Read once, as an origin only: no time is ever measured on the real clock here.
        let origin = Instant::now();
        HostTimer { host, origin }
    }
}

impl<H: Host> hyper::rt::Timer for HostTimer<H> {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HostSleep(Mutex::new(Box::pin(self.host.sleep(duration)))))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep(deadline.saturating_duration_since(self.now()))
    }

    fn now(&self) -> Instant {
        self.origin + self.host.elapsed()
    }
}

/// A host sleep as hyper wants it: `Sync` as well as `Send` (the mutex makes it so; it is
/// only ever locked by the one task polling it).
struct HostSleep(Mutex<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl Future for HostSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .poll(cx)
    }
}

impl hyper::rt::Sleep for HostSleep {}
