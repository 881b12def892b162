//! Kinesis over HTTP: AWS JSON 1.1 (`X-Amz-Target: Kinesis_20131202.<Action>`), record data
//! as base64, timestamps as epoch seconds. SubscribeToShard answers with AWS's event-stream
//! encoding (`application/vnd.amazon.eventstream`): an `initial-response` event, then one
//! `SubscribeToShardEvent` per push, then the end of the body.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};
use sluice_protocol::{
    ChildShard, ConsumerDescription, ConsumerRef, ErrorCode, ListShards, Op, OpError, PutRecordResult, PutRecordsEntry, Reply,
    ShardDescription, ShardEvent, StartingPosition, StreamDescription, StreamRecord,
};

use super::params::Params;

const STREAM: &[&str] = &["StreamARN", "StreamName"];

pub fn op_from(action: &str, p: Params<'_>) -> Result<Op, OpError> {
    let stream = || p.required_any(STREAM);
    Ok(match action {
        "CreateStream" => Op::CreateStream {
            name: p.required("StreamName")?,
            max_record_size_kib: p.int("MaxRecordSizeInKiB")?,
            shard_count: p.int("ShardCount")?,
            mode: match p.object("StreamModeDetails")? {
                Some(details) => details.string("StreamMode")?,
                None => None,
            },
            tags: p.string_map("Tags")?,
        },
        "DeleteStream" => {
            Op::DeleteStream { stream: stream()?, enforce_consumer_deletion: p.bool("EnforceConsumerDeletion")?.unwrap_or(false) }
        }
        "DescribeStream" => {
            Op::DescribeStream { stream: stream()?, limit: p.int("Limit")?, exclusive_start_shard_id: p.string("ExclusiveStartShardId")? }
        }
        "DescribeStreamSummary" => Op::DescribeStreamSummary { stream: stream()? },
        "ListStreams" => Op::ListStreams {
            limit: p.int("Limit")?,
            exclusive_start_stream_name: p.string("ExclusiveStartStreamName")?,
            next_token: p.string("NextToken")?,
        },
        "ListShards" => {
            let filter = p.object("ShardFilter")?;
            Op::ListShards(ListShards {
                stream: match p.string("StreamARN")? {
                    Some(arn) => Some(arn),
                    None => p.string("StreamName")?,
                },
                next_token: p.string("NextToken")?,
                exclusive_start_shard_id: p.string("ExclusiveStartShardId")?,
                max_results: p.int("MaxResults")?,
                filter_type: filter.map(|f| f.required("Type")).transpose()?,
                filter_shard_id: filter.map(|f| f.string("ShardId")).transpose()?.flatten(),
                filter_timestamp_ms: filter.map(|f| f.timestamp_ms("Timestamp")).transpose()?.flatten(),
            })
        }
        "PutRecord" => {
            Op::PutRecord { stream: stream()?, record: record(p)?, sequence_number_for_ordering: p.string("SequenceNumberForOrdering")? }
        }
        "PutRecords" => {
            Op::PutRecords { stream: stream()?, records: p.objects("Records")?.into_iter().map(record).collect::<Result<_, _>>()? }
        }
        "GetShardIterator" => Op::GetShardIterator {
            stream: stream()?,
            shard_id: p.required("ShardId")?,
            position: StartingPosition {
                kind: p.required("ShardIteratorType")?,
                sequence_number: p.string("StartingSequenceNumber")?,
                timestamp_ms: p.timestamp_ms("Timestamp")?,
            },
        },
        "GetRecords" => {
            Op::GetRecords { iterator: p.required("ShardIterator")?, limit: p.int("Limit")?, stream_arn: p.string("StreamARN")? }
        }
        "IncreaseStreamRetentionPeriod" => {
            Op::IncreaseStreamRetentionPeriod { stream: stream()?, hours: p.required_int("RetentionPeriodHours")? }
        }
        "DecreaseStreamRetentionPeriod" => {
            Op::DecreaseStreamRetentionPeriod { stream: stream()?, hours: p.required_int("RetentionPeriodHours")? }
        }
        "SplitShard" => Op::SplitShard {
            stream: stream()?,
            shard_to_split: p.required("ShardToSplit")?,
            new_starting_hash_key: p.required("NewStartingHashKey")?,
        },
        "MergeShards" => Op::MergeShards {
            stream: stream()?,
            shard_to_merge: p.required("ShardToMerge")?,
            adjacent_shard_to_merge: p.required("AdjacentShardToMerge")?,
        },
        "UpdateShardCount" => Op::UpdateShardCount {
            stream: stream()?,
            target_shard_count: p.required_int("TargetShardCount")?,
            scaling_type: p.string("ScalingType")?,
        },
        "AddTagsToStream" => Op::AddTagsToStream { stream: stream()?, tags: p.string_map("Tags")? },
        "RemoveTagsFromStream" => Op::RemoveTagsFromStream { stream: stream()?, keys: p.strings("TagKeys")? },
        // Tags by ARN (the newer API) are a stream's tags; consumers take none here.
        "TagResource" => Op::AddTagsToStream { stream: tagged(p)?, tags: p.string_map("Tags")? },
        "UntagResource" => Op::RemoveTagsFromStream { stream: tagged(p)?, keys: p.strings("TagKeys")? },
        "ListTagsForResource" => Op::ListTagsForStream { stream: tagged(p)?, exclusive_start_tag_key: None, limit: None },
        "UpdateStreamMode" => Op::UpdateStreamMode {
            stream: p.required("StreamARN")?,
            mode: p
                .object("StreamModeDetails")?
                .ok_or_else(|| OpError::new(ErrorCode::Validation, "StreamModeDetails is required"))?
                .required("StreamMode")?,
        },
        "EnableEnhancedMonitoring" | "DisableEnhancedMonitoring" => Op::SetEnhancedMonitoring {
            stream: stream()?,
            metrics: p.strings("ShardLevelMetrics")?,
            enable: action == "EnableEnhancedMonitoring",
        },
        "UpdateMaxRecordSize" => {
            Op::UpdateMaxRecordSize { stream: p.required("StreamARN")?, max_record_size_kib: p.required_int("MaxRecordSizeInKiB")? }
        }
        "StartStreamEncryption" | "StopStreamEncryption" => Op::SetStreamEncryption {
            stream: stream()?,
            encryption_type: p.required("EncryptionType")?,
            key: p.required("KeyId")?,
            start: action == "StartStreamEncryption",
        },
        "DescribeLimits" => Op::DescribeLimits,
        "DescribeAccountSettings" => Op::DescribeAccountSettings,
        "PutResourcePolicy" => Op::PutResourcePolicy { resource_arn: p.required("ResourceARN")?, policy: p.required("Policy")? },
        "GetResourcePolicy" => Op::GetResourcePolicy { resource_arn: p.required("ResourceARN")? },
        "DeleteResourcePolicy" => Op::DeleteResourcePolicy { resource_arn: p.required("ResourceARN")? },
        "ListTagsForStream" => {
            Op::ListTagsForStream { stream: stream()?, exclusive_start_tag_key: p.string("ExclusiveStartTagKey")?, limit: p.int("Limit")? }
        }
        "RegisterStreamConsumer" => {
            if !p.string_map("Tags")?.is_empty() {
                return Err(OpError::new(ErrorCode::InvalidParameterValue, "Tags of stream consumers are not supported by this server."));
            }
            Op::RegisterStreamConsumer { stream: p.required("StreamARN")?, name: p.required("ConsumerName")? }
        }
        "DeregisterStreamConsumer" => Op::DeregisterStreamConsumer(consumer(p)?),
        "DescribeStreamConsumer" => Op::DescribeStreamConsumer(consumer(p)?),
        "ListStreamConsumers" => Op::ListStreamConsumers {
            stream: p.required("StreamARN")?,
            next_token: p.string("NextToken")?,
            max_results: p.int("MaxResults")?,
        },
        "SubscribeToShard" => {
            let start = p.object("StartingPosition")?.ok_or_else(|| OpError::new(ErrorCode::Validation, "StartingPosition is required"))?;
            Op::SubscribeToShard {
                consumer_arn: p.required("ConsumerARN")?,
                shard_id: p.required("ShardId")?,
                position: StartingPosition {
                    kind: start.required("Type")?,
                    sequence_number: start.string("SequenceNumber")?,
                    timestamp_ms: start.timestamp_ms("Timestamp")?,
                },
            }
        }
        other => return Err(OpError::new(ErrorCode::InvalidAction, format!("The action {other} is not valid for this endpoint."))),
    })
}

fn record(p: Params<'_>) -> Result<PutRecordsEntry, OpError> {
    Ok(PutRecordsEntry {
        data: p.blob("Data")?.ok_or_else(|| OpError::new(ErrorCode::Validation, "Data is required"))?,
        partition_key: p.required("PartitionKey")?,
        explicit_hash_key: p.string("ExplicitHashKey")?,
    })
}

fn consumer(p: Params<'_>) -> Result<ConsumerRef, OpError> {
    Ok(ConsumerRef { stream: p.string("StreamARN")?, name: p.string("ConsumerName")?, consumer_arn: p.string("ConsumerARN")? })
}

/// Epoch seconds with milliseconds, as the JSON protocols carry timestamps.
fn seconds(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn shard_json(shard: &ShardDescription) -> Value {
    let mut out = Map::new();
    out.insert("ShardId".into(), json!(shard.shard_id));
    if let Some(parent) = &shard.parent_shard_id {
        out.insert("ParentShardId".into(), json!(parent));
    }
    if let Some(adjacent) = &shard.adjacent_parent_shard_id {
        out.insert("AdjacentParentShardId".into(), json!(adjacent));
    }
    out.insert("HashKeyRange".into(), json!({ "StartingHashKey": shard.starting_hash_key, "EndingHashKey": shard.ending_hash_key }));
    let mut range = Map::new();
    range.insert("StartingSequenceNumber".into(), json!(shard.starting_sequence_number));
    if let Some(ending) = &shard.ending_sequence_number {
        range.insert("EndingSequenceNumber".into(), json!(ending));
    }
    out.insert("SequenceNumberRange".into(), Value::Object(range));
    Value::Object(out)
}

fn stream_json(stream: &StreamDescription, summary: bool) -> Value {
    let mut out = Map::new();
    out.insert("StreamName".into(), json!(stream.name));
    out.insert("StreamARN".into(), json!(stream.arn));
    out.insert("StreamStatus".into(), json!(stream.status));
    out.insert("StreamModeDetails".into(), json!({ "StreamMode": stream.mode }));
    out.insert("RetentionPeriodHours".into(), json!(stream.retention_hours));
    out.insert("StreamCreationTimestamp".into(), seconds(stream.created_ms));
    out.insert("EnhancedMonitoring".into(), json!([{ "ShardLevelMetrics": stream.shard_level_metrics }]));
    match &stream.encryption_key {
        Some(key) => {
            out.insert("EncryptionType".into(), json!("KMS"));
            out.insert("KeyId".into(), json!(key));
        }
        None => {
            out.insert("EncryptionType".into(), json!("NONE"));
        }
    }
    if summary {
        out.insert("OpenShardCount".into(), json!(stream.open_shard_count));
        out.insert("ConsumerCount".into(), json!(stream.consumer_count));
        out.insert("MaxRecordSizeInKiB".into(), json!(stream.max_record_size_kib));
    } else {
        out.insert("Shards".into(), Value::Array(stream.shards.iter().map(shard_json).collect()));
        out.insert("HasMoreShards".into(), json!(stream.has_more_shards));
    }
    Value::Object(out)
}

fn record_json(record: &StreamRecord) -> Value {
    json!({
        "SequenceNumber": record.sequence_number,
        "ApproximateArrivalTimestamp": seconds(record.arrival_ms),
        "Data": STANDARD.encode(&record.data),
        "PartitionKey": record.partition_key,
        "EncryptionType": if record.encrypted { "KMS" } else { "NONE" },
    })
}

fn child_json(child: &ChildShard) -> Value {
    json!({
        "ShardId": child.shard_id,
        "ParentShards": child.parent_shards,
        "HashKeyRange": { "StartingHashKey": child.starting_hash_key, "EndingHashKey": child.ending_hash_key },
    })
}

fn consumer_json(consumer: &ConsumerDescription, with_stream: bool) -> Value {
    let mut out = json!({
        "ConsumerName": consumer.name,
        "ConsumerARN": consumer.arn,
        "ConsumerStatus": consumer.status,
        "ConsumerCreationTimestamp": seconds(consumer.created_ms),
    });
    if with_stream {
        out["StreamARN"] = json!(consumer.stream_arn);
    }
    out
}

/// The stream a tag call by ARN names (`ResourceARN`: a stream's; a consumer's is refused).
fn tagged(p: Params<'_>) -> Result<String, OpError> {
    let arn = p.required("ResourceARN")?;
    if arn.contains("/consumer/") {
        return Err(OpError::new(ErrorCode::InvalidParameterValue, "Tags of stream consumers are not supported by this server."));
    }
    if !arn.starts_with("arn:") || !arn.contains(":stream/") {
        return Err(OpError::new(ErrorCode::InvalidParameterValue, format!("ResourceARN {arn} is not a stream ARN.")));
    }
    Ok(arn)
}

/// The AWS JSON 1.1 answer to a successful action; `encrypted`: the stream a put went to is
/// encrypted (PutRecord and PutRecords answer its `EncryptionType`).
pub fn json_reply(action: &str, reply: Reply, encrypted: bool) -> Value {
    let encryption_type = if encrypted { "KMS" } else { "NONE" };
    match reply {
        Reply::Attributes(pairs) if action == "DescribeLimits" => {
            let number =
                |name: &str| pairs.iter().find(|(key, _)| key == name).and_then(|(_, value)| value.parse::<u64>().ok()).unwrap_or(0);
            json!({
                "ShardLimit": number("ShardLimit"),
                "OpenShardCount": number("OpenShardCount"),
                "OnDemandStreamCount": number("OnDemandStreamCount"),
                "OnDemandStreamCountLimit": number("OnDemandStreamCountLimit"),
            })
        }
        Reply::Attributes(pairs) if action == "DescribeAccountSettings" => {
            let status = pairs.into_iter().next().map(|(_, status)| status).unwrap_or_else(|| "DISABLED".into());
            json!({ "MinimumThroughputBillingCommitment": { "Status": status } })
        }
        Reply::Attributes(pairs) if action == "GetResourcePolicy" => {
            let policy = pairs.into_iter().find(|(name, _)| name == "Policy").map(|(_, text)| text).unwrap_or_else(|| "{}".into());
            json!({ "Policy": policy })
        }
        Reply::StreamDescription(stream) => {
            if action == "DescribeStreamSummary" {
                json!({ "StreamDescriptionSummary": stream_json(&stream, true) })
            } else {
                json!({ "StreamDescription": stream_json(&stream, false) })
            }
        }
        Reply::Streams { streams, has_more, next_token } => {
            let mut out = Map::new();
            out.insert("StreamNames".into(), json!(streams.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()));
            out.insert("HasMoreStreams".into(), json!(has_more));
            if let Some(token) = next_token {
                out.insert("NextToken".into(), json!(token));
            }
            let summaries: Vec<Value> = streams
                .iter()
                .map(|s| {
                    json!({
                        "StreamName": s.name,
                        "StreamARN": s.arn,
                        "StreamStatus": s.status,
                        "StreamModeDetails": { "StreamMode": s.mode },
                        "StreamCreationTimestamp": seconds(s.created_ms),
                    })
                })
                .collect();
            out.insert("StreamSummaries".into(), Value::Array(summaries));
            Value::Object(out)
        }
        Reply::Shards { shards, next_token } => {
            let mut out = Map::new();
            out.insert("Shards".into(), Value::Array(shards.iter().map(shard_json).collect()));
            if let Some(token) = next_token {
                out.insert("NextToken".into(), json!(token));
            }
            Value::Object(out)
        }
        Reply::PutRecord(PutRecordResult::Put { shard_id, sequence_number }) => {
            json!({ "ShardId": shard_id, "SequenceNumber": sequence_number, "EncryptionType": encryption_type })
        }
        Reply::PutRecords { failed_record_count, records } => {
            let records: Vec<Value> = records
                .iter()
                .map(|result| match result {
                    PutRecordResult::Put { shard_id, sequence_number } => json!({ "ShardId": shard_id, "SequenceNumber": sequence_number }),
                    PutRecordResult::Failed(error) => json!({ "ErrorCode": error.code.aws_name(), "ErrorMessage": error.message }),
                })
                .collect();
            let mut out = Map::new();
            out.insert("FailedRecordCount".into(), json!(failed_record_count));
            // Moved in: `json!` would copy every record's answer.
            out.insert("Records".into(), Value::Array(records));
            out.insert("EncryptionType".into(), json!(encryption_type));
            Value::Object(out)
        }
        Reply::ShardIterator(iterator) => json!({ "ShardIterator": iterator }),
        Reply::Records(result) => {
            let mut out = Map::new();
            out.insert("Records".into(), Value::Array(result.records.iter().map(record_json).collect()));
            if let Some(next) = result.next_iterator {
                out.insert("NextShardIterator".into(), json!(next));
            }
            out.insert("MillisBehindLatest".into(), json!(result.millis_behind_latest));
            if !result.child_shards.is_empty() {
                out.insert("ChildShards".into(), Value::Array(result.child_shards.iter().map(child_json).collect()));
            }
            Value::Object(out)
        }
        Reply::EnhancedMonitoring { stream_name, stream_arn, current, desired } => json!({
            "StreamName": stream_name,
            "StreamARN": stream_arn,
            "CurrentShardLevelMetrics": current,
            "DesiredShardLevelMetrics": desired,
        }),
        Reply::ShardCount { stream_name, stream_arn, current_shard_count, target_shard_count } => json!({
            "StreamName": stream_name,
            "StreamARN": stream_arn,
            "CurrentShardCount": current_shard_count,
            "TargetShardCount": target_shard_count,
        }),
        Reply::StreamTags { tags, .. } if action == "ListTagsForResource" => json!({
            "Tags": tags.iter().map(|(key, value)| json!({ "Key": key, "Value": value })).collect::<Vec<_>>(),
        }),
        Reply::StreamTags { tags, has_more } => json!({
            "Tags": tags.iter().map(|(key, value)| json!({ "Key": key, "Value": value })).collect::<Vec<_>>(),
            "HasMoreTags": has_more,
        }),
        Reply::StreamConsumer(consumer) => {
            if action == "RegisterStreamConsumer" {
                json!({ "Consumer": consumer_json(&consumer, false) })
            } else {
                json!({ "ConsumerDescription": consumer_json(&consumer, true) })
            }
        }
        Reply::StreamConsumers { consumers, next_token } => {
            let mut out = Map::new();
            out.insert("Consumers".into(), Value::Array(consumers.iter().map(|c| consumer_json(c, false)).collect()));
            if let Some(token) = next_token {
                out.insert("NextToken".into(), json!(token));
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

/// One push of a subscription as the JSON payload of a `SubscribeToShardEvent`.
pub fn event_json(event: &ShardEvent) -> Value {
    let mut out = Map::new();
    out.insert("Records".into(), Value::Array(event.records.iter().map(record_json).collect()));
    out.insert("ContinuationSequenceNumber".into(), json!(event.continuation_sequence_number));
    out.insert("MillisBehindLatest".into(), json!(event.millis_behind_latest));
    if !event.child_shards.is_empty() {
        out.insert("ChildShards".into(), Value::Array(event.child_shards.iter().map(child_json).collect()));
    }
    Value::Object(out)
}

/// One message of AWS's event-stream encoding: a prelude (total length, headers length,
/// CRC32 of both), string headers, the payload, and a CRC32 of everything before it.
pub fn event_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let headers_len: usize = headers.iter().map(|(name, value)| 1 + name.len() + 1 + 2 + value.len()).sum();
    let total = 12 + headers_len + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(headers_len as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    for (name, value) in headers {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        // Header value type 7: a string with a 16-bit length.
        out.push(7);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    out
}

/// An event of a SubscribeToShard answer.
pub fn event(event_type: &str, payload: &Value) -> Vec<u8> {
    let payload = payload.to_string();
    event_message(&[(":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")], payload.as_bytes())
}

/// An exception event that ends a SubscribeToShard answer.
pub fn exception(error: &OpError) -> Vec<u8> {
    let payload = json!({ "message": error.message }).to_string();
    event_message(
        &[(":exception-type", error.code.aws_name()), (":content-type", "application/json"), (":message-type", "exception")],
        payload.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_messages_carry_lengths_and_checksums() {
        let message = event_message(&[(":message-type", "event")], b"{}");
        let total = u32::from_be_bytes(message[0..4].try_into().unwrap()) as usize;
        let headers = u32::from_be_bytes(message[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, message.len());
        assert_eq!(headers, 1 + 13 + 1 + 2 + 5);
        assert_eq!(u32::from_be_bytes(message[8..12].try_into().unwrap()), crc32fast::hash(&message[..8]));
        assert_eq!(u32::from_be_bytes(message[total - 4..].try_into().unwrap()), crc32fast::hash(&message[..total - 4]));
        assert_eq!(&message[total - 6..total - 4], b"{}");
    }
}
