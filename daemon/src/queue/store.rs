//! A shard's queue storage: each shard appends every change to its queue partitions to its
//! own log (`storage::log`: segmented, CRC-checked, group-committed, on glommio DMA files),
//! and a request is answered only once `durable` says its changes are kept.
//!
//! - Partitions journal their own changes as `Event`s; `commit` drains a partition's
//!   journal into the log in order, and keeps the log's accounting of which records
//!   are still live: a message holds the bytes of its latest full record (Sent,
//!   MovedIn or Restored) until it is deleted, moved, purged or expires.
//! - `open` replays the log into fresh partitions. Replay is exact for everything
//!   that was durable (see `journal`).
//! - Compaction (`queue::compaction`, driven by the shard, which owns the partitions)
//!   re-logs the few live messages of old segments as `Restored` records and then deletes
//!   those segments, so the log stays within about twice the live data and restart time
//!   stays bounded.
//! - Memory budget: the payloads a shard keeps in memory are counted; a message whose
//!   full record is placed while the shard is over its budget keeps only its place in
//!   the log (`Partition::evict`), and `load` reads payloads back when a receive or
//!   compaction needs them. Replay does the same, so a backlog far larger than memory
//!   opens and is served.
//! - When the disk is full (no next segment can be prepared), new messages are refused
//!   with `ServiceUnavailable` while receives, deletes and compaction go on in the
//!   space already reserved.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use sluice_protocol::{ErrorCode, OpError};

use super::journal::{Event, JournalError};
use super::partition::{Partition, Payload, Placement};
use crate::env::Env;
use crate::kms::at_rest::Keyring;
use crate::storage::log::{Location, Log, LogOptions, Recovery, StorageError};
use crate::storage::record::record_bytes;
use crate::storage::{storage_error, Ticket};

/// What a record is the latest of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// A message's full record (by its sequence number in the partition).
    Message(u64),
    /// A topic cursor's position.
    Cursor(u64),
    /// A FIFO queue's deduplication key held past its message.
    Dedup(u128),
}

/// A record of queue `queue_id` that compaction's copy `new` superseded: `old` stays held
/// until the copy is known to be written (`Storage::settle`). A copy can be lost after it was
/// placed — the log drops what was staged for a segment it cannot make — and the original
/// must then still be there: deleting it would lose the message.
#[derive(Debug, Clone, Copy)]
pub struct Superseded {
    pub queue_id: u64,
    pub record: Record,
    pub new: Placement,
    pub old: Placement,
}

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
    pub partitions: super::QueueMap<Partition>,
    pub recovery: Recovery,
    pub bad_records: Vec<BadRecord>,
    /// Messages rebuilt.
    pub messages: u64,
    /// Of those, messages whose payload stayed in the log only (past the memory budget).
    pub on_disk: u64,
    /// Records passed over because their content was sealed under a KMS key since deleted
    /// (those messages are gone, as deleting a key promises), by key id.
    pub shredded: std::collections::BTreeMap<String, u64>,
}

/// One shard's storage. Never shared between shards.
pub struct Storage {
    log: Rc<Log>,
    /// Reused buffers: drained events, released places.
    events: RefCell<Vec<Event>>,
    released: RefCell<Vec<(u64, u32)>>,
    /// Bytes of message payloads this shard keeps in memory (see `Payload::resident_bytes`).
    resident: Cell<u64>,
    /// How many it may keep before new messages stay in the log only.
    budget: u64,
    /// Seals the records of encrypted queues, feeds and archives, and opens them again.
    keyring: Rc<Keyring>,
    env: Env,
}

/// Adds a partition's change in resident payload bytes to a shard's count.
fn add_change(resident: u64, partition: &mut Partition) -> u64 {
    resident.saturating_add_signed(partition.take_resident_change())
}

impl Storage {
    /// Opens the log in `options.dir` and replays it into partitions of the queues
    /// `exists` accepts (records of deleted queues are passed over), keeping at most about
    /// `budget` bytes of payloads in memory (later ones stay in the log only).
    pub async fn open(
        env: Env,
        options: LogOptions,
        budget: u64,
        keyring: Rc<Keyring>,
        exists: impl Fn(u64) -> bool,
    ) -> Result<Opened, StorageError> {
        let repair = options.repair;
        let mut shredded = std::collections::BTreeMap::new();
        let dir = options.dir.clone();
        let mut partitions: super::QueueMap<Partition> = super::QueueMap::default();
        let mut bad_records = Vec::new();
        let mut resident = 0u64;
        let (log, recovery) =
            Log::open_located_in(env.clone(), options, |location, kind, payload| match Event::decode_with(kind, payload, Some(&keyring)) {
                Ok(event) => {
                    let queue_id = event.queue_id();
                    if !exists(queue_id) {
                        return;
                    }
                    let message = event.full_record_of();
                    let placement = Placement::located(location.seq, location.segment, location.offset, record_bytes(payload.len()) as u32);
                    event.apply(placement, &mut partitions);
                    let Some(partition) = partitions.get_mut(&queue_id) else { return };
                    resident = add_change(resident, partition);
                    if let (Some(message), true) = (message, resident > budget) {
                        if partition.evict(message) {
                            resident = add_change(resident, partition);
                        }
                    }
                }
                Err(JournalError::KeyGone { queue_id, key, .. }) => {
                    if exists(queue_id) {
                        *shredded.entry(key).or_insert(0) += 1;
                    }
                }
                Err(error) => bad_records.push(BadRecord { seq: location.seq, kind, error: error.to_string() }),
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
        let mut on_disk = 0;
        for partition in partitions.values_mut() {
            on_disk += partition.on_disk();
            partition.settle_after_replay();
            partition.for_each_placement(|seq, bytes| {
                log.hold(seq, bytes);
                messages += 1;
            });
            partition.for_each_cursor_record(|seq, bytes| log.hold(seq, bytes));
            partition.for_each_dedup_record(|seq, bytes| log.hold(seq, bytes));
        }
        let storage =
            Storage { log, events: RefCell::default(), released: RefCell::default(), resident: Cell::new(resident), budget, keyring, env };
        Ok(Opened { storage, partitions, recovery, bad_records, messages, on_disk, shredded })
    }

    /// Appends everything `partition` journaled since the last commit, in order.
    /// Returns the ticket of the last record (`None` when there was nothing).
    pub fn commit(&self, partition: &mut Partition) -> Result<Option<Ticket>, OpError> {
        self.commit_with(partition, None)
    }

    /// `commit` for compaction's copies: the records they supersede stay held, listed in
    /// `superseded`, until the copies are known to be written (`Superseded`).
    pub fn commit_copies(&self, partition: &mut Partition, superseded: &mut Vec<Superseded>) -> Result<Option<Ticket>, OpError> {
        self.commit_with(partition, Some(superseded))
    }

    fn commit_with(&self, partition: &mut Partition, mut superseded: Option<&mut Vec<Superseded>>) -> Result<Option<Ticket>, OpError> {
        let queue_id = partition.queue_id();
        // Releases `old` now, or, for compaction, once the record that superseded it is written.
        let mut supersede = |record: Record, new: Placement, old: Placement| match superseded.as_deref_mut() {
            Some(list) if old.log_seq != new.log_seq => list.push(Superseded { queue_id, record, new, old }),
            _ => self.log.release(old.log_seq, old.bytes),
        };
        let mut events = self.events.borrow_mut();
        partition.take_journal(&mut events);
        let mut last = None;
        // A queue whose key is not held has its events dropped like a failed write: nothing
        // that should be sealed is written in clear.
        let (seal, mut failure) = match self.keyring.sealer(queue_id, || self.env.now_ms()) {
            Ok(seal) => (seal, None),
            Err(error) => (None, Some(error)),
        };
        for event in events.drain(..) {
            if failure.is_some() {
                continue;
            }
            // Encoded straight into the log's staging buffer: a body is copied once, from its
            // request into the log.
            match self.log.append_encoded(event.kind(), |out| event.encode_sealed(out, seal.as_deref())) {
                Ok((location, len)) => {
                    let seq = location.seq;
                    last = Some(Ticket(seq));
                    if let Some(message) = event.full_record_of() {
                        let bytes = record_bytes(len) as u32;
                        self.log.hold(seq, bytes);
                        let placement = Placement::located(seq, location.segment, location.offset, bytes);
                        if let Some(old) = partition.placed(message, placement) {
                            supersede(Record::Message(message), placement, old);
                        }
                        self.account(partition);
                        // Past the budget a new message keeps only its place in the log.
                        if self.resident.get() > self.budget && partition.evict(message) {
                            self.account(partition);
                        }
                    }
                    if let Event::Cursor { key, .. } = &event {
                        let bytes = record_bytes(len) as u32;
                        self.log.hold(seq, bytes);
                        if let Some(old) = partition.cursor_placed(*key, (seq, bytes)) {
                            supersede(Record::Cursor(*key), Placement::at(seq, bytes), Placement::at(old.0, old.1));
                        }
                    }
                    if let Event::Dedup { key, .. } = &event {
                        let bytes = record_bytes(len) as u32;
                        self.log.hold(seq, bytes);
                        if let Some(old) = partition.dedup_placed(*key, (seq, bytes)) {
                            supersede(Record::Dedup(*key), Placement::at(seq, bytes), Placement::at(old.0, old.1));
                        }
                    }
                }
                Err(error) => failure = Some(storage_error(error)),
            }
        }
        drop(events);
        self.release_from(partition);
        match failure {
            Some(error) => Err(error),
            None => Ok(last),
        }
    }

    /// Settles a record compaction's copy superseded: released if the copy was written;
    /// otherwise (lost to a flush that could not make its segment, or not known written) the
    /// copy is as if never made — what it was for points at the original again, which stays.
    pub fn settle(&self, partition: Option<&mut Partition>, superseded: Superseded) {
        let Superseded { record, new, old, .. } = superseded;
        if self.log.kept(new.log_seq) {
            return self.log.release(old.log_seq, old.bytes);
        }
        let restored = partition.is_some_and(|partition| partition.unplace(record, new, old));
        if restored {
            self.log.release(new.log_seq, new.bytes);
        } else {
            // It has moved on since (deleted, or placed again): the original is not needed.
            self.log.release(old.log_seq, old.bytes);
        }
    }

    /// Releases what `partition` reported as no longer live (also for partitions that are
    /// dropped), and counts its change in resident payloads.
    pub fn release_from(&self, partition: &mut Partition) {
        let mut released = self.released.borrow_mut();
        partition.take_released(&mut released);
        for (seq, bytes) in released.drain(..) {
            self.log.release(seq, bytes);
        }
        drop(released);
        self.account(partition);
    }

    /// Counts `partition`'s change in resident payload bytes.
    pub fn account(&self, partition: &mut Partition) {
        self.resident.set(add_change(self.resident.get(), partition));
    }

    /// Bytes of payloads this shard may keep in memory (its part of `--memory-budget`).
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes of payloads this shard keeps in memory.
    pub fn resident_bytes(&self) -> u64 {
        self.resident.get()
    }

    /// Reads back the payloads of messages of queue `queue_id` that are kept in the log
    /// only, given as (message seq, placement); answers (message id, payload) in the same order.
    pub async fn load(&self, queue_id: u64, wanted: &[(u64, Placement)]) -> Vec<Result<(u128, Arc<Payload>), OpError>> {
        let locations: Vec<(Location, usize)> = wanted
            .iter()
            .map(|(_, p)| (Location { seq: p.log_seq, segment: p.segment as u64, offset: p.offset as u64 }, p.bytes as usize))
            .collect();
        let mut answers: Vec<Result<(u128, Arc<Payload>), OpError>> =
            wanted.iter().map(|_| Err(OpError::new(ErrorCode::InternalFailure, "storage failure: record not read"))).collect();
        self.log
            .read_many(&locations, |i, record| {
                let (seq, placement) = wanted[i];
                // Decoded from the read buffer: the body is copied once, into its payload.
                answers[i] = match record.map(|(kind, bytes)| Event::decode_with(kind, bytes, Some(&self.keyring))) {
                    Ok(Ok(Event::Sent { queue_id: q, seq: s, message_id, payload, .. }))
                    | Ok(Ok(Event::MovedIn { queue_id: q, seq: s, message_id, payload, .. }))
                    | Ok(Ok(Event::Restored { queue_id: q, seq: s, message_id, payload, .. }))
                    | Ok(Ok(Event::Fed { queue_id: q, seq: s, message_id, payload, .. }))
                        if q == queue_id && s == seq =>
                    {
                        Ok((message_id, payload))
                    }
                    Err(error) => Err(storage_error(error.clone())),
                    Ok(_) => Err(OpError::new(
                        ErrorCode::InternalFailure,
                        format!("storage failure: log record {} does not hold message {seq} of queue {queue_id}", placement.log_seq),
                    )),
                };
            })
            .await;
        answers
    }

    /// Refuses a new message when the disk is short of space (receives and deletes go on).
    pub fn admit_send(&self) -> Result<(), OpError> {
        if self.log.space_low() {
            // Space may have been freed since (by compaction, retention or the operator).
            self.log.ensure_spare();
            let message = match self.log.segment_refusal() {
                Some(StorageError::SegmentUnavailable { dir, cause }) => format!(
                    "New messages are refused: the broker cannot create a log segment in {} ({cause}); receives and deletes still work.",
                    dir.display()
                ),
                _ => {
                    "The broker's disk is full: new messages are refused until space is freed (receives and deletes still work).".to_owned()
                }
            };
            return Err(OpError::new(ErrorCode::ServiceUnavailable, message));
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

    /// This shard's data keys.
    pub fn keyring(&self) -> &Rc<Keyring> {
        &self.keyring
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
