//! The simulation's clock: virtual time since the run began, read from madsim's own handle.

use std::time::Duration;

pub fn now() -> Duration {
    madsim::time::TimeHandle::current().elapsed()
}

/// Checks every `every` until `pending` finds nothing left, for at most `within`; `Err` holds
/// what was still pending when the time ran out.
pub async fn wait_until_none<T>(
    within: Duration,
    every: Duration,
    mut pending: impl FnMut() -> Vec<T>,
) -> Result<(), Vec<T>> {
    let deadline = now() + within;
    loop {
        let left = pending();
        if left.is_empty() {
            return Ok(());
        }
        if now() >= deadline {
            return Err(left);
        }
        madsim::time::sleep(every).await;
    }
}
