//! SNS over HTTP: the Query protocol (form fields or a GET query string, XML answers).
//!
//! A subscription's SubscribeURL and a notification's UnsubscribeURL point here too:
//! they are GETs of `ConfirmSubscription` and `Unsubscribe`.

use bytes::Bytes;
use sluice_protocol::{ErrorCode, Op, OpError, PublishEntry, Reply};

use super::params::Params;
use super::xml::Xml;

pub const NAMESPACE: &str = "http://sns.amazonaws.com/doc/2010-03-31/";

/// Every SNS action the topic engine serves.
pub const ACTIONS: &[&str] = &[
    "CreateTopic",
    "DeleteTopic",
    "ListTopics",
    "GetTopicAttributes",
    "SetTopicAttributes",
    "Subscribe",
    "ConfirmSubscription",
    "Unsubscribe",
    "ListSubscriptions",
    "ListSubscriptionsByTopic",
    "GetSubscriptionAttributes",
    "SetSubscriptionAttributes",
    "Publish",
    "PublishBatch",
    "AddPermission",
    "RemovePermission",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
];

pub fn op_from(action: &str, p: Params<'_>) -> Result<Op, OpError> {
    Ok(match action {
        "CreateTopic" => Op::CreateTopic { name: p.required("Name")?, attributes: p.string_map("Attributes")?, tags: p.tag_list("Tags")? },
        "DeleteTopic" => Op::DeleteTopic { topic: p.required("TopicArn")? },
        "AddPermission" => Op::AddTopicPermission {
            topic: p.required("TopicArn")?,
            label: p.required("Label")?,
            account_ids: p.strings("AWSAccountId")?,
            actions: p.strings("ActionName")?,
        },
        "RemovePermission" => Op::RemoveTopicPermission { topic: p.required("TopicArn")?, label: p.required("Label")? },
        "TagResource" => Op::TagTopic { topic: p.required("ResourceArn")?, tags: p.tag_list("Tags")? },
        "UntagResource" => Op::UntagTopic { topic: p.required("ResourceArn")?, keys: p.strings("TagKeys")? },
        "ListTagsForResource" => Op::ListTopicTags { topic: p.required("ResourceArn")? },
        "ListTopics" => Op::ListTopics { next_token: p.string("NextToken")? },
        "GetTopicAttributes" => Op::GetTopicAttributes { topic: p.required("TopicArn")? },
        "SetTopicAttributes" => Op::SetTopicAttributes {
            topic: p.required("TopicArn")?,
            name: p.required("AttributeName")?,
            value: p.string("AttributeValue")?,
        },
        "Subscribe" => Op::Subscribe {
            topic: p.required("TopicArn")?,
            protocol: p.required("Protocol")?,
            endpoint: p.string("Endpoint")?,
            attributes: p.string_map("Attributes")?,
            return_subscription_arn: p.bool("ReturnSubscriptionArn")?.unwrap_or(false),
        },
        "ConfirmSubscription" => Op::ConfirmSubscription {
            topic: p.required("TopicArn")?,
            token: p.required("Token")?,
            authenticate_on_unsubscribe: p.bool("AuthenticateOnUnsubscribe")?.unwrap_or(false),
        },
        "Unsubscribe" => Op::Unsubscribe { subscription: p.required("SubscriptionArn")? },
        "ListSubscriptions" => Op::ListSubscriptions { topic: None, next_token: p.string("NextToken")? },
        "ListSubscriptionsByTopic" => Op::ListSubscriptions { topic: Some(p.required("TopicArn")?), next_token: p.string("NextToken")? },
        "GetSubscriptionAttributes" => Op::GetSubscriptionAttributes { subscription: p.required("SubscriptionArn")? },
        "SetSubscriptionAttributes" => Op::SetSubscriptionAttributes {
            subscription: p.required("SubscriptionArn")?,
            name: p.required("AttributeName")?,
            value: p.string("AttributeValue")?,
        },
        "Publish" => {
            if p.has("PhoneNumber") {
                return Err(OpError::new(ErrorCode::InvalidParameter, "Invalid parameter: PhoneNumber (SMS is not served here)"));
            }
            let topic = match (p.string("TopicArn")?, p.string("TargetArn")?) {
                (Some(topic), None) | (None, Some(topic)) => topic,
                (Some(_), Some(_)) => {
                    return Err(OpError::new(
                        ErrorCode::InvalidParameter,
                        "Invalid parameter: only one of TopicArn and TargetArn may be given",
                    ))
                }
                (None, None) => {
                    return Err(OpError::new(ErrorCode::InvalidParameter, "Invalid parameter: TopicArn or TargetArn is required"))
                }
            };
            Op::Publish { topic, entry: publish_entry(p, String::new())? }
        }
        "PublishBatch" => {
            let entries = p
                .objects("PublishBatchRequestEntries")?
                .into_iter()
                .map(|entry| publish_entry(entry, entry.required("Id")?))
                .collect::<Result<_, _>>()?;
            Op::PublishBatch { topic: p.required("TopicArn")?, entries }
        }
        other => return Err(OpError::new(ErrorCode::InvalidAction, format!("The action {other} is not valid for this endpoint."))),
    })
}

fn publish_entry(p: Params<'_>, id: String) -> Result<PublishEntry, OpError> {
    Ok(PublishEntry {
        id,
        message: Bytes::from(p.required("Message")?),
        subject: p.string("Subject")?,
        message_structure: p.string("MessageStructure")?,
        attributes: p.message_attributes("MessageAttributes")?,
        message_group_id: p.string("MessageGroupId")?,
        deduplication_id: p.string("MessageDeduplicationId")?,
    })
}

/// The SNS error code a client sees for an engine error.
pub fn error_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InternalFailure => "InternalError",
        ErrorCode::ServiceUnavailable => "ServiceUnavailable",
        ErrorCode::AccessDenied => "AuthorizationError",
        ErrorCode::KmsNotFound => "KMSNotFound",
        ErrorCode::KmsDisabled => "KMSDisabled",
        ErrorCode::KmsInvalidState => "KMSInvalidState",
        ErrorCode::KmsAccessDenied => "KMSAccessDenied",
        other => other.aws_name(),
    }
}

pub fn xml_reply(action: &str, reply: Reply, request_id: &str) -> String {
    if matches!(reply, Reply::Done) {
        // Actions whose empty answer SNS still wraps in a result element.
        let wrapped = matches!(action, "TagResource" | "UntagResource");
        return Xml::new(action, NAMESPACE, wrapped).finish(request_id);
    }
    let mut xml = Xml::new(action, NAMESPACE, true);
    match reply {
        Reply::Arn(arn) => {
            let element = if action == "CreateTopic" { "TopicArn" } else { "SubscriptionArn" };
            xml.leaf(element, &arn);
        }
        Reply::Arns { arns, next_token } => {
            xml.open("Topics");
            for arn in &arns {
                xml.open("member").leaf("TopicArn", arn).close("member");
            }
            xml.close("Topics").leaf_opt("NextToken", next_token.as_deref());
        }
        Reply::Attributes(pairs) if action == "ListTagsForResource" => {
            xml.open("Tags");
            for (key, value) in &pairs {
                xml.open("member").leaf("Key", key).leaf("Value", value).close("member");
            }
            xml.close("Tags");
        }
        Reply::Attributes(pairs) => {
            xml.open("Attributes");
            for (key, value) in &pairs {
                xml.open("entry").leaf("key", key).leaf("value", value).close("entry");
            }
            xml.close("Attributes");
        }
        Reply::Subscriptions { subscriptions, next_token } => {
            xml.open("Subscriptions");
            for subscription in &subscriptions {
                xml.open("member")
                    .leaf("SubscriptionArn", &subscription.subscription_arn)
                    .leaf("Owner", &subscription.owner)
                    .leaf("Protocol", &subscription.protocol)
                    .leaf("Endpoint", &subscription.endpoint)
                    .leaf("TopicArn", &subscription.topic_arn)
                    .close("member");
            }
            xml.close("Subscriptions").leaf_opt("NextToken", next_token.as_deref());
        }
        Reply::Publish(result) => {
            xml.leaf("MessageId", &result.message_id).leaf_opt("SequenceNumber", result.sequence_number.as_deref());
        }
        Reply::PublishBatch { successful, failed } => {
            xml.open("Successful");
            for result in &successful {
                xml.open("member")
                    .leaf("Id", &result.id)
                    .leaf("MessageId", &result.message_id)
                    .leaf_opt("SequenceNumber", result.sequence_number.as_deref())
                    .close("member");
            }
            xml.close("Successful").open("Failed");
            for failure in &failed {
                xml.open("member")
                    .leaf("Id", &failure.id)
                    .leaf("Code", error_code(failure.code))
                    .leaf("Message", &failure.message)
                    .leaf("SenderFault", if failure.sender_fault { "true" } else { "false" })
                    .close("member");
            }
            xml.close("Failed");
        }
        _ => {}
    }
    xml.finish(request_id)
}
