//! The queue journal: one event per change to a partition, its binary encoding,
//! and replay, which rebuilds partitions exactly.
//!
//! Timers need no events: delays, visibility deadlines and retention are times
//! stored in the events, so a replayed partition reaches the same state at the
//! same clock. Decoding trusts nothing: every read is bounds-checked and a bad
//! record is an error naming what was short, never a panic.
//!
//! Partitions emit these events themselves as they change (see `partition`),
//! and each shard appends them to its storage log.

use std::sync::Arc;

use bytes::Bytes;
use sluice_protocol::MessageAttribute;

use super::fifo::FifoFields;
use super::partition::{Partition, Payload, Placement};
use crate::kms::at_rest::{Keyring, OpenError, WriteKey};

pub use crate::storage::record::kind::{
    QUEUE_CURSOR as KIND_CURSOR, QUEUE_DEDUP as KIND_DEDUP, QUEUE_DELETED as KIND_DELETED, QUEUE_FED as KIND_FED,
    QUEUE_MOVED_IN as KIND_MOVED_IN, QUEUE_MOVED_OUT as KIND_MOVED_OUT, QUEUE_PURGED as KIND_PURGED, QUEUE_RECEIVED as KIND_RECEIVED,
    QUEUE_RESTORED as KIND_RESTORED, QUEUE_SENT as KIND_SENT, QUEUE_TRIMMED as KIND_TRIMMED, QUEUE_VISIBILITY as KIND_VISIBILITY,
};

/// Where a message stands. A message's full state is its payload, receive count,
/// first receive time and this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    Delayed { due_ms: u64 },
    Visible,
    InFlight { deadline_ms: u64, received_ms: u64 },
}

/// One change to one partition.
#[derive(Debug, Clone)]
pub enum Event {
    Sent {
        queue_id: u64,
        seq: u64,
        message_id: u128,
        payload: Arc<Payload>,
        due_ms: u64,
    },
    Received {
        queue_id: u64,
        seq: u64,
        receive_count: u32,
        first_receive_ms: u64,
        received_ms: u64,
        deadline_ms: u64,
    },
    VisibilityChanged {
        queue_id: u64,
        seq: u64,
        deadline_ms: u64,
    },
    Deleted {
        queue_id: u64,
        seq: u64,
    },
    /// Taken out for a dead-letter queue (the matching `MovedIn` follows).
    MovedOut {
        queue_id: u64,
        seq: u64,
    },
    MovedIn {
        queue_id: u64,
        seq: u64,
        message_id: u128,
        payload: Arc<Payload>,
        receive_count: u32,
        first_receive_ms: u64,
    },
    Purged {
        queue_id: u64,
    },
    /// A live message's whole state, written again by compaction so that the older
    /// records about it can go.
    Restored {
        queue_id: u64,
        seq: u64,
        message_id: u128,
        payload: Arc<Payload>,
        receive_count: u32,
        first_receive_ms: u64,
        state: SlotState,
    },
    /// A topic's message taken into this subscribed queue from the topic's feed (`queue::feed`):
    /// a full record, like `Sent`, which also moves the reader's cursor past `feed_seq`.
    Fed {
        queue_id: u64,
        seq: u64,
        message_id: u128,
        payload: Arc<Payload>,
        due_ms: u64,
        key: u64,
        feed_seq: u64,
    },
    /// Where this queue reads feed `feed_id` through cursor `key`: from `next`, up to `until`
    /// (exclusive; `u64::MAX` while the subscription reads the feed).
    Cursor {
        queue_id: u64,
        key: u64,
        feed_id: u64,
        next: u64,
        until: u64,
        /// The subscription's ARN, for a cursor on a feed of envelopes (its unsubscribe URL).
        arn: Option<Arc<str>>,
    },
    /// A feed's messages below `below` are gone: every reader has taken them.
    Trimmed {
        queue_id: u64,
        below: u64,
    },
    /// A FIFO queue keeps deduplication key `key` (of message `message_id`, sequence number
    /// `sequence`) until `expires_ms`, after its message has gone (`queue::fifo`).
    Dedup {
        queue_id: u64,
        key: u128,
        message_id: u128,
        sequence: u64,
        expires_ms: u64,
    },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("journal record of kind {kind} is cut short: needed {needed} bytes at offset {at}, had {had}")]
    Truncated { kind: u8, at: usize, needed: usize, had: usize },
    #[error("unknown journal record kind {0}")]
    UnknownKind(u8),
    #[error("journal record of kind {kind} has invalid {what}")]
    Invalid { kind: u8, what: &'static str },
    /// Its message's content is sealed under a KMS key that was deleted (crypto-shredded, as
    /// KMS promises): the message cannot come back.
    #[error("journal record of kind {kind} of queue {queue_id} is sealed under KMS key {key}, which was deleted")]
    KeyGone { kind: u8, queue_id: u64, key: String },
}

/// The attribute count's top bit: the attributes and body that follow are one sealed part.
const SEALED_CONTENT: u16 = 0x8000;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            out.push(1);
            put_bytes(out, text.as_bytes());
        }
        None => out.push(0),
    }
}

/// A message's attributes and body (sealed or not, the same bytes).
fn put_content(out: &mut Vec<u8>, payload: &Payload) {
    let attributes = payload.attributes.as_deref().unwrap_or(&[]);
    out.extend_from_slice(&(attributes.len() as u16).to_le_bytes());
    for attribute in attributes {
        put_bytes(out, attribute.name.as_bytes());
        put_bytes(out, attribute.data_type.as_bytes());
        put_opt_str(out, attribute.string_value.as_deref());
        match &attribute.binary_value {
            Some(bytes) => {
                out.push(1);
                put_bytes(out, bytes);
            }
            None => out.push(0),
        }
    }
    put_bytes(out, &payload.body);
}

/// A message's id and payload, as every full record carries them; its attributes and body
/// sealed when `seal` is given (`kms::at_rest`), in clear otherwise.
fn put_payload(out: &mut Vec<u8>, message_id: u128, payload: &Payload, seal: Option<&WriteKey>) {
    out.extend_from_slice(&message_id.to_le_bytes());
    out.extend_from_slice(&payload.sent_ms.to_le_bytes());
    out.extend_from_slice(&payload.md5_of_body);
    match &payload.md5_of_attributes {
        Some(md5) => {
            out.push(1);
            out.extend_from_slice(md5);
        }
        None => out.push(0),
    }
    put_opt_str(out, payload.trace_header.as_deref());
    match (&payload.fifo, payload.message_group_id.as_deref()) {
        // A FIFO message: flag 2, its group, sequence number, deduplication key and id.
        (Some(fifo), group) => {
            out.push(2);
            put_bytes(out, group.unwrap_or("").as_bytes());
            out.extend_from_slice(&fifo.sequence.to_le_bytes());
            out.extend_from_slice(&fifo.dedup_key.to_le_bytes());
            put_opt_str(out, fifo.deduplication_id.as_deref());
        }
        (None, group) => put_opt_str(out, group),
    }
    put_opt_str(out, payload.dead_letter_source_arn.as_deref());
    match seal {
        None => put_content(out, payload),
        Some(seal) => {
            out.extend_from_slice(&SEALED_CONTENT.to_le_bytes());
            let len_at = out.len();
            out.extend_from_slice(&0u32.to_le_bytes());
            Keyring::seal(seal, out, |out| put_content(out, payload));
            let len = (out.len() - len_at - 4) as u32;
            out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        }
    }
}

/// Bounds-checked reads over one record.
struct Reader<'a> {
    kind: u8,
    buf: &'a [u8],
    at: usize,
    /// What opens sealed content; `None`: sealed content is refused.
    keyring: Option<&'a Keyring>,
    queue_id: u64,
}

impl<'a> Reader<'a> {
    fn take(&mut self, needed: usize) -> Result<&'a [u8], JournalError> {
        let had = self.buf.len() - self.at;
        if needed > had {
            return Err(JournalError::Truncated { kind: self.kind, at: self.at, needed, had });
        }
        let bytes = &self.buf[self.at..self.at + needed];
        self.at += needed;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], JournalError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, JournalError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, JournalError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, JournalError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, JournalError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn u128(&mut self) -> Result<u128, JournalError> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], JournalError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn string(&mut self, what: &'static str) -> Result<String, JournalError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| JournalError::Invalid { kind: self.kind, what })
    }

    fn opt_string(&mut self, what: &'static str) -> Result<Option<String>, JournalError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.string(what).map(Some),
            _ => Err(JournalError::Invalid { kind: self.kind, what }),
        }
    }

    /// A message's attributes and body (`put_content`); the body is sliced out of `owner`
    /// when it holds this reader's bytes, else copied.
    fn content(&mut self, owner: Option<&Bytes>) -> Result<(Vec<MessageAttribute>, Bytes), JournalError> {
        let count = self.u16()? as usize;
        let mut attributes = Vec::with_capacity(count.min(sluice_protocol::limits::MESSAGE_ATTRIBUTES_MAX));
        for _ in 0..count {
            let name = self.string("attribute name")?;
            let data_type = self.string("attribute type")?;
            let string_value = self.opt_string("attribute value")?;
            let binary_value = match self.u8()? {
                0 => None,
                1 => Some(Bytes::copy_from_slice(self.bytes()?)),
                _ => return Err(JournalError::Invalid { kind: self.kind, what: "binary attribute flag" }),
            };
            attributes.push(MessageAttribute { name, data_type, string_value, binary_value });
        }
        let body = self.bytes()?;
        let body = match owner {
            Some(owner) => owner.slice_ref(body),
            None => Bytes::copy_from_slice(body),
        };
        Ok((attributes, body))
    }

    /// A message's id and payload (`put_payload`).
    fn payload(&mut self) -> Result<(u128, Arc<Payload>), JournalError> {
        let message_id = self.u128()?;
        let sent_ms = self.u64()?;
        let md5_of_body = self.array()?;
        let md5_of_attributes = match self.u8()? {
            0 => None,
            1 => Some(self.array()?),
            _ => return Err(JournalError::Invalid { kind: self.kind, what: "attribute digest flag" }),
        };
        let trace_header = self.opt_string("trace header")?;
        let (message_group_id, fifo) = match self.u8()? {
            0 => (None, None),
            1 => (Some(self.string("message group id")?), None),
            2 => {
                let group = self.string("message group id")?;
                let sequence = self.u64()?;
                let dedup_key = self.u128()?;
                let deduplication_id = self.opt_string("deduplication id")?.map(Arc::from);
                (Some(group), Some(FifoFields { sequence, dedup_key, deduplication_id }))
            }
            _ => return Err(JournalError::Invalid { kind: self.kind, what: "message group id" }),
        };
        let dead_letter_source_arn = self.opt_string("dead-letter source")?.map(Arc::from);
        let count = u16::from_le_bytes(self.buf.get(self.at..self.at + 2).and_then(|b| b.try_into().ok()).unwrap_or([0, 0]));
        let (attributes, body) = if count & SEALED_CONTENT != 0 {
            self.u16()?;
            let sealed = self.bytes()?;
            let (kind, queue_id) = (self.kind, self.queue_id);
            let keyring = self.keyring.ok_or(JournalError::Invalid { kind, what: "content (sealed, and no keys to open it)" })?;
            let opened = keyring.open(sealed).map_err(|error| match error {
                OpenError::KeyGone(key) => JournalError::KeyGone { kind, queue_id, key },
                OpenError::Damaged => JournalError::Invalid { kind, what: "sealed content (it does not open)" },
            })?;
            let opened = Bytes::from(opened);
            let mut inner = Reader { kind, buf: &opened, at: 0, keyring: None, queue_id };
            let content = inner.content(Some(&opened))?;
            if inner.at != opened.len() {
                return Err(JournalError::Invalid { kind, what: "sealed content (bytes left over)" });
            }
            content
        } else {
            self.content(None)?
        };
        let payload = Payload {
            body,
            attributes: (!attributes.is_empty()).then(|| Arc::from(attributes)),
            md5_of_body,
            md5_of_attributes,
            trace_header,
            message_group_id,
            sent_ms,
            dead_letter_source_arn,
            fifo,
        };
        Ok((message_id, Arc::new(payload)))
    }
}

impl Event {
    pub fn kind(&self) -> u8 {
        match self {
            Event::Sent { .. } => KIND_SENT,
            Event::Received { .. } => KIND_RECEIVED,
            Event::VisibilityChanged { .. } => KIND_VISIBILITY,
            Event::Deleted { .. } => KIND_DELETED,
            Event::MovedOut { .. } => KIND_MOVED_OUT,
            Event::MovedIn { .. } => KIND_MOVED_IN,
            Event::Purged { .. } => KIND_PURGED,
            Event::Restored { .. } => KIND_RESTORED,
            Event::Fed { .. } => KIND_FED,
            Event::Cursor { .. } => KIND_CURSOR,
            Event::Trimmed { .. } => KIND_TRIMMED,
            Event::Dedup { .. } => KIND_DEDUP,
        }
    }

    /// The queue this event changes.
    pub fn queue_id(&self) -> u64 {
        match self {
            Event::Sent { queue_id, .. }
            | Event::Received { queue_id, .. }
            | Event::VisibilityChanged { queue_id, .. }
            | Event::Deleted { queue_id, .. }
            | Event::MovedOut { queue_id, .. }
            | Event::MovedIn { queue_id, .. }
            | Event::Purged { queue_id }
            | Event::Restored { queue_id, .. }
            | Event::Fed { queue_id, .. }
            | Event::Cursor { queue_id, .. }
            | Event::Trimmed { queue_id, .. }
            | Event::Dedup { queue_id, .. } => *queue_id,
        }
    }

    /// For records that carry a message's whole state (and so hold log space while it
    /// lives): the message's sequence number.
    pub fn full_record_of(&self) -> Option<u64> {
        match self {
            Event::Sent { seq, .. } | Event::MovedIn { seq, .. } | Event::Restored { seq, .. } | Event::Fed { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    /// Appends this event's bytes (the log record's payload; `kind()` is its kind), in clear.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_sealed(out, None)
    }

    /// `encode`, with a message's attributes and body sealed under `seal` when given.
    pub fn encode_sealed(&self, out: &mut Vec<u8>, seal: Option<&WriteKey>) {
        let mut u64s = |values: &[u64]| values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        match self {
            Event::Sent { queue_id, seq, message_id, payload, due_ms } => {
                u64s(&[*queue_id, *seq, *due_ms]);
                put_payload(out, *message_id, payload, seal);
            }
            Event::Received { queue_id, seq, receive_count, first_receive_ms, received_ms, deadline_ms } => {
                u64s(&[*queue_id, *seq, *first_receive_ms, *received_ms, *deadline_ms]);
                out.extend_from_slice(&receive_count.to_le_bytes());
            }
            Event::VisibilityChanged { queue_id, seq, deadline_ms } => u64s(&[*queue_id, *seq, *deadline_ms]),
            Event::Deleted { queue_id, seq } | Event::MovedOut { queue_id, seq } => u64s(&[*queue_id, *seq]),
            Event::MovedIn { queue_id, seq, message_id, payload, receive_count, first_receive_ms } => {
                u64s(&[*queue_id, *seq, *first_receive_ms]);
                out.extend_from_slice(&receive_count.to_le_bytes());
                put_payload(out, *message_id, payload, seal);
            }
            Event::Purged { queue_id } => u64s(&[*queue_id]),
            Event::Restored { queue_id, seq, message_id, payload, receive_count, first_receive_ms, state } => {
                let (tag, a, b) = match *state {
                    SlotState::Visible => (0u64, 0, 0),
                    SlotState::Delayed { due_ms } => (1, due_ms, 0),
                    SlotState::InFlight { deadline_ms, received_ms } => (2, deadline_ms, received_ms),
                };
                u64s(&[*queue_id, *seq, *first_receive_ms, tag, a, b]);
                out.extend_from_slice(&receive_count.to_le_bytes());
                put_payload(out, *message_id, payload, seal);
            }
            Event::Fed { queue_id, seq, message_id, payload, due_ms, key, feed_seq } => {
                u64s(&[*queue_id, *seq, *due_ms, *key, *feed_seq]);
                put_payload(out, *message_id, payload, seal);
            }
            Event::Cursor { queue_id, key, feed_id, next, until, arn } => {
                u64s(&[*queue_id, *key, *feed_id, *next, *until]);
                put_opt_str(out, arn.as_deref());
            }
            Event::Trimmed { queue_id, below } => u64s(&[*queue_id, *below]),
            Event::Dedup { queue_id, key, message_id, sequence, expires_ms } => {
                u64s(&[*queue_id, *sequence, *expires_ms]);
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&message_id.to_le_bytes());
            }
        }
    }

    /// Decodes a record of `kind` written in clear; the whole record must be used.
    pub fn decode(kind: u8, bytes: &[u8]) -> Result<Event, JournalError> {
        Event::decode_with(kind, bytes, None)
    }

    /// `decode`, opening sealed content with `keyring`.
    pub fn decode_with(kind: u8, bytes: &[u8], keyring: Option<&Keyring>) -> Result<Event, JournalError> {
        // Every record begins with its queue id (named by errors about sealed content).
        let queue_id = bytes.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
        let mut r = Reader { kind, buf: bytes, at: 0, keyring, queue_id };
        let event = match kind {
            KIND_SENT => {
                let (queue_id, seq, due_ms) = (r.u64()?, r.u64()?, r.u64()?);
                let (message_id, payload) = r.payload()?;
                Event::Sent { queue_id, seq, message_id, payload, due_ms }
            }
            KIND_RECEIVED => Event::Received {
                queue_id: r.u64()?,
                seq: r.u64()?,
                first_receive_ms: r.u64()?,
                received_ms: r.u64()?,
                deadline_ms: r.u64()?,
                receive_count: r.u32()?,
            },
            KIND_VISIBILITY => Event::VisibilityChanged { queue_id: r.u64()?, seq: r.u64()?, deadline_ms: r.u64()? },
            KIND_DELETED => Event::Deleted { queue_id: r.u64()?, seq: r.u64()? },
            KIND_MOVED_OUT => Event::MovedOut { queue_id: r.u64()?, seq: r.u64()? },
            KIND_MOVED_IN => {
                let (queue_id, seq, first_receive_ms, receive_count) = (r.u64()?, r.u64()?, r.u64()?, r.u32()?);
                let (message_id, payload) = r.payload()?;
                Event::MovedIn { queue_id, seq, message_id, payload, receive_count, first_receive_ms }
            }
            KIND_PURGED => Event::Purged { queue_id: r.u64()? },
            KIND_RESTORED => {
                let (queue_id, seq, first_receive_ms) = (r.u64()?, r.u64()?, r.u64()?);
                let (tag, a, b) = (r.u64()?, r.u64()?, r.u64()?);
                let state = match tag {
                    0 => SlotState::Visible,
                    1 => SlotState::Delayed { due_ms: a },
                    2 => SlotState::InFlight { deadline_ms: a, received_ms: b },
                    _ => return Err(JournalError::Invalid { kind, what: "message state" }),
                };
                let receive_count = r.u32()?;
                let (message_id, payload) = r.payload()?;
                Event::Restored { queue_id, seq, message_id, payload, receive_count, first_receive_ms, state }
            }
            KIND_FED => {
                let (queue_id, seq, due_ms, key, feed_seq) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
                let (message_id, payload) = r.payload()?;
                Event::Fed { queue_id, seq, message_id, payload, due_ms, key, feed_seq }
            }
            KIND_CURSOR => Event::Cursor {
                queue_id: r.u64()?,
                key: r.u64()?,
                feed_id: r.u64()?,
                next: r.u64()?,
                until: r.u64()?,
                arn: r.opt_string("subscription ARN")?.map(Arc::from),
            },
            KIND_TRIMMED => Event::Trimmed { queue_id: r.u64()?, below: r.u64()? },
            KIND_DEDUP => {
                let (queue_id, sequence, expires_ms) = (r.u64()?, r.u64()?, r.u64()?);
                Event::Dedup { queue_id, sequence, expires_ms, key: r.u128()?, message_id: r.u128()? }
            }
            other => return Err(JournalError::UnknownKind(other)),
        };
        if r.at != bytes.len() {
            return Err(JournalError::Invalid { kind, what: "length (bytes left over)" });
        }
        Ok(event)
    }

    /// Applies this event, read from the log at `placement`, to the partitions it names
    /// (creating them on first use).
    pub fn apply(self, placement: Placement, partitions: &mut super::QueueMap<Partition>) {
        let queue_id = self.queue_id();
        let partition = partitions.entry(queue_id).or_insert_with(|| Partition::for_queue(queue_id));
        match self {
            Event::Sent { seq, message_id, payload, due_ms, .. } => restore_sent(partition, seq, message_id, payload, due_ms, placement),
            Event::MovedIn { seq, message_id, payload, receive_count, first_receive_ms, .. } => {
                partition.restore(seq, message_id, payload, receive_count, first_receive_ms, SlotState::Visible);
                partition.placed(seq, placement);
            }
            Event::Restored { seq, message_id, payload, receive_count, first_receive_ms, state, .. } => {
                partition.restore(seq, message_id, payload, receive_count, first_receive_ms, state);
                partition.placed(seq, placement);
            }
            Event::Received { seq, receive_count, first_receive_ms, received_ms, deadline_ms, .. } => {
                partition.restore_received(seq, receive_count, first_receive_ms, received_ms, deadline_ms)
            }
            Event::VisibilityChanged { seq, deadline_ms, .. } => partition.restore_visibility(seq, deadline_ms),
            Event::Deleted { seq, .. } | Event::MovedOut { seq, .. } => partition.restore_removed(seq),
            Event::Purged { .. } => partition.drop_all(),
            Event::Fed { seq, message_id, payload, due_ms, key, feed_seq, .. } => {
                restore_sent(partition, seq, message_id, payload, due_ms, placement);
                partition.advance_cursor(key, feed_seq);
            }
            Event::Cursor { key, feed_id, next, until, arn, .. } => {
                partition.restore_cursor(key, feed_id, next, until, arn, (placement.log_seq, placement.bytes))
            }
            Event::Trimmed { below, .. } => partition.restore_trimmed(below),
            Event::Dedup { key, message_id, sequence, expires_ms, .. } => {
                partition.restore_dedup(key, message_id, sequence, expires_ms, (placement.log_seq, placement.bytes))
            }
        }
    }
}

/// Replays a message sent (or taken from a feed) at `seq`, due at `due_ms` (0: visible).
fn restore_sent(partition: &mut Partition, seq: u64, message_id: u128, payload: Arc<Payload>, due_ms: u64, placement: Placement) {
    let state = if due_ms > 0 { SlotState::Delayed { due_ms } } else { SlotState::Visible };
    partition.restore(seq, message_id, payload, 0, 0, state);
    partition.placed(seq, placement);
}
