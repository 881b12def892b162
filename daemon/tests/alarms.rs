//! CloudWatch alarms and metric history through a real daemon and the binary client: an alarm
//! on a queue's depth turns to ALARM when the depth crosses its threshold, its notification
//! (CloudWatch's JSON) arrives in a queue subscribed to the alarm's topic, and it comes back
//! to OK; alarms (with their state) and the metric history survive restarts — graceful, after
//! `kill -9`, with and without writes between.

use std::time::{Duration, Instant};

use sluice_client::*;
use sluice_testkit::*;

/// Long enough for a busy machine; alarms here turn within two 10-second periods.
const DEADLINE: Duration = Duration::from_secs(90);

fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn depth_metric(queue: &str) -> MetricId {
    MetricId {
        namespace: "AWS/SQS".into(),
        metric_name: "ApproximateNumberOfMessagesVisible".into(),
        dimensions: vec![Dimension { name: "QueueName".into(), value: queue.into() }],
    }
}

fn alarm(name: &str, queue: &str, topic_arn: &str) -> MetricAlarm {
    MetricAlarm {
        name: name.into(),
        metric: depth_metric(queue),
        statistic: "Maximum".into(),
        period_seconds: 10,
        evaluation_periods: 1,
        threshold: 5.0,
        comparison: "GreaterThanThreshold".into(),
        actions_enabled: true,
        alarm_actions: vec![topic_arn.into()],
        ok_actions: vec![topic_arn.into()],
        ..MetricAlarm::default()
    }
}

fn alarms(c: &Conn, names: &[&str]) -> Vec<MetricAlarm> {
    let op = Op::DescribeAlarms {
        names: names.iter().map(|name| name.to_string()).collect(),
        name_prefix: None,
        state: None,
        action_prefix: None,
        max_records: None,
        next_token: None,
    };
    match c.run(c.client().call(op)).unwrap() {
        Reply::MetricAlarms { alarms, .. } => alarms,
        other => panic!("DescribeAlarms answered {other:?}"),
    }
}

fn state(c: &Conn, name: &str) -> String {
    alarms(c, &[name]).first().map(|alarm| alarm.state.clone()).unwrap_or_default()
}

/// The sum of NumberOfMessagesSent to `queue` over the last hour.
fn sent(c: &Conn, queue: &str) -> f64 {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let op = Op::GetMetricStatistics {
        metric: MetricId {
            namespace: "AWS/SQS".into(),
            metric_name: "NumberOfMessagesSent".into(),
            dimensions: vec![Dimension { name: "QueueName".into(), value: queue.into() }],
        },
        start_ms: now_ms - 3_600_000,
        end_ms: now_ms + 60_000,
        period_seconds: 3_660,
        statistics: vec!["Sum".into()],
        unit: None,
    };
    match c.run(c.client().call(op)).unwrap() {
        Reply::MetricStatistics { datapoints, .. } => datapoints.iter().map(|point| point.sum).sum(),
        other => panic!("GetMetricStatistics answered {other:?}"),
    }
}

/// `sluice_metric_history_points` from the daemon's `/metrics`.
fn history_points(daemon: &Daemon) -> f64 {
    use std::io::{Read, Write};
    let addr = daemon.http_addr.expect("the gateway");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .lines()
        .find_map(|line| line.strip_prefix("sluice_metric_history_points ")?.parse().ok())
        .unwrap_or_else(|| panic!("no sluice_metric_history_points in:\n{response}"))
}

/// The next notification in `inbox`, parsed.
fn notification(c: &Conn, inbox: &str) -> serde_json::Value {
    let receive = ReceiveMessage { queue: inbox.into(), wait_time_seconds: Some(1), ..ReceiveMessage::default() };
    let message = until("a notification", || c.run(c.client().receive_message(receive.clone())).unwrap().into_iter().next());
    c.run(c.client().delete_message(inbox, &message.receipt_handle)).unwrap();
    serde_json::from_slice(&message.body).expect("CloudWatch's JSON")
}

fn send(c: &Conn, queue: &str, count: usize) {
    for i in 0..count {
        c.run(c.client().send_message(queue, format!("job {i}"))).unwrap();
    }
}

#[test]
fn an_alarm_on_depth_notifies_and_recovers_and_alarms_and_history_survive_restarts() {
    let mut daemon = Daemon::start_with(&["--metrics-sample-seconds", "1"]);
    let c = daemon.client();
    c.run(c.client().create_queue("work", vec![], vec![])).unwrap();
    c.run(c.client().create_queue("inbox", vec![], vec![])).unwrap();
    let topic = c.run(c.client().create_topic("alarms", vec![], vec![])).unwrap();
    let inbox_arn = "arn:aws:sqs:us-east-1:000000000000:inbox";
    c.run(c.client().subscribe(&topic, "sqs", inbox_arn, vec![("RawMessageDelivery".into(), "true".into())])).unwrap();
    c.run(c.client().call(Op::PutMetricAlarm(Box::new(alarm("deep", "work", &topic))))).unwrap();
    assert_eq!(state(&c, "deep"), "INSUFFICIENT_DATA");

    send(&c, "work", 10);
    until("ALARM", || (state(&c, "deep") == "ALARM").then_some(()));
    let message = notification(&c, "inbox");
    assert_eq!(message["AlarmName"], "deep");
    assert_eq!(message["NewStateValue"], "ALARM");
    assert_eq!(message["Trigger"]["Namespace"], "AWS/SQS");
    assert_eq!(message["AlarmArn"], "arn:aws:cloudwatch:us-east-1:000000000000:alarm:deep");
    until("ten sent in the history", || (sent(&c, "work") == 10.0).then_some(()));
    let points = history_points(&daemon);
    assert!(points > 0.0, "the history's size is in /metrics: {points}");

    // kill -9: the alarm keeps its state, the history its points.
    daemon.kill();
    daemon.restart();
    let c = daemon.client();
    let kept = alarms(&c, &["deep"]);
    assert_eq!((kept.len(), kept[0].state.as_str(), kept[0].threshold), (1, "ALARM", 5.0));
    assert_eq!(sent(&c, "work"), 10.0, "the history after kill -9");

    // Writes between restarts, then a graceful restart.
    send(&c, "work", 2);
    until("twelve sent in the history", || (sent(&c, "work") == 12.0).then_some(()));
    assert!(daemon.terminate().success());
    daemon.restart();
    let c = daemon.client();
    assert_eq!(sent(&c, "work"), 12.0, "the history after a graceful restart");

    // No writes between: a third start changes nothing.
    daemon.restart();
    let c = daemon.client();
    assert_eq!(sent(&c, "work"), 12.0, "the history after a restart with no writes between");
    assert_eq!(state(&c, "deep"), "ALARM");

    // The consumers catch up: back to OK, published; then the alarm is deleted for good.
    c.run(c.client().purge_queue("work")).unwrap();
    until("OK", || (state(&c, "deep") == "OK").then_some(()));
    let message = notification(&c, "inbox");
    assert_eq!((message["NewStateValue"].as_str(), message["OldStateValue"].as_str()), (Some("OK"), Some("ALARM")));
    c.run(c.client().call(Op::DeleteAlarms { names: vec!["deep".into()] })).unwrap();
    daemon.kill();
    daemon.restart();
    let c = daemon.client();
    assert!(alarms(&c, &[]).is_empty(), "a deleted alarm stays deleted");
    assert_code(c.run(c.client().call(Op::DeleteAlarms { names: vec!["deep".into()] })), ErrorCode::ResourceNotFound);
}

#[test]
fn alarm_operations_refuse_bad_input_with_typed_errors() {
    let daemon = Daemon::start();
    let c = daemon.client();
    let topic = "arn:aws:sns:us-east-1:000000000000:t";
    let mut odd = alarm("odd", "q", topic);
    odd.period_seconds = 45;
    assert_code(c.run(c.client().call(Op::PutMetricAlarm(Box::new(odd)))), ErrorCode::InvalidParameterValue);
    let mut elsewhere = alarm("elsewhere", "q", topic);
    elsewhere.alarm_actions = vec!["arn:aws:automate:us-east-1:ec2:stop".into()];
    assert_code(c.run(c.client().call(Op::PutMetricAlarm(Box::new(elsewhere)))), ErrorCode::InvalidParameterValue);
    let set = Op::SetAlarmState { name: "absent".into(), state: "OK".into(), reason: "x".into(), reason_data: None };
    assert_code(c.run(c.client().call(set)), ErrorCode::ResourceNotFound);
    c.run(c.client().call(Op::PutMetricAlarm(Box::new(alarm("a", "q", topic))))).unwrap();
    let bad_json = Op::SetAlarmState { name: "a".into(), state: "OK".into(), reason: "x".into(), reason_data: Some("{".into()) };
    assert_code(c.run(c.client().call(bad_json)), ErrorCode::InvalidParameterValue);
    let bad_state = Op::SetAlarmState { name: "a".into(), state: "RED".into(), reason: "x".into(), reason_data: None };
    assert_code(c.run(c.client().call(bad_state)), ErrorCode::InvalidParameterValue);
    let too_many = Op::GetMetricStatistics {
        metric: depth_metric("q"),
        start_ms: 0,
        end_ms: 86_400_000 * 2,
        period_seconds: 60,
        statistics: vec!["Sum".into()],
        unit: None,
    };
    assert_code(c.run(c.client().call(too_many)), ErrorCode::InvalidParameterCombination);
    // Operations on any shard reach shard 0's alarms.
    let other = daemon.client_on_shard(1);
    assert_eq!(alarms(&other, &["a"]).len(), 1);
}
