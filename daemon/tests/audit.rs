//! The audit log through the real daemon: one CloudTrail-shaped JSON line per call from the
//! binary protocol and the gateway, data calls only when asked, no message bodies, rotation
//! by size, everything queued written by a graceful stop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use bytes::Bytes;
use serde_json::Value;
use sluice_protocol::ErrorCode;
use sluice_testkit::*;

fn events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))).collect()
}

/// An SQS JSON call through the gateway, as an SDK would send it (with its User-Agent).
fn gateway_call(daemon: &Daemon, action: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(daemon.http_addr.unwrap()).unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nUser-Agent: audit-test/1.0\r\nX-Amz-Target: AmazonSQS.{action}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn every_management_call_is_recorded_from_both_front_ends() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let mut daemon = Daemon::start_with(&["--audit-log", log.to_str().unwrap()]);
    {
        let c = daemon.client();
        c.run(c.client().create_queue("audited", vec![], vec![])).unwrap();
        c.run(c.client().send_message("audited", Bytes::from_static(b"the secret body"))).unwrap();
        assert_code(c.run(c.client().get_queue_attributes("missing", &["All"])), ErrorCode::QueueDoesNotExist);
    }
    assert!(gateway_call(&daemon, "CreateQueue", r#"{"QueueName":"via-http"}"#).starts_with("HTTP/1.1 200"));
    daemon.terminate();

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("the secret body"), "no message bodies in the audit log");
    let events = events(&log);
    let names: Vec<&str> = events.iter().map(|e| e["eventName"].as_str().unwrap()).collect();
    assert_eq!(names, ["CreateQueue", "GetQueueAttributes", "CreateQueue"], "management calls only, in order");
    let binary = &events[0];
    assert_eq!(binary["eventSource"], "sqs.amazonaws.com");
    assert_eq!(binary["sourceIPAddress"], "127.0.0.1");
    assert_eq!(binary["userAgent"], "test", "the binary client's Hello name");
    assert_eq!(binary["requestParameters"]["queueName"], "audited");
    assert_eq!(binary["sluiceProtocol"], "binary");
    assert_eq!((binary["eventCategory"].as_str(), binary["managementEvent"].as_bool()), (Some("Management"), Some(true)));
    assert!(binary.get("errorCode").is_none());
    assert!(binary["eventTime"].as_str().unwrap().ends_with('Z'));
    let failed = &events[1];
    assert_eq!(failed["errorCode"], ErrorCode::QueueDoesNotExist.to_string());
    assert_eq!(failed["readOnly"], true);
    let http = &events[2];
    assert_eq!((http["userAgent"].as_str(), http["sluiceProtocol"].as_str()), (Some("audit-test/1.0"), Some("http")));
    assert_eq!(http["requestParameters"]["queueName"], "via-http");
    assert!(!http["requestID"].as_str().unwrap().is_empty());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn data_calls_when_asked_and_the_log_rotates_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let path = log.to_str().unwrap();
    let mut daemon =
        Daemon::start_with(&["--audit-log", path, "--audit-data-events", "--audit-log-bytes-max", "4096", "--audit-log-files", "2"]);
    let sends = 60;
    {
        let c = daemon.client();
        c.run(c.client().create_queue("busy", vec![], vec![])).unwrap();
        for i in 0..sends {
            c.run(c.client().send_message("busy", Bytes::from(format!("body-{i}")))).unwrap();
        }
    }
    daemon.terminate();
    let rotated = |index: u32| dir.path().join(format!("audit.jsonl.{index}"));
    assert!(rotated(1).exists() && rotated(2).exists(), "rotated at 4 KiB, two kept");
    assert!(!rotated(3).exists(), "no more than --audit-log-files");
    let mut kept: Vec<Value> = events(&rotated(2));
    kept.extend(events(&rotated(1)));
    kept.extend(events(&log));
    for path in [rotated(2), rotated(1), log.clone()] {
        assert!(std::fs::metadata(&path).unwrap().len() <= 4096, "{} is over the size", path.display());
    }
    let sent: Vec<&Value> = kept.iter().filter(|e| e["eventName"] == "SendMessage").collect();
    assert!(!sent.is_empty());
    for event in &sent {
        assert_eq!(event["eventCategory"], "Data");
        assert_eq!(event["requestParameters"]["queueUrl"], "busy");
        assert!(event["requestParameters"]["bodyBytes"].as_u64().unwrap() >= 6);
    }
    // The newest lines are the last sends: nothing queued was lost at the stop.
    let last = kept.last().unwrap();
    assert_eq!(last["eventName"], "SendMessage");
    assert_eq!(last["requestParameters"]["bodyBytes"], format!("body-{}", sends - 1).len());
}

#[test]
fn a_gateway_request_refused_at_its_signature_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let credentials = dir.path().join("credentials.json");
    std::fs::write(&credentials, r#"{"principals":[{"access_key_id":"AKIAALICE","secret_access_key":"alice-secret-0123456789"}]}"#)
        .unwrap();
    let mut daemon = Daemon::start_with(&["--audit-log", log.to_str().unwrap(), "--credentials", credentials.to_str().unwrap()]);
    let answer = gateway_call(&daemon, "CreateQueue", r#"{"QueueName":"unsigned"}"#);
    assert!(answer.starts_with("HTTP/1.1 403") && answer.contains("MissingAuthenticationToken"), "{answer}");
    daemon.terminate();
    let events = events(&log);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["eventName"], "CreateQueue");
    assert_eq!(events[0]["errorCode"], "MissingAuthenticationToken");
    assert_eq!(events[0]["userAgent"], "audit-test/1.0");
}

#[test]
fn an_audit_log_that_cannot_be_opened_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = Daemon::start_failing(dir.path(), &["--audit-log", "/nonexistent-dir/audit.jsonl"]);
    assert!(!status.success());
    assert!(stderr.contains("cannot open the audit log /nonexistent-dir/audit.jsonl"), "stderr: {stderr}");
}
