//! Model-based test: random sequences of send / receive / delete / change-visibility /
//! time advance against the queue partition engine and a small reference model, on a
//! controllable clock. After every step the engine must agree with the model on which
//! messages a receive may return, on receive counts, on errors, and on the counts.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use sluice_daemon::queue::partition::{Counts, Delivery, Partition, Payload, ReceiveRules};

const RETENTION_MS: u64 = 600_000;
const TWELVE_HOURS_MS: u64 = 43_200_000;

#[derive(Debug, Clone)]
enum Step {
    Send {
        delay_ms: u64,
        /// A fair queue's tenant: none, or one of three (the first sends most).
        group: Option<u8>,
        /// Messages sent at once (bursts make a tenant noisy, `queue::fair`).
        count: usize,
    },
    Receive {
        max: usize,
        visibility_ms: u64,
    },
    /// Delete through the n-th receipt issued so far.
    Delete {
        receipt: usize,
    },
    ChangeVisibility {
        receipt: usize,
        timeout_ms: u64,
    },
    Advance {
        ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (prop_oneof![Just(0u64), 1u64..5_000], prop_oneof![2 => Just(None), 4 => Just(Some(0u8)), 1 => (1u8..3).prop_map(Some)])
            .prop_flat_map(|(delay_ms, group)| prop_oneof![3 => Just(1usize), 1 => 2usize..20].prop_map(move |count| Step::Send { delay_ms, group, count })),
        3 => (1usize..=10, prop_oneof![Just(0u64), 1u64..10_000, Just(120_000)]).prop_map(|(max, visibility_ms)| Step::Receive { max, visibility_ms }),
        2 => any::<usize>().prop_map(|receipt| Step::Delete { receipt }),
        2 => (any::<usize>(), prop_oneof![Just(0u64), 1u64..20_000, Just(TWELVE_HOURS_MS)]).prop_map(|(receipt, timeout_ms)| Step::ChangeVisibility { receipt, timeout_ms }),
        2 => (1u64..15_000).prop_map(|ms| Step::Advance { ms }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Delayed { due: u64 },
    Visible,
    InFlight { deadline: u64, received: u64 },
}

#[derive(Debug, Clone)]
struct ModelMessage {
    sent: u64,
    receive_count: u32,
    state: State,
}

/// The reference: a plain map, every rule written out directly.
#[derive(Default)]
struct Model {
    messages: HashMap<u128, ModelMessage>,
}

impl Model {
    fn settle(&mut self, now: u64) {
        self.messages.retain(|_, m| m.sent + RETENTION_MS > now);
        for message in self.messages.values_mut() {
            match message.state {
                State::Delayed { due } if due <= now => message.state = State::Visible,
                State::InFlight { deadline, .. } if deadline <= now => message.state = State::Visible,
                _ => {}
            }
        }
    }

    fn counts(&mut self, now: u64) -> Counts {
        self.settle(now);
        let mut counts = Counts::default();
        for message in self.messages.values() {
            match message.state {
                State::Delayed { .. } => counts.delayed += 1,
                State::Visible => counts.visible += 1,
                State::InFlight { .. } => counts.inflight += 1,
            }
        }
        counts
    }
}

fn payload(now: u64) -> Arc<Payload> {
    grouped(now, None)
}

fn grouped(now: u64, group: Option<&str>) -> Arc<Payload> {
    Arc::new(Payload {
        body: Bytes::from_static(b"m"),
        attributes: None,
        md5_of_body: [0; 16],
        md5_of_attributes: None,
        trace_header: None,
        message_group_id: group.map(String::from),
        sent_ms: now,
        dead_letter_source_arn: None,
        fifo: None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn partition_agrees_with_the_reference_model(steps in proptest::collection::vec(step(), 1..200)) {
        let mut engine = Partition::new();
        let mut model = Model::default();
        let mut now: u64 = 1_000_000;
        let mut next_id: u128 = 1;
        // Receipts issued: (message id, seq, receive count at issue).
        let mut receipts: Vec<(u128, u64, u32)> = Vec::new();
        let mut seqs: HashMap<u128, u64> = HashMap::new();

        for step in steps {
            match step {
                Step::Send { delay_ms, group, count } => {
                    for _ in 0..count {
                        let id = next_id;
                        next_id += 1;
                        let group = group.map(|g| format!("tenant-{g}"));
                        let seq = engine.send(id, grouped(now, group.as_deref()), delay_ms, now);
                        seqs.insert(id, seq);
                        let state = if delay_ms > 0 { State::Delayed { due: now + delay_ms } } else { State::Visible };
                        model.messages.insert(id, ModelMessage { sent: now, receive_count: 0, state });
                    }
                }
                Step::Receive { max, visibility_ms } => {
                    model.settle(now);
                    let visible_before = model.messages.values().filter(|m| m.state == State::Visible).count();
                    let rules = ReceiveRules { max_messages: max, visibility_ms, retention_ms: RETENTION_MS, max_receive_count: None, inflight_max: usize::MAX, delay_ms: 0 };
                    let mut delivered: Vec<Delivery> = Vec::new();
                    engine.receive(now, &rules, &mut delivered, &mut Vec::new()).unwrap();
                    prop_assert_eq!(delivered.len(), max.min(visible_before), "receive returned the wrong number of messages");
                    for delivery in &delivered {
                        let id = delivery.message_id;
                        let message = model.messages.get_mut(&id).expect("engine returned a message the model no longer has");
                        prop_assert_eq!(message.state, State::Visible, "engine returned a message that is not visible");
                        message.receive_count += 1;
                        prop_assert_eq!(delivery.receive_count, message.receive_count);
                        message.state = State::InFlight { deadline: now + visibility_ms, received: now };
                        receipts.push((id, delivery.seq, delivery.receive_count));
                    }
                }
                Step::Delete { receipt } => {
                    if receipts.is_empty() { continue; }
                    let (id, seq, _) = receipts[receipt % receipts.len()];
                    model.settle(now);
                    let existed = model.messages.remove(&id).is_some();
                    prop_assert_eq!(engine.delete(seq), existed);
                }
                Step::ChangeVisibility { receipt, timeout_ms } => {
                    if receipts.is_empty() { continue; }
                    let (id, seq, count) = receipts[receipt % receipts.len()];
                    model.settle(now);
                    let expected = match model.messages.get_mut(&id) {
                        Some(message) => match message.state {
                            State::InFlight { deadline, received } if message.receive_count == count && deadline > now => {
                                if (now - received) / 1000 * 1000 + timeout_ms > TWELVE_HOURS_MS {
                                    false
                                } else {
                                    message.state = if timeout_ms == 0 { State::Visible } else { State::InFlight { deadline: now + timeout_ms, received } };
                                    true
                                }
                            }
                            _ => false,
                        },
                        None => false,
                    };
                    prop_assert_eq!(engine.change_visibility(seq, count, timeout_ms, now).is_ok(), expected);
                }
                Step::Advance { ms } => now += ms,
            }
            let _ = &seqs;
            let counts = engine.counts(now, RETENTION_MS);
            prop_assert_eq!(counts, model.counts(now));
            // A deleted message, or one given a new deadline, leaves no timer behind.
            prop_assert_eq!(engine.deadlines_held() as u64, counts.inflight, "deadlines held beside the messages in flight");
        }
    }
}

#[test]
fn messages_past_retention_are_never_returned_and_are_dropped() {
    let mut engine = Partition::new();
    engine.send(1, payload(1_000), 0, 1_000);
    engine.send(2, payload(50_000), 0, 50_000);
    let rules = ReceiveRules {
        max_messages: 10,
        visibility_ms: 1_000,
        retention_ms: 60_000,
        max_receive_count: None,
        inflight_max: usize::MAX,
        delay_ms: 0,
    };
    let mut delivered = Vec::new();
    engine.receive(61_000, &rules, &mut delivered, &mut Vec::new()).unwrap();
    assert_eq!(delivered.iter().map(|d| d.message_id).collect::<Vec<_>>(), [2]);
    assert_eq!(engine.counts(200_000, 60_000), Counts::default());
    assert!(engine.is_empty());
}

#[test]
fn receive_moves_messages_past_max_receive_count_out() {
    let mut engine = Partition::new();
    engine.send(1, payload(0), 0, 0);
    let rules = ReceiveRules {
        max_messages: 1,
        visibility_ms: 0,
        retention_ms: 60_000,
        max_receive_count: Some(2),
        inflight_max: usize::MAX,
        delay_ms: 0,
    };
    for now in [1, 2] {
        let mut delivered = Vec::new();
        engine.receive(now, &rules, &mut delivered, &mut Vec::new()).unwrap();
        assert_eq!(delivered.len(), 1);
    }
    let (mut delivered, mut moved) = (Vec::new(), Vec::new());
    engine.receive(3, &rules, &mut delivered, &mut moved).unwrap();
    assert!(delivered.is_empty());
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].receive_count, 2);
    assert!(engine.is_empty());
}

#[test]
fn in_flight_limit_answers_over_limit() {
    let mut engine = Partition::new();
    for id in 0..3 {
        engine.send(id, payload(0), 0, 0);
    }
    let rules = ReceiveRules {
        max_messages: 10,
        visibility_ms: 1_000,
        retention_ms: 60_000,
        max_receive_count: None,
        inflight_max: 2,
        delay_ms: 0,
    };
    let mut delivered = Vec::new();
    engine.receive(1, &rules, &mut delivered, &mut Vec::new()).unwrap();
    assert_eq!(delivered.len(), 2);
    let error = engine.receive(1, &rules, &mut Vec::new(), &mut Vec::new()).unwrap_err();
    assert_eq!(error.code, sluice_protocol::ErrorCode::OverLimit);
}

fn long_visibility(max_messages: usize) -> ReceiveRules {
    ReceiveRules {
        max_messages,
        visibility_ms: 60_000,
        retention_ms: 600_000,
        max_receive_count: None,
        inflight_max: usize::MAX,
        delay_ms: 0,
    }
}

fn receive_ids(engine: &mut Partition, now: u64, max: usize) -> Vec<Delivery> {
    let mut delivered = Vec::new();
    engine.receive(now, &long_visibility(max), &mut delivered, &mut Vec::new()).unwrap();
    delivered
}

/// Fair queues (`queue::fair`): once a tenant holds 30 messages in flight and more than a tenth
/// of all in flight, a receive hands out every other tenant's visible messages before its
/// backlog, and the backlog (in order) once nothing else waits or it is quiet again.
#[test]
fn a_fair_queue_serves_quiet_tenants_before_a_noisy_tenants_backlog() {
    let mut engine = Partition::new();
    for id in 0..100u128 {
        engine.send(id, grouped(0, Some("noisy")), 0, 0);
    }
    for id in 100..105u128 {
        engine.send(id, grouped(0, Some("quiet")), 0, 0);
    }
    for id in 105..108u128 {
        engine.send(id, grouped(0, None), 0, 0);
    }
    // Not noisy yet: oldest first.
    let mut noisy_inflight = Vec::new();
    for round in 0..3u128 {
        let got = receive_ids(&mut engine, 1, 10);
        assert_eq!(got.iter().map(|d| d.message_id).collect::<Vec<_>>(), (round * 10..round * 10 + 10).collect::<Vec<_>>());
        noisy_inflight.extend(got.into_iter().map(|d| d.seq));
    }
    // 30 in flight, all of them its: the quiet tenant and the ungrouped messages come first,
    // then the noisy tenant's next ones, since nothing else waits.
    let got: Vec<u128> = receive_ids(&mut engine, 2, 10).iter().map(|d| d.message_id).collect();
    assert_eq!(got, [100, 101, 102, 103, 104, 105, 106, 107, 30, 31]);
    assert_eq!(engine.fair_passed_over(), 68, "the rest of the backlog waits in the tenant's line");
    // New quiet messages go ahead of the backlog.
    engine.send(200, grouped(3, Some("quiet")), 0, 3);
    engine.send(201, grouped(3, None), 0, 3);
    let got: Vec<u128> = receive_ids(&mut engine, 3, 4).iter().map(|d| d.message_id).collect();
    assert_eq!(got, [200, 201, 32, 33]);
    // Quiet again (fewer than 30 in flight): its backlog goes back in line, in order.
    for seq in noisy_inflight.drain(..10) {
        assert!(engine.delete(seq));
    }
    engine.send(300, grouped(4, Some("quiet")), 0, 4);
    let got: Vec<u128> = receive_ids(&mut engine, 4, 3).iter().map(|d| d.message_id).collect();
    assert_eq!(got, [34, 35, 36]);
    assert_eq!(engine.fair_passed_over(), 0);
    // Every message is handed out once in all.
    let mut seen: Vec<u128> = Vec::new();
    loop {
        let got = receive_ids(&mut engine, 5, 10);
        if got.is_empty() {
            break;
        }
        seen.extend(got.iter().map(|d| d.message_id));
    }
    assert_eq!(seen.len(), 100 - 37 + 1);
    assert_eq!(engine.counts(5, 600_000).visible, 0);
}

/// A tenant's in-flight count follows its messages out of flight: visibility timeouts,
/// visibility changes to 0, deletes and a purge, so it is noisy exactly while it holds them.
#[test]
fn a_fair_queue_tenant_stops_being_noisy_when_its_messages_leave_flight() {
    let mut engine = Partition::new();
    for id in 0..40u128 {
        engine.send(id, grouped(0, Some("noisy")), 0, 0);
    }
    let held: Vec<Delivery> = (0..3).flat_map(|_| receive_ids(&mut engine, 1, 10)).collect();
    assert_eq!(held.len(), 30);
    engine.send(100, grouped(1, Some("other")), 0, 1);
    assert_eq!(receive_ids(&mut engine, 2, 1)[0].message_id, 100, "noisy: the other tenant first");
    // A visibility change to 0 brings one back: 29 in flight, no longer noisy.
    engine.change_visibility(held[0].seq, 1, 0, 3).unwrap();
    engine.send(101, grouped(3, Some("other")), 0, 3);
    // Quiet: its passed-over backlog is first in line again (message 0 went to the back, as
    // a message whose visibility ends does in a standard queue).
    assert_eq!(receive_ids(&mut engine, 3, 1)[0].message_id, 30, "quiet: its backlog first");
    // Noisy again at 30; the timeouts end, and it is quiet.
    engine.send(102, grouped(4, Some("other")), 0, 4);
    assert_eq!(receive_ids(&mut engine, 4, 1)[0].message_id, 101);
    let got: Vec<u128> = receive_ids(&mut engine, 70_000, 20).iter().map(|d| d.message_id).collect();
    assert_eq!(&got[..11], [31, 32, 33, 34, 35, 36, 37, 38, 39, 0, 102], "after the timeouts, nothing is passed over");
    assert_eq!(engine.fair_passed_over(), 0);
    engine.purge();
    assert_eq!(engine.fair_passed_over(), 0);
    engine.send(103, grouped(70_001, Some("noisy")), 0, 70_001);
    assert_eq!(receive_ids(&mut engine, 70_001, 10).len(), 1);
}
