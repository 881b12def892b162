//! Replies on the wire: each reply's encoding and decoding (replies are shared by the
//! services: `Done`, `Attributes`, `Arn` …).

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::*;

pub(super) fn encode_reply(fbb: &mut FlatBufferBuilder<'static>, reply: &Reply) -> (fb::Reply, WIPOffset<flatbuffers::UnionWIPOffset>) {
    macro_rules! table {
        ($variant:ident, $args:expr) => {{
            let args = $args;
            (fb::Reply::$variant, fb::$variant::create(fbb, &args).as_union_value())
        }};
    }
    match reply {
        Reply::MetricAlarms { .. } | Reply::MetricStatistics { .. } | Reply::MetricData { .. } | Reply::MetricList { .. } => {
            super::monitor::encode_reply(fbb, reply).expect("a monitoring reply")
        }
        Reply::DeliveryStream(_) | Reply::DeliveryStreams { .. } | Reply::FirehosePut { .. } => {
            super::firehose::encode_reply(fbb, reply).expect("a Firehose reply")
        }
        Reply::Hello { protocol_version, server_version, shard_count, shard_id, auth_nonce } => {
            let server_version = Some(fbb.create_string(server_version));
            let auth_nonce = auth_nonce.as_deref().map(|nonce| fbb.create_string(nonce));
            table!(
                HelloResult,
                fb::HelloResultArgs {
                    protocol_version: *protocol_version,
                    server_version,
                    shard_count: *shard_count,
                    shard_id: *shard_id,
                    auth_nonce,
                }
            )
        }
        Reply::Authenticated { principal_arn, account_id } => {
            let principal_arn = Some(fbb.create_string(principal_arn));
            let account_id = Some(fbb.create_string(account_id));
            table!(Authenticated, fb::AuthenticatedArgs { principal_arn, account_id })
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
        Reply::Key(key) => {
            let offset = key_metadata(fbb, key);
            (fb::Reply::KeyMetadata, offset.as_union_value())
        }
        Reply::Keys { keys, next_marker } => {
            let offsets: Vec<_> = keys.iter().map(|key| key_metadata(fbb, key)).collect();
            let keys = Some(fbb.create_vector(&offsets));
            let next_marker = opt_str(fbb, next_marker);
            table!(Keys, fb::KeysArgs { keys, next_marker })
        }
        Reply::Aliases { aliases, next_marker } => {
            let offsets: Vec<_> = aliases
                .iter()
                .map(|alias| {
                    let name = Some(fbb.create_string(&alias.name));
                    let arn = Some(fbb.create_string(&alias.arn));
                    let target_key_id = opt_str(fbb, &alias.target_key_id);
                    fb::KmsAlias::create(fbb, &fb::KmsAliasArgs { name, arn, target_key_id, created_ms: alias.created_ms })
                })
                .collect();
            let aliases = Some(fbb.create_vector(&offsets));
            let next_marker = opt_str(fbb, next_marker);
            table!(Aliases, fb::AliasesArgs { aliases, next_marker })
        }
        Reply::ShardLeases(ShardLeases { lease_ms, leases, workers }) => {
            let offsets: Vec<_> = leases
                .iter()
                .map(|lease| {
                    let shard_id = Some(fbb.create_string(&lease.shard_id));
                    let worker = opt_str(fbb, &lease.worker);
                    let checkpoint = opt_str(fbb, &lease.checkpoint);
                    let args = fb::ShardLeaseArgs { shard_id, worker, token: lease.token, checkpoint, expires_in_ms: lease.expires_in_ms };
                    fb::ShardLease::create(fbb, &args)
                })
                .collect();
            let leases = Some(fbb.create_vector(&offsets));
            let workers = strings(fbb, workers);
            table!(ShardLeases, fb::ShardLeasesArgs { lease_ms: *lease_ms, leases, workers })
        }
        Reply::EnhancedMonitoring { stream_name, stream_arn, current, desired } => {
            let (stream_name, stream_arn) = (Some(fbb.create_string(stream_name)), Some(fbb.create_string(stream_arn)));
            let (current, desired) = (strings(fbb, current), strings(fbb, desired));
            table!(EnhancedMonitoring, fb::EnhancedMonitoringArgs { stream_name, stream_arn, current, desired })
        }
        Reply::MoveTasks(tasks) => {
            let offsets: Vec<_> = tasks
                .iter()
                .map(|task| {
                    let task_handle = opt_str(fbb, &task.task_handle);
                    let status = Some(fbb.create_string(&task.status));
                    let source_arn = Some(fbb.create_string(&task.source_arn));
                    let destination_arn = opt_str(fbb, &task.destination_arn);
                    let failure_reason = opt_str(fbb, &task.failure_reason);
                    let args = fb::MoveTaskArgs {
                        task_handle,
                        status,
                        source_arn,
                        destination_arn,
                        max_per_second: task.max_per_second.unwrap_or(0),
                        moved: task.moved,
                        to_move: task.to_move,
                        failure_reason,
                        started_ms: task.started_ms,
                    };
                    fb::MoveTask::create(fbb, &args)
                })
                .collect();
            let tasks = Some(fbb.create_vector(&offsets));
            table!(MoveTasks, fb::MoveTasksArgs { tasks })
        }
        Reply::KeyData { key_arn, ciphertext, plaintext } => {
            let key_arn = Some(fbb.create_string(key_arn));
            let ciphertext = ciphertext.as_ref().map(|bytes| fbb.create_vector(bytes));
            let plaintext = plaintext.as_ref().map(|bytes| fbb.create_vector(bytes));
            table!(KeyData, fb::KeyDataArgs { key_arn, ciphertext, plaintext })
        }
    }
}

fn key_metadata<'a>(fbb: &mut FlatBufferBuilder<'a>, key: &KeyDescription) -> WIPOffset<fb::KeyMetadata<'a>> {
    let key_id = Some(fbb.create_string(&key.key_id));
    let arn = Some(fbb.create_string(&key.arn));
    let description = Some(fbb.create_string(&key.description));
    let state = Some(fbb.create_string(&key.state));
    let manager = Some(fbb.create_string(&key.manager));
    let key_usage = Some(fbb.create_string(&key.key_usage));
    let key_spec = Some(fbb.create_string(&key.key_spec));
    fb::KeyMetadata::create(
        fbb,
        &fb::KeyMetadataArgs {
            key_id,
            arn,
            description,
            state,
            created_ms: key.created_ms,
            deletion_ms: key.deletion_ms.unwrap_or(0),
            manager,
            key_usage,
            key_spec,
            rotation_enabled: key.rotation_enabled,
            rotation_period_days: key.rotation_period_days,
            next_rotation_ms: key.next_rotation_ms.unwrap_or(0),
        },
    )
}

fn read_key(key: fb::KeyMetadata<'_>) -> KeyDescription {
    let nonzero = |ms: u64| (ms != 0).then_some(ms);
    KeyDescription {
        key_id: key.key_id().to_owned(),
        arn: key.arn().to_owned(),
        description: key.description().unwrap_or_default().to_owned(),
        state: key.state().to_owned(),
        created_ms: key.created_ms(),
        deletion_ms: nonzero(key.deletion_ms()),
        manager: key.manager().unwrap_or_default().to_owned(),
        key_usage: key.key_usage().unwrap_or_default().to_owned(),
        key_spec: key.key_spec().unwrap_or_default().to_owned(),
        rotation_enabled: key.rotation_enabled(),
        rotation_period_days: key.rotation_period_days(),
        next_rotation_ms: nonzero(key.next_rotation_ms()),
    }
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
                auth_nonce: owned(hello.auth_nonce()),
            }
        }
        fb::Reply::Authenticated => {
            let auth = response.reply_as_authenticated().ok_or_else(empty)?;
            Reply::Authenticated {
                principal_arn: auth.principal_arn().unwrap_or_default().to_owned(),
                account_id: auth.account_id().unwrap_or_default().to_owned(),
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
        fb::Reply::KeyMetadata => Reply::Key(read_key(response.reply_as_key_metadata().ok_or_else(empty)?)),
        fb::Reply::Keys => {
            let result = response.reply_as_keys().ok_or_else(empty)?;
            let keys = read.bounded(result.keys()).map(|items| items.iter().map(read_key).collect()).unwrap_or_default();
            Reply::Keys { keys, next_marker: owned(result.next_marker()) }
        }
        fb::Reply::Aliases => {
            let result = response.reply_as_aliases().ok_or_else(empty)?;
            let aliases = read
                .bounded(result.aliases())
                .map(|items| {
                    items
                        .iter()
                        .map(|alias| AliasEntry {
                            name: alias.name().to_owned(),
                            arn: alias.arn().to_owned(),
                            target_key_id: owned(alias.target_key_id()),
                            created_ms: alias.created_ms(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Reply::Aliases { aliases, next_marker: owned(result.next_marker()) }
        }
        fb::Reply::ShardLeases => {
            let result = response.reply_as_shard_leases().ok_or_else(empty)?;
            let leases = read
                .bounded(result.leases())
                .map(|items| {
                    items
                        .iter()
                        .map(|lease| ShardLease {
                            shard_id: lease.shard_id().to_owned(),
                            worker: owned(lease.worker()),
                            token: lease.token(),
                            checkpoint: owned(lease.checkpoint()),
                            expires_in_ms: lease.expires_in_ms(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Reply::ShardLeases(ShardLeases { lease_ms: result.lease_ms(), leases, workers: read.strings(result.workers()) })
        }
        fb::Reply::EnhancedMonitoring => {
            let result = response.reply_as_enhanced_monitoring().ok_or_else(empty)?;
            Reply::EnhancedMonitoring {
                stream_name: result.stream_name().to_owned(),
                stream_arn: result.stream_arn().to_owned(),
                current: read.strings(result.current()),
                desired: read.strings(result.desired()),
            }
        }
        fb::Reply::MoveTasks => {
            let result = response.reply_as_move_tasks().ok_or_else(empty)?;
            let tasks = read
                .bounded(result.tasks())
                .map(|items| {
                    items
                        .iter()
                        .map(|task| MoveTaskDescription {
                            task_handle: owned(task.task_handle()),
                            status: task.status().to_owned(),
                            source_arn: task.source_arn().to_owned(),
                            destination_arn: owned(task.destination_arn()),
                            max_per_second: (task.max_per_second() != 0).then_some(task.max_per_second()),
                            moved: task.moved(),
                            to_move: task.to_move(),
                            failure_reason: owned(task.failure_reason()),
                            started_ms: task.started_ms(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Reply::MoveTasks(tasks)
        }
        fb::Reply::KeyData => {
            let result = response.reply_as_key_data().ok_or_else(empty)?;
            Reply::KeyData {
                key_arn: result.key_arn().to_owned(),
                ciphertext: result.ciphertext().map(|bytes| read.bytes(Some(bytes))),
                plaintext: result.plaintext().map(|bytes| read.bytes(Some(bytes))),
            }
        }
        _ => match super::monitor::decode_reply(&response, &read, &empty)? {
            Some(reply) => reply,
            None => super::firehose::decode_reply(&response, &read, &empty)?.ok_or_else(empty)?,
        },
    };
    read.check(id)?;
    Ok((id, Ok(reply)))
}
