//! HTTP subscribers, through a real daemon and a real HTTP server in the test: the
//! confirmation handshake, notifications as SNS POSTs them, raw delivery, retries after
//! errors, and redrive to the subscription's dead-letter queue when retries are spent.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sluice_client::*;
use sluice_testkit::*;

/// What the endpoint was sent.
#[derive(Debug)]
struct Posted {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Posted {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// An HTTP endpoint that records every POST and answers with the scripted statuses (200 once
/// the script is used up).
struct Endpoint {
    url: String,
    posted: Receiver<Posted>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Endpoint {
    fn start(script: &[u16]) -> Endpoint {
        Endpoint::start_with(script, None)
    }

    /// With `tls`, an HTTPS endpoint (named `localhost`, for its certificate).
    fn start_with(script: &[u16], tls: Option<Arc<rustls::ServerConfig>>) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match tls {
            Some(_) => format!("https://localhost:{port}/sns/hook?team=a"),
            None => format!("http://127.0.0.1:{port}/sns/hook?team=a"),
        };
        let (tx, posted) = channel();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<u16>>()));
        let answers = script.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let served = match &tls {
                    Some(config) => {
                        let connection = rustls::ServerConnection::new(config.clone()).unwrap();
                        serve(rustls::StreamOwned::new(connection, stream), &tx, &answers)
                    }
                    None => serve(stream, &tx, &answers),
                };
                if served.is_err() {
                    return;
                }
            }
        });
        Endpoint { url, posted, script }
    }

    fn next(&self) -> Posted {
        self.posted.recv_timeout(Duration::from_secs(20)).expect("the endpoint received nothing within 20 s")
    }

    fn nothing_within(&self, wait: Duration) -> bool {
        self.posted.recv_timeout(wait).is_err()
    }
}

fn serve(mut stream: impl Read + Write, posted: &Sender<Posted>, script: &Mutex<VecDeque<u16>>) -> Result<(), ()> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_len, path, headers) = loop {
        let n = stream.read(&mut chunk).map_err(|_| ())?;
        if n == 0 {
            return Ok(());
        }
        data.extend_from_slice(&chunk[..n]);
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut slots);
        if let httparse::Status::Complete(len) = request.parse(&data).map_err(|_| ())? {
            assert_eq!(request.method, Some("POST"));
            let headers: Vec<(String, String)> =
                request.headers.iter().map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned())).collect();
            break (len, request.path.unwrap_or_default().to_owned(), headers);
        }
    };
    let length: usize =
        headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    while data.len() < head_len + length {
        let n = stream.read(&mut chunk).map_err(|_| ())?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&data[head_len..head_len + length]).into_owned();
    let status = script.lock().unwrap().pop_front().unwrap_or(200);
    posted.send(Posted { path, headers, body }).map_err(|_| ())?;
    let reason = if status == 200 { "OK" } else { "Error" };
    let _ = stream.write_all(format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
    let _ = stream.flush();
    Ok(())
}

/// Subscribes the endpoint, takes its SubscriptionConfirmation and confirms; returns the ARN.
fn confirmed(c: &Conn, topic: &str, endpoint: &Endpoint, attributes: Vec<(String, String)>) -> String {
    let op = Op::Subscribe {
        topic: topic.into(),
        protocol: "http".into(),
        endpoint: Some(endpoint.url.clone()),
        attributes,
        return_subscription_arn: false,
    };
    assert_eq!(c.run(c.client().call(op)).unwrap(), Reply::Arn("pending confirmation".into()));
    let confirmation = endpoint.next();
    assert_eq!(confirmation.header("x-amz-sns-message-type"), Some("SubscriptionConfirmation"));
    assert_eq!(confirmation.header("x-amz-sns-topic-arn"), Some(topic));
    assert_eq!(confirmation.path, "/sns/hook?team=a");
    let document = confirmation.json();
    assert_eq!(document["Type"], "SubscriptionConfirmation");
    assert_eq!(document["TopicArn"], topic);
    let token = document["Token"].as_str().unwrap().to_owned();
    assert!(document["SubscribeURL"].as_str().unwrap().contains(&token));
    assert!(document["Message"].as_str().unwrap().contains("To confirm the subscription"));
    c.run(c.client().confirm_subscription(topic, &token)).unwrap()
}

#[test]
fn http_subscribers_confirm_then_receive_notifications_as_sns_posts_them() {
    let daemon = Daemon::start_with(&["--http-endpoints-allow-private"]);
    let c = daemon.client();
    let topic = c.run(c.client().create_topic("web", vec![], vec![])).unwrap();
    let endpoint = Endpoint::start(&[]);

    let op = Op::Subscribe {
        topic: topic.clone(),
        protocol: "http".into(),
        endpoint: Some(endpoint.url.clone()),
        attributes: vec![],
        return_subscription_arn: true,
    };
    let Reply::Arn(arn) = c.run(c.client().call(op)).unwrap() else { panic!("no ARN") };
    let pending = c.run(c.client().get_subscription_attributes(&arn)).unwrap();
    assert_eq!(attribute(&pending, "PendingConfirmation"), Some("true"));
    assert_eq!(attribute(&c.run(c.client().get_topic_attributes(&topic)).unwrap(), "SubscriptionsPending"), Some("1"));
    let (rows, _) = c.run(c.client().list_subscriptions(Some(&topic), None)).unwrap();
    assert_eq!(rows[0].subscription_arn, "PendingConfirmation");
    // Nothing is delivered before the endpoint confirms.
    let confirmation = endpoint.next();
    c.run(c.client().publish(&topic, "too early")).unwrap();
    let token = confirmation.json()["Token"].as_str().unwrap().to_owned();
    assert_code(c.run(c.client().confirm_subscription(&topic, "wrong")), ErrorCode::InvalidParameter);
    assert_eq!(c.run(c.client().confirm_subscription(&topic, &token)).unwrap(), arn);
    assert_eq!(attribute(&c.run(c.client().get_topic_attributes(&topic)).unwrap(), "SubscriptionsConfirmed"), Some("1"));

    let attributes = vec![MessageAttribute::string("color", "String", "red")];
    let sent = PublishEntry { message: "hello".into(), subject: Some("Hi".into()), attributes, ..PublishEntry::default() };
    let published = c.run(c.client().publish_entry(&topic, sent)).unwrap();
    let notification = endpoint.next();
    assert_eq!(notification.header("x-amz-sns-message-type"), Some("Notification"));
    assert_eq!(notification.header("x-amz-sns-message-id"), Some(published.message_id.as_str()));
    assert_eq!(notification.header("x-amz-sns-topic-arn"), Some(topic.as_str()));
    assert_eq!(notification.header("x-amz-sns-subscription-arn"), Some(arn.as_str()));
    assert_eq!(notification.header("content-type"), Some("text/plain; charset=UTF-8"));
    let envelope = notification.json();
    assert_eq!(envelope["Message"], "hello");
    assert_eq!(envelope["Subject"], "Hi");
    assert_eq!(envelope["MessageId"], published.message_id.as_str());
    assert_eq!(envelope["MessageAttributes"]["color"]["Value"], "red");

    // Raw delivery POSTs the message itself.
    c.run(c.client().set_subscription_attribute(&arn, "RawMessageDelivery", Some("true"))).unwrap();
    c.run(c.client().publish(&topic, "plain text")).unwrap();
    let raw = endpoint.next();
    assert_eq!(raw.body, "plain text");
    assert_eq!(raw.header("x-amz-sns-rawdelivery"), Some("true"));

    // Unsubscribed: the endpoint hears so, and no notification arrives after.
    c.run(c.client().unsubscribe(&arn)).unwrap();
    assert_eq!(endpoint.next().header("x-amz-sns-message-type"), Some("UnsubscribeConfirmation"));
    c.run(c.client().publish(&topic, "after")).unwrap();
    assert!(endpoint.nothing_within(Duration::from_secs(1)));
    // The hidden delivery queue never shows among the client's queues.
    assert!(c.run(c.client().list_queues(None, None, None)).unwrap().0.is_empty());
}

#[test]
fn http_delivery_retries_after_errors_and_redrives_when_its_policy_is_spent() {
    let daemon = Daemon::start_with(&["--http-endpoints-allow-private"]);
    let c = daemon.client();
    let topic = c.run(c.client().create_topic("flaky", vec![], vec![])).unwrap();
    c.run(c.client().create_queue("undelivered", vec![], vec![])).unwrap();
    // After confirming: two 500s then success for the first message; four 500s for the second.
    let endpoint = Endpoint::start(&[200, 500, 500, 200, 500, 503, 500, 500]);
    let policy = r#"{"healthyRetryPolicy":{"numRetries":3,"numNoDelayRetries":3,"minDelayTarget":1,"maxDelayTarget":1}}"#;
    let redrive = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:undelivered"}"#;
    let arn = confirmed(&c, &topic, &endpoint, vec![kv("DeliveryPolicy", policy), kv("RedrivePolicy", redrive)]);
    assert_code(
        c.run(c.client().set_subscription_attribute(&arn, "DeliveryPolicy", Some(r#"{"healthyRetryPolicy":{"numRetries":500}}"#))),
        ErrorCode::InvalidParameter,
    );

    let first = c.run(c.client().publish(&topic, "first")).unwrap();
    let attempts: Vec<Posted> = (0..3).map(|_| endpoint.next()).collect();
    assert!(attempts.iter().all(|p| p.header("x-amz-sns-message-id") == Some(first.as_str()) && p.json()["Message"] == "first"));

    let second = c.run(c.client().publish(&topic, "second")).unwrap();
    let attempts: Vec<Posted> = (0..4).map(|_| endpoint.next()).collect();
    assert!(attempts.iter().all(|p| p.header("x-amz-sns-message-id") == Some(second.as_str())));
    let receive = ReceiveMessage {
        queue: "undelivered".into(),
        max_messages: Some(10),
        wait_time_seconds: Some(10),
        message_attribute_names: vec!["All".into()],
        ..ReceiveMessage::default()
    };
    let dead = c.run(c.client().receive_message(receive)).unwrap();
    assert_eq!(dead.len(), 1, "only the message whose retries ran out is dead-lettered");
    let envelope: Value = serde_json::from_slice(&dead[0].body).unwrap();
    assert_eq!(envelope["Message"], "second");
    let code = dead[0].message_attributes.iter().find(|a| a.name == "ErrorCode").unwrap();
    assert_eq!(code.string_value.as_deref(), Some("DeliveryFailed"));
    // Spent: no fifth attempt.
    assert!(endpoint.nothing_within(Duration::from_millis(1500)));
    assert!(endpoint.script.lock().unwrap().is_empty());
    // The metrics count it all: one delivered, five attempts retried, one given up.
    let metrics = scrape(&daemon);
    for (family, expected) in [("deliveries", 1), ("delivery_retries", 5), ("delivery_failures", 1)] {
        let series = format!(r#"sluice_topic_{family}_total{{topic="flaky",protocol="http"}} {expected}"#);
        assert!(metrics.lines().any(|line| line == series), "no `{series}` in:\n{metrics}");
    }
}

/// The daemon's `/metrics`, from its gateway.
fn scrape(daemon: &Daemon) -> String {
    let addr = daemon.http_addr.unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

#[test]
fn http_endpoints_are_checked() {
    let daemon = Daemon::start_with(&["--http-endpoints-allow-private"]);
    let c = daemon.client();
    let topic = c.run(c.client().create_topic("t", vec![], vec![])).unwrap();
    assert_code(c.run(c.client().subscribe(&topic, "http", "not a url", vec![])), ErrorCode::InvalidParameter);
    assert_code(c.run(c.client().subscribe(&topic, "http", "ftp://example.com/", vec![])), ErrorCode::InvalidParameter);
    assert_code(c.run(c.client().subscribe(&topic, "https", "http://example.com/", vec![])), ErrorCode::InvalidParameter);
    assert_code(c.run(c.client().subscribe(&topic, "http", "https://example.com/", vec![])), ErrorCode::InvalidParameter);
    assert_code(
        c.run(c.client().subscribe(
            &topic,
            "http",
            "http://127.0.0.1:9/",
            vec![kv("DeliveryPolicy", r#"{"healthyRetryPolicy":{"backoffFunction":"random"}}"#)],
        )),
        ErrorCode::InvalidParameter,
    );
    assert_code(c.run(c.client().set_topic_attribute(&topic, "DeliveryPolicy", Some("{broken"))), ErrorCode::InvalidParameter);
}

#[test]
fn a_notification_on_its_way_to_an_endpoint_survives_kill_and_restart() {
    let mut daemon = Daemon::start_with(&["--http-endpoints-allow-private"]);
    let endpoint = Endpoint::start(&[200]);
    let topic = {
        let c = daemon.client();
        let topic = c.run(c.client().create_topic("kept", vec![], vec![])).unwrap();
        let policy = r#"{"healthyRetryPolicy":{"numRetries":100,"minDelayTarget":1,"maxDelayTarget":1}}"#;
        confirmed(&c, &topic, &endpoint, vec![kv("DeliveryPolicy", policy)]);
        // The endpoint fails from now on; the publish is acknowledged, its first attempt fails.
        endpoint.script.lock().unwrap().extend([500; 1000]);
        c.run(c.client().publish(&topic, "survivor")).unwrap();
        assert_eq!(endpoint.next().json()["Message"], "survivor");
        topic
    };
    daemon.kill();
    endpoint.script.lock().unwrap().clear();
    daemon.restart();
    // After the restart the retry succeeds; the subscription is still confirmed.
    let delivered = endpoint.next();
    assert_eq!(delivered.json()["Message"], "survivor");
    assert_eq!(delivered.header("x-amz-sns-topic-arn"), Some(topic.as_str()));
    let c = daemon.client();
    c.run(c.client().publish(&topic, "after restart")).unwrap();
    let next = endpoint.next();
    assert_eq!(next.json()["Message"], "after restart");
}

#[test]
fn https_endpoints_are_reached_over_tls_with_a_trusted_authority() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let ca_file = directory.path().join("endpoint-ca.pem");
    std::fs::write(&ca_file, certified.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key.into())
        .unwrap();
    let endpoint = Endpoint::start_with(&[], Some(Arc::new(server)));

    let daemon = Daemon::start_with(&["--https-ca-file", ca_file.to_str().unwrap(), "--http-endpoints-allow-private"]);
    let c = daemon.client();
    let topic = c.run(c.client().create_topic("secure", vec![], vec![])).unwrap();
    let op = Op::Subscribe {
        topic: topic.clone(),
        protocol: "https".into(),
        endpoint: Some(endpoint.url.clone()),
        attributes: vec![],
        return_subscription_arn: false,
    };
    assert_eq!(c.run(c.client().call(op)).unwrap(), Reply::Arn("pending confirmation".into()));
    let confirmation = endpoint.next();
    assert_eq!(confirmation.header("host").map(|h| h.starts_with("localhost:")), Some(true));
    let token = confirmation.json()["Token"].as_str().unwrap().to_owned();
    c.run(c.client().confirm_subscription(&topic, &token)).unwrap();
    c.run(c.client().publish(&topic, "over tls")).unwrap();
    assert_eq!(endpoint.next().json()["Message"], "over tls");

    // An endpoint whose certificate nobody vouches for gets nothing: the daemon without the
    // authority cannot confirm it.
    let untrusting = Daemon::start_with(&["--http-endpoints-allow-private"]);
    let c = untrusting.client();
    let topic = c.run(c.client().create_topic("secure", vec![], vec![])).unwrap();
    c.run(c.client().subscribe(&topic, "https", &endpoint.url, vec![])).unwrap();
    assert!(endpoint.nothing_within(Duration::from_secs(1)), "a TLS handshake with an untrusted certificate must fail");
}

#[test]
fn a_bad_https_ca_file_stops_the_daemon_with_a_reason() {
    let directory = tempfile::tempdir().unwrap();
    let ca_file = directory.path().join("not-a-certificate.pem");
    std::fs::write(&ca_file, "hello").unwrap();
    let data = tempfile::tempdir().unwrap();
    let (status, stderr) = Daemon::start_failing(data.path(), &["--https-ca-file", ca_file.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("--https-ca-file"), "{stderr}");
}

#[test]
fn endpoints_on_addresses_behind_the_broker_are_refused_unless_allowed() {
    let daemon = Daemon::start();
    let c = daemon.client();
    let topic = c.run(c.client().create_topic("t", vec![], vec![])).unwrap();
    let endpoint = Endpoint::start(&[200]);
    for url in [
        endpoint.url.as_str(),
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://10.1.2.3/hook",
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "https://localhost:9/",
    ] {
        match c.run(c.client().subscribe(&topic, if url.starts_with("https") { "https" } else { "http" }, url, vec![])) {
            Err(ClientError::Server(error)) => {
                assert_eq!(error.code, ErrorCode::InvalidParameter, "{url}: {error}");
                assert!(error.message.contains("--http-endpoints-allow-private"), "{url}: {error}");
            }
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    }
    assert!(endpoint.nothing_within(Duration::from_millis(500)), "a refused endpoint was contacted");
}

/// AWS's own SNS message validator (npm `sns-validator`), with the other node clients.
fn node_validator() -> std::path::PathBuf {
    let source = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    sluice_testkit::node_clients(&source, std::path::Path::new(env!("CARGO_TARGET_TMPDIR")))
}

/// Runs the validator over `messages` (SNS JSON documents); its exit status and report.
fn validate(messages: &[String], ca_file: &std::path::Path) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let path = dir.path().join(format!("message-{i}.json"));
            std::fs::write(&path, message).unwrap();
            path.to_str().unwrap().to_owned()
        })
        .collect();
    let output = std::process::Command::new("node")
        .arg(node_validator().join("validate.js"))
        .args(&files)
        .env("NODE_EXTRA_CA_CERTS", ca_file)
        .env("SNS_CERT_HOST", r"^127\.0\.0\.1:\d+$")
        .output()
        .expect("running node");
    (output.status.success(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

#[test]
fn aws_sns_message_validator_accepts_what_sluice_signs_and_refuses_a_tampered_message() {
    let dir = tempfile::tempdir().unwrap();
    let ca = sluice_testkit::pki::Authority::new(dir.path(), "main");
    let (cert, key) = ca.issue(dir.path(), "server");
    let mut daemon =
        Daemon::start_with(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap(), "--http-endpoints-allow-private"]);
    let tls = sluice_client::tls::Tls::new(Some(&ca.file), None).unwrap();
    let c = daemon.client_tls(&tls, None).unwrap();
    let topic = c.run(c.client().create_topic("signed", vec![], vec![])).unwrap();
    let endpoint = Endpoint::start(&[]);
    let op = Op::Subscribe {
        topic: topic.clone(),
        protocol: "http".into(),
        endpoint: Some(endpoint.url.clone()),
        attributes: vec![],
        return_subscription_arn: false,
    };
    c.run(c.client().call(op)).unwrap();
    let confirmation = endpoint.next().body;
    let token = serde_json::from_str::<Value>(&confirmation).unwrap()["Token"].as_str().unwrap().to_owned();
    c.run(c.client().confirm_subscription(&topic, &token)).unwrap();
    c.run(c.client().publish(&topic, "signed with SHA-1")).unwrap();
    let sha1 = endpoint.next().body;
    c.run(c.client().set_topic_attribute(&topic, "SignatureVersion", Some("2"))).unwrap();
    c.run(c.client().publish_entry(
        &topic,
        PublishEntry { message: "signed with SHA-256".into(), subject: Some("s".into()), ..PublishEntry::default() },
    ))
    .unwrap();
    let sha256 = endpoint.next().body;
    assert_eq!(serde_json::from_str::<Value>(&sha256).unwrap()["SignatureVersion"], "2");

    let (valid, report) = validate(&[confirmation, sha1.clone(), sha256], &ca.file);
    assert!(valid, "{report}");
    let tampered = sha1.replace("signed with SHA-1", "signed with SHA-l");
    let (valid, report) = validate(&[tampered], &ca.file);
    assert!(!valid && report.contains("INVALID"), "a changed message must not validate: {report}");

    // The key is kept: a notification signed after two restarts verifies with the same certificate.
    let data_dir = daemon.data_dir().to_owned();
    let kept = |name: &str| std::fs::read(data_dir.join(name)).unwrap();
    let (key_before, cert_before) = (kept("sns-signing-key.pem"), kept("sns-signing-cert.pem"));
    drop(c);
    daemon.restart();
    daemon.restart();
    assert!(kept("sns-signing-key.pem") == key_before && kept("sns-signing-cert.pem") == cert_before);
    let c = daemon.client_tls(&tls, None).unwrap();
    c.run(c.client().publish(&topic, "after restarts")).unwrap();
    let later = endpoint.next().body;
    let (valid, report) = validate(&[later], &ca.file);
    assert!(valid, "{report}");

    // Unsubscribing POSTs an UnsubscribeConfirmation, signed; its token restores the subscription.
    let arn = match c.run(c.client().call(Op::ListSubscriptions { topic: Some(topic.clone()), next_token: None })).unwrap() {
        Reply::Subscriptions { subscriptions, .. } => subscriptions[0].subscription_arn.clone(),
        other => panic!("{other:?}"),
    };
    c.run(c.client().unsubscribe(&arn)).unwrap();
    let goodbye = endpoint.next();
    assert_eq!(goodbye.header("x-amz-sns-message-type"), Some("UnsubscribeConfirmation"));
    let document = goodbye.json();
    assert_eq!(document["Type"], "UnsubscribeConfirmation");
    let (valid, report) = validate(std::slice::from_ref(&goodbye.body), &ca.file);
    assert!(valid, "{report}");
    c.run(c.client().publish(&topic, "while unsubscribed")).unwrap();
    assert!(endpoint.nothing_within(Duration::from_millis(500)), "nothing is delivered while unsubscribed");
    drop(c);
    daemon.restart();
    let c = daemon.client_tls(&tls, None).unwrap();
    let restored = c.run(c.client().confirm_subscription(&topic, document["Token"].as_str().unwrap())).unwrap();
    assert_eq!(restored, arn, "the same subscription is back");
    c.run(c.client().publish(&topic, "restored")).unwrap();
    assert_eq!(endpoint.next().json()["Message"], "restored");
}
