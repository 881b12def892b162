//! The stream shards one core owns: their logs, opened on first use and closed again once
//! unused for a while (`--stream-log-idle-seconds`), and what the owner alone keeps about
//! each (sealed for a reshard, rate windows, readers to wake). A shard that is not written
//! holds no file and no descriptor; retention of a closed log opens it only when a segment
//! can go.
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

use crate::env::notify::LocalNotify;
use crate::env::Env;
use crate::kms::at_rest::{Keyring, OpenError, WriteKey};
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
        // A record larger than a second's byte budget (up to 10 MiB, as Kinesis's burst
        // capacity takes) goes through alone, in a second that has taken nothing else.
        let alone = self.a == 0 && self.b == 0 && a <= max_a;
        if !alone && (self.a + a > max_a || self.b + b > max_b) {
            return false;
        }
        self.a += a;
        self.b += b;
        true
    }
}

/// Records and bytes written to a shard over a while.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub records: u64,
    pub bytes: u64,
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
    /// Records and bytes appended since an ON_DEMAND stream's scaler last took the count.
    written: Cell<Load>,
    /// When a request last took this log (ms).
    last_used_ms: Cell<u64>,
}

impl ShardLog {
    /// Appends one record — sealed under `seal` when the stream is encrypted; returns its log
    /// sequence number. Durable once `log.durable` says so.
    pub fn append(&self, partition_key: &str, data: &[u8], now_ms: u64, seal: Option<&WriteKey>) -> Result<u64, OpError> {
        let key = partition_key.as_bytes();
        let (seq, _) = match seal {
            None => self.log.append_parts(&[&(key.len() as u16).to_le_bytes(), key, data], now_ms),
            Some(seal) => self.log.append_with(now_ms, |out| {
                out.extend_from_slice(&SEALED_RECORD.to_le_bytes());
                Keyring::seal(seal, out, |out| {
                    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
                    out.extend_from_slice(key);
                    out.extend_from_slice(data);
                });
            }),
        }
        .map_err(storage_error)?;
        let written = self.written.get();
        self.written.set(Load { records: written.records + 1, bytes: written.bytes + (key.len() + data.len()) as u64 });
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

/// In place of a stored record's key length: what follows is sealed (`kms::at_rest`) — the key
/// length, the key and the data. A partition key is at most 256 bytes, so a real length never
/// has this bit.
const SEALED_RECORD: u16 = 0x8000;

/// Why a stored record did not give its key and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    Damaged,
    /// Sealed under a KMS key that was deleted.
    KeyGone(String),
}

/// The sealed part of a stored record, if it is sealed.
pub fn sealed_part(record: &StreamRecord) -> Option<&[u8]> {
    let (len, rest) = record.data.split_first_chunk::<2>()?;
    (u16::from_le_bytes(*len) == SEALED_RECORD).then_some(rest)
}

/// Splits a stored record into its partition key and data, opening it with `keyring` when sealed.
pub fn split_record(record: &StreamRecord, keyring: &Keyring) -> Result<(String, Bytes), SplitError> {
    let split = |data: &Bytes| -> Option<(String, Bytes)> {
        let (len, rest) = data.split_first_chunk::<2>()?;
        let len = u16::from_le_bytes(*len) as usize;
        let key = std::str::from_utf8(rest.get(..len)?).ok()?;
        Some((key.to_owned(), data.slice(2 + len..)))
    };
    match sealed_part(record) {
        None => split(&record.data).ok_or(SplitError::Damaged),
        Some(sealed) => {
            let opened = keyring.open(sealed).map_err(|error| match error {
                OpenError::KeyGone(key) => SplitError::KeyGone(key),
                OpenError::Damaged => SplitError::Damaged,
            })?;
            split(&Bytes::from(opened)).ok_or(SplitError::Damaged)
        }
    }
}

/// This core's stream shards.
pub struct StreamStore {
    env: Env,
    data_dir: PathBuf,
    segment_bytes: u64,
    fsync: FsyncMode,
    repair: bool,
    /// A log nobody has used for this long is closed (its descriptors and buffers freed).
    pub idle_ms: u64,
    logs: RefCell<HashMap<(u64, u32), Rc<ShardLog>>>,
    /// One open at a time, so two requests never open the same log twice.
    opening: glommio::sync::Semaphore,
    /// Push-subscription leases: (stream, shard, consumer key) -> (generation, taken at ms).
    leases: RefCell<HashMap<LeaseKey, (u64, u64)>>,
    next_generation: Cell<u64>,
    /// Logs on disk that are not open: when retention next has work in each (the arrival time
    /// `StreamLog::retention_due` gives; `None`: nothing until written). Absent: not yet known.
    dormant: RefCell<HashMap<(u64, u32), Option<u64>>>,
    /// The shards this core owned in the last snapshot it saw, by stream (to delete the files
    /// of those that are gone, open or not).
    owned: RefCell<HashMap<u64, Vec<u32>>>,
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
    pub fn new(env: Env, data_dir: &Path, segment_bytes: u64, fsync: FsyncMode, repair: bool, idle_ms: u64) -> StreamStore {
        StreamStore {
            env,
            data_dir: data_dir.to_owned(),
            segment_bytes,
            fsync,
            repair,
            idle_ms,
            logs: RefCell::default(),
            opening: glommio::sync::Semaphore::new(1),
            leases: RefCell::default(),
            next_generation: Cell::new(1),
            dormant: RefCell::default(),
            owned: RefCell::default(),
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
            log.last_used_ms.set(self.env.now_ms());
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
            spare_ahead: false,
        };
        let (log, recovery) = StreamLog::open_in(self.env.clone(), options).await.map_err(|error| {
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
            written: Cell::default(),
            last_used_ms: Cell::new(self.env.now_ms()),
        });
        self.dormant.borrow_mut().remove(&(stream_id, shard));
        self.logs.borrow_mut().insert((stream_id, shard), log.clone());
        Ok(log)
    }

    /// Retention of one shard: removes the segments whose every record arrived before
    /// `cutoff_ms`. A log that is not open is opened only when one of its segments can go
    /// (known from its second segment's first record), and closed again after.
    pub async fn trim(&self, stream_id: u64, shard: u32, cutoff_ms: u64, exists: impl Fn() -> bool) -> Result<(), OpError> {
        let key = (stream_id, shard);
        let open = self.logs.borrow().get(&key).cloned();
        if let Some(log) = open {
            log.log.trim_before_timestamp(cutoff_ms).await.map_err(storage_error)?;
            return Ok(());
        }
        let known = self.dormant.borrow().get(&key).copied();
        let due = match known {
            Some(due) => due,
            None => {
                let due = crate::storage::stream::retention_due_on_disk(&self.env, &shard_dir(&self.data_dir, stream_id, shard))
                    .await
                    .map_err(storage_error)?;
                self.dormant.borrow_mut().insert(key, due);
                due
            }
        };
        if due.is_none_or(|first| first >= cutoff_ms) {
            return Ok(());
        }
        let log = self.open(stream_id, shard).await?;
        if !exists() {
            drop(log);
            self.remove_unless(|s, i| (s, i) != key).await;
            return Ok(());
        }
        let trimmed = log.log.trim_before_timestamp(cutoff_ms).await.map_err(storage_error);
        // Opened for retention only: closed again at once unless a request took it meanwhile.
        log.last_used_ms.set(0);
        drop(log);
        self.close_idle(self.env.now_ms(), self.idle_ms, Some(key)).await;
        trimmed.map(|_| ())
    }

    /// Closes the logs (all, or only `only`) that no request has used for `idle_ms`, that no
    /// reader is waiting on and that no reshard has sealed; remembers when retention next
    /// has work in each.
    pub async fn close_idle(&self, now_ms: u64, idle_ms: u64, only: Option<(u64, u32)>) {
        let idle = |log: &Rc<ShardLog>| {
            Rc::strong_count(log) == 1 && !log.sealed.get() && now_ms.saturating_sub(log.last_used_ms.get()) >= idle_ms
        };
        let candidates: Vec<(u64, u32)> = self
            .logs
            .borrow()
            .iter()
            .filter(|(key, log)| only.is_none_or(|only| only == **key) && idle(log))
            .map(|(key, _)| *key)
            .collect();
        for key in candidates {
            // Held while it closes: a request for it meanwhile opens it only once it is closed.
            let Ok(_permit) = self.opening.acquire_permit(1).await else { return };
            let log = {
                let mut logs = self.logs.borrow_mut();
                if !logs.get(&key).is_some_and(idle) {
                    continue;
                }
                logs.remove(&key)
            };
            let Some(log) = log else { continue };
            let due = log.log.retention_due().await.unwrap_or(Some(0));
            if let Err(error) = log.log.close().await {
                tracing::warn!(stream_id = key.0, shard = key.1, %error, "closing an idle stream shard's log failed");
            }
            self.dormant.borrow_mut().insert(key, due);
        }
    }

    /// On a new snapshot: deletes the files of the shards this core owned that are gone
    /// (deleted streams, expired shards), whether their logs are open or not. `owned` is
    /// every shard this core owns now, by stream.
    pub async fn forget_gone(&self, owned: HashMap<u64, Vec<u32>>) {
        let gone: Vec<(u64, u32)> = {
            let before = self.owned.borrow();
            before
                .iter()
                .flat_map(|(stream_id, shards)| shards.iter().map(move |shard| (*stream_id, *shard)))
                .filter(|(stream_id, shard)| !owned.get(stream_id).is_some_and(|now| now.contains(shard)))
                .collect()
        };
        *self.owned.borrow_mut() = owned;
        let open_gone: Vec<(u64, u32)> = gone.iter().copied().filter(|key| self.logs.borrow().contains_key(key)).collect();
        if !open_gone.is_empty() {
            self.remove_unless(|stream_id, shard| !open_gone.contains(&(stream_id, shard))).await;
        }
        for (stream_id, shard) in &gone {
            self.dormant.borrow_mut().remove(&(*stream_id, *shard));
            if !open_gone.contains(&(*stream_id, *shard)) {
                remove_dir(shard_dir(&self.data_dir, *stream_id, *shard)).await;
            }
        }
        // A deleted stream's directory goes with its last shard (whichever core removes it).
        for stream_id in gone.iter().map(|(stream_id, _)| *stream_id).collect::<std::collections::BTreeSet<u64>>() {
            let _ = std::fs::remove_dir(stream_dir(&self.data_dir, stream_id));
        }
    }

    /// What each of `shards` took since the last call (a log not open took nothing: logs close
    /// only when idle), and starts counting again.
    pub fn take_load(&self, shards: &[(u64, u32)]) -> Vec<Load> {
        let logs = self.logs.borrow();
        shards.iter().map(|key| logs.get(key).map_or_else(Load::default, |log| log.written.take())).collect()
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
