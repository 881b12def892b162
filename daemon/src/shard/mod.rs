//! The one place that knows every engine: a core's `Shard` (each engine's state on this
//! core, its storage, its end of the bus), how a shard opens and finishes, the pump
//! that hands other shards' calls to the engines, the shard's background tasks, and what
//! shards ask of each other (`calls`).

pub mod calls;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use glommio::{Latency, Shares};
use sluice_protocol::{Encoder, OpError};

pub use calls::{Answer, Bus, Call, Notice, Request, ShardMessage};

/// How a shard joins the others: the channel mesh its messages travel on.
pub type ShardMesh = glommio::channels::channel_mesh::MeshBuilder<ShardMessage, glommio::channels::channel_mesh::Full>;

use crate::catalog::{Naming, Registry};
use crate::config::Config;
use crate::env::notify::LocalNotify;
use crate::queue::store::{queue_log_dir, Storage};
use crate::queue::QueueState;
use crate::runtime::bus::Envelope;
use crate::runtime::{ShutdownState, SHUTDOWN_REQUESTED};
use crate::storage::log::LogOptions;
use crate::storage::meta;

/// How often shards run long-poll timers while a long poll waits.
const TIMER_TICK: Duration = Duration::from_millis(10);
/// How often an idle shard looks at `SHUTDOWN_REQUESTED` (a new waiter wakes it at once).
const IDLE_TICK: Duration = Duration::from_millis(100);
/// How often every partition's retention is enforced.
const RETENTION_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Everything one core owns.
pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Config,
    pub bus: Bus,
    pub storage: Storage,
    pub queues: QueueState,
    /// The stream shards this core owns.
    pub streams: crate::stream::store::StreamStore,
    /// Metadata writer; only on shard 0.
    pub registry: Option<RefCell<Registry>>,
    /// Serializes metadata changes through to the metadata file (shard 0).
    /// Shard 0: writes metadata changes to disk (`storage::meta`).
    pub meta_writer: Option<meta::MetaWriter>,
    pub meta_saving: glommio::sync::Semaphore,
    /// Response encoder shared by this shard's connections (never held across an await).
    pub encoder: RefCell<Encoder>,
    /// Notified when an HTTP delivery is queued on this shard (or is due again at once).
    pub http_wake: LocalNotify,
    /// TLS settings for `https` subscription endpoints (immutable).
    pub tls: Arc<futures_rustls::rustls::ClientConfig>,
    pub shutdown: ShutdownState,
    /// Time, timers and tasks for the engines (glommio here; the simulator's world in tests).
    pub env: crate::env::Env,
}

fn naming(config: &Config) -> Naming {
    Naming { region: config.region.clone(), account_id: config.account_id.clone(), public_url: config.public_url.clone() }
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
    let loaded = meta::load(&config.data_dir, count).map_err(|e| anyhow::anyhow!(e))?;
    let position = loaded.as_ref().map(|loaded| loaded.position);
    let mut registry = match loaded {
        Some(loaded) => Registry::from_json(naming(&config), &loaded.registry)
            .map_err(|e| anyhow::anyhow!("{} is damaged: {e}", meta::path(&config.data_dir).display()))?,
        None => Registry::new(naming(&config)),
    };
    registry.limits = crate::catalog::MetaLimits {
        queues_max: config.queues_max,
        subscriptions_max: config.subscriptions_max,
        stream_shards_max: config.stream_shards_max,
    };
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
    let opened = Storage::open(env.clone(), options, budget, |queue_id| snapshot.by_id.contains_key(&queue_id))
        .await
        .map_err(|e| anyhow::anyhow!("shard {id} cannot open its log: {e}"))?;
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
    let tls = crate::topic::http::tls_config(config.https_ca_file.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
    if id == 0 {
        // Files of streams deleted (or shards expired) while the daemon was down or mid-delete.
        crate::stream::store::remove_orphans(&config.data_dir, |stream_id, shard| {
            snapshot.streams.values().any(|meta| meta.id == stream_id && shard.is_none_or(|index| meta.shard(index).is_some()))
        })
        .await;
    }
    let meta_writer = (id == 0).then(|| meta::MetaWriter::new(&config.data_dir, count, position));
    let queues = QueueState::default();
    queues.install(snapshot);
    *queues.partitions.borrow_mut() = opened.partitions;
    let shard = Rc::new(Shard {
        id,
        count,
        streams: crate::stream::store::StreamStore::new(
            env.clone(),
            &config.data_dir,
            config.stream_segment_bytes,
            config.fsync,
            config.repair,
            config.stream_log_idle_seconds * 1000,
        ),
        config,
        bus,
        storage: opened.storage,
        queues,
        registry: (id == 0).then(|| RefCell::new(registry)),
        meta_writer,
        meta_saving: glommio::sync::Semaphore::new(1),
        encoder: RefCell::new(Encoder::new()),
        http_wake: LocalNotify::default(),
        tls,
        shutdown: ShutdownState::default(),
        env,
    });
    // Learns which stream shards this core owns, so the files of those deleted later go.
    shard.forget_gone_streams().await;

    for (peer, stream) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(pump(shard, peer, stream)).detach();
    }
    glommio::spawn_local(shard.clone().loader()).detach();

    let background = glommio::executor().create_task_queue(Shares::Static(100), Latency::NotImportant, "background");
    let timers_shard = shard.clone();
    glommio::spawn_local_into(timers(timers_shard), background).map_err(|e| anyhow::anyhow!("cannot spawn timers: {e}"))?.detach();
    glommio::spawn_local_into(shard.clone().http_deliveries(), background)
        .map_err(|e| anyhow::anyhow!("cannot spawn HTTP deliveries: {e}"))?
        .detach();
    glommio::spawn_local_into(stream_retention(shard.clone()), background)
        .map_err(|e| anyhow::anyhow!("cannot spawn stream retention: {e}"))?
        .detach();
    let compaction_shard = shard.clone();
    glommio::spawn_local_into(crate::queue::compaction::run(compaction_shard), background)
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
    if let Err(error) = shard.storage.close().await {
        tracing::error!(shard = id, %error, "closing the log failed");
    }
    let stats = shard.storage.log().stats();
    tracing::info!(
        shard = id,
        appends = stats.appends,
        flushes = stats.flushes,
        fdatasyncs = stats.fdatasyncs,
        log_bytes = shard.storage.log().disk_bytes(),
        "log statistics since start"
    );
    tracing::debug!(shard = id, "stopped");
}

/// Reads one peer's channel: answers calls (in tasks of their own), resolves answers, records watches.
async fn pump(shard: Rc<Shard>, peer: usize, mut stream: glommio::channels::shared_channel::ConnectedReceiver<ShardMessage>) {
    while let Some(message) = stream.next().await {
        match message {
            Envelope::Call { from, corr, call } => {
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    let answer = shard.handle_call(call).await;
                    shard.bus.answer(from, corr, answer).await;
                })
                .detach();
            }
            Envelope::Answer { corr, answer } => shard.bus.resolve(corr, answer),
            Envelope::Notice(Notice::Watch { queue_id, from }) => {
                let mut waiters = shard.queues.waiters.borrow_mut();
                let waiting = waiters.entry(queue_id).or_default();
                if !waiting.remote.contains(&from) {
                    waiting.remote.push(from);
                }
                drop(waiters);
                shard.queues.waiter_added.notify_all();
            }
            Envelope::Notice(Notice::Wake { queue_id }) => {
                if let Some(waiting) = shard.queues.waiters.borrow().get(&queue_id) {
                    waiting.event.notify_all();
                }
            }
        }
    }
    tracing::debug!(shard = shard.id, peer, "peer channel closed");
}

impl Shard {
    /// Runs `request` on shard `shard` — here when this is that shard, else over the bus —
    /// and returns its reply, typed by the request.
    pub async fn call_on<R: Request>(self: &Rc<Self>, shard: usize, request: R) -> Result<R::Reply, OpError> {
        let answer = if shard == self.id { self.handle_call(request.into()).await } else { self.bus.call(shard, request.into()).await? };
        R::reply(answer)
    }

    /// Hands a call to the engine it is for.
    pub async fn handle_call(self: &Rc<Self>, call: Call) -> Answer {
        match call {
            Call::Receive(calls::Receive { queue_id, max_messages, visibility_ms }) => {
                Answer::Receive(self.receive_local(queue_id, max_messages, visibility_ms).await)
            }
            Call::CountMessages(calls::CountMessages { queue_id }) => Answer::CountMessages(self.count_local(queue_id)),
            Call::Purge(calls::Purge { queue_id }) => Answer::Purge(self.purge_local(queue_id).await),
            Call::Delete(calls::Delete { queue_id, messages }) => Answer::Delete(self.delete_local(queue_id, messages).await),
            Call::ChangeVisibility(calls::ChangeVisibility { queue_id, entries }) => {
                Answer::ChangeVisibility(self.change_visibility_local(queue_id, entries).await)
            }
            Call::Publish(calls::Publish(snapshot)) => {
                self.install_snapshot(snapshot);
                Answer::Publish(())
            }
            // Boxed: apply_meta publishes through handle_call, a cycle the compiler cannot size.
            Call::Meta(calls::Meta(change)) => Answer::Meta(Box::pin(self.apply_meta(change)).await),
            Call::StreamPut(calls::StreamPut { stream_id, items }) => Answer::StreamPut(self.stream_put_local(stream_id, items).await),
            Call::StreamRead(calls::StreamRead(request)) => Answer::StreamRead(self.stream_read_local(request).await),
            Call::StreamLease(calls::StreamLease(lease)) => Answer::StreamLease(self.stream_lease_local(lease)),
            Call::StreamSeek(calls::StreamSeek { stream_id, shard, seek }) => {
                Answer::StreamSeek(self.stream_seek_local(stream_id, shard, seek).await)
            }
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
        shard.stream_retention().await;
        let shutdown = shard.shutdown.event.listen();
        let every = STREAM_RETENTION_EVERY.min(Duration::from_millis(shard.streams.idle_ms / 2)).max(Duration::from_millis(500));
        let timer = glommio::timer::sleep(every);
        futures::pin_mut!(shutdown, timer);
        futures::future::select(shutdown, timer).await;
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
        shard.tick_watched();
        if last_sweep.elapsed() >= RETENTION_SWEEP_EVERY {
            shard.tick_all();
            last_sweep = std::time::Instant::now();
        }
    }
}
