//! `sluice`: the command-line client for a Sluice broker.
//!
//! Errors print the AWS-style code and message to stderr and exit with 1.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use serde_json::json;
use sluice_client::blocking::BlockingClient;
use sluice_client::envelope::Envelope;
mod top;

use sluice_client::group::GroupMember;
use sluice_client::{
    ClientError, ConsumerRef, DeleteEntry, ErrorCode, KeyValues, MessageAttribute, Op, PublishEntry, PutRecordResult, PutRecordsEntry,
    ReceiveMessage, ReceivedMessage, Reply, SendEntry, ShardLeases, StartingPosition, StreamDescription,
};
use sluice_protocol::limits::{BATCH_BYTES_MAX, BATCH_ENTRIES_MAX, PUT_RECORDS_BYTES_MAX, PUT_RECORDS_MAX};

/// Batches `send -` keeps in flight at once.
const STDIN_BATCHES_IN_FLIGHT_MAX: usize = 64;

#[derive(Parser)]
#[command(name = "sluice", version, about = "Command-line client for the Sluice message broker.")]
struct Cli {
    /// Address of the broker's binary protocol.
    #[arg(long, global = true, env = "SLUICE_ENDPOINT", default_value = "127.0.0.1:9800")]
    endpoint: String,

    /// Access key id of a principal in the server's `--credentials`, for a server that
    /// requires authentication (the secret never crosses the wire). Default: none.
    #[arg(long, global = true, env = "SLUICE_ACCESS_KEY_ID")]
    access_key_id: Option<String>,

    /// The secret of `--access-key-id` (better given through SLUICE_SECRET_ACCESS_KEY than on
    /// the command line, where other users of the machine can see it).
    #[arg(long, global = true, env = "SLUICE_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: Option<String>,

    /// Connect over TLS (the broker runs with `--tls-cert`). Implied by `--ca-file` and
    /// `--client-cert`. Default: plain TCP.
    #[arg(long, global = true, env = "SLUICE_TLS")]
    tls: bool,

    /// CA certificates (PEM) the broker's certificate must chain to. Default with `--tls`: the
    /// public web PKI roots.
    #[arg(long, global = true, env = "SLUICE_CA_FILE", value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,

    /// The name the broker's certificate must carry. Default: the host of `--endpoint`.
    #[arg(long, global = true, env = "SLUICE_TLS_SERVER_NAME", value_name = "NAME")]
    tls_server_name: Option<String>,

    /// Client certificate chain (PEM) for a broker that asks for one (`--tls-client-ca`).
    #[arg(long, global = true, env = "SLUICE_CLIENT_CERT", value_name = "FILE", requires = "client_key")]
    client_cert: Option<std::path::PathBuf>,

    /// The private key (PEM) of `--client-cert`.
    #[arg(long, global = true, env = "SLUICE_CLIENT_KEY", value_name = "FILE", requires = "client_cert")]
    client_key: Option<std::path::PathBuf>,

    /// Print results as JSON (one object per line) instead of plain text.
    #[arg(long, global = true, env = "SLUICE_JSON", default_value_t = false)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, inspect, delete and purge queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Send a message; a BODY of `-` sends each line of standard input as one message (batched).
    Send(SendArgs),
    /// Receive messages and print each body on its own line.
    Receive(ReceiveArgs),
    /// Delete a received message by its receipt handle.
    Delete {
        /// Queue name or URL.
        queue: String,
        /// The receipt handle printed by `receive --json`.
        receipt_handle: String,
    },
    /// Create, list, inspect and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Subscribe a queue to a topic. Prints the subscription ARN.
    Subscribe {
        /// Topic name or ARN.
        topic: String,
        /// Queue name, URL or ARN.
        queue: String,
        /// Deliver the message itself (and its attributes) instead of the SNS JSON envelope.
        #[arg(long, default_value_t = false)]
        raw: bool,
        /// A filter policy (JSON); only matching messages reach the queue.
        #[arg(long, value_name = "JSON")]
        filter: Option<String>,
        /// What the filter policy looks at: `attributes` (the message attributes) or `body` (the message as JSON).
        #[arg(long, value_name = "SCOPE", default_value = "attributes", value_parser = ["attributes", "body"])]
        filter_scope: String,
    },
    /// Remove a subscription.
    Unsubscribe {
        /// The ARN `subscribe` printed.
        subscription_arn: String,
    },
    /// Create, list, inspect and delete streams.
    #[command(subcommand)]
    Stream(StreamCommand),
    /// Create, list, inspect and delete Firehose delivery streams, and put records into them.
    #[command(subcommand)]
    Firehose(FirehoseCommand),
    /// The broker's queues (depths, oldest message, rates), streams and shards, live, from its
    /// `/metrics` (read over HTTP; `--endpoint` and its options are not used).
    Top {
        /// Where the broker serves its metrics: the gateway's port or `--metrics-listen`'s;
        /// `https://` when it runs with `--tls-cert` (checked against `--ca-file`).
        #[arg(long, env = "SLUICE_METRICS_URL", default_value = "http://127.0.0.1:4566/metrics")]
        metrics_url: String,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        every: f64,
        /// Print the table once (no rates) and exit, for scripts.
        #[arg(long)]
        once: bool,
    },
    /// Put a record on a stream; prints its shard id and sequence number. A DATA of `-`
    /// puts each line of standard input as one record (in PutRecords batches, in order).
    Put {
        /// Stream name or ARN.
        stream: String,
        /// The partition key: records with the same key go to the same shard, in order.
        partition_key: String,
        /// The record's data, or `-` for standard input.
        data: String,
        /// Encrypt on this side before sending (client-side encryption): `kms:KEY` (a key of the
        /// broker's key service: id, ARN or alias) or `file:PATH` (a 256-bit key you hold, as 64 hex
        /// digits, base64 or 32 bytes). The broker never sees the clear content. Default: none.
        #[arg(long = "encrypt-with", value_name = "KEY")]
        encrypt_with: Option<String>,
    },
    /// Read a stream shard's records; prints each record's data on its own line.
    Get {
        /// Stream name or ARN.
        stream: String,
        /// The shard to read, e.g. `shardId-000000000000` (`stream describe` lists them).
        #[arg(long)]
        shard: String,
        /// Where to start: `trim-horizon` (the oldest record kept), `latest` (only records put
        /// from now on), `at:SEQ`, `after:SEQ`, or `time:RFC3339` (the first record that arrived then or later).
        #[arg(long, default_value = "trim-horizon", value_name = "POSITION")]
        from: String,
        /// Stop after this many records. Default: no limit.
        #[arg(long)]
        limit: Option<usize>,
        /// Keep reading as records arrive, instead of stopping once caught up.
        #[arg(long, default_value_t = false)]
        follow: bool,
        /// Decrypt what was encrypted with `--encrypt-with` (`kms:KEY` or `file:PATH`); content
        /// that was not encrypted is printed as it is. Default: print as received.
        #[arg(long = "decrypt-with", value_name = "KEY")]
        decrypt_with: Option<String>,
    },
    /// Publish a message to a topic. Prints its message id.
    Publish {
        /// Topic name or ARN.
        topic: String,
        /// The message.
        message: String,
        /// A subject (copied into the envelope subscribers receive).
        #[arg(long)]
        subject: Option<String>,
        /// A message attribute, `NAME=VALUE` (a String) or `NAME:TYPE=VALUE` with TYPE String, String.Array or Number (repeatable).
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attributes: Vec<String>,
        /// Encrypt on this side before publishing (subscribers decrypt what is delivered raw) (client-side encryption): `kms:KEY` (a key of the
        /// broker's key service: id, ARN or alias) or `file:PATH` (a 256-bit key you hold, as 64 hex
        /// digits, base64 or 32 bytes). The broker never sees the clear content. Default: none.
        #[arg(long = "encrypt-with", value_name = "KEY")]
        encrypt_with: Option<String>,
    },
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Create a topic (idempotent when the attributes are the same). Prints its ARN.
    Create(CreateArgs),
    /// List topic ARNs.
    List,
    /// Print every attribute of a topic.
    Attrs { topic: String },
    /// List a topic's subscriptions: ARN, protocol and endpoint.
    Subscriptions { topic: String },
    /// Delete a topic and its subscriptions.
    Delete { topic: String },
}

#[derive(Subcommand)]
enum StreamCommand {
    /// Create a stream with N shards spread over the broker's cores.
    Create {
        name: String,
        /// Number of shards (PROVISIONED). Without it the stream is ON_DEMAND (4 shards).
        #[arg(long)]
        shards: Option<i32>,
        /// The largest record (data and partition key) the stream takes, in KiB: 1024 to 10240
        /// (MaxRecordSizeInKiB). Default: 1024.
        #[arg(long = "max-record-kib", value_name = "KIB")]
        max_record_kib: Option<i32>,
    },
    /// List stream names.
    List,
    /// Print a stream's status, retention and every shard (id, hash-key range, sequence numbers, parents).
    Describe { name: String },
    /// Delete a stream, its records and its registered consumers.
    Delete { name: String },
    /// Consume a stream as one member of a consumer group: the group's members share the
    /// stream's shards (the server keeps leases and checkpoints; parents before children).
    /// Prints `SHARD SEQUENCE DATA` per record and checkpoints after each batch printed. The
    /// group is a registered stream consumer of that name, registered if missing.
    Consume {
        /// The stream (name or ARN).
        name: String,
        /// The consumer group (a registered stream consumer's name).
        #[arg(long)]
        group: String,
        /// This member's name, unique in the group. Default: the host name and process id.
        #[arg(long)]
        worker: Option<String>,
        /// Stop (leaving the group, its leases given back) after this many seconds. Default: run until killed.
        #[arg(long, value_name = "SECONDS")]
        for_seconds: Option<u64>,
        /// Records per read (1–10000).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i32).range(1..=10_000))]
        limit: i32,
    },
    /// Print a consumer group's live members and, for every shard, its holder, lease and checkpoint.
    Group {
        /// The stream (name or ARN).
        name: String,
        /// The consumer group (a registered stream consumer's name).
        group: String,
    },
    /// Switch a stream's capacity mode (UpdateStreamMode; at most twice a day): ON_DEMAND
    /// streams split and merge their shards with the write load, PROVISIONED ones keep theirs.
    Mode {
        /// The stream (name or ARN).
        name: String,
        /// PROVISIONED or ON_DEMAND.
        #[arg(value_parser = ["PROVISIONED", "ON_DEMAND"])]
        mode: String,
    },
}

#[derive(Subcommand)]
enum FirehoseCommand {
    /// Create a DirectPut delivery stream writing to an S3 bucket (a directory under the
    /// broker's `--firehose-local-dir` unless it has `--firehose-s3-endpoint`). Prints its ARN.
    Create {
        name: String,
        /// The bucket's name.
        #[arg(long)]
        bucket: String,
        /// Object key prefix; `!{timestamp:yyyy}`-style expressions allowed (then also give
        /// `--error-prefix`). Without expressions, `YYYY/MM/DD/HH/` is appended.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Prefix of objects of records that failed processing.
        #[arg(long, default_value = "")]
        error_prefix: String,
        /// UNCOMPRESSED, GZIP, ZIP, Snappy or HADOOP_SNAPPY.
        #[arg(long, default_value = "UNCOMPRESSED", value_parser = ["UNCOMPRESSED", "GZIP", "ZIP", "Snappy", "HADOOP_SNAPPY"])]
        compression: String,
        /// Deliver once a core holds this many MiB (1–128).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=128))]
        size_mb: u32,
        /// Deliver once the oldest record has waited this many seconds (0–900).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(0..=900))]
        interval: u32,
        /// Append a newline to every record (the AppendDelimiterToRecord processor).
        #[arg(long)]
        newline: bool,
    },
    /// Create a delivery stream of any source and destination from the JSON of a
    /// CreateDeliveryStream request (its members but DeliveryStreamName and Tags — as
    /// `aws firehose create-delivery-stream --cli-input-json` takes): given inline, or `@FILE`.
    /// Prints its ARN.
    CreateFrom {
        name: String,
        /// The request's JSON, or `@` and a file holding it.
        configuration: String,
    },
    /// List delivery stream names.
    List,
    /// Print a delivery stream's description (Firehose's JSON).
    Describe { name: String },
    /// Delete a delivery stream (records not delivered yet go with it).
    Delete { name: String },
    /// Put a record; prints its record id. A DATA of `-` puts each line of standard input as
    /// one record (in PutRecordBatch batches of up to 500).
    Put { name: String, data: String },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Create a queue (idempotent when the attributes are the same). Prints its URL.
    Create(CreateArgs),
    /// List queue URLs.
    List {
        /// Only queues whose name starts with this.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Print every attribute of a queue, message counts included.
    Attrs { name: String },
    /// Change queue attributes.
    Set {
        name: String,
        /// An attribute to set, e.g. `DelaySeconds=5` (repeatable).
        #[arg(long = "attr", value_name = "KEY=VALUE", required = true)]
        attributes: Vec<String>,
    },
    /// Print a queue's URL.
    Url { name: String },
    /// Delete a queue and all its messages.
    Delete { name: String },
    /// Delete all messages of a queue (once per 60 seconds).
    Purge { name: String },
}

/// A queue or topic to create.
#[derive(Args)]
struct CreateArgs {
    /// The queue's or topic's name.
    name: String,
    /// An attribute, e.g. `VisibilityTimeout=60` for a queue or `DisplayName=Orders` for a topic (repeatable).
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    attributes: Vec<String>,
    /// A tag, e.g. `team=payments` (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
}

impl CreateArgs {
    fn pairs(&self) -> Result<(KeyValues, KeyValues), String> {
        let attributes = self.attributes.iter().map(|a| split_pair(a)).collect::<Result<Vec<_>, _>>()?;
        let tags = self.tags.iter().map(|t| split_pair(t)).collect::<Result<Vec<_>, _>>()?;
        Ok((attributes, tags))
    }
}

#[derive(Args)]
struct SendArgs {
    /// Queue name or URL.
    queue: String,
    /// The message body, or `-` for one message per line of standard input.
    body: String,
    /// Seconds before the message can be received (0–900; default: the queue's DelaySeconds).
    #[arg(long)]
    delay: Option<i32>,
    /// A message attribute, `NAME=VALUE` (a String) or `NAME:TYPE=VALUE` with TYPE String or Number (repeatable).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    attributes: Vec<String>,
    /// The message group (MessageGroupId): required by FIFO queues, which keep each group's order;
    /// with `-`, lines are sent one batch at a time, in order. Default: none.
    #[arg(long)]
    group: Option<String>,
    /// The deduplication id (MessageDeduplicationId) of a FIFO queue's message; with `-`, line N
    /// gets `ID-N`. Default: none (the queue's ContentBasedDeduplication must then be on).
    #[arg(long = "dedup-id", value_name = "ID")]
    dedup_id: Option<String>,
    /// Encrypt on this side before sending (client-side encryption): `kms:KEY` (a key of the
    /// broker's key service: id, ARN or alias) or `file:PATH` (a 256-bit key you hold, as 64 hex
    /// digits, base64 or 32 bytes). The broker never sees the clear content. Default: none.
    #[arg(long = "encrypt-with", value_name = "KEY")]
    encrypt_with: Option<String>,
}

#[derive(Args)]
struct ReceiveArgs {
    /// Queue name or URL.
    queue: String,
    /// Most messages to receive (1–10).
    #[arg(long, default_value_t = 1)]
    max: i32,
    /// Seconds to wait for a message (0–20; default: the queue's ReceiveMessageWaitTimeSeconds).
    #[arg(long)]
    wait: Option<i32>,
    /// Seconds the received messages stay hidden from other receivers (default: the queue's VisibilityTimeout).
    #[arg(long)]
    visibility: Option<i32>,
    /// Delete each message once printed.
    #[arg(long, default_value_t = false)]
    delete: bool,
    /// A FIFO queue's ReceiveRequestAttemptId: retried within five minutes, the receive
    /// answers the same messages again. Default: none.
    #[arg(long = "attempt-id", value_name = "ID")]
    attempt_id: Option<String>,
    /// Decrypt what was encrypted with `--encrypt-with` (`kms:KEY` or `file:PATH`); content
    /// that was not encrypted is printed as it is. Default: print as received.
    #[arg(long = "decrypt-with", value_name = "KEY")]
    decrypt_with: Option<String>,
}

fn split_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("expected KEY=VALUE, got `{text}`"))
}

fn message_attribute(text: &str) -> Result<MessageAttribute, String> {
    let (name, value) = split_pair(text)?;
    let (name, data_type) = match name.split_once(':') {
        Some((name, data_type)) => (name.to_owned(), data_type.to_owned()),
        None => (name, "String".to_owned()),
    };
    Ok(MessageAttribute::string(name, data_type, value))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Client(ClientError::Server(error))) => {
            eprintln!("error: {}: {}", error.code.aws_name(), error.message);
            ExitCode::FAILURE
        }
        Err(Failure::Client(error)) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Client(ClientError),
    Usage(String),
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Failure::Client(error)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Usage(message)
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Failure::Client(ClientError::Io(error))
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Top { metrics_url, every, once } = &cli.command {
        let every = std::time::Duration::try_from_secs_f64(every.max(0.1)).map_err(|e| Failure::Usage(e.to_string()))?;
        // An https:// URL is read with the same TLS settings as a connection.
        let tls = if metrics_url.starts_with("https://") {
            let identity = cli.client_cert.as_deref().zip(cli.client_key.as_deref());
            let tls = sluice_client::tls::Tls::new(cli.ca_file.as_deref(), identity).map_err(|error| Failure::Usage(error.to_string()))?;
            Some(match &cli.tls_server_name {
                Some(name) => tls.with_server_name(name),
                None => tls,
            })
        } else {
            None
        };
        return top::run(metrics_url, every, *once, tls.as_ref(), &mut std::io::stdout().lock()).map_err(Failure::Usage);
    }
    let key = match (&cli.access_key_id, &cli.secret_access_key) {
        (Some(access_key_id), Some(secret_access_key)) => {
            Some(sluice_client::AccessKey { access_key_id: access_key_id.clone(), secret_access_key: secret_access_key.clone() })
        }
        (None, None) => None,
        _ => return Err(Failure::Usage("give both --access-key-id and --secret-access-key, or neither".into())),
    };
    let tls = cli.tls || cli.ca_file.is_some() || cli.client_cert.is_some();
    let connection = if tls {
        let identity = cli.client_cert.as_deref().zip(cli.client_key.as_deref());
        let mut tls = sluice_client::tls::Tls::new(cli.ca_file.as_deref(), identity).map_err(|error| Failure::Usage(error.to_string()))?;
        if let Some(name) = &cli.tls_server_name {
            tls = tls.with_server_name(name);
        }
        BlockingClient::connect_tls(&cli.endpoint, "sluice-cli", key.as_ref(), &tls)
    } else {
        BlockingClient::connect_as(cli.endpoint.as_str(), "sluice-cli", key.as_ref())
    };
    let connection = connection.map_err(|error| {
        let hint = match error {
            ClientError::Disconnected if !tls => " (if the broker serves TLS, give --tls or --ca-file)",
            _ => "",
        };
        Failure::Usage(format!("cannot reach a Sluice broker at {}: {error}{hint}", cli.endpoint))
    })?;
    let client = connection.client().clone();
    let json = cli.json;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Queue(QueueCommand::Create(args)) => {
            let (attributes, tags) = args.pairs()?;
            let url = connection.block_on(client.create_queue(&args.name, attributes, tags))?;
            print_url(&mut out, json, &url)?;
        }
        Command::Queue(QueueCommand::List { prefix }) => {
            let mut token = None;
            loop {
                let (urls, next) = connection.block_on(client.list_queues(prefix.as_deref(), Some(1000), token))?;
                for url in urls {
                    print_url(&mut out, json, &url)?;
                }
                match next {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        Command::Queue(QueueCommand::Attrs { name }) => {
            let attributes = connection.block_on(client.get_queue_attributes(&name, &["All"]))?;
            print_attributes(&mut out, json, attributes)?;
        }
        Command::Queue(QueueCommand::Set { name, attributes }) => {
            let attributes = attributes.iter().map(|a| split_pair(a)).collect::<Result<Vec<_>, _>>()?;
            connection.block_on(client.set_queue_attributes(&name, attributes))?;
        }
        Command::Queue(QueueCommand::Url { name }) => {
            let url = connection.block_on(client.get_queue_url(&name))?;
            print_url(&mut out, json, &url)?;
        }
        Command::Queue(QueueCommand::Delete { name }) => connection.block_on(client.delete_queue(&name))?,
        Command::Queue(QueueCommand::Purge { name }) => connection.block_on(client.purge_queue(&name))?,
        Command::Send(args) => {
            let attributes = args.attributes.iter().map(|a| message_attribute(a)).collect::<Result<Vec<_>, _>>()?;
            let envelope = envelope(args.encrypt_with.as_deref())?;
            if args.body == "-" {
                send_stdin(&connection, &args, &attributes, envelope.as_ref(), json, &mut out)?;
            } else {
                let entry = SendEntry {
                    body: args.body.into_bytes().into(),
                    delay_seconds: args.delay,
                    attributes,
                    message_group_id: args.group,
                    deduplication_id: args.dedup_id,
                    ..SendEntry::default()
                };
                let entry = match &envelope {
                    Some(envelope) => connection.block_on(envelope.seal_entry(&client, entry))?,
                    None => entry,
                };
                let result = connection.block_on(client.send_entry(&args.queue, entry))?;
                match (json, &result.sequence_number) {
                    (true, sequence) => writeln!(
                        out,
                        "{}",
                        json!({"MessageId": result.message_id, "MD5OfMessageBody": result.md5_of_body, "SequenceNumber": sequence})
                    )?,
                    // A FIFO queue's message: its id and sequence number.
                    (false, Some(sequence)) => writeln!(out, "{} {sequence}", result.message_id)?,
                    (false, None) => writeln!(out, "{}", result.message_id)?,
                }
            }
        }
        Command::Receive(args) => {
            let receive = ReceiveMessage {
                queue: args.queue.clone(),
                max_messages: Some(args.max),
                wait_time_seconds: args.wait,
                visibility_timeout: args.visibility,
                system_attribute_names: if json { vec!["All".into()] } else { Vec::new() },
                message_attribute_names: if json { vec!["All".into()] } else { Vec::new() },
                receive_request_attempt_id: args.attempt_id.clone(),
            };
            let envelope = envelope(args.decrypt_with.as_deref())?;
            let mut messages = connection.block_on(client.receive_message(ReceiveMessage {
                // The envelope's attributes are needed to open it.
                message_attribute_names: if envelope.is_some() { vec!["All".into()] } else { receive.message_attribute_names.clone() },
                ..receive
            }))?;
            if let Some(envelope) = &envelope {
                for message in messages.iter_mut() {
                    connection.block_on(envelope.open_message(&client, message))?;
                    if !json {
                        message.message_attributes.clear();
                    }
                }
            }
            for message in &messages {
                print_message(&mut out, json, message)?;
            }
            out.flush()?;
            if args.delete && !messages.is_empty() {
                let entries = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| DeleteEntry { id: i.to_string(), receipt_handle: m.receipt_handle.clone() })
                    .collect();
                let (_, failed) = connection.block_on(client.delete_message_batch(&args.queue, entries))?;
                if let Some(failure) = failed.first() {
                    return Err(Failure::Client(ClientError::Server(sluice_client::OpError::new(failure.code, failure.message.clone()))));
                }
            }
        }
        Command::Delete { queue, receipt_handle } => connection.block_on(client.delete_message(&queue, &receipt_handle))?,
        Command::Topic(TopicCommand::Create(args)) => {
            let (attributes, tags) = args.pairs()?;
            let arn = connection.block_on(client.create_topic(&args.name, attributes, tags))?;
            print_named(&mut out, json, "TopicArn", &arn)?;
        }
        Command::Topic(TopicCommand::List) => {
            let mut token = None;
            loop {
                let (arns, next) = connection.block_on(client.list_topics(token))?;
                for arn in arns {
                    print_named(&mut out, json, "TopicArn", &arn)?;
                }
                match next {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        Command::Topic(TopicCommand::Attrs { topic }) => {
            let attributes = connection.block_on(client.get_topic_attributes(&topic))?;
            print_attributes(&mut out, json, attributes)?;
        }
        Command::Topic(TopicCommand::Subscriptions { topic }) => {
            let mut token = None;
            loop {
                let (rows, next) = connection.block_on(client.list_subscriptions(Some(&topic), token))?;
                for row in rows {
                    if json {
                        writeln!(
                            out,
                            "{}",
                            json!({"SubscriptionArn": row.subscription_arn, "Protocol": row.protocol, "Endpoint": row.endpoint, "TopicArn": row.topic_arn})
                        )?;
                    } else {
                        writeln!(out, "{} {} {}", row.subscription_arn, row.protocol, row.endpoint)?;
                    }
                }
                match next {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        Command::Topic(TopicCommand::Delete { topic }) => connection.block_on(client.delete_topic(&topic))?,
        Command::Subscribe { topic, queue, raw, filter, filter_scope } => {
            let queue_arn = if queue.starts_with("arn:") {
                queue
            } else {
                let attributes = connection.block_on(client.get_queue_attributes(&queue, &["QueueArn"]))?;
                attributes.into_iter().find(|(k, _)| k == "QueueArn").map(|(_, v)| v).ok_or("the queue has no ARN".to_owned())?
            };
            let mut attributes = Vec::new();
            if raw {
                attributes.push(("RawMessageDelivery".to_owned(), "true".to_owned()));
            }
            if let Some(filter) = filter {
                attributes.push(("FilterPolicy".to_owned(), filter));
                let scope = if filter_scope == "body" { "MessageBody" } else { "MessageAttributes" };
                attributes.push(("FilterPolicyScope".to_owned(), scope.to_owned()));
            }
            let arn = connection.block_on(client.subscribe(&topic, "sqs", &queue_arn, attributes))?;
            print_named(&mut out, json, "SubscriptionArn", &arn)?;
        }
        Command::Top { .. } => unreachable!("served before connecting"),
        Command::Unsubscribe { subscription_arn } => connection.block_on(client.unsubscribe(&subscription_arn))?,
        Command::Stream(StreamCommand::Create { name, shards, max_record_kib }) => {
            let mode = if shards.is_some() { "PROVISIONED" } else { "ON_DEMAND" };
            let op =
                Op::CreateStream { name, shard_count: shards, mode: Some(mode.into()), tags: vec![], max_record_size_kib: max_record_kib };
            connection.block_on(client.call(op))?;
        }
        Command::Stream(StreamCommand::List) => {
            for name in connection.block_on(client.list_streams())? {
                print_named(&mut out, json, "StreamName", &name)?;
            }
        }
        Command::Stream(StreamCommand::Describe { name }) => {
            let stream = connection.block_on(client.describe_stream(&name))?;
            print_stream(&mut out, json, &stream)?;
        }
        Command::Stream(StreamCommand::Delete { name }) => connection.block_on(client.delete_stream(&name))?,
        Command::Stream(StreamCommand::Consume { name, group, worker, for_seconds, limit }) => {
            let worker = worker.unwrap_or_else(default_worker);
            let consume = Consume { stream: &name, group: &group, worker: &worker, for_seconds, limit };
            consume_group(&connection, &consume, &mut out)?
        }
        Command::Stream(StreamCommand::Group { name, group }) => {
            let consumer = group_consumer(&connection, &name, &group, false)?;
            match connection.block_on(client.call(Op::DescribeConsumerGroup { consumer_arn: consumer }))? {
                Reply::ShardLeases(leases) => print_group(&mut out, json, &leases)?,
                other => return Err(Failure::Client(ClientError::Protocol(format!("DescribeConsumerGroup answered {other:?}")))),
            }
        }
        Command::Stream(StreamCommand::Mode { name, mode }) => {
            connection.block_on(client.call(Op::UpdateStreamMode { stream: name, mode }))?;
        }
        Command::Firehose(FirehoseCommand::Create { name, bucket, prefix, error_prefix, compression, size_mb, interval, newline }) => {
            let processing = json!({
                "Enabled": newline,
                "Processors": if newline { json!([{"Type": "AppendDelimiterToRecord", "Parameters": []}]) } else { json!([]) },
            });
            let configuration = json!({
                "DeliveryStreamType": "DirectPut",
                "ExtendedS3DestinationConfiguration": {
                    "BucketARN": format!("arn:aws:s3:::{bucket}"),
                    "RoleARN": "arn:aws:iam::000000000000:role/firehose",
                    "Prefix": prefix,
                    "ErrorOutputPrefix": error_prefix,
                    "CompressionFormat": compression,
                    "BufferingHints": { "SizeInMBs": size_mb, "IntervalInSeconds": interval },
                    "ProcessingConfiguration": processing,
                },
            });
            let arn = connection.block_on(client.create_delivery_stream(&name, &configuration.to_string(), vec![]))?;
            print_named(&mut out, json, "DeliveryStreamARN", &arn)?;
        }
        Command::Firehose(FirehoseCommand::CreateFrom { name, configuration }) => {
            let text = match configuration.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file).map_err(|e| Failure::Usage(format!("reading {file}: {e}")))?,
                None => configuration,
            };
            let mut request: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Failure::Usage(format!("the configuration is not JSON: {e}")))?;
            // As `--cli-input-json` files hold them: the name and tags are given apart here.
            if let Some(members) = request.as_object_mut() {
                members.remove("DeliveryStreamName");
                members.remove("Tags");
            }
            let arn = connection.block_on(client.create_delivery_stream(&name, &request.to_string(), vec![]))?;
            print_named(&mut out, json, "DeliveryStreamARN", &arn)?;
        }
        Command::Firehose(FirehoseCommand::List) => {
            for name in connection.block_on(client.list_delivery_streams())? {
                print_named(&mut out, json, "DeliveryStreamName", &name)?;
            }
        }
        Command::Firehose(FirehoseCommand::Describe { name }) => {
            let description = connection.block_on(client.describe_delivery_stream(&name))?;
            let value: serde_json::Value = serde_json::from_str(&description).unwrap_or(serde_json::Value::String(description));
            if json {
                writeln!(out, "{value}")?;
            } else {
                writeln!(out, "{}", serde_json::to_string_pretty(&value).unwrap_or_default())?;
            }
        }
        Command::Firehose(FirehoseCommand::Delete { name }) => connection.block_on(client.delete_delivery_stream(&name))?,
        Command::Firehose(FirehoseCommand::Put { name, data }) => {
            if data == "-" {
                let mut batch: Vec<bytes::Bytes> = Vec::new();
                let mut bytes = 0;
                let flush = |batch: &mut Vec<bytes::Bytes>, out: &mut dyn Write| -> Result<(), Failure> {
                    if batch.is_empty() {
                        return Ok(());
                    }
                    for result in connection.block_on(client.put_firehose_records(&name, std::mem::take(batch), true))? {
                        match result.record_id {
                            Some(id) => print_named(&mut *out, json, "RecordId", &id)?,
                            None => {
                                let error =
                                    format!("{}: {}", result.error_code.unwrap_or_default(), result.error_message.unwrap_or_default());
                                return Err(Failure::Client(ClientError::Protocol(error)));
                            }
                        }
                    }
                    Ok(())
                };
                for line in std::io::stdin().lines() {
                    let line = line?;
                    if batch.len() == 500 || bytes + line.len() > 4 << 20 {
                        flush(&mut batch, &mut out)?;
                        bytes = 0;
                    }
                    bytes += line.len();
                    batch.push(bytes::Bytes::from(line.into_bytes()));
                }
                flush(&mut batch, &mut out)?;
            } else {
                let results =
                    connection.block_on(client.put_firehose_records(&name, vec![bytes::Bytes::from(data.into_bytes())], false))?;
                let id = results.into_iter().next().and_then(|result| result.record_id).unwrap_or_default();
                print_named(&mut out, json, "RecordId", &id)?;
            }
        }
        Command::Put { stream, partition_key, data, encrypt_with } => {
            let envelope = envelope(encrypt_with.as_deref())?;
            if data == "-" {
                put_stdin(&connection, &stream, &partition_key, envelope.as_ref(), json, &mut out)?;
            } else {
                let mut records = vec![PutRecordsEntry { data: data.into_bytes().into(), partition_key, explicit_hash_key: None }];
                if let Some(envelope) = &envelope {
                    connection.block_on(envelope.seal_records(&client, &mut records))?;
                }
                let record = records.pop().expect("one record");
                let (shard_id, sequence_number) = connection.block_on(client.put_record(&stream, &record.partition_key, record.data))?;
                print_put(&mut out, json, &shard_id, &sequence_number)?;
            }
        }
        Command::Get { stream, shard, from, limit, follow, decrypt_with } => {
            let envelope = envelope(decrypt_with.as_deref())?;
            let read = Read { stream: &stream, shard: &shard, from: &from, limit, follow, envelope: envelope.as_ref() };
            get_records(&connection, &read, json, &mut out)?
        }
        Command::Publish { topic, message, subject, attributes, encrypt_with } => {
            let attributes = attributes.iter().map(|a| message_attribute(a)).collect::<Result<Vec<_>, _>>()?;
            let entry = PublishEntry { message: message.into_bytes().into(), subject, attributes, ..PublishEntry::default() };
            let entry = match envelope(encrypt_with.as_deref())? {
                Some(envelope) => connection.block_on(envelope.seal_publish(&client, entry))?,
                None => entry,
            };
            let result = connection.block_on(client.publish_entry(&topic, entry))?;
            print_named(&mut out, json, "MessageId", &result.message_id)?;
        }
    }
    drop(client);
    connection.close()?;
    Ok(())
}

fn print_named(out: &mut (impl Write + ?Sized), json: bool, name: &str, value: &str) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", json!({ name: value }))
    } else {
        writeln!(out, "{value}")
    }
}

fn print_attributes(out: &mut impl Write, json: bool, attributes: Vec<(String, String)>) -> std::io::Result<()> {
    if json {
        let map: serde_json::Map<String, serde_json::Value> = attributes.into_iter().map(|(k, v)| (k, json!(v))).collect();
        writeln!(out, "{}", serde_json::Value::Object(map))
    } else {
        for (key, value) in attributes {
            writeln!(out, "{key}={value}")?;
        }
        Ok(())
    }
}

fn print_url(out: &mut impl Write, json: bool, url: &str) -> std::io::Result<()> {
    print_named(out, json, "QueueUrl", url)
}

fn print_message(out: &mut impl Write, json: bool, message: &ReceivedMessage) -> std::io::Result<()> {
    let body = String::from_utf8_lossy(&message.body);
    if !json {
        return writeln!(out, "{body}");
    }
    let attributes: serde_json::Map<String, serde_json::Value> = message.attributes.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let message_attributes: serde_json::Map<String, serde_json::Value> = message
        .message_attributes
        .iter()
        .map(|a| (a.name.clone(), json!({ "DataType": a.data_type, "StringValue": a.string_value })))
        .collect();
    writeln!(
        out,
        "{}",
        json!({
            "Body": body,
            "MessageId": message.message_id,
            "ReceiptHandle": message.receipt_handle,
            "MD5OfBody": message.md5_of_body,
            "Attributes": attributes,
            "MessageAttributes": message_attributes,
        })
    )
}

/// Sends each line of stdin as a message, in batches of up to 10 (and 1 MiB), many batches in flight.
/// The envelope `--encrypt-with` / `--decrypt-with` names, if any.
fn envelope(spec: Option<&str>) -> Result<Option<Envelope>, Failure> {
    spec.map(|spec| Envelope::from_spec(spec).map_err(Failure::Usage)).transpose()
}

fn send_stdin(
    connection: &BlockingClient,
    args: &SendArgs,
    attributes: &[MessageAttribute],
    envelope: Option<&Envelope>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let (queue, delay) = (args.queue.as_str(), args.delay);
    let stdin = std::io::stdin().lock();
    let mut batches: Vec<Vec<SendEntry>> = Vec::new();
    let mut current: Vec<SendEntry> = Vec::new();
    let mut current_bytes = 0;
    for (number, line) in stdin.lines().enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let entry = SendEntry {
            body: line.into_bytes().into(),
            delay_seconds: delay,
            attributes: attributes.to_vec(),
            message_group_id: args.group.clone(),
            deduplication_id: args.dedup_id.as_ref().map(|id| format!("{id}-{}", number + 1)),
            ..SendEntry::default()
        };
        let size = entry.size_bytes();
        if current.len() == BATCH_ENTRIES_MAX || (current_bytes + size > BATCH_BYTES_MAX && !current.is_empty()) {
            batches.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += size;
        current.push(SendEntry { id: current.len().to_string(), ..entry });
    }
    if !current.is_empty() {
        batches.push(current);
    }
    let client = connection.client().clone();
    let results: Vec<_> = connection.block_on(
        futures::stream::iter(batches.into_iter().map(|mut batch| {
            let client = client.clone();
            async move {
                // One fresh data key per batch.
                if let Some(envelope) = envelope {
                    envelope.seal_entries(&client, &mut batch).await?;
                }
                client.send_message_batch(queue, batch).await
            }
        }))
        // A group's order is kept only if each batch is sent after the one before.
        .buffered(if args.group.is_some() { 1 } else { STDIN_BATCHES_IN_FLIGHT_MAX })
        .collect(),
    );
    let (mut sent, mut failures) = (0usize, Vec::new());
    for result in results {
        let (successful, failed) = result?;
        sent += successful.len();
        failures.extend(failed);
    }
    if json {
        writeln!(out, "{}", json!({ "Sent": sent, "Failed": failures.len() }))?;
    } else {
        writeln!(out, "sent {sent} messages")?;
    }
    if let Some(failure) = failures.first() {
        return Err(Failure::Usage(format!("{} messages failed; first: {}: {}", failures.len(), failure.code.aws_name(), failure.message)));
    }
    Ok(())
}

fn print_put<W: Write + ?Sized>(out: &mut W, json: bool, shard_id: &str, sequence_number: &str) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", json!({"ShardId": shard_id, "SequenceNumber": sequence_number}))
    } else {
        writeln!(out, "{shard_id} {sequence_number}")
    }
}

fn print_stream(out: &mut impl Write, json: bool, stream: &StreamDescription) -> std::io::Result<()> {
    let shards: Vec<serde_json::Value> = stream
        .shards
        .iter()
        .map(|shard| {
            json!({
                "ShardId": shard.shard_id,
                "ParentShardId": shard.parent_shard_id,
                "AdjacentParentShardId": shard.adjacent_parent_shard_id,
                "HashKeyRange": {"StartingHashKey": shard.starting_hash_key, "EndingHashKey": shard.ending_hash_key},
                "SequenceNumberRange": {"StartingSequenceNumber": shard.starting_sequence_number, "EndingSequenceNumber": shard.ending_sequence_number},
            })
        })
        .collect();
    if json {
        return writeln!(
            out,
            "{}",
            json!({
                "StreamName": stream.name,
                "StreamARN": stream.arn,
                "StreamStatus": stream.status,
                "StreamMode": stream.mode,
                "RetentionPeriodHours": stream.retention_hours,
                "OpenShardCount": stream.open_shard_count,
                "MaxRecordSizeInKiB": stream.max_record_size_kib,
                "EncryptionType": if stream.encryption_key.is_some() { "KMS" } else { "NONE" },
                "KeyId": stream.encryption_key,
                "Shards": shards,
            })
        );
    }
    writeln!(out, "StreamName={}", stream.name)?;
    writeln!(out, "StreamARN={}", stream.arn)?;
    writeln!(out, "StreamStatus={}", stream.status)?;
    writeln!(out, "StreamMode={}", stream.mode)?;
    writeln!(out, "RetentionPeriodHours={}", stream.retention_hours)?;
    writeln!(out, "OpenShardCount={}", stream.open_shard_count)?;
    writeln!(out, "MaxRecordSizeInKiB={}", stream.max_record_size_kib)?;
    if let Some(key) = &stream.encryption_key {
        writeln!(out, "Encryption=KMS {key}")?;
    }
    for shard in &stream.shards {
        let state = match &shard.ending_sequence_number {
            Some(end) => format!("closed at {end}"),
            None => "open".to_owned(),
        };
        let parents: Vec<&str> = shard.parent_shard_id.iter().chain(&shard.adjacent_parent_shard_id).map(String::as_str).collect();
        writeln!(
            out,
            "{} {}..{} from {} {}{}",
            shard.shard_id,
            shard.starting_hash_key,
            shard.ending_hash_key,
            shard.starting_sequence_number,
            state,
            if parents.is_empty() { String::new() } else { format!(" (parents {})", parents.join(", ")) },
        )?;
    }
    Ok(())
}

/// Puts each line of stdin as one record, in PutRecords batches sent one after the other
/// (so records of one partition key keep their order).
fn put_stdin(
    connection: &BlockingClient,
    stream: &str,
    partition_key: &str,
    envelope: Option<&Envelope>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let client = connection.client().clone();
    let mut batch: Vec<PutRecordsEntry> = Vec::new();
    let mut batch_bytes = 0;
    let flush = |batch: &mut Vec<PutRecordsEntry>, out: &mut dyn Write| -> Result<(), Failure> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(envelope) = envelope {
            connection.block_on(envelope.seal_records(&client, batch))?;
        }
        let results = connection.block_on(client.put_records(stream, std::mem::take(batch)))?;
        for result in results {
            match result {
                PutRecordResult::Put { shard_id, sequence_number } => print_put(out, json, &shard_id, &sequence_number)?,
                PutRecordResult::Failed(error) => return Err(ClientError::Server(error).into()),
            }
        }
        Ok(())
    };
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        // A sealed record is larger by its envelope (about 100 bytes, 200 with the key service).
        let size = line.len() + partition_key.len() + if envelope.is_some() { 256 } else { 0 };
        if batch.len() == PUT_RECORDS_MAX || batch_bytes + size > PUT_RECORDS_BYTES_MAX {
            flush(&mut batch, out)?;
            batch_bytes = 0;
        }
        batch_bytes += size;
        batch.push(PutRecordsEntry { data: line.into_bytes().into(), partition_key: partition_key.to_owned(), explicit_hash_key: None });
    }
    flush(&mut batch, out)
}

/// How long `get --follow` waits between reads once caught up.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(200);

fn starting_position(from: &str) -> Result<StartingPosition, Failure> {
    let position = match from.split_once(':') {
        None if from == "trim-horizon" => StartingPosition::new("TRIM_HORIZON"),
        None if from == "latest" => StartingPosition::new("LATEST"),
        Some(("at", seq)) => StartingPosition { sequence_number: Some(seq.into()), ..StartingPosition::new("AT_SEQUENCE_NUMBER") },
        Some(("after", seq)) => StartingPosition { sequence_number: Some(seq.into()), ..StartingPosition::new("AFTER_SEQUENCE_NUMBER") },
        Some(("time", time)) => {
            let time = humantime::parse_rfc3339_weak(time).map_err(|e| Failure::Usage(format!("--from time:{time}: {e}")))?;
            let ms = time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            StartingPosition { timestamp_ms: Some(ms), ..StartingPosition::new("AT_TIMESTAMP") }
        }
        _ => return Err(Failure::Usage(format!("--from {from}: expected trim-horizon, latest, at:SEQ, after:SEQ or time:RFC3339"))),
    };
    Ok(position)
}

/// What `get` reads, and how.
/// What `stream consume` was asked.
struct Consume<'a> {
    stream: &'a str,
    group: &'a str,
    worker: &'a str,
    for_seconds: Option<u64>,
    limit: i32,
}

fn default_worker() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|name| name.trim().to_owned()).unwrap_or_default();
    format!("{}-{}", if host.is_empty() { "sluice" } else { &host }, std::process::id())
}

/// The ARN of the stream consumer `group` of `stream`, registered first if missing and `register`.
fn group_consumer(connection: &BlockingClient, stream: &str, group: &str, register: bool) -> Result<String, Failure> {
    let client = connection.client();
    let stream_arn = connection.block_on(client.describe_stream(stream))?.arn;
    let consumer = ConsumerRef { stream: Some(stream_arn.clone()), name: Some(group.to_owned()), consumer_arn: None };
    let describe = || match connection.block_on(client.call(Op::DescribeStreamConsumer(consumer.clone()))) {
        Ok(Reply::StreamConsumer(consumer)) => Ok(consumer.arn),
        Ok(other) => Err(ClientError::Protocol(format!("DescribeStreamConsumer answered {other:?}"))),
        Err(error) => Err(error),
    };
    match describe() {
        Err(error) if register && error.code() == Some(ErrorCode::ResourceNotFound) => {
            match connection.block_on(client.register_stream_consumer(&stream_arn, group)) {
                Ok(consumer) => {
                    eprintln!("registered stream consumer {group} of {stream}: {}", consumer.arn);
                    Ok(consumer.arn)
                }
                // Another member registered it meanwhile.
                Err(error) if error.code() == Some(ErrorCode::ResourceInUse) => Ok(describe()?),
                Err(error) => Err(error.into()),
            }
        }
        other => Ok(other?),
    }
}

/// `stream consume`: one member of a consumer group, until killed or `for_seconds` pass.
fn consume_group(connection: &BlockingClient, consume: &Consume<'_>, out: &mut impl Write) -> Result<(), Failure> {
    use std::time::{Duration, Instant};
    let consumer = group_consumer(connection, consume.stream, consume.group, true)?;
    let mut member = GroupMember::new(connection.client().clone(), &consumer, consume.worker);
    let until = consume.for_seconds.map(|seconds| Instant::now() + Duration::from_secs(seconds));
    let mut next_beat = Instant::now();
    let mut held: Vec<String> = Vec::new();
    while until.is_none_or(|until| Instant::now() < until) {
        if Instant::now() >= next_beat {
            let shards = connection.block_on(member.heartbeat())?;
            if shards != held {
                eprintln!("{} holds {}", consume.worker, if shards.is_empty() { "no shard".to_owned() } else { shards.join(", ") });
                held = shards;
            }
            next_beat = Instant::now() + member.renew_every();
        }
        let mut read_any = false;
        for shard in member.shards() {
            let batch = match connection.block_on(member.read(&shard, Some(consume.limit))) {
                Ok(batch) => batch,
                Err(error) if error.code() == Some(ErrorCode::LeaseLost) => continue,
                Err(error) => return Err(error.into()),
            };
            for record in &batch.records {
                out.write_all(format!("{shard} {} ", record.sequence_number).as_bytes())?;
                out.write_all(&record.data)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            read_any |= !batch.records.is_empty();
            let done = match batch.records.last() {
                Some(last) => connection.block_on(member.checkpoint(&shard, &last.sequence_number)),
                None => Ok(()),
            };
            let done = done.and_then(|()| if batch.ended { connection.block_on(member.finish(&shard)) } else { Ok(()) });
            match done {
                Ok(()) => {}
                Err(error) if error.code() == Some(ErrorCode::LeaseLost) => {}
                Err(error) => return Err(error.into()),
            }
        }
        if !read_any {
            std::thread::sleep(FOLLOW_POLL.min(next_beat.saturating_duration_since(Instant::now())));
        }
    }
    connection.block_on(member.leave())?;
    Ok(())
}

fn print_group(out: &mut impl Write, json: bool, group: &ShardLeases) -> std::io::Result<()> {
    if json {
        let shards: Vec<serde_json::Value> = group
            .leases
            .iter()
            .map(|lease| json!({ "ShardId": lease.shard_id, "Worker": lease.worker, "Checkpoint": lease.checkpoint, "LeaseExpiresInMillis": lease.expires_in_ms }))
            .collect();
        return writeln!(out, "{}", json!({ "LeaseMillis": group.lease_ms, "Workers": group.workers, "Shards": shards }));
    }
    writeln!(out, "workers: {}", group.workers.join(", "))?;
    for lease in &group.leases {
        writeln!(out, "{} {} {}", lease.shard_id, lease.worker.as_deref().unwrap_or("-"), lease.checkpoint.as_deref().unwrap_or("-"),)?;
    }
    Ok(())
}

struct Read<'a> {
    stream: &'a str,
    shard: &'a str,
    from: &'a str,
    limit: Option<usize>,
    follow: bool,
    envelope: Option<&'a Envelope>,
}

fn get_records(connection: &BlockingClient, read: &Read<'_>, json: bool, out: &mut impl Write) -> Result<(), Failure> {
    let Read { stream, shard, from, limit, follow, envelope } = *read;
    let client = connection.client().clone();
    let mut iterator = connection.block_on(client.get_shard_iterator(stream, shard, starting_position(from)?))?;
    let mut printed = 0usize;
    loop {
        let want = limit.map(|limit| (limit - printed).min(10_000) as i32);
        let mut result = connection.block_on(client.get_records(&iterator, want))?;
        if let Some(envelope) = envelope {
            for record in result.records.iter_mut() {
                connection.block_on(envelope.open_record(&client, record))?;
            }
        }
        for record in &result.records {
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({
                        "SequenceNumber": record.sequence_number,
                        "PartitionKey": record.partition_key,
                        "ApproximateArrivalTimestamp": record.arrival_ms,
                        "Data": String::from_utf8_lossy(&record.data),
                    })
                )?;
            } else {
                out.write_all(&record.data)?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()?;
        printed += result.records.len();
        if limit.is_some_and(|limit| printed >= limit) {
            return Ok(());
        }
        let Some(next) = result.next_iterator else {
            let children: Vec<&str> = result.child_shards.iter().map(|child| child.shard_id.as_str()).collect();
            eprintln!("{shard} is closed and fully read; its children: {}", children.join(", "));
            return Ok(());
        };
        iterator = next;
        if result.records.is_empty() && result.millis_behind_latest == 0 {
            if !follow {
                return Ok(());
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}
