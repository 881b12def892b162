//! Fuzzes the opaque strings clients hand back: receipt handles, shard iterators and list
//! tokens. Nothing may panic on any text; handles and iterators made from any fields open to
//! the same fields under the key that sealed them, and to nothing under another key.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_daemon::queue::receipt::Receipt;
use sluice_daemon::seal::SealKey;
use sluice_daemon::stream::iterator::{decode_token, encode_token, ShardPosition};

fuzz_target!(|data: &[u8]| {
    let key = SealKey::from_seed(7);
    let other = SealKey::from_seed(8);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Receipt::decode(text, &key);
        let _ = ShardPosition::decode(text, 1_700_000_000_000, &key);
        let _ = decode_token(text, 1_700_000_000_000, 300_000, &key);
        let token = encode_token(text, 1_700_000_000_000, &key);
        assert_eq!(decode_token(&token, 1_700_000_000_000, 300_000, &key).ok().as_deref(), Some(text));
        assert!(decode_token(&token, 1_700_000_000_000, 300_000, &other).is_err());
    }
    if data.len() >= 30 {
        let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
        let receipt = Receipt {
            shard: u16::from_le_bytes([data[0], data[1]]),
            queue_id: u64_at(2),
            seq: u64_at(10),
            receive_count: u32::from_le_bytes(data[18..22].try_into().unwrap()),
            tag: u64_at(22),
        };
        let handle = receipt.encode(&key);
        assert_eq!(Receipt::decode(&handle, &key), Some(receipt));
        assert_eq!(Receipt::decode(&handle, &other), None);
        let issued_ms = u64_at(2) % 4_000_000_000_000;
        let position = ShardPosition { stream_id: u64_at(10), shard: u32::from_le_bytes(data[18..22].try_into().unwrap()), next: u64_at(22), issued_ms };
        let iterator = position.encode(&key);
        assert_eq!(ShardPosition::decode(&iterator, issued_ms, &key), Ok(position));
        assert!(ShardPosition::decode(&iterator, issued_ms, &other).is_err());
    }
});
