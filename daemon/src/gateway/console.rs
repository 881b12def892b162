//! The web console (`/console`): a read-only page of the queues, topics and streams with their
//! depths, rates and ages, charts of the last hour, and each shard's health. Static files are
//! embedded in the binary (`console/`); the page polls `/console/data.json`, which the gateway
//! builds from a scrape of every shard (the figures now) and the metric history (the charts).
//!
//! With `--credentials` the console asks for them (HTTP Basic: the access key id and its
//! secret — use it over TLS, `--tls-cert`), and the principal must be allowed
//! `cloudwatch:GetMetricData`.

use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use sluice_protocol::{Dimension, MetricDataQuery, MetricId, Op, Reply};

use super::Body;
use crate::access::Access;
use crate::engine::Host;
use crate::metrics::Totals;
use crate::shard::Shard;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// Entities of each kind the console shows (by name); the rest are counted. Each takes up to
/// four queries of one GetMetricData (at most 500).
const SHOWN_MAX: usize = 40;
/// What the charts cover.
const CHART_SECONDS: u64 = 3_600;

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed_unsync());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Nothing but this page's own files; no framing by other sites.
    headers.insert("content-security-policy", HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// Whether `path` is the console's.
pub fn is_console(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// Serves a GET of the console at `path`.
pub async fn serve(shard: &Rc<Shard>, path: &str, headers: &HeaderMap, peer_ip: Option<std::net::IpAddr>, secure: bool) -> Response<Body> {
    if let Err(refusal) = authorize(shard, headers, peer_ip, secure) {
        return *refusal;
    }
    match path {
        "/console" | "/console/" => respond(StatusCode::OK, "text/html; charset=utf-8", Bytes::from_static(INDEX.as_bytes())),
        "/console/console.js" => respond(StatusCode::OK, "text/javascript; charset=utf-8", Bytes::from_static(SCRIPT.as_bytes())),
        "/console/console.css" => respond(StatusCode::OK, "text/css; charset=utf-8", Bytes::from_static(STYLE.as_bytes())),
        "/console/data.json" => {
            let data = data(shard).await;
            respond(StatusCode::OK, "application/json", Bytes::from(serde_json::to_vec(&data).unwrap_or_default()))
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", Bytes::from_static(b"no such page\n")),
    }
}

fn unauthorized(message: &'static str) -> Response<Body> {
    let mut response = respond(StatusCode::UNAUTHORIZED, "text/plain", Bytes::from_static(message.as_bytes()));
    response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"sluiced console\", charset=\"UTF-8\""));
    response
}

/// Without `--credentials`: anyone who reaches the gateway. With them: HTTP Basic with an
/// access key id and its secret, whose principal may `cloudwatch:GetMetricData`.
fn authorize(shard: &Rc<Shard>, headers: &HeaderMap, ip: Option<std::net::IpAddr>, secure: bool) -> Result<(), Box<Response<Body>>> {
    let Some(store) = &shard.config.credentials else { return Ok(()) };
    let basic = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let Some((key_id, secret)) = basic.as_deref().and_then(|text| text.split_once(':')) else {
        return Err(Box::new(unauthorized("the console needs an access key id and its secret\n")));
    };
    let credentials = store.current();
    // Digests compared, not secrets: how long a comparison takes tells nothing of the secret.
    let digest = |text: &str| ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let principal = match credentials.get(key_id) {
        Some(principal) if digest(&principal.secret_access_key).as_ref() == digest(secret).as_ref() => principal.clone(),
        _ => return Err(Box::new(unauthorized("unknown access key id or wrong secret\n"))),
    };
    let access = Access { principal: Some(principal), ip, secure };
    let probe = Op::GetMetricData { queries: Vec::new(), start_ms: 0, end_ms: 0, descending: true, max_datapoints: None, next_token: None };
    shard.authorize(&probe, &access).map_err(|error| {
        let body = Bytes::from(format!("{}\n", error.message));
        Box::new(respond(StatusCode::FORBIDDEN, "text/plain", body))
    })
}

fn metric(namespace: &str, name: &str, dimension: &str, value: &str) -> MetricId {
    MetricId {
        namespace: namespace.into(),
        metric_name: name.into(),
        dimensions: vec![Dimension { name: dimension.into(), value: value.into() }],
    }
}

/// The console's figures: now (a scrape), and the last hour (the history).
async fn data(shard: &Rc<Shard>) -> Value {
    let reports = crate::shard::metrics::gather(shard).await;
    let snapshot = shard.snapshot();
    let now_ms = shard.env.now_ms();
    let totals = Totals::of(&reports);
    let period = shard.config.metrics_sample_seconds.max(60) as u32;
    let sample = shard.config.metrics_sample_seconds as u32;
    let mut queries: Vec<MetricDataQuery> = Vec::new();
    // A chart: the last hour, a point per period; a rate: the counter's last sample.
    let mut ask = |id: String, metric: MetricId, stat: &str, rate: bool| {
        queries.push(MetricDataQuery {
            id,
            metric,
            period_seconds: if rate { sample } else { period },
            stat: stat.into(),
            label: None,
            return_data: true,
            unit: None,
        });
    };

    let all_queues: Vec<_> = snapshot.client_queues().collect();
    let mut queues = Vec::new();
    for (index, meta) in all_queues.iter().take(SHOWN_MAX).enumerate() {
        let g = totals.queue_gauges.get(&meta.id).copied().unwrap_or_default();
        let c = totals.queues.get(&meta.id).copied().unwrap_or_default();
        queues.push(json!({
            "name": meta.name,
            "visible": g.visible,
            "inFlight": g.in_flight,
            "delayed": g.delayed,
            "oldestAgeSeconds": g.oldest_sent_ms.map_or(0, |sent| now_ms.saturating_sub(sent) / 1000),
            "sent": c.sent,
            "received": c.received,
            "deleted": c.deleted,
            "movedToDeadLetter": c.moved_to_dead_letter,
        }));
        ask(format!("q{index}"), metric("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", &meta.name), "Maximum", false);
        for (key, name) in
            [("sent", "NumberOfMessagesSent"), ("received", "NumberOfMessagesReceived"), ("deleted", "NumberOfMessagesDeleted")]
        {
            ask(format!("q{index}_{key}"), metric("AWS/SQS", name, "QueueName", &meta.name), "Sum", true);
        }
    }
    let mut topics = Vec::new();
    for (index, meta) in snapshot.topics.values().take(SHOWN_MAX).enumerate() {
        let c = totals.topics.get(meta.name.as_str()).copied().unwrap_or_default();
        let d = totals.topic_deliveries(&meta.name);
        topics.push(json!({
            "name": meta.name,
            "subscriptions": meta.subscriptions.len(),
            "published": c.published,
            "delivered": d.delivered,
            "retried": d.retried,
            "failed": d.failed,
        }));
        ask(format!("t{index}"), metric("AWS/SNS", "NumberOfMessagesPublished", "TopicName", &meta.name), "Sum", false);
        ask(format!("t{index}_published"), metric("AWS/SNS", "NumberOfMessagesPublished", "TopicName", &meta.name), "Sum", true);
    }
    let mut streams = Vec::new();
    for (index, meta) in snapshot.streams.values().take(SHOWN_MAX).enumerate() {
        let mut sum = crate::metrics::StreamCounters::default();
        let mut shards = Vec::new();
        for shard_meta in &meta.shards {
            let c = totals.streams.get(&(meta.id, shard_meta.index)).copied().unwrap_or_default();
            sum.add(&c);
            if meta.open_shards().any(|open| open.index == shard_meta.index) {
                shards.push(json!({ "id": shard_meta.id(), "incomingRecords": c.incoming_records, "iteratorAgeMs": c.iterator_age_ms }));
            }
        }
        streams.push(json!({
            "name": meta.name,
            "mode": format!("{:?}", meta.mode),
            "openShards": shards.len(),
            "retentionHours": meta.retention_hours,
            "incomingRecords": sum.incoming_records,
            "incomingBytes": sum.incoming_bytes,
            "outgoingRecords": sum.outgoing_records,
            "iteratorAgeMs": sum.iterator_age_ms,
            "throttled": sum.write_throttled + sum.read_throttled,
            "shards": shards,
        }));
        ask(format!("s{index}"), metric("AWS/Kinesis", "IncomingRecords", "StreamName", &meta.name), "Sum", false);
        for (key, name) in [("records_in", "IncomingRecords"), ("bytes_in", "IncomingBytes"), ("records_out", "GetRecords.Records")] {
            ask(format!("s{index}_{key}"), metric("AWS/Kinesis", name, "StreamName", &meta.name), "Sum", true);
        }
    }
    let shards: Vec<Value> = reports
        .iter()
        .map(|report| {
            let g = &report.gauges;
            json!({
                "shard": report.shard,
                "connections": g.connections,
                "memoryUsedBytes": g.memory_used_bytes,
                "memoryBudgetBytes": g.memory_budget_bytes,
                "logBytes": g.log_bytes,
                "logSegments": g.log_segments,
                "groupCommits": g.log_flushes,
                "fdatasyncs": g.log_fdatasyncs,
                "commitMeanMicros": g.commit_micros.sum.checked_div(g.commit_micros.count).unwrap_or(0),
                "streamLogsOpen": g.stream_logs_open,
            })
        })
        .collect();

    // The charts and rates: one GetMetricData on shard 0's history.
    let mut charts = serde_json::Map::new();
    let mut rates = serde_json::Map::new();
    if !queries.is_empty() {
        let op = Op::GetMetricData {
            queries,
            start_ms: now_ms.saturating_sub(CHART_SECONDS * 1000),
            end_ms: now_ms + 1000,
            descending: false,
            max_datapoints: None,
            next_token: None,
        };
        match crate::shard::monitor::handle_op(shard, op).await {
            Ok(Reply::MetricData { results, .. }) => {
                for result in results {
                    if result.id.contains('_') {
                        // Per second over the last sample, if it is recent.
                        let recent = result.timestamps_ms.last().is_some_and(|at| *at + 3_000 * u64::from(sample) >= now_ms);
                        let rate = result.values.last().filter(|_| recent).map_or(0.0, |sum| sum / f64::from(sample.max(1)));
                        rates.insert(result.id, json!(rate));
                        continue;
                    }
                    let points: Vec<Value> =
                        result.timestamps_ms.iter().zip(&result.values).map(|(at, value)| json!([at, value])).collect();
                    charts.insert(result.id, Value::Array(points));
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "the console could not read the metric history"),
        }
    }
    json!({
        "generatedMs": now_ms,
        "region": snapshot.naming.region,
        "chartPeriodSeconds": period,
        "sampleSeconds": shard.config.metrics_sample_seconds,
        "queues": queues,
        "queuesTotal": all_queues.len(),
        "topics": topics,
        "topicsTotal": snapshot.topics.len(),
        "streams": streams,
        "streamsTotal": snapshot.streams.len(),
        "shards": shards,
        "charts": charts,
        "rates": rates,
    })
}
