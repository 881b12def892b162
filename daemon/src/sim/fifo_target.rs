//! Target `fifo`: FIFO queues on several shards, through the operations SQS clients call
//! (`queue::service::handle_op`), under crashes, power losses and disk faults. Clients send to
//! `jobs.fifo` (no dead-letter queue) and `redriven.fifo` (whose messages go to `dead.fifo`,
//! owned by another shard, after three receives), from any shard, in four message groups,
//! reusing earlier deduplication ids now and then; they receive, delete and change
//! visibility; time passes, sometimes past the five-minute window. In half the runs the
//! queues are made for high throughput (deduplicated per group, `perMessageGroupId`), so their
//! groups are spread over the shards: sends, receives, deletes and dead-letter moves then go
//! between the groups' shards.
//!
//! Checked: a send answered with a new message id while an acknowledged send with the same
//! deduplication id was answered less than five minutes before it began is a duplicate stored
//! twice; a send answered with another send's message id names a message with its
//! deduplication id, and its own body is never received; a receive from `jobs.fifo` returns a
//! message only when every acknowledged message of its group with a lower sequence number is
//! deleted (or may be) or comes before it in the same answer; a send begun after another of
//! its group was answered gets a higher sequence number; no message a delete was acknowledged for comes back; and at
//! the end every acknowledged message not deleted is found, once (`redriven.fifo`'s in it or
//! in `dead.fifo`, where a crash in the middle of a move may leave a copy in both). That a
//! group waits while one of its messages is in flight is `tests/fifo_model.rs`'s to check: a
//! crash may forget a receive, and with it what the clients saw in flight.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use sluice_protocol::limits::FIFO_DEDUP_WINDOW_MS;
use sluice_protocol::{ErrorCode, OpError, Reply, SendEntry};

use super::shards::{self, pick_shard, Cluster, Findings, Setup, Stop};
use super::Driver;
use crate::catalog::{MetaChange, Naming, Registry};
use crate::engine::Host;
use crate::env::memory::Crash;
use crate::queue::service;

const JOBS: &str = "jobs.fifo";
const REDRIVEN: &str = "redriven.fifo";
const DEAD: &str = "dead.fifo";
const GROUPS: u8 = 4;

pub fn run(driver: &mut Driver, steps: usize) -> Result<(), String> {
    let shards = driver.rng.usize(2..5);
    let segment_bytes = driver.rng.u64(8..33) * 4096;
    let budget = if driver.rng.u8(..3) == 0 { driver.rng.u64(1..64) * 1024 } else { 64 << 20 };
    driver.note(format!("fifo: {shards} shards, segments of {segment_bytes} bytes, memory budget {budget} bytes per shard"));
    let setup = Setup { shards, segment_bytes, budget, destination: None, tail_bytes: 0 };
    let spread = driver.rng.bool();
    let model = Rc::new(RefCell::new(Model { spread, ..Model::default() }));
    let registry = Rc::new(RefCell::new(Registry::new(Naming::default())));
    let mut cluster = shards::start(driver, &setup, &registry)?;
    create_queues(driver, &cluster, spread)?;
    while driver.step < steps {
        driver.step += 1;
        match driver.rng.u8(..100) {
            0..=29 => send(driver, &cluster, &model),
            30..=51 => receive(driver, &cluster, &model),
            52..=65 => delete(driver, &cluster, &model),
            66..=70 => change_visibility(driver, &cluster, &model),
            71..=81 => {
                let ms = if driver.rng.u8(..10) == 0 { driver.rng.u64(100_000..200_000) } else { driver.rng.u64(1..1_500) };
                driver.note(format!("time passes: {ms} ms"));
                driver.advance(Duration::from_millis(ms));
            }
            82..=84 => cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Clean)?,
            85..=87 => cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Crash(Crash::Process))?,
            88..=90 => cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Crash(Crash::Power))?,
            91..=93 => {
                let faults = driver.shuffle_faults();
                driver.note(format!("disk faults: {faults:?}"));
            }
            _ => driver.run_ready(),
        }
        if let Err(failure) = model.borrow_mut().found.report(driver) {
            let count = cluster.shards.borrow().len();
            let id = cluster.shard(0).snapshot().resolve(JOBS).map(|m| m.id).unwrap_or(0);
            // Every shard's partition of the queue (one, unless its groups are spread).
            let dump: Vec<String> = (0..count)
                .filter_map(|index| {
                    let shard = cluster.shard(index);
                    let partitions = shard.queues.partitions.borrow();
                    partitions.get(&id).map(|p| format!("shard {index}: {:?}\n{}", p.describe(), p.describe_groups()))
                })
                .collect();
            return Err(format!("{failure}\n{}", dump.join("\n")));
        }
    }
    cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Clean)?;
    cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Crash(Crash::Power))?;
    drain_and_check(driver, &cluster, &model)
}

/// A message the clients know was stored: acknowledged, with its id.
#[derive(Debug, Clone)]
struct Stored {
    queue: &'static str,
    group: u8,
    dedup: String,
    sequence: u128,
    /// Whether its group is known: not once its deduplication id is reused (a send may be
    /// answered with the message of another send with that id, in another group).
    certain: bool,
}

#[derive(Default)]
struct Model {
    next: u64,
    /// Every deduplication id used, to reuse; those used more than once.
    dedups: Vec<String>,
    reused: BTreeSet<String>,
    /// Acknowledged messages by message id.
    stored: BTreeMap<String, Stored>,
    /// The first acknowledged answer per (queue, deduplication id): message id, and when its
    /// send began (virtual ms).
    first: BTreeMap<(&'static str, Option<u8>, String), (String, u64)>,
    /// Whether the queues' groups are spread over the shards (and deduplicated per group).
    spread: bool,
    /// Bodies of sends answered as duplicates of an acknowledged message: never received.
    duplicate_bodies: BTreeSet<String>,
    /// The highest sequence number answered per (queue, group).
    last_sequence: BTreeMap<(&'static str, u8), u128>,
    /// Message ids of `jobs.fifo` whose delete was acknowledged, and ids a delete may have removed.
    /// (With the clock of client operations when the delete was answered.)
    deleted: BTreeMap<String, u64>,
    /// Counts client operations begun and answered, to order receives against deletes.
    clock: u64,
    maybe_deleted: BTreeSet<String>,
    /// Deletes asked for and not answered (a crash may have ended them after they happened).
    deleting: BTreeMap<String, usize>,
    /// The highest receive count seen per message id.
    receive_counts: BTreeMap<String, u32>,
    /// (queue, receipt handle, message id, body) from receives.
    handles: Vec<(&'static str, String, String, String)>,
    found: Findings,
}

impl Model {
    fn gone(&self, id: &str) -> bool {
        self.deleted.contains_key(id) || self.maybe_deleted.contains(id) || self.deleting.get(id).is_some_and(|n| *n > 0)
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Checks the answer of a receive from `queue` begun at `began` (the clock):
    /// (message id, body, group, sequence, receive count).
    fn received(&mut self, queue: &'static str, began: u64, messages: &[(String, String, u8, u128, u32)]) {
        for (index, (id, body, group, sequence, count)) in messages.iter().enumerate() {
            if self.duplicate_bodies.contains(body) {
                self.found.fail(format!("{queue} delivered {body}, whose send was answered as a duplicate"));
            }
            if let Some(at) = self.deleted.get(id).filter(|at| **at < began) {
                self.found.fail(format!(
                    "{queue} delivered {body} ({id}) to a receive begun at {began}, after its delete was acknowledged at {at}"
                ));
            }
            let seen = self.receive_counts.entry(id.clone()).or_default();
            *seen = (*seen).max(*count);
            if queue != JOBS {
                continue;
            }
            // Order: every acknowledged message of the group before it is gone, or comes first here.
            let earlier_here: BTreeSet<&String> = messages[..index].iter().map(|m| &m.0).collect();
            for (other, stored) in &self.stored {
                if stored.queue == JOBS
                    && stored.certain
                    && stored.group == *group
                    && stored.sequence < *sequence
                    && !self.gone(other)
                    && !earlier_here.contains(other)
                {
                    self.found.fail(format!(
                        "{queue} delivered {body} (group {group}, sequence {sequence}) while {other} (sequence {}) of its group was not deleted",
                        stored.sequence
                    ));
                    return;
                }
            }
        }
    }
}

fn create_queues(driver: &mut Driver, cluster: &Rc<Cluster>, spread: bool) -> Result<(), String> {
    let shard = cluster.shard(0);
    let created = driver.block_on(async move {
        let create = |name: &str, mut attributes: Vec<(String, String)>| {
            attributes.push(("FifoQueue".to_owned(), "true".to_owned()));
            attributes.push(("VisibilityTimeout".to_owned(), "2".to_owned()));
            if spread {
                attributes.push(("DeduplicationScope".to_owned(), "messageGroup".to_owned()));
                attributes.push(("FifoThroughputLimit".to_owned(), "perMessageGroupId".to_owned()));
            }
            MetaChange::Create { name: name.into(), attributes, tags: vec![] }
        };
        shard.meta_change(create(JOBS, vec![])).await?;
        shard.meta_change(create(DEAD, vec![])).await?;
        let dead_arn = shard.snapshot().resolve(DEAD)?.arn.clone();
        let redrive = format!(r#"{{"deadLetterTargetArn":"{dead_arn}","maxReceiveCount":"3"}}"#);
        shard.meta_change(create(REDRIVEN, vec![("RedrivePolicy".to_owned(), redrive)])).await?;
        Ok::<(), OpError>(())
    })?;
    created.map_err(|error| format!("cannot create the FIFO queues: {error}"))?;
    driver.note(format!("created the FIFO queues{}", if spread { ", their groups spread over the shards" } else { "" }));
    Ok(())
}

fn send(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let queue = if driver.rng.u8(..4) == 0 { REDRIVEN } else { JOBS };
    let shard = pick_shard(driver, cluster);
    let group = driver.rng.u8(..GROUPS);
    let (body, dedup, reused) = {
        let mut m = model.borrow_mut();
        m.next += 1;
        let (dedup, reused) = match (driver.rng.u8(..4), m.dedups.is_empty()) {
            (0, false) => (m.dedups[driver.rng.usize(..m.dedups.len())].clone(), true),
            _ => (format!("d{}", m.next), false),
        };
        m.dedups.push(dedup.clone());
        if reused {
            // Which body its message holds is no longer known: concurrent sends with one id
            // are stored in the order the owner gets them, not the order they were answered.
            m.reused.insert(dedup.clone());
            for stored in m.stored.values_mut().filter(|stored| stored.dedup == dedup) {
                stored.certain = false;
            }
        }
        let padding = if driver.rng.u8(..4) == 0 { driver.rng.usize(..3000) } else { driver.rng.usize(..50) };
        (format!("f{}-g{group}-{dedup}:{}", m.next, "x".repeat(padding)), dedup, reused)
    };
    let began = driver.env().now_ms();
    // A send begun after another of its group was answered gets a higher number.
    let floor = model.borrow().last_sequence.get(&(queue, group)).copied().unwrap_or(0);
    driver.note(format!("send {} to {queue} on shard {}", shards::short(&body), shard.id));
    let entry = SendEntry {
        body: Bytes::copy_from_slice(body.as_bytes()),
        message_group_id: Some(format!("g{group}")),
        deduplication_id: Some(dedup.clone()),
        ..SendEntry::default()
    };
    let op = sluice_protocol::Op::SendMessage { queue: queue.to_owned(), entry };
    let model = model.clone();
    driver.spawn(async move {
        let answer = service::handle_op(&shard, op).await;
        let answered = shard.env().now_ms();
        let mut m = model.borrow_mut();
        let result = match answer {
            Ok(Reply::SendMessage(result)) => result,
            other => {
                m.found.note(format!("  send of {}: {other:?}", shards::short(&body)));
                return;
            }
        };
        let Some(sequence) = result.sequence_number.as_deref().and_then(|s| s.parse::<u128>().ok()) else {
            m.found.fail(format!("the send of {} got no sequence number", shards::short(&body)));
            return;
        };
        // (Notes name messages by body and sequence number: message ids are random, and the
        // trail must be the same for the same seed.)
        m.found.note(format!("  send of {}: #{sequence}", shards::short(&body)));
        if let Some(stored) = m.stored.get(&result.message_id).cloned() {
            // Answered as a duplicate of an acknowledged message.
            let other_group = m.spread && stored.certain && stored.group != group;
            if stored.dedup != dedup || stored.queue != queue || stored.sequence != sequence || other_group {
                m.found.fail(format!("the send of {} was answered with {} of {stored:?}", shards::short(&body), result.message_id));
            }
            m.duplicate_bodies.insert(body);
            return;
        }
        // Deduplicated per group when the groups are spread (DeduplicationScope=messageGroup).
        let key = (queue, m.spread.then_some(group), dedup.clone());
        if let Some((first, first_began)) = m.first.get(&key).cloned() {
            if answered < first_began + FIFO_DEDUP_WINDOW_MS {
                m.found.fail(format!(
                    "the send of {} with deduplication id {dedup} stored {} though {first} had it {} ms before",
                    shards::short(&body),
                    result.message_id,
                    answered - first_began
                ));
            }
        }
        // (An answer to a reused id may name an earlier send's message, whose window began then.)
        if !reused {
            m.first.insert(key, (result.message_id.clone(), began));
        }
        // (A reused id may be answered with an earlier send's message, whose answer was lost.)
        if sequence <= floor && !reused {
            m.found.fail(format!(
                "sequence number {sequence} of {} is not above {floor}, answered in its group before it was sent",
                shards::short(&body)
            ));
        }
        let last = m.last_sequence.entry((queue, group)).or_default();
        *last = (*last).max(sequence);
        let certain = !m.reused.contains(&dedup);
        m.stored.insert(result.message_id, Stored { queue, group, dedup, sequence, certain });
    });
    driver.run_ready();
}

fn receive_op(queue: &str, max: i32, wait: i32, visibility: i32) -> sluice_protocol::Op {
    sluice_protocol::Op::ReceiveMessage(sluice_protocol::ReceiveMessage {
        queue: queue.to_owned(),
        max_messages: Some(max),
        wait_time_seconds: Some(wait),
        visibility_timeout: Some(visibility),
        system_attribute_names: vec!["All".to_owned()],
        message_attribute_names: vec![],
        receive_request_attempt_id: None,
    })
}

/// A receive's messages as the model checks them: (message id, body, group, sequence, receive count).
fn parse(messages: &[sluice_protocol::ReceivedMessage]) -> Vec<(String, String, u8, u128, u32)> {
    messages
        .iter()
        .map(|m| {
            let get = |name: &str| m.attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
            let group = get("MessageGroupId").trim_start_matches('g').parse().unwrap_or(u8::MAX);
            (
                m.message_id.clone(),
                shards::short(&String::from_utf8_lossy(&m.body)).to_owned(),
                group,
                get("SequenceNumber").parse().unwrap_or(0),
                get("ApproximateReceiveCount").parse().unwrap_or(0),
            )
        })
        .collect()
}

fn receive(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let queue = [JOBS, JOBS, REDRIVEN, DEAD][driver.rng.usize(..4)];
    let shard = pick_shard(driver, cluster);
    let (max, wait, visibility) = (driver.rng.i32(1..11), driver.rng.i32(0..3), driver.rng.i32(0..4));
    driver.note(format!("receive up to {max} from {queue} on shard {}, wait {wait} s, visibility {visibility} s", shard.id));
    let began = model.borrow_mut().tick();
    let model = model.clone();
    driver.spawn(async move {
        let answer = service::handle_op(&shard, receive_op(queue, max, wait, visibility)).await;
        let mut m = model.borrow_mut();
        if let Ok(Reply::ReceiveMessage(messages)) = answer {
            let parsed = parse(&messages);
            let names: Vec<&str> = parsed.iter().map(|p| p.1.as_str()).collect();
            m.found.note(format!("  receive from {queue}: {}", names.join(" ")));
            m.received(queue, began, &parsed);
            for (message, (id, body, ..)) in messages.into_iter().zip(parsed) {
                m.handles.push((queue, message.receipt_handle, id, body));
            }
        }
    });
    driver.run_ready();
}

fn take_handle(driver: &mut Driver, model: &Rc<RefCell<Model>>) -> Option<(&'static str, String, String, String)> {
    let mut m = model.borrow_mut();
    if m.handles.is_empty() {
        return None;
    }
    let at = driver.rng.usize(..m.handles.len());
    Some(m.handles.swap_remove(at))
}

fn delete(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let Some((queue, handle, id, body)) = take_handle(driver, model) else { return };
    let shard = pick_shard(driver, cluster);
    driver.note(format!("delete {body} from {queue} on shard {}", shard.id));
    *model.borrow_mut().deleting.entry(id.clone()).or_default() += 1;
    let model = model.clone();
    driver.spawn(async move {
        let op = sluice_protocol::Op::DeleteMessage { queue: queue.to_owned(), receipt_handle: handle };
        let answer = service::handle_op(&shard, op).await;
        let mut m = model.borrow_mut();
        if let Some(pending) = m.deleting.get_mut(&id) {
            *pending -= 1;
        }
        m.found.note(format!("  delete of {body}: {}", answer.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string())));
        match answer {
            // A message moved to the dead-letter queue is not deleted by its old receipt; one left
            // in both by a crash during the move may be.
            Ok(_) if queue == JOBS => {
                let at = m.tick();
                m.deleted.entry(id).or_insert(at);
            }
            Ok(_) => {
                m.maybe_deleted.insert(id);
            }
            // An expired receipt deletes nothing.
            Err(error) if error.code == ErrorCode::InvalidParameterValue => {}
            Err(_) => {
                m.maybe_deleted.insert(id);
            }
        }
    });
    driver.run_ready();
}

fn change_visibility(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let Some((queue, handle, id, body)) = take_handle(driver, model) else { return };
    let shard = pick_shard(driver, cluster);
    let timeout = driver.rng.i32(0..4);
    driver.note(format!("change the visibility of {body} in {queue} to {timeout} s on shard {}", shard.id));
    let op = sluice_protocol::Op::ChangeMessageVisibility {
        queue: queue.to_owned(),
        receipt_handle: handle.clone(),
        visibility_timeout: timeout,
    };
    let keep = model.clone();
    driver.spawn(async move {
        if service::handle_op(&shard, op).await.is_ok() {
            keep.borrow_mut().handles.push((queue, handle, id, body));
        }
    });
    driver.run_ready();
}

/// Lets every hold lapse, then receives and deletes everything from every queue on a random
/// shard, checking order on the way, and then that every acknowledged message was found.
fn drain_and_check(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) -> Result<(), String> {
    driver.world.fs().set_faults(crate::env::memory::Faults::NONE);
    driver.advance(Duration::from_secs(40));
    let mut found: BTreeMap<String, &'static str> = BTreeMap::new();
    loop {
        let mut any = false;
        for queue in [REDRIVEN, JOBS, DEAD] {
            let shard = pick_shard(driver, cluster);
            let answer = driver.block_on(async move { service::handle_op(&shard, receive_op(queue, 10, 0, 3600)).await })?;
            let messages = match answer {
                Ok(Reply::ReceiveMessage(messages)) => messages,
                other => return Err(format!("draining {queue} failed: {other:?}")),
            };
            any |= !messages.is_empty();
            let parsed = parse(&messages);
            let began = model.borrow_mut().tick();
            model.borrow_mut().received(queue, began, &parsed);
            for (message, (id, body, ..)) in messages.into_iter().zip(parsed) {
                if let Some(earlier) = found.insert(id.clone(), queue) {
                    if queue == JOBS || earlier == JOBS {
                        return Err(format!("{body} ({id}) was drained twice (from {earlier}, then {queue})"));
                    }
                }
                let shard = pick_shard(driver, cluster);
                let op = sluice_protocol::Op::DeleteMessage { queue: queue.to_owned(), receipt_handle: message.receipt_handle };
                let deleted = driver.block_on(async move { service::handle_op(&shard, op).await })?;
                if let Err(error) = deleted {
                    return Err(format!("deleting drained {body} from {queue} failed: {error}"));
                }
                // Gone now: later messages of its group may follow. (A message left in both
                // the redriven and the dead-letter queue by a crash keeps its id in both.)
                if queue == JOBS {
                    let mut m = model.borrow_mut();
                    let at = m.tick();
                    m.deleted.entry(id).or_insert(at);
                }
            }
        }
        if !any {
            break;
        }
    }
    model.borrow_mut().found.report(driver)?;
    let m = model.borrow();
    let mut kept = 0;
    for (id, stored) in &m.stored {
        let unanswered = m.deleting.get(id).is_some_and(|n| *n > 0);
        if m.maybe_deleted.contains(id) || unanswered || (m.deleted.contains_key(id) && !found.contains_key(id)) {
            continue;
        }
        let places: &[&str] = if stored.queue == REDRIVEN { &[REDRIVEN, DEAD] } else { &[JOBS] };
        if !found.get(id).is_some_and(|queue| places.contains(queue)) {
            return Err(format!("the acknowledged message {id} ({stored:?}) is lost: not in {places:?} after the drain"));
        }
        kept += 1;
    }
    driver.note(format!("drained {} messages; {kept} acknowledged messages accounted for", found.len()));
    driver.report.acknowledged += m.stored.len() as u64;
    driver.report.appended += m.next;
    Ok(())
}
