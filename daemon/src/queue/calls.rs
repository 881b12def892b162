//! What one shard asks of another's partitions of a queue, and the long-poll notices.

use sluice_protocol::OpError;

use super::partition::{Counts, Delivery};
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
}

#[derive(Debug, Clone)]
pub struct Receive {
    pub queue_id: u64,
    pub max_messages: usize,
    pub visibility_ms: u64,
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

/// One-way messages between shards: long-poll interest in a queue and its wake-up.
#[derive(Debug)]
pub enum QueueNotice {
    /// Shard `from` has a long poll waiting on `queue_id`: wake it once a message is visible here.
    Watch { queue_id: u64, from: usize },
    /// A message of `queue_id` became visible on the sending shard.
    Wake { queue_id: u64 },
}
