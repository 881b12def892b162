//! The environment a shard runs in: time, timers, tasks and files.
//!
//! `Env::Glommio` is production: the thread's glommio executor, its timers, and DMA files
//! through io_uring. `Env::Sim` is the deterministic simulator's world (`sim::World`): a
//! virtual clock, timers that fire only when the simulator moves time on, tasks on the
//! simulator's single-threaded executor, and files kept in memory that a simulated crash or
//! power loss cuts back to what was durable (`memory`).
//!
//! Code below the engines takes its time, timers, tasks and files from here and nowhere
//! else, so the simulator can run it. An enum rather than a type parameter: the two cases
//! are fixed, and one predictable branch per I/O is nothing beside the I/O.

pub mod memory;
pub mod notify;
pub mod sim;

use std::future::Future;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::LocalBoxFuture;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

pub use sim::World;

#[derive(Clone, Default)]
pub enum Env {
    #[default]
    Glommio,
    Sim(Rc<World>),
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Env::Glommio => f.write_str("Glommio"),
            Env::Sim(_) => f.write_str("Sim"),
        }
    }
}

/// The process's start, for monotonic readings.
fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

impl Env {
    /// Monotonic time since an arbitrary start (the process's, or the simulation's).
    pub fn monotonic(&self) -> Duration {
        match self {
            Env::Glommio => process_start().elapsed(),
            Env::Sim(world) => world.now(),
        }
    }

    /// Milliseconds since the Unix epoch (virtual in the simulator).
    pub fn now_ms(&self) -> u64 {
        match self {
            Env::Glommio => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default(),
            Env::Sim(world) => world.epoch_ms(),
        }
    }

    /// Completes once `wait` has passed.
    pub fn sleep(&self, wait: Duration) -> LocalBoxFuture<'static, ()> {
        match self {
            Env::Glommio => Box::pin(glommio::timer::sleep(wait)),
            Env::Sim(world) => Box::pin(world.sleep(wait)),
        }
    }

    /// Runs `task` on this thread's executor, detached. Under glommio (0.9) the task runs
    /// *at once*, up to its first wait, inside this call (`spawn_local` polls it right away);
    /// the simulator runs it later. A caller must hold no `RefCell` borrow the task takes.
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        match self {
            Env::Glommio => {
                glommio::spawn_local(task).detach();
            }
            Env::Sim(world) => world.spawn(task),
        }
    }

    /// Lets other tasks run if this one has had the thread long enough (glommio's task
    /// preemption); the simulator lets the others run every time.
    pub async fn yield_if_needed(&self) {
        match self {
            Env::Glommio => glommio::yield_if_needed().await,
            Env::Sim(_) => {
                let mut yielded = false;
                std::future::poll_fn(move |cx| {
                    if yielded {
                        return std::task::Poll::Ready(());
                    }
                    yielded = true;
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                })
                .await
            }
        }
    }

    pub fn is_simulated(&self) -> bool {
        matches!(self, Env::Sim(_))
    }

    /// Opens an existing file for reading and writing (direct I/O in production).
    pub async fn open(&self, path: &Path) -> std::io::Result<File> {
        match self {
            Env::Glommio => Ok(File::Dma(OpenOptions::new().read(true).write(true).dma_open(path).await.map_err(std::io::Error::from)?)),
            Env::Sim(world) => Ok(File::Memory(world.fs().open(path, false).await?)),
        }
    }

    /// Opens an existing file for reading and writing, each write durable when it completes
    /// (O_DSYNC: no separate fdatasync, and on io_uring no worker thread for it).
    pub async fn open_dsync(&self, path: &Path) -> std::io::Result<File> {
        match self {
            Env::Glommio => Ok(File::Dma(
                OpenOptions::new().read(true).write(true).custom_flags(libc::O_DSYNC).dma_open(path).await.map_err(std::io::Error::from)?,
            )),
            Env::Sim(world) => Ok(File::Memory(world.fs().open(path, false).await?.with_dsync())),
        }
    }

    /// Creates a file (empty, replacing one of that name) for reading and writing.
    pub async fn create(&self, path: &Path) -> std::io::Result<File> {
        match self {
            Env::Glommio => Ok(File::Dma(
                OpenOptions::new().read(true).write(true).create(true).truncate(true).dma_open(path).await.map_err(std::io::Error::from)?,
            )),
            Env::Sim(world) => Ok(File::Memory(world.fs().open(path, true).await?)),
        }
    }

    /// Makes the entries of directory `dir` (files created, removed) durable.
    pub async fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        match self {
            Env::Glommio => {
                let directory = glommio::io::Directory::open(dir).await.map_err(std::io::Error::from)?;
                directory.sync().await.map_err(std::io::Error::from)
            }
            Env::Sim(world) => world.fs().sync_dir(dir).await,
        }
    }

    pub fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        match self {
            Env::Glommio => std::fs::create_dir_all(dir),
            Env::Sim(world) => world.fs().create_dir_all(dir),
        }
    }

    /// The paths of the files in `dir` (`NotFound` when it does not exist).
    pub fn list_dir(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        match self {
            Env::Glommio => Ok(std::fs::read_dir(dir)?.filter_map(|entry| entry.ok().map(|e| e.path())).collect()),
            Env::Sim(world) => world.fs().list_dir(dir),
        }
    }

    /// Removes a file now (a blocking unlink in production: for small or rare removals).
    pub fn remove_now(&self, path: &Path) -> std::io::Result<()> {
        match self {
            Env::Glommio => std::fs::remove_file(path),
            Env::Sim(world) => world.fs().remove(path),
        }
    }

    /// Removes a file through the reactor (a blocking unlink of a big file would stall the shard).
    pub async fn remove(&self, path: &Path) -> std::io::Result<()> {
        match self {
            Env::Glommio => glommio::io::remove(path).await.map_err(std::io::Error::from),
            Env::Sim(world) => {
                world.fs().pause().await;
                world.fs().remove(path)
            }
        }
    }

    /// Reads at most `len` bytes at `offset` of the file at `path` (buffered; for small reads
    /// of files that are not kept open).
    pub async fn read_file_at(&self, path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        match self {
            Env::Glommio => {
                let file = glommio::io::BufferedFile::open(path).await.map_err(std::io::Error::from)?;
                let data = file.read_at(offset, len).await.map_err(std::io::Error::from).map(|data| data.to_vec());
                let _ = file.close().await;
                data
            }
            Env::Sim(world) => {
                let file = world.fs().open(path, false).await?;
                let data = file.read_at(offset, len).await?;
                Ok(data)
            }
        }
    }
}

/// An open file.
pub enum File {
    Dma(DmaFile),
    Memory(memory::Handle),
}

/// A buffer to write from, made by the file that writes it (aligned for direct I/O).
pub enum WriteBuf {
    Dma(DmaBuffer),
    Memory(Vec<u8>),
}

impl WriteBuf {
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        match self {
            WriteBuf::Dma(buffer) => buffer.as_bytes_mut(),
            WriteBuf::Memory(bytes) => bytes,
        }
    }
}

/// Bytes read from a file.
pub enum ReadData {
    Dma(ReadResult),
    Memory(Vec<u8>),
}

impl Deref for ReadData {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ReadData::Dma(read) => read,
            ReadData::Memory(bytes) => bytes,
        }
    }
}

impl File {
    pub fn alloc(&self, len: usize) -> WriteBuf {
        match self {
            File::Dma(file) => WriteBuf::Dma(file.alloc_dma_buffer(len)),
            File::Memory(_) => WriteBuf::Memory(vec![0; len]),
        }
    }

    /// Writes `buffer` at `offset`; returns the bytes written (a short write is possible).
    pub async fn write_at(&self, buffer: WriteBuf, offset: u64) -> std::io::Result<usize> {
        match (self, buffer) {
            (File::Dma(file), WriteBuf::Dma(buffer)) => file.write_at(buffer, offset).await.map_err(std::io::Error::from),
            (File::Memory(file), WriteBuf::Memory(bytes)) => file.write_at(&bytes, offset).await,
            _ => Err(std::io::Error::other("a write buffer of another kind of file")),
        }
    }

    /// Reads `len` bytes at `offset` (both aligned to the device's blocks for direct I/O);
    /// fewer at the end of the file.
    pub async fn read_at_aligned(&self, offset: u64, len: usize) -> std::io::Result<ReadData> {
        match self {
            File::Dma(file) => file.read_at_aligned(offset, len).await.map(ReadData::Dma).map_err(std::io::Error::from),
            File::Memory(file) => file.read_at(offset, len).await.map(ReadData::Memory),
        }
    }

    pub async fn file_size(&self) -> std::io::Result<u64> {
        match self {
            File::Dma(file) => file.file_size().await.map_err(std::io::Error::from),
            File::Memory(file) => Ok(file.len()),
        }
    }

    /// Allocates the file's blocks up to `size` bytes (and makes that its size).
    pub async fn pre_allocate(&self, size: u64) -> std::io::Result<()> {
        match self {
            File::Dma(file) => file.pre_allocate(size, false).await.map_err(std::io::Error::from),
            File::Memory(file) => file.allocate(size).await,
        }
    }

    /// Makes what was written to the file (and its size) durable.
    pub async fn fdatasync(&self) -> std::io::Result<()> {
        match self {
            File::Dma(file) => file.fdatasync().await.map_err(std::io::Error::from),
            File::Memory(file) => file.fdatasync().await,
        }
    }
}
