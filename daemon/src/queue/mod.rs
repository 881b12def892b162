//! Standard SQS queues, partitioned across shards.
//!
//! Every queue has one `Partition` on every shard, created on first use. A send
//! lands in the partition of the shard that received it (no hop); a receive
//! drains the local partition first and then asks the other shards; a delete or
//! visibility change goes to the shard its receipt handle names. Metadata comes
//! from the shard's current `Snapshot`, never from shared mutable state.
//!
//! Payloads kept only in the log (past the memory budget): a receive that reaches one
//! asks this shard's loader task to read the next run of them back, and waits for it;
//! receives that see such payloads coming up ask for them ahead of need. One loader per
//! shard means one read per run, however many receives wait.
//!
//! Long polls: a waiting receive registers interest locally (an `Event` per
//! queue) and on every other shard (`Watch`); a shard where a message of that
//! queue becomes visible notifies local waiters and sends `Wake` to watchers.

pub mod calls;
pub mod compaction;
pub mod fair;
pub mod feed;
pub mod fifo;
pub mod fifo_service;
pub mod journal;
pub mod partition;
pub mod receipt;
pub mod redrive;
pub mod service;
pub mod store;
pub mod validate;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use sluice_protocol::OpError;

use crate::catalog::Snapshot;
use crate::engine::Host;
use crate::env::notify::LocalNotify;
use crate::runtime::calls::Request;
use calls::{QueueAnswer, QueueCall, QueueNotice};
use partition::Partition;
use store::Storage;

/// A map by queue id. Its order depends on the ids alone (a fixed hash), so a simulated run
/// replays exactly; queue ids are the server's own, so no client can pick colliding keys.
pub type QueueMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<crate::env::notify::IdHasher>>;

/// A message a receipt handle names on its owning shard: (seq, message-id tag).
pub type MessageRef = (u64, u64);

/// One visibility change for the owning shard.
#[derive(Debug, Clone, Copy)]
pub struct VisibilityChange {
    pub message: MessageRef,
    /// Receive count of the handle.
    pub receive_count: u32,
    pub timeout_ms: u64,
}

/// Long-poll interest in one queue on this shard.
#[derive(Default)]
pub struct Waiters {
    /// Receives on this shard waiting for the queue.
    pub local: usize,
    pub event: Rc<LocalNotify>,
    /// Other shards that asked to be woken (one-shot: cleared when woken).
    pub remote: Vec<usize>,
}

/// What the queue engine needs from the shard it runs in, besides what every engine gets:
/// its state, and calls and notices to other shards' partitions.
// Shard-local futures, never sent between threads: no `Send` bound is wanted.
#[allow(async_fn_in_trait)]
pub trait QueueHost: Host {
    fn queues(&self) -> &Queues;
    /// Runs a queue call on shard `shard`: here when this is that shard, else over the bus.
    async fn call_queue(self: &Rc<Self>, shard: usize, call: QueueCall) -> Result<QueueAnswer, OpError>;
    /// Sends a notice to shard `peer` (never this one).
    async fn notify_queue(self: &Rc<Self>, peer: usize, notice: QueueNotice);
}

/// Runs `request` on shard `shard` and returns its reply, typed by the request.
pub async fn call_on<H: QueueHost, R: Request<Answer = QueueAnswer> + Into<QueueCall>>(
    host: &Rc<H>,
    shard: usize,
    request: R,
) -> Result<R::Reply, OpError> {
    R::reply(host.call_queue(shard, request.into()).await?)
}

/// This shard's queue state: its partition of every queue, the log they are kept in, and
/// the long polls waiting on them.
pub struct Queues {
    pub storage: Storage,
    pub partitions: RefCell<QueueMap<Partition>>,
    pub waiters: RefCell<QueueMap<Waiters>>,
    /// Notified when a long poll starts waiting here (locally or for another shard),
    /// so the timer task leaves its idle pace.
    pub waiter_added: LocalNotify,
    /// Queues whose next payloads kept only in the log the loader should read back.
    pub load_wanted: RefCell<Vec<u64>>,
    pub load_requested: LocalNotify,
    /// Notified after each read-back (receives that stopped at such payloads wait on it).
    pub payloads_loaded: LocalNotify,
    /// The last read-back failure per queue, until one succeeds.
    pub load_failed: RefCell<QueueMap<sluice_protocol::OpError>>,
}

impl Queues {
    /// The queue engine of a shard whose log has been opened (`storage`) and replayed (`partitions`).
    pub fn new(storage: Storage, partitions: QueueMap<Partition>) -> Queues {
        Queues {
            storage,
            partitions: RefCell::new(partitions),
            waiters: RefCell::default(),
            waiter_added: LocalNotify::default(),
            load_wanted: RefCell::default(),
            load_requested: LocalNotify::default(),
            payloads_loaded: LocalNotify::default(),
            load_failed: RefCell::default(),
        }
    }

    /// Takes a newly installed snapshot into account: returns the partitions of queues that
    /// no longer exist, and ends the long polls on them.
    pub fn installed(&self, snapshot: &Snapshot) -> Vec<Partition> {
        // Feeds stay: `feed::reconcile` empties those nobody reads.
        let gone: Vec<u64> =
            self.partitions.borrow().keys().filter(|id| !feed::is_feed_id(**id) && !snapshot.by_id.contains_key(id)).copied().collect();
        let dropped = {
            let mut partitions = self.partitions.borrow_mut();
            gone.iter().filter_map(|id| partitions.remove(id)).collect()
        };
        let mut waiters = self.waiters.borrow_mut();
        for (id, waiting) in waiters.iter() {
            if !snapshot.by_id.contains_key(id) {
                // Long polls on a deleted queue end now.
                waiting.event.notify_all();
            }
        }
        waiters.retain(|id, waiting| snapshot.by_id.contains_key(id) || waiting.local > 0);
        dropped
    }

    /// Asks the loader to read back the next payloads of `queue_id` kept only in the log.
    pub fn request_load(&self, queue_id: u64) {
        let mut wanted = self.load_wanted.borrow_mut();
        if !wanted.contains(&queue_id) {
            wanted.push(queue_id);
        }
        drop(wanted);
        self.load_requested.notify_all();
    }
}
