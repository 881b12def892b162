//! A Raft group's log on a segment log: openraft's `RaftLogStorage` over `storage::Log`
//! (issue 26: the Sluice segment log is the Raft log store). Every change is a record —
//! an entry, the vote, the commit mark, a truncation, a purge — so the group's durable state
//! is the log itself, group-committed and checked as every other log; opening replays it.
//!
//! Memory holds where each entry is (its location and size), not the entries: a reader reads
//! them back (`Log::read_many`, close records in one I/O). Purging removes the segments that
//! hold only purged entries, after the vote, the commit mark and the purge point are written
//! again at the log's end, so no segment removal ever takes the group's state with it.
//!
//! Records hold openraft's types as JSON (`serde`); the entries' payloads are the group's own.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::rc::Rc;

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, RaftTypeConfig};

use super::log::{Location, Log, LogOptions, StorageError};
use super::record::{kind, record_bytes};
use crate::env::Env;

/// Where an entry is in the log.
#[derive(Debug, Clone, Copy)]
struct Placed {
    location: Location,
    bytes: usize,
}

/// The group's state as replayed and kept up to date.
struct State<C: RaftTypeConfig> {
    entries: BTreeMap<u64, (LogIdOf<C>, Placed)>,
    vote: Option<VoteOf<C>>,
    committed: Option<LogIdOf<C>>,
    purged: Option<LogIdOf<C>>,
    /// Sequence numbers of the records that last wrote the vote, the commit mark and the
    /// purge point (segments from the first of them on hold the state).
    written: [Option<u64>; 3],
}

const VOTE: usize = 0;
const COMMITTED: usize = 1;
const PURGED: usize = 2;

impl<C: RaftTypeConfig> State<C> {
    /// The first record of the state as last written (`u64::MAX`: none yet).
    fn state_from(&self) -> u64 {
        self.written.iter().flatten().copied().min().unwrap_or(u64::MAX)
    }
}

/// A Raft group's log (clones share it).
pub struct RaftLog<C: RaftTypeConfig> {
    env: Env,
    log: Rc<Log>,
    state: Rc<RefCell<State<C>>>,
}

impl<C: RaftTypeConfig> Clone for RaftLog<C> {
    fn clone(&self) -> Self {
        RaftLog { env: self.env.clone(), log: self.log.clone(), state: self.state.clone() }
    }
}

fn invalid(what: &str, error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("a Raft log's {what} record cannot be read: {error}"))
}

fn storage(error: StorageError) -> io::Error {
    io::Error::other(error)
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // openraft's types and the group's payloads are plain data: JSON of them cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl<C: RaftTypeConfig> RaftLog<C>
where
    EntryOf<C>: serde::Serialize + serde::de::DeserializeOwned,
    VoteOf<C>: serde::Serialize + serde::de::DeserializeOwned,
    LogIdOf<C>: serde::Serialize + serde::de::DeserializeOwned,
{
    /// Opens (or creates) the group's log in `options.dir`, replaying it.
    pub async fn open(env: Env, options: LogOptions) -> io::Result<RaftLog<C>> {
        let mut state = State { entries: BTreeMap::new(), vote: None, committed: None, purged: None, written: [None; 3] };
        let mut failure = None;
        let (log, _recovery) = Log::open_located_in(env.clone(), options, |location, record_kind, payload| {
            if failure.is_some() {
                return;
            }
            if let Err(error) = replay(&mut state, location, record_kind, payload) {
                failure = Some(error);
            }
        })
        .await
        .map_err(storage)?;
        if let Some(error) = failure {
            return Err(error);
        }
        Ok(RaftLog { env, log, state: Rc::new(RefCell::new(state)) })
    }

    /// Appends one record and waits until it is durable.
    async fn write(&self, record_kind: u8, payload: &[u8]) -> io::Result<u64> {
        let seq = self.log.append(record_kind, payload).map_err(storage)?;
        self.log.durable(seq).await.map_err(storage)?;
        Ok(seq)
    }

    /// Writes the vote, the commit mark and the purge point again at the log's end (and waits
    /// until they are durable): what comes before can then go.
    async fn rewrite_state(&self) -> io::Result<()> {
        let records = {
            let state = self.state.borrow();
            [
                (VOTE, kind::RAFT_VOTE, state.vote.as_ref().map(encode)),
                (COMMITTED, kind::RAFT_COMMITTED, Some(encode(&state.committed))),
                (PURGED, kind::RAFT_PURGED, state.purged.as_ref().map(encode)),
            ]
        };
        let mut last = None;
        for (slot, record_kind, payload) in records {
            if let Some(payload) = payload {
                let seq = self.log.append(record_kind, &payload).map_err(storage)?;
                self.state.borrow_mut().written[slot] = Some(seq);
                last = Some(seq);
            }
        }
        if let Some(seq) = last {
            self.log.durable(seq).await.map_err(storage)?;
        }
        Ok(())
    }

    /// Closes the log (everything appended is written and synced first).
    pub async fn close(&self) -> io::Result<()> {
        self.log.close().await.map_err(storage)
    }
}

fn replay<C: RaftTypeConfig>(state: &mut State<C>, location: Location, record_kind: u8, payload: &[u8]) -> io::Result<()>
where
    EntryOf<C>: serde::de::DeserializeOwned,
    VoteOf<C>: serde::de::DeserializeOwned,
    LogIdOf<C>: serde::de::DeserializeOwned,
{
    match record_kind {
        kind::RAFT_ENTRY => {
            let entry: EntryOf<C> = serde_json::from_slice(payload).map_err(|e| invalid("entry", e))?;
            let log_id = entry.log_id();
            // A later entry at an index replaces what was there (and everything after it).
            let _ = state.entries.split_off(&log_id.index);
            state.entries.insert(log_id.index, (log_id, Placed { location, bytes: record_bytes(payload.len()) }));
        }
        kind::RAFT_VOTE => {
            state.vote = Some(serde_json::from_slice(payload).map_err(|e| invalid("vote", e))?);
            state.written[VOTE] = Some(location.seq);
        }
        kind::RAFT_COMMITTED => {
            state.committed = serde_json::from_slice(payload).map_err(|e| invalid("commit mark", e))?;
            state.written[COMMITTED] = Some(location.seq);
        }
        kind::RAFT_TRUNCATED => {
            let after: Option<LogIdOf<C>> = serde_json::from_slice(payload).map_err(|e| invalid("truncation", e))?;
            let _ = state.entries.split_off(&after.map_or(0, |id| id.index + 1));
        }
        kind::RAFT_PURGED => {
            let upto: LogIdOf<C> = serde_json::from_slice(payload).map_err(|e| invalid("purge", e))?;
            state.entries = state.entries.split_off(&(upto.index + 1));
            state.purged = Some(upto);
            state.written[PURGED] = Some(location.seq);
        }
        other => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a Raft log holds a record of kind {other}"))),
    }
    Ok(())
}

impl<C: RaftTypeConfig> RaftLogReader<C> for RaftLog<C>
where
    EntryOf<C>: serde::Serialize + serde::de::DeserializeOwned,
    VoteOf<C>: serde::Serialize + serde::de::DeserializeOwned,
    LogIdOf<C>: serde::Serialize + serde::de::DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug>(&mut self, range: RB) -> Result<Vec<EntryOf<C>>, io::Error> {
        let wanted: Vec<(Location, usize)> =
            self.state.borrow().entries.range(range).map(|(_, (_, placed))| (placed.location, placed.bytes)).collect();
        let mut entries: Vec<Option<io::Result<EntryOf<C>>>> = (0..wanted.len()).map(|_| None).collect();
        self.log
            .read_many(&wanted, |at, record| {
                entries[at] = Some(match record {
                    Ok((kind::RAFT_ENTRY, payload)) => serde_json::from_slice(payload).map_err(|e| invalid("entry", e)),
                    Ok((other, _)) => {
                        Err(io::Error::new(io::ErrorKind::InvalidData, format!("a Raft entry's place holds a record of kind {other}")))
                    }
                    Err(error) => Err(storage(error.clone())),
                })
            })
            .await;
        entries.into_iter().map(|entry| entry.unwrap_or_else(|| Err(io::Error::other("an entry was not read")))).collect()
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.state.borrow().vote.clone())
    }
}

impl<C: RaftTypeConfig> RaftLogStorage<C> for RaftLog<C>
where
    EntryOf<C>: serde::Serialize + serde::de::DeserializeOwned,
    VoteOf<C>: serde::Serialize + serde::de::DeserializeOwned,
    LogIdOf<C>: serde::Serialize + serde::de::DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let state = self.state.borrow();
        let last = state.entries.values().next_back().map(|(id, _)| id.clone()).or_else(|| state.purged.clone());
        Ok(LogState { last_purged_log_id: state.purged.clone(), last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let seq = self.write(kind::RAFT_VOTE, &encode(vote)).await?;
        let mut state = self.state.borrow_mut();
        state.vote = Some(vote.clone());
        state.written[VOTE] = Some(seq);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        // Not waited for: a commit mark lost in a crash is learnt again from the leader.
        let seq = self.log.append(kind::RAFT_COMMITTED, &encode(&committed)).map_err(storage)?;
        let mut state = self.state.borrow_mut();
        state.committed = committed;
        state.written[COMMITTED] = Some(seq);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.state.borrow().committed.clone())
    }

    /// Stages the entries (one record each, no I/O here) and reports them flushed once the
    /// group commit that writes them is durable.
    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>>,
    {
        let mut last = None;
        {
            let mut state = self.state.borrow_mut();
            for entry in entries {
                let log_id = entry.log_id();
                let payload = encode(&entry);
                let location = self.log.append_located(kind::RAFT_ENTRY, &payload).map_err(storage)?;
                let _ = state.entries.split_off(&log_id.index);
                state.entries.insert(log_id.index, (log_id, Placed { location, bytes: record_bytes(payload.len()) }));
                last = Some(location.seq);
            }
        }
        match last {
            None => callback.io_completed(Ok(())),
            Some(seq) => {
                let log = self.log.clone();
                self.env.spawn(async move { callback.io_completed(log.durable(seq).await.map_err(storage)) });
            }
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.write(kind::RAFT_TRUNCATED, &encode(&last)).await?;
        let _ = self.state.borrow_mut().entries.split_off(&last.map_or(0, |id| id.index + 1));
        Ok(())
    }

    async fn purge(&mut self, upto: LogIdOf<C>) -> Result<(), io::Error> {
        let seq = self.write(kind::RAFT_PURGED, &encode(&upto)).await?;
        {
            let mut state = self.state.borrow_mut();
            state.entries = state.entries.split_off(&(upto.index + 1));
            state.purged = Some(upto);
            state.written[PURGED] = Some(seq);
        }
        // Segments before the first entry kept can go, once the state's records are past them
        // (written again at the end when they are not).
        let first_entry = self.state.borrow().entries.values().next().map(|(_, placed)| placed.location.seq);
        let keep_from = first_entry.unwrap_or(seq);
        if self.state.borrow().state_from() < keep_from {
            self.rewrite_state().await?;
        }
        let keep_from = keep_from.min(self.state.borrow().state_from());
        self.log.remove_segments_before(keep_from).await.map_err(storage)?;
        Ok(())
    }
}
