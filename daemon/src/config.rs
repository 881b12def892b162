//! Command-line flags of `sluiced`, each also read from a `SLUICE_…` variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use sluice_protocol::limits::FRAME_BYTES_MAX_DEFAULT;

#[derive(Debug, Clone, Parser)]
#[command(name = "sluiced", version, about = "Sluice message broker daemon: SQS-style queues over a binary protocol, one shard per core.")]
pub struct Config {
    /// Address of the binary-protocol listener. Every shard accepts on it (SO_REUSEPORT).
    /// Port 0 picks a free port, printed at start-up.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:9800")]
    pub listen: SocketAddr,

    /// Directory for the broker's data (created if missing). This version keeps queue state
    /// in memory; durable storage (the next milestone) lives here.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    pub data_dir: PathBuf,

    /// Number of shards, one pinned to each core; 0 means every core of the machine.
    #[arg(long, env = "SLUICE_CORES", default_value_t = 0)]
    pub cores: usize,

    /// Largest frame accepted from a client, in bytes (length prefix included).
    /// A longer frame closes its connection before anything is allocated.
    #[arg(long, env = "SLUICE_FRAME_BYTES_MAX", default_value_t = FRAME_BYTES_MAX_DEFAULT, value_parser = frame_bytes_max)]
    pub frame_bytes_max: usize,

    /// Requests one connection may have in flight; past it the daemon stops reading
    /// that connection until answers go out (a ReceiveMessage counts as 16).
    #[arg(long, env = "SLUICE_CONNECTION_INFLIGHT_MAX", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub connection_inflight_max: u64,

    /// Answer bytes one connection may have waiting to be written before the
    /// daemon stops reading its requests.
    #[arg(long, env = "SLUICE_CONNECTION_OUTBOUND_BYTES_MAX", default_value_t = 8 * 1024 * 1024)]
    pub connection_outbound_bytes_max: usize,

    /// AWS region named in queue ARNs.
    #[arg(long, env = "SLUICE_REGION", default_value = "us-east-1")]
    pub region: String,

    /// AWS account id named in queue URLs and ARNs.
    #[arg(long, env = "SLUICE_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,

    /// Base of the queue URLs handed to clients (the AWS-compatible gateway's address).
    #[arg(long, env = "SLUICE_PUBLIC_URL", default_value = "http://127.0.0.1:4566")]
    pub public_url: String,

    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT before exiting anyway.
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `sluice_daemon=debug`.
    #[arg(long, env = "SLUICE_LOG", default_value = "info")]
    pub log: String,
}

/// A frame must hold at least a Hello and at most what a u32 prefix can announce.
fn frame_bytes_max(text: &str) -> Result<usize, String> {
    let value: usize = text.parse().map_err(|e| format!("{e}"))?;
    if !(1024..=u32::MAX as usize).contains(&value) {
        return Err(format!("must be from 1024 to {}", u32::MAX));
    }
    Ok(value)
}
