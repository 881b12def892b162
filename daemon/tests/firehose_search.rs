//! Firehose's OpenSearch destination through a real `sluiced` and the real client, against a
//! local `_bulk` receiver: documents are indexed into the day's index with their record ids as
//! document ids (a retry or a redelivery after kill -9 replaces, never duplicates); while the
//! cluster is down nothing is lost; documents it refuses for the retry duration, and records
//! that are not JSON documents, go to the backup bucket with the cluster's reason.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use sluice_client::*;
use sluice_testkit::*;

/// A search cluster's `_bulk` API on 127.0.0.1: keeps documents by (index, id); answers 503
/// while `down`; refuses documents holding `"bad"` as a mapping error would.
#[derive(Clone, Default)]
struct Cluster {
    documents: Arc<Mutex<BTreeMap<(String, String), Value>>>,
    actions: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Cluster {
    fn start() -> (Cluster, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cluster = Cluster::default();
        let serving = cluster.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let cluster = serving.clone();
                std::thread::spawn(move || cluster.serve(stream));
            }
        });
        (cluster, url)
    }

    fn serve(&self, stream: std::net::TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            assert!(line.starts_with("POST /_bulk "), "{line}");
            let mut length = 0;
            let mut content_type = String::new();
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "content-type" => content_type = value.trim().to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            assert_eq!(content_type, "application/x-ndjson");
            let (status, reply) = if self.down.load(Ordering::SeqCst) {
                ("503 Service Unavailable", json!({"error": "down for the test"}))
            } else {
                ("200 OK", self.bulk(&body))
            };
            let reply = reply.to_string();
            let head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", reply.len());
            if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(reply.as_bytes())).is_err() {
                return;
            }
        }
    }

    fn bulk(&self, body: &[u8]) -> Value {
        let text = std::str::from_utf8(body).unwrap();
        assert!(text.ends_with('\n'), "a _bulk body ends with a newline");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() % 2, 0, "action and document lines in pairs");
        let mut items = Vec::new();
        let mut errors = false;
        for pair in lines.chunks(2) {
            let action: Value = serde_json::from_str(pair[0]).unwrap();
            let index = action["index"]["_index"].as_str().unwrap().to_owned();
            let id = action["index"]["_id"].as_str().expect("FIREHOSE_DEFAULT gives every document an id").to_owned();
            let document: Value = serde_json::from_str(pair[1]).unwrap();
            self.actions.fetch_add(1, Ordering::SeqCst);
            if document.get("bad").is_some() {
                errors = true;
                items.push(json!({"index": {"_index": index, "_id": id, "status": 400,
                    "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [bad]"}}}));
                continue;
            }
            self.documents.lock().unwrap().insert((index.clone(), id.clone()), document);
            items.push(json!({"index": {"_index": index, "_id": id, "status": 201, "result": "created"}}));
        }
        json!({"took": 1, "errors": errors, "items": items})
    }
}

#[track_caller]
fn wait_for(what: &str, check: impl Fn() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(missing) = check() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s; {missing}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Puts `records`; answers each one's record id.
fn put(c: &Conn, stream: &str, records: &[String]) -> Vec<(String, String)> {
    let mut acknowledged = Vec::new();
    for chunk in records.chunks(250) {
        let data = chunk.iter().map(|record| Bytes::from(record.clone())).collect();
        let results = c.run(c.client().put_firehose_records(stream, data, true)).unwrap();
        for (record, result) in chunk.iter().zip(results) {
            acknowledged.push((record.clone(), result.record_id.expect("acknowledged")));
        }
    }
    acknowledged
}

#[test]
fn documents_are_indexed_once_by_record_id_through_an_outage_and_kill_9_and_refused_ones_are_backed_up() {
    let (cluster, url) = Cluster::start();
    let objects = tempfile::tempdir().unwrap();
    let local = objects.path().to_string_lossy().into_owned();
    let mut daemon = Daemon::start_with(&["--firehose-local-dir", &local, "--http-endpoints-allow-private"]);
    let c = daemon.client();
    let configuration = json!({ "AmazonopensearchserviceDestinationConfiguration": {
        "RoleARN": "arn:aws:iam::000000000000:role/firehose",
        "ClusterEndpoint": url,
        "IndexName": "events",
        "IndexRotationPeriod": "OneDay",
        "BufferingHints": { "SizeInMBs": 1, "IntervalInSeconds": 0 },
        "RetryOptions": { "DurationInSeconds": 2 },
        "S3BackupMode": "FailedDocumentsOnly",
        "S3Configuration": { "RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": "arn:aws:s3:::logs" },
    }});
    c.run(c.client().create_delivery_stream("search", &configuration.to_string(), vec![])).unwrap();
    let described: Value = serde_json::from_str(&c.run(c.client().describe_delivery_stream("search")).unwrap()).unwrap();
    let destination = &described["Destinations"][0]["AmazonopensearchserviceDestinationDescription"];
    assert_eq!(destination["ClusterEndpoint"], url.as_str());
    assert_eq!(destination["IndexRotationPeriod"], "OneDay");
    assert_eq!(destination["DocumentIdOptions"]["DefaultDocumentIdFormat"], "FIREHOSE_DEFAULT");
    // A domain ARN names an AWS domain this server cannot reach: refused by name.
    let domain = json!({ "AmazonopensearchserviceDestinationConfiguration": {
        "RoleARN": "r", "DomainARN": "arn:aws:es:us-east-1:000000000000:domain/d", "IndexName": "x",
        "S3Configuration": { "RoleARN": "r", "BucketARN": "arn:aws:s3:::logs" } }});
    assert_code(c.run(c.client().create_delivery_stream("domain", &domain.to_string(), vec![])), ErrorCode::InvalidArgument);

    let record = |tag: &str, i: usize| match i % 50 {
        7 => json!({"tag": tag, "i": i, "bad": true}).to_string(),
        9 => format!("not json {tag} {i}"),
        _ => json!({"tag": tag, "i": i}).to_string(),
    };
    // The cluster is down for the first puts: they wait, and arrive once it is back.
    cluster.down.store(true, Ordering::SeqCst);
    let mut acknowledged = put(&c, "search", &(0..300).map(|i| record("down", i)).collect::<Vec<_>>());
    std::thread::sleep(Duration::from_millis(1500));
    cluster.down.store(false, Ordering::SeqCst);
    acknowledged.extend(put(&daemon.client_on_shard(1), "search", &(0..300).map(|i| record("up", i)).collect::<Vec<_>>()));
    // Puts just before a kill -9: delivered after the start, some perhaps again — by id, once.
    acknowledged.extend(put(&c, "search", &(0..300).map(|i| record("killed", i)).collect::<Vec<_>>()));
    daemon.kill();
    daemon.restart();
    acknowledged.extend(put(&daemon.client(), "search", &(0..100).map(|i| record("after", i)).collect::<Vec<_>>()));

    let good: Vec<&(String, String)> =
        acknowledged.iter().filter(|(text, _)| !text.contains("bad") && !text.starts_with("not json")).collect();
    wait_for("every good document indexed, and the refused ones backed up", || {
        let documents = cluster.documents.lock().unwrap();
        if let Some((text, id)) = good.iter().find(|(text, id)| {
            let expected: Value = serde_json::from_str(text).unwrap();
            !documents.iter().any(|((index, doc_id), doc)| doc_id == id && index.starts_with("events-") && *doc == expected)
        }) {
            return Err(format!("{text} ({id}) not indexed; {} documents are", documents.len()));
        }
        let backed_up = lines_under(&objects.path().join("logs"));
        let refused = acknowledged.len() - good.len();
        if backed_up.len() < refused {
            return Err(format!("{} of {refused} refused records backed up", backed_up.len()));
        }
        Ok(())
    });
    let documents = cluster.documents.lock().unwrap().clone();
    assert_eq!(documents.len(), good.len(), "each record indexed once, by its record id");
    let index = documents.keys().next().unwrap().0.clone();
    assert!(index.len() == "events-YYYY-MM-DD".len() && index.as_bytes()[11] == b'-', "{index} is the day's index");
    use base64::Engine;
    for (key, line) in lines_under(&objects.path().join("logs")) {
        assert!(key.starts_with("AmazonOpenSearchService-failed/"), "{key}");
        let line: Value = serde_json::from_str(&line).unwrap();
        let raw = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(line["rawData"].as_str().unwrap()).unwrap()).unwrap();
        match raw.starts_with("not json") {
            true => assert_eq!(line["errorCode"], "OS.MalformedDocument"),
            false => {
                assert_eq!(line["errorCode"], "OS.mapper_parsing_exception", "{line}");
                assert!(line["errorMessage"].as_str().unwrap().contains("status 400"), "{line}");
                assert!(line["attemptsMade"].as_u64().unwrap() >= 2, "tried again for the retry duration: {line}");
            }
        }
    }
}
