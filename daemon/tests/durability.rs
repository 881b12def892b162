//! Durable queues through the real daemon: restarts (after SIGKILL) rebuild every
//! queue exactly, corruption stops the start unless `--repair`, compaction keeps
//! the data directory bounded, and kill -9 at random moments loses no acknowledged
//! send and brings back no acknowledged delete.
//!
//! Crash rounds: `SLUICE_CRASH_ROUNDS` (default 4, which CI runs). For a soak:
//! `SLUICE_CRASH_ROUNDS=200 cargo test -p sluice-daemon --test durability -- kill_9`.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::*;
use sluice_testkit::*;

fn receive(queue: &str, visibility: i32) -> ReceiveMessage {
    ReceiveMessage {
        queue: queue.into(),
        max_messages: Some(10),
        wait_time_seconds: Some(0),
        visibility_timeout: Some(visibility),
        system_attribute_names: vec!["All".into()],
        ..ReceiveMessage::default()
    }
}

fn bodies(messages: &[ReceivedMessage]) -> Vec<String> {
    messages.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect()
}

/// Receives until a receive comes back empty; returns every message received.
fn drain(c: &Conn, queue: &str, visibility: i32) -> Vec<ReceivedMessage> {
    let mut all = Vec::new();
    loop {
        let got = c.run(c.client().receive_message(receive(queue, visibility))).unwrap();
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

fn counts(c: &Conn, queue: &str) -> (String, String, String) {
    let attrs = c.run(c.client().get_queue_attributes(queue, &["All"])).unwrap();
    let get = |name| attribute(&attrs, name).unwrap_or("?").to_owned();
    (get("ApproximateNumberOfMessages"), get("ApproximateNumberOfMessagesNotVisible"), get("ApproximateNumberOfMessagesDelayed"))
}

#[test]
fn sigkill_and_restart_rebuild_queues_and_messages_exactly() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("dlq", vec![], vec![kv("team", "ops")])).unwrap();
    let redrive = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"1"}"#;
    c.run(c.client().create_queue("work", vec![kv("VisibilityTimeout", "45"), kv("RedrivePolicy", redrive)], vec![])).unwrap();
    c.run(c.client().create_queue("gone", vec![], vec![])).unwrap();
    c.run(c.client().send_message("gone", "from a deleted queue")).unwrap();
    c.run(c.client().delete_queue("gone")).unwrap();

    // Ten visible messages; four received (in flight for 10 minutes), two of those deleted.
    let entries = (0..10).map(|i| SendEntry { id: format!("e{i}"), body: Bytes::from(format!("m{i}")), ..SendEntry::default() }).collect();
    let (sent, failed) = c.run(c.client().send_message_batch("work", entries)).unwrap();
    assert_eq!((sent.len(), failed.len()), (10, 0));
    let mut in_flight = Vec::new();
    while in_flight.len() < 4 {
        let mut got = c.run(c.client().receive_message(ReceiveMessage { max_messages: Some(1), ..receive("work", 600) })).unwrap();
        in_flight.append(&mut got);
    }
    for message in &in_flight[..2] {
        c.run(c.client().delete_message("work", &message.receipt_handle)).unwrap();
    }
    // One delayed message; one received and made visible again (receive count 1 = maxReceiveCount).
    let delayed = SendEntry { body: Bytes::from_static(b"later"), delay_seconds: Some(600), ..SendEntry::default() };
    c.run(c.client().send_entry("dlq", delayed)).unwrap();
    assert_eq!(counts(&c, "work"), ("6".into(), "2".into(), "0".into()));
    let deleted: HashSet<String> = bodies(&in_flight[..2]).into_iter().collect();
    let still_in_flight: HashSet<String> = bodies(&in_flight[2..]).into_iter().collect();
    drop(c);

    daemon.kill();
    daemon.restart();
    let c = daemon.client();
    let (urls, _) = c.run(c.client().list_queues(None, None, None)).unwrap();
    assert_eq!(urls.len(), 2, "{urls:?}");
    let attrs = c.run(c.client().get_queue_attributes("work", &["VisibilityTimeout", "RedrivePolicy"])).unwrap();
    assert_eq!(attribute(&attrs, "VisibilityTimeout"), Some("45"));
    assert!(attribute(&attrs, "RedrivePolicy").unwrap().contains("dlq"));
    assert_eq!(c.run(c.client().list_queue_tags("dlq")).unwrap(), vec![kv("team", "ops")]);
    assert_eq!(counts(&c, "work"), ("6".into(), "2".into(), "0".into()));
    assert_eq!(counts(&c, "dlq"), ("0".into(), "0".into(), "1".into()));

    // Each visible message comes back once, with its receive count; none deleted or in flight.
    let visible = drain(&c, "work", 600);
    let got: HashSet<String> = bodies(&visible).into_iter().collect();
    assert_eq!(got.len(), 6);
    assert!(got.is_disjoint(&deleted) && got.is_disjoint(&still_in_flight), "{got:?}");
    for message in &visible {
        assert_eq!(attribute(&message.attributes, "ApproximateReceiveCount"), Some("1"));
    }
    // Handles issued before the crash still work.
    c.run(c.client().delete_message("work", &in_flight[2].receipt_handle)).unwrap();
    assert_eq!(counts(&c, "work"), ("0".into(), "7".into(), "0".into()));
    // Made visible again, a message received once moves to the dead-letter queue at the next receive.
    c.run(c.client().change_message_visibility("work", &in_flight[3].receipt_handle, 0)).unwrap();
    assert!(drain(&c, "work", 600).is_empty());
    let dead = drain(&c, "dlq", 600);
    assert_eq!(bodies(&dead), vec![String::from_utf8_lossy(&in_flight[3].body).into_owned()]);
    assert!(attribute(&dead[0].attributes, "DeadLetterQueueSourceArn").unwrap().ends_with(":work"));
    // A receive is logged but not waited for (a crash may forget it: README, Storage); a
    // visibility change is answered once on disk, and with it the receive logged before it.
    c.run(c.client().change_message_visibility("dlq", &dead[0].receipt_handle, 600)).unwrap();

    // And all of that survives a second crash.
    drop(c);
    daemon.kill();
    daemon.restart();
    let c = daemon.client();
    assert_eq!(counts(&c, "work"), ("0".into(), "6".into(), "0".into()));
    assert_eq!(counts(&c, "dlq"), ("0".into(), "1".into(), "1".into()));
}

#[test]
fn a_corrupt_log_stops_the_start_unless_repair() {
    let mut daemon = Daemon::start_with(&["--cores", "1"]);
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    for i in 0..50 {
        c.run(c.client().send_message("q", format!("message {i}"))).unwrap();
    }
    drop(c);
    daemon.kill();
    let segment = daemon.data_dir().join("shard-000/queues/00000000000000000001.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[200] ^= 0xFF; // inside an early record, with valid records after it
    std::fs::write(&segment, &bytes).unwrap();

    let (status, stderr) = Daemon::start_failing(daemon.data_dir(), &["--cores", "1"]);
    assert!(!status.success());
    assert!(stderr.contains("00000000000000000001.log") && stderr.contains("offset") && stderr.contains("repair"), "{stderr}");

    let mut repaired = Daemon::start_in(daemon.data_dir(), &["--cores", "1", "--repair"]);
    let c = repaired.client();
    let left = drain(&c, "q", 600).len();
    assert!((40..50).contains(&left), "repair keeps every valid record: {left} of 50 left");
    drop(c);
    repaired.kill();
}

#[test]
fn a_data_directory_reopens_only_with_its_shard_count() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    drop(c);
    daemon.kill();
    let (status, stderr) = Daemon::start_failing(daemon.data_dir(), &["--cores", "1"]);
    assert!(!status.success());
    assert!(stderr.contains("--cores 2"), "{stderr}");
}

#[test]
fn compaction_keeps_the_data_directory_bounded() {
    // 4 MiB segments; 40,000 messages of 1 KiB pass through (about 10 segments' worth per
    // shard), while one old message stays and pins nothing.
    let daemon = Daemon::start_with(&["--cores", "1", "--fsync", "never"]);
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    c.run(c.client().send_message("q", "the old one")).unwrap();
    let old = c.run(c.client().receive_message(receive("q", 43_000))).unwrap();
    assert_eq!(old.len(), 1);
    let body = Bytes::from(vec![b'x'; 1024]);
    for round in 0..4000 {
        let entries = (0..10).map(|i| SendEntry { id: format!("e{i}"), body: body.clone(), ..SendEntry::default() }).collect();
        c.run(c.client().send_message_batch("q", entries)).unwrap();
        let got = c.run(c.client().receive_message(receive("q", 600))).unwrap();
        let entries = got.iter().enumerate().map(|(i, m)| DeleteEntry { id: format!("d{i}"), receipt_handle: m.receipt_handle.clone() });
        c.run(c.client().delete_message_batch("q", entries.collect())).unwrap();
        if round % 1000 == 999 {
            // Give the compactor (once a second) a chance to run.
            std::thread::sleep(Duration::from_millis(1500));
        }
    }
    std::thread::sleep(Duration::from_millis(2500));
    let dir = daemon.data_dir().join("shard-000/queues");
    let segments =
        std::fs::read_dir(&dir).unwrap().filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|e| e == "log")).count();
    // Written: ~45 MiB of records (sends, receives, deletes). Kept: the active segment, a
    // spare, and at most a couple not yet cleaned.
    assert!(segments <= 5, "{segments} segment files in {}", dir.display());
    // The shard's metrics say so: passes that removed segments, and what they wrote again.
    let metrics = scrape(&daemon);
    let counted = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}{{shard=\"0\"}} "))?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} in:\n{metrics}"))
    };
    assert!(counted("sluice_shard_compactions_total") >= 1.0);
    assert!(counted("sluice_shard_compaction_segments_removed_total") >= 5.0);
    assert!(counted("sluice_shard_compaction_relocated_bytes_total") > 0.0, "the old message was written again");
    // The old in-flight message survived compaction (it was moved, not dropped).
    c.run(c.client().change_message_visibility("q", &old[0].receipt_handle, 0)).unwrap();
    let again = drain(&c, "q", 600);
    assert_eq!(bodies(&again), vec!["the old one".to_owned()]);
}

/// The daemon's `/metrics`, in Prometheus' text format.
fn scrape(daemon: &Daemon) -> String {
    use std::io::{Read, Write};
    let addr = daemon.http_addr.expect("the gateway");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

fn segment_files(daemon: &Daemon) -> usize {
    (0..2)
        .map(|shard| {
            let dir = daemon.data_dir().join(format!("shard-{shard:03}/queues"));
            std::fs::read_dir(dir).unwrap().filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|e| e == "log")).count()
        })
        .sum()
}

#[test]
fn a_backlog_many_times_the_memory_budget_is_served() {
    // 2 MiB of budget for two shards; about 94 MiB of backlog, sent through both shards.
    // Without the budget the daemon grows by more than the backlog; with it, by its fixed
    // costs (glommio's I/O buffers, connection buffers): about 20-30 MiB, whatever the backlog.
    const COUNT: usize = 4000;
    const SIZE: usize = 24 * 1024;
    let backlog = (COUNT * SIZE) as u64;
    let mut daemon = Daemon::start_with(&["--memory-budget", "2M"]);
    let idle = daemon.resident_bytes();
    let conns = [daemon.client_on_shard(0), daemon.client_on_shard(1)];
    conns[0].run(conns[0].client().create_queue("big", vec![], vec![])).unwrap();
    for batch in 0..COUNT / 10 {
        let c = &conns[batch % 2];
        let entries =
            (0..10).map(|i| SendEntry { id: format!("e{i}"), body: numbered_body(batch * 10 + i, SIZE), ..SendEntry::default() }).collect();
        let sent = c.run(c.client().send_message_batch("big", entries)).unwrap();
        assert_eq!(sent.0.len(), 10, "{:?}", sent.1);
    }
    let after_sending = daemon.resident_bytes();
    assert!(
        after_sending.saturating_sub(idle) < backlog / 2,
        "sending {backlog} bytes of backlog grew the daemon from {idle} to {after_sending} bytes resident"
    );

    // A restart after SIGKILL replays the log without loading the backlog into memory either.
    daemon.restart();
    let after_restart = daemon.resident_bytes();
    assert!(
        after_restart.saturating_sub(idle) < backlog / 2,
        "{after_restart} bytes resident (idle: {idle}) after replaying {backlog} bytes of backlog"
    );

    // Every message comes back, byte for byte, once; three in four are deleted, and the
    // rest made visible again.
    let c = daemon.client();
    let mut seen = vec![false; COUNT];
    let mut kept_receipts = Vec::new();
    loop {
        let got = c.run(c.client().receive_message(receive("big", 600))).unwrap();
        if got.is_empty() {
            break;
        }
        let mut deletes = Vec::new();
        for message in &got {
            let i = number_in(&message.body);
            assert!(!seen[i], "message {i} received twice");
            seen[i] = true;
            assert!(message.body == numbered_body(i, SIZE), "message {i} came back with a different body");
            if !i.is_multiple_of(4) {
                deletes.push(DeleteEntry { id: format!("d{}", deletes.len()), receipt_handle: message.receipt_handle.clone() });
            } else {
                kept_receipts.push(message.receipt_handle.clone());
            }
        }
        if !deletes.is_empty() {
            let deleted = c.run(c.client().delete_message_batch("big", deletes)).unwrap();
            assert!(deleted.1.is_empty(), "{:?}", deleted.1);
        }
    }
    let missing: Vec<usize> = (0..COUNT).filter(|i| !seen[*i]).collect();
    assert!(missing.is_empty(), "messages never received: {missing:?}");
    for receipt in &kept_receipts {
        c.run(c.client().change_message_visibility("big", receipt, 0)).unwrap();
    }

    // Three quarters of every segment are dead: compaction re-logs the live quarter (read
    // back from the log: it is not in memory) and deletes the old segments. The backlog took
    // 24 segments of 4 MiB; what is left (about 6) fits in well under twice that, with each
    // shard's active and spare segments.
    let deadline = Instant::now() + Duration::from_secs(60);
    while segment_files(&daemon) > 16 {
        assert!(Instant::now() < deadline, "compaction left {} segment files", segment_files(&daemon));
        std::thread::sleep(Duration::from_millis(200));
    }

    // What compaction re-logged survives another crash, intact.
    daemon.restart();
    let c = daemon.client();
    let mut kept: Vec<usize> = Vec::new();
    for message in drain(&c, "big", 600) {
        let i = number_in(&message.body);
        assert!(message.body == numbered_body(i, SIZE), "message {i} came back with a different body after compaction");
        kept.push(i);
    }
    kept.sort_unstable();
    assert_eq!(kept, (0..COUNT).step_by(4).collect::<Vec<_>>());
}

/// What the clients of the crash test were told.
#[derive(Default)]
struct Ledger {
    sent: HashSet<u64>,
    /// Asked to be deleted (a delete may be done without its answer arriving).
    delete_asked: HashSet<u64>,
    deleted: HashSet<u64>,
    /// Received after their delete was acknowledged (must stay empty).
    resurrected: Vec<u64>,
}

fn id_of(message: &ReceivedMessage) -> u64 {
    std::str::from_utf8(&message.body).ok().and_then(|b| b.strip_prefix("msg-")).and_then(|n| n.parse().ok()).expect("a test message")
}

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_message() {
    let rounds: u32 = std::env::var("SLUICE_CRASH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(4);
    let mut daemon = Daemon::start();
    {
        let c = daemon.client();
        c.run(c.client().create_queue("crash", vec![], vec![])).unwrap();
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let next_id = Arc::new(AtomicU64::new(0));
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for shard in 0..2u16 {
            let (conn, book, next_id, halt) = (daemon.client_on_shard(shard), ledger.clone(), next_id.clone(), stop.clone());
            workers.push(std::thread::spawn(move || {
                let (ledger, stop) = (book, halt);
                while !stop.load(Ordering::Relaxed) {
                    let first = next_id.fetch_add(10, Ordering::Relaxed);
                    let entries = (0..10)
                        .map(|i| SendEntry { id: format!("e{i}"), body: Bytes::from(format!("msg-{}", first + i)), ..SendEntry::default() })
                        .collect();
                    match conn.run(conn.client().send_message_batch("crash", entries)) {
                        Ok((sent, _)) => ledger.lock().unwrap().sent.extend(sent.iter().map(|r| first + r.id[1..].parse::<u64>().unwrap())),
                        Err(_) => return,
                    }
                }
            }));
            let (conn, book, halt) = (daemon.client_on_shard(shard), ledger.clone(), stop.clone());
            workers.push(std::thread::spawn(move || {
                let (ledger, stop) = (book, halt);
                while !stop.load(Ordering::Relaxed) {
                    let got = match conn.run(conn.client().receive_message(receive("crash", 2))) {
                        Ok(got) => got,
                        Err(ClientError::Server(error)) => panic!("receive failed: {error}"),
                        Err(_) => return, // the daemon was killed
                    };
                    {
                        let mut ledger = ledger.lock().unwrap();
                        let back: Vec<u64> = got.iter().map(id_of).filter(|id| ledger.deleted.contains(id)).collect();
                        ledger.resurrected.extend(back);
                    }
                    // Delete most of what arrives; leave some for redelivery.
                    let keep: Vec<&ReceivedMessage> = got.iter().filter(|m| !id_of(m).is_multiple_of(5)).collect();
                    if keep.is_empty() {
                        continue;
                    }
                    ledger.lock().unwrap().delete_asked.extend(keep.iter().map(|m| id_of(m)));
                    let entries =
                        keep.iter().enumerate().map(|(i, m)| DeleteEntry { id: format!("d{i}"), receipt_handle: m.receipt_handle.clone() });
                    match conn.run(conn.client().delete_message_batch("crash", entries.collect())) {
                        Ok((done, _)) => {
                            let mut ledger = ledger.lock().unwrap();
                            for id in done {
                                let index: usize = id[1..].parse().unwrap();
                                ledger.deleted.insert(id_of(keep[index]));
                            }
                        }
                        Err(ClientError::Server(error)) => panic!("delete failed: {error}"),
                        Err(_) => return,
                    }
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(200 + fastrand::u64(0..1300)));
        daemon.kill();
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.join().unwrap();
        }
        daemon.restart();
        let ledger = ledger.lock().unwrap();
        eprintln!("round {round}: {} sends and {} deletes acknowledged so far", ledger.sent.len(), ledger.deleted.len());
        assert!(ledger.resurrected.is_empty(), "deleted messages came back: {:?}", ledger.resurrected);
    }

    // Every acknowledged send nobody asked to delete is there; nothing deleted comes back.
    let c = daemon.client();
    let ledger = ledger.lock().unwrap();
    let mut expected: BTreeMap<u64, bool> = ledger.sent.difference(&ledger.delete_asked).map(|id| (*id, false)).collect();
    // Drain until every expected message is seen, or the queue is empty (nothing visible,
    // in flight or delayed), or a generous deadline passes (long soaks leave big backlogs).
    let deadline = Instant::now() + Duration::from_secs(600);
    while expected.values().any(|seen| !seen) && Instant::now() < deadline {
        if counts(&c, "crash") == ("0".into(), "0".into(), "0".into()) {
            break;
        }
        let got = c.run(c.client().receive_message(ReceiveMessage { wait_time_seconds: Some(1), ..receive("crash", 600) })).unwrap();
        if got.is_empty() {
            continue;
        }
        let entries = got.iter().enumerate().map(|(i, m)| DeleteEntry { id: format!("d{i}"), receipt_handle: m.receipt_handle.clone() });
        c.run(c.client().delete_message_batch("crash", entries.collect())).unwrap();
        for message in &got {
            let id = id_of(message);
            assert!(!ledger.deleted.contains(&id), "message {id} came back after its delete was acknowledged");
            if let Some(seen) = expected.get_mut(&id) {
                *seen = true;
            }
        }
    }
    let missing: Vec<u64> = expected.iter().filter(|(_, seen)| !**seen).map(|(id, _)| *id).collect();
    assert!(ledger.sent.len() > 100, "the clients got work done: {} sends", ledger.sent.len());
    assert!(missing.is_empty(), "{} acknowledged messages lost, e.g. {:?}", missing.len(), &missing[..missing.len().min(10)]);
}

/// A small tmpfs mounted for one test (the test suite runs as root, as CI does: it installs packages).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(status.success(), "mounting a {mib} MiB tmpfs needs root (the suite runs as root, as CI does)");
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Ten messages of 1 KiB, for filling a disk.
fn batch_of_ten() -> Vec<SendEntry> {
    let body = Bytes::from(vec![b'x'; 1024]);
    (0..10).map(|i| SendEntry { id: format!("e{i}"), body: body.clone(), ..SendEntry::default() }).collect()
}

/// Sends batches to `queue` until an entry is refused; returns how many were sent and the
/// first refusal. A refusal fails entries, never the connection.
fn send_until_refused(c: &Conn, queue: &str) -> (usize, BatchFailure) {
    let mut sent = 0;
    loop {
        match c.run(c.client().send_message_batch(queue, batch_of_ten())) {
            Ok((ok, failed)) => {
                sent += ok.len();
                if let Some(failure) = failed.first() {
                    return (sent, failure.clone());
                }
            }
            Err(error) => panic!("a refused send fails entries, not the connection: {error:?}"),
        }
        assert!(sent < 100_000, "sends were never refused");
    }
}

/// Receives until `queue` answers none (deleting each message when `delete`); returns how many came.
fn receive_all(c: &Conn, queue: &str, delete: bool) -> usize {
    let mut received = 0;
    loop {
        let got = c.run(c.client().receive_message(receive(queue, 600))).unwrap();
        if got.is_empty() {
            return received;
        }
        received += got.len();
        if delete {
            let entries =
                got.iter().enumerate().map(|(i, m)| DeleteEntry { id: format!("d{i}"), receipt_handle: m.receipt_handle.clone() });
            let (_, failed) = c.run(c.client().delete_message_batch(queue, entries.collect())).unwrap();
            assert!(failed.is_empty(), "{failed:?}");
        }
    }
}

/// Sends a batch every 200 ms until all of it is accepted, for at most 30 s (`after` says after what).
fn send_until_accepted(c: &Conn, queue: &str, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, _) = c.run(c.client().send_message_batch(queue, batch_of_ten())).unwrap();
        if ok.len() == 10 {
            return;
        }
        assert!(Instant::now() < deadline, "sends still refused 30 s after {after}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_full_disk_refuses_sends_but_serves_receives_and_deletes() {
    let disk = SmallDisk::mount(24);
    let data_dir = disk.dir.path().join("data");
    let daemon = Daemon::start_in(&data_dir, &["--cores", "1", "--segment-bytes", "4194304"]);
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    let (sent, refusal) = send_until_refused(&c, "q");
    assert_eq!(refusal.code, ErrorCode::ServiceUnavailable, "{refusal:?}");
    assert!(refusal.message.contains("disk is full"), "{refusal:?}");
    assert!(sent > 5_000, "only {sent} messages fitted");

    // Everything acknowledged can still be received and deleted.
    assert_eq!(receive_all(&c, "q", true), sent);

    // Compaction frees the deleted messages' segments, and sends are accepted again.
    send_until_accepted(&c, "q", "the queue was emptied");
}

/// Puts one batch of `count` records of `size` bytes to `stream`; returns the data of those
/// acknowledged and the first refusal, if any.
fn put_batch(c: &Conn, stream: &str, tag: usize, count: usize, size: usize) -> (Vec<String>, Option<OpError>) {
    let entries: Vec<PutRecordsEntry> = (0..count)
        .map(|i| {
            let mut data = format!("{tag}-{i}-").into_bytes();
            data.resize(size, b'x');
            PutRecordsEntry { data: Bytes::from(data), partition_key: "k".into(), explicit_hash_key: None }
        })
        .collect();
    let mut acknowledged = Vec::new();
    let mut refusal = None;
    for (i, result) in c.run(c.client().put_records(stream, entries)).unwrap().into_iter().enumerate() {
        match result {
            PutRecordResult::Put { .. } => acknowledged.push(format!("{tag}-{i}-")),
            PutRecordResult::Failed(error) => refusal = refusal.or(Some(error)),
        }
    }
    (acknowledged, refusal)
}

/// Every record's data prefix (up to the second '-') in a one-shard stream, in order.
fn stream_prefixes(c: &Conn, stream: &str) -> Vec<String> {
    let shard = c.run(c.client().describe_stream(stream)).unwrap().shards[0].shard_id.clone();
    let mut iterator = c.run(c.client().get_shard_iterator(stream, &shard, StartingPosition::new("TRIM_HORIZON"))).unwrap();
    let mut found = Vec::new();
    loop {
        let result = c.run(c.client().get_records(&iterator, None)).unwrap();
        let empty = result.records.is_empty();
        for record in &result.records {
            let text = String::from_utf8_lossy(&record.data);
            let mut parts = text.splitn(3, '-');
            found.push(format!("{}-{}-", parts.next().unwrap(), parts.next().unwrap()));
        }
        match result.next_iterator {
            Some(next) if !(empty && result.millis_behind_latest == 0) => iterator = next,
            _ => return found,
        }
    }
}

#[test]
fn a_stream_shard_that_met_a_full_disk_takes_writes_again_once_space_is_freed() {
    let disk = SmallDisk::mount(40);
    // Ballast the operator deletes later to free space.
    let ballast = disk.dir.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 12 << 20]).unwrap();
    let data_dir = disk.dir.path().join("data");
    let mut daemon = Daemon::start_in(&data_dir, &["--cores", "1"]);
    let c = daemon.client();
    c.run(c.client().create_stream("s", 1)).unwrap();
    let mut acknowledged = Vec::new();
    let mut tag = 0;
    let refusal = loop {
        let (ok, refusal) = put_batch(&c, "s", tag, 50, 4000);
        tag += 1;
        acknowledged.extend(ok);
        if let Some(refusal) = refusal {
            break refusal;
        }
        assert!(tag < 10_000, "40 MiB never filled");
    };
    assert_eq!(refusal.code, ErrorCode::ServiceUnavailable, "{refusal:?}");
    assert!(refusal.message.contains("no space"), "a full disk is named as such: {refusal:?}");
    // Refused again while the disk stays full, with the same clear reason.
    let (ok, again) = put_batch(&c, "s", tag, 50, 4000);
    tag += 1;
    acknowledged.extend(ok);
    assert!(again.is_some_and(|error| error.code == ErrorCode::ServiceUnavailable));

    // The operator frees space: the shard takes writes again by itself, no restart.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, refusal) = put_batch(&c, "s", tag, 10, 4000);
        tag += 1;
        let accepted = refusal.is_none();
        acknowledged.extend(ok);
        if accepted {
            break;
        }
        assert!(Instant::now() < deadline, "the shard still refuses writes 30 s after space was freed: {refusal:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, refusal) = put_batch(&c, "s", tag, 10, 100);
    assert!(refusal.is_none(), "{refusal:?}");
    acknowledged.extend(ok);

    // Every acknowledged record is there, in order, before and after restarts.
    let check = |c: &Conn, when: &str| {
        let found = stream_prefixes(c, "s");
        let mut position = 0;
        for record in &acknowledged {
            match found[position..].iter().position(|f| f == record) {
                Some(at) => position += at + 1,
                None => panic!("acknowledged record {record} missing or out of order {when}"),
            }
        }
    };
    check(&c, "before a restart");
    drop(c);
    daemon.kill();
    daemon.restart();
    check(&daemon.client(), "after kill -9");
    daemon.restart();
    check(&daemon.client(), "after a second restart");
}

#[test]
fn a_segment_that_cannot_be_created_for_another_reason_is_not_called_a_full_disk() {
    let data = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_in(data.path(), &["--cores", "1", "--segment-bytes", "4194304"]);
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    // The third segment's name is taken by a directory: creating it fails with EISDIR.
    let blocker = data.path().join("shard-000").join("queues").join(format!("{:020}.log", 3));
    std::fs::create_dir_all(&blocker).unwrap();
    let (sent, refusal) = send_until_refused(&c, "q");
    assert_eq!(refusal.code, ErrorCode::ServiceUnavailable, "{refusal:?}");
    assert!(!refusal.message.contains("full"), "not a full disk: {refusal:?}");
    assert!(refusal.message.contains("directory"), "the cause is named: {refusal:?}");
    // Once the obstacle is gone, sends are accepted again.
    std::fs::remove_dir(&blocker).unwrap();
    send_until_accepted(&c, "q", "the obstacle was removed");
    // Exactly the acknowledged messages are there: none that was refused (also none whose
    // record was dropped after it was staged), and every one can be received.
    let attributes = c.run(c.client().get_queue_attributes("q", &["ApproximateNumberOfMessages"])).unwrap();
    let count: usize = attribute(&attributes, "ApproximateNumberOfMessages").unwrap().parse().unwrap();
    assert!(count >= sent + 10, "{count} messages for {sent} acknowledged before the refusal and 10 after");
    assert_eq!(receive_all(&c, "q", false), count);
}
