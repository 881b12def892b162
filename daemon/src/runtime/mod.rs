//! Executors: one pinned glommio executor per core, sharing nothing mutable, joined in a
//! channel mesh. It knows no engine: `run` starts the executors and hands each one a
//! `ShardStart` for the shard's own main (`crate::serve::shard_main`), which builds the
//! shard's engines, tasks and listeners. Also here: the cross-shard bus (`bus`) and typed
//! calls (`calls`), generic over what they carry, and the shutdown flag — set by the signal
//! handler in `main`; each shard then stops accepting, lets in-flight requests finish, and
//! leaves once every shard has drained (so no shard's pump disappears while another still
//! calls it).

pub mod bus;
pub mod calls;

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use crate::config::Config;
use crate::env::notify::LocalNotify;
use bus::MESH_CHANNEL_CAPACITY_MAX;

/// Set once by the signal handler; every shard polls it.
pub static SHUTDOWN_REQUESTED: AtomicBool = AtomicBool::new(false);

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

/// What `run` reports once every shard listens.
pub struct Started {
    pub addr: SocketAddr,
    /// The HTTP gateway's address, unless `--http-listen off`.
    pub http_addr: Option<SocketAddr>,
    /// `--metrics-listen`'s address, if given.
    pub metrics_addr: Option<SocketAddr>,
    pub shards: usize,
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

/// What each shard's executor is given to start its shard.
pub struct ShardStart<M: Send> {
    pub config: Config,
    pub mesh: MeshBuilder<M, glommio::channels::channel_mesh::Full>,
    pub addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    /// `--metrics-listen`'s address, if given.
    pub metrics_addr: Option<SocketAddr>,
    /// Told once the shard listens (or why it cannot start).
    pub ready: std::sync::mpsc::Sender<Result<(), String>>,
    /// Counts the shards that have drained their connections at shutdown.
    pub drained: Arc<AtomicUsize>,
}

/// Starts a shard on every core with `shard_main` (the shards' messages are `M`); calls
/// `on_started` once all listen, then blocks until they exit.
pub fn run<M, F, Fut>(mut config: Config, shard_main: F, on_started: impl FnOnce(&Started)) -> anyhow::Result<()>
where
    M: Send + 'static,
    F: Fn(ShardStart<M>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
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
    let metrics = match config.metrics_listen {
        Some(metrics) => Some(reserve_port(metrics).map_err(|e| anyhow::anyhow!("cannot listen for metrics on {metrics}: {e}"))?),
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(|(_, bound)| *bound);
    if config.public_url.is_empty() {
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        config.public_url = format!("{scheme}://{}", http_addr.unwrap_or(addr));
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", config.data_dir.display()))?;
    // Every data path is absolute from here on: glommio opens directories with a dirfd of -1
    // rather than AT_FDCWD, so a relative one fails with EBADF (docs/glommio-relative-paths.md).
    config.data_dir = std::fs::canonicalize(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot resolve data directory {}: {e}", config.data_dir.display()))?;
    if let Some(dir) = config.firehose_local_dir.as_mut() {
        *dir = std::path::absolute(&*dir).map_err(|e| anyhow::anyhow!("cannot resolve --firehose-local-dir {}: {e}", dir.display()))?;
    }
    config.seal_key = crate::seal::SealKey::load_or_create(&config.data_dir).map_err(|e| anyhow::anyhow!(e))?;
    let signing = crate::sns_signing::SnsSigning::new(&config.data_dir, config.sns_signing_key.as_deref());
    if config.sns_signing_key.is_some() {
        // A given key that does not read stops the start; a made one is made when first needed.
        signing.signer().map_err(|e| anyhow::anyhow!(e))?;
    }
    config.sns_signing = Some(std::sync::Arc::new(signing));
    let mesh = MeshBuilder::<M, _>::full(cores, MESH_CHANNEL_CAPACITY_MAX);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let drained = Arc::new(AtomicUsize::new(0));
    let placement = if cores <= core_affinity::get_core_ids().map_or(0, |ids| ids.len()) {
        PoolPlacement::MaxSpread(cores, None)
    } else {
        PoolPlacement::Unbound(cores)
    };
    let shard_config = config.clone();
    let mut builder = LocalExecutorPoolBuilder::new(placement).name("sluice-shard");
    if config.idle_poll_us > 0 {
        builder = builder.spin_before_park(std::time::Duration::from_micros(config.idle_poll_us));
    }
    let handles = builder
        .on_all_shards(move || {
            let config = shard_config.clone();
            let mesh = mesh.clone();
            let ready = ready_tx.clone();
            let drained = drained.clone();
            let shard_main = shard_main.clone();
            async move {
                let start = ShardStart { config, mesh, addr, http_addr, metrics_addr, ready: ready.clone(), drained };
                if let Err(error) = shard_main(start).await {
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
    drop(metrics);
    on_started(&Started { addr, http_addr, metrics_addr, shards: cores });
    for result in handles.join_all() {
        if let Err(error) = result {
            anyhow::bail!("a shard failed: {error:?}");
        }
    }
    Ok(())
}
