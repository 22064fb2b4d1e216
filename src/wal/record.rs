//! The record codec: `[payload length u32 LE][crc u32 LE][kind u8][payload]`.
//!
//! The CRC is CRC32-C over kind and payload, chained: each record's CRC starts from the previous
//! one's, so a record dropped, repeated or moved within a segment breaks the chain. Pure: bytes
//! in, records out.

use std::fmt;

pub const HEADER_LEN: usize = 9;

/// No record is this large; a length beyond it is damage, not data.
pub const MAX_PAYLOAD: usize = 256 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// First record of every segment: its sequence number, first index and the chain value the
    /// previous segment ended with.
    Segment = 1,
    /// A raft log entry.
    Entry = 2,
    /// raft's hard state (term, vote, commit).
    HardState = 3,
    /// A snapshot from the leader was installed: the log restarts after it.
    SnapshotInstalled = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Segment),
            2 => Some(Kind::Entry),
            3 => Some(Kind::HardState),
            4 => Some(Kind::SnapshotInstalled),
            _ => None,
        }
    }
}

/// Appends one record to `out`; returns the chain value after it.
pub fn encode(out: &mut Vec<u8>, kind: Kind, payload: &[u8], chain: u32) -> u32 {
    assert!(
        payload.len() <= MAX_PAYLOAD,
        "record of {} bytes",
        payload.len()
    );
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(chain, &[kind as u8]), payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(payload);
    crc
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub payload: &'a [u8],
    pub offset: usize,
}

/// How a run of records ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Exactly at the end of the bytes.
    Clean,
    /// A last record cut short (a write torn by a crash); the bytes before `valid_len` are good.
    Torn { valid_len: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.reason)
    }
}

pub struct Decoded<'a> {
    pub records: Vec<Record<'a>>,
    pub end: End,
    /// The chain value after the last good record.
    pub chain: u32,
}

/// Reads every record, verifying the chain from `chain`. A record whose bytes run past the end
/// is a torn tail; a checksum that does not match, an unknown kind or an absurd length is
/// damage, and nothing after it is trusted.
pub fn decode(bytes: &[u8], mut chain: u32) -> Result<Decoded<'_>, Damage> {
    let mut records = Vec::new();
    let mut at = 0;
    let end = loop {
        let rest = &bytes[at..];
        if rest.is_empty() {
            break End::Clean;
        }
        if rest.len() < HEADER_LEN {
            break End::Torn { valid_len: at };
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let damage = |reason: String| Damage { offset: at, reason };
        if len > MAX_PAYLOAD {
            return Err(damage(format!("record length {len} is impossible")));
        }
        if rest.len() < HEADER_LEN + len {
            break End::Torn { valid_len: at };
        }
        let body = &rest[8..HEADER_LEN + len];
        let actual = crc32c::crc32c_append(chain, body);
        if actual != crc {
            return Err(damage(format!(
                "checksum mismatch (stored {crc:08x}, computed {actual:08x})"
            )));
        }
        let kind = Kind::from_byte(body[0])
            .ok_or_else(|| damage(format!("unknown record kind {}", body[0])))?;
        records.push(Record {
            kind,
            payload: &body[1..],
            offset: at,
        });
        chain = crc;
        at += HEADER_LEN + len;
    };
    Ok(Decoded {
        records,
        end,
        chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode_all(payloads: &[Vec<u8>]) -> (Vec<u8>, u32) {
        let mut out = Vec::new();
        let mut chain = 7;
        for p in payloads {
            chain = encode(&mut out, Kind::Entry, p, chain);
        }
        (out, chain)
    }

    #[test]
    fn records_round_trip() {
        let payloads = vec![b"one".to_vec(), Vec::new(), vec![0xff; 1000]];
        let (bytes, chain) = encode_all(&payloads);
        let decoded = decode(&bytes, 7).unwrap();
        assert_eq!(decoded.end, End::Clean);
        assert_eq!(decoded.chain, chain);
        let got: Vec<_> = decoded.records.iter().map(|r| r.payload.to_vec()).collect();
        assert_eq!(got, payloads);
    }

    #[test]
    fn a_record_cut_short_is_a_torn_tail() {
        let (bytes, _) = encode_all(&[b"one".to_vec(), b"two".to_vec()]);
        let first_len = HEADER_LEN + 3;
        for cut in first_len + 1..bytes.len() {
            let decoded = decode(&bytes[..cut], 7).unwrap();
            assert_eq!(decoded.records.len(), 1);
            assert_eq!(
                decoded.end,
                End::Torn {
                    valid_len: first_len
                }
            );
        }
    }

    #[test]
    fn a_flipped_bit_is_damage() {
        let (mut bytes, _) = encode_all(&[b"one".to_vec(), b"two".to_vec()]);
        bytes[HEADER_LEN + 1] ^= 1;
        let err = decode(&bytes, 7).err().expect("damage");
        assert_eq!(err.offset, 0);
        assert!(err.reason.contains("checksum"), "{err}");
    }

    #[test]
    fn a_record_moved_out_of_order_breaks_the_chain() {
        let mut a = Vec::new();
        let c1 = encode(&mut a, Kind::Entry, b"first", 0);
        let mut b = Vec::new();
        encode(&mut b, Kind::Entry, b"second", c1);
        let mut swapped = b.clone();
        swapped.extend_from_slice(&a);
        assert!(decode(&swapped, 0).is_err());
    }

    #[test]
    fn wrong_starting_chain_is_damage() {
        let (bytes, _) = encode_all(&[b"one".to_vec()]);
        assert!(decode(&bytes, 8).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, 0);
        }

        #[test]
        fn every_prefix_recovers_the_whole_records_before_it(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let (bytes, _) = encode_all(&payloads);
            let cut = cut.index(bytes.len() + 1);
            let decoded = decode(&bytes[..cut], 7).unwrap();
            let complete = payloads
                .iter()
                .scan(0, |end, p| { *end += HEADER_LEN + p.len(); Some(*end) })
                .take_while(|end| *end <= cut)
                .count();
            prop_assert_eq!(decoded.records.len(), complete);
            for (r, p) in decoded.records.iter().zip(&payloads) {
                prop_assert_eq!(r.payload, &p[..]);
            }
        }
    }
}
