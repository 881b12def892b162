//! The SQS operations on the wire (queues): each operation's request encoding and
//! decoding, in one place.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::*;

/// Encodes an SQS operation (`None`: not one).
pub(super) fn encode_op(fbb: &mut FlatBufferBuilder<'static>, op: &Op) -> Option<(fb::Op, WIPOffset<flatbuffers::UnionWIPOffset>)> {
    Some(match op {
        Op::CreateQueue { name, attributes, tags } => {
            let name = Some(fbb.create_string(name));
            let attributes = key_values(fbb, attributes);
            let tags = key_values(fbb, tags);
            op_table!(fbb, CreateQueue, fb::CreateQueueArgs { name, attributes, tags })
        }
        Op::GetQueueUrl { name, owner } => {
            let name = Some(fbb.create_string(name));
            let owner = opt_str(fbb, owner);
            op_table!(fbb, GetQueueUrl, fb::GetQueueUrlArgs { name, owner })
        }
        Op::ListQueues { prefix, max_results, next_token } => {
            let prefix = opt_str(fbb, prefix);
            let next_token = opt_str(fbb, next_token);
            op_table!(fbb, ListQueues, fb::ListQueuesArgs { prefix, max_results: *max_results, next_token })
        }
        Op::DeleteQueue { queue } => {
            let queue = Some(fbb.create_string(queue));
            op_table!(fbb, DeleteQueue, fb::DeleteQueueArgs { queue })
        }
        Op::PurgeQueue { queue } => {
            let queue = Some(fbb.create_string(queue));
            op_table!(fbb, PurgeQueue, fb::PurgeQueueArgs { queue })
        }
        Op::GetQueueAttributes { queue, names } => {
            let queue = Some(fbb.create_string(queue));
            let names = strings(fbb, names);
            op_table!(fbb, GetQueueAttributes, fb::GetQueueAttributesArgs { queue, names })
        }
        Op::SetQueueAttributes { queue, attributes } => {
            let queue = Some(fbb.create_string(queue));
            let attributes = key_values(fbb, attributes);
            op_table!(fbb, SetQueueAttributes, fb::SetQueueAttributesArgs { queue, attributes })
        }
        Op::TagQueue { queue, tags } => {
            let queue = Some(fbb.create_string(queue));
            let tags = key_values(fbb, tags);
            op_table!(fbb, TagQueue, fb::TagQueueArgs { queue, tags })
        }
        Op::UntagQueue { queue, keys } => {
            let queue = Some(fbb.create_string(queue));
            let keys = strings(fbb, keys);
            op_table!(fbb, UntagQueue, fb::UntagQueueArgs { queue, keys })
        }
        Op::ListQueueTags { queue } => {
            let queue = Some(fbb.create_string(queue));
            op_table!(fbb, ListQueueTags, fb::ListQueueTagsArgs { queue })
        }
        Op::ListDeadLetterSourceQueues { queue, max_results, next_token } => {
            let queue = Some(fbb.create_string(queue));
            let next_token = opt_str(fbb, next_token);
            op_table!(fbb, ListDeadLetterSourceQueues, fb::ListDeadLetterSourceQueuesArgs { queue, max_results: *max_results, next_token })
        }
        Op::SendMessage { queue, entry } => {
            let queue = Some(fbb.create_string(queue));
            let body = Some(fbb.create_vector(&entry.body));
            let attributes = attributes(fbb, &entry.attributes);
            let system_attributes = self::attributes(fbb, &entry.system_attributes);
            let message_group_id = opt_str(fbb, &entry.message_group_id);
            let deduplication_id = opt_str(fbb, &entry.deduplication_id);
            op_table!(
                fbb,
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
            op_table!(fbb, SendMessageBatch, fb::SendMessageBatchArgs { queue, entries })
        }
        Op::ReceiveMessage(receive) => {
            let queue = Some(fbb.create_string(&receive.queue));
            let system_attribute_names = strings(fbb, &receive.system_attribute_names);
            let message_attribute_names = strings(fbb, &receive.message_attribute_names);
            let receive_request_attempt_id = opt_str(fbb, &receive.receive_request_attempt_id);
            op_table!(
                fbb,
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
            op_table!(fbb, DeleteMessage, fb::DeleteMessageArgs { queue, receipt_handle })
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
            op_table!(fbb, DeleteMessageBatch, fb::DeleteMessageBatchArgs { queue, entries })
        }
        Op::ChangeMessageVisibility { queue, receipt_handle, visibility_timeout } => {
            let queue = Some(fbb.create_string(queue));
            let receipt_handle = Some(fbb.create_string(receipt_handle));
            op_table!(
                fbb,
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
            op_table!(fbb, ChangeMessageVisibilityBatch, fb::ChangeMessageVisibilityBatchArgs { queue, entries })
        }
        Op::AddPermission { queue, label, account_ids, actions } => {
            let queue = Some(fbb.create_string(queue));
            let label = Some(fbb.create_string(label));
            let account_ids = strings(fbb, account_ids);
            let actions = strings(fbb, actions);
            op_table!(fbb, AddPermission, fb::AddPermissionArgs { queue, label, account_ids, actions })
        }
        Op::RemovePermission { queue, label } => {
            let queue = Some(fbb.create_string(queue));
            let label = Some(fbb.create_string(label));
            op_table!(fbb, RemovePermission, fb::RemovePermissionArgs { queue, label })
        }
        Op::StartMessageMoveTask { source_arn, destination_arn, max_per_second } => {
            let source_arn = Some(fbb.create_string(source_arn));
            let destination_arn = opt_str(fbb, destination_arn);
            let max_per_second = max_per_second.unwrap_or(-1);
            op_table!(fbb, StartMessageMoveTask, fb::StartMessageMoveTaskArgs { source_arn, destination_arn, max_per_second })
        }
        Op::CancelMessageMoveTask { task_handle } => {
            let task_handle = Some(fbb.create_string(task_handle));
            op_table!(fbb, CancelMessageMoveTask, fb::CancelMessageMoveTaskArgs { task_handle })
        }
        Op::ListMessageMoveTasks { source_arn, max_results } => {
            let source_arn = Some(fbb.create_string(source_arn));
            op_table!(fbb, ListMessageMoveTasks, fb::ListMessageMoveTasksArgs { source_arn, max_results: max_results.unwrap_or(-1) })
        }
        _ => return None,
    })
}

/// Decodes an SQS operation (`None`: not one).
pub(super) fn decode_op(
    request: &fb::Request<'_>,
    read: &Reader<'_>,
    unknown: &dyn Fn() -> DecodeError,
) -> Result<Option<Op>, DecodeError> {
    Ok(Some(match request.op_type() {
        fb::Op::CreateQueue => {
            let op = request.op_as_create_queue().ok_or_else(unknown)?;
            Op::CreateQueue { name: op.name().to_owned(), attributes: read.key_values(op.attributes()), tags: read.key_values(op.tags()) }
        }
        fb::Op::GetQueueUrl => {
            let op = request.op_as_get_queue_url().ok_or_else(unknown)?;
            Op::GetQueueUrl { name: op.name().to_owned(), owner: owned(op.owner()) }
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
        fb::Op::AddPermission => {
            let op = request.op_as_add_permission().ok_or_else(unknown)?;
            Op::AddPermission {
                queue: op.queue().to_owned(),
                label: op.label().to_owned(),
                account_ids: read.strings(op.account_ids()),
                actions: read.strings(op.actions()),
            }
        }
        fb::Op::RemovePermission => {
            let op = request.op_as_remove_permission().ok_or_else(unknown)?;
            Op::RemovePermission { queue: op.queue().to_owned(), label: op.label().to_owned() }
        }
        fb::Op::StartMessageMoveTask => {
            let op = request.op_as_start_message_move_task().ok_or_else(unknown)?;
            Op::StartMessageMoveTask {
                source_arn: op.source_arn().to_owned(),
                destination_arn: owned(op.destination_arn()),
                max_per_second: (op.max_per_second() != -1).then_some(op.max_per_second()),
            }
        }
        fb::Op::CancelMessageMoveTask => Op::CancelMessageMoveTask {
            task_handle: request.op_as_cancel_message_move_task().ok_or_else(unknown)?.task_handle().to_owned(),
        },
        fb::Op::ListMessageMoveTasks => {
            let op = request.op_as_list_message_move_tasks().ok_or_else(unknown)?;
            Op::ListMessageMoveTasks {
                source_arn: op.source_arn().to_owned(),
                max_results: (op.max_results() != -1).then_some(op.max_results()),
            }
        }
        _ => return Ok(None),
    }))
}
