//! Queue compaction, on each shard: when the oldest segments of the shard's queue log hold at
//! most half live data, their live messages are written again at the end of the log (as
//! `Restored` records; those kept only in the log are read back a run at a time and stay
//! out of memory) and the segments are deleted. The logs stay within about twice the live
//! data, and so does restart time.

use std::rc::Rc;
use std::time::Duration;

use super::QueueHost;

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
                    host.queues().storage.commit(partition).map_err(|e| anyhow::anyhow!(e.message))?
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
                        host.queues().storage.commit(partition).map_err(|e| anyhow::anyhow!(e.message))?
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
                    host.queues().storage.commit(partition).map_err(|e| anyhow::anyhow!(e.message))?
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
    Ok(removed)
}
