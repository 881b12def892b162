//! The monitoring service (the CloudWatch subset), on shard 0: every `--metrics-sample-seconds`
//! it gathers every shard's report, records the AWS metrics into the history
//! (`metrics::history`, kept on disk) and evaluates the alarms (`metrics::alarms`), whose
//! state changes are metadata changes and whose actions publish CloudWatch's notification to
//! SNS topics. Its operations run on shard 0 (other shards forward them over the bus).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use sluice_protocol::{
    Datapoint, ErrorCode, MetricAlarm, MetricDataQuery, MetricDataResult, MetricId, Op, OpError, PublishEntry, Reply, Response,
};

use super::{Answer, Call, Shard};
use crate::catalog::alarms::{AlarmChange, AlarmOutcome, Alarms};
use crate::catalog::{MetaChange, MetaOutcome};
use crate::engine::Host;
use crate::metrics::alarms::{actions_for, check, evaluate, notification, STATES};
use crate::metrics::history::{self, normalized, History, Record, STATISTICS};
use crate::runtime::calls::mismatch;
use crate::storage::log::LogOptions;
use crate::storage::stream::StreamLog;

/// GetMetricStatistics answers at most this many datapoints (CloudWatch's limit).
const STATISTICS_DATAPOINTS_MAX: u64 = 1_440;
/// GetMetricData: queries per call, and datapoints per call (CloudWatch: 500 and 100,800;
/// here the response's list bound).
const DATA_QUERIES_MAX: usize = 500;
const DATA_DATAPOINTS_MAX: usize = 100_000;
const DESCRIBE_RECORDS_MAX: i32 = 100;
const DESCRIBE_RECORDS_DEFAULT: i32 = 50;
const NAMES_MAX: usize = 100;
const LIST_METRICS_PAGE: usize = 500;
const STATE_REASON_CHARS_MAX: usize = 1023;
const STATE_REASON_DATA_CHARS_MAX: usize = 4000;

/// Shard 0's metric history and its log.
pub struct Monitor {
    pub history: RefCell<History>,
    log: Option<Rc<StreamLog>>,
}

fn history_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("metrics-history")
}

impl Monitor {
    /// A monitor with no history (the shards other than 0).
    pub fn none() -> Monitor {
        Monitor { history: RefCell::new(History::new(0)), log: None }
    }

    /// Shard 0: opens the history's log and reads it back.
    pub async fn open(config: &crate::config::Config, env: crate::env::Env) -> anyhow::Result<Monitor> {
        let options = LogOptions {
            dir: history_dir(&config.data_dir),
            segment_bytes: config.stream_segment_bytes,
            fsync: config.fsync,
            repair: config.repair,
            spare_ahead: false,
        };
        let (log, _) = StreamLog::open_in(env, options).await.map_err(|e| anyhow::anyhow!("cannot open the metric history: {e}"))?;
        let mut history = History::new(config.metric_history_bytes);
        // Names first (a name may follow the points it names, after retention), then points.
        let mut names = HashMap::new();
        let mut unreadable = 0u64;
        for pass in 0..2 {
            let mut seq = log.first_seq();
            while seq < log.next_seq() {
                let records = log.read(seq, 1_000, 16 << 20).await.map_err(|e| anyhow::anyhow!("cannot read the metric history: {e}"))?;
                let Some(last) = records.last() else { break };
                seq = last.seq + 1;
                for record in records {
                    match (pass, history::decode(&record.data)) {
                        (0, Some(Record::Names(named))) => {
                            names.extend(named.into_iter().map(|(id, metric, unit)| (id, (metric, unit))));
                        }
                        (1, Some(points @ Record::Points(..))) => history.replay(points, &names),
                        (0, None) => unreadable += 1,
                        _ => {}
                    }
                }
            }
        }
        if unreadable > 0 {
            tracing::warn!(records = unreadable, "metric history records that do not decode were skipped");
        }
        tracing::info!(series = history.series_count(), points = history.points(), "metric history read");
        Ok(Monitor { history: RefCell::new(history), log: Some(Rc::new(log)) })
    }
}

fn invalid(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::InvalidParameterValue, message)
}

fn combination(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::InvalidParameterCombination, message)
}

fn alarms_of(shard: &Shard) -> Result<std::sync::Arc<Alarms>, OpError> {
    let writer = shard.writer.as_ref().ok_or_else(|| OpError::new(ErrorCode::InternalFailure, "alarms live on shard 0"))?;
    Ok(writer.alarms())
}

async fn alarm_change(shard: &Rc<Shard>, change: AlarmChange) -> Result<AlarmOutcome, OpError> {
    match shard.meta_change(MetaChange::Alarm(change)).await? {
        MetaOutcome::Alarm(outcome) => Ok(outcome),
        _ => Err(OpError::new(ErrorCode::InternalFailure, "an alarm change answered something else")),
    }
}

/// Runs a monitoring operation: on shard 0, or forwarded there.
pub async fn handle_op(shard: &Rc<Shard>, op: Op) -> Response {
    if shard.id != 0 {
        return match shard.bus.call(0, Call::Monitor(Box::new(op))).await? {
            Answer::Monitor(response) => response,
            other => Err(mismatch("a monitoring operation", &other)),
        };
    }
    serve(shard, op).await
}

fn check_names(names: &[String]) -> Result<(), OpError> {
    if names.len() > NAMES_MAX {
        return Err(invalid(format!("At most {NAMES_MAX} alarm names are allowed.")));
    }
    Ok(())
}

async fn serve(shard: &Rc<Shard>, op: Op) -> Response {
    match op {
        Op::PutMetricAlarm(mut alarm) => {
            let naming = &shard.snapshot().naming;
            check(&mut alarm, &format!("arn:aws:cloudwatch:{}:{}:alarm:", naming.region, naming.account_id))?;
            alarm_change(shard, AlarmChange::Put(alarm)).await?;
            Ok(Reply::Done)
        }
        Op::DescribeAlarms { names, name_prefix, state, action_prefix, max_records, next_token } => {
            check_names(&names)?;
            if !names.is_empty() && name_prefix.is_some() {
                return Err(combination("AlarmNames and AlarmNamePrefix cannot be given together."));
            }
            if let Some(state) = &state {
                if !STATES.contains(&state.as_str()) {
                    return Err(invalid(format!("StateValue must be one of {}.", STATES.join(", "))));
                }
            }
            let limit = match max_records {
                None => DESCRIBE_RECORDS_DEFAULT,
                Some(n @ 1..=DESCRIBE_RECORDS_MAX) => n,
                Some(_) => return Err(invalid(format!("MaxRecords must be from 1 to {DESCRIBE_RECORDS_MAX}."))),
            } as usize;
            let alarms = alarms_of(shard)?;
            let matches = |alarm: &MetricAlarm| {
                (names.is_empty() || names.contains(&alarm.name))
                    && name_prefix.as_deref().is_none_or(|prefix| alarm.name.starts_with(prefix))
                    && state.as_deref().is_none_or(|state| alarm.state == state)
                    && action_prefix.as_deref().is_none_or(|prefix| {
                        alarm
                            .alarm_actions
                            .iter()
                            .chain(&alarm.ok_actions)
                            .chain(&alarm.insufficient_data_actions)
                            .any(|arn| arn.starts_with(prefix))
                    })
            };
            let after = next_token.as_deref();
            let mut page: Vec<MetricAlarm> = alarms
                .values()
                .filter(|alarm| after.is_none_or(|after| alarm.name.as_str() > after))
                .filter(|alarm| matches(alarm))
                .take(limit + 1)
                .map(|alarm| (**alarm).clone())
                .collect();
            let next_token = (page.len() > limit).then(|| {
                page.truncate(limit);
                page.last().map(|alarm| alarm.name.clone()).unwrap_or_default()
            });
            Ok(Reply::MetricAlarms { alarms: page, next_token })
        }
        Op::DeleteAlarms { names } => {
            check_names(&names)?;
            alarm_change(shard, AlarmChange::Delete(names)).await?;
            Ok(Reply::Done)
        }
        Op::SetAlarmState { name, state, reason, reason_data } => {
            if !STATES.contains(&state.as_str()) {
                return Err(invalid(format!("StateValue must be one of {}.", STATES.join(", "))));
            }
            if reason.chars().count() > STATE_REASON_CHARS_MAX {
                return Err(invalid(format!("StateReason must be at most {STATE_REASON_CHARS_MAX} characters long.")));
            }
            if let Some(data) = &reason_data {
                if data.chars().count() > STATE_REASON_DATA_CHARS_MAX || serde_json::from_str::<serde_json::Value>(data).is_err() {
                    return Err(invalid(format!("StateReasonData must be JSON of at most {STATE_REASON_DATA_CHARS_MAX} characters.")));
                }
            }
            let outcome = alarm_change(shard, AlarmChange::State { name, state, reason, reason_data }).await?;
            if let AlarmOutcome::State { before, after } = outcome {
                if before.state != after.state {
                    run_actions(shard, &before, &after).await;
                }
            }
            Ok(Reply::Done)
        }
        Op::SetAlarmActions { names, enable } => {
            check_names(&names)?;
            alarm_change(shard, AlarmChange::Actions { names, enable }).await?;
            Ok(Reply::Done)
        }
        Op::GetMetricStatistics { metric, start_ms, end_ms, period_seconds, statistics, unit } => {
            check_query_period(period_seconds)?;
            if statistics.is_empty() || statistics.len() > STATISTICS.len() {
                return Err(OpError::new(
                    ErrorCode::MissingParameter,
                    "Statistics (1 to 5 of SampleCount, Average, Sum, Minimum, Maximum) is required.",
                ));
            }
            if let Some(other) = statistics.iter().find(|name| !STATISTICS.contains(&name.as_str())) {
                return Err(invalid(format!("The statistic {other} is not one of {}.", STATISTICS.join(", "))));
            }
            let (start_s, end_s) = range(start_ms, end_ms)?;
            let period = u64::from(period_seconds);
            let asked = (end_s - start_s).div_ceil(period);
            if asked > STATISTICS_DATAPOINTS_MAX {
                return Err(combination(format!(
                    "You have requested up to {asked} datapoints, which exceeds the limit of {STATISTICS_DATAPOINTS_MAX}. You may reduce the datapoints requested by increasing Period, or decreasing the time range."
                )));
            }
            let metric = normalized(metric);
            let history = shard.monitor.history.borrow();
            let found_unit = history.unit(&metric).map(str::to_owned);
            let stats = match (&unit, &found_unit) {
                (Some(asked), Some(found)) if asked != found => Vec::new(),
                _ => history.statistics(&metric, start_s, end_s, period),
            };
            let datapoints = stats
                .into_iter()
                .map(|s| Datapoint {
                    timestamp_ms: s.start_s * 1000,
                    sample_count: s.count as f64,
                    sum: s.sum,
                    minimum: s.min,
                    maximum: s.max,
                    unit: found_unit.clone(),
                })
                .collect();
            Ok(Reply::MetricStatistics { label: metric.metric_name, datapoints })
        }
        Op::GetMetricData { queries, start_ms, end_ms, descending, max_datapoints, next_token } => {
            metric_data(shard, queries, start_ms, end_ms, descending, max_datapoints, next_token)
        }
        Op::ListMetrics { namespace, metric_name, dimensions, next_token } => {
            let from: usize = match next_token.as_deref() {
                None => 0,
                Some(token) => token.parse().map_err(|_| OpError::new(ErrorCode::InvalidParameterValue, "The NextToken is not valid."))?,
            };
            let history = shard.monitor.history.borrow();
            let matching = history.metrics().filter(|metric| {
                namespace.as_deref().is_none_or(|ns| metric.namespace == ns)
                    && metric_name.as_deref().is_none_or(|name| metric.metric_name == name)
                    && dimensions.iter().all(|filter| {
                        metric.dimensions.iter().any(|d| d.name == filter.name && filter.value.as_deref().is_none_or(|v| d.value == v))
                    })
            });
            let mut metrics: Vec<MetricId> = matching.skip(from).take(LIST_METRICS_PAGE + 1).cloned().collect();
            let next_token = (metrics.len() > LIST_METRICS_PAGE).then(|| {
                metrics.truncate(LIST_METRICS_PAGE);
                (from + LIST_METRICS_PAGE).to_string()
            });
            Ok(Reply::MetricList { metrics, next_token })
        }
        other => Err(OpError::new(ErrorCode::InternalFailure, format!("{} is not a monitoring operation", other.name()))),
    }
}

/// A query's period: 1, 5, 10, 30 or a multiple of 60 seconds.
fn check_query_period(period: u32) -> Result<(), OpError> {
    if matches!(period, 1 | 5 | 10 | 30) || (period >= 60 && period.is_multiple_of(60)) {
        Ok(())
    } else {
        Err(invalid("The Period must be 1, 5, 10, 30 or a multiple of 60 seconds."))
    }
}

/// A query's time range, in seconds.
fn range(start_ms: u64, end_ms: u64) -> Result<(u64, u64), OpError> {
    let (start_s, end_s) = (start_ms / 1000, end_ms.div_ceil(1000));
    if end_s <= start_s {
        return Err(invalid("The StartTime must be before the EndTime."));
    }
    Ok((start_s, end_s))
}

fn metric_data(
    shard: &Rc<Shard>,
    queries: Vec<MetricDataQuery>,
    start_ms: u64,
    end_ms: u64,
    descending: bool,
    max_datapoints: Option<i32>,
    next_token: Option<String>,
) -> Response {
    if queries.is_empty() || queries.len() > DATA_QUERIES_MAX {
        return Err(invalid(format!("MetricDataQueries must hold 1 to {DATA_QUERIES_MAX} queries.")));
    }
    let mut ids = std::collections::HashSet::new();
    for query in &queries {
        let valid_id = query.id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && query.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && query.id.len() <= 255;
        if !valid_id {
            return Err(invalid(format!(
                "The Id {} must start with a lowercase letter and hold only letters, digits and underscores.",
                query.id
            )));
        }
        if !ids.insert(query.id.as_str()) {
            return Err(invalid(format!("The Id {} is used more than once.", query.id)));
        }
        check_query_period(query.period_seconds)?;
        if !STATISTICS.contains(&query.stat.as_str()) {
            return Err(invalid(format!(
                "The Stat {} is not one of {} (percentiles are not supported).",
                query.stat,
                STATISTICS.join(", ")
            )));
        }
    }
    let max = match max_datapoints {
        None => DATA_DATAPOINTS_MAX,
        Some(n) if n > 0 => (n as usize).min(DATA_DATAPOINTS_MAX),
        Some(_) => return Err(invalid("MaxDatapoints must be positive.")),
    };
    let skip: usize = match next_token.as_deref() {
        None => 0,
        Some(token) => token.parse().map_err(|_| OpError::new(ErrorCode::InvalidParameterValue, "The NextToken is not valid."))?,
    };
    let (start_s, end_s) = range(start_ms, end_ms)?;
    let history = shard.monitor.history.borrow();
    // Datapoints over every query, in order; a page is `max` of them from `skip`.
    let (mut seen, mut taken) = (0usize, 0usize);
    let mut results = Vec::new();
    for query in queries.iter().filter(|query| query.return_data) {
        let metric = normalized(query.metric.clone());
        let unit_ok = query.unit.as_deref().is_none_or(|unit| history.unit(&metric).is_none_or(|found| found == unit));
        let mut points: Vec<(u64, f64)> = if unit_ok {
            history
                .statistics(&metric, start_s, end_s, u64::from(query.period_seconds))
                .iter()
                .filter_map(|stats| Some((stats.start_s * 1000, stats.statistic(&query.stat)?)))
                .collect()
        } else {
            Vec::new()
        };
        if descending {
            points.reverse();
        }
        let from = skip.saturating_sub(seen).min(points.len());
        let room = max - taken;
        let page: Vec<(u64, f64)> = points[from..].iter().take(room).copied().collect();
        seen += points.len();
        taken += page.len();
        results.push(MetricDataResult {
            id: query.id.clone(),
            label: query.label.clone().unwrap_or_else(|| metric.metric_name.clone()),
            timestamps_ms: page.iter().map(|(at, _)| *at).collect(),
            values: page.iter().map(|(_, value)| *value).collect(),
        });
    }
    let next_token = (seen > skip + taken).then(|| (skip + taken).to_string());
    Ok(Reply::MetricData { results, next_token })
}

/// Publishes an alarm's state change to the topics its new state names.
async fn run_actions(shard: &Rc<Shard>, before: &MetricAlarm, after: &MetricAlarm) {
    let actions = actions_for(after, &after.state);
    if actions.is_empty() {
        return;
    }
    let naming = shard.snapshot().naming.clone();
    let (subject, message) = notification(before, after, &naming.region, &naming.account_id);
    for topic in actions {
        let entry = PublishEntry {
            id: String::new(),
            message: Bytes::from(message.clone()),
            subject: Some(subject.clone()),
            message_structure: None,
            attributes: Vec::new(),
            message_group_id: None,
            deduplication_id: None,
        };
        let op = Op::Publish { topic: topic.clone(), entry };
        if let Err(error) = crate::topic::service::handle_op(shard, op).await {
            tracing::warn!(alarm = %after.name, topic = %topic, %error, "an alarm action could not publish");
        }
    }
}

/// Shard 0, in the background: samples the metrics, keeps them, and evaluates the alarms.
pub async fn run(shard: Rc<Shard>) {
    let every = Duration::from_secs(shard.config.metrics_sample_seconds);
    while shard.rest(every).await {
        sample(&shard).await;
        if shard.leads_metadata() {
            evaluate_alarms(&shard).await;
        }
    }
}

async fn sample(shard: &Rc<Shard>) {
    let reports = super::metrics::gather(shard).await;
    let now_ms = shard.env.now_ms();
    let samples = history::samples(&reports, &shard.snapshot(), now_ms);
    let records = shard.monitor.history.borrow_mut().record(now_ms / 1000, samples);
    let Some(log) = &shard.monitor.log else { return };
    let mut last = None;
    for record in &records {
        match log.append(record, now_ms) {
            Ok((seq, _)) => last = Some(seq),
            Err(error) => {
                tracing::warn!(%error, "cannot write the metric history");
                return;
            }
        }
    }
    if let Some(seq) = last {
        if let Err(error) = log.durable(seq).await {
            tracing::warn!(%error, "cannot sync the metric history");
        }
    }
    let cutoff_ms = now_ms.saturating_sub(history::RETENTION_SECONDS * 1000);
    if let Err(error) = log.trim_before_timestamp(cutoff_ms).await {
        tracing::warn!(%error, "cannot remove old metric history");
    }
}

async fn evaluate_alarms(shard: &Rc<Shard>) {
    let Ok(alarms) = alarms_of(shard) else { return };
    let now_ms = shard.env.now_ms();
    for alarm in alarms.values() {
        let verdict = evaluate(alarm, &shard.monitor.history.borrow(), now_ms);
        let Some(verdict) = verdict else { continue };
        let change = AlarmChange::State {
            name: alarm.name.clone(),
            state: verdict.state.to_owned(),
            reason: verdict.reason,
            reason_data: Some(verdict.reason_data),
        };
        match alarm_change(shard, change).await {
            Ok(AlarmOutcome::State { before, after }) if before.state != after.state => {
                tracing::info!(alarm = %after.name, from = %before.state, to = %after.state, "alarm state changed");
                run_actions(shard, &before, &after).await;
            }
            Ok(_) => {}
            // Deleted meanwhile.
            Err(error) if error.code == ErrorCode::ResourceNotFound => {}
            Err(error) => tracing::warn!(alarm = %alarm.name, %error, "cannot record an alarm's state"),
        }
    }
}
