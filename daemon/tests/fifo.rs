//! SQS FIFO queues through a real daemon (`--cores 2`) and the real client: creation rules,
//! order and exclusivity within message groups, the deduplication window (durable across
//! SIGTERM and SIGKILL restarts), sequence numbers, receive request attempts, expired
//! receipts, and dead-letter queues.

use std::collections::BTreeMap;

use bytes::Bytes;
use sluice_client::*;
use sluice_testkit::*;

fn fifo_queue(c: &Conn, name: &str, extra: &[(&str, &str)]) {
    let mut attributes = vec![kv("FifoQueue", "true")];
    attributes.extend(extra.iter().map(|(k, v)| kv(k, v)));
    c.run(c.client().create_queue(name, attributes, vec![])).unwrap();
}

fn entry(body: &str, group: &str, dedup: Option<&str>) -> SendEntry {
    SendEntry {
        body: Bytes::copy_from_slice(body.as_bytes()),
        message_group_id: Some(group.into()),
        deduplication_id: dedup.map(Into::into),
        ..SendEntry::default()
    }
}

fn send(c: &Conn, queue: &str, body: &str, group: &str, dedup: &str) -> SendResult {
    c.run(c.client().send_entry(queue, entry(body, group, Some(dedup)))).unwrap()
}

fn receive(c: &Conn, queue: &str, max: i32, visibility: Option<i32>) -> Vec<ReceivedMessage> {
    let request = ReceiveMessage {
        queue: queue.into(),
        max_messages: Some(max),
        wait_time_seconds: Some(0),
        visibility_timeout: visibility,
        system_attribute_names: vec!["All".into()],
        ..ReceiveMessage::default()
    };
    c.run(c.client().receive_message(request)).unwrap()
}

fn bodies(messages: &[ReceivedMessage]) -> Vec<String> {
    messages.iter().map(|m| String::from_utf8(m.body.to_vec()).unwrap()).collect()
}

fn system<'a>(message: &'a ReceivedMessage, name: &str) -> Option<&'a str> {
    attribute(&message.attributes, name)
}

fn delete_all(c: &Conn, queue: &str, messages: &[ReceivedMessage]) {
    for message in messages {
        c.run(c.client().delete_message(queue, &message.receipt_handle)).unwrap();
    }
}

#[test]
fn fifo_queues_are_created_and_described_as_aws_does() {
    let daemon = Daemon::start();
    let c = daemon.client();
    assert_code(c.run(c.client().create_queue("jobs.fifo", vec![], vec![])), ErrorCode::InvalidParameterValue);
    assert_code(c.run(c.client().create_queue("jobs", vec![kv("FifoQueue", "true")], vec![])), ErrorCode::InvalidParameterValue);
    assert_code(
        c.run(c.client().create_queue("std", vec![kv("ContentBasedDeduplication", "true")], vec![])),
        ErrorCode::InvalidAttributeName,
    );
    fifo_queue(&c, "jobs.fifo", &[("ContentBasedDeduplication", "true")]);
    let attributes = c.run(c.client().get_queue_attributes("jobs.fifo", &["All"])).unwrap();
    assert_eq!(attribute(&attributes, "FifoQueue"), Some("true"));
    assert_eq!(attribute(&attributes, "ContentBasedDeduplication"), Some("true"));
    assert_eq!(attribute(&attributes, "DeduplicationScope"), Some("queue"));
    assert_eq!(attribute(&attributes, "FifoThroughputLimit"), Some("perQueue"));
    // High throughput needs both settings; perMessageGroupId alone is refused.
    assert_code(
        c.run(c.client().set_queue_attributes("jobs.fifo", vec![kv("FifoThroughputLimit", "perMessageGroupId")])),
        ErrorCode::InvalidAttributeValue,
    );
    c.run(
        c.client().set_queue_attributes(
            "jobs.fifo",
            vec![kv("FifoThroughputLimit", "perMessageGroupId"), kv("DeduplicationScope", "messageGroup")],
        ),
    )
    .unwrap();
    let attributes = c.run(c.client().get_queue_attributes("jobs.fifo", &["DeduplicationScope", "FifoThroughputLimit"])).unwrap();
    assert_eq!(attributes, vec![kv("DeduplicationScope", "messageGroup"), kv("FifoThroughputLimit", "perMessageGroupId")]);
    assert_code(c.run(c.client().set_queue_attributes("jobs.fifo", vec![kv("FifoQueue", "false")])), ErrorCode::InvalidAttributeValue);
    // A dead-letter queue has the source's type.
    c.run(c.client().create_queue("plain", vec![], vec![])).unwrap();
    let dlq_of = |arn: &str| kv("RedrivePolicy", &format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":3}}"#));
    assert_code(
        c.run(c.client().set_queue_attributes("jobs.fifo", vec![dlq_of("arn:aws:sqs:us-east-1:000000000000:plain")])),
        ErrorCode::InvalidParameterValue,
    );
    assert_code(
        c.run(c.client().set_queue_attributes("plain", vec![dlq_of("arn:aws:sqs:us-east-1:000000000000:jobs.fifo")])),
        ErrorCode::InvalidParameterValue,
    );
    // A standard queue reports no FIFO attributes.
    let plain = c.run(c.client().get_queue_attributes("plain", &["All"])).unwrap();
    assert_eq!(attribute(&plain, "FifoQueue"), None);
}

#[test]
fn sends_need_a_group_and_a_deduplication_id_and_refuse_a_delay() {
    let daemon = Daemon::start();
    let c = daemon.client();
    fifo_queue(&c, "q.fifo", &[]);
    assert_code(c.run(c.client().send_entry("q.fifo", entry("x", "g", None))), ErrorCode::InvalidParameterValue);
    assert_code(
        c.run(c.client().send_entry("q.fifo", SendEntry { message_group_id: None, ..entry("x", "g", Some("d")) })),
        ErrorCode::MissingParameter,
    );
    assert_code(
        c.run(c.client().send_entry("q.fifo", SendEntry { delay_seconds: Some(5), ..entry("x", "g", Some("d")) })),
        ErrorCode::InvalidParameterValue,
    );
    assert_code(c.run(c.client().send_entry("q.fifo", entry("x", "g g", Some("d")))), ErrorCode::InvalidParameterValue);
    assert_code(c.run(c.client().send_entry("q.fifo", entry("x", "g", Some(&"d".repeat(129))))), ErrorCode::InvalidParameterValue);
    // In a batch, each entry stands alone.
    let (ok, failed) = c
        .run(c.client().send_message_batch(
            "q.fifo",
            vec![SendEntry { id: "a".into(), ..entry("1", "g", Some("d1")) }, SendEntry { id: "b".into(), ..entry("2", "g", None) }],
        ))
        .unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].id, "a");
    assert!(ok[0].sequence_number.is_some());
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, "b");
}

#[test]
fn groups_are_received_in_order_and_one_receive_at_a_time() {
    let daemon = Daemon::start();
    // From both shards: sends and receives reach the queue's owner wherever they land.
    let conns = [daemon.client_on_shard(0), daemon.client_on_shard(1)];
    fifo_queue(&conns[0], "orders.fifo", &[]);
    let mut last_sequence = BTreeMap::new();
    for i in 0..6 {
        for group in ["a", "b"] {
            let c = &conns[i % 2];
            let sent = send(c, "orders.fifo", &format!("{group}{i}"), group, &format!("{group}-{i}"));
            let sequence: u128 = sent.sequence_number.unwrap().parse().unwrap();
            assert!(last_sequence.insert(group, sequence).is_none_or(|before| before < sequence), "sequence numbers grow in a group");
        }
    }
    let c = &conns[1];
    // A receive takes the first group's messages in order, as many as it may.
    let first = receive(c, "orders.fifo", 4, Some(30));
    assert_eq!(bodies(&first), ["a0", "a1", "a2", "a3"]);
    assert_eq!(system(&first[0], "MessageGroupId"), Some("a"));
    assert_eq!(system(&first[0], "MessageDeduplicationId"), Some("a-0"));
    assert!(system(&first[0], "SequenceNumber").is_some());
    // Group a is in flight: only b comes now, all of it.
    let second = receive(c, "orders.fifo", 10, Some(30));
    assert_eq!(bodies(&second), ["b0", "b1", "b2", "b3", "b4", "b5"]);
    assert!(receive(c, "orders.fifo", 10, Some(30)).is_empty(), "both groups are in flight");
    // Deleting a's in-flight messages frees a; its next messages follow in order.
    delete_all(c, "orders.fifo", &first[..3]);
    assert!(receive(c, "orders.fifo", 10, Some(30)).is_empty(), "a3 is still in flight");
    delete_all(c, "orders.fifo", &first[3..]);
    assert_eq!(bodies(&receive(c, "orders.fifo", 10, Some(30))), ["a4", "a5"]);
    // A message made visible again comes back first in its group, and blocks it until received.
    c.run(c.client().change_message_visibility("orders.fifo", &second[0].receipt_handle, 0)).unwrap();
    assert!(receive(c, "orders.fifo", 10, Some(30)).is_empty(), "b1..b5 still in flight hold the group");
    for message in &second[1..] {
        c.run(c.client().change_message_visibility("orders.fifo", &message.receipt_handle, 0)).unwrap();
    }
    let again = receive(c, "orders.fifo", 10, Some(30));
    assert_eq!(bodies(&again), ["b0", "b1", "b2", "b3", "b4", "b5"]);
    assert_eq!(system(&again[0], "ApproximateReceiveCount"), Some("2"));
    // An old receipt no longer deletes on a FIFO queue.
    assert_code(c.run(c.client().delete_message("orders.fifo", &second[0].receipt_handle)), ErrorCode::InvalidParameterValue);
    delete_all(c, "orders.fifo", &again);
    let counts = c.run(c.client().get_queue_attributes("orders.fifo", &["ApproximateNumberOfMessagesNotVisible"])).unwrap();
    assert_eq!(attribute(&counts, "ApproximateNumberOfMessagesNotVisible"), Some("2"), "a4 and a5");
}

#[test]
fn duplicates_within_the_window_are_answered_and_not_delivered() {
    let daemon = Daemon::start();
    let c = daemon.client();
    fifo_queue(&c, "dedup.fifo", &[("ContentBasedDeduplication", "true")]);
    let first = send(&c, "dedup.fifo", "one", "g", "d1");
    let again = send(&c, "dedup.fifo", "one again", "other-group", "d1");
    assert_eq!(again.message_id, first.message_id, "a duplicate is answered with the original");
    assert_eq!(again.sequence_number, first.sequence_number);
    // Content-based: the body's SHA-256 is the id.
    let by_content = c.run(c.client().send_entry("dedup.fifo", entry("same body", "g", None))).unwrap();
    let repeat = c.run(c.client().send_entry("dedup.fifo", entry("same body", "g", None))).unwrap();
    assert_eq!(by_content.message_id, repeat.message_id);
    let got = receive(&c, "dedup.fifo", 10, None);
    assert_eq!(bodies(&got), ["one", "same body"]);
    use sha2::Digest;
    let sha256: String = sha2::Sha256::digest(b"same body").iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(system(&got[1], "MessageDeduplicationId"), Some(sha256.as_str()), "content-based: the body's SHA-256");
    // Received and deleted, the id is still remembered.
    delete_all(&c, "dedup.fifo", &got);
    let after_delete = send(&c, "dedup.fifo", "one", "g", "d1");
    assert_eq!(after_delete.message_id, first.message_id);
    assert!(receive(&c, "dedup.fifo", 10, None).is_empty());
    // With the group as the scope, the same id in another group is another message.
    fifo_queue(&c, "scoped.fifo", &[("DeduplicationScope", "messageGroup")]);
    let g1 = send(&c, "scoped.fifo", "x", "g1", "same");
    let g2 = send(&c, "scoped.fifo", "y", "g2", "same");
    assert_ne!(g1.message_id, g2.message_id);
    assert_eq!(send(&c, "scoped.fifo", "z", "g2", "same").message_id, g2.message_id);
    assert_eq!(receive(&c, "scoped.fifo", 10, None).len(), 2);
    // Purged, the ids stay remembered too.
    c.run(c.client().purge_queue("scoped.fifo")).unwrap();
    assert_eq!(send(&c, "scoped.fifo", "x", "g1", "same").message_id, g1.message_id);
}

#[test]
fn a_retried_receive_attempt_answers_the_same_messages_and_receipts() {
    let daemon = Daemon::start();
    let c = daemon.client();
    fifo_queue(&c, "attempts.fifo", &[]);
    for i in 0..3 {
        send(&c, "attempts.fifo", &format!("m{i}"), "g", &format!("d{i}"));
    }
    let attempt = |id: &str| ReceiveMessage {
        queue: "attempts.fifo".into(),
        max_messages: Some(2),
        wait_time_seconds: Some(0),
        receive_request_attempt_id: Some(id.into()),
        ..ReceiveMessage::default()
    };
    let first = c.run(c.client().receive_message(attempt("try-1"))).unwrap();
    assert_eq!(bodies(&first), ["m0", "m1"]);
    let retried = c.run(c.client().receive_message(attempt("try-1"))).unwrap();
    assert_eq!(bodies(&retried), ["m0", "m1"]);
    assert_eq!(retried.iter().map(|m| &m.receipt_handle).collect::<Vec<_>>(), first.iter().map(|m| &m.receipt_handle).collect::<Vec<_>>());
    // Once one of them is deleted the attempt no longer stands: a new receive (the group is
    // still held by m1).
    c.run(c.client().delete_message("attempts.fifo", &first[0].receipt_handle)).unwrap();
    assert!(c.run(c.client().receive_message(attempt("try-1"))).unwrap().is_empty());
    assert_code(c.run(c.client().receive_message(attempt("bad id"))), ErrorCode::InvalidParameterValue);
}

#[test]
fn dead_letter_moves_keep_group_order_across_shards() {
    let daemon = Daemon::start();
    let c = daemon.client();
    // Consecutive queues have different owners on two shards.
    fifo_queue(&c, "dead.fifo", &[]);
    let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dead.fifo","maxReceiveCount":1}"#;
    fifo_queue(&c, "work.fifo", &[("RedrivePolicy", policy)]);
    for i in 0..4 {
        send(&c, "work.fifo", &format!("m{i}"), "g", &format!("d{i}"));
    }
    // Received once and let go: each receive after that moves the group's first message on.
    let got = receive(&c, "work.fifo", 10, Some(0));
    assert_eq!(bodies(&got), ["m0", "m1", "m2", "m3"]);
    for _ in 0..20 {
        if receive(&c, "work.fifo", 10, Some(0)).is_empty()
            && c.run(c.client().get_queue_attributes("dead.fifo", &["ApproximateNumberOfMessages"])).unwrap()
                == vec![kv("ApproximateNumberOfMessages", "4")]
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let dead = receive(&c, "dead.fifo", 10, Some(30));
    assert_eq!(bodies(&dead), ["m0", "m1", "m2", "m3"], "moved in order");
    assert_eq!(system(&dead[0], "DeadLetterQueueSourceArn"), Some("arn:aws:sqs:us-east-1:000000000000:work.fifo"));
    assert_eq!(system(&dead[0], "MessageGroupId"), Some("g"));
    assert!(receive(&c, "work.fifo", 10, Some(0)).is_empty());
}

fn record(acknowledged: &mut BTreeMap<String, (String, u128)>, sent: SendResult, dedup: String) {
    acknowledged.insert(dedup, (sent.message_id, sent.sequence_number.unwrap().parse().unwrap()));
}

#[test]
fn the_window_order_and_sequence_numbers_survive_restarts_and_kill_9() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    fifo_queue(&c, "durable.fifo", &[]);
    let mut acknowledged: BTreeMap<String, (String, u128)> = BTreeMap::new();
    for i in 0..10 {
        let dedup = format!("d{i}");
        let sent = send(&c, "durable.fifo", &format!("m{i}"), &format!("g{}", i % 2), &dedup);
        record(&mut acknowledged, sent, dedup);
    }
    // Received and deleted before the restarts: m0 and m1 (the first of each group).
    let got = receive(&c, "durable.fifo", 1, Some(30));
    delete_all(&c, "durable.fifo", &got);
    let got = receive(&c, "durable.fifo", 1, Some(30));
    delete_all(&c, "durable.fifo", &got);
    drop(c);
    let mut max_sequence = acknowledged.values().map(|(_, s)| *s).max().unwrap();
    for round in 0..4 {
        if round % 2 == 0 {
            assert!(daemon.terminate().success());
        } else {
            daemon.kill();
        }
        daemon.restart();
        let c = daemon.client();
        // Every id is still a duplicate, deleted messages' too.
        for (dedup, (message_id, sequence)) in &acknowledged {
            let again = send(&c, "durable.fifo", "repeat", "g0", dedup);
            assert_eq!(&again.message_id, message_id, "round {round}: {dedup} forgotten");
            assert_eq!(again.sequence_number.unwrap().parse::<u128>().unwrap(), *sequence);
        }
        // New messages number on above everything before.
        let dedup = format!("round-{round}");
        let sent = send(&c, "durable.fifo", &dedup, "g2", &dedup);
        let sequence: u128 = sent.sequence_number.clone().unwrap().parse().unwrap();
        assert!(sequence > max_sequence, "round {round}: sequence numbers go back");
        max_sequence = sequence;
        record(&mut acknowledged, sent, dedup);
    }
    // Each group's messages come in order; nothing acknowledged is lost or doubled.
    let c = daemon.client();
    let mut seen = Vec::new();
    loop {
        let got = receive(&c, "durable.fifo", 10, Some(30));
        if got.is_empty() {
            break;
        }
        seen.extend(bodies(&got));
        delete_all(&c, "durable.fifo", &got);
    }
    let expected_g0: Vec<String> = (2..10).step_by(2).map(|i| format!("m{i}")).collect();
    let expected_g1: Vec<String> = (3..10).step_by(2).map(|i| format!("m{i}")).collect();
    let g0: Vec<String> = seen.iter().filter(|b| expected_g0.contains(b)).cloned().collect();
    let g1: Vec<String> = seen.iter().filter(|b| expected_g1.contains(b)).cloned().collect();
    assert_eq!(g0, expected_g0);
    assert_eq!(g1, expected_g1);
    let rounds: Vec<&String> = seen.iter().filter(|b| b.starts_with("round-")).collect();
    assert_eq!(rounds, ["round-0", "round-1", "round-2", "round-3"]);
    assert_eq!(seen.len(), 8 + 4, "{seen:?}");
}

/// What tells the shard a receipt handle names (opened with the daemon's key, read from its
/// data directory).
fn shard_reader(daemon: &Daemon) -> impl Fn(&ReceivedMessage) -> u16 {
    let key = sluice_daemon::seal::SealKey::load_or_create(daemon.data_dir()).unwrap();
    move |message| sluice_daemon::queue::receipt::Receipt::decode(&message.receipt_handle, &key).expect("a receipt this daemon gave").shard
}

#[test]
fn a_high_throughput_queue_spreads_its_groups_over_the_shards_and_keeps_each_in_order() {
    let mut daemon = Daemon::start();
    let shard_of = shard_reader(&daemon);
    let c = daemon.client();
    let high = [("DeduplicationScope", "messageGroup"), ("FifoThroughputLimit", "perMessageGroupId")];
    fifo_queue(&c, "spread.fifo", &high);
    fifo_queue(&c, "whole.fifo", &[]);
    const GROUPS: usize = 16;
    const PER_GROUP: usize = 5;
    // Batches of 10 mixing groups: each goes to its group's shard, answers in entry order.
    let mut sequences: BTreeMap<String, Vec<u128>> = BTreeMap::new();
    for queue in ["spread.fifo", "whole.fifo"] {
        let all: Vec<(String, String)> =
            (0..PER_GROUP).flat_map(|i| (0..GROUPS).map(move |g| (format!("g{g}"), format!("g{g}-m{i}")))).collect();
        for chunk in all.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(n, (group, body))| SendEntry { id: format!("e{n}"), ..entry(body, group, Some(body)) })
                .collect();
            let (sent, failed) = c.run(c.client().send_message_batch(queue, entries)).unwrap();
            assert!(failed.is_empty(), "{failed:?}");
            assert_eq!(
                sent.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
                (0..chunk.len()).map(|n| format!("e{n}")).collect::<Vec<_>>()
            );
            if queue == "spread.fifo" {
                for ((group, _), result) in chunk.iter().zip(&sent) {
                    sequences.entry(group.clone()).or_default().push(result.sequence_number.as_deref().unwrap().parse().unwrap());
                }
            }
        }
    }
    for (group, numbers) in &sequences {
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{group}'s sequence numbers do not grow: {numbers:?}");
    }
    // Deduplicated per group: an id seen in the group is a duplicate, in another group it is not.
    let again = send(&c, "spread.fifo", "repeat", "g3", "g3-m0");
    let first = c.run(c.client().send_entry("spread.fifo", entry("other", "g3", Some("g3-m1")))).unwrap();
    assert_eq!(again.sequence_number, Some(sequences["g3"][0].to_string()), "a duplicate within its group");
    assert_ne!(first.message_id, again.message_id);
    let elsewhere = send(&c, "spread.fifo", "g4-extra", "g4", "g3-m0");
    assert!(elsewhere.sequence_number.unwrap().parse::<u128>().unwrap() > sequences["g4"][PER_GROUP - 1], "a new message in g4");

    let expected = |group: &str| -> Vec<String> {
        let mut bodies: Vec<String> = (0..PER_GROUP).map(|i| format!("{group}-m{i}")).collect();
        if group == "g4" {
            bodies.push("g4-extra".to_owned());
        }
        bodies
    };
    // Receives without deleting: a group is handed out in one receive only, a prefix of it in
    // order, from whichever shard holds it.
    let mut held = Vec::new();
    let mut handed: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0.. {
        let got = receive(&c, "spread.fifo", 10, Some(60));
        if got.is_empty() {
            break;
        }
        for message in &got {
            let group = system(message, "MessageGroupId").unwrap().to_owned();
            let index = handed.entry(group.clone()).or_insert(round * 1000);
            assert_eq!(*index / 1000, round, "{group} handed out again while in flight");
            let body = String::from_utf8(message.body.to_vec()).unwrap();
            assert_eq!(body, expected(&group)[*index % 1000], "{group} out of order");
            *index += 1;
        }
        held.extend(got);
    }
    assert_eq!(handed.len(), GROUPS, "every group's first messages are handed out");
    let shards: std::collections::BTreeSet<u16> = held.iter().map(&shard_of).collect();
    assert_eq!(shards.len(), 2, "the groups live on both shards: {shards:?}");
    let whole = receive(&c, "whole.fifo", 10, Some(60));
    assert_eq!(
        whole.iter().map(&shard_of).collect::<std::collections::BTreeSet<_>>().len(),
        1,
        "a queue deduplicated as a whole lives on one shard"
    );

    // One DeleteMessageBatch with receipts of both shards.
    for chunk in held.chunks(10) {
        let entries =
            chunk.iter().enumerate().map(|(n, m)| DeleteEntry { id: format!("d{n}"), receipt_handle: m.receipt_handle.clone() }).collect();
        let (deleted, failed) = c.run(c.client().delete_message_batch("spread.fifo", entries)).unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(deleted.len(), chunk.len());
    }
    let mut received: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for message in &held {
        received
            .entry(system(message, "MessageGroupId").unwrap().to_owned())
            .or_default()
            .push(String::from_utf8(message.body.to_vec()).unwrap());
    }
    drop(c);

    // Restarts, clean and kill -9: what was not deleted is there, in order; the window holds.
    for round in 0..2 {
        if round == 0 {
            assert!(daemon.terminate().success());
        } else {
            daemon.kill();
        }
        daemon.restart();
        let c = daemon.client();
        let repeat = send(&c, "spread.fifo", "repeat", "g3", "g3-m0");
        assert_eq!(repeat.message_id, again.message_id, "round {round}: g3's window forgotten");
    }
    let c = daemon.client();
    loop {
        let got = receive(&c, "spread.fifo", 10, Some(60));
        if got.is_empty() {
            break;
        }
        for message in &got {
            received
                .entry(system(message, "MessageGroupId").unwrap().to_owned())
                .or_default()
                .push(String::from_utf8(message.body.to_vec()).unwrap());
        }
        delete_all(&c, "spread.fifo", &got);
    }
    for g in 0..GROUPS {
        let group = format!("g{g}");
        assert_eq!(received[&group], expected(&group), "{group}: every message once, in order");
    }
}

#[test]
fn a_retried_receive_attempt_on_a_spread_queue_answers_the_same_messages_from_every_shard() {
    let daemon = Daemon::start();
    let shard_of = shard_reader(&daemon);
    let c = daemon.client();
    fifo_queue(&c, "attempts-spread.fifo", &[("DeduplicationScope", "messageGroup"), ("FifoThroughputLimit", "perMessageGroupId")]);
    for g in 0..8 {
        send(&c, "attempts-spread.fifo", &format!("m{g}"), &format!("g{g}"), "d");
    }
    let attempt = ReceiveMessage {
        queue: "attempts-spread.fifo".into(),
        max_messages: Some(10),
        wait_time_seconds: Some(0),
        receive_request_attempt_id: Some("try-1".into()),
        ..ReceiveMessage::default()
    };
    let first = c.run(c.client().receive_message(attempt.clone())).unwrap();
    assert_eq!(first.len(), 8);
    assert_eq!(first.iter().map(&shard_of).collect::<std::collections::BTreeSet<_>>().len(), 2, "from both shards");
    let retried = c.run(c.client().receive_message(attempt)).unwrap();
    let handles =
        |messages: &[ReceivedMessage]| messages.iter().map(|m| m.receipt_handle.clone()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(handles(&retried), handles(&first));
}
