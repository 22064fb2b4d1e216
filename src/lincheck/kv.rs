//! The sequential model of one etcd key, for checking histories of v2 operations.

use std::fmt;

use super::Model;

/// What a client asked of one key. Values should be unique per write, so a read names the
/// write it saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// A quorum (linearizable) read.
    Get,
    Set(String),
    /// `prevExist=false`
    Create(String),
    /// `prevExist=true`
    Update(String),
    CompareAndSwap {
        prev: String,
        value: String,
    },
    /// `prevIndex` (and `prevValue` too when `prev` is given).
    CompareAndSwapIndex {
        at: IndexedValue,
        prev: Option<String>,
        value: String,
    },
    Delete,
    CompareAndDelete {
        prev: String,
    },
    /// `prevIndex` (and `prevValue` too when `prev` is given).
    CompareAndDeleteIndex {
        at: IndexedValue,
        prev: Option<String>,
    },
}

/// A `prevIndex` as the model can judge it. etcd compares it with the key's `modifiedIndex`,
/// which the model does not track; but every value is written once, and a write's
/// `modifiedIndex` is its own, so the key is still at that index exactly when it still holds
/// the value written there. The client sends only indexes it learned from answers (which name
/// the value too), or one no run can reach, written there by nobody.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IndexedValue {
    /// Sent as `prevIndex`; kept to read failures by.
    pub index: u64,
    /// The value this key was given at `index`; `None`: no value of this key ever was.
    pub value: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// A read's answer: the value, or none for key-not-found.
    Value(Option<String>),
    /// A write that took effect.
    Done,
    /// A write whose precondition failed (exists, not found, compare failed).
    Refused,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

impl KvModel {
    /// What `input` answers when the key holds `state`, and what it holds after.
    pub fn step(&self, state: &Option<String>, input: &KvInput) -> (KvOutput, Option<String>) {
        let unchanged = || (KvOutput::Refused, state.clone());
        // A compare by index (and maybe value) passes when the key still holds that write.
        let holds = |at: &IndexedValue, prev: &Option<String>| {
            state.is_some()
                && *state == at.value
                && prev.as_ref().is_none_or(|p| state.as_ref() == Some(p))
        };
        match input {
            KvInput::Get => (KvOutput::Value(state.clone()), state.clone()),
            KvInput::Set(v) => (KvOutput::Done, Some(v.clone())),
            KvInput::Create(v) if state.is_none() => (KvOutput::Done, Some(v.clone())),
            KvInput::Update(v) if state.is_some() => (KvOutput::Done, Some(v.clone())),
            KvInput::CompareAndSwap { prev, value } if state.as_ref() == Some(prev) => {
                (KvOutput::Done, Some(value.clone()))
            }
            KvInput::CompareAndSwapIndex { at, prev, value } if holds(at, prev) => {
                (KvOutput::Done, Some(value.clone()))
            }
            KvInput::Delete if state.is_some() => (KvOutput::Done, None),
            KvInput::CompareAndDelete { prev } if state.as_ref() == Some(prev) => {
                (KvOutput::Done, None)
            }
            KvInput::CompareAndDeleteIndex { at, prev } if holds(at, prev) => {
                (KvOutput::Done, None)
            }
            _ => unchanged(),
        }
    }
}

impl Model for KvModel {
    type State = Option<String>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Option<String> {
        None
    }

    fn accept(
        &self,
        state: &Option<String>,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<Option<String>> {
        let (answer, after) = self.step(state, input);
        output.is_none_or(|o| *o == answer).then_some(after)
    }
}

/// Short enough to label a bar on a timeline: `cas c1-3→c2-5`.
impl fmt::Display for KvInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvInput::Get => write!(f, "get"),
            KvInput::Set(v) => write!(f, "set {v}"),
            KvInput::Create(v) => write!(f, "create {v}"),
            KvInput::Update(v) => write!(f, "update {v}"),
            KvInput::CompareAndSwap { prev, value } => write!(f, "cas {prev}→{value}"),
            KvInput::CompareAndSwapIndex { at, prev, value } => {
                write!(f, "cas @{}", at.index)?;
                if let Some(prev) = prev {
                    write!(f, "+{prev}")?;
                }
                write!(f, "→{value}")
            }
            KvInput::Delete => write!(f, "delete"),
            KvInput::CompareAndDelete { prev } => write!(f, "cad {prev}"),
            KvInput::CompareAndDeleteIndex { at, prev } => {
                write!(f, "cad @{}", at.index)?;
                match prev {
                    Some(prev) => write!(f, "+{prev}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl fmt::Display for KvOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOutput::Value(Some(v)) => write!(f, "{v}"),
            KvOutput::Value(None) => write!(f, "not found"),
            KvOutput::Done => write!(f, "done"),
            KvOutput::Refused => write!(f, "refused"),
        }
    }
}
