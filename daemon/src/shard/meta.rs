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

    /// The registry as it is now (in a cluster: as the metadata group committed it).
    pub fn registry(&self) -> Registry {
        self.registry.borrow().clone()
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
    if let Some(node) = shard.cluster.get() {
        return apply_in_cluster(shard, node, writer, change).await;
    }
    let before = registry.borrow().clone();
    let mut change = change;
    stream::service::prepare_change(shard, &before, &mut change).await?;
    let (outcome, snapshot) = registry.borrow_mut().apply(change, shard.env.now_ms())?;
    if saves(&outcome, snapshot.is_some(), &registry.borrow(), &before) {
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

/// Whether a change from `before` to `after` changed what the metadata file keeps: a new
/// snapshot, or what no snapshot holds (a purge's time, a move task, a checkpoint, an alarm).
fn saves(outcome: &MetaOutcome, snapshot: bool, after: &Registry, before: &Registry) -> bool {
    snapshot || matches!(outcome, MetaOutcome::Purge(_) | MetaOutcome::Move(_)) || after.unsnapshotted_changed(before)
}

/// How many times a change computed on a catalog another change overtook is made again.
const CONFLICTS_MAX: usize = 20;

/// Shard 0 of a cluster node: makes the change on a copy of the committed catalog and
/// proposes what it changed to the metadata group (`cluster`); answers once this node has
/// applied it. A change overtaken by another (committed after the catalog it was made on)
/// is made again on the new catalog.
async fn apply_in_cluster(
    shard: &Rc<Shard>,
    node: &crate::cluster::Node,
    writer: &CatalogWriter,
    change: MetaChange,
) -> Result<MetaOutcome, OpError> {
    for _ in 0..CONFLICTS_MAX {
        let before = writer.registry();
        let base = before.cluster_state()["last_change"].as_u64().unwrap_or(0);
        let mut change = change.clone();
        stream::service::prepare_change(shard, &before, &mut change).await?;
        let mut next = before.clone();
        let (outcome, snapshot) = next.apply(change, shard.env.now_ms())?;
        if !saves(&outcome, snapshot.is_some(), &next, &before) {
            // Nothing the metadata file keeps (a lookup, or consumer groups' leases, which
            // live in memory): this node's registry takes it unless a commit came meanwhile.
            let current = writer.registry();
            if current.cluster_state() == before.cluster_state() && Arc::ptr_eq(&current.snapshot(), &before.snapshot()) {
                *writer.registry.borrow_mut() = next;
            }
            return Ok(outcome);
        }
        let proposal = crate::cluster::Proposal { base, delta: next.delta_json(&before).to_string() };
        let (index, applied) = node.propose(proposal).await?;
        node.applied(index).await?;
        if applied.accepted {
            return Ok(outcome);
        }
    }
    Err(OpError::new(ErrorCode::ServiceUnavailable, "metadata changes through other nodes kept overtaking this one; try again"))
}

/// A cluster node's shard 0: makes `registry` (committed by the metadata group) the catalog,
/// saving `delta` (what changed, with the group's position) in the metadata file first, and
/// publishes its snapshot to every shard when it is newer.
pub async fn install_committed(shard: &Rc<Shard>, registry: Registry, delta: serde_json::Value) -> Result<(), OpError> {
    let writer = shard.writer.as_ref().ok_or_else(|| OpError::new(ErrorCode::InternalFailure, "metadata lives on shard 0"))?;
    writer.file.record(delta, || registry.to_json()).await.map_err(crate::storage::storage_error)?;
    let newer = registry.snapshot().version > writer.registry.borrow().snapshot().version;
    let snapshot = registry.snapshot();
    *writer.registry.borrow_mut() = registry;
    if newer {
        publish(shard, snapshot).await?;
    }
    Ok(())
}

/// The catalog as the metadata group's state machine sees it (`cluster::Catalog`).
pub struct ShardCatalog(pub std::rc::Weak<Shard>);

impl crate::cluster::Catalog for ShardCatalog {
    fn registry(&self) -> Result<Registry, String> {
        let shard = self.0.upgrade().ok_or("the shard is stopping")?;
        let writer = shard.writer.as_ref().ok_or("the catalog lives on shard 0")?;
        Ok(writer.registry())
    }

    fn install(&self, registry: Registry, delta: serde_json::Value) -> futures::future::LocalBoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let shard = self.0.upgrade().ok_or("the shard is stopping")?;
            install_committed(&shard, registry, delta).await.map_err(|e| e.message.to_string())
        })
    }
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
