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
    Delete,
    CompareAndDelete {
        prev: String,
    },
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

impl Model for KvModel {
    type State = Option<String>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Option<String> {
        None
    }

    fn step(&self, state: &Option<String>, input: &KvInput) -> (KvOutput, Option<String>) {
        let unchanged = || (KvOutput::Refused, state.clone());
        match input {
            KvInput::Get => (KvOutput::Value(state.clone()), state.clone()),
            KvInput::Set(v) => (KvOutput::Done, Some(v.clone())),
            KvInput::Create(v) if state.is_none() => (KvOutput::Done, Some(v.clone())),
            KvInput::Update(v) if state.is_some() => (KvOutput::Done, Some(v.clone())),
            KvInput::CompareAndSwap { prev, value } if state.as_ref() == Some(prev) => {
                (KvOutput::Done, Some(value.clone()))
            }
            KvInput::Delete if state.is_some() => (KvOutput::Done, None),
            KvInput::CompareAndDelete { prev } if state.as_ref() == Some(prev) => {
                (KvOutput::Done, None)
            }
            _ => unchanged(),
        }
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
            KvInput::Delete => write!(f, "delete"),
            KvInput::CompareAndDelete { prev } => write!(f, "cad {prev}"),
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
