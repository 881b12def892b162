//! SNS standard topics: publish once, every subscribed queue receives the message.
//!
//! A topic and its subscriptions are metadata (`catalog::topics`): they live in shard 0's
//! catalog, are saved with it, and reach every shard in the immutable `Snapshot`, with each
//! subscription's filter policy compiled once there. A publish runs entirely on the
//! shard that received it: it matches every subscription against the message and
//! appends one message to this shard's partition of each matching queue (standard
//! queues are partitioned on every shard, so no queue is out of reach and no hop is
//! needed), then answers once the shard's log has made all of them durable, in one
//! group commit.

pub mod envelope;
pub mod http;
pub mod service;
