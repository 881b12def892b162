//! Durable storage: each shard appends every change to its queue partitions to its
//! own log (`log`: segmented, CRC-checked, group-committed, on glommio DMA files),
//! and a request is answered only once `durable` says its changes are kept.
//!
//! - Partitions journal their own changes as `Event`s; `commit` drains a partition's
//!   journal into the log in order, and keeps the log's accounting of which records
//!   are still live: a message holds the bytes of its latest full record (Sent,
//!   MovedIn or Restored) until it is deleted, moved, purged or expires.
//! - `open` replays the log into fresh partitions. Replay is exact for everything
//!   that was durable (see `journal`).
//! - Compaction (driven by the shard, which owns the partitions) re-logs the few live
//!   messages of old segments as `Restored` records and then deletes those segments,
//!   so the log stays within about twice the live data and restart time stays bounded.
//! - When the disk is full (no next segment can be prepared), new messages are refused
//!   with `ServiceUnavailable` while receives, deletes and compaction go on in the
//!   space already reserved.

pub mod log;
pub mod meta;
pub mod record;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use sluice_protocol::{ErrorCode, OpError};

use crate::queue::journal::Event;
use crate::queue::partition::Partition;
use log::{Log, LogOptions, Recovery, StorageError};
use record::record_bytes;

/// Position of an appended record; durable once `durable` has returned for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// A record the log holds that does not decode as a journal event (a bug or damage
/// that the checksum did not catch): with repair it is dropped and reported.
#[derive(Debug)]
pub struct BadRecord {
    pub seq: u64,
    pub kind: u8,
    pub error: String,
}

/// What opening a shard's storage found.
pub struct Opened {
    pub storage: Storage,
    pub partitions: HashMap<u64, Partition>,
    pub recovery: Recovery,
    pub bad_records: Vec<BadRecord>,
    /// Messages rebuilt.
    pub messages: u64,
}

/// One shard's storage. Never shared between shards.
pub struct Storage {
    log: Rc<Log>,
    /// Reused buffers: drained events, released places.
    events: RefCell<Vec<Event>>,
    released: RefCell<Vec<(u64, u32)>>,
}

pub fn storage_error(error: StorageError) -> OpError {
    match error {
        StorageError::Full(_) => OpError::new(ErrorCode::ServiceUnavailable, error.to_string()),
        other => OpError::new(ErrorCode::InternalFailure, format!("storage failure: {other}")),
    }
}

impl Storage {
    /// Opens the log in `options.dir` and replays it into partitions of the queues
    /// `exists` accepts (records of deleted queues are passed over).
    pub async fn open(options: LogOptions, exists: impl Fn(u64) -> bool) -> Result<Opened, StorageError> {
        let repair = options.repair;
        let dir = options.dir.clone();
        let mut partitions: HashMap<u64, Partition> = HashMap::new();
        let mut bad_records = Vec::new();
        let (log, recovery) = Log::open(options, |seq, kind, payload| match Event::decode(kind, payload) {
            Ok(event) => {
                if exists(event.queue_id()) {
                    event.apply(seq, record_bytes(payload.len()) as u32, &mut partitions);
                }
            }
            Err(error) => bad_records.push(BadRecord { seq, kind, error: error.to_string() }),
        })
        .await?;
        if let Some(bad) = bad_records.first() {
            if !repair {
                return Err(StorageError::Corrupt {
                    path: dir,
                    offset: bad.seq,
                    reason: "a record with a valid checksum does not decode (the offset is its sequence number)",
                });
            }
        }
        let mut messages = 0;
        for partition in partitions.values_mut() {
            partition.settle_after_replay();
            partition.for_each_placement(|seq, bytes| {
                log.hold(seq, bytes);
                messages += 1;
            });
        }
        let storage = Storage { log, events: RefCell::default(), released: RefCell::default() };
        Ok(Opened { storage, partitions, recovery, bad_records, messages })
    }

    /// Appends everything `partition` journaled since the last commit, in order.
    /// Returns the ticket of the last record (`None` when there was nothing).
    pub fn commit(&self, partition: &mut Partition) -> Result<Option<Ticket>, OpError> {
        let mut events = self.events.borrow_mut();
        partition.take_journal(&mut events);
        let mut last = None;
        let mut failure = None;
        for event in events.drain(..) {
            if failure.is_some() {
                continue;
            }
            // Encoded straight into the log's staging buffer: a body is copied once, from its
            // request into the log.
            match self.log.append_encoded(event.kind(), |out| event.encode(out)) {
                Ok((location, len)) => {
                    let seq = location.seq;
                    last = Some(Ticket(seq));
                    if let Some(message) = event.full_record_of() {
                        let bytes = record_bytes(len) as u32;
                        self.log.hold(seq, bytes);
                        if let Some((old, old_bytes)) = partition.placed(message, seq, bytes) {
                            self.log.release(old, old_bytes);
                        }
                    }
                }
                Err(error) => failure = Some(error),
            }
        }
        drop(events);
        self.release_from(partition);
        match failure {
            Some(error) => Err(storage_error(error)),
            None => Ok(last),
        }
    }

    /// Releases what `partition` reported as no longer live (also for partitions that are dropped).
    pub fn release_from(&self, partition: &mut Partition) {
        let mut released = self.released.borrow_mut();
        partition.take_released(&mut released);
        for (seq, bytes) in released.drain(..) {
            self.log.release(seq, bytes);
        }
    }

    /// Refuses a new message when the disk is short of space (receives and deletes go on).
    pub fn admit_send(&self) -> Result<(), OpError> {
        if self.log.space_low() {
            // Space may have been freed since (by compaction, retention or the operator).
            self.log.ensure_spare();
            return Err(OpError::new(
                ErrorCode::ServiceUnavailable,
                "The broker's disk is full: new messages are refused until space is freed (receives and deletes still work).",
            ));
        }
        Ok(())
    }

    /// Waits until every record up to `ticket` is durable.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), OpError> {
        self.log.durable(ticket.0).await.map_err(storage_error)
    }

    /// Waits until everything appended so far is written and synced, whatever the fsync mode.
    pub async fn sync_all(&self) -> Result<(), StorageError> {
        let last = self.log.next_seq() - 1;
        self.log.sync_through(last).await
    }

    pub fn log(&self) -> &Rc<Log> {
        &self.log
    }

    pub async fn close(&self) -> Result<(), StorageError> {
        self.log.close().await
    }
}

/// Where shard `shard`'s queue log lives under the data directory.
pub fn queue_log_dir(data_dir: &std::path::Path, shard: usize) -> PathBuf {
    data_dir.join(format!("shard-{shard:03}")).join("queues")
}
