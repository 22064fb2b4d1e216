//! The record codec: `[payload length u32 LE][crc u32 LE][kind u8][payload]`.
//!
//! The CRC is CRC32-C over kind and payload, chained: each record's CRC starts from the previous
//! one's, so a record dropped, repeated or moved within a segment breaks the chain. Records are
//! followed by at least `HEADER_LEN` zero bytes, which no record can be (there is no kind 0): that
//! is where the data ends. Pure: bytes in, records out.

pub const HEADER_LEN: usize = 9;

/// No record is this large; a length beyond it is damage, not data.
pub const MAX_PAYLOAD: usize = 256 << 20;

/// The unit a disk writes whole: a crash leaves each sector of an unfinished write either as it
/// was (zeros, in a preallocated segment) or as it was meant to be, never half of each.
pub const SECTOR: usize = 512;

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
    /// The last record of a finished segment: the sequence number and first index of the one
    /// after it, written once that one is durable. A newest segment ending with it has lost its
    /// successor.
    Next = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Segment),
            2 => Some(Kind::Entry),
            3 => Some(Kind::HardState),
            4 => Some(Kind::SnapshotInstalled),
            5 => Some(Kind::Next),
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
    /// The chain value after this record.
    pub crc: u32,
}

/// Why reading stopped at `Scan::end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `HEADER_LEN` zero bytes: the end of the data.
    End,
    /// The bytes run out inside the records: too few left for a record or the closing zeros, or
    /// a record longer than what is left. A preallocated segment never ends like this, whatever
    /// a crash did to it.
    Eof { reason: String },
    /// A record that does not check out (checksum, kind or length). `torn` when part of it that
    /// lies within one sector is all zeros, as an unfinished write leaves it.
    Bad { reason: String, torn: bool },
}

#[derive(Clone, Debug)]
pub struct Scan<'a> {
    pub records: Vec<Record<'a>>,
    /// The chain value after the last good record.
    pub chain: u32,
    /// Where the good records end: the offset of the closing zeros, of the bad record, or of
    /// the bytes too short to be one.
    pub end: usize,
    pub stop: Stop,
}

/// Reads records from the start of `bytes`, verifying the chain from `chain`, until the closing
/// zeros, the end of the bytes, or a record that does not check out; nothing after that is
/// trusted.
pub fn scan(bytes: &[u8], mut chain: u32) -> Scan<'_> {
    let mut records = Vec::new();
    let mut at = 0;
    let stop = loop {
        let rest = &bytes[at..];
        if rest.len() < HEADER_LEN {
            break Stop::Eof {
                reason: format!(
                    "the file ends {} bytes after the last record, too few for the {HEADER_LEN} \
                     zero bytes that close a segment",
                    rest.len()
                ),
            };
        }
        if is_zero(&rest[..HEADER_LEN]) {
            break Stop::End;
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if rest.len() - HEADER_LEN < len {
            break Stop::Eof {
                reason: format!(
                    "the record there holds {len} bytes but the file ends {} bytes into it",
                    rest.len()
                ),
            };
        }
        let extent = at..at + HEADER_LEN + len;
        let bad = |reason: String| Stop::Bad {
            torn: has_zero_sector_part(bytes, extent.clone()),
            reason,
        };
        if len > MAX_PAYLOAD {
            break bad(format!("record length {len} is impossible"));
        }
        let body = &rest[8..HEADER_LEN + len];
        let actual = crc32c::crc32c_append(chain, body);
        if actual != crc {
            break bad(format!(
                "checksum mismatch (stored {crc:08x}, computed {actual:08x})"
            ));
        }
        let Some(kind) = Kind::from_byte(body[0]) else {
            break bad(format!("unknown record kind {}", body[0]));
        };
        records.push(Record {
            kind,
            payload: &body[1..],
            offset: at,
            crc,
        });
        chain = crc;
        at = extent.end;
    };
    Scan {
        records,
        chain,
        end: at,
        stop,
    }
}

pub fn is_zero(bytes: &[u8]) -> bool {
    // Word by word: start-up runs this over whole preallocated segments.
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    tail.iter().all(|&b| b == 0)
        && words
            .into_iter()
            .all(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")) == 0)
}

/// The offset of the last non-zero byte at or after `from`.
pub fn last_nonzero(bytes: &[u8], from: usize) -> Option<usize> {
    let rest = bytes.get(from..)?;
    // Skip zero words from the end before looking at single bytes.
    let mut end = rest.len();
    while end >= 8 && is_zero(&rest[end - 8..end]) {
        end -= 8;
    }
    rest[..end].iter().rposition(|&b| b != 0).map(|i| from + i)
}

/// etcd's torn-write test: whether some part of `range` that lies within one sector (the range
/// split at multiples of `SECTOR`) is all zeros. An unfinished write over zeros leaves exactly
/// that; damage to written data almost never does.
pub fn has_zero_sector_part(bytes: &[u8], range: std::ops::Range<usize>) -> bool {
    sector_parts(range.start, range.end.min(bytes.len())).any(|part| is_zero(&bytes[part]))
}

/// Whether `actual`, found at file offset `at`, is what an unfinished write of `expected` at
/// `at` over zeros can leave: each part within one sector is either as meant or all zeros, and
/// nothing follows.
pub fn is_partial_write_of(actual: &[u8], at: usize, expected: &[u8]) -> bool {
    let overlap = actual.len().min(expected.len());
    is_zero(&actual[overlap..])
        && sector_parts(at, at + overlap).all(|part| {
            let local = part.start - at..part.end - at;
            is_zero(&actual[local.clone()]) || actual[local.clone()] == expected[local]
        })
}

/// `[start, end)` cut at every multiple of `SECTOR`.
fn sector_parts(start: usize, end: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let mut at = start;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let stop = ((at / SECTOR + 1) * SECTOR).min(end);
        let part = at..stop;
        at = stop;
        Some(part)
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

    fn closed(mut bytes: Vec<u8>, zeros: usize) -> Vec<u8> {
        bytes.resize(bytes.len() + zeros, 0);
        bytes
    }

    #[test]
    fn records_round_trip_up_to_the_closing_zeros() {
        let payloads = vec![b"one".to_vec(), Vec::new(), vec![0xff; 1000]];
        let (bytes, chain) = encode_all(&payloads);
        let len = bytes.len();
        let bytes = closed(bytes, 100);
        let scan = scan(&bytes, 7);
        assert_eq!(scan.stop, Stop::End);
        assert_eq!(scan.end, len);
        assert_eq!(scan.chain, chain);
        let got: Vec<_> = scan.records.iter().map(|r| r.payload.to_vec()).collect();
        assert_eq!(got, payloads);
    }

    #[test]
    fn bytes_that_end_inside_the_records_are_not_a_torn_write() {
        let (bytes, _) = encode_all(&[b"one".to_vec(), b"two".to_vec()]);
        let first_len = HEADER_LEN + 3;
        for cut in first_len..bytes.len() + HEADER_LEN {
            let bytes = closed(bytes.clone(), HEADER_LEN)[..cut].to_vec();
            let scan = scan(&bytes, 7);
            assert!(
                matches!(scan.stop, Stop::Eof { .. }),
                "{cut}: {:?}",
                scan.stop
            );
            assert!(scan.records.len() <= 2);
        }
    }

    #[test]
    fn a_flipped_bit_is_damage_not_a_torn_write() {
        let (mut bytes, _) = encode_all(&[b"one".to_vec(), b"two".to_vec()]);
        bytes[HEADER_LEN + 1] ^= 1;
        let bytes = closed(bytes, HEADER_LEN);
        let scan = scan(&bytes, 7);
        assert_eq!(scan.end, 0);
        match scan.stop {
            Stop::Bad { reason, torn } => {
                assert!(reason.contains("checksum"), "{reason}");
                assert!(!torn);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_record_with_a_sector_left_unwritten_is_torn() {
        // A record spanning three sectors whose middle sector never reached the disk.
        let mut bytes = Vec::new();
        let chain = encode(&mut bytes, Kind::Entry, &[1; 291], 0);
        encode(&mut bytes, Kind::Entry, &[2; 1000], chain);
        let mut torn = closed(bytes, HEADER_LEN);
        torn[SECTOR..2 * SECTOR].fill(0);
        let scan = scan(&torn, 0);
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.end, 300);
        assert!(
            matches!(scan.stop, Stop::Bad { torn: true, .. }),
            "{:?}",
            scan.stop
        );
    }

    #[test]
    fn a_record_moved_out_of_order_breaks_the_chain() {
        let mut a = Vec::new();
        let c1 = encode(&mut a, Kind::Entry, b"first", 0);
        let mut b = Vec::new();
        encode(&mut b, Kind::Entry, b"second", c1);
        let mut swapped = b.clone();
        swapped.extend_from_slice(&a);
        let swapped = closed(swapped, HEADER_LEN);
        assert!(matches!(scan(&swapped, 0).stop, Stop::Bad { .. }));
    }

    #[test]
    fn wrong_starting_chain_is_damage() {
        let (bytes, _) = encode_all(&[b"one".to_vec()]);
        assert!(matches!(
            scan(&closed(bytes, HEADER_LEN), 8).stop,
            Stop::Bad { .. }
        ));
    }

    #[test]
    fn sector_parts_split_at_sector_boundaries() {
        let parts: Vec<_> = sector_parts(500, 1100).collect();
        assert_eq!(parts, [500..512, 512..1024, 1024..1100]);
        assert_eq!(sector_parts(7, 7).count(), 0);
    }

    #[test]
    fn a_partial_write_keeps_or_drops_whole_sectors() {
        let expected: Vec<u8> = (0..40).map(|i| i as u8 + 1).collect();
        let at = SECTOR - 10;
        let mut actual = vec![0; 60];
        assert!(is_partial_write_of(&actual, at, &expected));
        actual[10..40].copy_from_slice(&expected[10..]);
        assert!(is_partial_write_of(&actual, at, &expected));
        actual[..10].copy_from_slice(&expected[..10]);
        assert!(is_partial_write_of(&actual, at, &expected));
        actual[3] ^= 1;
        assert!(!is_partial_write_of(&actual, at, &expected));
        actual[3] ^= 1;
        actual[50] = 1;
        assert!(!is_partial_write_of(&actual, at, &expected));
    }

    #[test]
    fn last_nonzero_finds_the_last_written_byte() {
        let mut bytes = vec![0; 100];
        assert_eq!(last_nonzero(&bytes, 0), None);
        bytes[3] = 1;
        bytes[61] = 2;
        assert_eq!(last_nonzero(&bytes, 0), Some(61));
        assert_eq!(last_nonzero(&bytes, 62), None);
        assert_eq!(last_nonzero(&bytes, 200), None);
    }

    proptest! {
        #[test]
        fn any_bytes_scan_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let scan = scan(&bytes, 0);
            prop_assert!(scan.end <= bytes.len());
        }

        /// A write of several records over zeros, cut off at sector granularity (any subset of
        /// its sectors reached the disk), reads as the records before the first sector lost,
        /// then either the closing zeros or a torn record.
        #[test]
        fn an_unfinished_write_reads_as_a_prefix_then_a_tear(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 1..8),
            lost in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let (bytes, _) = encode_all(&payloads);
            let mut disk = closed(bytes.clone(), 2 * SECTOR);
            for (sector, lost) in lost.iter().enumerate() {
                let range = sector * SECTOR..((sector + 1) * SECTOR).min(bytes.len());
                if *lost && range.start < range.end {
                    disk[range].fill(0);
                }
            }
            let scan = scan(&disk, 7);
            for (r, p) in scan.records.iter().zip(&payloads) {
                prop_assert_eq!(r.payload, &p[..]);
            }
            match scan.stop {
                Stop::End => {}
                Stop::Bad { torn, .. } => prop_assert!(torn),
                Stop::Eof { reason } => prop_assert!(false, "{}", reason),
            }
        }
    }
}
