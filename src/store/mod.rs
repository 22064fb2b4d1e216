//! etcd's v2 keyspace: a deterministic, in-memory tree of keys and directories with TTLs,
//! watchers and an event history.
//!
//! Pure by construction: no I/O, no clock, no globals. Every operation takes the time it should
//! consider "now" from the caller, so members that apply the same log entries with the same
//! timestamps end with equal stores, and a test can replay any history exactly.

mod event;
mod node;
pub mod path;
mod snapshot;
mod stats;
mod ttl;
mod watch;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use event::{Action, Event, NodeExtern};
pub use snapshot::SnapshotError;
pub use stats::StoreStats;
pub use ttl::{expiry_after, parse_ttl};
pub use watch::{Next, Watcher, DEFAULT_HISTORY_CAPACITY};

use crate::error::{Error, ErrorCode};
use crate::timestamp::Timestamp;
use node::{Body, Depth, Node};
use stats::Stats;
use ttl::ExpiryQueue;
use watch::{EventHistory, WatcherHub};

/// The deepest key a write may create. Walking a tree (a recursive read, a recursive delete,
/// a directory expiring, dropping a subtree) takes stack in proportion to its depth, so depth
/// is bounded where keys are made: far deeper than any real layout, far shallower than what
/// would exhaust a thread's stack.
pub const MAX_KEY_DEPTH: usize = 256;

/// The longest key a write may create, in bytes (its URL path is limited by the HTTP layer
/// anyway; this bound holds for keys from anywhere, the log included).
pub const MAX_KEY_BYTES: usize = 32 << 10;

/// Whether a clean key may be written: `Ok` within [`MAX_KEY_DEPTH`] and [`MAX_KEY_BYTES`],
/// else the error (etcd's 209, "Invalid field") saying which limit it passes. A pure function
/// of the key, so the API refuses before proposing exactly what the store would refuse when
/// applying.
pub fn check_key_limits(clean_key: &str, index: u64) -> Result<(), Error> {
    if clean_key.len() > MAX_KEY_BYTES {
        return Err(Error::new(
            ErrorCode::InvalidField,
            format!(
                "key is {} bytes long; at most {MAX_KEY_BYTES} are allowed",
                clean_key.len()
            ),
            index,
        ));
    }
    let depth = path::segments(clean_key).count();
    if depth > MAX_KEY_DEPTH {
        return Err(Error::new(
            ErrorCode::InvalidField,
            format!("key is {depth} levels deep; at most {MAX_KEY_DEPTH} are allowed"),
            index,
        ));
    }
    Ok(())
}

/// What a write puts at a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content<'a> {
    Value(&'a str),
    Dir,
}

/// How a write treats the key's time-to-live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TtlOptions {
    /// When the key expires; `None` makes it permanent.
    pub expire_at: Option<Timestamp>,
    /// Keep the value, only move the expiry, and do not wake watchers (etcd's `refresh=true`).
    pub refresh: bool,
}

impl TtlOptions {
    pub const PERMANENT: TtlOptions = TtlOptions {
        expire_at: None,
        refresh: false,
    };

    pub fn expiring(at: Timestamp) -> TtlOptions {
        TtlOptions {
            expire_at: Some(at),
            refresh: false,
        }
    }
}

/// The test of a compare-and-swap or compare-and-delete; a part left `None` always passes.
/// etcd reads an empty `prevValue` and a `prevIndex` of 0 as "not given": the request layer
/// turns those into `None`, so here `Some("")` really compares against an empty value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Condition<'a> {
    pub prev_value: Option<&'a str>,
    pub prev_index: Option<u64>,
}

impl Condition<'_> {
    /// `Ok` when the node passes, else the cause etcd reports: `[wanted != actual]` for each
    /// part that failed.
    fn check(&self, node: &Node) -> Result<(), String> {
        let value_fails = self.prev_value.filter(|v| *v != node.value());
        let index_fails = self.prev_index.filter(|i| *i != node.modified_index);
        match (value_fails, index_fails) {
            (None, None) => Ok(()),
            (Some(v), None) => Err(format!("[{v} != {}]", node.value())),
            (None, Some(i)) => Err(format!("[{i} != {}]", node.modified_index)),
            (Some(v), Some(i)) => Err(format!(
                "[{v} != {}] [{i} != {}]",
                node.value(),
                node.modified_index
            )),
        }
    }
}

#[derive(Debug)]
pub struct Store {
    root: Node,
    /// The etcd index: one more for every change, expirations included.
    index: u64,
    expiry: ExpiryQueue,
    hub: WatcherHub,
    stats: Stats,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        Store::with_history_capacity(DEFAULT_HISTORY_CAPACITY)
    }

    /// A store whose watchers can look back `capacity` events (etcd's is fixed at 1000).
    pub fn with_history_capacity(capacity: usize) -> Store {
        Store {
            root: Node::dir(0, None),
            index: 0,
            expiry: ExpiryQueue::default(),
            hub: WatcherHub::new(EventHistory::new(capacity)),
            stats: Stats::default(),
        }
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    /// Reads a key. A directory lists its children (the whole subtree when `recursive`),
    /// sorted by key, leaving out hidden ones; a hidden key itself is readable directly.
    pub fn get(&self, key: &str, recursive: bool, now: Timestamp) -> Result<Event, Error> {
        let key = path::clean(key);
        let result = self.lookup(&key).map(|node| {
            let depth = if recursive { Depth::All } else { Depth::One };
            Event {
                action: Action::Get,
                node: node.extern_at(&key, depth, now),
                prev_node: None,
                etcd_index: self.index,
                refresh: false,
            }
        });
        Stats::count(&self.stats.gets_success, &self.stats.gets_fail, &result);
        result
    }

    /// Creates or replaces a key (not a directory). Missing directories along the way are
    /// created. With `refresh`, the existing value is kept and only the TTL moves.
    pub fn set(
        &mut self,
        key: &str,
        content: Content<'_>,
        ttl: TtlOptions,
        now: Timestamp,
    ) -> Result<Event, Error> {
        let key = path::clean(key);
        let result = self.set_at(&key, content, ttl, now);
        Stats::count(&self.stats.sets_success, &self.stats.sets_fail, &result);
        result
    }

    fn set_at(
        &mut self,
        key: &str,
        content: Content<'_>,
        ttl: TtlOptions,
        now: Timestamp,
    ) -> Result<Event, Error> {
        let kept;
        let content = match self.lookup(key) {
            Err(e) if e.code != ErrorCode::KeyNotFound || ttl.refresh => return Err(e),
            Ok(node) if ttl.refresh && content != Content::Dir => {
                kept = node.value().to_owned();
                Content::Value(&kept)
            }
            _ => content,
        };
        self.put(key, content, true, ttl, Action::Set, now)
    }

    /// Creates a key that must not exist yet (`prevExist=false`).
    pub fn create(
        &mut self,
        key: &str,
        content: Content<'_>,
        ttl: TtlOptions,
        now: Timestamp,
    ) -> Result<Event, Error> {
        let key = path::clean(key);
        let ttl = TtlOptions {
            refresh: false,
            ..ttl
        };
        let result = self.put(&key, content, false, ttl, Action::Create, now);
        Stats::count(&self.stats.create_success, &self.stats.create_fail, &result);
        result
    }

    /// Creates a child of `dir` named after the new index, 20 digits zero-padded, so children
    /// list in creation order (etcd's POST).
    pub fn create_in_order(
        &mut self,
        dir: &str,
        content: Content<'_>,
        ttl: TtlOptions,
        now: Timestamp,
    ) -> Result<Event, Error> {
        let key = path::clean(&format!("{dir}/{:020}", self.index + 1));
        let ttl = TtlOptions {
            refresh: false,
            ..ttl
        };
        let result = self.put(&key, content, false, ttl, Action::Create, now);
        Stats::count(&self.stats.create_success, &self.stats.create_fail, &result);
        result
    }

    /// Changes an existing key's value and TTL (`prevExist=true`). On a directory only the TTL
    /// can change; like etcd, a directory keeps its `modifiedIndex` while the event carries the
    /// new index.
    pub fn update(
        &mut self,
        key: &str,
        value: &str,
        ttl: TtlOptions,
        now: Timestamp,
    ) -> Result<Event, Error> {
        let key = path::clean(key);
        let result = self.update_at(&key, value, ttl, now);
        Stats::count(&self.stats.update_success, &self.stats.update_fail, &result);
        result
    }

    fn update_at(
        &mut self,
        key: &str,
        value: &str,
        ttl: TtlOptions,
        now: Timestamp,
    ) -> Result<Event, Error> {
        self.refuse_root(key)?;
        let node = self.lookup(key)?;
        if node.is_dir() && !value.is_empty() {
            return Err(self.error(ErrorCode::NotFile, key));
        }
        let value = if ttl.refresh { node.value() } else { value }.to_owned();
        Ok(self.rewrite(key, Action::Update, value, ttl, now))
    }

    /// Replaces a key's value if it passes `condition`.
    pub fn compare_and_swap(
        &mut self,
        key: &str,
        condition: Condition<'_>,
        value: &str,
        ttl: TtlOptions,
        now: Timestamp,
    ) -> Result<Event, Error> {
        let key = path::clean(key);
        let result = self.compare_and_swap_at(&key, condition, value, ttl, now);
        Stats::count(
            &self.stats.compare_and_swap_success,
            &self.stats.compare_and_swap_fail,
            &result,
        );
        result
    }

    fn compare_and_swap_at(
        &mut self,
        key: &str,
        condition: Condition<'_>,
        value: &str,
        ttl: TtlOptions,
        now: Timestamp,
    ) -> Result<Event, Error> {
        self.refuse_root(key)?;
        let node = self.lookup_file(key)?;
        condition
            .check(node)
            .map_err(|cause| self.error(ErrorCode::TestFailed, cause))?;
        let value = if ttl.refresh { node.value() } else { value }.to_owned();
        Ok(self.rewrite(key, Action::CompareAndSwap, value, ttl, now))
    }

    /// Removes a key. A directory needs `dir` (and `recursive` unless it is empty);
    /// `recursive` implies `dir`.
    pub fn delete(
        &mut self,
        key: &str,
        dir: bool,
        recursive: bool,
        now: Timestamp,
    ) -> Result<Event, Error> {
        let key = path::clean(key);
        let result = self.delete_at(&key, dir || recursive, recursive, now);
        Stats::count(&self.stats.delete_success, &self.stats.delete_fail, &result);
        result
    }

    fn delete_at(
        &mut self,
        key: &str,
        dir: bool,
        recursive: bool,
        now: Timestamp,
    ) -> Result<Event, Error> {
        self.refuse_root(key)?;
        let node = self.lookup(key)?;
        if let Some(children) = node.children() {
            if !dir {
                return Err(self.error(ErrorCode::NotFile, key));
            }
            if !children.is_empty() && !recursive {
                return Err(self.error(ErrorCode::DirNotEmpty, key));
            }
        }
        Ok(self.remove(key, Action::Delete, now))
    }

    /// Removes a key (not a directory) if it passes `condition`.
    pub fn compare_and_delete(
        &mut self,
        key: &str,
        condition: Condition<'_>,
        now: Timestamp,
    ) -> Result<Event, Error> {
        let key = path::clean(key);
        let result = if key == "/" {
            // etcd's cause here is its internal root, which its HTTP layer strips to nothing.
            Err(self.error(ErrorCode::NotFile, ""))
        } else {
            self.lookup_file(&key)
        };
        let result = result.and_then(|node| {
            condition
                .check(node)
                .map_err(|cause| self.error(ErrorCode::TestFailed, cause))
        });
        let result = result.map(|()| self.remove(&key, Action::CompareAndDelete, now));
        Stats::count(
            &self.stats.compare_and_delete_success,
            &self.stats.compare_and_delete_fail,
            &result,
        );
        result
    }

    /// Removes every key whose expiry is at or before `cutoff`, earliest first, each as an
    /// `expire` event at its own index. A directory takes its whole subtree with it.
    pub fn expire(&mut self, cutoff: Timestamp) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some((_, key)) = self.expiry.first_due(cutoff) {
            events.push(self.remove(&key, Action::Expire, cutoff));
            self.stats
                .expire_count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        events
    }

    /// The earliest expiry still pending, if any.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.expiry
            .first_due(Timestamp::from_unix_nanos(i64::MAX))
            .map(|(at, _)| at)
    }

    /// Watches a key for the first change at or after `since_index` (0: the next change).
    /// `recursive` includes changes below it; `stream` keeps the watch open after an event.
    pub fn watch(
        &mut self,
        key: &str,
        recursive: bool,
        stream: bool,
        since_index: u64,
    ) -> Result<Watcher, Error> {
        let key = path::clean(key);
        let since = if since_index == 0 {
            self.index + 1
        } else {
            since_index
        };
        self.hub.watch(&key, recursive, stream, since, self.index)
    }

    /// Takes over another store's watchers (when a snapshot replaces this member's state, the
    /// clients watching it keep watching, as in etcd's recovery).
    pub fn adopt_watchers(&mut self, from: &mut Store) {
        self.hub.adopt(&mut from.hub);
    }

    pub fn stats(&self) -> StoreStats {
        self.stats.read(self.hub.live_watchers() as u64)
    }

    /// The whole store (tree, TTLs, index, event history and counters) as bytes.
    pub fn save(&self) -> Vec<u8> {
        snapshot::save(self)
    }

    /// What every member applying the same log has identically: `save` without the counters,
    /// which also count this member's own reads.
    pub fn replicated_image(&self) -> Vec<u8> {
        snapshot::save_with_stats(self, false)
    }

    /// Whether `other` holds what this store holds of its replicated part: the tree, the index
    /// and the event history. When it does, the two `replicated_image`s are equal (they are made
    /// of these alone), and finding so costs a comparison instead of two encodings. The
    /// converse may not hold (an event's `etcd_index` is compared but not saved): compare the
    /// images to be sure when this says no.
    pub fn same_replicated(&self, other: &Store) -> bool {
        self.index == other.index
            && self.hub.history() == other.hub.history()
            && self.root == other.root
    }

    /// A store exactly as `save` saw it; watchers are not part of a snapshot.
    pub fn restore(bytes: &[u8]) -> Result<Store, SnapshotError> {
        snapshot::restore(bytes)
    }

    // --- the tree -----------------------------------------------------------------------

    fn error(&self, code: ErrorCode, cause: impl Into<String>) -> Error {
        Error::new(code, cause, self.index)
    }

    fn refuse_root(&self, key: &str) -> Result<(), Error> {
        if key == "/" {
            return Err(self.error(ErrorCode::RootReadOnly, "/"));
        }
        Ok(())
    }

    /// The node at a clean key, or etcd's error naming the first missing key or the file
    /// that stands where a directory should be.
    fn lookup(&self, key: &str) -> Result<&Node, Error> {
        let mut node = &self.root;
        let mut walked = 0; // key[..walked] is the path so far
        for name in path::segments(key) {
            let here = if walked == 0 { "/" } else { &key[..walked] };
            let children = node
                .children()
                .ok_or_else(|| self.error(ErrorCode::NotDir, here))?;
            walked += 1 + name.len();
            node = children
                .get(name)
                .ok_or_else(|| self.error(ErrorCode::KeyNotFound, &key[..walked]))?;
        }
        Ok(node)
    }

    fn lookup_file(&self, key: &str) -> Result<&Node, Error> {
        let node = self.lookup(key)?;
        if node.is_dir() {
            return Err(self.error(ErrorCode::NotFile, key));
        }
        Ok(node)
    }

    /// The node at a key that `lookup` has just found.
    fn node_mut(&mut self, key: &str) -> &mut Node {
        let mut node = &mut self.root;
        for name in path::segments(key) {
            node = node
                .children_mut()
                .and_then(|children| children.get_mut(name))
                .expect("the key was looked up before");
        }
        node
    }

    /// Creates (or, with `replace`, replaces a file with) a node, creating missing parent
    /// directories at the new index.
    fn put(
        &mut self,
        key: &str,
        content: Content<'_>,
        replace: bool,
        ttl: TtlOptions,
        action: Action,
        now: Timestamp,
    ) -> Result<Event, Error> {
        self.refuse_root(key)?;
        check_key_limits(key, self.index)?;
        let (parent, name) = path::split(key);
        let prev_node = match self.lookup(key) {
            Ok(_) if !replace => return Err(self.error(ErrorCode::NodeExist, key)),
            Ok(existing) if existing.is_dir() => return Err(self.error(ErrorCode::NotFile, key)),
            Ok(existing) => Some(existing.extern_at(key, Depth::Flat, now)),
            Err(e) if e.code == ErrorCode::KeyNotFound => None,
            Err(e) => return Err(e),
        };
        let next = self.index + 1;
        let node = match content {
            Content::Value(v) => Node::file(v.to_owned(), next, ttl.expire_at),
            Content::Dir => Node::dir(next, ttl.expire_at),
        };
        let event_node = node.extern_at(key, Depth::Flat, now);
        let siblings = make_dirs(&mut self.root, parent, next);
        if let Some(replaced) = siblings.insert(name.to_owned(), node) {
            if let Some(at) = replaced.expire_at {
                self.expiry.remove(at, key);
            }
        }
        if let Some(at) = ttl.expire_at {
            self.expiry.insert(at, key.to_owned());
        }
        Ok(self.commit(
            Event {
                action,
                node: event_node,
                prev_node,
                etcd_index: next,
                refresh: ttl.refresh,
            },
            None,
        ))
    }

    /// Writes a new value and TTL into an existing node (update, compare-and-swap).
    fn rewrite(
        &mut self,
        key: &str,
        action: Action,
        value: String,
        ttl: TtlOptions,
        now: Timestamp,
    ) -> Event {
        let next = self.index + 1;
        let node = self.node_mut(key);
        let prev_node = node.extern_at(key, Depth::Flat, now);
        let old_expiry = std::mem::replace(&mut node.expire_at, ttl.expire_at);
        if let Body::Value(old) = &mut node.body {
            *old = value;
            node.modified_index = next;
        }
        let mut event_node = node.extern_at(key, Depth::Flat, now);
        event_node.modified_index = next;
        if let Some(at) = old_expiry {
            self.expiry.remove(at, key);
        }
        if let Some(at) = ttl.expire_at {
            self.expiry.insert(at, key.to_owned());
        }
        self.commit(
            Event {
                action,
                node: event_node,
                prev_node: Some(prev_node),
                etcd_index: next,
                refresh: ttl.refresh,
            },
            None,
        )
    }

    /// Takes a node and everything below it out of the tree (delete, compare-and-delete,
    /// expire).
    fn remove(&mut self, key: &str, action: Action, now: Timestamp) -> Event {
        let next = self.index + 1;
        let (parent, name) = path::split(key);
        let removed = self
            .node_mut(parent)
            .children_mut()
            .and_then(|children| children.remove(name))
            .expect("the key was looked up before");
        if self.expiry.len() > 0 {
            removed.visit_post_order(key, &mut |k, n| {
                if let Some(at) = n.expire_at {
                    self.expiry.remove(at, k);
                }
            });
        }
        let node = NodeExtern {
            key: key.to_owned(),
            dir: removed.is_dir(),
            modified_index: next,
            created_index: removed.created_index,
            ..NodeExtern::default()
        };
        let event = Event {
            action,
            node,
            prev_node: Some(removed.extern_at(key, Depth::Flat, now)),
            etcd_index: next,
            refresh: false,
        };
        self.commit(event, Some(&removed))
    }

    /// Moves the index to the event's and tells the watchers.
    fn commit(&mut self, event: Event, removed: Option<&Node>) -> Event {
        self.index = event.index();
        self.hub.notify(Arc::new(event.clone()), removed);
        event
    }
}

/// The children of the directory at a clean key, creating missing directories at `index`.
/// The caller has checked that no file stands on the way.
fn make_dirs<'a>(
    root: &'a mut Node,
    dir: &str,
    index: u64,
) -> &'a mut std::collections::BTreeMap<String, Node> {
    let mut node = root;
    for name in path::segments(dir) {
        node = node
            .children_mut()
            .expect("no file on the way")
            .entry(name.to_owned())
            .or_insert_with(|| Node::dir(index, None));
    }
    node.children_mut().expect("no file on the way")
}
