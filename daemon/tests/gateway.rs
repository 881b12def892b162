//! The HTTP gateway against hostile and malformed input, over raw sockets (the well-formed
//! paths are tested with real AWS clients in `aws_clients.rs`): every bad request gets an
//! AWS-shaped error or a closed connection, and the daemon keeps serving everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use sluice_testkit::Daemon;

/// Sends `request` on a new connection and reads the whole answer (the request asks to close).
fn exchange(daemon: &Daemon, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(daemon.http_addr.unwrap()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // A request refused from its head alone may be answered (and closed) before it is all sent.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn post(target: Option<&str>, content_type: &str, body: &str) -> Vec<u8> {
    let target = target.map(|t| format!("X-Amz-Target: {t}\r\n")).unwrap_or_default();
    format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{target}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn status(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

fn still_serving(daemon: &Daemon) {
    let answer = exchange(daemon, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
}

fn form_type() -> &'static str {
    "application/x-www-form-urlencoded"
}

#[test]
fn malformed_requests_get_aws_shaped_errors() {
    let daemon = Daemon::start();
    let sqs_json = "application/x-amz-json-1.0";

    // Not JSON, and JSON that is not an object.
    for body in ["{\"QueueName\": ", "[1, 2]", "\"text\""] {
        let answer = exchange(&daemon, &post(Some("AmazonSQS.CreateQueue"), sqs_json, body));
        assert_eq!(status(&answer), 400, "{answer}");
        assert!(answer.contains("\"__type\":\"com.amazonaws.sqs#SerializationException\""), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("x-amzn-requestid: "), "{answer}");
    }
    // A missing parameter, a wrong type, an unknown action: typed, with the legacy code header.
    let answer = exchange(&daemon, &post(Some("AmazonSQS.CreateQueue"), sqs_json, "{}"));
    assert!(answer.contains("com.amazonaws.sqs#MissingParameter") && answer.contains("QueueName"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("x-amzn-query-error: missingparameter;sender"), "{answer}");
    let answer = exchange(&daemon, &post(Some("AmazonSQS.ReceiveMessage"), sqs_json, r#"{"QueueUrl":"q","MaxNumberOfMessages":"ten"}"#));
    assert!(answer.contains("com.amazonaws.sqs#InvalidParameterValue") && answer.contains("MaxNumberOfMessages"), "{answer}");
    let answer = exchange(&daemon, &post(Some("AmazonSQS.FlyToTheMoon"), sqs_json, "{}"));
    assert!(answer.contains("com.amazonaws.sqs#InvalidAction"), "{answer}");
    // A member the action does not take is refused by name, never dropped without a word.
    let answer = exchange(&daemon, &post(Some("AmazonSQS.CreateQueue"), sqs_json, r#"{"QueueName":"q","Colour":"blue"}"#));
    assert!(answer.contains("com.amazonaws.sqs#InvalidParameterValue") && answer.contains("Colour"), "{answer}");
    let answer = exchange(
        &daemon,
        &post(
            Some("Kinesis_20131202.PutRecords"),
            "application/x-amz-json-1.1",
            r#"{"StreamName":"s","Records":[{"Data":"YQ==","PartitionKey":"k","Shard":"x"}]}"#,
        ),
    );
    assert!(answer.contains("InvalidArgumentException") && answer.contains("Records.1.Shard"), "{answer}");
    let answer = exchange(&daemon, &post(None, form_type(), "Action=ListQueues&Version=2012-11-05&Colour=blue"));
    assert!(answer.contains("Colour") && status(&answer) == 400, "{answer}");
    let answer = exchange(&daemon, &post(Some("Kinesis_20131202.NoSuchThing"), "application/x-amz-json-1.1", "{}"));
    assert!(answer.contains("\"__type\":\"UnknownOperationException\""), "{answer}");
    let answer = exchange(&daemon, &post(Some("DynamoDB_20120810.GetItem"), "application/x-amz-json-1.0", "{}"));
    assert_eq!(status(&answer), 400, "{answer}");
    let answer = exchange(
        &daemon,
        &post(Some("Kinesis_20131202.PutRecord"), "application/x-amz-json-1.1", r#"{"StreamName":"s","PartitionKey":"k","Data":"***"}"#),
    );
    assert!(answer.contains("\"__type\":\"InvalidArgumentException\"") && answer.contains("base64"), "{answer}");

    // The Query protocol: no Action, an unknown one, hostile parameter names, a non-form body.
    let form = "application/x-www-form-urlencoded";
    let answer = exchange(&daemon, &post(None, form, "Version=2012-11-05"));
    assert!(status(&answer) == 400 && answer.contains("<Code>MissingAction</Code>"), "{answer}");
    let answer = exchange(&daemon, &post(None, form, "Action=FlyToTheMoon"));
    assert!(answer.contains("<ErrorResponse") && answer.contains("<Code>InvalidAction</Code>"), "{answer}");
    let deep = format!("Action=CreateQueue&QueueName=q&{}=1", vec!["Attribute"; 40].join("."));
    let answer = exchange(&daemon, &post(None, form, &deep));
    assert!(answer.contains("<Code>MalformedQueryString</Code>"), "{answer}");
    let answer = exchange(&daemon, &post(None, "application/json", "{}"));
    assert!(answer.contains("<ErrorResponse"), "{answer}");
    let answer = exchange(&daemon, &post(None, form, "Action=Publish&Message=x"));
    assert!(answer.contains("http://sns.amazonaws.com/doc/2010-03-31/") && answer.contains("<Code>InvalidParameter</Code>"), "{answer}");
    // Percent-encoding that is not UTF-8 still parses (lossily) into a typed error.
    let answer = exchange(&daemon, &post(None, form, "Action=GetQueueUrl&QueueName=%FF%FE"));
    assert!(answer.contains("<Code>AWS.SimpleQueueService.NonExistentQueue</Code>"), "{answer}");
    still_serving(&daemon);
}

#[test]
fn oversized_bodies_are_refused_before_they_are_read() {
    let daemon = Daemon::start();
    // Announced larger than the limit: refused from the headers alone, connection closed.
    let head = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AmazonSQS.ListQueues\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 1073741824\r\n\r\n{";
    let answer = exchange(&daemon, head.as_bytes());
    assert_eq!(status(&answer), 413, "{answer}");
    assert!(answer.contains("\"__type\""), "{answer}");
    // Chunked with no announced length: cut off at the limit.
    let mut stream = TcpStream::connect(daemon.http_addr.unwrap()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AmazonSQS.ListQueues\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut answer = Vec::new();
    for _ in 0..20 {
        let sent = stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .and_then(|_| stream.write_all(&chunk))
            .and_then(|_| stream.write_all(b"\r\n"));
        if sent.is_err() {
            break;
        }
    }
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status(&answer), 413, "{answer}");
    // Headers beyond hyper's buffer: the connection is answered with an error or closed.
    let huge_header = format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n", "b".repeat(200_000));
    let answer = exchange(&daemon, huge_header.as_bytes());
    assert!(answer.is_empty() || status(&answer) == 431 || status(&answer) == 400, "{answer}");
    still_serving(&daemon);
}

#[test]
fn garbage_and_half_open_connections_are_closed_without_holding_anyone_up() {
    let daemon = Daemon::start_with(&["--http-idle-timeout-seconds", "1"]);
    // Bytes that are not HTTP.
    let answer = exchange(&daemon, b"\x00\x01\x02 not http at all\r\n\r\n");
    assert!(answer.is_empty() || status(&answer) == 400, "{answer}");
    // Half a request, then silence: closed after the idle timeout, while others are served.
    let mut stalled = TcpStream::connect(daemon.http_addr.unwrap()).unwrap();
    stalled.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"Queue").unwrap();
    let mut idle = TcpStream::connect(daemon.http_addr.unwrap()).unwrap();
    still_serving(&daemon);
    for stream in [&mut stalled, &mut idle] {
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut rest = Vec::new();
        // Ends (EOF or reset) once the daemon closes it; a read timeout here fails the test.
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(error) => assert_ne!(error.kind(), std::io::ErrorKind::WouldBlock, "the daemon left the connection open"),
        }
    }
    still_serving(&daemon);
}

fn form(host: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra_headers}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get(host: &str, query: &str) -> Vec<u8> {
    format!("GET /?{query} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

fn queue_exists(daemon: &Daemon, name: &str) -> bool {
    let answer = exchange(daemon, &form("127.0.0.1", "", &format!("Action=GetQueueUrl&QueueName={name}")));
    status(&answer) == 200
}

#[test]
fn a_web_page_cannot_drive_the_broker() {
    let daemon = Daemon::start();
    let created = exchange(&daemon, &form("127.0.0.1", "", "Action=CreateQueue&QueueName=precious"));
    assert_eq!(status(&created), 200, "{created}");
    let url = format!("http%3A%2F%2F{}%2F000000000000%2Fprecious", daemon.http_addr.unwrap()).replace(':', "%3A");

    // A link or an <img> on any page: a GET that changes state is refused; reading is fine.
    let answer = exchange(&daemon, &get("127.0.0.1", &format!("Action=DeleteQueue&QueueUrl={url}")));
    assert_eq!(status(&answer), 405, "{answer}");
    assert!(answer.contains("InvalidHttpMethod") && answer.contains("POST"), "{answer}");
    let answer = exchange(&daemon, &get("127.0.0.1", "Action=SendMessage&QueueUrl=x&MessageBody=hi"));
    assert_eq!(status(&answer), 405, "{answer}");
    assert!(queue_exists(&daemon, "precious"));
    let answer = exchange(&daemon, &get("localhost", "Action=ListQueues"));
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.contains("precious"), "{answer}");

    // A form on another site POSTs with its Origin: refused before anything is done.
    let evil = "Origin: http://evil.example\r\n";
    let answer = exchange(&daemon, &form("127.0.0.1", evil, &format!("Action=DeleteQueue&QueueUrl={url}")));
    assert_eq!(status(&answer), 403, "{answer}");
    assert!(answer.contains("AccessDenied") && answer.contains("--http-allow-origin"), "{answer}");
    assert!(queue_exists(&daemon, "precious"));
    // A request the browser marks cross-site, even without an Origin.
    let answer = exchange(&daemon, &form("127.0.0.1", "Sec-Fetch-Site: cross-site\r\n", "Action=ListQueues"));
    assert_eq!(status(&answer), 403, "{answer}");
    // DNS rebinding: the page's own name pointed at 127.0.0.1 is not a host the gateway serves.
    let answer = exchange(&daemon, &form("evil.example:4566", "", "Action=ListQueues"));
    assert_eq!(status(&answer), 403, "{answer}");
    assert!(answer.contains("--http-allow-host"), "{answer}");
    let answer = exchange(&daemon, &post(Some("AmazonSQS.ListQueues"), "application/x-amz-json-1.0", "{}").replace_host("rebound.example"));
    assert_eq!(status(&answer), 403, "{answer}");
    // AWS clients name the gateway by address or localhost, or by the public URL's host.
    for host in ["127.0.0.1:4566", "localhost:4566", "[::1]:4566", "sqs.us-east-1.localhost"] {
        let answer = exchange(&daemon, &form(host, "", "Action=ListQueues"));
        assert_eq!(status(&answer), 200, "{host}: {answer}");
    }
    still_serving(&daemon);
}

#[test]
fn allowed_origins_and_hosts_are_served_with_cors() {
    let daemon = Daemon::start_with(&["--http-allow-origin", "http://console.example", "--http-allow-host", "sluice.internal"]);
    let origin = "Origin: http://console.example\r\n";
    let answer = exchange(&daemon, &form("sluice.internal:4566", origin, "Action=CreateQueue&QueueName=from-console"));
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("access-control-allow-origin: http://console.example"), "{answer}");
    let preflight = format!(
        "OPTIONS / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{origin}Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: x-amz-target, content-type\r\n\r\n"
    );
    let answer = exchange(&daemon, preflight.as_bytes());
    assert_eq!(status(&answer), 204, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("access-control-allow-origin: http://console.example"), "{answer}");
    assert!(lower.contains("access-control-allow-headers: x-amz-target, content-type"), "{answer}");
    // Any other origin is still refused, preflight included.
    let other = "Origin: http://other.example\r\n";
    let answer = exchange(&daemon, &form("127.0.0.1", other, "Action=ListQueues"));
    assert_eq!(status(&answer), 403, "{answer}");
    let preflight = preflight.replace("console.example", "other.example");
    assert_eq!(status(&exchange(&daemon, preflight.as_bytes())), 403);
}

trait ReplaceHost {
    fn replace_host(self, host: &str) -> Vec<u8>;
}

impl ReplaceHost for Vec<u8> {
    fn replace_host(self, host: &str) -> Vec<u8> {
        String::from_utf8(self).unwrap().replacen("Host: 127.0.0.1", &format!("Host: {host}"), 1).into_bytes()
    }
}

#[test]
fn each_action_takes_bodies_only_as_large_as_its_largest_valid_request() {
    let daemon = Daemon::start();
    let before = daemon.resident_bytes();
    // A listing has no business with megabytes: refused from its length alone.
    let body = format!("{{\"QueueNamePrefix\":\"{}\"}}", "a".repeat(300 << 10));
    let answer = exchange(&daemon, &post(Some("AmazonSQS.ListQueues"), "application/x-amz-json-1.0", &body));
    assert_eq!(status(&answer), 413, "{answer}");
    assert!(answer.contains("262144"), "{answer}");
    // A hostile tree of tiny values, as large as a PutRecords may be: refused with a typed
    // error before any tree is built (as a tree it would take some 26 times its 7.8 MB).
    let peak = daemon.peak_resident_bytes();
    let numbers = vec!["1"; 3_900_000].join(",");
    let body = format!("{{\"StreamName\":\"s\",\"Records\":[{numbers}]}}");
    let answer = exchange(&daemon, &post(Some("Kinesis_20131202.PutRecords"), "application/x-amz-json-1.1", &body));
    assert_eq!(status(&answer), 400, "{answer}");
    assert!(answer.contains("SerializationException") && answer.contains("JSON values"), "{answer}");
    let peak_grown = daemon.peak_resident_bytes().saturating_sub(peak);
    eprintln!("peak resident while refusing 7.8 MB of tiny JSON values: +{} MiB", peak_grown >> 20);
    assert!(peak_grown < 48 << 20, "a hostile JSON body raised the peak by {} MiB", peak_grown >> 20);
    // Nested deeper than any request.
    let deep = format!("{{\"StreamName\":\"s\",\"Records\":{}{}}}", "[".repeat(100), "]".repeat(100));
    let answer = exchange(&daemon, &post(Some("Kinesis_20131202.PutRecords"), "application/x-amz-json-1.1", &deep));
    assert_eq!(status(&answer), 400, "{answer}");
    assert!(answer.contains("nested"), "{answer}");
    let answer = exchange(&daemon, &post(Some("Kinesis_20131202.PutRecords"), "application/x-amz-json-1.1", &format!("{body} ").repeat(3)));
    assert_eq!(status(&answer), 413, "{answer}");
    // Too many form parameters.
    let pairs: Vec<String> = (0..6_000).map(|i| format!("p{i}=v")).collect();
    let answer = exchange(&daemon, &post(None, "application/x-www-form-urlencoded", &format!("Action=ListQueues&{}", pairs.join("&"))));
    assert!((400..500).contains(&status(&answer)), "{answer}");
    assert!(answer.contains("at most 5000 parameters"), "{answer}");
    still_serving(&daemon);
    let grown = daemon.resident_bytes().saturating_sub(before);
    eprintln!("resident after the hostile bodies: +{} MiB", grown >> 20);
    assert!(grown < 200 << 20, "hostile bodies left {} MiB behind", grown >> 20);
}
