//! What one shard asks of another's partitions of a queue, and the long-poll notices.

use sluice_protocol::OpError;

use super::partition::{Counts, Delivery, Moved};
use super::{MessageRef, VisibilityChange};
use crate::runtime::calls::calls;

calls! { QueueCall, QueueAnswer;
    /// Receive from this shard's partition of a queue.
    Receive => Result<Vec<Delivery>, OpError>,
    /// The message counts of this shard's partition of a queue.
    CountMessages => Counts,
    /// Purge this shard's partition of a queue.
    Purge => Result<(), OpError>,
    /// Delete messages of this shard's partition (kept once the reply is `Ok`).
    Delete => Result<(), OpError>,
    /// Change the visibility of messages of this shard's partition: one outcome per entry.
    ChangeVisibility => Vec<Result<(), OpError>>,
    /// Send to the FIFO queue this shard owns: one outcome per entry, once kept.
    SendFifo => Result<Vec<Result<sluice_protocol::SendResult, OpError>>, OpError>,
    /// Delete messages of the FIFO queue this shard owns: one outcome per entry, once kept.
    DeleteFifo => Result<Vec<Result<(), OpError>>, OpError>,
    /// Store messages moved from a FIFO queue in this shard's dead-letter FIFO queue; `Ok` once kept.
    AcceptMoved => Result<(), OpError>,
    /// A message move task's step on this shard (`queue::redrive`); `Ok` once kept.
    MoveOut => Result<MovedOut, OpError>,
}

#[derive(Debug, Clone)]
pub struct MoveOut {
    /// The dead-letter queue moved from.
    pub queue_id: u64,
    /// The queue moved to (ARN); `None`: each message back where it came from.
    pub destination: Option<String>,
    pub max: usize,
}

/// What one shard's step of a move task did.
#[derive(Debug, Clone, Default)]
pub struct MovedOut {
    pub moved: u64,
    /// Visible messages left in this shard's partition of the source.
    pub left: u64,
    /// Why a message could not be moved (it stays in the dead-letter queue).
    pub unplaced: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Receive {
    pub queue_id: u64,
    pub max_messages: usize,
    pub visibility_ms: u64,
    /// A FIFO receive's `ReceiveRequestAttemptId`.
    pub attempt: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CountMessages {
    pub queue_id: u64,
}

#[derive(Debug, Clone)]
pub struct Purge {
    pub queue_id: u64,
}

#[derive(Debug, Clone)]
pub struct Delete {
    pub queue_id: u64,
    pub messages: Vec<MessageRef>,
}

#[derive(Debug, Clone)]
pub struct ChangeVisibility {
    pub queue_id: u64,
    pub entries: Vec<VisibilityChange>,
}

#[derive(Debug)]
pub struct SendFifo {
    pub queue_id: u64,
    /// Checked by the shard that took the request (`fifo_ops::check_entry`).
    pub entries: Vec<sluice_protocol::SendEntry>,
}

#[derive(Debug)]
pub struct DeleteFifo {
    pub queue_id: u64,
    /// Each receipt's message and receive count.
    pub messages: Vec<(MessageRef, u32)>,
}

#[derive(Debug)]
pub struct AcceptMoved {
    pub queue_id: u64,
    pub source_arn: String,
    pub messages: Vec<Moved>,
}

/// One-way messages between shards: long-poll interest in a queue and its wake-up.
#[derive(Debug)]
pub enum QueueNotice {
    /// Shard `from` has a long poll waiting on `queue_id`: wake it once a message is visible here.
    Watch { queue_id: u64, from: usize },
    /// A message of `queue_id` became visible on the sending shard.
    Wake { queue_id: u64 },
}
