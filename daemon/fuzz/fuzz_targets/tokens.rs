//! Fuzzes the decoding of the opaque strings clients hand back: receipt handles, shard
//! iterators and list tokens. Nothing may panic; a receipt handle that decodes must
//! encode to one that decodes to the same receipt.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_daemon::queue::receipt::Receipt;
use sluice_daemon::stream::iterator::{decode_token, ShardPosition};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(receipt) = Receipt::decode(text) {
        assert_eq!(Receipt::decode(&receipt.encode()).map(|r| format!("{r:?}")), Some(format!("{receipt:?}")));
    }
    let _ = ShardPosition::decode(text, 1_700_000_000_000);
    let _ = decode_token(text, 1_700_000_000_000, 300_000);
});
