//! The Firehose operations on the wire: each operation's and reply's encoding and decoding,
//! in one place. Configurations travel as Firehose's own JSON (the daemon checks them).

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::*;

type Union = WIPOffset<flatbuffers::UnionWIPOffset>;

fn limit(value: &Option<i32>) -> i32 {
    value.unwrap_or(-1)
}

fn limit_of(value: i32) -> Option<i32> {
    (value >= 0).then_some(value)
}

/// Encodes a Firehose operation (`None`: not one).
pub(super) fn encode_op(fbb: &mut FlatBufferBuilder<'static>, op: &Op) -> Option<(fb::Op, Union)> {
    Some(match op {
        Op::CreateDeliveryStream { name, configuration, tags } => {
            let (name, configuration) = (Some(fbb.create_string(name)), Some(fbb.create_string(configuration)));
            let tags = key_values(fbb, tags);
            op_table!(fbb, CreateDeliveryStream, fb::CreateDeliveryStreamArgs { name, configuration, tags })
        }
        Op::DeleteDeliveryStream { name, allow_force_delete } => {
            let name = Some(fbb.create_string(name));
            op_table!(fbb, DeleteDeliveryStream, fb::DeleteDeliveryStreamArgs { name, allow_force_delete: *allow_force_delete })
        }
        Op::DescribeDeliveryStream { name, limit: max, exclusive_start_destination_id } => {
            let name = Some(fbb.create_string(name));
            let exclusive_start_destination_id = opt_str(fbb, exclusive_start_destination_id);
            let args = fb::DescribeDeliveryStreamArgs { name, limit: limit(max), exclusive_start_destination_id };
            op_table!(fbb, DescribeDeliveryStream, args)
        }
        Op::ListDeliveryStreams { limit: max, stream_type, exclusive_start_name } => {
            let (stream_type, exclusive_start_name) = (opt_str(fbb, stream_type), opt_str(fbb, exclusive_start_name));
            op_table!(fbb, ListDeliveryStreams, fb::ListDeliveryStreamsArgs { limit: limit(max), stream_type, exclusive_start_name })
        }
        Op::PutFirehoseRecords { name, records, batch } => {
            let name = Some(fbb.create_string(name));
            let offsets: Vec<_> = records
                .iter()
                .map(|data| {
                    let data = Some(fbb.create_vector(data));
                    fb::FirehoseRecord::create(fbb, &fb::FirehoseRecordArgs { data })
                })
                .collect();
            let records = Some(fbb.create_vector(&offsets));
            op_table!(fbb, PutFirehoseRecords, fb::PutFirehoseRecordsArgs { name, records, batch: *batch })
        }
        Op::UpdateDestination { name, current_version_id, destination_id, configuration } => {
            let name = Some(fbb.create_string(name));
            let current_version_id = Some(fbb.create_string(current_version_id));
            let destination_id = Some(fbb.create_string(destination_id));
            let configuration = Some(fbb.create_string(configuration));
            let args = fb::UpdateDestinationArgs { name, current_version_id, destination_id, configuration };
            op_table!(fbb, UpdateDestination, args)
        }
        Op::TagDeliveryStream { name, tags } => {
            let name = Some(fbb.create_string(name));
            let tags = key_values(fbb, tags);
            op_table!(fbb, TagDeliveryStream, fb::TagDeliveryStreamArgs { name, tags })
        }
        Op::UntagDeliveryStream { name, keys } => {
            let name = Some(fbb.create_string(name));
            let keys = strings(fbb, keys);
            op_table!(fbb, UntagDeliveryStream, fb::UntagDeliveryStreamArgs { name, keys })
        }
        Op::ListTagsForDeliveryStream { name, limit: max, exclusive_start_tag_key } => {
            let name = Some(fbb.create_string(name));
            let exclusive_start_tag_key = opt_str(fbb, exclusive_start_tag_key);
            let args = fb::ListTagsForDeliveryStreamArgs { name, limit: limit(max), exclusive_start_tag_key };
            op_table!(fbb, ListTagsForDeliveryStream, args)
        }
        Op::SetDeliveryStreamEncryption { name, key_type, key_arn, start } => {
            let name = Some(fbb.create_string(name));
            let (key_type, key_arn) = (opt_str(fbb, key_type), opt_str(fbb, key_arn));
            op_table!(fbb, SetDeliveryStreamEncryption, fb::SetDeliveryStreamEncryptionArgs { name, key_type, key_arn, start: *start })
        }
        _ => return None,
    })
}

pub(super) fn decode_op(
    request: &fb::Request<'_>,
    read: &Reader<'_>,
    unknown: &dyn Fn() -> DecodeError,
) -> Result<Option<Op>, DecodeError> {
    Ok(Some(match request.op_type() {
        fb::Op::CreateDeliveryStream => {
            let op = request.op_as_create_delivery_stream().ok_or_else(unknown)?;
            Op::CreateDeliveryStream {
                name: op.name().to_owned(),
                configuration: op.configuration().unwrap_or_default().to_owned(),
                tags: read.key_values(op.tags()),
            }
        }
        fb::Op::DeleteDeliveryStream => {
            let op = request.op_as_delete_delivery_stream().ok_or_else(unknown)?;
            Op::DeleteDeliveryStream { name: op.name().to_owned(), allow_force_delete: op.allow_force_delete() }
        }
        fb::Op::DescribeDeliveryStream => {
            let op = request.op_as_describe_delivery_stream().ok_or_else(unknown)?;
            Op::DescribeDeliveryStream {
                name: op.name().to_owned(),
                limit: limit_of(op.limit()),
                exclusive_start_destination_id: owned(op.exclusive_start_destination_id()),
            }
        }
        fb::Op::ListDeliveryStreams => {
            let op = request.op_as_list_delivery_streams().ok_or_else(unknown)?;
            Op::ListDeliveryStreams {
                limit: limit_of(op.limit()),
                stream_type: owned(op.stream_type()),
                exclusive_start_name: owned(op.exclusive_start_name()),
            }
        }
        fb::Op::PutFirehoseRecords => {
            let op = request.op_as_put_firehose_records().ok_or_else(unknown)?;
            let records = read
                .bounded(op.records())
                .map(|records| records.iter().map(|record| read.bytes(record.data())).collect())
                .unwrap_or_default();
            Op::PutFirehoseRecords { name: op.name().to_owned(), records, batch: op.batch() }
        }
        fb::Op::UpdateDestination => {
            let op = request.op_as_update_destination().ok_or_else(unknown)?;
            Op::UpdateDestination {
                name: op.name().to_owned(),
                current_version_id: op.current_version_id().to_owned(),
                destination_id: op.destination_id().to_owned(),
                configuration: op.configuration().unwrap_or_default().to_owned(),
            }
        }
        fb::Op::TagDeliveryStream => {
            let op = request.op_as_tag_delivery_stream().ok_or_else(unknown)?;
            Op::TagDeliveryStream { name: op.name().to_owned(), tags: read.key_values(op.tags()) }
        }
        fb::Op::UntagDeliveryStream => {
            let op = request.op_as_untag_delivery_stream().ok_or_else(unknown)?;
            Op::UntagDeliveryStream { name: op.name().to_owned(), keys: read.strings(op.keys()) }
        }
        fb::Op::ListTagsForDeliveryStream => {
            let op = request.op_as_list_tags_for_delivery_stream().ok_or_else(unknown)?;
            Op::ListTagsForDeliveryStream {
                name: op.name().to_owned(),
                limit: limit_of(op.limit()),
                exclusive_start_tag_key: owned(op.exclusive_start_tag_key()),
            }
        }
        fb::Op::SetDeliveryStreamEncryption => {
            let op = request.op_as_set_delivery_stream_encryption().ok_or_else(unknown)?;
            Op::SetDeliveryStreamEncryption {
                name: op.name().to_owned(),
                key_type: owned(op.key_type()),
                key_arn: owned(op.key_arn()),
                start: op.start(),
            }
        }
        _ => return Ok(None),
    }))
}

/// Encodes a Firehose reply (`None`: not one).
pub(super) fn encode_reply(fbb: &mut FlatBufferBuilder<'static>, reply: &Reply) -> Option<(fb::Reply, Union)> {
    macro_rules! table {
        ($variant:ident, $args:expr) => {{
            let args = $args;
            (fb::Reply::$variant, fb::$variant::create(fbb, &args).as_union_value())
        }};
    }
    Some(match reply {
        Reply::DeliveryStream(description) => {
            let description = Some(fbb.create_string(description));
            table!(DeliveryStream, fb::DeliveryStreamArgs { description })
        }
        Reply::DeliveryStreams { names, has_more } => {
            let names = Some(strings(fbb, names).unwrap_or_else(|| fbb.create_vector::<WIPOffset<&str>>(&[])));
            table!(DeliveryStreams, fb::DeliveryStreamsArgs { names, has_more: *has_more })
        }
        Reply::FirehosePut { failed, encrypted, records } => {
            let offsets: Vec<_> = records
                .iter()
                .map(|record| {
                    let record_id = opt_str(fbb, &record.record_id);
                    let error_code = opt_str(fbb, &record.error_code);
                    let error_message = opt_str(fbb, &record.error_message);
                    fb::FirehosePutResult::create(fbb, &fb::FirehosePutResultArgs { record_id, error_code, error_message })
                })
                .collect();
            let records = Some(fbb.create_vector(&offsets));
            table!(FirehosePut, fb::FirehosePutArgs { failed: *failed, encrypted: *encrypted, records })
        }
        _ => return None,
    })
}

/// Decodes a Firehose reply (`None`: not one).
pub(super) fn decode_reply(
    response: &fb::Response<'_>,
    read: &Reader<'_>,
    empty: &dyn Fn() -> DecodeError,
) -> Result<Option<Reply>, DecodeError> {
    Ok(Some(match response.reply_type() {
        fb::Reply::DeliveryStream => {
            let result = response.reply_as_delivery_stream().ok_or_else(empty)?;
            Reply::DeliveryStream(result.description().to_owned())
        }
        fb::Reply::DeliveryStreams => {
            let result = response.reply_as_delivery_streams().ok_or_else(empty)?;
            Reply::DeliveryStreams { names: read.strings(result.names()), has_more: result.has_more() }
        }
        fb::Reply::FirehosePut => {
            let result = response.reply_as_firehose_put().ok_or_else(empty)?;
            let records = read
                .bounded(result.records())
                .map(|items| {
                    items
                        .iter()
                        .map(|item| FirehosePutResult {
                            record_id: owned(item.record_id()),
                            error_code: owned(item.error_code()),
                            error_message: owned(item.error_message()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Reply::FirehosePut { failed: result.failed(), encrypted: result.encrypted(), records }
        }
        _ => return Ok(None),
    }))
}
