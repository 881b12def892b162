//! Helpers shared by the tests that drive storage logs directly on a glommio executor.

use std::path::Path;

use sluice_daemon::storage::log::{FsyncMode, LogOptions};

/// Log options for `dir` with `--fsync always` and no repair.
pub fn options(dir: &Path, segment_bytes: u64) -> LogOptions {
    LogOptions { dir: dir.to_path_buf(), segment_bytes, fsync: FsyncMode::Always, repair: false, spare_ahead: true }
}

/// Runs a future on a fresh glommio executor (the log needs one).
pub fn run<F: std::future::Future + 'static>(future: impl FnOnce() -> F + Send + 'static) -> F::Output
where
    F::Output: Send + 'static,
{
    glommio::LocalExecutorBuilder::default().spawn(|| async move { future().await }).unwrap().join().unwrap()
}
