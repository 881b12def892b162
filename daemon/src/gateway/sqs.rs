//! SQS over HTTP: AWS JSON 1.0 (`X-Amz-Target: AmazonSQS.<Action>`) and the Query protocol
//! (form fields, XML answers). Both read the same parameter tree (`params`), build the
//! same `Op` the binary protocol carries, and render the engine's `Reply` in their own shape.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use sluice_protocol::{
    BatchFailure, DeleteEntry, ErrorCode, MessageAttribute, Op, OpError, ReceiveMessage, Reply, SendEntry, VisibilityEntry,
};

use super::params::{Params, Shape};
use super::xml::Xml;

pub const NAMESPACE: &str = "http://queue.amazonaws.com/doc/2012-11-05/";

/// SQS Query names that are flattened lists or maps, and their JSON members.
pub const QUERY_RENAMES: &[(&str, &str, Shape)] = &[
    ("Attribute", "Attributes", Shape::Map),
    ("Tag", "Tags", Shape::Map),
    ("MessageAttribute", "MessageAttributes", Shape::Map),
    ("MessageSystemAttribute", "MessageSystemAttributes", Shape::Map),
    ("AttributeName", "AttributeNames", Shape::List),
    ("MessageAttributeName", "MessageAttributeNames", Shape::List),
    ("MessageSystemAttributeName", "MessageSystemAttributeNames", Shape::List),
    ("TagKey", "TagKeys", Shape::List),
    ("AWSAccountId", "AWSAccountIds", Shape::List),
    ("ActionName", "Actions", Shape::List),
    ("SendMessageBatchRequestEntry", "Entries", Shape::List),
    ("DeleteMessageBatchRequestEntry", "Entries", Shape::List),
    ("ChangeMessageVisibilityBatchRequestEntry", "Entries", Shape::List),
];

/// Every SQS action the queue engine serves.
pub const ACTIONS: &[&str] = &[
    "CreateQueue",
    "GetQueueUrl",
    "ListQueues",
    "DeleteQueue",
    "PurgeQueue",
    "GetQueueAttributes",
    "SetQueueAttributes",
    "TagQueue",
    "UntagQueue",
    "ListQueueTags",
    "AddPermission",
    "RemovePermission",
    "ListDeadLetterSourceQueues",
    "SendMessage",
    "SendMessageBatch",
    "ReceiveMessage",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "StartMessageMoveTask",
    "CancelMessageMoveTask",
    "ListMessageMoveTasks",
];

pub fn op_from(action: &str, p: Params<'_>) -> Result<Op, OpError> {
    let queue = || p.required("QueueUrl");
    Ok(match action {
        "CreateQueue" => {
            let mut tags = p.string_map("tags")?;
            tags.extend(p.string_map("Tags")?);
            Op::CreateQueue { name: p.required("QueueName")?, attributes: p.string_map("Attributes")?, tags }
        }
        "GetQueueUrl" => Op::GetQueueUrl { name: p.required("QueueName")?, owner: p.string("QueueOwnerAWSAccountId")? },
        "ListQueues" => {
            Op::ListQueues { prefix: p.string("QueueNamePrefix")?, max_results: p.int("MaxResults")?, next_token: p.string("NextToken")? }
        }
        "DeleteQueue" => Op::DeleteQueue { queue: queue()? },
        "PurgeQueue" => Op::PurgeQueue { queue: queue()? },
        "GetQueueAttributes" => Op::GetQueueAttributes { queue: queue()?, names: p.strings("AttributeNames")? },
        "SetQueueAttributes" => Op::SetQueueAttributes { queue: queue()?, attributes: p.string_map("Attributes")? },
        "TagQueue" => Op::TagQueue { queue: queue()?, tags: p.string_map("Tags")? },
        "UntagQueue" => Op::UntagQueue { queue: queue()?, keys: p.strings("TagKeys")? },
        "ListQueueTags" => Op::ListQueueTags { queue: queue()? },
        "AddPermission" => Op::AddPermission {
            queue: queue()?,
            label: p.required("Label")?,
            account_ids: p.strings("AWSAccountIds")?,
            actions: p.strings("Actions")?,
        },
        "RemovePermission" => Op::RemovePermission { queue: queue()?, label: p.required("Label")? },
        "ListDeadLetterSourceQueues" => {
            Op::ListDeadLetterSourceQueues { queue: queue()?, max_results: p.int("MaxResults")?, next_token: p.string("NextToken")? }
        }
        "SendMessage" => Op::SendMessage { queue: queue()?, entry: send_entry(p, String::new())? },
        "SendMessageBatch" => {
            let entries =
                p.objects("Entries")?.into_iter().map(|entry| send_entry(entry, entry.required("Id")?)).collect::<Result<_, _>>()?;
            Op::SendMessageBatch { queue: queue()?, entries }
        }
        "ReceiveMessage" => {
            let mut system_attribute_names = p.strings("AttributeNames")?;
            system_attribute_names.extend(p.strings("MessageSystemAttributeNames")?);
            Op::ReceiveMessage(ReceiveMessage {
                queue: queue()?,
                max_messages: p.int("MaxNumberOfMessages")?,
                wait_time_seconds: p.int("WaitTimeSeconds")?,
                visibility_timeout: p.int("VisibilityTimeout")?,
                system_attribute_names,
                message_attribute_names: p.strings("MessageAttributeNames")?,
                receive_request_attempt_id: p.string("ReceiveRequestAttemptId")?,
            })
        }
        "DeleteMessage" => Op::DeleteMessage { queue: queue()?, receipt_handle: p.required("ReceiptHandle")? },
        "DeleteMessageBatch" => {
            let entries = p
                .objects("Entries")?
                .into_iter()
                .map(|entry| Ok(DeleteEntry { id: entry.required("Id")?, receipt_handle: entry.required("ReceiptHandle")? }))
                .collect::<Result<_, OpError>>()?;
            Op::DeleteMessageBatch { queue: queue()?, entries }
        }
        "ChangeMessageVisibility" => Op::ChangeMessageVisibility {
            queue: queue()?,
            receipt_handle: p.required("ReceiptHandle")?,
            visibility_timeout: p.required_int("VisibilityTimeout")?,
        },
        "ChangeMessageVisibilityBatch" => {
            let entries = p
                .objects("Entries")?
                .into_iter()
                .map(|entry| {
                    Ok(VisibilityEntry {
                        id: entry.required("Id")?,
                        receipt_handle: entry.required("ReceiptHandle")?,
                        visibility_timeout: entry.required_int("VisibilityTimeout")?,
                    })
                })
                .collect::<Result<_, OpError>>()?;
            Op::ChangeMessageVisibilityBatch { queue: queue()?, entries }
        }
        "StartMessageMoveTask" => Op::StartMessageMoveTask {
            source_arn: p.required("SourceArn")?,
            destination_arn: p.string("DestinationArn")?,
            max_per_second: p.int("MaxNumberOfMessagesPerSecond")?,
        },
        "CancelMessageMoveTask" => Op::CancelMessageMoveTask { task_handle: p.required("TaskHandle")? },
        "ListMessageMoveTasks" => Op::ListMessageMoveTasks { source_arn: p.required("SourceArn")?, max_results: p.int("MaxResults")? },
        other => return Err(unknown_action(other)),
    })
}

/// A move task as ListMessageMoveTasks answers it: (member, value) pairs, absent ones left out.
fn move_task_fields(task: &sluice_protocol::MoveTaskDescription) -> Vec<(&'static str, Value)> {
    let mut fields = Vec::new();
    if let Some(handle) = &task.task_handle {
        fields.push(("TaskHandle", json!(handle)));
    }
    fields.push(("Status", json!(task.status)));
    fields.push(("SourceArn", json!(task.source_arn)));
    if let Some(destination) = &task.destination_arn {
        fields.push(("DestinationArn", json!(destination)));
    }
    if let Some(rate) = task.max_per_second {
        fields.push(("MaxNumberOfMessagesPerSecond", json!(rate)));
    }
    fields.push(("ApproximateNumberOfMessagesMoved", json!(task.moved)));
    fields.push(("ApproximateNumberOfMessagesToMove", json!(task.to_move)));
    if let Some(reason) = &task.failure_reason {
        fields.push(("FailureReason", json!(reason)));
    }
    fields.push(("StartedTimestamp", json!(task.started_ms)));
    fields
}

pub fn unknown_action(action: &str) -> OpError {
    OpError::new(ErrorCode::InvalidAction, format!("The action {action} is not valid for this endpoint."))
}

fn send_entry(p: Params<'_>, id: String) -> Result<SendEntry, OpError> {
    Ok(SendEntry {
        id,
        body: Bytes::from(p.required("MessageBody")?),
        delay_seconds: p.int("DelaySeconds")?,
        attributes: p.message_attributes("MessageAttributes")?,
        system_attributes: p.message_attributes("MessageSystemAttributes")?,
        message_group_id: p.string("MessageGroupId")?,
        deduplication_id: p.string("MessageDeduplicationId")?,
    })
}

/// `{"Successful": [...], "Failed": [...]}`, moving the entries in (`json!` would copy them).
fn batch_json(successful: Vec<Value>, failed: Vec<Value>) -> Value {
    Value::Object(Map::from_iter([("Successful".to_owned(), Value::Array(successful)), ("Failed".to_owned(), Value::Array(failed))]))
}

/// The AWS JSON 1.0 answer to a successful action.
pub fn json_reply(action: &str, reply: Reply) -> Value {
    match reply {
        Reply::QueueUrl(url) => json!({ "QueueUrl": url }),
        Reply::QueueUrls { queue_urls, next_token } => {
            let mut out = Map::new();
            if action == "ListDeadLetterSourceQueues" {
                out.insert("queueUrls".into(), json!(queue_urls));
            } else if !queue_urls.is_empty() {
                out.insert("QueueUrls".into(), json!(queue_urls));
            }
            if let Some(token) = next_token {
                out.insert("NextToken".into(), json!(token));
            }
            Value::Object(out)
        }
        Reply::Attributes(pairs) if action == "StartMessageMoveTask" => json!({ "TaskHandle": pairs.into_iter().next().map(|(_, v)| v) }),
        Reply::Attributes(pairs) if action == "CancelMessageMoveTask" => {
            let moved = pairs.into_iter().next().and_then(|(_, v)| v.parse::<i64>().ok()).unwrap_or(0);
            json!({ "ApproximateNumberOfMessagesMoved": moved })
        }
        Reply::MoveTasks(tasks) => {
            let results: Vec<Value> = tasks
                .iter()
                .map(|task| Value::Object(move_task_fields(task).into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
                .collect();
            json!({ "Results": results })
        }
        Reply::Attributes(pairs) => {
            let map: Map<String, Value> = pairs.into_iter().map(|(key, value)| (key, Value::String(value))).collect();
            if action == "ListQueueTags" {
                json!({ "Tags": map })
            } else {
                json!({ "Attributes": map })
            }
        }
        Reply::SendMessage(result) => send_result_json(&result, false),
        Reply::SendMessageBatch { successful, failed } => {
            batch_json(successful.iter().map(|result| send_result_json(result, true)).collect(), failed.iter().map(failure_json).collect())
        }
        Reply::ReceiveMessage(messages) => {
            if messages.is_empty() {
                return json!({});
            }
            let messages: Vec<Value> = messages
                .into_iter()
                .map(|message| {
                    let mut out = Map::new();
                    out.insert("MessageId".into(), json!(message.message_id));
                    out.insert("ReceiptHandle".into(), json!(message.receipt_handle));
                    out.insert("MD5OfBody".into(), json!(message.md5_of_body));
                    out.insert("Body".into(), Value::String(String::from_utf8_lossy(&message.body).into_owned()));
                    if !message.attributes.is_empty() {
                        let map: Map<String, Value> = message.attributes.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                        out.insert("Attributes".into(), Value::Object(map));
                    }
                    if let Some(md5) = message.md5_of_attributes {
                        out.insert("MD5OfMessageAttributes".into(), json!(md5));
                    }
                    if !message.message_attributes.is_empty() {
                        out.insert("MessageAttributes".into(), attributes_json(&message.message_attributes));
                    }
                    Value::Object(out)
                })
                .collect();
            Value::Object(Map::from_iter([("Messages".to_owned(), Value::Array(messages))]))
        }
        Reply::Batch { successful, failed } => {
            batch_json(successful.iter().map(|id| json!({ "Id": id })).collect(), failed.iter().map(failure_json).collect())
        }
        _ => json!({}),
    }
}

fn send_result_json(result: &sluice_protocol::SendResult, with_id: bool) -> Value {
    let mut out = Map::new();
    if with_id {
        out.insert("Id".into(), json!(result.id));
    }
    out.insert("MessageId".into(), json!(result.message_id));
    out.insert("MD5OfMessageBody".into(), json!(result.md5_of_body));
    if let Some(md5) = &result.md5_of_attributes {
        out.insert("MD5OfMessageAttributes".into(), json!(md5));
    }
    if let Some(md5) = &result.md5_of_system_attributes {
        out.insert("MD5OfMessageSystemAttributes".into(), json!(md5));
    }
    if let Some(sequence) = &result.sequence_number {
        out.insert("SequenceNumber".into(), json!(sequence));
    }
    Value::Object(out)
}

pub fn failure_json(failure: &BatchFailure) -> Value {
    json!({ "Id": failure.id, "SenderFault": failure.sender_fault, "Code": failure.code.aws_name(), "Message": failure.message })
}

/// Message attributes as `{name: {DataType, StringValue | BinaryValue}}`.
pub fn attributes_json(attributes: &[MessageAttribute]) -> Value {
    let map: Map<String, Value> = attributes
        .iter()
        .map(|attribute| {
            let mut value = Map::new();
            value.insert("DataType".into(), json!(attribute.data_type));
            if let Some(text) = &attribute.string_value {
                value.insert("StringValue".into(), json!(text));
            }
            if let Some(bytes) = &attribute.binary_value {
                value.insert("BinaryValue".into(), json!(STANDARD.encode(bytes)));
            }
            (attribute.name.clone(), Value::Object(value))
        })
        .collect();
    Value::Object(map)
}

/// The Query-protocol XML answer to a successful action.
pub fn xml_reply(action: &str, reply: Reply, request_id: &str) -> String {
    if matches!(reply, Reply::Done) {
        return Xml::new(action, NAMESPACE, false).finish(request_id);
    }
    let mut xml = Xml::new(action, NAMESPACE, true);
    match reply {
        Reply::QueueUrl(url) => {
            xml.leaf("QueueUrl", &url);
        }
        Reply::QueueUrls { queue_urls, next_token } => {
            for url in &queue_urls {
                xml.leaf("QueueUrl", url);
            }
            xml.leaf_opt("NextToken", next_token.as_deref());
        }
        Reply::Attributes(pairs) if matches!(action, "StartMessageMoveTask" | "CancelMessageMoveTask") => {
            for (name, value) in &pairs {
                xml.leaf(name, value);
            }
        }
        Reply::MoveTasks(tasks) => {
            for task in &tasks {
                xml.open("ListMessageMoveTasksResultEntry");
                for (name, value) in move_task_fields(task) {
                    let text = match value {
                        Value::String(text) => text,
                        other => other.to_string(),
                    };
                    xml.leaf(name, &text);
                }
                xml.close("ListMessageMoveTasksResultEntry");
            }
        }
        Reply::Attributes(pairs) => {
            let (element, key) = if action == "ListQueueTags" { ("Tag", "Key") } else { ("Attribute", "Name") };
            for (name, value) in &pairs {
                xml.open(element).leaf(key, name).leaf("Value", value).close(element);
            }
        }
        Reply::SendMessage(result) => send_result_xml(&mut xml, &result, false),
        Reply::SendMessageBatch { successful, failed } => {
            for result in &successful {
                xml.open("SendMessageBatchResultEntry");
                send_result_xml(&mut xml, result, true);
                xml.close("SendMessageBatchResultEntry");
            }
            failures_xml(&mut xml, &failed);
        }
        Reply::ReceiveMessage(messages) => {
            for message in &messages {
                xml.open("Message")
                    .leaf("MessageId", &message.message_id)
                    .leaf("ReceiptHandle", &message.receipt_handle)
                    .leaf("MD5OfBody", &message.md5_of_body)
                    .leaf("Body", &String::from_utf8_lossy(&message.body));
                for (name, value) in &message.attributes {
                    xml.open("Attribute").leaf("Name", name).leaf("Value", value).close("Attribute");
                }
                xml.leaf_opt("MD5OfMessageAttributes", message.md5_of_attributes.as_deref());
                for attribute in &message.message_attributes {
                    xml.open("MessageAttribute").leaf("Name", &attribute.name).open("Value");
                    xml.leaf_opt("StringValue", attribute.string_value.as_deref());
                    if let Some(bytes) = &attribute.binary_value {
                        xml.leaf("BinaryValue", &STANDARD.encode(bytes));
                    }
                    xml.leaf("DataType", &attribute.data_type).close("Value").close("MessageAttribute");
                }
                xml.close("Message");
            }
        }
        Reply::Batch { successful, failed } => {
            let element = format!("{action}ResultEntry");
            for id in &successful {
                xml.open(&element).leaf("Id", id).close(&element);
            }
            failures_xml(&mut xml, &failed);
        }
        _ => {}
    }
    xml.finish(request_id)
}

fn send_result_xml(xml: &mut Xml, result: &sluice_protocol::SendResult, with_id: bool) {
    if with_id {
        xml.leaf("Id", &result.id);
    }
    xml.leaf("MessageId", &result.message_id)
        .leaf("MD5OfMessageBody", &result.md5_of_body)
        .leaf_opt("MD5OfMessageAttributes", result.md5_of_attributes.as_deref())
        .leaf_opt("MD5OfMessageSystemAttributes", result.md5_of_system_attributes.as_deref())
        .leaf_opt("SequenceNumber", result.sequence_number.as_deref());
}

fn failures_xml(xml: &mut Xml, failed: &[BatchFailure]) {
    for failure in failed {
        xml.open("BatchResultErrorEntry")
            .leaf("Id", &failure.id)
            .leaf("SenderFault", if failure.sender_fault { "true" } else { "false" })
            .leaf("Code", failure.code.aws_name())
            .leaf("Message", &failure.message)
            .close("BatchResultErrorEntry");
    }
}

/// The name SQS's JSON protocol gives an error (`__type` after `com.amazonaws.sqs#`).
pub fn error_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::KmsNotFound => "KmsNotFound",
        ErrorCode::KmsDisabled => "KmsDisabled",
        ErrorCode::KmsInvalidState => "KmsInvalidState",
        ErrorCode::KmsAccessDenied => "KmsAccessDenied",
        other => other.aws_name(),
    }
}
