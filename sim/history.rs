//! What the simulated clients did and were told: every checked operation, with the object it
//! touched, and a tally of every kind of operation for the coverage line.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use etcd::lincheck::dir::{DirInput, DirOutput};
use etcd::lincheck::kv::{KvInput, KvOutput};
use etcd::lincheck::Operation;

#[derive(Clone, Debug)]
pub struct Recorded<I, O> {
    /// The key, or for a directory operation the directory's key.
    pub key: String,
    /// Which client made it: its lane on a failure's timeline.
    pub client: u64,
    pub op: Operation<I, O>,
}

/// How the operations of one kind ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub done: usize,
    /// Answered with an etcd error: a precondition failed, or the store said no.
    pub refused: usize,
    /// Sent, and never answered.
    pub unknown: usize,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.done += other.done;
        self.refused += other.refused;
        self.unknown += other.unknown;
    }
}

/// How an operation ended, for the tally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Done,
    Refused,
    Unknown,
}

#[derive(Clone, Default)]
pub struct History {
    keys: Arc<Mutex<Vec<Recorded<KvInput, KvOutput>>>>,
    dirs: Arc<Mutex<Vec<Recorded<DirInput, DirOutput>>>>,
    /// Acknowledged operations of any kind (checked ones and the rest).
    acknowledged: Arc<Mutex<u64>>,
    tally: Arc<Mutex<BTreeMap<&'static str, Tally>>>,
    /// What a client saw that no member may ever show.
    violations: Arc<Mutex<Vec<String>>>,
}

impl History {
    pub fn record(&self, key: &str, client: u64, op: Operation<KvInput, KvOutput>) {
        self.keys.lock().unwrap().push(Recorded {
            key: key.to_owned(),
            client,
            op,
        });
    }

    pub fn record_dir(&self, dir: &str, client: u64, op: Operation<DirInput, DirOutput>) {
        self.dirs.lock().unwrap().push(Recorded {
            key: dir.to_owned(),
            client,
            op,
        });
    }

    pub fn ops(&self) -> Vec<Recorded<KvInput, KvOutput>> {
        self.keys.lock().unwrap().clone()
    }

    pub fn dir_ops(&self) -> Vec<Recorded<DirInput, DirOutput>> {
        self.dirs.lock().unwrap().clone()
    }

    pub fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    pub fn acknowledge(&self) {
        *self.acknowledged.lock().unwrap() += 1;
    }

    pub fn acknowledged(&self) -> u64 {
        *self.acknowledged.lock().unwrap()
    }

    /// Counts one operation of `kind` that was sent.
    pub fn count(&self, kind: &'static str, ending: Ending) {
        let mut tally = self.tally.lock().unwrap();
        let t = tally.entry(kind).or_default();
        match ending {
            Ending::Done => t.done += 1,
            Ending::Refused => t.refused += 1,
            Ending::Unknown => t.unknown += 1,
        }
    }

    pub fn tally(&self) -> BTreeMap<String, Tally> {
        self.tally
            .lock()
            .unwrap()
            .iter()
            .map(|(kind, t)| (kind.to_string(), *t))
            .collect()
    }

    /// A digest of everything the clients saw, in order: equal for equal runs.
    pub fn digest(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for r in self.keys.lock().unwrap().iter() {
            r.key.hash(&mut h);
            (r.op.call, r.op.ret).hash(&mut h);
            r.op.input.hash(&mut h);
            r.op.output.hash(&mut h);
        }
        for r in self.dirs.lock().unwrap().iter() {
            r.key.hash(&mut h);
            (r.op.call, r.op.ret).hash(&mut h);
            r.op.input.hash(&mut h);
            r.op.output.hash(&mut h);
        }
        h.finish()
    }
}
