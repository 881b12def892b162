//! SNS topics: publish once, every subscribed queue receives the message. (FIFO topics,
//! numbered, deduplicated and delivered in order on their owner shard: `fifo`.)
//!
//! A topic and its subscriptions are metadata (`catalog::topics`): they live in shard 0's
//! catalog, are saved with it, and reach every shard in the immutable `Snapshot`, with each
//! subscription's filter policy compiled once there. A publish runs entirely on the
//! shard that received it: it matches every subscription against the message and
//! appends one message to this shard's partition of each matching queue (standard
//! queues are partitioned on every shard, so no queue is out of reach and no hop is
//! needed), then answers once the shard's log has made all of them durable, in one
//! group commit.

pub mod calls;
pub mod envelope;
pub mod fifo;
pub mod http;
pub mod service;

use std::rc::Rc;
use std::sync::Arc;

use futures_rustls::rustls::ClientConfig;
use sluice_protocol::OpError;

use crate::env::notify::LocalNotify;
use crate::queue::QueueHost;
use crate::runtime::calls::Request;
use calls::{TopicAnswer, TopicCall};

/// This shard's topic state (topics and subscriptions themselves are metadata).
pub struct Topics {
    /// Notified when an HTTP delivery is queued on this shard (or is due again at once).
    pub http_wake: LocalNotify,
    /// TLS settings for `https` subscription endpoints (immutable).
    pub tls: Arc<ClientConfig>,
    /// The publishes to FIFO topics this shard owns that are still being delivered.
    pub fifo: fifo::Pending,
}

impl Topics {
    pub fn new(tls: Arc<ClientConfig>) -> Topics {
        Topics { http_wake: LocalNotify::default(), tls, fifo: fifo::Pending::default() }
    }
}

/// What the topic engine needs from the shard it runs in: the queue engine (a publish
/// appends to subscribed queues' partitions here) and its own state.
// Shard-local futures, never sent between threads: no `Send` bound is wanted.
#[allow(async_fn_in_trait)]
pub trait TopicHost: QueueHost {
    fn topics(&self) -> &Topics;
    /// Runs `call` on shard `shard`'s topic engine (this one's, if it is this shard).
    async fn call_topic(self: &Rc<Self>, shard: usize, call: TopicCall) -> Result<TopicAnswer, OpError>;
    /// Puts `record` into delivery stream `name` on this shard (a `firehose` subscription's
    /// delivery); answers once it is durable there.
    async fn put_firehose(self: &Rc<Self>, name: &str, record: bytes::Bytes) -> Result<(), OpError>;
}

/// Calls shard `shard` with `request` and returns its reply.
pub async fn call_on<H: TopicHost, R: Request<Answer = TopicAnswer> + Into<TopicCall>>(
    host: &Rc<H>,
    shard: usize,
    request: R,
) -> Result<R::Reply, OpError> {
    R::reply(host.call_topic(shard, request.into()).await?)
}
