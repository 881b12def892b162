//! Access policies in IAM's language, compiled once and evaluated per request.
//!
//! Two kinds share the language: identity policies, attached to a principal in
//! `--credentials` (no `Principal`), and resource policies — a queue's or topic's `Policy`
//! attribute, a stream's resource policy — which say who (`Principal`) may do what to them.
//! A statement has an `Effect` (`Allow` or `Deny`), `Action` or `NotAction` (`sqs:SendMessage`,
//! `sqs:Send*`, `*`; case does not matter), `Resource` or `NotResource` (ARNs with `*` and `?`),
//! and an optional `Condition` block.
//!
//! Compiling turns every action pattern into a bit set over the actions this server knows,
//! every resource into a wildcard pattern, and every condition into a typed test, so that
//! evaluating walks no JSON. Evaluation follows AWS: an explicit `Deny` wins; within one account
//! an `Allow` in either the identity or the resource policy is enough; across accounts both
//! must allow; otherwise the request is denied.

use std::net::IpAddr;

use serde_json::Value;

/// The actions access is decided on: `service:Name` as IAM spells them. A batch call is
/// decided as its single form (`SendMessageBatch` needs `sqs:SendMessage`), as in AWS.
pub const ACTIONS: &[&str] = &[
    "sqs:AddPermission",
    "sqs:ChangeMessageVisibility",
    "sqs:CreateQueue",
    "sqs:DeleteMessage",
    "sqs:DeleteQueue",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ListDeadLetterSourceQueues",
    "sqs:ListQueueTags",
    "sqs:ListQueues",
    "sqs:PurgeQueue",
    "sqs:ReceiveMessage",
    "sqs:RemovePermission",
    "sqs:SendMessage",
    "sqs:SetQueueAttributes",
    "sqs:TagQueue",
    "sqs:UntagQueue",
    "sns:AddPermission",
    "sns:ConfirmSubscription",
    "sns:CreateTopic",
    "sns:DeleteTopic",
    "sns:GetSubscriptionAttributes",
    "sns:GetTopicAttributes",
    "sns:ListSubscriptions",
    "sns:ListSubscriptionsByTopic",
    "sns:ListTagsForResource",
    "sns:ListTopics",
    "sns:Publish",
    "sns:RemovePermission",
    "sns:SetSubscriptionAttributes",
    "sns:SetTopicAttributes",
    "sns:Subscribe",
    "sns:TagResource",
    "sns:Unsubscribe",
    "sns:UntagResource",
    "kinesis:AddTagsToStream",
    "kinesis:DescribeAccountSettings",
    "kinesis:DescribeLimits",
    "kinesis:CreateStream",
    "kinesis:DecreaseStreamRetentionPeriod",
    "kinesis:DeleteResourcePolicy",
    "kinesis:DeleteStream",
    "kinesis:DeregisterStreamConsumer",
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamConsumer",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetResourcePolicy",
    "kinesis:GetShardIterator",
    "kinesis:IncreaseStreamRetentionPeriod",
    "kinesis:ListShards",
    "kinesis:ListStreamConsumers",
    "kinesis:ListStreams",
    "kinesis:ListTagsForStream",
    "kinesis:MergeShards",
    "kinesis:PutRecord",
    "kinesis:PutRecords",
    "kinesis:PutResourcePolicy",
    "kinesis:RegisterStreamConsumer",
    "kinesis:RemoveTagsFromStream",
    "kinesis:SplitShard",
    "kinesis:SubscribeToShard",
    "kinesis:UpdateShardCount",
    "sqs:StartMessageMoveTask",
    "sqs:CancelMessageMoveTask",
    "sqs:ListMessageMoveTasks",
    "kinesis:UpdateMaxRecordSize",
    "kinesis:UpdateStreamMode",
    "kinesis:EnableEnhancedMonitoring",
    "kinesis:DisableEnhancedMonitoring",
    "kinesis:StartStreamEncryption",
    "kinesis:StopStreamEncryption",
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:CreateKey",
    "kms:Decrypt",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GetKeyRotationStatus",
    "kms:ListAliases",
    "kms:ListKeys",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:UpdateAlias",
    "cloudwatch:PutMetricAlarm",
    "cloudwatch:DescribeAlarms",
    "cloudwatch:DeleteAlarms",
    "cloudwatch:SetAlarmState",
    "cloudwatch:EnableAlarmActions",
    "cloudwatch:DisableAlarmActions",
    "cloudwatch:GetMetricStatistics",
    "cloudwatch:GetMetricData",
    "cloudwatch:ListMetrics",
    "firehose:CreateDeliveryStream",
    "firehose:DeleteDeliveryStream",
    "firehose:DescribeDeliveryStream",
    "firehose:ListDeliveryStreams",
    "firehose:PutRecord",
    "firehose:PutRecordBatch",
    "firehose:UpdateDestination",
    "firehose:TagDeliveryStream",
    "firehose:UntagDeliveryStream",
    "firehose:ListTagsForDeliveryStream",
    "firehose:StartDeliveryStreamEncryption",
    "firehose:StopDeliveryStreamEncryption",
];

/// One of `ACTIONS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action(u8);

impl Action {
    /// The action named `service:Name` (exactly as in `ACTIONS`).
    pub fn named(name: &str) -> Option<Action> {
        ACTIONS.iter().position(|known| *known == name).map(|at| Action(at as u8))
    }

    pub fn name(self) -> &'static str {
        ACTIONS[self.0 as usize]
    }

    fn bit(self) -> u128 {
        1 << self.0
    }
}

const _: () = assert!(ACTIONS.len() <= 128, "actions are a u128 bit set");

/// The service principal SNS delivers to queues as.
pub const SNS_SERVICE: &str = "sns.amazonaws.com";

/// Who makes a request.
#[derive(Clone, Copy, Debug)]
pub enum Who<'a> {
    /// A principal from `--credentials`.
    Principal { arn: &'a str, account: &'a str },
    /// An AWS service acting for a resource (`sns.amazonaws.com` delivering a topic's message).
    Service(&'a str),
}

/// What a request is, as policies see it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub who: Who<'a>,
    pub action: Action,
    /// The resource's ARN; `None` for actions on no particular resource (`ListQueues`), which
    /// only a statement with `"Resource": "*"` covers.
    pub resource: Option<&'a str>,
    /// For a service's request: the resource it acts for (`aws:SourceArn`) and its account.
    pub source_arn: Option<&'a str>,
    pub source_account: Option<&'a str>,
    pub source_ip: Option<IpAddr>,
    /// Whether the request came over TLS (`aws:SecureTransport`).
    pub secure: bool,
}

/// What one policy says of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// Neither: no statement applies.
    Silent,
}

/// Which kind of policy a document is (they differ in whether a `Principal` is required).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Identity,
    Resource,
}

/// A compiled policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Statement {
    sid: Option<String>,
    allow: bool,
    principals: Principals,
    /// Bits of `ACTIONS`; with `not_action`, the statement covers the others.
    actions: u128,
    not_action: bool,
    resources: Vec<Pattern>,
    not_resource: bool,
    conditions: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Principals {
    /// `"*"` or `{"AWS": "*"}`: anyone, services included.
    Any,
    Listed {
        accounts: Vec<String>,
        arns: Vec<String>,
        services: Vec<String>,
    },
}

/// A wildcard pattern (`*`: any run of characters, `?`: any one).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    text: String,
    wild: bool,
}

impl Pattern {
    fn new(text: &str) -> Pattern {
        Pattern { text: text.to_owned(), wild: text.contains(['*', '?']) }
    }

    fn matches(&self, candidate: &str) -> bool {
        if self.wild {
            wildcard(self.text.as_bytes(), candidate.as_bytes())
        } else {
            self.text == candidate
        }
    }
}

/// Whether `text` matches `pattern` (`*` and `?`), greedy with one backtrack point.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Condition {
    test: Test,
    key: Key,
    /// `…IfExists`: true when the request has no such key.
    if_exists: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Test {
    /// StringEquals, StringLike, ArnEquals, ArnLike and their negations and IgnoreCase forms.
    Strings {
        patterns: Vec<Pattern>,
        ignore_case: bool,
        negated: bool,
    },
    /// IpAddress / NotIpAddress: CIDR blocks.
    Ip {
        blocks: Vec<(IpAddr, u8)>,
        negated: bool,
    },
    Bool(bool),
    /// Null: whether the key is absent.
    Null(bool),
}

/// The condition keys this server fills in. Keys it does not know are never present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    SourceArn,
    SourceAccount,
    PrincipalAccount,
    PrincipalArn,
    PrincipalType,
    SourceIp,
    SecureTransport,
    Unknown,
}

enum KeyValue<'a> {
    Text(&'a str),
    Ip(IpAddr),
    Bool(bool),
}

impl Key {
    fn of(name: &str) -> Key {
        match name.to_ascii_lowercase().as_str() {
            "aws:sourcearn" => Key::SourceArn,
            "aws:sourceaccount" | "aws:sourceowner" => Key::SourceAccount,
            "aws:principalaccount" => Key::PrincipalAccount,
            "aws:principalarn" => Key::PrincipalArn,
            "aws:principaltype" => Key::PrincipalType,
            "aws:sourceip" => Key::SourceIp,
            "aws:securetransport" => Key::SecureTransport,
            _ => Key::Unknown,
        }
    }

    fn value<'a>(self, request: &Request<'a>) -> Option<KeyValue<'a>> {
        match (self, request.who) {
            (Key::SourceArn, _) => request.source_arn.map(KeyValue::Text),
            (Key::SourceAccount, _) => request.source_account.map(KeyValue::Text),
            (Key::PrincipalAccount, Who::Principal { account, .. }) => Some(KeyValue::Text(account)),
            (Key::PrincipalArn, Who::Principal { arn, .. }) => Some(KeyValue::Text(arn)),
            (Key::PrincipalType, Who::Principal { .. }) => Some(KeyValue::Text("User")),
            (Key::PrincipalType, Who::Service(_)) => Some(KeyValue::Text("AWSService")),
            (Key::SourceIp, _) => request.source_ip.map(KeyValue::Ip),
            (Key::SecureTransport, _) => Some(KeyValue::Bool(request.secure)),
            _ => None,
        }
    }
}

impl Condition {
    fn holds(&self, request: &Request) -> bool {
        let value = self.key.value(request);
        if let Test::Null(absent) = self.test {
            return value.is_none() == absent;
        }
        let Some(value) = value else {
            // A negated test of a missing key holds ("not equal to any of these").
            return self.if_exists || matches!(self.test, Test::Strings { negated: true, .. } | Test::Ip { negated: true, .. });
        };
        match (&self.test, value) {
            (Test::Strings { patterns, ignore_case, negated }, KeyValue::Text(text)) => {
                let lowered;
                let text = if *ignore_case {
                    lowered = text.to_ascii_lowercase();
                    lowered.as_str()
                } else {
                    text
                };
                patterns.iter().any(|pattern| pattern.matches(text)) != *negated
            }
            (Test::Ip { blocks, negated }, KeyValue::Ip(ip)) => blocks.iter().any(|&(net, bits)| in_block(ip, net, bits)) != *negated,
            (Test::Bool(expected), KeyValue::Bool(actual)) => *expected == actual,
            (Test::Bool(expected), KeyValue::Text(text)) => text.eq_ignore_ascii_case(if *expected { "true" } else { "false" }),
            // A test of the wrong type for the key (an IP test of an ARN) never holds.
            _ => false,
        }
    }
}

fn in_block(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits as u32) };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits as u32) };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V4(_)) => ip.to_ipv4_mapped().is_some_and(|ip| in_block(IpAddr::V4(ip), net, bits)),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

impl Statement {
    fn applies(&self, request: &Request) -> bool {
        self.covers_action(request.action)
            && self.covers_resource(request.resource)
            && self.principals.include(request.who)
            && self.conditions.iter().all(|condition| condition.holds(request))
    }

    fn covers_action(&self, action: Action) -> bool {
        (self.actions & action.bit() != 0) != self.not_action
    }

    fn covers_resource(&self, resource: Option<&str>) -> bool {
        let covered = match resource {
            Some(arn) => self.resources.iter().any(|pattern| pattern.matches(arn)),
            None => self.resources.iter().any(|pattern| pattern.text == "*"),
        };
        covered != self.not_resource
    }
}

impl Principals {
    fn include(&self, who: Who) -> bool {
        match (self, who) {
            (Principals::Any, _) => true,
            (Principals::Listed { accounts, arns, .. }, Who::Principal { arn, account }) => {
                accounts.iter().any(|a| a == account) || arns.iter().any(|a| a == arn)
            }
            (Principals::Listed { services, .. }, Who::Service(service)) => services.iter().any(|s| s == service),
        }
    }
}

impl Policy {
    /// Compiles a policy document; the error says what is wrong, for the caller's error.
    pub fn parse(text: &str, kind: Kind) -> Result<Policy, String> {
        let document: Value = serde_json::from_str(text).map_err(|e| format!("the policy is not valid JSON: {e}"))?;
        Policy::compile(&document, kind)
    }

    pub fn compile(document: &Value, kind: Kind) -> Result<Policy, String> {
        let object = document.as_object().ok_or("the policy must be a JSON object")?;
        for key in object.keys() {
            if !["Version", "Id", "Statement"].contains(&key.as_str()) {
                return Err(format!("unknown policy element \"{key}\""));
            }
        }
        if let Some(version) = object.get("Version") {
            if version != "2012-10-17" && version != "2008-10-17" {
                return Err("Version must be \"2012-10-17\" or \"2008-10-17\"".into());
            }
        }
        let statements = match object.get("Statement") {
            Some(Value::Array(statements)) => statements.iter().collect(),
            Some(statement @ Value::Object(_)) => vec![statement],
            _ => return Err("the policy needs a Statement (an object or a list of them)".into()),
        };
        let statements = statements
            .into_iter()
            .enumerate()
            .map(|(index, statement)| Statement::compile(statement, kind).map_err(|e| format!("statement {index}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Policy { statements })
    }

    /// What this policy says of `request`: `Deny` if any statement that applies denies,
    /// else `Allow` if any allows, else `Silent`.
    pub fn decide(&self, request: &Request) -> Decision {
        let mut decision = Decision::Silent;
        for statement in &self.statements {
            if statement.applies(request) {
                if !statement.allow {
                    return Decision::Deny;
                }
                decision = Decision::Allow;
            }
        }
        decision
    }

    /// The statement ids (`Sid`) in order, `None` for those without one.
    pub fn sids(&self) -> impl Iterator<Item = Option<&str>> {
        self.statements.iter().map(|statement| statement.sid.as_deref())
    }
}

/// A resource's policy as it was set, and compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePolicy {
    pub text: String,
    pub compiled: std::sync::Arc<Policy>,
}

impl ResourcePolicy {
    /// Compiles a policy a client sets; the error says what is wrong.
    pub fn parse(text: &str) -> Result<ResourcePolicy, String> {
        Ok(ResourcePolicy { text: text.to_owned(), compiled: std::sync::Arc::new(Policy::parse(text, Kind::Resource)?) })
    }

    /// A policy read back from disk. One that no longer compiles (set by an earlier version
    /// that checked less) is kept as text and grants nothing, with a warning naming `owner`:
    /// the daemon starts, and the owner's principals can set a new one.
    pub fn stored(text: &str, owner: &str) -> ResourcePolicy {
        ResourcePolicy::parse(text).unwrap_or_else(|error| {
            tracing::warn!(%owner, %error, "a stored resource policy does not compile: it grants nothing until it is set again");
            ResourcePolicy { text: text.to_owned(), compiled: std::sync::Arc::new(Policy { statements: Vec::new() }) }
        })
    }
}

/// AddPermission and RemovePermission (SQS and SNS): a change to a resource's policy by
/// statement label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PermissionEdit {
    /// A statement `label` letting `account_ids` do `actions` (`SendMessage`, `*`, …).
    Add {
        label: String,
        account_ids: Vec<String>,
        actions: Vec<String>,
    },
    Remove {
        label: String,
    },
}

/// The policy after `edit`, compiled, or why it cannot be made: `current` is the resource's policy
/// (or, when it has none, `fallback`: SNS starts from a topic's default policy), `service` the
/// IAM prefix (`sqs`, `sns`). `None`: the last statement went, and with it the policy.
pub fn edit_permissions(
    current: Option<&str>,
    fallback: Option<String>,
    edit: &PermissionEdit,
    service: &str,
    resource_arn: &str,
) -> Result<Option<ResourcePolicy>, String> {
    let text = current.map(str::to_owned).or(fallback);
    let mut document: Value = match &text {
        Some(text) => serde_json::from_str(text).map_err(|_| "the resource's policy is not valid JSON".to_owned())?,
        None => {
            serde_json::json!({ "Version": "2012-10-17", "Id": format!("{resource_arn}/{}DefaultPolicy", service.to_ascii_uppercase()), "Statement": [] })
        }
    };
    let statements = match document.get_mut("Statement") {
        Some(Value::Array(statements)) => statements,
        Some(single @ Value::Object(_)) => {
            *single = Value::Array(vec![single.take()]);
            single.as_array_mut().ok_or("the policy's Statement is not a list")?
        }
        _ => return Err("the resource's policy has no Statement list".into()),
    };
    let labelled = |statement: &Value, label: &str| statement.get("Sid").and_then(Value::as_str) == Some(label);
    match edit {
        PermissionEdit::Add { label, account_ids, actions } => {
            if label.is_empty() || label.len() > 80 || !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(format!(
                    "Value {label} for parameter Label is invalid. Reason: up to 80 letters, digits, hyphens and underscores."
                ));
            }
            if statements.iter().any(|statement| labelled(statement, label)) {
                return Err(format!("Value {label} for parameter Label is invalid. Reason: Already exists."));
            }
            if account_ids.is_empty() || actions.is_empty() {
                return Err("AWSAccountIds and Actions must each name at least one.".into());
            }
            let mut principals = Vec::new();
            for account in account_ids {
                if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("Value {account} for parameter AWSAccountIds is invalid. Reason: an account id is 12 digits."));
                }
                principals.push(format!("arn:aws:iam::{account}:root"));
            }
            let mut named = Vec::new();
            for action in actions {
                if action != "*" && Action::named(&format!("{service}:{action}")).is_none() {
                    return Err(format!("Value {action} for parameter ActionName is invalid."));
                }
                named.push(format!("{}:{action}", service.to_ascii_uppercase()));
            }
            statements.push(serde_json::json!({
                "Sid": label,
                "Effect": "Allow",
                "Principal": { "AWS": principals },
                "Action": named,
                "Resource": resource_arn,
            }));
        }
        PermissionEdit::Remove { label } => {
            let before = statements.len();
            statements.retain(|statement| !labelled(statement, label));
            if statements.len() == before {
                return Err(format!("Value {label} for parameter Label is invalid. Reason: can't find label."));
            }
            if statements.is_empty() {
                return Ok(None);
            }
        }
    }
    ResourcePolicy::parse(&document.to_string()).map(Some)
}

/// A string or a list of strings, as policy elements take them.
fn strings<'a>(value: &'a Value, element: &str) -> Result<Vec<&'a str>, String> {
    match value {
        Value::String(text) => Ok(vec![text]),
        Value::Array(items) if !items.is_empty() => {
            items.iter().map(|item| item.as_str().ok_or_else(|| format!("{element} must hold strings"))).collect()
        }
        _ => Err(format!("{element} must be a string or a non-empty list of strings")),
    }
}

impl Statement {
    fn compile(value: &Value, kind: Kind) -> Result<Statement, String> {
        let object = value.as_object().ok_or("a statement must be an object")?;
        for key in object.keys() {
            if !["Sid", "Effect", "Principal", "Action", "NotAction", "Resource", "NotResource", "Condition"].contains(&key.as_str()) {
                return Err(if key == "NotPrincipal" {
                    "NotPrincipal is not supported by this server".into()
                } else {
                    format!("unknown statement element \"{key}\"")
                });
            }
        }
        let sid = match object.get("Sid") {
            None => None,
            Some(Value::String(sid)) => Some(sid.clone()),
            Some(_) => return Err("Sid must be a string".into()),
        };
        let allow = match object.get("Effect").and_then(Value::as_str) {
            Some("Allow") => true,
            Some("Deny") => false,
            _ => return Err("Effect must be \"Allow\" or \"Deny\"".into()),
        };
        let principals = match (kind, object.get("Principal")) {
            (Kind::Identity, Some(_)) => return Err("an identity policy names no Principal".into()),
            (Kind::Identity, None) => Principals::Any,
            (Kind::Resource, None) => return Err("a resource policy statement needs a Principal".into()),
            (Kind::Resource, Some(principal)) => Principals::compile(principal)?,
        };
        let (actions, not_action) = match (object.get("Action"), object.get("NotAction")) {
            (Some(actions), None) => (action_bits(&strings(actions, "Action")?), false),
            (None, Some(actions)) => (action_bits(&strings(actions, "NotAction")?), true),
            _ => return Err("a statement needs exactly one of Action and NotAction".into()),
        };
        let (resources, not_resource) = match (object.get("Resource"), object.get("NotResource")) {
            (Some(resources), None) => (strings(resources, "Resource")?, false),
            (None, Some(resources)) => (strings(resources, "NotResource")?, true),
            // A resource policy's statement is about its resource.
            (None, None) if kind == Kind::Resource => (vec!["*"], false),
            _ => return Err("a statement needs exactly one of Resource and NotResource".into()),
        };
        let resources = resources.into_iter().map(Pattern::new).collect();
        let conditions = match object.get("Condition") {
            None => Vec::new(),
            Some(block) => compile_conditions(block)?,
        };
        Ok(Statement { sid, allow, principals, actions, not_action, resources, not_resource, conditions })
    }
}

/// The actions that `patterns` (`sqs:Send*`, `*`) name, as bits of `ACTIONS`. A pattern that
/// names no action this server knows (another service's) adds nothing, as in AWS.
fn action_bits(patterns: &[&str]) -> u128 {
    let mut bits = 0;
    for pattern in patterns {
        let pattern = pattern.to_ascii_lowercase();
        for (index, action) in ACTIONS.iter().enumerate() {
            if wildcard(pattern.as_bytes(), action.to_ascii_lowercase().as_bytes()) {
                bits |= 1 << index;
            }
        }
    }
    bits
}

impl Principals {
    fn compile(value: &Value) -> Result<Principals, String> {
        if value == "*" {
            return Ok(Principals::Any);
        }
        let object = value.as_object().ok_or("Principal must be \"*\" or an object such as {\"AWS\": …}")?;
        let (mut accounts, mut arns, mut services) = (Vec::new(), Vec::new(), Vec::new());
        for (kind, names) in object {
            let names = strings(names, "Principal")?;
            match kind.as_str() {
                "AWS" => {
                    for name in names {
                        if name == "*" {
                            return Ok(Principals::Any);
                        }
                        if name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit()) {
                            accounts.push(name.to_owned());
                        } else if let Some(account) = name.strip_prefix("arn:aws:iam::").and_then(|rest| rest.strip_suffix(":root")) {
                            accounts.push(account.to_owned());
                        } else if name.starts_with("arn:") && !name.contains(['*', '?']) {
                            arns.push(name.to_owned());
                        } else {
                            return Err(format!("invalid principal \"{name}\": give an account id, an ARN or \"*\""));
                        }
                    }
                }
                "Service" => services.extend(names.into_iter().map(str::to_owned)),
                other => return Err(format!("principal type \"{other}\" is not supported (use AWS or Service)")),
            }
        }
        Ok(Principals::Listed { accounts, arns, services })
    }
}

fn compile_conditions(block: &Value) -> Result<Vec<Condition>, String> {
    let block = block.as_object().ok_or("Condition must be an object of operators")?;
    let mut conditions = Vec::new();
    for (operator, tests) in block {
        if operator.starts_with("ForAnyValue:") || operator.starts_with("ForAllValues:") {
            return Err(format!("condition operator {operator}: set operators are not supported by this server"));
        }
        let (base, if_exists) = match operator.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (operator.as_str(), false),
        };
        let tests = tests.as_object().ok_or_else(|| format!("condition operator {operator} must map keys to values"))?;
        for (key, values) in tests {
            let text_values = || strings(values, operator);
            let string_test = |ignore_case: bool, negated: bool| -> Result<Test, String> {
                let patterns = text_values()?
                    .into_iter()
                    .map(|value| {
                        let value = if ignore_case { value.to_ascii_lowercase() } else { value.to_owned() };
                        // Equality tests take `*` literally: escape by not marking them wild.
                        Pattern { wild: false, text: value }
                    })
                    .collect();
                Ok(Test::Strings { patterns, ignore_case, negated })
            };
            let like_test = |negated: bool| -> Result<Test, String> {
                Ok(Test::Strings { patterns: text_values()?.into_iter().map(Pattern::new).collect(), ignore_case: false, negated })
            };
            let test = match base {
                "StringEquals" => string_test(false, false)?,
                "StringNotEquals" => string_test(false, true)?,
                "StringEqualsIgnoreCase" => string_test(true, false)?,
                "StringNotEqualsIgnoreCase" => string_test(true, true)?,
                "StringLike" | "ArnLike" | "ArnEquals" => like_test(false)?,
                "StringNotLike" | "ArnNotLike" | "ArnNotEquals" => like_test(true)?,
                "IpAddress" | "NotIpAddress" => {
                    let blocks = text_values()?.into_iter().map(cidr).collect::<Result<_, _>>()?;
                    Test::Ip { blocks, negated: base == "NotIpAddress" }
                }
                "Bool" => Test::Bool(boolean(values, operator)?),
                "Null" if !if_exists => Test::Null(boolean(values, operator)?),
                _ => return Err(format!("condition operator {operator} is not supported by this server")),
            };
            conditions.push(Condition { test, key: Key::of(key), if_exists });
        }
    }
    Ok(conditions)
}

fn boolean(value: &Value, operator: &str) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(text) if text.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(text) if text.eq_ignore_ascii_case("false") => Ok(false),
        Value::Array(items) if items.len() == 1 => boolean(&items[0], operator),
        _ => Err(format!("condition operator {operator} takes \"true\" or \"false\"")),
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`, or one address.
fn cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let bad = || format!("\"{text}\" is not an IP address or CIDR block");
    let (address, bits) = match text.split_once('/') {
        Some((address, bits)) => (address, Some(bits.parse::<u8>().map_err(|_| bad())?)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().map_err(|_| bad())?;
    let width = if address.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(width);
    if bits > width {
        return Err(bad());
    }
    Ok((address, bits))
}

/// Whether `request` is allowed, given the principal's identity policies (`None`: the
/// account's root, which may do anything its account may), the resource's policy, and the
/// account that owns the resource. A service principal has no identity policies: only the
/// resource policy can allow it.
pub fn allowed(identity: Option<&[Policy]>, resource: Option<&Policy>, owner: &str, request: &Request) -> bool {
    let from_identity = match (request.who, identity) {
        (Who::Service(_), _) => Decision::Silent,
        (_, None) => Decision::Allow,
        (_, Some(policies)) => combine(policies.iter().map(|policy| policy.decide(request))),
    };
    let from_resource = resource.map_or(Decision::Silent, |policy| policy.decide(request));
    if from_identity == Decision::Deny || from_resource == Decision::Deny {
        return false;
    }
    let same_account = matches!(request.who, Who::Principal { account, .. } if account == owner);
    if same_account {
        from_identity == Decision::Allow || from_resource == Decision::Allow
    } else if matches!(request.who, Who::Service(_)) {
        from_resource == Decision::Allow
    } else {
        from_identity == Decision::Allow && from_resource == Decision::Allow
    }
}

/// Whether SNS may deliver `topic_arn`'s messages to a queue with `queue_policy`: the queue's
/// policy must allow `sns.amazonaws.com` to `sqs:SendMessage` to `queue_arn`, the topic as
/// `aws:SourceArn`, as in AWS.
pub fn sns_may_deliver(queue_arn: &str, queue_policy: Option<&Policy>, topic_arn: &str, account_id: &str) -> bool {
    let Some(action) = Action::named("sqs:SendMessage") else { return false };
    let request = Request {
        who: Who::Service(SNS_SERVICE),
        action,
        resource: Some(queue_arn),
        source_arn: Some(topic_arn),
        source_account: Some(account_id),
        source_ip: None,
        secure: true,
    };
    allowed(None, queue_policy, account_id, &request)
}

fn combine(decisions: impl Iterator<Item = Decision>) -> Decision {
    let mut combined = Decision::Silent;
    for decision in decisions {
        match decision {
            Decision::Deny => return Decision::Deny,
            Decision::Allow => combined = Decision::Allow,
            Decision::Silent => {}
        }
    }
    combined
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUEUE: &str = "arn:aws:sqs:us-east-1:111111111111:orders";
    const ALICE: &str = "arn:aws:iam::111111111111:user/alice";

    fn action(name: &str) -> Action {
        Action::named(name).unwrap()
    }

    fn by_alice(name: &str, resource: &str) -> Request<'static> {
        let resource: &'static str = Box::leak(resource.to_owned().into_boxed_str());
        Request {
            who: Who::Principal { arn: ALICE, account: "111111111111" },
            action: action(name),
            resource: Some(resource),
            source_arn: None,
            source_account: None,
            source_ip: Some("10.1.2.3".parse().unwrap()),
            secure: false,
        }
    }

    fn identity(text: &str) -> Policy {
        Policy::parse(text, Kind::Identity).unwrap()
    }

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(wildcard(b"*", b""));
        assert!(wildcard(b"arn:aws:sqs:*:*:ord*", QUEUE.as_bytes()));
        assert!(wildcard(b"arn:aws:sqs:us-east-1:111111111111:order?", QUEUE.as_bytes()));
        assert!(!wildcard(b"arn:aws:sqs:us-east-1:111111111111:order", QUEUE.as_bytes()));
        assert!(wildcard(b"a*b*c", b"aXbYbZc"));
        assert!(!wildcard(b"a*b*c", b"aXbYbZ"));
    }

    #[test]
    fn actions_compile_to_bits_with_wildcards_and_any_case() {
        assert_eq!(action_bits(&["sqs:Send*"]), action("sqs:SendMessage").bit());
        assert_eq!(action_bits(&["SQS:sendmessage"]), action("sqs:SendMessage").bit());
        assert_eq!(action_bits(&["*"]).count_ones() as usize, ACTIONS.len());
        assert_eq!(action_bits(&["sns:*"]).count_ones(), ACTIONS.iter().filter(|a| a.starts_with("sns:")).count() as u32);
        assert_eq!(action_bits(&["s3:GetObject"]), 0, "another service's action names nothing here");
    }

    #[test]
    fn identity_policies_allow_deny_and_explicit_deny_wins() {
        let send =
            identity(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"sqs:Send*","Resource":"arn:aws:sqs:*:*:ord*"}}"#);
        let request = by_alice("sqs:SendMessage", QUEUE);
        assert!(allowed(Some(std::slice::from_ref(&send)), None, "111111111111", &request));
        assert!(!allowed(Some(std::slice::from_ref(&send)), None, "111111111111", &by_alice("sqs:ReceiveMessage", QUEUE)));
        assert!(!allowed(
            Some(std::slice::from_ref(&send)),
            None,
            "111111111111",
            &by_alice("sqs:SendMessage", "arn:aws:sqs:us-east-1:111111111111:other")
        ));
        let deny = identity(r#"{"Statement":[{"Effect":"Deny","NotAction":"sqs:ReceiveMessage","Resource":"*"}]}"#);
        assert!(!allowed(Some(&[send.clone(), deny.clone()]), None, "111111111111", &request), "explicit deny wins");
        assert!(!allowed(Some(&[]), None, "111111111111", &request), "no policy: denied");
        assert!(allowed(None, None, "111111111111", &request), "the account root may do anything in its account");
        // Actions on no resource need "Resource": "*".
        let list = Request { resource: None, ..by_alice("sqs:ListQueues", QUEUE) };
        assert!(!allowed(Some(std::slice::from_ref(&send)), None, "111111111111", &list));
        let any = identity(r#"{"Statement":{"Effect":"Allow","Action":"sqs:List*","Resource":"*"}}"#);
        assert!(allowed(Some(&[any]), None, "111111111111", &list));
    }

    #[test]
    fn conditions_test_source_arn_account_ip_and_transport() {
        let queue_policy = Policy::parse(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"sns.amazonaws.com"},"Action":"sqs:SendMessage",
                "Resource":"arn:aws:sqs:us-east-1:111111111111:orders",
                "Condition":{"ArnLike":{"aws:SourceArn":"arn:aws:sns:us-east-1:111111111111:orders-*"}}}]}"#,
            Kind::Resource,
        )
        .unwrap();
        let delivery = |topic: &'static str| Request {
            who: Who::Service(SNS_SERVICE),
            action: action("sqs:SendMessage"),
            resource: Some(QUEUE),
            source_arn: Some(topic),
            source_account: Some("111111111111"),
            source_ip: None,
            secure: true,
        };
        assert!(allowed(None, Some(&queue_policy), "111111111111", &delivery("arn:aws:sns:us-east-1:111111111111:orders-eu")));
        assert!(!allowed(None, Some(&queue_policy), "111111111111", &delivery("arn:aws:sns:us-east-1:111111111111:payments")));
        assert!(!allowed(None, None, "111111111111", &delivery("arn:aws:sns:us-east-1:111111111111:orders-eu")), "no policy, no delivery");

        let network = identity(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*",
                "Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.168.1.1"]},"Bool":{"aws:SecureTransport":"true"},
                             "StringEquals":{"aws:PrincipalAccount":"111111111111"}}}}"#,
        );
        let plain = by_alice("sqs:SendMessage", QUEUE);
        assert!(!allowed(Some(std::slice::from_ref(&network)), None, "111111111111", &plain), "not over TLS");
        let secure = Request { secure: true, ..plain };
        assert!(allowed(Some(std::slice::from_ref(&network)), None, "111111111111", &secure));
        let elsewhere = Request { source_ip: Some("172.16.0.1".parse().unwrap()), ..secure };
        assert!(!allowed(Some(std::slice::from_ref(&network)), None, "111111111111", &elsewhere));
        let mapped = Request { source_ip: Some("::ffff:10.9.9.9".parse().unwrap()), ..secure };
        assert!(allowed(Some(std::slice::from_ref(&network)), None, "111111111111", &mapped), "IPv4-mapped IPv6 addresses");

        let negated = identity(
            r#"{"Statement":{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringNotEquals":{"aws:SourceArn":"x"}}}}"#,
        );
        assert_eq!(negated.decide(&plain), Decision::Deny, "a negated test of a missing key holds");
        let exists = identity(
            r#"{"Statement":{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEqualsIfExists":{"aws:SourceArn":"x"}}}}"#,
        );
        assert_eq!(exists.decide(&plain), Decision::Deny);
        let null =
            identity(r#"{"Statement":{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"Null":{"aws:SourceArn":"false"}}}}"#);
        assert_eq!(null.decide(&plain), Decision::Silent);
    }

    #[test]
    fn cross_account_needs_both_sides() {
        let bob = Request {
            who: Who::Principal { arn: "arn:aws:iam::222222222222:user/bob", account: "222222222222" },
            ..by_alice("sqs:SendMessage", QUEUE)
        };
        let grant = Policy::parse(
            r#"{"Statement":{"Sid":"bob","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":"SQS:SendMessage","Resource":"arn:aws:sqs:us-east-1:111111111111:orders"}}"#,
            Kind::Resource,
        )
        .unwrap();
        let bob_may_send = identity(r#"{"Statement":{"Effect":"Allow","Action":"sqs:SendMessage","Resource":"*"}}"#);
        assert!(allowed(Some(std::slice::from_ref(&bob_may_send)), Some(&grant), "111111111111", &bob));
        assert!(!allowed(Some(std::slice::from_ref(&bob_may_send)), None, "111111111111", &bob), "the queue does not allow it");
        assert!(!allowed(Some(&[]), Some(&grant), "111111111111", &bob), "bob's account does not allow it");
        assert!(allowed(None, Some(&grant), "111111111111", &bob), "bob's account root may, with the grant");
        assert_eq!(grant.sids().collect::<Vec<_>>(), [Some("bob")]);
    }

    #[test]
    fn permissions_are_added_and_removed_by_label() {
        let add = |label: &str, actions: &[&str]| PermissionEdit::Add {
            label: label.into(),
            account_ids: vec!["222222222222".into()],
            actions: actions.iter().map(|a| a.to_string()).collect(),
        };
        let added = edit_permissions(None, None, &add("bob", &["SendMessage"]), "sqs", QUEUE).unwrap().unwrap();
        let (text, policy) = (added.text, added.compiled);
        let bob = Request {
            who: Who::Principal { arn: "arn:aws:iam::222222222222:user/bob", account: "222222222222" },
            ..by_alice("sqs:SendMessage", QUEUE)
        };
        assert_eq!(policy.decide(&bob), Decision::Allow);
        assert!(edit_permissions(Some(&text), None, &add("bob", &["*"]), "sqs", QUEUE).unwrap_err().contains("Already exists"));
        assert!(edit_permissions(Some(&text), None, &add("x", &["Fly"]), "sqs", QUEUE).unwrap_err().contains("ActionName"));
        let two = edit_permissions(Some(&text), None, &add("all", &["*"]), "sqs", QUEUE).unwrap().unwrap().text;
        let one = edit_permissions(Some(&two), None, &PermissionEdit::Remove { label: "bob".into() }, "sqs", QUEUE).unwrap().unwrap().text;
        assert_eq!(Policy::parse(&one, Kind::Resource).unwrap().sids().collect::<Vec<_>>(), [Some("all")]);
        assert_eq!(edit_permissions(Some(&one), None, &PermissionEdit::Remove { label: "all".into() }, "sqs", QUEUE).unwrap(), None);
        assert!(edit_permissions(Some(&one), None, &PermissionEdit::Remove { label: "nobody".into() }, "sqs", QUEUE)
            .unwrap_err()
            .contains("can't find"));
    }

    #[test]
    fn malformed_policies_say_what_is_wrong() {
        let error = |text: &str, kind| Policy::parse(text, kind).unwrap_err();
        assert!(error("[]", Kind::Identity).contains("object"));
        assert!(error(r#"{"Statement":{"Effect":"Maybe","Action":"*","Resource":"*"}}"#, Kind::Identity).contains("Effect"));
        assert!(error(r#"{"Statement":{"Effect":"Allow","Action":"*"}}"#, Kind::Identity).contains("Resource"));
        assert!(error(r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#, Kind::Resource).contains("Principal"));
        assert!(
            error(r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}}"#, Kind::Identity).contains("Principal")
        );
        assert!(error(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"2030-01-01"}}}}"#,
            Kind::Identity
        )
        .contains("DateLessThan"));
        assert!(error(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/40"}}}}"#,
            Kind::Identity
        )
        .contains("CIDR"));
        assert!(error(r#"{"Version":"2020-01-01","Statement":[]}"#, Kind::Identity).contains("Version"));
    }
}
