//! Kinesis-style streams: the records of each stream shard, on the core that owns it.
//!
//! A stream and its shards are metadata (`catalog::streams`, which also says how keys
//! route and how sequence numbers are made). Each stream shard is owned by one core
//! (`ShardMeta::core`) and kept in a log of its own on that core (`store`, over
//! `storage::stream::StreamLog`); only the owner appends to it or reads it.
//! `iterator` is what a shard iterator carries; `service` runs the Kinesis operations.

pub mod iterator;
pub mod service;
pub mod store;
