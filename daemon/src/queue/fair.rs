//! Fair queues (SQS, 2025): a standard queue whose messages carry a `MessageGroupId` keeps one
//! noisy tenant from raising the other tenants' dwell time. A mode of the standard partition,
//! switched on by the first grouped message it stores; nothing to configure, as in SQS.
//!
//! **Tenants.** A tenant is a message group; a message without a group is a tenant of its own,
//! which is never noisy. A tenant is *noisy* while it has at least `NOISY_INFLIGHT_MIN`
//! messages in flight in this partition and more than a tenth of all the partition's messages
//! in flight (SQS's concurrency share; its thresholds, which SQS too calls approximate).
//!
//! **Receiving.** A receive passes over a noisy tenant's visible messages while other visible
//! messages wait: it moves them from the partition's `visible` line to the tenant's own
//! `line`, so each message is passed over once, however many receives follow. Only when no
//! other visible message is left does a receive take from the lines, the noisy tenant with the
//! fewest messages in flight first. A tenant that is no longer noisy gets its line back at the
//! front of `visible` (its messages are older than what is behind them) when the next receive
//! starts. One receive passes over at most `PASS_OVER_MAX` messages, which bounds its work
//! behind a long backlog (it then hands out what is first, noisy or not; the next receive goes
//! on from there).
//!
//! **Bookkeeping.** The slot of a grouped message keeps its group (`FifoSlot`, with no
//! deduplication key), also while its payload is only in the log. `tenants` counts, per group
//! with messages here, how many are live and how many in flight; the group's name is shared
//! by its messages. Each core judges from its own partition of the queue (a receive drains its
//! own core's first). Not done: SQS's second measure, a tenant's share of recent processing
//! time (a tenant with few messages each held long); such a tenant is caught once it holds 30
//! in flight.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::fifo::FifoSlot;
use super::partition::{Partition, Payload};

/// A tenant with fewer messages than this in flight is never noisy.
pub const NOISY_INFLIGHT_MIN: u32 = 30;

/// The most messages one receive passes over.
pub const PASS_OVER_MAX: usize = 4096;

#[derive(Debug, Default)]
struct Tenant {
    /// Its messages in this partition, in any state.
    live: u32,
    inflight: u32,
    /// Its visible messages a receive passed over, oldest first (entries of messages gone
    /// since are skipped when reached).
    line: VecDeque<u64>,
    /// Whether it is on `Fair::passed_over`.
    listed: bool,
}

#[derive(Debug, Default)]
pub struct Fair {
    tenants: HashMap<Arc<str>, Tenant>,
    /// Tenants with a line, each once, in the order they got it.
    passed_over: Vec<Arc<str>>,
}

impl Fair {
    /// Whether a tenant with `inflight` messages in flight, of the partition's `total`, is noisy.
    fn noisy(inflight: u32, total: u64) -> bool {
        inflight >= NOISY_INFLIGHT_MIN && u64::from(inflight) * 10 > total
    }
}

impl Partition {
    /// The group of a grouped message entering this standard partition (`push_slot`,
    /// `restore`), counted as live; makes the partition fair.
    pub(super) fn fair_entered(&mut self, payload: &Payload) -> Option<Box<FifoSlot>> {
        let group = payload.message_group_id.as_deref()?;
        let fair = self.fair.get_or_insert_with(Box::default);
        let group = match fair.tenants.get_key_value(group) {
            Some((name, _)) => name.clone(),
            None => Arc::from(group),
        };
        fair.tenants.entry(group.clone()).or_default().live += 1;
        Some(Box::new(FifoSlot { group, dedup_key: 0 }))
    }

    /// A grouped message left the partition (in flight or not).
    pub(super) fn fair_left(&mut self, slot: &FifoSlot, inflight: bool) {
        let Some(fair) = self.fair.as_mut() else { return };
        let Some(tenant) = fair.tenants.get_mut(&slot.group) else { return };
        tenant.live = tenant.live.saturating_sub(1);
        if inflight {
            tenant.inflight = tenant.inflight.saturating_sub(1);
        }
        if tenant.live == 0 {
            // Whatever its line still names is gone.
            fair.tenants.remove(&slot.group);
        }
    }

    /// Message `seq` went in flight (`started`) or came out of flight without leaving.
    pub(super) fn fair_inflight(&mut self, seq: u64, started: bool) {
        if self.fair.is_none() {
            return;
        }
        let Some(group) = self.slot_fifo(seq).map(|f| f.group.clone()) else { return };
        let Some(tenant) = self.fair.as_mut().and_then(|fair| fair.tenants.get_mut(&group)) else { return };
        if started {
            tenant.inflight += 1;
        } else {
            tenant.inflight = tenant.inflight.saturating_sub(1);
        }
    }

    /// Puts visible message `seq` of `group` in its tenant's line if the tenant is noisy;
    /// returns whether it did.
    pub(super) fn fair_pass_over(&mut self, group: &Arc<str>, seq: u64) -> bool {
        let total = self.counts.inflight;
        let Some(fair) = self.fair.as_mut() else { return false };
        let Some(tenant) = fair.tenants.get_mut(group) else { return false };
        if !Fair::noisy(tenant.inflight, total) {
            return false;
        }
        tenant.line.push_back(seq);
        if !tenant.listed {
            tenant.listed = true;
            fair.passed_over.push(group.clone());
        }
        true
    }

    /// Gives the tenants that are no longer noisy their lines back, at the front of `visible`.
    pub(super) fn fair_requeue_quiet(&mut self) {
        let total = self.counts.inflight;
        let Some(fair) = self.fair.as_mut() else { return };
        let Fair { tenants, passed_over } = &mut **fair;
        passed_over.retain(|group| {
            let Some(tenant) = tenants.get_mut(group) else { return false };
            if !tenant.line.is_empty() && Fair::noisy(tenant.inflight, total) {
                return true;
            }
            for seq in tenant.line.drain(..).rev() {
                self.visible.push_front(seq);
            }
            tenant.listed = false;
            false
        });
    }

    /// The line to take from once `visible` is empty: the noisy tenant's with the fewest
    /// messages in flight.
    fn fair_line(&self) -> Option<(&Arc<str>, &VecDeque<u64>)> {
        let fair = self.fair.as_deref()?;
        let mut best: Option<(&Arc<str>, &Tenant)> = None;
        for group in &fair.passed_over {
            let Some(tenant) = fair.tenants.get(group).filter(|tenant| !tenant.line.is_empty()) else { continue };
            if best.is_none_or(|(_, other)| tenant.inflight < other.inflight) {
                best = Some((group, tenant));
            }
        }
        best.map(|(group, tenant)| (group, &tenant.line))
    }

    /// Takes the next message from the line `fair_line` names, with its group.
    pub(super) fn fair_take(&mut self) -> Option<(u64, Arc<str>)> {
        let group = self.fair_line()?.0.clone();
        let tenant = self.fair.as_mut()?.tenants.get_mut(&group)?;
        let seq = tenant.line.pop_front()?;
        Some((seq, group))
    }

    /// Puts message `seq` back at the front of `group`'s line (its payload must be read first).
    pub(super) fn fair_untake(&mut self, group: &Arc<str>, seq: u64) {
        match self.fair.as_mut().and_then(|fair| fair.tenants.get_mut(group)) {
            Some(tenant) => tenant.line.push_front(seq),
            None => self.visible.push_front(seq),
        }
    }

    /// The messages a receive would take from the lines, in order (for reading payloads
    /// back from the log ahead of need).
    pub(super) fn fair_line_ahead(&self) -> impl Iterator<Item = &u64> + '_ {
        self.fair_line().into_iter().flat_map(|(_, line)| line.iter())
    }

    /// Forgets every tenant (the partition was emptied).
    pub(super) fn fair_clear(&mut self) {
        if let Some(fair) = self.fair.as_mut() {
            fair.tenants.clear();
            fair.passed_over.clear();
        }
    }

    /// Messages passed over and waiting in lines (tests).
    pub fn fair_passed_over(&self) -> usize {
        self.fair.as_deref().map_or(0, |fair| fair.tenants.values().map(|tenant| tenant.line.len()).sum())
    }
}
