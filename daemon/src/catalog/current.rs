//! The snapshot a shard currently serves from: every engine on the shard reads it, the
//! shard installs each newer one that shard 0 publishes.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use super::Snapshot;
use crate::env::notify::LocalNotify;
use crate::env::Env;

#[derive(Default)]
pub struct Current {
    snapshot: RefCell<Arc<Snapshot>>,
    /// Notified whenever a newer snapshot is installed.
    installed: LocalNotify,
}

impl Current {
    /// Starts from `snapshot` (the registry's as read at start: version 0 when it is new, so
    /// `install` would keep the empty default, whose naming is blank).
    pub fn new(snapshot: Arc<Snapshot>) -> Current {
        Current { snapshot: RefCell::new(snapshot), installed: LocalNotify::new() }
    }

    pub fn get(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// Installs `snapshot` if it is newer than the current one; says whether it was.
    pub fn install(&self, snapshot: Arc<Snapshot>) -> bool {
        if snapshot.version <= self.snapshot.borrow().version {
            return false;
        }
        *self.snapshot.borrow_mut() = snapshot;
        self.installed.notify_all();
        true
    }

    /// Waits (at most `timeout`, on `env`'s clock) until a snapshot newer than `version` is installed.
    pub async fn wait_newer(&self, env: &Env, version: u64, timeout: Duration) {
        let deadline = env.monotonic() + timeout;
        while self.snapshot.borrow().version <= version {
            let installed = self.installed.listen();
            let left = deadline.saturating_sub(env.monotonic());
            if left.is_zero() {
                return;
            }
            let timer = env.sleep(left);
            futures::pin_mut!(installed, timer);
            futures::future::select(installed, timer).await;
        }
    }
}
