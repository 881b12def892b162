//! Topic feeds through a real daemon and the real client: queues subscribed with no filter
//! policy read their topic's messages (raw, or the envelope) through a cursor instead of
//! getting a copy at publish (`queue::feed`). What a user sees must not change: every acknowledged
//! publish reaches every such queue exactly as a sent message would, through restarts,
//! kill -9, purges, late subscriptions, unsubscriptions, filter policies set later, delays, a
//! memory budget far below the backlog, and compaction of the log under the cursors.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::*;
use sluice_testkit::*;

const ACCOUNT: &str = "000000000000";

fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}")
}

fn subscribe(c: &Conn, topic: &str, queue: &str, attributes: Vec<(String, String)>) -> String {
    c.run(c.client().create_queue(queue, attributes.iter().filter(|(k, _)| k == "DelaySeconds").cloned().collect(), vec![])).unwrap();
    let attributes = attributes.into_iter().filter(|(k, _)| k != "DelaySeconds").collect();
    c.run(c.client().subscribe(topic, "sqs", &queue_arn(queue), attributes)).unwrap()
}

fn raw() -> Vec<(String, String)> {
    vec![kv("RawMessageDelivery", "true")]
}

fn receive(queue: &str, visibility: i32, wait: i32) -> ReceiveMessage {
    ReceiveMessage {
        queue: queue.into(),
        max_messages: Some(10),
        wait_time_seconds: Some(wait),
        visibility_timeout: Some(visibility),
        message_attribute_names: vec!["All".into()],
        ..ReceiveMessage::default()
    }
}

/// Receives until a receive comes back empty; deletes what it got when `delete`.
fn take_all(c: &Conn, queue: &str, delete: bool) -> Vec<ReceivedMessage> {
    let mut all = Vec::new();
    loop {
        let got = c.run(c.client().receive_message(receive(queue, 600, 0))).unwrap();
        if got.is_empty() {
            return all;
        }
        if delete {
            let entries =
                got.iter().enumerate().map(|(i, m)| DeleteEntry { id: i.to_string(), receipt_handle: m.receipt_handle.clone() }).collect();
            let (_, failed) = c.run(c.client().delete_message_batch(queue, entries)).unwrap();
            assert!(failed.is_empty(), "{failed:?}");
        }
        all.extend(got);
    }
}

fn sorted_bodies(messages: &[ReceivedMessage]) -> Vec<String> {
    let mut bodies: Vec<String> = messages.iter().map(|m| String::from_utf8(m.body.to_vec()).unwrap()).collect();
    bodies.sort();
    bodies
}

/// Publishes `prefix0000`.. in batches of ten over the given connections in turn (so both
/// shards' feeds are written); returns the messages acknowledged.
fn publish_all(conns: &[&Conn], topic: &str, prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let all: Vec<usize> = range.collect();
    for (turn, chunk) in all.chunks(10).enumerate() {
        let c = conns[turn % conns.len()];
        let entries: Vec<PublishEntry> = chunk
            .iter()
            .map(|i| PublishEntry { id: i.to_string(), message: Bytes::from(format!("{prefix}{i:04}")), ..PublishEntry::default() })
            .collect();
        let (ok, failed) = c.run(c.client().publish_batch(topic, entries)).unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        acknowledged.extend(ok.iter().map(|r| format!("{prefix}{:04}", r.id.parse::<usize>().unwrap())));
    }
    acknowledged.sort();
    acknowledged
}

fn counts(c: &Conn, queue: &str) -> (u64, u64, u64) {
    let names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"];
    let values = c.run(c.client().get_queue_attributes(queue, &names)).unwrap();
    let read = |name| attribute(&values, name).unwrap().parse().unwrap();
    (read(names[0]), read(names[1]), read(names[2]))
}

#[test]
fn readers_keep_every_acknowledged_publish_through_restarts_and_kill_9() {
    let mut daemon = Daemon::start();
    let (c0, c1) = (daemon.client_on_shard(0), daemon.client_on_shard(1));
    let topic = c0.run(c0.client().create_topic("feed", vec![], vec![])).unwrap();
    for queue in ["done", "held", "idle"] {
        subscribe(&c0, &topic, queue, raw());
    }
    // A reader of the envelopes, and one subscriber still delivered to one by one (it has a
    // filter policy that lets everything through), beside the raw readers.
    let wrapped = subscribe(&c1, &topic, "wrapped", vec![]);
    subscribe(&c1, &topic, "filtered", vec![kv("FilterPolicy", r#"{"never":[{"exists":false}]}"#)]);
    let first = publish_all(&[&c0, &c1], &topic, "a", 0..30);

    // "done" takes and deletes 12; "held" takes 5 and keeps them in flight; "idle" takes nothing.
    let mut done = Vec::new();
    while done.len() < 12 {
        let got = c0.run(c0.client().receive_message(ReceiveMessage { max_messages: Some(3), ..receive("done", 600, 0) })).unwrap();
        assert!(!got.is_empty());
        for message in got {
            c0.run(c0.client().delete_message("done", &message.receipt_handle)).unwrap();
            done.push(String::from_utf8(message.body.to_vec()).unwrap());
        }
    }
    let mut held = Vec::new();
    while held.len() < 5 {
        let got = c1.run(c1.client().receive_message(ReceiveMessage { max_messages: Some(1), ..receive("held", 600, 0) })).unwrap();
        held.extend(got);
    }
    assert_eq!(counts(&c0, "idle"), (30, 0, 0));
    assert_eq!(counts(&c0, "done"), (30 - done.len() as u64, 0, 0));
    assert_eq!(counts(&c0, "held"), (25, 5, 0));
    // Receives are not waited on: a durable write on each shard after them makes sure they
    // are on disk (the log keeps a prefix), so the in-flight state is there to check.
    c0.run(c0.client().create_queue("sync", vec![], vec![])).unwrap();
    c0.run(c0.client().send_message("sync", "0")).unwrap();
    c1.run(c1.client().send_message("sync", "1")).unwrap();

    // kill -9, twice with nothing in between, then once after more publishes.
    daemon.restart();
    daemon.restart();
    let (c0, c1) = (daemon.client_on_shard(0), daemon.client_on_shard(1));
    assert_eq!(counts(&c0, "idle"), (30, 0, 0));
    assert_eq!(counts(&c1, "held"), (25, 5, 0));
    let second = publish_all(&[&c1, &c0], &topic, "b", 0..20);
    daemon.restart();
    let c = daemon.client();

    let mut everything: Vec<String> = first.iter().chain(&second).cloned().collect();
    everything.sort();
    assert_eq!(sorted_bodies(&take_all(&c, "idle", true)), everything);
    // What "done" deleted never comes back; the rest comes once.
    let mut rest: Vec<String> = everything.iter().filter(|b| !done.contains(b)).cloned().collect();
    rest.sort();
    assert_eq!(sorted_bodies(&take_all(&c, "done", true)), rest);
    // The messages "held" had in flight are still in flight, under the same receipt handles
    // and message ids.
    let not_held: Vec<String> = everything.iter().filter(|b| !held.iter().any(|m| m.body == b.as_bytes())).cloned().collect::<Vec<_>>();
    assert_eq!(sorted_bodies(&take_all(&c, "held", true)), not_held);
    for message in &held {
        c.run(c.client().change_message_visibility("held", &message.receipt_handle, 0)).unwrap();
    }
    let again = take_all(&c, "held", true);
    let mut ids: Vec<&str> = again.iter().map(|m| m.message_id.as_str()).collect();
    let mut held_ids: Vec<&str> = held.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort();
    held_ids.sort();
    assert_eq!(ids, held_ids);
    // The reader of envelopes got every message in an envelope of its own (its unsubscribe
    // URL, its digest); the one-by-one subscriber the same envelopes.
    let url = format!("{}/?Action=Unsubscribe&SubscriptionArn={wrapped}", daemon.http_url());
    let wrapped_messages = take_all(&c, "wrapped", true);
    let mut texts: Vec<String> = wrapped_messages
        .iter()
        .map(|m| {
            assert_eq!(m.md5_of_body, sluice_protocol::digest::hex(&sluice_protocol::digest::md5_of_body(&m.body)));
            let envelope: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
            assert_eq!(envelope["UnsubscribeURL"], url.as_str());
            assert_eq!(envelope["TopicArn"], topic.as_str());
            envelope["Message"].as_str().unwrap().to_owned()
        })
        .collect();
    texts.sort();
    assert_eq!(texts, everything);
    assert_eq!(take_all(&c, "filtered", true).len(), everything.len());

    // Nothing is left anywhere, and nothing comes back after another restart.
    daemon.restart();
    let c = daemon.client();
    for queue in ["idle", "done", "held", "wrapped", "filtered"] {
        assert_eq!(counts(&c, queue), (0, 0, 0), "{queue}");
        assert!(take_all(&c, queue, true).is_empty(), "{queue}");
    }
}

#[test]
fn late_subscriptions_unsubscriptions_filters_purges_and_delays_behave_as_in_sqs() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    let topic = c.run(c.client().create_topic("life", vec![], vec![])).unwrap();
    subscribe(&c, &topic, "purged", raw());
    let leaving = subscribe(&c, &topic, "leaving", raw());
    let filtered = subscribe(&c, &topic, "filtered", raw());
    let early = publish_all(&[&c], &topic, "early", 0..3);

    // A queue subscribed now gets only what is published from now on (raw, or in envelopes).
    subscribe(&c, &topic, "late", raw());
    subscribe(&c, &topic, "late-envelopes", vec![]);
    let mut delayed_attributes = raw();
    delayed_attributes.push(kv("DelaySeconds", "3"));
    subscribe(&c, &topic, "delayed", delayed_attributes);
    // A purge takes what the queue's cursor had not taken yet too.
    c.run(c.client().purge_queue("purged")).unwrap();
    assert_eq!(counts(&c, "purged"), (0, 0, 0));
    // Unsubscribing, and setting a filter policy: what was published before still arrives.
    c.run(c.client().unsubscribe(&leaving)).unwrap();
    c.run(c.client().set_subscription_attribute(&filtered, "FilterPolicy", Some(r#"{"color":["red"]}"#))).unwrap();

    let red = PublishEntry {
        id: "red".into(),
        message: Bytes::from_static(b"red"),
        attributes: vec![MessageAttribute::string("color", "String", "red")],
        ..PublishEntry::default()
    };
    c.run(c.client().publish_batch(&topic, vec![red])).unwrap();
    let later = publish_all(&[&c], &topic, "later", 0..2);
    let mut after: Vec<String> = later.iter().cloned().chain(["red".to_owned()]).collect();
    after.sort();

    // The delayed queue counts them as delayed, then they arrive.
    assert_eq!(counts(&c, "delayed"), (0, 0, 3));
    assert!(c.run(c.client().receive_message(receive("delayed", 600, 0))).unwrap().is_empty());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < 3 {
        assert!(Instant::now() < deadline, "the delayed messages never arrived: {got:?}");
        got.extend(c.run(c.client().receive_message(receive("delayed", 600, 2))).unwrap());
    }
    assert_eq!(sorted_bodies(&got), after);

    // A restart changes none of it.
    daemon.restart();
    let c = daemon.client();
    assert_eq!(sorted_bodies(&take_all(&c, "late", true)), after);
    let mut texts: Vec<String> = take_all(&c, "late-envelopes", true)
        .iter()
        .map(|m| serde_json::from_slice::<serde_json::Value>(&m.body).unwrap()["Message"].as_str().unwrap().to_owned())
        .collect();
    texts.sort();
    assert_eq!(texts, after);
    assert_eq!(sorted_bodies(&take_all(&c, "purged", true)), after);
    assert_eq!(sorted_bodies(&take_all(&c, "leaving", true)), early);
    let mut filtered_expected: Vec<String> = early.iter().cloned().chain(["red".to_owned()]).collect();
    filtered_expected.sort();
    assert_eq!(sorted_bodies(&take_all(&c, "filtered", true)), filtered_expected);

    // And from here on each gets what it subscribed to.
    c.run(c.client().publish(&topic, "last")).unwrap();
    assert_eq!(sorted_bodies(&take_all(&c, "late", true)), ["last"]);
    assert!(take_all(&c, "leaving", true).is_empty());
    assert!(take_all(&c, "filtered", true).is_empty());
}

/// The names of the shard's queue log segments, oldest first.
fn segment_files(daemon: &Daemon) -> Vec<String> {
    let dir = daemon.data_dir().join("shard-000/queues");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Receives every message of `queue` once, checking each body; deletes those `delete` picks
/// and makes the others visible again once all are seen.
fn read_checked(c: &Conn, queue: &str, size: usize, delete: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut seen = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    loop {
        let got = c.run(c.client().receive_message(receive(queue, 600, 0))).unwrap();
        if got.is_empty() {
            for receipt in kept {
                c.run(c.client().change_message_visibility(queue, &receipt, 0)).unwrap();
            }
            seen.sort_unstable();
            return seen;
        }
        let mut deletes = Vec::new();
        for message in &got {
            let i = number_in(&message.body);
            assert!(message.body == numbered_body(i, size), "{queue}: message {i} came back with a different body");
            seen.push(i);
            if delete(i) {
                deletes.push(DeleteEntry { id: deletes.len().to_string(), receipt_handle: message.receipt_handle.clone() });
            } else {
                kept.push(message.receipt_handle.clone());
            }
        }
        if !deletes.is_empty() {
            c.run(c.client().delete_message_batch(queue, deletes)).unwrap();
        }
    }
}

#[test]
fn a_feed_far_larger_than_the_memory_budget_is_read_back_and_survives_compaction() {
    // 1 MiB of memory budget, 4 MiB segments; about 19 MiB of feed.
    const COUNT: usize = 2400;
    const SIZE: usize = 8 * 1024;
    let mut daemon = Daemon::start_with(&["--cores", "1", "--memory-budget", "1M", "--segment-bytes", "4194304"]);
    let c = daemon.client();
    let topic = c.run(c.client().create_topic("big", vec![], vec![])).unwrap();
    subscribe(&c, &topic, "first", raw());
    subscribe(&c, &topic, "second", raw());
    for batch in 0..COUNT / 10 {
        let entries = (0..10)
            .map(|i| PublishEntry { id: i.to_string(), message: numbered_body(batch * 10 + i, SIZE), ..PublishEntry::default() })
            .collect();
        let (ok, failed) = c.run(c.client().publish_batch(&topic, entries)).unwrap();
        assert_eq!(ok.len(), 10, "{failed:?}");
    }
    // The cursors' records are in the first segment.
    let oldest = segment_files(&daemon)[0].clone();
    daemon.restart();
    let c = daemon.client();
    // "first" takes and deletes everything; "second" takes it all and deletes three in four.
    assert_eq!(read_checked(&c, "first", SIZE, |_| true), (0..COUNT).collect::<Vec<_>>());
    assert_eq!(read_checked(&c, "second", SIZE, |i| !i.is_multiple_of(4)), (0..COUNT).collect::<Vec<_>>());

    // The feed is passed by both cursors and goes; compaction re-logs the live quarter of
    // "second" and the cursors (whose records are in the first segment), and deletes the old
    // segments.
    let deadline = Instant::now() + Duration::from_secs(60);
    while segment_files(&daemon).contains(&oldest) {
        assert!(Instant::now() < deadline, "compaction left the first segment: {:?}", segment_files(&daemon));
        std::thread::sleep(Duration::from_millis(200));
    }

    // After a crash: "first" has nothing (its cursor survived compaction), "second" holds
    // its quarter, intact, and both get what is published next.
    daemon.restart();
    let c = daemon.client();
    assert_eq!(read_checked(&c, "first", SIZE, |_| true), Vec::<usize>::new());
    let quarter: Vec<usize> = (0..COUNT).filter(|i| i.is_multiple_of(4)).collect();
    assert_eq!(read_checked(&c, "second", SIZE, |_| true), quarter);
    c.run(
        c.client()
            .publish_batch(&topic, vec![PublishEntry { id: "n".into(), message: numbered_body(COUNT, SIZE), ..PublishEntry::default() }]),
    )
    .unwrap();
    assert_eq!(read_checked(&c, "first", SIZE, |_| true), [COUNT]);
    assert_eq!(read_checked(&c, "second", SIZE, |_| true), [COUNT]);
}
