//! Fuzzes the HTTP gateway's parsing of a request body into an operation, as it runs for
//! every request: SQS JSON, Kinesis JSON and KMS JSON bodies (JSON, base64 blobs, timestamps,
//! nested maps and lists), and SQS and SNS Query forms (percent-decoding, `.member.N` and
//! `.entry.N` folding), CloudWatch's CBOR (Smithy RPC v2) and JSON bodies, and Firehose JSON
//! bodies with the delivery stream configurations they carry (checked as the daemon checks
//! them). The first byte picks the protocol and the action (240 and up: CloudWatch; 220–239:
//! Firehose); nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_daemon::gateway::{
    cloudwatch_op, firehose_json_op, form_op, json_op, kms_json_op, CLOUDWATCH_ACTIONS as CLOUDWATCH, SQS_ACTIONS as SQS,
};
use sluice_protocol::Op;

const FIREHOSE: &[&str] = &[
    "CreateDeliveryStream",
    "DeleteDeliveryStream",
    "DescribeDeliveryStream",
    "ListDeliveryStreams",
    "PutRecord",
    "PutRecordBatch",
    "UpdateDestination",
    "TagDeliveryStream",
    "UntagDeliveryStream",
    "ListTagsForDeliveryStream",
];

const KINESIS: &[&str] = &[
    "CreateStream",
    "DeleteStream",
    "DescribeStream",
    "DescribeStreamSummary",
    "ListStreams",
    "ListShards",
    "PutRecord",
    "PutRecords",
    "GetShardIterator",
    "GetRecords",
    "SplitShard",
    "MergeShards",
    "UpdateShardCount",
    "IncreaseStreamRetentionPeriod",
    "DecreaseStreamRetentionPeriod",
    "AddTagsToStream",
    "RemoveTagsFromStream",
    "ListTagsForStream",
    "RegisterStreamConsumer",
    "DeregisterStreamConsumer",
    "DescribeStreamConsumer",
    "ListStreamConsumers",
    "SubscribeToShard",
    "StartStreamEncryption",
    "StopStreamEncryption",
];

const KMS: &[&str] = &[
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
    "ListAliases",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "GetKeyRotationStatus",
    "RotateKeyOnDemand",
    "Encrypt",
    "Decrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    if selector >= 240 {
        let action = CLOUDWATCH[(selector as usize / 2) % CLOUDWATCH.len()];
        let _ = cloudwatch_op(selector % 2 == 0, action, body);
        return;
    }
    if selector >= 220 {
        let action = FIREHOSE[selector as usize % FIREHOSE.len()];
        let naming = sluice_daemon::catalog::Naming::default();
        match firehose_json_op(action, body) {
            Ok(Op::CreateDeliveryStream { name, configuration, tags }) => {
                if let Ok(meta) = sluice_daemon::catalog::firehose::create(&naming, 1, &name, &configuration, &tags, 0) {
                    let _ = sluice_daemon::catalog::firehose::description(&meta);
                    let _ = sluice_daemon::catalog::firehose::updated(&meta, &configuration, 1);
                }
            }
            Ok(Op::UpdateDestination { configuration, .. }) => {
                let _ = sluice_daemon::catalog::firehose::create(&naming, 1, "d", &configuration, &Vec::new(), 0);
            }
            _ => {}
        }
        return;
    }
    match selector % 5 {
        0 => {
            let _ = json_op(true, SQS[(selector as usize / 5) % SQS.len()], body);
        }
        1 => {
            let _ = json_op(false, KINESIS[(selector as usize / 5) % KINESIS.len()], body);
        }
        2 => {
            let _ = form_op(true, body);
        }
        3 => {
            let _ = form_op(false, body);
        }
        _ => {
            let _ = kms_json_op(KMS[(selector as usize / 5) % KMS.len()], body);
        }
    }
});
