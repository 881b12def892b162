//! `sluiced`, the Sluice daemon: thread-per-core, shared-nothing, on io_uring.
//!
//! From the top down (each module imports only those below it; `tests/layers.rs` checks):
//!
//! - `serve`: one shard's life with its front ends — the shard opens, the listeners serve, the shard finishes.
//! - `net`: the binary-protocol listener and connections. `gateway`: the AWS-compatible HTTP front end (SQS, SNS, Kinesis wire protocols).
//! - `shard`: the one module that knows every engine — a core's `Shard` (each engine's state), how it opens and finishes, the
//!   dispatch of client operations and cross-shard calls to engines, metadata changes across engines, and the host traits' implementations.
//! - Engines, each a folder of its own with its state, its operations (written against its host trait) and its cross-shard calls:
//!   `topic` (SNS standard topics: fan-out to queues, HTTP delivery; uses `queue`), `queue` (SQS standard queues: partitions,
//!   long polls, the queue log and its compaction), `stream` (Kinesis-style streams: shards pinned to cores, iterators, push consumers).
//! - `engine`: what every engine gets from the shard it runs in (`Host`).
//! - `catalog`: the metadata — queues, topics and subscriptions, streams — its snapshots and changes; no engine's logic.
//! - `kms`: the key service — the root key, KMS keys and aliases, KMS ciphertexts, and the sealing of engine records at rest.
//! - `runtime`: one pinned executor per core, the channel mesh, a bus and typed calls generic over what they carry, shutdown.
//! - `storage`: the segment log, the stream log and the metadata file — what no engine owns.
//! - `env`: time, timers, tasks, files and shard-local notify — glommio in production, the simulator's world in tests.
//! - `cluster`: several nodes on one catalog — the metadata Raft group (openraft), its state machine and the transport between nodes.
//! - `sim`: the deterministic simulator (`sluice-sim`). `config`: flags and their `SLUICE_…` environment variables.

pub mod access;
pub mod audit;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod credentials;
pub mod engine;
pub mod env;
pub mod firehose;
pub mod gateway;
pub mod kms;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod queue;
pub mod runtime;
pub mod seal;
pub mod serve;
pub mod shard;
pub mod sim;
pub mod sns_signing;
pub mod storage;
pub mod stream;
pub mod tls;
pub mod topic;
