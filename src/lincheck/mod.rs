//! A linearizability checker: is there one order of the operations, consistent with real time,
//! in which a sequential model gives every answer the clients saw?
//!
//! This is the Wing–Gong search with Lowe's memoisation, as Porcupine and Knossos do it:
//! walk the history's call and return events in time order; at a call, try to linearize that
//! operation now (the model must accept its answer); at a return of an operation not yet
//! linearized, back up. A state already explored with the same set of linearized operations is
//! skipped. An operation whose outcome is unknown (a timeout) returns "at infinity" and accepts
//! any answer, so it may take effect anywhere after its call, or, placed last, not at all.
//!
//! Histories are checked one object at a time, which keeps the search small: linearizability
//! is compositional. An object is a key ([`kv`]), or a directory together with the one key in
//! it ([`dir`]), since writing that key can create the directory and removing the directory
//! takes the key.

pub mod dir;
pub mod kv;
pub mod timeline;

use std::collections::HashSet;
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Input;
    type Output: PartialEq;

    fn init(&self) -> Self::State;

    /// The state after `input` was answered `output` in `state` (`None`: the answer is unknown,
    /// so any will do), or `None` when the model cannot answer so. A deterministic model
    /// computes its one answer and compares; a model with choices of its own (a directory that
    /// may expire at any moment) keeps every state it could be in as its state.
    fn accept(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One client operation: when it was called, when its answer came back (`None`: never, or
/// the client gave up), what it asked and what it was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    pub call: u64,
    pub ret: Option<u64>,
    pub input: I,
    /// `None` when the outcome is unknown.
    pub output: Option<O>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the answers. The operations are listed by index; `longest` is the
    /// longest prefix of an order found before the search gave up, to help read the failure.
    /// Where it got that deep, some operation had to take effect by its return (`overdue`) and
    /// none of the operations that could go next (`stuck`, `overdue` among them) could: the
    /// model refused each one's answer there, or placing it led only to states already known
    /// to fail. These are the operations to look at first.
    NotLinearizable {
        longest: Vec<usize>,
        stuck: Vec<usize>,
        /// Always set (the search fails only at a return); an `Option` rather than an invented
        /// index for the branch that cannot be reached.
        overdue: Option<usize>,
    },
    /// The search was stopped after `steps` steps without an answer.
    GaveUp {
        steps: u64,
    },
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
}

/// A doubly linked list over the history's events, so operations can be lifted out and put
/// back in O(1) while backtracking.
struct Events {
    events: Vec<Event>,
    prev: Vec<usize>,
    next: Vec<usize>,
    /// Where each operation's call and return sit in `events`.
    call_at: Vec<usize>,
    ret_at: Vec<usize>,
}

const HEAD: usize = usize::MAX;

impl Events {
    fn new<I, O>(ops: &[Operation<I, O>]) -> Events {
        // Returns at the same time as a call come after it; unknown returns go last.
        let mut timed: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            timed.push((op.call, 0, i));
            timed.push((op.ret.map_or(u64::MAX, |r| r.max(op.call)), 1, i));
        }
        timed.sort();
        let n = timed.len();
        let mut call_at = vec![0; ops.len()];
        let mut ret_at = vec![0; ops.len()];
        let events: Vec<Event> = timed
            .iter()
            .enumerate()
            .map(|(pos, &(_, kind, op))| {
                if kind == 0 {
                    call_at[op] = pos;
                } else {
                    ret_at[op] = pos;
                }
                Event {
                    op,
                    is_call: kind == 0,
                }
            })
            .collect();
        Events {
            events,
            prev: (0..n).map(|i| if i == 0 { HEAD } else { i - 1 }).collect(),
            next: (0..n)
                .map(|i| if i + 1 == n { HEAD } else { i + 1 })
                .collect(),
            call_at,
            ret_at,
        }
    }

    fn unlink(&mut self, at: usize, first: &mut usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        if p == HEAD {
            *first = n;
        } else {
            self.next[p] = n;
        }
        if n != HEAD {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, at: usize, first: &mut usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        if p == HEAD {
            *first = at;
        } else {
            self.next[p] = at;
        }
        if n != HEAD {
            self.prev[n] = at;
        }
    }
}

/// Checks one history (of one key) against `model`, giving up after `max_steps`.
pub fn check<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    max_steps: u64,
) -> Verdict {
    let mut list = Events::new(ops);
    let mut first = if list.events.is_empty() { HEAD } else { 0 };
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut state = model.init();
    // Linearized operations, with the state before each.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    // What the search tried right after reaching `longest`, until the first return there:
    // no pop can come in between, so that return is met in exactly the state after `longest`.
    let mut stuck: Vec<usize> = Vec::new();
    let mut overdue: Option<usize> = None;
    let mut at = first;
    let mut steps = 0u64;

    while first != HEAD {
        steps += 1;
        if steps > max_steps {
            return Verdict::GaveUp { steps };
        }
        if at == HEAD {
            // Nothing left to try at this level: only reachable through a return below.
            return Verdict::NotLinearizable {
                longest,
                stuck,
                overdue,
            };
        }
        let event = list.events[at];
        if event.is_call {
            let op = &ops[event.op];
            let mut moved = false;
            if let Some(after) = model.accept(&state, &op.input, op.output.as_ref()) {
                linearized[event.op / 64] |= 1 << (event.op % 64);
                if seen.insert((linearized.clone(), after.clone())) {
                    stack.push((event.op, std::mem::replace(&mut state, after)));
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|(op, _)| *op).collect();
                        stuck.clear();
                        overdue = None;
                    }
                    list.unlink(list.call_at[event.op], &mut first);
                    list.unlink(list.ret_at[event.op], &mut first);
                    at = first;
                    moved = true;
                } else {
                    linearized[event.op / 64] &= !(1 << (event.op % 64));
                }
            }
            if !moved {
                if overdue.is_none() {
                    stuck.push(event.op);
                }
                at = list.next[at];
            }
        } else {
            // A return of an operation not yet linearized: undo the most recent choice.
            if overdue.is_none() {
                overdue = Some(event.op);
            }
            let Some((op, before)) = stack.pop() else {
                return Verdict::NotLinearizable {
                    longest,
                    stuck,
                    overdue,
                };
            };
            linearized[op / 64] &= !(1 << (op % 64));
            state = before;
            list.relink(list.ret_at[op], &mut first);
            list.relink(list.call_at[op], &mut first);
            at = list.next[list.call_at[op]];
        }
    }
    Verdict::Linearizable
}

#[cfg(test)]
mod tests;
