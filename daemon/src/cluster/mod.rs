//! The cluster (issue 26): several `sluiced` nodes sharing one catalog through a metadata Raft
//! group (openraft on glommio, `sluice_raft`), its log on Sluice's segment log
//! (`storage::raft`). Started with `--node-id` and `--cluster-peers`; without them none of this
//! runs and a node is the single daemon it always was.
//!
//! How a metadata change goes, on any node (`shard::meta`): shard 0 applies the change to a
//! copy of its registry — the committed state — and proposes what changed (the registry's
//! delta, as the metadata journal writes it) with the log index of the change it was computed
//! on (`Proposal::base`). The state machine (`machine`) accepts a proposal only if no other
//! change was committed since that base, so every node takes the same decision from the
//! same log: a change computed on a stale catalog is refused and made again on the new one.
//! The proposer waits until its own node has applied the entry, so what a client changed
//! through a node it reads back through that node at once (other nodes a moment later, as SQS
//! and SNS are eventually consistent about their catalogs).
//!
//! Any node takes any change: a follower forwards its proposal to the leader (`transport`).
//! Background tasks that change metadata (message moves, ON_DEMAND scaling, key rotations,
//! alarms) run on the metadata leader only.
//!
//! Messages, records and their partitions are not replicated yet: each node keeps what it
//! took. Partition groups build on this (docs/cluster.md).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use sluice_protocol::{ErrorCode, OpError};

use crate::catalog::Registry;
use crate::config::Config;
use crate::env::Env;
use crate::storage::log::LogOptions;
use crate::storage::raft::RaftLog;

pub mod machine;
pub mod transport;

openraft::declare_raft_types!(
    /// The metadata group: entries are catalog changes, answered with whether they were taken.
    pub Meta:
        D = Proposal,
        R = Applied,
        AsyncRuntime = sluice_raft::GlommioRuntime,
);

/// A metadata change as proposed to the group: what it changes (a `Registry::delta_json`,
/// as JSON text) and the log index of the last change the proposer's catalog had applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub base: u64,
    pub delta: String,
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "change on {} ({} bytes)", self.base, self.delta.len())
    }
}

/// What the state machine did with a proposal: taken, or refused because another change
/// was committed after its base; `last_change` is the log index of the last change taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub accepted: bool,
    pub last_change: u64,
}

/// What the metadata group's state machine changes: shard 0's catalog (`shard::meta`).
pub trait Catalog {
    /// The registry as it is now.
    fn registry(&self) -> Result<Registry, String>;
    /// Makes `registry` the catalog, saving `delta` (what changed) in the metadata file first,
    /// and publishes it to every shard.
    fn install(&self, registry: Registry, delta: serde_json::Value) -> futures::future::LocalBoxFuture<'_, Result<(), String>>;
}

/// How long a metadata change waits for the group (a leader, a quorum) before it is refused
/// as unavailable.
const CHANGE_WAIT: Duration = Duration::from_secs(10);

/// This node's place in the cluster: its id, the metadata group, and where the others are.
pub struct Node {
    pub id: u64,
    pub raft: Raft<Meta, machine::Machine>,
    log: RaftLog<Meta>,
    peers: BTreeMap<u64, SocketAddr>,
    /// A connection to the leader for forwarded proposals (one change at a time goes out).
    forward: std::cell::RefCell<Option<transport::Peer>>,
    /// Snapshots of the catalog installed from a leader since the start.
    snapshots_installed: Rc<std::cell::Cell<u64>>,
}

/// Raft timing from `--cluster-election-ms` (an election after that to twice that without a
/// heartbeat, heartbeats every third of it) and snapshots from `--cluster-snapshot-entries`.
fn raft_config(config: &Config) -> anyhow::Result<Arc<openraft::Config>> {
    let election_ms = config.cluster_election_ms;
    let entries = config.cluster_snapshot_entries;
    let config = openraft::Config {
        cluster_name: "sluice-meta".into(),
        heartbeat_interval: election_ms / 3,
        election_timeout_min: election_ms,
        election_timeout_max: election_ms * 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(entries),
        max_in_snapshot_log_to_keep: entries,
        ..Default::default()
    };
    Ok(Arc::new(config.validate().map_err(|e| anyhow::anyhow!("Raft configuration: {e}"))?))
}

/// Shard 0, at start: opens the metadata group's log, starts the group and its listener, and
/// forms the cluster if this node's log is empty (every node of a new cluster does: the same
/// members everywhere, one of them elected).
pub async fn start(config: &Config, env: Env, catalog: Rc<dyn Catalog>) -> anyhow::Result<Rc<Node>> {
    let (Some(id), Some(peers)) = (config.node_id, config.cluster_peers.clone()) else {
        anyhow::bail!("not a cluster node");
    };
    let peers = peers.0;
    let registry = catalog.registry().map_err(|e| anyhow::anyhow!(e))?;
    if registry.cluster_state().is_null() && registry.holds_resources() {
        anyhow::bail!(
            "{} holds a single node's queues, topics or streams: a node joins a cluster with a data directory of its own (start it on an empty --data-dir)",
            config.data_dir.display()
        );
    }
    let options = LogOptions {
        dir: config.data_dir.join("cluster").join("meta"),
        segment_bytes: 4 << 20,
        fsync: config.fsync,
        repair: config.repair,
        spare_ahead: false,
    };
    let log = RaftLog::<Meta>::open(env, options).await.map_err(|e| anyhow::anyhow!("cannot open the metadata group's log: {e}"))?;
    let machine = machine::Machine::new(catalog, &registry)?;
    let snapshots_installed = machine.snapshots_installed.clone();
    let network = transport::Network { peers: peers.clone(), reachability: Default::default() };
    let raft = Raft::new(id, raft_config(config)?, network, log.clone(), machine)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the metadata group: {e}"))?;
    let listen = peers[&id];
    let listener =
        glommio::net::TcpListener::bind(listen).map_err(|e| anyhow::anyhow!("cannot listen for cluster nodes on {listen}: {e}"))?;
    let node = Rc::new(Node { id, raft, log, peers, forward: Default::default(), snapshots_installed });
    glommio::spawn_local(transport::serve(node.clone(), listener)).detach();
    if !node.raft.is_initialized().await.map_err(|e| anyhow::anyhow!("the metadata group: {e}"))? {
        let members: BTreeMap<u64, BasicNode> = node.peers.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.to_string() })).collect();
        // Refused when another node's leader reached this one first: then it is formed.
        if let Err(error) = node.raft.initialize(members).await {
            tracing::debug!(%error, "the metadata group was formed already");
        }
    }
    tracing::info!(node = id, %listen, nodes = node.peers.len(), "cluster node started");
    Ok(node)
}

impl Node {
    /// Whether this node leads the metadata group now.
    pub fn leads(&self) -> bool {
        self.raft.metrics().borrow_watched().current_leader == Some(self.id)
    }

    /// The metadata group's leader as this node knows it.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// The metadata group as this node sees it, for `/metrics`.
    pub fn gauges(&self) -> crate::metrics::ClusterGauges {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        crate::metrics::ClusterGauges {
            node_id: self.id,
            leader: metrics.current_leader.unwrap_or(0),
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            applied_index: metrics.last_applied.map_or(0, |id| id.index),
            voters: metrics.membership_config.membership().voter_ids().count() as u64,
            snapshots_installed: self.snapshots_installed.get(),
        }
    }

    /// Stops the group and closes its log (at shutdown).
    pub async fn stop(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "the metadata group did not stop cleanly");
        }
        if let Err(error) = self.log.close().await {
            tracing::warn!(%error, "cannot close the metadata group's log");
        }
    }

    /// Proposes a change to the group, through the leader wherever it is; answers the log
    /// index the change took and what the state machine did with it.
    pub async fn propose(&self, proposal: Proposal) -> Result<(u64, Applied), OpError> {
        let deadline = std::time::Instant::now() + CHANGE_WAIT;
        let mut last_problem = String::from("no leader is known");
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(unavailable(&last_problem));
            }
            match self.leader() {
                Some(leader) if leader == self.id => match transport::within(left, self.raft.client_write(proposal.clone())).await {
                    Ok(Ok(written)) => return Ok((written.log_id.index, written.data)),
                    Ok(Err(error)) if error.forward_to_leader().is_some() => last_problem = "leadership is changing".into(),
                    Ok(Err(error)) => return Err(unavailable(&error.to_string())),
                    Err(_) => return Err(unavailable("no quorum of nodes answered in time")),
                },
                Some(leader) => match self.forward(leader, &proposal, left).await {
                    Ok(answer) => return Ok(answer),
                    Err(problem) => last_problem = format!("forwarding to node {leader}: {problem}"),
                },
                None => {}
            }
            glommio::timer::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn forward(&self, leader: u64, proposal: &Proposal, left: Duration) -> Result<(u64, Applied), String> {
        let addr = *self.peers.get(&leader).ok_or_else(|| format!("node {leader} is not among the peers"))?;
        let mut peer = self.forward.borrow_mut().take().filter(|peer| peer.addr == addr).unwrap_or_else(|| transport::Peer::new(addr));
        let answer = peer.call(transport::PROPOSE, proposal, left).await;
        *self.forward.borrow_mut() = Some(peer);
        answer
    }

    /// Waits until this node has applied the group's log up to `index`.
    pub async fn applied(&self, index: u64) -> Result<(), OpError> {
        self.raft
            .wait(Some(CHANGE_WAIT))
            .applied_index_at_least(Some(index), "a metadata change applied here")
            .await
            .map(|_| ())
            .map_err(|e| unavailable(&format!("the change was committed but this node did not apply it in time: {e}")))
    }
}

fn unavailable(why: &str) -> OpError {
    OpError::new(ErrorCode::ServiceUnavailable, format!("the cluster's metadata group cannot take the change now ({why}); try again"))
}
