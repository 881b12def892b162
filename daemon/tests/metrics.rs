//! `/metrics` through a real daemon: every family moves as the operations say (send 10, scrape,
//! see 10), summed over both shards; enhanced monitoring adds and removes a stream's
//! shard-level series; the gateway counts its requests; OpenMetrics when asked; the series
//! of a deleted queue go; `--metrics-listen` serves the same.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use bytes::Bytes;
use sluice_client::*;
use sluice_testkit::*;

/// One HTTP/1.1 exchange: the response's body.
fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

fn scrape(addr: SocketAddr, accept: &str) -> String {
    http(addr, &format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"))
}

/// The value of the sample `series` (name and labels, exactly as rendered), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[track_caller]
fn assert_sample(text: &str, series: &str, expected: f64) {
    assert_eq!(sample(text, series), Some(expected), "{series} in:\n{text}");
}

fn receive(queue: &str, max: i32) -> ReceiveMessage {
    ReceiveMessage { queue: queue.into(), max_messages: Some(max), wait_time_seconds: Some(0), ..ReceiveMessage::default() }
}

#[test]
fn every_family_moves_as_the_operations_say() {
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let daemon = Daemon::start_with(&["--metrics-listen", &metrics_port.to_string()]);
    let gateway = daemon.http_addr.unwrap();
    let c = daemon.client();

    // Queues: 10 sent, 4 received and deleted, one empty receive, one moved to a dead-letter queue.
    c.run(c.client().create_queue("jobs", vec![], vec![])).unwrap();
    for i in 0..10 {
        c.run(c.client().send_message("jobs", format!("job {i}"))).unwrap();
    }
    assert!(c.run(c.client().send_message("no-such-queue", "x")).is_err());
    let text = scrape(metrics_port, "text/plain");
    assert_sample(&text, r#"sluice_queue_messages_sent_total{queue="jobs"}"#, 10.0);
    // The binary protocol's requests, by action and outcome.
    assert_sample(&text, r#"sluice_binary_requests_total{action="SendMessage",code="ok"}"#, 10.0);
    assert_sample(&text, r#"sluice_binary_requests_total{action="SendMessage",code="QueueDoesNotExist"}"#, 1.0);
    assert_sample(&text, r#"sluice_binary_requests_total{action="CreateQueue",code="ok"}"#, 1.0);
    assert_sample(&text, r#"sluice_queue_messages_visible{queue="jobs"}"#, 10.0);
    let resident = sample(&text, r#"sluice_queue_resident_bytes{queue="jobs"}"#).unwrap_or_default();
    assert!(resident >= 50.0, "ten bodies of 5 bytes at least, held in memory: {resident}");
    assert_sample(&text, r#"sluice_queue_messages_on_disk_only{queue="jobs"}"#, 0.0);
    let logged = sample(&text, r#"sluice_queue_log_bytes{queue="jobs"}"#).unwrap_or_default();
    assert!(logged >= 50.0, "ten records of at least 5 bytes in the log: {logged}");
    let mut received = Vec::new();
    while received.len() < 4 {
        received.extend(c.run(c.client().receive_message(receive("jobs", 4 - received.len() as i32))).unwrap());
    }
    let text = scrape(metrics_port, "text/plain");
    assert_sample(&text, r#"sluice_queue_messages_received_total{queue="jobs"}"#, 4.0);
    assert_sample(&text, r#"sluice_queue_messages_in_flight{queue="jobs"}"#, 4.0);
    assert_sample(&text, r#"sluice_queue_messages_visible{queue="jobs"}"#, 6.0);
    assert!(sample(&text, r#"sluice_queue_oldest_message_age_seconds{queue="jobs"}"#).is_some_and(|age| age >= 0.0));
    for message in &received {
        c.run(c.client().delete_message("jobs", &message.receipt_handle)).unwrap();
    }
    let text = scrape(metrics_port, "text/plain");
    let after = sample(&text, r#"sluice_queue_resident_bytes{queue="jobs"}"#).unwrap_or_default();
    assert!(after < resident, "deleted messages leave memory: {after} of {resident}");
    let logged_after = sample(&text, r#"sluice_queue_log_bytes{queue="jobs"}"#).unwrap_or_default();
    assert!(logged_after < logged, "deleted messages' records are no longer the queue's: {logged_after} of {logged}");
    c.run(c.client().create_queue("empty", vec![], vec![])).unwrap();
    assert!(c.run(c.client().receive_message(receive("empty", 1))).unwrap().is_empty());
    let text = scrape(metrics_port, "text/plain");
    assert_sample(&text, r#"sluice_queue_messages_deleted_total{queue="jobs"}"#, 4.0);
    assert_sample(&text, r#"sluice_queue_messages_in_flight{queue="jobs"}"#, 0.0);
    assert_sample(&text, r#"sluice_queue_empty_receives_total{queue="empty"}"#, 1.0);
    assert_sample(&text, r#"sluice_queue_oldest_message_age_seconds{queue="empty"}"#, 0.0);

    c.run(c.client().create_queue("dlq", vec![], vec![])).unwrap();
    let redrive = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"1"}"#;
    c.run(c.client().create_queue("fragile", vec![("RedrivePolicy".into(), redrive.into())], vec![])).unwrap();
    c.run(c.client().send_message("fragile", "poison")).unwrap();
    let first = loop {
        if let Some(message) = c.run(c.client().receive_message(receive("fragile", 1))).unwrap().pop() {
            break message;
        }
    };
    c.run(c.client().change_message_visibility("fragile", &first.receipt_handle, 0)).unwrap();
    let mut tries = 0;
    while sample(&scrape(metrics_port, "text/plain"), r#"sluice_queue_messages_moved_to_dead_letter_total{queue="fragile"}"#) != Some(1.0) {
        let again = c.run(c.client().receive_message(receive("fragile", 1))).unwrap();
        assert!(again.is_empty(), "received past maxReceiveCount");
        tries += 1;
        assert!(tries < 100, "never moved to the dead-letter queue");
    }

    // Topics: three subscribed queues — one reading the feed, one raw, one whose filter
    // policy turns every message away.
    let topic = c.run(c.client().create_topic("news", vec![], vec![])).unwrap();
    for (name, attributes) in [
        ("readers", vec![]),
        ("raw-readers", vec![("RawMessageDelivery".to_owned(), "true".to_owned())]),
        ("sports-only", vec![("FilterPolicy".to_owned(), r#"{"section":["sports"]}"#.to_owned())]),
    ] {
        c.run(c.client().create_queue(name, vec![], vec![])).unwrap();
        let arn = format!("arn:aws:sqs:us-east-1:000000000000:{name}");
        c.run(c.client().subscribe(&topic, "sqs", &arn, attributes)).unwrap();
    }
    for i in 0..3 {
        c.run(c.client().publish(&topic, format!("story {i}"))).unwrap();
    }
    let text = scrape(metrics_port, "text/plain");
    assert_sample(&text, r#"sluice_topic_messages_published_total{topic="news"}"#, 3.0);
    assert_sample(&text, r#"sluice_topic_published_bytes_total{topic="news"}"#, 21.0);
    assert_sample(&text, r#"sluice_topic_deliveries_total{topic="news",protocol="sqs"}"#, 6.0);
    assert_sample(&text, r#"sluice_topic_filtered_out_total{topic="news"}"#, 3.0);
    assert_sample(&text, r#"sluice_topic_delivery_failures_total{topic="news",protocol="sqs"}"#, 0.0);
    assert_sample(&text, r#"sluice_queue_messages_visible{queue="raw-readers"}"#, 3.0);
    // Delivered messages count as sent to each queue: one by one at the publish (a filtered
    // subscription), through the feed as the queue takes them (on receive).
    let sports = PublishEntry {
        message: Bytes::from_static(b"goal"),
        attributes: vec![MessageAttribute {
            name: "section".into(),
            data_type: "String".into(),
            string_value: Some("sports".into()),
            binary_value: None,
        }],
        ..PublishEntry::default()
    };
    c.run(c.client().publish_entry(&topic, sports)).unwrap();
    let text = scrape(metrics_port, "text/plain");
    assert_sample(&text, r#"sluice_queue_messages_sent_total{queue="sports-only"}"#, 1.0);
    assert_sample(&text, r#"sluice_queue_messages_sent_total{queue="readers"}"#, 0.0);
    let mut taken = 0;
    while taken < 4 {
        taken += c.run(c.client().receive_message(receive("readers", 10))).unwrap().len();
    }
    assert_sample(&scrape(metrics_port, "text/plain"), r#"sluice_queue_messages_sent_total{queue="readers"}"#, 4.0);

    // Streams: 5 records in, read back; shard-level series only under enhanced monitoring.
    c.run(c.client().create_stream("clicks", 2)).unwrap();
    let records: Vec<PutRecordsEntry> = (0..5)
        .map(|i| PutRecordsEntry { data: Bytes::from(format!("click{i}")), partition_key: format!("k{i}"), explicit_hash_key: None })
        .collect();
    c.run(c.client().put_records("clicks", records)).unwrap();
    let shards = c.run(c.client().describe_stream("clicks")).unwrap().shards;
    let mut read = 0;
    for shard in &shards {
        let iterator = c.run(c.client().get_shard_iterator("clicks", &shard.shard_id, StartingPosition::new("TRIM_HORIZON"))).unwrap();
        read += c.run(c.client().get_records(&iterator, None)).unwrap().records.len();
    }
    assert_eq!(read, 5);
    let text = scrape(metrics_port, "text/plain");
    assert_sample(&text, r#"sluice_stream_incoming_records_total{stream="clicks"}"#, 5.0);
    assert_sample(&text, r#"sluice_stream_consumers{stream="clicks"}"#, 0.0);
    c.run(c.client().register_stream_consumer("arn:aws:kinesis:us-east-1:000000000000:stream/clicks", "fan")).unwrap();
    assert_sample(&scrape(gateway, "text/plain"), r#"sluice_stream_consumers{stream="clicks"}"#, 1.0);
    assert_sample(&text, r#"sluice_stream_incoming_bytes_total{stream="clicks"}"#, 5.0 * (6.0 + 2.0));
    assert_sample(&text, r#"sluice_stream_outgoing_records_total{stream="clicks"}"#, 5.0);
    assert_sample(&text, r#"sluice_stream_get_records_total{stream="clicks"}"#, 2.0);
    assert!(!text.contains("sluice_stream_shard_incoming_records_total"));
    let enable = Op::SetEnhancedMonitoring { stream: "clicks".into(), metrics: vec!["IncomingRecords".into()], enable: true };
    match c.run(c.client().call(enable)).unwrap() {
        Reply::EnhancedMonitoring { current, desired, .. } => {
            assert!(current.is_empty());
            assert_eq!(desired, ["IncomingRecords"]);
        }
        other => panic!("EnableEnhancedMonitoring answered {other:?}"),
    }
    assert_eq!(c.run(c.client().describe_stream("clicks")).unwrap().shard_level_metrics, ["IncomingRecords"]);
    let text = scrape(metrics_port, "text/plain");
    let per_shard: f64 = shards
        .iter()
        .map(|shard| {
            sample(&text, &format!(r#"sluice_stream_shard_incoming_records_total{{stream="clicks",shard="{}"}}"#, shard.shard_id)).unwrap()
        })
        .sum();
    assert_eq!(per_shard, 5.0, "{text}");
    assert!(!text.contains("sluice_stream_shard_outgoing_records_total"));
    let disable = Op::SetEnhancedMonitoring { stream: "clicks".into(), metrics: vec!["ALL".into()], enable: false };
    c.run(c.client().call(disable)).unwrap();
    assert!(!scrape(metrics_port, "text/plain").contains("sluice_stream_shard_incoming_records_total"));
    let unknown = Op::SetEnhancedMonitoring { stream: "clicks".into(), metrics: vec!["Everything".into()], enable: true };
    assert_code(c.run(c.client().call(unknown)), ErrorCode::Validation);

    // The gateway counts its requests by service, action and outcome.
    let list = "POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: AmazonSQS.ListQueues\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    http(gateway, &list.replace("{host}", &gateway.to_string()));
    let text = scrape(gateway, "text/plain");
    assert_sample(&text, r#"sluice_gateway_request_seconds_count{service="sqs",action="ListQueues",code="ok"}"#, 1.0);
    // Shards: the queue log's group commits, summed over both shards.
    let appends: f64 = (0..2).map(|shard| sample(&text, &format!(r#"sluice_shard_log_appends_total{{shard="{shard}"}}"#)).unwrap()).sum();
    let commits: f64 =
        (0..2).map(|shard| sample(&text, &format!(r#"sluice_shard_group_commit_records_count{{shard="{shard}"}}"#)).unwrap()).sum();
    assert!(appends >= 10.0 && commits >= 1.0, "{appends} appends in {commits} commits");
    // Requests in flight and the bus: idle between requests, but for the scrape itself — the
    // other shard is serving its call (and the shard that took it waits on that call, if it
    // made its own report after sending it).
    let summed = |name: &str| -> f64 { (0..2).map(|shard| sample(&text, &format!(r#"{name}{{shard="{shard}"}}"#)).unwrap()).sum() };
    assert_eq!(summed("sluice_shard_bus_calls_serving"), 1.0, "{text}");
    assert!(summed("sluice_shard_bus_calls_pending") <= 1.0, "{text}");
    let in_flight: f64 =
        (0..2).map(|shard| sample(&text, &format!(r#"sluice_shard_requests_in_flight{{shard="{shard}"}}"#)).unwrap()).sum();
    assert_eq!(in_flight, 0.0, "nothing in flight between requests");
    assert!(sample(&text, r#"sluice_shard_busy_seconds_total{shard="0"}"#).is_some_and(|busy| busy > 0.0), "{text}");
    // The task queues' delays are probed twice a second, on every shard.
    let probed = |text: &str, shard: usize, queue: &str| {
        sample(text, &format!(r#"sluice_shard_task_queue_delay_seconds_count{{shard="{shard}",queue="{queue}"}}"#)).unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = scrape(gateway, "text/plain");
        if (0..2).all(|shard| probed(&text, shard, "default") >= 1.0 && probed(&text, shard, "background") >= 1.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no task-queue probe:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // OpenMetrics when asked; a deleted queue's series go.
    let open = scrape(metrics_port, "application/openmetrics-text; version=1.0.0");
    assert!(open.trim_end().ends_with("# EOF"), "{open}");
    assert!(!scrape(metrics_port, "text/plain").contains("# EOF"));
    c.run(c.client().delete_queue("jobs")).unwrap();
    assert!(!scrape(metrics_port, "text/plain").contains(r#"queue="jobs""#));
}

#[test]
fn messages_past_the_memory_budget_are_counted_on_disk_only() {
    let daemon = Daemon::start_with(&["--memory-budget", "2M"]);
    let gateway = daemon.http_addr.unwrap();
    let c = daemon.client();
    c.run(c.client().create_queue("backlog", vec![], vec![])).unwrap();
    let body = "x".repeat(64 << 10);
    for _ in 0..100 {
        c.run(c.client().send_message("backlog", body.clone())).unwrap();
    }
    let text = scrape(gateway, "text/plain");
    assert_sample(&text, r#"sluice_queue_messages_visible{queue="backlog"}"#, 100.0);
    let on_disk = sample(&text, r#"sluice_queue_messages_on_disk_only{queue="backlog"}"#).unwrap_or_default();
    let resident = sample(&text, r#"sluice_queue_resident_bytes{queue="backlog"}"#).unwrap_or_default();
    assert!(on_disk >= 60.0, "6.4 MB of messages over a 2 MB budget: {on_disk} only on disk");
    assert!(resident <= 2.5 * 1024.0 * 1024.0, "within the budget: {resident}");
}
