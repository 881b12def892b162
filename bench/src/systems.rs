//! The systems a scenario runs against, each started fresh on loopback with a scratch data
//! directory and stopped after its run: Sluice (with `--fsync always` and `never`, and
//! through its HTTP gateway), Redis (persistence off, and `appendfsync always`), NATS
//! JetStream and RabbitMQ, each only when its server is installed
//! (`bench/scripts/install-peers.sh`).

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    SluiceFsyncAlways,
    SluiceFsyncNever,
    /// Sluice with `--fsync always`, driven through its AWS-compatible HTTP gateway (SQS's
    /// AWS JSON 1.0 protocol) instead of the binary protocol: the queue scenarios only.
    SluiceHttpGateway,
    /// The same with `--credentials`: every gateway request signed (SigV4) and verified.
    SluiceHttpGatewaySigv4,
    /// Sluice with `--fsync always` over the binary protocol with `--credentials`: every
    /// connection authenticated after `Hello`, every request decided against the principal's
    /// identity policy.
    SluiceAuthenticated,
    /// Sluice with `--fsync always` over the binary protocol with a root key: queues SSE-SQS
    /// (their default then), streams encrypted under `alias/aws/kinesis` — every message body,
    /// attribute and record sealed with AES-256-GCM before it reaches the log.
    SluiceEncrypted,
    /// `sluice-fsync-always` with a scraper reading `/metrics` (on `--metrics-listen`) every
    /// second through the run: what metrics cost.
    SluiceScraped,
    RedisOff,
    RedisFsyncAlways,
    Nats,
    Rabbitmq,
}

impl System {
    pub const ALL: [System; 11] = [
        System::SluiceFsyncAlways,
        System::SluiceFsyncNever,
        System::SluiceHttpGateway,
        System::SluiceHttpGatewaySigv4,
        System::SluiceAuthenticated,
        System::SluiceEncrypted,
        System::SluiceScraped,
        System::RedisOff,
        System::RedisFsyncAlways,
        System::Nats,
        System::Rabbitmq,
    ];

    pub fn name(self) -> &'static str {
        match self {
            System::SluiceFsyncAlways => "sluice-fsync-always",
            System::SluiceFsyncNever => "sluice-fsync-never",
            System::SluiceHttpGateway => "sluice-http-gateway",
            System::SluiceHttpGatewaySigv4 => "sluice-http-gateway-sigv4",
            System::SluiceAuthenticated => "sluice-authenticated",
            System::SluiceEncrypted => "sluice-encrypted",
            System::SluiceScraped => "sluice-scraped",
            System::RedisOff => "redis-persistence-off",
            System::RedisFsyncAlways => "redis-appendfsync-always",
            System::Nats => "nats-jetstream",
            System::Rabbitmq => "rabbitmq",
        }
    }

    /// `sluice-load --target` for this system.
    pub fn target(self) -> &'static str {
        match self {
            System::SluiceFsyncAlways
            | System::SluiceFsyncNever
            | System::SluiceAuthenticated
            | System::SluiceEncrypted
            | System::SluiceScraped => "sluice",
            System::SluiceHttpGateway | System::SluiceHttpGatewaySigv4 => "sluice-http",
            System::RedisOff | System::RedisFsyncAlways => "redis",
            System::Nats => "nats",
            System::Rabbitmq => "rabbitmq",
        }
    }

    pub fn is_sluice(self) -> bool {
        matches!(
            self,
            System::SluiceFsyncAlways
                | System::SluiceFsyncNever
                | System::SluiceHttpGateway
                | System::SluiceHttpGatewaySigv4
                | System::SluiceAuthenticated
                | System::SluiceEncrypted
                | System::SluiceScraped
        )
    }

    /// The key a system's streams are sealed under (`sluice-load --stream-encryption`).
    pub fn stream_encryption(self) -> Option<&'static str> {
        (self == System::SluiceEncrypted).then_some("alias/aws/kinesis")
    }

    /// The principal a system that checks signatures is started with and signed for.
    pub fn signing_key(self) -> Option<(&'static str, &'static str)> {
        matches!(self, System::SluiceHttpGatewaySigv4 | System::SluiceAuthenticated)
            .then_some(("AKIASLUICEBENCH", "sluice-bench-secret-0123456789"))
    }

    /// Whether `sluice-load` drives this system in `workload` (the gateway: queues only; FIFO:
    /// Sluice over its protocol, and NATS with its deduplication window, also for FIFO fan-out;
    /// tenants: Sluice).
    pub fn runs(self, workload: crate::scenario::Workload) -> bool {
        use crate::scenario::Workload;
        match workload {
            Workload::Fifo { .. } => matches!(self, System::SluiceFsyncAlways | System::SluiceFsyncNever | System::Nats),
            Workload::Tenants { .. } => matches!(self, System::SluiceFsyncAlways | System::SluiceFsyncNever),
            Workload::Fanout { groups, .. } if groups > 0 => {
                matches!(self, System::SluiceFsyncAlways | System::SluiceFsyncNever | System::Nats)
            }
            Workload::Queue | Workload::QueueSync { .. } => true,
            Workload::Firehose { .. } => matches!(self, System::SluiceFsyncAlways),
            _ => !matches!(self, System::SluiceHttpGateway | System::SluiceHttpGatewaySigv4),
        }
    }

    /// Whether a message is on disk (fsynced) when the producer hears it was taken.
    pub fn fsync_before_ack(self) -> &'static str {
        match self {
            System::SluiceFsyncAlways
            | System::SluiceHttpGateway
            | System::SluiceHttpGatewaySigv4
            | System::SluiceAuthenticated
            | System::SluiceEncrypted
            | System::SluiceScraped
            | System::RedisFsyncAlways
            | System::Rabbitmq => "yes",
            System::SluiceFsyncNever | System::RedisOff | System::Nats => "no",
        }
    }

    fn port(self) -> u16 {
        match self {
            System::SluiceFsyncAlways | System::SluiceFsyncNever => 19800,
            System::SluiceHttpGateway => 14566,
            System::SluiceHttpGatewaySigv4 => 14567,
            System::SluiceAuthenticated => 19802,
            System::SluiceEncrypted => 19803,
            System::SluiceScraped => 19804,
            System::RedisOff | System::RedisFsyncAlways => 16379,
            System::Nats => 14222,
            System::Rabbitmq => 15672,
        }
    }

    pub fn endpoint(self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    fn server(self) -> &'static str {
        match self {
            System::SluiceFsyncAlways
            | System::SluiceFsyncNever
            | System::SluiceHttpGateway
            | System::SluiceHttpGatewaySigv4
            | System::SluiceAuthenticated
            | System::SluiceEncrypted
            | System::SluiceScraped => "sluiced",
            System::RedisOff | System::RedisFsyncAlways => "redis-server",
            System::Nats => "nats-server",
            System::Rabbitmq => "rabbitmq-server",
        }
    }

    /// Whether the server can be run here; `sluiced` always can.
    pub fn installed(self) -> bool {
        self.is_sluice() || which(self.server()).is_some()
    }

    /// The server's version, as it reports it.
    pub fn version(self, binaries: &Path) -> String {
        let output = match self {
            System::SluiceFsyncAlways
            | System::SluiceFsyncNever
            | System::SluiceHttpGateway
            | System::SluiceHttpGatewaySigv4
            | System::SluiceAuthenticated
            | System::SluiceEncrypted
            | System::SluiceScraped => Command::new(binaries.join("sluiced")).arg("--version").output(),
            System::RedisOff | System::RedisFsyncAlways => Command::new("redis-server").arg("--version").output(),
            System::Nats => Command::new("nats-server").arg("--version").output(),
            System::Rabbitmq => Command::new("dpkg-query").args(["-W", "-f", "rabbitmq-server ${Version}", "rabbitmq-server"]).output(),
        };
        output.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_else(|e| format!("unknown ({e})"))
    }
}

/// A credentials file naming one principal with an identity policy, so that every request is
/// decided against it (it allows what the scenarios do and denies deleting queues).
fn credentials_file(scratch: &Path, id: &str, secret: &str) -> Result<PathBuf, String> {
    let file = scratch.join("credentials.json");
    let policy = r#"{"Statement": [{"Effect": "Allow", "Action": ["sqs:*", "sns:*", "kinesis:*"], "Resource": "*"},
                                   {"Effect": "Deny", "Action": "sqs:DeleteQueue", "Resource": "*"}]}"#;
    let principals = format!(r#"{{"principals":[{{"access_key_id":"{id}","secret_access_key":"{secret}","policies":[{policy}]}}]}}"#);
    std::fs::write(&file, principals).map_err(|e| format!("writing {}: {e}", file.display()))?;
    Ok(file)
}

pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// RabbitMQ's node name here. The packaged script starts the broker as the `rabbitmq` user
/// in a session of its own, out of reach of our process group, so its processes are found
/// by this name in their environment.
const RABBITMQ_NODE: &str = "sluice-bench@localhost";

/// Processes whose environment holds `RABBITMQ_NODENAME=` our node.
fn rabbitmq_pids() -> Vec<String> {
    let needle = format!("RABBITMQ_NODENAME={RABBITMQ_NODE}");
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            environ.split(|&b| b == 0).any(|var| var == needle.as_bytes()).then(|| pid.to_string())
        })
        .collect()
}

fn kill_rabbitmq(signal: &str) -> bool {
    let pids = rabbitmq_pids();
    if !pids.is_empty() {
        let mut args = vec![signal, "--"];
        args.extend(pids.iter().map(String::as_str));
        quiet("kill", &args);
    }
    !pids.is_empty()
}

/// A running server; stopped (its whole process group, and RabbitMQ's node) when dropped.
pub struct Running {
    child: Child,
    pub command: String,
    /// `sluice-scraped`'s scraper: stopped (and joined) with the server.
    scraper: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

/// Where `sluice-scraped` serves its metrics.
const SCRAPED_METRICS: &str = "127.0.0.1:19809";

/// Reads `/metrics` every second, as a Prometheus would, until `stop`.
fn scrape_every_second(stop: Arc<AtomicBool>) {
    use std::io::{Read, Write};
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if let Ok(mut stream) = TcpStream::connect(SCRAPED_METRICS) {
            let request = format!("GET /metrics HTTP/1.1\r\nHost: {SCRAPED_METRICS}\r\nConnection: close\r\n\r\n");
            let mut body = Vec::new();
            let _ = stream.write_all(request.as_bytes()).and_then(|()| stream.read_to_end(&mut body));
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    }
}

fn quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some((stop, scraper)) = self.scraper.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = scraper.join();
        }
        let group = format!("-{}", self.child.id());
        quiet("kill", &["-TERM", "--", &group]);
        kill_rabbitmq("-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited && rabbitmq_pids().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        quiet("kill", &["-KILL", "--", &group]);
        kill_rabbitmq("-KILL");
        let _ = self.child.wait();
    }
}

/// Starts `system` with its data in `scratch` (emptied first) and waits for its port.
pub fn start(system: System, binaries: &Path, scratch: &Path, sluice_cores: usize, log: &Path) -> Result<Running, String> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(|e| format!("creating {}: {e}", scratch.display()))?;
    let port = system.port().to_string();
    let dir = scratch.display().to_string();
    let mut command = match system {
        System::SluiceFsyncAlways | System::SluiceFsyncNever | System::SluiceScraped => {
            let mut c = Command::new(binaries.join("sluiced"));
            let fsync = if system == System::SluiceFsyncNever { "never" } else { "always" };
            c.args(["--listen", &system.endpoint(), "--data-dir", &dir, "--cores", &sluice_cores.to_string(), "--fsync", fsync]);
            // The binary protocol is what is measured; the HTTP gateway would only take a port.
            c.args(["--http-listen", "off"]);
            if system == System::SluiceScraped {
                c.args(["--metrics-listen", SCRAPED_METRICS]);
            }
            c
        }
        System::SluiceHttpGateway | System::SluiceHttpGatewaySigv4 => {
            let mut c = Command::new(binaries.join("sluiced"));
            // The binary listener is unused; the gateway's port is the one measured (and waited for).
            c.args(["--listen", "127.0.0.1:19801", "--http-listen", &system.endpoint(), "--data-dir", &format!("{dir}/data")]);
            c.args(["--cores", &sluice_cores.to_string(), "--fsync", "always"]);
            if let Some((id, secret)) = system.signing_key() {
                c.arg("--credentials").arg(credentials_file(scratch, id, secret)?);
            }
            c
        }
        System::SluiceAuthenticated => {
            let mut c = Command::new(binaries.join("sluiced"));
            c.args(["--listen", &system.endpoint(), "--data-dir", &dir, "--cores", &sluice_cores.to_string(), "--fsync", "always"]);
            c.args(["--http-listen", "off"]);
            let (id, secret) = system.signing_key().unwrap_or_default();
            c.arg("--credentials").arg(credentials_file(scratch, id, secret)?);
            c
        }
        System::SluiceEncrypted => {
            // The root key in a file of its own beside (not in) the data directory.
            let root = scratch.join("root.key");
            let hex: String = (0..32u8).map(|i| format!("{:02x}", i.wrapping_mul(37).wrapping_add(11))).collect();
            std::fs::write(&root, hex).map_err(|e| format!("writing {}: {e}", root.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
            let mut c = Command::new(binaries.join("sluiced"));
            let data = format!("{dir}/data");
            c.args(["--listen", &system.endpoint(), "--data-dir", &data, "--cores", &sluice_cores.to_string(), "--fsync", "always"]);
            c.args(["--http-listen", "off"]).arg("--root-key-file").arg(&root);
            c
        }
        System::RedisOff | System::RedisFsyncAlways => {
            let mut c = Command::new("redis-server");
            c.args(["--bind", "127.0.0.1", "--port", &port, "--dir", &dir, "--save", "", "--daemonize", "no"]);
            if system == System::RedisFsyncAlways {
                c.args(["--appendonly", "yes", "--appendfsync", "always"]);
            } else {
                c.args(["--appendonly", "no"]);
            }
            c
        }
        System::Nats => {
            let mut c = Command::new("nats-server");
            c.args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd", &dir]);
            c
        }
        System::Rabbitmq => {
            // The packaged script runs the broker as the `rabbitmq` user, which must own its directory.
            let _ = Command::new("chown").args(["-R", "rabbitmq:rabbitmq", &dir]).status();
            let mut c = Command::new("rabbitmq-server");
            c.envs([
                ("RABBITMQ_NODENAME", RABBITMQ_NODE),
                ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1"),
                ("RABBITMQ_NODE_PORT", port.as_str()),
                ("RABBITMQ_DIST_PORT", "25673"),
                ("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}"),
                ("ERL_EPMD_ADDRESS", "127.0.0.1"),
                ("RABBITMQ_MNESIA_BASE", &format!("{dir}/mnesia")),
                ("RABBITMQ_LOG_BASE", &format!("{dir}/log")),
                ("RABBITMQ_CONFIG_FILE", &format!("{dir}/none")),
                ("RABBITMQ_ENABLED_PLUGINS_FILE", &format!("{dir}/plugins")),
                ("HOME", &dir),
            ]);
            c
        }
    };
    let shown = format!("{command:?}");
    let log_file = std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let child = command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", system.server()))?;
    let mut running = Running { child, command: shown, scraper: None };
    let addr: SocketAddr = system.endpoint().parse().expect("a loopback address");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            // RabbitMQ opens its port a moment before it takes connections.
            if system == System::Rabbitmq {
                std::thread::sleep(Duration::from_secs(2));
            }
            if system == System::SluiceScraped {
                let stop = Arc::new(AtomicBool::new(false));
                let scraping = stop.clone();
                running.scraper = Some((stop, std::thread::spawn(move || scrape_every_second(scraping))));
            }
            return Ok(running);
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(format!("{} exited at start ({status}); see {}", system.name(), log.display()));
        }
        if Instant::now() > deadline {
            return Err(format!("{} did not open {addr} within 90 s; see {}", system.name(), log.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
