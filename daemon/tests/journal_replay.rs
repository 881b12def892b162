//! Replaying the queue journal rebuilds partitions exactly.
//!
//! Random operations run against live partitions of two queues (queue 1 is queue
//! 0's dead-letter queue, maxReceiveCount 2); the partitions journal every change
//! themselves, and the test appends it to a journal as storage does (giving each
//! record a log sequence number). Compaction steps pick a cutoff, re-journal the
//! live messages whose records lie below it, and drop the journal before it, as
//! storage drops whole segments. What is left is encoded, decoded and replayed into
//! fresh partitions, which must hold the same messages in the same states, with the
//! same receive counts and counts by state.
//!
//! Evict steps drop a message's payload from memory as storage does past its memory
//! budget; receives and compaction then read payloads back from the journal as the
//! shard does from the log, and must never need a record compaction has dropped.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use sluice_daemon::queue::journal::{Event, JournalError};
use sluice_daemon::queue::partition::{Delivery, Partition, Payload, Placement, ReceiveRules};
use sluice_daemon::queue::QueueMap;
use sluice_protocol::MessageAttribute;

const RETENTION_MS: u64 = u64::MAX / 4;

#[derive(Debug, Clone)]
enum Step {
    Send {
        queue: u64,
        delay_ms: u64,
        attributes: bool,
    },
    Receive {
        queue: u64,
        max: usize,
        visibility_ms: u64,
    },
    Delete {
        receipt: usize,
    },
    ChangeVisibility {
        receipt: usize,
        timeout_ms: u64,
    },
    Purge {
        queue: u64,
    },
    Advance {
        ms: u64,
    },
    /// Compact the journal up to this fraction (per mille) of its live part.
    Compact {
        per_mille: u64,
    },
    /// Keep this many of a queue's messages (from its newest) only in the log.
    Evict {
        queue: u64,
        count: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u64..2, prop_oneof![Just(0u64), 1u64..5_000], any::<bool>()).prop_map(|(queue, delay_ms, attributes)| Step::Send { queue, delay_ms, attributes }),
        4 => (0u64..2, 1usize..=10, prop_oneof![Just(0u64), 1u64..10_000]).prop_map(|(queue, max, visibility_ms)| Step::Receive { queue, max, visibility_ms }),
        2 => any::<usize>().prop_map(|receipt| Step::Delete { receipt }),
        2 => (any::<usize>(), prop_oneof![Just(0u64), 1u64..20_000]).prop_map(|(receipt, timeout_ms)| Step::ChangeVisibility { receipt, timeout_ms }),
        1 => (0u64..2).prop_map(|queue| Step::Purge { queue }),
        3 => (1u64..8_000).prop_map(|ms| Step::Advance { ms }),
        1 => (0u64..=1000).prop_map(|per_mille| Step::Compact { per_mille }),
        2 => (0u64..2, 1usize..8).prop_map(|(queue, count)| Step::Evict { queue, count }),
    ]
}

fn payload(id: u128, now: u64, attributes: bool) -> Arc<Payload> {
    let attributes: Option<Arc<[MessageAttribute]>> = attributes.then(|| {
        Arc::from(vec![MessageAttribute::string("s", "String", "v"), MessageAttribute::binary("b", Bytes::from_static(b"\x00\x01"))])
    });
    Arc::new(Payload {
        body: Bytes::from(format!("body {id}")),
        md5_of_attributes: attributes.as_ref().map(|_| [7; 16]),
        attributes,
        md5_of_body: [id as u8; 16],
        trace_header: id.is_multiple_of(3).then(|| "Root=1".to_owned()),
        message_group_id: id.is_multiple_of(2).then(|| format!("g{id}")),
        sent_ms: now,
        dead_letter_source_arn: None,
        fifo: None,
    })
}

/// Appends a partition's journal as storage does, telling the partition where each
/// message's full record went (log sequence number = position + 1).
fn commit(partition: &mut Partition, journal: &mut Vec<Event>) {
    let mut events = Vec::new();
    partition.take_journal(&mut events);
    for event in events {
        let log_seq = journal.len() as u64 + 1;
        if let Some(seq) = event.full_record_of() {
            // Segment 0, offset = log seq: enough to find the record again in `journal`.
            partition.placed(seq, Placement::located(log_seq, 0, log_seq, 1));
        }
        journal.push(event);
    }
    partition.take_released(&mut Vec::new());
}

/// Reads payloads back from the journal as the shard reads them from the log. A record
/// before `start` was compacted away: needing one is a bug.
fn load(journal: &[Event], start: usize, wanted: &[(u64, Placement)]) -> Vec<(u128, Arc<Payload>)> {
    wanted
        .iter()
        .map(|(seq, placement)| {
            assert!(placement.log_seq as usize > start, "message {seq} needs record {} that compaction dropped", placement.log_seq);
            match &journal[placement.log_seq as usize - 1] {
                Event::Sent { seq: s, message_id, payload, .. }
                | Event::MovedIn { seq: s, message_id, payload, .. }
                | Event::Restored { seq: s, message_id, payload, .. } => {
                    assert_eq!(s, seq, "record {} is another message's", placement.log_seq);
                    (*message_id, payload.clone())
                }
                other => panic!("record {} is not a full record: {other:?}", placement.log_seq),
            }
        })
        .collect()
}

/// A receive as the shard runs it: when it stops at payloads kept only in the log, they
/// are read back and it goes on.
fn receive(
    partition: &mut Partition,
    journal: &[Event],
    start: usize,
    now: u64,
    rules: &ReceiveRules,
    delivered: &mut Vec<Delivery>,
    moved: &mut Vec<sluice_daemon::queue::partition::Moved>,
) {
    let wanted = delivered.len() + rules.max_messages;
    loop {
        let rules = ReceiveRules { max_messages: wanted - delivered.len(), ..*rules };
        partition.receive(now, &rules, delivered, moved).unwrap();
        if delivered.len() >= wanted || !partition.front_on_disk() {
            return;
        }
        let mut to_load = Vec::new();
        partition.on_disk_ahead(rules.max_messages.max(4), u64::MAX, &mut to_load);
        assert!(!to_load.is_empty(), "a receive stopped at a payload in the log, and none is named to read");
        for ((seq, placement), (message_id, payload)) in to_load.iter().zip(load(journal, start, &to_load)) {
            assert!(partition.make_resident(*seq, placement.log_seq, message_id, payload));
        }
    }
}

/// Per queue: every message (seq, id, receive count, first receive, state) and the counts by state.
type PartitionView = (u64, Vec<(u64, u64, u32, u64, String)>, [u64; 3]);

fn snapshot(partitions: &mut QueueMap<Partition>, now: u64) -> Vec<PartitionView> {
    let mut out: Vec<_> = partitions
        .iter_mut()
        .map(|(queue, partition)| {
            let counts = partition.counts(now, RETENTION_MS);
            (*queue, partition.describe(), [counts.visible, counts.inflight, counts.delayed])
        })
        .filter(|(_, messages, _)| !messages.is_empty())
        .collect();
    out.sort_by_key(|(queue, _, _)| *queue);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn replay_rebuilds_the_partitions_exactly(steps in proptest::collection::vec(step(), 1..150)) {
        let mut live: QueueMap<Partition> = QueueMap::from_iter([(0, Partition::for_queue(0)), (1, Partition::for_queue(1))]);
        // The journal as the log holds it: record i has log sequence number i + 1; records
        // before `start` were compacted away.
        let mut journal: Vec<Event> = Vec::new();
        let mut start = 0usize;
        let mut now: u64 = 1_000_000;
        let mut next_id: u128 = 1;
        let mut receipts: Vec<(u64, u64, u32)> = Vec::new(); // (queue, seq, receive count)
        for step in steps {
            match step {
                Step::Send { queue, delay_ms, attributes } => {
                    let payload = payload(next_id, now, attributes);
                    live.get_mut(&queue).unwrap().send(next_id, payload, delay_ms, now);
                    next_id += 1;
                }
                Step::Receive { queue, max, visibility_ms } => {
                    let rules = ReceiveRules {
                        max_messages: max,
                        visibility_ms,
                        retention_ms: RETENTION_MS,
                        max_receive_count: (queue == 0).then_some(2),
                        inflight_max: usize::MAX,
                        delay_ms: 0,
                    };
                    let (mut delivered, mut moved): (Vec<Delivery>, _) = (Vec::new(), Vec::new());
                    receive(live.get_mut(&queue).unwrap(), &journal, start, now, &rules, &mut delivered, &mut moved);
                    receipts.extend(delivered.iter().map(|d| (queue, d.seq, d.receive_count)));
                    for mut message in moved {
                        let mut copy = (*message.payload).clone();
                        copy.dead_letter_source_arn = Some(Arc::from("arn:aws:sqs:us-east-1:0:q0"));
                        message.payload = Arc::new(copy);
                        live.get_mut(&1).unwrap().accept_moved(message, now);
                    }
                    // As storage commits: the dead-letter queue's records first.
                    commit(live.get_mut(&1).unwrap(), &mut journal);
                }
                Step::Delete { receipt } => {
                    if receipts.is_empty() { continue; }
                    let (queue, seq, _) = receipts[receipt % receipts.len()];
                    live.get_mut(&queue).unwrap().delete(seq);
                }
                Step::ChangeVisibility { receipt, timeout_ms } => {
                    if receipts.is_empty() { continue; }
                    let (queue, seq, count) = receipts[receipt % receipts.len()];
                    let _ = live.get_mut(&queue).unwrap().change_visibility(seq, count, timeout_ms, now);
                }
                Step::Purge { queue } => live.get_mut(&queue).unwrap().purge(),
                Step::Evict { queue, count } => {
                    let partition = live.get_mut(&queue).unwrap();
                    let newest = partition.next_seq();
                    for seq in (newest.saturating_sub(count as u64)..newest).rev() {
                        partition.evict(seq);
                    }
                }
                Step::Advance { ms } => {
                    now += ms;
                    for partition in live.values_mut() {
                        partition.tick(now, RETENTION_MS);
                    }
                }
                Step::Compact { per_mille } => {
                    let cutoff = start + (journal.len() - start) * per_mille as usize / 1000;
                    for partition in live.values_mut() {
                        let mut cursor = Some(0);
                        while let Some(from) = cursor {
                            let mut to_load = Vec::new();
                            cursor = partition.relocate(from, cutoff as u64 + 1, 3, &mut to_load);
                            for ((seq, placement), (message_id, payload)) in to_load.iter().zip(load(&journal, start, &to_load)) {
                                partition.relocate_loaded(*seq, placement.log_seq, message_id, payload);
                            }
                        }
                        commit(partition, &mut journal);
                    }
                    start = cutoff;
                }
            }
            for queue in [0, 1] {
                commit(live.get_mut(&queue).unwrap(), &mut journal);
            }
        }
        let kept = journal.clone();
        let journal: Vec<(u64, Event)> = journal.into_iter().enumerate().skip(start).map(|(i, e)| (i as u64 + 1, e)).collect();
        // Through the bytes, as the log will store them.
        let mut replayed: QueueMap<Partition> = QueueMap::default();
        for (log_seq, event) in journal {
            let mut bytes = Vec::new();
            event.encode(&mut bytes);
            let decoded = Event::decode(event.kind(), &bytes).expect("an encoded event decodes");
            decoded.apply(Placement::located(log_seq, 0, log_seq, 1), &mut replayed);
        }
        prop_assert_eq!(snapshot(&mut replayed, now), snapshot(&mut live, now));
        // And both hand out the same messages once every timer has run. (The order may
        // differ: standard queues promise best-effort order, and a restart may reorder.)
        let rules = ReceiveRules { max_messages: 10, visibility_ms: 1_000_000, retention_ms: RETENTION_MS, max_receive_count: None, inflight_max: usize::MAX, delay_ms: 0 };
        for queue in [0u64, 1] {
            let drain = |partitions: &mut QueueMap<Partition>| {
                let partition = partitions.entry(queue).or_default();
                let mut ids = Vec::new();
                loop {
                    let mut delivered = Vec::new();
                    receive(partition, &kept, start, now + 50_000, &rules, &mut delivered, &mut Vec::new());
                    if delivered.is_empty() {
                        break;
                    }
                    ids.extend(delivered.iter().map(|d| (d.message_id, d.receive_count)));
                }
                ids.sort_unstable();
                ids
            };
            prop_assert_eq!(drain(&mut replayed), drain(&mut live));
        }
    }

    #[test]
    fn truncated_or_garbled_records_are_errors_not_panics(cut in 0usize..200, flip in any::<(usize, u8)>()) {
        let event = Event::Sent { queue_id: 3, seq: 9, message_id: 5, payload: payload(5, 7, true), due_ms: 0 };
        let mut bytes = Vec::new();
        event.encode(&mut bytes);
        let cut = cut.min(bytes.len().saturating_sub(1));
        let truncated = matches!(Event::decode(event.kind(), &bytes[..cut]), Err(JournalError::Truncated { .. }));
        prop_assert!(truncated, "a record cut at {} of {} bytes must be reported as truncated", cut, bytes.len());
        let mut garbled = bytes.clone();
        let at = flip.0 % garbled.len();
        garbled[at] ^= flip.1;
        let _ = Event::decode(event.kind(), &garbled);
        let unknown = matches!(Event::decode(200, &bytes), Err(JournalError::UnknownKind(200)));
        prop_assert!(unknown);
    }
}

#[test]
fn expired_messages_are_journaled_and_stay_gone_whatever_the_retention_later() {
    let mut live = Partition::for_queue(4);
    live.send(1, payload(1, 1_000, false), 0, 1_000);
    live.send(2, payload(2, 50_000, false), 0, 50_000);
    assert!(!live.tick(61_000, 60_000), "nothing becomes visible");
    let mut events = Vec::new();
    live.take_journal(&mut events);
    assert!(matches!(events.last(), Some(Event::Deleted { queue_id: 4, seq: 0 })), "{events:?}");
    let mut replayed: QueueMap<Partition> = QueueMap::default();
    for (index, event) in events.into_iter().enumerate() {
        event.apply(Placement::at(index as u64 + 1, 1), &mut replayed);
    }
    // Replayed with a far longer retention, only the unexpired message is there.
    let partition = replayed.get_mut(&4).unwrap();
    let rules = ReceiveRules {
        max_messages: 10,
        visibility_ms: 1_000,
        retention_ms: u64::MAX / 4,
        max_receive_count: None,
        inflight_max: usize::MAX,
        delay_ms: 0,
    };
    let mut delivered = Vec::new();
    partition.receive(61_000, &rules, &mut delivered, &mut Vec::new()).unwrap();
    assert_eq!(delivered.iter().map(|d| d.message_id).collect::<Vec<_>>(), [2]);
}
