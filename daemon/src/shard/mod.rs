//! The one place that knows every engine: a core's `Shard` (each engine's state on this
//! core, its end of the bus), how a shard opens and finishes, the dispatch of client
//! operations and of other shards' calls to the engines, the pump (one per shard: its inbox
//! from every peer), the shard's background tasks, what shards send each other (`calls`),
//! and metadata changes across engines (`meta`).

pub mod calls;
pub mod keys;
pub mod meta;
pub mod metrics;
pub mod monitor;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use glommio::{Latency, Shares};
use sluice_protocol::{Encoder, ErrorCode, Op, OpError, Response};

pub use calls::{Answer, Bus, Call, Notice, ShardMessage};

use crate::access::Access;
use crate::catalog::current::Current;
use crate::catalog::{MetaChange, MetaOutcome, Naming, Registry, Snapshot};
use crate::config::Config;
use crate::engine::Host;
use crate::env::Env;
use crate::firehose::store::FirehoseStore;
use crate::firehose::FirehoseHost;
use crate::queue::calls::{QueueAnswer, QueueCall, QueueNotice};
use crate::queue::store::{queue_log_dir, Storage};
use crate::queue::{QueueHost, Queues};
use crate::runtime::bus::Envelope;
use crate::runtime::calls::mismatch;
use crate::runtime::{ShutdownState, SHUTDOWN_REQUESTED};
use crate::storage::log::LogOptions;
use crate::storage::meta as meta_file;
use crate::stream::calls::{StreamAnswer, StreamCall};
use crate::stream::store::StreamStore;
use crate::stream::StreamHost;
use crate::topic::calls::{TopicAnswer, TopicCall};
use crate::topic::{TopicHost, Topics};
use crate::{queue, stream, topic};

/// How a shard joins the others: the channel mesh its messages travel on.
pub type ShardMesh = glommio::channels::channel_mesh::MeshBuilder<ShardMessage, glommio::channels::channel_mesh::Full>;

/// How often shards run long-poll timers while a long poll waits.
const TIMER_TICK: Duration = Duration::from_millis(10);
/// How often an idle shard looks at `SHUTDOWN_REQUESTED` (a new waiter wakes it at once).
const IDLE_TICK: Duration = Duration::from_millis(100);
/// How often every partition's retention is enforced.
const RETENTION_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Everything one core owns: each engine's state, the snapshot they serve from, and the
/// shard's end of the bus.
pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Config,
    pub bus: Bus,
    /// The metadata snapshot every engine here serves from.
    pub catalog: Current,
    /// Shard 0 only: the catalog's single writer.
    pub writer: Option<meta::CatalogWriter>,
    pub queues: Queues,
    pub topics: Topics,
    /// The stream shards this core owns.
    pub streams: StreamStore,
    /// The delivery streams' buffers of this core.
    pub firehose: FirehoseStore,
    /// Response encoder shared by this shard's connections (never held across an await).
    pub encoder: RefCell<Encoder>,
    pub shutdown: ShutdownState,
    /// Time, timers and tasks for the engines (glommio here; the simulator's world in tests).
    pub env: Env,
    /// What this shard counts (`metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Shard 0: the metric history (`monitor`).
    pub monitor: monitor::Monitor,
    /// Shard 0 of a cluster node: its place in the cluster (set once, at start).
    pub cluster: std::cell::OnceCell<Rc<crate::cluster::Node>>,
}

fn naming(config: &Config) -> Naming {
    Naming {
        region: config.region.clone(),
        account_id: config.account_id.clone(),
        public_url: config.public_url.clone(),
        authorization: config.credentials_file.is_some(),
    }
}

/// The first half of a shard's life: joins the mesh, opens its storage, builds its engines
/// and starts its pumps and background tasks. Front ends are started by the caller
/// (`crate::serve`), which then ends the shard with `finish`.
pub async fn open(config: Config, mesh: ShardMesh) -> anyhow::Result<Rc<Shard>> {
    let (senders, mut receivers) = mesh.join().await.map_err(|_| anyhow::anyhow!("cannot join the shard mesh"))?;
    let bus = Bus::new(senders);
    let id = bus.shard_id();
    let count = bus.shard_count();
    let started = std::time::Instant::now();
    // Every shard reads the metadata file (read-only, before serving) to know which queues
    // exist while it replays its log; shard 0 keeps the registry and is its only writer.
    let loaded = meta_file::load(&config.data_dir, count).map_err(|e| anyhow::anyhow!(e))?;
    let position = loaded.as_ref().map(|loaded| loaded.position);
    let mut registry = match loaded {
        Some(loaded) => Registry::from_json(naming(&config), &loaded.registry, config.root_key.clone()).map_err(|e| {
            if e.contains("root key") {
                anyhow::anyhow!("{e}")
            } else {
                anyhow::anyhow!("{} is damaged: {e}", meta_file::path(&config.data_dir).display())
            }
        })?,
        None => Registry::new(naming(&config)).with_root(config.root_key.clone()),
    };
    registry.limits = crate::catalog::MetaLimits {
        queues_max: config.queues_max,
        subscriptions_max: config.subscriptions_max,
        stream_shards_max: config.stream_shards_max,
    };
    registry.start_leases(config.stream_lease_seconds * 1000, crate::env::Env::Glommio.now_ms());
    let snapshot = registry.snapshot();
    let options = LogOptions {
        dir: queue_log_dir(&config.data_dir, id),
        segment_bytes: config.segment_bytes,
        fsync: config.fsync,
        repair: config.repair,
        spare_ahead: true,
    };
    let budget = config.memory_budget() / count as u64;
    // Production's environment; the simulator builds its shards with its own.
    let env = crate::env::Env::Glommio;
    let keyring = Rc::new(crate::kms::at_rest::Keyring::default());
    keyring.install(snapshot.keys.clone(), snapshot.sealed.clone());
    let opened = Storage::open(env.clone(), options, budget, keyring, |queue_id| {
        queue::feed::is_feed_id(queue_id) || snapshot.by_id.contains_key(&queue_id)
    })
    .await
    .map_err(|e| anyhow::anyhow!("shard {id} cannot open its log: {e}"))?;
    for (key, records) in &opened.shredded {
        tracing::warn!(shard = id, key = %key, records, "messages sealed under a deleted KMS key are gone (deleting a key deletes what it protects)");
    }
    let recovery = &opened.recovery;
    if let Some((path, offset, bytes)) = &recovery.torn_tail {
        tracing::warn!(shard = id, file = %path.display(), offset, bytes, "cut a torn write at the end of the log (it was never acknowledged)");
    }
    for (path, offset, reason) in &recovery.dropped {
        tracing::warn!(shard = id, file = %path.display(), offset, reason, "repair skipped damaged bytes");
    }
    for bad in &opened.bad_records {
        tracing::warn!(shard = id, seq = bad.seq, kind = bad.kind, error = %bad.error, "repair skipped a record that does not decode");
    }
    tracing::info!(
        shard = id,
        records = recovery.records,
        messages = opened.messages,
        messages_on_disk_only = opened.on_disk,
        resident_bytes = opened.storage.resident_bytes(),
        memory_budget = budget,
        ms = started.elapsed().as_millis() as u64,
        "log replayed"
    );
    let tls = topic::http::tls_config(config.https_ca_file.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
    if id == 0 {
        // Files of streams deleted (or shards expired) while the daemon was down or mid-delete.
        stream::store::remove_orphans(&config.data_dir, |stream_id, shard| {
            snapshot.streams.values().any(|meta| meta.id == stream_id && shard.is_none_or(|index| meta.shard(index).is_some()))
        })
        .await;
    }
    let monitor = if id == 0 { monitor::Monitor::open(&config, env.clone()).await? } else { monitor::Monitor::none() };
    let catalog = Current::new(snapshot);
    let writer = (id == 0).then(|| meta::CatalogWriter::new(registry, meta_file::MetaWriter::new(&config.data_dir, count, position)));
    let shard = Rc::new(Shard {
        id,
        count,
        streams: StreamStore::new(
            env.clone(),
            &config.data_dir,
            config.stream_segment_bytes,
            config.fsync,
            config.repair,
            config.stream_log_idle_seconds * 1000,
        ),
        firehose: FirehoseStore::new(
            env.clone(),
            &config.data_dir,
            config.stream_segment_bytes,
            config.fsync,
            config.repair,
            crate::firehose::store::TAIL_BYTES_MAX,
        ),
        config,
        bus,
        catalog,
        writer,
        queues: Queues::new(opened.storage, opened.partitions),
        topics: Topics::new(tls),
        encoder: RefCell::new(Encoder::new()),
        shutdown: ShutdownState::default(),
        env,
        metrics: crate::metrics::Metrics::default(),
        monitor,
        cluster: Default::default(),
    });
    // Feed cursors in line with the catalog (a subscription made just before a crash gets its
    // cursor now) before anything is served.
    queue::service::reconcile_feeds(&shard, &shard.snapshot());
    // Learns which stream shards this core owns, so the files of those deleted later go.
    stream::service::forget_gone_streams(&shard).await;
    // Delivery resumes where it stood for records taken before the stop.
    crate::firehose::service::resume(&shard).await;

    // One pump for every peer's channel, in the latency-sensitive (default) task queue, like
    // the connections; the shard's own timers, deliveries, retention and compaction run in
    // the background queue below, so calls from other shards go first.
    let inbox = Inbox { peers: receivers.streams().into_iter().map(|(peer, stream)| (peer, Some(stream))).collect(), next: 0 };
    glommio::spawn_local(pump(shard.clone(), inbox)).detach();
    glommio::spawn_local(queue::service::loader(shard.clone())).detach();

    let foreground = glommio::executor().current_task_queue();
    let background = glommio::executor().create_task_queue(Shares::Static(100), Latency::NotImportant, "background");
    glommio::spawn_local_into(metrics::probe_task_queues(shard.clone(), [foreground, background]), background)
        .map_err(|e| anyhow::anyhow!("cannot spawn the task-queue probe: {e}"))?
        .detach();
    let timers_shard = shard.clone();
    glommio::spawn_local_into(timers(timers_shard), background).map_err(|e| anyhow::anyhow!("cannot spawn timers: {e}"))?.detach();
    glommio::spawn_local_into(topic::http::http_deliveries(shard.clone()), background)
        .map_err(|e| anyhow::anyhow!("cannot spawn HTTP deliveries: {e}"))?
        .detach();
    glommio::spawn_local_into(stream_retention(shard.clone()), background)
        .map_err(|e| anyhow::anyhow!("cannot spawn stream retention: {e}"))?
        .detach();
    if id == 0 {
        glommio::spawn_local_into(queue::redrive::run(shard.clone()), background)
            .map_err(|e| anyhow::anyhow!("cannot spawn message move tasks: {e}"))?
            .detach();
        glommio::spawn_local_into(keys::rotations(shard.clone()), background)
            .map_err(|e| anyhow::anyhow!("cannot spawn key rotations: {e}"))?
            .detach();
        glommio::spawn_local_into(on_demand_scaling(shard.clone()), background)
            .map_err(|e| anyhow::anyhow!("cannot spawn ON_DEMAND stream scaling: {e}"))?
            .detach();
        glommio::spawn_local_into(monitor::run(shard.clone()), background)
            .map_err(|e| anyhow::anyhow!("cannot spawn metric sampling: {e}"))?
            .detach();
    }
    let compaction_shard = shard.clone();
    glommio::spawn_local_into(queue::compaction::run(compaction_shard), background)
        .map_err(|e| anyhow::anyhow!("cannot spawn compaction: {e}"))?
        .detach();

    Ok(shard)
}

/// The last half of a shard's life, once its listeners have stopped accepting: waits for
/// its connections to finish (within the grace period), keeps answering peers until every
/// shard has drained, and closes its logs.
pub async fn finish(shard: Rc<Shard>, drained: Arc<AtomicUsize>) {
    let (id, count) = (shard.id, shard.count);
    // Drain: wait for this shard's connections to finish, within the grace period.
    let grace = glommio::timer::sleep(Duration::from_secs(shard.config.shutdown_grace_seconds));
    futures::pin_mut!(grace);
    while shard.shutdown.connections.get() > 0 {
        let closed = shard.shutdown.connection_closed.listen();
        if shard.shutdown.connections.get() == 0 {
            break;
        }
        if let futures::future::Either::Right(_) = futures::future::select(closed, grace.as_mut()).await {
            tracing::warn!(shard = id, open = shard.shutdown.connections.get(), "grace period over, closing anyway");
            break;
        }
    }
    drained.fetch_add(1, Ordering::SeqCst);
    // Keep the pumps serving peers until every shard has drained.
    while drained.load(Ordering::SeqCst) < count {
        glommio::timer::sleep(TIMER_TICK).await;
    }
    shard.streams.close().await;
    shard.firehose.close().await;
    if let Err(error) = shard.queues.storage.close().await {
        tracing::error!(shard = id, %error, "closing the log failed");
    }
    let stats = shard.queues.storage.log().stats();
    tracing::info!(
        shard = id,
        appends = stats.appends,
        flushes = stats.flushes,
        fdatasyncs = stats.fdatasyncs,
        log_bytes = shard.queues.storage.log().disk_bytes(),
        "log statistics since start"
    );
    tracing::debug!(shard = id, "stopped");
}

/// Every peer's channel as one stream, read in turn (no peer can starve another), with no
/// allocation per message.
struct Inbox {
    /// Each peer's channel; `None` once it has closed.
    peers: Vec<(usize, Option<glommio::channels::shared_channel::ConnectedReceiver<ShardMessage>>)>,
    /// The peer to look at first next time.
    next: usize,
}

impl futures::Stream for Inbox {
    type Item = (usize, ShardMessage);

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        let count = self.peers.len();
        let mut open = false;
        for step in 0..count {
            let at = (self.next + step) % count;
            let (peer, channel) = &mut self.peers[at];
            let Some(receiver) = channel else { continue };
            match receiver.poll_next_unpin(cx) {
                std::task::Poll::Ready(Some(message)) => {
                    let peer = *peer;
                    self.next = at + 1;
                    return std::task::Poll::Ready(Some((peer, message)));
                }
                std::task::Poll::Ready(None) => *channel = None,
                std::task::Poll::Pending => open = true,
            }
        }
        if open {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(None)
        }
    }
}

/// The shard's inbox: reads every peer's channel, answers calls (each in a task of its own:
/// a call may wait for the disk), resolves answers, hands notices to their engine. Ends
/// once every peer's channel has closed.
async fn pump(shard: Rc<Shard>, mut inbox: Inbox) {
    while let Some((_peer, message)) = inbox.next().await {
        match message {
            Envelope::Call { from, corr, call } => {
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    let serving = &shard.metrics.bus_calls_serving;
                    serving.set(serving.get() + 1);
                    let answer = shard.handle_call(call).await;
                    serving.set(serving.get().saturating_sub(1));
                    shard.bus.answer(from, corr, answer).await;
                })
                .detach();
            }
            Envelope::Answer { corr, answer } => shard.bus.resolve(corr, answer),
            Envelope::Notice(Notice::Queue(notice)) => queue::service::on_notice(&shard, notice),
        }
    }
    tracing::debug!(shard = shard.id, "every peer's channel closed");
}

impl Shard {
    /// Waits `wait`, or less if a shutdown is asked for meanwhile; answers whether the shard
    /// goes on (no shutdown asked for): what every background loop sleeps on.
    pub async fn rest(&self, wait: Duration) -> bool {
        let shutdown = self.shutdown.event.listen();
        let timer = glommio::timer::sleep(wait);
        futures::pin_mut!(shutdown, timer);
        futures::future::select(shutdown, timer).await;
        !self.shutdown.requested.get()
    }

    /// Runs one operation of a client on the engine it is for.
    pub async fn handle_op(self: &Rc<Self>, op: Op) -> Response {
        match engine_of(&op) {
            Engine::Queue => queue::service::handle_op(self, op).await,
            Engine::Topic => topic::service::handle_op(self, op).await,
            Engine::Stream => stream::service::handle_op(self, op).await,
            Engine::Keys => keys::handle_op(self, op).await,
            Engine::Monitor => monitor::handle_op(self, op).await,
            Engine::Firehose => crate::firehose::service::handle_op(self, op).await,
            Engine::None => {
                Err(OpError::new(ErrorCode::MalformedRequest, "Hello and Authenticate are only valid as a connection's first requests"))
            }
        }
    }

    /// Runs a client's operation as `handle_op` does once `access` may (`access::authorize`),
    /// recorded in the audit log (when there is one and it records such calls) with who made
    /// it and how it ended — a refusal too.
    pub async fn handle_op_for(self: &Rc<Self>, op: Op, access: &Access, caller: impl FnOnce() -> crate::audit::Caller) -> Response {
        let decided = self.authorize(&op, access);
        let Some((sink, described)) = self.config.audit.as_ref().and_then(|sink| Some((sink, sink.describe(&op)?))) else {
            decided?;
            return self.handle_op(op).await;
        };
        let response = match decided {
            Ok(()) => self.handle_op(op).await,
            Err(error) => Err(error),
        };
        sink.record(described, &caller(), &response, &self.config.region, &self.config.account_id);
        response
    }

    /// Whether `access` may run `op` (always, without `--credentials`).
    pub fn authorize(&self, op: &Op, access: &Access) -> Result<(), OpError> {
        if access.principal.is_none() {
            return match &self.config.credentials {
                None => Ok(()),
                // Unsigned: only the links SNS hands out get here (the gateway refuses the rest).
                Some(_) => crate::access::unsigned_link_allowed(&self.catalog.get(), op),
            };
        }
        crate::access::authorize(&self.catalog.get(), op, access, &self.config.seal_key)
    }

    /// Records in the audit log (when it records such calls) an operation that is answered by
    /// a stream of events rather than once (SubscribeToShard): as it starts, its later
    /// failures travelling in its events.
    pub fn audit_start(&self, op: &Op, caller: impl FnOnce() -> crate::audit::Caller) {
        if let Some((sink, described)) = self.config.audit.as_ref().and_then(|sink| Some((sink, sink.describe(op)?))) {
            sink.record(described, &caller(), &Ok(sluice_protocol::Reply::Done), &self.config.region, &self.config.account_id);
        }
    }

    /// Hands a call from another shard to the engine it is for.
    async fn handle_call(self: &Rc<Self>, call: Call) -> Answer {
        match call {
            Call::Queue(call) => Answer::Queue(queue::service::handle_call(self, call).await),
            Call::Topic(call) => Answer::Topic(topic::service::handle_call(self, call).await),
            Call::Stream(call) => Answer::Stream(stream::service::handle_call(self, call).await),
            // Boxed: applying a change calls other shards, whose answers come through here.
            Call::Meta(change) => Answer::Meta(Box::pin(meta::apply(self, change)).await),
            Call::Publish(snapshot) => {
                install(self, snapshot);
                Answer::Publish
            }
            Call::Metrics => Answer::Metrics(Box::new(metrics::report(self))),
            Call::Monitor(op) => Answer::Monitor(Box::pin(monitor::handle_op(self, *op)).await),
        }
    }
}

/// Installs a newer metadata snapshot on a shard (this one, or the simulator's) and lets each
/// engine catch up with it.
pub fn install<H: QueueHost + StreamHost + FirehoseHost>(host: &Rc<H>, snapshot: Arc<Snapshot>) {
    if host.catalog().install(snapshot.clone()) {
        host.queues().storage.keyring().install(snapshot.keys.clone(), snapshot.sealed.clone());
        queue::service::installed(host, &snapshot);
    }
    // Logs of deleted streams and expired shards go in the background.
    let shard = host.clone();
    host.env().spawn(async move { stream::service::forget_gone_streams(&shard).await });
    // Buffers of deleted delivery streams go too.
    let shard = host.clone();
    host.env().spawn(async move { crate::firehose::service::installed(&shard).await });
}

enum Engine {
    Queue,
    Topic,
    Stream,
    /// The key service (`keys`).
    Keys,
    /// Alarms and metric history (`monitor`).
    Monitor,
    Firehose,
    None,
}

/// Which engine runs an operation.
fn engine_of(op: &Op) -> Engine {
    match op {
        Op::CreateTopic { .. }
        | Op::DeleteTopic { .. }
        | Op::ListTopics { .. }
        | Op::GetTopicAttributes { .. }
        | Op::SetTopicAttributes { .. }
        | Op::Subscribe { .. }
        | Op::ConfirmSubscription { .. }
        | Op::Unsubscribe { .. }
        | Op::ListSubscriptions { .. }
        | Op::GetSubscriptionAttributes { .. }
        | Op::SetSubscriptionAttributes { .. }
        | Op::Publish { .. }
        | Op::PublishBatch { .. }
        | Op::AddTopicPermission { .. }
        | Op::RemoveTopicPermission { .. }
        | Op::TagTopic { .. }
        | Op::UntagTopic { .. }
        | Op::ListTopicTags { .. } => Engine::Topic,
        Op::CreateStream { .. }
        | Op::DeleteStream { .. }
        | Op::DescribeStream { .. }
        | Op::DescribeStreamSummary { .. }
        | Op::ListStreams { .. }
        | Op::ListShards(_)
        | Op::PutRecord { .. }
        | Op::PutRecords { .. }
        | Op::GetShardIterator { .. }
        | Op::GetRecords { .. }
        | Op::IncreaseStreamRetentionPeriod { .. }
        | Op::DecreaseStreamRetentionPeriod { .. }
        | Op::SplitShard { .. }
        | Op::MergeShards { .. }
        | Op::UpdateShardCount { .. }
        | Op::DescribeLimits
        | Op::DescribeAccountSettings
        | Op::PutResourcePolicy { .. }
        | Op::GetResourcePolicy { .. }
        | Op::DeleteResourcePolicy { .. }
        | Op::AddTagsToStream { .. }
        | Op::RemoveTagsFromStream { .. }
        | Op::ListTagsForStream { .. }
        | Op::RegisterStreamConsumer { .. }
        | Op::DeregisterStreamConsumer(_)
        | Op::DescribeStreamConsumer(_)
        | Op::ListStreamConsumers { .. }
        | Op::SubscribeToShard { .. }
        | Op::SetStreamEncryption { .. }
        | Op::UpdateMaxRecordSize { .. }
        | Op::UpdateStreamMode { .. }
        | Op::LeaseShards { .. }
        | Op::CheckpointShard { .. }
        | Op::ReleaseShards { .. }
        | Op::DescribeConsumerGroup { .. }
        | Op::SetEnhancedMonitoring { .. } => Engine::Stream,
        Op::CreateKey { .. }
        | Op::DescribeKey { .. }
        | Op::ListKeys { .. }
        | Op::CreateAlias { .. }
        | Op::DeleteAlias { .. }
        | Op::ListAliases { .. }
        | Op::SetKeyEnabled { .. }
        | Op::ScheduleKeyDeletion { .. }
        | Op::CancelKeyDeletion { .. }
        | Op::SetKeyRotation { .. }
        | Op::GetKeyRotationStatus { .. }
        | Op::RotateKeyOnDemand { .. }
        | Op::Encrypt { .. }
        | Op::Decrypt { .. }
        | Op::GenerateDataKey { .. } => Engine::Keys,
        Op::PutMetricAlarm(_)
        | Op::DescribeAlarms { .. }
        | Op::DeleteAlarms { .. }
        | Op::SetAlarmState { .. }
        | Op::SetAlarmActions { .. }
        | Op::GetMetricStatistics { .. }
        | Op::GetMetricData { .. }
        | Op::ListMetrics { .. } => Engine::Monitor,
        Op::CreateDeliveryStream { .. }
        | Op::DeleteDeliveryStream { .. }
        | Op::DescribeDeliveryStream { .. }
        | Op::ListDeliveryStreams { .. }
        | Op::PutFirehoseRecords { .. }
        | Op::UpdateDestination { .. }
        | Op::TagDeliveryStream { .. }
        | Op::UntagDeliveryStream { .. }
        | Op::ListTagsForDeliveryStream { .. }
        | Op::SetDeliveryStreamEncryption { .. } => Engine::Firehose,
        Op::Hello { .. } | Op::Authenticate { .. } => Engine::None,
        _ => Engine::Queue,
    }
}

impl Host for Shard {
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
    fn leads_metadata(&self) -> bool {
        self.cluster.get().is_none_or(|node| node.leads())
    }
    async fn meta_change(self: &Rc<Self>, change: MetaChange) -> Result<MetaOutcome, OpError> {
        meta::change(self, change).await
    }
}

impl QueueHost for Shard {
    fn queues(&self) -> &Queues {
        &self.queues
    }
    async fn call_queue(self: &Rc<Self>, shard: usize, call: QueueCall) -> Result<QueueAnswer, OpError> {
        if shard == self.id {
            return Ok(queue::service::handle_call(self, call).await);
        }
        match self.bus.call(shard, Call::Queue(call)).await? {
            Answer::Queue(answer) => Ok(answer),
            other => Err(mismatch("a queue call", &other)),
        }
    }
    async fn notify_queue(self: &Rc<Self>, peer: usize, notice: QueueNotice) {
        self.bus.notify(peer, Notice::Queue(notice)).await
    }
}

impl TopicHost for Shard {
    fn topics(&self) -> &Topics {
        &self.topics
    }
    async fn call_topic(self: &Rc<Self>, shard: usize, call: TopicCall) -> Result<TopicAnswer, OpError> {
        if shard == self.id {
            return Ok(topic::service::handle_call(self, call).await);
        }
        match self.bus.call(shard, Call::Topic(call)).await? {
            Answer::Topic(answer) => Ok(answer),
            other => Err(mismatch("a topic call", &other)),
        }
    }
    async fn put_firehose(self: &Rc<Self>, name: &str, record: bytes::Bytes) -> Result<(), OpError> {
        let op = Op::PutFirehoseRecords { name: name.to_owned(), records: vec![record], batch: false };
        crate::firehose::service::handle_op(self, op).await.map(|_| ())
    }
}

impl FirehoseHost for Shard {
    fn firehose(&self) -> &FirehoseStore {
        &self.firehose
    }
    async fn deliver(&self, batch: crate::firehose::deliver::Batch) -> crate::firehose::deliver::Outcome {
        crate::firehose::deliver::deliver(batch).await
    }
    async fn stream_op(self: &Rc<Self>, op: sluice_protocol::Op) -> sluice_protocol::Response {
        crate::stream::service::handle_op(self, op).await
    }
}

impl StreamHost for Shard {
    fn streams(&self) -> &StreamStore {
        &self.streams
    }
    async fn call_stream(self: &Rc<Self>, shard: usize, call: StreamCall) -> Result<StreamAnswer, OpError> {
        if shard == self.id {
            return Ok(stream::service::handle_call(self, call).await);
        }
        match self.bus.call(shard, Call::Stream(call)).await? {
            Answer::Stream(answer) => Ok(answer),
            other => Err(mismatch("a stream call", &other)),
        }
    }
}

/// How often stream retention runs (and idle logs are closed: at least twice per idle period).
const STREAM_RETENTION_EVERY: Duration = Duration::from_secs(10);

/// Background stream retention (see `Shard::stream_retention`).
async fn stream_retention(shard: Rc<Shard>) {
    loop {
        if shard.shutdown.requested.get() {
            return;
        }
        stream::service::stream_retention(&shard).await;
        let every = STREAM_RETENTION_EVERY.min(Duration::from_millis(shard.streams.idle_ms / 2)).max(Duration::from_millis(500));
        shard.rest(every).await;
    }
}

/// Shard 0, in the background: ON_DEMAND streams' scaling (`stream::scaling`).
async fn on_demand_scaling(shard: Rc<Shard>) {
    let mut scaler = stream::scaling::Scaler::default();
    let every = Duration::from_secs(shard.config.on_demand_evaluation_seconds);
    loop {
        if shard.shutdown.requested.get() {
            return;
        }
        if shard.leads_metadata() {
            stream::scaling::evaluate(&shard, &mut scaler).await;
        }
        shard.rest(every).await;
    }
}

/// Background timers: long-poll wake-ups for delayed and timed-out messages,
/// retention sweeps, and noticing a shutdown request.
async fn timers(shard: Rc<Shard>) {
    let mut last_sweep = std::time::Instant::now();
    loop {
        if shard.queues.waiters.borrow().is_empty() {
            let waiter_added = shard.queues.waiter_added.listen();
            let idle = glommio::timer::sleep(IDLE_TICK);
            futures::pin_mut!(waiter_added, idle);
            futures::future::select(waiter_added, idle).await;
        } else {
            glommio::timer::sleep(TIMER_TICK).await;
        }
        if SHUTDOWN_REQUESTED.load(Ordering::Relaxed) && !shard.shutdown.requested.get() {
            shard.shutdown.requested.set(true);
            shard.shutdown.event.notify_all();
        }
        queue::service::tick_watched(&shard);
        if last_sweep.elapsed() >= RETENTION_SWEEP_EVERY {
            queue::service::tick_all(&shard);
            last_sweep = std::time::Instant::now();
        }
    }
}
