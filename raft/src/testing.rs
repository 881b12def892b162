//! What tests of Raft groups on glommio share (here and in the daemon's tests): a type
//! configuration whose entries add a number, a state machine keeping the running sum, and
//! a network between nodes on one executor that can cut a node off.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{BasicNode, Config, EntryPayload, Raft, RaftNetworkFactory, RaftNetworkV2, RaftSnapshotBuilder};

use crate::GlommioRuntime;

openraft::declare_raft_types!(
    /// Entries add a number; the state machine answers the running sum.
    pub Group:
        D = u64,
        R = u64,
        AsyncRuntime = GlommioRuntime,
);

/// The running sum, what it has applied, and its last snapshot.
#[derive(Default)]
pub struct Machine {
    pub sum: u64,
    applied: Option<LogIdOf<Group>>,
    membership: StoredMembershipOf<Group>,
    snapshot: Option<(SnapshotMetaOf<Group>, u64)>,
}

#[derive(Clone, Default)]
pub struct StateMachine(pub Rc<RefCell<Machine>>);

impl RaftSnapshotBuilder<Group> for StateMachine {
    type SnapshotData = u64;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<Group, u64>, io::Error> {
        let mut machine = self.0.borrow_mut();
        let meta = SnapshotMetaOf::<Group> { last_log_id: machine.applied, last_membership: machine.membership.clone() };
        machine.snapshot = Some((meta.clone(), machine.sum));
        Ok(SnapshotOf::<Group, u64> { meta, snapshot: machine.sum })
    }
}

impl RaftStateMachine<Group> for StateMachine {
    type SnapshotData = u64;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<Group>>, StoredMembershipOf<Group>), io::Error> {
        let machine = self.0.borrow();
        Ok((machine.applied, machine.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<Group>, io::Error>> + Unpin,
    {
        while let Some(next) = entries.next().await {
            let (entry, responder) = next?;
            let mut machine = self.0.borrow_mut();
            machine.applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Normal(add) => machine.sum += add,
                EntryPayload::Membership(membership) => {
                    machine.membership = StoredMembershipOf::<Group>::new(Some(entry.log_id), membership)
                }
                EntryPayload::Blank => {}
            }
            let sum = machine.sum;
            drop(machine);
            if let Some(responder) = responder {
                responder.send(sum);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<Group>, sum: u64) -> Result<(), io::Error> {
        let mut machine = self.0.borrow_mut();
        machine.sum = sum;
        machine.applied = meta.last_log_id;
        machine.membership = meta.last_membership.clone();
        machine.snapshot = Some((meta.clone(), sum));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<Group, u64>>, io::Error> {
        Ok(self.0.borrow().snapshot.clone().map(|(meta, sum)| SnapshotOf::<Group, u64> { meta, snapshot: sum }))
    }
}

/// The nodes of the group by id, and the ones cut off (their messages go nowhere).
#[derive(Clone, Default)]
pub struct Router {
    pub nodes: Rc<RefCell<HashMap<u64, Raft<Group, StateMachine>>>>,
    pub cut: Rc<RefCell<BTreeSet<u64>>>,
}

impl Router {
    fn reach(&self, from: u64, to: u64) -> Result<Raft<Group, StateMachine>, Unreachable<Group>> {
        let cut = self.cut.borrow();
        if cut.contains(&from) || cut.contains(&to) {
            return Err(Unreachable::from_string(format!("{from} and {to} are cut off from each other")));
        }
        self.nodes.borrow().get(&to).cloned().ok_or_else(|| Unreachable::from_string(format!("no node {to}")))
    }
}

pub struct Connection {
    router: Router,
    from: u64,
    to: u64,
}

impl RaftNetworkFactory<Group> for (Router, u64) {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Connection {
        Connection { router: self.0.clone(), from: self.1, to: target }
    }
}

impl RaftNetworkV2<Group> for Connection {
    type SnapshotData = u64;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Group>,
        _: RPCOption,
    ) -> Result<AppendEntriesResponse<Group>, RPCError<Group>> {
        let node = self.router.reach(self.from, self.to)?;
        node.append_entries(rpc).await.map_err(|error| RPCError::Unreachable(Unreachable::from_string(error)))
    }

    async fn vote(&mut self, rpc: VoteRequest<Group>, _: RPCOption) -> Result<VoteResponse<Group>, RPCError<Group>> {
        let node = self.router.reach(self.from, self.to)?;
        node.vote(rpc).await.map_err(|error| RPCError::Unreachable(Unreachable::from_string(error)))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<Group>,
        snapshot: SnapshotOf<Group, u64>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + 'static,
        _: RPCOption,
    ) -> Result<SnapshotResponse<Group>, StreamingError<Group>> {
        let node = self.router.reach(self.from, self.to).map_err(StreamingError::Unreachable)?;
        node.install_full_snapshot(vote, snapshot).await.map_err(|error| StreamingError::Unreachable(Unreachable::from_string(error)))
    }
}

/// Short timeouts: elections in a fraction of a second.
pub fn config() -> Arc<Config> {
    let config = Config { heartbeat_interval: 50, election_timeout_min: 150, election_timeout_max: 300, ..Default::default() };
    Arc::new(config.validate().expect("a valid Raft configuration"))
}

/// Waits (in steps of 10 ms, up to 10 s) until `done`; panics naming `what` if it never is.
pub async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// The node among `alive` that leads, by its own metrics.
pub fn leader_among(router: &Router, alive: &[u64]) -> Option<u64> {
    let nodes = router.nodes.borrow();
    alive.iter().copied().find(|id| nodes[id].metrics().borrow_watched().current_leader == Some(*id))
}

/// Writes each of `values` through the leader among `alive`, as a client does: a node that
/// answers it is not (or no longer) the leader has not taken the write, so it goes to the
/// leader found next. Each answer must be the sum so far (`sum`, kept up to date).
pub async fn write_all(router: &Router, alive: &[u64], values: impl IntoIterator<Item = u64>, sum: &mut u64) {
    for value in values {
        loop {
            until("a leader among the running nodes", || leader_among(router, alive).is_some()).await;
            let leader = leader_among(router, alive).expect("a leader");
            let raft = router.nodes.borrow()[&leader].clone();
            match raft.client_write(value).await {
                Ok(written) => {
                    *sum += value;
                    assert_eq!(written.response(), sum, "each write answers the sum after it");
                    break;
                }
                Err(error) if error.forward_to_leader().is_some() => {
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
                Err(error) => panic!("a write failed: {error}"),
            }
        }
    }
}
