//! FIFO queues (aws-semantics.md §2.6): a mode of the queue engine's partition.
//!
//! **Placement.** Order within a message group and its deduplication window need no
//! coordination between cores when each group lives whole on one shard (`group_owner`). A
//! FIFO queue made for high throughput (`FifoThroughputLimit=perMessageGroupId`, whose
//! deduplication is per group: `QueueMeta::groups_spread`) spreads its groups over the shards
//! by a stable hash of the group id: a send goes to each of its groups' shards, a receive
//! gathers from its own shard first, then the others, and a delete goes to the shard its
//! receipt names. Any other FIFO queue (deduplicated across the whole queue) lives whole on
//! its owner (`owner`), queues spreading over the shards by id. Either way a shard's
//! partition holds whole groups, and everything below is per partition.
//!
//! **Groups.** The partition keeps its messages in `slots` by sequence number, as a standard
//! queue does, but receives through `Fifo::groups`: per group, the sequence numbers of its
//! live messages in send order, and how many are in flight. A group is *available* when none
//! of its messages is in flight and its first message is visible and past the queue's delay.
//! `ready` lists groups that may be available, each at most once (`Group::queued`); a group
//! goes back on it when its last in-flight message is deleted or becomes visible again. A
//! receive takes the first available group's messages in order, as many as it may, then the
//! next group's. A message that becomes visible again is still first in its group, so the
//! group waits for it.
//!
//! **Delays** are the queue's `DelaySeconds`, applied at receive time to every message
//! (`sent_ms + delay`), which makes a change retroactive as AWS's FIFO delays are.
//!
//! **Deduplication.** A send whose deduplication key (`dedup_key`: SHA-256 of the scope's
//! group, if the scope is the group, and the id) was seen in the last five minutes is answered
//! with the first message's id and sequence number, and nothing is stored. The window is
//! durable: a message's full record carries its key (`FifoFields`), and when the message goes
//! before its window ends, a `Dedup` record keeps the key until then (written before the
//! delete, purge, expiry or move, so a crash never leaves the key unkept). Expired keys release
//! their record; compaction rewrites the ones still held in old segments.
//!
//! **Sequence numbers** grow within the partition, and so within every group (a spread queue's
//! shards number their groups' messages each on their own): at least the
//! send time in ms × 10⁶, and above every number the partition has given (kept in the records
//! across restarts).
//!
//! **Dead-letter moves** go to the dead-letter queue's owner, which may be another shard: the
//! message is held in flight here (unlogged) while the owner stores it, and only then taken out
//! with a `MovedOut` record. A crash in between can leave a copy in both queues, never none.
//!
//! **Receive request attempts**: a receive with a `ReceiveRequestAttemptId` is remembered for
//! five minutes (in memory); retried while all its messages are still in flight under the
//! receipts it gave, it answers the same messages and receipts and restarts their visibility
//! timeout.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use sluice_protocol::limits::FIFO_DEDUP_WINDOW_MS;

use super::journal::{Event, SlotState};
use super::partition::{Delivery, Moved, Partition, Payload, ReceiveRules};

/// How long a message being moved to a dead-letter queue on another shard is held before it
/// is offered again (if the move never finished).
const MOVE_HOLD_MS: u64 = 30_000;

/// The shard that holds FIFO queue `queue_id` (all of it, unless its groups are spread).
pub fn owner(queue_id: u64, shards: usize) -> usize {
    (queue_id % shards.max(1) as u64) as usize
}

/// The shard that holds message group `group` of FIFO queue `meta`: the queue's owner, or for
/// a queue whose groups are spread, the group's by a stable hash (FNV-1a) of its id, the same
/// on every start (a data directory reopens only with the shard count that wrote it).
pub fn group_owner(meta: &crate::catalog::QueueMeta, group: &str, shards: usize) -> usize {
    if !meta.groups_spread {
        return owner(meta.id, shards);
    }
    let hash = group.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    (hash % shards.max(1) as u64) as usize
}

/// What a FIFO message carries besides what a standard one does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FifoFields {
    pub sequence: u64,
    /// The key its deduplication id holds in the window; 0 for none (a message moved to a
    /// dead-letter queue).
    pub dedup_key: u128,
    pub deduplication_id: Option<Arc<str>>,
}

/// The key of deduplication id `id` within `group` (`None`: the scope is the whole queue).
/// Never 0.
pub fn dedup_key(group: Option<&str>, id: &str) -> u128 {
    let mut hasher = Sha256::new();
    match group {
        Some(group) => {
            hasher.update([1u8]);
            hasher.update((group.len() as u32).to_le_bytes());
            hasher.update(group.as_bytes());
        }
        None => hasher.update([0u8]),
    }
    hasher.update(id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(first).max(1)
}

/// The deduplication id content-based deduplication gives a body: its SHA-256, in hex.
pub fn content_deduplication_id(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A FIFO message's place in its group (kept in its slot).
#[derive(Debug, Clone)]
pub struct FifoSlot {
    pub group: Arc<str>,
    pub dedup_key: u128,
}

#[derive(Debug, Default)]
struct Group {
    /// Sequence numbers of the group's live messages, in order.
    seqs: VecDeque<u64>,
    inflight: u32,
    /// Whether the group is on `ready`.
    queued: bool,
}

/// What holds a deduplication key's bytes in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// The full record of the live message at this sequence number.
    Message(u64),
    /// A `Dedup` record (log seq, bytes); (0, 0) until it is placed.
    Record(u64, u32),
}

#[derive(Debug, Clone, Copy)]
struct DedupEntry {
    message_id: u128,
    sequence: u64,
    expires_ms: u64,
    held: Held,
}

#[derive(Debug)]
struct Attempt {
    expires_ms: u64,
    /// (seq, receive count, visibility deadline) of each message it answered.
    messages: Vec<(u64, u32, u64)>,
}

/// Deduplication keys by a fixed hash: the keys are SHA-256 prefixes (no client can make
/// them collide), and compaction, which walks them, then journals the same records in the
/// same order on every run (the simulator replays runs exactly).
type DedupMap = HashMap<u128, DedupEntry, std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>>;

/// Keys a generation of the window starts with room for, at least.
const GENERATION_MIN: usize = 4096;
/// Expired keys whose records a tick releases at most (a generation goes a step at a time).
const DRAIN_STEP: usize = 65_536;

/// The deduplication window: keys in generations, oldest first, new keys going into the
/// newest. A generation is sealed when full and never resized (a hash table that doubles
/// while holding millions of keys stalls the shard while it moves them); the next one has room
/// for as many keys as the window holds, so a window of N keys spans about log2(N / 4096)
/// tables at first and two or three once it is steady (older ones expire); a generation goes
/// as a whole once its last key has expired, its records released a step at a time.
#[derive(Debug, Default)]
struct DedupWindow {
    generations: VecDeque<(DedupMap, u64)>,
    /// An expired generation whose records are still being released.
    draining: Option<std::collections::hash_map::IntoIter<u128, DedupEntry>>,
    len: usize,
}

impl DedupWindow {
    fn get(&self, key: &u128) -> Option<&DedupEntry> {
        self.generations.iter().rev().find_map(|(map, _)| map.get(key))
    }

    fn get_mut(&mut self, key: &u128) -> Option<&mut DedupEntry> {
        self.generations.iter_mut().rev().find_map(|(map, _)| map.get_mut(key))
    }

    fn remove(&mut self, key: &u128) -> Option<DedupEntry> {
        let removed = self.generations.iter_mut().rev().find_map(|(map, _)| map.remove(key));
        self.len -= usize::from(removed.is_some());
        removed
    }

    /// Adds a key not in the window.
    fn insert(&mut self, key: u128, entry: DedupEntry) {
        let full = self.generations.back().is_none_or(|(map, _)| map.len() >= map.capacity());
        if full {
            let room = self.len.max(GENERATION_MIN);
            self.generations.push_back((DedupMap::with_capacity_and_hasher(room, Default::default()), 0));
        }
        let (map, last_expiry) = self.generations.back_mut().expect("a generation");
        map.insert(key, entry);
        *last_expiry = (*last_expiry).max(entry.expires_ms);
        self.len += 1;
    }

    fn values(&self) -> impl Iterator<Item = &DedupEntry> {
        self.generations.iter().flat_map(|(map, _)| map.values())
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (&u128, &mut DedupEntry)> {
        self.generations.iter_mut().flat_map(|(map, _)| map.iter_mut())
    }

    /// Lets generations whose keys have all expired go, and releases up to `DRAIN_STEP` of
    /// their records into `released`.
    fn expire(&mut self, now_ms: u64, released: &mut Vec<(u64, u32)>) {
        if self.draining.is_none() && self.generations.front().is_some_and(|(_, last)| *last <= now_ms) {
            let (map, _) = self.generations.pop_front().expect("a generation");
            self.len -= map.len();
            self.draining = Some(map.into_iter());
        }
        if let Some(draining) = &mut self.draining {
            let mut taken = 0;
            for (_, entry) in draining.by_ref().take(DRAIN_STEP) {
                taken += 1;
                released.extend(released_record(entry.held));
            }
            if taken < DRAIN_STEP {
                self.draining = None;
            }
        }
    }
}

/// A FIFO partition's state beyond a standard one's. (Groups are looked up by the client's
/// names with a random hash, and never walked in hash order.)
#[derive(Debug, Default)]
pub struct Fifo {
    groups: HashMap<Arc<str>, Group>,
    ready: VecDeque<Arc<str>>,
    dedup: DedupWindow,
    last_sequence: u64,
    attempts: HashMap<String, Attempt>,
    attempt_order: VecDeque<(u64, String)>,
}

/// How a FIFO send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FifoSend {
    /// Stored as a new message at `seq`.
    Stored { seq: u64, sequence: u64 },
    /// A duplicate within the window of the message answered here.
    Duplicate { message_id: u128, sequence: u64 },
}

impl Fifo {
    /// The shared name of `group` (one allocation per group, not per message).
    fn group_name(&self, group: &str) -> Arc<str> {
        match self.groups.get_key_value(group) {
            Some((name, _)) => name.clone(),
            None => Arc::from(group),
        }
    }

    /// Adds message `seq` to its group, in order (replay may bring records out of order).
    fn enqueue(&mut self, group: &Arc<str>, seq: u64, inflight: bool) {
        let entry = self.groups.entry(group.clone()).or_default();
        match entry.seqs.back() {
            Some(&last) if last > seq => {
                let at = entry.seqs.partition_point(|&s| s < seq);
                if entry.seqs.get(at) != Some(&seq) {
                    entry.seqs.insert(at, seq);
                }
            }
            Some(&last) if last == seq => {}
            _ => entry.seqs.push_back(seq),
        }
        if inflight {
            entry.inflight += 1;
        }
        if !entry.queued && entry.inflight == 0 {
            entry.queued = true;
            self.ready.push_back(group.clone());
        }
    }

    /// One of the group's in-flight messages is visible again, or gone: the group may be available.
    fn inflight_ended(&mut self, group: &Arc<str>) {
        if let Some(entry) = self.groups.get_mut(group) {
            entry.inflight = entry.inflight.saturating_sub(1);
            if entry.inflight == 0 && !entry.queued && !entry.seqs.is_empty() {
                entry.queued = true;
                self.ready.push_back(group.clone());
            }
        }
    }

    /// Message `seq` left its group (it was in flight if `inflight`).
    fn removed(&mut self, group: &Arc<str>, seq: u64, inflight: bool) {
        let Some(entry) = self.groups.get_mut(group) else { return };
        if let Some(at) = entry.seqs.iter().position(|&s| s == seq) {
            entry.seqs.remove(at);
        }
        if inflight {
            entry.inflight = entry.inflight.saturating_sub(1);
        }
        if entry.seqs.is_empty() && entry.inflight == 0 {
            // A group on `ready` stays until a receive takes it off (so `ready` never names a
            // group twice, nor one that is gone).
            if !entry.queued {
                self.groups.remove(group);
            }
        } else if entry.inflight == 0 && !entry.queued {
            entry.queued = true;
            self.ready.push_back(group.clone());
        }
    }

    fn next_sequence(&mut self, now_ms: u64) -> u64 {
        self.last_sequence = (self.last_sequence + 1).max(now_ms.saturating_mul(1_000_000));
        self.last_sequence
    }

    /// Adds or refreshes a key; the newer message wins over an older one with the same key.
    fn remember(&mut self, key: u128, entry: DedupEntry) -> Option<Held> {
        self.last_sequence = self.last_sequence.max(entry.sequence);
        match self.dedup.get_mut(&key) {
            Some(existing) if existing.expires_ms > entry.expires_ms => None,
            // Same window: refreshed where it is.
            Some(existing) if existing.expires_ms == entry.expires_ms => Some(std::mem::replace(existing, entry).held),
            Some(_) => {
                // A later window: the key moves to the newest generation (its old generation
                // may go before the new expiry).
                let previous = self.dedup.remove(&key).map(|old| old.held);
                self.dedup.insert(key, entry);
                previous
            }
            None => {
                self.dedup.insert(key, entry);
                None
            }
        }
    }

    /// Forgets attempts older than the window.
    fn prune_attempts(&mut self, now_ms: u64) {
        while let Some((expires, _)) = self.attempt_order.front() {
            if *expires > now_ms {
                break;
            }
            let (expires, id) = self.attempt_order.pop_front().expect("front exists");
            if self.attempts.get(&id).is_some_and(|a| a.expires_ms == expires) {
                self.attempts.remove(&id);
            }
        }
    }
}

fn released_record(held: Held) -> Option<(u64, u32)> {
    match held {
        Held::Record(log_seq, bytes) if log_seq != 0 => Some((log_seq, bytes)),
        _ => None,
    }
}

impl Partition {
    /// Makes this (empty, or replaying) partition a FIFO queue's.
    pub fn make_fifo(&mut self) {
        if self.fifo.is_none() {
            self.fifo = Some(Box::default());
        }
    }

    pub fn is_fifo(&self) -> bool {
        self.fifo.is_some()
    }

    /// Stores a FIFO message unless its deduplication key (`dedup`: key and id) was seen in the
    /// window. `payload` gets its sequence number here.
    pub fn send_fifo(&mut self, message_id: u128, mut payload: Payload, dedup: (u128, Arc<str>), now_ms: u64) -> FifoSend {
        self.make_fifo();
        let fifo = self.fifo.as_mut().expect("made FIFO");
        if let Some(entry) = fifo.dedup.get(&dedup.0).filter(|entry| entry.expires_ms > now_ms) {
            return FifoSend::Duplicate { message_id: entry.message_id, sequence: entry.sequence };
        }
        let sequence = fifo.next_sequence(now_ms);
        payload.fifo = Some(FifoFields { sequence, dedup_key: dedup.0, deduplication_id: Some(dedup.1) });
        let payload = Arc::new(payload);
        let seq = self.send(message_id, payload, 0, now_ms);
        let entry = DedupEntry { message_id, sequence, expires_ms: now_ms + FIFO_DEDUP_WINDOW_MS, held: Held::Message(seq) };
        if let Some(previous) = self.fifo.as_mut().expect("made FIFO").remember(dedup.0, entry).and_then(released_record) {
            self.released.push(previous);
        }
        FifoSend::Stored { seq, sequence }
    }

    /// The group bookkeeping of a message entering the partition (`push_slot`, `restore`).
    pub(super) fn fifo_slot_for(&mut self, payload: &Payload) -> Option<Box<FifoSlot>> {
        let fifo = self.fifo.as_mut()?;
        let group = fifo.group_name(payload.message_group_id.as_deref().unwrap_or(""));
        let dedup_key = payload.fifo.as_ref().map_or(0, |f| f.dedup_key);
        if let Some(fields) = &payload.fifo {
            fifo.last_sequence = fifo.last_sequence.max(fields.sequence);
        }
        Some(Box::new(FifoSlot { group, dedup_key }))
    }

    pub(super) fn fifo_enqueue(&mut self, slot: &FifoSlot, seq: u64, inflight: bool) {
        if let Some(fifo) = self.fifo.as_mut() {
            fifo.enqueue(&slot.group, seq, inflight);
        }
    }

    pub(super) fn fifo_inflight_started(&mut self, seq: u64) {
        let Some(group) = self.slot_fifo(seq).map(|f| f.group.clone()) else { return };
        if let Some(group) = self.fifo.as_mut().and_then(|fifo| fifo.groups.get_mut(&group)) {
            group.inflight += 1;
        }
    }

    pub(super) fn fifo_inflight_ended(&mut self, seq: u64) {
        let Some(group) = self.slot_fifo(seq).map(|f| f.group.clone()) else { return };
        if let Some(fifo) = self.fifo.as_mut() {
            fifo.inflight_ended(&group);
        }
    }

    pub(super) fn fifo_removed(&mut self, slot: &FifoSlot, seq: u64, inflight: bool) {
        if let Some(fifo) = self.fifo.as_mut() {
            fifo.removed(&slot.group, seq, inflight);
        }
    }

    /// A message that held its deduplication key is leaving before the window ends: journals
    /// a `Dedup` record to hold the key instead (before the record of its leaving).
    pub(super) fn retire_dedup(&mut self, seq: u64, key: u128) {
        let queue_id = self.queue_id();
        let Some(fifo) = self.fifo.as_mut() else { return };
        let Some(entry) = fifo.dedup.get_mut(&key) else { return };
        if entry.held != Held::Message(seq) {
            return;
        }
        entry.held = Held::Record(0, 0);
        let DedupEntry { message_id, sequence, expires_ms, .. } = *entry;
        self.journal.push(Event::Dedup { queue_id, key, message_id, sequence, expires_ms });
    }

    /// Forgets the key a message held, without a record (the message was never kept, or
    /// replay finds it gone with no `Dedup` record after it: its window had ended).
    pub(super) fn forget_dedup(&mut self, seq: u64, key: u128) {
        let Some(fifo) = self.fifo.as_mut() else { return };
        if fifo.dedup.get(&key).is_some_and(|entry| entry.held == Held::Message(seq)) {
            fifo.dedup.remove(&key);
        }
    }

    /// Records where a `Dedup` record for `key` was logged; returns the record it supersedes
    /// (to release), or the new one when the key is no longer kept.
    pub fn dedup_placed(&mut self, key: u128, record: (u64, u32)) -> Option<(u64, u32)> {
        let entry = self.fifo.as_mut().and_then(|fifo| fifo.dedup.get_mut(&key));
        match entry {
            Some(entry) if matches!(entry.held, Held::Record(..)) => {
                let previous = std::mem::replace(&mut entry.held, Held::Record(record.0, record.1));
                released_record(previous)
            }
            _ => Some(record),
        }
    }

    /// Points deduplication key `key` at its record `old` again if it is held by `new` (a copy
    /// compaction made that was lost). Returns whether it did.
    pub(super) fn dedup_unplace(&mut self, key: u128, new: (u64, u32), old: (u64, u32)) -> bool {
        let entry = self.fifo.as_mut().and_then(|fifo| fifo.dedup.get_mut(&key));
        match entry {
            Some(entry) if entry.held == Held::Record(new.0, new.1) => {
                entry.held = Held::Record(old.0, old.1);
                true
            }
            _ => false,
        }
    }

    /// Replays a `Dedup` record logged at `record`.
    pub fn restore_dedup(&mut self, key: u128, message_id: u128, sequence: u64, expires_ms: u64, record: (u64, u32)) {
        self.make_fifo();
        let entry = DedupEntry { message_id, sequence, expires_ms, held: Held::Record(record.0, record.1) };
        match self.fifo.as_mut().expect("made FIFO").remember(key, entry) {
            None if self.fifo.as_ref().is_some_and(|f| f.dedup.get(&key).is_some_and(|e| e.held != entry.held)) => {
                // An entry with a later window stays; this record holds nothing.
                self.released.push(record);
            }
            previous => {
                if let Some(previous) = previous.and_then(released_record) {
                    self.released.push(previous);
                }
            }
        }
    }

    /// Replays a full record's deduplication key (the message at `seq` holds it).
    pub(super) fn restore_message_dedup(&mut self, seq: u64, message_id: u128, payload: &Payload) {
        let Some(fields) = &payload.fifo else { return };
        let Some(fifo) = self.fifo.as_mut() else { return };
        fifo.last_sequence = fifo.last_sequence.max(fields.sequence);
        if fields.dedup_key == 0 {
            return;
        }
        let entry = DedupEntry {
            message_id,
            sequence: fields.sequence,
            expires_ms: payload.sent_ms + FIFO_DEDUP_WINDOW_MS,
            held: Held::Message(seq),
        };
        match fifo.dedup.get(&fields.dedup_key) {
            // A later message's key, or this message's key already held by a `Dedup` record:
            // leave it.
            Some(existing)
                if existing.expires_ms > entry.expires_ms
                    || (existing.message_id == message_id && matches!(existing.held, Held::Record(..))) => {}
            _ => {
                if let Some(previous) = fifo.remember(fields.dedup_key, entry).and_then(released_record) {
                    self.released.push(previous);
                }
            }
        }
    }

    /// Every `Dedup` record a key holds, for storage's accounting after a replay.
    pub fn for_each_dedup_record(&self, mut each: impl FnMut(u64, u32)) {
        if let Some(fifo) = &self.fifo {
            for entry in fifo.dedup.values() {
                if let Some((log_seq, bytes)) = released_record(entry.held) {
                    each(log_seq, bytes);
                }
            }
        }
    }

    /// Journals again the `Dedup` records below `below_log_seq` among the keys at positions
    /// `from..from + budget` of the window (compaction, a step at a time: a window holds
    /// millions of keys). Returns where to go on, or `None` when done. (A key that moves while
    /// compaction goes on may be passed over; compaction then finds its record still live and
    /// tries again later.)
    pub fn relocate_dedup(&mut self, below_log_seq: u64, from: usize, budget: usize) -> Option<usize> {
        let queue_id = self.queue_id();
        let fifo = self.fifo.as_mut()?;
        let mut seen = 0;
        for (&key, entry) in fifo.dedup.iter_mut().skip(from).take(budget) {
            seen += 1;
            if let Held::Record(log_seq, _) = entry.held {
                if log_seq != 0 && log_seq < below_log_seq {
                    let DedupEntry { message_id, sequence, expires_ms, .. } = *entry;
                    self.journal.push(Event::Dedup { queue_id, key, message_id, sequence, expires_ms });
                }
            }
        }
        (seen == budget).then_some(from + budget)
    }

    /// A FIFO topic's window (`topic::fifo`: a partition that holds deduplication keys and no
    /// messages): the message id and sequence number the publish that holds `key` got, if its
    /// window has not ended.
    pub fn published(&self, key: u128, now_ms: u64) -> Option<(u128, u64)> {
        let entry = self.fifo.as_ref()?.dedup.get(&key)?;
        (entry.expires_ms > now_ms).then_some((entry.message_id, entry.sequence))
    }

    /// The next sequence number of a FIFO topic's window.
    pub fn next_published_sequence(&mut self, now_ms: u64) -> u64 {
        self.make_fifo();
        self.fifo.as_mut().expect("made FIFO").next_sequence(now_ms)
    }

    /// Keeps `key` for the window from `now_ms` in a FIFO topic's window: journals its `Dedup`
    /// record (placed on commit, like a queue's).
    pub fn remember_published(&mut self, key: u128, message_id: u128, sequence: u64, now_ms: u64) {
        self.make_fifo();
        let queue_id = self.queue_id();
        let expires_ms = now_ms + FIFO_DEDUP_WINDOW_MS;
        let entry = DedupEntry { message_id, sequence, expires_ms, held: Held::Record(0, 0) };
        if let Some(previous) = self.fifo.as_mut().expect("made FIFO").remember(key, entry).and_then(released_record) {
            self.released.push(previous);
        }
        self.journal.push(Event::Dedup { queue_id, key, message_id, sequence, expires_ms });
    }

    /// Forgets keys whose window has ended, releasing their records; forgets old attempts.
    pub(crate) fn expire_dedup(&mut self, now_ms: u64) {
        let Some(fifo) = self.fifo.as_mut() else { return };
        fifo.dedup.expire(now_ms, &mut self.released);
        fifo.prune_attempts(now_ms);
    }

    /// A FIFO receive: up to `rules.max_messages` messages, the first available group's in
    /// order, then the next group's. Messages past maxReceiveCount are held for a move
    /// (`moved`; finish with `finish_move`). Returns whether it stopped at a message whose
    /// payload is only in the log.
    pub(super) fn receive_fifo(
        &mut self,
        now_ms: u64,
        rules: &ReceiveRules,
        delivered: &mut Vec<Delivery>,
        moved: &mut Vec<Moved>,
    ) -> bool {
        let wanted = delivered.len() + rules.max_messages;
        let mut looked = 0;
        let to_look = self.fifo.as_ref().map_or(0, |f| f.ready.len());
        let mut stalled = false;
        while delivered.len() < wanted && looked < to_look && (self.counts.inflight as usize) < rules.inflight_max {
            looked += 1;
            let fifo = self.fifo.as_mut().expect("FIFO partition");
            let Some(name) = fifo.ready.pop_front() else { break };
            let Some(group) = fifo.groups.get_mut(&name) else { continue };
            group.queued = false;
            if group.seqs.is_empty() && group.inflight == 0 {
                fifo.groups.remove(&name);
                continue;
            }
            if group.inflight > 0 {
                continue;
            }
            let mut index = 0;
            let mut taken = 0u32;
            let mut requeue_front = false;
            let mut requeue_back = false;
            while delivered.len() < wanted {
                let fifo = self.fifo.as_mut().expect("FIFO partition");
                let Some(&seq) = fifo.groups.get(&name).and_then(|g| g.seqs.get(index)) else { break };
                let Some(slot) = self.slot(seq) else {
                    index += 1;
                    continue;
                };
                if slot.state != SlotState::Visible {
                    break;
                }
                if slot.sent_ms + rules.retention_ms <= now_ms {
                    // Gone past retention: it leaves its group, and the next one is looked at.
                    self.expire_message(seq);
                    continue;
                }
                if slot.sent_ms + rules.delay_ms > now_ms {
                    requeue_back = taken == 0;
                    break;
                }
                let Some(payload) = slot.payload.clone() else {
                    requeue_front = taken == 0;
                    stalled = true;
                    break;
                };
                if rules.max_receive_count.is_some_and(|max| slot.receive_count >= max) {
                    if taken == 0 {
                        // Held (unlogged) while the dead-letter queue's owner stores it; the group waits.
                        let moved_message = Moved {
                            seq,
                            message_id: slot.message_id,
                            payload,
                            receive_count: slot.receive_count,
                            first_receive_ms: slot.first_receive_ms,
                        };
                        self.hold_inflight(seq, now_ms + MOVE_HOLD_MS, now_ms);
                        taken += 1;
                        moved.push(moved_message);
                    }
                    break;
                }
                let delivery = self.deliver(seq, payload, now_ms, rules.visibility_ms);
                delivered.push(delivery);
                taken += 1;
                index += 1;
            }
            let fifo = self.fifo.as_mut().expect("FIFO partition");
            if let Some(group) = fifo.groups.get_mut(&name) {
                group.inflight += taken;
                if (requeue_front || requeue_back) && !group.queued && group.inflight == 0 {
                    group.queued = true;
                    if requeue_front {
                        fifo.ready.push_front(name);
                        break;
                    }
                    fifo.ready.push_back(name);
                }
            }
            if stalled {
                break;
            }
        }
        stalled
    }

    /// Takes a message held for a dead-letter move out, once the dead-letter queue keeps it.
    pub fn finish_move(&mut self, seq: u64, tag: u64) {
        if !self.holds(seq, tag) {
            return;
        }
        self.retire_dedup_of(seq);
        if self.remove(seq).is_some() {
            self.journal.push(Event::MovedOut { queue_id: self.queue_id(), seq });
        }
    }

    /// Stores a message moved here from a FIFO queue: a new sequence number, its enqueue time
    /// reset (as AWS does), its deduplication id kept for reading but outside the window.
    pub fn accept_moved_fifo(&mut self, moved: Moved, source_arn: Arc<str>, now_ms: u64) -> u64 {
        self.make_fifo();
        let sequence = self.fifo.as_mut().expect("made FIFO").next_sequence(now_ms);
        let mut payload = (*moved.payload).clone();
        payload.sent_ms = now_ms;
        payload.dead_letter_source_arn = Some(source_arn);
        let deduplication_id = payload.fifo.take().and_then(|fields| fields.deduplication_id);
        payload.fifo = Some(FifoFields { sequence, dedup_key: 0, deduplication_id });
        self.accept_moved(Moved { payload: Arc::new(payload), ..moved }, now_ms)
    }

    /// A FIFO delete: only the receipt of the message's current receive, while its
    /// visibility timeout runs, deletes it (AWS rejects an expired FIFO receipt). A message
    /// already gone deletes nothing and succeeds.
    pub fn delete_fifo(&mut self, seq: u64, tag: u64, receive_count: u32, now_ms: u64) -> Result<bool, sluice_protocol::OpError> {
        if !self.holds(seq, tag) {
            return Ok(false);
        }
        let slot = self.slot(seq).expect("held");
        match slot.state {
            SlotState::InFlight { deadline_ms, .. } if deadline_ms > now_ms && slot.receive_count == receive_count => Ok(self.delete(seq)),
            _ => Err(super::partition::expired_receipt()),
        }
    }

    /// Answers a retried receive with the attempt id `id` again, if every message it answered
    /// is still in flight under that receive: same messages, same receipts, a new visibility
    /// timeout. `None` when there is no such attempt or it no longer stands.
    pub fn retry_attempt(&mut self, id: &str, now_ms: u64, visibility_ms: u64) -> Option<Vec<Delivery>> {
        let fifo = self.fifo.as_mut()?;
        fifo.prune_attempts(now_ms);
        let messages = fifo.attempts.get(id)?.messages.clone();
        let stands = messages.iter().all(|&(seq, receive_count, deadline)| {
            self.slot(seq).is_some_and(|slot| {
                slot.receive_count == receive_count
                    && slot.payload.is_some()
                    && matches!(slot.state, SlotState::InFlight { deadline_ms, .. } if deadline_ms == deadline && deadline > now_ms)
            })
        });
        if !stands {
            self.fifo.as_mut()?.attempts.remove(id);
            return None;
        }
        let deadline_ms = now_ms + visibility_ms;
        let mut delivered = Vec::with_capacity(messages.len());
        for &(seq, _, _) in &messages {
            self.set_deadline(seq, deadline_ms);
            delivered.push(self.delivery_of(seq)?);
        }
        let attempt = self.fifo.as_mut()?.attempts.get_mut(id)?;
        for message in &mut attempt.messages {
            message.2 = deadline_ms;
        }
        Some(delivered)
    }

    /// Remembers what a receive with attempt id `id` answered.
    pub fn remember_attempt(&mut self, id: String, delivered: &[Delivery], now_ms: u64) {
        let messages: Vec<(u64, u32, u64)> = delivered
            .iter()
            .filter_map(|d| match self.slot(d.seq)?.state {
                SlotState::InFlight { deadline_ms, .. } => Some((d.seq, d.receive_count, deadline_ms)),
                _ => None,
            })
            .collect();
        let Some(fifo) = self.fifo.as_mut() else { return };
        let expires_ms = now_ms + FIFO_DEDUP_WINDOW_MS;
        fifo.attempt_order.push_back((expires_ms, id.clone()));
        fifo.attempts.insert(id, Attempt { expires_ms, messages });
    }

    /// FIFO counts: visible messages still within the queue's delay count as delayed.
    pub fn fifo_delayed(&self, now_ms: u64, delay_ms: u64) -> u64 {
        if delay_ms == 0 || self.fifo.is_none() {
            return 0;
        }
        self.count_from_back(|slot| (slot.sent_ms + delay_ms > now_ms).then_some(slot.state == SlotState::Visible))
    }

    /// Whether some group is available to a receive now.
    pub fn fifo_receivable(&self, now_ms: u64, delay_ms: u64) -> bool {
        let Some(fifo) = &self.fifo else { return false };
        fifo.ready.iter().any(|name| {
            let Some(group) = fifo.groups.get(name) else { return false };
            group.inflight == 0
                && group
                    .seqs
                    .front()
                    .and_then(|&seq| self.slot(seq))
                    .is_some_and(|slot| slot.state == SlotState::Visible && slot.sent_ms + delay_ms <= now_ms)
        })
    }

    /// The next messages receives reach whose payload is only in the log: each ready group's
    /// first messages, in the order receives reach them.
    pub(super) fn fifo_on_disk_ahead(&self, max_messages: usize, max_bytes: u64, out: &mut Vec<(u64, super::partition::Placement)>) {
        let Some(fifo) = &self.fifo else { return };
        let mut bytes = 0u64;
        for name in fifo.ready.iter() {
            let Some(group) = fifo.groups.get(name) else { continue };
            for &seq in group.seqs.iter().take(super::partition::RECEIVE_RUN) {
                if out.len() >= max_messages || bytes >= max_bytes {
                    return;
                }
                let Some(slot) = self.slot(seq) else { continue };
                if slot.state == SlotState::Visible && slot.payload.is_none() && !out.iter().any(|(s, _)| *s == seq) {
                    out.push((seq, slot.placement));
                    bytes += slot.placement.bytes as u64;
                }
            }
        }
    }

    /// Whether the first message of the first ready group has its payload only in the log.
    pub(super) fn fifo_front_on_disk(&self, within: usize) -> bool {
        let Some(fifo) = &self.fifo else { return false };
        fifo.ready.iter().take(within).any(|name| {
            fifo.groups
                .get(name)
                .and_then(|group| group.seqs.front())
                .and_then(|&seq| self.slot(seq))
                .is_some_and(|slot| slot.state == SlotState::Visible && slot.payload.is_none())
        })
    }

    /// Checks the group bookkeeping against the messages: each group's messages in order and
    /// in the group, its in-flight count, and `ready` naming exactly the groups marked queued,
    /// once each (the model test runs this after every step).
    pub fn check_groups(&self) -> Result<(), String> {
        let Some(fifo) = &self.fifo else { return Ok(()) };
        let mut on_ready = std::collections::HashSet::new();
        for name in &fifo.ready {
            if !on_ready.insert(name.clone()) {
                return Err(format!("ready names {name} twice"));
            }
            if !fifo.groups.get(name).is_some_and(|g| g.queued) {
                return Err(format!("ready names {name}, which is not a queued group"));
            }
        }
        for (name, group) in &fifo.groups {
            if group.queued != on_ready.contains(name) {
                return Err(format!("group {name} is marked queued {} but ready says otherwise", group.queued));
            }
            if !group.seqs.iter().zip(group.seqs.iter().skip(1)).all(|(a, b)| a < b) {
                return Err(format!("group {name}'s messages are out of order: {:?}", group.seqs));
            }
            let mut inflight = 0;
            for &seq in &group.seqs {
                let slot = self.slot(seq).ok_or_else(|| format!("group {name} names {seq}, which is gone"))?;
                if slot.fifo.as_ref().map(|f| &f.group) != Some(name) {
                    return Err(format!("message {seq} is in group {name} but says otherwise"));
                }
                inflight += u32::from(matches!(slot.state, SlotState::InFlight { .. }));
            }
            if inflight != group.inflight {
                return Err(format!("group {name} counts {} in flight, its messages {inflight}", group.inflight));
            }
        }
        Ok(())
    }

    /// The groups as text (the simulator's failure reports).
    pub fn describe_groups(&self) -> String {
        let Some(fifo) = &self.fifo else { return "not FIFO".to_owned() };
        let mut groups: Vec<String> =
            fifo.groups.iter().map(|(name, g)| format!("{name}: {:?} inflight {} queued {}", g.seqs, g.inflight, g.queued)).collect();
        groups.sort();
        format!("groups [{}] ready {:?}", groups.join("; "), fifo.ready)
    }

    /// Drops the group bookkeeping (every message goes; deduplication keys stay).
    pub(super) fn fifo_clear_groups(&mut self) {
        if let Some(fifo) = self.fifo.as_mut() {
            fifo.groups.clear();
            fifo.ready.clear();
            fifo.attempts.clear();
            fifo.attempt_order.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keys_depend_on_scope_and_are_never_zero() {
        assert_eq!(dedup_key(None, "a"), dedup_key(None, "a"));
        assert_ne!(dedup_key(None, "a"), dedup_key(Some(""), "a"));
        assert_ne!(dedup_key(Some("g1"), "a"), dedup_key(Some("g2"), "a"));
        // The group's length is hashed: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(dedup_key(Some("ab"), "c"), dedup_key(Some("a"), "bc"));
        assert_ne!(dedup_key(None, ""), 0);
    }

    #[test]
    fn content_deduplication_is_the_bodys_sha256() {
        assert_eq!(content_deduplication_id(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn the_window_spans_generations_and_lets_them_go_when_expired() {
        let mut window = DedupWindow::default();
        let entry = |i: u64| DedupEntry {
            message_id: i as u128,
            sequence: i,
            expires_ms: 1_000 + i,
            held: if i.is_multiple_of(2) { Held::Record(i + 1, 64) } else { Held::Message(i) },
        };
        for i in 0..50_000u64 {
            window.insert(i as u128 + 1, entry(i));
        }
        assert!(window.generations.len() > 3, "sealed generations: {}", window.generations.len());
        assert!(window.generations.iter().all(|(map, _)| map.len() <= map.capacity()), "no generation grew past its room");
        assert_eq!(window.len, 50_000);
        for i in [0u64, 4_095, 4_096, 30_000, 49_999] {
            assert_eq!(window.get(&(i as u128 + 1)).map(|e| e.sequence), Some(i));
        }
        // Moved to a later window, a key is found once, in the newest generation.
        let later = DedupEntry { expires_ms: 1_000_000, ..entry(7) };
        let old = window.remove(&8).unwrap();
        assert_eq!(old.sequence, 7);
        window.insert(8, later);
        assert_eq!(window.get(&8).map(|e| e.expires_ms), Some(1_000_000));
        // Nothing has expired at 1,000: nothing goes.
        let mut released = Vec::new();
        window.expire(1_000, &mut released);
        assert!(released.is_empty() && window.draining.is_none());
        // Past every first-window expiry, generations go one by one, their records released —
        // all but the newest, which holds the moved key until its later expiry.
        let newest: Vec<u128> = window.generations.back().unwrap().0.keys().copied().collect();
        let held_elsewhere = (0..50_000u64).filter(|i| i.is_multiple_of(2) && !newest.contains(&(*i as u128 + 1))).count();
        for _ in 0..100 {
            window.expire(60_000, &mut released);
        }
        assert_eq!(window.generations.len(), 1);
        assert_eq!(window.len, newest.len());
        assert_eq!(released.len(), held_elsewhere, "one record per key a Dedup record held");
        assert_eq!(window.get(&8).map(|e| e.sequence), Some(7));
    }

    #[test]
    fn owners_spread_queues_over_shards() {
        assert_eq!(owner(7, 1), 0);
        assert_eq!(owner(7, 2), 1);
        assert_eq!(owner(8, 2), 0);
    }
}
