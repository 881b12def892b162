//! Real AWS clients against a real `sluiced`: boto3 and the AWS CLI v1 of today (SQS over AWS
//! JSON 1.0, SNS over Query, Kinesis over AWS JSON 1.1) and a boto3 of mid-2023 whose SQS
//! still speaks the Query protocol. The Python tests live in `tests/aws/`; their virtualenvs
//! are made once by `tests/aws/setup-venvs.sh` under the target directory (python3 with its
//! venv module and access to PyPI are needed; `.ci/run` makes sure of both).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sluice_protocol::ReceiveMessage;
use sluice_testkit::Daemon;

fn aws_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/aws")
}

fn venvs() -> &'static Path {
    static VENVS: OnceLock<PathBuf> = OnceLock::new();
    VENVS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aws-venvs");
        let status =
            Command::new("bash").arg(aws_dir().join("setup-venvs.sh")).arg(&dir).status().expect("running tests/aws/setup-venvs.sh");
        assert!(status.success(), "tests/aws/setup-venvs.sh failed: it needs python3 with the venv module and access to PyPI");
        dir
    })
}

/// Runs one Python test module in `venv` against `daemon`; fails with its report.
fn python_tests(venv: &str, daemon: &Daemon, module: &str, env: &[(&str, &str)]) {
    let python = venvs().join(venv).join("bin/python");
    let output = Command::new(python)
        .args(["-m", "unittest", "-v", module])
        .current_dir(aws_dir())
        .env("SLUICE_ENDPOINT", daemon.http_url())
        // Nothing from the machine's own AWS configuration.
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .output()
        .expect("running python");
    let report = String::from_utf8_lossy(&output.stderr);
    eprintln!("{report}");
    assert!(output.status.success(), "{module} ({venv}) failed:\n{report}");
}

#[test]
fn firehose_through_boto3_and_the_cli_into_a_real_s3_server_with_an_outage() {
    // A free port for moto_server (the Python test starts and stops it there).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let endpoint = format!("http://127.0.0.1:{port}");
    // And one for the transformation function's Lambda API (the Python test serves it).
    let lambda_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let lambda_endpoint = format!("http://127.0.0.1:{lambda_port}");
    let daemon = Daemon::start_with(&[
        "--firehose-lambda-endpoint",
        &lambda_endpoint,
        "--firehose-s3-endpoint",
        &endpoint,
        "--firehose-s3-access-key-id",
        "test",
        "--firehose-s3-secret-access-key",
        "test",
    ]);
    let moto = venvs().join("moto/bin/moto_server");
    let env = [("SLUICE_MOTO_SERVER", moto.to_str().unwrap()), ("SLUICE_MOTO_PORT", &port), ("SLUICE_LAMBDA_PORT", &lambda_port)];
    python_tests("current", &daemon, "test_firehose", &env);
}

#[test]
fn sqs_every_action_through_todays_boto3_over_aws_json() {
    let daemon = Daemon::start();
    python_tests("current", &daemon, "test_sqs", &[("SLUICE_SQS_PROTOCOL", "json")]);
}

#[test]
fn sqs_every_action_through_a_query_protocol_boto3() {
    let daemon = Daemon::start();
    python_tests("query", &daemon, "test_sqs", &[("SLUICE_SQS_PROTOCOL", "query")]);
}

#[test]
fn sns_every_action_through_boto3() {
    // Its HTTP endpoint listens on 127.0.0.1.
    let daemon = Daemon::start_with(&["--http-endpoints-allow-private"]);
    python_tests("current", &daemon, "test_sns", &[]);
}

#[test]
fn kinesis_every_action_through_boto3_with_subscribe_to_shard() {
    let daemon = Daemon::start();
    python_tests("current", &daemon, "test_kinesis", &[]);
}

#[test]
fn cloudwatch_alarms_and_metrics_through_boto3_the_cli_and_a_query_protocol_boto3() {
    let daemon = Daemon::start_with(&["--metrics-sample-seconds", "1"]);
    python_tests("current", &daemon, "test_cloudwatch", &[]);
    python_tests("query", &daemon, "test_cloudwatch", &[("SLUICE_CLOUDWATCH_CONTENT_TYPE", "application/x-www-form-urlencoded")]);
    // Every member botocore can set on every served CloudWatch operation: taken, or refused by name.
    python_tests("current", &daemon, "test_models.Models.test_cloudwatch", &[]);
}

#[test]
fn sigv4_through_boto3_and_the_cli_with_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials.json");
    let (key_id, secret) = ("AKIASLUICETEST", "sluice-test-secret-0123456789");
    std::fs::write(&credentials, format!(r#"{{"principals":[{{"access_key_id":"{key_id}","secret_access_key":"{secret}"}}]}}"#)).unwrap();
    // Its HTTP endpoint listens on 127.0.0.1.
    let daemon = Daemon::start_with(&["--credentials", credentials.to_str().unwrap(), "--http-endpoints-allow-private"]);
    python_tests("current", &daemon, "test_auth", &[("SLUICE_ACCESS_KEY_ID", key_id), ("SLUICE_SECRET_ACCESS_KEY", secret)]);
}

#[test]
fn boto3_and_the_cli_over_https_verifying_a_test_ca_and_under_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let path = |path: &Path| path.to_str().unwrap().to_owned();
    let servers = sluice_testkit::pki::Authority::new(dir.path(), "servers");
    let clients = sluice_testkit::pki::Authority::new(dir.path(), "clients");
    let (cert, key) = servers.issue(dir.path(), "server");
    let (client_cert, client_key) = clients.issue(dir.path(), "client");
    let tls = ["--tls-cert".to_owned(), path(&cert), "--tls-key".to_owned(), path(&key)];
    let https = |daemon: &Daemon| format!("https://localhost:{}", daemon.http_addr.unwrap().port());

    let daemon = Daemon::start_with(&tls.iter().map(String::as_str).collect::<Vec<_>>());
    python_tests("current", &daemon, "test_tls.Tls", &[("SLUICE_ENDPOINT", &https(&daemon)), ("SLUICE_CA_FILE", &path(&servers.file))]);
    drop(daemon);

    let mutual = [&tls[..], &["--tls-client-ca".to_owned(), path(&clients.file)]].concat();
    let daemon = Daemon::start_with(&mutual.iter().map(String::as_str).collect::<Vec<_>>());
    python_tests(
        "current",
        &daemon,
        "test_tls.MutualTls",
        &[
            ("SLUICE_ENDPOINT", &https(&daemon)),
            ("SLUICE_CA_FILE", &path(&servers.file)),
            ("SLUICE_CLIENT_CERT", &path(&client_cert)),
            ("SLUICE_CLIENT_KEY", &path(&client_key)),
        ],
    );
}

#[test]
fn key_service_and_encryption_through_boto3_and_the_cli_and_envelopes_across_protocols() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.key");
    std::fs::write(&root, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff").unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o600)).unwrap();
    let daemon = Daemon::start_with(&["--root-key-file", root.to_str().unwrap()]);
    let c = daemon.client();
    let key = sluice_protocol::Op::CreateKey { description: None, key_usage: None, key_spec: None, tags: vec![] };
    let key_id = match c.run(c.client().call(key)).unwrap() {
        sluice_protocol::Reply::Key(key) => key.key_id,
        other => panic!("{other:?}"),
    };
    let alias = sluice_protocol::Op::CreateAlias { alias: "alias/envelopes".into(), key: key_id, update: false };
    c.run(c.client().call(alias)).unwrap();
    let plain = vec![("SqsManagedSseEnabled".to_owned(), "false".to_owned())];
    c.run(c.client().create_queue("envelopes", plain.clone(), vec![])).unwrap();
    c.run(c.client().create_queue("envelopes-back", plain, vec![])).unwrap();
    // Sealed here over the binary protocol, opened by Python over the AWS JSON protocol...
    let envelope = sluice_client::envelope::Envelope::kms("alias/envelopes");
    let mut batch: Vec<sluice_protocol::SendEntry> = (0..3)
        .map(|i| sluice_protocol::SendEntry { id: i.to_string(), body: format!("from rust {i}").into(), ..Default::default() })
        .collect();
    c.run(envelope.seal_entries(c.client(), &mut batch)).unwrap();
    c.run(c.client().send_message_batch("envelopes", batch)).unwrap();
    let env =
        [("SLUICE_ENVELOPE_QUEUE", "envelopes"), ("SLUICE_ENVELOPE_BACK", "envelopes-back"), ("SLUICE_ENVELOPE_KEY", "alias/envelopes")];
    python_tests("current", &daemon, "test_kms", &env);
    // Every member botocore can set on every served operation: taken, or refused by name.
    python_tests("current", &daemon, "test_models", &[]);
    // ...and sealed by Python, opened here.
    let receive = ReceiveMessage {
        queue: "envelopes-back".into(),
        message_attribute_names: vec!["All".into()],
        wait_time_seconds: Some(1),
        ..Default::default()
    };
    let mut messages = c.run(c.client().receive_message(receive)).unwrap();
    assert_eq!(messages.len(), 1);
    assert!(c.run(envelope.open_message(c.client(), &mut messages[0])).unwrap());
    assert_eq!(&messages[0].body[..], b"from python");
}

#[test]
fn policies_through_boto3() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials.json");
    let limited = r#"[{"Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:*:*:limited-*"}]}]"#;
    let other = r#"[{"Statement": {"Effect": "Allow", "Action": ["sqs:SendMessage", "sns:Publish", "kinesis:PutRecord", "kinesis:DescribeStreamSummary"], "Resource": "*"}}]"#;
    let file = format!(
        r#"{{"principals": [
            {{"access_key_id": "AKIAOWNER", "secret_access_key": "owner-secret-0123456789"}},
            {{"access_key_id": "AKIALIMITED", "secret_access_key": "limited-secret-0123456789", "policies": {limited}}},
            {{"access_key_id": "AKIAOTHER", "secret_access_key": "other-secret-0123456789", "account_id": "222222222222", "policies": {other}}}
        ]}}"#
    );
    std::fs::write(&credentials, file).unwrap();
    let daemon = Daemon::start_with(&["--credentials", credentials.to_str().unwrap()]);
    let env = [
        ("SLUICE_OWNER_KEY_ID", "AKIAOWNER"),
        ("SLUICE_OWNER_SECRET", "owner-secret-0123456789"),
        ("SLUICE_LIMITED_KEY_ID", "AKIALIMITED"),
        ("SLUICE_LIMITED_SECRET", "limited-secret-0123456789"),
        ("SLUICE_OTHER_KEY_ID", "AKIAOTHER"),
        ("SLUICE_OTHER_SECRET", "other-secret-0123456789"),
    ];
    python_tests("current", &daemon, "test_policies", &env);
}

/// Runs one script of `tests/node` against `daemon`; its report (stdout and stderr), or a
/// failure with it.
fn node_script(daemon: &Daemon, script: &str) -> String {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    let dir = sluice_testkit::node_clients(&source, Path::new(env!("CARGO_TARGET_TMPDIR")));
    let output = Command::new("node")
        .arg(dir.join(script))
        .env("SLUICE_ENDPOINT", daemon.http_url())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("running node");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("{report}");
    assert!(output.status.success(), "{script} failed:\n{report}");
    report
}

#[test]
fn javascript_sdk_v3_kinesis_over_http2_and_sqs_and_sns() {
    let daemon = Daemon::start();
    let report = node_script(&daemon, "sdk.js");
    assert!(report.contains("records pushed over HTTP/2"), "{report}");
}

#[test]
fn javascript_sdk_v3_cloudwatch_over_json_cbor_and_query() {
    let daemon = Daemon::start_with(&["--metrics-sample-seconds", "1"]);
    let report = node_script(&daemon, "cloudwatch.js");
    assert!(report.contains("JSON, CBOR and Query ok"), "{report}");
}

#[test]
fn aws_cli_commands_of_the_first_five_minutes() {
    let daemon = Daemon::start();
    python_tests("current", &daemon, "test_cli", &[]);
}

#[test]
fn messages_cross_between_the_binary_protocol_and_both_sqs_protocols() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("crossing", vec![], vec![])).unwrap();
    for (venv, protocol) in [("current", "json"), ("query", "query")] {
        let body = format!("from the binary client to {protocol}");
        let sent = c.run(c.client().send_message("crossing", body.clone())).unwrap();
        let reply = format!("from the {protocol} sdk to the binary client");
        python_tests(
            venv,
            &daemon,
            "test_cross",
            &[
                ("SLUICE_CROSS_QUEUE", "crossing"),
                ("SLUICE_CROSS_EXPECT", body.as_str()),
                ("SLUICE_CROSS_ID", sent.message_id.as_str()),
                ("SLUICE_CROSS_REPLY", reply.as_str()),
            ],
        );
        let receive = ReceiveMessage {
            queue: "crossing".into(),
            wait_time_seconds: Some(5),
            message_attribute_names: vec!["All".into()],
            ..ReceiveMessage::default()
        };
        let got = c.run(c.client().receive_message(receive)).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].body.as_ref(), reply.as_bytes());
        let via = got[0].message_attributes.iter().find(|a| a.name == "via").and_then(|a| a.string_value.as_deref());
        assert_eq!(via, Some(protocol));
        c.run(c.client().delete_message("crossing", &got[0].receipt_handle)).unwrap();
    }
}
