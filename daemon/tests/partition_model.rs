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
        3 => (prop_oneof![Just(0u64), 1u64..5_000]).prop_map(|delay_ms| Step::Send { delay_ms }),
        3 => (1usize..=10, prop_oneof![Just(0u64), 1u64..10_000]).prop_map(|(max, visibility_ms)| Step::Receive { max, visibility_ms }),
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
    Arc::new(Payload {
        body: Bytes::from_static(b"m"),
        attributes: None,
        md5_of_body: [0; 16],
        md5_of_attributes: None,
        trace_header: None,
        message_group_id: None,
        sent_ms: now,
        dead_letter_source_arn: None,
        fifo: None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn partition_agrees_with_the_reference_model(steps in proptest::collection::vec(step(), 1..120)) {
        let mut engine = Partition::new();
        let mut model = Model::default();
        let mut now: u64 = 1_000_000;
        let mut next_id: u128 = 1;
        // Receipts issued: (message id, seq, receive count at issue).
        let mut receipts: Vec<(u128, u64, u32)> = Vec::new();
        let mut seqs: HashMap<u128, u64> = HashMap::new();

        for step in steps {
            match step {
                Step::Send { delay_ms } => {
                    let id = next_id;
                    next_id += 1;
                    let seq = engine.send(id, payload(now), delay_ms, now);
                    seqs.insert(id, seq);
                    let state = if delay_ms > 0 { State::Delayed { due: now + delay_ms } } else { State::Visible };
                    model.messages.insert(id, ModelMessage { sent: now, receive_count: 0, state });
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
            prop_assert_eq!(engine.counts(now, RETENTION_MS), model.counts(now));
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
