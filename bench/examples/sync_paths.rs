//! How long "write 4 KiB with O_DIRECT, then make it durable" takes on this disk, by path:
//! plain syscalls on a thread, glommio's io_uring write then fdatasync, glommio with the file
//! opened O_DSYNC (one operation), and glommio's `spawn_blocking`. The storage log's floor
//! (`sluice-bench log --appenders 1`) is the second; the difference to the first is what
//! io_uring's hand-offs cost here. Run: `cargo run --release -p sluice-bench --example sync_paths -- DIR`.

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, OpenOptions};
use glommio::LocalExecutorBuilder;

const OPS: usize = 4000;
const BLOCK: usize = 4096;

fn report(name: &str, mut lat: Vec<Duration>) {
    lat.sort();
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_micros();
    println!("{name:<40} p50 {:>5} us  p90 {:>5} us  p99 {:>5} us", at(0.5), at(0.9), at(0.99));
}

async fn glommio_path(file: &DmaFile, sync: bool) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(OPS);
    for i in 0..OPS {
        let mut buf = file.alloc_dma_buffer(BLOCK);
        buf.as_bytes_mut().fill(b'x');
        let start = Instant::now();
        file.write_at(buf, ((i % 1000) * BLOCK) as u64).await.expect("write");
        if sync {
            file.fdatasync().await.expect("fdatasync");
        }
        lat.push(start.elapsed());
    }
    lat
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/var/tmp/sync-paths".into()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("file");
    {
        let file = std::fs::File::create(&path).expect("create");
        file.write_all_at(&vec![0u8; 1000 * BLOCK], 0).expect("fill");
        file.sync_all().expect("sync");
    }
    // Plain syscalls on this thread.
    {
        let file = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&path).expect("open");
        let layout = std::alloc::Layout::from_size_align(BLOCK, BLOCK).expect("layout");
        // SAFETY: a fresh aligned allocation of BLOCK bytes, filled before use and freed below.
        let buf = unsafe { std::slice::from_raw_parts_mut(std::alloc::alloc(layout), BLOCK) };
        buf.fill(b'x');
        let mut lat = Vec::with_capacity(OPS);
        for i in 0..OPS {
            let start = Instant::now();
            file.write_all_at(buf, ((i % 1000) * BLOCK) as u64).expect("write");
            file.sync_data().expect("fdatasync");
            lat.push(start.elapsed());
        }
        report("pwrite + fdatasync (syscalls)", lat);
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(buf.as_mut_ptr(), layout) };
    }
    let path2 = path.clone();
    spin(LocalExecutorBuilder::new(placement()))
        .spawn(move || async move {
            let file = OpenOptions::new().read(true).write(true).dma_open(&path2).await.expect("open");
            if std::env::var_os("SYNC_PATHS_IOWQ_ANY_CPU").is_some() {
                file.fdatasync().await.expect("fdatasync");
                println!("io-wq workers may run on any CPU: {:?}", iowq_any_cpu());
                // Workers made before keep their mask; idle ones exit after 5 s.
                glommio::timer::sleep(Duration::from_secs(6)).await;
            }
            report("glommio write_at (no sync)", glommio_path(&file, false).await);
            report("glommio write_at + fdatasync", glommio_path(&file, true).await);
            file.close().await.expect("close");
            let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_DSYNC).dma_open(&path2).await.expect("open");
            report("glommio write_at, file O_DSYNC", glommio_path(&file, false).await);
            file.close().await.expect("close");
            let file =
                std::sync::Arc::new(std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&path2).expect("open"));
            let mut lat = Vec::with_capacity(OPS);
            for i in 0..OPS {
                let file = file.clone();
                let start = Instant::now();
                glommio::executor()
                    .spawn_blocking(move || {
                        let layout = std::alloc::Layout::from_size_align(BLOCK, BLOCK).expect("layout");
                        // SAFETY: a fresh aligned allocation of BLOCK bytes, filled before use and freed below.
                        let buf = unsafe { std::slice::from_raw_parts_mut(std::alloc::alloc(layout), BLOCK) };
                        buf.fill(b'x');
                        file.write_all_at(buf, ((i % 1000) * BLOCK) as u64).expect("write");
                        file.sync_data().expect("fdatasync");
                        // SAFETY: allocated above with this layout.
                        unsafe { std::alloc::dealloc(buf.as_mut_ptr(), layout) };
                    })
                    .await;
                lat.push(start.elapsed());
            }
            report("spawn_blocking(pwrite + fdatasync)", lat);
        })
        .expect("executor")
        .join()
        .expect("join");
}

/// Pinned to CPU 0 as `sluiced`'s shards are (`SYNC_PATHS_UNPINNED=1`: left to the scheduler).
fn placement() -> glommio::Placement {
    if std::env::var_os("SYNC_PATHS_UNPINNED").is_some() {
        glommio::Placement::Unbound
    } else {
        glommio::Placement::Fixed(std::env::var("SYNC_PATHS_CPU").ok().and_then(|c| c.parse().ok()).unwrap_or(0))
    }
}

/// Lets this thread's io_uring workers run on every CPU (IORING_REGISTER_IOWQ_AFF), through
/// any io_uring descriptor of this process: the mask is the calling thread's.
fn iowq_any_cpu() -> std::io::Result<()> {
    const IORING_REGISTER_IOWQ_AFF: libc::c_uint = 17;
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET only writes inside it.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..std::thread::available_parallelism().map_or(1, |n| n.get()).max(64) {
        // SAFETY: cpu < 1024, the capacity of a cpu_set_t.
        unsafe { libc::CPU_SET(cpu, &mut mask) };
    }
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        if std::fs::read_link(entry.path()).is_ok_and(|target| target.as_os_str() == "anon_inode:[io_uring]") {
            let fd: libc::c_long = entry.file_name().to_string_lossy().parse().unwrap_or(-1);
            // SAFETY: io_uring_register reads `size_of::<cpu_set_t>()` bytes from `mask`.
            let done = unsafe {
                libc::syscall(
                    libc::SYS_io_uring_register,
                    fd,
                    IORING_REGISTER_IOWQ_AFF,
                    &mask as *const libc::cpu_set_t,
                    std::mem::size_of::<libc::cpu_set_t>(),
                )
            };
            return if done < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) };
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no io_uring descriptor"))
}

/// `SYNC_PATHS_SPIN_US=N`: the executor polls for N microseconds before it sleeps.
fn spin(builder: LocalExecutorBuilder) -> LocalExecutorBuilder {
    match std::env::var("SYNC_PATHS_SPIN_US").ok().and_then(|us| us.parse().ok()) {
        Some(us) => builder.spin_before_park(Duration::from_micros(us)),
        None => builder,
    }
}
