//! An outgoing batch's body, handed to hyper a piece at a time so the lane can tell a large
//! snapshot that is still moving from one that has stalled.
//!
//! A snapshot may be large and a link slow, so no total deadline suits every send; etcd's rule
//! is that each write must make progress (its peer connections time out a write after 5 s).
//! The lane counts what hyper has taken: while bytes keep going, the send goes on; when
//! nothing has gone for a while, or the whole body has gone and no answer comes, it fails, and
//! the lane reports it — so raft always hears how a snapshot went, and never from a guess.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use crate::runtime::Host;

/// The piece handed to hyper at a time: small enough that a slow link shows progress often.
const PIECE: usize = 64 << 10;

/// A body that records how many of its bytes hyper has taken.
pub struct CountedBody {
    rest: Bytes,
    taken: Arc<AtomicUsize>,
}

/// How much of a `CountedBody` has been taken, seen from the lane.
#[derive(Clone)]
pub struct Taken {
    taken: Arc<AtomicUsize>,
    total: usize,
}

impl CountedBody {
    pub fn new(body: Bytes) -> (CountedBody, Taken) {
        let taken = Arc::new(AtomicUsize::new(0));
        let total = body.len();
        (
            CountedBody {
                rest: body,
                taken: Arc::clone(&taken),
            },
            Taken { taken, total },
        )
    }
}

impl hyper::body::Body for CountedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.rest.len().min(PIECE);
        let piece = self.rest.split_to(n);
        self.taken.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

impl Taken {
    /// Returns once the send has stalled: no byte taken for `stall`, or every byte taken and
    /// still no answer after `answer`. Never returns while bytes keep moving.
    pub async fn stalled<H: Host>(&self, host: &H, stall: Duration, answer: Duration) {
        let mut before = None;
        loop {
            let now = self.taken.load(Ordering::Relaxed);
            if now >= self.total {
                host.sleep(answer).await;
                return;
            }
            if before == Some(now) {
                return;
            }
            before = Some(now);
            host.sleep(stall).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_body_arrives_whole_and_counts_what_was_taken() {
        let data: Vec<u8> = (0..(3 * PIECE + 17)).map(|i| i as u8).collect();
        let (body, taken) = CountedBody::new(Bytes::from(data.clone()));
        assert_eq!(taken.taken.load(Ordering::Relaxed), 0);
        let got = body.collect().await.expect("infallible").to_bytes();
        assert_eq!(got.as_ref(), data.as_slice());
        assert_eq!(taken.taken.load(Ordering::Relaxed), data.len());
    }
}
