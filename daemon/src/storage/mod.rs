//! The storage seam: every change to queue state is appended here, and a
//! request is answered only once `durable` says its changes are kept.
//!
//! This version keeps queue state in memory only (queue partitions hold the
//! messages) and so `Storage` is durable at once. `log` is the group-committed,
//! CRC-checked segment log on io_uring DMA files that will back it (and stream
//! shards); it is complete and tested on its own but not yet wired in: the
//! engines above the seam already append every change and await durability,
//! so wiring it changes what happens inside `Storage`, not above it.

pub mod log;
pub mod record;

use sluice_protocol::OpError;

/// A change to queue state, as the log will record it.
#[derive(Debug, Clone, Copy)]
pub enum QueueRecord<'a> {
    Sent { queue_id: u64, seq: u64, body: &'a [u8], delay_ms: u64 },
    Received { queue_id: u64, seq: u64, receive_count: u32, deadline_ms: u64 },
    VisibilityChanged { queue_id: u64, seq: u64, deadline_ms: u64 },
    Deleted { queue_id: u64, seq: u64 },
    MovedOut { queue_id: u64, seq: u64, to_queue_id: u64 },
    Purged { queue_id: u64 },
}

/// Position of an appended record; durable once `durable` has returned for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// One shard's storage. Never shared between shards.
#[derive(Debug, Default)]
pub struct Storage {
    appended: std::cell::Cell<u64>,
}

impl Storage {
    pub fn in_memory() -> Storage {
        Storage::default()
    }

    /// Records a change; returns the ticket to await before acknowledging it.
    pub fn append(&self, _record: QueueRecord<'_>) -> Ticket {
        let next = self.appended.get() + 1;
        self.appended.set(next);
        Ticket(next)
    }

    /// Waits until every record up to `ticket` is durable.
    pub async fn durable(&self, _ticket: Ticket) -> Result<(), OpError> {
        Ok(())
    }
}
