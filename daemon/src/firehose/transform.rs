//! Transformation as Firehose calls Lambda: the records of a batch, in calls of at most the
//! processor's `BufferSizeInMBs`, POSTed as Firehose's transformation event
//! (`invocationId`, `deliveryStreamArn`, `region`, `records[{recordId,
//! approximateArrivalTimestamp, data}]`) to the function; its answer gives each record back as
//! `Ok` (with its new `data`, and `metadata.partitionKeys` for dynamic partitioning),
//! `Dropped` or `ProcessingFailed`. A call that fails is tried again `NumberOfRetries` times;
//! then its records fail. Failed records go to the error prefix (`processing-failed`), with
//! why, as Firehose writes them.
//!
//! The function is an http(s) URL (POSTed the event as it is), or a Lambda ARN invoked through
//! the Lambda API at `--firehose-lambda-endpoint` (`POST /2015-03-31/functions/NAME/invocations`,
//! as the Lambda Runtime Interface Emulator serves a function's own code): the same function
//! code runs behind either.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::catalog::firehose::{DeliveryStreamMeta, LambdaProcessor};

/// A record that did not make it through, and why (Firehose's error code and message).
pub struct FailedRecord {
    pub data: Bytes,
    /// Firehose's codes, or one naming the destination's own error type (`OS.<type>`).
    pub code: Cow<'static, str>,
    pub message: String,
}

/// What the function made of a batch: the records to deliver (with the partition keys the
/// function gave), those that failed, and the most calls one part of the batch took.
pub struct Transformed {
    pub records: Vec<(Bytes, BTreeMap<String, String>)>,
    /// Where each of `records` was in the batch (its record id).
    pub sources: Vec<usize>,
    pub failed: Vec<FailedRecord>,
    pub dropped: usize,
    pub attempts: u32,
}

/// Longest a call may take (Firehose's own limit on a transformation).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Most bytes of an answer read (Lambda's limit on a synchronous answer is 6 MB).
const ANSWER_BYTES_MAX: usize = 8 << 20;
/// Longest wait between tries of a call.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Where a call goes: the function's URL, or the Lambda API's invocation path for its ARN.
pub fn call_url(lambda: &LambdaProcessor, lambda_endpoint: Option<&str>) -> Result<(String, bool), String> {
    match lambda.arn_function() {
        None => Ok((lambda.function.clone(), false)),
        Some((name, qualifier)) => {
            let endpoint = lambda_endpoint.ok_or_else(|| {
                format!("{} is a Lambda ARN and this server has no --firehose-lambda-endpoint to invoke it through", lambda.function)
            })?;
            let mut url = format!("{}/2015-03-31/functions/{name}/invocations", endpoint.trim_end_matches('/'));
            if let Some(qualifier) = qualifier {
                url.push_str(&format!("?Qualifier={qualifier}"));
            }
            // The operator's own endpoint: it may be on this machine.
            Ok((url, true))
        }
    }
}

/// Runs the batch's records through the function.
pub async fn transform(
    client: &reqwest::Client,
    url: &str,
    meta: &DeliveryStreamMeta,
    lambda: &LambdaProcessor,
    records: &[Bytes],
    arrival_ms: u64,
) -> Transformed {
    let mut out =
        Transformed { records: Vec::with_capacity(records.len()), sources: Vec::new(), failed: Vec::new(), dropped: 0, attempts: 0 };
    let mut start = 0;
    while start < records.len() {
        // One call takes records up to the processor's size (at least one record).
        let mut end = start + 1;
        let mut bytes = records[start].len() as u64;
        while end < records.len() && bytes + records[end].len() as u64 <= lambda.call_bytes {
            bytes += records[end].len() as u64;
            end += 1;
        }
        let part = &records[start..end];
        let mut attempts = 0;
        let answer = loop {
            attempts += 1;
            match call(client, url, meta, part, arrival_ms).await {
                Ok(answer) => break Ok(answer),
                Err(failure) if attempts > lambda.retries => break Err(failure),
                Err((_, reason)) => {
                    tracing::warn!(delivery_stream = %meta.name, function = %lambda.function, attempts, %reason, "a transformation call failed; trying again");
                    tokio::time::sleep(Duration::from_millis(500u64 << attempts.min(5)).min(BACKOFF_MAX)).await;
                }
            }
        };
        out.attempts = out.attempts.max(attempts);
        match answer {
            Ok(answer) => sort(answer, part, start, &mut out),
            Err((code, message)) => {
                tracing::warn!(delivery_stream = %meta.name, function = %lambda.function, attempts, %message, "a transformation failed for good; its records go to the error prefix");
                out.failed.extend(part.iter().map(|data| FailedRecord { data: data.clone(), code: code.into(), message: message.clone() }));
            }
        }
        start = end;
    }
    out
}

/// The transformation event for `records` (record ids are their places in the call).
fn event(meta: &DeliveryStreamMeta, records: &[Bytes], arrival_ms: u64) -> Vec<u8> {
    use base64::Engine;
    let region = meta.arn.split(':').nth(3).unwrap_or_default();
    let encoded: usize = records.iter().map(|record| record.len().div_ceil(3) * 4 + 80).sum();
    let mut body = String::with_capacity(encoded + 256);
    let head =
        serde_json::json!({ "invocationId": crate::catalog::topics::random_uuid(), "deliveryStreamArn": meta.arn, "region": region });
    body.push_str(head.to_string().trim_end_matches('}'));
    body.push_str(r#","records":["#);
    for (index, record) in records.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(&format!(r#"{{"recordId":"{index}","approximateArrivalTimestamp":{arrival_ms},"data":""#));
        base64::engine::general_purpose::STANDARD.encode_string(record, &mut body);
        body.push_str(r#""}"#);
    }
    body.push_str("]}");
    body.into_bytes()
}

/// One call: the function's answer as JSON, or (error code, why) when there is none to use.
async fn call(
    client: &reqwest::Client,
    url: &str,
    meta: &DeliveryStreamMeta,
    records: &[Bytes],
    arrival_ms: u64,
) -> Result<Value, (&'static str, String)> {
    let (meta_owned, records_owned) = (meta.clone(), records.to_vec());
    let body = tokio::task::spawn_blocking(move || event(&meta_owned, &records_owned, arrival_ms))
        .await
        .map_err(|e| ("Lambda.InvokeFailed", format!("the event was not made: {e}")))?;
    let response = client
        .post(url)
        .timeout(CALL_TIMEOUT)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| ("Lambda.InvokeFailed", format!("POST {url}: {}", super::deliver::error_chain(&e))))?;
    let status = response.status();
    let function_error = response.headers().get("X-Amz-Function-Error").map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let text = read_limited(response).await.map_err(|why| ("Lambda.JsonProcessingException", format!("{url}: {why}")))?;
    let shown = || String::from_utf8_lossy(&text[..text.len().min(512)]).into_owned();
    if let Some(kind) = function_error {
        return Err(("Lambda.FunctionError", format!("the function failed ({kind}): {}", shown())));
    }
    if !status.is_success() {
        return Err(("Lambda.FunctionError", format!("{url} answered {status}: {}", shown())));
    }
    let answer: Value = serde_json::from_slice(&text)
        .map_err(|e| ("Lambda.JsonProcessingException", format!("the function's answer is not JSON ({e}): {}", shown())))?;
    if !answer.get("records").is_some_and(Value::is_array) {
        return Err(("Lambda.JsonProcessingException", format!("the function's answer has no records array: {}", shown())));
    }
    Ok(answer)
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut text = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("reading the answer: {e}"))? {
        if text.len() + chunk.len() > ANSWER_BYTES_MAX {
            return Err(format!("the answer is longer than {ANSWER_BYTES_MAX} bytes"));
        }
        text.extend_from_slice(&chunk);
    }
    Ok(text)
}

/// Sorts a call's answer into delivered, dropped and failed records. Every record sent must
/// come back once, by its id; one that does not, or comes back twice, or with a result or
/// data that is not understood, fails.
fn sort(answer: Value, sent: &[Bytes], first: usize, out: &mut Transformed) {
    use base64::Engine;
    let mut results: Vec<Option<Answered>> = (0..sent.len()).map(|_| None).collect();
    let fail = |index: usize, code: &'static str, message: String| {
        Answered::Failed(FailedRecord { data: sent[index].clone(), code: code.into(), message })
    };
    for item in answer["records"].as_array().into_iter().flatten() {
        let id = item.get("recordId").and_then(Value::as_str).and_then(|id| id.parse::<usize>().ok());
        // An id that was never sent: the record it stands for is missing, below.
        let Some(index) = id.filter(|index| *index < sent.len()) else { continue };
        if results[index].is_some() {
            results[index] = Some(fail(index, "Lambda.DuplicatedRecordId", "the function answered this record twice".into()));
            continue;
        }
        let result = item.get("result").and_then(Value::as_str).unwrap_or_default();
        results[index] = Some(match result {
            "Ok" => {
                let data = item.get("data").and_then(Value::as_str).map(|data| base64::engine::general_purpose::STANDARD.decode(data));
                let keys = item.get("metadata").and_then(|metadata| metadata.get("partitionKeys")).and_then(Value::as_object);
                let keys: Option<BTreeMap<String, String>> = keys
                    .map_or(Some(BTreeMap::new()), |keys| keys.iter().map(|(name, value)| Some((name.clone(), scalar(value)?))).collect());
                match (data, keys) {
                    (Some(Ok(data)), Some(keys)) => Answered::Delivered(Bytes::from(data), keys),
                    (Some(Err(e)), _) => fail(index, "Lambda.InvalidReturnedData", format!("the record's data is not base64: {e}")),
                    (None, _) => fail(index, "Lambda.InvalidReturnedData", "the record came back Ok with no data".into()),
                    (_, None) => fail(index, "Lambda.InvalidPartitionKeys", "a partition key's value is not a string or number".into()),
                }
            }
            "Dropped" => Answered::Dropped,
            "ProcessingFailed" => fail(index, "Lambda.ProcessingFailed", "the function answered ProcessingFailed".into()),
            other => fail(index, "Lambda.InvalidReturnedResult", format!("the result {other:?} is not Ok, Dropped or ProcessingFailed")),
        });
    }
    for (index, result) in results.into_iter().enumerate() {
        match result.unwrap_or_else(|| fail(index, "Lambda.MissingRecordId", format!("the function's answer has no record {index}"))) {
            Answered::Delivered(data, keys) => {
                out.records.push((data, keys));
                out.sources.push(first + index);
            }
            Answered::Dropped => out.dropped += 1,
            Answered::Failed(failed) => out.failed.push(failed),
        }
    }
}

/// What the function answered for one record.
enum Answered {
    Delivered(Bytes, BTreeMap<String, String>),
    Dropped,
    Failed(FailedRecord),
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_is_sorted_by_record_id_and_what_is_missing_or_twice_fails() {
        let sent: Vec<Bytes> = ["a", "b", "c", "d", "e"].iter().map(|text| Bytes::from(*text)).collect();
        let answer = json!({"records": [
            {"recordId": "1", "result": "Ok", "data": "Qg==", "metadata": {"partitionKeys": {"k": "v", "n": 7}}},
            {"recordId": "0", "result": "Dropped"},
            {"recordId": "2", "result": "ProcessingFailed"},
            {"recordId": "2", "result": "Ok", "data": "Qw=="},
            {"recordId": "3", "result": "Maybe"},
            {"recordId": "99", "result": "Ok", "data": ""},
        ]});
        let mut out = Transformed { records: Vec::new(), sources: Vec::new(), failed: Vec::new(), dropped: 0, attempts: 1 };
        sort(answer, &sent, 10, &mut out);
        assert_eq!(out.sources, [11]);
        assert_eq!(out.dropped, 1);
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.records[0].0, Bytes::from("B"));
        assert_eq!(out.records[0].1, BTreeMap::from([("k".to_owned(), "v".to_owned()), ("n".to_owned(), "7".to_owned())]));
        let codes: Vec<(&str, &str)> =
            out.failed.iter().map(|failed| (std::str::from_utf8(&failed.data).unwrap_or_default(), failed.code.as_ref())).collect();
        assert_eq!(codes, [("c", "Lambda.DuplicatedRecordId"), ("d", "Lambda.InvalidReturnedResult"), ("e", "Lambda.MissingRecordId")]);
    }
}
