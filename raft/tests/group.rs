//! A three-node Raft group on glommio: openraft driven by `GlommioRuntime`, its nodes on one
//! executor with logs and state machines in memory, reaching each other through a router that
//! can cut a node off. Shows openraft runs on a shard's executor — elections, replication,
//! commits, failover — before its log store moves onto Sluice's segment log.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::ops::RangeBounds;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::alias::{EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::storage::{EntryResponder, IOFlushed, LogState, RaftLogStorage, RaftStateMachine};
use openraft::AsyncRuntime;
use openraft::{BasicNode, Config, EntryPayload, Raft, RaftLogReader, RaftNetworkFactory, RaftNetworkV2, RaftSnapshotBuilder};
use sluice_raft::GlommioRuntime;

openraft::declare_raft_types!(
    /// Entries add a number; the state machine answers the running sum.
    Group:
        D = u64,
        R = u64,
        AsyncRuntime = GlommioRuntime,
);

/// A node's log, vote and commit mark in memory.
#[derive(Default)]
struct Log {
    entries: BTreeMap<u64, EntryOf<Group>>,
    purged: Option<LogIdOf<Group>>,
    vote: Option<VoteOf<Group>>,
    committed: Option<LogIdOf<Group>>,
}

#[derive(Clone, Default)]
struct LogStore(Rc<RefCell<Log>>);

impl RaftLogReader<Group> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<Group>>, io::Error> {
        Ok(self.0.borrow().entries.range(range).map(|(_, entry)| entry.clone()).collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<Group>>, io::Error> {
        Ok(self.0.borrow().vote)
    }
}

impl RaftLogStorage<Group> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<Group>, io::Error> {
        let log = self.0.borrow();
        let last = log.entries.values().next_back().map(|entry| entry.log_id).or_else(|| log.purged);
        Ok(LogState { last_purged_log_id: log.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<Group>) -> Result<(), io::Error> {
        self.0.borrow_mut().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<Group>>) -> Result<(), io::Error> {
        self.0.borrow_mut().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<Group>>, io::Error> {
        Ok(self.0.borrow().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<Group>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<Group>>,
    {
        let mut log = self.0.borrow_mut();
        for entry in entries {
            log.entries.insert(entry.log_id.index, entry);
        }
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogIdOf<Group>>) -> Result<(), io::Error> {
        let from = last.map_or(0, |id| id.index + 1);
        self.0.borrow_mut().entries.retain(|index, _| *index < from);
        Ok(())
    }

    async fn purge(&mut self, upto: LogIdOf<Group>) -> Result<(), io::Error> {
        let mut log = self.0.borrow_mut();
        log.entries.retain(|index, _| *index > upto.index);
        log.purged = Some(upto);
        Ok(())
    }
}

/// The running sum, what it has applied, and its last snapshot.
#[derive(Default)]
struct Machine {
    sum: u64,
    applied: Option<LogIdOf<Group>>,
    membership: StoredMembershipOf<Group>,
    snapshot: Option<(SnapshotMetaOf<Group>, u64)>,
}

#[derive(Clone, Default)]
struct StateMachine(Rc<RefCell<Machine>>);

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
struct Router {
    nodes: Rc<RefCell<HashMap<u64, Raft<Group, StateMachine>>>>,
    cut: Rc<RefCell<BTreeSet<u64>>>,
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

struct Connection {
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

fn config() -> Arc<Config> {
    let config = Config { heartbeat_interval: 50, election_timeout_min: 150, election_timeout_max: 300, ..Default::default() };
    Arc::new(config.validate().expect("a valid Raft configuration"))
}

/// Waits (in virtual steps of 10 ms, up to 10 s) until `done`.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

fn leader_among(router: &Router, alive: &[u64]) -> Option<u64> {
    let nodes = router.nodes.borrow();
    alive.iter().copied().find(|id| nodes[id].metrics().borrow_watched().current_leader == Some(*id))
}

#[test]
fn three_nodes_elect_replicate_and_fail_over_on_glommio() {
    let mut runtime = GlommioRuntime::new(1);
    runtime.block_on(async {
        let router = Router::default();
        let machines: HashMap<u64, StateMachine> = (1..=3).map(|id| (id, StateMachine::default())).collect();
        for id in 1..=3u64 {
            let raft =
                Raft::new(id, config(), (router.clone(), id), LogStore::default(), machines[&id].clone()).await.expect("a node starts");
            router.nodes.borrow_mut().insert(id, raft);
        }
        let members: BTreeMap<u64, BasicNode> = (1..=3).map(|id| (id, BasicNode::default())).collect();
        let first = router.nodes.borrow()[&1].clone();
        first.initialize(members).await.expect("the group forms");

        until("a leader is elected", || leader_among(&router, &[1, 2, 3]).is_some()).await;
        let leader = leader_among(&router, &[1, 2, 3]).expect("a leader");
        let raft = router.nodes.borrow()[&leader].clone();
        let mut sum = 0;
        for add in 1..=50u64 {
            let written = raft.client_write(add).await.expect("a write is committed");
            sum += add;
            assert_eq!(written.response(), &sum, "each write answers the sum after it");
        }
        until("every node applied the 50 writes", || machines.values().all(|machine| machine.0.borrow().sum == sum)).await;

        // The leader is cut off: the other two elect one of theirs and go on.
        router.cut.borrow_mut().insert(leader);
        let rest: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        until("the others elect a new leader", || leader_among(&router, &rest).is_some()).await;
        let successor = leader_among(&router, &rest).expect("a new leader");
        let raft = router.nodes.borrow()[&successor].clone();
        for add in 51..=60u64 {
            sum += add;
            assert_eq!(raft.client_write(add).await.expect("a write after failover").response(), &sum);
        }
        until("the two connected nodes applied them", || rest.iter().all(|id| machines[id].0.borrow().sum == sum)).await;
        assert!(machines[&leader].0.borrow().sum < sum, "the cut-off node cannot have applied them");

        // Back in the group, the old leader catches up and follows.
        router.cut.borrow_mut().clear();
        until("the old leader catches up", || machines[&leader].0.borrow().sum == sum).await;
        assert_ne!(leader_among(&router, &[leader]), Some(leader), "it follows now");

        let nodes: Vec<Raft<Group, StateMachine>> = router.nodes.borrow_mut().drain().map(|(_, raft)| raft).collect();
        for raft in nodes {
            raft.shutdown().await.expect("a node stops");
        }
    });
}
