//! Fuzzes the decoding of what the daemon reads back from disk, which it never trusts:
//! log records (headers, CRCs, SKIP records), queue journal events, the metadata file's
//! registry document and its journal. Nothing may panic; a queue event that decodes must
//! encode to bytes that decode to the same event.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_daemon::queue::journal::Event;
use sluice_daemon::catalog::{Naming, Registry};
use sluice_daemon::storage::meta::apply_journal;
use sluice_daemon::storage::record::{decode_past_skips, decode_record, Decoded};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 3 {
        0 => {
            // A segment's bytes, walked as a reader walks them.
            let mut at = 0;
            while at < rest.len() {
                let (found, decoded) = decode_past_skips(rest, at);
                match decoded {
                    Decoded::Record { size, .. } if size > 0 => at = found + size,
                    _ => break,
                }
            }
            let _ = decode_record(rest);
        }
        1 => {
            let kind = rest.first().copied().unwrap_or(0);
            if let Ok(event) = Event::decode(kind, rest.get(1..).unwrap_or_default()) {
                let mut again = Vec::new();
                event.encode(&mut again);
                let decoded = Event::decode(event.kind(), &again).expect("an encoded event decodes");
                assert_eq!(format!("{decoded:?}"), format!("{event:?}"));
            }
        }
        _ => {
            // A metadata document (JSON), then a journal after a zero byte.
            let split = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            let Ok(document) = serde_json::from_slice::<serde_json::Value>(&rest[..split]) else { return };
            let journal = rest.get(split + 1..).unwrap_or_default();
            if let Ok((document, _)) = apply_journal(document, journal) {
                // With a root key: the key service's section (sealed material, fingerprints) is read too.
                let root = std::sync::Arc::new(sluice_daemon::kms::root::RootKey::from_bytes(&[7; 32]));
                let _ = Registry::from_json(Naming::default(), &document, Some(root));
            }
        }
    }
});
