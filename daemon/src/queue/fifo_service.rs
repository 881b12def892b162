//! The FIFO queue operations that differ from a standard queue's (`queue::fifo` has the
//! design): sends go to the shard of their message group (`fifo::group_owner`: the queue's
//! owner unless its groups are spread), which deduplicates, numbers and stores; deletes go to
//! the shard the receipt names; receives ask the owner, or every shard for a spread queue
//! (`service::receive_round`); dead-letter moves go to each group's shard in the dead-letter
//! queue.

use std::rc::Rc;
use std::sync::Arc;

use sluice_protocol::limits::FIFO_ID_CHARS_MAX;
use sluice_protocol::*;

use super::calls::{AcceptMoved, DeleteFifo, SendFifo};
use super::fifo::{content_deduplication_id, dedup_key, group_owner, owner, FifoSend};
use super::partition::{Moved, Partition};
use super::receipt::Receipt;
use super::service::{check_entry, detach_from_frame, format_uuid, new_message_id, notify_visible, payload_of};
use super::{call_on, MessageRef, QueueHost};
use crate::catalog::queues::DeduplicationScope;
use crate::catalog::{queue_does_not_exist, QueueMeta};
use crate::storage::Ticket;

/// Whether `id` is a valid group, deduplication or receive-attempt id: 1–128 alphanumeric or
/// punctuation characters.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= FIFO_ID_CHARS_MAX && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks a `MessageGroupId` (a FIFO queue's group, or a fair queue's tenant).
pub fn check_group_id(group: &str) -> Result<(), OpError> {
    if valid_id(group) {
        return Ok(());
    }
    Err(OpError::new(ErrorCode::InvalidParameterValue, "MessageGroupId must be 1 to 128 alphanumeric or punctuation characters."))
}

/// Checks a `ReceiveRequestAttemptId`.
pub fn check_attempt_id(id: &str) -> Result<(), OpError> {
    if valid_id(id) {
        return Ok(());
    }
    Err(OpError::new(
        ErrorCode::InvalidParameterValue,
        "Value for parameter ReceiveRequestAttemptId is invalid. Reason: it must be 1 to 128 alphanumeric or punctuation characters.",
    ))
}

/// What a FIFO queue requires of a message beyond what every queue does.
fn check_fifo_entry(meta: &QueueMeta, entry: &SendEntry) -> Result<(), OpError> {
    check_entry(meta, entry)?;
    if entry.delay_seconds.is_some_and(|delay| delay != 0) {
        return Err(OpError::new(
            ErrorCode::InvalidParameterValue,
            format!(
                "Value {} for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.",
                entry.delay_seconds.unwrap_or_default()
            ),
        ));
    }
    match &entry.message_group_id {
        None => return Err(OpError::new(ErrorCode::MissingParameter, "The request must contain the parameter MessageGroupId.")),
        Some(group) => check_group_id(group)?,
    }
    match &entry.deduplication_id {
        None if !meta.attributes.content_based_deduplication => Err(OpError::new(
            ErrorCode::InvalidParameterValue,
            "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
        )),
        Some(id) if !valid_id(id) => Err(OpError::new(
            ErrorCode::InvalidParameterValue,
            "MessageDeduplicationId must be 1 to 128 alphanumeric or punctuation characters.",
        )),
        _ => Ok(()),
    }
}

/// SendMessage (`batch` false: one entry) or SendMessageBatch to a FIFO queue.
pub async fn send<H: QueueHost>(host: &Rc<H>, meta: &QueueMeta, mut entries: Vec<SendEntry>, batch: bool) -> Response {
    detach_from_frame(&mut entries);
    let mut outcomes: Vec<Option<Result<SendResult, OpError>>> = Vec::with_capacity(entries.len());
    let mut ids = Vec::with_capacity(entries.len());
    let mut to_send = Vec::with_capacity(entries.len());
    for mut entry in entries {
        ids.push(std::mem::take(&mut entry.id));
        match check_fifo_entry(meta, &entry) {
            Ok(()) => {
                outcomes.push(None);
                to_send.push(entry);
            }
            Err(error) => outcomes.push(Some(Err(error))),
        }
    }
    if !to_send.is_empty() {
        let sent = send_to_owners(host, meta, to_send).await?;
        let mut sent = sent.into_iter();
        for outcome in outcomes.iter_mut().filter(|o| o.is_none()) {
            *outcome = sent.next();
        }
    }
    let mut results = ids.into_iter().zip(outcomes.into_iter().map(|o| o.unwrap_or_else(|| Err(lost_entry()))));
    if !batch {
        let (_, result) = results.next().ok_or_else(lost_entry)?;
        return result.map(Reply::SendMessage);
    }
    let (mut successful, mut failed) = (Vec::new(), Vec::new());
    for (id, result) in results {
        match result {
            Ok(result) => successful.push(SendResult { id, ..result }),
            Err(error) => failed.push(BatchFailure::new(id, error)),
        }
    }
    Ok(Reply::SendMessageBatch { successful, failed })
}

/// Stores checked `entries` on the shards of their groups (`group_owner`): one `SendFifo` per
/// shard, all at once, each carrying its entries in the order given (so a group's keep it);
/// the outcomes in the order of `entries`. A shard that fails fails its own entries only.
pub async fn send_to_owners<H: QueueHost>(
    host: &Rc<H>,
    meta: &QueueMeta,
    entries: Vec<SendEntry>,
) -> Result<Vec<Result<SendResult, OpError>>, OpError> {
    let shards = host.count();
    if !meta.groups_spread {
        return call_on(host, owner(meta.id, shards), SendFifo { queue_id: meta.id, entries }).await?;
    }
    let places: Vec<usize> =
        entries.iter().map(|entry| group_owner(meta, entry.message_group_id.as_deref().unwrap_or(""), shards)).collect();
    let calls = by_shard(places.iter().copied().zip(entries)).into_iter().map(|(shard, entries)| {
        let count = entries.len();
        async move {
            let outcomes = match call_on(host, shard, SendFifo { queue_id: meta.id, entries }).await {
                Ok(Ok(outcomes)) => outcomes,
                Ok(Err(error)) | Err(error) => vec![Err(error); count],
            };
            (shard, outcomes.into_iter())
        }
    });
    let mut answered = futures::future::join_all(calls).await;
    let mut results = Vec::with_capacity(places.len());
    for shard in places {
        let next = answered.iter_mut().find(|(s, _)| *s == shard).and_then(|(_, outcomes)| outcomes.next());
        results.push(next.unwrap_or_else(|| Err(lost_entry())));
    }
    Ok(results)
}

/// `items` gathered by the shard each names, shards in the order first named, each shard's
/// items in the order given.
fn by_shard<T>(items: impl IntoIterator<Item = (usize, T)>) -> Vec<(usize, Vec<T>)> {
    let mut shards: Vec<(usize, Vec<T>)> = Vec::new();
    for (shard, item) in items {
        match shards.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, list)) => list.push(item),
            None => shards.push((shard, vec![item])),
        }
    }
    shards
}

fn lost_entry() -> OpError {
    OpError::new(ErrorCode::InternalFailure, "a batch entry got no outcome")
}

/// On the owner: deduplicates, numbers and stores checked messages; answers once kept.
pub async fn send_local<H: QueueHost>(
    host: &Rc<H>,
    queue_id: u64,
    entries: Vec<SendEntry>,
) -> Result<Vec<Result<SendResult, OpError>>, OpError> {
    let meta = host.snapshot().by_id.get(&queue_id).cloned().ok_or_else(queue_does_not_exist)?;
    host.queues().storage.admit_send()?;
    let now = host.env().now_ms();
    let mut results = Vec::with_capacity(entries.len());
    let mut stored = Vec::new();
    let mut duplicates = false;
    let commit = {
        let mut partitions = host.queues().partitions.borrow_mut();
        let partition = partitions.entry(queue_id).or_insert_with(|| Partition::for_queue(queue_id));
        partition.make_fifo();
        for mut entry in entries {
            let deduplication_id = match entry.deduplication_id.take() {
                Some(id) => id,
                None => content_deduplication_id(&entry.body),
            };
            let scope = match meta.attributes.deduplication_scope {
                DeduplicationScope::Queue => None,
                DeduplicationScope::MessageGroup => entry.message_group_id.as_deref(),
            };
            let key = dedup_key(scope, &deduplication_id);
            let (payload, result) = payload_of(entry, now);
            let new_id = new_message_id();
            let (message_id, sequence) = match partition.send_fifo(new_id, payload, (key, Arc::from(deduplication_id)), now) {
                FifoSend::Stored { seq, sequence } => {
                    stored.push(seq);
                    (new_id, sequence)
                }
                FifoSend::Duplicate { message_id, sequence } => {
                    duplicates = true;
                    (message_id, sequence)
                }
            };
            results.push(Ok(SendResult { message_id: format_uuid(message_id), sequence_number: Some(sequence.to_string()), ..result }));
        }
        let commit = host.queues().storage.commit(partition);
        if commit.is_err() {
            for seq in &stored {
                partition.discard(*seq);
            }
            host.queues().storage.release_from(partition);
        }
        commit
    };
    let storage = &host.queues().storage;
    let commit = commit?;
    // Receivable at once, as a standard queue's messages are (if the record is then lost, so
    // is the message, and nothing after it in its group was sent yet).
    if !stored.is_empty() && meta.attributes.delay_seconds == 0 {
        notify_visible(host, queue_id);
    }
    // A duplicate is answered once the message it repeats is kept: wait for all the log holds.
    let ticket = match (commit, duplicates) {
        (Some(ticket), false) => ticket,
        _ => Ticket(storage.log().next_seq() - 1),
    };
    if let Err(error) = storage.durable(ticket).await {
        let mut partitions = host.queues().partitions.borrow_mut();
        if let Some(partition) = partitions.get_mut(&queue_id) {
            for seq in &stored {
                partition.discard(*seq);
            }
            storage.release_from(partition);
        }
        return Err(error);
    }
    Ok(results)
}

/// DeleteMessage(Batch) on a FIFO queue: one outcome per receipt (decoded by the caller).
pub async fn delete<H: QueueHost>(
    host: &Rc<H>,
    meta: &QueueMeta,
    receipts: Vec<Result<Receipt, OpError>>,
) -> Result<Vec<Result<(), OpError>>, OpError> {
    let owner = owner(meta.id, host.count());
    let mut results: Vec<Result<(), OpError>> = Vec::with_capacity(receipts.len());
    // (shard, (receipt index, message)) of each receipt to apply.
    let mut to_delete = Vec::new();
    for (index, receipt) in receipts.into_iter().enumerate() {
        match receipt {
            // A queue's messages are all on its owner unless its groups are spread: a receipt
            // naming another shard names a message that is not there. (`route_receipts` has
            // refused shards this daemon does not have.)
            Ok(receipt) if !meta.groups_spread && receipt.shard as usize != owner => results.push(Err(super::partition::expired_receipt())),
            Ok(receipt) => {
                results.push(Ok(()));
                to_delete.push((receipt.shard as usize, (index, ((receipt.seq, receipt.tag), receipt.receive_count))));
            }
            Err(error) => results.push(Err(error)),
        }
    }
    let calls = by_shard(to_delete).into_iter().map(|(shard, work)| {
        let (indexes, messages): (Vec<usize>, Vec<(MessageRef, u32)>) = work.into_iter().unzip();
        async move { (indexes, call_on(host, shard, DeleteFifo { queue_id: meta.id, messages }).await.and_then(|outcomes| outcomes)) }
    });
    for (indexes, outcomes) in futures::future::join_all(calls).await {
        let outcomes = outcomes?;
        for (index, outcome) in indexes.into_iter().zip(outcomes) {
            results[index] = outcome;
        }
    }
    Ok(results)
}

/// On the owner: deletes by receipts still current; answers once kept.
pub async fn delete_local<H: QueueHost>(
    host: &Rc<H>,
    queue_id: u64,
    messages: Vec<(MessageRef, u32)>,
) -> Result<Vec<Result<(), OpError>>, OpError> {
    let now = host.env().now_ms();
    let delay_ms = host.snapshot().by_id.get(&queue_id).map_or(0, |meta| meta.attributes.delay_seconds as u64 * 1000);
    let (outcomes, commit, receivable) = {
        let mut partitions = host.queues().partitions.borrow_mut();
        let Some(partition) = partitions.get_mut(&queue_id) else {
            // Nothing here: every message named is gone, and deleting it succeeds.
            return Ok(messages.iter().map(|_| Ok(())).collect());
        };
        let outcomes: Vec<Result<(), OpError>> = messages
            .into_iter()
            .map(|((seq, tag), receive_count)| partition.delete_fifo(seq, tag, receive_count, now).map(|_| ()))
            .collect();
        let commit = host.queues().storage.commit(partition);
        (outcomes, commit, partition.fifo_receivable(now, delay_ms))
    };
    let storage = &host.queues().storage;
    let ticket = commit?.unwrap_or(Ticket(storage.log().next_seq() - 1));
    // A group whose in-flight messages went is available now, while the delete is on its way
    // to the disk: waiting receives are woken at once, so a group's next receive overlaps
    // this delete's fdatasync. (A crash before it is durable brings the deleted messages
    // back first in their group: delivered again, never out of order.)
    if receivable {
        notify_visible(host, queue_id);
    }
    storage.durable(ticket).await?;
    Ok(outcomes)
}

/// Moves FIFO messages held by a receive (`Partition::receive_fifo`) to the dead-letter queue
/// `dead_letter` on its owner; once it keeps them, takes them out here.
pub async fn move_to_dead_letter<H: QueueHost>(host: &Rc<H>, source: &QueueMeta, dead_letter: &QueueMeta, moved: Vec<Moved>) {
    // To each group's shard in the dead-letter queue, all at once; a shard's messages are
    // taken out here once it kept them.
    let shards = host.count();
    let places = moved.into_iter().map(|m| (group_owner(dead_letter, m.payload.message_group_id.as_deref().unwrap_or(""), shards), m));
    let calls = by_shard(places).into_iter().map(|(shard, messages)| {
        let refs: Vec<(u64, u64)> = messages.iter().map(|m| (m.seq, m.message_id as u64)).collect();
        let call = AcceptMoved { queue_id: dead_letter.id, source_arn: source.arn.clone(), messages };
        async move { (refs, call_on(host, shard, call).await.and_then(|kept| kept)) }
    });
    for (refs, kept) in futures::future::join_all(calls).await {
        if let Err(error) = kept {
            // Held in flight until the hold lapses, then offered (and moved) again.
            tracing::warn!(shard = host.id(), queue = %source.name, error = %error.message, "could not move messages to the dead-letter queue");
            continue;
        }
        let mut partitions = host.queues().partitions.borrow_mut();
        if let Some(partition) = partitions.get_mut(&source.id) {
            for (seq, tag) in refs {
                partition.finish_move(seq, tag);
            }
            if let Err(error) = host.queues().storage.commit(partition) {
                tracing::warn!(shard = host.id(), error = %error.message, "could not log messages moved to a dead-letter queue");
            }
        }
    }
}

/// On the dead-letter queue's owner: stores moved messages; `Ok` once kept.
pub async fn accept_moved_local<H: QueueHost>(
    host: &Rc<H>,
    queue_id: u64,
    source_arn: String,
    messages: Vec<Moved>,
) -> Result<(), OpError> {
    let now = host.env().now_ms();
    let source_arn: Arc<str> = Arc::from(source_arn);
    let commit = {
        let mut partitions = host.queues().partitions.borrow_mut();
        let partition = partitions.entry(queue_id).or_insert_with(|| Partition::for_queue(queue_id));
        for message in messages {
            partition.accept_moved_fifo(message, source_arn.clone(), now);
        }
        host.queues().storage.commit(partition)
    };
    let storage = &host.queues().storage;
    let ticket = commit?.unwrap_or(Ticket(storage.log().next_seq() - 1));
    storage.durable(ticket).await?;
    notify_visible(host, queue_id);
    Ok(())
}
