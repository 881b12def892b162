//! Shard iterators and list tokens: opaque strings that carry a position and the
//! time they were issued, checked on the way back in (they come from clients).
//!
//! An iterator is hex of (version, stream id, shard index, next log sequence number,
//! issue time) and their tag under the daemon's key (`seal`): a typo, a truncated copy or
//! an edited one is refused as invalid rather than read as another position, and a client
//! cannot make one for a stream or shard it was not given one for, nor make an expired one
//! young again. Tokens are sealed the same way.

use sluice_protocol::limits::ITERATOR_LIFETIME_MS;
use sluice_protocol::{ErrorCode, OpError};

use sluice_protocol::auth::hex;

use crate::seal::{SealKey, TAG_BYTES};

/// 2: sealed with the data directory's key (1 carried a CRC-32, refused since).
const VERSION: u8 = 2;
const BODY_BYTES: usize = 1 + 8 + 4 + 8 + 8;

/// Where a reader of one shard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardPosition {
    pub stream_id: u64,
    pub shard: u32,
    /// The next log sequence number to read (0: the oldest kept).
    pub next: u64,
    pub issued_ms: u64,
}

impl ShardPosition {
    pub fn encode(&self, key: &SealKey) -> String {
        let mut bytes = Vec::with_capacity(BODY_BYTES + TAG_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.stream_id.to_be_bytes());
        bytes.extend_from_slice(&self.shard.to_be_bytes());
        bytes.extend_from_slice(&self.next.to_be_bytes());
        bytes.extend_from_slice(&self.issued_ms.to_be_bytes());
        hex(&key.seal(bytes))
    }

    /// Reads an iterator back; refuses anything not made by `encode`, and iterators
    /// older than five minutes.
    pub fn decode(text: &str, now_ms: u64, key: &SealKey) -> Result<ShardPosition, OpError> {
        let invalid = || OpError::new(ErrorCode::InvalidArgument, format!("Invalid ShardIterator: {}", shorten(text)));
        if text.len() != (BODY_BYTES + TAG_BYTES) * 2 {
            return Err(invalid());
        }
        let bytes = from_hex(text).ok_or_else(invalid)?;
        let body = key.open(&bytes).ok_or_else(invalid)?;
        if body[0] != VERSION {
            return Err(invalid());
        }
        let u64_at = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().unwrap_or_default());
        let position = ShardPosition {
            stream_id: u64_at(1),
            shard: u32::from_be_bytes(body[9..13].try_into().unwrap_or_default()),
            next: u64_at(13),
            issued_ms: u64_at(21),
        };
        if now_ms > position.issued_ms.saturating_add(ITERATOR_LIFETIME_MS) {
            return Err(OpError::new(
                ErrorCode::ExpiredIterator,
                format!("Iterator expired. The iterator was created at time {} while right now it is {}.", position.issued_ms, now_ms),
            ));
        }
        Ok(position)
    }
}

fn shorten(text: &str) -> &str {
    let end = text.char_indices().nth(80).map_or(text.len(), |(at, _)| at);
    &text[..end]
}

/// A pagination token: what comes after, and when it was issued (tokens expire after
/// `lifetime_ms`). Hex of `issued_ms:after` and its tag.
pub fn encode_token(after: &str, issued_ms: u64, key: &SealKey) -> String {
    hex(&key.seal(format!("{issued_ms}:{after}").into_bytes()))
}

/// Bytes of a lower- or upper-case hex string; `None` for anything else.
fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok()).collect()
}

pub fn decode_token(token: &str, now_ms: u64, lifetime_ms: u64, key: &SealKey) -> Result<String, OpError> {
    let invalid = || OpError::new(ErrorCode::InvalidArgument, "NextToken is not valid.");
    let bytes = from_hex(token).ok_or_else(invalid)?;
    let text = std::str::from_utf8(key.open(&bytes).ok_or_else(invalid)?).map_err(|_| invalid())?;
    let (issued, after) = text.split_once(':').ok_or_else(invalid)?;
    let issued: u64 = issued.parse().map_err(|_| invalid())?;
    if now_ms > issued.saturating_add(lifetime_ms) {
        return Err(OpError::new(ErrorCode::ExpiredNextToken, "The NextToken has expired."));
    }
    Ok(after.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterators_round_trip_and_refuse_damage_and_age() {
        let key = SealKey::from_seed(3);
        let position = ShardPosition { stream_id: 9, shard: 3, next: 12345, issued_ms: 1_000 };
        let text = position.encode(&key);
        assert_eq!(ShardPosition::decode(&text, 2_000, &key), Ok(position));
        let mut damaged = text.clone().into_bytes();
        damaged[20] = if damaged[20] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            ShardPosition::decode(std::str::from_utf8(&damaged).unwrap(), 2_000, &key).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(ShardPosition::decode("nonsense", 2_000, &key).unwrap_err().code, ErrorCode::InvalidArgument);
        assert_eq!(ShardPosition::decode(&text, 1_000 + ITERATOR_LIFETIME_MS + 1, &key).unwrap_err().code, ErrorCode::ExpiredIterator);
        // Made without the key: refused, whatever it names.
        let forged = ShardPosition { issued_ms: 1_900, ..position }.encode(&SealKey::from_seed(4));
        assert_eq!(ShardPosition::decode(&forged, 2_000, &key).unwrap_err().code, ErrorCode::InvalidArgument);
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let key = SealKey::from_seed(3);
        let token = encode_token("shardId-000000000004", 10, &key);
        assert_eq!(decode_token(&token, 20, 100, &key).unwrap(), "shardId-000000000004");
        assert_eq!(decode_token(&token, 200, 100, &key).unwrap_err().code, ErrorCode::ExpiredNextToken);
        assert_eq!(decode_token("zz", 20, 100, &key).unwrap_err().code, ErrorCode::InvalidArgument);
        // The old unsealed form, or one sealed under another key, is refused.
        assert_eq!(decode_token(&hex(b"10:shardId-000000000004"), 20, 100, &key).unwrap_err().code, ErrorCode::InvalidArgument);
        assert_eq!(
            decode_token(&encode_token("x", 10, &SealKey::from_seed(4)), 20, 100, &key).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }
}
