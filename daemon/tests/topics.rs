//! SNS topics through a real daemon (`--cores 2`) and the real client: fan-out to
//! queues, the envelope and raw delivery, filter policies, subscription management,
//! dead-letter queues, errors, and durability across kill -9.

use bytes::Bytes;
use serde_json::Value;
use sluice_client::*;
use sluice_testkit::*;

const ACCOUNT: &str = "000000000000";

fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}")
}

fn topic_arn(name: &str) -> String {
    format!("arn:aws:sns:us-east-1:{ACCOUNT}:{name}")
}

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
        c.run(c.client().delete_message_batch(queue, entries)).unwrap();
        all.extend(got);
    }
}

fn bodies(messages: &[ReceivedMessage]) -> Vec<String> {
    let mut bodies: Vec<String> = messages.iter().map(|m| String::from_utf8(m.body.to_vec()).unwrap()).collect();
    bodies.sort();
    bodies
}

/// The `Message` of each envelope, sorted.
fn messages_in_envelopes(messages: &[ReceivedMessage]) -> Vec<String> {
    let mut texts: Vec<String> = messages
        .iter()
        .map(|m| {
            let envelope: Value = serde_json::from_slice(&m.body).unwrap();
            envelope["Message"].as_str().unwrap().to_owned()
        })
        .collect();
    texts.sort();
    texts
}

fn entry(message: &str, attributes: Vec<MessageAttribute>) -> PublishEntry {
    PublishEntry { message: Bytes::copy_from_slice(message.as_bytes()), attributes, ..PublishEntry::default() }
}

fn color(value: &str) -> MessageAttribute {
    MessageAttribute::string("color", "String", value)
}

fn subscribe(c: &Conn, topic: &str, queue: &str, attributes: Vec<(String, String)>) -> String {
    c.run(c.client().create_queue(queue, vec![], vec![])).unwrap();
    c.run(c.client().subscribe(topic, "sqs", &queue_arn(queue), attributes)).unwrap()
}

#[test]
fn publish_fans_out_to_every_queue_from_both_shards_with_envelope_raw_and_filter() {
    let daemon = Daemon::start();
    let c0 = daemon.client_on_shard(0);
    let c1 = daemon.client_on_shard(1);
    let topic = c0.run(c0.client().create_topic("orders", vec![], vec![])).unwrap();
    assert_eq!(topic, topic_arn("orders"));
    let enveloped = subscribe(&c0, &topic, "all", vec![]);
    subscribe(&c0, &topic, "raw", vec![kv("RawMessageDelivery", "true")]);
    subscribe(&c1, "orders", "red", vec![kv("FilterPolicy", r#"{"color":["red"]}"#)]);
    let entry_with_subject = PublishEntry { subject: Some("New order".into()), ..entry("order 1", vec![color("red")]) };
    let first = c0.run(c0.client().publish_entry(&topic, entry_with_subject)).unwrap();
    assert_eq!(first.message_id.len(), 36);
    c1.run(c1.client().publish_entry("orders", entry("order 2", vec![color("blue"), MessageAttribute::binary("blob", vec![7u8])])))
        .unwrap();
    c1.run(c1.client().publish("orders", "order 3")).unwrap();

    // Every queue holds its messages on both shards; one connection drains them all.
    let all = drain(&c0, "all");
    assert_eq!(messages_in_envelopes(&all), ["order 1", "order 2", "order 3"]);
    let raw = drain(&c0, "raw");
    assert_eq!(bodies(&raw), ["order 1", "order 2", "order 3"]);
    let red = drain(&c1, "red");
    assert_eq!(messages_in_envelopes(&red), ["order 1"]);

    // The envelope, field by field.
    let first_envelope = all.iter().map(|m| serde_json::from_slice::<Value>(&m.body).unwrap()).find(|e| e["Message"] == "order 1").unwrap();
    assert_eq!(first_envelope["Type"], "Notification");
    assert_eq!(first_envelope["MessageId"], first.message_id.as_str());
    assert_eq!(first_envelope["TopicArn"], topic.as_str());
    assert_eq!(first_envelope["Subject"], "New order");
    assert_eq!(first_envelope["SignatureVersion"], "1");
    assert!(!first_envelope["Signature"].as_str().unwrap().is_empty());
    assert!(first_envelope["SigningCertURL"].as_str().unwrap().ends_with(".pem"));
    assert_eq!(first_envelope["UnsubscribeURL"], format!("{}/?Action=Unsubscribe&SubscriptionArn={enveloped}", daemon.http_url()).as_str());
    assert_eq!(first_envelope["MessageAttributes"]["color"], serde_json::json!({"Type": "String", "Value": "red"}));
    let timestamp = first_envelope["Timestamp"].as_str().unwrap();
    assert_eq!(timestamp.len(), "2012-03-29T05:12:16.901Z".len(), "{timestamp}");
    assert!(timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T' && timestamp.as_bytes()[19] == b'.');
    // A message published without subject or attributes has neither field.
    let third = all.iter().map(|m| serde_json::from_slice::<Value>(&m.body).unwrap()).find(|e| e["Message"] == "order 3").unwrap();
    assert!(third.get("Subject").is_none() && third.get("MessageAttributes").is_none());
    // An enveloped message carries no SQS message attributes; a raw one carries the published ones.
    assert!(all.iter().all(|m| m.message_attributes.is_empty()));
    let raw_second = raw.iter().find(|m| m.body == "order 2").unwrap();
    let mut names: Vec<&str> = raw_second.message_attributes.iter().map(|a| a.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["blob", "color"]);
    let blob = raw_second.message_attributes.iter().find(|a| a.name == "blob").unwrap();
    assert_eq!((blob.data_type.as_str(), blob.binary_value.as_deref()), ("Binary", Some(&[7u8][..])));
}

#[test]
fn filter_policies_select_messages_by_attributes_and_body() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_topic("events", vec![], vec![])).unwrap();
    let policies: &[(&str, &str, &str)] = &[
        ("exact", "MessageAttributes", r#"{"store":["north","south"]}"#),
        ("prefix", "MessageAttributes", r#"{"store":[{"prefix":"no"}]}"#),
        ("anything-but", "MessageAttributes", r#"{"store":[{"anything-but":["north"]}]}"#),
        ("numeric", "MessageAttributes", r#"{"price":[{"numeric":[">=",100,"<",200]}]}"#),
        ("missing-vip", "MessageAttributes", r#"{"vip":[{"exists":false}]}"#),
        ("cidr", "MessageAttributes", r#"{"source":[{"cidr":"10.1.0.0/16"}]}"#),
        ("ignore-case", "MessageAttributes", r#"{"store":[{"equals-ignore-case":"SOUTH"}]}"#),
        ("either", "MessageAttributes", r#"{"$or":[{"vip":["yes"]},{"price":[{"numeric":["<",10]}]}]}"#),
        ("tags", "MessageAttributes", r#"{"tags":["rush"]}"#),
        ("body", "MessageBody", r#"{"order":{"status":["paid"],"total":[{"numeric":[">",50]}]}}"#),
    ];
    for (queue, scope, policy) in policies {
        subscribe(&c, "events", queue, vec![kv("FilterPolicy", policy), kv("FilterPolicyScope", scope)]);
    }
    let number = |name: &str, value: &str| MessageAttribute::string(name, "Number", value);
    let string = |name: &str, value: &str| MessageAttribute::string(name, "String", value);
    let messages = [
        entry("m1", vec![string("store", "north"), number("price", "150"), string("source", "10.1.2.3"), string("vip", "yes")]),
        entry(
            "m2",
            vec![string("store", "South"), number("price", "5"), MessageAttribute::string("tags", "String.Array", r#"["gift","rush"]"#)],
        ),
        entry(r#"{"order":{"status":"paid","total":75}}"#, vec![string("store", "west"), number("price", "200")]),
    ];
    for message in messages {
        c.run(c.client().publish_entry("events", message)).unwrap();
    }
    let m3 = r#"{"order":{"status":"paid","total":75}}"#;
    let expected: &[(&str, &[&str])] = &[
        ("exact", &["m1"]),
        ("prefix", &["m1"]),
        ("anything-but", &["m2", m3]),
        ("numeric", &["m1"]),
        ("missing-vip", &["m2", m3]),
        ("cidr", &["m1"]),
        ("ignore-case", &["m2"]),
        ("either", &["m1", "m2"]),
        ("tags", &["m2"]),
        ("body", &[m3]),
    ];
    for (queue, wanted) in expected {
        let mut wanted: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
        wanted.sort();
        assert_eq!(messages_in_envelopes(&drain(&c, queue)), wanted, "queue {queue}");
    }
}

#[test]
fn subscriptions_are_listed_changed_and_removed() {
    let daemon = Daemon::start();
    let c = daemon.client();
    let topic = c.run(c.client().create_topic("t", vec![kv("DisplayName", "Tee")], vec![kv("team", "a")])).unwrap();
    assert_eq!(c.run(c.client().create_topic("t", vec![kv("DisplayName", "Tee")], vec![])).unwrap(), topic);
    assert_code(c.run(c.client().create_topic("t", vec![kv("DisplayName", "Other")], vec![])), ErrorCode::InvalidParameter);
    let a = subscribe(&c, &topic, "a", vec![]);
    let b = subscribe(&c, &topic, "b", vec![kv("RawMessageDelivery", "true")]);
    assert!(a.starts_with(&format!("{topic}:")) && a != b);
    // Subscribe is idempotent for the same queue and attributes; other attributes are refused.
    assert_eq!(c.run(c.client().subscribe(&topic, "sqs", &queue_arn("a"), vec![])).unwrap(), a);
    assert_code(
        c.run(c.client().subscribe(&topic, "sqs", &queue_arn("a"), vec![kv("RawMessageDelivery", "true")])),
        ErrorCode::InvalidParameter,
    );

    let attributes = c.run(c.client().get_topic_attributes("t")).unwrap();
    assert_eq!(attribute(&attributes, "TopicArn"), Some(topic.as_str()));
    assert_eq!(attribute(&attributes, "DisplayName"), Some("Tee"));
    assert_eq!(attribute(&attributes, "SubscriptionsConfirmed"), Some("2"));
    assert_eq!(attribute(&attributes, "SubscriptionsPending"), Some("0"));
    assert_eq!(attribute(&attributes, "Owner"), Some(ACCOUNT));
    assert!(attribute(&attributes, "Policy").unwrap().contains(&topic));
    assert!(attribute(&attributes, "EffectiveDeliveryPolicy").unwrap().contains("defaultHealthyRetryPolicy"));
    c.run(c.client().set_topic_attribute("t", "DisplayName", Some("New"))).unwrap();
    assert_eq!(attribute(&c.run(c.client().get_topic_attributes("t")).unwrap(), "DisplayName"), Some("New"));
    assert_code(c.run(c.client().set_topic_attribute("t", "Bogus", Some("1"))), ErrorCode::InvalidParameter);

    let (rows, next) = c.run(c.client().list_subscriptions(Some(&topic), None)).unwrap();
    assert_eq!(next, None);
    let mut endpoints: Vec<&str> = rows.iter().map(|r| r.endpoint.as_str()).collect();
    endpoints.sort();
    assert_eq!(endpoints, [queue_arn("a"), queue_arn("b")]);
    assert!(rows.iter().all(|r| r.protocol == "sqs" && r.topic_arn == topic && r.owner == ACCOUNT));

    let sub = c.run(c.client().get_subscription_attributes(&b)).unwrap();
    assert_eq!(attribute(&sub, "RawMessageDelivery"), Some("true"));
    assert_eq!(attribute(&sub, "Endpoint"), Some(queue_arn("b").as_str()));
    assert_eq!(attribute(&sub, "PendingConfirmation"), Some("false"));
    c.run(c.client().set_subscription_attribute(&b, "RawMessageDelivery", Some("false"))).unwrap();
    c.run(c.client().set_subscription_attribute(&b, "FilterPolicy", Some(r#"{"k":["v"]}"#))).unwrap();
    let sub = c.run(c.client().get_subscription_attributes(&b)).unwrap();
    assert_eq!(attribute(&sub, "RawMessageDelivery"), Some("false"));
    assert_eq!(attribute(&sub, "FilterPolicyScope"), Some("MessageAttributes"));
    assert_code(c.run(c.client().set_subscription_attribute(&b, "FilterPolicy", Some(r#"{"k":"v"}"#))), ErrorCode::InvalidParameter);

    // The filter now holds back a message without k; removing it lets everything through.
    c.run(c.client().publish(&topic, "one")).unwrap();
    assert!(drain(&c, "b").is_empty());
    c.run(c.client().set_subscription_attribute(&b, "FilterPolicy", None)).unwrap();
    c.run(c.client().publish(&topic, "two")).unwrap();
    assert_eq!(messages_in_envelopes(&drain(&c, "b")), ["two"]);

    // Unsubscribing stops delivery to that queue only.
    c.run(c.client().unsubscribe(&a)).unwrap();
    assert_code(c.run(c.client().unsubscribe(&a)), ErrorCode::NotFound);
    drain(&c, "a");
    c.run(c.client().publish(&topic, "three")).unwrap();
    assert!(drain(&c, "a").is_empty());
    assert_eq!(messages_in_envelopes(&drain(&c, "b")), ["three"]);

    // Deleting the topic deletes its subscriptions; deleting it again is not an error.
    c.run(c.client().delete_topic(&topic)).unwrap();
    c.run(c.client().delete_topic(&topic)).unwrap();
    assert_code(c.run(c.client().get_subscription_attributes(&b)), ErrorCode::NotFound);
    assert_code(c.run(c.client().publish(&topic, "four")), ErrorCode::NotFound);
    assert!(c.run(c.client().list_subscriptions(None, None)).unwrap().0.is_empty());
}

#[test]
fn list_topics_pages_through_every_topic() {
    let daemon = Daemon::start();
    let c = daemon.client();
    for i in 0..105 {
        c.run(c.client().create_topic(&format!("t{i:03}"), vec![], vec![])).unwrap();
    }
    let (first, token) = c.run(c.client().list_topics(None)).unwrap();
    assert_eq!(first.len(), 100);
    let (rest, end) = c.run(c.client().list_topics(token)).unwrap();
    assert_eq!(rest.len(), 5);
    assert_eq!(end, None);
    let mut all: Vec<String> = first.into_iter().chain(rest).collect();
    all.dedup();
    assert_eq!(all.len(), 105);
    assert_code(c.run(c.client().list_topics(Some("!!".into()))), ErrorCode::InvalidParameter);
}

#[test]
fn undeliverable_notifications_go_to_the_subscription_dead_letter_queue() {
    let daemon = Daemon::start();
    let c = daemon.client();
    let topic = c.run(c.client().create_topic("alerts", vec![], vec![])).unwrap();
    c.run(c.client().create_queue("dlq", vec![], vec![])).unwrap();
    let redrive = format!(r#"{{"deadLetterTargetArn":"{}"}}"#, queue_arn("dlq"));
    subscribe(&c, &topic, "gone", vec![kv("RedrivePolicy", &redrive)]);
    subscribe(&c, &topic, "raw-small", vec![kv("RawMessageDelivery", "true"), kv("RedrivePolicy", &redrive)]);
    subscribe(&c, &topic, "kept", vec![]);
    c.run(c.client().delete_queue("gone")).unwrap();

    // Eleven attributes: too many for raw delivery to SQS.
    let many: Vec<MessageAttribute> = (0..11).map(|i| MessageAttribute::string(format!("a{i}"), "String", "v")).collect();
    c.run(c.client().publish_entry(&topic, entry("first", many))).unwrap();
    c.run(c.client().publish(&topic, "second")).unwrap();

    // The surviving subscriber is unaffected; the publishes succeeded.
    assert_eq!(messages_in_envelopes(&drain(&c, "kept")), ["first", "second"]);
    assert_eq!(bodies(&drain(&c, "raw-small")), ["second"]);
    let dead = drain(&c, "dlq");
    assert_eq!(messages_in_envelopes(&dead), ["first", "first", "second"], "two undeliverable to the deleted queue, one to raw-small");
    for message in &dead {
        let code = message.message_attributes.iter().find(|a| a.name == "ErrorCode").unwrap();
        assert!(code.string_value.is_some());
        assert!(message.message_attributes.iter().any(|a| a.name == "ErrorMessage"));
    }
    // Without a dead-letter queue an undeliverable notification is dropped, never an error.
    c.run(c.client().set_subscription_attribute(
        &c.run(c.client().list_subscriptions(Some(&topic), None)).unwrap().0[0].subscription_arn,
        "RedrivePolicy",
        None,
    ))
    .unwrap();
    c.run(c.client().publish(&topic, "third")).unwrap();
}

#[test]
fn bad_requests_get_sns_error_codes() {
    let daemon = Daemon::start();
    let c = daemon.client();
    let client = c.client();
    assert_code(c.run(client.create_topic("bad name", vec![], vec![])), ErrorCode::InvalidParameter);
    assert_code(c.run(client.create_topic(&"x".repeat(257), vec![], vec![])), ErrorCode::InvalidParameter);
    // A FIFO topic needs both the `.fifo` name and FifoTopic=true; FIFO attributes need a FIFO topic.
    assert_code(c.run(client.create_topic("f", vec![kv("FifoTopic", "true")], vec![])), ErrorCode::InvalidParameter);
    assert_code(c.run(client.create_topic("f.fifo", vec![], vec![])), ErrorCode::InvalidParameter);
    assert_code(c.run(client.create_topic("f", vec![kv("ContentBasedDeduplication", "true")], vec![])), ErrorCode::InvalidParameter);
    assert_code(c.run(client.publish("nope", "x")), ErrorCode::NotFound);
    assert_code(c.run(client.publish("arn:aws:sns:us-east-1:000000000000:nope", "x")), ErrorCode::NotFound);
    assert_code(c.run(client.get_topic_attributes("arn:aws:sns:broken")), ErrorCode::InvalidParameter);
    let topic = c.run(client.create_topic("t", vec![], vec![])).unwrap();
    c.run(client.create_queue("q", vec![], vec![])).unwrap();
    // What nothing here would act on is refused, never kept and ignored.
    let role = "arn:aws:iam::000000000000:role/feedback";
    assert_code(c.run(client.set_topic_attribute(&topic, "HTTPSuccessFeedbackRoleArn", Some(role))), ErrorCode::InvalidParameter);
    assert_code(c.run(client.create_topic("t2", vec![kv("SQSFailureFeedbackRoleArn", role)], vec![])), ErrorCode::InvalidParameter);
    let protection = r#"{"Name":"p","Version":"2021-06-01","Statement":[]}"#;
    assert_code(c.run(client.set_topic_attribute(&topic, "DataProtectionPolicy", Some(protection))), ErrorCode::InvalidParameter);

    // Subscriptions.
    assert_code(c.run(client.subscribe(&topic, "sqs", "q", vec![])), ErrorCode::InvalidParameter);
    assert_code(c.run(client.subscribe(&topic, "sqs", "arn:aws:sqs:eu-west-1:111111111111:q", vec![])), ErrorCode::InvalidParameter);
    assert_code(c.run(client.subscribe(&topic, "carrier-pigeon", &queue_arn("q"), vec![])), ErrorCode::InvalidParameter);
    assert_code(
        c.run(client.subscribe(&topic, "sqs", &queue_arn("q"), vec![kv("FilterPolicy", "{not json")])),
        ErrorCode::InvalidParameter,
    );
    assert_code(
        c.run(client.subscribe(&topic, "sqs", &queue_arn("q"), vec![kv("FilterPolicy", r#"{"a":[{"numeric":[">",9,"<",1]}]}"#)])),
        ErrorCode::InvalidParameter,
    );
    assert_code(
        c.run(client.subscribe(&topic, "sqs", &queue_arn("q"), vec![kv("RawMessageDelivery", "maybe")])),
        ErrorCode::InvalidParameter,
    );
    assert_code(c.run(client.subscribe(&topic, "sqs", &queue_arn("q"), vec![kv("RedrivePolicy", "{}")])), ErrorCode::InvalidParameter);
    assert_code(c.run(client.subscribe(&topic, "sqs", &queue_arn("q"), vec![kv("Colour", "blue")])), ErrorCode::InvalidParameter);
    assert_code(c.run(client.subscribe("missing", "sqs", &queue_arn("q"), vec![])), ErrorCode::NotFound);
    assert_code(c.run(client.unsubscribe("not-an-arn")), ErrorCode::InvalidParameter);
    assert_code(c.run(client.unsubscribe(&format!("{topic}:00000000-0000-4000-8000-000000000000"))), ErrorCode::NotFound);
    assert_code(c.run(client.confirm_subscription(&topic, "no-such-token")), ErrorCode::InvalidParameter);

    // Messages.
    assert_code(c.run(client.publish(&topic, "")), ErrorCode::InvalidParameter);
    assert_code(c.run(client.publish(&topic, vec![b'x'; 256 * 1024 + 1])), ErrorCode::InvalidParameter);
    assert_code(c.run(client.publish(&topic, vec![0xffu8, 0xfe])), ErrorCode::InvalidParameter);
    c.run(client.publish(&topic, vec![b'x'; 256 * 1024])).unwrap();
    let subject = |s: &str| PublishEntry { subject: Some(s.into()), ..entry("m", vec![]) };
    assert_code(c.run(client.publish_entry(&topic, subject("two\nlines"))), ErrorCode::InvalidParameter);
    assert_code(c.run(client.publish_entry(&topic, subject(&"s".repeat(100)))), ErrorCode::InvalidParameter);
    let typed = |t: &str, v: &str| entry("m", vec![MessageAttribute::string("a", t, v)]);
    assert_code(c.run(client.publish_entry(&topic, typed("Number", "abc"))), ErrorCode::InvalidParameterValue);
    assert_code(c.run(client.publish_entry(&topic, typed("Widget", "1"))), ErrorCode::InvalidParameterValue);
    assert_code(c.run(client.publish_entry(&topic, typed("String.Array", "[{}]"))), ErrorCode::InvalidParameterValue);
    assert_code(c.run(client.publish_entry(&topic, typed("String", ""))), ErrorCode::InvalidParameterValue);
    let structured = |m: &str| PublishEntry { message_structure: Some("json".into()), ..entry(m, vec![]) };
    assert_code(c.run(client.publish_entry(&topic, structured(r#"{"sqs":"only"}"#))), ErrorCode::InvalidParameter);
    assert_code(c.run(client.publish_entry(&topic, structured("not json"))), ErrorCode::InvalidParameter);
    let dedup = PublishEntry { deduplication_id: Some("d".into()), ..entry("m", vec![]) };
    assert_code(c.run(client.publish_entry(&topic, dedup)), ErrorCode::InvalidParameter);

    // Batches.
    let batch =
        |ids: &[&str]| -> Vec<PublishEntry> { ids.iter().map(|id| PublishEntry { id: id.to_string(), ..entry("m", vec![]) }).collect() };
    assert_code(c.run(client.publish_batch(&topic, vec![])), ErrorCode::EmptyBatchRequest);
    let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    assert_code(c.run(client.publish_batch(&topic, batch(&eleven))), ErrorCode::TooManyEntriesInBatchRequest);
    assert_code(c.run(client.publish_batch(&topic, batch(&["a", "a"]))), ErrorCode::BatchEntryIdsNotDistinct);
    assert_code(c.run(client.publish_batch(&topic, batch(&["bad id!"]))), ErrorCode::InvalidBatchEntryId);
    let big: Vec<PublishEntry> = (0..2).map(|i| PublishEntry { id: i.to_string(), ..entry(&"x".repeat(150 * 1024), vec![]) }).collect();
    assert_code(c.run(client.publish_batch(&topic, big)), ErrorCode::BatchRequestTooLong);
    let mut mixed = batch(&["ok1", "empty", "ok2"]);
    mixed[1].message = Bytes::new();
    let (successful, failed) = c.run(client.publish_batch(&topic, mixed)).unwrap();
    let mut ok: Vec<&str> = successful.iter().map(|s| s.id.as_str()).collect();
    ok.sort();
    assert_eq!(ok, ["ok1", "ok2"]);
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].id.as_str(), failed[0].code, failed[0].sender_fault), ("empty", ErrorCode::InvalidParameter, true));
}

#[test]
fn message_structure_json_gives_sqs_subscribers_their_own_text() {
    let daemon = Daemon::start();
    let c = daemon.client();
    let topic = c.run(c.client().create_topic("s", vec![], vec![])).unwrap();
    subscribe(&c, &topic, "wrapped", vec![]);
    subscribe(&c, &topic, "raw", vec![kv("RawMessageDelivery", "true")]);
    let structured = |m: &str| PublishEntry { message_structure: Some("json".into()), ..entry(m, vec![color("red")]) };
    c.run(c.client().publish_entry(&topic, structured(r#"{"default":"for everyone","sqs":"for queues"}"#))).unwrap();
    c.run(c.client().publish_entry(&topic, structured(r#"{"default":"fallback","http":"for web"}"#))).unwrap();
    assert_eq!(messages_in_envelopes(&drain(&c, "wrapped")), ["fallback", "for queues"]);
    let raw = drain(&c, "raw");
    assert_eq!(bodies(&raw), ["fallback", "for queues"]);
    assert!(raw.iter().all(|m| m.message_attributes.is_empty()), "attributes are not delivered with a JSON message structure");
}

#[test]
fn acknowledged_publishes_and_subscriptions_survive_kill_and_restart() {
    let mut daemon = Daemon::start();
    let queues = ["d1", "d2", "d3"];
    let published: Vec<String> = {
        let c = daemon.client();
        let topic = c.run(c.client().create_topic("durable", vec![], vec![])).unwrap();
        for queue in queues {
            subscribe(&c, &topic, queue, vec![kv("RawMessageDelivery", "true")]);
        }
        // Batches published concurrently over two connections, then a kill without warning.
        let c2 = daemon.client();
        let conns = [&c, &c2];
        let mut acknowledged = Vec::new();
        for round in 0..20 {
            let conn = conns[round % 2];
            let entries: Vec<PublishEntry> =
                (0..10).map(|i| PublishEntry { id: i.to_string(), ..entry(&format!("r{round}-{i}"), vec![]) }).collect();
            let (ok, failed) = conn.run(conn.client().publish_batch(&topic, entries)).unwrap();
            assert!(failed.is_empty());
            acknowledged.extend(ok.iter().map(|r| format!("r{round}-{}", r.id)));
        }
        acknowledged
    };
    daemon.kill();
    daemon.restart();
    let c = daemon.client();
    let mut expected = published.clone();
    expected.sort();
    for queue in queues {
        assert_eq!(bodies(&drain(&c, queue)), expected, "queue {queue} after kill -9");
    }
    // The topic and its subscriptions came back too.
    c.run(c.client().publish("durable", "after restart")).unwrap();
    for queue in queues {
        assert_eq!(bodies(&drain(&c, queue)), ["after restart"]);
    }
}

/// A standard topic's publish with `MessageGroupId` gives each subscribed standard queue's
/// copy that group — through the topic's feed and one by one (a filter policy) alike — so a
/// fair queue behind a topic knows its tenants.
#[test]
fn a_standard_topic_passes_the_message_group_to_its_queues() {
    let daemon = Daemon::start();
    let c = daemon.client_on_shard(0);
    let topic = c.run(c.client().create_topic("tenants", vec![], vec![])).unwrap();
    subscribe(&c, &topic, "fed", vec![kv("RawMessageDelivery", "true")]);
    subscribe(&c, &topic, "filtered", vec![kv("FilterPolicy", r#"{"color":["red"]}"#)]);
    let grouped = PublishEntry { message_group_id: Some("tenant-1".into()), ..entry("for tenant 1", vec![color("red")]) };
    c.run(c.client().publish_entry(&topic, grouped)).unwrap();
    c.run(c.client().publish_entry(&topic, entry("no tenant", vec![color("red")]))).unwrap();
    for queue in ["fed", "filtered"] {
        let got = drain(&c, queue);
        let groups: Vec<Option<&str>> = got.iter().map(|m| attribute(&m.attributes, "MessageGroupId")).collect();
        assert_eq!(groups, [Some("tenant-1"), None], "{queue}");
    }
}
