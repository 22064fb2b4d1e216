//! Simulated clients: a mix of v2 operations on a few shared keys, every call recorded with
//! when it started, when (or whether) it returned and what it was told.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock;
use etcd::lincheck::kv::{KvInput, KvOutput};
use etcd::lincheck::Operation;
use etcd::request::Op;
use etcd::store::Event;
use etcd::{Error, ErrorCode};
use madsim::rand::Rng;

use crate::cluster::{Cluster, Member};

/// Keys every client fights over; their histories are checked for linearizability.
pub const KEYS: [&str; 4] = ["/k0", "/k1", "/k2", "/k3"];

#[derive(Clone, Debug)]
pub struct Recorded {
    pub key: String,
    pub op: Operation<KvInput, KvOutput>,
}

#[derive(Clone, Default)]
pub struct History {
    ops: Arc<Mutex<Vec<Recorded>>>,
    /// Acknowledged operations of any kind (checked ones and the rest).
    acknowledged: Arc<Mutex<u64>>,
}

impl History {
    pub fn record(&self, key: &str, op: Operation<KvInput, KvOutput>) {
        self.ops.lock().unwrap().push(Recorded {
            key: key.to_owned(),
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

/// The model's view of a write's answer; `None` when the outcome is unknown.
fn write_outcome(result: &Result<Event, Error>) -> Option<KvOutput> {
    match result {
        Ok(_) => Some(KvOutput::Done),
        Err(e)
            if matches!(
                e.code,
                ErrorCode::KeyNotFound | ErrorCode::TestFailed | ErrorCode::NodeExist
            ) =>
        {
            Some(KvOutput::Refused)
        }
        Err(_) => None,
    }
}

fn read_outcome(result: &Result<Event, Error>) -> Option<KvOutput> {
    match result {
        Ok(event) => Some(KvOutput::Value(event.node.value.clone())),
        Err(e) if e.code == ErrorCode::KeyNotFound => Some(KvOutput::Value(None)),
        Err(_) => None,
    }
}

/// Runs a quorum read of `key` on `member` and records it.
pub async fn checked_read(member: &Member, key: &str, history: &History, start: Duration) {
    let call = nanos_since(start);
    let result = member.quorum_get(key, false).await;
    if let Some(output) = read_outcome(&result) {
        history.record(
            key,
            Operation {
                call,
                ret: Some(nanos_since(start)),
                input: KvInput::Get,
                output: Some(output),
            },
        );
    }
}

/// One client: operations until `until`, each on a running member chosen at random.
pub async fn client(
    cluster: Cluster,
    history: History,
    client: u64,
    start: Duration,
    until: Duration,
) {
    let mut n = 0u64;
    while clock::now() < until {
        let Some(member) = cluster.any_member() else {
            madsim::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        n += 1;
        let value = format!("c{client}-{n}");
        let (key, kind, prev) = {
            let mut rng = madsim::rand::thread_rng();
            let key = KEYS[rng.gen_range(0..KEYS.len())];
            let prev = format!("c{}-{}", rng.gen_range(0..4), rng.gen_range(1..=n.max(1)));
            (key, rng.gen_range(0..100), prev)
        };
        if kind < 25 {
            checked_read(&member, key, &history, start).await;
        } else if kind < 88 {
            let (input, op) = match kind {
                25..=44 => (
                    KvInput::Set(value.clone()),
                    Op::Set {
                        key: key.into(),
                        value: Some(value),
                        ttl: None,
                        refresh: false,
                    },
                ),
                45..=54 => (
                    KvInput::Create(value.clone()),
                    Op::Create {
                        key: key.into(),
                        value: Some(value),
                        ttl: None,
                    },
                ),
                55..=64 => (
                    KvInput::Update(value.clone()),
                    Op::Update {
                        key: key.into(),
                        value,
                        ttl: None,
                        refresh: false,
                    },
                ),
                65..=76 => (
                    KvInput::CompareAndSwap {
                        prev: prev.clone(),
                        value: value.clone(),
                    },
                    Op::CompareAndSwap {
                        key: key.into(),
                        prev_value: Some(prev),
                        prev_index: None,
                        value,
                        ttl: None,
                        refresh: false,
                    },
                ),
                77..=82 => (
                    KvInput::Delete,
                    Op::Delete {
                        key: key.into(),
                        dir: false,
                        recursive: false,
                    },
                ),
                _ => (
                    KvInput::CompareAndDelete { prev: prev.clone() },
                    Op::CompareAndDelete {
                        key: key.into(),
                        prev_value: Some(prev),
                        prev_index: None,
                    },
                ),
            };
            let call = nanos_since(start);
            let result = member.write(op).await;
            let output = write_outcome(&result);
            if output.is_some() {
                history.acknowledge();
            }
            history.record(
                key,
                Operation {
                    call,
                    ret: output.as_ref().map(|_| nanos_since(start)),
                    input,
                    output,
                },
            );
        } else {
            // Traffic the checker does not model: TTL keys (expired by the leader's Sync),
            // in-order keys and plain local reads.
            let ttl = madsim::rand::thread_rng().gen_range(1..3);
            let result = match kind {
                88..=93 => {
                    let op = Op::Set {
                        key: format!("/ttl/{client}"),
                        value: Some(value),
                        ttl: Some(ttl),
                        refresh: false,
                    };
                    member.write(op).await
                }
                94..=96 => {
                    member
                        .write(Op::CreateInOrder {
                            dir: "/queue".into(),
                            value: Some(value),
                            ttl: None,
                        })
                        .await
                }
                _ => member.get("/ttl", true),
            };
            if result.is_ok() {
                history.acknowledge();
            }
        }
        let pause = madsim::rand::thread_rng().gen_range(0..30);
        madsim::time::sleep(Duration::from_millis(pause)).await;
    }
}
