//! `sluice-bench run`: every scenario against every installed system in one session, each
//! system started fresh for each run, and the results written to one folder of `results/`
//! with the machine, the versions, the exact commands, the raw histograms, a table of
//! ratios (also put at the top of `results/README.md`) and plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::systems::{self, System};

/// How a scenario loads the broker.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// Closed loop: the most each system takes.
    Max,
    /// Open loop at a fixed rate, msgs/s.
    Rate(u64),
    /// Open loop at half of what Sluice (`--fsync always`) reached in the scenario named, this
    /// session (measured first when it did not run).
    HalfSluiceMax(&'static str),
}

/// What `sluice-load` does in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Queue,
    /// The queue workload on a FIFO queue with `groups` message groups, each message with a
    /// deduplication id of its own (NATS: publishes with a Nats-Msg-Id, deduplicated in a
    /// five-minute window; no other peer has an equivalent).
    Fifo {
        groups: usize,
    },
    /// A standard queue shared by tenants, one of them noisy: `sluice-load --tenants` with
    /// consumers slower than the producers, so a backlog grows; `grouped`: each message
    /// carries its tenant as MessageGroupId (a fair queue), else none (Sluice only).
    Tenants {
        grouped: bool,
    },
    /// Synchronous producers: `producers` of them, each with one SendMessageBatch of 10 in
    /// flight (what a producer that waits for each acknowledgement sees); consumers drain.
    QueueSync {
        producers: usize,
    },
    /// Publish to a topic with `subscribers` queues (raw delivery); `consumers` drain them
    /// (none: the queues only fill, and the scenario measures publishing alone). With
    /// `groups`, a FIFO topic and FIFO queues, each publish in one of that many message groups
    /// with a deduplication id of its own (NATS: deduplicated publishes; no other peer).
    Fanout {
        subscribers: usize,
        consumers: usize,
        groups: usize,
    },
    /// PutRecords (100 records each) over a stream of `shards` shards, each shard read by
    /// `readers` readers (none: ingest alone): Sluice push subscriptions, a Redis stream per
    /// shard read with XREAD, a JetStream subject per shard read by ordered consumers, a
    /// RabbitMQ stream queue per shard.
    Stream {
        shards: usize,
        readers: usize,
    },
    /// PutRecordBatch (100 records each) into a Firehose delivery stream delivering GZIP
    /// objects to the local filesystem (Sluice only); `read_back`: the objects are read as they
    /// appear (end to end: Firehose's data freshness).
    Firehose {
        read_back: bool,
    },
}

impl Workload {
    /// Whether anything is received (so there is an end-to-end latency).
    pub fn receives(self) -> bool {
        !matches!(
            self,
            Workload::Fanout { consumers: 0, .. } | Workload::Stream { readers: 0, .. } | Workload::Firehose { read_back: false }
        )
    }
}

pub struct Scenario {
    pub name: &'static str,
    pub what: &'static str,
    pub message_size: usize,
    pub load: Load,
    pub workload: Workload,
    /// Why the scenario cannot run yet, if it cannot.
    pub pending: Option<&'static str>,
}

/// End-to-end fan-out runs at 100,000 deliveries/s in all, well inside what Sluice's
/// consumers drain on this machine (about 200,000/s), so latency is measured without a backlog.
const FANOUT_DELIVERIES_PER_SECOND: u64 = 100_000;

const fn fanout(name: &'static str, what: &'static str, subscribers: usize, consumers: usize, load: Load) -> Scenario {
    Scenario { name, what, message_size: 100, load, workload: Workload::Fanout { subscribers, consumers, groups: 0 }, pending: None }
}

const fn queue(name: &'static str, what: &'static str, message_size: usize, load: Load) -> Scenario {
    Scenario { name, what, message_size, load, workload: Workload::Queue, pending: None }
}

const fn fifo(name: &'static str, what: &'static str, groups: usize, load: Load) -> Scenario {
    Scenario { name, what, message_size: 100, load, workload: Workload::Fifo { groups }, pending: None }
}

pub const SCENARIOS: [Scenario; 28] = [
    queue("queue-max-100b", "queue, maximum throughput, 100 B messages", 100, Load::Max),
    queue("queue-max-1k", "queue, maximum throughput, 1 KiB messages", 1024, Load::Max),
    queue(
        "queue-latency-half",
        "queue latency at half of Sluice's maximum (fsync always), 100 B",
        100,
        Load::HalfSluiceMax("queue-max-100b"),
    ),
    queue("queue-latency-50k", "queue latency at a fixed 50,000 msgs/s, 100 B", 100, Load::Rate(50_000)),
    queue("queue-latency-5k", "queue latency at a fixed 5,000 msgs/s (a rate every peer sustains), 100 B", 100, Load::Rate(5_000)),
    Scenario {
        name: "queue-sync",
        what: "4 synchronous producers (one SendMessageBatch of 10 each in flight), 100 B, beside the disk's append-to-durable floor",
        message_size: 100,
        load: Load::Max,
        workload: Workload::QueueSync { producers: 4 },
        pending: None,
    },
    fanout("fanout-ingest-1", "publishing alone (no consumers) to a topic with 1 subscribed queue, maximum, 100 B", 1, 0, Load::Max),
    fanout("fanout-ingest-10", "publishing alone (no consumers) to a topic with 10 subscribed queues, maximum, 100 B", 10, 0, Load::Max),
    fanout("fanout-ingest-100", "publishing alone (no consumers) to a topic with 100 subscribed queues, maximum, 100 B", 100, 0, Load::Max),
    fanout(
        "fanout-ingest-1000",
        "publishing alone (no consumers) to a topic with 1,000 subscribed queues, maximum, 100 B",
        1000,
        0,
        Load::Max,
    ),
    fanout(
        "fanout-1",
        "publish to a topic with 1 subscribed queue at 100,000 msgs/s, consumers draining it, 100 B",
        1,
        64,
        Load::Rate(FANOUT_DELIVERIES_PER_SECOND),
    ),
    fanout(
        "fanout-10",
        "publish to a topic with 10 subscribed queues at 10,000 msgs/s (100,000 deliveries/s), consumers draining them, 100 B",
        10,
        64,
        Load::Rate(FANOUT_DELIVERIES_PER_SECOND / 10),
    ),
    fanout(
        "fanout-100",
        "publish to a topic with 100 subscribed queues at 1,000 msgs/s (100,000 deliveries/s), consumers draining them, 100 B",
        100,
        100,
        Load::Rate(FANOUT_DELIVERIES_PER_SECOND / 100),
    ),
    fanout(
        "fanout-1000",
        "publish to a topic with 1,000 subscribed queues at 100 msgs/s (100,000 deliveries/s), consumers draining them, 100 B",
        1000,
        1000,
        Load::Rate(FANOUT_DELIVERIES_PER_SECOND / 1000),
    ),
    stream("stream-ingest-4", "stream ingest alone, PutRecords of 100 1 KiB records over 4 shards, maximum", 4, 0),
    stream("stream-ingest-16", "stream ingest alone, PutRecords of 100 1 KiB records over 16 shards, maximum", 16, 0),
    stream("stream-read-1", "stream ingest and reading, 4 shards, 1 push consumer per shard, 1 KiB, maximum", 4, 1),
    stream("stream-read-5", "stream ingest and reading, 4 shards, 5 push consumers per shard, 1 KiB, maximum", 4, 5),
    Scenario {
        name: "firehose-ingest-1k",
        what: "Firehose ingest alone: PutRecordBatch of 100 1 KiB records into a delivery stream delivering GZIP objects (5 MiB buffers, interval 0) to the local filesystem, maximum (producers told to slow down pause 50 ms, as SDKs retry)",
        message_size: 1024,
        load: Load::Max,
        workload: Workload::Firehose { read_back: false },
        pending: None,
    },
    Scenario {
        name: "firehose-freshness-1k",
        what: "Firehose at a fixed 100,000 records/s (100 MB/s) of 1 KiB into GZIP objects on the local filesystem, objects read back as they appear: end to end is the data freshness",
        message_size: 1024,
        load: Load::Rate(100_000),
        workload: Workload::Firehose { read_back: true },
        pending: None,
    },
    fifo("fifo-max-1000-groups", "FIFO queue, 1,000 message groups, maximum throughput, 100 B", 1000, Load::Max),
    fifo(
        "fifo-max-1-group",
        "FIFO queue, one message group (all in one order), maximum throughput (producers unpaced, so they outrun the group's consumers and a backlog grows), 100 B",
        1,
        Load::Max,
    ),
    fifo(
        "fifo-1-group-20k",
        "FIFO queue, one message group (all in one order) at a fixed 20,000 msgs/s: received in order as fast as sent, with fsync before ack, 100 B",
        1,
        Load::Rate(20_000),
    ),
    fifo(
        "fifo-latency-half",
        "FIFO queue latency, 1,000 groups, at half of Sluice's FIFO maximum (fsync always), 100 B",
        1000,
        Load::HalfSluiceMax("fifo-max-1000-groups"),
    ),
    Scenario {
        name: "fifo-topic-ingest-10",
        what: "publishing alone (no consumers) to a FIFO topic with 10 subscribed FIFO queues, 1,000 message groups, maximum, 100 B",
        message_size: 100,
        load: Load::Max,
        workload: Workload::Fanout { subscribers: 10, consumers: 0, groups: 1000 },
        pending: None,
    },
    Scenario {
        name: "fifo-topic-10",
        what: "publish to a FIFO topic with 10 subscribed FIFO queues at 3,000 msgs/s (30,000 deliveries/s), 1,000 message groups, consumers draining them in order, 100 B",
        message_size: 100,
        load: Load::Rate(3_000),
        workload: Workload::Fanout { subscribers: 10, consumers: 64, groups: 1000 },
        pending: None,
    },
    Scenario {
        name: "fair-noisy-tenant",
        what: "fair queue: 10 tenants (MessageGroupId) at 10,000 msgs/s, one sending 90 %, consumers taking about 7,500/s (10 ms of work per batch), so the noisy tenant's backlog grows; the quiet tenants' dwell time, 100 B",
        message_size: 100,
        load: Load::Rate(TENANTS_RATE),
        workload: Workload::Tenants { grouped: true },
        pending: None,
    },
    Scenario {
        name: "fair-noisy-tenant-ungrouped",
        what: "the same without MessageGroupId (a queue that is not fair): the quiet tenants wait behind the backlog, 100 B",
        message_size: 100,
        load: Load::Rate(TENANTS_RATE),
        workload: Workload::Tenants { grouped: false },
        pending: None,
    },
];

/// The tenant scenarios' rate, a third above what their consumers take.
const TENANTS_RATE: u64 = 10_000;
/// The tenant scenarios' consumers: this many, each spending [`TENANTS_WORK_US`] on a batch of
/// 10, take about 7,500 msgs/s.
const TENANTS_CONSUMERS: &str = "8";
const TENANTS_WORK_US: &str = "10000";

const fn stream(name: &'static str, what: &'static str, shards: usize, readers: usize) -> Scenario {
    Scenario { name, what, message_size: 1024, load: Load::Max, workload: Workload::Stream { shards, readers }, pending: None }
}

/// The runner's settings, from the command line.
pub struct Settings {
    pub scenarios: Vec<&'static Scenario>,
    pub systems: Vec<System>,
    pub duration: u64,
    pub warmup: u64,
    pub sluice_cores: usize,
    pub load_cores: usize,
    pub results: PathBuf,
    pub scratch: PathBuf,
    pub binaries: PathBuf,
}

/// Connections per load-generator core every system gets (more for many consumers, below),
/// shared by 32 producers everywhere but `queue-sync` and twice as many consumers (a receive and
/// its acknowledgement are two round trips), which keeps every broker here busy without a
/// backlog growing (measured: fewer leave Sluice with `--fsync always` waiting on fdatasyncs,
/// more only add latency).
const CONNECTIONS: usize = 2;
/// Consumers per connection at most: a connection of 1,000 long-polling consumers is throttled
/// by the broker (Sluice reads no more from a connection holding 1,024 units in flight, a
/// receive counting 16), which held the producers sharing it back by seconds in `fanout-1000`
/// (`results/2026-12-06-fanout-1000-profile/`).
const CONSUMERS_PER_CONNECTION: usize = 50;
/// Producers of every workload but `QueueSync`.
const PRODUCERS: &str = "32";
/// Consumers of the synchronous-producer workload: enough to keep its queue empty.
const SYNC_CONSUMERS: &str = "8";
/// Records per PutRecords in the stream scenarios (queues and topics batch 10, SQS's and SNS's most).
const STREAM_BATCH: &str = "100";
/// Consumers of the queue workload (fan-out scenarios say their own).
const QUEUE_CONSUMERS: &str = "64";
/// Closed loop: one send in flight per producer, so the consumers keep up.
const MAX_INFLIGHT: &str = "1";

pub struct Outcome {
    pub scenario: &'static str,
    pub system: System,
    pub summary: Option<Value>,
    pub note: Option<String>,
}

fn sh(program: &str, args: &[&str]) -> String {
    Command::new(program).args(args).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|l| l.trim_start_matches([' ', '\t', ':'])).unwrap_or("unknown");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo.lines().find(|l| l.starts_with("MemTotal")).unwrap_or("MemTotal: unknown");
    format!(
        "cpu: {model}\ncores: {}\n{memory}\nkernel: {}\nrustc: {}\nsluice commit: {}\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        sh("uname", &["-srm"]),
        sh("rustc", &["--version"]),
        sh("git", &["describe", "--always", "--dirty"]),
    )
}

/// Runs everything; returns the folder written.
pub fn run(settings: &Settings) -> Result<PathBuf, String> {
    // Two runs started in the same minute get their own folders (-2, -3 …), never one over the other.
    let stamp = sh("date", &["-u", "+%Y-%m-%d-run-%H%M"]);
    let folder = (1..)
        .map(|n| settings.results.join(if n == 1 { stamp.clone() } else { format!("{stamp}-{n}") }))
        .find(|folder| !folder.exists())
        .expect("a free folder name");
    let stamp = folder.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or(stamp);
    std::fs::create_dir_all(&folder).map_err(|e| format!("creating {}: {e}", folder.display()))?;
    let systems: Vec<System> = settings.systems.iter().copied().filter(|s| s.installed()).collect();
    let missing: Vec<&str> = settings.systems.iter().filter(|s| !s.installed()).map(|s| s.name()).collect();
    let mut versions = String::new();
    for system in &systems {
        writeln!(versions, "{}: {}", system.name(), system.version(&settings.binaries)).ok();
    }
    writeln!(versions, "sluice-load: {}", sh(&settings.binaries.join("sluice-load").display().to_string(), &["--version"])).ok();
    std::fs::write(folder.join("machine.txt"), machine()).map_err(|e| e.to_string())?;
    std::fs::write(folder.join("versions.txt"), &versions).map_err(|e| e.to_string())?;
    if !missing.is_empty() {
        eprintln!("sluice-bench: not installed, left out: {} (bench/scripts/install-peers.sh installs them)", missing.join(", "));
    }
    let mut commands = format!("$ {}\n", std::env::args().collect::<Vec<_>>().join(" "));
    let mut outcomes = Vec::new();
    // What Sluice (`--fsync always`) reached in each maximum-throughput scenario run so far.
    let mut sluice_max: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    for scenario in &settings.scenarios {
        if let Some(reason) = scenario.pending {
            eprintln!("== {}: skipped: {reason}", scenario.name);
            for &system in systems.iter().filter(|s| s.runs(scenario.workload)) {
                outcomes.push(Outcome { scenario: scenario.name, system, summary: None, note: Some(reason.to_owned()) });
            }
            continue;
        }
        let rate = match scenario.load {
            Load::Max => None,
            Load::Rate(rate) => Some(rate),
            Load::HalfSluiceMax(probe_name) => Some(match sluice_max.get(probe_name) {
                Some(max) => (max / 2.0).round() as u64,
                None => {
                    eprintln!("== {}: measuring Sluice's maximum in {probe_name} first", scenario.name);
                    let probe = SCENARIOS.iter().find(|s| s.name == probe_name).ok_or("no such scenario to measure")?;
                    let dir = folder.join(probe_name);
                    let outcome = run_one(settings, probe, System::SluiceFsyncAlways, None, &dir, &mut commands);
                    let max = received_per_second(&outcome).ok_or("could not measure Sluice's maximum")?;
                    outcomes.push(outcome);
                    sluice_max.insert(probe_name, max);
                    (max / 2.0).round() as u64
                }
            }),
        };
        for &system in &systems {
            let dir = folder.join(scenario.name);
            if !system.runs(scenario.workload) || outcomes.iter().any(|o: &Outcome| o.scenario == scenario.name && o.system == system) {
                continue;
            }
            let mut outcome = run_one(settings, scenario, system, rate, &dir, &mut commands);
            if matches!(scenario.load, Load::Max) && system == System::SluiceFsyncAlways {
                if let Some(max) = received_per_second(&outcome) {
                    sluice_max.insert(scenario.name, max);
                }
            }
            if matches!(scenario.workload, Workload::QueueSync { .. }) && system == System::SluiceFsyncAlways {
                disk_floor(settings, &dir, &mut outcome, &mut commands);
            }
            outcomes.push(outcome);
        }
    }
    std::fs::write(folder.join("commands.txt"), &commands).map_err(|e| e.to_string())?;
    let table = crate::table::write(&folder, &stamp, &settings.scenarios, &outcomes, &versions)?;
    crate::plot::write(&folder, &settings.scenarios, &outcomes)?;
    crate::table::update_readme(&settings.results, &stamp, &table)?;
    Ok(folder)
}

/// Measures, right after Sluice's run, what one append of a 1 KiB record (a batch of ten
/// 100 B messages) takes to be durable on the same disk with nothing else in flight — the
/// floor a synchronous producer's acknowledgement cannot beat — with `sluice-bench log`, and
/// adds it to Sluice's summary as `disk_floor` (`p50_us`, `p99_us`).
fn disk_floor(settings: &Settings, dir: &Path, outcome: &mut Outcome, commands: &mut String) {
    let Some(summary) = outcome.summary.as_mut().and_then(Value::as_object_mut) else { return };
    let Ok(me) = std::env::current_exe() else { return };
    let report = dir.join("disk-floor.txt");
    let scratch = settings.scratch.join("disk-floor");
    let mut command = Command::new(me);
    command.args(["log", "--record-bytes", "1100", "--appenders", "1", "--seconds", &settings.duration.min(10).to_string()]);
    command.arg("--dir").arg(&scratch).arg("--out").arg(&report);
    writeln!(commands, "\n# the disk's append-to-durable floor\n$ {command:?}").ok();
    let _ = command.output();
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    // "append->durable us: p50 N p99 N p99.9 N max N"
    let Some(line) = text.lines().find(|line| line.starts_with("append->durable us:")) else { return };
    let words: Vec<&str> = line.split_whitespace().collect();
    let value = |name: &str| words.iter().position(|w| *w == name).and_then(|at| words.get(at + 1)?.parse::<u64>().ok());
    summary.insert("disk_floor".into(), serde_json::json!({ "p50_us": value("p50"), "p99_us": value("p99") }));
}

pub fn received_per_second(outcome: &Outcome) -> Option<f64> {
    outcome.summary.as_ref()?.get("received_per_second")?.as_f64()
}

fn run_one(settings: &Settings, scenario: &Scenario, system: System, rate: Option<u64>, dir: &Path, commands: &mut String) -> Outcome {
    let out = dir.join(system.name());
    let _ = std::fs::create_dir_all(&out);
    eprintln!("== {} on {}{}", scenario.name, system.name(), rate.map(|r| format!(" at {r} msgs/s")).unwrap_or_default());
    let failed = |note: String| {
        eprintln!("   {note}");
        Outcome { scenario: scenario.name, system, summary: None, note: Some(note) }
    };
    let server = match systems::start(
        system,
        &settings.binaries,
        &settings.scratch.join(system.name()),
        settings.sluice_cores,
        &out.join("server.log"),
    ) {
        Ok(server) => server,
        Err(error) => return failed(error),
    };
    writeln!(commands, "\n# {} on {}\n$ {}", scenario.name, system.name(), server.command).ok();
    let mut load = Command::new(settings.binaries.join("sluice-load"));
    load.args(["--target", system.target(), "--endpoint", &system.endpoint()]);
    if let Some((id, secret)) = system.signing_key() {
        load.args(["--access-key-id", id, "--secret-access-key", secret]);
    }
    if let (Some(key), Workload::Stream { .. }) = (system.stream_encryption(), scenario.workload) {
        load.args(["--stream-encryption", key]);
    }
    load.args(["--message-size", &scenario.message_size.to_string(), "--cores", &settings.load_cores.to_string()]);
    let consumers = match scenario.workload {
        Workload::Fanout { consumers, .. } => consumers,
        _ => 0,
    };
    load.args(["--connections", &CONNECTIONS.max(consumers.div_ceil(CONSUMERS_PER_CONNECTION)).to_string()]);
    let producers = match scenario.workload {
        Workload::QueueSync { producers } => producers.to_string(),
        _ => PRODUCERS.to_owned(),
    };
    load.args(["--producers", &producers]);
    match scenario.workload {
        Workload::Queue => load.args(["--workload", "queue", "--consumers", QUEUE_CONSUMERS, "--batch", "10"]),
        Workload::Fifo { groups } => {
            load.args(["--workload", "queue", "--consumers", QUEUE_CONSUMERS, "--batch", "10", "--fifo-groups", &groups.to_string()])
        }
        Workload::QueueSync { .. } => load.args(["--workload", "queue", "--consumers", SYNC_CONSUMERS, "--batch", "10"]),
        Workload::Tenants { grouped } => {
            load.args(["--workload", "queue", "--consumers", TENANTS_CONSUMERS, "--work-us", TENANTS_WORK_US, "--batch", "10"]);
            load.args(["--tenants", "10", "--noisy-percent", "90"]);
            if !grouped {
                load.arg("--tenants-ungrouped");
            }
            &mut load
        }
        Workload::Fanout { subscribers, consumers, groups } => {
            load.args(["--workload", "fanout", "--subscribers", &subscribers.to_string(), "--consumers", &consumers.to_string()]);
            load.args(["--batch", "10", "--fifo-groups", &groups.to_string()])
        }
        Workload::Firehose { read_back } => {
            load.args(["--workload", "firehose", "--consumers", "1", "--batch", STREAM_BATCH]);
            if read_back {
                load.arg("--firehose-objects").arg(settings.scratch.join(system.name()).join("firehose-objects").join("sluice-load"));
            }
            &mut load
        }
        Workload::Stream { shards, readers } => {
            let consumers = (shards * readers).div_ceil(settings.load_cores);
            load.args([
                "--workload",
                "stream",
                "--shards",
                &shards.to_string(),
                "--consumers",
                &consumers.to_string(),
                "--batch",
                STREAM_BATCH,
            ])
        }
    };
    match rate {
        Some(rate) => load.args(["--rate", &rate.to_string()]),
        None => load.args(["--inflight", MAX_INFLIGHT]),
    };
    load.args(["--duration", &settings.duration.to_string(), "--warmup", &settings.warmup.to_string()]);
    load.arg("--out").arg(&out);
    let shown = format!("{load:?}");
    writeln!(commands, "$ {shown}").ok();
    let output = load.output();
    drop(server);
    let _ = std::fs::remove_dir_all(settings.scratch.join(system.name()));
    match output {
        Ok(output) => {
            let report = String::from_utf8_lossy(&output.stdout).into_owned();
            let live = String::from_utf8_lossy(&output.stderr).into_owned();
            let _ = std::fs::write(out.join("report.txt"), format!("$ {shown}\n{report}\n{live}"));
            eprint!(
                "{}",
                report
                    .lines()
                    .filter(|l| l.starts_with("received") || l.starts_with("end_to_end"))
                    .map(|l| format!("   {l}\n"))
                    .collect::<String>()
            );
            if !output.status.success() {
                return failed(format!("sluice-load failed: {}", live.lines().last().unwrap_or("")));
            }
            match std::fs::read_to_string(out.join("summary.json")).ok().and_then(|s| serde_json::from_str(&s).ok()) {
                Some(summary) => Outcome { scenario: scenario.name, system, summary: Some(summary), note: None },
                None => failed("sluice-load wrote no summary.json".into()),
            }
        }
        Err(error) => failed(format!("running sluice-load: {error}")),
    }
}
