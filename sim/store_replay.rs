//! The store is a deterministic function of the entries applied to it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use etcd::store::{Condition, Content, Store, TtlOptions};
use etcd::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::seeds::for_each_seed;

/// One replicated log entry, as the node will apply it: an operation and the leader's time.
#[derive(Clone, Debug)]
enum Entry {
    Set {
        key: String,
        value: String,
        ttl: Option<u64>,
    },
    Create {
        key: String,
        dir: bool,
    },
    CreateInOrder {
        dir: String,
    },
    Update {
        key: String,
        value: String,
        ttl: Option<u64>,
        refresh: bool,
    },
    Cas {
        key: String,
        prev: String,
        value: String,
    },
    Cad {
        key: String,
        prev_index: u64,
    },
    Delete {
        key: String,
        recursive: bool,
    },
    /// The leader's periodic clock tick that drives TTL expiry on every member alike.
    Sync,
}

fn log(seed: u64, len: usize) -> Vec<(i64, Entry)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut now = 1_764_000_000_000_000_000i64;
    let key = |rng: &mut ChaCha8Rng| {
        let depth = rng.gen_range(1..=3);
        (0..depth)
            .map(|_| ["a", "b", "c", "_h"][rng.gen_range(0..4)])
            .fold(String::new(), |k, s| k + "/" + s)
    };
    let value = |rng: &mut ChaCha8Rng| format!("v{}", rng.gen_range(0..4));
    (0..len)
        .map(|_| {
            now += rng.gen_range(0..400_000_000);
            let ttl = rng.gen_bool(0.2).then(|| rng.gen_range(0..3));
            let entry = match rng.gen_range(0..9) {
                0 => Entry::Set {
                    key: key(&mut rng),
                    value: value(&mut rng),
                    ttl,
                },
                1 => Entry::Create {
                    key: key(&mut rng),
                    dir: rng.gen_bool(0.3),
                },
                2 => Entry::CreateInOrder { dir: key(&mut rng) },
                3 => Entry::Update {
                    key: key(&mut rng),
                    value: value(&mut rng),
                    ttl,
                    refresh: rng.gen_bool(0.2),
                },
                4 => Entry::Cas {
                    key: key(&mut rng),
                    prev: value(&mut rng),
                    value: value(&mut rng),
                },
                5 => Entry::Cad {
                    key: key(&mut rng),
                    prev_index: rng.gen_range(0..40),
                },
                6 => Entry::Delete {
                    key: key(&mut rng),
                    recursive: rng.gen_bool(0.5),
                },
                _ => Entry::Sync,
            };
            (now, entry)
        })
        .collect()
}

/// Applies entries to a store, hashing every answer into `trace`.
fn apply_to(store: &mut Store, entries: &[(i64, Entry)], trace: &mut DefaultHasher) {
    for (now, entry) in entries {
        let now = Timestamp::from_unix_nanos(*now);
        let ttl = |secs: &Option<u64>| TtlOptions {
            expire_at: secs.and_then(|s| now.checked_add_secs(s)),
            refresh: false,
        };
        let answer = match entry {
            Entry::Set { key, value, ttl: t } => store.set(key, Content::Value(value), ttl(t), now),
            Entry::Create { key, dir } => {
                let content = if *dir {
                    Content::Dir
                } else {
                    Content::Value("")
                };
                store.create(key, content, TtlOptions::PERMANENT, now)
            }
            Entry::CreateInOrder { dir } => {
                store.create_in_order(dir, Content::Value("job"), TtlOptions::PERMANENT, now)
            }
            Entry::Update {
                key,
                value,
                ttl: t,
                refresh,
            } => {
                let opts = TtlOptions {
                    refresh: *refresh,
                    ..ttl(t)
                };
                store.update(key, value, opts, now)
            }
            Entry::Cas { key, prev, value } => {
                let c = Condition {
                    prev_value: Some(prev),
                    prev_index: None,
                };
                store.compare_and_swap(key, c, value, TtlOptions::PERMANENT, now)
            }
            Entry::Cad { key, prev_index } => {
                let c = Condition {
                    prev_value: None,
                    prev_index: Some(*prev_index),
                };
                store.compare_and_delete(key, c, now)
            }
            Entry::Delete { key, recursive } => store.delete(key, *recursive, *recursive, now),
            Entry::Sync => {
                for expired in store.expire(now) {
                    expired.to_json().hash(trace);
                }
                continue;
            }
        };
        match answer {
            Ok(event) => event.to_json().hash(trace),
            Err(error) => error.to_json().hash(trace),
        }
    }
}

/// Applies a log to a fresh store; returns a hash of every answer and the final snapshot.
fn apply(entries: &[(i64, Entry)]) -> (u64, Vec<u8>) {
    let mut store = Store::new();
    let mut trace = DefaultHasher::new();
    apply_to(&mut store, entries, &mut trace);
    (trace.finish(), store.save())
}

#[test]
fn members_applying_the_same_log_end_equal() {
    for_each_seed("members_applying_the_same_log_end_equal", 200, |seed| {
        let entries = log(seed, 300);
        let (trace_a, state_a) = apply(&entries);
        let (trace_b, state_b) = apply(&entries);
        assert_eq!(trace_a, trace_b, "same log, different answers");
        assert!(state_a == state_b, "same log, different stores");
    })
    .unwrap_or_else(|failed| panic!("{failed}"));
}

#[test]
fn a_member_restored_from_a_snapshot_continues_like_the_others() {
    for_each_seed(
        "a_member_restored_from_a_snapshot_continues_like_the_others",
        100,
        |seed| {
            let entries = log(seed, 300);
            let cut = (seed as usize * 37) % entries.len();
            let (before, after) = entries.split_at(cut);

            let mut live = Store::new();
            apply_to(&mut live, before, &mut DefaultHasher::new());
            let mut restored = Store::restore(&live.save()).expect("a snapshot restores");

            let (mut live_trace, mut restored_trace) = (DefaultHasher::new(), DefaultHasher::new());
            apply_to(&mut live, after, &mut live_trace);
            apply_to(&mut restored, after, &mut restored_trace);
            assert_eq!(
                live_trace.finish(),
                restored_trace.finish(),
                "answers differ after the cut at {cut}"
            );
            assert!(
                live.save() == restored.save(),
                "stores differ after the cut at {cut}"
            );
        },
    )
    .unwrap_or_else(|failed| panic!("{failed}"));
}

#[test]
fn different_seeds_give_different_traces() {
    let (a, _) = apply(&log(1, 300));
    let (b, _) = apply(&log(2, 300));
    assert_ne!(a, b, "the workload generator ignores its seed");
}
