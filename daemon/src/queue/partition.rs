//! One shard's partition of one standard queue: the SQS message state machine.
//!
//! A message is delayed, visible or in flight (aws-semantics.md §2.5). The
//! partition keeps
//! - `slots`: every live message by sequence number (a deque from `base_seq`;
//!   deleted messages leave `None` until the front catches up),
//! - `visible`: sequence numbers ready to receive, oldest first,
//! - `delayed` and `inflight`: min-heaps of (due time, seq) for the timers.
//!
//! Heap and `visible` entries may be stale (the message moved on); they are
//! checked against the slot when popped, so no operation searches. Time is
//! always passed in (`now_ms`), which keeps the engine deterministic under test.
//! Invariants: each visible message is in `visible` exactly once; the three
//! counters equal the number of slots in each state.
//!
//! Every change is also written to `journal` as an `Event` (the storage log's
//! records), in the order it happened; the shard drains it into the log after
//! each operation. Each slot remembers where its latest full record (Sent,
//! MovedIn or Restored) sits in the log, and removing a message reports that
//! place in `released`, so storage knows which segments still hold live data.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use sluice_protocol::limits::VISIBILITY_SECONDS_MAX;
use sluice_protocol::{ErrorCode, MessageAttribute, OpError};

use super::journal::{Event, SlotState};

/// What a message carries, fixed at send time and shared (not copied) by every
/// receive of it, on any shard.
#[derive(Debug, Clone)]
pub struct Payload {
    pub message_id: u128,
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
}

type State = SlotState;

#[derive(Debug)]
struct Slot {
    payload: Arc<Payload>,
    receive_count: u32,
    first_receive_ms: u64,
    state: State,
    /// Log sequence number of this message's latest full record; 0 until it is logged.
    log_seq: u64,
    /// Size of that record on disk.
    log_bytes: u32,
}

/// A message handed out by a receive.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: u64,
    pub payload: Arc<Payload>,
    pub receive_count: u32,
    pub first_receive_ms: u64,
}

/// A message taken out of this partition for a dead-letter queue.
#[derive(Debug)]
pub struct Moved {
    /// Where it was in this partition.
    pub seq: u64,
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
    /// In-flight messages this partition may hold before receives answer OverLimit.
    pub inflight_max: usize,
}

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

#[derive(Debug, Default)]
pub struct Partition {
    queue_id: u64,
    /// Changes not yet handed to the log, oldest first.
    journal: Vec<Event>,
    /// (log seq, bytes) of full records whose message is gone.
    released: Vec<(u64, u32)>,
    base_seq: u64,
    slots: VecDeque<Option<Slot>>,
    visible: VecDeque<u64>,
    delayed: BinaryHeap<Reverse<(u64, u64)>>,
    inflight: BinaryHeap<Reverse<(u64, u64)>>,
    counts: Counts,
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
        Partition { queue_id, ..Partition::default() }
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
    pub fn placed(&mut self, seq: u64, log_seq: u64, log_bytes: u32) -> Option<(u64, u32)> {
        match self.slot_mut(seq) {
            Some(slot) => {
                let previous = (slot.log_seq, slot.log_bytes);
                slot.log_seq = log_seq;
                slot.log_bytes = log_bytes;
                (previous.0 != 0).then_some(previous)
            }
            None => Some((log_seq, log_bytes)),
        }
    }

    /// Every live message's (log seq, bytes), for storage's accounting after a replay.
    pub fn for_each_placement(&self, mut each: impl FnMut(u64, u32)) {
        for slot in self.slots.iter().flatten() {
            if slot.log_seq != 0 {
                each(slot.log_seq, slot.log_bytes);
            }
        }
    }

    /// Whether the message at `seq` is the one a receipt with message-id tag `tag` was issued for.
    pub fn holds(&self, seq: u64, tag: u64) -> bool {
        let Some(index) = seq.checked_sub(self.base_seq).and_then(|i| usize::try_from(i).ok()) else { return false };
        self.slots.get(index).and_then(Option::as_ref).is_some_and(|slot| slot.payload.message_id as u64 == tag)
    }

    /// Journals a full copy (`Restored`) of every live message at or after `from_seq` whose
    /// full record is below `below_log_seq`, looking at no more than `budget` slots.
    /// Returns where to continue, or `None` when the partition is done. Compaction uses
    /// this to move live messages out of old segments.
    pub fn relocate(&mut self, from_seq: u64, below_log_seq: u64, budget: usize) -> Option<u64> {
        let start = from_seq.max(self.base_seq);
        let end = self.next_seq();
        let stop = end.min(start.saturating_add(budget as u64));
        for seq in start..stop {
            let index = (seq - self.base_seq) as usize;
            let Some(slot) = self.slots[index].as_ref() else { continue };
            if slot.log_seq != 0 && slot.log_seq < below_log_seq {
                self.journal.push(Event::Restored {
                    queue_id: self.queue_id,
                    seq,
                    payload: slot.payload.clone(),
                    receive_count: slot.receive_count,
                    first_receive_ms: slot.first_receive_ms,
                    state: slot.state,
                });
            }
        }
        (stop < end).then_some(stop)
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let index = usize::try_from(seq.checked_sub(self.base_seq)?).ok()?;
        self.slots.get_mut(index)?.as_mut()
    }

    fn push_slot(&mut self, slot: Slot, now_ms: u64) -> u64 {
        let seq = self.base_seq + self.slots.len() as u64;
        match slot.state {
            State::Delayed { due_ms } if due_ms > now_ms => {
                self.delayed.push(Reverse((due_ms, seq)));
                self.counts.delayed += 1;
            }
            _ => {
                self.visible.push_back(seq);
                self.counts.visible += 1;
            }
        }
        let state = if matches!(slot.state, State::Delayed { due_ms } if due_ms > now_ms) { slot.state } else { State::Visible };
        self.slots.push_back(Some(Slot { state, ..slot }));
        seq
    }

    /// Stores a new message; it is visible at once unless `delay_ms` > 0.
    /// Returns its sequence number in this partition.
    pub fn send(&mut self, payload: Arc<Payload>, delay_ms: u64, now_ms: u64) -> u64 {
        let due_ms = if delay_ms > 0 { now_ms + delay_ms } else { 0 };
        let state = if delay_ms > 0 { State::Delayed { due_ms } } else { State::Visible };
        self.journal.push(Event::Sent { queue_id: self.queue_id, seq: self.next_seq(), payload: payload.clone(), due_ms });
        self.push_slot(Slot { payload, receive_count: 0, first_receive_ms: 0, state, log_seq: 0, log_bytes: 0 }, now_ms)
    }

    /// Stores a message moved here from another queue's partition (dead-lettering).
    pub fn accept_moved(&mut self, moved: Moved, now_ms: u64) -> u64 {
        let Moved { payload, receive_count, first_receive_ms, .. } = moved;
        self.journal.push(Event::MovedIn {
            queue_id: self.queue_id,
            seq: self.next_seq(),
            payload: payload.clone(),
            receive_count,
            first_receive_ms,
        });
        let slot = Slot { payload, receive_count, first_receive_ms, state: State::Visible, log_seq: 0, log_bytes: 0 };
        self.push_slot(slot, now_ms)
    }

    fn remove(&mut self, seq: u64) -> Option<Slot> {
        let index = usize::try_from(seq.checked_sub(self.base_seq)?).ok()?;
        let slot = self.slots.get_mut(index)?.take()?;
        match slot.state {
            State::Visible => self.counts.visible -= 1,
            State::InFlight { .. } => self.counts.inflight -= 1,
            State::Delayed { .. } => self.counts.delayed -= 1,
        }
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base_seq += 1;
        }
        if slot.log_seq != 0 {
            self.released.push((slot.log_seq, slot.log_bytes));
        }
        Some(slot)
    }

    /// Removes a message past retention (journaled like a delete, so a longer retention
    /// set later cannot bring it back).
    fn expire(&mut self, seq: u64) {
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
        while let Some(&Reverse((deadline, seq))) = self.inflight.peek() {
            if deadline > now_ms {
                break;
            }
            self.inflight.pop();
            if let Some(slot) = self.slot_mut(seq) {
                if matches!(slot.state, State::InFlight { deadline_ms, .. } if deadline_ms == deadline) {
                    slot.state = State::Visible;
                    self.counts.inflight -= 1;
                    self.counts.visible += 1;
                    self.visible.push_back(seq);
                    became_visible = true;
                }
            }
        }
        while let Some(Some(front)) = self.slots.front() {
            if front.payload.sent_ms + retention_ms > now_ms {
                break;
            }
            let seq = self.base_seq;
            self.expire(seq);
        }
        became_visible
    }

    /// Hands out up to `rules.max_messages` visible messages, oldest first.
    /// Messages past retention are dropped on the way; messages whose receive
    /// count would pass maxReceiveCount are returned in `moved` instead.
    pub fn receive(
        &mut self,
        now_ms: u64,
        rules: &ReceiveRules,
        delivered: &mut Vec<Delivery>,
        moved: &mut Vec<Moved>,
    ) -> Result<(), OpError> {
        self.tick(now_ms, rules.retention_ms);
        let wanted = delivered.len() + rules.max_messages;
        if self.counts.inflight as usize >= rules.inflight_max && self.counts.visible > 0 {
            return Err(OpError::new(ErrorCode::OverLimit, "Too many messages in flight for this queue."));
        }
        while delivered.len() < wanted && (self.counts.inflight as usize) < rules.inflight_max {
            let Some(seq) = self.visible.pop_front() else { break };
            let Some(slot) = self.slot_mut(seq) else { continue };
            if slot.state != State::Visible {
                continue;
            }
            if slot.payload.sent_ms + rules.retention_ms <= now_ms {
                self.expire(seq);
                continue;
            }
            if rules.max_receive_count.is_some_and(|max| slot.receive_count >= max) {
                if let Some(slot) = self.remove(seq) {
                    self.journal.push(Event::MovedOut { queue_id: self.queue_id, seq });
                    moved.push(Moved {
                        seq,
                        payload: slot.payload,
                        receive_count: slot.receive_count,
                        first_receive_ms: slot.first_receive_ms,
                    });
                }
                continue;
            }
            slot.receive_count += 1;
            if slot.first_receive_ms == 0 {
                slot.first_receive_ms = now_ms;
            }
            let deadline_ms = now_ms + rules.visibility_ms;
            slot.state = State::InFlight { deadline_ms, received_ms: now_ms };
            let delivery =
                Delivery { seq, payload: slot.payload.clone(), receive_count: slot.receive_count, first_receive_ms: slot.first_receive_ms };
            self.journal.push(Event::Received {
                queue_id: self.queue_id,
                seq,
                receive_count: delivery.receive_count,
                first_receive_ms: delivery.first_receive_ms,
                received_ms: now_ms,
                deadline_ms,
            });
            delivered.push(delivery);
            self.counts.visible -= 1;
            self.counts.inflight += 1;
            self.inflight.push(Reverse((deadline_ms, seq)));
        }
        Ok(())
    }

    /// Deletes a message by any receipt handle ever issued for it; deleting a
    /// message that is already gone succeeds (SQS standard queues are idempotent here).
    pub fn delete(&mut self, seq: u64) -> bool {
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
            self.journal.push(Event::VisibilityChanged { queue_id: self.queue_id, seq, deadline_ms: now_ms });
            self.counts.inflight -= 1;
            self.counts.visible += 1;
            self.visible.push_back(seq);
            return Ok(true);
        }
        let deadline_ms = now_ms + timeout_ms;
        slot.state = State::InFlight { deadline_ms, received_ms };
        self.journal.push(Event::VisibilityChanged { queue_id: self.queue_id, seq, deadline_ms });
        self.inflight.push(Reverse((deadline_ms, seq)));
        Ok(false)
    }

    /// Removes every message, whatever its state.
    pub fn purge(&mut self) {
        self.journal.push(Event::Purged { queue_id: self.queue_id });
        self.drop_all();
    }

    /// Forgets every message without journaling it (the queue itself is gone), reporting
    /// their records as released.
    pub fn drop_all(&mut self) {
        for slot in self.slots.iter().flatten() {
            if slot.log_seq != 0 {
                self.released.push((slot.log_seq, slot.log_bytes));
            }
        }
        self.base_seq += self.slots.len() as u64;
        self.slots.clear();
        self.visible.clear();
        self.delayed.clear();
        self.inflight.clear();
        self.counts = Counts::default();
    }

    /// Message counts by state, after running the timers due by `now_ms`.
    pub fn counts(&mut self, now_ms: u64, retention_ms: u64) -> Counts {
        self.tick(now_ms, retention_ms);
        self.counts
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
    pub fn restore(&mut self, seq: u64, payload: Arc<Payload>, receive_count: u32, first_receive_ms: u64, state: SlotState) {
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
        let index = (seq - self.base_seq) as usize;
        let was_visible = match self.slots[index].take() {
            Some(previous) => {
                self.uncount(previous.state);
                previous.state == State::Visible
            }
            None => false,
        };
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
                self.inflight.push(Reverse((deadline_ms, seq)));
            }
        }
        self.slots[index] = Some(Slot { payload, receive_count, first_receive_ms, state, log_seq: 0, log_bytes: 0 });
    }

    fn uncount(&mut self, state: State) {
        match state {
            State::Visible => self.counts.visible -= 1,
            State::Delayed { .. } => self.counts.delayed -= 1,
            State::InFlight { .. } => self.counts.inflight -= 1,
        }
    }

    /// Replays a receive: the message is in flight until `deadline_ms`.
    pub fn restore_received(&mut self, seq: u64, receive_count: u32, first_receive_ms: u64, received_ms: u64, deadline_ms: u64) {
        let Some(slot) = self.slot_mut(seq) else { return };
        let previous = slot.state;
        slot.receive_count = receive_count;
        slot.first_receive_ms = first_receive_ms;
        slot.state = State::InFlight { deadline_ms, received_ms };
        self.uncount(previous);
        self.counts.inflight += 1;
        self.inflight.push(Reverse((deadline_ms, seq)));
    }

    /// Replays a visibility change: a new deadline for the message in flight.
    pub fn restore_visibility(&mut self, seq: u64, deadline_ms: u64) {
        let Some(slot) = self.slot_mut(seq) else { return };
        if let State::InFlight { received_ms, .. } = slot.state {
            slot.state = State::InFlight { deadline_ms, received_ms };
            self.inflight.push(Reverse((deadline_ms, seq)));
        }
    }

    /// Replays a removal (delete, move out, expiry) without journaling it again.
    pub fn restore_removed(&mut self, seq: u64) {
        self.remove(seq);
    }

    /// Forgets what replay journaled and released: the log already holds it.
    pub fn settle_after_replay(&mut self) {
        self.journal.clear();
        self.released.clear();
    }

    /// What a replayed partition holds, for comparing with the live one: per message,
    /// (seq, message id, receive count, first receive, state as text).
    pub fn describe(&self) -> Vec<(u64, u128, u32, u64, String)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                let slot = slot.as_ref()?;
                Some((
                    self.base_seq + index as u64,
                    slot.payload.message_id,
                    slot.receive_count,
                    slot.first_receive_ms,
                    format!("{:?}", slot.state),
                ))
            })
            .collect()
    }

    /// The earliest time a timer of this partition is due, if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        let delayed = self.delayed.peek().map(|Reverse((due, _))| *due);
        let inflight = self.inflight.peek().map(|Reverse((due, _))| *due);
        match (delayed, inflight) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the partition holds no message at all.
    pub fn is_empty(&self) -> bool {
        self.counts == Counts::default()
    }
}
