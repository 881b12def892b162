//! Target `raft-group`: a replicated Raft group — three nodes running openraft on the
//! simulator's runtime (`raft_runtime`), each with its log on the segment log
//! (`storage::raft`) in its own directory of the simulated disk — under a network that delays,
//! reorders, duplicates and loses messages and cuts nodes off, with nodes crashing and coming
//! back, one machine losing power (its disk keeps what it made durable) and the whole cluster
//! losing power at once. Clients write numbers through any node.
//!
//! Checked whenever the group has settled (cuts healed, every node running, messages flowing):
//! every node applied the very same entries in the same order; every write a leader
//! acknowledged is there at the index it was acknowledged at; nothing applied twice; nothing
//! applied that no client wrote. A write refused by a node that does not lead is never applied.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::executor::LocalPool;
use futures::future::LocalBoxFuture;
use futures::task::LocalSpawnExt;
use futures::{Stream, StreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{BasicNode, EntryPayload, Raft, RaftNetworkFactory, RaftNetworkV2, RaftSnapshotBuilder};

use super::raft_runtime::{self, SimRuntime};
use super::Driver;
use crate::env::memory::Crash;
use crate::env::World;
use crate::storage::log::{FsyncMode, LogOptions};
use crate::storage::raft::RaftLog;

openraft::declare_raft_types!(
    /// Entries carry a number a client wrote; the answer is the index it was applied at.
    pub SimGroup:
        D = u64,
        R = u64,
        AsyncRuntime = SimRuntime,
);

const NODES: u64 = 3;

/// What a node applied, in order: (log index, value).
#[derive(Default)]
struct Applied {
    values: Vec<(u64, u64)>,
    last: Option<LogIdOf<SimGroup>>,
    membership: StoredMembershipOf<SimGroup>,
}

#[derive(Clone, Default)]
struct Machine(Rc<RefCell<Applied>>);

impl RaftSnapshotBuilder<SimGroup> for Machine {
    type SnapshotData = Vec<(u64, u64)>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<SimGroup, Vec<(u64, u64)>>, io::Error> {
        let applied = self.0.borrow();
        let meta = SnapshotMetaOf::<SimGroup> { last_log_id: applied.last, last_membership: applied.membership.clone() };
        Ok(SnapshotOf::<SimGroup, Vec<(u64, u64)>> { meta, snapshot: applied.values.clone() })
    }
}

impl RaftStateMachine<SimGroup> for Machine {
    type SnapshotData = Vec<(u64, u64)>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<SimGroup>>, StoredMembershipOf<SimGroup>), io::Error> {
        let applied = self.0.borrow();
        Ok((applied.last, applied.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<SimGroup>, io::Error>> + Unpin,
    {
        while let Some(next) = entries.next().await {
            let (entry, responder) = next?;
            let mut applied = self.0.borrow_mut();
            applied.last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Normal(value) => applied.values.push((entry.log_id.index, value)),
                EntryPayload::Membership(membership) => {
                    applied.membership = StoredMembershipOf::<SimGroup>::new(Some(entry.log_id), membership)
                }
                EntryPayload::Blank => {}
            }
            drop(applied);
            if let Some(responder) = responder {
                responder.send(entry.log_id.index);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<SimGroup>, values: Vec<(u64, u64)>) -> Result<(), io::Error> {
        let mut applied = self.0.borrow_mut();
        applied.values = values;
        applied.last = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<SimGroup, Vec<(u64, u64)>>>, io::Error> {
        Ok(None)
    }
}

type Node = Raft<SimGroup, Machine>;

/// The simulated network: who runs, who is cut off, and how messages fare.
struct Net {
    nodes: RefCell<BTreeMap<u64, Node>>,
    cut: RefCell<BTreeSet<u64>>,
    rng: RefCell<fastrand::Rng>,
    /// Percent of requests lost, of answers lost, of requests delivered twice.
    loss: std::cell::Cell<u8>,
    duplicate: u8,
    delay_ms: u64,
    world: Rc<World>,
}

impl Net {
    fn chance(&self, percent: u8) -> bool {
        self.rng.borrow_mut().u8(..100) < percent
    }

    fn delay(&self) -> crate::env::sim::Sleep {
        let ms = self.rng.borrow_mut().u64(0..=self.delay_ms);
        self.world.sleep(Duration::from_millis(ms))
    }

    fn reachable(&self, from: u64, to: u64) -> Option<Node> {
        let cut = self.cut.borrow();
        if cut.contains(&from) || cut.contains(&to) {
            return None;
        }
        self.nodes.borrow().get(&to).cloned()
    }

    /// Carries one request from `from` to `to` and its answer back, as the network pleases.
    async fn carry<T>(
        self: Rc<Self>,
        from: u64,
        to: u64,
        call: impl Fn(Node) -> LocalBoxFuture<'static, Result<T, String>>,
    ) -> Result<T, Unreachable<SimGroup>> {
        let lost = || Unreachable::from_string(format!("{from} -> {to}: lost"));
        self.delay().await;
        let node = self.reachable(from, to).ok_or_else(lost)?;
        if self.chance(self.loss.get()) {
            return Err(lost());
        }
        if self.chance(self.duplicate) {
            let _ = call(node.clone()).await;
        }
        let answer = call(node).await.map_err(|error| Unreachable::from_string(format!("{from} -> {to}: {error}")))?;
        self.delay().await;
        if self.reachable(to, from).is_none() || self.chance(self.loss.get()) {
            return Err(lost());
        }
        Ok(answer)
    }
}

struct Factory {
    net: Rc<Net>,
    from: u64,
}

impl RaftNetworkFactory<SimGroup> for Factory {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, _: &BasicNode) -> Connection {
        Connection { net: self.net.clone(), from: self.from, to: target }
    }
}

struct Connection {
    net: Rc<Net>,
    from: u64,
    to: u64,
}

impl RaftNetworkV2<SimGroup> for Connection {
    type SnapshotData = Vec<(u64, u64)>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<SimGroup>,
        _: RPCOption,
    ) -> Result<AppendEntriesResponse<SimGroup>, RPCError<SimGroup>> {
        let call = move |node: Node| {
            let rpc = rpc.clone();
            Box::pin(async move { node.append_entries(rpc).await.map_err(|e| e.to_string()) }) as LocalBoxFuture<'static, _>
        };
        Ok(self.net.clone().carry(self.from, self.to, call).await?)
    }

    async fn vote(&mut self, rpc: VoteRequest<SimGroup>, _: RPCOption) -> Result<VoteResponse<SimGroup>, RPCError<SimGroup>> {
        let call = move |node: Node| {
            let rpc = rpc.clone();
            Box::pin(async move { node.vote(rpc).await.map_err(|e| e.to_string()) }) as LocalBoxFuture<'static, _>
        };
        Ok(self.net.clone().carry(self.from, self.to, call).await?)
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<SimGroup>,
        snapshot: SnapshotOf<SimGroup, Vec<(u64, u64)>>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + 'static,
        _: RPCOption,
    ) -> Result<SnapshotResponse<SimGroup>, StreamingError<SimGroup>> {
        let call = move |node: Node| {
            let (vote, snapshot) = (vote, snapshot.clone());
            Box::pin(async move { node.install_full_snapshot(vote, snapshot).await.map_err(|e| e.to_string()) })
                as LocalBoxFuture<'static, _>
        };
        self.net.clone().carry(self.from, self.to, call).await.map_err(StreamingError::Unreachable)
    }
}

/// What the clients know: every value written, acknowledged ones with their index, refused ones.
#[derive(Default)]
struct Model {
    written: BTreeSet<u64>,
    acked: BTreeMap<u64, u64>,
    refused: BTreeSet<u64>,
}

/// One running node: its executor (its tasks die with it), its group handle, what it applied.
struct Running {
    pool: LocalPool,
    machine: Machine,
}

struct Group {
    world: Rc<World>,
    net: Rc<Net>,
    running: BTreeMap<u64, Running>,
    /// The clients' executor.
    clients: LocalPool,
    model: Rc<RefCell<Model>>,
    next_value: u64,
    config: Arc<openraft::Config>,
}

fn dir(id: u64) -> PathBuf {
    PathBuf::from(format!("/sim/raft-group/node-{id}"))
}

impl Group {
    /// Runs every executor until none can go on.
    fn settle(&mut self) {
        loop {
            let mut progressed = false;
            for running in self.running.values_mut() {
                self.world.set_spawner(running.pool.spawner());
                while running.pool.try_run_one() {
                    progressed = true;
                }
            }
            self.world.set_spawner(self.clients.spawner());
            while self.clients.try_run_one() {
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    /// Moves virtual time on by `by`, running what each timer wakes.
    fn advance(&mut self, by: Duration) {
        let to = self.world.now() + by;
        self.settle();
        while let Some(deadline) = self.world.next_deadline().filter(|deadline| *deadline <= to) {
            self.world.advance_to(deadline);
            self.settle();
        }
        self.world.advance_to(to);
        self.settle();
    }

    /// Moves time on until `done`, at most `limit`; whether it came.
    fn advance_until(&mut self, limit: Duration, done: impl Fn(&Group) -> bool) -> bool {
        let until = self.world.now() + limit;
        loop {
            self.settle();
            if done(self) {
                return true;
            }
            match self.world.next_deadline() {
                Some(deadline) if deadline <= until => self.world.advance_to(deadline),
                _ => return false,
            }
        }
    }

    /// Starts node `id` from what its directory holds.
    fn start(&mut self, driver: &mut Driver, id: u64) -> Result<(), String> {
        let pool = LocalPool::new();
        let machine = Machine::default();
        let options = LogOptions { dir: dir(id), segment_bytes: 64 * 4096, fsync: FsyncMode::Always, repair: false, spare_ahead: true };
        let slot: Rc<RefCell<Option<Result<Node, String>>>> = Rc::default();
        let (env, net, config, sm, out) = (driver.env(), self.net.clone(), self.config.clone(), machine.clone(), slot.clone());
        pool.spawner()
            .spawn_local(async move {
                let started = async {
                    let log = RaftLog::<SimGroup>::open(env, options).await.map_err(|e| format!("node {id}'s log: {e}"))?;
                    Raft::new(id, config, Factory { net, from: id }, log, sm).await.map_err(|e| format!("node {id}: {e}"))
                };
                *out.borrow_mut() = Some(started.await);
            })
            .map_err(|e| e.to_string())?;
        self.running.insert(id, Running { pool, machine });
        if !self.advance_until(Duration::from_secs(60), |_| slot.borrow().is_some()) {
            return Err(format!("node {id} did not start"));
        }
        let node = slot.borrow_mut().take().expect("the slot is filled")?;
        self.net.nodes.borrow_mut().insert(id, node);
        driver.note(format!("node {id} started"));
        Ok(())
    }

    /// Node `id`'s process dies: its tasks go; its disk keeps what it wrote.
    fn crash(&mut self, driver: &mut Driver, id: u64) {
        self.net.nodes.borrow_mut().remove(&id);
        self.running.remove(&id);
        driver.note(format!("node {id} crashed"));
    }

    /// A client writes the next value through node `id` (the leader, or one that refuses).
    fn write(&mut self, driver: &mut Driver, id: u64) {
        let Some(node) = self.net.nodes.borrow().get(&id).cloned() else { return };
        let value = self.next_value;
        self.next_value += 1;
        self.model.borrow_mut().written.insert(value);
        driver.report.appended += 1;
        let model = self.model.clone();
        let _ = self.clients.spawner().spawn_local(async move {
            match node.client_write(value).await {
                Ok(written) => {
                    model.borrow_mut().acked.insert(value, *written.response());
                }
                Err(error) if error.forward_to_leader().is_some() => {
                    model.borrow_mut().refused.insert(value);
                }
                Err(_) => {}
            }
        });
        driver.note(format!("write {value} through node {id}"));
    }

    /// Each running node's view: leader, term, last log index, last applied index.
    fn state(&self) -> String {
        let nodes = self.net.nodes.borrow();
        let views: Vec<String> = nodes
            .iter()
            .map(|(id, node)| {
                let metrics = node.metrics().borrow_watched().clone();
                let applied = metrics.last_applied.map(|id| id.index);
                format!(
                    "{id}: leader {:?} term {} log {:?} applied {:?}",
                    metrics.current_leader, metrics.current_term, metrics.last_log_index, applied
                )
            })
            .collect();
        views.join("; ")
    }

    fn leader(&self) -> Option<u64> {
        let nodes = self.net.nodes.borrow();
        let leaders: BTreeSet<u64> =
            nodes.iter().filter(|(id, node)| node.metrics().borrow_watched().current_leader == Some(**id)).map(|(id, _)| *id).collect();
        leaders.into_iter().next_back()
    }

    /// Heals the network, starts every node, and waits until all applied the same last
    /// entry; then checks what they applied against what clients were told.
    fn settle_and_check(&mut self, driver: &mut Driver) -> Result<(), String> {
        self.net.cut.borrow_mut().clear();
        let loss = self.net.loss.replace(0);
        for id in 1..=NODES {
            if !self.running.contains_key(&id) {
                self.start(driver, id)?;
            }
        }
        // A write through the leader commits everything before it in every log.
        let converged = |group: &Group| {
            let applied: BTreeSet<Option<u64>> =
                group.running.values().map(|running| running.machine.0.borrow().last.map(|id| id.index)).collect();
            let last_logs: BTreeSet<Option<u64>> =
                group.net.nodes.borrow().values().map(|node| node.metrics().borrow_watched().last_log_index).collect();
            group.leader().is_some() && applied.len() == 1 && last_logs.len() == 1 && applied == last_logs
        };
        if !self.advance_until(Duration::from_secs(120), |group| group.leader().is_some()) {
            return Err("no leader two minutes after the network healed and every node started".into());
        }
        let leader = self.leader().expect("a leader");
        self.write(driver, leader);
        if !self.advance_until(Duration::from_secs(120), converged) {
            let state: Vec<String> = self
                .net
                .nodes
                .borrow()
                .iter()
                .map(|(id, node)| {
                    let metrics = node.metrics().borrow_watched().clone();
                    format!(
                        "node {id}: leader {:?} last log {:?} applied {:?}",
                        metrics.current_leader, metrics.last_log_index, metrics.last_applied
                    )
                })
                .collect();
            return Err(format!("the nodes did not converge in two minutes: {}", state.join("; ")));
        }
        self.net.loss.set(loss);
        self.check()?;
        driver.note(format!("settled: {} entries applied on every node", self.running[&1].machine.0.borrow().values.len()));
        driver.report.acknowledged = self.model.borrow().acked.len() as u64;
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        let model = self.model.borrow();
        let first = self.running[&1].machine.0.borrow().values.clone();
        for (id, running) in &self.running {
            let values = &running.machine.0.borrow().values;
            if *values != first {
                let at = values.iter().zip(&first).position(|(a, b)| a != b).unwrap_or(values.len().min(first.len()));
                return Err(format!(
                    "node {id} applied another sequence than node 1 from position {at}: {:?} against {:?}",
                    values.get(at),
                    first.get(at)
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for (index, value) in &first {
            if !seen.insert(*value) {
                return Err(format!("value {value} applied twice (again at index {index})"));
            }
            if !model.written.contains(value) {
                return Err(format!("value {value} at index {index} was never written"));
            }
            if model.refused.contains(value) {
                return Err(format!("value {value} at index {index} was refused by the node it was written through"));
            }
        }
        let at: BTreeMap<u64, u64> = first.iter().map(|(index, value)| (*value, *index)).collect();
        for (value, index) in &model.acked {
            match at.get(value) {
                Some(applied) if applied == index => {}
                Some(applied) => return Err(format!("acknowledged value {value} at index {index} is at index {applied}")),
                None => return Err(format!("acknowledged value {value} (index {index}) is lost")),
            }
        }
        Ok(())
    }
}

pub fn run(driver: &mut Driver, steps: usize) -> Result<(), String> {
    let seed = driver.rng.u64(..);
    raft_runtime::enter(driver.world.clone(), seed);
    let outcome = run_group(driver, steps);
    raft_runtime::leave();
    outcome
}

fn run_group(driver: &mut Driver, steps: usize) -> Result<(), String> {
    let loss = driver.rng.u8(0..15);
    let duplicate = driver.rng.u8(0..10);
    let delay_ms = driver.rng.u64(1..40);
    driver.note(format!("raft-group: {NODES} nodes, {loss}% of messages lost, {duplicate}% delivered twice, delays up to {delay_ms} ms"));
    let config = openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        ..Default::default()
    };
    let config = Arc::new(config.validate().map_err(|e| e.to_string())?);
    let net = Rc::new(Net {
        nodes: RefCell::default(),
        cut: RefCell::default(),
        rng: RefCell::new(fastrand::Rng::with_seed(driver.rng.u64(..))),
        loss: std::cell::Cell::new(loss),
        duplicate,
        delay_ms,
        world: driver.world.clone(),
    });
    let mut group = Group {
        world: driver.world.clone(),
        net,
        running: BTreeMap::new(),
        clients: LocalPool::new(),
        model: Rc::default(),
        next_value: 1,
        config,
    };
    for id in 1..=NODES {
        group.start(driver, id)?;
    }
    let members: BTreeMap<u64, BasicNode> = (1..=NODES).map(|id| (id, BasicNode::default())).collect();
    let first = group.net.nodes.borrow()[&1].clone();
    let formed: Rc<RefCell<Option<String>>> = Rc::default();
    let out = formed.clone();
    group.world.set_spawner(group.clients.spawner());
    let _ = group.clients.spawner().spawn_local(async move {
        *out.borrow_mut() = Some(first.initialize(members).await.map_or_else(|e| e.to_string(), |_| "formed".into()));
    });
    if !group.advance_until(Duration::from_secs(60), |_| formed.borrow().is_some()) || formed.borrow().as_deref() != Some("formed") {
        return Err(format!("the group did not form: {:?}", formed.borrow()));
    }
    while driver.step < steps {
        driver.step += 1;
        match driver.rng.u8(..100) {
            0..=44 => {
                // Mostly through the leader; sometimes through a node that may not lead.
                let through = match group.leader() {
                    Some(leader) if driver.rng.u8(..4) > 0 => leader,
                    _ => driver.rng.u64(1..=NODES),
                };
                group.write(driver, through);
            }
            45..=69 => {
                let ms = driver.rng.u64(1..300);
                group.advance(Duration::from_millis(ms));
                driver.note(format!("{ms} ms later: {}", group.state()));
            }
            70..=75 => {
                let id = driver.rng.u64(1..=NODES);
                if group.net.cut.borrow_mut().insert(id) {
                    driver.note(format!("node {id} cut off"));
                }
            }
            76..=81 => {
                group.net.cut.borrow_mut().clear();
                driver.note("the network healed".into());
            }
            82..=85 => {
                let id = driver.rng.u64(1..=NODES);
                if group.running.contains_key(&id) {
                    group.crash(driver, id);
                }
            }
            86..=87 => {
                // One machine loses power: its disk keeps what it had made durable.
                let id = driver.rng.u64(1..=NODES);
                if group.running.contains_key(&id) {
                    group.crash(driver, id);
                }
                group.world.fs().power_loss_under(&dir(id));
                driver.report.power_losses += 1;
                driver.note(format!("node {id} lost power"));
            }
            88..=92 => {
                let down: Vec<u64> = (1..=NODES).filter(|id| !group.running.contains_key(id)).collect();
                if !down.is_empty() {
                    let id = down[driver.rng.usize(..down.len())];
                    group.start(driver, id)?;
                }
            }
            93..=94 => {
                // Every node loses power at once: each disk keeps what it had made durable.
                for id in 1..=NODES {
                    if group.running.contains_key(&id) {
                        group.crash(driver, id);
                    }
                }
                group.clients = LocalPool::new();
                group.world.clear_timers();
                group.world.fs().crash(Crash::Power);
                driver.report.restarts += 1;
                driver.report.power_losses += 1;
                driver.note("power lost everywhere".into());
                for id in 1..=NODES {
                    group.start(driver, id)?;
                }
            }
            _ => group.settle_and_check(driver)?,
        }
    }
    group.settle_and_check(driver)
}
