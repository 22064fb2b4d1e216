//! The store as bytes and back. JSON, like etcd's own store snapshot, but flat: one record per
//! node in pre-order, so a deep key cannot exhaust the decoder's recursion limit. Restoring
//! validates everything; bytes from a damaged disk give an error, never a panic or a
//! half-built store.

use std::fmt;
use std::sync::Arc;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

use super::event::Event;
use super::node::{Body, Node};
use super::stats::{Stats, StoreStats};
use super::ttl::ExpiryQueue;
use super::watch::{EventHistory, WatcherHub};
use super::{path, Store};
use crate::timestamp::Timestamp;

const FORMAT_VERSION: u32 = 1;

/// Far above any sane `--history` setting; a larger number is damage, not configuration.
const MAX_HISTORY_CAPACITY: usize = 1 << 24;

/// An index no store reaches (one change a nanosecond for a century is below 2^62); beyond it
/// the next `index + 1` could overflow.
const MAX_INDEX: u64 = 1 << 62;

/// A key a store could hold: clean, not the root, and within the limits writes keep to.
fn is_clean_key(key: &str) -> bool {
    key != "/" && path::clean(key) == key && super::check_key_limits(key, 0).is_ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a store snapshot at all (bad JSON, missing fields).
    Decode(String),
    /// Well-formed, but describes no store that could exist.
    Invalid(String),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Decode(why) => write!(f, "store snapshot cannot be decoded: {why}"),
            SnapshotError::Invalid(why) => write!(f, "store snapshot is inconsistent: {why}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

#[derive(Serialize)]
struct ImageOut<'a> {
    version: u32,
    index: u64,
    history_capacity: usize,
    nodes: TreeOut<'a>,
    history: Vec<SavedEvent<&'a Event>>,
    stats: StoreStats,
}

/// A history event with the flag its client-facing JSON leaves out.
#[derive(Serialize, Deserialize)]
struct SavedEvent<E> {
    #[serde(flatten)]
    event: E,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    refresh: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageIn {
    version: u32,
    index: u64,
    history_capacity: usize,
    nodes: Vec<NodeRecord>,
    history: Vec<SavedEvent<Event>>,
    stats: StoreStats,
}

/// One node; `value` is absent for a directory.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeRecord {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    created: u64,
    modified: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expire_at: Option<Timestamp>,
}

/// Streams the tree into the encoder without first copying it.
struct TreeOut<'a>(&'a Node);

impl Serialize for TreeOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        let mut failed = None;
        self.0.visit_pre_order("/", &mut |key, node| {
            if key == "/" || failed.is_some() {
                return;
            }
            let record = NodeRecord {
                key: key.to_owned(),
                value: match &node.body {
                    Body::Value(v) => Some(v.clone()),
                    Body::Dir(_) => None,
                },
                created: node.created_index,
                modified: node.modified_index,
                expire_at: node.expire_at,
            };
            if let Err(e) = seq.serialize_element(&record) {
                failed = Some(e);
            }
        });
        match failed {
            Some(e) => Err(e),
            None => seq.end(),
        }
    }
}

pub(super) fn save(store: &Store) -> Vec<u8> {
    save_with_stats(store, true)
}

pub(super) fn save_with_stats(store: &Store, with_stats: bool) -> Vec<u8> {
    let history = store.hub.history();
    let image = ImageOut {
        version: FORMAT_VERSION,
        index: store.index,
        history_capacity: history.capacity(),
        nodes: TreeOut(&store.root),
        history: history
            .events()
            .map(|e| SavedEvent {
                event: e.as_ref(),
                refresh: e.refresh,
            })
            .collect(),
        stats: if with_stats {
            store.stats.read(0)
        } else {
            StoreStats::default()
        },
    };
    serde_json::to_vec(&image).expect("a store always serialises")
}

pub(super) fn restore(bytes: &[u8]) -> Result<Store, SnapshotError> {
    let image: ImageIn =
        serde_json::from_slice(bytes).map_err(|e| SnapshotError::Decode(e.to_string()))?;
    let invalid = |why: String| Err(SnapshotError::Invalid(why));
    if image.version != FORMAT_VERSION {
        return invalid(format!("unknown format version {}", image.version));
    }
    if image.index > MAX_INDEX {
        return invalid(format!("index {} is impossible", image.index));
    }
    if image.history_capacity == 0 || image.history_capacity > MAX_HISTORY_CAPACITY {
        return invalid(format!("history capacity {}", image.history_capacity));
    }

    let mut root = Node::dir(0, None);
    let mut expiry = ExpiryQueue::default();
    for record in image.nodes {
        let key = record.key;
        if !is_clean_key(&key) {
            return invalid(format!("bad key {key:?}"));
        }
        if record.created > image.index || record.modified > image.index {
            return invalid(format!(
                "{key} has an index past the store's {}",
                image.index
            ));
        }
        let (parent, name) = path::split(&key);
        let Some(siblings) = children_of(&mut root, parent) else {
            return invalid(format!("{key} comes before its directory"));
        };
        let node = Node {
            created_index: record.created,
            modified_index: record.modified,
            expire_at: record.expire_at,
            body: match record.value {
                Some(v) => Body::Value(v),
                None => Body::Dir(Default::default()),
            },
        };
        if siblings.insert(name.to_owned(), node).is_some() {
            return invalid(format!("{key} appears twice"));
        }
        if let Some(at) = record.expire_at {
            expiry.insert(at, key);
        }
    }

    if image.history.len() > image.history_capacity {
        return invalid("more history than its capacity".into());
    }
    let mut history = EventHistory::new(image.history_capacity);
    let mut last = 0;
    for saved in image.history {
        let mut event = saved.event;
        let at = event.index();
        if at <= last || at > image.index {
            return invalid(format!("history event at index {at} out of order"));
        }
        let keys = std::iter::once(&event.node).chain(&event.prev_node);
        if let Some(bad) = keys.map(|n| &n.key).find(|k| !is_clean_key(k)) {
            return invalid(format!("history event at index {at} has bad key {bad:?}"));
        }
        last = at;
        event.etcd_index = at;
        event.refresh = saved.refresh;
        history.push(Arc::new(event));
    }

    Ok(Store {
        root,
        index: image.index,
        expiry,
        hub: WatcherHub::new(history),
        stats: Stats::restore(&image.stats),
    })
}

/// The children of an existing directory, or `None` when the key is missing or a file.
fn children_of<'a>(
    root: &'a mut Node,
    dir: &str,
) -> Option<&'a mut std::collections::BTreeMap<String, Node>> {
    let mut node = root;
    for name in path::segments(dir) {
        node = node.children_mut()?.get_mut(name)?;
    }
    node.children_mut()
}
