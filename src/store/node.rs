//! The in-memory tree. A node does not store its own key: keys are built while walking, which
//! keeps a million small keys cheap.

use std::collections::BTreeMap;

use super::event::NodeExtern;
use super::path;
use crate::timestamp::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub created_index: u64,
    pub modified_index: u64,
    pub expire_at: Option<Timestamp>,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    Value(String),
    Dir(BTreeMap<String, Node>),
}

impl Node {
    pub fn file(value: String, index: u64, expire_at: Option<Timestamp>) -> Node {
        Node {
            created_index: index,
            modified_index: index,
            expire_at,
            body: Body::Value(value),
        }
    }

    pub fn dir(index: u64, expire_at: Option<Timestamp>) -> Node {
        Node {
            created_index: index,
            modified_index: index,
            expire_at,
            body: Body::Dir(BTreeMap::new()),
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.body, Body::Dir(_))
    }

    /// A file's value; a directory reads as empty, as in etcd.
    pub fn value(&self) -> &str {
        match &self.body {
            Body::Value(v) => v,
            Body::Dir(_) => "",
        }
    }

    pub fn children(&self) -> Option<&BTreeMap<String, Node>> {
        match &self.body {
            Body::Dir(children) => Some(children),
            Body::Value(_) => None,
        }
    }

    pub fn children_mut(&mut self) -> Option<&mut BTreeMap<String, Node>> {
        match &mut self.body {
            Body::Dir(children) => Some(children),
            Body::Value(_) => None,
        }
    }

    /// The node as clients see it. A directory lists its visible children when `depth` allows:
    /// `Depth::Flat` leaves them out (prevNode), `Depth::One` lists one level (a plain get) and
    /// `Depth::All` the whole subtree (a recursive get). Hidden children are never listed.
    pub fn extern_at(&self, key: &str, depth: Depth, now: Timestamp) -> NodeExtern {
        let (expiration, ttl) = match self.expire_at {
            Some(at) => (Some(at), at.ttl_secs_from(now)),
            None => (None, 0),
        };
        let mut out = NodeExtern {
            key: if key == "/" {
                String::new()
            } else {
                key.to_owned()
            },
            value: None,
            dir: self.is_dir(),
            expiration,
            ttl,
            nodes: Vec::new(),
            modified_index: self.modified_index,
            created_index: self.created_index,
        };
        match &self.body {
            Body::Value(v) => out.value = Some(v.clone()),
            Body::Dir(children) => {
                let child_depth = match depth {
                    Depth::Flat => None,
                    Depth::One => Some(Depth::Flat),
                    Depth::All => Some(Depth::All),
                };
                if let Some(child_depth) = child_depth {
                    out.nodes = children
                        .iter()
                        .filter(|(name, _)| !path::is_hidden_name(name))
                        .map(|(name, child)| {
                            child.extern_at(&path::join(key, name), child_depth, now)
                        })
                        .collect();
                }
            }
        }
        out
    }

    /// Whether a node exists at `below` (a path like `/x/y`) relative to this one.
    pub fn contains(&self, below: &str) -> bool {
        let mut node = self;
        for name in path::segments(below) {
            match node.children().and_then(|c| c.get(name)) {
                Some(child) => node = child,
                None => return false,
            }
        }
        true
    }

    /// Visits this node and everything below it, children before their directory (the order
    /// etcd removes them in), with each node's key.
    pub fn visit_post_order(&self, key: &str, visit: &mut impl FnMut(&str, &Node)) {
        if let Body::Dir(children) = &self.body {
            for (name, child) in children {
                child.visit_post_order(&path::join(key, name), visit);
            }
        }
        visit(key, self);
    }

    /// Visits this node and everything below it, each directory before its children.
    pub fn visit_pre_order(&self, key: &str, visit: &mut impl FnMut(&str, &Node)) {
        visit(key, self);
        if let Body::Dir(children) = &self.body {
            for (name, child) in children {
                child.visit_pre_order(&path::join(key, name), visit);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Depth {
    Flat,
    One,
    All,
}
