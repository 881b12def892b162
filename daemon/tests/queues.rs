//! SQS standard-queue behaviour, through a real daemon (`--cores 2`) and the real client.

use bytes::Bytes;
use sluice_client::*;
use sluice_testkit::*;

fn receive(queue: &str) -> ReceiveMessage {
    ReceiveMessage { queue: queue.into(), max_messages: Some(10), wait_time_seconds: Some(0), ..ReceiveMessage::default() }
}

fn receive_waiting(queue: &str, wait: i32) -> ReceiveMessage {
    ReceiveMessage { wait_time_seconds: Some(wait), ..receive(queue) }
}

fn body(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

#[test]
fn send_receive_delete_round_trip_with_aws_digests() {
    let daemon = Daemon::start();
    let c = daemon.client();
    let url = c.run(c.client().create_queue("orders", vec![], vec![])).unwrap();
    // Queue URLs name the HTTP gateway, where AWS clients reach the same queue.
    assert_eq!(url, format!("{}/000000000000/orders", daemon.http_url()));
    let sent = c.run(c.client().send_message("orders", "hello")).unwrap();
    assert_eq!(sent.md5_of_body, "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(sent.message_id.len(), 36);
    let got = c.run(c.client().receive_message(receive("orders"))).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "hello");
    assert_eq!(got[0].message_id, sent.message_id);
    assert_eq!(got[0].md5_of_body, sent.md5_of_body);
    c.run(c.client().delete_message("orders", &got[0].receipt_handle)).unwrap();
    let counts = c.run(c.client().get_queue_attributes("orders", &["All"])).unwrap();
    assert_eq!(attribute(&counts, "ApproximateNumberOfMessages"), Some("0"));
    assert_eq!(attribute(&counts, "ApproximateNumberOfMessagesNotVisible"), Some("0"));
    // The queue URL works wherever a queue name does.
    c.run(c.client().send_message(&url, "by url")).unwrap();
    assert_eq!(c.run(c.client().receive_message(receive(&url))).unwrap()[0].body, "by url");
}

#[test]
fn create_queue_is_idempotent_only_with_the_same_attributes() {
    let daemon = Daemon::start();
    let c = daemon.client();
    let first = c.run(c.client().create_queue("q", vec![kv("VisibilityTimeout", "40")], vec![])).unwrap();
    let again = c.run(c.client().create_queue("q", vec![kv("VisibilityTimeout", "40")], vec![])).unwrap();
    assert_eq!(first, again);
    assert_eq!(c.run(c.client().create_queue("q", vec![], vec![])).unwrap(), first);
    assert_code(c.run(c.client().create_queue("q", vec![kv("VisibilityTimeout", "41")], vec![])), ErrorCode::QueueNameExists);
}

#[test]
fn invalid_names_and_attributes_get_aws_errors() {
    let daemon = Daemon::start();
    let c = daemon.client();
    assert_code(c.run(c.client().create_queue("bad name", vec![], vec![])), ErrorCode::InvalidParameterValue);
    assert_code(c.run(c.client().create_queue(&"x".repeat(81), vec![], vec![])), ErrorCode::InvalidParameterValue);
    assert_code(c.run(c.client().create_queue("q", vec![kv("DelaySeconds", "901")], vec![])), ErrorCode::InvalidAttributeValue);
    assert_code(c.run(c.client().create_queue("q", vec![kv("MaximumMessageSize", "1048577")], vec![])), ErrorCode::InvalidAttributeValue);
    assert_code(
        c.run(c.client().create_queue("q", vec![kv("MessageRetentionPeriod", "1209601")], vec![])),
        ErrorCode::InvalidAttributeValue,
    );
    assert_code(
        c.run(c.client().create_queue("q", vec![kv("ReceiveMessageWaitTimeSeconds", "21")], vec![])),
        ErrorCode::InvalidAttributeValue,
    );
    assert_code(c.run(c.client().create_queue("q", vec![kv("Flavour", "1")], vec![])), ErrorCode::InvalidAttributeName);
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    assert_code(c.run(c.client().set_queue_attributes("q", vec![kv("VisibilityTimeout", "-1")])), ErrorCode::InvalidAttributeValue);
    assert_code(c.run(c.client().get_queue_attributes("q", &["Flavour"])), ErrorCode::InvalidAttributeName);
}

#[test]
fn unknown_queues_answer_queue_does_not_exist_everywhere() {
    let daemon = Daemon::start();
    let c = daemon.client();
    let client = c.client();
    assert_code(c.run(client.get_queue_url("nope")), ErrorCode::QueueDoesNotExist);
    assert_code(c.run(client.send_message("nope", "x")), ErrorCode::QueueDoesNotExist);
    assert_code(c.run(client.receive_message(receive("nope"))), ErrorCode::QueueDoesNotExist);
    assert_code(c.run(client.delete_queue("nope")), ErrorCode::QueueDoesNotExist);
    assert_code(c.run(client.purge_queue("nope")), ErrorCode::QueueDoesNotExist);
    assert_code(c.run(client.get_queue_attributes("nope", &["All"])), ErrorCode::QueueDoesNotExist);
    assert_code(c.run(client.set_queue_attributes("nope", vec![kv("DelaySeconds", "1")])), ErrorCode::QueueDoesNotExist);
    assert_code(c.run(client.list_queue_tags("nope")), ErrorCode::QueueDoesNotExist);
    assert_code(c.run(client.delete_message("nope", "h")), ErrorCode::QueueDoesNotExist);
    assert_code(c.run(client.change_message_visibility("nope", "h", 1)), ErrorCode::QueueDoesNotExist);
}

#[test]
fn list_queues_filters_by_prefix_and_paginates() {
    let daemon = Daemon::start();
    let c = daemon.client();
    for name in ["alpha-1", "alpha-2", "alpha-3", "beta"] {
        c.run(c.client().create_queue(name, vec![], vec![])).unwrap();
    }
    let (all, token) = c.run(c.client().list_queues(None, None, None)).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(token, None);
    let (page, token) = c.run(c.client().list_queues(Some("alpha"), Some(2), None)).unwrap();
    assert_eq!(page.len(), 2);
    let (rest, last) = c.run(c.client().list_queues(Some("alpha"), Some(2), token)).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(last, None);
    assert!(rest[0].ends_with("alpha-3"));
    assert_code(c.run(c.client().list_queues(None, Some(0), None)), ErrorCode::InvalidParameterValue);
    assert_code(c.run(c.client().list_queues(None, Some(2), Some("!!".into()))), ErrorCode::InvalidParameterValue);
}

#[test]
fn deleted_queue_is_gone_and_cannot_be_recreated_within_a_minute() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("temp", vec![], vec![])).unwrap();
    c.run(c.client().send_message("temp", "x")).unwrap();
    c.run(c.client().delete_queue("temp")).unwrap();
    assert_code(c.run(c.client().get_queue_url("temp")), ErrorCode::QueueDoesNotExist);
    assert_code(c.run(c.client().create_queue("temp", vec![], vec![])), ErrorCode::QueueDeletedRecently);
}

#[test]
fn attributes_report_settings_and_message_counts() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![kv("VisibilityTimeout", "60")], vec![])).unwrap();
    c.run(c.client().set_queue_attributes("q", vec![kv("MaximumMessageSize", "2048"), kv("ReceiveMessageWaitTimeSeconds", "2")])).unwrap();
    let entry = |delay| SendEntry { body: body("m"), delay_seconds: Some(delay), ..SendEntry::default() };
    c.run(c.client().send_entry("q", entry(0))).unwrap();
    c.run(c.client().send_entry("q", entry(0))).unwrap();
    c.run(c.client().send_entry("q", entry(600))).unwrap();
    c.run(c.client().receive_message(ReceiveMessage { max_messages: Some(1), ..receive("q") })).unwrap();
    let attributes = c.run(c.client().get_queue_attributes("q", &["All"])).unwrap();
    assert_eq!(attribute(&attributes, "ApproximateNumberOfMessages"), Some("1"));
    assert_eq!(attribute(&attributes, "ApproximateNumberOfMessagesNotVisible"), Some("1"));
    assert_eq!(attribute(&attributes, "ApproximateNumberOfMessagesDelayed"), Some("1"));
    assert_eq!(attribute(&attributes, "VisibilityTimeout"), Some("60"));
    assert_eq!(attribute(&attributes, "MaximumMessageSize"), Some("2048"));
    assert_eq!(attribute(&attributes, "ReceiveMessageWaitTimeSeconds"), Some("2"));
    assert_eq!(attribute(&attributes, "QueueArn"), Some("arn:aws:sqs:us-east-1:000000000000:q"));
    assert!(attribute(&attributes, "CreatedTimestamp").unwrap().parse::<u64>().unwrap() > 1_600_000_000);
    assert!(attribute(&attributes, "LastModifiedTimestamp").is_some());
    // Only what was asked for; nothing when nothing was asked for.
    let some = c.run(c.client().get_queue_attributes("q", &["DelaySeconds"])).unwrap();
    assert_eq!(some, vec![kv("DelaySeconds", "0")]);
    assert!(c.run(c.client().get_queue_attributes("q", &[])).unwrap().is_empty());
}

#[test]
fn tags_are_added_listed_and_removed() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![kv("team", "a")])).unwrap();
    c.run(c.client().tag_queue("q", vec![kv("env", "prod"), kv("team", "b")])).unwrap();
    let mut tags = c.run(c.client().list_queue_tags("q")).unwrap();
    tags.sort();
    assert_eq!(tags, vec![kv("env", "prod"), kv("team", "b")]);
    c.run(c.client().untag_queue("q", vec!["team".into()])).unwrap();
    assert_eq!(c.run(c.client().list_queue_tags("q")).unwrap(), vec![kv("env", "prod")]);
}

#[test]
fn purge_removes_every_message_once_a_minute() {
    let daemon = Daemon::start();
    let a = daemon.client_on_shard(0);
    let b = daemon.client_on_shard(1);
    a.run(a.client().create_queue("q", vec![], vec![])).unwrap();
    a.run(a.client().send_message("q", "on shard 0")).unwrap();
    b.run(b.client().send_message("q", "on shard 1")).unwrap();
    b.run(b.client().send_entry("q", SendEntry { body: body("delayed"), delay_seconds: Some(900), ..SendEntry::default() })).unwrap();
    b.run(b.client().receive_message(ReceiveMessage { max_messages: Some(1), ..receive("q") })).unwrap();
    a.run(a.client().purge_queue("q")).unwrap();
    let attributes = a.run(a.client().get_queue_attributes("q", &["All"])).unwrap();
    for name in ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"] {
        assert_eq!(attribute(&attributes, name), Some("0"), "{name}");
    }
    assert_code(b.run(b.client().purge_queue("q")), ErrorCode::PurgeQueueInProgress);
}

#[test]
fn send_batch_reports_each_entry_and_rejects_bad_batches() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    let entry = |id: &str, text: &str| SendEntry { id: id.into(), body: body(text), ..SendEntry::default() };
    let (ok, failed) =
        c.run(c.client().send_message_batch("q", vec![entry("a", "one"), entry("b", "two\u{0}"), entry("c", "three")])).unwrap();
    assert_eq!(ok.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, "b");
    assert_eq!(failed[0].code, ErrorCode::InvalidMessageContents);
    assert!(failed[0].sender_fault);
    assert_code(c.run(c.client().send_message_batch("q", vec![])), ErrorCode::EmptyBatchRequest);
    let eleven = (0..11).map(|i| entry(&i.to_string(), "x")).collect();
    assert_code(c.run(c.client().send_message_batch("q", eleven)), ErrorCode::TooManyEntriesInBatchRequest);
    assert_code(c.run(c.client().send_message_batch("q", vec![entry("a", "x"), entry("a", "y")])), ErrorCode::BatchEntryIdsNotDistinct);
    assert_code(c.run(c.client().send_message_batch("q", vec![entry("bad id", "x")])), ErrorCode::InvalidBatchEntryId);
    let big = "x".repeat(600 * 1024);
    assert_code(c.run(c.client().send_message_batch("q", vec![entry("a", &big), entry("b", &big)])), ErrorCode::BatchRequestTooLong);
    // Nothing from the rejected batches was stored.
    let attributes = c.run(c.client().get_queue_attributes("q", &["ApproximateNumberOfMessages"])).unwrap();
    assert_eq!(attribute(&attributes, "ApproximateNumberOfMessages"), Some("2"));
}

#[test]
fn message_size_and_content_rules_are_enforced() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![kv("MaximumMessageSize", "1024")], vec![])).unwrap();
    c.run(c.client().send_message("q", "x".repeat(1024))).unwrap();
    assert_code(c.run(c.client().send_message("q", "x".repeat(1025))), ErrorCode::InvalidParameterValue);
    // Attributes count towards the size: 1000 + name (1) + type (6) + value (20) > 1024.
    let entry = SendEntry {
        body: body(&"x".repeat(1000)),
        attributes: vec![MessageAttribute::string("a", "String", "y".repeat(20))],
        ..SendEntry::default()
    };
    assert_code(c.run(c.client().send_entry("q", entry)), ErrorCode::InvalidParameterValue);
    assert_code(c.run(c.client().send_message("q", "bad \u{1} char")), ErrorCode::InvalidMessageContents);
    assert_code(c.run(c.client().send_message("q", "")), ErrorCode::MissingParameter);
    let delayed = SendEntry { body: body("x"), delay_seconds: Some(901), ..SendEntry::default() };
    assert_code(c.run(c.client().send_entry("q", delayed)), ErrorCode::InvalidParameterValue);
    let dedup = SendEntry { body: body("x"), deduplication_id: Some("d".into()), ..SendEntry::default() };
    assert_code(c.run(c.client().send_entry("q", dedup)), ErrorCode::InvalidParameterValue);
    // The default limit is 1 MiB (SQS's current default).
    c.run(c.client().create_queue("big", vec![], vec![])).unwrap();
    c.run(c.client().send_message("big", "x".repeat(1024 * 1024))).unwrap();
    assert_code(c.run(c.client().send_message("big", "x".repeat(1024 * 1024 + 1))), ErrorCode::InvalidParameterValue);
}

#[test]
fn message_attributes_are_selected_and_digested_as_aws_does() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    let attributes = vec![
        MessageAttribute::string("attribName1", "String", "attribValue 1"),
        MessageAttribute::string("customNumberTypeAttrib", "Number.float", "4563442423554324324264524243.32543234"),
        MessageAttribute::binary("binaryAttribute", Bytes::from_static(b"Hello binary world!")),
    ];
    let entry = SendEntry {
        body: body("hello"),
        attributes,
        system_attributes: vec![MessageAttribute::string("AWSTraceHeader", "String", "Root=1-abc")],
        message_group_id: Some("tenant-7".into()),
        ..SendEntry::default()
    };
    let sent = c.run(c.client().send_entry("q", entry)).unwrap();
    assert_eq!(sent.md5_of_attributes.as_deref(), Some("c932db14a896c663f83c260297d594ff"));
    assert!(sent.md5_of_system_attributes.is_some());
    let request = ReceiveMessage {
        message_attribute_names: vec!["attribName1".into()],
        system_attribute_names: vec!["All".into()],
        visibility_timeout: Some(0),
        ..receive("q")
    };
    let got = c.run(c.client().receive_message(request.clone())).unwrap().remove(0);
    assert_eq!(got.message_attributes.len(), 1);
    assert_eq!(got.md5_of_attributes.as_deref(), Some("19e27d4e946b072f3f58da80d94fd778"));
    assert_eq!(attribute(&got.attributes, "ApproximateReceiveCount"), Some("1"));
    assert_eq!(attribute(&got.attributes, "AWSTraceHeader"), Some("Root=1-abc"));
    assert_eq!(attribute(&got.attributes, "MessageGroupId"), Some("tenant-7"));
    assert_eq!(attribute(&got.attributes, "SenderId"), Some("000000000000"));
    let sent_at: u64 = attribute(&got.attributes, "SentTimestamp").unwrap().parse().unwrap();
    let first: u64 = attribute(&got.attributes, "ApproximateFirstReceiveTimestamp").unwrap().parse().unwrap();
    assert!(first >= sent_at);
    let all = ReceiveMessage { message_attribute_names: vec!["All".into()], ..request.clone() };
    let got = c.run(c.client().receive_message(all)).unwrap().remove(0);
    assert_eq!(got.message_attributes.len(), 3);
    assert_eq!(got.md5_of_attributes.as_deref(), Some("c932db14a896c663f83c260297d594ff"));
    let prefix = ReceiveMessage { message_attribute_names: vec!["customNumberTypeAttrib.*".into(), "binary*".into()], ..request.clone() };
    assert!(c.run(c.client().receive_message(prefix)).unwrap()[0].message_attributes.is_empty());
    let none = ReceiveMessage { message_attribute_names: vec![], system_attribute_names: vec![], ..request };
    let got = c.run(c.client().receive_message(none)).unwrap().remove(0);
    assert!(got.message_attributes.is_empty() && got.attributes.is_empty() && got.md5_of_attributes.is_none());
    let bad =
        SendEntry { body: body("x"), attributes: vec![MessageAttribute::string("AWS.reserved", "String", "v")], ..SendEntry::default() };
    assert_code(c.run(c.client().send_entry("q", bad)), ErrorCode::InvalidParameterValue);
}

#[test]
fn delayed_messages_stay_hidden_until_their_delay_passes() {
    let daemon = Daemon::start();
    let c = daemon.client();
    // Two seconds: enough margin that the first receive surely comes before the delay ends.
    c.run(c.client().create_queue("q", vec![kv("DelaySeconds", "2")], vec![])).unwrap();
    c.run(c.client().send_message("q", "queue delay")).unwrap();
    c.run(c.client().send_entry("q", SendEntry { body: body("no delay"), delay_seconds: Some(0), ..SendEntry::default() })).unwrap();
    let first = c.run(c.client().receive_message(receive("q"))).unwrap();
    assert_eq!(first.iter().map(|m| m.body.clone()).collect::<Vec<_>>(), ["no delay"]);
    let attributes = c.run(c.client().get_queue_attributes("q", &["ApproximateNumberOfMessagesDelayed"])).unwrap();
    assert_eq!(attribute(&attributes, "ApproximateNumberOfMessagesDelayed"), Some("1"));
    // A long poll returns the delayed message once its delay is over.
    let later = c.run(c.client().receive_message(receive_waiting("q", 10))).unwrap();
    assert_eq!(later.iter().map(|m| m.body.clone()).collect::<Vec<_>>(), ["queue delay"]);
}

#[test]
fn message_returns_after_its_visibility_timeout_with_a_new_handle() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![kv("VisibilityTimeout", "2")], vec![])).unwrap();
    c.run(c.client().send_message("q", "again")).unwrap();
    let first =
        c.run(c.client().receive_message(ReceiveMessage { system_attribute_names: vec!["All".into()], ..receive("q") })).unwrap().remove(0);
    assert!(c.run(c.client().receive_message(receive("q"))).unwrap().is_empty());
    let second = c
        .run(c.client().receive_message(ReceiveMessage { system_attribute_names: vec!["All".into()], ..receive_waiting("q", 10) }))
        .unwrap()
        .remove(0);
    assert_eq!(second.message_id, first.message_id);
    assert_ne!(second.receipt_handle, first.receipt_handle);
    assert_eq!(attribute(&second.attributes, "ApproximateReceiveCount"), Some("2"));
    assert_eq!(
        attribute(&second.attributes, "ApproximateFirstReceiveTimestamp"),
        attribute(&first.attributes, "ApproximateFirstReceiveTimestamp")
    );
    // A visibility change needs the latest handle; deleting works with any issued one.
    assert_code(c.run(c.client().change_message_visibility("q", &first.receipt_handle, 5)), ErrorCode::InvalidParameterValue);
    c.run(c.client().delete_message("q", &first.receipt_handle)).unwrap();
    let counts = c.run(c.client().get_queue_attributes("q", &["All"])).unwrap();
    assert_eq!(attribute(&counts, "ApproximateNumberOfMessagesNotVisible"), Some("0"));
    assert_eq!(attribute(&counts, "ApproximateNumberOfMessages"), Some("0"));
}

#[test]
fn change_visibility_follows_sqs_rules() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![kv("VisibilityTimeout", "600")], vec![])).unwrap();
    c.run(c.client().send_message("q", "m")).unwrap();
    let m = c.run(c.client().receive_message(receive("q"))).unwrap().remove(0);
    c.run(c.client().change_message_visibility("q", &m.receipt_handle, 43_200)).unwrap();
    assert_code(c.run(c.client().change_message_visibility("q", &m.receipt_handle, 43_201)), ErrorCode::InvalidParameterValue);
    assert_code(c.run(c.client().change_message_visibility("q", &m.receipt_handle, -1)), ErrorCode::InvalidParameterValue);
    assert_code(c.run(c.client().change_message_visibility("q", "forged", 5)), ErrorCode::ReceiptHandleIsInvalid);
    // Zero makes it visible at once.
    c.run(c.client().change_message_visibility("q", &m.receipt_handle, 0)).unwrap();
    let again = c.run(c.client().receive_message(receive("q"))).unwrap().remove(0);
    assert_eq!(again.message_id, m.message_id);
    // The batch form answers entry by entry.
    let entries = vec![
        VisibilityEntry { id: "ok".into(), receipt_handle: again.receipt_handle.clone(), visibility_timeout: 30 },
        VisibilityEntry { id: "stale".into(), receipt_handle: m.receipt_handle.clone(), visibility_timeout: 30 },
        VisibilityEntry { id: "forged".into(), receipt_handle: "nope".into(), visibility_timeout: 30 },
    ];
    let (ok, failed) = c.run(c.client().change_message_visibility_batch("q", entries)).unwrap();
    assert_eq!(ok, ["ok"]);
    let codes: Vec<_> = failed.iter().map(|f| (f.id.as_str(), f.code)).collect();
    assert_eq!(codes, [("stale", ErrorCode::InvalidParameterValue), ("forged", ErrorCode::ReceiptHandleIsInvalid)]);
}

#[test]
fn delete_accepts_issued_handles_and_rejects_forged_ones() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    c.run(c.client().create_queue("other", vec![], vec![])).unwrap();
    for i in 0..3 {
        c.run(c.client().send_message("q", format!("m{i}"))).unwrap();
    }
    let got = c.run(c.client().receive_message(receive("q"))).unwrap();
    assert_eq!(got.len(), 3);
    assert_code(c.run(c.client().delete_message("q", "forged")), ErrorCode::ReceiptHandleIsInvalid);
    // A handle of one queue is not valid for another.
    assert_code(c.run(c.client().delete_message("other", &got[0].receipt_handle)), ErrorCode::ReceiptHandleIsInvalid);
    let entries = vec![
        DeleteEntry { id: "a".into(), receipt_handle: got[0].receipt_handle.clone() },
        DeleteEntry { id: "b".into(), receipt_handle: got[1].receipt_handle.clone() },
        DeleteEntry { id: "c".into(), receipt_handle: "forged".into() },
    ];
    let (ok, failed) = c.run(c.client().delete_message_batch("q", entries)).unwrap();
    assert_eq!(ok, ["a", "b"]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].code, ErrorCode::ReceiptHandleIsInvalid);
    // Deleting again succeeds (idempotent on standard queues).
    c.run(c.client().delete_message("q", &got[0].receipt_handle)).unwrap();
    let counts = c.run(c.client().get_queue_attributes("q", &["ApproximateNumberOfMessagesNotVisible"])).unwrap();
    assert_eq!(attribute(&counts, "ApproximateNumberOfMessagesNotVisible"), Some("1"));
    let dup = vec![DeleteEntry { id: "a".into(), receipt_handle: "x".into() }, DeleteEntry { id: "a".into(), receipt_handle: "y".into() }];
    assert_code(c.run(c.client().delete_message_batch("q", dup)), ErrorCode::BatchEntryIdsNotDistinct);
}

#[test]
fn receive_parameters_are_range_checked() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    for request in [
        ReceiveMessage { max_messages: Some(11), ..receive("q") },
        ReceiveMessage { max_messages: Some(0), ..receive("q") },
        ReceiveMessage { wait_time_seconds: Some(21), ..receive("q") },
        ReceiveMessage { visibility_timeout: Some(43_201), ..receive("q") },
    ] {
        assert_code(c.run(c.client().receive_message(request)), ErrorCode::InvalidParameterValue);
    }
    let unknown = ReceiveMessage { system_attribute_names: vec!["Colour".into()], ..receive("q") };
    assert_code(c.run(c.client().receive_message(unknown)), ErrorCode::InvalidAttributeName);
}

#[test]
fn long_poll_returns_empty_when_nothing_arrives() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![kv("ReceiveMessageWaitTimeSeconds", "1")], vec![])).unwrap();
    // Queue default wait applies when the request gives none.
    let request = ReceiveMessage { wait_time_seconds: None, ..receive("q") };
    assert!(c.run(c.client().receive_message(request)).unwrap().is_empty());
}

#[test]
fn dead_letter_queue_takes_messages_past_max_receive_count() {
    let daemon = Daemon::start();
    let c = daemon.client();
    let dlq_url = c.run(c.client().create_queue("dlq", vec![], vec![])).unwrap();
    let dlq_arn = "arn:aws:sqs:us-east-1:000000000000:dlq";
    let policy = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":2}}"#);
    let source_url = c.run(c.client().create_queue("work", vec![kv("RedrivePolicy", &policy)], vec![])).unwrap();
    c.run(c.client().send_message("work", "poison")).unwrap();
    let immediate = ReceiveMessage { visibility_timeout: Some(0), ..receive("work") };
    for _ in 0..2 {
        assert_eq!(c.run(c.client().receive_message(immediate.clone())).unwrap().len(), 1);
    }
    // The third receive would pass maxReceiveCount: the message moves to the DLQ instead.
    assert!(c.run(c.client().receive_message(immediate)).unwrap().is_empty());
    let dead = c.run(c.client().receive_message(ReceiveMessage { system_attribute_names: vec!["All".into()], ..receive("dlq") })).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    assert_eq!(attribute(&dead[0].attributes, "DeadLetterQueueSourceArn"), Some("arn:aws:sqs:us-east-1:000000000000:work"));
    let (sources, _) = c.run(c.client().list_dead_letter_source_queues(&dlq_url, None, None)).unwrap();
    assert_eq!(sources, vec![source_url]);
    // A DLQ must exist, and its RedriveAllowPolicy decides who may use it.
    let missing = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:missing","maxReceiveCount":2}"#;
    assert_code(c.run(c.client().create_queue("w2", vec![kv("RedrivePolicy", missing)], vec![])), ErrorCode::InvalidParameterValue);
    c.run(c.client().set_queue_attributes("dlq", vec![kv("RedriveAllowPolicy", r#"{"redrivePermission":"denyAll"}"#)])).unwrap();
    assert_code(c.run(c.client().create_queue("w3", vec![kv("RedrivePolicy", &policy)], vec![])), ErrorCode::InvalidParameterValue);
}

#[test]
fn a_message_sent_on_one_shard_is_received_on_the_other() {
    let daemon = Daemon::start();
    let zero = daemon.client_on_shard(0);
    let one = daemon.client_on_shard(1);
    zero.run(zero.client().create_queue("q", vec![], vec![])).unwrap();
    // Metadata is published to every shard before CreateQueue answers.
    one.run(one.client().get_queue_url("q")).unwrap();
    zero.run(zero.client().send_message("q", "from shard 0")).unwrap();
    let got = one.run(one.client().receive_message(receive("q"))).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "from shard 0");
    // Deletes and visibility changes route to the owning shard whichever connection sends them.
    one.run(one.client().change_message_visibility("q", &got[0].receipt_handle, 100)).unwrap();
    one.run(one.client().delete_message("q", &got[0].receipt_handle)).unwrap();
    let counts = zero.run(zero.client().get_queue_attributes("q", &["All"])).unwrap();
    assert_eq!(attribute(&counts, "ApproximateNumberOfMessagesNotVisible"), Some("0"));
    // A receive for 10 collects from both shards.
    for i in 0..3 {
        zero.run(zero.client().send_message("q", format!("zero {i}"))).unwrap();
        one.run(one.client().send_message("q", format!("one {i}"))).unwrap();
    }
    assert_eq!(one.run(one.client().receive_message(receive("q"))).unwrap().len(), 6);
}

#[test]
fn a_long_poll_on_one_shard_wakes_for_a_send_on_the_other() {
    let daemon = Daemon::start();
    let zero = daemon.client_on_shard(0);
    let one = daemon.client_on_shard(1);
    zero.run(zero.client().create_queue("q", vec![], vec![])).unwrap();
    let waiter = one.client().clone();
    let poll = std::thread::spawn(move || async_io::block_on(waiter.receive_message(receive_waiting("q", 20))));
    // Give the poll time to start waiting; it must be woken by the send, not find the message on arrival.
    std::thread::sleep(std::time::Duration::from_millis(200));
    zero.run(zero.client().send_message("q", "wake up")).unwrap();
    let got = poll.join().unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "wake up");
}

#[test]
fn pipelined_requests_on_one_connection_all_complete() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    let client = c.client().clone();
    let sends = (0..500).map(|i| {
        let client = client.clone();
        async move { client.send_message("q", format!("m{i}")).await }
    });
    let results = c.run(futures::future::join_all(sends));
    assert!(results.iter().all(Result::is_ok));
    let mut bodies = std::collections::HashSet::new();
    loop {
        let got = c.run(c.client().receive_message(receive("q"))).unwrap();
        if got.is_empty() {
            break;
        }
        let entries =
            got.iter().enumerate().map(|(i, m)| DeleteEntry { id: i.to_string(), receipt_handle: m.receipt_handle.clone() }).collect();
        let (_, failed) = c.run(c.client().delete_message_batch("q", entries)).unwrap();
        assert!(failed.is_empty());
        bodies.extend(got.into_iter().map(|m| m.body));
    }
    assert_eq!(bodies.len(), 500);
}

/// Fair queues (SQS, 2025): a standard queue whose messages carry `MessageGroupId` hands a
/// quiet tenant's messages out before a noisy tenant's backlog (one holding 30 or more messages
/// in flight, over a tenth of the queue's) — also after a restart and after `kill -9`, which
/// bring the noisy tenant's messages back in flight from the log.
#[test]
fn a_fair_queue_hands_quiet_tenants_messages_out_before_a_noisy_tenants_backlog() {
    let mut daemon = Daemon::start();
    let grouped = |text: String, group: Option<&str>| SendEntry {
        body: body(&text),
        message_group_id: group.map(String::from),
        ..SendEntry::default()
    };
    let held = |c: &Conn, max: i32| -> Vec<String> {
        let request = ReceiveMessage { max_messages: Some(max), visibility_timeout: Some(600), ..receive("tenants") };
        c.run(c.client().receive_message(request)).unwrap().into_iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect()
    };
    // Sends land in the partition of the connection's core; each test connection is on core 0.
    let c = daemon.client_on_shard(0);
    c.run(c.client().create_queue("tenants", vec![], vec![])).unwrap();
    for i in 0..60 {
        c.run(c.client().send_entry("tenants", grouped(format!("noisy {i}"), Some("noisy")))).unwrap();
    }
    for i in 0..3 {
        c.run(c.client().send_entry("tenants", grouped(format!("quiet {i}"), Some("quiet")))).unwrap();
    }
    for i in 0..2 {
        c.run(c.client().send_entry("tenants", grouped(format!("plain {i}"), None))).unwrap();
    }
    // Oldest first until the noisy tenant holds 30 in flight.
    let first: Vec<String> = (0..3).flat_map(|_| held(&c, 10)).collect();
    assert_eq!(first, (0..30).map(|i| format!("noisy {i}")).collect::<Vec<_>>());
    assert_eq!(
        held(&c, 10),
        ["quiet 0", "quiet 1", "quiet 2", "plain 0", "plain 1", "noisy 30", "noisy 31", "noisy 32", "noisy 33", "noisy 34"]
    );

    // After a clean restart, and after kill -9 (with sends before it), the tenant is noisy
    // still: 35 of its messages are in flight again from the log.
    c.run(c.client().send_entry("tenants", grouped("quiet 3".into(), Some("quiet")))).unwrap();
    drop(c);
    daemon.terminate();
    daemon.restart();
    let c = daemon.client_on_shard(0);
    assert_eq!(held(&c, 2), ["quiet 3", "noisy 35"]);
    c.run(c.client().send_entry("tenants", grouped("quiet 4".into(), Some("quiet")))).unwrap();
    c.run(c.client().send_entry("tenants", grouped("plain 2".into(), None))).unwrap();
    drop(c);
    daemon.kill();
    daemon.restart();
    let c = daemon.client_on_shard(0);
    assert_eq!(held(&c, 3), ["quiet 4", "plain 2", "noisy 36"]);

    // Nothing lost: 68 sent, 45 in flight, the rest visible.
    let counts = c.run(c.client().get_queue_attributes("tenants", &["All"])).unwrap();
    assert_eq!(attribute(&counts, "ApproximateNumberOfMessagesNotVisible"), Some("45"));
    assert_eq!(attribute(&counts, "ApproximateNumberOfMessages"), Some("23"));
}
