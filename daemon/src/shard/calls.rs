//! What shards ask of each other: every engine's cross-shard calls, their answers, and
//! the notices, in one place — the bus that carries them (`runtime::bus`) knows no engine.

use std::sync::Arc;

use sluice_protocol::{ErrorCode, OpError};

use crate::catalog::{MetaChange, MetaOutcome, Snapshot};
use crate::queue::partition::{Counts, Delivery};
use crate::queue::{MessageRef, VisibilityChange};
use crate::stream::service::{Lease, PutItem, PutOutcome, ReadOutcome, ReadRequest, Seek};

/// A cross-shard call whose reply type is fixed by the call: `Shard::call_on` returns
/// `Reply`, so a wrong answer cannot reach a caller (a mismatch could only come from a
/// peer of another version, and is an error here, in one place).
pub trait Request: Into<Call> {
    type Reply;
    fn reply(answer: Answer) -> Result<Self::Reply, OpError>;
}

/// Declares each call with its reply: the request structs' `Call` and `Answer` variants
/// (named alike) and their `Request` impls.
macro_rules! calls {
    ($($(#[doc = $doc:expr])* $name:ident => $reply:ty,)*) => {
        #[derive(Debug)]
        pub enum Call {
            $($(#[doc = $doc])* $name($name),)*
        }

        #[derive(Debug)]
        pub enum Answer {
            $($name($reply),)*
        }

        $(
            impl From<$name> for Call {
                fn from(request: $name) -> Call {
                    Call::$name(request)
                }
            }

            impl Request for $name {
                type Reply = $reply;
                fn reply(answer: Answer) -> Result<$reply, OpError> {
                    match answer {
                        Answer::$name(reply) => Ok(reply),
                        other => Err(OpError::new(
                            ErrorCode::InternalFailure,
                            format!("another shard answered {} with {other:?}", stringify!($name)),
                        )),
                    }
                }
            }
        )*
    };
}

calls! {
    /// Receive from this shard's partition of a queue.
    Receive => Result<Vec<Delivery>, OpError>,
    /// The message counts of this shard's partition of a queue.
    CountMessages => Counts,
    /// Purge this shard's partition of a queue.
    Purge => Result<(), OpError>,
    /// Delete messages of this shard's partition (kept once the reply is `Ok`).
    Delete => Result<(), OpError>,
    /// Change the visibility of messages of this shard's partition: one outcome per entry.
    ChangeVisibility => Vec<Result<(), OpError>>,
    /// Install a new metadata snapshot.
    Publish => (),
    /// A metadata change, for shard 0.
    Meta => Result<MetaOutcome, OpError>,
    /// Append records to stream shards this shard owns: one outcome per item.
    StreamPut => Vec<PutOutcome>,
    /// Read a stream shard this shard owns.
    StreamRead => Result<ReadOutcome, OpError>,
    /// Take or give back a push-subscription lease on a stream shard this shard owns.
    StreamLease => Result<u64, OpError>,
    /// Find a position in (or seal) a stream shard this shard owns.
    StreamSeek => Result<u64, OpError>,
}

#[derive(Debug, Clone)]
pub struct Receive {
    pub queue_id: u64,
    pub max_messages: usize,
    pub visibility_ms: u64,
}

#[derive(Debug, Clone)]
pub struct CountMessages {
    pub queue_id: u64,
}

#[derive(Debug, Clone)]
pub struct Purge {
    pub queue_id: u64,
}

#[derive(Debug, Clone)]
pub struct Delete {
    pub queue_id: u64,
    pub messages: Vec<MessageRef>,
}

#[derive(Debug, Clone)]
pub struct ChangeVisibility {
    pub queue_id: u64,
    pub entries: Vec<VisibilityChange>,
}

#[derive(Debug, Clone)]
pub struct Publish(pub Arc<Snapshot>);

#[derive(Debug)]
pub struct Meta(pub MetaChange);

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

/// One-way messages between shards: long-poll interest in a queue and its wake-up.
#[derive(Debug)]
pub enum Notice {
    /// Shard `from` has a long poll waiting on `queue_id`: wake it once a message is visible here.
    Watch { queue_id: u64, from: usize },
    /// A message of `queue_id` became visible on the sending shard.
    Wake { queue_id: u64 },
}

/// This shard's end of the mesh, carrying the calls, answers and notices above.
pub type Bus = crate::runtime::bus::Bus<Call, Answer, Notice>;
/// What travels on the mesh.
pub type ShardMessage = crate::runtime::bus::Envelope<Call, Answer, Notice>;
