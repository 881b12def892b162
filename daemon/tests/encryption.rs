//! Encryption at rest and the key service, through a real `sluiced` and the real client.
//!
//! - With a root key, queues (SSE-SQS by default, SSE-KMS by key), topics (`KmsMasterKeyId`)
//!   and streams (StartStreamEncryption) write no byte of a message's body, attributes,
//!   record data or partition key to disk in clear: every file of the data directory is
//!   searched for markers, after clean stops and after `kill -9`. A control queue without
//!   encryption shows the search finds what is there.
//! - Everything acknowledged comes back after restarts (clean, killed, with and without writes
//!   between), across a key rotation.
//! - A missing or wrong root key stops the start with a clear message and loses nothing.
//! - Disabling a key refuses new writes and reads as KMS does; deletion waits its window.
//! - Without a root key, nothing claims to be encrypted and asking for it is refused.
//! - Client-side encryption (`sluice_client::envelope`) round-trips and the daemon never
//!   holds the clear body.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sluice_client::envelope::Envelope;
use sluice_client::*;
use sluice_testkit::*;

/// A root key in a file of its own, outside any data directory (mode 0600).
fn root_key(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    let hex: String = (0..32).map(|i| format!("{:02x}", byte.wrapping_add(i))).collect();
    std::fs::write(&path, hex).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn with_root(path: &Path) -> Vec<String> {
    vec!["--root-key-file".to_owned(), path.to_str().unwrap().to_owned()]
}

fn args(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The files under `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|window| window == needle) {
                found.push(path);
            }
        }
    }
    found
}

fn assert_nothing_in_clear(dir: &Path) {
    for marker in [&b"SECRET-"[..], b"ATTRSECRET", b"PKSECRET"] {
        let found = files_holding(dir, marker);
        assert!(found.is_empty(), "{} reached the disk in clear in {found:?}", String::from_utf8_lossy(marker));
    }
}

fn key_op(c: &Conn, op: Op) -> Result<Reply, ClientError> {
    c.run(c.client().call(op))
}

fn create_key(c: &Conn, alias: &str) -> KeyDescription {
    let key = match key_op(c, Op::CreateKey { description: Some("test".into()), key_usage: None, key_spec: None, tags: vec![] }).unwrap() {
        Reply::Key(key) => key,
        other => panic!("CreateKey answered {other:?}"),
    };
    key_op(c, Op::CreateAlias { alias: alias.into(), key: key.key_id.clone(), update: false }).unwrap();
    key
}

/// Sends `count` messages tagged `tag` to `queue`, each with an attribute: what was acknowledged.
fn send(c: &Conn, queue: &str, tag: &str, count: usize, fifo: bool) -> Vec<String> {
    let mut sent = Vec::new();
    for i in 0..count {
        let body = format!("SECRET-{tag}-{i}");
        let entry = SendEntry {
            body: Bytes::from(body.clone()),
            attributes: vec![MessageAttribute::string("a", "String", format!("ATTRSECRET-{tag}-{i}"))],
            message_group_id: fifo.then(|| "g".to_owned()),
            deduplication_id: fifo.then(|| format!("{tag}-{i}")),
            ..SendEntry::default()
        };
        c.run(c.client().send_entry(queue, entry)).unwrap();
        sent.push(body);
    }
    sent
}

/// Receives and deletes every message of `queue`: bodies, each checked against its attribute.
fn drain(c: &Conn, queue: &str) -> BTreeSet<String> {
    let mut bodies = BTreeSet::new();
    loop {
        let receive = ReceiveMessage {
            queue: queue.into(),
            max_messages: Some(10),
            wait_time_seconds: Some(0),
            message_attribute_names: vec!["All".into()],
            ..ReceiveMessage::default()
        };
        let messages = c.run(c.client().receive_message(receive)).unwrap();
        if messages.is_empty() {
            return bodies;
        }
        for message in messages {
            let body = String::from_utf8(message.body.to_vec()).unwrap();
            if let Some(attribute) = message.message_attributes.iter().find(|a| a.name == "a") {
                assert_eq!(attribute.string_value.as_deref(), Some(body.replace("SECRET-", "ATTRSECRET-").as_str()));
            }
            c.run(c.client().delete_message(queue, &message.receipt_handle)).unwrap();
            bodies.insert(body);
        }
    }
}

/// Every record of `stream`: "partition key/data".
fn read_stream(c: &Conn, stream: &str) -> Result<BTreeSet<String>, ClientError> {
    let description = c.run(c.client().describe_stream(stream))?;
    let mut records = BTreeSet::new();
    for shard in &description.shards {
        let mut iterator = c.run(c.client().get_shard_iterator(stream, &shard.shard_id, StartingPosition::new("TRIM_HORIZON")))?;
        loop {
            let result = c.run(c.client().get_records(&iterator, None))?;
            let empty = result.records.is_empty();
            for record in result.records {
                assert!(record.encrypted, "records of an encrypted stream say so");
                records.insert(format!("{}/{}", record.partition_key, String::from_utf8(record.data.to_vec()).unwrap()));
            }
            match result.next_iterator {
                Some(next) if !(empty && result.millis_behind_latest == 0) => iterator = next,
                _ => break,
            }
        }
    }
    Ok(records)
}

fn put_records(c: &Conn, stream: &str, tag: &str, count: usize) -> BTreeSet<String> {
    let entries: Vec<PutRecordsEntry> = (0..count)
        .map(|i| PutRecordsEntry {
            data: Bytes::from(format!("SECRET-{tag}-{i}")),
            partition_key: format!("PKSECRET-{i}"),
            explicit_hash_key: None,
        })
        .collect();
    let results = c.run(c.client().put_records(stream, entries)).unwrap();
    assert!(results.iter().all(|result| matches!(result, PutRecordResult::Put { .. })), "{results:?}");
    (0..count).map(|i| format!("PKSECRET-{i}/SECRET-{tag}-{i}")).collect()
}

fn attribute_of(c: &Conn, queue: &str, name: &str) -> String {
    let attributes = c.run(c.client().get_queue_attributes(queue, &["All"])).unwrap();
    attribute(&attributes, name).unwrap_or_default().to_owned()
}

#[test]
fn nothing_of_a_message_reaches_the_disk_in_clear_and_all_of_it_comes_back_after_restarts() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let root = root_key(keys.path(), "root.key", 1);
    let mut daemon = Daemon::start_in(data.path(), &args(&with_root(&root)));
    let c = daemon.client();
    create_key(&c, "alias/app");
    c.run(c.client().create_queue("sse", vec![], vec![])).unwrap();
    assert_eq!(attribute_of(&c, "sse", "SqsManagedSseEnabled"), "true", "new queues are SSE-SQS, as on AWS");
    c.run(c.client().create_queue("kms", vec![kv("KmsMasterKeyId", "alias/app")], vec![])).unwrap();
    assert_eq!(attribute_of(&c, "kms", "KmsMasterKeyId"), "alias/app");
    assert_eq!(attribute_of(&c, "kms", "SqsManagedSseEnabled"), "false");
    c.run(c.client().create_queue("fifo.fifo", vec![kv("FifoQueue", "true")], vec![])).unwrap();
    c.run(c.client().create_queue("dead", vec![kv("KmsMasterKeyId", "alias/aws/sqs")], vec![])).unwrap();
    // The control: a queue without encryption, whose markers the search must find.
    c.run(c.client().create_queue("clear", vec![kv("SqsManagedSseEnabled", "false")], vec![])).unwrap();
    let topic = c.run(c.client().create_topic("t", vec![kv("KmsMasterKeyId", "alias/aws/sns")], vec![])).unwrap();
    let sub_arn = attribute_of(&c, "sse", "QueueArn");
    c.run(c.client().subscribe(&topic, "sqs", &sub_arn, vec![kv("RawMessageDelivery", "true")])).unwrap();
    // A FIFO topic keeps what it publishes in an archive of its own (sealed too), for its FIFO queue.
    let fifo_topic =
        c.run(c.client().create_topic("ft.fifo", vec![kv("FifoTopic", "true"), kv("KmsMasterKeyId", "alias/app")], vec![])).unwrap();
    c.run(c.client().create_queue("ftq.fifo", vec![kv("FifoQueue", "true")], vec![])).unwrap();
    let ftq_arn = attribute_of(&c, "ftq.fifo", "QueueArn");
    c.run(c.client().subscribe(&fifo_topic, "sqs", &ftq_arn, vec![kv("RawMessageDelivery", "true")])).unwrap();
    c.run(c.client().create_stream("s", 2)).unwrap();
    let start = Op::SetStreamEncryption { stream: "s".into(), encryption_type: "KMS".into(), key: "alias/app".into(), start: true };
    key_op(&c, start).unwrap();
    let description = c.run(c.client().describe_stream("s")).unwrap();
    assert_eq!(description.encryption_key.as_deref(), Some("alias/app"));

    let mut expected_sse = BTreeSet::new();
    let mut expected_kms = BTreeSet::new();
    let mut expected_fifo = BTreeSet::new();
    let mut expected_records = BTreeSet::new();
    let mut expected_fifo_topic = BTreeSet::new();
    let mut write = |c: &Conn, round: usize| {
        let tag = format!("r{round}");
        expected_sse.extend(send(c, "sse", &format!("{tag}-sse"), 20, false));
        expected_kms.extend(send(c, "kms", &format!("{tag}-kms"), 20, false));
        expected_fifo.extend(send(c, "fifo.fifo", &format!("{tag}-fifo"), 10, true));
        send(c, "dead", &format!("{tag}-dead"), 3, false);
        for i in 0..5 {
            let body = format!("SECRET-{tag}-pub-{i}");
            c.run(c.client().publish(&topic, body.clone())).unwrap();
            expected_sse.insert(body);
        }
        expected_records.extend(put_records(c, "s", &tag, 30));
        for i in 0..5 {
            let body = format!("SECRET-{tag}-fifo-pub-{i}");
            let entry = PublishEntry {
                message: Bytes::from(body.clone()),
                message_group_id: Some("g".into()),
                deduplication_id: Some(format!("{tag}-{i}")),
                ..PublishEntry::default()
            };
            c.run(c.client().publish_entry(&fifo_topic, entry)).unwrap();
            expected_fifo_topic.insert(body);
        }
    };
    write(&c, 0);
    let control = SendEntry {
        body: Bytes::from_static(b"CONTROL-BODY"),
        attributes: vec![MessageAttribute::string("a", "String", "CONTROL-ATTRIBUTE")],
        ..SendEntry::default()
    };
    c.run(c.client().send_entry("clear", control)).unwrap();
    drop(c);
    assert!(daemon.terminate().success());
    assert!(!files_holding(data.path(), b"CONTROL-BODY").is_empty(), "the search finds a body written in clear");
    assert!(!files_holding(data.path(), b"CONTROL-ATTRIBUTE").is_empty(), "and an attribute");
    assert_nothing_in_clear(data.path());
    daemon.restart();

    // A restart with writes after it, then kill -9, then a restart without writes.
    let c = daemon.client();
    write(&c, 1);
    drop(c);
    daemon.kill();
    assert_nothing_in_clear(data.path());
    daemon.restart();
    daemon.restart();
    let c = daemon.client();
    assert_eq!(drain(&c, "sse"), expected_sse);
    assert_eq!(drain(&c, "kms"), expected_kms);
    assert_eq!(drain(&c, "fifo.fifo"), expected_fifo);
    assert_eq!(read_stream(&c, "s").unwrap(), expected_records);
    assert_eq!(drain(&c, "dead").len(), 6);
    assert_eq!(drain(&c, "ftq.fifo"), expected_fifo_topic);
    drop(c);
    assert!(daemon.terminate().success());
    assert_nothing_in_clear(data.path());
}

/// Restarts `daemon` (after a clean stop when `clean`) and connects to it.
fn daemon_client_after(daemon: &mut Daemon, clean: bool) -> Conn {
    if clean {
        assert!(daemon.terminate().success());
    }
    daemon.restart();
    daemon.client()
}

#[test]
fn a_missing_or_wrong_root_key_stops_the_start_and_loses_nothing() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let root = root_key(keys.path(), "root.key", 7);
    let other = root_key(keys.path(), "other.key", 9);
    let mut daemon = Daemon::start_in(data.path(), &args(&with_root(&root)));
    let c = daemon.client();
    c.run(c.client().create_queue("q", vec![], vec![])).unwrap();
    let sent: BTreeSet<String> = send(&c, "q", "keep", 25, false).into_iter().collect();
    drop(c);
    assert!(daemon.terminate().success());

    let (status, stderr) = Daemon::start_failing(data.path(), &[]);
    assert!(!status.success());
    assert!(stderr.contains("none was given") && stderr.contains("--root-key-file"), "{stderr}");
    let (status, stderr) = Daemon::start_failing(data.path(), &args(&with_root(&other)));
    assert!(!status.success());
    assert!(stderr.contains("is not the one"), "{stderr}");
    // A root key file others may read is refused before anything is opened.
    let loose = root_key(keys.path(), "loose.key", 7);
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (status, stderr) = Daemon::start_failing(data.path(), &args(&with_root(&loose)));
    assert!(!status.success());
    assert!(stderr.contains("chmod 600"), "{stderr}");

    let c = daemon_client_after(&mut daemon, false);
    assert_eq!(drain(&c, "q"), sent, "every message is there once the right key is given");
}

#[test]
fn the_key_service_encrypts_rotates_disables_and_deletes_as_kms_does() {
    let keys = tempfile::tempdir().unwrap();
    let root = root_key(keys.path(), "root.key", 3);
    let mut daemon = Daemon::start_with(&args(&with_root(&root)));
    let c = daemon.client();
    let key = create_key(&c, "alias/orders");
    assert_eq!((key.state.as_str(), key.manager.as_str(), key.key_spec.as_str()), ("Enabled", "CUSTOMER", "SYMMETRIC_DEFAULT"));
    match key_op(&c, Op::ListKeys { limit: 0, marker: None }).unwrap() {
        Reply::Keys { keys, .. } => assert!(keys.iter().any(|k| k.key_id == key.key_id)),
        other => panic!("{other:?}"),
    }
    // Encrypt and Decrypt, bound to their encryption context.
    let context = vec![kv("tenant", "a")];
    let sealed =
        match key_op(&c, Op::Encrypt { key: "alias/orders".into(), plaintext: Bytes::from_static(b"card"), context: context.clone() })
            .unwrap()
        {
            Reply::KeyData { ciphertext: Some(ciphertext), key_arn, .. } => {
                assert_eq!(key_arn, key.arn);
                ciphertext
            }
            other => panic!("{other:?}"),
        };
    let decrypt =
        |context: Vec<(String, String)>, key: Option<String>| key_op(&c, Op::Decrypt { ciphertext: sealed.clone(), key, context });
    match decrypt(context.clone(), None).unwrap() {
        Reply::KeyData { plaintext: Some(plaintext), .. } => assert_eq!(&plaintext[..], b"card"),
        other => panic!("{other:?}"),
    }
    assert_code(decrypt(vec![kv("tenant", "b")], None), ErrorCode::InvalidCiphertext);
    let other = create_key(&c, "alias/other");
    assert_code(decrypt(context.clone(), Some(other.key_id.clone())), ErrorCode::IncorrectKey);
    match key_op(&c, Op::GenerateDataKey { key: key.key_id.clone(), bytes: 32, context: vec![], without_plaintext: false }).unwrap() {
        Reply::KeyData { plaintext: Some(plaintext), ciphertext: Some(_), .. } => assert_eq!(plaintext.len(), 32),
        other => panic!("{other:?}"),
    }
    match key_op(&c, Op::GenerateDataKey { key: key.key_id.clone(), bytes: 16, context: vec![], without_plaintext: true }).unwrap() {
        Reply::KeyData { plaintext: None, ciphertext: Some(_), .. } => {}
        other => panic!("{other:?}"),
    }
    // AWS-managed keys exist on first use and take no changes.
    match key_op(&c, Op::DescribeKey { key: "alias/aws/sqs".into() }).unwrap() {
        Reply::Key(managed) => assert_eq!(managed.manager, "AWS"),
        other => panic!("{other:?}"),
    }
    assert_code(key_op(&c, Op::SetKeyEnabled { key: "alias/aws/sqs".into(), enabled: false }), ErrorCode::UnsupportedOperation);

    // A queue and a stream under the key; a rotation between writes; all of it read after a restart.
    c.run(c.client().create_queue("orders", vec![kv("KmsMasterKeyId", "alias/orders")], vec![])).unwrap();
    c.run(c.client().create_stream("events", 1)).unwrap();
    let start = Op::SetStreamEncryption { stream: "events".into(), encryption_type: "KMS".into(), key: key.arn.clone(), start: true };
    key_op(&c, start).unwrap();
    let mut sent: BTreeSet<String> = send(&c, "orders", "before", 5, false).into_iter().collect();
    let mut records = put_records(&c, "events", "before", 5);
    match key_op(&c, Op::RotateKeyOnDemand { key: "alias/orders".into() }).unwrap() {
        Reply::Key(rotated) => assert_eq!(rotated.key_id, key.key_id),
        other => panic!("{other:?}"),
    }
    sent.extend(send(&c, "orders", "after", 5, false));
    records.extend(put_records(&c, "events", "after", 5));
    drop(c);
    let c = daemon_client_after(&mut daemon, true);
    assert_eq!(read_stream(&c, "events").unwrap(), records);
    decrypt_after_restart(&c, &sealed, &context);

    // Disabled: new writes and reads refused with KMS's errors; enabled again, all is there.
    key_op(&c, Op::SetKeyEnabled { key: "alias/orders".into(), enabled: false }).unwrap();
    assert_code(c.run(c.client().send_message("orders", "SECRET-refused")), ErrorCode::KmsDisabled);
    let receive = ReceiveMessage { queue: "orders".into(), ..ReceiveMessage::default() };
    assert_code(c.run(c.client().receive_message(receive)), ErrorCode::KmsDisabled);
    assert_code(c.run(c.client().put_record("events", "k", "SECRET-refused")), ErrorCode::KmsDisabled);
    assert_code(read_stream(&c, "events"), ErrorCode::KmsDisabled);
    key_op(&c, Op::SetKeyEnabled { key: "alias/orders".into(), enabled: true }).unwrap();
    assert_eq!(drain(&c, "orders"), sent);

    // Deletion waits its window; meanwhile the key is unusable, and cancelling leaves it disabled.
    match key_op(&c, Op::ScheduleKeyDeletion { key: other.key_id.clone(), pending_window_days: 7 }).unwrap() {
        Reply::Key(pending) => {
            assert_eq!(pending.state, "PendingDeletion");
            assert!(pending.deletion_ms.unwrap() >= pending.created_ms + 7 * 86_400_000 - 1000);
        }
        other => panic!("{other:?}"),
    }
    let encrypt = Op::Encrypt { key: "alias/other".into(), plaintext: Bytes::from_static(b"x"), context: vec![] };
    assert_code(key_op(&c, encrypt), ErrorCode::KmsInvalidState);
    assert_code(key_op(&c, Op::ScheduleKeyDeletion { key: other.key_id.clone(), pending_window_days: 3 }), ErrorCode::Validation);
    match key_op(&c, Op::CancelKeyDeletion { key: other.key_id.clone() }).unwrap() {
        Reply::Key(cancelled) => assert_eq!(cancelled.state, "Disabled"),
        other => panic!("{other:?}"),
    }
    // A queue naming a key that does not exist cannot take messages.
    c.run(c.client().create_queue("nokey", vec![kv("KmsMasterKeyId", "alias/missing")], vec![])).unwrap();
    assert_code(c.run(c.client().send_message("nokey", "SECRET-x")), ErrorCode::KmsNotFound);
}

fn decrypt_after_restart(c: &Conn, sealed: &Bytes, context: &[(String, String)]) {
    match key_op(c, Op::Decrypt { ciphertext: sealed.clone(), key: None, context: context.to_vec() }).unwrap() {
        Reply::KeyData { plaintext: Some(plaintext), .. } => assert_eq!(&plaintext[..], b"card", "a key's material survives restarts"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_a_root_key_nothing_claims_to_be_encrypted() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("plain", vec![], vec![])).unwrap();
    assert_eq!(attribute_of(&c, "plain", "SqsManagedSseEnabled"), "false");
    assert_code(c.run(c.client().create_queue("sse", vec![kv("SqsManagedSseEnabled", "true")], vec![])), ErrorCode::InvalidAttributeValue);
    assert_code(
        c.run(c.client().create_queue("kms", vec![kv("KmsMasterKeyId", "alias/aws/sqs")], vec![])),
        ErrorCode::InvalidAttributeValue,
    );
    assert_code(
        c.run(c.client().set_queue_attributes("plain", vec![kv("SqsManagedSseEnabled", "true")])),
        ErrorCode::InvalidAttributeValue,
    );
    assert_code(c.run(c.client().create_topic("t", vec![kv("KmsMasterKeyId", "alias/aws/sns")], vec![])), ErrorCode::InvalidParameter);
    c.run(c.client().create_stream("s", 1)).unwrap();
    let start = Op::SetStreamEncryption { stream: "s".into(), encryption_type: "KMS".into(), key: "alias/aws/kinesis".into(), start: true };
    assert_code(key_op(&c, start), ErrorCode::InvalidArgument);
    let create = Op::CreateKey { description: None, key_usage: None, key_spec: None, tags: vec![] };
    assert_code(key_op(&c, create), ErrorCode::UnsupportedOperation);
}

#[test]
fn client_side_encryption_round_trips_and_the_daemon_never_holds_the_clear_body() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let root = root_key(keys.path(), "root.key", 5);
    let mut daemon = Daemon::start_in(data.path(), &args(&with_root(&root)));
    let c = daemon.client();
    create_key(&c, "alias/envelopes");
    // Server-side encryption off everywhere: only the client's envelope protects the content.
    c.run(c.client().create_queue("q", vec![kv("SqsManagedSseEnabled", "false")], vec![])).unwrap();
    c.run(c.client().create_stream("s", 1)).unwrap();
    let local = Envelope::local(&[42u8; 32]);
    let kms = Envelope::kms("alias/envelopes");
    let stranger = Envelope::local(&[43u8; 32]);

    let entry = |i: usize| SendEntry {
        id: i.to_string(),
        body: Bytes::from(format!("SECRET-envelope-{i}")),
        attributes: vec![MessageAttribute::string("kept", "String", "in clear")],
        ..SendEntry::default()
    };
    let sealed = c.run(local.seal_entry(c.client(), entry(0))).unwrap();
    c.run(c.client().send_entry("q", sealed)).unwrap();
    let mut batch: Vec<SendEntry> = (1..6).map(entry).collect();
    c.run(kms.seal_entries(c.client(), &mut batch)).unwrap();
    c.run(c.client().send_message_batch("q", batch)).unwrap();
    let mut records: Vec<PutRecordsEntry> = (0..4)
        .map(|i| PutRecordsEntry { data: Bytes::from(format!("SECRET-record-{i}")), partition_key: "pk".into(), explicit_hash_key: None })
        .collect();
    c.run(local.seal_records(c.client(), &mut records)).unwrap();
    c.run(c.client().put_records("s", records)).unwrap();
    drop(c);
    assert!(daemon.terminate().success());
    assert!(files_holding(data.path(), b"SECRET-").is_empty(), "the daemon never held a clear body");
    assert!(!files_holding(data.path(), b"in clear").is_empty(), "other attributes stay readable");

    let c = daemon_client_after(&mut daemon, false);
    let receive = ReceiveMessage {
        queue: "q".into(),
        max_messages: Some(10),
        message_attribute_names: vec!["All".into()],
        visibility_timeout: Some(0),
        ..ReceiveMessage::default()
    };
    let mut opened = BTreeSet::new();
    for _ in 0..20 {
        for mut message in c.run(c.client().receive_message(receive.clone())).unwrap() {
            assert!(!String::from_utf8_lossy(&message.body).contains("SECRET"));
            let mut copy = message.clone();
            let local_sealed = c.run(local.open_message(c.client(), &mut message));
            match local_sealed {
                Ok(true) => {}
                // Sealed with the key service: the local key cannot open it, the key service can.
                Err(ClientError::Envelope(_)) => assert!(c.run(kms.open_message(c.client(), &mut message)).unwrap()),
                other => panic!("{other:?}"),
            }
            assert!(matches!(c.run(stranger.open_message(c.client(), &mut copy)), Err(ClientError::Envelope(_))));
            assert!(message.message_attributes.iter().all(|a| !a.name.starts_with("SluiceEnvelope")));
            assert!(message.message_attributes.iter().any(|a| a.name == "kept"));
            opened.insert(String::from_utf8(message.body.to_vec()).unwrap());
        }
        if opened.len() == 6 {
            break;
        }
    }
    assert_eq!(opened, (0..6).map(|i| format!("SECRET-envelope-{i}")).collect());
    let iterator = c.run(c.client().get_shard_iterator("s", "shardId-000000000000", StartingPosition::new("TRIM_HORIZON"))).unwrap();
    let mut result = c.run(c.client().get_records(&iterator, None)).unwrap();
    let mut data = Vec::new();
    for record in result.records.iter_mut() {
        assert!(c.run(local.open_record(c.client(), record)).unwrap());
        data.push(String::from_utf8(record.data.to_vec()).unwrap());
    }
    assert_eq!(data, (0..4).map(|i| format!("SECRET-record-{i}")).collect::<Vec<_>>());
}

#[test]
fn a_customer_key_decides_who_may_write_and_read_what_it_protects() {
    let dir = tempfile::tempdir().unwrap();
    let root = root_key(dir.path(), "root.key", 11);
    // writer: may send and use the key to write; reader: may receive and decrypt; stranger:
    // every SQS action, no key rights.
    let sqs_all = serde_json::json!({"Effect": "Allow", "Action": ["sqs:*", "kinesis:*"], "Resource": "*"});
    let principal = |id: &str, extra: serde_json::Value| {
        serde_json::json!({
            "access_key_id": id, "secret_access_key": format!("{id}-secret-0123456789"),
            "policies": [{"Statement": [sqs_all.clone(), extra]}],
        })
    };
    let file = serde_json::json!({ "principals": [
        {"access_key_id": "admin", "secret_access_key": "admin-secret-0123456789"},
        principal("writer", serde_json::json!({"Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": "arn:aws:kms:*:*:key/*"})),
        principal("reader", serde_json::json!({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"})),
        principal("stranger", serde_json::json!({"Effect": "Allow", "Action": "sns:ListTopics", "Resource": "*"})),
    ]});
    let credentials = dir.path().join("credentials.json");
    std::fs::write(&credentials, file.to_string()).unwrap();
    let mut flags = with_root(&root);
    flags.extend(["--credentials".to_owned(), credentials.to_str().unwrap().to_owned()]);
    let daemon = Daemon::start_with(&args(&flags));
    let as_principal =
        |id: &str| daemon.client_as(&AccessKey { access_key_id: id.into(), secret_access_key: format!("{id}-secret-0123456789") }).unwrap();
    let admin = as_principal("admin");
    create_key(&admin, "alias/guarded");
    admin.run(admin.client().create_queue("guarded", vec![kv("KmsMasterKeyId", "alias/guarded")], vec![])).unwrap();
    admin.run(admin.client().create_queue("managed", vec![kv("KmsMasterKeyId", "alias/aws/sqs")], vec![])).unwrap();

    let stranger = as_principal("stranger");
    assert_code(stranger.run(stranger.client().send_message("guarded", "SECRET-no")), ErrorCode::KmsAccessDenied);
    // An AWS-managed key is usable by whoever may use the queue, as on AWS.
    stranger.run(stranger.client().send_message("managed", "SECRET-managed")).unwrap();
    let writer = as_principal("writer");
    writer.run(writer.client().send_message("guarded", "SECRET-yes")).unwrap();
    let receive = ReceiveMessage { queue: "guarded".into(), ..ReceiveMessage::default() };
    assert_code(writer.run(writer.client().receive_message(receive.clone())), ErrorCode::KmsAccessDenied);
    let reader = as_principal("reader");
    let got = reader.run(reader.client().receive_message(receive)).unwrap();
    assert_eq!(got.iter().map(|m| &m.body[..]).collect::<Vec<_>>(), [&b"SECRET-yes"[..]]);
    // A stream under the key: writing needs kms:GenerateDataKey, reading kms:Decrypt.
    admin.run(admin.client().create_stream("guarded-stream", 1)).unwrap();
    let start = Op::SetStreamEncryption {
        stream: "guarded-stream".into(),
        encryption_type: "KMS".into(),
        key: "alias/guarded".into(),
        start: true,
    };
    admin.run(admin.client().call(start)).unwrap();
    assert_code(stranger.run(stranger.client().put_record("guarded-stream", "k", "SECRET-no")), ErrorCode::KmsAccessDenied);
    writer.run(writer.client().put_record("guarded-stream", "k", "SECRET-yes")).unwrap();
    let read = |c: &Conn| {
        let iterator =
            c.run(c.client().get_shard_iterator("guarded-stream", "shardId-000000000000", StartingPosition::new("TRIM_HORIZON")))?;
        c.run(c.client().get_records(&iterator, None))
    };
    assert_code(read(&writer), ErrorCode::KmsAccessDenied);
    assert_eq!(&read(&reader).unwrap().records[0].data[..], b"SECRET-yes");
    // The key API itself is decided on the key's ARN.
    let encrypt = Op::Encrypt { key: "alias/guarded".into(), plaintext: Bytes::from_static(b"x"), context: vec![] };
    assert_code(stranger.run(stranger.client().call(encrypt)), ErrorCode::AccessDenied);
}
