//! Queue compaction, on each shard: when the oldest segments of the shard's queue log hold at
//! most half live data, their live messages are written again at the end of the log (as
//! `Restored` records; those kept only in the log are read back a run at a time and stay
//! out of memory) and the segments are deleted. The logs stay within about twice the live
//! data, and so does restart time.

use std::rc::Rc;
use std::time::Duration;

use super::partition::Partition;
use super::store::Superseded;
use super::QueueHost;
use crate::storage::Ticket;

/// How often each shard looks for log segments to compact.
const COMPACTION_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Partition slots looked at between yields while compacting.
const COMPACTION_STEP: usize = 4096;
/// Messages kept only in the log that compaction reads back at a time.
const COMPACTION_LOAD_RUN: usize = 64;

/// Background compaction: when old segments hold little live data, writes their live
/// messages again (as `Restored` records, at the end of the log) and deletes them.
pub async fn run<H: QueueHost>(host: Rc<H>) {
    loop {
        host.env().sleep(COMPACTION_CHECK_EVERY).await;
        if host.shutdown().requested.get() {
            return;
        }
        if let Err(error) = compact_once(&host).await {
            tracing::warn!(shard = host.id(), %error, "compaction failed; will retry");
        }
    }
}

/// One compaction pass. Returns the number of segments deleted.
pub async fn compact_once<H: QueueHost>(host: &Rc<H>) -> anyhow::Result<usize> {
    let mut superseded = Vec::new();
    let result = compact(host, &mut superseded).await;
    // A pass cut short: copies not known written are as if never made.
    settle(host, &mut superseded);
    result
}

/// Commits the copies compaction journaled in `partition`; the records they supersede stay
/// held, listed in `superseded`, until `settle`.
fn commit_copies<H: QueueHost>(
    host: &Rc<H>,
    partition: &mut Partition,
    superseded: &mut Vec<Superseded>,
) -> anyhow::Result<Option<Ticket>> {
    host.queues().storage.commit_copies(partition, superseded).map_err(|e| anyhow::anyhow!(e.message))
}

/// Releases the originals of the copies that were written. A copy can be lost after its
/// message was placed at it (the log drops what was staged for a segment it cannot make, as
/// on a full disk, and compaction waits only for the last record of each step): its message
/// is placed at the original again, which stays, and a later pass copies it anew. Deleting the
/// original instead would lose the message.
fn settle<H: QueueHost>(host: &Rc<H>, superseded: &mut Vec<Superseded>) {
    let storage = &host.queues().storage;
    let mut partitions = host.queues().partitions.borrow_mut();
    for each in superseded.drain(..) {
        storage.settle(partitions.get_mut(&each.queue_id), each);
    }
}

async fn compact<H: QueueHost>(host: &Rc<H>, superseded: &mut Vec<Superseded>) -> anyhow::Result<usize> {
    let log = host.queues().storage.log().clone();
    let Some((cutoff, live)) = log.compaction_cutoff() else { return Ok(0) };
    if live > 0 {
        let queue_ids: Vec<u64> = host.queues().partitions.borrow().keys().copied().collect();
        for queue_id in queue_ids {
            let mut cursor = Some(0);
            let mut to_load = Vec::new();
            while let Some(from) = cursor {
                let appended = {
                    let mut partitions = host.queues().partitions.borrow_mut();
                    let Some(partition) = partitions.get_mut(&queue_id) else { break };
                    cursor = partition.relocate(from, cutoff, COMPACTION_STEP, &mut to_load);
                    commit_copies(host, partition, superseded)?
                };
                // Paced to the disk: what is staged stays small, and requests go first.
                if let Some(ticket) = appended {
                    log.written(ticket.0).await?;
                }
                // Messages kept only in the log are read back a run at a time, re-logged, and
                // stay out of memory.
                for run in to_load.chunks(COMPACTION_LOAD_RUN) {
                    let loaded = host.queues().storage.load(queue_id, run).await;
                    let appended = {
                        let mut partitions = host.queues().partitions.borrow_mut();
                        let Some(partition) = partitions.get_mut(&queue_id) else { break };
                        for ((seq, placement), payload) in run.iter().zip(loaded) {
                            let (message_id, payload) = payload.map_err(|e| anyhow::anyhow!(e.message))?;
                            partition.relocate_loaded(*seq, placement.log_seq, message_id, payload);
                        }
                        commit_copies(host, partition, superseded)?
                    };
                    if let Some(ticket) = appended {
                        log.written(ticket.0).await?;
                    }
                }
                to_load.clear();
                host.env().yield_if_needed().await;
            }
            // A FIFO queue's deduplication ids kept for their window, a step at a time too.
            let mut position = Some(0);
            while let Some(from) = position {
                let appended = {
                    let mut partitions = host.queues().partitions.borrow_mut();
                    let Some(partition) = partitions.get_mut(&queue_id) else { break };
                    position = partition.relocate_dedup(cutoff, from, COMPACTION_STEP);
                    commit_copies(host, partition, superseded)?
                };
                if let Some(ticket) = appended {
                    log.written(ticket.0).await?;
                }
                host.env().yield_if_needed().await;
            }
        }
    }
    // Whatever superseded the records about to go — the copies just written, and records an
    // earlier pass or a request wrote — must be on the disk first, even when nothing had to
    // be copied now: a copy staged by a pass that failed with the log is not there at all,
    // and its original is the only one left. (Syncing a failed log fails, and nothing goes.)
    host.queues().storage.sync_all().await?;
    settle(host, superseded);
    // Nothing is deleted that accounting says is still needed.
    let still = log.live_bytes_before(cutoff);
    if still > 0 {
        anyhow::bail!("{still} live bytes remain below sequence {cutoff} after relocation");
    }
    let removed = log.remove_segments_before(cutoff).await?;
    if removed > 0 {
        log.retry_spare();
    }
    tracing::debug!(shard = host.id(), cutoff, relocated_bytes = live, removed, "compacted");
    host.metrics().compacted(live, removed as u64);
    Ok(removed)
}
