//! The delivery thread: where batches leave the shards for their destinations. The object
//! store client (`object_store`) runs on tokio and the shards on glommio, so one thread (not
//! pinned to a shard's core) runs a current-thread tokio runtime for every destination; the
//! shards hand it batches over a channel and await each one's outcome, never blocking on a
//! destination themselves. Processing and compression run on its blocking pool.
//!
//! Destinations: an S3-compatible store (`--firehose-s3-endpoint`), or a directory standing
//! for each bucket (`--firehose-local-dir`), where an object is written to a temporary file,
//! synced, renamed into place and its directory synced — durable before it is reported
//! delivered, as an S3 PUT is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::channel::oneshot;
use object_store::{ObjectStore, ObjectStoreExt};

use super::keys;
use super::process;
use crate::catalog::firehose::{DeliveryStreamMeta, Destination};

/// Where S3 destinations write (from `Config`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ObjectTarget {
    /// Bucket `b` is the directory `<dir>/b`.
    Local(PathBuf),
    /// An S3-compatible endpoint, in `region`, with these credentials (else the environment's).
    S3 { endpoint: String, region: String, access_key_id: Option<String>, secret_access_key: Option<String> },
}

/// One batch of records for a delivery stream's destination.
pub struct Batch {
    pub meta: Arc<DeliveryStreamMeta>,
    pub target: ObjectTarget,
    pub records: Vec<Bytes>,
    /// Arrival time of the first record (the object's time in its key).
    pub arrival_ms: u64,
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
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the Firehose delivery runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let stores: Arc<Stores> = Arc::default();
        while let Some(job) = receiver.recv().await {
            let stores = stores.clone();
            tokio::spawn(async move {
                let outcome = write(job.batch, &stores).await;
                let _ = job.done.send(outcome);
            });
        }
    });
}

type Stores = std::sync::Mutex<HashMap<(ObjectTarget, String), Arc<dyn ObjectStore>>>;

async fn write(batch: Batch, stores: &Stores) -> Outcome {
    let Destination::S3(s3) = &batch.meta.destination;
    let key = keys::object_key(&batch.meta, s3, batch.arrival_ms, None);
    let entry = key.rsplit('/').next().unwrap_or(&key).trim_end_matches(".zip").to_owned();
    let meta = batch.meta.clone();
    let records = batch.records;
    let body = tokio::task::spawn_blocking(move || {
        let Destination::S3(s3) = &meta.destination;
        process::body(&records, s3, &entry)
    })
    .await
    .map_err(|e| format!("processing stopped: {e}"))?
    .map_err(|e| format!("compression failed: {e}"))?;
    match &batch.target {
        ObjectTarget::Local(dir) => {
            let path = dir.join(&s3.bucket).join(&key);
            let shown = path.display().to_string();
            tokio::task::spawn_blocking(move || write_file(&path, &body))
                .await
                .map_err(|e| format!("the write stopped: {e}"))?
                .map_err(|e| format!("writing {shown}: {e}"))?;
        }
        ObjectTarget::S3 { .. } => {
            let store = store(stores, &batch.target, &s3.bucket)?;
            let path = object_store::path::Path::parse(&key).map_err(|e| format!("object key {key:?}: {e}"))?;
            store.put(&path, object_store::PutPayload::from(body)).await.map_err(|e| e.to_string())?;
        }
    }
    Ok(key)
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
/// and the directory synced.
fn write_file(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().ok_or_else(|| std::io::Error::other("an object path with no directory"))?;
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("object");
    let temporary = dir.join(format!(".{name}.partial"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(body)?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}
