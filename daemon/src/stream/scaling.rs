//! ON_DEMAND streams scale their shards with the write load, on shard 0, once every
//! `--on-demand-evaluation-seconds`:
//!
//! - each owning core gives what every open shard of an ON_DEMAND stream took since the last
//!   evaluation (`ShardLog` counts appends; a shard whose log is closed took nothing), and a
//!   shard's use is the larger of its bytes and its records per second against a shard's
//!   write capacity (1 MiB/s, 1,000 records/s);
//! - a shard that used at least half its capacity over the period is split at the middle of
//!   its hash-key range (every such shard, while the stream stays within
//!   `ON_DEMAND_SHARDS_MAX` open shards): the load it had is spread over two, each with room
//!   to double;
//! - when nothing was split, two adjacent open shards that each used under a tenth of their
//!   capacity for `QUIET_PERIODS` periods in a row are merged, one pair per evaluation, while
//!   the stream keeps more than its `ON_DEMAND_SHARDS` (4) open shards. A shard made during a
//!   period is not judged quiet until it has been measured for a whole one, so a merge never
//!   follows straight on a split.
//!
//! Steps go through the catalog like any reshard (`StreamChange::Scale`): the closing shards
//! are sealed first, and their readers see the children as after a SplitShard or MergeShards.

use std::collections::HashMap;
use std::rc::Rc;

use sluice_protocol::limits::{ON_DEMAND_SHARDS, SHARD_WRITE_BYTES_PER_S, SHARD_WRITE_RECORDS_PER_S};

use super::calls::StreamLoad;
use super::store::Load;
use super::{call_on, StreamHost};
use crate::catalog::streams::{Mode, ScaleStep, StreamChange, StreamMeta};

/// The most open shards an ON_DEMAND stream scales to (200 MiB/s of writes, Kinesis's default).
pub const ON_DEMAND_SHARDS_MAX: usize = 200;
/// A shard using at least this share of its capacity over a period is split (1/2).
const SPLIT_AT: (u64, u64) = (1, 2);
/// A shard using less than this share of its capacity over a period is quiet (1/10).
const QUIET_UNDER: (u64, u64) = (1, 10);
/// Quiet periods in a row before two neighbours are merged.
pub const QUIET_PERIODS: u32 = 3;

/// What the scaler remembers between evaluations.
#[derive(Debug)]
pub struct Scaler {
    /// A shard's write capacity per second (Kinesis's; the simulator's is smaller, so that
    /// its few records make shards split and merge).
    capacity: Load,
    /// When the last evaluation ran (ms); none yet: the first only starts the counts.
    last_ms: Option<u64>,
    /// Quiet periods in a row, by (stream id, shard).
    quiet: HashMap<(u64, u32), u32>,
}

impl Default for Scaler {
    fn default() -> Scaler {
        Scaler::with_capacity(Load { records: SHARD_WRITE_RECORDS_PER_S, bytes: SHARD_WRITE_BYTES_PER_S })
    }
}

impl Scaler {
    /// A scaler that takes a shard's write capacity per second to be `capacity`.
    pub fn with_capacity(capacity: Load) -> Scaler {
        Scaler { capacity, last_ms: None, quiet: HashMap::new() }
    }

    /// Whether `load` over `elapsed_ms` used at least `share` of a shard's write capacity.
    fn uses(&self, load: Load, elapsed_ms: u64, share: (u64, u64)) -> bool {
        let (num, den) = share;
        // count/s ≥ capacity·num/den, in integers: count·1000·den ≥ capacity·num·elapsed.
        let over = |count: u64, capacity: u64| count.saturating_mul(1000 * den) >= capacity.saturating_mul(num).saturating_mul(elapsed_ms);
        over(load.bytes, self.capacity.bytes) || over(load.records, self.capacity.records)
    }

    /// The steps `meta` takes given each open shard's load over the `elapsed_ms` since the
    /// evaluation at `since_ms`; updates the quiet counts.
    pub fn plan(&mut self, meta: &StreamMeta, loads: &HashMap<u32, Load>, since_ms: u64, elapsed_ms: u64) -> Vec<ScaleStep> {
        let elapsed_ms = elapsed_ms.max(1);
        let open: Vec<_> = meta.open_shards().collect();
        let load_of = |index: u32| loads.get(&index).copied().unwrap_or_default();
        let mut room = ON_DEMAND_SHARDS_MAX.saturating_sub(open.len());
        let mut steps = Vec::new();
        for shard in &open {
            if room > 0 && self.uses(load_of(shard.index), elapsed_ms, SPLIT_AT) && shard.end > shard.start {
                steps.push(ScaleStep::Split(shard.index));
                room -= 1;
            }
        }
        for shard in &open {
            let key = (meta.id, shard.index);
            let measured = shard.created_ms <= since_ms;
            if measured && !self.uses(load_of(shard.index), elapsed_ms, QUIET_UNDER) {
                *self.quiet.entry(key).or_default() += 1;
            } else {
                self.quiet.remove(&key);
            }
        }
        if !steps.is_empty() || open.len() <= ON_DEMAND_SHARDS as usize {
            return steps;
        }
        let quiet = |index: u32| self.quiet.get(&(meta.id, index)).is_some_and(|periods| *periods >= QUIET_PERIODS);
        // `open_shards` is in hash-key order: neighbours are adjacent there.
        if let Some(pair) = open.windows(2).find(|pair| quiet(pair[0].index) && quiet(pair[1].index)) {
            steps.push(ScaleStep::Merge(pair[0].index, pair[1].index));
        }
        steps
    }

    /// Forgets the shards of streams that are gone or closed.
    fn forget_closed(&mut self, streams: &[&StreamMeta]) {
        self.quiet.retain(|(id, index), _| streams.iter().any(|meta| meta.id == *id && meta.shard(*index).is_some_and(|s| s.is_open())));
    }
}

/// Shard 0: one evaluation of every ON_DEMAND stream (see the module's comment).
pub async fn evaluate<H: StreamHost>(host: &Rc<H>, scaler: &mut Scaler) {
    let snapshot = host.snapshot();
    let now = host.env().now_ms();
    let streams: Vec<&StreamMeta> = snapshot.streams.values().map(|meta| &**meta).filter(|meta| meta.mode == Mode::OnDemand).collect();
    // Every open shard of them, by owning core.
    let mut asked: HashMap<usize, Vec<(u64, u32)>> = HashMap::new();
    for meta in &streams {
        for shard in meta.open_shards() {
            asked.entry(shard.owner(host.count())).or_default().push((meta.id, shard.index));
        }
    }
    let mut loads: HashMap<(u64, u32), Load> = HashMap::new();
    for (owner, shards) in asked {
        match call_on(host, owner, StreamLoad(shards.clone())).await {
            Ok(taken) => loads.extend(shards.into_iter().zip(taken)),
            Err(error) => tracing::warn!(core = owner, %error, "cannot learn stream shard loads; scaling waits"),
        }
    }
    scaler.forget_closed(&streams);
    let Some(since) = scaler.last_ms.replace(now) else { return };
    for meta in streams {
        let mine: HashMap<u32, Load> =
            loads.iter().filter(|((id, _), _)| *id == meta.id).map(|((_, index), load)| (*index, *load)).collect();
        for step in scaler.plan(meta, &mine, since, now.saturating_sub(since)) {
            let change = StreamChange::Scale { stream_id: meta.id, step };
            match super::service::stream_change(host, change).await {
                Ok(_) => tracing::info!(stream = %meta.name, ?step, "ON_DEMAND stream scaled"),
                Err(error) => tracing::warn!(stream = %meta.name, ?step, %error, "ON_DEMAND scaling step refused"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::streams::{apply, ApplyContext, Streams};
    use crate::catalog::Naming;

    fn stream(shards: i32, now_ms: u64) -> StreamMeta {
        let mut streams = Streams::new();
        let naming = Naming::default();
        let sealed = HashMap::new();
        let cx = ApplyContext { naming: &naming, cores: 2, now_ms, sealed: &sealed };
        let change = StreamChange::Create {
            name: "s".into(),
            shard_count: Some(shards),
            mode: Some("ON_DEMAND".into()),
            tags: vec![],
            max_record_kib: None,
        };
        apply(&mut streams, &mut 1, change, &cx).expect("created");
        StreamMeta::clone(&streams["s"])
    }

    fn loads(pairs: &[(u32, u64)]) -> HashMap<u32, Load> {
        pairs.iter().map(|(index, bytes)| (*index, Load { records: 1, bytes: *bytes })).collect()
    }

    #[test]
    fn a_shard_at_half_its_capacity_splits() {
        let meta = stream(4, 0);
        let mut scaler = Scaler::default();
        // 10 s: 5 MiB is half of 1 MiB/s; a record short of it is not.
        let steps = scaler.plan(&meta, &loads(&[(0, 5 << 20), (1, (5 << 20) - 1)]), 0, 10_000);
        assert_eq!(steps, vec![ScaleStep::Split(0)]);
        // Records count too: 5,000 small records in 10 s is half of 1,000 a second.
        let busy = HashMap::from([(2, Load { records: 5_000, bytes: 5_000 })]);
        assert_eq!(scaler.plan(&meta, &busy, 0, 10_000), vec![ScaleStep::Split(2)]);
    }

    #[test]
    fn quiet_neighbours_merge_only_above_the_floor_and_after_three_periods() {
        let mut scaler = Scaler::default();
        let four = stream(4, 0);
        for _ in 0..5 {
            assert_eq!(scaler.plan(&four, &HashMap::new(), 0, 10_000), vec![], "four shards are the floor");
        }
        let six = stream(6, 0);
        let mut scaler = Scaler::default();
        // Shard 1 is busy enough not to be quiet; 2 and 3 are the first quiet neighbours.
        let load = loads(&[(0, 0), (1, 2 << 20)]);
        assert_eq!(scaler.plan(&six, &load, 0, 10_000), vec![]);
        assert_eq!(scaler.plan(&six, &load, 0, 10_000), vec![]);
        assert_eq!(scaler.plan(&six, &load, 0, 10_000), vec![ScaleStep::Merge(2, 3)]);
        // A shard made after the period began is not judged yet.
        let young = stream(6, 5_000);
        let mut scaler = Scaler::default();
        for _ in 0..4 {
            assert_eq!(scaler.plan(&young, &HashMap::new(), 0, 10_000), vec![]);
        }
    }
}
