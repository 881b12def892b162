//! Target `log`: the segmented log as the queues use it — every record replayed at start,
//! the next segment prepared ahead, old segments removed as compaction removes them.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use super::harness::{self, MustKeep, Run, Stop};
use super::{Driver, Oracle};
use crate::env::memory::Crash;
use crate::storage::log::{Log, LogOptions, StorageError};

pub fn run(driver: &mut Driver, steps: usize) -> Result<(), String> {
    let segment_bytes = driver.rng.u64(4..17) * 4096;
    let fsync = driver.fsync_mode();
    let options = LogOptions { dir: PathBuf::from("/sim/log"), segment_bytes, fsync, repair: false, spare_ahead: true };
    driver.note(format!("log: segments of {segment_bytes} bytes, fsync {fsync:?}"));
    let oracle = Rc::new(RefCell::new(Oracle::default()));
    let log = open(driver, &options, &oracle, 0, Box::new(|_, _| false))?;
    let mut run = Run::new(options, oracle, log);
    // Records before this sequence number may have been removed.
    let mut floor = 0;
    while driver.step < steps {
        driver.step += 1;
        match driver.rng.u8(..100) {
            0..=44 => harness::append(driver, &run, |driver| driver.rng.u64(1..=8))?,
            45..=59 => {
                let ms = driver.rng.u64(1..200);
                driver.note(format!("time passes: {ms} ms"));
                driver.advance(Duration::from_millis(ms));
            }
            60..=65 => trim(driver, &run, &mut floor),
            66..=72 => restart(driver, &mut run, floor, Stop::Clean)?,
            73..=80 => restart(driver, &mut run, floor, Stop::Crash(Crash::Process))?,
            81..=87 => restart(driver, &mut run, floor, Stop::Crash(Crash::Power))?,
            88..=91 => {
                run.faults = driver.shuffle_faults();
                driver.note(format!("disk faults: {:?}", run.faults));
            }
            _ => driver.run_ready(),
        }
    }
    restart(driver, &mut run, floor, Stop::Clean)?;
    restart(driver, &mut run, floor, Stop::Crash(Crash::Power))
}

/// Removes segments before a random point, as compaction does once their records are kept elsewhere.
fn trim(driver: &mut Driver, run: &Run<Log>, floor: &mut u64) {
    let next = run.log.next_seq();
    let seq = driver.rng.u64((*floor).min(next)..=next);
    *floor = (*floor).max(seq);
    driver.note(format!("remove segments before {seq}"));
    let log = run.log.clone();
    driver.spawn(async move {
        let _ = log.remove_segments_before(seq).await;
    });
    driver.run_ready();
}

fn restart(driver: &mut Driver, run: &mut Run<Log>, floor: u64, stop: Stop) -> Result<(), String> {
    harness::restart(driver, run, stop, |driver, run, must_keep| open(driver, &run.options, &run.oracle, floor, must_keep))
}

/// Opens the log and checks every record it replays against the oracle.
fn open(
    driver: &mut Driver,
    options: &LogOptions,
    oracle: &Rc<RefCell<Oracle>>,
    floor: u64,
    must_keep: MustKeep,
) -> Result<Rc<Log>, String> {
    let faults = harness::calm(driver);
    let found: Rc<RefCell<Vec<super::Found>>> = Rc::default();
    let into = found.clone();
    let env = driver.env();
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
    oracle
        .borrow_mut()
        .recovered(&found, must_keep, |seq, _| seq < floor)
        .map_err(|error| format!("{error}\n  disk:{}", super::describe_dir(&driver.world, &options.dir)))?;
    driver.world.fs().set_faults(faults);
    Ok(log)
}
