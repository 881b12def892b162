//! Target `fifo-topics`: a FIFO topic on several shards, through the operations SNS clients
//! call (`topic::service::handle_op`), under crashes, power losses and disk faults. Clients
//! publish to `events.fifo` from any shard, one message or a batch, in four message groups,
//! reusing earlier deduplication ids now and then; time passes, sometimes past the five-minute
//! window. The topic delivers raw to two FIFO queues (owned by different shards, one of them
//! through a filter policy that lets half the messages through) and to a standard queue. In
//! half the runs the first FIFO queue is made for high throughput, its groups spread over the
//! shards, so each delivery to it goes to its groups' shards at once.
//!
//! Checked: a publish answered with a new message id while an acknowledged publish with the
//! same deduplication id was answered less than five minutes before it began is a duplicate
//! delivered twice; a publish answered as a repeat names the publish it repeats (same id and
//! sequence number) and its own message is never delivered; a publish begun after another was
//! answered gets a higher sequence number; and at the end, with the queues drained: each FIFO
//! queue holds every acknowledged publish its filter lets through, once, each group in the
//! order of the topic's sequence numbers; the standard queue holds every acknowledged
//! publish, at least once. (A publish whose deduplication id was reused may be missing: it may
//! have repeated a publish whose answer a crash lost, and a FIFO queue's own window may take
//! it for a repeat.)

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use sluice_protocol::limits::FIFO_DEDUP_WINDOW_MS;
use sluice_protocol::{MessageAttribute, Op, OpError, PublishEntry, PublishResult, Reply};

use super::shards::{self, pick_shard, Cluster, Findings, Setup, SimShard, Stop};
use super::Driver;
use crate::catalog::topics::TopicChange;
use crate::catalog::{MetaChange, MetaOutcome, Naming, Registry};
use crate::engine::Host;
use crate::env::memory::Crash;

const TOPIC: &str = "events.fifo";
const ALL: &str = "all.fifo";
const ODD: &str = "odd.fifo";
const PLAIN: &str = "plain";
const GROUPS: u8 = 4;

pub fn run(driver: &mut Driver, steps: usize) -> Result<(), String> {
    let shards = driver.rng.usize(2..5);
    let segment_bytes = driver.rng.u64(8..33) * 4096;
    let budget = if driver.rng.u8(..3) == 0 { driver.rng.u64(1..64) * 1024 } else { 64 << 20 };
    driver.note(format!("fifo-topics: {shards} shards, segments of {segment_bytes} bytes, memory budget {budget} bytes per shard"));
    let setup = Setup { shards, segment_bytes, budget, destination: None, tail_bytes: 0 };
    let model = Rc::new(RefCell::new(Model::default()));
    let registry = Rc::new(RefCell::new(Registry::new(Naming::default())));
    let mut cluster = shards::start(driver, &setup, &registry)?;
    let spread = driver.rng.bool();
    create(driver, &cluster, spread)?;
    while driver.step < steps {
        driver.step += 1;
        match driver.rng.u8(..100) {
            0..=54 => publish(driver, &cluster, &model),
            55..=74 => {
                let ms = if driver.rng.u8(..10) == 0 { driver.rng.u64(100_000..200_000) } else { driver.rng.u64(1..1_500) };
                driver.note(format!("time passes: {ms} ms"));
                driver.advance(Duration::from_millis(ms));
            }
            75..=78 => cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Clean)?,
            79..=82 => cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Crash(Crash::Process))?,
            83..=86 => cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Crash(Crash::Power))?,
            87..=90 => {
                let faults = driver.shuffle_faults();
                driver.note(format!("disk faults: {faults:?}"));
            }
            _ => driver.run_ready(),
        }
        model.borrow_mut().found.report(driver)?;
    }
    cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Clean)?;
    cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Crash(Crash::Power))?;
    // The disk heals; the logs get their spare segments back.
    driver.world.fs().set_faults(crate::env::memory::Faults::NONE);
    driver.advance(Duration::from_secs(40));
    drain_and_check(driver, &cluster, &model)
}

/// An acknowledged publish that was not a repeat.
#[derive(Debug, Clone)]
struct Published {
    message_id: String,
    group: u8,
    dedup: String,
    sequence: u128,
    odd: bool,
    /// The model's clock when it was answered.
    answered: u64,
}

#[derive(Default)]
struct Model {
    next: u64,
    dedups: Vec<String>,
    reused: BTreeSet<String>,
    /// Acknowledged new publishes by message body (bodies are unique; message ids random).
    published: BTreeMap<String, Published>,
    /// The first acknowledged answer per deduplication id: the body, and when its publish began.
    first: BTreeMap<String, (String, u64)>,
    /// Bodies of publishes answered as repeats of a publish answered before they began: never
    /// delivered.
    repeats: BTreeSet<String>,
    /// Bodies of publishes answered as repeats of one under way at the same time, and the body
    /// of the publish they were answered with: which of them the topic took first, and
    /// delivered, the clients cannot know.
    aliases: BTreeMap<String, String>,
    /// Counts client operations begun and answered.
    clock: u64,
    /// The highest sequence number answered so far.
    last_sequence: u128,
    found: Findings,
}

impl Model {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Checks one publish's answer: `began` (virtual ms, and the model's clock), `answered`,
    /// and the floor its sequence number must pass.
    #[allow(clippy::too_many_arguments)]
    fn answered(&mut self, body: String, published: Published, began: (u64, u64), answered: u64, floor: u128, reused: bool) {
        self.found.note(format!("  publish of {}: #{}", shards::short(&body), published.sequence));
        let (began, began_clock) = began;
        if let Some((first_body, first)) = self.published.iter().find(|(_, p)| p.message_id == published.message_id) {
            // Answered as a repeat of an acknowledged publish.
            if first.dedup != published.dedup || first.sequence != published.sequence {
                let first_body = shards::short(first_body).to_owned();
                self.found.fail(format!("the publish of {} was answered as {first_body}, of another id", shards::short(&body)));
            }
            if first.answered < began_clock {
                self.repeats.insert(body);
            } else {
                let first_body = first_body.clone();
                self.aliases.insert(body, first_body);
            }
            return;
        }
        if let Some((first_body, first_began)) = self.first.get(&published.dedup) {
            if answered < first_began + FIFO_DEDUP_WINDOW_MS {
                self.found.fail(format!(
                    "the publish of {} with deduplication id {} was new though {} had it {} ms before",
                    shards::short(&body),
                    published.dedup,
                    shards::short(first_body),
                    answered - first_began
                ));
            }
        }
        if !reused {
            self.first.insert(published.dedup.clone(), (body.clone(), began));
            // (A reused id may be answered with an earlier publish whose answer was lost.)
            if published.sequence <= floor {
                self.found.fail(format!(
                    "sequence number {} of {} is not above {floor}, answered before it was published",
                    published.sequence,
                    shards::short(&body)
                ));
            }
        }
        self.last_sequence = self.last_sequence.max(published.sequence);
        self.published.insert(body, published);
    }
}

fn create(driver: &mut Driver, cluster: &Rc<Cluster>, spread: bool) -> Result<(), String> {
    let shard = cluster.shard(0);
    if spread {
        driver.note(format!("{ALL}'s groups are spread over the shards"));
    }
    let created = driver.block_on(async move {
        let queue = |name: &str| {
            let mut attributes = if name.ends_with(".fifo") { vec![("FifoQueue".to_owned(), "true".to_owned())] } else { vec![] };
            if spread && name == ALL {
                attributes.push(("DeduplicationScope".to_owned(), "messageGroup".to_owned()));
                attributes.push(("FifoThroughputLimit".to_owned(), "perMessageGroupId".to_owned()));
            }
            MetaChange::Create { name: name.into(), attributes, tags: vec![] }
        };
        for name in [ALL, ODD, PLAIN] {
            shard.meta_change(queue(name)).await?;
        }
        let attributes = vec![("FifoTopic".to_owned(), "true".to_owned())];
        let topic = TopicChange::Create { name: TOPIC.into(), attributes, tags: vec![] };
        let MetaOutcome::Arn(Some(topic_arn)) = shard.meta_change(MetaChange::Topic(topic)).await? else {
            return Err(OpError::new(sluice_protocol::ErrorCode::InternalFailure, "creating the topic gave no ARN"));
        };
        for name in [ALL, ODD, PLAIN] {
            let endpoint = shard.snapshot().resolve(name)?.arn.clone();
            let mut attributes = vec![("RawMessageDelivery".to_owned(), "true".to_owned())];
            if name == ODD {
                attributes.push(("FilterPolicy".to_owned(), r#"{"odd":["yes"]}"#.to_owned()));
            }
            let subscribe =
                TopicChange::Subscribe { topic: topic_arn.clone(), protocol: "sqs".into(), endpoint: Some(endpoint), attributes };
            shard.meta_change(MetaChange::Topic(subscribe)).await?;
        }
        Ok::<(), OpError>(())
    })?;
    created.map_err(|error| format!("cannot create the topic and its queues: {error}"))?;
    driver.note("created the FIFO topic and its queues".to_owned());
    Ok(())
}

fn publish(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let shard = pick_shard(driver, cluster);
    let count = if driver.rng.u8(..4) == 0 { driver.rng.usize(2..6) } else { 1 };
    let mut entries = Vec::with_capacity(count);
    let mut planned = Vec::with_capacity(count);
    {
        let mut m = model.borrow_mut();
        for index in 0..count {
            m.next += 1;
            let group = driver.rng.u8(..GROUPS);
            let (dedup, reused) = match (driver.rng.u8(..4), m.dedups.is_empty()) {
                (0, false) => (m.dedups[driver.rng.usize(..m.dedups.len())].clone(), true),
                _ => (format!("d{}", m.next), false),
            };
            m.dedups.push(dedup.clone());
            if reused {
                m.reused.insert(dedup.clone());
            }
            let odd = driver.rng.bool();
            let padding = if driver.rng.u8(..4) == 0 { driver.rng.usize(..3000) } else { driver.rng.usize(..50) };
            let body = format!("p{}-g{group}-{dedup}:{}", m.next, "x".repeat(padding));
            let mut attributes = Vec::new();
            if odd {
                attributes.push(MessageAttribute::string("odd", "String", "yes"));
            }
            entries.push(PublishEntry {
                id: format!("e{index}"),
                message: Bytes::copy_from_slice(body.as_bytes()),
                attributes,
                message_group_id: Some(format!("g{group}")),
                deduplication_id: Some(dedup.clone()),
                ..PublishEntry::default()
            });
            planned.push((body, group, dedup, odd, reused));
        }
    }
    let names: Vec<&str> = planned.iter().map(|p| shards::short(&p.0)).collect();
    driver.note(format!("publish {} on shard {}", names.join(" "), shard.id));
    let began = (driver.env().now_ms(), model.borrow_mut().tick());
    let floor = model.borrow().last_sequence;
    let op = if count == 1 {
        Op::Publish { topic: TOPIC.into(), entry: entries.pop().expect("one entry") }
    } else {
        Op::PublishBatch { topic: TOPIC.into(), entries }
    };
    let model = model.clone();
    driver.spawn(async move {
        let answer = crate::topic::service::handle_op(&shard, op).await;
        let answered = shard.env().now_ms();
        let mut m = model.borrow_mut();
        let answered_clock = m.tick();
        let results: Vec<(usize, PublishResult)> = match answer {
            Ok(Reply::Publish(result)) => vec![(0, result)],
            Ok(Reply::PublishBatch { successful, failed }) => {
                for failure in failed {
                    m.found.note(format!("  batch entry {}: {}", failure.id, failure.message));
                }
                successful.into_iter().map(|r| (r.id[1..].parse().unwrap_or(usize::MAX), r)).collect()
            }
            other => {
                m.found.note(format!("  publish: {other:?}"));
                return;
            }
        };
        for (index, result) in results {
            let Some((body, group, dedup, odd, reused)) = planned.get(index).cloned() else {
                m.found.fail(format!("a batch answered an entry it did not have: {}", result.id));
                continue;
            };
            let Some(sequence) = result.sequence_number.as_deref().and_then(|s| s.parse::<u128>().ok()) else {
                m.found.fail(format!("the publish of {} got no sequence number", shards::short(&body)));
                continue;
            };
            let published = Published { message_id: result.message_id, group, dedup, sequence, odd, answered: answered_clock };
            m.answered(body, published, began, answered, floor, reused);
        }
    });
    driver.run_ready();
}

/// Receives and deletes everything `queue` holds: the bodies as received.
fn drain(driver: &mut Driver, cluster: &Rc<Cluster>, queue: &str) -> Result<Vec<String>, String> {
    let mut bodies = Vec::new();
    loop {
        let shard: Rc<SimShard> = pick_shard(driver, cluster);
        let op = Op::ReceiveMessage(sluice_protocol::ReceiveMessage {
            queue: queue.to_owned(),
            max_messages: Some(10),
            wait_time_seconds: Some(0),
            visibility_timeout: Some(3600),
            system_attribute_names: vec!["SequenceNumber".to_owned()],
            ..sluice_protocol::ReceiveMessage::default()
        });
        let answer = driver.block_on(async move { crate::queue::service::handle_op(&shard, op).await })?;
        let messages = match answer {
            Ok(Reply::ReceiveMessage(messages)) => messages,
            other => return Err(format!("draining {queue} failed: {other:?}")),
        };
        if messages.is_empty() {
            return Ok(bodies);
        }
        for message in messages {
            let shard = pick_shard(driver, cluster);
            let op = Op::DeleteMessage { queue: queue.to_owned(), receipt_handle: message.receipt_handle };
            if let Err(error) = driver.block_on(async move { crate::queue::service::handle_op(&shard, op).await })? {
                return Err(format!("deleting a drained message from {queue} failed: {error}"));
            }
            let sequence = message.attributes.iter().find(|(k, _)| k == "SequenceNumber").map(|(_, v)| v.clone()).unwrap_or_default();
            driver.note(format!("  drained {} #{sequence} from {queue}", shards::short(&String::from_utf8_lossy(&message.body))));
            bodies.push(shards::short(&String::from_utf8_lossy(&message.body)).to_owned());
        }
    }
}

/// Drains every queue and checks what each holds against the acknowledged publishes.
fn drain_and_check(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) -> Result<(), String> {
    model.borrow_mut().found.report(driver)?;
    let m = model.borrow();
    let published: BTreeMap<&str, &Published> = m.published.iter().map(|(body, p)| (shards::short(body), p)).collect();
    let repeats: BTreeSet<&str> = m.repeats.iter().map(|body| shards::short(body)).collect();
    let aliases: BTreeMap<&str, &str> = m.aliases.iter().map(|(body, first)| (shards::short(body), shards::short(first))).collect();
    for queue in [ALL, ODD, PLAIN] {
        let bodies = drain(driver, cluster, queue)?;
        if let Some(body) = bodies.iter().find(|body| repeats.contains(body.as_str())) {
            return Err(format!("{queue} holds {body}, whose publish was answered as a repeat"));
        }
        let wanted = |p: &Published| queue != ODD || p.odd;
        // A publish answered as one under way with it may be the one delivered, in its stead.
        let bodies: Vec<&str> = bodies.iter().map(|body| aliases.get(body.as_str()).copied().unwrap_or(body)).collect();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for body in &bodies {
            *counts.entry(body).or_default() += 1;
        }
        for (body, p) in &published {
            let held = counts.get(body).copied().unwrap_or(0);
            // A reused id's publish may have repeated one whose answer was lost (the model
            // cannot tell), and a FIFO queue's own window may take it for a repeat.
            let may_be_missing = m.reused.contains(&p.dedup);
            if wanted(p) && held == 0 && !may_be_missing {
                return Err(format!("{queue} lost the acknowledged publish {body} ({p:?})"));
            }
            // (A publish answered with another under way with it stands for both.)
            let aliased = aliases.values().any(|first| first == body);
            if !wanted(p) && held > 0 && !aliased {
                return Err(format!("{queue} holds {body}, which its filter policy keeps out"));
            }
            if queue != PLAIN && held > 1 {
                return Err(format!("{queue} holds {body} {held} times"));
            }
        }
        if queue == PLAIN {
            continue;
        }
        // Each group in the topic's order (acknowledged publishes: the others have no number).
        let mut last: BTreeMap<u8, (u128, &str)> = BTreeMap::new();
        for body in &bodies {
            // (Nor those that stand for another publish: its group may differ.)
            let Some(p) = published.get(body).filter(|_| !aliases.values().any(|first| first == body)) else { continue };
            if let Some((sequence, before)) = last.get(&p.group) {
                if *sequence > p.sequence {
                    return Err(format!("{queue} gave {body} (#{}) after {before} (#{sequence}) of its group", p.sequence));
                }
            }
            last.insert(p.group, (p.sequence, body));
        }
        driver.note(format!("drained {} messages from {queue}", bodies.len()));
    }
    driver.report.acknowledged += m.published.len() as u64;
    driver.report.appended += m.next;
    Ok(())
}
