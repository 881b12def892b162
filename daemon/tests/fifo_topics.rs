//! SNS FIFO topics through a real daemon (`--cores 2`) and the real client: creation and
//! subscription rules, publish rules, ordered fan-out to FIFO and standard queues (raw, in an
//! envelope with its sequence number, filtered), deduplication (explicit and content-based,
//! per topic and per group) durable across SIGTERM and SIGKILL restarts, and dead-letter queues.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;
use sluice_client::*;
use sluice_testkit::*;

const ACCOUNT: &str = "000000000000";

fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}")
}

fn fifo_topic(c: &Conn, name: &str, extra: &[(&str, &str)]) -> String {
    let mut attributes = vec![kv("FifoTopic", "true")];
    attributes.extend(extra.iter().map(|(k, v)| kv(k, v)));
    c.run(c.client().create_topic(name, attributes, vec![])).unwrap()
}

fn queue(c: &Conn, name: &str) {
    let attributes = if name.ends_with(".fifo") { vec![kv("FifoQueue", "true")] } else { vec![] };
    c.run(c.client().create_queue(name, attributes, vec![])).unwrap();
}

fn subscribe(c: &Conn, topic: &str, queue: &str, attributes: &[(&str, &str)]) -> Result<String, ClientError> {
    c.run(c.client().subscribe(topic, "sqs", &queue_arn(queue), attributes.iter().map(|(k, v)| kv(k, v)).collect()))
}

fn entry(message: &str, group: &str, dedup: Option<&str>) -> PublishEntry {
    PublishEntry {
        message: Bytes::copy_from_slice(message.as_bytes()),
        message_group_id: Some(group.into()),
        deduplication_id: dedup.map(Into::into),
        ..PublishEntry::default()
    }
}

fn publish(c: &Conn, topic: &str, message: &str, group: &str, dedup: &str) -> PublishResult {
    c.run(c.client().publish_entry(topic, entry(message, group, Some(dedup)))).unwrap()
}

fn sequence(result: &PublishResult) -> u128 {
    result.sequence_number.as_deref().expect("a FIFO topic's sequence number").parse().unwrap()
}

/// Receives and deletes everything the queue holds, as received (a FIFO queue gives each
/// group's messages in order).
fn drain(c: &Conn, queue: &str) -> Vec<ReceivedMessage> {
    let mut all = Vec::new();
    loop {
        let receive = ReceiveMessage {
            queue: queue.into(),
            max_messages: Some(10),
            wait_time_seconds: Some(0),
            message_attribute_names: vec!["All".into()],
            system_attribute_names: vec!["All".into()],
            ..ReceiveMessage::default()
        };
        let got = c.run(c.client().receive_message(receive)).unwrap();
        if got.is_empty() {
            return all;
        }
        let entries =
            got.iter().enumerate().map(|(i, m)| DeleteEntry { id: i.to_string(), receipt_handle: m.receipt_handle.clone() }).collect();
        let (_, failed) = c.run(c.client().delete_message_batch(queue, entries)).unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        all.extend(got);
    }
}

fn body(message: &ReceivedMessage) -> String {
    String::from_utf8(message.body.to_vec()).unwrap()
}

/// The published message of a delivery: the body when raw, else the envelope's `Message`.
fn published(message: &ReceivedMessage) -> String {
    match serde_json::from_slice::<Value>(&message.body) {
        Ok(envelope) if envelope.get("Type").is_some() => envelope["Message"].as_str().unwrap().to_owned(),
        _ => body(message),
    }
}

/// Each group's published messages, in the order received.
fn by_group(messages: &[ReceivedMessage]) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for message in messages {
        let group = attribute(&message.attributes, "MessageGroupId").expect("a group").to_owned();
        groups.entry(group).or_default().push(published(message));
    }
    groups
}

#[test]
fn fifo_topics_are_created_described_and_subscribed_as_aws_does() {
    let daemon = Daemon::start();
    let c = daemon.client();
    // The attribute and the name go together.
    assert_code(c.run(c.client().create_topic("t.fifo", vec![], vec![])), ErrorCode::InvalidParameter);
    assert_code(c.run(c.client().create_topic("t", vec![kv("FifoTopic", "true")], vec![])), ErrorCode::InvalidParameter);
    assert_code(c.run(c.client().create_topic("t", vec![kv("ContentBasedDeduplication", "true")], vec![])), ErrorCode::InvalidParameter);
    assert_code(
        c.run(c.client().create_topic("t.fifo", vec![kv("FifoTopic", "true"), kv("FifoThroughputScope", "Queue")], vec![])),
        ErrorCode::InvalidParameter,
    );
    let arn = fifo_topic(&c, "t.fifo", &[("ContentBasedDeduplication", "true")]);
    assert_eq!(arn, format!("arn:aws:sns:us-east-1:{ACCOUNT}:t.fifo"));
    // Idempotent with the same attributes.
    assert_eq!(fifo_topic(&c, "t.fifo", &[("ContentBasedDeduplication", "true")]), arn);
    let attributes = c.run(c.client().get_topic_attributes(&arn)).unwrap();
    assert_eq!(attribute(&attributes, "FifoTopic"), Some("true"));
    assert_eq!(attribute(&attributes, "ContentBasedDeduplication"), Some("true"));
    assert_eq!(attribute(&attributes, "FifoThroughputScope"), Some("Topic"));
    c.run(c.client().set_topic_attribute(&arn, "FifoThroughputScope", Some("MessageGroup"))).unwrap();
    let attributes = c.run(c.client().get_topic_attributes(&arn)).unwrap();
    assert_eq!(attribute(&attributes, "FifoThroughputScope"), Some("MessageGroup"));
    assert_code(c.run(c.client().set_topic_attribute(&arn, "FifoTopic", Some("false"))), ErrorCode::InvalidParameter);
    let plain = c.run(c.client().create_topic("plain", vec![], vec![])).unwrap();
    assert_eq!(attribute(&c.run(c.client().get_topic_attributes(&plain)).unwrap(), "FifoTopic"), None);
    assert_code(c.run(c.client().set_topic_attribute(&plain, "ContentBasedDeduplication", Some("true"))), ErrorCode::InvalidParameter);

    // Subscriptions: SQS queues only, FIFO or standard; a standard topic takes no FIFO queue.
    queue(&c, "q.fifo");
    queue(&c, "std");
    subscribe(&c, &arn, "q.fifo", &[]).unwrap();
    subscribe(&c, &arn, "std", &[]).unwrap();
    assert_code(subscribe(&c, &plain, "q.fifo", &[]), ErrorCode::InvalidParameter);
    assert_code(c.run(c.client().subscribe(&arn, "https", "https://example.com/hook", vec![])), ErrorCode::InvalidParameter);
    // A FIFO topic's dead-letter queue is FIFO.
    queue(&c, "dlq");
    let redrive = format!(r#"{{"deadLetterTargetArn":"{}"}}"#, queue_arn("dlq"));
    assert_code(subscribe(&c, &arn, "dlq", &[("RedrivePolicy", &redrive)]), ErrorCode::InvalidParameter);

    // Publish rules: a group always; a deduplication id unless content-based.
    let strict = fifo_topic(&c, "strict.fifo", &[]);
    assert_code(c.run(c.client().publish_entry(&strict, entry("x", "g", None))), ErrorCode::InvalidParameter);
    assert_code(
        c.run(c.client().publish_entry(&strict, PublishEntry { message_group_id: None, ..entry("x", "g", Some("d")) })),
        ErrorCode::InvalidParameter,
    );
    assert_code(c.run(c.client().publish_entry(&strict, entry("x", "g", Some(&"d".repeat(129))))), ErrorCode::InvalidParameter);
    assert_code(c.run(c.client().publish_entry(&plain, entry("x", "g", Some("d")))), ErrorCode::InvalidParameter);
}

#[test]
fn publishes_reach_every_queue_in_group_order_numbered_and_deduplicated() {
    let daemon = Daemon::start();
    let c0 = daemon.client_on_shard(0);
    let c1 = daemon.client_on_shard(1);
    let topic = fifo_topic(&c0, "orders.fifo", &[]);
    for name in ["raw.fifo", "envelope.fifo", "red.fifo", "standard"] {
        queue(&c0, name);
    }
    subscribe(&c0, &topic, "raw.fifo", &[("RawMessageDelivery", "true")]).unwrap();
    let envelope_subscription = subscribe(&c0, &topic, "envelope.fifo", &[]).unwrap();
    subscribe(&c0, &topic, "red.fifo", &[("RawMessageDelivery", "true"), ("FilterPolicy", r#"{"color":["red"]}"#)]).unwrap();
    subscribe(&c0, &topic, "standard", &[("RawMessageDelivery", "true")]).unwrap();

    // Three groups, published alternately through both shards, one at a time and in batches.
    let mut results = Vec::new();
    for i in 0..30 {
        let c = if i % 2 == 0 { &c0 } else { &c1 };
        let mut e = entry(&format!("m{i}"), &format!("g{}", i % 3), Some(&format!("d{i}")));
        if i % 5 == 0 {
            e.attributes.push(MessageAttribute::string("color", "String", "red"));
        }
        results.push(c.run(c.client().publish_entry(&topic, e)).unwrap());
    }
    let batch: Vec<PublishEntry> = (30..40)
        .map(|i| PublishEntry { id: format!("e{i}"), ..entry(&format!("m{i}"), &format!("g{}", i % 3), Some(&format!("d{i}"))) })
        .collect();
    let (ok, failed) = c1.run(c1.client().publish_batch(&topic, batch)).unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(ok.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), (30..40).map(|i| format!("e{i}")).collect::<Vec<_>>());
    results.extend(ok);
    // Sequence numbers grow with every publish.
    assert!(results.windows(2).all(|w| sequence(&w[0]) < sequence(&w[1])), "{results:?}");

    // Repeats within the window: the first publish's id and number, nothing delivered again.
    for i in [0, 7, 35] {
        let again = publish(&c1, &topic, "repeat", &format!("g{}", i % 3), &format!("d{i}"));
        assert_eq!(again.message_id, results[i].message_id);
        assert_eq!(again.sequence_number, results[i].sequence_number);
    }

    let expected = |filter: &dyn Fn(usize) -> bool| {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in (0..40).filter(|i| filter(*i)) {
            groups.entry(format!("g{}", i % 3)).or_default().push(format!("m{i}"));
        }
        groups
    };
    let raw = drain(&c0, "raw.fifo");
    assert_eq!(by_group(&raw), expected(&|_| true));
    assert_eq!(
        attribute(&raw[0].attributes, "MessageDeduplicationId"),
        Some(format!("d{}", published(&raw[0]).trim_start_matches('m')).as_str())
    );
    let red = drain(&c1, "red.fifo");
    assert_eq!(by_group(&red), expected(&|i| i % 5 == 0 && i < 30));
    assert_eq!(red[0].message_attributes[0].name, "color", "raw delivery keeps the attributes");
    let standard = drain(&c0, "standard");
    let mut standard_bodies: Vec<String> = standard.iter().map(body).collect();
    standard_bodies.sort();
    let mut all: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
    all.sort();
    assert_eq!(standard_bodies, all, "a standard queue gets every message once");
    assert!(standard.iter().all(|m| attribute(&m.attributes, "MessageGroupId").is_some()));

    // The envelope carries the topic's sequence number and message id.
    let envelopes = drain(&c1, "envelope.fifo");
    assert_eq!(by_group(&envelopes), expected(&|_| true));
    for message in &envelopes {
        let envelope: Value = serde_json::from_slice(&message.body).unwrap();
        let i: usize = envelope["Message"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(envelope["Type"], "Notification");
        assert_eq!(envelope["TopicArn"], topic);
        assert_eq!(envelope["MessageId"], results[i].message_id);
        assert_eq!(envelope["SequenceNumber"].as_str(), results[i].sequence_number.as_deref());
        assert!(envelope["UnsubscribeURL"].as_str().unwrap().ends_with(&envelope_subscription));
    }
}

#[test]
fn content_based_and_per_group_deduplication() {
    let daemon = Daemon::start();
    let c = daemon.client();
    let topic = fifo_topic(&c, "cbd.fifo", &[("ContentBasedDeduplication", "true"), ("FifoThroughputScope", "MessageGroup")]);
    queue(&c, "out.fifo");
    // The queue deduplicates per group too, as the topic does.
    c.run(c.client().set_queue_attributes("out.fifo", vec![kv("DeduplicationScope", "messageGroup")])).unwrap();
    subscribe(&c, &topic, "out.fifo", &[("RawMessageDelivery", "true")]).unwrap();
    let first = c.run(c.client().publish_entry(&topic, entry("same", "a", None))).unwrap();
    let again = c.run(c.client().publish_entry(&topic, entry("same", "a", None))).unwrap();
    assert_eq!(again.message_id, first.message_id);
    // Another group is another scope.
    let other = c.run(c.client().publish_entry(&topic, entry("same", "b", None))).unwrap();
    assert_ne!(other.message_id, first.message_id);
    // An explicit id wins over the content.
    let explicit = c.run(c.client().publish_entry(&topic, entry("same", "a", Some("x")))).unwrap();
    assert_ne!(explicit.message_id, first.message_id);
    assert_eq!(
        by_group(&drain(&c, "out.fifo")),
        BTreeMap::from([("a".into(), vec!["same".into(), "same".into()]), ("b".into(), vec!["same".into()])])
    );
}

#[test]
fn undeliverable_messages_go_to_the_fifo_dead_letter_queue_in_order() {
    let daemon = Daemon::start();
    let c = daemon.client();
    let topic = fifo_topic(&c, "t.fifo", &[]);
    queue(&c, "dead.fifo");
    c.run(c.client().create_queue("small.fifo", vec![kv("FifoQueue", "true"), kv("MaximumMessageSize", "1024")], vec![])).unwrap();
    let redrive = format!(r#"{{"deadLetterTargetArn":"{}"}}"#, queue_arn("dead.fifo"));
    subscribe(&c, &topic, "small.fifo", &[("RawMessageDelivery", "true"), ("RedrivePolicy", &redrive)]).unwrap();
    let big = "x".repeat(2000);
    for i in 0..4 {
        let message = if i % 2 == 0 { format!("{i}{big}") } else { format!("small{i}") };
        publish(&c, &topic, &message, "g", &format!("d{i}"));
    }
    let delivered: Vec<String> = drain(&c, "small.fifo").iter().map(body).collect();
    assert_eq!(delivered, ["small1", "small3"]);
    let dead = drain(&c, "dead.fifo");
    let dead_messages: Vec<String> = dead.iter().map(|m| published(m)[..1].to_owned()).collect();
    assert_eq!(dead_messages, ["0", "2"], "in order");
    assert!(dead.iter().all(|m| m.message_attributes.iter().any(|a| a.name == "ErrorCode")));
    assert_eq!(attribute(&dead[0].attributes, "MessageGroupId"), Some("g"));
}

#[test]
fn the_window_and_numbering_survive_restarts_and_kill_9_and_nothing_is_delivered_twice() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    let topic = fifo_topic(&c, "durable.fifo", &[]);
    queue(&c, "fifo.fifo");
    queue(&c, "plain");
    subscribe(&c, &topic, "fifo.fifo", &[("RawMessageDelivery", "true")]).unwrap();
    subscribe(&c, &topic, "plain", &[("RawMessageDelivery", "true")]).unwrap();
    let mut acknowledged: BTreeMap<String, PublishResult> = BTreeMap::new();
    for i in 0..10 {
        let dedup = format!("d{i}");
        acknowledged.insert(dedup.clone(), publish(&c, &topic, &format!("m{i}"), &format!("g{}", i % 2), &dedup));
    }
    drop(c);
    let mut last = acknowledged.values().map(sequence).max().unwrap();
    for round in 0..4 {
        if round % 2 == 0 {
            assert!(daemon.terminate().success());
        } else {
            daemon.kill();
        }
        daemon.restart();
        let c = daemon.client();
        // Every publish is still a repeat, from either shard.
        for (dedup, first) in &acknowledged {
            let again = publish(&c, &topic, "repeat", "g0", dedup);
            assert_eq!(again.message_id, first.message_id, "round {round}: {dedup} forgotten");
            assert_eq!(again.sequence_number, first.sequence_number);
        }
        // Between restarts, with writes and without.
        if round % 2 == 0 {
            let dedup = format!("round-{round}");
            let result = publish(&c, &topic, &dedup, "g2", &dedup);
            assert!(sequence(&result) > last, "round {round}: sequence numbers go back");
            last = sequence(&result);
            acknowledged.insert(dedup, result);
        }
    }
    let c = daemon.client();
    let groups = by_group(&drain(&c, "fifo.fifo"));
    assert_eq!(groups["g0"], ["m0", "m2", "m4", "m6", "m8"]);
    assert_eq!(groups["g1"], ["m1", "m3", "m5", "m7", "m9"]);
    assert_eq!(groups["g2"], ["round-0", "round-2"]);
    let mut plain: Vec<String> = drain(&c, "plain").iter().map(body).collect();
    plain.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("m{i}")).chain(["round-0".into(), "round-2".into()]).collect();
    expected.sort();
    assert_eq!(plain, expected, "nothing acknowledged lost or delivered twice");
}

#[test]
fn pipelined_publishes_from_both_shards_reach_each_queue_in_the_topics_order() {
    let daemon = Daemon::start();
    let c0 = daemon.client_on_shard(0);
    let c1 = daemon.client_on_shard(1);
    let topic = fifo_topic(&c0, "busy.fifo", &[]);
    // Queues owned by both shards (consecutive ids).
    for name in ["a.fifo", "b.fifo", "c.fifo"] {
        queue(&c0, name);
        subscribe(&c0, &topic, name, &[("RawMessageDelivery", "true")]).unwrap();
    }
    // Many publishes in flight at once on each connection, in four groups.
    let publish_all = |c: &Conn, from: usize| {
        let client = c.client();
        let publishes = (0..100).map(|i| {
            let n = from + i;
            client.publish_entry(&topic, entry(&format!("m{n}"), &format!("g{}", n % 4), Some(&format!("d{n}"))))
        });
        c.run(futures::future::join_all(publishes)).into_iter().map(Result::unwrap).collect::<Vec<_>>()
    };
    let mut results: Vec<(u128, String, String)> = Vec::new();
    for (c, from) in [(&c0, 0), (&c1, 100), (&c1, 200), (&c0, 300)] {
        for (i, result) in publish_all(c, from).into_iter().enumerate() {
            let n = from + i;
            results.push((sequence(&result), format!("g{}", n % 4), format!("m{n}")));
        }
    }
    // The order the topic numbered them in, per group, is the order every queue holds.
    results.sort();
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, group, message) in results {
        expected.entry(group).or_default().push(message);
    }
    for name in ["a.fifo", "b.fifo", "c.fifo"] {
        assert_eq!(by_group(&drain(&c1, name)), expected, "{name}");
    }
}

#[test]
fn a_fifo_topic_delivers_to_a_high_throughput_queue_each_group_in_order_on_its_shard() {
    let daemon = Daemon::start();
    let key = sluice_daemon::seal::SealKey::load_or_create(daemon.data_dir()).unwrap();
    let c = daemon.client();
    let topic = fifo_topic(&c, "spread-events.fifo", &[]);
    let attributes =
        vec![kv("FifoQueue", "true"), kv("DeduplicationScope", "messageGroup"), kv("FifoThroughputLimit", "perMessageGroupId")];
    c.run(c.client().create_queue("spread-copies.fifo", attributes, vec![])).unwrap();
    subscribe(&c, &topic, "spread-copies.fifo", &[("RawMessageDelivery", "true")]).unwrap();
    for round in 0..3 {
        let entries = (0..10)
            .map(|g| PublishEntry { id: g.to_string(), ..entry(&format!("g{g}-{round}"), &format!("g{g}"), Some(&format!("{g}-{round}"))) })
            .collect();
        let (published, failed) = c.run(c.client().publish_batch(&topic, entries)).unwrap();
        assert!(failed.is_empty() && published.len() == 10, "{failed:?}");
    }
    let got = drain(&c, "spread-copies.fifo");
    let shards: std::collections::BTreeSet<u16> = got
        .iter()
        .map(|m| sluice_daemon::queue::receipt::Receipt::decode(&m.receipt_handle, &key).expect("a receipt this daemon gave").shard)
        .collect();
    assert_eq!(shards.len(), 2, "the queue's groups live on both shards");
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for message in &got {
        by_group.entry(attribute(&message.attributes, "MessageGroupId").unwrap().to_owned()).or_default().push(body(message));
    }
    let expected: BTreeMap<String, Vec<String>> =
        (0..10).map(|g| (format!("g{g}"), (0..3).map(|r| format!("g{g}-{r}")).collect())).collect();
    assert_eq!(by_group, expected, "every copy once, each group in publish order");
}
