//! A three-node Raft group (openraft on glommio, `sluice_raft`) whose logs are Sluice's
//! segment logs (`storage::raft`), each node in its own directory: writes are committed and
//! applied everywhere; a follower and then the leader are stopped and started again from
//! their logs (with writes while each is away), and every acknowledged write is in every
//! node's state afterwards.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use openraft::{AsyncRuntime, BasicNode, Raft};
use sluice_daemon::env::Env;
use sluice_daemon::storage::raft::RaftLog;
use sluice_raft::testing::{config, leader_among, until, write_all, Group, Router, StateMachine};
use sluice_raft::GlommioRuntime;

#[allow(dead_code)]
mod common;
use common::options;

struct Node {
    raft: Raft<Group, StateMachine>,
    log: RaftLog<Group>,
    machine: StateMachine,
}

/// Starts node `id` from its log in `dir` (a new one, or what it left), with a state machine
/// that starts empty: openraft applies the committed entries from the log again.
async fn start(router: &Router, dir: &Path, id: u64) -> Node {
    let log = RaftLog::open(Env::Glommio, options(&dir.join(format!("node-{id}")), 64 * 1024)).await.expect("the node's log opens");
    let machine = StateMachine::default();
    let raft = Raft::new(id, config(), (router.clone(), id), log.clone(), machine.clone()).await.expect("the node starts");
    router.nodes.borrow_mut().insert(id, raft.clone());
    Node { raft, log, machine }
}

async fn stop(router: &Router, node: Node, id: u64) {
    router.nodes.borrow_mut().remove(&id);
    node.raft.shutdown().await.expect("the node stops");
    node.log.close().await.expect("its log closes");
}

#[test]
fn a_group_on_segment_logs_keeps_every_write_through_restarts() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dir: PathBuf = dir.keep();
    let mut runtime = GlommioRuntime::new(1);
    runtime.block_on(async {
        let router = Router::default();
        let mut nodes: HashMap<u64, Node> = HashMap::new();
        for id in 1..=3 {
            nodes.insert(id, start(&router, &dir, id).await);
        }
        let members: BTreeMap<u64, BasicNode> = (1..=3).map(|id| (id, BasicNode::default())).collect();
        nodes[&1].raft.initialize(members).await.expect("the group forms");
        let mut sum = 0;
        write_all(&router, &[1, 2, 3], 1..=50, &mut sum).await;
        until("all three applied the writes", || nodes.values().all(|node| node.machine.0.borrow().sum == sum)).await;

        // A follower stops; writes go on without it; it starts again from its log.
        let leader = leader_among(&router, &[1, 2, 3]).expect("a leader");
        let follower = (1..=3).find(|id| *id != leader).expect("a follower");
        stop(&router, nodes.remove(&follower).expect("the follower"), follower).await;
        let rest: Vec<u64> = (1..=3).filter(|id| *id != follower).collect();
        write_all(&router, &rest, 51..=70, &mut sum).await;
        nodes.insert(follower, start(&router, &dir, follower).await);
        until("the restarted follower has every write", || nodes[&follower].machine.0.borrow().sum == sum).await;

        // Then the leader: the others elect one of theirs, and it rejoins from its log.
        let leader = leader_among(&router, &[1, 2, 3]).expect("a leader");
        stop(&router, nodes.remove(&leader).expect("the leader"), leader).await;
        let rest: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        write_all(&router, &rest, 71..=90, &mut sum).await;
        nodes.insert(leader, start(&router, &dir, leader).await);
        until("every node has every write", || nodes.values().all(|node| node.machine.0.borrow().sum == sum)).await;
        assert_eq!(sum, (1..=90).sum::<u64>());

        for (id, node) in nodes.drain() {
            stop(&router, node, id).await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
