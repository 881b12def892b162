//! Restarting the daemon many times, as supervisors and operators do: stopped with SIGTERM
//! or killed with SIGKILL, with and without writes in between. After every start, every
//! acknowledged stream record and queue message is read back, and a stream's sequence
//! numbers are never handed out twice. Also: a first start from a fresh working directory
//! with a relative data directory, and a restart on the same port right after `kill -9`.
//!
//! Rounds: `SLUICE_RESTART_ROUNDS` (default 4, which CI runs). For a soak:
//! `SLUICE_RESTART_ROUNDS=100 cargo test -p sluice-daemon --test restarts`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use sluice_client::*;
use sluice_testkit::*;

fn rounds() -> usize {
    std::env::var("SLUICE_RESTART_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(4).max(3)
}

/// Stops the daemon the way round `round` calls for (SIGTERM on even rounds, SIGKILL on odd
/// ones) and starts it again on the same data directory.
fn stop_and_start(daemon: &mut Daemon, round: usize) {
    if round.is_multiple_of(2) {
        let status = daemon.terminate();
        assert!(status.success(), "sluiced did not exit cleanly on SIGTERM: {status}");
    } else {
        daemon.kill();
    }
    daemon.restart();
}

/// Every record of every shard of `stream`, by shard: (sequence number, data).
fn read_stream(c: &Conn, stream: &str) -> BTreeMap<String, Vec<(u128, String)>> {
    let description = c.run(c.client().describe_stream(stream)).unwrap();
    let mut shards = BTreeMap::new();
    for shard in &description.shards {
        let mut iterator = c.run(c.client().get_shard_iterator(stream, &shard.shard_id, StartingPosition::new("TRIM_HORIZON"))).unwrap();
        let mut records = Vec::new();
        loop {
            let result = c.run(c.client().get_records(&iterator, None)).unwrap();
            let empty = result.records.is_empty();
            for record in result.records {
                records.push((record.sequence_number.parse::<u128>().unwrap(), String::from_utf8(record.data.to_vec()).unwrap()));
            }
            match result.next_iterator {
                Some(next) if !(empty && result.millis_behind_latest == 0) => iterator = next,
                _ => break,
            }
        }
        shards.insert(shard.shard_id.clone(), records);
    }
    shards
}

/// Puts `count` records with the given partition keys; adds what was acknowledged to `model`.
fn put(c: &Conn, stream: &str, keys: &[String], tag: &str, model: &mut BTreeMap<String, Vec<(u128, String)>>) {
    let entries: Vec<PutRecordsEntry> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| PutRecordsEntry { data: Bytes::from(format!("{tag}-{i}")), partition_key: key.clone(), explicit_hash_key: None })
        .collect();
    let results = c.run(c.client().put_records(stream, entries)).unwrap();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            PutRecordResult::Put { shard_id, sequence_number } => {
                model.entry(shard_id).or_default().push((sequence_number.parse().unwrap(), format!("{tag}-{i}")))
            }
            PutRecordResult::Failed(error) => panic!("record {i} of {tag} failed: {error}"),
        }
    }
}

fn assert_stream_matches(c: &Conn, stream: &str, model: &BTreeMap<String, Vec<(u128, String)>>, when: &str) {
    let found = read_stream(c, stream);
    for (shard, expected) in model {
        let got = found.get(shard).cloned().unwrap_or_default();
        assert_eq!(got.len(), expected.len(), "{stream} {shard} {when}: {} records read back, {} acknowledged", got.len(), expected.len());
        assert_eq!(&got, expected, "{stream} {shard} {when}: records differ from those acknowledged");
    }
}

#[test]
fn stream_records_survive_many_restarts_with_and_without_writes() {
    let mut daemon = Daemon::start();
    // One stream of one shard (the first report: 20 records, two restarts, nothing left) and
    // one of four (three shards idle while a fourth is written).
    let mut single = BTreeMap::new();
    let mut four = BTreeMap::new();
    let many_keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    let one_key = vec!["only-this-key".to_owned(); 10];
    {
        let c = daemon.client();
        c.run(c.client().create_stream("one", 1)).unwrap();
        c.run(c.client().create_stream("four", 4)).unwrap();
        put(&c, "one", &many_keys[..20], "start", &mut single);
        put(&c, "four", &many_keys, "start", &mut four);
    }
    for round in 0..rounds() {
        stop_and_start(&mut daemon, round);
        let c = daemon.client();
        let when = format!("after restart {}", round + 1);
        assert_stream_matches(&c, "one", &single, &when);
        assert_stream_matches(&c, "four", &four, &when);
        // Writes on every third round only: two restarts in a row without any.
        if round % 3 == 2 {
            put(&c, "one", &many_keys[..5], &format!("round{round}"), &mut single);
            put(&c, "four", &one_key, &format!("round{round}"), &mut four);
            assert_stream_matches(&c, "four", &four, &format!("{when}, after writing"));
        }
    }
    // A put after it all gets a sequence number above every earlier one of its shard.
    let c = daemon.client();
    for stream in ["one", "four"] {
        let before = read_stream(&c, stream);
        for (shard, records) in &before {
            let last = records.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
            let description = c.run(c.client().describe_stream(stream)).unwrap();
            let start_key = description.shards.iter().find(|s| &s.shard_id == shard).unwrap().starting_hash_key.clone();
            let (shard_id, seq) = c
                .run(c.client().put_records(
                    stream,
                    vec![PutRecordsEntry {
                        data: Bytes::from_static(b"last"),
                        partition_key: "k".into(),
                        explicit_hash_key: Some(start_key),
                    }],
                ))
                .unwrap()
                .into_iter()
                .map(|result| match result {
                    PutRecordResult::Put { shard_id, sequence_number } => (shard_id, sequence_number.parse::<u128>().unwrap()),
                    PutRecordResult::Failed(error) => panic!("{error}"),
                })
                .next()
                .unwrap();
            assert_eq!(&shard_id, shard);
            assert!(seq > last, "{stream} {shard}: sequence number {seq} handed out again (last was {last})");
        }
    }
}

fn receive(queue: &str) -> ReceiveMessage {
    ReceiveMessage {
        queue: queue.into(),
        max_messages: Some(10),
        wait_time_seconds: Some(0),
        visibility_timeout: Some(600),
        ..ReceiveMessage::default()
    }
}

fn visible_count(c: &Conn, queue: &str) -> usize {
    let attrs = c.run(c.client().get_queue_attributes(queue, &["ApproximateNumberOfMessages"])).unwrap();
    attribute(&attrs, "ApproximateNumberOfMessages").unwrap().parse().unwrap()
}

#[test]
fn queue_messages_survive_many_restarts_with_and_without_writes() {
    let mut daemon = Daemon::start();
    let mut kept: BTreeSet<String> = BTreeSet::new();
    let send = |c: &Conn, tag: &str, kept: &mut BTreeSet<String>| {
        for batch in 0..3 {
            let entries: Vec<SendEntry> = (0..10)
                .map(|i| SendEntry { id: format!("e{i}"), body: Bytes::from(format!("{tag}-{batch}-{i}")), ..SendEntry::default() })
                .collect();
            let (sent, failed) = c.run(c.client().send_message_batch("work", entries)).unwrap();
            assert_eq!((sent.len(), failed.len()), (10, 0));
            kept.extend((0..10).map(|i| format!("{tag}-{batch}-{i}")));
        }
    };
    {
        let c = daemon.client();
        c.run(c.client().create_queue("work", vec![], vec![])).unwrap();
        send(&c, "start", &mut kept);
    }
    for round in 0..rounds() {
        stop_and_start(&mut daemon, round);
        let c = daemon.client();
        assert_eq!(visible_count(&c, "work"), kept.len(), "messages visible after restart {}", round + 1);
        if round % 3 == 2 {
            send(&c, &format!("round{round}"), &mut kept);
            // Delete a few: an acknowledged delete stays deleted across the restarts to come.
            let got = c.run(c.client().receive_message(receive("work"))).unwrap();
            for message in &got {
                c.run(c.client().delete_message("work", &message.receipt_handle)).unwrap();
                kept.remove(std::str::from_utf8(&message.body).unwrap());
            }
        }
    }
    stop_and_start(&mut daemon, 1);
    let c = daemon.client();
    let mut found = BTreeSet::new();
    loop {
        let got = c.run(c.client().receive_message(receive("work"))).unwrap();
        if got.is_empty() {
            break;
        }
        found.extend(got.iter().map(|m| String::from_utf8(m.body.to_vec()).unwrap()));
    }
    let in_flight: usize = {
        let attrs = c.run(c.client().get_queue_attributes("work", &["ApproximateNumberOfMessagesNotVisible"])).unwrap();
        attribute(&attrs, "ApproximateNumberOfMessagesNotVisible").unwrap().parse().unwrap()
    };
    assert_eq!(in_flight, found.len());
    assert_eq!(found, kept, "the messages after every restart are exactly those sent and not deleted");
}

#[test]
fn a_first_start_with_a_relative_data_dir_serves_queues() {
    let cwd = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_from(cwd.path(), std::path::Path::new("sluice-data"), &[]);
    {
        let c = daemon.client();
        c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
        c.run(c.client().send_message("q", "hello")).unwrap();
        c.run(c.client().create_stream("s", 1)).unwrap();
        c.run(c.client().put_record("s", "k", "record")).unwrap();
    }
    assert!(cwd.path().join("sluice-data").join("meta.json").exists(), "the data went under the working directory");
    daemon.kill();
    daemon.restart();
    let c = daemon.client();
    let got = c.run(c.client().receive_message(receive("q"))).unwrap();
    assert_eq!(got.iter().map(|m| m.body.clone()).collect::<Vec<_>>(), vec![Bytes::from_static(b"hello")]);
    let records = read_stream(&c, "s");
    assert_eq!(records.values().flatten().map(|(_, data)| data.as_str()).collect::<Vec<_>>(), vec!["record"]);
}

#[test]
fn a_listener_others_can_reach_is_refused_without_insecure_no_auth() {
    let dir = tempfile::tempdir().unwrap();
    for extra in [["--listen", "0.0.0.0:0"], ["--http-listen", "[::]:0"]] {
        let (status, stderr) = Daemon::start_failing(dir.path(), &extra);
        assert_eq!(status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains("without authentication") && stderr.contains("--insecure-no-auth"), "{extra:?}: {stderr}");
    }
    assert!(!dir.path().join("meta.json").exists(), "nothing was started or written");
}

#[test]
fn a_restart_on_the_same_port_right_after_kill_9_succeeds() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut daemon = Daemon::start_with(&["--listen", &listen, "--http-listen", "off"]);
    for round in 0..rounds() {
        {
            let c = daemon.client();
            c.run(c.client().create_queue(&format!("q{round}"), vec![], vec![])).unwrap();
        }
        // `restart` kills with SIGKILL and starts again at once, as a supervisor would.
        daemon.restart();
        assert_eq!(daemon.addr.port(), port);
        let c = daemon.client();
        let (queues, _) = c.run(c.client().list_queues(None, None, None)).unwrap();
        assert_eq!(queues.len(), round + 1);
    }
}

/// The inode of a file (a rewrite by rename gives a new one).
fn inode(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

/// Queues (by name: tags and policy), topics and streams, as the server reports them.
type MetadataModel = (BTreeMap<String, (Vec<(String, String)>, Option<String>)>, Vec<String>, Vec<String>);

fn metadata_model(c: &Conn) -> MetadataModel {
    let mut queues = BTreeMap::new();
    let (urls, _) = c.run(c.client().list_queues(None, None, None)).unwrap();
    for url in urls {
        let name = url.rsplit('/').next().unwrap().to_owned();
        let mut tags = c.run(c.client().list_queue_tags(&name)).unwrap();
        tags.sort();
        let attributes = c.run(c.client().get_queue_attributes(&name, &["Policy"])).unwrap();
        queues.insert(name, (tags, attribute(&attributes, "Policy").map(str::to_owned)));
    }
    let (mut topics, _) = c.run(c.client().list_topics(None)).unwrap();
    topics.sort();
    let mut streams = c.run(c.client().list_streams()).unwrap();
    streams.sort();
    (queues, topics, streams)
}

#[test]
fn metadata_changes_are_journaled_and_survive_many_restarts() {
    let mut daemon = Daemon::start();
    let meta = daemon.data_dir().join("meta.json");
    {
        let c = daemon.client();
        c.run(c.client().create_queue("first", vec![], vec![])).unwrap();
    }
    let document = inode(&meta);
    for round in 0..rounds() {
        {
            let c = daemon.client();
            // Changes of every kind; none rewrites meta.json (it is far from outgrown).
            for i in 0..20 {
                c.run(c.client().create_queue(&format!("r{round}-q{i}"), vec![], vec![kv("round", &round.to_string())])).unwrap();
            }
            c.run(c.client().tag_queue("first", vec![kv(&format!("t{round}"), "v")])).unwrap();
            let policy = format!(r#"{{"Version":"2012-10-17","Id":"round-{round}","Statement":[]}}"#);
            c.run(c.client().set_queue_attributes("first", vec![kv("Policy", &policy)])).unwrap();
            c.run(c.client().delete_queue(&format!("r{round}-q0"))).unwrap();
            let topic = c.run(c.client().create_topic(&format!("topic-{round}"), vec![], vec![])).unwrap();
            c.run(c.client().subscribe(&topic, "sqs", &format!("arn:aws:sqs:us-east-1:000000000000:r{round}-q1"), vec![])).unwrap();
            c.run(c.client().create_stream(&format!("stream-{round}"), 1)).unwrap();
        }
        assert_eq!(inode(&meta), document, "round {round}: a metadata change rewrote all of meta.json");
        let before = metadata_model(&daemon.client());
        // Restarts in turn with SIGTERM and kill -9, twice without changes in between.
        stop_and_start(&mut daemon, round);
        stop_and_start(&mut daemon, round + 1);
        let after = metadata_model(&daemon.client());
        assert_eq!(after, before, "round {round}: metadata after two restarts");
        assert_eq!(after.0.len(), 1 + 19 * (round + 1), "round {round}: queues");
    }
}

#[test]
fn a_metadata_journal_that_outgrows_meta_json_is_folded_into_it() {
    let mut daemon = Daemon::start();
    let meta = daemon.data_dir().join("meta.json");
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    let document = inode(&meta);
    // 8 KiB policies: past 1 MiB of journal the next change writes a new meta.json.
    for i in 0..200 {
        let policy = format!(r#"{{"Version":"2012-10-17","Id":"{i:04}{}","Statement":[]}}"#, "x".repeat(7900));
        c.run(c.client().set_queue_attributes("q", vec![kv("Policy", &policy)])).unwrap();
    }
    assert_ne!(inode(&meta), document, "the journal was folded into a new meta.json");
    let journals: Vec<String> = std::fs::read_dir(daemon.data_dir())
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().filter(|name| name.starts_with("meta.journal.")).map(str::to_owned))
        .collect();
    assert!(journals.len() <= 1, "the folded journal was removed: {journals:?}");
    let journal_bytes: u64 = journals.iter().map(|name| std::fs::metadata(daemon.data_dir().join(name)).unwrap().len()).sum();
    assert!(journal_bytes < 2 << 20, "the journal stays about the size of meta.json: {journal_bytes} bytes");
    drop(c);
    daemon.kill();
    daemon.restart();
    let c = daemon.client();
    let attributes = c.run(c.client().get_queue_attributes("q", &["Policy"])).unwrap();
    assert!(attribute(&attributes, "Policy").unwrap().contains("\"0199"), "the last policy set is the one kept");
}
