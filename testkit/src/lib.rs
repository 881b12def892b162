//! Test support shared by the workspace's integration tests: starts a real
//! `sluiced` (ephemeral port, temporary data directory, `--cores 2`) and connects
//! real clients to it.

pub mod pki;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sluice_client::blocking::BlockingClient;
use sluice_client::{Client, ClientError, ErrorCode};

pub struct Daemon {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The AWS-compatible HTTP gateway's address (`http_url` gives it as a URL).
    pub http_addr: Option<SocketAddr>,
    data_dir: PathBuf,
    /// The temporary directory behind `data_dir`, when this daemon made it.
    _temporary: Option<tempfile::TempDir>,
    extra: Vec<String>,
    /// The working directory it runs in (the test's own when `None`).
    cwd: Option<PathBuf>,
}

/// A binary built into the same target directory as the running test (`cargo test
/// --workspace` builds `sluiced`, since the daemon package has integration tests).
pub fn workspace_binary(name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("test executable path");
    let path = test.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps").join(name);
    assert!(path.exists(), "{} is missing: run the suite with `cargo test --workspace`", path.display());
    path
}

impl Daemon {
    /// `sluiced --cores 2` on an ephemeral port with a temporary data directory.
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Daemon {
        let temporary = tempfile::tempdir().expect("temporary data dir");
        let mut daemon = Daemon::start_in(temporary.path(), extra);
        daemon._temporary = Some(temporary);
        daemon
    }

    /// `sluiced` on an existing data directory (which outlives the daemon).
    pub fn start_in(data_dir: &std::path::Path, extra: &[&str]) -> Daemon {
        let extra: Vec<String> = extra.iter().map(|arg| arg.to_string()).collect();
        let (child, addr, http_addr) = spawn(data_dir, &extra, None);
        Daemon { child: Some(child), addr, http_addr, data_dir: data_dir.to_path_buf(), _temporary: None, extra, cwd: None }
    }

    /// `sluiced` run from working directory `cwd` with `data_dir` as given (relative to `cwd`
    /// when it is relative), as a user starting it from a shell would.
    pub fn start_from(cwd: &std::path::Path, data_dir: &std::path::Path, extra: &[&str]) -> Daemon {
        let extra: Vec<String> = extra.iter().map(|arg| arg.to_string()).collect();
        let (child, addr, http_addr) = spawn(data_dir, &extra, Some(cwd));
        Daemon { child: Some(child), addr, http_addr, data_dir: cwd.join(data_dir), _temporary: None, extra, cwd: Some(cwd.to_path_buf()) }
    }

    /// `http://HOST:PORT` of the HTTP gateway, for AWS clients' `--endpoint-url`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr.expect("the daemon was started with --http-listen off"))
    }

    /// The daemon's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Kills the daemon with SIGKILL (no chance to flush or say goodbye).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same data directory with the same flags
    /// (after `kill` or `terminate`; a running daemon is killed first). The port changes.
    pub fn restart(&mut self) {
        self.kill();
        let (child, addr, http_addr) = spawn(&self.data_dir, &self.extra, self.cwd.as_deref());
        self.child = Some(child);
        self.addr = addr;
        self.http_addr = http_addr;
    }

    /// Starts `sluiced` on `data_dir` and expects it to fail: returns its exit status and stderr.
    pub fn start_failing(data_dir: &std::path::Path, extra: &[&str]) -> (ExitStatus, String) {
        let extra: Vec<String> = extra.iter().map(|arg| arg.to_string()).collect();
        let output = command(data_dir, &extra, None).stdin(Stdio::null()).output().expect("running sluiced");
        (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
    }

    /// A connection that proves to hold `key` when the daemon runs with `--credentials`.
    pub fn client_as(&self, key: &sluice_client::AccessKey) -> Result<Conn, sluice_client::ClientError> {
        Ok(Conn { inner: BlockingClient::connect_as(self.addr, "test", Some(key))? })
    }

    /// A connection over TLS to `localhost` on the daemon's port (a daemon started with
    /// `--tls-cert`), proving to hold `key` when given.
    pub fn client_tls(
        &self,
        tls: &sluice_client::tls::Tls,
        key: Option<&sluice_client::AccessKey>,
    ) -> Result<Conn, sluice_client::ClientError> {
        let addr = format!("localhost:{}", self.addr.port());
        Ok(Conn { inner: BlockingClient::connect_tls(&addr, "test", key, tls)? })
    }

    pub fn client(&self) -> Conn {
        Conn { inner: BlockingClient::connect(self.addr, "test").expect("connecting to sluiced") }
    }

    /// A connection that landed on the given shard (the kernel spreads connections over shards).
    pub fn client_on_shard(&self, shard: u16) -> Conn {
        for _ in 0..200 {
            let conn = self.client();
            if conn.client().server().shard_id == shard {
                return conn;
            }
        }
        panic!("no connection landed on shard {shard} in 200 tries");
    }

    /// Sends a signal (`HUP`, `USR1`, …) to the running daemon, without waiting.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("daemon running");
        let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().expect("running kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("waiting for sluiced") {
                if !status.success() {
                    // Said here: the caller's assertion sees only that it failed.
                    eprintln!("sluiced (pid {}) exited after SIGTERM with {status}", child.id());
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("sluiced did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's resident memory (VmRSS), in bytes.
    pub fn resident_bytes(&self) -> u64 {
        self.status_bytes("VmRSS")
    }

    /// The daemon's peak resident memory so far (VmHWM), in bytes.
    pub fn peak_resident_bytes(&self) -> u64 {
        self.status_bytes("VmHWM")
    }

    /// A size line (`NAME:  N kB`) of the daemon's `/proc/PID/status`, in bytes.
    fn status_bytes(&self, name: &str) -> u64 {
        let pid = self.child.as_ref().expect("daemon running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading the daemon's /proc status");
        let line = status.lines().find(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with(':'))).expect("the line");
        let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a size in kB");
        kib * 1024
    }

    /// Descriptors the daemon has open (entries of `/proc/PID/fd`).
    pub fn open_files(&self) -> usize {
        let pid = self.child.as_ref().expect("daemon running").id();
        std::fs::read_dir(format!("/proc/{pid}/fd")).expect("reading the daemon's /proc fd list").count()
    }

    /// Whether the daemon process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| child.try_wait().ok().flatten().is_none())
    }
}

/// `sluiced` on an ephemeral port and `data_dir`, with `--cores 2` and 4 MiB segments unless
/// `extra` says otherwise.
fn command(data_dir: &std::path::Path, extra: &[String], cwd: Option<&std::path::Path>) -> Command {
    let default = |flag: &'static str, value: &'static str| -> Vec<&'static str> {
        if extra.iter().any(|arg| arg == flag) {
            Vec::new()
        } else {
            vec![flag, value]
        }
    };
    let mut command = Command::new(workspace_binary("sluiced"));
    command
        .args(["--log", "warn"])
        .args(default("--listen", "127.0.0.1:0"))
        .args(default("--http-listen", "127.0.0.1:0"))
        .args(default("--cores", "2"))
        // Small segments: tests start many daemons, and each prepares two segments per shard.
        .args(default("--segment-bytes", "4194304"))
        .args(default("--stream-segment-bytes", "4194304"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        // The allocator returns freed memory to the system at once rather than after a
        // delay, so that resident memory (`resident_bytes`) shows what the daemon holds.
        .env("MIMALLOC_PURGE_DELAY", "0");
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    command
}

/// Spawns `sluiced` and reads the addresses it listens on (binary protocol, HTTP gateway).
fn spawn(data_dir: &std::path::Path, extra: &[String], cwd: Option<&std::path::Path>) -> (Child, SocketAddr, Option<SocketAddr>) {
    let mut child = command(data_dir, extra, cwd).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawning sluiced");
    let stdout = child.stdout.take().expect("sluiced stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("reading sluiced's first line");
    let addresses =
        line.trim().strip_prefix("sluiced listening on ").unwrap_or_else(|| panic!("unexpected first line from sluiced: {line:?}"));
    let (addr, http) = match addresses.split_once(", http ") {
        Some((addr, http)) => (addr, Some(http.parse().expect("HTTP listen address"))),
        None => (addresses, None),
    };
    (child, addr.parse().expect("listen address"), http)
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A daemon that is gone before the test let it go died under it (a crash prints
            // nothing of its own): say how, for whoever reads the failure.
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("sluiced (pid {}) had exited before the test stopped it: {status}", child.id());
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking connection with short helpers for tests.
pub struct Conn {
    inner: BlockingClient,
}

impl Conn {
    pub fn client(&self) -> &Client {
        self.inner.client()
    }

    /// Runs one client future to completion.
    pub fn run<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.inner.block_on(future)
    }
}

/// Asserts that `result` failed with the server error `code`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, ClientError>, code: ErrorCode) {
    match result {
        Err(ClientError::Server(error)) => assert_eq!(error.code, code, "wrong error: {error}"),
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// A message body `len` bytes long (at least 11) that carries its number `i`: `msg-NNNNNN-`, then
/// bytes that depend on `i`, so a body that comes back can be checked byte for byte.
pub fn numbered_body(i: usize, len: usize) -> bytes::Bytes {
    let mut body = format!("msg-{i:06}-").into_bytes();
    body.extend((0..len.saturating_sub(body.len())).map(|at| b'a' + ((at * 7 + i * 13) % 26) as u8));
    bytes::Bytes::from(body)
}

/// The number a `numbered_body` carries.
pub fn number_in(body: &[u8]) -> usize {
    body.get(4..10).and_then(|digits| std::str::from_utf8(digits).ok()).and_then(|n| n.parse().ok()).expect("a numbered test message")
}

pub fn kv(key: &str, value: &str) -> (String, String) {
    (key.to_owned(), value.to_owned())
}

pub fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The node packages of `daemon/tests/node` (`package.json`, pinned by `package-lock.json`)
/// installed once per target directory with `npm ci`, beside the scripts there; returns the
/// directory to run `node SCRIPT` in. Needs node and npm with access to the npm registry
/// (`.ci/run` installs both).
pub fn node_clients(source: &std::path::Path, target_tmp: &std::path::Path) -> PathBuf {
    static DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut dir = DIR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(dir) = dir.as_ref() {
        return dir.clone();
    }
    let made = target_tmp.join("node-clients");
    std::fs::create_dir_all(&made).expect("making the node directory");
    for entry in std::fs::read_dir(source).expect("reading the node sources") {
        let path = entry.expect("a node source").path();
        if path.is_file() {
            std::fs::copy(&path, made.join(path.file_name().unwrap_or_default())).expect("copying a node source");
        }
    }
    let lock = std::fs::read(made.join("package-lock.json")).unwrap_or_default();
    let installed = made.join("node_modules/.installed-lock");
    if std::fs::read(&installed).ok() != Some(lock.clone()) {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&made)
            .status()
            .expect("running npm (node and npm are needed)");
        assert!(status.success(), "npm ci in {} failed", made.display());
        std::fs::write(&installed, lock).expect("marking the install");
    }
    *dir = Some(made.clone());
    made
}

/// Every file under `dir` (recursively; none when it does not exist), by its path relative to
/// `dir`, with its bytes; files whose names start with a dot (partial writes) left out.
pub fn files_under(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut found = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !entry.file_name().to_string_lossy().starts_with('.') {
                if let (Ok(key), Ok(data)) = (path.strip_prefix(dir), std::fs::read(&path)) {
                    found.insert(key.to_string_lossy().into_owned(), data);
                }
            }
        }
    }
    found
}

/// The lines of every (text) file under `dir`, each with the file's path relative to `dir`.
pub fn lines_under(dir: &std::path::Path) -> Vec<(String, String)> {
    files_under(dir)
        .into_iter()
        .flat_map(|(key, data)| String::from_utf8_lossy(&data).lines().map(|line| (key.clone(), line.to_owned())).collect::<Vec<_>>())
        .collect()
}
