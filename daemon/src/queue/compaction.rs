//! Queue compaction, on each shard: when the oldest segments of the shard's queue log hold at
//! most half live data, their live messages are written again at the end of the log (as
//! `Restored` records; those kept only in the log are read back a run at a time and stay
//! out of memory) and the segments are deleted. The logs stay within about twice the live
//! data, and so does restart time.

use std::rc::Rc;
use std::time::Duration;

use super::partition::Partition;
use super::QueueHost;
use crate::storage::log::Log;
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
    let mut written = Vec::new();
    let result = compact(host, &mut written).await;
    if result.is_err() {
        // A pass cut short may have had copies lost: the next one must not delete their originals.
        check_copies(host.queues().storage.log(), &written)?;
    }
    result
}

/// Commits the copies compaction journaled in `partition`, noting the sequence numbers they took.
fn commit_copies<H: QueueHost>(host: &Rc<H>, partition: &mut Partition, written: &mut Vec<(u64, u64)>) -> anyhow::Result<Option<Ticket>> {
    let storage = &host.queues().storage;
    let start = storage.log().next_seq();
    let committed = storage.commit(partition);
    let end = match &committed {
        Ok(Some(ticket)) => ticket.0,
        Ok(None) => return Ok(None),
        // Some may have been staged before the failure.
        Err(_) => storage.log().next_seq().saturating_sub(1),
    };
    if end >= start {
        written.push((start, end));
    }
    committed.map_err(|e| anyhow::anyhow!(e.message))
}

/// A copy lost to a flush that could not make its segment (the records staged for it are
/// dropped, and compaction waits only for the last record of each step) leaves its message
/// placed at a record that is not there, its original already released: deleting the old
/// segments would lose the message. The log stops instead (a restart replays what is on disk,
/// originals included).
fn check_copies(log: &Log, written: &[(u64, u64)]) -> anyhow::Result<()> {
    if log.lost_any(written) {
        log.fail("copies compaction wrote were lost to a failed flush".to_owned());
        anyhow::bail!("copies compaction wrote were lost to a failed flush; the log stops before their originals go");
    }
    Ok(())
}

async fn compact<H: QueueHost>(host: &Rc<H>, written: &mut Vec<(u64, u64)>) -> anyhow::Result<usize> {
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
                    commit_copies(host, partition, written)?
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
                        commit_copies(host, partition, written)?
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
                    commit_copies(host, partition, written)?
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
    check_copies(&log, written)?;
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
