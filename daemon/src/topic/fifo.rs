//! FIFO topics (aws-semantics.md §3.2, §3.5, §3.6): publishes numbered and deduplicated, and
//! delivered to every subscribed queue in order within their message group.
//!
//! **Placement.** A FIFO topic lives on one shard, its owner (a stable hash of its ARN): a
//! publish that arrives elsewhere is checked there and handed to the owner in one call
//! (`PublishFifo`), so numbering and the deduplication window need no coordination between
//! cores.
//!
//! **Order.** The owner numbers a publish's entries and, without waiting in between, appends
//! a standard queue's copies here and puts a FIFO queue's into the queue's *outbox*, behind the
//! copies of earlier publishes. One send to the queue at a time (`SendFifo` to its owner, or
//! to each of its groups' shards at once when its groups are spread) carries everything its
//! outbox holds, so copies reach each queue in the order the topic numbered them
//! however the calls between shards travel, and the queue keeps that order within each group;
//! under load, one call carries the copies of many publishes. A publish is answered once every
//! copy is kept.
//!
//! **Deduplication.** The key (`queue::fifo::dedup_key` of the group, when
//! `FifoThroughputScope` is `MessageGroup`, and the `MessageDeduplicationId` or the SHA-256 of
//! the message) is looked up in the topic's window: a partition of the owner's queue log that
//! holds keys and no messages (`catalog::feeds::topic_window_id`), whose `Dedup` records keep
//! them for five minutes across restarts, and which compaction and expiry treat as they treat a
//! FIFO queue's. A repeat within the window is answered with the first publish's message id and
//! sequence number and delivers nothing. A key goes into the window only once its copies are
//! kept (a repeat that arrives meanwhile waits for the outcome), so a publish that failed is
//! never taken for a duplicate. Each FIFO queue's copy carries the publish's group and
//! deduplication id, and the queue deduplicates it too: a publish retried after a crash that
//! lost the window's record (its copies kept, its answer lost) is not delivered twice to a FIFO
//! queue. (A standard queue, being at-least-once, may then get it twice.)
//!
//! **Envelopes** carry the topic's `SequenceNumber`; raw deliveries carry the message and its
//! attributes; filter policies and dead-letter queues (FIFO ones) work as on standard topics.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures::channel::oneshot;
use serde_json::Value;
use sluice_protocol::limits::FIFO_ID_CHARS_MAX;
use sluice_protocol::*;

use super::calls::PublishFifo;
use super::envelope::{Envelope, Notification};
use super::service::{check_publish, dead_letter_queue, deliverable, detached, passes, Structure};
use super::TopicHost;
use crate::catalog::feeds::{topic_window_id, FEED_BIT};
use crate::catalog::filter::{parse_arrays, Scope};
use crate::catalog::topics::{topic_not_found, TopicMeta};
use crate::catalog::{QueueMeta, Snapshot};
use crate::env::notify::LocalNotify;
use crate::queue::fifo::{content_deduplication_id, dedup_key};
use crate::queue::partition::Partition;
use crate::queue::service::{append_message, format_uuid, new_message_id, payload_of, sends_durable, Sends};
use crate::storage::Ticket;

/// The shard that owns FIFO topic `topic_arn`.
pub fn owner(topic_arn: &str, shards: usize) -> usize {
    ((topic_window_id(topic_arn) & !FEED_BIT) % shards.max(1) as u64) as usize
}

/// The FIFO topics this shard owns, beyond their windows: the publishes whose copies are
/// being delivered, and the copies on their way to each FIFO queue.
#[derive(Default)]
pub struct Pending {
    /// (window, key) of each publish being delivered; a repeat of one waits until it is
    /// settled (`settled`).
    keys: RefCell<HashSet<(u64, u128)>>,
    settled: LocalNotify,
    /// By queue id; a queue is here while its pump runs.
    outboxes: RefCell<HashMap<u64, Outbox>>,
}

/// What a FIFO queue's owner answered for some copies: one outcome per copy.
type Outcomes = Result<Vec<Result<SendResult, OpError>>, OpError>;

/// Copies on their way to one FIFO queue, in the order the topic numbered them. One call to
/// the queue's owner at a time carries every copy that came meanwhile (`pump`): a later call
/// cannot overtake an earlier one on the way, and copies of many publishes share a call.
#[derive(Default)]
struct Outbox {
    waiting: Vec<SendEntry>,
    /// Who waits for the outcomes of `waiting`, in order: how many copies, where they go.
    waiters: Vec<(usize, oneshot::Sender<Outcomes>)>,
}

/// Queues `copies` for FIFO queue `queue_id` behind those queued before; their outcomes come
/// through the receiver.
fn enqueue<H: TopicHost>(host: &Rc<H>, queue_id: u64, copies: Vec<SendEntry>) -> oneshot::Receiver<Outcomes> {
    let (sender, receiver) = oneshot::channel();
    let start = {
        let mut outboxes = host.topics().fifo.outboxes.borrow_mut();
        let start = !outboxes.contains_key(&queue_id);
        let outbox = outboxes.entry(queue_id).or_default();
        outbox.waiters.push((copies.len(), sender));
        outbox.waiting.extend(copies);
        start
    };
    if start {
        let host = host.clone();
        host.env().clone().spawn(async move { pump(host, queue_id).await });
    }
    receiver
}

/// Hands a FIFO queue's outbox to the queue (its groups' shards), a send at a time, until it is empty.
async fn pump<H: TopicHost>(host: Rc<H>, queue_id: u64) {
    loop {
        let (copies, waiters) = {
            let mut outboxes = host.topics().fifo.outboxes.borrow_mut();
            let Some(outbox) = outboxes.get_mut(&queue_id) else { return };
            if outbox.waiting.is_empty() {
                outboxes.remove(&queue_id);
                return;
            }
            (std::mem::take(&mut outbox.waiting), std::mem::take(&mut outbox.waiters))
        };
        let meta = host.snapshot().by_id.get(&queue_id).cloned();
        let sent = match meta {
            Some(meta) => crate::queue::fifo_service::send_to_owners(&host, &meta, copies).await,
            None => Err(crate::catalog::queue_does_not_exist()),
        };
        match sent {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for (count, waiter) in waiters {
                    let _ = waiter.send(Ok(outcomes.by_ref().take(count).collect()));
                }
            }
            Err(error) => {
                for (_, waiter) in waiters {
                    let _ = waiter.send(Err(error.clone()));
                }
            }
        }
    }
}

fn invalid(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::InvalidParameter, message)
}

/// What a FIFO topic requires of a message beyond what every topic does.
fn check_entry(topic: &TopicMeta, entry: &PublishEntry) -> Result<(), OpError> {
    check_publish(entry, true)?;
    if entry.message_group_id.is_none() {
        return Err(invalid("Invalid parameter: The MessageGroupId parameter is required for FIFO topics"));
    }
    match &entry.deduplication_id {
        None if !topic.content_based_deduplication() => Err(invalid(
            "Invalid parameter: The topic should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
        )),
        Some(id) if id.is_empty() || id.len() > FIFO_ID_CHARS_MAX || !id.bytes().all(|b| b.is_ascii_graphic()) => {
            Err(invalid("Invalid parameter: MessageDeduplicationId must be 1 to 128 alphanumeric or punctuation characters"))
        }
        _ => Ok(()),
    }
}

/// Publish or PublishBatch to a FIFO topic, from any shard: checks the entries here and hands
/// the good ones to the topic's owner.
pub async fn publish<H: TopicHost>(
    host: &Rc<H>,
    topic: &TopicMeta,
    entries: Vec<PublishEntry>,
) -> Result<(Vec<PublishResult>, Vec<BatchFailure>), OpError> {
    let mut ids = Vec::with_capacity(entries.len());
    let mut outcomes: Vec<Option<Result<PublishResult, OpError>>> = Vec::with_capacity(entries.len());
    let mut to_publish = Vec::with_capacity(entries.len());
    for mut entry in entries {
        ids.push(std::mem::take(&mut entry.id));
        match check_entry(topic, &entry) {
            Ok(()) => {
                outcomes.push(None);
                // Copied out of the request frame: the owner may keep it past the request.
                entry.message = Bytes::copy_from_slice(&entry.message);
                entry.attributes = detached(&entry.attributes);
                to_publish.push(entry);
            }
            Err(error) => outcomes.push(Some(Err(error))),
        }
    }
    if !to_publish.is_empty() {
        let call = PublishFifo { topic: topic.name.clone(), entries: to_publish };
        let published = super::call_on(host, owner(&topic.arn, host.count()), call).await??;
        let mut published = published.into_iter();
        for outcome in outcomes.iter_mut().filter(|o| o.is_none()) {
            *outcome = published.next();
        }
    }
    let (mut successful, mut failed) = (Vec::new(), Vec::new());
    for (id, outcome) in ids.into_iter().zip(outcomes) {
        match outcome.unwrap_or_else(|| Err(OpError::new(ErrorCode::InternalFailure, "a batch entry got no outcome"))) {
            Ok(result) => successful.push(PublishResult { id, ..result }),
            Err(error) => failed.push(BatchFailure::new(id, error)),
        }
    }
    Ok((successful, failed))
}

/// What the window makes of one entry.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// New: numbered, to deliver.
    New { message_id: u128, sequence: u64 },
    /// A repeat of a publish in the window.
    Duplicate { message_id: u128, sequence: u64 },
    /// A repeat of a publish still being delivered: its outcome decides.
    Repeats,
}

struct Plan {
    key: u128,
    deduplication_id: String,
    kind: Kind,
    /// Why the entry failed, if it did.
    failed: Option<OpError>,
}

/// A FIFO queue's copies of this call's publishes: the queue, the copies in order, and the
/// entry each copy is of.
type QueueCopies = Vec<(Arc<QueueMeta>, Vec<SendEntry>, Vec<usize>)>;

/// On the owner: deduplicates, numbers and delivers checked entries; one outcome per entry,
/// once every copy and the window's record of it are kept.
pub async fn publish_local<H: TopicHost>(
    host: &Rc<H>,
    topic: &str,
    entries: Vec<PublishEntry>,
) -> Result<Vec<Result<PublishResult, OpError>>, OpError> {
    let snapshot = host.snapshot();
    let topic = snapshot.topics.get(topic).filter(|t| t.is_fifo()).cloned().ok_or_else(topic_not_found)?;
    host.queues().storage.admit_send()?;
    let now = host.env().now_ms();
    let window_id = topic_window_id(&topic.arn);
    let pending = &host.topics().fifo;
    let mut plans = Vec::with_capacity(entries.len());
    {
        let mut partitions = host.queues().partitions.borrow_mut();
        let window = partitions.entry(window_id).or_insert_with(|| Partition::for_queue(window_id));
        let mut keys = pending.keys.borrow_mut();
        for entry in &entries {
            let deduplication_id = entry.deduplication_id.clone().unwrap_or_else(|| content_deduplication_id(&entry.message));
            let scope = topic.deduplicates_per_group().then(|| entry.message_group_id.as_deref().unwrap_or_default());
            let key = dedup_key(scope, &deduplication_id);
            let kind = match window.published(key, now) {
                Some((message_id, sequence)) => Kind::Duplicate { message_id, sequence },
                None if keys.contains(&(window_id, key)) => Kind::Repeats,
                None => {
                    keys.insert((window_id, key));
                    Kind::New { message_id: new_message_id(), sequence: window.next_published_sequence(now) }
                }
            };
            plans.push(Plan { key, deduplication_id, kind, failed: None });
        }
    }
    // Every copy is handed on before anything is waited for: the order of publishes is the
    // order their copies reach each queue.
    let mut copies: QueueCopies = Vec::new();
    let mut sends = Sends::default();
    let mut appended = vec![false; plans.len()];
    for (index, (entry, plan)) in entries.iter().zip(plans.iter_mut()).enumerate() {
        let Kind::New { message_id, sequence } = plan.kind else { continue };
        let delivery = Delivery { snapshot: &snapshot, topic: &topic, entry, deduplication_id: &plan.deduplication_id, index, now };
        match delivery.copies(host, message_id, sequence, &mut copies, &mut sends) {
            Ok(local) => appended[index] = local,
            Err(error) => plan.failed = Some(error),
        }
    }
    let waits = copies.into_iter().map(|(queue, entries, of)| {
        let outcomes = enqueue(host, queue.id, entries);
        async move {
            let outcomes =
                outcomes.await.unwrap_or_else(|_| Err(OpError::new(ErrorCode::ServiceUnavailable, "the delivery was cut short")));
            (of, outcomes)
        }
    });
    let waits: Vec<_> = waits.collect();
    let (answers, kept) = futures::join!(futures::future::join_all(waits), sends_durable(host, sends));
    for (of, answer) in answers {
        match answer {
            Ok(outcomes) => {
                for (index, outcome) in of.iter().zip(outcomes.into_iter().map(Some).chain(std::iter::repeat(None))) {
                    let outcome = outcome.unwrap_or_else(|| Err(OpError::new(ErrorCode::InternalFailure, "a copy got no outcome")));
                    if let Err(error) = outcome {
                        plans[*index].failed.get_or_insert(error);
                    }
                }
            }
            Err(error) => {
                for index in of {
                    plans[index].failed.get_or_insert_with(|| error.clone());
                }
            }
        }
    }
    if let Err(error) = kept {
        for (plan, _) in plans.iter_mut().zip(&appended).filter(|(_, appended)| **appended) {
            plan.failed.get_or_insert_with(|| error.clone());
        }
    }
    // Settled: the delivered keys go into the window, the failed ones out of `pending` (a
    // repeat of one is then a new publish).
    let commit = {
        let mut partitions = host.queues().partitions.borrow_mut();
        let window = partitions.entry(window_id).or_insert_with(|| Partition::for_queue(window_id));
        let mut keys = pending.keys.borrow_mut();
        for plan in &plans {
            if let Kind::New { message_id, sequence } = plan.kind {
                keys.remove(&(window_id, plan.key));
                if plan.failed.is_none() {
                    window.remember_published(plan.key, message_id, sequence, now);
                }
            }
        }
        host.queues().storage.commit(window)
    };
    pending.settled.notify_all();
    // Repeats of publishes still being delivered when they came: answered as the first was.
    for plan in plans.iter_mut().filter(|plan| matches!(plan.kind, Kind::Repeats)) {
        loop {
            let settled = pending.settled.listen();
            if !pending.keys.borrow().contains(&(window_id, plan.key)) {
                break;
            }
            settled.await;
        }
        let now = host.env().now_ms();
        match host.queues().partitions.borrow().get(&window_id).and_then(|window| window.published(plan.key, now)) {
            Some((message_id, sequence)) => plan.kind = Kind::Duplicate { message_id, sequence },
            None => {
                plan.failed =
                    Some(OpError::new(ErrorCode::InternalFailure, "The publish this one repeats could not be delivered; publish it again."))
            }
        }
    }
    // Everything the answers rest on is in the log up to here: a duplicate's window record may
    // be another publish's, still on its way to the disk.
    let storage = &host.queues().storage;
    let ticket = commit?.unwrap_or(Ticket(storage.log().next_seq() - 1));
    storage.durable(ticket).await?;
    Ok(plans
        .into_iter()
        .map(|plan| match (plan.failed, plan.kind) {
            (Some(error), _) => Err(error),
            (None, Kind::New { message_id, sequence } | Kind::Duplicate { message_id, sequence }) => {
                Ok(PublishResult { id: String::new(), message_id: format_uuid(message_id), sequence_number: Some(sequence.to_string()) })
            }
            (None, Kind::Repeats) => Err(OpError::new(ErrorCode::InternalFailure, "a repeated publish was not settled")),
        })
        .collect())
}

/// One new publish being copied to the topic's subscriptions.
struct Delivery<'a> {
    snapshot: &'a Snapshot,
    topic: &'a TopicMeta,
    entry: &'a PublishEntry,
    deduplication_id: &'a str,
    /// The entry's place in the call.
    index: usize,
    now: u64,
}

impl Delivery<'_> {
    /// Makes a copy for every subscription whose filter lets the message through: a FIFO
    /// queue's into `copies`, a standard queue's appended here (into `sends`); an undeliverable
    /// one goes to the subscription's dead-letter queue, if it has one. Returns whether it
    /// appended any here.
    fn copies<H: TopicHost>(
        &self,
        host: &Rc<H>,
        message_id: u128,
        sequence: u64,
        copies: &mut QueueCopies,
        sends: &mut Sends,
    ) -> Result<bool, OpError> {
        let (topic, entry) = (self.topic, self.entry);
        let checked = check_publish(entry, true)?;
        let (text, attributes): (&str, &[MessageAttribute]) = match &checked {
            Structure::Plain(text) => (text, &entry.attributes),
            Structure::Json { sqs } => (sqs, &[]),
        };
        let message_id = format_uuid(message_id);
        let sequence = sequence.to_string();
        let timestamp = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(self.now)).to_string();
        let notification = Notification {
            message_id: &message_id,
            sequence_number: Some(&sequence),
            topic_arn: &topic.arn,
            subject: entry.subject.as_deref(),
            message: text,
            timestamp: &timestamp,
            signature_version: topic.attributes.get("SignatureVersion").map_or("1", String::as_str),
            attributes,
        };
        let arrays = parse_arrays(&entry.attributes);
        let body_filters = topic.subscriptions.iter().any(|s| s.filter.is_some() && s.scope == Scope::MessageBody);
        let body: Option<Value> = if body_filters { serde_json::from_str(text).ok() } else { None };
        let mut envelope: Option<Envelope> = None;
        let public_url = host.config().public_url.as_str();
        let mut appended = false;
        // For the metrics: (delivered, dead-lettered, filtered out).
        let mut counted = (0u64, 0u64, 0u64);
        for (index, subscription) in topic.subscriptions.iter().enumerate() {
            // Only SQS subscriptions, confirmed at once, are made to a FIFO topic.
            if subscription.protocol != "sqs" || subscription.pending_token.is_some() {
                continue;
            }
            if !passes(subscription, &entry.attributes, &arrays, body.as_ref()) {
                counted.2 += 1;
                continue;
            }
            let (body, sqs_attributes) = if subscription.raw {
                (Bytes::copy_from_slice(text.as_bytes()), detached(attributes))
            } else {
                (envelope.get_or_insert_with(|| Envelope::new(&notification, public_url)).body_for(&subscription.arn), Vec::new())
            };
            let queue = self.snapshot.subscribed_queue(&topic.name, index);
            let denied = self.snapshot.delivery_denied(&topic.name, index);
            let (queue, body, sqs_attributes) = match deliverable(queue, denied, subscription, attributes.len(), body.len()) {
                Ok(queue) => {
                    counted.0 += 1;
                    (queue, body, sqs_attributes)
                }
                Err(undeliverable) => {
                    counted.1 += 1;
                    let Some(queue) = dead_letter_queue(self.snapshot, subscription, &undeliverable) else { continue };
                    let body = envelope.get_or_insert_with(|| Envelope::new(&notification, public_url)).body_for(&subscription.arn);
                    (queue, body, undeliverable.attributes())
                }
            };
            let copy = SendEntry {
                id: String::new(),
                body,
                delay_seconds: None,
                attributes: sqs_attributes,
                system_attributes: Vec::new(),
                message_group_id: entry.message_group_id.clone(),
                deduplication_id: Some(self.deduplication_id.to_owned()),
            };
            if queue.attributes.fifo {
                match copies.iter_mut().find(|(q, ..)| q.id == queue.id) {
                    Some((_, entries, of)) => {
                        entries.push(copy);
                        of.push(self.index);
                    }
                    None => copies.push((queue.clone(), vec![copy], vec![self.index])),
                }
            } else {
                // A standard queue keeps the group (a fair queue's tenant), not the
                // deduplication id.
                let (payload, _) = payload_of(SendEntry { deduplication_id: None, ..copy }, self.now);
                let delay_ms = queue.attributes.delay_seconds as u64 * 1000;
                append_message(host, queue, new_message_id(), Arc::new(payload), delay_ms, self.now, sends)?;
                appended = true;
            }
        }
        let (delivered, failed, filtered_out) = counted;
        if filtered_out > 0 {
            host.metrics().topic(&topic.name, |topic| topic.filtered_out += filtered_out);
        }
        if delivered + failed > 0 {
            host.metrics().delivery(&topic.name, "sqs", |sqs| {
                sqs.delivered += delivered;
                sqs.failed += failed;
            });
        }
        Ok(appended)
    }
}
