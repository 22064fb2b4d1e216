//! What the store answers and what watchers receive, shaped exactly like etcd's v2 JSON.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::timestamp::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Get,
    Create,
    Set,
    Update,
    Delete,
    CompareAndSwap,
    CompareAndDelete,
    Expire,
}

/// A node as clients see it (etcd's `NodeExtern`). Empty fields are left out of the JSON, so the
/// root has no key and no indexes, a file has no `dir`, and an empty directory has no `nodes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeExtern {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub dir: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339::serialize",
        deserialize_with = "rfc3339::deserialize"
    )]
    pub expiration: Option<Timestamp>,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub ttl: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeExtern>,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub modified_index: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub created_index: u64,
}

/// One store result or change: `{"action", "node", "prevNode"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub action: Action,
    pub node: NodeExtern,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prev_node: Option<NodeExtern>,
    /// The store's index when this was answered (the `X-Etcd-Index` header), not part of the body.
    #[serde(skip)]
    pub etcd_index: u64,
    /// A TTL refresh: recorded in the history but never announced to watchers. Internal:
    /// etcd never shows it to clients (snapshots keep it separately).
    #[serde(skip)]
    pub refresh: bool,
}

impl Event {
    /// The index this event happened at (the node's `modifiedIndex`).
    pub fn index(&self) -> u64 {
        self.node.modified_index
    }

    pub fn key(&self) -> &str {
        &self.node.key
    }

    pub fn to_json(&self) -> String {
        crate::json::to_string(self)
    }

    /// A delete or expiry of a directory, which also ends everything below it.
    pub(crate) fn removes_dir(&self) -> bool {
        matches!(self.action, Action::Delete | Action::Expire)
            && self.prev_node.as_ref().is_some_and(|prev| prev.dir)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(at: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_str(&at.to_rfc3339()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => Timestamp::parse_rfc3339(&text)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("bad expiration {text:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_has_etcds_field_names_and_order() {
        let event = Event {
            action: Action::Set,
            node: NodeExtern {
                key: "/k".into(),
                value: Some("v".into()),
                expiration: Some(Timestamp::from_unix_nanos(1_764_000_000_213_084_816)),
                ttl: 5,
                modified_index: 8,
                created_index: 8,
                ..NodeExtern::default()
            },
            prev_node: Some(NodeExtern {
                key: "/k".into(),
                value: Some(String::new()),
                modified_index: 7,
                created_index: 7,
                ..NodeExtern::default()
            }),
            etcd_index: 8,
            refresh: false,
        };
        assert_eq!(
            event.to_json(),
            r#"{"action":"set","node":{"key":"/k","value":"v","expiration":"2025-11-24T16:00:00.213084816Z","ttl":5,"modifiedIndex":8,"createdIndex":8},"prevNode":{"key":"/k","value":"","modifiedIndex":7,"createdIndex":7}}"#
        );
        let back: Event = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(
            back,
            Event {
                etcd_index: 0,
                ..event
            }
        );
    }

    #[test]
    fn root_listing_has_no_key_and_no_indexes() {
        let root = NodeExtern {
            dir: true,
            ..NodeExtern::default()
        };
        assert_eq!(serde_json::to_string(&root).unwrap(), r#"{"dir":true}"#);
    }
}
