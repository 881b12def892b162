//! Firehose delivery streams through a real `sluiced` and the real client: records put on both
//! cores are delivered as objects in Firehose's key layout, compressed as configured, to the
//! local bucket directory; every acknowledged record is delivered after restarts (SIGTERM and
//! kill -9, with and without puts between) and after a destination outage, which refuses puts
//! past the buffer budget and loses nothing; bad configurations and puts get typed errors.
//!
//! Rounds of the restart test: `SLUICE_FIREHOSE_ROUNDS` (default 3, which CI runs).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use sluice_client::*;
use sluice_testkit::*;

fn rounds() -> usize {
    std::env::var("SLUICE_FIREHOSE_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(3).max(2)
}

/// A DirectPut delivery stream's configuration: bucket `bucket`, prefix `app/`, newline
/// delimiter, `compression`, buffering of 1 MiB or `interval` seconds.
fn configuration(bucket: &str, compression: &str, interval: u32) -> String {
    json!({
        "DeliveryStreamType": "DirectPut",
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::000000000000:role/firehose",
            "BucketARN": format!("arn:aws:s3:::{bucket}"),
            "Prefix": "app/",
            "CompressionFormat": compression,
            "BufferingHints": { "SizeInMBs": 1, "IntervalInSeconds": interval },
            "ProcessingConfiguration": { "Enabled": true, "Processors": [{ "Type": "AppendDelimiterToRecord" }] },
        },
    })
    .to_string()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).expect("a GZIP object");
    out
}

/// The records delivered to `bucket_dir` (GZIP objects of newline-delimited records): how many
/// times each was delivered.
fn delivered(bucket_dir: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (key, data) in files_under(bucket_dir) {
        assert!(key.ends_with(".gz"), "{key} is not named as a GZIP object");
        for line in String::from_utf8(gunzip(&data)).unwrap().lines() {
            *counts.entry(line.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// Waits (bounded) until every record of `expected` is in `bucket_dir`; returns the counts.
#[track_caller]
fn wait_for_all(bucket_dir: &Path, expected: &[String]) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = delivered(bucket_dir);
        let missing: Vec<&String> = expected.iter().filter(|record| !counts.contains_key(*record)).collect();
        if missing.is_empty() {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged records never delivered, e.g. {:?}",
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(5)]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Puts `count` records tagged `tag` in batches; returns those acknowledged.
fn put_batch(c: &Conn, stream: &str, tag: &str, count: usize) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let records: Vec<String> = (0..count).map(|i| format!("{tag}-{i:05}")).collect();
    for chunk in records.chunks(250) {
        let data = chunk.iter().map(|record| Bytes::from(record.clone())).collect();
        let results = c.run(c.client().put_firehose_records(stream, data, true)).unwrap();
        assert_eq!(results.len(), chunk.len());
        for (record, result) in chunk.iter().zip(results) {
            assert!(result.record_id.is_some(), "record {record} was refused: {result:?}");
            acknowledged.push(record.clone());
        }
    }
    acknowledged
}

struct Setup {
    _objects: tempfile::TempDir,
    bucket_dir: PathBuf,
    daemon: Daemon,
}

fn start(extra: &[&str]) -> Setup {
    let objects = tempfile::tempdir().unwrap();
    let local = objects.path().to_string_lossy().into_owned();
    let mut args = vec!["--firehose-local-dir", &local];
    args.extend_from_slice(extra);
    let daemon = Daemon::start_with(&args);
    Setup { bucket_dir: objects.path().join("logs"), _objects: objects, daemon }
}

#[test]
fn records_from_both_cores_are_delivered_as_gzip_objects_in_firehoses_key_layout() {
    let setup = start(&[]);
    let (first, second) = (setup.daemon.client_on_shard(0), setup.daemon.client_on_shard(1));
    let arn = first.run(first.client().create_delivery_stream("events", &configuration("logs", "GZIP", 1), vec![])).unwrap();
    assert_eq!(arn, "arn:aws:firehose:us-east-1:000000000000:deliverystream/events");
    let mut expected = put_batch(&first, "events", "a", 1500);
    expected.extend(put_batch(&second, "events", "b", 1500));
    // One PutRecord too, by ARN.
    let single = first.run(first.client().put_firehose_records(&arn, vec![Bytes::from_static(b"single")], false)).unwrap();
    assert!(single[0].record_id.is_some());
    expected.push("single".into());
    let counts = wait_for_all(&setup.bucket_dir, &expected);
    assert_eq!(counts.len(), expected.len(), "only what was put is delivered");
    assert!(counts.values().all(|count| *count == 1), "a run without failures delivers each record once");
    for key in files_under(&setup.bucket_dir).keys() {
        // app/YYYY/MM/DD/HH/events-1-YYYY-MM-DD-HH-MM-SS-<uuid>.gz
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 6, "{key}");
        assert_eq!(parts[0], "app");
        assert!(parts[1].len() == 4 && parts[2].len() == 2 && parts[3].len() == 2 && parts[4].len() == 2, "{key}");
        assert!(parts[5].starts_with(&format!("events-1-{}-{}-{}-{}-", parts[1], parts[2], parts[3], parts[4])), "{key}");
        assert!(parts[5].ends_with(".gz") && parts[5].len() == "events-1-2026-12-07-13-45-29-".len() + 36 + 3, "{key}");
    }
    let description: serde_json::Value =
        serde_json::from_str(&first.run(first.client().describe_delivery_stream("events")).unwrap()).unwrap();
    assert_eq!(description["DeliveryStreamStatus"], "ACTIVE");
    assert_eq!(description["Destinations"][0]["ExtendedS3DestinationDescription"]["BucketARN"], "arn:aws:s3:::logs");
    assert_eq!(first.run(first.client().list_delivery_streams()).unwrap(), vec!["events".to_owned()]);
    // The metrics say the same (the counters move just after each object is written).
    let records = expected.len() as f64;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(setup.daemon.http_addr.unwrap());
        let value = |series: &str| text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok());
        let found = [
            value(r#"sluice_firehose_incoming_records_total{delivery_stream="events"}"#),
            value(r#"sluice_firehose_delivered_records_total{delivery_stream="events"}"#),
            value(r#"sluice_firehose_buffered_records{delivery_stream="events"}"#),
            value(r#"sluice_firehose_data_freshness_seconds{delivery_stream="events"}"#),
        ];
        if found == [Some(records), Some(records), Some(0.0), Some(0.0)] {
            break;
        }
        assert!(Instant::now() < deadline, "the Firehose metrics never came to {records} records in and out: {found:?}\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metrics(addr: std::net::SocketAddr) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

#[test]
fn every_acknowledged_record_is_delivered_after_restarts_and_kill_9() {
    let mut setup = start(&[]);
    let mut expected = Vec::new();
    {
        let c = setup.daemon.client();
        // A long interval: records stay buffered across the restarts below.
        c.run(c.client().create_delivery_stream("durable", &configuration("logs", "GZIP", 900), vec![])).unwrap();
    }
    for round in 0..rounds() {
        // Puts on both cores, then a stop: SIGTERM on even rounds, kill -9 on odd ones.
        for shard in 0..2 {
            let c = setup.daemon.client_on_shard(shard);
            expected.extend(put_batch(&c, "durable", &format!("r{round}s{shard}"), 400));
        }
        if round % 2 == 0 {
            assert!(setup.daemon.terminate().success());
        } else {
            setup.daemon.kill();
        }
        setup.daemon.restart();
        // A start with no puts between, too.
        if round == 0 {
            setup.daemon.kill();
            setup.daemon.restart();
        }
    }
    assert!(delivered(&setup.bucket_dir).is_empty(), "nothing is due before the interval");
    // Now deliver: the interval drops to 0 (an update applies at once).
    let c = setup.daemon.client();
    let update = json!({ "ExtendedS3DestinationUpdate": { "BufferingHints": { "IntervalInSeconds": 0, "SizeInMBs": 1 } } });
    c.run(c.client().update_destination("durable", "1", &update.to_string())).unwrap();
    let counts = wait_for_all(&setup.bucket_dir, &expected);
    assert_eq!(counts.len(), expected.len());
    // Delivered, then killed, then started again: delivered records are not delivered again
    // once marked, and new ones still go.
    setup.daemon.kill();
    setup.daemon.restart();
    let c = setup.daemon.client();
    expected.extend(put_batch(&c, "durable", "after", 300));
    let counts = wait_for_all(&setup.bucket_dir, &expected);
    let duplicates: usize = counts.values().map(|count| count - 1).sum();
    assert_eq!(counts.len(), expected.len());
    assert!(duplicates <= expected.len() / 10, "{duplicates} duplicates: deliveries are marked as they complete");
}

#[test]
fn a_destination_outage_loses_nothing_and_refuses_puts_past_the_buffer_budget() {
    let setup = start(&["--firehose-buffer-bytes", "64K"]);
    // The bucket's directory cannot be made while a file stands in its place.
    std::fs::create_dir_all(setup.bucket_dir.parent().unwrap()).unwrap();
    std::fs::write(&setup.bucket_dir, b"in the way").unwrap();
    let c = setup.daemon.client();
    c.run(c.client().create_delivery_stream("outage", &configuration("logs", "GZIP", 0), vec![])).unwrap();
    let mut expected = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        let record = format!("outage-{i:04}-{}", "x".repeat(1000));
        match c.run(c.client().put_firehose_records("outage", vec![Bytes::from(record.clone())], false)) {
            Ok(results) => {
                assert!(results[0].record_id.is_some());
                expected.push(record);
            }
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    assert_code::<()>(Err(refused.expect("puts past 64 KiB are refused while the destination is down")), ErrorCode::ServiceUnavailable);
    assert!(expected.len() >= 60, "puts are taken until the budget is spent ({} were)", expected.len());
    // The destination comes back: everything taken is delivered, and puts are taken again.
    std::fs::remove_file(&setup.bucket_dir).unwrap();
    let counts = wait_for_all(&setup.bucket_dir, &expected);
    assert_eq!(counts.len(), expected.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.run(c.client().put_firehose_records("outage", vec![Bytes::from_static(b"again")], false)) {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(error) => panic!("puts are still refused once the destination took everything: {error}"),
        }
    }
}

#[test]
fn bad_configurations_and_puts_get_typed_errors_and_deleting_removes_the_buffers() {
    let setup = start(&[]);
    let c = setup.daemon.client();
    let create = |name: &str, config: &str| c.run(c.client().create_delivery_stream(name, config, vec![]));
    assert_code(create("bad name!", &configuration("logs", "GZIP", 1)), ErrorCode::InvalidArgument);
    assert_code(create("x", "{}"), ErrorCode::InvalidArgument);
    assert_code(create("x", "not json"), ErrorCode::InvalidArgument);
    assert_code(create("x", &configuration("Bad_Bucket", "GZIP", 1)), ErrorCode::InvalidArgument);
    assert_code(create("x", &configuration("logs", "LZ4", 1)), ErrorCode::InvalidArgument);
    let unknown = json!({ "ExtendedS3DestinationConfiguration": { "RoleARN": "r", "BucketARN": "arn:aws:s3:::logs", "Surprise": 1 } });
    assert_code(create("x", &unknown.to_string()), ErrorCode::InvalidArgument);
    let escape = json!({ "ExtendedS3DestinationConfiguration": { "RoleARN": "r", "BucketARN": "arn:aws:s3:::logs", "Prefix": "../up/" } });
    assert_code(create("x", &escape.to_string()), ErrorCode::InvalidArgument);
    create("ok", &configuration("logs", "Snappy", 1)).unwrap();
    assert_code(create("ok", &configuration("logs", "GZIP", 1)), ErrorCode::ResourceInUse);

    let put = |name: &str, records: Vec<Bytes>, batch: bool| c.run(c.client().put_firehose_records(name, records, batch));
    assert_code(put("missing", vec![Bytes::from_static(b"x")], false), ErrorCode::ResourceNotFound);
    assert_code(put("ok", vec![Bytes::from(vec![0u8; 1_000 * 1024 + 1])], false), ErrorCode::Validation);
    assert_code(put("ok", (0..501).map(|_| Bytes::from_static(b"x")).collect(), true), ErrorCode::Validation);
    assert_code(put("ok", vec![], true), ErrorCode::Validation);
    assert_code(put("ok", (0..5).map(|_| Bytes::from(vec![1u8; 1_000 * 1024])).collect(), true), ErrorCode::InvalidArgument);
    assert_code(c.run(c.client().update_destination("ok", "7", "{}")), ErrorCode::ConcurrentModification);
    assert_code(c.run(c.client().describe_delivery_stream("missing")), ErrorCode::ResourceNotFound);

    // Records taken, then the stream deleted: its buffers go from every core.
    put("ok", vec![Bytes::from_static(b"x")], false).unwrap();
    let buffers = setup.daemon.data_dir().join("firehose");
    assert!(std::fs::read_dir(&buffers).unwrap().count() > 0);
    c.run(c.client().delete_delivery_stream("ok")).unwrap();
    assert_code(c.run(c.client().delete_delivery_stream("ok")), ErrorCode::ResourceNotFound);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&buffers).unwrap().count() > 0 {
        assert!(
            Instant::now() < deadline,
            "a deleted delivery stream's buffers stay: {:?}",
            std::fs::read_dir(&buffers).unwrap().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(c.run(c.client().list_delivery_streams()).unwrap().is_empty());
}

// ---------------------------------------------------------------- HTTP endpoint destinations

/// How the test's HTTP endpoint answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    /// 200 with the request's id, as the specification asks.
    Ok,
    /// 500.
    Fail,
    /// 200 naming another request id (a delivery that did not happen).
    WrongId,
}

/// One request the endpoint got: its headers (names lowercased) and its body (decompressed).
#[derive(Clone, Debug)]
struct Received {
    headers: BTreeMap<String, String>,
    body: serde_json::Value,
}

/// A Firehose HTTP endpoint on 127.0.0.1: keeps every request, answers as `answer` says.
struct Endpoint {
    url: String,
    answer: std::sync::Arc<std::sync::Mutex<Answer>>,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Endpoint {
    fn start() -> Endpoint {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/firehose", listener.local_addr().unwrap());
        let answer = std::sync::Arc::new(std::sync::Mutex::new(Answer::Ok));
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (answers, kept) = (answer.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (answers, kept) = (answers.clone(), kept.clone());
                std::thread::spawn(move || serve(stream, &answers, &kept));
            }
        });
        Endpoint { url, answer, received }
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Every record the endpoint took (answered 200 with the right id), decoded.
    fn records(&self) -> Vec<String> {
        use base64::Engine;
        self.received()
            .iter()
            .filter(|request| request.headers.get("x-test-answer").map(String::as_str) == Some("Ok"))
            .flat_map(|request| request.body["records"].as_array().cloned().unwrap_or_default())
            .map(|record| {
                let data = base64::engine::general_purpose::STANDARD.decode(record["data"].as_str().unwrap()).unwrap();
                String::from_utf8(data).unwrap()
            })
            .collect()
    }
}

/// Serves one keep-alive connection: reads each request (Content-Length bodies), keeps it,
/// answers it.
fn serve(stream: std::net::TcpStream, answers: &std::sync::Mutex<Answer>, kept: &std::sync::Mutex<Vec<Received>>) {
    use std::io::{BufRead, BufReader, Write};
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        let length: usize = headers.get("content-length").map_or(0, |length| length.parse().unwrap());
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
            body = gunzip(&body);
        }
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let answer = *answers.lock().unwrap();
        headers.insert("x-test-answer".into(), format!("{answer:?}"));
        let id = body["requestId"].as_str().unwrap_or_default().to_owned();
        kept.lock().unwrap().push(Received { headers, body: body.clone() });
        let (status, reply) = match answer {
            Answer::Ok => ("200 OK", json!({ "requestId": id, "timestamp": 1 })),
            Answer::Fail => ("500 Internal Server Error", json!({ "requestId": id, "errorMessage": "down for the test" })),
            Answer::WrongId => ("200 OK", json!({ "requestId": "not-the-one", "timestamp": 1 })),
        };
        let reply = reply.to_string();
        let head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", reply.len());
        if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(reply.as_bytes())).is_err() {
            return;
        }
    }
}

fn http_configuration(url: &str, retry_s: u32, backup: &str, gzip: bool) -> String {
    json!({
        "HttpEndpointDestinationConfiguration": {
            "EndpointConfiguration": { "Url": url, "Name": "test endpoint", "AccessKey": "the-access-key" },
            "BufferingHints": { "SizeInMBs": 1, "IntervalInSeconds": 0 },
            "RequestConfiguration": {
                "ContentEncoding": if gzip { "GZIP" } else { "NONE" },
                "CommonAttributes": [{ "AttributeName": "env", "AttributeValue": "test" }],
            },
            "RetryOptions": { "DurationInSeconds": retry_s },
            "S3BackupMode": backup,
            "S3Configuration": {
                "RoleARN": "arn:aws:iam::000000000000:role/firehose",
                "BucketARN": "arn:aws:s3:::logs",
                "CompressionFormat": "GZIP",
            },
        },
    })
    .to_string()
}

#[track_caller]
fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_http_endpoint_gets_records_as_firehoses_specification_says() {
    let endpoint = Endpoint::start();
    let setup = start(&["--http-endpoints-allow-private"]);
    let c = setup.daemon.client();
    let arn = c
        .run(c.client().create_delivery_stream("to-http", &http_configuration(&endpoint.url, 60, "FailedDataOnly", true), vec![]))
        .unwrap();
    let expected = put_batch(&c, "to-http", "h", 1200);
    wait_until("every record at the endpoint", || {
        let got = endpoint.records();
        expected.iter().all(|record| got.contains(record))
    });
    for request in endpoint.received() {
        let h = &request.headers;
        assert_eq!(h.get("content-type").map(String::as_str), Some("application/json"));
        assert_eq!(h.get("content-encoding").map(String::as_str), Some("gzip"));
        assert_eq!(h.get("x-amz-firehose-protocol-version").map(String::as_str), Some("1.0"));
        assert_eq!(h.get("x-amz-firehose-access-key").map(String::as_str), Some("the-access-key"));
        assert_eq!(h.get("x-amz-firehose-source-arn"), Some(&arn));
        assert_eq!(
            h.get("x-amz-firehose-request-id").map(String::as_str),
            request.body["requestId"].as_str(),
            "the header and the body name one request"
        );
        let attributes: serde_json::Value = serde_json::from_str(&h["x-amz-firehose-common-attributes"]).unwrap();
        assert_eq!(attributes, json!({ "commonAttributes": { "env": "test" } }));
        assert!(request.body["timestamp"].as_u64().is_some_and(|ms| ms > 1_700_000_000_000), "{}", request.body);
    }
    assert!(files_under(&setup.bucket_dir).is_empty(), "FailedDataOnly backs up nothing while the endpoint takes everything");
    let description: serde_json::Value = serde_json::from_str(&c.run(c.client().describe_delivery_stream("to-http")).unwrap()).unwrap();
    let described = &description["Destinations"][0]["HttpEndpointDestinationDescription"];
    assert_eq!(
        described["EndpointConfiguration"],
        json!({ "Url": endpoint.url, "Name": "test endpoint" }),
        "the access key is never described"
    );
    assert_eq!(described["S3BackupMode"], "FailedDataOnly");
}

#[test]
fn what_an_http_endpoint_refuses_for_its_retry_duration_goes_to_the_backup_bucket() {
    let endpoint = Endpoint::start();
    endpoint.answer(Answer::Fail);
    let setup = start(&["--http-endpoints-allow-private"]);
    let c = setup.daemon.client();
    c.run(c.client().create_delivery_stream("refused", &http_configuration(&endpoint.url, 1, "FailedDataOnly", false), vec![])).unwrap();
    let failed = put_batch(&c, "refused", "f", 200);
    // Backed up as Firehose does: JSON lines with the record in rawData, under http-endpoint-failed/.
    let backed_up = || -> Vec<String> {
        use base64::Engine;
        let mut found = Vec::new();
        for (key, data) in files_under(&setup.bucket_dir) {
            assert!(key.starts_with("http-endpoint-failed/"), "{key}");
            for line in String::from_utf8(gunzip(&data)).unwrap().lines() {
                let failure: serde_json::Value = serde_json::from_str(line).unwrap();
                assert!(failure["attemptsMade"].as_u64().is_some_and(|n| n >= 1));
                let message = failure["errorMessage"].as_str().unwrap();
                assert!(message.contains("500") || message.contains("requestId"), "{failure}");
                let raw = base64::engine::general_purpose::STANDARD.decode(failure["rawData"].as_str().unwrap()).unwrap();
                found.push(String::from_utf8(raw).unwrap());
            }
        }
        found
    };
    wait_until("the refused records in the backup bucket", || failed.iter().all(|record| backed_up().contains(record)));
    assert!(endpoint.records().is_empty());
    // An answer naming another request is no delivery either.
    endpoint.answer(Answer::WrongId);
    let misanswered = put_batch(&c, "refused", "w", 50);
    wait_until("records answered with the wrong request id in the backup bucket", || {
        misanswered.iter().all(|record| backed_up().contains(record))
    });
    // The endpoint is back: records go to it again.
    endpoint.answer(Answer::Ok);
    let delivered = put_batch(&c, "refused", "ok", 50);
    wait_until("records at the endpoint once it answers", || {
        let got = endpoint.records();
        delivered.iter().all(|record| got.contains(record))
    });
}

#[test]
fn all_data_backup_writes_every_record_to_the_bucket_too_and_private_endpoints_need_the_flag() {
    let endpoint = Endpoint::start();
    let setup = start(&["--http-endpoints-allow-private"]);
    let c = setup.daemon.client();
    c.run(c.client().create_delivery_stream("both", &http_configuration(&endpoint.url, 60, "AllData", false), vec![])).unwrap();
    let expected = put_batch(&c, "both", "a", 300);
    // The bucket's objects hold the records as they came (no delimiter was asked for).
    wait_until("every record at the endpoint and in the bucket", || {
        let got = endpoint.records();
        let stored: String = files_under(&setup.bucket_dir).values().map(|data| String::from_utf8(gunzip(data)).unwrap()).collect();
        expected.iter().all(|record| got.contains(record) && stored.contains(record.as_str()))
    });
    // Without --http-endpoints-allow-private: https only, and no loopback address.
    let strict = start(&[]);
    let c = strict.daemon.client();
    let refused = c.run(c.client().create_delivery_stream("x", &http_configuration(&endpoint.url, 60, "AllData", false), vec![]));
    assert_code(refused, ErrorCode::InvalidArgument);
    let loopback = http_configuration("https://127.0.0.1:9/", 60, "AllData", false);
    assert_code(c.run(c.client().create_delivery_stream("x", &loopback, vec![])), ErrorCode::InvalidArgument);
}

#[test]
fn sns_firehose_subscriptions_put_every_notification_into_the_delivery_stream_through_kill_9() {
    let mut setup = start(&[]);
    let c = setup.daemon.client();
    // Two delivery streams, newline-delimited, delivered at once: one for raw messages, one for
    // SNS's JSON envelopes.
    let raw_stream = c.run(c.client().create_delivery_stream("raw", &configuration("logs", "GZIP", 0), vec![])).unwrap();
    let enveloped = c.run(c.client().create_delivery_stream("wrapped", &configuration("wrapped", "GZIP", 0), vec![])).unwrap();
    let topic = c.run(c.client().create_topic("events", vec![], vec![])).unwrap();
    let role = kv("SubscriptionRoleArn", "arn:aws:iam::000000000000:role/sns-firehose");
    // A firehose subscription needs its role, and a delivery stream's ARN.
    assert_code(c.run(c.client().subscribe(&topic, "firehose", &raw_stream, vec![])), ErrorCode::InvalidParameter);
    assert_code(
        c.run(c.client().subscribe(&topic, "firehose", "arn:aws:firehose:us-east-1:000000000000:nope/x", vec![role.clone()])),
        ErrorCode::InvalidParameter,
    );
    c.run(c.client().subscribe(&topic, "firehose", &raw_stream, vec![role.clone(), kv("RawMessageDelivery", "true")])).unwrap();
    c.run(c.client().subscribe(&topic, "firehose", &enveloped, vec![role])).unwrap();

    let mut published = Vec::new();
    for round in 0..3 {
        for shard in 0..2 {
            let c = setup.daemon.client_on_shard(shard);
            for i in 0..150 {
                let message = format!("m{round}-{shard}-{i:03}");
                c.run(c.client().publish(&topic, message.clone())).unwrap();
                published.push(message);
            }
        }
        // Stops with notifications on their way: kill -9, then a clean stop with none published between.
        if round == 0 {
            setup.daemon.kill();
            setup.daemon.restart();
        } else if round == 1 {
            assert!(setup.daemon.terminate().success());
            setup.daemon.restart();
        }
    }
    let raw = wait_for_all(&setup.bucket_dir, &published);
    assert_eq!(raw.len(), published.len(), "raw delivery: each record is the message itself");
    let wrapped_dir = setup.bucket_dir.parent().unwrap().join("wrapped");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let envelopes: Vec<serde_json::Value> = delivered(&wrapped_dir).keys().map(|line| serde_json::from_str(line).unwrap()).collect();
        let messages: std::collections::BTreeSet<&str> = envelopes.iter().filter_map(|envelope| envelope["Message"].as_str()).collect();
        if published.iter().all(|message| messages.contains(message.as_str())) {
            assert!(envelopes.iter().all(|envelope| envelope["Type"] == "Notification" && envelope["TopicArn"] == topic.as_str()));
            break;
        }
        assert!(Instant::now() < deadline, "{} of {} notifications in the wrapped stream", messages.len(), published.len());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Shards report their counters now and then: the deliveries since the last start show.
    let addr = setup.daemon.http_addr.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(addr);
        let count = text
            .lines()
            .find(|line| line.starts_with("sluice_topic_deliveries_total{") && line.contains("protocol=\"firehose\""))
            .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok());
        if count.is_some_and(|count| count > 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no firehose deliveries counted: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Puts `count` records tagged `tag` into Kinesis stream `stream`; answers them.
fn put_to_stream(c: &Conn, stream: &str, tag: &str, count: usize) -> Vec<String> {
    let records: Vec<String> = (0..count).map(|i| format!("{tag}-{i:05}")).collect();
    for chunk in records.chunks(250) {
        let entries = chunk
            .iter()
            .map(|record| PutRecordsEntry { data: Bytes::from(record.clone()), partition_key: record.clone(), explicit_hash_key: None })
            .collect();
        let results = c.run(c.client().put_records(stream, entries)).unwrap();
        assert!(results.iter().all(|result| matches!(result, PutRecordResult::Put { .. })), "{results:?}");
    }
    records
}

#[test]
fn a_kinesis_stream_source_is_read_from_the_delivery_streams_creation_through_resharding_and_kill_9() {
    let mut setup = start(&["--stream-lease-seconds", "2"]);
    let c = setup.daemon.client();
    c.run(c.client().create_stream("clicks", 2)).unwrap();
    // Records from before the delivery stream are not its to deliver.
    let early = put_to_stream(&c, "clicks", "early", 50);
    std::thread::sleep(Duration::from_millis(20));
    let mut configuration: serde_json::Value = serde_json::from_str(&configuration("logs", "GZIP", 0)).unwrap();
    configuration["DeliveryStreamType"] = json!("KinesisStreamAsSource");
    let stream_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/clicks";
    configuration["KinesisStreamSourceConfiguration"] =
        json!({ "KinesisStreamARN": stream_arn, "RoleARN": "arn:aws:iam::000000000000:role/r" });
    c.run(c.client().create_delivery_stream("from-stream", &configuration.to_string(), vec![])).unwrap();
    let described: serde_json::Value = serde_json::from_str(&c.run(c.client().describe_delivery_stream("from-stream")).unwrap()).unwrap();
    assert_eq!(described["DeliveryStreamType"], "KinesisStreamAsSource");
    assert_eq!(described["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"], stream_arn);
    // It reads its stream: puts are refused.
    assert_code(c.run(c.client().put_firehose_records("from-stream", vec![Bytes::from("x")], false)), ErrorCode::InvalidArgument);
    // A source stream that does not exist is refused.
    let mut missing = configuration.clone();
    missing["KinesisStreamSourceConfiguration"]["KinesisStreamARN"] = json!("arn:aws:kinesis:us-east-1:000000000000:stream/nope");
    assert_code(c.run(c.client().create_delivery_stream("missing", &missing.to_string(), vec![])), ErrorCode::InvalidArgument);

    let mut expected = put_to_stream(&c, "clicks", "first", 400);
    wait_for_all(&setup.bucket_dir, &expected);
    // Resharding: the parents are read to their ends, then their children.
    let scaled = c.client().call(Op::UpdateShardCount { stream: "clicks".into(), target_shard_count: 4, scaling_type: None });
    c.run(scaled).unwrap();
    expected.extend(put_to_stream(&c, "clicks", "scaled", 400));
    // kill -9 with records not yet read or delivered; a start; more records.
    setup.daemon.kill();
    setup.daemon.restart();
    let c = setup.daemon.client();
    expected.extend(put_to_stream(&c, "clicks", "after", 200));
    let counts = wait_for_all(&setup.bucket_dir, &expected);
    assert!(early.iter().all(|record| !counts.contains_key(record)), "records from before its creation are not delivered");
    let duplicates: usize = counts.values().map(|count| count - 1).sum();
    assert!(duplicates <= expected.len() / 4, "{duplicates} duplicates: reading goes on from checkpoints");

    // Deleting the delivery stream deregisters the consumer it read as.
    let consumers =
        |c: &Conn| match c.run(c.client().call(Op::ListStreamConsumers { stream: "clicks".into(), next_token: None, max_results: None })) {
            Ok(Reply::StreamConsumers { consumers, .. }) => consumers.into_iter().map(|consumer| consumer.name).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
    assert_eq!(consumers(&c), ["firehose-from-stream"]);
    c.run(c.client().delete_delivery_stream("from-stream")).unwrap();
    assert!(consumers(&c).is_empty());
}

#[test]
fn server_side_encryption_seals_buffered_records_at_rest_and_delivers_them_in_clear() {
    use std::os::unix::fs::PermissionsExt;
    let keys = tempfile::tempdir().unwrap();
    let root = keys.path().join("root.key");
    std::fs::write(&root, (0..32u8).map(|i| format!("{:02x}", i.wrapping_mul(7))).collect::<String>()).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o600)).unwrap();
    let root_arg = root.to_string_lossy().into_owned();
    let mut setup = start(&["--root-key-file", &root_arg]);
    let c = setup.daemon.client();
    let mut configuration: serde_json::Value = serde_json::from_str(&configuration("logs", "GZIP", 900)).unwrap();
    configuration["DeliveryStreamEncryptionConfigurationInput"] = json!({ "KeyType": "AWS_OWNED_CMK" });
    c.run(c.client().create_delivery_stream("sealed", &configuration.to_string(), vec![])).unwrap();
    let describe = |c: &Conn| -> serde_json::Value {
        let text = c.run(c.client().describe_delivery_stream("sealed")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["DeliveryStreamEncryptionConfiguration"].clone()
    };
    assert_eq!(describe(&c), json!({ "Status": "ENABLED", "KeyType": "AWS_OWNED_CMK" }));
    // A customer key that does not exist is refused.
    let missing = c
        .client()
        .start_delivery_stream_encryption("sealed", Some("arn:aws:kms:us-east-1:000000000000:key/00000000-0000-4000-8000-000000000000"));
    assert!(c.run(missing).is_err());
    let mut expected = put_batch(&c, "sealed", "secret-marker", 300);
    let buffers = setup.daemon.data_dir().join("firehose");
    assert!(
        !files_under(&buffers).values().any(|data| data.windows(13).any(|window| window == b"secret-marker")),
        "buffered records are sealed at rest"
    );
    // Restarted: the records are read back from disk (nothing in memory) and opened.
    assert!(setup.daemon.terminate().success());
    setup.daemon.restart();
    let c = setup.daemon.client();
    assert_eq!(describe(&c)["Status"], "ENABLED", "kept across a restart");
    c.run(c.client().stop_delivery_stream_encryption("sealed")).unwrap();
    assert_eq!(describe(&c), json!({ "Status": "DISABLED" }));
    expected.extend(put_batch(&c, "sealed", "clear-after-stop", 100));
    let update = json!({ "ExtendedS3DestinationUpdate": { "BufferingHints": { "IntervalInSeconds": 0, "SizeInMBs": 1 } } });
    c.run(c.client().update_destination("sealed", "1", &update.to_string())).unwrap();
    let counts = wait_for_all(&setup.bucket_dir, &expected);
    assert_eq!(counts.len(), expected.len());
    // A server without a key service refuses encryption rather than writing in clear.
    let plain = start(&[]);
    let c = plain.daemon.client();
    assert_code(c.run(c.client().create_delivery_stream("x", &configuration.to_string(), vec![])), ErrorCode::InvalidArgument);
}
