//! The key service over HTTP: AWS JSON 1.1 (`X-Amz-Target: TrentService.<Action>`), as
//! `aws kms` and the SDKs' KMS clients speak it; blobs as base64, times as epoch seconds.
//! What is not served is refused by name — asymmetric and HMAC keys, key policies, grants,
//! imported material, multi-Region keys, dry runs — never accepted and ignored.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};
use sluice_protocol::{AliasEntry, ErrorCode, KeyDescription, KeyValues, Op, OpError, Reply};

use super::params::{Faults, Params};

pub const FAULTS: Faults = Faults { missing: ErrorCode::Validation, invalid: ErrorCode::Validation };

fn unsupported(what: &str) -> OpError {
    OpError::new(ErrorCode::UnsupportedOperation, format!("{what} is not supported by this server."))
}

/// `EncryptionContext`: a map of strings.
fn context(p: &Params<'_>) -> Result<KeyValues, OpError> {
    p.string_map("EncryptionContext")
}

/// Refuses what these actions take on AWS and this server does not do.
fn refuse_unserved(p: &Params<'_>) -> Result<(), OpError> {
    if !p.strings("GrantTokens")?.is_empty() {
        return Err(unsupported("GrantTokens (grants)"));
    }
    if p.bool("DryRun")?.unwrap_or(false) {
        return Err(unsupported("DryRun"));
    }
    if p.has("Recipient") {
        return Err(unsupported("Recipient (Nitro Enclaves attestation)"));
    }
    if let Some(algorithm) = p.string("EncryptionAlgorithm")?.filter(|algorithm| algorithm != "SYMMETRIC_DEFAULT") {
        return Err(unsupported(&format!("EncryptionAlgorithm {algorithm}")));
    }
    Ok(())
}

pub fn op_from(action: &str, p: Params<'_>) -> Result<Op, OpError> {
    let key = || p.required("KeyId");
    Ok(match action {
        "CreateKey" => {
            if p.has("Policy") {
                return Err(unsupported("Policy (key policies: identity policies in --credentials decide who may use keys)"));
            }
            if p.bool("MultiRegion")?.unwrap_or(false) {
                return Err(unsupported("MultiRegion"));
            }
            if let Some(origin) = p.string("Origin")?.filter(|origin| origin != "AWS_KMS") {
                return Err(unsupported(&format!("Origin {origin} (only AWS_KMS)")));
            }
            for member in ["CustomKeyStoreId", "XksKeyId"] {
                if p.has(member) {
                    return Err(unsupported(&format!("{member} (custom key stores)")));
                }
            }
            let tags = p
                .objects("Tags")?
                .into_iter()
                .map(|tag| Ok((tag.required("TagKey")?, tag.string("TagValue")?.unwrap_or_default())))
                .collect::<Result<KeyValues, OpError>>()?;
            let key_spec = match (p.string("KeySpec")?, p.string("CustomerMasterKeySpec")?) {
                (Some(spec), _) | (None, Some(spec)) => Some(spec),
                (None, None) => None,
            };
            Op::CreateKey { description: p.string("Description")?, key_usage: p.string("KeyUsage")?, key_spec, tags }
        }
        "DescribeKey" => {
            if !p.strings("GrantTokens")?.is_empty() {
                return Err(unsupported("GrantTokens (grants)"));
            }
            Op::DescribeKey { key: key()? }
        }
        "ListKeys" => Op::ListKeys { limit: p.int("Limit")?.unwrap_or(0), marker: p.string("Marker")? },
        "CreateAlias" | "UpdateAlias" => {
            Op::CreateAlias { alias: p.required("AliasName")?, key: p.required("TargetKeyId")?, update: action == "UpdateAlias" }
        }
        "DeleteAlias" => Op::DeleteAlias { alias: p.required("AliasName")? },
        "ListAliases" => Op::ListAliases { key: p.string("KeyId")?, limit: p.int("Limit")?.unwrap_or(0), marker: p.string("Marker")? },
        "EnableKey" | "DisableKey" => Op::SetKeyEnabled { key: key()?, enabled: action == "EnableKey" },
        "ScheduleKeyDeletion" => Op::ScheduleKeyDeletion { key: key()?, pending_window_days: p.int("PendingWindowInDays")?.unwrap_or(0) },
        "CancelKeyDeletion" => Op::CancelKeyDeletion { key: key()? },
        "EnableKeyRotation" => Op::SetKeyRotation { key: key()?, enabled: true, period_days: p.int("RotationPeriodInDays")?.unwrap_or(0) },
        "DisableKeyRotation" => Op::SetKeyRotation { key: key()?, enabled: false, period_days: 0 },
        "GetKeyRotationStatus" => Op::GetKeyRotationStatus { key: key()? },
        "RotateKeyOnDemand" => Op::RotateKeyOnDemand { key: key()? },
        "Encrypt" => {
            refuse_unserved(&p)?;
            let plaintext = p.blob("Plaintext")?.ok_or_else(|| OpError::new(ErrorCode::Validation, "Plaintext is required"))?;
            Op::Encrypt { key: key()?, plaintext, context: context(&p)? }
        }
        "Decrypt" => {
            refuse_unserved(&p)?;
            let ciphertext = p.blob("CiphertextBlob")?.ok_or_else(|| OpError::new(ErrorCode::Validation, "CiphertextBlob is required"))?;
            Op::Decrypt { ciphertext, key: p.string("KeyId")?, context: context(&p)? }
        }
        "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
            refuse_unserved(&p)?;
            let bytes = match (p.string("KeySpec")?.as_deref(), p.int("NumberOfBytes")?) {
                (Some(_), Some(_)) => {
                    return Err(OpError::new(ErrorCode::Validation, "Give KeySpec or NumberOfBytes, not both."));
                }
                (Some("AES_256"), None) => 32,
                (Some("AES_128"), None) => 16,
                (Some(other), None) => {
                    return Err(OpError::new(ErrorCode::Validation, format!("KeySpec {other} is not AES_256 or AES_128.")));
                }
                (None, Some(bytes)) => bytes,
                (None, None) => return Err(OpError::new(ErrorCode::Validation, "Give KeySpec or NumberOfBytes.")),
            };
            Op::GenerateDataKey {
                key: key()?,
                bytes,
                context: context(&p)?,
                without_plaintext: action == "GenerateDataKeyWithoutPlaintext",
            }
        }
        other => return Err(OpError::new(ErrorCode::InvalidAction, format!("The action {other} is not served by this key service."))),
    })
}

fn seconds(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn key_metadata(key: &KeyDescription, account_id: &str) -> Value {
    let mut out = Map::new();
    out.insert("AWSAccountId".into(), json!(account_id));
    out.insert("KeyId".into(), json!(key.key_id));
    out.insert("Arn".into(), json!(key.arn));
    out.insert("CreationDate".into(), seconds(key.created_ms));
    out.insert("Enabled".into(), json!(key.state == "Enabled"));
    out.insert("Description".into(), json!(key.description));
    out.insert("KeyUsage".into(), json!(key.key_usage));
    out.insert("KeyState".into(), json!(key.state));
    if let Some(at) = key.deletion_ms {
        out.insert("DeletionDate".into(), seconds(at));
    }
    out.insert("Origin".into(), json!("AWS_KMS"));
    out.insert("KeyManager".into(), json!(key.manager));
    out.insert("CustomerMasterKeySpec".into(), json!(key.key_spec));
    out.insert("KeySpec".into(), json!(key.key_spec));
    out.insert("EncryptionAlgorithms".into(), json!(["SYMMETRIC_DEFAULT"]));
    out.insert("MultiRegion".into(), json!(false));
    Value::Object(out)
}

fn alias_json(alias: &AliasEntry) -> Value {
    let mut out = Map::new();
    out.insert("AliasName".into(), json!(alias.name));
    out.insert("AliasArn".into(), json!(alias.arn));
    if let Some(target) = &alias.target_key_id {
        out.insert("TargetKeyId".into(), json!(target));
        out.insert("CreationDate".into(), seconds(alias.created_ms));
        out.insert("LastUpdatedDate".into(), seconds(alias.created_ms));
    }
    Value::Object(out)
}

/// The answer to a successful action.
pub fn json_reply(action: &str, reply: Reply, account_id: &str) -> Value {
    match reply {
        Reply::Key(key) => match action {
            "ScheduleKeyDeletion" => {
                let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                // Whole days from now to the deletion, as asked (7 to 30).
                let days = key.deletion_ms.map_or(0, |at| (at.saturating_sub(now_ms) + 43_200_000) / 86_400_000);
                let mut out = json!({ "KeyId": key.arn, "KeyState": key.state });
                if let Some(at) = key.deletion_ms {
                    out["DeletionDate"] = seconds(at);
                    out["PendingWindowInDays"] = json!(days);
                }
                out
            }
            "CancelKeyDeletion" | "RotateKeyOnDemand" => json!({ "KeyId": key.key_id }),
            "GetKeyRotationStatus" => {
                let mut out = json!({ "KeyRotationEnabled": key.rotation_enabled, "KeyId": key.key_id });
                if key.rotation_enabled {
                    out["RotationPeriodInDays"] = json!(key.rotation_period_days);
                }
                if let Some(next) = key.next_rotation_ms {
                    out["NextRotationDate"] = seconds(next);
                }
                out
            }
            _ => json!({ "KeyMetadata": key_metadata(&key, account_id) }),
        },
        Reply::Keys { keys, next_marker } => {
            let rows: Vec<Value> = keys.iter().map(|key| json!({ "KeyId": key.key_id, "KeyArn": key.arn })).collect();
            let mut out = json!({ "Keys": rows, "Truncated": next_marker.is_some() });
            if let Some(marker) = next_marker {
                out["NextMarker"] = json!(marker);
            }
            out
        }
        Reply::Aliases { aliases, next_marker } => {
            let rows: Vec<Value> = aliases.iter().map(alias_json).collect();
            let mut out = json!({ "Aliases": rows, "Truncated": next_marker.is_some() });
            if let Some(marker) = next_marker {
                out["NextMarker"] = json!(marker);
            }
            out
        }
        Reply::KeyData { key_arn, ciphertext, plaintext } => {
            let mut out = Map::new();
            out.insert("KeyId".into(), json!(key_arn));
            if let Some(ciphertext) = ciphertext {
                out.insert("CiphertextBlob".into(), json!(STANDARD.encode(&ciphertext)));
            }
            if let Some(plaintext) = plaintext {
                out.insert("Plaintext".into(), json!(STANDARD.encode(&plaintext)));
            }
            if matches!(action, "Encrypt" | "Decrypt") {
                out.insert("EncryptionAlgorithm".into(), json!("SYMMETRIC_DEFAULT"));
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

/// The `__type` KMS answers an error with.
pub fn error_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::KmsNotFound => "NotFoundException",
        ErrorCode::KmsDisabled => "DisabledException",
        ErrorCode::KmsInvalidState => "KMSInvalidStateException",
        ErrorCode::UnsupportedOperation => "UnsupportedOperationException",
        ErrorCode::InvalidParameterValue | ErrorCode::InvalidArgument | ErrorCode::InvalidParameter => "ValidationException",
        ErrorCode::AccessDenied | ErrorCode::KmsAccessDenied => "AccessDeniedException",
        ErrorCode::InternalFailure => "KMSInternalException",
        ErrorCode::InvalidAction => "UnknownOperationException",
        ErrorCode::MalformedRequest => "SerializationException",
        ErrorCode::InvalidClientTokenId => "UnrecognizedClientException",
        ErrorCode::SignatureDoesNotMatch | ErrorCode::RequestExpired => "InvalidSignatureException",
        ErrorCode::IncompleteSignature => "IncompleteSignatureException",
        ErrorCode::MissingAuthenticationToken => "MissingAuthenticationTokenException",
        ErrorCode::ServiceUnavailable => "DependencyTimeoutException",
        other => other.aws_name(),
    }
}
