//! The SQS standard-queue operations, as run by one shard (written against `QueueHost`).
//!
//! Each operation validates its input, finds the queue in the shard's metadata
//! snapshot, acts on local partitions directly and on other shards' partitions
//! through the bus (one call per shard touched), records every state change with
//! storage, and answers once storage says the change is kept.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use sluice_protocol::digest::{hex, md5_of_attributes, md5_of_body};
use sluice_protocol::limits::*;
use sluice_protocol::*;

use super::calls::{
    AcceptMoved, ChangeVisibility, CountMessages, Delete, DeleteFifo, Purge, QueueAnswer, QueueCall, QueueNotice, Receive, SendFifo,
};
use super::fifo_service;
use super::partition::{expired_receipt, Counts, Delivery, Moved, Partition, Payload, Placement, ReceiveRules};
use super::receipt::Receipt;
use super::validate::{check_attributes, check_batch_ids, check_body, check_range, check_system_attributes};
use super::Waiters;
use super::{call_on, QueueHost};
use super::{MessageRef, VisibilityChange};
use crate::catalog::{is_delivery_queue, queue_does_not_exist, MetaChange, MetaOutcome, QueueMeta, Snapshot};
use crate::runtime::calls::Request;
use crate::seal::SealKey;
use crate::storage::Ticket;

/// Payloads kept only in the log that the loader reads back at once (neighbours share one
/// read): at most this many messages ...
const READ_AHEAD_MESSAGES: usize = 256;
/// ... or records adding up to this many bytes.
const READ_AHEAD_BYTES: u64 = 256 * 1024;
/// A receive that sees a payload kept only in the log among the next this-many visible
/// messages asks for a read-ahead.
const READ_AHEAD_TRIGGER: usize = 64;
/// Read-backs one receive waits for before answering with what it has.
const LOAD_WAITS_MAX: usize = 8;

/// System attribute names a receive may ask for.
const SYSTEM_ATTRIBUTE_NAMES: &[&str] = &[
    "All",
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "MessageGroupId",
    "DeadLetterQueueSourceArn",
    "SequenceNumber",
    "MessageDeduplicationId",
];

fn invalid_receipt(handle: &str) -> OpError {
    OpError::new(ErrorCode::ReceiptHandleIsInvalid, format!("The input receipt handle \"{handle}\" is not a valid receipt handle."))
}

pub fn format_uuid(id: u128) -> String {
    uuid::Uuid::from_u128(id).hyphenated().to_string()
}

pub fn new_message_id() -> u128 {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid().as_u128()
}

/// Which message attributes a receive asked for.
fn attribute_selected(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|pattern| match pattern.as_str() {
        "All" | ".*" => true,
        p => match p.strip_suffix(".*") {
            Some(prefix) => name.starts_with(prefix) && name.as_bytes().get(prefix.len()) == Some(&b'.'),
            None => p == name,
        },
    })
}

/// Messages appended for one request (`Shard::append_message`), and the ticket that makes
/// them all durable (`Shard::sends_durable`).
#[derive(Default)]
pub struct Sends {
    last: Option<Ticket>,
    /// Runs of messages appended, (queue id, first seq, last seq), to take out again if they
    /// cannot be kept: the first run inline (a send, or a batch to one queue, allocates
    /// nothing), more only for a publish that fans out.
    first: Option<(u64, u64, u64)>,
    more: Vec<(u64, u64, u64)>,
}

impl Sends {
    /// Adds message `seq` of `queue_id`, appended with the log record `ticket` names.
    pub fn record(&mut self, queue_id: u64, seq: u64, ticket: Option<Ticket>) {
        self.last = self.last.max(ticket);
        self.add(queue_id, seq);
    }

    fn add(&mut self, queue_id: u64, seq: u64) {
        let run = match (self.more.last_mut(), &mut self.first) {
            (Some(run), _) | (None, Some(run)) => run,
            (None, None) => {
                self.first = Some((queue_id, seq, seq));
                return;
            }
        };
        if run.0 == queue_id && run.2 + 1 == seq {
            run.2 = seq;
        } else {
            self.more.push((queue_id, seq, seq));
        }
    }

    fn runs(&self) -> impl Iterator<Item = &(u64, u64, u64)> {
        self.first.iter().chain(self.more.iter())
    }

    /// Messages appended to queues (not to topics' feeds), by queue id: for the metrics, a
    /// publish's deliveries count as messages sent to each queue, as in SQS. Allocates nothing
    /// when none was.
    pub fn appended(&self) -> Vec<(u64, u64)> {
        let mut by_queue: Vec<(u64, u64)> = Vec::new();
        for (queue_id, first, last) in self.runs().filter(|(queue_id, ..)| !super::feed::is_feed_id(*queue_id)) {
            let count = last - first + 1;
            match by_queue.iter_mut().find(|(id, _)| id == queue_id) {
                Some((_, total)) => *total += count,
                None => by_queue.push((*queue_id, count)),
            }
        }
        by_queue
    }
}

/// Runs one operation of a client.
pub async fn handle_op<H: QueueHost>(host: &Rc<H>, op: Op) -> Response {
    match op {
        Op::Hello { .. } => Err(OpError::new(ErrorCode::MalformedRequest, "Hello is only valid as the first request")),
        Op::CreateQueue { name, attributes, tags } => match host.meta_change(MetaChange::Create { name, attributes, tags }).await? {
            MetaOutcome::Url(url) => Ok(Reply::QueueUrl(url)),
            other => Err(OpError::new(ErrorCode::InternalFailure, format!("unexpected outcome {other:?}"))),
        },
        Op::GetQueueUrl { name, owner } => {
            let snapshot = host.snapshot();
            // Every queue here belongs to this server's account.
            if owner.is_some_and(|owner| owner != snapshot.naming.account_id) {
                return Err(queue_does_not_exist());
            }
            let meta = snapshot.by_name.get(&name).filter(|meta| !is_delivery_queue(&meta.name)).ok_or_else(queue_does_not_exist)?;
            Ok(Reply::QueueUrl(meta.url.clone()))
        }
        Op::ListQueues { prefix, max_results, next_token } => {
            let snapshot = host.snapshot();
            let prefix = prefix.unwrap_or_default();
            let names = snapshot.client_queues().filter(|meta| meta.name.starts_with(&prefix));
            paginate(names, max_results, next_token, &host.config().seal_key)
        }
        Op::DeleteQueue { queue } => {
            host.meta_change(MetaChange::Delete { queue }).await?;
            Ok(Reply::Done)
        }
        Op::PurgeQueue { queue } => {
            let MetaOutcome::Purge(queue_id) = host.meta_change(MetaChange::Purge { queue }).await? else {
                return Err(OpError::new(ErrorCode::InternalFailure, "purge was not recorded"));
            };
            for purged in on_every_shard(host, || Purge { queue_id }).await? {
                purged?;
            }
            Ok(Reply::Done)
        }
        Op::GetQueueAttributes { queue, names } => get_queue_attributes(host, &queue, &names).await,
        Op::SetQueueAttributes { queue, attributes } => {
            host.meta_change(MetaChange::SetAttributes { queue, attributes }).await?;
            Ok(Reply::Done)
        }
        Op::AddPermission { queue, label, account_ids, actions } => {
            let edit = crate::policy::PermissionEdit::Add { label, account_ids, actions };
            host.meta_change(MetaChange::Permission { queue, edit }).await?;
            Ok(Reply::Done)
        }
        Op::RemovePermission { queue, label } => {
            host.meta_change(MetaChange::Permission { queue, edit: crate::policy::PermissionEdit::Remove { label } }).await?;
            Ok(Reply::Done)
        }
        Op::TagQueue { queue, tags } => {
            host.meta_change(MetaChange::Tag { queue, tags }).await?;
            Ok(Reply::Done)
        }
        Op::UntagQueue { queue, keys } => {
            host.meta_change(MetaChange::Untag { queue, keys }).await?;
            Ok(Reply::Done)
        }
        Op::ListQueueTags { queue } => {
            let snapshot = host.snapshot();
            let meta = snapshot.resolve(&queue)?;
            Ok(Reply::Attributes(meta.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
        }
        Op::ListDeadLetterSourceQueues { queue, max_results, next_token } => {
            let snapshot = host.snapshot();
            let target = snapshot.resolve(&queue)?;
            let sources = snapshot
                .client_queues()
                .filter(|meta| meta.attributes.redrive_policy.as_ref().is_some_and(|policy| policy.dead_letter_target_arn == target.arn));
            paginate(sources, max_results, next_token, &host.config().seal_key)
        }
        Op::SendMessage { queue, mut entry } => {
            let meta = host.snapshot().resolve(&queue)?.clone();
            crate::engine::sealable(host, |snapshot| snapshot.sealing(meta.id).cloned()).await?;
            let reply = if meta.attributes.fifo {
                fifo_service::send(host, &meta, vec![entry], false).await?
            } else {
                detach_from_frame(std::slice::from_mut(&mut entry));
                let mut sends = Sends::default();
                let result = send_one(host, &meta, entry, host.env().now_ms(), &mut sends)?;
                sends_durable(host, sends).await?;
                Reply::SendMessage(result)
            };
            host.metrics().queue(meta.id, |counted| counted.sent += 1);
            Ok(reply)
        }
        Op::SendMessageBatch { queue, entries } => {
            let reply = send_batch(host, &queue, entries).await?;
            if let Reply::SendMessageBatch { successful, .. } = &reply {
                count(host, &queue, |counted| counted.sent += successful.len() as u64);
            }
            Ok(reply)
        }
        Op::StartMessageMoveTask { source_arn, destination_arn, max_per_second } => {
            super::redrive::start(host, source_arn, destination_arn, max_per_second).await
        }
        Op::CancelMessageMoveTask { task_handle } => super::redrive::cancel(host, &task_handle).await,
        Op::ListMessageMoveTasks { source_arn, max_results } => super::redrive::list(host, &source_arn, max_results).await,
        Op::ReceiveMessage(request) => {
            let queue = request.queue.clone();
            let reply = receive(host, request).await?;
            if let Reply::ReceiveMessage(messages) = &reply {
                count(host, &queue, |counted| {
                    counted.received += messages.len() as u64;
                    counted.empty_receives += messages.is_empty() as u64;
                });
            }
            Ok(reply)
        }
        Op::DeleteMessage { queue, receipt_handle } => {
            let entries = vec![DeleteEntry { id: String::new(), receipt_handle }];
            let mut results = delete_messages(host, &queue, &entries).await?;
            let result = results.pop().unwrap_or(Ok(())).map(|()| Reply::Done);
            if result.is_ok() {
                count(host, &queue, |counted| counted.deleted += 1);
            }
            result
        }
        Op::DeleteMessageBatch { queue, entries } => {
            check_batch_ids(entries.iter().map(|e| e.id.as_str()))?;
            let results = delete_messages(host, &queue, &entries).await?;
            let deleted = results.iter().filter(|result| result.is_ok()).count() as u64;
            count(host, &queue, |counted| counted.deleted += deleted);
            Ok(batch_reply(entries.iter().map(|e| &e.id), results))
        }
        Op::ChangeMessageVisibility { queue, receipt_handle, visibility_timeout } => {
            let entries = vec![VisibilityEntry { id: String::new(), receipt_handle, visibility_timeout }];
            let mut results = change_visibility(host, &queue, &entries).await?;
            results.pop().unwrap_or(Ok(())).map(|()| Reply::Done)
        }
        Op::ChangeMessageVisibilityBatch { queue, entries } => {
            check_batch_ids(entries.iter().map(|e| e.id.as_str()))?;
            let results = change_visibility(host, &queue, &entries).await?;
            Ok(batch_reply(entries.iter().map(|e| &e.id), results))
        }
        other => Err(OpError::new(ErrorCode::InternalFailure, format!("{} is not a queue operation", other.name()))),
    }
}

/// Counts into the metrics of the queue `queue` names (if it still exists).
fn count<H: QueueHost>(host: &Rc<H>, queue: &str, counting: impl FnOnce(&mut crate::metrics::QueueCounters)) {
    if let Ok(meta) = host.snapshot().resolve(queue) {
        host.metrics().queue(meta.id, counting);
    }
}

// ------------------------------------------------------------------ attributes

/// Runs `request` on this shard and every other, concurrently; fails if any call fails
/// (the replies say how each went).
async fn on_every_shard<R: Request<Answer = QueueAnswer> + Into<QueueCall>, H: QueueHost>(
    host: &Rc<H>,
    request: impl Fn() -> R,
) -> Result<Vec<R::Reply>, OpError> {
    let calls = (0..host.count()).map(|shard| call_on(host, shard, request()));
    join_all(calls).await.into_iter().collect()
}

async fn get_queue_attributes<H: QueueHost>(host: &Rc<H>, queue: &str, names: &[String]) -> Response {
    let meta = host.snapshot().resolve(queue)?.clone();
    let all = names.iter().any(|name| name == "All");
    let mut wanted: Vec<&str> = Vec::new();
    for name in names {
        if name == "All" {
            continue;
        }
        if !crate::catalog::queues::READABLE_ATTRIBUTES.contains(&name.as_str()) {
            return Err(OpError::new(ErrorCode::InvalidAttributeName, format!("Unknown Attribute {name}.")));
        }
        wanted.push(name);
    }
    if all {
        wanted = crate::catalog::queues::READABLE_ATTRIBUTES.to_vec();
    }
    let needs_counts = wanted.iter().any(|name| name.starts_with("ApproximateNumberOfMessages"));
    let counts = if needs_counts { total_counts(host, meta.id).await? } else { Counts::default() };
    let mut attributes = Vec::with_capacity(wanted.len());
    for name in wanted {
        let value = match name {
            "QueueArn" => Some(meta.arn.clone()),
            "ApproximateNumberOfMessages" => Some(counts.visible.to_string()),
            "ApproximateNumberOfMessagesNotVisible" => Some(counts.inflight.to_string()),
            "ApproximateNumberOfMessagesDelayed" => Some(counts.delayed.to_string()),
            "CreatedTimestamp" => Some(meta.created_s.to_string()),
            "LastModifiedTimestamp" => Some(meta.modified_s.to_string()),
            other => meta.attributes.render(other),
        };
        if let Some(value) = value {
            attributes.push((name.to_owned(), value));
        }
    }
    Ok(Reply::Attributes(attributes))
}

async fn total_counts<H: QueueHost>(host: &Rc<H>, queue_id: u64) -> Result<Counts, OpError> {
    let mut total = Counts::default();
    for counts in on_every_shard(host, || CountMessages { queue_id }).await? {
        total += counts;
    }
    Ok(total)
}

// ------------------------------------------------------------------ send

/// What every queue requires of a message: a valid body, attributes and size.
pub fn check_entry(meta: &QueueMeta, entry: &SendEntry) -> Result<(), OpError> {
    check_body(&entry.body)?;
    check_attributes(&entry.attributes)?;
    check_system_attributes(&entry.system_attributes)?;
    let size = entry.size_bytes();
    let limit = meta.attributes.maximum_message_size as usize;
    if size > limit {
        return Err(OpError::new(
            ErrorCode::InvalidParameterValue,
            format!("One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."),
        ));
    }
    Ok(())
}

/// Validates and stores one message in this shard's partition.
fn send_one<H: QueueHost>(host: &Rc<H>, meta: &QueueMeta, entry: SendEntry, now: u64, sends: &mut Sends) -> Result<SendResult, OpError> {
    host.queues().storage.admit_send()?;
    check_entry(meta, &entry)?;
    let delay_s = match entry.delay_seconds {
        Some(delay) => check_range("DelaySeconds", delay, 0, DELAY_SECONDS_MAX)?,
        None => meta.attributes.delay_seconds,
    };
    if entry.deduplication_id.is_some() {
        return Err(OpError::new(
            ErrorCode::InvalidParameterValue,
            "The request include parameter that is not valid for this queue type: MessageDeduplicationId is only valid for FIFO queues.",
        ));
    }
    if let Some(group) = &entry.message_group_id {
        // A fair queue's tenant: stored and returned, checked as a FIFO queue's group is.
        fifo_service::check_group_id(group)?;
    }
    let (payload, mut result) = payload_of(entry, now);
    let message_id = new_message_id();
    append_message(host, meta, message_id, Arc::new(payload), delay_s as u64 * 1000, now, sends)?;
    result.message_id = format_uuid(message_id);
    Ok(result)
}

/// A send entry's payload, sent at `now`, and its answer but for the message id (and a FIFO
/// queue's sequence number): the entry's id and the digests of its body and attributes.
pub fn payload_of(entry: SendEntry, now: u64) -> (Payload, SendResult) {
    let md5_body = md5_of_body(&entry.body);
    let md5_attributes = md5_of_attributes(&entry.attributes);
    let md5_system = md5_of_attributes(&entry.system_attributes);
    let result = SendResult {
        id: entry.id,
        message_id: String::new(),
        md5_of_body: hex(&md5_body),
        md5_of_attributes: md5_attributes.as_ref().map(hex),
        md5_of_system_attributes: md5_system.as_ref().map(hex),
        sequence_number: None,
    };
    let payload = Payload {
        md5_of_body: md5_body,
        md5_of_attributes: md5_attributes,
        trace_header: entry.system_attributes.into_iter().next().and_then(|a| a.string_value),
        attributes: (!entry.attributes.is_empty()).then(|| Arc::from(entry.attributes)),
        message_group_id: entry.message_group_id,
        sent_ms: now,
        dead_letter_source_arn: None,
        fifo: None,
        body: entry.body,
    };
    (payload, result)
}

/// Appends one message to this shard's partition of a queue (the caller has checked
/// it), adding it to `sends` (wait on them with `sends_durable`). A message whose record
/// cannot even be staged is taken out again at once. The payload may be shared with other
/// queues' messages (a publish's), each with its own `message_id`.
#[allow(clippy::too_many_arguments)]
pub fn append_message<H: QueueHost>(
    host: &Rc<H>,
    meta: &QueueMeta,
    message_id: u128,
    payload: Arc<Payload>,
    delay_ms: u64,
    now: u64,
    sends: &mut Sends,
) -> Result<(), OpError> {
    {
        let mut partitions = host.queues().partitions.borrow_mut();
        let partition = partitions.entry(meta.id).or_insert_with(|| Partition::for_queue(meta.id));
        let seq = partition.send(message_id, payload, delay_ms, now);
        match host.queues().storage.commit(partition) {
            Ok(ticket) => sends.record(meta.id, seq, ticket),
            Err(error) => {
                partition.discard(seq);
                host.queues().storage.release_from(partition);
                return Err(error);
            }
        }
    }
    if delay_ms == 0 {
        notify_visible(host, meta.id);
    }
    Ok(())
}

/// Waits until every message in `sends` is durable. If they cannot all be kept (their log
/// records were lost to a segment that could not be made, or the log failed), they are
/// taken out of memory too, so none is received, nor read back from a record that is not
/// there, and the request is answered with the error.
pub async fn sends_durable<H: QueueHost>(host: &Rc<H>, sends: Sends) -> Result<(), OpError> {
    let Some(ticket) = sends.last else { return Ok(()) };
    let kept = host.queues().storage.durable(ticket).await;
    if kept.is_err() {
        let mut partitions = host.queues().partitions.borrow_mut();
        for (queue_id, first, last) in sends.runs() {
            if let Some(partition) = partitions.get_mut(queue_id) {
                for seq in *first..=*last {
                    partition.discard(seq);
                }
                host.queues().storage.release_from(partition);
            }
        }
    }
    kept
}

async fn send_batch<H: QueueHost>(host: &Rc<H>, queue: &str, mut entries: Vec<SendEntry>) -> Response {
    let meta = host.snapshot().resolve(queue)?.clone();
    check_batch_ids(entries.iter().map(|e| e.id.as_str()))?;
    let total: usize = entries.iter().map(SendEntry::size_bytes).sum();
    if total > BATCH_BYTES_MAX {
        return Err(OpError::new(
            ErrorCode::BatchRequestTooLong,
            format!("Batch requests cannot be longer than {BATCH_BYTES_MAX} bytes. You have sent {total} bytes."),
        ));
    }
    crate::engine::sealable(host, |snapshot| snapshot.sealing(meta.id).cloned()).await?;
    if meta.attributes.fifo {
        return fifo_service::send(host, &meta, entries, true).await;
    }
    detach_from_frame(&mut entries);
    let now = host.env().now_ms();
    let mut successful = Vec::with_capacity(entries.len());
    let mut failed = Vec::new();
    let mut sends = Sends::default();
    for mut entry in entries {
        // Taken, not cloned: the id goes into exactly one of the two results.
        let id = std::mem::take(&mut entry.id);
        match send_one(host, &meta, entry, now, &mut sends) {
            Ok(mut result) => {
                result.id = id;
                successful.push(result);
            }
            Err(error) => failed.push(BatchFailure::new(id, error)),
        }
    }
    sends_durable(host, sends).await?;
    Ok(Reply::SendMessageBatch { successful, failed })
}

// ------------------------------------------------------------------ receive

async fn receive<H: QueueHost>(host: &Rc<H>, receive: ReceiveMessage) -> Response {
    let snapshot = host.snapshot();
    let meta = snapshot.resolve(&receive.queue)?.clone();
    crate::engine::unsealable(snapshot.sealing(meta.id))?;
    drop(snapshot);
    let max_messages = check_range("MaxNumberOfMessages", receive.max_messages.unwrap_or(1), 1, RECEIVE_MESSAGES_MAX)? as usize;
    let wait_s = match receive.wait_time_seconds {
        Some(wait) => check_range("WaitTimeSeconds", wait, 0, WAIT_SECONDS_MAX)?,
        None => meta.attributes.receive_wait_seconds,
    };
    let visibility_s = match receive.visibility_timeout {
        Some(timeout) => check_range("VisibilityTimeout", timeout, 0, VISIBILITY_SECONDS_MAX)?,
        None => meta.attributes.visibility_timeout_seconds,
    };
    for name in &receive.system_attribute_names {
        if !SYSTEM_ATTRIBUTE_NAMES.contains(&name.as_str()) {
            return Err(OpError::new(ErrorCode::InvalidAttributeName, format!("Unknown Attribute {name}.")));
        }
    }
    // Only FIFO queues remember receive attempts (a standard queue ignores the id, as SQS does).
    let attempt = receive.receive_request_attempt_id.clone().filter(|_| meta.attributes.fifo);
    if let Some(id) = &attempt {
        fifo_service::check_attempt_id(id)?;
    }
    let deadline_ms = host.env().now_ms() + wait_s as u64 * 1000;
    let mut delivered: Vec<(usize, Delivery)> = Vec::new();
    // Interest is registered only once a look has come back empty; from then on before every
    // look, so that a message arriving between a look and the wait always wakes it.
    let mut waiting: Option<WaitGuard<H>> = None;
    let mut found_nothing = false;
    loop {
        if found_nothing && waiting.is_none() {
            waiting = Some(WaitGuard::register(host, meta.id));
        }
        let listener = waiting.as_ref().map(|guard| guard.listen());
        if waiting.is_some() {
            watch_peers(host, meta.id).await;
        }
        receive_round(host, &meta, max_messages, visibility_s as u64 * 1000, attempt.as_ref(), &mut delivered).await?;
        let now = host.env().now_ms();
        if !delivered.is_empty() || now >= deadline_ms || host.shutdown().requested.get() {
            break;
        }
        let Some(listener) = listener else {
            found_nothing = true;
            continue;
        };
        if !host.snapshot().by_id.contains_key(&meta.id) {
            return Err(queue_does_not_exist());
        }
        let timer = host.env().sleep(Duration::from_millis(deadline_ms - now));
        let shutdown = host.shutdown().event.listen();
        futures::pin_mut!(listener, timer, shutdown);
        futures::future::select(listener, futures::future::select(timer, shutdown)).await;
    }
    drop(waiting);
    let messages = delivered.into_iter().map(|(shard, delivery)| render_delivery(host, &meta, shard, delivery, &receive)).collect();
    Ok(Reply::ReceiveMessage(messages))
}

/// One pass over the partitions: local first, then the other shards in turn.
async fn receive_round<H: QueueHost>(
    host: &Rc<H>,
    meta: &QueueMeta,
    max_messages: usize,
    visibility_ms: u64,
    attempt: Option<&String>,
    delivered: &mut Vec<(usize, Delivery)>,
) -> Result<(), OpError> {
    if meta.attributes.fifo && !meta.groups_spread {
        // A FIFO queue is all on its owner, unless its groups are spread.
        let owner = super::fifo::owner(meta.id, host.count());
        let call = Receive { queue_id: meta.id, max_messages: max_messages - delivered.len(), visibility_ms, attempt: attempt.cloned() };
        delivered.extend(call_on(host, owner, call).await??.into_iter().map(|d| (owner, d)));
        return Ok(());
    }
    // A spread FIFO queue's shards each remember their part of a receive attempt's answer.
    let local = receive_local(host, meta.id, max_messages - delivered.len(), visibility_ms, attempt.cloned()).await?;
    delivered.extend(local.into_iter().map(|d| (host.id(), d)));
    for step in 1..host.count() {
        if delivered.len() >= max_messages {
            break;
        }
        let peer = (host.id() + step) % host.count();
        let call = Receive { queue_id: meta.id, max_messages: max_messages - delivered.len(), visibility_ms, attempt: attempt.cloned() };
        delivered.extend(call_on(host, peer, call).await??.into_iter().map(|d| (peer, d)));
    }
    Ok(())
}

/// Receives from this shard's partition; dead-letters what passed maxReceiveCount.
/// When it reaches messages whose payload is only in the log, it waits for the loader
/// to read them back. A FIFO receive with an `attempt` id retried in time answers what the
/// first try did (`fifo`).
pub async fn receive_local<H: QueueHost>(
    host: &Rc<H>,
    queue_id: u64,
    max_messages: usize,
    visibility_ms: u64,
    attempt: Option<String>,
) -> Result<Vec<Delivery>, OpError> {
    if let Some(id) = &attempt {
        let retried = {
            let mut partitions = host.queues().partitions.borrow_mut();
            match partitions.get_mut(&queue_id) {
                Some(partition) => {
                    let retried = partition.retry_attempt(id, host.env().now_ms(), visibility_ms);
                    host.queues().storage.commit(partition)?;
                    retried
                }
                None => None,
            }
        };
        if let Some(delivered) = retried {
            return Ok(delivered);
        }
    }
    let mut delivered = Vec::with_capacity(max_messages);
    for wait in 0..=LOAD_WAITS_MAX {
        let loaded = host.queues().payloads_loaded.listen();
        let before = delivered.len();
        let mut fifo_moved = Vec::new();
        let stalled = receive_resident(host, queue_id, max_messages - delivered.len(), visibility_ms, &mut delivered, &mut fifo_moved)?;
        if !fifo_moved.is_empty() {
            let snapshot = host.snapshot();
            if let Some((source, dead_letter)) =
                snapshot.by_id.get(&queue_id).and_then(|meta| Some((meta.clone(), snapshot.dead_letter_queue(meta)?.clone())))
            {
                // Boxed: the dead-letter owner may be this shard, whose calls lead back here.
                Box::pin(fifo_service::move_to_dead_letter(host, &source, &dead_letter, fifo_moved)).await;
            }
        }
        // A message taken from a feed has no durable record until its `Fed` record is on disk:
        // handing it out before would let a crash forget it while its receipt handle lives
        // on, and a delete acknowledged for that handle would find nothing, the message then
        // coming back from the feed. Every other message waits for nothing (one whose send is
        // not yet acknowledged may be received: if its record is lost, so is the message).
        let storage = &host.queues().storage;
        let synced = storage.log().synced_seq();
        if delivered[before..].iter().any(|d| d.fed_log_seq.is_some_and(|seq| seq == 0 || seq > synced)) {
            storage.durable(Ticket(storage.log().next_seq() - 1)).await?;
        }
        if !stalled || delivered.len() >= max_messages || wait == LOAD_WAITS_MAX {
            break;
        }
        loaded.await;
        if let Some(error) = host.queues().load_failed.borrow().get(&queue_id) {
            if delivered.is_empty() {
                return Err(error.clone());
            }
            break;
        }
    }
    if let (Some(id), false) = (attempt, delivered.is_empty()) {
        if let Some(partition) = host.queues().partitions.borrow_mut().get_mut(&queue_id) {
            partition.remember_attempt(id, &delivered, host.env().now_ms());
        }
    }
    Ok(delivered)
}

/// This shard's loader: reads back payloads kept only in the log, a run at a time, for
/// the queues receives asked for. Runs for the life of the shard.
pub async fn loader<H: QueueHost>(host: Rc<H>) {
    let mut wanted = Vec::new();
    loop {
        let requested = host.queues().load_requested.listen();
        let next = {
            let mut queues = host.queues().load_wanted.borrow_mut();
            (!queues.is_empty()).then(|| queues.remove(0))
        };
        let Some(queue_id) = next else {
            requested.await;
            continue;
        };
        drop(requested);
        if let Some(partition) = host.queues().partitions.borrow().get(&queue_id) {
            partition.on_disk_ahead(READ_AHEAD_MESSAGES, READ_AHEAD_BYTES, &mut wanted);
        }
        let mut failure = None;
        if !wanted.is_empty() {
            let loaded = host.queues().storage.load(queue_id, &wanted).await;
            if let Some(partition) = host.queues().partitions.borrow_mut().get_mut(&queue_id) {
                for ((seq, placement), payload) in wanted.drain(..).zip(loaded) {
                    match payload {
                        Ok((message_id, payload)) => {
                            // Ignored if the message went or was re-logged meanwhile.
                            partition.make_resident(seq, placement.log_seq, message_id, payload);
                        }
                        Err(error) => {
                            tracing::error!(shard = host.id(), queue_id, seq, error = %error.message, "cannot read a message back from the log");
                            failure.get_or_insert(error);
                        }
                    }
                }
                host.queues().storage.account(partition);
            }
            wanted.clear();
        }
        // Feed messages the queue's cursors reach next, kept in the log only: read back and
        // taken into the queue at once (they stay out of the feed's memory).
        let feed_wanted = super::feed::on_disk_ahead(&host.queues().partitions.borrow(), queue_id, READ_AHEAD_MESSAGES, READ_AHEAD_BYTES);
        if let (false, Some(meta)) = (feed_wanted.is_empty(), host.snapshot().by_id.get(&queue_id).cloned()) {
            let mut loaded = Vec::with_capacity(feed_wanted.len());
            for run in feed_wanted.chunk_by(|a, b| a.0 == b.0) {
                let feed_id = run[0].0;
                let places: Vec<(u64, Placement)> = run.iter().map(|(_, seq, placement)| (*seq, *placement)).collect();
                for ((seq, _), payload) in places.iter().zip(host.queues().storage.load(feed_id, &places).await) {
                    match payload {
                        Ok((_, payload)) => loaded.push((feed_id, *seq, payload)),
                        Err(error) => {
                            tracing::error!(shard = host.id(), queue_id, feed_id, seq, error = %error.message, "cannot read a feed message back from the log");
                            failure.get_or_insert(error);
                        }
                    }
                }
            }
            let mut partitions = host.queues().partitions.borrow_mut();
            let taken = super::feed::take(&mut partitions, &meta, loaded.len(), host.env().now_ms(), &host.config().public_url, &loaded);
            if taken.messages > 0 {
                host.metrics().queue(meta.id, |counted| counted.sent += taken.messages as u64);
            }
            if let Some(partition) = partitions.get_mut(&queue_id) {
                commit_quietly(&host, partition);
            }
        }
        let mut failed = host.queues().load_failed.borrow_mut();
        match failure {
            Some(error) => failed.insert(queue_id, error),
            None => failed.remove(&queue_id),
        };
        drop(failed);
        host.queues().payloads_loaded.notify_all();
    }
}

/// One receive from the payloads in memory. Returns whether it stopped short at a message
/// whose payload is only in the log (the loader has been asked for it); asks for a
/// read-ahead when such messages are coming up.
fn receive_resident<H: QueueHost>(
    host: &Rc<H>,
    queue_id: u64,
    max_messages: usize,
    visibility_ms: u64,
    delivered: &mut Vec<Delivery>,
    fifo_moved: &mut Vec<Moved>,
) -> Result<bool, OpError> {
    let snapshot = host.snapshot();
    let Some(meta) = snapshot.by_id.get(&queue_id) else { return Ok(false) };
    let dead_letter = snapshot.dead_letter_queue(meta);
    let rules = ReceiveRules {
        max_messages,
        visibility_ms,
        retention_ms: meta.attributes.message_retention_seconds as u64 * 1000,
        max_receive_count: dead_letter.and(meta.attributes.redrive_policy.as_ref().map(|p| p.max_receive_count)),
        inflight_max: INFLIGHT_MESSAGES_MAX,
        delay_ms: if meta.attributes.fifo { meta.attributes.delay_seconds as u64 * 1000 } else { 0 },
    };
    let now = host.env().now_ms();
    let mut moved: Vec<Moved> = Vec::new();
    let mut partitions = host.queues().partitions.borrow_mut();
    let Some(partition) = partitions.get_mut(&queue_id) else { return Ok(false) };
    // Short of visible messages, it takes the next ones from the topic feeds it reads.
    let mut feed_stalled = false;
    if !partition.cursors().is_empty() && partition.visible() < max_messages as u64 {
        let wanted = max_messages - partition.visible() as usize;
        let taken = super::feed::take(&mut partitions, meta, wanted, now, &host.config().public_url, &[]);
        feed_stalled = taken.stalled;
        if taken.messages > 0 {
            // A topic's messages count as sent to the queue as it takes them from the feed.
            host.metrics().queue(queue_id, |counted| counted.sent += taken.messages as u64);
        }
    }
    let Some(partition) = partitions.get_mut(&queue_id) else { return Ok(false) };
    let before = delivered.len();
    let received = partition.receive(now, &rules, delivered, &mut moved);
    if !moved.is_empty() {
        host.metrics().queue(queue_id, |counted| counted.moved_to_dead_letter += moved.len() as u64);
    }
    let stalled = received.is_ok() && delivered.len() - before < max_messages && (partition.front_on_disk() || feed_stalled);
    if stalled || partition.on_disk_soon(READ_AHEAD_TRIGGER) {
        host.queues().request_load(queue_id);
    }
    if meta.attributes.fifo {
        // Moved by the caller, to the dead-letter queue's owner (`fifo_service`).
        fifo_moved.append(&mut moved);
    }
    if let (Some(dead_letter), false) = (dead_letter, moved.is_empty()) {
        // The dead-letter queue's MovedIn records go to the log before the source's
        // MovedOut records: a crash in between can duplicate a message, never lose it.
        let source_arn: Arc<str> = Arc::from(meta.arn.as_str());
        let target = partitions.entry(dead_letter.id).or_insert_with(|| Partition::for_queue(dead_letter.id));
        for mut message in moved {
            let mut payload = (*message.payload).clone();
            payload.dead_letter_source_arn = Some(source_arn.clone());
            message.payload = Arc::new(payload);
            target.accept_moved(message, now);
        }
        host.queues().storage.commit(target)?;
        drop(partitions);
        notify_visible(host, dead_letter.id);
        partitions = host.queues().partitions.borrow_mut();
    }
    // Receives are not waited on: a crash can forget a receive (the message comes back
    // sooner, with the older receive count), which at-least-once delivery allows.
    if let Some(partition) = partitions.get_mut(&queue_id) {
        host.queues().storage.commit(partition)?;
    }
    received.map(|()| stalled)
}

fn render_delivery<H: QueueHost>(
    host: &Rc<H>,
    meta: &QueueMeta,
    shard: usize,
    delivery: Delivery,
    receive: &ReceiveMessage,
) -> ReceivedMessage {
    let payload = &delivery.payload;
    let receipt = Receipt {
        shard: shard as u16,
        queue_id: meta.id,
        seq: delivery.seq,
        receive_count: delivery.receive_count,
        tag: delivery.message_id as u64,
    };
    let wants = |name: &str| receive.system_attribute_names.iter().any(|n| n == "All" || n == name);
    let mut attributes = Vec::new();
    if wants("SenderId") {
        attributes.push(("SenderId".to_owned(), host.config().account_id.clone()));
    }
    if wants("SentTimestamp") {
        attributes.push(("SentTimestamp".to_owned(), payload.sent_ms.to_string()));
    }
    if wants("ApproximateReceiveCount") {
        attributes.push(("ApproximateReceiveCount".to_owned(), delivery.receive_count.to_string()));
    }
    if wants("ApproximateFirstReceiveTimestamp") {
        attributes.push(("ApproximateFirstReceiveTimestamp".to_owned(), delivery.first_receive_ms.to_string()));
    }
    if let (true, Some(trace)) = (wants("AWSTraceHeader"), &payload.trace_header) {
        attributes.push(("AWSTraceHeader".to_owned(), trace.clone()));
    }
    if let (true, Some(group)) = (wants("MessageGroupId"), &payload.message_group_id) {
        attributes.push(("MessageGroupId".to_owned(), group.clone()));
    }
    if let (true, Some(source)) = (wants("DeadLetterQueueSourceArn"), &payload.dead_letter_source_arn) {
        attributes.push(("DeadLetterQueueSourceArn".to_owned(), source.to_string()));
    }
    if let Some(fifo) = &payload.fifo {
        if wants("SequenceNumber") {
            attributes.push(("SequenceNumber".to_owned(), fifo.sequence.to_string()));
        }
        if let (true, Some(id)) = (wants("MessageDeduplicationId"), &fifo.deduplication_id) {
            attributes.push(("MessageDeduplicationId".to_owned(), id.to_string()));
        }
    }
    let message_attributes: Vec<MessageAttribute> = match &payload.attributes {
        Some(all) if !receive.message_attribute_names.is_empty() => {
            all.iter().filter(|a| attribute_selected(&receive.message_attribute_names, &a.name)).cloned().collect()
        }
        _ => Vec::new(),
    };
    let md5_of_attributes = if message_attributes.len() == payload.attributes.as_ref().map_or(0, |a| a.len()) {
        payload.md5_of_attributes.filter(|_| !message_attributes.is_empty())
    } else {
        md5_of_attributes(&message_attributes)
    };
    ReceivedMessage {
        message_id: format_uuid(delivery.message_id),
        receipt_handle: receipt.encode(&host.config().seal_key),
        md5_of_body: hex(&payload.md5_of_body),
        body: payload.body.clone(),
        attributes,
        md5_of_attributes: md5_of_attributes.as_ref().map(hex),
        message_attributes,
    }
}

/// Asks every other shard to wake this one when a message of `queue_id` shows up there.
async fn watch_peers<H: QueueHost>(host: &Rc<H>, queue_id: u64) {
    for peer in (0..host.count()).filter(|peer| *peer != host.id()) {
        host.notify_queue(peer, QueueNotice::Watch { queue_id, from: host.id() }).await;
    }
}

/// A message of `queue_id` became visible on this shard: wake local long polls and watching shards.
pub fn notify_visible<H: QueueHost>(host: &Rc<H>, queue_id: u64) {
    let mut waiters = host.queues().waiters.borrow_mut();
    let Some(waiting) = waiters.get_mut(&queue_id) else { return };
    if waiting.local > 0 {
        waiting.event.notify_all();
    }
    let remote = std::mem::take(&mut waiting.remote);
    if waiting.local == 0 {
        waiters.remove(&queue_id);
    }
    drop(waiters);
    for peer in remote {
        let shard = host.clone();
        host.env().spawn(async move { shard.notify_queue(peer, QueueNotice::Wake { queue_id }).await });
    }
}

// ------------------------------------------------------------------ delete and visibility

/// Resolves receipt handles of `queue` and groups them by owning shard.
fn route_receipts<'a, H: QueueHost>(
    host: &Rc<H>,
    meta: &QueueMeta,
    handles: impl Iterator<Item = &'a str>,
) -> Vec<Result<Receipt, OpError>> {
    handles
        .map(|handle| match Receipt::decode(handle, &host.config().seal_key) {
            Some(receipt) if receipt.queue_id == meta.id && (receipt.shard as usize) < host.count() => Ok(receipt),
            _ => Err(invalid_receipt(handle)),
        })
        .collect()
}

async fn delete_messages<H: QueueHost>(host: &Rc<H>, queue: &str, entries: &[DeleteEntry]) -> Result<Vec<Result<(), OpError>>, OpError> {
    let meta = host.snapshot().resolve(queue)?.clone();
    let receipts = route_receipts(host, &meta, entries.iter().map(|e| e.receipt_handle.as_str()));
    if meta.attributes.fifo {
        return fifo_service::delete(host, &meta, receipts).await;
    }
    let mut by_shard: Vec<Vec<(u64, u64)>> = vec![Vec::new(); host.count()];
    for receipt in receipts.iter().flatten() {
        by_shard[receipt.shard as usize].push((receipt.seq, receipt.tag));
    }
    let calls = by_shard
        .into_iter()
        .enumerate()
        .filter(|(_, messages)| !messages.is_empty())
        .map(|(shard, messages)| call_on(host, shard, Delete { queue_id: meta.id, messages }));
    for deleted in join_all(calls).await {
        // A delete that could not be kept fails the request: the messages come back.
        deleted??;
    }
    Ok(receipts.into_iter().map(|receipt| receipt.map(|_| ())).collect())
}

async fn change_visibility<H: QueueHost>(
    host: &Rc<H>,
    queue: &str,
    entries: &[VisibilityEntry],
) -> Result<Vec<Result<(), OpError>>, OpError> {
    let meta = host.snapshot().resolve(queue)?.clone();
    let receipts = route_receipts(host, &meta, entries.iter().map(|e| e.receipt_handle.as_str()));
    let mut results: Vec<Result<(), OpError>> = Vec::with_capacity(entries.len());
    // (entry index, seq, receive count, timeout) per shard.
    let mut by_shard: Vec<Vec<(usize, VisibilityChange)>> = vec![Vec::new(); host.count()];
    for (index, (receipt, entry)) in receipts.into_iter().zip(entries).enumerate() {
        let checked = receipt.and_then(|receipt| {
            check_range("VisibilityTimeout", entry.visibility_timeout, 0, VISIBILITY_SECONDS_MAX).map(|timeout| (receipt, timeout))
        });
        match checked {
            Ok((receipt, timeout)) => {
                let change = VisibilityChange {
                    message: (receipt.seq, receipt.tag),
                    receive_count: receipt.receive_count,
                    timeout_ms: timeout as u64 * 1000,
                };
                by_shard[receipt.shard as usize].push((index, change));
                results.push(Ok(()));
            }
            Err(error) => results.push(Err(error)),
        }
    }
    let calls = by_shard.into_iter().enumerate().filter(|(_, work)| !work.is_empty()).map(|(shard, work)| {
        let (indexes, entries): (Vec<usize>, Vec<_>) = work.into_iter().unzip();
        let call = ChangeVisibility { queue_id: meta.id, entries };
        async move {
            let answer = call_on(host, shard, call).await;
            (indexes, answer)
        }
    });
    for (indexes, answer) in join_all(calls).await {
        for (index, outcome) in indexes.into_iter().zip(answer?) {
            results[index] = outcome;
        }
    }
    Ok(results)
}

// ------------------------------------------------------------------ calls from other shards

/// The message counts of this shard's partition of a queue.
pub fn count_local<H: QueueHost>(host: &Rc<H>, queue_id: u64) -> Counts {
    let snapshot = host.snapshot();
    let meta = snapshot.by_id.get(&queue_id);
    let retention_ms = meta.map_or(u64::MAX / 2, |m| m.attributes.message_retention_seconds as u64 * 1000);
    let now = host.env().now_ms();
    let mut partitions = host.queues().partitions.borrow_mut();
    let Some(partition) = partitions.get_mut(&queue_id) else { return Counts::default() };
    let mut counts = partition.counts(now, retention_ms);
    commit_quietly(host, partition);
    if let Some(meta) = meta.filter(|meta| meta.attributes.fifo) {
        // A FIFO queue's delay applies at receive time: its newest messages may still be in it.
        let delayed = partition.fifo_delayed(now, meta.attributes.delay_seconds as u64 * 1000);
        counts.visible -= delayed.min(counts.visible);
        counts.delayed += delayed;
    }
    if let Some(meta) = meta {
        // And what its cursors have not taken from the feeds yet.
        let (visible, delayed) = super::feed::pending(&partitions, meta, now);
        counts.visible += visible;
        counts.delayed += delayed;
    }
    counts
}

/// Purges this shard's partition of a queue; `Ok` once kept.
pub async fn purge_local<H: QueueHost>(host: &Rc<H>, queue_id: u64) -> Result<(), OpError> {
    let commit = {
        let mut partitions = host.queues().partitions.borrow_mut();
        if let Some(partition) = partitions.get_mut(&queue_id) {
            partition.purge();
        }
        // What the queue's cursors have not taken yet goes too.
        super::feed::skip_all(&mut partitions, queue_id);
        partitions.get_mut(&queue_id).map_or(Ok(None), |partition| host.queues().storage.commit(partition))
    };
    kept(host, commit).await
}

/// Deletes messages of this shard's partition; `Ok` once kept.
pub async fn delete_local<H: QueueHost>(host: &Rc<H>, queue_id: u64, messages: Vec<MessageRef>) -> Result<(), OpError> {
    let commit = change_partition(host, queue_id, |partition| {
        for (seq, tag) in messages {
            // A handle whose message is gone (or whose sequence number now belongs
            // to another message) deletes nothing, and succeeds, as in SQS.
            if partition.holds(seq, tag) {
                partition.delete(seq);
            }
        }
    });
    kept(host, commit).await
}

/// Changes the visibility of messages of this shard's partition: one outcome per entry.
pub async fn change_visibility_local<H: QueueHost>(
    host: &Rc<H>,
    queue_id: u64,
    entries: Vec<VisibilityChange>,
) -> Vec<Result<(), OpError>> {
    let now = host.env().now_ms();
    let mut became_visible = false;
    // Without a partition (or the handle's message) here, the handle has expired.
    let mut outcomes: Vec<Result<(), OpError>> = entries.iter().map(|_| Err(expired_receipt())).collect();
    let commit = change_partition(host, queue_id, |partition| {
        for (outcome, change) in outcomes.iter_mut().zip(&entries) {
            let (seq, tag) = change.message;
            if partition.holds(seq, tag) {
                let changed = partition.change_visibility(seq, change.receive_count, change.timeout_ms, now);
                became_visible |= matches!(changed, Ok(true));
                *outcome = changed.map(|_| ());
            }
        }
    });
    if became_visible {
        notify_visible(host, queue_id);
    }
    if let Err(error) = kept(host, commit).await {
        return outcomes.into_iter().map(|_| Err(error.clone())).collect();
    }
    outcomes
}

/// Takes a newly installed snapshot into account: drops the partitions of deleted queues.
pub fn installed<H: QueueHost>(host: &Rc<H>, snapshot: &Snapshot) {
    for mut gone in host.queues().installed(snapshot) {
        gone.drop_all();
        host.queues().storage.release_from(&mut gone);
    }
    reconcile_feeds(host, snapshot);
}

/// Brings this shard's feed cursors in line with `snapshot` (`feed::reconcile`) and logs
/// what that changed. Cursors opened here are in the log before any publish they must see.
pub fn reconcile_feeds<H: QueueHost>(host: &Rc<H>, snapshot: &Snapshot) {
    let mut partitions = host.queues().partitions.borrow_mut();
    for id in super::feed::reconcile(&mut partitions, snapshot) {
        if let Some(partition) = partitions.get_mut(&id) {
            commit_quietly(host, partition);
        }
    }
}

/// A notice from another shard about long polls.
pub fn on_notice<H: QueueHost>(host: &Rc<H>, notice: QueueNotice) {
    let queues = host.queues();
    match notice {
        QueueNotice::Watch { queue_id, from } => {
            let mut waiters = queues.waiters.borrow_mut();
            let waiting = waiters.entry(queue_id).or_default();
            if !waiting.remote.contains(&from) {
                waiting.remote.push(from);
            }
            drop(waiters);
            queues.waiter_added.notify_all();
        }
        QueueNotice::Wake { queue_id } => {
            if let Some(waiting) = queues.waiters.borrow().get(&queue_id) {
                waiting.event.notify_all();
            }
        }
    }
}

/// Runs a call from another shard (or from this one) on this shard's partitions.
pub async fn handle_call<H: QueueHost>(host: &Rc<H>, call: QueueCall) -> QueueAnswer {
    match call {
        QueueCall::Receive(Receive { queue_id, max_messages, visibility_ms, attempt }) => {
            QueueAnswer::Receive(receive_local(host, queue_id, max_messages, visibility_ms, attempt).await)
        }
        QueueCall::SendFifo(SendFifo { queue_id, entries }) => {
            QueueAnswer::SendFifo(fifo_service::send_local(host, queue_id, entries).await)
        }
        QueueCall::DeleteFifo(DeleteFifo { queue_id, messages }) => {
            QueueAnswer::DeleteFifo(fifo_service::delete_local(host, queue_id, messages).await)
        }
        QueueCall::AcceptMoved(AcceptMoved { queue_id, source_arn, messages }) => {
            QueueAnswer::AcceptMoved(fifo_service::accept_moved_local(host, queue_id, source_arn, messages).await)
        }
        QueueCall::CountMessages(CountMessages { queue_id }) => QueueAnswer::CountMessages(count_local(host, queue_id)),
        QueueCall::MoveOut(request) => QueueAnswer::MoveOut(super::redrive::move_out_local(host, request).await),
        QueueCall::Purge(Purge { queue_id }) => QueueAnswer::Purge(purge_local(host, queue_id).await),
        QueueCall::Delete(Delete { queue_id, messages }) => QueueAnswer::Delete(delete_local(host, queue_id, messages).await),
        QueueCall::ChangeVisibility(ChangeVisibility { queue_id, entries }) => {
            QueueAnswer::ChangeVisibility(change_visibility_local(host, queue_id, entries).await)
        }
    }
}

/// Runs due timers of partitions with waiters, waking them; called by the shard's timer task.
pub fn tick_watched<H: QueueHost>(host: &Rc<H>) {
    let now = host.env().now_ms();
    let snapshot = host.snapshot();
    let watched: Vec<u64> = host.queues().waiters.borrow().keys().copied().collect();
    for queue_id in watched {
        let Some(meta) = snapshot.by_id.get(&queue_id) else { continue };
        let retention_ms = meta.attributes.message_retention_seconds as u64 * 1000;
        let mut partitions = host.queues().partitions.borrow_mut();
        let visible = match partitions.get_mut(&queue_id) {
            Some(partition) if partition.is_fifo() => {
                partition.tick(now, retention_ms);
                commit_quietly(host, partition);
                partition.fifo_receivable(now, meta.attributes.delay_seconds as u64 * 1000)
            }
            Some(partition) => {
                partition.tick(now, retention_ms);
                commit_quietly(host, partition);
                // Or a feed message whose delay is over, still to be taken.
                partition.has_visible() || (!partition.cursors().is_empty() && super::feed::pending(&partitions, meta, now).0 > 0)
            }
            None => false,
        };
        drop(partitions);
        if visible {
            notify_visible(host, queue_id);
        }
    }
}

/// Runs every partition's timers (retention); called about once a second.
pub fn tick_all<H: QueueHost>(host: &Rc<H>) {
    let now = host.env().now_ms();
    let snapshot = host.snapshot();
    let mut partitions = host.queues().partitions.borrow_mut();
    for (queue_id, partition) in partitions.iter_mut() {
        if let Some(meta) = snapshot.by_id.get(queue_id) {
            partition.tick(now, meta.attributes.message_retention_seconds as u64 * 1000);
            commit_quietly(host, partition);
        } else if partition.is_fifo() {
            // A FIFO topic's deduplication window (`topic::fifo`).
            partition.expire_dedup(now);
            commit_quietly(host, partition);
        }
    }
    for feed_id in super::feed::trim(&mut partitions, &snapshot, now) {
        if let Some(feed) = partitions.get_mut(&feed_id) {
            commit_quietly(host, feed);
        }
    }
}

/// Applies `change` to this shard's partition of `queue_id`, if it has one, and commits
/// what it journaled.
fn change_partition<H: QueueHost>(host: &Rc<H>, queue_id: u64, change: impl FnOnce(&mut Partition)) -> Result<Option<Ticket>, OpError> {
    let mut partitions = host.queues().partitions.borrow_mut();
    let Some(partition) = partitions.get_mut(&queue_id) else { return Ok(None) };
    change(partition);
    host.queues().storage.commit(partition)
}

/// Waits until a commit's records are durable. A commit that wrote nothing (the change was
/// already made: a second delete of one message) waits for everything the log holds so far:
/// the earlier change may still be on its way to the disk, or have failed to get there, and
/// must not be acknowledged before it is kept.
async fn kept<H: QueueHost>(host: &Rc<H>, commit: Result<Option<Ticket>, OpError>) -> Result<(), OpError> {
    let storage = &host.queues().storage;
    let ticket = match commit? {
        Some(ticket) => ticket,
        None => Ticket(storage.log().next_seq() - 1),
    };
    storage.durable(ticket).await
}

/// Commits what timers journaled (expiries); nobody waits on these, so a failure is
/// only logged (the log then refuses everything, and requests report it).
fn commit_quietly<H: QueueHost>(host: &Rc<H>, partition: &mut Partition) {
    if let Err(error) = host.queues().storage.commit(partition) {
        tracing::warn!(shard = host.id(), error = %error.message, "could not log expired messages");
    }
}

/// Registers a long poll on this shard for as long as it lives.
struct WaitGuard<H: QueueHost> {
    host: Rc<H>,
    queue_id: u64,
    event: Rc<crate::env::notify::LocalNotify>,
}

impl<H: QueueHost> WaitGuard<H> {
    fn register(host: &Rc<H>, queue_id: u64) -> WaitGuard<H> {
        let mut waiters = host.queues().waiters.borrow_mut();
        let waiting: &mut Waiters = waiters.entry(queue_id).or_default();
        waiting.local += 1;
        let event = waiting.event.clone();
        drop(waiters);
        host.queues().waiter_added.notify_all();
        WaitGuard { host: host.clone(), queue_id, event }
    }

    fn listen(&self) -> crate::env::notify::Listener<'_> {
        self.event.listen()
    }
}

impl<H: QueueHost> Drop for WaitGuard<H> {
    fn drop(&mut self) {
        let mut waiters = self.host.queues().waiters.borrow_mut();
        if let Some(waiting) = waiters.get_mut(&self.queue_id) {
            waiting.local -= 1;
            if waiting.local == 0 && waiting.remote.is_empty() {
                waiters.remove(&self.queue_id);
            }
        }
    }
}

/// Copies a send's bodies and binary attribute values into one allocation for the
/// whole request. Decoded values are slices of the connection's read buffer; a stored
/// message holding such a slice would keep that whole buffer (64 KiB or more) alive
/// for as long as the message lives.
pub fn detach_from_frame(entries: &mut [SendEntry]) {
    let binary_bytes = |entry: &SendEntry| entry.attributes.iter().map(|a| a.binary_value.as_ref().map_or(0, |v| v.len())).sum::<usize>();
    let total: usize = entries.iter().map(|entry| entry.body.len() + binary_bytes(entry)).sum();
    let mut arena = bytes::BytesMut::with_capacity(total);
    for entry in entries {
        arena.extend_from_slice(&entry.body);
        entry.body = arena.split().freeze();
        for attribute in &mut entry.attributes {
            if let Some(value) = &mut attribute.binary_value {
                arena.extend_from_slice(value);
                *value = arena.split().freeze();
            }
        }
    }
}

fn batch_reply<'a>(ids: impl Iterator<Item = &'a String>, results: Vec<Result<(), OpError>>) -> Reply {
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for (id, result) in ids.zip(results) {
        match result {
            Ok(()) => successful.push(id.clone()),
            Err(error) => failed.push(BatchFailure::new(id.clone(), error)),
        }
    }
    Reply::Batch { successful, failed }
}

/// A list's continuation token: the last name of the page and its tag (`seal`),
/// base64url-encoded — a client can only continue a listing it was given.
pub fn encode_next_token(last: &str, key: &SealKey) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    URL_SAFE_NO_PAD.encode(key.seal(last.as_bytes().to_vec()))
}

/// The name a continuation token holds; `None` for a token this server never made.
pub fn decode_next_token(token: &str, key: &SealKey) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let sealed = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?;
    String::from_utf8(key.open(&sealed)?.to_vec()).ok()
}

/// ListQueues-style paging over queues in name order; the token is the last name returned.
pub fn paginate<'a>(
    queues: impl Iterator<Item = &'a Arc<QueueMeta>>,
    max_results: Option<i32>,
    next_token: Option<String>,
    key: &SealKey,
) -> Response {
    let page = match max_results {
        Some(max) => check_range("MaxResults", max, 1, LIST_RESULTS_MAX)? as usize,
        None => LIST_RESULTS_MAX as usize,
    };
    let after = match next_token {
        Some(token) => {
            Some(decode_next_token(&token, key).ok_or_else(|| OpError::new(ErrorCode::InvalidParameterValue, "Invalid NextToken value."))?)
        }
        None => None,
    };
    let mut remaining = queues.filter(|meta| after.as_ref().is_none_or(|after| meta.name.as_str() > after.as_str()));
    let selected: Vec<&Arc<QueueMeta>> = remaining.by_ref().take(page).collect();
    let more = remaining.next().is_some();
    let next_token = match (more, max_results, selected.last()) {
        (true, Some(_), Some(last)) => Some(encode_next_token(&last.name, key)),
        _ => None,
    };
    Ok(Reply::QueueUrls { queue_urls: selected.iter().map(|meta| meta.url.clone()).collect(), next_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_values_keep_their_bytes_but_leave_the_frame() {
        let frame = bytes::Bytes::from(vec![7u8; 65_536]);
        let mut entries = vec![
            SendEntry {
                body: frame.slice(0..100),
                attributes: vec![MessageAttribute::binary("b", frame.slice(100..110))],
                ..SendEntry::default()
            },
            SendEntry { body: frame.slice(200..300), ..SendEntry::default() },
        ];
        detach_from_frame(&mut entries);
        let in_frame =
            |bytes: &bytes::Bytes| (frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len()).contains(&(bytes.as_ptr() as usize));
        assert_eq!(entries[0].body, frame.slice(0..100));
        assert_eq!(entries[1].body, frame.slice(200..300));
        assert_eq!(entries[0].attributes[0].binary_value.as_ref().unwrap(), &frame.slice(100..110));
        assert!(!in_frame(&entries[0].body) && !in_frame(&entries[1].body));
        assert!(!in_frame(entries[0].attributes[0].binary_value.as_ref().unwrap()));
    }

    #[test]
    fn sends_keep_runs_of_consecutive_messages_per_queue() {
        let mut sends = Sends::default();
        for seq in 5..15 {
            sends.add(1, seq);
        }
        assert!(sends.more.is_empty(), "a batch to one queue is one run, held inline");
        sends.add(2, 7);
        sends.add(2, 8);
        sends.add(1, 15);
        assert_eq!(sends.runs().copied().collect::<Vec<_>>(), [(1, 5, 14), (2, 7, 8), (1, 15, 15)]);
    }
}
