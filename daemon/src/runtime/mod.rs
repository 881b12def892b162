//! Shards: one pinned glommio executor per core, sharing nothing mutable.
//!
//! `run` starts the executors, joins them in a channel mesh, and on each one
//! builds a `Shard` and starts its tasks: one pump per peer (cross-shard calls
//! and notices), the listener, and a low-priority timer task. Shard 0 also owns
//! the metadata registry. Shutdown is requested through a process-wide flag set
//! by the signal handler in `main`; each shard then stops accepting, lets
//! in-flight requests finish, and leaves once every shard has drained (so no
//! shard's pump disappears while another still calls it).

pub mod bus;
pub mod notify;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{Latency, LocalExecutorPoolBuilder, PoolPlacement, Shares};
use sluice_protocol::Encoder;

use crate::config::Config;
use crate::queue::registry::{Naming, Registry};
use crate::queue::store::{queue_log_dir, Storage};
use crate::queue::QueueState;
use crate::storage::log::LogOptions;
use crate::storage::meta;
use bus::{Bus, ShardMessage, MESH_CHANNEL_CAPACITY_MAX};
use notify::LocalNotify;

/// Set once by the signal handler; every shard polls it.
pub static SHUTDOWN_REQUESTED: AtomicBool = AtomicBool::new(false);
/// How often shards run long-poll timers while a long poll waits.
const TIMER_TICK: Duration = Duration::from_millis(10);
/// How often an idle shard looks at `SHUTDOWN_REQUESTED` (a new waiter wakes it at once).
const IDLE_TICK: Duration = Duration::from_millis(100);
/// How often every partition's retention is enforced.
const RETENTION_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Milliseconds since the Unix epoch (vDSO clock read, no syscall).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

/// Shutdown progress of one shard.
#[derive(Default)]
pub struct ShutdownState {
    pub requested: Cell<bool>,
    /// Notified when shutdown is requested: long polls return, listeners stop.
    pub event: LocalNotify,
    /// Open connections on this shard.
    pub connections: Cell<usize>,
    /// Notified whenever a connection closes.
    pub connection_closed: LocalNotify,
}

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
}

/// What `run` reports once every shard listens.
pub struct Started {
    pub addr: SocketAddr,
    /// The HTTP gateway's address, unless `--http-listen off`.
    pub http_addr: Option<SocketAddr>,
    pub shards: usize,
}

fn naming(config: &Config) -> Naming {
    Naming { region: config.region.clone(), account_id: config.account_id.clone(), public_url: config.public_url.clone() }
}

/// How long a listener found on the port may take to go away before it counts as another
/// process's (a killed daemon's socket lingers for milliseconds).
const LISTENER_GONE_WAIT: Duration = Duration::from_secs(3);

/// Reserves the listen port (resolving port 0) so every shard binds the same one.
///
/// The shards bind with SO_REUSEPORT, which would also let a second `sluiced` share the
/// port and silently take half of its connections: a port someone already listens on (a
/// connection to it succeeds) is refused instead. (A plain bind cannot tell: it also fails
/// on the TIME_WAIT sockets a restarted daemon leaves behind.)
fn reserve_port(addr: SocketAddr) -> std::io::Result<(socket2::Socket, SocketAddr)> {
    if addr.port() != 0 {
        let mut probe = addr;
        if probe.ip().is_unspecified() {
            probe.set_ip(if addr.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        // A daemon killed a moment ago (a supervisor restarting it at once) still has its
        // listening socket for a few milliseconds while the kernel tears the process down:
        // only a listener that is still there after a while is another process's.
        let deadline = std::time::Instant::now() + LISTENER_GONE_WAIT;
        while std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(500)).is_ok() {
            if std::time::Instant::now() >= deadline {
                return Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "another process is already listening there"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    let bound = socket.local_addr()?.as_socket().ok_or_else(|| std::io::Error::other("listen address is not an IP socket"))?;
    Ok((socket, bound))
}

/// Descriptors kept for everything but connections: logs and their segments, the metadata
/// file, listeners, io_uring rings, the HTTP delivery client.
const FILES_RESERVED: u64 = 1024;

/// Raises the soft open-file limit to the hard one; returns the limit in force.
fn raise_open_file_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft))
}

/// The per-shard connection cap that `open_files` descriptors can hold on `cores` shards.
fn connections_that_fit(open_files: u64, cores: usize, wanted: u64) -> u64 {
    (open_files.saturating_sub(FILES_RESERVED) / cores as u64).clamp(1, wanted)
}

/// Starts the shards; calls `on_started` once all listen, then blocks until they exit.
pub fn run(mut config: Config, on_started: impl FnOnce(&Started)) -> anyhow::Result<()> {
    let cores = if config.cores == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { config.cores };
    // New connections are refused cleanly at the cap, before descriptors run out.
    let open_files = raise_open_file_limit();
    let fit = connections_that_fit(open_files, cores, config.connections_max);
    if fit < config.connections_max {
        tracing::info!(
            open_files,
            wanted = config.connections_max,
            per_shard = fit,
            "the open-file limit cannot hold --connections-max on every shard; serving fewer (raise `ulimit -n`)"
        );
        config.connections_max = fit;
    }
    let (reservation, addr) = reserve_port(config.listen).map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let http = match config.http_listen.0 {
        Some(http) => Some(reserve_port(http).map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {http}: {e}"))?),
        None => None,
    };
    let http_addr = http.as_ref().map(|(_, bound)| *bound);
    if config.public_url.is_empty() {
        config.public_url = format!("http://{}", http_addr.unwrap_or(addr));
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", config.data_dir.display()))?;
    // Every data path is absolute from here on: glommio opens directories with a dirfd of -1
    // rather than AT_FDCWD, so a relative one fails with EBADF (docs/glommio-relative-paths.md).
    config.data_dir = std::fs::canonicalize(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot resolve data directory {}: {e}", config.data_dir.display()))?;
    let mesh = MeshBuilder::<ShardMessage, _>::full(cores, MESH_CHANNEL_CAPACITY_MAX);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let drained = Arc::new(AtomicUsize::new(0));
    let placement = if cores <= core_affinity::get_core_ids().map_or(0, |ids| ids.len()) {
        PoolPlacement::MaxSpread(cores, None)
    } else {
        PoolPlacement::Unbound(cores)
    };
    let shard_config = config.clone();
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("sluice-shard")
        .on_all_shards(move || {
            let config = shard_config.clone();
            let mesh = mesh.clone();
            let ready = ready_tx.clone();
            let drained = drained.clone();
            async move {
                if let Err(error) = shard_main(config, mesh, addr, http_addr, ready.clone(), drained).await {
                    let _ = ready.send(Err(error.to_string()));
                }
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start shard executors: {e}"))?;
    for _ in 0..cores {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                SHUTDOWN_REQUESTED.store(true, Ordering::SeqCst);
                anyhow::bail!("a shard failed to start: {error}");
            }
            Err(_) => anyhow::bail!("shards exited during start-up"),
        }
    }
    drop(reservation);
    drop(http);
    on_started(&Started { addr, http_addr, shards: cores });
    for result in handles.join_all() {
        if let Err(error) = result {
            anyhow::bail!("a shard failed: {error:?}");
        }
    }
    Ok(())
}

async fn shard_main(
    config: Config,
    mesh: MeshBuilder<ShardMessage, glommio::channels::channel_mesh::Full>,
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    drained: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
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
    registry.limits = crate::queue::registry::MetaLimits {
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
    let opened = Storage::open(options, budget, |queue_id| snapshot.by_id.contains_key(&queue_id))
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

    let listener = glommio::net::TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("shard {id} cannot listen on {addr}: {e}"))?;
    if let Some(http_addr) = http_addr {
        let http_listener = glommio::net::TcpListener::bind(http_addr)
            .map_err(|e| anyhow::anyhow!("shard {id} cannot listen for HTTP on {http_addr}: {e}"))?;
        glommio::spawn_local(crate::gateway::accept_loop(shard.clone(), http_listener)).detach();
    }
    let _ = ready.send(Ok(()));
    tracing::debug!(shard = id, %addr, "listening");

    crate::net::accept_loop(shard.clone(), listener).await;

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
    Ok(())
}

/// Reads one peer's channel: answers calls (in tasks of their own), resolves answers, records watches.
async fn pump(shard: Rc<Shard>, peer: usize, mut stream: glommio::channels::shared_channel::ConnectedReceiver<ShardMessage>) {
    while let Some(message) = stream.next().await {
        match message {
            ShardMessage::Call { from, corr, call } => {
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    let answer = shard.handle_call(call).await;
                    shard.bus.answer(from, corr, answer).await;
                })
                .detach();
            }
            ShardMessage::Answer { corr, answer } => shard.bus.resolve(corr, answer),
            ShardMessage::Watch { queue_id, from } => {
                let mut waiters = shard.queues.waiters.borrow_mut();
                let waiting = waiters.entry(queue_id).or_default();
                if !waiting.remote.contains(&from) {
                    waiting.remote.push(from);
                }
                drop(waiters);
                shard.queues.waiter_added.notify_all();
            }
            ShardMessage::Wake { queue_id } => {
                if let Some(waiting) = shard.queues.waiters.borrow().get(&queue_id) {
                    waiting.event.notify_all();
                }
            }
        }
    }
    tracing::debug!(shard = shard.id, peer, "peer channel closed");
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
