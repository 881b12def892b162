//! Target `raft-log`: a Raft group's log on the segment log (`storage::raft`), driven as
//! openraft drives it — entries appended in batches (acknowledged when the callback says
//! they are durable), truncations by a new leader's log (a higher term after them), purges
//! of what is acknowledged, votes that only rise, commit marks — with process crashes, power
//! losses and disk faults. After every start it checks that every acknowledged entry is there
//! unless an acknowledged truncation or purge took it, that no truncated entry came back, that
//! nothing purged is read, that the vote is the last one saved (or a later one not yet
//! acknowledged), and that what is read is what was written.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{EntryPayload, RaftLogReader};
use sluice_raft::testing::Group;

use super::Driver;
use crate::env::memory::Crash;
use crate::storage::log::{FsyncMode, LogOptions};
use crate::storage::raft::RaftLog;

/// What the run knows was acknowledged, and what it asked for since.
#[derive(Default)]
struct Model {
    /// Entries acknowledged durable, by index: their term.
    acked: BTreeMap<u64, u64>,
    /// Acknowledged truncations: (after this index, every entry there since has at least this term).
    truncations: Vec<(u64, u64)>,
    /// The highest purge acknowledged.
    purged: Option<u64>,
    /// The last vote acknowledged, and the highest asked for (by term).
    vote_acked: Option<u64>,
    vote_asked: Option<u64>,
    /// The highest commit mark saved.
    committed_max: Option<u64>,
}

/// An entry's value says what it was written as (term and index): one read elsewhere, or
/// damaged, shows.
fn value(term: u64, index: u64) -> u64 {
    term * 1_000_000 + index
}

fn log_id(term: u64, index: u64) -> LogIdOf<Group> {
    openraft::testing::log_id::<Group>(term, 1, index)
}

fn vote(term: u64) -> VoteOf<Group> {
    openraft::impls::Vote::new(term, 1)
}

/// The log as a run sees it: the log, the term entries are written at, and the next index.
struct Node {
    log: RaftLog<Group>,
    term: u64,
    next: u64,
}

pub fn run(driver: &mut Driver, steps: usize) -> Result<(), String> {
    let segment_bytes = driver.rng.u64(4..17) * 4096;
    let options = LogOptions { dir: PathBuf::from("/sim/raft"), segment_bytes, fsync: FsyncMode::Always, repair: false, spare_ahead: true };
    driver.note(format!("raft-log: segments of {segment_bytes} bytes"));
    let model = Rc::new(RefCell::new(Model::default()));
    let mut node = open(driver, &options, &model, 1)?;
    while driver.step < steps {
        driver.step += 1;
        let outcome = match driver.rng.u8(..100) {
            0..=39 => append(driver, &mut node, &model),
            40..=46 => truncate(driver, &mut node, &model),
            47..=52 => purge(driver, &node, &model),
            53..=57 => save_vote(driver, &node, &model),
            58..=62 => save_committed(driver, &node, &model),
            63..=74 => {
                let ms = driver.rng.u64(1..100);
                driver.advance(Duration::from_millis(ms));
                Ok(())
            }
            75..=79 => restart(driver, &mut node, &options, &model, None),
            80..=85 => restart(driver, &mut node, &options, &model, Some(Crash::Process)),
            86..=91 => restart(driver, &mut node, &options, &model, Some(Crash::Power)),
            92..=94 => {
                let faults = driver.shuffle_faults();
                driver.note(format!("disk faults: {faults:?}"));
                Ok(())
            }
            _ => {
                driver.run_ready();
                Ok(())
            }
        };
        if let Err(failed) = outcome {
            // The log refuses writes after a failed one: the process starts again.
            driver.note(format!("an operation failed ({failed}): the process exits"));
            restart(driver, &mut node, &options, &model, Some(Crash::Process))?;
        }
    }
    restart(driver, &mut node, &options, &model, None)?;
    restart(driver, &mut node, &options, &model, Some(Crash::Power))
}

fn append(driver: &mut Driver, node: &mut Node, model: &Rc<RefCell<Model>>) -> Result<(), String> {
    let count = driver.rng.u64(1..=8);
    let (term, first) = (node.term, node.next);
    let entries: Vec<EntryOf<Group>> = (first..first + count)
        .map(|index| openraft::Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(value(term, index)) })
        .collect();
    let (sender, receiver) = <openraft_rt_tokio::TokioOneshot as openraft_rt::Oneshot>::channel();
    let mut log = node.log.clone();
    let appended = driver.block_on(async move { log.append(entries, IOFlushed::signal(sender)).await })?;
    appended.map_err(|error| error.to_string())?;
    driver.note(format!("append {first}..={} at term {term}", first + count - 1));
    driver.report.appended += count;
    node.next = first + count;
    let model = model.clone();
    driver.spawn(async move {
        if let Ok(Ok(())) = receiver.await {
            let mut model = model.borrow_mut();
            let _ = model.acked.split_off(&first);
            model.acked.extend((first..first + count).map(|index| (index, term)));
        }
    });
    driver.run_ready();
    Ok(())
}

/// A new leader's log differs after some index: what follows goes, and entries come at a
/// higher term from there.
fn truncate(driver: &mut Driver, node: &mut Node, model: &Rc<RefCell<Model>>) -> Result<(), String> {
    let purged = model.borrow().purged.unwrap_or(0);
    let last = node.next.saturating_sub(1);
    if last <= purged {
        return Ok(());
    }
    let after = driver.rng.u64(purged..=last);
    let term = node.term + 1;
    driver.note(format!("truncate after {after}; term {term} from there"));
    // Whatever comes of it, what follows may be gone: a truncation that failed may still
    // have been written.
    let _ = model.borrow_mut().acked.split_off(&(after + 1));
    let mut log = node.log.clone();
    let truncated = driver.block_on(async move { log.truncate_after((after > 0).then(|| log_id(1, after))).await })?;
    truncated.map_err(|error| error.to_string())?;
    model.borrow_mut().truncations.push((after, term));
    node.term = term;
    node.next = after + 1;
    Ok(())
}

/// Purges up to an acknowledged entry (openraft purges only what is applied).
fn purge(driver: &mut Driver, node: &Node, model: &Rc<RefCell<Model>>) -> Result<(), String> {
    let (from, upto) = {
        let model = model.borrow();
        (model.purged.map_or(1, |purged| purged + 1), model.acked.keys().next_back().copied())
    };
    let Some(upto) = upto.filter(|upto| *upto >= from) else { return Ok(()) };
    let upto = driver.rng.u64(from..=upto);
    let term = model.borrow().acked.get(&upto).copied().unwrap_or(1);
    driver.note(format!("purge up to {upto}"));
    // Whatever comes of it, what it covers may be gone.
    {
        let mut model = model.borrow_mut();
        model.acked = model.acked.split_off(&(upto + 1));
    }
    let mut log = node.log.clone();
    let purged = driver.block_on(async move { log.purge(log_id(term, upto)).await })?;
    purged.map_err(|error| error.to_string())?;
    model.borrow_mut().purged = Some(upto);
    Ok(())
}

fn save_vote(driver: &mut Driver, node: &Node, model: &Rc<RefCell<Model>>) -> Result<(), String> {
    let term = model.borrow().vote_asked.unwrap_or(0) + driver.rng.u64(1..=3);
    model.borrow_mut().vote_asked = Some(term);
    driver.note(format!("vote at term {term}"));
    let mut log = node.log.clone();
    let saved = driver.block_on(async move { log.save_vote(&vote(term)).await })?;
    saved.map_err(|error| error.to_string())?;
    model.borrow_mut().vote_acked = Some(term);
    Ok(())
}

fn save_committed(driver: &mut Driver, node: &Node, model: &Rc<RefCell<Model>>) -> Result<(), String> {
    let Some((&index, &term)) = model.borrow().acked.iter().next_back() else { return Ok(()) };
    {
        let mut model = model.borrow_mut();
        model.committed_max = model.committed_max.max(Some(index));
    }
    driver.note(format!("commit mark {index}"));
    let mut log = node.log.clone();
    let saved = driver.block_on(async move { log.save_committed(Some(log_id(term, index))).await })?;
    saved.map_err(|error| error.to_string())
}

fn restart(
    driver: &mut Driver,
    node: &mut Node,
    options: &LogOptions,
    model: &Rc<RefCell<Model>>,
    crash: Option<Crash>,
) -> Result<(), String> {
    let crash = match crash {
        Some(crash) => crash,
        None => {
            let log = node.log.clone();
            match driver.block_on(async move { log.close().await })? {
                Ok(()) => Crash::Process,
                Err(error) => {
                    driver.note(format!("close failed ({error}): the process exits"));
                    Crash::Process
                }
            }
        }
    };
    driver.note(format!("restart after {crash:?}"));
    driver.crash(crash);
    *node = open(driver, options, model, node.term)?;
    Ok(())
}

/// Opens the log and checks what it holds against the model; the run goes on from there.
fn open(driver: &mut Driver, options: &LogOptions, model: &Rc<RefCell<Model>>, term: u64) -> Result<Node, String> {
    let faults = super::harness::calm(driver);
    let env = driver.env();
    let opening = options.clone();
    let opened = driver.block_on(async move {
        let mut log = RaftLog::<Group>::open(env, opening).await?;
        let state = log.get_log_state().await?;
        let entries = log.try_get_log_entries(..).await?;
        let vote = log.read_vote().await?;
        let committed = log.read_committed().await?;
        Ok::<_, std::io::Error>((log, state, entries, vote, committed))
    })?;
    let describe = |driver: &Driver| super::describe_dir(&driver.world, &options.dir);
    let (log, state, entries, vote, committed) =
        opened.map_err(|error| format!("the Raft log does not open: {error}\n  disk:{}", describe(driver)))?;
    let purged = state.last_purged_log_id.map(|id| id.index);
    let last = state.last_log_id.map_or(0, |id| id.index);
    driver.note(format!("opened: {} entries, purged up to {purged:?}, last {last}, vote {vote:?}", entries.len()));
    let check = || -> Result<(), String> {
        let model = model.borrow();
        let mut expected_index = purged.map_or(1, |purged| purged + 1);
        let mut previous_term = 0;
        for entry in &entries {
            let (term, index) = (entry.log_id.leader_id.term, entry.log_id.index);
            if index != expected_index {
                return Err(format!("entry {index} follows entry {}: a hole", expected_index.saturating_sub(1)));
            }
            match entry.payload {
                EntryPayload::Normal(found) if found == value(term, index) => {}
                ref other => return Err(format!("entry {index} at term {term} holds {other:?}, not what was written")),
            }
            if term < previous_term {
                return Err(format!("entry {index} is at term {term}, below the entry before it ({previous_term})"));
            }
            if let Some((after, since)) = model.truncations.iter().find(|(after, since)| index > *after && term < *since) {
                return Err(format!("entry {index} at term {term} came back after the truncation after {after} (term {since} since)"));
            }
            expected_index += 1;
            previous_term = term;
        }
        if expected_index.saturating_sub(1) != last {
            return Err(format!("the log says its last entry is {last}, but {} was read last", expected_index.saturating_sub(1)));
        }
        for (index, term) in &model.acked {
            let found = entries.iter().find(|entry| entry.log_id.index == *index).map(|entry| entry.log_id.leader_id.term);
            if found != Some(*term) {
                return Err(format!("acknowledged entry {index} at term {term} is {found:?} after the start"));
            }
        }
        if purged < model.purged {
            return Err(format!("purged up to {purged:?}, but a purge up to {:?} was acknowledged", model.purged));
        }
        let vote_term = vote.map(|vote| vote.leader_id.term);
        if vote_term < model.vote_acked || vote_term > model.vote_asked {
            return Err(format!(
                "the vote is at term {vote_term:?}: acknowledged {:?}, asked up to {:?}",
                model.vote_acked, model.vote_asked
            ));
        }
        if committed.map(|id| id.index) > model.committed_max {
            return Err(format!("the commit mark {committed:?} was never saved (highest {:?})", model.committed_max));
        }
        Ok(())
    };
    check().map_err(|error| format!("{error}\n  disk:{}", describe(driver)))?;
    // What is there now is the run's truth: entries not acknowledged that survived count as
    // written (and must stay), the vote as saved.
    {
        let mut model = model.borrow_mut();
        model.acked = entries.iter().map(|entry| (entry.log_id.index, entry.log_id.leader_id.term)).collect();
        model.purged = purged;
        model.vote_acked = vote.map(|vote| vote.leader_id.term);
        model.vote_asked = model.vote_asked.max(model.vote_acked);
    }
    driver.world.fs().set_faults(faults);
    let term = term.max(entries.last().map_or(0, |entry| entry.log_id.leader_id.term));
    Ok(Node { log, term, next: last + 1 })
}
