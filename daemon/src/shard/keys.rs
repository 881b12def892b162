//! The key service's operations (the KMS subset): key and alias changes are catalog changes
//! made on shard 0 and published with the next snapshot; Encrypt, Decrypt and
//! GenerateDataKey run on the shard that got them, with the keys of its snapshot. Shard 0
//! also rotates keys whose rotation is due and deletes keys at the end of their waiting period.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_protocol::{ErrorCode, Op, OpError, Reply, Response};

use super::Shard;
use crate::catalog::{MetaChange, MetaOutcome};
use crate::engine::Host;
use crate::kms::cipher;
use crate::kms::keys::{KeyChange, Keys, KmsKey, PENDING_DAYS, PENDING_DAYS_DEFAULT, ROTATION_DAYS, ROTATION_DAYS_DEFAULT};

/// How often shard 0 looks for rotations and deletions that are due.
const TICK_EVERY: Duration = Duration::from_secs(60);
const DESCRIPTION_CHARS_MAX: usize = 8192;
const TAGS_MAX: usize = 50;
const LIST_LIMIT_MAX: i32 = 1000;
const LIST_LIMIT_DEFAULT: i32 = 100;
const DATA_KEY_BYTES_MAX: i32 = 1024;

fn validation(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::Validation, message)
}

/// Runs a key change on shard 0; answers the key it is about.
async fn change(shard: &Rc<Shard>, change: KeyChange) -> Result<Option<Arc<KmsKey>>, OpError> {
    match shard.meta_change(MetaChange::Key(change)).await? {
        MetaOutcome::Key(key) => Ok(key),
        _ => Err(OpError::new(ErrorCode::InternalFailure, "a key change answered something else")),
    }
}

/// The key `reference` names; an AWS-managed alias (`alias/aws/sqs`, …) not yet backed by a
/// key gets its key now, as on first use in AWS.
pub async fn resolve(shard: &Rc<Shard>, reference: &str) -> Result<Arc<KmsKey>, OpError> {
    if let Some(key) = shard.snapshot().keys.resolve(reference) {
        return Ok(key.clone());
    }
    match Keys::managed_service(reference) {
        Some(service) => change(shard, KeyChange::Managed { service: service.to_owned() })
            .await?
            .ok_or_else(|| OpError::new(ErrorCode::InternalFailure, "making an AWS managed key answered no key")),
        None => shard.snapshot().keys.find(reference).cloned(),
    }
}

fn page_limit(limit: i32) -> Result<usize, OpError> {
    match limit {
        0 => Ok(LIST_LIMIT_DEFAULT as usize),
        1..=LIST_LIMIT_MAX => Ok(limit as usize),
        _ => Err(validation(format!("Limit must be from 1 to {LIST_LIMIT_MAX}."))),
    }
}

fn check_context(context: &[(String, String)]) -> Result<(), OpError> {
    let bytes: usize = context.iter().map(|(key, value)| key.len() + value.len()).sum();
    if bytes > 8192 {
        return Err(validation("The encryption context is longer than 8192 bytes."));
    }
    Ok(())
}

pub async fn handle_op(shard: &Rc<Shard>, op: Op) -> Response {
    let described = |key: Option<Arc<KmsKey>>| match key {
        Some(key) => Ok(Reply::Key(key.describe())),
        None => Err(OpError::new(ErrorCode::InternalFailure, "a key change answered no key")),
    };
    match op {
        Op::CreateKey { description, key_usage, key_spec, tags } => {
            if key_usage.as_deref().is_some_and(|usage| usage != "ENCRYPT_DECRYPT")
                || key_spec.as_deref().is_some_and(|spec| spec != "SYMMETRIC_DEFAULT")
            {
                return Err(OpError::new(
                    ErrorCode::UnsupportedOperation,
                    "Only symmetric keys are served here: KeyUsage ENCRYPT_DECRYPT and KeySpec SYMMETRIC_DEFAULT.",
                ));
            }
            let description = description.unwrap_or_default();
            if description.chars().count() > DESCRIPTION_CHARS_MAX {
                return Err(validation(format!("Description must be at most {DESCRIPTION_CHARS_MAX} characters.")));
            }
            if tags.len() > TAGS_MAX || tags.iter().any(|(key, value)| key.is_empty() || key.len() > 128 || value.len() > 256) {
                return Err(OpError::new(
                    ErrorCode::InvalidParameterValue,
                    format!("At most {TAGS_MAX} tags, each a key of 1 to 128 characters and a value of at most 256."),
                ));
            }
            described(change(shard, KeyChange::Create { description, tags: tags.into_iter().collect() }).await?)
        }
        Op::DescribeKey { key } | Op::GetKeyRotationStatus { key } => Ok(Reply::Key(resolve(shard, &key).await?.describe())),
        Op::ListKeys { limit, marker } => {
            let limit = page_limit(limit)?;
            let snapshot = shard.snapshot();
            let after = marker.as_deref().unwrap_or("");
            let mut keys: Vec<_> = snapshot.keys.listed().filter(|key| key.id.as_str() > after).take(limit + 1).collect();
            let next_marker = (keys.len() > limit).then(|| {
                keys.truncate(limit);
                keys[limit - 1].id.clone()
            });
            Ok(Reply::Keys { keys: keys.into_iter().map(|key| key.describe()).collect(), next_marker })
        }
        Op::CreateAlias { alias, key, update } => {
            change(shard, KeyChange::Alias { alias, key, update }).await?;
            Ok(Reply::Done)
        }
        Op::DeleteAlias { alias } => {
            change(shard, KeyChange::DeleteAlias { alias }).await?;
            Ok(Reply::Done)
        }
        Op::ListAliases { key, limit, marker } => {
            let limit = page_limit(limit)?;
            let snapshot = shard.snapshot();
            let of = match &key {
                Some(reference) => Some(snapshot.keys.find(reference)?.clone()),
                None => None,
            };
            let after = marker.as_deref().unwrap_or("");
            let mut aliases: Vec<_> =
                snapshot.keys.aliases(of.as_deref()).into_iter().filter(|alias| alias.name.as_str() > after).take(limit + 1).collect();
            let next_marker = (aliases.len() > limit).then(|| {
                aliases.truncate(limit);
                aliases[limit - 1].name.clone()
            });
            Ok(Reply::Aliases { aliases, next_marker })
        }
        Op::SetKeyEnabled { key, enabled } => {
            change(shard, KeyChange::SetEnabled { key, enabled }).await?;
            Ok(Reply::Done)
        }
        Op::ScheduleKeyDeletion { key, pending_window_days } => {
            let days = match pending_window_days {
                0 => PENDING_DAYS_DEFAULT,
                days if PENDING_DAYS.contains(&days) => days as u32,
                _ => return Err(validation("PendingWindowInDays must be from 7 to 30.")),
            };
            described(change(shard, KeyChange::ScheduleDeletion { key, pending_days: days }).await?)
        }
        Op::CancelKeyDeletion { key } => described(change(shard, KeyChange::CancelDeletion { key }).await?),
        Op::SetKeyRotation { key, enabled, period_days } => {
            let days = match (enabled, period_days) {
                (false, _) => None,
                (true, 0) => Some(ROTATION_DAYS_DEFAULT),
                (true, days) if ROTATION_DAYS.contains(&days) => Some(days as u32),
                (true, _) => return Err(validation("RotationPeriodInDays must be from 90 to 2560.")),
            };
            change(shard, KeyChange::Rotation { key, days }).await?;
            Ok(Reply::Done)
        }
        Op::RotateKeyOnDemand { key } => described(change(shard, KeyChange::RotateNow { key }).await?),
        Op::Encrypt { key, plaintext, context } => {
            if plaintext.is_empty() || plaintext.len() > cipher::PLAINTEXT_BYTES_MAX {
                return Err(validation(format!("Plaintext must be 1 to {} bytes.", cipher::PLAINTEXT_BYTES_MAX)));
            }
            check_context(&context)?;
            let key = resolve(shard, &key).await?;
            key.usable()?;
            let ciphertext = cipher::encrypt(&key, &plaintext, &context);
            Ok(Reply::KeyData { key_arn: key.arn.clone(), ciphertext: Some(Bytes::from(ciphertext)), plaintext: None })
        }
        Op::Decrypt { ciphertext, key, context } => {
            if ciphertext.is_empty() || ciphertext.len() > cipher::CIPHERTEXT_BYTES_MAX {
                return Err(validation(format!("CiphertextBlob must be 1 to {} bytes.", cipher::CIPHERTEXT_BYTES_MAX)));
            }
            check_context(&context)?;
            let snapshot = shard.snapshot();
            let found = cipher::key_of(&snapshot.keys, &ciphertext)?.clone();
            if let Some(reference) = &key {
                let named = snapshot.keys.find(reference)?;
                if named.id != found.id {
                    return Err(OpError::new(
                        ErrorCode::IncorrectKey,
                        "The key ID in the request does not identify the key that encrypted the ciphertext.",
                    ));
                }
            }
            found.usable()?;
            let plaintext = cipher::decrypt(&found, &ciphertext, &context)?;
            Ok(Reply::KeyData { key_arn: found.arn.clone(), ciphertext: None, plaintext: Some(Bytes::from(plaintext)) })
        }
        Op::GenerateDataKey { key, bytes, context, without_plaintext } => {
            if !(1..=DATA_KEY_BYTES_MAX).contains(&bytes) {
                return Err(validation(format!("NumberOfBytes must be from 1 to {DATA_KEY_BYTES_MAX}.")));
            }
            check_context(&context)?;
            let key = resolve(shard, &key).await?;
            key.usable()?;
            let mut data_key = vec![0u8; bytes as usize];
            crate::kms::random(&mut data_key);
            let ciphertext = cipher::encrypt(&key, &data_key, &context);
            let plaintext = (!without_plaintext).then(|| Bytes::from(data_key));
            Ok(Reply::KeyData { key_arn: key.arn.clone(), ciphertext: Some(Bytes::from(ciphertext)), plaintext })
        }
        other => Err(OpError::new(ErrorCode::InternalFailure, format!("{} is not a key operation", other.name()))),
    }
}

/// Shard 0: rotates keys whose automatic rotation is due and deletes keys whose waiting period
/// is over, once a minute; ends at shutdown.
pub async fn rotations(shard: Rc<Shard>) {
    loop {
        if shard.shutdown.requested.get() {
            return;
        }
        if shard.config.root_key.is_some() && shard.snapshot().keys.tick_due(shard.env.now_ms()) {
            if let Err(error) = change(&shard, KeyChange::Tick).await {
                tracing::warn!(%error, "key rotation or deletion did not run; it is tried again in a minute");
            } else {
                tracing::info!("rotated or deleted the KMS keys that were due");
            }
        }
        shard.rest(TICK_EVERY).await;
    }
}
