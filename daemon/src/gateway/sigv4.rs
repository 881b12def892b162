//! AWS Signature Version 4, checked as AWS checks it: the canonical request (method, path
//! URI-encoded twice, sorted and re-encoded query, the signed headers with their values
//! trimmed and folded, the payload's SHA-256 or `UNSIGNED-PAYLOAD`), the string to sign with
//! the credential scope, and the HMAC chain from the principal's secret. Both forms: the
//! `Authorization` header, and presigned URLs (`X-Amz-Signature` in the query). A header-signed
//! request must be within 5 minutes of the daemon's clock; a presigned one until
//! `X-Amz-Expires` (at most 7 days) has passed.

use std::borrow::Cow;

use sha2::{Digest, Sha256};
use sluice_protocol::auth::{hmac_sha256 as hmac, same};

use crate::credentials::{Credentials, Principal};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// How far a header-signed request's time may be from the daemon's.
const SKEW_S: u64 = 300;
/// The longest a presigned URL may live.
const PRESIGNED_EXPIRES_MAX_S: u64 = 7 * 24 * 3600;
/// The services one may sign for here.
pub const SERVICES: [&str; 3] = ["sqs", "sns", "kinesis"];

/// What a request says, as received.
pub struct Signed<'a> {
    pub method: &'a str,
    /// The path as it came on the wire (still percent-encoded).
    pub path: &'a str,
    /// The query string as it came (without `?`), empty if none.
    pub query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// Why a request is refused; each is one of AWS's error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Neither an `Authorization` header nor a presigned query.
    Missing,
    /// The access key id is not in `--credentials`.
    UnknownKey,
    /// The signature's parts are missing or malformed.
    Incomplete(String),
    /// The signature (or its scope) is not the one the secret gives.
    Mismatch(String),
    /// Signed too long ago (or too far ahead), or a presigned URL past its expiry.
    Expired(String),
}

/// A verified request: who signed it, for which service.
#[derive(Debug)]
pub struct Verified<'a> {
    pub principal: &'a std::sync::Arc<Principal>,
    pub service: &'static str,
}

/// Checks `request`'s signature against `credentials`, at `now_s` (Unix seconds).
pub fn verify<'a>(credentials: &'a Credentials, region: &str, request: &Signed<'_>, now_s: u64) -> Result<Verified<'a>, Refusal> {
    let parts = match request.headers.get(http::header::AUTHORIZATION) {
        Some(value) => {
            from_header(value.to_str().map_err(|_| Refusal::Incomplete("The Authorization header is not text.".into()))?, request)?
        }
        None if query_pairs(request.query).any(|(key, _)| key == "X-Amz-Signature") => from_query(request)?,
        None => return Err(Refusal::Missing),
    };
    let mut scope = parts.credential.split('/');
    let (Some(key_id), Some(date), Some(scope_region), Some(service), Some(terminal), None) =
        (scope.next(), scope.next(), scope.next(), scope.next(), scope.next(), scope.next())
    else {
        return Err(Refusal::Incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{}'",
            parts.credential
        )));
    };
    let principal = credentials.get(key_id).ok_or(Refusal::UnknownKey)?;
    let signed_s = parse_amz_date(&parts.amz_date)
        .ok_or_else(|| Refusal::Incomplete(format!("X-Amz-Date must be in the format YYYYMMDD'T'HHMMSS'Z', got '{}'", parts.amz_date)))?;
    if !parts.amz_date.starts_with(date) || date.len() != 8 {
        return Err(Refusal::Mismatch(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{date}' != '{}'",
            &parts.amz_date[..8]
        )));
    }
    if scope_region != region {
        return Err(Refusal::Mismatch(format!("Credential should be scoped to a valid region, not '{scope_region}'. ")));
    }
    if !SERVICES.contains(&service) {
        return Err(Refusal::Mismatch(format!("Credential should be scoped to correct service: not '{service}'. ")));
    }
    if terminal != "aws4_request" {
        return Err(Refusal::Mismatch(format!("Credential should be scoped with a valid terminator: 'aws4_request', not '{terminal}'. ")));
    }
    match parts.expires_s {
        None => {
            if signed_s.abs_diff(now_s) > SKEW_S {
                return Err(Refusal::Expired(format!(
                    "Signature expired: {} is now earlier than {} ({} - 5 min.)",
                    parts.amz_date,
                    format_amz_date(now_s.saturating_sub(SKEW_S)),
                    format_amz_date(now_s)
                )));
            }
        }
        Some(expires) => {
            if signed_s > now_s + SKEW_S {
                return Err(Refusal::Expired("Signature not yet current.".into()));
            }
            if now_s > signed_s + expires {
                return Err(Refusal::Expired("Request has expired.".into()));
            }
        }
    }
    let key = signing_key(principal, date, scope_region, service);
    // A presigned URL's payload is the (empty) body's hash as botocore signs it, or
    // `UNSIGNED-PAYLOAD` as other SDKs do for it.
    let payloads: &[Option<&str>] = if parts.expires_s.is_some() { &[None, Some(UNSIGNED_PAYLOAD)] } else { &[None] };
    let mut matched = false;
    let mut string_to_sign = String::with_capacity(160);
    for payload in payloads {
        let canonical = canonical_request_hash(request, &parts, *payload)?;
        string_to_sign.clear();
        for piece in [ALGORITHM, "\n", &parts.amz_date, "\n", date, "/", scope_region, "/", service, "/aws4_request\n"] {
            string_to_sign.push_str(piece);
        }
        string_to_sign.push_str(hex_of(&canonical).as_str());
        let expected = hex_of(&hmac(&key, string_to_sign.as_bytes()));
        matched |= same(expected.as_bytes(), parts.signature.as_bytes());
    }
    if !matched {
        return Err(Refusal::Mismatch(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
                .into(),
        ));
    }
    let service = SERVICES.into_iter().find(|known| *known == service).unwrap_or_default();
    Ok(Verified { principal, service })
}

/// Lower-case hex of a 32-byte digest, on the stack.
struct Hex([u8; 64]);

impl Hex {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn hex_of(digest: &[u8; 32]) -> Hex {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (at, byte) in digest.iter().enumerate() {
        out[2 * at] = DIGITS[(byte >> 4) as usize];
        out[2 * at + 1] = DIGITS[(byte & 0xf) as usize];
    }
    Hex(out)
}

/// Signing keys derived on this thread, by principal and scope: a key serves every request
/// of a day, so the four HMACs that derive it run once a day per principal and service, as
/// the SDKs that sign cache it too. A short list searched without allocating; emptied when it
/// reaches `SIGNING_KEYS_MAX`.
const SIGNING_KEYS_MAX: usize = 64;

/// (access key id, secret, date, region, service) and the key derived for them.
struct SigningKey {
    scope: [String; 5],
    key: [u8; 32],
}

thread_local! {
    static SIGNING_KEYS: std::cell::RefCell<Vec<SigningKey>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn signing_key(principal: &Principal, date: &str, region: &str, service: &str) -> [u8; 32] {
    // The secret is part of the scope, so a principal whose secret changes derives anew.
    let scope = [principal.access_key_id.as_str(), principal.secret_access_key.as_str(), date, region, service];
    SIGNING_KEYS.with(|keys| {
        if let Some(found) = keys.borrow().iter().find(|entry| entry.scope.iter().zip(scope).all(|(a, b)| a == b)) {
            return found.key;
        }
        let mut key = hmac(format!("AWS4{}", principal.secret_access_key).as_bytes(), date.as_bytes());
        for part in [region, service, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let mut keys = keys.borrow_mut();
        if keys.len() >= SIGNING_KEYS_MAX {
            keys.clear();
        }
        keys.push(SigningKey { scope: scope.map(str::to_owned), key });
        key
    })
}

/// The signature's parts, from the header (borrowed) or the query (decoded).
struct Parts<'a> {
    credential: Cow<'a, str>,
    /// `;`-separated, as signed.
    signed_headers: Cow<'a, str>,
    signature: Cow<'a, str>,
    amz_date: Cow<'a, str>,
    /// Presigned: how long the URL lives.
    expires_s: Option<u64>,
}

fn from_header<'a>(value: &'a str, request: &Signed<'a>) -> Result<Parts<'a>, Refusal> {
    let rest = value.strip_prefix(ALGORITHM).filter(|rest| rest.starts_with(' ')).ok_or_else(|| {
        Refusal::Incomplete(format!(
            "Authorization header requires the {ALGORITHM} algorithm, got '{}'",
            value.split(' ').next().unwrap_or("")
        ))
    })?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for item in rest.split(',') {
        match item.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let missing: Vec<&str> =
        [("Credential", credential.is_none()), ("SignedHeaders", signed_headers.is_none()), ("Signature", signature.is_none())]
            .into_iter()
            .filter_map(|(name, absent)| absent.then_some(name))
            .collect();
    if !missing.is_empty() {
        return Err(Refusal::Incomplete(format!(
            "Authorization header requires {} parameter(s). Authorization={value}",
            missing.join(", ")
        )));
    }
    let amz_date = request.headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or_else(|| {
        Refusal::Incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into())
    })?;
    Ok(Parts {
        credential: Cow::Borrowed(credential.unwrap_or_default()),
        signed_headers: Cow::Borrowed(signed_headers.unwrap_or_default()),
        signature: Cow::Borrowed(signature.unwrap_or_default()),
        amz_date: Cow::Borrowed(amz_date),
        expires_s: None,
    })
}

fn from_query<'a>(request: &Signed<'_>) -> Result<Parts<'a>, Refusal> {
    let get = |name: &str| query_pairs(request.query).find(|(key, _)| key == name).map(|(_, value)| value);
    let required = |name: &str| get(name).ok_or_else(|| Refusal::Incomplete(format!("AWS query-string parameters must include '{name}'.")));
    let algorithm = required("X-Amz-Algorithm")?;
    if algorithm != ALGORITHM {
        return Err(Refusal::Incomplete(format!("X-Amz-Algorithm must be {ALGORITHM}, got '{algorithm}'")));
    }
    let expires: u64 =
        required("X-Amz-Expires")?.parse().map_err(|_| Refusal::Incomplete("X-Amz-Expires must be a number of seconds.".into()))?;
    if !(1..=PRESIGNED_EXPIRES_MAX_S).contains(&expires) {
        return Err(Refusal::Incomplete(format!("X-Amz-Expires must be from 1 to {PRESIGNED_EXPIRES_MAX_S} seconds.")));
    }
    Ok(Parts {
        credential: Cow::Owned(required("X-Amz-Credential")?),
        signed_headers: Cow::Owned(required("X-Amz-SignedHeaders")?),
        signature: Cow::Owned(required("X-Amz-Signature")?),
        amz_date: Cow::Owned(required("X-Amz-Date")?),
        expires_s: Some(expires),
    })
}

/// The SHA-256 of the canonical request, fed to the hash piece by piece (no canonical
/// request is built); `payload` stands in for the body's hash when given.
fn canonical_request_hash(request: &Signed<'_>, parts: &Parts<'_>, payload: Option<&str>) -> Result<[u8; 32], Refusal> {
    let mut hash = Sha256::new();
    hash.update(request.method.as_bytes());
    hash.update(b"\n");
    let path = if request.path.is_empty() { "/" } else { request.path };
    if path.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/')) {
        // Nothing to encode (`/`, a queue's path): hashed as it is.
        hash.update(path.as_bytes());
    } else {
        let mut encoded = String::with_capacity(path.len() + 16);
        encode_into(&mut encoded, path.as_bytes(), true);
        hash.update(encoded.as_bytes());
    }
    hash.update(b"\n");
    if !request.query.is_empty() {
        let presigned = parts.expires_s.is_some();
        let mut pairs: Vec<(String, String)> = query_pairs(request.query)
            .filter(|(key, _)| !(presigned && key == "X-Amz-Signature"))
            .map(|(key, value)| (encode(key.as_bytes()), encode(value.as_bytes())))
            .collect();
        pairs.sort();
        for (index, (key, value)) in pairs.iter().enumerate() {
            if index > 0 {
                hash.update(b"&");
            }
            hash.update(key.as_bytes());
            hash.update(b"=");
            hash.update(value.as_bytes());
        }
    }
    hash.update(b"\n");
    if !parts.signed_headers.split(';').any(|name| name == "host") {
        return Err(Refusal::Incomplete("The host header must be signed.".into()));
    }
    for name in parts.signed_headers.split(';') {
        let mut values = request.headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            return Err(Refusal::Incomplete(format!("The signed header {name} is not in the request.")));
        }
        hash.update(name.as_bytes());
        hash.update(b":");
        let mut first_value = true;
        for value in values {
            if !first_value {
                hash.update(b",");
            }
            first_value = false;
            // Trimmed, with runs of spaces folded to one.
            let text = String::from_utf8_lossy(value.as_bytes());
            for (index, word) in text.split_whitespace().enumerate() {
                if index > 0 {
                    hash.update(b" ");
                }
                hash.update(word.as_bytes());
            }
        }
        hash.update(b"\n");
    }
    hash.update(b"\n");
    hash.update(parts.signed_headers.as_bytes());
    hash.update(b"\n");
    let declared = request.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok());
    match (payload, declared) {
        (Some(payload), _) => hash.update(payload.as_bytes()),
        (None, Some(UNSIGNED_PAYLOAD)) => hash.update(UNSIGNED_PAYLOAD.as_bytes()),
        (None, Some(declared)) => {
            let actual = hex_of(&Sha256::digest(request.body).into());
            if declared.as_bytes() != actual.as_bytes() {
                return Err(Refusal::Mismatch("The provided 'x-amz-content-sha256' header does not match what was computed.".into()));
            }
            hash.update(actual.as_bytes());
        }
        (None, None) => hash.update(hex_of(&Sha256::digest(request.body).into()).as_bytes()),
    }
    Ok(hash.finalize().into())
}

/// The query's `key=value` pairs, percent-decoded (`+` stays `+`).
fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|pair| !pair.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key), decode(value))
    })
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex_at = |i: usize| bytes.get(i).and_then(|b| (*b as char).to_digit(16));
        match (bytes[at], hex_at(at + 1), hex_at(at + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                at += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// AWS's URI encoding: everything but `A-Z a-z 0-9 - _ . ~` as `%XX` (and `/` kept when asked).
fn encode_into(out: &mut String, bytes: &[u8], keep_slash: bool) {
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') || (keep_slash && byte == b'/') {
            out.push(byte as char);
        } else {
            const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(DIGITS[(byte >> 4) as usize] as char);
            out.push(DIGITS[(byte & 0xf) as usize] as char);
        }
    }
}

fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    encode_into(&mut out, bytes, false);
    out
}

/// `YYYYMMDDTHHMMSSZ` as Unix seconds.
fn parse_amz_date(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<u64>().ok();
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 || year < 1970 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

fn format_amz_date(unix_s: u64) -> String {
    let text = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_s)).to_string();
    text.replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// 2026-12-06T12:00:00Z, when botocore signed the vectors below.
    const SIGNED_AT: u64 = 1_796_558_400;

    fn credentials() -> Credentials {
        Credentials::parse(
            &format!(r#"{{"principals":[{{"access_key_id":"AKIDEXAMPLE","secret_access_key":"{SECRET}"}}]}}"#),
            "000000000000",
        )
        .unwrap()
    }

    fn header_map(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), http::HeaderValue::from_str(value).unwrap());
        }
        map
    }

    /// Requests signed by botocore's own SigV4 signer (`SigV4Auth`, `SigV4QueryAuth`) with the
    /// key above, at `SIGNED_AT`.
    fn json_post() -> (http::HeaderMap, &'static [u8]) {
        let headers = header_map(&[
            ("host", "127.0.0.1:4566"),
            ("x-amz-target", "AmazonSQS.CreateQueue"),
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-date", "20261206T120000Z"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/us-east-1/sqs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=366a66c4da3cbefcf56911de06aaa4b0335a376085d03143820d4530e262cbf6"),
            ("content-length", "22"),
        ]);
        (headers, br#"{"QueueName":"orders"}"#)
    }

    fn check(method: &str, path: &str, query: &str, headers: &http::HeaderMap, body: &[u8], now: u64) -> Result<String, Refusal> {
        let credentials = credentials();
        let request = Signed { method, path, query, headers, body };
        verify(&credentials, "us-east-1", &request, now).map(|v| format!("{}:{}", v.principal.access_key_id, v.service))
    }

    #[test]
    fn botocores_signatures_verify() {
        let (headers, body) = json_post();
        assert_eq!(check("POST", "/", "", &headers, body, SIGNED_AT + 10), Ok("AKIDEXAMPLE:sqs".into()));
        // A Query POST to a queue URL whose name needs escaping: the path is encoded twice.
        let query_headers = headers_for_query();
        assert_eq!(
            check("POST", "/000000000000/my%20queue", "", &query_headers, b"Action=SendMessage&MessageBody=hello%20world%2B%26", SIGNED_AT),
            Ok("AKIDEXAMPLE:sqs".into())
        );
        // A presigned GET, its query out of order and with an escaped value.
        let presigned = "Action=ListTopics&Version=2010-03-31&b=x%20y&a=1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261206%2Fus-east-1%2Fsns%2Faws4_request&X-Amz-Date=20261206T120000Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature=15d6e3f610c14ef0fae8f2c78420d426bcc206049392c3d4d360d6cda7732c8b";
        let host = header_map(&[("host", "127.0.0.1:4566")]);
        assert_eq!(check("GET", "/", presigned, &host, b"", SIGNED_AT + 299), Ok("AKIDEXAMPLE:sns".into()));
        assert_eq!(check("GET", "/", presigned, &host, b"", SIGNED_AT + 301), Err(Refusal::Expired("Request has expired.".into())));
    }

    fn headers_for_query() -> http::HeaderMap {
        header_map(&[
            ("host", "localhost:4566"),
            ("content-type", "application/x-www-form-urlencoded; charset=utf-8"),
            ("x-amz-date", "20261206T120000Z"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/us-east-1/sqs/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=2cd2121c9ee05cfd383cefd89d7e1abb0d5956d4d618c8e50afdbce3a711ff7e"),
        ])
    }

    #[test]
    fn anything_changed_or_stale_is_refused_with_awss_codes() {
        let (headers, body) = json_post();
        let mismatch = |result: Result<String, Refusal>| matches!(result, Err(Refusal::Mismatch(_)));
        assert!(mismatch(check("POST", "/", "", &headers, br#"{"QueueName":"orderz"}"#, SIGNED_AT)), "another body");
        assert!(mismatch(check("POST", "/x", "", &headers, body, SIGNED_AT)), "another path");
        assert!(mismatch(check("POST", "/", "a=1", &headers, body, SIGNED_AT)), "another query");
        let mut retargeted = headers.clone();
        retargeted.insert("x-amz-target", http::HeaderValue::from_static("AmazonSQS.DeleteQueue"));
        assert!(mismatch(check("POST", "/", "", &retargeted, body, SIGNED_AT)), "another signed header");
        assert!(matches!(check("POST", "/", "", &headers, body, SIGNED_AT + 301), Err(Refusal::Expired(_))));
        assert!(matches!(check("POST", "/", "", &headers, body, SIGNED_AT - 301), Err(Refusal::Expired(_))));
        let mut unknown = headers.clone();
        let other = headers.get("authorization").unwrap().to_str().unwrap().replace("AKIDEXAMPLE", "AKIDOTHER");
        unknown.insert("authorization", http::HeaderValue::from_str(&other).unwrap());
        assert_eq!(check("POST", "/", "", &unknown, body, SIGNED_AT), Err(Refusal::UnknownKey));
        let mut partial = headers.clone();
        partial.insert(
            "authorization",
            http::HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/us-east-1/sqs/aws4_request"),
        );
        assert!(matches!(check("POST", "/", "", &partial, body, SIGNED_AT), Err(Refusal::Incomplete(_))));
        let region = headers.get("authorization").unwrap().to_str().unwrap().replace("us-east-1", "eu-west-1");
        let mut elsewhere = headers.clone();
        elsewhere.insert("authorization", http::HeaderValue::from_str(&region).unwrap());
        assert!(mismatch(check("POST", "/", "", &elsewhere, body, SIGNED_AT)), "another region's scope");
        let unsigned = headers_without_auth(&headers);
        assert_eq!(check("POST", "/", "", &unsigned, body, SIGNED_AT), Err(Refusal::Missing));
    }

    fn headers_without_auth(headers: &http::HeaderMap) -> http::HeaderMap {
        let mut headers = headers.clone();
        headers.remove("authorization");
        headers
    }

    #[test]
    fn amz_dates_read_as_unix_seconds() {
        assert_eq!(parse_amz_date("20261206T120000Z"), Some(SIGNED_AT));
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20240229T235959Z"), Some(1_709_251_199));
        assert_eq!(parse_amz_date("2026-12-06T12:00:00Z"), None);
        assert_eq!(parse_amz_date("20261306T120000Z"), None);
        assert_eq!(format_amz_date(SIGNED_AT), "20261206T120000Z");
    }
}
