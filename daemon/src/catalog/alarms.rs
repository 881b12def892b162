//! CloudWatch metric alarms as shard 0 keeps them: each alarm's configuration and state, in
//! the metadata file (a change writes the alarms it changed), not in snapshots — only shard 0
//! evaluates and answers for them (`crate::monitor`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use sluice_protocol::{Dimension, ErrorCode, MetricAlarm, MetricId, OpError};

/// Alarms by name.
pub type Alarms = BTreeMap<String, Arc<MetricAlarm>>;

/// Most alarms one server keeps: shard 0 evaluates every one at every metric sample.
pub const ALARMS_MAX: usize = 5_000;

pub const OK: &str = "OK";
pub const ALARM: &str = "ALARM";
pub const INSUFFICIENT_DATA: &str = "INSUFFICIENT_DATA";

#[derive(Debug, Clone)]
pub enum AlarmChange {
    /// Creates or replaces an alarm (checked already); a replaced alarm keeps its state.
    Put(Box<MetricAlarm>),
    Delete(Vec<String>),
    /// A new state (SetAlarmState, or an evaluation that changed it).
    State {
        name: String,
        state: String,
        reason: String,
        reason_data: Option<String>,
    },
    Actions {
        names: Vec<String>,
        enable: bool,
    },
}

/// What an alarm change did: for a state change, the alarm before and after (its actions run
/// when the state differs).
#[derive(Debug, Clone)]
pub enum AlarmOutcome {
    Done,
    State { before: Arc<MetricAlarm>, after: Arc<MetricAlarm> },
}

fn not_found(name: &str) -> OpError {
    OpError::new(ErrorCode::ResourceNotFound, format!("Alarm {name} does not exist."))
}

pub fn apply(alarms: &mut Arc<Alarms>, change: AlarmChange, now_ms: u64) -> Result<AlarmOutcome, OpError> {
    match change {
        AlarmChange::Put(mut alarm) => {
            let kept = alarms.get(&alarm.name);
            if kept.is_none() && alarms.len() >= ALARMS_MAX {
                return Err(OpError::new(ErrorCode::LimitExceeded, format!("This server keeps at most {ALARMS_MAX} alarms.")));
            }
            match kept {
                Some(old) => {
                    alarm.state = old.state.clone();
                    alarm.state_reason = old.state_reason.clone();
                    alarm.state_reason_data = old.state_reason_data.clone();
                    alarm.state_updated_ms = old.state_updated_ms;
                }
                None => {
                    alarm.state = INSUFFICIENT_DATA.into();
                    alarm.state_reason = "Unchecked: Initial alarm creation".into();
                    alarm.state_reason_data = None;
                    alarm.state_updated_ms = now_ms;
                }
            }
            alarm.configuration_updated_ms = now_ms;
            Arc::make_mut(alarms).insert(alarm.name.clone(), Arc::new(*alarm));
            Ok(AlarmOutcome::Done)
        }
        AlarmChange::Delete(names) => {
            if let Some(missing) = names.iter().find(|name| !alarms.contains_key(*name)) {
                return Err(not_found(missing));
            }
            let kept = Arc::make_mut(alarms);
            for name in &names {
                kept.remove(name);
            }
            Ok(AlarmOutcome::Done)
        }
        AlarmChange::State { name, state, reason, reason_data } => {
            let before = alarms.get(&name).cloned().ok_or_else(|| not_found(&name))?;
            let mut after = (*before).clone();
            after.state = state;
            after.state_reason = reason;
            after.state_reason_data = reason_data;
            after.state_updated_ms = now_ms;
            let after = Arc::new(after);
            Arc::make_mut(alarms).insert(name, after.clone());
            Ok(AlarmOutcome::State { before, after })
        }
        AlarmChange::Actions { names, enable } => {
            if let Some(missing) = names.iter().find(|name| !alarms.contains_key(*name)) {
                return Err(not_found(missing));
            }
            let kept = Arc::make_mut(alarms);
            for name in &names {
                if let Some(alarm) = kept.get_mut(name) {
                    Arc::make_mut(alarm).actions_enabled = enable;
                }
            }
            Ok(AlarmOutcome::Done)
        }
    }
}

/// One alarm as the metadata file keeps it.
pub fn alarm_json(alarm: &MetricAlarm) -> Value {
    json!({
        "name": alarm.name,
        "description": alarm.description,
        "namespace": alarm.metric.namespace,
        "metric_name": alarm.metric.metric_name,
        "dimensions": alarm.metric.dimensions.iter().map(|d| json!([d.name, d.value])).collect::<Vec<_>>(),
        "statistic": alarm.statistic,
        "period_seconds": alarm.period_seconds,
        "evaluation_periods": alarm.evaluation_periods,
        "datapoints_to_alarm": alarm.datapoints_to_alarm,
        "threshold": alarm.threshold,
        "comparison": alarm.comparison,
        "treat_missing_data": alarm.treat_missing_data,
        "unit": alarm.unit,
        "actions_enabled": alarm.actions_enabled,
        "alarm_actions": alarm.alarm_actions,
        "ok_actions": alarm.ok_actions,
        "insufficient_data_actions": alarm.insufficient_data_actions,
        "arn": alarm.arn,
        "state": alarm.state,
        "state_reason": alarm.state_reason,
        "state_reason_data": alarm.state_reason_data,
        "state_updated_ms": alarm.state_updated_ms,
        "configuration_updated_ms": alarm.configuration_updated_ms,
    })
}

pub fn to_json(alarms: &Alarms) -> Value {
    Value::Array(alarms.values().map(|alarm| alarm_json(alarm)).collect())
}

/// Rebuilds alarms from `to_json`'s output, checking everything (it comes from disk).
pub fn from_json(value: &Value) -> Result<Alarms, String> {
    let mut alarms = Alarms::new();
    let Some(items) = value.as_array() else {
        return if value.is_null() { Ok(alarms) } else { Err("alarms is not a list".into()) };
    };
    for item in items {
        let text = |key: &str| item[key].as_str().map(str::to_owned).ok_or_else(|| format!("an alarm's {key} is not text"));
        let optional = |key: &str| match &item[key] {
            Value::Null => Ok(None),
            Value::String(text) => Ok(Some(text.clone())),
            _ => Err(format!("an alarm's {key} is not text")),
        };
        let number = |key: &str| item[key].as_u64().ok_or_else(|| format!("an alarm's {key} is not a number"));
        let small = |key: &str| number(key).and_then(|n| u32::try_from(n).map_err(|_| format!("an alarm's {key} is out of range")));
        let list = |key: &str| -> Result<Vec<String>, String> {
            match &item[key] {
                Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| format!("an alarm's {key} holds a non-text")))
                    .collect(),
                _ => Err(format!("an alarm's {key} is not a list")),
            }
        };
        let dimensions = match &item["dimensions"] {
            Value::Array(pairs) => pairs
                .iter()
                .map(|pair| match pair.as_array().map(Vec::as_slice) {
                    Some([Value::String(name), Value::String(value)]) => Ok(Dimension { name: name.clone(), value: value.clone() }),
                    _ => Err("an alarm's dimension is not a [name, value] pair".to_owned()),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err("an alarm's dimensions is not a list".into()),
        };
        let alarm = MetricAlarm {
            name: text("name")?,
            description: optional("description")?,
            metric: MetricId { namespace: text("namespace")?, metric_name: text("metric_name")?, dimensions },
            statistic: text("statistic")?,
            period_seconds: small("period_seconds")?,
            evaluation_periods: small("evaluation_periods")?,
            datapoints_to_alarm: small("datapoints_to_alarm")?,
            threshold: item["threshold"].as_f64().ok_or("an alarm's threshold is not a number")?,
            comparison: text("comparison")?,
            treat_missing_data: optional("treat_missing_data")?,
            unit: optional("unit")?,
            actions_enabled: item["actions_enabled"].as_bool().ok_or("an alarm's actions_enabled is not true or false")?,
            alarm_actions: list("alarm_actions")?,
            ok_actions: list("ok_actions")?,
            insufficient_data_actions: list("insufficient_data_actions")?,
            arn: text("arn")?,
            state: text("state")?,
            state_reason: text("state_reason")?,
            state_reason_data: optional("state_reason_data")?,
            state_updated_ms: number("state_updated_ms")?,
            configuration_updated_ms: number("configuration_updated_ms")?,
        };
        if ![OK, ALARM, INSUFFICIENT_DATA].contains(&alarm.state.as_str()) {
            return Err(format!("alarm {} has an unknown state {}", alarm.name, alarm.state));
        }
        alarms.insert(alarm.name.clone(), Arc::new(alarm));
    }
    Ok(alarms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(name: &str) -> MetricAlarm {
        MetricAlarm {
            name: name.into(),
            metric: MetricId {
                namespace: "AWS/SQS".into(),
                metric_name: "ApproximateNumberOfMessagesVisible".into(),
                dimensions: vec![Dimension { name: "QueueName".into(), value: "q".into() }],
            },
            statistic: "Maximum".into(),
            period_seconds: 60,
            evaluation_periods: 2,
            threshold: 5.0,
            comparison: "GreaterThanThreshold".into(),
            actions_enabled: true,
            alarm_actions: vec!["arn:aws:sns:us-east-1:000000000000:t".into()],
            arn: format!("arn:aws:cloudwatch:us-east-1:000000000000:alarm:{name}"),
            ..MetricAlarm::default()
        }
    }

    #[test]
    fn a_new_alarm_starts_without_data_and_a_replaced_one_keeps_its_state() {
        let mut alarms = Arc::new(Alarms::new());
        apply(&mut alarms, AlarmChange::Put(Box::new(alarm("a"))), 10).unwrap();
        assert_eq!(alarms["a"].state, INSUFFICIENT_DATA);
        let change = AlarmChange::State { name: "a".into(), state: ALARM.into(), reason: "r".into(), reason_data: None };
        let AlarmOutcome::State { before, after } = apply(&mut alarms, change, 20).unwrap() else { panic!("a state change") };
        assert_eq!((before.state.as_str(), after.state.as_str(), after.state_updated_ms), (INSUFFICIENT_DATA, ALARM, 20));
        let mut replaced = alarm("a");
        replaced.threshold = 9.0;
        apply(&mut alarms, AlarmChange::Put(Box::new(replaced)), 30).unwrap();
        assert_eq!((alarms["a"].state.as_str(), alarms["a"].threshold, alarms["a"].configuration_updated_ms), (ALARM, 9.0, 30));
    }

    #[test]
    fn unknown_names_are_refused_and_nothing_changes() {
        let mut alarms = Arc::new(Alarms::new());
        apply(&mut alarms, AlarmChange::Put(Box::new(alarm("a"))), 10).unwrap();
        let error = apply(&mut alarms, AlarmChange::Delete(vec!["a".into(), "b".into()]), 11).unwrap_err();
        assert_eq!(error.code, ErrorCode::ResourceNotFound);
        assert!(alarms.contains_key("a"));
        let change = AlarmChange::State { name: "b".into(), state: OK.into(), reason: "r".into(), reason_data: None };
        assert_eq!(apply(&mut alarms, change, 12).unwrap_err().code, ErrorCode::ResourceNotFound);
    }

    #[test]
    fn alarms_survive_their_json() {
        let mut alarms = Arc::new(Alarms::new());
        let mut full = alarm("a");
        full.description = Some("d".into());
        full.treat_missing_data = Some("breaching".into());
        full.datapoints_to_alarm = 1;
        apply(&mut alarms, AlarmChange::Put(Box::new(full)), 10).unwrap();
        apply(&mut alarms, AlarmChange::Actions { names: vec!["a".into()], enable: false }, 11).unwrap();
        let read = from_json(&to_json(&alarms)).unwrap();
        assert_eq!(read, *alarms);
        assert!(from_json(&json!([{"name": "x"}])).is_err());
    }
}
