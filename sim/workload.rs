//! Simulated clients: a mix of v2 operations on a few shared keys, sent over simulated TCP
//! through the project's own client library (its failover included), every call recorded with
//! when it started, when (or whether) it returned and what it was told.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock;
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

#[derive(Clone, Debug)]
pub struct Recorded {
    pub key: String,
    /// Which client made it: its lane on a failure's timeline.
    pub client: u64,
    pub op: Operation<KvInput, KvOutput>,
}

#[derive(Clone, Default)]
pub struct History {
    ops: Arc<Mutex<Vec<Recorded>>>,
    /// Acknowledged operations of any kind (checked ones and the rest).
    acknowledged: Arc<Mutex<u64>>,
}

impl History {
    pub fn record(&self, key: &str, client: u64, op: Operation<KvInput, KvOutput>) {
        self.ops.lock().unwrap().push(Recorded {
            key: key.to_owned(),
            client,
            op,
        });
    }

    pub fn ops(&self) -> Vec<Recorded> {
        self.ops.lock().unwrap().clone()
    }

    pub fn acknowledge(&self) {
        *self.acknowledged.lock().unwrap() += 1;
    }

    pub fn acknowledged(&self) -> u64 {
        *self.acknowledged.lock().unwrap()
    }

    /// A digest of everything the clients saw, in order: equal for equal runs.
    pub fn digest(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for r in self.ops.lock().unwrap().iter() {
            r.key.hash(&mut h);
            (r.op.call, r.op.ret).hash(&mut h);
            r.op.input.hash(&mut h);
            r.op.output.hash(&mut h);
        }
        h.finish()
    }
}

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
    let config = etcd::client::Config {
        endpoints,
        dial_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(10),
        debug: false,
        credentials: None,
    };
    Client::on(SimHost::new(Duration::ZERO), config).expect("the members' URLs are valid")
}

/// Runs a quorum read of `key` and records it as client `client_id`'s.
pub async fn checked_read(
    client: &mut Client<SimHost>,
    client_id: u64,
    key: &str,
    history: &History,
    start: Duration,
) {
    let call = nanos_since(start);
    let options = GetOptions {
        quorum: true,
        ..GetOptions::default()
    };
    let result = keys::get(client, key, &options).await;
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
    let mut n = 0u64;
    while clock::now() < until {
        n += 1;
        if n.is_multiple_of(50) {
            // As etcd's client auto-syncs: members come and go.
            let _ = http.sync().await;
        }
        let value = format!("c{client}-{n}");
        let (key, kind, prev) = {
            let mut rng = madsim::rand::thread_rng();
            let key = KEYS[rng.gen_range(0..KEYS.len())];
            let prev = format!("c{}-{}", rng.gen_range(0..4), rng.gen_range(1..=n.max(1)));
            (key, rng.gen_range(0..100), prev)
        };
        if kind < 25 {
            checked_read(&mut http, client, key, &history, start).await;
        } else if kind < 88 {
            let set = |prev_exist, prev_value: &str| SetOptions {
                prev_exist,
                prev_value: prev_value.to_owned(),
                ..SetOptions::default()
            };
            let call = nanos_since(start);
            let (input, result) = match kind {
                25..=44 => (
                    KvInput::Set(value.clone()),
                    keys::set(&mut http, key, &value, &set(PrevExist::Ignore, "")).await,
                ),
                45..=54 => (
                    KvInput::Create(value.clone()),
                    keys::set(&mut http, key, &value, &set(PrevExist::NoExist, "")).await,
                ),
                55..=64 => (
                    KvInput::Update(value.clone()),
                    keys::set(&mut http, key, &value, &set(PrevExist::Exist, "")).await,
                ),
                65..=76 => (
                    KvInput::CompareAndSwap {
                        prev: prev.clone(),
                        value: value.clone(),
                    },
                    keys::set(&mut http, key, &value, &set(PrevExist::Ignore, &prev)).await,
                ),
                77..=82 => (
                    KvInput::Delete,
                    keys::delete(&mut http, key, &DeleteOptions::default()).await,
                ),
                _ => (
                    KvInput::CompareAndDelete { prev: prev.clone() },
                    keys::delete(
                        &mut http,
                        key,
                        &DeleteOptions {
                            prev_value: prev,
                            ..DeleteOptions::default()
                        },
                    )
                    .await,
                ),
            };
            // A write never sent is certainly not applied: nothing to check.
            if !matches!(result, Err(ClientError::Unreachable(_))) {
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
            }
        } else {
            // Traffic the checker does not model: TTL keys (expired by the leader's Sync),
            // in-order keys and plain local reads.
            let ttl = madsim::rand::thread_rng().gen_range(1..3);
            let result = match kind {
                88..=93 => {
                    let options = SetOptions {
                        ttl,
                        ..SetOptions::default()
                    };
                    keys::set(&mut http, &format!("/ttl/{client}"), &value, &options).await
                }
                94..=96 => keys::create_in_order(&mut http, "/queue", &value, 0).await,
                _ => {
                    let options = GetOptions {
                        recursive: true,
                        ..GetOptions::default()
                    };
                    keys::get(&mut http, "/ttl", &options).await
                }
            };
            if result.is_ok() {
                history.acknowledge();
            }
        }
        let pause = madsim::rand::thread_rng().gen_range(0..30);
        madsim::time::sleep(Duration::from_millis(pause)).await;
    }
}
