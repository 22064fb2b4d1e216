//! What one client learned of each key's versions: the value each `modifiedIndex` it was told
//! of carried. A compare-and-swap by `prevIndex` then sends an index the client really knows,
//! and tells the checker which value that index names (see `lincheck::kv::IndexedValue`).

use std::collections::{BTreeMap, HashMap};

use etcd::client::keys::{Node, Response};
use etcd::lincheck::kv::IndexedValue;
use madsim::rand::Rng;

/// Far above any index a run reaches: a `prevIndex` no write of any key ever had.
pub const UNREACHABLE_INDEX: u64 = 1 << 48;

/// Versions kept per key; older ones are forgotten first (stale ones are still useful, and
/// there are plenty).
const KEPT: usize = 32;

#[derive(Default)]
pub struct Versions {
    by_key: HashMap<String, BTreeMap<u64, String>>,
}

impl Versions {
    /// Learns from an answer about `key`: its node (unless the answer removed it, when the
    /// node carries the removal's index and no value) and the node it replaced.
    pub fn learn(&mut self, key: &str, response: &Response) {
        let removed = matches!(
            response.action.as_str(),
            "delete" | "compareAndDelete" | "expire"
        );
        if !removed {
            if let Some(node) = &response.node {
                self.learn_node(key, node);
            }
        }
        if let Some(node) = &response.prev_node {
            self.learn_node(key, node);
        }
    }

    fn learn_node(&mut self, key: &str, node: &Node) {
        if node.dir || node.key != key || node.modified_index == 0 {
            return;
        }
        assert!(
            node.modified_index < UNREACHABLE_INDEX,
            "a run reached index {}: made-up indexes could match",
            node.modified_index
        );
        let known = self.by_key.entry(key.to_owned()).or_default();
        known.insert(node.modified_index, node.value.clone());
        if known.len() > KEPT {
            known.pop_first();
        }
    }

    /// An index to compare `key` against: mostly the newest one known (likely still
    /// current), sometimes an older one (likely stale), sometimes `made_up`, which nothing was
    /// ever written at.
    pub fn pick(&self, key: &str, rng: &mut impl Rng, made_up: u64) -> IndexedValue {
        let known = self.by_key.get(key).filter(|k| !k.is_empty());
        let roll = rng.gen_range(0..100);
        match known {
            Some(known) if roll < 60 => {
                let (&index, value) = known.last_key_value().expect("not empty");
                indexed(index, value)
            }
            Some(known) if roll < 90 => {
                let (&index, value) = known
                    .iter()
                    .nth(rng.gen_range(0..known.len()))
                    .expect("in range");
                indexed(index, value)
            }
            _ => IndexedValue {
                index: UNREACHABLE_INDEX + made_up,
                value: None,
            },
        }
    }
}

fn indexed(index: u64, value: &str) -> IndexedValue {
    IndexedValue {
        index,
        value: Some(value.to_owned()),
    }
}
