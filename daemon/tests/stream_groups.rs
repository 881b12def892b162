//! Stream consumer groups through a real daemon and the client library's `GroupMember`: three
//! members share eight shards evenly; one is killed (it stops without giving anything back) and
//! its shards go to the others once its leases run out; no shard is ever held by two members at
//! once; a shard split meanwhile is read parent first, so each key's records come in order;
//! checkpoints survive kill -9 and a clean restart, and a member after them starts where the
//! group left off. Then the same through `sluice stream consume` processes, one killed with -9.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::blocking::BlockingClient;
use sluice_client::group::GroupMember;
use sluice_client::*;
use sluice_testkit::*;

/// The lease time the daemons here run with.
const LEASE: Duration = Duration::from_secs(2);

/// What the members saw, shared by their threads.
#[derive(Default)]
struct Seen {
    /// (shard, worker, from, until): while the worker was entitled to process the shard — from
    /// when the heartbeat granting it answered until that heartbeat's deadline, or until the
    /// next heartbeat was sent if that one no longer granted it (the member gave it back then).
    holds: Vec<(String, String, Instant, Instant)>,
    /// Record data in the order processed (with repeats: delivery is at least once).
    processed: Vec<String>,
}

/// One member's loop, until `stop` (leaving the group) or `die` (just stopping).
fn member(
    addr: std::net::SocketAddr,
    consumer: String,
    worker: String,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    die: Arc<AtomicBool>,
) {
    let connection = BlockingClient::connect(addr, &worker).unwrap();
    let mut member = GroupMember::new(connection.client().clone(), &consumer, &worker);
    let mut next_beat = Instant::now();
    let mut held: BTreeSet<String> = BTreeSet::new();
    loop {
        if die.load(Ordering::SeqCst) {
            return;
        }
        if stop.load(Ordering::SeqCst) {
            connection.block_on(member.leave()).unwrap();
            return;
        }
        if Instant::now() >= next_beat {
            // Nothing is processed while the heartbeat is out: a shard it no longer grants was
            // last processed before it was sent.
            let sent = Instant::now();
            let shards = connection.block_on(member.heartbeat()).unwrap();
            let answered = Instant::now();
            let mut seen = seen.lock().unwrap();
            for gone in held.iter().filter(|shard| !shards.contains(shard)) {
                for hold in seen.holds.iter_mut().filter(|hold| &hold.0 == gone && hold.1 == worker) {
                    hold.3 = hold.3.min(sent);
                }
            }
            for shard in &shards {
                let until = member.deadline(shard).unwrap();
                seen.holds.push((shard.clone(), worker.clone(), answered, until));
            }
            held = shards.into_iter().collect();
            next_beat = Instant::now() + member.renew_every();
        }
        let mut read_any = false;
        for shard in member.shards() {
            let batch = match connection.block_on(member.read(&shard, Some(100))) {
                Ok(batch) => batch,
                Err(error) if error.code() == Some(ErrorCode::LeaseLost) => continue,
                Err(error) => panic!("{worker} reading {shard}: {error}"),
            };
            read_any |= !batch.records.is_empty();
            seen.lock().unwrap().processed.extend(batch.records.iter().map(|r| String::from_utf8(r.data.to_vec()).unwrap()));
            let done = match batch.records.last() {
                Some(last) => connection.block_on(member.checkpoint(&shard, &last.sequence_number)),
                None => Ok(()),
            };
            match done.and_then(|()| if batch.ended { connection.block_on(member.finish(&shard)) } else { Ok(()) }) {
                Ok(()) => {}
                Err(error) if error.code() == Some(ErrorCode::LeaseLost) => {}
                Err(error) => panic!("{worker} checkpointing {shard}: {error}"),
            }
        }
        if !read_any {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn put(c: &Conn, stream: &str, keys: std::ops::Range<u32>, round: u32) {
    let records: Vec<PutRecordsEntry> = keys
        .map(|key| PutRecordsEntry {
            data: Bytes::from(format!("k{key}:{round}")),
            partition_key: format!("k{key}"),
            explicit_hash_key: None,
        })
        .collect();
    for result in c.run(c.client().put_records(stream, records)).unwrap() {
        assert!(matches!(result, PutRecordResult::Put { .. }), "{result:?}");
    }
}

fn describe(c: &Conn, consumer: &str) -> ShardLeases {
    match c.run(c.client().call(Op::DescribeConsumerGroup { consumer_arn: consumer.into() })).unwrap() {
        Reply::ShardLeases(leases) => leases,
        other => panic!("DescribeConsumerGroup answered {other:?}"),
    }
}

/// Shards held, by worker.
fn holders(group: &ShardLeases) -> BTreeMap<String, usize> {
    let mut held = BTreeMap::new();
    for lease in &group.leases {
        if let Some(worker) = &lease.worker {
            *held.entry(worker.clone()).or_default() += 1;
        }
    }
    held
}

/// Waits (polling; no timing is asserted) until `done`, for at most `patience`.
fn wait_until(what: &str, patience: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each record data `k<key>:<round>` processed, first occurrences in order per key.
fn in_order_per_key(processed: &[String]) -> bool {
    let mut last: BTreeMap<&str, u32> = BTreeMap::new();
    let mut firsts = BTreeSet::new();
    for data in processed {
        if !firsts.insert(data.as_str()) {
            continue;
        }
        let (key, round) = data.split_once(':').unwrap();
        let round: u32 = round.parse().unwrap();
        if last.get(key).is_some_and(|before| *before > round) {
            eprintln!("{key}: round {round} after {}", last[key]);
            return false;
        }
        last.insert(key, round);
    }
    true
}

#[test]
fn three_members_share_eight_shards_one_dies_the_others_take_over_and_checkpoints_survive_restarts() {
    let lease_seconds = LEASE.as_secs().to_string();
    let mut daemon = Daemon::start_with(&["--stream-lease-seconds", &lease_seconds]);
    let c = daemon.client();
    c.run(c.client().create_stream("events", 8)).unwrap();
    let stream_arn = c.run(c.client().describe_stream("events")).unwrap().arn;
    let consumer = c.run(c.client().register_stream_consumer(&stream_arn, "billing")).unwrap().arn;
    put(&c, "events", 0..200, 0);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let dies: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let start = |i: usize| {
        let (consumer, seen, stop, die) = (consumer.clone(), seen.clone(), stop.clone(), dies[i].clone());
        let addr = daemon.addr;
        std::thread::spawn(move || member(addr, consumer, format!("w{i}"), seen, stop, die))
    };
    // Two members first: four shards each. Then a third asks for its share: 3, 3 and 2.
    let mut threads = vec![start(0), start(1)];
    wait_until("two members hold 4 shards each", Duration::from_secs(60), || {
        holders(&describe(&c, &consumer)).into_values().collect::<Vec<usize>>() == [4, 4]
    });
    threads.push(start(2));
    wait_until("three members hold 3, 3 and 2 shards", Duration::from_secs(60), || {
        let mut counts: Vec<usize> = holders(&describe(&c, &consumer)).into_values().collect();
        counts.sort();
        counts == [2, 3, 3]
    });
    assert_eq!(describe(&c, &consumer).workers, ["w0", "w1", "w2"]);
    put(&c, "events", 0..200, 1);
    // A split while they work: its children wait for the parent to be read to its end.
    let split = c.run(c.client().describe_stream("events")).unwrap().shards[3].clone();
    let middle = split.starting_hash_key.parse::<u128>().unwrap() / 2 + split.ending_hash_key.parse::<u128>().unwrap() / 2;
    c.run(c.client().split_shard("events", &split.shard_id, &middle.to_string())).unwrap();
    put(&c, "events", 0..200, 2);

    // w2 dies: it stops heartbeating and gives nothing back. Once a lease time has passed, it
    // holds nothing, and the others hold every unfinished shard between them.
    dies[2].store(true, Ordering::SeqCst);
    let killed = Instant::now();
    std::thread::sleep(LEASE);
    wait_until("w2's leases have run out", Duration::from_secs(30), || !holders(&describe(&c, &consumer)).contains_key("w2"));
    eprintln!("w2's shards were free {:?} after it died (lease time {LEASE:?})", killed.elapsed());
    put(&c, "events", 0..200, 3);
    let expected: BTreeSet<String> = (0..4).flat_map(|round| (0..200).map(move |key| format!("k{key}:{round}"))).collect();
    wait_until("every record is processed", Duration::from_secs(120), || {
        let seen = seen.lock().unwrap();
        expected.iter().all(|data| seen.processed.contains(data))
    });
    let group = describe(&c, &consumer);
    assert_eq!(group.workers, ["w0", "w1"]);
    let held = holders(&group);
    assert_eq!(held.values().sum::<usize>(), 9, "the 7 open shards of the first 8 and the 2 children: {group:?}");
    assert!(held.values().all(|count| (4..=5).contains(count)), "{held:?}");
    // The parent is finished; every shard read has a checkpoint.
    let parent = group.leases.iter().find(|lease| lease.shard_id == split.shard_id).unwrap();
    assert_eq!(parent.checkpoint.as_deref(), Some(SHARD_END));
    assert!(group.leases.iter().all(|lease| lease.checkpoint.is_some()), "{group:?}");

    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().unwrap();
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    // No shard was ever held by two members at once.
    let mut by_shard: BTreeMap<&str, Vec<(&str, Instant, Instant)>> = BTreeMap::new();
    for (shard, worker, from, until) in &seen.holds {
        by_shard.entry(shard).or_default().push((worker, *from, *until));
    }
    for (shard, holds) in &by_shard {
        for a in holds {
            for b in holds.iter().filter(|b| b.0 != a.0) {
                assert!(a.2 <= b.1 || b.2 <= a.1, "{shard}: {} held it {:?}–{:?} and {} {:?}–{:?}", a.0, a.1, a.2, b.0, b.1, b.2);
            }
        }
    }
    assert!(in_order_per_key(&seen.processed), "a key's records came out of order");
    // Having left, the members hold nothing.
    assert!(holders(&describe(&c, &consumer)).is_empty());
    let checkpoints: Vec<Option<String>> = describe(&c, &consumer).leases.into_iter().map(|lease| lease.checkpoint).collect();
    drop(c);

    // Checkpoints survive kill -9 and a clean restart; a member afterwards reads only what came after.
    daemon.kill();
    daemon.restart();
    let c = daemon.client();
    assert_eq!(describe(&c, &consumer).leases.into_iter().map(|lease| lease.checkpoint).collect::<Vec<_>>(), checkpoints);
    drop(c);
    daemon.restart();
    let c = daemon.client();
    assert_eq!(describe(&c, &consumer).leases.into_iter().map(|lease| lease.checkpoint).collect::<Vec<_>>(), checkpoints);
    put(&c, "events", 0..200, 4);
    let connection = BlockingClient::connect(daemon.addr, "after").unwrap();
    let mut member = GroupMember::new(connection.client().clone(), &consumer, "after");
    let mut got = Vec::new();
    wait_until("the member after the restarts reads the new round", Duration::from_secs(60), || {
        connection.block_on(member.heartbeat()).unwrap();
        for shard in member.shards() {
            let batch = connection.block_on(member.read(&shard, None)).unwrap();
            got.extend(batch.records.iter().map(|r| String::from_utf8(r.data.to_vec()).unwrap()));
            if batch.ended {
                connection.block_on(member.finish(&shard)).unwrap();
            }
        }
        got.len() >= 200
    });
    got.sort();
    let fresh: Vec<String> = {
        let mut fresh: Vec<String> = (0..200).map(|key| format!("k{key}:4")).collect();
        fresh.sort();
        fresh
    };
    assert_eq!(got, fresh, "only the records after the checkpoints");
}

#[test]
fn group_errors_are_typed() {
    let daemon = Daemon::start_with(&["--stream-lease-seconds", "1"]);
    let c = daemon.client();
    c.run(c.client().create_stream("s", 1)).unwrap();
    let stream_arn = c.run(c.client().describe_stream("s")).unwrap().arn;
    let consumer = c.run(c.client().register_stream_consumer(&stream_arn, "g")).unwrap().arn;
    let lease =
        |worker: &str| c.run(c.client().call(Op::LeaseShards { consumer_arn: consumer.clone(), worker: worker.into(), max_leases: None }));
    assert_code(lease(""), ErrorCode::InvalidArgument);
    let missing = Op::LeaseShards { consumer_arn: format!("{stream_arn}/consumer/nobody:1"), worker: "w".into(), max_leases: None };
    assert_code(c.run(c.client().call(missing)), ErrorCode::ResourceNotFound);
    let checkpoint = |token: u64, sequence_number: &str| {
        c.run(c.client().call(Op::CheckpointShard {
            consumer_arn: consumer.clone(),
            worker: "w".into(),
            shard_id: "shardId-000000000000".into(),
            token,
            sequence_number: sequence_number.into(),
        }))
    };
    assert_code(checkpoint(1, "1"), ErrorCode::LeaseLost);
    // Once granted (after the first lease time of the start), a checkpoint needs the right
    // token and a sequence number of the shard.
    let token = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Reply::ShardLeases(leases) = lease("w").unwrap() {
                if let Some(lease) = leases.leases.first() {
                    break lease.token;
                }
            }
            assert!(Instant::now() < deadline, "no lease granted");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_code(checkpoint(token + 1, "1"), ErrorCode::LeaseLost);
    assert_code(checkpoint(token, "not-a-number"), ErrorCode::InvalidArgument);
    assert_code(checkpoint(token, SHARD_END), ErrorCode::InvalidArgument);
    let (_, seq) = c.run(c.client().put_record("s", "k", "x")).unwrap();
    checkpoint(token, &seq).unwrap();
    // Deregistering the consumer removes the group.
    let deregister = ConsumerRef { consumer_arn: Some(consumer.clone()), ..ConsumerRef::default() };
    c.run(c.client().call(Op::DeregisterStreamConsumer(deregister))).unwrap();
    assert_code(checkpoint(token, &seq), ErrorCode::ResourceNotFound);
}
