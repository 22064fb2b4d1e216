//! The keys API (`/v2/keys`): requests built as etcd's Go client builds them, and responses
//! read into the shapes it exposes (so `-o json` prints what etcd's etcdctl prints).

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::{Deserialize, Serialize};

use super::{encode_pairs, Body, Client, ClientError, EtcdError, Reply};
use crate::runtime::Host;

/// A node as Go's `client.Node` marshals it: `value` and `nodes` always present (`nodes`
/// null when absent), `dir`, `expiration` and `ttl` only when set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub dir: bool,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub nodes: Option<Vec<Node>>,
    #[serde(rename = "createdIndex", default)]
    pub created_index: u64,
    #[serde(rename = "modifiedIndex", default)]
    pub modified_index: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ttl: i64,
}

fn is_false(b: &bool) -> bool {
    !b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A keys response as Go's `client.Response`; `index` is the `X-Etcd-Index` header.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub action: String,
    pub node: Option<Node>,
    #[serde(rename = "prevNode", default)]
    pub prev_node: Option<Node>,
    #[serde(skip)]
    pub index: u64,
}

impl Response {
    pub fn node(&self) -> Node {
        self.node.clone().unwrap_or_default()
    }
}

/// Whether a set must find the key absent, present, or either.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrevExist {
    #[default]
    Ignore,
    Exist,
    NoExist,
}

#[derive(Clone, Debug, Default)]
pub struct SetOptions {
    pub prev_value: String,
    pub prev_index: u64,
    pub prev_exist: PrevExist,
    pub ttl: u64,
    pub dir: bool,
}

#[derive(Clone, Debug, Default)]
pub struct GetOptions {
    pub recursive: bool,
    pub sort: bool,
    pub quorum: bool,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub prev_value: String,
    pub prev_index: u64,
    pub dir: bool,
    pub recursive: bool,
}

/// Characters a key keeps unescaped in a URL path (Go's `url.URL` path escaping).
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// `/v2/keys/<key>`, the key made canonical (one leading slash, no doubled ones) and escaped.
pub fn key_path(key: &str) -> String {
    let mut canonical = String::from("/v2/keys");
    for part in key.split('/').filter(|p| !p.is_empty()) {
        canonical.push('/');
        canonical.extend(utf8_percent_encode(part, PATH));
    }
    if key.ends_with('/') && key.len() > 1 {
        canonical.push('/');
    }
    canonical
}

fn with_query(path: String, pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        path
    } else {
        format!("{path}?{}", encode_pairs(pairs))
    }
}

fn bool_text(b: bool) -> String {
    b.to_string()
}

/// Reads a keys answer: a response on 2xx, the etcd error otherwise.
pub fn decode(reply: &Reply) -> Result<Response, ClientError> {
    if (200..300).contains(&reply.status) {
        let mut response: Response = serde_json::from_slice(&reply.body).map_err(|e| {
            ClientError::Unexpected(format!("unreadable response ({}): {e}", reply.status))
        })?;
        response.index = reply.header_u64("X-Etcd-Index");
        Ok(response)
    } else {
        match serde_json::from_slice::<EtcdError>(&reply.body) {
            Ok(error) => Err(ClientError::Etcd(error)),
            Err(_) => Err(ClientError::Unexpected(format!(
                "unexpected status code {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body).trim()
            ))),
        }
    }
}

pub async fn get<H: Host>(
    client: &mut Client<H>,
    key: &str,
    o: &GetOptions,
) -> Result<Response, ClientError> {
    let query = [
        ("recursive", bool_text(o.recursive)),
        ("sorted", bool_text(o.sort)),
        ("quorum", bool_text(o.quorum)),
    ];
    let reply = client
        .request("GET", &with_query(key_path(key), &query), None, false)
        .await?;
    decode(&reply)
}

pub async fn set<H: Host>(
    client: &mut Client<H>,
    key: &str,
    value: &str,
    o: &SetOptions,
) -> Result<Response, ClientError> {
    let mut query = Vec::new();
    let mut form = Vec::new();
    if o.dir {
        query.push(("dir", "true".to_string()));
    } else {
        if !o.prev_value.is_empty() {
            query.push(("prevValue", o.prev_value.clone()));
        }
        form.push(("value", value.to_string()));
    }
    if o.prev_index != 0 {
        query.push(("prevIndex", o.prev_index.to_string()));
    }
    match o.prev_exist {
        PrevExist::Ignore => {}
        PrevExist::Exist => query.push(("prevExist", "true".into())),
        PrevExist::NoExist => query.push(("prevExist", "false".into())),
    }
    if o.ttl > 0 {
        form.push(("ttl", o.ttl.to_string()));
    }
    let body = Body::form(&form);
    let reply = client
        .request(
            "PUT",
            &with_query(key_path(key), &query),
            Some(&body),
            false,
        )
        .await?;
    decode(&reply)
}

pub async fn create_in_order<H: Host>(
    client: &mut Client<H>,
    dir: &str,
    value: &str,
    ttl: u64,
) -> Result<Response, ClientError> {
    let mut form = vec![("value", value.to_string())];
    if ttl > 0 {
        form.push(("ttl", ttl.to_string()));
    }
    let body = Body::form(&form);
    let reply = client
        .request("POST", &key_path(dir), Some(&body), false)
        .await?;
    decode(&reply)
}

pub async fn delete<H: Host>(
    client: &mut Client<H>,
    key: &str,
    o: &DeleteOptions,
) -> Result<Response, ClientError> {
    let mut query = Vec::new();
    if !o.prev_value.is_empty() {
        query.push(("prevValue", o.prev_value.clone()));
    }
    if o.prev_index != 0 {
        query.push(("prevIndex", o.prev_index.to_string()));
    }
    if o.dir {
        query.push(("dir", "true".into()));
    }
    if o.recursive {
        query.push(("recursive", "true".into()));
    }
    let reply = client
        .request("DELETE", &with_query(key_path(key), &query), None, false)
        .await?;
    decode(&reply)
}

/// Follows a key's changes as Go's `Watcher` does: the first wait starts after `after_index`
/// (or at the next change), each next one just after the change last seen.
pub struct Watcher {
    key: String,
    recursive: bool,
    next_index: u64,
}

impl Watcher {
    pub fn new(key: &str, after_index: u64, recursive: bool) -> Watcher {
        Watcher {
            key: key.to_string(),
            recursive,
            next_index: if after_index > 0 { after_index + 1 } else { 0 },
        }
    }

    pub async fn next<H: Host>(&mut self, client: &mut Client<H>) -> Result<Response, ClientError> {
        loop {
            let mut query = vec![
                ("wait", "true".to_string()),
                ("recursive", bool_text(self.recursive)),
            ];
            if self.next_index > 0 {
                query.push(("waitIndex", self.next_index.to_string()));
            }
            let reply = client
                .request("GET", &with_query(key_path(&self.key), &query), None, true)
                .await?;
            // A watch the server ended without an event (a closed long poll) is asked again.
            if reply.status == 200 && reply.body.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let response = decode(&reply)?;
            self.next_index = response.node().modified_index + 1;
            return Ok(response);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_canonical_and_escaped() {
        assert_eq!(key_path("/foo"), "/v2/keys/foo");
        assert_eq!(key_path("foo//bar"), "/v2/keys/foo/bar");
        assert_eq!(key_path("/"), "/v2/keys");
        assert_eq!(key_path("/a b?c"), "/v2/keys/a%20b%3Fc");
    }

    #[test]
    fn json_matches_gos_client_response() {
        let server = r#"{"action":"set","node":{"key":"/foo","value":"bar","modifiedIndex":2,"createdIndex":2},"prevNode":{"key":"/foo","value":"baz","modifiedIndex":1,"createdIndex":1}}"#;
        let r: Response = serde_json::from_str(server).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"action":"set","node":{"key":"/foo","value":"bar","nodes":null,"createdIndex":2,"modifiedIndex":2},"prevNode":{"key":"/foo","value":"baz","nodes":null,"createdIndex":1,"modifiedIndex":1}}"#
        );
        let dir = r#"{"action":"get","node":{"dir":true,"nodes":[{"key":"/d","dir":true,"ttl":5,"expiration":"2026-01-01T00:00:00Z","modifiedIndex":3,"createdIndex":3}]}}"#;
        let r: Response = serde_json::from_str(dir).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"action":"get","node":{"key":"","dir":true,"value":"","nodes":[{"key":"/d","dir":true,"value":"","nodes":null,"createdIndex":3,"modifiedIndex":3,"expiration":"2026-01-01T00:00:00Z","ttl":5}],"createdIndex":0,"modifiedIndex":0},"prevNode":null}"#
        );
    }
}
