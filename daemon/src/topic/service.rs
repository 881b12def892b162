//! The SNS operations, as run by one shard.
//!
//! Topic and subscription changes go to shard 0's registry like every metadata change.
//! A publish runs where it arrived: it is checked, matched against each confirmed
//! subscription's filter policy, and appended to this shard's partition of every
//! matching queue; the answer waits until the log holds all of them durably (one group
//! commit for the whole publish or batch). A delivery that cannot be made because of
//! the subscriber (its queue is gone, the message does not fit it) goes to the
//! subscription's dead-letter queue, or is dropped and logged when it has none, as SNS
//! does; it never fails the publish.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;
use sluice_protocol::digest::{md5_of_attributes, md5_of_body};
use sluice_protocol::limits::*;
use sluice_protocol::*;

use super::calls::{PublishFifo, TopicAnswer, TopicCall};
use super::envelope::{Envelope, Notification};
use super::TopicHost;
use crate::catalog::filter::{parse_arrays, Message, Scope};
use crate::catalog::topics::{
    default_policy, random_uuid, resolve, resolve_subscription, SubscriptionMeta, TopicChange, TopicMeta, DEFAULT_DELIVERY_POLICY,
};
use crate::catalog::{MetaChange, MetaOutcome, QueueMeta, Snapshot};
use crate::queue::partition::Payload;
use crate::queue::service::{decode_next_token, encode_next_token, new_message_id, Sends};
use crate::queue::validate::check_batch_ids;

fn invalid(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::InvalidParameter, message)
}

/// What one subscription's delivery came to, when it did not land in its queue.
pub(crate) struct Undeliverable {
    /// The code SNS puts in the dead-letter message's `ErrorCode` attribute.
    pub code: &'static str,
    pub reason: String,
}

/// One page of names after `next_token` (the last name of the previous page, encoded).
fn page<'a, T>(
    items: impl Iterator<Item = (&'a str, T)>,
    next_token: Option<String>,
    key: &crate::seal::SealKey,
) -> Result<(Vec<T>, Option<String>), OpError> {
    let after = match next_token {
        Some(token) => Some(decode_next_token(&token, key).ok_or_else(|| invalid("Invalid parameter: NextToken"))?),
        None => None,
    };
    let mut remaining = items.filter(|(key, _)| after.as_deref().is_none_or(|after| *key > after));
    let mut selected = Vec::new();
    let mut last = None;
    for (key, item) in remaining.by_ref().take(TOPIC_LIST_PAGE_MAX) {
        selected.push(item);
        last = Some(key);
    }
    let next = match (remaining.next(), last) {
        (Some(_), Some(last)) => Some(encode_next_token(last, key)),
        _ => None,
    };
    Ok((selected, next))
}

fn summary(account_id: &str, s: &SubscriptionMeta) -> SubscriptionSummary {
    SubscriptionSummary {
        subscription_arn: if s.pending_token.is_some() { "PendingConfirmation".into() } else { s.arn.clone() },
        owner: account_id.to_owned(),
        protocol: s.protocol.clone(),
        endpoint: s.endpoint.clone(),
        topic_arn: s.topic_arn.clone(),
    }
}

/// Runs one topic operation.
pub async fn handle_op<H: TopicHost>(host: &Rc<H>, op: Op) -> Response {
    let account_id = &host.config().account_id;
    match op {
        Op::CreateTopic { name, attributes, tags } => topic_change(host, TopicChange::Create { name, attributes, tags }).await,
        Op::DeleteTopic { topic } => topic_change(host, TopicChange::Delete { topic }).await.map(|_| Reply::Done),
        Op::ListTopics { next_token } => {
            let snapshot = host.snapshot();
            let (arns, next_token) =
                page(snapshot.topics.values().map(|t| (t.name.as_str(), t.arn.clone())), next_token, &host.config().seal_key)?;
            Ok(Reply::Arns { arns, next_token })
        }
        Op::GetTopicAttributes { topic } => {
            let snapshot = host.snapshot();
            let meta = resolve(&snapshot.topics, &snapshot.naming, &topic)?;
            Ok(Reply::Attributes(topic_attributes(meta, account_id)))
        }
        Op::TagTopic { topic, tags } => topic_change(host, TopicChange::Tag { topic, tags }).await.map(|_| Reply::Done),
        Op::UntagTopic { topic, keys } => topic_change(host, TopicChange::Untag { topic, keys }).await.map(|_| Reply::Done),
        Op::ListTopicTags { topic } => {
            let snapshot = host.snapshot();
            let meta = resolve(&snapshot.topics, &snapshot.naming, &topic)?;
            Ok(Reply::Attributes(meta.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
        }
        Op::AddTopicPermission { topic, label, account_ids, actions } => {
            let edit = crate::policy::PermissionEdit::Add { label, account_ids, actions };
            topic_change(host, TopicChange::Permission { topic, edit }).await.map(|_| Reply::Done)
        }
        Op::RemoveTopicPermission { topic, label } => {
            let edit = crate::policy::PermissionEdit::Remove { label };
            topic_change(host, TopicChange::Permission { topic, edit }).await.map(|_| Reply::Done)
        }
        Op::SetTopicAttributes { topic, name, value } => {
            topic_change(host, TopicChange::SetAttribute { topic, name, value }).await.map(|_| Reply::Done)
        }
        Op::Subscribe { topic, protocol, endpoint, attributes, return_subscription_arn } => {
            if protocol.starts_with("http") && !host.config().http_endpoints_allow_private {
                if let Some(reason) = endpoint.as_deref().and_then(super::http::literal_endpoint_refusal) {
                    return Err(OpError::new(ErrorCode::InvalidParameter, format!("Invalid parameter: Endpoint: {reason}")));
                }
            }
            let reply = topic_change(host, TopicChange::Subscribe { topic, protocol, endpoint, attributes }).await?;
            let Reply::Arn(arn) = &reply else { return Ok(reply) };
            let snapshot = host.snapshot();
            let Ok((_, subscription)) = resolve_subscription(&snapshot.topics, &snapshot.naming, arn) else { return Ok(reply) };
            if subscription.pending_token.is_none() {
                return Ok(reply);
            }
            send_confirmation(host, subscription).await?;
            Ok(if return_subscription_arn { reply } else { Reply::Arn("pending confirmation".into()) })
        }
        Op::ConfirmSubscription { topic, token, authenticate_on_unsubscribe } => {
            topic_change(host, TopicChange::Confirm { topic, token, authenticate_on_unsubscribe }).await
        }
        Op::Unsubscribe { subscription } => {
            let snapshot = host.snapshot();
            let removed = resolve_subscription(&snapshot.topics, &snapshot.naming, &subscription).ok().map(|(_, s)| s.clone());
            // An HTTP/S subscription's change answers the token that restores it.
            if let (Reply::Arn(token), Some(removed)) = (topic_change(host, TopicChange::Unsubscribe { subscription }).await?, removed) {
                super::http::send_unsubscribe_confirmation(host, &removed, &token);
            }
            Ok(Reply::Done)
        }
        Op::ListSubscriptions { topic, next_token } => {
            let snapshot = host.snapshot();
            let mut rows: Vec<&Arc<SubscriptionMeta>> = match &topic {
                Some(topic) => resolve(&snapshot.topics, &snapshot.naming, topic)?.subscriptions.iter().collect(),
                None => snapshot.topics.values().flat_map(|t| t.subscriptions.iter()).collect(),
            };
            rows.sort_by(|a, b| a.arn.cmp(&b.arn));
            let (subscriptions, next_token) =
                page(rows.into_iter().map(|s| (s.arn.as_str(), summary(account_id, s))), next_token, &host.config().seal_key)?;
            Ok(Reply::Subscriptions { subscriptions, next_token })
        }
        Op::GetSubscriptionAttributes { subscription } => {
            let snapshot = host.snapshot();
            let (_, meta) = resolve_subscription(&snapshot.topics, &snapshot.naming, &subscription)?;
            Ok(Reply::Attributes(subscription_attributes(meta, account_id)))
        }
        Op::SetSubscriptionAttributes { subscription, name, value } => {
            topic_change(host, TopicChange::SetSubscriptionAttribute { subscription, name, value }).await.map(|_| Reply::Done)
        }
        Op::Publish { topic, entry } => {
            let (mut successful, mut failed) = publish(host, &topic, vec![entry]).await?;
            match (successful.pop(), failed.pop()) {
                (Some(result), _) => Ok(Reply::Publish(result)),
                (None, Some(failure)) => Err(OpError::new(failure.code, failure.message)),
                (None, None) => Err(OpError::new(ErrorCode::InternalFailure, "publish produced no result")),
            }
        }
        Op::PublishBatch { topic, entries } => {
            check_batch_ids(entries.iter().map(|e| e.id.as_str()))?;
            let total: usize = entries.iter().map(PublishEntry::size_bytes).sum();
            if total > PUBLISH_BYTES_MAX {
                return Err(OpError::new(
                    ErrorCode::BatchRequestTooLong,
                    format!("The length of all the messages put together is more than the limit of {PUBLISH_BYTES_MAX} bytes."),
                ));
            }
            let (successful, failed) = publish(host, &topic, entries).await?;
            Ok(Reply::PublishBatch { successful, failed })
        }
        other => Err(OpError::new(ErrorCode::InternalFailure, format!("{} is not a topic operation", other.name()))),
    }
}

/// Runs a call from another shard (or this one) on this shard's topic engine.
pub async fn handle_call<H: TopicHost>(host: &Rc<H>, call: TopicCall) -> TopicAnswer {
    match call {
        TopicCall::PublishFifo(PublishFifo { topic, entries }) => {
            TopicAnswer::PublishFifo(super::fifo::publish_local(host, &topic, entries).await)
        }
    }
}

async fn topic_change<H: TopicHost>(host: &Rc<H>, change: TopicChange) -> Response {
    match host.meta_change(MetaChange::Topic(change)).await? {
        MetaOutcome::Arn(Some(arn)) => Ok(Reply::Arn(arn)),
        MetaOutcome::Arn(None) => Ok(Reply::Done),
        other => Err(OpError::new(ErrorCode::InternalFailure, format!("unexpected outcome {other:?}"))),
    }
}

/// Publishes entries in order; answers once every delivery made is durable.
async fn publish<H: TopicHost>(
    host: &Rc<H>,
    topic: &str,
    entries: Vec<PublishEntry>,
) -> Result<(Vec<PublishResult>, Vec<BatchFailure>), OpError> {
    let snapshot = host.snapshot();
    let topic = resolve(&snapshot.topics, &snapshot.naming, topic)?.clone();
    if topic.kms_master_key_id().is_some() {
        let feed = crate::catalog::feeds::feed_id(&topic.arn);
        crate::engine::sealable(host, |snapshot| snapshot.sealing(feed).cloned()).await?;
    }
    let snapshot = host.snapshot();
    if !topic.is_fifo() {
        return publish_standard(host, &snapshot, &topic, entries).await;
    }
    // What each entry weighs, by id, for the bytes of those published.
    let sizes: Vec<(String, u64)> = entries.iter().map(|entry| (entry.id.clone(), entry.size_bytes() as u64)).collect();
    let (successful, failed) = super::fifo::publish(host, &topic, entries).await?;
    let bytes = successful.iter().filter_map(|result| sizes.iter().find(|(id, _)| *id == result.id)).map(|(_, size)| size).sum::<u64>();
    host.metrics().topic(&topic.name, |counted| {
        counted.published += successful.len() as u64;
        counted.publish_bytes += bytes;
    });
    Ok((successful, failed))
}

async fn publish_standard<H: TopicHost>(
    host: &Rc<H>,
    snapshot: &Snapshot,
    topic: &TopicMeta,
    entries: Vec<PublishEntry>,
) -> Result<(Vec<PublishResult>, Vec<BatchFailure>), OpError> {
    let now = host.env().now_ms();
    let mut successful = Vec::with_capacity(entries.len());
    let mut failed = Vec::new();
    let mut sends = Sends::default();
    let mut bytes = 0;
    let mut fanout = Fanout::default();
    for mut entry in entries {
        let id = std::mem::take(&mut entry.id);
        let size = entry.size_bytes() as u64;
        match publish_one(host, snapshot, topic, entry, now, &mut sends, &mut fanout) {
            Ok(message_id) => {
                successful.push(PublishResult { id, message_id, sequence_number: None });
                bytes += size;
            }
            Err(error) => failed.push(BatchFailure::new(id, error)),
        }
    }
    let appended = sends.appended();
    crate::queue::service::sends_durable(host, sends).await?;
    for (queue_id, count) in appended {
        host.metrics().queue(queue_id, |counted| counted.sent += count);
    }
    host.metrics().topic(&topic.name, |counted| {
        counted.published += successful.len() as u64;
        counted.publish_bytes += bytes;
        counted.filtered_out += fanout.filtered_out;
    });
    if fanout.sqs_delivered + fanout.sqs_failed > 0 {
        host.metrics().delivery(&topic.name, "sqs", |counted| {
            counted.delivered += fanout.sqs_delivered;
            counted.failed += fanout.sqs_failed;
        });
    }
    Ok((successful, failed))
}

/// What a publish's fan-out came to, for the metrics: SQS subscriptions delivered to (a feed's
/// readers when the message goes in their feed: each takes it at its queue's pace) or
/// dead-lettered, and subscriptions whose filter policy turned the message away.
#[derive(Debug, Default)]
struct Fanout {
    sqs_delivered: u64,
    sqs_failed: u64,
    filtered_out: u64,
}

/// Checks one message and appends it to every matching subscriber's queue.
fn publish_one<H: TopicHost>(
    host: &Rc<H>,
    snapshot: &Snapshot,
    topic: &TopicMeta,
    entry: PublishEntry,
    now: u64,
    sends: &mut Sends,
    fanout: &mut Fanout,
) -> Result<String, OpError> {
    let checked = check_publish(&entry, false)?;
    host.queues().storage.admit_send()?;
    let message_uuid = new_message_id();
    let message_id = crate::queue::service::format_uuid(message_uuid);
    let timestamp = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(now)).to_string();
    // What SQS subscribers get: the message and its attributes, or their key of a JSON
    // structure and none.
    let (text, attributes): (&str, &[MessageAttribute]) = match &checked {
        Structure::Plain(text) => (text, &entry.attributes),
        Structure::Json { sqs } => (sqs, &[]),
    };
    let arrays = parse_arrays(&entry.attributes);
    // Every topic of a snapshot has its plan (`Snapshot::new`).
    let plan = snapshot.feeds.get(&topic.name).ok_or_else(|| OpError::new(ErrorCode::InternalFailure, "the topic has no delivery plan"))?;
    let body: Option<Value> = if plan.body_filters { serde_json::from_str(text).ok() } else { None };
    // Raw deliveries share one copy of the message out of the request frame, and its
    // digests; made at the first raw subscriber, not at all without one.
    let mut raw: Option<RawCopy> = None;
    // And one payload: every raw subscriber's queue holds the same one, each message with an
    // id of its own.
    let mut raw_payload: Option<Arc<Payload>> = None;
    let signature_version = topic.attributes.get("SignatureVersion").map_or("1", String::as_str);
    let notification = Notification {
        message_id: &message_id,
        sequence_number: None,
        topic_arn: &topic.arn,
        subject: entry.subject.as_deref(),
        message: text,
        timestamp: &timestamp,
        signature_version,
        attributes,
    };
    let mut envelope: Option<Envelope> = None;
    let public_url = host.config().public_url.as_str();
    // The queues that read the topic's feeds get the message through them: one record for all
    // of them (`queue::feed`), unless it is too large for one of them or carries more
    // attributes than raw delivery allows (then each is delivered to, or dead-lettered, alone).
    let fed_raw = plan.raw_readers > 0 && text.len() <= plan.max_size_min && attributes.len() <= RAW_DELIVERY_ATTRIBUTES_MAX;
    if fed_raw {
        let copy = raw.get_or_insert_with(|| RawCopy::of(text, attributes));
        let payload = raw_payload.get_or_insert_with(|| copy.payload(entry.message_group_id.clone(), now)).clone();
        crate::queue::feed::publish(host, plan, false, message_uuid, payload, now, sends)?;
        fanout.sqs_delivered += plan.raw_readers as u64;
    }
    let mut fed_envelope = false;
    if plan.envelope_readers > 0 {
        let shared = envelope.get_or_insert_with(|| Envelope::new(&notification, public_url));
        if shared.body_len(0) <= plan.envelope_room_min {
            // Its digest is each subscription's own, made as it takes its copy.
            let payload = delivery_payload(shared.shared(), ([0; 16], None), None, entry.message_group_id.clone(), now);
            crate::queue::feed::publish(host, plan, true, message_uuid, payload, now, sends)?;
            fed_envelope = true;
            fanout.sqs_delivered += plan.envelope_readers as u64;
        }
    }
    // The rest, one by one: subscriptions that do not read a feed, and readers of a feed the
    // message did not go to.
    let unfed = plan.readers.iter().filter(|reader| if reader.envelope { !fed_envelope } else { !fed_raw }).map(|reader| reader.index);
    for index in plan.others.iter().copied().chain(unfed) {
        let subscription = &topic.subscriptions[index];
        if subscription.pending_token.is_some() {
            continue;
        }
        if !passes(subscription, &entry.attributes, &arrays, body.as_ref()) {
            fanout.filtered_out += 1;
            continue;
        }
        let (body, payload_attributes, md5) = if subscription.raw {
            let copy = raw.get_or_insert_with(|| RawCopy::of(text, attributes));
            (copy.body.clone(), copy.attributes.clone(), copy.md5)
        } else {
            let body = envelope.get_or_insert_with(|| Envelope::new(&notification, public_url)).body_for(&subscription.arn);
            let md5 = (md5_of_body(&body), None);
            (body, None, md5)
        };
        if let Some(name) = subscription.delivery_queue() {
            // HTTP: kept in the subscription's delivery queue until the POST succeeds.
            if let Some(queue) = snapshot.by_name.get(&name) {
                let attributes = super::http::delivery_attributes("Notification", &message_id);
                let payload = Arc::new(notice_payload(body, attributes, now));
                crate::queue::service::append_message(host, queue, new_message_id(), payload, 0, now, sends)?;
                host.topics().http_wake.notify_all();
            }
            continue;
        }
        let denied = snapshot.delivery_denied(&topic.name, index);
        match deliverable(snapshot.subscribed_queue(&topic.name, index), denied, subscription, attributes.len(), body.len()) {
            Ok(queue) => {
                let build = || delivery_payload(body, md5, payload_attributes, entry.message_group_id.clone(), now);
                let payload = if subscription.raw { raw_payload.get_or_insert_with(build).clone() } else { build() };
                let delay_ms = queue.attributes.delay_seconds as u64 * 1000;
                crate::queue::service::append_message(host, queue, new_message_id(), payload, delay_ms, now, sends)?;
                fanout.sqs_delivered += 1;
            }
            Err(undeliverable) => {
                let body = envelope.get_or_insert_with(|| Envelope::new(&notification, public_url)).body_for(&subscription.arn);
                dead_letter(host, snapshot, subscription, body, undeliverable, now, sends)?;
                fanout.sqs_failed += 1;
            }
        }
    }
    Ok(message_id)
}

/// Whether `subscription`'s filter policy, if it has one, lets a message through (`arrays`:
/// its `String.Array` attributes parsed; `body`: its body parsed, when a filter looks at it).
pub(super) fn passes(
    subscription: &SubscriptionMeta,
    attributes: &[MessageAttribute],
    arrays: &[(usize, Vec<Value>)],
    body: Option<&Value>,
) -> bool {
    let Some(filter) = &subscription.filter else { return true };
    let message = match subscription.scope {
        Scope::MessageAttributes => Message::Attributes { attributes, arrays },
        Scope::MessageBody => Message::Body(body.and_then(Value::as_object)),
    };
    filter.matches(&message)
}

/// The queue an SQS subscription delivers a message of `body_len` bytes with `attribute_count`
/// attributes to, or why it cannot.
pub(super) fn deliverable<'a>(
    queue: Option<&'a Arc<QueueMeta>>,
    denied: bool,
    subscription: &SubscriptionMeta,
    attribute_count: usize,
    body_len: usize,
) -> Result<&'a Arc<QueueMeta>, Undeliverable> {
    match queue {
        None => {
            Err(Undeliverable { code: "AWS.SimpleQueueService.NonExistentQueue", reason: "The specified queue does not exist.".into() })
        }
        Some(queue) if denied => Err(Undeliverable {
            code: "AccessDenied",
            reason: format!("The policy of {} does not allow sns.amazonaws.com to SendMessage from {}.", queue.arn, subscription.topic_arn),
        }),
        Some(_) if subscription.raw && attribute_count > RAW_DELIVERY_ATTRIBUTES_MAX => Err(Undeliverable {
            code: "InvalidParameterValue",
            reason: format!(
                "Raw delivery to SQS carries at most {RAW_DELIVERY_ATTRIBUTES_MAX} message attributes; this message has {attribute_count}."
            ),
        }),
        Some(queue) if body_len > queue.attributes.maximum_message_size as usize => Err(Undeliverable {
            code: "InvalidParameterValue",
            reason: format!(
                "The message is longer than the queue's MaximumMessageSize of {} bytes.",
                queue.attributes.maximum_message_size
            ),
        }),
        Some(queue) => Ok(queue),
    }
}

/// Queues the SubscriptionConfirmation a pending HTTP subscription's endpoint receives.
async fn send_confirmation<H: TopicHost>(host: &Rc<H>, subscription: &SubscriptionMeta) -> Result<(), OpError> {
    let (Some(token), Some(name)) = (&subscription.pending_token, subscription.delivery_queue()) else { return Ok(()) };
    let snapshot = host.snapshot();
    let Some(queue) = snapshot.by_name.get(&name) else { return Ok(()) };
    let now = host.env().now_ms();
    let message_id = random_uuid();
    let timestamp = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(now)).to_string();
    let public_url = host.config().public_url.trim_end_matches('/');
    let subscribe_url = format!("{public_url}/?Action=ConfirmSubscription&TopicArn={}&Token={token}", subscription.topic_arn);
    let body = serde_json::json!({
        "Type": "SubscriptionConfirmation",
        "MessageId": message_id,
        "Token": token,
        "TopicArn": subscription.topic_arn,
        "Message": format!(
            "You have chosen to subscribe to the topic {}.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
            subscription.topic_arn
        ),
        "SubscribeURL": subscribe_url,
        "Timestamp": timestamp,
        "SignatureVersion": "1",
        "Signature": "",
        "SigningCertURL": format!("{public_url}{}", crate::sns_signing::CERT_PATH),
    });
    let body = Bytes::from(body.to_string());
    let attributes = super::http::delivery_attributes("SubscriptionConfirmation", &message_id);
    let mut sends = Sends::default();
    crate::queue::service::append_message(
        host,
        queue,
        new_message_id(),
        Arc::new(notice_payload(body, attributes, now)),
        0,
        now,
        &mut sends,
    )?;
    crate::queue::service::sends_durable(host, sends).await?;
    host.topics().http_wake.notify_all();
    Ok(())
}

/// Sends an undeliverable notification to the subscription's dead-letter queue, with
/// why in its attributes, or drops it (logged) when there is none.
pub(crate) fn dead_letter<H: TopicHost>(
    host: &Rc<H>,
    snapshot: &Snapshot,
    subscription: &SubscriptionMeta,
    body: Bytes,
    undeliverable: Undeliverable,
    now: u64,
    sends: &mut Sends,
) -> Result<(), OpError> {
    // A FIFO queue takes messages through its owner, in order (only a FIFO topic's
    // subscriptions have one: `topic::fifo`).
    let Some(queue) = dead_letter_queue(snapshot, subscription, &undeliverable) else { return Ok(()) };
    if queue.attributes.fifo {
        // Refused when set; a registry from before the rule may still name one.
        tracing::warn!(subscription = %subscription.arn, "dropped a notification: a standard topic's dead-letter queue cannot be a FIFO queue");
        return Ok(());
    }
    let attributes = undeliverable.attributes();
    crate::queue::service::append_message(host, queue, new_message_id(), Arc::new(notice_payload(body, attributes, now)), 0, now, sends)?;
    Ok(())
}

/// The subscription's dead-letter queue, if it has one that exists; else logs that the
/// notification is dropped.
pub(super) fn dead_letter_queue<'a>(
    snapshot: &'a Snapshot,
    subscription: &SubscriptionMeta,
    undeliverable: &Undeliverable,
) -> Option<&'a Arc<QueueMeta>> {
    let target = subscription.dead_letter_arn.as_deref().and_then(|arn| snapshot.queue_by_arn(arn));
    if target.is_none() {
        tracing::warn!(
            subscription = %subscription.arn,
            endpoint = %subscription.endpoint,
            reason = %undeliverable.reason,
            "dropped a notification that could not be delivered (the subscription has no usable dead-letter queue)"
        );
    }
    target
}

impl Undeliverable {
    /// The attributes a dead-lettered notification carries: why it was not delivered.
    pub(super) fn attributes(self) -> Vec<MessageAttribute> {
        vec![
            MessageAttribute::string("ErrorCode", "String", self.code),
            MessageAttribute::string("ErrorMessage", "String", self.reason),
            MessageAttribute::string("RequestID", "String", random_uuid()),
        ]
    }
}

/// A raw delivery's body and attributes, copied out of the request frame once and shared by
/// every raw subscriber of one publish, with their digests.
struct RawCopy {
    body: Bytes,
    attributes: Option<Arc<[MessageAttribute]>>,
    md5: ([u8; 16], Option<[u8; 16]>),
}

impl RawCopy {
    fn of(text: &str, attributes: &[MessageAttribute]) -> RawCopy {
        RawCopy {
            body: Bytes::copy_from_slice(text.as_bytes()),
            attributes: (!attributes.is_empty()).then(|| Arc::from(detached(attributes))),
            md5: (md5_of_body(text.as_bytes()), md5_of_attributes(attributes)),
        }
    }

    /// The payload every raw subscriber of the publish shares.
    fn payload(&self, message_group_id: Option<String>, now: u64) -> Arc<Payload> {
        delivery_payload(self.body.clone(), self.md5, self.attributes.clone(), message_group_id, now)
    }
}

/// A published message as a subscribed queue stores it: `body` with its digests `md5` (of the
/// body, of the attributes) and its SQS message attributes, sent at `now`.
fn delivery_payload(
    body: Bytes,
    md5: ([u8; 16], Option<[u8; 16]>),
    attributes: Option<Arc<[MessageAttribute]>>,
    message_group_id: Option<String>,
    now: u64,
) -> Arc<Payload> {
    Arc::new(Payload {
        md5_of_body: md5.0,
        md5_of_attributes: md5.1,
        trace_header: None,
        attributes,
        message_group_id,
        sent_ms: now,
        dead_letter_source_arn: None,
        fifo: None,
        body,
    })
}

/// A message Sluice writes itself (a dead-lettered notification, an HTTP delivery), with
/// its attributes.
fn notice_payload(body: Bytes, attributes: Vec<MessageAttribute>, now: u64) -> Payload {
    Payload {
        md5_of_body: md5_of_body(&body),
        md5_of_attributes: md5_of_attributes(&attributes),
        trace_header: None,
        attributes: Some(Arc::from(attributes)),
        message_group_id: None,
        sent_ms: now,
        dead_letter_source_arn: None,
        fifo: None,
        body,
    }
}

/// Attribute values copied out of the request frame.
pub(super) fn detached(attributes: &[MessageAttribute]) -> Vec<MessageAttribute> {
    attributes
        .iter()
        .map(|a| MessageAttribute { binary_value: a.binary_value.as_ref().map(|v| Bytes::copy_from_slice(v)), ..a.clone() })
        .collect()
}

fn topic_attributes(meta: &TopicMeta, account_id: &str) -> KeyValues {
    let confirmed = meta.subscriptions.iter().filter(|s| s.pending_token.is_none()).count();
    let pending = meta.subscriptions.len() - confirmed;
    let mut attributes: KeyValues = vec![
        ("TopicArn".into(), meta.arn.clone()),
        ("Owner".into(), account_id.to_owned()),
        ("DisplayName".into(), meta.attributes.get("DisplayName").cloned().unwrap_or_default()),
        ("Policy".into(), meta.attributes.get("Policy").cloned().unwrap_or_else(|| default_policy(&meta.arn, account_id))),
        ("SubscriptionsConfirmed".into(), confirmed.to_string()),
        ("SubscriptionsPending".into(), pending.to_string()),
        // Unsubscribing takes effect at once here, so no deleted subscription lingers.
        ("SubscriptionsDeleted".into(), "0".into()),
        (
            "EffectiveDeliveryPolicy".into(),
            meta.attributes.get("DeliveryPolicy").cloned().unwrap_or_else(|| DEFAULT_DELIVERY_POLICY.to_owned()),
        ),
    ];
    if meta.is_fifo() {
        attributes.push(("FifoTopic".into(), "true".into()));
        for (name, default) in [("ContentBasedDeduplication", "false"), ("FifoThroughputScope", "Topic")] {
            if !meta.attributes.contains_key(name) {
                attributes.push((name.into(), default.into()));
            }
        }
    }
    for (name, value) in &meta.attributes {
        if name != "DisplayName" && name != "Policy" {
            attributes.push((name.clone(), value.clone()));
        }
    }
    attributes
}

fn subscription_attributes(meta: &SubscriptionMeta, account_id: &str) -> KeyValues {
    let mut attributes: KeyValues = vec![
        ("SubscriptionArn".into(), meta.arn.clone()),
        ("TopicArn".into(), meta.topic_arn.clone()),
        ("Owner".into(), account_id.to_owned()),
        ("Protocol".into(), meta.protocol.clone()),
        ("Endpoint".into(), meta.endpoint.clone()),
        // Queues of this account need no confirmation; an endpoint's confirmation was
        // authenticated when it asked for AuthenticateOnUnsubscribe with a signature.
        ("ConfirmationWasAuthenticated".into(), (!meta.protocol.starts_with("http") || meta.authenticate_on_unsubscribe).to_string()),
        ("PendingConfirmation".into(), meta.pending_token.is_some().to_string()),
        ("RawMessageDelivery".into(), meta.raw.to_string()),
    ];
    for (name, value) in &meta.attributes {
        if name != "RawMessageDelivery" {
            attributes.push((name.clone(), value.clone()));
        }
    }
    if meta.attributes.contains_key("FilterPolicy") && !meta.attributes.contains_key("FilterPolicyScope") {
        attributes.push(("FilterPolicyScope".into(), meta.scope.name().into()));
    }
    attributes
}

/// How a checked message is to be delivered.
pub(super) enum Structure<'a> {
    /// The message's text (checked UTF-8).
    Plain(&'a str),
    /// `MessageStructure=json`: the text for SQS subscribers (their key, else `default`).
    Json { sqs: String },
}

/// Checks a message against SNS's rules (`fifo`: for a FIFO topic, whose own rules
/// `topic::fifo` checks as well).
pub(super) fn check_publish(entry: &PublishEntry, fifo: bool) -> Result<Structure<'_>, OpError> {
    if entry.message.is_empty() {
        return Err(invalid("Invalid parameter: Empty message"));
    }
    let text = std::str::from_utf8(&entry.message).map_err(|_| invalid("Invalid parameter: Message must be valid UTF-8"))?;
    if entry.size_bytes() > PUBLISH_BYTES_MAX {
        return Err(invalid(format!(
            "Invalid parameter: Message too long (the message and its attributes exceed {PUBLISH_BYTES_MAX} bytes)"
        )));
    }
    if let Some(subject) = &entry.subject {
        if subject.is_empty()
            || subject.chars().count() > SUBJECT_CHARS_MAX
            || subject.chars().any(char::is_control)
            || subject.starts_with(char::is_whitespace)
        {
            return Err(invalid(format!(
                "Invalid parameter: Subject: must be 1 to {SUBJECT_CHARS_MAX} characters without line breaks or control characters"
            )));
        }
    }
    if entry.deduplication_id.is_some() && !fifo {
        return Err(invalid("Invalid parameter: The MessageDeduplicationId parameter is only valid for FIFO topics"));
    }
    if let Some(group) = &entry.message_group_id {
        if group.is_empty() || group.len() > 128 || !group.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("Invalid parameter: MessageGroupId must be 1 to 128 alphanumeric or punctuation characters"));
        }
    }
    check_message_attributes(&entry.attributes)?;
    match entry.message_structure.as_deref() {
        None => Ok(Structure::Plain(text)),
        Some("json") => {
            let value: Value = serde_json::from_str(text)
                .map_err(|_| invalid("Invalid parameter: Message Structure - JSON message body failed to parse"))?;
            let object =
                value.as_object().ok_or_else(|| invalid("Invalid parameter: Message Structure - JSON message body failed to parse"))?;
            let default = object
                .get("default")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("Invalid parameter: Message Structure - No default entry in JSON message body"))?;
            let sqs = object.get("sqs").and_then(Value::as_str).unwrap_or(default);
            Ok(Structure::Json { sqs: sqs.to_owned() })
        }
        Some(other) => Err(invalid(format!("Invalid parameter: MessageStructure: {other:?} (the only structure is json)"))),
    }
}

fn check_message_attributes(attributes: &[MessageAttribute]) -> Result<(), OpError> {
    let value_invalid = |name: &str, reason: &str| {
        OpError::new(
            ErrorCode::InvalidParameterValue,
            format!("The message attribute '{name}' has an invalid message attribute value: {reason}"),
        )
    };
    for (i, attribute) in attributes.iter().enumerate() {
        let name = attribute.name.as_str();
        let valid_name = !name.is_empty()
            && name.len() <= MESSAGE_ATTRIBUTE_NAME_CHARS_MAX
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && !name.to_ascii_lowercase().starts_with("aws.")
            && !name.to_ascii_lowercase().starts_with("amazon.");
        if !valid_name {
            return Err(invalid(format!("Invalid parameter: MessageAttributes: invalid name {name:?}")));
        }
        if attributes[..i].iter().any(|other| other.name == name) {
            return Err(invalid(format!("Invalid parameter: MessageAttributes: the name {name:?} is used more than once")));
        }
        let base = attribute.data_type.split('.').next().unwrap_or_default();
        let string = attribute.string_value.as_deref().filter(|s| !s.is_empty());
        match (attribute.data_type.as_str(), base) {
            ("String.Array", _) => {
                let text = string.ok_or_else(|| value_invalid(name, "String.Array needs a value"))?;
                let valid = matches!(serde_json::from_str::<Value>(text), Ok(Value::Array(items))
                    if items.iter().all(|v| !v.is_object() && !v.is_array()));
                if !valid {
                    return Err(value_invalid(name, "String.Array must be a JSON array of strings, numbers, booleans or nulls"));
                }
            }
            (_, "String") => {
                string.ok_or_else(|| value_invalid(name, "String needs a value"))?;
            }
            (_, "Number") => {
                let text = string.ok_or_else(|| value_invalid(name, "Number needs a value"))?;
                if !text.trim().parse::<f64>().is_ok_and(f64::is_finite) {
                    return Err(value_invalid(name, "not a number"));
                }
            }
            (_, "Binary") => {
                if attribute.binary_value.as_ref().is_none_or(|v| v.is_empty()) {
                    return Err(value_invalid(name, "Binary needs a value"));
                }
            }
            _ => {
                return Err(OpError::new(
                    ErrorCode::InvalidParameterValue,
                    format!("The message attribute '{name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String."),
                ))
            }
        }
    }
    Ok(())
}
