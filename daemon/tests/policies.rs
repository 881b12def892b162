//! Authorization with `--credentials`: identity policies of principals and resource policies
//! of queues and topics, through the real daemon and the binary client — allow, deny,
//! explicit deny over allow, wildcards, conditions, cross-account access needing both sides,
//! and SNS delivering to a queue only when the queue's policy lets the topic in (otherwise to
//! the subscription's dead-letter queue). Decisions hold across restarts.

use std::path::Path;

use serde_json::json;
use sluice_client::{AccessKey, ErrorCode, ListShards, ReceiveMessage};
use sluice_testkit::*;

const ACCOUNT: &str = "000000000000";

fn key(id: &str) -> AccessKey {
    AccessKey { access_key_id: id.into(), secret_access_key: format!("{id}-secret-0123456789") }
}

fn arn_of(id: &str, account: &str) -> String {
    format!("arn:aws:iam::{account}:user/{id}")
}

fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}")
}

/// admin: no policies (the account root's rights). alice: send and read attributes of the
/// `orders*` queues, list queues, never touch `orders-secret`; from loopback only. carol: no
/// rights of her own. bob: another account, may send anywhere his account is let in.
fn credentials(dir: &Path) -> String {
    let principal = |id: &str, account: &str, policies: Option<serde_json::Value>| {
        let mut entry = json!({
            "access_key_id": id, "secret_access_key": format!("{id}-secret-0123456789"),
            "account_id": account, "arn": arn_of(id, account),
        });
        if let Some(policies) = policies {
            entry["policies"] = policies;
        }
        entry
    };
    let alice = json!([{
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["sqs:Send*", "SQS:GetQueue*"], "Resource": "arn:aws:sqs:*:*:orders*",
             "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}},
            {"Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"},
            {"Effect": "Deny", "Action": "sqs:*", "Resource": "arn:aws:sqs:*:*:orders-secret"},
            {"Effect": "Allow", "Action": "sqs:ReceiveMessage", "Resource": "*",
             "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}
        ]
    }]);
    let bob = json!([{"Statement": {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}}]);
    let dana = json!([{"Statement": {"Effect": "Allow", "Action": "kinesis:ListShards", "Resource": "arn:aws:kinesis:*:*:stream/clicks"}}]);
    let file = json!({ "principals": [
        principal("admin", ACCOUNT, None),
        principal("alice", ACCOUNT, Some(alice)),
        principal("carol", ACCOUNT, Some(json!([]))),
        principal("bob", "222222222222", Some(bob)),
        principal("dana", ACCOUNT, Some(dana)),
    ]});
    let path = dir.join("credentials.json");
    std::fs::write(&path, file.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

fn received(c: &Conn, queue: &str) -> Vec<sluice_client::ReceivedMessage> {
    let receive = ReceiveMessage {
        queue: queue.into(),
        max_messages: Some(10),
        wait_time_seconds: Some(1),
        message_attribute_names: vec!["All".into()],
        ..ReceiveMessage::default()
    };
    c.run(c.client().receive_message(receive)).unwrap()
}

#[test]
fn identity_and_queue_policies_decide_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_with(&["--credentials", &credentials(dir.path())]);
    let admin = daemon.client_as(&key("admin")).unwrap();
    for queue in ["orders", "orders-secret", "private"] {
        admin.run(admin.client().create_queue(queue, vec![], vec![])).unwrap();
    }

    // alice: what her policy allows, nothing else; the explicit deny beats her Send* allow.
    let alice = daemon.client_as(&key("alice")).unwrap();
    alice.run(alice.client().send_message("orders", "from alice")).unwrap();
    alice.run(alice.client().get_queue_attributes("orders", &["All"])).unwrap();
    assert_eq!(alice.run(alice.client().list_queues(None, None, None)).unwrap().0.len(), 3);
    let denied = alice.run(alice.client().receive_message(ReceiveMessage { queue: "orders".into(), ..ReceiveMessage::default() }));
    match denied {
        Err(sluice_client::ClientError::Server(error)) => {
            assert_eq!(error.code, ErrorCode::AccessDenied);
            assert!(error.message.contains(&arn_of("alice", ACCOUNT)) && error.message.contains("sqs:ReceiveMessage"), "{error}");
            assert!(error.message.contains(&queue_arn("orders")), "{error}");
        }
        other => panic!("expected AccessDenied, got {other:?}"),
    }
    assert_code(alice.run(alice.client().send_message("orders-secret", "x")), ErrorCode::AccessDenied);
    assert_code(alice.run(alice.client().send_message("private", "x")), ErrorCode::AccessDenied);
    assert_code(alice.run(alice.client().create_queue("orders-new", vec![], vec![])), ErrorCode::AccessDenied);
    assert_code(alice.run(alice.client().delete_queue("orders")), ErrorCode::AccessDenied);

    // carol has no rights of her own: the queue's policy lets her send, and only send.
    let carol = daemon.client_as(&key("carol")).unwrap();
    assert_code(carol.run(carol.client().send_message("private", "x")), ErrorCode::AccessDenied);
    let private_policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "carol-sends", "Effect": "Allow", "Principal": {"AWS": arn_of("carol", ACCOUNT)}, "Action": "sqs:SendMessage",
             "Resource": queue_arn("private")},
            {"Sid": "nobody-deletes", "Effect": "Deny", "Principal": "*", "Action": "sqs:DeleteQueue", "Resource": queue_arn("private")}
        ]
    });
    admin.run(admin.client().set_queue_attributes("private", vec![kv("Policy", &private_policy.to_string())])).unwrap();
    carol.run(carol.client().send_message("private", "from carol")).unwrap();
    assert_code(carol.run(carol.client().purge_queue("private")), ErrorCode::AccessDenied);
    // The queue's explicit deny holds against the account root too.
    assert_code(admin.run(admin.client().delete_queue("private")), ErrorCode::AccessDenied);

    // bob, from another account: his own policy allows sending, but the queue must too.
    let bob = daemon.client_as(&key("bob")).unwrap();
    assert_code(bob.run(bob.client().send_message("orders", "from bob")), ErrorCode::AccessDenied);
    let orders_policy = json!({
        "Statement": {"Effect": "Allow", "Principal": {"AWS": "222222222222"}, "Action": ["sqs:SendMessage", "sqs:ReceiveMessage"],
                      "Resource": queue_arn("orders")}
    });
    admin.run(admin.client().set_queue_attributes("orders", vec![kv("Policy", &orders_policy.to_string())])).unwrap();
    bob.run(bob.client().send_message("orders", "from bob")).unwrap();
    assert_code(
        bob.run(bob.client().receive_message(ReceiveMessage { queue: "orders".into(), ..ReceiveMessage::default() })),
        ErrorCode::AccessDenied,
    );

    // A policy that does not compile is refused, and the one in force stays.
    let bad = json!({"Statement": {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}}).to_string();
    assert_code(admin.run(admin.client().set_queue_attributes("orders", vec![kv("Policy", &bad)])), ErrorCode::InvalidAttributeValue);

    // Decisions survive restarts, with and without changes between them.
    drop((alice, bob, carol, admin));
    daemon.restart();
    let admin = daemon.client_as(&key("admin")).unwrap();
    admin.run(admin.client().create_queue("orders-later", vec![], vec![])).unwrap();
    drop(admin);
    daemon.restart();
    let carol = daemon.client_as(&key("carol")).unwrap();
    carol.run(carol.client().send_message("private", "after restarts")).unwrap();
    let bob = daemon.client_as(&key("bob")).unwrap();
    bob.run(bob.client().send_message("orders", "after restarts")).unwrap();
    let alice = daemon.client_as(&key("alice")).unwrap();
    assert_code(alice.run(alice.client().send_message("orders-secret", "x")), ErrorCode::AccessDenied);
    alice.run(alice.client().send_message("orders-later", "matches orders*")).unwrap();
    let admin = daemon.client_as(&key("admin")).unwrap();
    let bodies: Vec<_> = received(&admin, "private").iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
}

#[test]
fn sns_delivers_to_a_queue_only_when_its_policy_lets_the_topic_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_with(&["--credentials", &credentials(dir.path())]);
    let admin = daemon.client_as(&key("admin")).unwrap();
    let c = admin.client();
    for queue in ["inbox", "raw-inbox", "undelivered"] {
        admin.run(c.create_queue(queue, vec![], vec![])).unwrap();
    }
    let topic = admin.run(c.create_topic("events", vec![], vec![])).unwrap();
    let redrive = json!({"deadLetterTargetArn": queue_arn("undelivered")}).to_string();
    admin.run(c.subscribe(&topic, "sqs", &queue_arn("inbox"), vec![kv("RedrivePolicy", &redrive)])).unwrap();
    admin.run(c.subscribe(&topic, "sqs", &queue_arn("raw-inbox"), vec![kv("RawMessageDelivery", "true")])).unwrap();

    // No queue policy: nothing is delivered; the subscription with a dead-letter queue puts
    // the notification there with why.
    admin.run(c.publish(&topic, "refused")).unwrap();
    assert!(received(&admin, "inbox").is_empty());
    assert!(received(&admin, "raw-inbox").is_empty());
    let dead = received(&admin, "undelivered");
    assert_eq!(dead.len(), 1);
    let code = dead[0].message_attributes.iter().find(|a| a.name == "ErrorCode").expect("ErrorCode attribute");
    assert_eq!(code.string_value.as_deref(), Some("AccessDenied"));

    // A policy for the topic (ArnEquals aws:SourceArn), the way AWS asks for it.
    let allow = |queue: &str, source: &str| {
        json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
                           "Resource": queue_arn(queue), "Condition": {"ArnEquals": {"aws:SourceArn": source}}}]
        })
        .to_string()
    };
    admin.run(c.set_queue_attributes("inbox", vec![kv("Policy", &allow("inbox", &topic))])).unwrap();
    admin.run(c.set_queue_attributes("raw-inbox", vec![kv("Policy", &allow("raw-inbox", "arn:aws:sns:*:*:other-*"))])).unwrap();
    admin.run(c.publish(&topic, "allowed")).unwrap();
    let inbox = received(&admin, "inbox");
    assert_eq!(inbox.len(), 1);
    assert!(String::from_utf8_lossy(&inbox[0].body).contains("allowed"));
    assert!(received(&admin, "raw-inbox").is_empty(), "its policy names another topic");

    // Twice restarted, the same decisions.
    drop(admin);
    daemon.restart();
    daemon.restart();
    let admin = daemon.client_as(&key("admin")).unwrap();
    admin.run(admin.client().publish(&topic, "after restarts")).unwrap();
    assert_eq!(received(&admin, "inbox").len(), 1);
    assert!(received(&admin, "raw-inbox").is_empty());
    // inbox took it; raw-inbox's subscription has no dead-letter queue: logged, not delivered.
    assert!(received(&admin, "undelivered").is_empty());
}

#[test]
fn topic_policies_let_other_principals_publish() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(&["--credentials", &credentials(dir.path())]);
    let admin = daemon.client_as(&key("admin")).unwrap();
    let topic = admin.run(admin.client().create_topic("shared", vec![], vec![])).unwrap();
    let carol = daemon.client_as(&key("carol")).unwrap();
    assert_code(carol.run(carol.client().publish(&topic, "x")), ErrorCode::AccessDenied);
    let policy = json!({
        "Statement": {"Effect": "Allow", "Principal": {"AWS": [arn_of("carol", ACCOUNT)]}, "Action": "SNS:Publish", "Resource": topic}
    });
    admin.run(admin.client().set_topic_attribute(&topic, "Policy", Some(&policy.to_string()))).unwrap();
    carol.run(carol.client().publish(&topic, "now allowed")).unwrap();
    assert_code(carol.run(carol.client().delete_topic(&topic)), ErrorCode::AccessDenied);
    let bad = admin.run(admin.client().set_topic_attribute(&topic, "Policy", Some(r#"{"Statement":{"Effect":"Allow"}}"#)));
    assert_code(bad, ErrorCode::InvalidParameter);
}

#[test]
fn paging_by_token_alone_is_decided_for_the_stream_the_token_names() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(&["--credentials", &credentials(dir.path())]);
    let admin = daemon.client_as(&key("admin")).unwrap();
    admin.run(admin.client().create_stream("clicks", 3)).unwrap();
    admin.run(admin.client().create_stream("other", 3)).unwrap();
    let dana = daemon.client_as(&key("dana")).unwrap();
    let first = ListShards { stream: Some("clicks".into()), max_results: Some(1), ..ListShards::default() };
    let (shards, token) = dana.run(dana.client().list_shards(first)).unwrap();
    assert_eq!(shards.len(), 1);
    let mut token = token.expect("more shards to page through");
    let mut seen = 1;
    loop {
        let page = ListShards { next_token: Some(token.clone()), max_results: Some(1), ..ListShards::default() };
        let (shards, next) = dana.run(dana.client().list_shards(page)).unwrap();
        seen += shards.len();
        match next {
            Some(next) => token = next,
            None => break,
        }
    }
    assert_eq!(seen, 3, "every shard of the stream her policy names, page by page");
    let other = ListShards { stream: Some("other".into()), max_results: Some(1), ..ListShards::default() };
    assert_code(dana.run(dana.client().list_shards(other)), ErrorCode::AccessDenied);
    // A token of a stream she may not list is refused as well.
    let (_, foreign) = admin
        .run(admin.client().list_shards(ListShards { stream: Some("other".into()), max_results: Some(1), ..ListShards::default() }))
        .unwrap();
    let page = ListShards { next_token: foreign, max_results: Some(1), ..ListShards::default() };
    assert_code(dana.run(dana.client().list_shards(page)), ErrorCode::AccessDenied);
}

#[test]
fn policies_cannot_grow_past_their_size_limits() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(&["--credentials", &credentials(dir.path())]);
    let admin = daemon.client_as(&key("admin")).unwrap();
    admin.run(admin.client().create_queue("granted", vec![], vec![])).unwrap();
    // Each AddPermission adds a statement; past 8 KiB of policy the next is refused.
    let mut refused = None;
    for i in 0..200 {
        let op = sluice_client::Op::AddPermission {
            queue: "granted".into(),
            label: format!("label-{i}"),
            account_ids: vec!["222222222222".into()],
            actions: vec!["SendMessage".into(), "ReceiveMessage".into()],
        };
        if let Err(error) = admin.run(admin.client().call(op)) {
            refused = Some((i, error));
            break;
        }
    }
    let (added, error) = refused.expect("AddPermission grew the policy without bound");
    assert!(added > 10, "refused after only {added} statements");
    assert_eq!(error.code(), Some(ErrorCode::InvalidParameterValue), "{error}");
    let attributes = admin.run(admin.client().get_queue_attributes("granted", &["Policy"])).unwrap();
    assert!(attribute(&attributes, "Policy").unwrap().len() <= 8192);

    admin.run(admin.client().create_stream("guarded", 1)).unwrap();
    let arn = format!("arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/guarded");
    let huge = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "222222222222"}, "Action": "kinesis:PutRecord",
                                     "Resource": arn, "Sid": "x".repeat(21 * 1024)}]});
    let op = sluice_client::Op::PutResourcePolicy { resource_arn: arn, policy: huge.to_string() };
    assert_code(admin.run(admin.client().call(op)), ErrorCode::InvalidArgument);
}
