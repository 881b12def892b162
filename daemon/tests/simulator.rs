//! The deterministic simulator (`sluice_daemon::sim`) over a bounded number of seeds: the
//! queues' log, a stream shard's log, and the queue and stream engines on several shards under random
//! workloads with process crashes, power losses and disk faults, every acknowledged or seen
//! record (or message) checked after every restart; and Raft groups of three nodes over a
//! network that loses, delays, duplicates and cuts.
//! A failure prints its seed and the `sluice-sim` command that replays it.
//!
//! `SLUICE_SIM_SEEDS` sets the seeds per target (default 60; CI runs the default). The long
//! run: `cargo run --release -p sluice-daemon --bin sluice-sim -- --seeds 100000`.

use sluice_daemon::sim::{self, Options, Target};

fn seeds() -> u64 {
    std::env::var("SLUICE_SIM_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(60)
}

/// `appended_per_seed`: what a run appends at least, on average (records, or messages sent).
fn run_seeds(target: Target, appended_per_seed: u64) {
    let mut failures = Vec::new();
    let mut appended = 0;
    let mut power_losses = 0;
    for seed in 0..seeds() {
        // Half the seeds lose power with sectors reaching the disk in any order; the other
        // half in write order, and a quarter of those runs sync on an interval. (Interval
        // mode with sectors in any order still refuses some starts: see issue 18's notes.)
        let options = Options { scatter: seed % 2 == 1, interval: seed % 2 == 0, ..Options::default() };
        match sim::run(target, seed, options) {
            Ok(report) => {
                appended += report.appended;
                power_losses += report.power_losses;
            }
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    assert!(failures.is_empty(), "{} of {} seeds failed:\n\n{}", failures.len(), seeds(), failures.join("\n\n"));
    // The runs did what they are for: records were written and power was lost.
    assert!(appended > appended_per_seed * seeds().min(10), "only {appended} records appended");
    assert!(power_losses > seeds(), "only {power_losses} power losses");
}

#[test]
fn the_queue_log_keeps_what_it_acknowledged_through_crashes_and_power_losses() {
    run_seeds(Target::Log, 1_000);
}

#[test]
fn a_stream_log_keeps_what_it_acknowledged_through_crashes_and_power_losses() {
    run_seeds(Target::Stream, 1_000);
}

#[test]
fn the_queue_engine_keeps_acknowledged_sends_and_deletes_across_shards_and_restarts() {
    run_seeds(Target::Queues, 50);
}

#[test]
fn fifo_queues_keep_group_order_and_their_deduplication_window_across_shards_and_restarts() {
    run_seeds(Target::Fifo, 50);
}

#[test]
fn fifo_topics_deliver_in_order_once_across_shards_and_restarts() {
    run_seeds(Target::FifoTopics, 50);
}

#[test]
fn the_stream_engine_keeps_acknowledged_records_through_resharding_and_restarts() {
    run_seeds(Target::Streams, 100);
}

#[test]
fn firehose_delivers_every_acknowledged_record_through_outages_and_restarts() {
    run_seeds(Target::Firehose, 60);
}

#[test]
fn a_raft_log_keeps_what_openraft_was_told_is_durable_through_crashes() {
    run_seeds(Target::RaftLog, 200);
}

#[test]
fn a_raft_group_keeps_every_acknowledged_write_through_a_lossy_network_crashes_and_power_losses() {
    run_seeds(Target::RaftGroup, 100);
}

#[test]
fn a_seed_replays_exactly() {
    for target in Target::ALL {
        let first = sim::run(target, 7, Options::default()).expect("seed 7 passes");
        let second = sim::run(target, 7, Options::default()).expect("seed 7 passes");
        assert_eq!(first.digest, second.digest, "{}: the same seed took different steps", target.name());
        assert_eq!(first.appended, second.appended);
        let other = sim::run(target, 8, Options::default()).expect("seed 8 passes");
        assert_ne!(first.digest, other.digest, "{}: different seeds took the same steps", target.name());
    }
}

/// Seeds of the `queues` target that found defects, replayed on every run (while the
/// workload generator stays as it is, they are those exact runs; each failed with its defect
/// put back): 312, 1297, 1412 — a second delete of a message was acknowledged while the
/// first was still on its way to a log that then failed; 599, 753, 1023, 1343 — compaction
/// removed a segment holding the only durable copy of an acknowledged message whose new copy
/// a failed log never wrote.
#[test]
fn the_queue_engine_seeds_that_found_defects_pass() {
    for seed in [312, 1297, 1412, 599, 753, 1023, 1343] {
        if let Err(failure) = sim::run(Target::Queues, seed, Options::default()) {
            panic!("{failure}");
        }
    }
}

/// Seeds of the `fifo-topics` target that found defects (as above): 52 — compaction's copies
/// of FIFO messages were lost to a flush that could not make its segment (the log drops what
/// was staged for it and goes on), compaction waited only for the last copy of each step, and
/// a later pass deleted the originals.
#[test]
fn the_fifo_topic_seeds_that_found_defects_pass() {
    for seed in [52] {
        if let Err(failure) = sim::run(Target::FifoTopics, seed, Options::default()) {
            panic!("{failure}");
        }
    }
}
