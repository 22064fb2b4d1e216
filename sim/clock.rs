//! The simulation's clock: virtual time since the run began, read from madsim's own handle.

use std::time::Duration;

pub fn now() -> Duration {
    madsim::time::TimeHandle::current().elapsed()
}
