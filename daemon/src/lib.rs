//! `sluiced`, the Sluice daemon: thread-per-core, shared-nothing, on io_uring.
//!
//! - `runtime`: one pinned executor per core, the channel mesh and a bus generic over what it carries, shard-local notify, shutdown. Knows no engine.
//! - `shard`: the one module that knows every engine — a core's `Shard`, its main, the pump that hands calls to engines, the calls, answers and notices between shards.
//! - `serve`: one shard's life with its front ends — the shard opens, the listeners serve, the shard finishes.
//! - `net`: the binary-protocol listener and connections.
//! - `gateway`: the AWS-compatible HTTP front end (SQS, SNS, Kinesis wire protocols).
//! - `queue`: SQS standard queues — metadata, partitions, the operations.
//! - `topic`: SNS standard topics — subscriptions, filter policies, fan-out to queues.
//! - `stream`: Kinesis-style streams — shards pinned to cores, routing, iterators, resharding, push consumers.
//! - `storage`: the seam through which every state change is made durable.
//! - `env`: time, timers, tasks and files — glommio in production, the simulator's world in tests.
//! - `sim`: the deterministic simulator (storage under crashes, power losses and disk faults; `sluice-sim`).
//! - `config`: flags and their `SLUICE_…` environment variables.

pub mod catalog;
pub mod config;
pub mod env;
pub mod gateway;
pub mod net;
pub mod queue;
pub mod runtime;
pub mod serve;
pub mod shard;
pub mod sim;
pub mod storage;
pub mod stream;
pub mod topic;
