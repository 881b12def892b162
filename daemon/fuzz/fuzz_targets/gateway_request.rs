//! Fuzzes the HTTP gateway's parsing of a request body into an operation, as it runs for
//! every request: SQS JSON and Kinesis JSON bodies (JSON, base64 blobs, timestamps,
//! nested maps and lists), and SQS and SNS Query forms (percent-decoding, `.member.N` and
//! `.entry.N` folding). The first byte picks the protocol and the action; nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_daemon::gateway::{form_op, json_op, SQS_ACTIONS as SQS};

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
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    match selector % 4 {
        0 => {
            let _ = json_op(true, SQS[(selector as usize / 4) % SQS.len()], body);
        }
        1 => {
            let _ = json_op(false, KINESIS[(selector as usize / 4) % KINESIS.len()], body);
        }
        2 => {
            let _ = form_op(true, body);
        }
        _ => {
            let _ = form_op(false, body);
        }
    }
});
