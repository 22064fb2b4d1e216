//! Simulated clients: a mix of v2 operations on a few shared keys and directories, sent over
//! simulated TCP through the project's own client library (its failover included), every call
//! recorded with when it started, when (or whether) it returned and what it was told.

use std::time::Duration;

use crate::clock;
use crate::dirs;
use crate::history::{Ending, History};
use crate::ttl::TtlKeys;
use crate::versions::Versions;
use etcd::client::keys::{self, DeleteOptions, GetOptions, PrevExist, SetOptions};
use etcd::client::{Client, ClientError};
use etcd::lincheck::kv::{KvInput, KvOutput};
use etcd::lincheck::Operation;
use etcd::runtime::sim::SimHost;
use etcd::ErrorCode;
use madsim::rand::Rng;

use crate::cluster::Cluster;

/// Keys every client fights over; their histories are checked for linearizability.
pub const KEYS: [&str; 4] = ["/k0", "/k1", "/k2", "/k3"];

pub fn nanos_since(start: Duration) -> u64 {
    clock::now().saturating_sub(start).as_nanos() as u64
}

/// Whether an etcd error code means the write certainly did not happen.
fn refused(code: u64) -> bool {
    [
        ErrorCode::KeyNotFound,
        ErrorCode::TestFailed,
        ErrorCode::NodeExist,
    ]
    .iter()
    .any(|c| u64::from(c.number()) == code)
}

/// The model's view of a write's answer; `None` when the outcome is unknown.
fn write_outcome(result: &Result<keys::Response, ClientError>) -> Option<KvOutput> {
    match result {
        Ok(_) => Some(KvOutput::Done),
        Err(ClientError::Etcd(e)) if refused(e.code) => Some(KvOutput::Refused),
        Err(_) => None,
    }
}

fn read_outcome(result: &Result<keys::Response, ClientError>) -> Option<KvOutput> {
    match result {
        Ok(response) => Some(KvOutput::Value(Some(response.node().value))),
        Err(ClientError::Etcd(e)) if e.code == u64::from(ErrorCode::KeyNotFound.number()) => {
            Some(KvOutput::Value(None))
        }
        Err(_) => None,
    }
}

/// Whether an etcd error is the store's or the request's, so the request certainly changed
/// nothing; from 300 up they are the server's (a proposal that timed out, say).
pub fn is_store_error(code: u64) -> bool {
    code < 300
}

/// How a sent operation ended, for the tally.
pub fn ending<T>(result: &Result<T, ClientError>) -> Ending {
    match result {
        Ok(_) => Ending::Done,
        Err(ClientError::Etcd(e)) if is_store_error(e.code) => Ending::Refused,
        Err(_) => Ending::Unknown,
    }
}

/// A client of the whole cluster, as an application would make one: every member's client
/// URL, in an order of its own.
pub fn connect(cluster: &Cluster) -> Client<SimHost> {
    let mut endpoints = cluster.client_urls();
    let mut rng = madsim::rand::thread_rng();
    for i in (1..endpoints.len()).rev() {
        endpoints.swap(i, rng.gen_range(0..=i));
    }
    connect_to(endpoints)
}

pub fn connect_to(endpoints: Vec<String>) -> Client<SimHost> {
    let connector = if endpoints.iter().any(|e| e.starts_with("https://")) {
        crate::tls::material().client_dialer.clone()
    } else {
        etcd::net::Connector::plain()
    };
    let config = etcd::client::Config {
        endpoints,
        dial_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(10),
        debug: false,
        credentials: None,
        connector,
    };
    Client::on(SimHost::new(Duration::ZERO), config).expect("the members' URLs are valid")
}

/// Runs a quorum read of `key` and records it as client `client_id`'s; the answer, when
/// there was one.
pub async fn checked_read(
    client: &mut Client<SimHost>,
    client_id: u64,
    key: &str,
    history: &History,
    start: Duration,
) -> Option<keys::Response> {
    let call = nanos_since(start);
    let options = GetOptions {
        quorum: true,
        ..GetOptions::default()
    };
    let result = keys::get(client, key, &options).await;
    if !matches!(result, Err(ClientError::Unreachable(_))) {
        history.count("get", ending(&result));
    }
    if let Some(output) = read_outcome(&result) {
        history.record(
            key,
            client_id,
            Operation {
                call,
                ret: Some(nanos_since(start)),
                input: KvInput::Get,
                output: Some(output),
            },
        );
    }
    result.ok()
}

/// One client: operations until `until`.
pub async fn client(
    cluster: Cluster,
    history: History,
    client: u64,
    start: Duration,
    until: Duration,
) {
    let mut http = connect(&cluster);
    let mut versions = Versions::default();
    let mut ttl_keys = TtlKeys::default();
    let mut n = 0u64;
    while clock::now() < until {
        n += 1;
        if n.is_multiple_of(50) {
            // As etcd's client auto-syncs: members come and go.
            let _ = http.sync().await;
        }
        let value = format!("c{client}-{n}");
        let (kind, key) = {
            let mut rng = madsim::rand::thread_rng();
            (rng.gen_range(0..100), KEYS[rng.gen_range(0..KEYS.len())])
        };
        if kind < 78 {
            let op = KeyOp::choose(key, &value, client, n, &versions);
            if let Some(response) = op.run(&mut http, client, key, &history, start).await {
                versions.learn(key, &response);
            }
        } else if kind < 90 {
            dirs::operation(&mut http, client, &value, &history, start).await;
        } else {
            unchecked(&mut http, &value, &mut ttl_keys, &history).await;
        }
        let pause = madsim::rand::thread_rng().gen_range(0..30);
        madsim::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// One checked operation on a key.
enum KeyOp {
    Read,
    Write(KvInput),
}

impl KeyOp {
    /// A random operation writing `value` (unique to this write); compares name either a
    /// value some client may have written (by `prevValue`) or a version this client learned
    /// of (by `prevIndex`).
    fn choose(key: &str, value: &str, client: u64, n: u64, versions: &Versions) -> KeyOp {
        let mut rng = madsim::rand::thread_rng();
        let value = value.to_owned();
        let prev = format!("c{}-{}", rng.gen_range(0..4), rng.gen_range(1..=n.max(1)));
        // Distinct per client and operation, so a made-up index is never another's.
        let at = versions.pick(key, &mut rng, client << 32 | n);
        // Now and then `prevValue` as well: mostly the value the index names, so both match.
        let also = match rng.gen_range(0..10) {
            0..=1 => Some(at.value.clone().unwrap_or_else(|| prev.clone())),
            2 => Some(prev.clone()),
            _ => None,
        };
        KeyOp::Write(match rng.gen_range(0..100) {
            0..=25 => return KeyOp::Read,
            26..=43 => KvInput::Set(value),
            44..=52 => KvInput::Create(value),
            53..=61 => KvInput::Update(value),
            62..=71 => KvInput::CompareAndSwap { prev, value },
            72..=83 => KvInput::CompareAndSwapIndex {
                at,
                prev: also,
                value,
            },
            84..=89 => KvInput::Delete,
            90..=93 => KvInput::CompareAndDelete { prev },
            _ => KvInput::CompareAndDeleteIndex { at, prev: also },
        })
    }

    /// Sends it and records it; the answer, when there was one, to learn versions from.
    async fn run(
        self,
        http: &mut Client<SimHost>,
        client: u64,
        key: &str,
        history: &History,
        start: Duration,
    ) -> Option<keys::Response> {
        let input = match self {
            KeyOp::Read => return checked_read(http, client, key, history, start).await,
            KeyOp::Write(input) => input,
        };
        let call = nanos_since(start);
        let result = send(http, key, &input).await;
        // A write never sent is certainly not applied: nothing to check.
        if matches!(result, Err(ClientError::Unreachable(_))) {
            return None;
        }
        history.count(kind_of(&input), ending(&result));
        let output = write_outcome(&result);
        if output.is_some() {
            history.acknowledge();
        }
        history.record(
            key,
            client,
            Operation {
                call,
                ret: output.as_ref().map(|_| nanos_since(start)),
                input,
                output,
            },
        );
        result.ok()
    }
}

/// The request a write asks for, as an application would send it.
async fn send(
    http: &mut Client<SimHost>,
    key: &str,
    input: &KvInput,
) -> Result<keys::Response, ClientError> {
    // What the request compares: `prevValue` (empty: not sent) and `prevIndex` (0: not sent).
    let (prev, prev_index) = match input {
        KvInput::CompareAndSwap { prev, .. } | KvInput::CompareAndDelete { prev } => {
            (Some(prev.as_str()), 0)
        }
        KvInput::CompareAndSwapIndex { at, prev, .. }
        | KvInput::CompareAndDeleteIndex { at, prev } => (prev.as_deref(), at.index),
        _ => (None, 0),
    };
    let prev_value = prev.unwrap_or_default().to_owned();
    match input {
        KvInput::Get => unreachable!("reads are sent by `checked_read`"),
        KvInput::Delete
        | KvInput::CompareAndDelete { .. }
        | KvInput::CompareAndDeleteIndex { .. } => {
            let options = DeleteOptions {
                prev_value,
                prev_index,
                ..DeleteOptions::default()
            };
            keys::delete(http, key, &options).await
        }
        KvInput::Set(value)
        | KvInput::Create(value)
        | KvInput::Update(value)
        | KvInput::CompareAndSwap { value, .. }
        | KvInput::CompareAndSwapIndex { value, .. } => {
            let prev_exist = match input {
                KvInput::Create(_) => PrevExist::NoExist,
                KvInput::Update(_) => PrevExist::Exist,
                _ => PrevExist::Ignore,
            };
            let options = SetOptions {
                prev_exist,
                prev_value,
                prev_index,
                ..SetOptions::default()
            };
            keys::set(http, key, value, &options).await
        }
    }
}

/// The name a write is tallied under.
fn kind_of(input: &KvInput) -> &'static str {
    match input {
        KvInput::Get => "get",
        KvInput::Set(_) => "set",
        KvInput::Create(_) => "create",
        KvInput::Update(_) => "update",
        KvInput::CompareAndSwap { .. } => "cas",
        KvInput::CompareAndSwapIndex { prev: None, .. } => "cas-index",
        KvInput::CompareAndSwapIndex { .. } => "cas-index+value",
        KvInput::Delete => "delete",
        KvInput::CompareAndDelete { .. } => "cad",
        KvInput::CompareAndDeleteIndex { prev: None, .. } => "cad-index",
        KvInput::CompareAndDeleteIndex { .. } => "cad-index+value",
    }
}

/// Traffic the checker does not model: TTL keys (expired by the leader's Sync), in-order keys
/// and plain local reads.
async fn unchecked(
    http: &mut Client<SimHost>,
    value: &str,
    ttl_keys: &mut TtlKeys,
    history: &History,
) {
    let (kind, ttl) = {
        let mut rng = madsim::rand::thread_rng();
        (rng.gen_range(0..12), rng.gen_range(1..3))
    };
    let (name, result) = match kind {
        0..=3 => {
            let key = format!("/ttl/{value}");
            return ttl_keys.set(http, key, value, ttl, history).await;
        }
        4..=5 => return ttl_keys.check(http, history).await,
        6..=8 => (
            "in-order",
            keys::create_in_order(http, "/queue", value, 0).await,
        ),
        _ => {
            let options = GetOptions {
                recursive: true,
                ..GetOptions::default()
            };
            ("local-get", keys::get(http, "/ttl", &options).await)
        }
    };
    history.count(name, ending(&result));
    if result.is_ok() {
        history.acknowledge();
    }
}
