//! Metadata changes, across engines: shard 0 applies each change to the catalog, saves it,
//! and publishes the snapshot it made to every shard before answering, so a queue created
//! through one connection is usable through any other as soon as the answer arrives. A
//! reshard first has the owners of the stream shards it closes seal them.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use futures::future::join_all;
use sluice_protocol::{ErrorCode, OpError};

use super::{Answer, Call, Shard};
use crate::catalog::{MetaChange, MetaOutcome, Registry, Snapshot};
use crate::runtime::calls::mismatch;
use crate::storage::meta::MetaWriter;
use crate::stream;

/// Shard 0's catalog: the registry, its file, and one change at a time between them.
pub struct CatalogWriter {
    registry: RefCell<Registry>,
    file: MetaWriter,
    saving: glommio::sync::Semaphore,
}

impl CatalogWriter {
    /// The alarms as they are now.
    pub fn alarms(&self) -> Arc<crate::catalog::alarms::Alarms> {
        self.registry.borrow().alarms()
    }

    pub fn new(registry: Registry, file: MetaWriter) -> CatalogWriter {
        CatalogWriter { registry: RefCell::new(registry), file, saving: glommio::sync::Semaphore::new(1) }
    }
}

/// Runs a metadata change on shard 0 (directly, or over the bus).
pub async fn change(shard: &Rc<Shard>, change: MetaChange) -> Result<MetaOutcome, OpError> {
    if shard.id == 0 {
        return apply(shard, change).await;
    }
    match shard.bus.call(0, Call::Meta(change)).await? {
        Answer::Meta(outcome) => outcome,
        other => Err(mismatch("a metadata change", &other)),
    }
}

/// Shard 0: applies a change and publishes the new snapshot to every shard before answering.
pub async fn apply(shard: &Rc<Shard>, change: MetaChange) -> Result<MetaOutcome, OpError> {
    let writer = shard.writer.as_ref().ok_or_else(|| OpError::new(ErrorCode::InternalFailure, "metadata lives on shard 0"))?;
    let registry = &writer.registry;
    // One change at a time from here to the metadata file, so files are written in the
    // order changes were made; a change that cannot be saved is undone.
    let _saving = writer.saving.acquire_permit(1).await.map_err(|_| OpError::new(ErrorCode::ServiceUnavailable, "shutting down"))?;
    let before = registry.borrow().clone();
    let mut change = change;
    stream::service::prepare_change(shard, &before, &mut change).await?;
    let (outcome, snapshot) = registry.borrow_mut().apply(change, shard.env.now_ms())?;
    // What changes the metadata file but no snapshot: a purge's time, a move task, a checkpoint, an alarm.
    let purged = matches!(outcome, MetaOutcome::Purge(_) | MetaOutcome::Move(_)) || registry.borrow().unsnapshotted_changed(&before);
    if snapshot.is_some() || purged {
        let delta = registry.borrow().delta_json(&before);
        if let Err(error) = writer.file.record(delta, || registry.borrow().to_json()).await {
            *registry.borrow_mut() = before;
            tracing::error!(%error, "cannot save queue metadata");
            return Err(crate::storage::storage_error(error));
        }
    }
    if let Some(snapshot) = snapshot {
        publish(shard, snapshot).await?;
    }
    Ok(outcome)
}

/// Installs `snapshot` on every shard, this one included, concurrently.
async fn publish(shard: &Rc<Shard>, snapshot: Arc<Snapshot>) -> Result<(), OpError> {
    let installs = (0..shard.count).map(|peer| {
        let snapshot = snapshot.clone();
        async move {
            if peer == shard.id {
                super::install(shard, snapshot);
                return Ok(());
            }
            match shard.bus.call(peer, Call::Publish(snapshot)).await? {
                Answer::Publish => Ok(()),
                other => Err(mismatch("a snapshot", &other)),
            }
        }
    });
    join_all(installs).await.into_iter().collect()
}
