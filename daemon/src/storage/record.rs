//! The on-disk record format of the storage log. No I/O here.
//!
//! A record is a 24-byte header and its payload, padded to 8 bytes:
//!
//! | bytes  | field                                                        |
//! |--------|--------------------------------------------------------------|
//! | 0..4   | CRC32 (IEEE) of bytes 4..24 of the header and the payload    |
//! | 4..8   | payload length, little-endian u32                             |
//! | 8..16  | sequence number, little-endian u64 (1, 2, 3, … across the log)|
//! | 16     | kind (what the payload is; 0 is never used)                  |
//! | 17..22 | flush: which group commit of the log wrote it, u40 LE (0: not known) |
//! | 22..24 | position: records of the same flush before this one, u16 LE (saturating) |
//!
//! The flush number tells a torn last flush from damage: after a power loss a multi-block
//! write may have reached the disk out of order, leaving a hole with valid records after
//! it — all of them from the one flush that never completed (and was never acknowledged).
//! The position tells where that flush began when its first records are the torn ones: the
//! first valid record after the hole, less its position, is the flush's first sequence
//! number. (Records written before positions existed carry a 56-bit flush number whose top
//! bytes are zero: they read as position 0, which never excuses damage.)
//!
//! Segments are preallocated and zero-filled, so an all-zero header means
//! "nothing was ever written here": the end of the log. Anything else that
//! fails to check is damage, and the caller decides whether it is a torn tail
//! (nothing but zeros after it) or corruption.

/// Bytes of a record header.
pub const RECORD_HEADER_BYTES: usize = 24;
/// Records start on multiples of this.
pub const RECORD_ALIGN: usize = 8;
/// Largest payload a record may carry (a whole SendMessageBatch fits with room to spare).
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Every kind of record a log holds, in one table: the byte at offset 16 of a header.
/// 0 is never used (an all-zero header is "nothing written here").
pub mod kind {
    /// Queue journal events (`queue::journal::Event`).
    pub const QUEUE_SENT: u8 = 1;
    pub const QUEUE_RECEIVED: u8 = 2;
    pub const QUEUE_VISIBILITY: u8 = 3;
    pub const QUEUE_DELETED: u8 = 4;
    pub const QUEUE_MOVED_OUT: u8 = 5;
    pub const QUEUE_MOVED_IN: u8 = 6;
    pub const QUEUE_PURGED: u8 = 7;
    pub const QUEUE_RESTORED: u8 = 8;
    /// A topic's message taken into a subscribed queue from the topic's feed.
    pub const QUEUE_FED: u8 = 9;
    /// Where a subscribed queue reads a topic's feed.
    pub const QUEUE_CURSOR: u8 = 10;
    /// A feed's messages below a point, gone (every reader has passed them).
    pub const QUEUE_TRIMMED: u8 = 11;
    /// A FIFO queue's deduplication id, kept for its window after its message has gone.
    pub const QUEUE_DEDUP: u8 = 12;
    /// A stream record: arrival time and data (`storage::stream`).
    pub const STREAM_RECORD: u8 = 16;
    /// A Raft group's log (`storage::raft`): an entry, the vote, the commit mark, the entries
    /// after a point gone (a leader's log overrode them), and those up to a point purged.
    pub const RAFT_ENTRY: u8 = 20;
    pub const RAFT_VOTE: u8 = 21;
    pub const RAFT_COMMITTED: u8 = 22;
    pub const RAFT_TRUNCATED: u8 = 23;
    pub const RAFT_PURGED: u8 = 24;
    /// What a repair writes over damaged bytes, and the marker of sequence numbers lost before
    /// they were written: replay passes over it, and the next record may follow with a gap.
    pub const SKIP: u8 = 255;
}

/// A SKIP record's header whose payload is exactly `covered` (the damaged bytes left in
/// place after it); header plus payload span the damaged range.
pub fn skip_header(covered: &[u8]) -> [u8; RECORD_HEADER_BYTES] {
    let mut header = [0u8; RECORD_HEADER_BYTES];
    header[4..8].copy_from_slice(&(covered.len() as u32).to_le_bytes());
    header[16] = kind::SKIP;
    let crc = checksum(&header[4..], covered);
    header[0..4].copy_from_slice(&crc.to_le_bytes());
    header
}

/// A record's size on disk: header, payload and padding.
pub fn record_bytes(payload_len: usize) -> usize {
    (RECORD_HEADER_BYTES + payload_len).next_multiple_of(RECORD_ALIGN)
}

fn checksum(header_tail: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header_tail);
    hasher.update(payload);
    hasher.finalize()
}

/// Largest flush number a header holds (40 bits: wrapping is harmless, flush numbers are only
/// compared between neighbouring records).
pub const FLUSH_MAX: u64 = (1 << 40) - 1;
/// The position a header holds for the 65,535th record of a flush and every later one.
pub const POSITION_MAX: u64 = u16::MAX as u64;

/// Appends one record to `out`; returns its size on disk.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, kind: u8, payload: &[u8]) -> usize {
    let start = begin_record(out);
    out.extend_from_slice(payload);
    finish_record(out, start, seq, kind, 0, 0)
}

/// The flush number in the header of the record at the start of `buf` (0 when there is none).
pub fn flush_of(buf: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    if let Some(field) = buf.get(17..22) {
        bytes[..5].copy_from_slice(field);
    }
    u64::from_le_bytes(bytes)
}

/// How many records of its flush come before the record at the start of `buf`
/// (`POSITION_MAX`: that many or more).
pub fn position_of(buf: &[u8]) -> u64 {
    buf.get(22..RECORD_HEADER_BYTES).map_or(0, |field| u16::from_le_bytes([field[0], field[1]]) as u64)
}

/// Starts a record at the end of `out` (a header to fill in); the caller then appends the
/// payload right after it and calls `finish_record` with the returned start.
pub fn begin_record(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.resize(start + RECORD_HEADER_BYTES, 0);
    start
}

/// Completes the record begun at `start` whose payload is everything after its header:
/// fills in the header (`flush`: the group commit that will write it; `position`: records of
/// that flush before this one) and pads to the record alignment. Returns its size on disk.
pub fn finish_record(out: &mut Vec<u8>, start: usize, seq: u64, kind: u8, flush: u64, position: u64) -> usize {
    assert!(kind != 0, "record kind 0 is reserved for 'nothing written'");
    let len = out.len() - start - RECORD_HEADER_BYTES;
    assert!(len <= RECORD_PAYLOAD_BYTES_MAX, "record payload of {len} bytes is over the limit");
    let size = record_bytes(len);
    let (header, payload) = out[start..].split_at_mut(RECORD_HEADER_BYTES);
    header[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header[16] = kind;
    header[17..22].copy_from_slice(&(flush & FLUSH_MAX).to_le_bytes()[..5]);
    header[22..24].copy_from_slice(&(position.min(POSITION_MAX) as u16).to_le_bytes());
    let crc = checksum(&header[4..], payload);
    header[0..4].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + size, 0);
    size
}

/// What the bytes at a record boundary hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, checked record of `size` bytes on disk.
    Record { seq: u64, kind: u8, payload: &'a [u8], size: usize },
    /// An all-zero header: nothing was written here.
    End,
    /// Not a valid record (cut short, checksum mismatch, impossible length).
    Damaged { reason: &'static str },
}

/// Reads the record at the start of `buf`.
pub fn decode_record(buf: &[u8]) -> Decoded<'_> {
    let Some(header) = buf.get(..RECORD_HEADER_BYTES) else {
        return if buf.iter().all(|b| *b == 0) { Decoded::End } else { Decoded::Damaged { reason: "header cut short" } };
    };
    if header.iter().all(|b| *b == 0) {
        return Decoded::End;
    }
    let crc = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Decoded::Damaged { reason: "length over the limit" };
    }
    let Some(payload) = buf.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len) else {
        return Decoded::Damaged { reason: "payload cut short" };
    };
    if checksum(&header[4..], payload) != crc {
        return Decoded::Damaged { reason: "checksum mismatch" };
    }
    let kind = header[16];
    if kind == 0 {
        return Decoded::Damaged { reason: "invalid kind" };
    }
    let seq = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
    Decoded::Record { seq, kind, payload, size: record_bytes(len) }
}

/// Reads the first record at or after `at` that is not a SKIP record (which readers pass
/// over): where it starts, and what is there.
pub fn decode_past_skips(data: &[u8], mut at: usize) -> (usize, Decoded<'_>) {
    loop {
        match decode_record(data.get(at..).unwrap_or_default()) {
            Decoded::Record { kind: kind::SKIP, size, .. } => at += size,
            other => return (at, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_pad_to_eight_bytes() {
        let mut buf = Vec::new();
        let first = encode_record(&mut buf, 1, 3, b"hello");
        let second = encode_record(&mut buf, 2, 4, b"");
        assert_eq!(first, 32);
        assert_eq!(second, 24);
        assert_eq!(decode_record(&buf), Decoded::Record { seq: 1, kind: 3, payload: b"hello", size: 32 });
        assert_eq!(decode_record(&buf[32..]), Decoded::Record { seq: 2, kind: 4, payload: b"", size: 24 });
        assert_eq!(decode_record(&buf[56..]), Decoded::End);
        assert_eq!(decode_record(&[0u8; 100]), Decoded::End);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, 1, b"payload bytes");
        for byte in 0..RECORD_HEADER_BYTES + 13 {
            for bit in 0..8 {
                let mut damaged = buf.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    !matches!(decode_record(&damaged), Decoded::Record { seq: 7, kind: 1, payload: b"payload bytes", .. }),
                    "flip of byte {byte} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn the_flush_number_is_kept_in_the_checked_header() {
        let mut buf = Vec::new();
        let start = begin_record(&mut buf);
        buf.extend_from_slice(b"x");
        finish_record(&mut buf, start, 9, 2, 0x00EF_0123_4567, 300);
        assert!(matches!(decode_record(&buf), Decoded::Record { seq: 9, kind: 2, .. }));
        assert_eq!(flush_of(&buf), 0x00EF_0123_4567);
        assert_eq!(position_of(&buf), 300);
        let mut saturated = Vec::new();
        let start = begin_record(&mut saturated);
        finish_record(&mut saturated, start, 9, 2, 1, 1 << 20);
        assert_eq!(position_of(&saturated), POSITION_MAX);
        buf[20] ^= 1;
        assert!(matches!(decode_record(&buf), Decoded::Damaged { .. }), "the flush number is under the checksum");
        buf[20] ^= 1;
        buf[23] ^= 1;
        assert!(matches!(decode_record(&buf), Decoded::Damaged { .. }), "the position is under the checksum");
    }

    #[test]
    fn a_record_cut_short_is_damaged_not_the_end() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, 1, &[9u8; 100]);
        assert!(matches!(decode_record(&buf[..60]), Decoded::Damaged { .. }));
        assert!(matches!(decode_record(&buf[..10]), Decoded::Damaged { .. }));
    }
}
