//! OpenSearch and Elasticsearch destinations: each batch's documents indexed through the
//! cluster's `_bulk` API into the day's (hour's, week's, month's) index, each with its record id
//! as document id unless `NO_DOCUMENT_ID` (so a retry replaces a document, never duplicates it).
//! Documents the cluster refuses — and all of them while it is down — are sent again, backing
//! off, for the retry duration; then they go to the backup bucket under
//! `AmazonOpenSearchService-failed/` (`elasticsearch-failed/`), with the cluster's reason.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use super::transform::FailedRecord;
use crate::catalog::firehose::{Rotation, SearchDestination, SearchService, Utc};

/// One document to index: the record, and its id (`None`: the cluster picks one).
pub struct Document {
    pub data: Bytes,
    pub id: Option<String>,
}

/// Longest wait between tries.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest a `_bulk` request may take.
const BULK_TIMEOUT: Duration = Duration::from_secs(120);
/// Most bytes of a `_bulk` answer read.
const ANSWER_BYTES_MAX: usize = 64 << 20;

/// The index a record that arrived at `arrival_ms` goes to, as Firehose names rotated indexes:
/// `name-YYYY-MM-DD-HH`, `name-YYYY-MM-DD`, `name-YYYY-wWW` (ISO week), `name-YYYY-MM`.
pub fn index_name(index: &str, rotation: Rotation, arrival_ms: u64) -> String {
    let utc = Utc::of_ms(arrival_ms);
    match rotation {
        Rotation::NoRotation => index.to_owned(),
        Rotation::OneHour => format!("{index}-{:04}-{:02}-{:02}-{:02}", utc.year, utc.month, utc.day, utc.hour),
        Rotation::OneDay => format!("{index}-{:04}-{:02}-{:02}", utc.year, utc.month, utc.day),
        Rotation::OneWeek => {
            let (year, week) = iso_week(arrival_ms);
            format!("{index}-{year:04}-w{week:02}")
        }
        Rotation::OneMonth => format!("{index}-{:04}-{:02}", utc.year, utc.month),
    }
}

/// The ISO 8601 week (its year, and its number) of the UTC day of `ms`.
fn iso_week(ms: u64) -> (u32, u32) {
    let day = (ms / 86_400_000) as i64;
    // 1970-01-01 was a Thursday; weeks start on Monday (0).
    let weekday = (day + 3).rem_euclid(7);
    let thursday = day - weekday + 3;
    let year = Utc::of_ms((thursday.max(0) as u64) * 86_400_000).year;
    let first = days_from_civil(year as i64, 1, 1);
    (year, ((thursday - first) / 7 + 1) as u32)
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let of_era_days = of_era * 365 + of_era / 4 - of_era / 100 + day_of_year;
    era * 146_097 + of_era_days - 719_468
}

/// Indexes `documents`, trying those refused again for up to `retry_s`; answers those refused
/// for good (with the cluster's reason), and the tries made.
pub async fn index_until_done(
    client: &reqwest::Client,
    search: &SearchDestination,
    index: &str,
    documents: Vec<Document>,
    name: &str,
) -> (Vec<FailedRecord>, u32) {
    let started = Instant::now();
    let retry = Duration::from_secs(u64::from(search.retry_s));
    let code = |kind: &str| error_code(kind, search.service);
    // Documents that are not JSON are refused now: no cluster takes them.
    let mut failed = Vec::new();
    let mut pending = Vec::with_capacity(documents.len());
    for document in documents {
        match compact(&document.data) {
            Ok(data) => pending.push(Document { data, id: document.id }),
            Err(why) => failed.push(FailedRecord { data: document.data, code: code("MalformedDocument").into(), message: why }),
        }
    }
    let mut attempts = 0u32;
    // Each pending document's last refusal.
    let mut reasons: Vec<(String, String)> = Vec::new();
    while !pending.is_empty() {
        attempts += 1;
        let refused = match bulk(client, search, index, &pending).await {
            Ok(outcomes) => outcomes,
            Err(why) => pending.iter().map(|_| Some((code("ServiceUnavailable"), why.clone()))).collect(),
        };
        let mut still = Vec::new();
        reasons.clear();
        for (document, outcome) in pending.into_iter().zip(refused) {
            if let Some((code, why)) = outcome {
                still.push(document);
                reasons.push((code, why));
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        let waited = started.elapsed();
        if waited >= retry {
            tracing::warn!(
                delivery_stream = name,
                documents = pending.len(),
                attempts,
                "the cluster refused documents for the retry duration; they go to the backup bucket"
            );
            for (document, (code, why)) in pending.drain(..).zip(reasons.drain(..)) {
                failed.push(FailedRecord { data: document.data, code: code.into(), message: why });
            }
            break;
        }
        if attempts == 1 || attempts.is_multiple_of(10) {
            let (_, why) = &reasons[0];
            tracing::warn!(delivery_stream = name, documents = pending.len(), attempts, %why, "the cluster refused documents; trying again");
        }
        let backoff = Duration::from_millis(500u64 << attempts.min(6)).min(BACKOFF_MAX).min(retry - waited);
        tokio::time::sleep(backoff).await;
    }
    (failed, attempts)
}

/// A document as one `_bulk` line: the record as it is, or re-written on one line when it
/// spans several; `Err` when it is not a JSON object.
fn compact(data: &Bytes) -> Result<Bytes, String> {
    let parsed: Value = serde_json::from_slice(data).map_err(|e| format!("the record is not a JSON document: {e}"))?;
    if !parsed.is_object() {
        return Err("the record is JSON but not an object: a document is an object".into());
    }
    let trimmed = data.trim_ascii();
    if trimmed.contains(&b'\n') || trimmed.contains(&b'\r') {
        return Ok(Bytes::from(parsed.to_string()));
    }
    Ok(data.slice_ref(trimmed))
}

/// One `_bulk` request: each document's outcome (`None`: indexed; else the cluster's error
/// type and reason), or why the whole request failed.
async fn bulk(
    client: &reqwest::Client,
    search: &SearchDestination,
    index: &str,
    documents: &[Document],
) -> Result<Vec<Option<(String, String)>>, String> {
    let mut body = Vec::with_capacity(documents.iter().map(|document| document.data.len() + 96).sum());
    for document in documents {
        let mut action = serde_json::json!({ "_index": index });
        if !search.type_name.is_empty() {
            action["_type"] = serde_json::json!(search.type_name);
        }
        if let Some(id) = &document.id {
            action["_id"] = serde_json::json!(id);
        }
        // Writing JSON to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut body, &serde_json::json!({ "index": action }));
        body.push(b'\n');
        body.extend_from_slice(&document.data);
        body.push(b'\n');
    }
    let url = format!("{}/_bulk", search.endpoint);
    let response = client
        .post(&url)
        .timeout(BULK_TIMEOUT)
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {}", super::deliver::error_chain(&e)))?;
    let status = response.status();
    let mut text = Vec::new();
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("reading the answer of {url}: {e}"))? {
        if text.len() + chunk.len() > ANSWER_BYTES_MAX {
            return Err(format!("{url} answered more than {ANSWER_BYTES_MAX} bytes"));
        }
        text.extend_from_slice(&chunk);
    }
    let shown = || String::from_utf8_lossy(&text[..text.len().min(512)]).into_owned();
    if !status.is_success() {
        return Err(format!("{url} answered {status}: {}", shown()));
    }
    let answer: Value = serde_json::from_slice(&text).map_err(|e| format!("{url} answered a body that is not JSON ({e}): {}", shown()))?;
    let items = answer.get("items").and_then(Value::as_array).ok_or_else(|| format!("{url} answered no items: {}", shown()))?;
    if items.len() != documents.len() {
        return Err(format!("{url} answered {} items for {} documents", items.len(), documents.len()));
    }
    Ok(items
        .iter()
        .map(|item| {
            let result = item.as_object().and_then(|item| item.values().next()).unwrap_or(&Value::Null);
            let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
            if (200..300).contains(&status) {
                return None;
            }
            let error = result.get("error");
            let kind = error.and_then(|error| error.get("type")).and_then(Value::as_str).unwrap_or("DocumentRefused");
            let reason = error.and_then(|error| error.get("reason")).and_then(Value::as_str).unwrap_or_default();
            let kind: String = kind.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
            Some((error_code(&kind, search.service), format!("status {status}: {reason}")))
        })
        .collect())
}

/// Firehose's error code of a document the cluster refused: the service and the cluster's
/// error type (`OS.mapper_parsing_exception`).
fn error_code(kind: &str, service: SearchService) -> String {
    let prefix = match service {
        SearchService::OpenSearch => "OS",
        SearchService::Elasticsearch => "ES",
    };
    format!("{prefix}.{kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_rotate_as_firehose_names_them() {
        // 2026-12-07T13:45:29Z, a Monday of ISO week 50.
        let ms = 1_796_651_129_000;
        assert_eq!(index_name("logs", Rotation::NoRotation, ms), "logs");
        assert_eq!(index_name("logs", Rotation::OneHour, ms), "logs-2026-12-07-13");
        assert_eq!(index_name("logs", Rotation::OneDay, ms), "logs-2026-12-07");
        assert_eq!(index_name("logs", Rotation::OneWeek, ms), "logs-2026-w50");
        assert_eq!(index_name("logs", Rotation::OneMonth, ms), "logs-2026-12");
        // 2027-01-01 is a Friday: ISO week 53 of 2026. 2024-12-30 is a Monday: week 1 of 2025.
        assert_eq!(iso_week(days_from_civil(2027, 1, 1) as u64 * 86_400_000), (2026, 53));
        assert_eq!(iso_week(days_from_civil(2024, 12, 30) as u64 * 86_400_000), (2025, 1));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn documents_are_one_line_json_objects() {
        assert_eq!(compact(&Bytes::from("{\"a\": 1}\n")).unwrap(), Bytes::from("{\"a\": 1}"));
        assert_eq!(compact(&Bytes::from("{\n\"a\":\n1}")).unwrap(), Bytes::from("{\"a\":1}"));
        assert!(compact(&Bytes::from("[1]")).unwrap_err().contains("not an object"));
        assert!(compact(&Bytes::from("nope")).unwrap_err().contains("not a JSON document"));
    }
}
