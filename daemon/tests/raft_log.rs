//! A Raft group's log on the segment log (`storage::raft`), on real files through glommio:
//! what openraft writes — entries, votes, commit marks, truncations, purges — is all there
//! after every reopen, with and without writes between, and after a stop without closing
//! (what a kill leaves); purging removes whole segments and never the group's state.

use std::path::Path;

use openraft::alias::{EntryOf, VoteOf};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{EntryPayload, RaftLogReader};
use sluice_daemon::env::Env;
use sluice_daemon::storage::raft::RaftLog;

mod common;
use common::{options, run};

use sluice_raft::testing::Group;

const SEGMENT: u64 = 64 * 1024;

fn entry(term: u64, index: u64) -> EntryOf<Group> {
    openraft::Entry { log_id: openraft::testing::log_id::<Group>(term, 1, index), payload: EntryPayload::Normal(index * 10 + term) }
}

async fn open(dir: &Path) -> RaftLog<Group> {
    RaftLog::open(Env::Glommio, options(dir, SEGMENT)).await.expect("the Raft log opens")
}

/// (term, payload) of every entry in `range`, as read back.
async fn read(log: &mut RaftLog<Group>, range: std::ops::RangeInclusive<u64>) -> Vec<(u64, u64, u64)> {
    let entries = log.try_get_log_entries(range).await.expect("entries read back");
    entries
        .into_iter()
        .map(|entry| match entry.payload {
            EntryPayload::Normal(value) => (entry.log_id.leader_id.term, entry.log_id.index, value),
            other => panic!("an entry that was not written: {other:?}"),
        })
        .collect()
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("listed")
        .filter(|entry| entry.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "log")))
        .count()
}

#[test]
fn what_openraft_writes_is_there_after_every_reopen() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let vote: VoteOf<Group> = openraft::impls::Vote::new(3, 2);
        {
            let mut log = open(&path).await;
            log.save_vote(&vote).await.expect("the vote is saved");
            log.blocking_append((1..=200).map(|index| entry(1, index))).await.expect("appended");
            log.save_committed(Some(openraft::testing::log_id::<Group>(1, 1, 180))).await.expect("the commit mark");
            log.close().await.expect("closed");
        }
        // Reopened without writes between, twice.
        for _ in 0..2 {
            let mut log = open(&path).await;
            let state = log.get_log_state().await.expect("the log's state");
            assert_eq!(state.last_log_id.map(|id| id.index), Some(200));
            assert_eq!(state.last_purged_log_id, None);
            assert_eq!(log.read_vote().await.expect("the vote"), Some(vote));
            assert_eq!(log.read_committed().await.expect("the commit mark").map(|id| id.index), Some(180));
            let read = read(&mut log, 1..=200).await;
            assert_eq!(read, (1..=200).map(|index| (1, index, index * 10 + 1)).collect::<Vec<_>>());
            log.close().await.expect("closed");
        }
        // A new leader's log overrides 151..: truncated, then appended at term 2; stopped
        // without closing (the records were acknowledged durable, so they must be there).
        {
            let mut log = open(&path).await;
            log.truncate_after(Some(openraft::testing::log_id::<Group>(1, 1, 150))).await.expect("truncated");
            log.blocking_append((151..=160).map(|index| entry(2, index))).await.expect("appended at term 2");
            let vote: VoteOf<Group> = openraft::impls::Vote::new(4, 3);
            log.save_vote(&vote).await.expect("the new vote");
        }
        let mut log = open(&path).await;
        assert_eq!(log.get_log_state().await.expect("state").last_log_id.map(|id| id.index), Some(160));
        assert_eq!(log.read_vote().await.expect("the vote"), Some(openraft::impls::Vote::new(4, 3)));
        let read = read(&mut log, 140..=300).await;
        let expected: Vec<(u64, u64, u64)> =
            (140..=150).map(|index| (1, index, index * 10 + 1)).chain((151..=160).map(|index| (2, index, index * 10 + 2))).collect();
        assert_eq!(read, expected, "entries after the truncation are the new leader's, and none past 160");
        log.close().await.expect("closed");
    });
}

#[test]
fn purging_removes_whole_segments_and_keeps_the_groups_state() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let vote: VoteOf<Group> = openraft::impls::Vote::new(7, 1);
        {
            let mut log = open(&path).await;
            // The vote first: it lies in the first segment, which the purge removes.
            log.save_vote(&vote).await.expect("the vote");
            for from in (1..=3000).step_by(100) {
                log.blocking_append((from..from + 100).map(|index| entry(7, index))).await.expect("appended");
            }
            log.save_committed(Some(openraft::testing::log_id::<Group>(7, 1, 3000))).await.expect("committed");
            let before = segments(&path);
            log.purge(openraft::testing::log_id::<Group>(7, 1, 2500)).await.expect("purged");
            let after = segments(&path);
            assert!(after < before, "whole segments went ({before} before, {after} after)");
            let read = read(&mut log, 1..=3000).await;
            assert_eq!(read.first().map(|(_, index, _)| *index), Some(2501), "nothing purged is read");
            assert_eq!(read.len(), 500);
        }
        for round in 0..2 {
            let mut log = open(&path).await;
            let state = log.get_log_state().await.expect("state");
            assert_eq!(state.last_purged_log_id.map(|id| id.index), Some(2500), "round {round}");
            assert_eq!(state.last_log_id.map(|id| id.index), Some(3000 + round), "with what the round before appended");
            assert_eq!(log.read_vote().await.expect("the vote"), Some(vote), "the vote outlived its segment");
            assert_eq!(log.read_committed().await.expect("committed").map(|id| id.index), Some(3000));
            assert_eq!(read(&mut log, 2400..=3000).await, (2501..=3000).map(|index| (7, index, index * 10 + 7)).collect::<Vec<_>>());
            // Writes between reopens go on from there.
            log.blocking_append([entry(7, 3001 + round)]).await.expect("appended");
            log.close().await.expect("closed");
        }
        let mut log = open(&path).await;
        assert_eq!(log.get_log_state().await.expect("state").last_log_id.map(|id| id.index), Some(3002));
        log.close().await.expect("closed");
    });
}

/// Each of openraft's log-store conformance tests gets a log of its own in a new directory.
/// The suite drops its logs without closing them, so the directories are kept until the suite
/// is over (a directory removed while its log still makes a segment ahead would make glommio
/// panic: `docs/glommio-statfs-race.md`).
#[derive(Default, Clone)]
struct Fresh {
    dirs: std::sync::Arc<std::sync::Mutex<Vec<tempfile::TempDir>>>,
}

impl openraft::testing::log::StoreBuilder<Group, RaftLog<Group>, sluice_raft::testing::StateMachine> for Fresh {
    async fn build(&self) -> Result<((), RaftLog<Group>, sluice_raft::testing::StateMachine), openraft::StorageError<Group>> {
        use openraft::type_config::TypeConfigExt;
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageError::read(Group::err_from_error(&e)))?;
        let log = RaftLog::open(Env::Glommio, options(dir.path(), SEGMENT))
            .await
            .map_err(|e| openraft::StorageError::read(Group::err_from_error(&e)))?;
        self.dirs.lock().expect("the directories").push(dir);
        Ok(((), log, sluice_raft::testing::StateMachine::default()))
    }
}

#[test]
fn the_raft_log_passes_openraft_log_store_suite() {
    use openraft::AsyncRuntime;
    let fresh = Fresh::default();
    let builder = fresh.clone();
    let mut runtime = sluice_raft::GlommioRuntime::new(1);
    runtime.block_on(async {
        openraft::testing::log::Suite::test_all(builder).await.expect("openraft's log-store conformance suite passes");
    });
    // The executor and its tasks first, then the directories.
    drop(runtime);
    drop(fresh);
}
