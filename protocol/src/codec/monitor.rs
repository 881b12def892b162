//! The monitoring operations on the wire (the CloudWatch subset: alarms and metric queries):
//! each operation's and reply's encoding and decoding, in one place.

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

use super::*;

type Union = WIPOffset<flatbuffers::UnionWIPOffset>;

fn dimensions<'a>(fbb: &mut FlatBufferBuilder<'a>, items: &[Dimension]) -> FbVector<'a, fb::Dimension<'a>> {
    if items.is_empty() {
        return None;
    }
    let offsets: Vec<_> = items
        .iter()
        .map(|dimension| {
            let (name, value) = (Some(fbb.create_string(&dimension.name)), Some(fbb.create_string(&dimension.value)));
            fb::Dimension::create(fbb, &fb::DimensionArgs { name, value })
        })
        .collect();
    Some(fbb.create_vector(&offsets))
}

fn metric_id<'a>(fbb: &mut FlatBufferBuilder<'a>, metric: &MetricId) -> WIPOffset<fb::MetricId<'a>> {
    let namespace = Some(fbb.create_string(&metric.namespace));
    let metric_name = Some(fbb.create_string(&metric.metric_name));
    let dimensions = dimensions(fbb, &metric.dimensions);
    fb::MetricId::create(fbb, &fb::MetricIdArgs { namespace, metric_name, dimensions })
}

fn alarm<'a>(fbb: &mut FlatBufferBuilder<'a>, alarm: &MetricAlarm) -> WIPOffset<fb::MetricAlarm<'a>> {
    let name = Some(fbb.create_string(&alarm.name));
    let description = opt_str(fbb, &alarm.description);
    let metric = Some(metric_id(fbb, &alarm.metric));
    let statistic = Some(fbb.create_string(&alarm.statistic));
    let comparison = Some(fbb.create_string(&alarm.comparison));
    let treat_missing_data = opt_str(fbb, &alarm.treat_missing_data);
    let unit = opt_str(fbb, &alarm.unit);
    let alarm_actions = strings(fbb, &alarm.alarm_actions);
    let ok_actions = strings(fbb, &alarm.ok_actions);
    let insufficient_data_actions = strings(fbb, &alarm.insufficient_data_actions);
    let arn = Some(fbb.create_string(&alarm.arn));
    let state = Some(fbb.create_string(&alarm.state));
    let state_reason = Some(fbb.create_string(&alarm.state_reason));
    let state_reason_data = opt_str(fbb, &alarm.state_reason_data);
    let args = fb::MetricAlarmArgs {
        name,
        description,
        metric,
        statistic,
        period_seconds: alarm.period_seconds,
        evaluation_periods: alarm.evaluation_periods,
        datapoints_to_alarm: alarm.datapoints_to_alarm,
        threshold: alarm.threshold,
        comparison,
        treat_missing_data,
        unit,
        actions_enabled: alarm.actions_enabled,
        alarm_actions,
        ok_actions,
        insufficient_data_actions,
        arn,
        state,
        state_reason,
        state_reason_data,
        state_updated_ms: alarm.state_updated_ms,
        configuration_updated_ms: alarm.configuration_updated_ms,
    };
    fb::MetricAlarm::create(fbb, &args)
}

/// Encodes a monitoring operation (`None`: not one).
pub(super) fn encode_op(fbb: &mut FlatBufferBuilder<'static>, op: &Op) -> Option<(fb::Op, Union)> {
    Some(match op {
        Op::PutMetricAlarm(spec) => {
            let alarm = Some(alarm(fbb, spec));
            op_table!(fbb, PutMetricAlarm, fb::PutMetricAlarmArgs { alarm })
        }
        Op::DescribeAlarms { names, name_prefix, state, action_prefix, max_records, next_token } => {
            let names = strings(fbb, names);
            let (name_prefix, state, action_prefix) = (opt_str(fbb, name_prefix), opt_str(fbb, state), opt_str(fbb, action_prefix));
            let next_token = opt_str(fbb, next_token);
            let max_records = max_records.unwrap_or(-1);
            op_table!(fbb, DescribeAlarms, fb::DescribeAlarmsArgs { names, name_prefix, state, action_prefix, max_records, next_token })
        }
        Op::DeleteAlarms { names } => {
            let names = strings(fbb, names);
            op_table!(fbb, DeleteAlarms, fb::DeleteAlarmsArgs { names })
        }
        Op::SetAlarmState { name, state, reason, reason_data } => {
            let (name, state, reason) = (Some(fbb.create_string(name)), Some(fbb.create_string(state)), Some(fbb.create_string(reason)));
            let reason_data = opt_str(fbb, reason_data);
            op_table!(fbb, SetAlarmState, fb::SetAlarmStateArgs { name, state, reason, reason_data })
        }
        Op::SetAlarmActions { names, enable } => {
            let names = strings(fbb, names);
            op_table!(fbb, SetAlarmActions, fb::SetAlarmActionsArgs { names, enable: *enable })
        }
        Op::GetMetricStatistics { metric, start_ms, end_ms, period_seconds, statistics, unit } => {
            let metric = Some(metric_id(fbb, metric));
            let statistics = strings(fbb, statistics);
            let unit = opt_str(fbb, unit);
            let args = fb::GetMetricStatisticsArgs {
                metric,
                start_ms: *start_ms,
                end_ms: *end_ms,
                period_seconds: *period_seconds,
                statistics,
                unit,
            };
            op_table!(fbb, GetMetricStatistics, args)
        }
        Op::GetMetricData { queries, start_ms, end_ms, descending, max_datapoints, next_token } => {
            let offsets: Vec<_> = queries
                .iter()
                .map(|query| {
                    let id = Some(fbb.create_string(&query.id));
                    let metric = Some(metric_id(fbb, &query.metric));
                    let stat = Some(fbb.create_string(&query.stat));
                    let (label, unit) = (opt_str(fbb, &query.label), opt_str(fbb, &query.unit));
                    let args = fb::MetricDataQueryArgs {
                        id,
                        metric,
                        period_seconds: query.period_seconds,
                        stat,
                        label,
                        return_data: query.return_data,
                        unit,
                    };
                    fb::MetricDataQuery::create(fbb, &args)
                })
                .collect();
            let queries = Some(fbb.create_vector(&offsets));
            let next_token = opt_str(fbb, next_token);
            let args = fb::GetMetricDataArgs {
                queries,
                start_ms: *start_ms,
                end_ms: *end_ms,
                descending: *descending,
                max_datapoints: max_datapoints.unwrap_or(-1),
                next_token,
            };
            op_table!(fbb, GetMetricData, args)
        }
        Op::ListMetrics { namespace, metric_name, dimensions, next_token } => {
            let (namespace, metric_name, next_token) = (opt_str(fbb, namespace), opt_str(fbb, metric_name), opt_str(fbb, next_token));
            let offsets: Vec<_> = dimensions
                .iter()
                .map(|filter| {
                    let name = Some(fbb.create_string(&filter.name));
                    let value = opt_str(fbb, &filter.value);
                    fb::DimensionFilter::create(fbb, &fb::DimensionFilterArgs { name, value })
                })
                .collect();
            let dimensions = (!offsets.is_empty()).then(|| fbb.create_vector(&offsets));
            op_table!(fbb, ListMetrics, fb::ListMetricsArgs { namespace, metric_name, dimensions, next_token })
        }
        _ => return None,
    })
}

impl Reader<'_> {
    fn dimensions(&self, vector: Option<Vector<'_, ForwardsUOffset<fb::Dimension<'_>>>>) -> Vec<Dimension> {
        self.bounded(vector)
            .map(|items| items.iter().map(|d| Dimension { name: d.name().to_owned(), value: d.value().to_owned() }).collect())
            .unwrap_or_default()
    }

    fn metric_id(&self, metric: fb::MetricId<'_>) -> MetricId {
        MetricId {
            namespace: metric.namespace().to_owned(),
            metric_name: metric.metric_name().to_owned(),
            dimensions: self.dimensions(metric.dimensions()),
        }
    }

    fn alarm(&self, alarm: fb::MetricAlarm<'_>) -> MetricAlarm {
        MetricAlarm {
            name: alarm.name().to_owned(),
            description: owned(alarm.description()),
            metric: self.metric_id(alarm.metric()),
            statistic: alarm.statistic().to_owned(),
            period_seconds: alarm.period_seconds(),
            evaluation_periods: alarm.evaluation_periods(),
            datapoints_to_alarm: alarm.datapoints_to_alarm(),
            threshold: alarm.threshold(),
            comparison: alarm.comparison().to_owned(),
            treat_missing_data: owned(alarm.treat_missing_data()),
            unit: owned(alarm.unit()),
            actions_enabled: alarm.actions_enabled(),
            alarm_actions: self.strings(alarm.alarm_actions()),
            ok_actions: self.strings(alarm.ok_actions()),
            insufficient_data_actions: self.strings(alarm.insufficient_data_actions()),
            arn: alarm.arn().unwrap_or_default().to_owned(),
            state: alarm.state().unwrap_or_default().to_owned(),
            state_reason: alarm.state_reason().unwrap_or_default().to_owned(),
            state_reason_data: owned(alarm.state_reason_data()),
            state_updated_ms: alarm.state_updated_ms(),
            configuration_updated_ms: alarm.configuration_updated_ms(),
        }
    }
}

pub(super) fn decode_op(
    request: &fb::Request<'_>,
    read: &Reader<'_>,
    unknown: &dyn Fn() -> DecodeError,
) -> Result<Option<Op>, DecodeError> {
    Ok(Some(match request.op_type() {
        fb::Op::PutMetricAlarm => {
            let op = request.op_as_put_metric_alarm().ok_or_else(unknown)?;
            Op::PutMetricAlarm(Box::new(read.alarm(op.alarm())))
        }
        fb::Op::DescribeAlarms => {
            let op = request.op_as_describe_alarms().ok_or_else(unknown)?;
            Op::DescribeAlarms {
                names: read.strings(op.names()),
                name_prefix: owned(op.name_prefix()),
                state: owned(op.state()),
                action_prefix: owned(op.action_prefix()),
                max_records: (op.max_records() >= 0).then_some(op.max_records()),
                next_token: owned(op.next_token()),
            }
        }
        fb::Op::DeleteAlarms => {
            let op = request.op_as_delete_alarms().ok_or_else(unknown)?;
            Op::DeleteAlarms { names: read.strings(op.names()) }
        }
        fb::Op::SetAlarmState => {
            let op = request.op_as_set_alarm_state().ok_or_else(unknown)?;
            Op::SetAlarmState {
                name: op.name().to_owned(),
                state: op.state().to_owned(),
                reason: op.reason().to_owned(),
                reason_data: owned(op.reason_data()),
            }
        }
        fb::Op::SetAlarmActions => {
            let op = request.op_as_set_alarm_actions().ok_or_else(unknown)?;
            Op::SetAlarmActions { names: read.strings(op.names()), enable: op.enable() }
        }
        fb::Op::GetMetricStatistics => {
            let op = request.op_as_get_metric_statistics().ok_or_else(unknown)?;
            Op::GetMetricStatistics {
                metric: read.metric_id(op.metric()),
                start_ms: op.start_ms(),
                end_ms: op.end_ms(),
                period_seconds: op.period_seconds(),
                statistics: read.strings(op.statistics()),
                unit: owned(op.unit()),
            }
        }
        fb::Op::GetMetricData => {
            let op = request.op_as_get_metric_data().ok_or_else(unknown)?;
            let queries = read
                .bounded(op.queries())
                .map(|items| {
                    items
                        .iter()
                        .map(|query| MetricDataQuery {
                            id: query.id().to_owned(),
                            metric: read.metric_id(query.metric()),
                            period_seconds: query.period_seconds(),
                            stat: query.stat().to_owned(),
                            label: owned(query.label()),
                            return_data: query.return_data(),
                            unit: owned(query.unit()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Op::GetMetricData {
                queries,
                start_ms: op.start_ms(),
                end_ms: op.end_ms(),
                descending: op.descending(),
                max_datapoints: (op.max_datapoints() >= 0).then_some(op.max_datapoints()),
                next_token: owned(op.next_token()),
            }
        }
        fb::Op::ListMetrics => {
            let op = request.op_as_list_metrics().ok_or_else(unknown)?;
            let dimensions = read
                .bounded(op.dimensions())
                .map(|items| items.iter().map(|f| DimensionFilter { name: f.name().to_owned(), value: owned(f.value()) }).collect())
                .unwrap_or_default();
            Op::ListMetrics {
                namespace: owned(op.namespace()),
                metric_name: owned(op.metric_name()),
                dimensions,
                next_token: owned(op.next_token()),
            }
        }
        _ => return Ok(None),
    }))
}

/// Encodes a monitoring reply (`None`: not one).
pub(super) fn encode_reply(fbb: &mut FlatBufferBuilder<'static>, reply: &Reply) -> Option<(fb::Reply, Union)> {
    macro_rules! table {
        ($variant:ident, $args:expr) => {{
            let args = $args;
            (fb::Reply::$variant, fb::$variant::create(fbb, &args).as_union_value())
        }};
    }
    Some(match reply {
        Reply::MetricAlarms { alarms, next_token } => {
            let offsets: Vec<_> = alarms.iter().map(|item| alarm(fbb, item)).collect();
            let alarms = Some(fbb.create_vector(&offsets));
            let next_token = opt_str(fbb, next_token);
            table!(MetricAlarms, fb::MetricAlarmsArgs { alarms, next_token })
        }
        Reply::MetricStatistics { label, datapoints } => {
            let label = Some(fbb.create_string(label));
            let offsets: Vec<_> = datapoints
                .iter()
                .map(|point| {
                    let unit = opt_str(fbb, &point.unit);
                    let args = fb::DatapointArgs {
                        timestamp_ms: point.timestamp_ms,
                        sample_count: point.sample_count,
                        sum: point.sum,
                        minimum: point.minimum,
                        maximum: point.maximum,
                        unit,
                    };
                    fb::Datapoint::create(fbb, &args)
                })
                .collect();
            let datapoints = Some(fbb.create_vector(&offsets));
            table!(MetricStatistics, fb::MetricStatisticsArgs { label, datapoints })
        }
        Reply::MetricData { results, next_token } => {
            let offsets: Vec<_> = results
                .iter()
                .map(|result| {
                    let id = Some(fbb.create_string(&result.id));
                    let label = Some(fbb.create_string(&result.label));
                    let timestamps_ms = Some(fbb.create_vector(&result.timestamps_ms));
                    let values = Some(fbb.create_vector(&result.values));
                    fb::MetricDataResult::create(fbb, &fb::MetricDataResultArgs { id, label, timestamps_ms, values })
                })
                .collect();
            let results = Some(fbb.create_vector(&offsets));
            let next_token = opt_str(fbb, next_token);
            table!(MetricDataResults, fb::MetricDataResultsArgs { results, next_token })
        }
        Reply::MetricList { metrics, next_token } => {
            let offsets: Vec<_> = metrics.iter().map(|metric| metric_id(fbb, metric)).collect();
            let metrics = Some(fbb.create_vector(&offsets));
            let next_token = opt_str(fbb, next_token);
            table!(MetricList, fb::MetricListArgs { metrics, next_token })
        }
        _ => return None,
    })
}

/// Decodes a monitoring reply (`None`: not one).
pub(super) fn decode_reply(
    response: &fb::Response<'_>,
    read: &Reader<'_>,
    empty: &dyn Fn() -> DecodeError,
) -> Result<Option<Reply>, DecodeError> {
    Ok(Some(match response.reply_type() {
        fb::Reply::MetricAlarms => {
            let result = response.reply_as_metric_alarms().ok_or_else(empty)?;
            let alarms = read.bounded(result.alarms()).map(|items| items.iter().map(|a| read.alarm(a)).collect()).unwrap_or_default();
            Reply::MetricAlarms { alarms, next_token: owned(result.next_token()) }
        }
        fb::Reply::MetricStatistics => {
            let result = response.reply_as_metric_statistics().ok_or_else(empty)?;
            let datapoints = read
                .bounded(result.datapoints())
                .map(|items| {
                    items
                        .iter()
                        .map(|point| Datapoint {
                            timestamp_ms: point.timestamp_ms(),
                            sample_count: point.sample_count(),
                            sum: point.sum(),
                            minimum: point.minimum(),
                            maximum: point.maximum(),
                            unit: owned(point.unit()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Reply::MetricStatistics { label: result.label().to_owned(), datapoints }
        }
        fb::Reply::MetricDataResults => {
            let result = response.reply_as_metric_data_results().ok_or_else(empty)?;
            let results = read
                .bounded(result.results())
                .map(|items| {
                    items
                        .iter()
                        .map(|item| MetricDataResult {
                            id: item.id().to_owned(),
                            label: item.label().unwrap_or_default().to_owned(),
                            timestamps_ms: read.bounded(item.timestamps_ms()).map(|v| v.iter().collect()).unwrap_or_default(),
                            values: read.bounded(item.values()).map(|v| v.iter().collect()).unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Reply::MetricData { results, next_token: owned(result.next_token()) }
        }
        fb::Reply::MetricList => {
            let result = response.reply_as_metric_list().ok_or_else(empty)?;
            let metrics = read.bounded(result.metrics()).map(|items| items.iter().map(|m| read.metric_id(m)).collect()).unwrap_or_default();
            Reply::MetricList { metrics, next_token: owned(result.next_token()) }
        }
        _ => return Ok(None),
    }))
}
