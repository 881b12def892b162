//! Target `stream`: a stream shard's log — opened from its tail, read by position while it
//! is written, trimmed by arrival time, started again many times with and without writes
//! in between.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use super::harness::{self, MustKeep, Run, Stop};
use super::{Driver, Known, Oracle};
use crate::env::memory::Crash;
use crate::storage::log::LogOptions;
use crate::storage::stream::{StreamLog, StreamRecord};

pub fn run(driver: &mut Driver, steps: usize) -> Result<(), String> {
    let segment_bytes = driver.rng.u64(4..17) * 4096;
    let fsync = driver.fsync_mode();
    // Mostly as the streams engine opens its logs (no spare segment until the active one is
    // half full); sometimes with a spare always ready, as before the engine's lazy spares.
    let spare_ahead = driver.rng.u8(..3) == 0;
    let options = LogOptions { dir: PathBuf::from("/sim/stream/1/0"), segment_bytes, fsync, repair: false, spare_ahead };
    driver.note(format!("stream: segments of {segment_bytes} bytes, fsync {fsync:?}, spare ahead {spare_ahead}"));
    let oracle = Rc::new(RefCell::new(Oracle::default()));
    let log = open(driver, &options, &oracle, 0, Box::new(|_, _| false))?;
    let mut run = Run::new(options, oracle, log);
    // Records that arrived before this time may have been removed by retention.
    let mut floor_ms = 0;
    while driver.step < steps {
        driver.step += 1;
        match driver.rng.u8(..100) {
            0..=39 => harness::append(driver, &run, |driver| driver.world.epoch_ms())?,
            40..=51 => read(driver, &run, floor_ms)?,
            52..=61 => {
                let ms = driver.rng.u64(1..2_000);
                driver.note(format!("time passes: {ms} ms"));
                driver.advance(Duration::from_millis(ms));
            }
            62..=66 => trim(driver, &run, &mut floor_ms),
            67..=74 => restart(driver, &mut run, floor_ms, Stop::Clean)?,
            75..=81 => restart(driver, &mut run, floor_ms, Stop::Crash(Crash::Process))?,
            82..=88 => restart(driver, &mut run, floor_ms, Stop::Crash(Crash::Power))?,
            89..=92 => {
                run.faults = driver.shuffle_faults();
                driver.note(format!("disk faults: {:?}", run.faults));
            }
            _ => driver.run_ready(),
        }
    }
    restart(driver, &mut run, floor_ms, Stop::Clean)?;
    restart(driver, &mut run, floor_ms, Stop::Crash(Crash::Power))
}

/// Whether the oracle holds a record between `after` and `before` (exclusive) that a reader
/// must not skip: acknowledged or seen, and not old enough for retention.
fn skipped(oracle: &Oracle, after: u64, before: u64, floor_ms: u64) -> Option<u64> {
    if before <= after + 1 {
        return None;
    }
    oracle.entries.range(after + 1..before).find(|(_, entry)| entry.known != Known::Staged && entry.stamp >= floor_ms).map(|(seq, _)| *seq)
}

/// Reads from a random position and checks every record against the oracle, and that no
/// record that must be there was skipped.
fn read(driver: &mut Driver, run: &Run<StreamLog>, floor_ms: u64) -> Result<(), String> {
    let (first, last) = {
        let oracle = run.oracle.borrow();
        (oracle.entries.keys().next().copied().unwrap_or(1), oracle.entries.keys().last().copied().unwrap_or(1))
    };
    let from = driver.rng.u64(first.saturating_sub(2)..=last + 1);
    let max = driver.rng.usize(1..200);
    let log = run.log.clone();
    let records = driver.block_on(async move { log.read(from, max, 1 << 20).await })?;
    match records {
        Ok(records) => {
            driver.note(format!(
                "read from {from}: {} records{}",
                records.len(),
                records.first().zip(records.last()).map(|(a, b)| format!(" {}..={}", a.seq, b.seq)).unwrap_or_default()
            ));
            check_read(&mut run.oracle.borrow_mut(), from, &records, floor_ms, run.log.first_seq())
        }
        // A read that fails (an injected disk error) reports it; it must not answer wrongly.
        Err(error) => {
            driver.note(format!("read from {from} failed: {error}"));
            Ok(())
        }
    }
}

fn check_read(oracle: &mut Oracle, from: u64, records: &[StreamRecord], floor_ms: u64, first_kept: u64) -> Result<(), String> {
    let mut previous = from.max(first_kept).saturating_sub(1);
    for record in records {
        if let Some(missed) = skipped(oracle, previous, record.seq, floor_ms) {
            return Err(format!(
                "a read from {from} skipped record {missed}, which must be there, going from {previous} to {}",
                record.seq
            ));
        }
        oracle.seen(record.seq, &record.data, record.timestamp_ms)?;
        previous = record.seq;
    }
    Ok(())
}

/// Retention: removes segments whose records all arrived before a cutoff.
fn trim(driver: &mut Driver, run: &Run<StreamLog>, floor_ms: &mut u64) {
    let now = driver.world.epoch_ms();
    let cutoff = now - driver.rng.u64(0..60_000).min(now);
    *floor_ms = (*floor_ms).max(cutoff);
    driver.note(format!("retention: remove what arrived before {}", cutoff));
    let log = run.log.clone();
    driver.spawn(async move {
        let _ = log.trim_before_timestamp(cutoff).await;
    });
    driver.run_ready();
}

fn restart(driver: &mut Driver, run: &mut Run<StreamLog>, floor_ms: u64, stop: Stop) -> Result<(), String> {
    harness::restart(driver, run, stop, |driver, run, must_keep| open(driver, &run.options, &run.oracle, floor_ms, must_keep))
}

/// Opens the log without error faults and reads every record in it, checked against the oracle.
fn open(
    driver: &mut Driver,
    options: &LogOptions,
    oracle: &Rc<RefCell<Oracle>>,
    floor_ms: u64,
    must_keep: MustKeep,
) -> Result<Rc<StreamLog>, String> {
    let faults = harness::calm(driver);
    let env = driver.env();
    let opening = options.clone();
    let opened = driver.block_on(async move { StreamLog::open_in(env, opening).await })?;
    let (log, recovery) = opened
        .map_err(|error| format!("the stream log does not open: {error}\n  disk:{}", super::describe_dir(&driver.world, &options.dir)))?;
    let log = Rc::new(log);
    let reader = log.clone();
    let read = driver.block_on(async move {
        let mut all: Vec<StreamRecord> = Vec::new();
        let mut from = 0;
        loop {
            let batch = reader.read(from, 1000, 4 << 20).await?;
            let Some(last) = batch.last() else { return Ok(all) };
            from = last.seq + 1;
            all.extend(batch);
        }
    })?;
    let records = read.map_err(|error: crate::storage::log::StorageError| format!("the stream log does not read back: {error}"))?;
    driver.note(format!(
        "opened: {} records{}{}, next {}",
        records.len(),
        records.first().zip(records.last()).map(|(a, b)| format!(" {}..={}", a.seq, b.seq)).unwrap_or_default(),
        recovery.torn_tail.map(|(_, offset, bytes)| format!(", cut a torn tail of {bytes} bytes at {offset}")).unwrap_or_default(),
        log.next_seq()
    ));
    let found: Vec<super::Found> = records.iter().map(|record| (record.seq, record.data.to_vec(), record.timestamp_ms)).collect();
    oracle
        .borrow_mut()
        .recovered(&found, must_keep, |_, entry| entry.stamp < floor_ms)
        .map_err(|error| format!("{error}\n  disk:{}", super::describe_dir(&driver.world, &options.dir)))?;
    driver.world.fs().set_faults(faults);
    Ok(log)
}
