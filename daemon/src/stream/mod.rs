//! Kinesis-style streams: the records of each stream shard, on the core that owns it.
//!
//! A stream and its shards are metadata (`catalog::streams`, which also says how keys
//! route and how sequence numbers are made). Each stream shard is owned by one core
//! (`ShardMeta::core`) and kept in a log of its own on that core (`store`, over
//! `storage::stream::StreamLog`); only the owner appends to it or reads it.
//! `iterator` is what a shard iterator carries; `service` runs the Kinesis operations
//! against `StreamHost`; `calls` are what a core asks of a stream shard's owner.

pub mod calls;
pub mod iterator;
pub mod scaling;
pub mod service;
pub mod store;

use std::rc::Rc;

use sluice_protocol::OpError;

use crate::engine::Host;
use crate::runtime::calls::Request;
use calls::{StreamAnswer, StreamCall};
use store::StreamStore;

/// What the stream engine needs from the shard it runs in, besides what every engine gets:
/// its state, and calls to the cores that own other stream shards.
// Shard-local futures, never sent between threads: no `Send` bound is wanted.
#[allow(async_fn_in_trait)]
pub trait StreamHost: Host {
    fn streams(&self) -> &StreamStore;
    /// Runs a stream call on shard `shard`: here when this is that shard, else over the bus.
    async fn call_stream(self: &Rc<Self>, shard: usize, call: StreamCall) -> Result<StreamAnswer, OpError>;
}

/// Runs `request` on shard `shard` and returns its reply, typed by the request.
pub async fn call_on<H: StreamHost, R: Request<Answer = StreamAnswer> + Into<StreamCall>>(
    host: &Rc<H>,
    shard: usize,
    request: R,
) -> Result<R::Reply, OpError> {
    R::reply(host.call_stream(shard, request.into()).await?)
}
