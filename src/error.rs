//! etcd's v2 error catalogue: every code, its exact message and the HTTP status it maps to, in one
//! place. The store, the API handlers and the client all speak these.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

/// An etcd v2 error code (`errorCode` in the error JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    KeyNotFound,
    TestFailed,
    NotFile,
    NoMorePeer,
    NotDir,
    NodeExist,
    KeyIsPreserved,
    RootReadOnly,
    DirNotEmpty,
    ExistingPeerAddr,
    Unauthorized,

    ValueRequired,
    PrevValueRequired,
    TtlNaN,
    IndexNaN,
    ValueOrTtlRequired,
    TimeoutNaN,
    NameRequired,
    IndexOrValueRequired,
    IndexValueMutex,
    InvalidField,
    InvalidForm,
    RefreshValue,
    RefreshTtlRequired,

    RaftInternal,
    LeaderElect,

    WatcherCleared,
    EventIndexCleared,
    StandbyInternal,
    InvalidActiveSize,
    InvalidRemoveDelay,

    ClientInternal,
}

/// (code, number, message, HTTP status): the one table everything else is derived from.
const CATALOGUE: [(ErrorCode, u16, &str, u16); 32] = {
    use ErrorCode::*;
    [
        (KeyNotFound, 100, "Key not found", 404),
        (TestFailed, 101, "Compare failed", 412),
        (NotFile, 102, "Not a file", 403),
        (
            NoMorePeer,
            103,
            "Reached the max number of peers in the cluster",
            400,
        ),
        (NotDir, 104, "Not a directory", 400),
        (NodeExist, 105, "Key already exists", 412),
        (
            KeyIsPreserved,
            106,
            "The prefix of given key is a keyword in etcd",
            400,
        ),
        (RootReadOnly, 107, "Root is read only", 400),
        (DirNotEmpty, 108, "Directory not empty", 403),
        (ExistingPeerAddr, 109, "Peer address has existed", 400),
        (
            Unauthorized,
            110,
            "The request requires user authentication",
            401,
        ),
        (ValueRequired, 200, "Value is Required in POST form", 400),
        (
            PrevValueRequired,
            201,
            "PrevValue is Required in POST form",
            400,
        ),
        (
            TtlNaN,
            202,
            "The given TTL in POST form is not a number",
            400,
        ),
        (
            IndexNaN,
            203,
            "The given index in POST form is not a number",
            400,
        ),
        (
            ValueOrTtlRequired,
            204,
            "Value or TTL is required in POST form",
            400,
        ),
        (
            TimeoutNaN,
            205,
            "The given timeout in POST form is not a number",
            400,
        ),
        (NameRequired, 206, "Name is required in POST form", 400),
        (IndexOrValueRequired, 207, "Index or value is required", 400),
        (
            IndexValueMutex,
            208,
            "Index and value cannot both be specified",
            400,
        ),
        (InvalidField, 209, "Invalid field", 400),
        (InvalidForm, 210, "Invalid POST form", 400),
        (RefreshValue, 211, "Value provided on refresh", 400),
        (
            RefreshTtlRequired,
            212,
            "A TTL must be provided on refresh",
            400,
        ),
        (RaftInternal, 300, "Raft Internal Error", 500),
        (LeaderElect, 301, "During Leader Election", 500),
        (
            WatcherCleared,
            400,
            "watcher is cleared due to etcd recovery",
            400,
        ),
        (
            EventIndexCleared,
            401,
            "The event in requested index is outdated and cleared",
            400,
        ),
        (StandbyInternal, 402, "Standby Internal Error", 400),
        (InvalidActiveSize, 403, "Invalid active size", 400),
        (InvalidRemoveDelay, 404, "Standby remove delay", 400),
        (ClientInternal, 500, "Client Internal Error", 400),
    ]
};

impl ErrorCode {
    /// Every code etcd v2 defines, in numeric order.
    pub fn all() -> impl Iterator<Item = ErrorCode> {
        CATALOGUE.iter().map(|row| row.0)
    }

    fn row(self) -> &'static (ErrorCode, u16, &'static str, u16) {
        // The table lists the variants in declaration order.
        &CATALOGUE[self as usize]
    }

    /// The number clients see as `errorCode`.
    pub fn number(self) -> u16 {
        self.row().1
    }

    /// etcd's message text for this code, word for word.
    pub fn message(self) -> &'static str {
        self.row().2
    }

    /// The HTTP status etcd answers with; codes without an entry of their own are 400.
    pub fn http_status(self) -> u16 {
        self.row().3
    }

    pub fn from_number(number: u16) -> Option<ErrorCode> {
        CATALOGUE
            .iter()
            .find(|row| row.1 == number)
            .map(|row| row.0)
    }
}

/// The cause of a write refused because the member's disk is full: refused before it was
/// proposed, so a client may send it to another member.
pub const NO_SPACE_CAUSE: &str = "etcdserver: no space left on this member's disk";

/// etcd 3.x's `ErrTooManyRequests`, word for word: the member is too far behind to take more.
pub const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";

/// What an overloaded member asks a client to wait before trying again (`Retry-After`, in
/// seconds): a round of its raft loop is far shorter, so a second is room enough to drain.
pub const RETRY_AFTER_SECS: u64 = 1;

/// An etcd v2 error as clients see it: `{"errorCode", "message", "cause", "index"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    /// What the error is about (usually a key); omitted from the JSON when empty.
    pub cause: String,
    /// The etcd index when the error happened.
    pub index: u64,
    /// The member turned the request away for want of room (see `too_many_requests`).
    overloaded: bool,
}

impl Error {
    pub fn new(code: ErrorCode, cause: impl Into<String>, index: u64) -> Error {
        Error {
            code,
            cause: cause.into(),
            index,
            overloaded: false,
        }
    }

    /// The member's raft loop has more requests waiting than it holds: this one was refused
    /// before it reached raft, so it certainly did not happen.
    ///
    /// The body is what etcd's v2 API writes for any server error that has no v2 code of its
    /// own (`writeKeyError`): `RaftInternal` (300) with the error's text as the cause and index
    /// 0, the text being etcd 3.x's `ErrTooManyRequests`. The status is 503, not the 500 that
    /// code otherwise maps to: 503 is HTTP's word for "overloaded, try again later" and comes
    /// with `Retry-After`, which proxies and HTTP clients act on, where a 500 reads as a fault.
    /// Nothing that copes with etcd breaks: etcd's own Go client, and ours, take 500 and 503
    /// alike (that member has no leader: try the next one).
    pub fn too_many_requests() -> Error {
        Error {
            overloaded: true,
            ..Error::new(ErrorCode::RaftInternal, TOO_MANY_REQUESTS, 0)
        }
    }

    /// Seconds a client should wait before trying again, for an error that says so.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.overloaded.then_some(RETRY_AFTER_SECS)
    }

    pub fn message(&self) -> &'static str {
        self.code.message()
    }

    pub fn http_status(&self) -> u16 {
        if self.overloaded {
            return 503;
        }
        self.code.http_status()
    }

    pub fn to_json(&self) -> String {
        crate::json::to_string(self)
    }
}

/// The form etcdctl prints: `100: Key not found (/foo) [12]`.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({}) [{}]",
            self.code.number(),
            self.message(),
            self.cause,
            self.index
        )
    }
}

impl std::error::Error for Error {}

impl Serialize for Error {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = if self.cause.is_empty() { 3 } else { 4 };
        let mut s = serializer.serialize_struct("Error", fields)?;
        s.serialize_field("errorCode", &self.code.number())?;
        s.serialize_field("message", self.message())?;
        if !self.cause.is_empty() {
            s.serialize_field("cause", &self.cause)?;
        }
        s.serialize_field("index", &self.index)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for Error {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(rename = "errorCode")]
            error_code: u16,
            #[serde(default)]
            cause: String,
            #[serde(default)]
            index: u64,
        }
        let wire = Wire::deserialize(deserializer)?;
        let code = ErrorCode::from_number(wire.error_code)
            .ok_or_else(|| de::Error::custom(format!("unknown errorCode {}", wire.error_code)))?;
        Ok(Error::new(code, wire.cause, wire.index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_rows_are_in_variant_order() {
        for (i, row) in CATALOGUE.iter().enumerate() {
            assert_eq!(row.0 as usize, i, "{:?} is out of place", row.0);
        }
    }

    #[test]
    fn numbers_are_unique_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::all() {
            assert!(seen.insert(code.number()), "duplicate {}", code.number());
            assert_eq!(ErrorCode::from_number(code.number()), Some(code));
        }
        assert_eq!(ErrorCode::from_number(999), None);
    }

    #[test]
    fn http_statuses_follow_etcd() {
        use ErrorCode::*;
        assert_eq!(KeyNotFound.http_status(), 404);
        assert_eq!(TestFailed.http_status(), 412);
        assert_eq!(NodeExist.http_status(), 412);
        assert_eq!(NotFile.http_status(), 403);
        assert_eq!(DirNotEmpty.http_status(), 403);
        assert_eq!(Unauthorized.http_status(), 401);
        assert_eq!(RaftInternal.http_status(), 500);
        assert_eq!(LeaderElect.http_status(), 500);
        assert_eq!(EventIndexCleared.http_status(), 400);
        assert_eq!(RootReadOnly.http_status(), 400);
    }

    #[test]
    fn error_json_matches_etcd() {
        let e = Error::new(ErrorCode::KeyNotFound, "/foo", 12);
        assert_eq!(
            e.to_json(),
            r#"{"errorCode":100,"message":"Key not found","cause":"/foo","index":12}"#
        );
        let no_cause = Error::new(ErrorCode::RaftInternal, "", 3);
        assert_eq!(
            no_cause.to_json(),
            r#"{"errorCode":300,"message":"Raft Internal Error","index":3}"#
        );
        let back: Error = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn an_overloaded_member_answers_503_with_etcds_body() {
        let e = Error::too_many_requests();
        assert_eq!(e.http_status(), 503);
        assert_eq!(e.retry_after_secs(), Some(RETRY_AFTER_SECS));
        assert_eq!(
            e.to_json(),
            r#"{"errorCode":300,"message":"Raft Internal Error","cause":"etcdserver: too many requests","index":0}"#
        );
        let other = Error::new(ErrorCode::RaftInternal, "etcdserver: request timed out", 0);
        assert_eq!((other.http_status(), other.retry_after_secs()), (500, None));
    }

    #[test]
    fn display_matches_etcdctl() {
        let e = Error::new(ErrorCode::KeyNotFound, "/foo", 12);
        assert_eq!(e.to_string(), "100: Key not found (/foo) [12]");
    }
}
