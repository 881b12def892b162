//! Firehose record processing through a real `sluiced` and the real client: a transformation
//! function called as Firehose calls Lambda (here a local HTTP server answering Firehose's
//! transformation event: `Ok` with new data and partition keys, `Dropped`, `ProcessingFailed`),
//! by ARN through `--firehose-lambda-endpoint` and by URL; dynamic partitioning by a
//! `MetadataExtraction` query and the function's keys into the object key prefix; records that
//! fail each step under the error prefix, with why; every source record in the backup bucket.
//! Acknowledged records all arrive after a kill -9 and restarts.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use sluice_client::*;
use sluice_testkit::*;

#[track_caller]
fn wait_until(what: &str, check: impl Fn() -> bool) {
    wait_for(what, || check().then_some(()).ok_or_else(String::new));
}

/// Waits (bounded) until `check` answers Ok; its last `Err` says what was still missing.
#[track_caller]
fn wait_for(what: &str, check: impl Fn() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(missing) = check() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s; {missing}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A transformation function behind HTTP, as the Lambda Runtime Interface Emulator serves one:
/// takes Firehose's transformation event and answers each record by what it holds — `"drop"`:
/// Dropped; `"fail"`: ProcessingFailed; else Ok, the record with `"seen": true` added and its
/// `kind` as the partition key `kind`. `broken`: answers 500 to everything.
struct Function {
    base: String,
    paths: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Function {
    fn start(broken: bool) -> Function {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let paths = Arc::new(Mutex::new(Vec::new()));
        let events = Arc::new(Mutex::new(Vec::new()));
        let (kept_paths, kept_events) = (paths.clone(), events.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (paths, events) = (kept_paths.clone(), kept_events.clone());
                std::thread::spawn(move || serve(stream, broken, &paths, &events));
            }
        });
        Function { base, paths, events }
    }
}

fn serve(stream: std::net::TcpStream, broken: bool, paths: &Mutex<Vec<String>>, events: &Mutex<Vec<Value>>) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        let event: Value = serde_json::from_slice(&body).unwrap();
        paths.lock().unwrap().push(path);
        events.lock().unwrap().push(event.clone());
        let (status, reply) = if broken {
            ("500 Internal Server Error", json!({"errorMessage": "the function is broken for the test"}))
        } else {
            let records: Vec<Value> = event["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|record| {
                    let id = record["recordId"].clone();
                    let data = b64.decode(record["data"].as_str().unwrap()).unwrap();
                    let text = String::from_utf8(data).unwrap();
                    if text.contains("drop") {
                        return json!({"recordId": id, "result": "Dropped"});
                    }
                    if text.contains("fail") {
                        return json!({"recordId": id, "result": "ProcessingFailed", "data": record["data"]});
                    }
                    let mut parsed: Value = serde_json::from_str(&text).unwrap();
                    parsed["seen"] = json!(true);
                    let kind = parsed["kind"].as_str().unwrap_or("none").to_owned();
                    json!({"recordId": id, "result": "Ok", "data": b64.encode(parsed.to_string()),
                           "metadata": {"partitionKeys": {"kind": kind}}})
                })
                .collect();
            ("200 OK", json!({ "records": records }))
        };
        let reply = reply.to_string();
        let head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", reply.len());
        if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(reply.as_bytes())).is_err() {
            return;
        }
    }
}

fn lambda(arn: &str, retries: u32) -> Value {
    json!({ "Type": "Lambda", "Parameters": [
        { "ParameterName": "LambdaArn", "ParameterValue": arn },
        { "ParameterName": "NumberOfRetries", "ParameterValue": retries.to_string() },
        { "ParameterName": "BufferSizeInMBs", "ParameterValue": "1" },
    ]})
}

/// Puts `records` (JSON texts) in batches; returns those acknowledged.
fn put(c: &Conn, stream: &str, records: &[String]) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for chunk in records.chunks(200) {
        let data = chunk.iter().map(|record| Bytes::from(record.clone())).collect();
        let results = c.run(c.client().put_firehose_records(stream, data, true)).unwrap();
        for (record, result) in chunk.iter().zip(results) {
            assert!(result.record_id.is_some(), "record {record} was refused: {result:?}");
            acknowledged.push(record.clone());
        }
    }
    acknowledged
}

/// `count` records tagged `tag`: most for customers c0–c2 of kinds k0/k1; every 10th one the
/// function drops, every 10th (offset 5) it fails, every 25th has no customer (partitioning fails).
fn records(tag: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| match i {
            i if i % 10 == 0 => json!({"tag": tag, "i": i, "customer": "c0", "kind": "k0", "note": "drop"}),
            i if i % 10 == 5 => json!({"tag": tag, "i": i, "customer": "c1", "kind": "k1", "note": "fail"}),
            i if i % 25 == 3 => json!({"tag": tag, "i": i, "kind": "k1"}),
            i => json!({"tag": tag, "i": i, "customer": format!("c{}", i % 3), "kind": format!("k{}", i % 2)}),
        })
        .map(|record| record.to_string())
        .collect()
}

struct Buckets {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Buckets {
    fn new() -> Buckets {
        let dir = tempfile::tempdir().unwrap();
        Buckets { root: dir.path().to_path_buf(), _dir: dir }
    }

    fn bucket(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// Where each acknowledged record should be, checked against what the buckets hold.
#[track_caller]
fn check_all_arrived(buckets: &Buckets, expected: &[String]) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    wait_for("every acknowledged record where it belongs", || {
        let logs = lines_under(&buckets.bucket("logs"));
        let source: Vec<String> = lines_under(&buckets.bucket("source")).into_iter().map(|(_, line)| line).collect();
        let mut delivered: BTreeMap<String, String> = BTreeMap::new();
        let mut failed: BTreeMap<String, (String, Value)> = BTreeMap::new();
        for (key, line) in logs {
            let parsed: Value = serde_json::from_str(&line).unwrap();
            if key.starts_with("errors/") {
                // Partitioning failures hold the function's output: compared without its mark.
                let raw: Value = serde_json::from_slice(&b64.decode(parsed["rawData"].as_str().unwrap()).unwrap()).unwrap();
                failed.insert(without_seen(raw), (key, parsed));
            } else {
                assert_eq!(parsed["seen"], json!(true), "{key}: delivered records are the function's output");
                delivered.insert(without_seen(parsed), key);
            }
        }
        let missing = expected.iter().find(|&record| {
            if !source.contains(record) {
                return true;
            }
            let parsed: Value = serde_json::from_str(record).unwrap();
            let note = parsed["note"].as_str().unwrap_or_default();
            match (note, parsed.get("customer")) {
                ("drop", _) => {
                    assert!(!delivered.contains_key(record), "a dropped record was delivered: {record}");
                    false
                }
                ("fail", _) => !failed.get(record).is_some_and(|(key, line)| {
                    assert!(key.starts_with("errors/processing-failed/"), "{key}");
                    assert_eq!(line["errorCode"], "Lambda.ProcessingFailed");
                    assert_eq!(line["lambdaArn"], "arn:aws:lambda:us-east-1:000000000000:function:enrich");
                    true
                }),
                (_, None) => !failed.get(record).is_some_and(|(key, line)| {
                    assert!(key.starts_with("errors/partitioning-failed/"), "{key}");
                    assert_eq!(line["errorCode"], "DynamicPartitioning.MetadataExtractionFailed");
                    assert!(line["errorMessage"].as_str().unwrap().contains("customer"), "{line}");
                    true
                }),
                (_, Some(customer)) => !delivered.get(record).is_some_and(|key| {
                    let folder = format!("customer={}/kind={}/", customer.as_str().unwrap(), parsed["kind"].as_str().unwrap());
                    assert!(key.starts_with(&folder), "{record} is in {key}, not under {folder}");
                    true
                }),
            }
        });
        match missing {
            None => Ok(()),
            Some(record) => Err(format!(
                "missing {record} (in the source bucket: {}); {} delivered, {} failed, objects: {:?}",
                source.contains(record),
                delivered.len(),
                failed.len(),
                files_under(&buckets.root).keys().take(8).collect::<Vec<_>>()
            )),
        }
    });
}

fn without_seen(mut record: Value) -> String {
    record.as_object_mut().unwrap().remove("seen");
    record.to_string()
}

fn partitioned_configuration() -> String {
    json!({
        "DeliveryStreamType": "DirectPut",
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::000000000000:role/firehose",
            "BucketARN": "arn:aws:s3:::logs",
            "Prefix": "customer=!{partitionKeyFromQuery:customer}/kind=!{partitionKeyFromLambda:kind}/",
            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
            "BufferingHints": { "SizeInMBs": 64, "IntervalInSeconds": 1 },
            "DynamicPartitioningConfiguration": { "Enabled": true },
            "S3BackupMode": "Enabled",
            "S3BackupConfiguration": {
                "RoleARN": "arn:aws:iam::000000000000:role/firehose",
                "BucketARN": "arn:aws:s3:::source",
                "Prefix": "raw/",
            },
            "ProcessingConfiguration": { "Enabled": true, "Processors": [
                lambda("arn:aws:lambda:us-east-1:000000000000:function:enrich", 3),
                { "Type": "MetadataExtraction", "Parameters": [
                    { "ParameterName": "MetadataExtractionQuery", "ParameterValue": "{customer: .customer}" },
                    { "ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6" },
                ]},
                { "Type": "AppendDelimiterToRecord" },
            ]},
        },
    })
    .to_string()
}

#[test]
fn a_function_transforms_records_that_are_partitioned_backed_up_and_kept_through_kill_9() {
    let function = Function::start(false);
    let buckets = Buckets::new();
    let local = buckets.root.to_string_lossy().into_owned();
    let mut daemon = Daemon::start_with(&["--firehose-local-dir", &local, "--firehose-lambda-endpoint", &function.base]);
    let c = daemon.client();
    c.run(c.client().create_delivery_stream("clicks", &partitioned_configuration(), vec![])).unwrap();
    let described: Value = serde_json::from_str(&c.run(c.client().describe_delivery_stream("clicks")).unwrap()).unwrap();
    let extended = &described["Destinations"][0]["ExtendedS3DestinationDescription"];
    assert_eq!(extended["DynamicPartitioningConfiguration"]["Enabled"], true);
    assert_eq!(extended["S3BackupMode"], "Enabled");
    let types: Vec<&str> =
        extended["ProcessingConfiguration"]["Processors"].as_array().unwrap().iter().map(|p| p["Type"].as_str().unwrap()).collect();
    assert_eq!(types, ["Lambda", "MetadataExtraction", "AppendDelimiterToRecord"]);

    let mut expected = Vec::new();
    for shard in 0..2 {
        let c = daemon.client_on_shard(shard);
        expected.extend(put(&c, "clicks", &records(&format!("s{shard}"), 300)));
    }
    check_all_arrived(&buckets, &expected);
    // The function was invoked through the Lambda API's path, with Firehose's event.
    assert!(function.paths.lock().unwrap().iter().all(|path| path == "/2015-03-31/functions/enrich/invocations"));
    let event = function.events.lock().unwrap()[0].clone();
    assert_eq!(event["deliveryStreamArn"], "arn:aws:firehose:us-east-1:000000000000:deliverystream/clicks");
    assert_eq!(event["region"], "us-east-1");
    assert!(event["invocationId"].as_str().is_some_and(|id| id.len() == 36), "{event}");
    assert!(event["records"][0]["approximateArrivalTimestamp"].as_u64().is_some_and(|ms| ms > 1_700_000_000_000));

    // Puts, then kill -9 before their interval is up; a start; a stop and start with no puts.
    let c = daemon.client();
    expected.extend(put(&c, "clicks", &records("killed", 200)));
    daemon.kill();
    daemon.restart();
    assert!(daemon.terminate().success());
    daemon.restart();
    let c = daemon.client();
    expected.extend(put(&c, "clicks", &records("after", 100)));
    check_all_arrived(&buckets, &expected);
}

#[test]
fn a_failing_function_is_tried_again_then_its_records_go_to_the_error_prefix() {
    use base64::Engine;
    let function = Function::start(true);
    let buckets = Buckets::new();
    let local = buckets.root.to_string_lossy().into_owned();
    let daemon = Daemon::start_with(&["--firehose-local-dir", &local, "--http-endpoints-allow-private"]);
    let c = daemon.client();
    let configuration = |function: &str| {
        json!({ "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::000000000000:role/firehose",
            "BucketARN": "arn:aws:s3:::logs",
            "Prefix": "out/",
            "BufferingHints": { "SizeInMBs": 1, "IntervalInSeconds": 0 },
            "ProcessingConfiguration": { "Enabled": true, "Processors": [lambda(function, 1)] },
        }})
        .to_string()
    };
    // An ARN needs a Lambda endpoint this server was not given.
    let refused = c.run(c.client().create_delivery_stream("by-arn", &configuration("arn:aws:lambda:us-east-1:1:function:f"), vec![]));
    assert_code(refused, ErrorCode::InvalidArgument);
    c.run(c.client().create_delivery_stream("broken", &configuration(&format!("{}/transform", function.base)), vec![])).unwrap();
    let sent: Vec<String> = (0..50).map(|i| json!({"i": i}).to_string()).collect();
    let acknowledged = put(&c, "broken", &sent);
    wait_until("every record under processing-failed", || {
        let failed: Vec<Value> =
            lines_under(&buckets.bucket("logs")).into_iter().map(|(_, line)| serde_json::from_str(&line).unwrap()).collect();
        let raw: Vec<String> = failed
            .iter()
            .map(|line| {
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(line["rawData"].as_str().unwrap()).unwrap()).unwrap()
            })
            .collect();
        acknowledged.iter().all(|record| raw.contains(record))
    });
    for (key, line) in lines_under(&buckets.bucket("logs")) {
        assert!(key.starts_with("processing-failed/"), "{key}: nothing is delivered when the function fails");
        let line: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(line["errorCode"], "Lambda.FunctionError");
        assert_eq!(line["attemptsMade"], 2, "one try and NumberOfRetries 1 more");
        assert!(line["errorMessage"].as_str().unwrap().contains("500"), "{line}");
    }
    assert!(function.paths.lock().unwrap().iter().all(|path| path == "/transform"));
}

#[test]
fn json_records_are_written_as_parquet_with_the_schema_of_a_table() {
    use base64::Engine;
    let buckets = Buckets::new();
    let local = buckets.root.to_string_lossy().into_owned();
    let tables = buckets.root.join("tables.json");
    std::fs::write(
        &tables,
        json!({"web": {"clicks": [{"Name": "id", "Type": "bigint"}, {"Name": "page", "Type": "string"},
            {"Name": "ms", "Type": "double"}, {"Name": "at", "Type": "timestamp"}]}})
        .to_string(),
    )
    .unwrap();
    let tables_arg = tables.to_string_lossy().into_owned();
    let mut daemon = Daemon::start_with(&["--firehose-local-dir", &local, "--firehose-glue-tables", &tables_arg]);
    let c = daemon.client();
    let conversion = |table: &str| {
        json!({ "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::000000000000:role/firehose",
            "BucketARN": "arn:aws:s3:::logs",
            "Prefix": "clicks/",
            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
            "BufferingHints": { "SizeInMBs": 64, "IntervalInSeconds": 1 },
            "DataFormatConversionConfiguration": {
                "SchemaConfiguration": { "DatabaseName": "web", "TableName": table, "RoleARN": "r", "Region": "us-east-1" },
                "InputFormatConfiguration": { "Deserializer": { "OpenXJsonSerDe": {} } },
                "OutputFormatConfiguration": { "Serializer": { "ParquetSerDe": { "Compression": "SNAPPY" } } },
            },
        }})
        .to_string()
    };
    // A table the schemas file does not have is refused.
    assert_code(c.run(c.client().create_delivery_stream("nope", &conversion("views"), vec![])), ErrorCode::InvalidArgument);
    c.run(c.client().create_delivery_stream("parquet", &conversion("clicks"), vec![])).unwrap();
    let mut sent: Vec<String> = (0..300)
        .map(|i| json!({"id": i, "page": format!("/p/{}", i % 7), "ms": i as f64 / 2.0, "at": "2026-12-07T13:45:29Z"}).to_string())
        .collect();
    let bad: Vec<String> = (0..5).map(|i| json!({"id": format!("not a number {i}")}).to_string()).collect();
    sent.extend(bad.clone());
    put(&c, "parquet", &sent[..150]);
    // A kill -9 and a start between the puts: nothing acknowledged is lost.
    daemon.kill();
    daemon.restart();
    put(&daemon.client(), "parquet", &sent[150..]);
    wait_for("every record as a Parquet row, and the bad ones under format-conversion-failed", || {
        let mut ids = std::collections::BTreeSet::new();
        let mut failed = std::collections::BTreeSet::new();
        for (key, data) in files_under(&buckets.bucket("logs")) {
            if key.starts_with("clicks/") {
                assert!(key.ends_with(".parquet"), "{key}");
                for row in sluice_daemon::firehose::convert::rows_of(data).unwrap() {
                    assert!(!row["at"].is_empty() && row["at"] != "null", "{row:?}");
                    ids.insert(row["id"].parse::<usize>().unwrap());
                }
            } else {
                assert!(key.starts_with("errors/format-conversion-failed/"), "{key}");
                for line in String::from_utf8(data).unwrap().lines() {
                    let line: Value = serde_json::from_str(line).unwrap();
                    assert_eq!(line["errorCode"], "DataFormatConversion.MalformedData");
                    failed.insert(
                        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(line["rawData"].as_str().unwrap()).unwrap())
                            .unwrap(),
                    );
                }
            }
        }
        match (ids.len(), bad.iter().all(|record| failed.contains(record))) {
            (300, true) => Ok(()),
            (rows, all_failed) => Err(format!("{rows} of 300 rows; the bad records under the error prefix: {all_failed}")),
        }
    });
}
