//! A FIFO queue's partition against a reference model, step by step.
//!
//! Random sends (with repeated deduplication ids), receives, deletes, visibility changes,
//! purges, time steps (past the five-minute window too), compactions and restarts (the
//! journal, encoded and decoded, replayed into a fresh partition) run against a live
//! partition. After every step the model checks: a duplicate within the window is answered
//! with the first message and stores nothing; sequence numbers only grow; a receive hands out
//! only messages of groups with nothing in flight, each group's from its first message on and
//! in order, and stops short only when no group is left available; a delete succeeds only
//! with the receipt of the current receive while its timeout runs; and a restart keeps every
//! message, state and deduplication id.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use sluice_daemon::queue::fifo::{dedup_key, FifoSend};
use sluice_daemon::queue::journal::Event;
use sluice_daemon::queue::partition::{Delivery, Partition, Payload, Placement, ReceiveRules};
use sluice_daemon::queue::QueueMap;
use sluice_protocol::limits::FIFO_DEDUP_WINDOW_MS;

const RETENTION_MS: u64 = u64::MAX / 4;
const QUEUE: u64 = 7;

#[derive(Debug, Clone)]
enum Step {
    Send { group: u8, dedup: u8 },
    Receive { max: usize, visibility_ms: u64 },
    Delete { receipt: usize },
    ChangeVisibility { receipt: usize, timeout_ms: u64 },
    Purge,
    Advance { ms: u64 },
    Compact { per_mille: u64 },
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..4, 0u8..12).prop_map(|(group, dedup)| Step::Send { group, dedup }),
        5 => (1usize..=10, prop_oneof![Just(0u64), 1u64..20_000]).prop_map(|(max, visibility_ms)| Step::Receive { max, visibility_ms }),
        3 => any::<usize>().prop_map(|receipt| Step::Delete { receipt }),
        2 => (any::<usize>(), prop_oneof![Just(0u64), 1u64..20_000]).prop_map(|(receipt, timeout_ms)| Step::ChangeVisibility { receipt, timeout_ms }),
        1 => Just(Step::Purge),
        3 => prop_oneof![1u64..10_000, 100_000u64..200_000].prop_map(|ms| Step::Advance { ms }),
        1 => (0u64..=1000).prop_map(|per_mille| Step::Compact { per_mille }),
        1 => Just(Step::Restart),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Visible,
    InFlight { deadline: u64 },
}

#[derive(Debug, Clone)]
struct Message {
    id: u128,
    group: u8,
    receive_count: u32,
    state: State,
}

#[derive(Default)]
struct Model {
    /// Live messages by partition seq (send order).
    messages: BTreeMap<u64, Message>,
    /// Deduplication id → (message id, sequence number, expiry).
    dedup: BTreeMap<u8, (u128, u64, u64)>,
}

impl Model {
    fn group(&self, group: u8) -> Vec<(u64, &Message)> {
        self.messages.iter().filter(|(_, m)| m.group == group).map(|(s, m)| (*s, m)).collect()
    }

    fn available(&self, group: u8) -> bool {
        let members = self.group(group);
        members.iter().all(|(_, m)| m.state == State::Visible) && !members.is_empty()
    }

    fn advance(&mut self, now: u64) {
        for message in self.messages.values_mut() {
            if matches!(message.state, State::InFlight { deadline } if deadline <= now) {
                message.state = State::Visible;
            }
        }
        self.dedup.retain(|_, (_, _, expires)| *expires > now);
    }
}

fn payload(id: u128, group: u8, now: u64) -> Payload {
    Payload {
        body: Bytes::from(format!("body {id}")),
        attributes: None,
        md5_of_body: [0; 16],
        md5_of_attributes: None,
        trace_header: None,
        message_group_id: Some(format!("g{group}")),
        sent_ms: now,
        dead_letter_source_arn: None,
        fifo: None,
    }
}

/// Appends the partition's journal as storage does, telling it where full records and
/// `Dedup` records went (log sequence number = position + 1).
fn commit(partition: &mut Partition, journal: &mut Vec<Event>) {
    let mut events = Vec::new();
    partition.take_journal(&mut events);
    for event in events {
        let log_seq = journal.len() as u64 + 1;
        if let Some(seq) = event.full_record_of() {
            partition.placed(seq, Placement::located(log_seq, 0, log_seq, 1));
        }
        if let Event::Dedup { key, .. } = &event {
            partition.dedup_placed(*key, (log_seq, 1));
        }
        journal.push(event);
    }
    partition.take_released(&mut Vec::new());
}

fn replay(journal: &[Event], start: usize) -> Partition {
    let mut replayed: QueueMap<Partition> = QueueMap::default();
    for (index, event) in journal.iter().enumerate().skip(start) {
        let mut bytes = Vec::new();
        event.encode(&mut bytes);
        let decoded = Event::decode(event.kind(), &bytes).expect("an encoded event decodes");
        let log_seq = index as u64 + 1;
        decoded.apply(Placement::located(log_seq, 0, log_seq, 1), &mut replayed);
    }
    let mut partition = replayed.remove(&QUEUE).unwrap_or_else(|| Partition::for_queue(QUEUE));
    partition.make_fifo();
    partition.settle_after_replay();
    partition
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn a_fifo_partition_behaves_as_the_model(steps in proptest::collection::vec(step(), 1..200)) {
        let mut live = Partition::for_queue(QUEUE);
        live.make_fifo();
        let mut model = Model::default();
        let mut journal: Vec<Event> = Vec::new();
        let mut start = 0usize;
        let mut now: u64 = 1_000_000;
        let mut next_id: u128 = 1;
        let mut last_sequence = 0u64;
        let mut receipts: Vec<(u64, u128, u32)> = Vec::new(); // (seq, message id, receive count)
        for step in steps {
            let step_name = format!("{step:?}");
            match step {
                Step::Send { group, dedup } => {
                    let key = dedup_key(None, &format!("d{dedup}"));
                    let outcome = live.send_fifo(next_id, payload(next_id, group, now), (key, Arc::from(format!("d{dedup}"))), now);
                    match (outcome, model.dedup.get(&dedup)) {
                        (FifoSend::Duplicate { message_id, sequence }, Some(&(first, first_sequence, _))) => {
                            prop_assert_eq!(message_id, first);
                            prop_assert_eq!(sequence, first_sequence);
                        }
                        (FifoSend::Stored { seq, sequence }, None) => {
                            prop_assert!(sequence > last_sequence, "sequence numbers grow");
                            last_sequence = sequence;
                            model.messages.insert(seq, Message { id: next_id, group, receive_count: 0, state: State::Visible });
                            model.dedup.insert(dedup, (next_id, sequence, now + FIFO_DEDUP_WINDOW_MS));
                        }
                        (outcome, expected) => prop_assert!(false, "send of d{} answered {:?}, the model has {:?}", dedup, outcome, expected),
                    }
                    next_id += 1;
                }
                Step::Receive { max, visibility_ms } => {
                    let rules = ReceiveRules { max_messages: max, visibility_ms, retention_ms: RETENTION_MS, max_receive_count: None, inflight_max: usize::MAX, delay_ms: 0 };
                    let was_available: Vec<u8> = (0..4).filter(|g| model.available(*g)).collect();
                    let mut delivered: Vec<Delivery> = Vec::new();
                    live.receive(now, &rules, &mut delivered, &mut Vec::new()).unwrap();
                    prop_assert!(delivered.len() <= max);
                    // Each group's part of the answer is its first messages, in order.
                    let mut taken: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
                    for delivery in &delivered {
                        let message = model.messages.get(&delivery.seq).expect("a delivered message is live");
                        prop_assert_eq!(message.id, delivery.message_id);
                        prop_assert!(was_available.contains(&message.group), "g{} was not available", message.group);
                        prop_assert_eq!(delivery.receive_count, message.receive_count + 1);
                        taken.entry(message.group).or_default().push(delivery.seq);
                    }
                    for (group, seqs) in &taken {
                        let first: Vec<u64> = model.group(*group).iter().take(seqs.len()).map(|(s, _)| *s).collect();
                        prop_assert_eq!(&first, seqs, "g{} out of order", group);
                    }
                    for delivery in &delivered {
                        let message = model.messages.get_mut(&delivery.seq).unwrap();
                        message.receive_count += 1;
                        message.state = State::InFlight { deadline: now + visibility_ms };
                        if visibility_ms == 0 {
                            message.state = State::Visible;
                        }
                        receipts.push((delivery.seq, delivery.message_id, delivery.receive_count));
                    }
                    if visibility_ms == 0 {
                        // Visible again at once: the partition's timer runs at the next look.
                        live.tick(now, RETENTION_MS);
                    }
                    if delivered.len() < max && visibility_ms > 0 {
                        let left: Vec<u8> = (0..4).filter(|g| model.available(*g)).collect();
                        prop_assert!(left.is_empty(), "receive stopped at {} of {} with groups {:?} available", delivered.len(), max, left);
                    }
                }
                Step::Delete { receipt } => {
                    if receipts.is_empty() { continue; }
                    let (seq, id, count) = receipts[receipt % receipts.len()];
                    let result = live.delete_fifo(seq, id as u64, count, now);
                    match model.messages.get(&seq).filter(|m| m.id == id) {
                        None => prop_assert_eq!(result.ok(), Some(false)),
                        Some(message) => {
                            let current = message.receive_count == count && matches!(message.state, State::InFlight { deadline } if deadline > now);
                            prop_assert_eq!(result.is_ok(), current, "delete of {} (count {}) with {:?}", seq, count, message);
                            if current {
                                model.messages.remove(&seq);
                            }
                        }
                    }
                }
                Step::ChangeVisibility { receipt, timeout_ms } => {
                    if receipts.is_empty() { continue; }
                    let (seq, id, count) = receipts[receipt % receipts.len()];
                    if !live.holds(seq, id as u64) { continue; }
                    let result = live.change_visibility(seq, count, timeout_ms, now);
                    let message = model.messages.get_mut(&seq).unwrap();
                    let current = message.receive_count == count && matches!(message.state, State::InFlight { deadline } if deadline > now);
                    prop_assert_eq!(result.is_ok(), current);
                    if current {
                        message.state = if timeout_ms == 0 { State::Visible } else { State::InFlight { deadline: now + timeout_ms } };
                    }
                }
                Step::Purge => {
                    live.purge();
                    model.messages.clear();
                }
                Step::Advance { ms } => {
                    now += ms;
                    live.tick(now, RETENTION_MS);
                    model.advance(now);
                }
                Step::Compact { per_mille } => {
                    commit(&mut live, &mut journal);
                    let cutoff = start + (journal.len() - start) * per_mille as usize / 1000;
                    let mut cursor = Some(0);
                    while let Some(from) = cursor {
                        cursor = live.relocate(from, cutoff as u64 + 1, 3, &mut Vec::new());
                    }
                    let mut position = Some(0);
                    while let Some(from) = position {
                        position = live.relocate_dedup(cutoff as u64 + 1, from, 2);
                    }
                    commit(&mut live, &mut journal);
                    start = cutoff;
                }
                Step::Restart => {
                    commit(&mut live, &mut journal);
                    let mut replayed = replay(&journal, start);
                    // Timers are not in the log: the first tick after a start runs them.
                    replayed.tick(now, RETENTION_MS);
                    prop_assert_eq!(replayed.describe(), live.describe(), "a restart changed the messages");
                    live = replayed;
                }
            }
            commit(&mut live, &mut journal);
            if let Err(fault) = live.check_groups() {
                prop_assert!(false, "after {:?}: {}", step_name, fault);
            }
            let counts = live.counts(now, RETENTION_MS);
            prop_assert_eq!(counts.visible + counts.inflight, model.messages.len() as u64);
        }
    }
}
