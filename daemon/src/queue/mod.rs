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

pub mod compaction;
pub mod journal;
pub mod partition;
pub mod receipt;
pub mod service;
pub mod store;
pub mod validate;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::catalog::Snapshot;
use crate::env::notify::LocalNotify;
use partition::Partition;

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

/// This shard's queue state.
#[derive(Default)]
pub struct QueueState {
    pub snapshot: RefCell<Arc<Snapshot>>,
    pub partitions: RefCell<HashMap<u64, Partition>>,
    pub waiters: RefCell<HashMap<u64, Waiters>>,
    /// Notified when a long poll starts waiting here (locally or for another shard),
    /// so the timer task leaves its idle pace.
    pub waiter_added: LocalNotify,
    /// Queues whose next payloads kept only in the log the loader should read back.
    pub load_wanted: RefCell<Vec<u64>>,
    pub load_requested: LocalNotify,
    /// Notified after each read-back (receives that stopped at such payloads wait on it).
    pub payloads_loaded: LocalNotify,
    /// The last read-back failure per queue, until one succeeds.
    pub load_failed: RefCell<HashMap<u64, sluice_protocol::OpError>>,
    /// Notified whenever a newer snapshot is installed.
    pub installed: LocalNotify,
}

impl QueueState {
    /// Installs a newer snapshot; returns the partitions of queues that no longer exist.
    pub fn install(&self, snapshot: Arc<Snapshot>) -> Vec<Partition> {
        if snapshot.version <= self.snapshot.borrow().version {
            return Vec::new();
        }
        let gone: Vec<u64> = self.partitions.borrow().keys().filter(|id| !snapshot.by_id.contains_key(id)).copied().collect();
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
        *self.snapshot.borrow_mut() = snapshot;
        self.installed.notify_all();
        dropped
    }

    /// Waits (at most `timeout`, on `env`'s clock) until a snapshot newer than `version` is installed.
    pub async fn wait_newer(&self, env: &crate::env::Env, version: u64, timeout: std::time::Duration) {
        let deadline = env.monotonic() + timeout;
        while self.snapshot.borrow().version <= version {
            let installed = self.installed.listen();
            let left = deadline.saturating_sub(env.monotonic());
            if left.is_zero() {
                return;
            }
            let timer = env.sleep(left);
            futures::pin_mut!(installed, timer);
            futures::future::select(installed, timer).await;
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
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
