//! Simulated shards for the engine-level targets: each implements the engines' host traits
//! as `crate::shard::Shard` does, with its own queue log and stream logs on the simulated
//! disk, and cross-shard calls and notices that take random virtual time. All the shards of
//! one incarnation of the process make a `Cluster`; a restart drops it (its tasks with it)
//! and opens the next from the disk.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::time::Duration;

use clap::Parser;
use sluice_protocol::OpError;

use super::{harness, Driver};
use crate::catalog::current::Current;
use crate::catalog::{MetaChange, MetaOutcome, Registry};
use crate::config::Config;
use crate::engine::Host;
use crate::env::memory::Crash;
use crate::env::Env;
use crate::queue::calls::{QueueAnswer, QueueCall, QueueNotice};
use crate::queue::store::Storage;
use crate::queue::{QueueHost, Queues};
use crate::runtime::ShutdownState;
use crate::storage::log::{FsyncMode, LogOptions};
use crate::stream::calls::{StreamAnswer, StreamCall};
use crate::stream::store::StreamStore;
use crate::stream::StreamHost;
use crate::topic::calls::{TopicAnswer, TopicCall};
use crate::topic::{TopicHost, Topics};
use crate::{queue, stream, topic};

/// The shape of one run's process.
pub struct Setup {
    pub shards: usize,
    pub segment_bytes: u64,
    /// The queue engine's memory budget per shard.
    pub budget: u64,
    /// Where Firehose delivers (the `firehose` target's model destination).
    pub destination: Option<Rc<dyn SimDestination>>,
    /// The memory each Firehose buffer keeps its newest records in (small, so it fills).
    pub tail_bytes: u64,
}

/// A Firehose destination as the simulation has it: it outlives the process (as S3 would).
pub trait SimDestination {
    /// Takes a batch (after simulated time, perhaps failing; perhaps keeping it and failing).
    fn deliver(
        &self,
        env: &Env,
        batch: crate::firehose::deliver::Batch,
    ) -> futures::future::LocalBoxFuture<'static, crate::firehose::deliver::Outcome>;
}

/// One shard of the simulated process.
pub struct SimShard {
    pub id: usize,
    count: usize,
    config: Config,
    pub env: Env,
    shutdown: ShutdownState,
    pub catalog: Current,
    pub queues: Queues,
    topics: Topics,
    pub streams: StreamStore,
    pub firehose: crate::firehose::store::FirehoseStore,
    destination: Option<Rc<dyn SimDestination>>,
    metrics: crate::metrics::Metrics,
    cluster: Weak<Cluster>,
}

/// Every shard of one incarnation, and what they share in this simulation: the registry
/// (shard 0's, kept in memory here: the metadata file is not what these targets test), one
/// metadata change at a time, and the random delays of cross-shard messages.
pub struct Cluster {
    pub shards: RefCell<Vec<Rc<SimShard>>>,
    registry: Rc<RefCell<Registry>>,
    changing: futures::lock::Mutex<()>,
    rng: RefCell<fastrand::Rng>,
    /// Calls and notices sent between shards (for the trail).
    pub messages: Cell<u64>,
}

impl Cluster {
    pub fn shard(&self, id: usize) -> Rc<SimShard> {
        self.shards.borrow()[id].clone()
    }

    /// How long a message between two shards takes: mostly nothing, sometimes a while.
    fn delay(&self) -> Duration {
        self.messages.set(self.messages.get() + 1);
        let mut rng = self.rng.borrow_mut();
        match rng.u8(..10) {
            0..=5 => Duration::ZERO,
            6..=8 => Duration::from_micros(rng.u64(1..500)),
            _ => Duration::from_millis(rng.u64(1..20)),
        }
    }
}

impl SimShard {
    fn cluster(&self) -> Rc<Cluster> {
        self.cluster.upgrade().expect("a shard outlived its cluster")
    }
}

impl Host for SimShard {
    fn id(&self) -> usize {
        self.id
    }
    fn count(&self) -> usize {
        self.count
    }
    fn config(&self) -> &Config {
        &self.config
    }
    fn env(&self) -> &Env {
        &self.env
    }
    fn shutdown(&self) -> &ShutdownState {
        &self.shutdown
    }
    fn catalog(&self) -> &Current {
        &self.catalog
    }
    fn keyring(&self) -> &crate::kms::at_rest::Keyring {
        self.queues.storage.keyring()
    }
    fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }
    /// As shard 0 runs a change (`shard::meta`): prepared by the stream engine (a reshard
    /// seals the shards it closes), applied, and installed on every shard (`shard::install`)
    /// before it returns.
    async fn meta_change(self: &Rc<Self>, change: MetaChange) -> Result<MetaOutcome, OpError> {
        let cluster = self.cluster();
        let _one_at_a_time = cluster.changing.lock().await;
        let before = cluster.registry.borrow().clone();
        let mut change = change;
        stream::service::prepare_change(self, &before, &mut change).await?;
        let (outcome, snapshot) = cluster.registry.borrow_mut().apply(change, self.env.now_ms())?;
        if let Some(snapshot) = snapshot {
            for shard in cluster.shards.borrow().iter() {
                crate::shard::install(shard, snapshot.clone());
            }
        }
        Ok(outcome)
    }
}

impl QueueHost for SimShard {
    fn queues(&self) -> &Queues {
        &self.queues
    }
    async fn call_queue(self: &Rc<Self>, shard: usize, call: QueueCall) -> Result<QueueAnswer, OpError> {
        if shard == self.id {
            return Ok(queue::service::handle_call(self, call).await);
        }
        let cluster = self.cluster();
        self.env.sleep(cluster.delay()).await;
        let answer = queue::service::handle_call(&cluster.shard(shard), call).await;
        self.env.sleep(cluster.delay()).await;
        Ok(answer)
    }
    async fn notify_queue(self: &Rc<Self>, peer: usize, notice: QueueNotice) {
        let cluster = self.cluster();
        let delay = cluster.delay();
        let env = self.env.clone();
        self.env.spawn(async move {
            env.sleep(delay).await;
            queue::service::on_notice(&cluster.shard(peer), notice);
        });
    }
}

impl TopicHost for SimShard {
    fn topics(&self) -> &Topics {
        &self.topics
    }
    async fn call_topic(self: &Rc<Self>, shard: usize, call: TopicCall) -> Result<TopicAnswer, OpError> {
        if shard == self.id {
            return Ok(topic::service::handle_call(self, call).await);
        }
        let cluster = self.cluster();
        self.env.sleep(cluster.delay()).await;
        let answer = topic::service::handle_call(&cluster.shard(shard), call).await;
        self.env.sleep(cluster.delay()).await;
        Ok(answer)
    }
    async fn put_firehose(self: &Rc<Self>, name: &str, record: bytes::Bytes) -> Result<(), OpError> {
        let op = sluice_protocol::Op::PutFirehoseRecords { name: name.to_owned(), records: vec![record], batch: false };
        crate::firehose::service::handle_op(self, op).await.map(|_| ())
    }
}

impl crate::firehose::FirehoseHost for SimShard {
    fn firehose(&self) -> &crate::firehose::store::FirehoseStore {
        &self.firehose
    }
    async fn deliver(&self, batch: crate::firehose::deliver::Batch) -> crate::firehose::deliver::Outcome {
        match &self.destination {
            Some(destination) => destination.deliver(&self.env, batch).await,
            None => Err("the simulation has no Firehose destination".into()),
        }
    }
    async fn stream_op(self: &Rc<Self>, op: sluice_protocol::Op) -> sluice_protocol::Response {
        crate::stream::service::handle_op(self, op).await
    }
}

impl StreamHost for SimShard {
    fn streams(&self) -> &StreamStore {
        &self.streams
    }
    async fn call_stream(self: &Rc<Self>, shard: usize, call: StreamCall) -> Result<StreamAnswer, OpError> {
        if shard == self.id {
            return Ok(stream::service::handle_call(self, call).await);
        }
        let cluster = self.cluster();
        self.env.sleep(cluster.delay()).await;
        let answer = stream::service::handle_call(&cluster.shard(shard), call).await;
        self.env.sleep(cluster.delay()).await;
        Ok(answer)
    }
}

/// Where shard `shard` keeps its queue log.
pub fn queue_log_dir(shard: usize) -> PathBuf {
    PathBuf::from(format!("/sim/queues/{shard}"))
}

fn log_options(setup: &Setup, shard: usize) -> LogOptions {
    LogOptions { dir: queue_log_dir(shard), segment_bytes: setup.segment_bytes, fsync: FsyncMode::Always, repair: false, spare_ahead: true }
}

/// Starts an incarnation: opens every shard's queue log (replaying it) and its stream store,
/// and starts each shard's background tasks.
pub fn start(driver: &mut Driver, setup: &Setup, registry: &Rc<RefCell<Registry>>) -> Result<Rc<Cluster>, String> {
    let faults = harness::calm(driver);
    let snapshot = registry.borrow().snapshot();
    let cluster = Rc::new(Cluster {
        shards: RefCell::default(),
        registry: registry.clone(),
        changing: futures::lock::Mutex::new(()),
        rng: RefCell::new(fastrand::Rng::with_seed(driver.rng.u64(..))),
        messages: Cell::new(0),
    });
    let mut config = Config::parse_from(["sluiced"]);
    // A registry with a root key is a server that encrypts.
    config.root_key = registry.borrow().root();
    // Consumer groups' leases are not kept: each start begins them afresh, as `shard::open` does.
    // (A short lease, so that leases run out and change hands in a run's few simulated seconds.)
    registry.borrow_mut().start_leases(SIM_LEASE_MS, driver.env().now_ms());
    let tls = crate::topic::http::tls_config(None)?;
    for id in 0..setup.shards {
        let env = driver.env();
        let options = log_options(setup, id);
        let budget = setup.budget;
        let known = snapshot.clone();
        let keyring = std::rc::Rc::new(crate::kms::at_rest::Keyring::new(snapshot.keys.clone()));
        keyring.install(snapshot.keys.clone(), snapshot.sealed.clone());
        let opened = driver.block_on(async move {
            Storage::open(env, options, budget, keyring, |queue_id| {
                crate::queue::feed::is_feed_id(queue_id) || known.by_id.contains_key(&queue_id)
            })
            .await
        })?;
        let opened = opened.map_err(|error| {
            format!("shard {id}'s queue log does not open: {error}\n  disk:{}", super::describe_dir(&driver.world, &queue_log_dir(id)))
        })?;
        let catalog = Current::new(snapshot.clone());
        let streams = StreamStore::new(driver.env(), std::path::Path::new("/sim"), setup.segment_bytes, FsyncMode::Always, false, 60_000);
        let shard = Rc::new(SimShard {
            id,
            count: setup.shards,
            config: config.clone(),
            env: driver.env(),
            shutdown: ShutdownState::default(),
            catalog,
            queues: Queues::new(opened.storage, opened.partitions),
            topics: Topics::new(tls.clone()),
            streams,
            firehose: crate::firehose::store::FirehoseStore::new(
                driver.env(),
                std::path::Path::new("/sim"),
                setup.segment_bytes,
                FsyncMode::Always,
                false,
                setup.tail_bytes,
            ),
            destination: setup.destination.clone(),
            metrics: crate::metrics::Metrics::default(),
            cluster: Rc::downgrade(&cluster),
        });
        cluster.shards.borrow_mut().push(shard);
    }
    let shards: Vec<Rc<SimShard>> = cluster.shards.borrow().clone();
    for shard in &shards {
        // Feed cursors in line with the catalog before anything is served, as `shard::open` has it.
        queue::service::reconcile_feeds(shard, &snapshot);
        driver.spawn(queue::service::loader(shard.clone()));
        driver.spawn(timers(shard.clone()));
        driver.spawn(queue::compaction::run(shard.clone()));
    }
    // Each shard learns which stream shards it owns, and resumes its delivery streams'
    // deliveries, as `shard::open` has it do.
    driver.block_on(async move {
        for shard in shards {
            stream::service::forget_gone_streams(&shard).await;
            crate::firehose::service::resume(&shard).await;
        }
    })?;
    driver.world.fs().set_faults(faults);
    Ok(cluster)
}

/// Consumer groups' lease time in the simulation.
const SIM_LEASE_MS: u64 = 400;

/// The shard's long-poll timers, retention sweep and stream retention, as the shard's
/// background tasks run them.
async fn timers(shard: Rc<SimShard>) {
    let mut ticks = 0u64;
    // Shard 0 scales ON_DEMAND streams every simulated second, taking a shard's capacity to
    // be small enough for the simulation's few records to split shards and merge them again.
    let mut scaler = stream::scaling::Scaler::with_capacity(stream::store::Load { records: 20, bytes: 8 * 1024 });
    loop {
        shard.env.sleep(Duration::from_millis(10)).await;
        queue::service::tick_watched(&shard);
        ticks += 1;
        if ticks.is_multiple_of(100) {
            queue::service::tick_all(&shard);
        }
        if ticks.is_multiple_of(1000) {
            stream::service::stream_retention(&shard).await;
        }
        if shard.id == 0 && ticks.is_multiple_of(100) {
            stream::scaling::evaluate(&shard, &mut scaler).await;
        }
    }
}

/// How an incarnation ends.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    Clean,
    Crash(Crash),
}

/// Ends the incarnation (a clean stop closes every log first) and starts the next.
pub fn restart(
    driver: &mut Driver,
    cluster: Rc<Cluster>,
    setup: &Setup,
    registry: &Rc<RefCell<Registry>>,
    stop: Stop,
) -> Result<Rc<Cluster>, String> {
    let stop = match stop {
        Stop::Clean => {
            let shards: Vec<Rc<SimShard>> = cluster.shards.borrow().clone();
            let closed = driver.block_on(async move {
                let mut failed = None;
                for shard in shards {
                    shard.streams.close().await;
                    shard.firehose.close().await;
                    if let Err(error) = shard.queues.storage.close().await {
                        failed.get_or_insert(error.to_string());
                    }
                }
                failed
            })?;
            if let Some(error) = closed {
                driver.note(format!("close failed ({error}): the process exits"));
            }
            Crash::Process
        }
        Stop::Crash(crash) => crash,
    };
    driver.note(format!("restart after {stop:?} ({} messages between shards)", cluster.messages.get()));
    cluster.shards.borrow_mut().clear();
    drop(cluster);
    driver.crash(stop);
    start(driver, setup, registry)
}

/// What a target's client tasks found while they ran: lines for the trail, and the first
/// fault (both taken after every step by `report`).
#[derive(Default)]
pub struct Findings {
    failure: Option<String>,
    notes: Vec<String>,
}

impl Findings {
    pub fn note(&mut self, line: String) {
        self.notes.push(line);
    }

    pub fn fail(&mut self, message: String) {
        self.failure.get_or_insert(message);
    }

    /// Moves the notes into the trail; the first fault, if one was found.
    pub fn report(&mut self, driver: &mut Driver) -> Result<(), String> {
        for line in std::mem::take(&mut self.notes) {
            driver.note(line);
        }
        self.failure.clone().map_or(Ok(()), Err)
    }
}

/// A message body or record as the trail shows it: its name, not its padding.
pub fn short(text: &str) -> &str {
    text.split(':').next().unwrap_or(text)
}

pub fn pick_shard(driver: &mut Driver, cluster: &Rc<Cluster>) -> Rc<SimShard> {
    let count = cluster.shards.borrow().len();
    cluster.shard(driver.rng.usize(..count))
}
