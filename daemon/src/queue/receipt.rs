//! Receipt handles: which message, on which shard, from which receive.
//!
//! A handle names the owning shard, the queue incarnation, the message's
//! sequence number in that shard's partition and the receive count at the time
//! it was issued, so that "the latest receive" can be told from older ones, and
//! a tag from the message id: after a crash, a sequence number whose send was never
//! acknowledged (or whose records compaction removed) can be given to a new
//! message, and the tag keeps an old handle from touching it.
//! A MAC under the daemon's key (`seal`) tells handles we issued from garbled, invented
//! or edited ones: a client cannot make a handle for a message it never received.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::seal::{SealKey, TAG_BYTES};

/// 3: sealed with the data directory's key (2 carried a CRC-32, refused since).
const VERSION: u8 = 3;
const PAYLOAD_BYTES: usize = 1 + 2 + 8 + 8 + 4 + 8;
const HANDLE_BYTES: usize = PAYLOAD_BYTES + TAG_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub shard: u16,
    pub queue_id: u64,
    pub seq: u64,
    pub receive_count: u32,
    /// The low 64 bits of the message id.
    pub tag: u64,
}

impl Receipt {
    pub fn encode(&self, key: &SealKey) -> String {
        let mut raw = [0u8; HANDLE_BYTES];
        raw[0] = VERSION;
        raw[1..3].copy_from_slice(&self.shard.to_be_bytes());
        raw[3..11].copy_from_slice(&self.queue_id.to_be_bytes());
        raw[11..19].copy_from_slice(&self.seq.to_be_bytes());
        raw[19..23].copy_from_slice(&self.receive_count.to_be_bytes());
        raw[23..31].copy_from_slice(&self.tag.to_be_bytes());
        let tag = key.tag(&raw[..PAYLOAD_BYTES]);
        raw[PAYLOAD_BYTES..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// `None` for anything this server did not issue.
    pub fn decode(handle: &str, key: &SealKey) -> Option<Receipt> {
        if handle.len() > 80 {
            return None;
        }
        let mut raw = [0u8; HANDLE_BYTES];
        let len = URL_SAFE_NO_PAD.decode_slice(handle.as_bytes(), &mut raw).ok()?;
        if len != HANDLE_BYTES || raw[0] != VERSION || !key.verify(&raw[..PAYLOAD_BYTES], &raw[PAYLOAD_BYTES..]) {
            return None;
        }
        let u64_at = |at: usize| u64::from_be_bytes(raw[at..at + 8].try_into().unwrap_or_default());
        Some(Receipt {
            shard: u16::from_be_bytes([raw[1], raw[2]]),
            queue_id: u64_at(3),
            seq: u64_at(11),
            receive_count: u32::from_be_bytes([raw[19], raw[20], raw[21], raw[22]]),
            tag: u64_at(23),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_reject_tampering() {
        let key = SealKey::from_seed(7);
        let receipt = Receipt { shard: 1, queue_id: 7, seq: 123_456, receive_count: 3, tag: 0xDEAD_BEEF_0102_0304 };
        let handle = receipt.encode(&key);
        assert_eq!(Receipt::decode(&handle, &key), Some(receipt));
        let mut tampered = handle.clone().into_bytes();
        tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(Receipt::decode(std::str::from_utf8(&tampered).unwrap(), &key), None);
        assert_eq!(Receipt::decode("garbage", &key), None);
        assert_eq!(Receipt::decode("", &key), None);
        assert_eq!(Receipt::decode(&"A".repeat(1000), &key), None);
    }

    #[test]
    fn a_handle_made_without_the_key_is_refused() {
        let key = SealKey::from_seed(7);
        // What a client that knows the format but not the key can make: another message's
        // handle, and the same handle with its check recomputed as the old CRC-32 did.
        let receipt = Receipt { shard: 0, queue_id: 7, seq: 99, receive_count: 1, tag: 42 };
        let forged = receipt.encode(&SealKey::from_seed(8));
        assert_eq!(Receipt::decode(&forged, &key), None);
        let mut raw = URL_SAFE_NO_PAD.decode(receipt.encode(&key)).unwrap();
        raw[11..19].copy_from_slice(&100u64.to_be_bytes());
        let crc = crc32fast::hash(&raw[..PAYLOAD_BYTES]).to_be_bytes();
        raw[PAYLOAD_BYTES..PAYLOAD_BYTES + 4].copy_from_slice(&crc);
        assert_eq!(Receipt::decode(&URL_SAFE_NO_PAD.encode(&raw), &key), None);
    }
}
