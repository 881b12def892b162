//! A three-node Raft group on glommio: openraft driven by `GlommioRuntime`, its nodes on one
//! executor with logs and state machines in memory, reaching each other through a router that
//! can cut a node off (`sluice_raft::testing`). Shows openraft runs on a shard's executor —
//! elections, replication, commits, failover. `daemon/tests/raft_group.rs` runs the same group
//! on Sluice's segment log, with restarts.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::ops::RangeBounds;
use std::rc::Rc;

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{AsyncRuntime, BasicNode, Raft, RaftLogReader};
use sluice_raft::testing::{config, leader_among, until, write_all, Group, Router, StateMachine};
use sluice_raft::GlommioRuntime;

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

        let mut sum = 0;
        write_all(&router, &[1, 2, 3], 1..=50, &mut sum).await;
        let leader = leader_among(&router, &[1, 2, 3]).expect("a leader");
        until("every node applied the 50 writes", || machines.values().all(|machine| machine.0.borrow().sum == sum)).await;

        // The leader is cut off: the other two elect one of theirs and go on.
        router.cut.borrow_mut().insert(leader);
        let rest: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        write_all(&router, &rest, 51..=60, &mut sum).await;
        until("the two connected nodes applied them", || rest.iter().all(|id| machines[id].0.borrow().sum == sum)).await;
        assert!(machines[&leader].0.borrow().sum < sum, "the cut-off node cannot have applied them");

        // Back in the group, the old leader catches up.
        router.cut.borrow_mut().clear();
        until("the old leader catches up", || machines[&leader].0.borrow().sum == sum).await;

        let nodes: Vec<Raft<Group, StateMachine>> = router.nodes.borrow_mut().drain().map(|(_, raft)| raft).collect();
        for raft in nodes {
            raft.shutdown().await.expect("a node stops");
        }
    });
}
