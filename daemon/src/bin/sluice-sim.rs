//! `sluice-sim`: runs the deterministic simulator (`sluice_daemon::sim`) over seeds.
//!
//! Each seed is one random run of a target (the queue-style log, a stream shard's log, the
//! queue or stream engine on several shards) against a simulated disk with crashes, power
//! losses and faults, checked at every step.
//! A failure prints its seed and the command that replays it.

use clap::Parser;
use sluice_daemon::sim::{self, Options, Target};

#[derive(Parser, Debug)]
#[command(
    name = "sluice-sim",
    version,
    about = "Sluice's deterministic simulator: storage, the engines and Raft groups under crashes, power losses, disk and network faults"
)]
struct Args {
    /// What to simulate: `log` (the queues' log), `stream` (a stream shard's log), `queues`
    /// (the queue engine, with a topic, on several shards, through the operations clients
    /// call), `streams` (the stream engine on several cores, resharding included), `fifo` (FIFO
    /// queues: group order, deduplication, dead-letter moves between shards), `fifo-topics` (a
    /// FIFO topic's ordered, deduplicated fan-out), `firehose` (delivery streams delivering
    /// through outages), `raft-log` (a Raft group's log on the segment log), `raft-group` (three
    /// openraft nodes over a lossy, partitioned network, with crashes and power losses) or `all`.
    #[arg(long, default_value = "all")]
    target: String,
    /// Run this one seed (replays a failure exactly); overrides --seeds.
    #[arg(long)]
    seed: Option<u64>,
    /// How many seeds to run, from --first.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed of --seeds.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Steps per run.
    #[arg(long, default_value_t = 400)]
    steps: usize,
    /// Print every step of every run.
    #[arg(long)]
    verbose: bool,
    /// Power losses keep the dirty sectors of a file in any order (a device cache that writes
    /// back out of order), not a prefix of them in the order they were written.
    #[arg(long)]
    scatter: bool,
    /// A quarter of the runs of the `log` and `stream` targets sync on an interval (`--fsync
    /// interval`) instead of before every acknowledgement (the engine targets always sync
    /// before acknowledging).
    #[arg(long)]
    interval: bool,
}

fn main() {
    let args = Args::parse();
    let targets: Vec<Target> = match args.target.as_str() {
        "all" => Target::ALL.to_vec(),
        name => match Target::parse(name) {
            Some(target) => vec![target],
            None => {
                eprintln!("sluice-sim: unknown target {name:?} (log, stream, queues, streams, fifo, fifo-topics, firehose, raft-log, raft-group or all)");
                std::process::exit(2);
            }
        },
    };
    let seeds = match args.seed {
        Some(seed) => seed..seed + 1,
        None => args.first..args.first + args.seeds,
    };
    let options = Options { steps: args.steps, verbose: args.verbose, scatter: args.scatter, interval: args.interval };
    let mut failed = 0;
    for target in targets {
        let (mut appended, mut restarts, mut power) = (0, 0, 0);
        for seed in seeds.clone() {
            match sim::run(target, seed, options) {
                Ok(report) => {
                    appended += report.appended;
                    restarts += report.restarts;
                    power += report.power_losses;
                }
                Err(failure) => {
                    failed += 1;
                    eprintln!("{failure}\n");
                }
            }
        }
        println!(
            "{}: {} seeds from {}, {appended} records appended, {restarts} restarts ({power} power losses)",
            target.name(),
            seeds.end - seeds.start,
            seeds.start
        );
    }
    if failed > 0 {
        eprintln!("sluice-sim: {failed} failing runs");
        std::process::exit(1);
    }
}
