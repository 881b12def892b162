//! Kinesis-style streams through a real daemon (`--cores 2`) and the real client:
//! routing checked against an independent MD5, ordering, every iterator type, paging,
//! resharding with a reader that follows children, push subscriptions, errors, and
//! durability across kill -9.

use std::collections::BTreeMap;

use bytes::Bytes;
use md5::{Digest, Md5};
use sluice_client::*;
use sluice_testkit::*;

/// Kinesis's hash of a partition key, computed here independently of the daemon.
fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

fn record(partition_key: &str, data: &str) -> PutRecordsEntry {
    PutRecordsEntry { data: Bytes::copy_from_slice(data.as_bytes()), partition_key: partition_key.into(), explicit_hash_key: None }
}

fn put_all(c: &Conn, stream: &str, records: Vec<PutRecordsEntry>) -> Vec<(String, String)> {
    c.run(c.client().put_records(stream, records))
        .unwrap()
        .into_iter()
        .map(|result| match result {
            PutRecordResult::Put { shard_id, sequence_number } => (shard_id, sequence_number),
            PutRecordResult::Failed(error) => panic!("a record failed: {error}"),
        })
        .collect()
}

fn position(kind: &str) -> StartingPosition {
    StartingPosition::new(kind)
}

/// Reads a shard from `position` until caught up (or its end); returns the records and
/// the children named at the end of a closed shard.
fn read_shard(c: &Conn, stream: &str, shard: &str, position: StartingPosition) -> (Vec<StreamRecord>, Vec<ChildShard>) {
    let mut iterator = c.run(c.client().get_shard_iterator(stream, shard, position)).unwrap();
    let mut records = Vec::new();
    loop {
        let result = c.run(c.client().get_records(&iterator, None)).unwrap();
        let empty = result.records.is_empty();
        records.extend(result.records);
        match result.next_iterator {
            None => return (records, result.child_shards),
            Some(next) if empty && result.millis_behind_latest == 0 => {
                // Caught up on an open shard.
                let _ = next;
                return (records, Vec::new());
            }
            Some(next) => iterator = next,
        }
    }
}

fn text(record: &StreamRecord) -> String {
    String::from_utf8(record.data.to_vec()).unwrap()
}

fn seq(record: &StreamRecord) -> u128 {
    record.sequence_number.parse().unwrap()
}

#[test]
fn records_route_by_md5_of_the_partition_key_over_two_cores_in_order() {
    let daemon = Daemon::start();
    let c0 = daemon.client_on_shard(0);
    let c1 = daemon.client_on_shard(1);
    c0.run(c0.client().create_stream("clicks", 4)).unwrap();
    let description = c1.run(c1.client().describe_stream("clicks")).unwrap();
    assert_eq!(description.shards.len(), 4);
    assert_eq!(description.open_shard_count, 4);
    let ranges: Vec<(String, u128, u128)> = description
        .shards
        .iter()
        .map(|s| (s.shard_id.clone(), s.starting_hash_key.parse().unwrap(), s.ending_hash_key.parse().unwrap()))
        .collect();
    assert_eq!(ranges[0].1, 0);
    assert_eq!(ranges[3].2, u128::MAX);
    // AWS's example: "pk" hashes to this.
    assert_eq!(hash_key("pk"), 38317986088707300215492326132921849533);

    // 40 keys, 10 records each, put from both cores in batches; the shard each lands on is
    // the one whose range holds the key's MD5.
    let keys: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for round in 0..10 {
        let c = if round % 2 == 0 { &c0 } else { &c1 };
        let batch: Vec<PutRecordsEntry> = keys.iter().map(|k| record(k, &format!("{k}#{round}"))).collect();
        let results = put_all(c, "clicks", batch);
        for (key, (shard_id, _)) in keys.iter().zip(&results) {
            let hash = hash_key(key);
            let owner = ranges.iter().find(|(_, start, end)| (*start..=*end).contains(&hash)).unwrap();
            assert_eq!(shard_id, &owner.0, "key {key}");
            expected.entry(key.clone()).or_default().push(format!("{key}#{round}"));
        }
    }
    // An ExplicitHashKey overrides the partition key.
    let explicit = PutRecordsEntry { explicit_hash_key: Some(u128::MAX.to_string()), ..record("user-0", "explicit") };
    let results = put_all(&c0, "clicks", vec![explicit]);
    assert_eq!(results[0].0, "shardId-000000000003");

    // Each shard reads back in put order with increasing sequence numbers, every record once.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (shard_id, _, _) in &ranges {
        let (records, _) = read_shard(&c1, "clicks", shard_id, position("TRIM_HORIZON"));
        for pair in records.windows(2) {
            assert!(seq(&pair[0]) < seq(&pair[1]), "sequence numbers increase within {shard_id}");
        }
        for r in records.iter().filter(|r| text(r) != "explicit") {
            seen.entry(r.partition_key.clone()).or_default().push(text(r));
        }
    }
    assert_eq!(seen, expected);
}

#[test]
fn every_iterator_type_and_paging() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_stream("s", 1)).unwrap();
    let shard = "shardId-000000000000";
    let first = put_all(&c, "s", (0..30).map(|i| record("k", &format!("r{i}"))).collect());
    let seqs: Vec<String> = first.into_iter().map(|(_, s)| s).collect();

    // Paging: Limit 7 over 30 records, each page continuing where the last stopped.
    let mut iterator = c.run(c.client().get_shard_iterator("s", shard, position("TRIM_HORIZON"))).unwrap();
    let mut pages = Vec::new();
    loop {
        let result = c.run(c.client().get_records(&iterator, Some(7))).unwrap();
        if result.records.is_empty() {
            assert_eq!(result.millis_behind_latest, 0);
            break;
        }
        pages.push(result.records.iter().map(text).collect::<Vec<_>>());
        iterator = result.next_iterator.unwrap();
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [7, 7, 7, 7, 2]);
    assert_eq!(pages.concat(), (0..30).map(|i| format!("r{i}")).collect::<Vec<_>>());

    let at = StartingPosition { sequence_number: Some(seqs[10].clone()), ..position("AT_SEQUENCE_NUMBER") };
    let (records, _) = read_shard(&c, "s", shard, at);
    assert_eq!(text(&records[0]), "r10");
    assert_eq!(records.len(), 20);
    let after = StartingPosition { sequence_number: Some(seqs[10].clone()), ..position("AFTER_SEQUENCE_NUMBER") };
    let (records, _) = read_shard(&c, "s", shard, after);
    assert_eq!(text(&records[0]), "r11");

    // LATEST sees only what is put after the iterator was made.
    let latest = c.run(c.client().get_shard_iterator("s", shard, position("LATEST"))).unwrap();
    assert!(c.run(c.client().get_records(&latest, None)).unwrap().records.is_empty());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let boundary_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    std::thread::sleep(std::time::Duration::from_millis(20));
    put_all(&c, "s", vec![record("k", "new1"), record("k", "new2")]);
    let result = c.run(c.client().get_records(&latest, None)).unwrap();
    assert_eq!(result.records.iter().map(text).collect::<Vec<_>>(), ["new1", "new2"]);
    assert!(result.records[0].arrival_ms as i64 >= boundary_ms);

    // AT_TIMESTAMP starts at the first record that arrived at or after the time.
    let at_time = StartingPosition { timestamp_ms: Some(boundary_ms), ..position("AT_TIMESTAMP") };
    let (records, _) = read_shard(&c, "s", shard, at_time);
    assert_eq!(records.iter().map(text).collect::<Vec<_>>(), ["new1", "new2"]);
    let at_zero = StartingPosition { timestamp_ms: Some(0), ..position("AT_TIMESTAMP") };
    assert_eq!(read_shard(&c, "s", shard, at_zero).0.len(), 32);

    // A sequence number of another shard or stream is refused.
    c.run(c.client().create_stream("other", 2)).unwrap();
    let foreign = StartingPosition { sequence_number: Some(seqs[0].clone()), ..position("AT_SEQUENCE_NUMBER") };
    assert_code(c.run(c.client().get_shard_iterator("other", shard, foreign)), ErrorCode::InvalidArgument);
    let missing = position("AT_SEQUENCE_NUMBER");
    assert_code(c.run(c.client().get_shard_iterator("s", shard, missing)), ErrorCode::InvalidArgument);
    assert_code(c.run(c.client().get_shard_iterator("s", shard, position("SOMEWHERE"))), ErrorCode::Validation);
}

#[test]
fn split_and_merge_keep_every_key_in_order_for_a_reader_that_follows_children() {
    let daemon = Daemon::start();
    let c0 = daemon.client_on_shard(0);
    let c1 = daemon.client_on_shard(1);
    c0.run(c0.client().create_stream("orders", 2)).unwrap();
    let keys: Vec<String> = (0..30).map(|i| format!("order-{i}")).collect();
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut round = 0;
    let mut put_round = |c: &Conn| {
        let batch: Vec<PutRecordsEntry> = keys.iter().map(|k| record(k, &format!("{k}#{round}"))).collect();
        put_all(c, "orders", batch);
        for k in &keys {
            expected.entry(k.clone()).or_default().push(format!("{k}#{round}"));
        }
        round += 1;
    };
    put_round(&c0);
    put_round(&c1);
    // Split shard 0 at a quarter of the space: children 2 and 3.
    let quarter = (u128::MAX / 4 + 1).to_string();
    c1.run(c1.client().split_shard("orders", "shardId-000000000000", &quarter)).unwrap();
    put_round(&c0);
    put_round(&c1);
    // Merge child 3 with shard 1 (adjacent): child 4.
    c0.run(c0.client().merge_shards("orders", "shardId-000000000003", "shardId-000000000001")).unwrap();
    put_round(&c1);
    // Scale 2 -> 4 uniformly.
    let reply = c0
        .run(c0.client().call(Op::UpdateShardCount {
            stream: "orders".into(),
            target_shard_count: 4,
            scaling_type: Some("UNIFORM_SCALING".into()),
        }))
        .unwrap();
    assert!(matches!(reply, Reply::ShardCount { current_shard_count: 2, target_shard_count: 4, .. }), "{reply:?}");
    put_round(&c0);

    let description = c1.run(c1.client().describe_stream("orders")).unwrap();
    assert_eq!(description.open_shard_count, 4);
    let closed: Vec<&ShardDescription> = description.shards.iter().filter(|s| s.ending_sequence_number.is_some()).collect();
    assert!(closed.iter().any(|s| s.shard_id == "shardId-000000000000"));
    let child4 = description.shards.iter().find(|s| s.shard_id == "shardId-000000000004").unwrap();
    assert_eq!(child4.parent_shard_id.as_deref(), Some("shardId-000000000003"));
    assert_eq!(child4.adjacent_parent_shard_id.as_deref(), Some("shardId-000000000001"));
    // Open shards still cover the whole hash-key space.
    let mut open: Vec<(u128, u128)> = description
        .shards
        .iter()
        .filter(|s| s.ending_sequence_number.is_none())
        .map(|s| (s.starting_hash_key.parse().unwrap(), s.ending_hash_key.parse().unwrap()))
        .collect();
    open.sort();
    assert_eq!(open[0].0, 0);
    assert_eq!(open.last().unwrap().1, u128::MAX);
    for pair in open.windows(2) {
        assert_eq!(pair[0].1 + 1, pair[1].0);
    }

    // A reader that starts at TRIM_HORIZON of the roots, reads each shard to its end, and
    // moves on to a child only once all of its parents are read, sees every key in order.
    let mut done: Vec<String> = Vec::new();
    let mut ready: Vec<String> = vec!["shardId-000000000000".into(), "shardId-000000000001".into()];
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while let Some(shard) = ready.pop() {
        let (records, children) = read_shard(&c0, "orders", &shard, position("TRIM_HORIZON"));
        for r in &records {
            seen.entry(r.partition_key.clone()).or_default().push(text(r));
        }
        done.push(shard);
        for child in children {
            if child.parent_shards.iter().all(|p| done.contains(p)) && !ready.contains(&child.shard_id) && !done.contains(&child.shard_id) {
                ready.push(child.shard_id);
            }
        }
    }
    assert_eq!(seen, expected);

    // ListShards filters: AT_LATEST lists only the open shards.
    let (latest, _) = c0
        .run(c0.client().list_shards(ListShards {
            stream: Some("orders".into()),
            filter_type: Some("AT_LATEST".into()),
            ..ListShards::default()
        }))
        .unwrap();
    assert_eq!(latest.len(), 4);
    assert!(latest.iter().all(|s| s.ending_sequence_number.is_none()));
    // Pages of 3 with a token cover every shard once.
    let mut all = Vec::new();
    let mut list = ListShards { stream: Some("orders".into()), max_results: Some(3), ..ListShards::default() };
    loop {
        let (shards, token) = c1.run(c1.client().list_shards(list)).unwrap();
        all.extend(shards.into_iter().map(|s| s.shard_id));
        match token {
            Some(token) => list = ListShards { next_token: Some(token), max_results: Some(3), ..ListShards::default() },
            None => break,
        }
    }
    assert_eq!(all, description.shards.iter().map(|s| s.shard_id.clone()).collect::<Vec<_>>());

    // Resharding rules.
    assert_code(c0.run(c0.client().split_shard("orders", "shardId-000000000000", "5")), ErrorCode::ResourceInUse);
    assert_code(c0.run(c0.client().split_shard("orders", "shardId-000000000002", "0")), ErrorCode::InvalidArgument);
    assert_code(c0.run(c0.client().split_shard("orders", "shardId-000000000099", "5")), ErrorCode::ResourceNotFound);
    let open_ids: Vec<String> = latest.iter().map(|s| s.shard_id.clone()).collect();
    assert_code(c0.run(c0.client().merge_shards("orders", &open_ids[0], &open_ids[3])), ErrorCode::InvalidArgument);
    let too_many = Op::UpdateShardCount { stream: "orders".into(), target_shard_count: 9, scaling_type: None };
    assert_code(c0.run(c0.client().call(too_many)), ErrorCode::InvalidArgument);
    let on_demand = Op::CreateStream {
        name: "auto".into(),
        shard_count: None,
        mode: Some("ON_DEMAND".into()),
        tags: vec![],
        max_record_size_kib: None,
    };
    c0.run(c0.client().call(on_demand)).unwrap();
    assert_code(c0.run(c0.client().split_shard("auto", "shardId-000000000000", "5")), ErrorCode::Validation);
}

#[test]
fn push_subscription_receives_live_records_and_ends_at_a_closed_shard() {
    let daemon = Daemon::start();
    let c = daemon.client_on_shard(0);
    c.run(c.client().create_stream("live", 1)).unwrap();
    let stream_arn = c.run(c.client().describe_stream("live")).unwrap().arn;
    let consumer = c.run(c.client().register_stream_consumer(&stream_arn, "app")).unwrap();
    assert!(consumer.arn.starts_with(&format!("{stream_arn}/consumer/app:")));
    assert_code(c.run(c.client().register_stream_consumer(&stream_arn, "app")), ErrorCode::ResourceInUse);
    put_all(&c, "live", vec![record("k", "before")]);

    // A subscription on the other core's connection, from TRIM_HORIZON.
    let push = daemon.client_on_shard(1);
    let mut subscription =
        push.run(push.client().subscribe_to_shard(&consumer.arn, "shardId-000000000000", position("TRIM_HORIZON"))).unwrap();
    let mut got: Vec<String> = Vec::new();
    let mut next_event = |got: &mut Vec<String>| {
        let event = push.run(subscription.next()).expect("an event").unwrap();
        got.extend(event.records.iter().map(text));
        event
    };
    while got.is_empty() {
        next_event(&mut got);
    }
    assert_eq!(got, ["before"]);
    // A second subscription of the same consumer to the same shard within 5 s is refused.
    let second = daemon.client();
    let mut again = second.run(second.client().subscribe_to_shard(&consumer.arn, "shardId-000000000000", position("LATEST"))).unwrap();
    match second.run(again.next()) {
        Some(Err(ClientError::Server(error))) => assert_eq!(error.code, ErrorCode::ResourceInUse),
        other => panic!("expected ResourceInUse, got {other:?}"),
    }
    // Records put now arrive without asking.
    put_all(&c, "live", vec![record("k", "live1"), record("k", "live2")]);
    while got.len() < 3 {
        let event = next_event(&mut got);
        assert!(!event.continuation_sequence_number.is_empty());
    }
    assert_eq!(got, ["before", "live1", "live2"]);
    // Splitting the shard ends the subscription with the children named.
    c.run(c.client().split_shard("live", "shardId-000000000000", &(1u128 << 127).to_string())).unwrap();
    loop {
        let event = next_event(&mut got);
        if !event.child_shards.is_empty() {
            assert_eq!(event.child_shards.len(), 2);
            break;
        }
    }
    assert!(push.run(subscription.next()).is_none(), "the subscription ends after the children are named");

    let unknown = push.run(push.client().subscribe_to_shard(
        "arn:aws:kinesis:us-east-1:000000000000:stream/live/consumer/nobody:1",
        "shardId-000000000000",
        position("LATEST"),
    ));
    let mut unknown = unknown.unwrap();
    match push.run(unknown.next()) {
        Some(Err(ClientError::Server(error))) => assert_eq!(error.code, ErrorCode::ResourceNotFound),
        other => panic!("expected ResourceNotFound, got {other:?}"),
    }
    // Deleting a stream with consumers needs EnforceConsumerDeletion.
    let refuse = Op::DeleteStream { stream: "live".into(), enforce_consumer_deletion: false };
    assert_code(c.run(c.client().call(refuse)), ErrorCode::ResourceInUse);
    c.run(c.client().delete_stream("live")).unwrap();
}

#[test]
fn bad_input_gets_kinesis_errors() {
    let daemon = Daemon::start();
    let c = daemon.client();
    assert_code(c.run(c.client().put_record("nope", "k", "x")), ErrorCode::ResourceNotFound);
    assert_code(c.run(c.client().describe_stream("nope")), ErrorCode::ResourceNotFound);
    c.run(c.client().create_stream("s", 2)).unwrap();
    assert_code(c.run(c.client().create_stream("s", 2)), ErrorCode::ResourceInUse);
    assert_code(c.run(c.client().create_stream("bad name!", 1)), ErrorCode::Validation);
    assert_code(c.run(c.client().create_stream("zero", 0)), ErrorCode::Validation);
    assert_code(c.run(c.client().create_stream("huge", 100_000)), ErrorCode::LimitExceeded);
    assert_code(c.run(c.client().get_shard_iterator("s", "shardId-000000000007", position("LATEST"))), ErrorCode::ResourceNotFound);
    assert_code(c.run(c.client().get_shard_iterator("s", "shard-7", position("LATEST"))), ErrorCode::ResourceNotFound);
    assert_code(c.run(c.client().get_records("not an iterator", None)), ErrorCode::InvalidArgument);
    let iterator = c.run(c.client().get_shard_iterator("s", "shardId-000000000000", position("TRIM_HORIZON"))).unwrap();
    let mut damaged = iterator.clone().into_bytes();
    damaged[10] = if damaged[10] == b'a' { b'b' } else { b'a' };
    assert_code(c.run(c.client().get_records(std::str::from_utf8(&damaged).unwrap(), None)), ErrorCode::InvalidArgument);
    assert_code(c.run(c.client().get_records(&iterator, Some(10_001))), ErrorCode::InvalidArgument);
    // AFTER_SEQUENCE_NUMBER of the largest sequence number a shard can name: nothing after it,
    // not an overflow.
    let (_, first) = c.run(c.client().put_record("s", "k", "x")).unwrap();
    let shard = c
        .run(c.client().describe_stream("s"))
        .unwrap()
        .shards
        .into_iter()
        .find(|s| first.parse::<u128>().unwrap() >> 64 == s.starting_sequence_number.parse::<u128>().unwrap() >> 64);
    let shard = shard.unwrap();
    let largest = ((first.parse::<u128>().unwrap() >> 64) << 64 | u64::MAX as u128).to_string();
    let after = StartingPosition { sequence_number: Some(largest), ..position("AFTER_SEQUENCE_NUMBER") };
    let past_end = c.run(c.client().get_shard_iterator("s", &shard.shard_id, after)).unwrap();
    assert!(c.run(c.client().get_records(&past_end, None)).unwrap().records.is_empty());
    // A record over 1 MiB (data and key), an empty key, too many records, too many bytes.
    let big = PutRecordsEntry { data: Bytes::from(vec![b'x'; 1024 * 1024]), partition_key: "k".into(), explicit_hash_key: None };
    assert_code(c.run(c.client().put_records("s", vec![big])), ErrorCode::InvalidArgument);
    assert_code(c.run(c.client().put_record("s", "", "x")), ErrorCode::Validation);
    assert_code(c.run(c.client().put_records("s", (0..501).map(|_| record("k", "x")).collect())), ErrorCode::Validation);
    assert_code(c.run(c.client().put_records("s", vec![])), ErrorCode::Validation);
    let fat: Vec<PutRecordsEntry> = (0..11)
        .map(|_| PutRecordsEntry { data: Bytes::from(vec![b'x'; 1000 * 1000]), partition_key: "k".into(), explicit_hash_key: None })
        .collect();
    assert_code(c.run(c.client().put_records("s", fat)), ErrorCode::InvalidArgument);
    let bad_hash = PutRecordsEntry { explicit_hash_key: Some("340282366920938463463374607431768211456".into()), ..record("k", "x") };
    assert_code(c.run(c.client().put_records("s", vec![bad_hash])), ErrorCode::InvalidArgument);
    // Retention bounds and direction.
    let retention = |hours, increase| {
        if increase {
            Op::IncreaseStreamRetentionPeriod { stream: "s".into(), hours }
        } else {
            Op::DecreaseStreamRetentionPeriod { stream: "s".into(), hours }
        }
    };
    assert_code(c.run(c.client().call(retention(8761, true))), ErrorCode::InvalidArgument);
    assert_code(c.run(c.client().call(retention(23, false))), ErrorCode::InvalidArgument);
    c.run(c.client().call(retention(8760, true))).unwrap();
    assert_code(c.run(c.client().call(retention(48, true))), ErrorCode::InvalidArgument);
    c.run(c.client().call(retention(48, false))).unwrap();
    let Reply::StreamDescription(summary) = c.run(c.client().call(Op::DescribeStreamSummary { stream: "s".into() })).unwrap() else {
        panic!("not a description")
    };
    assert_eq!(summary.retention_hours, 48);
    // Tags.
    c.run(c.client().call(Op::AddTagsToStream { stream: "s".into(), tags: vec![kv("team", "a"), kv("env", "prod")] })).unwrap();
    c.run(c.client().call(Op::RemoveTagsFromStream { stream: "s".into(), keys: vec!["env".into()] })).unwrap();
    let reply = c.run(c.client().call(Op::ListTagsForStream { stream: "s".into(), exclusive_start_tag_key: None, limit: None })).unwrap();
    assert_eq!(reply, Reply::StreamTags { tags: vec![kv("team", "a")], has_more: false });
    let too_many_tags: Vec<(String, String)> = (0..51).map(|i| kv(&format!("k{i}"), "v")).collect();
    assert_code(c.run(c.client().call(Op::AddTagsToStream { stream: "s".into(), tags: too_many_tags })), ErrorCode::LimitExceeded);
    // The connection is still fine after all that.
    assert_eq!(c.run(c.client().list_streams()).unwrap(), ["s"]);
}

#[test]
fn acknowledged_records_and_resharding_survive_kill_and_restart() {
    let mut daemon = Daemon::start();
    let shard_count;
    {
        let c = daemon.client();
        c.run(c.client().create_stream("durable", 4)).unwrap();
        for batch in 0..5 {
            put_all(&c, "durable", (0..100).map(|i| record(&format!("key-{i}"), &format!("{batch}-{i}"))).collect());
        }
        c.run(c.client().split_shard("durable", "shardId-000000000001", &(u128::MAX / 4 + 1000).to_string())).unwrap();
        put_all(&c, "durable", (0..100).map(|i| record(&format!("key-{i}"), &format!("5-{i}"))).collect());
        shard_count = c.run(c.client().describe_stream("durable")).unwrap().shards.len();
    }
    daemon.kill();
    daemon.restart();
    let c = daemon.client();
    let description = c.run(c.client().describe_stream("durable")).unwrap();
    assert_eq!(description.shards.len(), shard_count);
    assert_eq!(description.open_shard_count, 5);
    let mut count = 0;
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for shard in &description.shards {
        let (records, _) = read_shard(&c, "durable", &shard.shard_id, position("TRIM_HORIZON"));
        count += records.len();
        for r in &records {
            per_key.entry(r.partition_key.clone()).or_default().push(text(r));
        }
    }
    assert_eq!(count, 600);
    assert_eq!(per_key.len(), 100);
    // Puts go on where they left off.
    let (shard, seq) = c.run(c.client().put_record("durable", "key-1", "after")).unwrap();
    let (records, _) = read_shard(&c, "durable", &shard, position("TRIM_HORIZON"));
    assert_eq!(records.last().map(text).as_deref(), Some("after"));
    assert_eq!(records.last().unwrap().sequence_number, seq);
}

/// Rewrites an iterator's issue time (its layout: hex of version, stream id, shard, next
/// sequence number, issue time, then their tag under the daemon's key).
fn reissued(iterator: &str, issued_ms: u64, key: &sluice_daemon::seal::SealKey) -> String {
    let mut bytes: Vec<u8> = (0..iterator.len()).step_by(2).map(|at| u8::from_str_radix(&iterator[at..at + 2], 16).unwrap()).collect();
    bytes.truncate(bytes.len() - sluice_daemon::seal::TAG_BYTES);
    let body_len = bytes.len();
    bytes[body_len - 8..].copy_from_slice(&issued_ms.to_be_bytes());
    key.seal(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn iterators_expire_after_five_minutes() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_stream("s", 1)).unwrap();
    put_all(&c, "s", vec![record("k", "x")]);
    let iterator = c.run(c.client().get_shard_iterator("s", "shardId-000000000000", position("TRIM_HORIZON"))).unwrap();
    // Only the daemon's key can reseal an iterator with another issue time (its data directory's).
    let key = sluice_daemon::seal::SealKey::load_or_create(daemon.data_dir()).unwrap();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    // Issued four minutes ago: still good, and its successor is fresh.
    let result = c.run(c.client().get_records(&reissued(&iterator, now_ms - 4 * 60_000, &key), None)).unwrap();
    assert_eq!(result.records.iter().map(text).collect::<Vec<_>>(), ["x"]);
    // Six minutes ago: expired.
    assert_code(c.run(c.client().get_records(&reissued(&iterator, now_ms - 6 * 60_000, &key), None)), ErrorCode::ExpiredIterator);
}

#[test]
fn shard_limits_apply_only_when_asked() {
    let daemon = Daemon::start_with(&["--enforce-shard-limits"]);
    let c = daemon.client();
    c.run(c.client().create_stream("s", 1)).unwrap();
    // 1,000 records/s per shard: batches of 500 put back to back meet the limit within a few
    // batches, whatever the second boundaries.
    let mut throttled = 0;
    for _ in 0..20 {
        let results = c.run(c.client().put_records("s", (0..500).map(|i| record("k", &i.to_string())).collect())).unwrap();
        for result in results {
            if let PutRecordResult::Failed(error) = result {
                assert_eq!(error.code, ErrorCode::ProvisionedThroughputExceeded);
                throttled += 1;
            }
        }
        if throttled > 0 {
            break;
        }
    }
    assert!(throttled > 0, "10,000 records in a row were all admitted");
    // GetRecords: 5 calls/s per shard.
    let iterator = c.run(c.client().get_shard_iterator("s", "shardId-000000000000", position("LATEST"))).unwrap();
    let mut refused = false;
    for _ in 0..60 {
        match c.run(c.client().get_records(&iterator, Some(1))) {
            Ok(_) => {}
            Err(ClientError::Server(error)) if error.code == ErrorCode::ProvisionedThroughputExceeded => {
                refused = true;
                break;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert!(refused, "60 GetRecords calls in a row were all admitted");

    // Without the flag, the same puts all go in.
    let free = Daemon::start();
    let c = free.client();
    c.run(c.client().create_stream("s", 1)).unwrap();
    for _ in 0..4 {
        put_all(&c, "s", (0..500).map(|i| record("k", &i.to_string())).collect());
    }
}

#[test]
fn a_subscription_whose_connection_breaks_says_so_instead_of_ending() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_stream("broken", 1)).unwrap();
    let stream_arn = c.run(c.client().describe_stream("broken")).unwrap().arn;
    let consumer = c.run(c.client().register_stream_consumer(&stream_arn, "app")).unwrap();
    let push = daemon.client();
    let mut subscription = push.run(push.client().subscribe_to_shard(&consumer.arn, "shardId-000000000000", position("LATEST"))).unwrap();
    // The first event (nothing yet) shows the subscription is live.
    assert!(matches!(push.run(subscription.next()), Some(Ok(_))));
    daemon.kill();
    // A normal end is `None` (five minutes, or a closed shard); a dead connection is an error.
    loop {
        match push.run(subscription.next()) {
            Some(Ok(_)) => continue,
            Some(Err(ClientError::Io(_) | ClientError::Disconnected)) => break,
            other => panic!("expected the connection's error, got {other:?}"),
        }
    }
}

#[test]
fn a_stream_takes_records_up_to_its_max_record_size_of_up_to_10_mib_and_keeps_them_across_restarts() {
    let mut daemon = Daemon::start_with(&["--stream-segment-bytes", "33554432", "--enforce-shard-limits"]);
    let c = daemon.client();
    let create = |name: &str, kib: Option<i32>| {
        let op = Op::CreateStream { name: name.into(), shard_count: Some(1), mode: None, tags: vec![], max_record_size_kib: kib };
        c.run(c.client().call(op))
    };
    create("small", None).unwrap();
    create("large", Some(10 * 1024)).unwrap();
    assert_code(create("huge", Some(10 * 1024 + 1)), ErrorCode::Validation);
    assert_code(create("tiny", Some(1023)), ErrorCode::Validation);
    assert_eq!(c.run(c.client().describe_stream("small")).unwrap().max_record_size_kib, 1024);
    assert_eq!(c.run(c.client().describe_stream("large")).unwrap().max_record_size_kib, 10 * 1024);

    let big = Bytes::from(vec![b'r'; 9 << 20]);
    assert_code(c.run(c.client().put_record("small", "k", big.clone())), ErrorCode::InvalidArgument);
    // One 9 MiB record goes through alone, past the shard's 1 MiB a second (burst capacity).
    let (_, sequence) = c.run(c.client().put_record("large", "k", big.clone())).unwrap();
    let over = Bytes::from(vec![b'o'; 10 << 20]);
    assert_code(c.run(c.client().put_record("large", "k", over)), ErrorCode::InvalidArgument);

    // UpdateMaxRecordSize raises and lowers the limit of a stream.
    let arn = c.run(c.client().describe_stream("small")).unwrap().arn;
    c.run(c.client().call(Op::UpdateMaxRecordSize { stream: arn.clone(), max_record_size_kib: 4096 })).unwrap();
    c.run(c.client().put_record("small", "k", Bytes::from(vec![b's'; 3 << 20]))).unwrap();
    assert_code(c.run(c.client().call(Op::UpdateMaxRecordSize { stream: arn, max_record_size_kib: 20_000 })), ErrorCode::Validation);
    drop(c);
    for _ in 0..2 {
        assert!(daemon.terminate().success());
        daemon.restart();
    }
    let c = daemon.client();
    assert_eq!(c.run(c.client().describe_stream("small")).unwrap().max_record_size_kib, 4096, "kept across restarts");
    // One read (with the shard limits on, the next within seconds is throttled, as on Kinesis).
    let iterator = c.run(c.client().get_shard_iterator("large", "shardId-000000000000", position("TRIM_HORIZON"))).unwrap();
    let records = c.run(c.client().get_records(&iterator, None)).unwrap().records;
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].sequence_number.as_str(), records[0].data.len()), (sequence.as_str(), 9 << 20));
    assert!(records[0].data.iter().all(|b| *b == b'r'));
}

#[test]
fn a_max_record_size_that_does_not_fit_a_log_segment_is_refused_with_the_flag_to_raise() {
    let daemon = Daemon::start_with(&["--stream-segment-bytes", "4194304"]);
    let c = daemon.client();
    let op = Op::CreateStream { name: "s".into(), shard_count: Some(1), mode: None, tags: vec![], max_record_size_kib: Some(8192) };
    match c.run(c.client().call(op)) {
        Err(ClientError::Server(error)) => {
            assert_eq!(error.code, ErrorCode::InvalidArgument);
            assert!(error.message.contains("--stream-segment-bytes"), "{}", error.message);
        }
        other => panic!("{other:?}"),
    }
}

/// Open shards of a stream, in hash-key order, and every shard it has.
fn shards_of(c: &Conn, stream: &str) -> (Vec<ShardDescription>, Vec<ShardDescription>) {
    let description = c.run(c.client().describe_stream(stream)).unwrap();
    let mut open: Vec<ShardDescription> = description.shards.iter().filter(|s| s.ending_sequence_number.is_none()).cloned().collect();
    open.sort_by_key(|s| s.starting_hash_key.parse::<u128>().unwrap());
    (open, description.shards)
}

/// Every record of every shard of `stream`, as text.
fn every_record(c: &Conn, stream: &str) -> Vec<String> {
    let (_, all) = shards_of(c, stream);
    let mut texts: Vec<String> =
        all.iter().flat_map(|s| read_shard(c, stream, &s.shard_id, position("TRIM_HORIZON")).0).map(|r| text(&r)).collect();
    texts.sort();
    texts
}

#[test]
fn an_on_demand_stream_splits_a_hot_shard_merges_quiet_ones_and_keeps_every_record_across_restarts() {
    let mut daemon = Daemon::start_with(&["--on-demand-evaluation-seconds", "1"]);
    let mut acknowledged = Vec::new();
    let c = daemon.client();
    let create =
        Op::CreateStream { name: "od".into(), shard_count: None, mode: Some("ON_DEMAND".into()), tags: vec![], max_record_size_kib: None };
    c.run(c.client().call(create)).unwrap();
    let (open, _) = shards_of(&c, "od");
    assert_eq!(open.len(), 4);
    // Load on the lowest shard only (hash key 0) — past half its capacity — until the scaler splits it.
    let hot = open[0].shard_id.clone();
    let payload = "x".repeat(1000);
    let mut batch = 0;
    let split = loop {
        assert!(batch < 2_000, "no split after {batch} batches of 500 KB to one shard");
        let records: Vec<PutRecordsEntry> = (0..500)
            .map(|i| PutRecordsEntry {
                data: Bytes::from(format!("{batch}-{i}-{payload}")),
                partition_key: "k".into(),
                explicit_hash_key: Some("0".into()),
            })
            .collect();
        put_all(&c, "od", records);
        acknowledged.extend((0..500).map(|i| format!("{batch}-{i}-{payload}")));
        batch += 1;
        let (open, all) = shards_of(&c, "od");
        if open.len() > 4 {
            break all;
        }
    };
    // The hot shard was closed, and its two children split its range at the middle.
    let children: Vec<&ShardDescription> = split.iter().filter(|s| s.parent_shard_id.as_deref() == Some(hot.as_str())).collect();
    assert_eq!(children.len(), 2, "{split:?}");
    assert!(split.iter().any(|s| s.shard_id == hot && s.ending_sequence_number.is_some()));
    // Splitting by hand is still refused: the stream scales itself.
    let by_hand = c.run(c.client().split_shard("od", &children[0].shard_id, "1"));
    assert_code(by_hand, ErrorCode::Validation);
    // Quiet: neighbours under a tenth of their capacity for three periods are merged, down to four.
    let mut waited = 0;
    let merged = loop {
        let (open, all) = shards_of(&c, "od");
        if open.len() == 4 {
            break all;
        }
        assert!(waited < 600, "no merge back to 4 shards after {waited} checks: {open:?}");
        waited += 1;
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(merged.iter().any(|s| s.adjacent_parent_shard_id.is_some()), "{merged:?}");
    acknowledged.sort();
    assert_eq!(every_record(&c, "od"), acknowledged);

    // Switching modes: to PROVISIONED keeps the shards and allows resharding by hand; a third
    // switch within a day is refused.
    let arn = c.run(c.client().describe_stream("od")).unwrap().arn;
    let switch = |mode: &str| c.run(c.client().call(Op::UpdateStreamMode { stream: arn.clone(), mode: mode.into() }));
    assert_code(switch("ON_DEMAND"), ErrorCode::ResourceInUse);
    switch("PROVISIONED").unwrap();
    let description = c.run(c.client().describe_stream("od")).unwrap();
    assert_eq!((description.mode.as_str(), description.open_shard_count), ("PROVISIONED", 4));
    c.run(c.client().call(Op::UpdateShardCount { stream: "od".into(), target_shard_count: 8, scaling_type: None })).unwrap();
    switch("ON_DEMAND").unwrap();
    assert_code(switch("PROVISIONED"), ErrorCode::LimitExceeded);
    assert_code(switch("SOMETIMES"), ErrorCode::Validation);
    let shards_before = shards_of(&c, "od").1.len();
    drop(c);

    // Restarts, after kill -9 and clean, keep the mode, its switches, the shards and every record.
    daemon.kill();
    daemon.restart();
    for round in 0..2 {
        let c = daemon.client();
        let description = c.run(c.client().describe_stream("od")).unwrap();
        assert_eq!(description.mode, "ON_DEMAND", "round {round}");
        assert!(shards_of(&c, "od").1.len() >= shards_before);
        assert_eq!(every_record(&c, "od"), acknowledged, "round {round}");
        assert_code(
            c.run(c.client().call(Op::UpdateStreamMode { stream: arn.clone(), mode: "PROVISIONED".into() })),
            ErrorCode::LimitExceeded,
        );
        drop(c);
        daemon.restart();
    }
}
