//! What travels between shards: each engine's calls and answers (declared in the engine's
//! own `calls`), the catalog's, and the notices — the bus that carries them
//! (`runtime::bus`) knows no engine.

use std::sync::Arc;

use sluice_protocol::OpError;

use crate::catalog::{MetaChange, MetaOutcome, Snapshot};
use crate::queue::calls::{QueueAnswer, QueueCall, QueueNotice};
use crate::stream::calls::{StreamAnswer, StreamCall};
use crate::topic::calls::{TopicAnswer, TopicCall};

#[derive(Debug)]
pub enum Call {
    Queue(QueueCall),
    Topic(TopicCall),
    Stream(StreamCall),
    /// A metadata change, for shard 0.
    Meta(MetaChange),
    /// Install a new metadata snapshot.
    Publish(Arc<Snapshot>),
    /// This shard's part of a scrape (`metrics`).
    Metrics,
    /// A monitoring operation, for shard 0 (`monitor`).
    Monitor(Box<sluice_protocol::Op>),
}

#[derive(Debug)]
pub enum Answer {
    Queue(QueueAnswer),
    Topic(TopicAnswer),
    Stream(StreamAnswer),
    Meta(Result<MetaOutcome, OpError>),
    Publish,
    Metrics(Box<crate::metrics::Report>),
    Monitor(sluice_protocol::Response),
}

/// One-way messages between shards.
#[derive(Debug)]
pub enum Notice {
    Queue(QueueNotice),
}

/// This shard's end of the mesh, carrying the calls, answers and notices above.
pub type Bus = crate::runtime::bus::Bus<Call, Answer, Notice>;
/// What travels on the mesh.
pub type ShardMessage = crate::runtime::bus::Envelope<Call, Answer, Notice>;
