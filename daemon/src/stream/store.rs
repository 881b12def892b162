//! The stream shards one core owns: their logs, opened on first use, and what the
//! owner alone keeps about each (sealed for a reshard, rate windows, readers to wake).
//!
//! A record's bytes in the log are its partition key's length (u16, little-endian),
//! the partition key, and the data; the log adds the arrival time.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use sluice_protocol::limits::*;
use sluice_protocol::{ErrorCode, OpError};

use crate::runtime::notify::LocalNotify;
use crate::storage::log::{FsyncMode, LogOptions};
use crate::storage::storage_error;
use crate::storage::stream::{StreamLog, StreamRecord};

/// Where stream `stream_id` keeps its shards' logs.
pub fn stream_dir(data_dir: &Path, stream_id: u64) -> PathBuf {
    data_dir.join("streams").join(format!("{stream_id:010}"))
}

fn shard_dir(data_dir: &Path, stream_id: u64, shard: u32) -> PathBuf {
    stream_dir(data_dir, stream_id).join(format!("shard-{shard:06}"))
}

/// Counts in the current one-second window.
#[derive(Default, Clone, Copy)]
struct Window {
    second: u64,
    a: u64,
    b: u64,
}

impl Window {
    /// Adds (`a`, `b`) if both stay within (`max_a`, `max_b`) this second.
    fn admit(&mut self, now_ms: u64, a: u64, b: u64, max_a: u64, max_b: u64) -> bool {
        let second = now_ms / 1000;
        if second != self.second {
            *self = Window { second, a: 0, b: 0 };
        }
        if self.a + a > max_a || self.b + b > max_b {
            return false;
        }
        self.a += a;
        self.b += b;
        true
    }
}

/// One stream shard's log and its owner's state.
pub struct ShardLog {
    pub log: StreamLog,
    /// Set when a reshard closes this shard: no more appends.
    pub sealed: Cell<bool>,
    /// Notified when records become readable (and when the shard is sealed).
    pub appended: LocalNotify,
    writes: Cell<Window>,
    reads: Cell<Window>,
}

impl ShardLog {
    /// Appends one record; returns its log sequence number. Durable once `log.durable` says so.
    pub fn append(&self, partition_key: &str, data: &[u8], now_ms: u64) -> Result<u64, OpError> {
        let key = partition_key.as_bytes();
        let (seq, _) = self.log.append_parts(&[&(key.len() as u16).to_le_bytes(), key, data], now_ms).map_err(storage_error)?;
        Ok(seq)
    }

    /// Admits a write of `records` records and `bytes` bytes under Kinesis's per-shard limits.
    pub fn admit_write(&self, now_ms: u64, records: u64, bytes: u64) -> bool {
        let mut window = self.writes.get();
        let admitted = window.admit(now_ms, records, bytes, SHARD_WRITE_RECORDS_PER_S, SHARD_WRITE_BYTES_PER_S);
        self.writes.set(window);
        admitted
    }

    /// Admits one GetRecords call, unless this second's calls or bytes are used up.
    pub fn admit_read(&self, now_ms: u64) -> bool {
        let mut window = self.reads.get();
        let admitted = window.admit(now_ms, 1, 0, SHARD_READ_CALLS_PER_S, u64::MAX) && window.b < SHARD_READ_BYTES_PER_S;
        self.reads.set(window);
        admitted
    }

    /// Counts bytes a GetRecords call returned against this second's read limit.
    pub fn count_read(&self, bytes: u64) {
        let mut window = self.reads.get();
        window.b += bytes;
        self.reads.set(window);
    }
}

/// Splits a stored record into its partition key and data.
pub fn split_record(record: &StreamRecord) -> Option<(&str, Bytes)> {
    let (len, rest) = record.data.split_first_chunk::<2>()?;
    let len = u16::from_le_bytes(*len) as usize;
    let key = std::str::from_utf8(rest.get(..len)?).ok()?;
    Some((key, record.data.slice(2 + len..)))
}

/// This core's stream shards.
pub struct StreamStore {
    data_dir: PathBuf,
    segment_bytes: u64,
    fsync: FsyncMode,
    repair: bool,
    logs: RefCell<HashMap<(u64, u32), Rc<ShardLog>>>,
    /// One open at a time, so two requests never open the same log twice.
    opening: glommio::sync::Semaphore,
    /// Push-subscription leases: (stream, shard, consumer key) -> (generation, taken at ms).
    leases: RefCell<HashMap<LeaseKey, (u64, u64)>>,
    next_generation: Cell<u64>,
}

/// (stream id, shard, consumer key).
type LeaseKey = (u64, u32, u64);

/// How long a push subscription holds its lease against a new one (Kinesis: 5 s).
const LEASE_HOLD_MS: u64 = 5_000;

/// A consumer ARN as a lease key.
pub fn consumer_key(arn: &str) -> u64 {
    let digest = sluice_protocol::digest::md5_of_body(arn.as_bytes());
    u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
}

impl StreamStore {
    pub fn new(data_dir: &Path, segment_bytes: u64, fsync: FsyncMode, repair: bool) -> StreamStore {
        StreamStore {
            data_dir: data_dir.to_owned(),
            segment_bytes,
            fsync,
            repair,
            logs: RefCell::default(),
            opening: glommio::sync::Semaphore::new(1),
            leases: RefCell::default(),
            next_generation: Cell::new(1),
        }
    }

    /// Takes the lease of a consumer on a shard (refused within 5 s of the current holder
    /// taking it; later, the new subscription takes over), or gives it back.
    pub fn lease(&self, lease: crate::stream::service::Lease, now_ms: u64) -> Result<u64, OpError> {
        let key = (lease.stream_id, lease.shard, lease.consumer_key);
        let mut leases = self.leases.borrow_mut();
        if let Some(generation) = lease.release {
            if leases.get(&key).is_some_and(|(held, _)| *held == generation) {
                leases.remove(&key);
            }
            return Ok(generation);
        }
        if let Some((_, taken)) = leases.get(&key) {
            if now_ms < taken + LEASE_HOLD_MS {
                return Err(OpError::new(
                    ErrorCode::ResourceInUse,
                    "Another active subscription exists on this consumer for this shard; wait 5 seconds to take it over.",
                ));
            }
        }
        let generation = self.next_generation.get();
        self.next_generation.set(generation + 1);
        leases.insert(key, (generation, now_ms));
        Ok(generation)
    }

    pub fn holds_lease(&self, stream_id: u64, shard: u32, consumer_key: u64, generation: u64) -> bool {
        self.leases.borrow().get(&(stream_id, shard, consumer_key)).is_some_and(|(held, _)| *held == generation)
    }

    /// The log of shard `shard` of stream `stream_id`, opened (or created) if need be. A log
    /// this call opens is kept only if `exists` (the current snapshot) still has the shard then:
    /// a stream deleted while its log was being opened leaves no log (nor files) behind. Logs
    /// already open are the snapshot's to close (`remove_unless`), so the common path checks nothing.
    pub async fn get(&self, stream_id: u64, shard: u32, exists: impl Fn() -> bool) -> Result<Rc<ShardLog>, OpError> {
        if let Some(log) = self.logs.borrow().get(&(stream_id, shard)) {
            return Ok(log.clone());
        }
        let log = self.open(stream_id, shard).await?;
        if !exists() {
            self.remove_unless(|s, i| (s, i) != (stream_id, shard)).await;
            return Err(OpError::new(ErrorCode::ResourceNotFound, "The stream or shard was deleted."));
        }
        Ok(log)
    }

    async fn open(&self, stream_id: u64, shard: u32) -> Result<Rc<ShardLog>, OpError> {
        let _permit = self.opening.acquire_permit(1).await.map_err(|_| OpError::new(ErrorCode::ServiceUnavailable, "shutting down"))?;
        if let Some(log) = self.logs.borrow().get(&(stream_id, shard)) {
            return Ok(log.clone());
        }
        let options = LogOptions {
            dir: shard_dir(&self.data_dir, stream_id, shard),
            segment_bytes: self.segment_bytes,
            fsync: self.fsync,
            repair: self.repair,
        };
        let (log, recovery) = StreamLog::open(options).await.map_err(|error| {
            tracing::error!(stream_id, shard, %error, "cannot open a stream shard's log");
            storage_error(error)
        })?;
        if let Some((path, offset, bytes)) = &recovery.torn_tail {
            tracing::warn!(file = %path.display(), offset, bytes, "cut a torn write at the end of a stream shard's log (it was never acknowledged)");
        }
        for (path, offset, reason) in &recovery.dropped {
            tracing::warn!(file = %path.display(), offset, reason, "repair skipped damaged bytes");
        }
        let log = Rc::new(ShardLog {
            log,
            sealed: Cell::new(false),
            appended: LocalNotify::default(),
            writes: Cell::default(),
            reads: Cell::default(),
        });
        self.logs.borrow_mut().insert((stream_id, shard), log.clone());
        Ok(log)
    }

    /// The logs open on this core.
    pub fn open_logs(&self) -> Vec<((u64, u32), Rc<ShardLog>)> {
        self.logs.borrow().iter().map(|(key, log)| (*key, log.clone())).collect()
    }

    /// Closes and deletes the logs for which `keep` is false (deleted streams, expired
    /// shards). Readers still holding one finish on the closed log.
    pub async fn remove_unless(&self, keep: impl Fn(u64, u32) -> bool) {
        let gone: Vec<((u64, u32), Rc<ShardLog>)> = {
            let mut logs = self.logs.borrow_mut();
            let keys: Vec<(u64, u32)> = logs.keys().filter(|(stream, shard)| !keep(*stream, *shard)).copied().collect();
            keys.into_iter().filter_map(|key| logs.remove(&key).map(|log| (key, log))).collect()
        };
        for ((stream_id, shard), log) in gone {
            log.sealed.set(true);
            log.appended.notify_all();
            if let Err(error) = log.log.close().await {
                tracing::warn!(stream_id, shard, %error, "closing a removed stream shard's log failed");
            }
            remove_dir(shard_dir(&self.data_dir, stream_id, shard)).await;
        }
    }

    /// Closes every log (at shutdown).
    pub async fn close(&self) {
        for (key, log) in self.open_logs() {
            if let Err(error) = log.log.close().await {
                tracing::error!(stream_id = key.0, shard = key.1, %error, "closing a stream shard's log failed");
            }
        }
    }
}

/// Deletes a directory tree on a blocking thread (never on the shard's own thread).
pub async fn remove_dir(dir: PathBuf) {
    let shown = dir.display().to_string();
    let removed = glommio::executor()
        .spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        })
        .await;
    if let Err(error) = removed {
        tracing::warn!(dir = %shown, %error, "cannot remove a stream's files");
    }
}

/// At start (shard 0): removes the files of streams the metadata no longer has (a
/// delete that was interrupted) and of shards that are gone.
pub async fn remove_orphans(data_dir: &Path, keep: impl Fn(u64, Option<u32>) -> bool) {
    let Ok(entries) = std::fs::read_dir(data_dir.join("streams")) else { return };
    for entry in entries.flatten() {
        let Some(stream_id) = entry.file_name().to_str().and_then(|name| name.parse::<u64>().ok()) else { continue };
        if !keep(stream_id, None) {
            remove_dir(entry.path()).await;
            continue;
        }
        let Ok(shards) = std::fs::read_dir(entry.path()) else { continue };
        for shard in shards.flatten() {
            let index = shard.file_name().to_str().and_then(|name| name.strip_prefix("shard-")?.parse::<u32>().ok());
            if let Some(index) = index {
                if !keep(stream_id, Some(index)) {
                    remove_dir(shard.path()).await;
                }
            }
        }
    }
}
