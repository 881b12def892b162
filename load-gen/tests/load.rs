//! `sluice-load` driven as a user runs it, against a real `sluiced` (and against the peer
//! brokers when their servers are installed; CI installs them, and there a missing one fails).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_testkit::{attribute, Daemon};

fn load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice-load")).args(args).output().expect("running sluice-load")
}

fn load_ok(args: &[&str]) -> Output {
    let output = load(args);
    assert!(output.status.success(), "sluice-load {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary.json")).expect("summary.json is JSON")
}

fn visible_and_in_flight(daemon: &Daemon, queue: &str) -> (u64, u64) {
    let conn = daemon.client();
    let attributes = conn
        .run(conn.client().get_queue_attributes(queue, &["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]))
        .expect("attributes");
    let number = |name| attribute(&attributes, name).expect(name).parse::<u64>().expect("a count");
    (number("ApproximateNumberOfMessages"), number("ApproximateNumberOfMessagesNotVisible"))
}

#[test]
fn a_send_limit_fills_a_queue_with_exactly_that_many() {
    let daemon = Daemon::start();
    let out = tempfile::tempdir().unwrap();
    let endpoint = daemon.addr.to_string();
    let dir = out.path().to_str().unwrap();
    load_ok(&[
        "--endpoint",
        &endpoint,
        "--queue",
        "fill",
        "--consumers",
        "0",
        "--send-limit",
        "1234",
        "--warmup",
        "0",
        "--duration",
        "60",
        "--out",
        dir,
    ]);
    let summary = summary(out.path());
    assert_eq!(summary["sent"], 1234);
    assert_eq!(summary["received"], 0);
    assert_eq!(visible_and_in_flight(&daemon, "fill"), (1234, 0));
}

#[test]
fn every_message_sent_is_received_and_deleted_and_measured() {
    let daemon = Daemon::start();
    let out = tempfile::tempdir().unwrap();
    let endpoint = daemon.addr.to_string();
    let dir = out.path().to_str().unwrap();
    let args = [
        "--endpoint",
        &endpoint,
        "--queue",
        "round",
        "--send-limit",
        "2000",
        "--message-size",
        "300",
        "--warmup",
        "0",
        "--duration",
        "120",
        "--out",
        dir,
    ];
    let output = load_ok(&args);
    let summary = summary(out.path());
    assert_eq!(summary["sent"], 2000);
    assert_eq!(summary["received"], 2000, "every message sent came back");
    assert_eq!(summary["end_to_end"]["count"], 2000, "each received message has an end-to-end latency");
    assert_eq!(summary["message_size"], 300);
    assert_eq!(visible_and_in_flight(&daemon, "round"), (0, 0), "every received message was deleted");
    for name in ["send", "receive", "delete", "end_to_end"] {
        let hgrm = std::fs::read_to_string(out.path().join(format!("{name}.hgrm"))).expect(".hgrm file");
        assert!(hgrm.starts_with("       Value     Percentile TotalCount"), "{name}.hgrm has HdrHistogram's header");
        assert!(hgrm.contains("Total count"), "{name}.hgrm ends with its totals");
    }
    let csv = std::fs::read_to_string(out.path().join("seconds.csv")).expect("seconds.csv");
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("second,phase,sent_per_second,received_per_second"));
    let sent_in_rows: u64 = lines.map(|row| row.split(',').nth(2).unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(sent_in_rows, 2000, "the per-second rows add up to the run");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("end_to_end") && report.contains("p99.99="), "the report gives the percentiles:\n{report}");
}

#[test]
fn the_http_gateway_target_sends_receives_and_deletes_every_message() {
    let daemon = Daemon::start();
    let out = tempfile::tempdir().unwrap();
    let endpoint = daemon.http_addr.expect("the test daemon serves HTTP").to_string();
    let dir = out.path().to_str().unwrap();
    let common = ["--target", "sluice-http", "--endpoint", &endpoint, "--warmup", "0", "--out", dir];
    // Fill first (no consumers), so the backlog is checked exactly, then drain it and more.
    load_ok(&[&common[..], &["--queue", "web", "--consumers", "0", "--send-limit", "730", "--duration", "60"]].concat());
    assert_eq!(summary(out.path())["sent"], 730);
    assert_eq!(visible_and_in_flight(&daemon, "web"), (730, 0), "the gateway's sends landed in the queue the binary client sees");
    let args = [&common[..], &["--queue", "web", "--send-limit", "1270", "--message-size", "200", "--inflight", "3", "--duration", "120"]];
    load_ok(&args.concat());
    let summary = summary(out.path());
    assert_eq!(summary["target"], "sluicehttp");
    assert_eq!(summary["sent"], 1270);
    assert_eq!(summary["received"], 2000, "the backlog and every new message came back");
    assert_eq!(summary["errors"], 0);
    assert_eq!(summary["end_to_end"]["count"], 2000, "every body kept its send stamp through JSON");
    assert_eq!(visible_and_in_flight(&daemon, "web"), (0, 0), "every received message was deleted");
}

#[test]
fn fanout_delivers_every_published_message_to_every_queue() {
    let daemon = Daemon::start();
    let out = tempfile::tempdir().unwrap();
    let endpoint = daemon.addr.to_string();
    let dir = out.path().to_str().unwrap();
    #[rustfmt::skip]
    let args = [
        "--endpoint", &endpoint, "--workload", "fanout", "--queue", "fan", "--subscribers", "3", "--consumers", "3",
        "--send-limit", "600", "--warmup", "0", "--duration", "120", "--out", dir,
    ];
    load_ok(&args);
    let summary = summary(out.path());
    assert_eq!(summary["workload"], "fanout");
    assert_eq!(summary["sent"], 600);
    assert_eq!(summary["deliveries_per_message"], 3);
    assert_eq!(summary["received"], 1800, "each of the 3 queues received every published message");
    assert_eq!(summary["end_to_end"]["count"], 1800);
    for queue in ["fan-0", "fan-1", "fan-2"] {
        assert_eq!(visible_and_in_flight(&daemon, queue), (0, 0), "{queue} was drained and its messages deleted");
    }
}

#[test]
fn stream_records_reach_every_push_consumer_of_their_shard() {
    let daemon = Daemon::start();
    let out = tempfile::tempdir().unwrap();
    let endpoint = daemon.addr.to_string();
    let dir = out.path().to_str().unwrap();
    #[rustfmt::skip]
    let args = [
        "--endpoint", &endpoint, "--workload", "stream", "--queue", "clicks", "--shards", "4", "--consumers", "8",
        "--batch", "50", "--send-limit", "1000", "--message-size", "1024", "--warmup", "0", "--duration", "120", "--out", dir,
    ];
    load_ok(&args);
    let summary = summary(out.path());
    assert_eq!(summary["workload"], "stream");
    assert_eq!(summary["sent"], 1000);
    assert_eq!(summary["deliveries_per_message"], 2);
    assert_eq!(summary["received"], 2000, "each shard has two push consumers, and each got every record of its shard");
    assert_eq!(summary["errors"], 0);
    let c = daemon.client();
    let description = c.run(c.client().describe_stream("clicks")).unwrap();
    assert_eq!(description.shards.len(), 4);
    assert_eq!(description.consumer_count, 2);
}

#[test]
fn an_open_loop_sends_every_batch_on_its_schedule() {
    // 1,000 msgs/s in batches of 10 for 2 s: 200 batches are due, and every one is sent,
    // however late, so the count is exact whatever the machine is doing.
    let daemon = Daemon::start();
    let out = tempfile::tempdir().unwrap();
    let endpoint = daemon.addr.to_string();
    let dir = out.path().to_str().unwrap();
    load_ok(&["--endpoint", &endpoint, "--queue", "paced", "--rate", "1000", "--warmup", "0", "--duration", "2", "--out", dir]);
    let summary = summary(out.path());
    assert_eq!(summary["mode"], "open");
    assert_eq!(summary["sent"], 2000);
    assert_eq!(summary["send"]["count"], 200);
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    for (args, reason) in [
        (&["--batch", "11"][..], "--batch must be from 1 to 10"),
        (&["--workload", "stream", "--shards", "4", "--consumers", "3"][..], "must be a multiple of --shards"),
        (&["--workload", "stream", "--shards", "0", "--consumers", "0"][..], "--shards must be from 1 to 1000"),
        (&["--workload", "stream", "--batch", "501"][..], "--batch must be from 1 to 500"),
        (&["--workload", "fanout", "--subscribers", "40", "--consumers", "4"][..], "a consumer for every subscribed queue"),
        (&["--rate", "10", "--inflight", "2"][..], "cannot be used with"),
        (&["--target", "kafka"][..], "invalid value 'kafka'"),
        (&["--target", "sluice-http", "--workload", "fanout"][..], "runs the queue workload only"),
    ] {
        let output = load(args);
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(reason), "{args:?}: expected {reason:?} in:\n{stderr}");
    }
}

/// A peer broker on a free loopback port, stopped when dropped.
struct Peer {
    child: Child,
    port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `program` with `args` (`{port}` and `{dir}` filled in), or says it is not installed.
fn peer(program: &str, args: &[&str], dir: &Path) -> Option<Peer> {
    let port = free_port();
    let args: Vec<String> = args.iter().map(|a| a.replace("{port}", &port.to_string()).replace("{dir}", dir.to_str().unwrap())).collect();
    let child = match Command::new(program).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{program} is not installed: .ci/run installs it with bench/scripts/install-peers.sh"
            );
            eprintln!("{program} is not installed; skipping (bench/scripts/install-peers.sh installs it)");
            return None;
        }
        Err(error) => panic!("starting {program}: {error}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{program} did not open port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Peer { child, port })
}

fn round_trip_through(target: &str, peer: &Peer) {
    let out = tempfile::tempdir().unwrap();
    let endpoint = format!("127.0.0.1:{}", peer.port);
    let dir = out.path().to_str().unwrap();
    load_ok(&["--target", target, "--endpoint", &endpoint, "--send-limit", "1500", "--warmup", "0", "--duration", "120", "--out", dir]);
    let summary = summary(out.path());
    assert_eq!(summary["sent"], 1500, "{target}");
    assert_eq!(summary["received"], 1500, "{target}: every message sent came back");
    assert_eq!(summary["errors"], 0, "{target}");
    assert!(summary["acknowledged"].as_str().is_some_and(|s| !s.is_empty()), "{target} says what its acknowledgement guarantees");

    // Fan-out: every subscriber gets every message.
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    #[rustfmt::skip]
    let args = [
        "--target", target, "--endpoint", &endpoint, "--workload", "fanout", "--subscribers", "3", "--consumers", "3",
        "--send-limit", "600", "--warmup", "0", "--duration", "120", "--out", dir,
    ];
    load_ok(&args);
    let fanout = self::summary(out.path());
    assert_eq!(fanout["sent"], 600, "{target} fanout");
    assert_eq!(fanout["received"], 1800, "{target} fanout: each of 3 subscribers received every message");
    assert_eq!(fanout["errors"], 0, "{target} fanout");

    // Stream: 4 shards, 2 readers each; every record reaches both readers of its shard.
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    #[rustfmt::skip]
    let args = [
        "--target", target, "--endpoint", &endpoint, "--workload", "stream", "--shards", "4", "--consumers", "8",
        "--batch", "50", "--send-limit", "1000", "--warmup", "0", "--duration", "120", "--out", dir,
    ];
    load_ok(&args);
    let stream = self::summary(out.path());
    assert_eq!(stream["sent"], 1000, "{target} stream");
    assert_eq!(stream["received"], 2000, "{target} stream: both readers of each shard got every record");
    assert_eq!(stream["errors"], 0, "{target} stream");
}

#[test]
fn redis_streams_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let args =
        ["--bind", "127.0.0.1", "--port", "{port}", "--dir", "{dir}", "--save", "", "--appendonly", "yes", "--appendfsync", "always"];
    let Some(redis) = peer("redis-server", &args, dir.path()) else { return };
    round_trip_through("redis", &redis);
}

#[test]
fn nats_jetstream_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = peer("nats-server", &["-a", "127.0.0.1", "-p", "{port}", "-js", "-sd", "{dir}"], dir.path()) else { return };
    round_trip_through("nats", &nats);
}
