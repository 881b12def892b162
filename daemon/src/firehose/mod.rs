//! Firehose delivery streams: records put into a delivery stream are kept durably on the core
//! that took them (`store`), buffered by size and time, transformed by a function called as
//! Firehose calls Lambda (`transform`), partitioned, delimited and compressed (`process`), and
//! written as objects named as Firehose names them (`keys`) to their
//! destination by the delivery thread (`deliver`); `service` runs the Firehose operations and
//! each buffer's delivery loop against `FirehoseHost`.
//!
//! A put is answered once its records are durable in this core's buffer; a buffer's records
//! are marked delivered only once the destination has the object. So after any crash delivery
//! resumes from the last mark: at least once, never a silent drop.

pub mod convert;
pub mod deliver;
pub mod keys;
pub mod process;
pub mod search;
pub mod service;
pub mod source;
pub mod store;
pub mod table;
pub mod transform;

use std::rc::Rc;

use crate::engine::Host;
use store::FirehoseStore;

/// What the Firehose engine needs from the shard it runs in, besides what every engine gets.
// Shard-local futures, never sent between threads: no `Send` bound is wanted.
#[allow(async_fn_in_trait)]
pub trait FirehoseHost: Host {
    fn firehose(&self) -> &FirehoseStore;
    /// Hands a batch to its destination; resolves with the object's key, or why it failed.
    async fn deliver(&self, batch: deliver::Batch) -> deliver::Outcome;
    /// Runs a Kinesis operation on the stream engine (a `KinesisStreamAsSource` delivery
    /// stream reads its stream as a consumer group's worker does).
    async fn stream_op(self: &Rc<Self>, op: sluice_protocol::Op) -> sluice_protocol::Response;
}
