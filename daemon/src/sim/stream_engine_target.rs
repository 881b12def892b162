//! Target `streams`: the stream engine itself, not just a shard's log. Several shards run on
//! one thread (`shards::SimShard`), each owning some of a stream's shards, and clients call
//! the operations Kinesis clients call (`stream::service::handle_op`): PutRecords from any
//! core (each record goes to the core that owns its shard), full reads of a shard through
//! GetShardIterator and GetRecords, and resharding — SplitShard, MergeShards,
//! UpdateShardCount — while puts are in flight (the closing shards are sealed first, and a put
//! that meets a sealed shard is routed again). Half the runs make the stream ON_DEMAND, so that
//! it also splits and merges by itself under the load (`stream::scaling`, with a small shard
//! capacity), and switch its mode now and then. The process stops cleanly, crashes or loses
//! power, and starts again from the disk.
//!
//! A consumer group of two members leases the stream's shards and checkpoints acknowledged
//! records (and the ends of closed shards) through it all. Checked at every grant: no shard
//! is granted to one member while the other may still process it (until the time it sent the
//! call that last granted it, plus the lease time, or until it sent the call that no longer
//! did), and no child before its parents are finished; after every start: every acknowledged
//! checkpoint is there.
//!
//! Checked, on every read and after every start (when every shard of the stream is read in
//! full): sequence numbers increase within a shard; every record returned was put, on the
//! shard and with the sequence number its acknowledgement named; no record appears twice;
//! and every record whose put was acknowledged before the read began is there.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use sluice_protocol::{Op, OpError, PutRecordResult, PutRecordsEntry, Reply, StartingPosition};

use super::shards::{self, pick_shard, short, Cluster, Findings, Setup, SimShard, Stop};
use super::Driver;
use crate::catalog::streams::{parse_shard_id, shard_id};
use crate::catalog::{Naming, Registry};
use crate::engine::Host;
use crate::env::memory::Crash;
use crate::stream::service::handle_op;

const STREAM: &str = "events";

pub fn run(driver: &mut Driver, steps: usize) -> Result<(), String> {
    let shards = driver.rng.usize(2..5);
    let segment_bytes = driver.rng.u64(4..17) * 4096;
    let stream_shards = driver.rng.i32(1..5);
    driver.note(format!("streams: {shards} cores, segments of {segment_bytes} bytes, a stream of {stream_shards} shards"));
    let setup = Setup { shards, segment_bytes, budget: 64 << 20, destination: None, tail_bytes: 0 };
    let model = Rc::new(RefCell::new(Model::default()));
    // Half the runs seal the stream's records at rest (StartStreamEncryption after creating it).
    let root = driver.rng.bool().then(|| {
        let bytes: [u8; 32] = std::array::from_fn(|_| driver.rng.u8(..));
        std::sync::Arc::new(crate::kms::root::RootKey::from_bytes(&bytes))
    });
    let encrypted = root.is_some();
    driver.note(format!("streams: encryption at rest {}", if encrypted { "on" } else { "off" }));
    // Half the runs scale the stream by its load (ON_DEMAND), besides the reshards asked for.
    let mode = driver.rng.bool().then(|| "ON_DEMAND".to_owned());
    driver.note(format!("streams: mode {}", mode.as_deref().unwrap_or("PROVISIONED")));
    let registry = Rc::new(RefCell::new(Registry::new(Naming::default()).with_root(root)));
    let mut cluster = shards::start(driver, &setup, &registry)?;
    let creator = cluster.shard(0);
    let create = Op::CreateStream { name: STREAM.into(), shard_count: Some(stream_shards), mode, tags: vec![], max_record_size_kib: None };
    let start = encrypted.then(|| Op::SetStreamEncryption {
        stream: STREAM.into(),
        encryption_type: "KMS".into(),
        key: "alias/aws/kinesis".into(),
        start: true,
    });
    driver
        .block_on(async move {
            handle_op(&creator, create).await?;
            match start {
                Some(start) => handle_op(&creator, start).await,
                None => Ok(sluice_protocol::Reply::Done),
            }
        })?
        .map_err(|error| format!("cannot create (and encrypt) the stream: {error}"))?;
    let registrar = cluster.shard(0);
    let register = Op::RegisterStreamConsumer { stream: STREAM.into(), name: "sim-group".into() };
    match driver.block_on(async move { handle_op(&registrar, register).await })? {
        Ok(Reply::StreamConsumer(consumer)) => model.borrow_mut().group.consumer_arn = consumer.arn,
        other => return Err(format!("cannot register the group's consumer: {other:?}")),
    }
    while driver.step < steps {
        driver.step += 1;
        match driver.rng.u8(..100) {
            0..=39 => put(driver, &cluster, &model),
            40..=51 => {
                let shard = pick_stream_shard(driver, &cluster);
                if let Some(index) = shard {
                    read_and_check(driver, &cluster, &model, index)?;
                }
            }
            52..=58 => reshard(driver, &cluster, &model),
            59..=70 => {
                let ms = driver.rng.u64(1..1_500);
                driver.note(format!("time passes: {ms} ms"));
                driver.advance(Duration::from_millis(ms));
            }
            71..=73 => cluster = restart(driver, cluster, &setup, &registry, &model, Stop::Clean)?,
            74..=76 => cluster = restart(driver, cluster, &setup, &registry, &model, Stop::Crash(Crash::Process))?,
            77..=79 => cluster = restart(driver, cluster, &setup, &registry, &model, Stop::Crash(Crash::Power))?,
            80..=82 => {
                let faults = driver.shuffle_faults();
                driver.note(format!("disk faults: {faults:?}"));
            }
            83..=88 => group_step(driver, &cluster, &model),
            _ => driver.run_ready(),
        }
        model.borrow_mut().found.report(driver)?;
    }
    cluster = restart(driver, cluster, &setup, &registry, &model, Stop::Clean)?;
    restart(driver, cluster, &setup, &registry, &model, Stop::Crash(Crash::Power))?;
    let model = model.borrow();
    driver.report.appended += model.puts.len() as u64;
    driver.report.acknowledged += model.puts.values().filter(|put| put.is_some()).count() as u64;
    Ok(())
}

/// What the clients know: every record put (by its data, unique), and where its
/// acknowledgement said it went.
#[derive(Default)]
struct Model {
    next_record: u64,
    /// Data -> (shard id, sequence number) once acknowledged; `None` while not (or failed).
    puts: BTreeMap<String, Option<(String, u128)>>,
    group: GroupModel,
    found: Findings,
}

/// The consumer group's two members as the clients see them.
#[derive(Default)]
struct GroupModel {
    consumer_arn: String,
    /// Per member: shard -> (token, until when the member may process it, in ms).
    members: [BTreeMap<u32, (u64, u64)>; 2],
    /// The highest checkpoint acknowledged per shard (`SHARD_END`: `u128::MAX`).
    acked: BTreeMap<u32, u128>,
    /// Shards a `SHARD_END` checkpoint was sent for, acknowledged or not.
    ending: BTreeSet<u32>,
}

impl Model {
    /// Every record whose put was acknowledged on shard `id`: sequence number -> data.
    fn acknowledged_on(&self, id: &str) -> BTreeMap<u128, String> {
        self.puts
            .iter()
            .filter_map(|(data, put)| put.as_ref().filter(|(shard, _)| shard == id).map(|(_, seq)| (*seq, data.clone())))
            .collect()
    }
}

fn put(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let shard = pick_shard(driver, cluster);
    let count = driver.rng.usize(1..6);
    let mut records = Vec::with_capacity(count);
    let mut datas = Vec::with_capacity(count);
    for _ in 0..count {
        let mut model = model.borrow_mut();
        model.next_record += 1;
        let padding = if driver.rng.u8(..4) == 0 { driver.rng.usize(..3000) } else { driver.rng.usize(..64) };
        let data = format!("r{}:{}", model.next_record, "x".repeat(padding));
        model.puts.insert(data.clone(), None);
        records.push(PutRecordsEntry {
            data: Bytes::copy_from_slice(data.as_bytes()),
            partition_key: format!("k{}", driver.rng.u32(..64)),
            explicit_hash_key: None,
        });
        datas.push(data);
    }
    driver.note(format!("put {} on core {}", datas.iter().map(|d| short(d)).collect::<Vec<_>>().join(" "), shard.id));
    let model = model.clone();
    driver.spawn(async move {
        let answer = handle_op(&shard, Op::PutRecords { stream: STREAM.into(), records }).await;
        let mut model = model.borrow_mut();
        match answer {
            Ok(Reply::PutRecords { records, .. }) => {
                let mut outcomes = Vec::new();
                for (data, result) in datas.into_iter().zip(records) {
                    match result {
                        PutRecordResult::Put { shard_id, sequence_number } => {
                            outcomes.push(format!("{} -> {shard_id}", short(&data)));
                            match sequence_number.parse::<u128>() {
                                Ok(seq) => {
                                    model.puts.insert(data, Some((shard_id, seq)));
                                }
                                Err(_) => {
                                    model.found.fail(format!("the put of {} answered a sequence number {sequence_number:?}", short(&data)))
                                }
                            }
                        }
                        PutRecordResult::Failed(error) => outcomes.push(format!("{} failed: {:?}", short(&data), error.code)),
                    }
                }
                model.found.note(format!("  put: {}", outcomes.join(", ")));
            }
            Ok(other) => model.found.fail(format!("PutRecords answered {other:?}")),
            Err(error) => model.found.note(format!("  put failed: {error}")),
        }
    });
    driver.run_ready();
}

/// One member of the group renews its leases (and checks what it is granted), then perhaps
/// checkpoints one shard it holds: at the last acknowledged record there, or at its end once
/// closed.
fn group_step(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let member = driver.rng.usize(..2);
    let shard = pick_shard(driver, cluster);
    let now = shard.env.now_ms();
    let snapshot = shard.snapshot();
    let Some(meta) = snapshot.streams.get(STREAM).cloned() else { return };
    // What to checkpoint, chosen now from what the member holds.
    let checkpoint = {
        let model = model.borrow();
        let held: Vec<(u32, u64)> =
            model.group.members[member].iter().filter(|(_, (_, until))| *until > now).map(|(index, (token, _))| (*index, *token)).collect();
        let chosen = (!held.is_empty() && driver.rng.u8(..4) != 0).then(|| held[driver.rng.usize(..held.len())]);
        chosen.and_then(|(index, token)| {
            let closed = meta.shard(index).is_some_and(|shard| !shard.is_open());
            if closed && driver.rng.bool() {
                return Some((index, token, sluice_protocol::SHARD_END.to_owned()));
            }
            let last = model.acknowledged_on(&shard_id(index)).into_keys().next_back()?;
            Some((index, token, last.to_string()))
        })
    };
    driver.note(format!(
        "group: member {member} on core {} renews{}",
        shard.id,
        match &checkpoint {
            Some((index, _, at)) => format!(" and checkpoints {} at {}", shard_id(*index), short(at)),
            None => String::new(),
        }
    ));
    let (model, consumer_arn) = (model.clone(), model.borrow().group.consumer_arn.clone());
    driver.spawn(async move {
        let sent = shard.env.now_ms();
        let op = Op::LeaseShards { consumer_arn: consumer_arn.clone(), worker: format!("m{member}"), max_leases: None };
        let answer = handle_op(&shard, op).await;
        let now = shard.env.now_ms();
        let snapshot = shard.snapshot();
        {
            let mut model = model.borrow_mut();
            let model = &mut *model;
            match answer {
                Ok(Reply::ShardLeases(leases)) => {
                    let granted: BTreeMap<u32, (u64, u64)> = leases
                        .leases
                        .iter()
                        .filter_map(|lease| Some((parse_shard_id(&lease.shard_id)?, (lease.token, sent + leases.lease_ms))))
                        .collect();
                    // A shard no longer granted was last processed before this call was sent.
                    for (index, (_, until)) in model.group.members[member].iter_mut() {
                        if !granted.contains_key(index) {
                            *until = (*until).min(sent);
                        }
                    }
                    for index in granted.keys() {
                        if let Some((_, until)) = model.group.members[1 - member].get(index).filter(|(_, until)| *until > now) {
                            model.found.fail(format!(
                                "{} was granted to m{member} at {now} ms while m{} may process it until {until} ms",
                                shard_id(*index),
                                1 - member
                            ));
                        }
                        let parents =
                            snapshot.streams.get(STREAM).and_then(|meta| meta.shard(*index)).map(|s| [s.parent, s.adjacent_parent]);
                        for parent in parents.into_iter().flatten().flatten() {
                            let gone = snapshot.streams.get(STREAM).is_none_or(|meta| meta.shard(parent).is_none());
                            if !gone && !model.group.ending.contains(&parent) {
                                model.found.fail(format!(
                                    "{} was granted before its parent {} was finished",
                                    shard_id(*index),
                                    shard_id(parent)
                                ));
                            }
                        }
                    }
                    model.found.note(format!("  m{member} holds {:?}", granted.keys().map(|index| shard_id(*index)).collect::<Vec<_>>()));
                    model.group.members[member].extend(granted);
                }
                Ok(other) => model.found.fail(format!("LeaseShards answered {other:?}")),
                Err(error) => model.found.note(format!("  m{member} renewing: {error}")),
            }
        }
        let Some((index, token, at)) = checkpoint else { return };
        let end = at == sluice_protocol::SHARD_END;
        if end {
            model.borrow_mut().group.ending.insert(index);
        }
        let op = Op::CheckpointShard {
            consumer_arn,
            worker: format!("m{member}"),
            shard_id: shard_id(index),
            token,
            sequence_number: at.clone(),
        };
        let answer = handle_op(&shard, op).await;
        let mut model = model.borrow_mut();
        match answer {
            Ok(_) => {
                let value = if end { u128::MAX } else { at.parse().unwrap_or_default() };
                let acked = model.group.acked.entry(index).or_default();
                *acked = (*acked).max(value);
                model.found.note(format!("  m{member} checkpointed {} at {}", shard_id(index), short(&at)));
            }
            Err(error) => model.found.note(format!("  m{member} checkpointing {}: {error}", shard_id(index))),
        }
    });
    driver.run_ready();
}

/// After a start: every acknowledged checkpoint of a shard the stream still has is there.
fn check_checkpoints(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) -> Result<(), String> {
    let shard = cluster.shard(0);
    let consumer_arn = model.borrow().group.consumer_arn.clone();
    let answer = driver.block_on(async move { handle_op(&shard, Op::DescribeConsumerGroup { consumer_arn }).await })?;
    let Ok(Reply::ShardLeases(group)) = answer else { return Err(format!("after the start, DescribeConsumerGroup answered {answer:?}")) };
    let model = model.borrow();
    for lease in &group.leases {
        let Some(index) = parse_shard_id(&lease.shard_id) else { continue };
        let Some(acked) = model.group.acked.get(&index) else { continue };
        let kept = match lease.checkpoint.as_deref() {
            None => 0,
            Some(sluice_protocol::SHARD_END) => u128::MAX,
            Some(at) => at.parse().unwrap_or_default(),
        };
        if kept < *acked {
            return Err(format!(
                "after the start, {}'s checkpoint is {:?}, behind the acknowledged {acked}",
                lease.shard_id, lease.checkpoint
            ));
        }
    }
    Ok(())
}

/// The index of one of the stream's shards (open or closed), at random.
fn pick_stream_shard(driver: &mut Driver, cluster: &Rc<Cluster>) -> Option<u32> {
    let snapshot = cluster.shard(0).snapshot();
    let meta = snapshot.streams.get(STREAM)?;
    let at = driver.rng.usize(..meta.shards.len().max(1));
    meta.shards.get(at).map(|shard| shard.index)
}

fn reshard(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let snapshot = cluster.shard(0).snapshot();
    let Some(meta) = snapshot.streams.get(STREAM) else { return };
    let mut open: Vec<_> = meta.shards.iter().filter(|shard| shard.is_open()).collect();
    open.sort_by_key(|shard| shard.start);
    let op = match driver.rng.u8(..4) {
        3 => {
            let mode = if meta.mode == crate::catalog::streams::Mode::OnDemand { "PROVISIONED" } else { "ON_DEMAND" };
            Op::UpdateStreamMode { stream: meta.arn.clone(), mode: mode.into() }
        }
        0 => {
            let shard = open[driver.rng.usize(..open.len())];
            if shard.end - shard.start < 2 {
                return;
            }
            let key = shard.start + 1 + driver.rng.u128(..shard.end - shard.start - 1);
            Op::SplitShard { stream: STREAM.into(), shard_to_split: shard.id(), new_starting_hash_key: key.to_string() }
        }
        1 if open.len() >= 2 => {
            let at = driver.rng.usize(..open.len() - 1);
            Op::MergeShards { stream: STREAM.into(), shard_to_merge: open[at].id(), adjacent_shard_to_merge: open[at + 1].id() }
        }
        _ => {
            let target = (open.len() as i32 * [1, 2][driver.rng.usize(..2)] / [1, 2][driver.rng.usize(..2)]).clamp(1, 8);
            Op::UpdateShardCount { stream: STREAM.into(), target_shard_count: target, scaling_type: Some("UNIFORM_SCALING".into()) }
        }
    };
    let shard = pick_shard(driver, cluster);
    driver.note(format!("reshard on core {}: {}", shard.id, op.name()));
    let model = model.clone();
    driver.spawn(async move {
        let answer = handle_op(&shard, op).await;
        model.borrow_mut().found.note(format!("  reshard: {}", answer.map(|_| "done".to_owned()).unwrap_or_else(|e| e.to_string())));
    });
    driver.run_ready();
}

/// Reads stream shard `index` from its start to its end and checks what comes back.
fn read_and_check(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>, index: u32) -> Result<(), String> {
    let reader = pick_shard(driver, cluster);
    let id = shard_id(index);
    // What must be there: every record acknowledged on this shard before the read begins.
    let expected = model.borrow().acknowledged_on(&id);
    let limit = [10, 100, 10_000][driver.rng.usize(..3)];
    let reading = id.clone();
    let read = driver.block_on(async move { read_shard(&reader, &reading, limit).await })?;
    let records = match read {
        Ok(records) => records,
        // A read the disk failed says so; it must not answer wrongly.
        Err(error) => {
            driver.note(format!("read {id}: failed ({error})"));
            return Ok(());
        }
    };
    driver.note(format!("read {id}: {} records", records.len()));
    check_read(&model.borrow(), &id, &records, &expected)
}

/// (sequence number, data) of every record of shard `id`, from its start to its end (a
/// closed shard read to its last record, an open one to its newest).
async fn read_shard(reader: &Rc<SimShard>, id: &str, limit: i32) -> Result<Vec<(u128, String)>, OpError> {
    let position = StartingPosition::new("TRIM_HORIZON");
    let iterator = match handle_op(reader, Op::GetShardIterator { stream: STREAM.into(), shard_id: id.to_owned(), position }).await? {
        Reply::ShardIterator(iterator) => iterator,
        other => return Err(OpError::new(sluice_protocol::ErrorCode::InternalFailure, format!("GetShardIterator answered {other:?}"))),
    };
    let mut next = Some(iterator);
    let mut records = Vec::new();
    for _ in 0..100_000 {
        let Some(iterator) = next.take() else { break };
        let result = match handle_op(reader, Op::GetRecords { iterator, limit: Some(limit), stream_arn: None }).await? {
            Reply::Records(result) => result,
            other => return Err(OpError::new(sluice_protocol::ErrorCode::InternalFailure, format!("GetRecords answered {other:?}"))),
        };
        let caught_up = result.records.is_empty() && result.millis_behind_latest == 0;
        for record in result.records {
            let seq = record.sequence_number.parse::<u128>().unwrap_or(u128::MAX);
            records.push((seq, String::from_utf8_lossy(&record.data).into_owned()));
        }
        if caught_up {
            break;
        }
        next = result.next_iterator;
    }
    Ok(records)
}

fn check_read(model: &Model, id: &str, records: &[(u128, String)], expected: &BTreeMap<u128, String>) -> Result<(), String> {
    let mut previous = None;
    let mut seen = BTreeSet::new();
    for (seq, data) in records {
        if previous.is_some_and(|previous| previous >= *seq) {
            return Err(format!("reading {id}: sequence number {seq} came after {}", previous.unwrap_or_default()));
        }
        previous = Some(*seq);
        match model.puts.get(data) {
            None => return Err(format!("reading {id}: record {} at {seq} was never put", short(data))),
            Some(Some((shard, acked_seq))) if shard != id || acked_seq != seq => {
                return Err(format!(
                    "reading {id}: record {} is at {seq}, but its put was acknowledged as {shard} at {acked_seq}",
                    short(data)
                ))
            }
            _ => {}
        }
        if !seen.insert(data.as_str()) {
            return Err(format!("reading {id}: record {} appears twice", short(data)));
        }
    }
    for (seq, data) in expected {
        if !seen.contains(data.as_str()) {
            return Err(format!(
                "reading {id}: the acknowledged record {} at {seq} is missing ({} records read)",
                short(data),
                records.len()
            ));
        }
    }
    Ok(())
}

fn restart(
    driver: &mut Driver,
    cluster: Rc<Cluster>,
    setup: &Setup,
    registry: &Rc<RefCell<Registry>>,
    model: &Rc<RefCell<Model>>,
    stop: Stop,
) -> Result<Rc<Cluster>, String> {
    let cluster = shards::restart(driver, cluster, setup, registry, stop)?;
    // Every shard of the stream, read in full on a calm disk: everything acknowledged is there.
    let faults = super::harness::calm(driver);
    let indexes: Vec<u32> = cluster
        .shard(0)
        .snapshot()
        .streams
        .get(STREAM)
        .map(|meta| meta.shards.iter().map(|shard| shard.index).collect())
        .unwrap_or_default();
    let mut all = BTreeSet::new();
    for index in indexes {
        let id = shard_id(index);
        let expected = model.borrow().acknowledged_on(&id);
        let reader = cluster.shard(0);
        let reading = id.clone();
        let records = driver
            .block_on(async move { read_shard(&reader, &reading, 10_000).await })?
            .map_err(|error| format!("after the start, reading {id} failed: {error}"))?;
        check_read(&model.borrow(), &id, &records, &expected).map_err(|error| format!("after the start, {error}"))?;
        for (_, data) in records {
            if !all.insert(data.clone()) {
                return Err(format!("after the start, record {} is in two shards", short(&data)));
            }
        }
    }
    driver.note(format!("checked {} records in every shard", all.len()));
    check_checkpoints(driver, &cluster, model)?;
    driver.world.fs().set_faults(faults);
    Ok(cluster)
}
