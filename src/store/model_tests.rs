//! Property tests: the store against a deliberately simple reference model.
//!
//! The model keeps every node in one flat map from full key to node and re-derives everything
//! (children, subtrees, causes of errors) by scanning it. It shares no code with the store's
//! tree, so agreement on every result, error and event is real evidence.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

#[derive(Clone, Debug)]
struct MNode {
    dir: bool,
    value: String,
    created: u64,
    modified: u64,
    expire: Option<Timestamp>,
}

#[derive(Clone, Debug, Default)]
struct Model {
    nodes: BTreeMap<String, MNode>,
    index: u64,
}

type MResult = Result<Event, (ErrorCode, String, u64)>;

/// Normalisation written independently of `path::clean`: resolve segments one by one.
fn model_clean(key: &str) -> String {
    let mut stack: Vec<String> = Vec::new();
    for seg in key.split('/') {
        if seg == ".." {
            stack.pop();
        } else if !seg.is_empty() && seg != "." {
            stack.push(seg.to_string());
        }
    }
    format!("/{}", stack.join("/"))
}

/// Proper ancestors of a clean key below the root, shortest first, then the key itself.
fn chain(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut acc = String::new();
    for seg in key.split('/').filter(|s| !s.is_empty()) {
        acc.push('/');
        acc.push_str(seg);
        out.push(acc.clone());
    }
    out
}

fn parent_of(key: &str) -> String {
    let chain = chain(key);
    if chain.len() <= 1 {
        "/".into()
    } else {
        chain[chain.len() - 2].clone()
    }
}

fn under(key: &str, dir: &str) -> bool {
    if dir == "/" {
        return key != "/";
    }
    key.len() > dir.len() && key.starts_with(dir) && key.as_bytes()[dir.len()] == b'/'
}

fn hidden_relative(watched: &str, key: &str) -> bool {
    let rest = if watched == "/" {
        key
    } else {
        &key[watched.len()..]
    };
    rest.split('/').any(|s| s.starts_with('_'))
}

impl Model {
    fn err(&self, code: ErrorCode, cause: &str) -> (ErrorCode, String, u64) {
        (code, cause.to_string(), self.index)
    }

    fn lookup(&self, key: &str) -> Result<Option<&MNode>, (ErrorCode, String, u64)> {
        if key == "/" {
            return Ok(None); // the root
        }
        let chain = chain(key);
        for (i, p) in chain.iter().enumerate() {
            match self.nodes.get(p) {
                None => return Err(self.err(ErrorCode::KeyNotFound, p)),
                Some(n) if !n.dir && i + 1 < chain.len() => {
                    return Err(self.err(ErrorCode::NotDir, p))
                }
                Some(n) if i + 1 == chain.len() => return Ok(Some(n)),
                Some(_) => {}
            }
        }
        unreachable!()
    }

    fn children(&self, key: &str) -> Vec<String> {
        self.nodes
            .keys()
            .filter(|k| under(k, key) && parent_of(k) == key)
            .cloned()
            .collect()
    }

    fn repr(&self, key: &str, depth: u8, now: Timestamp) -> NodeExtern {
        let mut out = NodeExtern::default();
        let is_dir = match self.nodes.get(key) {
            None => true, // the root
            Some(n) => {
                out.key = key.to_string();
                out.created_index = n.created;
                out.modified_index = n.modified;
                if let Some(at) = n.expire {
                    out.expiration = Some(at);
                    out.ttl = at.ttl_secs_from(now);
                }
                if !n.dir {
                    out.value = Some(n.value.clone());
                }
                n.dir
            }
        };
        out.dir = is_dir;
        if is_dir && depth > 0 {
            let next = if depth == 2 { 2 } else { 0 };
            for child in self.children(key) {
                let name = child.rsplit('/').next().unwrap();
                if !name.starts_with('_') {
                    out.nodes.push(self.repr(&child, next, now));
                }
            }
        }
        out
    }

    fn remove_subtree(&mut self, key: &str) {
        self.nodes.retain(|k, _| k != key && !under(k, key));
    }

    fn get(&self, key: &str, recursive: bool, now: Timestamp) -> MResult {
        let key = model_clean(key);
        self.lookup(&key)?;
        Ok(Event {
            action: Action::Get,
            node: self.repr(&key, if recursive { 2 } else { 1 }, now),
            prev_node: None,
            etcd_index: self.index,
            refresh: false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        key: &str,
        dir: bool,
        value: &str,
        replace: bool,
        expire: Option<Timestamp>,
        refresh: bool,
        action: Action,
        now: Timestamp,
    ) -> MResult {
        if key == "/" {
            return Err(self.err(ErrorCode::RootReadOnly, "/"));
        }
        let prev = match self.lookup(key) {
            Ok(Some(_)) if !replace => return Err(self.err(ErrorCode::NodeExist, key)),
            Ok(Some(n)) if n.dir => return Err(self.err(ErrorCode::NotFile, key)),
            Ok(_) => Some(self.repr(key, 0, now)),
            Err(e) if e.0 == ErrorCode::KeyNotFound => None,
            Err(e) => return Err(e),
        };
        let next = self.index + 1;
        let chain = chain(key);
        for p in &chain[..chain.len() - 1] {
            self.nodes.entry(p.clone()).or_insert(MNode {
                dir: true,
                value: String::new(),
                created: next,
                modified: next,
                expire: None,
            });
        }
        self.nodes.insert(
            key.to_string(),
            MNode {
                dir,
                value: if dir {
                    String::new()
                } else {
                    value.to_string()
                },
                created: next,
                modified: next,
                expire,
            },
        );
        self.index = next;
        Ok(Event {
            action,
            node: self.repr(key, 0, now),
            prev_node: prev,
            etcd_index: next,
            refresh,
        })
    }

    fn set(
        &mut self,
        key: &str,
        dir: bool,
        value: &str,
        ttl: TtlOptions,
        now: Timestamp,
    ) -> MResult {
        let key = model_clean(key);
        let existing = match self.lookup(&key) {
            Ok(n) => n.cloned(),
            Err(e) if e.0 != ErrorCode::KeyNotFound || ttl.refresh => return Err(e),
            Err(_) => None,
        };
        let (dir, value) = match (ttl.refresh, existing) {
            (true, Some(n)) => (dir, n.value),
            (true, None) => (false, String::new()), // the root: refused below
            (false, _) => (dir, value.to_string()),
        };
        self.put(
            &key,
            dir,
            &value,
            true,
            ttl.expire_at,
            ttl.refresh,
            Action::Set,
            now,
        )
    }

    fn create(
        &mut self,
        key: &str,
        dir: bool,
        value: &str,
        expire: Option<Timestamp>,
        now: Timestamp,
    ) -> MResult {
        let key = model_clean(key);
        self.put(&key, dir, value, false, expire, false, Action::Create, now)
    }

    fn create_in_order(&mut self, key: &str, dir: bool, value: &str, now: Timestamp) -> MResult {
        let key = model_clean(&format!("{key}/{:020}", self.index + 1));
        self.put(&key, dir, value, false, None, false, Action::Create, now)
    }

    fn rewrite(
        &mut self,
        key: &str,
        action: Action,
        value: String,
        ttl: TtlOptions,
        now: Timestamp,
    ) -> MResult {
        let next = self.index + 1;
        let prev = self.repr(key, 0, now);
        let n = self.nodes.get_mut(key).unwrap();
        if !n.dir {
            n.value = value;
            n.modified = next;
        }
        n.expire = ttl.expire_at;
        self.index = next;
        let mut node = self.repr(key, 0, now);
        node.modified_index = next;
        Ok(Event {
            action,
            node,
            prev_node: Some(prev),
            etcd_index: next,
            refresh: ttl.refresh,
        })
    }

    fn update(&mut self, key: &str, value: &str, ttl: TtlOptions, now: Timestamp) -> MResult {
        let key = model_clean(key);
        if key == "/" {
            return Err(self.err(ErrorCode::RootReadOnly, "/"));
        }
        let n = self.lookup(&key)?.unwrap().clone();
        if n.dir && !value.is_empty() {
            return Err(self.err(ErrorCode::NotFile, &key));
        }
        let value = if ttl.refresh {
            n.value
        } else {
            value.to_string()
        };
        self.rewrite(&key, Action::Update, value, ttl, now)
    }

    fn compare(
        &self,
        n: &MNode,
        prev_value: Option<&str>,
        prev_index: Option<u64>,
    ) -> Result<(), (ErrorCode, String, u64)> {
        let v_ok = prev_value.is_none_or(|v| v == n.value);
        let i_ok = prev_index.is_none_or(|i| i == n.modified);
        let cause = match (v_ok, i_ok) {
            (true, true) => return Ok(()),
            (false, true) => format!("[{} != {}]", prev_value.unwrap(), n.value),
            (true, false) => format!("[{} != {}]", prev_index.unwrap(), n.modified),
            (false, false) => format!(
                "[{} != {}] [{} != {}]",
                prev_value.unwrap(),
                n.value,
                prev_index.unwrap(),
                n.modified
            ),
        };
        Err(self.err(ErrorCode::TestFailed, &cause))
    }

    fn file_at(&self, key: &str) -> Result<MNode, (ErrorCode, String, u64)> {
        match self.lookup(key)? {
            Some(n) if !n.dir => Ok(n.clone()),
            _ => Err(self.err(ErrorCode::NotFile, key)),
        }
    }

    fn cas(
        &mut self,
        key: &str,
        pv: Option<&str>,
        pi: Option<u64>,
        value: &str,
        ttl: TtlOptions,
        now: Timestamp,
    ) -> MResult {
        let key = model_clean(key);
        if key == "/" {
            return Err(self.err(ErrorCode::RootReadOnly, "/"));
        }
        let n = self.file_at(&key)?;
        self.compare(&n, pv, pi)?;
        let value = if ttl.refresh {
            n.value
        } else {
            value.to_string()
        };
        self.rewrite(&key, Action::CompareAndSwap, value, ttl, now)
    }

    fn removal(&mut self, key: &str, action: Action, now: Timestamp) -> MResult {
        let n = self.nodes[key].clone();
        let prev = self.repr(key, 0, now);
        self.remove_subtree(key);
        self.index += 1;
        Ok(Event {
            action,
            node: NodeExtern {
                key: key.to_string(),
                dir: n.dir,
                modified_index: self.index,
                created_index: n.created,
                ..NodeExtern::default()
            },
            prev_node: Some(prev),
            etcd_index: self.index,
            refresh: false,
        })
    }

    fn delete(&mut self, key: &str, dir: bool, recursive: bool, now: Timestamp) -> MResult {
        let key = model_clean(key);
        if key == "/" {
            return Err(self.err(ErrorCode::RootReadOnly, "/"));
        }
        let n = self.lookup(&key)?.unwrap().clone();
        if n.dir {
            if !(dir || recursive) {
                return Err(self.err(ErrorCode::NotFile, &key));
            }
            if !recursive && !self.children(&key).is_empty() {
                return Err(self.err(ErrorCode::DirNotEmpty, &key));
            }
        }
        self.removal(&key, Action::Delete, now)
    }

    fn cad(&mut self, key: &str, pv: Option<&str>, pi: Option<u64>, now: Timestamp) -> MResult {
        let key = model_clean(key);
        if key == "/" {
            return Err(self.err(ErrorCode::NotFile, "")); // etcd's HTTP layer strips its "/1"
        }
        let n = self.file_at(&key)?;
        self.compare(&n, pv, pi)?;
        self.removal(&key, Action::CompareAndDelete, now)
    }

    fn expire(&mut self, cutoff: Timestamp) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            let due = self
                .nodes
                .iter()
                .filter_map(|(k, n)| {
                    n.expire
                        .filter(|at| *at <= cutoff)
                        .map(|at| (at, k.clone()))
                })
                .min();
            let Some((_, key)) = due else { break };
            out.push(self.removal(&key, Action::Expire, cutoff).unwrap());
        }
        out
    }
}

#[derive(Clone, Debug)]
enum Op {
    Get {
        key: &'static str,
        recursive: bool,
    },
    Set {
        key: &'static str,
        dir: bool,
        value: &'static str,
        ttl: Option<u8>,
        refresh: bool,
    },
    Create {
        key: &'static str,
        dir: bool,
        value: &'static str,
        ttl: Option<u8>,
    },
    CreateInOrder {
        key: &'static str,
        dir: bool,
        value: &'static str,
    },
    Update {
        key: &'static str,
        value: &'static str,
        ttl: Option<u8>,
        refresh: bool,
    },
    Cas {
        key: &'static str,
        pv: Option<&'static str>,
        pi: Option<u64>,
        value: &'static str,
        ttl: Option<u8>,
    },
    Delete {
        key: &'static str,
        dir: bool,
        recursive: bool,
    },
    Cad {
        key: &'static str,
        pv: Option<&'static str>,
        pi: Option<u64>,
    },
    Tick {
        millis: u16,
    },
}

const KEYS: &[&str] = &[
    "", "/", "/a", "/b", "/_h", "/a/b", "/a/_h", "/a/b/c", "/b/a", "/_h/a", "a//b/", "/a/../b",
    "/a/b/c/d", "/b/_h/x",
];
const VALUES: &[&str] = &["", "x", "y"];

fn op() -> impl Strategy<Value = Op> {
    let key = proptest::sample::select(KEYS);
    let value = proptest::sample::select(VALUES);
    let ttl = proptest::option::weighted(0.3, 0u8..4);
    let pv = proptest::option::of(proptest::sample::select(VALUES));
    let pi = proptest::option::of(0u64..16);
    prop_oneof![
        (key.clone(), any::<bool>()).prop_map(|(key, recursive)| Op::Get { key, recursive }),
        (
            key.clone(),
            proptest::bool::weighted(0.2),
            value.clone(),
            ttl.clone(),
            proptest::bool::weighted(0.1)
        )
            .prop_map(|(key, dir, value, ttl, refresh)| Op::Set {
                key,
                dir,
                value,
                ttl,
                refresh
            }),
        (
            key.clone(),
            proptest::bool::weighted(0.3),
            value.clone(),
            ttl.clone()
        )
            .prop_map(|(key, dir, value, ttl)| Op::Create {
                key,
                dir,
                value,
                ttl
            }),
        (key.clone(), proptest::bool::weighted(0.2), value.clone())
            .prop_map(|(key, dir, value)| Op::CreateInOrder { key, dir, value }),
        (
            key.clone(),
            value.clone(),
            ttl.clone(),
            proptest::bool::weighted(0.2)
        )
            .prop_map(|(key, value, ttl, refresh)| Op::Update {
                key,
                value,
                ttl,
                refresh
            }),
        (key.clone(), pv.clone(), pi.clone(), value, ttl).prop_map(|(key, pv, pi, value, ttl)| {
            Op::Cas {
                key,
                pv,
                pi,
                value,
                ttl,
            }
        }),
        (key.clone(), any::<bool>(), any::<bool>()).prop_map(|(key, dir, recursive)| Op::Delete {
            key,
            dir,
            recursive
        }),
        (key, pv, pi).prop_map(|(key, pv, pi)| Op::Cad { key, pv, pi }),
        (0u16..3000).prop_map(|millis| Op::Tick { millis }),
    ]
}

struct Pair {
    store: Store,
    model: Model,
    now: Timestamp,
}

fn ttl_opts(now: Timestamp, ttl: Option<u8>, refresh: bool) -> TtlOptions {
    TtlOptions {
        expire_at: ttl.map(|secs| now.checked_add_secs(u64::from(secs)).unwrap()),
        refresh,
    }
}

fn content(dir: bool, value: &str) -> Content<'_> {
    if dir {
        Content::Dir
    } else {
        Content::Value(value)
    }
}

fn plain(r: Result<Event, Error>) -> MResult {
    r.map_err(|e| (e.code, e.cause, e.index))
}

impl Pair {
    fn new() -> Pair {
        Pair {
            store: Store::new(),
            model: Model::default(),
            now: Timestamp::from_unix_secs(1_764_000_000),
        }
    }

    /// Applies one operation to both; returns the store's successful events and asserts the
    /// two agreed.
    fn apply(&mut self, op: &Op) -> Result<Vec<Event>, TestCaseError> {
        let (s, m, now) = (&mut self.store, &mut self.model, self.now);
        let (got, want): (Vec<MResult>, Vec<MResult>) = match *op {
            Op::Get { key, recursive } => (
                vec![plain(s.get(key, recursive, now))],
                vec![m.get(key, recursive, now)],
            ),
            Op::Set {
                key,
                dir,
                value,
                ttl,
                refresh,
            } => {
                let t = ttl_opts(now, ttl, refresh);
                (
                    vec![plain(s.set(key, content(dir, value), t, now))],
                    vec![m.set(key, dir, value, t, now)],
                )
            }
            Op::Create {
                key,
                dir,
                value,
                ttl,
            } => {
                let t = ttl_opts(now, ttl, false);
                (
                    vec![plain(s.create(key, content(dir, value), t, now))],
                    vec![m.create(key, dir, value, t.expire_at, now)],
                )
            }
            Op::CreateInOrder { key, dir, value } => (
                vec![plain(s.create_in_order(
                    key,
                    content(dir, value),
                    TtlOptions::PERMANENT,
                    now,
                ))],
                vec![m.create_in_order(key, dir, value, now)],
            ),
            Op::Update {
                key,
                value,
                ttl,
                refresh,
            } => {
                let t = ttl_opts(now, ttl, refresh);
                (
                    vec![plain(s.update(key, value, t, now))],
                    vec![m.update(key, value, t, now)],
                )
            }
            Op::Cas {
                key,
                pv,
                pi,
                value,
                ttl,
            } => {
                let t = ttl_opts(now, ttl, false);
                let c = Condition {
                    prev_value: pv,
                    prev_index: pi,
                };
                (
                    vec![plain(s.compare_and_swap(key, c, value, t, now))],
                    vec![m.cas(key, pv, pi, value, t, now)],
                )
            }
            Op::Delete {
                key,
                dir,
                recursive,
            } => (
                vec![plain(s.delete(key, dir, recursive, now))],
                vec![m.delete(key, dir, recursive, now)],
            ),
            Op::Cad { key, pv, pi } => {
                let c = Condition {
                    prev_value: pv,
                    prev_index: pi,
                };
                (
                    vec![plain(s.compare_and_delete(key, c, now))],
                    vec![m.cad(key, pv, pi, now)],
                )
            }
            Op::Tick { millis } => {
                self.now = now.saturating_add_nanos(i64::from(millis) * 1_000_000);
                let got = s.expire(self.now).into_iter().map(Ok).collect();
                let want = m.expire(self.now).into_iter().map(Ok).collect();
                (got, want)
            }
        };
        prop_assert_eq!(&got, &want, "after {:?}", op);
        prop_assert_eq!(self.store.index(), self.model.index);
        let writes = !matches!(op, Op::Get { .. });
        Ok(got
            .into_iter()
            .filter_map(Result::ok)
            .filter(|_| writes)
            .collect())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn store_agrees_with_the_reference_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut pair = Pair::new();
        let mut last_index = 0;
        for op in &ops {
            pair.apply(op)?;
            prop_assert!(pair.store.index() >= last_index, "the index went back");
            last_index = pair.store.index();
        }
        let everything = Op::Get { key: "/", recursive: true };
        pair.apply(&everything)?;
        // Hidden keys are invisible in listings: compare them one by one too.
        for key in KEYS {
            pair.apply(&Op::Get { key, recursive: true })?;
        }
    }

    #[test]
    fn snapshot_restore_then_continue_equals_continue(
        before in proptest::collection::vec(op(), 0..50),
        after in proptest::collection::vec(op(), 0..50),
    ) {
        let mut original = Pair::new();
        for op in &before {
            original.apply(op)?;
        }
        let bytes = original.store.save();
        let mut restored = Pair {
            store: Store::restore(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?,
            model: original.model.clone(),
            now: original.now,
        };
        prop_assert_eq!(restored.store.save(), bytes);
        for op in &after {
            let a = original.apply(op)?;
            let b = restored.apply(op)?;
            prop_assert_eq!(a, b);
        }
        prop_assert_eq!(original.store.save(), restored.store.save());
    }

    #[test]
    fn recursive_watcher_sees_every_event_below_it_once_in_order(
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut pair = Pair::new();
        let watched = ["/", "/a", "/b"];
        let mut watchers: Vec<Watcher> = watched
            .iter()
            .map(|w| pair.store.watch(w, true, true, 0).unwrap())
            .collect();
        let mut seen: Vec<Vec<Event>> = vec![Vec::new(); watched.len()];
        let mut all = Vec::new();
        for op in &ops {
            all.extend(pair.apply(op)?);
            for (w, seen) in watchers.iter_mut().zip(&mut seen) {
                loop {
                    match w.try_next() {
                        Next::Event(e) => seen.push(Event::clone(&e)),
                        Next::Pending => break,
                        Next::Ended => return Err(TestCaseError::fail("watcher dropped")),
                    }
                }
            }
        }
        for (w, seen) in watched.iter().zip(&seen) {
            let expected: Vec<&Event> = all
                .iter()
                .filter(|e| !e.refresh)
                .filter(|e| (e.key() == *w || under(e.key(), w)) && !hidden_relative(w, e.key()))
                .collect();
            let seen: Vec<&Event> = seen.iter().collect();
            prop_assert_eq!(seen, expected, "watcher at {}", w);
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_keys_values_and_times_never_panic(
        steps in proptest::collection::vec(
            ("[/._a-z\\x00-\\x7f\\u{80}-\\u{10ffff}]{0,40}", ".{0,64}", any::<i64>(), any::<u64>(), 0u8..9),
            1..40,
        ),
    ) {
        let mut s = Store::with_history_capacity(8);
        for (key, value, now, ttl_secs, which) in &steps {
            let now = Timestamp::from_unix_nanos(*now);
            let ttl = TtlOptions { expire_at: expiry_after(now, *ttl_secs), refresh: which % 2 == 0 };
            let cond = Condition { prev_value: Some(value), prev_index: Some(*ttl_secs) };
            let _ = match which {
                0 => s.set(key, Content::Value(value), ttl, now),
                1 => s.create(key, Content::Dir, ttl, now),
                2 => s.create_in_order(key, Content::Value(value), ttl, now),
                3 => s.update(key, value, ttl, now),
                4 => s.compare_and_swap(key, cond, value, ttl, now),
                5 => s.compare_and_delete(key, cond, now),
                6 => s.delete(key, which % 3 == 0, true, now),
                7 => s.get(key, true, now),
                _ => { s.expire(now); s.get("/", true, now) }
            };
            let _ = s.watch(key, true, false, *ttl_secs % 64);
            prop_assert_eq!(parse_ttl(value).is_ok(), value.is_empty() || value.parse::<u64>().is_ok());
        }
        let restored = Store::restore(&s.save()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(restored.save(), s.save());
    }
}
