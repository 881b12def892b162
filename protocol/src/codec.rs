//! Encoding `ops` values into frames and decoding verified frames back.
//!
//! A frame is the whole size-prefixed flatbuffer: a little-endian `u32` length
//! and that many bytes. Decoding runs the flatbuffers verifier (bounded depth,
//! table count and size) before reading anything; bodies and binary values of
//! the result are slices of the frame's `Bytes`, not copies.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, VerifierOptions, WIPOffset};

use crate::error::{ErrorCode, OpError};
use crate::generated::sluice::wire as fb;
use crate::limits::{VERIFIER_DEPTH_MAX, VERIFIER_TABLES_MAX};
use crate::ops::*;

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid flatbuffer of the expected root type.
    #[error("frame is not a valid {what}: {source}")]
    Invalid {
        what: &'static str,
        #[source]
        source: flatbuffers::InvalidFlatbuffer,
    },
    /// A valid flatbuffer whose operation this side does not know (or has none).
    /// The request id is known, so the sender can be answered.
    #[error("request {id} carries unknown operation type {op_type}")]
    UnknownOp { id: u64, op_type: u8 },
    /// A valid response that carries neither a reply nor an error.
    #[error("response {id} carries neither a reply nor an error")]
    EmptyResponse { id: u64 },
    /// A list longer than any valid message holds (a flatbuffer may point many entries at
    /// one string, so a short frame could otherwise decode to a huge value).
    #[error("message {id} holds a list of {len} entries; at most {max} are accepted")]
    ListTooLong { id: u64, len: usize, max: usize },
}

/// Entries one list of a request may hold when decoded (the longest valid one, PutRecords,
/// has 500; attribute names, tags and batch entries far fewer).
pub const REQUEST_LIST_ENTRIES_MAX: usize = 10_000;
/// Entries one list of a response may hold (GetRecords answers up to 10,000 records).
pub const RESPONSE_LIST_ENTRIES_MAX: usize = 100_000;

fn verifier_options(frame_len: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: VERIFIER_DEPTH_MAX,
        max_tables: VERIFIER_TABLES_MAX,
        // A frame whose shared sub-objects would expand past a few times its own size is hostile.
        max_apparent_size: frame_len.saturating_mul(4).max(1 << 16),
        ignore_missing_null_terminator: false,
    }
}

type FbVector<'a, T> = Option<WIPOffset<Vector<'a, ForwardsUOffset<T>>>>;

/// Encodes requests and responses, reusing one builder's memory across calls.
pub struct Encoder {
    fbb: FlatBufferBuilder<'static>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder { fbb: FlatBufferBuilder::with_capacity(4096) }
    }

    /// Encodes one request frame (length prefix included); valid until the next call.
    pub fn request(&mut self, request: &Request) -> &[u8] {
        self.fbb.reset();
        let fbb = &mut self.fbb;
        let (op_type, op) = encode_op(fbb, &request.op);
        let root = fb::Request::create(fbb, &fb::RequestArgs { id: request.id, op_type, op: Some(op) });
        fbb.finish_size_prefixed(root, None);
        self.fbb.finished_data()
    }

    /// Encodes one response frame (length prefix included); valid until the next call.
    pub fn response(&mut self, id: u64, response: &Response) -> &[u8] {
        self.fbb.reset();
        let fbb = &mut self.fbb;
        let root = match response {
            Ok(reply) => {
                let (reply_type, reply) = encode_reply(fbb, reply);
                fb::Response::create(fbb, &fb::ResponseArgs { id, reply_type, reply: Some(reply), error: None })
            }
            Err(error) => {
                let message = fbb.create_string(&error.message);
                let error = fb::ErrorReply::create(fbb, &fb::ErrorReplyArgs { code: error.code as u16, message: Some(message) });
                fb::Response::create(fbb, &fb::ResponseArgs { id, reply_type: fb::Reply::NONE, reply: None, error: Some(error) })
            }
        };
        fbb.finish_size_prefixed(root, None);
        self.fbb.finished_data()
    }
}

// ------------------------------------------------------------------ encoding helpers

fn opt_str<'a>(fbb: &mut FlatBufferBuilder<'a>, value: &Option<String>) -> Option<WIPOffset<&'a str>> {
    value.as_deref().map(|text| fbb.create_string(text))
}

fn key_values<'a>(fbb: &mut FlatBufferBuilder<'a>, items: &KeyValues) -> FbVector<'a, fb::KeyValue<'a>> {
    if items.is_empty() {
        return None;
    }
    let offsets: Vec<_> = items
        .iter()
        .map(|(key, value)| {
            let key = fbb.create_string(key);
            let value = fbb.create_string(value);
            fb::KeyValue::create(fbb, &fb::KeyValueArgs { key: Some(key), value: Some(value) })
        })
        .collect();
    Some(fbb.create_vector(&offsets))
}

fn strings<'a>(fbb: &mut FlatBufferBuilder<'a>, items: &[String]) -> FbVector<'a, &'a str> {
    if items.is_empty() {
        return None;
    }
    let offsets: Vec<_> = items.iter().map(|item| fbb.create_string(item)).collect();
    Some(fbb.create_vector(&offsets))
}

fn attributes<'a>(fbb: &mut FlatBufferBuilder<'a>, items: &[MessageAttribute]) -> FbVector<'a, fb::MessageAttribute<'a>> {
    if items.is_empty() {
        return None;
    }
    let offsets: Vec<_> = items
        .iter()
        .map(|attribute| {
            let name = fbb.create_string(&attribute.name);
            let data_type = fbb.create_string(&attribute.data_type);
            let string_value = opt_str(fbb, &attribute.string_value);
            let binary_value = attribute.binary_value.as_ref().map(|bytes| fbb.create_vector(bytes));
            fb::MessageAttribute::create(
                fbb,
                &fb::MessageAttributeArgs { name: Some(name), data_type: Some(data_type), string_value, binary_value },
            )
        })
        .collect();
    Some(fbb.create_vector(&offsets))
}

fn failures<'a>(fbb: &mut FlatBufferBuilder<'a>, items: &[BatchFailure]) -> FbVector<'a, fb::BatchFailure<'a>> {
    if items.is_empty() {
        return None;
    }
    let offsets: Vec<_> = items
        .iter()
        .map(|failure| {
            let id = fbb.create_string(&failure.id);
            let message = fbb.create_string(&failure.message);
            fb::BatchFailure::create(
                fbb,
                &fb::BatchFailureArgs {
                    id: Some(id),
                    sender_fault: failure.sender_fault,
                    code: failure.code as u16,
                    message: Some(message),
                },
            )
        })
        .collect();
    Some(fbb.create_vector(&offsets))
}

fn encode_op(fbb: &mut FlatBufferBuilder<'static>, op: &Op) -> (fb::Op, WIPOffset<flatbuffers::UnionWIPOffset>) {
    macro_rules! table {
        ($variant:ident, $args:expr) => {{
            let args = $args;
            (fb::Op::$variant, fb::$variant::create(fbb, &args).as_union_value())
        }};
    }
    match op {
        Op::Hello { protocol_version, client_name } => {
            let client_name = Some(fbb.create_string(client_name));
            table!(Hello, fb::HelloArgs { protocol_version: *protocol_version, client_name })
        }
        Op::CreateQueue { name, attributes, tags } => {
            let name = Some(fbb.create_string(name));
            let attributes = key_values(fbb, attributes);
            let tags = key_values(fbb, tags);
            table!(CreateQueue, fb::CreateQueueArgs { name, attributes, tags })
        }
        Op::GetQueueUrl { name } => {
            let name = Some(fbb.create_string(name));
            table!(GetQueueUrl, fb::GetQueueUrlArgs { name })
        }
        Op::ListQueues { prefix, max_results, next_token } => {
            let prefix = opt_str(fbb, prefix);
            let next_token = opt_str(fbb, next_token);
            table!(ListQueues, fb::ListQueuesArgs { prefix, max_results: *max_results, next_token })
        }
        Op::DeleteQueue { queue } => {
            let queue = Some(fbb.create_string(queue));
            table!(DeleteQueue, fb::DeleteQueueArgs { queue })
        }
        Op::PurgeQueue { queue } => {
            let queue = Some(fbb.create_string(queue));
            table!(PurgeQueue, fb::PurgeQueueArgs { queue })
        }
        Op::GetQueueAttributes { queue, names } => {
            let queue = Some(fbb.create_string(queue));
            let names = strings(fbb, names);
            table!(GetQueueAttributes, fb::GetQueueAttributesArgs { queue, names })
        }
        Op::SetQueueAttributes { queue, attributes } => {
            let queue = Some(fbb.create_string(queue));
            let attributes = key_values(fbb, attributes);
            table!(SetQueueAttributes, fb::SetQueueAttributesArgs { queue, attributes })
        }
        Op::TagQueue { queue, tags } => {
            let queue = Some(fbb.create_string(queue));
            let tags = key_values(fbb, tags);
            table!(TagQueue, fb::TagQueueArgs { queue, tags })
        }
        Op::UntagQueue { queue, keys } => {
            let queue = Some(fbb.create_string(queue));
            let keys = strings(fbb, keys);
            table!(UntagQueue, fb::UntagQueueArgs { queue, keys })
        }
        Op::ListQueueTags { queue } => {
            let queue = Some(fbb.create_string(queue));
            table!(ListQueueTags, fb::ListQueueTagsArgs { queue })
        }
        Op::ListDeadLetterSourceQueues { queue, max_results, next_token } => {
            let queue = Some(fbb.create_string(queue));
            let next_token = opt_str(fbb, next_token);
            table!(ListDeadLetterSourceQueues, fb::ListDeadLetterSourceQueuesArgs { queue, max_results: *max_results, next_token })
        }
        Op::SendMessage { queue, entry } => {
            let queue = Some(fbb.create_string(queue));
            let body = Some(fbb.create_vector(&entry.body));
            let attributes = attributes(fbb, &entry.attributes);
            let system_attributes = self::attributes(fbb, &entry.system_attributes);
            let message_group_id = opt_str(fbb, &entry.message_group_id);
            let deduplication_id = opt_str(fbb, &entry.deduplication_id);
            table!(
                SendMessage,
                fb::SendMessageArgs {
                    queue,
                    body,
                    delay_seconds: entry.delay_seconds,
                    attributes,
                    system_attributes,
                    message_group_id,
                    deduplication_id,
                }
            )
        }
        Op::SendMessageBatch { queue, entries } => {
            let queue = Some(fbb.create_string(queue));
            let offsets: Vec<_> = entries
                .iter()
                .map(|entry| {
                    let id = Some(fbb.create_string(&entry.id));
                    let body = Some(fbb.create_vector(&entry.body));
                    let attributes = attributes(fbb, &entry.attributes);
                    let system_attributes = self::attributes(fbb, &entry.system_attributes);
                    let message_group_id = opt_str(fbb, &entry.message_group_id);
                    let deduplication_id = opt_str(fbb, &entry.deduplication_id);
                    fb::SendMessageEntry::create(
                        fbb,
                        &fb::SendMessageEntryArgs {
                            id,
                            body,
                            delay_seconds: entry.delay_seconds,
                            attributes,
                            system_attributes,
                            message_group_id,
                            deduplication_id,
                        },
                    )
                })
                .collect();
            let entries = Some(fbb.create_vector(&offsets));
            table!(SendMessageBatch, fb::SendMessageBatchArgs { queue, entries })
        }
        Op::ReceiveMessage(receive) => {
            let queue = Some(fbb.create_string(&receive.queue));
            let system_attribute_names = strings(fbb, &receive.system_attribute_names);
            let message_attribute_names = strings(fbb, &receive.message_attribute_names);
            let receive_request_attempt_id = opt_str(fbb, &receive.receive_request_attempt_id);
            table!(
                ReceiveMessage,
                fb::ReceiveMessageArgs {
                    queue,
                    max_messages: receive.max_messages,
                    wait_time_seconds: receive.wait_time_seconds,
                    visibility_timeout: receive.visibility_timeout,
                    system_attribute_names,
                    message_attribute_names,
                    receive_request_attempt_id,
                }
            )
        }
        Op::DeleteMessage { queue, receipt_handle } => {
            let queue = Some(fbb.create_string(queue));
            let receipt_handle = Some(fbb.create_string(receipt_handle));
            table!(DeleteMessage, fb::DeleteMessageArgs { queue, receipt_handle })
        }
        Op::DeleteMessageBatch { queue, entries } => {
            let queue = Some(fbb.create_string(queue));
            let offsets: Vec<_> = entries
                .iter()
                .map(|entry| {
                    let id = Some(fbb.create_string(&entry.id));
                    let receipt_handle = Some(fbb.create_string(&entry.receipt_handle));
                    fb::DeleteMessageEntry::create(fbb, &fb::DeleteMessageEntryArgs { id, receipt_handle })
                })
                .collect();
            let entries = Some(fbb.create_vector(&offsets));
            table!(DeleteMessageBatch, fb::DeleteMessageBatchArgs { queue, entries })
        }
        Op::ChangeMessageVisibility { queue, receipt_handle, visibility_timeout } => {
            let queue = Some(fbb.create_string(queue));
            let receipt_handle = Some(fbb.create_string(receipt_handle));
            table!(
                ChangeMessageVisibility,
                fb::ChangeMessageVisibilityArgs { queue, receipt_handle, visibility_timeout: *visibility_timeout }
            )
        }
        Op::ChangeMessageVisibilityBatch { queue, entries } => {
            let queue = Some(fbb.create_string(queue));
            let offsets: Vec<_> = entries
                .iter()
                .map(|entry| {
                    let id = Some(fbb.create_string(&entry.id));
                    let receipt_handle = Some(fbb.create_string(&entry.receipt_handle));
                    fb::ChangeVisibilityEntry::create(
                        fbb,
                        &fb::ChangeVisibilityEntryArgs { id, receipt_handle, visibility_timeout: entry.visibility_timeout },
                    )
                })
                .collect();
            let entries = Some(fbb.create_vector(&offsets));
            table!(ChangeMessageVisibilityBatch, fb::ChangeMessageVisibilityBatchArgs { queue, entries })
        }
        Op::CreateTopic { name, attributes, tags } => {
            let name = Some(fbb.create_string(name));
            let attributes = key_values(fbb, attributes);
            let tags = key_values(fbb, tags);
            table!(CreateTopic, fb::CreateTopicArgs { name, attributes, tags })
        }
        Op::DeleteTopic { topic } => {
            let topic = Some(fbb.create_string(topic));
            table!(DeleteTopic, fb::DeleteTopicArgs { topic })
        }
        Op::ListTopics { next_token } => {
            let next_token = opt_str(fbb, next_token);
            table!(ListTopics, fb::ListTopicsArgs { next_token })
        }
        Op::GetTopicAttributes { topic } => {
            let topic = Some(fbb.create_string(topic));
            table!(GetTopicAttributes, fb::GetTopicAttributesArgs { topic })
        }
        Op::SetTopicAttributes { topic, name, value } => {
            let topic = Some(fbb.create_string(topic));
            let name = Some(fbb.create_string(name));
            let value = opt_str(fbb, value);
            table!(SetTopicAttributes, fb::SetTopicAttributesArgs { topic, name, value })
        }
        Op::Subscribe { topic, protocol, endpoint, attributes, return_subscription_arn } => {
            let topic = Some(fbb.create_string(topic));
            let protocol = Some(fbb.create_string(protocol));
            let endpoint = opt_str(fbb, endpoint);
            let attributes = key_values(fbb, attributes);
            table!(
                Subscribe,
                fb::SubscribeArgs { topic, protocol, endpoint, attributes, return_subscription_arn: *return_subscription_arn }
            )
        }
        Op::ConfirmSubscription { topic, token, authenticate_on_unsubscribe } => {
            let topic = Some(fbb.create_string(topic));
            let token = Some(fbb.create_string(token));
            table!(
                ConfirmSubscription,
                fb::ConfirmSubscriptionArgs { topic, token, authenticate_on_unsubscribe: *authenticate_on_unsubscribe }
            )
        }
        Op::Unsubscribe { subscription } => {
            let subscription = Some(fbb.create_string(subscription));
            table!(Unsubscribe, fb::UnsubscribeArgs { subscription })
        }
        Op::ListSubscriptions { topic, next_token } => {
            let topic = opt_str(fbb, topic);
            let next_token = opt_str(fbb, next_token);
            table!(ListSubscriptions, fb::ListSubscriptionsArgs { topic, next_token })
        }
        Op::GetSubscriptionAttributes { subscription } => {
            let subscription = Some(fbb.create_string(subscription));
            table!(GetSubscriptionAttributes, fb::GetSubscriptionAttributesArgs { subscription })
        }
        Op::SetSubscriptionAttributes { subscription, name, value } => {
            let subscription = Some(fbb.create_string(subscription));
            let name = Some(fbb.create_string(name));
            let value = opt_str(fbb, value);
            table!(SetSubscriptionAttributes, fb::SetSubscriptionAttributesArgs { subscription, name, value })
        }
        Op::Publish { topic, entry } => {
            let topic = Some(fbb.create_string(topic));
            let entry = Some(publish_entry(fbb, entry));
            table!(Publish, fb::PublishArgs { topic, entry })
        }
        Op::PublishBatch { topic, entries } => {
            let topic = Some(fbb.create_string(topic));
            let offsets: Vec<_> = entries.iter().map(|entry| publish_entry(fbb, entry)).collect();
            let entries = Some(fbb.create_vector(&offsets));
            table!(PublishBatch, fb::PublishBatchArgs { topic, entries })
        }
        Op::CreateStream { name, shard_count, mode, tags } => {
            let name = Some(fbb.create_string(name));
            let mode = opt_str(fbb, mode);
            let tags = key_values(fbb, tags);
            table!(CreateStream, fb::CreateStreamArgs { name, shard_count: *shard_count, mode, tags })
        }
        Op::DeleteStream { stream, enforce_consumer_deletion } => {
            let stream = Some(fbb.create_string(stream));
            table!(DeleteStream, fb::DeleteStreamArgs { stream, enforce_consumer_deletion: *enforce_consumer_deletion })
        }
        Op::DescribeStream { stream, limit, exclusive_start_shard_id } => {
            let stream = Some(fbb.create_string(stream));
            let exclusive_start_shard_id = opt_str(fbb, exclusive_start_shard_id);
            table!(DescribeStream, fb::DescribeStreamArgs { stream, limit: *limit, exclusive_start_shard_id })
        }
        Op::DescribeStreamSummary { stream } => {
            let stream = Some(fbb.create_string(stream));
            table!(DescribeStreamSummary, fb::DescribeStreamSummaryArgs { stream })
        }
        Op::ListStreams { limit, exclusive_start_stream_name, next_token } => {
            let exclusive_start_stream_name = opt_str(fbb, exclusive_start_stream_name);
            let next_token = opt_str(fbb, next_token);
            table!(ListStreams, fb::ListStreamsArgs { limit: *limit, exclusive_start_stream_name, next_token })
        }
        Op::ListShards(list) => {
            let stream = opt_str(fbb, &list.stream);
            let next_token = opt_str(fbb, &list.next_token);
            let exclusive_start_shard_id = opt_str(fbb, &list.exclusive_start_shard_id);
            let filter_type = opt_str(fbb, &list.filter_type);
            let filter_shard_id = opt_str(fbb, &list.filter_shard_id);
            table!(
                ListShards,
                fb::ListShardsArgs {
                    stream,
                    next_token,
                    exclusive_start_shard_id,
                    max_results: list.max_results,
                    filter_type,
                    filter_shard_id,
                    filter_timestamp_ms: list.filter_timestamp_ms,
                }
            )
        }
        Op::PutRecord { stream, record, sequence_number_for_ordering } => {
            let stream = Some(fbb.create_string(stream));
            let record = Some(put_entry(fbb, record));
            let sequence_number_for_ordering = opt_str(fbb, sequence_number_for_ordering);
            table!(PutRecord, fb::PutRecordArgs { stream, record, sequence_number_for_ordering })
        }
        Op::PutRecords { stream, records } => {
            let stream = Some(fbb.create_string(stream));
            let offsets: Vec<_> = records.iter().map(|record| put_entry(fbb, record)).collect();
            let records = Some(fbb.create_vector(&offsets));
            table!(PutRecords, fb::PutRecordsArgs { stream, records })
        }
        Op::GetShardIterator { stream, shard_id, position } => {
            let stream = Some(fbb.create_string(stream));
            let shard_id = Some(fbb.create_string(shard_id));
            let iterator_type = Some(fbb.create_string(&position.kind));
            let starting_sequence_number = opt_str(fbb, &position.sequence_number);
            table!(
                GetShardIterator,
                fb::GetShardIteratorArgs { stream, shard_id, iterator_type, starting_sequence_number, timestamp_ms: position.timestamp_ms }
            )
        }
        Op::GetRecords { iterator, limit } => {
            let iterator = Some(fbb.create_string(iterator));
            table!(GetRecords, fb::GetRecordsArgs { iterator, limit: *limit })
        }
        Op::IncreaseStreamRetentionPeriod { stream, hours } => {
            let stream = Some(fbb.create_string(stream));
            table!(IncreaseStreamRetentionPeriod, fb::IncreaseStreamRetentionPeriodArgs { stream, hours: *hours })
        }
        Op::DecreaseStreamRetentionPeriod { stream, hours } => {
            let stream = Some(fbb.create_string(stream));
            table!(DecreaseStreamRetentionPeriod, fb::DecreaseStreamRetentionPeriodArgs { stream, hours: *hours })
        }
        Op::SplitShard { stream, shard_to_split, new_starting_hash_key } => {
            let stream = Some(fbb.create_string(stream));
            let shard_to_split = Some(fbb.create_string(shard_to_split));
            let new_starting_hash_key = Some(fbb.create_string(new_starting_hash_key));
            table!(SplitShard, fb::SplitShardArgs { stream, shard_to_split, new_starting_hash_key })
        }
        Op::MergeShards { stream, shard_to_merge, adjacent_shard_to_merge } => {
            let stream = Some(fbb.create_string(stream));
            let shard_to_merge = Some(fbb.create_string(shard_to_merge));
            let adjacent_shard_to_merge = Some(fbb.create_string(adjacent_shard_to_merge));
            table!(MergeShards, fb::MergeShardsArgs { stream, shard_to_merge, adjacent_shard_to_merge })
        }
        Op::UpdateShardCount { stream, target_shard_count, scaling_type } => {
            let stream = Some(fbb.create_string(stream));
            let scaling_type = opt_str(fbb, scaling_type);
            table!(UpdateShardCount, fb::UpdateShardCountArgs { stream, target_shard_count: *target_shard_count, scaling_type })
        }
        Op::AddTagsToStream { stream, tags } => {
            let stream = Some(fbb.create_string(stream));
            let tags = key_values(fbb, tags);
            table!(AddTagsToStream, fb::AddTagsToStreamArgs { stream, tags })
        }
        Op::RemoveTagsFromStream { stream, keys } => {
            let stream = Some(fbb.create_string(stream));
            let keys = strings(fbb, keys);
            table!(RemoveTagsFromStream, fb::RemoveTagsFromStreamArgs { stream, keys })
        }
        Op::ListTagsForStream { stream, exclusive_start_tag_key, limit } => {
            let stream = Some(fbb.create_string(stream));
            let exclusive_start_tag_key = opt_str(fbb, exclusive_start_tag_key);
            table!(ListTagsForStream, fb::ListTagsForStreamArgs { stream, exclusive_start_tag_key, limit: *limit })
        }
        Op::RegisterStreamConsumer { stream, name } => {
            let stream = Some(fbb.create_string(stream));
            let name = Some(fbb.create_string(name));
            table!(RegisterStreamConsumer, fb::RegisterStreamConsumerArgs { stream, name })
        }
        Op::DeregisterStreamConsumer(consumer) => {
            let (stream, name, consumer_arn) = consumer_ref(fbb, consumer);
            table!(DeregisterStreamConsumer, fb::DeregisterStreamConsumerArgs { stream, name, consumer_arn })
        }
        Op::DescribeStreamConsumer(consumer) => {
            let (stream, name, consumer_arn) = consumer_ref(fbb, consumer);
            table!(DescribeStreamConsumer, fb::DescribeStreamConsumerArgs { stream, name, consumer_arn })
        }
        Op::ListStreamConsumers { stream, next_token, max_results } => {
            let stream = Some(fbb.create_string(stream));
            let next_token = opt_str(fbb, next_token);
            table!(ListStreamConsumers, fb::ListStreamConsumersArgs { stream, next_token, max_results: *max_results })
        }
        Op::SubscribeToShard { consumer_arn, shard_id, position } => {
            let consumer_arn = Some(fbb.create_string(consumer_arn));
            let shard_id = Some(fbb.create_string(shard_id));
            let starting_position = Some(fbb.create_string(&position.kind));
            let sequence_number = opt_str(fbb, &position.sequence_number);
            table!(
                SubscribeToShard,
                fb::SubscribeToShardArgs {
                    consumer_arn,
                    shard_id,
                    starting_position,
                    sequence_number,
                    timestamp_ms: position.timestamp_ms
                }
            )
        }
    }
}

type ConsumerRefArgs<'a> = (Option<WIPOffset<&'a str>>, Option<WIPOffset<&'a str>>, Option<WIPOffset<&'a str>>);

fn consumer_ref<'a>(fbb: &mut FlatBufferBuilder<'a>, consumer: &ConsumerRef) -> ConsumerRefArgs<'a> {
    (opt_str(fbb, &consumer.stream), opt_str(fbb, &consumer.name), opt_str(fbb, &consumer.consumer_arn))
}

fn put_entry<'a>(fbb: &mut FlatBufferBuilder<'a>, entry: &PutRecordsEntry) -> WIPOffset<fb::PutRecordsEntry<'a>> {
    let data = Some(fbb.create_vector(&entry.data));
    let partition_key = Some(fbb.create_string(&entry.partition_key));
    let explicit_hash_key = opt_str(fbb, &entry.explicit_hash_key);
    fb::PutRecordsEntry::create(fbb, &fb::PutRecordsEntryArgs { data, partition_key, explicit_hash_key })
}

fn stream_shards<'a>(fbb: &mut FlatBufferBuilder<'a>, shards: &[ShardDescription]) -> FbVector<'a, fb::StreamShard<'a>> {
    if shards.is_empty() {
        return None;
    }
    let offsets: Vec<_> = shards
        .iter()
        .map(|shard| {
            let shard_id = Some(fbb.create_string(&shard.shard_id));
            let parent_shard_id = opt_str(fbb, &shard.parent_shard_id);
            let adjacent_parent_shard_id = opt_str(fbb, &shard.adjacent_parent_shard_id);
            let starting_hash_key = Some(fbb.create_string(&shard.starting_hash_key));
            let ending_hash_key = Some(fbb.create_string(&shard.ending_hash_key));
            let starting_sequence_number = Some(fbb.create_string(&shard.starting_sequence_number));
            let ending_sequence_number = opt_str(fbb, &shard.ending_sequence_number);
            fb::StreamShard::create(
                fbb,
                &fb::StreamShardArgs {
                    shard_id,
                    parent_shard_id,
                    adjacent_parent_shard_id,
                    starting_hash_key,
                    ending_hash_key,
                    starting_sequence_number,
                    ending_sequence_number,
                },
            )
        })
        .collect();
    Some(fbb.create_vector(&offsets))
}

fn stream_description<'a>(fbb: &mut FlatBufferBuilder<'a>, stream: &StreamDescription) -> WIPOffset<fb::StreamDescription<'a>> {
    let name = Some(fbb.create_string(&stream.name));
    let arn = Some(fbb.create_string(&stream.arn));
    let status = Some(fbb.create_string(&stream.status));
    let mode = Some(fbb.create_string(&stream.mode));
    let shards = stream_shards(fbb, &stream.shards);
    fb::StreamDescription::create(
        fbb,
        &fb::StreamDescriptionArgs {
            name,
            arn,
            status,
            mode,
            retention_hours: stream.retention_hours,
            created_ms: stream.created_ms,
            shards,
            has_more_shards: stream.has_more_shards,
            open_shard_count: stream.open_shard_count,
            consumer_count: stream.consumer_count,
            max_record_size_kib: stream.max_record_size_kib,
        },
    )
}

fn stream_records<'a>(fbb: &mut FlatBufferBuilder<'a>, records: &[StreamRecord]) -> FbVector<'a, fb::StreamRecord<'a>> {
    if records.is_empty() {
        return None;
    }
    let offsets: Vec<_> = records
        .iter()
        .map(|record| {
            let sequence_number = Some(fbb.create_string(&record.sequence_number));
            let data = Some(fbb.create_vector(&record.data));
            let partition_key = Some(fbb.create_string(&record.partition_key));
            fb::StreamRecord::create(fbb, &fb::StreamRecordArgs { sequence_number, arrival_ms: record.arrival_ms, data, partition_key })
        })
        .collect();
    Some(fbb.create_vector(&offsets))
}

fn child_shards<'a>(fbb: &mut FlatBufferBuilder<'a>, children: &[ChildShard]) -> FbVector<'a, fb::ChildShard<'a>> {
    if children.is_empty() {
        return None;
    }
    let offsets: Vec<_> = children
        .iter()
        .map(|child| {
            let shard_id = Some(fbb.create_string(&child.shard_id));
            let parent_shards = strings(fbb, &child.parent_shards);
            let starting_hash_key = Some(fbb.create_string(&child.starting_hash_key));
            let ending_hash_key = Some(fbb.create_string(&child.ending_hash_key));
            fb::ChildShard::create(fbb, &fb::ChildShardArgs { shard_id, parent_shards, starting_hash_key, ending_hash_key })
        })
        .collect();
    Some(fbb.create_vector(&offsets))
}

fn put_result<'a>(fbb: &mut FlatBufferBuilder<'a>, result: &PutRecordResult) -> WIPOffset<fb::PutRecordResult<'a>> {
    let args = match result {
        PutRecordResult::Put { shard_id, sequence_number } => fb::PutRecordResultArgs {
            shard_id: Some(fbb.create_string(shard_id)),
            sequence_number: Some(fbb.create_string(sequence_number)),
            error_code: 0,
            error_message: None,
        },
        PutRecordResult::Failed(error) => fb::PutRecordResultArgs {
            shard_id: None,
            sequence_number: None,
            error_code: error.code as u16,
            error_message: Some(fbb.create_string(&error.message)),
        },
    };
    fb::PutRecordResult::create(fbb, &args)
}

fn consumer_description<'a>(fbb: &mut FlatBufferBuilder<'a>, consumer: &ConsumerDescription) -> WIPOffset<fb::StreamConsumer<'a>> {
    let name = Some(fbb.create_string(&consumer.name));
    let arn = Some(fbb.create_string(&consumer.arn));
    let status = Some(fbb.create_string(&consumer.status));
    let stream_arn = Some(fbb.create_string(&consumer.stream_arn));
    fb::StreamConsumer::create(fbb, &fb::StreamConsumerArgs { name, arn, status, created_ms: consumer.created_ms, stream_arn })
}

fn publish_entry<'a>(fbb: &mut FlatBufferBuilder<'a>, entry: &PublishEntry) -> WIPOffset<fb::PublishEntry<'a>> {
    let id = (!entry.id.is_empty()).then(|| fbb.create_string(&entry.id));
    let message = Some(fbb.create_vector(&entry.message));
    let subject = opt_str(fbb, &entry.subject);
    let message_structure = opt_str(fbb, &entry.message_structure);
    let attributes = attributes(fbb, &entry.attributes);
    let message_group_id = opt_str(fbb, &entry.message_group_id);
    let deduplication_id = opt_str(fbb, &entry.deduplication_id);
    fb::PublishEntry::create(
        fbb,
        &fb::PublishEntryArgs { id, message, subject, message_structure, attributes, message_group_id, deduplication_id },
    )
}

fn publish_result<'a>(fbb: &mut FlatBufferBuilder<'a>, result: &PublishResult) -> WIPOffset<fb::PublishResult<'a>> {
    let id = (!result.id.is_empty()).then(|| fbb.create_string(&result.id));
    let message_id = Some(fbb.create_string(&result.message_id));
    let sequence_number = opt_str(fbb, &result.sequence_number);
    fb::PublishResult::create(fbb, &fb::PublishResultArgs { id, message_id, sequence_number })
}

fn send_success<'a>(fbb: &mut FlatBufferBuilder<'a>, result: &SendResult) -> WIPOffset<fb::SendMessageBatchSuccess<'a>> {
    let id = Some(fbb.create_string(&result.id));
    let message_id = Some(fbb.create_string(&result.message_id));
    let md5_of_body = Some(fbb.create_string(&result.md5_of_body));
    let md5_of_attributes = opt_str(fbb, &result.md5_of_attributes);
    let md5_of_system_attributes = opt_str(fbb, &result.md5_of_system_attributes);
    let sequence_number = opt_str(fbb, &result.sequence_number);
    fb::SendMessageBatchSuccess::create(
        fbb,
        &fb::SendMessageBatchSuccessArgs { id, message_id, md5_of_body, md5_of_attributes, md5_of_system_attributes, sequence_number },
    )
}

fn encode_reply(fbb: &mut FlatBufferBuilder<'static>, reply: &Reply) -> (fb::Reply, WIPOffset<flatbuffers::UnionWIPOffset>) {
    macro_rules! table {
        ($variant:ident, $args:expr) => {{
            let args = $args;
            (fb::Reply::$variant, fb::$variant::create(fbb, &args).as_union_value())
        }};
    }
    match reply {
        Reply::Hello { protocol_version, server_version, shard_count, shard_id } => {
            let server_version = Some(fbb.create_string(server_version));
            table!(
                HelloResult,
                fb::HelloResultArgs { protocol_version: *protocol_version, server_version, shard_count: *shard_count, shard_id: *shard_id }
            )
        }
        Reply::Done => table!(Done, fb::DoneArgs {}),
        Reply::QueueUrl(url) => {
            let queue_url = Some(fbb.create_string(url));
            table!(QueueUrl, fb::QueueUrlArgs { queue_url })
        }
        Reply::QueueUrls { queue_urls, next_token } => {
            let queue_urls = strings(fbb, queue_urls);
            let next_token = opt_str(fbb, next_token);
            table!(QueueUrls, fb::QueueUrlsArgs { queue_urls, next_token })
        }
        Reply::Attributes(items) => {
            let attributes = key_values(fbb, items);
            table!(Attributes, fb::AttributesArgs { attributes })
        }
        Reply::SendMessage(result) => {
            let message_id = Some(fbb.create_string(&result.message_id));
            let md5_of_body = Some(fbb.create_string(&result.md5_of_body));
            let md5_of_attributes = opt_str(fbb, &result.md5_of_attributes);
            let md5_of_system_attributes = opt_str(fbb, &result.md5_of_system_attributes);
            let sequence_number = opt_str(fbb, &result.sequence_number);
            table!(
                SendMessageResult,
                fb::SendMessageResultArgs { message_id, md5_of_body, md5_of_attributes, md5_of_system_attributes, sequence_number }
            )
        }
        Reply::SendMessageBatch { successful, failed } => {
            let offsets: Vec<_> = successful.iter().map(|result| send_success(fbb, result)).collect();
            let successful = Some(fbb.create_vector(&offsets));
            let failed = failures(fbb, failed);
            table!(SendMessageBatchResult, fb::SendMessageBatchResultArgs { successful, failed })
        }
        Reply::ReceiveMessage(messages) => {
            let offsets: Vec<_> = messages
                .iter()
                .map(|message| {
                    let message_id = Some(fbb.create_string(&message.message_id));
                    let receipt_handle = Some(fbb.create_string(&message.receipt_handle));
                    let md5_of_body = Some(fbb.create_string(&message.md5_of_body));
                    let body = Some(fbb.create_vector(&message.body));
                    let attributes = key_values(fbb, &message.attributes);
                    let md5_of_attributes = opt_str(fbb, &message.md5_of_attributes);
                    let message_attributes = self::attributes(fbb, &message.message_attributes);
                    fb::ReceivedMessage::create(
                        fbb,
                        &fb::ReceivedMessageArgs {
                            message_id,
                            receipt_handle,
                            md5_of_body,
                            body,
                            attributes,
                            md5_of_attributes,
                            message_attributes,
                        },
                    )
                })
                .collect();
            let messages = Some(fbb.create_vector(&offsets));
            table!(ReceiveMessageResult, fb::ReceiveMessageResultArgs { messages })
        }
        Reply::Batch { successful, failed } => {
            let successful = strings(fbb, successful);
            let failed = failures(fbb, failed);
            table!(BatchResult, fb::BatchResultArgs { successful, failed })
        }
        Reply::Arn(arn) => {
            let arn = Some(fbb.create_string(arn));
            table!(Arn, fb::ArnArgs { arn })
        }
        Reply::Arns { arns, next_token } => {
            let arns = strings(fbb, arns);
            let next_token = opt_str(fbb, next_token);
            table!(Arns, fb::ArnsArgs { arns, next_token })
        }
        Reply::Subscriptions { subscriptions, next_token } => {
            let offsets: Vec<_> = subscriptions
                .iter()
                .map(|row| {
                    let subscription_arn = Some(fbb.create_string(&row.subscription_arn));
                    let owner = Some(fbb.create_string(&row.owner));
                    let protocol = Some(fbb.create_string(&row.protocol));
                    let endpoint = Some(fbb.create_string(&row.endpoint));
                    let topic_arn = Some(fbb.create_string(&row.topic_arn));
                    fb::Subscription::create(fbb, &fb::SubscriptionArgs { subscription_arn, owner, protocol, endpoint, topic_arn })
                })
                .collect();
            let subscriptions = Some(fbb.create_vector(&offsets));
            let next_token = opt_str(fbb, next_token);
            table!(Subscriptions, fb::SubscriptionsArgs { subscriptions, next_token })
        }
        Reply::Publish(result) => {
            let offset = publish_result(fbb, result);
            (fb::Reply::PublishResult, offset.as_union_value())
        }
        Reply::PublishBatch { successful, failed } => {
            let offsets: Vec<_> = successful.iter().map(|result| publish_result(fbb, result)).collect();
            let successful = Some(fbb.create_vector(&offsets));
            let failed = failures(fbb, failed);
            table!(PublishBatchResult, fb::PublishBatchResultArgs { successful, failed })
        }
        Reply::StreamDescription(stream) => {
            let offset = stream_description(fbb, stream);
            (fb::Reply::StreamDescription, offset.as_union_value())
        }
        Reply::Streams { streams, has_more, next_token } => {
            let offsets: Vec<_> = streams.iter().map(|stream| stream_description(fbb, stream)).collect();
            let streams = Some(fbb.create_vector(&offsets));
            let next_token = opt_str(fbb, next_token);
            table!(StreamList, fb::StreamListArgs { streams, has_more: *has_more, next_token })
        }
        Reply::Shards { shards, next_token } => {
            let shards = stream_shards(fbb, shards);
            let next_token = opt_str(fbb, next_token);
            table!(ShardList, fb::ShardListArgs { shards, next_token })
        }
        Reply::PutRecord(result) => {
            let offset = put_result(fbb, result);
            (fb::Reply::PutRecordResult, offset.as_union_value())
        }
        Reply::PutRecords { failed_record_count, records } => {
            let offsets: Vec<_> = records.iter().map(|record| put_result(fbb, record)).collect();
            let records = Some(fbb.create_vector(&offsets));
            table!(PutRecordsResult, fb::PutRecordsResultArgs { failed_record_count: *failed_record_count, records })
        }
        Reply::ShardIterator(iterator) => {
            let iterator = Some(fbb.create_string(iterator));
            table!(ShardIterator, fb::ShardIteratorArgs { iterator })
        }
        Reply::Records(result) => {
            let records = stream_records(fbb, &result.records);
            let next_iterator = opt_str(fbb, &result.next_iterator);
            let child_shards = child_shards(fbb, &result.child_shards);
            table!(
                GetRecordsResult,
                fb::GetRecordsResultArgs { records, next_iterator, millis_behind_latest: result.millis_behind_latest, child_shards }
            )
        }
        Reply::ShardCount { stream_name, stream_arn, current_shard_count, target_shard_count } => {
            let stream_name = Some(fbb.create_string(stream_name));
            let stream_arn = Some(fbb.create_string(stream_arn));
            table!(
                ShardCountResult,
                fb::ShardCountResultArgs {
                    stream_name,
                    stream_arn,
                    current_shard_count: *current_shard_count,
                    target_shard_count: *target_shard_count
                }
            )
        }
        Reply::StreamTags { tags, has_more } => {
            let tags = key_values(fbb, tags);
            table!(StreamTags, fb::StreamTagsArgs { tags, has_more: *has_more })
        }
        Reply::StreamConsumer(consumer) => {
            let offset = consumer_description(fbb, consumer);
            (fb::Reply::StreamConsumer, offset.as_union_value())
        }
        Reply::StreamConsumers { consumers, next_token } => {
            let offsets: Vec<_> = consumers.iter().map(|consumer| consumer_description(fbb, consumer)).collect();
            let consumers = Some(fbb.create_vector(&offsets));
            let next_token = opt_str(fbb, next_token);
            table!(StreamConsumers, fb::StreamConsumersArgs { consumers, next_token })
        }
        Reply::ShardEvent(event) => {
            let records = stream_records(fbb, &event.records);
            let continuation_sequence_number = Some(fbb.create_string(&event.continuation_sequence_number));
            let child_shards = child_shards(fbb, &event.child_shards);
            table!(
                SubscribeToShardEvent,
                fb::SubscribeToShardEventArgs {
                    records,
                    continuation_sequence_number,
                    millis_behind_latest: event.millis_behind_latest,
                    child_shards
                }
            )
        }
    }
}

// ------------------------------------------------------------------ decoding helpers

/// The length of a decoded list, for `Reader::bounded`.
trait ListLen {
    fn list_len(&self) -> usize;
}

impl<T> ListLen for Vector<'_, T> {
    fn list_len(&self) -> usize {
        self.len()
    }
}

/// Reads verified tables into owned values; binary data is sliced out of `frame`.
struct Reader<'f> {
    frame: &'f Bytes,
    list_max: usize,
    /// The longest list found over `list_max` (decoded as empty; the caller then refuses).
    too_long: std::cell::Cell<usize>,
}

impl<'f> Reader<'f> {
    fn new(frame: &'f Bytes, list_max: usize) -> Self {
        Reader { frame, list_max, too_long: std::cell::Cell::new(0) }
    }

    /// The list itself when its length is within bounds; `None` (and remembered) when not.
    fn bounded<V: ListLen>(&self, vector: Option<V>) -> Option<V> {
        let vector = vector?;
        if vector.list_len() > self.list_max {
            self.too_long.set(self.too_long.get().max(vector.list_len()));
            return None;
        }
        Some(vector)
    }

    /// Refuses what was decoded if a list was over bounds.
    fn check(&self, id: u64) -> Result<(), DecodeError> {
        match self.too_long.get() {
            0 => Ok(()),
            len => Err(DecodeError::ListTooLong { id, len, max: self.list_max }),
        }
    }

    fn bytes(&self, vector: Option<Vector<'_, u8>>) -> Bytes {
        match vector {
            Some(vector) if !vector.is_empty() => self.frame.slice_ref(vector.bytes()),
            _ => Bytes::new(),
        }
    }

    fn key_values(&self, vector: Option<Vector<'_, ForwardsUOffset<fb::KeyValue<'_>>>>) -> KeyValues {
        self.bounded(vector).map(|items| items.iter().map(|kv| (kv.key().to_owned(), kv.value().to_owned())).collect()).unwrap_or_default()
    }

    fn strings(&self, vector: Option<Vector<'_, ForwardsUOffset<&str>>>) -> Vec<String> {
        self.bounded(vector).map(|items| items.iter().map(str::to_owned).collect()).unwrap_or_default()
    }

    fn attributes(&self, vector: Option<Vector<'_, ForwardsUOffset<fb::MessageAttribute<'_>>>>) -> Vec<MessageAttribute> {
        self.bounded(vector)
            .map(|items| {
                items
                    .iter()
                    .map(|attribute| MessageAttribute {
                        name: attribute.name().to_owned(),
                        data_type: attribute.data_type().to_owned(),
                        string_value: attribute.string_value().map(str::to_owned),
                        binary_value: attribute.binary_value().map(|bytes| self.bytes(Some(bytes))),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn publish_entry(&self, entry: fb::PublishEntry<'_>) -> PublishEntry {
        PublishEntry {
            id: entry.id().unwrap_or_default().to_owned(),
            message: self.bytes(entry.message()),
            subject: owned(entry.subject()),
            message_structure: owned(entry.message_structure()),
            attributes: self.attributes(entry.attributes()),
            message_group_id: owned(entry.message_group_id()),
            deduplication_id: owned(entry.deduplication_id()),
        }
    }

    fn put_entry(&self, entry: fb::PutRecordsEntry<'_>) -> PutRecordsEntry {
        PutRecordsEntry {
            data: self.bytes(entry.data()),
            partition_key: entry.partition_key().to_owned(),
            explicit_hash_key: owned(entry.explicit_hash_key()),
        }
    }

    fn shards(&self, vector: Option<Vector<'_, ForwardsUOffset<fb::StreamShard<'_>>>>) -> Vec<ShardDescription> {
        self.bounded(vector)
            .map(|items| {
                items
                    .iter()
                    .map(|shard| ShardDescription {
                        shard_id: shard.shard_id().to_owned(),
                        parent_shard_id: owned(shard.parent_shard_id()),
                        adjacent_parent_shard_id: owned(shard.adjacent_parent_shard_id()),
                        starting_hash_key: shard.starting_hash_key().to_owned(),
                        ending_hash_key: shard.ending_hash_key().to_owned(),
                        starting_sequence_number: shard.starting_sequence_number().to_owned(),
                        ending_sequence_number: owned(shard.ending_sequence_number()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn stream_description(&self, stream: fb::StreamDescription<'_>) -> StreamDescription {
        StreamDescription {
            name: stream.name().to_owned(),
            arn: stream.arn().to_owned(),
            status: stream.status().unwrap_or_default().to_owned(),
            mode: stream.mode().unwrap_or_default().to_owned(),
            retention_hours: stream.retention_hours(),
            created_ms: stream.created_ms(),
            shards: self.shards(stream.shards()),
            has_more_shards: stream.has_more_shards(),
            open_shard_count: stream.open_shard_count(),
            consumer_count: stream.consumer_count(),
            max_record_size_kib: stream.max_record_size_kib(),
        }
    }

    fn stream_records(&self, vector: Option<Vector<'_, ForwardsUOffset<fb::StreamRecord<'_>>>>) -> Vec<StreamRecord> {
        self.bounded(vector)
            .map(|items| {
                items
                    .iter()
                    .map(|record| StreamRecord {
                        sequence_number: record.sequence_number().to_owned(),
                        arrival_ms: record.arrival_ms(),
                        data: self.bytes(record.data()),
                        partition_key: record.partition_key().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn child_shards(&self, vector: Option<Vector<'_, ForwardsUOffset<fb::ChildShard<'_>>>>) -> Vec<ChildShard> {
        self.bounded(vector)
            .map(|items| {
                items
                    .iter()
                    .map(|child| ChildShard {
                        shard_id: child.shard_id().to_owned(),
                        parent_shards: self.strings(child.parent_shards()),
                        starting_hash_key: child.starting_hash_key().to_owned(),
                        ending_hash_key: child.ending_hash_key().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn failures(&self, vector: Option<Vector<'_, ForwardsUOffset<fb::BatchFailure<'_>>>>) -> Vec<BatchFailure> {
        self.bounded(vector)
            .map(|items| {
                items
                    .iter()
                    .map(|failure| BatchFailure {
                        id: failure.id().to_owned(),
                        sender_fault: failure.sender_fault(),
                        code: ErrorCode::from_u16(failure.code()).unwrap_or(ErrorCode::InternalFailure),
                        message: failure.message().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn read_publish_result(result: fb::PublishResult<'_>) -> PublishResult {
    PublishResult {
        id: result.id().unwrap_or_default().to_owned(),
        message_id: result.message_id().to_owned(),
        sequence_number: owned(result.sequence_number()),
    }
}

fn read_put_result(result: fb::PutRecordResult<'_>) -> PutRecordResult {
    match (result.error_code(), result.shard_id(), result.sequence_number()) {
        (0, Some(shard_id), Some(sequence_number)) => {
            PutRecordResult::Put { shard_id: shard_id.to_owned(), sequence_number: sequence_number.to_owned() }
        }
        (code, _, _) => PutRecordResult::Failed(OpError::new(
            ErrorCode::from_u16(code).unwrap_or(ErrorCode::InternalFailure),
            result.error_message().unwrap_or_default(),
        )),
    }
}

fn read_consumer(consumer: fb::StreamConsumer<'_>) -> ConsumerDescription {
    ConsumerDescription {
        name: consumer.name().to_owned(),
        arn: consumer.arn().to_owned(),
        status: consumer.status().unwrap_or_default().to_owned(),
        created_ms: consumer.created_ms(),
        stream_arn: consumer.stream_arn().unwrap_or_default().to_owned(),
    }
}

fn owned(value: Option<&str>) -> Option<String> {
    value.map(str::to_owned)
}

/// Decodes a whole request frame (length prefix included).
pub fn decode_request(frame: &Bytes) -> Result<Request, DecodeError> {
    let request = flatbuffers::size_prefixed_root_with_opts::<fb::Request>(&verifier_options(frame.len()), frame)
        .map_err(|source| DecodeError::Invalid { what: "Request", source })?;
    let id = request.id();
    let read = Reader::new(frame, REQUEST_LIST_ENTRIES_MAX);
    let unknown = || DecodeError::UnknownOp { id, op_type: request.op_type().0 };
    let op = match request.op_type() {
        fb::Op::Hello => {
            let hello = request.op_as_hello().ok_or_else(unknown)?;
            Op::Hello { protocol_version: hello.protocol_version(), client_name: hello.client_name().unwrap_or_default().to_owned() }
        }
        fb::Op::CreateQueue => {
            let op = request.op_as_create_queue().ok_or_else(unknown)?;
            Op::CreateQueue { name: op.name().to_owned(), attributes: read.key_values(op.attributes()), tags: read.key_values(op.tags()) }
        }
        fb::Op::GetQueueUrl => {
            let op = request.op_as_get_queue_url().ok_or_else(unknown)?;
            Op::GetQueueUrl { name: op.name().to_owned() }
        }
        fb::Op::ListQueues => {
            let op = request.op_as_list_queues().ok_or_else(unknown)?;
            Op::ListQueues { prefix: owned(op.prefix()), max_results: op.max_results(), next_token: owned(op.next_token()) }
        }
        fb::Op::DeleteQueue => {
            let op = request.op_as_delete_queue().ok_or_else(unknown)?;
            Op::DeleteQueue { queue: op.queue().to_owned() }
        }
        fb::Op::PurgeQueue => {
            let op = request.op_as_purge_queue().ok_or_else(unknown)?;
            Op::PurgeQueue { queue: op.queue().to_owned() }
        }
        fb::Op::GetQueueAttributes => {
            let op = request.op_as_get_queue_attributes().ok_or_else(unknown)?;
            Op::GetQueueAttributes { queue: op.queue().to_owned(), names: read.strings(op.names()) }
        }
        fb::Op::SetQueueAttributes => {
            let op = request.op_as_set_queue_attributes().ok_or_else(unknown)?;
            Op::SetQueueAttributes { queue: op.queue().to_owned(), attributes: read.key_values(op.attributes()) }
        }
        fb::Op::TagQueue => {
            let op = request.op_as_tag_queue().ok_or_else(unknown)?;
            Op::TagQueue { queue: op.queue().to_owned(), tags: read.key_values(op.tags()) }
        }
        fb::Op::UntagQueue => {
            let op = request.op_as_untag_queue().ok_or_else(unknown)?;
            Op::UntagQueue { queue: op.queue().to_owned(), keys: read.strings(op.keys()) }
        }
        fb::Op::ListQueueTags => {
            let op = request.op_as_list_queue_tags().ok_or_else(unknown)?;
            Op::ListQueueTags { queue: op.queue().to_owned() }
        }
        fb::Op::ListDeadLetterSourceQueues => {
            let op = request.op_as_list_dead_letter_source_queues().ok_or_else(unknown)?;
            Op::ListDeadLetterSourceQueues {
                queue: op.queue().to_owned(),
                max_results: op.max_results(),
                next_token: owned(op.next_token()),
            }
        }
        fb::Op::SendMessage => {
            let op = request.op_as_send_message().ok_or_else(unknown)?;
            Op::SendMessage {
                queue: op.queue().to_owned(),
                entry: SendEntry {
                    id: String::new(),
                    body: read.bytes(op.body()),
                    delay_seconds: op.delay_seconds(),
                    attributes: read.attributes(op.attributes()),
                    system_attributes: read.attributes(op.system_attributes()),
                    message_group_id: owned(op.message_group_id()),
                    deduplication_id: owned(op.deduplication_id()),
                },
            }
        }
        fb::Op::SendMessageBatch => {
            let op = request.op_as_send_message_batch().ok_or_else(unknown)?;
            let entries = read
                .bounded(op.entries())
                .map(|entries| {
                    entries
                        .iter()
                        .map(|entry| SendEntry {
                            id: entry.id().to_owned(),
                            body: read.bytes(entry.body()),
                            delay_seconds: entry.delay_seconds(),
                            attributes: read.attributes(entry.attributes()),
                            system_attributes: read.attributes(entry.system_attributes()),
                            message_group_id: owned(entry.message_group_id()),
                            deduplication_id: owned(entry.deduplication_id()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Op::SendMessageBatch { queue: op.queue().to_owned(), entries }
        }
        fb::Op::ReceiveMessage => {
            let op = request.op_as_receive_message().ok_or_else(unknown)?;
            Op::ReceiveMessage(ReceiveMessage {
                queue: op.queue().to_owned(),
                max_messages: op.max_messages(),
                wait_time_seconds: op.wait_time_seconds(),
                visibility_timeout: op.visibility_timeout(),
                system_attribute_names: read.strings(op.system_attribute_names()),
                message_attribute_names: read.strings(op.message_attribute_names()),
                receive_request_attempt_id: owned(op.receive_request_attempt_id()),
            })
        }
        fb::Op::DeleteMessage => {
            let op = request.op_as_delete_message().ok_or_else(unknown)?;
            Op::DeleteMessage { queue: op.queue().to_owned(), receipt_handle: op.receipt_handle().to_owned() }
        }
        fb::Op::DeleteMessageBatch => {
            let op = request.op_as_delete_message_batch().ok_or_else(unknown)?;
            let entries = read
                .bounded(op.entries())
                .map(|entries| {
                    entries
                        .iter()
                        .map(|entry| DeleteEntry { id: entry.id().to_owned(), receipt_handle: entry.receipt_handle().to_owned() })
                        .collect()
                })
                .unwrap_or_default();
            Op::DeleteMessageBatch { queue: op.queue().to_owned(), entries }
        }
        fb::Op::ChangeMessageVisibility => {
            let op = request.op_as_change_message_visibility().ok_or_else(unknown)?;
            Op::ChangeMessageVisibility {
                queue: op.queue().to_owned(),
                receipt_handle: op.receipt_handle().to_owned(),
                visibility_timeout: op.visibility_timeout(),
            }
        }
        fb::Op::ChangeMessageVisibilityBatch => {
            let op = request.op_as_change_message_visibility_batch().ok_or_else(unknown)?;
            let entries = read
                .bounded(op.entries())
                .map(|entries| {
                    entries
                        .iter()
                        .map(|entry| VisibilityEntry {
                            id: entry.id().to_owned(),
                            receipt_handle: entry.receipt_handle().to_owned(),
                            visibility_timeout: entry.visibility_timeout(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Op::ChangeMessageVisibilityBatch { queue: op.queue().to_owned(), entries }
        }
        fb::Op::CreateTopic => {
            let op = request.op_as_create_topic().ok_or_else(unknown)?;
            Op::CreateTopic { name: op.name().to_owned(), attributes: read.key_values(op.attributes()), tags: read.key_values(op.tags()) }
        }
        fb::Op::DeleteTopic => Op::DeleteTopic { topic: request.op_as_delete_topic().ok_or_else(unknown)?.topic().to_owned() },
        fb::Op::ListTopics => Op::ListTopics { next_token: owned(request.op_as_list_topics().ok_or_else(unknown)?.next_token()) },
        fb::Op::GetTopicAttributes => {
            Op::GetTopicAttributes { topic: request.op_as_get_topic_attributes().ok_or_else(unknown)?.topic().to_owned() }
        }
        fb::Op::SetTopicAttributes => {
            let op = request.op_as_set_topic_attributes().ok_or_else(unknown)?;
            Op::SetTopicAttributes { topic: op.topic().to_owned(), name: op.name().to_owned(), value: owned(op.value()) }
        }
        fb::Op::Subscribe => {
            let op = request.op_as_subscribe().ok_or_else(unknown)?;
            Op::Subscribe {
                topic: op.topic().to_owned(),
                protocol: op.protocol().to_owned(),
                endpoint: owned(op.endpoint()),
                attributes: read.key_values(op.attributes()),
                return_subscription_arn: op.return_subscription_arn(),
            }
        }
        fb::Op::ConfirmSubscription => {
            let op = request.op_as_confirm_subscription().ok_or_else(unknown)?;
            Op::ConfirmSubscription {
                topic: op.topic().to_owned(),
                token: op.token().to_owned(),
                authenticate_on_unsubscribe: op.authenticate_on_unsubscribe(),
            }
        }
        fb::Op::Unsubscribe => Op::Unsubscribe { subscription: request.op_as_unsubscribe().ok_or_else(unknown)?.subscription().to_owned() },
        fb::Op::ListSubscriptions => {
            let op = request.op_as_list_subscriptions().ok_or_else(unknown)?;
            Op::ListSubscriptions { topic: owned(op.topic()), next_token: owned(op.next_token()) }
        }
        fb::Op::GetSubscriptionAttributes => Op::GetSubscriptionAttributes {
            subscription: request.op_as_get_subscription_attributes().ok_or_else(unknown)?.subscription().to_owned(),
        },
        fb::Op::SetSubscriptionAttributes => {
            let op = request.op_as_set_subscription_attributes().ok_or_else(unknown)?;
            Op::SetSubscriptionAttributes {
                subscription: op.subscription().to_owned(),
                name: op.name().to_owned(),
                value: owned(op.value()),
            }
        }
        fb::Op::Publish => {
            let op = request.op_as_publish().ok_or_else(unknown)?;
            Op::Publish { topic: op.topic().to_owned(), entry: read.publish_entry(op.entry()) }
        }
        fb::Op::PublishBatch => {
            let op = request.op_as_publish_batch().ok_or_else(unknown)?;
            let entries = read
                .bounded(op.entries())
                .map(|entries| entries.iter().map(|entry| read.publish_entry(entry)).collect())
                .unwrap_or_default();
            Op::PublishBatch { topic: op.topic().to_owned(), entries }
        }
        fb::Op::CreateStream => {
            let op = request.op_as_create_stream().ok_or_else(unknown)?;
            Op::CreateStream {
                name: op.name().to_owned(),
                shard_count: op.shard_count(),
                mode: owned(op.mode()),
                tags: read.key_values(op.tags()),
            }
        }
        fb::Op::DeleteStream => {
            let op = request.op_as_delete_stream().ok_or_else(unknown)?;
            Op::DeleteStream { stream: op.stream().to_owned(), enforce_consumer_deletion: op.enforce_consumer_deletion() }
        }
        fb::Op::DescribeStream => {
            let op = request.op_as_describe_stream().ok_or_else(unknown)?;
            Op::DescribeStream {
                stream: op.stream().to_owned(),
                limit: op.limit(),
                exclusive_start_shard_id: owned(op.exclusive_start_shard_id()),
            }
        }
        fb::Op::DescribeStreamSummary => {
            Op::DescribeStreamSummary { stream: request.op_as_describe_stream_summary().ok_or_else(unknown)?.stream().to_owned() }
        }
        fb::Op::ListStreams => {
            let op = request.op_as_list_streams().ok_or_else(unknown)?;
            Op::ListStreams {
                limit: op.limit(),
                exclusive_start_stream_name: owned(op.exclusive_start_stream_name()),
                next_token: owned(op.next_token()),
            }
        }
        fb::Op::ListShards => {
            let op = request.op_as_list_shards().ok_or_else(unknown)?;
            Op::ListShards(ListShards {
                stream: owned(op.stream()),
                next_token: owned(op.next_token()),
                exclusive_start_shard_id: owned(op.exclusive_start_shard_id()),
                max_results: op.max_results(),
                filter_type: owned(op.filter_type()),
                filter_shard_id: owned(op.filter_shard_id()),
                filter_timestamp_ms: op.filter_timestamp_ms(),
            })
        }
        fb::Op::PutRecord => {
            let op = request.op_as_put_record().ok_or_else(unknown)?;
            Op::PutRecord {
                stream: op.stream().to_owned(),
                record: read.put_entry(op.record()),
                sequence_number_for_ordering: owned(op.sequence_number_for_ordering()),
            }
        }
        fb::Op::PutRecords => {
            let op = request.op_as_put_records().ok_or_else(unknown)?;
            let records =
                read.bounded(op.records()).map(|records| records.iter().map(|record| read.put_entry(record)).collect()).unwrap_or_default();
            Op::PutRecords { stream: op.stream().to_owned(), records }
        }
        fb::Op::GetShardIterator => {
            let op = request.op_as_get_shard_iterator().ok_or_else(unknown)?;
            Op::GetShardIterator {
                stream: op.stream().to_owned(),
                shard_id: op.shard_id().to_owned(),
                position: StartingPosition {
                    kind: op.iterator_type().to_owned(),
                    sequence_number: owned(op.starting_sequence_number()),
                    timestamp_ms: op.timestamp_ms(),
                },
            }
        }
        fb::Op::GetRecords => {
            let op = request.op_as_get_records().ok_or_else(unknown)?;
            Op::GetRecords { iterator: op.iterator().to_owned(), limit: op.limit() }
        }
        fb::Op::IncreaseStreamRetentionPeriod => {
            let op = request.op_as_increase_stream_retention_period().ok_or_else(unknown)?;
            Op::IncreaseStreamRetentionPeriod { stream: op.stream().to_owned(), hours: op.hours() }
        }
        fb::Op::DecreaseStreamRetentionPeriod => {
            let op = request.op_as_decrease_stream_retention_period().ok_or_else(unknown)?;
            Op::DecreaseStreamRetentionPeriod { stream: op.stream().to_owned(), hours: op.hours() }
        }
        fb::Op::SplitShard => {
            let op = request.op_as_split_shard().ok_or_else(unknown)?;
            Op::SplitShard {
                stream: op.stream().to_owned(),
                shard_to_split: op.shard_to_split().to_owned(),
                new_starting_hash_key: op.new_starting_hash_key().to_owned(),
            }
        }
        fb::Op::MergeShards => {
            let op = request.op_as_merge_shards().ok_or_else(unknown)?;
            Op::MergeShards {
                stream: op.stream().to_owned(),
                shard_to_merge: op.shard_to_merge().to_owned(),
                adjacent_shard_to_merge: op.adjacent_shard_to_merge().to_owned(),
            }
        }
        fb::Op::UpdateShardCount => {
            let op = request.op_as_update_shard_count().ok_or_else(unknown)?;
            Op::UpdateShardCount {
                stream: op.stream().to_owned(),
                target_shard_count: op.target_shard_count(),
                scaling_type: owned(op.scaling_type()),
            }
        }
        fb::Op::AddTagsToStream => {
            let op = request.op_as_add_tags_to_stream().ok_or_else(unknown)?;
            Op::AddTagsToStream { stream: op.stream().to_owned(), tags: read.key_values(op.tags()) }
        }
        fb::Op::RemoveTagsFromStream => {
            let op = request.op_as_remove_tags_from_stream().ok_or_else(unknown)?;
            Op::RemoveTagsFromStream { stream: op.stream().to_owned(), keys: read.strings(op.keys()) }
        }
        fb::Op::ListTagsForStream => {
            let op = request.op_as_list_tags_for_stream().ok_or_else(unknown)?;
            Op::ListTagsForStream {
                stream: op.stream().to_owned(),
                exclusive_start_tag_key: owned(op.exclusive_start_tag_key()),
                limit: op.limit(),
            }
        }
        fb::Op::RegisterStreamConsumer => {
            let op = request.op_as_register_stream_consumer().ok_or_else(unknown)?;
            Op::RegisterStreamConsumer { stream: op.stream().to_owned(), name: op.name().to_owned() }
        }
        fb::Op::DeregisterStreamConsumer => {
            let op = request.op_as_deregister_stream_consumer().ok_or_else(unknown)?;
            Op::DeregisterStreamConsumer(ConsumerRef {
                stream: owned(op.stream()),
                name: owned(op.name()),
                consumer_arn: owned(op.consumer_arn()),
            })
        }
        fb::Op::DescribeStreamConsumer => {
            let op = request.op_as_describe_stream_consumer().ok_or_else(unknown)?;
            Op::DescribeStreamConsumer(ConsumerRef {
                stream: owned(op.stream()),
                name: owned(op.name()),
                consumer_arn: owned(op.consumer_arn()),
            })
        }
        fb::Op::ListStreamConsumers => {
            let op = request.op_as_list_stream_consumers().ok_or_else(unknown)?;
            Op::ListStreamConsumers { stream: op.stream().to_owned(), next_token: owned(op.next_token()), max_results: op.max_results() }
        }
        fb::Op::SubscribeToShard => {
            let op = request.op_as_subscribe_to_shard().ok_or_else(unknown)?;
            Op::SubscribeToShard {
                consumer_arn: op.consumer_arn().to_owned(),
                shard_id: op.shard_id().to_owned(),
                position: StartingPosition {
                    kind: op.starting_position().to_owned(),
                    sequence_number: owned(op.sequence_number()),
                    timestamp_ms: op.timestamp_ms(),
                },
            }
        }
        _ => return Err(unknown()),
    };
    read.check(id)?;
    Ok(Request { id, op })
}

/// Decodes a whole response frame (length prefix included) into its id and outcome.
pub fn decode_response(frame: &Bytes) -> Result<(u64, Response), DecodeError> {
    let response = flatbuffers::size_prefixed_root_with_opts::<fb::Response>(&verifier_options(frame.len()), frame)
        .map_err(|source| DecodeError::Invalid { what: "Response", source })?;
    let id = response.id();
    if let Some(error) = response.error() {
        let code = ErrorCode::from_u16(error.code()).unwrap_or(ErrorCode::InternalFailure);
        return Ok((id, Err(OpError::new(code, error.message().unwrap_or_default()))));
    }
    let read = Reader::new(frame, RESPONSE_LIST_ENTRIES_MAX);
    let empty = || DecodeError::EmptyResponse { id };
    let reply = match response.reply_type() {
        fb::Reply::HelloResult => {
            let hello = response.reply_as_hello_result().ok_or_else(empty)?;
            Reply::Hello {
                protocol_version: hello.protocol_version(),
                server_version: hello.server_version().unwrap_or_default().to_owned(),
                shard_count: hello.shard_count(),
                shard_id: hello.shard_id(),
            }
        }
        fb::Reply::Done => Reply::Done,
        fb::Reply::QueueUrl => Reply::QueueUrl(response.reply_as_queue_url().ok_or_else(empty)?.queue_url().to_owned()),
        fb::Reply::QueueUrls => {
            let urls = response.reply_as_queue_urls().ok_or_else(empty)?;
            Reply::QueueUrls { queue_urls: read.strings(urls.queue_urls()), next_token: owned(urls.next_token()) }
        }
        fb::Reply::Attributes => Reply::Attributes(read.key_values(response.reply_as_attributes().ok_or_else(empty)?.attributes())),
        fb::Reply::SendMessageResult => {
            let result = response.reply_as_send_message_result().ok_or_else(empty)?;
            Reply::SendMessage(SendResult {
                id: String::new(),
                message_id: result.message_id().to_owned(),
                md5_of_body: result.md5_of_body().to_owned(),
                md5_of_attributes: owned(result.md5_of_attributes()),
                md5_of_system_attributes: owned(result.md5_of_system_attributes()),
                sequence_number: owned(result.sequence_number()),
            })
        }
        fb::Reply::SendMessageBatchResult => {
            let result = response.reply_as_send_message_batch_result().ok_or_else(empty)?;
            let successful = read
                .bounded(result.successful())
                .map(|items| {
                    items
                        .iter()
                        .map(|ok| SendResult {
                            id: ok.id().to_owned(),
                            message_id: ok.message_id().to_owned(),
                            md5_of_body: ok.md5_of_body().to_owned(),
                            md5_of_attributes: owned(ok.md5_of_attributes()),
                            md5_of_system_attributes: owned(ok.md5_of_system_attributes()),
                            sequence_number: owned(ok.sequence_number()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Reply::SendMessageBatch { successful, failed: read.failures(result.failed()) }
        }
        fb::Reply::ReceiveMessageResult => {
            let result = response.reply_as_receive_message_result().ok_or_else(empty)?;
            let messages = read
                .bounded(result.messages())
                .map(|items| {
                    items
                        .iter()
                        .map(|message| ReceivedMessage {
                            message_id: message.message_id().to_owned(),
                            receipt_handle: message.receipt_handle().to_owned(),
                            md5_of_body: message.md5_of_body().to_owned(),
                            body: read.bytes(message.body()),
                            attributes: read.key_values(message.attributes()),
                            md5_of_attributes: owned(message.md5_of_attributes()),
                            message_attributes: read.attributes(message.message_attributes()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Reply::ReceiveMessage(messages)
        }
        fb::Reply::BatchResult => {
            let result = response.reply_as_batch_result().ok_or_else(empty)?;
            Reply::Batch { successful: read.strings(result.successful()), failed: read.failures(result.failed()) }
        }
        fb::Reply::Arn => Reply::Arn(response.reply_as_arn().ok_or_else(empty)?.arn().to_owned()),
        fb::Reply::Arns => {
            let arns = response.reply_as_arns().ok_or_else(empty)?;
            Reply::Arns { arns: read.strings(arns.arns()), next_token: owned(arns.next_token()) }
        }
        fb::Reply::Subscriptions => {
            let page = response.reply_as_subscriptions().ok_or_else(empty)?;
            let subscriptions = read
                .bounded(page.subscriptions())
                .map(|rows| {
                    rows.iter()
                        .map(|row| SubscriptionSummary {
                            subscription_arn: row.subscription_arn().to_owned(),
                            owner: row.owner().unwrap_or_default().to_owned(),
                            protocol: row.protocol().unwrap_or_default().to_owned(),
                            endpoint: row.endpoint().unwrap_or_default().to_owned(),
                            topic_arn: row.topic_arn().unwrap_or_default().to_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Reply::Subscriptions { subscriptions, next_token: owned(page.next_token()) }
        }
        fb::Reply::PublishResult => Reply::Publish(read_publish_result(response.reply_as_publish_result().ok_or_else(empty)?)),
        fb::Reply::PublishBatchResult => {
            let result = response.reply_as_publish_batch_result().ok_or_else(empty)?;
            let successful =
                read.bounded(result.successful()).map(|items| items.iter().map(read_publish_result).collect()).unwrap_or_default();
            Reply::PublishBatch { successful, failed: read.failures(result.failed()) }
        }
        fb::Reply::StreamDescription => {
            Reply::StreamDescription(read.stream_description(response.reply_as_stream_description().ok_or_else(empty)?))
        }
        fb::Reply::StreamList => {
            let list = response.reply_as_stream_list().ok_or_else(empty)?;
            let streams = read
                .bounded(list.streams())
                .map(|items| items.iter().map(|stream| read.stream_description(stream)).collect())
                .unwrap_or_default();
            Reply::Streams { streams, has_more: list.has_more(), next_token: owned(list.next_token()) }
        }
        fb::Reply::ShardList => {
            let list = response.reply_as_shard_list().ok_or_else(empty)?;
            Reply::Shards { shards: read.shards(list.shards()), next_token: owned(list.next_token()) }
        }
        fb::Reply::PutRecordResult => Reply::PutRecord(read_put_result(response.reply_as_put_record_result().ok_or_else(empty)?)),
        fb::Reply::PutRecordsResult => {
            let result = response.reply_as_put_records_result().ok_or_else(empty)?;
            let records = read.bounded(result.records()).map(|items| items.iter().map(read_put_result).collect()).unwrap_or_default();
            Reply::PutRecords { failed_record_count: result.failed_record_count(), records }
        }
        fb::Reply::ShardIterator => Reply::ShardIterator(response.reply_as_shard_iterator().ok_or_else(empty)?.iterator().to_owned()),
        fb::Reply::GetRecordsResult => {
            let result = response.reply_as_get_records_result().ok_or_else(empty)?;
            Reply::Records(GetRecordsResult {
                records: read.stream_records(result.records()),
                next_iterator: owned(result.next_iterator()),
                millis_behind_latest: result.millis_behind_latest(),
                child_shards: read.child_shards(result.child_shards()),
            })
        }
        fb::Reply::ShardCountResult => {
            let result = response.reply_as_shard_count_result().ok_or_else(empty)?;
            Reply::ShardCount {
                stream_name: result.stream_name().to_owned(),
                stream_arn: result.stream_arn().to_owned(),
                current_shard_count: result.current_shard_count(),
                target_shard_count: result.target_shard_count(),
            }
        }
        fb::Reply::StreamTags => {
            let result = response.reply_as_stream_tags().ok_or_else(empty)?;
            Reply::StreamTags { tags: read.key_values(result.tags()), has_more: result.has_more() }
        }
        fb::Reply::StreamConsumer => Reply::StreamConsumer(read_consumer(response.reply_as_stream_consumer().ok_or_else(empty)?)),
        fb::Reply::StreamConsumers => {
            let result = response.reply_as_stream_consumers().ok_or_else(empty)?;
            let consumers = read.bounded(result.consumers()).map(|items| items.iter().map(read_consumer).collect()).unwrap_or_default();
            Reply::StreamConsumers { consumers, next_token: owned(result.next_token()) }
        }
        fb::Reply::SubscribeToShardEvent => {
            let event = response.reply_as_subscribe_to_shard_event().ok_or_else(empty)?;
            Reply::ShardEvent(ShardEvent {
                records: read.stream_records(event.records()),
                continuation_sequence_number: event.continuation_sequence_number().unwrap_or_default().to_owned(),
                millis_behind_latest: event.millis_behind_latest(),
                child_shards: read.child_shards(event.child_shards()),
            })
        }
        _ => return Err(empty()),
    };
    read.check(id)?;
    Ok((id, Ok(reply)))
}
