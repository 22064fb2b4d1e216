//! Signals between tasks that stay deterministic under simulation.
//!
//! tokio's `watch` channel spreads its waiters over eight queues, picked by a thread-local
//! random number seeded from a process-wide counter. Which waiter wakes first then depends on
//! whatever ran earlier in the process, so a seed ran differently after other seeds than alone
//! (madsim's determinism check found it: a member stopping on a failed disk woke its waiters
//! in another order). [`Flag`] is built on `Notify`, which wakes waiters in the order they
//! began to wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// A flag that is raised once and stays raised; raising it wakes everyone waiting.
#[derive(Debug, Default)]
pub struct Flag {
    raised: AtomicBool,
    notify: Notify,
}

impl Flag {
    pub fn new() -> Flag {
        Flag::default()
    }

    pub fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Resolves once the flag is raised (at once if it is). Cancel-safe.
    pub async fn raised(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a raise in between is not missed.
            notified.as_mut().enable();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }
}

/// Raises its flag when dropped: whoever waits on the flag learns that the owner is gone.
#[derive(Debug)]
pub struct RaiseOnDrop(pub Arc<Flag>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.raise();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_raised_flag_wakes_every_waiter_and_stays_raised() {
        let flag = Flag::new();
        let waiting = futures_util::future::join_all((0..3).map(|_| flag.raised()));
        let raising = async {
            tokio::task::yield_now().await;
            assert!(!flag.is_raised());
            flag.raise();
        };
        tokio::join!(waiting, raising);
        flag.raised().await;
        let dropped = Arc::new(Flag::new());
        drop(RaiseOnDrop(Arc::clone(&dropped)));
        assert!(dropped.is_raised());
    }
}
