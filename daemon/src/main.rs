//! `sluiced`: starts the shards, prints where it listens, exits 0 after SIGTERM/SIGINT.

use std::sync::atomic::Ordering;

use clap::Parser;
use sluice_daemon::config::Config;
use sluice_daemon::runtime::{self, SHUTDOWN_REQUESTED};

/// mimalloc: per-thread heaps suit one thread per core; glibc malloc showed up at ~12% of a profile.
/// Its v2 line (the `v2` feature): v3, the default of libmimalloc-sys 0.1.49 (which bundles
/// mimalloc 3.3.2), crashed `sluiced` now and then in `mi_process_done` after a clean shutdown
/// (SIGSEGV walking a page's thread-free list at exit; 3 of 35 SIGTERM restarts in
/// `tests/restarts.rs`, 0 of 50 with v2). mimalloc 3.3.x has known multi-thread crashes
/// (microsoft/mimalloc#1287, fixed in 3.4); revisit when the crate bundles a fixed v3.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // A panic on any shard stops the whole process: never half a broker serving on.
    // (Release builds also set panic = "abort"; this holds for every profile.)
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        eprintln!("sluiced: a shard panicked; aborting the whole process");
        std::process::abort();
    }));

    let config = Config::parse();
    if let Some(refusal) = config.exposure() {
        eprintln!("sluiced: {refusal}");
        std::process::exit(2);
    }
    if let Some(problem) = config.cluster_problem() {
        eprintln!("sluiced: {problem}");
        std::process::exit(2);
    }
    // openraft logs every failed heartbeat to a node that is down (many a second): its own
    // errors only, unless --log names it; the cluster module logs a node going and coming back.
    let directives = if config.log.contains("openraft") { config.log.clone() } else { format!("{},openraft=error", config.log) };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let mut config = config;
    match sluice_daemon::kms::root::RootKey::load(config.root_key_file.as_deref()) {
        Ok(root) => config.root_key = root.map(std::sync::Arc::new),
        Err(error) => {
            eprintln!("sluiced: {error}");
            std::process::exit(1);
        }
    }
    if let Some(path) = &config.credentials_file {
        match sluice_daemon::credentials::CredentialStore::open(path, &config.account_id) {
            Ok(store) => config.credentials = Some(store),
            Err(error) => {
                eprintln!("sluiced: {error}");
                std::process::exit(1);
            }
        }
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        let files = sluice_daemon::tls::TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: config.tls_client_ca.clone() };
        match sluice_daemon::tls::TlsStore::open(files) {
            Ok(store) => config.tls = Some(store),
            Err(error) => {
                eprintln!("sluiced: {error}");
                std::process::exit(1);
            }
        }
    }
    let credentials = config.credentials.clone();
    let tls = config.tls.clone();
    let mut signals =
        match signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGHUP])
        {
            Ok(signals) => signals,
            Err(error) => {
                eprintln!("sluiced: cannot install signal handlers: {error}");
                std::process::exit(1);
            }
        };
    let signal_handle = signals.handle();
    std::thread::Builder::new()
        .name("sluice-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == signal_hook::consts::SIGHUP {
                    match &credentials {
                        None => tracing::info!("SIGHUP: no --credentials to read again"),
                        Some(store) => match store.reload() {
                            Ok(principals) => tracing::info!(principals, "SIGHUP: credentials read again and in force"),
                            Err(error) => tracing::error!(%error, "SIGHUP: credentials not reloaded; the principals in force stay"),
                        },
                    }
                    if let Some(store) = &tls {
                        match store.reload() {
                            Ok(()) => tracing::info!("SIGHUP: TLS certificate and key read again; new connections use them"),
                            Err(error) => tracing::error!(%error, "SIGHUP: TLS files not reloaded; the certificate in force stays"),
                        }
                    }
                    continue;
                }
                tracing::info!(signal, "shutting down: no new connections, finishing requests in flight");
                SHUTDOWN_REQUESTED.store(true, Ordering::SeqCst);
                break;
            }
        })
        .expect("spawning the signal thread");

    let audit = match &config.audit_log {
        None => None,
        Some(path) => {
            let options = sluice_daemon::audit::Options {
                path: path.clone(),
                bytes_max: config.audit_log_bytes_max,
                files: config.audit_log_files,
                data_events: config.audit_data_events,
            };
            match sluice_daemon::audit::start(options) {
                Ok((sink, writer)) => {
                    config.audit = Some(sink);
                    Some(writer)
                }
                Err(error) => {
                    eprintln!("sluiced: {error}");
                    std::process::exit(1);
                }
            }
        }
    };
    let data_dir = config.data_dir.clone();
    let transport = match (&config.tls, &config.tls_client_ca) {
        (None, _) => "plain TCP",
        (Some(_), None) => "TLS",
        (Some(_), Some(_)) => "mutual TLS",
    };
    let result = runtime::run(config, sluice_daemon::serve::shard_main, |started| {
        tracing::info!(addr = %started.addr, shards = started.shards, data_dir = %data_dir.display(), transport, "sluiced ready");
        if let Some(metrics) = started.metrics_addr {
            tracing::info!(%metrics, "serving /metrics");
        }
        // Tests and scripts read this line to learn the port.
        match started.http_addr {
            Some(http) => println!("sluiced listening on {}, http {http}", started.addr),
            None => println!("sluiced listening on {}", started.addr),
        }
    });
    signal_handle.close();
    if let Some(writer) = audit {
        writer.finish();
    }
    let code = match result {
        Ok(()) => {
            tracing::info!("stopped");
            0
        }
        Err(error) => {
            eprintln!("sluiced: {error:#}");
            1
        }
    };
    leave(code)
}

/// Ends the process once every shard has stopped and every log (audit, stdout, stderr) is
/// written, without the C library's exit path: `exit` runs atexit handlers and destroys
/// thread-locals and the allocator's state while helper threads the daemon does not own
/// (glommio's blocking pool, the runtime's) may still be parked on them, and CI saw a clean
/// SIGTERM end in SIGSEGV there twice in about a dozen runs. Nothing is left to flush by then.
fn leave(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; every file the daemon wrote is synced or closed.
    unsafe { libc::_exit(code) }
}
