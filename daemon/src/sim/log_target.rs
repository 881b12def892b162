//! Target `log`: the segmented log as the queues use it — every record replayed at start,
//! the next segment prepared ahead, old segments removed as compaction removes them.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use super::{Driver, Known, Oracle};
use crate::env::memory::{Crash, Faults};
use crate::storage::log::{FsyncMode, Log, LogOptions, StorageError};

/// How a run of the log ended its incarnation.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Clean,
    Crash(Crash),
}

struct Run {
    options: LogOptions,
    oracle: Rc<RefCell<Oracle>>,
    /// Records before this sequence number may have been removed.
    floor: u64,
    log: Rc<Log>,
    /// Faults in force between restarts (a start runs without error faults).
    faults: Faults,
    /// Failed writes and syncs so far, when this incarnation started.
    disk_errors: u64,
}

pub fn run(driver: &mut Driver, steps: usize) -> Result<(), String> {
    let segment_bytes = driver.rng.u64(4..17) * 4096;
    let fsync = driver.fsync_mode();
    let options = LogOptions { dir: PathBuf::from("/sim/log"), segment_bytes, fsync, repair: false, spare_ahead: true };
    driver.note(format!("log: segments of {segment_bytes} bytes, fsync {fsync:?}"));
    let oracle = Rc::new(RefCell::new(Oracle::default()));
    let log = open(driver, &options, &oracle, 0, |_, _| false)?;
    let mut run = Run { options, oracle, floor: 0, log, faults: Faults::NONE, disk_errors: 0 };
    while driver.step < steps {
        driver.step += 1;
        match driver.rng.u8(..100) {
            0..=44 => append(driver, &run)?,
            45..=59 => {
                let ms = driver.rng.u64(1..200);
                driver.note(format!("time passes: {ms} ms"));
                driver.advance(Duration::from_millis(ms));
            }
            60..=65 => trim(driver, &mut run),
            66..=72 => restart(driver, &mut run, Stop::Clean)?,
            73..=80 => restart(driver, &mut run, Stop::Crash(Crash::Process))?,
            81..=87 => restart(driver, &mut run, Stop::Crash(Crash::Power))?,
            88..=91 => {
                run.faults = driver.shuffle_faults();
                driver.note(format!("disk faults: {:?}", run.faults));
            }
            _ => driver.run_ready(),
        }
    }
    restart(driver, &mut run, Stop::Clean)?;
    restart(driver, &mut run, Stop::Crash(Crash::Power))
}

fn append(driver: &mut Driver, run: &Run) -> Result<(), String> {
    let count = driver.rng.usize(1..=16);
    let mut appended = Vec::new();
    for _ in 0..count {
        let body = driver.body(run.options.segment_bytes as usize / 3);
        let kind = driver.rng.u8(1..=8);
        match run.log.append(kind, &body) {
            Ok(seq) => {
                run.oracle.borrow_mut().appended(seq, body, kind as u64)?;
                appended.push(seq);
                driver.report.appended += 1;
                let log = run.log.clone();
                let oracle = run.oracle.clone();
                driver.spawn(async move {
                    if log.durable(seq).await.is_ok() {
                        oracle.borrow_mut().acknowledged(seq);
                    }
                });
            }
            Err(error) => {
                driver.note(format!("append refused: {error}"));
                break;
            }
        }
    }
    if let (Some(first), Some(last)) = (appended.first(), appended.last()) {
        driver.note(format!("appended {first}..={last}"));
    }
    driver.run_ready();
    Ok(())
}

/// Removes segments before a random point, as compaction does once their records are kept elsewhere.
fn trim(driver: &mut Driver, run: &mut Run) {
    let next = run.log.next_seq();
    let seq = driver.rng.u64(run.floor.min(next)..=next);
    run.floor = run.floor.max(seq);
    driver.note(format!("remove segments before {seq}"));
    let log = run.log.clone();
    driver.spawn(async move {
        let _ = log.remove_segments_before(seq).await;
    });
    driver.run_ready();
}

/// Ends the incarnation (a clean close, a process crash or a power loss), starts the log
/// again and checks what it holds.
fn restart(driver: &mut Driver, run: &mut Run, stop: Stop) -> Result<(), String> {
    // A power loss takes back what was not synced: in interval mode, acknowledged records too.
    let synced = run.log.synced_seq();
    let stop = match stop {
        Stop::Clean => {
            let log = run.log.clone();
            match driver.block_on(async move { log.close().await })? {
                Ok(()) => Stop::Clean,
                Err(error) => {
                    driver.note(format!("close failed ({error}): the process exits"));
                    Stop::Crash(Crash::Process)
                }
            }
        }
        other => other,
    };
    driver.note(format!("restart after {stop:?}"));
    if let Stop::Crash(crash) = stop {
        driver.crash(crash);
    } else {
        driver.crash(Crash::Process);
    }
    // In interval mode an acknowledgement means written, not synced: a power loss, or a
    // failed write or sync (the disk may have dropped what it held), may take back what
    // came after the last sync.
    let interval = matches!(run.options.fsync, FsyncMode::Interval(_));
    let disk_failed = driver.disk_errors() > run.disk_errors;
    let must_keep = move |seq: u64, entry: &super::Entry| match stop {
        Stop::Crash(Crash::Power) if interval => seq <= synced && entry.known != Known::Staged,
        _ if interval && disk_failed => seq <= synced && entry.known != Known::Staged,
        _ => entry.known != Known::Staged,
    };
    let floor = run.floor;
    let log = open(driver, &run.options, &run.oracle, floor, must_keep)?;
    run.log = log;
    driver.world.fs().set_faults(run.faults);
    run.disk_errors = driver.disk_errors();
    Ok(())
}

/// Opens the log (without error faults: a start that fails on an I/O error is tried again by
/// its operator) and checks its records against the oracle.
fn open(
    driver: &mut Driver,
    options: &LogOptions,
    oracle: &Rc<RefCell<Oracle>>,
    floor: u64,
    must_keep: impl Fn(u64, &super::Entry) -> bool,
) -> Result<Rc<Log>, String> {
    let faults = driver.world.fs().faults();
    driver.world.fs().set_faults(Faults { write_error: 0.0, short_write: 0.0, sync_error: 0.0, ..faults });
    let found: Rc<RefCell<Vec<super::Found>>> = Rc::default();
    let into = found.clone();
    let env = driver.env();
    let options = options.clone();
    let opening = options.clone();
    let opened = driver.block_on(async move {
        Log::open_in(env, opening, move |seq, kind, payload| into.borrow_mut().push((seq, payload.to_vec(), kind as u64))).await
    })?;
    let (log, recovery) = opened.map_err(|error: StorageError| {
        format!("the log does not open: {error}\n  disk:{}", super::describe_dir(&driver.world, &options.dir))
    })?;
    let found = found.take();
    driver.note(format!(
        "opened: {} records{}{}",
        found.len(),
        found.first().zip(found.last()).map(|(a, b)| format!(" {}..={}", a.0, b.0)).unwrap_or_default(),
        recovery.torn_tail.map(|(_, offset, bytes)| format!(", cut a torn tail of {bytes} bytes at {offset}")).unwrap_or_default()
    ));
    oracle.borrow_mut().recovered(&found, must_keep, |seq, _| seq < floor)?;
    driver.world.fs().set_faults(faults);
    Ok(log)
}
