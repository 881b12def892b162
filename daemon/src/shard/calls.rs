//! What shards ask of each other: every engine's cross-shard calls, their answers, and
//! the notices, in one place — the bus that carries them (`runtime::bus`) knows no engine.

use std::sync::Arc;

use sluice_protocol::OpError;

use crate::queue::partition::{Counts, Delivery};
use crate::queue::registry::{MetaChange, MetaOutcome, Snapshot};
use crate::queue::{MessageRef, VisibilityChange};
use crate::stream::service::{Lease, PutItem, PutOutcome, ReadOutcome, ReadRequest, Seek};

#[derive(Debug)]
pub enum Call {
    /// Receive from this shard's partition of a queue.
    Receive {
        queue_id: u64,
        max_messages: usize,
        visibility_ms: u64,
    },
    Counts {
        queue_id: u64,
    },
    Purge {
        queue_id: u64,
    },
    /// Delete messages of this shard's partition.
    Delete {
        queue_id: u64,
        messages: Vec<MessageRef>,
    },
    ChangeVisibility {
        queue_id: u64,
        entries: Vec<VisibilityChange>,
    },
    /// Install a new metadata snapshot.
    Publish(Arc<Snapshot>),
    /// A metadata change, for shard 0.
    Meta(MetaChange),
    /// Append records to stream shards this shard owns.
    StreamPut {
        stream_id: u64,
        items: Vec<PutItem>,
    },
    /// Read a stream shard this shard owns.
    StreamRead(ReadRequest),
    /// Take or give back a push-subscription lease on a stream shard this shard owns.
    StreamLease(Lease),
    /// Find a position in (or seal) a stream shard this shard owns.
    StreamSeek {
        stream_id: u64,
        shard: u32,
        seek: Seek,
    },
}

#[derive(Debug)]
pub enum Answer {
    Deliveries(Result<Vec<Delivery>, OpError>),
    Counts(Counts),
    Done,
    Results(Vec<Result<(), OpError>>),
    Meta(Result<MetaOutcome, OpError>),
    StreamPut(Vec<PutOutcome>),
    StreamRead(Result<ReadOutcome, OpError>),
    Position(Result<u64, OpError>),
}

/// One-way messages between shards: long-poll interest in a queue and its wake-up.
#[derive(Debug)]
pub enum Notice {
    /// Shard `from` has a long poll waiting on `queue_id`: wake it once a message is visible here.
    Watch { queue_id: u64, from: usize },
    /// A message of `queue_id` became visible on the sending shard.
    Wake { queue_id: u64 },
}

/// This shard's end of the mesh, carrying the calls, answers and notices above.
pub type Bus = crate::runtime::bus::Bus<Call, Answer, Notice>;
/// What travels on the mesh.
pub type ShardMessage = crate::runtime::bus::Envelope<Call, Answer, Notice>;
