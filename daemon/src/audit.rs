//! The audit log (`--audit-log FILE`): one JSON line per API call, in CloudTrail's shape
//! (`eventTime`, `eventSource`, `eventName`, `userIdentity`, `sourceIPAddress`,
//! `requestParameters`, `errorCode`, …), from both the binary protocol and the gateway.
//!
//! Management calls (create, delete, set attributes, list, subscribe, …) are always recorded;
//! data calls (send, receive, delete messages, publish, put and get records) only with
//! `--audit-data-events`, as CloudTrail separates them. `requestParameters` name the
//! resources and the sizes of a call, never message bodies, attribute values, receipt
//! handles, iterators or tokens.
//!
//! A shard never writes the file: it hands each line to a bounded channel that one writer
//! thread drains, writing in batches and rotating by size (`FILE` becomes `FILE.1`, `FILE.1`
//! becomes `FILE.2`, … up to `--audit-log-files`). When the writer falls behind by the whole
//! channel, further lines are dropped and counted rather than stalling a request; the
//! writer logs how many.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};
use sluice_protocol::{Op, OpError, Reply};

/// Lines the channel holds before further ones are dropped.
const CHANNEL_LINES: usize = 65_536;
/// How long the writer waits for more lines before flushing what it wrote.
const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// Who made a call, as far as the daemon knows it (nothing is authenticated yet: the
/// identity is what the client said, recorded as `Unknown`).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub ip: Option<IpAddr>,
    /// The binary client's `Hello` name, or the HTTP `User-Agent`.
    pub agent: String,
    /// `binary` or `http`.
    pub via: &'static str,
    /// The gateway's request id; the binary protocol's is made up per call.
    pub request_id: Option<String>,
    /// Who signed the request, when it was signed (`--credentials`).
    pub principal: Option<Arc<crate::credentials::Principal>>,
    /// Whether it came over TLS.
    pub secure: bool,
}

/// Where shards send their lines. Cloned into every shard's configuration.
#[derive(Debug, Clone)]
pub struct Sink {
    lines: SyncSender<Vec<u8>>,
    data_events: bool,
    dropped: Arc<AtomicU64>,
}

/// The writer thread; `finish` flushes and stops it.
pub struct Writer {
    stop: SyncSender<Vec<u8>>,
    thread: std::thread::JoinHandle<()>,
}

/// How the log is kept.
#[derive(Debug, Clone)]
pub struct Options {
    pub path: PathBuf,
    pub bytes_max: u64,
    pub files: u32,
    pub data_events: bool,
}

/// Opens (or creates) the log and starts its writer.
pub fn start(options: Options) -> Result<(Sink, Writer), String> {
    let file = open(&options.path)?;
    let written = file.metadata().map(|m| m.len()).unwrap_or(0);
    let (lines, receiver) = std::sync::mpsc::sync_channel(CHANNEL_LINES);
    let dropped = Arc::new(AtomicU64::new(0));
    let sink = Sink { lines: lines.clone(), data_events: options.data_events, dropped: dropped.clone() };
    let thread = std::thread::Builder::new()
        .name("sluice-audit".into())
        .spawn(move || write_lines(options, file, written, receiver, dropped))
        .map_err(|e| format!("cannot start the audit log's writer: {e}"))?;
    Ok((sink, Writer { stop: lines, thread }))
}

impl Writer {
    /// Writes what is queued, then stops (an empty line is the writer's stop mark).
    pub fn finish(self) {
        let _ = self.stop.send(Vec::new());
        let _ = self.thread.join();
    }
}

fn open(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot open the audit log {}: {e}", path.display()))
}

fn rotated(path: &Path, index: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

fn write_lines(options: Options, file: std::fs::File, mut written: u64, receiver: Receiver<Vec<u8>>, dropped: Arc<AtomicU64>) {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
    let mut reported_dropped = 0;
    let mut failures: u64 = 0;
    loop {
        let line = match receiver.recv_timeout(FLUSH_AFTER) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                if let Err(error) = out.flush() {
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::error!(path = %options.path.display(), %error, failures, "cannot write the audit log");
                    }
                }
                let now_dropped = dropped.load(Ordering::Relaxed);
                if now_dropped > reported_dropped {
                    tracing::warn!(dropped = now_dropped - reported_dropped, "the audit log fell behind; calls went unrecorded");
                    reported_dropped = now_dropped;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if line.is_empty() {
            break;
        }
        if written > 0 && written + line.len() as u64 > options.bytes_max {
            let _ = out.flush();
            match rotate(&options) {
                Ok(file) => {
                    out = std::io::BufWriter::with_capacity(1 << 16, file);
                    written = 0;
                }
                Err(error) => tracing::error!(path = %options.path.display(), %error, "cannot rotate the audit log; writing on"),
            }
        }
        written += line.len() as u64;
        if let Err(error) = out.write_all(&line) {
            failures += 1;
            if failures.is_power_of_two() {
                tracing::error!(path = %options.path.display(), %error, failures, "cannot write the audit log");
            }
        }
    }
    let _ = out.flush();
    let _ = out.get_ref().sync_data();
}

/// `FILE.k-1` becomes `FILE.k` (the oldest goes), `FILE` becomes `FILE.1`; a new `FILE`.
fn rotate(options: &Options) -> Result<std::fs::File, String> {
    let keep = options.files.max(1);
    let _ = std::fs::remove_file(rotated(&options.path, keep));
    for index in (1..keep).rev() {
        let from = rotated(&options.path, index);
        if from.exists() {
            std::fs::rename(&from, rotated(&options.path, index + 1)).map_err(|e| format!("renaming {}: {e}", from.display()))?;
        }
    }
    std::fs::rename(&options.path, rotated(&options.path, 1)).map_err(|e| format!("renaming {}: {e}", options.path.display()))?;
    open(&options.path)
}

/// What the log says about one operation, taken before it runs (it is moved into the engine).
pub struct Described {
    source: &'static str,
    name: std::borrow::Cow<'static, str>,
    data: bool,
    parameters: Value,
}

impl Sink {
    /// What to record of `op`, or `None` when it is not recorded (a data call without
    /// `--audit-data-events`; a connection's `Hello`).
    pub fn describe(&self, op: &Op) -> Option<Described> {
        let (source, data, parameters) = describe(op)?;
        (!data || self.data_events).then(|| Described { source, name: op.name().into(), data, parameters })
    }

    /// Records a call refused before it was read (its signature did not check out): always,
    /// data call or not, under the action it named (at most 64 characters of it).
    pub fn record_refused(&self, source: &'static str, action: &str, caller: &Caller, error: &OpError, region: &str, account_id: &str) {
        let name: String = if action.is_empty() { "Unknown".into() } else { action.chars().take(64).collect() };
        let described = Described { source, name: name.into(), data: false, parameters: json!({}) };
        self.record(described, caller, &Err(error.clone()), region, account_id);
    }

    /// Queues the line for `described` as it turned out; never blocks.
    pub fn record(&self, described: Described, caller: &Caller, outcome: &Result<Reply, OpError>, region: &str, account_id: &str) {
        let line = line(described, caller, outcome, region, account_id, SystemTime::now());
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn line(
    described: Described,
    caller: &Caller,
    outcome: &Result<Reply, OpError>,
    region: &str,
    account_id: &str,
    now: SystemTime,
) -> Vec<u8> {
    let name = described.name;
    let read_only = ["Get", "List", "Describe"].iter().any(|prefix| name.starts_with(prefix));
    let name = name.as_ref();
    let mut event = Map::new();
    event.insert("eventVersion".into(), json!("1.09"));
    let identity = match &caller.principal {
        Some(principal) => json!({
            "type": "IAMUser",
            "arn": principal.arn,
            "accountId": principal.account_id,
            "accessKeyId": principal.access_key_id,
            "userName": principal.arn.rsplit('/').next().unwrap_or_default(),
        }),
        None => json!({ "type": "Unknown", "accountId": account_id, "userName": caller.agent }),
    };
    event.insert("userIdentity".into(), identity);
    event.insert("eventTime".into(), json!(humantime::format_rfc3339_seconds(now).to_string()));
    event.insert("eventSource".into(), json!(described.source));
    event.insert("eventName".into(), json!(name));
    event.insert("awsRegion".into(), json!(region));
    event.insert("sourceIPAddress".into(), json!(caller.ip.map(|ip| ip.to_string())));
    event.insert("userAgent".into(), json!(caller.agent));
    if let Err(error) = outcome {
        event.insert("errorCode".into(), json!(error.code.to_string()));
        event.insert("errorMessage".into(), json!(error.message));
    }
    event.insert("requestParameters".into(), described.parameters);
    event.insert("responseElements".into(), Value::Null);
    let event_id = crate::catalog::topics::random_uuid();
    event.insert("requestID".into(), json!(caller.request_id.clone().unwrap_or_else(|| event_id.clone())));
    event.insert("eventID".into(), json!(event_id));
    event.insert("readOnly".into(), json!(read_only));
    event.insert("eventType".into(), json!("AwsApiCall"));
    event.insert("managementEvent".into(), json!(!described.data));
    event.insert("recipientAccountId".into(), json!(account_id));
    event.insert("eventCategory".into(), json!(if described.data { "Data" } else { "Management" }));
    event.insert("sluiceProtocol".into(), json!(caller.via));
    let mut line = serde_json::to_vec(&Value::Object(event)).unwrap_or_default();
    line.push(b'\n');
    line
}

const SQS: &str = "sqs.amazonaws.com";
const SNS: &str = "sns.amazonaws.com";
const KINESIS: &str = "kinesis.amazonaws.com";
const KMS: &str = "kms.amazonaws.com";
const CLOUDWATCH: &str = "monitoring.amazonaws.com";
const FIREHOSE: &str = "firehose.amazonaws.com";

fn keys(pairs: &[(String, String)]) -> Vec<&str> {
    pairs.iter().map(|(key, _)| key.as_str()).collect()
}

/// (event source, whether a data call, request parameters) of `op`; `None` for `Hello`.
fn describe(op: &Op) -> Option<(&'static str, bool, Value)> {
    Some(match op {
        Op::Hello { .. } => return None,
        Op::Authenticate { access_key_id, .. } => ("sluiced", false, json!({ "accessKeyId": access_key_id })),
        Op::CreateQueue { name, attributes, tags } => {
            (SQS, false, json!({ "queueName": name, "attributes": keys(attributes), "tags": keys(tags) }))
        }
        Op::GetQueueUrl { name, owner } => (SQS, false, json!({ "queueName": name, "queueOwnerAWSAccountId": owner })),
        Op::ListQueues { prefix, max_results, .. } => (SQS, false, json!({ "queueNamePrefix": prefix, "maxResults": max_results })),
        Op::DeleteQueue { queue } | Op::PurgeQueue { queue } | Op::ListQueueTags { queue } => (SQS, false, json!({ "queueUrl": queue })),
        Op::AddPermission { queue, label, account_ids, actions } => {
            (SQS, false, json!({ "queueUrl": queue, "label": label, "aWSAccountIds": account_ids, "actions": actions }))
        }
        Op::RemovePermission { queue, label } => (SQS, false, json!({ "queueUrl": queue, "label": label })),
        Op::AddTopicPermission { topic, label, account_ids, actions } => {
            (SNS, false, json!({ "topicArn": topic, "label": label, "aWSAccountId": account_ids, "actionName": actions }))
        }
        Op::RemoveTopicPermission { topic, label } => (SNS, false, json!({ "topicArn": topic, "label": label })),
        Op::TagTopic { topic, tags } => (SNS, false, json!({ "resourceArn": topic, "tags": keys(tags) })),
        Op::UntagTopic { topic, keys } => (SNS, false, json!({ "resourceArn": topic, "tagKeys": keys })),
        Op::ListTopicTags { topic } => (SNS, false, json!({ "resourceArn": topic })),
        Op::DescribeLimits | Op::DescribeAccountSettings => (KINESIS, false, json!({})),
        Op::StartMessageMoveTask { source_arn, destination_arn, max_per_second } => (
            SQS,
            false,
            json!({ "sourceArn": source_arn, "destinationArn": destination_arn, "maxNumberOfMessagesPerSecond": max_per_second }),
        ),
        Op::CancelMessageMoveTask { .. } => (SQS, false, json!({})),
        Op::ListMessageMoveTasks { source_arn, max_results } => (SQS, false, json!({ "sourceArn": source_arn, "maxResults": max_results })),
        Op::SetStreamEncryption { stream, encryption_type, key, .. } => {
            (KINESIS, false, json!({ "streamName": stream, "encryptionType": encryption_type, "keyId": key }))
        }
        // Key service calls are management events, as in CloudTrail (the cryptographic ones
        // too); no plaintext or ciphertext is ever recorded.
        Op::PutMetricAlarm(alarm) => (
            CLOUDWATCH,
            false,
            json!({ "alarmName": alarm.name, "namespace": alarm.metric.namespace, "metricName": alarm.metric.metric_name, "alarmActions": alarm.alarm_actions }),
        ),
        Op::DescribeAlarms { names, name_prefix, state, .. } => {
            (CLOUDWATCH, false, json!({ "alarmNames": names, "alarmNamePrefix": name_prefix, "stateValue": state }))
        }
        Op::DeleteAlarms { names } | Op::SetAlarmActions { names, .. } => (CLOUDWATCH, false, json!({ "alarmNames": names })),
        Op::SetAlarmState { name, state, reason, .. } => {
            (CLOUDWATCH, false, json!({ "alarmName": name, "stateValue": state, "stateReason": reason }))
        }
        Op::GetMetricStatistics { metric, period_seconds, .. } => {
            (CLOUDWATCH, false, json!({ "namespace": metric.namespace, "metricName": metric.metric_name, "period": period_seconds }))
        }
        Op::GetMetricData { queries, .. } => (CLOUDWATCH, false, json!({ "queries": queries.len() })),
        Op::ListMetrics { namespace, metric_name, .. } => (CLOUDWATCH, false, json!({ "namespace": namespace, "metricName": metric_name })),
        Op::CreateDeliveryStream { name, tags, .. } => (FIREHOSE, false, json!({ "deliveryStreamName": name, "tags": keys(tags) })),
        Op::DeleteDeliveryStream { name, .. }
        | Op::DescribeDeliveryStream { name, .. }
        | Op::ListTagsForDeliveryStream { name, .. }
        | Op::UpdateDestination { name, .. } => (FIREHOSE, false, json!({ "deliveryStreamName": name })),
        Op::ListDeliveryStreams { stream_type, .. } => (FIREHOSE, false, json!({ "deliveryStreamType": stream_type })),
        Op::TagDeliveryStream { name, tags } => (FIREHOSE, false, json!({ "deliveryStreamName": name, "tags": keys(tags) })),
        Op::UntagDeliveryStream { name, keys } => (FIREHOSE, false, json!({ "deliveryStreamName": name, "tagKeys": keys })),
        Op::SetDeliveryStreamEncryption { name, key_type, key_arn, .. } => {
            (FIREHOSE, false, json!({ "deliveryStreamName": name, "keyType": key_type, "keyARN": key_arn }))
        }
        Op::PutFirehoseRecords { name, records, .. } => (FIREHOSE, true, json!({ "deliveryStreamName": name, "records": records.len() })),
        Op::CreateKey { description, tags, .. } => (KMS, false, json!({ "description": description, "tags": keys(tags) })),
        Op::DescribeKey { key }
        | Op::SetKeyEnabled { key, .. }
        | Op::CancelKeyDeletion { key }
        | Op::GetKeyRotationStatus { key }
        | Op::RotateKeyOnDemand { key } => (KMS, false, json!({ "keyId": key })),
        Op::ScheduleKeyDeletion { key, pending_window_days } => {
            (KMS, false, json!({ "keyId": key, "pendingWindowInDays": pending_window_days }))
        }
        Op::SetKeyRotation { key, period_days, .. } => (KMS, false, json!({ "keyId": key, "rotationPeriodInDays": period_days })),
        Op::ListKeys { limit, .. } => (KMS, false, json!({ "limit": limit })),
        Op::CreateAlias { alias, key, .. } => (KMS, false, json!({ "aliasName": alias, "targetKeyId": key })),
        Op::DeleteAlias { alias } => (KMS, false, json!({ "aliasName": alias })),
        Op::ListAliases { key, limit, .. } => (KMS, false, json!({ "keyId": key, "limit": limit })),
        Op::Encrypt { key, plaintext, context } => {
            (KMS, false, json!({ "keyId": key, "plaintextBytes": plaintext.len(), "encryptionContext": keys(context) }))
        }
        Op::Decrypt { key, context, .. } => (KMS, false, json!({ "keyId": key, "encryptionContext": keys(context) })),
        Op::GenerateDataKey { key, bytes, context, .. } => {
            (KMS, false, json!({ "keyId": key, "numberOfBytes": bytes, "encryptionContext": keys(context) }))
        }
        Op::PutResourcePolicy { resource_arn, .. } | Op::GetResourcePolicy { resource_arn } | Op::DeleteResourcePolicy { resource_arn } => {
            (KINESIS, false, json!({ "resourceARN": resource_arn }))
        }
        Op::GetQueueAttributes { queue, names } => (SQS, false, json!({ "queueUrl": queue, "attributeNames": names })),
        Op::SetQueueAttributes { queue, attributes } => (SQS, false, json!({ "queueUrl": queue, "attributes": keys(attributes) })),
        Op::TagQueue { queue, tags } => (SQS, false, json!({ "queueUrl": queue, "tags": keys(tags) })),
        Op::UntagQueue { queue, keys } => (SQS, false, json!({ "queueUrl": queue, "tagKeys": keys })),
        Op::ListDeadLetterSourceQueues { queue, max_results, .. } => (SQS, false, json!({ "queueUrl": queue, "maxResults": max_results })),
        Op::SendMessage { queue, entry } => {
            (SQS, true, json!({ "queueUrl": queue, "bodyBytes": entry.body.len(), "delaySeconds": entry.delay_seconds }))
        }
        Op::SendMessageBatch { queue, entries } => (SQS, true, json!({ "queueUrl": queue, "entries": entries.len() })),
        Op::ReceiveMessage(receive) => (
            SQS,
            true,
            json!({
                "queueUrl": receive.queue,
                "maxNumberOfMessages": receive.max_messages,
                "waitTimeSeconds": receive.wait_time_seconds,
                "visibilityTimeout": receive.visibility_timeout,
            }),
        ),
        Op::DeleteMessage { queue, .. } => (SQS, true, json!({ "queueUrl": queue })),
        Op::DeleteMessageBatch { queue, entries } => (SQS, true, json!({ "queueUrl": queue, "entries": entries.len() })),
        Op::ChangeMessageVisibility { queue, visibility_timeout, .. } => {
            (SQS, true, json!({ "queueUrl": queue, "visibilityTimeout": visibility_timeout }))
        }
        Op::ChangeMessageVisibilityBatch { queue, entries } => (SQS, true, json!({ "queueUrl": queue, "entries": entries.len() })),
        Op::CreateTopic { name, attributes, tags } => {
            (SNS, false, json!({ "name": name, "attributes": keys(attributes), "tags": keys(tags) }))
        }
        Op::DeleteTopic { topic } | Op::GetTopicAttributes { topic } => (SNS, false, json!({ "topicArn": topic })),
        Op::ListTopics { .. } => (SNS, false, json!({})),
        Op::SetTopicAttributes { topic, name, .. } => (SNS, false, json!({ "topicArn": topic, "attributeName": name })),
        Op::Subscribe { topic, protocol, endpoint, attributes, .. } => {
            (SNS, false, json!({ "topicArn": topic, "protocol": protocol, "endpoint": endpoint, "attributes": keys(attributes) }))
        }
        Op::ConfirmSubscription { topic, authenticate_on_unsubscribe, .. } => {
            (SNS, false, json!({ "topicArn": topic, "authenticateOnUnsubscribe": authenticate_on_unsubscribe }))
        }
        Op::Unsubscribe { subscription } | Op::GetSubscriptionAttributes { subscription } => {
            (SNS, false, json!({ "subscriptionArn": subscription }))
        }
        Op::ListSubscriptions { topic, .. } => (SNS, false, json!({ "topicArn": topic })),
        Op::SetSubscriptionAttributes { subscription, name, .. } => {
            (SNS, false, json!({ "subscriptionArn": subscription, "attributeName": name }))
        }
        Op::Publish { topic, entry } => (SNS, true, json!({ "topicArn": topic, "messageBytes": entry.message.len() })),
        Op::PublishBatch { topic, entries } => (SNS, true, json!({ "topicArn": topic, "entries": entries.len() })),
        Op::SetEnhancedMonitoring { stream, metrics, .. } => {
            (KINESIS, false, json!({ "streamName": stream, "shardLevelMetrics": metrics }))
        }
        Op::UpdateStreamMode { stream, mode } => (KINESIS, false, json!({ "streamARN": stream, "streamMode": mode })),
        Op::UpdateMaxRecordSize { stream, max_record_size_kib } => {
            (KINESIS, false, json!({ "streamName": stream, "maxRecordSizeInKiB": max_record_size_kib }))
        }
        Op::CreateStream { name, shard_count, mode, tags, .. } => {
            (KINESIS, false, json!({ "streamName": name, "shardCount": shard_count, "streamMode": mode, "tags": keys(tags) }))
        }
        Op::DeleteStream { stream, enforce_consumer_deletion } => {
            (KINESIS, false, json!({ "streamName": stream, "enforceConsumerDeletion": enforce_consumer_deletion }))
        }
        Op::DescribeStream { stream, limit, .. } => (KINESIS, false, json!({ "streamName": stream, "limit": limit })),
        Op::DescribeStreamSummary { stream } => (KINESIS, false, json!({ "streamName": stream })),
        Op::ListStreams { limit, .. } => (KINESIS, false, json!({ "limit": limit })),
        Op::ListShards(list) => (KINESIS, false, json!({ "streamName": list.stream, "maxResults": list.max_results })),
        Op::PutRecord { stream, record, .. } => (KINESIS, true, json!({ "streamName": stream, "dataBytes": record.data.len() })),
        Op::PutRecords { stream, records } => (KINESIS, true, json!({ "streamName": stream, "records": records.len() })),
        Op::GetShardIterator { stream, shard_id, position } => {
            (KINESIS, true, json!({ "streamName": stream, "shardId": shard_id, "shardIteratorType": position.kind }))
        }
        Op::GetRecords { limit, .. } => (KINESIS, true, json!({ "limit": limit })),
        Op::IncreaseStreamRetentionPeriod { stream, hours } | Op::DecreaseStreamRetentionPeriod { stream, hours } => {
            (KINESIS, false, json!({ "streamName": stream, "retentionPeriodHours": hours }))
        }
        Op::SplitShard { stream, shard_to_split, .. } => (KINESIS, false, json!({ "streamName": stream, "shardToSplit": shard_to_split })),
        Op::MergeShards { stream, shard_to_merge, adjacent_shard_to_merge } => (
            KINESIS,
            false,
            json!({ "streamName": stream, "shardToMerge": shard_to_merge, "adjacentShardToMerge": adjacent_shard_to_merge }),
        ),
        Op::UpdateShardCount { stream, target_shard_count, scaling_type } => {
            (KINESIS, false, json!({ "streamName": stream, "targetShardCount": target_shard_count, "scalingType": scaling_type }))
        }
        Op::AddTagsToStream { stream, tags } => (KINESIS, false, json!({ "streamName": stream, "tags": keys(tags) })),
        Op::RemoveTagsFromStream { stream, keys } => (KINESIS, false, json!({ "streamName": stream, "tagKeys": keys })),
        Op::ListTagsForStream { stream, limit, .. } => (KINESIS, false, json!({ "streamName": stream, "limit": limit })),
        Op::RegisterStreamConsumer { stream, name } => (KINESIS, false, json!({ "streamARN": stream, "consumerName": name })),
        Op::DeregisterStreamConsumer(consumer) | Op::DescribeStreamConsumer(consumer) => {
            (KINESIS, false, json!({ "streamARN": consumer.stream, "consumerName": consumer.name, "consumerARN": consumer.consumer_arn }))
        }
        Op::ListStreamConsumers { stream, max_results, .. } => (KINESIS, false, json!({ "streamARN": stream, "maxResults": max_results })),
        Op::LeaseShards { consumer_arn, worker, max_leases } => {
            (KINESIS, true, json!({ "consumerARN": consumer_arn, "worker": worker, "maxLeases": max_leases }))
        }
        Op::CheckpointShard { consumer_arn, worker, shard_id, sequence_number, .. } => (
            KINESIS,
            true,
            json!({ "consumerARN": consumer_arn, "worker": worker, "shardId": shard_id, "sequenceNumber": sequence_number }),
        ),
        Op::ReleaseShards { consumer_arn, worker, shard_ids } => {
            (KINESIS, true, json!({ "consumerARN": consumer_arn, "worker": worker, "shardIds": shard_ids }))
        }
        Op::DescribeConsumerGroup { consumer_arn } => (KINESIS, false, json!({ "consumerARN": consumer_arn })),
        Op::SubscribeToShard { consumer_arn, shard_id, position } => {
            (KINESIS, true, json!({ "consumerARN": consumer_arn, "shardId": shard_id, "startingPosition": { "type": position.kind } }))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sluice_protocol::{ErrorCode, SendEntry};

    fn caller() -> Caller {
        Caller { ip: Some("127.0.0.1".parse().unwrap()), agent: "tests".into(), via: "binary", ..Caller::default() }
    }

    #[test]
    fn a_line_is_cloudtrails_shape_without_the_body() {
        let (sink, _) = (Sink { lines: std::sync::mpsc::sync_channel(1).0, data_events: true, dropped: Default::default() }, ());
        let op = Op::SendMessage {
            queue: "orders".into(),
            entry: SendEntry { body: Bytes::from_static(b"secret body"), ..SendEntry::default() },
        };
        let described = sink.describe(&op).expect("a data event, recorded when asked");
        let error = OpError::new(ErrorCode::QueueDoesNotExist, "The specified queue does not exist.");
        let bytes = line(described, &caller(), &Err(error), "us-east-1", "000000000000", SystemTime::UNIX_EPOCH);
        assert!(bytes.ends_with(b"\n"));
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("secret body"), "{text}");
        let event: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(event["eventSource"], "sqs.amazonaws.com");
        assert_eq!(event["eventName"], "SendMessage");
        assert_eq!(event["eventTime"], "1970-01-01T00:00:00Z");
        assert_eq!(event["sourceIPAddress"], "127.0.0.1");
        assert_eq!(event["errorCode"], ErrorCode::QueueDoesNotExist.to_string());
        assert_eq!(event["requestParameters"]["queueUrl"], "orders");
        assert_eq!(event["requestParameters"]["bodyBytes"], 11);
        assert_eq!((event["eventCategory"].as_str(), event["managementEvent"].as_bool()), (Some("Data"), Some(false)));
    }

    #[test]
    fn a_signed_call_names_its_principal() {
        let principal = crate::credentials::Principal {
            access_key_id: "AKIAALICE".into(),
            secret_access_key: "never-in-the-log-0123".into(),
            account_id: "111122223333".into(),
            arn: "arn:aws:iam::111122223333:user/alice".into(),
            policies: None,
        };
        let caller = Caller { principal: Some(Arc::new(principal)), via: "http", ..caller() };
        let sink = Sink { lines: std::sync::mpsc::sync_channel(1).0, data_events: false, dropped: Default::default() };
        let described = sink.describe(&Op::DeleteQueue { queue: "q".into() }).unwrap();
        let text =
            String::from_utf8(line(described, &caller, &Ok(Reply::Done), "us-east-1", "000000000000", SystemTime::UNIX_EPOCH)).unwrap();
        assert!(!text.contains("never-in-the-log"));
        let event: Value = serde_json::from_str(&text).unwrap();
        let identity = &event["userIdentity"];
        assert_eq!((identity["type"].as_str(), identity["userName"].as_str()), (Some("IAMUser"), Some("alice")));
        assert_eq!((identity["accessKeyId"].as_str(), identity["accountId"].as_str()), (Some("AKIAALICE"), Some("111122223333")));
    }

    #[test]
    fn data_calls_only_when_asked_and_never_hello() {
        let sink = Sink { lines: std::sync::mpsc::sync_channel(1).0, data_events: false, dropped: Default::default() };
        assert!(sink.describe(&Op::DeleteMessage { queue: "q".into(), receipt_handle: "h".into() }).is_none());
        assert!(sink.describe(&Op::Hello { protocol_version: 1, client_name: "c".into() }).is_none());
        assert!(sink.describe(&Op::DeleteQueue { queue: "q".into() }).is_some());
    }
}
