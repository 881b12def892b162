//! One shard's partition of one standard queue: the SQS message state machine.
//!
//! A message is delayed, visible or in flight (aws-semantics.md §2.5). The
//! partition keeps
//! - `slots`: every live message by sequence number (a deque from `base_seq`;
//!   deleted messages leave `None` until the front catches up),
//! - `visible`: sequence numbers ready to receive, oldest first,
//! - `delayed`: a min-heap of (due time, seq) for the delay timers,
//! - `inflight`: the visibility deadlines of messages in flight, ordered.
//!
//! `delayed` and `visible` entries may be stale (the message moved on); they are
//! checked against the slot when popped, so no operation searches. A deadline
//! leaves `inflight` when its message is deleted or given a new one: a heap that
//! kept them until due held every message received in the last visibility timeout
//! (1.5 million at 50,000 a second and 30 s), and each doubling of it copied and
//! faulted in tens of megabytes inside a receive — the 20–50 ms stalls behind the
//! queue's p99.9 (issue 19). Entries from replays may still be stale, and are
//! checked like the others. Time is
//! always passed in (`now_ms`), which keeps the engine deterministic under test.
//! Invariants: each visible message is in `visible` exactly once; the three
//! counters equal the number of slots in each state.
//!
//! Every change is also written to `journal` as an `Event` (the storage log's
//! records), in the order it happened; the shard drains it into the log after
//! each operation. Each slot remembers where its latest full record (Sent,
//! MovedIn or Restored) sits in the log (`Placement`), and removing a message
//! reports that place in `released`, so storage knows which segments still hold
//! live data.
//!
//! Bodies beyond the shard's memory budget live only in the log: storage `evict`s
//! the payload of a message whose record it has placed, and the slot keeps what
//! the engine itself needs (message-id tag, send time, state). A receive stops at
//! such a message; `on_disk_ahead` names the next ones to read back, and
//! `make_resident` puts their payloads back before the receive goes on.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use sluice_protocol::limits::VISIBILITY_SECONDS_MAX;
use sluice_protocol::{ErrorCode, MessageAttribute, OpError};

use super::fair::Fair;
use super::fifo::{Fifo, FifoFields, FifoSlot};
use super::journal::{Event, SlotState};
use super::store::Record;

/// What a message carries, fixed at send time and shared (not copied) by every
/// receive of it, on any shard.
#[derive(Debug, Clone)]
pub struct Payload {
    pub body: Bytes,
    pub attributes: Option<Arc<[MessageAttribute]>>,
    pub md5_of_body: [u8; 16],
    pub md5_of_attributes: Option<[u8; 16]>,
    pub trace_header: Option<String>,
    pub message_group_id: Option<String>,
    /// Epoch ms of the original send; kept across a move to a dead-letter queue.
    pub sent_ms: u64,
    /// ARN of the queue this message was moved from, once in a dead-letter queue.
    pub dead_letter_source_arn: Option<Arc<str>>,
    /// A FIFO queue's message: its sequence number and deduplication id (`queue::fifo`).
    pub fifo: Option<FifoFields>,
}

type State = SlotState;

impl Payload {
    /// What keeping this payload in memory costs, roughly: its bytes and their bookkeeping.
    pub fn resident_bytes(&self) -> u64 {
        let attributes: usize = self.attributes.as_deref().map_or(0, |attributes| {
            attributes
                .iter()
                .map(|a| {
                    64 + a.name.len()
                        + a.data_type.len()
                        + a.string_value.as_ref().map_or(0, String::len)
                        + a.binary_value.as_ref().map_or(0, Bytes::len)
                })
                .sum()
        });
        let strings = self.trace_header.as_ref().map_or(0, String::len)
            + self.message_group_id.as_ref().map_or(0, String::len)
            + self.fifo.as_ref().and_then(|f| f.deduplication_id.as_ref()).map_or(0, |id| id.len());
        (PAYLOAD_OVERHEAD_BYTES + self.body.len() + attributes + strings) as u64
    }
}

/// The allocation of a `Payload` (with its `Arc` counts) and of its body's buffer.
const PAYLOAD_OVERHEAD_BYTES: usize = std::mem::size_of::<Payload>() + 16 + 32;

/// Where a message's latest full record is in the shard's log: its sequence number,
/// segment and offset (to read it back) and size (for the log's live-byte accounting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placement {
    pub log_seq: u64,
    pub segment: u32,
    pub offset: u32,
    pub bytes: u32,
}

impl Placement {
    /// A record known only by sequence number: its message is never evicted.
    pub fn at(log_seq: u64, bytes: u32) -> Placement {
        Placement { log_seq, segment: u32::MAX, offset: 0, bytes }
    }

    /// A record at `segment` and `offset` (evictable when both fit their fields).
    pub fn located(log_seq: u64, segment: u64, offset: u64, bytes: u32) -> Placement {
        match (u32::try_from(segment), u32::try_from(offset)) {
            (Ok(segment), Ok(offset)) if segment != u32::MAX => Placement { log_seq, segment, offset, bytes },
            _ => Placement::at(log_seq, bytes),
        }
    }

    /// Whether the record can be read back by place.
    pub fn addressable(&self) -> bool {
        self.log_seq != 0 && self.segment != u32::MAX
    }
}

#[derive(Debug)]
pub(super) struct Slot {
    /// `None` when the payload lives only in the log (beyond the memory budget).
    pub(super) payload: Option<Arc<Payload>>,
    /// The message's id (its payload may be shared: a publish stores one payload for every
    /// subscribed queue, each queue's copy with an id of its own).
    pub(super) message_id: u128,
    /// Epoch ms of the original send (retention counts from it).
    pub(super) sent_ms: u64,
    pub(super) receive_count: u32,
    pub(super) first_receive_ms: u64,
    pub(super) state: State,
    /// This message's latest full record; `log_seq` 0 until it is logged.
    pub(super) placement: Placement,
    /// Taken from a topic's feed since the start (its `Fed` record may not be durable yet).
    fed: bool,
    /// In a FIFO queue: its group and deduplication key, also while its payload is only in the
    /// log; in a standard queue, a grouped message's group (`queue::fair`, no key).
    pub(super) fifo: Option<Box<FifoSlot>>,
}

impl Slot {
    /// Low 64 bits of the message id (receipt handles carry it).
    fn tag(&self) -> u64 {
        self.message_id as u64
    }

    fn new(message_id: u128, payload: Arc<Payload>, receive_count: u32, first_receive_ms: u64, state: State) -> Slot {
        Slot {
            message_id,
            sent_ms: payload.sent_ms,
            payload: Some(payload),
            receive_count,
            first_receive_ms,
            state,
            placement: Placement::default(),
            fed: false,
            fifo: None,
        }
    }
}

/// A message handed out by a receive.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: u64,
    /// For a message taken from a topic's feed since the start: the log seq of its `Fed`
    /// record (0 while still to be logged); `None` for every other message. A receive waits for it
    /// to be durable before handing the message out (`queue::feed`).
    pub fed_log_seq: Option<u64>,
    pub message_id: u128,
    pub payload: Arc<Payload>,
    pub receive_count: u32,
    pub first_receive_ms: u64,
}

/// A message taken out of this partition for a dead-letter queue.
#[derive(Debug)]
pub struct Moved {
    /// Where it was in this partition.
    pub seq: u64,
    pub message_id: u128,
    pub payload: Arc<Payload>,
    pub receive_count: u32,
    pub first_receive_ms: u64,
}

/// Rules of one receive, from the request and the queue's attributes.
#[derive(Debug, Clone, Copy)]
pub struct ReceiveRules {
    pub max_messages: usize,
    pub visibility_ms: u64,
    pub retention_ms: u64,
    /// maxReceiveCount of the queue's RedrivePolicy, when it has one.
    pub max_receive_count: Option<u32>,
    /// In-flight messages this partition may hold before receives answer OverLimit (a FIFO
    /// queue answers no messages instead).
    pub inflight_max: usize,
    /// A FIFO queue's `DelaySeconds`, applied at receive time (0 for standard queues, whose
    /// messages carry their own delay).
    pub delay_ms: u64,
}

/// Messages of one group a FIFO receive may take at once (a receive's most).
pub const RECEIVE_RUN: usize = sluice_protocol::limits::RECEIVE_MESSAGES_MAX as usize;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub visible: u64,
    pub inflight: u64,
    pub delayed: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.visible += other.visible;
        self.inflight += other.inflight;
        self.delayed += other.delayed;
    }
}

/// A subscribed queue's place in a topic's feed on this shard (`queue::feed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The subscription's key (`feed::cursor_key`).
    pub key: u64,
    pub feed_id: u64,
    /// The next feed sequence number to take.
    pub next: u64,
    /// Where reading ends (exclusive) once the subscription no longer reads the feed:
    /// what was published before that is still the queue's. `u64::MAX` while it reads.
    pub until: u64,
    /// The subscription's ARN, when it reads a feed of envelopes.
    pub arn: Option<Arc<str>>,
    /// The cursor's latest `Cursor` record (log seq, bytes), which holds log space; `Fed`
    /// records move the position on, but only a `Cursor` record brings a cursor back.
    record: (u64, u32),
}

/// A feed's message as a reader takes it.
#[derive(Debug, Clone)]
pub struct FeedEntry {
    pub feed_seq: u64,
    pub message_id: u128,
    /// `None` when its payload is only in the log.
    pub payload: Option<Arc<Payload>>,
    pub sent_ms: u64,
    pub placement: Placement,
}

#[derive(Debug, Default)]
pub struct Partition {
    queue_id: u64,
    /// Changes not yet handed to the log, oldest first.
    pub(super) journal: Vec<Event>,
    /// (log seq, bytes) of records no longer live.
    pub(super) released: Vec<(u64, u32)>,
    /// Change in the bytes of payloads held in memory since storage last looked.
    resident_change: i64,
    /// Bytes of payloads held in memory (for the metrics).
    resident: u64,
    /// Bytes of the log records that hold its messages (for the metrics).
    logged: u64,
    /// Messages whose payload is only in the log.
    evicted: u64,
    base_seq: u64,
    slots: VecDeque<Option<Slot>>,
    pub(super) visible: VecDeque<u64>,
    delayed: BinaryHeap<Reverse<(u64, u64)>>,
    /// (deadline, seq) of messages in flight; removed on delete and on a new deadline.
    inflight: BTreeSet<(u64, u64)>,
    pub(super) counts: Counts,
    /// The topic feeds this queue reads (usually none or one).
    cursors: Vec<Cursor>,
    /// Whether this is a topic's feed (`queue::feed`): its messages are read through
    /// cursors, never received, so it keeps no `visible` order.
    is_feed: bool,
    /// A FIFO queue's groups and deduplication window (`queue::fifo`); its messages are
    /// received by group, never through `visible`.
    pub(super) fifo: Option<Box<Fifo>>,
    /// A standard queue's tenants, once it stored a grouped message (`queue::fair`).
    pub(super) fair: Option<Box<Fair>>,
}

/// The error for a receipt handle whose message is gone or no longer in flight for it.
pub fn expired_receipt() -> OpError {
    OpError::new(ErrorCode::InvalidParameterValue, "Value for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.")
}

impl Partition {
    /// A partition whose journal events name queue 0 (tests).
    pub fn new() -> Partition {
        Partition::default()
    }

    /// The partition of queue `queue_id` on this shard.
    pub fn for_queue(queue_id: u64) -> Partition {
        Partition { queue_id, is_feed: super::feed::is_feed_id(queue_id), ..Partition::default() }
    }

    pub fn queue_id(&self) -> u64 {
        self.queue_id
    }

    /// Moves the journal's pending events into `out` (oldest first).
    pub fn take_journal(&mut self, out: &mut Vec<Event>) {
        out.append(&mut self.journal);
    }

    /// Moves the (log seq, bytes) of records no longer live into `out`.
    pub fn take_released(&mut self, out: &mut Vec<(u64, u32)>) {
        out.append(&mut self.released);
    }

    /// Records where message `seq`'s latest full record was logged. Returns the place of
    /// the record it supersedes (to release), or, when the message is already gone, the
    /// new record itself (nothing holds it).
    pub fn placed(&mut self, seq: u64, placement: Placement) -> Option<Placement> {
        match self.slot_mut(seq) {
            Some(slot) => {
                let previous = std::mem::replace(&mut slot.placement, placement);
                self.logged = self.logged.saturating_add(logged_bytes(placement)).saturating_sub(logged_bytes(previous));
                (previous.log_seq != 0).then_some(previous)
            }
            None => Some(placement),
        }
    }

    /// Bytes of the log records that hold this partition's messages.
    pub fn logged_bytes(&self) -> u64 {
        self.logged
    }

    /// Whether the running byte counts (in the log, in memory) match the messages held: the
    /// simulator's check after every start.
    pub fn check_accounting(&self) -> Result<(), String> {
        let mut logged = 0;
        self.for_each_placement(|_, bytes| logged += u64::from(bytes));
        let resident: u64 = self.slots.iter().flatten().filter_map(|slot| slot.payload.as_ref()).map(|p| p.resident_bytes()).sum();
        if logged != self.logged || resident != self.resident {
            return Err(format!(
                "queue {}: {} bytes counted in the log for {logged} held, {} in memory for {resident}",
                self.queue_id, self.logged, self.resident
            ));
        }
        Ok(())
    }

    /// Compaction's copy `new` of `record` was lost (or is not known written): `record` points
    /// at its original `old` again if `new` is still its latest. Returns whether it did.
    pub fn unplace(&mut self, record: Record, new: Placement, old: Placement) -> bool {
        match record {
            Record::Message(seq) => match self.slot_mut(seq) {
                Some(slot) if slot.placement.log_seq == new.log_seq => {
                    slot.placement = old;
                    self.logged = self.logged.saturating_add(logged_bytes(old)).saturating_sub(logged_bytes(new));
                    true
                }
                _ => false,
            },
            Record::Cursor(key) => match self.cursors.iter_mut().find(|c| c.key == key) {
                Some(cursor) if cursor.record.0 == new.log_seq => {
                    cursor.record = (old.log_seq, old.bytes);
                    true
                }
                _ => false,
            },
            Record::Dedup(key) => self.dedup_unplace(key, (new.log_seq, new.bytes), (old.log_seq, old.bytes)),
        }
    }

    /// Every live message's (log seq, bytes), for storage's accounting after a replay.
    pub fn for_each_placement(&self, mut each: impl FnMut(u64, u32)) {
        for slot in self.slots.iter().flatten() {
            if slot.placement.log_seq != 0 {
                each(slot.placement.log_seq, slot.placement.bytes);
            }
        }
    }

    /// The message-id tag of every message in the partition (the simulator's checks).
    pub fn tags(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().flatten().map(Slot::tag)
    }

    /// Whether the message at `seq` is the one a receipt with message-id tag `tag` was issued for.
    pub fn holds(&self, seq: u64, tag: u64) -> bool {
        let Some(index) = seq.checked_sub(self.base_seq).and_then(|i| usize::try_from(i).ok()) else { return false };
        self.slots.get(index).and_then(Option::as_ref).is_some_and(|slot| slot.tag() == tag)
    }

    /// Takes the change in resident payload bytes since the last call.
    pub fn take_resident_change(&mut self) -> i64 {
        std::mem::take(&mut self.resident_change)
    }

    fn count_resident(&mut self, payload: Option<&Arc<Payload>>, sign: i64) {
        if let Some(payload) = payload {
            let bytes = sign * payload.resident_bytes() as i64;
            self.resident_change += bytes;
            self.resident = self.resident.saturating_add_signed(bytes);
        }
    }

    /// Bytes of this partition's payloads held in memory.
    pub fn resident_bytes(&self) -> u64 {
        self.resident
    }

    /// Drops message `seq`'s payload from memory, leaving it only in the log. Only a message
    /// whose latest full record can be read back by place is evicted. Returns whether it was.
    pub fn evict(&mut self, seq: u64) -> bool {
        let Some(slot) = self.slot_mut(seq) else { return false };
        if !slot.placement.addressable() {
            return false;
        }
        let Some(payload) = slot.payload.take() else { return false };
        self.count_resident(Some(&payload), -1);
        self.evicted += 1;
        true
    }

    /// Puts back the payload of message `seq`, read from its record at `log_seq`. Ignored
    /// (returns false) when the message has gone or has been re-logged since.
    pub fn make_resident(&mut self, seq: u64, log_seq: u64, message_id: u128, payload: Arc<Payload>) -> bool {
        let Some(slot) = self.slot_mut(seq) else { return false };
        if slot.payload.is_some() || slot.placement.log_seq != log_seq || slot.message_id != message_id {
            return false;
        }
        let bytes = payload.resident_bytes() as i64;
        slot.payload = Some(payload);
        self.resident_change += bytes;
        self.resident = self.resident.saturating_add_signed(bytes);
        self.evicted -= 1;
        true
    }

    /// Messages whose payload is only in the log.
    pub fn on_disk(&self) -> u64 {
        self.evicted
    }

    /// Whether the next message a receive would take has its payload only in the log.
    /// When the oldest message still here was sent (epoch ms).
    pub fn oldest_sent_ms(&self) -> Option<u64> {
        self.slots.front().and_then(|slot| slot.as_ref()).map(|slot| slot.sent_ms)
    }

    pub fn front_on_disk(&self) -> bool {
        if self.fifo.is_some() {
            return self.evicted > 0 && self.fifo_front_on_disk(1);
        }
        // Once `visible` is spent, a fair queue's receive takes from its noisy tenants' lines.
        self.evicted > 0
            && self
                .visible
                .iter()
                .chain(self.fair_line_ahead())
                .find_map(|&seq| self.slot(seq).filter(|slot| slot.state == State::Visible))
                .is_some_and(|slot| slot.payload.is_none())
    }

    /// Whether one of the next `within` visible messages has its payload only in the log
    /// (time to read ahead).
    pub fn on_disk_soon(&self, within: usize) -> bool {
        if self.fifo.is_some() {
            return self.evicted > 0 && self.fifo_front_on_disk(within);
        }
        self.evicted > 0
            && self
                .visible
                .iter()
                .chain(self.fair_line_ahead())
                .take(within)
                .any(|&seq| self.slot(seq).is_some_and(|slot| slot.state == State::Visible && slot.payload.is_none()))
    }

    /// The next visible messages whose payload is only in the log, in the order receives
    /// reach them, with where to read each: up to `max_messages`, or until their records
    /// add up to `max_bytes`.
    pub fn on_disk_ahead(&self, max_messages: usize, max_bytes: u64, out: &mut Vec<(u64, Placement)>) {
        if self.evicted == 0 {
            return;
        }
        if self.fifo.is_some() {
            return self.fifo_on_disk_ahead(max_messages, max_bytes, out);
        }
        // Messages in memory and stale entries are passed over, but only so many: the
        // next read-ahead goes on from there.
        let look = max_messages.saturating_mul(4).saturating_add(64);
        let mut bytes = 0u64;
        for &seq in self.visible.iter().chain(self.fair_line_ahead()).take(look) {
            if out.len() >= max_messages || bytes >= max_bytes {
                break;
            }
            let Some(slot) = self.slot(seq) else { continue };
            // Each visible message has one entry in `visible`, so none is named twice.
            if slot.state == State::Visible && slot.payload.is_none() {
                out.push((seq, slot.placement));
                bytes += slot.placement.bytes as u64;
            }
        }
    }

    /// Journals a full copy (`Restored`) of every live message at or after `from_seq` whose
    /// full record is below `below_log_seq`, looking at no more than `budget` slots (a FIFO
    /// queue's `Dedup` records move with `relocate_dedup`).
    /// Returns where to continue, or `None` when the partition is done. Compaction uses
    /// this to move live messages out of old segments. A message whose payload is only in
    /// the log is listed in `to_load` instead: read it and pass it to `relocate_loaded`.
    pub fn relocate(&mut self, from_seq: u64, below_log_seq: u64, budget: usize, to_load: &mut Vec<(u64, Placement)>) -> Option<u64> {
        if from_seq == 0 {
            for index in 0..self.cursors.len() {
                if self.cursors[index].record.0 != 0 && self.cursors[index].record.0 < below_log_seq {
                    self.journal_cursor(index);
                }
            }
        }
        let start = from_seq.max(self.base_seq);
        let end = self.next_seq();
        let stop = end.min(start.saturating_add(budget as u64));
        for seq in start..stop {
            let index = (seq - self.base_seq) as usize;
            let Some(slot) = self.slots[index].as_ref() else { continue };
            if slot.placement.log_seq == 0 || slot.placement.log_seq >= below_log_seq {
                continue;
            }
            match &slot.payload {
                Some(payload) => self.journal.push(Event::Restored {
                    queue_id: self.queue_id,
                    seq,
                    message_id: slot.message_id,
                    payload: payload.clone(),
                    receive_count: slot.receive_count,
                    first_receive_ms: slot.first_receive_ms,
                    state: slot.state,
                }),
                None => to_load.push((seq, slot.placement)),
            }
        }
        (stop < end).then_some(stop)
    }

    /// Journals a `Restored` copy of message `seq` with `payload`, read from its record at
    /// `log_seq`, unless the message has gone or been re-logged since. The payload stays
    /// out of memory.
    pub fn relocate_loaded(&mut self, seq: u64, log_seq: u64, message_id: u128, payload: Arc<Payload>) {
        let Some(slot) = self.slot(seq) else { return };
        if slot.placement.log_seq != log_seq || slot.message_id != message_id {
            return;
        }
        self.journal.push(Event::Restored {
            queue_id: self.queue_id,
            seq,
            message_id,
            payload,
            receive_count: slot.receive_count,
            first_receive_ms: slot.first_receive_ms,
            state: slot.state,
        });
    }

    /// A FIFO message's group and deduplication key.
    pub(super) fn slot_fifo(&self, seq: u64) -> Option<&FifoSlot> {
        self.slot(seq)?.fifo.as_deref()
    }

    pub(super) fn slot(&self, seq: u64) -> Option<&Slot> {
        let index = usize::try_from(seq.checked_sub(self.base_seq)?).ok()?;
        self.slots.get(index)?.as_ref()
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let index = usize::try_from(seq.checked_sub(self.base_seq)?).ok()?;
        self.slots.get_mut(index)?.as_mut()
    }

    fn push_slot(&mut self, slot: Slot, now_ms: u64) -> u64 {
        let seq = self.base_seq + self.slots.len() as u64;
        if self.fifo.is_some() {
            // A FIFO message waits for the queue's delay at receive time, in its group.
            let fifo = slot.payload.as_deref().and_then(|payload| self.fifo_slot_for(payload));
            if let Some(fifo) = &fifo {
                self.fifo_enqueue(fifo, seq, false);
            }
            self.counts.visible += 1;
            self.count_resident(slot.payload.as_ref(), 1);
            self.slots.push_back(Some(Slot { state: State::Visible, fifo, ..slot }));
            return seq;
        }
        match slot.state {
            State::Delayed { due_ms } if due_ms > now_ms => {
                self.delayed.push(Reverse((due_ms, seq)));
                self.counts.delayed += 1;
            }
            _ => {
                if !self.is_feed {
                    self.visible.push_back(seq);
                }
                self.counts.visible += 1;
            }
        }
        let state = if matches!(slot.state, State::Delayed { due_ms } if due_ms > now_ms) { slot.state } else { State::Visible };
        self.count_resident(slot.payload.as_ref(), 1);
        let group = if self.is_feed { None } else { slot.payload.as_deref().and_then(|payload| self.fair_entered(payload)) };
        self.slots.push_back(Some(Slot { state, fifo: group, ..slot }));
        seq
    }

    /// Stores a new message; it is visible at once unless `delay_ms` > 0.
    /// Returns its sequence number in this partition.
    pub fn send(&mut self, message_id: u128, payload: Arc<Payload>, delay_ms: u64, now_ms: u64) -> u64 {
        let due_ms = if delay_ms > 0 { now_ms + delay_ms } else { 0 };
        let state = if delay_ms > 0 { State::Delayed { due_ms } } else { State::Visible };
        self.journal.push(Event::Sent { queue_id: self.queue_id, seq: self.next_seq(), message_id, payload: payload.clone(), due_ms });
        self.push_slot(Slot::new(message_id, payload, 0, 0, state), now_ms)
    }

    /// Stores a message moved here from another queue's partition (dead-lettering).
    pub fn accept_moved(&mut self, moved: Moved, now_ms: u64) -> u64 {
        let Moved { message_id, payload, receive_count, first_receive_ms, .. } = moved;
        self.journal.push(Event::MovedIn {
            queue_id: self.queue_id,
            seq: self.next_seq(),
            message_id,
            payload: payload.clone(),
            receive_count,
            first_receive_ms,
        });
        self.push_slot(Slot::new(message_id, payload, receive_count, first_receive_ms, State::Visible), now_ms)
    }

    // ------------------------------------------------------------------ feeds (queue::feed)

    /// The feeds this queue reads.
    pub fn cursors(&self) -> &[Cursor] {
        &self.cursors
    }

    /// Journals where cursor `index` stands.
    fn journal_cursor(&mut self, index: usize) {
        let Cursor { key, feed_id, next, until, arn, .. } = self.cursors[index].clone();
        self.journal.push(Event::Cursor { queue_id: self.queue_id, key, feed_id, next, until, arn });
    }

    /// Starts reading feed `feed_id` at `next` through cursor `key` (for subscription `arn` if
    /// the feed holds envelopes), or moves that cursor (to `next`, never back, and to `until`,
    /// never later), journaling where it stands.
    pub fn set_cursor(&mut self, key: u64, feed_id: u64, next: u64, until: u64, arn: Option<Arc<str>>) {
        let index = self.upsert_cursor(key, feed_id, next, until, arn);
        self.journal_cursor(index);
    }

    /// `set_cursor` without the journal; returns the cursor's index.
    fn upsert_cursor(&mut self, key: u64, feed_id: u64, next: u64, until: u64, arn: Option<Arc<str>>) -> usize {
        match self.cursors.iter().position(|c| c.key == key) {
            Some(index) => {
                let cursor = &mut self.cursors[index];
                cursor.next = cursor.next.max(next);
                cursor.until = cursor.until.min(until);
                index
            }
            None => {
                self.cursors.push(Cursor { key, feed_id, next, until, arn, record: (0, 0) });
                self.cursors.len() - 1
            }
        }
    }

    /// Stops reading through cursor `key` (its subscription is done with the feed).
    pub fn remove_cursor(&mut self, key: u64) {
        if let Some(index) = self.cursors.iter().position(|c| c.key == key) {
            let cursor = self.cursors.swap_remove(index);
            if cursor.record.0 != 0 {
                self.released.push(cursor.record);
            }
        }
    }

    /// Records where cursor `key`'s latest `Cursor` record was logged; returns the record it
    /// supersedes (to release), or the new one when the cursor is gone.
    pub fn cursor_placed(&mut self, key: u64, record: (u64, u32)) -> Option<(u64, u32)> {
        match self.cursors.iter_mut().find(|c| c.key == key) {
            Some(cursor) => {
                let previous = std::mem::replace(&mut cursor.record, record);
                (previous.0 != 0).then_some(previous)
            }
            None => Some(record),
        }
    }

    /// Takes feed message `entry` into this queue through cursor `key` as message
    /// `message_id`, due at `due_ms` (0: visible at once). Returns its sequence number here.
    pub fn feed(&mut self, key: u64, entry: &FeedEntry, message_id: u128, payload: Arc<Payload>, due_ms: u64, now_ms: u64) -> u64 {
        self.advance_cursor(key, entry.feed_seq);
        let state = if due_ms > 0 { State::Delayed { due_ms } } else { State::Visible };
        let (queue_id, seq, feed_seq) = (self.queue_id, self.next_seq(), entry.feed_seq);
        self.journal.push(Event::Fed { queue_id, seq, message_id, payload: payload.clone(), due_ms, key, feed_seq });
        self.push_slot(Slot { fed: true, ..Slot::new(message_id, payload, 0, 0, state) }, now_ms)
    }

    /// Moves cursor `key` on to `next` without taking anything (messages past retention, or
    /// gone from the feed), journaling it.
    pub fn skip_to(&mut self, key: u64, next: u64) {
        if let Some(index) = self.cursors.iter().position(|c| c.key == key) {
            if next > self.cursors[index].next {
                self.cursors[index].next = next;
                self.journal_cursor(index);
            }
        }
    }

    /// Moves cursor `key` past `feed_seq`, as taking it (or replaying its `Fed` record) does; a
    /// cursor that no longer exists stays gone.
    pub fn advance_cursor(&mut self, key: u64, feed_seq: u64) {
        if let Some(cursor) = self.cursors.iter_mut().find(|c| c.key == key) {
            cursor.next = cursor.next.max(feed_seq + 1);
        }
    }

    /// Replays a `Cursor` record logged at `record`.
    pub fn restore_cursor(&mut self, key: u64, feed_id: u64, next: u64, until: u64, arn: Option<Arc<str>>, record: (u64, u32)) {
        let index = self.upsert_cursor(key, feed_id, next, until, arn);
        let previous = std::mem::replace(&mut self.cursors[index].record, record);
        if previous.0 != 0 {
            self.released.push(previous);
        }
    }

    /// Every cursor's held record, for storage's accounting after a replay.
    pub fn for_each_cursor_record(&self, mut each: impl FnMut(u64, u32)) {
        for cursor in &self.cursors {
            if cursor.record.0 != 0 {
                each(cursor.record.0, cursor.record.1);
            }
        }
    }

    /// As a feed: the message at `feed_seq`, if it is still here.
    pub fn feed_entry(&self, feed_seq: u64) -> Option<FeedEntry> {
        let slot = self.slot(feed_seq)?;
        Some(FeedEntry {
            feed_seq,
            message_id: slot.message_id,
            payload: slot.payload.clone(),
            sent_ms: slot.sent_ms,
            placement: slot.placement,
        })
    }

    /// As a feed: the oldest sequence number it may still hold.
    pub fn base_seq(&self) -> u64 {
        self.base_seq
    }

    /// As a feed: of its messages at or after `from`, how many were sent after `after_ms`
    /// (feeds hold messages in the order they were sent and lose them only at the front).
    pub fn sent_after(&self, from: u64, after_ms: u64) -> u64 {
        let start = from.saturating_sub(self.base_seq).min(self.slots.len() as u64) as usize;
        let (mut low, mut high) = (start, self.slots.len());
        while low < high {
            let middle = (low + high) / 2;
            match &self.slots[middle] {
                Some(slot) if slot.sent_ms > after_ms => high = middle,
                _ => low = middle + 1,
            }
        }
        (self.slots.len() - low) as u64
    }

    /// As a feed: drops every message below `below` (every reader has passed them).
    pub fn trim_below(&mut self, below: u64) {
        if below <= self.base_seq {
            return;
        }
        self.restore_trimmed(below);
        self.journal.push(Event::Trimmed { queue_id: self.queue_id, below });
    }

    /// Replays a trim: the messages below `below` go, and nothing is numbered below it again.
    pub fn restore_trimmed(&mut self, below: u64) {
        while self.base_seq < below && !self.slots.is_empty() {
            let seq = self.base_seq;
            if self.remove(seq).is_none() {
                // A gap: `remove` only advances past the slots it empties.
                self.slots.pop_front();
                self.base_seq += 1;
            }
        }
        if self.slots.is_empty() {
            self.base_seq = self.base_seq.max(below);
        }
    }

    /// As a feed after a replay: numbers new messages from at least `next` (a reader has
    /// already passed everything below it, even when the feed lost those records).
    pub fn number_from(&mut self, next: u64) {
        if self.slots.is_empty() {
            self.base_seq = self.base_seq.max(next);
        } else {
            while self.next_seq() < next {
                self.slots.push_back(None);
            }
        }
    }

    pub(super) fn remove(&mut self, seq: u64) -> Option<Slot> {
        let index = usize::try_from(seq.checked_sub(self.base_seq)?).ok()?;
        let slot = self.slots.get_mut(index)?.take()?;
        self.logged = self.logged.saturating_sub(logged_bytes(slot.placement));
        self.uncount(slot.state, seq);
        if let Some(fifo) = &slot.fifo {
            self.fifo_removed(fifo, seq, matches!(slot.state, State::InFlight { .. }));
            self.fair_left(fifo, matches!(slot.state, State::InFlight { .. }));
        }
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base_seq += 1;
        }
        if slot.placement.log_seq != 0 {
            self.released.push((slot.placement.log_seq, slot.placement.bytes));
        }
        self.count_resident(slot.payload.as_ref(), -1);
        if slot.payload.is_none() {
            self.evicted -= 1;
        }
        Some(slot)
    }

    /// Removes a message past retention (journaled like a delete, so a longer retention
    /// set later cannot bring it back).
    pub(super) fn expire_message(&mut self, seq: u64) {
        self.retire_dedup_of(seq);
        if self.remove(seq).is_some() {
            self.journal.push(Event::Deleted { queue_id: self.queue_id, seq });
        }
    }

    /// Runs the timers due by `now_ms`: delays end, visibility timeouts lapse,
    /// messages past retention at the front of the partition are dropped.
    /// Returns whether any message became visible.
    pub fn tick(&mut self, now_ms: u64, retention_ms: u64) -> bool {
        let mut became_visible = false;
        while let Some(&Reverse((due_ms, seq))) = self.delayed.peek() {
            if due_ms > now_ms {
                break;
            }
            self.delayed.pop();
            if let Some(slot) = self.slot_mut(seq) {
                if slot.state == (State::Delayed { due_ms }) {
                    slot.state = State::Visible;
                    self.counts.delayed -= 1;
                    self.counts.visible += 1;
                    self.visible.push_back(seq);
                    became_visible = true;
                }
            }
        }
        while let Some(&(deadline, seq)) = self.inflight.first() {
            if deadline > now_ms {
                break;
            }
            self.inflight.pop_first();
            if let Some(slot) = self.slot_mut(seq) {
                if matches!(slot.state, State::InFlight { deadline_ms, .. } if deadline_ms == deadline) {
                    slot.state = State::Visible;
                    self.counts.inflight -= 1;
                    self.counts.visible += 1;
                    self.made_visible(seq);
                    became_visible = true;
                }
            }
        }
        while let Some(Some(front)) = self.slots.front() {
            if front.sent_ms + retention_ms > now_ms {
                break;
            }
            let seq = self.base_seq;
            self.expire_message(seq);
        }
        self.expire_dedup(now_ms);
        became_visible
    }

    /// Hands out up to `rules.max_messages` visible messages, oldest first.
    /// Messages past retention are dropped on the way; messages whose receive
    /// count would pass maxReceiveCount are returned in `moved` instead.
    /// The next visible message's seq, and the tenant's line it came from in a fair queue (which
    /// keeps its tenants' messages in lines of their own, `queue::fair`).
    fn next_in_line(&mut self, fair: bool) -> Option<(u64, Option<Arc<str>>)> {
        match self.visible.pop_front() {
            Some(seq) => Some((seq, None)),
            None if fair => self.fair_take().map(|(seq, group)| (seq, Some(group))),
            None => None,
        }
    }

    /// Puts back, first in its line, a message `next_in_line` gave.
    fn back_in_line(&mut self, seq: u64, line: &Option<Arc<str>>) {
        match line {
            Some(group) => self.fair_untake(group, seq),
            None => self.visible.push_front(seq),
        }
    }

    /// Takes up to `max` visible messages out for a message move task (`queue::redrive`), as a
    /// move to a dead-letter queue does: each journaled `MovedOut`, handed over in `moved` for
    /// the destination to take in. Stops at a message whose payload is only in the log (the
    /// caller has it read back). Standard queues only.
    pub fn take_for_move(&mut self, now_ms: u64, retention_ms: u64, max: usize, moved: &mut Vec<Moved>) {
        self.tick(now_ms, retention_ms);
        let fair = self.fair.is_some();
        if fair {
            self.fair_requeue_quiet();
        }
        while moved.len() < max {
            let Some((seq, line)) = self.next_in_line(fair) else { break };
            let Some(slot) = self.slot_mut(seq) else { continue };
            if slot.state != State::Visible {
                continue;
            }
            if slot.sent_ms + retention_ms <= now_ms {
                self.expire_message(seq);
                continue;
            }
            let Some(payload) = slot.payload.clone() else {
                self.back_in_line(seq, &line);
                break;
            };
            let (message_id, receive_count, first_receive_ms) = (slot.message_id, slot.receive_count, slot.first_receive_ms);
            if self.remove(seq).is_some() {
                self.journal.push(Event::MovedOut { queue_id: self.queue_id, seq });
                moved.push(Moved { seq, message_id, payload, receive_count, first_receive_ms });
            }
        }
    }

    pub fn receive(
        &mut self,
        now_ms: u64,
        rules: &ReceiveRules,
        delivered: &mut Vec<Delivery>,
        moved: &mut Vec<Moved>,
    ) -> Result<(), OpError> {
        self.tick(now_ms, rules.retention_ms);
        if self.fifo.is_some() {
            // Stopping at a payload only in the log shows in `front_on_disk`.
            self.receive_fifo(now_ms, rules, delivered, moved);
            return Ok(());
        }
        let wanted = delivered.len() + rules.max_messages;
        if self.counts.inflight as usize >= rules.inflight_max && self.counts.visible > 0 {
            return Err(OpError::new(ErrorCode::OverLimit, "Too many messages in flight for this queue."));
        }
        // A fair queue passes over its noisy tenants' messages while others wait (`queue::fair`).
        let fair = self.fair.is_some();
        if fair {
            self.fair_requeue_quiet();
        }
        let mut pass_over = if fair { super::fair::PASS_OVER_MAX } else { 0 };
        while delivered.len() < wanted && (self.counts.inflight as usize) < rules.inflight_max {
            let Some((seq, line)) = self.next_in_line(fair) else { break };
            let Some(mut slot) = self.slot_mut(seq) else { continue };
            if slot.state != State::Visible {
                continue;
            }
            if slot.sent_ms + rules.retention_ms <= now_ms {
                self.expire_message(seq);
                continue;
            }
            if pass_over > 0 && line.is_none() {
                if let Some(group) = slot.fifo.as_ref().map(|f| f.group.clone()) {
                    if self.fair_pass_over(&group, seq) {
                        pass_over -= 1;
                        continue;
                    }
                    slot = self.slot_mut(seq).expect("a visible message");
                }
            }
            let Some(payload) = slot.payload.clone() else {
                // Its payload is only in the log: the caller has it read back (`front_on_disk`,
                // `on_disk_ahead`, `make_resident`) and asks again; it stays first in line.
                self.back_in_line(seq, &line);
                break;
            };
            if rules.max_receive_count.is_some_and(|max| slot.receive_count >= max) {
                let (message_id, receive_count, first_receive_ms) = (slot.message_id, slot.receive_count, slot.first_receive_ms);
                if self.remove(seq).is_some() {
                    self.journal.push(Event::MovedOut { queue_id: self.queue_id, seq });
                    moved.push(Moved { seq, message_id, payload, receive_count, first_receive_ms });
                }
                continue;
            }
            delivered.push(self.deliver(seq, payload, now_ms, rules.visibility_ms));
        }
        Ok(())
    }

    /// Hands out visible message `seq`, whose payload is `payload`, for `visibility_ms`.
    pub(super) fn deliver(&mut self, seq: u64, payload: Arc<Payload>, now_ms: u64, visibility_ms: u64) -> Delivery {
        let deadline_ms = now_ms + visibility_ms;
        let slot = self.slot_mut(seq).expect("a visible message");
        slot.receive_count += 1;
        if slot.first_receive_ms == 0 {
            slot.first_receive_ms = now_ms;
        }
        slot.state = State::InFlight { deadline_ms, received_ms: now_ms };
        let delivery = Delivery {
            seq,
            fed_log_seq: slot.fed.then_some(slot.placement.log_seq),
            message_id: slot.message_id,
            payload,
            receive_count: slot.receive_count,
            first_receive_ms: slot.first_receive_ms,
        };
        let (receive_count, first_receive_ms) = (delivery.receive_count, delivery.first_receive_ms);
        self.journal.push(Event::Received {
            queue_id: self.queue_id,
            seq,
            receive_count,
            first_receive_ms,
            received_ms: now_ms,
            deadline_ms,
        });
        self.counts.visible -= 1;
        self.counts.inflight += 1;
        self.inflight.insert((deadline_ms, seq));
        self.fair_inflight(seq, true);
        delivery
    }

    /// Message `seq` as a receive hands it out (its payload must be in memory).
    pub(super) fn delivery_of(&self, seq: u64) -> Option<Delivery> {
        let slot = self.slot(seq)?;
        Some(Delivery {
            seq,
            fed_log_seq: slot.fed.then_some(slot.placement.log_seq),
            message_id: slot.message_id,
            payload: slot.payload.clone()?,
            receive_count: slot.receive_count,
            first_receive_ms: slot.first_receive_ms,
        })
    }

    /// Puts visible message `seq` in flight until `deadline_ms` without a record (a FIFO
    /// message held for a move).
    pub(super) fn hold_inflight(&mut self, seq: u64, deadline_ms: u64, now_ms: u64) {
        let Some(slot) = self.slot_mut(seq) else { return };
        slot.state = State::InFlight { deadline_ms, received_ms: now_ms };
        self.counts.visible -= 1;
        self.counts.inflight += 1;
        self.inflight.insert((deadline_ms, seq));
    }

    /// Gives in-flight message `seq` a new deadline, journaled.
    pub(super) fn set_deadline(&mut self, seq: u64, deadline_ms: u64) {
        let Some(slot) = self.slot_mut(seq) else { return };
        let State::InFlight { received_ms, deadline_ms: previous } = slot.state else { return };
        slot.state = State::InFlight { deadline_ms, received_ms };
        self.journal.push(Event::VisibilityChanged { queue_id: self.queue_id, seq, deadline_ms });
        self.inflight.remove(&(previous, seq));
        self.inflight.insert((deadline_ms, seq));
    }

    /// Counts slots from the newest back, while `each` answers (`Some(counted)`).
    pub(super) fn count_from_back(&self, each: impl Fn(&Slot) -> Option<bool>) -> u64 {
        let mut count = 0;
        for slot in self.slots.iter().rev().flatten() {
            match each(slot) {
                Some(true) => count += 1,
                Some(false) => {}
                None => break,
            }
        }
        count
    }

    /// Message `seq` became visible again: in line for receives.
    fn made_visible(&mut self, seq: u64) {
        if self.fifo.is_some() {
            self.fifo_inflight_ended(seq);
        } else {
            self.fair_inflight(seq, false);
            self.visible.push_back(seq);
        }
    }

    /// Deletes a message by any receipt handle ever issued for it; deleting a
    /// message that is already gone succeeds (SQS standard queues are idempotent here).
    pub fn delete(&mut self, seq: u64) -> bool {
        self.retire_dedup_of(seq);
        let removed = self.remove(seq).is_some();
        if removed {
            self.journal.push(Event::Deleted { queue_id: self.queue_id, seq });
        }
        removed
    }

    /// Sets a new visibility deadline of `now + timeout` for the receive that
    /// issued `receive_count`. Only the latest receive's handle, still in flight,
    /// may do this, and never past 12 hours from that receive.
    /// Returns whether the message became visible (timeout 0).
    pub fn change_visibility(&mut self, seq: u64, receive_count: u32, timeout_ms: u64, now_ms: u64) -> Result<bool, OpError> {
        let slot = self.slot_mut(seq).ok_or_else(expired_receipt)?;
        let State::InFlight { deadline_ms, received_ms } = slot.state else { return Err(expired_receipt()) };
        if slot.receive_count != receive_count || deadline_ms <= now_ms {
            return Err(expired_receipt());
        }
        // SQS counts in whole seconds: 12 h from the receive, the part of a second already passed not counted.
        let elapsed_s = (now_ms - received_ms) / 1000;
        if elapsed_s * 1000 + timeout_ms > VISIBILITY_SECONDS_MAX as u64 * 1000 {
            return Err(OpError::new(
                ErrorCode::InvalidParameterValue,
                format!(
                    "Value {} for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds].",
                    timeout_ms / 1000
                ),
            ));
        }
        if timeout_ms == 0 {
            slot.state = State::Visible;
            self.inflight.remove(&(deadline_ms, seq));
            self.journal.push(Event::VisibilityChanged { queue_id: self.queue_id, seq, deadline_ms: now_ms });
            self.counts.inflight -= 1;
            self.counts.visible += 1;
            self.made_visible(seq);
            return Ok(true);
        }
        let previous = deadline_ms;
        let deadline_ms = now_ms + timeout_ms;
        slot.state = State::InFlight { deadline_ms, received_ms };
        self.journal.push(Event::VisibilityChanged { queue_id: self.queue_id, seq, deadline_ms });
        self.inflight.remove(&(previous, seq));
        self.inflight.insert((deadline_ms, seq));
        Ok(false)
    }

    /// Removes every message, whatever its state.
    pub fn purge(&mut self) {
        if self.fifo.is_some() {
            // Deduplication ids outlive a purge, as they outlive a delete.
            let live: Vec<u64> = (self.base_seq..self.next_seq()).collect();
            for seq in live {
                self.retire_dedup_of(seq);
            }
        }
        self.journal.push(Event::Purged { queue_id: self.queue_id });
        self.drop_all();
    }

    /// Forgets every message without journaling it (the queue itself is gone), reporting
    /// their records as released.
    pub fn drop_all(&mut self) {
        let mut resident = 0;
        for slot in self.slots.iter().flatten() {
            if slot.placement.log_seq != 0 {
                self.released.push((slot.placement.log_seq, slot.placement.bytes));
            }
            resident += slot.payload.as_ref().map_or(0, |payload| payload.resident_bytes() as i64);
        }
        self.resident_change -= resident;
        self.resident = 0;
        self.logged = 0;
        self.evicted = 0;
        self.base_seq += self.slots.len() as u64;
        self.slots.clear();
        self.visible.clear();
        self.delayed.clear();
        self.inflight.clear();
        self.counts = Counts::default();
        self.fifo_clear_groups();
        self.fair_clear();
    }

    /// Message counts by state, after running the timers due by `now_ms`.
    pub fn counts(&mut self, now_ms: u64, retention_ms: u64) -> Counts {
        self.tick(now_ms, retention_ms);
        self.counts
    }

    /// Makes every in-flight message visible at once; returns how many. For a queue whose
    /// only receiver restarted (an HTTP subscription's delivery queue): nothing can still be
    /// working on them.
    pub fn release_inflight(&mut self, now_ms: u64) -> usize {
        let mut released = 0;
        let held: Vec<u64> = std::mem::take(&mut self.inflight).into_iter().map(|(_, seq)| seq).collect();
        for seq in held {
            let Some(slot) = self.slot_mut(seq) else { continue };
            if !matches!(slot.state, State::InFlight { .. }) {
                continue;
            }
            slot.state = State::Visible;
            self.journal.push(Event::VisibilityChanged { queue_id: self.queue_id, seq, deadline_ms: now_ms });
            self.counts.inflight -= 1;
            self.counts.visible += 1;
            self.made_visible(seq);
            released += 1;
        }
        released
    }

    /// Visible messages.
    pub fn visible(&self) -> u64 {
        self.counts.visible
    }

    pub fn has_visible(&self) -> bool {
        self.counts.visible > 0
    }

    // ------------------------------------------------------------------ restore (replaying a journal)

    /// The sequence number the next stored message gets.
    pub fn next_seq(&self) -> u64 {
        self.base_seq + self.slots.len() as u64
    }

    /// Replays a message's full state at `seq` (a Sent, MovedIn or Restored record), replacing
    /// whatever the slot held. Records arrive in log order, which is not always sequence
    /// order: compaction re-logs old messages after newer ones, and gaps are messages whose
    /// records are gone. Nothing here trusts the record to be sensible beyond its type.
    pub fn restore(
        &mut self,
        seq: u64,
        message_id: u128,
        payload: Arc<Payload>,
        receive_count: u32,
        first_receive_ms: u64,
        state: SlotState,
    ) {
        if self.slots.is_empty() {
            self.base_seq = seq;
        }
        if seq < self.base_seq {
            for _ in seq..self.base_seq {
                self.slots.push_front(None);
            }
            self.base_seq = seq;
        }
        while self.next_seq() <= seq {
            self.slots.push_back(None);
        }
        if payload.fifo.is_some() {
            self.make_fifo();
        }
        let index = (seq - self.base_seq) as usize;
        let was_visible = match self.slots[index].take() {
            Some(previous) => {
                self.uncount(previous.state, seq);
                self.logged = self.logged.saturating_sub(logged_bytes(previous.placement));
                self.count_resident(previous.payload.as_ref(), -1);
                if previous.payload.is_none() {
                    self.evicted -= 1;
                }
                if let Some(fifo) = &previous.fifo {
                    self.fifo_removed(fifo, seq, matches!(previous.state, State::InFlight { .. }));
                    self.fair_left(fifo, matches!(previous.state, State::InFlight { .. }));
                }
                previous.state == State::Visible
            }
            None => false,
        };
        self.count_resident(Some(&payload), 1);
        if self.fifo.is_some() {
            let state = match state {
                State::Delayed { .. } => State::Visible,
                other => other,
            };
            let fifo = self.fifo_slot_for(&payload);
            if let Some(fifo) = &fifo {
                self.fifo_enqueue(fifo, seq, matches!(state, State::InFlight { .. }));
            }
            self.restore_message_dedup(seq, message_id, &payload);
            match state {
                State::InFlight { deadline_ms, .. } => {
                    self.counts.inflight += 1;
                    self.inflight.insert((deadline_ms, seq));
                }
                _ => self.counts.visible += 1,
            }
            self.slots[index] = Some(Slot { fifo, ..Slot::new(message_id, payload, receive_count, first_receive_ms, state) });
            return;
        }
        match state {
            State::Visible => {
                self.counts.visible += 1;
                if !was_visible {
                    self.visible.push_back(seq);
                }
            }
            State::Delayed { due_ms } => {
                self.counts.delayed += 1;
                self.delayed.push(Reverse((due_ms, seq)));
            }
            State::InFlight { deadline_ms, .. } => {
                self.counts.inflight += 1;
                self.inflight.insert((deadline_ms, seq));
            }
        }
        let group = if self.is_feed { None } else { self.fair_entered(&payload) };
        self.slots[index] = Some(Slot { fifo: group, ..Slot::new(message_id, payload, receive_count, first_receive_ms, state) });
        if matches!(state, State::InFlight { .. }) {
            self.fair_inflight(seq, true);
        }
    }

    /// Message `seq` leaves `state` (its deadline too, if it was in flight).
    fn uncount(&mut self, state: State, seq: u64) {
        match state {
            State::Visible => self.counts.visible -= 1,
            State::Delayed { .. } => self.counts.delayed -= 1,
            State::InFlight { deadline_ms, .. } => {
                self.counts.inflight -= 1;
                self.inflight.remove(&(deadline_ms, seq));
            }
        }
    }

    /// Replays a receive: the message is in flight until `deadline_ms`.
    pub fn restore_received(&mut self, seq: u64, receive_count: u32, first_receive_ms: u64, received_ms: u64, deadline_ms: u64) {
        let Some(slot) = self.slot_mut(seq) else { return };
        let previous = slot.state;
        slot.receive_count = receive_count;
        slot.first_receive_ms = first_receive_ms;
        slot.state = State::InFlight { deadline_ms, received_ms };
        self.uncount(previous, seq);
        self.counts.inflight += 1;
        self.inflight.insert((deadline_ms, seq));
        if !matches!(previous, State::InFlight { .. }) {
            self.fifo_inflight_started(seq);
            self.fair_inflight(seq, true);
        }
    }

    /// Replays a visibility change: a new deadline for the message in flight.
    pub fn restore_visibility(&mut self, seq: u64, deadline_ms: u64) {
        let Some(slot) = self.slot_mut(seq) else { return };
        if let State::InFlight { received_ms, deadline_ms: previous } = slot.state {
            slot.state = State::InFlight { deadline_ms, received_ms };
            self.inflight.remove(&(previous, seq));
            self.inflight.insert((deadline_ms, seq));
        }
    }

    /// Takes out a message whose send was never kept (its log record could not be written):
    /// nothing is journaled, as nothing of it is on disk.
    pub fn discard(&mut self, seq: u64) {
        self.forget_dedup_of(seq);
        self.remove(seq);
    }

    /// Replays a removal (delete, move out, expiry) without journaling it again.
    pub fn restore_removed(&mut self, seq: u64) {
        // A FIFO message whose key no `Dedup` record took over was past its window.
        self.forget_dedup_of(seq);
        self.remove(seq);
    }

    pub(super) fn retire_dedup_of(&mut self, seq: u64) {
        if let Some(key) = self.slot_fifo(seq).map(|f| f.dedup_key).filter(|key| *key != 0) {
            self.retire_dedup(seq, key);
        }
    }

    fn forget_dedup_of(&mut self, seq: u64) {
        if let Some(key) = self.slot_fifo(seq).map(|f| f.dedup_key).filter(|key| *key != 0) {
            self.forget_dedup(seq, key);
        }
    }

    /// Forgets what replay journaled and released: the log already holds it.
    pub fn settle_after_replay(&mut self) {
        self.journal.clear();
        self.released.clear();
    }

    /// What a replayed partition holds, for comparing with the live one: per message,
    /// (seq, message-id tag, receive count, first receive, state as text).
    pub fn describe(&self) -> Vec<(u64, u64, u32, u64, String)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                let slot = slot.as_ref()?;
                Some((self.base_seq + index as u64, slot.tag(), slot.receive_count, slot.first_receive_ms, format!("{:?}", slot.state)))
            })
            .collect()
    }

    /// The earliest time a timer of this partition is due, if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        let delayed = self.delayed.peek().map(|Reverse((due, _))| *due);
        let inflight = self.inflight.first().map(|(due, _)| *due);
        match (delayed, inflight) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Visibility deadlines held for the timers: one per message in flight, none left
    /// behind by deleted messages or replaced deadlines.
    pub fn deadlines_held(&self) -> usize {
        self.inflight.len()
    }

    /// Whether the partition holds no message at all.
    pub fn is_empty(&self) -> bool {
        self.counts == Counts::default()
    }
}

/// The bytes a placement holds in the log (none before it is logged).
fn logged_bytes(placement: Placement) -> u64 {
    if placement.log_seq == 0 {
        0
    } else {
        u64::from(placement.bytes)
    }
}
