//! Cross-shard messaging over glommio's channel mesh.
//!
//! A `Call` goes to the shard that owns what it touches and comes back as an
//! `Answer` matched by a correlation id; the answer is resolved on the shard
//! that asked. `Watch` and `Wake` carry long-poll interest and its wake-up.
//! The pump that reads a peer's channel never awaits a send, so two shards
//! calling each other can never deadlock on full channels.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use futures::channel::oneshot;
use glommio::channels::channel_mesh::Senders;
use sluice_protocol::{ErrorCode, OpError};

use crate::queue::partition::{Counts, Delivery};
use crate::queue::registry::{MetaChange, MetaOutcome, Snapshot};
use crate::stream::service::{Lease, PutItem, PutOutcome, ReadOutcome, ReadRequest, Seek};

/// Messages in flight per ordered pair of shards before a sender waits.
pub const MESH_CHANNEL_CAPACITY_MAX: usize = 1024;

/// A message a receipt handle names on its owning shard: (seq, message-id tag).
pub type MessageRef = (u64, u64);

/// One visibility change for the owning shard.
#[derive(Debug, Clone, Copy)]
pub struct VisibilityChange {
    pub message: MessageRef,
    /// Receive count of the handle.
    pub receive_count: u32,
    pub timeout_ms: u64,
}

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

#[derive(Debug)]
pub enum ShardMessage {
    Call {
        from: usize,
        corr: u64,
        call: Call,
    },
    Answer {
        corr: u64,
        answer: Answer,
    },
    /// Shard `from` has a long poll waiting on `queue_id`: wake it once a message is visible here.
    Watch {
        queue_id: u64,
        from: usize,
    },
    /// A message of `queue_id` became visible on the sending shard.
    Wake {
        queue_id: u64,
    },
}

/// This shard's end of the mesh.
pub struct Bus {
    senders: Senders<ShardMessage>,
    next_corr: Cell<u64>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Answer>>>,
}

impl Bus {
    pub fn new(senders: Senders<ShardMessage>) -> Bus {
        Bus { senders, next_corr: Cell::new(1), pending: RefCell::new(HashMap::new()) }
    }

    pub fn shard_id(&self) -> usize {
        self.senders.peer_id()
    }

    pub fn shard_count(&self) -> usize {
        self.senders.nr_consumers()
    }

    /// Sends `call` to shard `to` and waits for its answer. `to` must not be this shard.
    pub async fn call(&self, to: usize, call: Call) -> Result<Answer, OpError> {
        let corr = self.next_corr.get();
        self.next_corr.set(corr + 1);
        let (reply, answer) = oneshot::channel();
        self.pending.borrow_mut().insert(corr, reply);
        let message = ShardMessage::Call { from: self.shard_id(), corr, call };
        if self.senders.send_to(to, message).await.is_err() {
            self.pending.borrow_mut().remove(&corr);
            return Err(OpError::new(ErrorCode::ServiceUnavailable, format!("shard {to} is not reachable")));
        }
        answer.await.map_err(|_| OpError::new(ErrorCode::ServiceUnavailable, format!("shard {to} dropped the request")))
    }

    /// Sends an answer back to the shard that called.
    pub async fn answer(&self, to: usize, corr: u64, answer: Answer) {
        // A failed send means that shard is gone (shutting down); nobody waits for this answer.
        let _ = self.senders.send_to(to, ShardMessage::Answer { corr, answer }).await;
    }

    /// Fire-and-forget notices (watch, wake); dropped only if the peer is gone.
    pub async fn notify(&self, to: usize, message: ShardMessage) {
        let _ = self.senders.send_to(to, message).await;
    }

    /// Resolves a pending call with the answer that came back.
    pub fn resolve(&self, corr: u64, answer: Answer) {
        if let Some(reply) = self.pending.borrow_mut().remove(&corr) {
            let _ = reply.send(answer);
        }
    }
}
