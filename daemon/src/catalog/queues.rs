//! Queue attributes: parsing and validating what clients set, rendering what they get.
//!
//! Values travel as strings (as in SQS); here they become typed fields, checked
//! against AWS's ranges. A FIFO queue (`FifoQueue=true`, a `.fifo` name) has four more:
//! whether it is FIFO (fixed at creation), content-based deduplication, the
//! deduplication scope and the throughput limit (aws-semantics.md §2.6).

use sluice_protocol::limits::*;
use sluice_protocol::{ErrorCode, KeyValues, OpError};

/// The settable attributes of a standard queue, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueAttributes {
    pub delay_seconds: u32,
    pub maximum_message_size: u32,
    pub message_retention_seconds: u32,
    pub receive_wait_seconds: u32,
    pub visibility_timeout_seconds: u32,
    pub policy: Option<crate::policy::ResourcePolicy>,
    pub redrive_policy: Option<RedrivePolicy>,
    pub redrive_allow_policy: Option<RedriveAllowPolicy>,
    pub kms_master_key_id: Option<String>,
    pub kms_data_key_reuse_seconds: u32,
    pub sqs_managed_sse_enabled: bool,
    /// Whether this is a FIFO queue (fixed when the queue is created).
    pub fifo: bool,
    pub content_based_deduplication: bool,
    pub deduplication_scope: DeduplicationScope,
    pub fifo_throughput_limit: FifoThroughputLimit,
}

/// Within what a FIFO queue's deduplication ids must be unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeduplicationScope {
    #[default]
    Queue,
    MessageGroup,
}

/// What a FIFO queue's throughput quota applies to (Sluice applies none; the attribute is
/// kept and checked against AWS's pairing rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FifoThroughputLimit {
    #[default]
    PerQueue,
    PerMessageGroupId,
}

impl Default for QueueAttributes {
    fn default() -> Self {
        QueueAttributes {
            delay_seconds: 0,
            maximum_message_size: MESSAGE_BYTES_MAX,
            message_retention_seconds: 345_600,
            receive_wait_seconds: 0,
            visibility_timeout_seconds: 30,
            policy: None,
            redrive_policy: None,
            redrive_allow_policy: None,
            kms_master_key_id: None,
            kms_data_key_reuse_seconds: 300,
            // The registry makes new queues SSE-SQS when the server has a key service.
            sqs_managed_sse_enabled: false,
            fifo: false,
            content_based_deduplication: false,
            deduplication_scope: DeduplicationScope::Queue,
            fifo_throughput_limit: FifoThroughputLimit::PerQueue,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedrivePolicy {
    pub dead_letter_target_arn: String,
    pub max_receive_count: u32,
    /// The JSON as the client sent it, returned verbatim.
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedrivePermission {
    AllowAll,
    DenyAll,
    ByQueue(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveAllowPolicy {
    pub permission: RedrivePermission,
    pub raw: String,
}

impl RedriveAllowPolicy {
    /// Whether a queue with `source_arn` may use the queue carrying this policy as its DLQ.
    pub fn allows(&self, source_arn: &str) -> bool {
        match &self.permission {
            RedrivePermission::AllowAll => true,
            RedrivePermission::DenyAll => false,
            RedrivePermission::ByQueue(arns) => arns.iter().any(|arn| arn == source_arn),
        }
    }
}

/// Names accepted by GetQueueAttributes, in the order `All` returns them.
pub const READABLE_ATTRIBUTES: &[&str] = &[
    "QueueArn",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "VisibilityTimeout",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "Policy",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

/// Attributes only FIFO queues have.
const FIFO_ONLY_ATTRIBUTES: &[&str] = &["ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"];

fn invalid_value(name: &str, reason: &str) -> OpError {
    OpError::new(ErrorCode::InvalidAttributeValue, format!("Invalid value for the parameter {name}. Reason: {reason}."))
}

fn ranged(name: &str, value: &str, min: i64, max: i64) -> Result<u32, OpError> {
    match value.trim().parse::<i64>() {
        Ok(number) if (min..=max).contains(&number) => Ok(number as u32),
        _ => Err(invalid_value(name, &format!("must be an integer from {min} to {max}"))),
    }
}

fn boolean(name: &str, value: &str) -> Result<bool, OpError> {
    match value {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(invalid_value(name, "must be true or false")),
    }
}

fn parse_redrive_policy(raw: &str) -> Result<RedrivePolicy, OpError> {
    let bad = |why: &str| invalid_value("RedrivePolicy", why);
    let json: serde_json::Value = serde_json::from_str(raw).map_err(|_| bad("the policy is not valid JSON"))?;
    let object = json.as_object().ok_or_else(|| bad("the policy must be a JSON object"))?;
    for key in object.keys() {
        if key != "deadLetterTargetArn" && key != "maxReceiveCount" {
            return Err(bad(&format!("unknown key {key}")));
        }
    }
    let arn = object.get("deadLetterTargetArn").and_then(|v| v.as_str()).ok_or_else(|| bad("deadLetterTargetArn is required"))?;
    if parse_queue_arn(arn).is_none() {
        return Err(bad("deadLetterTargetArn is not a queue ARN"));
    }
    // AWS accepts the count as a number or a numeric string.
    let count = match object.get("maxReceiveCount") {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| bad("maxReceiveCount is required"))?;
    if !(MAX_RECEIVE_COUNT_MIN..=MAX_RECEIVE_COUNT_MAX).contains(&count) {
        return Err(bad(&format!("maxReceiveCount must be from {MAX_RECEIVE_COUNT_MIN} to {MAX_RECEIVE_COUNT_MAX}")));
    }
    Ok(RedrivePolicy { dead_letter_target_arn: arn.to_owned(), max_receive_count: count as u32, raw: raw.to_owned() })
}

fn parse_redrive_allow_policy(raw: &str) -> Result<RedriveAllowPolicy, OpError> {
    let bad = |why: &str| invalid_value("RedriveAllowPolicy", why);
    let json: serde_json::Value = serde_json::from_str(raw).map_err(|_| bad("the policy is not valid JSON"))?;
    let object = json.as_object().ok_or_else(|| bad("the policy must be a JSON object"))?;
    let permission = object.get("redrivePermission").and_then(|v| v.as_str()).ok_or_else(|| bad("redrivePermission is required"))?;
    let sources = object.get("sourceQueueArns");
    let permission = match permission {
        "allowAll" | "denyAll" if sources.is_some() => return Err(bad("sourceQueueArns is allowed only with redrivePermission byQueue")),
        "allowAll" => RedrivePermission::AllowAll,
        "denyAll" => RedrivePermission::DenyAll,
        "byQueue" => {
            let arns = sources.and_then(|v| v.as_array()).ok_or_else(|| bad("byQueue needs sourceQueueArns"))?;
            if arns.is_empty() || arns.len() > REDRIVE_ALLOW_SOURCES_MAX {
                return Err(bad(&format!("sourceQueueArns must hold 1 to {REDRIVE_ALLOW_SOURCES_MAX} ARNs")));
            }
            let arns = arns
                .iter()
                .map(|arn| arn.as_str().map(str::to_owned).ok_or_else(|| bad("sourceQueueArns must be strings")))
                .collect::<Result<Vec<_>, _>>()?;
            RedrivePermission::ByQueue(arns)
        }
        _ => return Err(bad("redrivePermission must be allowAll, denyAll or byQueue")),
    };
    Ok(RedriveAllowPolicy { permission, raw: raw.to_owned() })
}

/// Splits `arn:aws:sqs:REGION:ACCOUNT:NAME` into its queue name.
pub fn parse_queue_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("sqs"), Some(_region), Some(_account), Some(name)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    valid_queue_name(name).then_some(name)
}

/// SQS queue names: 1–80 of `[A-Za-z0-9_-]` (a `.fifo` suffix marks FIFO queues).
pub fn valid_queue_name(name: &str) -> bool {
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    !name.is_empty()
        && name.len() <= QUEUE_NAME_CHARS_MAX
        && !stem.is_empty()
        && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl QueueAttributes {
    /// Applies `changes` on top of `self`, validating each; nothing changes on error.
    pub fn with_changes(&self, changes: &KeyValues) -> Result<QueueAttributes, OpError> {
        let mut next = self.clone();
        for (name, value) in changes {
            let name = name.as_str();
            // The longest value any attribute takes is a policy.
            if value.len() > QUEUE_POLICY_BYTES_MAX {
                return Err(invalid_value(name, &format!("the value must be at most {QUEUE_POLICY_BYTES_MAX} bytes")));
            }
            match name {
                "DelaySeconds" => next.delay_seconds = ranged(name, value, 0, DELAY_SECONDS_MAX as i64)?,
                "MaximumMessageSize" => {
                    next.maximum_message_size = ranged(name, value, MESSAGE_BYTES_MIN_LIMIT as i64, MESSAGE_BYTES_MAX as i64)?
                }
                "MessageRetentionPeriod" => {
                    next.message_retention_seconds = ranged(name, value, RETENTION_SECONDS_MIN, RETENTION_SECONDS_MAX)?
                }
                "ReceiveMessageWaitTimeSeconds" => next.receive_wait_seconds = ranged(name, value, 0, WAIT_SECONDS_MAX as i64)?,
                "VisibilityTimeout" => next.visibility_timeout_seconds = ranged(name, value, 0, VISIBILITY_SECONDS_MAX as i64)?,
                "Policy" => {
                    if value.is_empty() {
                        next.policy = None;
                    } else {
                        let policy = crate::policy::ResourcePolicy::parse(value).map_err(|error| invalid_value(name, &error))?;
                        next.policy = Some(policy);
                    }
                }
                "RedrivePolicy" => next.redrive_policy = if value.is_empty() { None } else { Some(parse_redrive_policy(value)?) },
                "RedriveAllowPolicy" => {
                    next.redrive_allow_policy = if value.is_empty() { None } else { Some(parse_redrive_allow_policy(value)?) }
                }
                "KmsMasterKeyId" => {
                    next.kms_master_key_id = if value.is_empty() { None } else { Some(value.clone()) };
                    if next.kms_master_key_id.is_some() {
                        next.sqs_managed_sse_enabled = false;
                    }
                }
                "KmsDataKeyReusePeriodSeconds" => next.kms_data_key_reuse_seconds = ranged(name, value, 60, 86_400)?,
                "SqsManagedSseEnabled" => {
                    next.sqs_managed_sse_enabled = boolean(name, value)?;
                    if next.sqs_managed_sse_enabled && changes.iter().any(|(n, v)| n == "KmsMasterKeyId" && !v.is_empty()) {
                        return Err(OpError::new(
                            ErrorCode::InvalidAttributeValue,
                            "You can use one type of server-side encryption (SSE) at one time: SqsManagedSseEnabled or KmsMasterKeyId.",
                        ));
                    }
                }
                // Whether the queue may be FIFO at all is the creator's check (its name); once
                // created, `FifoQueue` cannot change (`check_unchanged_type`).
                "FifoQueue" => next.fifo = boolean(name, value)?,
                "ContentBasedDeduplication" => next.content_based_deduplication = boolean(name, value)?,
                "DeduplicationScope" => {
                    next.deduplication_scope = match value.as_str() {
                        "queue" => DeduplicationScope::Queue,
                        "messageGroup" => DeduplicationScope::MessageGroup,
                        _ => return Err(invalid_value(name, "must be messageGroup or queue")),
                    }
                }
                "FifoThroughputLimit" => {
                    next.fifo_throughput_limit = match value.as_str() {
                        "perQueue" => FifoThroughputLimit::PerQueue,
                        "perMessageGroupId" => FifoThroughputLimit::PerMessageGroupId,
                        _ => return Err(invalid_value(name, "must be perQueue or perMessageGroupId")),
                    }
                }
                _ => return Err(OpError::new(ErrorCode::InvalidAttributeName, format!("Unknown Attribute {name}."))),
            }
        }
        if !next.fifo {
            if let Some((name, _)) = changes.iter().find(|(name, _)| FIFO_ONLY_ATTRIBUTES.contains(&name.as_str())) {
                return Err(OpError::new(ErrorCode::InvalidAttributeName, format!("Unknown Attribute {name}.")));
            }
        }
        if next.fifo_throughput_limit == FifoThroughputLimit::PerMessageGroupId && next.deduplication_scope == DeduplicationScope::Queue {
            return Err(OpError::new(
                ErrorCode::InvalidAttributeValue,
                "Invalid value for the parameter FifoThroughputLimit. Reason: perMessageGroupId is allowed only when DeduplicationScope is messageGroup.",
            ));
        }
        Ok(next)
    }

    /// Refuses a SetQueueAttributes that would turn a queue into the other type.
    pub fn check_unchanged_type(&self, changes: &KeyValues) -> Result<(), OpError> {
        match changes.iter().find(|(name, _)| name == "FifoQueue") {
            Some((_, value)) if boolean("FifoQueue", value)? != self.fifo => Err(OpError::new(
                ErrorCode::InvalidAttributeValue,
                "Invalid value for the parameter FifoQueue. Reason: a queue's type is fixed when it is created.",
            )),
            _ => Ok(()),
        }
    }

    /// The value of a settable attribute as SQS renders it, `None` when unset.
    pub fn render(&self, name: &str) -> Option<String> {
        Some(match name {
            "DelaySeconds" => self.delay_seconds.to_string(),
            "MaximumMessageSize" => self.maximum_message_size.to_string(),
            "MessageRetentionPeriod" => self.message_retention_seconds.to_string(),
            "ReceiveMessageWaitTimeSeconds" => self.receive_wait_seconds.to_string(),
            "VisibilityTimeout" => self.visibility_timeout_seconds.to_string(),
            "Policy" => self.policy.as_ref()?.text.clone(),
            "RedrivePolicy" => self.redrive_policy.as_ref()?.raw.clone(),
            "RedriveAllowPolicy" => self.redrive_allow_policy.as_ref()?.raw.clone(),
            "KmsMasterKeyId" => self.kms_master_key_id.clone()?,
            "KmsDataKeyReusePeriodSeconds" => self.kms_data_key_reuse_seconds.to_string(),
            "SqsManagedSseEnabled" => self.sqs_managed_sse_enabled.to_string(),
            "FifoQueue" if self.fifo => "true".to_owned(),
            "ContentBasedDeduplication" if self.fifo => self.content_based_deduplication.to_string(),
            "DeduplicationScope" if self.fifo => match self.deduplication_scope {
                DeduplicationScope::Queue => "queue",
                DeduplicationScope::MessageGroup => "messageGroup",
            }
            .to_owned(),
            "FifoThroughputLimit" if self.fifo => match self.fifo_throughput_limit {
                FifoThroughputLimit::PerQueue => "perQueue",
                FifoThroughputLimit::PerMessageGroupId => "perMessageGroupId",
            }
            .to_owned(),
            _ => return None,
        })
    }

    /// Whether the attributes a CreateQueue supplied equal this queue's (SQS compares only those supplied).
    pub fn matches_supplied(&self, supplied: &KeyValues) -> Result<bool, OpError> {
        let wanted = self.with_changes(supplied)?;
        Ok(wanted == *self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(name: &str, value: &str) -> KeyValues {
        vec![(name.to_owned(), value.to_owned())]
    }

    #[test]
    fn ranges_are_enforced_with_aws_codes() {
        let base = QueueAttributes::default();
        assert_eq!(base.with_changes(&kv("DelaySeconds", "900")).unwrap().delay_seconds, 900);
        assert_eq!(base.with_changes(&kv("DelaySeconds", "901")).unwrap_err().code, ErrorCode::InvalidAttributeValue);
        assert_eq!(base.with_changes(&kv("MaximumMessageSize", "1023")).unwrap_err().code, ErrorCode::InvalidAttributeValue);
        assert_eq!(base.with_changes(&kv("MessageRetentionPeriod", "59")).unwrap_err().code, ErrorCode::InvalidAttributeValue);
        assert_eq!(base.with_changes(&kv("VisibilityTimeout", "43201")).unwrap_err().code, ErrorCode::InvalidAttributeValue);
        assert_eq!(base.with_changes(&kv("VisibilityTimeout", "x")).unwrap_err().code, ErrorCode::InvalidAttributeValue);
        assert_eq!(base.with_changes(&kv("Colour", "red")).unwrap_err().code, ErrorCode::InvalidAttributeName);
        assert_eq!(base.with_changes(&kv("ContentBasedDeduplication", "true")).unwrap_err().code, ErrorCode::InvalidAttributeName);
    }

    #[test]
    fn fifo_attributes_follow_aws_pairing_rules_and_render_only_on_fifo_queues() {
        let base = QueueAttributes::default();
        assert_eq!(base.render("FifoQueue"), None);
        let fifo = base.with_changes(&kv("FifoQueue", "true")).unwrap();
        assert_eq!(fifo.render("FifoQueue").as_deref(), Some("true"));
        assert_eq!(fifo.render("DeduplicationScope").as_deref(), Some("queue"));
        assert_eq!(fifo.render("FifoThroughputLimit").as_deref(), Some("perQueue"));
        let high = fifo
            .with_changes(&vec![
                ("FifoThroughputLimit".to_owned(), "perMessageGroupId".to_owned()),
                ("DeduplicationScope".to_owned(), "messageGroup".to_owned()),
            ])
            .unwrap();
        assert_eq!(high.render("FifoThroughputLimit").as_deref(), Some("perMessageGroupId"));
        assert_eq!(fifo.with_changes(&kv("FifoThroughputLimit", "perMessageGroupId")).unwrap_err().code, ErrorCode::InvalidAttributeValue);
        assert_eq!(fifo.with_changes(&kv("DeduplicationScope", "group")).unwrap_err().code, ErrorCode::InvalidAttributeValue);
        assert!(fifo.check_unchanged_type(&kv("FifoQueue", "false")).is_err());
        assert!(fifo.check_unchanged_type(&kv("FifoQueue", "true")).is_ok());
        // Rendered attributes read back as the same queue (the registry stores them so).
        let rendered: KeyValues = READABLE_ATTRIBUTES.iter().filter_map(|name| Some((name.to_string(), high.render(name)?))).collect();
        assert_eq!(QueueAttributes::default().with_changes(&rendered).unwrap(), high);
    }

    #[test]
    fn redrive_policies_parse_and_validate() {
        let base = QueueAttributes::default();
        let ok = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"3"}"#;
        let attributes = base.with_changes(&kv("RedrivePolicy", ok)).unwrap();
        assert_eq!(attributes.redrive_policy.as_ref().unwrap().max_receive_count, 3);
        assert_eq!(attributes.render("RedrivePolicy").unwrap(), ok);
        for bad in [
            "not json",
            r#"{"maxReceiveCount":3}"#,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:0:dlq","maxReceiveCount":0}"#,
            r#"{"deadLetterTargetArn":"nope","maxReceiveCount":3}"#,
        ] {
            assert_eq!(base.with_changes(&kv("RedrivePolicy", bad)).unwrap_err().code, ErrorCode::InvalidAttributeValue, "{bad}");
        }
        let by_queue = r#"{"redrivePermission":"byQueue","sourceQueueArns":["arn:aws:sqs:us-east-1:0:src"]}"#;
        let allow = base.with_changes(&kv("RedriveAllowPolicy", by_queue)).unwrap().redrive_allow_policy.unwrap();
        assert!(allow.allows("arn:aws:sqs:us-east-1:0:src"));
        assert!(!allow.allows("arn:aws:sqs:us-east-1:0:other"));
        let bad = r#"{"redrivePermission":"allowAll","sourceQueueArns":["a"]}"#;
        assert!(base.with_changes(&kv("RedriveAllowPolicy", bad)).is_err());
    }

    #[test]
    fn queue_names_follow_sqs_rules() {
        assert!(valid_queue_name("orders-1_b"));
        assert!(valid_queue_name(&"a".repeat(80)));
        assert!(!valid_queue_name(&"a".repeat(81)));
        assert!(!valid_queue_name(""));
        assert!(!valid_queue_name("has space"));
        assert!(!valid_queue_name("dot.ted"));
        assert_eq!(parse_queue_arn("arn:aws:sqs:eu-west-1:123:q1"), Some("q1"));
        assert_eq!(parse_queue_arn("arn:aws:sns:eu-west-1:123:q1"), None);
    }
}
