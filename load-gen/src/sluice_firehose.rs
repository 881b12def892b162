//! Sluice Firehose over the binary protocol: producers PutRecordBatch into a delivery stream
//! (GZIP, no delimiter, buffering of `--firehose-size-mb` or `--firehose-interval` seconds)
//! whose bucket is a directory the broker writes (`--firehose-local-dir`); consumers read the
//! objects that appear in it (`--firehose-objects`, that directory's bucket), so the
//! end-to-end latency is each record's time from its send to its object being readable —
//! Firehose's data freshness. A put is acknowledged once kept as the daemon's `--fsync` says.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_client::Client;

use crate::run::{stamp_of, Broker, Consumer, Error, Producer};
use crate::sluice::connect;

/// How long a producer told to slow down waits before it puts again.
const SLOW_DOWN_PAUSE: Duration = Duration::from_millis(50);
/// How often a consumer looks for new objects.
const POLL: Duration = Duration::from_millis(20);

pub struct SluiceFirehose {
    pub endpoint: String,
    pub key: Option<sluice_client::AccessKey>,
    pub stream: String,
    /// The bucket's directory; `None`: nothing is read (ingest alone).
    pub objects: Option<PathBuf>,
    /// Consumers over all cores (each reads the objects whose name hashes to it).
    pub consumers: usize,
    pub message_size: usize,
}

/// Recreates the delivery stream `stream` (bucket `stream`), emptying the bucket's directory.
pub fn setup(
    endpoint: &str,
    stream: &str,
    size_mb: u32,
    interval_s: u32,
    objects: Option<&Path>,
    key: Option<&sluice_client::AccessKey>,
) -> Result<(), Error> {
    let connection = sluice_client::blocking::BlockingClient::connect_as(endpoint, "sluice-load-setup", key)
        .map_err(|e| format!("cannot reach Sluice at {endpoint}: {e}"))?;
    let client = connection.client();
    match connection.block_on(client.delete_delivery_stream(stream)) {
        Ok(()) => {}
        Err(error) if error.code() == Some(sluice_client::ErrorCode::ResourceNotFound) => {}
        Err(error) => return Err(error.to_string()),
    }
    if let Some(dir) = objects {
        let _ = std::fs::remove_dir_all(dir);
    }
    let configuration = serde_json::json!({
        "DeliveryStreamType": "DirectPut",
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::000000000000:role/sluice-load",
            "BucketARN": format!("arn:aws:s3:::{stream}"),
            "CompressionFormat": "GZIP",
            "BufferingHints": { "SizeInMBs": size_mb, "IntervalInSeconds": interval_s },
        },
    });
    connection.block_on(client.create_delivery_stream(stream, &configuration.to_string(), vec![])).map_err(|e| e.to_string())?;
    Ok(())
}

#[derive(Clone)]
pub struct FirehoseProducer {
    client: Client,
    stream: std::rc::Rc<str>,
}

pub struct FirehoseConsumer {
    objects: Option<PathBuf>,
    index: usize,
    consumers: usize,
    message_size: usize,
    seen: HashSet<PathBuf>,
}

impl Broker for SluiceFirehose {
    type Executor = crate::run::Glommio;
    type Connection = Client;
    type Producer = FirehoseProducer;
    type Consumer = FirehoseConsumer;

    async fn connect(&self) -> Result<Client, Error> {
        connect(&self.endpoint, self.key.as_ref()).await
    }

    async fn producer(&self, connection: &Client) -> Result<FirehoseProducer, Error> {
        Ok(FirehoseProducer { client: connection.clone(), stream: self.stream.as_str().into() })
    }

    async fn consumer(&self, _connection: &Client, index: usize) -> Result<FirehoseConsumer, Error> {
        Ok(FirehoseConsumer {
            objects: self.objects.clone(),
            index,
            consumers: self.consumers.max(1),
            message_size: self.message_size,
            seen: HashSet::new(),
        })
    }
}

impl Producer for FirehoseProducer {
    /// Puts the batch; a `ServiceUnavailableException` ("Slow down": the destination is behind)
    /// is tried again after a pause, as the AWS SDKs do, so the send's latency includes it.
    async fn send(&self, bodies: Vec<Bytes>) -> Result<(), Error> {
        loop {
            match self.client.put_firehose_records(&self.stream, bodies.clone(), true).await {
                Ok(results) => {
                    return match results.iter().find(|result| result.record_id.is_none()) {
                        None => Ok(()),
                        Some(failed) => Err(format!("a record of the batch failed: {failed:?}")),
                    }
                }
                Err(error) if error.code() == Some(sluice_client::ErrorCode::ServiceUnavailable) => {
                    glommio::timer::sleep(SLOW_DOWN_PAUSE).await;
                }
                Err(error) => return Err(error.to_string()),
            }
        }
    }
}

/// Every object file under `dir` (temporary files, named with a leading dot, left out).
fn object_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            object_files(&path, out);
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            out.push(path);
        }
    }
}

impl Consumer for FirehoseConsumer {
    const RECEIVE_IS_A_REQUEST: bool = false;
    const ACKNOWLEDGES: bool = false;

    async fn receive(&mut self, _max: usize, stamps: &mut Vec<u64>) -> Result<(), Error> {
        let Some(dir) = self.objects.clone() else {
            glommio::timer::sleep(Duration::from_secs(3600)).await;
            return Ok(());
        };
        loop {
            let mut files = Vec::new();
            object_files(&dir, &mut files);
            for file in files {
                // Each object is read by one consumer: the one its name hashes to.
                let name = file.to_string_lossy();
                let hash = name.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
                if hash % self.consumers != self.index % self.consumers || !self.seen.insert(file.clone()) {
                    continue;
                }
                let compressed = std::fs::read(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
                let mut data = Vec::new();
                flate2::read::GzDecoder::new(&compressed[..]).read_to_end(&mut data).map_err(|e| format!("{}: {e}", file.display()))?;
                stamps.extend(data.chunks(self.message_size).filter_map(stamp_of));
            }
            if !stamps.is_empty() {
                return Ok(());
            }
            let until = Instant::now() + POLL;
            glommio::timer::sleep(until.saturating_duration_since(Instant::now())).await;
        }
    }

    async fn acknowledge(&mut self) -> Result<(), Error> {
        Ok(())
    }
}
