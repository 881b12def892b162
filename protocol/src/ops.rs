//! The operations of the protocol as plain Rust values.
//!
//! Client and daemon speak in these types; only `codec` knows flatbuffers.
//! Nothing here is validated beyond what the wire format guarantees: the daemon
//! checks every value against SQS's rules. Bodies and binary attribute values
//! are `Bytes` that, on decode, share the frame's buffer instead of copying it.

use bytes::Bytes;

use crate::error::{ErrorCode, OpError};

/// A decoded request frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Chosen by the client, echoed in the response.
    pub id: u64,
    pub op: Op,
}

/// String key/value pairs in wire order (attributes, tags, system attributes).
pub type KeyValues = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Hello {
        protocol_version: u16,
        client_name: String,
    },
    /// The answer to a `Hello` that asked for authentication (`Reply::Hello::auth_nonce`).
    Authenticate {
        access_key_id: String,
        /// Hex of HMAC-SHA256(secret, `auth::challenge(nonce, access_key_id)`).
        proof: String,
    },
    CreateQueue {
        name: String,
        attributes: KeyValues,
        tags: KeyValues,
    },
    GetQueueUrl {
        name: String,
        /// `QueueOwnerAWSAccountId`: the queue must belong to this account.
        owner: Option<String>,
    },
    ListQueues {
        prefix: Option<String>,
        max_results: Option<i32>,
        next_token: Option<String>,
    },
    DeleteQueue {
        queue: String,
    },
    PurgeQueue {
        queue: String,
    },
    GetQueueAttributes {
        queue: String,
        names: Vec<String>,
    },
    SetQueueAttributes {
        queue: String,
        attributes: KeyValues,
    },
    TagQueue {
        queue: String,
        tags: KeyValues,
    },
    UntagQueue {
        queue: String,
        keys: Vec<String>,
    },
    ListQueueTags {
        queue: String,
    },
    ListDeadLetterSourceQueues {
        queue: String,
        max_results: Option<i32>,
        next_token: Option<String>,
    },
    /// A single send; `entry.id` is empty.
    SendMessage {
        queue: String,
        entry: SendEntry,
    },
    SendMessageBatch {
        queue: String,
        entries: Vec<SendEntry>,
    },
    ReceiveMessage(ReceiveMessage),
    DeleteMessage {
        queue: String,
        receipt_handle: String,
    },
    DeleteMessageBatch {
        queue: String,
        entries: Vec<DeleteEntry>,
    },
    ChangeMessageVisibility {
        queue: String,
        receipt_handle: String,
        visibility_timeout: i32,
    },
    ChangeMessageVisibilityBatch {
        queue: String,
        entries: Vec<VisibilityEntry>,
    },
    CreateTopic {
        name: String,
        attributes: KeyValues,
        tags: KeyValues,
    },
    /// `topic` is a topic ARN or name (likewise below).
    DeleteTopic {
        topic: String,
    },
    ListTopics {
        next_token: Option<String>,
    },
    GetTopicAttributes {
        topic: String,
    },
    SetTopicAttributes {
        topic: String,
        name: String,
        value: Option<String>,
    },
    Subscribe {
        topic: String,
        protocol: String,
        endpoint: Option<String>,
        attributes: KeyValues,
        return_subscription_arn: bool,
    },
    ConfirmSubscription {
        topic: String,
        token: String,
        authenticate_on_unsubscribe: bool,
    },
    Unsubscribe {
        subscription: String,
    },
    /// ListSubscriptions, or ListSubscriptionsByTopic when `topic` is set.
    ListSubscriptions {
        topic: Option<String>,
        next_token: Option<String>,
    },
    GetSubscriptionAttributes {
        subscription: String,
    },
    SetSubscriptionAttributes {
        subscription: String,
        name: String,
        value: Option<String>,
    },
    /// A single publish; `entry.id` is empty.
    Publish {
        topic: String,
        entry: PublishEntry,
    },
    PublishBatch {
        topic: String,
        entries: Vec<PublishEntry>,
    },
    CreateStream {
        name: String,
        shard_count: Option<i32>,
        mode: Option<String>,
        tags: KeyValues,
        /// MaxRecordSizeInKiB (1024–10240); `None`: 1024.
        max_record_size_kib: Option<i32>,
    },
    DeleteStream {
        stream: String,
        enforce_consumer_deletion: bool,
    },
    DescribeStream {
        stream: String,
        limit: Option<i32>,
        exclusive_start_shard_id: Option<String>,
    },
    DescribeStreamSummary {
        stream: String,
    },
    ListStreams {
        limit: Option<i32>,
        exclusive_start_stream_name: Option<String>,
        next_token: Option<String>,
    },
    ListShards(ListShards),
    PutRecord {
        stream: String,
        record: PutRecordsEntry,
        sequence_number_for_ordering: Option<String>,
    },
    PutRecords {
        stream: String,
        records: Vec<PutRecordsEntry>,
    },
    GetShardIterator {
        stream: String,
        shard_id: String,
        position: StartingPosition,
    },
    /// `stream_arn`, when given, must name the iterator's stream.
    GetRecords {
        iterator: String,
        limit: Option<i32>,
        stream_arn: Option<String>,
    },
    IncreaseStreamRetentionPeriod {
        stream: String,
        hours: i32,
    },
    DecreaseStreamRetentionPeriod {
        stream: String,
        hours: i32,
    },
    SplitShard {
        stream: String,
        shard_to_split: String,
        new_starting_hash_key: String,
    },
    MergeShards {
        stream: String,
        shard_to_merge: String,
        adjacent_shard_to_merge: String,
    },
    UpdateShardCount {
        stream: String,
        target_shard_count: i32,
        scaling_type: Option<String>,
    },
    AddTagsToStream {
        stream: String,
        tags: KeyValues,
    },
    RemoveTagsFromStream {
        stream: String,
        keys: Vec<String>,
    },
    ListTagsForStream {
        stream: String,
        exclusive_start_tag_key: Option<String>,
        limit: Option<i32>,
    },
    RegisterStreamConsumer {
        stream: String,
        name: String,
    },
    DeregisterStreamConsumer(ConsumerRef),
    DescribeStreamConsumer(ConsumerRef),
    ListStreamConsumers {
        stream: String,
        next_token: Option<String>,
        max_results: Option<i32>,
    },
    SubscribeToShard {
        consumer_arn: String,
        shard_id: String,
        position: StartingPosition,
    },
    /// SQS AddPermission: a statement labelled `label` in the queue's policy.
    AddPermission {
        queue: String,
        label: String,
        account_ids: Vec<String>,
        actions: Vec<String>,
    },
    RemovePermission {
        queue: String,
        label: String,
    },
    /// SNS AddPermission, on a topic's policy.
    AddTopicPermission {
        topic: String,
        label: String,
        account_ids: Vec<String>,
        actions: Vec<String>,
    },
    RemoveTopicPermission {
        topic: String,
        label: String,
    },
    /// Kinesis resource policies (of streams).
    PutResourcePolicy {
        resource_arn: String,
        policy: String,
    },
    GetResourcePolicy {
        resource_arn: String,
    },
    DeleteResourcePolicy {
        resource_arn: String,
    },
    /// SNS TagResource, UntagResource, ListTagsForResource (of topics).
    TagTopic {
        topic: String,
        tags: KeyValues,
    },
    UntagTopic {
        topic: String,
        keys: Vec<String>,
    },
    ListTopicTags {
        topic: String,
    },
    /// Kinesis DescribeLimits: the shard quota, open shards, on-demand streams and their cap.
    DescribeLimits,
    /// Kinesis DescribeAccountSettings.
    DescribeAccountSettings,
    /// KMS CreateKey (symmetric `ENCRYPT_DECRYPT` keys of spec `SYMMETRIC_DEFAULT` only).
    CreateKey {
        description: Option<String>,
        key_usage: Option<String>,
        key_spec: Option<String>,
        tags: KeyValues,
    },
    /// KMS DescribeKey. `key`, here and below: a key id, key ARN, alias name or alias ARN.
    DescribeKey {
        key: String,
    },
    ListKeys {
        limit: i32,
        marker: Option<String>,
    },
    /// KMS CreateAlias, or UpdateAlias when `update`.
    CreateAlias {
        alias: String,
        key: String,
        update: bool,
    },
    DeleteAlias {
        alias: String,
    },
    ListAliases {
        key: Option<String>,
        limit: i32,
        marker: Option<String>,
    },
    /// KMS EnableKey (`enabled`) and DisableKey.
    SetKeyEnabled {
        key: String,
        enabled: bool,
    },
    /// KMS ScheduleKeyDeletion (`pending_window_days` 7–30; 0: 30).
    ScheduleKeyDeletion {
        key: String,
        pending_window_days: i32,
    },
    CancelKeyDeletion {
        key: String,
    },
    /// KMS EnableKeyRotation (`enabled`; `period_days` 90–2560, 0: 365) and DisableKeyRotation.
    SetKeyRotation {
        key: String,
        enabled: bool,
        period_days: i32,
    },
    GetKeyRotationStatus {
        key: String,
    },
    RotateKeyOnDemand {
        key: String,
    },
    Encrypt {
        key: String,
        plaintext: Bytes,
        context: KeyValues,
    },
    /// KMS Decrypt: the ciphertext names its key; `key`, when given, must be that key.
    Decrypt {
        ciphertext: Bytes,
        key: Option<String>,
        context: KeyValues,
    },
    /// KMS GenerateDataKey (`bytes` 1–1024), or GenerateDataKeyWithoutPlaintext.
    GenerateDataKey {
        key: String,
        bytes: i32,
        context: KeyValues,
        without_plaintext: bool,
    },
    /// SQS StartMessageMoveTask: redrive from a dead-letter queue, back to each message's
    /// source (`destination_arn` absent) or to one queue.
    StartMessageMoveTask {
        source_arn: String,
        destination_arn: Option<String>,
        max_per_second: Option<i32>,
    },
    CancelMessageMoveTask {
        task_handle: String,
    },
    ListMessageMoveTasks {
        source_arn: String,
        max_results: Option<i32>,
    },
    /// Kinesis UpdateMaxRecordSize.
    UpdateMaxRecordSize {
        stream: String,
        max_record_size_kib: i32,
    },
    /// Joins (or stays in) a stream consumer's group as `worker` and takes its share of the
    /// shards: answered with `ShardLeases` (this worker's).
    LeaseShards {
        consumer_arn: String,
        worker: String,
        max_leases: Option<i32>,
    },
    /// Checkpoints a shard whose lease `worker` holds with `token`: a sequence number of the
    /// shard, or `SHARD_END`.
    CheckpointShard {
        consumer_arn: String,
        worker: String,
        shard_id: String,
        token: u64,
        sequence_number: String,
    },
    /// Gives back leases (`shard_ids` empty: all of the worker's, leaving the group).
    ReleaseShards {
        consumer_arn: String,
        worker: String,
        shard_ids: Vec<String>,
    },
    /// Every shard of a consumer group's stream with its lease and checkpoint.
    DescribeConsumerGroup {
        consumer_arn: String,
    },
    /// Kinesis EnableEnhancedMonitoring (`enable`) and DisableEnhancedMonitoring.
    SetEnhancedMonitoring {
        stream: String,
        metrics: Vec<String>,
        enable: bool,
    },
    /// Kinesis UpdateStreamMode: `mode` is PROVISIONED or ON_DEMAND.
    UpdateStreamMode {
        stream: String,
        mode: String,
    },
    /// Kinesis StartStreamEncryption (`start`, with `key`) and StopStreamEncryption.
    SetStreamEncryption {
        stream: String,
        encryption_type: String,
        key: String,
        start: bool,
    },
    /// CloudWatch PutMetricAlarm: creates or replaces the alarm (its state fields are ignored).
    PutMetricAlarm(Box<MetricAlarm>),
    /// CloudWatch DescribeAlarms.
    DescribeAlarms {
        names: Vec<String>,
        name_prefix: Option<String>,
        state: Option<String>,
        action_prefix: Option<String>,
        max_records: Option<i32>,
        next_token: Option<String>,
    },
    /// CloudWatch DeleteAlarms.
    DeleteAlarms {
        names: Vec<String>,
    },
    /// CloudWatch SetAlarmState.
    SetAlarmState {
        name: String,
        state: String,
        reason: String,
        reason_data: Option<String>,
    },
    /// CloudWatch EnableAlarmActions (`enable`) and DisableAlarmActions.
    SetAlarmActions {
        names: Vec<String>,
        enable: bool,
    },
    /// CloudWatch GetMetricStatistics (times in epoch ms).
    GetMetricStatistics {
        metric: MetricId,
        start_ms: u64,
        end_ms: u64,
        period_seconds: u32,
        statistics: Vec<String>,
        unit: Option<String>,
    },
    /// CloudWatch GetMetricData: metric queries over `start_ms..end_ms`.
    GetMetricData {
        queries: Vec<MetricDataQuery>,
        start_ms: u64,
        end_ms: u64,
        descending: bool,
        max_datapoints: Option<i32>,
        next_token: Option<String>,
    },
    /// CloudWatch ListMetrics.
    ListMetrics {
        namespace: Option<String>,
        metric_name: Option<String>,
        dimensions: Vec<DimensionFilter>,
        next_token: Option<String>,
    },
    /// Firehose CreateDeliveryStream. `configuration` is the rest of the request as
    /// Firehose's JSON API spells it (`DeliveryStreamType`, the source and destination
    /// configurations), checked by the daemon.
    CreateDeliveryStream {
        name: String,
        configuration: String,
        tags: KeyValues,
    },
    DeleteDeliveryStream {
        name: String,
        allow_force_delete: bool,
    },
    DescribeDeliveryStream {
        name: String,
        limit: Option<i32>,
        exclusive_start_destination_id: Option<String>,
    },
    ListDeliveryStreams {
        limit: Option<i32>,
        stream_type: Option<String>,
        exclusive_start_name: Option<String>,
    },
    /// Firehose PutRecord (`batch` false: one record, and its failure is the call's) and
    /// PutRecordBatch.
    PutFirehoseRecords {
        name: String,
        records: Vec<Bytes>,
        batch: bool,
    },
    /// Firehose UpdateDestination; `configuration` holds the destination update as Firehose's
    /// JSON API spells it (`ExtendedS3DestinationUpdate`, …).
    UpdateDestination {
        name: String,
        current_version_id: String,
        destination_id: String,
        configuration: String,
    },
    TagDeliveryStream {
        name: String,
        tags: KeyValues,
    },
    UntagDeliveryStream {
        name: String,
        keys: Vec<String>,
    },
    ListTagsForDeliveryStream {
        name: String,
        limit: Option<i32>,
        exclusive_start_tag_key: Option<String>,
    },
    /// Firehose StartDeliveryStreamEncryption (`start`: `key_type` `AWS_OWNED_CMK` or
    /// `CUSTOMER_MANAGED_CMK` with `key_arn`) and StopDeliveryStreamEncryption.
    SetDeliveryStreamEncryption {
        name: String,
        key_type: Option<String>,
        key_arn: Option<String>,
        start: bool,
    },
}

impl Op {
    /// The AWS action name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Hello { .. } => "Hello",
            Op::Authenticate { .. } => "Authenticate",
            Op::CreateQueue { .. } => "CreateQueue",
            Op::GetQueueUrl { .. } => "GetQueueUrl",
            Op::ListQueues { .. } => "ListQueues",
            Op::DeleteQueue { .. } => "DeleteQueue",
            Op::PurgeQueue { .. } => "PurgeQueue",
            Op::GetQueueAttributes { .. } => "GetQueueAttributes",
            Op::SetQueueAttributes { .. } => "SetQueueAttributes",
            Op::TagQueue { .. } => "TagQueue",
            Op::UntagQueue { .. } => "UntagQueue",
            Op::ListQueueTags { .. } => "ListQueueTags",
            Op::ListDeadLetterSourceQueues { .. } => "ListDeadLetterSourceQueues",
            Op::SendMessage { .. } => "SendMessage",
            Op::SendMessageBatch { .. } => "SendMessageBatch",
            Op::ReceiveMessage(_) => "ReceiveMessage",
            Op::DeleteMessage { .. } => "DeleteMessage",
            Op::DeleteMessageBatch { .. } => "DeleteMessageBatch",
            Op::ChangeMessageVisibility { .. } => "ChangeMessageVisibility",
            Op::ChangeMessageVisibilityBatch { .. } => "ChangeMessageVisibilityBatch",
            Op::CreateTopic { .. } => "CreateTopic",
            Op::DeleteTopic { .. } => "DeleteTopic",
            Op::ListTopics { .. } => "ListTopics",
            Op::GetTopicAttributes { .. } => "GetTopicAttributes",
            Op::SetTopicAttributes { .. } => "SetTopicAttributes",
            Op::Subscribe { .. } => "Subscribe",
            Op::ConfirmSubscription { .. } => "ConfirmSubscription",
            Op::Unsubscribe { .. } => "Unsubscribe",
            Op::ListSubscriptions { topic: None, .. } => "ListSubscriptions",
            Op::ListSubscriptions { topic: Some(_), .. } => "ListSubscriptionsByTopic",
            Op::GetSubscriptionAttributes { .. } => "GetSubscriptionAttributes",
            Op::SetSubscriptionAttributes { .. } => "SetSubscriptionAttributes",
            Op::Publish { .. } => "Publish",
            Op::PublishBatch { .. } => "PublishBatch",
            Op::CreateStream { .. } => "CreateStream",
            Op::DeleteStream { .. } => "DeleteStream",
            Op::DescribeStream { .. } => "DescribeStream",
            Op::DescribeStreamSummary { .. } => "DescribeStreamSummary",
            Op::ListStreams { .. } => "ListStreams",
            Op::ListShards(_) => "ListShards",
            Op::PutRecord { .. } => "PutRecord",
            Op::PutRecords { .. } => "PutRecords",
            Op::GetShardIterator { .. } => "GetShardIterator",
            Op::GetRecords { .. } => "GetRecords",
            Op::IncreaseStreamRetentionPeriod { .. } => "IncreaseStreamRetentionPeriod",
            Op::DecreaseStreamRetentionPeriod { .. } => "DecreaseStreamRetentionPeriod",
            Op::SplitShard { .. } => "SplitShard",
            Op::MergeShards { .. } => "MergeShards",
            Op::UpdateShardCount { .. } => "UpdateShardCount",
            Op::AddTagsToStream { .. } => "AddTagsToStream",
            Op::RemoveTagsFromStream { .. } => "RemoveTagsFromStream",
            Op::ListTagsForStream { .. } => "ListTagsForStream",
            Op::RegisterStreamConsumer { .. } => "RegisterStreamConsumer",
            Op::DeregisterStreamConsumer(_) => "DeregisterStreamConsumer",
            Op::DescribeStreamConsumer(_) => "DescribeStreamConsumer",
            Op::ListStreamConsumers { .. } => "ListStreamConsumers",
            Op::SubscribeToShard { .. } => "SubscribeToShard",
            Op::AddPermission { .. } | Op::AddTopicPermission { .. } => "AddPermission",
            Op::RemovePermission { .. } | Op::RemoveTopicPermission { .. } => "RemovePermission",
            Op::PutResourcePolicy { .. } => "PutResourcePolicy",
            Op::GetResourcePolicy { .. } => "GetResourcePolicy",
            Op::DeleteResourcePolicy { .. } => "DeleteResourcePolicy",
            Op::TagTopic { .. } => "TagResource",
            Op::UntagTopic { .. } => "UntagResource",
            Op::ListTopicTags { .. } => "ListTagsForResource",
            Op::DescribeLimits => "DescribeLimits",
            Op::DescribeAccountSettings => "DescribeAccountSettings",
            Op::CreateKey { .. } => "CreateKey",
            Op::DescribeKey { .. } => "DescribeKey",
            Op::ListKeys { .. } => "ListKeys",
            Op::CreateAlias { update: false, .. } => "CreateAlias",
            Op::CreateAlias { update: true, .. } => "UpdateAlias",
            Op::DeleteAlias { .. } => "DeleteAlias",
            Op::ListAliases { .. } => "ListAliases",
            Op::SetKeyEnabled { enabled: true, .. } => "EnableKey",
            Op::SetKeyEnabled { enabled: false, .. } => "DisableKey",
            Op::ScheduleKeyDeletion { .. } => "ScheduleKeyDeletion",
            Op::CancelKeyDeletion { .. } => "CancelKeyDeletion",
            Op::SetKeyRotation { enabled: true, .. } => "EnableKeyRotation",
            Op::SetKeyRotation { enabled: false, .. } => "DisableKeyRotation",
            Op::GetKeyRotationStatus { .. } => "GetKeyRotationStatus",
            Op::RotateKeyOnDemand { .. } => "RotateKeyOnDemand",
            Op::Encrypt { .. } => "Encrypt",
            Op::Decrypt { .. } => "Decrypt",
            Op::GenerateDataKey { without_plaintext: false, .. } => "GenerateDataKey",
            Op::GenerateDataKey { without_plaintext: true, .. } => "GenerateDataKeyWithoutPlaintext",
            Op::StartMessageMoveTask { .. } => "StartMessageMoveTask",
            Op::CancelMessageMoveTask { .. } => "CancelMessageMoveTask",
            Op::ListMessageMoveTasks { .. } => "ListMessageMoveTasks",
            Op::UpdateMaxRecordSize { .. } => "UpdateMaxRecordSize",
            Op::UpdateStreamMode { .. } => "UpdateStreamMode",
            Op::LeaseShards { .. } => "LeaseShards",
            Op::CheckpointShard { .. } => "CheckpointShard",
            Op::ReleaseShards { .. } => "ReleaseShards",
            Op::DescribeConsumerGroup { .. } => "DescribeConsumerGroup",
            Op::SetEnhancedMonitoring { enable: true, .. } => "EnableEnhancedMonitoring",
            Op::SetEnhancedMonitoring { enable: false, .. } => "DisableEnhancedMonitoring",
            Op::SetStreamEncryption { start: true, .. } => "StartStreamEncryption",
            Op::SetStreamEncryption { start: false, .. } => "StopStreamEncryption",
            Op::PutMetricAlarm(_) => "PutMetricAlarm",
            Op::DescribeAlarms { .. } => "DescribeAlarms",
            Op::DeleteAlarms { .. } => "DeleteAlarms",
            Op::SetAlarmState { .. } => "SetAlarmState",
            Op::SetAlarmActions { enable: true, .. } => "EnableAlarmActions",
            Op::SetAlarmActions { enable: false, .. } => "DisableAlarmActions",
            Op::GetMetricStatistics { .. } => "GetMetricStatistics",
            Op::GetMetricData { .. } => "GetMetricData",
            Op::ListMetrics { .. } => "ListMetrics",
            Op::CreateDeliveryStream { .. } => "CreateDeliveryStream",
            Op::DeleteDeliveryStream { .. } => "DeleteDeliveryStream",
            Op::DescribeDeliveryStream { .. } => "DescribeDeliveryStream",
            Op::ListDeliveryStreams { .. } => "ListDeliveryStreams",
            Op::PutFirehoseRecords { batch: false, .. } => "PutRecord",
            Op::PutFirehoseRecords { batch: true, .. } => "PutRecordBatch",
            Op::UpdateDestination { .. } => "UpdateDestination",
            Op::TagDeliveryStream { .. } => "TagDeliveryStream",
            Op::UntagDeliveryStream { .. } => "UntagDeliveryStream",
            Op::ListTagsForDeliveryStream { .. } => "ListTagsForDeliveryStream",
            Op::SetDeliveryStreamEncryption { start: true, .. } => "StartDeliveryStreamEncryption",
            Op::SetDeliveryStreamEncryption { start: false, .. } => "StopDeliveryStreamEncryption",
        }
    }
}

/// An SQS message attribute as sent. Exactly one of the values should be set;
/// the daemon rejects anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAttribute {
    pub name: String,
    pub data_type: String,
    pub string_value: Option<String>,
    pub binary_value: Option<Bytes>,
}

impl MessageAttribute {
    pub fn string(name: impl Into<String>, data_type: impl Into<String>, value: impl Into<String>) -> Self {
        MessageAttribute { name: name.into(), data_type: data_type.into(), string_value: Some(value.into()), binary_value: None }
    }

    pub fn binary(name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        MessageAttribute { name: name.into(), data_type: "Binary".into(), string_value: None, binary_value: Some(value.into()) }
    }
}

impl MessageAttribute {
    /// Bytes this attribute adds to a message's size, as SQS counts them: name, data type and value.
    pub fn size_bytes(&self) -> usize {
        self.name.len()
            + self.data_type.len()
            + self.string_value.as_ref().map_or(0, String::len)
            + self.binary_value.as_ref().map_or(0, Bytes::len)
    }
}

impl crate::digest::DigestAttribute for MessageAttribute {
    fn name(&self) -> &str {
        &self.name
    }
    fn data_type(&self) -> &str {
        &self.data_type
    }
    fn value(&self) -> Result<&str, &[u8]> {
        match (&self.string_value, &self.binary_value) {
            (Some(text), _) => Ok(text),
            (None, Some(bytes)) => Err(bytes),
            (None, None) => Ok(""),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendEntry {
    /// Batch entry id; empty for SendMessage.
    pub id: String,
    pub body: Bytes,
    pub delay_seconds: Option<i32>,
    pub attributes: Vec<MessageAttribute>,
    pub system_attributes: Vec<MessageAttribute>,
    pub message_group_id: Option<String>,
    pub deduplication_id: Option<String>,
}

impl SendEntry {
    /// The message's size as SQS counts it against MaximumMessageSize and the batch
    /// limit: body bytes plus every message attribute's (system attributes do not count).
    pub fn size_bytes(&self) -> usize {
        self.body.len() + self.attributes.iter().map(MessageAttribute::size_bytes).sum::<usize>()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiveMessage {
    pub queue: String,
    pub max_messages: Option<i32>,
    pub wait_time_seconds: Option<i32>,
    pub visibility_timeout: Option<i32>,
    pub system_attribute_names: Vec<String>,
    pub message_attribute_names: Vec<String>,
    pub receive_request_attempt_id: Option<String>,
}

/// One message to publish to a topic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishEntry {
    /// Batch entry id; empty for Publish.
    pub id: String,
    /// UTF-8 text (checked by the daemon); kept as a slice of the frame.
    pub message: Bytes,
    pub subject: Option<String>,
    /// `json` for a per-protocol message.
    pub message_structure: Option<String>,
    pub attributes: Vec<MessageAttribute>,
    pub message_group_id: Option<String>,
    pub deduplication_id: Option<String>,
}

impl PublishEntry {
    /// The message's size as SNS counts it against its limit: the message plus every
    /// attribute's name, type and value.
    pub fn size_bytes(&self) -> usize {
        self.message.len() + self.attributes.iter().map(MessageAttribute::size_bytes).sum::<usize>()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteEntry {
    pub id: String,
    pub receipt_handle: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibilityEntry {
    pub id: String,
    pub receipt_handle: String,
    pub visibility_timeout: i32,
}

/// A successful operation's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Hello {
        protocol_version: u16,
        server_version: String,
        shard_count: u16,
        shard_id: u16,
        /// Set when the server requires `Authenticate` before anything else.
        auth_nonce: Option<String>,
    },
    /// The connection is authenticated as this principal.
    Authenticated {
        principal_arn: String,
        account_id: String,
    },
    /// An operation that returns nothing.
    Done,
    QueueUrl(String),
    QueueUrls {
        queue_urls: Vec<String>,
        next_token: Option<String>,
    },
    /// Queue attributes or queue tags.
    Attributes(KeyValues),
    SendMessage(SendResult),
    SendMessageBatch {
        successful: Vec<SendResult>,
        failed: Vec<BatchFailure>,
    },
    ReceiveMessage(Vec<ReceivedMessage>),
    /// DeleteMessageBatch and ChangeMessageVisibilityBatch.
    Batch {
        successful: Vec<String>,
        failed: Vec<BatchFailure>,
    },
    /// A topic or subscription ARN.
    Arn(String),
    /// A page of topic ARNs.
    Arns {
        arns: Vec<String>,
        next_token: Option<String>,
    },
    Subscriptions {
        subscriptions: Vec<SubscriptionSummary>,
        next_token: Option<String>,
    },
    Publish(PublishResult),
    PublishBatch {
        successful: Vec<PublishResult>,
        failed: Vec<BatchFailure>,
    },
    /// DescribeStream and DescribeStreamSummary.
    StreamDescription(StreamDescription),
    /// A page of ListStreams (descriptions without shards).
    Streams {
        streams: Vec<StreamDescription>,
        has_more: bool,
        next_token: Option<String>,
    },
    Shards {
        shards: Vec<ShardDescription>,
        next_token: Option<String>,
    },
    PutRecord(PutRecordResult),
    PutRecords {
        failed_record_count: i32,
        records: Vec<PutRecordResult>,
    },
    ShardIterator(String),
    Records(GetRecordsResult),
    ShardCount {
        stream_name: String,
        stream_arn: String,
        current_shard_count: i32,
        target_shard_count: i32,
    },
    StreamTags {
        tags: KeyValues,
        has_more: bool,
    },
    StreamConsumer(ConsumerDescription),
    StreamConsumers {
        consumers: Vec<ConsumerDescription>,
        next_token: Option<String>,
    },
    /// One push of a SubscribeToShard subscription.
    ShardEvent(ShardEvent),
    /// A KMS key's metadata (CreateKey, DescribeKey, key deletion and rotation).
    Key(KeyDescription),
    /// A page of ListKeys.
    Keys {
        keys: Vec<KeyDescription>,
        next_marker: Option<String>,
    },
    /// A page of ListAliases.
    Aliases {
        aliases: Vec<AliasEntry>,
        next_marker: Option<String>,
    },
    /// ListMessageMoveTasks: the most recent first.
    MoveTasks(Vec<MoveTaskDescription>),
    /// LeaseShards and DescribeConsumerGroup.
    ShardLeases(ShardLeases),
    /// Enable/DisableEnhancedMonitoring: the shard-level metrics before and after.
    EnhancedMonitoring {
        stream_name: String,
        stream_arn: String,
        current: Vec<String>,
        desired: Vec<String>,
    },
    /// Encrypt (ciphertext), Decrypt (plaintext), GenerateDataKey (both, or the ciphertext only).
    KeyData {
        key_arn: String,
        ciphertext: Option<Bytes>,
        plaintext: Option<Bytes>,
    },
    /// DescribeAlarms: one page.
    MetricAlarms {
        alarms: Vec<MetricAlarm>,
        next_token: Option<String>,
    },
    /// GetMetricStatistics: each period with data, oldest first.
    MetricStatistics {
        label: String,
        datapoints: Vec<Datapoint>,
    },
    /// GetMetricData: each query's values, in the order asked.
    MetricData {
        results: Vec<MetricDataResult>,
        next_token: Option<String>,
    },
    /// ListMetrics: one page.
    MetricList {
        metrics: Vec<MetricId>,
        next_token: Option<String>,
    },
    /// DescribeDeliveryStream: the `DeliveryStreamDescription` as Firehose's JSON API spells it.
    DeliveryStream(String),
    /// ListDeliveryStreams: one page of names.
    DeliveryStreams {
        names: Vec<String>,
        has_more: bool,
    },
    /// PutRecord / PutRecordBatch: each record's outcome, in order.
    FirehosePut {
        failed: i32,
        encrypted: bool,
        records: Vec<FirehosePutResult>,
    },
}

/// One record's outcome in a Firehose put: its id, or the error that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirehosePutResult {
    pub record_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// A metric's dimension (`QueueName` = `orders`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dimension {
    pub name: String,
    pub value: String,
}

/// A dimension ListMetrics matches: a name, and a value or any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DimensionFilter {
    pub name: String,
    pub value: Option<String>,
}

/// A metric: namespace (`AWS/SQS`), name and dimensions.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricId {
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: Vec<Dimension>,
}

/// A CloudWatch metric alarm: its configuration and, as answered, its ARN and state (times in
/// epoch ms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricAlarm {
    pub name: String,
    pub description: Option<String>,
    pub metric: MetricId,
    /// SampleCount, Average, Sum, Minimum or Maximum.
    pub statistic: String,
    pub period_seconds: u32,
    pub evaluation_periods: u32,
    /// 0: `evaluation_periods`.
    pub datapoints_to_alarm: u32,
    pub threshold: f64,
    pub comparison: String,
    /// breaching, notBreaching, ignore or missing (`None`: missing).
    pub treat_missing_data: Option<String>,
    pub unit: Option<String>,
    pub actions_enabled: bool,
    pub alarm_actions: Vec<String>,
    pub ok_actions: Vec<String>,
    pub insufficient_data_actions: Vec<String>,
    pub arn: String,
    /// OK, ALARM or INSUFFICIENT_DATA.
    pub state: String,
    pub state_reason: String,
    pub state_reason_data: Option<String>,
    pub state_updated_ms: u64,
    pub configuration_updated_ms: u64,
}

/// One period's statistics of a metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Datapoint {
    pub timestamp_ms: u64,
    pub sample_count: f64,
    pub sum: f64,
    pub minimum: f64,
    pub maximum: f64,
    pub unit: Option<String>,
}

/// One query of GetMetricData.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricDataQuery {
    pub id: String,
    pub metric: MetricId,
    pub period_seconds: u32,
    pub stat: String,
    pub label: Option<String>,
    pub return_data: bool,
    pub unit: Option<String>,
}

/// One query's values in GetMetricData.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricDataResult {
    pub id: String,
    pub label: String,
    pub timestamps_ms: Vec<u64>,
    pub values: Vec<f64>,
}

/// A KMS key as DescribeKey reports it (times in epoch ms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyDescription {
    pub key_id: String,
    pub arn: String,
    pub description: String,
    /// `Enabled`, `Disabled` or `PendingDeletion`.
    pub state: String,
    pub created_ms: u64,
    pub deletion_ms: Option<u64>,
    /// `CUSTOMER` or `AWS` (the `alias/aws/…` keys).
    pub manager: String,
    pub key_usage: String,
    pub key_spec: String,
    pub rotation_enabled: bool,
    pub rotation_period_days: i32,
    pub next_rotation_ms: Option<u64>,
}

/// A consumer group's leases (LeaseShards: one worker's; DescribeConsumerGroup: every shard).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardLeases {
    /// How long a lease lasts unless renewed.
    pub lease_ms: u64,
    pub leases: Vec<ShardLease>,
    /// The group's live workers.
    pub workers: Vec<String>,
}

/// One shard of a consumer group's stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardLease {
    pub shard_id: String,
    /// The worker holding it; `None` when free.
    pub worker: Option<String>,
    /// What CheckpointShard names the lease by (0 when free).
    pub token: u64,
    /// The last sequence number processed, `SHARD_END`, or `None` (from the shard's start).
    pub checkpoint: Option<String>,
    /// Milliseconds the lease has left as answered (0 when free).
    pub expires_in_ms: u64,
}

/// The checkpoint of a closed shard read to its end.
pub const SHARD_END: &str = "SHARD_END";

/// One message move task as ListMessageMoveTasks reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoveTaskDescription {
    /// Only while it runs.
    pub task_handle: Option<String>,
    /// `RUNNING`, `COMPLETED`, `CANCELLING`, `CANCELLED` or `FAILED`.
    pub status: String,
    pub source_arn: String,
    pub destination_arn: Option<String>,
    pub max_per_second: Option<i32>,
    pub moved: i64,
    pub to_move: i64,
    pub failure_reason: Option<String>,
    pub started_ms: u64,
}

/// One row of ListAliases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AliasEntry {
    pub name: String,
    pub arn: String,
    /// `None` for an AWS-managed alias whose key is not made yet.
    pub target_key_id: Option<String>,
    pub created_ms: u64,
}

/// One row of ListSubscriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionSummary {
    /// The ARN, or `PendingConfirmation` while unconfirmed.
    pub subscription_arn: String,
    pub owner: String,
    pub protocol: String,
    pub endpoint: String,
    pub topic_arn: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishResult {
    /// Batch entry id; empty for Publish.
    pub id: String,
    pub message_id: String,
    pub sequence_number: Option<String>,
}

/// The outcome of one request.
pub type Response = Result<Reply, OpError>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendResult {
    /// Batch entry id; empty for SendMessage.
    pub id: String,
    pub message_id: String,
    pub md5_of_body: String,
    pub md5_of_attributes: Option<String>,
    pub md5_of_system_attributes: Option<String>,
    pub sequence_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFailure {
    pub id: String,
    pub sender_fault: bool,
    pub code: ErrorCode,
    pub message: String,
}

impl BatchFailure {
    pub fn new(id: impl Into<String>, error: OpError) -> BatchFailure {
        BatchFailure { id: id.into(), sender_fault: error.code.sender_fault(), code: error.code, message: error.message }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub md5_of_body: String,
    pub body: Bytes,
    /// Selected system attributes, e.g. `("SentTimestamp", "1700000000000")`.
    pub attributes: KeyValues,
    pub md5_of_attributes: Option<String>,
    pub message_attributes: Vec<MessageAttribute>,
}

/// ListShards' parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListShards {
    pub stream: Option<String>,
    pub next_token: Option<String>,
    pub exclusive_start_shard_id: Option<String>,
    pub max_results: Option<i32>,
    pub filter_type: Option<String>,
    pub filter_shard_id: Option<String>,
    pub filter_timestamp_ms: Option<i64>,
}

/// One record to put on a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutRecordsEntry {
    /// Kept as a slice of the frame.
    pub data: Bytes,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
}

/// Where a shard iterator or a push subscription starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartingPosition {
    /// `TRIM_HORIZON`, `LATEST`, `AT_SEQUENCE_NUMBER`, `AFTER_SEQUENCE_NUMBER` or `AT_TIMESTAMP`.
    pub kind: String,
    pub sequence_number: Option<String>,
    pub timestamp_ms: Option<i64>,
}

impl StartingPosition {
    pub fn new(kind: impl Into<String>) -> StartingPosition {
        StartingPosition { kind: kind.into(), ..StartingPosition::default() }
    }
}

/// A consumer named by its ARN, or by its stream's ARN and its name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerRef {
    pub stream: Option<String>,
    pub name: Option<String>,
    pub consumer_arn: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardDescription {
    pub shard_id: String,
    pub parent_shard_id: Option<String>,
    pub adjacent_parent_shard_id: Option<String>,
    pub starting_hash_key: String,
    pub ending_hash_key: String,
    pub starting_sequence_number: String,
    /// Set once the shard is closed.
    pub ending_sequence_number: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamDescription {
    pub name: String,
    pub arn: String,
    pub status: String,
    pub mode: String,
    pub retention_hours: i32,
    pub created_ms: u64,
    /// Empty in summaries.
    pub shards: Vec<ShardDescription>,
    pub has_more_shards: bool,
    pub open_shard_count: i32,
    pub consumer_count: i32,
    pub max_record_size_kib: i32,
    /// The KMS key the stream's records are sealed under at rest (StartStreamEncryption);
    /// `None`: EncryptionType NONE.
    pub encryption_key: Option<String>,
    /// Enhanced monitoring's shard-level metrics.
    pub shard_level_metrics: Vec<String>,
}

/// A put record's shard and sequence number, or (in PutRecords) why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutRecordResult {
    Put { shard_id: String, sequence_number: String },
    Failed(OpError),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamRecord {
    pub sequence_number: String,
    pub arrival_ms: u64,
    /// A slice of the frame (client) or of the log read (daemon).
    pub data: Bytes,
    pub partition_key: String,
    /// Whether it is sealed at rest under a KMS key (EncryptionType KMS).
    pub encrypted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildShard {
    pub shard_id: String,
    pub parent_shards: Vec<String>,
    pub starting_hash_key: String,
    pub ending_hash_key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetRecordsResult {
    pub records: Vec<StreamRecord>,
    /// `None` once a closed shard has been read to its end.
    pub next_iterator: Option<String>,
    pub millis_behind_latest: u64,
    pub child_shards: Vec<ChildShard>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerDescription {
    pub name: String,
    pub arn: String,
    pub status: String,
    pub created_ms: u64,
    pub stream_arn: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardEvent {
    pub records: Vec<StreamRecord>,
    pub continuation_sequence_number: String,
    pub millis_behind_latest: u64,
    pub child_shards: Vec<ChildShard>,
}
