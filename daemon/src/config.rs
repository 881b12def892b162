//! Command-line flags of `sluiced`, each also read from a `SLUICE_…` variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use sluice_protocol::limits::FRAME_BYTES_MAX_DEFAULT;

use crate::storage::log::{FsyncMode, SEGMENT_BYTES_DEFAULT};

#[derive(Debug, Clone, Parser)]
#[command(name = "sluiced", version, about = "Sluice message broker daemon: SQS-style queues over a binary protocol, one shard per core.")]
pub struct Config {
    /// Address of the binary-protocol listener. Every shard accepts on it (SO_REUSEPORT).
    /// Port 0 picks a free port, printed at start-up. A port another process listens on is
    /// refused; one whose listener goes away within 3 s (a daemon killed a moment ago) is taken.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:9800")]
    pub listen: SocketAddr,

    /// Directory for the broker's data (created if missing): `meta.json` (queues and their
    /// attributes) and one log per shard (`shard-NNN/queues/`). Reopen it with the same --cores.
    /// A relative path is taken from the working directory at start.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    pub data_dir: PathBuf,

    /// When a change counts as kept, and so when a send, delete or visibility change is
    /// answered: `always` (after its group commit is durable — a small one written O_DSYNC,
    /// a larger one written and then fdatasync'd: survives power loss),
    /// `interval=MS` (after the write; fdatasync at most every MS milliseconds: a machine
    /// crash can lose up to MS of acknowledged changes), or `never` (at once: a crash of the
    /// process can lose what was not yet written).
    #[arg(long, env = "SLUICE_FSYNC", default_value = "always", value_parser = fsync_mode)]
    pub fsync: FsyncMode,

    /// Start even if a log is corrupt (damage followed by valid records): keep every valid
    /// record, skip the damage, and log each skipped place. Without it such a log stops the start,
    /// naming the file and offset. (A torn write at the very end is always cut back; that is not corruption.)
    #[arg(long, env = "SLUICE_REPAIR")]
    pub repair: bool,

    /// Size of each log segment file, in bytes (a multiple of 4096, at least 4 MiB). Segments
    /// are preallocated and zero-filled; whole segments are deleted as their messages go.
    #[arg(long, env = "SLUICE_SEGMENT_BYTES", default_value_t = SEGMENT_BYTES_DEFAULT, value_parser = segment_bytes)]
    pub segment_bytes: u64,

    /// Size of each segment file of a stream shard's log, in bytes (a multiple of 4096, at
    /// least 4 MiB). Every shard has its own log: a shard never written holds no file, a
    /// written one a segment, and one more once its active segment is half full; retention
    /// deletes whole segments.
    #[arg(long, env = "SLUICE_STREAM_SEGMENT_BYTES", default_value_t = 16 << 20, value_parser = segment_bytes)]
    pub stream_segment_bytes: u64,

    /// Seconds a stream shard's log stays open with no request using it (no put, read or
    /// waiting reader); then it is closed, freeing its descriptors and buffers, until next
    /// needed (opening it again reads its last segment).
    #[arg(long, env = "SLUICE_STREAM_LOG_IDLE_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub stream_log_idle_seconds: u64,

    /// Apply Kinesis's per-shard limits (writes: 1 MiB/s and 1,000 records/s; GetRecords:
    /// 5 calls/s and 2 MiB/s), answering ProvisionedThroughputExceededException past them, for
    /// applications that test their handling of it. Default: off, a shard takes what the
    /// machine can give.
    #[arg(long, env = "SLUICE_ENFORCE_SHARD_LIMITS")]
    pub enforce_shard_limits: bool,

    /// Seconds between evaluations of ON_DEMAND streams' write load: a shard that used at least
    /// half its write capacity (1 MiB/s, 1,000 records/s) over one period is split; two
    /// neighbours under a tenth of it for three periods in a row are merged, down to 4 open
    /// shards (up to 200).
    #[arg(long, env = "SLUICE_ON_DEMAND_EVALUATION_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub on_demand_evaluation_seconds: u64,

    /// Also serve `/metrics` (and `/health`) on this address, e.g. for a Prometheus that
    /// scrapes from another host, or when the gateway is off (`--http-listen off`). Metrics
    /// carry names and counts, never message data; this listener needs no credentials (it
    /// speaks TLS with `--tls-cert`, like the gateway). The gateway serves `/metrics` on its own
    /// port as well. Default: no such listener.
    #[arg(long, env = "SLUICE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Seconds between metric samples: each sample records the figures AWS publishes to
    /// CloudWatch (`AWS/SQS` queue depths and counts, `AWS/SNS`, `AWS/Kinesis`) into the metric
    /// history (GetMetricStatistics, GetMetricData) and evaluates every alarm. CloudWatch's
    /// standard resolution is 60.
    #[arg(long, env = "SLUICE_METRICS_SAMPLE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub metrics_sample_seconds: u64,

    /// Memory the metric history may take (suffixes K, M, G, binary), at 12 bytes a point: the
    /// default keeps 15 days of per-minute points for about 1,000 metrics (each queue has 8,
    /// each topic 4, each stream 8). Past it every metric keeps an equal share of the newest
    /// points. The history is also kept on disk under `<data-dir>/metrics-history`.
    #[arg(long, env = "SLUICE_METRIC_HISTORY_BYTES", default_value = "256M", value_parser = byte_size)]
    pub metric_history_bytes: u64,

    /// Where Firehose delivery streams with an S3 destination write their objects when no
    /// `--firehose-s3-endpoint` is given: bucket `b` is the directory `<this>/b`, and object
    /// keys are paths under it (each object written to a temporary file, synced, then renamed).
    /// Default: `<data-dir>/firehose-objects`.
    #[arg(long, env = "SLUICE_FIREHOSE_LOCAL_DIR", value_name = "DIR")]
    pub firehose_local_dir: Option<PathBuf>,

    /// An S3-compatible object store that Firehose S3 destinations (and HTTP endpoints' backup
    /// buckets) write to (e.g.
    /// `https://s3.us-east-1.amazonaws.com`, or a MinIO or moto server's URL), with the
    /// credentials of the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN)
    /// variables and `--region`; buckets are addressed by path. Default: none, objects go
    /// to `--firehose-local-dir`.
    #[arg(long, env = "SLUICE_FIREHOSE_S3_ENDPOINT", value_name = "URL")]
    pub firehose_s3_endpoint: Option<String>,

    /// Where Firehose transformation functions given by ARN (`Lambda` processors whose
    /// `LambdaArn` is `arn:aws:lambda:…:function:NAME`) are invoked: a Lambda API endpoint, such
    /// as the Lambda Runtime Interface Emulator running the function's own code
    /// (`http://127.0.0.1:9000`); the event is POSTed to
    /// `<this>/2015-03-31/functions/NAME/invocations`. A processor may instead give an http(s)
    /// URL as its `LambdaArn`, POSTed to as it is. Default: none (ARNs are refused).
    #[arg(long, env = "SLUICE_FIREHOSE_LAMBDA_ENDPOINT", value_name = "URL")]
    pub firehose_lambda_endpoint: Option<String>,

    /// The tables whose schemas Firehose's record format conversion (JSON to Parquet) writes
    /// with, standing for the AWS Glue Data Catalog a `DataFormatConversionConfiguration`'s
    /// `SchemaConfiguration` names: a JSON file `{"DATABASE": {"TABLE": [{"Name": "id",
    /// "Type": "bigint"}, …]}}` with Hive's primitive types. Read at each delivery (edits apply
    /// without a restart). Default: none (format conversion is refused).
    #[arg(long, env = "SLUICE_FIREHOSE_GLUE_TABLES", value_name = "FILE")]
    pub firehose_glue_tables: Option<PathBuf>,

    /// The access key id `--firehose-s3-endpoint` is signed with. Default: AWS_ACCESS_KEY_ID.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", value_name = "ID", hide_env_values = true)]
    pub firehose_s3_access_key_id: Option<String>,

    /// The secret access key `--firehose-s3-endpoint` is signed with (better given in the
    /// variable than on the command line). Default: AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", value_name = "SECRET", hide_env_values = true)]
    pub firehose_s3_secret_access_key: Option<String>,

    /// Bytes a core may hold for one delivery stream that its destination has not taken yet
    /// (suffixes K, M, G, binary). Past it puts are refused with ServiceUnavailableException
    /// ("Slow down."), as Firehose does when a destination falls behind, until deliveries
    /// catch up. The records wait on disk, not in memory.
    #[arg(long, env = "SLUICE_FIREHOSE_BUFFER_BYTES", default_value = "1G", value_parser = byte_size)]
    pub firehose_buffer_bytes: u64,

    /// Seconds a stream consumer group's lease on a shard lasts unless its worker renews it
    /// (LeaseShards, at least every third of it): how long a worker that died holds its shards
    /// before the others take them over. After a start, groups that existed before it get no
    /// lease for this long (leases are not kept; those granted before may still run).
    #[arg(long, env = "SLUICE_STREAM_LEASE_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub stream_lease_seconds: u64,

    /// Bytes of message bodies and attributes the daemon keeps in memory, shared evenly by
    /// the shards (suffixes K, M, G, T, binary: `512M`, `4G`). Messages past it are kept only
    /// in the log and read back when received, so a backlog may be many times larger than
    /// memory. Each message also keeps about 100 bytes of bookkeeping in memory, budget or not.
    /// Default: half of the machine's memory (or of the cgroup's memory limit, if lower).
    #[arg(long, env = "SLUICE_MEMORY_BUDGET", value_parser = byte_size)]
    pub memory_budget: Option<u64>,

    /// Number of shards, one pinned to each core; 0 means every core of the machine.
    #[arg(long, env = "SLUICE_CORES", default_value_t = 0)]
    pub cores: usize,

    /// Largest frame accepted from a client, in bytes (length prefix included).
    /// A longer frame closes its connection before anything is allocated.
    #[arg(long, env = "SLUICE_FRAME_BYTES_MAX", default_value_t = FRAME_BYTES_MAX_DEFAULT, value_parser = frame_bytes_max)]
    pub frame_bytes_max: usize,

    /// Requests one connection may have in flight; past it the daemon stops reading
    /// that connection until answers go out (a ReceiveMessage counts as 16).
    #[arg(long, env = "SLUICE_CONNECTION_INFLIGHT_MAX", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub connection_inflight_max: u64,

    /// Answer bytes one connection may have waiting to be written before the
    /// daemon stops reading its requests. A GetRecords is charged its largest answer before
    /// it runs, a ReceiveMessage its answer before it is buffered, until the bytes are written.
    #[arg(long, env = "SLUICE_CONNECTION_OUTBOUND_BYTES_MAX", default_value_t = 8 * 1024 * 1024)]
    pub connection_outbound_bytes_max: usize,

    /// Connections each shard serves at once, binary and HTTP together; past it a new
    /// connection is closed at once (a binary one is told why first). At start the daemon
    /// raises its open-file limit to the hard limit and lowers this cap if the limit cannot
    /// hold every shard's connections beside the files the logs need.
    #[arg(long, env = "SLUICE_CONNECTIONS_MAX", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub connections_max: u64,

    /// Queues the server holds (hidden delivery queues of HTTP subscriptions not counted);
    /// past it CreateQueue answers OverLimit. Every queue is held in memory on every core.
    #[arg(long, env = "SLUICE_QUEUES_MAX", default_value_t = sluice_protocol::limits::QUEUES_MAX_DEFAULT)]
    pub queues_max: usize,

    /// Subscriptions the server holds over all topics; past it Subscribe answers
    /// SubscriptionLimitExceeded. (Topics: at most 100,000, SNS's quota.)
    #[arg(long, env = "SLUICE_SUBSCRIPTIONS_MAX", default_value_t = sluice_protocol::limits::SUBSCRIPTIONS_MAX_DEFAULT)]
    pub subscriptions_max: usize,

    /// Stream shards the server holds over all streams, open and closed (a closed shard keeps
    /// its log until its records expire), like Kinesis's account shard quota: past it
    /// CreateStream, SplitShard and UpdateShardCount answer LimitExceededException. Each shard
    /// is a log of its own (files and descriptors while in use). At most 1,000 per stream.
    #[arg(long, env = "SLUICE_STREAM_SHARDS_MAX", default_value_t = sluice_protocol::limits::STREAM_SHARDS_TOTAL_MAX_DEFAULT)]
    pub stream_shards_max: usize,

    /// Seconds a new binary-protocol connection has to send its Hello before it is closed.
    #[arg(long, env = "SLUICE_HELLO_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub hello_timeout_seconds: u64,

    /// Seconds a binary-protocol connection may stay idle (no request in flight, no bytes
    /// arriving) before the daemon closes it; 0 keeps idle connections open for ever. A long
    /// poll or push subscription in flight is not idle.
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT_SECONDS", default_value_t = 600)]
    pub idle_timeout_seconds: u64,

    /// AWS region named in queue ARNs.
    #[arg(long, env = "SLUICE_REGION", default_value = "us-east-1")]
    pub region: String,

    /// AWS account id named in queue URLs and ARNs.
    #[arg(long, env = "SLUICE_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,

    /// Address of the AWS-compatible HTTP gateway (SQS JSON and Query, SNS Query, Kinesis
    /// JSON; `/health`), served by every core on the same port; `off` to serve none.
    #[arg(long, env = "SLUICE_HTTP_LISTEN", default_value = "127.0.0.1:4566", value_parser = http_listen)]
    pub http_listen: HttpListen,

    /// Seconds an HTTP connection may stay silent (idle between requests, or in the middle
    /// of sending one) before the gateway closes it.
    #[arg(long, env = "SLUICE_HTTP_IDLE_TIMEOUT_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_idle_timeout_seconds: u64,

    /// Origins (`scheme://host[:port]`, comma-separated) whose web pages may call the HTTP
    /// gateway; they get CORS answers. A request carrying any other `Origin` (or marked
    /// cross-site by `Sec-Fetch-Site`) is refused, so a web page cannot drive the broker.
    /// Default: none.
    #[arg(long, env = "SLUICE_HTTP_ALLOW_ORIGIN", value_delimiter = ',', value_name = "ORIGIN")]
    pub http_allow_origin: Vec<String>,

    /// Host names (comma-separated) the HTTP gateway answers to, besides IP addresses,
    /// `localhost` and the host of --public-url; a request naming another `Host` is refused
    /// (against DNS rebinding). Default: none.
    #[arg(long, env = "SLUICE_HTTP_ALLOW_HOST", value_delimiter = ',', value_name = "NAME")]
    pub http_allow_host: Vec<String>,

    /// Let `http`/`https` subscriptions and Firehose HTTP endpoints deliver to loopback,
    /// private, link-local and other non-public addresses (checked after the name is
    /// resolved), and Firehose endpoints use plain `http://`. Off by default, so that a
    /// Subscribe or a delivery stream cannot make the broker POST to services behind it
    /// (169.254.169.254 above all).
    #[arg(long, env = "SLUICE_HTTP_ENDPOINTS_ALLOW_PRIVATE")]
    pub http_endpoints_allow_private: bool,

    /// Base of the queue URLs and SNS links handed to clients. Default: `http://` (`https://`
    /// with `--tls-cert`) and the address the HTTP gateway listens on (or the binary
    /// listener's, with `--http-listen off`).
    #[arg(long, env = "SLUICE_PUBLIC_URL", default_value = "")]
    pub public_url: String,

    /// The RSA private key (PEM, PKCS#8 or PKCS#1) that signs SNS messages delivered to
    /// `http`/`https` subscriptions; its certificate is served at `SigningCertURL`. Default:
    /// a 2048-bit key the daemon makes when it first signs, kept in
    /// `DATA_DIR/sns-signing-key.pem`.
    #[arg(long, env = "SLUICE_SNS_SIGNING_KEY", value_name = "FILE")]
    pub sns_signing_key: Option<PathBuf>,

    /// The root key of the key service: 32 bytes, raw or as 64 hex digits or base64 (make one
    /// with `openssl rand -hex 32 > root.key; chmod 600 root.key`). Every KMS key's material is
    /// sealed under it in the metadata file; keep it outside the data directory. With it, the
    /// KMS API is served and queues (SSE-SQS by default, or SSE-KMS), topics and streams
    /// encrypt what they write to disk; without it (the default) there is no encryption and
    /// asking for it is refused. The key itself may instead be given in SLUICE_ROOT_KEY. A
    /// data directory with keys in it does not start without its root key.
    #[arg(long, env = "SLUICE_ROOT_KEY_FILE", value_name = "FILE")]
    pub root_key_file: Option<PathBuf>,

    /// This node's id in a cluster (a number from 1, unique in the cluster; keep it with the
    /// node's data directory). Needs --cluster-peers. Default: none, a single node, which
    /// behaves exactly as without the cluster.
    #[arg(long, env = "SLUICE_NODE_ID", requires = "cluster_peers", value_parser = clap::value_parser!(u64).range(1..))]
    pub node_id: Option<u64>,

    /// The cluster's nodes as `ID=HOST:PORT,…` (this node's own among them), the same list on
    /// every node: each node listens for the others on its own entry's address (one metadata
    /// Raft group over them; see the README's Cluster section). The node-to-node port is
    /// plain TCP: keep it on loopback or a private network. A new cluster forms once a
    /// majority of the nodes runs. Needs --node-id. Default: none (a single node).
    #[arg(long, env = "SLUICE_CLUSTER_PEERS", requires = "node_id", value_name = "ID=HOST:PORT,…", value_parser = cluster_peers)]
    pub cluster_peers: Option<ClusterPeers>,

    /// Milliseconds without a heartbeat from the cluster's leader before a node calls an
    /// election (each node waits a random time between this and twice this; the leader sends
    /// heartbeats every third of it). Lower fails over sooner; too low for the machine's
    /// pauses (disk stalls, a busy core) elects needlessly.
    #[arg(long, env = "SLUICE_CLUSTER_ELECTION_MS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(60..=60_000))]
    pub cluster_election_ms: u64,

    /// Metadata log entries between snapshots of the catalog in a cluster: after a snapshot
    /// a node's metadata log keeps this many entries before it and drops the rest, and a node
    /// that was away longer gets the snapshot instead.
    #[arg(long, env = "SLUICE_CLUSTER_SNAPSHOT_ENTRIES", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(2..=10_000_000))]
    pub cluster_snapshot_entries: u64,

    /// The root key, read at start from --root-key-file or SLUICE_ROOT_KEY.
    #[arg(skip)]
    pub root_key: Option<std::sync::Arc<crate::kms::root::RootKey>>,

    /// The SNS signing key, loaded or made on first use.
    #[arg(skip)]
    pub sns_signing: Option<std::sync::Arc<crate::sns_signing::SnsSigning>>,

    /// A PEM file of extra certificate authorities trusted for `https` subscription endpoints and
    /// Firehose HTTP endpoints, besides the public roots: for endpoints with private or
    /// self-signed certificates. Default: none (public roots only).
    #[arg(long, env = "SLUICE_HTTPS_CA_FILE", value_name = "PEM_FILE")]
    pub https_ca_file: Option<std::path::PathBuf>,

    /// Microseconds a shard keeps polling for work before it sleeps when it runs out of it.
    /// Waking a sleeping core costs tens of microseconds, more on a virtual machine whose idle
    /// CPUs halt; polling saves that on each request that arrives, or I/O that completes,
    /// within the window, for the price of a busy core while it polls. 0 (the default):
    /// sleep at once.
    #[arg(long, env = "SLUICE_IDLE_POLL_US", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub idle_poll_us: u64,

    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT before exiting anyway.
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,

    /// Principals allowed to call the daemon (JSON: access key ids, secrets, accounts, ARNs;
    /// see the README's Security section). With it, every gateway request must carry a valid
    /// AWS Signature Version 4 (header or presigned URL), and every binary connection must
    /// prove it holds a principal's secret after `Hello`. Read again on SIGHUP (a file that does
    /// not read leaves the principals in force). Default: none, and no checks.
    #[arg(long = "credentials", env = "SLUICE_CREDENTIALS", value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,

    /// The principals read from `--credentials` (again on SIGHUP).
    #[arg(skip)]
    pub credentials: Option<std::sync::Arc<crate::credentials::CredentialStore>>,

    /// Serve both listeners (binary and HTTP gateway) over TLS with this certificate chain
    /// (PEM, leaf first). Needs `--tls-key`. Read again on SIGHUP: new connections get the new
    /// certificate, open ones go on. Default: no TLS (plain TCP).
    #[arg(long, env = "SLUICE_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1). Read again on SIGHUP.
    #[arg(long, env = "SLUICE_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS: accept only clients that present a certificate issued by one of these CAs
    /// (PEM). Needs `--tls-cert`. Read again on SIGHUP. Default: no client certificates asked.
    #[arg(long, env = "SLUICE_TLS_CLIENT_CA", value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// The TLS configuration read from `--tls-cert`, `--tls-key`, `--tls-client-ca`.
    #[arg(skip)]
    pub tls: Option<std::sync::Arc<crate::tls::TlsStore>>,

    /// Serve on addresses other than loopback without `--credentials`: anyone who can reach
    /// the port can do anything. Without it, a `--listen` or `--http-listen` that is not a
    /// loopback address stops the start unless `--credentials` is given.
    #[arg(long, env = "SLUICE_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// Append one JSON line per API call, in CloudTrail's shape, to this file (created with
    /// mode 0600). Default: no audit log.
    #[arg(long, env = "SLUICE_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// Size at which the audit log is rotated: FILE becomes FILE.1, FILE.1 becomes FILE.2, …
    #[arg(long, env = "SLUICE_AUDIT_LOG_BYTES_MAX", default_value = "100M", value_parser = byte_size)]
    pub audit_log_bytes_max: u64,

    /// Rotated audit logs kept (FILE.1 … FILE.N); the oldest beyond them is removed.
    #[arg(long, env = "SLUICE_AUDIT_LOG_FILES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub audit_log_files: u32,

    /// Also record data calls in the audit log (send, receive, delete and change the
    /// visibility of messages; publish; put records, get iterators and records; subscribe to
    /// shards). Default: management calls only, as CloudTrail does.
    #[arg(long, env = "SLUICE_AUDIT_DATA_EVENTS")]
    pub audit_data_events: bool,

    /// Where shards send audit lines (set at start when `--audit-log` is given).
    #[arg(skip)]
    pub audit: Option<crate::audit::Sink>,

    /// The key that seals receipt handles, iterators and tokens: read from (or made in) the
    /// data directory at start, never a flag.
    #[arg(skip)]
    pub seal_key: crate::seal::SealKey,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `sluice_daemon=debug`.
    #[arg(long, env = "SLUICE_LOG", default_value = "info")]
    pub log: String,
}

/// A frame must hold at least a Hello and at most what a u32 prefix can announce.
fn frame_bytes_max(text: &str) -> Result<usize, String> {
    let value: usize = text.parse().map_err(|e| format!("{e}"))?;
    if !(1024..=u32::MAX as usize).contains(&value) {
        return Err(format!("must be from 1024 to {}", u32::MAX));
    }
    Ok(value)
}

/// `--http-listen`: an address, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpListen(pub Option<SocketAddr>);

fn http_listen(text: &str) -> Result<HttpListen, String> {
    if text == "off" {
        return Ok(HttpListen(None));
    }
    text.parse().map(|addr| HttpListen(Some(addr))).map_err(|e| format!("must be HOST:PORT or `off`: {e}"))
}

fn fsync_mode(text: &str) -> Result<FsyncMode, String> {
    match text {
        "always" => Ok(FsyncMode::Always),
        "never" => Ok(FsyncMode::Never),
        _ => match text.strip_prefix("interval=").map(str::parse::<u64>) {
            Some(Ok(ms)) if ms > 0 => Ok(FsyncMode::Interval(std::time::Duration::from_millis(ms))),
            _ => Err("must be `always`, `never` or `interval=MS` with MS > 0".to_owned()),
        },
    }
}

fn segment_bytes(text: &str) -> Result<u64, String> {
    let value: u64 = text.parse().map_err(|e| format!("{e}"))?;
    // The largest message (1 MiB of body and attributes) and its record must fit in one
    // segment; offsets within a segment are kept in 32 bits.
    if value < 4 << 20 || !value.is_multiple_of(4096) || value > 1 << 31 {
        return Err("must be a multiple of 4096 from 4 MiB to 2 GiB".to_owned());
    }
    Ok(value)
}

/// The nodes of a cluster by id (`--cluster-peers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPeers(pub std::collections::BTreeMap<u64, SocketAddr>);

fn cluster_peers(text: &str) -> Result<ClusterPeers, String> {
    let mut peers = std::collections::BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (id, addr) = item.split_once('=').ok_or_else(|| format!("`{item}` is not ID=HOST:PORT"))?;
        let id: u64 = id.trim().parse().ok().filter(|id| *id > 0).ok_or_else(|| format!("`{id}` is not a node id (a number from 1)"))?;
        let addr: SocketAddr = addr.trim().parse().map_err(|_| format!("`{addr}` is not an address (HOST:PORT, e.g. 127.0.0.1:9701)"))?;
        if peers.insert(id, addr).is_some() {
            return Err(format!("node {id} is named twice"));
        }
        if peers.values().filter(|other| **other == addr).count() > 1 {
            return Err(format!("{addr} is given to two nodes"));
        }
    }
    if peers.is_empty() {
        return Err("no nodes given (ID=HOST:PORT,…)".into());
    }
    Ok(ClusterPeers(peers))
}

/// A byte count: digits with an optional binary suffix (K, M, G, T; `KiB`, `MB` … read the same).
pub fn byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a byte count (for example 1073741824, 512M or 4G)"))?;
    let shift = match suffix.trim().to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("`{text}`: unknown suffix (use K, M, G or T)")),
    };
    number.checked_mul(1 << shift).ok_or_else(|| format!("`{text}` is too large"))
}

impl Config {
    /// Why this configuration must not start: a listener others can reach while nothing
    /// authenticates its clients (no `--credentials`), unless `--insecure-no-auth` accepts that.
    pub fn exposure(&self) -> Option<String> {
        if self.insecure_no_auth || self.credentials_file.is_some() {
            return None;
        }
        let exposed: Vec<String> = [("--listen", Some(self.listen)), ("--http-listen", self.http_listen.0)]
            .into_iter()
            .filter_map(|(flag, addr)| addr.filter(|addr| !addr.ip().is_loopback()).map(|addr| format!("{flag} {addr}")))
            .collect();
        (!exposed.is_empty()).then(|| {
            format!(
                "refusing to serve on {} without authentication: anyone who reaches that address could read, send and delete everything. Give --credentials (principals whose keys both front ends check), listen on loopback (127.0.0.1, the default), or pass --insecure-no-auth to accept the exposure",
                exposed.join(" and ")
            )
        })
    }

    /// Why the cluster flags cannot start: this node's id missing from the peers, or a setting
    /// the cluster does not support yet.
    pub fn cluster_problem(&self) -> Option<String> {
        let (Some(id), Some(peers)) = (self.node_id, &self.cluster_peers) else { return None };
        if !peers.0.contains_key(&id) {
            return Some(format!("--node-id {id} is not among --cluster-peers (give every node, this one included)"));
        }
        if self.root_key_file.is_some() || std::env::var_os("SLUICE_ROOT_KEY").is_some() {
            return Some(
                "a cluster does not encrypt yet: the key service's keys are not replicated between nodes. Start cluster nodes without --root-key-file"
                    .into(),
            );
        }
        None
    }

    /// Where Firehose S3 destinations write without an S3 endpoint.
    pub fn firehose_local_dir(&self) -> PathBuf {
        self.firehose_local_dir.clone().unwrap_or_else(|| self.data_dir.join("firehose-objects"))
    }

    /// The memory budget in force: the flag, or half of the memory this process may use.
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget.unwrap_or_else(|| memory_available() / 2)
    }
}

/// Physical memory, or the cgroup (v2) limit when that is lower. 1 GiB if neither is readable.
fn memory_available() -> u64 {
    let physical = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
        let line = info.lines().find(|line| line.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|limit| limit.trim().parse::<u64>().ok());
    match (physical, cgroup) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(1 << 30),
    }
}

#[cfg(test)]
mod tests {
    use super::byte_size;
    use super::Config;
    use clap::Parser;

    #[test]
    fn only_loopback_listeners_start_without_authentication() {
        let exposure = |args: &[&str]| Config::parse_from(["sluiced"].iter().chain(args)).exposure();
        assert_eq!(exposure(&[]), None, "the defaults are loopback");
        assert_eq!(exposure(&["--listen", "[::1]:9800", "--http-listen", "127.0.0.2:4566"]), None);
        assert_eq!(exposure(&["--http-listen", "off"]), None);
        let refusal = exposure(&["--listen", "0.0.0.0:9800"]).expect("a wildcard address is refused");
        assert!(refusal.contains("--listen 0.0.0.0:9800") && refusal.contains("--insecure-no-auth"), "{refusal}");
        let both = exposure(&["--listen", "10.1.2.3:9800", "--http-listen", "[::]:4566"]).unwrap();
        assert!(both.contains("--listen 10.1.2.3:9800 and --http-listen [::]:4566"), "{both}");
        assert_eq!(exposure(&["--listen", "0.0.0.0:9800", "--insecure-no-auth"]), None);
        // With credentials both front ends authenticate their clients.
        assert_eq!(exposure(&["--http-listen", "0.0.0.0:4566", "--listen", "0.0.0.0:9800", "--credentials", "c.json"]), None);
    }

    #[test]
    fn byte_sizes_read_with_binary_suffixes() {
        assert_eq!(byte_size("4096"), Ok(4096));
        assert_eq!(byte_size("512M"), Ok(512 << 20));
        assert_eq!(byte_size("4G"), Ok(4 << 30));
        assert_eq!(byte_size("64MiB"), Ok(64 << 20));
        assert_eq!(byte_size("2kb"), Ok(2048));
        assert_eq!(byte_size("1T"), Ok(1 << 40));
        assert!(byte_size("").is_err());
        assert!(byte_size("12X").is_err());
        assert!(byte_size("-1").is_err());
        assert!(byte_size("99999999999T").is_err());
    }
}
