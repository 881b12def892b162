//! Message move tasks (dead-letter queue redrive) through a real `sluiced` and the real client:
//! messages go back to the queues they came from, or to a chosen queue, at a chosen rate; a
//! task is listed with its progress, can be cancelled, survives restarts and `kill -9` (every
//! message is somewhere afterwards: moved, or still in the dead-letter queue), and what is
//! not a dead-letter queue, or FIFO, or a second task at once, is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sluice_client::*;
use sluice_testkit::*;

const ACCOUNT: &str = "000000000000";

fn arn(name: &str) -> String {
    format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}")
}

/// A queue whose messages go to `dead` at their second receive.
fn source_queue(c: &Conn, name: &str, dead: &str) {
    let policy = format!(r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":"1"}}"#, arn(dead));
    c.run(c.client().create_queue(name, vec![kv("RedrivePolicy", &policy)], vec![])).unwrap();
}

/// Sends `count` messages to `queue` and receives until every one has moved to the dead-letter queue.
fn fill_dead_letter(c: &Conn, queue: &str, dead: &str, tag: &str, count: usize) {
    for i in 0..count {
        c.run(c.client().send_message(queue, format!("{tag}-{i}"))).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = visible(c, dead);
    while visible(c, dead) < before + count as u64 {
        assert!(Instant::now() < deadline, "messages did not reach the dead-letter queue");
        let receive =
            ReceiveMessage { queue: queue.into(), max_messages: Some(10), visibility_timeout: Some(0), ..ReceiveMessage::default() };
        c.run(c.client().receive_message(receive)).unwrap();
    }
}

fn visible(c: &Conn, queue: &str) -> u64 {
    let attributes = c.run(c.client().get_queue_attributes(queue, &["ApproximateNumberOfMessages"])).unwrap();
    attribute(&attributes, "ApproximateNumberOfMessages").unwrap().parse().unwrap()
}

/// Receives and deletes every message of `queue`: body -> (receive count, dead-letter source).
fn drain(c: &Conn, queue: &str) -> BTreeMap<String, (String, Option<String>)> {
    let mut bodies = BTreeMap::new();
    loop {
        let receive = ReceiveMessage {
            queue: queue.into(),
            max_messages: Some(10),
            system_attribute_names: vec!["All".into()],
            ..ReceiveMessage::default()
        };
        let messages = c.run(c.client().receive_message(receive)).unwrap();
        if messages.is_empty() {
            return bodies;
        }
        for message in messages {
            let count = attribute(&message.attributes, "ApproximateReceiveCount").unwrap_or_default().to_owned();
            let source = attribute(&message.attributes, "DeadLetterQueueSourceArn").map(str::to_owned);
            c.run(c.client().delete_message(queue, &message.receipt_handle)).unwrap();
            bodies.insert(String::from_utf8(message.body.to_vec()).unwrap(), (count, source));
        }
    }
}

fn start(c: &Conn, source: &str, destination: Option<&str>, rate: Option<i32>) -> Result<String, ClientError> {
    let op = Op::StartMessageMoveTask { source_arn: arn(source), destination_arn: destination.map(arn), max_per_second: rate };
    match c.run(c.client().call(op))? {
        Reply::Attributes(pairs) => Ok(attribute(&pairs, "TaskHandle").unwrap().to_owned()),
        other => panic!("{other:?}"),
    }
}

fn tasks(c: &Conn, source: &str) -> Vec<MoveTaskDescription> {
    match c.run(c.client().call(Op::ListMessageMoveTasks { source_arn: arn(source), max_results: Some(10) })).unwrap() {
        Reply::MoveTasks(tasks) => tasks,
        other => panic!("{other:?}"),
    }
}

/// Waits until the latest task of `source` has ended; returns it.
fn ended(c: &Conn, source: &str) -> MoveTaskDescription {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let latest = tasks(c, source).remove(0);
        if !matches!(latest.status.as_str(), "RUNNING" | "CANCELLING") {
            return latest;
        }
        assert!(Instant::now() < deadline, "the task did not end: {latest:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn messages_go_back_to_the_queues_they_came_from_and_start_afresh() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("dead", vec![], vec![])).unwrap();
    source_queue(&c, "orders", "dead");
    source_queue(&c, "payments", "dead");
    fill_dead_letter(&c, "orders", "dead", "order", 25);
    fill_dead_letter(&c, "payments", "dead", "payment", 15);
    assert_eq!(visible(&c, "dead"), 40);

    let handle = start(&c, "dead", None, None).unwrap();
    assert!(!handle.is_empty());
    let task = ended(&c, "dead");
    assert_eq!((task.status.as_str(), task.moved, task.to_move), ("COMPLETED", 40, 40), "{task:?}");
    assert_eq!(task.task_handle, None, "a handle only while it runs");
    assert_eq!(visible(&c, "dead"), 0);
    let orders = drain(&c, "orders");
    let payments = drain(&c, "payments");
    assert_eq!(orders.keys().cloned().collect::<BTreeSet<_>>(), (0..25).map(|i| format!("order-{i}")).collect());
    assert_eq!(payments.len(), 15);
    for (count, source) in orders.values().chain(payments.values()) {
        assert_eq!((count.as_str(), source), ("1", &None), "moved back, a message starts afresh");
    }
    // Cancelling an ended task is refused; the handle no longer names a running task.
    assert_code(c.run(c.client().call(Op::CancelMessageMoveTask { task_handle: handle })), ErrorCode::ResourceNotFound);
}

#[test]
fn a_task_to_a_chosen_queue_at_a_chosen_rate_can_be_cancelled() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("dead", vec![], vec![])).unwrap();
    c.run(c.client().create_queue("elsewhere", vec![], vec![])).unwrap();
    source_queue(&c, "orders", "dead");
    fill_dead_letter(&c, "orders", "dead", "slow", 60);
    let handle = start(&c, "dead", Some("elsewhere"), Some(10)).unwrap();
    let running = tasks(&c, "dead").remove(0);
    assert_eq!(running.status, "RUNNING");
    assert_eq!(running.task_handle.as_deref(), Some(handle.as_str()));
    assert_eq!(
        (running.destination_arn.as_deref(), running.max_per_second, running.to_move),
        (Some(arn("elsewhere").as_str()), Some(10), 60)
    );
    assert_code(start(&c, "dead", None, None), ErrorCode::UnsupportedOperation);
    std::thread::sleep(Duration::from_millis(500));
    match c.run(c.client().call(Op::CancelMessageMoveTask { task_handle: handle })).unwrap() {
        Reply::Attributes(pairs) => assert!(attribute(&pairs, "ApproximateNumberOfMessagesMoved").is_some()),
        other => panic!("{other:?}"),
    }
    let task = ended(&c, "dead");
    assert_eq!(task.status, "CANCELLED");
    assert!(task.moved < 60, "a rate of 10 a second cannot have moved 60 by now: {task:?}");
    let moved = drain(&c, "elsewhere");
    let left = drain(&c, "dead");
    assert_eq!(moved.len() + left.len(), 60, "each message moved or left where it was");
    assert!(moved.len() as i64 >= task.moved, "every move counted is in the destination");
    assert!(moved.keys().all(|body| !left.contains_key(body)));
}

#[test]
fn a_running_task_goes_on_after_restarts_and_kill_9_and_loses_nothing() {
    let mut daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("dead", vec![], vec![])).unwrap();
    c.run(c.client().create_queue("target", vec![], vec![])).unwrap();
    source_queue(&c, "orders", "dead");
    fill_dead_letter(&c, "orders", "dead", "kept", 40);
    start(&c, "dead", Some("target"), Some(20)).unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(400));
    daemon.kill();
    daemon.restart();
    std::thread::sleep(Duration::from_millis(300));
    assert!(daemon.terminate().success());
    daemon.restart();
    let c = daemon.client();
    let task = ended(&c, "dead");
    assert_eq!(task.status, "COMPLETED", "{task:?}");
    let moved = drain(&c, "target");
    assert_eq!(moved.keys().cloned().collect::<BTreeSet<_>>(), (0..40).map(|i| format!("kept-{i}")).collect());
    assert_eq!(visible(&c, "dead"), 0);
}

#[test]
fn what_is_not_a_dead_letter_queue_or_is_fifo_is_refused() {
    let daemon = Daemon::start();
    let c = daemon.client();
    c.run(c.client().create_queue("plain", vec![], vec![])).unwrap();
    assert_code(start(&c, "plain", None, None), ErrorCode::InvalidParameterValue);
    assert_code(start(&c, "missing", None, None), ErrorCode::ResourceNotFound);
    c.run(c.client().create_queue("dead", vec![], vec![])).unwrap();
    source_queue(&c, "orders", "dead");
    assert_code(start(&c, "dead", Some("missing"), None), ErrorCode::ResourceNotFound);
    assert_code(start(&c, "dead", None, Some(0)), ErrorCode::InvalidParameterValue);
    assert_code(start(&c, "dead", None, Some(501)), ErrorCode::InvalidParameterValue);
    assert_code(start(&c, "dead", Some("dead"), None), ErrorCode::InvalidParameterValue);
    let fifo = vec![kv("FifoQueue", "true")];
    c.run(c.client().create_queue("dead.fifo", fifo.clone(), vec![])).unwrap();
    let policy = format!(r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":"1"}}"#, arn("dead.fifo"));
    let mut attributes = fifo;
    attributes.push(kv("RedrivePolicy", &policy));
    c.run(c.client().create_queue("orders.fifo", attributes, vec![])).unwrap();
    assert_code(start(&c, "dead.fifo", None, None), ErrorCode::UnsupportedOperation);
    let list = Op::ListMessageMoveTasks { source_arn: arn("dead"), max_results: Some(11) };
    assert_code(c.run(c.client().call(list)), ErrorCode::InvalidParameterValue);
    assert_code(c.run(c.client().call(Op::CancelMessageMoveTask { task_handle: "not a handle".into() })), ErrorCode::ResourceNotFound);
}
