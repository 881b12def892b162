//! Validation of what clients send: message bodies, message attributes, batch
//! entry ids and numeric request parameters, with SQS's error codes and texts.

use std::collections::HashSet;

use sluice_protocol::limits::*;
use sluice_protocol::{ErrorCode, MessageAttribute, OpError};

/// Characters SQS allows in bodies and string attribute values.
fn allowed_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Checks a body: valid UTF-8, at least one character, only SQS's allowed characters.
pub fn check_body(body: &[u8]) -> Result<(), OpError> {
    if body.is_empty() {
        return Err(OpError::new(ErrorCode::MissingParameter, "The request must contain the parameter MessageBody."));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| OpError::new(ErrorCode::InvalidMessageContents, "Invalid binary character in the message body: not UTF-8."))?;
    // Printable ASCII is by far the common case; check it without decoding.
    if text.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\n' || b == b'\r' || b == b'\t') {
        return Ok(());
    }
    match text.chars().find(|c| !allowed_char(*c)) {
        None => Ok(()),
        Some(c) => Err(OpError::new(
            ErrorCode::InvalidMessageContents,
            format!("Invalid binary character '#x{:X}' was found in the message body.", c as u32),
        )),
    }
}

fn attribute_error(message: String) -> OpError {
    OpError::new(ErrorCode::InvalidParameterValue, message)
}

/// Checks message attributes against SQS's rules.
pub fn check_attributes(attributes: &[MessageAttribute]) -> Result<(), OpError> {
    if attributes.len() > MESSAGE_ATTRIBUTES_MAX {
        return Err(attribute_error(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MESSAGE_ATTRIBUTES_MAX}].",
            attributes.len()
        )));
    }
    for (index, attribute) in attributes.iter().enumerate() {
        let name = attribute.name.as_str();
        if name.is_empty() {
            return Err(attribute_error("Message attribute name can not be null or empty.".into()));
        }
        let lower = name.to_ascii_lowercase();
        if name.len() > MESSAGE_ATTRIBUTE_NAME_CHARS_MAX
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            || name.starts_with('.')
            || name.ends_with('.')
            || name.contains("..")
            || lower.starts_with("aws.")
            || lower.starts_with("amazon.")
        {
            return Err(attribute_error(format!("Message attribute name '{name}' is invalid.")));
        }
        if attributes[..index].iter().any(|other| other.name == name) {
            return Err(attribute_error(format!("Message attribute name '{name}' already exists.")));
        }
        let data_type = attribute.data_type.as_str();
        let base_type = data_type.split('.').next().unwrap_or_default();
        if data_type.is_empty() || data_type.len() > MESSAGE_ATTRIBUTE_NAME_CHARS_MAX {
            return Err(attribute_error(format!("The message attribute '{name}' must contain a valid DataType.")));
        }
        match (base_type, &attribute.string_value, &attribute.binary_value) {
            ("String" | "Number", Some(text), None) if !text.is_empty() => {
                if text.chars().any(|c| !allowed_char(c)) {
                    return Err(OpError::new(
                        ErrorCode::InvalidMessageContents,
                        format!("Message attribute '{name}' contains invalid characters."),
                    ));
                }
                if base_type == "Number" && !valid_number(text) {
                    return Err(attribute_error(format!("Can't cast the value of message (user) attribute '{name}' to a number.")));
                }
            }
            ("Binary", None, Some(bytes)) if !bytes.is_empty() => {}
            ("String" | "Number" | "Binary", _, _) => {
                return Err(attribute_error(format!(
                    "The message attribute '{name}' with type '{data_type}' must carry exactly one non-empty value of its type."
                )))
            }
            _ => {
                return Err(attribute_error(format!(
                    "The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."
                )))
            }
        }
    }
    Ok(())
}

/// SQS numbers: optional sign, digits with an optional fraction and exponent, ≤38 significant digits.
fn valid_number(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next().unwrap_or_default();
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits_ok(whole) || !digits_ok(fraction) {
        return false;
    }
    if let Some(exponent) = exponent {
        let exponent = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
        if exponent.is_empty() || !digits_ok(exponent) || exponent.len() > 3 {
            return false;
        }
    }
    let significant = whole.trim_start_matches('0').len() + fraction.len();
    significant <= 38
}

/// System attributes on send: only `AWSTraceHeader` (a String) exists.
pub fn check_system_attributes(attributes: &[MessageAttribute]) -> Result<(), OpError> {
    for attribute in attributes {
        if attribute.name != "AWSTraceHeader" {
            return Err(attribute_error(format!("Message system attribute name '{}' is invalid.", attribute.name)));
        }
        if attribute.data_type != "String" || attribute.string_value.as_deref().is_none_or(str::is_empty) {
            return Err(attribute_error("Message system attribute AWSTraceHeader must be a non-empty String.".into()));
        }
    }
    if attributes.len() > 1 {
        return Err(attribute_error("Message system attribute AWSTraceHeader given more than once.".into()));
    }
    Ok(())
}

/// Checks a batch's shape: 1..=10 entries, valid and distinct ids.
pub fn check_batch_ids<'a>(ids: impl ExactSizeIterator<Item = &'a str>) -> Result<(), OpError> {
    let count = ids.len();
    if count == 0 {
        return Err(OpError::new(ErrorCode::EmptyBatchRequest, "There should be at least one entry in the request."));
    }
    if count > BATCH_ENTRIES_MAX {
        return Err(OpError::new(
            ErrorCode::TooManyEntriesInBatchRequest,
            format!("Maximum number of entries per request are {BATCH_ENTRIES_MAX}. You have sent {count}."),
        ));
    }
    let mut seen = HashSet::with_capacity(count);
    for id in ids {
        if id.is_empty() || id.len() > BATCH_ENTRY_ID_CHARS_MAX || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(OpError::new(
                ErrorCode::InvalidBatchEntryId,
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id) {
            return Err(OpError::new(ErrorCode::BatchEntryIdsNotDistinct, format!("Id {id} repeated.")));
        }
    }
    Ok(())
}

/// Checks an integer parameter's range with SQS's InvalidParameterValue text.
pub fn check_range(name: &str, value: i32, min: i32, max: i32) -> Result<u32, OpError> {
    if (min..=max).contains(&value) {
        Ok(value as u32)
    } else {
        Err(OpError::new(
            ErrorCode::InvalidParameterValue,
            format!("Value {value} for parameter {name} is invalid. Reason: must be between {min} and {max}."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_the_sqs_character_rules() {
        assert!(check_body(b"hello").is_ok());
        assert!(check_body("héllo ✓ \u{1F600}".as_bytes()).is_ok());
        assert_eq!(check_body(b"").unwrap_err().code, ErrorCode::MissingParameter);
        assert_eq!(check_body(b"a\x00b").unwrap_err().code, ErrorCode::InvalidMessageContents);
        assert_eq!(check_body(b"\xff\xfe").unwrap_err().code, ErrorCode::InvalidMessageContents);
        assert_eq!(check_body("\u{FFFE}".as_bytes()).unwrap_err().code, ErrorCode::InvalidMessageContents);
    }

    #[test]
    fn attributes_are_checked_and_sized() {
        let ok = [MessageAttribute::string("a", "String", "xy"), MessageAttribute::binary("b", vec![1u8])];
        assert!(check_attributes(&ok).is_ok());
        assert_eq!(ok.iter().map(MessageAttribute::size_bytes).sum::<usize>(), 1 + 6 + 2 + 1 + 6 + 1);
        let too_many: Vec<_> = (0..11).map(|i| MessageAttribute::string(format!("a{i}"), "String", "x")).collect();
        assert!(check_attributes(&too_many).is_err());
        for bad in [
            MessageAttribute::string("AWS.x", "String", "x"),
            MessageAttribute::string(".x", "String", "x"),
            MessageAttribute::string("a..b", "String", "x"),
            MessageAttribute::string("a", "Colour", "x"),
            MessageAttribute::string("a", "String", ""),
            MessageAttribute::string("a", "Number", "twelve"),
            MessageAttribute::binary("a", Vec::<u8>::new()),
        ] {
            assert!(check_attributes(std::slice::from_ref(&bad)).is_err(), "{bad:?}");
        }
        assert!(check_attributes(&[MessageAttribute::string("n", "Number.float", "-1.5e10")]).is_ok());
        let dup = [MessageAttribute::string("a", "String", "x"), MessageAttribute::string("a", "String", "y")];
        assert!(check_attributes(&dup).is_err());
    }

    #[test]
    fn batch_ids_are_checked() {
        assert_eq!(check_batch_ids([].into_iter()).unwrap_err().code, ErrorCode::EmptyBatchRequest);
        let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert_eq!(check_batch_ids(eleven.iter().map(String::as_str)).unwrap_err().code, ErrorCode::TooManyEntriesInBatchRequest);
        assert_eq!(check_batch_ids(["a", "a"].into_iter()).unwrap_err().code, ErrorCode::BatchEntryIdsNotDistinct);
        assert_eq!(check_batch_ids(["a b"].into_iter()).unwrap_err().code, ErrorCode::InvalidBatchEntryId);
        assert!(check_batch_ids(["a", "b-1_c"].into_iter()).is_ok());
    }
}
