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

use std::sync::Arc;

use futures_rustls::rustls::ClientConfig;

use crate::env::notify::LocalNotify;
use crate::queue::QueueHost;

/// This shard's topic state (topics and subscriptions themselves are metadata).
pub struct Topics {
    /// Notified when an HTTP delivery is queued on this shard (or is due again at once).
    pub http_wake: LocalNotify,
    /// TLS settings for `https` subscription endpoints (immutable).
    pub tls: Arc<ClientConfig>,
}

/// What the topic engine needs from the shard it runs in: the queue engine (a publish
/// appends to subscribed queues' partitions here) and its own state.
pub trait TopicHost: QueueHost {
    fn topics(&self) -> &Topics;
}
