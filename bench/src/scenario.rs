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
    /// Open loop at half of what Sluice (`--fsync always`) reached in `queue-max-100b` this session.
    HalfSluiceMax,
}

pub struct Scenario {
    pub name: &'static str,
    pub what: &'static str,
    pub message_size: usize,
    pub load: Load,
    /// Why the scenario cannot run yet, if it cannot.
    pub pending: Option<&'static str>,
}

pub const SCENARIOS: [Scenario; 7] = [
    Scenario {
        name: "queue-max-100b",
        what: "queue, maximum throughput, 100 B messages",
        message_size: 100,
        load: Load::Max,
        pending: None,
    },
    Scenario {
        name: "queue-max-1k",
        what: "queue, maximum throughput, 1 KiB messages",
        message_size: 1024,
        load: Load::Max,
        pending: None,
    },
    Scenario {
        name: "queue-latency-half",
        what: "queue latency at half of Sluice's maximum (fsync always), 100 B",
        message_size: 100,
        load: Load::HalfSluiceMax,
        pending: None,
    },
    Scenario {
        name: "queue-latency-50k",
        what: "queue latency at a fixed 50,000 msgs/s, 100 B",
        message_size: 100,
        load: Load::Rate(50_000),
        pending: None,
    },
    Scenario {
        name: "queue-latency-5k",
        what: "queue latency at a fixed 5,000 msgs/s (a rate every peer sustains), 100 B",
        message_size: 100,
        load: Load::Rate(5_000),
        pending: None,
    },
    Scenario {
        name: "fanout-10",
        what: "publish to a topic with 10 subscribed queues, 100 B",
        message_size: 100,
        load: Load::Max,
        pending: Some("Sluice has no topics yet (issue 4); the fanout workload comes with them"),
    },
    Scenario {
        name: "stream-ingest-1k",
        what: "stream ingest, PutRecords of 1 KiB records",
        message_size: 1024,
        load: Load::Max,
        pending: Some("Sluice has no streams yet (issue 5); the stream workload comes with them"),
    },
];

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

/// Flags every system gets from `sluice-load`, beyond target, size and load: 32 producers
/// and twice as many consumers (a receive and its acknowledgement are two round trips),
/// which keeps every broker here busy without a backlog growing (measured: fewer leave
/// Sluice with `--fsync always` waiting on fdatasyncs, more only add latency).
const LOAD_FLAGS: [&str; 8] = ["--connections", "2", "--producers", "32", "--consumers", "64", "--batch", "10"];
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
    let stamp = sh("date", &["-u", "+%Y-%m-%d-run-%H%M"]);
    let folder = settings.results.join(&stamp);
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
    let mut sluice_max: Option<f64> = None;
    for scenario in &settings.scenarios {
        if let Some(reason) = scenario.pending {
            eprintln!("== {}: skipped: {reason}", scenario.name);
            for &system in &systems {
                outcomes.push(Outcome { scenario: scenario.name, system, summary: None, note: Some(reason.to_owned()) });
            }
            continue;
        }
        let rate = match scenario.load {
            Load::Max => None,
            Load::Rate(rate) => Some(rate),
            Load::HalfSluiceMax => Some(match sluice_max {
                Some(max) => (max / 2.0).round() as u64,
                None => {
                    eprintln!("== {}: measuring Sluice's maximum first", scenario.name);
                    let probe = &SCENARIOS[0];
                    let dir = folder.join("queue-max-100b");
                    let outcome = run_one(settings, probe, System::SluiceFsyncAlways, None, &dir, &mut commands);
                    let max = received_per_second(&outcome).ok_or("could not measure Sluice's maximum")?;
                    outcomes.push(outcome);
                    sluice_max = Some(max);
                    (max / 2.0).round() as u64
                }
            }),
        };
        for &system in &systems {
            let dir = folder.join(scenario.name);
            if outcomes.iter().any(|o: &Outcome| o.scenario == scenario.name && o.system == system) {
                continue;
            }
            let outcome = run_one(settings, scenario, system, rate, &dir, &mut commands);
            if scenario.name == "queue-max-100b" && system == System::SluiceFsyncAlways {
                sluice_max = received_per_second(&outcome);
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
    load.args(["--target", system.target(), "--endpoint", &system.endpoint(), "--workload", "queue"]);
    load.args(["--message-size", &scenario.message_size.to_string(), "--cores", &settings.load_cores.to_string()]);
    load.args(LOAD_FLAGS);
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
