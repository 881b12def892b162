//! Which subscriptions read their topic's feed (the queue engine's `queue::feed`), and the
//! ids feeds and their cursors are known by in the log: derived from ARNs with a stable hash,
//! so every shard and every start agrees on them.

use std::sync::Arc;

use super::topics::SubscriptionMeta;
use super::QueueMeta;

/// Feed ids have this bit set; queue ids (small counters) never do.
pub const FEED_BIT: u64 = 1 << 63;

/// Whether `id` names a topic's feed rather than a queue.
pub fn is_feed_id(id: u64) -> bool {
    id & FEED_BIT != 0
}

/// FNV-1a: a stable 64-bit hash (ids kept in the log must not change between builds).
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The feed of the topic with ARN `topic_arn`.
pub fn feed_id(topic_arn: &str) -> u64 {
    fnv(topic_arn) | FEED_BIT
}

/// The cursor of the subscription with ARN `subscription_arn` (new for every subscription,
/// as its ARN is).
pub fn cursor_key(subscription_arn: &str) -> u64 {
    fnv(subscription_arn)
}

/// The feed of the envelopes (`topic::envelope`) of the topic with ARN `topic_arn`, which its
/// subscriptions without raw delivery read. (A topic ARN holds no `#`.)
pub fn envelope_feed_id(topic_arn: &str) -> u64 {
    fnv(&format!("{topic_arn}#envelope")) | FEED_BIT
}

/// The partition that holds FIFO topic `topic_arn`'s deduplication window on its owner shard
/// (`topic::fifo`): an id with the feed bit, so the queue log keeps it as it keeps feeds.
pub fn topic_window_id(topic_arn: &str) -> u64 {
    fnv(&format!("{topic_arn}#window")) | FEED_BIT
}

/// Whether a subscription reads its topic's feed rather than being handed each message: an
/// SQS subscription of a standard topic, confirmed, with no filter policy (raw or not: each
/// kind has its feed). A FIFO topic's messages go to each queue in order (`topic::fifo`).
pub fn reads_feed(subscription: &SubscriptionMeta) -> bool {
    subscription.protocol == "sqs"
        && subscription.filter.is_none()
        && subscription.pending_token.is_none()
        && !super::topics::is_fifo_name(&subscription.topic_arn)
}

/// The field an envelope's subscription-specific part follows: the feed of envelopes holds
/// each envelope without it (the rest is the same for every subscription), and a reader puts
/// it back (`complete_envelope`). Inside the envelope everything else is a JSON string or
/// comes after this field, so its first occurrence is this one.
pub const UNSUBSCRIBE_FIELD: &[u8] = b",\"UnsubscribeURL\":";

/// What a subscription's unsubscribe URL starts with, on a server reached at `public_url`.
pub fn unsubscribe_base(public_url: &str) -> String {
    format!("{}/?Action=Unsubscribe&SubscriptionArn=", public_url.trim_end_matches('/'))
}

/// The envelope subscription `subscription_arn` receives, from one without its unsubscribe URL
/// (`UNSUBSCRIBE_FIELD` with no value); `None` if `shared` has no such field.
pub fn complete_envelope(shared: &[u8], unsubscribe_base: &str, subscription_arn: &str) -> Option<bytes::Bytes> {
    use bytes::BufMut;
    let at = shared.windows(UNSUBSCRIBE_FIELD.len()).position(|window| window == UNSUBSCRIBE_FIELD)? + UNSUBSCRIBE_FIELD.len();
    let mut body = bytes::BytesMut::with_capacity(shared.len() + unsubscribe_base.len() + subscription_arn.len() + 2);
    body.put_slice(&shared[..at]);
    body.put_u8(b'"');
    // ARNs and the base URL hold nothing JSON escapes.
    body.put_slice(unsubscribe_base.as_bytes());
    body.put_slice(subscription_arn.as_bytes());
    body.put_u8(b'"');
    body.put_slice(&shared[at..]);
    Some(body.freeze())
}

/// How a topic's messages reach its subscriptions: the queues that read the topic's feed
/// (one copy per shard, read through a cursor each), and the rest, delivered one by one.
#[derive(Debug, Default)]
pub struct FeedPlan {
    /// The feed raw subscriptions read, and the feed of envelopes the others read.
    pub feed_id: u64,
    pub envelope_feed_id: u64,
    pub readers: Vec<FeedReader>,
    pub raw_readers: usize,
    pub envelope_readers: usize,
    /// Indexes (in `TopicMeta::subscriptions`) of the subscriptions delivered to one by one.
    pub others: Vec<usize>,
    /// The smallest MaximumMessageSize among the raw readers' queues: a larger message goes to
    /// them one by one (where it is undeliverable to some).
    pub max_size_min: usize,
    /// The smallest MaximumMessageSize less the subscription ARN's length among the envelope
    /// readers' queues: an envelope whose shared part is larger goes to them one by one.
    pub envelope_room_min: usize,
    /// Whether a subscription's filter policy looks at the message body (the body is parsed
    /// as JSON once per publish only then).
    pub body_filters: bool,
}

/// A feed one queue reads, through one cursor.
#[derive(Debug, Clone)]
pub struct FeedRead {
    pub key: u64,
    pub feed_id: u64,
    /// The subscription's ARN when it reads envelopes (its unsubscribe URL).
    pub arn: Option<Arc<str>>,
}

/// A subscription that reads its topic's feed.
#[derive(Debug, Clone)]
pub struct FeedReader {
    /// Index in `TopicMeta::subscriptions`.
    pub index: usize,
    pub key: u64,
    pub queue: Arc<QueueMeta>,
    /// Whether it reads the feed of envelopes (raw delivery off).
    pub envelope: bool,
    pub arn: Arc<str>,
}

impl FeedReader {
    /// The feed it reads.
    pub fn feed_id(&self, plan: &FeedPlan) -> u64 {
        if self.envelope {
            plan.envelope_feed_id
        } else {
            plan.feed_id
        }
    }
}
