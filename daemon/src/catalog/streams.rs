//! Kinesis-style streams: sharded, ordered, replayable logs.
//!
//! A stream and its shards are metadata: they live in shard 0's registry, are saved
//! with it, and reach every core in the immutable `Snapshot`. Each stream shard is
//! owned by one core (`ShardMeta::core`) and kept in a log of its own on that core
//! (`storage::stream::StreamLog`); only the owner appends to it or reads it.
//!
//! - Routing is Kinesis's: the MD5 of the partition key, read as a 128-bit big-endian
//!   integer (or the ExplicitHashKey), picks the open shard whose hash-key range holds
//!   it. The open shards always partition 0 … 2^128−1.
//! - Sequence numbers are decimal renderings of (stream id, shard index, log sequence
//!   number) packed into 128 bits: they increase within a shard, are unique within the
//!   stream, and say which shard they belong to, so one from another shard or another
//!   incarnation of the stream is refused rather than misread.
//! - Resharding closes parents and opens children in one metadata change. Before the
//!   change, shard 0 has each parent's owner seal it (no more appends) and learns its
//!   last sequence number, which becomes the parent's EndingSequenceNumber; a put that
//!   meets a sealed shard is routed again once the new snapshot has arrived.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{json, Value};
use sluice_protocol::limits::*;
use sluice_protocol::{ChildShard, ConsumerDescription, ConsumerRef, ErrorCode, KeyValues, OpError, ShardDescription, StreamDescription};

use super::Naming;

/// Every stream, by name.
pub type Streams = BTreeMap<String, Arc<StreamMeta>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Provisioned,
    OnDemand,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Provisioned => "PROVISIONED",
            Mode::OnDemand => "ON_DEMAND",
        }
    }

    /// Kinesis's answer to a mode it does not know.
    fn unknown(text: &str) -> OpError {
        OpError::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value '{text}' at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must satisfy enum value set: [ON_DEMAND, PROVISIONED]"),
        )
    }

    fn parse(text: &str) -> Option<Mode> {
        match text {
            "PROVISIONED" => Some(Mode::Provisioned),
            "ON_DEMAND" => Some(Mode::OnDemand),
            _ => None,
        }
    }
}

/// One shard of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMeta {
    pub index: u32,
    pub parent: Option<u32>,
    pub adjacent_parent: Option<u32>,
    pub start: u128,
    pub end: u128,
    /// The core that owns the shard's log (modulo the running core count).
    pub core: usize,
    pub created_ms: u64,
    /// When the shard was closed, and its last log sequence number (0: it held none).
    pub closed: Option<(u64, u64)>,
}

impl ShardMeta {
    pub fn id(&self) -> String {
        shard_id(self.index)
    }

    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    /// The core that owns this shard when `cores` are running.
    pub fn owner(&self, cores: usize) -> usize {
        self.core % cores.max(1)
    }
}

/// A registered (enhanced fan-out) consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMeta {
    pub name: String,
    pub arn: String,
    pub created_ms: u64,
}

/// One stream's metadata, immutable once published.
#[derive(Debug, Clone)]
pub struct StreamMeta {
    /// Unique for this incarnation of the name (shared counter with queue ids).
    pub id: u64,
    pub name: String,
    pub arn: String,
    pub mode: Mode,
    pub retention_hours: u32,
    pub created_ms: u64,
    pub tags: BTreeMap<String, String>,
    /// Every shard not yet expired, by index.
    pub shards: Vec<ShardMeta>,
    pub next_shard: u32,
    pub consumers: Vec<ConsumerMeta>,
    /// The stream's resource policy (PutResourcePolicy), compiled.
    pub policy: Option<crate::policy::ResourcePolicy>,
    /// The KMS key its records are sealed under at rest (StartStreamEncryption), as given.
    pub encryption_key: Option<String>,
    /// MaxRecordSizeInKiB: the largest record (data and partition key) it takes.
    pub max_record_kib: u32,
    /// When UpdateStreamMode last switched its mode (at most `MODE_SWITCHES_MAX` a day).
    pub mode_switches_ms: Vec<u64>,
    /// Enhanced monitoring's shard-level metrics (`SHARD_LEVEL_METRICS`).
    pub shard_level_metrics: Vec<String>,
    /// Open shards as (starting hash key, position in `shards`), by starting key.
    routes: Vec<(u128, usize)>,
}

impl StreamMeta {
    fn indexed(mut self) -> StreamMeta {
        self.shards.sort_by_key(|shard| shard.index);
        self.routes = self.shards.iter().enumerate().filter(|(_, shard)| shard.is_open()).map(|(at, shard)| (shard.start, at)).collect();
        self.routes.sort_unstable();
        self
    }

    /// The open shard whose hash-key range holds `hash`.
    pub fn route(&self, hash: u128) -> &ShardMeta {
        let at = self.routes.partition_point(|(start, _)| *start <= hash).saturating_sub(1);
        &self.shards[self.routes[at].1]
    }

    pub fn shard(&self, index: u32) -> Option<&ShardMeta> {
        self.shards.binary_search_by_key(&index, |shard| shard.index).ok().map(|at| &self.shards[at])
    }

    /// The shard a shard id names, if the stream has it.
    pub fn shard_by_id(&self, id: &str) -> Result<&ShardMeta, OpError> {
        parse_shard_id(id).and_then(|index| self.shard(index)).ok_or_else(|| {
            OpError::new(
                ErrorCode::ResourceNotFound,
                format!("Shard {id} in stream {} under account {} does not exist", self.name, account(&self.arn)),
            )
        })
    }

    pub fn open_shards(&self) -> impl Iterator<Item = &ShardMeta> {
        self.routes.iter().map(|(_, at)| &self.shards[*at])
    }

    pub fn retention_ms(&self) -> u64 {
        self.retention_hours as u64 * 3_600_000
    }

    /// Records that arrived before this time are past retention.
    pub fn cutoff_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.retention_ms())
    }

    /// A closed shard expires once its newest record is past retention.
    pub fn expired(&self, shard: &ShardMeta, now_ms: u64) -> bool {
        shard.closed.is_some_and(|(at, _)| at < self.cutoff_ms(now_ms))
    }

    pub fn sequence_number(&self, index: u32, log_seq: u64) -> String {
        sequence_number(self.id, index, log_seq)
    }

    /// The log sequence number a decimal sequence number names in shard `index`.
    pub fn parse_sequence_number(&self, index: u32, text: &str) -> Result<u64, OpError> {
        let invalid = || {
            OpError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {}",
                    text,
                    shard_id(index)
                ),
            )
        };
        let value = parse_decimal(text, 129).ok_or_else(invalid)?;
        if (value >> 96) as u64 != self.id & 0xffff_ffff || ((value >> 64) as u32) != index {
            return Err(invalid());
        }
        Ok(value as u64)
    }

    pub fn describe_shard(&self, shard: &ShardMeta) -> ShardDescription {
        ShardDescription {
            shard_id: shard.id(),
            parent_shard_id: shard.parent.map(shard_id),
            adjacent_parent_shard_id: shard.adjacent_parent.map(shard_id),
            starting_hash_key: shard.start.to_string(),
            ending_hash_key: shard.end.to_string(),
            starting_sequence_number: self.sequence_number(shard.index, 0),
            ending_sequence_number: shard.closed.map(|(_, last)| self.sequence_number(shard.index, last)),
        }
    }

    /// The stream's description; shards are left for the caller to fill.
    pub fn describe(&self) -> StreamDescription {
        StreamDescription {
            name: self.name.clone(),
            arn: self.arn.clone(),
            status: "ACTIVE".into(),
            mode: self.mode.name().into(),
            retention_hours: self.retention_hours as i32,
            created_ms: self.created_ms,
            shards: Vec::new(),
            has_more_shards: false,
            open_shard_count: self.routes.len() as i32,
            consumer_count: self.consumers.len() as i32,
            max_record_size_kib: self.max_record_kib as i32,
            encryption_key: self.encryption_key.clone(),
            shard_level_metrics: self.shard_level_metrics.clone(),
        }
    }

    /// The children of a closed shard.
    pub fn children(&self, index: u32) -> Vec<ChildShard> {
        self.shards
            .iter()
            .filter(|shard| shard.parent == Some(index) || shard.adjacent_parent == Some(index))
            .map(|shard| ChildShard {
                shard_id: shard.id(),
                parent_shards: shard.parent.into_iter().chain(shard.adjacent_parent).map(shard_id).collect(),
                starting_hash_key: shard.start.to_string(),
                ending_hash_key: shard.end.to_string(),
            })
            .collect()
    }

    pub fn describe_consumer(&self, consumer: &ConsumerMeta) -> ConsumerDescription {
        ConsumerDescription {
            name: consumer.name.clone(),
            arn: consumer.arn.clone(),
            status: "ACTIVE".into(),
            created_ms: consumer.created_ms,
            stream_arn: self.arn.clone(),
        }
    }
}

fn account(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or_default()
}

pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

pub fn parse_shard_id(id: &str) -> Option<u32> {
    let digits = id.strip_prefix("shardId-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Packs (stream id, shard index, log sequence number) into one decimal number.
pub fn sequence_number(stream_id: u64, index: u32, log_seq: u64) -> String {
    ((((stream_id & 0xffff_ffff) as u128) << 96) | ((index as u128) << 64) | log_seq as u128).to_string()
}

/// A decimal without sign or leading zeros, of at most `digits` digits, that fits 128 bits.
fn parse_decimal(text: &str, digits: usize) -> Option<u128> {
    if text.is_empty() || text.len() > digits || !text.bytes().all(|b| b.is_ascii_digit()) || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

/// A hash key: a decimal from 0 to 2^128−1.
pub fn parse_hash_key(text: &str) -> Option<u128> {
    parse_decimal(text, 39)
}

/// The hash key Kinesis derives from a partition key.
pub fn hash_of(partition_key: &str) -> u128 {
    u128::from_be_bytes(sluice_protocol::digest::md5_of_body(partition_key.as_bytes()))
}

/// `count` contiguous ranges covering 0 … 2^128−1, boundaries at floor(i·2^128/count).
pub fn even_ranges(count: usize) -> Vec<(u128, u128)> {
    let n = count.max(1) as u128;
    // 2^128 = n·q + (r + 1).
    let (q, r) = (u128::MAX / n, u128::MAX % n);
    let start = |i: u128| i * q + i * (r + 1) / n;
    (0..n).map(|i| (start(i), if i + 1 == n { u128::MAX } else { start(i + 1) - 1 })).collect()
}

/// Stream names: 1–128 of `[a-zA-Z0-9_.-]`.
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= STREAM_NAME_CHARS_MAX && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

pub fn stream_not_found(name: &str, naming: &Naming) -> OpError {
    OpError::new(ErrorCode::ResourceNotFound, format!("Stream {name} under account {} not found.", naming.account_id))
}

/// Finds a stream by name or ARN.
pub fn resolve<'a>(streams: &'a Streams, naming: &Naming, stream: &str) -> Result<&'a Arc<StreamMeta>, OpError> {
    let name = match stream.strip_prefix("arn:") {
        Some(_) => stream.rsplit_once(":stream/").map_or(stream, |(_, name)| name.split('/').next().unwrap_or(name)),
        None => stream,
    };
    streams.get(name).filter(|meta| !stream.starts_with("arn:") || meta.arn == stream).ok_or_else(|| stream_not_found(name, naming))
}

fn invalid(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::InvalidArgument, message)
}

/// A change to streams; runs on shard 0.
#[derive(Debug, Clone)]
pub enum StreamChange {
    Create {
        name: String,
        shard_count: Option<i32>,
        mode: Option<String>,
        tags: KeyValues,
        max_record_kib: Option<i32>,
    },
    Delete {
        stream: String,
        enforce_consumer_deletion: bool,
    },
    Retention {
        stream: String,
        hours: i32,
        increase: bool,
    },
    Split {
        stream: String,
        shard: String,
        new_starting_hash_key: String,
    },
    Merge {
        stream: String,
        shard: String,
        adjacent: String,
    },
    UpdateShardCount {
        stream: String,
        target: i32,
        scaling_type: Option<String>,
    },
    /// PutResourcePolicy (`Some`) or DeleteResourcePolicy (`None`) of a stream, by ARN.
    Policy {
        resource_arn: String,
        policy: Option<String>,
    },
    AddTags {
        stream: String,
        tags: KeyValues,
    },
    RemoveTags {
        stream: String,
        keys: Vec<String>,
    },
    RegisterConsumer {
        stream: String,
        name: String,
    },
    DeregisterConsumer(ConsumerRef),
    /// Drops closed shards whose records have all passed retention.
    Expire,
    /// UpdateMaxRecordSize.
    MaxRecordSize {
        stream: String,
        kib: i32,
    },
    /// Enable/DisableEnhancedMonitoring.
    Monitoring {
        stream: String,
        metrics: Vec<String>,
        enable: bool,
    },
    /// UpdateStreamMode.
    Mode {
        stream: String,
        mode: String,
    },
    /// An ON_DEMAND stream's scaler (`stream::scaling`): split an open shard at the middle of
    /// its hash-key range, or merge two adjacent open shards. Not a client's change: the
    /// stream is named by its id, so a stream deleted and made again is left alone.
    Scale {
        stream_id: u64,
        step: ScaleStep,
    },
    /// StartStreamEncryption (`Some` key) or StopStreamEncryption (`None`).
    Encryption {
        stream: String,
        key: Option<String>,
    },
}

impl StreamChange {
    /// Whether the change may close shards (their owners seal them first).
    pub fn reshards(&self) -> bool {
        matches!(
            self,
            StreamChange::Split { .. } | StreamChange::Merge { .. } | StreamChange::UpdateShardCount { .. } | StreamChange::Scale { .. }
        )
    }
}

/// One step of an ON_DEMAND stream's scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleStep {
    Split(u32),
    Merge(u32, u32),
}

/// Shard-level metrics enhanced monitoring can turn on (each renders per-shard series in
/// `/metrics`, `metrics::render`).
pub const SHARD_LEVEL_METRICS: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];

/// Mode switches a stream may make in a day (Kinesis's quota).
pub const MODE_SWITCHES_MAX: usize = 2;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// What a stream change answers with.
#[derive(Debug, Clone)]
pub enum StreamOutcome {
    Done,
    /// Enhanced monitoring's shard-level metrics before and after.
    Monitoring {
        name: String,
        arn: String,
        current: Vec<String>,
        desired: Vec<String>,
    },
    ShardCount {
        name: String,
        arn: String,
        current: i32,
        target: i32,
    },
    Consumer(ConsumerDescription),
}

/// Everything `apply` needs besides the streams.
pub struct ApplyContext<'a> {
    pub naming: &'a Naming,
    pub cores: usize,
    pub now_ms: u64,
    /// Last log sequence numbers of the shards this change closes, as their owners sealed them.
    pub sealed: &'a HashMap<(u64, u32), u64>,
}

/// Applies a change to `streams`; `next_id` numbers new streams. One function per kind of
/// change below; those that change one stream get it (a copy) and give it back.
pub fn apply(streams: &mut Streams, next_id: &mut u64, change: StreamChange, cx: &ApplyContext<'_>) -> Result<StreamOutcome, OpError> {
    match change {
        StreamChange::Create { name, shard_count, mode, tags, max_record_kib } => {
            create(streams, next_id, NewStream { name, shard_count, mode, tags, max_record_kib }, cx)
        }
        StreamChange::MaxRecordSize { stream, kib } => {
            let mut meta = stream_of(streams, cx, &stream)?;
            meta.max_record_kib = record_kib(Some(kib))?;
            put(streams, meta)
        }
        StreamChange::Delete { stream, enforce_consumer_deletion } => delete(streams, &stream, enforce_consumer_deletion, cx),
        StreamChange::Retention { stream, hours, increase } => {
            let meta = retention(stream_of(streams, cx, &stream)?, hours, increase)?;
            put(streams, meta)
        }
        StreamChange::Split { stream, shard, new_starting_hash_key } => {
            let meta = split_shard(stream_of(streams, cx, &stream)?, &shard, &new_starting_hash_key, cx)?;
            put(streams, meta)
        }
        StreamChange::Merge { stream, shard, adjacent } => {
            let meta = merge_shards(stream_of(streams, cx, &stream)?, &shard, &adjacent, cx)?;
            put(streams, meta)
        }
        StreamChange::UpdateShardCount { stream, target, scaling_type } => update_shard_count(streams, &stream, target, scaling_type, cx),
        StreamChange::Policy { resource_arn, policy } => {
            let mut meta = stream_of(streams, cx, policy_target(&resource_arn)?)?;
            meta.policy = match policy {
                None => None,
                Some(text) if text.len() > STREAM_POLICY_BYTES_MAX => {
                    return Err(invalid(format!("Policy: at most {STREAM_POLICY_BYTES_MAX} bytes")));
                }
                Some(text) => Some(crate::policy::ResourcePolicy::parse(&text).map_err(|error| invalid(format!("Policy: {error}")))?),
            };
            put(streams, meta)
        }
        StreamChange::Monitoring { stream, metrics, enable } => {
            let mut meta = stream_of(streams, cx, &stream)?;
            let current = meta.shard_level_metrics.clone();
            meta.shard_level_metrics = monitoring(&current, &metrics, enable)?;
            let outcome = StreamOutcome::Monitoring {
                name: meta.name.clone(),
                arn: meta.arn.clone(),
                current,
                desired: meta.shard_level_metrics.clone(),
            };
            put(streams, meta)?;
            Ok(outcome)
        }
        StreamChange::Mode { stream, mode } => {
            let meta = switch_mode(stream_of(streams, cx, &stream)?, &mode, cx)?;
            put(streams, meta)
        }
        StreamChange::Scale { stream_id, step } => {
            let Some(meta) = streams.values().find(|meta| meta.id == stream_id && meta.mode == Mode::OnDemand) else {
                return Ok(StreamOutcome::Done);
            };
            let meta = scale(StreamMeta::clone(meta), step, cx)?;
            put(streams, meta)
        }
        StreamChange::Encryption { stream, key } => {
            let mut meta = stream_of(streams, cx, &stream)?;
            meta.encryption_key = key;
            put(streams, meta)
        }
        StreamChange::AddTags { stream, tags } => {
            let mut meta = stream_of(streams, cx, &stream)?;
            meta.tags = checked_tags(meta.tags, &tags)?;
            put(streams, meta)
        }
        StreamChange::RemoveTags { stream, keys } => {
            let mut meta = stream_of(streams, cx, &stream)?;
            for key in &keys {
                meta.tags.remove(key);
            }
            put(streams, meta)
        }
        StreamChange::RegisterConsumer { stream, name } => register_consumer(streams, &stream, name, cx),
        StreamChange::DeregisterConsumer(consumer) => {
            let (meta, at) = find_consumer(streams, cx.naming, &consumer)?;
            let mut meta = (**meta).clone();
            meta.consumers.remove(at);
            put(streams, meta)
        }
        StreamChange::Expire => {
            drop_expired(streams, cx.now_ms);
            Ok(StreamOutcome::Done)
        }
    }
}

/// A copy of the stream `stream` names (by name or ARN), to change.
fn stream_of(streams: &Streams, cx: &ApplyContext<'_>, stream: &str) -> Result<StreamMeta, OpError> {
    resolve(streams, cx.naming, stream).map(|meta| (**meta).clone())
}

/// Puts a changed stream back.
fn put(streams: &mut Streams, meta: StreamMeta) -> Result<StreamOutcome, OpError> {
    streams.insert(meta.name.clone(), Arc::new(meta.indexed()));
    Ok(StreamOutcome::Done)
}

/// What CreateStream asks for.
struct NewStream {
    name: String,
    shard_count: Option<i32>,
    mode: Option<String>,
    tags: KeyValues,
    max_record_kib: Option<i32>,
}

fn create(streams: &mut Streams, next_id: &mut u64, new: NewStream, cx: &ApplyContext<'_>) -> Result<StreamOutcome, OpError> {
    let NewStream { name, shard_count, mode, tags, max_record_kib } = new;
    if !valid_stream_name(&name) {
        return Err(OpError::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value '{name}' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length 1 to 128"),
        ));
    }
    let mode = match mode.as_deref() {
        None | Some("") => Mode::Provisioned,
        Some(text) => Mode::parse(text).ok_or_else(|| Mode::unknown(text))?,
    };
    let count = match (mode, shard_count) {
        (Mode::Provisioned, None) => return Err(invalid("ShardCount is required for a PROVISIONED stream.")),
        (Mode::OnDemand, None) => ON_DEMAND_SHARDS,
        (_, Some(count)) if count < 1 => {
            return Err(OpError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value '{count}' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"),
            ))
        }
        (_, Some(count)) => count,
    };
    if count as usize > STREAM_SHARDS_MAX {
        return Err(OpError::new(
            ErrorCode::LimitExceeded,
            format!("This request would exceed the shard limit of {STREAM_SHARDS_MAX} shards per stream."),
        ));
    }
    if streams.contains_key(&name) {
        return Err(OpError::new(
            ErrorCode::ResourceInUse,
            format!("Stream {name} under account {} already exists.", cx.naming.account_id),
        ));
    }
    let id = *next_id;
    *next_id += 1;
    let shards = even_ranges(count as usize)
        .into_iter()
        .enumerate()
        .map(|(index, (start, end))| ShardMeta {
            index: index as u32,
            parent: None,
            adjacent_parent: None,
            start,
            end,
            core: (id as usize + index) % cx.cores.max(1),
            created_ms: cx.now_ms,
            closed: None,
        })
        .collect();
    let meta = StreamMeta {
        id,
        arn: stream_arn(cx.naming, &name),
        name: name.clone(),
        mode,
        retention_hours: RETENTION_HOURS_MIN as u32,
        created_ms: cx.now_ms,
        tags: checked_tags(BTreeMap::new(), &tags)?,
        shards,
        next_shard: count as u32,
        consumers: Vec::new(),
        policy: None,
        encryption_key: None,
        max_record_kib: record_kib(max_record_kib)?,
        mode_switches_ms: Vec::new(),
        shard_level_metrics: Vec::new(),
        routes: Vec::new(),
    };
    streams.insert(name, Arc::new(meta.indexed()));
    Ok(StreamOutcome::Done)
}

fn delete(streams: &mut Streams, stream: &str, enforce_consumer_deletion: bool, cx: &ApplyContext<'_>) -> Result<StreamOutcome, OpError> {
    let meta = stream_of(streams, cx, stream)?;
    if !meta.consumers.is_empty() && !enforce_consumer_deletion {
        return Err(OpError::new(
            ErrorCode::ResourceInUse,
            format!("Stream {} has registered consumers; delete them first or set EnforceConsumerDeletion.", meta.name),
        ));
    }
    streams.remove(&meta.name);
    Ok(StreamOutcome::Done)
}

fn retention(mut meta: StreamMeta, hours: i32, increase: bool) -> Result<StreamMeta, OpError> {
    if !(RETENTION_HOURS_MIN..=RETENTION_HOURS_MAX).contains(&hours) {
        return Err(invalid(format!(
            "Minimum allowed retention period is {RETENTION_HOURS_MIN} hours and maximum is {RETENTION_HOURS_MAX} hours. Requested retention period ({hours} hours) is out of range."
        )));
    }
    let current = meta.retention_hours as i32;
    if increase && hours < current {
        return Err(invalid(format!(
            "Requested retention period ({hours} hours) for stream {} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API.",
            meta.name
        )));
    }
    if !increase && hours > current {
        return Err(invalid(format!(
            "Requested retention period ({hours} hours) for stream {} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API.",
            meta.name
        )));
    }
    meta.retention_hours = hours as u32;
    Ok(meta)
}

fn split_shard(meta: StreamMeta, shard: &str, new_starting_hash_key: &str, cx: &ApplyContext<'_>) -> Result<StreamMeta, OpError> {
    let mut meta = resharding(meta)?;
    let parent = meta.shard_by_id(shard)?.clone();
    if !parent.is_open() {
        return Err(OpError::new(ErrorCode::ResourceInUse, format!("Shard {shard} is closed and cannot be split.")));
    }
    let key = parse_hash_key(new_starting_hash_key)
        .ok_or_else(|| invalid(format!("NewStartingHashKey {new_starting_hash_key} is not a hash key.")))?;
    if key <= parent.start || key > parent.end {
        return Err(invalid(format!(
            "NewStartingHashKey {key} used in SplitShard() on shard {shard} in stream {} under account {} is not both greater than one plus the shard's StartingHashKey {} and less than the shard's EndingHashKey {}.",
            meta.name, cx.naming.account_id, parent.start, parent.end
        )));
    }
    check_room(&meta, 2)?;
    split(&mut meta, parent.index, key, cx);
    Ok(meta)
}

fn merge_shards(meta: StreamMeta, shard: &str, adjacent: &str, cx: &ApplyContext<'_>) -> Result<StreamMeta, OpError> {
    let mut meta = resharding(meta)?;
    let first = meta.shard_by_id(shard)?.clone();
    let second = meta.shard_by_id(adjacent)?.clone();
    if !first.is_open() || !second.is_open() {
        return Err(OpError::new(ErrorCode::ResourceInUse, "Shards to merge must both be open."));
    }
    if first.end.checked_add(1) != Some(second.start) && second.end.checked_add(1) != Some(first.start) {
        return Err(invalid(format!("Shards {shard} and {adjacent} in stream {} are not adjacent.", meta.name)));
    }
    check_room(&meta, 1)?;
    merge(&mut meta, first.index, second.index, cx);
    Ok(meta)
}

/// Enhanced monitoring's shard-level metrics after enabling (or disabling) `asked` (`ALL`: every one).
fn monitoring(current: &[String], asked: &[String], enable: bool) -> Result<Vec<String>, OpError> {
    use SHARD_LEVEL_METRICS;
    if asked.is_empty() {
        return Err(OpError::new(ErrorCode::Validation, "1 validation error detected: Value at 'shardLevelMetrics' failed to satisfy constraint: Member must have length greater than or equal to 1"));
    }
    let mut named = Vec::new();
    for name in asked {
        if name == "ALL" {
            named.extend(SHARD_LEVEL_METRICS.iter().copied());
        } else if let Some(known) = SHARD_LEVEL_METRICS.iter().find(|known| *known == name) {
            named.push(known);
        } else {
            return Err(OpError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value '{name}' at 'shardLevelMetrics' failed to satisfy constraint: Member must satisfy enum value set: [IncomingBytes, IncomingRecords, OutgoingBytes, OutgoingRecords, WriteProvisionedThroughputExceeded, ReadProvisionedThroughputExceeded, IteratorAgeMilliseconds, ALL]"),
            ));
        }
    }
    // In SHARD_LEVEL_METRICS' order.
    Ok(SHARD_LEVEL_METRICS
        .iter()
        .filter(|metric| {
            if enable {
                current.iter().any(|c| c == *metric) || named.contains(metric)
            } else {
                current.iter().any(|c| c == *metric) && !named.contains(metric)
            }
        })
        .map(|metric| metric.to_string())
        .collect())
}

fn switch_mode(mut meta: StreamMeta, mode: &str, cx: &ApplyContext<'_>) -> Result<StreamMeta, OpError> {
    let mode = Mode::parse(mode).ok_or_else(|| Mode::unknown(mode))?;
    if mode == meta.mode {
        return Err(OpError::new(
            ErrorCode::ResourceInUse,
            format!("Stream {} under account {} is already in {} mode.", meta.name, cx.naming.account_id, mode.name()),
        ));
    }
    meta.mode_switches_ms.retain(|at| at + DAY_MS > cx.now_ms);
    if meta.mode_switches_ms.len() >= MODE_SWITCHES_MAX {
        return Err(OpError::new(
            ErrorCode::LimitExceeded,
            format!("Stream {} has switched its capacity mode {MODE_SWITCHES_MAX} times in the last 24 hours.", meta.name),
        ));
    }
    // The shards stay as they are: an ON_DEMAND stream scales from them, a PROVISIONED one keeps them.
    meta.mode_switches_ms.push(cx.now_ms);
    meta.mode = mode;
    Ok(meta)
}

/// One scaling step of an ON_DEMAND stream; a step the stream has moved past since it was
/// chosen (a shard closed meanwhile) is refused.
fn scale(mut meta: StreamMeta, step: ScaleStep, cx: &ApplyContext<'_>) -> Result<StreamMeta, OpError> {
    let open = |meta: &StreamMeta, index: u32| meta.shard(index).filter(|shard| shard.is_open()).cloned();
    let moved_on = || OpError::new(ErrorCode::ResourceInUse, "The shard was resharded since the step was chosen.");
    match step {
        ScaleStep::Split(index) => {
            let shard = open(&meta, index).ok_or_else(moved_on)?;
            if shard.end == shard.start {
                return Err(invalid("A shard of one hash key cannot be split."));
            }
            check_room(&meta, 2)?;
            split(&mut meta, index, shard.start + (shard.end - shard.start) / 2 + 1, cx);
        }
        ScaleStep::Merge(first, second) => {
            let (a, b) = (open(&meta, first).ok_or_else(moved_on)?, open(&meta, second).ok_or_else(moved_on)?);
            if a.end.checked_add(1) != Some(b.start) {
                return Err(invalid("Shards merged must be adjacent, the first below the second."));
            }
            check_room(&meta, 1)?;
            merge(&mut meta, first, second, cx);
        }
    }
    Ok(meta)
}

fn update_shard_count(
    streams: &mut Streams,
    stream: &str,
    target: i32,
    scaling_type: Option<String>,
    cx: &ApplyContext<'_>,
) -> Result<StreamOutcome, OpError> {
    let mut meta = resharding(stream_of(streams, cx, stream)?)?;
    if scaling_type.as_deref().unwrap_or("UNIFORM_SCALING") != "UNIFORM_SCALING" {
        return Err(invalid("ScalingType must be UNIFORM_SCALING."));
    }
    let current = meta.routes.len() as i32;
    if target < 1 || target > current * 2 || target * 2 < current {
        return Err(invalid(format!(
            "UpdateShardCount may only scale between half and double the current open shard count ({current}); requested {target}."
        )));
    }
    check_room(&meta, (2 * (target - current).unsigned_abs()) as usize)?;
    while (meta.routes.len() as i32) < target {
        // Halve the widest open shard.
        let widest = meta.open_shards().max_by_key(|shard| (shard.end - shard.start, std::cmp::Reverse(shard.start))).cloned();
        let Some(widest) = widest else { break };
        split(&mut meta, widest.index, widest.start + (widest.end - widest.start) / 2 + 1, cx);
    }
    while (meta.routes.len() as i32) > target {
        // Merge the narrowest pair of neighbours.
        let open: Vec<ShardMeta> = meta.open_shards().cloned().collect();
        let pair = open.windows(2).min_by_key(|pair| pair[1].end - pair[0].start).map(|pair| (pair[0].index, pair[1].index));
        let Some((a, b)) = pair else { break };
        merge(&mut meta, a, b, cx);
    }
    let outcome = StreamOutcome::ShardCount { name: meta.name.clone(), arn: meta.arn.clone(), current, target };
    streams.insert(meta.name.clone(), Arc::new(meta.indexed()));
    Ok(outcome)
}

fn register_consumer(streams: &mut Streams, stream: &str, name: String, cx: &ApplyContext<'_>) -> Result<StreamOutcome, OpError> {
    let mut meta = stream_of(streams, cx, stream)?;
    if !valid_stream_name(&name) {
        return Err(OpError::new(ErrorCode::Validation, format!("Consumer name {name:?} must be 1 to 128 of [a-zA-Z0-9_.-].")));
    }
    if meta.consumers.iter().any(|consumer| consumer.name == name) {
        return Err(OpError::new(ErrorCode::ResourceInUse, format!("Consumer {name} already exists on stream {}.", meta.name)));
    }
    if meta.consumers.len() >= STREAM_CONSUMERS_MAX {
        return Err(OpError::new(
            ErrorCode::LimitExceeded,
            format!("Stream {} already has {STREAM_CONSUMERS_MAX} registered consumers.", meta.name),
        ));
    }
    let consumer = ConsumerMeta { arn: format!("{}/consumer/{name}:{}", meta.arn, cx.now_ms / 1000), name, created_ms: cx.now_ms };
    let description = meta.describe_consumer(&consumer);
    meta.consumers.push(consumer);
    streams.insert(meta.name.clone(), Arc::new(meta.indexed()));
    Ok(StreamOutcome::Consumer(description))
}

/// The consumer a reference names: its stream and its position there.
pub fn find_consumer<'a>(streams: &'a Streams, naming: &Naming, consumer: &ConsumerRef) -> Result<(&'a Arc<StreamMeta>, usize), OpError> {
    let not_found = || OpError::new(ErrorCode::ResourceNotFound, "Consumer not found.");
    let meta = match (&consumer.consumer_arn, &consumer.stream) {
        (Some(arn), _) => {
            let stream_arn = arn.split_once("/consumer/").map(|(stream, _)| stream).ok_or_else(not_found)?;
            resolve(streams, naming, stream_arn).map_err(|_| not_found())?
        }
        (None, Some(stream)) => resolve(streams, naming, stream)?,
        (None, None) => return Err(invalid("Either ConsumerARN or both StreamARN and ConsumerName must be given.")),
    };
    let at = meta
        .consumers
        .iter()
        .position(|c| match &consumer.consumer_arn {
            Some(arn) => &c.arn == arn,
            None => Some(&c.name) == consumer.name.as_ref(),
        })
        .ok_or_else(not_found)?;
    Ok((meta, at))
}

/// The stream a resource-policy call names: a stream ARN (a consumer's ARN is refused: this
/// server keeps resource policies for streams only).
pub fn policy_target(resource_arn: &str) -> Result<&str, OpError> {
    if !resource_arn.starts_with("arn:") || !resource_arn.contains(":stream/") {
        return Err(invalid(format!("ResourceARN {resource_arn} is not a stream ARN.")));
    }
    if resource_arn.contains("/consumer/") {
        return Err(invalid("Resource policies of stream consumers are not supported by this server; put one on the stream."));
    }
    Ok(resource_arn)
}

pub fn stream_arn(naming: &Naming, name: &str) -> String {
    format!("arn:aws:kinesis:{}:{}:stream/{name}", naming.region, naming.account_id)
}

fn resharding(meta: StreamMeta) -> Result<StreamMeta, OpError> {
    if meta.mode == Mode::OnDemand {
        return Err(OpError::new(
            ErrorCode::Validation,
            format!("Stream {} is ON_DEMAND: its shards are not split or merged by hand.", meta.name),
        ));
    }
    Ok(meta)
}

/// Refuses a change that would leave more than `STREAM_SHARDS_MAX` shards.
fn check_room(meta: &StreamMeta, adding: usize) -> Result<(), OpError> {
    if meta.shards.len() + adding > STREAM_SHARDS_MAX {
        return Err(OpError::new(
            ErrorCode::LimitExceeded,
            format!("This request would exceed the shard limit of {STREAM_SHARDS_MAX} shards per stream (closed shards count until they expire)."),
        ));
    }
    Ok(())
}

fn close(meta: &mut StreamMeta, index: u32, cx: &ApplyContext<'_>) {
    let id = meta.id;
    if let Some(shard) = meta.shards.iter_mut().find(|shard| shard.index == index) {
        shard.closed = Some((cx.now_ms, cx.sealed.get(&(id, index)).copied().unwrap_or(0)));
    }
}

fn add_shard(meta: &mut StreamMeta, parent: u32, adjacent_parent: Option<u32>, start: u128, end: u128, cx: &ApplyContext<'_>) {
    let index = meta.next_shard;
    meta.next_shard += 1;
    meta.shards.push(ShardMeta {
        index,
        parent: Some(parent),
        adjacent_parent,
        start,
        end,
        core: (meta.id as usize + index as usize) % cx.cores.max(1),
        created_ms: cx.now_ms,
        closed: None,
    });
}

fn split(meta: &mut StreamMeta, index: u32, key: u128, cx: &ApplyContext<'_>) {
    let Some(parent) = meta.shard(index).cloned() else { return };
    close(meta, index, cx);
    add_shard(meta, index, None, parent.start, key - 1, cx);
    add_shard(meta, index, None, key, parent.end, cx);
    *meta = std::mem::replace(meta, empty_meta()).indexed();
}

fn merge(meta: &mut StreamMeta, index: u32, adjacent: u32, cx: &ApplyContext<'_>) {
    let (Some(a), Some(b)) = (meta.shard(index).cloned(), meta.shard(adjacent).cloned()) else { return };
    close(meta, index, cx);
    close(meta, adjacent, cx);
    add_shard(meta, index, Some(adjacent), a.start.min(b.start), a.end.max(b.end), cx);
    *meta = std::mem::replace(meta, empty_meta()).indexed();
}

fn empty_meta() -> StreamMeta {
    StreamMeta {
        id: 0,
        name: String::new(),
        arn: String::new(),
        mode: Mode::Provisioned,
        retention_hours: 0,
        created_ms: 0,
        tags: BTreeMap::new(),
        shards: Vec::new(),
        next_shard: 0,
        consumers: Vec::new(),
        policy: None,
        encryption_key: None,
        max_record_kib: RECORD_KIB_MIN as u32,
        mode_switches_ms: Vec::new(),
        shard_level_metrics: Vec::new(),
        routes: Vec::new(),
    }
}

/// MaxRecordSizeInKiB as asked (1024–10240; absent: 1024), or Kinesis's error.
pub fn record_kib(asked: Option<i32>) -> Result<u32, OpError> {
    match asked {
        None => Ok(RECORD_KIB_MIN as u32),
        Some(kib) if (RECORD_KIB_MIN..=RECORD_KIB_MAX).contains(&kib) => Ok(kib as u32),
        Some(kib) => Err(OpError::new(
            ErrorCode::Validation,
            format!("1 validation error detected: Value '{kib}' at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must have value between {RECORD_KIB_MIN} and {RECORD_KIB_MAX}"),
        )),
    }
}

fn checked_tags(mut tags: BTreeMap<String, String>, changes: &KeyValues) -> Result<BTreeMap<String, String>, OpError> {
    for (key, value) in changes {
        if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
            return Err(invalid(format!("Tag key '{key}' must be 1 to 128 characters and its value at most 256.")));
        }
        tags.insert(key.clone(), value.clone());
    }
    if tags.len() > STREAM_TAGS_MAX {
        return Err(OpError::new(ErrorCode::LimitExceeded, format!("A stream may carry at most {STREAM_TAGS_MAX} tags.")));
    }
    Ok(tags)
}

/// Drops closed shards past retention from the metadata (their logs are removed by
/// their owners once the shard is gone from the snapshot). Returns whether any went.
pub fn drop_expired(streams: &mut Streams, now_ms: u64) -> bool {
    let mut changed = false;
    for meta in streams.values_mut() {
        if meta.shards.iter().any(|shard| meta.expired(shard, now_ms)) {
            let mut next = (**meta).clone();
            next.shards.retain(|shard| !meta.expired(shard, now_ms));
            *meta = Arc::new(next.indexed());
            changed = true;
        }
    }
    changed
}

// ------------------------------------------------------------------ persistence

pub fn to_json(streams: &Streams) -> Value {
    Value::Array(streams.values().map(|meta| stream_json(meta)).collect())
}

/// One stream as the metadata file keeps it (`to_json` lists these).
pub fn stream_json(meta: &StreamMeta) -> Value {
    let shards: Vec<Value> = meta
        .shards
        .iter()
        .map(|shard| {
            json!({
                "index": shard.index,
                "parent": shard.parent,
                "adjacent_parent": shard.adjacent_parent,
                "start": shard.start.to_string(),
                "end": shard.end.to_string(),
                "core": shard.core,
                "created_ms": shard.created_ms,
                "closed": shard.closed.map(|(at, last)| json!([at, last])),
            })
        })
        .collect();
    let consumers: Vec<Value> = meta.consumers.iter().map(|c| json!({"name": c.name, "arn": c.arn, "created_ms": c.created_ms})).collect();
    json!({
        "id": meta.id,
        "name": meta.name,
        "mode": meta.mode.name(),
        "retention_hours": meta.retention_hours,
        "created_ms": meta.created_ms,
        "tags": meta.tags,
        "next_shard": meta.next_shard,
        "shards": shards,
        "consumers": consumers,
        "policy": meta.policy.as_ref().map(|policy| policy.text.as_str()),
        "encryption_key": meta.encryption_key,
        "max_record_kib": meta.max_record_kib,
        "mode_switches_ms": meta.mode_switches_ms,
        "shard_level_metrics": meta.shard_level_metrics,
    })
}

/// Rebuilds streams from `to_json`'s output, checking everything (it comes from disk).
pub fn from_json(naming: &Naming, value: &Value, next_id: u64) -> Result<Streams, String> {
    let mut streams = Streams::new();
    let Some(items) = value.as_array() else {
        return if value.is_null() { Ok(streams) } else { Err("streams is not a list".into()) };
    };
    let number = |value: &Value, what: &str| value.as_u64().ok_or_else(|| format!("{what} is not a number"));
    let key = |value: &Value, what: &str| value.as_str().and_then(parse_hash_key).ok_or_else(|| format!("{what} is not a hash key"));
    for item in items {
        let name = item["name"].as_str().filter(|name| valid_stream_name(name)).ok_or("a stream has no valid name")?.to_owned();
        let id = number(&item["id"], "stream id")?;
        if id >= next_id {
            return Err(format!("stream {name} has id {id} at or past next_id"));
        }
        let mut shards = Vec::new();
        for shard in item["shards"].as_array().ok_or("shards is not a list")? {
            let index = |value: &Value| -> Result<Option<u32>, String> {
                if value.is_null() {
                    return Ok(None);
                }
                value.as_u64().and_then(|v| u32::try_from(v).ok()).map(Some).ok_or_else(|| "a shard index is not a number".to_owned())
            };
            let closed = match &shard["closed"] {
                Value::Null => None,
                Value::Array(pair) if pair.len() == 2 => Some((number(&pair[0], "closed at")?, number(&pair[1], "ending sequence")?)),
                _ => return Err("a shard's closed is not [at, last]".into()),
            };
            let meta = ShardMeta {
                index: index(&shard["index"])?.ok_or("a shard has no index")?,
                parent: index(&shard["parent"])?,
                adjacent_parent: index(&shard["adjacent_parent"])?,
                start: key(&shard["start"], "start")?,
                end: key(&shard["end"], "end")?,
                core: number(&shard["core"], "core")? as usize,
                created_ms: number(&shard["created_ms"], "created_ms")?,
                closed,
            };
            if meta.start > meta.end {
                return Err(format!("stream {name}: shard {} has an empty range", meta.index));
            }
            shards.push(meta);
        }
        let mut consumers = Vec::new();
        for consumer in item["consumers"].as_array().ok_or("consumers is not a list")? {
            consumers.push(ConsumerMeta {
                name: consumer["name"].as_str().ok_or("a consumer has no name")?.to_owned(),
                arn: consumer["arn"].as_str().ok_or("a consumer has no ARN")?.to_owned(),
                created_ms: number(&consumer["created_ms"], "consumer created_ms")?,
            });
        }
        let tags = item["tags"]
            .as_object()
            .ok_or("tags is not an object")?
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_str().ok_or("a tag value is not a string")?.to_owned())))
            .collect::<Result<_, String>>()?;
        let retention_hours = number(&item["retention_hours"], "retention_hours")?;
        if !(RETENTION_HOURS_MIN as u64..=RETENTION_HOURS_MAX as u64).contains(&retention_hours) {
            return Err(format!("stream {name}: retention of {retention_hours} hours is out of range"));
        }
        let meta = StreamMeta {
            id,
            arn: stream_arn(naming, &name),
            name: name.clone(),
            mode: item["mode"].as_str().and_then(Mode::parse).ok_or("a stream has no valid mode")?,
            retention_hours: retention_hours as u32,
            created_ms: number(&item["created_ms"], "created_ms")?,
            tags,
            shards,
            next_shard: item["next_shard"].as_u64().and_then(|v| u32::try_from(v).ok()).ok_or("next_shard is not a number")?,
            consumers,
            // Kept even if it no longer compiles (`ResourcePolicy::stored`).
            policy: item["policy"].as_str().map(|text| crate::policy::ResourcePolicy::stored(text, &name)),
            encryption_key: item["encryption_key"].as_str().map(str::to_owned),
            // Absent in files written before records could be larger: 1 MiB.
            max_record_kib: record_kib(item["max_record_kib"].as_i64().map(|kib| kib as i32)).map_err(|e| e.message)?,
            // Absent in files written before UpdateStreamMode: none.
            mode_switches_ms: item["mode_switches_ms"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect(),
            // Only the names this version knows.
            shard_level_metrics: item["shard_level_metrics"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|name| SHARD_LEVEL_METRICS.contains(name))
                .map(str::to_owned)
                .collect(),
            routes: Vec::new(),
        }
        .indexed();
        // The open shards must cover the hash-key space exactly, or routing could fail.
        let mut expect = Some(0u128);
        for shard in meta.open_shards() {
            if expect != Some(shard.start) {
                return Err(format!("stream {name}: open shards do not cover the hash-key space"));
            }
            expect = shard.end.checked_add(1);
        }
        if expect.is_some() || meta.shards.iter().any(|shard| shard.index >= meta.next_shard) {
            return Err(format!("stream {name}: open shards do not cover the hash-key space, or a shard index is past next_shard"));
        }
        streams.insert(name, Arc::new(meta));
    }
    Ok(streams)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming { region: "us-east-1".into(), account_id: "000000000000".into(), public_url: String::new(), authorization: false }
    }

    fn apply_ok(streams: &mut Streams, next_id: &mut u64, change: StreamChange) -> StreamOutcome {
        let sealed = HashMap::new();
        let cx = ApplyContext { naming: &naming(), cores: 2, now_ms: 1_000, sealed: &sealed };
        apply(streams, next_id, change, &cx).unwrap()
    }

    #[test]
    fn even_ranges_match_kinesis_for_two_shards_and_cover_the_space() {
        assert_eq!(
            even_ranges(2),
            vec![(0, 170141183460469231731687303715884105727), (170141183460469231731687303715884105728, u128::MAX)]
        );
        for n in [1usize, 3, 4, 7, 16, 1000] {
            let ranges = even_ranges(n);
            assert_eq!(ranges.len(), n);
            assert_eq!(ranges[0].0, 0);
            assert_eq!(ranges[n - 1].1, u128::MAX);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1 + 1, pair[1].0);
            }
        }
    }

    #[test]
    fn partition_keys_hash_as_kinesis_documents() {
        assert_eq!(hash_of("pk"), 38317986088707300215492326132921849533);
    }

    #[test]
    fn sequence_numbers_name_their_shard() {
        let mut streams = Streams::new();
        let mut next_id = 7;
        apply_ok(
            &mut streams,
            &mut next_id,
            StreamChange::Create { name: "s".into(), shard_count: Some(2), mode: None, tags: vec![], max_record_kib: None },
        );
        let meta = &streams["s"];
        let text = meta.sequence_number(1, 42);
        assert_eq!(meta.parse_sequence_number(1, &text), Ok(42));
        assert_eq!(meta.parse_sequence_number(0, &text).unwrap_err().code, ErrorCode::InvalidArgument);
        assert_eq!(meta.parse_sequence_number(1, "0042").unwrap_err().code, ErrorCode::InvalidArgument);
        assert!(meta.sequence_number(1, 43) > text || meta.sequence_number(1, 43).len() > text.len());
    }

    #[test]
    fn uniform_scaling_doubles_and_halves_evenly() {
        let mut streams = Streams::new();
        let mut next_id = 1;
        apply_ok(
            &mut streams,
            &mut next_id,
            StreamChange::Create { name: "s".into(), shard_count: Some(4), mode: None, tags: vec![], max_record_kib: None },
        );
        apply_ok(&mut streams, &mut next_id, StreamChange::UpdateShardCount { stream: "s".into(), target: 8, scaling_type: None });
        let open: Vec<(u128, u128)> = streams["s"].open_shards().map(|s| (s.start, s.end)).collect();
        assert_eq!(open, even_ranges(8));
        apply_ok(&mut streams, &mut next_id, StreamChange::UpdateShardCount { stream: "s".into(), target: 4, scaling_type: None });
        let open: Vec<(u128, u128)> = streams["s"].open_shards().map(|s| (s.start, s.end)).collect();
        assert_eq!(open, even_ranges(4));
        // Every child names its parents, and every closed shard has children.
        let meta = &streams["s"];
        for shard in meta.shards.iter().filter(|s| !s.is_open()) {
            assert!(!meta.children(shard.index).is_empty());
        }
    }

    #[test]
    fn metadata_round_trips_through_json() {
        let mut streams = Streams::new();
        let mut next_id = 1;
        apply_ok(
            &mut streams,
            &mut next_id,
            StreamChange::Create {
                name: "s".into(),
                shard_count: Some(3),
                mode: None,
                tags: vec![("k".into(), "v".into())],
                max_record_kib: None,
            },
        );
        apply_ok(
            &mut streams,
            &mut next_id,
            StreamChange::Split {
                stream: "s".into(),
                shard: shard_id(1),
                new_starting_hash_key: "170141183460469231731687303715884105728".into(),
            },
        );
        apply_ok(&mut streams, &mut next_id, StreamChange::RegisterConsumer { stream: "s".into(), name: "c".into() });
        let back = from_json(&naming(), &to_json(&streams), next_id).unwrap();
        assert_eq!(back["s"].shards, streams["s"].shards);
        assert_eq!(back["s"].consumers, streams["s"].consumers);
        assert_eq!(back["s"].tags, streams["s"].tags);
        let mut damaged = to_json(&streams);
        damaged[0]["shards"][3]["start"] = json!("5");
        assert!(from_json(&naming(), &damaged, next_id).is_err());
    }
}
