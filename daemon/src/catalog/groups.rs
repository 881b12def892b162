//! Stream consumer groups: what KCL keeps in a DynamoDB table, kept by the server. The group
//! of a registered stream consumer (RegisterStreamConsumer) shares the stream's shards among
//! its workers — processes that call LeaseShards at least every third of the lease time:
//!
//! - **Leases** (memory only, on shard 0): one worker at a time holds a shard, until its lease
//!   runs out (`--stream-lease-seconds`) unless renewed. Each LeaseShards renews the caller's
//!   leases and takes free ones up to its fair share (the eligible shards over the live workers,
//!   rounded up; `max_leases` caps it). With no free shard left and fewer than its share, the
//!   caller asks for one shard of the worker holding the most: that lease is not renewed again,
//!   so its holder stops (LeaseShards no longer lists it) and the lease is free once it has run
//!   out (or is released), the asker first in line. A worker not heard from for a lease time
//!   has left.
//! - **No two workers at once**: a worker may process a shard until the time it sent the
//!   LeaseShards that last listed it, plus the lease time; the server frees a lease only a lease
//!   time after it received that call. After a restart the groups that existed before it get no
//!   lease for one lease time, since leases granted before it are not known.
//! - **Parents first**: a shard is eligible once its parents (a split's or a merge's) are
//!   checkpointed at `SHARD_END`, or have left the stream; a shard checkpointed at `SHARD_END`
//!   is finished and leased no more.
//! - **Checkpoints** (durable, in the metadata file): the last sequence number the group
//!   processed in each shard, only from the worker holding the lease (by its token), and never
//!   backwards. They go with their consumer, their shard or their stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{json, Value};
use sluice_protocol::{ConsumerRef, ErrorCode, OpError, ShardLease, ShardLeases, SHARD_END};

use super::streams::{find_consumer, shard_id, StreamMeta, Streams};
use super::Naming;

/// Lease time unless `--stream-lease-seconds` says otherwise.
pub const LEASE_MS_DEFAULT: u64 = 10_000;
/// The longest worker name.
const WORKER_BYTES_MAX: usize = 256;
/// Live workers a group may have.
pub const WORKERS_MAX: usize = 1_000;

/// How far a group has processed a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Position {
    /// Every record up to this log sequence number.
    After(u64),
    /// A closed shard, to its end.
    End,
}

/// One group's checkpoint in one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `<consumer ARN>#<shard index>`: what the metadata file keys it by.
    pub name: String,
    pub consumer_arn: String,
    pub stream_id: u64,
    pub shard: u32,
    pub position: Position,
    pub at_ms: u64,
}

/// Every group's checkpoints, by name.
pub type Checkpoints = BTreeMap<String, Arc<Checkpoint>>;

fn checkpoint_name(consumer_arn: &str, shard: u32) -> String {
    format!("{consumer_arn}#{shard}")
}

#[derive(Debug, Clone)]
struct Lease {
    worker: String,
    token: u64,
    expires_ms: u64,
}

/// One group's workers and leases.
#[derive(Debug, Clone, Default)]
struct Group {
    /// Live workers: when each was last heard from.
    workers: BTreeMap<String, u64>,
    leases: BTreeMap<u32, Lease>,
    /// Shards whose holder is asked to let go, and who asked.
    wanted: BTreeMap<u32, String>,
}

/// Every group's leases: memory only.
#[derive(Debug, Clone)]
pub struct Leases {
    groups: HashMap<String, Group>,
    lease_ms: u64,
    next_token: u64,
    /// The groups that existed at the start (they may have had leases then)...
    from_before: std::collections::HashSet<String>,
    /// ...are granted no lease before this (one lease time after the start).
    granting_from_ms: u64,
}

impl Default for Leases {
    fn default() -> Leases {
        Leases::new(LEASE_MS_DEFAULT, 0, &Streams::new())
    }
}

impl Leases {
    /// Leases of `lease_ms` for a server that started at `started_ms` with `streams`: the
    /// groups of their consumers get no lease for one lease time (any leases they had before
    /// the start are not known, and may still be running out).
    pub fn new(lease_ms: u64, started_ms: u64, streams: &Streams) -> Leases {
        let from_before = streams.values().flat_map(|meta| meta.consumers.iter().map(|consumer| consumer.arn.clone())).collect();
        // Tokens of this start are above those of any earlier one (a lease is at least a second).
        Leases { groups: HashMap::new(), lease_ms, next_token: started_ms << 16, from_before, granting_from_ms: started_ms + lease_ms }
    }

    pub fn lease_ms(&self) -> u64 {
        self.lease_ms
    }
}

/// A change to (or a question about) a consumer group.
#[derive(Debug, Clone)]
pub enum GroupChange {
    Lease { consumer_arn: String, worker: String, max_leases: Option<i32> },
    Checkpoint { consumer_arn: String, worker: String, shard_id: String, token: u64, sequence_number: String },
    Release { consumer_arn: String, worker: String, shard_ids: Vec<String> },
    Describe { consumer_arn: String },
}

/// Where a group works: its stream, and its consumer's ARN.
struct Target<'a> {
    meta: &'a StreamMeta,
    arn: &'a str,
}

fn target<'a>(streams: &'a Streams, naming: &Naming, consumer_arn: &str) -> Result<Target<'a>, OpError> {
    let consumer = ConsumerRef { consumer_arn: Some(consumer_arn.to_owned()), ..ConsumerRef::default() };
    let (meta, at) = find_consumer(streams, naming, &consumer)?;
    Ok(Target { meta, arn: &meta.consumers[at].arn })
}

fn lease_lost(shard: &str, why: &str) -> OpError {
    OpError::new(
        ErrorCode::LeaseLost,
        format!("This worker does not hold the lease on {shard}: {why}. Call LeaseShards for what it holds."),
    )
}

fn invalid(message: impl Into<String>) -> OpError {
    OpError::new(ErrorCode::InvalidArgument, message)
}

fn check_worker(worker: &str) -> Result<(), OpError> {
    if worker.is_empty() || worker.len() > WORKER_BYTES_MAX || worker.chars().any(char::is_control) {
        return Err(invalid(format!("A worker name is 1 to {WORKER_BYTES_MAX} bytes without control characters.")));
    }
    Ok(())
}

/// What changed the metadata file (a checkpoint) or answers the caller.
pub enum GroupOutcome {
    Leases(ShardLeases),
    Done,
}

/// Applies a group change at `now_ms`.
pub fn apply(
    checkpoints: &mut Arc<Checkpoints>,
    leases: &mut Leases,
    streams: &Streams,
    naming: &Naming,
    change: GroupChange,
    now_ms: u64,
) -> Result<GroupOutcome, OpError> {
    match change {
        GroupChange::Lease { consumer_arn, worker, max_leases } => {
            check_worker(&worker)?;
            let target = target(streams, naming, &consumer_arn)?;
            let cap = match max_leases {
                None => usize::MAX,
                Some(cap) if cap >= 0 => cap as usize,
                Some(cap) => return Err(invalid(format!("MaxLeases {cap} is negative."))),
            };
            Ok(GroupOutcome::Leases(heartbeat(checkpoints, leases, &target, &worker, cap, now_ms)?))
        }
        GroupChange::Checkpoint { consumer_arn, worker, shard_id, token, sequence_number } => {
            let target = target(streams, naming, &consumer_arn)?;
            let shard = target.meta.shard_by_id(&shard_id)?;
            let group = leases.groups.get_mut(target.arn);
            let lease = group.as_ref().and_then(|group| group.leases.get(&shard.index));
            match lease {
                Some(lease) if lease.worker == worker && lease.token == token && lease.expires_ms > now_ms => {}
                Some(lease) if lease.worker == worker && lease.token == token => return Err(lease_lost(&shard_id, "it ran out")),
                _ => return Err(lease_lost(&shard_id, "it is another's, or was released, or ran out")),
            }
            let position = if sequence_number == SHARD_END {
                if shard.is_open() {
                    return Err(invalid(format!("{shard_id} is open: it has no end to checkpoint.")));
                }
                Position::End
            } else {
                Position::After(target.meta.parse_sequence_number(shard.index, &sequence_number)?)
            };
            let name = checkpoint_name(target.arn, shard.index);
            if let Some(current) = checkpoints.get(&name) {
                if position < current.position {
                    return Err(invalid(format!("{shard_id} is checkpointed past {sequence_number}: checkpoints only go forward.")));
                }
            }
            let checkpoint = Checkpoint {
                name: name.clone(),
                consumer_arn: target.arn.to_owned(),
                stream_id: target.meta.id,
                shard: shard.index,
                position,
                at_ms: now_ms,
            };
            Arc::make_mut(checkpoints).insert(name, Arc::new(checkpoint));
            if position == Position::End {
                // Finished: the lease goes, and the shard's children become eligible.
                if let Some(group) = leases.groups.get_mut(target.arn) {
                    group.leases.remove(&shard.index);
                    group.wanted.remove(&shard.index);
                }
            }
            Ok(GroupOutcome::Done)
        }
        GroupChange::Release { consumer_arn, worker, shard_ids } => {
            let target = target(streams, naming, &consumer_arn)?;
            let indexes =
                shard_ids.iter().map(|id| target.meta.shard_by_id(id).map(|shard| shard.index)).collect::<Result<Vec<u32>, _>>()?;
            if let Some(group) = leases.groups.get_mut(target.arn) {
                group.leases.retain(|index, lease| lease.worker != worker || !(indexes.is_empty() || indexes.contains(index)));
                if indexes.is_empty() {
                    group.workers.remove(&worker);
                    group.wanted.retain(|_, asker| *asker != worker);
                }
            }
            Ok(GroupOutcome::Done)
        }
        GroupChange::Describe { consumer_arn } => {
            let target = target(streams, naming, &consumer_arn)?;
            let group = leases.groups.get(target.arn).cloned().unwrap_or_default();
            let shards = target.meta.shards.iter().map(|shard| {
                let lease = group.leases.get(&shard.index).filter(|lease| lease.expires_ms > now_ms);
                describe(checkpoints, &target, shard.index, lease, now_ms)
            });
            let live = group.workers.iter().filter(|(_, seen)| **seen + leases.lease_ms > now_ms).map(|(worker, _)| worker.clone());
            Ok(GroupOutcome::Leases(ShardLeases { lease_ms: leases.lease_ms, leases: shards.collect(), workers: live.collect() }))
        }
    }
}

fn describe(checkpoints: &Checkpoints, target: &Target<'_>, index: u32, lease: Option<&Lease>, now_ms: u64) -> ShardLease {
    let checkpoint = checkpoints.get(&checkpoint_name(target.arn, index)).map(|checkpoint| match checkpoint.position {
        Position::After(seq) => target.meta.sequence_number(index, seq),
        Position::End => SHARD_END.to_owned(),
    });
    ShardLease {
        shard_id: shard_id(index),
        worker: lease.map(|lease| lease.worker.clone()),
        token: lease.map_or(0, |lease| lease.token),
        checkpoint,
        expires_in_ms: lease.map_or(0, |lease| lease.expires_ms.saturating_sub(now_ms)),
    }
}

/// The group's checkpoint in `index`.
fn position(checkpoints: &Checkpoints, arn: &str, index: u32) -> Option<Position> {
    checkpoints.get(&checkpoint_name(arn, index)).map(|checkpoint| checkpoint.position)
}

/// The shards the group may lease now: not finished, parents finished (or gone), by index.
fn eligible(checkpoints: &Checkpoints, target: &Target<'_>) -> Vec<u32> {
    let finished = |index: u32| target.meta.shard(index).is_none() || position(checkpoints, target.arn, index) == Some(Position::End);
    target
        .meta
        .shards
        .iter()
        .filter(|shard| !finished(shard.index))
        .filter(|shard| shard.parent.is_none_or(finished) && shard.adjacent_parent.is_none_or(finished))
        .map(|shard| shard.index)
        .collect()
}

/// LeaseShards: renews, takes and gives up leases for `worker`; answers what it holds.
fn heartbeat(
    checkpoints: &Checkpoints,
    leases: &mut Leases,
    target: &Target<'_>,
    worker: &str,
    cap: usize,
    now_ms: u64,
) -> Result<ShardLeases, OpError> {
    let lease_ms = leases.lease_ms;
    let granting = now_ms >= leases.granting_from_ms || !leases.from_before.contains(target.arn);
    let group = leases.groups.entry(target.arn.to_owned()).or_default();
    // Who is alive, and which leases still run.
    group.workers.retain(|_, seen| *seen + lease_ms > now_ms);
    if !group.workers.contains_key(worker) && group.workers.len() >= WORKERS_MAX {
        return Err(OpError::new(ErrorCode::LimitExceeded, format!("The group already has {WORKERS_MAX} live workers.")));
    }
    group.workers.insert(worker.to_owned(), now_ms);
    let eligible = eligible(checkpoints, target);
    group.leases.retain(|index, lease| lease.expires_ms > now_ms && eligible.contains(index));
    group.wanted.retain(|index, asker| group.workers.contains_key(asker) && group.leases.contains_key(index) && eligible.contains(index));
    // Renew this worker's leases, but not those another has asked for, nor past its cap.
    let mut held = 0;
    for (index, lease) in group.leases.iter_mut().filter(|(_, lease)| lease.worker == worker) {
        if held < cap && !group.wanted.contains_key(index) {
            lease.expires_ms = now_ms + lease_ms;
            held += 1;
        }
    }
    let share = eligible.len().div_ceil(group.workers.len()).min(cap);
    if granting {
        // Free shards: first those this worker asked for, then the rest by index.
        let free: Vec<u32> = {
            let mut free: Vec<u32> = eligible.iter().copied().filter(|index| !group.leases.contains_key(index)).collect();
            free.sort_by_key(|index| (group.wanted.get(index).map(String::as_str) != Some(worker), *index));
            free.into_iter().filter(|index| group.wanted.get(index).is_none_or(|asker| asker == worker)).collect()
        };
        for index in free.into_iter().take(share.saturating_sub(held)) {
            leases.next_token += 1;
            group.leases.insert(index, Lease { worker: worker.to_owned(), token: leases.next_token, expires_ms: now_ms + lease_ms });
            group.wanted.remove(&index);
            held += 1;
        }
        // Still short with nothing free: ask the busiest workers (past their share) for shards.
        let asked = group.wanted.values().filter(|asker| *asker == worker).count();
        for _ in 0..share.saturating_sub(held + asked) {
            // Each worker's leases not already asked for.
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for (index, lease) in &group.leases {
                if !group.wanted.contains_key(index) {
                    *counts.entry(lease.worker.as_str()).or_default() += 1;
                }
            }
            let busiest = counts.into_iter().filter(|(other, count)| *other != worker && *count > share).max_by_key(|(_, count)| *count);
            let Some((busiest, _)) = busiest else { break };
            let busiest = busiest.to_owned();
            let shard = group.leases.iter().rev().find(|(index, lease)| lease.worker == busiest && !group.wanted.contains_key(index));
            let Some((index, _)) = shard else { break };
            group.wanted.insert(*index, worker.to_owned());
        }
    }
    let mine = group
        .leases
        .iter()
        .filter(|(index, lease)| lease.worker == worker && lease.expires_ms == now_ms + lease_ms && !group.wanted.contains_key(index));
    let leases_now = mine.map(|(index, lease)| describe(checkpoints, target, *index, Some(lease), now_ms)).collect();
    Ok(ShardLeases { lease_ms, leases: leases_now, workers: group.workers.keys().cloned().collect() })
}

/// Drops the checkpoints (and groups) whose consumer, shard or stream is gone.
pub fn forget_gone(checkpoints: &mut Arc<Checkpoints>, leases: &mut Arc<Leases>, streams: &Streams) {
    let consumers: HashMap<&str, &StreamMeta> =
        streams.values().flat_map(|meta| meta.consumers.iter().map(move |consumer| (consumer.arn.as_str(), &**meta))).collect();
    if leases.groups.keys().any(|arn| !consumers.contains_key(arn.as_str())) {
        Arc::make_mut(leases).groups.retain(|arn, _| consumers.contains_key(arn.as_str()));
    }
    let kept = |checkpoint: &Checkpoint| {
        consumers
            .get(checkpoint.consumer_arn.as_str())
            .is_some_and(|meta| meta.id == checkpoint.stream_id && meta.shard(checkpoint.shard).is_some())
    };
    if !checkpoints.values().all(|checkpoint| kept(checkpoint)) {
        Arc::make_mut(checkpoints).retain(|_, checkpoint| kept(checkpoint));
    }
}

/// One checkpoint as the metadata file keeps it.
pub fn checkpoint_json(checkpoint: &Checkpoint) -> Value {
    json!({
        "name": checkpoint.name,
        "consumer_arn": checkpoint.consumer_arn,
        "stream_id": checkpoint.stream_id,
        "shard": checkpoint.shard,
        "after": match checkpoint.position { Position::After(seq) => Some(seq), Position::End => None },
        "at_ms": checkpoint.at_ms,
    })
}

pub fn to_json(checkpoints: &Checkpoints) -> Value {
    Value::Array(checkpoints.values().map(|checkpoint| checkpoint_json(checkpoint)).collect())
}

/// Rebuilds checkpoints from `to_json`'s output, checking everything (it comes from disk).
pub fn from_json(value: &Value) -> Result<Checkpoints, String> {
    let mut checkpoints = Checkpoints::new();
    let Some(items) = value.as_array() else {
        return if value.is_null() { Ok(checkpoints) } else { Err("checkpoints is not a list".into()) };
    };
    for item in items {
        let number = |key: &str| item[key].as_u64().ok_or_else(|| format!("a checkpoint's {key} is not a number"));
        let consumer_arn = item["consumer_arn"].as_str().ok_or("a checkpoint has no consumer")?.to_owned();
        let shard = u32::try_from(number("shard")?).map_err(|_| "a checkpoint's shard is out of range")?;
        let position = match &item["after"] {
            Value::Null => Position::End,
            after => Position::After(after.as_u64().ok_or("a checkpoint's position is not a number")?),
        };
        let name = checkpoint_name(&consumer_arn, shard);
        if item["name"].as_str() != Some(name.as_str()) {
            return Err(format!("checkpoint {} is not named for its consumer and shard", item["name"]));
        }
        let checkpoint =
            Checkpoint { name: name.clone(), consumer_arn, stream_id: number("stream_id")?, shard, position, at_ms: number("at_ms")? };
        checkpoints.insert(name, Arc::new(checkpoint));
    }
    Ok(checkpoints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::streams::{apply as apply_stream, ApplyContext, StreamChange};

    const LEASE: u64 = 1_000;

    struct World {
        streams: Streams,
        naming: Naming,
        checkpoints: Arc<Checkpoints>,
        leases: Leases,
        arn: String,
    }

    fn world(shards: i32) -> World {
        let mut streams = Streams::new();
        let naming = Naming::default();
        let sealed = HashMap::new();
        let cx = ApplyContext { naming: &naming, cores: 1, now_ms: 0, sealed: &sealed };
        let create = StreamChange::Create { name: "s".into(), shard_count: Some(shards), mode: None, tags: vec![], max_record_kib: None };
        apply_stream(&mut streams, &mut 1, create, &cx).unwrap();
        apply_stream(&mut streams, &mut 1, StreamChange::RegisterConsumer { stream: "s".into(), name: "g".into() }, &cx).unwrap();
        let arn = streams["s"].consumers[0].arn.clone();
        let leases = Leases::new(LEASE, 0, &streams);
        World { streams, naming, checkpoints: Arc::default(), leases, arn }
    }

    impl World {
        fn run(&mut self, change: GroupChange, now_ms: u64) -> Result<GroupOutcome, OpError> {
            apply(&mut self.checkpoints, &mut self.leases, &self.streams, &self.naming, change, now_ms)
        }

        fn lease(&mut self, worker: &str, now_ms: u64) -> Vec<String> {
            let change = GroupChange::Lease { consumer_arn: self.arn.clone(), worker: worker.into(), max_leases: None };
            match self.run(change, now_ms).unwrap() {
                GroupOutcome::Leases(leases) => leases.leases.into_iter().map(|lease| lease.shard_id).collect(),
                GroupOutcome::Done => unreachable!(),
            }
        }
    }

    #[test]
    fn workers_share_shards_fairly_and_a_silent_one_loses_its_leases_after_the_lease_time() {
        let mut w = world(8);
        assert!(w.lease("a", 500).is_empty(), "nothing is granted in the first lease time after a start");
        assert_eq!(w.lease("a", 1_000).len(), 8);
        // b joins: it asks a for its share; a is no longer told of those shards, and b takes
        // them once a's leases on them have run out.
        assert!(w.lease("b", 1_100).is_empty());
        assert_eq!(w.lease("a", 1_200).len(), 4);
        assert!(w.lease("b", 1_900).is_empty(), "a's leases still run");
        assert_eq!(w.lease("b", 2_000).len(), 4);
        let mut now = 2_000;
        assert_eq!(w.lease("a", now).len(), 4);
        // c joins; then b goes silent: within a lease time its shards are a's and c's.
        w.lease("c", now);
        let silent_from = now;
        for _ in 0..30 {
            now += 300;
            w.lease("a", now);
            w.lease("c", now);
        }
        let (a, c) = (w.lease("a", now), w.lease("c", now));
        assert_eq!(a.len() + c.len(), 8, "{a:?} {c:?}");
        assert!(a.iter().all(|shard| !c.contains(shard)));
        assert!(now - silent_from < 30 * LEASE);
    }

    #[test]
    fn a_group_made_after_the_start_is_granted_leases_at_once() {
        let mut w = world(2);
        w.leases = Leases::new(LEASE, 0, &Streams::new());
        assert_eq!(w.lease("a", 10).len(), 2);
    }

    #[test]
    fn two_members_joining_in_the_grace_period_split_four_shards() {
        let mut w = world(4);
        assert!(w.lease("one", 100).is_empty());
        assert!(w.lease("two", 200).is_empty());
        let one = w.lease("one", 1_000);
        let two = w.lease("two", 1_100);
        assert_eq!((one.len(), two.len()), (2, 2), "{one:?} {two:?}");
        assert!(one.iter().all(|shard| !two.contains(shard)));
    }

    #[test]
    fn checkpoints_need_the_lease_go_forward_and_finish_parents_before_children() {
        let mut w = world(1);
        w.lease("a", 1_000);
        let seq = |w: &World, n: u64| w.streams["s"].sequence_number(0, n);
        let checkpoint = |w: &World, worker: &str, token: u64, sequence_number: String| GroupChange::Checkpoint {
            consumer_arn: w.arn.clone(),
            worker: worker.into(),
            shard_id: shard_id(0),
            token,
            sequence_number,
        };
        let token = match w.run(GroupChange::Describe { consumer_arn: w.arn.clone() }, 1_000).unwrap() {
            GroupOutcome::Leases(leases) => leases.leases[0].token,
            GroupOutcome::Done => unreachable!(),
        };
        w.run(checkpoint(&w, "a", token, seq(&w, 5)), 1_100).unwrap();
        let wrong = w.run(checkpoint(&w, "a", token + 1, seq(&w, 6)), 1_100);
        assert_eq!(wrong.err().map(|e| e.code), Some(ErrorCode::LeaseLost));
        let backwards = w.run(checkpoint(&w, "a", token, seq(&w, 4)), 1_100);
        assert_eq!(backwards.err().map(|e| e.code), Some(ErrorCode::InvalidArgument));
        let open_end = w.run(checkpoint(&w, "a", token, SHARD_END.into()), 1_100);
        assert_eq!(open_end.err().map(|e| e.code), Some(ErrorCode::InvalidArgument));
        let late = w.run(checkpoint(&w, "a", token, seq(&w, 7)), 2_100);
        assert_eq!(late.err().map(|e| e.code), Some(ErrorCode::LeaseLost));

        // Split the shard: its children wait for it to be finished.
        let sealed = HashMap::from([((1, 0), 9)]);
        let cx = ApplyContext { naming: &w.naming, cores: 1, now_ms: 3_000, sealed: &sealed };
        let split = StreamChange::Split { stream: "s".into(), shard: shard_id(0), new_starting_hash_key: "100".into() };
        apply_stream(&mut w.streams, &mut 1, split, &cx).unwrap();
        assert_eq!(w.lease("a", 3_000), vec![shard_id(0)]);
        let token = match w.run(GroupChange::Describe { consumer_arn: w.arn.clone() }, 3_000).unwrap() {
            GroupOutcome::Leases(leases) => leases.leases[0].token,
            GroupOutcome::Done => unreachable!(),
        };
        w.run(checkpoint(&w, "a", token, SHARD_END.into()), 3_100).unwrap();
        assert_eq!(w.lease("a", 3_200), vec![shard_id(1), shard_id(2)]);
        // They survive the metadata file.
        let back = from_json(&to_json(&w.checkpoints)).unwrap();
        assert_eq!(back, *w.checkpoints);
    }
}
