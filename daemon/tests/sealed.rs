//! Receipt handles, shard iterators and list tokens are sealed with a key kept in the data
//! directory: what the daemon handed out keeps working across restarts (graceful and
//! `kill -9`), and what a client makes up or edits is refused, through the real daemon.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use sluice_client::*;
use sluice_protocol::ErrorCode;
use sluice_testkit::*;

fn receive_all(queue: &str) -> ReceiveMessage {
    ReceiveMessage {
        queue: queue.into(),
        max_messages: Some(10),
        wait_time_seconds: Some(0),
        visibility_timeout: Some(600),
        ..ReceiveMessage::default()
    }
}

fn visible_and_inflight(c: &Conn, queue: &str) -> (usize, usize) {
    let attrs =
        c.run(c.client().get_queue_attributes(queue, &["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])).unwrap();
    let count = |name| attribute(&attrs, name).unwrap().parse().unwrap();
    (count("ApproximateNumberOfMessages"), count("ApproximateNumberOfMessagesNotVisible"))
}

/// A receipt handle's sequence number moved by one, and its 4-byte CRC-32 check redone as
/// the unsealed format had it: what a client that knows the layout could forge.
fn edited_receipt(handle: &str, seq_delta: u64) -> String {
    let mut raw = URL_SAFE_NO_PAD.decode(handle).unwrap();
    let seq = u64::from_be_bytes(raw[11..19].try_into().unwrap());
    raw[11..19].copy_from_slice(&(seq + seq_delta).to_be_bytes());
    let crc = crc32fast::hash(&raw[..31]).to_be_bytes();
    raw[31..35].copy_from_slice(&crc);
    URL_SAFE_NO_PAD.encode(&raw)
}

#[test]
fn handles_and_iterators_outlive_restarts_and_forged_ones_are_refused() {
    let mut daemon = Daemon::start_with(&["--cores", "1"]);
    let (handles, iterator) = {
        let c = daemon.client();
        c.run(c.client().create_queue("work", vec![], vec![])).unwrap();
        for i in 0..4 {
            c.run(c.client().send_message("work", Bytes::from(format!("m{i}")))).unwrap();
        }
        let got = c.run(c.client().receive_message(ReceiveMessage { max_messages: Some(2), ..receive_all("work") })).unwrap();
        assert_eq!(got.len(), 2);
        c.run(c.client().create_stream("s", 1)).unwrap();
        c.run(c.client().put_record("s", "k", Bytes::from_static(b"r0"))).unwrap();
        let iterator = c.run(c.client().get_shard_iterator("s", "shardId-000000000000", StartingPosition::new("TRIM_HORIZON"))).unwrap();
        (got.into_iter().map(|m| m.receipt_handle).collect::<Vec<_>>(), iterator)
    };
    let key_file = daemon.data_dir().join("handles.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&key_file).expect("the key is made at the first start");
        assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (16, 0o600));
    }
    let key = std::fs::read(&key_file).unwrap();

    // A graceful restart, then a kill -9: the same key, so the handles and the iterator work.
    daemon.terminate();
    daemon.restart();
    daemon.kill();
    daemon.restart();
    assert_eq!(std::fs::read(&key_file).unwrap(), key, "the key survives restarts unchanged");
    let c = daemon.client();
    let records = c.run(c.client().get_records(&iterator, None)).unwrap();
    assert_eq!(records.records.len(), 1, "an iterator issued before the restarts reads after them");

    // Forged: a handle for a message this client never received (the unreceived ones are the
    // next sequence numbers), and an iterator made young again.
    assert_code(c.run(c.client().delete_message("work", &edited_receipt(&handles[1], 1))), ErrorCode::ReceiptHandleIsInvalid);
    assert_code(c.run(c.client().delete_message("work", &edited_receipt(&handles[1], 0))), ErrorCode::ReceiptHandleIsInvalid);
    let mut young = hex_decode(&iterator);
    young[21..29].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_code(c.run(c.client().get_records(&hex_encode(&young), None)).map(|_| ()), ErrorCode::InvalidArgument);
    assert_eq!(visible_and_inflight(&c, "work"), (2, 2), "nothing was deleted by the forgeries");

    // The real handles delete their messages.
    for handle in &handles {
        c.run(c.client().delete_message("work", handle)).unwrap();
    }
    assert_eq!(visible_and_inflight(&c, "work"), (2, 0));
}

#[test]
fn a_damaged_key_file_stops_the_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut daemon = Daemon::start_in(dir.path(), &[]);
        daemon.terminate();
    }
    std::fs::write(dir.path().join("handles.key"), b"not a key").unwrap();
    let (status, stderr) = Daemon::start_failing(dir.path(), &[]);
    assert!(!status.success());
    assert!(stderr.contains("handles.key") && stderr.contains("not the 16 of a key"), "stderr: {stderr}");
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap()).collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
