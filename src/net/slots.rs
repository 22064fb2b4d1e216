//! A listener's connection slots. At most `max` connections are open; when a new one finds them
//! all taken, the oldest connection that is idle (no request in progress, or none sent yet) is
//! closed to make room, and only when every connection is busy is the new one refused. Idle
//! sockets, handshaken or not, so cannot lock clients out (etcd 3.4 has no cap at all; a cap
//! that refused new connections let 8,192 idle sockets keep everyone else out). TLS handshakes
//! in progress are held in slots of their own, never busy, so the oldest gives way.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};

use super::Body;
use crate::sync::Flag;

/// One open connection: its requests in progress, and the flag that closes it.
#[derive(Debug, Default)]
pub struct Slot {
    busy: AtomicUsize,
    close: Flag,
}

impl Slot {
    /// Resolves when the slot is taken back for a newer connection.
    pub async fn closed(&self) {
        self.close.raised().await
    }

    /// Whether the slot was taken back.
    #[cfg(test)]
    pub fn is_closed(&self) -> bool {
        self.close.is_raised()
    }

    /// Counts `response` as in progress until its body is sent or dropped.
    pub fn track(self: &Arc<Self>, response: hyper::Response<Body>) -> hyper::Response<Body> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        let slot = Arc::clone(self);
        response.map(|body| Tracked { body, slot }.boxed())
    }
}

/// A response body that keeps its connection busy until it is done.
struct Tracked {
    body: Body,
    slot: Arc<Slot>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.slot.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The open connections, oldest first.
#[derive(Default)]
pub struct Slots {
    open: Mutex<Open>,
}

/// The last connection's number, and the open connections by number.
type Open = (u64, VecDeque<(u64, Arc<Slot>)>);

impl Slots {
    /// A slot for a new connection, making room by closing the oldest idle one when `max` are
    /// open; `None` when every open connection is busy. Never more than `max` slots.
    pub fn take(&self, max: usize) -> Option<(u64, Arc<Slot>)> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (next, slots) = &mut *open;
        if slots.len() >= max {
            let idle = slots
                .iter()
                .position(|(_, slot)| slot.busy.load(Ordering::SeqCst) == 0)?;
            if let Some((_, slot)) = slots.remove(idle) {
                slot.close.raise();
            }
        }
        *next += 1;
        let slot = Arc::new(Slot::default());
        slots.push_back((*next, Arc::clone(&slot)));
        Some((*next, slot))
    }

    /// The connection is gone.
    pub fn give_back(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = open.1.iter().position(|(i, _)| *i == id) {
            open.1.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_connection_makes_room_and_busy_ones_are_kept() {
        let slots = Slots::default();
        let (_, first) = slots.take(2).expect("room");
        let (_, second) = slots.take(2).expect("room");
        // The first is busy (a watch, say): the second, idle, makes room.
        let answer = first.track(hyper::Response::new(crate::net::full("x")));
        let (third_id, third) = slots.take(2).expect("room made");
        assert!(second.is_closed() && !first.is_closed());
        // Both busy now: a new connection is refused.
        let busy = third.track(hyper::Response::new(crate::net::full("y")));
        assert!(slots.take(2).is_none());
        // Done with the first answer: its connection is idle again, and makes room.
        drop(answer);
        assert!(slots.take(2).is_some());
        assert!(first.is_closed());
        drop(busy);
        slots.give_back(third_id);
    }
}
