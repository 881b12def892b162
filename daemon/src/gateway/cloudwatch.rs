//! CloudWatch (alarms and metric queries) in the three protocols its SDKs speak: Smithy RPC v2
//! CBOR (`POST /service/GraniteServiceVersion20100801/operation/{Action}`, what current
//! botocore, the AWS CLI and the JavaScript SDK send), AWS JSON 1.0 (`X-Amz-Target:
//! GraniteServiceVersion20100801.{Action}`) and Query (`Action=…&Version=2010-08-01`, older
//! SDKs). Each request is read into the same parameter tree (`params`), and each answer is
//! built once as an `Out` tree, written as CBOR, JSON or XML. Errors carry CloudWatch's codes,
//! in the `x-amzn-query-error` header too (the service is Query-compatible).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};
use sluice_protocol::{Dimension, DimensionFilter, ErrorCode, MetricAlarm, MetricDataQuery, MetricId, Op, OpError, Reply};

use super::params::{Faults, Params};
use super::xml::Xml;

pub const TARGET_PREFIX: &str = "GraniteServiceVersion20100801";
/// Where RPC v2 CBOR requests go; the action follows.
pub const CBOR_PATH: &str = "/service/GraniteServiceVersion20100801/operation/";
pub const NAMESPACE: &str = "http://monitoring.amazonaws.com/doc/2010-08-01/";
pub const FAULTS: Faults = Faults { missing: ErrorCode::MissingParameter, invalid: ErrorCode::InvalidParameterValue };
/// The actions served (others are refused by name).
pub const ACTIONS: &[&str] = &[
    "PutMetricAlarm",
    "DescribeAlarms",
    "DeleteAlarms",
    "SetAlarmState",
    "EnableAlarmActions",
    "DisableAlarmActions",
    "GetMetricStatistics",
    "GetMetricData",
    "ListMetrics",
];
/// Deepest nesting a CBOR request may have.
const CBOR_DEPTH_MAX: usize = 32;

fn unsupported(what: &str) -> OpError {
    OpError::new(ErrorCode::InvalidParameterValue, format!("{what} is not supported by this server."))
}

fn dimensions(p: &Params<'_>, name: &str) -> Result<Vec<Dimension>, OpError> {
    p.objects(name)?.iter().map(|d| Ok(Dimension { name: d.required("Name")?, value: d.required("Value")? })).collect()
}

fn metric_id(p: &Params<'_>) -> Result<MetricId, OpError> {
    Ok(MetricId { namespace: p.required("Namespace")?, metric_name: p.required("MetricName")?, dimensions: dimensions(p, "Dimensions")? })
}

fn unsigned(p: &Params<'_>, name: &str) -> Result<Option<u32>, OpError> {
    match p.i64(name)? {
        None => Ok(None),
        Some(value) => u32::try_from(value).map(Some).map_err(|_| p.invalid(name, "is out of range")),
    }
}

fn required_unsigned(p: &Params<'_>, name: &str) -> Result<u32, OpError> {
    unsigned(p, name)?.ok_or_else(|| OpError::new(ErrorCode::MissingParameter, format!("The parameter {name} is required.")))
}

fn time(p: &Params<'_>, name: &str) -> Result<u64, OpError> {
    match p.timestamp_ms(name)? {
        Some(ms) => u64::try_from(ms).map_err(|_| p.invalid(name, "is before 1970")),
        None => Err(OpError::new(ErrorCode::MissingParameter, format!("The parameter {name} is required."))),
    }
}

/// The operation a CloudWatch request asks for.
pub fn op_from(action: &str, p: Params<'_>) -> Result<Op, OpError> {
    Ok(match action {
        "PutMetricAlarm" => {
            if p.has("Metrics") {
                return Err(unsupported("Metrics (alarms on metric math)"));
            }
            if p.has("ExtendedStatistic") {
                return Err(unsupported("ExtendedStatistic (percentiles)"));
            }
            Op::PutMetricAlarm(Box::new(MetricAlarm {
                name: p.required("AlarmName")?,
                description: p.string("AlarmDescription")?,
                metric: metric_id(&p)?,
                statistic: p.required("Statistic")?,
                period_seconds: required_unsigned(&p, "Period")?,
                evaluation_periods: required_unsigned(&p, "EvaluationPeriods")?,
                datapoints_to_alarm: unsigned(&p, "DatapointsToAlarm")?.unwrap_or(0),
                threshold: p
                    .f64("Threshold")?
                    .ok_or_else(|| OpError::new(ErrorCode::MissingParameter, "The parameter Threshold is required."))?,
                comparison: p.required("ComparisonOperator")?,
                treat_missing_data: p.string("TreatMissingData")?,
                unit: p.string("Unit")?,
                actions_enabled: p.bool("ActionsEnabled")?.unwrap_or(true),
                alarm_actions: p.strings("AlarmActions")?,
                ok_actions: p.strings("OKActions")?,
                insufficient_data_actions: p.strings("InsufficientDataActions")?,
                ..MetricAlarm::default()
            }))
        }
        "DescribeAlarms" => {
            let types = p.strings("AlarmTypes")?;
            if !types.is_empty() && !types.iter().any(|kind| kind == "MetricAlarm") {
                return Err(unsupported("AlarmTypes without MetricAlarm (composite and log alarms)"));
            }
            Op::DescribeAlarms {
                names: p.strings("AlarmNames")?,
                name_prefix: p.string("AlarmNamePrefix")?,
                state: p.string("StateValue")?,
                action_prefix: p.string("ActionPrefix")?,
                max_records: p.int("MaxRecords")?,
                next_token: p.string("NextToken")?,
            }
        }
        "DeleteAlarms" => Op::DeleteAlarms { names: p.strings("AlarmNames")? },
        "SetAlarmState" => Op::SetAlarmState {
            name: p.required("AlarmName")?,
            state: p.required("StateValue")?,
            reason: p.required("StateReason")?,
            reason_data: p.string("StateReasonData")?,
        },
        "EnableAlarmActions" | "DisableAlarmActions" => {
            Op::SetAlarmActions { names: p.strings("AlarmNames")?, enable: action == "EnableAlarmActions" }
        }
        "GetMetricStatistics" => {
            if p.has("ExtendedStatistics") {
                return Err(unsupported("ExtendedStatistics (percentiles)"));
            }
            Op::GetMetricStatistics {
                metric: metric_id(&p)?,
                start_ms: time(&p, "StartTime")?,
                end_ms: time(&p, "EndTime")?,
                period_seconds: required_unsigned(&p, "Period")?,
                statistics: p.strings("Statistics")?,
                unit: p.string("Unit")?,
            }
        }
        "GetMetricData" => {
            let mut queries = Vec::new();
            for query in p.objects("MetricDataQueries")? {
                if query.has("Expression") {
                    return Err(unsupported("Expression (metric math)"));
                }
                let stat = query
                    .object("MetricStat")?
                    .ok_or_else(|| OpError::new(ErrorCode::MissingParameter, "Each query must have a MetricStat."))?;
                let metric = stat
                    .object("Metric")?
                    .ok_or_else(|| OpError::new(ErrorCode::MissingParameter, "A MetricStat must name its Metric."))?;
                queries.push(MetricDataQuery {
                    id: query.required("Id")?,
                    metric: metric_id(&metric)?,
                    period_seconds: required_unsigned(&stat, "Period")?,
                    stat: stat.required("Stat")?,
                    label: query.string("Label")?,
                    return_data: query.bool("ReturnData")?.unwrap_or(true),
                    unit: stat.string("Unit")?,
                });
            }
            let descending = match p.string("ScanBy")?.as_deref() {
                None | Some("TimestampDescending") => true,
                Some("TimestampAscending") => false,
                Some(_) => return Err(p.invalid("ScanBy", "must be TimestampDescending or TimestampAscending")),
            };
            Op::GetMetricData {
                queries,
                start_ms: time(&p, "StartTime")?,
                end_ms: time(&p, "EndTime")?,
                descending,
                max_datapoints: p.int("MaxDatapoints")?,
                next_token: p.string("NextToken")?,
            }
        }
        "ListMetrics" => Op::ListMetrics {
            namespace: p.string("Namespace")?,
            metric_name: p.string("MetricName")?,
            dimensions: p
                .objects("Dimensions")?
                .iter()
                .map(|d| Ok(DimensionFilter { name: d.required("Name")?, value: d.string("Value")? }))
                .collect::<Result<_, OpError>>()?,
            next_token: p.string("NextToken")?,
        },
        other => {
            return Err(OpError::new(
                ErrorCode::InvalidAction,
                format!("The action {other} is not valid for this endpoint (this server serves CloudWatch's {}).", ACTIONS.join(", ")),
            ))
        }
    })
}

/// An answer, before it is written in a protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// Epoch milliseconds: seconds in JSON, a tag-1 time in CBOR, ISO 8601 in XML.
    Time(u64),
    List(Vec<Out>),
    /// Members in order; `None` values are left out.
    Map(Vec<(&'static str, Option<Out>)>),
}

fn text(value: impl Into<String>) -> Option<Out> {
    Some(Out::Str(value.into()))
}

fn texts(values: &[String]) -> Option<Out> {
    Some(Out::List(values.iter().map(|v| Out::Str(v.clone())).collect()))
}

fn dimensions_out(dimensions: &[Dimension]) -> Option<Out> {
    Some(Out::List(dimensions.iter().map(|d| Out::Map(vec![("Name", text(&d.name)), ("Value", text(&d.value))])).collect()))
}

fn metric_out(metric: &MetricId) -> Out {
    Out::Map(vec![
        ("Namespace", text(&metric.namespace)),
        ("MetricName", text(&metric.metric_name)),
        ("Dimensions", dimensions_out(&metric.dimensions)),
    ])
}

fn alarm_out(alarm: &MetricAlarm) -> Out {
    Out::Map(vec![
        ("AlarmName", text(&alarm.name)),
        ("AlarmArn", text(&alarm.arn)),
        ("AlarmDescription", alarm.description.clone().map(Out::Str)),
        ("AlarmConfigurationUpdatedTimestamp", Some(Out::Time(alarm.configuration_updated_ms))),
        ("ActionsEnabled", Some(Out::Bool(alarm.actions_enabled))),
        ("OKActions", texts(&alarm.ok_actions)),
        ("AlarmActions", texts(&alarm.alarm_actions)),
        ("InsufficientDataActions", texts(&alarm.insufficient_data_actions)),
        ("StateValue", text(&alarm.state)),
        ("StateReason", text(&alarm.state_reason)),
        ("StateReasonData", alarm.state_reason_data.clone().map(Out::Str)),
        ("StateUpdatedTimestamp", Some(Out::Time(alarm.state_updated_ms))),
        ("StateTransitionedTimestamp", Some(Out::Time(alarm.state_updated_ms))),
        ("MetricName", text(&alarm.metric.metric_name)),
        ("Namespace", text(&alarm.metric.namespace)),
        ("Statistic", text(&alarm.statistic)),
        ("Dimensions", dimensions_out(&alarm.metric.dimensions)),
        ("Period", Some(Out::Int(i64::from(alarm.period_seconds)))),
        ("Unit", alarm.unit.clone().map(Out::Str)),
        ("EvaluationPeriods", Some(Out::Int(i64::from(alarm.evaluation_periods)))),
        ("DatapointsToAlarm", (alarm.datapoints_to_alarm > 0).then(|| Out::Int(i64::from(alarm.datapoints_to_alarm)))),
        ("Threshold", Some(Out::Float(alarm.threshold))),
        ("ComparisonOperator", text(&alarm.comparison)),
        ("TreatMissingData", alarm.treat_missing_data.clone().map(Out::Str)),
    ])
}

/// What an operation's answer is, as CloudWatch shapes it; `statistics` are those
/// GetMetricStatistics asked for (each datapoint carries only those).
pub fn reply_out(reply: Reply, statistics: &[String]) -> Out {
    match reply {
        Reply::MetricAlarms { alarms, next_token } => Out::Map(vec![
            ("MetricAlarms", Some(Out::List(alarms.iter().map(alarm_out).collect()))),
            ("CompositeAlarms", Some(Out::List(Vec::new()))),
            ("NextToken", next_token.map(Out::Str)),
        ]),
        Reply::MetricStatistics { label, datapoints } => {
            let points = datapoints
                .iter()
                .map(|point| {
                    let asked = |name: &str| statistics.iter().any(|s| s == name);
                    let stat = |name: &'static str, value: f64| (name, asked(name).then_some(Out::Float(value)));
                    Out::Map(vec![
                        ("Timestamp", Some(Out::Time(point.timestamp_ms))),
                        stat("SampleCount", point.sample_count),
                        stat("Average", point.sum / point.sample_count.max(1.0)),
                        stat("Sum", point.sum),
                        stat("Minimum", point.minimum),
                        stat("Maximum", point.maximum),
                        ("Unit", Some(Out::Str(point.unit.clone().unwrap_or_else(|| "None".into())))),
                    ])
                })
                .collect();
            Out::Map(vec![("Label", text(label)), ("Datapoints", Some(Out::List(points)))])
        }
        Reply::MetricData { results, next_token } => {
            let results = results
                .into_iter()
                .map(|result| {
                    Out::Map(vec![
                        ("Id", text(result.id)),
                        ("Label", text(result.label)),
                        ("Timestamps", Some(Out::List(result.timestamps_ms.into_iter().map(Out::Time).collect()))),
                        ("Values", Some(Out::List(result.values.into_iter().map(Out::Float).collect()))),
                        ("StatusCode", text(if next_token.is_some() { "PartialData" } else { "Complete" })),
                    ])
                })
                .collect();
            Out::Map(vec![
                ("MetricDataResults", Some(Out::List(results))),
                ("NextToken", next_token.map(Out::Str)),
                ("Messages", Some(Out::List(Vec::new()))),
            ])
        }
        Reply::MetricList { metrics, next_token } => {
            Out::Map(vec![("Metrics", Some(Out::List(metrics.iter().map(metric_out).collect()))), ("NextToken", next_token.map(Out::Str))])
        }
        _ => Out::Map(Vec::new()),
    }
}

pub fn to_json(out: &Out) -> Value {
    match out {
        Out::Int(n) => Value::from(*n),
        Out::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Out::Bool(b) => Value::Bool(*b),
        Out::Str(s) => Value::String(s.clone()),
        Out::Time(ms) => serde_json::Number::from_f64(*ms as f64 / 1000.0).map_or(Value::Null, Value::Number),
        Out::List(items) => Value::Array(items.iter().map(to_json).collect()),
        Out::Map(members) => {
            Value::Object(members.iter().filter_map(|(name, value)| Some(((*name).to_owned(), to_json(value.as_ref()?)))).collect())
        }
    }
}

fn to_cbor_value(out: &Out) -> ciborium::Value {
    use ciborium::Value as C;
    match out {
        Out::Int(n) => C::Integer((*n).into()),
        Out::Float(f) => C::Float(*f),
        Out::Bool(b) => C::Bool(*b),
        Out::Str(s) => C::Text(s.clone()),
        Out::Time(ms) => C::Tag(1, Box::new(C::Float(*ms as f64 / 1000.0))),
        Out::List(items) => C::Array(items.iter().map(to_cbor_value).collect()),
        Out::Map(members) => {
            C::Map(members.iter().filter_map(|(name, value)| Some((C::Text((*name).to_owned()), to_cbor_value(value.as_ref()?)))).collect())
        }
    }
}

pub fn to_cbor(out: &Out) -> Vec<u8> {
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = ciborium::ser::into_writer(&to_cbor_value(out), &mut bytes);
    bytes
}

fn xml_members(xml: &mut Xml, members: &[(&'static str, Option<Out>)]) {
    for (name, value) in members {
        let Some(value) = value else { continue };
        xml_value(xml, name, value);
    }
}

fn xml_value(xml: &mut Xml, name: &str, value: &Out) {
    match value {
        Out::Int(n) => {
            xml.leaf(name, &n.to_string());
        }
        Out::Float(f) => {
            xml.leaf(name, &f.to_string());
        }
        Out::Bool(b) => {
            xml.leaf(name, if *b { "true" } else { "false" });
        }
        Out::Str(s) => {
            xml.leaf(name, s);
        }
        Out::Time(ms) => {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(*ms);
            xml.leaf(name, &humantime::format_rfc3339_millis(time).to_string());
        }
        Out::List(items) => {
            xml.open(name);
            for item in items {
                xml_value(xml, "member", item);
            }
            xml.close(name);
        }
        Out::Map(members) => {
            xml.open(name);
            xml_members(xml, members);
            xml.close(name);
        }
    }
}

/// The Query protocol's answer: `<{Action}Response><{Action}Result>…`.
pub fn to_xml(action: &str, out: &Out, request_id: &str) -> String {
    let members = match out {
        Out::Map(members) => members.as_slice(),
        _ => &[],
    };
    let mut xml = Xml::new(action, NAMESPACE, !members.is_empty());
    xml_members(&mut xml, members);
    xml.finish(request_id)
}

/// A CBOR request body as a parameter tree (an empty body: none). Text keys only; byte
/// strings become base64 text (as blobs are in JSON), tag-1 times epoch seconds.
pub fn cbor_tree(body: &[u8]) -> Result<Map<String, Value>, OpError> {
    let malformed = |why: String| OpError::new(ErrorCode::MalformedRequest, format!("the request body is not valid CBOR: {why}"));
    if body.is_empty() {
        return Ok(Map::new());
    }
    let value: ciborium::Value =
        ciborium::de::from_reader_with_recursion_limit(body, CBOR_DEPTH_MAX).map_err(|error| malformed(error.to_string()))?;
    match from_cbor(value, 0).map_err(malformed)? {
        Value::Object(map) => Ok(map),
        _ => Err(malformed("the body is not a map".into())),
    }
}

fn from_cbor(value: ciborium::Value, depth: usize) -> Result<Value, String> {
    use ciborium::Value as C;
    if depth > CBOR_DEPTH_MAX {
        return Err("nested too deeply".into());
    }
    Ok(match value {
        C::Null => Value::Null,
        C::Bool(b) => Value::Bool(b),
        C::Integer(n) => {
            let n = i128::from(n);
            match (i64::try_from(n), u64::try_from(n)) {
                (Ok(n), _) => Value::from(n),
                (_, Ok(n)) => Value::from(n),
                _ => return Err("an integer out of range".into()),
            }
        }
        C::Float(f) => Value::Number(serde_json::Number::from_f64(f).ok_or("a number that is not finite")?),
        C::Text(text) => Value::String(text),
        C::Bytes(bytes) => Value::String(STANDARD.encode(bytes)),
        // Epoch seconds (tag 1), or another tag's content.
        C::Tag(_, inner) => from_cbor(*inner, depth + 1)?,
        C::Array(items) => Value::Array(items.into_iter().map(|item| from_cbor(item, depth + 1)).collect::<Result<_, _>>()?),
        C::Map(pairs) => {
            let mut map = Map::new();
            for (key, value) in pairs {
                let C::Text(key) = key else { return Err("a map key that is not text".into()) };
                map.insert(key, from_cbor(value, depth + 1)?);
            }
            Value::Object(map)
        }
        _ => return Err("an unknown item".into()),
    })
}

/// CloudWatch's name for an error: (the Smithy shape, the Query code).
pub fn error_names(code: ErrorCode) -> (&'static str, &'static str) {
    match code {
        ErrorCode::ResourceNotFound => ("ResourceNotFound", "ResourceNotFound"),
        ErrorCode::InvalidParameterValue | ErrorCode::InvalidParameter | ErrorCode::InvalidArgument | ErrorCode::Validation => {
            ("InvalidParameterValueException", "InvalidParameterValue")
        }
        ErrorCode::MissingParameter => ("MissingRequiredParameterException", "MissingParameter"),
        ErrorCode::InvalidParameterCombination => ("InvalidParameterCombinationException", "InvalidParameterCombination"),
        ErrorCode::LimitExceeded => ("LimitExceededFault", "LimitExceeded"),
        ErrorCode::InternalFailure => ("InternalServiceFault", "InternalServiceError"),
        ErrorCode::MalformedRequest => ("SerializationException", "SerializationException"),
        ErrorCode::InvalidAction => ("UnknownOperationException", "InvalidAction"),
        other => (other.aws_name(), other.aws_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::params::Reads;

    fn op(action: &str, tree: Value) -> Result<Op, OpError> {
        let Value::Object(map) = tree else { panic!("a map") };
        let reads = Reads::default();
        op_from(action, Params::tracked(&map, FAULTS, &reads))
    }

    #[test]
    fn a_cbor_request_reads_like_json() {
        use ciborium::Value as C;
        let request = C::Map(vec![
            (C::Text("Namespace".into()), C::Text("AWS/SQS".into())),
            (C::Text("MetricName".into()), C::Text("NumberOfMessagesSent".into())),
            (C::Text("StartTime".into()), C::Tag(1, Box::new(C::Float(1_765_000_000.5)))),
            (C::Text("EndTime".into()), C::Tag(1, Box::new(C::Integer(1_765_003_600.into())))),
            (C::Text("Period".into()), C::Integer(60.into())),
            (C::Text("Statistics".into()), C::Array(vec![C::Text("Sum".into())])),
        ]);
        let mut body = Vec::new();
        ciborium::ser::into_writer(&request, &mut body).unwrap();
        let tree = cbor_tree(&body).unwrap();
        let Op::GetMetricStatistics { start_ms, end_ms, period_seconds, statistics, .. } =
            op("GetMetricStatistics", Value::Object(tree)).unwrap()
        else {
            panic!("GetMetricStatistics")
        };
        assert_eq!((start_ms, end_ms, period_seconds, statistics), (1_765_000_000_500, 1_765_003_600_000, 60, vec!["Sum".to_owned()]));
        assert_eq!(cbor_tree(&[0xff]).unwrap_err().code, ErrorCode::MalformedRequest);
        let deep = [0x81u8; 64];
        assert!(cbor_tree(&deep).is_err(), "nesting is bounded");
    }

    #[test]
    fn answers_write_times_as_each_protocol_wants() {
        let out = Out::Map(vec![("At", Some(Out::Time(1_500))), ("Gone", None), ("L", Some(Out::List(vec![Out::Int(1)])))]);
        assert_eq!(to_json(&out), serde_json::json!({ "At": 1.5, "L": [1] }));
        let decoded: ciborium::Value = ciborium::de::from_reader(to_cbor(&out).as_slice()).unwrap();
        let ciborium::Value::Map(pairs) = decoded else { panic!("a map") };
        assert_eq!(pairs[0].1, ciborium::Value::Tag(1, Box::new(ciborium::Value::Float(1.5))));
        let xml = to_xml("DescribeAlarms", &out, "r");
        assert!(xml.contains("<At>1970-01-01T00:00:01.500Z</At>") && xml.contains("<L><member>1</member></L>"), "{xml}");
    }

    #[test]
    fn what_is_not_served_is_refused_by_name() {
        let error = op("PutMetricAlarm", serde_json::json!({ "AlarmName": "a", "Metrics": [] })).unwrap_err();
        assert!(error.message.contains("metric math"));
        assert_eq!(op("PutDashboard", serde_json::json!({})).unwrap_err().code, ErrorCode::InvalidAction);
    }
}
