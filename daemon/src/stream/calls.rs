//! What one shard asks of the core that owns a stream shard.

use sluice_protocol::OpError;

use super::service::{Lease, PutItem, PutOutcome, ReadOutcome, ReadRequest, Seek};
use super::store::Load;
use crate::runtime::calls::calls;

calls! { StreamCall, StreamAnswer;
    /// Append records to stream shards this shard owns: one outcome per item.
    StreamPut => Vec<PutOutcome>,
    /// Read a stream shard this shard owns.
    StreamRead => Result<ReadOutcome, OpError>,
    /// Take or give back a push-subscription lease on a stream shard this shard owns.
    StreamLease => Result<u64, OpError>,
    /// Find a position in (or seal) a stream shard this shard owns.
    StreamSeek => Result<u64, OpError>,
    /// What stream shards this shard owns took since last asked (an ON_DEMAND stream's scaler).
    StreamLoad => Vec<Load>,
}

/// (stream id, shard) of each shard asked about.
#[derive(Debug)]
pub struct StreamLoad(pub Vec<(u64, u32)>);

#[derive(Debug)]
pub struct StreamPut {
    pub stream_id: u64,
    pub items: Vec<PutItem>,
}

#[derive(Debug)]
pub struct StreamRead(pub ReadRequest);

#[derive(Debug)]
pub struct StreamLease(pub Lease);

#[derive(Debug)]
pub struct StreamSeek {
    pub stream_id: u64,
    pub shard: u32,
    pub seek: Seek,
}
