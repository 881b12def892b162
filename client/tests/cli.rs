//! The `sluice` CLI against a real daemon: the README's quick start, and errors.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use sluice_testkit::*;

fn sluice(daemon: &Daemon, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--endpoint")
        .arg(daemon.addr.to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "sluice failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn quick_start_round_trips_a_message() {
    let daemon = Daemon::start();
    assert!(stdout(&sluice(&daemon, &["queue", "create", "q"], None)).trim().ends_with("/q"));
    assert_eq!(stdout(&sluice(&daemon, &["send", "q", "hello"], None)).trim().len(), 36);
    assert_eq!(stdout(&sluice(&daemon, &["receive", "q", "--delete"], None)), "hello\n");
    assert_eq!(stdout(&sluice(&daemon, &["receive", "q"], None)), "");
}

#[test]
fn queue_commands_and_stdin_batches_work() {
    let daemon = Daemon::start();
    stdout(&sluice(&daemon, &["queue", "create", "jobs", "--attr", "VisibilityTimeout=120", "--tag", "team=a"], None));
    stdout(&sluice(&daemon, &["queue", "create", "other"], None));
    assert_eq!(stdout(&sluice(&daemon, &["queue", "list", "--prefix", "jo"], None)).lines().count(), 1);
    let lines: String = (0..25).map(|i| format!("line {i}\n")).collect();
    assert!(stdout(&sluice(&daemon, &["send", "jobs", "-"], Some(&lines))).contains("sent 25"));
    let attrs = stdout(&sluice(&daemon, &["queue", "attrs", "jobs"], None));
    assert!(attrs.contains("ApproximateNumberOfMessages=25"), "{attrs}");
    assert!(attrs.contains("VisibilityTimeout=120"));
    let received = stdout(&sluice(&daemon, &["--json", "receive", "jobs", "--max", "10"], None));
    let first: serde_json::Value = serde_json::from_str(received.lines().next().unwrap()).unwrap();
    assert!(first["Body"].as_str().unwrap().starts_with("line "));
    let handle = first["ReceiptHandle"].as_str().unwrap().to_owned();
    stdout(&sluice(&daemon, &["delete", "jobs", &handle], None));
    stdout(&sluice(&daemon, &["queue", "purge", "jobs"], None));
    assert!(stdout(&sluice(&daemon, &["queue", "attrs", "jobs"], None)).contains("ApproximateNumberOfMessages=0"));
    stdout(&sluice(&daemon, &["queue", "delete", "jobs"], None));
    assert_eq!(stdout(&sluice(&daemon, &["queue", "list"], None)).lines().count(), 1);
}

#[test]
fn fifo_sends_take_a_group_and_a_deduplication_id_and_print_sequence_numbers() {
    let daemon = Daemon::start();
    stdout(&sluice(&daemon, &["queue", "create", "jobs.fifo", "--attr", "FifoQueue=true"], None));
    let sent = stdout(&sluice(&daemon, &["send", "jobs.fifo", "first", "--group", "g", "--dedup-id", "one"], None));
    let (message_id, sequence) = sent.trim().split_once(' ').expect("a message id and a sequence number");
    assert_eq!(message_id.len(), 36);
    assert!(sequence.parse::<u128>().is_ok(), "{sent}");
    // The same id again is a duplicate: the same message and number.
    assert_eq!(stdout(&sluice(&daemon, &["send", "jobs.fifo", "again", "--group", "g", "--dedup-id", "one"], None)), sent);
    let lines: String = (0..25).map(|i| format!("line {i}\n")).collect();
    assert!(stdout(&sluice(&daemon, &["send", "jobs.fifo", "-", "--group", "g", "--dedup-id", "batch"], Some(&lines))).contains("sent 25"));
    let mut bodies = Vec::new();
    loop {
        let got = stdout(&sluice(&daemon, &["receive", "jobs.fifo", "--max", "10", "--delete"], None));
        if got.is_empty() {
            break;
        }
        bodies.extend(got.lines().map(str::to_owned));
    }
    let expected: Vec<String> = std::iter::once("first".to_owned()).chain((0..25).map(|i| format!("line {i}"))).collect();
    assert_eq!(bodies, expected, "in order, once each");
    let refused = sluice(&daemon, &["send", "jobs.fifo", "no group"], None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("MissingParameter"));
}

#[test]
fn errors_print_the_aws_code_and_exit_non_zero() {
    let daemon = Daemon::start();
    let output = sluice(&daemon, &["send", "missing", "x"], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("QueueDoesNotExist"), "{stderr}");
    let output = sluice(&daemon, &["queue", "create", "q", "--attr", "DelaySeconds=5000"], None);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("InvalidAttributeValue"));
}

#[test]
fn publish_lands_in_every_subscribed_queue_raw_and_filtered() {
    let daemon = Daemon::start();
    let arn = stdout(&sluice(&daemon, &["topic", "create", "news"], None)).trim().to_owned();
    assert_eq!(arn, "arn:aws:sns:us-east-1:000000000000:news");
    for queue in ["plain", "raw", "sports"] {
        stdout(&sluice(&daemon, &["queue", "create", queue], None));
    }
    let plain = stdout(&sluice(&daemon, &["subscribe", "news", "plain"], None)).trim().to_owned();
    assert!(plain.starts_with(&format!("{arn}:")), "{plain}");
    stdout(&sluice(&daemon, &["subscribe", &arn, "raw", "--raw"], None));
    stdout(&sluice(&daemon, &["subscribe", "news", "sports", "--filter", r#"{"section":["sports"]}"#], None));
    assert_eq!(stdout(&sluice(&daemon, &["topic", "subscriptions", "news"], None)).lines().count(), 3);
    assert_eq!(stdout(&sluice(&daemon, &["topic", "list"], None)).trim(), arn);

    let id = stdout(&sluice(&daemon, &["publish", "news", "goal!", "--subject", "Match", "--attr", "section=sports"], None));
    assert_eq!(id.trim().len(), 36);
    stdout(&sluice(&daemon, &["publish", "news", "rain", "--attr", "section=weather"], None));

    let envelopes = stdout(&sluice(&daemon, &["receive", "plain", "--max", "10", "--delete"], None));
    let mut texts: Vec<String> = envelopes
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["Message"].as_str().unwrap().to_owned())
        .collect();
    texts.sort();
    assert_eq!(texts, ["goal!", "rain"]);
    let mut raw: Vec<&str> = Vec::new();
    let raw_out = stdout(&sluice(&daemon, &["receive", "raw", "--max", "10", "--delete"], None));
    raw.extend(raw_out.lines());
    raw.sort();
    assert_eq!(raw, ["goal!", "rain"]);
    let sports = stdout(&sluice(&daemon, &["receive", "sports", "--max", "10", "--delete"], None));
    let envelope: serde_json::Value = serde_json::from_str(sports.trim()).unwrap();
    assert_eq!((envelope["Message"].as_str(), envelope["Subject"].as_str()), (Some("goal!"), Some("Match")));

    stdout(&sluice(&daemon, &["unsubscribe", &plain], None));
    stdout(&sluice(&daemon, &["publish", "news", "later"], None));
    assert_eq!(stdout(&sluice(&daemon, &["receive", "plain"], None)), "");
    let failed = sluice(&daemon, &["subscribe", "news", "raw", "--filter", "{broken"], None);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("InvalidParameter"));
    stdout(&sluice(&daemon, &["topic", "delete", "news"], None));
    assert_eq!(stdout(&sluice(&daemon, &["topic", "list"], None)), "");
}

#[test]
fn put_and_get_round_trip_on_a_four_shard_stream() {
    let daemon = Daemon::start();
    stdout(&sluice(&daemon, &["stream", "create", "logs", "--shards", "4"], None));
    assert_eq!(stdout(&sluice(&daemon, &["stream", "list"], None)), "logs\n");
    let described = stdout(&sluice(&daemon, &["--json", "stream", "describe", "logs"], None));
    let description: serde_json::Value = serde_json::from_str(described.trim()).unwrap();
    assert_eq!(description["Shards"].as_array().unwrap().len(), 4);
    assert_eq!((description["MaxRecordSizeInKiB"].as_i64(), description["EncryptionType"].as_str()), (Some(1024), Some("NONE")));
    stdout(&sluice(&daemon, &["stream", "create", "large", "--shards", "1", "--max-record-kib", "2048"], None));
    let described = stdout(&sluice(&daemon, &["--json", "stream", "describe", "large"], None));
    assert_eq!(serde_json::from_str::<serde_json::Value>(described.trim()).unwrap()["MaxRecordSizeInKiB"].as_i64(), Some(2048));
    stdout(&sluice(&daemon, &["stream", "mode", "large", "ON_DEMAND"], None));
    let described = stdout(&sluice(&daemon, &["--json", "stream", "describe", "large"], None));
    assert_eq!(serde_json::from_str::<serde_json::Value>(described.trim()).unwrap()["StreamMode"].as_str(), Some("ON_DEMAND"));

    // One record: prints its shard and sequence number.
    let put = stdout(&sluice(&daemon, &["put", "logs", "user-7", "first line"], None));
    let (shard, sequence) = put.trim().split_once(' ').unwrap();
    assert!(shard.starts_with("shardId-"));
    assert!(sequence.parse::<u128>().is_ok());
    // Many: each stdin line is a record, all with one key, so one shard, in order.
    let lines: String = (0..1200).map(|i| format!("line {i}\n")).collect();
    let puts = stdout(&sluice(&daemon, &["put", "logs", "user-7", "-"], Some(&lines)));
    assert_eq!(puts.lines().count(), 1200);
    assert!(puts.lines().all(|line| line.starts_with(shard)));

    let got = stdout(&sluice(&daemon, &["get", "logs", "--shard", shard, "--from", "trim-horizon"], None));
    let expected: String = std::iter::once("first line\n".to_owned()).chain((0..1200).map(|i| format!("line {i}\n"))).collect();
    assert_eq!(got, expected);
    let limited =
        stdout(&sluice(&daemon, &["get", "logs", "--shard", shard, "--from", &format!("after:{sequence}"), "--limit", "2"], None));
    assert_eq!(limited, "line 0\nline 1\n");
    let output = sluice(&daemon, &["get", "logs", "--shard", shard, "--from", "yesterday"], None);
    assert!(!output.status.success());
    stdout(&sluice(&daemon, &["stream", "delete", "logs"], None));
    stdout(&sluice(&daemon, &["stream", "delete", "large"], None));
    assert_eq!(stdout(&sluice(&daemon, &["stream", "list"], None)), "");
}

/// A `sluice stream consume` process writing what it prints to a file.
fn consumer(daemon: &Daemon, dir: &std::path::Path, worker: &str) -> (std::process::Child, std::path::PathBuf) {
    let out = dir.join(format!("{worker}.out"));
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--endpoint")
        .arg(daemon.addr.to_string())
        .args(["stream", "consume", "clicks", "--group", "counter", "--worker", worker])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{worker}.err"))).unwrap())
        .spawn()
        .unwrap();
    (child, out)
}

/// The record data in `sluice stream consume` output (`SHARD SEQUENCE DATA` lines).
fn consumed(out: &std::path::Path) -> std::collections::BTreeSet<String> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines().filter(|line| line.ends_with('!')).filter_map(|line| line.splitn(3, ' ').nth(2)).map(str::to_owned).collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn consumer_group_members_share_a_stream_and_one_killed_is_taken_over() {
    let daemon = Daemon::start_with(&["--stream-lease-seconds", "1"]);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("consumer-group-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    stdout(&sluice(&daemon, &["stream", "create", "clicks", "--shards", "4"], None));
    let batch = |round: u32| -> std::collections::BTreeSet<String> { (0..100).map(|i| format!("{round}-{i}!")).collect() };
    let put = |round: u32| {
        // Four partition keys, 25 records each.
        for key in 0..4 {
            let lines: String = (key * 25..key * 25 + 25).map(|i| format!("{round}-{i}!\n")).collect();
            stdout(&sluice(&daemon, &["put", "clicks", &format!("key-{key}"), "-"], Some(&lines)));
        }
    };
    put(0);
    let (mut one, one_out) = consumer(&daemon, &dir, "one");
    let (mut two, two_out) = consumer(&daemon, &dir, "two");
    wait_for("both members together print every record", || {
        consumed(&one_out).union(&consumed(&two_out)).cloned().collect::<std::collections::BTreeSet<_>>().is_superset(&batch(0))
    });
    let group = stdout(&sluice(&daemon, &["stream", "group", "clicks", "counter"], None));
    assert!(group.starts_with("workers: one, two\n"), "{group}");
    // kill -9 one member: the other takes its shards once its leases run out.
    one.kill().unwrap();
    one.wait().unwrap();
    let group = || -> serde_json::Value {
        let group = stdout(&sluice(&daemon, &["--json", "stream", "group", "clicks", "counter"], None));
        serde_json::from_str(group.trim()).unwrap()
    };
    wait_for("the member left holds every shard", || {
        let group = group();
        group["Workers"] == serde_json::json!(["two"]) && group["Shards"].as_array().unwrap().iter().all(|shard| shard["Worker"] == "two")
    });
    put(1);
    wait_for("the member left prints every later record", || consumed(&two_out).is_superset(&batch(1)));
    let group = group();
    let shards = group["Shards"].as_array().unwrap();
    // Every shard that took records is checkpointed (a shard no key went to has nothing to).
    assert!(shards.iter().filter(|shard| shard["Checkpoint"].is_string()).count() >= 2, "{group}");
    two.kill().unwrap();
    two.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn top_shows_queue_depths_streams_and_shards_from_the_metrics() {
    let daemon = Daemon::start();
    stdout(&sluice(&daemon, &["queue", "create", "jobs"], None));
    stdout(&sluice(&daemon, &["send", "jobs", "-"], Some("one\ntwo\nthree\n")));
    stdout(&sluice(&daemon, &["stream", "create", "clicks", "--shards", "3"], None));
    let url = format!("http://{}/metrics", daemon.http_addr.unwrap());
    let table = stdout(&sluice(&daemon, &["top", "--once", "--metrics-url", &url], None));
    let row = table.lines().find(|line| line.starts_with("jobs ")).unwrap_or_else(|| panic!("{table}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[..4], ["jobs", "3", "0", "0"], "{table}");
    let stream = table.lines().find(|line| line.starts_with("clicks ")).unwrap_or_else(|| panic!("{table}"));
    assert_eq!(stream.split_whitespace().nth(1), Some("3"), "{table}");
    assert_eq!(table.lines().filter(|line| line.starts_with("0 ") || line.starts_with("1 ")).count(), 2, "two shards: {table}");
    // A URL that serves no metrics is a clear error.
    let failed = sluice(&daemon, &["top", "--once", "--metrics-url", "http://127.0.0.1:1/metrics"], None);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("cannot reach 127.0.0.1:1"));
}

#[test]
fn top_reads_the_metrics_over_https_from_a_broker_with_a_certificate() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("top-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let authority = sluice_testkit::pki::Authority::new(&dir, "top");
    let (cert, key) = authority.issue(&dir, "server");
    let daemon = Daemon::start_with(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    let url = format!("https://{}/metrics", daemon.http_addr.unwrap());
    let ca = authority.file.to_str().unwrap();
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_sluice")).args(args).output().unwrap();
    let table = run(&["--ca-file", ca, "top", "--once", "--metrics-url", &url]);
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(text.lines().filter(|line| line.starts_with("0 ") || line.starts_with("1 ")).count(), 2, "two shards: {text}");
    // A certificate the CA file does not vouch for is refused, with the reason.
    let other = sluice_testkit::pki::Authority::new(&dir, "other");
    let refused = run(&["--ca-file", other.file.to_str().unwrap(), "top", "--once", "--metrics-url", &url]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("handshake failed"), "{}", String::from_utf8_lossy(&refused.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_delivery_stream_of_any_configuration_is_created_from_its_request_json() {
    let daemon = Daemon::start();
    stdout(&sluice(&daemon, &["stream", "create", "clicks", "--shards", "1"], None));
    let request = serde_json::json!({
        "DeliveryStreamName": "ignored-here",
        "DeliveryStreamType": "KinesisStreamAsSource",
        "KinesisStreamSourceConfiguration": {
            "KinesisStreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/clicks",
            "RoleARN": "arn:aws:iam::000000000000:role/r",
        },
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::000000000000:role/r",
            "BucketARN": "arn:aws:s3:::archive",
            "Prefix": "clicks/",
            "BufferingHints": { "SizeInMBs": 1, "IntervalInSeconds": 0 },
            "ProcessingConfiguration": { "Enabled": true, "Processors": [{ "Type": "AppendDelimiterToRecord" }] },
        },
    });
    let file = daemon.data_dir().join("request.json");
    std::fs::write(&file, request.to_string()).unwrap();
    let arn = stdout(&sluice(&daemon, &["firehose", "create-from", "archive", &format!("@{}", file.display())], None));
    assert_eq!(arn.trim(), "arn:aws:firehose:us-east-1:000000000000:deliverystream/archive");
    let described = stdout(&sluice(&daemon, &["firehose", "describe", "archive"], None));
    assert!(described.contains("KinesisStreamAsSource"), "{described}");
    let lines: String = (0..20).map(|i| format!("click {i}\n")).collect();
    stdout(&sluice(&daemon, &["put", "clicks", "k", "-"], Some(&lines)));
    let bucket = daemon.data_dir().join("firehose-objects/archive/clicks");
    wait_for("the stream's records in the bucket", || {
        let lines: Vec<String> = lines_under(&bucket).into_iter().map(|(_, line)| line).collect();
        (0..20).all(|i| lines.contains(&format!("click {i}")))
    });
}
