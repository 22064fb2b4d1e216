//! Reading a request body within limits: its size, how long it may take in all and between two
//! pieces, and, optionally, a memory budget it draws on as its bytes arrive. The client API and
//! the peer transport read every body through this, since a body is what a slow or hostile
//! sender can hold a connection (and memory) with.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

/// How one body is read.
pub struct BodyRead<'a> {
    /// The most bytes it may have.
    pub max: usize,
    /// Bytes taken from this budget as they arrive and held until the result is dropped, so
    /// that what all bodies read at once hold is bounded and a stalled sender holds only what
    /// it sent.
    pub budget: Option<&'a Semaphore>,
    /// How long the whole body may take.
    pub deadline: Duration,
    /// How long it may pause between two pieces.
    pub stall: Duration,
}

/// Why a body could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    TooSlow,
    Broken,
}

/// Budget bytes a body holds, returned when it is dropped.
pub struct Held<'a> {
    budget: Option<&'a Semaphore>,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(budget) = self.budget {
            budget.add_permits(self.bytes);
        }
    }
}

impl<'a> BodyRead<'a> {
    /// The whole body, with the budget it holds. `sleep` is the clock to time it by (the
    /// runtime's), so the same reading works wherever it runs.
    pub async fn read<S, F>(
        &self,
        mut body: hyper::body::Incoming,
        sleep: S,
    ) -> Result<(Bytes, Held<'a>), BodyError>
    where
        S: Fn(Duration) -> F,
        F: Future<Output = ()>,
    {
        let deadline = sleep(self.deadline);
        tokio::pin!(deadline);
        let mut held = Held {
            budget: self.budget,
            bytes: 0,
        };
        let mut out = bytes::BytesMut::new();
        loop {
            // `biased`: an unbiased select draws from a thread-local RNG. A piece that is
            // already there is taken before the stall timer is polled, which then never has
            // to be set.
            let frame = tokio::select! {
                biased;
                _ = &mut deadline => return Err(BodyError::TooSlow),
                frame = body.frame() => frame,
                _ = sleep(self.stall) => return Err(BodyError::TooSlow),
            };
            let frame = match frame {
                None => break,
                Some(Err(_)) => return Err(BodyError::Broken),
                Some(Ok(frame)) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if out.len() + data.len() > self.max {
                return Err(BodyError::TooLarge);
            }
            if let Some(budget) = self.budget {
                let n = u32::try_from(data.len()).map_err(|_| BodyError::TooLarge)?;
                let permit = tokio::select! {
                    biased;
                    _ = &mut deadline => return Err(BodyError::TooSlow),
                    permit = budget.acquire_many(n) => permit.map_err(|_| BodyError::Broken)?,
                };
                permit.forget();
                held.bytes += data.len();
            }
            out.extend_from_slice(&data);
        }
        Ok((out.freeze(), held))
    }
}
