//! CloudWatch metric alarms: what PutMetricAlarm accepts, how an alarm is evaluated against the
//! metric history, and the notification its actions publish — CloudWatch's JSON, so what
//! listens to an alarm topic on AWS listens to ours.
//!
//! Evaluation, at every sample, over the last `EvaluationPeriods` whole periods: each period's
//! statistic is compared with the threshold; `DatapointsToAlarm` (M) breaching periods out of
//! the N make ALARM, fewer make OK. Periods without data follow `TreatMissingData`: `missing`
//! (the default) leaves them out, and INSUFFICIENT_DATA when every one is missing;
//! `notBreaching` and `breaching` count them as such; `ignore` leaves them out and keeps the
//! state when every one is missing. An alarm with a `Unit` other than the metric's sees no data.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use sluice_protocol::{ErrorCode, MetricAlarm, OpError};

use super::history::{History, Stats, STATISTICS};
use crate::catalog::alarms::{ALARM, INSUFFICIENT_DATA, OK};

pub const COMPARISONS: [&str; 4] =
    ["GreaterThanOrEqualToThreshold", "GreaterThanThreshold", "LessThanThreshold", "LessThanOrEqualToThreshold"];
pub const TREAT_MISSING: [&str; 4] = ["breaching", "notBreaching", "ignore", "missing"];
pub const STATES: [&str; 3] = [OK, ALARM, INSUFFICIENT_DATA];
/// Actions per state (CloudWatch's limit).
const ACTIONS_MAX: usize = 5;
const DIMENSIONS_MAX: usize = 30;
const NAME_CHARS_MAX: usize = 255;
const DESCRIPTION_CHARS_MAX: usize = 1024;
/// Longest evaluation range (Period × EvaluationPeriods): 7 days.
const RANGE_SECONDS_MAX: u64 = 7 * 86_400;

fn invalid(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::InvalidParameterValue, message)
}

/// Whether `period` is one CloudWatch takes: 10, 20, 30 or a multiple of 60 seconds.
pub fn valid_period(period: u32) -> bool {
    matches!(period, 10 | 20 | 30) || (period >= 60 && period.is_multiple_of(60))
}

/// Checks an alarm as PutMetricAlarm gives it, and fills in its ARN.
pub fn check(alarm: &mut MetricAlarm, arn_prefix: &str) -> Result<(), OpError> {
    let chars = |text: &str| text.chars().count();
    if alarm.name.is_empty() || chars(&alarm.name) > NAME_CHARS_MAX {
        return Err(invalid(format!("The AlarmName must be 1 to {NAME_CHARS_MAX} characters long.")));
    }
    if alarm.description.as_deref().is_some_and(|d| chars(d) > DESCRIPTION_CHARS_MAX) {
        return Err(invalid(format!("The AlarmDescription must be at most {DESCRIPTION_CHARS_MAX} characters long.")));
    }
    let metric = &mut alarm.metric;
    if metric.namespace.is_empty()
        || chars(&metric.namespace) > NAME_CHARS_MAX
        || metric.metric_name.is_empty()
        || chars(&metric.metric_name) > NAME_CHARS_MAX
    {
        return Err(invalid(format!("The Namespace and MetricName must be 1 to {NAME_CHARS_MAX} characters long.")));
    }
    if metric.dimensions.len() > DIMENSIONS_MAX {
        return Err(invalid(format!("At most {DIMENSIONS_MAX} dimensions are allowed.")));
    }
    metric.dimensions.sort();
    if metric.dimensions.windows(2).any(|pair| pair[0].name == pair[1].name) {
        return Err(invalid("The dimensions of a metric must have distinct names."));
    }
    if !STATISTICS.contains(&alarm.statistic.as_str()) {
        return Err(invalid(format!("The Statistic '{}' is not one of {}.", alarm.statistic, STATISTICS.join(", "))));
    }
    if !valid_period(alarm.period_seconds) {
        return Err(invalid("The Period must be 10, 20, 30 or a multiple of 60 seconds."));
    }
    if alarm.evaluation_periods == 0 {
        return Err(invalid("The EvaluationPeriods must be at least 1."));
    }
    if u64::from(alarm.period_seconds) * u64::from(alarm.evaluation_periods) > RANGE_SECONDS_MAX {
        return Err(invalid("The Period multiplied by the EvaluationPeriods must be at most 7 days (604,800 seconds)."));
    }
    if alarm.datapoints_to_alarm > alarm.evaluation_periods {
        return Err(invalid("DatapointsToAlarm must be at most EvaluationPeriods."));
    }
    if !alarm.threshold.is_finite() {
        return Err(invalid("The Threshold must be a number."));
    }
    if !COMPARISONS.contains(&alarm.comparison.as_str()) {
        return Err(invalid(format!(
            "The ComparisonOperator '{}' is not one of {} (anomaly detection is not supported).",
            alarm.comparison,
            COMPARISONS.join(", ")
        )));
    }
    if let Some(treat) = &alarm.treat_missing_data {
        if !TREAT_MISSING.contains(&treat.as_str()) {
            return Err(invalid(format!("TreatMissingData must be one of {}.", TREAT_MISSING.join(", "))));
        }
    }
    for actions in [&alarm.alarm_actions, &alarm.ok_actions, &alarm.insufficient_data_actions] {
        if actions.len() > ACTIONS_MAX {
            return Err(OpError::new(ErrorCode::LimitExceeded, format!("At most {ACTIONS_MAX} actions are allowed per state.")));
        }
        if let Some(other) = actions.iter().find(|arn| !is_topic_arn(arn)) {
            return Err(invalid(format!(
                "Invalid action {other}: this server runs alarm actions that publish to SNS topics (arn:aws:sns:REGION:ACCOUNT:TOPIC) only."
            )));
        }
    }
    alarm.arn = format!("{arn_prefix}{}", alarm.name);
    Ok(())
}

fn is_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 6 && parts[0] == "arn" && parts[2] == "sns" && !parts[5].is_empty()
}

/// CloudWatch's time text: `2026-12-07T10:51:10.123+0000`.
pub fn cloudwatch_time(ms: u64) -> String {
    let text = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string();
    format!("{}+0000", text.trim_end_matches('Z'))
}

/// A reason's time text: `07/12/26 10:50:00` (day, month, year).
fn reason_time(s: u64) -> String {
    let text = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string();
    // 2026-12-07T10:50:00Z
    format!("{}/{}/{} {}", &text[8..10], &text[5..7], &text[2..4], &text[11..19])
}

/// What an evaluation found: the state it calls for, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub state: &'static str,
    pub reason: String,
    pub reason_data: String,
}

fn compares(comparison: &str, value: f64, threshold: f64) -> bool {
    match comparison {
        "GreaterThanOrEqualToThreshold" => value >= threshold,
        "GreaterThanThreshold" => value > threshold,
        "LessThanThreshold" => value < threshold,
        _ => value <= threshold,
    }
}

fn comparison_text(comparison: &str) -> &'static str {
    match comparison {
        "GreaterThanOrEqualToThreshold" => "greater than or equal to",
        "GreaterThanThreshold" => "greater than",
        "LessThanThreshold" => "less than",
        _ => "less than or equal to",
    }
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

/// Evaluates `alarm` at `now_ms`: the state its last whole periods call for (`None`: keep the
/// state, as `ignore` does when every period is missing). `unit` is the metric's.
pub fn evaluate(alarm: &MetricAlarm, history: &History, now_ms: u64) -> Option<Verdict> {
    let period = u64::from(alarm.period_seconds.max(1));
    let n = u64::from(alarm.evaluation_periods.max(1));
    let m = if alarm.datapoints_to_alarm == 0 { n } else { u64::from(alarm.datapoints_to_alarm) };
    let end = now_ms / 1000 / period * period;
    let start = end.saturating_sub(n * period);
    let unit_matches = alarm.unit.as_deref().is_none_or(|unit| history.unit(&alarm.metric).is_none_or(|found| found == unit));
    let found: Vec<Stats> = if unit_matches { history.statistics(&alarm.metric, start, end, period) } else { Vec::new() };
    let values: Vec<(u64, Stats, f64)> =
        found.iter().filter_map(|stats| Some((stats.start_s, *stats, stats.statistic(&alarm.statistic)?))).collect();
    let missing = n.saturating_sub(values.len() as u64);
    let treat = alarm.treat_missing_data.as_deref().unwrap_or("missing");
    let mut breaching = values.iter().filter(|(_, _, value)| compares(&alarm.comparison, *value, alarm.threshold)).count() as u64;
    if treat == "breaching" {
        breaching += missing;
    }
    let state = if values.is_empty() && treat == "ignore" {
        return None;
    } else if values.is_empty() && treat == "missing" {
        INSUFFICIENT_DATA
    } else if breaching >= m {
        ALARM
    } else {
        OK
    };
    if state == alarm.state {
        return None;
    }
    let recent: Vec<f64> = values.iter().map(|(_, _, value)| *value).collect();
    let shown: Vec<String> = values.iter().map(|(at, _, value)| format!("{} ({})", number(*value), reason_time(*at))).collect();
    let reason = if state == INSUFFICIENT_DATA {
        format!("Insufficient Data: {n} datapoint{} {} unknown.", if n == 1 { "" } else { "s" }, if n == 1 { "was" } else { "were" })
    } else {
        let counted = if state == ALARM { breaching } else { n - breaching };
        format!(
            "Threshold Crossed: {counted} out of the last {n} datapoints [{}] {}{} the threshold ({}) (minimum {m} datapoint{} for {} -> {} transition).",
            shown.join(", "),
            if counted == 1 { "was " } else { "were " },
            if state == ALARM { comparison_text(&alarm.comparison).to_owned() } else { format!("not {}", comparison_text(&alarm.comparison)) },
            number(alarm.threshold),
            if m == 1 { "" } else { "s" },
            alarm.state,
            state,
        )
    };
    let evaluated: Vec<Value> = values
        .iter()
        .map(|(at, stats, value)| json!({ "timestamp": cloudwatch_time(at * 1000), "sampleCount": stats.count as f64, "value": value }))
        .collect();
    let reason_data = json!({
        "version": "1.0",
        "queryDate": cloudwatch_time(now_ms),
        "startDate": cloudwatch_time(start * 1000),
        "statistic": alarm.statistic,
        "period": alarm.period_seconds,
        "recentDatapoints": recent,
        "threshold": alarm.threshold,
        "evaluatedDatapoints": evaluated,
    });
    Some(Verdict { state, reason, reason_data: reason_data.to_string() })
}

/// The region's long name, as CloudWatch writes it in notifications.
fn region_name(region: &str) -> String {
    let known = [
        ("us-east-1", "US East (N. Virginia)"),
        ("us-east-2", "US East (Ohio)"),
        ("us-west-1", "US West (N. California)"),
        ("us-west-2", "US West (Oregon)"),
        ("eu-west-1", "EU (Ireland)"),
        ("eu-central-1", "EU (Frankfurt)"),
        ("ap-southeast-1", "Asia Pacific (Singapore)"),
        ("ap-northeast-1", "Asia Pacific (Tokyo)"),
    ];
    known.iter().find(|(code, _)| *code == region).map_or_else(|| region.to_owned(), |(_, name)| (*name).to_owned())
}

/// The subject and message CloudWatch publishes to an alarm's topics when its state changes.
pub fn notification(before: &MetricAlarm, after: &MetricAlarm, region: &str, account_id: &str) -> (String, String) {
    let region = region_name(region);
    let subject = format!("{}: \"{}\" in {}", after.state, after.name, region);
    // SNS subjects are at most 100 characters.
    let subject: String = subject.chars().take(100).collect();
    let dimensions: Vec<Value> = after.metric.dimensions.iter().map(|d| json!({ "value": d.value, "name": d.name })).collect();
    let message = json!({
        "AlarmName": after.name,
        "AlarmDescription": after.description,
        "AWSAccountId": account_id,
        "AlarmConfigurationUpdatedTimestamp": cloudwatch_time(after.configuration_updated_ms),
        "NewStateValue": after.state,
        "NewStateReason": after.state_reason,
        "StateChangeTime": cloudwatch_time(after.state_updated_ms),
        "Region": region,
        "AlarmArn": after.arn,
        "OldStateValue": before.state,
        "OKActions": after.ok_actions,
        "AlarmActions": after.alarm_actions,
        "InsufficientDataActions": after.insufficient_data_actions,
        "Trigger": {
            "MetricName": after.metric.metric_name,
            "Namespace": after.metric.namespace,
            "StatisticType": "Statistic",
            "Statistic": after.statistic.to_uppercase(),
            "Unit": after.unit,
            "Dimensions": dimensions,
            "Period": after.period_seconds,
            "EvaluationPeriods": after.evaluation_periods,
            "DatapointsToAlarm": if after.datapoints_to_alarm == 0 { after.evaluation_periods } else { after.datapoints_to_alarm },
            "ComparisonOperator": after.comparison,
            "Threshold": after.threshold,
            "TreatMissingData": after.treat_missing_data.as_deref().unwrap_or("missing"),
            "EvaluateLowSampleCountPercentile": "",
        },
    });
    (subject, message.to_string())
}

/// The actions a change to `state` runs.
pub fn actions_for<'a>(alarm: &'a MetricAlarm, state: &str) -> &'a [String] {
    if !alarm.actions_enabled {
        return &[];
    }
    match state {
        ALARM => &alarm.alarm_actions,
        OK => &alarm.ok_actions,
        _ => &alarm.insufficient_data_actions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::history::{Kind, Sample};
    use sluice_protocol::{Dimension, MetricId};

    fn metric() -> MetricId {
        MetricId {
            namespace: "AWS/SQS".into(),
            metric_name: "ApproximateNumberOfMessagesVisible".into(),
            dimensions: vec![Dimension { name: "QueueName".into(), value: "q".into() }],
        }
    }

    fn alarm(n: u32, m: u32, treat: Option<&str>) -> MetricAlarm {
        let mut alarm = MetricAlarm {
            name: "depth".into(),
            metric: metric(),
            statistic: "Maximum".into(),
            period_seconds: 60,
            evaluation_periods: n,
            datapoints_to_alarm: m,
            threshold: 5.0,
            comparison: "GreaterThanThreshold".into(),
            treat_missing_data: treat.map(str::to_owned),
            actions_enabled: true,
            alarm_actions: vec!["arn:aws:sns:us-east-1:000000000000:alarms".into()],
            state: INSUFFICIENT_DATA.into(),
            ..MetricAlarm::default()
        };
        check(&mut alarm, "arn:aws:cloudwatch:us-east-1:000000000000:alarm:").unwrap();
        alarm
    }

    fn history(depths: &[(u64, f64)]) -> History {
        let mut history = History::new(1 << 20);
        for (minute, depth) in depths {
            history.record(minute * 60, vec![Sample { metric: metric(), unit: "Count", kind: Kind::Gauge, value: *depth }]);
        }
        history
    }

    #[test]
    fn m_of_n_breaching_periods_make_alarm_and_fewer_make_ok() {
        let history = history(&[(1, 9.0), (2, 1.0), (3, 9.0)]);
        let now = 4 * 60_000 + 500;
        let verdict = evaluate(&alarm(3, 2, None), &history, now).expect("a change");
        assert_eq!(verdict.state, ALARM);
        assert!(verdict.reason.starts_with("Threshold Crossed: 2 out of the last 3 datapoints [9.0 ("), "{}", verdict.reason);
        let data: Value = serde_json::from_str(&verdict.reason_data).unwrap();
        assert_eq!(data["recentDatapoints"], json!([9.0, 1.0, 9.0]));
        assert_eq!(evaluate(&alarm(3, 3, None), &history, now).map(|v| v.state), Some(OK));
        let mut already = alarm(3, 2, None);
        already.state = ALARM.into();
        assert_eq!(evaluate(&already, &history, now), None, "no change, no verdict");
    }

    #[test]
    fn missing_data_goes_the_way_it_is_told() {
        let history = history(&[]);
        let now = 10 * 60_000;
        let mut ok = alarm(2, 0, None);
        ok.state = OK.into();
        assert_eq!(evaluate(&ok, &history, now).map(|v| v.state), Some(INSUFFICIENT_DATA));
        assert_eq!(evaluate(&alarm(2, 0, Some("breaching")), &history, now).map(|v| v.state), Some(ALARM));
        assert_eq!(evaluate(&alarm(2, 0, Some("notBreaching")), &history, now).map(|v| v.state), Some(OK));
        let mut ignoring = alarm(2, 0, Some("ignore"));
        ignoring.state = OK.into();
        assert_eq!(evaluate(&ignoring, &history, now), None);
        let mut other_unit = alarm(1, 0, None);
        other_unit.unit = Some("Bytes".into());
        let full = self::history(&[(9, 100.0)]);
        assert_eq!(evaluate(&other_unit, &full, now).map(|v| v.state), None, "no data: still INSUFFICIENT_DATA");
    }

    #[test]
    fn checks_refuse_what_cloudwatch_refuses() {
        let arn = "arn:aws:cloudwatch:us-east-1:000000000000:alarm:";
        let mut bad = alarm(1, 0, None);
        bad.period_seconds = 45;
        assert_eq!(check(&mut bad, arn).unwrap_err().code, ErrorCode::InvalidParameterValue);
        let mut bad = alarm(1, 0, None);
        bad.alarm_actions = vec!["arn:aws:autoscaling:us-east-1:000000000000:scalingPolicy:x".into()];
        assert!(check(&mut bad, arn).unwrap_err().message.contains("SNS topics"));
        let mut bad = alarm(2, 0, None);
        bad.datapoints_to_alarm = 3;
        assert!(check(&mut bad, arn).is_err());
        let mut bad = alarm(1, 0, None);
        bad.statistic = "p99".into();
        assert!(check(&mut bad, arn).is_err());
    }

    #[test]
    fn the_notification_is_cloudwatchs_json() {
        let before = alarm(1, 0, None);
        let mut after = before.clone();
        after.state = ALARM.into();
        after.state_updated_ms = 1_765_000_000_000;
        let (subject, message) = notification(&before, &after, "us-east-1", "000000000000");
        assert_eq!(subject, "ALARM: \"depth\" in US East (N. Virginia)");
        let message: Value = serde_json::from_str(&message).unwrap();
        assert_eq!(message["NewStateValue"], "ALARM");
        assert_eq!(message["OldStateValue"], "INSUFFICIENT_DATA");
        assert_eq!(message["Trigger"]["Statistic"], "MAXIMUM");
        assert_eq!(message["Trigger"]["Dimensions"], json!([{ "value": "q", "name": "QueueName" }]));
        assert!(message["StateChangeTime"].as_str().unwrap().ends_with("+0000"));
        assert_eq!(actions_for(&after, ALARM).len(), 1);
        assert!(actions_for(&after, OK).is_empty());
    }
}
