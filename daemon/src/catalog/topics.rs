//! SNS topics, standard and FIFO: publish once, every subscribed queue receives the message.
//!
//! A topic and its subscriptions are metadata: they live in shard 0's registry,
//! are saved with it, and reach every shard in the immutable `Snapshot`, with each
//! subscription's filter policy compiled once there. A publish runs entirely on the
//! shard that received it: it matches every subscription against the message and
//! appends one message to this shard's partition of each matching queue (standard
//! queues are partitioned on every shard, so no queue is out of reach and no hop is
//! needed), then answers once the shard's log has made all of them durable, in one
//! group commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use sluice_protocol::limits::*;
use sluice_protocol::{ErrorCode, KeyValues, OpError};

use super::filter::{FilterPolicy, Scope};
use super::queues::parse_queue_arn;
use super::Naming;

/// One topic's metadata, immutable once published.
#[derive(Debug, Clone)]
pub struct TopicMeta {
    pub name: String,
    pub arn: String,
    /// Settable attributes as they were set (DisplayName, Policy, DeliveryPolicy, ...).
    pub attributes: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub subscriptions: Vec<Arc<SubscriptionMeta>>,
    /// The `Policy` attribute, compiled (`None`: none set).
    pub policy: Option<crate::policy::ResourcePolicy>,
    /// HTTP/S subscriptions unsubscribed lately, each with the token of its
    /// UnsubscribeConfirmation (`pending_token`) that restores it through ConfirmSubscription,
    /// and until when (Unix ms); at most `RESTORABLE_MAX`, for `RESTORE_MS`.
    pub restorable: Vec<(Arc<SubscriptionMeta>, u64)>,
}

/// How long an unsubscribed HTTP/S subscription can be restored (as SNS's tokens live).
pub const RESTORE_MS: u64 = 3 * 24 * 3600 * 1000;
/// Unsubscribed subscriptions a topic keeps restorable.
pub const RESTORABLE_MAX: usize = 100;

impl TopicMeta {
    /// The KMS key its messages are sealed under at rest (`KmsMasterKeyId`), if any.
    pub fn kms_master_key_id(&self) -> Option<&str> {
        self.attributes.get("KmsMasterKeyId").map(String::as_str).filter(|id| !id.is_empty())
    }

    /// Whether it is a FIFO topic (`FifoTopic=true`, which a `.fifo` name always goes with).
    pub fn is_fifo(&self) -> bool {
        is_fifo_name(&self.name)
    }

    /// A FIFO topic's `ContentBasedDeduplication`.
    pub fn content_based_deduplication(&self) -> bool {
        self.attributes.get("ContentBasedDeduplication").is_some_and(|v| v == "true")
    }

    /// Whether a FIFO topic deduplicates within each message group (`FifoThroughputScope` is
    /// `MessageGroup`) rather than across the topic.
    pub fn deduplicates_per_group(&self) -> bool {
        self.attributes.get("FifoThroughputScope").is_some_and(|v| v == "MessageGroup")
    }
}

/// Whether a topic (or queue) name is a FIFO one.
pub fn is_fifo_name(name: &str) -> bool {
    name.ends_with(".fifo")
}

/// One subscription, with its settings compiled.
#[derive(Debug, Clone)]
pub struct SubscriptionMeta {
    pub arn: String,
    pub topic_arn: String,
    pub protocol: String,
    pub endpoint: String,
    /// Settable attributes as they were set.
    pub attributes: BTreeMap<String, String>,
    pub raw: bool,
    pub filter: Option<FilterPolicy>,
    pub scope: Scope,
    /// The SQS queue ARN that undeliverable messages go to (RedrivePolicy).
    pub dead_letter_arn: Option<String>,
    /// Set while the subscription waits for ConfirmSubscription.
    pub pending_token: Option<String>,
    /// Confirmed by a signed request that asked for `AuthenticateOnUnsubscribe`: with
    /// `--credentials`, only a signed request may unsubscribe it (not the unsigned link).
    pub authenticate_on_unsubscribe: bool,
}

pub fn topic_not_found() -> OpError {
    OpError::new(ErrorCode::NotFound, "Topic does not exist")
}

pub fn subscription_not_found() -> OpError {
    OpError::new(ErrorCode::NotFound, "Subscription does not exist")
}

fn invalid(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::InvalidParameter, message)
}

/// SNS topic names: 1–256 of `[A-Za-z0-9_-]`, a FIFO topic's ending in `.fifo` (counted).
pub fn valid_topic_name(name: &str) -> bool {
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    !stem.is_empty() && name.len() <= TOPIC_NAME_CHARS_MAX && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Topic attributes a client may set, and which of them only CreateTopic takes.
const TOPIC_ATTRIBUTES: &[&str] = &[
    "DisplayName",
    "Policy",
    "DeliveryPolicy",
    "TracingConfig",
    "KmsMasterKeyId",
    "SignatureVersion",
    "DataProtectionPolicy",
    "HTTPSuccessFeedbackRoleArn",
    "HTTPSuccessFeedbackSampleRate",
    "HTTPFailureFeedbackRoleArn",
    "FirehoseSuccessFeedbackRoleArn",
    "FirehoseSuccessFeedbackSampleRate",
    "FirehoseFailureFeedbackRoleArn",
    "LambdaSuccessFeedbackRoleArn",
    "LambdaSuccessFeedbackSampleRate",
    "LambdaFailureFeedbackRoleArn",
    "ApplicationSuccessFeedbackRoleArn",
    "ApplicationSuccessFeedbackSampleRate",
    "ApplicationFailureFeedbackRoleArn",
    "SQSSuccessFeedbackRoleArn",
    "SQSSuccessFeedbackSampleRate",
    "SQSFailureFeedbackRoleArn",
];

/// Subscription attributes a client may set.
const SUBSCRIPTION_ATTRIBUTES: &[&str] =
    &["RawMessageDelivery", "FilterPolicy", "FilterPolicyScope", "RedrivePolicy", "DeliveryPolicy", "SubscriptionRoleArn"];

/// HTTP/S delivery policy SNS applies when a topic sets none.
pub const DEFAULT_DELIVERY_POLICY: &str = r#"{"http":{"defaultHealthyRetryPolicy":{"minDelayTarget":20,"maxDelayTarget":20,"numRetries":3,"numMaxDelayRetries":0,"numNoDelayRetries":0,"numMinDelayRetries":0,"backoffFunction":"linear"},"disableSubscriptionOverrides":false,"defaultRequestPolicy":{"headerContentType":"text/plain; charset=UTF-8"}}}"#;

/// Checks one topic attribute's value (`fifo`: for a FIFO topic).
fn check_topic_attribute(name: &str, value: &str, creating: bool, fifo: bool) -> Result<(), OpError> {
    let bad = |reason: &str| invalid(format!("Invalid parameter: Attributes Reason: {name}: {reason}"));
    if value.len() > TOPIC_ATTRIBUTE_BYTES_MAX {
        return Err(bad(&format!("must be at most {TOPIC_ATTRIBUTE_BYTES_MAX} bytes")));
    }
    match name {
        "DisplayName" if value.chars().count() > DISPLAY_NAME_CHARS_MAX => {
            Err(bad(&format!("must be at most {DISPLAY_NAME_CHARS_MAX} characters")))
        }
        "FifoTopic" if !creating => Err(invalid("Invalid parameter: AttributeName: FifoTopic can only be set when the topic is created")),
        "FifoTopic" if value == "true" || value == "false" => Ok(()),
        "FifoTopic" => Err(bad("must be true or false")),
        "ContentBasedDeduplication" | "FifoThroughputScope" | "ArchivePolicy" if !fifo => {
            Err(bad("only FIFO topics (FifoTopic=true, a name ending in .fifo) take it"))
        }
        "ContentBasedDeduplication" if value != "true" && value != "false" => Err(bad("must be true or false")),
        "ContentBasedDeduplication" => Ok(()),
        "FifoThroughputScope" if value != "Topic" && value != "MessageGroup" => Err(bad("must be Topic or MessageGroup")),
        "FifoThroughputScope" => Ok(()),
        "ArchivePolicy" => Err(bad("message archiving and replay are not supported by this server yet")),
        "DeliveryPolicy" if !value.is_empty() => {
            let policy: Value = serde_json::from_str(value).map_err(|_| bad("is not valid JSON"))?;
            super::delivery::RetryPolicy::parse(&policy).map(|_| ())
        }
        "Policy" if !value.is_empty() => crate::policy::ResourcePolicy::parse(value).map(|_| ()).map_err(|error| bad(&error)),
        // Refused rather than kept and ignored: nothing here would act on them.
        "DataProtectionPolicy" if !value.is_empty() => {
            Err(bad("message data protection (auditing, masking, denying sensitive data) is not supported by this server"))
        }
        n if n.contains("Feedback") && !value.is_empty() => {
            Err(bad("delivery status logging (to CloudWatch Logs) is not supported by this server"))
        }
        "TracingConfig" if fifo && value == "Active" => Err(bad("active tracing is for standard topics only")),
        "TracingConfig" if !["PassThrough", "Active"].contains(&value) => Err(bad("must be PassThrough or Active")),
        "SignatureVersion" if !["1", "2"].contains(&value) => Err(bad("must be 1 or 2")),
        n if n.ends_with("SampleRate") && !value.parse::<u8>().is_ok_and(|rate| rate <= 100) => Err(bad("must be 0 to 100")),
        n if TOPIC_ATTRIBUTES.contains(&n) => Ok(()),
        _ => Err(invalid(format!("Invalid parameter: AttributeName: {name} is not a topic attribute"))),
    }
}

fn checked_tags(mut tags: BTreeMap<String, String>, changes: &KeyValues) -> Result<BTreeMap<String, String>, OpError> {
    for (key, value) in changes {
        if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
            return Err(invalid(format!(
                "Invalid parameter: Tags Reason: tag key '{key}' must be 1 to 128 characters and its value at most 256"
            )));
        }
        tags.insert(key.clone(), value.clone());
    }
    if tags.len() > TOPIC_TAGS_MAX {
        return Err(OpError::new(
            ErrorCode::InvalidParameter,
            format!("Invalid parameter: Tags Reason: a topic may carry at most {TOPIC_TAGS_MAX} tags"),
        ));
    }
    Ok(tags)
}

impl Naming {
    pub fn topic_arn(&self, name: &str) -> String {
        format!("arn:aws:sns:{}:{}:{}", self.region, self.account_id, name)
    }

    /// The topic name an ARN of this server names (or a bare name, accepted as is).
    pub fn topic_name<'a>(&self, topic: &'a str) -> Result<&'a str, OpError> {
        if !topic.starts_with("arn:") {
            return Ok(topic);
        }
        let prefix = format!("arn:aws:sns:{}:{}:", self.region, self.account_id);
        match topic.strip_prefix(&prefix) {
            Some(name) if valid_topic_name(name) => Ok(name),
            Some(_) => Err(invalid("Invalid parameter: TopicArn")),
            // Well formed but another region or account: no such topic here.
            None if topic.starts_with("arn:aws:sns:") && topic.split(':').count() == 6 => Err(topic_not_found()),
            None => Err(invalid("Invalid parameter: TopicArn")),
        }
    }
}

/// Every topic, by name.
pub type Topics = BTreeMap<String, Arc<TopicMeta>>;

/// Finds a topic by ARN or name.
pub fn resolve<'a>(topics: &'a Topics, naming: &Naming, topic: &str) -> Result<&'a Arc<TopicMeta>, OpError> {
    topics.get(naming.topic_name(topic)?).ok_or_else(topic_not_found)
}

/// Finds a subscription by its ARN (`<topic-arn>:<id>`).
pub fn resolve_subscription<'a>(
    topics: &'a Topics,
    naming: &Naming,
    arn: &str,
) -> Result<(&'a Arc<TopicMeta>, &'a Arc<SubscriptionMeta>), OpError> {
    let (topic_arn, id) = arn.rsplit_once(':').ok_or_else(|| invalid("Invalid parameter: SubscriptionArn"))?;
    if !topic_arn.starts_with("arn:") || uuid::Uuid::parse_str(id).is_err() {
        return Err(invalid("Invalid parameter: SubscriptionArn"));
    }
    let topic = resolve(topics, naming, topic_arn).map_err(|e| if e.code == ErrorCode::NotFound { subscription_not_found() } else { e })?;
    let subscription = topic.subscriptions.iter().find(|s| s.arn == arn).ok_or_else(subscription_not_found)?;
    Ok((topic, subscription))
}

/// A change to topics; runs on shard 0 inside the registry.
#[derive(Debug, Clone)]
pub enum TopicChange {
    Create {
        name: String,
        attributes: KeyValues,
        tags: KeyValues,
    },
    Delete {
        topic: String,
    },
    SetAttribute {
        topic: String,
        name: String,
        value: Option<String>,
    },
    Subscribe {
        topic: String,
        protocol: String,
        endpoint: Option<String>,
        attributes: KeyValues,
    },
    /// `authenticate_on_unsubscribe`: asked for by a signed request (`AuthenticateOnUnsubscribe`).
    Confirm {
        topic: String,
        token: String,
        authenticate_on_unsubscribe: bool,
    },
    Unsubscribe {
        subscription: String,
    },
    SetSubscriptionAttribute {
        subscription: String,
        name: String,
        value: Option<String>,
    },
    /// TagResource / UntagResource of a topic.
    Tag {
        topic: String,
        tags: KeyValues,
    },
    Untag {
        topic: String,
        keys: Vec<String>,
    },
    /// AddPermission / RemovePermission on the topic's policy (its default policy when none is set).
    Permission {
        topic: String,
        edit: crate::policy::PermissionEdit,
    },
}

/// Applies a change to a copy of the topics; returns the ARN the change answers with (if any).
pub fn apply(topics: &mut Topics, naming: &Naming, change: TopicChange, now_ms: u64) -> Result<Option<String>, OpError> {
    match change {
        TopicChange::Create { name, attributes, tags } => {
            if !valid_topic_name(&name) {
                return Err(invalid("Invalid parameter: Topic Name: must be 1 to 256 ASCII letters, numbers, hyphens or underscores"));
            }
            // A FIFO topic is made with both the attribute and the name, never one alone.
            let fifo = is_fifo_name(&name);
            let fifo_attribute = attributes.iter().any(|(key, value)| key == "FifoTopic" && value == "true");
            if fifo_attribute && !fifo {
                return Err(invalid(
                    "Invalid parameter: Fifo Topic names must end with .fifo and must be made up of only uppercase and lowercase ASCII letters, numbers, underscores, and hyphens, and must be between 1 and 256 characters long.",
                ));
            }
            if fifo && !fifo_attribute {
                return Err(invalid("Invalid parameter: Topic Name: a name ending in .fifo is a FIFO topic's, made with FifoTopic=true"));
            }
            let mut settings = BTreeMap::new();
            for (key, value) in &attributes {
                check_topic_attribute(key, value, true, fifo)?;
                if key != "FifoTopic" {
                    settings.insert(key.clone(), value.clone());
                }
            }
            if let Some(existing) = topics.get(&name) {
                if settings.iter().any(|(k, v)| existing.attributes.get(k) != Some(v)) {
                    return Err(invalid("Invalid parameter: Attributes Reason: Topic already exists with different attributes"));
                }
                return Ok(Some(existing.arn.clone()));
            }
            if topics.len() >= TOPICS_MAX {
                return Err(OpError::new(ErrorCode::TopicLimitExceeded, "Topic limit exceeded"));
            }
            let tags = checked_tags(BTreeMap::new(), &tags)?;
            let arn = naming.topic_arn(&name);
            topics.insert(
                name.clone(),
                Arc::new(TopicMeta {
                    name,
                    arn: arn.clone(),
                    policy: compiled_policy(&settings),
                    attributes: settings,
                    tags,
                    subscriptions: Vec::new(),
                    restorable: Vec::new(),
                }),
            );
            Ok(Some(arn))
        }
        TopicChange::Delete { topic } => {
            // Deleting a topic that does not exist is not an error.
            match resolve(topics, naming, &topic) {
                Ok(meta) => {
                    let name = meta.name.clone();
                    topics.remove(&name);
                    Ok(None)
                }
                Err(error) if error.code == ErrorCode::NotFound => Ok(None),
                Err(error) => Err(error),
            }
        }
        TopicChange::SetAttribute { topic, name, value } => {
            let meta = resolve(topics, naming, &topic)?;
            let value = value.unwrap_or_default();
            check_topic_attribute(&name, &value, false, meta.is_fifo())?;
            let mut updated = (**meta).clone();
            if value.is_empty() {
                updated.attributes.remove(&name);
            } else {
                updated.attributes.insert(name, value);
            }
            updated.policy = compiled_policy(&updated.attributes);
            topics.insert(updated.name.clone(), Arc::new(updated));
            Ok(None)
        }
        TopicChange::Tag { topic, tags } => {
            let meta = resolve(topics, naming, &topic)?;
            let mut updated = (**meta).clone();
            updated.tags = checked_tags(updated.tags, &tags)?;
            topics.insert(updated.name.clone(), Arc::new(updated));
            Ok(None)
        }
        TopicChange::Untag { topic, keys } => {
            let meta = resolve(topics, naming, &topic)?;
            let mut updated = (**meta).clone();
            for key in &keys {
                updated.tags.remove(key);
            }
            topics.insert(updated.name.clone(), Arc::new(updated));
            Ok(None)
        }
        TopicChange::Permission { topic, edit } => {
            let meta = resolve(topics, naming, &topic)?;
            let current = meta.attributes.get("Policy").map(String::as_str);
            let fallback = Some(default_policy(&meta.arn, &naming.account_id));
            let policy = crate::policy::edit_permissions(current, fallback, &edit, "sns", &meta.arn).map_err(invalid)?;
            if policy.as_ref().is_some_and(|policy| policy.text.len() > TOPIC_ATTRIBUTE_BYTES_MAX) {
                return Err(invalid(format!(
                    "The policy would be longer than {TOPIC_ATTRIBUTE_BYTES_MAX} bytes: remove a permission first."
                )));
            }
            let mut updated = (**meta).clone();
            match &policy {
                Some(policy) => updated.attributes.insert("Policy".into(), policy.text.clone()),
                None => updated.attributes.remove("Policy"),
            };
            updated.policy = policy;
            topics.insert(updated.name.clone(), Arc::new(updated));
            Ok(None)
        }
        TopicChange::Subscribe { topic, protocol, endpoint, attributes } => {
            let meta = resolve(topics, naming, &topic)?;
            let endpoint = endpoint.unwrap_or_default();
            check_endpoint(naming, &protocol, &endpoint, meta.is_fifo())?;
            let mut settings = BTreeMap::new();
            for (key, value) in attributes {
                settings.insert(key, value);
            }
            if let Some(existing) = meta.subscriptions.iter().find(|s| s.protocol == protocol && s.endpoint == endpoint) {
                if settings.iter().any(|(k, v)| existing.attributes.get(k) != Some(v)) {
                    return Err(invalid("Invalid parameter: Attributes Reason: Subscription already exists with different attributes"));
                }
                return Ok(Some(existing.arn.clone()));
            }
            if meta.subscriptions.len() >= SUBSCRIPTIONS_PER_TOPIC_MAX {
                return Err(OpError::new(ErrorCode::SubscriptionLimitExceeded, "Subscription limit exceeded"));
            }
            let arn = format!("{}:{}", meta.arn, random_uuid());
            // HTTP endpoints confirm by echoing a token; queues of this account need not.
            let token = protocol.starts_with("http").then(confirmation_token);
            let subscription = compile_subscription(arn.clone(), meta.arn.clone(), protocol, endpoint, settings, token)?;
            check_dead_letter_type(meta, &subscription)?;
            let mut updated = (**meta).clone();
            updated.subscriptions.push(Arc::new(subscription));
            check_filter_count(&updated)?;
            topics.insert(updated.name.clone(), Arc::new(updated));
            Ok(Some(arn))
        }
        TopicChange::Confirm { topic, token, authenticate_on_unsubscribe } => {
            let meta = resolve(topics, naming, &topic)?;
            let Some(index) = meta.subscriptions.iter().position(|s| s.pending_token.as_deref() == Some(token.as_str())) else {
                // The token of an UnsubscribeConfirmation restores what was unsubscribed.
                let restoring =
                    meta.restorable.iter().position(|(s, until)| s.pending_token.as_deref() == Some(token.as_str()) && now_ms < *until);
                let Some(at) = restoring else { return Err(invalid("Invalid parameter: Token")) };
                let mut updated = (**meta).clone();
                let (restored, _) = updated.restorable.remove(at);
                let restored = SubscriptionMeta { pending_token: None, authenticate_on_unsubscribe, ..(*restored).clone() };
                let arn = restored.arn.clone();
                updated.subscriptions.push(Arc::new(restored));
                topics.insert(updated.name.clone(), Arc::new(updated));
                return Ok(Some(arn));
            };
            let mut updated = (**meta).clone();
            let mut subscription = (*updated.subscriptions[index]).clone();
            subscription.pending_token = None;
            subscription.authenticate_on_unsubscribe = authenticate_on_unsubscribe;
            let arn = subscription.arn.clone();
            updated.subscriptions[index] = Arc::new(subscription);
            topics.insert(updated.name.clone(), Arc::new(updated));
            Ok(Some(arn))
        }
        TopicChange::Unsubscribe { subscription } => {
            let (meta, removed) = resolve_subscription(topics, naming, &subscription)?;
            let mut updated = (**meta).clone();
            updated.subscriptions.retain(|s| s.arn != subscription);
            updated.restorable.retain(|(_, until)| now_ms < *until);
            // A confirmed HTTP/S subscription can be restored with the token its endpoint is
            // sent in an UnsubscribeConfirmation; the token is what this change answers.
            let token = (removed.protocol.starts_with("http") && removed.pending_token.is_none()).then(confirmation_token);
            if let Some(token) = &token {
                if updated.restorable.len() >= RESTORABLE_MAX {
                    updated.restorable.remove(0);
                }
                let kept = SubscriptionMeta { pending_token: Some(token.clone()), ..(**removed).clone() };
                updated.restorable.push((Arc::new(kept), now_ms + RESTORE_MS));
            }
            topics.insert(updated.name.clone(), Arc::new(updated));
            Ok(token)
        }
        TopicChange::SetSubscriptionAttribute { subscription, name, value } => {
            let (meta, existing) = resolve_subscription(topics, naming, &subscription)?;
            if !SUBSCRIPTION_ATTRIBUTES.contains(&name.as_str()) {
                return Err(invalid(format!("Invalid parameter: AttributeName: {name} is not a subscription attribute")));
            }
            let mut settings = existing.attributes.clone();
            match value.filter(|v| !v.is_empty()) {
                Some(value) => settings.insert(name, value),
                None => settings.remove(&name),
            };
            let compiled = compile_subscription(
                existing.arn.clone(),
                existing.topic_arn.clone(),
                existing.protocol.clone(),
                existing.endpoint.clone(),
                settings,
                existing.pending_token.clone(),
            )?;
            check_dead_letter_type(meta, &compiled)?;
            let mut updated = (**meta).clone();
            let index = updated.subscriptions.iter().position(|s| s.arn == subscription).expect("resolved above");
            updated.subscriptions[index] = Arc::new(compiled);
            check_filter_count(&updated)?;
            topics.insert(updated.name.clone(), Arc::new(updated));
            Ok(None)
        }
    }
}

fn check_filter_count(topic: &TopicMeta) -> Result<(), OpError> {
    let filtered = topic.subscriptions.iter().filter(|s| s.filter.is_some()).count();
    if filtered > FILTER_POLICIES_PER_TOPIC_MAX {
        return Err(OpError::new(
            ErrorCode::FilterPolicyLimitExceeded,
            format!(
                "Filter policy limit exceeded: a topic may have at most {FILTER_POLICIES_PER_TOPIC_MAX} subscriptions with filter policies"
            ),
        ));
    }
    Ok(())
}

/// Protocols and endpoints this server delivers to (`fifo`: for a FIFO topic, which delivers
/// to SQS queues only, FIFO or standard; a standard topic delivers to no FIFO queue).
fn check_endpoint(naming: &Naming, protocol: &str, endpoint: &str, fifo: bool) -> Result<(), OpError> {
    if fifo && protocol != "sqs" {
        return Err(invalid(format!(
            "Invalid parameter: Invalid protocol type: {protocol}. FIFO SNS topics deliver to Amazon SQS queues only (protocol sqs)"
        )));
    }
    match protocol {
        "sqs" => {
            let prefix = format!("arn:aws:sqs:{}:{}:", naming.region, naming.account_id);
            let name = endpoint.strip_prefix(&prefix).filter(|_| parse_queue_arn(endpoint).is_some());
            match name {
                Some(name) if is_fifo_name(name) && !fifo => Err(invalid(
                    "Invalid parameter: Invalid parameter: Endpoint Reason: FIFO SQS Queues can not be subscribed to standard SNS topics",
                )),
                Some(_) => Ok(()),
                None => Err(invalid(format!(
                    "Invalid parameter: SQS endpoint ARN: {endpoint:?} is not the ARN of a queue of this server ({prefix}NAME)"
                ))),
            }
        }
        "http" | "https" if super::delivery::valid_endpoint(protocol, endpoint) => Ok(()),
        "http" | "https" => Err(invalid(format!("Invalid parameter: Endpoint: {endpoint:?} is not an {protocol}:// URL"))),
        "firehose" => {
            let prefix = format!("arn:aws:firehose:{}:{}:deliverystream/", naming.region, naming.account_id);
            match endpoint.strip_prefix(&prefix) {
                Some(name) if super::firehose::valid_name(name) => Ok(()),
                _ => Err(invalid(format!(
                    "Invalid parameter: Endpoint: {endpoint:?} is not the ARN of a delivery stream of this server ({prefix}NAME)"
                ))),
            }
        }
        "email" | "email-json" | "sms" | "application" | "lambda" => Err(invalid(format!(
            "Invalid parameter: Protocol: {protocol} is not supported by this server (sqs, http, https and firehose are)"
        ))),
        other => Err(invalid(format!("Invalid parameter: Amazon SNS does not support this protocol string: {other}"))),
    }
}

/// A subscription's dead-letter queue is of its topic's type: FIFO for a FIFO topic, standard
/// for a standard one. (Checked when set, not when the registry is read: a subscription saved
/// before the rule still loads.)
fn check_dead_letter_type(topic: &TopicMeta, subscription: &SubscriptionMeta) -> Result<(), OpError> {
    match &subscription.dead_letter_arn {
        Some(arn) if is_fifo_name(arn) != topic.is_fifo() => Err(invalid(format!(
            "Invalid parameter: RedrivePolicy: deadLetterTargetArn: the dead-letter queue of a subscription to a {} topic must be a {} queue",
            if topic.is_fifo() { "FIFO" } else { "standard" },
            if topic.is_fifo() { "FIFO" } else { "standard" },
        ))),
        _ => Ok(()),
    }
}

/// Checks a subscription's settings and compiles them.
fn compile_subscription(
    arn: String,
    topic_arn: String,
    protocol: String,
    endpoint: String,
    attributes: BTreeMap<String, String>,
    pending_token: Option<String>,
) -> Result<SubscriptionMeta, OpError> {
    let bad = |name: &str, reason: &str| invalid(format!("Invalid parameter: Attributes Reason: {name}: {reason}"));
    for (name, value) in &attributes {
        if !SUBSCRIPTION_ATTRIBUTES.contains(&name.as_str()) {
            return Err(invalid(format!("Invalid parameter: Attributes Reason: Unknown attribute {name}")));
        }
        if name != "FilterPolicy" && value.len() > TOPIC_ATTRIBUTE_BYTES_MAX {
            return Err(bad(name, &format!("must be at most {TOPIC_ATTRIBUTE_BYTES_MAX} bytes")));
        }
    }
    let raw = match attributes.get("RawMessageDelivery").map(String::as_str) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(bad("RawMessageDelivery", "must be true or false")),
    };
    let scope = attributes.get("FilterPolicyScope").map(|s| Scope::parse(s)).transpose()?.unwrap_or_default();
    let filter = match attributes.get("FilterPolicy") {
        Some(text) => FilterPolicy::compile(text, scope)?,
        None => None,
    };
    let dead_letter_arn = match attributes.get("RedrivePolicy") {
        Some(text) => {
            let policy: Value = serde_json::from_str(text).map_err(|_| bad("RedrivePolicy", "is not valid JSON"))?;
            let target = policy["deadLetterTargetArn"]
                .as_str()
                .filter(|arn| parse_queue_arn(arn).is_some())
                .ok_or_else(|| bad("RedrivePolicy", "deadLetterTargetArn must be the ARN of an SQS queue"))?;
            Some(target.to_owned())
        }
        None => None,
    };
    // SNS needs a role to put into a delivery stream; it is kept, and access is decided by
    // this server's own policies.
    if protocol == "firehose" && attributes.get("SubscriptionRoleArn").is_none_or(|role| role.is_empty()) {
        return Err(bad("SubscriptionRoleArn", "is required for a firehose subscription"));
    }
    if let Some(policy) = attributes.get("DeliveryPolicy") {
        if !protocol.starts_with("http") {
            return Err(bad("DeliveryPolicy", "only HTTP/S subscriptions take a delivery policy"));
        }
        let policy: Value = serde_json::from_str(policy).map_err(|_| bad("DeliveryPolicy", "is not valid JSON"))?;
        super::delivery::RetryPolicy::parse(&policy)?;
    }
    Ok(SubscriptionMeta {
        arn,
        topic_arn,
        protocol,
        endpoint,
        attributes,
        raw,
        filter,
        scope,
        dead_letter_arn,
        pending_token,
        authenticate_on_unsubscribe: false,
    })
}

/// Topics as the metadata file keeps them.
pub fn to_json(topics: &Topics) -> Value {
    Value::Array(topics.values().map(|topic| topic_json(topic)).collect())
}

/// One topic as the metadata file keeps it (`to_json` lists these).
pub fn topic_json(topic: &TopicMeta) -> Value {
    let subscriptions: Vec<Value> = topic.subscriptions.iter().map(|s| subscription_json(s)).collect();
    let restorable: Vec<Value> =
        topic.restorable.iter().map(|(s, until)| json!({ "subscription": subscription_json(s), "until_ms": until })).collect();
    json!({
        "name": topic.name,
        "attributes": topic.attributes,
        "tags": topic.tags,
        "subscriptions": subscriptions,
        "restorable": restorable,
    })
}

fn subscription_json(s: &SubscriptionMeta) -> Value {
    json!({
        "arn": s.arn,
        "protocol": s.protocol,
        "endpoint": s.endpoint,
        "attributes": s.attributes,
        "pending_token": s.pending_token,
        "authenticate_on_unsubscribe": s.authenticate_on_unsubscribe,
    })
}

/// Rebuilds topics from `to_json`'s output, checking everything (it comes from disk).
pub fn from_json(naming: &Naming, value: &Value) -> Result<Topics, String> {
    let strings = |value: &Value, what: &str| -> Result<BTreeMap<String, String>, String> {
        let object = value.as_object().ok_or_else(|| format!("{what} is not an object"))?;
        object
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_str().ok_or_else(|| format!("a value of {what} is not a string"))?.to_owned())))
            .collect()
    };
    let mut topics = Topics::new();
    let Some(list) = value.as_array() else {
        return if value.is_null() { Ok(topics) } else { Err("topics is not a list".into()) };
    };
    for topic in list {
        let name = topic["name"].as_str().filter(|n| valid_topic_name(n)).ok_or("a topic has no valid name")?.to_owned();
        let arn = naming.topic_arn(&name);
        // A subscription as `subscription_json` wrote it, checked.
        let subscription = |s: &Value| -> Result<SubscriptionMeta, String> {
            let field = |key: &str| s[key].as_str().map(str::to_owned).ok_or_else(|| format!("topic {name}: a subscription has no {key}"));
            let sub_arn = field("arn")?;
            if !sub_arn.starts_with(&format!("{arn}:")) {
                return Err(format!("topic {name}: subscription {sub_arn} belongs to another topic"));
            }
            let compiled = compile_subscription(
                sub_arn,
                arn.clone(),
                field("protocol")?,
                field("endpoint")?,
                strings(&s["attributes"], "subscription attributes")?,
                s["pending_token"].as_str().map(str::to_owned),
            )
            .map_err(|e| format!("topic {name}: {}", e.message))?;
            // Absent in files written before it existed.
            let authenticate_on_unsubscribe = s["authenticate_on_unsubscribe"].as_bool().unwrap_or(false);
            Ok(SubscriptionMeta { authenticate_on_unsubscribe, ..compiled })
        };
        let subscriptions = topic["subscriptions"]
            .as_array()
            .ok_or_else(|| format!("topic {name}: subscriptions is not a list"))?
            .iter()
            .map(|s| subscription(s).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let attributes = strings(&topic["attributes"], "topic attributes")?;
        // Absent in files written before subscriptions could be restored.
        let mut restorable = Vec::new();
        for r in topic["restorable"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let kept = subscription(&r["subscription"])?;
            if kept.pending_token.is_none() {
                return Err(format!("topic {name}: a restorable subscription has no token"));
            }
            let until = r["until_ms"].as_u64().ok_or_else(|| format!("topic {name}: a restorable subscription has no until_ms"))?;
            restorable.push((Arc::new(kept), until));
        }
        let meta = TopicMeta {
            restorable,
            name: name.clone(),
            // Kept even if it no longer compiles (`ResourcePolicy::stored`).
            policy: attributes.get("Policy").map(|text| crate::policy::ResourcePolicy::stored(text, &arn)),
            arn,
            attributes,
            tags: strings(&topic["tags"], "topic tags")?,
            subscriptions,
        };
        topics.insert(name, Arc::new(meta));
    }
    Ok(topics)
}

/// The `Policy` among a topic's attributes, compiled (it was checked as it was set).
fn compiled_policy(attributes: &BTreeMap<String, String>) -> Option<crate::policy::ResourcePolicy> {
    attributes.get("Policy").and_then(|text| crate::policy::ResourcePolicy::parse(text).ok())
}

/// The access policy SNS gives a topic that sets none: only the owner may act on it.
pub fn default_policy(topic_arn: &str, account_id: &str) -> String {
    json!({
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [{
            "Sid": "__default_statement_ID",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": ["SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission", "SNS:RemovePermission",
                       "SNS:DeleteTopic", "SNS:Subscribe", "SNS:ListSubscriptionsByTopic", "SNS:Publish"],
            "Resource": topic_arn,
            "Condition": {"StringEquals": {"AWS:SourceOwner": account_id}}
        }]
    })
    .to_string()
}

/// A subscription confirmation token: 64 random hex digits (from the operating system's
/// generator, since whoever holds it can confirm the subscription).
fn confirmation_token() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..16].copy_from_slice(&fastrand::u128(..).to_le_bytes());
        bytes[16..].copy_from_slice(&fastrand::u128(..).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random (version 4) UUID, hyphenated: message ids and subscription ids.
pub fn random_uuid() -> String {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid().hyphenated().to_string()
}
