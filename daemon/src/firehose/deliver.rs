//! The delivery thread: where batches leave the shards for their destinations. The object
//! store client (`object_store`) runs on tokio and the shards on glommio, so one thread (not
//! pinned to a shard's core) runs a current-thread tokio runtime for every destination; the
//! shards hand it batches over a channel and await each one's outcome, never blocking on a
//! destination themselves. Processing and compression run on its blocking pool.
//!
//! Destinations: an S3-compatible store (`--firehose-s3-endpoint`), or a directory standing
//! for each bucket (`--firehose-local-dir`), where an object is written to a temporary file,
//! synced, renamed into place and its directory synced — durable before it is reported
//! delivered, as an S3 PUT is; and HTTP endpoints, POSTed to as Firehose's HTTP endpoint
//! delivery specification says (`reqwest`), refusing private addresses unless
//! `--http-endpoints-allow-private`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::channel::oneshot;
use object_store::{ObjectStore, ObjectStoreExt};

use super::convert;
use super::keys;
use super::process;
use super::search;
use super::table;
use super::transform::{self, FailedRecord};
use crate::catalog::firehose::{Compression, DeliveryStreamMeta, Destination, HttpDestination, PartitionKeys, Processor, S3Destination};

/// Where S3 destinations write (from `Config`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ObjectTarget {
    /// Bucket `b` is the directory `<dir>/b`.
    Local(PathBuf),
    /// An S3-compatible endpoint, in `region`, with these credentials (else the environment's).
    S3 { endpoint: String, region: String, access_key_id: Option<String>, secret_access_key: Option<String> },
}

/// Where deliveries go and how, from the settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Targets {
    pub objects: ObjectTarget,
    /// HTTP endpoints may be loopback, private or link-local addresses.
    pub allow_private: bool,
    /// Extra certificate authorities HTTPS endpoints are checked against.
    pub ca_file: Option<PathBuf>,
    /// The Lambda API endpoint transformation functions given by ARN are invoked through.
    pub lambda_endpoint: Option<String>,
    /// The tables file format conversion reads schemas from (`--firehose-glue-tables`).
    pub glue_tables: Option<PathBuf>,
}

/// Why a batch goes to the backup bucket instead: the destination refused it for its whole
/// retry duration.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: String,
    pub attempts: u32,
}

/// One batch of records for a delivery stream's destination.
pub struct Batch {
    pub meta: Arc<DeliveryStreamMeta>,
    pub targets: Targets,
    pub records: Vec<Bytes>,
    /// Each record's id (`record_ids` prefix and sequence number): the RecordId its put was
    /// answered with, and its document id in a search cluster — the same on every try.
    pub record_ids: (String, Arc<[u64]>),
    /// Arrival time of the first record (the object's time in its key).
    pub arrival_ms: u64,
    /// Set: write the records to the backup bucket as failed (`http-endpoint-failed`).
    pub failure: Option<Failure>,
}

/// What became of a batch: the object's key, or why it was not written.
pub type Outcome = Result<String, String>;

struct Job {
    batch: Batch,
    done: oneshot::Sender<Outcome>,
}

static OUTBOX: OnceLock<tokio::sync::mpsc::UnboundedSender<Job>> = OnceLock::new();

/// Hands `batch` to the delivery thread (started on first use); resolves with its outcome.
pub async fn deliver(batch: Batch) -> Outcome {
    let outbox = OUTBOX.get_or_init(|| {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let started = std::thread::Builder::new().name("firehose-delivery".into()).spawn(move || run(receiver));
        if let Err(error) = started {
            tracing::error!(%error, "cannot start the Firehose delivery thread");
        }
        sender
    });
    let (done, outcome) = oneshot::channel();
    if outbox.send(Job { batch, done }).is_err() {
        return Err("the delivery thread is not running".into());
    }
    outcome.await.unwrap_or_else(|_| Err("the delivery thread dropped the batch".into()))
}

fn run(mut receiver: tokio::sync::mpsc::UnboundedReceiver<Job>) {
    // Deliveries are background work: their threads (this one and the pool that compresses and
    // writes) run at a lower priority, so the shards' requests do not wait behind them.
    lower_priority();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().on_thread_start(lower_priority).build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the Firehose delivery runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let clients: Arc<Clients> = Arc::default();
        while let Some(job) = receiver.recv().await {
            let clients = clients.clone();
            tokio::spawn(async move {
                let outcome = deliver_batch(job.batch, &clients).await;
                let _ = job.done.send(outcome);
            });
        }
    });
}

/// Lowers the calling thread's scheduling priority (nice 10); a failure only leaves it as it was.
fn lower_priority() {
    // SAFETY: setpriority with PRIO_PROCESS and 0 changes the calling thread's nice value only.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

type Stores = std::sync::Mutex<HashMap<(ObjectTarget, String), Arc<dyn ObjectStore>>>;

/// The delivery thread's clients: object stores by target and bucket, HTTP clients by settings.
#[derive(Default)]
struct Clients {
    stores: Stores,
    http: std::sync::Mutex<HashMap<(bool, Option<PathBuf>), reqwest::Client>>,
}

/// A batch's way out: through the transformation function (when one is configured), then to
/// the destination — grouped into one object per partition key set when dynamic partitioning
/// is on — with the records that failed on the way written under the error prefix, and the
/// source records to the backup bucket when it is enabled. Any write that fails fails the
/// whole batch, which is tried again from the start: records may arrive twice, never not at all.
async fn deliver_batch(batch: Batch, clients: &Clients) -> Outcome {
    let meta = batch.meta.clone();
    if let Some(failure) = &batch.failure {
        let failed: Vec<FailedRecord> = batch
            .records
            .iter()
            .map(|data| FailedRecord { data: data.clone(), code: "HttpEndpoint.DeliveryFailed".into(), message: failure.reason.clone() })
            .collect();
        return write_failed(&batch, meta.destination.bucket(), failed, "http-endpoint-failed", failure.attempts, None, &clients.stores)
            .await;
    }
    let processors = meta.destination.processors();
    let delimiter = process::delimiter(processors).to_vec();
    let lambda = processors.iter().find_map(|processor| match processor {
        Processor::Lambda(lambda) => Some(lambda),
        _ => None,
    });
    // 1. The transformation function.
    let (records, sources, processing_failed, attempts) = match lambda {
        Some(lambda) => {
            let (url, operators) = transform::call_url(lambda, batch.targets.lambda_endpoint.as_deref())?;
            let client = http_client(clients, &batch.targets, operators)?;
            let out = transform::transform(&client, &url, &meta, lambda, &batch.records, batch.arrival_ms).await;
            if out.dropped > 0 || !out.failed.is_empty() {
                tracing::debug!(delivery_stream = %meta.name, dropped = out.dropped, failed = out.failed.len(), "transformed");
            }
            (out.records, Some(out.sources), out.failed, out.attempts)
        }
        // Untransformed, each record is where it was in the batch (`sources` `None`).
        None => (batch.records.iter().map(|record| (record.clone(), BTreeMap::new())).collect(), None, Vec::new(), 0),
    };
    let lambda_arn = lambda.map(|lambda| lambda.function.as_str());
    // 2. The destination.
    let written = match &meta.destination {
        Destination::S3(s3) => {
            let mut keys = Vec::new();
            let groups = match s3.dynamic_partitioning {
                Some(_) => {
                    let query = processors.iter().find_map(|processor| match processor {
                        Processor::MetadataExtraction { query, .. } => Some(query.clone()),
                        _ => None,
                    });
                    let prefix = s3.prefix.clone();
                    let partitioned = tokio::task::spawn_blocking(move || process::partition(records, query.as_ref(), &prefix))
                        .await
                        .map_err(|e| format!("partitioning stopped: {e}"))?;
                    if !partitioned.failed.is_empty() {
                        let failed = partitioned
                            .failed
                            .into_iter()
                            .map(|(data, why)| FailedRecord {
                                data,
                                code: "DynamicPartitioning.MetadataExtractionFailed".into(),
                                message: why,
                            })
                            .collect();
                        keys.push(write_failed(&batch, s3, failed, "partitioning-failed", 1, None, &clients.stores).await?);
                    }
                    partitioned.groups
                }
                None => BTreeMap::from([(PartitionKeys::default(), records.into_iter().map(|(record, _)| record).collect())]),
            };
            match &s3.conversion {
                None => {
                    let writes = groups
                        .into_iter()
                        .filter(|(_, records)| !records.is_empty())
                        .map(|(partition, records)| write_object(&batch, s3, records, delimiter.clone(), partition, &clients.stores));
                    keys.extend(futures::future::try_join_all(writes).await?);
                }
                Some(conversion) => {
                    let file = batch.targets.glue_tables.as_deref().ok_or("format conversion needs --firehose-glue-tables")?;
                    let columns = convert::table_columns(file, &conversion.database, &conversion.table)?;
                    for (partition, records) in groups.into_iter().filter(|(_, records)| !records.is_empty()) {
                        let (columns, conversion) = (columns.clone(), conversion.clone());
                        let (parquet, refused) = tokio::task::spawn_blocking(move || convert::to_parquet(&records, &columns, &conversion))
                            .await
                            .map_err(|e| format!("the conversion stopped: {e}"))??;
                        if !refused.is_empty() {
                            let failed = refused
                                .into_iter()
                                .map(|(data, why)| FailedRecord { data, code: "DataFormatConversion.MalformedData".into(), message: why })
                                .collect();
                            keys.push(write_failed(&batch, s3, failed, "format-conversion-failed", 1, None, &clients.stores).await?);
                        }
                        let key = keys::object_key(&batch.meta, s3, batch.arrival_ms, None, &partition);
                        let key = if s3.file_extension.is_empty() { format!("{key}.parquet") } else { key };
                        put_object(&clients.stores, &batch.targets.objects, s3, &key, parquet).await?;
                        keys.push(key);
                    }
                }
            }
            // The source records as they came, each with the delimiter (if one is configured)
            // so that the backup reads as records, too.
            if let Some(backup) = &s3.backup {
                keys.push(
                    write_object(&batch, backup, batch.records.clone(), delimiter.clone(), PartitionKeys::default(), &clients.stores)
                        .await?,
                );
            }
            keys.into_iter().next().unwrap_or_default()
        }
        Destination::Http(http) => {
            let records: Vec<Bytes> = records.into_iter().map(|(record, _)| record).collect();
            if !records.is_empty() {
                let client = http_client(clients, &batch.targets, false)?;
                post(&client, &meta, http, &records).await?;
            }
            if http.backup_all {
                write_object(&batch, &http.s3, batch.records.clone(), delimiter, PartitionKeys::default(), &clients.stores).await?;
            }
            http.url.clone()
        }
        Destination::Search(search) => {
            let (prefix, seqs) = &batch.record_ids;
            let documents = records
                .into_iter()
                .enumerate()
                .map(|(at, (data, _))| {
                    let source = sources.as_ref().map_or(at, |sources| sources[at]);
                    let id = seqs.get(source).filter(|_| search.document_ids).map(|seq| super::service::record_id(prefix, *seq));
                    search::Document { data, id }
                })
                .collect();
            let client = http_client(clients, &batch.targets, false)?;
            let index = search::index_name(&search.index, search.rotation, batch.arrival_ms);
            let (refused, tries) = search::index_until_done(&client, search, &index, documents, &meta.name).await;
            if !refused.is_empty() {
                write_failed(&batch, &search.s3, refused, search.service.error_type(), tries, None, &clients.stores).await?;
            }
            if search.backup_all {
                write_object(&batch, &search.s3, batch.records.clone(), delimiter, PartitionKeys::default(), &clients.stores).await?;
            }
            format!("{}/{index}", search.endpoint)
        }
        Destination::Table(table) => {
            let records: Vec<Bytes> = records.into_iter().map(|(record, _)| record).collect();
            // The intermediate object first, as Firehose writes it before its COPY.
            let key = write_object(&batch, &table.s3, records.clone(), delimiter, PartitionKeys::default(), &clients.stores).await?;
            if !records.is_empty() {
                if let Err((why, tries)) = table::load_until_done(table, batch.targets.allow_private, records, &meta.name).await {
                    tracing::warn!(delivery_stream = %meta.name, key, tries, %why, "a load failed for the retry duration; its manifest goes under errors/manifests/");
                    let manifest =
                        serde_json::json!({ "entries": [{ "url": format!("s3://{}/{key}", table.s3.bucket), "mandatory": true }] });
                    let manifest_key = keys::manifest_key(&meta, batch.arrival_ms);
                    put_object(&clients.stores, &batch.targets.objects, &table.s3, &manifest_key, manifest.to_string().into_bytes())
                        .await?;
                }
            }
            // The source records as they came (before any function), when backed up.
            if let Some(backup) = &table.backup {
                let delimiter = process::delimiter(processors).to_vec();
                write_object(&batch, backup, batch.records.clone(), delimiter, PartitionKeys::default(), &clients.stores).await?;
            }
            key
        }
    };
    // 3. What the function failed: under the error prefix of the destination's bucket.
    if !processing_failed.is_empty() {
        write_failed(&batch, meta.destination.bucket(), processing_failed, "processing-failed", attempts, lambda_arn, &clients.stores)
            .await?;
    }
    Ok(written)
}

/// Failed records as Firehose writes them under the error prefix (`error_type` fills
/// `!{firehose:error-output-type}`): one JSON object a line, with why.
async fn write_failed(
    batch: &Batch,
    s3: &S3Destination,
    failed: Vec<FailedRecord>,
    error_type: &str,
    attempts: u32,
    lambda_arn: Option<&str>,
    stores: &Stores,
) -> Outcome {
    let key = keys::object_key(&batch.meta, s3, batch.arrival_ms, Some(error_type), &PartitionKeys::default());
    let (arrival_ms, lambda_arn) = (batch.arrival_ms, lambda_arn.map(str::to_owned));
    let body = processed(move || failed_records(&failed, arrival_ms, attempts, lambda_arn.as_deref()), s3.compression, &key).await?;
    put_object(stores, &batch.targets.objects, s3, &key, body).await?;
    Ok(key)
}

/// Records that failed, as Firehose writes them to the error prefix: one JSON object a line.
fn failed_records(failed: &[FailedRecord], arrival_ms: u64, attempts: u32, lambda_arn: Option<&str>) -> Vec<u8> {
    use base64::Engine;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut out = Vec::new();
    for record in failed {
        let mut line = serde_json::json!({
            "attemptsMade": attempts,
            "arrivalTimestamp": arrival_ms,
            "errorCode": record.code,
            "errorMessage": record.message,
            "attemptEndingTimestamp": now_ms,
            "rawData": base64::engine::general_purpose::STANDARD.encode(&record.data),
        });
        if let Some(arn) = lambda_arn {
            line["lambdaArn"] = serde_json::json!(arn);
        }
        // Writing JSON to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &line);
        out.push(b'\n');
    }
    out
}

/// The body `make` makes, compressed as `compression` (a ZIP's one entry named after `key`),
/// both on the blocking pool: they touch every byte.
async fn processed(
    make: impl FnOnce() -> Vec<u8> + Send + 'static,
    compression: crate::catalog::firehose::Compression,
    key: &str,
) -> Result<Vec<u8>, String> {
    let entry = key.rsplit('/').next().unwrap_or(key).trim_end_matches(".zip").to_owned();
    tokio::task::spawn_blocking(move || process::compress(make(), compression, &entry))
        .await
        .map_err(|e| format!("processing stopped: {e}"))?
        .map_err(|e| format!("compression failed: {e}"))
}

/// The records as an object in `s3`'s bucket, each followed by `delimiter`, compressed as it
/// says, under its prefix evaluated with `partition`'s keys.
async fn write_object(
    batch: &Batch,
    s3: &S3Destination,
    records: Vec<Bytes>,
    delimiter: Vec<u8>,
    partition: PartitionKeys,
    stores: &Stores,
) -> Outcome {
    let key = keys::object_key(&batch.meta, s3, batch.arrival_ms, None, &partition);
    let started = std::time::Instant::now();
    let body = processed(move || process::join(&records, &delimiter), s3.compression, &key).await?;
    let processed_us = started.elapsed().as_micros() as u64;
    put_object(stores, &batch.targets.objects, s3, &key, body).await?;
    tracing::trace!(key, processed_us, written_us = started.elapsed().as_micros() as u64 - processed_us, "object written");
    Ok(key)
}

async fn put_object(stores: &Stores, target: &ObjectTarget, s3: &S3Destination, key: &str, body: Vec<u8>) -> Result<(), String> {
    let key = key.to_owned();
    match target {
        ObjectTarget::Local(dir) => {
            let path = dir.join(&s3.bucket).join(&key);
            let shown = path.display().to_string();
            tokio::task::spawn_blocking(move || write_file(&path, &body))
                .await
                .map_err(|e| format!("the write stopped: {e}"))?
                .map_err(|e| format!("writing {shown}: {e}"))?;
        }
        ObjectTarget::S3 { .. } => {
            let store = store(stores, target, &s3.bucket)?;
            let path = object_store::path::Path::parse(&key).map_err(|e| format!("object key {key:?}: {e}"))?;
            store.put(&path, object_store::PutPayload::from(body)).await.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// How long an HTTP endpoint has to answer a delivery.
const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Resolves names for HTTP endpoint deliveries, refusing names with a non-public address
/// (unless private addresses are allowed): a delivery stream cannot be pointed at the
/// machine's own services or the cloud metadata endpoint.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some((addr, why)) = addrs.iter().find_map(|addr| crate::topic::http::non_public(addr.ip()).map(|why| (addr, why))) {
                return Err(format!("{host} resolves to {}, {why} (allow with --http-endpoints-allow-private)", addr.ip()).into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client for `targets` (`operators`: for an endpoint the operator configured, which
/// may be a private address).
fn http_client(clients: &Clients, targets: &Targets, operators: bool) -> Result<reqwest::Client, String> {
    let key = (targets.allow_private || operators, targets.ca_file.clone());
    let mut http = clients.http.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(client) = http.get(&key) {
        return Ok(client.clone());
    }
    let mut builder = reqwest::Client::builder().timeout(HTTP_TIMEOUT).user_agent("Amazon Kinesis Firehose Agent/1.0 (Sluice)");
    if !key.0 {
        builder = builder.dns_resolver(PublicOnly);
    }
    if let Some(file) = &targets.ca_file {
        let pem = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        for certificate in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("{}: {e}", file.display()))? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    let client = builder.build().map_err(|e| format!("the HTTP client: {e}"))?;
    http.insert(key, client.clone());
    Ok(client)
}

/// POSTs the records as Firehose's HTTP endpoint delivery request; succeeds on a 200 whose
/// body names the same request id.
async fn post(client: &reqwest::Client, meta: &DeliveryStreamMeta, http: &HttpDestination, records: &[Bytes]) -> Result<(), String> {
    if !http.url.starts_with("https://") && !http.url.starts_with("http://") {
        return Err(format!("{} is not an HTTP URL", http.url));
    }
    let request_id = crate::catalog::topics::random_uuid();
    let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let (records, delimiter, id) = (records.to_vec(), process::delimiter(meta.destination.processors()).to_vec(), request_id.clone());
    let compression = if http.gzip { Compression::Gzip } else { Compression::Uncompressed };
    let body = processed(move || process::http_body(&records, &delimiter, &id, timestamp), compression, "").await?;
    let attributes: serde_json::Map<String, serde_json::Value> =
        http.common_attributes.iter().map(|(name, value)| (name.clone(), serde_json::json!(value))).collect();
    let mut request = client
        .post(&http.url)
        .header("Content-Type", "application/json")
        .header("X-Amz-Firehose-Protocol-Version", "1.0")
        .header("X-Amz-Firehose-Request-Id", &request_id)
        .header("X-Amz-Firehose-Source-Arn", &meta.arn)
        .header("X-Amz-Firehose-Common-Attributes", serde_json::json!({ "commonAttributes": attributes }).to_string());
    if let Some(key) = &http.access_key {
        request = request.header("X-Amz-Firehose-Access-Key", key);
    }
    let request = if http.gzip { request.header("Content-Encoding", "gzip") } else { request };
    let request = request.body(body);
    let response = request.send().await.map_err(|e| format!("POST {}: {}", http.url, error_chain(&e)))?;
    let status = response.status();
    let text = response.bytes().await.map_err(|e| format!("reading the answer of {}: {e}", http.url))?;
    if status != reqwest::StatusCode::OK {
        let shown = String::from_utf8_lossy(&text[..text.len().min(512)]).into_owned();
        return Err(format!("{} answered {status}: {shown}", http.url));
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{} answered 200 with a body that is not JSON: {e}", http.url))?;
    match answer.get("requestId").and_then(serde_json::Value::as_str) {
        Some(id) if id == request_id => Ok(()),
        other => Err(format!("{} answered 200 with requestId {other:?}, not {request_id}", http.url)),
    }
}

/// An error with its causes (reqwest's own message is only the outermost).
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn store(stores: &Stores, target: &ObjectTarget, bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
    let mut stores = stores.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(store) = stores.get(&(target.clone(), bucket.to_owned())) {
        return Ok(store.clone());
    }
    let ObjectTarget::S3 { endpoint, region, access_key_id, secret_access_key } = target else { return Err("not an S3 target".into()) };
    let mut builder = object_store::aws::AmazonS3Builder::from_env()
        .with_endpoint(endpoint)
        .with_region(region)
        .with_bucket_name(bucket)
        .with_allow_http(endpoint.starts_with("http://"))
        .with_virtual_hosted_style_request(false);
    if let (Some(id), Some(secret)) = (access_key_id, secret_access_key) {
        builder = builder.with_access_key_id(id).with_secret_access_key(secret);
    }
    let store: Arc<dyn ObjectStore> = Arc::new(builder.build().map_err(|e| format!("the S3 client for bucket {bucket}: {e}"))?);
    stores.insert((target.clone(), bucket.to_owned()), store.clone());
    Ok(store)
}

/// Writes `body` at `path` durably: a temporary file beside it, synced, renamed into place,
/// and the directory synced. New directories are synced into their parents.
fn write_file(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().ok_or_else(|| std::io::Error::other("an object path with no directory"))?;
    make_dir(dir)?;
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("object");
    let temporary = dir.join(format!(".{name}.partial"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(body)?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    sync_dir(dir)
}

/// Makes `dir` and the directories above it that are missing, each synced into its parent.
fn make_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().ok_or_else(|| std::io::Error::other("an object directory with no parent"))?;
    make_dir(parent)?;
    match std::fs::create_dir(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => return Err(error),
        _ => {}
    }
    sync_dir(parent)
}

/// Makes the changes to `dir` done before this call durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_written_whole_into_directories_made_for_them() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let paths: Vec<PathBuf> = (0..8).map(|i| root.path().join(format!("bucket/2026/12/{:02}/object-{i}", i % 2))).collect();
        // Side by side, as deliveries write.
        std::thread::scope(|scope| {
            for (i, path) in paths.iter().enumerate() {
                scope.spawn(move || write_file(path, format!("body {i}").as_bytes()).expect("written"));
            }
        });
        for (i, path) in paths.iter().enumerate() {
            assert_eq!(std::fs::read_to_string(path).expect("read"), format!("body {i}"));
        }
        let names: Vec<String> = std::fs::read_dir(root.path().join("bucket/2026/12/00"))
            .expect("listed")
            .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|name| !name.starts_with('.')), "no temporary file is left: {names:?}");
        assert_eq!(names.len(), 4);
    }
}
