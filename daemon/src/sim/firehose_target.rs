//! Target `firehose`: the Firehose engine on several cores. Clients put batches of records
//! into one delivery stream from any core; each core's buffer delivers to a model destination
//! (standing for S3, it outlives the process) that takes simulated time, goes down and comes
//! back, and sometimes keeps a batch but loses its answer (so the batch is delivered again).
//! The buffering settings change now and then (UpdateDestination), and the process stops
//! cleanly, crashes or loses power, and starts again from the disk, under disk faults.
//!
//! Checked: the destination never holds a record that was not put; and at the end, with the
//! destination up and time let run, every record whose put was acknowledged has reached it
//! (at least once; duplicates are counted, not refused).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use serde_json::json;
use sluice_protocol::{Op, Reply};

use super::shards::{self, pick_shard, short, Cluster, Findings, Setup, SimDestination, SimShard, Stop};
use super::Driver;
use crate::catalog::{Naming, Registry};
use crate::env::memory::Crash;
use crate::env::Env;
use crate::firehose::deliver::{Batch, Outcome};
use crate::firehose::service::handle_op;

const STREAM: &str = "events";

/// The destination: what it holds, and how it behaves now.
struct State {
    down: Cell<bool>,
    /// Records delivered, by data, and how many times.
    delivered: RefCell<BTreeMap<String, u32>>,
    objects: Cell<u64>,
    rng: RefCell<fastrand::Rng>,
    /// A record it was handed that was never put (checked against the clients' model).
    foreign: RefCell<Vec<String>>,
    known: Rc<RefCell<Model>>,
}

struct Destination(Rc<State>);

impl SimDestination for Destination {
    fn deliver(&self, env: &Env, batch: Batch) -> LocalBoxFuture<'static, Outcome> {
        let (state, env) = (self.0.clone(), env.clone());
        Box::pin(async move {
            let wait = state.rng.borrow_mut().u64(..300);
            env.sleep(Duration::from_millis(wait)).await;
            if state.down.get() {
                return Err("the destination is down".into());
            }
            let lose_answer = state.rng.borrow_mut().u8(..10) == 0;
            for record in &batch.records {
                let data = String::from_utf8_lossy(record).into_owned();
                if !state.known.borrow().puts.contains_key(&data) {
                    state.foreign.borrow_mut().push(data.clone());
                }
                *state.delivered.borrow_mut().entry(data).or_insert(0) += 1;
            }
            state.objects.set(state.objects.get() + 1);
            if lose_answer {
                return Err("the answer was lost (the object was written)".into());
            }
            Ok(format!("object-{}", state.objects.get()))
        })
    }
}

/// What the clients know: every record put (its data is unique) and whether it was acknowledged.
#[derive(Default)]
struct Model {
    next_record: u64,
    puts: BTreeMap<String, bool>,
    found: Findings,
}

fn configuration(interval_s: u32, size_mib: u32) -> String {
    json!({
        "DeliveryStreamType": "DirectPut",
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::000000000000:role/sim",
            "BucketARN": "arn:aws:s3:::sim-bucket",
            "BufferingHints": { "SizeInMBs": size_mib, "IntervalInSeconds": interval_s },
        },
    })
    .to_string()
}

pub fn run(driver: &mut Driver, steps: usize) -> Result<(), String> {
    let shards = driver.rng.usize(2..5);
    let segment_bytes = driver.rng.u64(4..17) * 4096;
    driver.note(format!("firehose: {shards} cores, segments of {segment_bytes} bytes"));
    let model = Rc::new(RefCell::new(Model::default()));
    let state = Rc::new(State {
        down: Cell::new(false),
        delivered: RefCell::default(),
        objects: Cell::new(0),
        rng: RefCell::new(fastrand::Rng::with_seed(driver.rng.u64(..))),
        foreign: RefCell::default(),
        known: model.clone(),
    });
    // A buffer's memory for its newest records: small, so deliveries read the log too.
    let tail_bytes = driver.rng.u64(1..64) * 1024;
    driver.note(format!("firehose: {tail_bytes} bytes of records in memory per buffer"));
    let setup = Setup { shards, segment_bytes, budget: 64 << 20, destination: Some(Rc::new(Destination(state.clone()))), tail_bytes };
    let registry = Rc::new(RefCell::new(Registry::new(Naming::default())));
    let mut cluster = shards::start(driver, &setup, &registry)?;
    let creator = cluster.shard(0);
    let interval = driver.rng.u32(..4);
    let create = Op::CreateDeliveryStream { name: STREAM.into(), configuration: configuration(interval, 1), tags: vec![] };
    driver
        .block_on(async move { handle_op(&creator, create).await })?
        .map_err(|error| format!("cannot create the delivery stream: {error}"))?;
    let mut version = 1u64;
    while driver.step < steps {
        driver.step += 1;
        match driver.rng.u8(..100) {
            0..=39 => put(driver, &cluster, &model),
            40..=54 => {
                let ms = driver.rng.u64(1..2_000);
                driver.note(format!("time passes: {ms} ms"));
                driver.advance(Duration::from_millis(ms));
            }
            55..=59 => {
                let down = !state.down.get();
                driver.note(format!("the destination goes {}", if down { "down" } else { "up" }));
                state.down.set(down);
            }
            60..=62 => cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Clean)?,
            63..=65 => cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Crash(Crash::Process))?,
            66..=68 => cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Crash(Crash::Power))?,
            69..=71 => {
                let faults = driver.shuffle_faults();
                driver.note(format!("disk faults: {faults:?}"));
            }
            72..=74 => {
                let (interval, size) = (driver.rng.u32(..6), driver.rng.u32(1..3));
                driver.note(format!("update: buffering {interval} s or {size} MiB"));
                let shard = pick_shard(driver, &cluster);
                let update =
                    json!({ "ExtendedS3DestinationUpdate": { "BufferingHints": { "SizeInMBs": size, "IntervalInSeconds": interval } } });
                let op = Op::UpdateDestination {
                    name: STREAM.into(),
                    current_version_id: version.to_string(),
                    destination_id: crate::catalog::firehose::DESTINATION_ID.into(),
                    configuration: update.to_string(),
                };
                if let Ok(Ok(_)) = driver.block_on(async move { handle_op(&shard, op).await }) {
                    version += 1;
                }
            }
            _ => driver.run_ready(),
        }
        check_foreign(&state, &model)?;
        model.borrow_mut().found.report(driver)?;
    }
    // The end: the destination up, the disk calm, and time enough for every buffer to deliver.
    state.down.set(false);
    let _ = super::harness::calm(driver);
    cluster = shards::restart(driver, cluster, &setup, &registry, Stop::Crash(Crash::Power))?;
    let acknowledged: BTreeSet<String> = model.borrow().puts.iter().filter(|(_, acked)| **acked).map(|(data, _)| data.clone()).collect();
    for _ in 0..600 {
        if acknowledged.iter().all(|data| state.delivered.borrow().contains_key(data)) {
            break;
        }
        driver.advance(Duration::from_millis(500));
    }
    drop(cluster);
    check_foreign(&state, &model)?;
    let delivered = state.delivered.borrow();
    let missing: Vec<&String> = acknowledged.iter().filter(|data| !delivered.contains_key(*data)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} of {} acknowledged records never reached the destination, e.g. {}",
            missing.len(),
            acknowledged.len(),
            missing.iter().take(5).map(|data| short(data)).collect::<Vec<_>>().join(" ")
        ));
    }
    let duplicates: u32 = delivered.values().map(|count| count - 1).sum();
    driver.note(format!("delivered {} records in {} objects, {duplicates} again", delivered.len(), state.objects.get()));
    let model = model.borrow();
    driver.report.appended += model.puts.len() as u64;
    driver.report.acknowledged += acknowledged.len() as u64;
    Ok(())
}

fn check_foreign(state: &State, model: &Rc<RefCell<Model>>) -> Result<(), String> {
    let _ = model;
    match state.foreign.borrow().first() {
        Some(data) => Err(format!("the destination was handed a record never put: {}", short(data))),
        None => Ok(()),
    }
}

fn put(driver: &mut Driver, cluster: &Rc<Cluster>, model: &Rc<RefCell<Model>>) {
    let shard: Rc<SimShard> = pick_shard(driver, cluster);
    let count = driver.rng.usize(1..20);
    let mut records = Vec::with_capacity(count);
    let mut datas = Vec::with_capacity(count);
    for _ in 0..count {
        let mut model = model.borrow_mut();
        model.next_record += 1;
        let padding = if driver.rng.u8(..8) == 0 { driver.rng.usize(..3_000) } else { driver.rng.usize(..200) };
        let data = format!("r{}:{}", model.next_record, "x".repeat(padding));
        model.puts.insert(data.clone(), false);
        records.push(Bytes::copy_from_slice(data.as_bytes()));
        datas.push(data);
    }
    driver.note(format!("put {}..{} ({count}) on core {}", short(&datas[0]), short(&datas[count - 1]), shard.id));
    let model = model.clone();
    driver.spawn(async move {
        let answer = handle_op(&shard, Op::PutFirehoseRecords { name: STREAM.into(), records, batch: true }).await;
        let mut model = model.borrow_mut();
        match answer {
            Ok(Reply::FirehosePut { failed: 0, records, .. }) if records.len() == datas.len() => {
                for data in datas {
                    model.puts.insert(data, true);
                }
                model.found.note("  put: acknowledged".into());
            }
            Ok(other) => model.found.fail(format!("PutRecordBatch answered {other:?}")),
            Err(error) => model.found.note(format!("  put failed: {error}")),
        }
    });
    driver.run_ready();
}
