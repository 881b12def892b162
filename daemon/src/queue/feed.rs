//! Topic feeds: fan-out whose cost at publish does not grow with the number of subscribed
//! queues.
//!
//! A publish stores the message once per shard, in its topic's *feed* — a partition of its
//! own in the shard's queue log, under an id with the top bit set (`feed_id`) — and, when
//! subscriptions without raw delivery read it, its envelope once in the topic's feed of
//! envelopes (without the unsubscribe URL, the one part that differs per subscription). Each
//! queue that reads a feed (an SQS subscription with no filter policy; the rest are
//! delivered one by one, as before) keeps a *cursor* into it on every shard, as Kafka
//! consumer groups and Pulsar subscriptions do. A receive on the queue first *takes*
//! the next feed messages through the cursor into the queue's partition (a `Fed` record: a
//! full record like `Sent`, with its own message id, derived from the published one and the
//! subscription so that taking it again after a crash gives the same id); from there on it
//! is an ordinary message of that queue: visibility, receive counts, dead-letter queues,
//! delete. An envelope gets its subscription's unsubscribe URL and digest as it is taken. So a publish costs one record however many queues subscribe, and each queue
//! pays for what it receives.
//!
//! - SQS semantics of the subscribed queue: its DelaySeconds counts from the publish; its
//!   retention too (a feed message past it is passed over); a purge moves its cursors to the
//!   feed's end; counts include what the cursor has not taken yet (approximate, as SQS says).
//! - Durability: a publish is answered once its feed record is durable; a receive hands out a
//!   message it took only once the `Fed` record is durable (else a crash could forget the
//!   message while its receipt handle lives on, and a delete acknowledged for that handle would
//!   find nothing to delete, the message then coming back from the feed). A cursor is opened
//!   (a `Cursor` record) when the subscription appears, before any publish it must see, in
//!   the same log, so a kept publish implies a kept cursor. `Fed` records move the cursor on;
//!   losing the last few in a crash only means taking those messages again, with the same ids.
//!   Compaction writes a cursor again (`Partition::relocate`) before its record can go.
//! - A feed message goes (`Trimmed`) once every cursor on the shard has passed it, or its
//!   readers' longest retention has. A subscription that stops reading (unsubscribed, or given
//!   a filter policy) still takes what was published before (`Cursor::until`), then its
//!   cursor goes.
//! - Memory: feed payloads past the shard's budget live only in the log like any message's,
//!   and are read back by the shard's loader for the queue that needs them.

use std::rc::Rc;
use std::sync::Arc;

use sluice_protocol::OpError;

use super::partition::{FeedEntry, Partition, Payload, Placement};
use super::service::{notify_visible, Sends};
use super::{QueueHost, QueueMap};
use crate::catalog::{FeedPlan, QueueMeta, Snapshot};

pub use crate::catalog::feeds::{complete_envelope, cursor_key, feed_id, is_feed_id, reads_feed, unsubscribe_base};

/// Feed messages passed over (gone or past retention) per take, at most, before it stops
/// and journals where it got to.
const SKIP_MAX: usize = 4096;

/// The message id a queue's copy of feed message `published` has: fixed by the two, so a
/// message taken again after a crash keeps its id. A version-4 UUID like every message id.
pub fn copy_id(published: u128, key: u64) -> u128 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let high = mix((published >> 64) as u64 ^ key.rotate_left(17));
    let low = mix(published as u64 ^ mix(key ^ high));
    let raw = ((high as u128) << 64) | low as u128;
    uuid::Builder::from_random_bytes(raw.to_le_bytes()).into_uuid().as_u128()
}

/// Stores one published message in its topic's feed on this shard (the feed of envelopes
/// when `envelopes`), adding it to `sends`; wakes the long polls of the queues reading it.
pub fn publish<H: QueueHost>(
    host: &Rc<H>,
    plan: &FeedPlan,
    envelopes: bool,
    message_id: u128,
    payload: Arc<Payload>,
    now: u64,
    sends: &mut Sends,
) -> Result<(), OpError> {
    let feed_id = if envelopes { plan.envelope_feed_id } else { plan.feed_id };
    {
        let mut partitions = host.queues().partitions.borrow_mut();
        let feed = partitions.entry(feed_id).or_insert_with(|| Partition::for_queue(feed_id));
        let seq = feed.send(message_id, payload, 0, now);
        match host.queues().storage.commit(feed) {
            Ok(ticket) => sends.record(feed_id, seq, ticket),
            Err(error) => {
                feed.discard(seq);
                host.queues().storage.release_from(feed);
                return Err(error);
            }
        }
    }
    if !host.queues().waiters.borrow().is_empty() {
        for reader in plan.readers.iter().filter(|reader| reader.envelope == envelopes) {
            notify_visible(host, reader.queue.id);
        }
    }
    Ok(())
}

/// What taking from the feeds came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub messages: usize,
    /// It stopped at a feed message whose payload is only in the log.
    pub stalled: bool,
}

/// Takes up to `wanted` messages from the feeds queue `meta` reads into its partition on this
/// shard, in feed order. `loaded` holds payloads read back from the log for feed messages
/// kept there only, by (feed id, feed seq). An envelope gets its subscription's unsubscribe
/// URL, on a server reached at `public_url`. What it journals is committed by the caller.
pub fn take(
    partitions: &mut QueueMap<Partition>,
    meta: &QueueMeta,
    wanted: usize,
    now: u64,
    public_url: &str,
    loaded: &[(u64, u64, Arc<Payload>)],
) -> Taken {
    let mut taken = Taken::default();
    let Some(partition) = partitions.get(&meta.id) else { return taken };
    if partition.cursors().is_empty() {
        return taken;
    }
    let cursors = partition.cursors().to_vec();
    let retention_ms = meta.attributes.message_retention_seconds as u64 * 1000;
    let delay_ms = meta.attributes.delay_seconds as u64 * 1000;
    let mut entries: Vec<FeedEntry> = Vec::new();
    for cursor in cursors {
        if taken.messages >= wanted {
            break;
        }
        entries.clear();
        let mut next = cursor.next;
        if let Some(feed) = partitions.get(&cursor.feed_id) {
            next = next.max(feed.base_seq());
            let end = feed.next_seq().min(cursor.until);
            let mut skipped = 0;
            while next < end && taken.messages + entries.len() < wanted && skipped < SKIP_MAX {
                let Some(mut entry) = feed.feed_entry(next) else {
                    next += 1;
                    skipped += 1;
                    continue;
                };
                if entry.sent_ms.saturating_add(retention_ms) <= now {
                    next += 1;
                    skipped += 1;
                    continue;
                }
                if entry.payload.is_none() {
                    entry.payload = loaded.iter().find(|(feed, seq, _)| *feed == cursor.feed_id && *seq == next).map(|(_, _, p)| p.clone());
                    if entry.payload.is_none() {
                        taken.stalled = true;
                        break;
                    }
                }
                entries.push(entry);
                next += 1;
            }
        }
        let Some(partition) = partitions.get_mut(&meta.id) else { return taken };
        let base = cursor.arn.as_ref().map_or_else(String::new, |_| unsubscribe_base(public_url));
        for entry in entries.drain(..) {
            // Every entry gathered has its payload.
            let Some(shared) = entry.payload.clone() else { continue };
            let payload = match &cursor.arn {
                Some(arn) => envelope_payload(&shared, &base, arn),
                None => shared,
            };
            let due_ms = if delay_ms > 0 { entry.sent_ms + delay_ms } else { 0 };
            partition.feed(cursor.key, &entry, copy_id(entry.message_id, cursor.key), payload, due_ms, now);
            taken.messages += 1;
        }
        // Past what it took: messages gone or past retention.
        partition.skip_to(cursor.key, next);
        if next >= cursor.until {
            partition.remove_cursor(cursor.key);
        }
        if taken.stalled {
            break;
        }
    }
    taken
}

/// A subscription's own copy of an envelope from a feed of envelopes: its body with the
/// unsubscribe URL, and that body's digest.
fn envelope_payload(shared: &Payload, unsubscribe_base: &str, arn: &str) -> Arc<Payload> {
    let body = complete_envelope(&shared.body, unsubscribe_base, arn).unwrap_or_else(|| shared.body.clone());
    Arc::new(Payload {
        md5_of_body: sluice_protocol::digest::md5_of_body(&body),
        md5_of_attributes: None,
        attributes: None,
        trace_header: None,
        message_group_id: shared.message_group_id.clone(),
        sent_ms: shared.sent_ms,
        dead_letter_source_arn: None,
        fifo: None,
        body,
    })
}

/// The feed messages queue `queue_id`'s cursors on this shard should have read back from the
/// log next (payload only there), as (feed id, feed seq, placement): up to `max_messages` or
/// `max_bytes`.
pub fn on_disk_ahead(partitions: &QueueMap<Partition>, queue_id: u64, max_messages: usize, max_bytes: u64) -> Vec<(u64, u64, Placement)> {
    let mut out = Vec::new();
    let Some(partition) = partitions.get(&queue_id) else { return out };
    let mut bytes = 0;
    for cursor in partition.cursors() {
        let Some(feed) = partitions.get(&cursor.feed_id) else { continue };
        let end = feed.next_seq().min(cursor.until);
        let mut seq = cursor.next.max(feed.base_seq());
        let look = max_messages.saturating_mul(4).saturating_add(64);
        let mut looked = 0;
        while seq < end && out.len() < max_messages && bytes < max_bytes && looked < look {
            if let Some(entry) = feed.feed_entry(seq) {
                if entry.payload.is_none() {
                    out.push((cursor.feed_id, seq, entry.placement));
                    bytes += entry.placement.bytes as u64;
                }
            }
            seq += 1;
            looked += 1;
        }
    }
    out
}

/// What queue `meta`'s cursors on this shard have not taken yet: (visible, delayed).
/// Approximate, as SQS's counts are: messages past the queue's retention are counted until
/// a receive passes them over.
pub fn pending(partitions: &QueueMap<Partition>, meta: &QueueMeta, now: u64) -> (u64, u64) {
    let Some(partition) = partitions.get(&meta.id) else { return (0, 0) };
    let delay_ms = meta.attributes.delay_seconds as u64 * 1000;
    let (mut visible, mut delayed) = (0, 0);
    for cursor in partition.cursors() {
        let Some(feed) = partitions.get(&cursor.feed_id) else { continue };
        let from = cursor.next.max(feed.base_seq());
        let end = feed.next_seq().min(cursor.until);
        let all = end.saturating_sub(from);
        // Of those still delayed, the ones past `until` (sent later still) are not this cursor's.
        let beyond = feed.next_seq().saturating_sub(end);
        let later = if delay_ms > 0 { feed.sent_after(from, now.saturating_sub(delay_ms)).saturating_sub(beyond).min(all) } else { 0 };
        visible += all - later;
        delayed += later;
    }
    (visible, delayed)
}

/// Moves queue `queue_id`'s cursors to the end of their feeds (a purge).
pub fn skip_all(partitions: &mut QueueMap<Partition>, queue_id: u64) {
    let Some(partition) = partitions.get(&queue_id) else { return };
    let ends: Vec<(u64, u64, u64)> = partition
        .cursors()
        .iter()
        .map(|cursor| (cursor.key, cursor.until, partitions.get(&cursor.feed_id).map_or(cursor.next, Partition::next_seq)))
        .collect();
    let Some(partition) = partitions.get_mut(&queue_id) else { return };
    for (key, until, end) in ends {
        partition.skip_to(key, end.min(until));
        if end >= until {
            partition.remove_cursor(key);
        }
    }
}

/// Brings this shard's cursors and feeds in line with `snapshot` (at start, after the
/// replay, and on every catalog change): feeds number on from past every cursor; every
/// reading subscription has a cursor (opened at its feed's end); a cursor whose subscription
/// no longer reads is given its end; feeds nobody reads or will read are emptied.
/// Returns the partitions whose journals hold records to commit.
pub fn reconcile(partitions: &mut QueueMap<Partition>, snapshot: &Snapshot) -> Vec<u64> {
    let mut changed = Vec::new();
    // Feeds number on from past every cursor (a feed whose records were all compacted away
    // starts again where its readers are).
    let mut positions: Vec<(u64, u64)> = Vec::new();
    for partition in partitions.values() {
        positions.extend(partition.cursors().iter().map(|cursor| (cursor.feed_id, cursor.next)));
    }
    for (feed_id, next) in positions {
        partitions.entry(feed_id).or_insert_with(|| Partition::for_queue(feed_id)).number_from(next);
    }
    // Cursors whose subscription no longer reads its feed: they end where the feed ends now.
    let mut ending: Vec<(u64, super::partition::Cursor)> = Vec::new();
    for (queue_id, partition) in partitions.iter() {
        if is_feed_id(*queue_id) {
            continue;
        }
        let reads = snapshot.reads.get(queue_id);
        for cursor in partition.cursors() {
            let reading = reads.is_some_and(|reads| reads.iter().any(|read| read.key == cursor.key));
            if !reading && cursor.until == u64::MAX {
                ending.push((*queue_id, cursor.clone()));
            }
        }
    }
    for (queue_id, cursor) in ending {
        let (key, feed_id, next) = (cursor.key, cursor.feed_id, cursor.next);
        let end = partitions.get(&feed_id).map_or(next, Partition::next_seq);
        if let Some(partition) = partitions.get_mut(&queue_id) {
            if end <= next {
                partition.remove_cursor(key);
            } else {
                partition.set_cursor(key, feed_id, next, end, cursor.arn);
            }
            changed.push(queue_id);
        }
    }
    // Every reading subscription has a cursor on this shard.
    for (queue_id, reads) in &snapshot.reads {
        for read in reads {
            let (key, feed_id) = (read.key, read.feed_id);
            let end = partitions.entry(feed_id).or_insert_with(|| Partition::for_queue(feed_id)).next_seq();
            let partition = partitions.entry(*queue_id).or_insert_with(|| Partition::for_queue(*queue_id));
            if !partition.cursors().iter().any(|cursor| cursor.key == key) {
                partition.set_cursor(key, feed_id, end, u64::MAX, read.arn.clone());
                changed.push(*queue_id);
            }
        }
    }
    // Feeds of topics that are gone, read by no cursor: emptied (journaled, so a topic made
    // again under the same name does not find them after a restart), kept to number on.
    let read: std::collections::HashSet<u64> = partitions.values().flat_map(|p| p.cursors().iter().map(|c| c.feed_id)).collect();
    for (id, partition) in partitions.iter_mut() {
        if is_feed_id(*id) && !read.contains(id) && !partition.is_empty() {
            let end = partition.next_seq();
            partition.trim_below(end);
            changed.push(*id);
        }
    }
    changed
}

/// Drops every feed message that all the feed's cursors on this shard have passed, and those
/// past the longest retention of the queues reading it. Returns the feeds changed.
pub fn trim(partitions: &mut QueueMap<Partition>, snapshot: &Snapshot, now: u64) -> Vec<u64> {
    // Per feed: (lowest cursor, longest retention of a queue reading it).
    let mut readers: QueueMap<(u64, u64)> = QueueMap::default();
    for (id, partition) in partitions.iter() {
        if is_feed_id(*id) {
            readers.entry(*id).or_insert((partition.next_seq(), 0));
            continue;
        }
        let retention_ms = snapshot.by_id.get(id).map_or(0, |meta| meta.attributes.message_retention_seconds as u64 * 1000);
        for cursor in partition.cursors() {
            let (low, longest) = readers.entry(cursor.feed_id).or_insert((u64::MAX, 0));
            *low = (*low).min(cursor.next);
            *longest = (*longest).max(retention_ms);
        }
    }
    let mut changed = Vec::new();
    for (feed_id, (below, retention_ms)) in readers {
        let Some(feed) = partitions.get_mut(&feed_id) else { continue };
        let before = (feed.base_seq(), feed.next_seq(), feed.is_empty());
        feed.trim_below(below.min(feed.next_seq()));
        if retention_ms > 0 {
            feed.tick(now, retention_ms);
        }
        if (feed.base_seq(), feed.next_seq(), feed.is_empty()) != before {
            changed.push(feed_id);
        }
    }
    changed
}
