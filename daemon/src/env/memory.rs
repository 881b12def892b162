//! Files in memory for the simulator, with a disk's crash semantics.
//!
//! Each file has the bytes a reader sees now and the bytes on the platter. A write changes
//! what is seen now and marks its 512-byte sectors dirty; `fdatasync` puts the dirty
//! sectors (and the file's size) on the platter. Creating and removing files are entries in
//! an ordered metadata journal that `sync_dir` commits (as a journalling file system does,
//! a crash keeps a prefix of it: a later unlink never survives without an earlier one).
//!
//! - A **process crash** (`crash(Crash::Process)`, kill -9) loses nothing that was written:
//!   the kernel and the device still hold it, dirty, for whoever opens the file next.
//! - A **power loss** (`crash(Crash::Power)`) keeps a random prefix of each file's dirty
//!   sectors in the order they were written — or, with `Faults::scatter`, each dirty sector
//!   or not, independently (a device cache that writes back in any order) — each changed
//!   size old or new, and a random prefix of the metadata journal.
//! - Faults, each with its own chance: a write or `fdatasync` that fails (EIO — after a
//!   failed `fdatasync` each dirty sector is either still in the device's cache, dirty, or
//!   lost — reads show the loss, as direct I/O reads the device), a short write of whole blocks, no space (ENOSPC) past a
//!   capacity, and a pause before an operation completes (the other tasks run meanwhile).
//!
//! After a crash, handles opened before it fail: the process that held them is gone.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

const SECTOR: usize = 512;
const BLOCK: usize = 4096;

/// How hostile the disk is.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Bytes the files may hold in all; writing or allocating past it fails with ENOSPC.
    pub capacity_bytes: u64,
    /// Chance that an operation yields to other tasks (up to three times) before completing.
    pub pause: f64,
    pub write_error: f64,
    pub short_write: f64,
    pub sync_error: f64,
    /// Whether a power loss keeps dirty sectors independently (a device cache that writes
    /// back in any order) rather than a prefix of them in the order they were written.
    pub scatter: bool,
}

impl Faults {
    pub const NONE: Faults =
        Faults { capacity_bytes: u64::MAX, pause: 0.0, write_error: 0.0, short_write: 0.0, sync_error: 0.0, scatter: false };
}

/// What kind of crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// The process dies (kill -9); the machine keeps running.
    Process,
    /// The machine loses power.
    Power,
}

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Dirty sectors, each with the number of the write that last changed it.
    dirty: BTreeMap<usize, u64>,
}

type InodeRef = Rc<RefCell<Inode>>;

#[derive(Default)]
struct State {
    dirs: BTreeSet<PathBuf>,
    /// The namespace as processes see it.
    names: BTreeMap<PathBuf, InodeRef>,
    /// The namespace on the platter.
    durable_names: BTreeMap<PathBuf, InodeRef>,
    /// Namespace changes not yet durable, oldest first: a path and what it names (or `None`, removed).
    journal: Vec<(PathBuf, Option<InodeRef>)>,
}

/// Counts of what the disk did, for reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiskStats {
    pub writes: u64,
    pub syncs: u64,
    pub write_errors: u64,
    pub short_writes: u64,
    pub sync_errors: u64,
    pub no_space: u64,
    pub crashes: u64,
    pub power_losses: u64,
}

pub struct Fs {
    rng: RefCell<fastrand::Rng>,
    faults: Cell<Faults>,
    state: RefCell<State>,
    incarnation: Cell<u64>,
    writes: Cell<u64>,
    stats: Cell<DiskStats>,
}

fn gone() -> std::io::Error {
    std::io::Error::other("the process that opened this file is gone (simulated crash)")
}

fn not_found(path: &Path) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} does not exist", path.display()))
}

fn no_space() -> std::io::Error {
    std::io::Error::from_raw_os_error(28)
}

fn eio() -> std::io::Error {
    std::io::Error::from_raw_os_error(5)
}

/// Yields to the other tasks once.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Fs {
    pub fn new(seed: u64, faults: Faults) -> Fs {
        Fs {
            rng: RefCell::new(fastrand::Rng::with_seed(seed)),
            faults: Cell::new(faults),
            state: RefCell::default(),
            incarnation: Cell::new(0),
            writes: Cell::new(0),
            stats: Cell::new(DiskStats::default()),
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        self.faults.set(faults);
    }

    pub fn faults(&self) -> Faults {
        self.faults.get()
    }

    pub fn stats(&self) -> DiskStats {
        self.stats.get()
    }

    fn count(&self, change: impl FnOnce(&mut DiskStats)) {
        let mut stats = self.stats.get();
        change(&mut stats);
        self.stats.set(stats);
    }

    fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.rng.borrow_mut().f64() < p
    }

    /// Maybe lets the other tasks run before an operation completes.
    pub async fn pause(&self) {
        if self.chance(self.faults.get().pause) {
            let times = self.rng.borrow_mut().usize(1..=3);
            for _ in 0..times {
                YieldNow(false).await;
            }
        }
    }

    fn used_bytes(&self) -> u64 {
        self.state.borrow().names.values().map(|inode| inode.borrow().data.len() as u64).sum()
    }

    pub async fn open(self: &Rc<Self>, path: &Path, create: bool) -> std::io::Result<Handle> {
        self.pause().await;
        let mut state = self.state.borrow_mut();
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !state.dirs.contains(parent) {
            return Err(not_found(parent));
        }
        let inode = if create {
            let inode = InodeRef::default();
            state.names.insert(path.to_path_buf(), inode.clone());
            state.journal.push((path.to_path_buf(), Some(inode.clone())));
            inode
        } else {
            state.names.get(path).cloned().ok_or_else(|| not_found(path))?
        };
        Ok(Handle { fs: self.clone(), inode, incarnation: self.incarnation.get(), dsync: false })
    }

    pub async fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.pause().await;
        if !self.state.borrow().dirs.contains(dir) {
            return Err(not_found(dir));
        }
        self.commit_journal(usize::MAX);
        Ok(())
    }

    /// Makes the first `count` namespace changes durable.
    fn commit_journal(&self, count: usize) {
        let mut state = self.state.borrow_mut();
        let count = count.min(state.journal.len());
        let changes: Vec<_> = state.journal.drain(..count).collect();
        for (path, inode) in changes {
            match inode {
                Some(inode) => state.durable_names.insert(path, inode),
                None => state.durable_names.remove(&path),
            };
        }
    }

    pub fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        let mut state = self.state.borrow_mut();
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    pub fn list_dir(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let state = self.state.borrow();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(state.names.keys().filter(|path| path.parent() == Some(dir)).cloned().collect())
    }

    /// Every file in `dir` with the bytes readers see and how many of its sectors are dirty
    /// (for a failure's report).
    pub fn snapshot(&self, dir: &Path) -> Vec<(PathBuf, Vec<u8>, usize)> {
        let state = self.state.borrow();
        state
            .names
            .iter()
            .filter(|(path, _)| path.parent() == Some(dir))
            .map(|(path, inode)| (path.clone(), inode.borrow().data.clone(), inode.borrow().dirty.len()))
            .collect()
    }

    pub fn remove(&self, path: &Path) -> std::io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.names.remove(path).ok_or_else(|| not_found(path))?;
        state.journal.push((path.to_path_buf(), None));
        Ok(())
    }

    /// The process crashes, or the machine loses power: see the module notes.
    pub fn crash(&self, crash: Crash) {
        self.incarnation.set(self.incarnation.get() + 1);
        self.count(|stats| stats.crashes += 1);
        if crash == Crash::Process {
            return;
        }
        self.count(|stats| stats.power_losses += 1);
        let kept = {
            let state = self.state.borrow();
            self.rng.borrow_mut().usize(0..=state.journal.len())
        };
        self.commit_journal(kept);
        let mut state = self.state.borrow_mut();
        state.journal.clear();
        let mut inodes: Vec<InodeRef> = state.durable_names.values().cloned().collect();
        inodes.extend(state.names.values().cloned());
        self.lose_power(inodes);
        state.names = state.durable_names.clone();
    }

    /// `inodes` lose power: each keeps what reached the platter (dirty sectors settle as the
    /// faults say) and reads it from now on.
    fn lose_power(&self, inodes: Vec<InodeRef>) {
        let scatter = self.faults.get().scatter;
        for inode in inodes {
            let mut inode = inode.borrow_mut();
            if scatter {
                self.settle(&mut inode, 0.5);
            } else {
                self.settle_prefix(&mut inode);
            }
            let durable = inode.durable.clone();
            inode.data = durable;
        }
    }

    /// One machine of several loses power: what is under `dir` (its disk) keeps only what it
    /// had made durable, as in `crash(Crash::Power)`; the rest of the world goes on, its
    /// handles still open.
    pub fn power_loss_under(&self, dir: &Path) {
        self.count(|stats| {
            stats.crashes += 1;
            stats.power_losses += 1;
        });
        let mut state = self.state.borrow_mut();
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut state.journal).into_iter().partition(|(path, _)| path.starts_with(dir));
        state.journal = others;
        let kept = self.rng.borrow_mut().usize(0..=mine.len());
        for (path, inode) in mine.into_iter().take(kept) {
            match inode {
                Some(inode) => state.durable_names.insert(path, inode),
                None => state.durable_names.remove(&path),
            };
        }
        let mut inodes: Vec<InodeRef> =
            state.durable_names.iter().filter(|(path, _)| path.starts_with(dir)).map(|(_, inode)| inode.clone()).collect();
        inodes.extend(state.names.iter().filter(|(path, _)| path.starts_with(dir)).map(|(_, inode)| inode.clone()));
        self.lose_power(inodes);
        state.names.retain(|path, _| !path.starts_with(dir));
        let durable: Vec<(PathBuf, InodeRef)> = state
            .durable_names
            .iter()
            .filter(|(path, _)| path.starts_with(dir))
            .map(|(path, inode)| (path.clone(), inode.clone()))
            .collect();
        state.names.extend(durable);
    }

    /// A failed flush of direct I/O: each dirty sector is still in the device's cache (and
    /// stays dirty) or was lost (reads now return what the platter holds).
    /// Without `Faults::scatter`, what is lost is the latest-written part (a suffix in write order).
    fn lose_some(&self, inode: &mut Inode) {
        let scatter = self.faults.get().scatter;
        let mut rng = self.rng.borrow_mut();
        let mut order: Vec<(u64, usize)> = inode.dirty.iter().map(|(sector, write)| (*write, *sector)).collect();
        order.sort_unstable();
        let kept = rng.usize(0..=order.len());
        for (at, (_, sector)) in order.into_iter().enumerate() {
            let keep = if scatter { rng.bool() } else { at < kept };
            if keep {
                continue;
            }
            inode.dirty.remove(&sector);
            let from = sector * SECTOR;
            let to = (from + SECTOR).min(inode.data.len());
            for at in from..to {
                inode.data[at] = inode.durable.get(at).copied().unwrap_or(0);
            }
        }
    }

    /// A power loss with a device that writes back in order: the dirty sectors in the order
    /// they were written, up to a random point, reach the platter (the size too, if any did).
    fn settle_prefix(&self, inode: &mut Inode) {
        let mut order: Vec<(u64, usize)> = inode.dirty.iter().map(|(sector, write)| (*write, *sector)).collect();
        order.sort_unstable();
        let kept = self.rng.borrow_mut().usize(0..=order.len());
        let new_len = inode.data.len();
        let old_len = inode.durable.len();
        inode.durable.resize(new_len.max(old_len), 0);
        for (_, sector) in &order[..kept] {
            let from = sector * SECTOR;
            let to = (from + SECTOR).min(new_len);
            if from < to {
                let bytes = inode.data[from..to].to_vec();
                inode.durable[from..to].copy_from_slice(&bytes);
            }
        }
        inode.durable.truncate(if kept > 0 || order.is_empty() { new_len } else { old_len });
        inode.dirty.clear();
    }

    /// Puts each dirty sector on the platter with chance `keep`, the size old or new at
    /// random (unless `keep` is 1), and clears the dirty marks.
    fn settle(&self, inode: &mut Inode, keep: f64) {
        let mut rng = self.rng.borrow_mut();
        let new_len = inode.data.len();
        let len = if keep >= 1.0 || rng.bool() { new_len } else { inode.durable.len() };
        inode.durable.resize(new_len.max(inode.durable.len()), 0);
        let dirty = std::mem::take(&mut inode.dirty);
        for sector in dirty.into_keys() {
            if keep >= 1.0 || rng.f64() < keep {
                let from = sector * SECTOR;
                let to = (from + SECTOR).min(new_len);
                if from < to {
                    let bytes = inode.data[from..to].to_vec();
                    inode.durable[from..to].copy_from_slice(&bytes);
                }
            }
        }
        inode.durable.truncate(len);
    }
}

/// An open file of the simulated disk.
pub struct Handle {
    fs: Rc<Fs>,
    inode: InodeRef,
    incarnation: u64,
    /// Opened O_DSYNC: each write is durable when it returns, as if followed by `fdatasync`.
    dsync: bool,
}

impl Handle {
    /// This handle with O_DSYNC's meaning: every write returns durable (or fails).
    pub fn with_dsync(mut self) -> Handle {
        self.dsync = true;
        self
    }

    fn check(&self) -> std::io::Result<()> {
        if self.incarnation != self.fs.incarnation.get() {
            return Err(gone());
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.inode.borrow().data.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Grows the file to `size` bytes of zeros (never shrinks it).
    pub async fn allocate(&self, size: u64) -> std::io::Result<()> {
        self.fs.pause().await;
        self.check()?;
        let len = self.len();
        if size <= len {
            return Ok(());
        }
        if self.fs.used_bytes() + (size - len) > self.fs.faults.get().capacity_bytes {
            self.fs.count(|stats| stats.no_space += 1);
            return Err(no_space());
        }
        self.inode.borrow_mut().data.resize(size as usize, 0);
        Ok(())
    }

    pub async fn write_at(&self, bytes: &[u8], offset: u64) -> std::io::Result<usize> {
        self.fs.pause().await;
        self.check()?;
        let faults = self.fs.faults.get();
        if self.fs.chance(faults.write_error) {
            self.fs.count(|stats| stats.write_errors += 1);
            return Err(eio());
        }
        let mut len = bytes.len();
        if len > BLOCK && self.fs.chance(faults.short_write) {
            len = self.fs.rng.borrow_mut().usize(1..len / BLOCK) * BLOCK;
            self.fs.count(|stats| stats.short_writes += 1);
        }
        let end = offset as usize + len;
        let grow = (end as u64).saturating_sub(self.len());
        if grow > 0 && self.fs.used_bytes() + grow > faults.capacity_bytes {
            self.fs.count(|stats| stats.no_space += 1);
            return Err(no_space());
        }
        let mut inode = self.inode.borrow_mut();
        if inode.data.len() < end {
            inode.data.resize(end, 0);
        }
        inode.data[offset as usize..end].copy_from_slice(&bytes[..len]);
        let write = self.fs.writes.get() + 1;
        self.fs.writes.set(write);
        for sector in offset as usize / SECTOR..end.div_ceil(SECTOR) {
            inode.dirty.insert(sector, write);
        }
        self.fs.count(|stats| stats.writes += 1);
        drop(inode);
        if self.dsync {
            self.sync_now()?;
        }
        Ok(len)
    }

    pub async fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.fs.pause().await;
        self.check()?;
        let inode = self.inode.borrow();
        let from = (offset as usize).min(inode.data.len());
        let to = (from + len).min(inode.data.len());
        Ok(inode.data[from..to].to_vec())
    }

    pub async fn fdatasync(&self) -> std::io::Result<()> {
        self.fs.pause().await;
        self.check()?;
        self.sync_now()
    }

    /// What a sync does once it reaches the device: everything written settles, or (an
    /// injected failure) some of it is lost and the caller is told.
    fn sync_now(&self) -> std::io::Result<()> {
        let mut inode = self.inode.borrow_mut();
        if self.fs.chance(self.fs.faults.get().sync_error) {
            self.fs.count(|stats| stats.sync_errors += 1);
            self.fs.lose_some(&mut inode);
            return Err(eio());
        }
        self.fs.settle(&mut inode, 1.0);
        self.fs.count(|stats| stats.syncs += 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes through an O_DSYNC handle survive a power loss with no fdatasync; the same
    /// writes through a plain handle are lost whenever the device drops them (some seed does).
    #[test]
    fn an_o_dsync_write_is_durable_when_it_returns() {
        let dir = Path::new("/sim/dsync");
        let mut plain_lost = false;
        for seed in 0..32 {
            let fs = Rc::new(Fs::new(seed, Faults { scatter: true, ..Faults::NONE }));
            fs.create_dir_all(dir).expect("dir");
            let (synced, plain) = (dir.join("synced"), dir.join("plain"));
            futures::executor::block_on(async {
                for path in [&synced, &plain] {
                    fs.open(path, true).await.expect("create");
                }
                fs.sync_dir(dir).await.expect("sync dir");
                let durable = fs.open(&synced, false).await.expect("open").with_dsync();
                let unsynced = fs.open(&plain, false).await.expect("open");
                for block in 0..8u8 {
                    durable.write_at(&[block + 1; BLOCK], block as u64 * BLOCK as u64).await.expect("write");
                    unsynced.write_at(&[block + 1; BLOCK], block as u64 * BLOCK as u64).await.expect("write");
                }
            });
            fs.crash(Crash::Power);
            futures::executor::block_on(async {
                let read = fs.open(&synced, false).await.expect("open").read_at(0, 8 * BLOCK).await.expect("read");
                assert_eq!(read.len(), 8 * BLOCK, "seed {seed}: the O_DSYNC file kept its size");
                for (block, bytes) in read.chunks(BLOCK).enumerate() {
                    assert!(bytes.iter().all(|b| *b == block as u8 + 1), "seed {seed}: block {block} of the O_DSYNC file was lost");
                }
                let read = fs.open(&plain, false).await.expect("open").read_at(0, 8 * BLOCK).await.expect("read");
                plain_lost |= read.len() < 8 * BLOCK || read.chunks(BLOCK).enumerate().any(|(block, bytes)| bytes[0] != block as u8 + 1);
            });
        }
        assert!(plain_lost, "the model never lost an unsynced write: this test would not notice O_DSYNC doing nothing");
    }
}
