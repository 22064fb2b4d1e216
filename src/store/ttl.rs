//! Time-to-live: the queue of keys by expiry time, and how a `ttl` request value becomes an
//! absolute expiry.

use std::collections::BTreeSet;

use crate::error::{Error, ErrorCode};
use crate::timestamp::Timestamp;

/// Keys with a TTL, ordered by (expiry, key) so expiry order is the same on every member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExpiryQueue {
    entries: BTreeSet<(Timestamp, String)>,
}

impl ExpiryQueue {
    pub fn insert(&mut self, at: Timestamp, key: String) {
        self.entries.insert((at, key));
    }

    pub fn remove(&mut self, at: Timestamp, key: &str) {
        // The set is keyed by owned strings; a lookup needs the same tuple type.
        self.entries.remove(&(at, key.to_owned()));
    }

    /// The first key due at or before `cutoff`.
    pub fn first_due(&self, cutoff: Timestamp) -> Option<(Timestamp, String)> {
        self.entries
            .first()
            .filter(|(at, _)| *at <= cutoff)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Reads a `ttl` request value as etcd does: empty means "no TTL" (a permanent key), anything
/// that is not an unsigned 64-bit number is error 202.
pub fn parse_ttl(raw: &str) -> Result<Option<u64>, Error> {
    if raw.is_empty() {
        return Ok(None);
    }
    // Digits only: Rust's parser would also take a leading `+`, which etcd refuses.
    let digits = raw.bytes().all(|b| b.is_ascii_digit());
    match raw.parse::<u64>() {
        Ok(ttl) if digits => Ok(Some(ttl)),
        _ => Err(Error::new(
            ErrorCode::TtlNaN,
            r#"invalid value for "ttl""#,
            0,
        )),
    }
}

/// When a key given `ttl_secs` at `now` expires. A TTL too large to represent (past the year
/// 2262) leaves the key permanent, which is what etcd's own duration overflow ends up doing.
pub fn expiry_after(now: Timestamp, ttl_secs: u64) -> Option<Timestamp> {
    now.checked_add_secs(ttl_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_values_parse_as_etcd_reads_them() {
        assert_eq!(parse_ttl(""), Ok(None));
        assert_eq!(parse_ttl("0"), Ok(Some(0)));
        assert_eq!(parse_ttl("5"), Ok(Some(5)));
        assert_eq!(parse_ttl("99999999999"), Ok(Some(99_999_999_999)));
        for bad in [
            "-1",
            "+5",
            "abc",
            "1.5",
            " 5",
            "99999999999999999999",
            "\u{ff}",
        ] {
            let err = parse_ttl(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::TtlNaN, "{bad:?}");
            assert_eq!(err.cause, r#"invalid value for "ttl""#);
        }
    }

    #[test]
    fn absurd_ttls_leave_the_key_permanent() {
        let now = Timestamp::from_unix_secs(1_764_000_000);
        assert_eq!(
            expiry_after(now, 5),
            Some(Timestamp::from_unix_secs(1_764_000_005))
        );
        assert_eq!(expiry_after(now, 99_999_999_999), None);
        assert_eq!(expiry_after(now, u64::MAX), None);
    }

    #[test]
    fn queue_orders_by_time_then_key() {
        let mut q = ExpiryQueue::default();
        let t = Timestamp::from_unix_secs;
        q.insert(t(5), "/b".into());
        q.insert(t(5), "/a".into());
        q.insert(t(3), "/z".into());
        assert_eq!(q.first_due(t(2)), None);
        assert_eq!(q.first_due(t(3)), Some((t(3), "/z".into())));
        q.remove(t(3), "/z");
        assert_eq!(q.first_due(t(9)), Some((t(5), "/a".into())));
        assert_eq!(q.len(), 2);
    }
}
