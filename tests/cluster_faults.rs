//! A real 3-member cluster under kill -9: a concurrent client history checked for
//! linearizability with the simulator's checker, and a watch that outlives its leader.
// Tests of the real world: they start processes, open sockets and read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use etcd::lincheck::kv::{KvInput, KvModel, KvOutput};
use etcd::lincheck::{check, Operation, Verdict};

/// A small xorshift: real-process tests need variety, not reproducibility.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

type History = Arc<Mutex<Vec<(String, Operation<KvInput, KvOutput>)>>>;

fn error_code(body: &str) -> Option<u64> {
    let rest = body.split("\"errorCode\":").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn value_of(body: &str) -> Option<String> {
    let node = body.split("\"node\":").nth(1)?;
    let rest = node.split("\"value\":\"").nth(1)?;
    Some(rest.split('"').next()?.to_owned())
}

/// One client operation against one member; records what the model needs to know.
fn client_op(rng: &mut Rng, port: u16, client: u64, n: u64, start: Instant, history: &History) {
    let key = ["/k0", "/k1"][rng.below(2) as usize];
    let value = format!("c{client}-{n}");
    let prev = format!("c{}-{}", rng.below(3), 1 + rng.below(n.max(1)));
    let (input, method, path, form) = match rng.below(6) {
        0 | 1 => (
            KvInput::Get,
            "GET",
            format!("/v2/keys{key}?quorum=true"),
            String::new(),
        ),
        2 => (
            KvInput::Set(value.clone()),
            "PUT",
            format!("/v2/keys{key}"),
            format!("value={value}"),
        ),
        3 => (
            KvInput::CompareAndSwap {
                prev: prev.clone(),
                value: value.clone(),
            },
            "PUT",
            format!("/v2/keys{key}?prevValue={prev}"),
            format!("value={value}"),
        ),
        4 => (
            KvInput::Create(value.clone()),
            "PUT",
            format!("/v2/keys{key}?prevExist=false"),
            format!("value={value}"),
        ),
        _ => (
            KvInput::Delete,
            "DELETE",
            format!("/v2/keys{key}"),
            String::new(),
        ),
    };
    let call = start.elapsed().as_nanos() as u64;
    let reply = http(method, port, &path, &form);
    let ret = start.elapsed().as_nanos() as u64;
    let output = match (&input, reply) {
        (_, None) => None, // connection refused or cut: unknown
        (KvInput::Get, Some(r)) if r.status == 200 => Some(KvOutput::Value(value_of(&r.body))),
        (KvInput::Get, Some(r)) if error_code(&r.body) == Some(100) => Some(KvOutput::Value(None)),
        (KvInput::Get, Some(_)) => return, // a failed read changes nothing
        (_, Some(r)) if r.status < 300 => Some(KvOutput::Done),
        (_, Some(r)) if matches!(error_code(&r.body), Some(100 | 101 | 105)) => {
            Some(KvOutput::Refused)
        }
        (_, Some(_)) => None, // a timeout: it may still happen
    };
    let op = Operation {
        call,
        ret: output.as_ref().map(|_| ret),
        input,
        output,
    };
    history.lock().unwrap().push((key.to_owned(), op));
}

#[test]
fn a_client_history_under_kill_9_is_linearizable() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill -9 workload seed {seed}");
    let members = Arc::new(Mutex::new(cluster("lin", 3)));
    for m in members.lock().unwrap().iter_mut() {
        m.start();
    }
    let ports: Vec<u16> = members.lock().unwrap().iter().map(|m| m.client).collect();
    wait_for("a leader", || leader(&members.lock().unwrap()).is_some());

    let start = Instant::now();
    let until = start + Duration::from_secs(8);
    let history: History = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (history, ports) = (Arc::clone(&history), ports.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed.wrapping_add(client * 7919));
                let mut n = 0;
                while Instant::now() < until {
                    n += 1;
                    let port = ports[rng.below(3) as usize];
                    client_op(&mut rng, port, client, n, start, &history);
                }
            })
        })
        .collect();
    let nemesis = {
        let members = Arc::clone(&members);
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ 0xdead_beef);
            let mut kills = 0;
            while Instant::now() + Duration::from_secs(2) < until {
                std::thread::sleep(Duration::from_millis(700 + rng.below(800)));
                let victim = rng.below(3) as usize;
                members.lock().unwrap()[victim].kill9();
                std::thread::sleep(Duration::from_millis(300 + rng.below(700)));
                members.lock().unwrap()[victim].start();
                kills += 1;
            }
            kills
        })
    };
    for client in clients {
        client.join().unwrap();
    }
    let kills = nemesis.join().unwrap();
    assert!(kills >= 2, "the nemesis killed only {kills} members");

    // Everyone up again; each key read once more, then the whole history checked.
    wait_for("a leader after the faults", || {
        leader(&members.lock().unwrap()).is_some()
    });
    let mut rng = Rng::new(seed);
    for key in ["/k0", "/k1"] {
        loop {
            let before = history.lock().unwrap().len();
            let port = ports[rng.below(3) as usize];
            client_op_read(port, key, start, &history);
            if history.lock().unwrap().len() > before {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let history = history.lock().unwrap().clone();
    let mut by_key: BTreeMap<String, Vec<Operation<KvInput, KvOutput>>> = BTreeMap::new();
    for (key, op) in history {
        by_key.entry(key).or_default().push(op);
    }
    let acknowledged: usize = by_key
        .values()
        .flatten()
        .filter(|op| op.output.is_some())
        .count();
    assert!(
        acknowledged > 50,
        "only {acknowledged} operations completed (seed {seed})"
    );
    for (key, ops) in &by_key {
        let verdict = check(&KvModel, ops, 20_000_000);
        assert_eq!(
            verdict,
            Verdict::Linearizable,
            "{key} (seed {seed}): {ops:#?}"
        );
    }
}

fn client_op_read(port: u16, key: &str, start: Instant, history: &History) {
    let call = start.elapsed().as_nanos() as u64;
    let Some(reply) = http("GET", port, &format!("/v2/keys{key}?quorum=true"), "") else {
        return;
    };
    let output = match reply.status {
        200 => KvOutput::Value(value_of(&reply.body)),
        404 => KvOutput::Value(None),
        _ => return,
    };
    let op = Operation {
        call,
        ret: Some(start.elapsed().as_nanos() as u64),
        input: KvInput::Get,
        output: Some(output),
    };
    history.lock().unwrap().push((key.to_owned(), op));
}

#[test]
fn a_watch_held_across_a_leader_change_delivers_the_next_event() {
    let mut members = running_cluster("watch-leader", 3);
    let old = leader(&members).unwrap();
    let follower = (old + 1) % 3;
    let port = members[follower].client;
    let watcher = std::thread::spawn(move || http("GET", port, "/v2/keys/moved?wait=true", ""));
    std::thread::sleep(Duration::from_millis(300));
    members[old].kill9();
    wait_for("a new leader", || leader(&members).is_some());
    let reply = put(members[follower].client, "/moved", "value=after");
    assert!(reply.status < 300, "{}", reply.body);
    let event = watcher.join().unwrap().expect("the watch answers");
    assert!(event.body.contains("\"value\":\"after\""), "{}", event.body);
}
