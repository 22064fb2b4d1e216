//! The sequential model of one etcd directory that may carry a TTL, with one child key in it,
//! for checking histories of directory operations.
//!
//! When a directory expires is the leader's business (its clock, which may jump, and when its
//! `Sync` commits), so the model does not say: a directory with a TTL may vanish, child and
//! all, between any two operations, or never; one without a TTL never vanishes on its own.
//! That makes the model nondeterministic, so its state is the set of states the directory
//! could be in, and an answer keeps those that could have given it.

use super::Model;
use crate::error::ErrorCode;

/// What a client asked of the directory or its child. Child values should be unique per
/// write, so a listing names the write it saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DirInput {
    /// `PUT dir=true&prevExist=false`, with a TTL or without.
    Mkdir { ttl: bool },
    /// `PUT dir=true&prevExist=true`: a new TTL, or without one the directory becomes
    /// permanent.
    UpdateDir { ttl: bool },
    /// `DELETE dir=true`, and `recursive=true` when `recursive`.
    Rmdir { recursive: bool },
    /// A plain `PUT` of the child key; a missing directory is created on the way, permanent.
    SetChild(String),
    /// A quorum `GET` of the directory.
    List,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DirOutput {
    /// A write that took effect.
    Done,
    /// A listing: the child's value, or none when the directory is empty.
    Listing(Option<String>),
    /// The etcd error code of a request the store refused.
    Failed(u64),
}

/// One state the directory can be in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    Absent,
    Present {
        /// Whether it has a TTL, and so may expire.
        expiring: bool,
        child: Option<String>,
    },
}

/// Every state the directory may be in: sorted, without duplicates, never empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Possible(Vec<Dir>);

#[derive(Clone, Copy, Debug, Default)]
pub struct DirModel;

fn failed(code: ErrorCode) -> DirOutput {
    DirOutput::Failed(u64::from(code.number()))
}

impl DirModel {
    /// What `input` answers from one state, and the state after it (before any expiry).
    pub fn step(&self, dir: &Dir, input: &DirInput) -> (DirOutput, Dir) {
        let refused = |code| (failed(code), dir.clone());
        match (dir, input) {
            (Dir::Absent, DirInput::Mkdir { ttl }) => (
                DirOutput::Done,
                Dir::Present {
                    expiring: *ttl,
                    child: None,
                },
            ),
            (Dir::Present { .. }, DirInput::Mkdir { .. }) => refused(ErrorCode::NodeExist),
            (Dir::Present { child, .. }, DirInput::UpdateDir { ttl }) => (
                DirOutput::Done,
                Dir::Present {
                    expiring: *ttl,
                    child: child.clone(),
                },
            ),
            (Dir::Present { child: Some(_), .. }, DirInput::Rmdir { recursive: false }) => {
                refused(ErrorCode::DirNotEmpty)
            }
            (Dir::Present { .. }, DirInput::Rmdir { .. }) => (DirOutput::Done, Dir::Absent),
            (Dir::Absent, DirInput::SetChild(v)) => (
                DirOutput::Done,
                Dir::Present {
                    expiring: false,
                    child: Some(v.clone()),
                },
            ),
            (Dir::Present { expiring, .. }, DirInput::SetChild(v)) => (
                DirOutput::Done,
                Dir::Present {
                    expiring: *expiring,
                    child: Some(v.clone()),
                },
            ),
            (Dir::Present { child, .. }, DirInput::List) => {
                (DirOutput::Listing(child.clone()), dir.clone())
            }
            (Dir::Absent, DirInput::UpdateDir { .. } | DirInput::Rmdir { .. } | DirInput::List) => {
                refused(ErrorCode::KeyNotFound)
            }
        }
    }
}

impl Model for DirModel {
    type State = Possible;
    type Input = DirInput;
    type Output = DirOutput;

    fn init(&self) -> Possible {
        Possible(vec![Dir::Absent])
    }

    fn accept(
        &self,
        state: &Possible,
        input: &DirInput,
        output: Option<&DirOutput>,
    ) -> Option<Possible> {
        let mut next: Vec<Dir> = state
            .0
            .iter()
            .map(|dir| self.step(dir, input))
            .filter(|(answer, _)| output.is_none_or(|o| o == answer))
            .map(|(_, dir)| dir)
            .collect();
        if next.is_empty() {
            return None;
        }
        // Any directory with a TTL may be gone by the next operation.
        if next
            .iter()
            .any(|d| matches!(d, Dir::Present { expiring: true, .. }))
        {
            next.push(Dir::Absent);
        }
        next.sort();
        next.dedup();
        Some(Possible(next))
    }
}

/// Short enough to label a bar on a timeline.
impl std::fmt::Display for DirInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirInput::Mkdir { ttl: true } => write!(f, "mkdir ttl"),
            DirInput::Mkdir { ttl: false } => write!(f, "mkdir"),
            DirInput::UpdateDir { ttl: true } => write!(f, "updatedir ttl"),
            DirInput::UpdateDir { ttl: false } => write!(f, "updatedir permanent"),
            DirInput::Rmdir { recursive: true } => write!(f, "rmdir -r"),
            DirInput::Rmdir { recursive: false } => write!(f, "rmdir"),
            DirInput::SetChild(v) => write!(f, "set child {v}"),
            DirInput::List => write!(f, "list"),
        }
    }
}

impl std::fmt::Display for DirOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirOutput::Done => write!(f, "done"),
            DirOutput::Listing(Some(v)) => write!(f, "[{v}]"),
            DirOutput::Listing(None) => write!(f, "[]"),
            DirOutput::Failed(code) => write!(f, "error {code}"),
        }
    }
}
