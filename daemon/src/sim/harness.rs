//! What the targets share: a log under test (`Subject`), one incarnation's state (`Run`),
//! appending with acknowledgements watched, and ending an incarnation and starting the next.

use std::cell::RefCell;
use std::rc::Rc;

use futures::future::LocalBoxFuture;

use super::{Driver, Entry, Known, Oracle};
use crate::env::memory::{Crash, Faults};
use crate::storage::log::{FsyncMode, Log, LogOptions, StorageError};
use crate::storage::stream::StreamLog;

/// A log the simulator writes, acknowledges and restarts.
pub trait Subject: 'static {
    /// Appends `body`; `hint` is the kind (log) or arrival time (stream). Returns the record's
    /// sequence number and its stamp as a reader will see it.
    fn append(&self, body: &[u8], hint: u64) -> Result<(u64, u64), StorageError>;
    fn durable(self: Rc<Self>, seq: u64) -> LocalBoxFuture<'static, Result<(), StorageError>>;
    fn close(self: Rc<Self>) -> LocalBoxFuture<'static, Result<(), StorageError>>;
    fn synced_seq(&self) -> u64;
}

impl Subject for Log {
    fn append(&self, body: &[u8], hint: u64) -> Result<(u64, u64), StorageError> {
        Log::append(self, hint as u8, body).map(|seq| (seq, hint))
    }
    fn durable(self: Rc<Self>, seq: u64) -> LocalBoxFuture<'static, Result<(), StorageError>> {
        Box::pin(async move { Log::durable(&self, seq).await })
    }
    fn close(self: Rc<Self>) -> LocalBoxFuture<'static, Result<(), StorageError>> {
        Box::pin(async move { Log::close(&self).await })
    }
    fn synced_seq(&self) -> u64 {
        Log::synced_seq(self)
    }
}

impl Subject for StreamLog {
    fn append(&self, body: &[u8], hint: u64) -> Result<(u64, u64), StorageError> {
        StreamLog::append(self, body, hint)
    }
    fn durable(self: Rc<Self>, seq: u64) -> LocalBoxFuture<'static, Result<(), StorageError>> {
        Box::pin(async move { StreamLog::durable(&self, seq).await })
    }
    fn close(self: Rc<Self>) -> LocalBoxFuture<'static, Result<(), StorageError>> {
        Box::pin(async move { StreamLog::close(&self).await })
    }
    fn synced_seq(&self) -> u64 {
        StreamLog::synced_seq(self)
    }
}

/// One run of a target: the log as it is now, and what is known of it.
pub struct Run<S> {
    pub options: LogOptions,
    pub oracle: Rc<RefCell<Oracle>>,
    pub log: Rc<S>,
    /// Faults in force between restarts (a start runs without error faults).
    pub faults: Faults,
    /// Failed writes and syncs so far, when this incarnation started.
    pub disk_errors: u64,
}

impl<S> Run<S> {
    pub fn new(options: LogOptions, oracle: Rc<RefCell<Oracle>>, log: Rc<S>) -> Run<S> {
        Run { options, oracle, log, faults: Faults::NONE, disk_errors: 0 }
    }
}

/// Which records no crash may take, given how an incarnation ended.
pub type MustKeep = Box<dyn Fn(u64, &Entry) -> bool>;

/// How an incarnation ends.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    Clean,
    Crash(Crash),
}

/// Appends 1 to 16 records (`hint` gives each its kind or time) and watches their
/// acknowledgements.
pub fn append<S: Subject>(driver: &mut Driver, run: &Run<S>, hint: impl Fn(&mut Driver) -> u64) -> Result<(), String> {
    let count = driver.rng.usize(1..=16);
    let mut appended = Vec::new();
    for _ in 0..count {
        let body = driver.body(run.options.segment_bytes as usize / 3);
        let hint = hint(driver);
        match run.log.append(&body, hint) {
            Ok((seq, stamp)) => {
                run.oracle.borrow_mut().appended(seq, body, stamp)?;
                appended.push(seq);
                driver.report.appended += 1;
                let durable = run.log.clone().durable(seq);
                let oracle = run.oracle.clone();
                driver.spawn(async move {
                    if durable.await.is_ok() {
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

/// Ends the incarnation (a clean close, a process crash or a power loss) and starts the
/// next with `reopen`, which checks what the log holds against `MustKeep`.
pub fn restart<S: Subject>(
    driver: &mut Driver,
    run: &mut Run<S>,
    stop: Stop,
    reopen: impl FnOnce(&mut Driver, &Run<S>, MustKeep) -> Result<Rc<S>, String>,
) -> Result<(), String> {
    let synced = run.log.synced_seq();
    let stop = match stop {
        Stop::Clean => match driver.block_on(run.log.clone().close())? {
            Ok(()) => Stop::Clean,
            Err(error) => {
                driver.note(format!("close failed ({error}): the process exits"));
                Stop::Crash(Crash::Process)
            }
        },
        other => other,
    };
    driver.note(format!("restart after {stop:?}"));
    driver.crash(match stop {
        Stop::Crash(crash) => crash,
        Stop::Clean => Crash::Process,
    });
    // In interval mode an acknowledgement means written, not synced: a power loss, or a
    // failed write or sync (the disk may have dropped what it held), may take back what
    // came after the last sync.
    let interval = matches!(run.options.fsync, FsyncMode::Interval(_));
    let disk_failed = driver.disk_errors() > run.disk_errors;
    let must_keep: MustKeep = Box::new(move |seq, entry| match stop {
        Stop::Crash(Crash::Power) if interval => seq <= synced && entry.known != Known::Staged,
        _ if interval && disk_failed => seq <= synced && entry.known != Known::Staged,
        _ => entry.known != Known::Staged,
    });
    run.log = reopen(driver, run, must_keep)?;
    driver.world.fs().set_faults(run.faults);
    run.disk_errors = driver.disk_errors();
    Ok(())
}

/// Takes the error faults away for a start (one that fails on an I/O error is tried again
/// by its operator); returns the faults to put back.
pub fn calm(driver: &Driver) -> Faults {
    let faults = driver.world.fs().faults();
    driver.world.fs().set_faults(Faults { write_error: 0.0, short_write: 0.0, sync_error: 0.0, ..faults });
    faults
}
