//! The key service's operations on the wire (the KMS subset, and Kinesis stream
//! encryption): each operation's request encoding and decoding, in one place.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::*;

/// Encodes a key operation (`None`: not one).
pub(super) fn encode_op(fbb: &mut FlatBufferBuilder<'static>, op: &Op) -> Option<(fb::Op, WIPOffset<flatbuffers::UnionWIPOffset>)> {
    let key_str = |fbb: &mut FlatBufferBuilder<'static>, key: &str| Some(fbb.create_string(key));
    Some(match op {
        Op::CreateKey { description, key_usage, key_spec, tags } => {
            let description = opt_str(fbb, description);
            let key_usage = opt_str(fbb, key_usage);
            let key_spec = opt_str(fbb, key_spec);
            let tags = key_values(fbb, tags);
            op_table!(fbb, CreateKey, fb::CreateKeyArgs { description, key_usage, key_spec, tags })
        }
        Op::DescribeKey { key } => {
            let key = key_str(fbb, key);
            op_table!(fbb, DescribeKey, fb::DescribeKeyArgs { key })
        }
        Op::ListKeys { limit, marker } => {
            let marker = opt_str(fbb, marker);
            op_table!(fbb, ListKeys, fb::ListKeysArgs { limit: *limit, marker })
        }
        Op::CreateAlias { alias, key, update } => {
            let alias = key_str(fbb, alias);
            let key = key_str(fbb, key);
            op_table!(fbb, CreateAlias, fb::CreateAliasArgs { alias, key, update: *update })
        }
        Op::DeleteAlias { alias } => {
            let alias = key_str(fbb, alias);
            op_table!(fbb, DeleteAlias, fb::DeleteAliasArgs { alias })
        }
        Op::ListAliases { key, limit, marker } => {
            let key = opt_str(fbb, key);
            let marker = opt_str(fbb, marker);
            op_table!(fbb, ListAliases, fb::ListAliasesArgs { key, limit: *limit, marker })
        }
        Op::SetKeyEnabled { key, enabled } => {
            let key = key_str(fbb, key);
            op_table!(fbb, SetKeyEnabled, fb::SetKeyEnabledArgs { key, enabled: *enabled })
        }
        Op::ScheduleKeyDeletion { key, pending_window_days } => {
            let key = key_str(fbb, key);
            op_table!(fbb, ScheduleKeyDeletion, fb::ScheduleKeyDeletionArgs { key, pending_window_days: *pending_window_days })
        }
        Op::CancelKeyDeletion { key } => {
            let key = key_str(fbb, key);
            op_table!(fbb, CancelKeyDeletion, fb::CancelKeyDeletionArgs { key })
        }
        Op::SetKeyRotation { key, enabled, period_days } => {
            let key = key_str(fbb, key);
            op_table!(fbb, SetKeyRotation, fb::SetKeyRotationArgs { key, enabled: *enabled, period_days: *period_days })
        }
        Op::GetKeyRotationStatus { key } => {
            let key = key_str(fbb, key);
            op_table!(fbb, GetKeyRotationStatus, fb::GetKeyRotationStatusArgs { key })
        }
        Op::RotateKeyOnDemand { key } => {
            let key = key_str(fbb, key);
            op_table!(fbb, RotateKeyOnDemand, fb::RotateKeyOnDemandArgs { key })
        }
        Op::Encrypt { key, plaintext, context } => {
            let key = key_str(fbb, key);
            let plaintext = Some(fbb.create_vector(plaintext));
            let context = key_values(fbb, context);
            op_table!(fbb, Encrypt, fb::EncryptArgs { key, plaintext, context })
        }
        Op::Decrypt { ciphertext, key, context } => {
            let ciphertext = Some(fbb.create_vector(ciphertext));
            let key = opt_str(fbb, key);
            let context = key_values(fbb, context);
            op_table!(fbb, Decrypt, fb::DecryptArgs { ciphertext, key, context })
        }
        Op::GenerateDataKey { key, bytes, context, without_plaintext } => {
            let key = key_str(fbb, key);
            let context = key_values(fbb, context);
            op_table!(fbb, GenerateDataKey, fb::GenerateDataKeyArgs { key, bytes: *bytes, context, without_plaintext: *without_plaintext })
        }
        Op::SetStreamEncryption { stream, encryption_type, key, start } => {
            let stream = key_str(fbb, stream);
            let encryption_type = key_str(fbb, encryption_type);
            let key = key_str(fbb, key);
            op_table!(fbb, SetStreamEncryption, fb::SetStreamEncryptionArgs { stream, encryption_type, key, start: *start })
        }
        _ => return None,
    })
}

/// Decodes a key operation (`None`: not one).
pub(super) fn decode_op(
    request: &fb::Request<'_>,
    read: &Reader<'_>,
    unknown: &dyn Fn() -> DecodeError,
) -> Result<Option<Op>, DecodeError> {
    Ok(Some(match request.op_type() {
        fb::Op::CreateKey => {
            let op = request.op_as_create_key().ok_or_else(unknown)?;
            Op::CreateKey {
                description: owned(op.description()),
                key_usage: owned(op.key_usage()),
                key_spec: owned(op.key_spec()),
                tags: read.key_values(op.tags()),
            }
        }
        fb::Op::DescribeKey => Op::DescribeKey { key: request.op_as_describe_key().ok_or_else(unknown)?.key().to_owned() },
        fb::Op::ListKeys => {
            let op = request.op_as_list_keys().ok_or_else(unknown)?;
            Op::ListKeys { limit: op.limit(), marker: owned(op.marker()) }
        }
        fb::Op::CreateAlias => {
            let op = request.op_as_create_alias().ok_or_else(unknown)?;
            Op::CreateAlias { alias: op.alias().to_owned(), key: op.key().to_owned(), update: op.update() }
        }
        fb::Op::DeleteAlias => Op::DeleteAlias { alias: request.op_as_delete_alias().ok_or_else(unknown)?.alias().to_owned() },
        fb::Op::ListAliases => {
            let op = request.op_as_list_aliases().ok_or_else(unknown)?;
            Op::ListAliases { key: owned(op.key()), limit: op.limit(), marker: owned(op.marker()) }
        }
        fb::Op::SetKeyEnabled => {
            let op = request.op_as_set_key_enabled().ok_or_else(unknown)?;
            Op::SetKeyEnabled { key: op.key().to_owned(), enabled: op.enabled() }
        }
        fb::Op::ScheduleKeyDeletion => {
            let op = request.op_as_schedule_key_deletion().ok_or_else(unknown)?;
            Op::ScheduleKeyDeletion { key: op.key().to_owned(), pending_window_days: op.pending_window_days() }
        }
        fb::Op::CancelKeyDeletion => {
            Op::CancelKeyDeletion { key: request.op_as_cancel_key_deletion().ok_or_else(unknown)?.key().to_owned() }
        }
        fb::Op::SetKeyRotation => {
            let op = request.op_as_set_key_rotation().ok_or_else(unknown)?;
            Op::SetKeyRotation { key: op.key().to_owned(), enabled: op.enabled(), period_days: op.period_days() }
        }
        fb::Op::GetKeyRotationStatus => {
            Op::GetKeyRotationStatus { key: request.op_as_get_key_rotation_status().ok_or_else(unknown)?.key().to_owned() }
        }
        fb::Op::RotateKeyOnDemand => {
            Op::RotateKeyOnDemand { key: request.op_as_rotate_key_on_demand().ok_or_else(unknown)?.key().to_owned() }
        }
        fb::Op::Encrypt => {
            let op = request.op_as_encrypt().ok_or_else(unknown)?;
            Op::Encrypt { key: op.key().to_owned(), plaintext: read.bytes(op.plaintext()), context: read.key_values(op.context()) }
        }
        fb::Op::Decrypt => {
            let op = request.op_as_decrypt().ok_or_else(unknown)?;
            Op::Decrypt { ciphertext: read.bytes(op.ciphertext()), key: owned(op.key()), context: read.key_values(op.context()) }
        }
        fb::Op::GenerateDataKey => {
            let op = request.op_as_generate_data_key().ok_or_else(unknown)?;
            Op::GenerateDataKey {
                key: op.key().to_owned(),
                bytes: op.bytes(),
                context: read.key_values(op.context()),
                without_plaintext: op.without_plaintext(),
            }
        }
        fb::Op::SetStreamEncryption => {
            let op = request.op_as_set_stream_encryption().ok_or_else(unknown)?;
            Op::SetStreamEncryption {
                stream: op.stream().to_owned(),
                encryption_type: op.encryption_type().unwrap_or_default().to_owned(),
                key: op.key().unwrap_or_default().to_owned(),
                start: op.start(),
            }
        }
        _ => return Ok(None),
    }))
}
