//! Who may do what. With `--credentials`, every request of a principal is decided before its
//! engine sees it: the action it is (`policy::ACTIONS`), the resource it acts on and that
//! resource's policy (a queue's or topic's `Policy`, a stream's resource policy), against the
//! principal's identity policies (`policy::allowed`). Everything is looked up in the shard's
//! catalog snapshot, whose policies are compiled as they are set, so a decision costs a few
//! lookups and bit tests. Without `--credentials` nothing is decided: every request is served.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use sluice_protocol::{ErrorCode, Op, OpError};

use crate::catalog::Snapshot;
use crate::credentials::Principal;
use crate::policy::{self, Action, Policy, Request, Who};
use crate::seal::SealKey;

/// How a request reached the daemon, as policies see it.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The principal that signed or authenticated; `None` without `--credentials`, or for the
    /// unsigned links SNS hands out (their token or ARN is the credential).
    pub principal: Option<Arc<Principal>>,
    pub ip: Option<IpAddr>,
    /// Whether it came over TLS.
    pub secure: bool,
}

impl crate::audit::Caller {
    /// What access decisions need of this caller.
    pub fn access(&self) -> Access {
        Access { principal: self.principal.clone(), ip: self.ip, secure: self.secure }
    }
}

/// What a request acts on: the resource's ARN (`None` for actions on none, such as
/// `ListQueues`) and the resource's policy.
/// The ARN is borrowed from the catalog when the resource exists (no allocation per request).
struct Target<'a> {
    action: &'static str,
    resource: Option<Cow<'a, str>>,
    policy: Option<&'a Policy>,
}

impl<'a> Target<'a> {
    fn new(action: &'static str, resource: Option<Cow<'a, str>>, policy: Option<&'a Policy>) -> Target<'a> {
        Target { action, resource, policy }
    }
}

/// Decides `op` for `access`; `Err(AccessDenied)` says who may not do what to which resource.
pub fn authorize(snapshot: &Snapshot, op: &Op, access: &Access, seal_key: &SealKey) -> Result<(), OpError> {
    let Some(principal) = &access.principal else { return Ok(()) };
    let Some(target) = target(snapshot, op, seal_key) else { return Ok(()) };
    let Some(action) = Action::named(target.action) else {
        return Err(OpError::new(ErrorCode::InternalFailure, format!("{} is not an action policies know", target.action)));
    };
    let request = Request {
        who: Who::Principal { arn: &principal.arn, account: &principal.account_id },
        action,
        resource: target.resource.as_deref(),
        source_arn: None,
        source_account: None,
        source_ip: access.ip,
        secure: access.secure,
    };
    if !policy::allowed(principal.policies.as_deref(), target.policy, &snapshot.naming.account_id, &request) {
        let on = target.resource.as_deref().map(|arn| format!(" on resource: {arn}")).unwrap_or_default();
        return Err(OpError::new(
            ErrorCode::AccessDenied,
            format!("User: {} is not authorized to perform: {}{on}", principal.arn, target.action),
        ));
    }
    // Writing to or reading from a resource encrypted under a customer's KMS key also needs the
    // key (as on AWS: kms:GenerateDataKey to write, kms:Decrypt to read); AWS-managed keys and
    // the SSE-SQS key are usable by whoever may use the resource.
    let Some((action, key_arn)) = key_use(snapshot, op, target.resource.as_deref()) else { return Ok(()) };
    let Some(kms_action) = Action::named(action) else { return Ok(()) };
    let request = Request { action: kms_action, resource: Some(key_arn), ..request };
    if policy::allowed(principal.policies.as_deref(), None, &snapshot.naming.account_id, &request) {
        return Ok(());
    }
    Err(OpError::new(
        ErrorCode::KmsAccessDenied,
        format!(
            "User: {} is not authorized to perform: {action} on resource: {key_arn} (the key {} is encrypted under)",
            principal.arn,
            target.resource.as_deref().unwrap_or("the resource")
        ),
    ))
}

/// The KMS action and customer key `op` needs besides its own action: a write to (or read
/// from) a queue, topic or stream sealed under a customer-managed key. `resource` is what the
/// request acts on (a read of a stream names it by iterator or consumer).
fn key_use<'a>(snapshot: &'a Snapshot, op: &Op, resource: Option<&str>) -> Option<(&'static str, &'a str)> {
    use crate::kms::at_rest::Sealing;
    use crate::kms::keys::Manager;
    let customer = |spec: Option<&'a crate::kms::at_rest::SealSpec>| match spec.map(|spec| &spec.sealing) {
        Some(Sealing::Key(key)) if key.manager == Manager::Customer => Some(key.arn.as_str()),
        _ => None,
    };
    let queue = |name: &str| snapshot.resolve(name).ok().and_then(|meta| customer(snapshot.sealing(meta.id)));
    // A stream's customer key (a stream name or ARN).
    let stream_key = |stream: &str| -> Option<&'a str> {
        let meta = crate::catalog::streams::resolve(&snapshot.streams, &snapshot.naming, stream).ok()?;
        let key = snapshot.keys.resolve(meta.encryption_key.as_deref()?)?;
        (key.manager == Manager::Customer).then_some(key.arn.as_str())
    };
    match op {
        Op::SendMessage { queue: q, .. } | Op::SendMessageBatch { queue: q, .. } => Some(("kms:GenerateDataKey", queue(q)?)),
        Op::ReceiveMessage(receive) => Some(("kms:Decrypt", queue(&receive.queue)?)),
        Op::Publish { topic, .. } | Op::PublishBatch { topic, .. } => {
            let meta = crate::catalog::topics::resolve(&snapshot.topics, &snapshot.naming, topic).ok()?;
            Some(("kms:GenerateDataKey", customer(snapshot.sealing(crate::catalog::feeds::feed_id(&meta.arn)))?))
        }
        Op::PutRecord { stream, .. } | Op::PutRecords { stream, .. } => stream_key(stream).map(|key| ("kms:GenerateDataKey", key)),
        // Reads name their stream by iterator or consumer: the resource `target` found.
        Op::GetRecords { .. } | Op::SubscribeToShard { .. } => {
            let stream = resource?.split("/consumer/").next()?;
            stream_key(stream).map(|key| ("kms:Decrypt", key))
        }
        _ => None,
    }
}

/// Whether an unsigned request (with `--credentials`, only the links SNS hands out) may run
/// `op`: an `Unsubscribe` of a subscription confirmed with `AuthenticateOnUnsubscribe` needs a
/// signature, and an unsigned `ConfirmSubscription` cannot ask for that.
pub fn unsigned_link_allowed(snapshot: &Snapshot, op: &Op) -> Result<(), OpError> {
    match op {
        Op::Unsubscribe { subscription } => {
            let found = crate::catalog::topics::resolve_subscription(&snapshot.topics, &snapshot.naming, subscription);
            if found.is_ok_and(|(_, meta)| meta.authenticate_on_unsubscribe) {
                return Err(OpError::new(
                    ErrorCode::AccessDenied,
                    "This subscription was confirmed with AuthenticateOnUnsubscribe: unsubscribing it needs a signed request.",
                ));
            }
            Ok(())
        }
        Op::ConfirmSubscription { authenticate_on_unsubscribe: true, .. } => {
            Err(OpError::new(ErrorCode::AccessDenied, "AuthenticateOnUnsubscribe needs a signed ConfirmSubscription."))
        }
        _ => Ok(()),
    }
}

/// The action `op` is, its resource and that resource's policy; `None` for what is not an
/// API call (`Hello`, `Authenticate`).
fn target<'a>(snapshot: &'a Snapshot, op: &'a Op, seal_key: &SealKey) -> Option<Target<'a>> {
    let naming = &snapshot.naming;
    let queue = |action: &'static str, queue: &str| {
        let name = queue.trim_end_matches('/').rsplit('/').next().unwrap_or(queue);
        match snapshot.by_name.get(name).filter(|meta| !crate::catalog::is_delivery_queue(&meta.name)) {
            Some(meta) => {
                Target::new(action, Some(Cow::Borrowed(meta.arn.as_str())), meta.attributes.policy.as_ref().map(|p| &*p.compiled))
            }
            None => Target::new(action, Some(Cow::Owned(naming.arn(name))), None),
        }
    };
    let topic = |action: &'static str, topic: &str| {
        let name = naming.topic_name(topic).unwrap_or(topic);
        match snapshot.topics.get(name) {
            Some(meta) => Target::new(action, Some(Cow::Borrowed(meta.arn.as_str())), meta.policy.as_ref().map(|p| &*p.compiled)),
            None => Target::new(action, Some(Cow::Owned(naming.topic_arn(name))), None),
        }
    };
    let stream = |action: &'static str, stream: &str| match crate::catalog::streams::resolve(&snapshot.streams, naming, stream) {
        Ok(meta) => Target::new(action, Some(Cow::Borrowed(meta.arn.as_str())), meta.policy.as_ref().map(|p| &*p.compiled)),
        Err(_) => {
            let name = stream.rsplit_once(":stream/").map_or(stream, |(_, name)| name);
            Target::new(action, Some(Cow::Owned(crate::catalog::streams::stream_arn(naming, name))), None)
        }
    };
    // A queue named by its ARN: its own policy applies when it exists.
    let queue_arn = |action: &'static str, arn: &'a str| match snapshot.queue_by_arn(arn) {
        Some(meta) => Target::new(action, Some(Cow::Borrowed(meta.arn.as_str())), meta.attributes.policy.as_ref().map(|p| &*p.compiled)),
        None => Target::new(action, Some(Cow::Borrowed(arn)), None),
    };
    // A key is named by its key ARN (aliases resolved); key policies are not kept, so identity
    // policies decide.
    let key = |action: &'static str, reference: &str| match snapshot.keys.resolve(reference) {
        Some(found) => Target::new(action, Some(Cow::Borrowed(found.arn.as_str())), None),
        None => Target::new(action, Some(Cow::Owned(reference.to_owned())), None),
    };
    // A consumer is its own resource (its ARN); it takes no resource policy here.
    let consumer = |action: &'static str, consumer: &'a sluice_protocol::ConsumerRef| match (&consumer.consumer_arn, &consumer.stream) {
        (Some(arn), _) => Target::new(action, Some(Cow::Borrowed(arn.as_str())), None),
        (None, Some(stream_name)) => {
            let stream_arn = stream(action, stream_name).resource.unwrap_or_default();
            Target::new(action, Some(Cow::Owned(format!("{stream_arn}/consumer/{}", consumer.name.as_deref().unwrap_or_default()))), None)
        }
        (None, None) => Target::new(action, None, None),
    };
    let delivery = |action: &'static str, name: &str| {
        Target::new(action, Some(Cow::Owned(naming.firehose_arn(crate::catalog::firehose::name_of(name)))), None)
    };
    Some(match op {
        Op::Hello { .. } | Op::Authenticate { .. } => return None,
        Op::CreateQueue { name, .. } => Target::new("sqs:CreateQueue", Some(Cow::Owned(naming.arn(name))), None),
        Op::GetQueueUrl { name, .. } => queue("sqs:GetQueueUrl", name),
        Op::ListQueues { .. } => Target::new("sqs:ListQueues", None, None),
        Op::DeleteQueue { queue: q } => queue("sqs:DeleteQueue", q),
        Op::PurgeQueue { queue: q } => queue("sqs:PurgeQueue", q),
        Op::GetQueueAttributes { queue: q, .. } => queue("sqs:GetQueueAttributes", q),
        Op::SetQueueAttributes { queue: q, .. } => queue("sqs:SetQueueAttributes", q),
        Op::TagQueue { queue: q, .. } => queue("sqs:TagQueue", q),
        Op::UntagQueue { queue: q, .. } => queue("sqs:UntagQueue", q),
        Op::ListQueueTags { queue: q } => queue("sqs:ListQueueTags", q),
        Op::ListDeadLetterSourceQueues { queue: q, .. } => queue("sqs:ListDeadLetterSourceQueues", q),
        Op::SendMessage { queue: q, .. } | Op::SendMessageBatch { queue: q, .. } => queue("sqs:SendMessage", q),
        Op::ReceiveMessage(receive) => queue("sqs:ReceiveMessage", &receive.queue),
        Op::DeleteMessage { queue: q, .. } | Op::DeleteMessageBatch { queue: q, .. } => queue("sqs:DeleteMessage", q),
        Op::ChangeMessageVisibility { queue: q, .. } | Op::ChangeMessageVisibilityBatch { queue: q, .. } => {
            queue("sqs:ChangeMessageVisibility", q)
        }
        Op::CreateTopic { name, .. } => Target::new("sns:CreateTopic", Some(Cow::Owned(naming.topic_arn(name))), None),
        Op::DeleteTopic { topic: t } => topic("sns:DeleteTopic", t),
        Op::ListTopics { .. } => Target::new("sns:ListTopics", None, None),
        Op::GetTopicAttributes { topic: t } => topic("sns:GetTopicAttributes", t),
        Op::SetTopicAttributes { topic: t, .. } => topic("sns:SetTopicAttributes", t),
        Op::Subscribe { topic: t, .. } => topic("sns:Subscribe", t),
        Op::ConfirmSubscription { topic: t, .. } => topic("sns:ConfirmSubscription", t),
        Op::Unsubscribe { .. } => Target::new("sns:Unsubscribe", None, None),
        Op::ListSubscriptions { topic: Some(t), .. } => topic("sns:ListSubscriptionsByTopic", t),
        Op::ListSubscriptions { topic: None, .. } => Target::new("sns:ListSubscriptions", None, None),
        Op::GetSubscriptionAttributes { .. } => Target::new("sns:GetSubscriptionAttributes", None, None),
        Op::SetSubscriptionAttributes { .. } => Target::new("sns:SetSubscriptionAttributes", None, None),
        Op::Publish { topic: t, .. } | Op::PublishBatch { topic: t, .. } => topic("sns:Publish", t),
        Op::CreateStream { name, .. } => {
            Target::new("kinesis:CreateStream", Some(Cow::Owned(crate::catalog::streams::stream_arn(naming, name))), None)
        }
        Op::DeleteStream { stream: s, .. } => stream("kinesis:DeleteStream", s),
        Op::DescribeStream { stream: s, .. } => stream("kinesis:DescribeStream", s),
        Op::DescribeStreamSummary { stream: s } => stream("kinesis:DescribeStreamSummary", s),
        Op::ListStreams { .. } => Target::new("kinesis:ListStreams", None, None),
        Op::ListShards(list) => match (&list.stream, &list.next_token) {
            (Some(s), _) => stream("kinesis:ListShards", s),
            // Paging by token alone: the sealed token names its stream (one that does not
            // open is refused by the engine as invalid).
            (None, Some(token)) => {
                let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                let lifetime = sluice_protocol::limits::LIST_TOKEN_LIFETIME_MS;
                let state = crate::stream::iterator::decode_token(token, now_ms, lifetime, seal_key).ok()?;
                stream("kinesis:ListShards", state.split('\u{1f}').next().unwrap_or_default())
            }
            (None, None) => Target::new("kinesis:ListShards", None, None),
        },
        Op::PutRecord { stream: s, .. } => stream("kinesis:PutRecord", s),
        Op::PutRecords { stream: s, .. } => stream("kinesis:PutRecords", s),
        Op::GetShardIterator { stream: s, .. } => stream("kinesis:GetShardIterator", s),
        Op::GetRecords { iterator, .. } => {
            // An iterator that does not open is refused by the engine as invalid.
            let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            let position = crate::stream::iterator::ShardPosition::decode(iterator, now_ms, seal_key).ok()?;
            match snapshot.streams.values().find(|meta| meta.id == position.stream_id) {
                Some(meta) => {
                    Target::new("kinesis:GetRecords", Some(Cow::Borrowed(meta.arn.as_str())), meta.policy.as_ref().map(|p| &*p.compiled))
                }
                None => return None,
            }
        }
        Op::IncreaseStreamRetentionPeriod { stream: s, .. } => stream("kinesis:IncreaseStreamRetentionPeriod", s),
        Op::DecreaseStreamRetentionPeriod { stream: s, .. } => stream("kinesis:DecreaseStreamRetentionPeriod", s),
        Op::SplitShard { stream: s, .. } => stream("kinesis:SplitShard", s),
        Op::MergeShards { stream: s, .. } => stream("kinesis:MergeShards", s),
        Op::UpdateShardCount { stream: s, .. } => stream("kinesis:UpdateShardCount", s),
        Op::AddTagsToStream { stream: s, .. } => stream("kinesis:AddTagsToStream", s),
        Op::RemoveTagsFromStream { stream: s, .. } => stream("kinesis:RemoveTagsFromStream", s),
        Op::ListTagsForStream { stream: s, .. } => stream("kinesis:ListTagsForStream", s),
        Op::RegisterStreamConsumer { stream: s, .. } => stream("kinesis:RegisterStreamConsumer", s),
        Op::DeregisterStreamConsumer(c) => consumer("kinesis:DeregisterStreamConsumer", c),
        Op::DescribeStreamConsumer(c) => consumer("kinesis:DescribeStreamConsumer", c),
        Op::ListStreamConsumers { stream: s, .. } => stream("kinesis:ListStreamConsumers", s),
        Op::SubscribeToShard { consumer_arn, .. } => {
            Target::new("kinesis:SubscribeToShard", Some(Cow::Borrowed(consumer_arn.as_str())), None)
        }
        // Working in a consumer's group is consuming as that consumer.
        Op::LeaseShards { consumer_arn, .. } | Op::CheckpointShard { consumer_arn, .. } | Op::ReleaseShards { consumer_arn, .. } => {
            Target::new("kinesis:SubscribeToShard", Some(Cow::Borrowed(consumer_arn.as_str())), None)
        }
        Op::DescribeConsumerGroup { consumer_arn } => {
            Target::new("kinesis:DescribeStreamConsumer", Some(Cow::Borrowed(consumer_arn.as_str())), None)
        }
        Op::AddPermission { queue: q, .. } => queue("sqs:AddPermission", q),
        Op::RemovePermission { queue: q, .. } => queue("sqs:RemovePermission", q),
        Op::AddTopicPermission { topic: t, .. } => topic("sns:AddPermission", t),
        Op::RemoveTopicPermission { topic: t, .. } => topic("sns:RemovePermission", t),
        Op::TagTopic { topic: t, .. } => topic("sns:TagResource", t),
        Op::UntagTopic { topic: t, .. } => topic("sns:UntagResource", t),
        Op::ListTopicTags { topic: t } => topic("sns:ListTagsForResource", t),
        Op::DescribeLimits => Target::new("kinesis:DescribeLimits", None, None),
        Op::DescribeAccountSettings => Target::new("kinesis:DescribeAccountSettings", None, None),
        Op::PutResourcePolicy { resource_arn, .. } => stream("kinesis:PutResourcePolicy", resource_arn),
        Op::GetResourcePolicy { resource_arn } => stream("kinesis:GetResourcePolicy", resource_arn),
        Op::DeleteResourcePolicy { resource_arn } => stream("kinesis:DeleteResourcePolicy", resource_arn),
        Op::StartMessageMoveTask { source_arn, .. } => queue_arn("sqs:StartMessageMoveTask", source_arn),
        Op::ListMessageMoveTasks { source_arn, .. } => queue_arn("sqs:ListMessageMoveTasks", source_arn),
        // The task's source queue, as its handle names it (a handle that does not open is refused by the engine).
        Op::CancelMessageMoveTask { task_handle } => {
            let (_, source) = crate::catalog::moves::parse_handle(task_handle).ok()?;
            Target::new("sqs:CancelMessageMoveTask", Some(Cow::Owned(source)), None)
        }
        Op::UpdateMaxRecordSize { stream: s, .. } => stream("kinesis:UpdateMaxRecordSize", s),
        Op::UpdateStreamMode { stream: s, .. } => stream("kinesis:UpdateStreamMode", s),
        Op::SetEnhancedMonitoring { stream: s, enable: true, .. } => stream("kinesis:EnableEnhancedMonitoring", s),
        Op::SetEnhancedMonitoring { stream: s, enable: false, .. } => stream("kinesis:DisableEnhancedMonitoring", s),
        Op::SetStreamEncryption { stream: s, start: true, .. } => stream("kinesis:StartStreamEncryption", s),
        Op::SetStreamEncryption { stream: s, start: false, .. } => stream("kinesis:StopStreamEncryption", s),
        // An alarm is named by its ARN; a call about several alarms, by none (`*`).
        Op::PutMetricAlarm(alarm) => Target::new("cloudwatch:PutMetricAlarm", Some(Cow::Owned(alarm_arn(naming, &alarm.name))), None),
        Op::SetAlarmState { name, .. } => Target::new("cloudwatch:SetAlarmState", Some(Cow::Owned(alarm_arn(naming, name))), None),
        Op::DeleteAlarms { names } => Target::new("cloudwatch:DeleteAlarms", one_alarm(naming, names), None),
        Op::SetAlarmActions { names, enable: true } => Target::new("cloudwatch:EnableAlarmActions", one_alarm(naming, names), None),
        Op::SetAlarmActions { names, enable: false } => Target::new("cloudwatch:DisableAlarmActions", one_alarm(naming, names), None),
        Op::DescribeAlarms { .. } => Target::new("cloudwatch:DescribeAlarms", None, None),
        Op::GetMetricStatistics { .. } => Target::new("cloudwatch:GetMetricStatistics", None, None),
        Op::GetMetricData { .. } => Target::new("cloudwatch:GetMetricData", None, None),
        Op::ListMetrics { .. } => Target::new("cloudwatch:ListMetrics", None, None),
        // A delivery stream is named by its ARN (it takes no resource policy).
        Op::CreateDeliveryStream { name, .. } => delivery("firehose:CreateDeliveryStream", name),
        Op::DeleteDeliveryStream { name, .. } => delivery("firehose:DeleteDeliveryStream", name),
        Op::DescribeDeliveryStream { name, .. } => delivery("firehose:DescribeDeliveryStream", name),
        Op::ListDeliveryStreams { .. } => Target::new("firehose:ListDeliveryStreams", None, None),
        Op::PutFirehoseRecords { name, batch: false, .. } => delivery("firehose:PutRecord", name),
        Op::PutFirehoseRecords { name, batch: true, .. } => delivery("firehose:PutRecordBatch", name),
        Op::UpdateDestination { name, .. } => delivery("firehose:UpdateDestination", name),
        Op::TagDeliveryStream { name, .. } => delivery("firehose:TagDeliveryStream", name),
        Op::UntagDeliveryStream { name, .. } => delivery("firehose:UntagDeliveryStream", name),
        Op::ListTagsForDeliveryStream { name, .. } => delivery("firehose:ListTagsForDeliveryStream", name),
        Op::SetDeliveryStreamEncryption { name, start: true, .. } => delivery("firehose:StartDeliveryStreamEncryption", name),
        Op::SetDeliveryStreamEncryption { name, start: false, .. } => delivery("firehose:StopDeliveryStreamEncryption", name),
        Op::CreateKey { .. } => Target::new("kms:CreateKey", None, None),
        Op::ListKeys { .. } => Target::new("kms:ListKeys", None, None),
        Op::ListAliases { .. } => Target::new("kms:ListAliases", None, None),
        Op::DescribeKey { key: k } => key("kms:DescribeKey", k),
        Op::CreateAlias { key: k, update: false, .. } => key("kms:CreateAlias", k),
        Op::CreateAlias { key: k, update: true, .. } => key("kms:UpdateAlias", k),
        Op::DeleteAlias { alias } => key("kms:DeleteAlias", alias),
        Op::SetKeyEnabled { key: k, enabled: true } => key("kms:EnableKey", k),
        Op::SetKeyEnabled { key: k, enabled: false } => key("kms:DisableKey", k),
        Op::ScheduleKeyDeletion { key: k, .. } => key("kms:ScheduleKeyDeletion", k),
        Op::CancelKeyDeletion { key: k } => key("kms:CancelKeyDeletion", k),
        Op::SetKeyRotation { key: k, enabled: true, .. } => key("kms:EnableKeyRotation", k),
        Op::SetKeyRotation { key: k, enabled: false, .. } => key("kms:DisableKeyRotation", k),
        Op::GetKeyRotationStatus { key: k } => key("kms:GetKeyRotationStatus", k),
        Op::RotateKeyOnDemand { key: k } => key("kms:RotateKeyOnDemand", k),
        Op::Encrypt { key: k, .. } => key("kms:Encrypt", k),
        Op::GenerateDataKey { key: k, without_plaintext: false, .. } => key("kms:GenerateDataKey", k),
        Op::GenerateDataKey { key: k, without_plaintext: true, .. } => key("kms:GenerateDataKeyWithoutPlaintext", k),
        // The key is the one the ciphertext names (one that names none is refused by the service).
        Op::Decrypt { ciphertext, .. } => match crate::kms::cipher::key_of(&snapshot.keys, ciphertext) {
            Ok(found) => Target::new("kms:Decrypt", Some(Cow::Borrowed(found.arn.as_str())), None),
            Err(_) => return None,
        },
    })
}

fn alarm_arn(naming: &crate::catalog::Naming, name: &str) -> String {
    format!("arn:aws:cloudwatch:{}:{}:alarm:{name}", naming.region, naming.account_id)
}

/// The ARN of the one alarm named, if just one is.
fn one_alarm<'a>(naming: &crate::catalog::Naming, names: &[String]) -> Option<Cow<'a, str>> {
    match names {
        [name] => Some(Cow::Owned(alarm_arn(naming, name))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_named_here_is_one_policies_know() {
        // `target` names actions by string: each must be in the table, or decisions fail.
        let source = include_str!("access.rs");
        let services = ["sqs:", "sns:", "kinesis:", "kms:"];
        for name in source.split('"').filter(|s| services.iter().any(|service| s.starts_with(service))) {
            if !name.contains(['*', ' ']) && !name.ends_with(':') {
                assert!(Action::named(name).is_some(), "{name} is not in policy::ACTIONS");
            }
        }
    }
}
