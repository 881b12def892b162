//! Limits of the protocol and of SQS semantics, in one place.
//!
//! Each constant names its unit; the daemon enforces them, the client uses them
//! to split work into valid requests.

/// Version spoken in `Hello`; bumped only for incompatible changes.
pub const PROTOCOL_VERSION: u16 = 1;

/// Default cap on one frame's length (the u32 prefix), configurable on the daemon.
/// A larger prefix closes the connection before anything is allocated.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 16 * 1024 * 1024;
/// Size of the little-endian length prefix that precedes every flatbuffer.
pub const FRAME_PREFIX_BYTES: usize = 4;
/// Nesting depth the flatbuffers verifier accepts; our schema nests at most 5 deep.
pub const VERIFIER_DEPTH_MAX: usize = 16;
/// Tables the verifier accepts in one frame: bounds verification work per byte received.
pub const VERIFIER_TABLES_MAX: usize = 1 << 20;

/// SQS: entries in SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch.
pub const BATCH_ENTRIES_MAX: usize = 10;
/// SQS: sum of the message sizes in one SendMessageBatch.
pub const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// SQS: batch entry id length.
pub const BATCH_ENTRY_ID_CHARS_MAX: usize = 80;
/// SQS: lower bound of MaximumMessageSize.
pub const MESSAGE_BYTES_MIN_LIMIT: u32 = 1024;
/// SQS: upper bound (and default) of MaximumMessageSize.
pub const MESSAGE_BYTES_MAX: u32 = 1024 * 1024;
/// SQS: message attributes per message.
pub const MESSAGE_ATTRIBUTES_MAX: usize = 10;
/// SQS: message attribute name and data type length.
pub const MESSAGE_ATTRIBUTE_NAME_CHARS_MAX: usize = 256;
/// SQS: messages returned by one ReceiveMessage.
pub const RECEIVE_MESSAGES_MAX: i32 = 10;
/// SQS: long-poll wait.
pub const WAIT_SECONDS_MAX: i32 = 20;
/// SQS: visibility timeout, and the total invisibility of one receive.
pub const VISIBILITY_SECONDS_MAX: i32 = 43_200;
/// SQS: delivery delay.
pub const DELAY_SECONDS_MAX: i32 = 900;
/// SQS: MessageRetentionPeriod range.
pub const RETENTION_SECONDS_MIN: i64 = 60;
pub const RETENTION_SECONDS_MAX: i64 = 1_209_600;
/// SQS: queue name length.
pub const QUEUE_NAME_CHARS_MAX: usize = 80;
/// SQS: ListQueues and ListDeadLetterSourceQueues page size.
pub const LIST_RESULTS_MAX: i32 = 1000;
/// SQS: in-flight messages per standard queue before ReceiveMessage answers OverLimit.
pub const INFLIGHT_MESSAGES_MAX: usize = 120_000;
/// How long a FIFO queue remembers a deduplication id, and a receive request attempt id (ms).
pub const FIFO_DEDUP_WINDOW_MS: u64 = 300_000;
/// Characters of a message group id, deduplication id or receive request attempt id.
pub const FIFO_ID_CHARS_MAX: usize = 128;
/// SQS: seconds after DeleteQueue before the name can be created again.
pub const QUEUE_RECREATE_DELAY_SECONDS: u64 = 60;
/// SQS: seconds between two purges of one queue.
pub const PURGE_INTERVAL_SECONDS: u64 = 60;
/// SQS: maxReceiveCount range of a RedrivePolicy.
pub const MAX_RECEIVE_COUNT_MIN: i64 = 1;
pub const MAX_RECEIVE_COUNT_MAX: i64 = 1000;
/// SQS: source queue ARNs in a byQueue RedriveAllowPolicy.
pub const REDRIVE_ALLOW_SOURCES_MAX: usize = 10;
/// SQS: tags per queue.
pub const QUEUE_TAGS_MAX: usize = 50;
/// SQS: bytes of a queue's access policy (AWS's policy quota).
pub const QUEUE_POLICY_BYTES_MAX: usize = 8192;
/// Queues one server holds by default (`--queues-max`; SQS sets no per-account limit, but
/// every queue is held in memory on every core and in the metadata file).
pub const QUEUES_MAX_DEFAULT: usize = 100_000;

/// SNS: topic name length.
pub const TOPIC_NAME_CHARS_MAX: usize = 256;
/// SNS: a message plus its attributes, in bytes (Publish and each PublishBatch entry), and a
/// whole PublishBatch.
pub const PUBLISH_BYTES_MAX: usize = 256 * 1024;
/// SNS: entries in one PublishBatch.
pub const PUBLISH_BATCH_ENTRIES_MAX: usize = 10;
/// SNS: Subject length in characters (fewer than 100).
pub const SUBJECT_CHARS_MAX: usize = 99;
/// SNS: topics per server (AWS's per-account default for standard topics).
pub const TOPICS_MAX: usize = 100_000;
/// SNS: subscriptions per topic (AWS's default quota).
pub const SUBSCRIPTIONS_PER_TOPIC_MAX: usize = 12_500_000;
/// Subscriptions one server holds over all topics, by default (`--subscriptions-max`).
pub const SUBSCRIPTIONS_MAX_DEFAULT: usize = 100_000;
/// SNS: characters of a topic's DisplayName.
pub const DISPLAY_NAME_CHARS_MAX: usize = 100;
/// SNS: bytes of a topic or subscription attribute other than a filter policy (topic
/// access policies: 30 KiB).
pub const TOPIC_ATTRIBUTE_BYTES_MAX: usize = 30 * 1024;
/// Largest stream resource policy (PutResourcePolicy), as Kinesis allows.
pub const STREAM_POLICY_BYTES_MAX: usize = 20 * 1024;
/// SNS: subscriptions with a filter policy per topic.
pub const FILTER_POLICIES_PER_TOPIC_MAX: usize = 200;
/// SNS: items in one page of ListTopics / ListSubscriptions(ByTopic).
pub const TOPIC_LIST_PAGE_MAX: usize = 100;
/// SNS: tags per topic.
pub const TOPIC_TAGS_MAX: usize = 50;
/// SNS: message attributes a raw-delivery SQS subscriber can take.
pub const RAW_DELIVERY_ATTRIBUTES_MAX: usize = 10;
/// SNS filter policies: keys per policy, value combinations, bytes, numeric magnitude.
pub const FILTER_POLICY_KEYS_MAX: usize = 5;
pub const FILTER_POLICY_COMBINATIONS_MAX: usize = 150;
pub const FILTER_POLICY_BYTES_MAX: usize = 256 * 1024;
pub const FILTER_POLICY_NUMBER_MAX: f64 = 1e9;

// ---------------------------------------------------------------- Kinesis streams

/// Stream names: 1–128 of `[a-zA-Z0-9_.-]`.
pub const STREAM_NAME_CHARS_MAX: usize = 128;
/// Partition keys: 1–256 Unicode characters.
pub const PARTITION_KEY_CHARS_MAX: usize = 256;
/// Data plus partition key of one record (Kinesis's default MaxRecordSizeInKiB, 1 MiB).
pub const RECORD_BYTES_MAX: usize = 1024 * 1024;
/// What a stream's MaxRecordSizeInKiB may be set to (Kinesis: 1 MiB to 10 MiB).
pub const RECORD_KIB_MIN: i32 = 1024;
pub const RECORD_KIB_MAX: i32 = 10 * 1024;
/// Records in one PutRecords.
pub const PUT_RECORDS_MAX: usize = 500;
/// Bytes (data and partition keys) in one PutRecords (Kinesis: 10 MiB since records may be).
pub const PUT_RECORDS_BYTES_MAX: usize = 10 * 1024 * 1024;
/// Records one GetRecords returns at most (and its largest `Limit`).
pub const GET_RECORDS_MAX: i32 = 10_000;
/// Bytes one GetRecords returns at most.
pub const GET_RECORDS_BYTES_MAX: usize = 10 * 1024 * 1024;
/// A shard iterator's lifetime.
pub const ITERATOR_LIFETIME_MS: u64 = 5 * 60 * 1000;
/// A ListShards/ListStreams/ListStreamConsumers token's lifetime.
pub const LIST_TOKEN_LIFETIME_MS: u64 = 300 * 1000;
/// Retention bounds and default, in hours.
pub const RETENTION_HOURS_MIN: i32 = 24;
pub const RETENTION_HOURS_MAX: i32 = 8760;
/// Shards per stream (open and closed, until they expire). Kinesis allows more by
/// request; each shard here is a log of its own.
pub const STREAM_SHARDS_MAX: usize = 1000;
/// Stream shards one server holds by default, over all streams (`--stream-shards-max`; Kinesis's
/// default per-account shard quota outside its largest regions).
pub const STREAM_SHARDS_TOTAL_MAX_DEFAULT: usize = 1000;
/// Shards an on-demand stream starts with (Kinesis: 4 MB/s of writes).
pub const ON_DEMAND_SHARDS: i32 = 4;
/// Registered (enhanced fan-out) consumers per stream.
pub const STREAM_CONSUMERS_MAX: usize = 20;
/// Tags per stream.
pub const STREAM_TAGS_MAX: usize = 50;
/// Shards DescribeStream lists per call, and its largest `Limit`.
pub const DESCRIBE_STREAM_SHARDS_MAX: i32 = 100;
/// Shards ListShards lists per call by default, and its largest `MaxResults`.
pub const LIST_SHARDS_MAX: i32 = 1000;
/// Stream names ListStreams lists per call by default, and its largest `Limit`.
pub const LIST_STREAMS_MAX: i32 = 100;
/// How long a SubscribeToShard subscription lasts before the client subscribes again.
pub const SUBSCRIPTION_LIFETIME_MS: u64 = 5 * 60 * 1000;
/// Per-shard limits applied with `--enforce-shard-limits`.
pub const SHARD_WRITE_BYTES_PER_S: u64 = 1024 * 1024;
pub const SHARD_WRITE_RECORDS_PER_S: u64 = 1000;
pub const SHARD_READ_BYTES_PER_S: u64 = 2 * 1024 * 1024;
pub const SHARD_READ_CALLS_PER_S: u64 = 5;
