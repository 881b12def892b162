//! `sluice-bench`: scenario benchmarks that write to `results/`.
//!
//! `sluice-bench run [SCENARIO|all]` starts `sluiced` and every installed peer broker on
//! loopback, runs each scenario against each with `sluice-load`, and writes one folder of
//! `results/` (see `scenario.rs`).
//!
//! `sluice-bench log` measures the storage log alone: appenders on one glommio
//! executor append records and wait for durability (group commit), for a fixed
//! time. It reports appends/s, MB/s, flushes and fdatasyncs per second, and the
//! append-to-durable latency from an HDR histogram.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

mod plot;
mod scenario;
mod systems;
mod table;

use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use sluice_daemon::storage::log::{FsyncMode, Log, LogOptions};

#[derive(Parser)]
#[command(name = "sluice-bench", version, about = "Sluice scenario benchmarks; each writes its report where --out says.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Fsync {
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios against Sluice and every installed peer; write a folder of results/.
    ///
    /// Builds the release `sluiced` and `sluice-load` first when run through cargo
    /// (`cargo run --release -p sluice-bench -- run all`). Peers come from Debian's packages:
    /// bench/scripts/install-peers.sh installs them; a peer that is not installed is left out.
    Run {
        /// Scenarios to run (comma-separated), or `all`: queue-max-100b, queue-max-1k, queue-latency-half,
        /// queue-latency-50k, queue-latency-5k, queue-sync (with the disk's append-to-durable floor,
        /// measured by `log` right after Sluice's run), fanout-ingest-1, fanout-ingest-10,
        /// fanout-ingest-100, fanout-ingest-1000, fanout-1, fanout-10, fanout-100, fanout-1000, stream-ingest-4, stream-ingest-16, stream-read-1, stream-read-5,
        /// fifo-max-1000-groups, fifo-max-1-group, fifo-1-group-20k, fifo-latency-half (FIFO: Sluice,
        /// and NATS with its deduplication window), fifo-topic-ingest-10, fifo-topic-10 (the same),
        /// fair-noisy-tenant, fair-noisy-tenant-ungrouped (Sluice only), firehose-ingest-1k, firehose-freshness-1k (Sluice only).
        #[arg(default_value = "all")]
        scenario: String,
        /// Systems to run, comma-separated [default: all]: sluice-fsync-always, sluice-fsync-never,
        /// sluice-http-gateway (queue scenarios only), sluice-http-gateway-sigv4 (the same, every request signed with SigV4 and checked), sluice-authenticated (binary protocol, every connection authenticated and request decided), sluice-encrypted (a root key: queues SSE-SQS, streams under alias/aws/kinesis), sluice-scraped (sluice-fsync-always with /metrics read every second), redis-persistence-off, redis-appendfsync-always,
        /// nats-jetstream, rabbitmq.
        #[arg(long, value_delimiter = ',')]
        systems: Vec<String>,
        /// Seconds measured per run, after the warm-up.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Seconds of warm-up per run, left out of the figures.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// `sluiced --cores` (the load generator shares the machine).
        #[arg(long, default_value_t = 1)]
        sluice_cores: usize,
        /// `sluice-load --cores`, the same for every system.
        #[arg(long, default_value_t = 1)]
        load_cores: usize,
        /// Where run folders go; its README.md gets the latest table.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../results"))]
        results: PathBuf,
        /// Scratch directory for the brokers' data (on a real disk, so fsyncs cost what they cost); emptied per run.
        #[arg(long, default_value = "/var/tmp/sluice-bench")]
        scratch: PathBuf,
        /// Directory holding release `sluiced` and `sluice-load` [default: beside this program].
        #[arg(long)]
        binaries: Option<PathBuf>,
    },
    /// Append records to a storage log and wait for each to be durable (group commit).
    Log {
        /// Directory for the log's segments (emptied first; use a scratch directory on the disk to measure).
        #[arg(long, default_value = "./sluice-bench-log")]
        dir: PathBuf,
        /// Payload bytes per record.
        #[arg(long, default_value_t = 1024)]
        record_bytes: usize,
        /// Concurrent appenders, each waiting for its record to be durable before the next.
        #[arg(long, default_value_t = 64)]
        appenders: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// When an append counts as kept.
        #[arg(long, value_enum, default_value_t = Fsync::Always)]
        fsync: Fsync,
        /// Segment size in bytes.
        #[arg(long, default_value_t = sluice_daemon::storage::log::SEGMENT_BYTES_DEFAULT)]
        segment_bytes: u64,
        /// File to write the report to (also printed).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() {
    match Cli::parse().command {
        Command::Run { scenario, systems, duration, warmup, sluice_cores, load_cores, results, scratch, binaries } => {
            let outcome = run_scenarios(scenario, systems, duration, warmup, sluice_cores, load_cores, results, scratch, binaries);
            if let Err(error) = outcome {
                eprintln!("sluice-bench: {error}");
                std::process::exit(1);
            }
        }
        Command::Log { dir, record_bytes, appenders, seconds, fsync, segment_bytes, out } => {
            let _ = std::fs::remove_dir_all(&dir);
            let fsync = match fsync {
                Fsync::Always => FsyncMode::Always,
                Fsync::Never => FsyncMode::Never,
            };
            let options = LogOptions { dir: dir.clone(), segment_bytes, fsync, repair: false, spare_ahead: true };
            let report = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
                .spawn(move || async move { run_log(options, record_bytes, appenders, seconds).await })
                .expect("starting an executor")
                .join()
                .expect("benchmark executor");
            let _ = std::fs::remove_dir_all(&dir);
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let report = format!("$ {command}\n{report}");
            print!("{report}");
            if let Some(out) = out {
                std::fs::write(&out, report).expect("writing --out");
            }
        }
    }
}

async fn run_log(options: LogOptions, record_bytes: usize, appenders: usize, seconds: u64) -> String {
    let (log, _) = Log::open(options, |_, _, _| {}).await.expect("opening the log");
    let payload: Rc<[u8]> = vec![b'x'; record_bytes].into();
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|_| {
            let log = log.clone();
            let payload = payload.clone();
            glommio::spawn_local(async move {
                let mut latency = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
                while Instant::now() < until {
                    let begun = Instant::now();
                    let seq = log.append(1, &payload).expect("append");
                    log.durable(seq).await.expect("durable");
                    latency.saturating_record(begun.elapsed().as_micros() as u64);
                }
                latency
            })
        })
        .collect();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
    for task in tasks {
        latency.add(task.await).expect("same bounds");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = log.stats();
    log.close().await.expect("closing the log");
    let per_second = |n: u64| n as f64 / elapsed;
    let mut report = String::new();
    report.push_str(&format!(
        "log: {record_bytes} B records, {appenders} appenders, {elapsed:.1} s\nappends {:.0}/s  {:.1} MB/s  flushes {:.0}/s  fdatasyncs {:.0}/s  records per flush {:.1}\n",
        per_second(stats.appends),
        per_second(stats.appends) * record_bytes as f64 / 1e6,
        per_second(stats.flushes),
        per_second(stats.fdatasyncs),
        stats.appends as f64 / stats.flushes.max(1) as f64,
    ));
    report.push_str(&format!(
        "append->durable us: p50 {} p99 {} p99.9 {} max {}\n",
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.value_at_quantile(0.999),
        latency.max()
    ));
    report.push_str("percentiles (us):\n");
    for quantile in [0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0] {
        report.push_str(&format!("  {:>8.4} {:>10}\n", quantile, latency.value_at_quantile(quantile)));
    }
    report
}

#[allow(clippy::too_many_arguments)]
fn run_scenarios(
    scenario: String,
    systems: Vec<String>,
    duration: u64,
    warmup: u64,
    sluice_cores: usize,
    load_cores: usize,
    results: PathBuf,
    scratch: PathBuf,
    binaries: Option<PathBuf>,
) -> Result<(), String> {
    let scenarios: Vec<&'static scenario::Scenario> = if scenario == "all" {
        scenario::SCENARIOS.iter().collect()
    } else {
        scenario
            .split(',')
            .map(|name| {
                scenario::SCENARIOS
                    .iter()
                    .find(|s| s.name == name.trim())
                    .ok_or_else(|| format!("no scenario {name:?}; there are: all, {}", scenario::SCENARIOS.map(|s| s.name).join(", ")))
            })
            .collect::<Result<_, _>>()?
    };
    let systems = if systems.is_empty() {
        systems::System::ALL.to_vec()
    } else {
        systems
            .iter()
            .map(|name| {
                systems::System::ALL
                    .into_iter()
                    .find(|s| s.name() == name)
                    .ok_or_else(|| format!("no system {name:?}; there are: {}", systems::System::ALL.map(|s| s.name()).join(", ")))
            })
            .collect::<Result<_, _>>()?
    };
    let binaries = match binaries {
        Some(dir) => dir,
        None => std::env::current_exe().map_err(|e| e.to_string())?.parent().ok_or("no directory for this program")?.to_path_buf(),
    };
    // Through cargo, the daemon and load generator are built (release) before measuring.
    if let Some(cargo) = std::env::var_os("CARGO") {
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "-p", "sluice-daemon", "-p", "sluice-load-gen"])
            .status()
            .map_err(|e| format!("running cargo build: {e}"))?;
        if !status.success() {
            return Err("cargo build --release -p sluice-daemon -p sluice-load-gen failed".into());
        }
    }
    for program in ["sluiced", "sluice-load"] {
        if !binaries.join(program).is_file() {
            return Err(format!(
                "{} is missing: cargo build --release -p sluice-daemon -p sluice-load-gen",
                binaries.join(program).display()
            ));
        }
    }
    let settings = scenario::Settings { scenarios, systems, duration, warmup, sluice_cores, load_cores, results, scratch, binaries };
    let folder = scenario::run(&settings)?;
    eprintln!("sluice-bench: wrote {}", folder.display());
    Ok(())
}
