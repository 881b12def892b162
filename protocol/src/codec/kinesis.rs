//! The Kinesis operations on the wire (streams): each operation's request encoding and
//! decoding, in one place.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::*;

/// Encodes an Kinesis operation (`None`: not one).
pub(super) fn encode_op(fbb: &mut FlatBufferBuilder<'static>, op: &Op) -> Option<(fb::Op, WIPOffset<flatbuffers::UnionWIPOffset>)> {
    Some(match op {
        Op::CreateStream { name, shard_count, mode, tags, max_record_size_kib } => {
            let name = Some(fbb.create_string(name));
            let mode = opt_str(fbb, mode);
            let tags = key_values(fbb, tags);
            let args = fb::CreateStreamArgs { name, shard_count: *shard_count, mode, tags, max_record_size_kib: *max_record_size_kib };
            op_table!(fbb, CreateStream, args)
        }
        Op::UpdateMaxRecordSize { stream, max_record_size_kib } => {
            let stream = Some(fbb.create_string(stream));
            op_table!(fbb, UpdateMaxRecordSize, fb::UpdateMaxRecordSizeArgs { stream, max_record_size_kib: *max_record_size_kib })
        }
        Op::LeaseShards { consumer_arn, worker, max_leases } => {
            let (consumer_arn, worker) = (Some(fbb.create_string(consumer_arn)), Some(fbb.create_string(worker)));
            op_table!(fbb, LeaseShards, fb::LeaseShardsArgs { consumer_arn, worker, max_leases: max_leases.unwrap_or(-1) })
        }
        Op::CheckpointShard { consumer_arn, worker, shard_id, token, sequence_number } => {
            let (consumer_arn, worker) = (Some(fbb.create_string(consumer_arn)), Some(fbb.create_string(worker)));
            let (shard_id, sequence_number) = (Some(fbb.create_string(shard_id)), Some(fbb.create_string(sequence_number)));
            op_table!(fbb, CheckpointShard, fb::CheckpointShardArgs { consumer_arn, worker, shard_id, token: *token, sequence_number })
        }
        Op::ReleaseShards { consumer_arn, worker, shard_ids } => {
            let (consumer_arn, worker) = (Some(fbb.create_string(consumer_arn)), Some(fbb.create_string(worker)));
            let shard_ids = strings(fbb, shard_ids);
            op_table!(fbb, ReleaseShards, fb::ReleaseShardsArgs { consumer_arn, worker, shard_ids })
        }
        Op::DescribeConsumerGroup { consumer_arn } => {
            let consumer_arn = Some(fbb.create_string(consumer_arn));
            op_table!(fbb, DescribeConsumerGroup, fb::DescribeConsumerGroupArgs { consumer_arn })
        }
        Op::SetEnhancedMonitoring { stream, metrics, enable } => {
            let stream = Some(fbb.create_string(stream));
            let metrics = strings(fbb, metrics);
            op_table!(fbb, SetEnhancedMonitoring, fb::SetEnhancedMonitoringArgs { stream, metrics, enable: *enable })
        }
        Op::UpdateStreamMode { stream, mode } => {
            let (stream, mode) = (Some(fbb.create_string(stream)), Some(fbb.create_string(mode)));
            op_table!(fbb, UpdateStreamMode, fb::UpdateStreamModeArgs { stream, mode })
        }
        Op::DeleteStream { stream, enforce_consumer_deletion } => {
            let stream = Some(fbb.create_string(stream));
            op_table!(fbb, DeleteStream, fb::DeleteStreamArgs { stream, enforce_consumer_deletion: *enforce_consumer_deletion })
        }
        Op::DescribeStream { stream, limit, exclusive_start_shard_id } => {
            let stream = Some(fbb.create_string(stream));
            let exclusive_start_shard_id = opt_str(fbb, exclusive_start_shard_id);
            op_table!(fbb, DescribeStream, fb::DescribeStreamArgs { stream, limit: *limit, exclusive_start_shard_id })
        }
        Op::DescribeStreamSummary { stream } => {
            let stream = Some(fbb.create_string(stream));
            op_table!(fbb, DescribeStreamSummary, fb::DescribeStreamSummaryArgs { stream })
        }
        Op::ListStreams { limit, exclusive_start_stream_name, next_token } => {
            let exclusive_start_stream_name = opt_str(fbb, exclusive_start_stream_name);
            let next_token = opt_str(fbb, next_token);
            op_table!(fbb, ListStreams, fb::ListStreamsArgs { limit: *limit, exclusive_start_stream_name, next_token })
        }
        Op::ListShards(list) => {
            let stream = opt_str(fbb, &list.stream);
            let next_token = opt_str(fbb, &list.next_token);
            let exclusive_start_shard_id = opt_str(fbb, &list.exclusive_start_shard_id);
            let filter_type = opt_str(fbb, &list.filter_type);
            let filter_shard_id = opt_str(fbb, &list.filter_shard_id);
            op_table!(
                fbb,
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
            op_table!(fbb, PutRecord, fb::PutRecordArgs { stream, record, sequence_number_for_ordering })
        }
        Op::PutRecords { stream, records } => {
            let stream = Some(fbb.create_string(stream));
            let offsets: Vec<_> = records.iter().map(|record| put_entry(fbb, record)).collect();
            let records = Some(fbb.create_vector(&offsets));
            op_table!(fbb, PutRecords, fb::PutRecordsArgs { stream, records })
        }
        Op::GetShardIterator { stream, shard_id, position } => {
            let stream = Some(fbb.create_string(stream));
            let shard_id = Some(fbb.create_string(shard_id));
            let iterator_type = Some(fbb.create_string(&position.kind));
            let starting_sequence_number = opt_str(fbb, &position.sequence_number);
            op_table!(
                fbb,
                GetShardIterator,
                fb::GetShardIteratorArgs { stream, shard_id, iterator_type, starting_sequence_number, timestamp_ms: position.timestamp_ms }
            )
        }
        Op::GetRecords { iterator, limit, stream_arn } => {
            let iterator = Some(fbb.create_string(iterator));
            let stream_arn = opt_str(fbb, stream_arn);
            op_table!(fbb, GetRecords, fb::GetRecordsArgs { iterator, limit: *limit, stream_arn })
        }
        Op::IncreaseStreamRetentionPeriod { stream, hours } => {
            let stream = Some(fbb.create_string(stream));
            op_table!(fbb, IncreaseStreamRetentionPeriod, fb::IncreaseStreamRetentionPeriodArgs { stream, hours: *hours })
        }
        Op::DecreaseStreamRetentionPeriod { stream, hours } => {
            let stream = Some(fbb.create_string(stream));
            op_table!(fbb, DecreaseStreamRetentionPeriod, fb::DecreaseStreamRetentionPeriodArgs { stream, hours: *hours })
        }
        Op::SplitShard { stream, shard_to_split, new_starting_hash_key } => {
            let stream = Some(fbb.create_string(stream));
            let shard_to_split = Some(fbb.create_string(shard_to_split));
            let new_starting_hash_key = Some(fbb.create_string(new_starting_hash_key));
            op_table!(fbb, SplitShard, fb::SplitShardArgs { stream, shard_to_split, new_starting_hash_key })
        }
        Op::MergeShards { stream, shard_to_merge, adjacent_shard_to_merge } => {
            let stream = Some(fbb.create_string(stream));
            let shard_to_merge = Some(fbb.create_string(shard_to_merge));
            let adjacent_shard_to_merge = Some(fbb.create_string(adjacent_shard_to_merge));
            op_table!(fbb, MergeShards, fb::MergeShardsArgs { stream, shard_to_merge, adjacent_shard_to_merge })
        }
        Op::UpdateShardCount { stream, target_shard_count, scaling_type } => {
            let stream = Some(fbb.create_string(stream));
            let scaling_type = opt_str(fbb, scaling_type);
            op_table!(fbb, UpdateShardCount, fb::UpdateShardCountArgs { stream, target_shard_count: *target_shard_count, scaling_type })
        }
        Op::AddTagsToStream { stream, tags } => {
            let stream = Some(fbb.create_string(stream));
            let tags = key_values(fbb, tags);
            op_table!(fbb, AddTagsToStream, fb::AddTagsToStreamArgs { stream, tags })
        }
        Op::RemoveTagsFromStream { stream, keys } => {
            let stream = Some(fbb.create_string(stream));
            let keys = strings(fbb, keys);
            op_table!(fbb, RemoveTagsFromStream, fb::RemoveTagsFromStreamArgs { stream, keys })
        }
        Op::ListTagsForStream { stream, exclusive_start_tag_key, limit } => {
            let stream = Some(fbb.create_string(stream));
            let exclusive_start_tag_key = opt_str(fbb, exclusive_start_tag_key);
            op_table!(fbb, ListTagsForStream, fb::ListTagsForStreamArgs { stream, exclusive_start_tag_key, limit: *limit })
        }
        Op::RegisterStreamConsumer { stream, name } => {
            let stream = Some(fbb.create_string(stream));
            let name = Some(fbb.create_string(name));
            op_table!(fbb, RegisterStreamConsumer, fb::RegisterStreamConsumerArgs { stream, name })
        }
        Op::DeregisterStreamConsumer(consumer) => {
            let (stream, name, consumer_arn) = consumer_ref(fbb, consumer);
            op_table!(fbb, DeregisterStreamConsumer, fb::DeregisterStreamConsumerArgs { stream, name, consumer_arn })
        }
        Op::DescribeStreamConsumer(consumer) => {
            let (stream, name, consumer_arn) = consumer_ref(fbb, consumer);
            op_table!(fbb, DescribeStreamConsumer, fb::DescribeStreamConsumerArgs { stream, name, consumer_arn })
        }
        Op::ListStreamConsumers { stream, next_token, max_results } => {
            let stream = Some(fbb.create_string(stream));
            let next_token = opt_str(fbb, next_token);
            op_table!(fbb, ListStreamConsumers, fb::ListStreamConsumersArgs { stream, next_token, max_results: *max_results })
        }
        Op::SubscribeToShard { consumer_arn, shard_id, position } => {
            let consumer_arn = Some(fbb.create_string(consumer_arn));
            let shard_id = Some(fbb.create_string(shard_id));
            let starting_position = Some(fbb.create_string(&position.kind));
            let sequence_number = opt_str(fbb, &position.sequence_number);
            op_table!(
                fbb,
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
        Op::DescribeLimits => op_table!(fbb, DescribeLimits, fb::DescribeLimitsArgs {}),
        Op::DescribeAccountSettings => op_table!(fbb, DescribeAccountSettings, fb::DescribeAccountSettingsArgs {}),
        Op::PutResourcePolicy { resource_arn, policy } => {
            let resource_arn = Some(fbb.create_string(resource_arn));
            let policy = Some(fbb.create_string(policy));
            op_table!(fbb, PutResourcePolicy, fb::PutResourcePolicyArgs { resource_arn, policy })
        }
        Op::GetResourcePolicy { resource_arn } => {
            let resource_arn = Some(fbb.create_string(resource_arn));
            op_table!(fbb, GetResourcePolicy, fb::GetResourcePolicyArgs { resource_arn })
        }
        Op::DeleteResourcePolicy { resource_arn } => {
            let resource_arn = Some(fbb.create_string(resource_arn));
            op_table!(fbb, DeleteResourcePolicy, fb::DeleteResourcePolicyArgs { resource_arn })
        }
        _ => return None,
    })
}

/// Decodes an Kinesis operation (`None`: not one).
pub(super) fn decode_op(
    request: &fb::Request<'_>,
    read: &Reader<'_>,
    unknown: &dyn Fn() -> DecodeError,
) -> Result<Option<Op>, DecodeError> {
    Ok(Some(match request.op_type() {
        fb::Op::CreateStream => {
            let op = request.op_as_create_stream().ok_or_else(unknown)?;
            Op::CreateStream {
                name: op.name().to_owned(),
                shard_count: op.shard_count(),
                mode: owned(op.mode()),
                tags: read.key_values(op.tags()),
                max_record_size_kib: op.max_record_size_kib(),
            }
        }
        fb::Op::UpdateMaxRecordSize => {
            let op = request.op_as_update_max_record_size().ok_or_else(unknown)?;
            Op::UpdateMaxRecordSize { stream: op.stream().to_owned(), max_record_size_kib: op.max_record_size_kib() }
        }
        fb::Op::LeaseShards => {
            let op = request.op_as_lease_shards().ok_or_else(unknown)?;
            Op::LeaseShards {
                consumer_arn: op.consumer_arn().to_owned(),
                worker: op.worker().to_owned(),
                max_leases: (op.max_leases() != -1).then_some(op.max_leases()),
            }
        }
        fb::Op::CheckpointShard => {
            let op = request.op_as_checkpoint_shard().ok_or_else(unknown)?;
            Op::CheckpointShard {
                consumer_arn: op.consumer_arn().to_owned(),
                worker: op.worker().to_owned(),
                shard_id: op.shard_id().to_owned(),
                token: op.token(),
                sequence_number: op.sequence_number().to_owned(),
            }
        }
        fb::Op::ReleaseShards => {
            let op = request.op_as_release_shards().ok_or_else(unknown)?;
            Op::ReleaseShards {
                consumer_arn: op.consumer_arn().to_owned(),
                worker: op.worker().to_owned(),
                shard_ids: read.strings(op.shard_ids()),
            }
        }
        fb::Op::DescribeConsumerGroup => {
            let op = request.op_as_describe_consumer_group().ok_or_else(unknown)?;
            Op::DescribeConsumerGroup { consumer_arn: op.consumer_arn().to_owned() }
        }
        fb::Op::SetEnhancedMonitoring => {
            let op = request.op_as_set_enhanced_monitoring().ok_or_else(unknown)?;
            Op::SetEnhancedMonitoring { stream: op.stream().to_owned(), metrics: read.strings(op.metrics()), enable: op.enable() }
        }
        fb::Op::UpdateStreamMode => {
            let op = request.op_as_update_stream_mode().ok_or_else(unknown)?;
            Op::UpdateStreamMode { stream: op.stream().to_owned(), mode: op.mode().to_owned() }
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
            Op::GetRecords { iterator: op.iterator().to_owned(), limit: op.limit(), stream_arn: owned(op.stream_arn()) }
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
        fb::Op::DescribeLimits => Op::DescribeLimits,
        fb::Op::DescribeAccountSettings => Op::DescribeAccountSettings,
        fb::Op::PutResourcePolicy => {
            let op = request.op_as_put_resource_policy().ok_or_else(unknown)?;
            Op::PutResourcePolicy { resource_arn: op.resource_arn().to_owned(), policy: op.policy().to_owned() }
        }
        fb::Op::GetResourcePolicy => {
            let op = request.op_as_get_resource_policy().ok_or_else(unknown)?;
            Op::GetResourcePolicy { resource_arn: op.resource_arn().to_owned() }
        }
        fb::Op::DeleteResourcePolicy => {
            let op = request.op_as_delete_resource_policy().ok_or_else(unknown)?;
            Op::DeleteResourcePolicy { resource_arn: op.resource_arn().to_owned() }
        }
        _ => return Ok(None),
    }))
}
