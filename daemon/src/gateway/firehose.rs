//! Firehose over HTTP: AWS JSON 1.1 (`X-Amz-Target: Firehose_20150804.<Action>`), record data
//! as base64, timestamps as epoch seconds. Configurations go to the daemon as the JSON they
//! came in (`Op::CreateDeliveryStream::configuration`), checked there.

use serde_json::{json, Map, Value};
use sluice_protocol::{ErrorCode, Op, OpError, Reply};

use super::params::{Faults, Params};

pub const TARGET_PREFIX: &str = "Firehose_20150804";
pub const FAULTS: Faults = Faults { missing: ErrorCode::InvalidArgument, invalid: ErrorCode::InvalidArgument };

/// What CreateDeliveryStream carries besides its name and tags: the configuration.
const CONFIGURATION: &[&str] = &[
    "DeliveryStreamType",
    "KinesisStreamSourceConfiguration",
    "DeliveryStreamEncryptionConfigurationInput",
    "S3DestinationConfiguration",
    "ExtendedS3DestinationConfiguration",
    "RedshiftDestinationConfiguration",
    "ElasticsearchDestinationConfiguration",
    "AmazonopensearchserviceDestinationConfiguration",
    "SplunkDestinationConfiguration",
    "HttpEndpointDestinationConfiguration",
    "AmazonOpenSearchServerlessDestinationConfiguration",
    "MSKSourceConfiguration",
    "SnowflakeDestinationConfiguration",
    "IcebergDestinationConfiguration",
    "DatabaseSourceConfiguration",
];

/// What UpdateDestination carries besides its names and version: the destination update.
const UPDATE: &[&str] = &[
    "S3DestinationUpdate",
    "ExtendedS3DestinationUpdate",
    "RedshiftDestinationUpdate",
    "ElasticsearchDestinationUpdate",
    "AmazonopensearchserviceDestinationUpdate",
    "SplunkDestinationUpdate",
    "HttpEndpointDestinationUpdate",
    "AmazonOpenSearchServerlessDestinationUpdate",
    "SnowflakeDestinationUpdate",
    "IcebergDestinationUpdate",
];

fn gather(p: &Params<'_>, names: &[&str]) -> String {
    let mut configuration = Map::new();
    for name in names {
        if let Some(value) = p.raw(name) {
            configuration.insert((*name).to_owned(), value.clone());
        }
    }
    Value::Object(configuration).to_string()
}

fn record(p: Params<'_>) -> Result<bytes::Bytes, OpError> {
    p.blob("Data")?.ok_or_else(|| OpError::new(ErrorCode::InvalidArgument, "A record needs Data."))
}

pub fn op_from(action: &str, p: Params<'_>) -> Result<Op, OpError> {
    let name = || p.required("DeliveryStreamName");
    Ok(match action {
        "CreateDeliveryStream" => {
            Op::CreateDeliveryStream { name: name()?, configuration: gather(&p, CONFIGURATION), tags: p.tag_list("Tags")? }
        }
        "DeleteDeliveryStream" => {
            Op::DeleteDeliveryStream { name: name()?, allow_force_delete: p.bool("AllowForceDelete")?.unwrap_or(false) }
        }
        "DescribeDeliveryStream" => Op::DescribeDeliveryStream {
            name: name()?,
            limit: p.int("Limit")?,
            exclusive_start_destination_id: p.string("ExclusiveStartDestinationId")?,
        },
        "ListDeliveryStreams" => Op::ListDeliveryStreams {
            limit: p.int("Limit")?,
            stream_type: p.string("DeliveryStreamType")?,
            exclusive_start_name: p.string("ExclusiveStartDeliveryStreamName")?,
        },
        "PutRecord" => {
            let record = p.object("Record")?.ok_or_else(|| OpError::new(ErrorCode::InvalidArgument, "PutRecord needs a Record."))?;
            Op::PutFirehoseRecords { name: name()?, records: vec![self::record(record)?], batch: false }
        }
        "PutRecordBatch" => {
            let records = p.objects("Records")?.into_iter().map(record).collect::<Result<_, _>>()?;
            Op::PutFirehoseRecords { name: name()?, records, batch: true }
        }
        "UpdateDestination" => Op::UpdateDestination {
            name: name()?,
            current_version_id: p.required("CurrentDeliveryStreamVersionId")?,
            destination_id: p.required("DestinationId")?,
            configuration: gather(&p, UPDATE),
        },
        "TagDeliveryStream" => Op::TagDeliveryStream { name: name()?, tags: p.tag_list("Tags")? },
        "UntagDeliveryStream" => Op::UntagDeliveryStream { name: name()?, keys: p.strings("TagKeys")? },
        "ListTagsForDeliveryStream" => Op::ListTagsForDeliveryStream {
            name: name()?,
            limit: p.int("Limit")?,
            exclusive_start_tag_key: p.string("ExclusiveStartTagKey")?,
        },
        "StartDeliveryStreamEncryption" => {
            let (key_type, key_arn) = match p.object("DeliveryStreamEncryptionConfigurationInput")? {
                Some(input) => (input.string("KeyType")?, input.string("KeyARN")?),
                None => (None, None),
            };
            Op::SetDeliveryStreamEncryption { name: name()?, key_type, key_arn, start: true }
        }
        "StopDeliveryStreamEncryption" => Op::SetDeliveryStreamEncryption { name: name()?, key_type: None, key_arn: None, start: false },
        other => return Err(OpError::new(ErrorCode::InvalidAction, format!("Firehose has no operation {other}."))),
    })
}

pub fn json_reply(action: &str, reply: Reply) -> Value {
    match (action, reply) {
        (_, Reply::Arn(arn)) => json!({ "DeliveryStreamARN": arn }),
        (_, Reply::DeliveryStream(description)) => {
            json!({ "DeliveryStreamDescription": serde_json::from_str::<Value>(&description).unwrap_or(Value::Null) })
        }
        (_, Reply::DeliveryStreams { names, has_more }) => json!({ "DeliveryStreamNames": names, "HasMoreDeliveryStreams": has_more }),
        (_, Reply::StreamTags { tags, has_more }) => {
            let tags: Vec<Value> = tags.into_iter().map(|(key, value)| json!({ "Key": key, "Value": value })).collect();
            json!({ "Tags": tags, "HasMoreTags": has_more })
        }
        ("PutRecord", Reply::FirehosePut { encrypted, records, .. }) => {
            let id = records.into_iter().next().and_then(|record| record.record_id).unwrap_or_default();
            json!({ "RecordId": id, "Encrypted": encrypted })
        }
        (_, Reply::FirehosePut { failed, encrypted, records }) => {
            let responses: Vec<Value> = records
                .into_iter()
                .map(|record| match record.record_id {
                    Some(id) => json!({ "RecordId": id }),
                    None => json!({ "ErrorCode": record.error_code, "ErrorMessage": record.error_message }),
                })
                .collect();
            json!({ "FailedPutCount": failed, "Encrypted": encrypted, "RequestResponses": responses })
        }
        _ => json!({}),
    }
}

/// Firehose's name for an error: Kinesis's names, but for argument errors (all
/// `InvalidArgumentException`) and `ServiceUnavailableException`.
pub fn error_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Validation => "InvalidArgumentException",
        ErrorCode::ServiceUnavailable => "ServiceUnavailableException",
        other => super::json_11_error_name(other),
    }
}
