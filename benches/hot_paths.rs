//! Regression benchmarks for the hot paths of a write: reading the HTTP request, applying the
//! operation to the store, and appending it to the log. `cargo bench`; compare runs with
//! criterion's saved baselines (`cargo bench -- --save-baseline before`, then
//! `-- --baseline before`).

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use etcd::request::{Applied, Op, Proposal};
use etcd::runtime::SimDisk;
use etcd::state::State;
use etcd::wal::Wal;
use etcd::Timestamp;
use futures_util::FutureExt;
use raft::eraftpb::{Entry, HardState};

/// Applies a write to the keyspace, which must succeed.
fn apply(state: &mut State, proposal: &Proposal) -> etcd::store::Event {
    match etcd::request::apply(state, proposal) {
        Applied::Keys(Ok(event)) => event,
        other => panic!("{other:?}"),
    }
}

fn set(key: String) -> Proposal {
    Proposal {
        id: 7,
        time: Timestamp::from_unix_secs(1_700_000_000),
        op: Op::Set {
            key,
            value: Some("x".repeat(256)),
            ttl: None,
            refresh: false,
        },
    }
}

fn request_parsing(c: &mut Criterion) {
    let body = format!("value={}", "x".repeat(256));
    c.bench_function("parse a PUT /v2/keys request", |b| {
        b.iter(|| {
            etcd::api::keys::interpret(
                "PUT",
                black_box("/v2/keys/bench/client-17/12345"),
                black_box("prevExist=false"),
                Some(black_box(body.as_bytes())),
            )
            .unwrap()
        })
    });
    let proposal = set("/bench/key".into());
    let encoded = proposal.encode();
    c.bench_function("decode a proposal from a log entry", |b| {
        b.iter(|| Proposal::decode(black_box(&encoded)).unwrap())
    });
}

fn store_apply(c: &mut Criterion) {
    // A store already holding 10,000 keys, as a busy member's would.
    let mut state = State::default();
    for i in 0..10_000 {
        apply(&mut state, &set(format!("/bench/warm/{i}")));
    }
    let mut n = 0u64;
    c.bench_function("apply a set to a store of 10,000 keys", |b| {
        b.iter_batched(
            || {
                n += 1;
                set(format!("/bench/new/{n}"))
            },
            |p| apply(&mut state, &p),
            BatchSize::SmallInput,
        )
    });
}

fn wal_append(c: &mut Criterion) {
    let disk = SimDisk::new();
    let mut wal = Wal::create(disk, Path::new("/wal"), 1, 1 << 20)
        .now_or_never()
        .unwrap()
        .unwrap();
    let data = set("/bench/key".into()).encode();
    let mut index = 0u64;
    c.bench_function("append one entry and the hard state to the log", |b| {
        b.iter(|| {
            index += 1;
            let entry = Entry {
                index,
                term: 1,
                data: data.clone().into(),
                ..Entry::default()
            };
            let hs = HardState {
                term: 1,
                commit: index,
                ..HardState::default()
            };
            wal.save(Some(&hs), &[entry])
                .now_or_never()
                .unwrap()
                .unwrap();
            // Old segments go, as snapshots release them, so memory stays flat.
            if index.is_multiple_of(20_000) {
                wal.release_to(index - 1).now_or_never().unwrap().unwrap();
            }
        })
    });
}

criterion_group!(hot_paths, request_parsing, store_apply, wal_append);
criterion_main!(hot_paths);
