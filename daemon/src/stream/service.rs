//! Stream operations on a shard: control-plane changes go to shard 0's registry;
//! puts and reads go to the core that owns each stream shard.
//!
//! A PutRecords is split by owning core, each core's part is appended (and made
//! durable) there, one hop per core, all cores at once, and the answers are put back
//! in request order. A part that meets a shard closed by a reshard since the routing
//! snapshot is routed again once this core has the newer snapshot.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use sluice_protocol::limits::*;
use sluice_protocol::*;

use super::calls::{StreamAnswer, StreamCall, StreamLease, StreamLoad, StreamPut, StreamRead, StreamSeek};
use super::iterator::{decode_token, encode_token, ShardPosition};
use super::store::{split_record, ShardLog, SplitError};
use super::{call_on, StreamHost};
use crate::catalog::groups::GroupChange;
use crate::catalog::streams::{find_consumer, hash_of, parse_hash_key, parse_shard_id, resolve, StreamChange, StreamMeta, StreamOutcome};
use crate::catalog::{MetaChange, MetaOutcome, Registry, Snapshot};
use crate::kms::at_rest::Sealing;
use crate::storage::storage_error;

/// Times a put part is routed again after meeting a resharded shard.
const REROUTES_MAX: usize = 4;
/// How long a rerouted part waits for the newer snapshot.
const REROUTE_WAIT: Duration = Duration::from_secs(2);
/// How long a push subscription waits for records before sending an empty event.
const PUSH_IDLE: Duration = Duration::from_secs(5);
/// Bytes one push event carries at most.
const PUSH_EVENT_BYTES_MAX: usize = 2 * 1024 * 1024;

/// One record on its way to the core that owns its shard.
#[derive(Debug)]
pub struct PutItem {
    /// Position in the request.
    pub at: usize,
    pub shard: u32,
    pub partition_key: String,
    pub data: bytes::Bytes,
}

/// What became of one record on the owning core.
#[derive(Debug)]
pub enum PutOutcome {
    Put {
        at: usize,
        shard: u32,
        seq: u64,
    },
    /// The shard was closed by a reshard: route it again.
    Resharded(PutItem),
    Failed(usize, OpError),
}

/// Where a position-finding call looks.
#[derive(Debug, Clone, Copy)]
pub enum Seek {
    /// Just past the newest record.
    Latest,
    /// The first record that arrived at or after this time.
    Timestamp(u64),
    /// Seal the shard for a reshard; answers its last log sequence number.
    Seal,
}

/// A read of one shard, run on its owner.
#[derive(Debug, Clone, Copy)]
pub struct ReadRequest {
    pub stream_id: u64,
    pub shard: u32,
    pub from: u64,
    pub max_records: usize,
    pub max_bytes: usize,
    /// When nothing is readable, wait this long for records.
    pub wait_ms: u64,
    /// Apply the GetRecords rate limits (with --enforce-shard-limits).
    pub limited: bool,
    /// A push subscription's lease (consumer key, generation): the read fails once a newer
    /// subscription of the same consumer to the same shard has taken over.
    pub lease: Option<(u64, u64)>,
}

/// Takes (or, with `release`, gives back) the push-subscription lease of a consumer on a shard.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub stream_id: u64,
    pub shard: u32,
    pub consumer_key: u64,
    /// The generation to give back.
    pub release: Option<u64>,
}

#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub records: Vec<StreamRecord>,
    /// The next log sequence number to read.
    pub next: u64,
    pub millis_behind_latest: u64,
    /// The shard is closed and every record of it has been read.
    pub ended: bool,
}

/// Where push events go (a connection's outbound side).
pub trait EventSink {
    /// Sends one event; waits while the consumer is behind. False once the connection is gone.
    fn send(&self, response: &Response) -> impl std::future::Future<Output = bool>;
}

/// A record of the size asked for must fit one segment of a shard's log.
fn fits_a_segment<H: StreamHost>(host: &Rc<H>, kib: Option<i32>) -> Result<(), OpError> {
    let bytes = crate::catalog::streams::record_kib(kib)? as u64 * 1024;
    let segment = host.config().stream_segment_bytes;
    // The record's header and arrival time, and the partition key's length, besides.
    if bytes + 64 > segment {
        return Err(invalid(format!(
            "Records of {bytes} bytes do not fit this server's stream log segments of {segment} bytes: start sluiced with a larger --stream-segment-bytes."
        )));
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::InvalidArgument, message)
}

fn shard_gone(index: u32) -> OpError {
    OpError::new(
        ErrorCode::ResourceNotFound,
        format!("Shard {} does not exist (it may have expired).", crate::catalog::streams::shard_id(index)),
    )
}

fn stream_by_id(snapshot: &Snapshot, stream_id: u64) -> Result<&Arc<StreamMeta>, OpError> {
    snapshot
        .streams
        .values()
        .find(|meta| meta.id == stream_id)
        .ok_or_else(|| OpError::new(ErrorCode::ResourceNotFound, "The stream this iterator reads no longer exists."))
}

pub async fn handle_op<H: StreamHost>(host: &Rc<H>, op: Op) -> Response {
    match op {
        Op::CreateStream { name, shard_count, mode, tags, max_record_size_kib } => {
            fits_a_segment(host, max_record_size_kib)?;
            let change = StreamChange::Create { name, shard_count, mode, tags, max_record_kib: max_record_size_kib };
            stream_change(host, change).await.map(|_| Reply::Done)
        }
        Op::UpdateMaxRecordSize { stream, max_record_size_kib } => {
            fits_a_segment(host, Some(max_record_size_kib))?;
            stream_change(host, StreamChange::MaxRecordSize { stream, kib: max_record_size_kib }).await.map(|_| Reply::Done)
        }
        Op::SetEnhancedMonitoring { stream, metrics, enable } => {
            match stream_change(host, StreamChange::Monitoring { stream, metrics, enable }).await? {
                StreamOutcome::Monitoring { name, arn, current, desired } => {
                    Ok(Reply::EnhancedMonitoring { stream_name: name, stream_arn: arn, current, desired })
                }
                other => Err(OpError::new(ErrorCode::InternalFailure, format!("unexpected outcome of a monitoring change: {other:?}"))),
            }
        }
        Op::UpdateStreamMode { stream, mode } => stream_change(host, StreamChange::Mode { stream, mode }).await.map(|_| Reply::Done),
        Op::DeleteStream { stream, enforce_consumer_deletion } => {
            stream_change(host, StreamChange::Delete { stream, enforce_consumer_deletion }).await.map(|_| Reply::Done)
        }
        Op::DescribeStream { stream, limit, exclusive_start_shard_id } => {
            let limit = match limit {
                None => DESCRIBE_STREAM_SHARDS_MAX,
                Some(limit) if (1..=10_000).contains(&limit) => limit.min(DESCRIBE_STREAM_SHARDS_MAX),
                Some(limit) => return Err(invalid(format!("Limit {limit} must be from 1 to 10000."))),
            };
            let snapshot = host.snapshot();
            let meta = resolve(&snapshot.streams, &snapshot.naming, &stream)?;
            let after = exclusive_start_shard_id.as_deref().and_then(parse_shard_id);
            let mut description = meta.describe();
            let mut rows = meta.shards.iter().filter(|shard| after.is_none_or(|after| shard.index > after));
            description.shards = rows.by_ref().take(limit as usize).map(|shard| meta.describe_shard(shard)).collect();
            description.has_more_shards = rows.next().is_some();
            Ok(Reply::StreamDescription(description))
        }
        Op::DescribeStreamSummary { stream } => {
            let snapshot = host.snapshot();
            Ok(Reply::StreamDescription(resolve(&snapshot.streams, &snapshot.naming, &stream)?.describe()))
        }
        Op::ListStreams { limit, exclusive_start_stream_name, next_token } => {
            let now = host.env().now_ms();
            let limit = match limit {
                None => LIST_STREAMS_MAX,
                Some(limit) if (1..=10_000).contains(&limit) => limit.min(LIST_STREAMS_MAX),
                Some(limit) => return Err(invalid(format!("Limit {limit} must be from 1 to 10000."))),
            };
            let after = match (next_token, exclusive_start_stream_name) {
                (Some(_), Some(_)) => return Err(invalid("NextToken and ExclusiveStartStreamName cannot both be given.")),
                (Some(token), None) => Some(decode_token(&token, now, LIST_TOKEN_LIFETIME_MS, &host.config().seal_key)?),
                (None, after) => after,
            };
            let snapshot = host.snapshot();
            let mut rows = snapshot.streams.values().filter(|meta| after.as_ref().is_none_or(|after| &meta.name > after));
            let streams: Vec<StreamDescription> = rows.by_ref().take(limit as usize).map(|meta| meta.describe()).collect();
            let has_more = rows.next().is_some();
            let next_token = has_more.then(|| streams.last().map(|last| encode_token(&last.name, now, &host.config().seal_key))).flatten();
            Ok(Reply::Streams { streams, has_more, next_token })
        }
        Op::ListShards(list) => list_shards(host, list),
        Op::SetStreamEncryption { stream, encryption_type, key, start } => {
            if encryption_type != "KMS" {
                return Err(invalid(format!("EncryptionType {encryption_type:?} is not valid: it must be KMS.")));
            }
            if key.is_empty() || key.len() > 2048 {
                return Err(invalid("KeyId must be 1 to 2048 characters."));
            }
            if host.config().root_key.is_none() {
                return Err(invalid(
                    "This server has no key service, so nothing would be encrypted: start sluiced with --root-key-file \
                     (see the README's Encryption section).",
                ));
            }
            if start {
                // The key must be usable now (an AWS-managed one is made on first use).
                let reference = key.clone();
                crate::engine::sealable(host, move |snapshot| crate::catalog::seal_spec(&snapshot.keys, Some(&reference), false, 0))
                    .await?;
            }
            stream_change(host, StreamChange::Encryption { stream, key: start.then_some(key) }).await.map(|_| Reply::Done)
        }
        Op::PutRecord { stream, record, sequence_number_for_ordering } => {
            if let Some(text) = &sequence_number_for_ordering {
                if parse_hash_key(text).is_none() && !(text.len() <= 129 && text.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(invalid(format!("SequenceNumberForOrdering {text} is not a sequence number.")));
                }
            }
            let mut results = put_records(host, &stream, vec![record]).await?;
            match results.pop() {
                Some(PutRecordResult::Failed(error)) => Err(error),
                Some(result) => Ok(Reply::PutRecord(result)),
                None => Err(OpError::new(ErrorCode::InternalFailure, "the record was lost on its way")),
            }
        }
        Op::PutRecords { stream, records } => {
            let records = put_records(host, &stream, records).await?;
            let failed_record_count = records.iter().filter(|r| matches!(r, PutRecordResult::Failed(_))).count() as i32;
            Ok(Reply::PutRecords { failed_record_count, records })
        }
        Op::GetShardIterator { stream, shard_id, position } => {
            let snapshot = host.snapshot();
            let meta = resolve(&snapshot.streams, &snapshot.naming, &stream)?.clone();
            let shard = meta.shard_by_id(&shard_id)?.index;
            let next = start_position(host, &meta, shard, &position).await?;
            Ok(Reply::ShardIterator(
                ShardPosition { stream_id: meta.id, shard, next, issued_ms: host.env().now_ms() }.encode(&host.config().seal_key),
            ))
        }
        Op::GetRecords { iterator, limit, stream_arn } => get_records(host, &iterator, limit, stream_arn.as_deref()).await,
        Op::IncreaseStreamRetentionPeriod { stream, hours } => {
            stream_change(host, StreamChange::Retention { stream, hours, increase: true }).await.map(|_| Reply::Done)
        }
        Op::DecreaseStreamRetentionPeriod { stream, hours } => {
            stream_change(host, StreamChange::Retention { stream, hours, increase: false }).await.map(|_| Reply::Done)
        }
        Op::SplitShard { stream, shard_to_split, new_starting_hash_key } => {
            stream_change(host, StreamChange::Split { stream, shard: shard_to_split, new_starting_hash_key }).await.map(|_| Reply::Done)
        }
        Op::MergeShards { stream, shard_to_merge, adjacent_shard_to_merge } => {
            stream_change(host, StreamChange::Merge { stream, shard: shard_to_merge, adjacent: adjacent_shard_to_merge })
                .await
                .map(|_| Reply::Done)
        }
        Op::UpdateShardCount { stream, target_shard_count, scaling_type } => {
            match stream_change(host, StreamChange::UpdateShardCount { stream, target: target_shard_count, scaling_type }).await? {
                StreamOutcome::ShardCount { name, arn, current, target } => {
                    Ok(Reply::ShardCount { stream_name: name, stream_arn: arn, current_shard_count: current, target_shard_count: target })
                }
                _ => Err(OpError::new(ErrorCode::InternalFailure, "unexpected outcome of UpdateShardCount")),
            }
        }
        Op::DescribeLimits => {
            let snapshot = host.snapshot();
            let open: usize = snapshot.streams.values().map(|meta| meta.open_shards().count()).sum();
            let on_demand = snapshot.streams.values().filter(|meta| meta.mode == crate::catalog::streams::Mode::OnDemand).count();
            let shard_limit = host.config().stream_shards_max;
            // No cap of its own on on-demand streams: the shard quota caps them, each taking
            // its first shards from it.
            let on_demand_limit = shard_limit / sluice_protocol::limits::ON_DEMAND_SHARDS as usize;
            Ok(Reply::Attributes(vec![
                ("ShardLimit".into(), shard_limit.to_string()),
                ("OpenShardCount".into(), open.to_string()),
                ("OnDemandStreamCount".into(), on_demand.to_string()),
                ("OnDemandStreamCountLimit".into(), on_demand_limit.to_string()),
            ]))
        }
        // There is no billing here, so no minimum-throughput commitment either.
        Op::DescribeAccountSettings => Ok(Reply::Attributes(vec![("MinimumThroughputBillingCommitment".into(), "DISABLED".into())])),
        Op::PutResourcePolicy { resource_arn, policy } => {
            stream_change(host, StreamChange::Policy { resource_arn, policy: Some(policy) }).await.map(|_| Reply::Done)
        }
        Op::DeleteResourcePolicy { resource_arn } => {
            stream_change(host, StreamChange::Policy { resource_arn, policy: None }).await.map(|_| Reply::Done)
        }
        Op::GetResourcePolicy { resource_arn } => {
            let snapshot = host.snapshot();
            let target = crate::catalog::streams::policy_target(&resource_arn)?;
            let meta = resolve(&snapshot.streams, &snapshot.naming, target)?;
            // A stream without a policy answers an empty document, as Kinesis does.
            let text = meta.policy.as_ref().map_or("{}", |policy| policy.text.as_str());
            Ok(Reply::Attributes(vec![("Policy".into(), text.to_owned())]))
        }
        Op::AddTagsToStream { stream, tags } => stream_change(host, StreamChange::AddTags { stream, tags }).await.map(|_| Reply::Done),
        Op::RemoveTagsFromStream { stream, keys } => {
            stream_change(host, StreamChange::RemoveTags { stream, keys }).await.map(|_| Reply::Done)
        }
        Op::ListTagsForStream { stream, exclusive_start_tag_key, limit } => {
            let limit = match limit {
                None => STREAM_TAGS_MAX as i32,
                Some(limit) if (1..=STREAM_TAGS_MAX as i32).contains(&limit) => limit,
                Some(limit) => return Err(invalid(format!("Limit {limit} must be from 1 to {STREAM_TAGS_MAX}."))),
            };
            let snapshot = host.snapshot();
            let meta = resolve(&snapshot.streams, &snapshot.naming, &stream)?;
            let mut rows = meta.tags.iter().filter(|(key, _)| exclusive_start_tag_key.as_ref().is_none_or(|after| *key > after));
            let tags: KeyValues = rows.by_ref().take(limit as usize).map(|(k, v)| (k.clone(), v.clone())).collect();
            Ok(Reply::StreamTags { tags, has_more: rows.next().is_some() })
        }
        Op::RegisterStreamConsumer { stream, name } => match stream_change(host, StreamChange::RegisterConsumer { stream, name }).await? {
            StreamOutcome::Consumer(consumer) => Ok(Reply::StreamConsumer(consumer)),
            _ => Err(OpError::new(ErrorCode::InternalFailure, "unexpected outcome of RegisterStreamConsumer")),
        },
        Op::DeregisterStreamConsumer(consumer) => {
            stream_change(host, StreamChange::DeregisterConsumer(consumer)).await.map(|_| Reply::Done)
        }
        Op::DescribeStreamConsumer(consumer) => {
            let snapshot = host.snapshot();
            let (meta, at) = find_consumer(&snapshot.streams, &snapshot.naming, &consumer)?;
            Ok(Reply::StreamConsumer(meta.describe_consumer(&meta.consumers[at])))
        }
        Op::ListStreamConsumers { stream, next_token, max_results } => {
            let now = host.env().now_ms();
            let limit = match max_results {
                None => 100,
                Some(limit) if (1..=10_000).contains(&limit) => limit,
                Some(limit) => return Err(invalid(format!("MaxResults {limit} must be from 1 to 10000."))),
            };
            let after = next_token.map(|token| decode_token(&token, now, LIST_TOKEN_LIFETIME_MS, &host.config().seal_key)).transpose()?;
            let snapshot = host.snapshot();
            let meta = resolve(&snapshot.streams, &snapshot.naming, &stream)?;
            let mut rows = meta.consumers.iter().filter(|c| after.as_ref().is_none_or(|after| &c.name > after));
            let consumers: Vec<ConsumerDescription> = rows.by_ref().take(limit as usize).map(|c| meta.describe_consumer(c)).collect();
            let next_token = rows.next().and(consumers.last()).map(|last| encode_token(&last.name, now, &host.config().seal_key));
            Ok(Reply::StreamConsumers { consumers, next_token })
        }
        Op::SubscribeToShard { .. } => {
            Err(OpError::new(ErrorCode::InternalFailure, "SubscribeToShard is served by the connection, not as a single answer"))
        }
        Op::LeaseShards { consumer_arn, worker, max_leases } => {
            group_change(host, GroupChange::Lease { consumer_arn, worker, max_leases }).await
        }
        Op::CheckpointShard { consumer_arn, worker, shard_id, token, sequence_number } => {
            group_change(host, GroupChange::Checkpoint { consumer_arn, worker, shard_id, token, sequence_number }).await
        }
        Op::ReleaseShards { consumer_arn, worker, shard_ids } => {
            group_change(host, GroupChange::Release { consumer_arn, worker, shard_ids }).await
        }
        Op::DescribeConsumerGroup { consumer_arn } => group_change(host, GroupChange::Describe { consumer_arn }).await,
        other => Err(OpError::new(ErrorCode::InternalFailure, format!("{} is not a stream operation", other.name()))),
    }
}

/// A consumer group's change or question, answered by shard 0 (`catalog::groups`).
async fn group_change<H: StreamHost>(host: &Rc<H>, change: GroupChange) -> Response {
    match host.meta_change(MetaChange::Group(change)).await? {
        MetaOutcome::Leases(leases) => Ok(Reply::ShardLeases(leases)),
        MetaOutcome::Done => Ok(Reply::Done),
        other => Err(OpError::new(ErrorCode::InternalFailure, format!("unexpected outcome of a consumer group change: {other:?}"))),
    }
}

pub(super) async fn stream_change<H: StreamHost>(host: &Rc<H>, change: StreamChange) -> Result<StreamOutcome, OpError> {
    match host.meta_change(MetaChange::Stream { change, sealed: HashMap::new(), cores: host.count() }).await? {
        MetaOutcome::Stream(outcome) => Ok(outcome),
        other => Err(OpError::new(ErrorCode::InternalFailure, format!("unexpected outcome of a stream change: {other:?}"))),
    }
}

fn list_shards<H: StreamHost>(host: &Rc<H>, list: ListShards) -> Response {
    let now = host.env().now_ms();
    let limit = match list.max_results {
        None => LIST_SHARDS_MAX,
        Some(limit) if (1..=10_000).contains(&limit) => limit.min(LIST_SHARDS_MAX),
        Some(limit) => return Err(invalid(format!("MaxResults {limit} must be from 1 to 10000."))),
    };
    // A token carries the stream, the filter and the last shard listed.
    let (stream, after, filter_type, filter_shard, filter_ms) = match &list.next_token {
        Some(token) => {
            if list.stream.is_some() || list.exclusive_start_shard_id.is_some() {
                return Err(invalid("NextToken cannot be given with StreamName or ExclusiveStartShardId."));
            }
            let state = decode_token(token, now, LIST_TOKEN_LIFETIME_MS, &host.config().seal_key)?;
            let mut parts = state.split('\u{1f}');
            let mut next = || parts.next().map(str::to_owned).filter(|part| !part.is_empty());
            let stream = next().ok_or_else(|| invalid("NextToken is not valid."))?;
            let after = next().and_then(|id| parse_shard_id(&id));
            let filter_type = next();
            let filter_shard = next();
            let filter_ms = next().and_then(|ms| ms.parse::<i64>().ok());
            (stream, after, filter_type, filter_shard, filter_ms)
        }
        None => {
            let stream = list.stream.clone().ok_or_else(|| invalid("Either NextToken or StreamName must be given."))?;
            let after = list.exclusive_start_shard_id.as_deref().and_then(parse_shard_id);
            (stream, after, list.filter_type.clone(), list.filter_shard_id.clone(), list.filter_timestamp_ms)
        }
    };
    let snapshot = host.snapshot();
    let meta = resolve(&snapshot.streams, &snapshot.naming, &stream)?;
    let at_ms = |required: bool| -> Result<u64, OpError> {
        match filter_ms {
            Some(ms) if ms >= 0 => Ok(ms as u64),
            _ if !required => Ok(0),
            _ => Err(invalid("ShardFilter Timestamp is required for AT_TIMESTAMP and FROM_TIMESTAMP.")),
        }
    };
    let open_at =
        |shard: &crate::catalog::streams::ShardMeta, ms: u64| shard.created_ms <= ms && shard.closed.is_none_or(|(at, _)| at > ms);
    let horizon = meta.cutoff_ms(now).max(meta.created_ms);
    let filter: Box<dyn Fn(&crate::catalog::streams::ShardMeta) -> bool> = match filter_type.as_deref().unwrap_or("FROM_TRIM_HORIZON") {
        "FROM_TRIM_HORIZON" => Box::new(|_| true),
        "AT_TRIM_HORIZON" => Box::new(move |shard| open_at(shard, horizon)),
        "AT_LATEST" => Box::new(|shard| shard.is_open()),
        "AT_TIMESTAMP" => {
            let ms = at_ms(true)?.max(meta.created_ms);
            Box::new(move |shard| open_at(shard, ms))
        }
        "FROM_TIMESTAMP" => {
            let ms = at_ms(true)?.max(meta.created_ms);
            Box::new(move |shard| shard.closed.is_none_or(|(at, _)| at > ms))
        }
        "AFTER_SHARD_ID" => {
            let id = filter_shard.clone().ok_or_else(|| invalid("ShardFilter ShardId is required for AFTER_SHARD_ID."))?;
            let index = parse_shard_id(&id).ok_or_else(|| invalid(format!("ShardFilter ShardId {id} is not a shard id.")))?;
            Box::new(move |shard| shard.index > index)
        }
        other => return Err(OpError::new(ErrorCode::Validation, format!("ShardFilter Type {other} is not valid."))),
    };
    let mut rows = meta.shards.iter().filter(|shard| after.is_none_or(|after| shard.index > after)).filter(|shard| filter(shard));
    let shards: Vec<ShardDescription> = rows.by_ref().take(limit as usize).map(|shard| meta.describe_shard(shard)).collect();
    let next_token = rows.next().and(shards.last()).map(|last| {
        let state = [
            meta.name.as_str(),
            last.shard_id.as_str(),
            filter_type.as_deref().unwrap_or(""),
            filter_shard.as_deref().unwrap_or(""),
            &filter_ms.map(|ms| ms.to_string()).unwrap_or_default(),
        ]
        .join("\u{1f}");
        encode_token(&state, now, &host.config().seal_key)
    });
    Ok(Reply::Shards { shards, next_token })
}

/// The log sequence number a starting position names in `shard` (asking its owner
/// for LATEST and AT_TIMESTAMP).
async fn start_position<H: StreamHost>(host: &Rc<H>, meta: &StreamMeta, shard: u32, position: &StartingPosition) -> Result<u64, OpError> {
    let sequence = || {
        position
            .sequence_number
            .as_deref()
            .ok_or_else(|| invalid(format!("StartingSequenceNumber is required for {}.", position.kind)))
            .and_then(|text| meta.parse_sequence_number(shard, text))
    };
    match position.kind.as_str() {
        "TRIM_HORIZON" => Ok(0),
        "AT_SEQUENCE_NUMBER" => sequence(),
        "AFTER_SEQUENCE_NUMBER" => Ok(sequence()?.saturating_add(1)),
        "LATEST" => seek(host, meta, shard, Seek::Latest).await,
        "AT_TIMESTAMP" => {
            let ms = position.timestamp_ms.ok_or_else(|| invalid("Timestamp is required for AT_TIMESTAMP."))?;
            seek(host, meta, shard, Seek::Timestamp(ms.max(0) as u64)).await
        }
        other => Err(OpError::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value '{other}' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]"),
        )),
    }
}

async fn seek<H: StreamHost>(host: &Rc<H>, meta: &StreamMeta, shard: u32, seek: Seek) -> Result<u64, OpError> {
    let owner = meta.shard(shard).ok_or_else(|| shard_gone(shard))?.owner(host.count());
    call_on(host, owner, StreamSeek { stream_id: meta.id, shard, seek }).await?
}

async fn read_shard<H: StreamHost>(host: &Rc<H>, owner: usize, request: ReadRequest) -> Result<ReadOutcome, OpError> {
    call_on(host, owner, StreamRead(request)).await?
}

async fn get_records<H: StreamHost>(host: &Rc<H>, iterator: &str, limit: Option<i32>, stream_arn: Option<&str>) -> Response {
    let now = host.env().now_ms();
    let position = ShardPosition::decode(iterator, now, &host.config().seal_key)?;
    let max_records = match limit {
        None => GET_RECORDS_MAX,
        Some(limit) if (1..=GET_RECORDS_MAX).contains(&limit) => limit,
        Some(limit) => return Err(invalid(format!("Limit {limit} must be from 1 to {GET_RECORDS_MAX}."))),
    };
    let snapshot = host.snapshot();
    let meta = stream_by_id(&snapshot, position.stream_id)?.clone();
    if stream_arn.is_some_and(|arn| arn != meta.arn) {
        return Err(invalid(format!("The shard iterator is not of stream {}.", stream_arn.unwrap_or_default())));
    }
    let shard = meta.shard(position.shard).ok_or_else(|| shard_gone(position.shard))?;
    let request = ReadRequest {
        stream_id: meta.id,
        shard: shard.index,
        from: position.next,
        max_records: max_records as usize,
        max_bytes: GET_RECORDS_BYTES_MAX,
        wait_ms: 0,
        limited: true,
        lease: None,
    };
    let read = read_shard(host, shard.owner(host.count()), request).await?;
    let next_iterator = (!read.ended)
        .then(|| ShardPosition { next: read.next, issued_ms: host.env().now_ms(), ..position }.encode(&host.config().seal_key));
    let child_shards = if read.ended { meta.children(shard.index) } else { Vec::new() };
    Ok(Reply::Records(GetRecordsResult {
        records: read.records,
        next_iterator,
        millis_behind_latest: read.millis_behind_latest,
        child_shards,
    }))
}

/// Routes `records` to their shards' owners and answers in request order.
async fn put_records<H: StreamHost>(host: &Rc<H>, stream: &str, records: Vec<PutRecordsEntry>) -> Result<Vec<PutRecordResult>, OpError> {
    let (encrypted, record_bytes_max) = {
        let snapshot = host.snapshot();
        let meta = resolve(&snapshot.streams, &snapshot.naming, stream)?;
        (meta.encryption_key.is_some().then_some(meta.id), meta.max_record_kib as usize * 1024)
    };
    if let Some(id) = encrypted {
        let spec =
            |snapshot: &Snapshot| snapshot.streams.values().find(|meta| meta.id == id).and_then(|meta| snapshot.stream_sealing(meta));
        crate::engine::sealable(host, spec).await?;
    }
    if records.is_empty() || records.len() > PUT_RECORDS_MAX {
        return Err(OpError::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length between 1 and {PUT_RECORDS_MAX}, inclusive (it has {})", records.len()),
        ));
    }
    let mut hashes = Vec::with_capacity(records.len());
    let mut total = 0usize;
    for record in &records {
        let chars = record.partition_key.chars().count();
        if chars == 0 || chars > PARTITION_KEY_CHARS_MAX {
            return Err(OpError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value at 'partitionKey' failed to satisfy constraint: Member must have length between 1 and {PARTITION_KEY_CHARS_MAX}, inclusive"),
            ));
        }
        let size = record.data.len() + record.partition_key.len();
        if size > record_bytes_max {
            return Err(invalid(format!(
                "Record size {size} (data and partition key) exceeds the stream's maximum record size of {record_bytes_max} bytes (MaxRecordSizeInKiB)."
            )));
        }
        total += size;
        hashes.push(match &record.explicit_hash_key {
            Some(text) => parse_hash_key(text).ok_or_else(|| {
                invalid(format!("Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {text}"))
            })?,
            None => hash_of(&record.partition_key),
        });
    }
    if total > PUT_RECORDS_BYTES_MAX {
        return Err(invalid(format!("Records total {total} bytes, more than the {PUT_RECORDS_BYTES_MAX} bytes one PutRecords may carry.")));
    }
    let mut results: Vec<Option<PutRecordResult>> = (0..records.len()).map(|_| None).collect();
    let mut pending: Vec<PutItem> = records
        .into_iter()
        .enumerate()
        .map(|(at, record)| PutItem { at, shard: 0, partition_key: record.partition_key, data: record.data })
        .collect();
    for attempt in 0..=REROUTES_MAX {
        let snapshot = host.snapshot();
        let meta = resolve(&snapshot.streams, &snapshot.naming, stream)?.clone();
        if attempt == REROUTES_MAX {
            for item in pending.drain(..) {
                results[item.at] = Some(PutRecordResult::Failed(OpError::new(
                    ErrorCode::InternalFailure,
                    "The shard was resharded while this record was on its way; put it again.",
                )));
            }
            break;
        }
        let mut by_core: Vec<Vec<PutItem>> = (0..host.count()).map(|_| Vec::new()).collect();
        for mut item in pending.drain(..) {
            let shard = meta.route(hashes[item.at]);
            item.shard = shard.index;
            by_core[shard.owner(host.count())].push(item);
        }
        let parts = by_core
            .into_iter()
            .enumerate()
            .filter(|(_, items)| !items.is_empty())
            .map(|(core, items)| call_on(host, core, StreamPut { stream_id: meta.id, items }));
        for outcomes in join_all(parts).await {
            for outcome in outcomes? {
                match outcome {
                    PutOutcome::Put { at, shard, seq } => {
                        results[at] = Some(PutRecordResult::Put {
                            shard_id: crate::catalog::streams::shard_id(shard),
                            sequence_number: meta.sequence_number(shard, seq),
                        })
                    }
                    PutOutcome::Resharded(item) => pending.push(item),
                    PutOutcome::Failed(at, error) => results[at] = Some(PutRecordResult::Failed(error)),
                }
            }
        }
        if pending.is_empty() {
            break;
        }
        host.catalog().wait_newer(host.env(), snapshot.version, REROUTE_WAIT).await;
    }
    Ok(results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| PutRecordResult::Failed(OpError::new(ErrorCode::InternalFailure, "no answer for this record")))
        })
        .collect())
}

// ------------------------------------------------------------------ on the owning core

/// Runs a call from another shard (or from this one) on the stream shards this core owns.
pub async fn handle_call<H: StreamHost>(host: &Rc<H>, call: StreamCall) -> StreamAnswer {
    match call {
        StreamCall::StreamPut(StreamPut { stream_id, items }) => StreamAnswer::StreamPut(stream_put_local(host, stream_id, items).await),
        StreamCall::StreamRead(StreamRead(request)) => StreamAnswer::StreamRead(stream_read_local(host, request).await),
        StreamCall::StreamLease(StreamLease(lease)) => StreamAnswer::StreamLease(stream_lease_local(host, lease)),
        StreamCall::StreamSeek(StreamSeek { stream_id, shard, seek }) => {
            StreamAnswer::StreamSeek(stream_seek_local(host, stream_id, shard, seek).await)
        }
        StreamCall::StreamLoad(StreamLoad(shards)) => StreamAnswer::StreamLoad(host.streams().take_load(&shards)),
    }
}

/// A shard a put appended to: its log, the last sequence number appended, and what was.
struct Touched {
    shard: u32,
    log: Rc<ShardLog>,
    last_seq: u64,
    records: u64,
    bytes: u64,
}

/// Appends one core's part of a put, and answers once it is durable.
pub async fn stream_put_local<H: StreamHost>(host: &Rc<H>, stream_id: u64, items: Vec<PutItem>) -> Vec<PutOutcome> {
    let snapshot = host.snapshot();
    let Ok(meta) = stream_by_id(&snapshot, stream_id).cloned() else {
        let gone = OpError::new(ErrorCode::ResourceNotFound, "The stream was deleted.");
        return items.into_iter().map(|item| PutOutcome::Failed(item.at, gone.clone())).collect();
    };
    let now = host.env().now_ms();
    let enforce = host.config().enforce_shard_limits;
    let mut outcomes = Vec::with_capacity(items.len());
    // An encrypted stream's records are sealed under this core's data key for its KMS key;
    // one whose key is not held here writes nothing (never in clear).
    let seal = match snapshot.stream_sealing(&meta) {
        None => None,
        Some(spec) => match &spec.sealing {
            Sealing::Key(key) => Some(host.keyring().write_key(key, spec.reuse_ms, now)),
            _ => {
                let error = spec.writable().err().unwrap_or_else(|| OpError::new(ErrorCode::KmsNotFound, "The stream's key is not held."));
                return items.into_iter().map(|item| PutOutcome::Failed(item.at, error.clone())).collect();
            }
        },
    };
    let mut touched: Vec<Touched> = Vec::new();
    for item in items {
        if !meta.shard(item.shard).is_some_and(|shard| shard.is_open()) {
            outcomes.push(PutOutcome::Resharded(item));
            continue;
        }
        let log = match host.streams().get(stream_id, item.shard, || shard_exists(host, stream_id, item.shard)).await {
            Ok(log) => log,
            Err(error) => {
                outcomes.push(PutOutcome::Failed(item.at, error));
                continue;
            }
        };
        if log.sealed.get() {
            outcomes.push(PutOutcome::Resharded(item));
            continue;
        }
        let bytes = (item.data.len() + item.partition_key.len()) as u64;
        if enforce && !log.admit_write(now, 1, bytes) {
            host.metrics().stream(stream_id, item.shard, |counted| counted.write_throttled += 1);
            let error = OpError::new(
                ErrorCode::ProvisionedThroughputExceeded,
                format!(
                    "Rate exceeded for shard {} in stream {} under account {}.",
                    crate::catalog::streams::shard_id(item.shard),
                    meta.name,
                    host.config().account_id
                ),
            );
            outcomes.push(PutOutcome::Failed(item.at, error));
            continue;
        }
        match log.append(&item.partition_key, &item.data, now, seal.as_deref()) {
            Ok(seq) => {
                match touched.iter_mut().find(|entry| entry.shard == item.shard) {
                    Some(entry) => {
                        entry.last_seq = seq;
                        entry.records += 1;
                        entry.bytes += bytes;
                    }
                    None => touched.push(Touched { shard: item.shard, log, last_seq: seq, records: 1, bytes }),
                }
                outcomes.push(PutOutcome::Put { at: item.at, shard: item.shard, seq });
            }
            Err(error) => outcomes.push(PutOutcome::Failed(item.at, error)),
        }
    }
    let kept = join_all(touched.iter().map(|entry| entry.log.log.durable(entry.last_seq))).await;
    for (Touched { shard, log, records, bytes, .. }, result) in touched.iter().zip(kept) {
        match result {
            Ok(()) => {
                log.appended.notify_all();
                host.metrics().stream(stream_id, *shard, |counted| {
                    counted.incoming_records += records;
                    counted.incoming_bytes += bytes;
                });
            }
            Err(error) => {
                let error = storage_error(error);
                for outcome in outcomes.iter_mut() {
                    if let PutOutcome::Put { at, shard: put_shard, .. } = outcome {
                        if put_shard == shard {
                            *outcome = PutOutcome::Failed(*at, error.clone());
                        }
                    }
                }
            }
        }
    }
    outcomes
}

/// Reads one shard here, its owner.
pub async fn stream_read_local<H: StreamHost>(host: &Rc<H>, request: ReadRequest) -> Result<ReadOutcome, OpError> {
    let snapshot = host.snapshot();
    let meta = stream_by_id(&snapshot, request.stream_id)?.clone();
    let shard = meta.shard(request.shard).ok_or_else(|| shard_gone(request.shard))?.clone();
    let log = host.streams().get(meta.id, shard.index, || shard_exists(host, meta.id, shard.index)).await?;
    let now = host.env().now_ms();
    let enforce = request.limited && host.config().enforce_shard_limits;
    if enforce && !log.admit_read(now) {
        host.metrics().stream(meta.id, shard.index, |counted| counted.read_throttled += 1);
        return Err(OpError::new(
            ErrorCode::ProvisionedThroughputExceeded,
            format!("Rate exceeded for shard {} in stream {} under account {}.", shard.id(), meta.name, host.config().account_id),
        ));
    }
    if let Some((consumer_key, generation)) = request.lease {
        if !host.streams().holds_lease(meta.id, shard.index, consumer_key, generation) {
            return Err(OpError::new(ErrorCode::ResourceInUse, "A newer SubscribeToShard of this consumer to this shard took over."));
        }
    }
    let from = request.from;
    let read = |from: u64| log.log.read(from, request.max_records, request.max_bytes);
    let woken = log.appended.listen();
    let mut stored = read(from).await.map_err(storage_error)?;
    let at_end = |next: u64| shard.closed.is_some_and(|(_, last)| next > last);
    if stored.is_empty() && request.wait_ms > 0 && !at_end(from.max(log.log.first_seq())) {
        let timeout = host.env().sleep(Duration::from_millis(request.wait_ms));
        let shutdown = host.shutdown().event.listen();
        futures::pin_mut!(woken, timeout, shutdown);
        if !host.shutdown().requested.get() {
            futures::future::select(woken, futures::future::select(timeout, shutdown)).await;
        }
        stored = read(from).await.map_err(storage_error)?;
    }
    // Records past retention stay in the log until their segment goes, unseen.
    let cutoff = meta.cutoff_ms(host.env().now_ms());
    let mut from = from;
    if stored.first().is_some_and(|record| record.timestamp_ms < cutoff) {
        from = from.max(log.log.seq_at_timestamp(cutoff).await.map_err(storage_error)?);
        stored = read(from).await.map_err(storage_error)?;
    }
    let mut records = Vec::with_capacity(stored.len());
    let mut bytes = 0u64;
    // The KMS key last found usable for a sealed record (records of one stream share a few).
    let mut usable: Option<[u8; 16]> = None;
    for record in &stored {
        let sealed = crate::stream::store::sealed_part(record);
        if let Some(part) = sealed {
            // As GetRecords needs kms:Decrypt on AWS: a record sealed under a disabled key is refused.
            if usable.as_ref().map(|uuid| &uuid[..]) != part.get(1..17) {
                let key = host.keyring().key_of(part).ok_or_else(|| {
                    OpError::new(
                        ErrorCode::KmsNotFound,
                        format!("record {} of {} is sealed under a KMS key that was deleted", record.seq, shard.id()),
                    )
                })?;
                key.usable()?;
                usable = Some(key.uuid);
            }
        }
        let (partition_key, data) = split_record(record, host.keyring()).map_err(|error| match error {
            SplitError::KeyGone(key) => OpError::new(
                ErrorCode::KmsNotFound,
                format!("record {} of {} is sealed under KMS key {key}, which was deleted", record.seq, shard.id()),
            ),
            SplitError::Damaged => OpError::new(
                ErrorCode::InternalFailure,
                format!("record {} of {} does not decode (damaged on disk)", record.seq, shard.id()),
            ),
        })?;
        bytes += data.len() as u64;
        records.push(StreamRecord {
            sequence_number: meta.sequence_number(shard.index, record.seq),
            arrival_ms: record.timestamp_ms,
            data,
            partition_key,
            encrypted: sealed.is_some(),
        });
    }
    if enforce {
        log.count_read(bytes);
    }
    let next = stored.last().map_or_else(|| from.max(log.log.first_seq()), |record| record.seq + 1);
    let caught_up = next >= log.log.next_seq();
    let millis_behind_latest = match stored.last() {
        Some(last) if !caught_up => host.env().now_ms().saturating_sub(last.timestamp_ms),
        _ => 0,
    };
    host.metrics().stream(meta.id, shard.index, |counted| {
        counted.outgoing_records += records.len() as u64;
        counted.outgoing_bytes += bytes;
        counted.get_records += 1;
        counted.iterator_age_ms = millis_behind_latest;
    });
    Ok(ReadOutcome { records, next, millis_behind_latest, ended: at_end(next) })
}

/// Takes or gives back a push-subscription lease here, the shard's owner.
pub fn stream_lease_local<H: StreamHost>(host: &Rc<H>, lease: Lease) -> Result<u64, OpError> {
    host.streams().lease(lease, host.env().now_ms())
}

/// Finds a position in (or seals) one shard here, its owner.
pub async fn stream_seek_local<H: StreamHost>(host: &Rc<H>, stream_id: u64, shard: u32, seek: Seek) -> Result<u64, OpError> {
    let snapshot = host.snapshot();
    let meta = stream_by_id(&snapshot, stream_id)?.clone();
    meta.shard(shard).ok_or_else(|| shard_gone(shard))?;
    let log = host.streams().get(stream_id, shard, || shard_exists(host, stream_id, shard)).await?;
    match seek {
        Seek::Latest => Ok(log.log.next_seq()),
        Seek::Timestamp(ms) => log.log.seq_at_timestamp(ms.max(meta.cutoff_ms(host.env().now_ms()))).await.map_err(storage_error),
        Seek::Seal => {
            log.sealed.set(true);
            log.appended.notify_all();
            Ok(log.log.next_seq() - 1)
        }
    }
}

/// Shard 0, before a metadata change is applied to `before` (the registry as it is): a
/// stream change learns how many cores there are, and a reshard has the owners of the shards
/// it closes seal them, their last sequence numbers going into the change.
pub async fn prepare_change<H: StreamHost>(host: &Rc<H>, before: &Registry, change: &mut MetaChange) -> Result<(), OpError> {
    let MetaChange::Stream { change: stream_change, sealed, cores } = change else { return Ok(()) };
    *cores = host.count();
    if stream_change.reshards() {
        // A dry run finds the shards this closes.
        let dry_run = MetaChange::Stream { change: stream_change.clone(), sealed: HashMap::new(), cores: host.count() };
        let (_, after) = before.clone().apply(dry_run, host.env().now_ms())?;
        if let Some(after) = after {
            *sealed = seal_closing(host, &before.snapshot(), &after).await?;
        }
    }
    Ok(())
}

/// Shard 0, before a reshard: seals every shard `after` closes and returns their last
/// log sequence numbers.
pub async fn seal_closing<H: StreamHost>(host: &Rc<H>, before: &Snapshot, after: &Snapshot) -> Result<HashMap<(u64, u32), u64>, OpError> {
    let mut sealed = HashMap::new();
    for meta in after.streams.values() {
        let Some(old) = before.streams.get(&meta.name).filter(|old| old.id == meta.id) else { continue };
        for shard in old.open_shards() {
            if meta.shard(shard.index).is_some_and(|now| !now.is_open()) {
                let last = seek(host, old, shard.index, Seek::Seal).await?;
                sealed.insert((meta.id, shard.index), last);
            }
        }
    }
    Ok(sealed)
}

/// Serves a SubscribeToShard: pushes records to `sink` as they are written, for five
/// minutes or until the shard is closed and read, then ends with `Done`.
pub async fn subscribe_to_shard<H: StreamHost>(
    host: &Rc<H>,
    consumer_arn: String,
    shard_id: String,
    position: StartingPosition,
    sink: &impl EventSink,
) {
    let started = async {
        let snapshot = host.snapshot();
        let consumer = ConsumerRef { consumer_arn: Some(consumer_arn.clone()), ..ConsumerRef::default() };
        let (meta, _) = find_consumer(&snapshot.streams, &snapshot.naming, &consumer)?;
        let meta = meta.clone();
        let shard = meta.shard_by_id(&shard_id)?.clone();
        let next = start_position(host, &meta, shard.index, &position).await?;
        Ok::<_, OpError>((meta, shard, next))
    };
    let (meta, shard, mut next) = match started.await {
        Ok(started) => started,
        Err(error) => {
            sink.send(&Err(error)).await;
            return;
        }
    };
    // One subscription per consumer and shard: a second within 5 s is refused, a later one
    // takes over (the owner of the shard keeps the lease).
    let consumer_key = super::store::consumer_key(&consumer_arn);
    let owner = shard.owner(host.count());
    let generation = match lease(host, owner, Lease { stream_id: meta.id, shard: shard.index, consumer_key, release: None }).await {
        Ok(generation) => generation,
        Err(error) => {
            sink.send(&Err(error)).await;
            return;
        }
    };
    push_events(host, &meta, &shard, &consumer_arn, &mut next, (consumer_key, generation), sink).await;
    let release = Lease { stream_id: meta.id, shard: shard.index, consumer_key, release: Some(generation) };
    let _ = lease(host, owner, release).await;
}

async fn lease<H: StreamHost>(host: &Rc<H>, owner: usize, lease: Lease) -> Result<u64, OpError> {
    call_on(host, owner, StreamLease(lease)).await?
}

/// The body of a push subscription, once its lease is held.
async fn push_events<H: StreamHost>(
    host: &Rc<H>,
    meta: &StreamMeta,
    shard: &crate::catalog::streams::ShardMeta,
    consumer_arn: &str,
    next: &mut u64,
    (consumer_key, generation): (u64, u64),
    sink: &impl EventSink,
) {
    let deadline = host.env().now_ms() + SUBSCRIPTION_LIFETIME_MS;
    loop {
        let now = host.env().now_ms();
        if host.shutdown().requested.get() || now >= deadline {
            sink.send(&Ok(Reply::Done)).await;
            return;
        }
        // A deregistered consumer or a deleted stream ends the subscription.
        let snapshot = host.snapshot();
        let current = find_consumer(
            &snapshot.streams,
            &snapshot.naming,
            &ConsumerRef { consumer_arn: Some(consumer_arn.to_owned()), ..ConsumerRef::default() },
        );
        let current = match current {
            Ok((current, _)) if current.id == meta.id => current.clone(),
            _ => {
                sink.send(&Err(OpError::new(ErrorCode::ResourceNotFound, "The consumer or its stream is gone."))).await;
                return;
            }
        };
        let request = ReadRequest {
            stream_id: meta.id,
            shard: shard.index,
            from: *next,
            max_records: GET_RECORDS_MAX as usize,
            max_bytes: PUSH_EVENT_BYTES_MAX,
            wait_ms: (PUSH_IDLE.as_millis() as u64).min(deadline - now),
            limited: false,
            lease: Some((consumer_key, generation)),
        };
        let read = match read_shard(host, shard.owner(host.count()), request).await {
            Ok(read) => read,
            Err(error) => {
                sink.send(&Err(error)).await;
                return;
            }
        };
        *next = read.next;
        let event = ShardEvent {
            records: read.records,
            continuation_sequence_number: meta.sequence_number(shard.index, next.saturating_sub(1)),
            millis_behind_latest: read.millis_behind_latest,
            child_shards: if read.ended { current.children(shard.index) } else { Vec::new() },
        };
        if !sink.send(&Ok(Reply::ShardEvent(event))).await {
            return;
        }
        if read.ended {
            sink.send(&Ok(Reply::Done)).await;
            return;
        }
    }
}

/// Background, on every core: enforces retention on the shards this core owns (whole
/// segments go once every record in them is past retention) and closes the logs that have
/// been idle; shard 0 also drops closed shards whose records have all expired.
pub async fn stream_retention<H: StreamHost>(host: &Rc<H>) {
    let snapshot = host.snapshot();
    let now = host.env().now_ms();
    for meta in snapshot.streams.values() {
        for shard in meta.shards.iter().filter(|shard| shard.owner(host.count()) == host.id()) {
            let trimmed = host.streams().trim(meta.id, shard.index, meta.cutoff_ms(now), || shard_exists(host, meta.id, shard.index)).await;
            if let Err(error) = trimmed {
                tracing::warn!(stream = %meta.name, shard = %shard.id(), %error, "stream retention failed; will retry");
            }
            host.env().yield_if_needed().await;
        }
    }
    host.streams().close_idle(host.env().now_ms(), host.streams().idle_ms, None).await;
    if host.id() == 0 && snapshot.streams.values().any(|meta| meta.shards.iter().any(|shard| meta.expired(shard, now))) {
        if let Err(error) = stream_change(host, StreamChange::Expire).await {
            tracing::warn!(%error, "dropping expired shards failed; will retry");
        }
    }
}

/// Whether the current snapshot still has this stream shard.
fn shard_exists<H: StreamHost>(host: &Rc<H>, stream_id: u64, shard: u32) -> bool {
    host.snapshot().streams.values().any(|meta| meta.id == stream_id && meta.shard(shard).is_some())
}

/// On a new snapshot (and at start): closes and deletes the logs, open or not, of the
/// shards this core owned that are gone (deleted streams, expired shards).
pub async fn forget_gone_streams<H: StreamHost>(host: &Rc<H>) {
    let snapshot = host.snapshot();
    let mut owned: HashMap<u64, Vec<u32>> = HashMap::new();
    for meta in snapshot.streams.values() {
        for shard in meta.shards.iter().filter(|shard| shard.owner(host.count()) == host.id()) {
            owned.entry(meta.id).or_default().push(shard.index);
        }
    }
    host.streams().forget_gone(owned).await;
}
