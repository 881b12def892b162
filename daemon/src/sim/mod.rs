//! The deterministic simulator: Sluice's storage run on one thread against a simulated
//! disk, with virtual time, under a random workload with crashes, power losses and disk
//! faults, checked at every step against a model of what must be there.
//!
//! One seed decides everything (the workload, the faults, which sectors of an interrupted
//! flush reach the platter), so a failure is replayed exactly by its seed:
//! `cargo run -p sluice-daemon --bin sluice-sim -- --target T --seed S --verbose`.
//!
//! - `Driver`: the world (`env::World`: clock, timers, disk) and the executor of the current
//!   incarnation of the simulated process. A crash drops the executor with every task of
//!   that process in it, then cuts the disk back to what a process crash or a power loss
//!   leaves (`env::memory`).
//! - `Oracle`: every record appended, and what is known of it: only staged, acknowledged
//!   (its `durable` returned), or seen (read back, or found at a restart: a reader may have
//!   acted on it). Checked after every restart and every read: nothing acknowledged or seen
//!   is lost unless retention removed it, nothing appears that was not appended, nothing
//!   changes, order is kept, and no sequence number is handed out twice.
//! - Targets: `log` (the segmented log as the queues use it: replayed in full at start,
//!   spare segments ahead, segments removed as compaction does), `stream` (a stream
//!   shard's log: opened from its tail, read by position, trimmed by arrival time), and
//!   `queues` (the queue engine itself on several shards, through the operations clients
//!   call, with cross-shard calls that take time, long polls, dead-letter queues, delays,
//!   payloads kept only in the log, compaction: see `queue_target`), and `streams` (the
//!   stream engine on several cores: puts, full reads, and resharding under way while puts
//!   are in flight: see `stream_engine_target`), and `fifo` (FIFO queues on several shards:
//!   group order, the deduplication window, dead-letter moves between shards: see
//!   `fifo_target`), and `fifo-topics` (a FIFO topic delivering to FIFO and standard queues on
//!   several shards: order, deduplication, nothing lost: see `fifo_topic_target`), and
//!   `firehose` (delivery streams on several cores delivering to a destination that fails,
//!   slows and loses acknowledgements: every acknowledged put delivered, see
//!   `firehose_target`), and `raft-log` (a Raft group's log on the segment log, driven as
//!   openraft drives it: see `raft_log_target`), and `raft-group` (three openraft nodes on the
//!   simulator's runtime, `raft_runtime`, over a network that delays, reorders, duplicates and
//!   loses messages and cuts nodes off, with crashes and power losses: see
//!   `raft_group_target`). The engine targets run on `shards::SimShard`.

pub mod fifo_target;
pub mod fifo_topic_target;
pub mod firehose_target;
pub mod harness;
pub mod log_target;
pub mod queue_target;
pub mod raft_group_target;
pub mod raft_log_target;
pub mod raft_runtime;
pub mod shards;
pub mod stream_engine_target;
pub mod stream_target;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;

use crate::env::memory::{Crash, Faults};
use crate::env::{Env, World};
use crate::storage::log::FsyncMode;

/// What to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Log,
    Stream,
    Queues,
    Streams,
    Fifo,
    FifoTopics,
    Firehose,
    RaftLog,
    RaftGroup,
}

impl Target {
    pub const ALL: [Target; 9] = [
        Target::Log,
        Target::Stream,
        Target::Queues,
        Target::Streams,
        Target::Fifo,
        Target::FifoTopics,
        Target::Firehose,
        Target::RaftLog,
        Target::RaftGroup,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Log => "log",
            Target::Stream => "stream",
            Target::Queues => "queues",
            Target::Streams => "streams",
            Target::Fifo => "fifo",
            Target::FifoTopics => "fifo-topics",
            Target::Firehose => "firehose",
            Target::RaftLog => "raft-log",
            Target::RaftGroup => "raft-group",
        }
    }

    pub fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|target| target.name() == name)
    }
}

/// How long one run goes on.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub steps: usize,
    /// Print every step as it happens.
    pub verbose: bool,
    /// Power losses keep dirty sectors in any order, not a prefix in write order (`memory::Faults::scatter`).
    pub scatter: bool,
    /// Some runs sync on an interval instead of before every acknowledgement.
    pub interval: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { steps: 400, verbose: false, scatter: false, interval: false }
    }
}

/// What one run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub appended: u64,
    pub acknowledged: u64,
    pub restarts: u64,
    pub process_crashes: u64,
    pub power_losses: u64,
    pub disk: crate::env::memory::DiskStats,
    /// A digest of every step taken: equal for equal seeds, or the simulator is not deterministic.
    pub digest: u64,
}

/// A run that found a fault: what went wrong, at which step, and the steps before it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub target: Target,
    pub seed: u64,
    pub step: usize,
    pub message: String,
    pub trail: Vec<String>,
    pub options: Options,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "simulator: target {} seed {} failed at step {}: {}", self.target.name(), self.seed, self.step, self.message)?;
        writeln!(f, "last steps:")?;
        for line in &self.trail {
            writeln!(f, "  {line}")?;
        }
        write!(
            f,
            "replay: cargo run -p sluice-daemon --bin sluice-sim -- --target {} --seed {}{}{} --verbose",
            self.target.name(),
            self.seed,
            if self.options.scatter { " --scatter" } else { "" },
            if self.options.interval { " --interval" } else { "" }
        )
    }
}

/// Runs one seed of one target.
pub fn run(target: Target, seed: u64, options: Options) -> Result<Report, Failure> {
    let mut driver = Driver::new(seed, options);
    let outcome = match target {
        Target::Log => log_target::run(&mut driver, options.steps),
        Target::Stream => stream_target::run(&mut driver, options.steps),
        Target::Queues => queue_target::run(&mut driver, options.steps),
        Target::Streams => stream_engine_target::run(&mut driver, options.steps),
        Target::Fifo => fifo_target::run(&mut driver, options.steps),
        Target::FifoTopics => fifo_topic_target::run(&mut driver, options.steps),
        Target::Firehose => firehose_target::run(&mut driver, options.steps),
        Target::RaftLog => raft_log_target::run(&mut driver, options.steps),
        Target::RaftGroup => raft_group_target::run(&mut driver, options.steps),
    };
    let mut report = std::mem::take(&mut driver.report);
    report.disk = driver.world.fs().stats();
    report.digest = driver.digest;
    match outcome {
        Ok(()) => Ok(report),
        Err(message) => Err(Failure { target, seed, step: driver.step, message, trail: driver.trail.into_iter().collect(), options }),
    }
}

const TRAIL_STEPS: usize = 40;

/// The world and the current incarnation of the simulated process.
pub struct Driver {
    pub world: Rc<World>,
    pub rng: fastrand::Rng,
    pool: LocalPool,
    pub step: usize,
    pub report: Report,
    trail: VecDeque<String>,
    digest: u64,
    verbose: bool,
    scatter: bool,
    interval: bool,
}

/// Why `block_on` gave up.
pub const STUCK: &str = "stuck: the operation can never complete (no task can run and no timer is armed)";

impl Driver {
    fn new(seed: u64, options: Options) -> Driver {
        let world = World::new(seed ^ 0x5EED_D15C, Faults { scatter: options.scatter, ..Faults::NONE });
        let pool = LocalPool::new();
        world.set_spawner(pool.spawner());
        Driver {
            world,
            rng: fastrand::Rng::with_seed(seed),
            pool,
            step: 0,
            report: Report::default(),
            trail: VecDeque::new(),
            digest: 0xcbf2_9ce4_8422_2325,
            verbose: options.verbose,
            scatter: options.scatter,
            interval: options.interval,
        }
    }

    pub fn env(&self) -> Env {
        Env::Sim(self.world.clone())
    }

    /// Records a step (for the trail a failure prints, and the determinism digest).
    pub fn note(&mut self, line: String) {
        for byte in line.bytes() {
            self.digest = (self.digest ^ byte as u64).wrapping_mul(0x100_0000_01b3);
        }
        if self.verbose {
            println!("[{:>5} {:>9.3}s] {line}", self.step, self.world.now().as_secs_f64());
        }
        if self.trail.len() == TRAIL_STEPS {
            self.trail.pop_front();
        }
        self.trail.push_back(format!("{:>5}: {line}", self.step));
    }

    /// Starts a task in the current incarnation.
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        let _ = self.pool.spawner().spawn_local(task);
    }

    /// Runs every task that can run.
    pub fn run_ready(&mut self) {
        self.pool.run_until_stalled();
    }

    /// Moves time on by `by` (firing the timers due), running what they wake.
    pub fn advance(&mut self, by: Duration) {
        let to = self.world.now() + by;
        while let Some(deadline) = self.world.next_deadline().filter(|deadline| *deadline <= to) {
            self.world.advance_to(deadline);
            self.pool.run_until_stalled();
        }
        self.world.advance_to(to);
        self.pool.run_until_stalled();
    }

    /// Runs `future` to completion, moving time on to the next timer whenever nothing can run.
    pub fn block_on<T: 'static>(&mut self, future: impl Future<Output = T> + 'static) -> Result<T, String> {
        // Tasks with timers of their own (a shard's) keep time moving forever: give up
        // after an hour of it.
        let give_up = self.world.now() + Duration::from_secs(3600);
        let slot: Rc<RefCell<Option<T>>> = Rc::default();
        let out = slot.clone();
        self.spawn(async move {
            let value = future.await;
            *out.borrow_mut() = Some(value);
        });
        loop {
            self.pool.run_until_stalled();
            if let Some(value) = slot.borrow_mut().take() {
                return Ok(value);
            }
            match self.world.next_deadline() {
                Some(deadline) if deadline <= give_up => self.world.advance_to(deadline),
                Some(_) => return Err("stuck: the operation is not done after an hour of virtual time".to_owned()),
                None => return Err(STUCK.to_owned()),
            }
        }
    }

    /// The process dies (its tasks with it) and the disk keeps what `crash` leaves; a new
    /// incarnation starts with no task.
    pub fn crash(&mut self, crash: Crash) {
        self.pool = LocalPool::new();
        self.world.clear_timers();
        self.world.fs().crash(crash);
        self.world.set_spawner(self.pool.spawner());
        self.report.restarts += 1;
        match crash {
            Crash::Process => self.report.process_crashes += 1,
            Crash::Power => self.report.power_losses += 1,
        }
    }

    /// Writes and syncs the disk has failed so far.
    pub fn disk_errors(&self) -> u64 {
        let stats = self.world.fs().stats();
        stats.write_errors + stats.sync_errors
    }

    /// Sets the disk's faults for this stretch of the run, at random (often none).
    pub fn shuffle_faults(&mut self) -> Faults {
        let rng = &mut self.rng;
        let faults = if rng.u8(..4) == 0 {
            Faults { scatter: self.scatter, ..Faults::NONE }
        } else {
            Faults {
                capacity_bytes: if rng.u8(..4) == 0 { rng.u64(256 * 1024..2 * 1024 * 1024) } else { u64::MAX },
                pause: [0.0, 0.2, 0.6][rng.usize(..3)],
                write_error: if rng.u8(..8) == 0 { 0.01 } else { 0.0 },
                short_write: if rng.bool() { 0.2 } else { 0.0 },
                sync_error: if rng.u8(..8) == 0 { 0.01 } else { 0.0 },
                scatter: self.scatter,
            }
        };
        self.world.fs().set_faults(faults);
        faults
    }

    /// A fsync mode for a run: mostly the default (before every acknowledgement).
    pub fn fsync_mode(&mut self) -> FsyncMode {
        if self.interval && self.rng.u8(..4) == 0 {
            FsyncMode::Interval(Duration::from_millis(self.rng.u64(1..50)))
        } else {
            FsyncMode::Always
        }
    }

    /// Random bytes: mostly small, sometimes up to `max`.
    pub fn body(&mut self, max: usize) -> Vec<u8> {
        let len = match self.rng.u8(..10) {
            0 => self.rng.usize(..max.max(1)),
            1 => 0,
            _ => self.rng.usize(1..600),
        };
        let mut bytes = vec![0u8; len];
        self.rng.fill(&mut bytes);
        bytes
    }
}

/// The segment files of `dir` as a failure reports them: each one's size, dirty sectors,
/// and the sequence number and flush of its first and last records.
pub fn describe_dir(world: &World, dir: &std::path::Path) -> String {
    use crate::storage::record::{decode_past_skips, flush_of, Decoded};
    let mut out = String::new();
    for (path, data, dirty) in world.fs().snapshot(dir) {
        let mut records = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let (found, decoded) = decode_past_skips(&data, at);
            match decoded {
                Decoded::Record { seq, size, .. } => {
                    records.push((seq, flush_of(&data[found..]), found));
                    at = found + size;
                }
                Decoded::Damaged { reason } => {
                    records.push((0, 0, found));
                    out.push_str(&format!("\n    (damage at {found}: {reason})"));
                    at = found + 8;
                    while at < data.len() && !matches!(decode_past_skips(&data, at).1, Decoded::Record { .. }) {
                        at += 8;
                    }
                }
                Decoded::End => break,
            }
        }
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let span = match (records.first(), records.last()) {
            (Some(first), Some(last)) => {
                format!("records {}..={} (flush {}..={}), {} in all", first.0, last.0, first.1, last.1, records.len())
            }
            _ => "no records".to_owned(),
        };
        out.push_str(&format!("\n  {name}: {} bytes, {dirty} dirty sectors, {span}", data.len()));
    }
    out
}

/// A record found in a log: sequence number, body, and stamp (kind or arrival time).
pub type Found = (u64, Vec<u8>, u64);

/// What is known of one appended record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Staged; not acknowledged.
    Staged,
    /// Its `durable` returned.
    Acknowledged,
    /// Read back by a reader, or found at a restart.
    Seen,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub body: Vec<u8>,
    /// The record's kind (log) or arrival time (stream).
    pub stamp: u64,
    pub known: Known,
}

/// Every record appended and not known to be gone, by sequence number.
#[derive(Default)]
pub struct Oracle {
    pub entries: BTreeMap<u64, Entry>,
    /// Records a restart found removed by retention (or compaction): they must stay gone.
    pub removed: BTreeMap<u64, Entry>,
}

impl Oracle {
    /// A record was appended with sequence number `seq`: it must be new.
    pub fn appended(&mut self, seq: u64, body: Vec<u8>, stamp: u64) -> Result<(), String> {
        if let Some((last, entry)) = self.entries.last_key_value() {
            if seq <= *last {
                return Err(format!("sequence number {seq} handed out again: record {last} ({:?}) is already there", entry.known));
            }
        }
        self.entries.insert(seq, Entry { body, stamp, known: Known::Staged });
        Ok(())
    }

    pub fn acknowledged(&mut self, seq: u64) {
        if let Some(entry) = self.entries.get_mut(&seq) {
            if entry.known == Known::Staged {
                entry.known = Known::Acknowledged;
            }
        }
    }

    /// A reader got record `seq` with `body` and `stamp`: it must be the record appended.
    pub fn seen(&mut self, seq: u64, body: &[u8], stamp: u64) -> Result<(), String> {
        let Some(entry) = self.entries.get_mut(&seq) else {
            if let Some(entry) = self.removed.get(&seq) {
                return Err(format!("record {seq} ({} bytes) came back after it was found removed", entry.body.len()));
            }
            return Err(format!("record {seq} read back, but no record with that sequence number was appended (or it was lost before)"));
        };
        if entry.body != body || entry.stamp != stamp {
            return Err(format!(
                "record {seq} read back changed: {} bytes stamped {} were appended, {} bytes stamped {stamp} came back",
                entry.body.len(),
                entry.stamp,
                body.len()
            ));
        }
        entry.known = Known::Seen;
        Ok(())
    }

    /// After a restart: `found` is every record the log holds, in its order. Checks it and
    /// learns from it: what was found is seen, what was not (and was allowed to go) is gone.
    /// `must_keep` says which entries no crash may take; `may_be_removed` which ones
    /// retention may have removed.
    pub fn recovered(
        &mut self,
        found: &[Found],
        must_keep: impl Fn(u64, &Entry) -> bool,
        may_be_removed: impl Fn(u64, &Entry) -> bool,
    ) -> Result<(), String> {
        for pair in found.windows(2) {
            if pair[1].0 <= pair[0].0 {
                return Err(format!("records out of order after the restart: {} after {}", pair[1].0, pair[0].0));
            }
        }
        for (seq, body, stamp) in found {
            self.seen(*seq, body, *stamp).map_err(|error| format!("after the restart: {error}"))?;
        }
        let present: std::collections::BTreeSet<u64> = found.iter().map(|(seq, ..)| *seq).collect();
        for (seq, entry) in &self.entries {
            if !present.contains(seq) && must_keep(*seq, entry) && !may_be_removed(*seq, entry) {
                return Err(format!(
                    "record {seq} ({:?}, {} bytes) is gone after the restart; the log holds {} records{}",
                    entry.known,
                    entry.body.len(),
                    found.len(),
                    match (found.first(), found.last()) {
                        (Some(first), Some(last)) => format!(", {} to {}", first.0, last.0),
                        _ => String::new(),
                    }
                ));
            }
        }
        let missing: Vec<u64> = self.entries.keys().filter(|seq| !present.contains(seq)).copied().collect();
        for seq in missing {
            if let Some(entry) = self.entries.remove(&seq) {
                if may_be_removed(seq, &entry) && entry.known != Known::Staged {
                    self.removed.insert(seq, entry);
                }
            }
        }
        Ok(())
    }
}
