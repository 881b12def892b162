//! The metadata group's state machine: the catalog. Applying a committed proposal merges its
//! change into the registry document (as the metadata journal does at a start), rebuilds the
//! registry from it, saves the change in the metadata file with the group's position
//! (`Registry::cluster_state`: the entry applied, the last change taken, the membership) and
//! publishes the new snapshot to every shard of this node.
//!
//! A proposal is taken only if its base is the last change taken: every node decides the
//! same from the same log. Its position saved with the catalog, a node restarts where it
//! stood: openraft applies only what came after (refusals and membership entries again,
//! which change nothing kept).

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use futures::{Stream, StreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde_json::{json, Value};

use super::{Applied, Catalog, Meta, Proposal};
use crate::catalog::Registry;

struct State {
    /// The registry as its metadata file holds it.
    document: Value,
    applied: Option<LogIdOf<Meta>>,
    /// The log index of the last change taken (0: none yet).
    last_change: u64,
    membership: StoredMembershipOf<Meta>,
}

impl State {
    /// The group's position, as saved with the catalog.
    fn position(&self) -> Value {
        json!({ "applied": self.applied, "last_change": self.last_change, "membership": self.membership })
    }
}

#[derive(Clone)]
pub struct Machine {
    catalog: Rc<dyn Catalog>,
    state: Rc<RefCell<State>>,
    /// Snapshots installed since the start (`/metrics`).
    pub snapshots_installed: Rc<std::cell::Cell<u64>>,
}

fn damaged(what: &str, error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("the metadata file's cluster position is damaged ({what}: {error})")
}

impl Machine {
    /// The state machine of shard 0's catalog, `registry` as loaded from the metadata file.
    pub fn new(catalog: Rc<dyn Catalog>, registry: &Registry) -> anyhow::Result<Machine> {
        let position = registry.cluster_state();
        let mut state = State { document: registry.to_json(), applied: None, last_change: 0, membership: Default::default() };
        if !position.is_null() {
            state.applied = serde_json::from_value(position["applied"].clone()).map_err(|e| damaged("applied", e))?;
            state.last_change = position["last_change"].as_u64().ok_or_else(|| damaged("last_change", "not a number"))?;
            state.membership = serde_json::from_value(position["membership"].clone()).map_err(|e| damaged("membership", e))?;
        }
        Ok(Machine { catalog, state: Rc::new(RefCell::new(state)), snapshots_installed: Rc::default() })
    }

    fn registry(&self) -> io::Result<Registry> {
        self.catalog.registry().map_err(io::Error::other)
    }

    async fn install(&self, registry: Registry, delta: Value) -> io::Result<()> {
        self.catalog.install(registry, delta).await.map_err(io::Error::other)
    }

    /// Makes `document` the catalog (with the position `state` has after it), saving `delta`:
    /// what changed, written to the metadata journal. The document is trusted only as far as
    /// the registry accepts it: what it refuses is not taken (`Ok(false)`), on every node alike.
    async fn take(&self, document: Value, delta: Value) -> io::Result<bool> {
        let mut registry = match self.registry()?.rebuilt(&document) {
            Ok(registry) => registry,
            Err(error) => {
                tracing::warn!(%error, "a committed metadata change is refused: the catalog it makes does not load");
                return Ok(false);
            }
        };
        let position = self.state.borrow().position();
        registry.set_cluster_state(position.clone());
        let mut delta = delta;
        delta["cluster"] = position.clone();
        self.install(registry, delta).await?;
        let mut document = document;
        document["cluster"] = position;
        self.state.borrow_mut().document = document;
        Ok(true)
    }

    /// Applies a proposal at `log_id`; answers whether it was taken.
    async fn apply_proposal(&self, proposal: &Proposal, log_id: &LogIdOf<Meta>) -> io::Result<bool> {
        if proposal.base != self.state.borrow().last_change {
            return Ok(false);
        }
        let delta: Value = match serde_json::from_str(&proposal.delta) {
            Ok(delta) => delta,
            Err(error) => {
                tracing::warn!(%error, "a committed metadata change is refused: it is not JSON");
                return Ok(false);
            }
        };
        let document = match crate::storage::meta::merge(self.state.borrow().document.clone(), &delta) {
            Ok(document) => document,
            Err(error) => {
                tracing::warn!(%error, "a committed metadata change is refused: it does not apply");
                return Ok(false);
            }
        };
        let before = {
            let mut state = self.state.borrow_mut();
            let before = (state.applied, state.last_change);
            state.applied = Some(*log_id);
            state.last_change = log_id.index;
            before
        };
        let taken = self.take(document, delta).await;
        if !matches!(taken, Ok(true)) {
            let mut state = self.state.borrow_mut();
            (state.applied, state.last_change) = before;
        }
        taken
    }

    /// Saves the group's position with the catalog as it is (nothing else changed).
    async fn save_position(&self) -> io::Result<()> {
        let current = self.registry()?;
        let position = self.state.borrow().position();
        let mut registry = current.clone();
        registry.set_cluster_state(position.clone());
        let delta = registry.delta_json(&current);
        self.install(registry, delta).await?;
        self.state.borrow_mut().document["cluster"] = position;
        Ok(())
    }

    fn snapshot(&self) -> SnapshotOf<Meta, String> {
        let state = self.state.borrow();
        let meta = SnapshotMetaOf::<Meta> { last_log_id: state.applied, last_membership: state.membership.clone() };
        SnapshotOf::<Meta, String> { meta, snapshot: state.document.to_string() }
    }
}

impl RaftSnapshotBuilder<Meta> for Machine {
    type SnapshotData = String;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<Meta, String>, io::Error> {
        Ok(self.snapshot())
    }
}

impl RaftStateMachine<Meta> for Machine {
    type SnapshotData = String;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<Meta>>, StoredMembershipOf<Meta>), io::Error> {
        let state = self.state.borrow();
        Ok((state.applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<Meta>, io::Error>> + Unpin,
    {
        while let Some(next) = entries.next().await {
            let (entry, responder) = next?;
            let accepted = match &entry.payload {
                EntryPayload::Normal(proposal) => self.apply_proposal(proposal, &entry.log_id).await?,
                EntryPayload::Membership(membership) => {
                    self.state.borrow_mut().membership = StoredMembershipOf::<Meta>::new(Some(entry.log_id), membership.clone());
                    false
                }
                EntryPayload::Blank => false,
            };
            if !accepted {
                // Saved too, so that what openraft may purge once a snapshot covers it is
                // never needed again at a start.
                self.state.borrow_mut().applied = Some(entry.log_id);
                self.save_position().await?;
            }
            let last_change = self.state.borrow().last_change;
            if let Some(responder) = responder {
                responder.send(Applied { accepted, last_change });
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<Meta>, document: String) -> Result<(), io::Error> {
        let document: Value = serde_json::from_str(&document)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("a snapshot that is not JSON: {e}")))?;
        let last_change = document["cluster"]["last_change"].as_u64().unwrap_or(0);
        let current = self.registry()?;
        let before = {
            let mut state = self.state.borrow_mut();
            let before = (state.applied, state.last_change, state.membership.clone());
            state.applied = meta.last_log_id;
            state.last_change = last_change;
            state.membership = meta.last_membership.clone();
            before
        };
        let mut registry = match current.rebuilt(&document) {
            Ok(registry) => registry,
            Err(error) => {
                let mut state = self.state.borrow_mut();
                (state.applied, state.last_change, state.membership) = before;
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a snapshot whose catalog does not load: {error}")));
            }
        };
        registry.set_cluster_state(self.state.borrow().position());
        // Written as one change that puts everything the snapshot holds and removes the rest.
        let delta = registry.delta_json(&current);
        let mut document = document;
        document["cluster"] = self.state.borrow().position();
        self.install(registry, delta).await?;
        self.state.borrow_mut().document = document;
        self.snapshots_installed.set(self.snapshots_installed.get() + 1);
        tracing::info!(applied = ?meta.last_log_id, "installed a snapshot of the catalog from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<Meta, String>>, io::Error> {
        // The catalog is whole at every applied entry: the current state is a snapshot.
        Ok(Some(self.snapshot()))
    }
}
