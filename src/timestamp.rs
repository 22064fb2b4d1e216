//! Wall-clock instants as plain numbers. The store never reads a clock: callers pass a
//! `Timestamp` they got from the runtime, so the same log gives the same store on every member.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// An instant in UTC, in nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix_nanos(nanos: i64) -> Timestamp {
        Timestamp(nanos)
    }

    pub const fn from_unix_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(NANOS_PER_SEC))
    }

    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// `self + secs`, or `None` when the result is past what a timestamp can hold (year 2262).
    pub fn checked_add_secs(self, secs: u64) -> Option<Timestamp> {
        let nanos = i64::try_from(secs).ok()?.checked_mul(NANOS_PER_SEC)?;
        self.0.checked_add(nanos).map(Timestamp)
    }

    pub fn saturating_add_nanos(self, nanos: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos))
    }

    /// Whole seconds from `now` until `self`, rounded up as etcd rounds a key's `ttl`
    /// (1.2 s left is 2; an overdue key that has not been expired yet can show 0 or less).
    pub fn ttl_secs_from(self, now: Timestamp) -> i64 {
        let left = self.0.saturating_sub(now.0);
        let secs = left / NANOS_PER_SEC;
        if left % NANOS_PER_SEC > 0 {
            secs + 1
        } else {
            secs
        }
    }

    /// RFC 3339 in UTC with as many fractional digits as needed (Go's `RFC3339Nano`, which is
    /// how etcd writes `expiration`).
    pub fn to_rfc3339(self) -> String {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .expect("every i64 of nanoseconds is a representable date");
        let mut out = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        );
        let nanos = at.nanosecond();
        if nanos != 0 {
            let digits = format!(".{nanos:09}");
            out.push_str(digits.trim_end_matches('0'));
        }
        out.push('Z');
        out
    }

    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let at =
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
        i64::try_from(at.unix_timestamp_nanos()).ok().map(Timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_trims_trailing_zeros_like_go() {
        let t = Timestamp::from_unix_nanos(1_764_000_000_213_084_816);
        assert_eq!(t.to_rfc3339(), "2025-11-24T16:00:00.213084816Z");
        let t = Timestamp::from_unix_nanos(1_764_000_000_500_000_000);
        assert_eq!(t.to_rfc3339(), "2025-11-24T16:00:00.5Z");
        let t = Timestamp::from_unix_secs(1_764_000_000);
        assert_eq!(t.to_rfc3339(), "2025-11-24T16:00:00Z");
    }

    #[test]
    fn rfc3339_round_trips() {
        for nanos in [
            0,
            1,
            1_764_000_000_213_084_816,
            -5_000_000_123,
            i64::MAX,
            i64::MIN,
        ] {
            let t = Timestamp::from_unix_nanos(nanos);
            assert_eq!(
                Timestamp::parse_rfc3339(&t.to_rfc3339()),
                Some(t),
                "{nanos}"
            );
        }
        assert_eq!(Timestamp::parse_rfc3339("not a time"), None);
    }

    #[test]
    fn ttl_rounds_up_like_etcd() {
        let now = Timestamp::from_unix_secs(100);
        assert_eq!(Timestamp::from_unix_secs(105).ttl_secs_from(now), 5);
        assert_eq!(
            now.saturating_add_nanos(4_200_000_000).ttl_secs_from(now),
            5
        );
        assert_eq!(now.saturating_add_nanos(1).ttl_secs_from(now), 1);
        assert_eq!(now.ttl_secs_from(now), 0);
        assert_eq!(
            now.saturating_add_nanos(-1_500_000_000).ttl_secs_from(now),
            -1
        );
    }

    #[test]
    fn adding_absurd_seconds_is_none_not_a_wrap() {
        let now = Timestamp::from_unix_secs(1_764_000_000);
        assert_eq!(
            now.checked_add_secs(5),
            Some(Timestamp::from_unix_secs(1_764_000_005))
        );
        assert_eq!(now.checked_add_secs(u64::MAX), None);
        assert_eq!(now.checked_add_secs(99_999_999_999), None);
    }
}
