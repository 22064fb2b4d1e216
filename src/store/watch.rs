//! Watchers and the event history they can look back into.
//!
//! One history ring holds the last `capacity` events of the whole keyspace (etcd's 1000 by
//! default). A watcher asking for an index older than the ring gets error 401. Watchers are fed
//! through bounded channels with `try_send`, so a slow watcher is dropped (its stream ends) and
//! can never block the store.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::event::Event;
use super::node::Node;
use super::path;
use crate::error::{Error, ErrorCode};

/// etcd's default event history size.
pub const DEFAULT_HISTORY_CAPACITY: usize = 1000;

/// Events a watcher may have queued before it counts as too slow and is dropped (etcd's 100).
const WATCHER_BUFFER: usize = 100;

/// Dead registrations (clients that went away) are swept once there are at least this many.
const SWEEP_MIN: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EventHistory {
    capacity: usize,
    events: VecDeque<Arc<Event>>,
}

impl EventHistory {
    pub fn new(capacity: usize) -> EventHistory {
        let capacity = capacity.max(1);
        EventHistory {
            capacity,
            events: VecDeque::with_capacity(capacity.min(DEFAULT_HISTORY_CAPACITY)),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn events(&self) -> impl Iterator<Item = &Arc<Event>> {
        self.events.iter()
    }

    pub fn push(&mut self, event: Arc<Event>) {
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// The oldest index still in the history (0 while it is empty).
    pub fn start_index(&self) -> u64 {
        self.events.front().map_or(0, |e| e.index())
    }

    /// Events from `since` on that a watcher of `key` is interested in, oldest first.
    fn scan(
        &self,
        key: &str,
        recursive: bool,
        since: u64,
        current_index: u64,
    ) -> Result<Vec<Arc<Event>>, Error> {
        let start = self.start_index();
        if since < start {
            return Err(Error::new(
                ErrorCode::EventIndexCleared,
                format!("the requested history has been cleared [{start}/{since}]"),
                current_index,
            ));
        }
        let first = self.events.partition_point(|e| e.index() < since);
        Ok(self
            .events
            .range(first..)
            .filter(|e| interested(key, recursive, e))
            .cloned()
            .collect())
    }
}

/// Whether a watcher at `watched` sees `event`: a change of the key itself; for a recursive
/// watcher, a change below it unless a hidden name lies between; and the removal of a
/// directory that contains the watched key.
fn interested(watched: &str, recursive: bool, event: &Event) -> bool {
    if event.refresh {
        return false;
    }
    let key = event.key();
    key == watched
        || (recursive && path::is_within(key, watched) && !path::is_hidden_below(watched, key))
        || (event.removes_dir() && path::is_within(watched, key))
}

#[derive(Debug)]
struct Registration {
    recursive: bool,
    stream: bool,
    since_index: u64,
    tx: mpsc::Sender<Arc<Event>>,
}

#[derive(Debug)]
pub(crate) struct WatcherHub {
    history: EventHistory,
    by_key: BTreeMap<String, Vec<Registration>>,
    registrations: usize,
    sweep_at: usize,
}

impl WatcherHub {
    pub fn new(history: EventHistory) -> WatcherHub {
        WatcherHub {
            history,
            by_key: BTreeMap::new(),
            registrations: 0,
            sweep_at: SWEEP_MIN,
        }
    }

    pub fn history(&self) -> &EventHistory {
        &self.history
    }

    /// Starts a watch on a clean key. Events already in the history from `since` on are
    /// delivered at once (with `etcd_index` set to `current_index`, as etcd does); a one-shot
    /// watcher satisfied from the history is not registered at all.
    pub fn watch(
        &mut self,
        key: &str,
        recursive: bool,
        stream: bool,
        since: u64,
        current_index: u64,
    ) -> Result<Watcher, Error> {
        let past = self.history.scan(key, recursive, since, current_index)?;
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let watcher = Watcher {
            rx,
            start_index: current_index,
        };
        let mut since = since;
        for event in past {
            let answered = Arc::new(Event {
                etcd_index: current_index,
                ..Event::clone(&event)
            });
            if tx.try_send(answered).is_err() || !stream {
                // One-shot and answered, or a stream whose backlog is over its buffer: etcd
                // drops such a watcher too, and the client re-watches from a later index.
                return Ok(watcher);
            }
            since = event.index() + 1;
        }
        self.sweep_if_due();
        self.by_key
            .entry(key.to_owned())
            .or_default()
            .push(Registration {
                recursive,
                stream,
                since_index: since,
                tx,
            });
        self.registrations += 1;
        Ok(watcher)
    }

    /// Records an event and hands it to every interested watcher exactly once. One-shot
    /// watchers are done after one event; a watcher whose buffer is full, or whose client has
    /// gone, is dropped. For a removal, `removed` is the subtree taken out: as in etcd, only
    /// watchers of keys that were in it are woken below the removed key.
    pub fn notify(&mut self, event: Arc<Event>, removed: Option<&Node>) {
        self.history.push(Arc::clone(&event));
        if event.refresh || self.by_key.is_empty() {
            return;
        }
        let key = event.key();
        let mut keys: Vec<String> = path::prefixes(key)
            .filter(|p| self.by_key.contains_key(*p))
            .map(str::to_owned)
            .collect();
        if let (true, Some(removed)) = (event.removes_dir(), removed) {
            let below = path::join(key, "");
            keys.extend(
                self.by_key
                    .range(below.clone()..)
                    .map(|(k, _)| k)
                    .take_while(|k| k.starts_with(&below))
                    .filter(|k| removed.contains(&k[key.len()..]))
                    .cloned(),
            );
        }
        for watched in keys {
            let Some(list) = self.by_key.get_mut(&watched) else {
                continue;
            };
            let before = list.len();
            list.retain(|w| {
                if event.index() < w.since_index || !interested(&watched, w.recursive, &event) {
                    return true;
                }
                w.tx.try_send(Arc::clone(&event)).is_ok() && w.stream
            });
            self.registrations -= before - list.len();
            if list.is_empty() {
                self.by_key.remove(&watched);
            }
        }
    }

    /// Moves every registration of `other` here.
    pub fn adopt(&mut self, other: &mut WatcherHub) {
        for (key, list) in std::mem::take(&mut other.by_key) {
            self.registrations += list.len();
            self.by_key.entry(key).or_default().extend(list);
        }
        other.registrations = 0;
    }

    /// Watchers whose clients are still listening.
    pub fn live_watchers(&self) -> usize {
        self.by_key
            .values()
            .flatten()
            .filter(|w| !w.tx.is_closed())
            .count()
    }

    #[cfg(test)]
    pub fn registrations(&self) -> usize {
        self.registrations
    }

    fn sweep_if_due(&mut self) {
        if self.registrations < self.sweep_at {
            return;
        }
        self.by_key.retain(|_, list| {
            list.retain(|w| !w.tx.is_closed());
            !list.is_empty()
        });
        self.registrations = self.by_key.values().map(Vec::len).sum();
        self.sweep_at = (self.registrations * 2).max(SWEEP_MIN);
    }
}

/// The receiving end of a watch. Dropping it ends the watch.
#[derive(Debug)]
pub struct Watcher {
    rx: mpsc::Receiver<Arc<Event>>,
    start_index: u64,
}

/// What a watcher has for its client right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Event(Arc<Event>),
    /// Nothing yet; more may come.
    Pending,
    /// The watch is over: a one-shot watch was answered, or the watcher was dropped as slow.
    Ended,
}

impl Watcher {
    /// The store's index when the watch began: etcd's `X-Etcd-Index` for a live watch.
    pub fn start_index(&self) -> u64 {
        self.start_index
    }

    /// Waits for the next event; `None` once the watch is over.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        self.rx.recv().await
    }

    /// The next event if there is one now, else registers `cx` to be woken for it.
    pub fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Arc<Event>>> {
        self.rx.poll_recv(cx)
    }

    pub fn try_next(&mut self) -> Next {
        match self.rx.try_recv() {
            Ok(event) => Next::Event(event),
            Err(mpsc::error::TryRecvError::Empty) => Next::Pending,
            Err(mpsc::error::TryRecvError::Disconnected) => Next::Ended,
        }
    }
}
