//! Sluice through its AWS-compatible HTTP gateway, the way an AWS SDK talks to SQS: the AWS
//! JSON 1.0 protocol (`X-Amz-Target: AmazonSQS.<Action>`) over HTTP/1.1 keep-alive
//! connections. Producers SendMessageBatch; consumers ReceiveMessage (one-second long poll)
//! and DeleteMessageBatch — the same requests as `--target sluice`, so the two differ only
//! in the front end.
//!
//! HTTP/1.1 carries one request at a time per connection (no pipelining, as in the SDKs), so
//! each of the `--connections` per core is a pool, like an SDK's: a request takes an idle
//! connection or opens one, and puts it back when its answer is read. A pool holds at most
//! [`POOL_CONNECTIONS_MAX`] connections; further requests wait for one (an SDK's pool limit,
//! so an open loop that outruns the gateway queues in the client instead of opening
//! thousands of connections; the wait counts in the latency).
//!
//! Runs on a current-thread tokio runtime per core (hyper's client, as the AWS SDKs use it).
//! With `--access-key-id` and `--secret-access-key` every request is signed with AWS Signature
//! Version 4 as the SDKs sign it (for a daemon started with `--credentials`); without them
//! requests go unsigned, which the gateway accepts while it checks nothing.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use serde_json::Value;

use crate::run::{stamp_of, Broker, Consumer, Error, Producer};

pub const GUARANTEE: &str = "as --target sluice: acknowledged once written to its log and, with the daemon's --fsync always, \
fdatasynced (group commit); with --fsync never, once in memory";

/// Batch entry ids, so a send costs no formatting.
const IDS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

pub struct SluiceHttp {
    pub endpoint: String,
    pub queue: String,
    /// (access key id, secret) to sign with, if any.
    pub key: Option<(String, String)>,
}

/// Signs requests as an SDK does: SigV4 for `sqs` in us-east-1, the signing key derived once
/// per day.
struct Signer {
    access_key_id: String,
    secret: String,
    /// (date, signing key) of the last derivation.
    key: RefCell<(String, [u8; 32])>,
}

impl Signer {
    /// (`x-amz-date`, `authorization`) for a POST to `/` of `host` with `target` and `body`.
    fn sign(&self, host: &str, target: &str, body: &[u8]) -> (String, String) {
        use sha2::Digest;
        use sluice_protocol::auth::{hex, hmac_sha256 as hmac};
        let now = std::time::SystemTime::now();
        let stamp = httpdate_compact(now);
        let date = &stamp[..8];
        let payload = hex(&sha2::Sha256::digest(body));
        let canonical = format!(
            "POST\n/\n\ncontent-type:application/x-amz-json-1.0\nhost:{host}\nx-amz-date:{stamp}\nx-amz-target:{target}\n\ncontent-type;host;x-amz-date;x-amz-target\n{payload}"
        );
        let scope = format!("{date}/us-east-1/sqs/aws4_request");
        let to_sign = format!("AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}", hex(&sha2::Sha256::digest(canonical.as_bytes())));
        let mut cached = self.key.borrow_mut();
        if cached.0 != date {
            let mut key = hmac(format!("AWS4{}", self.secret).as_bytes(), date.as_bytes());
            for part in ["us-east-1", "sqs", "aws4_request"] {
                key = hmac(&key, part.as_bytes());
            }
            *cached = (date.to_owned(), key);
        }
        let signature = hex(&hmac(&cached.1, to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={signature}",
            self.access_key_id
        );
        (stamp, authorization)
    }
}

/// `YYYYMMDDTHHMMSSZ` for `time`.
fn httpdate_compact(time: std::time::SystemTime) -> String {
    let secs = time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// One HTTP/1.1 connection's request half; its connection task runs beside it.
type Sender = SendRequest<Full<Bytes>>;

/// Most connections one pool opens (the AWS SDKs' pools hold 10 to 50 by default; the
/// bench's closed loop keeps 48 requests per pool outstanding).
pub const POOL_CONNECTIONS_MAX: usize = 64;

/// Keep-alive connections to the gateway, used one request at a time each.
pub struct Pool {
    endpoint: String,
    signer: Option<Signer>,
    idle: RefCell<Vec<Sender>>,
    /// One permit per connection the pool may have in use.
    permits: tokio::sync::Semaphore,
}

impl Pool {
    fn new(endpoint: &str, key: Option<&(String, String)>) -> Rc<Pool> {
        Rc::new(Pool {
            endpoint: endpoint.to_owned(),
            signer: key.map(|(id, secret)| Signer {
                access_key_id: id.clone(),
                secret: secret.clone(),
                key: RefCell::new((String::new(), [0; 32])),
            }),
            idle: RefCell::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(POOL_CONNECTIONS_MAX),
        })
    }

    async fn open(&self) -> Result<Sender, Error> {
        let stream = tokio::net::TcpStream::connect(&self.endpoint).await.map_err(|e| format!("connecting to {}: {e}", self.endpoint))?;
        stream.set_nodelay(true).ok();
        let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", self.endpoint))?;
        tokio::task::spawn_local(async move {
            if let Err(error) = connection.await {
                eprintln!("sluice-load: HTTP connection ended: {error}");
            }
        });
        Ok(sender)
    }

    /// Posts one AWS JSON 1.0 request for `action` (`AmazonSQS.<action>` is its target);
    /// returns the parsed answer, or the gateway's error (`__type` and `message`) for any
    /// status but 200.
    async fn call(&self, action: &'static str, body: Vec<u8>) -> Result<Value, Error> {
        let _permit = self.permits.acquire().await.map_err(|e| format!("{action}: {e}"))?;
        let idle = self.idle.borrow_mut().pop();
        let mut sender = match idle {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.open().await?,
        };
        sender.ready().await.map_err(|e| format!("{action}: connection lost: {e}"))?;
        let target = format!("AmazonSQS.{action}");
        let mut request = hyper::Request::post("/")
            .header(hyper::header::HOST, self.endpoint.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/x-amz-json-1.0")
            .header("x-amz-target", target.as_str());
        if let Some(signer) = &self.signer {
            let (stamp, authorization) = signer.sign(&self.endpoint, &target, &body);
            request = request.header("x-amz-date", stamp).header(hyper::header::AUTHORIZATION, authorization);
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| format!("{action}: {e}"))?;
        let response = sender.send_request(request).await.map_err(|e| format!("{action}: {e}"))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| format!("{action}: reading the answer: {e}"))?.to_bytes();
        // The answer was read whole, so the connection is ready for the next request.
        self.idle.borrow_mut().push(sender);
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{action}: answer is not JSON ({e}): {bytes:?}"))?;
        if status != hyper::StatusCode::OK {
            return Err(format!("{action}: HTTP {status}: {} {}", value["__type"], value["message"]));
        }
        Ok(value)
    }
}

/// Appends `text` as a JSON string (quoted and escaped).
fn push_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing JSON to a Vec cannot fail");
}

/// `{"QueueUrl":URL,"Entries":[{"Id":ID,KEY:VALUE},…]}`, the shape of both batch requests.
fn batch_request<'a>(queue_url: &str, key: &str, entries: impl Iterator<Item = &'a str>, bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 64 + queue_url.len());
    out.extend_from_slice(b"{\"QueueUrl\":");
    push_string(&mut out, queue_url);
    out.extend_from_slice(b",\"Entries\":[");
    for (index, (value, id)) in entries.zip(IDS).enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Id\":\"");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        push_string(&mut out, value);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// Fails if a batch answer lists failed entries.
fn all_succeeded(action: &str, answer: &Value) -> Result<(), Error> {
    match answer.get("Failed").and_then(Value::as_array) {
        Some(failed) if !failed.is_empty() => Err(format!("{action}: {} of the batch failed, first: {}", failed.len(), failed[0])),
        _ => Ok(()),
    }
}

/// Creates the queue (kept if it exists) and returns its URL.
async fn create_queue(pool: &Pool, queue: &str) -> Result<String, Error> {
    let mut body = b"{\"QueueName\":".to_vec();
    push_string(&mut body, queue);
    body.push(b'}');
    let answer = pool.call("CreateQueue", body).await?;
    answer["QueueUrl"].as_str().map(str::to_owned).ok_or_else(|| format!("CreateQueue answered without a QueueUrl: {answer}"))
}

/// Creates the queue before the run.
pub fn setup(endpoint: &str, queue: &str, key: Option<&(String, String)>) -> Result<(), Error> {
    let runtime = crate::peer_runtime();
    tokio::task::LocalSet::new()
        .block_on(&runtime, async { create_queue(&Pool::new(endpoint, key), queue).await })
        .map(drop)
        .map_err(|e| format!("cannot use Sluice's HTTP gateway at {endpoint}: {e}"))
}

/// A pool and the queue's URL, as its gateway gives it.
pub struct Connection {
    pool: Rc<Pool>,
    queue_url: Rc<str>,
}

#[derive(Clone)]
pub struct HttpProducer {
    pool: Rc<Pool>,
    queue_url: Rc<str>,
}

pub struct HttpConsumer {
    pool: Rc<Pool>,
    queue_url: Rc<str>,
    receipts: Vec<String>,
    receive: Vec<u8>,
}

impl Broker for SluiceHttp {
    type Executor = crate::run::Tokio;
    type Connection = Connection;
    type Producer = HttpProducer;
    type Consumer = HttpConsumer;

    async fn connect(&self) -> Result<Connection, Error> {
        let pool = Pool::new(&self.endpoint, self.key.as_ref());
        let queue_url = create_queue(&pool, &self.queue).await?.into();
        Ok(Connection { pool, queue_url })
    }

    async fn producer(&self, connection: &Connection) -> Result<HttpProducer, Error> {
        Ok(HttpProducer { pool: connection.pool.clone(), queue_url: connection.queue_url.clone() })
    }

    async fn consumer(&self, connection: &Connection, _index: usize) -> Result<HttpConsumer, Error> {
        let mut receive = b"{\"QueueUrl\":".to_vec();
        push_string(&mut receive, &connection.queue_url);
        receive.extend_from_slice(b",\"WaitTimeSeconds\":1,\"MaxNumberOfMessages\":");
        Ok(HttpConsumer { pool: connection.pool.clone(), queue_url: connection.queue_url.clone(), receipts: Vec::new(), receive })
    }
}

impl Producer for HttpProducer {
    async fn send(&self, bodies: Vec<Bytes>) -> Result<(), Error> {
        let bytes = bodies.iter().map(|b| b.len() + 32).sum();
        // The load's bodies are ASCII (a decimal stamp, then `x`s).
        let texts = bodies.iter().map(|b| std::str::from_utf8(b).unwrap_or_default());
        let answer = self.pool.call("SendMessageBatch", batch_request(&self.queue_url, "MessageBody", texts, bytes)).await?;
        all_succeeded("SendMessageBatch", &answer)
    }
}

impl Consumer for HttpConsumer {
    const RECEIVE_IS_A_REQUEST: bool = true;

    async fn receive(&mut self, max: usize, stamps: &mut Vec<u64>) -> Result<(), Error> {
        let mut body = Vec::with_capacity(self.receive.len() + 3);
        body.extend_from_slice(&self.receive);
        body.extend_from_slice(max.to_string().as_bytes());
        body.push(b'}');
        let mut answer = self.pool.call("ReceiveMessage", body).await?;
        self.receipts.clear();
        let Some(Value::Array(messages)) = answer.get_mut("Messages").map(Value::take) else { return Ok(()) };
        for mut message in messages {
            stamps.extend(message["Body"].as_str().and_then(|body| stamp_of(body.as_bytes())));
            match message["ReceiptHandle"].take() {
                Value::String(receipt) => self.receipts.push(receipt),
                other => return Err(format!("ReceiveMessage: a message without a ReceiptHandle: {other}")),
            }
        }
        Ok(())
    }

    async fn acknowledge(&mut self) -> Result<(), Error> {
        if self.receipts.is_empty() {
            return Ok(());
        }
        let bytes = self.receipts.iter().map(|r| r.len() + 40).sum();
        let body = batch_request(&self.queue_url, "ReceiptHandle", self.receipts.iter().map(String::as_str), bytes);
        self.receipts.clear();
        let answer = self.pool.call("DeleteMessageBatch", body).await?;
        all_succeeded("DeleteMessageBatch", &answer)
    }
}

#[cfg(test)]
mod signing_tests {
    use super::*;

    #[test]
    fn compact_dates_are_utc_civil_dates() {
        let at = |secs: u64| httpdate_compact(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(1_796_558_400), "20261206T120000Z");
        assert_eq!(at(1_709_251_199), "20240229T235959Z");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_requests_are_json_with_escaped_strings() {
        let body = batch_request("http://h/1/q", "MessageBody", ["a\"b", "c\\d"].into_iter(), 0);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["QueueUrl"], "http://h/1/q");
        assert_eq!(value["Entries"][0]["Id"], "0");
        assert_eq!(value["Entries"][0]["MessageBody"], "a\"b");
        assert_eq!(value["Entries"][1]["Id"], "1");
        assert_eq!(value["Entries"][1]["MessageBody"], "c\\d");
        assert_eq!(value["Entries"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn failed_entries_fail_the_batch() {
        assert!(all_succeeded("X", &serde_json::json!({"Successful": [{"Id": "0"}], "Failed": []})).is_ok());
        assert!(all_succeeded("X", &serde_json::json!({"Successful": []})).is_ok());
        let error = all_succeeded("X", &serde_json::json!({"Failed": [{"Id": "3", "Code": "InvalidParameterValue"}]})).unwrap_err();
        assert!(error.contains("1 of the batch failed") && error.contains("InvalidParameterValue"), "{error}");
    }
}
