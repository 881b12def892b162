//! What a server holds for what clients made: stream shards cost files and descriptors
//! only while they are written or read, deleted streams leave nothing behind, and the
//! server-wide quotas (stream shards, queues, subscriptions) and attribute sizes answer
//! typed errors while the rest goes on.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::*;
use sluice_protocol::{ErrorCode, Op};
use sluice_testkit::*;

/// Segment files of every stream shard's log under the data directory.
fn stream_segment_files(data_dir: &Path) -> usize {
    let mut count = 0;
    let Ok(streams) = std::fs::read_dir(data_dir.join("streams")) else { return 0 };
    for stream in streams.flatten() {
        for shard in std::fs::read_dir(stream.path()).into_iter().flatten().flatten() {
            count += std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter(|file| file.path().extension().is_some_and(|ext| ext == "log"))
                .count();
        }
    }
    count
}

/// Puts one record into each of the first `count` shards of `stream` (by explicit hash key).
fn put_to_shards(c: &Conn, stream: &str, count: usize, tag: &str) {
    let list = ListShards { stream: Some(stream.into()), max_results: Some(1000), ..ListShards::default() };
    let (shards, _) = c.run(c.client().list_shards(list)).unwrap();
    let entries: Vec<PutRecordsEntry> = shards
        .iter()
        .take(count)
        .map(|shard| PutRecordsEntry {
            data: Bytes::from(format!("{tag}-{}", shard.shard_id)),
            partition_key: "k".into(),
            explicit_hash_key: Some(shard.starting_hash_key.clone()),
        })
        .collect();
    for result in c.run(c.client().put_records(stream, entries)).unwrap() {
        assert!(matches!(result, PutRecordResult::Put { .. }), "{result:?}");
    }
}

/// Every record of a shard, read from its start.
fn shard_records(c: &Conn, stream: &str, shard_id: &str) -> Vec<String> {
    let iterator = c.run(c.client().get_shard_iterator(stream, shard_id, StartingPosition::new("TRIM_HORIZON"))).unwrap();
    let result = c.run(c.client().get_records(&iterator, None)).unwrap();
    result.records.iter().map(|record| String::from_utf8(record.data.to_vec()).unwrap()).collect()
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stream_shards_that_are_not_written_hold_no_files_even_after_restarts() {
    // 4 MiB segments keep the old behaviour's cost (a segment per shard) small enough to show.
    let mut daemon = Daemon::start_with(&["--stream-segment-bytes", "4194304"]);
    let c = daemon.client();
    c.run(c.client().create_stream("wide", 200)).unwrap();
    put_to_shards(&c, "wide", 3, "first");
    drop(c);
    // Retention runs at every start, over every shard.
    for round in 0..2 {
        daemon.restart();
        let c = daemon.client();
        // Wait until a request on each core has been served after the retention pass began.
        put_to_shards(&c, "wide", 3, &format!("round{round}"));
        std::thread::sleep(Duration::from_secs(2));
        let files = stream_segment_files(daemon.data_dir());
        assert!(files <= 3 * 2, "round {round}: {files} segment files for 3 written shards of 200");
    }
    // What was written is all there.
    let c = daemon.client();
    let description = c.run(c.client().describe_stream("wide")).unwrap();
    let first = &description.shards[0].shard_id;
    assert_eq!(shard_records(&c, "wide", first).len(), 3, "three puts to {first}");
}

#[test]
fn idle_stream_logs_are_closed_and_open_again_when_used() {
    // Idle after 5 s: the one PutRecords below takes milliseconds, far inside it even on a busy machine.
    let daemon = Daemon::start_with(&["--stream-segment-bytes", "4194304", "--stream-log-idle-seconds", "5"]);
    let c = daemon.client();
    c.run(c.client().create_stream("many", 60)).unwrap();
    let before = daemon.open_files();
    put_to_shards(&c, "many", 60, "a");
    let busy = daemon.open_files();
    // (A few descriptors counted before may have been transient — the metadata write of the
    // CreateStream closing in the background — hence the margin.)
    assert!(busy >= before + 50, "60 written shards hold their active segments open: {before} -> {busy}");
    // Closed once idle: the descriptors go back.
    wait_until("idle logs being closed", Duration::from_secs(60), || daemon.open_files() < before + 10);
    // Used again, they read and write as before.
    put_to_shards(&c, "many", 60, "b");
    let description = c.run(c.client().describe_stream("many")).unwrap();
    for shard in &description.shards {
        let records = shard_records(&c, "many", &shard.shard_id);
        assert_eq!(records, vec![format!("a-{}", shard.shard_id), format!("b-{}", shard.shard_id)], "{}", shard.shard_id);
    }
}

#[test]
fn a_deleted_stream_leaves_no_files_even_when_its_logs_were_not_open() {
    let mut daemon = Daemon::start_with(&["--stream-segment-bytes", "4194304"]);
    let c = daemon.client();
    c.run(c.client().create_stream("gone", 4)).unwrap();
    put_to_shards(&c, "gone", 4, "x");
    drop(c);
    daemon.restart();
    let c = daemon.client();
    assert!(stream_segment_files(daemon.data_dir()) >= 4);
    c.run(c.client().delete_stream("gone")).unwrap();
    wait_until("the deleted stream's files being removed", Duration::from_secs(10), || {
        std::fs::read_dir(daemon.data_dir().join("streams")).map_or(true, |mut entries| entries.next().is_none())
    });
    // A new stream of the same name starts empty.
    c.run(c.client().create_stream("gone", 1)).unwrap();
    let description = c.run(c.client().describe_stream("gone")).unwrap();
    assert!(shard_records(&c, "gone", &description.shards[0].shard_id).is_empty());
}

#[test]
fn the_server_wide_shard_quota_counts_every_stream_and_every_reshard() {
    let daemon = Daemon::start_with(&["--stream-shards-max", "10"]);
    let c = daemon.client();
    c.run(c.client().create_stream("a", 6)).unwrap();
    let refused = c.run(c.client().create_stream("b", 5));
    match &refused {
        Err(ClientError::Server(error)) => {
            assert_eq!(error.code, ErrorCode::LimitExceeded, "{error:?}");
            assert!(
                error.message.contains("Limit: 10") && error.message.contains("Current shard count for the account: 6"),
                "{}",
                error.message
            );
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    assert!(!c.run(c.client().list_streams()).unwrap().contains(&"b".to_owned()), "a refused stream is not made");
    c.run(c.client().create_stream("b", 4)).unwrap();
    // A reshard that adds shards counts too (UpdateShardCount 4 -> 8 adds at least 4).
    let grow = Op::UpdateShardCount { stream: "b".into(), target_shard_count: 8, scaling_type: None };
    assert_code(c.run(c.client().call(grow)), ErrorCode::LimitExceeded);
    // Deleting a stream gives its shards back.
    c.run(c.client().delete_stream("a")).unwrap();
    c.run(c.client().create_stream("c", 6)).unwrap();
}

#[test]
fn queue_and_subscription_quotas_and_attribute_sizes_are_typed_errors() {
    let daemon = Daemon::start_with(&["--queues-max", "3", "--subscriptions-max", "2"]);
    let c = daemon.client();
    for name in ["q1", "q2", "q3"] {
        c.run(c.client().create_queue(name, vec![], vec![])).unwrap();
    }
    assert_code(c.run(c.client().create_queue("q4", vec![], vec![])), ErrorCode::OverLimit);
    // Asking again for a queue that exists still answers its URL.
    c.run(c.client().create_queue("q1", vec![], vec![])).unwrap();
    c.run(c.client().delete_queue("q3")).unwrap();
    c.run(c.client().create_queue("q4", vec![], vec![])).unwrap();

    let topic = c.run(c.client().create_topic("t", vec![], vec![])).unwrap();
    for queue in ["q1", "q2"] {
        let arn = format!("arn:aws:sqs:us-east-1:000000000000:{queue}");
        c.run(c.client().subscribe(&topic, "sqs", &arn, vec![])).unwrap();
    }
    let third = c.run(c.client().subscribe(&topic, "sqs", "arn:aws:sqs:us-east-1:000000000000:q4", vec![]));
    assert_code(third, ErrorCode::SubscriptionLimitExceeded);

    // A queue policy past SQS's 8 KiB, a topic DisplayName past 100 characters, a topic
    // policy past 30 KiB: refused, and nothing changes.
    let policy = format!(r#"{{"Version":"2012-10-17","Id":"{}"}}"#, "x".repeat(9000));
    assert_code(c.run(c.client().set_queue_attributes("q1", vec![kv("Policy", &policy)])), ErrorCode::InvalidAttributeValue);
    assert_code(c.run(c.client().set_topic_attribute(&topic, "DisplayName", Some(&"d".repeat(101)))), ErrorCode::InvalidParameter);
    let big = format!(r#"{{"Version":"2012-10-17","Id":"{}"}}"#, "x".repeat(31 * 1024));
    assert_code(c.run(c.client().set_topic_attribute(&topic, "Policy", Some(&big))), ErrorCode::InvalidParameter);
    let attributes = c.run(c.client().get_queue_attributes("q1", &["All"])).unwrap();
    assert!(attribute(&attributes, "Policy").is_none_or(|policy| policy.len() < 9000));
    c.run(c.client().set_topic_attribute(&topic, "DisplayName", Some(&"d".repeat(100)))).unwrap();
}
