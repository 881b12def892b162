//! Target `queues`: the queue engine itself, not just its log. Several shards run on one
//! thread, each with its own log on the simulated disk, and clients call the operations
//! SQS clients call (`queue::service::handle_op`): sends, receives with long polls,
//! deletes, visibility changes, on a plain queue, a queue with a dead-letter queue and a
//! queue with a delay — and SNS publishes (`topic::service::handle_op`) to a topic both the
//! plain and the delayed queue subscribe to (raw) and a fifth queue reads in envelopes (topic
//! feeds, `queue::feed`). Cross-shard calls and notices take random virtual time; each shard
//! runs the background tasks a real one runs (the loader, the long-poll timers, compaction),
//! with a memory budget small enough, in some runs, that payloads live only in the log.
//! The process stops cleanly, crashes or loses power, and starts again from the disk.
//!
//! Checked: a receive never returns a message that was never sent, nor one whose delete
//! was acknowledged before the receive began (nothing deleted comes back, across restarts
//! too); a long poll on one shard is woken by a send on another; and at the end, with
//! every in-flight message visible again, every acknowledged send is found, in its queue
//! or its dead-letter queue, unless a delete of it was acknowledged or may have happened; an
//! acknowledged publish, in every subscribed queue.
//!
//! The metadata (which queues exist) is kept in memory across restarts here: its file is
//! not what this target tests.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use sluice_protocol::{OpError, PublishEntry, Reply, SendEntry};

use super::shards::{self, pick_shard, short, Cluster, Findings, Setup, SimShard, Stop};
use super::Driver;
use crate::catalog::topics::TopicChange;
use crate::catalog::{MetaChange, MetaOutcome, Naming, Registry};
use crate::engine::Host;
use crate::env::memory::Crash;
use crate::env::World;
use crate::queue::service;

/// The queues every run uses: a plain one, one whose messages go to `dlq` after two
/// receives, one whose messages are delayed, and one only the wake-up probe uses.
const PLAIN: &str = "plain";
const REDRIVEN: &str = "redriven";
const DLQ: &str = "dlq";
const DELAYED: &str = "delayed";
const PROBE: &str = "probe";
const WORKLOAD_QUEUES: [&str; 4] = [PLAIN, REDRIVEN, DLQ, DELAYED];
/// A topic whose publishes reach `plain` and `delayed` (raw: the message is the body) and
/// `wrapped` (in envelopes; only drained at the end, so the workload's choices stay as they were).
const TOPIC: &str = "news";
const WRAPPED: &str = "wrapped";
const SUBSCRIBERS: [&str; 3] = [PLAIN, DELAYED, WRAPPED];

/// The message a body from `queue` carries: the body itself, or the `Message` of an envelope.
fn message_of(queue: &str, body: &[u8]) -> String {
    if queue == WRAPPED {
        if let Ok(envelope) = serde_json::from_slice::<serde_json::Value>(body) {
            if let Some(message) = envelope["Message"].as_str() {
                return message.to_owned();
            }
        }
    }
    String::from_utf8_lossy(body).into_owned()
}

pub fn run(driver: &mut Driver, steps: usize) -> Result<(), String> {
    let shards = driver.rng.usize(2..5);
    let segment_bytes = driver.rng.u64(8..33) * 4096;
    // Some runs keep almost nothing in memory: receives then wait on the loader.
    let budget = if driver.rng.u8(..3) == 0 { driver.rng.u64(1..64) * 1024 } else { 64 << 20 };
    driver.note(format!("queues: {shards} shards, segments of {segment_bytes} bytes, memory budget {budget} bytes per shard"));
    // Half the runs encrypt at rest: every queue SSE-SQS, its records sealed in the log.
    let root = driver.rng.bool().then(|| {
        let bytes: [u8; 32] = std::array::from_fn(|_| driver.rng.u8(..));
        std::sync::Arc::new(crate::kms::root::RootKey::from_bytes(&bytes))
    });
    driver.note(format!("queues: encryption at rest {}", if root.is_some() { "on" } else { "off" }));
    let setup = Setup { shards, segment_bytes, budget, destination: None, tail_bytes: 0 };
    let model = Rc::new(RefCell::new(Model::default()));
    let registry = Rc::new(RefCell::new(Registry::new(Naming::default()).with_root(root)));
    let mut cluster = shards::start(driver, &setup, &registry)?;
    create_queues(driver, &cluster)?;
    while driver.step < steps {
        driver.step += 1;
        match driver.rng.u8(..100) {
            0..=23 => send(driver, &cluster, &model),
            24..=29 => publish(driver, &cluster, &model),
            30..=49 => receive(driver, &cluster, &model),
            50..=59 => delete(driver, &cluster, &model),
            60..=64 => change_visibility(driver, &cluster, &model),
            65..=76 => {
                let ms = driver.rng.u64(1..1_500);
                driver.note(format!("time passes: {ms} ms"));
                driver.advance(Duration::from_millis(ms));
            }
            77..=79 => probe(driver, &cluster, &model)?,
            80 => burst(driver, &cluster, &model),
            81..=83 => cluster = restart(driver, cluster, &setup, &registry, &model, Stop::Clean)?,
            84..=86 => cluster = restart(driver, cluster, &setup, &registry, &model, Stop::Crash(Crash::Process))?,
            87..=89 => cluster = restart(driver, cluster, &setup, &registry, &model, Stop::Crash(Crash::Power))?,
            90..=92 => {
                let faults = driver.shuffle_faults();
                driver.note(format!("disk faults: {faults:?}"));
            }
            _ => driver.run_ready(),
        }
        model.borrow_mut().found.report(driver)?;
    }
    cluster = restart(driver, cluster, &setup, &registry, &model, Stop::Clean)?;
    cluster = restart(driver, cluster, &setup, &registry, &model, Stop::Crash(Crash::Power))?;
    drain_and_check(driver, &cluster, &model)
}

/// One message in one queue: the queue it was sent or published to, and its body (unique
/// per send or publish; a publish puts one copy in each subscribed queue).
type Copy = (&'static str, String);

/// What the clients know: every copy sent or published, and what became of it.
#[derive(Default)]
struct Model {
    next_message: u64,
    /// Every copy, and whether its send or publish was acknowledged.
    sent: BTreeMap<Copy, bool>,
    /// The message-id tag (as receipts carry it) of acknowledged sends (not known for publishes).
    tags: BTreeMap<Copy, u64>,
    /// Copies whose delete was acknowledged, with the clock of the client operations then.
    deleted: BTreeMap<Copy, u64>,
    /// Copies a delete was asked for whose answer did not say it happened.
    maybe_deleted: BTreeSet<Copy>,
    /// Receipt handles from receives, to delete or change the visibility of.
    handles: Vec<(&'static str, String, String)>,
    /// Counts client operations begun, to order receives against acknowledged deletes.
    clock: u64,
    found: Findings,
}

impl Model {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The copy a message received from `queue` is: one sent there, or, from the dead-letter
    /// queue, one sent to the queue that dead-letters to it.
    fn copy_of(&self, queue: &'static str, body: &str) -> Option<Copy> {
        let copy = (queue, body.to_owned());
        if self.sent.contains_key(&copy) {
            return Some(copy);
        }
        let redriven = (REDRIVEN, body.to_owned());
        (queue == DLQ && self.sent.contains_key(&redriven)).then_some(redriven)
    }

    /// Checks a message a receive from `queue` that began at `began` returned.
    fn received(&mut self, queue: &'static str, body: &str, began: u64) {
        let Some(copy) = self.copy_of(queue, body) else {
            self.found.fail(format!("a receive from {queue} returned {}, which was never sent there", short(body)));
            return;
        };
        if let Some(at) = self.deleted.get(&copy).filter(|at| **at < began) {
            self.found.fail(format!(
                "a receive from {queue} that began at {began} returned {}, whose delete was acknowledged at {at}",
                short(body)
            ));
        }
    }
}

fn create_queues(driver: &mut Driver, cluster: &Rc<Cluster>) -> Result<(), String> {
    let shard = cluster.shard(0);
    let created = driver.block_on(async move {
        let create = |name: &str, attributes: Vec<(String, String)>| MetaChange::Create { name: name.into(), attributes, tags: vec![] };
        let short = || vec![("VisibilityTimeout".to_owned(), "2".to_owned())];
        for name in [PLAIN, DLQ, PROBE, WRAPPED] {
            shard.meta_change(create(name, short())).await?;
        }
        let dlq_arn = shard.snapshot().resolve(DLQ)?.arn.clone();
        let redrive = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"2"}}"#);
        let mut attributes = short();
        attributes.push(("RedrivePolicy".to_owned(), redrive));
        shard.meta_change(create(REDRIVEN, attributes)).await?;
        let mut attributes = short();
        attributes.push(("DelaySeconds".to_owned(), "1".to_owned()));
        shard.meta_change(create(DELAYED, attributes)).await?;
        let topic = TopicChange::Create { name: TOPIC.into(), attributes: vec![], tags: vec![] };
        let MetaOutcome::Arn(Some(topic_arn)) = shard.meta_change(MetaChange::Topic(topic)).await? else {
            return Err(OpError::new(sluice_protocol::ErrorCode::InternalFailure, "creating the topic gave no ARN"));
        };
        for queue in SUBSCRIBERS {
            let endpoint = shard.snapshot().resolve(queue)?.arn.clone();
            let raw = if queue == WRAPPED { "false" } else { "true" };
            let attributes = vec![("RawMessageDelivery".to_owned(), raw.to_owned())];
            let subscribe =
                TopicChange::Subscribe { topic: topic_arn.clone(), protocol: "sqs".into(), endpoint: Some(endpoint), attributes };
            shard.meta_change(MetaChange::Topic(subscribe)).await?;
        }
        Ok::<(), OpError>(())
    })?;
    created.map_err(|error| format!("cannot create the queues: {error}"))?;
    driver.note("created the queues and the topic".to_owned());
    Ok(())
}

fn send_op(queue: &str, body: &str, delay_seconds: Option<i32>, tenant: Option<String>) -> sluice_protocol::Op {
    let entry = SendEntry {
        id: String::new(),
        body: Bytes::copy_from_slice(body.as_bytes()),
        delay_seconds,
        attributes: vec![],
        system_attributes: vec![],
        message_group_id: tenant,
        deduplication_id: None,
    };
    sluice_protocol::Op::SendMessage { queue: queue.to_owned(), entry }
}

/// A message body: unique, sometimes padded (bigger messages fill segments and budgets).
fn new_body(driver: &mut Driver, model: &Rc<RefCell<Model>>) -> String {
    let mut model = model.borrow_mut();
    model.next_message += 1;
    let padding = if driver.rng.u8(..4) == 0 { driver.rng.usize(..4000) } else { driver.rng.usize(..100) };
    format!("m{}:{}", model.next_message, "x".repeat(padding))
}

fn send(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let queue = [PLAIN, REDRIVEN, DELAYED][driver.rng.usize(..3)];
    let shard = pick_shard(driver, cluster);
    let body = new_body(driver, model);
    let delay = (queue == PLAIN && driver.rng.u8(..5) == 0).then(|| driver.rng.i32(0..3));
    // Two of three messages carry a fair queue's tenant (`queue::fair`), most of them one
    // noisy tenant's.
    let number = model.borrow().next_message;
    let tenant = match number % 6 {
        0..=2 => Some("noisy".to_owned()),
        3 => Some(format!("t{}", number % 5)),
        _ => None,
    };
    send_to(driver, model, queue, shard, body, delay, tenant);
}

/// A burst that makes a tenant noisy on one shard: 35 of its messages, three receives of ten
/// held for 30 s (the drain lets 40 s pass first), then two of another tenant's, which later
/// receives there hand out before the rest of the burst.
fn burst(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let shard = pick_shard(driver, cluster);
    driver.note(format!("a burst of the noisy tenant to {PLAIN} on shard {}", shard.id));
    for _ in 0..35 {
        let body = new_body(driver, model);
        send_to(driver, model, PLAIN, shard.clone(), body, None, Some("noisy".to_owned()));
    }
    for _ in 0..3 {
        receive_from(driver, model, PLAIN, shard.clone(), (10, 0, 30));
    }
    for _ in 0..2 {
        let body = new_body(driver, model);
        send_to(driver, model, PLAIN, shard.clone(), body, None, Some("quiet".to_owned()));
    }
}

fn send_to(
    driver: &mut Driver,
    model: &Rc<RefCell<Model>>,
    queue: &'static str,
    shard: Rc<SimShard>,
    body: String,
    delay: Option<i32>,
    tenant: Option<String>,
) {
    driver.note(format!(
        "send {} to {queue} on shard {}{}{}",
        short(&body),
        shard.id,
        delay.map(|d| format!(" delayed {d} s")).unwrap_or_default(),
        tenant.as_deref().map(|t| format!(" as {t}")).unwrap_or_default(),
    ));
    model.borrow_mut().sent.insert((queue, body.clone()), false);
    let model = model.clone();
    driver.spawn(async move {
        let answer = service::handle_op(&shard, send_op(queue, &body, delay, tenant)).await;
        let mut model = model.borrow_mut();
        model.found.note(format!(
            "  send of {}: {}",
            short(&body),
            answer.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string())
        ));
        if let Ok(Reply::SendMessage(result)) = answer {
            if let Ok(id) = uuid::Uuid::parse_str(&result.message_id) {
                model.tags.insert((queue, body.clone()), id.as_u128() as u64);
            }
            model.sent.insert((queue, body), true);
        }
    });
    driver.run_ready();
}

fn publish(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let shard = pick_shard(driver, cluster);
    let body = new_body(driver, model);
    driver.note(format!("publish {} on shard {}", short(&body), shard.id));
    for queue in SUBSCRIBERS {
        model.borrow_mut().sent.insert((queue, body.clone()), false);
    }
    let entry = PublishEntry {
        id: String::new(),
        message: Bytes::copy_from_slice(body.as_bytes()),
        subject: None,
        message_structure: None,
        attributes: vec![],
        message_group_id: None,
        deduplication_id: None,
    };
    let op = sluice_protocol::Op::Publish { topic: TOPIC.to_owned(), entry };
    let model = model.clone();
    driver.spawn(async move {
        let answer = crate::topic::service::handle_op(&shard, op).await;
        let mut model = model.borrow_mut();
        model.found.note(format!(
            "  publish of {}: {}",
            short(&body),
            answer.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string())
        ));
        if answer.is_ok() {
            for queue in SUBSCRIBERS {
                model.sent.insert((queue, body.clone()), true);
            }
        }
    });
    driver.run_ready();
}

fn receive_op(queue: &str, max: i32, wait: i32, visibility: i32) -> sluice_protocol::Op {
    sluice_protocol::Op::ReceiveMessage(sluice_protocol::ReceiveMessage {
        queue: queue.to_owned(),
        max_messages: Some(max),
        wait_time_seconds: Some(wait),
        visibility_timeout: Some(visibility),
        system_attribute_names: vec![],
        message_attribute_names: vec![],
        receive_request_attempt_id: None,
    })
}

fn receive(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let queue = WORKLOAD_QUEUES[driver.rng.usize(..WORKLOAD_QUEUES.len())];
    let shard = pick_shard(driver, cluster);
    let asked = (driver.rng.i32(1..11), driver.rng.i32(0..3), driver.rng.i32(0..4));
    receive_from(driver, model, queue, shard, asked);
}

/// Receives up to `max` from `queue` on `shard`, waiting up to `wait` s, for `visibility` s.
fn receive_from(
    driver: &mut Driver,
    model: &Rc<RefCell<Model>>,
    queue: &'static str,
    shard: Rc<SimShard>,
    (max, wait, visibility): (i32, i32, i32),
) {
    driver.note(format!("receive up to {max} from {queue} on shard {}, wait {wait} s, visibility {visibility} s", shard.id));
    let began = model.borrow_mut().tick();
    let model = model.clone();
    driver.spawn(async move {
        let answer = service::handle_op(&shard, receive_op(queue, max, wait, visibility)).await;
        let mut model = model.borrow_mut();
        if let Ok(Reply::ReceiveMessage(messages)) = &answer {
            let bodies: Vec<String> = messages.iter().map(|m| short(&String::from_utf8_lossy(&m.body)).to_owned()).collect();
            model.found.note(format!("  receive from {queue} begun at {began}: {}", bodies.join(" ")));
        }
        if let Ok(Reply::ReceiveMessage(messages)) = answer {
            for message in messages {
                let body = String::from_utf8_lossy(&message.body).into_owned();
                model.received(queue, &body, began);
                model.handles.push((queue, message.receipt_handle, body));
            }
        }
    });
    driver.run_ready();
}

fn take_handle(driver: &mut Driver, model: &Rc<RefCell<Model>>) -> Option<(&'static str, String, String)> {
    let mut model = model.borrow_mut();
    if model.handles.is_empty() {
        return None;
    }
    let at = driver.rng.usize(..model.handles.len());
    Some(model.handles.swap_remove(at))
}

fn delete(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let Some((queue, handle, body)) = take_handle(driver, model) else { return };
    let shard = pick_shard(driver, cluster);
    driver.note(format!("delete {} from {queue} on shard {}", short(&body), shard.id));
    let Some(copy) = model.borrow().copy_of(queue, &body) else { return };
    model.borrow_mut().maybe_deleted.insert(copy.clone());
    let model = model.clone();
    driver.spawn(async move {
        let answer =
            service::handle_op(&shard, sluice_protocol::Op::DeleteMessage { queue: queue.to_owned(), receipt_handle: handle }).await;
        // A handle whose message was received again since still deletes it: the message is
        // gone — unless it was dead-lettered since (the handle then deletes nothing, as in
        // SQS) or is one of the copies a crash between a move's two records can leave.
        let mut model = model.borrow_mut();
        let at = model.tick();
        model.found.note(format!(
            "  delete of {} at {at}: {}",
            short(&body),
            answer.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string())
        ));
        if answer.is_ok() && copy.0 != REDRIVEN {
            model.deleted.entry(copy).or_insert(at);
        }
    });
    driver.run_ready();
}

fn change_visibility(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let Some((queue, handle, body)) = take_handle(driver, model) else { return };
    let shard = pick_shard(driver, cluster);
    let timeout = driver.rng.i32(0..4);
    driver.note(format!("change the visibility of {} in {queue} to {timeout} s on shard {}", short(&body), shard.id));
    let op = sluice_protocol::Op::ChangeMessageVisibility {
        queue: queue.to_owned(),
        receipt_handle: handle.clone(),
        visibility_timeout: timeout,
    };
    let keep = model.clone();
    driver.spawn(async move {
        if service::handle_op(&shard, op).await.is_ok() {
            keep.borrow_mut().handles.push((queue, handle, body));
        }
    });
    driver.run_ready();
}

/// A long poll on one shard, then a send on another: the poll must return the message
/// well before its wait is over (the other shard wakes it; nothing polls).
fn probe(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) -> Result<(), String> {
    let (receiver, sender) = (pick_shard(driver, cluster), pick_shard(driver, cluster));
    let body = new_body(driver, model);
    driver.note(format!("probe: long poll on shard {}, send {} on shard {}", receiver.id, short(&body), sender.id));
    let got: Rc<RefCell<Option<Polled>>> = Rc::default();
    let out = got.clone();
    driver.spawn(async move {
        // Received probe messages stay hidden for the rest of the run.
        let answer = service::handle_op(&receiver, receive_op(PROBE, 10, 20, 43_200)).await;
        *out.borrow_mut() = Some(answer.map(|reply| match reply {
            Reply::ReceiveMessage(messages) => messages.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect(),
            _ => Vec::new(),
        }));
    });
    let settle = driver.rng.u64(0..50);
    driver.advance(Duration::from_millis(settle));
    if got.borrow().is_some() {
        // An earlier probe's message was still there (its send's answer was lost to a fault).
        driver.note("probe: the poll returned before the send".to_owned());
        return Ok(());
    }
    let sent: Rc<Cell<Option<bool>>> = Rc::default();
    let sent_out = sent.clone();
    let op = send_op(PROBE, &body, None, None);
    driver.spawn(async move { sent_out.set(Some(service::handle_op(&sender, op).await.is_ok())) });
    // The send is answered once its record is durable (a slow disk may take a while); the
    // poll must have its message by half a second after that.
    for _ in 0..1_000 {
        if sent.get().is_some() {
            break;
        }
        driver.advance(Duration::from_millis(10));
    }
    driver.advance(Duration::from_millis(500));
    let outcome = got.borrow_mut().take();
    match (sent.get(), outcome) {
        (Some(true), Some(Ok(bodies))) if bodies.contains(&body) => Ok(()),
        // The send failed (a disk fault), or the poll did (the log refuses after one): nothing to check.
        (Some(false), _) | (_, Some(Err(_))) => {
            driver.note("probe: the disk failed the send or the poll".to_owned());
            driver.advance(Duration::from_secs(21));
            Ok(())
        }
        // The poll returned something else first: a message of an earlier probe whose
        // send failed on a disk fault yet reached the log.
        (Some(true), Some(Ok(bodies))) if !bodies.is_empty() => {
            driver.note(format!("probe: the poll returned an earlier probe's {}", bodies.join(" ")));
            Ok(())
        }
        (sent, outcome) => Err(format!(
            "a long poll on a queue was not woken by a send on another shard within 500 ms (send: {sent:?}, poll: {outcome:?})"
        )),
    }
}

/// What a probe's long poll returned: the bodies, or its error.
type Polled = Result<Vec<String>, OpError>;

fn restart(
    driver: &mut Driver,
    cluster: Rc<Cluster>,
    setup: &Setup,
    registry: &Rc<RefCell<Registry>>,
    model: &Rc<RefCell<Model>>,
    stop: Stop,
) -> Result<Rc<Cluster>, String> {
    let cluster = shards::restart(driver, cluster, setup, registry, stop)?;
    check_kept(&driver.world, &cluster, &model.borrow())?;
    Ok(cluster)
}

/// After a start: every acknowledged send whose message was not deleted (nor may have been)
/// is in some shard's partition of its queue — or, for the redriven queue, of the dead-letter queue.
fn check_kept(world: &World, cluster: &Rc<Cluster>, model: &Model) -> Result<(), String> {
    let shards = cluster.shards.borrow();
    let snapshot = shards[0].catalog.get();
    for shard in shards.iter() {
        for partition in shard.queues.partitions.borrow().values() {
            partition.check_accounting().map_err(|error| format!("after the start, {error}"))?;
        }
    }
    let mut held: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for name in WORKLOAD_QUEUES {
        let Ok(meta) = snapshot.resolve(name) else { continue };
        let tags = held.entry(name).or_default();
        for shard in shards.iter() {
            if let Some(partition) = shard.queues.partitions.borrow().get(&meta.id) {
                tags.extend(partition.tags());
            }
        }
    }
    for (copy, tag) in &model.tags {
        if model.deleted.contains_key(copy) || model.maybe_deleted.contains(copy) {
            continue;
        }
        let (queue, body) = copy;
        let places: &[&str] = if *queue == REDRIVEN { &[REDRIVEN, DLQ] } else { &[queue] };
        if !places.iter().any(|place| held.get(place).is_some_and(|tags| tags.contains(tag))) {
            let mut disk = String::new();
            let needle = format!("{}:", short(body));
            for id in 0..shards.len() {
                let dir = shards::queue_log_dir(id);
                disk.push_str(&format!("\n  shard {id}:{}", super::describe_dir(world, &dir)));
                for (path, data, _) in world.fs().snapshot(&dir) {
                    for (at, _) in data.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle.as_bytes()) {
                        disk.push_str(&format!("\n    its body is in {} at {at}", path.display()));
                    }
                }
            }
            return Err(format!("after the start, the acknowledged send of {} to {queue} is in no partition{disk}", short(body)));
        }
    }
    Ok(())
}

/// Makes every message visible (delays and visibility timeouts over), receives everything
/// from every queue on every shard, and checks it against the model.
fn drain_and_check(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) -> Result<(), String> {
    driver.world.fs().set_faults(crate::env::memory::Faults::NONE);
    driver.advance(Duration::from_secs(40));
    let mut found: BTreeMap<Copy, &'static str> = BTreeMap::new();
    let count = cluster.shards.borrow().len();
    let began = model.borrow_mut().tick();
    loop {
        let mut any = false;
        // The redriven queue first: what it dead-letters while draining is then drained too.
        for queue in [REDRIVEN, PLAIN, DELAYED, DLQ, WRAPPED] {
            for id in 0..count {
                let shard = cluster.shard(id);
                let answer = driver.block_on(async move { service::handle_op(&shard, receive_op(queue, 10, 0, 3600)).await })?;
                let messages = match answer {
                    Ok(Reply::ReceiveMessage(messages)) => messages,
                    other => return Err(format!("draining {queue} on shard {id} failed: {other:?}")),
                };
                any |= !messages.is_empty();
                for message in messages {
                    let body = message_of(queue, &message.body);
                    model.borrow_mut().received(queue, &body, began);
                    let Some(copy) = model.borrow().copy_of(queue, &body) else { continue };
                    // A crash between a dead-letter move's two records may leave a copy in each
                    // queue (and the copy left behind may be moved again).
                    let redriven = copy.0 == REDRIVEN;
                    if let Some(earlier) = found.insert(copy, queue).filter(|_| !redriven) {
                        return Err(format!(
                            "{} was drained twice (from {earlier}, then {queue}) with a visibility of an hour",
                            short(&body)
                        ));
                    }
                }
            }
        }
        if !any {
            break;
        }
    }
    model.borrow_mut().found.report(driver)?;
    let model = model.borrow();
    let mut acknowledged = 0;
    for (copy, acked) in &model.sent {
        if !*acked {
            continue;
        }
        acknowledged += 1;
        let (queue, body) = copy;
        let gone = model.deleted.contains_key(copy) || model.maybe_deleted.contains(copy);
        if !gone && !found.contains_key(copy) {
            return Err(format!(
                "the acknowledged send or publish of {} to {queue} is lost: not in any queue after the drain",
                short(body)
            ));
        }
    }
    driver.note(format!("drained {} messages; {acknowledged} acknowledged sends accounted for", found.len()));
    driver.report.acknowledged += acknowledged;
    driver.report.appended += model.sent.len() as u64;
    Ok(())
}
